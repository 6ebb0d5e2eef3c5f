// SPDX-License-Identifier: GPL-3.0-or-later
//! Process exit codes and the "first terminal condition wins" latch shared by
//! the vcpu threads and the VMM thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

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
///
/// Invariant: once `is_stopping()` is true, `take()` returns the winning
/// `Stop` (the flag is raised only after the `Stop` is stored, both under the
/// mutex), so the runner never sees "stopping" without a reason.
#[derive(Debug)]
pub struct ExitLatch {
    stopping: AtomicBool,
    stop: Mutex<Slot>,
    /// Signalled on the first request; the VMM thread polls it.
    pub evt: EventFd,
}

/// What the mutex guards: whether a request already won, and its `Stop`
/// until the runner takes it.
#[derive(Debug, Default)]
struct Slot {
    won: bool,
    stop: Option<Stop>,
}

impl ExitLatch {
    /// Creates the latch.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            stopping: AtomicBool::new(false),
            stop: Mutex::new(Slot::default()),
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // A poisoned latch still holds a consistent Slot (every write is one
        // assignment); the release profile aborts on panic anyway.
        self.stop.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `stop` if nothing was recorded yet and wakes the VMM thread.
    /// Returns true when this call won.
    pub fn request(&self, stop: Stop) -> bool {
        let mut g = self.slot();
        if g.won {
            return false;
        }
        g.won = true;
        g.stop = Some(stop);
        // Raised only now that the Stop is stored (and still under the lock).
        self.stopping.store(true, Ordering::Release);
        drop(g);
        let _ = self.evt.write(1);
        true
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The recorded stop (`None` before any request, or once taken).
    pub fn take(&self) -> Option<Stop> {
        self.slot().stop.take()
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

    /// Regression (review): the flag used to be raised before the Stop was
    /// stored, so a runner polling `is_stopping()` could `take()` nothing and
    /// exit 3 "stopped without a reason". While another thread holds the
    /// latch's lock, a request in flight must not be visible as stopping.
    #[test]
    fn stopping_is_never_visible_before_its_stop() {
        use std::sync::Arc;
        use std::time::Duration;
        let l = Arc::new(ExitLatch::new().unwrap());
        let held = l.slot();
        let l2 = l.clone();
        let t = std::thread::spawn(move || l2.request(Stop::new(4, "triple fault")));
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !l.is_stopping(),
            "is_stopping() is true while the Stop is not stored yet"
        );
        drop(held);
        assert!(t.join().unwrap());
        assert!(l.is_stopping());
        assert_eq!(l.take(), Some(Stop::new(4, "triple fault")));
    }

    /// Many racing requesters against a runner that polls like runner.rs:
    /// whenever it sees stopping, take() yields the one winner.
    #[test]
    fn racing_requests_always_leave_a_reason() {
        use std::sync::Arc;
        for round in 0..200 {
            let l = Arc::new(ExitLatch::new().unwrap());
            let threads: Vec<_> = (0..4)
                .map(|i| {
                    let l = l.clone();
                    std::thread::spawn(move || l.request(Stop::new(i, format!("r{round}"))))
                })
                .collect();
            while !l.is_stopping() {
                std::hint::spin_loop();
            }
            let got = l.take();
            let wins = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|w| *w)
                .count();
            assert_eq!(wins, 1);
            assert!(got.is_some(), "round {round}: stopping without a reason");
        }
    }
}
