// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-vsock with live connections, driven as the worker drives it (`VirtioDevice`:
//! activate, process_queue, process_extra, reset, housekeeping) over well-formed rings.
//!
//! Every input starts with two established connections: one the guest opened (OP_REQUEST
//! to host port 1024, where the harness listens on `<uds>_1024`) and one a host process
//! opened (`CONNECT 5001\n` on the device's socket, answered by the guest). The input is
//! then a sequence of operations: guest packets (header fields from the input, ports
//! mostly those of live connections, credit fields honest or not, payloads within the
//! credit or not, header and payload split over descriptors, now and then a malformed
//! header), rx buffers posted, host-side writes, reads, half-closes and closes of the
//! connections' streams, host connections (good and bad CONNECT lines, data right after
//! the line), socket events (the ones that follow host reads and writes, and any set on
//! any watched fd but the timer), the housekeeping timer after the device's clock was
//! moved on (the device runs on the harness's clock: deadlines are reached without
//! waiting for them) and device resets.
//!
//! Checked whatever the input: every guest packet is returned in its turn; every packet
//! the device sends is well formed (CIDs, type, an op the device may send, length equal to
//! the payload written, payload only in OP_RW, the connection credit it advertises) and
//! belongs to a connection the guest was told of; the device sends data only on an
//! established connection the guest still receives on and never beyond the credit the
//! guest advertised; the host's bytes reach the guest in order, unaltered; the device's
//! fwd_cnt never goes back, never counts more than the guest sent or less than the host
//! read; with a guest that keeps within the credit the device advertised, the device never
//! holds more than BUF_ALLOC bytes of a connection and the host gets every byte the guest
//! sent, in order (and EOF after a guest SHUTDOWN(SEND)); a reset releases every stream's
//! registration; no fd stays registered after it was closed; at most MAX_CONNS connections.
//! At each tick: a host connection the guest has not answered by its deadline, and one
//! whose SHUTDOWN the guest has not answered with RST by its deadline, are closed (their
//! fd unwatched, the host reads EOF) and the guest gets their RST (unless the queue of
//! RST replies is full); a host socket that has not sent its CONNECT line by its deadline
//! is closed and unwatched, one not due yet is still watched and open; nothing closes a
//! polite connection before its deadline (its RST would fail the model's checks).
#![no_main]

mod driver;
mod vsock_model;

use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anchor_vmm::devices::irq::IrqLine;
use anchor_vmm::devices::virtio::queue::{Interrupt, QueueCtx};
use anchor_vmm::devices::virtio::vsock::conn::BUF_ALLOC;
use anchor_vmm::devices::virtio::vsock::packet::{
    parse_guest_packet, Header, HDR_LEN, HOST_CID, MAX_PKT_PAYLOAD, OP_CREDIT_REQUEST,
    OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN, TYPE_STREAM,
};
use anchor_vmm::devices::virtio::vsock::{Vsock, MAX_CONNS};
use anchor_vmm::devices::virtio::{VirtioDevice, VsockConfig};
use driver::{fd_id, is_timer, FuzzClock, In, Reg, Ring, Watched};
use event_manager::EventSet;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vsock_model::{pat, Conn, Model, St, G2H, GUEST_CID as CID, H2G, TIMEOUT_MS};

const MEM: u64 = 0x10_0000;
const QSIZE: u16 = 16;
const RXQ: usize = 0;
const TXQ: usize = 1;
/// Rings: descriptors at the base, avail at +0x1000, used at +0x2000.
const TX_RING: u64 = 0;
const RX_RING: u64 = 0x4000;
/// A guest packet's pieces (one per descriptor, up to three), 0x11000 apart.
const TX_BUF: u64 = 0x1_0000;
const TX_PIECE: u64 = 0x1_1000;
/// Rx buffer i (descriptor i) at RX_BUF + i * RX_SLOT.
const RX_BUF: u64 = 0x8_0000;
const RX_SLOT: u64 = 0x2000;
const RX_FULL: u32 = 4096 + HDR_LEN as u32;
/// Host ports: the harness listens on `<uds>_1024` and `<uds>_1025`, not on `_1026`.
const HOST_PORTS: [u32; 3] = [1024, 1025, 1026];
const LISTENING: [u32; 2] = [1024, 1025];
const GUEST_PORTS: [u32; 4] = [5000, 5001, 5002, 5003];
/// The device numbers host-initiated connections from here on (vsock/mod.rs); raw ports
/// from the input have bit 30 cleared so they never name one by chance.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
const MAX_OPS: usize = 256;
/// Bytes of payload per input (guest and host writes together).
const MAX_BYTES: u64 = 4 << 20;

/// A host socket still sending its CONNECT line: the host's end, its deadline (ms) and
/// the device's registration of its end.
struct PendingHost {
    stream: UnixStream,
    deadline: u64,
    ev: (RawFd, u32),
}

struct H {
    mem: GuestMemoryMmap<()>,
    queues: Vec<Queue>,
    rx: Ring,
    tx: Ring,
    rx_cap: [u32; QSIZE as usize],
    rx_free: Vec<u16>,
    interrupt: Interrupt,
    stop: AtomicBool,
    dev: Vsock,
    reg: Reg,
    active: bool,
    uds: PathBuf,
    listeners: Vec<(u32, UnixListener)>,
    model: Model,
    junk: Vec<UnixStream>,
    /// The device's listener and timer registrations (register_extra).
    base: Vec<Watched>,
    timer: Option<RawFd>,
    /// The device's clock (ms moved on), also in `model.now`.
    clock: Arc<AtomicU64>,
    pending: Vec<PendingHost>,
    next_local: u32,
    bytes: u64,
}

impl H {
    fn new(event_idx: bool) -> Option<Self> {
        // One guest memory per process (faulting in a fresh one each run cost a tenth of
        // the time); the rings are zeroed, buffers are always written before they are read.
        static GUEST: std::sync::OnceLock<Option<GuestMemoryMmap<()>>> = std::sync::OnceLock::new();
        let mem = GUEST
            .get_or_init(|| {
                GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)]).ok()
            })
            .clone()?;
        mem.write_slice(&[0u8; (RX_RING + 0x3000) as usize], GuestAddress(0))
            .ok()?;
        let (rx, tx) = (Ring::new(RX_RING, QSIZE), Ring::new(TX_RING, QSIZE));
        let queues = vec![rx.queue(event_idx)?, tx.queue(event_idx)?];
        let tmp = std::env::temp_dir();
        let uds = tmp.join(format!("anchor-vmm-fuzz-{}.sock", std::process::id()));
        let mut listeners = Vec::new();
        for port in LISTENING {
            let mut p = uds.clone().into_os_string();
            p.push(format!("_{port}"));
            let _ = std::fs::remove_file(&p);
            let l = UnixListener::bind(&p).ok()?;
            l.set_nonblocking(true).ok()?;
            listeners.push((port, l));
        }
        let (fuzz_clock, clock) = FuzzClock::new();
        let dev = Vsock::with_clock(
            &VsockConfig {
                guest_cid: CID,
                uds_path: uds.clone(),
            },
            Box::new(fuzz_clock),
        )
        .ok()?;
        let mut h = Self {
            mem,
            queues,
            rx,
            tx,
            rx_cap: [0; QSIZE as usize],
            rx_free: (0..QSIZE).rev().collect(),
            interrupt: Interrupt::new(IrqLine::none()).ok()?,
            stop: AtomicBool::new(false),
            dev,
            reg: Reg::default(),
            active: false,
            uds,
            listeners,
            model: Model::default(),
            junk: Vec::new(),
            base: Vec::new(),
            timer: None,
            clock,
            pending: Vec::new(),
            next_local: FIRST_LOCAL_PORT,
            bytes: 0,
        };
        h.dev.register_extra(&mut h.reg);
        h.base = h.reg.fds.clone();
        h.timer = h.base.iter().map(|e| e.0).find(|&fd| is_timer(fd));
        h.reg.added.clear();
        Some(h)
    }

    /// The device's listener registration (the one that is not the timer).
    fn listener(&self) -> Option<(RawFd, u32)> {
        self.base
            .iter()
            .find(|e| Some(e.0) != self.timer)
            .map(|e| (e.0, e.1))
    }

    fn activate(&mut self) {
        let mut ctx = QueueCtx {
            mem: &self.mem,
            queues: &mut self.queues,
            interrupt: &self.interrupt,
            stop: &self.stop,
        };
        assert!(self.dev.activate(&mut ctx).is_ok());
        self.active = true;
    }

    /// A queue notification, as the worker runs it.
    fn notify(&mut self, index: usize) {
        self.reg.added.clear();
        self.dev.housekeeping(&mut self.reg);
        if !self.active {
            return;
        }
        let mut ctx = QueueCtx {
            mem: &self.mem,
            queues: &mut self.queues,
            interrupt: &self.interrupt,
            stop: &self.stop,
        };
        let r = self.dev.process_queue(index, &mut ctx, &mut self.reg);
        assert!(r.is_ok(), "device fault on well-formed rings: {r:?}");
        if index == TXQ {
            for (id, len) in self.tx.take_used(&self.mem) {
                assert_eq!((id, len), (0, 0), "tx chains are returned unwritten");
            }
            assert_eq!(
                self.tx.used_seen, self.tx.avail_idx,
                "a guest packet was left in the ring"
            );
        }
    }

    /// An event on a device fd, as the worker runs it.
    fn event(&mut self, (fd, data): (RawFd, u32), set: EventSet) {
        self.reg.added.clear();
        self.dev.housekeeping(&mut self.reg);
        let r = if self.active {
            let mut ctx = QueueCtx {
                mem: &self.mem,
                queues: &mut self.queues,
                interrupt: &self.interrupt,
                stop: &self.stop,
            };
            self.dev
                .process_extra(fd, data, set, &mut self.reg, Some(&mut ctx))
        } else {
            self.dev.process_extra(fd, data, set, &mut self.reg, None)
        };
        assert!(r.is_ok(), "device fault on well-formed rings: {r:?}");
    }

    /// Post up to `n` rx buffers of `len` bytes.
    fn post(&mut self, n: usize, len: u32) {
        for _ in 0..n {
            let Some(i) = self.rx_free.pop() else { break };
            let addr = RX_BUF + u64::from(i) * RX_SLOT;
            self.rx.set_desc(&self.mem, i, addr, len, 2, 0);
            self.rx_cap[usize::from(i)] = len;
            self.rx.push(&self.mem, i);
        }
    }

    /// Everything the device put in the rx ring since the last look, checked and played
    /// into the model.
    fn rx(&mut self) {
        for (id, len) in self.rx.take_used(&self.mem) {
            let slot = u16::try_from(id).ok().filter(|&s| s < QSIZE);
            let Some(slot) = slot else {
                panic!("rx used id {id} was never posted");
            };
            assert!(!self.rx_free.contains(&slot), "rx buffer {slot} used twice");
            self.rx_free.push(slot);
            let cap = self.rx_cap[usize::from(slot)];
            assert!(len <= cap, "rx used length {len} beyond the buffer's {cap}");
            if cap < HDR_LEN as u32 {
                assert_eq!(len, 0, "a buffer too small for a header comes back empty");
                continue;
            }
            let addr = RX_BUF + u64::from(slot) * RX_SLOT;
            let mut raw = [0u8; HDR_LEN];
            let _ = self.mem.read_slice(&mut raw, GuestAddress(addr));
            let h = Header::decode(&raw);
            assert_eq!(u64::from(len), HDR_LEN as u64 + u64::from(h.len), "{h:?}");
            let mut payload = vec![0u8; h.len as usize];
            let _ = self
                .mem
                .read_slice(&mut payload, GuestAddress(addr + HDR_LEN as u64));
            self.model.device_packet(&h, &payload);
        }
    }

    /// The guest sends one packet: `h` with `body` bytes of payload in the chain (not
    /// necessarily `h.len`), split over descriptors by `shape`, the last `cut` bytes left
    /// out of the chain.
    fn send(&mut self, h: Header, body: usize, shape: u8, cut: usize) {
        if !self.active {
            // A driver that was reset sets the device up again before it sends.
            self.activate();
        }
        let ci = self.model.find(h.dst_port, h.src_port);
        let off = ci.map_or(0, |i| self.model.conns[i].sent);
        let mut bytes = h.encode().to_vec();
        let mut done = 0;
        while done < body {
            let part = pat(G2H, off + done as u64, body - done);
            bytes.extend_from_slice(part);
            done += part.len();
        }
        bytes.truncate(bytes.len().saturating_sub(cut));
        let total = bytes.len();
        // Up to three readable pieces, then maybe a write-only descriptor.
        let mut cuts = match shape & 3 {
            0 => vec![],
            1 => vec![HDR_LEN],
            2 => vec![1 + usize::from(shape >> 2) % (HDR_LEN - 1), HDR_LEN],
            _ => vec![usize::from(shape >> 2) * 97 % (total + 1), HDR_LEN],
        };
        cuts.retain(|&c| c > 0 && c < total);
        cuts.sort_unstable();
        cuts.dedup();
        let mut starts = vec![0];
        starts.extend(&cuts);
        starts.push(total);
        let pieces = starts.len() - 1;
        let extra = shape & 0x80 != 0;
        for (k, w) in starts.windows(2).enumerate() {
            let addr = TX_BUF + k as u64 * TX_PIECE;
            let _ = self.mem.write_slice(&bytes[w[0]..w[1]], GuestAddress(addr));
            let last = k + 1 == pieces && !extra;
            let flags = if last { 0 } else { 1 };
            self.tx.set_desc(
                &self.mem,
                k as u16,
                addr,
                (w[1] - w[0]) as u32,
                flags,
                k as u16 + 1,
            );
        }
        if extra {
            // A write-only descriptor after the packet (not part of it).
            self.tx
                .set_desc(&self.mem, pieces as u16, RX_BUF - 0x100, 16, 2, 0);
        }
        self.tx.push(&self.mem, 0);
        let mut raw = [0u8; HDR_LEN];
        for (d, s) in raw.iter_mut().zip(&bytes) {
            *d = *s;
        }
        let parsed = parse_guest_packet(&raw, total as u64, CID);
        self.notify(TXQ);
        if let Ok(p) = parsed {
            self.guest_packet(&p);
        }
        assert!(
            self.reg.added.is_empty(),
            "unexpected registrations {:?}",
            self.reg.added
        );
        self.rx();
    }

    /// A guest packet the device accepted: the harness takes the connection the device
    /// made to one of its listeners, if any, and the model plays the packet.
    fn guest_packet(&mut self, h: &Header) {
        let accepted = self
            .listeners
            .iter()
            .find(|(p, _)| *p == h.dst_port)
            .and_then(|(_, l)| l.accept().ok())
            .map(|(s, _)| s);
        let added = std::mem::take(&mut self.reg.added);
        self.model.guest_packet(h, accepted, &added);
    }

    /// A host process connects to the device's socket and writes `line` (then `early`
    /// bytes of data); `port` when the line is a good one.
    fn host_connect(&mut self, line: &[u8], early: usize, port: Option<u32>) {
        let Some(listener) = self.listener() else {
            return;
        };
        let Ok(mut s) = UnixStream::connect(&self.uds) else {
            return;
        };
        let _ = s.set_nonblocking(true);
        let mut first = line.to_vec();
        first.extend_from_slice(pat(H2G, 0, early));
        let _ = s.write_all(&first);
        self.event(listener, EventSet::IN);
        let pending = std::mem::take(&mut self.reg.added);
        assert!(pending.len() <= 1, "one connection waited: {pending:?}");
        self.rx();
        let Some(&p) = pending.first() else { return };
        self.event(p, EventSet::IN);
        let added = std::mem::take(&mut self.reg.added);
        match (port, added.as_slice()) {
            (Some(port), &[ev]) => {
                let mut c = Conn::new(self.next_local, port, s, ev, true);
                c.host_sent = early as u64;
                c.deadline = self.model.now + TIMEOUT_MS;
                self.next_local += 1;
                self.model.conns.push(c);
            }
            (None, []) if self.watched(p) => {
                // No newline yet: the device waits for the rest until the deadline.
                self.pending.push(PendingHost {
                    stream: s,
                    deadline: self.model.now + TIMEOUT_MS,
                    ev: p,
                });
            }
            (_, []) => {
                if port.is_none() {
                    self.junk.push(s);
                    if self.junk.len() > 8 {
                        self.junk.remove(0);
                    }
                }
            }
            (_, more) => panic!("a CONNECT line {line:?} made registrations {more:?}"),
        }
        self.rx();
    }

    /// Whether the device's registration `ev` is still in the event loop.
    fn watched(&self, ev: (RawFd, u32)) -> bool {
        self.reg.fds.iter().any(|e| (e.0, e.1) == ev)
    }

    /// The device's clock moves on `ms`, then its housekeeping timer fires (as the worker
    /// delivers it: any expiry count, the pump after it).
    fn tick(&mut self, ms: u64) {
        let Some(timer) = self.base.iter().find(|e| Some(e.0) == self.timer) else {
            return;
        };
        let timer = (timer.0, timer.1);
        self.model.now += ms;
        self.clock.fetch_add(ms, Ordering::Relaxed);
        let now = self.model.now;
        self.event(timer, EventSet::IN);
        assert!(
            self.reg.added.is_empty(),
            "unexpected registrations {:?}",
            self.reg.added
        );
        let mut i = 0;
        while i < self.model.conns.len() {
            let c = &self.model.conns[i];
            let due = c.due(now);
            // Past the earliest deadline the device may have set for the guest's RST: it
            // closed the connection then (the host missing what it had not taken), or its
            // deadline is later, or it had an RST to send already and keeps it until then.
            let closed = c.may_be_due(now) && !self.watched(c.ev);
            if !due && !closed {
                if c.may_be_due(now) && c.no_send && c.no_recv {
                    self.model.conns[i].clean = false;
                }
                i += 1;
                continue;
            }
            let mut c = self.model.conns.remove(i);
            c.clean &= due;
            let what = format!(
                "conn {}:{} ({:?}, deadline {}, closing since {:?}, now {now})",
                c.local, c.peer, c.st, c.deadline, c.closing_at
            );
            assert!(
                !self.watched(c.ev),
                "{what}: still watched after its deadline"
            );
            if c.host.is_some() {
                let eof = (0..64).any(|_| c.host_read(1 << 16).is_none());
                assert!(eof, "{what}: the host's end still open after its deadline");
            }
            self.model.expired.push((c.local, c.peer));
        }
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.deadline <= now);
        for mut p in due {
            assert!(
                !self.watched(p.ev),
                "a host socket without CONNECT line still watched after its deadline"
            );
            let mut b = [0u8; 1];
            let r = std::io::Read::read(&mut p.stream, &mut b);
            assert!(
                matches!(r, Ok(0)),
                "a host socket without CONNECT line still open after its deadline: {r:?}"
            );
        }
        for p in &wait {
            assert!(
                self.watched(p.ev),
                "a host socket closed {} ms before its deadline",
                p.deadline - now
            );
        }
        self.pending = wait;
        self.rx();
    }

    fn reset(&mut self, again: bool) {
        self.dev.reset();
        self.active = false;
        self.model.conns.clear();
        self.model.expired.clear();
        self.pending.clear();
        self.dev.housekeeping(&mut self.reg);
        let base: Vec<_> = self.base.iter().map(|e| (e.0, e.1)).collect();
        let now: Vec<_> = self.reg.fds.iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(
            now, base,
            "a reset leaves only the listener and the timer watched"
        );
        if again {
            self.activate();
        }
    }

    /// Pick a connection the host still holds.
    fn pick(&self, b: u8) -> Option<usize> {
        let live: Vec<usize> = (0..self.model.conns.len())
            .filter(|&i| self.model.conns[i].host.is_some())
            .collect();
        live.get(usize::from(b) % live.len().max(1)).copied()
    }

    fn op(&mut self, inp: &mut In<'_>) {
        let kind = inp.u8();
        match kind % 16 {
            0..=6 => self.fuzz_packet(inp),
            7 | 8 => {
                let n = 1 + usize::from(inp.u8() % 16);
                let len = match inp.u8() % 8 {
                    0 => u32::from(inp.u8() % HDR_LEN as u8),
                    1 => HDR_LEN as u32 + 1 + u32::from(inp.u8()),
                    _ => RX_FULL,
                };
                self.post(n, len);
                self.notify(RXQ);
                self.rx();
            }
            9 => {
                let (Some(i), n, auto) = (self.pick(inp.u8()), inp.u16(), inp.u8()) else {
                    return;
                };
                let n = u64::from(n).min(MAX_BYTES.saturating_sub(self.bytes)) as usize;
                let c = &mut self.model.conns[i];
                if let (false, Some(s)) = (c.host_shut, c.host.as_mut()) {
                    if let Ok(k) = s.write(pat(H2G, c.host_sent, n)) {
                        c.host_sent += k as u64;
                        self.bytes += k as u64;
                    }
                }
                if auto & 1 == 0 {
                    let ev = c.ev;
                    self.event(ev, EventSet::IN);
                    self.rx();
                }
            }
            10 => {
                let (Some(i), n, auto) = (self.pick(inp.u8()), inp.u16(), inp.u8()) else {
                    return;
                };
                let _ = self.model.conns[i].host_read(usize::from(n));
                if auto & 1 == 0 {
                    let ev = self.model.conns[i].ev;
                    self.event(ev, EventSet::OUT);
                    self.rx();
                }
            }
            11 => {
                let watched: Vec<(RawFd, u32)> = self
                    .reg
                    .fds
                    .iter()
                    .filter(|e| Some(e.0) != self.timer)
                    .map(|e| (e.0, e.1))
                    .collect();
                let (b, set) = (inp.u8(), EventSet::from_bits_truncate(inp.u32()));
                if let Some(&e) = watched.get(usize::from(b) % watched.len().max(1)) {
                    if set.contains(EventSet::ERROR) {
                        self.model
                            .conns
                            .iter_mut()
                            .filter(|c| c.ev == e)
                            .for_each(|c| c.polite = false);
                    }
                    self.event(e, set);
                    assert!(
                        self.reg.added.is_empty(),
                        "unexpected registrations {:?}",
                        self.reg.added
                    );
                    self.rx();
                }
            }
            12 => {
                let b = inp.u8();
                if b & 1 == 0 {
                    let port = if b & 2 == 0 {
                        GUEST_PORTS[usize::from(b >> 2) % 4]
                    } else {
                        inp.u32()
                    };
                    let early = if b & 4 == 0 { 0 } else { usize::from(inp.u8()) };
                    self.host_connect(format!("CONNECT {port}\n").as_bytes(), early, Some(port));
                } else {
                    let n = usize::from(inp.u8() % 40);
                    let mut line = inp.bytes(n);
                    if let Some(first) = line.first_mut() {
                        if *first == b'C' {
                            *first = b'c';
                        }
                    }
                    self.host_connect(&line, 0, None);
                }
            }
            13 => {
                let (Some(i), b) = (self.pick(inp.u8()), inp.u8()) else {
                    return;
                };
                let c = &mut self.model.conns[i];
                if b & 1 == 0 {
                    if let Some(s) = c.host.as_ref() {
                        let _ = s.shutdown(std::net::Shutdown::Write);
                    }
                    c.host_shut = true;
                } else {
                    c.host = None;
                    c.clean = false;
                }
                if b & 2 == 0 {
                    let ev = c.ev;
                    self.event(ev, EventSet::IN | EventSet::READ_HANG_UP);
                    self.rx();
                }
            }
            14 => {
                // A guest that consumed everything says so (OP_CREDIT_UPDATE, honest).
                if let Some(i) = self.pick(inp.u8()) {
                    let c = &self.model.conns[i];
                    let mut h = hdr(OP_CREDIT_UPDATE, c.peer, c.local);
                    h.buf_alloc = c.peer_buf.max(4096);
                    h.fwd_cnt = c.rx_cnt;
                    self.send(h, 0, 1, 0);
                }
            }
            _ => {
                if kind & 0x30 == 0x30 {
                    self.reset(kind & 0x40 == 0);
                } else {
                    // Time passes (up to 5 s, now and then a millisecond over a round
                    // figure), then the housekeeping timer fires.
                    let b = inp.u8();
                    self.tick(u64::from(b & 0x7f) * 40 + u64::from(b >> 7));
                }
            }
        }
        assert!(self.model.conns.len() <= self.dev.connections());
        assert!(self.dev.connections() <= MAX_CONNS);
    }

    /// A guest packet with fields from the input.
    fn fuzz_packet(&mut self, inp: &mut In<'_>) {
        const OPS: [u16; 8] = [
            OP_REQUEST,
            OP_RESPONSE,
            OP_RST,
            OP_SHUTDOWN,
            OP_RW,
            OP_RW,
            OP_CREDIT_UPDATE,
            OP_CREDIT_REQUEST,
        ];
        let sel = inp.u8();
        let op = OPS[usize::from(sel & 7)];
        let (dst, src) = match (sel >> 3) & 3 {
            0 | 1 if !self.model.conns.is_empty() => {
                let c = &self.model.conns[usize::from(inp.u8()) % self.model.conns.len()];
                (c.local, c.peer)
            }
            3 => (inp.u32() & !FIRST_LOCAL_PORT, inp.u32() & !FIRST_LOCAL_PORT),
            _ => {
                let b = usize::from(inp.u8());
                (HOST_PORTS[b % 3], GUEST_PORTS[(b >> 2) % 4])
            }
        };
        let mut h = hdr(op, src, dst);
        let ci = self.model.find(dst, src);
        if sel & 0x20 == 0 {
            let rx_cnt = ci.map_or(0, |i| self.model.conns[i].rx_cnt);
            let b = inp.u8();
            h.buf_alloc = [65536, 4096, 16, BUF_ALLOC][usize::from(b & 3)];
            h.fwd_cnt = rx_cnt.wrapping_sub(u32::from(b >> 4));
        } else {
            h.buf_alloc = inp.u32();
            h.fwd_cnt = inp.u32();
        }
        if op == OP_SHUTDOWN {
            h.flags = u32::from(inp.u8() & 3);
        }
        let mut body = 0usize;
        if op == OP_RW {
            let want = u64::from(inp.u16()).min(MAX_BYTES.saturating_sub(self.bytes));
            let len = if sel & 0x40 == 0 {
                // Within the credit the device advertised.
                let room = ci.map_or(u64::from(BUF_ALLOC), |i| {
                    let c = &self.model.conns[i];
                    u64::from(BUF_ALLOC).saturating_sub(c.sent - c.adv_fwd)
                });
                want.min(room)
            } else {
                want
            };
            h.len = len as u32;
            body = len as usize;
            self.bytes += len;
        }
        let shape = inp.u8();
        let mut cut = 0;
        if sel & 0x80 != 0 {
            match inp.u8() % 8 {
                0 => h.type_ = inp.u16(),
                1 => h.src_cid = u64::from(inp.u8()),
                2 => h.dst_cid = u64::from(inp.u8()),
                3 => h.op = inp.u16(),
                4 => h.flags = inp.u32(),
                5 => h.len = inp.u32() % (MAX_PKT_PAYLOAD + 2),
                6 => {
                    h.len = u32::from(inp.u8());
                    body = body.max(h.len as usize);
                }
                _ => cut = usize::from(inp.u8()),
            }
        }
        self.send(h, body, shape, cut);
    }

    /// At the end: the host drains every connection the guest kept within credit and
    /// must get every byte the device took, then EOF if the guest will send no more.
    fn finish(&mut self) {
        for _ in 0..64 {
            let mut progress = false;
            for i in 0..self.model.conns.len() {
                if !self.model.conns[i].clean || self.model.conns[i].host.is_none() {
                    continue;
                }
                let (fd, data) = self.model.conns[i].ev;
                let _ = self
                    .dev
                    .process_extra(fd, data, EventSet::OUT, &mut self.reg, None);
                while let Some(n) = self.model.conns[i].host_read(64 * 1024) {
                    if n == 0 {
                        break;
                    }
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        for c in &mut self.model.conns {
            if !c.clean || c.host.is_none() {
                continue;
            }
            let what = format!(
                "conn {}:{} (host-initiated: {})",
                c.local, c.peer, c.host_init
            );
            assert_eq!(
                c.host_got, c.sent,
                "{what}: bytes the device took never reached the host"
            );
            assert_eq!(c.ok_pos, c.ok_line.len(), "{what}: the OK line");
            if c.no_send {
                assert_eq!(
                    c.host_read(16),
                    None,
                    "{what}: no EOF after the guest's SHUTDOWN(SEND)"
                );
            }
        }
        for (fd, data, id) in &self.reg.fds {
            assert_eq!(
                fd_id(*fd),
                *id,
                "fd {fd} (event {data:#x}) closed while still watched"
            );
        }
    }

    /// One guest-initiated and one host-initiated connection, established.
    fn setup(&mut self) {
        self.activate();
        self.post(usize::from(QSIZE), RX_FULL);
        self.notify(RXQ);
        let mut r = hdr(OP_REQUEST, 5000, 1024);
        r.buf_alloc = 65536;
        self.send(r, 0, 1, 0);
        self.host_connect(b"CONNECT 5001\n", 0, Some(5001));
        let mut a = hdr(OP_RESPONSE, 5001, FIRST_LOCAL_PORT);
        a.buf_alloc = 65536;
        self.send(a, 0, 1, 0);
        if let Some(i) = self.model.find(FIRST_LOCAL_PORT, 5001) {
            let _ = self.model.conns[i].host_read(64);
        }
        assert_eq!(
            self.model.conns.len(),
            2,
            "the two connections of the setup"
        );
        assert!(self
            .model
            .conns
            .iter()
            .all(|c| c.st == St::Established && c.announced));
    }
}

fn hdr(op: u16, src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        len: 0,
        type_: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 0,
        fwd_cnt: 0,
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    driver::ignore_sigpipe();
    let mut inp = In(data);
    let Some(mut h) = H::new(inp.u8() & 1 == 1) else {
        return;
    };
    h.setup();
    for _ in 0..MAX_OPS {
        if inp.0.is_empty() {
            break;
        }
        h.op(&mut inp);
    }
    h.finish();
});
