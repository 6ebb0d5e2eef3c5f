// SPDX-License-Identifier: GPL-3.0-or-later
//! A vault creation cut short right after the LUKS2 header was written, against swtpm.
//! Its own test binary: libcryptsetup-rs allows one thread per process, and this test
//! writes the header in-process (as `init` does) to leave the disk exactly as a cut leaves it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use anchor_vault::luks::{self, DiskState};
use common::{disk, typed_at_creation, Swtpm, CHEAP, PASS};

/// The mark that a creation is under way was a token added in a second header write
/// after the LUKS2 header itself: a power cut or a kill between the two left a header with
/// no keyslot and no mark. `init` refused it for ever ("already holds a LUKS header"),
/// the first boot sent the person to a recovery key that opens nothing, and the vault
/// could never be made without wiping the disk by hand. The header is now marked in the
/// very write that creates it; this is the disk [`luks::format`] leaves, cut short there.
#[test]
fn a_creation_cut_short_right_after_the_header_is_created_again() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 40);
    drop(luks::format(&disk).unwrap());
    assert_eq!(luks::probe(&disk).unwrap(), DiskState::Luks);
    let typed = typed_at_creation();
    let unlock = common::run_with(
        &disk,
        Some(&tpm.tcti()),
        dir.path(),
        &["unlock", "--check"],
        "\n",
    );
    assert_eq!(unlock.code, Some(4), "{}", unlock.out);
    assert!(unlock.out.contains("cut short"), "{}", unlock.out);
    let mut init = vec!["init", "--no-open"];
    init.extend_from_slice(&CHEAP);
    let made = common::run_with(&disk, Some(&tpm.tcti()), dir.path(), &init, &typed);
    assert_eq!(made.code, Some(0), "{}", made.out);
    assert!(made.out.contains("cut short"), "{}", made.out);
    let check = common::run_with(
        &disk,
        Some(&tpm.tcti()),
        dir.path(),
        &["unlock", "--check"],
        &format!("{PASS}\n"),
    );
    assert_eq!(check.code, Some(0), "{}", check.out);
    // Finished: never replaced, and no longer taken for one cut short.
    assert!(!luks::unfinished(&disk).unwrap());
    let again = common::run_with(&disk, Some(&tpm.tcti()), dir.path(), &init, &typed);
    assert_ne!(again.code, Some(0), "{}", again.out);
    assert!(again.out.contains("refusing to overwrite"), "{}", again.out);
}
