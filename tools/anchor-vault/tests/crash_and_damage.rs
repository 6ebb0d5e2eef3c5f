// SPDX-License-Identifier: GPL-3.0-or-later
//! A crash during first boot, a damaged token and a symlinked volume: each shown against
//! swtpm and a LUKS2 image (found by a review; each failed before its fix).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use anchor_vault::luks::{self, DiskState, Vault};
use common::{disk, typed_at_creation, Fixture, Swtpm, CHEAP, PASS};

/// the first-boot flow writes the LUKS2 header, both keyslots and the token,
/// then waits for a person to press Enter under the recovery key, and only after that
/// makes the filesystem. A power cut (or reboot) while the recovery key is on screen
/// leaves a vault whose keys work but which holds no filesystem, and which neither
/// `init` nor the first-boot flow will ever replace. The disk must still be blank then.
#[test]
fn a_power_cut_while_the_recovery_key_is_shown_leaves_the_disk_blank() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 40);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchor-vault"));
    cmd.arg("--disk")
        .arg(&disk)
        .arg("--tpm")
        .arg(tpm.tcti())
        .arg("--pre-log")
        .arg(dir.path().join("pre.log"))
        .arg("--mount")
        .arg(dir.path().join("persist"))
        .arg("--policies")
        .arg(dir.path().join("policies"))
        .args(["unlock", "--first-boot"])
        .args(CHEAP)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // The passphrase twice; not the Enter under the recovery key.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{PASS}\n{PASS}\n").as_bytes())
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Press Enter once you have written it down") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // The power goes (the machine is switched off with the key on screen).
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let out = String::from_utf8_lossy(&seen).into_owned();
    let state = luks::probe(&disk).unwrap();
    if state == DiskState::Luks {
        // What the next boots meet: the keys open the header, but nothing was ever
        // written into the encrypted area (no filesystem: the mount fails at every
        // boot), and creating the vault again is refused.
        let mut v = Vault::open(&disk).unwrap();
        assert!(v.token().is_ok(), "the token was written");
        let data = std::fs::read(&disk).unwrap();
        let written = data[16 << 20..].iter().filter(|&&b| b != 0).count();
        let again = common::run_with(
            &disk,
            Some(&tpm.tcti()),
            dir.path(),
            &["unlock", "--check"],
            &format!("{PASS}\n"),
        );
        let init = common::run_with(
            &disk,
            Some(&tpm.tcti()),
            dir.path(),
            &["init", "--force", "--no-open"],
            &typed_at_creation(),
        );
        panic!(
            "the disk holds a half-made vault after a power cut at the recovery key:\n\
             - unlock --check: exit {:?}: {}\n\
             - non-zero bytes in the data area (a filesystem would be there): {written}\n\
             - init --force: exit {:?}: {}\n\
             dialog so far:\n{out}",
            again.code,
            again.out.trim(),
            init.code,
            init.out.trim()
        );
    }
    assert_eq!(state, DiskState::Blank, "{out}");
}

/// a vault token this anchor-vault cannot read (damaged, removed, or a newer
/// anchor-vault's policy kind after going back to an older image) makes `unlock` stop
/// with an error before the recovery key is ever asked for, although keyslot 1 does not
/// need the token at all. The recovery key must still open the vault.
#[test]
fn an_unreadable_token_still_lets_the_recovery_key_open_the_vault() {
    let f = Fixture::new(10);
    {
        let mut v = Vault::open(&f.disk).unwrap();
        let mut t = v.token().unwrap();
        t["policy"]["kind"] = serde_json::json!("pcr-and-moon-phase");
        v.set_token(&t).unwrap();
    }
    let r = f.run(&["unlock", "--check"], &format!("{}\n", f.recovery));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("Checked: the recovery key"), "{}", r.out);
    assert!(
        r.out.contains("pcr-and-moon-phase") || r.out.contains("policy kind"),
        "{}",
        r.out
    );
}

/// `ensure_volume` (run at every unlock for each policy's volume, and by
/// `anchor-vault volume attach`) opens `volumes/NAME.img` following a symlink and
/// `set_len`s whatever it points to, while `volumes()` measures the link itself.
#[test]
fn a_volume_that_is_a_symlink_is_refused_and_its_target_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("volumes")).unwrap();
    let victim = root.join("audit.log");
    std::fs::write(&victim, b"precious records\n").unwrap();
    std::os::unix::fs::symlink(&victim, root.join("volumes/work.img")).unwrap();
    let r = anchor_vault::persist::ensure_volume(root, "work", 1 << 20);
    let len = std::fs::metadata(&victim).unwrap().len();
    assert_eq!(len, 17, "the symlink's target was resized to {len} ({r:?})");
    assert!(r.is_err(), "{r:?}");
}

/// Creating a vault writes the LUKS2 header first, then its keyslots and token, then
/// opens it and makes its filesystem. Cut short after the header (here: the filesystem
/// cannot be made; a kill or a power cut in those seconds of key derivation and TPM work
/// leaves the same), the disk held a vault that never held anything and never will (no
/// filesystem: every unlock fails to mount it), and `init` refused to replace it for
/// ever. A creation cut short must be made again; a finished vault is still refused.
#[test]
fn a_vault_whose_creation_was_cut_short_is_created_again() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 40);
    let mut init = vec![
        "--mkfs",
        "/nonexistent/mke2fs",
        "--mapper",
        "anchor-test-cut-short",
        "init",
    ];
    init.extend_from_slice(&CHEAP);
    let typed = typed_at_creation();
    let first = common::run_with(&disk, Some(&tpm.tcti()), dir.path(), &init, &typed);
    assert_ne!(first.code, Some(0), "{}", first.out);
    assert_eq!(luks::probe(&disk).unwrap(), DiskState::Luks);
    let mut again = vec!["init", "--no-open"];
    again.extend_from_slice(&CHEAP);
    let second = common::run_with(&disk, Some(&tpm.tcti()), dir.path(), &again, &typed);
    assert_eq!(second.code, Some(0), "{}", second.out);
    assert!(second.out.contains("cut short"), "{}", second.out);
    let check = common::run_with(
        &disk,
        Some(&tpm.tcti()),
        dir.path(),
        &["unlock", "--check"],
        &format!("{PASS}\n"),
    );
    assert_eq!(check.code, Some(0), "{}", check.out);
    // Finished: never replaced.
    let third = common::run_with(&disk, Some(&tpm.tcti()), dir.path(), &again, &typed);
    assert_ne!(third.code, Some(0), "{}", third.out);
    assert!(third.out.contains("refusing to overwrite"), "{}", third.out);
}

/// A vault whose first MiB was zeroed (both LUKS2 header copies and its keyslots: a
/// `dd bs=1M count=1`, a wipe cut short) still holds its encrypted filesystem from 16 MiB
/// on, which a saved header (`cryptsetup luksHeaderRestore`, as the damaged-header message
/// advises) opens again. Only the first MiB was looked at, so it was taken for a blank
/// disk: bay0's first-boot flow created a new vault over it (header, keyslots, then its
/// mke2fs over the old data) and `init` did so without `--force`. It is not blank: the
/// first boot leaves it alone (exit 4), `init` wants `--force`, and not a byte changes.
#[test]
fn a_vault_whose_header_was_zeroed_is_not_taken_for_a_blank_disk() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 40);
    // What an old vault leaves beyond its first MiB: ciphertext where its data area starts.
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(16 << 20)).unwrap();
    let ciphertext: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(151) % 251) as u8 | 1)
        .collect();
    f.write_all(&ciphertext).unwrap();
    drop(f);
    let before = common::digest(&disk);
    let typed = typed_at_creation();
    let boot = common::run_with(
        &disk,
        Some(&tpm.tcti()),
        dir.path(),
        &["unlock", "--first-boot"],
        &typed,
    );
    assert_eq!(boot.code, Some(4), "{}", boot.out);
    assert!(boot.out.contains("not an Anchor vault"), "{}", boot.out);
    assert_eq!(
        common::digest(&disk),
        before,
        "first boot wrote to the disk"
    );
    let mut init = vec!["init", "--no-open"];
    init.extend_from_slice(&CHEAP);
    let made = common::run_with(&disk, Some(&tpm.tcti()), dir.path(), &init, &typed);
    assert_eq!(made.code, Some(1), "{}", made.out);
    assert!(made.out.contains("without --force"), "{}", made.out);
    assert_eq!(common::digest(&disk), before, "init wrote to the disk");
    assert_eq!(luks::probe(&disk).unwrap(), DiskState::Foreign);
}
