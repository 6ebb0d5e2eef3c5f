// SPDX-License-Identifier: GPL-3.0-or-later
//! The 16550 UART at 0x3f8 (vm-superio) and its bounded output sink.
//!
//! Output targets: `stdout`, `file:PATH` (created/truncated) and
//! `socket:PATH` (the VMM *connects* to a Unix stream socket someone else
//! listens on, e.g. bay0's logger). The sink never grows without bound:
//! bytes are staged in a fixed 4 KiB line buffer and written out on newline
//! or when full; a non-blocking socket that cannot take more drops bytes
//! (counted) instead of queueing them. Serial input is not wired up: rooms
//! talk to the host over vsock.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

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
    Stdout(io::Stdout),
    File(File),
    Socket(UnixStream),
}

/// Bounded output sink.
pub struct Sink {
    out: Out,
    buf: Vec<u8>,
    dropped: u64,
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
            SerialTarget::Stdout => Out::Stdout(io::stdout()),
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
        })
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
        if let Out::Stdout(s) = &mut self.out {
            let _ = s.flush();
        }
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        for &b in data {
            if self.buf.len() >= SINK_BUF {
                self.drain();
            }
            self.buf.push(b);
            if b == b'\n' {
                self.drain();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain();
        Ok(())
    }
}

/// vm-superio interrupt trigger over an irqfd.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// The UART, owned behind a mutex by the vcpu threads.
pub struct SerialDevice {
    inner: Serial<IrqTrigger, vm_superio::serial::NoEvents, Sink>,
}

impl fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SerialDevice")
    }
}

impl SerialDevice {
    /// Creates the UART writing to `sink`, interrupting through `irq`.
    pub fn new(irq: EventFd, sink: Sink) -> Self {
        Self {
            inner: Serial::new(IrqTrigger(irq), sink),
        }
    }

    /// Port read at `offset` (0..8) from the base.
    pub fn read(&mut self, offset: u8) -> u8 {
        self.inner.read(offset)
    }

    /// Port write at `offset` (0..8) from the base. Errors (irqfd write) are
    /// ignored: output is best effort and must never stop the vcpu.
    pub fn write(&mut self, offset: u8, value: u8) {
        let _ = self.inner.write(offset, value);
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) {
        let _ = self.inner.writer_mut().flush();
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
    fn missing_socket_is_an_error() {
        let e = Sink::open(&SerialTarget::Socket("/nonexistent/sock".into())).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/sock"));
    }
}
