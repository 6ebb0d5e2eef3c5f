// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-vsock muxer logic: MockSplitQueue on the guest side, real Unix sockets on the
//! host side, no epoll (events are delivered by calling the handlers directly).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::conn::{Conn, Deliver, HostStream, BUF_ALLOC};
use super::packet::*;
use super::*;
use crate::devices::virtio::queue::NullRegistry;
use crate::devices::virtio::test_utils::*;
use crate::devices::virtio::VirtioDevice;

const CID: u64 = 3;

static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A budget that never runs out.
fn unbounded() -> crate::devices::virtio::queue::Budget<'static> {
    crate::devices::virtio::queue::Budget::new(u64::MAX, &NEVER)
}
const TX_BUF: u64 = 0x1_0000;
const RX_BUF: u64 = 0x4_0000;
const RX_LEN: u32 = 4096;

struct H {
    m: &'static GuestMemoryMmap<()>,
    rxq: MockSplitQueue<'static, GuestMemoryMmap<()>>,
    txq: MockSplitQueue<'static, GuestMemoryMmap<()>>,
    rx: Queue,
    tx: Queue,
    dev: Vsock,
    reg: NullRegistry,
    n_tx: u16,
    n_rx: u16,
    rx_seen: u16,
    dir: tempfile::TempDir,
}

/// A clock that moves only when told (the timeouts without waiting for them).
#[derive(Debug, Clone)]
struct ManualClock {
    start: Instant,
    elapsed: std::sync::Arc<std::sync::Mutex<Duration>>,
}

impl ManualClock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            elapsed: Default::default(),
        }
    }
    fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap()
    }
}

fn h() -> H {
    h_on(Box::new(MonotonicClock))
}

/// A device on a [`ManualClock`], and that clock.
fn h_clocked() -> (H, ManualClock) {
    let clock = ManualClock::new();
    (h_on(Box::new(clock.clone())), clock)
}

fn h_on(clock: Box<dyn Clock>) -> H {
    let m: &'static GuestMemoryMmap<()> = Box::leak(Box::new(mem()));
    let rxq = MockSplitQueue::create(m, GuestAddress(0), 16);
    let txq = MockSplitQueue::create(m, GuestAddress(0x1000), 16);
    let (rx, tx) = (queue(&rxq), queue(&txq));
    let dir = tempfile::tempdir().unwrap();
    let cfg = VsockConfig {
        guest_cid: CID,
        uds_path: dir.path().join("v.sock"),
    };
    let mut dev = Vsock::with_clock(&cfg, clock).unwrap();
    dev.active = true;
    H {
        m,
        rxq,
        txq,
        rx,
        tx,
        dev,
        reg: NullRegistry::default(),
        n_tx: 0,
        n_rx: 0,
        rx_seen: 0,
        dir,
    }
}

fn hdr(op: u16, src_port: u32, dst_port: u32, len: u32) -> Header {
    Header {
        src_cid: CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        len,
        type_: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 64 * 1024,
        fwd_cnt: 0,
    }
}

impl H {
    /// The guest sends a packet (header and payload in separate descriptors).
    fn send(&mut self, h: Header, payload: &[u8]) {
        let slot = u64::from(self.n_tx % 8);
        let a = TX_BUF + slot * 0x2_0000;
        self.m.write_slice(&h.encode(), GuestAddress(a)).unwrap();
        self.m
            .write_slice(payload, GuestAddress(a + 0x100))
            .unwrap();
        let first = (self.n_tx % 8) * 2;
        let parts = if payload.is_empty() {
            vec![(a, HDR_LEN as u32, false)]
        } else {
            vec![
                (a, HDR_LEN as u32, false),
                (a + 0x100, payload.len() as u32, false),
            ]
        };
        push_chain(&self.txq, self.m, &chain(&parts, first), first);
        self.n_tx += 1;
        self.dev
            .process_tx(&mut self.tx, self.m, &mut self.reg, &mut unbounded())
            .unwrap();
    }

    fn post_rx(&mut self, n: u16) {
        for _ in 0..n {
            let i = self.n_rx % 16;
            push_chain(
                &self.rxq,
                self.m,
                &chain(&[(RX_BUF + u64::from(i) * 0x1000, RX_LEN, true)], i),
                i,
            );
            self.n_rx += 1;
        }
    }

    /// Run the rx side and return every packet the guest received.
    fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        self.dev
            .process_rx(&mut self.rx, self.m, &mut self.reg, &mut unbounded())
            .unwrap();
        let mut out = Vec::new();
        while self.rx_seen != used_idx(&self.rxq, self.m) {
            let (id, len) = used_elem(&self.rxq, self.m, self.rx_seen);
            self.rx_seen += 1;
            let a = RX_BUF + u64::from(id) * 0x1000;
            let mut raw = [0u8; HDR_LEN];
            self.m.read_slice(&mut raw, GuestAddress(a)).unwrap();
            let h = Header::decode(&raw);
            let mut data = vec![0u8; len as usize - HDR_LEN];
            self.m
                .read_slice(&mut data, GuestAddress(a + HDR_LEN as u64))
                .unwrap();
            assert_eq!(h.len as usize, data.len());
            out.push((h, data));
        }
        out
    }

    fn host_listener(&self, port: u32) -> UnixListener {
        UnixListener::bind(self.dir.path().join(format!("v.sock_{port}"))).unwrap()
    }

    /// A host process connects to the device's socket and asks for guest `port`.
    fn host_connect(&mut self, line: &[u8]) -> UnixStream {
        let mut s = UnixStream::connect(self.dir.path().join("v.sock")).unwrap();
        s.write_all(line).unwrap();
        self.dev.accept_host(&mut self.reg);
        let slot = self.dev.pending.iter().position(Option::is_some);
        if let Some(slot) = slot {
            self.dev.pending_readable(slot, &mut self.reg);
        }
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    fn readable(&mut self) {
        for slot in 0..MAX_CONNS {
            self.dev.conn_event(slot, EventSet::IN | EventSet::OUT);
        }
    }
}

/// The host side was closed by the device (EOF, or a reset when unread data was pending).
fn assert_closed(s: &mut UnixStream, what: &str) {
    let mut b = [0u8; 8];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("{what}: host stream still open: {other:?}"),
    }
}

fn ops(p: &[(Header, Vec<u8>)]) -> Vec<u16> {
    p.iter().map(|(h, _)| h.op).collect()
}

#[test]
fn guest_initiated_connection_round_trip() {
    let mut h = h();
    let l = h.host_listener(1234);
    h.send(hdr(OP_REQUEST, 5000, 1234, 0), &[]);
    let (mut host, _) = l.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    h.post_rx(4);
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RESPONSE]);
    let r = p[0].0;
    assert_eq!(
        (r.src_cid, r.dst_cid, r.src_port, r.dst_port),
        (HOST_CID, CID, 1234, 5000)
    );
    assert_eq!((r.type_, r.buf_alloc), (TYPE_STREAM, BUF_ALLOC));
    // guest -> host
    h.send(hdr(OP_RW, 5000, 1234, 5), b"hello");
    let mut buf = [0u8; 5];
    host.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    // host -> guest
    host.write_all(b"world").unwrap();
    h.readable();
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RW]);
    assert_eq!(p[0].1, b"world");
    assert_eq!(p[0].0.fwd_cnt, 5, "our fwd_cnt counts what the host took");
    assert_eq!(h.dev.connections(), 1);
}

#[test]
fn guest_connect_to_missing_port_gets_rst() {
    let mut h = h();
    h.send(hdr(OP_REQUEST, 5000, 9999, 0), &[]);
    h.post_rx(1);
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RST]);
    assert_eq!((p[0].0.src_port, p[0].0.dst_port), (9999, 5000));
    assert_eq!(h.dev.connections(), 0);
}

#[test]
fn host_initiated_connection_accept_and_data() {
    let mut h = h();
    let mut host = h.host_connect(b"CONNECT 52\n");
    h.post_rx(2);
    let p = h.recv();
    assert_eq!(ops(&p), [OP_REQUEST]);
    let req = p[0].0;
    assert_eq!(
        (req.dst_port, req.dst_cid, req.src_cid),
        (52, CID, HOST_CID)
    );
    assert!(req.src_port >= 1 << 30);
    h.send(hdr(OP_RESPONSE, 52, req.src_port, 0), &[]);
    let mut line = [0u8; 64];
    let n = host.read(&mut line).unwrap();
    assert_eq!(&line[..n], format!("OK {}\n", req.src_port).as_bytes());
    host.write_all(b"ping").unwrap();
    h.readable();
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RW]);
    assert_eq!(p[0].1, b"ping");
}

#[test]
fn data_sent_right_after_the_connect_line_is_not_lost() {
    let mut h = h();
    // One write: the CONNECT line and the first bytes of the stream.
    let mut host = h.host_connect(b"CONNECT 52\nearly-bytes");
    h.post_rx(2);
    let req = h.recv()[0].0;
    assert_eq!((req.op, req.dst_port), (OP_REQUEST, 52));
    h.send(hdr(OP_RESPONSE, 52, req.src_port, 0), &[]);
    let mut line = [0u8; 64];
    let n = host.read(&mut line).unwrap();
    assert_eq!(&line[..n], format!("OK {}\n", req.src_port).as_bytes());
    h.readable();
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RW]);
    assert_eq!(p[0].1, b"early-bytes");
}

#[test]
fn host_connect_refused_by_guest_or_timed_out_closes_the_host_stream() {
    let mut h = h();
    let mut host = h.host_connect(b"CONNECT 52\n");
    h.post_rx(4);
    let req = h.recv()[0].0;
    h.send(hdr(OP_RST, 52, req.src_port, 0), &[]);
    assert_eq!(h.dev.connections(), 0);
    let mut b = [0u8; 8];
    assert_eq!(host.read(&mut b).unwrap(), 0, "host sees EOF");

    // No answer: the timer expires the attempt and the guest gets an RST.
    let mut host = h.host_connect(b"CONNECT 53\n");
    let req = h.recv()[0].0;
    assert_eq!(req.op, OP_REQUEST);
    for c in h.dev.conns.iter_mut().flatten() {
        c.state = State::Connecting(
            Instant::now()
                .checked_sub(Duration::from_millis(1))
                .unwrap(),
        );
    }
    h.dev.tick(&mut h.reg);
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RST]);
    assert_eq!(h.dev.connections(), 0);
    assert_eq!(host.read(&mut b).unwrap(), 0);
}

#[test]
fn bad_connect_lines_are_closed() {
    let mut h = h();
    for line in [
        &b"CONNECT\n"[..],
        b"CONNECT -1\n",
        b"CONNECT 99999999999\n",
        b"HELLO 5\n",
        b"CONNECT 1 2\n",
    ] {
        let mut host = h.host_connect(line);
        assert_closed(&mut host, &format!("{line:?}"));
    }
    // Over-long line without newline.
    let mut host = h.host_connect(&[b'A'; MAX_CONNECT_LINE]);
    assert_closed(&mut host, "long line");
    assert_eq!(h.dev.connections(), 0);
    assert!(h.dev.pending.iter().all(Option::is_none));
    assert_eq!(parse_connect(b"CONNECT 4294967295\n"), Some(u32::MAX));
    assert_eq!(parse_connect(b"CONNECT 4294967296\n"), None);
    // Inactive device: host connections are refused.
    h.dev.active = false;
    let mut host = h.host_connect(b"CONNECT 52\n");
    assert_closed(&mut host, "inactive");
}

#[test]
fn unknown_connections_and_bad_packets() {
    let mut h = h();
    h.post_rx(8);
    // RW / CREDIT_REQUEST / SHUTDOWN for nothing: RST.
    h.send(hdr(OP_RW, 1, 2, 3), b"abc");
    h.send(hdr(OP_CREDIT_REQUEST, 1, 2, 0), &[]);
    h.send(hdr(OP_SHUTDOWN, 1, 2, 0), &[]);
    // RST for nothing: silence.
    h.send(hdr(OP_RST, 1, 2, 0), &[]);
    // Bad type and bad op: RST.
    let mut t = hdr(OP_REQUEST, 1, 2, 0);
    t.type_ = 2;
    h.send(t, &[]);
    h.send(hdr(0, 1, 2, 0), &[]);
    h.send(hdr(99, 1, 2, 0), &[]);
    assert_eq!(ops(&h.recv()), [OP_RST; 6]);
    // Wrong CIDs, payload longer than the chain, huge len, payload on a REQUEST: dropped.
    let mut c = hdr(OP_REQUEST, 1, 2, 0);
    c.src_cid = 7;
    h.send(c, &[]);
    let mut c = hdr(OP_REQUEST, 1, 2, 0);
    c.dst_cid = 1;
    h.send(c, &[]);
    h.send(hdr(OP_RW, 1, 2, 100), b"short");
    h.send(hdr(OP_RW, 1, 2, u32::MAX), b"x");
    h.send(hdr(OP_REQUEST, 1, 2, 1), b"x");
    assert!(h.recv().is_empty());
    // Every tx chain went back to the guest.
    assert_eq!(used_idx(&h.txq, h.m), 12);
    assert_eq!(h.dev.connections(), 0);
}

#[test]
fn short_tx_and_rx_chains() {
    let mut h = h();
    // A tx chain with fewer than 44 bytes is returned and ignored.
    push_chain(&h.txq, h.m, &chain(&[(TX_BUF, 10, false)], 0), 0);
    h.dev
        .process_tx(&mut h.tx, h.m, &mut h.reg, &mut unbounded())
        .unwrap();
    assert_eq!(used_idx(&h.txq, h.m), 1);
    // An rx chain too small for a header is handed back unused.
    h.send(hdr(OP_RW, 1, 2, 0), &[]);
    push_chain(&h.rxq, h.m, &chain(&[(RX_BUF, 20, true)], 0), 0);
    h.n_rx = 1;
    h.dev
        .process_rx(&mut h.rx, h.m, &mut h.reg, &mut unbounded())
        .unwrap();
    assert_eq!(used_elem(&h.rxq, h.m, 0), (0, 0));
    h.rx_seen = 1;
    h.post_rx(1);
    assert_eq!(ops(&h.recv()), [OP_RST]);
}

#[test]
fn credit_limits_host_to_guest_data() {
    let mut h = h();
    let l = h.host_listener(77);
    let mut r = hdr(OP_REQUEST, 600, 77, 0);
    r.buf_alloc = 4;
    h.send(r, &[]);
    let (mut host, _) = l.accept().unwrap();
    h.post_rx(8);
    assert_eq!(ops(&h.recv()), [OP_RESPONSE]);
    host.write_all(b"abcdefghij").unwrap();
    h.readable();
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RW]);
    assert_eq!(p[0].1, b"abcd");
    assert!(h.recv().is_empty(), "no credit left");
    // The guest consumed 4 bytes and says so.
    let mut u = hdr(OP_CREDIT_UPDATE, 600, 77, 0);
    u.buf_alloc = 4;
    u.fwd_cnt = 4;
    h.send(u, &[]);
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RW]);
    assert_eq!(p[0].1, b"efgh");
    // A lying fwd_cnt (beyond what we sent) does not create credit.
    let mut u = hdr(OP_CREDIT_UPDATE, 600, 77, 0);
    u.buf_alloc = 4;
    u.fwd_cnt = 1000;
    h.send(u, &[]);
    assert!(h.recv().is_empty());
    // CREDIT_REQUEST is answered with our credit.
    let mut q = hdr(OP_CREDIT_REQUEST, 600, 77, 0);
    q.buf_alloc = 0;
    q.fwd_cnt = 8;
    h.send(q, &[]);
    let p = h.recv();
    assert_eq!(ops(&p), [OP_CREDIT_UPDATE]);
    assert_eq!(p[0].0.buf_alloc, BUF_ALLOC);
}

#[test]
fn shutdown_and_host_close() {
    let mut h = h();
    let l = h.host_listener(80);
    h.send(hdr(OP_REQUEST, 700, 80, 0), &[]);
    let (mut host, _) = l.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    h.post_rx(8);
    h.recv();
    // Guest will send no more: the host reads EOF, the connection stays.
    let mut s = hdr(OP_SHUTDOWN, 700, 80, 0);
    s.flags = SHUTDOWN_SEND;
    h.send(s, &[]);
    let mut b = [0u8; 4];
    assert_eq!(host.read(&mut b).unwrap(), 0);
    assert_eq!(h.dev.connections(), 1);
    // RW after SHUTDOWN(SEND) is a protocol violation: RST.
    h.send(hdr(OP_RW, 700, 80, 1), b"z");
    assert_eq!(ops(&h.recv()), [OP_RST]);
    assert_eq!(h.dev.connections(), 0);

    // Full shutdown from the guest: RST and cleanup.
    h.send(hdr(OP_REQUEST, 701, 80, 0), &[]);
    let (_host2, _) = l.accept().unwrap();
    assert_eq!(ops(&h.recv()), [OP_RESPONSE]);
    let mut s = hdr(OP_SHUTDOWN, 701, 80, 0);
    s.flags = SHUTDOWN_SEND | SHUTDOWN_RCV;
    h.send(s, &[]);
    assert_eq!(ops(&h.recv()), [OP_RST]);
    assert_eq!(h.dev.connections(), 0);

    // Host closes: the guest gets SHUTDOWN, then its RST removes the connection.
    h.send(hdr(OP_REQUEST, 702, 80, 0), &[]);
    let (host3, _) = l.accept().unwrap();
    assert_eq!(ops(&h.recv()), [OP_RESPONSE]);
    drop(host3);
    h.readable();
    let p = h.recv();
    assert_eq!(ops(&p), [OP_SHUTDOWN]);
    assert_eq!(p[0].0.flags, SHUTDOWN_SEND | SHUTDOWN_RCV);
    h.send(hdr(OP_RST, 702, 80, 0), &[]);
    assert_eq!(h.dev.connections(), 0);
    assert!(h.reg.fds.is_empty(), "closed connections are unregistered");
}

#[test]
fn connection_cap() {
    let mut h = h();
    let l = h.host_listener(90);
    for i in 0..MAX_CONNS as u32 + 3 {
        h.send(hdr(OP_REQUEST, 1000 + i, 90, 0), &[]);
    }
    assert_eq!(h.dev.connections(), MAX_CONNS);
    h.post_rx(16);
    let mut p = h.recv();
    h.post_rx(16);
    p.extend(h.recv());
    h.post_rx(16);
    p.extend(h.recv());
    assert_eq!(p.iter().filter(|(h, _)| h.op == OP_RST).count(), 3);
    assert_eq!(
        p.iter().filter(|(h, _)| h.op == OP_RESPONSE).count(),
        MAX_CONNS
    );
    drop(l);
}

#[test]
fn duplicate_request_resets() {
    let mut h = h();
    let _l = h.host_listener(91);
    h.send(hdr(OP_REQUEST, 10, 91, 0), &[]);
    h.send(hdr(OP_REQUEST, 10, 91, 0), &[]);
    h.post_rx(4);
    assert!(ops(&h.recv()).ends_with(&[OP_RST]));
    assert_eq!(h.dev.connections(), 0);
}

#[test]
fn reset_drops_connections_and_releases_fds() {
    let mut h = h();
    let _l = h.host_listener(92);
    h.send(hdr(OP_REQUEST, 10, 92, 0), &[]);
    assert_eq!(h.reg.fds.len(), 1);
    h.dev.reset();
    assert_eq!(h.dev.connections(), 0);
    h.dev.housekeeping(&mut h.reg);
    assert!(h.reg.fds.is_empty());
}

/// A host stream that never takes data.
struct Stuck;
impl Read for Stuck {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(ErrorKind::WouldBlock.into())
    }
}
impl Write for Stuck {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(ErrorKind::WouldBlock.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl HostStream for Stuck {
    fn shutdown_write(&mut self) {}
}

#[test]
fn per_connection_buffer_is_bounded() {
    let mut c = Conn::new(Stuck, 1, 2, CID, State::Established, 0);
    let chunk = vec![0u8; 4096];
    for _ in 0..BUF_ALLOC / 4096 {
        assert_eq!(c.deliver(&chunk), Deliver::Ok);
    }
    assert_eq!(c.tx_buf.len(), BUF_ALLOC as usize);
    assert_eq!(c.deliver(&[1]), Deliver::Reset, "guest overran our credit");
    assert_eq!(c.fwd_cnt, 0);
}

#[test]
fn credit_accounting_is_wrapping_safe() {
    let mut c = Conn::new(Stuck, 1, 2, CID, State::Established, 0);
    c.peer_buf_alloc = 100;
    c.rx_cnt = 5;
    c.peer_fwd_cnt = u32::MAX - 10; // in flight 16 across the wrap
    assert_eq!(c.peer_credit(), 84);
    c.peer_fwd_cnt = 1000; // consumed more than sent: no extra credit
    assert_eq!(c.peer_credit(), 0);
}

/// Regression (review): accept(2) failing for want of descriptors (EMFILE) returned with
/// the connection still waiting, and the level-triggered listener was reported again at
/// once: the VMM thread spun. Now the listener is unwatched until the next tick, which
/// watches it again (unwatched again if accept still fails); once accept works the waiting
/// connection is taken.
#[test]
fn a_listener_that_cannot_accept_is_unwatched_until_the_next_tick() {
    use std::os::fd::AsRawFd;
    let mut h = h();
    h.dev.register_extra(&mut h.reg);
    let listener = h.dev.listener.as_raw_fd();
    let watched = |h: &H| h.reg.fds.iter().filter(|&&fd| fd == listener).count();
    assert_eq!(watched(&h), 1);
    let mut host = UnixStream::connect(h.dir.path().join("v.sock")).unwrap();
    host.write_all(b"CONNECT 52\n").unwrap();
    for round in 0..2 {
        let mut calls = 0;
        h.dev.accept_with(&mut h.reg, |_| {
            calls += 1;
            Err(std::io::Error::from_raw_os_error(libc::EMFILE))
        });
        assert_eq!(calls, 1, "round {round}: one failed accept per event");
        assert_eq!(
            watched(&h),
            0,
            "round {round}: unwatched while accept fails"
        );
        h.dev.tick(&mut h.reg);
        assert_eq!(watched(&h), 1, "round {round}: watched again at the tick");
    }
    h.dev.accept_host(&mut h.reg);
    let slot = h.dev.pending.iter().position(Option::is_some);
    assert!(slot.is_some(), "the waiting connection was taken");
    assert_eq!(watched(&h), 1);
    h.dev.tick(&mut h.reg);
    assert_eq!(watched(&h), 1, "a watched listener is not added twice");
}

/// A registry that refuses every fd (the event loop out of resources).
#[derive(Default)]
struct RefusingRegistry;

impl crate::devices::virtio::queue::FdRegistry for RefusingRegistry {
    fn add(&mut self, _fd: std::os::fd::RawFd, _data: u32, _set: EventSet) -> bool {
        false
    }
    fn remove(&mut self, _fd: std::os::fd::RawFd) -> bool {
        true
    }
}

/// Regression (review): when the event loop refused to watch a new host stream, the
/// connection was dropped silently (`if self.add_conn(..) {}`). Now the host stream is
/// closed and the refusal counted and logged.
#[test]
fn host_stream_the_event_loop_cannot_watch_is_closed_and_reported() {
    let mut h = h();
    let mut host = UnixStream::connect(h.dir.path().join("v.sock")).unwrap();
    host.write_all(b"CONNECT 52\n").unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    h.dev.accept_host(&mut h.reg);
    let slot = h.dev.pending.iter().position(Option::is_some).unwrap();
    h.dev.pending_readable(slot, &mut RefusingRegistry);
    assert_eq!(h.dev.connections(), 0);
    assert_eq!(h.dev.refusals(), (1, Some(Refusal::Unwatchable)));
    assert_closed(&mut host, "unwatchable stream");
}

#[test]
fn every_host_connection_refusal_is_counted_with_its_reason() {
    let mut h = h();
    let mut host = h.host_connect(b"HELLO 5\n");
    assert_closed(&mut host, "bad line");
    assert_eq!(h.dev.refusals(), (1, Some(Refusal::BadConnectLine)));
    h.dev.active = false;
    let mut host = h.host_connect(b"CONNECT 52\n");
    assert_closed(&mut host, "inactive");
    assert_eq!(h.dev.refusals(), (2, Some(Refusal::Inactive)));
    h.dev.active = true;
    let _l = h.host_listener(93);
    for i in 0..MAX_CONNS as u32 {
        h.send(hdr(OP_REQUEST, 2000 + i, 93, 0), &[]);
    }
    assert_eq!(h.dev.connections(), MAX_CONNS);
    let mut host = h.host_connect(b"CONNECT 52\n");
    assert_closed(&mut host, "table full");
    assert_eq!(h.dev.refusals(), (3, Some(Refusal::TableFull)));
}

fn cfg_at(path: &std::path::Path) -> VsockConfig {
    VsockConfig {
        guest_cid: CID,
        uds_path: path.to_path_buf(),
    }
}

/// Regression (review): an existing socket at --vsock-uds was unlinked silently, so a
/// second VMM took over the first one's listener. Now the second one is refused and the
/// first keeps its socket.
#[test]
fn a_second_device_on_the_same_path_is_refused_and_the_first_keeps_it() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("room.vsock");
    let first = Vsock::new(&cfg_at(&path)).unwrap();
    let ino = std::fs::metadata(&path).unwrap().ino();
    let err = Vsock::new(&cfg_at(&path)).unwrap_err();
    assert!(
        matches!(err, VirtioError::VsockInUse(..)),
        "second device: {err}"
    );
    assert!(err.to_string().contains("room.vsock.lock"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    // The first device's listener still answers.
    let _c = UnixStream::connect(&path).unwrap();
    drop(first);
}

#[test]
fn a_live_listener_that_is_not_ours_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("room.vsock");
    let theirs = UnixListener::bind(&path).unwrap();
    let err = Vsock::new(&cfg_at(&path)).unwrap_err();
    assert!(err.to_string().contains("a live listener owns it"), "{err}");
    let _c = UnixStream::connect(&path).unwrap();
    let _ = theirs.accept().unwrap();
    // A plain file there is refused too (never removed).
    let file = dir.path().join("file.vsock");
    std::fs::write(&file, b"keep").unwrap();
    let err = Vsock::new(&cfg_at(&file)).unwrap_err();
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
}

#[test]
fn a_stale_socket_is_replaced_and_a_dead_holder_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("room.vsock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "the stale socket file stays behind");
    let dev = Vsock::new(&cfg_at(&path)).unwrap();
    drop(dev);
    // The first device is gone (its lock released with its fd): the next one claims the
    // stale socket it left.
    let _again = Vsock::new(&cfg_at(&path)).unwrap();
}

/// Regression (review): the socket's mode came from the umask. It is 0600 always.
#[test]
fn the_socket_is_created_0600_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("room.vsock");
    // SAFETY: umask has no memory effects; restored below.
    let old = unsafe { libc::umask(0) };
    let dev = Vsock::new(&cfg_at(&path));
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let _dev = dev.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let lock = std::fs::metadata(lock_path(&path))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(lock, 0o600, "lock file mode {lock:o}");
}

/// Regression (found by the courier's 100 MiB system test): a guest that closed (SHUTDOWN
/// with both flags) while data for the host was still buffered got its RST at once, and
/// the buffered tail (up to BUF_ALLOC) was dropped with the connection. Now the reset
/// waits until the host has taken every byte.
#[test]
fn data_the_host_has_not_taken_yet_survives_the_guests_close() {
    let mut h = h();
    let l = h.host_listener(81);
    h.send(hdr(OP_REQUEST, 703, 81, 0), &[]);
    let (mut host, _) = l.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    h.post_rx(8);
    assert_eq!(ops(&h.recv()), [OP_RESPONSE]);
    let slot = h.dev.conns.iter().position(Option::is_some).unwrap();
    let buffered = |h: &H| h.dev.conns[slot].as_ref().unwrap().tx_buf.len();
    // Send until the host socket is full and the device holds the rest.
    let mut sent = Vec::new();
    for i in 0..40u8 {
        let part = vec![i; 32 * 1024];
        h.send(hdr(OP_RW, 703, 81, part.len() as u32), &part);
        sent.extend_from_slice(&part);
        if buffered(&h) > 0 {
            break;
        }
    }
    assert!(buffered(&h) > 0, "the host socket never filled up");
    let mut s = hdr(OP_SHUTDOWN, 703, 81, 0);
    s.flags = SHUTDOWN_SEND | SHUTDOWN_RCV;
    h.send(s, &[]);
    let early = ops(&h.recv());
    assert!(
        !early.contains(&OP_RST),
        "no RST while the host has not taken everything: {early:?}"
    );
    assert_eq!(h.dev.connections(), 1);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match host.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("host read after {} bytes: {e}", got.len()),
        }
        h.dev.conn_event(slot, EventSet::OUT);
    }
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "the bytes differ");
    assert!(ops(&h.recv()).ends_with(&[OP_RST]));
    assert_eq!(h.dev.connections(), 0);
}

/// The housekeeping timer is read only when the event loop says it expired; a read with no
/// expiry due returns at once (the timer is non-blocking) instead of stalling the VMM
/// thread until the next one. A tick with nothing due changes nothing.
#[test]
fn a_tick_with_no_expiry_due_does_not_wait_for_one() {
    let (mut h, _clock) = h_clocked();
    // The expiries since creation (if the test was slow) are consumed first; then a read
    // finds none due and says so at once (a blocking timer would wait for the next one
    // and return it, every time).
    let none_due = (0..3).find_map(|_| h.dev.timer.wait().err());
    assert_eq!(
        none_due.map(|e| std::io::Error::from(e).kind()),
        Some(ErrorKind::WouldBlock),
        "a read with no expiry due returns at once"
    );
    let _host = h.host_connect(b"CONNECT 60\n");
    h.dev.tick(&mut h.reg);
    h.dev.tick(&mut h.reg);
    assert_eq!(h.dev.connections(), 1);
}

/// A host connection the guest never answers lives until its deadline (on the device's
/// clock), not a tick longer: then the host stream is closed, its fd unwatched and the
/// guest told (RST).
#[test]
fn an_unanswered_host_connection_is_reset_at_its_deadline_on_the_devices_clock() {
    let (mut h, clock) = h_clocked();
    let mut host = h.host_connect(b"CONNECT 61\n");
    assert_eq!(h.reg.fds.len(), 1, "the connection is watched");
    h.post_rx(4);
    let req = h.recv();
    assert_eq!(ops(&req), [OP_REQUEST]);
    clock.advance(CONNECT_TIMEOUT - Duration::from_millis(1));
    h.dev.tick(&mut h.reg);
    assert_eq!(h.dev.connections(), 1, "not before its deadline");
    assert!(h.recv().is_empty());
    clock.advance(Duration::from_millis(1));
    h.dev.tick(&mut h.reg);
    assert_eq!(h.dev.connections(), 0, "closed at its deadline");
    assert!(h.reg.fds.is_empty(), "and unwatched");
    assert_closed(&mut host, "unanswered host connection");
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RST]);
    assert_eq!(
        (p[0].0.src_port, p[0].0.dst_port),
        (req[0].0.src_port, req[0].0.dst_port)
    );
}

/// A host socket that never finishes its CONNECT line is closed at its deadline and the
/// refusal counted; one that is not yet due stays.
#[test]
fn a_host_socket_without_a_connect_line_is_closed_at_its_deadline() {
    let (mut h, clock) = h_clocked();
    let mut first = h.host_connect(b"CONN");
    clock.advance(Duration::from_secs(1));
    let mut second = h.host_connect(b"CONNECT 6");
    assert_eq!(h.dev.pending.iter().flatten().count(), 2);
    clock.advance(CONNECT_TIMEOUT - Duration::from_secs(1));
    h.dev.tick(&mut h.reg);
    assert_closed(&mut first, "the first socket, due");
    assert_eq!(h.dev.refusals(), (1, Some(Refusal::NoConnectLine)));
    assert_eq!(h.dev.pending.iter().flatten().count(), 1);
    second.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        second.read(&mut b).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the second socket is not due yet"
    );
    clock.advance(Duration::from_secs(1));
    h.dev.tick(&mut h.reg);
    second.set_nonblocking(false).unwrap();
    assert_closed(&mut second, "the second socket, due");
    assert_eq!(h.dev.refusals(), (2, Some(Refusal::NoConnectLine)));
    assert!(h.reg.fds.is_empty(), "no pending socket stays watched");
}

/// After the host closes, the device sends SHUTDOWN and waits for the guest's RST until
/// the deadline on its clock; then it resets the connection itself.
#[test]
fn a_closing_connection_the_guest_never_resets_is_reset_at_its_deadline() {
    let (mut h, clock) = h_clocked();
    let l = h.host_listener(82);
    h.send(hdr(OP_REQUEST, 704, 82, 0), &[]);
    let (host, _) = l.accept().unwrap();
    h.post_rx(8);
    assert_eq!(ops(&h.recv()), [OP_RESPONSE]);
    drop(host);
    h.readable();
    assert_eq!(ops(&h.recv()), [OP_SHUTDOWN]);
    clock.advance(CONNECT_TIMEOUT - Duration::from_millis(1));
    h.dev.tick(&mut h.reg);
    assert_eq!(h.dev.connections(), 1, "not before its deadline");
    clock.advance(Duration::from_millis(1));
    h.dev.tick(&mut h.reg);
    assert_eq!(h.dev.connections(), 0);
    assert!(h.reg.fds.is_empty());
    let p = h.recv();
    assert_eq!(ops(&p), [OP_RST]);
    assert_eq!((p[0].0.src_port, p[0].0.dst_port), (82, 704));
}
