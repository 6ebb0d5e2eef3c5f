// SPDX-License-Identifier: GPL-3.0-or-later
//! What the courier gives up before it touches a byte of the item: it is started by bay0
//! as root, as PID 1 of a new PID namespace, holding only the two transfer connections
//! (stdin, stdout) and its result pipe (stderr). With anchor-jail's code it enters fresh
//! mount, IPC, UTS and network namespaces, pivots into an empty read-only root, sets
//! rlimits (no new files, few descriptors, bounded memory), drops every capability and
//! becomes [`COURIER_UID`] with no_new_privs; then it installs its seccomp filter
//! (seccomp/courier.json: reads and writes on what it holds, memory, exit; anything else
//! kills it).

use std::ffi::CString;
use std::path::Path;

use anchor_jail::args::Config;
use anchor_jail::cgroup::Limits;
use anchor_jail::error::Error;
use anchor_jail::privs::Rlimits;
use seccompiler::{sock_filter, BpfProgram};

/// The courier's uid and gid: used by nothing else (rooms run as 64000 + slot).
pub const COURIER_UID: u32 = 63_999;
/// The directory the jail's empty root is built in (a tmpfs mounted in the courier's own
/// mount namespace; the host sees an empty directory).
pub const RUN_DIR: &str = "/run/anchor/courier";
/// Largest address space: the copy buffer, the frames, the allocator.
pub const ADDRESS_SPACE: u64 = 256 << 20;

static BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/courier.bpf"));

/// Enters the jail (see the module documentation). Run as root, before anything else.
pub fn jail(run_dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(run_dir).map_err(|e| Error::Path {
        op: "create",
        path: run_dir.display().to_string(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    let cfg = Config {
        backend: anchor_jail::args::Backend::Vmm,
        name: "courier".into(),
        uid: COURIER_UID,
        gid: COURIER_UID,
        run_dir: run_dir.to_path_buf(),
        limits: Limits {
            memory_bytes: ADDRESS_SPACE,
            pids: 1,
            cpu_weight: 100,
            cpus: None,
            oom_group: false,
        },
        rlimits: Rlimits {
            nofile: 8,
            nproc: 1,
            fsize: 0,
            memlock: 0,
        },
        net: None,
        net_uid: None,
        binds: Vec::new(),
        devs: Vec::new(),
        image: None,
        volume: None,
        program: CString::default(),
        argv: Vec::new(),
    };
    anchor_jail::sys::unshare(
        libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNET,
    )?;
    anchor_jail::root::build_and_enter(&cfg)?;
    anchor_jail::privs::limit(&cfg.rlimits)?;
    anchor_jail::sys::setrlimit(libc::RLIMIT_AS, ADDRESS_SPACE)?;
    anchor_jail::privs::drop_to(cfg.uid, cfg.gid)
}

/// The compiled filter.
pub fn program() -> Option<BpfProgram> {
    if BPF.is_empty() || BPF.len() % 8 != 0 {
        return None;
    }
    Some(
        BPF.chunks_exact(8)
            .map(|c| {
                let b = |i: usize| c.get(i).copied().unwrap_or(0);
                sock_filter {
                    code: u16::from_le_bytes([b(0), b(1)]),
                    jt: b(2),
                    jf: b(3),
                    k: u32::from_le_bytes([b(4), b(5), b(6), b(7)]),
                }
            })
            .collect(),
    )
}

/// Installs the filter on the (only) thread.
pub fn seccomp() -> Result<(), String> {
    let prog = program().ok_or("the embedded seccomp filter is corrupt")?;
    seccompiler::apply_filter(&prog).map_err(|e| format!("installing the seccomp filter: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_allowed_syscall_is_justified_in_the_docs() {
        let json = include_str!("../seccomp/courier.json");
        let doc = include_str!("../../docs/SYSCALL-JUSTIFICATIONS.md");
        let section = doc.split("## courier").nth(1).expect("a courier section");
        for line in json.lines().filter(|l| l.contains("\"syscall\"")) {
            let name = line.split('"').nth(3).unwrap();
            assert!(
                section.contains(&format!("| courier | {name} |")),
                "{name} is allowed but not justified in docs/SYSCALL-JUSTIFICATIONS.md"
            );
        }
    }
}
