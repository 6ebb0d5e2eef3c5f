// SPDX-License-Identifier: GPL-3.0-or-later
//! Our seccomp filters as seccompiler compiles them for x86_64 (what the build scripts of
//! anchor-vmm, the courier and anchor-jail lay out), for the tests and the bench.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use anchor_bpf::Insn;
use seccompiler::{BpfProgram, TargetArch};

/// seccompiler's program as anchor-bpf's instructions.
pub fn ours(p: &BpfProgram) -> Vec<Insn> {
    p.iter()
        .map(|i| Insn {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect()
}

/// Filter `kind` of the JSON `json`, compiled for x86_64.
pub fn compiled(json: &str, kind: &str) -> Vec<Insn> {
    let map = seccompiler::compile_from_json(json.as_bytes(), TargetArch::x86_64).unwrap();
    ours(map.get(kind).unwrap())
}

/// (name, program) of each of our five filters.
pub fn real() -> Vec<(&'static str, Vec<Insn>)> {
    let room = include_str!("../../../jail/seccomp/room.json");
    vec![
        ("room", compiled(room, "room")),
        ("room_deny", compiled(room, "room_deny")),
        (
            "vmm",
            compiled(include_str!("../../../vmm/seccomp/vmm.json"), "vmm"),
        ),
        (
            "vcpu",
            compiled(include_str!("../../../vmm/seccomp/vcpu.json"), "vcpu"),
        ),
        (
            "courier",
            compiled(
                include_str!("../../../courier/seccomp/courier.json"),
                "courier",
            ),
        ),
    ]
}
