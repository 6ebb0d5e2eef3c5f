// SPDX-License-Identifier: GPL-3.0-or-later
//! What the hostile virtio tests share (hostile_virtio.rs, hostile_virtio_vsock.rs): the
//! virtio-mmio driver steps a script performs, the bounds, and how a run is judged.

use std::time::Duration;

use anchor_vmm::devices::virtio::mmio::{reg, status};

use super::{Outcome, Script};

/// How long one VMM run may take.
pub const T: Duration = Duration::from_secs(30);
/// Peak RSS bound: 32 MiB guest (only a few pages touched) plus the VMM itself.
pub const RSS_BOUND_KIB: u64 = 16 * 1024;

/// VIRTQ_DESC_F_NEXT.
pub const F_NEXT: u64 = 1;
/// VIRTQ_DESC_F_WRITE (device-writable).
pub const F_WRITE: u64 = 2;
/// VIRTQ_DESC_F_INDIRECT.
pub const F_INDIRECT: u64 = 4;

/// Device status after ACKNOWLEDGE and DRIVER.
pub const S_ACK_DRV: u64 = (status::ACKNOWLEDGE | status::DRIVER) as u64;
/// ... and FEATURES_OK.
pub const S_FEAT: u64 = S_ACK_DRV | status::FEATURES_OK as u64;
/// ... and DRIVER_OK.
pub const S_OK: u64 = S_FEAT | status::DRIVER_OK as u64;

/// Virtio-mmio driver steps appended to a script.
impl Script {
    /// Write the 32-bit register `off` of the device at `base`.
    pub fn reg(&mut self, base: u64, off: u64, v: u64) -> &mut Self {
        self.write(base + off, 4, v)
    }
    /// Reset the device, then ACKNOWLEDGE, DRIVER, VERSION_1 and FEATURES_OK.
    pub fn init(&mut self, base: u64) -> &mut Self {
        self.reg(base, reg::STATUS, 0)
            .reg(base, reg::STATUS, u64::from(status::ACKNOWLEDGE))
            .reg(base, reg::STATUS, S_ACK_DRV)
            .reg(base, reg::DRIVER_FEATURES_SEL, 1)
            .reg(base, reg::DRIVER_FEATURES, 1)
            .reg(base, reg::STATUS, S_FEAT)
    }
    /// Set up queue `q` (`size` entries, rings below 4 GiB) and make it ready.
    pub fn queue(
        &mut self,
        base: u64,
        q: u64,
        size: u64,
        desc: u64,
        avail: u64,
        used: u64,
    ) -> &mut Self {
        self.reg(base, reg::QUEUE_SEL, q)
            .reg(base, reg::QUEUE_NUM, size)
            .reg(base, reg::QUEUE_DESC_LOW, desc)
            .reg(base, reg::QUEUE_DESC_HIGH, 0)
            .reg(base, reg::QUEUE_AVAIL_LOW, avail)
            .reg(base, reg::QUEUE_AVAIL_HIGH, 0)
            .reg(base, reg::QUEUE_USED_LOW, used)
            .reg(base, reg::QUEUE_USED_HIGH, 0)
            .reg(base, reg::QUEUE_READY, 1)
    }
    /// Descriptor `i` of the table at `table`.
    pub fn desc(
        &mut self,
        table: u64,
        i: u64,
        addr: u64,
        len: u64,
        flags: u64,
        next: u64,
    ) -> &mut Self {
        self.write(table + 16 * i, 8, addr).write(
            table + 16 * i + 8,
            8,
            (len & 0xffff_ffff) | (flags << 32) | (next << 48),
        )
    }
    /// Put chain `head` in slot `slot` of the available ring at `avail` and publish `idx`.
    pub fn avail(&mut self, avail: u64, slot: u64, head: u64, idx: u64) -> &mut Self {
        self.write(avail + 4 + 2 * slot, 2, head)
            .write(avail + 2, 2, idx)
    }
    /// Notify queue `q` of the device at `base`.
    pub fn notify(&mut self, base: u64, q: u64) -> &mut Self {
        self.reg(base, reg::QUEUE_NOTIFY, q)
    }
}

/// The serial line a READ op prints for the value `v`: "R <16 hex digits>".
pub fn r(v: u64) -> String {
    format!("R {v:016x}")
}

/// Serial lines after the marker line `tag` (fails when the guest never printed it).
pub fn after<'a>(o: &'a Outcome, tag: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = o.serial.lines().collect();
    let i = lines
        .iter()
        .position(|l| *l == tag)
        .unwrap_or_else(|| panic!("no {tag}: {o:#?}"));
    lines[i + 1..].to_vec()
}

/// The VMM neither hung nor died from a signal, its peak RSS stayed under
/// [`RSS_BOUND_KIB`], and the guest ran to END (the VMM exited 0 on its reset).
pub fn assert_served(o: &Outcome) {
    assert!(!o.timed_out, "VMM hung: {o:#?}");
    assert_eq!(o.signal, None, "VMM died from a signal: {o:#?}");
    assert!(
        o.peak_rss_kib < RSS_BOUND_KIB,
        "peak RSS {} KiB: {o:#?}",
        o.peak_rss_kib
    );
    assert_eq!(o.exit_code, Some(0), "{o:#?}");
    assert!(o.serial.ends_with("END\n"), "{o:#?}");
}
