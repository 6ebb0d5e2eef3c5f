// SPDX-License-Identifier: GPL-3.0-or-later
//! Evaluates a program with the syscall number and the architecture word known and the
//! rest of `struct seccomp_data` unknown, up to the first instruction that loads
//! something unknown (the instruction pointer or an argument).

use crate::insn::{self, Insn, CLASS_MASK, OFF_ARCH, OFF_NR};
use crate::Error;

/// Where a program ends for one syscall number and architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// It returns this action whatever the arguments.
    Ret(u32),
    /// It reaches this instruction, a load of the instruction pointer or an argument,
    /// and what follows depends on them. A is overwritten there, so the state carried
    /// in is nothing but the data.
    Residual(usize),
}

/// The architecture word the evaluation assumes.
#[derive(Clone, Copy, Debug)]
pub enum Arch {
    /// Equal to this value.
    Is(u32),
    /// Different from this value (and otherwise unknown).
    IsNot(u32),
}

/// What the accumulator holds.
#[derive(Clone, Copy, Debug)]
enum Acc {
    Known(u32),
    /// The syscall number (given or not).
    Nr,
    /// The architecture word, when only known to differ from a value.
    ArchNot(u32),
}

/// Evaluates `prog` for syscall number `nr` (None: the number must not matter) and
/// architecture `arch`.
pub fn outcome(prog: &[Insn], nr: Option<u32>, arch: Arch) -> Result<Outcome, Error> {
    let mut a = Acc::Known(0);
    let mut pc = 0usize;
    loop {
        let i = prog.get(pc).ok_or(Error::OutOfProgram { pc })?;
        let unsupported = Error::Unsupported { pc, code: i.code };
        let number = |why| match nr {
            Some(n) => Ok(n),
            None => Err(Error::Shape { pc, why }),
        };
        match i.code & CLASS_MASK {
            insn::RET => {
                return match (i.code, a) {
                    (insn::RET_K, _) => Ok(Outcome::Ret(i.k)),
                    (insn::RET_A, Acc::Known(v)) => Ok(Outcome::Ret(v)),
                    (insn::RET_A, _) => Err(Error::Shape {
                        pc,
                        why: "returns the syscall number or architecture as the action",
                    }),
                    _ => Err(unsupported),
                };
            }
            insn::LD if i.code == insn::LD_IMM => a = Acc::Known(i.k),
            insn::LD if i.code == insn::LD_W_ABS => match i.k {
                OFF_NR => a = Acc::Nr,
                OFF_ARCH => {
                    a = match arch {
                        Arch::Is(v) => Acc::Known(v),
                        Arch::IsNot(v) => Acc::ArchNot(v),
                    }
                }
                8..=60 if i.k % 4 == 0 => return Ok(Outcome::Residual(pc)),
                _ => return Err(Error::BadLoad { pc, offset: i.k }),
            },
            insn::ALU => match a {
                Acc::Known(v) => a = Acc::Known(insn::alu(i.code, v, i.k).ok_or(unsupported)?),
                _ => {
                    return Err(Error::Shape {
                        pc,
                        why: "computes on the syscall number or architecture",
                    })
                }
            },
            insn::JMP if i.code == insn::JA => {
                pc += 1 + i.k as usize;
                continue;
            }
            insn::JMP => {
                let t = match a {
                    Acc::Known(v) => insn::taken(i.code, v, i.k).ok_or(unsupported)?,
                    Acc::Nr if i.code == insn::JSET_K => {
                        return Err(Error::Shape {
                            pc,
                            why: "tests bits of the syscall number",
                        })
                    }
                    Acc::Nr => {
                        let n = number("compares the syscall number before the architecture")?;
                        insn::taken(i.code, n, i.k).ok_or(unsupported)?
                    }
                    Acc::ArchNot(v) if i.code == insn::JEQ_K && i.k == v => false,
                    Acc::ArchNot(_) => {
                        return Err(Error::Shape {
                            pc,
                            why: "compares the architecture other than with the target",
                        })
                    }
                };
                pc += 1 + usize::from(if t { i.jt } else { i.jf });
                continue;
            }
            _ => return Err(unsupported),
        }
        pc += 1;
    }
}

/// The first syscall number of every range of numbers `prog` cannot tell apart: it only
/// compares the number with constants (JEQ, JGT, JGE; [`outcome`] refuses anything
/// else), so the answer can change only at a constant k of a comparison or at k + 1.
/// Sorted, starting with 0.
pub fn range_starts(prog: &[Insn]) -> Vec<u32> {
    let mut starts = vec![0u32];
    for k in insn::jump_constants(prog) {
        starts.push(k);
        if let Some(next) = k.checked_add(1) {
            starts.push(next);
        }
    }
    starts.sort_unstable();
    starts.dedup();
    starts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::*;

    const ARCH: u32 = 0xc000_003e;

    /// seccompiler's shape: arch check, then a chain; 5 allowed, 9 with arg 0 == 1.
    fn chain() -> Vec<Insn> {
        vec![
            Insn::stmt(LD_W_ABS, OFF_ARCH),
            Insn::jump(JEQ_K, ARCH, 1, 0),
            Insn::stmt(RET_K, 0),
            Insn::stmt(LD_W_ABS, OFF_NR),
            Insn::jump(JEQ_K, 5, 0, 1),
            Insn::stmt(RET_K, 0x7fff_0000),
            Insn::jump(JEQ_K, 9, 0, 3),
            Insn::stmt(LD_W_ABS, 16),
            Insn::jump(JEQ_K, 1, 0, 1),
            Insn::stmt(RET_K, 0x7fff_0000),
            Insn::stmt(RET_K, 0x0005_0026),
        ]
    }

    #[test]
    fn each_number_ends_in_an_answer_or_at_an_argument_load() {
        let p = chain();
        let at = |nr| outcome(&p, Some(nr), Arch::Is(ARCH)).unwrap();
        assert_eq!(at(5), Outcome::Ret(0x7fff_0000));
        assert_eq!(at(9), Outcome::Residual(7));
        assert_eq!(at(4), Outcome::Ret(0x0005_0026));
        assert_eq!(at(u32::MAX), Outcome::Ret(0x0005_0026));
        assert_eq!(
            outcome(&p, None, Arch::IsNot(ARCH)).unwrap(),
            Outcome::Ret(0)
        );
    }

    #[test]
    fn ranges_split_at_every_compared_constant() {
        let starts = range_starts(&chain());
        for k in [0, 1, 2, 5, 6, 9, 10, ARCH, ARCH + 1] {
            assert!(starts.contains(&k), "{k}");
        }
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn refuses_what_ranges_cannot_capture() {
        let bits = [
            Insn::stmt(LD_W_ABS, 0),
            Insn::jump(JSET_K, 1, 0, 1),
            Insn::stmt(RET_K, 1),
            Insn::stmt(RET_K, 2),
        ];
        assert!(matches!(
            outcome(&bits, Some(3), Arch::Is(ARCH)),
            Err(Error::Shape { .. })
        ));
        let math = [
            Insn::stmt(LD_W_ABS, 0),
            Insn::stmt(ALU_AND_K, 1),
            Insn::stmt(RET_A, 0),
        ];
        assert!(matches!(
            outcome(&math, Some(3), Arch::Is(ARCH)),
            Err(Error::Shape { .. })
        ));
        // The number before the architecture: fine for a known number, refused when the
        // answer for a foreign architecture would depend on it.
        let early = [
            Insn::stmt(LD_W_ABS, 0),
            Insn::jump(JEQ_K, 1, 0, 1),
            Insn::stmt(RET_K, 1),
            Insn::stmt(RET_K, 2),
        ];
        assert!(outcome(&early, Some(1), Arch::Is(ARCH)).is_ok());
        assert!(matches!(
            outcome(&early, None, Arch::IsNot(ARCH)),
            Err(Error::Shape { .. })
        ));
    }
}
