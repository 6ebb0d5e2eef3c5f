// SPDX-License-Identifier: GPL-3.0-or-later
//! The namespace room's seccomp filters, compiled from seccomp/room.json by build.rs
//! (one comment per syscall there; docs/SYSCALL-JUSTIFICATIONS.md lists them too):
//! `room`, an allow list answering every other syscall (unknown ones included) with
//! ENOSYS, then `room_deny`, which answers what a room must never do with EPERM: module
//! loading, kexec, bpf, perf_event_open, userfaultfd, keyrings, open_by_handle_at, every
//! mount call old and new, chroot and pivot_root, setns, unshare and namespace flags of
//! clone, io_uring, the host clock, reboot, TIOCSTI, a new core limit (RLIMIT_CORE),
//! socket families other than Unix and IP (so `ip` says EPERM, not ENOSYS), IP sockets of
//! kinds and protocols the host kernel would look for a module to serve (SCTP, DCCP, ...).
//! Between two errnos the filter installed last wins, so a denied call says EPERM.

use crate::error::Result;
use crate::sys;

static ROOM_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/room.bpf"));
static ROOM_DENY_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/room_deny.bpf"));

/// The filter source (for tests and the justification check).
pub const SOURCE: &str = include_str!("../seccomp/room.json");

/// Installs both filters on the calling thread (no_new_privs must be set). Every
/// process of the room inherits them.
pub fn install() -> Result<()> {
    sys::seccomp_install("install the room's seccomp allow list", ROOM_BPF)?;
    sys::seccomp_install("install the room's seccomp deny list", ROOM_DENY_BPF)
}

/// The names in filter `kind` of [`SOURCE`], in order (a name may repeat, one rule per
/// condition).
pub fn names(kind: &str) -> Vec<&'static str> {
    let Some(start) = SOURCE.find(&format!("\"{kind}\": {{")) else {
        return Vec::new();
    };
    let body = SOURCE.get(start..).unwrap_or_default();
    let body = body
        .get(..body.find("\n  }").unwrap_or(body.len()))
        .unwrap_or_default();
    body.split("\"syscall\": \"")
        .skip(1)
        .filter_map(|p| p.split('"').next())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_classic_bpf_ending_in_a_return() {
        for prog in [ROOM_BPF, ROOM_DENY_BPF] {
            assert!(prog.len() > 80 && prog.len() % 8 == 0);
            let last = &prog[prog.len() - 8..];
            assert_eq!(last[0] & 0x07, 0x06, "BPF_RET");
        }
    }

    #[test]
    fn what_must_be_denied_is_denied_and_never_allowed() {
        let allow = names("room");
        let deny = names("room_deny");
        for must in [
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "keyctl",
            "add_key",
            "request_key",
            "open_by_handle_at",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "setns",
            "unshare",
            "io_uring_setup",
            "reboot",
            "syslog",
        ] {
            assert!(deny.contains(&must), "{must} is not in room_deny");
            assert!(!allow.contains(&must), "{must} is in the allow list");
        }
        // Unconditional denials never appear in the allow list (conditional ones, like
        // clone with namespace flags, refine an allowed call).
        for d in &deny {
            if ![
                "clone",
                "ioctl",
                "setrlimit",
                "prlimit64",
                "socket",
                "socketpair",
            ]
            .contains(d)
            {
                assert!(!allow.contains(d), "{d} is both allowed and denied");
            }
        }
        // clone3 passes its flags in memory a filter cannot read: it is left out, so it
        // gets ENOSYS and C libraries fall back to clone, whose flags are checked.
        assert!(!allow.contains(&"clone3") && !deny.contains(&"clone3"));
        // Netlink replies are kernel memory no cgroup is charged for: no netlink socket.
        assert!(
            !SOURCE.contains("AF_NETLINK"),
            "a netlink socket rule in seccomp/room.json"
        );
        // Linux AIO draws on one kernel-wide count (fs.aio-max-nr) a room could take whole.
        for aio in ["io_setup", "io_submit", "io_getevents", "io_pgetevents"] {
            assert!(!allow.contains(&aio), "{aio} is in the allow list");
        }
        assert!(allow.len() > 250, "{}", allow.len());
    }

    const ALLOW: u32 = 0x7fff_0000;
    const ERRNO: u32 = 0x0005_0000;
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = anchor_bpf::AUDIT_ARCH_X86_64;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = anchor_bpf::AUDIT_ARCH_AARCH64;

    /// What the compiled program `prog` answers to syscall `nr` with `args`.
    fn answer(prog: &[u8], nr: libc::c_long, args: [u64; 6]) -> u32 {
        let insns: Vec<anchor_bpf::Insn> = sys::sock_filters(prog)
            .into_iter()
            .map(|f| anchor_bpf::Insn {
                code: f.code,
                jt: f.jt,
                jf: f.jf,
                k: f.k,
            })
            .collect();
        let data = anchor_bpf::Data {
            nr: nr as u32,
            arch: ARCH,
            ip: 0,
            args,
        };
        anchor_bpf::run(&insns, &data).unwrap().ret
    }

    /// Both filters' answers to socket(domain, kind, protocol).
    fn socket(domain: i32, kind: i32, protocol: i32) -> (u32, u32) {
        let args = [domain as u64, kind as u64, protocol as u32 as u64, 0, 0, 0];
        (
            answer(ROOM_BPF, libc::SYS_socket, args),
            answer(ROOM_DENY_BPF, libc::SYS_socket, args),
        )
    }

    #[test]
    fn ip_sockets_are_the_kinds_and_protocols_rooms_use_and_no_other() {
        let flags = [
            0,
            libc::SOCK_NONBLOCK,
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        ];
        for domain in [libc::AF_INET, libc::AF_INET6] {
            for (kind, protocols) in [
                (libc::SOCK_STREAM, &[0, libc::IPPROTO_TCP][..]),
                (libc::SOCK_DGRAM, &[0, libc::IPPROTO_UDP, 1, 58][..]),
                (libc::SOCK_RAW, &[1, 58][..]),
            ] {
                for &p in protocols {
                    for f in flags {
                        assert_eq!(
                            socket(domain, kind | f, p),
                            (ALLOW, ALLOW),
                            "socket({domain}, {kind} | {f:#x}, {p})"
                        );
                    }
                }
            }
            // Each kind but stream, datagram and raw; each protocol the lookup would ask
            // modprobe for (SCTP 132, DCCP 33, L2TP 115, UDP-Lite 136, MPTCP 262, 255, -1).
            for kind in [0, 4, 5, 6, 7, 8, 9, 10, 11, 15] {
                for f in flags {
                    assert_eq!(
                        socket(domain, kind | f, 0).1,
                        ERRNO | libc::EPERM as u32,
                        "socket({domain}, {kind} | {f:#x}, 0)"
                    );
                }
            }
            for p in [2, 5, 7, 16, 18, 33, 57, 59, 115, 132, 136, 255, 262, -1] {
                for kind in [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_RAW] {
                    assert_eq!(
                        socket(domain, kind, p).1,
                        ERRNO | libc::EPERM as u32,
                        "socket({domain}, {kind}, {p})"
                    );
                }
            }
        }
        // Unix sockets of every kind stay allowed.
        for kind in [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET] {
            assert_eq!(socket(libc::AF_UNIX, kind, 0), (ALLOW, ALLOW));
        }
    }

    #[test]
    fn sync_of_every_file_system_is_not_allowed_but_a_rooms_own_flushes_are() {
        let none = [0; 6];
        assert_eq!(
            answer(ROOM_BPF, libc::SYS_sync, none),
            ERRNO | libc::ENOSYS as u32
        );
        for nr in [libc::SYS_fsync, libc::SYS_fdatasync, libc::SYS_syncfs] {
            assert_eq!(answer(ROOM_BPF, nr, none), ALLOW, "syscall {nr}");
            assert_eq!(answer(ROOM_DENY_BPF, nr, none), ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn every_syscall_is_justified_in_the_docs() {
        let doc = include_str!("../../docs/SYSCALL-JUSTIFICATIONS.md");
        for kind in ["room", "room_deny"] {
            for name in names(kind) {
                let row = format!("| {kind} | {name} |");
                assert!(
                    doc.contains(&row),
                    "docs/SYSCALL-JUSTIFICATIONS.md lacks `{row}`"
                );
            }
        }
    }
}
