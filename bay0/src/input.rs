// SPDX-License-Identifier: GPL-3.0-or-later
//! Keyboard-class input: the power button and the courier prompt's answer. The kernel's
//! ACPI button driver (and any keyboard with a power key) is an evdev device reporting
//! KEY_POWER; the kernel does not signal init for it, so bay0 watches those devices and
//! a press means "power off cleanly" (this is how QEMU's `system_powerdown` reaches us).
//! Keyboards (KEY_Y) are watched too: their presses and releases go to the courier prompt,
//! dated by the kernel (CLOCK_MONOTONIC), so a press counts from when it was made, not read.

use crate::error::Result;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

/// linux/input-event-codes.h
pub const EV_KEY: u16 = 1;
/// linux/input-event-codes.h
pub const KEY_POWER: u16 = 116;
/// linux/input-event-codes.h: a key every keyboard has.
pub const KEY_Y: u16 = 21;
/// A key press or release: when the kernel saw it (ms of CLOCK_MONOTONIC, which
/// [`open_power_buttons`] asks for), its code, and true for a press.
pub type Press = anchor_policy::arbiter::Key;
/// sizeof(struct input_event) on 64-bit Linux: timeval (16) + type, code (2+2) + value (4).
pub const EVENT_SIZE: usize = 24;
/// At most this many input devices are watched.
pub const MAX_DEVICES: usize = 8;

/// True if an EVIOCGBIT(EV_KEY) bitmap has `key`.
pub fn has_key(bits: &[u8], key: u16) -> bool {
    bits.get(usize::from(key / 8))
        .is_some_and(|b| b & (1 << (key % 8)) != 0)
}

/// The key presses (value 1) and releases (0) in a buffer of raw input events, in order.
pub fn presses(buf: &[u8]) -> impl Iterator<Item = Press> + '_ {
    buf.chunks_exact(EVENT_SIZE).filter_map(|ev| {
        let word = |at: usize| ev.get(at..at + 8)?.try_into().ok().map(i64::from_ne_bytes);
        let field = |at: usize| ev.get(at..at + 2)?.try_into().ok().map(u16::from_ne_bytes);
        let value = ev.get(20..24)?.try_into().ok().map(i32::from_ne_bytes);
        let ms = word(0)?
            .saturating_mul(1000)
            .saturating_add(word(8)? / 1000);
        let key = field(16) == Some(EV_KEY) && matches!(value, Some(0 | 1));
        key.then_some((u64::try_from(ms).unwrap_or(0), field(18)?, value == Some(1)))
    })
}

/// Open every /dev/input/event* that reports KEY_POWER or KEY_Y (non-blocking).
pub fn open_power_buttons() -> Vec<OwnedFd> {
    let Ok(dir) = std::fs::read_dir("/dev/input") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("event"))
        .collect();
    names.sort();
    let open = |name: &String| {
        let path = CString::new(format!("/dev/input/{name}")).ok()?;
        let flags = libc::O_RDONLY | libc::O_NONBLOCK;
        let fd = crate::sys::open("open input device", &path, flags).ok()?;
        let mut bits = [0u8; 96];
        let keys = crate::sys::evdev_key_bits(&fd, &mut bits).is_ok();
        let _ = crate::sys::evdev_monotonic(&fd);
        (keys && (has_key(&bits, KEY_POWER) || has_key(&bits, KEY_Y))).then_some(fd)
    };
    names.iter().filter_map(open).take(MAX_DEVICES).collect()
}

/// Read what is pending on a device: its key presses and releases, in order.
pub fn read_presses(fd: &OwnedFd) -> Result<Vec<Press>> {
    let mut buf = [0u8; EVENT_SIZE * 16];
    let mut n = Vec::new();
    loop {
        let got = match crate::sys::read("read input", fd.as_raw_fd(), &mut buf) {
            Ok(0) => return Ok(n),
            Ok(got) => buf.get(..got).unwrap_or(&[]),
            Err(e) if e.errno() == Some(libc::EAGAIN) => return Ok(n),
            Err(e) => return Err(e.into()),
        };
        n.extend(presses(got));
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
        assert!(!has_key(&bits, KEY_POWER));
        bits[14] = 1 << 4; // 116 = 14 * 8 + 4
        assert!(has_key(&bits, KEY_POWER));
        assert!(!has_key(&bits[..10], KEY_POWER));
        assert!(!has_key(&bits, KEY_Y));
    }

    #[test]
    fn presses_are_read_with_their_time_and_code() {
        let mut buf = Vec::new();
        buf.extend(event(EV_KEY, KEY_POWER, 1)); // press
        buf.extend(event(0, 0, 0)); // SYN_REPORT
        buf.extend(event(EV_KEY, KEY_POWER, 0)); // release
        buf.extend(event(EV_KEY, 30, 2)); // autorepeat of KEY_A
        buf.extend(event(4, KEY_POWER, 1)); // EV_MSC with the same code
        let mut late = event(EV_KEY, KEY_Y, 1);
        late[..8].copy_from_slice(&12i64.to_ne_bytes()); // 12 s
        late[8..16].copy_from_slice(&345_678i64.to_ne_bytes()); // and 345.678 ms
        buf.extend(late);
        assert_eq!(
            presses(&buf).collect::<Vec<_>>(),
            [
                (0, KEY_POWER, true),
                (0, KEY_POWER, false),
                (12_345, KEY_Y, true)
            ]
        );
        // A torn trailing event is ignored.
        assert_eq!(presses(&buf[..buf.len() - 1]).count(), 2);
    }

    #[test]
    fn pending_presses_are_read_in_order() {
        use std::io::Write;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut buf = Vec::new();
        for (code, value) in [
            (KEY_Y, 1),
            (KEY_Y, 0),
            (KEY_Y, 2),
            (49, 1),
            (1, 1),
            (KEY_POWER, 1),
        ] {
            buf.extend(event(EV_KEY, code, value));
        }
        b.write_all(&buf).unwrap();
        let codes: Vec<(u16, bool)> = read_presses(&a.into())
            .unwrap()
            .iter()
            .map(|p| (p.1, p.2))
            .collect();
        let want = [
            (KEY_Y, true),
            (KEY_Y, false),
            (49, true),
            (1, true),
            (KEY_POWER, true),
        ];
        assert_eq!(codes, want);
    }

    #[test]
    fn reading_an_empty_nonblocking_source_gives_no_presses() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        assert!(read_presses(&a.into()).unwrap().is_empty());
    }
}
