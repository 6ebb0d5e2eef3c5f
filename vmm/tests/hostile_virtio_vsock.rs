// SPDX-License-Identifier: GPL-3.0-or-later
//! Hostile-guest tests of virtio-vsock and virtio-rng, and the host side of the hybrid
//! vsock model: the interpreter guest acts as the guest driver (sets up the queues, posts
//! rx buffers, writes packets) while the test process plays the host application on the
//! Unix sockets. Devices without --disk: 0 = virtio-rng, 1 = virtio-vsock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchor_vmm::devices::virtio::mmio::{reg, status};
use common::virtio::{after, assert_served, r, F_WRITE, S_OK, T};
use common::{require_kvm, run_script, unique, virtio_base, Outcome, Script};

const CID: u64 = 3;

/// Queue memory: rx, tx, event queues of 16 entries.
const RXQ: u64 = 0x30_0000;
const TXQ: u64 = 0x31_0000;
const EVQ: u64 = 0x32_0000;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const RXBUF: u64 = 0x40_0000;
const TXBUF: u64 = 0x41_0000;
const RNGBUF: u64 = 0x50_0000;

const OP_REQUEST: u64 = 1;
const OP_RESPONSE: u64 = 2;
const OP_RST: u64 = 3;
const OP_RW: u64 = 5;
const OP_CREDIT_UPDATE: u64 = 6;
const OP_CREDIT_REQUEST: u64 = 7;
const FIRST_HOST_PORT: u64 = 1 << 30;

/// A vsock header as seen by the guest.
#[derive(Clone, Copy)]
struct Pkt {
    src_cid: u64,
    dst_cid: u64,
    src_port: u64,
    dst_port: u64,
    len: u64,
    type_: u64,
    op: u64,
    flags: u64,
    buf_alloc: u64,
    fwd_cnt: u64,
}

fn pkt(op: u64, src_port: u64, dst_port: u64) -> Pkt {
    Pkt {
        src_cid: CID,
        dst_cid: 2,
        src_port,
        dst_port,
        len: 0,
        type_: 1,
        op,
        flags: 0,
        buf_alloc: 65536,
        fwd_cnt: 0,
    }
}

/// Driver steps with this file's queue layout: queue i of a device at the address given
/// for it, its rings at + AVAIL and + USED.
impl Script {
    /// Bring the device at `base` up with one 16-entry queue per entry of `queues`.
    fn bring_up(&mut self, base: u64, queues: &[u64]) -> &mut Self {
        self.init(base);
        for (i, q) in queues.iter().enumerate() {
            self.reg(base, reg::QUEUE_SEL, i as u64)
                .reg(base, reg::QUEUE_NUM, 16)
                .reg(base, reg::QUEUE_DESC_LOW, *q)
                .reg(base, reg::QUEUE_AVAIL_LOW, q + AVAIL)
                .reg(base, reg::QUEUE_USED_LOW, q + USED)
                .reg(base, reg::QUEUE_READY, 1);
        }
        self.reg(base, reg::STATUS, S_OK)
    }
    /// Put chain `head` in slot `slot` of queue `q`'s available ring and publish `idx`.
    fn offer(&mut self, q: u64, slot: u64, head: u64, idx: u64) -> &mut Self {
        self.avail(q + AVAIL, slot, head, idx)
    }
    /// Write the vsock header `p` at `at`.
    fn packet(&mut self, at: u64, p: Pkt) -> &mut Self {
        self.write(at, 8, p.src_cid)
            .write(at + 8, 8, p.dst_cid)
            .write(at + 16, 8, p.src_port | (p.dst_port << 32))
            .write(at + 24, 8, p.len | (p.type_ << 32) | (p.op << 48))
            .write(at + 32, 8, p.flags | (p.buf_alloc << 32))
            .write(at + 40, 4, p.fwd_cnt)
    }
    /// Send `p` (plus `payload`) as tx chain number `n` (1-based) and wait for it to be used.
    fn send(&mut self, p: Pkt, payload: &[u8], n: u64) -> &mut Self {
        let at = TXBUF + ((n - 1) % 16) * 0x1000;
        self.packet(at, p);
        for (k, c) in payload.chunks(8).enumerate() {
            let mut v = [0u8; 8];
            v[..c.len()].copy_from_slice(c);
            self.write(at + 44 + 8 * k as u64, 8, u64::from_le_bytes(v));
        }
        self.send_desc(at, 44 + payload.len() as u64, 0, n)
    }
    /// Send the one-descriptor chain `addr`/`len`/`flags` as tx chain number `n` and wait
    /// for it to be used.
    fn send_desc(&mut self, addr: u64, len: u64, flags: u64, n: u64) -> &mut Self {
        let slot = (n - 1) % 16;
        self.desc(TXQ, slot, addr, len, flags, 0)
            .offer(TXQ, slot, slot, n)
            .notify(virtio_base(1), 1)
            .poll(TXQ + USED + 2, 2, n)
    }
}

/// Post rx buffers 0..n (4 KiB each) and notify.
fn post_rx(s: &mut Script, n: u64) {
    for i in 0..n {
        s.desc(RXQ, i, RXBUF + i * 0x1000, 4096, F_WRITE, 0)
            .offer(RXQ, i, i, i + 1);
    }
    s.notify(virtio_base(1), 0);
}

/// Print ports and len/type/op of rx buffer `i`.
fn read_rx(s: &mut Script, i: u64) {
    s.read(RXBUF + i * 0x1000 + 16, 8)
        .read(RXBUF + i * 0x1000 + 24, 8);
}

fn ports(src: u64, dst: u64) -> String {
    r(src | (dst << 32))
}

fn len_op(len: u64, op: u64) -> String {
    r(len | (1 << 32) | (op << 48))
}

/// A host service listening on `<path>_<port>`, where guest connections to host port
/// `port` go. Returns its socket path (to remove afterwards) and the listener.
fn host_service(path: &Path, port: u64) -> (OsString, UnixListener) {
    let mut svc = path.as_os_str().to_owned();
    svc.push(format!("_{port}"));
    let _ = std::fs::remove_file(&svc);
    let listener = UnixListener::bind(&svc).unwrap();
    (svc, listener)
}

fn run_vsock(s: &Script, uds: &Path) -> Outcome {
    run_vsock_for(s, uds, T)
}

fn run_vsock_for(s: &Script, uds: &Path, timeout: Duration) -> Outcome {
    require_kvm();
    let cid = CID.to_string();
    let u = uds.display().to_string();
    run_script(s, &["--vsock-cid", &cid, "--vsock-uds", &u], timeout)
}

fn lines(o: &Outcome) -> Vec<&str> {
    o.serial.lines().collect()
}

/// Host application: keeps trying `CONNECT <port>` until the guest answers (the device
/// refuses host connections until the driver is up), then exchanges data.
fn host_app(
    path: PathBuf,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(String, String), String>> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(25);
        while Instant::now() < deadline && !done.load(Ordering::Relaxed) {
            let Ok(mut s) = UnixStream::connect(&path) else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            if s.write_all(b"CONNECT 52\n").is_err() {
                continue;
            }
            let mut buf = [0u8; 64];
            let n = match s.read(&mut buf) {
                Ok(n) if n > 0 => n,
                _ => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            let ok = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"hello\n").map_err(|e| e.to_string())?;
            let mut ping = [0u8; 4];
            s.read_exact(&mut ping)
                .map_err(|e| format!("{ok:?} then {e}"))?;
            return Ok((ok, String::from_utf8_lossy(&ping).into_owned()));
        }
        Err("no answer from the guest".into())
    })
}

#[test]
fn vsock_host_initiated_connection_reaches_the_guest_and_back() {
    let path = unique("hostconn");
    let done = Arc::new(AtomicBool::new(false));
    let app = host_app(path.clone(), done.clone());
    let vs = virtio_base(1);
    let mut s = Script::new();
    s.bring_up(vs, &[RXQ, TXQ, EVQ]).read(vs + reg::STATUS, 4);
    post_rx(&mut s, 2);
    // Wait (bounded) for the host's CONNECT to arrive as an OP_REQUEST.
    s.repeat(400, 1).poll(RXQ + USED + 2, 2, 1).print("GOTREQ");
    read_rx(&mut s, 0);
    let mut resp = pkt(OP_RESPONSE, 52, FIRST_HOST_PORT);
    resp.buf_alloc = 4096;
    s.send(resp, &[], 1)
        // The host writes "hello\n": an RW packet in rx buffer 1.
        .repeat(400, 1)
        .poll(RXQ + USED + 2, 2, 2)
        .print("GOTDATA");
    read_rx(&mut s, 1);
    s.read(RXBUF + 0x1000 + 44, 8);
    let mut rw = pkt(OP_RW, 52, FIRST_HOST_PORT);
    rw.len = 4;
    s.send(rw, b"ping", 2).end();
    let o = run_vsock(&s, &path);
    done.store(true, Ordering::Relaxed);
    let host = app.join().unwrap();
    assert_served(&o);
    assert_eq!(lines(&o)[0], r(S_OK), "{o:#?}");
    let got = after(&o, "GOTREQ");
    assert_eq!(
        &got[..2],
        [ports(FIRST_HOST_PORT, 52), len_op(0, OP_REQUEST)],
        "the guest saw an OP_REQUEST from host port 2^30 to port 52: {o:#?}"
    );
    let data = after(&o, "GOTDATA");
    assert_eq!(
        &data[..3],
        [
            ports(FIRST_HOST_PORT, 52),
            len_op(6, OP_RW),
            r(u64::from_le_bytes(*b"hello\n\0\0"))
        ],
        "{o:#?}"
    );
    let (ok, ping) = host.unwrap_or_else(|e| panic!("host side: {e}: {o:#?}"));
    assert_eq!(ok, format!("OK {FIRST_HOST_PORT}\n"));
    assert_eq!(ping, "ping");
}

#[test]
fn vsock_bad_packets_get_rst_or_are_dropped_and_the_device_keeps_serving() {
    let path = unique("badpkt");
    // A host service on port 80 for the final, valid connection.
    let (svc, listener) = host_service(&path, 80);
    let vs = virtio_base(1);
    let mut s = Script::new();
    s.bring_up(vs, &[RXQ, TXQ, EVQ]);
    post_rx(&mut s, 8);
    let mut n = 0;
    fn send(s: &mut Script, n: &mut u64, p: Pkt, payload: &[u8]) {
        *n += 1;
        s.send(p, payload, *n);
    }
    // Answered with RST: unknown op, datagram type, RW / CREDIT_REQUEST on no connection.
    send(&mut s, &mut n, pkt(99, 1000, 80), &[]);
    let mut dgram = pkt(OP_REQUEST, 1001, 80);
    dgram.type_ = 2;
    send(&mut s, &mut n, dgram, &[]);
    let mut rw = pkt(OP_RW, 1002, 80);
    rw.len = 3;
    send(&mut s, &mut n, rw, b"abc");
    send(&mut s, &mut n, pkt(OP_CREDIT_REQUEST, 1003, 80), &[]);
    // Dropped: wrong source CID, wrong destination CID, len beyond the chain, huge len,
    // payload on a REQUEST, and a 10-byte header.
    let mut c = pkt(OP_REQUEST, 1004, 80);
    c.src_cid = 9;
    send(&mut s, &mut n, c, &[]);
    let mut c = pkt(OP_REQUEST, 1005, 80);
    c.dst_cid = 0xffff_ffff;
    send(&mut s, &mut n, c, &[]);
    let mut c = pkt(OP_RW, 1006, 80);
    c.len = 1000;
    send(&mut s, &mut n, c, b"x");
    let mut c = pkt(OP_RW, 1007, 80);
    c.len = 0xffff_ffff;
    send(&mut s, &mut n, c, b"x");
    let mut c = pkt(OP_REQUEST, 1008, 80);
    c.len = 8;
    send(&mut s, &mut n, c, b"12345678");
    n += 1;
    s.send_desc(TXBUF, 10, 0, n);
    // A RST descriptor that is device-writable (no readable bytes at all).
    n += 1;
    s.send_desc(TXBUF, 44, F_WRITE, n)
        .poll(RXQ + USED + 2, 2, 4)
        .print("RSTS");
    for i in 0..4 {
        read_rx(&mut s, i);
    }
    // Serving: a valid connection to host port 80 gets OP_RESPONSE.
    s.print("SERVE");
    send(&mut s, &mut n, pkt(OP_REQUEST, 2000, 80), &[]);
    s.repeat(50, 1).poll(RXQ + USED + 2, 2, 5);
    read_rx(&mut s, 4);
    s.end();
    let o = run_vsock(&s, &path);
    assert_served(&o);
    let l = lines(&o);
    assert!(
        l.iter().take_while(|l| **l != "RSTS").all(|l| *l == "P ok"),
        "{o:#?}"
    );
    let rst: Vec<&str> = after(&o, "RSTS").into_iter().take(8).collect();
    assert_eq!(
        rst,
        [
            ports(80, 1000),
            len_op(0, OP_RST),
            ports(80, 1001),
            len_op(0, OP_RST),
            ports(80, 1002),
            len_op(0, OP_RST),
            ports(80, 1003),
            len_op(0, OP_RST)
        ],
        "{o:#?}"
    );
    let serve = after(&o, "SERVE");
    assert!(serve.contains(&"P ok"), "{o:#?}");
    assert_eq!(
        &serve[serve.len() - 3..serve.len() - 1],
        [ports(80, 2000), len_op(0, OP_RESPONSE)],
        "{o:#?}"
    );
    assert!(
        listener.accept().is_ok(),
        "the host service got the guest's connection"
    );
    let _ = std::fs::remove_file(&svc);
}

#[test]
fn vsock_credit_abuse() {
    let path = unique("credit");
    let (svc, listener) = host_service(&path, 81);
    let vs = virtio_base(1);
    let mut s = Script::new();
    s.bring_up(vs, &[RXQ, TXQ, EVQ]);
    post_rx(&mut s, 4);
    // Connect with absurd credit values, then lie about consumption and ask for credit.
    let mut req = pkt(OP_REQUEST, 3000, 81);
    req.buf_alloc = 0xffff_ffff;
    req.fwd_cnt = 0xffff_fff0;
    s.send(req, &[], 1).poll(RXQ + USED + 2, 2, 1);
    let mut upd = pkt(OP_CREDIT_UPDATE, 3000, 81);
    upd.buf_alloc = 0;
    upd.fwd_cnt = 0x7fff_ffff;
    s.send(upd, &[], 2);
    let mut creq = pkt(OP_CREDIT_REQUEST, 3000, 81);
    creq.buf_alloc = 0;
    s.send(creq, &[], 3)
        .poll(RXQ + USED + 2, 2, 2)
        .print("CREDIT");
    read_rx(&mut s, 1);
    s.read(RXBUF + 0x1000 + 32, 8);
    // More data than a 44+payload chain carries (an RW claiming 64 KiB + 1).
    let mut big = pkt(OP_RW, 3000, 81);
    big.len = 0x1_0001;
    s.send(big, b"x", 4)
        .print("ALIVE")
        .read(vs + reg::MAGIC, 4)
        .end();
    let o = run_vsock(&s, &path);
    assert_served(&o);
    let c = after(&o, "CREDIT");
    assert_eq!(
        &c[..3],
        [
            ports(81, 3000),
            len_op(0, OP_CREDIT_UPDATE),
            r(u64::from(anchor_vmm::devices::virtio::vsock::conn::BUF_ALLOC) << 32)
        ],
        "we advertise our own buffer whatever the guest claims: {o:#?}"
    );
    let a = after(&o, "ALIVE");
    assert_eq!(a[0], r(0x7472_6976));
    drop(listener);
    let _ = std::fs::remove_file(&svc);
}

#[test]
fn vsock_notification_and_packet_flood() {
    let path = unique("flood");
    let vs = virtio_base(1);
    let mut s = Script::new();
    s.bring_up(vs, &[RXQ, TXQ, EVQ]);
    // 16 RW packets for unknown connections, offered again and again (avail idx moves
    // by exactly 16 each round), with only 2 rx buffers for the RST replies.
    s.packet(TXBUF, pkt(OP_RW, 5, 6));
    for i in 0..16 {
        s.desc(TXQ, i, TXBUF, 44, 0, 0)
            .write(TXQ + AVAIL + 4 + 2 * i, 2, i);
    }
    post_rx(&mut s, 2);
    for round in 1..=10u64 {
        s.write(TXQ + AVAIL + 2, 2, 16 * round)
            .notify(vs, 1)
            .poll(TXQ + USED + 2, 2, 16 * round);
    }
    s.repeat(2000, 3).notify(vs, 0).notify(vs, 1).notify(vs, 2);
    s.print("ALIVE")
        .read(RXQ + USED + 2, 2)
        .read(vs + reg::STATUS, 4)
        .end();
    let o = run_vsock(&s, &path);
    assert_served(&o);
    let l = lines(&o);
    assert!(l[..10].iter().all(|x| *x == "P ok"), "{o:#?}");
    let a = after(&o, "ALIVE");
    assert_eq!(
        &a[..2],
        [r(2), r(S_OK)],
        "two RSTs delivered, device healthy: {o:#?}"
    );
}

#[test]
fn vsock_avail_jump_fails_the_device_and_reset_recovers() {
    let path = unique("jump");
    let vs = virtio_base(1);
    let mut s = Script::new();
    s.bring_up(vs, &[RXQ, TXQ, EVQ])
        .write(TXQ + AVAIL + 2, 2, 0x8000)
        .notify(vs, 1)
        .poll(
            vs + reg::STATUS,
            4,
            S_OK | u64::from(status::DEVICE_NEEDS_RESET),
        )
        .write(TXQ + AVAIL + 2, 2, 0);
    s.bring_up(vs, &[RXQ, TXQ, EVQ]).read(vs + reg::STATUS, 4);
    post_rx(&mut s, 1);
    s.send(pkt(OP_REQUEST, 7, 4242), &[], 1)
        .poll(RXQ + USED + 2, 2, 1);
    read_rx(&mut s, 0);
    s.end();
    let o = run_vsock(&s, &path);
    assert_served(&o);
    assert_eq!(
        lines(&o)[..6],
        [
            "P ok",
            &r(S_OK),
            "P ok",
            "P ok",
            &ports(4242, 7),
            &len_op(0, OP_RST)
        ],
        "connection to a port without a host service: RST: {o:#?}"
    );
}

#[test]
fn rng_fills_buffers_with_bounded_work() {
    require_kvm();
    let rng = virtio_base(0);
    let mut s = Script::new();
    s.bring_up(rng, &[RXQ])
        // A valid 16-byte request.
        .desc(RXQ, 0, RNGBUF, 16, F_WRITE, 0)
        .offer(RXQ, 0, 0, 1)
        .notify(rng, 0)
        .poll(RXQ + USED + 2, 2, 1)
        .read(RXQ + USED + 8, 4)
        // 4 GiB asked: capped at 64 KiB.
        .desc(RXQ, 1, RNGBUF + 0x1000, 0xffff_ffff, F_WRITE, 0)
        .offer(RXQ, 1, 1, 2)
        .notify(rng, 0)
        .poll(RXQ + USED + 2, 2, 2)
        .read(RXQ + USED + 16, 4)
        // Outside RAM and a device-readable buffer: nothing written.
        .desc(RXQ, 2, 0xffff_ffff_0000, 64, F_WRITE, 0)
        .desc(RXQ, 3, RNGBUF, 64, 0, 0)
        .offer(RXQ, 2, 2, 3)
        .offer(RXQ, 3, 3, 4)
        .notify(rng, 0)
        .poll(RXQ + USED + 2, 2, 4)
        .read(RXQ + USED + 24, 4)
        .read(RXQ + USED + 32, 4)
        .read(RNGBUF, 8)
        .read(RNGBUF + 8, 8)
        .end();
    let o = run_script(&s, &[], T);
    assert_served(&o);
    let l = lines(&o);
    assert_eq!(
        &l[..8],
        [
            "P ok",
            &r(16),
            "P ok",
            &r(65536),
            "P ok",
            &r(0),
            &r(0),
            l[7]
        ],
        "{o:#?}"
    );
    assert!(
        l[7] != r(0) || l[8] != r(0),
        "random bytes were written: {o:#?}"
    );
}

/// A 256-entry rng queue for the flood.
const RNG_Q: u64 = 0x60_0000;
const RNG_AVAIL: u64 = 0x61_0000;
const RNG_USED: u64 = 0x62_0000;

/// One run of the flood: the rng used index the guest read just before notifying vsock
/// (NOTIFY), the one it read once the vsock packet was served (PROBE), and the outcome.
fn rng_flood_run(attempt: u32) -> (u64, u64, Outcome) {
    let path = unique(&format!("rngflood{attempt}"));
    let (rng, vs) = (virtio_base(0), virtio_base(1));
    let mut s = Script::new();
    s.init(rng)
        .queue(rng, 0, 256, RNG_Q, RNG_AVAIL, RNG_USED)
        .reg(rng, reg::STATUS, S_OK);
    for i in 0..256 {
        s.desc(RNG_Q, i, RNGBUF, 0xffff_ffff, F_WRITE, 0)
            .write(RNG_AVAIL + 4 + 2 * i, 2, i);
    }
    // The vsock probe: an RST for a connection that does not exist (consumed, no reply).
    s.bring_up(vs, &[RXQ, TXQ, EVQ])
        .packet(TXBUF, pkt(OP_RST, 5, 6))
        .desc(TXQ, 0, TXBUF, 44, 0, 0)
        .offer(TXQ, 0, 0, 1);
    s.write(RNG_AVAIL + 2, 2, 256)
        .notify(rng, 0)
        .print("NOTIFY")
        .read(RNG_USED + 2, 2)
        .notify(vs, 1)
        .poll(TXQ + USED + 2, 2, 1)
        .print("PROBE")
        .read(RNG_USED + 2, 2)
        .repeat(50, 1)
        .poll(RNG_USED + 2, 2, 256)
        .print("DRAINED")
        .read(RNG_USED + 4 + 8 * 255 + 4, 4)
        .read(rng + reg::STATUS, 4)
        .end();
    let o = run_vsock(&s, &path);
    assert_served(&o);
    let value = |tag: &str| {
        let l = after(&o, tag);
        u64::from_str_radix(l[0].trim_start_matches("R "), 16).unwrap()
    };
    let (before, at_probe) = (value("NOTIFY"), value("PROBE"));
    let a = after(&o, "DRAINED");
    assert_eq!(
        &a[..2],
        [r(65536), r(S_OK)],
        "all 256 served, 64 KiB each: {o:#?}"
    );
    (before, at_probe, o)
}

#[test]
fn rng_flood_of_huge_buffers_is_served_in_bounded_turns() {
    // Regression (review): this used to assert only that the run completed. Now it shows
    // the bound: a full 256-entry rng ring of 4 GiB buffers (each capped at 64 KiB:
    // 16 MiB of entropy in all) is notified, then one vsock packet. The rng works at most
    // 256 KiB per event-loop turn, so the vsock packet is handled long before the ring is
    // drained; afterwards every rng buffer is still served, 64 KiB each.
    //
    // The experiment needs the vsock notify to arrive while the rng still has work: on a
    // loaded host the guest's vcpu can be preempted between the two notifies for as long
    // as the rng needs to drain the whole ring (seen once in 20 soak runs). The guest reads
    // the rng's used index just before it notifies vsock: a run in which the ring was
    // already drained then measured nothing, and is run again (the bound itself is never
    // retried: the first run that measures it decides).
    require_kvm();
    for attempt in 0..5 {
        let (before, at_probe, o) = rng_flood_run(attempt);
        if before >= 256 {
            eprintln!("attempt {attempt}: the rng drained its ring before the vsock notify");
            continue;
        }
        assert!(
            at_probe < 256,
            "the vsock packet waited for the whole rng ring (16 MiB of entropy): {o:#?}"
        );
        return;
    }
    panic!("in 5 runs the rng always drained its ring before the guest notified vsock");
}

#[test]
fn a_failed_device_does_not_affect_the_others() {
    require_kvm();
    let img = unique("iso").with_extension("img");
    std::fs::write(&img, vec![0x5au8; 4096]).unwrap();
    let (blk, rng) = (virtio_base(0), virtio_base(1));
    let mut s = Script::new();
    // blk fails (avail index jump) ...
    s.bring_up(blk, &[TXQ])
        .write(TXQ + AVAIL + 2, 2, 999)
        .notify(blk, 0)
        .poll(
            blk + reg::STATUS,
            4,
            S_OK | u64::from(status::DEVICE_NEEDS_RESET),
        );
    // ... rng keeps working.
    s.bring_up(rng, &[RXQ])
        .desc(RXQ, 0, RNGBUF, 32, F_WRITE, 0)
        .offer(RXQ, 0, 0, 1)
        .notify(rng, 0)
        .poll(RXQ + USED + 2, 2, 1)
        .read(RXQ + USED + 8, 4)
        .read(rng + reg::STATUS, 4)
        .end();
    let d = img.display().to_string();
    let o = run_script(&s, &["--disk", &d], T);
    let _ = std::fs::remove_file(&img);
    assert_served(&o);
    assert_eq!(lines(&o)[..4], ["P ok", "P ok", &r(32), &r(S_OK)], "{o:#?}");
}

#[test]
fn vsock_unusable_rx_buffers_are_returned_and_valid_ones_used() {
    let path = unique("rxbuf");
    let vs = virtio_base(1);
    let mut s = Script::new();
    s.bring_up(vs, &[RXQ, TXQ, EVQ]);
    // rx buffers: too short for a header, device-readable, outside RAM, then a good one.
    s.desc(RXQ, 0, RXBUF, 10, F_WRITE, 0)
        .desc(RXQ, 1, RXBUF + 0x1000, 4096, 0, 0)
        .desc(RXQ, 2, 0xffff_ffff_f000, 4096, F_WRITE, 0)
        .desc(RXQ, 3, RXBUF + 0x3000, 4096, F_WRITE, 0);
    for i in 0..4 {
        s.write(RXQ + AVAIL + 4 + 2 * i, 2, i);
    }
    s.write(RXQ + AVAIL + 2, 2, 4).notify(vs, 0);
    // Two connection attempts to a port nobody serves: two RSTs owed.
    s.send(pkt(OP_REQUEST, 11, 4000), &[], 1)
        .send(pkt(OP_REQUEST, 12, 4000), &[], 2);
    s.poll(RXQ + USED + 2, 2, 4).print("USED");
    for i in 0..4u64 {
        s.read(RXQ + USED + 4 + 8 * i, 8);
    }
    read_rx(&mut s, 3);
    s.end();
    let o = run_vsock(&s, &path);
    assert_served(&o);
    let u = after(&o, "USED");
    // (id, len) pairs: the unusable buffers come back with 0 bytes (the one outside RAM
    // carried the first RST: header write failed, 0 bytes), the good one holds an RST.
    assert_eq!(&u[..3], [r(0), r(1), r(2)], "{o:#?}");
    assert_eq!(
        &u[3..6],
        [r(3 | (44 << 32)), ports(4000, 12), len_op(0, OP_RST)],
        "{o:#?}"
    );
}

#[test]
fn vsock_reset_with_live_connections_closes_them() {
    let path = unique("reset");
    let (svc, listener) = host_service(&path, 90);
    let host = std::thread::spawn(move || {
        let mut eofs = 0;
        listener.set_nonblocking(false).unwrap();
        for _ in 0..2 {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 4];
            if matches!(c.read(&mut b), Ok(0)) {
                eofs += 1;
            }
        }
        eofs
    });
    let vs = virtio_base(1);
    let mut s = Script::new();
    s.bring_up(vs, &[RXQ, TXQ, EVQ]);
    post_rx(&mut s, 1);
    s.send(pkt(OP_REQUEST, 21, 90), &[], 1)
        .poll(RXQ + USED + 2, 2, 1);
    read_rx(&mut s, 0);
    // Reset while connected, then bring the device up again and connect anew.
    s.reg(vs, reg::STATUS, 0)
        .write(RXQ + AVAIL + 2, 2, 0)
        .write(RXQ + USED + 2, 2, 0)
        .write(TXQ + AVAIL + 2, 2, 0)
        .write(TXQ + USED + 2, 2, 0);
    s.bring_up(vs, &[RXQ, TXQ, EVQ]);
    post_rx(&mut s, 1);
    s.send(pkt(OP_REQUEST, 22, 90), &[], 1)
        .poll(RXQ + USED + 2, 2, 1);
    read_rx(&mut s, 0);
    // Full shutdown from the guest: the host sees EOF, the guest gets RST.
    let mut sd = pkt(4, 22, 90);
    sd.flags = 3;
    post_rx(&mut s, 2);
    s.send(sd, &[], 2).repeat(20, 1).poll(RXQ + USED + 2, 2, 2);
    read_rx(&mut s, 1);
    s.end();
    let o = run_vsock(&s, &path);
    assert_served(&o);
    let l = lines(&o);
    assert_eq!(
        &l[..4],
        ["P ok", "P ok", &ports(90, 21), &len_op(0, OP_RESPONSE)],
        "{o:#?}"
    );
    assert_eq!(
        &l[4..8],
        ["P ok", "P ok", &ports(90, 22), &len_op(0, OP_RESPONSE)],
        "{o:#?}"
    );
    assert_eq!(
        &l[l.len() - 3..l.len() - 1],
        [ports(90, 22), len_op(0, OP_RST)],
        "{o:#?}"
    );
    assert_eq!(
        host.join().unwrap(),
        2,
        "both host streams were closed: {o:#?}"
    );
    let _ = std::fs::remove_file(&svc);
}

#[test]
fn vsock_host_connect_unanswered_by_the_guest_is_closed_in_bounded_time() {
    let path = unique("noanswer");
    let done = Arc::new(AtomicBool::new(false));
    let (p2, d2) = (path.clone(), done.clone());
    let host = std::thread::spawn(move || -> Result<Duration, String> {
        while !d2.load(Ordering::Relaxed) {
            let Ok(mut s) = UnixStream::connect(&p2) else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let sent = Instant::now();
            if s.write_all(b"CONNECT 7\n").is_err() {
                continue;
            }
            let mut b = [0u8; 16];
            // A signal delivered to this test process (EINTR) is not the VMM's answer.
            let r = loop {
                match s.read(&mut b) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r,
                }
            };
            let waited = sent.elapsed();
            match r {
                // Closed at once: the driver was not up yet; try again.
                Ok(0) | Err(_) if waited < Duration::from_millis(500) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(0) => return Ok(waited),
                other => return Err(format!("unexpected answer {other:?} after {waited:?}")),
            }
        }
        Err("the VMM ended first".into())
    });
    let vs = virtio_base(1);
    let mut s = Script::new();
    s.bring_up(vs, &[RXQ, TXQ, EVQ]);
    post_rx(&mut s, 2);
    // The guest never answers the REQUEST; it waits (bounded) for a second packet.
    s.repeat(3, 1)
        .poll(RXQ + USED + 2, 2, 2)
        .print("LOOK")
        .read(RXQ + USED + 2, 2);
    read_rx(&mut s, 0);
    read_rx(&mut s, 1);
    s.end();
    let o = run_vsock(&s, &path);
    done.store(true, Ordering::Relaxed);
    assert_served(&o);
    let waited = host
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}: {o:#?}"));
    assert!(
        waited < Duration::from_secs(8),
        "host stream closed after {waited:?}"
    );
    let l = after(&o, "LOOK");
    assert_eq!(
        &l[..5],
        [
            r(2),
            ports(FIRST_HOST_PORT, 7),
            len_op(0, OP_REQUEST),
            ports(FIRST_HOST_PORT, 7),
            len_op(0, OP_RST)
        ],
        "REQUEST, then RST when the attempt expired: {o:#?}"
    );
}

#[test]
fn a_second_vmm_on_the_same_vsock_socket_is_refused_and_the_first_keeps_it() {
    // Regression (review): the second VMM used to unlink the first one's socket silently
    // and take its listener over.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    require_kvm();
    let path = unique("twice");
    let mut idle = Script::new();
    idle.print("IDLE").hlt();
    let p1 = path.clone();
    let first = std::thread::spawn(move || run_vsock_for(&idle, &p1, Duration::from_secs(3)));
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "first VMM never bound"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ino = std::fs::metadata(&path).unwrap().ino();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let second = run_vsock(Script::new().print("SECOND").end(), &path);
    assert_eq!(second.exit_code, Some(3), "{second:#?}");
    assert!(second.stderr.contains("is in use"), "{second:#?}");
    assert!(
        second.serial.is_empty(),
        "the second guest never ran: {second:#?}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    // The first VMM still owns a working listener.
    UnixStream::connect(&path).expect("the first VMM's socket still accepts");
    let o = first.join().unwrap();
    assert!(o.timed_out, "{o:#?}");
    assert_eq!(o.serial, "IDLE\n");
}

#[test]
fn an_idle_vsock_device_with_rx_buffers_does_not_spin() {
    // Found while doing the fast path: with rx buffers posted and nothing to send, the
    // device asked for another turn every turn, so the VMM thread spun at 100% CPU for the
    // life of every room with vsock. Now the buffers wait in the ring until there is data.
    let path = unique("idle");
    let vs = virtio_base(1);
    let mut s = Script::new();
    s.bring_up(vs, &[RXQ, TXQ, EVQ]);
    post_rx(&mut s, 4);
    s.print("IDLE").hlt();
    let o = run_vsock_for(&s, &path, Duration::from_secs(4));
    assert!(o.timed_out, "{o:#?}");
    assert_eq!(o.serial, "IDLE\n");
    // Startup and the 500 ms housekeeping tick cost a few ms; spinning costs seconds.
    assert!(
        o.cpu_time < Duration::from_millis(1000),
        "an idle vsock device made the VMM spin: {:?} CPU in {:?}",
        o.cpu_time,
        o.elapsed
    );
}
