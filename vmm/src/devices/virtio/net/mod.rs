// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-net over a Unix stream socket that speaks QEMU's `-netdev stream` framing
//! (4-byte big-endian length + Ethernet frame), the protocol of passt.
//!
//! - Queues: rx (0) and tx (1); no control queue, no multiqueue.
//! - Features: VIRTIO_NET_F_MAC (a fixed MAC, [`MAC`]), VIRTIO_NET_F_MTU ([`MTU`]), EVENT_IDX,
//!   INDIRECT_DESC. **No offloads**: no CSUM / GUEST_CSUM, no TSO/UFO (host or guest), no
//!   MRG_RXBUF. The guest computes its own checksums and sends frames of at most its MTU;
//!   each received frame goes whole into one rx chain (frames that do not fit the chain are
//!   dropped, never truncated). No VIRTIO_NET_F_STATUS: the configuration space is fixed at
//!   build time, so the link cannot be reported down; a closed backend drops frames instead.
//! - Guest frames (tx): a chain must carry a 12-byte header with `flags` and `gso_type` 0
//!   followed by 14..=[`MAX_TX_FRAME`] bytes (the MTU offered, an Ethernet header and one
//!   VLAN tag; device-readable descriptors only). Anything else is dropped and counted.
//!   Each frame goes to the backend in a write of its own ([`Net::flush`]).
//! - Bounded buffering, backpressure both ways, nothing grows with what either side does:
//!   frames for the backend wait in a [`TX_QUEUE_BYTES`] queue; when it is full the guest's
//!   tx chains stay in the ring until the socket drains (the guest's driver stops its queue).
//!   Bytes from the backend are read into a [`RX_QUEUE_BYTES`] queue only while it has room,
//!   and frames leave it only into rx chains the guest posted: a guest that posts none stops
//!   the device from reading, and the backend's socket buffer fills (passt then drops).
//! - A length prefix above [`frame::MAX_FRAME`], EOF or a socket error closes the backend
//!   for good (one line on stderr); the guest's frames are then dropped.
//! - Work per event-loop turn: [`TURN_BYTES`] (tx and rx together; frames dropped either
//!   way count too, runts from the backend by their bytes).
//! - Guest frames the [`egress::Egress`] rule refuses (the host's own addresses: loopback
//!   always, the anchor host's addresses with `--net-deny`) are dropped and counted, and
//!   so are IPv4 frames to the anchor host's local networks as they are now
//!   ([`host::HostNets`], `--net-host-fd`), read again whenever the host's change.

mod event_handler;
pub mod frame;
#[cfg(test)]
mod tests;

/// The egress rule and the host's own networks are anchor-net's (shared with anchor-jail's
/// relay for namespace rooms).
pub use anchor_net::{egress, host};

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use virtio_queue::{DescriptorChain, Queue};
use vm_memory::GuestMemoryMmap;

use super::mmio::EXTRA_EVENT_BASE;
use super::queue::{
    chain_copy, chain_len, chain_write, drain_queue, Budget, DeviceFault, FdRegistry, Pass, Step,
};
use frame::{ByteQueue, FrameError, Peek, LEN_PREFIX, MIN_FRAME, VNET_HDR_LEN};

/// VIRTIO_NET_F_MTU: the configuration space carries the MTU.
pub const F_MTU: u64 = 1 << 3;
/// VIRTIO_NET_F_MAC: the configuration space carries the MAC.
pub const F_MAC: u64 = 1 << 5;
/// The guest's MAC: locally administered, unicast. Every room gets the same one (each
/// room has its own backend, so they never share a segment).
pub const MAC: [u8; 6] = [0x02, 0x41, 0x4e, 0x43, 0x48, 0x01];
/// The MTU offered. Without MRG_RXBUF or guest offloads Linux posts rx buffers of
/// 1518 bytes (plus the header), so larger frames could not be delivered anyway; passt
/// must be started with `--mtu 1500` (its DHCP otherwise offers 65520).
pub const MTU: u16 = 1500;
/// Largest guest frame passed on: the MTU, an Ethernet header and one VLAN tag. The
/// guest was offered this MTU, and a frame this small (with its prefix) is one socket
/// buffer of a Unix stream socket, which the kernel takes whole or not at all (see
/// [`Net::flush`]).
pub const MAX_TX_FRAME: usize = MTU as usize + 18;
/// Bytes buffered towards the backend (at least two maximal frames).
pub const TX_QUEUE_BYTES: usize = 2 * (LEN_PREFIX + frame::MAX_FRAME);
/// Bytes buffered from the backend (at least two maximal frames).
pub const RX_QUEUE_BYTES: usize = 2 * (LEN_PREFIX + frame::MAX_FRAME);
/// Bytes moved per event-loop turn (tx and rx together).
pub const TURN_BYTES: u64 = 256 * 1024;
/// Queue sizes: rx, tx.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE, QUEUE_SIZE];
const RXQ: usize = 0;
const TXQ: usize = 1;
const EV_BACKEND: u32 = EXTRA_EVENT_BASE;
/// Configuration space: mac[6], status (unused), max_virtqueue_pairs (1), mtu.
const CONFIG_LEN: usize = 12;

/// Why the backend connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The backend closed its end.
    Eof,
    /// Reading or writing the socket failed.
    Io(ErrorKind),
    /// The backend broke the framing.
    Framing(FrameError),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Eof => f.write_str("the backend closed the connection"),
            Self::Io(k) => write!(f, "socket error: {k}"),
            Self::Framing(e) => write!(f, "the backend broke the framing: {e}"),
        }
    }
}

/// Frame counters (tests, and the log line when the backend closes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Guest frames queued for the backend.
    pub tx_frames: u64,
    /// Guest chains dropped: malformed header, bad size, unreadable memory, no backend.
    pub tx_dropped: u64,
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Backend frames dropped: shorter than an Ethernet header, or larger than the rx
    /// chain they were meant for.
    pub rx_dropped: u64,
    /// Rx chains returned unused because they cannot hold even a minimal frame.
    pub rx_unusable: u64,
    /// Guest frames refused by the egress rule (addressed to the host itself).
    pub tx_refused: u64,
}

/// What to do with one tx chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxCheck {
    /// A frame of this many bytes after the header.
    Frame(usize),
    /// Not a frame we pass on.
    Drop,
}

/// Check the size of a tx chain whose device-readable bytes are `readable`.
fn tx_size(readable: u64) -> TxCheck {
    let Ok(n) = usize::try_from(readable) else {
        return TxCheck::Drop;
    };
    if n > VNET_HDR_LEN + MAX_TX_FRAME {
        return TxCheck::Drop;
    }
    match n.checked_sub(VNET_HDR_LEN) {
        Some(f) if f >= MIN_FRAME => TxCheck::Frame(f),
        _ => TxCheck::Drop,
    }
}

/// The header of a guest frame asks for nothing we offered: no checksum offload
/// (`flags`), no segmentation (`gso_type`).
fn tx_header_ok(hdr: &[u8; VNET_HDR_LEN]) -> bool {
    hdr.first() == Some(&0) && hdr.get(1) == Some(&0)
}

/// What the backend has for the guest now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A whole frame of this many bytes (after its prefix) at the head of the rx queue.
    Frame(usize),
    /// Nothing whole yet (or the backend is closed): the readiness edge brings us back.
    Wait,
    /// The turn's budget was spent dropping runts.
    Spent,
}

/// The virtio-net device.
#[derive(Debug)]
pub struct Net {
    config: [u8; CONFIG_LEN],
    backend: Option<UnixStream>,
    /// Edge-triggered readiness of the backend socket (set by epoll, cleared by EAGAIN).
    readable: bool,
    writable: bool,
    rx: ByteQueue,
    tx: ByteQueue,
    /// The tx queue holds chains that wait for room in `tx` (the socket is slow).
    tx_blocked: bool,
    /// Bytes of the frame at the head of `tx` (prefix included) that a partial write
    /// left unwritten; 0: the head is a length prefix.
    tx_head_left: usize,
    stats: NetStats,
    closed: Option<Closed>,
    egress: egress::Egress,
    host: Option<host::HostNets>,
}

impl Net {
    /// A device over `backend`, a connected stream socket (made non-blocking here).
    pub fn new(backend: UnixStream) -> std::io::Result<Self> {
        backend.set_nonblocking(true)?;
        let mut config = [0u8; CONFIG_LEN];
        let (mac, rest) = config.split_at_mut(6);
        mac.copy_from_slice(&MAC);
        // status (2 bytes) stays 0: VIRTIO_NET_F_STATUS is not offered.
        rest.get_mut(2..4)
            .unwrap_or(&mut [])
            .copy_from_slice(&1u16.to_le_bytes());
        rest.get_mut(4..6)
            .unwrap_or(&mut [])
            .copy_from_slice(&MTU.to_le_bytes());
        Ok(Self {
            config,
            backend: Some(backend),
            readable: false,
            // Until the socket says otherwise (a write that would block).
            writable: true,
            rx: ByteQueue::new(RX_QUEUE_BYTES),
            tx: ByteQueue::new(TX_QUEUE_BYTES),
            tx_blocked: false,
            tx_head_left: 0,
            stats: NetStats::default(),
            closed: None,
            egress: egress::Egress::default(),
            host: None,
        })
    }

    /// Replaces the egress rule (the default refuses only loopback and the like).
    pub fn set_egress(&mut self, rule: egress::Egress) {
        self.egress = rule;
    }

    /// Also refuse IPv4 frames to the anchor host's local networks as `host` follows them.
    pub fn set_host(&mut self, host: host::HostNets) {
        self.host = Some(host);
    }

    /// Frame counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Why the backend was closed, if it was.
    pub fn closed(&self) -> Option<Closed> {
        self.closed
    }

    /// Bytes waiting for the backend and bytes waiting for the guest (tests).
    pub fn buffered(&self) -> (usize, usize) {
        (self.tx.len(), self.rx.len())
    }

    /// Whether guest frames wait for room towards the backend (tests).
    pub fn tx_blocked(&self) -> bool {
        self.tx_blocked
    }

    /// Note that epoll reported the socket readable / writable (tests call it directly).
    pub fn set_ready(&mut self, readable: bool, writable: bool) {
        self.readable |= readable;
        self.writable |= writable;
    }

    fn close(&mut self, why: Closed, reg: &mut dyn FdRegistry) {
        let Some(s) = self.backend.take() else {
            return;
        };
        reg.remove(s.as_raw_fd());
        self.closed = Some(why);
        self.readable = false;
        self.writable = false;
        let st = self.stats;
        crate::log::say(format_args!(
            "net: backend closed: {why}; the room has no network from now on \
             (frames: {} sent, {} received, {} + {} dropped, {} refused)",
            st.tx_frames, st.rx_frames, st.tx_dropped, st.rx_dropped, st.tx_refused
        ));
    }

    /// Write queued frames to the backend until it would block or the queue is empty:
    /// one frame (prefix and frame together) per write.
    ///
    /// Never several frames in one write: a stream socket may take only part of a write,
    /// so what passt reads could then end at any byte, and this passt (2023-03-09) loses
    /// a length prefix that ends its read (and a frame whose rest comes in more than one
    /// piece). Its parse then starts inside a frame the guest wrote, where the guest can
    /// place a whole second frame that the egress rule never saw (measured: to
    /// 127.0.0.1). A write of one frame of at most [`MAX_TX_FRAME`] bytes is one socket
    /// buffer, which a Unix stream socket takes whole or not at all; should a write still
    /// come back short, the rest of that frame goes alone in the next one.
    pub fn flush(&mut self, reg: &mut dyn FdRegistry) {
        while self.writable && !self.tx.is_empty() {
            let Some(s) = self.backend.as_mut() else {
                // Nobody to send to: whatever was queued is lost with the backend.
                break;
            };
            if self.tx_head_left == 0 {
                self.tx_head_left = match frame::peek(self.tx.data()) {
                    Ok(Peek::Frame { len }) => LEN_PREFIX.saturating_add(len),
                    // The queue holds only whole frames that handle_tx put there.
                    _ => self.tx.len(),
                };
            }
            let data = self.tx.data();
            let head = data.get(..self.tx_head_left).unwrap_or(data);
            match s.write(head) {
                Ok(0) => return self.close(Closed::Eof, reg),
                Ok(n) => {
                    self.tx.consume(n);
                    self.tx_head_left = self.tx_head_left.saturating_sub(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.close(Closed::Io(e.kind()), reg),
            }
        }
        if self.backend.is_none() {
            self.tx.consume(usize::MAX);
            self.tx_head_left = 0;
        }
    }

    /// Read from the backend into the rx queue (one read). Returns whether bytes arrived.
    fn fill(&mut self, reg: &mut dyn FdRegistry) -> bool {
        if !self.readable {
            return false;
        }
        let Some(s) = self.backend.as_mut() else {
            return false;
        };
        let room = self.rx.spare_mut();
        if room.is_empty() {
            return false;
        }
        loop {
            match s.read(room) {
                Ok(0) => {
                    self.close(Closed::Eof, reg);
                    return false;
                }
                Ok(n) => {
                    self.rx.commit(n);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.readable = false;
                    return false;
                }
                Err(e) => {
                    self.close(Closed::Io(e.kind()), reg);
                    return false;
                }
            }
        }
    }

    /// Handle one tx chain; returns the step for the ring and the bytes it cost.
    fn handle_tx(
        &mut self,
        chain: DescriptorChain<&GuestMemoryMmap<()>>,
        mem: &GuestMemoryMmap<()>,
        reg: &mut dyn FdRegistry,
    ) -> (Step, u64) {
        let TxCheck::Frame(len) = tx_size(chain_len(chain.clone(), false)) else {
            self.stats.tx_dropped = self.stats.tx_dropped.saturating_add(1);
            return (Step::Used(0), VNET_HDR_LEN as u64);
        };
        if self.backend.is_none() {
            self.stats.tx_dropped = self.stats.tx_dropped.saturating_add(1);
            return (Step::Used(0), VNET_HDR_LEN as u64);
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        if chain_copy(chain.clone(), mem, 0, &mut hdr, false) < VNET_HDR_LEN || !tx_header_ok(&hdr)
        {
            self.stats.tx_dropped = self.stats.tx_dropped.saturating_add(1);
            return (Step::Used(0), VNET_HDR_LEN as u64);
        }
        let need = LEN_PREFIX.saturating_add(len);
        if self.tx.reserve(need).is_none() {
            self.flush(reg);
        }
        let Some(slot) = self.tx.reserve(need) else {
            // Backpressure: the chain stays in the ring until the socket drains.
            self.tx_blocked = self.backend.is_some();
            return (Step::Keep, 0);
        };
        let (pfx, body) = slot.split_at_mut(LEN_PREFIX);
        if chain_copy(chain, mem, VNET_HDR_LEN as u64, body, false) < len {
            // Part of the frame is not in guest memory: nothing is committed.
            self.stats.tx_dropped = self.stats.tx_dropped.saturating_add(1);
            return (Step::Used(0), VNET_HDR_LEN as u64);
        }
        let frame = body.get(..len).unwrap_or_default();
        if !self.egress.allows(frame) || !host::off_host(self.host.as_ref(), frame) {
            // Addressed to the host itself: nothing is committed.
            self.stats.tx_refused = self.stats.tx_refused.saturating_add(1);
            return (Step::Used(0), VNET_HDR_LEN as u64);
        }
        pfx.copy_from_slice(&frame::prefix(len));
        self.tx.commit(need);
        self.stats.tx_frames = self.stats.tx_frames.saturating_add(1);
        (Step::Used(0), need as u64)
    }

    /// Move the guest's frames to the backend queue, within `budget` and a queue's worth
    /// of chains, then write what can be written. Chains that find the queue full stay in
    /// the ring (see [`Net::tx_blocked`]); the socket's next writable edge resumes them.
    pub fn process_tx(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap<()>,
        reg: &mut dyn FdRegistry,
        budget: &mut Budget<'_>,
    ) -> Result<Pass, DeviceFault> {
        self.tx_blocked = false;
        // The host's addresses as they are now, before any frame of this batch is judged.
        if self.host.as_mut().is_some_and(host::HostNets::refresh) {
            crate::log::say(format_args!(
                "net: cannot read the anchor host's local routes; every IPv4 frame is \
                 refused until they can be"
            ));
        }
        let pass = drain_queue(queue, mem, |chain| {
            if !budget.allows() {
                return Step::Stop;
            }
            let (step, cost) = self.handle_tx(chain, mem, reg);
            budget.spend(cost);
            step
        })?;
        self.flush(reg);
        Ok(pass)
    }

    /// The next whole frame from the backend, dropping runts. Closes the backend on a
    /// framing error (the rest of its stream is meaningless).
    fn next_frame(&mut self, reg: &mut dyn FdRegistry, budget: &mut Budget<'_>) -> Next {
        // Each round consumes a frame or reads bytes. A dropped runt is work of the turn
        // (its bytes, at least one): a backend sending runts without pause must not hold
        // the turn for as long as it writes.
        loop {
            match frame::peek(self.rx.data()) {
                Ok(Peek::Frame { len }) if len < MIN_FRAME => {
                    let n = LEN_PREFIX.saturating_add(len);
                    self.rx.consume(n);
                    self.stats.rx_dropped = self.stats.rx_dropped.saturating_add(1);
                    budget.spend(n as u64);
                    if !budget.allows() {
                        return Next::Spent;
                    }
                }
                Ok(Peek::Frame { len }) => return Next::Frame(len),
                Ok(Peek::Incomplete) => {
                    if !self.fill(reg) {
                        return Next::Wait;
                    }
                }
                Err(e) => {
                    self.rx.consume(usize::MAX);
                    self.close(Closed::Framing(e), reg);
                    return Next::Wait;
                }
            }
        }
    }

    /// Fill rx chains with frames from the backend, within `budget` and a queue's worth
    /// of chains. Without rx chains nothing is read (backpressure on the backend).
    pub fn process_rx(
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
            let cap = chain_len(chain.clone(), true);
            if cap < (VNET_HDR_LEN + MIN_FRAME) as u64 {
                self.stats.rx_unusable = self.stats.rx_unusable.saturating_add(1);
                return Step::Used(0);
            }
            loop {
                let len = match self.next_frame(reg, budget) {
                    Next::Frame(len) => len,
                    Next::Wait => return Step::Keep,
                    Next::Spent => return Step::Stop,
                };
                let total = len.saturating_add(VNET_HDR_LEN);
                if total as u64 > cap {
                    // Never truncated: the frame is dropped and the chain waits for the next.
                    // The drop is work of this turn: a guest posting only small chains must
                    // not make one turn drain the backend (nor keep a waiting vcpu waiting).
                    self.rx.consume(LEN_PREFIX.saturating_add(len));
                    self.stats.rx_dropped = self.stats.rx_dropped.saturating_add(1);
                    budget.spend(total as u64);
                    if !budget.allows() {
                        return Step::Stop;
                    }
                    continue;
                }
                let mut hdr = [0u8; VNET_HDR_LEN];
                // num_buffers = 1 (the only value without MRG_RXBUF).
                if let Some(nb) = hdr.get_mut(10..12) {
                    nb.copy_from_slice(&1u16.to_le_bytes());
                }
                let mut wrote = chain_copy(chain.clone(), mem, 0, &mut hdr, true);
                let body = self
                    .rx
                    .data()
                    .get(LEN_PREFIX..LEN_PREFIX.saturating_add(len))
                    .unwrap_or(&[]);
                wrote = wrote.saturating_add(chain_write(chain, mem, VNET_HDR_LEN as u64, body));
                self.rx.consume(LEN_PREFIX.saturating_add(len));
                self.stats.rx_frames = self.stats.rx_frames.saturating_add(1);
                budget.spend(total as u64);
                return Step::Used(u32::try_from(wrote).unwrap_or(u32::MAX));
            }
        })
    }
}
