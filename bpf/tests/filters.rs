// SPDX-License-Identifier: GPL-3.0-or-later
//! The layout of real filters (ours, compiled by seccompiler as the build scripts do)
//! and of generated ones: shorter, and answering every input like the original.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;

use anchor_bpf::{equivalent, relayout, run, Data, Error};
use common::{ours, real};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

const X86_64: u32 = 0xc000_003e;
const AARCH64: u32 = 0xc000_00b7;

fn data(nr: u32, arch: u32, args: [u64; 6]) -> Data {
    Data {
        nr,
        arch,
        ip: 0,
        args,
    }
}

#[test]
fn our_filters_get_shorter_and_answer_every_syscall_number_alike() {
    for (name, p) in real() {
        let t = relayout(&p, X86_64).unwrap();
        assert!(t.len() < p.len(), "{name}: {} -> {}", p.len(), t.len());
        // A dense sweep independent of the checker's choice of inputs.
        for nr in 0..2048u32 {
            for args in [[0; 6], [u64::MAX; 6], [1, 2, 3, 4, 5, 6]] {
                for arch in [X86_64, AARCH64] {
                    let d = data(nr, arch, args);
                    assert_eq!(
                        run(&p, &d).unwrap().ret,
                        run(&t, &d).unwrap().ret,
                        "{name} {d:?}"
                    );
                }
            }
        }
        println!("{name}: {} -> {} instructions", p.len(), t.len());
    }
}

#[test]
fn the_checker_finds_a_changed_answer() {
    for (name, p) in real() {
        let t = relayout(&p, X86_64).unwrap();
        // Every return of the laid-out program, changed in turn, is caught.
        for (at, i) in t.iter().enumerate() {
            if i.code != 0x06 {
                continue;
            }
            let mut bad = t.clone();
            bad[at].k ^= 1;
            assert!(
                matches!(equivalent(&p, &bad, X86_64), Err(Error::Differs { .. })),
                "{name}: a changed return at {at} went unnoticed"
            );
        }
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A filter of 1 to `calls` syscalls, a quarter of them with argument rules.
fn random_filter(rng: &mut Rng, calls: u64) -> SeccompFilter {
    let ops = |rng: &mut Rng| match rng.below(7) {
        0 => SeccompCmpOp::Eq,
        1 => SeccompCmpOp::Ne,
        2 => SeccompCmpOp::Lt,
        3 => SeccompCmpOp::Le,
        4 => SeccompCmpOp::Gt,
        5 => SeccompCmpOp::Ge,
        _ => SeccompCmpOp::MaskedEq(rng.below(16)),
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for _ in 0..rng.below(calls) + 1 {
        let nr = rng.below(460) as i64;
        let mut chain = Vec::new();
        if rng.below(4) == 0 {
            for _ in 0..rng.below(3) + 1 {
                let conds = (0..rng.below(3) + 1)
                    .map(|_| {
                        let len = if rng.below(2) == 0 {
                            SeccompCmpArgLen::Dword
                        } else {
                            SeccompCmpArgLen::Qword
                        };
                        let v = if rng.below(2) == 0 {
                            rng.below(20)
                        } else {
                            rng.next()
                        };
                        SeccompCondition::new(rng.below(6) as u8, len, ops(rng), v).unwrap()
                    })
                    .collect();
                chain.push(SeccompRule::new(conds).unwrap());
            }
        }
        rules.insert(nr, chain);
    }
    let (mismatch, matched) = match rng.below(3) {
        0 => (SeccompAction::KillProcess, SeccompAction::Allow),
        1 => (SeccompAction::Errno(38), SeccompAction::Allow),
        _ => (SeccompAction::Allow, SeccompAction::Errno(1)),
    };
    SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64).unwrap()
}

#[test]
fn generated_filters_answer_alike() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..24 {
        let f = random_filter(&mut rng, 300);
        let p: BpfProgram = f.try_into().unwrap();
        let p = ours(&p);
        let t = relayout(&p, X86_64).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            t.len() <= p.len(),
            "round {round}: {} -> {}",
            p.len(),
            t.len()
        );
        for _ in 0..2000 {
            let nr = rng.below(512) as u32;
            let args = [0; 6].map(|_: u64| {
                if rng.below(2) == 0 {
                    rng.below(20)
                } else {
                    rng.next()
                }
            });
            let d = data(nr, X86_64, args);
            assert_eq!(
                run(&p, &d).unwrap().ret,
                run(&t, &d).unwrap().ret,
                "round {round} {d:?}"
            );
        }
    }
}

#[test]
fn a_foreign_architecture_gets_the_originals_answer() {
    for (name, p) in real() {
        let t = relayout(&p, X86_64).unwrap();
        for arch in [0, AARCH64, 0x4000_0003, X86_64 ^ 0x8000_0000] {
            let d = data(0, arch, [0; 6]);
            assert_eq!(run(&p, &d).unwrap().ret, run(&t, &d).unwrap().ret, "{name}");
        }
    }
}

#[test]
fn the_checker_reaches_rules_that_need_several_arguments() {
    // Syscall 7 is allowed only when arg0 == 5, arg1 > 0x1_0000_0000 and arg3 & 4 == 4.
    let cond = |arg, len, op, v| SeccompCondition::new(arg, len, op, v).unwrap();
    let rule = SeccompRule::new(vec![
        cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, 5),
        cond(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Gt, 0x1_0000_0000),
        cond(3, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(4), 4),
    ])
    .unwrap();
    let f = SeccompFilter::new(
        [(7, vec![rule]), (8, vec![])].into_iter().collect(),
        SeccompAction::Errno(1),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .unwrap();
    let p: BpfProgram = f.try_into().unwrap();
    let p = ours(&p);
    let t = relayout(&p, X86_64).unwrap();
    let allow = 0x7fff_0000;
    let d = data(7, X86_64, [5, 0x2_0000_0000, 0, 4, 0, 0]);
    assert_eq!(run(&t, &d).unwrap().ret, allow);
    // The allow at the end of that rule, answered differently, is found.
    let mut caught = 0;
    for at in 0..t.len() {
        if t[at].code == 0x06 && t[at].k == allow {
            let mut bad = t.clone();
            bad[at].k = 0x0005_0001;
            assert!(
                matches!(equivalent(&p, &bad, X86_64), Err(Error::Differs { .. })),
                "a changed allow at {at} went unnoticed"
            );
            caught += 1;
        }
    }
    assert!(caught >= 2, "{caught}");
}

#[test]
fn a_filter_the_layout_cannot_shorten_is_kept_as_seccompiler_made_it() {
    let mut rng = Rng(0x5851_f42d_4c95_7f2d);
    let mut kept = 0;
    for _ in 0..400 {
        let p: BpfProgram = random_filter(&mut rng, 2).try_into().unwrap();
        let p = ours(&p);
        let t = relayout(&p, X86_64).unwrap();
        assert!(t.len() <= p.len(), "{} -> {}", p.len(), t.len());
        if t.len() == p.len() {
            assert_eq!(t, p, "a layout as long as the original is not kept");
            kept += 1;
        }
    }
    // Some filters of a call or two with argument rules come out no shorter.
    assert!(kept > 0);
}
