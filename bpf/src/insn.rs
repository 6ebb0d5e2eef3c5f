// SPDX-License-Identifier: GPL-3.0-or-later
//! Classic BPF instructions (the kernel's `struct sock_filter`) and the opcodes a
//! seccomp program may use that this crate understands.

/// One instruction, field for field the kernel's `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    pub const fn stmt(code: u16, k: u32) -> Insn {
        Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
        Insn { code, jt, jf, k }
    }
}

/// The program as the kernel's records, little-endian (both our targets): code u16,
/// jt u8, jf u8, k u32 per instruction.
pub fn encode(prog: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for i in prog {
        out.extend_from_slice(&i.code.to_le_bytes());
        out.extend_from_slice(&[i.jt, i.jf]);
        out.extend_from_slice(&i.k.to_le_bytes());
    }
    out
}

// Instruction classes and fields (linux/bpf_common.h).
pub const CLASS_MASK: u16 = 0x07;
pub const LD: u16 = 0x00;
pub const ALU: u16 = 0x04;
pub const JMP: u16 = 0x05;
pub const RET: u16 = 0x06;

/// A = the 32-bit word of seccomp_data at offset k.
pub const LD_W_ABS: u16 = 0x20;
/// A = k.
pub const LD_IMM: u16 = 0x00;
/// pc += k.
pub const JA: u16 = JMP;
pub const JEQ_K: u16 = JMP | 0x10;
pub const JGT_K: u16 = JMP | 0x20;
pub const JGE_K: u16 = JMP | 0x30;
pub const JSET_K: u16 = JMP | 0x40;
pub const RET_K: u16 = RET;
pub const RET_A: u16 = RET | 0x10;

/// ALU operations with a constant operand (BPF_ALU | op | BPF_K), and NEG.
pub const ALU_ADD_K: u16 = ALU;
pub const ALU_SUB_K: u16 = ALU | 0x10;
pub const ALU_MUL_K: u16 = ALU | 0x20;
pub const ALU_DIV_K: u16 = ALU | 0x30;
pub const ALU_OR_K: u16 = ALU | 0x40;
pub const ALU_AND_K: u16 = ALU | 0x50;
pub const ALU_LSH_K: u16 = ALU | 0x60;
pub const ALU_RSH_K: u16 = ALU | 0x70;
pub const ALU_NEG: u16 = ALU | 0x80;
pub const ALU_MOD_K: u16 = ALU | 0x90;
pub const ALU_XOR_K: u16 = ALU | 0xa0;

/// Offsets in `struct seccomp_data`: nr (u32), arch (u32), instruction_pointer (u64),
/// args (6 x u64); 64 bytes in all.
pub const OFF_NR: u32 = 0;
pub const OFF_ARCH: u32 = 4;
pub const DATA_LEN: u32 = 64;

/// `A op k` for an ALU instruction, or None if `code` is not one this crate supports
/// (or divides by zero, which the kernel refuses to load).
pub fn alu(code: u16, a: u32, k: u32) -> Option<u32> {
    Some(match code {
        ALU_ADD_K => a.wrapping_add(k),
        ALU_SUB_K => a.wrapping_sub(k),
        ALU_MUL_K => a.wrapping_mul(k),
        ALU_DIV_K => a.checked_div(k)?,
        ALU_MOD_K => a.checked_rem(k)?,
        ALU_OR_K => a | k,
        ALU_AND_K => a & k,
        ALU_XOR_K => a ^ k,
        ALU_LSH_K => a.checked_shl(k)?,
        ALU_RSH_K => a.checked_shr(k)?,
        ALU_NEG => a.wrapping_neg(),
        _ => return None,
    })
}

/// Whether the conditional jump `code` is taken for `a` and `k` (None: not one).
pub fn taken(code: u16, a: u32, k: u32) -> Option<bool> {
    Some(match code {
        JEQ_K => a == k,
        JGT_K => a > k,
        JGE_K => a >= k,
        JSET_K => a & k != 0,
        _ => return None,
    })
}

/// The constant k of every conditional jump of `prog` (what the program compares with).
pub fn jump_constants(prog: &[Insn]) -> impl Iterator<Item = u32> + '_ {
    prog.iter()
        .filter(|i| i.code & CLASS_MASK == JMP && i.code != JA)
        .map(|i| i.k)
}

/// The pcs an instruction at `pc` can go to next (none for a return), or None for an
/// opcode this crate does not support. Targets may lie past the program: callers check.
pub fn successors(pc: usize, i: &Insn) -> Option<Vec<usize>> {
    let next = pc + 1;
    match i.code & CLASS_MASK {
        RET if i.code == RET_K || i.code == RET_A => Some(Vec::new()),
        JMP if i.code == JA => Some(vec![next + i.k as usize]),
        JMP if taken(i.code, 0, 0).is_some() => {
            Some(vec![next + usize::from(i.jt), next + usize::from(i.jf)])
        }
        LD if i.code == LD_W_ABS || i.code == LD_IMM => Some(vec![next]),
        ALU if alu(i.code, 0, 1).is_some() || alu(i.code, 0, 0).is_some() => Some(vec![next]),
        _ => None,
    }
}
