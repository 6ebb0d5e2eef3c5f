// SPDX-License-Identifier: GPL-3.0-or-later
//! Compiles the per-thread seccomp filters (seccomp/*.json, seccompiler's
//! JSON frontend) into BPF at build time. Each program is stored in OUT_DIR as
//! raw `struct sock_filter` records (8 bytes, little-endian: code u16, jt u8,
//! jf u8, k u32) -- the kernel's own layout, so the runtime needs no decoder
//! crate -- and included into the binary with include_bytes!, after anchor-bpf has
//! laid out its syscall dispatch as a search tree (same answers, checked here).

use std::path::PathBuf;

/// Syscalls in the (x86_64-written) filters that do not exist on aarch64, where
/// the same call goes through its newer variant, already allowed in the filter
/// (epoll_wait -> epoll_pwait). Only these are dropped: any other name unknown
/// to the target still fails the build.
const NOT_ON_AARCH64: &[&str] = &["epoll_wait"];

/// The filter JSON for `arch`: as written, less the calls the arch lacks.
fn filter_json(src: &str, kind: &str, arch: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let text = std::fs::read(src)?;
    if arch != "aarch64" {
        return Ok(text);
    }
    let mut v: serde_json::Value = serde_json::from_slice(&text)?;
    let rules = v
        .get_mut(kind)
        .and_then(|k| k.get_mut("filter"))
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| format!("{src}: no {kind}.filter array"))?;
    rules.retain(|r| {
        let name = r.get("syscall").and_then(serde_json::Value::as_str);
        !name.is_some_and(|n| NOT_ON_AARCH64.contains(&n))
    });
    Ok(serde_json::to_vec(&v)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH")?;
    let target = seccompiler::TargetArch::try_from(arch.as_str())?;
    for kind in ["vmm", "vcpu"] {
        let src = format!("seccomp/{kind}.json");
        println!("cargo:rerun-if-changed={src}");
        let json = filter_json(&src, kind, &arch)?;
        let map = seccompiler::compile_from_json(json.as_slice(), target)?;
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
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}
