// SPDX-License-Identifier: GPL-3.0-or-later
//! The virtio-mmio register state machine.

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::queue::{NullRegistry, INT_VRING};
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::test_utils::{chain, mem};
use crate::devices::virtio::TYPE_RNG;

type T = MmioTransport<Rng>;

fn transport() -> T {
    MmioTransport::with_interrupt(mem(), Interrupt::new(None), Rng::new()).unwrap()
}

fn rd(t: &mut T, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

fn wr(t: &mut T, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;

fn negotiate(t: &mut T) {
    wr(t, reg::STATUS, status::ACKNOWLEDGE);
    wr(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    wr(t, reg::DRIVER_FEATURES_SEL, 1);
    wr(t, reg::DRIVER_FEATURES, 1);
    wr(
        t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    assert_ne!(rd(t, reg::STATUS) & status::FEATURES_OK, 0);
}

fn setup_queue(t: &mut T, size: u32) {
    wr(t, reg::QUEUE_SEL, 0);
    wr(t, reg::QUEUE_NUM, size);
    wr(t, reg::QUEUE_DESC_LOW, DESC as u32);
    wr(t, reg::QUEUE_DESC_HIGH, 0);
    wr(t, reg::QUEUE_AVAIL_LOW, AVAIL as u32);
    wr(t, reg::QUEUE_USED_LOW, USED as u32);
    wr(t, reg::QUEUE_READY, 1);
}

fn driver_ok(t: &mut T) {
    wr(
        t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
    );
}

#[test]
fn identity_registers() {
    let mut t = transport();
    assert_eq!(rd(&mut t, reg::MAGIC), MAGIC);
    assert_eq!(rd(&mut t, reg::VERSION), 2);
    assert_eq!(rd(&mut t, reg::DEVICE_ID), TYPE_RNG);
    assert_eq!(rd(&mut t, reg::VENDOR_ID), VENDOR_ID);
    assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 256);
    // Read-only registers ignore writes.
    wr(&mut t, reg::MAGIC, 0);
    wr(&mut t, reg::VERSION, 1);
    wr(&mut t, reg::QUEUE_NUM_MAX, 4);
    assert_eq!(rd(&mut t, reg::MAGIC), MAGIC);
    assert_eq!(rd(&mut t, reg::VERSION), 2);
    assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 256);
    // Other widths and unaligned offsets read as zero.
    let mut b = [0xffu8; 2];
    t.read(reg::MAGIC, &mut b);
    assert_eq!(b, [0, 0]);
    let mut b = [0xffu8; 4];
    t.read(reg::MAGIC + 1, &mut b);
    assert_eq!(b, [0; 4]);
    // Unknown queue selected: max 0.
    wr(&mut t, reg::QUEUE_SEL, 7);
    assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 0);
}

#[test]
fn features_and_negotiation() {
    let mut t = transport();
    wr(&mut t, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
    wr(&mut t, reg::DEVICE_FEATURES_SEL, 0);
    assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 1 << 28, "INDIRECT_DESC");
    wr(&mut t, reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 0);

    wr(&mut t, reg::STATUS, status::ACKNOWLEDGE);
    wr(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    // Without VERSION_1: refused.
    wr(
        &mut t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    assert_eq!(t.status(), status::ACKNOWLEDGE | status::DRIVER);
    // Unknown feature bit: refused.
    wr(&mut t, reg::DRIVER_FEATURES_SEL, 1);
    wr(&mut t, reg::DRIVER_FEATURES, 1 | 2);
    wr(
        &mut t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    assert_eq!(t.status() & status::FEATURES_OK, 0);
    // Unknown word: refused even after fixing the first words.
    wr(&mut t, reg::DRIVER_FEATURES, 1);
    wr(&mut t, reg::DRIVER_FEATURES_SEL, 5);
    wr(&mut t, reg::DRIVER_FEATURES, 1);
    wr(
        &mut t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    assert_eq!(t.status() & status::FEATURES_OK, 0);
    // Reset, then a clean negotiation works.
    wr(&mut t, reg::STATUS, 0);
    assert_eq!(t.status(), 0);
    negotiate(&mut t);
    // Features are frozen after FEATURES_OK.
    wr(&mut t, reg::DRIVER_FEATURES_SEL, 0);
    wr(&mut t, reg::DRIVER_FEATURES, 0xffff_ffff);
    setup_queue(&mut t, 16);
    driver_ok(&mut t);
    assert!(t.is_active());
}

#[test]
fn status_must_follow_the_protocol() {
    let mut t = transport();
    // DRIVER_OK straight away, or skipping FEATURES_OK: refused.
    wr(
        &mut t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
    );
    assert_eq!(t.status(), 0);
    wr(&mut t, reg::STATUS, status::ACKNOWLEDGE);
    wr(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    wr(
        &mut t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
    );
    assert_eq!(t.status(), status::ACKNOWLEDGE | status::DRIVER);
    assert!(!t.is_active());
    // Clearing bits without a reset: refused.
    wr(&mut t, reg::STATUS, status::ACKNOWLEDGE);
    assert_eq!(t.status(), status::ACKNOWLEDGE | status::DRIVER);
    // DRIVER_OK with a queue not ready: refused.
    wr(&mut t, reg::DRIVER_FEATURES_SEL, 1);
    wr(&mut t, reg::DRIVER_FEATURES, 1);
    wr(
        &mut t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    driver_ok(&mut t);
    assert!(!t.is_active());
    // FAILED sticks and stops everything.
    wr(&mut t, reg::STATUS, status::FAILED);
    assert_ne!(t.status() & status::FAILED, 0);
    setup_queue(&mut t, 16);
    assert_eq!(rd(&mut t, reg::QUEUE_READY), 0);
}

#[test]
fn queue_parameters_are_validated_at_ready() {
    let mut t = transport();
    // Before FEATURES_OK queue writes are ignored.
    setup_queue(&mut t, 16);
    assert_eq!(rd(&mut t, reg::QUEUE_READY), 0);
    negotiate(&mut t);
    for bad in [0, 3, 100, 512, 0x1_0000, u32::MAX] {
        setup_queue(&mut t, bad);
        assert_eq!(rd(&mut t, reg::QUEUE_READY), 0, "size {bad}");
    }
    // Misaligned or out-of-memory rings.
    for (reg_off, val) in [
        (reg::QUEUE_DESC_LOW, 0x1008u32),
        (reg::QUEUE_USED_LOW, 0x3002),
        (reg::QUEUE_AVAIL_LOW, 0x2001),
        (reg::QUEUE_DESC_HIGH, 1),
        (reg::QUEUE_USED_LOW, 0xffff_fff0),
    ] {
        setup_queue(&mut t, 16);
        wr(&mut t, reg::QUEUE_READY, 0);
        wr(&mut t, reg_off, val);
        wr(&mut t, reg::QUEUE_READY, 1);
        assert_eq!(rd(&mut t, reg::QUEUE_READY), 0, "{reg_off:#x}={val:#x}");
    }
    setup_queue(&mut t, 16);
    assert_eq!(rd(&mut t, reg::QUEUE_READY), 1);
    // Parameters of a ready queue are frozen.
    wr(&mut t, reg::QUEUE_NUM, 3);
    driver_ok(&mut t);
    assert!(t.is_active());
    // After DRIVER_OK queue registers are ignored.
    wr(&mut t, reg::QUEUE_READY, 0);
    assert_eq!(rd(&mut t, reg::QUEUE_READY), 1);
}

#[test]
fn notify_signals_the_queue_eventfd_and_bad_indexes_are_ignored() {
    let mut t = transport();
    wr(&mut t, reg::QUEUE_NOTIFY, 5);
    wr(&mut t, reg::QUEUE_NOTIFY, u32::MAX);
    assert!(
        t.queue_evts()[0].read().is_err(),
        "nothing pending (non-blocking read)"
    );
    wr(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(t.queue_evts()[0].read().unwrap(), 1);
    // Notification before setup: consumed, nothing processed, no interrupt.
    wr(&mut t, reg::QUEUE_NOTIFY, 0);
    t.run_queue(0, &mut NullRegistry::default());
    assert_eq!(t.interrupt().raised(), 0);
}

#[test]
fn requests_flow_and_interrupts_ack() {
    let mut t = transport();
    negotiate(&mut t);
    setup_queue(&mut t, 16);
    driver_ok(&mut t);
    let m = t.mem.clone();
    let d = chain(&[(0x8000, 32, true)], 0);
    m.write_obj(d[0], GuestAddress(DESC)).unwrap();
    m.write_obj(0u16, GuestAddress(AVAIL + 4)).unwrap();
    m.write_obj(1u16, GuestAddress(AVAIL + 2)).unwrap();
    wr(&mut t, reg::QUEUE_NOTIFY, 0);
    t.run_queue(0, &mut NullRegistry::default());
    assert_eq!(m.read_obj::<u16>(GuestAddress(USED + 2)).unwrap(), 1);
    assert_eq!(m.read_obj::<u32>(GuestAddress(USED + 8)).unwrap(), 32);
    assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), INT_VRING);
    wr(&mut t, reg::INTERRUPT_STATUS, 0); // read-only
    assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), INT_VRING);
    wr(&mut t, reg::INTERRUPT_ACK, INT_VRING);
    assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), 0);
}

#[test]
fn device_fault_sets_needs_reset_and_reset_recovers() {
    let mut t = transport();
    negotiate(&mut t);
    setup_queue(&mut t, 16);
    driver_ok(&mut t);
    let m = t.mem.clone();
    m.write_obj(40u16, GuestAddress(AVAIL + 2)).unwrap();
    t.run_queue(0, &mut NullRegistry::default());
    assert!(!t.is_active());
    assert_ne!(rd(&mut t, reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
    assert_ne!(rd(&mut t, reg::INTERRUPT_STATUS) & INT_CONFIG, 0);
    // Further notifications do nothing.
    t.run_queue(0, &mut NullRegistry::default());
    // Reset drops queue state; the device can be brought up again.
    wr(&mut t, reg::STATUS, 0);
    assert_eq!(rd(&mut t, reg::STATUS), 0);
    assert_eq!(rd(&mut t, reg::QUEUE_READY), 0);
    assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), 0);
    m.write_obj(0u16, GuestAddress(AVAIL + 2)).unwrap();
    negotiate(&mut t);
    setup_queue(&mut t, 16);
    driver_ok(&mut t);
    assert!(t.is_active());
}

#[test]
fn config_space_is_bounds_checked() {
    let mut t = transport();
    let mut b = [0xffu8; 8];
    t.read(reg::CONFIG, &mut b);
    assert_eq!(b, [0; 8]);
    t.read(reg::WINDOW - 4, &mut b[..4]);
    t.read(u64::MAX - 3, &mut b[..4]);
    t.write(reg::CONFIG, &[1, 2, 3, 4]);
    t.write(u64::MAX - 3, &[1, 2, 3, 4]);
    assert_eq!(b, [0; 8]);
}
