// SPDX-License-Identifier: GPL-3.0-or-later
//! One vsock stream connection between a guest port and a host Unix stream, with
//! virtio-vsock credit accounting.

use std::io::{ErrorKind, Read, Write};
use std::time::Instant;

use super::packet::{Header, HOST_CID, OP_RW, TYPE_STREAM};

/// Receive buffer we advertise to the guest, and the bound on bytes we hold for a
/// connection (data the guest sent that the host has not taken yet). 256 KiB keeps several
/// 64 KiB guest packets in flight per credit update (each update is a round trip through
/// the rx queue and an interrupt); at most MAX_CONNS x this is ever held.
pub const BUF_ALLOC: u32 = 256 * 1024;

/// Control packets a connection owes the guest.
pub mod need {
    pub const REQUEST: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const CREDIT: u8 = 4;
    pub const SHUTDOWN: u8 = 8;
    pub const RST: u8 = 16;
}

/// Connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Host-initiated, waiting for the guest's RESPONSE until the deadline.
    Connecting(Instant),
    /// Data flows.
    Established,
    /// We sent SHUTDOWN after the host closed, or the guest closed while data for the
    /// host was still buffered: closed (with an RST to the guest) at the deadline.
    Closing(Instant),
}

/// A host stream as seen by a connection (a `UnixStream` in the VMM, a mock in tests).
pub trait HostStream: Read + Write {
    /// Stop sending to the host side (guest sent SHUTDOWN with the SEND flag).
    fn shutdown_write(&mut self);
}

impl HostStream for std::os::unix::net::UnixStream {
    fn shutdown_write(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// Outcome of moving guest data towards the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deliver {
    /// Taken (written or buffered).
    Ok,
    /// The guest sent more than the credit we gave it, or the host stream failed.
    Reset,
}

/// The host stream failed (the connection must be reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBroken;

/// A connection.
#[derive(Debug)]
pub struct Conn<S> {
    /// Host stream.
    pub stream: S,
    /// Host-side port.
    pub local_port: u32,
    /// Guest-side port.
    pub peer_port: u32,
    /// Guest CID.
    pub guest_cid: u64,
    /// State.
    pub state: State,
    /// Packets owed to the guest ([`need`] bits).
    pub needs: u8,
    /// The guest's advertised receive buffer.
    pub peer_buf_alloc: u32,
    /// Bytes the guest says it consumed.
    pub peer_fwd_cnt: u32,
    /// Bytes we sent to the guest.
    pub rx_cnt: u32,
    /// Bytes of guest data we handed to the host.
    pub fwd_cnt: u32,
    /// `fwd_cnt` as last told to the guest.
    pub last_fwd_cnt_sent: u32,
    /// Guest data the host stream did not take yet (at most [`BUF_ALLOC`] bytes).
    pub tx_buf: Vec<u8>,
    /// The host stream reported readable and has not hit `WouldBlock` since.
    pub readable: bool,
    /// The host closed its side.
    pub host_eof: bool,
    /// The guest will send no more.
    pub guest_no_send: bool,
    /// The guest will receive no more.
    pub guest_no_recv: bool,
}

impl<S: HostStream> Conn<S> {
    /// A connection in `state` owing the guest `needs`.
    pub fn new(
        stream: S,
        local_port: u32,
        peer_port: u32,
        guest_cid: u64,
        state: State,
        needs: u8,
    ) -> Self {
        Self {
            stream,
            local_port,
            peer_port,
            guest_cid,
            state,
            needs,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            rx_cnt: 0,
            fwd_cnt: 0,
            last_fwd_cnt_sent: 0,
            tx_buf: Vec::new(),
            readable: false,
            host_eof: false,
            guest_no_send: false,
            guest_no_recv: false,
        }
    }

    /// A header from us to the guest on this connection, carrying our credit.
    pub fn header(&mut self, op: u16, len: u32, flags: u32) -> Header {
        self.last_fwd_cnt_sent = self.fwd_cnt;
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// Record the credit fields of a guest packet.
    pub fn update_peer_credit(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    /// Bytes we may still send to the guest. A guest reporting nonsense (consumed more
    /// than we sent) gets no extra credit: in-flight is clamped to its buffer.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn note_forwarded(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.fwd_cnt = self.fwd_cnt.wrapping_add(n);
        if self.fwd_cnt.wrapping_sub(self.last_fwd_cnt_sent) >= BUF_ALLOC / 4 {
            self.needs |= need::CREDIT;
        }
    }

    /// Write as much of `data` as the host takes; keep the rest (bounded by `BUF_ALLOC`).
    pub fn deliver(&mut self, data: &[u8]) -> Deliver {
        let mut rest = data;
        if self.tx_buf.is_empty() {
            match self.write_some(rest) {
                Ok(n) => rest = rest.get(n..).unwrap_or(&[]),
                Err(()) => return Deliver::Reset,
            }
        }
        if rest.is_empty() {
            return Deliver::Ok;
        }
        let total = self.tx_buf.len().saturating_add(rest.len());
        if total > BUF_ALLOC as usize {
            return Deliver::Reset;
        }
        self.tx_buf.extend_from_slice(rest);
        Deliver::Ok
    }

    /// The host stream became writable: flush what we hold.
    pub fn flush(&mut self) -> Deliver {
        if self.tx_buf.is_empty() {
            return Deliver::Ok;
        }
        let buf = std::mem::take(&mut self.tx_buf);
        let n = match self.write_some(&buf) {
            Ok(n) => n,
            Err(()) => return Deliver::Reset,
        };
        self.tx_buf = buf;
        self.tx_buf.drain(..n.min(self.tx_buf.len()));
        if self.tx_buf.is_empty() && self.guest_no_send {
            self.stream.shutdown_write();
            if self.guest_no_recv {
                // The guest closed and the host now has all it sent: finish with RST.
                self.needs |= need::RST;
            }
        }
        Deliver::Ok
    }

    fn write_some(&mut self, data: &[u8]) -> Result<usize, ()> {
        let mut done = 0;
        while let Some(rest) = data.get(done..) {
            if rest.is_empty() {
                break;
            }
            match self.stream.write(rest) {
                Ok(0) => return Err(()),
                Ok(n) => {
                    done = done.saturating_add(n);
                    self.note_forwarded(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return Err(()),
            }
        }
        Ok(done)
    }

    /// Read host data for an RW packet of at most `max` payload bytes into `buf`.
    /// `Ok(None)`: nothing to send now. `Ok(Some(0))` never happens: EOF is reported
    /// through `host_eof` and a SHUTDOWN need.
    pub fn read_for_guest(
        &mut self,
        buf: &mut [u8],
        max: usize,
    ) -> Result<Option<(Header, usize)>, StreamBroken> {
        if self.state != State::Established || !self.readable || self.host_eof || self.guest_no_recv
        {
            return Ok(None);
        }
        let credit = usize::try_from(self.peer_credit()).unwrap_or(usize::MAX);
        let want = max.min(credit).min(buf.len());
        if want == 0 {
            return Ok(None);
        }
        let Some(dst) = buf.get_mut(..want) else {
            return Ok(None);
        };
        loop {
            match self.stream.read(dst) {
                Ok(0) => {
                    self.host_eof = true;
                    self.needs |= need::SHUTDOWN;
                    return Ok(None);
                }
                Ok(n) => {
                    let len = u32::try_from(n).unwrap_or(0);
                    self.rx_cnt = self.rx_cnt.wrapping_add(len);
                    let h = self.header(OP_RW, len, 0);
                    return Ok(Some((h, n)));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(None);
                }
                Err(_) => return Err(StreamBroken),
            }
        }
    }
}
