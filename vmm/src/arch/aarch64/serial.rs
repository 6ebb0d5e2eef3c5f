// SPDX-License-Identifier: GPL-3.0-or-later
//! The UART on arm64: the same 16550 model as x86_64's port 0x3f8 device
//! (`devices::serial`), reached through an MMIO window instead of port I/O.
//! Registers are bytes at offsets 0..8 (`reg-shift` 0, `reg-io-width` 1 in
//! the device tree). Why a 16550 and not a PL011: one device model, one input
//! path (stdin -> receive FIFO) and one tested implementation for both
//! architectures, and the room's console is `ttyS0` on both, so bay0's room
//! command line does not change per architecture (Firecracker made the same choice).

use std::sync::{Arc, Mutex};

use crate::devices::bus::MmioDevice;
use crate::devices::serial::SerialDevice;

/// Number of byte registers of a 16550.
const REGISTERS: u64 = 8;

/// MMIO front of the shared UART.
#[derive(Debug)]
pub struct SerialMmio(pub Arc<Mutex<SerialDevice>>);

impl MmioDevice for SerialMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= REGISTERS {
            return;
        }
        if let (Some(first), Ok(mut s)) = (data.first_mut(), self.0.lock()) {
            *first = s.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= REGISTERS {
            return;
        }
        if let (Some(&v), Ok(mut s)) = (data.first(), self.0.lock()) {
            s.write(offset as u8, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::serial::{SerialTarget, Sink};
    use vmm_sys_util::eventfd::EventFd;

    #[test]
    fn registers_are_bytes_and_the_rest_reads_zero() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let sink = Sink::open(&SerialTarget::File(out.clone())).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let room = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let dev = Arc::new(Mutex::new(SerialDevice::new(irq, sink, room)));
        let mut m = SerialMmio(dev.clone());
        for b in b"hi\n" {
            m.write(0, &[*b]);
        }
        assert_eq!(std::fs::read(&out).unwrap(), b"hi\n");
        let mut lsr = [0u8; 1];
        m.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60, "transmitter empty");
        // Outside the 8 registers: reads zero, writes ignored, wide reads padded.
        let mut wide = [0xaau8; 8];
        m.read(0x800, &mut wide);
        assert_eq!(wide, [0; 8]);
        m.write(0xfff, b"x");
        m.read(5, &mut wide[..4]);
        assert_eq!(wide[1..4], [0, 0, 0]);
        dev.lock().unwrap().flush();
        assert_eq!(std::fs::read(&out).unwrap(), b"hi\n");
    }
}
