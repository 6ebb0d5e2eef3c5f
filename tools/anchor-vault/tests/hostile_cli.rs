// SPDX-License-Identifier: GPL-3.0-or-later
//! Hostile command lines for the anchor-vault binary (no TPM needed): a disk that is not a
//! disk is refused, not waited on; an error is one line that names its cause once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs anchor-vault with `args` and stdin at /dev/null. A run that has not ended after a
/// minute is killed and reported as blocked (a hang guard, not a timing assertion: every
/// run here ends at once or never).
fn vault(args: &[&str], dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_anchor-vault"))
        .args(args)
        .args(["--pre-log"])
        .arg(dir.join("pre.log"))
        .args(["--mount"])
        .arg(dir.join("persist"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("anchor-vault {args:?} blocked");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_fifo_named_as_the_disk_is_refused_not_waited_on() {
    let d = tempfile::tempdir().unwrap();
    // Fed, so that code which opens it blocking gets bytes (and fails) instead of hanging.
    let fifo = anchor_testkit::Fifo::fed(&d.path().join("disk"), b"not a vault");
    let disk = fifo.as_str();
    let out = vault(&["status", "--disk", disk], d.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("state: unreadable (") && text.contains("not a disk"),
        "{text}"
    );
    for cmd in ["unlock", "init"] {
        let out = vault(&[cmd, "--disk", disk], d.path());
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {text}");
        assert!(text.contains("not a disk"), "{cmd}: {text}");
    }
}

#[test]
fn an_error_is_one_line_naming_its_cause_once() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no-such-disk");
    let out = vault(&["unlock", "--disk", missing.to_str().unwrap()], d.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    assert!(text.starts_with("anchor-vault: "), "{text}");
    assert!(text.contains(missing.to_str().unwrap()), "{text}");
}

/// An argon2id cost libcryptsetup refuses is a usage error, found before anything happens:
/// it was refused only after the passphrase dialog, the TPM sealing and the recovery key
/// were done and the LUKS2 header was written over the disk.
#[test]
fn an_argon2_cost_libcryptsetup_refuses_is_a_usage_error_before_anything_is_written() {
    let tpm = common::Swtpm::start();
    let d = tempfile::tempdir().unwrap();
    let disk = common::disk(d.path(), 40);
    let pass = format!("{0}\n{0}\n\n", common::PASS);
    for (flag, value) in [
        ("--argon2-iterations", "1"),
        ("--argon2-lanes", "0"),
        ("--argon2-memory-mib", "0"),
        ("--argon2-memory-mib", "8192"),
    ] {
        let mut args = vec!["init", "--no-open"];
        args.extend_from_slice(&common::CHEAP);
        // The bad value in place of the cheap one.
        let i = args.iter().position(|a| *a == flag).unwrap();
        args[i + 1] = value;
        let r = common::run_with(&disk, Some(&tpm.tcti()), d.path(), &args, &pass);
        assert_eq!(r.code, Some(2), "{flag} {value}: {}", r.out);
        assert!(r.out.contains(flag), "{flag} {value}: {}", r.out);
        assert!(!r.out.contains("RECOVERY KEY"), "{flag} {value}: {}", r.out);
        let bytes = std::fs::read(&disk).unwrap();
        assert!(
            bytes.iter().all(|&b| b == 0),
            "{flag} {value}: the disk was written"
        );
    }
}

#[test]
fn help_describes_every_option_and_argument() {
    let mut bad = Vec::new();
    for args in [
        &["init"][..],
        &["unlock"],
        &["status"],
        &["volume", "attach"],
        &["volume", "list"],
        &["volume", "give"],
        &["volume", "delete"],
        &["audit", "append"],
        &["audit", "anchor"],
        &["audit", "tpm-state"],
        &["reset-lockout"],
        &["lock"],
    ] {
        bad.extend(anchor_testkit::undocumented(
            env!("CARGO_BIN_EXE_anchor-vault"),
            args,
        ));
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// A PCR list the TPM sealing refuses (out of range, the vault's own lock PCR 15, twice
/// the same, more than 7) is refused before the passphrase is asked for, not after.
#[test]
fn a_bad_pcr_list_is_refused_before_the_passphrase_dialog() {
    let tpm = common::Swtpm::start();
    let d = tempfile::tempdir().unwrap();
    let disk = common::disk(d.path(), 40);
    let pass = format!("{0}\n{0}\n\n", common::PASS);
    for pcrs in ["99", "15", "7,7", "0,1,2,3,4,5,6,7"] {
        let mut args = vec!["init", "--no-open", "--pcrs", pcrs];
        args.extend_from_slice(&common::CHEAP);
        let r = common::run_with(&disk, Some(&tpm.tcti()), d.path(), &args, &pass);
        assert_eq!(r.code, Some(1), "--pcrs {pcrs}: {}", r.out);
        assert_eq!(r.out.lines().count(), 1, "--pcrs {pcrs}: {}", r.out);
        assert!(
            r.out.starts_with("anchor-vault: --pcrs: ") && r.out.contains("nothing was changed"),
            "--pcrs {pcrs}: {}",
            r.out
        );
        let bytes = std::fs::read(&disk).unwrap();
        assert!(
            bytes.iter().all(|&b| b == 0),
            "--pcrs {pcrs}: the disk was written"
        );
    }
}

/// `unlock --tries 0` is a usage error: it was taken as 1 without a word.
#[test]
fn unlock_tries_0_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let disk = common::disk(d.path(), 1);
    let r = common::run_with(&disk, None, d.path(), &["unlock", "--tries", "0"], "");
    assert_eq!(r.code, Some(2), "{}", r.out);
    assert!(r.out.contains("--tries"), "{}", r.out);
}

/// A volume NAME that is not a name, a --size that is not a size and an audit field that
/// is not KEY=VALUE are usage errors (exit 2, as the help says), each naming what it
/// refused, found before anything else is looked at (a bad name was answered with "the
/// vault is not open", exit 1).
#[test]
fn bad_volume_and_audit_arguments_are_usage_errors() {
    let d = tempfile::tempdir().unwrap();
    for (args, names) in [
        (
            &["volume", "attach", "../etc", "--size", "1MiB", "--for", "w"][..],
            "../etc",
        ),
        (
            &["volume", "attach", "work", "--size", "12foo", "--for", "w"][..],
            "12foo",
        ),
        (
            &["volume", "attach", "work", "--size", "0MiB", "--for", "w"][..],
            "0MiB",
        ),
        (&["volume", "give", "work", "--to", "A"][..], "\"A\""),
        (&["volume", "delete", "a/b"][..], "a/b"),
        (
            &["audit", "append", "--event", "ok", "novalue"][..],
            "novalue",
        ),
    ] {
        let out = vault(args, d.path());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(names), "{args:?}: {text}");
        assert!(!d.path().join("pre.log").exists(), "{args:?}: log written");
    }
}

/// `--tpm-recovery-secs 0` and `--tpm-max-tries 0` are usage errors, refused before
/// anything is asked or written. To a TPM, a recovery time of 0 disables dictionary-attack
/// protection (failures are never counted: unlimited passphrase guesses), and 0 tries
/// locks every DA-protected authorization out for good (the passphrase never opens the
/// vault); the help read "seconds after which one failure is forgiven", and init said
/// "one forgiven every 0 s".
#[test]
fn a_tpm_lockout_setting_that_disables_or_bricks_the_lockout_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let disk = common::disk(d.path(), 40);
    let pass = format!("{0}\n{0}\n\n", common::PASS);
    for flag in ["--tpm-recovery-secs", "--tpm-max-tries"] {
        let mut args = vec!["init", "--no-open", flag, "0"];
        args.extend_from_slice(&common::CHEAP);
        let r = common::run_with(&disk, None, d.path(), &args, &pass);
        assert_eq!(r.code, Some(2), "{flag} 0: {}", r.out);
        assert!(r.out.contains(flag), "{flag} 0: {}", r.out);
        assert!(!r.out.contains("RECOVERY KEY"), "{flag} 0: {}", r.out);
        let bytes = std::fs::read(&disk).unwrap();
        assert!(
            bytes.iter().all(|&b| b == 0),
            "{flag} 0: the disk was written"
        );
    }
}

/// `lock` when the vault is not open says so in one line naming the mapper device, and
/// succeeds (the vault is closed): it asked libcryptsetup to deactivate a device that does
/// not exist and printed "closing anchor-vault: IO error occurred: Invalid argument"
/// after libcryptsetup's own lines on stderr, exit 1.
#[test]
fn lock_when_the_vault_is_not_open_says_so_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let disk = common::disk(d.path(), 1);
    let mapper = "anchor-vault-test-never-opened";
    let out = vault(
        &["lock", "--disk", disk.to_str().unwrap(), "--mapper", mapper],
        d.path(),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(&format!("/dev/mapper/{mapper}")), "{text}");
    assert!(text.contains("not open"), "{text}");
}

/// An audit log that is not a regular file (here `--pre-log` names a FIFO) is refused in
/// one line naming it: `audit append` opened it read-write (which does not block on a
/// FIFO) and then waited for ever to read the log it would append to.
#[test]
fn an_audit_log_that_is_a_fifo_is_refused_not_read() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pre.log");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = vault(&["audit", "append", "--event", "test", "k=v"], d.path());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&fifo.display().to_string()) && text.contains("not a regular file"),
        "{text}"
    );
}
