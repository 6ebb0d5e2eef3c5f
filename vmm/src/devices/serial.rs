// SPDX-License-Identifier: GPL-3.0-or-later
//! The 16550 UART at 0x3f8 (vm-superio) and its bounded output sink.
//!
//! Output targets: `stdout`, `file:PATH` (created/truncated) and
//! `socket:PATH` (the VMM *connects* to a Unix stream socket someone else
//! listens on, e.g. bay0's logger). The sink never grows without bound:
//! bytes are staged in a fixed 4 KiB line buffer and written out on newline
//! or when full; a non-blocking socket that cannot take more drops bytes
//! (counted) instead of queueing them. Whole lines go out as one write(2) each
//! (on `stdout`, a console other programs write to as well, no other writer can
//! land inside a room's line); a line that stays open (a shell prompt, typed
//! characters being echoed) is written out by `serial_flush` shortly after it
//! started, through the `partial` notifier. vm-superio calls `Write::flush`
//! after every byte the guest sends: that flush is deliberately a no-op here
//! (it used to write every byte out on its own, one write(2) and one VMM
//! thread wake-up per byte); [`Sink::write_out`] is the real one.
//!
//! Input: with `--serial stdout` the VMM's stdin feeds the UART's receive
//! FIFO (see `serial_input`), so a person can type into the room's console.
//! The FIFO is the bound: stdin is read only while it has room, and the
//! guest emptying it wakes the reader again (`InputEvents`).

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use vm_superio::Serial;
use vmm_sys_util::eventfd::EventFd;

use super::irq::IrqLine;

/// Where serial output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialTarget {
    /// The VMM's stdout.
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
    /// A Unix stream socket the VMM connects to.
    Socket(PathBuf),
}

/// Serial errors.
#[derive(Debug)]
pub enum SerialError {
    /// Opening the output target failed.
    Open(PathBuf, io::Error),
}

impl fmt::Display for SerialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(p, e) => write!(f, "cannot open serial output {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for SerialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open(_, e) => Some(e),
        }
    }
}

const SINK_BUF: usize = 4096;

enum Out {
    /// A descriptor of its own for the VMM's stdout (same open file), written unbuffered.
    Stdout(File),
    File(File),
    Socket(UnixStream),
}

/// Bounded output sink.
pub struct Sink {
    out: Out,
    buf: Vec<u8>,
    dropped: u64,
    /// Signalled when a line starts and stays open (stdout only).
    partial: Option<EventFd>,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sink(buffered {}, dropped {})",
            self.buf.len(),
            self.dropped
        )
    }
}

impl Sink {
    /// Opens the target.
    pub fn open(t: &SerialTarget) -> Result<Self, SerialError> {
        let out = match t {
            SerialTarget::Stdout => Out::Stdout(File::from(
                io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| SerialError::Open(PathBuf::from("stdout"), e))?,
            )),
            SerialTarget::File(p) => {
                Out::File(File::create(p).map_err(|e| SerialError::Open(p.clone(), e))?)
            }
            SerialTarget::Socket(p) => {
                let s = UnixStream::connect(p).map_err(|e| SerialError::Open(p.clone(), e))?;
                s.set_nonblocking(true)
                    .map_err(|e| SerialError::Open(p.clone(), e))?;
                Out::Socket(s)
            }
        };
        Ok(Self {
            out,
            buf: Vec::with_capacity(SINK_BUF),
            dropped: 0,
            partial: None,
        })
    }

    /// Line-buffer stdout too: `evt` is signalled whenever a line starts, so the
    /// owner can write out a line that stays open (see `serial_flush`). Without it,
    /// stdout output is written through byte by byte.
    pub fn with_partial_notify(mut self, evt: EventFd) -> Self {
        self.partial = Some(evt);
        self
    }

    /// True when bytes of an unfinished line are waiting.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Writes out whatever is buffered (an open line), now.
    pub fn write_out(&mut self) {
        self.drain();
    }

    /// Bytes dropped because a socket reader was too slow.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn drain(&mut self) {
        let mut done = 0;
        while done < self.buf.len() {
            let rest = self.buf.get(done..).unwrap_or_default();
            let r = match &mut self.out {
                Out::Stdout(s) => s.write(rest),
                Out::File(f) => f.write(rest),
                Out::Socket(s) => s.write(rest),
            };
            match r {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // EAGAIN on a full socket, EPIPE, ENOSPC: drop
            }
        }
        let lost = self.buf.len().saturating_sub(done);
        self.dropped = self.dropped.saturating_add(lost as u64);
        self.buf.clear();
    }

    /// Writes out what the target takes now, without waiting: the VMM thread's flush of
    /// an open line. `stdout` (a pty or pipe, blocking so that a vcpu's output waits for
    /// a slow console) is switched to non-blocking for this write only; the caller holds
    /// the UART, so no vcpu writes meanwhile. What a full console does not take stays
    /// buffered; returns true when bytes are left. Other targets never wait: as `write_out`.
    pub fn write_out_now(&mut self) -> bool {
        let Out::Stdout(f) = &mut self.out else {
            self.drain();
            return false;
        };
        let Ok(restore) = crate::sys::set_nonblocking(f.as_fd(), true) else {
            // Cannot be made non-blocking (not open): the line waits for its newline.
            return false;
        };
        let mut done = 0;
        while let Some(rest) = self.buf.get(done..).filter(|r| !r.is_empty()) {
            match f.write(rest) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // EIO, EPIPE: nobody reads; drop as `drain` does.
                    let lost = self.buf.len().saturating_sub(done);
                    self.dropped = self.dropped.saturating_add(lost as u64);
                    done = self.buf.len();
                }
            }
        }
        if !restore {
            let _ = crate::sys::set_nonblocking(f.as_fd(), false);
        }
        self.buf.drain(..done);
        !self.buf.is_empty()
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        for &b in data {
            if self.buf.len() >= SINK_BUF {
                self.drain();
            }
            self.buf.push(b);
            let stdout = matches!(self.out, Out::Stdout(_));
            if b == b'\n' || (stdout && self.partial.is_none()) {
                self.drain();
            } else if self.buf.len() == 1 {
                if let Some(evt) = &self.partial {
                    // Best effort: a lost wake-up only delays the open line.
                    let _ = evt.write(1);
                }
            }
        }
        Ok(data.len())
    }

    /// A no-op: vm-superio flushes after every byte (see the module doc). Bytes
    /// go out at a newline, when the buffer is full, or through [`Sink::write_out`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// UART events the VMM cares about: the guest has read the last byte of the
/// receive FIFO, so more input may be fed (signalled on an eventfd that the
/// input handler on the VMM thread watches).
#[derive(Debug)]
pub struct InputEvents(pub EventFd);

impl vm_superio::serial::SerialEvents for InputEvents {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        // Best effort: a lost wake-up only delays input until the next key.
        let _ = self.0.write(1);
    }
}

/// The UART, owned behind a mutex by the vcpu threads.
pub struct SerialDevice {
    inner: Serial<IrqLine, InputEvents, Sink>,
}

impl fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SerialDevice")
    }
}

impl SerialDevice {
    /// Creates the UART writing to `sink`, interrupting through `irq`;
    /// `input_room` is signalled whenever the guest empties the receive FIFO.
    pub fn new(irq: impl Into<IrqLine>, sink: Sink, input_room: EventFd) -> Self {
        Self {
            inner: Serial::with_events(irq.into(), InputEvents(input_room), sink),
        }
    }

    /// Free space in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.inner.fifo_capacity()
    }

    /// Queues `bytes` for the guest to read; returns how many fit.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.inner.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// Port read at `offset` (0..8) from the base.
    pub fn read(&mut self, offset: u8) -> u8 {
        self.inner.read(offset)
    }

    /// Port write at `offset` (0..8) from the base. Errors (interrupt delivery) are
    /// ignored: output is best effort and must never stop the vcpu.
    pub fn write(&mut self, offset: u8, value: u8) {
        let _ = self.inner.write(offset, value);
    }

    /// Writes out buffered output (an open line), blocking on a full console.
    pub fn flush(&mut self) {
        self.inner.writer_mut().write_out();
    }

    /// Writes out what the console takes of an open line now, never waiting (the VMM
    /// thread); true when bytes are left for a later try (see [`Sink::write_out_now`]).
    pub fn flush_now(&mut self) -> bool {
        self.inner.writer_mut().write_out_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sink_is_line_buffered_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        let mut s = Sink::open(&SerialTarget::File(p.clone())).unwrap();
        s.write_all(b"abc").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        s.write_all(b"\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc\n");
        let big = vec![b'x'; 3 * SINK_BUF + 5];
        s.write_all(&big).unwrap();
        assert!(s.buf.capacity() <= SINK_BUF + 64);
        s.flush().unwrap();
        assert_ne!(
            std::fs::read(&p).unwrap().len(),
            4 + big.len(),
            "Write::flush (called by vm-superio after every byte) keeps the open line"
        );
        s.write_out();
        assert_eq!(std::fs::read(&p).unwrap().len(), 4 + big.len());
    }

    #[test]
    fn slow_socket_reader_drops_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sock");
        let l = std::os::unix::net::UnixListener::bind(&p).unwrap();
        let mut s = Sink::open(&SerialTarget::Socket(p)).unwrap();
        let _peer = l.accept().unwrap();
        let line = vec![b'y'; 1000];
        for _ in 0..2000 {
            s.write_all(&line).unwrap();
            s.write_all(b"\n").unwrap();
        }
        assert!(s.dropped() > 0);
        assert!(s.buf.capacity() <= SINK_BUF + 64);
    }

    #[test]
    fn stdout_sink_without_a_notifier_writes_through() {
        let mut s = Sink::open(&SerialTarget::Stdout).unwrap();
        s.write_all(b"/ # ").unwrap();
        assert!(s.buf.is_empty(), "a prompt without newline must not wait");
    }

    #[test]
    fn stdout_sink_with_a_notifier_holds_open_lines_and_signals_once_per_line() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut s = Sink::open(&SerialTarget::Stdout)
            .unwrap()
            .with_partial_notify(evt.try_clone().unwrap());
        s.write_all(b"anchor-agent: room ").unwrap();
        assert!(s.has_partial());
        assert_eq!(evt.read().unwrap(), 1, "one signal when the line starts");
        s.write_all(b"base ready\n").unwrap();
        assert!(!s.has_partial(), "a whole line goes out at once");
        assert!(evt.read().is_err(), "no signal for the rest of the line");
        s.write_all(b"/ # ").unwrap();
        assert_eq!(evt.read().unwrap(), 1);
        s.flush().unwrap();
        assert!(s.has_partial(), "Write::flush keeps the open line");
        s.write_out();
        assert!(!s.has_partial(), "write_out writes the open line");
    }

    #[test]
    fn guest_bytes_through_the_uart_go_out_one_line_per_write() {
        // vm-superio flushes its writer after every transmitted byte: the line must
        // still reach the file only at its newline, whole.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o");
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let sink = Sink::open(&SerialTarget::File(p.clone()))
            .unwrap()
            .with_partial_notify(evt.try_clone().unwrap());
        let room = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(IrqLine::none(), sink, room);
        for &b in b"PVH ok" {
            dev.write(0, b);
        }
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"",
            "no byte before the newline"
        );
        assert_eq!(evt.read().unwrap(), 1, "one open-line signal per line");
        dev.write(0, b'\n');
        assert_eq!(std::fs::read(&p).unwrap(), b"PVH ok\n");
        dev.write(0, b'$');
        dev.flush();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"PVH ok\n$",
            "flush writes the open line"
        );
    }

    #[test]
    fn input_fills_the_fifo_up_to_its_size_and_signals_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::open(&SerialTarget::File(dir.path().join("o"))).unwrap();
        let room = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(
            IrqLine::eventfd(irq.try_clone().unwrap()),
            sink,
            room.try_clone().unwrap(),
        );
        // Enable the received-data interrupt (IER bit 0) like a driver does.
        dev.write(1, 1);
        let cap = dev.input_capacity();
        assert!(cap > 0);
        let big = vec![b'k'; cap + 10];
        assert_eq!(
            dev.enqueue_input(&big),
            cap,
            "never more than the FIFO holds"
        );
        assert_eq!(dev.input_capacity(), 0);
        assert_eq!(dev.enqueue_input(b"x"), 0);
        assert_eq!(irq.read().unwrap(), 1, "the guest is interrupted");
        assert!(room.read().is_err(), "no wake-up before the guest reads");
        for _ in 0..cap {
            assert_eq!(dev.read(0), b'k');
        }
        assert_eq!(room.read().unwrap(), 1, "emptying the FIFO signals room");
        assert_eq!(dev.input_capacity(), cap);
    }

    #[test]
    fn an_open_line_for_a_full_console_is_kept_not_waited_for() {
        use std::io::Read;
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let mut fds = [0i32; 2];
        // SAFETY: pipe fills the two-element array it is given.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fds[0] was just made by pipe and nothing else owns it.
        let mut rd = File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        // SAFETY: as above, for fds[1].
        let mut console = File::from(unsafe { OwnedFd::from_raw_fd(fds[1]) });
        // SAFETY: F_SETPIPE_SZ on our own pipe; it takes an int and touches no memory.
        assert!(unsafe { libc::fcntl(console.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) } >= 4096);
        console.write_all(&[b'.'; 4095]).unwrap();
        let mut s = Sink {
            out: Out::Stdout(console.try_clone().unwrap()),
            buf: Vec::new(),
            dropped: 0,
            partial: None,
        };
        s.buf.extend_from_slice(b"/ # ");
        assert!(s.write_out_now(), "a full console leaves the line buffered");
        assert_eq!(s.buf, b"/ # ", "nothing is lost");
        assert_eq!(s.dropped(), 0);
        // SAFETY: F_GETFL only reads our own descriptor's status flags.
        let flags = unsafe { libc::fcntl(console.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0, "the console is blocking again");
        let mut got = vec![0u8; 4095];
        rd.read_exact(&mut got).unwrap();
        assert!(!s.write_out_now(), "room again: the line goes out");
        let mut rest = [0u8; 4];
        rd.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"/ # ");
    }

    #[test]
    fn missing_socket_is_an_error() {
        let e = Sink::open(&SerialTarget::Socket("/nonexistent/sock".into())).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/sock"));
    }
}
