// SPDX-License-Identifier: GPL-3.0-or-later
//! The TPM side through the library, against swtpm: the TPM itself (not only
//! anchor-vault's pre-checks) enforces the passphrase, the PCR policy and the lock PCR,
//! and the audit anchor's NV indices behave as documented.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use anchor_audit::chain::{digest, link};
use anchor_audit::GENESIS;
use anchor_vault::keys;
use anchor_vault::sys::esys::RawEsys;
use anchor_vault::tpm::nv::{self, Indices};
use anchor_vault::tpm::policy::LOCK_PCR;
use anchor_vault::tpm::{Tpm, TpmError};
use common::Swtpm;

fn sealed(tpm: &Swtpm) -> (anchor_vault::tpm::SealedBlob, anchor_vault::tpm::SealPolicy) {
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let policy = t.pcr_policy(&[0, 7]).unwrap();
    let auth = keys::tpm_auth(&[1; 32], b"right passphrase");
    let blob = t.seal(&[42u8; 32], &*auth, &policy).unwrap();
    (blob, policy)
}

#[test]
fn the_tpm_checks_the_passphrase_and_counts_failures() {
    let tpm = Swtpm::start();
    let (blob, policy) = sealed(&tpm);
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let good = keys::tpm_auth(&[1; 32], b"right passphrase");
    let bad = keys::tpm_auth(&[1; 32], b"wrong passphrase");
    assert_eq!(
        &*t.unseal(&blob, &*good, &policy, None).unwrap(),
        &[42u8; 32]
    );
    let before = t.da_status().unwrap().failures;
    assert!(matches!(
        t.unseal(&blob, &*bad, &policy, None),
        Err(TpmError::AuthFail)
    ));
    assert_eq!(t.da_status().unwrap().failures, before + 1);
    // Unsealing twice in one connection works (sessions and objects were flushed).
    for _ in 0..4 {
        assert_eq!(
            &*t.unseal(&blob, &*good, &policy, None).unwrap(),
            &[42u8; 32]
        );
    }
}

/// The storage root key the TPM answers with was taken on trust: something between the
/// machine and its TPM could answer CreatePrimary with a key of its own, receive the
/// salt of the session the secret comes back under, and read the secret. Its name is
/// recorded when sealing and a different one is refused before anything is sent under
/// it. A different SRK is made here by TPM2_Clear (a new owner seed).
#[test]
fn a_different_storage_root_key_is_refused_before_anything_is_sent_under_it() {
    let tpm = Swtpm::start();
    let (blob, policy) = sealed(&tpm);
    assert_eq!(
        blob.srk_name.as_ref().map(Vec::len),
        Some(34),
        "a SHA-256 name"
    );
    tpm.tool(&["tpm2_clear", "-c", "p"]);
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let good = keys::tpm_auth(&[1; 32], b"right passphrase");
    let e = t.unseal(&blob, &*good, &policy, None).unwrap_err();
    assert!(matches!(e, TpmError::SrkChanged), "{e}");
    assert!(
        e.to_string()
            .contains("storage root key is not the one the vault was sealed under"),
        "{e}"
    );
    // A token written before the name was recorded is not checked (the load fails here).
    let mut older = blob;
    older.srk_name = None;
    assert!(matches!(
        t.unseal(&older, &*good, &policy, None),
        Err(TpmError::Blob(_))
    ));
}

#[test]
fn the_tpm_refuses_after_a_pcr_changes_without_counting_a_guess() {
    let tpm = Swtpm::start();
    let (blob, policy) = sealed(&tpm);
    tpm.extend_pcr(7);
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let good = keys::tpm_auth(&[1; 32], b"right passphrase");
    assert_eq!(t.changed_pcrs(&policy).unwrap(), vec![7]);
    let before = t.da_status().unwrap().failures;
    assert!(matches!(
        t.unseal(&blob, &*good, &policy, None),
        Err(TpmError::PolicyFail)
    ));
    assert!(matches!(
        t.unseal(&blob, &*keys::tpm_auth(&[1; 32], b"x"), &policy, None),
        Err(TpmError::PolicyFail)
    ));
    assert_eq!(t.da_status().unwrap().failures, before);
}

#[test]
fn extending_the_lock_pcr_ends_unsealing_until_reboot() {
    let tpm = Swtpm::start();
    let (blob, policy) = sealed(&tpm);
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let good = keys::tpm_auth(&[1; 32], b"right passphrase");
    assert!(t.unseal(&blob, &*good, &policy, None).is_ok());
    t.extend_pcr(LOCK_PCR, &digest(b"anchor-vault: vault opened"))
        .unwrap();
    assert!(matches!(
        t.unseal(&blob, &*good, &policy, None),
        Err(TpmError::PolicyFail)
    ));
    assert_eq!(t.changed_pcrs(&policy).unwrap(), vec![LOCK_PCR]);
}

#[test]
fn a_blob_sealed_by_another_tpm_does_not_load() {
    let a = Swtpm::start();
    let b = Swtpm::start();
    let (blob, policy) = sealed(&a);
    let mut t = Tpm::open(&b.tcti()).unwrap();
    let good = keys::tpm_auth(&[1; 32], b"right passphrase");
    // Its storage root key is another: refused before the blob is sent.
    assert!(matches!(
        t.unseal(&blob, &*good, &policy, None),
        Err(TpmError::SrkChanged)
    ));
    // Without the recorded name (an older token), the TPM refuses to load it.
    let mut older = blob.clone();
    older.srk_name = None;
    match t.unseal(&older, &*good, &policy, None) {
        Err(TpmError::Blob(why)) => assert!(why.contains("another TPM"), "{why}"),
        other => panic!("{other:?}"),
    }
    let mut damaged = blob.clone();
    damaged.public.truncate(10);
    assert!(matches!(
        t.unseal(&damaged, &*good, &policy, None),
        Err(TpmError::Blob(_))
    ));
}

#[test]
fn the_audit_anchor_counts_and_chains_and_never_goes_back() {
    let tpm = Swtpm::start();
    let idx = Indices::default();
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    t.define_anchor(idx).unwrap();
    let s = t.read_anchor(idx).unwrap();
    assert_eq!(s.head, GENESIS);
    let start = s.counter;
    assert!(start >= 1, "the counter is written once at definition");
    drop(t);
    let digests = [digest(b"one"), digest(b"two"), digest(b"three")];
    let mut raw = RawEsys::open(&tpm.tcti()).unwrap();
    for d in &digests {
        nv::advance(&mut raw, idx, d).unwrap();
    }
    drop(raw);
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let s = t.read_anchor(idx).unwrap();
    let want = digests.iter().fold(GENESIS, |h, d| link(&h, d));
    assert_eq!((s.counter, s.head), (start + 3, want));
    // Defining the anchor again (a new vault) resets the head, never the counter.
    t.define_anchor(idx).unwrap();
    let s = t.read_anchor(idx).unwrap();
    assert_eq!(s.head, GENESIS);
    assert!(s.counter >= start + 3, "counter went back: {}", s.counter);
}
