// SPDX-License-Identifier: GPL-3.0-or-later
//! A namespace room's network relay: the process between the room's eth0 (a TAP device in
//! the room's network namespace) and its passt (docs/ARCHITECTURE.md, "Network").
//!
//! It does for a namespace room what anchor-vmm's virtio-net device does for a microVM:
//! every frame the room sends is judged by the same rule ([`anchor_net::egress`]: IPv4 and
//! ARP only; never loopback, "this network", multicast or broadcast; never an address the
//! anchor host holds as its own at the time of the frame, followed through netlink; and
//! the DNS forwarder when it would reach the host) before it goes to passt with the
//! stream framing passt speaks; what passt sends back goes to eth0 frame by frame.
//!
//! The jail forks it in the room's cgroup and PID namespace, after it made the TAP device
//! and before the room's processes exist. It runs as the room's network uid (not the
//! room's: the room's processes can neither signal nor trace it), with no capability,
//! not dumpable, holding three descriptors (the TAP device, passt's socket, the netlink
//! socket) and stderr, under a seccomp allow list of its own (seccomp/relay.json: reads,
//! writes, sends, receives, ppoll, memory, exit). It ends when passt closes its socket,
//! when the room's namespaces go (the kernel kills it with the room's PID namespace), or
//! when passt breaks the framing.
//!
//! [`Relay`] is the relay's logic with no I/O, unit-tested; [`run`] is its event loop.

use std::os::fd::{AsRawFd, OwnedFd};

use anchor_net::egress::{Egress, Net4};
use anchor_net::host::HostNets;
use anchor_net::stream::{self, FrameError, Peek, LEN_PREFIX, MAX_FRAME, MIN_FRAME};

use crate::args::Config;
use crate::error::{Error, Result};
use crate::net::Link;
use crate::sys;

/// Bytes waiting for passt at most: frames from the room wait here while passt's socket is
/// full, and eth0 is not read while less than one more frame fits (its queue then fills,
/// and the kernel drops what the room sends beyond it, as a NIC's full ring would).
pub const TO_STACK_CAP: usize = 512 * 1024;
/// The largest frame read from eth0 (its MTU is 1500; the buffer takes any frame).
pub const ROOM_FRAME_MAX: usize = 65536;
/// Frames read from eth0 per wakeup before passt's side is served again.
const BATCH: usize = 64;

/// What happened to one frame the room sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Queued for passt.
    Sent,
    /// Addressed to the anchor host itself, or not IPv4 or ARP: dropped.
    Refused,
    /// Shorter than an Ethernet header, longer than passt's framing allows, or no room
    /// left in the queue: dropped.
    Dropped,
}

/// The relay's state: the rule, the bytes waiting for passt, and the bytes of passt's
/// stream not yet a whole frame.
#[derive(Debug)]
pub struct Relay {
    egress: Egress,
    /// Whole frames with their prefixes; passt has taken the first `taken` bytes.
    to_stack: Vec<u8>,
    taken: usize,
    /// Bytes of the frame at `taken` (prefix included) that a short send left; 0: a
    /// length prefix starts there.
    head_left: usize,
    from_stack: Vec<u8>,
    /// Frames refused by the rule since the start.
    pub refused: u64,
}

impl Relay {
    /// A relay that judges the room's frames with `egress`.
    pub fn new(egress: Egress) -> Self {
        Self {
            egress,
            to_stack: Vec::with_capacity(TO_STACK_CAP),
            taken: 0,
            head_left: 0,
            from_stack: Vec::with_capacity(2 * (LEN_PREFIX + MAX_FRAME)),
            refused: 0,
        }
    }

    /// Whether eth0 may be read now: one more frame of any size fits in the queue.
    pub fn wants_room_frames(&self) -> bool {
        self.waiting() + LEN_PREFIX + ROOM_FRAME_MAX <= TO_STACK_CAP
    }

    /// Bytes passt has not taken yet.
    fn waiting(&self) -> usize {
        self.to_stack.len().saturating_sub(self.taken)
    }

    /// A frame the room sent: queued for passt with its length prefix when the rule lets
    /// it leave (`host`: the anchor host's own networks as they are now).
    pub fn from_room(&mut self, frame: &[u8], host: Option<&HostNets>) -> Verdict {
        if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            return Verdict::Dropped;
        }
        if !self.egress.allows(frame) || !anchor_net::host::off_host(host, frame) {
            self.refused = self.refused.saturating_add(1);
            return Verdict::Refused;
        }
        let need = LEN_PREFIX + frame.len();
        if self.waiting() + need > TO_STACK_CAP {
            return Verdict::Dropped;
        }
        if self.to_stack.len() + need > TO_STACK_CAP {
            // What passt took goes only now (once per queue's worth, not once per send).
            self.to_stack.drain(..self.taken.min(self.to_stack.len()));
            self.taken = 0;
        }
        self.to_stack
            .extend_from_slice(&stream::prefix(frame.len()));
        self.to_stack.extend_from_slice(frame);
        Verdict::Sent
    }

    /// What to send passt next: the frame at the head of the queue with its prefix (or
    /// what a short send left of it), never more than one frame.
    ///
    /// One frame per send, as anchor-vmm's device writes them (`Net::flush`): a stream
    /// socket that takes part of a larger send ends what passt reads at an arbitrary
    /// byte, and this passt loses a length prefix that ends its read (and a frame whose
    /// rest comes in more than one piece); its parse then starts inside a frame the room
    /// chose, which can hold a frame to the anchor host that the rule never saw. A frame
    /// of eth0's MTU is one socket buffer, which a Unix stream socket takes whole or not
    /// at all. On passt's side, one read takes everything queued (its buffer, some 8 MiB,
    /// is far larger than the socket's), so each of its reads ends where a send of ours
    /// ended: at a frame's end. Should the socket's buffer ever be raised past passt's,
    /// a read could end inside a prefix again, however the relay sends.
    pub fn pending(&self) -> &[u8] {
        let rest = self.to_stack.get(self.taken..).unwrap_or_default();
        let head = match (self.head_left, stream::peek(rest)) {
            (0, Ok(Peek::Frame { len })) => LEN_PREFIX + len,
            // The queue holds only whole frames that `from_room` put there.
            (0, _) => rest.len(),
            (left, _) => left,
        };
        rest.get(..head).unwrap_or(rest)
    }

    /// passt took the first `n` bytes waiting for it (of one frame or of several).
    pub fn sent(&mut self, mut n: usize) {
        while n > 0 && self.taken < self.to_stack.len() {
            let head = self.pending().len();
            let k = n.min(head);
            self.taken += k;
            self.head_left = head - k;
            n -= k;
        }
        if self.taken >= self.to_stack.len() {
            self.to_stack.clear();
            self.taken = 0;
            self.head_left = 0;
        }
    }

    /// Bytes read from passt: `deliver` gets each whole frame (those shorter than an
    /// Ethernet header are skipped); the rest waits for the next read. An error when
    /// passt's stream is out of step (a length above [`MAX_FRAME`]): nothing of it can be
    /// trusted after that.
    pub fn from_stack(
        &mut self,
        bytes: &[u8],
        mut deliver: impl FnMut(&[u8]),
    ) -> core::result::Result<(), FrameError> {
        self.from_stack.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = self.from_stack.get(at..).unwrap_or_default();
            match stream::peek(rest)? {
                Peek::Incomplete => break,
                Peek::Frame { len } => {
                    let end = LEN_PREFIX + len;
                    if let Some(frame) = rest.get(LEN_PREFIX..end) {
                        if frame.len() >= MIN_FRAME {
                            deliver(frame);
                        }
                    }
                    at += end;
                }
            }
        }
        self.from_stack.drain(..at.min(self.from_stack.len()));
        Ok(())
    }
}

fn text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// Carries frames between `tap` (eth0, non-blocking) and `stack` (passt's socket) until
/// one side ends; returns why. `host` follows the anchor host's own networks.
pub fn run(tap: &OwnedFd, stack: &OwnedFd, host: &mut HostNets, relay: &mut Relay) -> String {
    let mut buf = vec![0u8; ROOM_FRAME_MAX];
    loop {
        let tap_events = if relay.wants_room_frames() {
            libc::POLLIN
        } else {
            0
        };
        let stack_events = libc::POLLIN
            | if relay.pending().is_empty() {
                0
            } else {
                libc::POLLOUT
            };
        let mut fds = [
            libc::pollfd {
                fd: tap.as_raw_fd(),
                events: tap_events,
                revents: 0,
            },
            libc::pollfd {
                fd: stack.as_raw_fd(),
                events: stack_events,
                revents: 0,
            },
        ];
        match sys::relay_io::wait(&mut fds) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => return format!("ppoll: {}", text(e)),
        }
        let [tap_fd, stack_fd] = fds;
        if stack_fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match sys::relay_io::read_now(stack, &mut buf) {
                Ok(Some(0)) => return "passt closed its socket".into(),
                Ok(Some(n)) => {
                    let got = buf.get(..n).unwrap_or_default();
                    if let Err(e) = relay.from_stack(got, |f| sys::relay_io::write_frame(tap, f)) {
                        return format!("passt's stream is out of step: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => return format!("read from passt: {}", text(e)),
            }
        }
        if tap_fd.revents & libc::POLLIN != 0 {
            // The host's addresses as they are now, before any frame of this batch.
            if host.refresh() {
                crate::note(format_args!(
                    "network relay: cannot read the anchor host's local routes; every IPv4 \
                     frame is refused until they can be"
                ));
            }
            for _ in 0..BATCH {
                if !relay.wants_room_frames() {
                    break;
                }
                match sys::relay_io::read_now(tap, &mut buf) {
                    Ok(Some(n)) => {
                        let frame = buf.get(..n).unwrap_or_default();
                        relay.from_room(frame, Some(host));
                    }
                    Ok(None) => break,
                    Err(e) => return format!("read from eth0: {}", text(e)),
                }
            }
        } else if tap_fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return "eth0 went away".into();
        }
        // One frame per send (see `Relay::pending`), until passt's socket is full.
        loop {
            match sys::relay_io::send_now(stack, relay.pending()) {
                Ok(0) => break,
                Ok(n) => relay.sent(n),
                Err(e) => return format!("write to passt: {}", text(e)),
            }
        }
    }
}

/// The relay's seccomp filter (seccomp/relay.json, compiled by build.rs): what [`run`]
/// needs, every other call answered with EPERM.
pub static RELAY_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/relay.bpf"));

/// The relay's name in /proc (`comm`).
pub const RELAY_NAME: &core::ffi::CStr = c"anchor-relay";

/// The relay's resource limits: its few descriptors, the tasks of its uid (passt's too),
/// no file writes, no locked memory.
const RELAY_RLIMITS: crate::privs::Rlimits = crate::privs::Rlimits {
    nofile: 16,
    nproc: 16,
    fsize: 0,
    memlock: 0,
};

/// Forks the relay for the room of `cfg` between `tap` (eth0, made in the room's network
/// namespace) and `link` (passt's socket and the anchor host's netlink socket), running as
/// `uid`; the jail keeps none of the three. Call it in the room's cgroup, PID and mount
/// namespaces, in the room's root (the room reads the relay's /proc/PID/mountinfo: it
/// must show the room's own mounts, never the anchor host's), as root, before the room's
/// processes exist.
pub fn spawn(cfg: &Config, tap: OwnedFd, link: Link, uid: u32) -> Result<()> {
    let jail = sys::getpid();
    if sys::fork()? == 0 {
        // The child: relays until one side ends, or fails to start; never returns.
        let why = child(&tap, link, uid, jail);
        crate::note(format_args!("room {}: network relay: {why}", cfg.name));
        sys::exit_now(1);
    }
    Ok(())
}

fn child(tap: &OwnedFd, link: Link, uid: u32, jail: i32) -> String {
    let Link {
        backend,
        host,
        deny,
        passt: _,
    } = link;
    let setup = || -> Result<HostNets> {
        // stdin: nothing (the jail's is the room's console); stdout joins stderr (bay0's
        // log of the room). No other descriptor of the jail's stays open.
        let null = sys::open_path(std::path::Path::new("/dev/null"), libc::O_RDWR)?;
        sys::dup2(null.as_raw_fd(), libc::STDIN_FILENO)?;
        sys::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO)?;
        drop(null);
        let mut keep = vec![
            libc::STDIN_FILENO,
            libc::STDOUT_FILENO,
            libc::STDERR_FILENO,
            tap.as_raw_fd(),
            backend.as_raw_fd(),
            host.as_raw_fd(),
        ];
        keep.extend(sys::parent_watch_fd());
        // SAFETY: this child never returns (`spawn` ends it with exit_now) and uses only
        // the descriptors kept; those closed are never touched or dropped again.
        unsafe { sys::close_all_except(&keep) }?;
        sys::set_nonblocking(backend.as_raw_fd())?;
        // The room sees the relay in its PID namespace (`ps`, /proc/PID/comm and
        // /proc/PID/cmdline): as what it is, not as the jail, and without the jail's
        // command line (the room's run directory and image path on the host).
        sys::set_process_name(RELAY_NAME)?;
        // SAFETY: this child has one thread and reads its arguments no more; /proc is the
        // room's, mounted by the jail before any room process existed (see `spawn`).
        unsafe { sys::title::set_command_line(RELAY_NAME.to_bytes()) }?;
        crate::privs::limit(&RELAY_RLIMITS)?;
        crate::privs::drop_to(uid, uid)?;
        sys::set_dumpable(false)?;
        // After the uid change, which clears it; the jail may have ended before it was set.
        sys::die_with_parent()?;
        if sys::getppid() != jail {
            return Err(Error::Unsupported(
                "the jail ended before the relay started",
            ));
        }
        sys::seccomp_install("install the network relay's seccomp filter", RELAY_BPF)?;
        HostNets::new(host).map_err(|_| {
            Error::Unsupported("cannot read the anchor host's local routes; no network")
        })
    };
    let mut host = match setup() {
        Ok(h) => h,
        Err(e) => return e.to_string(),
    };
    let nets = deny.iter().filter_map(|(a, p)| Net4::new(*a, *p)).collect();
    let mut relay = Relay::new(Egress::strict_nets(nets));
    let why = run(tap, &backend, &mut host, &mut relay);
    format!(
        "{why} ({} frame(s) to the anchor host refused)",
        relay.refused
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ipv4_to(dst: [u8; 4], len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[30..34].copy_from_slice(&dst);
        f
    }

    fn strict() -> Relay {
        Relay::new(Egress::strict(vec![Ipv4Addr::new(10, 0, 2, 3)]))
    }

    #[test]
    fn a_frame_the_rule_lets_out_goes_to_passt_with_its_length_first() {
        let mut r = strict();
        let f = ipv4_to([192, 0, 2, 1], 60);
        assert_eq!(r.from_room(&f, None), Verdict::Sent);
        assert_eq!(r.pending()[..4], 60u32.to_be_bytes());
        assert_eq!(&r.pending()[4..], &f[..]);
        r.sent(10);
        assert_eq!(r.pending().len(), 54);
        r.sent(1000);
        assert!(r.pending().is_empty());
    }

    #[test]
    fn frames_to_the_host_itself_and_other_protocols_are_refused() {
        let mut r = strict();
        for dst in [
            [127, 0, 0, 1],
            [10, 0, 2, 3],
            [224, 0, 0, 1],
            [255, 255, 255, 255],
        ] {
            assert_eq!(r.from_room(&ipv4_to(dst, 60), None), Verdict::Refused);
        }
        let mut v6 = ipv4_to([192, 0, 2, 1], 60);
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(r.from_room(&v6, None), Verdict::Refused);
        assert_eq!(r.refused, 5);
        assert_eq!(r.from_room(&[0u8; 13], None), Verdict::Dropped);
        assert!(r.pending().is_empty());
    }

    #[test]
    fn the_queue_is_bounded_and_says_when_eth0_may_be_read() {
        let mut r = strict();
        let f = ipv4_to([192, 0, 2, 1], 1514);
        let mut sent = 0;
        while r.from_room(&f, None) == Verdict::Sent {
            sent += 1;
        }
        assert!(r.pending().len() <= TO_STACK_CAP);
        assert_eq!(sent, TO_STACK_CAP / (1514 + 4));
        assert!(!r.wants_room_frames());
        r.sent(usize::MAX);
        assert!(r.wants_room_frames());
    }

    /// Regression (review, network escape): the relay wrote everything waiting for passt
    /// in one send(), as the VMM's device once did (see its test
    /// `each_write_to_the_backend_is_one_whole_frame`). A stream socket that takes only part
    /// of such a send ends what passt can read at an arbitrary byte, and this passt loses a
    /// length prefix that ends its read (and a frame whose rest does not come in one
    /// piece): its parse then starts inside a frame the room chose, which can carry a
    /// second frame to 127.0.0.1 that the rule never saw. Each send is one whole frame
    /// (or the rest of the one a short send cut).
    #[test]
    fn each_frame_goes_to_passt_in_a_send_of_its_own() {
        let mut r = strict();
        let a = ipv4_to([192, 0, 2, 1], 60);
        let b = ipv4_to([192, 0, 2, 2], 100);
        assert_eq!(r.from_room(&a, None), Verdict::Sent);
        assert_eq!(r.from_room(&b, None), Verdict::Sent);
        let framed = |f: &[u8]| [&(f.len() as u32).to_be_bytes()[..], f].concat();
        assert_eq!(r.pending(), &framed(&a)[..], "the first frame alone");
        r.sent(10);
        assert_eq!(
            r.pending(),
            &framed(&a)[10..],
            "the rest of a frame cut short"
        );
        r.sent(54);
        assert_eq!(r.pending(), &framed(&b)[..]);
        r.sent(104);
        assert!(r.pending().is_empty());
        // Taken together, bytes still leave in order, however they are counted.
        for f in [&a, &b, &a] {
            assert_eq!(r.from_room(f, None), Verdict::Sent);
        }
        r.sent(70);
        assert_eq!(r.pending(), &framed(&b)[6..]);
        r.sent(usize::MAX);
        assert!(r.pending().is_empty());
    }

    /// A SOCK_SEQPACKET socket pair: each read of the other end is one write of this one.
    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        sys::socketpair(libc::SOCK_SEQPACKET, "socketpair for the test").unwrap()
    }

    /// The same, seen where passt reads: the relay's event loop between a stand-in for
    /// eth0 and one for passt's socket (both record sockets, so each send shows).
    #[test]
    fn the_relay_sends_passt_one_frame_per_send() {
        let (tap, room) = seqpacket_pair();
        let (stack, passt) = seqpacket_pair();
        sys::set_nonblocking(tap.as_raw_fd()).unwrap();
        sys::set_nonblocking(stack.as_raw_fd()).unwrap();
        let frames: Vec<Vec<u8>> = (0..4u8)
            .map(|k| ipv4_to([192, 0, 2, 10 + k], 60 + 300 * usize::from(k)))
            .collect();
        // All waiting before the relay starts: it reads them in one batch.
        for f in &frames {
            // SAFETY: the pointer and length describe `f`, valid for reads for the call.
            let n = unsafe { libc::write(room.as_raw_fd(), f.as_ptr().cast(), f.len()) };
            assert_eq!(n, f.len() as isize);
        }
        let relay = std::thread::spawn(move || {
            let mut host = HostNets::new(sys::route_watch_socket().unwrap()).unwrap();
            let mut r = strict();
            run(&tap, &stack, &mut host, &mut r)
        });
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid timeval for the call, with its size. Hang
        // detection only: the relay sends at once.
        let ret = unsafe {
            libc::setsockopt(
                passt.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                core::ptr::from_ref(&timeout).cast(),
                core::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(ret, 0);
        let want: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| [&(f.len() as u32).to_be_bytes()[..], f].concat())
            .collect();
        let total: usize = want.iter().map(Vec::len).sum();
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.iter().map(Vec::len).sum::<usize>() < total {
            let mut b = vec![0u8; 1 << 16];
            // SAFETY: `b` is a writable buffer of the length given.
            let n = unsafe { libc::read(passt.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
            assert!(n > 0, "read: {}", std::io::Error::last_os_error());
            b.truncate(n as usize);
            got.push(b);
        }
        drop(passt);
        assert_eq!(relay.join().unwrap(), "passt closed its socket");
        let sizes = |v: &[Vec<u8>]| v.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(&got), sizes(&want), "one send per frame");
        assert!(got == want, "the sends are the frames, in order");
        drop(room);
    }

    #[test]
    fn passts_stream_is_cut_into_frames_across_reads() {
        let mut r = strict();
        let a = ipv4_to([10, 0, 2, 15], 60);
        let b = ipv4_to([10, 0, 2, 15], 100);
        let mut wire = Vec::new();
        for f in [&a, &b] {
            wire.extend_from_slice(&(f.len() as u32).to_be_bytes());
            wire.extend_from_slice(f);
        }
        // A runt frame (shorter than an Ethernet header) is skipped.
        wire.extend_from_slice(&3u32.to_be_bytes());
        wire.extend_from_slice(&[1, 2, 3]);
        let mut got: Vec<Vec<u8>> = Vec::new();
        for chunk in wire.chunks(7) {
            r.from_stack(chunk, |f| got.push(f.to_vec())).unwrap();
        }
        assert_eq!(got, vec![a, b]);
        // A length passt never sends: out of step.
        let bad = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(r.from_stack(&bad, |_| {}).is_err());
    }
}
