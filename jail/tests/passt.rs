// SPDX-License-Identifier: GPL-3.0-or-later
//! The installed passt, run with exactly the command line the jail gives it
//! (`anchor_jail::net::passt_argv`) on a socket pair, as a hostile guest's frames reach it
//! (here without the VMM in between, which refuses frames to the anchor host: the
//! datagrams below go to this host's 127.0.0.1, where the test listens). Only loopback
//! traffic.
//!
//! Needs /usr/bin/passt (scripts/setup.sh installs it); fails with a clear message
//! otherwise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MAC: [u8; 6] = [0x02, 0x41, 0x4e, 0x43, 0x48, 0x01];

/// passt on one end of a socket pair, with the jail's arguments and the jail's seccomp
/// filter for it; the other end.
fn passt() -> (Child, UnixStream) {
    let path = anchor_jail::net::PASST.to_str().unwrap();
    assert!(
        std::path::Path::new(path).is_file(),
        "this test needs {path} (apt-get install passt; scripts/setup.sh)"
    );
    let (ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let argv = anchor_jail::net::passt_argv(fd);
    let mut cmd = Command::new(path);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // The filter the jail installs before it execs passt, made ready before the fork
    // (nothing is allocated between fork and exec).
    let filters = anchor_jail::sys::sock_filters(anchor_jail::net::PASST_DENY_BPF);
    let prog = libc::sock_fprog {
        len: u16::try_from(filters.len()).unwrap(),
        filter: filters.as_ptr().cast_mut(),
    };
    let prog_addr = &raw const prog as usize;
    let keep_open = move || {
        // SAFETY: fcntl on a descriptor this process owns; async-signal-safe.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `prog_addr` is the address of `prog` (pointing at `filters`), both alive
        // in the parent's memory, which the child has a copy of; the kernel copies it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                prog_addr as *const libc::sock_fprog,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the hook only calls fcntl between fork and exec (no allocation, no lock):
    // the socket passt is told to use stays open across exec.
    unsafe {
        cmd.pre_exec(keep_open);
    }
    let child = cmd.spawn().unwrap();
    drop((theirs, filters));
    (child, ours)
}

/// An Ethernet frame: IPv4 + UDP from `src` to `dst`, checksums left 0 (passt takes
/// the payload; it checks no checksum).
fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x9a; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(20 + 8 + payload.len()).unwrap();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn framed(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Vec::new();
    for f in frames {
        w.extend_from_slice(&u32::try_from(f.len()).unwrap().to_be_bytes());
        w.extend_from_slice(f);
    }
    w
}

/// `N` UDP ports free on this host now, for a guest's source ports: passt sends the
/// guest's datagrams from a socket bound to the same port on the host (without
/// SO_REUSEADDR), so a port another test's passt (or anything else on the machine)
/// holds would be refused and its datagram dropped.
fn free_udp_ports<const N: usize>() -> [u16; N] {
    let held = [(); N].map(|()| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap());
    held.map(|s| s.local_addr().unwrap().port())
}

/// A listener on this host's loopback, and a guest datagram to it.
fn listener_and_datagram(payload: &[u8]) -> (UdpSocket, Vec<u8>) {
    let l = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    // Hang detection only: passt forwards at once.
    l.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = l.local_addr().unwrap().port();
    let guest = Ipv4Addr::new(10, 0, 2, 15);
    let [sport] = free_udp_ports();
    let f = udp(guest, Ipv4Addr::LOCALHOST, sport, port, payload);
    (l, f)
}

fn received(l: &UdpSocket) -> Option<Vec<u8>> {
    let mut b = [0u8; 256];
    l.recv(&mut b).ok().map(|n| b[..n].to_vec())
}

/// The frames the test sends do arrive when nothing is in their way (so the test below
/// can fail only for the reason it names).
#[test]
fn a_datagram_alone_arrives() {
    let (mut child, mut sock) = passt();
    let (l, f) = listener_and_datagram(b"alone");
    // passt reads the socket once it is up; the frame waits in the socket until then.
    sock.write_all(&framed(&[f])).unwrap();
    let got = received(&l);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got.as_deref(), Some(&b"alone"[..]));
}

/// Regression (review, network escape): passt 2023-03-09 writes its DHCP answer over
/// the request in its buffer, at least 60 bytes of options, however short the request:
/// over the frames after it in the same read, which the VMM's egress rule had already
/// judged. Behind a 240-byte request the next datagram was lost. The jail's passt has
/// no DHCP server (`--no-dhcp`): the room never asks for one.
#[test]
fn a_short_dhcp_request_does_not_overwrite_the_next_frame() {
    let (mut child, mut sock) = passt();
    let mut bootp = vec![0u8; 236];
    bootp[0] = 1; // BOOTREQUEST
    bootp[1] = 1;
    bootp[2] = 6;
    bootp[28..34].copy_from_slice(&MAC);
    bootp.extend_from_slice(&[0x63, 0x82, 0x53, 0x63]); // the magic cookie
    bootp.extend_from_slice(&[53, 1, 1]); // DHCPDISCOVER, and nothing after it
    let dhcp = udp(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(10, 0, 2, 2),
        68,
        67,
        &bootp,
    );
    let (l, f) = listener_and_datagram(b"after the request");
    // One write: passt reads both frames at once, the request first.
    sock.write_all(&framed(&[dhcp, f])).unwrap();
    let got = received(&l);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got.as_deref(), Some(&b"after the request"[..]));
}

/// Regression (review, network escape: one room reaching another): this passt sends a
/// room's datagrams from a socket bound to 0.0.0.0 and the room's own source port, with
/// SO_REUSEADDR, which lets any other socket with it bind the same port, whatever its
/// uid; the socket bound last gets the unicast datagrams. A room that sent one datagram
/// from the port another room's query used got that room's answer (measured with two
/// passts of different uids). The jail's filter makes passt's SO_REUSEADDR fail (passt
/// goes on without it): the second room's bind fails, the answer reaches its room.
#[test]
fn a_room_cannot_take_another_rooms_udp_port() {
    let (mut b, mut b_sock) = passt();
    let (mut a, mut a_sock) = passt();
    let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let guest = Ipv4Addr::new(10, 0, 2, 15);
    let port = server.local_addr().unwrap().port();
    let [b_port, later] = free_udp_ports();
    // Room B asks from its port `b_port`.
    let q = udp(guest, Ipv4Addr::LOCALHOST, b_port, port, b"query of room B");
    b_sock.write_all(&framed(&[q])).unwrap();
    let mut buf = [0u8; 64];
    let (n, b_addr) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"query of room B");
    // Room A sends anything from the same port, then the answer to B comes.
    let elsewhere = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    elsewhere
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let e_port = elsewhere.local_addr().unwrap().port();
    let f = udp(guest, Ipv4Addr::LOCALHOST, b_port, e_port, b"room A");
    a_sock.write_all(&framed(&[f])).unwrap();
    // Room A's datagram has been handled (sent, or refused at its bind) once a second
    // one, from another port, arrives.
    let f = udp(guest, Ipv4Addr::LOCALHOST, later, e_port, b"room A, later");
    a_sock.write_all(&framed(&[f])).unwrap();
    loop {
        let n = elsewhere.recv(&mut buf).unwrap();
        if &buf[..n] == b"room A, later" {
            break;
        }
    }
    server.send_to(b"answer for room B", b_addr).unwrap();
    let frame_with = |sock: &mut UnixStream| {
        // Hang detection only.
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut got = vec![0u8; 4096];
        let n = std::io::Read::read(sock, &mut got).unwrap_or(0);
        got[..n].windows(17).any(|w| w == b"answer for room B")
    };
    let to_b = frame_with(&mut b_sock);
    let to_a = !to_b && frame_with(&mut a_sock);
    for c in [&mut a, &mut b] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    assert!(!to_a, "room A got room B's answer");
    assert!(to_b, "room B's answer reached room B");
}
