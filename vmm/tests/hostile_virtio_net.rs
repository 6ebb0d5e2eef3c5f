// SPDX-License-Identifier: GPL-3.0-or-later
//! Hostile-guest tests of virtio-net on the host KVM: the interpreter guest acts as the
//! guest driver (queues, rx buffers, frames, abuse) while the test process plays the
//! backend (what passt does: a listening Unix stream socket, frames with a 4-byte
//! big-endian length prefix). Devices without --disk and --vsock: 0 = virtio-rng,
//! 1 = virtio-net. Every run is under the VMM's real seccomp filters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anchor_vmm::devices::virtio::mmio::reg;
use common::virtio::{after, assert_served, r, F_NEXT, F_WRITE, S_OK, T};
use common::{require_kvm, run_script, unique, virtio_base, Outcome, Script};

/// Queue memory: rx and tx queues of 16 entries.
const RXQ: u64 = 0x30_0000;
const TXQ: u64 = 0x31_0000;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const RXBUF: u64 = 0x40_0000;
const TXBUF: u64 = 0x50_0000;
const BIG: u64 = 0x60_0000;
const HDR: u64 = 12;

fn net() -> u64 {
    virtio_base(1)
}

impl Script {
    /// Bring virtio-net up with 16-entry rx and tx queues.
    fn net_up(&mut self) -> &mut Self {
        let b = net();
        self.init(b);
        for (i, q) in [RXQ, TXQ].iter().enumerate() {
            self.reg(b, reg::QUEUE_SEL, i as u64)
                .reg(b, reg::QUEUE_NUM, 16)
                .reg(b, reg::QUEUE_DESC_LOW, *q)
                .reg(b, reg::QUEUE_AVAIL_LOW, q + AVAIL)
                .reg(b, reg::QUEUE_USED_LOW, q + USED)
                .reg(b, reg::QUEUE_READY, 1);
        }
        self.reg(b, reg::STATUS, S_OK)
    }
    /// Copy `data` to guest memory at `at` (8-byte writes).
    fn put(&mut self, at: u64, data: &[u8]) -> &mut Self {
        for (k, c) in data.chunks(8).enumerate() {
            let mut v = [0u8; 8];
            v[..c.len()].copy_from_slice(c);
            self.write(at + 8 * k as u64, 8, u64::from_le_bytes(v));
        }
        self
    }
    /// Offer tx chain `head` as avail entry number `n` (1-based) and notify.
    fn offer_tx(&mut self, head: u64, n: u64) -> &mut Self {
        self.avail(TXQ + AVAIL, (n - 1) % 16, head, n)
            .notify(net(), 1)
    }
    /// Send a well-formed frame from tx slot `slot` as avail entry `n`, wait for its use.
    fn send_frame(&mut self, slot: u64, frame: &[u8], n: u64) -> &mut Self {
        let at = TXBUF + slot * 0x1000;
        self.put(at, &[0u8; HDR as usize])
            .put(at + HDR, frame)
            .desc(TXQ, slot, at, HDR + frame.len() as u64, 0, 0)
            .offer_tx(slot, n)
            .poll(TXQ + USED + 2, 2, n)
    }
    /// Post rx buffers `0..n` (4 KiB each) and notify.
    fn post_rx(&mut self, n: u64) -> &mut Self {
        for i in 0..n {
            self.desc(RXQ, i, RXBUF + i * 0x1000, 4096, F_WRITE, 0)
                .avail(RXQ + AVAIL, i, i, i + 1);
        }
        self.notify(net(), 0)
    }
}

/// A frame of `len` bytes whose content names `tag`.
fn eth(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
}

fn le(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(v)
}

fn read_frame(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut f)?;
    Ok(f)
}

fn write_frame(s: &mut UnixStream, f: &[u8]) -> std::io::Result<()> {
    s.write_all(&(f.len() as u32).to_be_bytes())?;
    s.write_all(f)
}

/// A backend listening at a fresh path; `role` runs on the accepted stream.
fn backend<R: Send + 'static>(
    role: impl FnOnce(UnixStream) -> Result<R, String> + Send + 'static,
) -> (PathBuf, JoinHandle<Result<R, String>>) {
    let path = unique("net");
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    let h = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(25);
        let s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => return Err(format!("no connection from the VMM: {e}")),
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        role(s)
    });
    (path, h)
}

fn run_net(s: &Script, path: &std::path::Path) -> Outcome {
    require_kvm();
    let p = path.display().to_string();
    let o = run_script(s, &["--net-uds", &p], T);
    let _ = std::fs::remove_file(path);
    o
}

#[test]
fn net_frames_go_both_ways_with_the_stream_framing() {
    let out = eth(64, 0x10);
    let back = eth(60, 0x80);
    let (want, reply) = (out.clone(), back.clone());
    let (path, be) = backend(move |mut s| {
        let got = read_frame(&mut s).map_err(|e| e.to_string())?;
        write_frame(&mut s, &reply).map_err(|e| e.to_string())?;
        Ok(got)
    });
    let b = net();
    let mut s = Script::new();
    s.read(b + reg::DEVICE_ID, 4)
        .net_up()
        .read(b + reg::STATUS, 4)
        .read(b + reg::CONFIG, 8)
        .read(b + reg::CONFIG + 8, 4)
        .post_rx(2)
        .send_frame(0, &out, 1)
        .repeat(400, 1)
        .poll(RXQ + USED + 2, 2, 1)
        .print("GOTRX")
        .read(RXQ + USED + 8, 4)
        .read(RXBUF + 8, 4)
        .read(RXBUF + HDR, 8)
        .read(RXBUF + HDR + 56, 4)
        .end();
    let o = run_net(&s, &path);
    assert_served(&o);
    let l: Vec<&str> = o.serial.lines().collect();
    assert_eq!(l[0], r(1), "device id 1 (network card): {o:#?}");
    assert_eq!(l[1], r(S_OK), "{o:#?}");
    // MAC 02:41:4e:43:48:01, status 0; max_virtqueue_pairs 1, mtu 1500.
    assert_eq!(l[2], r(0x0000_0148_434e_4102), "{o:#?}");
    assert_eq!(l[3], r(1 | (1500 << 16)), "{o:#?}");
    assert_eq!(
        be.join().unwrap().unwrap(),
        want,
        "the backend got the frame"
    );
    let rx = after(&o, "GOTRX");
    assert_eq!(
        &rx[..4],
        [
            r(HDR + 60),
            r(1 << 16), // num_buffers = 1 in bytes 10..12
            r(le(&back[..8])),
            r(le(&back[56..60])),
        ],
        "{o:#?}"
    );
}

#[test]
fn net_malformed_tx_chains_are_dropped_and_the_device_keeps_serving() {
    let good = eth(100, 0x33);
    let (path, be) = backend(move |mut s| {
        let mut frames = Vec::new();
        loop {
            match read_frame(&mut s) {
                Ok(f) => frames.push(f),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(frames),
                Err(e) => return Err(format!("after {} frames: {e}", frames.len())),
            }
        }
    });
    let b = net();
    let mut s = Script::new();
    s.net_up();
    let mut n = 0;
    let mut slot = 0;
    let mut chain = |s: &mut Script, hdr: [u8; 2], descs: &[(u64, u64, u64)]| {
        // descs: (addr, len, flags); chained in order in slots slot.. (each chain is used
        // before the next is offered, so slots are reused from 0 when the table ends).
        if slot + descs.len() as u64 > 16 {
            slot = 0;
        }
        let at = TXBUF + slot * 0x1000;
        s.put(at, &[hdr[0], hdr[1], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        s.put(at + HDR, &eth(64, 1));
        let head = slot;
        for (k, &(addr, len, flags)) in descs.iter().enumerate() {
            let last = k + 1 == descs.len();
            let addr = if addr == 0 { at } else { addr };
            let f = if last { flags } else { flags | F_NEXT };
            s.desc(TXQ, slot, addr, len, f, slot + 1);
            slot += 1;
        }
        n += 1;
        s.offer_tx(head, n).poll(TXQ + USED + 2, 2, n);
    };
    // Offloads that were not offered: NEEDS_CSUM, GSO TCPv4, GSO ECN bit.
    chain(&mut s, [1, 0], &[(0, HDR + 64, 0)]);
    chain(&mut s, [0, 1], &[(0, HDR + 64, 0)]);
    chain(&mut s, [0, 0x80], &[(0, HDR + 64, 0)]);
    // Too short: a header alone, a runt, half a header.
    chain(&mut s, [0, 0], &[(0, HDR, 0)]);
    chain(&mut s, [0, 0], &[(0, HDR + 13, 0)]);
    chain(&mut s, [0, 0], &[(0, 6, 0)]);
    // Write-only where the device must read: all of it, or the frame part.
    chain(&mut s, [0, 0], &[(0, HDR + 64, F_WRITE)]);
    chain(&mut s, [0, 0], &[(0, HDR, 0), (TXBUF + 0x800, 64, F_WRITE)]);
    // Too long: 65551 bytes in one descriptor, and 5 x 16 KiB in a chain.
    chain(&mut s, [0, 0], &[(BIG, 65551, 0)]);
    chain(
        &mut s,
        [0, 0],
        &[
            (BIG, 16384, 0),
            (BIG, 16384, 0),
            (BIG, 16384, 0),
            (BIG, 16384, 0),
            (BIG, 16384, 0),
        ],
    );
    // Outside guest RAM, and a length that wraps the address space.
    chain(&mut s, [0, 0], &[(0, HDR, 0), (0x4000_0000, 64, 0)]);
    chain(&mut s, [0, 0], &[(0, HDR, 0), (u64::MAX - 16, 64, 0)]);
    // Then a good frame, as avail entry 13.
    s.print("GOOD").send_frame(13, &good, 13);
    s.read(b + reg::STATUS, 4).read(TXQ + USED + 2, 2).end();
    let o = run_net(&s, &path);
    assert_served(&o);
    let l: Vec<&str> = o.serial.lines().collect();
    assert!(
        l.iter().take_while(|l| **l != "GOOD").all(|l| *l == "P ok"),
        "every bad chain was returned: {o:#?}"
    );
    assert_eq!(&after(&o, "GOOD")[1..3], [r(S_OK), r(13)], "{o:#?}");
    let frames = be.join().unwrap().unwrap();
    assert_eq!(frames, [good], "only the good frame reached the backend");
}

#[test]
fn net_unusable_rx_buffers_are_returned_and_a_good_one_is_filled() {
    let (path, be) = backend(move |mut s| {
        // The first frame goes to the buffer outside RAM (lost), the second to the good one.
        write_frame(&mut s, &eth(60, 1)).map_err(|e| e.to_string())?;
        write_frame(&mut s, &eth(60, 2)).map_err(|e| e.to_string())?;
        Ok(())
    });
    let mut s = Script::new();
    s.net_up()
        // read-only, too small for any frame, outside RAM, good.
        .desc(RXQ, 0, RXBUF, 4096, 0, 0)
        .desc(RXQ, 1, RXBUF + 0x1000, 20, F_WRITE, 0)
        .desc(RXQ, 2, 0x4000_0000, 4096, F_WRITE, 0)
        .desc(RXQ, 3, RXBUF + 0x3000, 4096, F_WRITE, 0);
    for i in 0..4 {
        s.avail(RXQ + AVAIL, i, i, i + 1);
    }
    s.notify(net(), 0)
        .repeat(400, 1)
        .poll(RXQ + USED + 2, 2, 4)
        .print("USED");
    for i in 0..4 {
        s.read(RXQ + USED + 4 + 8 * i, 8);
    }
    s.read(RXBUF + 0x3000 + HDR, 8).end();
    let o = run_net(&s, &path);
    assert_served(&o);
    be.join().unwrap().unwrap();
    let u = after(&o, "USED");
    assert_eq!(
        &u[..5],
        [
            r(0),
            r(1),
            r(2),
            r(3 | ((HDR + 60) << 32)),
            r(le(&eth(8, 2)))
        ],
        "{o:#?}"
    );
}

#[test]
fn net_notification_flood_without_buffers_then_a_round_trip() {
    let (path, be) = backend(move |mut s| {
        let f = read_frame(&mut s).map_err(|e| e.to_string())?;
        write_frame(&mut s, &f).map_err(|e| e.to_string())?;
        Ok(())
    });
    let b = net();
    let mut s = Script::new();
    s.net_up()
        .repeat(3000, 4)
        .notify(b, 0)
        .notify(b, 1)
        .notify(b, 7)
        .reg(b, reg::INTERRUPT_ACK, 3);
    s.post_rx(1)
        .send_frame(0, &eth(80, 7), 1)
        .repeat(400, 1)
        .poll(RXQ + USED + 2, 2, 1)
        .print("ECHO")
        .read(RXBUF + HDR, 8)
        .read(b + reg::STATUS, 4)
        .end();
    let o = run_net(&s, &path);
    assert_served(&o);
    be.join().unwrap().unwrap();
    assert_eq!(
        &after(&o, "ECHO")[..2],
        [r(le(&eth(8, 7))), r(S_OK)],
        "{o:#?}"
    );
}

#[test]
fn net_backend_flood_is_taken_only_as_the_guest_posts_buffers() {
    // The backend writes 4000 frames (6 MB) as fast as the VMM takes them; the guest
    // takes 50 rounds of 16. Memory stays bounded (assert_served's RSS bound) and every
    // delivered frame is whole and in order.
    let (path, be) = backend(move |mut s| {
        let mut sent = 0u32;
        for i in 0..4000u32 {
            let mut f = eth(1514, i as u8);
            f[..4].copy_from_slice(&i.to_le_bytes());
            if write_frame(&mut s, &f).is_err() {
                break; // the VMM exited
            }
            sent += 1;
        }
        Ok(sent)
    });
    let mut s = Script::new();
    s.net_up();
    for i in 0..16 {
        s.desc(RXQ, i, RXBUF + i * 0x1000, 4096, F_WRITE, 0)
            .write(RXQ + AVAIL + 4 + 2 * i, 2, i);
    }
    for round in 1..=50u64 {
        s.write(RXQ + AVAIL + 2, 2, 16 * round)
            .notify(net(), 0)
            .repeat(100, 1)
            .poll(RXQ + USED + 2, 2, 16 * round);
    }
    s.print("DONE")
        .read(RXQ + USED + 2, 2)
        // The last round: frames 784..800 in buffers 0..16, in order.
        .read(RXBUF + HDR, 4)
        .read(RXBUF + 0xf000 + HDR, 4)
        .read(RXQ + USED + 4 + 4, 4)
        .end();
    let o = run_net(&s, &path);
    assert_served(&o);
    let d = after(&o, "DONE");
    assert_eq!(&d[..4], [r(800), r(784), r(799), r(HDR + 1514)], "{o:#?}");
    let sent = be.join().unwrap().unwrap();
    assert!(sent >= 800, "{sent}");
}

#[test]
fn net_an_oversized_length_prefix_closes_the_backend_and_the_room_runs_on() {
    let (path, be) = backend(move |mut s| {
        // One write: the device reads the good frame and the bad prefix together, so the
        // connection is closed before the guest sees the first frame.
        let mut wire = 60u32.to_be_bytes().to_vec();
        wire.extend_from_slice(&eth(60, 5));
        wire.extend_from_slice(&0x0001_0003u32.to_be_bytes());
        wire.extend_from_slice(&[0u8; 100]);
        s.write_all(&wire).map_err(|e| e.to_string())?;
        // The VMM closed its end: EOF (or a reset), and no guest frame ever arrives.
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => Ok(()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
            other => Err(format!("backend still connected: {other:?}")),
        }
    });
    let mut s = Script::new();
    s.net_up()
        .post_rx(4)
        .repeat(400, 1)
        .poll(RXQ + USED + 2, 2, 1)
        .print("FIRST")
        .read(RXBUF + HDR, 8)
        // A frame sent after the close is used (dropped), the device stays healthy.
        .send_frame(0, &eth(60, 1), 1)
        .print("AFTER")
        .read(TXQ + USED + 2, 2)
        .read(RXQ + USED + 2, 2)
        .read(net() + reg::STATUS, 4)
        .end();
    let o = run_net(&s, &path);
    assert_served(&o);
    be.join().unwrap().unwrap();
    assert_eq!(after(&o, "FIRST")[0], r(le(&eth(8, 5))), "{o:#?}");
    assert_eq!(&after(&o, "AFTER")[..3], [r(1), r(1), r(S_OK)], "{o:#?}");
    let closed: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("net: backend closed"))
        .collect();
    assert_eq!(closed.len(), 1, "{o:#?}");
    assert!(closed[0].contains("65539"), "{o:#?}");
}

#[test]
fn net_without_a_listening_backend_is_a_setup_error_naming_the_path() {
    let path = unique("net-nobody");
    let o = run_net(&Script::new(), &path);
    assert!(!o.timed_out);
    assert_eq!(o.exit_code, Some(3), "{o:#?}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{o:#?}");
    assert!(lines[0].contains(&path.display().to_string()), "{o:#?}");
}

/// A real passt (the Debian package) in a fresh network namespace that holds only a veth
/// pair of its own (so passt has a "default route" to template from; no traffic leaves
/// the namespace), listening at a fresh socket path. Killed by its pid when dropped.
struct Passt {
    child: std::process::Child,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Passt {
    /// passt on its own socket (`--socket`).
    fn start() -> Self {
        Self::spawn(None)
    }

    /// passt on an inherited descriptor (`--fd`, the shape meant for rooms).
    fn with_fd(fd: i32) -> Self {
        Self::spawn(Some(fd))
    }

    fn spawn(fd: Option<i32>) -> Self {
        // passt drops root for nobody before it binds: its directory must let it in.
        let dir = tempfile::Builder::new()
            .prefix("anchor-vmm-passt")
            .tempdir()
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o733)).unwrap();
        let path = dir.path().join("passt.sock");
        let script = format!(
            "ip link set lo up && ip link add v0 type veth peer name v1 && \
             ip addr add 192.0.2.1/24 dev v0 && ip link set v0 up && ip link set v1 up && \
             ip route add default via 192.0.2.254 dev v0 && \
             exec passt -f -1 -4 --mtu 1500 {}",
            match fd {
                Some(fd) => format!("--fd {fd}"),
                None => format!("--socket {}", path.display()),
            }
        );
        let child = std::process::Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("this test needs unshare(1) and root: {e}"));
        let mut p = Passt {
            child,
            path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while fd.is_none() && !p.path.exists() {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!(
                    "passt did not start ({st}): it needs the passt package \
                     (scripts/setup.sh), root, and veth in the host kernel"
                );
            }
            assert!(Instant::now() < deadline, "passt never bound its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn net_real_passt_answers_the_guests_arp_request() {
    let passt = Passt::start();
    let p = passt.path.display().to_string();
    let o = arp_through_passt(&["--net-uds", &p]);
    drop(passt);
    assert_arp_reply(&o);
}

#[test]
fn net_real_passt_over_a_socketpair_answers_the_guests_arp_request() {
    use std::os::fd::AsRawFd;
    let (vmm_end, passt_end) = UnixStream::pair().unwrap();
    let set_cloexec = |fd: i32, on: bool| {
        let v = if on { libc::FD_CLOEXEC } else { 0 };
        // SAFETY: F_SETFD on a descriptor this test owns, no pointers.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, v) }, 0);
    };
    set_cloexec(passt_end.as_raw_fd(), false);
    let passt = Passt::with_fd(passt_end.as_raw_fd());
    drop(passt_end);
    set_cloexec(vmm_end.as_raw_fd(), false);
    let fd = vmm_end.as_raw_fd().to_string();
    let o = arp_through_passt(&["--net-fd", &fd]);
    drop(vmm_end);
    drop(passt);
    assert_arp_reply(&o);
}

const GUEST_MAC: [u8; 6] = [0x02, 0x41, 0x4e, 0x43, 0x48, 0x01];

/// The guest asks passt for its gateway's MAC.
fn arp_through_passt(args: &[&str]) -> Outcome {
    let mac = GUEST_MAC;
    // ARP: who has 192.0.2.254 (passt's gateway address)? Tell 192.0.2.1 (the address
    // passt hands out, copied from the namespace's template interface).
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[192, 0, 2, 1]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[192, 0, 2, 254]);
    arp.resize(60, 0);
    let mut s = Script::new();
    s.net_up()
        .post_rx(4)
        .send_frame(0, &arp, 1)
        .repeat(400, 1)
        .poll(RXQ + USED + 2, 2, 1)
        .print("REPLY")
        // Ethertype and ARP opcode; sender and target protocol addresses.
        .read(RXBUF + HDR + 12, 2)
        .read(RXBUF + HDR + 20, 2)
        .read(RXBUF + HDR + 28, 4)
        .read(RXBUF + HDR + 38, 4)
        // Destination MAC: ours.
        .read(RXBUF + HDR, 4)
        .end();
    run_script(&s, args, T)
}

fn assert_arp_reply(o: &Outcome) {
    let mac = GUEST_MAC;
    assert_served(o);
    let a = after(o, "REPLY");
    assert_eq!(
        &a[..5],
        [
            r(0x0608),                // ARP, big-endian on the wire
            r(0x0200),                // opcode 2: reply
            r(le(&[192, 0, 2, 254])), // "192.0.2.254 is at ..."
            r(le(&[192, 0, 2, 1])),   // ... told to us
            r(le(&mac[..4])),
        ],
        "{o:#?}"
    );
}

#[test]
fn net_over_an_inherited_socketpair_end() {
    // What bay0 will do with passt --fd: a socketpair, one end to each.
    let (ours, theirs) = UnixStream::pair().unwrap();
    use std::os::fd::AsRawFd;
    let fd = theirs.as_raw_fd();
    // SAFETY: clears FD_CLOEXEC on a descriptor this test owns, so anchor-vmm inherits it.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    let be = std::thread::spawn(move || {
        let mut s = ours;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let f = read_frame(&mut s)?;
        write_frame(&mut s, &f)?;
        Ok::<_, std::io::Error>(f)
    });
    let mut s = Script::new();
    s.net_up()
        .post_rx(1)
        .send_frame(0, &eth(90, 0x44), 1)
        .repeat(400, 1)
        .poll(RXQ + USED + 2, 2, 1)
        .print("ECHO")
        .read(RXBUF + HDR + 80, 8)
        .end();
    let o = run_script(&s, &["--net-fd", &fd.to_string()], T);
    drop(theirs);
    assert_served(&o);
    assert_eq!(be.join().unwrap().unwrap(), eth(90, 0x44));
    assert_eq!(
        after(&o, "ECHO")[0],
        r(le(&eth(90, 0x44)[80..88])),
        "{o:#?}"
    );
}

#[test]
fn net_fd_that_is_not_a_stream_socket_is_refused() {
    let file = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: clears FD_CLOEXEC on a descriptor this test owns.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    for (arg, why) in [
        (fd.to_string(), "not a Unix stream socket"),
        ("900".to_string(), "Bad file descriptor"),
    ] {
        let o = run_script(&Script::new(), &["--net-fd", &arg], T);
        assert_eq!(o.exit_code, Some(3), "{o:#?}");
        let l: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(l.len(), 1, "{o:#?}");
        assert!(
            l[0].contains(&format!("fd {arg}")) && l[0].contains(why),
            "{o:#?}"
        );
    }
}

/// An IPv4 frame (Ethernet + a 20-byte IPv4 header, padding) to `dst`.
fn ipv4_to(dst: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[30..34].copy_from_slice(&dst);
    f
}

/// A NETLINK_ROUTE socket of the calling thread's network namespace, subscribed to IPv4
/// address and route changes, inheritable (what the jail hands the VMM).
fn route_socket() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_nl is valid.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV4_ROUTE) as u32;
    // SAFETY: `sa` is a valid sockaddr_nl for the call, with its size.
    let r = unsafe {
        libc::bind(
            fd,
            std::ptr::from_ref(&sa).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    owned
}

/// Regression (review, network escape: the deny list was fixed when the room started):
/// the real VMM, under its seccomp filters, follows the host's local routes through
/// `--net-host-fd`. Here the host (a private network namespace) gains 10.58.0.1 after
/// the socket was made: the guest's frame to it is dropped, one to 10.58.0.2 goes out.
#[test]
fn net_an_address_the_host_gained_is_refused_under_seccomp() {
    require_kvm();
    let (path, be) = backend(move |mut s| {
        let mut frames = Vec::new();
        loop {
            match read_frame(&mut s) {
                Ok(f) => frames.push(f),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(frames),
                Err(e) => return Err(format!("after {} frames: {e}", frames.len())),
            }
        }
    });
    let o = std::thread::spawn(move || {
        // SAFETY: unshare with a constant flag; it changes this thread's namespace only.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "needs root: {}", std::io::Error::last_os_error());
        let sock = route_socket();
        let ip = |a: &str| {
            let st = std::process::Command::new("ip")
                .args(a.split(' '))
                .status()
                .unwrap();
            assert!(st.success(), "ip {a}");
        };
        ip("link set lo up");
        ip("addr add 10.58.0.1/32 dev lo");
        let mut s = Script::new();
        s.net_up()
            .send_frame(0, &ipv4_to([10, 58, 0, 1]), 1)
            .send_frame(1, &ipv4_to([10, 58, 0, 2]), 2)
            .read(net() + reg::STATUS, 4)
            .end();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock).to_string();
        let p = path.display().to_string();
        let o = run_script(&s, &["--net-uds", &p, "--net-host-fd", &fd], T);
        let _ = std::fs::remove_file(&path);
        o
    })
    .join()
    .unwrap();
    assert_served(&o);
    let frames = be.join().unwrap().unwrap();
    assert_eq!(frames, [ipv4_to([10, 58, 0, 2])], "{o:#?}");
}
