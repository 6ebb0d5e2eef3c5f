// SPDX-License-Identifier: GPL-3.0-or-later
//! Compiles the namespace room's seccomp filters (seccomp/room.json, seccompiler's JSON
//! frontend) into BPF at build time, like anchor-vmm's: each program is stored in OUT_DIR
//! as raw `struct sock_filter` records (8 bytes, little-endian: code u16, jt u8, jf u8,
//! k u32) and included into the binary with include_bytes!, after anchor-bpf has laid out
//! its syscall dispatch as a search tree (same answers, checked here).
//!
//! seccomp/passt.json's `passt_deny` is anchor-jail's filter under an outbound room's
//! passt (see `net::PASST_DENY_BPF`); seccomp/relay.json's `relay` is the allow list of a
//! namespace room's network relay (see `relay::RELAY_BPF`).
//!
//! The room's two filters, installed in this order: `room` allows what a Linux userland needs and
//! answers everything else (unknown syscalls included) with ENOSYS, so C libraries fall
//! back (clone3 -> clone); `room_deny` answers the calls a room must never make with
//! EPERM. The later filter's answer wins between two errnos.

use std::path::PathBuf;

/// Syscalls of the (x86_64-written) filters that do not exist on aarch64, where the same
/// work goes through the *at / newer calls the filter already allows. Only these are
/// dropped for aarch64: any other name the target does not know fails the build.
const NOT_ON_AARCH64: &[&str] = &[
    "_sysctl",
    "access",
    "alarm",
    "arch_prctl",
    "chmod",
    "chown",
    "creat",
    "create_module",
    "dup2",
    "epoll_create",
    "epoll_wait",
    "eventfd",
    "fork",
    "futimesat",
    "get_kernel_syms",
    "getdents",
    "getpgrp",
    "inotify_init",
    "ioperm",
    "iopl",
    "lchown",
    "link",
    "lstat",
    "mkdir",
    "mknod",
    "modify_ldt",
    "open",
    "pause",
    "pipe",
    "poll",
    "query_module",
    "readlink",
    "rename",
    "rmdir",
    "select",
    "signalfd",
    "stat",
    "symlink",
    "sysfs",
    "time",
    "unlink",
    "uselib",
    "ustat",
    "utime",
    "utimes",
    "vfork",
];

fn filter_json(text: &[u8], arch: &str) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mut v: serde_json::Value = serde_json::from_slice(text)?;
    if arch == "aarch64" {
        for kind in ["room", "room_deny"] {
            let rules = v
                .get_mut(kind)
                .and_then(|k| k.get_mut("filter"))
                .and_then(serde_json::Value::as_array_mut)
                .ok_or_else(|| format!("seccomp/room.json: no {kind}.filter array"))?;
            rules.retain(|r| {
                let name = r.get("syscall").and_then(serde_json::Value::as_str);
                !name.is_some_and(|n| NOT_ON_AARCH64.contains(&n))
            });
        }
    }
    Ok(v)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH")?;
    let target = seccompiler::TargetArch::try_from(arch.as_str())?;
    let src = "seccomp/room.json";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=build.rs");
    let json = filter_json(&std::fs::read(src)?, &arch)?;
    let map = seccompiler::compile_from_json(serde_json::to_vec(&json)?.as_slice(), target)?;
    // passt's: not an allow list, stacked under the one passt installs itself.
    let passt_src = "seccomp/passt.json";
    println!("cargo:rerun-if-changed={passt_src}");
    let passt = seccompiler::compile_from_json(std::fs::read(passt_src)?.as_slice(), target)?;
    // The relay's: an allow list, with no name that differs between the architectures.
    let relay_src = "seccomp/relay.json";
    println!("cargo:rerun-if-changed={relay_src}");
    let relay = seccompiler::compile_from_json(std::fs::read(relay_src)?.as_slice(), target)?;
    for (kind, src, map) in [
        ("room", src, &map),
        ("room_deny", src, &map),
        ("passt_deny", passt_src, &passt),
        ("relay", relay_src, &relay),
    ] {
        let prog = map
            .get(kind)
            .ok_or_else(|| format!("{src} has no filter named {kind}"))?;
        // Same answers, a search tree instead of a chain (anchor-bpf; the build fails
        // if the laid-out program answers any checked input differently).
        let insns = prog.iter().map(|i| (i.code, i.jt, i.jf, i.k));
        std::fs::write(
            out.join(format!("{kind}.bpf")),
            anchor_bpf::laid_out(&arch, insns)?,
        )?;
    }
    Ok(())
}
