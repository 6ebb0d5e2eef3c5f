// SPDX-License-Identifier: GPL-3.0-or-later
//! Keyboard-class input: the power button. The kernel's ACPI button driver (and any
//! keyboard with a power key) is an evdev device reporting KEY_POWER; the kernel does
//! not signal init for it, so bay0 watches those devices and a press means "power off
//! cleanly". This is how QEMU's `system_powerdown` reaches us.

use crate::error::Result;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

/// linux/input-event-codes.h
pub const EV_KEY: u16 = 1;
/// linux/input-event-codes.h
pub const KEY_POWER: u16 = 116;
/// sizeof(struct input_event) on 64-bit Linux: timeval (16) + type, code (2+2) + value (4).
pub const EVENT_SIZE: usize = 24;
/// At most this many input devices are watched.
pub const MAX_DEVICES: usize = 8;

/// True if an EVIOCGBIT(EV_KEY) bitmap has KEY_POWER.
pub fn has_power_key(bits: &[u8]) -> bool {
    let byte = usize::from(KEY_POWER / 8);
    bits.get(byte)
        .is_some_and(|b| b & (1 << (KEY_POWER % 8)) != 0)
}

/// Count KEY_POWER presses (value 1) in a buffer of raw input events.
pub fn power_presses(buf: &[u8]) -> usize {
    buf.chunks_exact(EVENT_SIZE)
        .filter(|ev| {
            let field = |at: usize| ev.get(at..at + 2).and_then(|b| <[u8; 2]>::try_from(b).ok());
            let ty = field(16).map(u16::from_ne_bytes);
            let code = field(18).map(u16::from_ne_bytes);
            let value = ev
                .get(20..24)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(i32::from_ne_bytes);
            ty == Some(EV_KEY) && code == Some(KEY_POWER) && value == Some(1)
        })
        .count()
}

/// Open every /dev/input/event* that reports KEY_POWER (non-blocking).
pub fn open_power_buttons() -> Vec<OwnedFd> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/dev/input") else {
        return found;
    };
    let mut names: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        if found.len() >= MAX_DEVICES {
            break;
        }
        if !name.to_str().is_some_and(|n| n.starts_with("event")) {
            continue;
        }
        let mut path = b"/dev/input/".to_vec();
        path.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()));
        let Ok(path) = CString::new(path) else {
            continue;
        };
        let Ok(fd) = crate::sys::open(
            "open input device",
            &path,
            libc::O_RDONLY | libc::O_NONBLOCK,
        ) else {
            continue;
        };
        let mut bits = [0u8; 96];
        if crate::sys::evdev_key_bits(&fd, &mut bits).is_ok() && has_power_key(&bits) {
            found.push(fd);
        }
    }
    found
}

/// Read what is pending on a device; returns the number of power presses.
pub fn read_presses(fd: &OwnedFd) -> Result<usize> {
    let mut buf = [0u8; EVENT_SIZE * 16];
    let mut presses = 0;
    loop {
        match crate::sys::read("read input", fd.as_raw_fd(), &mut buf) {
            Ok(0) => return Ok(presses),
            Ok(n) => presses += power_presses(buf.get(..n).unwrap_or(&[])),
            Err(e) if e.errno() == Some(libc::EAGAIN) => return Ok(presses),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ty: u16, code: u16, value: i32) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&code.to_ne_bytes());
        v.extend_from_slice(&value.to_ne_bytes());
        v
    }

    #[test]
    fn power_key_bit_is_found() {
        let mut bits = [0u8; 96];
        assert!(!has_power_key(&bits));
        bits[14] = 1 << 4; // 116 = 14 * 8 + 4
        assert!(has_power_key(&bits));
        assert!(!has_power_key(&bits[..10]));
    }

    #[test]
    fn only_power_presses_count() {
        let mut buf = Vec::new();
        buf.extend(event(EV_KEY, KEY_POWER, 1)); // press
        buf.extend(event(0, 0, 0)); // SYN_REPORT
        buf.extend(event(EV_KEY, KEY_POWER, 0)); // release
        buf.extend(event(EV_KEY, 30, 1)); // KEY_A
        buf.extend(event(4, KEY_POWER, 1)); // EV_MSC with the same code
        assert_eq!(power_presses(&buf), 1);
        buf.extend(event(EV_KEY, KEY_POWER, 1));
        assert_eq!(power_presses(&buf), 2);
        // A torn trailing event is ignored.
        assert_eq!(power_presses(&buf[..buf.len() - 1]), 1);
    }

    #[test]
    fn reading_an_empty_nonblocking_source_gives_no_presses() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        assert_eq!(read_presses(&a.into()).unwrap(), 0);
    }
}
