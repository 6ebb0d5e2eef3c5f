//! Runs two programs on the same inputs and reports the first that they answer
//! differently: every syscall number either program tells apart (each compared constant,
//! one below and one above), on the target and on foreign architecture words; and, for
//! every number at which either reads arguments, each argument set in turn to each
//! constant an argument was compared with (and its neighbours and upper-half copies),
//! repeated while that finds new constants.
//!
//! The argument sweep changes one argument at a time, so a rule that needs two arguments
//! to match at once may not be reached by it. That part of the answer rests on how the
//! layout is built: the argument checks are the original's instructions, copied in their
//! order with only their jump distances shortened, entered with the same data.

use crate::insn::{Insn, CLASS_MASK, JA, JMP};
use crate::interp::{run_noting, Data};
use crate::Error;

/// Architecture words tried besides the target and its neighbour: none, i386, x86_64,
/// aarch64.
const FOREIGN: [u32; 4] = [0, 0x4000_0003, 0xc000_003e, 0xc000_00b7];

/// Rounds of the argument sweep (each adds the constants the last one uncovered).
const SWEEPS: usize = 4;

/// The constants of every conditional jump of `prog`.
fn constants(prog: &[Insn]) -> Vec<u32> {
    prog.iter()
        .filter(|i| i.code & CLASS_MASK == JMP && i.code != JA)
        .map(|i| i.k)
        .collect()
}

/// Argument values worth trying for compared constants `ks`.
fn values(ks: &[u32]) -> Vec<u64> {
    let mut v: Vec<u64> = ks
        .iter()
        .flat_map(|&k| {
            let k = u64::from(k);
            [k, k.wrapping_sub(1), k + 1, k << 32, (k << 32) | k]
        })
        .chain([0, u64::MAX])
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Checks that `relaid` answers like `original` (a program for `arch`).
pub fn equivalent(original: &[Insn], relaid: &[Insn], arch: u32) -> Result<(), Error> {
    let mut ks = constants(original);
    ks.extend(constants(relaid));
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
    let same = |d: &Data, compared: &mut Vec<u32>| -> Result<bool, Error> {
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
            let mut compared = Vec::new();
            let all_ones = Data {
                args: [u64::MAX; 6],
                ..base
            };
            if !(same(&base, &mut compared)? | same(&all_ones, &mut compared)?) {
                continue;
            }
            let mut tried: Vec<u64> = Vec::new();
            for _ in 0..SWEEPS {
                let fresh: Vec<u64> = values(&compared)
                    .into_iter()
                    .filter(|v| tried.binary_search(v).is_err())
                    .collect();
                if fresh.is_empty() {
                    break;
                }
                for slot in 0..6 {
                    for &v in &fresh {
                        let mut d = base;
                        if let Some(arg) = d.args.get_mut(slot) {
                            *arg = v;
                        }
                        same(&d, &mut compared)?;
                    }
                }
                tried.extend(fresh);
                tried.sort_unstable();
                compared.sort_unstable();
                compared.dedup();
            }
        }
    }
    Ok(())
}
