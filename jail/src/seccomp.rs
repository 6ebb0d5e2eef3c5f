// SPDX-License-Identifier: GPL-3.0-or-later
//! The namespace room's seccomp filters, compiled from seccomp/room.json by build.rs
//! (one comment per syscall there; docs/SYSCALL-JUSTIFICATIONS.md lists them too):
//! `room`, an allow list answering every other syscall (unknown ones included) with
//! ENOSYS, then `room_deny`, which answers what a room must never do with EPERM: module
//! loading, kexec, bpf, perf_event_open, userfaultfd, keyrings, open_by_handle_at, every
//! mount call old and new, chroot and pivot_root, setns, unshare and namespace flags of
//! clone, io_uring, the host clock, reboot, TIOCSTI, a new core limit (RLIMIT_CORE),
//! socket families other than Unix and IP (so `ip` says EPERM, not ENOSYS).
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
