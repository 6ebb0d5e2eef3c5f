// SPDX-License-Identifier: GPL-3.0-or-later
//! Compiles the courier's seccomp filter (seccomp/courier.json, seccompiler's JSON
//! frontend) into BPF at build time, stored in OUT_DIR as raw `struct sock_filter`
//! records (the kernel's layout) for include_bytes!, as anchor-vmm does.

use std::io::Write;
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
    let mut f = std::fs::File::create(out.join("courier.bpf"))?;
    for ins in prog {
        f.write_all(&ins.code.to_le_bytes())?;
        f.write_all(&[ins.jt, ins.jf])?;
        f.write_all(&ins.k.to_le_bytes())?;
    }
    Ok(())
}
