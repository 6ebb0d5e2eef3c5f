// SPDX-License-Identifier: GPL-3.0-or-later
//! The virtio-mmio register state machine and its worker, driven like a hostile guest:
//! register reads and writes of any width and offset (status sequences, feature bits
//! including EVENT_IDX, queue setup, notify, ack, reset), guest-memory pokes into the
//! rings, and event-loop turns of the worker, in any order. Never panics; the register side
//! answers within bounds; the register page (what the guest reads without an exit) always
//! shows the transport's status and InterruptStatus.
#![no_main]

use anchor_vmm::devices::bus::MmioDevice;
use anchor_vmm::devices::irq::IrqLine;
use anchor_vmm::devices::virtio::mmio::{reg, MmioTransport};
use anchor_vmm::devices::virtio::queue::{Interrupt, NullRegistry};
use anchor_vmm::devices::virtio::rng::Rng;
use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: u64 = 0x10_0000;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)]) else {
        return;
    };
    let Ok(rng) = Rng::new() else { return };
    let Ok(interrupt) = Interrupt::new(IrqLine::none()) else {
        return;
    };
    let Ok((mut t, worker)) = MmioTransport::with_interrupt(mem.clone(), interrupt, rng) else {
        return;
    };
    let page = t.register_page();
    let mut reg = NullRegistry::default();
    for op in data.chunks_exact(8) {
        let kind = op[0] & 3;
        let width = [1usize, 2, 4, 8][usize::from(op[1] & 3)];
        // Mostly register offsets (0..0x200), sometimes anywhere in the window and beyond.
        let off = u64::from(u16::from_le_bytes([op[2], op[3]]));
        let off = if op[1] & 0x80 != 0 { off } else { off % 0x200 };
        let val = u32::from_le_bytes([op[4], op[5], op[6], op[7]]);
        match kind {
            0 => {
                let mut b = [0u8; 8];
                t.read(off, &mut b[..width]);
            }
            1 => {
                let v = u64::from(val) | (u64::from(val) << 32);
                t.write(off, &v.to_le_bytes()[..width]);
            }
            2 => {
                if let Ok(mut w) = worker.lock() {
                    w.run_queue(usize::from(op[2] & 1), &mut reg);
                }
            }
            _ => {
                // Poke guest memory where rings and buffers live (first 64 KiB).
                let addr = (off * 4) % 0x1_0000;
                let _ = mem.write_obj(val, GuestAddress(addr));
            }
        }
        // The page the guest reads without an exit always shows the transport's status
        // (DEVICE_NEEDS_RESET included) and the same InterruptStatus.
        let word = |off: u64| page.word(off).map(|w| w.load(Ordering::SeqCst));
        assert_eq!(word(reg::STATUS), Some(t.status()));
        assert_eq!(word(reg::INTERRUPT_STATUS), Some(t.interrupt().status()));
    }
});
