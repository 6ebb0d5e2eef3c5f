// SPDX-License-Identifier: GPL-3.0-or-later
//! A small userspace IOAPIC (82093AA register model, version 0x11, up to 24 pins) for KVM's
//! split irqchip: KVM emulates only the local APICs, so the VM has no in-kernel PIC, IOAPIC
//! or PIT, whose setup and teardown cost most of a microVM's cold start on this host.
//!
//! A room's IOAPIC has only the pins its devices use (the serial line and one per virtio
//! device, see `layout::ioapic_pins`), and says so in its version register. Linux reads
//! and masks every redirection entry when it shuts down or resets (`clear_IO_APIC`), two
//! register accesses and four VM exits per entry. A room with a disk and the rng, booted
//! and reset: 360 IOAPIC exits with 24 pins, 156 with its 7.
//!
//! Every device line here is edge-triggered (the MP table wires every pin as ISA,
//! conforming = edge), which keeps the model small:
//! - a device asserting pin N looks up redirection entry N and sends the message it
//!   describes (vector, delivery mode, destination) straight to the local APICs with
//!   KVM_SIGNAL_MSI: no irqfd, no GSI routing table;
//! - an edge on a masked pin is remembered (one bit per pin) and delivered when the guest
//!   unmasks the pin, as KVM's own IOAPIC does;
//! - remote IRR and delivery status always read 0: an entry programmed level-triggered is
//!   delivered like an edge (no EOI round trip), which can only confuse the guest itself;
//! - fixed and lowest-priority messages with a vector in 0..=15 (reserved on x86) are
//!   dropped; NMI, SMI, INIT and ExtINT entries are sent as programmed.
//!
//! Guest-facing: registers are 32-bit at IOREGSEL (0x00) and IOWIN (0x10); any other
//! width or offset reads 0 and writes nothing. No allocation, no panics, bounded work per
//! access (at most one message per access or per assert).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::devices::bus::MmioDevice;
use crate::devices::irq::Trigger;

/// Guest-physical base of the IOAPIC (also in the MP table).
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of its MMIO window.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// The most pins an IOAPIC here has (the 82093AA's 24).
pub const MAX_PINS: usize = 24;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_ID: u32 = 0x00;
const REG_VER: u32 = 0x01;
const REG_ARB: u32 = 0x02;
const REG_REDTBL: u32 = 0x10;
/// Version 0x11; the highest redirection entry's index goes in bits 16..=23.
const VERSION: u32 = 0x11;
/// Writable bits of the ID register (APIC ID, bits 24..=27).
const ID_MASK: u32 = 0x0f00_0000;

const RTE_MASKED: u64 = 1 << 16;
/// Bits of a redirection entry the guest may set: vector, delivery mode, destination
/// mode, polarity, trigger mode, mask (low dword), destination (bits 56..=63).
const RTE_WRITABLE: u64 = 0xff00_0000_0001_afff;

/// Where messages go: KVM_SIGNAL_MSI in the VMM, a recorder in tests.
pub trait MsiSink: Send + Sync {
    /// Send the MSI `data` to `address`.
    fn signal(&self, address: u64, data: u32);
}

/// The register state.
#[derive(Debug)]
struct Regs {
    sel: u32,
    id: u32,
    /// Pins that exist (1..=MAX_PINS); entries past them stay unused.
    pins: usize,
    rte: [u64; MAX_PINS],
    /// Edges that arrived while their pin was masked.
    pending: u32,
}

/// The IOAPIC.
pub struct Ioapic {
    regs: Mutex<Regs>,
    msi: Box<dyn MsiSink>,
}

impl std::fmt::Debug for Ioapic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ioapic")
    }
}

/// The message an unmasked redirection entry sends, or `None` for a fixed or
/// lowest-priority entry with a reserved vector (0..=15).
pub fn message(rte: u64) -> Option<(u64, u32)> {
    let vector = (rte & 0xff) as u32;
    let delivery = ((rte >> 8) & 0x7) as u32;
    if vector < 16 && delivery <= 1 {
        return None;
    }
    let logical = (rte >> 11) & 1;
    let dest = (rte >> 56) & 0xff;
    // Lowest priority asks for redirection (RH); the destination mode is DM.
    let rh = u64::from(delivery == 1);
    let address = 0xfee0_0000 | (dest << 12) | (rh << 3) | (logical << 2);
    // Always edge (trigger bit 15 clear): see the module doc.
    Some((address, vector | (delivery << 8)))
}

impl Ioapic {
    /// An IOAPIC with `pins` pins (clamped to 1..=MAX_PINS), every one masked (the reset
    /// state), sending through `msi`.
    pub fn new(pins: usize, msi: Box<dyn MsiSink>) -> Self {
        Self {
            regs: Mutex::new(Regs {
                sel: 0,
                id: 0,
                pins: pins.clamp(1, MAX_PINS),
                rte: [RTE_MASKED; MAX_PINS],
                pending: 0,
            }),
            msi,
        }
    }

    fn regs(&self) -> MutexGuard<'_, Regs> {
        // Every update is a plain store: a poisoned lock still holds consistent state
        // (and the VMM aborts on panic anyway).
        self.regs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many pins this IOAPIC has.
    pub fn pins(&self) -> usize {
        self.regs().pins
    }

    /// An edge on `pin` (device interrupt). Pins past the last do not exist.
    pub fn assert_edge(&self, pin: usize) {
        let msg = {
            let mut r = self.regs();
            let Some(&rte) = r.entry(pin) else { return };
            if rte & RTE_MASKED != 0 {
                r.pending |= 1 << pin;
                return;
            }
            message(rte)
        };
        if let Some((address, data)) = msg {
            self.msi.signal(address, data);
        }
    }

    fn read_reg(&self, r: &Regs) -> u32 {
        match r.sel {
            REG_ID | REG_ARB => r.id,
            // `pins` is 1..=24, so the index fits bits 16..=23.
            REG_VER => VERSION | ((r.pins.saturating_sub(1) as u32) << 16),
            s if s >= REG_REDTBL => {
                let i = ((s - REG_REDTBL) / 2) as usize;
                let Some(&rte) = r.entry(i) else { return 0 };
                if s % 2 == 0 {
                    (rte & 0xffff_ffff) as u32
                } else {
                    (rte >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    /// Applies a write to the selected register; returns the message a pending edge
    /// releases (the pin was unmasked).
    fn write_reg(r: &mut Regs, val: u32) -> Option<(u64, u32)> {
        match r.sel {
            REG_ID => r.id = val & ID_MASK,
            s if s >= REG_REDTBL => {
                let i = ((s - REG_REDTBL) / 2) as usize;
                let slot = r.entry_mut(i)?;
                let new = if s % 2 == 0 {
                    (*slot & !0xffff_ffff) | u64::from(val)
                } else {
                    (*slot & 0xffff_ffff) | (u64::from(val) << 32)
                };
                *slot = new & RTE_WRITABLE;
                let rte = *slot;
                let bit = 1u32 << i;
                if rte & RTE_MASKED == 0 && r.pending & bit != 0 {
                    r.pending &= !bit;
                    return message(rte);
                }
            }
            // Version and arbitration are read-only; other indexes do not exist.
            _ => {}
        }
        None
    }

    /// A redirection entry (tests).
    pub fn rte(&self, pin: usize) -> Option<u64> {
        self.regs().entry(pin).copied()
    }
}

impl Regs {
    /// Redirection entry `pin`, if that pin exists.
    fn entry(&self, pin: usize) -> Option<&u64> {
        self.rte.get(..self.pins)?.get(pin)
    }

    fn entry_mut(&mut self, pin: usize) -> Option<&mut u64> {
        self.rte.get_mut(..self.pins)?.get_mut(pin)
    }
}

/// The IOAPIC's register window on the MMIO bus.
#[derive(Debug)]
pub struct IoapicMmio(pub Arc<Ioapic>);

impl MmioDevice for IoapicMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if data.len() != 4 {
            return;
        }
        let r = self.0.regs();
        let v = match offset {
            IOREGSEL => r.sel,
            IOWIN => self.0.read_reg(&r),
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let val = u32::from_le_bytes(bytes);
        let msg = {
            let mut r = self.0.regs();
            match offset {
                IOREGSEL => {
                    r.sel = val & 0xff;
                    None
                }
                IOWIN => Ioapic::write_reg(&mut r, val),
                _ => None,
            }
        };
        if let Some((address, data)) = msg {
            self.0.msi.signal(address, data);
        }
    }
}

/// Pin `pin` of an IOAPIC, as a device's interrupt line.
#[derive(Debug)]
pub struct IoapicPin {
    /// The IOAPIC.
    pub ioapic: Arc<Ioapic>,
    /// The pin (below the IOAPIC's `pins()`).
    pub pin: usize,
}

impl Trigger for IoapicPin {
    fn trigger(&self) -> std::io::Result<()> {
        self.ioapic.assert_edge(self.pin);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec(Mutex<Vec<(u64, u32)>>);
    impl MsiSink for Arc<Rec> {
        fn signal(&self, address: u64, data: u32) {
            self.0.lock().unwrap().push((address, data));
        }
    }

    fn ioapic() -> (Arc<Ioapic>, IoapicMmio, Arc<Rec>) {
        ioapic_with(MAX_PINS)
    }

    fn ioapic_with(pins: usize) -> (Arc<Ioapic>, IoapicMmio, Arc<Rec>) {
        let rec = Arc::new(Rec::default());
        let io = Arc::new(Ioapic::new(pins, Box::new(rec.clone())));
        (io.clone(), IoapicMmio(io), rec)
    }

    fn wr(m: &mut IoapicMmio, reg: u32, v: u32) {
        m.write(IOREGSEL, &reg.to_le_bytes());
        m.write(IOWIN, &v.to_le_bytes());
    }

    fn rd(m: &mut IoapicMmio, reg: u32) -> u32 {
        m.write(IOREGSEL, &reg.to_le_bytes());
        let mut b = [0u8; 4];
        m.read(IOWIN, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn identity_and_reset_state() {
        let (_, mut m, rec) = ioapic();
        assert_eq!(rd(&mut m, REG_VER), 0x0017_0011);
        wr(&mut m, REG_ID, 0xffff_ffff);
        assert_eq!(rd(&mut m, REG_ID), 0x0f00_0000);
        assert_eq!(rd(&mut m, REG_ARB), 0x0f00_0000);
        wr(&mut m, REG_VER, 0);
        assert_eq!(rd(&mut m, REG_VER), 0x0017_0011);
        for pin in 0..MAX_PINS as u32 {
            assert_eq!(
                rd(&mut m, REG_REDTBL + 2 * pin),
                1 << 16,
                "pin {pin} masked"
            );
        }
        assert!(rec.0.lock().unwrap().is_empty());
    }

    #[test]
    fn an_unmasked_pin_sends_its_message() {
        let (io, mut m, rec) = ioapic();
        // Pin 5: vector 0x41, fixed, physical, destination APIC 2.
        wr(&mut m, REG_REDTBL + 11, 2 << 24);
        wr(&mut m, REG_REDTBL + 10, 0x41);
        io.assert_edge(5);
        // Pin 6: vector 0x50, lowest priority, logical, destination mask 3.
        wr(&mut m, REG_REDTBL + 13, 3 << 24);
        wr(&mut m, REG_REDTBL + 12, 0x50 | (1 << 8) | (1 << 11));
        io.assert_edge(6);
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                (0xfee0_2000, 0x41),
                (0xfee0_3000 | (1 << 3) | (1 << 2), 0x150)
            ]
        );
    }

    #[test]
    fn an_edge_on_a_masked_pin_waits_for_the_unmask() {
        let (io, mut m, rec) = ioapic();
        wr(&mut m, REG_REDTBL + 8, 0x30 | RTE_MASKED as u32);
        io.assert_edge(4);
        io.assert_edge(4);
        assert!(rec.0.lock().unwrap().is_empty());
        // Unmask: one message for the remembered edges, then none.
        wr(&mut m, REG_REDTBL + 8, 0x30);
        wr(&mut m, REG_REDTBL + 8, 0x30);
        assert_eq!(*rec.0.lock().unwrap(), [(0xfee0_0000, 0x30)]);
    }

    #[test]
    fn level_entries_are_delivered_as_edges_and_read_only_bits_stay_clear() {
        let (io, mut m, rec) = ioapic();
        // Level, active low, delivery status and remote IRR bits set by the guest.
        wr(
            &mut m,
            REG_REDTBL,
            0x45 | (1 << 15) | (1 << 13) | (1 << 12) | (1 << 14),
        );
        assert_eq!(rd(&mut m, REG_REDTBL), 0x45 | (1 << 15) | (1 << 13));
        io.assert_edge(0);
        io.assert_edge(0);
        assert_eq!(*rec.0.lock().unwrap(), [(0xfee0_0000, 0x45); 2]);
    }

    #[test]
    fn hostile_accesses_are_harmless() {
        let (io, mut m, rec) = ioapic();
        // Reserved vectors are dropped.
        wr(&mut m, REG_REDTBL + 2, 0x0f);
        io.assert_edge(1);
        // Pins that do not exist.
        io.assert_edge(24);
        io.assert_edge(usize::MAX);
        // Registers past the table, odd widths and offsets.
        for sel in [0x03, 0x0f, 0x40, 0x41, 0xff] {
            wr(&mut m, sel, u32::MAX);
            assert_eq!(rd(&mut m, sel), 0, "register {sel:#x}");
        }
        assert_eq!(rd(&mut m, REG_ID), 0);
        assert_eq!(rd(&mut m, REG_VER), 0x0017_0011);
        for off in [0x04, 0x0c, 0x14, 0x20, 0x40, 0xffc] {
            m.write(off, &[0xff; 4]);
            let mut b = [0xffu8; 4];
            m.read(off, &mut b);
            assert_eq!(b, [0; 4], "offset {off:#x}");
        }
        m.write(IOREGSEL, &[0x10]);
        m.write(IOWIN, &[0xff; 8]);
        let mut b = [0xffu8; 8];
        m.read(IOWIN, &mut b);
        assert_eq!(b, [0; 8]);
        assert_eq!(rd(&mut m, REG_REDTBL), 1 << 16, "untouched by odd widths");
        assert!(rec.0.lock().unwrap().is_empty());
        assert_eq!(io.rte(1), Some(0x0f));
    }

    #[test]
    fn a_small_ioapic_reports_and_serves_only_its_pins() {
        let (io, mut m, rec) = ioapic_with(7);
        assert_eq!(io.pins(), 7);
        // Highest entry 6 in bits 16..=23: the guest reads and masks seven entries.
        assert_eq!(rd(&mut m, REG_VER), 0x0006_0011);
        wr(&mut m, REG_REDTBL + 12, 0x41);
        assert_eq!(rd(&mut m, REG_REDTBL + 12), 0x41);
        io.assert_edge(6);
        assert_eq!(*rec.0.lock().unwrap(), [(0xfee0_0000, 0x41)]);
        // Pin 7 and up do not exist: their registers read 0, keep nothing, send nothing.
        wr(&mut m, REG_REDTBL + 14, 0x42);
        assert_eq!(rd(&mut m, REG_REDTBL + 14), 0);
        assert_eq!(io.rte(7), None);
        io.assert_edge(7);
        assert_eq!(rec.0.lock().unwrap().len(), 1);
        // Out-of-range counts are clamped to 1..=24.
        assert_eq!(ioapic_with(0).0.pins(), 1);
        assert_eq!(ioapic_with(1000).0.pins(), MAX_PINS);
        let (_, mut one, _) = ioapic_with(0);
        assert_eq!(rd(&mut one, REG_VER), 0x11);
    }

    #[test]
    fn message_encoding() {
        assert_eq!(message(0x0f), None);
        assert_eq!(message(0x10), Some((0xfee0_0000, 0x10)));
        assert_eq!(message(0x10f), None, "lowest priority, reserved vector");
        // NMI (delivery mode 4) to APIC 0xff in physical mode: the vector does not matter.
        assert_eq!(message(0xff00_0000_0000_0402), Some((0xfeef_f000, 0x402)));
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Op {
            Read(u64, usize),
            Write(u64, usize, u32),
            Assert(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            let off = prop_oneof![Just(0u64), Just(0x10), 0u64..0x1000];
            let width = prop_oneof![Just(4usize), Just(1), Just(2), Just(8)];
            prop_oneof![
                (off.clone(), width.clone()).prop_map(|(o, w)| Op::Read(o, w)),
                (off, width, any::<u32>()).prop_map(|(o, w, v)| Op::Write(o, w, v)),
                (0usize..30).prop_map(Op::Assert),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Whatever the guest and the devices do: no panic, at most one message per
            /// step, never a fixed message with a reserved vector, read-only RTE bits read
            /// as 0, and an edge is never lost while its pin stays unmasked.
            #[test]
            fn any_sequence_is_safe(
                ops in proptest::collection::vec(op(), 0..200),
                pins in 1usize..=MAX_PINS,
            ) {
                let (io, mut m, rec) = ioapic_with(pins);
                for op in ops {
                    let before = rec.0.lock().unwrap().len();
                    match op {
                        Op::Read(o, w) => {
                            let mut b = [0u8; 8];
                            m.read(o, &mut b[..w]);
                        }
                        Op::Write(o, w, v) => {
                            let b = (u64::from(v) | (u64::from(v) << 32)).to_le_bytes();
                            m.write(o, &b[..w]);
                        }
                        Op::Assert(pin) => {
                            let unmasked = io.rte(pin).is_some_and(|r| r & RTE_MASKED == 0);
                            let deliverable = io.rte(pin).and_then(message).is_some();
                            io.assert_edge(pin);
                            let after = rec.0.lock().unwrap().len();
                            prop_assert_eq!(after - before, usize::from(unmasked && deliverable));
                        }
                    }
                    let msgs = rec.0.lock().unwrap();
                    prop_assert!(msgs.len() - before <= 1);
                    for &(addr, data) in msgs.iter() {
                        prop_assert_eq!(addr & 0xfff0_0000, 0xfee0_0000);
                        let (vector, mode) = (data & 0xff, (data >> 8) & 7);
                        prop_assert!(vector >= 16 || mode > 1);
                        prop_assert_eq!(data & (1 << 15), 0, "always an edge");
                    }
                    prop_assert_eq!(io.rte(pins), None);
                    for pin in 0..pins {
                        let rte = io.rte(pin).unwrap();
                        prop_assert_eq!(rte & ((1 << 12) | (1 << 14)), 0);
                    }
                }
            }
        }
    }
}
