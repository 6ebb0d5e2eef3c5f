// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchorctl audit show|verify` as an operator runs them. The TPM anchor comes from
//! `anchor-vault audit tpm-state`; here a stand-in script answers for it (the real
//! helper is tested against swtpm in tools/anchor-vault/tests).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchor_audit::{Chain, Entry, MAX_RECORD};

fn anchorctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorctl"))
        .args(args)
        .output()
        .expect("run anchorctl")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A log of `n` records (the first one says the TPM counter started at 0, as
/// anchor-vault's `audit.start` does); its final chain.
fn write_log(path: &Path, n: u64) -> Chain {
    let mut chain = Chain::new();
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_RECORD];
    let start: [(&str, &[u8]); 1] = [("base", b"0")];
    let e = Entry {
        time: 1_796_022_235,
        actor: "anchor-vault",
        event: "audit.start",
        fields: &start,
    };
    chain.append(&mut out, &e, &mut buf).unwrap();
    for i in 1..n {
        let room = format!("room{i}");
        let fields: [(&str, &[u8]); 2] = [("room", room.as_bytes()), ("note", b"a b\x1b[2J")];
        let e = Entry {
            time: 1_796_022_235 + i,
            actor: "bay0",
            event: "room.start",
            fields: &fields,
        };
        chain.append(&mut out, &e, &mut buf).unwrap();
    }
    std::fs::write(path, out).unwrap();
    chain
}

/// A stand-in for `anchor-vault` answering `audit tpm-state`.
fn fake_vault(dir: &Path, counter: u64, head: &anchor_audit::Hash) -> PathBuf {
    let mut hex = [0u8; 64];
    let head = anchor_audit::hex(head, &mut hex);
    let p = dir.join("anchor-vault");
    std::fs::write(
        &p,
        format!("#!/bin/sh\necho counter={counter} head={head}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn show_prints_records_readably_and_never_raw_control_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    write_log(&log, 3);
    let o = anchorctl(&["audit", "show", "--file", log.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.starts_with(
            "#1 2026-11-30 07:03:55Z anchor-vault audit.start base=0\n\
             #2 2026-11-30 07:03:56Z bay0 room.start room=room1 note=a%20b%1B[2J\n"
        ),
        "{t}"
    );
    assert!(!t.contains('\x1b'));
    let raw = anchorctl(&["audit", "show", "--raw", "--file", log.to_str().unwrap()]);
    assert_eq!(raw.stdout, std::fs::read(&log).unwrap());
    let missing = anchorctl(&["audit", "show", "--file", "/nonexistent/audit.log"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn verify_names_the_first_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    write_log(&log, 5);
    let f = log.to_str().unwrap();
    let o = anchorctl(&["audit", "verify", "--no-tpm", "--file", f]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("chain intact: 5 records"), "{}", text(&o));
    let mut bytes = std::fs::read(&log).unwrap();
    let lines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i)
        .collect();
    bytes[lines[2] + 40] ^= 0x02; // inside record 4
    std::fs::write(&log, &bytes).unwrap();
    let o = anchorctl(&["audit", "verify", "--no-tpm", "--file", f]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("BAD: record 4 (line 4)"), "{}", text(&o));
}

#[test]
fn verify_compares_with_the_tpm_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let chain = write_log(&log, 6);
    let f = log.to_str().unwrap();
    let good = fake_vault(dir.path(), 6, &chain.head());
    let o = anchorctl(&[
        "audit",
        "verify",
        "--file",
        f,
        "--anchor-vault",
        good.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("matching the TPM anchor (6 anchored, 0 not yet)"),
        "{}",
        text(&o)
    );
    // An older copy of the log put back: the anchor counts more records.
    let older = dir.path().join("older.log");
    write_log(&older, 4);
    let o = anchorctl(&[
        "audit",
        "verify",
        "--file",
        older.to_str().unwrap(),
        "--anchor-vault",
        good.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("BAD: record 5 (line 5): missing"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("no audit.start"), "{}", text(&o));
    // No TPM anchor to read: the chain is reported, with exit 3.
    let o = anchorctl(&[
        "audit",
        "verify",
        "--file",
        f,
        "--anchor-vault",
        "/nonexistent/anchor-vault",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("TPM anchor could not be read"),
        "{}",
        text(&o)
    );
}

/// Regression (make run, vault locked): a log kept before the vault opens (bay0's records,
/// no `audit.start`) compared with a TPM that anchored other records was only "BAD: the
/// log does not match the TPM anchor", as if rewritten. Still BAD (a persistent log
/// without its `audit.start` is one), but it says what such a log is and how to check it.
#[test]
fn a_log_with_no_audit_start_compared_with_the_tpm_says_what_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut chain = Chain::new();
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_RECORD];
    for room in ["work", "web"] {
        let fields: [(&str, &[u8]); 2] = [("room", room.as_bytes()), ("how", b"opened")];
        let e = Entry {
            time: 1_796_022_235,
            actor: "bay0",
            event: "room.start",
            fields: &fields,
        };
        chain.append(&mut out, &e, &mut buf).unwrap();
    }
    std::fs::write(&log, out).unwrap();
    let f = log.to_str().unwrap();
    let anchored = write_log(&dir.path().join("persist.log"), 3);
    let vault = fake_vault(dir.path(), 3, &anchored.head());
    let o = anchorctl(&[
        "audit",
        "verify",
        "--file",
        f,
        "--anchor-vault",
        vault.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("BAD: record 1 (line 1): the log does not match the TPM anchor"),
        "{t}"
    );
    assert!(t.contains("it has no audit.start record"), "{t}");
    assert!(t.contains("--no-tpm checks its chain"), "{t}");
    let o = anchorctl(&["audit", "verify", "--no-tpm", "--file", f]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("chain intact: 2 records"), "{}", text(&o));
}

#[test]
fn vault_commands_run_the_helper_and_pass_its_status_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("anchor-vault");
    std::fs::write(&p, "#!/bin/sh\necho \"args: $*\"\nexit 4\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = anchorctl(&[
        "vault",
        "status",
        "--anchor-vault",
        p.to_str().unwrap(),
        "--disk",
        "/dev/vdb",
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(text(&o), "args: status --disk /dev/vdb\n");
    let o = anchorctl(&["vault", "init", "--anchor-vault", "/nonexistent/x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("cannot run /nonexistent/x"),
        "{}",
        text(&o)
    );
}

/// A torn append (a power cut in the middle of a record's write) that the next writer
/// chained past: the log still verifies, all its records, and the torn line is named.
#[test]
fn verify_names_a_torn_append_and_verifies_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    write_log(&log, 3);
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"v1 seq=4 time=1796022");
    let fourth = anchor_audit::next_line_now(&bytes, "bay0", "room.stop", &[]).unwrap();
    bytes.push(b'\n');
    bytes.extend_from_slice(&fourth);
    std::fs::write(&log, &bytes).unwrap();
    let f = log.to_str().unwrap();
    let o = anchorctl(&["audit", "verify", "--no-tpm", "--file", f]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("chain intact: 4 records"), "{}", text(&o));
    assert!(text(&o).contains("line 4: a torn append"), "{}", text(&o));
}
