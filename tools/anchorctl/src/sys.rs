// SPDX-License-Identifier: GPL-3.0-or-later
//! anchorctl's raw system calls: the terminal mode for `room console`.

/// A terminal in raw mode, restored when dropped. Not a terminal: nothing is changed.
#[derive(Debug)]
pub struct RawTerminal {
    fd: libc::c_int,
    saved: Option<libc::termios>,
}

impl RawTerminal {
    /// Puts `fd` in raw mode (keys pass through unprocessed: Ctrl-C reaches the room).
    pub fn enter(fd: libc::c_int) -> RawTerminal {
        let mut t = core::mem::MaybeUninit::<libc::termios>::zeroed();
        // SAFETY: `t` is a valid, writable termios buffer for the call.
        if unsafe { libc::tcgetattr(fd, t.as_mut_ptr()) } != 0 {
            return RawTerminal { fd, saved: None };
        }
        // SAFETY: tcgetattr succeeded and filled the buffer.
        let saved = unsafe { t.assume_init() };
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: `raw` is a valid termios for the call.
        let ok = unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } == 0;
        RawTerminal {
            fd,
            saved: ok.then_some(saved),
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: `t` is the mode read from this descriptor at `enter`.
            unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &t) };
        }
    }
}

/// Waits up to `ms` milliseconds for `fd` to have input (or to be at its end, or broken);
/// false when it has none yet (or the wait was interrupted).
pub fn wait_input(fd: libc::c_int, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the call.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// read(2) from `fd` (unbuffered: what poll said is there is all there is).
pub fn read(fd: libc::c_int, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}
