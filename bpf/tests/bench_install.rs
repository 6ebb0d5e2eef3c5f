// SPDX-License-Identifier: GPL-3.0-or-later
//! `bpf/bench.sh`: how long the kernel takes to install each of our seccomp filters as
//! seccompiler emits it and as anchor-bpf lays it out, in the same run (each install in
//! a fresh child: a filter stays for the life of the process). Printed, never asserted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::multiple_unsafe_ops_per_block
)]

use std::time::Instant;

mod common;

use anchor_bpf::{relayout, Insn, AUDIT_ARCH_X86_64};

/// Microseconds one install of `prog` takes, in a forked child.
fn install_us(prog: &[Insn]) -> f64 {
    let filters: Vec<libc::sock_filter> = prog
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: u16::try_from(filters.len()).unwrap(),
        filter: filters.as_ptr().cast_mut(),
    };
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only makes system calls (no allocation, no locks) and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain system calls on values owned by this (child) process.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            let mut t0 = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let mut t1 = t0;
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t0);
            let r = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            );
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t1);
            let ns: i64 = if r == 0 {
                (t1.tv_sec - t0.tv_sec) * 1_000_000_000 + (t1.tv_nsec - t0.tv_nsec)
            } else {
                -1
            };
            libc::write(fds[1], (&ns as *const i64).cast(), 8);
            libc::_exit(0);
        }
    }
    let mut ns = [0u8; 8];
    // SAFETY: reading 8 bytes into an 8-byte buffer; waiting for our own child.
    unsafe {
        assert_eq!(libc::read(fds[0], ns.as_mut_ptr().cast(), 8), 8);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let ns = i64::from_ne_bytes(ns);
    assert!(ns >= 0, "the kernel refused the filter");
    ns as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: bpf/bench.sh"]
fn bench_seccomp_install() {
    let runs: usize = std::env::var("BENCH_BPF_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(41);
    let filters = common::real();
    let started = Instant::now();
    println!(
        "bench bpf: seccomp filter install, median of {runs} installs each, alternating (x86_64)"
    );
    for (name, chain) in filters {
        let tree = relayout(&chain, AUDIT_ARCH_X86_64).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            a.push(install_us(&chain));
            b.push(install_us(&tree));
        }
        let (ma, mb) = (median(a), median(b));
        println!(
            "bench bpf:   {name:<10} seccompiler {:>5} insns {ma:>7.1} us   laid out {:>4} insns {mb:>6.1} us   ratio {:.3}",
            chain.len(),
            tree.len(),
            mb / ma
        );
    }
    println!(
        "bench bpf: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
