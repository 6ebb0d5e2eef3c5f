// SPDX-License-Identifier: GPL-3.0-or-later
//! Compiles the per-thread seccomp filters (seccomp/*.json, seccompiler's
//! JSON frontend) into BPF at build time. Each program is stored in OUT_DIR as
//! raw `struct sock_filter` records (8 bytes, little-endian: code u16, jt u8,
//! jf u8, k u32) -- the kernel's own layout, so the runtime needs no decoder
//! crate -- and included into the binary with include_bytes!.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH")?;
    let target = seccompiler::TargetArch::try_from(arch.as_str())?;
    for kind in ["vmm", "vcpu"] {
        let src = format!("seccomp/{kind}.json");
        println!("cargo:rerun-if-changed={src}");
        let map = seccompiler::compile_from_json(File::open(&src)?, target)?;
        let prog = map
            .get(kind)
            .ok_or_else(|| format!("{src} has no filter named {kind}"))?;
        let mut f = File::create(out.join(format!("{kind}.bpf")))?;
        for ins in prog {
            f.write_all(&ins.code.to_le_bytes())?;
            f.write_all(&[ins.jt, ins.jf])?;
            f.write_all(&ins.k.to_le_bytes())?;
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}
