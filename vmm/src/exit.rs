// SPDX-License-Identifier: GPL-3.0-or-later
//! Process exit codes and the "first terminal condition wins" latch shared by
//! the vcpu threads and the VMM thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

/// Guest powered off or reset.
pub const EXIT_OK: i32 = 0;
/// Bad command line.
pub const EXIT_USAGE: i32 = 2;
/// VMM error (setup failure, I/O error, internal failure).
pub const EXIT_VMM_ERROR: i32 = 3;
/// Guest fault (triple fault, KVM internal error, failed entry, unknown exit).
pub const EXIT_GUEST_FAULT: i32 = 4;

/// Why the VM stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Process exit code.
    pub code: i32,
    /// One-line reason for stderr.
    pub reason: String,
}

impl Stop {
    /// A stop with `code` and `reason`.
    pub fn new(code: i32, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// The latch. The first `request` wins; later ones are ignored.
#[derive(Debug)]
pub struct ExitLatch {
    stopping: AtomicBool,
    stop: Mutex<Option<Stop>>,
    /// Signalled on the first request; the VMM thread polls it.
    pub evt: EventFd,
}

impl ExitLatch {
    /// Creates the latch.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            stopping: AtomicBool::new(false),
            stop: Mutex::new(None),
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Records `stop` if nothing was recorded yet and wakes the VMM thread.
    /// Returns true when this call won.
    pub fn request(&self, stop: Stop) -> bool {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return false;
        }
        if let Ok(mut g) = self.stop.lock() {
            *g = Some(stop);
        }
        let _ = self.evt.write(1);
        true
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The recorded stop (or an internal error if the lock was poisoned).
    pub fn take(&self) -> Option<Stop> {
        match self.stop.lock() {
            Ok(mut g) => g.take(),
            Err(_) => Some(Stop::new(
                EXIT_VMM_ERROR,
                "internal error: exit latch poisoned",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_wins() {
        let l = ExitLatch::new().unwrap();
        assert!(!l.is_stopping());
        assert!(l.request(Stop::new(4, "triple fault")));
        assert!(!l.request(Stop::new(0, "reset")));
        assert!(l.is_stopping());
        assert_eq!(l.take(), Some(Stop::new(4, "triple fault")));
        assert_eq!(l.evt.read().unwrap(), 1);
    }
}
