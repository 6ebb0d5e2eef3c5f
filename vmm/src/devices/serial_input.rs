// SPDX-License-Identifier: GPL-3.0-or-later
//! Event plumbing that feeds the VMM's stdin into the guest UART, so a person
//! can type into a room's console (`--serial stdout`). The FIFO logic lives in
//! `serial.rs`; this handler only moves bytes on the VMM thread:
//!
//! - stdin is read only while the receive FIFO has room, at most that many
//!   bytes at a time (no buffer grows with what is typed or piped in);
//! - when the FIFO is full, stdin is taken out of the epoll set until the guest
//!   has read the FIFO empty (`InputEvents` signals `room`);
//! - end of input, or a stdin that cannot be polled (e.g. /dev/null or a regular
//!   file), just ends input: the room keeps running;
//! - the UART is never waited for: a vcpu holds it while its output blocks on a console
//!   that stopped reading, and this is the VMM thread (every virtio device, the exit
//!   latch). stdin then leaves the epoll set and is polled again [`RETRY`] later.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use crate::devices::serial::SerialDevice;

/// Most bytes moved per event (the 16550 FIFO holds 64).
const CHUNK: usize = 64;

/// How long input waits when a vcpu holds the UART.
pub const RETRY: Duration = Duration::from_millis(10);

/// stdin -> UART receive FIFO.
#[derive(Debug)]
pub struct SerialInput {
    serial: Arc<Mutex<SerialDevice>>,
    input: File,
    room: EventFd,
    /// Resumes polling stdin after the UART was busy (`None`: no timer could be made,
    /// and input then waits for the UART instead).
    retry: Option<TimerFd>,
    polling: bool,
    ended: bool,
}

impl SerialInput {
    /// Feeds `input` (normally a dup of stdin) to `serial`; `room` is the
    /// eventfd the UART signals when the guest empties its FIFO.
    pub fn new(serial: Arc<Mutex<SerialDevice>>, input: OwnedFd, room: EventFd) -> Self {
        Self {
            serial,
            input: File::from(input),
            room,
            retry: TimerFd::new().ok(),
            polling: false,
            ended: false,
        }
    }

    fn stop_polling(&mut self, ops: &mut EventOps) {
        if self.polling {
            let _ = ops.remove(Events::new(&self.input, EventSet::IN));
            self.polling = false;
        }
    }

    fn start_polling(&mut self, ops: &mut EventOps) {
        if !self.polling && !self.ended {
            match ops.add(Events::new(&self.input, EventSet::IN)) {
                Ok(()) => self.polling = true,
                Err(_) => self.ended = true,
            }
        }
    }

    /// Moves what fits from the input to the FIFO.
    fn feed(&mut self, ops: &mut EventOps) {
        let dev = Arc::clone(&self.serial);
        let mut serial = match dev.try_lock() {
            Ok(s) => s,
            Err(TryLockError::WouldBlock) => {
                if let Some(t) = self.retry.as_mut() {
                    if t.reset(RETRY, None).is_ok() {
                        self.stop_polling(ops);
                        return;
                    }
                }
                match dev.lock() {
                    Ok(s) => s,
                    Err(_) => {
                        self.ended = true;
                        self.stop_polling(ops);
                        return;
                    }
                }
            }
            Err(TryLockError::Poisoned(_)) => {
                self.ended = true;
                self.stop_polling(ops);
                return;
            }
        };
        let room = serial.input_capacity().min(CHUNK);
        if room == 0 {
            drop(serial);
            self.stop_polling(ops);
            return;
        }
        let mut buf = [0u8; CHUNK];
        let Some(dst) = buf.get_mut(..room) else {
            return;
        };
        match self.input.read(dst) {
            Ok(0) => {
                drop(serial);
                self.ended = true;
                self.stop_polling(ops);
            }
            Ok(n) => {
                serial.enqueue_input(buf.get(..n).unwrap_or_default());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                drop(serial);
                self.ended = true;
                self.stop_polling(ops);
            }
        }
    }
}

impl MutEventSubscriber for SerialInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.room.as_raw_fd() {
            let _ = self.room.read();
            self.start_polling(ops);
            return;
        }
        if let Some(t) = self.retry.as_mut().filter(|t| events.fd() == t.as_raw_fd()) {
            let _ = t.wait();
            self.start_polling(ops);
            return;
        }
        if events.fd() == self.input.as_raw_fd() {
            if events.event_set().contains(EventSet::IN) {
                self.feed(ops);
            } else {
                // HUP/ERR without data: the terminal or pipe is gone.
                self.ended = true;
                self.stop_polling(ops);
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if ops.add(Events::new(&self.room, EventSet::IN)).is_err() {
            self.ended = true;
            return;
        }
        if let Some(t) = &self.retry {
            if ops.add(Events::new(t, EventSet::IN)).is_err() {
                self.retry = None;
            }
        }
        self.start_polling(ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::serial::{SerialTarget, Sink};
    use event_manager::{EventManager, SubscriberOps};
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    type Sub = Arc<Mutex<dyn MutEventSubscriber + Send>>;

    fn uart(dir: &std::path::Path) -> (Arc<Mutex<SerialDevice>>, EventFd) {
        let sink = Sink::open(&SerialTarget::File(dir.join("out"))).unwrap();
        let room = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let dev = SerialDevice::new(
            crate::devices::irq::IrqLine::eventfd(irq),
            sink,
            room.try_clone().unwrap(),
        );
        (Arc::new(Mutex::new(dev)), room)
    }

    #[test]
    fn typed_bytes_reach_the_fifo_and_a_full_fifo_pauses_input() {
        let dir = tempfile::tempdir().unwrap();
        let (serial, room) = uart(dir.path());
        let (mut host, vmm_side) = UnixStream::pair().unwrap();
        vmm_side.set_nonblocking(true).unwrap();
        let input = SerialInput::new(serial.clone(), OwnedFd::from(vmm_side), room);
        let sub: Sub = Arc::new(Mutex::new(input));
        let mut em = EventManager::<Sub>::new().unwrap();
        em.add_subscriber(sub);

        host.write_all(b"ls\n").unwrap();
        em.run_with_timeout(100).unwrap();
        let mut got = Vec::new();
        {
            let mut s = serial.lock().unwrap();
            while s.input_capacity() < 64 {
                got.push(s.read(0));
            }
        }
        assert_eq!(got, b"ls\n");

        // 200 bytes pasted: only what fits (64) is taken; the rest waits in
        // the socket until the guest reads the FIFO empty.
        host.write_all(&[b'p'; 200]).unwrap();
        for _ in 0..4 {
            em.run_with_timeout(50).unwrap();
        }
        assert_eq!(serial.lock().unwrap().input_capacity(), 0);
        let mut total = 0;
        for _ in 0..10 {
            {
                let mut s = serial.lock().unwrap();
                while s.input_capacity() < 64 {
                    assert_eq!(s.read(0), b'p');
                    total += 1;
                }
            }
            em.run_with_timeout(50).unwrap();
            em.run_with_timeout(50).unwrap();
        }
        assert_eq!(total, 200, "every pasted byte arrives, in order, none lost");
    }

    #[test]
    fn an_unpollable_or_closed_input_just_ends_input() {
        let dir = tempfile::tempdir().unwrap();
        let (serial, room) = uart(dir.path());
        let devnull: OwnedFd = File::open("/dev/null").unwrap().into();
        let sub: Sub = Arc::new(Mutex::new(SerialInput::new(serial.clone(), devnull, room)));
        let mut em = EventManager::<Sub>::new().unwrap();
        em.add_subscriber(sub);
        assert_eq!(em.run_with_timeout(10).unwrap(), 0);

        let (serial, room) = uart(dir.path());
        let (host, vmm_side) = UnixStream::pair().unwrap();
        let input = Arc::new(Mutex::new(SerialInput::new(
            serial.clone(),
            OwnedFd::from(vmm_side),
            room,
        )));
        let sub: Sub = input.clone();
        let mut em = EventManager::<Sub>::new().unwrap();
        em.add_subscriber(sub);
        drop(host);
        em.run_with_timeout(100).unwrap();
        assert!(input.lock().unwrap().ended);
        assert_eq!(serial.lock().unwrap().input_capacity(), 64);
    }
}
