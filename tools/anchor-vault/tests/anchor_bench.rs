// SPDX-License-Identifier: GPL-3.0-or-later
//! Benchmark (figures printed, never asserted): what one `anchor-vault audit anchor`
//! costs when the log already holds N anchored records and one new record waits (what
//! bay0 starts after every audited record). Against swtpm, like the other tests.
//! The check alone (no TPM) also for 100,000 records: the whole log verified twice (as
//! unlock did), once (as it does now), from the end (anchoring), and the unlock's settling.
//! Run: `tools/anchor-vault/bench.sh` (part of `make bench`); ignored by `cargo test`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write as _;
use std::time::Instant;

use anchor_audit::{Chain, Entry, MAX_RECORD};
use anchor_vault::auditlog;
use anchor_vault::tpm::nv::{Indices, NvState};
use anchor_vault::tpm::Tpm;
use common::Swtpm;

/// A courier refusal as bay0 writes one (~600 bytes).
fn refusal(chain: &mut Chain, out: &mut Vec<u8>, i: u64) -> anchor_audit::Hash {
    let name = format!("report-{i}.pdf");
    let sha = "ab".repeat(32);
    let id = "0".repeat(32);
    let reason = "the destination room does not take files of this kind ".repeat(4);
    let fields: [(&str, &[u8]); 10] = [
        ("from", b"web"),
        ("to", b"work"),
        ("name", name.as_bytes()),
        ("size", b"104857600"),
        ("sha256", sha.as_bytes()),
        ("id", id.as_bytes()),
        ("decision", b"refused"),
        ("outcome", b"refused"),
        ("reason", reason.as_bytes()),
        ("dropped", b"0"),
    ];
    let e = Entry {
        time: 1_800_000_000 + i,
        actor: "bay0",
        event: "courier",
        fields: &fields,
    };
    let mut buf = [0u8; MAX_RECORD];
    chain.append(out, &e, &mut buf).unwrap().digest
}

/// A log of `n` records (an `audit.start` with base 0, then courier refusals), written
/// to `log`; the TPM state that anchors all but the last one.
fn write_log(log: &std::path::Path, n: u64) -> NvState {
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut chain = Chain::new();
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_RECORD];
    let start: [(&str, &[u8]); 2] = [("base", b"0"), ("why", b"new")];
    let e = Entry {
        time: 1_800_000_000,
        actor: "anchor-vault",
        event: "audit.start",
        fields: &start,
    };
    chain.append(&mut out, &e, &mut buf).unwrap();
    let mut head = chain.head();
    for i in 1..n {
        head = chain.head();
        refusal(&mut chain, &mut out, i);
    }
    std::fs::write(log, &out).unwrap();
    NvState {
        counter: n - 1,
        head,
    }
}

#[test]
#[ignore = "benchmark: tools/anchor-vault/bench.sh"]
fn checking_the_new_records_by_log_length() {
    for n in [1_000u64, 10_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let nv = write_log(&log, n);
        let size = std::fs::metadata(&log).unwrap().len();
        // Before: read and verify the whole log, then against the anchor (twice over).
        let t = Instant::now();
        let bytes = std::fs::read(&log).unwrap();
        let (v, whole) = anchor_audit::verify_for_append(&bytes).unwrap();
        let a =
            anchor_audit::verify_anchored(&bytes[..whole], &auditlog::anchor_of(&v, &nv)).unwrap();
        let whole_log = t.elapsed();
        assert_eq!(a.unanchored, 1);
        // The whole log in one pass (what the check at unlock does now).
        let t = Instant::now();
        let bytes = std::fs::read(&log).unwrap();
        let (v, _) = anchor_audit::verify_for_append(&bytes).unwrap();
        let anchor = auditlog::anchor_of(&v, &nv);
        let a = anchor_audit::match_anchor(v, &anchor).unwrap();
        let one_pass = t.elapsed();
        assert_eq!(a.unanchored, 1);
        // Now: from the end.
        let t = Instant::now();
        let todo = auditlog::unanchored(&log, &nv).unwrap();
        let from_end = t.elapsed();
        assert_eq!(todo.digests.len(), 1);
        // The unlock's settling of the log (no TPM: its reads and checks of the log).
        let pre = dir.path().join("run/audit.log");
        let t = Instant::now();
        let settled = auditlog::settle(&log, &pre, None, &[]).unwrap();
        let unlock = t.elapsed();
        assert_eq!((settled.records, settled.tampered), (n, None));
        println!(
            "audit check, {n:>7} records ({:>6} KiB): whole log twice {:>9.2} ms, once {:>9.2} ms, \
             from the end {:>6.3} ms ({} KiB read); unlock settles it in {:>9.2} ms",
            size / 1024,
            whole_log.as_secs_f64() * 1000.0,
            one_pass.as_secs_f64() * 1000.0,
            from_end.as_secs_f64() * 1000.0,
            (size - todo.read_from) / 1024,
            unlock.as_secs_f64() * 1000.0
        );
    }
}

#[test]
#[ignore = "benchmark: tools/anchor-vault/bench.sh"]
fn anchor_cost_by_log_length() {
    let sizes: Vec<u64> = std::env::var("ANCHOR_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    for n in sizes {
        let tpm = Swtpm::start();
        Tpm::open(&tpm.tcti())
            .unwrap()
            .define_anchor(Indices::default())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut paths = anchor_vault::settings::Paths::system(dir.path().join("vault.img"));
        paths.mount = dir.path().join("persist");
        paths.pre_log = dir.path().join("run/audit.log");
        let log = paths.log();
        auditlog::settle(&log, &paths.pre_log, Some(&tpm.tcti()), &[]).unwrap();
        // n - 1 more records, anchored in one run (not timed), then one new record.
        let bytes = std::fs::read(&log).unwrap();
        let v = anchor_audit::verify(&bytes).unwrap();
        let mut chain = Chain::resume(v.records, v.head);
        let mut out = Vec::new();
        let digests: Vec<_> = (1..n).map(|i| refusal(&mut chain, &mut out, i)).collect();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(&out)
            .unwrap();
        let t = Instant::now();
        auditlog::anchor_digests(&tpm.tcti(), false, &digests).unwrap();
        let tpm_per_record = t.elapsed() / u32::try_from(n.max(1)).unwrap();
        let mut one = Vec::new();
        refusal(&mut chain, &mut one, n);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(&one)
            .unwrap();
        let size = std::fs::metadata(&log).unwrap().len();
        let t = Instant::now();
        let said = anchor_vault::commands::audit_anchor(&paths, Some(&tpm.tcti())).unwrap();
        let took = t.elapsed();
        assert!(said.ends_with("1 anchored now"), "{said}");
        println!(
            "audit anchor, {n:>7} records ({:>6} KiB): {:>9.2} ms for 1 new record \
             (TPM steps alone: {:.2} ms a record)",
            size / 1024,
            took.as_secs_f64() * 1000.0,
            tpm_per_record.as_secs_f64() * 1000.0
        );
    }
}
