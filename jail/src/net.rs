// SPDX-License-Identifier: GPL-3.0-or-later
//! A microVM room's network (`--net outbound`): passt, a user-mode network stack, as one
//! more process of the room (docs/ARCHITECTURE.md, "Network").
//!
//! The jail, still root in the anchor host's network namespace and already in the room's
//! cgroup and PID namespace, makes a connected Unix socket pair and forks passt on one
//! end, before it gives the VMM its own empty network namespace. passt runs as the
//! room's uid with no capability and no_new_privs, sandboxes itself further (its own
//! user and mount namespaces, an empty root, a seccomp filter), has no inbound port
//! forwards, does not map the gateway address to the anchor host, and turns the
//! guest's connections into ordinary sockets of the anchor host. The VMM gets the other
//! end (`--net-fd`), the room kernel gets its address on its command line
//! (`anchor.net=`), and the VMM drops every guest frame addressed to the anchor host
//! itself: loopback, the unspecified network, multicast and broadcast, and each address
//! and local network the anchor host holds at the time of the frame (it follows them
//! through `--net-host-fd`; passt would connect to them as local sockets). passt is the jail's child in the room's PID namespace: when the
//! VMM (its PID 1) ends, the kernel kills it, so nothing of it outlives the room.

use std::ffi::{CStr, CString};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::args::Config;
use crate::error::{Error, Result};
use crate::root::{self, mkdir_all};
use crate::{note, privs, sys};

/// The network a room may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connections out through passt; nothing in, nothing of the anchor host.
    Outbound,
}

impl Mode {
    /// `--net VALUE`.
    pub fn parse(s: &str) -> Option<Mode> {
        (s == "outbound").then_some(Mode::Outbound)
    }
}

/// The user-mode network stack (Debian's passt, in the anchor host's initramfs).
pub const PASST: &CStr = c"/usr/bin/passt";
const PASST_PATH: &str = "/usr/bin/passt";

/// The room's side of its link: every room is alone on its own link behind its own
/// passt, so every room gets the same addresses (like QEMU's user networking).
pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub const PREFIX: u8 = 24;
/// The room's default gateway (passt answers for it; not mapped to the anchor host).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The room's DNS server: passt forwards what is sent here to the anchor host's
/// resolver (the first IPv4 nameserver of its /etc/resolv.conf; when that is not a
/// remote address, the VMM refuses this address and the room has no DNS: [`deny_list`]).
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// passt's open files limit (soft and hard; passt takes it whole): each guest TCP
/// connection and each UDP source port the guest sends from is one socket of passt, and
/// each such port is bound on the anchor host while passt holds it (docs/ARCHITECTURE.md,
/// "Network"), so this also bounds the ports one room can hold. 4096 is what passt got
/// from bay0 (the kernel's hard limit for init) before the jail set it.
pub const PASST_NOFILE: u64 = 4096;
/// The frame size both passt and the VMM's device use (passt offers 65520 otherwise).
pub const MTU: u16 = 1500;

/// The kernel command-line argument that tells the room's agent its address.
pub fn cmdline_arg() -> String {
    format!("anchor.net={GUEST}/{PREFIX},{GATEWAY},{DNS}")
}

/// passt's command line, for the socket at descriptor `fd`.
pub fn passt_argv(fd: i32) -> Vec<String> {
    let fixed = [
        "passt",
        "--foreground",
        "--quiet",
        "--stderr",
        "--ipv4-only",
    ];
    // No `--dns`: with it this passt forwards the queries for --dns-forward to the
    // host's loopback; without it, to the first nameserver of the host's resolv.conf.
    let pairs: [(&str, String); 8] = [
        ("--fd", fd.to_string()),
        ("--mtu", MTU.to_string()),
        ("--address", GUEST.to_string()),
        ("--netmask", PREFIX.to_string()),
        ("--gateway", GATEWAY.to_string()),
        ("--dns-forward", DNS.to_string()),
        // No inbound port forwards of either protocol.
        ("--tcp-ports", "none".into()),
        ("--udp-ports", "none".into()),
    ];
    // The gateway is not the anchor host; no IPv6 services (the host has no IPv6); no
    // DHCP server: the room's address is on its kernel command line, and this passt
    // writes its DHCP answer past the end of a short request, over the frames after it
    // (which the VMM's egress rule had already judged).
    let flags = [
        "--no-map-gw",
        "--no-dhcp",
        "--no-dhcpv6",
        "--no-ndp",
        "--no-ra",
    ];
    let mut v: Vec<String> = fixed.iter().map(|s| (*s).to_string()).collect();
    for (k, val) in pairs {
        v.push(k.to_string());
        v.push(val);
    }
    v.extend(flags.iter().map(|s| (*s).to_string()));
    v
}

/// An IPv4 network the anchor host holds as its own: an address and a prefix length (32:
/// one address).
pub type Local = (Ipv4Addr, u8);

/// Whether `net` holds `a`.
pub fn holds(net: &Local, a: Ipv4Addr) -> bool {
    let mask = u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(net.1)))
        .unwrap_or(0);
    (u32::from(a) ^ u32::from(net.0)) & mask == 0
}

/// The IPv4 networks of the network namespace whose `/proc/net/fib_trie` is `text` that
/// are its own: every `/N host LOCAL` entry (N = 32 for an address; less for an address
/// on the loopback device with a prefix, or a local route, which make every address of
/// the network the host's), sorted, without duplicates.
pub fn local_addresses(text: &str) -> Vec<Local> {
    let mut last: Option<Ipv4Addr> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if let Some(rest) = t.strip_prefix('/') {
            let mut words = rest.split_whitespace();
            let prefix = words.next().and_then(|p| p.parse::<u8>().ok());
            if words.next() == Some("host") && words.next() == Some("LOCAL") {
                if let (Some(a), Some(p)) = (last, prefix.filter(|p| *p <= 32)) {
                    out.push((a, p));
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The longest resolv.conf line (bytes, without its "\n") [`dns_target`] reads as passt
/// does. passt reads the file through a buffer of BUFSIZ bytes (8192 with glibc): behind a
/// line of 8192 bytes or more, this passt lost the next line (measured: a nameserver
/// line after a long comment was not read, and the room's queries went to 0.0.0.0, the
/// anchor host). The bound leaves room for a libc with a smaller BUFSIZ (musl: 1024).
pub const MAX_RESOLV_LINE: usize = 1023;

/// Where passt sends the room's DNS queries (to [`DNS`] port 53), read from the anchor
/// host's `/etc/resolv.conf` (`None`: there is none) as passt reads it: the last word of
/// the first `nameserver ` line that is an IPv4 address (cut at `%`), 0.0.0.0 when no
/// line is. IPv6 lines are skipped as passt skips them; `None` for a line whose word this
/// reads differently from passt (neither IPv4 nor IPv6), for a file with a NUL byte, and
/// for one with a line longer than [`MAX_RESOLV_LINE`]. Lines end at "\n" only, as
/// passt's do: a "\r" before it stays in the word (passt then skips the line; so does
/// this, as one it cannot read).
pub fn dns_target(resolv: Option<&str>) -> Option<Ipv4Addr> {
    let text = resolv.unwrap_or_default();
    // passt's C strings end at a NUL, and it reads a file through a fixed buffer: where
    // its lines go on after a NUL or a line longer than that is its business.
    if text.contains('\0') || text.split('\n').any(|l| l.len() > MAX_RESOLV_LINE) {
        return None;
    }
    for line in text.split('\n') {
        if !line.starts_with("nameserver ") {
            continue;
        }
        let word = line.rsplit(' ').next().unwrap_or_default();
        let word = word.split('%').next().unwrap_or_default();
        if let Ok(a) = word.parse::<Ipv4Addr>() {
            return Some(a);
        }
        if word.parse::<std::net::Ipv6Addr>().is_err() {
            return None;
        }
    }
    Some(Ipv4Addr::UNSPECIFIED)
}

/// What the VMM refuses (`--net-deny`) for a room on the anchor host whose
/// `/proc/net/fib_trie` is `fib` and whose `/etc/resolv.conf` is `resolv`: the anchor
/// host's addresses, and the DNS forwarder [`DNS`] too when passt would forward it to
/// the anchor host itself (a loopback, unspecified, multicast or own address: passt
/// forwards there whatever the room sends to port 53), or to an address this cannot
/// tell. The room then has no DNS, never the anchor host's port 53.
pub fn deny_list(fib: &str, resolv: Option<&str>) -> Vec<Local> {
    let mut deny = local_addresses(fib);
    let remote = dns_target(resolv).is_some_and(|a| {
        let first = a.octets()[0];
        first != 0 && first != 127 && first < 224 && !deny.iter().any(|n| holds(n, a))
    });
    if !remote {
        deny.push((DNS, 32));
        deny.sort_unstable();
    }
    deny
}

/// The VMM's command line with the network added: `--net-fd FD`, `--net-host-fd HOST`
/// (the VMM follows the anchor host's own addresses through it), one `--net-deny` per
/// entry of `deny`, and [`cmdline_arg`] appended to its `--cmdline` value.
pub fn vmm_argv(argv: &[CString], fd: i32, host: i32, deny: &[Local]) -> Result<Vec<CString>> {
    let mut out = Vec::with_capacity(argv.len() + 2 + 2 * deny.len());
    let mut seen_cmdline = false;
    let mut after_cmdline = false;
    for a in argv {
        if after_cmdline {
            let mut v = a.as_bytes().to_vec();
            v.push(b' ');
            v.extend_from_slice(cmdline_arg().as_bytes());
            out.push(CString::new(v).map_err(|_| Error::Unsupported("NUL in --cmdline"))?);
            after_cmdline = false;
            continue;
        }
        after_cmdline = a.as_bytes() == b"--cmdline";
        seen_cmdline |= after_cmdline;
        out.push(a.clone());
    }
    if !seen_cmdline || after_cmdline {
        return Err(Error::Unsupported(
            "--net needs the VMM's --cmdline (the room's address goes there)",
        ));
    }
    let word = |s: String| CString::new(s).map_err(|_| Error::Unsupported("NUL in an argument"));
    out.push(word("--net-fd".into())?);
    out.push(word(fd.to_string())?);
    out.push(word("--net-host-fd".into())?);
    out.push(word(host.to_string())?);
    // The device is strict only with a list: 0.0.0.0 (refused anyway) stands in for an
    // anchor host with no address.
    let none = [(Ipv4Addr::UNSPECIFIED, 32)];
    for (a, p) in if deny.is_empty() { &none[..] } else { deny } {
        out.push(word("--net-deny".into())?);
        out.push(word(if *p < 32 {
            format!("{a}/{p}")
        } else {
            a.to_string()
        })?);
    }
    Ok(out)
}

/// What the VMM gets of the room's network.
#[derive(Debug)]
pub struct Link {
    /// Its end of passt's socket (`--net-fd`).
    pub backend: OwnedFd,
    /// A NETLINK_ROUTE socket of the anchor host's network namespace, subscribed to its
    /// address and route changes (`--net-host-fd`): the VMM refuses whatever address the
    /// host holds as its own at the time of each frame, not only those it held when the
    /// room started.
    pub host: OwnedFd,
    /// What the VMM cannot learn through `host` (`--net-deny`): the DNS forwarder when
    /// passt would forward it to the anchor host ([`deny_list`]).
    pub deny: Vec<Local>,
    /// passt's pid in the jail's PID namespace (the room's): a namespace room sees passt
    /// there, and must not see the anchor host's network through its /proc/PID/net.
    pub passt: libc::pid_t,
}

/// Starts passt for the room of `cfg` as `uid` (see the module documentation). Call it in
/// the room's cgroup and PID namespace, in the anchor host's network namespace. Returns
/// what the VMM (or a namespace room's relay, [`attach_room`]) gets (close-on-exec);
/// `None` when this anchor host has no passt (an arm64 one, today): the room gets no
/// network, and the log says so (less than the policy asks, never more).
pub fn start(cfg: &Config, uid: u32) -> Result<Option<Link>> {
    let name = &cfg.name;
    if !Path::new(PASST_PATH).is_file() {
        note(format_args!(
            "room {name}: not granted: network (no {PASST_PATH} on this anchor host)"
        ));
        return Ok(None);
    }
    let fib = Path::new("/proc/net/fib_trie");
    let text = std::fs::read_to_string(fib).map_err(|e| crate::root::io_err("read", fib, &e))?;
    // What passt reads for its DNS forwarder (none: the same as no nameserver).
    let resolv = std::fs::read_to_string("/etc/resolv.conf").ok();
    let host = deny_list(&text, resolv.as_deref());
    if host.contains(&(DNS, 32)) {
        note(format_args!(
            "room {name}: no DNS: the anchor host's /etc/resolv.conf names no remote \
             IPv4 nameserver, or one the jail cannot read as passt does (passt would, or \
             could, forward the room's queries to the anchor host)"
        ));
    }
    let watch = sys::route_watch_socket()?;
    let (vmm_end, passt_end) = sys::socketpair_stream()?;
    let argv = passt_argv(passt_end.as_raw_fd())
        .into_iter()
        .map(|a| CString::new(a).map_err(|_| Error::Unsupported("NUL in passt's arguments")))
        .collect::<Result<Vec<_>>>()?;
    let jail = sys::getpid();
    let passt = sys::fork()?;
    if passt == 0 {
        // The child: becomes passt or exits; never returns into the jail.
        let e = child(&passt_end, cfg, uid, &argv, jail);
        note(format_args!("room {name}: passt: {}", e));
        sys::exit_now(1);
    }
    drop(passt_end);
    note(format_args!(
        "room {name}: network outbound: passt as uid {uid}, room address {GUEST}/{PREFIX}, \
         {} address(es) refused now (the {} follows the anchor host's as they change)",
        host.len(),
        if uid == cfg.uid { "VMM" } else { "relay" }
    ));
    let deny = host.into_iter().filter(|n| *n == (DNS, 32)).collect();
    Ok(Some(Link {
        backend: vmm_end,
        host: watch,
        deny,
        passt,
    }))
}

/// The name of a namespace room's network device.
pub const ROOM_IFACE: &str = "eth0";

/// A namespace room's network device, made by [`attach_room`]: eth0's descriptor and
/// what the relay joins it to, as `uid` (`crate::relay::spawn` takes all three).
#[derive(Debug)]
pub struct RoomNet {
    pub tap: OwnedFd,
    pub link: Link,
    pub uid: u32,
}

/// A namespace room's side of its network, in the room's network namespace (call it
/// after the jail entered it, as root, before the room's processes exist): eth0, a TAP
/// device with the room's address, MTU and default route, which the room cannot change
/// (the namespace belongs to the anchor host's user namespace). The relay between eth0
/// and passt ([`crate::relay`]) is forked later, once the jail is in the room's mount
/// namespace and root: the room reads a process's mount table in /proc/PID/mountinfo,
/// and a relay forked here would show the anchor host's.
pub fn attach_room(cfg: &Config, link: Link, uid: u32) -> Result<RoomNet> {
    let tap = sys::tap::make(ROOM_IFACE)?;
    // A host kernel with IPv6 gives eth0 a link-local address, and the room's kernel then
    // sends neighbour discovery the relay refuses: the room would show an IPv6 address
    // that reaches nothing. (The anchor host's kernel has no IPv6.)
    let v6 = Path::new("/proc/sys/net/ipv6/conf")
        .join(ROOM_IFACE)
        .join("disable_ipv6");
    if v6.exists() {
        std::fs::write(&v6, "1\n").map_err(|e| crate::root::io_err("write", &v6, &e))?;
    }
    sys::tap::configure(ROOM_IFACE, MTU, GUEST, PREFIX, GATEWAY)?;
    note(format_args!(
        "room {}: {ROOM_IFACE} {GUEST}/{PREFIX}, gateway {GATEWAY}, MTU {MTU} (the room \
         cannot change them); the relay to passt as uid {uid}",
        cfg.name
    ));
    Ok(RoomNet { tap, link, uid })
}

/// passt's resource limits: [`PASST_NOFILE`] open files, the room's process count (passt
/// has the VMM's uid), and no file writes or locked memory (it needs neither: no pcap, no
/// pid file).
pub fn passt_rlimits(cfg: &Config) -> privs::Rlimits {
    privs::Rlimits {
        nofile: PASST_NOFILE,
        nproc: cfg.rlimits.nproc,
        fsize: 0,
        memlock: 0,
    }
}

/// anchor-jail's seccomp filter for passt (seccomp/passt.json, compiled by build.rs;
/// classic BPF, 8 bytes an instruction as `sys::seccomp_install` takes it):
/// `setsockopt(fd, SOL_SOCKET, SO_REUSEADDR or SO_REUSEPORT, ..)` fails with EPERM;
/// everything else is left to passt's own filter, stacked on it.
///
/// Why: this passt sends a room's datagrams from a socket bound to 0.0.0.0 and the
/// room's source port, with SO_REUSEADDR, and two UDP sockets that both have it may bind
/// the same port whatever their uids: the one bound last gets the datagrams. One room
/// could so take the answers to another room's queries. passt goes on without the
/// option (it only logs), and a second bind of a port fails.
pub static PASST_DENY_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/passt_deny.bpf"));

/// passt's side of the fork: its descriptors, a root it can pivot away from, its uid,
/// no capability, then exec.
fn child(sock: &OwnedFd, cfg: &Config, uid: u32, argv: &[CString], jail: i32) -> Error {
    let run = || -> Result<core::convert::Infallible> {
        // passt sandboxes itself with pivot_root, which the anchor host's initramfs root
        // (rootfs) refuses: it gets a private mount namespace whose root is a recursive
        // bind of the host's (what it reads at start: itself, its libraries, /proc,
        // /etc/resolv.conf), from which it then pivots into its own empty root.
        sys::unshare(libc::CLONE_NEWNS)?;
        root::make_private()?;
        let top = cfg.run_dir.join(".net");
        mkdir_all(&top)?;
        sys::mount(
            "bind the host's root for passt",
            Some(Path::new("/")),
            &top,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        root::enter(&top)?;
        // stdin: nothing; stdout joins stderr (bay0's log of the room), never the console.
        let null = sys::open_path(Path::new("/dev/null"), libc::O_RDWR)?;
        sys::dup2(null.as_raw_fd(), libc::STDIN_FILENO)?;
        sys::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO)?;
        // Nothing of whoever started the jail (passt closes no descriptor it inherits,
        // and takes the open files limit it is given as its own): 0, 1, 2 and its socket,
        // and limits of its own.
        sys::cloexec_from(3)?;
        sys::set_inheritable(sock.as_raw_fd())?;
        privs::limit(&passt_rlimits(cfg))?;
        // A microVM room's passt has the VMM's uid; a namespace room's, the room's network
        // uid (the room's processes must not signal or trace it).
        let gid = if uid == cfg.uid { cfg.gid } else { uid };
        privs::drop_to(uid, gid)?;
        // After the uid change, which clears it; the jail may have died before it was set
        // (it is PID 1 of the room's PID namespace, whose end kills passt in any case).
        sys::die_with_parent()?;
        if sys::getppid() != jail {
            return Err(Error::Unsupported("the jail ended before passt started"));
        }
        sys::seccomp_install("install passt's seccomp filter", PASST_DENY_BPF)?;
        sys::exec(PASST, argv)
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.77.0.0/24 2 0 2
        +-- 10.77.0.0/30 2 0 2
           |-- 10.77.0.0
              /24 link UNICAST
           |-- 10.77.0.1
              /32 host LOCAL
        |-- 10.77.0.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.77.0.1
        /32 host LOCAL
     |-- 127.0.0.1
        /32 host LOCAL
";

    /// Regression (review, network escape): an address on the loopback device with a
    /// prefix (`ip addr add 10.99.0.1/24 dev lo`) or a local route (`ip route add local
    /// 10.98.0.0/16 dev lo`) makes a whole network the anchor host's own (measured: a
    /// connection to 10.99.0.7 reached a listener of the host). Only the /32 entries were
    /// refused; the whole network must be.
    #[test]
    fn local_networks_are_refused_whole() {
        let fib = "\
Local:
  +-- 0.0.0.0/1 2 0 2
        +-- 10.99.0.0/24 2 0 2
              |-- 10.99.0.0
                 /24 host LOCAL
              |-- 10.99.0.1
                 /32 host LOCAL
        |-- 10.98.0.0
           /16 host LOCAL
";
        let got = local_addresses(fib);
        assert_eq!(
            got,
            vec![
                (Ipv4Addr::new(10, 98, 0, 0), 16),
                (Ipv4Addr::new(10, 99, 0, 0), 24),
                (Ipv4Addr::new(10, 99, 0, 1), 32),
            ]
        );
        let argv = c(&["/bin/anchor-vmm", "--cmdline", "quiet"]);
        let out = vmm_argv(&argv, 5, 6, &got).unwrap();
        let words: Vec<&str> = out.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            words[7..],
            [
                "--net-deny",
                "10.98.0.0/16",
                "--net-deny",
                "10.99.0.0/24",
                "--net-deny",
                "10.99.0.1"
            ]
        );
        // A resolver inside a local network is the anchor host too.
        assert!(deny_list(fib, Some("nameserver 10.98.7.7\n")).contains(&(DNS, 32)));
    }

    #[test]
    fn the_anchor_hosts_addresses_are_its_local_host_routes() {
        assert_eq!(
            local_addresses(FIB),
            vec![
                (Ipv4Addr::new(10, 77, 0, 1), 32),
                (Ipv4Addr::new(127, 0, 0, 1), 32)
            ]
        );
        assert!(local_addresses("").is_empty());
        assert!(local_addresses("|-- not-an-address\n /32 host LOCAL\n").is_empty());
    }

    /// Regression (review, network escape): passt sends what the room sends to
    /// 10.0.2.3:53 to the first IPv4 nameserver of the anchor host's resolv.conf, even a
    /// loopback one (with `--no-map-gw` it only leaves it out of its DHCP answer), and with
    /// none at all to 0.0.0.0, which is the anchor host itself: measured with this passt,
    /// a room's datagram to 10.0.2.3:53 reached a listener on the anchor host's
    /// 127.0.0.1:53 in both cases. Then the forwarder's address is refused as well.
    #[test]
    fn the_dns_forwarder_is_refused_when_the_resolver_is_the_anchor_host() {
        let host = local_addresses(FIB);
        let with_dns = |extra: &[Local]| {
            let mut v = host.clone();
            v.extend_from_slice(extra);
            v.sort_unstable();
            v
        };
        for resolv in [
            None,
            Some(""),
            Some("# no nameserver\nsearch example.org\n"),
            Some("nameserver 127.0.0.53\nnameserver 10.77.0.2\n"),
            Some("nameserver 10.77.0.1\n"),
            Some("nameserver 0.0.0.0\n"),
            Some("nameserver 224.0.0.1\n"),
            Some("nameserver ::1\n"),
            Some("nameserver 10.77.0.2x\nnameserver 10.77.0.2\n"),
        ] {
            assert_eq!(deny_list(FIB, resolv), with_dns(&[(DNS, 32)]), "{resolv:?}");
        }
        for resolv in [
            "nameserver 10.77.0.2\n",
            "nameserver 10.77.0.2\nnameserver 127.0.0.1\n",
            "search x\nnameserver ::1\nnameserver  10.77.0.2%eth0\n",
            "nameserver\t127.0.0.1\nnameserver 10.77.0.2\n",
        ] {
            assert_eq!(deny_list(FIB, Some(resolv)), host, "{resolv:?}");
        }
    }

    /// Regression (review, network escape): the jail read resolv.conf with Rust's
    /// `lines()`, which also ends a line at "\r\n", and Rust strings, which go on past a
    /// NUL; passt reads C strings split at "\n" only. Measured with this passt: with a
    /// file written with CRLF line ends, "192.0.2.99\r" is no address to passt, which
    /// skips the line and forwards the room's queries to the next nameserver it reads
    /// (127.0.0.1) or, with none, to 0.0.0.0: both reached a listener on the anchor
    /// host's 127.0.0.1:53, while the jail took 192.0.2.99 for the target and let
    /// 10.0.2.3 through. The same with "nameserver 127.0.0.1\0 192.0.2.99" (passt stops
    /// at the NUL), and with a comment line of 8192 bytes before the nameserver line
    /// (passt did not read the line after it; see [`MAX_RESOLV_LINE`]). Such a file is
    /// one the jail cannot read as passt does: no DNS.
    #[test]
    fn a_resolv_conf_passt_reads_otherwise_leaves_the_room_without_dns() {
        let host = local_addresses(FIB);
        let mut with_dns = host.clone();
        with_dns.push((DNS, 32));
        with_dns.sort_unstable();
        for resolv in [
            "nameserver 10.77.0.2\r\n",
            "search x\r\nnameserver 10.77.0.2\r\noptions y\r\n",
            "nameserver 10.77.0.2\r\nnameserver 127.0.0.1\n",
            "nameserver 127.0.0.1\0 10.77.0.2\n",
            "# \0\nnameserver 10.77.0.2\n",
        ] {
            assert_eq!(deny_list(FIB, Some(resolv)), with_dns, "{resolv:?}");
        }
        // Behind a comment line of 8192 bytes this passt did not read the next line.
        let long = |n: usize| format!("#{}\nnameserver 10.77.0.2\n", "a".repeat(n - 1));
        for n in [MAX_RESOLV_LINE + 1, 8192] {
            assert_eq!(deny_list(FIB, Some(&long(n))), with_dns, "a line of {n}");
        }
        // A CR elsewhere than in a nameserver line, or a long line within the bound,
        // changes nothing for passt.
        for resolv in ["search x\r\nnameserver 10.77.0.2\n", &long(MAX_RESOLV_LINE)] {
            assert_eq!(deny_list(FIB, Some(resolv)), host, "{resolv:?}");
        }
    }

    fn c(v: &[&str]) -> Vec<CString> {
        v.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    #[test]
    fn the_vmm_gets_the_socket_the_deny_list_and_the_address_on_its_cmdline() {
        let argv = c(&["/bin/anchor-vmm", "--cmdline", "quiet ro", "--vcpus", "1"]);
        let deny = [(Ipv4Addr::new(10, 77, 0, 1), 32)];
        let out = vmm_argv(&argv, 5, 6, &deny).unwrap();
        let words: Vec<&str> = out.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            words,
            [
                "/bin/anchor-vmm",
                "--cmdline",
                "quiet ro anchor.net=10.0.2.15/24,10.0.2.2,10.0.2.3",
                "--vcpus",
                "1",
                "--net-fd",
                "5",
                "--net-host-fd",
                "6",
                "--net-deny",
                "10.77.0.1"
            ]
        );
        // Regression (review): the device is strict (IPv4 and ARP only) only when it is
        // given a list; an anchor host with no address (its loopback down, no uplink)
        // gave none, and the room's IPv6, VLAN and other frames went to passt.
        let out = vmm_argv(&argv, 5, 6, &[]).unwrap();
        let words: Vec<&str> = out.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(words[words.len() - 2..], ["--net-deny", "0.0.0.0"]);
        for bad in [&["/bin/anchor-vmm"][..], &["/bin/anchor-vmm", "--cmdline"]] {
            let e = vmm_argv(&c(bad), 5, 6, &deny).unwrap_err().to_string();
            assert!(e.contains("--net needs the VMM's --cmdline"), "{e}");
        }
    }

    /// Regression (review, network escape): this passt (2023-03-09) writes its DHCP
    /// answer over the guest's request in its buffer, options and padding included (at
    /// least 60 bytes), however short the request: past its end, over the frames that
    /// follow it in the same read, after the VMM's egress rule passed them (measured: a
    /// datagram to a listener that arrived alone was lost behind a 240-byte request).
    /// The room never asks for DHCP (its address is on its kernel command line).
    #[test]
    fn passt_has_no_dhcp_server() {
        assert!(passt_argv(7).iter().any(|a| a == "--no-dhcp"));
    }

    #[test]
    fn passt_is_told_everything_that_keeps_the_room_outbound_only() {
        let argv = passt_argv(7);
        let has = |k: &str, v: &str| argv.windows(2).any(|w| w[0] == k && w[1] == v);
        assert!(has("--fd", "7") && has("--mtu", "1500"));
        assert!(has("--tcp-ports", "none") && has("--udp-ports", "none"));
        assert!(has("--address", "10.0.2.15") && has("--gateway", "10.0.2.2"));
        assert!(has("--dns-forward", "10.0.2.3"));
        assert!(!argv.iter().any(|a| a == "--dns" || a == "-D"));
        for flag in ["--no-map-gw", "--foreground", "--ipv4-only"] {
            assert!(argv.iter().any(|a| a == flag), "{flag}");
        }
        assert_eq!(Mode::parse("outbound"), Some(Mode::Outbound));
        assert_eq!(Mode::parse("none"), None);
    }
}
