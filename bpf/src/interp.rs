// SPDX-License-Identifier: GPL-3.0-or-later
//! A concrete interpreter of the instructions this crate supports, with the kernel's
//! semantics: A starts at 0, loads read `struct seccomp_data` in the target's (little)
//! endianness, jumps go forward only.

use crate::insn::{self, Insn, CLASS_MASK, DATA_LEN, OFF_ARCH, OFF_NR};
use crate::Error;

/// The input of a seccomp program: `struct seccomp_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    /// `self` with the 32-bit word at `offset` (of the instruction pointer or an argument)
    /// set to `v`; unchanged for any other offset.
    pub fn with_word(mut self, offset: u32, v: u32) -> Data {
        let slot = match offset {
            8 | 12 => Some(&mut self.ip),
            16..=60 => self.args.get_mut(((offset - 16) / 8) as usize),
            _ => None,
        };
        if let Some(x) = slot {
            let shift = if offset % 8 == 0 { 0 } else { 32 };
            *x = (*x & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
        }
        self
    }

    /// The 32-bit word at `offset` (4-byte aligned, inside the struct), little-endian.
    pub fn word(&self, offset: u32) -> Option<u32> {
        if offset % 4 != 0 || offset >= DATA_LEN {
            return None;
        }
        let half = |v: u64| {
            if offset % 8 == 0 {
                v as u32
            } else {
                (v >> 32) as u32
            }
        };
        Some(match offset {
            OFF_NR => self.nr,
            OFF_ARCH => self.arch,
            8 | 12 => half(self.ip),
            _ => half(*self.args.get(((offset - 16) / 8) as usize)?),
        })
    }
}

/// What one run of a program did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The returned action.
    pub ret: u32,
    /// Whether it read the instruction pointer or an argument.
    pub read_args: bool,
}

/// Runs `prog` on `data`.
pub fn run(prog: &[Insn], data: &Data) -> Result<Run, Error> {
    run_noting(prog, data, &mut Vec::new())
}

/// Runs `prog` on `data`, adding to `compared` (offset, constant) for every conditional
/// jump made while A held (a value computed from) the word of the instruction pointer or
/// of an argument at that offset of `struct seccomp_data`.
pub fn run_noting(
    prog: &[Insn],
    data: &Data,
    compared: &mut Vec<(u32, u32)>,
) -> Result<Run, Error> {
    let mut a: u32 = 0;
    let mut from_args: Option<u32> = None;
    let mut pc = 0usize;
    let mut read_args = false;
    loop {
        let i = prog.get(pc).ok_or(Error::OutOfProgram { pc })?;
        let unsupported = Error::Unsupported { pc, code: i.code };
        match i.code & CLASS_MASK {
            insn::RET => {
                let ret = match i.code {
                    insn::RET_K => i.k,
                    insn::RET_A => a,
                    _ => return Err(unsupported),
                };
                return Ok(Run { ret, read_args });
            }
            insn::LD => {
                a = match i.code {
                    insn::LD_W_ABS => {
                        from_args = (i.k >= 8).then_some(i.k);
                        read_args |= from_args.is_some();
                        data.word(i.k).ok_or(Error::BadLoad { pc, offset: i.k })?
                    }
                    insn::LD_IMM => {
                        from_args = None;
                        i.k
                    }
                    _ => return Err(unsupported),
                };
                pc += 1;
            }
            insn::ALU => {
                a = insn::alu(i.code, a, i.k).ok_or(unsupported)?;
                pc += 1;
            }
            insn::JMP if i.code == insn::JA => pc += 1 + i.k as usize,
            insn::JMP => {
                let t = insn::taken(i.code, a, i.k).ok_or(unsupported)?;
                if let Some(offset) = from_args {
                    compared.push((offset, i.k));
                }
                pc += 1 + usize::from(if t { i.jt } else { i.jf });
            }
            _ => return Err(unsupported),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::*;

    fn data(nr: u32, args: [u64; 6]) -> Data {
        Data {
            nr,
            arch: 7,
            ip: 0x1122_3344_5566_7788,
            args,
        }
    }

    #[test]
    fn words_are_little_endian_halves() {
        let d = data(
            3,
            [0xaaaa_bbbb_cccc_dddd, 0, 0, 0, 0, 0xffff_0000_0000_0001],
        );
        assert_eq!(d.word(0), Some(3));
        assert_eq!(d.word(4), Some(7));
        assert_eq!(d.word(8), Some(0x5566_7788));
        assert_eq!(d.word(12), Some(0x1122_3344));
        assert_eq!(d.word(16), Some(0xcccc_dddd));
        assert_eq!(d.word(20), Some(0xaaaa_bbbb));
        assert_eq!(d.word(56), Some(1));
        assert_eq!(d.word(60), Some(0xffff_0000));
        assert_eq!(d.word(64), None);
        assert_eq!(d.word(2), None);
        let e = d.with_word(20, 7).with_word(8, 9);
        assert_eq!(e.args[0], 0x0000_0007_cccc_dddd);
        assert_eq!(e.ip, 0x1122_3344_0000_0009);
        assert_eq!(d.with_word(4, 1), d);
    }

    #[test]
    fn runs_loads_alu_jumps_and_returns() {
        let prog = [
            Insn::stmt(LD_W_ABS, 16),
            Insn::stmt(ALU_AND_K, 0xf0),
            Insn::jump(JEQ_K, 0x30, 0, 1),
            Insn::stmt(RET_K, 1),
            Insn::jump(JSET_K, 0x80, 1, 0),
            Insn::stmt(RET_K, 2),
            Insn::stmt(RET_A, 0),
        ];
        let r = |x| run(&prog, &data(0, [x, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(r(0x3f).ret, 1);
        assert_eq!(r(0x10).ret, 2);
        assert_eq!(r(0x81).ret, 0x80);
        assert!(r(0).read_args);
    }

    #[test]
    fn refuses_what_it_does_not_model() {
        let d = data(0, [0; 6]);
        // LDX (class 0x01), a jump past the end, a load past the struct.
        assert!(matches!(
            run(&[Insn::stmt(0x01, 0)], &d),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            run(&[Insn::stmt(JA, 5)], &d),
            Err(Error::OutOfProgram { .. })
        ));
        assert!(matches!(
            run(&[Insn::stmt(LD_W_ABS, 64)], &d),
            Err(Error::BadLoad { .. })
        ));
        assert!(matches!(
            run(&[Insn::stmt(ALU_DIV_K, 0)], &d),
            Err(Error::Unsupported { .. })
        ));
    }
}
