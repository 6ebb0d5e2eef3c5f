// SPDX-License-Identifier: GPL-3.0-or-later
//! The userspace IOAPIC (x86_64, KVM split irqchip) under the interpreter guest: device
//! interrupts reach the local APIC (seen in the APIC's IRR, the guest runs with interrupts
//! off), masked pins hold an edge until they are unmasked, and hostile register
//! programming (odd widths, bogus selects, reserved vectors, unusual delivery modes and
//! destinations, mask storms) leaves the VMM serving. Devices without --disk: 0 = rng
//! (GSI 5), serial on GSI 4.
#![cfg(target_arch = "x86_64")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use anchor_vmm::devices::virtio::mmio::reg;
use common::virtio::{after, assert_served, r, F_WRITE, S_OK, T};
use common::{run_script, virtio_base, Script};

const IOAPIC: u64 = 0xfec0_0000;
const IOWIN: u64 = IOAPIC + 0x10;
const LAPIC: u64 = 0xfee0_0000;
/// Spurious-interrupt vector register: bit 8 enables the local APIC.
const LAPIC_SVR: u64 = LAPIC + 0xf0;
/// rng queue memory and buffer.
const Q: u64 = 0x30_0000;
const BUF: u64 = 0x50_0000;
const MASKED: u64 = 1 << 16;

impl Script {
    /// Select IOAPIC register `sel` and write `val` to it.
    fn ioapic(&mut self, sel: u64, val: u64) -> &mut Self {
        self.write(IOAPIC, 4, sel).write(IOWIN, 4, val)
    }
    /// Redirection entry of `pin`: low dword `low`, destination APIC `dest`.
    fn rte(&mut self, pin: u64, low: u64, dest: u64) -> &mut Self {
        self.ioapic(0x11 + 2 * pin, dest << 24)
            .ioapic(0x10 + 2 * pin, low)
    }
    /// Print the local APIC IRR word that holds `vector`.
    fn irr(&mut self, vector: u64) -> &mut Self {
        self.read(LAPIC + 0x200 + 0x10 * (vector / 32), 4)
    }
    /// Wait until `vector` is pending in the local APIC ("P ok", or "P timeout"). The
    /// rng raises its interrupt from the VMM thread after it updates the used ring the
    /// guest polls, so the guest can see the buffer used before the interrupt arrives
    /// (a read of the IRR right after the poll missed it, one run in a few dozen).
    fn wait_irr(&mut self, vector: u64) -> &mut Self {
        self.poll_bits(LAPIC + 0x200 + 0x10 * (vector / 32), 4, 1 << (vector % 32))
    }
    /// Bring the rng (device 0) up with one 16-entry queue.
    fn rng_up(&mut self) -> &mut Self {
        let b = virtio_base(0);
        self.init(b)
            .queue(b, 0, 16, Q, Q + 0x1000, Q + 0x2000)
            .reg(b, reg::STATUS, S_OK)
    }
    /// Offer rng request number `n` (1-based) and wait until it is used.
    fn rng_request(&mut self, n: u64) -> &mut Self {
        let slot = (n - 1) % 16;
        self.desc(Q, slot, BUF, 16, F_WRITE, 0)
            .avail(Q + 0x1000, slot, slot, n)
            .notify(virtio_base(0), 0)
            .poll(Q + 0x2002, 2, n)
    }
}

/// Whether the IRR word printed on `line` ("R <hex>") has `vector` pending.
fn pending(line: &str, vector: u64) -> bool {
    let v = u64::from_str_radix(line.trim_start_matches("R "), 16).unwrap();
    v & (1 << (vector % 32)) != 0
}

#[test]
fn a_virtio_interrupt_reaches_the_local_apic_and_a_masked_pin_waits_for_its_unmask() {
    let mut s = Script::new();
    s.write(LAPIC_SVR, 4, 0x1ff)
        .rng_up()
        // Pin 5 (the rng): vector 0x41 to APIC 0, unmasked.
        .rte(5, 0x41, 0)
        .rng_request(1)
        .wait_irr(0x41)
        .print("UNMASKED")
        .irr(0x41)
        .read(virtio_base(0) + reg::INTERRUPT_STATUS, 4)
        // Masked with vector 0x51: the edge is held...
        .rte(5, 0x51 | MASKED, 0)
        .rng_request(2)
        .print("MASKED")
        .irr(0x51)
        // ... and delivered when the guest unmasks the pin.
        .ioapic(0x10 + 2 * 5, 0x51)
        .wait_irr(0x51)
        .print("UNMASK")
        .irr(0x51)
        .end();
    let o = run_script(&s, &[], T);
    assert_served(&o);
    let a = after(&o, "UNMASKED");
    assert!(pending(a[0], 0x41), "{o:#?}");
    assert_eq!(a[1], r(1), "InterruptStatus: used buffer: {o:#?}");
    assert!(
        !pending(after(&o, "MASKED")[0], 0x51),
        "held while masked: {o:#?}"
    );
    assert!(
        pending(after(&o, "UNMASK")[0], 0x51),
        "delivered on unmask: {o:#?}"
    );
}

#[test]
fn a_serial_interrupt_is_delivered_from_the_vcpu_thread() {
    // The UART raises its THR-empty interrupt while the vcpu thread handles the port
    // write, so the IOAPIC sends the message from there (under the vcpu seccomp filter).
    let mut s = Script::new();
    s.write(LAPIC_SVR, 4, 0x1ff)
        .rte(4, 0x61, 0)
        .outb(0x3f9, 0x02) // IER: transmitter holding register empty
        .outb(0x3f8, b'x')
        .print("")
        .print("SERIAL")
        .irr(0x61)
        .end();
    let o = run_script(&s, &[], T);
    assert_eq!(o.exit_code, Some(0), "{o:#?}");
    assert_eq!(o.signal, None, "{o:#?}");
    assert!(pending(after(&o, "SERIAL")[0], 0x61), "{o:#?}");
}

#[test]
fn hostile_ioapic_programming_leaves_the_vmm_serving() {
    let mut s = Script::new();
    s.write(LAPIC_SVR, 4, 0x1ff).rng_up();
    // Odd widths and offsets, selects past the table, read-only registers.
    for (off, size) in [
        (0u64, 1u32),
        (0, 2),
        (0, 8),
        (0x10, 1),
        (0x10, 8),
        (0x14, 4),
        (0x40, 4),
    ] {
        s.write(IOAPIC + off, size, u64::MAX)
            .read(IOAPIC + off, size);
    }
    for sel in [0x01u64, 0x02, 0x03, 0x40, 0xff, 0x1_0000] {
        s.ioapic(sel, 0xffff_ffff);
    }
    s.print("REGS")
        .write(IOAPIC, 4, 0x01)
        .read(IOWIN, 4)
        .write(IOAPIC, 4, 0x10 + 2 * 5)
        .read(IOWIN, 4);
    // Reserved vectors, lowest priority to a logical mask, a destination that does not
    // exist, ExtINT: each delivered (or dropped) without harm.
    let mut n = 0;
    for (low, dest) in [
        (0x05u64, 0u64),
        (0x43 | (1 << 8) | (1 << 11), 0x0f),
        (0x44, 7),
        (0x45 | (7 << 8), 0),
        (0x46 | (1 << 15) | (1 << 13), 0),
    ] {
        n += 1;
        s.rte(5, low, dest).rng_request(n);
    }
    // A mask/unmask storm with an edge held.
    s.rte(5, 0x47 | MASKED, 0).rng_request(n + 1);
    s.repeat(500, 2)
        .ioapic(0x10 + 2 * 5, 0x47)
        .ioapic(0x10 + 2 * 5, 0x47 | MASKED);
    s.print("SERVE")
        .rte(5, 0x48, 0)
        .rng_request(n + 2)
        .wait_irr(0x48)
        .irr(0x48)
        .irr(0x46)
        .end();
    let o = run_script(&s, &[], T);
    assert_served(&o);
    let regs = after(&o, "REGS");
    assert_eq!(regs[0], r(0x0005_0011), "version is read-only: {o:#?}");
    let a = after(&o, "SERVE");
    assert_eq!(a[..2], ["P ok", "P ok"], "{o:#?}");
    assert!(pending(a[2], 0x48), "{o:#?}");
    assert!(
        pending(a[3], 0x46),
        "a level entry is delivered as an edge: {o:#?}"
    );
}

#[test]
fn the_ioapic_has_the_pins_the_rooms_devices_use_and_no_more() {
    // Without --disk and vsock: the serial line (pin 4) and the rng (pin 5), so six pins:
    // the version register says "highest entry 5", and entry 6 does not exist.
    let mut s = Script::new();
    s.write(LAPIC_SVR, 4, 0x1ff)
        .write(IOAPIC, 4, 0x01)
        .read(IOWIN, 4)
        .ioapic(0x10 + 2 * 6, 0x41)
        .read(IOWIN, 4)
        .ioapic(0x10 + 2 * 5, 0x41 | MASKED)
        .read(IOWIN, 4)
        .end();
    let o = run_script(&s, &[], T);
    assert_eq!(o.exit_code, Some(0), "{o:#?}");
    let lines: Vec<&str> = o.serial.lines().collect();
    assert_eq!(
        lines,
        [r(0x0005_0011).as_str(), &r(0), &r(0x41 | MASKED), "END"],
        "{o:#?}"
    );
    // With vsock too: seven pins, and the vsock device's interrupt (pin 6) is wired.
    let uds = common::unique("ioapic-vsock");
    let mut s = Script::new();
    s.write(IOAPIC, 4, 0x01).read(IOWIN, 4).end();
    let o = run_script(
        &s,
        &["--vsock-cid", "3", "--vsock-uds", uds.to_str().unwrap()],
        T,
    );
    let _ = std::fs::remove_file(&uds);
    assert_eq!(o.exit_code, Some(0), "{o:#?}");
    assert_eq!(
        o.serial.lines().next(),
        Some(r(0x0006_0011).as_str()),
        "{o:#?}"
    );
}
