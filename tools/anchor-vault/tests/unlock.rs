// SPDX-License-Identifier: GPL-3.0-or-later
//! The unlock dialog as a person meets it, against a real TPM (swtpm) and a real LUKS2
//! header on a disk image. The host has no dm-crypt, so these run `unlock --check`:
//! everything up to opening the keyslot is the product path; creating the device and
//! mounting are tested inside the anchor host (tests/system/tests/vault.rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{digest, disk, run_with, typed_at_creation, FailingTpm, Fixture, CHEAP, PASS};

fn refusals(f: &Fixture, reason: &str) -> usize {
    std::fs::read_to_string(f.pre_log())
        .unwrap_or_default()
        .matches(&format!("event=vault.unlock.refused reason={reason}"))
        .count()
}

#[test]
fn wrong_passphrases_then_the_right_one() {
    let f = Fixture::new(10);
    let r = f.run(
        &["unlock", "--check", "--tries", "3"],
        &format!("nope nope\nalso wrong\n{PASS}\n"),
    );
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert_eq!(r.count("Wrong passphrase."), 2, "{}", r.out);
    assert!(
        r.out.contains("The TPM allows 8 more wrong ones"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("Checked: the passphrase opens the vault"),
        "{}",
        r.out
    );
    assert_eq!(refusals(&f, "wrong-passphrase"), 2);
    // Too many wrong ones: the recovery key is offered; an empty line leaves it locked.
    let r = f.run(
        &["unlock", "--check", "--tries", "2"],
        "a1234567\nb1234567\n\n",
    );
    assert_eq!(r.code, Some(3), "{}", r.out);
    assert!(r.out.contains("2 passphrase attempts failed"), "{}", r.out);
    assert!(r.out.contains("The vault stays locked."), "{}", r.out);
    // End of input (console gone) is not an endless loop either.
    let r = f.run(&["unlock", "--check"], "");
    assert_eq!(r.code, Some(3), "{}", r.out);
}

/// A pasted passphrase longer than the console's line was taken for an empty line: the
/// dialog went to the recovery key (which then read the next line as one). It is refused
/// in one line, costs no TPM try, and the passphrase prompt comes again.
#[test]
fn an_over_long_passphrase_is_refused_and_asked_for_again() {
    let f = Fixture::new(10);
    let long = "x".repeat(anchor_vault::console::MAX_LINE + 1);
    let r = f.run(&["unlock", "--check"], &format!("{long}\n{PASS}\n"));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert_eq!(r.count("passphrase longer than 1024 bytes"), 1, "{}", r.out);
    assert_eq!(r.count("Vault passphrase"), 2, "{}", r.out);
    assert!(!r.out.contains("Recovery key"), "{}", r.out);
    assert!(
        r.out.contains("Checked: the passphrase opens the vault"),
        "{}",
        r.out
    );
    assert_eq!(refusals(&f, "wrong-passphrase"), 0);
}

#[test]
fn tpm_lockout_is_explained_and_the_recovery_key_still_opens() {
    let f = Fixture::new(3);
    let r = f.run(
        &["unlock", "--check", "--tries", "5"],
        "bad1bad1\nbad2bad2\nbad3bad3\n\n",
    );
    assert_eq!(r.code, Some(3), "{}", r.out);
    assert!(
        r.out.contains("dictionary-attack lockout"),
        "lockout not explained: {}",
        r.out
    );
    assert!(r.out.contains("It allows 3 failures"), "{}", r.out);
    // Locked out: even the right passphrase is not asked for; the recovery key works.
    let r = f.run(&["unlock", "--check"], &format!("{}\n", f.recovery));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(!r.out.contains("Vault passphrase"), "{}", r.out);
    assert!(
        r.out.contains("Checked: the recovery key opens the vault"),
        "{}",
        r.out
    );
    assert!(refusals(&f, "tpm-lockout") >= 1);
    let status = f.run(&["status"], "");
    assert!(status.out.contains("LOCKED OUT"), "{}", status.out);
}

#[test]
fn a_wrong_recovery_key_cannot_reset_the_lockout_and_holds_it_off() {
    let f = Fixture::new(2);
    let r = f.run(&["unlock", "--check"], "bad1bad1\nbad2bad2\n\n");
    assert_eq!(r.code, Some(3), "{}", r.out);
    let r = f.run(
        &["reset-lockout"],
        "0000-0000-0000-0000-0000-0000-0000-0000\n",
    );
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert!(r.out.contains("wrong recovery key"), "{}", r.out);
    // After a wrong lockout authorization the TPM refuses the next one for the
    // lockout-recovery time (1 hour as anchor-vault sets it), even the right one.
    let r = f.run(&["reset-lockout"], &format!("{}\n", f.recovery));
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert!(r.out.contains("try again later"), "{}", r.out);
    let r = f.run(&["reset-lockout"], "not a key\n");
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert!(r.out.contains("not a recovery key"), "{}", r.out);
}

#[test]
fn reset_lockout_with_the_recovery_key_lets_the_passphrase_in_again() {
    let f = Fixture::new(2);
    let r = f.run(&["unlock", "--check"], "bad1bad1\nbad2bad2\n\n");
    assert_eq!(r.code, Some(3), "{}", r.out);
    let r = f.run(&["reset-lockout"], &format!("{}\n", f.recovery));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("lockout is cleared"), "{}", r.out);
    let r = f.run(&["unlock", "--check"], &format!("{PASS}\n"));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("Checked: the passphrase"), "{}", r.out);
}

fn lockout_owned(f: &Fixture) -> bool {
    anchor_vault::tpm::Tpm::open(&f.tpm.tcti())
        .unwrap()
        .da_status()
        .unwrap()
        .lockout_auth_set
}

/// `init` takes the TPM's lockout authorization (the recovery key's) only once the vault
/// is made, so that it never belongs to a recovery key that opens nothing. A creation cut
/// off between the two (a power cut), or a TPM error there (only said, never retried),
/// left the lockout hierarchy unowned for good: anyone could then reset the
/// dictionary-attack counter (from another OS too) and go on guessing the passphrase.
/// The recovery key that opens the vault now takes it, as `init` would have.
#[test]
fn a_lockout_left_unowned_by_a_creation_cut_short_is_taken_by_the_recovery_key() {
    let f = Fixture::new(10);
    let key = anchor_vault::keys::RecoveryKey::parse(f.recovery.as_bytes()).unwrap();
    let auth = format!("hex:{}", anchor_vault::hex::encode(&*key.lockout_auth()));
    // The state a cut between the vault's last header write and the lockout leaves.
    f.tpm
        .tool(&["tpm2_changeauth", "-c", "lockout", "-p", &auth]);
    assert!(!lockout_owned(&f));
    let r = f.run(&["unlock", "--check"], &format!("\n{}\n", f.recovery));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("Checked: the recovery key"), "{}", r.out);
    assert!(lockout_owned(&f), "{}", r.out);
    // It is the recovery key's: it clears a lockout.
    let r = f.run(&["reset-lockout"], &format!("{}\n", f.recovery));
    assert_eq!(r.code, Some(0), "{}", r.out);
}

#[test]
fn a_changed_boot_chain_is_refused_and_the_recovery_key_works() {
    let f = Fixture::new(10);
    f.tpm.extend_pcr(7);
    let r = f.run(&["unlock", "--check"], &format!("{PASS}\n"));
    assert_eq!(r.code, Some(3), "{}", r.out);
    assert!(
        r.out.contains("PCR 7 (Secure Boot state and keys) changed"),
        "{}",
        r.out
    );
    assert!(
        !r.out.contains("Vault passphrase"),
        "the passphrase must not be asked for in vain: {}",
        r.out
    );
    let r = f.run(&["unlock", "--check"], &format!("{}\n", f.recovery));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("Checked: the recovery key"), "{}", r.out);
    assert_eq!(refusals(&f, "boot-chain-changed"), 2);
    let status = f.run(&["status"], "");
    assert!(
        status.out.contains("0 of 10 failures"),
        "a PCR mismatch must not count as a guess: {}",
        status.out
    );
}

/// A storage root key other than the one the vault was sealed under (here the TPM was
/// cleared: a new owner seed) is named in one line, audited, and the recovery key opens.
#[test]
fn a_different_storage_root_key_sends_the_dialog_to_the_recovery_key() {
    let f = Fixture::new(10);
    f.tpm.tool(&["tpm2_clear", "-c", "p"]);
    let r = f.run(&["unlock", "--check"], &format!("{PASS}\n{}\n", f.recovery));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(
        r.out
            .contains("storage root key is not the one the vault was sealed under"),
        "{}",
        r.out
    );
    assert!(r.out.contains("Checked: the recovery key"), "{}", r.out);
    assert_eq!(refusals(&f, "srk-changed"), 1);
}

#[test]
fn the_vault_locks_its_own_pcr_so_a_second_unseal_this_boot_fails() {
    let f = Fixture::new(10);
    f.tpm.extend_pcr(15);
    let r = f.run(&["unlock", "--check"], &format!("{PASS}\n\n"));
    assert_eq!(r.code, Some(3), "{}", r.out);
    assert!(
        r.out
            .contains("PCR 15 (vault already opened this boot) changed"),
        "{}",
        r.out
    );
}

#[test]
fn no_tpm_means_the_recovery_key() {
    let f = Fixture::new(10);
    let dir = f.dir.path();
    let r = run_with(
        &f.disk,
        Some("device:/nonexistent/tpmrm0"),
        dir,
        &["unlock", "--check"],
        &format!("{}\n", f.recovery),
    );
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("No TPM was found"), "{}", r.out);
    assert!(r.out.contains("Checked: the recovery key"), "{}", r.out);
    // A TPM that does not answer is said too, with the same way out.
    drop(f.tpm);
    let r = run_with(
        &f.disk,
        Some("swtpm:host=127.0.0.1,port=1"),
        dir,
        &["unlock", "--check"],
        "\n",
    );
    assert_eq!(r.code, Some(3), "{}", r.out);
    assert!(r.out.contains("The TPM cannot be used"), "{}", r.out);
    // Creating a vault without a TPM is refused before the disk is touched.
    let blank = tempfile::tempdir().unwrap();
    let d = disk(blank.path(), 40);
    let before = digest(&d);
    let mut args = vec!["init", "--no-open"];
    args.extend_from_slice(&CHEAP);
    let r = run_with(
        &d,
        Some("device:/nonexistent/tpmrm0"),
        blank.path(),
        &args,
        "x\n",
    );
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert!(r.out.contains("needs a TPM 2.0"), "{}", r.out);
    assert_eq!(digest(&d), before);
}

/// A TPM that connects but fails its commands (a TPM in failure mode answers
/// TPM_RC_FAILURE to nearly everything) ended `unlock` with "anchor-vault: TPM PCR_Read:
/// ..." and exit 1 before the recovery key was ever asked for: the vault stayed locked for
/// a person holding the key that opens it without any TPM. It is now a TPM that cannot be
/// used: said, audited, and the recovery key opens.
#[test]
fn a_tpm_that_fails_its_commands_still_lets_the_recovery_key_open() {
    let f = Fixture::new(10);
    let broken = FailingTpm::start();
    let r = run_with(
        &f.disk,
        Some(&broken.tcti()),
        f.dir.path(),
        &["unlock", "--check"],
        &format!("{}\n", f.recovery),
    );
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("The TPM cannot be used ("), "{}", r.out);
    assert!(r.out.contains("use the recovery key"), "{}", r.out);
    assert!(r.out.contains("Checked: the recovery key"), "{}", r.out);
    assert_eq!(refusals(&f, "tpm-unusable"), 1);
}

/// Overwrite `len` bytes at `at` with garbage.
fn damage(path: &std::path::Path, at: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&vec![0x5a; len]).unwrap();
}

#[test]
fn a_damaged_primary_header_opens_from_the_secondary() {
    let f = Fixture::new(10);
    // Inside the first copy's binary header (its checksum no longer matches).
    damage(&f.disk, 0x100, 64);
    let r = f.run(&["unlock", "--check"], &format!("{PASS}\n"));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("restored from the second copy"), "{}", r.out);
    // The JSON area of the first copy.
    damage(&f.disk, 0x1000 + 200, 64);
    let r = f.run(&["unlock", "--check"], &format!("\n{}\n", f.recovery));
    assert_eq!(r.code, Some(0), "{}", r.out);
}

/// `status` loaded the header through libcryptsetup on the disk itself, and loading
/// writes a damaged header copy back from the other: looking at the vault changed it.
/// Now status looks at an in-memory copy (and says which copy `unlock` will restore);
/// `unlock` restores it on the disk and says so, for either copy.
#[test]
fn status_writes_nothing_to_a_disk_with_a_damaged_header_copy() {
    let f = Fixture::new(10);
    // Inside the second copy's binary header (at 16 KiB), then the first's.
    for (at, copy, other) in [
        (0x4000 + 0x100, "second", "first"),
        (0x100, "first", "second"),
    ] {
        damage(&f.disk, at, 64);
        let before = digest(&f.disk);
        let r = f.run(&["status"], "");
        assert_eq!(r.code, Some(0), "{}", r.out);
        assert_eq!(digest(&f.disk), before, "status wrote to the disk");
        assert!(
            r.out
                .contains(&format!("its {copy} header copy is damaged")),
            "{}",
            r.out
        );
        assert!(r.out.contains("keyslot 0: TPM + passphrase"), "{}", r.out);
        let r = f.run(&["unlock", "--check"], &format!("{PASS}\n"));
        assert_eq!(r.code, Some(0), "{}", r.out);
        let said = format!(
            "The vault header's {copy} copy was damaged; it was restored from the {other} copy."
        );
        assert!(r.out.contains(&said), "{}", r.out);
        assert_ne!(digest(&f.disk), before, "unlock restored nothing");
        let r = f.run(&["status"], "");
        assert!(!r.out.contains("header copy is damaged"), "{}", r.out);
    }
}

#[test]
fn both_headers_damaged_is_a_clear_error_and_nothing_is_written() {
    let f = Fixture::new(10);
    damage(&f.disk, 0x100, 64);
    damage(&f.disk, 0x4000 + 0x100, 64);
    let before = digest(&f.disk);
    let r = f.run(&["unlock", "--check"], &format!("{PASS}\n"));
    assert_eq!(r.code, Some(5), "{}", r.out);
    assert!(
        r.out
            .contains("both copies of the LUKS2 header are damaged; nothing was changed"),
        "{}",
        r.out
    );
    assert!(!r.out.contains("passphrase:"), "{}", r.out);
    assert_eq!(digest(&f.disk), before, "unlock wrote to the disk");
    // Not for the first-boot flow either, nor for init: a damaged vault is never
    // taken for a blank disk.
    let r = f.run(&["unlock", "--first-boot"], &typed_at_creation());
    assert_eq!(r.code, Some(5), "{}", r.out);
    let mut args = vec!["init", "--no-open", "--force"];
    args.extend_from_slice(&CHEAP);
    let r = f.run(&args, &typed_at_creation());
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert!(r.out.contains("refusing to overwrite"), "{}", r.out);
    assert_eq!(digest(&f.disk), before, "init wrote to the disk");
    let status = f.run(&["status"], "");
    assert!(status.out.contains("both copies"), "{}", status.out);
}

#[test]
fn init_refuses_disks_that_are_not_blank() {
    let tpm = common::Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let d = disk(dir.path(), 40);
    damage(&d, 0x438, 2); // something at an ext superblock's magic offset
    let before = digest(&d);
    let mut args = vec!["init", "--no-open"];
    args.extend_from_slice(&CHEAP);
    let r = run_with(
        &d,
        Some(&tpm.tcti()),
        dir.path(),
        &args,
        &typed_at_creation(),
    );
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert!(r.out.contains("not blank"), "{}", r.out);
    assert_eq!(digest(&d), before);
    let r = run_with(
        &d,
        Some(&tpm.tcti()),
        dir.path(),
        &["unlock", "--first-boot"],
        "",
    );
    assert_eq!(r.code, Some(4), "{}", r.out);
    assert!(r.out.contains("not an Anchor vault"), "{}", r.out);
    assert_eq!(digest(&d), before);
    // Passphrases are checked when chosen.
    let blank = disk(dir.path(), 40);
    let r = run_with(
        &blank,
        Some(&tpm.tcti()),
        dir.path(),
        &args,
        "short\nshort\n",
    );
    assert_eq!(r.code, Some(4), "{}", r.out);
    assert!(r.out.contains("at least 8 characters"), "{}", r.out);
    let r = run_with(
        &blank,
        Some(&tpm.tcti()),
        dir.path(),
        &args,
        "one passphrase\nanother one\n",
    );
    assert!(r.out.contains("The two passphrases differ."), "{}", r.out);
}

#[test]
fn status_names_the_keyslots_and_their_cost() {
    let f = Fixture::new(10);
    let r = f.run(&["status"], "");
    assert_eq!(r.code, Some(0), "{}", r.out);
    for want in [
        "state: LUKS2 vault",
        "keyslot 0: TPM + passphrase, argon2id, 32 MiB, 4 iterations, 1 lanes",
        "keyslot 1: recovery key, argon2id, 32 MiB",
        "PCRs 7 (Secure Boot state and keys) as sealed, PCR 15 unextended",
        "locked (not mounted)",
        "0 of 10 failures",
    ] {
        assert!(r.out.contains(want), "{want:?} missing from:\n{}", r.out);
    }
}

/// On a real terminal (a pty from script(1)) nothing typed is echoed: the passphrase
/// typed after the prompt appears never shows in the terminal's output.
#[test]
fn a_passphrase_typed_on_a_terminal_is_not_echoed() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let f = Fixture::new(10);
    let cmd = format!(
        "{} --disk {} --tpm {} --pre-log {} unlock --check",
        env!("CARGO_BIN_EXE_anchor-vault"),
        f.disk.display(),
        f.tpm.tcti(),
        f.pre_log().display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("TSS2_LOG", "all+none")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run script(1) (util-linux)");
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = out.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let end = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&out.lock().unwrap()).contains("Vault passphrase") {
        assert!(Instant::now() < end, "no prompt");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{PASS}\n").as_bytes()).unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("Checked: the passphrase opens the vault"),
        "{text}"
    );
    assert!(!text.contains(PASS), "the passphrase was echoed: {text}");
}

/// Regression (`make run VAULT=1`, a one-CPU machine): the creation line said "4 lanes",
/// the lanes asked for; libcryptsetup wrote 1 (at most one per online CPU), as `status`
/// then said. The line now gives the cost as written, and the lanes asked beside it.
#[test]
fn the_creation_line_gives_the_cost_as_written() {
    let tpm = common::Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let d = disk(dir.path(), 40);
    // SAFETY: sysconf reads a system value; no memory is passed.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let asked = 64;
    let written = u64::try_from(cpus).unwrap().min(asked);
    let lanes = asked.to_string();
    let args = [
        "init",
        "--no-open",
        "--argon2-memory-mib",
        "32",
        "--argon2-iterations",
        "4",
        "--argon2-lanes",
        &lanes,
    ];
    let r = run_with(
        &d,
        Some(&tpm.tcti()),
        dir.path(),
        &args,
        &typed_at_creation(),
    );
    assert_eq!(r.code, Some(0), "{}", r.out);
    let line = r
        .out
        .lines()
        .find(|l| l.contains("Vault created on"))
        .unwrap_or_else(|| panic!("no creation line in:\n{}", r.out));
    assert!(
        line.contains(&format!("argon2id, 32 MiB, 4 iterations, {written} lanes")),
        "{line}"
    );
    assert_eq!(
        line.contains(&format!("({asked} lanes asked")),
        written < asked,
        "{line}"
    );
    let status = run_with(&d, Some(&tpm.tcti()), dir.path(), &["status"], "");
    assert!(
        status.out.contains(&format!(
            "keyslot 0: TPM + passphrase, argon2id, 32 MiB, 4 iterations, {written} lanes"
        )),
        "{}",
        status.out
    );
}
