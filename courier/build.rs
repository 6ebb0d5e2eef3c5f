// SPDX-License-Identifier: GPL-3.0-or-later
//! Compiles the courier's seccomp filter (seccomp/courier.json, seccompiler's JSON
//! frontend) into BPF at build time, stored in OUT_DIR as raw `struct sock_filter`
//! records (the kernel's layout) for include_bytes!, as anchor-vmm does, its syscall
//! dispatch laid out as a search tree by anchor-bpf.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH")?;
    let target = seccompiler::TargetArch::try_from(arch.as_str())?;
    let src = "seccomp/courier.json";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=build.rs");
    let json = std::fs::read(src)?;
    let map = seccompiler::compile_from_json(json.as_slice(), target)?;
    let prog = map
        .get("courier")
        .ok_or("seccomp/courier.json has no filter named courier")?;
    // Same answers, a search tree instead of a chain (anchor-bpf; the build fails if the
    // laid-out program answers any checked input differently).
    let insns = prog.iter().map(|i| (i.code, i.jt, i.jf, i.k));
    std::fs::write(out.join("courier.bpf"), anchor_bpf::laid_out(&arch, insns)?)?;
    Ok(())
}
