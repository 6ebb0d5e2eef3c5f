// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-vsock in Firecracker's hybrid model: guest stream ports map to host Unix sockets.
//!
//! - Host-initiated: a host process connects to `uds_path` and writes `CONNECT <port>\n`
//!   (at most [`MAX_CONNECT_LINE`] bytes). We send the guest an OP_REQUEST; on its
//!   OP_RESPONSE the host gets `OK <host_port>\n`; on RST, or no answer within
//!   [`CONNECT_TIMEOUT`], the host stream is closed. Host connections are only taken while
//!   the driver is active.
//! - Guest-initiated: OP_REQUEST to host port P connects (non-blocking) to `<uds_path>_<P>`;
//!   OP_RESPONSE on success, RST otherwise.
//! - Limits: [`MAX_CONNS`] connections, [`MAX_PENDING`] host sockets still sending their
//!   CONNECT line, [`conn::BUF_ALLOC`] bytes buffered per connection, [`MAX_ORPHANS`]
//!   queued RST replies; one queue's worth of chains per queue per event.

pub mod conn;
mod event_handler;
pub mod packet;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use event_manager::EventSet;
use virtio_queue::{DescriptorChain, Queue};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::timerfd::TimerFd;

use super::mmio::EXTRA_EVENT_BASE;
use super::queue::{
    chain_copy, chain_len, drain_queue, Budget, DeviceFault, FdRegistry, Pass, Step,
};
use super::{sys, VirtioError, VsockConfig};
use conn::{need, Conn, Deliver, State};
use packet::{Header, PacketError, HDR_LEN, HOST_CID, TYPE_STREAM};

/// Maximum live connections.
pub const MAX_CONNS: usize = 32;
/// Maximum host sockets that have not finished their CONNECT line.
pub const MAX_PENDING: usize = 8;
/// Maximum RST replies waiting for an rx buffer (more are dropped).
pub const MAX_ORPHANS: usize = 64;
/// Longest accepted `CONNECT <port>\n` line.
pub const MAX_CONNECT_LINE: usize = 32;
/// How long a host CONNECT waits for the guest (and a closing connection for its RST).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes moved per event-loop turn (tx and rx together).
pub const TURN_BYTES: u64 = 256 * 1024;
/// Queue sizes: rx, tx, event.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE];
const RXQ: usize = 0;
const TXQ: usize = 1;
const CHUNK: usize = 4096;
/// Guest data is copied to the host stream in pieces of this size (one write each); the
/// buffer is allocated once per device.
const TX_CHUNK: usize = 64 * 1024;
const FIRST_LOCAL_PORT: u32 = 1 << 30;
const EV_LISTENER: u32 = EXTRA_EVENT_BASE;
const EV_TIMER: u32 = EXTRA_EVENT_BASE + 1;
const EV_PENDING: u32 = EXTRA_EVENT_BASE + 0x100;
const EV_CONN: u32 = EXTRA_EVENT_BASE + 0x200;
/// Housekeeping period. The timer runs from creation on (armed before seccomp), so no
/// timerfd_settime is needed while the VM runs.
const TICK: Duration = Duration::from_millis(500);

/// Where the device reads the time its deadlines are set and checked against: the
/// monotonic clock in production ([`MonotonicClock`]); tests and the fuzz harness move
/// their own to reach the timeouts at will.
pub trait Clock: Send + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// `clock`'s now plus [`CONNECT_TIMEOUT`].
fn deadline(clock: &dyn Clock) -> Instant {
    let now = clock.now();
    now.checked_add(CONNECT_TIMEOUT).unwrap_or(now)
}

/// A host socket that has not sent its CONNECT line yet.
#[derive(Debug)]
struct Pending {
    stream: UnixStream,
    line: [u8; MAX_CONNECT_LINE],
    len: usize,
    deadline: Instant,
}

/// Why a host connection was closed before it reached the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The first line was not `CONNECT <port>\n`.
    BadConnectLine,
    /// The guest driver is not active.
    Inactive,
    /// [`MAX_CONNS`] connections are live.
    TableFull,
    /// [`MAX_PENDING`] host sockets are still sending their CONNECT line.
    TooManyPending,
    /// No complete CONNECT line within [`CONNECT_TIMEOUT`].
    NoConnectLine,
    /// The event loop refused to watch the stream (resource exhaustion).
    Unwatchable,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadConnectLine => "the first line was not `CONNECT <port>`",
            Self::Inactive => "the guest's vsock driver is not active",
            Self::TableFull => "too many connections",
            Self::TooManyPending => "too many host sockets still sending CONNECT",
            Self::NoConnectLine => "no CONNECT line in time",
            Self::Unwatchable => "cannot watch the stream (event loop refused it)",
        })
    }
}

/// The vsock device.
#[derive(Debug)]
pub struct Vsock {
    guest_cid: u64,
    config: [u8; 8],
    uds_path: PathBuf,
    listener: UnixListener,
    /// The housekeeping timer, non-blocking: an expiry read when none is due returns at
    /// once instead of stalling the VMM thread until the next one.
    timer: TimerFd,
    /// The time deadlines are set and checked against.
    clock: Box<dyn Clock>,
    pending: Vec<Option<Pending>>,
    conns: Vec<Option<Conn<UnixStream>>>,
    orphans: VecDeque<Header>,
    /// Streams dropped by a reset, to unregister at the next event-loop turn.
    graveyard: Vec<UnixStream>,
    next_local_port: u32,
    rr: usize,
    active: bool,
    /// The listener is not watched: accept(2) failed for want of resources (or the event
    /// loop refused it); the next tick watches it again.
    listener_paused: bool,
    /// accept(2) has failed since the last connection it gave (said once per such run).
    accept_failing: bool,
    /// Host connections closed before reaching the guest, and the last reason.
    refused: u64,
    last_refusal: Option<Refusal>,
    /// Held (flock) for the life of the device: one VMM per socket path.
    _lock: std::fs::File,
    /// Copy buffer for guest packets ([`TX_CHUNK`] bytes).
    tx_scratch: Box<[u8]>,
}

fn rst_reply(h: &Header, guest_cid: u64) -> Header {
    Header {
        src_cid: HOST_CID,
        dst_cid: guest_cid,
        src_port: h.dst_port,
        dst_port: h.src_port,
        len: 0,
        type_: TYPE_STREAM,
        op: packet::OP_RST,
        flags: 0,
        buf_alloc: 0,
        fwd_cnt: 0,
    }
}

/// The OP_SHUTDOWN (both directions) that `c` owes the guest; `c` then waits (bounded)
/// for the guest's RST.
fn shutdown_packet(c: &mut Conn<UnixStream>, clock: &dyn Clock) -> (Header, usize) {
    c.needs &= !need::SHUTDOWN;
    c.state = State::Closing(deadline(clock));
    let flags = packet::SHUTDOWN_RCV | packet::SHUTDOWN_SEND;
    (c.header(packet::OP_SHUTDOWN, 0, flags), 0)
}

/// The lock file that claims `uds` for one VMM: `<uds>.lock`.
pub fn lock_path(uds: &std::path::Path) -> PathBuf {
    let mut p = uds.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Make `uds` free for our bind (we hold its lock): nothing there, or a stale socket
/// (connecting is refused: its listener is gone), which is removed. A live listener or
/// any other kind of file is an error.
fn claim_path(uds: &std::path::Path) -> Result<(), VirtioError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(uds) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(VirtioError::VsockBind(uds.to_path_buf(), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(VirtioError::VsockInUse(
            uds.to_path_buf(),
            "it exists and is not a socket",
        ));
    }
    match sys::connect_unix_nonblocking(uds) {
        // Someone accepts (or would, once its backlog drains): it is live.
        Ok(_) => Err(VirtioError::VsockInUse(
            uds.to_path_buf(),
            "a live listener owns it",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(VirtioError::VsockInUse(
            uds.to_path_buf(),
            "a live listener owns it",
        )),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            std::fs::remove_file(uds).map_err(|e| VirtioError::VsockBind(uds.to_path_buf(), e))
        }
        Err(e) => Err(VirtioError::VsockBind(uds.to_path_buf(), e)),
    }
}

/// Parse `CONNECT <port>\n`.
pub fn parse_connect(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let port = text.strip_prefix("CONNECT ")?.trim_end_matches('\n');
    if port.is_empty() || port.len() > 10 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

impl Vsock {
    /// Bind `cfg.uds_path`, created with mode 0600 whatever the umask. The path is
    /// claimed first with an exclusive lock on `<uds_path>.lock` (held for the life of the
    /// device): a second VMM for the same path is refused. A socket file already at the
    /// path is replaced only when nobody listens on it (a stale one, left by a VMM that
    /// died); a live listener, or a file that is not a socket, is refused.
    pub fn new(cfg: &VsockConfig) -> Result<Self, VirtioError> {
        Self::with_clock(cfg, Box::new(MonotonicClock))
    }

    /// [`Self::new`] with its deadlines on `clock` (tests and fuzzing move time).
    pub fn with_clock(cfg: &VsockConfig, clock: Box<dyn Clock>) -> Result<Self, VirtioError> {
        if cfg.guest_cid <= HOST_CID || cfg.guest_cid >= u64::from(u32::MAX) {
            return Err(VirtioError::VsockCid(cfg.guest_cid));
        }
        let lock_path = lock_path(&cfg.uds_path);
        let lock = sys::lock_exclusive(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                VirtioError::VsockInUse(lock_path.clone(), "another anchor-vmm holds its lock")
            } else {
                VirtioError::VsockLock(lock_path.clone(), e)
            }
        })?;
        claim_path(&cfg.uds_path)?;
        let listener = sys::bind_private(&cfg.uds_path)
            .map_err(|e| VirtioError::VsockBind(cfg.uds_path.clone(), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| VirtioError::VsockBind(cfg.uds_path.clone(), e))?;
        let mut timer = TimerFd::new().map_err(|e| VirtioError::TimerFd(e.into()))?;
        timer
            .reset(TICK, Some(TICK))
            .map_err(|e| VirtioError::TimerFd(e.into()))?;
        // The event loop reads the timer only once it expired; a tick with no expiry due
        // (tests, fuzzing) must not wait for one.
        {
            // SAFETY: `timer` owns this descriptor and outlives the borrow (this block).
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(timer.as_raw_fd()) };
            crate::sys::set_nonblocking(fd, true).map_err(VirtioError::TimerFd)?;
        }
        Ok(Self {
            guest_cid: cfg.guest_cid,
            config: cfg.guest_cid.to_le_bytes(),
            uds_path: cfg.uds_path.clone(),
            listener,
            timer,
            clock,
            pending: (0..MAX_PENDING).map(|_| None).collect(),
            conns: (0..MAX_CONNS).map(|_| None).collect(),
            orphans: VecDeque::new(),
            graveyard: Vec::new(),
            next_local_port: FIRST_LOCAL_PORT,
            rr: 0,
            active: false,
            listener_paused: false,
            accept_failing: false,
            refused: 0,
            last_refusal: None,
            _lock: lock,
            tx_scratch: vec![0u8; TX_CHUNK].into_boxed_slice(),
        })
    }

    /// Host connections closed before they reached the guest, and the last reason.
    pub fn refusals(&self) -> (u64, Option<Refusal>) {
        (self.refused, self.last_refusal)
    }

    /// Number of live connections (tests).
    pub fn connections(&self) -> usize {
        self.conns.iter().flatten().count()
    }

    fn find(&self, local_port: u32, peer_port: u32) -> Option<usize> {
        self.conns.iter().position(|c| {
            c.as_ref()
                .is_some_and(|c| c.local_port == local_port && c.peer_port == peer_port)
        })
    }

    fn free_slot(&self) -> Option<usize> {
        self.conns.iter().position(Option::is_none)
    }

    fn orphan(&mut self, h: Header) {
        if self.orphans.len() < MAX_ORPHANS {
            self.orphans.push_back(h);
        }
    }

    fn remove_conn(&mut self, slot: usize, reg: &mut dyn FdRegistry) {
        if let Some(c) = self.conns.get_mut(slot).and_then(Option::take) {
            reg.remove(c.stream.as_raw_fd());
        }
    }

    fn alloc_local_port(&mut self) -> u32 {
        loop {
            let p = self.next_local_port;
            self.next_local_port = p.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.iter().flatten().any(|c| c.local_port == p) {
                return p;
            }
        }
    }

    fn add_conn(&mut self, slot: usize, c: Conn<UnixStream>, reg: &mut dyn FdRegistry) -> bool {
        let Ok(idx) = u32::try_from(slot) else {
            return false;
        };
        let set = EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        if !reg.add(c.stream.as_raw_fd(), EV_CONN + idx, set) {
            return false;
        }
        if let Some(s) = self.conns.get_mut(slot) {
            *s = Some(c);
        }
        true
    }

    /// Handle one tx chain (a packet from the guest). Returns the bytes it moved (header
    /// included) for the turn's budget.
    fn handle_tx(
        &mut self,
        chain: DescriptorChain<&GuestMemoryMmap<()>>,
        mem: &GuestMemoryMmap<()>,
        reg: &mut dyn FdRegistry,
    ) -> u64 {
        let readable = chain_len(chain.clone(), false);
        let mut raw = [0u8; HDR_LEN];
        if chain_copy(chain.clone(), mem, 0, &mut raw, false) < HDR_LEN {
            return 0;
        }
        let moved = HDR_LEN as u64;
        let h = match packet::parse_guest_packet(&raw, readable, self.guest_cid) {
            Ok(h) => h,
            Err(PacketError::BadType(_) | PacketError::BadOp(_)) => {
                let h = Header::decode(&raw);
                if h.src_cid == self.guest_cid && h.dst_cid == HOST_CID && h.op != packet::OP_RST {
                    self.orphan(rst_reply(&h, self.guest_cid));
                }
                return moved;
            }
            Err(_) => return moved,
        };
        let slot = self.find(h.dst_port, h.src_port);
        if let Some(c) = slot
            .and_then(|s| self.conns.get_mut(s))
            .and_then(Option::as_mut)
        {
            c.update_peer_credit(&h);
        }
        match (h.op, slot) {
            (packet::OP_REQUEST, None) => self.guest_connect(&h, reg),
            (packet::OP_RST, Some(s)) => self.remove_conn(s, reg),
            (packet::OP_RST, None) => {}
            (_, None) => self.orphan(rst_reply(&h, self.guest_cid)),
            (op, Some(s)) => {
                let Some(c) = self.conns.get_mut(s).and_then(Option::as_mut) else {
                    return moved;
                };
                match op {
                    packet::OP_RESPONSE => {
                        if matches!(c.state, State::Connecting(_)) {
                            c.state = State::Established;
                            c.readable = true;
                            let line = format!("OK {}\n", c.local_port);
                            if c.stream.write_all(line.as_bytes()).is_err() {
                                c.needs |= need::RST;
                            }
                        } else {
                            c.needs |= need::RST;
                        }
                    }
                    packet::OP_RW => {
                        if c.state != State::Established || c.guest_no_send {
                            c.needs |= need::RST;
                            return moved;
                        }
                        let buf = &mut self.tx_scratch;
                        let mut off = 0u64;
                        let len = u64::from(h.len);
                        while off < len {
                            let n = usize::try_from((len - off).min(TX_CHUNK as u64))
                                .unwrap_or(TX_CHUNK);
                            let Some(part) = buf.get_mut(..n) else { break };
                            let got =
                                chain_copy(chain.clone(), mem, HDR_LEN as u64 + off, part, false);
                            let data = part.get(..got).unwrap_or(&[]);
                            if got == 0 || c.deliver(data) == Deliver::Reset {
                                c.needs |= need::RST;
                                break;
                            }
                            off = off.saturating_add(got as u64);
                        }
                        return moved.saturating_add(off);
                    }
                    packet::OP_CREDIT_REQUEST => c.needs |= need::CREDIT,
                    packet::OP_SHUTDOWN => {
                        if h.flags & packet::SHUTDOWN_SEND != 0 {
                            c.guest_no_send = true;
                            if c.tx_buf.is_empty() {
                                conn::HostStream::shutdown_write(&mut c.stream);
                            }
                        }
                        if h.flags & packet::SHUTDOWN_RCV != 0 {
                            c.guest_no_recv = true;
                        }
                        if c.guest_no_send && c.guest_no_recv {
                            if c.tx_buf.is_empty() {
                                c.needs |= need::RST;
                            } else {
                                // The host has not taken everything the guest sent: the
                                // reset waits for the flush (conn.rs), or the deadline.
                                c.state = State::Closing(deadline(&*self.clock));
                            }
                        }
                    }
                    packet::OP_REQUEST => c.needs |= need::RST,
                    // OP_CREDIT_UPDATE: the credit was recorded above.
                    _ => {}
                }
            }
        }
        moved
    }

    fn guest_connect(&mut self, h: &Header, reg: &mut dyn FdRegistry) {
        let Some(slot) = self.free_slot() else {
            self.orphan(rst_reply(h, self.guest_cid));
            return;
        };
        let mut path = self.uds_path.clone().into_os_string();
        path.push(format!("_{}", h.dst_port));
        let stream = match sys::connect_unix_nonblocking(std::path::Path::new(&path)) {
            Ok(s) => s,
            Err(_) => {
                self.orphan(rst_reply(h, self.guest_cid));
                return;
            }
        };
        let mut c = Conn::new(
            stream,
            h.dst_port,
            h.src_port,
            self.guest_cid,
            State::Established,
            need::RESPONSE,
        );
        c.update_peer_credit(h);
        c.readable = true;
        if !self.add_conn(slot, c, reg) {
            self.orphan(rst_reply(h, self.guest_cid));
        }
    }

    /// The next packet for the guest whose rx chain holds `cap` payload bytes.
    fn next_rx(
        &mut self,
        buf: &mut [u8],
        cap: usize,
        reg: &mut dyn FdRegistry,
    ) -> Option<(Header, usize)> {
        if let Some(h) = self.orphans.pop_front() {
            return Some((h, 0));
        }
        let n = self.conns.len();
        for i in 0..n {
            let slot = self.rr.wrapping_add(i) % n.max(1);
            let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let out = if c.needs & need::RST != 0 {
                let h = c.header(packet::OP_RST, 0, 0);
                self.remove_conn(slot, reg);
                Some((h, 0))
            } else if c.needs & need::REQUEST != 0 {
                c.needs &= !need::REQUEST;
                Some((c.header(packet::OP_REQUEST, 0, 0), 0))
            } else if c.needs & need::RESPONSE != 0 {
                c.needs &= !need::RESPONSE;
                Some((c.header(packet::OP_RESPONSE, 0, 0), 0))
            } else if c.needs & need::SHUTDOWN != 0 {
                Some(shutdown_packet(c, &*self.clock))
            } else if c.needs & need::CREDIT != 0 {
                c.needs &= !need::CREDIT;
                Some((c.header(packet::OP_CREDIT_UPDATE, 0, 0), 0))
            } else {
                match c.read_for_guest(buf, cap) {
                    Ok(Some(p)) => Some(p),
                    Ok(None) if c.needs & need::SHUTDOWN != 0 => {
                        Some(shutdown_packet(c, &*self.clock))
                    }
                    Ok(None) => None,
                    Err(conn::StreamBroken) => {
                        let h = c.header(packet::OP_RST, 0, 0);
                        self.remove_conn(slot, reg);
                        Some((h, 0))
                    }
                }
            };
            if out.is_some() {
                self.rr = slot.wrapping_add(1);
                return out;
            }
        }
        None
    }

    /// Fill rx buffers with what we owe the guest, within `budget` and a queue's worth of
    /// chains. With nothing to send, the buffers stay in the ring (no busy loop: the next
    /// host-socket event or guest packet brings us back).
    pub fn process_rx(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap<()>,
        reg: &mut dyn FdRegistry,
        budget: &mut Budget<'_>,
    ) -> Result<Pass, DeviceFault> {
        let mut buf = [0u8; CHUNK];
        drain_queue(queue, mem, |chain| {
            if !budget.allows() {
                return Step::Stop;
            }
            let cap = chain_len(chain.clone(), true);
            let Some(payload_cap) = cap.checked_sub(HDR_LEN as u64) else {
                // Too small to hold a header: hand it back unused.
                return Step::Used(0);
            };
            let payload_cap = usize::try_from(payload_cap).unwrap_or(usize::MAX);
            let Some((h, n)) = self.next_rx(&mut buf, payload_cap, reg) else {
                return Step::Keep;
            };
            let mut hdr = h.encode();
            let wrote_hdr = chain_copy(chain.clone(), mem, 0, &mut hdr, true);
            let payload = buf.get_mut(..n).unwrap_or(&mut []);
            let wrote = chain_copy(chain, mem, HDR_LEN as u64, payload, true);
            let len = wrote_hdr.saturating_add(wrote);
            budget.spend(u64::try_from(len).unwrap_or(u64::MAX));
            Step::Used(u32::try_from(len).unwrap_or(u32::MAX))
        })
    }

    /// Handle the guest's packets, within `budget` and a queue's worth of chains.
    pub fn process_tx(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap<()>,
        reg: &mut dyn FdRegistry,
        budget: &mut Budget<'_>,
    ) -> Result<Pass, DeviceFault> {
        drain_queue(queue, mem, |chain| {
            if !budget.allows() {
                return Step::Stop;
            }
            let n = self.handle_tx(chain, mem, reg);
            budget.spend(n);
            Step::Used(0)
        })
    }
}
