// SPDX-License-Identifier: GPL-3.0-or-later
//! Emits the laid-out program: the architecture check, a balanced search over syscall
//! number ranges, and the argument checks copied from the original.

use std::collections::BTreeMap;

use crate::insn::{self, Insn, CLASS_MASK, JA, JGE_K, LD_W_ABS, OFF_ARCH, OFF_NR, RET_K};
use crate::partial::{self, Arch, Outcome};
use crate::{check, Error, MAX_INSNS};

/// `prog` (a seccomp program for the architecture whose audit value is `arch`) with its
/// syscall dispatch laid out as a search tree; checked against `prog` with
/// [`check::equivalent`] before it is returned. `prog` itself when the layout is not
/// shorter (a filter of a call or two).
pub fn relayout(prog: &[Insn], arch: u32) -> Result<Vec<Insn>, Error> {
    let Outcome::Ret(foreign) = partial::outcome(prog, None, Arch::IsNot(arch))? else {
        return Err(Error::Shape {
            pc: 0,
            why: "reads arguments for a foreign architecture",
        });
    };
    let ranges = ranges(prog, arch)?;
    let residual = Residual::new(prog, &ranges)?;

    let mut out = vec![
        Insn::stmt(LD_W_ABS, OFF_ARCH),
        Insn::jump(insn::JEQ_K, arch, 1, 0),
        Insn::stmt(RET_K, foreign),
        Insn::stmt(LD_W_ABS, OFF_NR),
    ];
    let tree_end = out.len() + tree_len(&ranges);
    emit_tree(&ranges, tree_end, &residual, &mut out)?;
    if out.len() != tree_end {
        return Err(Error::Shape {
            pc: out.len(),
            why: "the search tree is not the length its jumps assume",
        });
    }
    out.extend(residual.code()?);
    if out.len() > MAX_INSNS {
        return Err(Error::TooLong(out.len()));
    }
    // The kernel loads only programs whose last instruction is a return.
    if out.last().is_none_or(|i| i.code & CLASS_MASK != insn::RET) {
        return Err(Error::Shape {
            pc: out.len(),
            why: "the laid-out program does not end in a return",
        });
    }
    check::equivalent(prog, &out, arch)?;
    // A filter of a call or two can come out longer than seccompiler's chain; the chain
    // is then the better program (and trivially answers alike).
    if out.len() >= prog.len() {
        return Ok(prog.to_vec());
    }
    Ok(out)
}

/// (first number, outcome) of each maximal run of numbers with one outcome.
fn ranges(prog: &[Insn], arch: u32) -> Result<Vec<(u32, Outcome)>, Error> {
    let mut out: Vec<(u32, Outcome)> = Vec::new();
    for start in partial::range_starts(prog) {
        let o = partial::outcome(prog, Some(start), Arch::Is(arch))?;
        if out.last().map(|&(_, last)| last) != Some(o) {
            out.push((start, o));
        }
    }
    Ok(out)
}

/// Instructions of the subtree over `r`: a leaf is one (a return, or a jump to the
/// argument checks); an inner node one comparison, plus one jump when its left subtree
/// is too long for the comparison's 8-bit offset.
fn tree_len(r: &[(u32, Outcome)]) -> usize {
    if r.len() <= 1 {
        return 1;
    }
    let (left, right) = r.split_at(r.len() / 2);
    let l = tree_len(left);
    let node = if l > usize::from(u8::MAX) { 2 } else { 1 };
    node + l + tree_len(right)
}

/// Emits the subtree over `r` at the end of `out`; `residual_at` is where the copied
/// argument checks will start.
fn emit_tree(
    r: &[(u32, Outcome)],
    residual_at: usize,
    residual: &Residual,
    out: &mut Vec<Insn>,
) -> Result<(), Error> {
    match r {
        [] => Err(Error::Shape {
            pc: 0,
            why: "no syscall number range",
        }),
        [(_, Outcome::Ret(k))] => {
            out.push(Insn::stmt(RET_K, *k));
            Ok(())
        }
        [(_, Outcome::Residual(pc))] => {
            let to = residual_at + residual.position(*pc)?;
            let d = forward(out.len(), to)?;
            out.push(Insn::stmt(
                JA,
                u32::try_from(d).map_err(|_| Error::TooLong(d))?,
            ));
            Ok(())
        }
        _ => {
            let (left, right) = r.split_at(r.len() / 2);
            let split = right.first().map_or(0, |&(start, _)| start);
            let l = tree_len(left);
            match u8::try_from(l) {
                // A >= split: over the left subtree to the right one; else into the left.
                Ok(jt) => out.push(Insn::jump(JGE_K, split, jt, 0)),
                Err(_) => {
                    out.push(Insn::jump(JGE_K, split, 0, 1));
                    out.push(Insn::stmt(
                        JA,
                        u32::try_from(l).map_err(|_| Error::TooLong(l))?,
                    ));
                }
            }
            emit_tree(left, residual_at, residual, out)?;
            emit_tree(right, residual_at, residual, out)
        }
    }
}

/// The offset of a jump at `from` to `to` (the instruction after `from` is offset 0).
fn forward(from: usize, to: usize) -> Result<usize, Error> {
    to.checked_sub(from + 1).ok_or(Error::Shape {
        pc: from,
        why: "a jump backwards",
    })
}

/// The original's instructions reachable from the argument loads the ranges end at, in
/// their original order with their jumps shortened to match.
struct Residual<'p> {
    prog: &'p [Insn],
    /// Original pc -> position in the copy.
    kept: BTreeMap<usize, usize>,
}

impl<'p> Residual<'p> {
    fn new(prog: &'p [Insn], ranges: &[(u32, Outcome)]) -> Result<Residual<'p>, Error> {
        let mut todo: Vec<usize> = ranges
            .iter()
            .filter_map(|&(_, o)| match o {
                Outcome::Residual(pc) => Some(pc),
                Outcome::Ret(_) => None,
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(pc) = todo.pop() {
            if !seen.insert(pc) {
                continue;
            }
            let i = prog.get(pc).ok_or(Error::OutOfProgram { pc })?;
            let next = insn::successors(pc, i).ok_or(Error::Unsupported { pc, code: i.code })?;
            todo.extend(next);
        }
        let kept = seen
            .into_iter()
            .enumerate()
            .map(|(pos, pc)| (pc, pos))
            .collect();
        Ok(Residual { prog, kept })
    }

    fn position(&self, pc: usize) -> Result<usize, Error> {
        self.kept
            .get(&pc)
            .copied()
            .ok_or(Error::OutOfProgram { pc })
    }

    /// The copy. Every jump target of a kept instruction is kept (it is reachable), and
    /// dropping instructions only shortens forward distances, so offsets still fit.
    fn code(&self) -> Result<Vec<Insn>, Error> {
        let mut out = Vec::with_capacity(self.kept.len());
        for (&pc, &pos) in &self.kept {
            let mut i = *self.prog.get(pc).ok_or(Error::OutOfProgram { pc })?;
            let rel = |target: usize| forward(pos, self.position(target)?);
            if i.code == JA {
                let d = rel(pc + 1 + i.k as usize)?;
                i.k = u32::try_from(d).map_err(|_| Error::TooLong(d))?;
            } else if i.code & CLASS_MASK == insn::JMP {
                let short = |off: u8| -> Result<u8, Error> {
                    let d = rel(pc + 1 + usize::from(off))?;
                    u8::try_from(d).map_err(|_| Error::OutOfProgram { pc })
                };
                i.jt = short(i.jt)?;
                i.jf = short(i.jf)?;
            }
            out.push(i);
        }
        Ok(out)
    }
}
