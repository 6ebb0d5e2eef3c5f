// SPDX-License-Identifier: GPL-3.0-or-later
//! Runs two programs on the same inputs and reports the first that they answer
//! differently: every syscall number either program tells apart (each compared constant,
//! one below and one above), on the target and on foreign architecture words; and, for
//! every number at which either reads arguments, the paths through the argument checks:
//! starting from all-zero and all-ones arguments, every comparison of an argument word
//! that a run makes is flipped in turn (the word set to the constant, one below, one
//! above) in a new input that keeps the rest, so rules that need several arguments to
//! match at once are reached too (up to [`PATHS`] inputs per number).
//!
//! Beyond what this explores, the answer rests on how the layout is built: the argument
//! checks are the original's instructions, copied in their order with only their jump
//! distances shortened, entered with the same data.

use std::collections::HashSet;

use crate::insn::{jump_constants, Insn};
use crate::interp::{run_noting, Data};
use crate::Error;

/// Architecture words tried besides the target and its neighbour: none, i386, x86_64,
/// aarch64.
const FOREIGN: [u32; 4] = [0, 0x4000_0003, 0xc000_003e, 0xc000_00b7];

/// Most inputs tried per syscall number and architecture word whose answer depends on
/// arguments.
pub const PATHS: usize = 512;

/// Checks that `relaid` answers like `original` (a program for `arch`).
pub fn equivalent(original: &[Insn], relaid: &[Insn], arch: u32) -> Result<(), Error> {
    let ks: Vec<u32> = jump_constants(original)
        .chain(jump_constants(relaid))
        .collect();
    let mut numbers: Vec<u32> = ks
        .iter()
        .flat_map(|&k| [k.wrapping_sub(1), k, k.wrapping_add(1)])
        .chain([0, 0x4000_0000, 0x4000_0001, u32::MAX])
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let mut arches = vec![arch, arch ^ 1];
    arches.extend(FOREIGN);

    // Runs both; the same answer or the difference. Notes compared argument constants.
    let same = |d: &Data, compared: &mut Vec<(u32, u32)>| -> Result<bool, Error> {
        let a = run_noting(original, d, compared)?;
        let b = run_noting(relaid, d, compared)?;
        if a.ret != b.ret {
            return Err(Error::Differs {
                nr: d.nr,
                arch: d.arch,
                args: d.args,
                original: a.ret,
                relaid: b.ret,
            });
        }
        Ok(a.read_args || b.read_args)
    };
    for &nr in &numbers {
        for &a in &arches {
            let base = Data {
                nr,
                arch: a,
                ip: 0,
                args: [0; 6],
            };
            let all_ones = Data {
                ip: u64::MAX,
                args: [u64::MAX; 6],
                ..base
            };
            let mut todo = vec![base, all_ones];
            let mut seen: HashSet<Data> = todo.iter().copied().collect();
            while let Some(d) = todo.pop() {
                let mut compared = Vec::new();
                if !same(&d, &mut compared)? {
                    continue;
                }
                for (offset, k) in compared {
                    for v in [k, k.wrapping_sub(1), k.wrapping_add(1)] {
                        let next = d.with_word(offset, v);
                        if seen.len() < PATHS && seen.insert(next) {
                            todo.push(next);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
