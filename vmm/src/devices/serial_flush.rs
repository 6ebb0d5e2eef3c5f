// SPDX-License-Identifier: GPL-3.0-or-later
//! Writes out a console line that stays open. The UART's sink holds output until a
//! newline so that each line reaches the console, file or socket in one write(2)
//! (see `serial`); a shell prompt or the echo of typed characters has no
//! newline, so when a line starts the sink signals `started`, and this handler, on
//! the VMM thread, arms a one-shot timer and writes out whatever of the line is
//! there when it fires. A line the guest finishes within [`OPEN_LINE_DELAY`] (a line
//! of ~60 characters even at ~150 us per byte under nested virtualization) still goes
//! out whole; a longer one goes out in pieces, which only a shared target (stdout of a
//! hosted VMM) could show torn: a room's console is a pty bay0 alone reads. The delay
//! is also how late the echo of a typed key appears, so it is kept short.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use crate::devices::serial::SerialDevice;

/// How long an open line may wait before it is written out anyway.
pub const OPEN_LINE_DELAY: Duration = Duration::from_millis(10);

/// Open-line flusher for the serial sink (every target).
#[derive(Debug)]
pub struct SerialFlush {
    serial: Arc<Mutex<SerialDevice>>,
    started: EventFd,
    timer: TimerFd,
}

impl SerialFlush {
    /// Flushes `serial`'s open line [`OPEN_LINE_DELAY`] after `started` is signalled.
    pub fn new(serial: Arc<Mutex<SerialDevice>>, started: EventFd) -> std::io::Result<Self> {
        let timer = TimerFd::new().map_err(std::io::Error::from)?;
        Ok(Self {
            serial,
            started,
            timer,
        })
    }
}

impl MutEventSubscriber for SerialFlush {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == self.started.as_raw_fd() {
            let _ = self.started.read();
            // A timer that cannot be armed leaves the line for the next newline.
            let _ = self.timer.reset(OPEN_LINE_DELAY, None);
        } else if events.fd() == self.timer.as_raw_fd() {
            let _ = self.timer.wait();
            // Never wait here, for the UART or for the console: a vcpu holds the UART
            // while its write blocks on a console that stopped reading (backpressure on
            // the guest), and this thread runs every virtio device and the exit latch.
            // A busy UART, or a line a full console did not take, is tried again a delay
            // later.
            let again = match self.serial.try_lock() {
                Ok(mut s) => s.flush_now(),
                Err(TryLockError::WouldBlock) => true,
                Err(TryLockError::Poisoned(_)) => false,
            };
            if again {
                let _ = self.timer.reset(OPEN_LINE_DELAY, None);
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        // Without these registrations open lines wait for their newline: harmless.
        let _ = ops.add(Events::new(&self.started, EventSet::IN));
        let _ = ops.add(Events::new(&self.timer, EventSet::IN));
    }
}
