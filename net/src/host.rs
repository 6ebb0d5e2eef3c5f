// SPDX-License-Identifier: GPL-3.0-or-later
//! The anchor host's own IPv4 addresses and networks, followed while the room runs
//! (`--net-host-fd`).
//!
//! The jail hands the VMM (or, for a namespace room, its own relay) a NETLINK_ROUTE
//! socket of the anchor host's network namespace, subscribed to its IPv4 address and
//! route changes. Whatever the kernel takes as this host's own is a route of type
//! RTN_LOCAL (`ip route show table local type local`: each address, and each network made
//! local by an address with a prefix on the loopback device or by a local route); the
//! device ([`off_host`]) refuses guest frames to any of them. Before
//! it judges guest frames, the device reads what the socket has queued without waiting:
//! nothing (the usual case) costs one system call; any notification, or a lost one
//! (ENOBUFS), makes it dump the routes anew. The kernel queues the notification before
//! `ip addr add` (or a DHCP client) returns, so an address the host gains after the room
//! started is refused from the next batch of guest frames on, not only after a restart.
//! When the list cannot be read (an error, a malformed reply, more than
//! [`MAX_HOST_NETS`] entries) every IPv4 frame is refused until it can.

use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use crate::egress::{ipv4_destination, Net4};
use crate::sys;

/// Most local routes followed (a laptop has a few; 16384 of 8 bytes is 128 KiB).
pub const MAX_HOST_NETS: usize = 16384;
/// Receive buffer: one netlink datagram (the kernel's dump batches are at most 32 KiB).
const BUF: usize = 64 * 1024;
/// Datagrams read per refresh before it dumps anyway (a host changing without pause).
const DRAIN_MAX: usize = 64;
/// Datagrams read per dump (a dump of [`MAX_HOST_NETS`] routes is far fewer).
const DUMP_MAX: usize = 4096;

const NLMSG_HDR: usize = 16;
const RTMSG: usize = 12;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const AF_INET: u8 = 2;
const RTN_LOCAL: u8 = 2;
const RTA_DST: u16 = 1;

/// The request for every IPv4 route (of every table) with sequence number `seq`.
pub fn dump_request(seq: u32) -> [u8; NLMSG_HDR + RTMSG] {
    let mut m = [0u8; NLMSG_HDR + RTMSG];
    let len = (NLMSG_HDR + RTMSG) as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_GETROUTE.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m[NLMSG_HDR] = AF_INET;
    m
}

/// What one datagram of a dump said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// More of the dump follows.
    More,
    /// The dump with our sequence number is complete.
    Done,
    /// The kernel refused, a message was malformed, or the list is too long.
    Failed,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(u16::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_ne_bytes)
}

/// The local network a route message (`msg`, header included) names, if it is one:
/// `Some(None)` for a malformed one.
fn local_route(msg: &[u8]) -> Option<Option<Net4>> {
    let family = *msg.get(NLMSG_HDR)?;
    let dst_len = *msg.get(NLMSG_HDR + 1)?;
    let kind = *msg.get(NLMSG_HDR + 7)?;
    if family != AF_INET || kind != RTN_LOCAL {
        return None;
    }
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut at = NLMSG_HDR + RTMSG;
    while at < msg.len() {
        let (Some(len), Some(ty)) = (u16_at(msg, at), u16_at(msg, at + 2)) else {
            return Some(None);
        };
        let len = usize::from(len);
        if len < 4 {
            return Some(None);
        }
        if ty == RTA_DST {
            match msg.get(at + 4..at + len).map(<[u8; 4]>::try_from) {
                Some(Ok(a)) => dst = Ipv4Addr::from(a),
                _ => return Some(None),
            }
        }
        at = at.saturating_add((len + 3) & !3);
    }
    Some(Net4::new(dst, dst_len))
}

/// Reads one datagram `buf` of route messages: every local IPv4 route in it (of the dump
/// numbered `seq`, or a change notification) is added to `out`; any message that is not
/// part of that dump sets `other`.
pub fn parse_batch(buf: &[u8], seq: u32, out: &mut Vec<Net4>, other: &mut bool) -> Batch {
    let mut at = 0usize;
    while at < buf.len() {
        let (Some(len), Some(ty), Some(s)) =
            (u32_at(buf, at), u16_at(buf, at + 4), u32_at(buf, at + 8))
        else {
            return Batch::Failed;
        };
        let Some(msg) = usize::try_from(len)
            .ok()
            .filter(|l| *l >= NLMSG_HDR)
            .and_then(|l| buf.get(at..at.checked_add(l)?))
        else {
            return Batch::Failed;
        };
        let ours = s == seq;
        *other |= !ours;
        match ty {
            NLMSG_DONE if ours => return Batch::Done,
            // An error (a negative errno); 0 is an acknowledgement.
            NLMSG_ERROR if ours && u32_at(msg, NLMSG_HDR) != Some(0) => return Batch::Failed,
            RTM_NEWROUTE => match local_route(msg) {
                Some(Some(n)) if out.len() < MAX_HOST_NETS => out.push(n),
                Some(_) => return Batch::Failed,
                None => {}
            },
            _ => {}
        }
        at = at.saturating_add((msg.len() + 3) & !3);
    }
    Batch::More
}

/// The anchor host's local networks, kept current through its NETLINK_ROUTE socket.
#[derive(Debug)]
pub struct HostNets {
    sock: OwnedFd,
    /// `None`: unknown now (every IPv4 frame is refused).
    nets: Option<Vec<Net4>>,
    /// Something changed during the last dump: dump again at the next refresh.
    dirty: bool,
    seq: u32,
    buf: Vec<u8>,
}

impl HostNets {
    /// Follows the host through `sock` (see the module documentation), reading its
    /// local networks now: an error when they cannot be read.
    pub fn new(sock: OwnedFd) -> std::io::Result<Self> {
        let mut h = Self {
            sock,
            nets: None,
            dirty: true,
            seq: 0,
            buf: vec![0; BUF],
        };
        // Nothing was known before: it cannot have just become unknown.
        let _ = h.refresh();
        if h.nets.is_none() {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "cannot read the anchor host's local routes",
            ));
        }
        Ok(h)
    }

    /// The local networks as last read (`None`: unknown).
    pub fn nets(&self) -> Option<&[Net4]> {
        self.nets.as_deref()
    }

    /// Catch up with the host: read what is queued, without waiting; on any change, or
    /// a notification lost, read the whole list anew. Returns true when the list was
    /// known and just became unknown (every IPv4 frame is refused until it can be read:
    /// the caller says so once).
    #[must_use = "true means every IPv4 frame is refused from now on: tell the operator"]
    pub fn refresh(&mut self) -> bool {
        let mut changed = self.dirty || self.nets.is_none();
        for _ in 0..DRAIN_MAX {
            match sys::netlink_recv(self.sock.as_fd(), &mut self.buf) {
                Ok(_) => changed = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // ENOBUFS: notifications were lost; anything else: read anew as well.
                Err(_) => changed = true,
            }
        }
        if !changed {
            return false;
        }
        let had = self.nets.is_some();
        self.nets = self.dump();
        had && self.nets.is_none()
    }

    fn dump(&mut self) -> Option<Vec<Net4>> {
        self.seq = self.seq.wrapping_add(1);
        sys::netlink_send(self.sock.as_fd(), &dump_request(self.seq)).ok()?;
        let mut out = Vec::new();
        let mut other = false;
        for _ in 0..DUMP_MAX {
            let n = sys::netlink_recv(self.sock.as_fd(), &mut self.buf).ok()?;
            let data = self.buf.get(..n)?;
            match parse_batch(data, self.seq, &mut out, &mut other) {
                Batch::More => {}
                Batch::Done => {
                    // A change seen while dumping: what it added is in `out` already
                    // (notifications are read too); read anew next time all the same.
                    self.dirty = other;
                    return Some(out);
                }
                Batch::Failed => return None,
            }
        }
        None
    }
}

/// Whether `frame` goes to none of the anchor host's local networks that `host` follows
/// (all refused while they are unknown; a frame with no IPv4 destination, or no `host`,
/// goes).
pub fn off_host(host: Option<&HostNets>, frame: &[u8]) -> bool {
    let (Some(h), Some(dst)) = (host, ipv4_destination(frame)) else {
        return true;
    };
    h.nets().is_some_and(|l| !l.iter().any(|n| n.contains(dst)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route message: type `ty`, sequence `seq`, family, dst_len, route type, then
    /// attributes (type, payload).
    fn route(ty: u16, seq: u32, dst_len: u8, kind: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDR + RTMSG];
        m[4..6].copy_from_slice(&ty.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m[NLMSG_HDR] = AF_INET;
        m[NLMSG_HDR + 1] = dst_len;
        m[NLMSG_HDR + 4] = 255;
        m[NLMSG_HDR + 7] = kind;
        for (t, p) in attrs {
            let len = u16::try_from(4 + p.len()).unwrap();
            m.extend_from_slice(&len.to_ne_bytes());
            m.extend_from_slice(&t.to_ne_bytes());
            m.extend_from_slice(p);
            while m.len() % 4 != 0 {
                m.push(0);
            }
        }
        let n = u32::try_from(m.len()).unwrap();
        m[..4].copy_from_slice(&n.to_ne_bytes());
        m
    }

    fn done(seq: u32) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDR + 4];
        m[..4].copy_from_slice(&20u32.to_ne_bytes());
        m[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m
    }

    #[test]
    fn local_routes_of_the_dump_and_of_notifications_are_read() {
        let mut b = route(RTM_NEWROUTE, 7, 32, RTN_LOCAL, &[(RTA_DST, &[10, 0, 0, 1])]);
        // A unicast route (not the host's), and a local one from a notification.
        b.extend(route(RTM_NEWROUTE, 7, 24, 1, &[(RTA_DST, &[10, 0, 0, 0])]));
        b.extend(route(
            RTM_NEWROUTE,
            0,
            16,
            RTN_LOCAL,
            &[(RTA_DST, &[10, 9, 0, 0])],
        ));
        let (mut out, mut other) = (Vec::new(), false);
        assert_eq!(parse_batch(&b, 7, &mut out, &mut other), Batch::More);
        assert!(other);
        let want = |a: [u8; 4], p| Net4::new(Ipv4Addr::from(a), p).unwrap();
        assert_eq!(out, [want([10, 0, 0, 1], 32), want([10, 9, 0, 0], 16)]);
        // A local default route (no destination): every address is the host's.
        let b = route(RTM_NEWROUTE, 7, 0, RTN_LOCAL, &[]);
        let mut out = Vec::new();
        assert_eq!(parse_batch(&b, 7, &mut out, &mut other), Batch::More);
        assert_eq!(out, [want([0, 0, 0, 0], 0)]);
        assert_eq!(parse_batch(&done(7), 7, &mut out, &mut other), Batch::Done);
        // Another dump's end is not ours.
        assert_eq!(parse_batch(&done(6), 7, &mut out, &mut other), Batch::More);
    }

    #[test]
    fn malformed_replies_fail_and_the_list_is_bounded() {
        let local =
            |attrs: &[(u16, &[u8])], dst_len| route(RTM_NEWROUTE, 1, dst_len, RTN_LOCAL, attrs);
        let mut short_len = local(&[(RTA_DST, &[10, 0, 0, 1])], 32);
        short_len[..4].copy_from_slice(&8u32.to_ne_bytes());
        let mut long_len = local(&[(RTA_DST, &[10, 0, 0, 1])], 32);
        long_len[..4].copy_from_slice(&4096u32.to_ne_bytes());
        let mut bad_rta = local(&[(RTA_DST, &[10, 0, 0, 1])], 32);
        bad_rta[NLMSG_HDR + RTMSG..NLMSG_HDR + RTMSG + 2].copy_from_slice(&2u16.to_ne_bytes());
        let mut err = done(1);
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[NLMSG_HDR..].copy_from_slice(&(-1i32).to_ne_bytes());
        for (name, b) in [
            ("short length", short_len),
            ("length past the datagram", long_len),
            ("attribute length below its header", bad_rta),
            (
                "a 6-byte destination",
                local(&[(RTA_DST, &[1, 2, 3, 4, 5, 6])], 32),
            ),
            ("prefix above 32", local(&[(RTA_DST, &[10, 0, 0, 1])], 33)),
            ("an error", err),
            ("a truncated header", vec![1, 2, 3]),
        ] {
            let (mut out, mut other) = (Vec::new(), false);
            assert_eq!(
                parse_batch(&b, 1, &mut out, &mut other),
                Batch::Failed,
                "{name}"
            );
        }
        let one = local(&[(RTA_DST, &[10, 0, 0, 1])], 32);
        let mut out = vec![Net4::from(Ipv4Addr::LOCALHOST); MAX_HOST_NETS];
        assert_eq!(parse_batch(&one, 1, &mut out, &mut false), Batch::Failed);
    }

    use proptest::prelude::*;
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn any_bytes_are_read_without_panic(
            data in proptest::collection::vec(any::<u8>(), 0..200)
        ) {
            let mut out = Vec::new();
            let _ = parse_batch(&data, 1, &mut out, &mut false);
            prop_assert!(out.len() <= data.len() / (NLMSG_HDR + RTMSG));
        }
    }
}
