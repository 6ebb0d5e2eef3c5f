// SPDX-License-Identifier: GPL-3.0-or-later
//! The signed PCR 11 policy against a real TPM (swtpm), through the library and through
//! the unlock dialog: a vault sealed once under PolicyAuthorize(our key) opens for every
//! system image whose PCR 11 we signed (an update needs no re-enrolment), and the TPM
//! itself refuses an image signed by another key, an image whose PCR 11 nobody signed,
//! and a boot that handed over no signature; the recovery key still opens in each case.
//!
//! A "boot" here is a TPM power cycle followed by the extension systemd-stub would make
//! for an image (one digest into PCR 11); the signatures are made with openssl, exactly as
//! uki/build.sh makes them, and wrapped by the same `anchor_update::pcr::pcrsig_json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anchor_update::pcr;
use anchor_vault::keys;
use anchor_vault::tpm::policy::LOCK_PCR;
use anchor_vault::tpm::signed::short;
use anchor_vault::tpm::{PcrKey, PcrSignature, SealPolicy, SealedBlob, SignedError, Tpm, TpmError};
use common::{disk, recovery_key_of, run_with, typed_at_creation, Swtpm, CHEAP, PASS};
use sha2::{Digest, Sha256};

const SECRET: [u8; 32] = [42; 32];
const SALT: [u8; 32] = [1; 32];

/// An RSA key pair made with openssl, like uki/keys.sh makes the PCR key.
struct Signer {
    key: PathBuf,
    public: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Signer {
    fn new(dir: &Path, name: &str) -> Signer {
        let key = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub.pem"));
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key.to_str().unwrap(),
        ]);
        openssl(&[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        Signer { key, public }
    }

    fn pem(&self) -> String {
        std::fs::read_to_string(&self.public).unwrap()
    }

    fn pcr_key(&self) -> PcrKey {
        PcrKey::read(&self.public).unwrap()
    }

    fn fingerprint(&self) -> [u8; 32] {
        self.pcr_key().fingerprint()
    }

    /// The `.pcrsig` JSON for an image measuring `pcr11`, written to `dir/name`.
    fn sign(&self, dir: &Path, name: &str, pcr11: &[u8; 32]) -> PathBuf {
        let policy = pcr::policy_digest(pcr11);
        let pol = dir.join(format!("{name}.pol"));
        let sig = dir.join(format!("{name}.sig"));
        std::fs::write(&pol, policy).unwrap();
        openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            self.key.to_str().unwrap(),
            "-out",
            sig.to_str().unwrap(),
            pol.to_str().unwrap(),
        ]);
        let json = pcr::pcrsig_json(&self.pem(), &policy, &std::fs::read(&sig).unwrap()).unwrap();
        let out = dir.join(name);
        std::fs::write(&out, json).unwrap();
        out
    }
}

/// One machine: a TPM, a blank vault disk, our PCR signing key and someone else's.
struct Device {
    tpm: Swtpm,
    dir: tempfile::TempDir,
    vault: PathBuf,
    ours: Signer,
    theirs: Signer,
}

impl Device {
    fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        Device {
            tpm: Swtpm::start(),
            vault: disk(dir.path(), 40),
            ours: Signer::new(dir.path(), "ours"),
            theirs: Signer::new(dir.path(), "theirs"),
            dir,
        }
    }

    /// anchor-vault `args` on a boot whose image's `.pcrsig` is `sig`.
    fn run(&self, sig: &Path, args: &[&str], stdin: &str) -> common::Run {
        let mut all = vec!["--pcr-signature", sig.to_str().unwrap()];
        all.extend_from_slice(args);
        run_with(
            &self.vault,
            Some(&self.tpm.tcti()),
            self.dir.path(),
            &all,
            stdin,
        )
    }
}

/// Boot `image`: power-cycle the TPM, extend PCR 11 with its digest; PCR 11's value.
fn boot(tpm: &Swtpm, image: &[u8]) -> [u8; 32] {
    tpm.power_cycle();
    let d: [u8; 32] = Sha256::digest(image).into();
    tpm.extend_pcr_with(11, &pcr::hex(&d));
    pcr::replay(&[pcr::Event {
        what: "image".into(),
        digest: d,
    }])
}

fn auth(pass: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
    keys::tpm_auth(&SALT, pass)
}

fn seal_signed(tpm: &Swtpm, signer: &Signer) -> (SealedBlob, SealPolicy) {
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let policy = t.signed_policy(signer.pcr_key(), &[7]).unwrap();
    let blob = t
        .seal(&SECRET, &*auth(b"right passphrase"), &policy)
        .unwrap();
    (blob, policy)
}

fn refusal(r: Result<Option<anchor_vault::tpm::Approval>, TpmError>) -> SignedError {
    match r {
        Err(TpmError::Signed(e)) => e,
        other => panic!("expected a signed-policy refusal, got {other:?}"),
    }
}

#[test]
fn an_update_signed_by_our_key_unseals_without_reenrolment() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let ours = Signer::new(dir.path(), "ours");
    let v1 = boot(&tpm, b"anchor UKI version 1");
    let (blob, policy) = seal_signed(&tpm, &ours);
    assert!(matches!(policy, SealPolicy::SignedPcr11 { .. }));
    let v1_sig = PcrSignature::read(&ours.sign(dir.path(), "v1.json", &v1));

    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let a = t.approve(&policy, &v1_sig).unwrap().expect("an approval");
    assert_eq!(a.policy(), &pcr::policy_digest(&v1));
    let good = auth(b"right passphrase");
    assert_eq!(
        &*t.unseal(&blob, &*good, &policy, Some(&a)).unwrap(),
        &SECRET
    );
    // The passphrase binding is still the TPM's: a wrong one is an authorization failure.
    assert!(matches!(
        t.unseal(&blob, &*auth(b"wrong passphrase"), &policy, Some(&a)),
        Err(TpmError::AuthFail)
    ));
    // Without the TPM's approval of a signature the policy cannot even be run.
    assert!(matches!(
        t.unseal(&blob, &*good, &policy, None),
        Err(TpmError::Policy(_))
    ));
    drop(t);

    // The update: another PCR 11, signed by the same key. Same sealed blob, no re-seal.
    let v2 = boot(&tpm, b"anchor UKI version 2");
    assert_ne!(v1, v2);
    let v2_sig = PcrSignature::read(&ours.sign(dir.path(), "v2.json", &v2));
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    match refusal(t.approve(&policy, &v1_sig)) {
        SignedError::NotCovered { pcr11, .. } => assert_eq!(pcr11, v2),
        e => panic!("v1's signature under v2's PCR 11: {e}"),
    }
    let a2 = t.approve(&policy, &v2_sig).unwrap().unwrap();
    assert_eq!(
        &*t.unseal(&blob, &*good, &policy, Some(&a2)).unwrap(),
        &SECRET
    );
    // v1's approval (a valid ticket for v1's policy) does not fit v2's PCR 11.
    assert!(matches!(
        t.unseal(&blob, &*good, &policy, Some(&a)),
        Err(TpmError::PolicyFail | TpmError::Command(..))
    ));
    // The lock PCR still ends unsealing for the rest of the boot.
    t.extend_pcr(LOCK_PCR, &[9; 32]).unwrap();
    assert!(matches!(
        t.unseal(&blob, &*good, &policy, Some(&a2)),
        Err(TpmError::PolicyFail)
    ));
    drop(t);

    // PCR 7 stays bound by value: a changed Secure Boot state refuses a signed image.
    let v2_again = boot(&tpm, b"anchor UKI version 2");
    assert_eq!(v2_again, v2);
    tpm.extend_pcr(7);
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    assert_eq!(t.changed_pcrs(&policy).unwrap(), vec![7]);
    let a3 = t.approve(&policy, &v2_sig).unwrap().unwrap();
    assert!(matches!(
        t.unseal(&blob, &*good, &policy, Some(&a3)),
        Err(TpmError::PolicyFail)
    ));
}

#[test]
fn the_tpm_refuses_an_image_signed_by_another_key() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let ours = Signer::new(dir.path(), "ours");
    let theirs = Signer::new(dir.path(), "theirs");
    let v1 = boot(&tpm, b"anchor UKI version 1");
    let (blob, policy) = seal_signed(&tpm, &ours);
    let v1_sig = PcrSignature::read(&ours.sign(dir.path(), "v1.json", &v1));

    let foreign = boot(&tpm, b"someone else's UKI");
    let their_file = theirs.sign(dir.path(), "foreign.json", &foreign);
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let e = refusal(t.approve(&policy, &PcrSignature::read(&their_file)));
    match &e {
        SignedError::NotOurKey {
            theirs: fp,
            ours: ofp,
        } => {
            assert_eq!(fp, &theirs.fingerprint());
            assert_eq!(ofp, &ours.fingerprint());
        }
        other => panic!("{other}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&short(&theirs.fingerprint())), "{msg}");
    assert!(msg.contains(&short(&ours.fingerprint())), "{msg}");
    assert_eq!(e.reason(), "pcr11-signed-by-foreign-key");

    // Claiming our fingerprint changes nothing: the TPM checks the signature itself.
    let text = std::fs::read_to_string(&their_file).unwrap();
    let forged = text.replace(
        &pcr::hex(&theirs.fingerprint()),
        &pcr::hex(&ours.fingerprint()),
    );
    assert_ne!(forged, text);
    let forged_file = dir.path().join("forged.json");
    std::fs::write(&forged_file, forged).unwrap();
    assert!(matches!(
        refusal(t.approve(&policy, &PcrSignature::read(&forged_file))),
        SignedError::NotOurKey { .. }
    ));
    // Our own signatures cover our images only.
    assert!(matches!(
        refusal(t.approve(&policy, &v1_sig)),
        SignedError::NotCovered { .. }
    ));
    // No unseal without an approval; and an approval by another key does not satisfy a
    // policy naming ours (PolicyAuthorize binds the key's Name).
    let their_policy = SealPolicy::SignedPcr11 {
        key: theirs.pcr_key(),
        expected: match &policy {
            SealPolicy::SignedPcr11 { expected, .. } => expected.clone(),
            SealPolicy::Pcr { .. } => panic!("sealed to a plain PCR policy"),
        },
    };
    let their_approval = t
        .approve(&their_policy, &PcrSignature::read(&their_file))
        .unwrap()
        .unwrap();
    assert!(matches!(
        t.unseal(
            &blob,
            &*auth(b"right passphrase"),
            &policy,
            Some(&their_approval)
        ),
        Err(TpmError::PolicyFail | TpmError::Command(..))
    ));
    // Refusals of a signature are not passphrase guesses: nothing was counted.
    assert_eq!(t.da_status().unwrap().failures, 0);
}

#[test]
fn a_missing_or_unsigned_pcr11_policy_is_a_clear_refusal() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let ours = Signer::new(dir.path(), "ours");
    let v1 = boot(&tpm, b"anchor UKI version 1");
    let (_, policy) = seal_signed(&tpm, &ours);
    let mut t = Tpm::open(&tpm.tcti()).unwrap();

    let missing = dir.path().join("tpm2-pcr-signature.json");
    let e = refusal(t.approve(&policy, &PcrSignature::read(&missing)));
    assert!(matches!(e, SignedError::Missing(_)), "{e}");
    assert!(
        e.to_string().contains("tpm2-pcr-signature.json is missing"),
        "{e}"
    );

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"sha256\": [{\"pcrs\": [11]}]}").unwrap();
    assert!(matches!(
        refusal(t.approve(&policy, &PcrSignature::read(&garbage))),
        SignedError::Malformed(..)
    ));

    // Signed, but for another PCR only: no entry for PCR 11.
    let other = ours.sign(dir.path(), "pcr7.json", &v1);
    let text = std::fs::read_to_string(&other)
        .unwrap()
        .replace("\"pcrs\":[11]", "\"pcrs\":[7]");
    std::fs::write(&other, text).unwrap();
    assert!(matches!(
        refusal(t.approve(&policy, &PcrSignature::read(&other))),
        SignedError::NoEntry(_)
    ));

    // PCR 11 of an image nobody signed.
    drop(t);
    let unsigned = boot(&tpm, b"an unsigned image");
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let v1_file = ours.sign(dir.path(), "v1.json", &v1);
    let e = refusal(t.approve(&policy, &PcrSignature::read(&v1_file)));
    assert!(
        matches!(e, SignedError::NotCovered { pcr11, .. } if pcr11 == unsigned),
        "{e}"
    );
    assert!(e.to_string().contains(&pcr::hex(&unsigned)), "{e}");
    // A plain PCR policy needs no signature at all.
    let plain = t.pcr_policy(&[7]).unwrap();
    assert!(t
        .approve(&plain, &PcrSignature::read(&missing))
        .unwrap()
        .is_none());
}

/// The unlock dialog: the product path up to the keyslot (`unlock --check`).
#[test]
fn the_unlock_dialog_follows_updates_and_sends_foreign_images_to_the_recovery_key() {
    let d = Device::new();
    let (tpm, dir, ours, theirs) = (&d.tpm, &d.dir, &d.ours, &d.theirs);
    let run = |args: &[&str], sig: &Path, stdin: &str| d.run(sig, args, stdin);
    let v1 = boot(tpm, b"anchor UKI version 1");
    let v1_file = ours.sign(dir.path(), "v1.json", &v1);
    let mut init = vec![
        "init",
        "--no-open",
        "--pcr-public-key",
        ours.public.to_str().unwrap(),
    ];
    init.extend_from_slice(&CHEAP);
    let r = run(&init, &v1_file, &typed_at_creation());
    assert_eq!(r.code, Some(0), "{}", r.out);
    let fp = short(&ours.fingerprint());
    assert!(
        r.out.contains(&format!(
            "PCR 11 (unified kernel image) as signed by key {fp}"
        )),
        "{}",
        r.out
    );
    let recovery = recovery_key_of(&r.out);
    let status = run(&["status"], &v1_file, "");
    assert!(
        status.out.contains("TPM2 signed PCR policy"),
        "{}",
        status.out
    );

    let opened = "Checked: the passphrase opens the vault";
    let r = run(&["unlock", "--check"], &v1_file, &format!("{PASS}\n"));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains(opened), "{}", r.out);

    // An update signed by our key: the same vault opens, nothing re-enrolled.
    let v2 = boot(tpm, b"anchor UKI version 2");
    let v2_file = ours.sign(dir.path(), "v2.json", &v2);
    let r = run(&["unlock", "--check"], &v2_file, &format!("{PASS}\n"));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains(opened), "{}", r.out);

    // A foreign image: refused before any passphrase is asked; the recovery key opens.
    let foreign = boot(tpm, b"someone else's UKI");
    let foreign_file = theirs.sign(dir.path(), "foreign.json", &foreign);
    let r = run(
        &["unlock", "--check"],
        &foreign_file,
        &format!("{recovery}\n"),
    );
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(
        r.out.contains(&format!(
            "signed by key {}, not by the key this vault trusts ({fp})",
            short(&theirs.fingerprint())
        )),
        "{}",
        r.out
    );
    assert!(!r.out.contains("Vault passphrase"), "{}", r.out);
    assert!(
        r.out.contains("Checked: the recovery key opens the vault"),
        "{}",
        r.out
    );
    // The same image with its signature gone, and with only our (non-covering) one.
    let missing = dir.path().join("no-such-signature.json");
    let r = run(&["unlock", "--check"], &missing, &format!("{recovery}\n"));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(
        r.out.contains("carries no signed PCR 11 policy"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("no-such-signature.json is missing"),
        "{}",
        r.out
    );
    let r = run(&["unlock", "--check"], &v2_file, "\n");
    assert_eq!(r.code, Some(3), "{}", r.out);
    assert!(r.out.contains("no policy signed in"), "{}", r.out);
    assert!(r.out.contains("The vault stays locked."), "{}", r.out);
    let log = std::fs::read_to_string(dir.path().join("pre.log")).unwrap();
    for reason in [
        "pcr11-signed-by-foreign-key",
        "no-signed-pcr-policy",
        "pcr11-not-signed",
    ] {
        assert!(
            log.contains(&format!("event=vault.unlock.refused reason={reason}")),
            "{reason} not in the audit log: {log}"
        );
    }
    // Back on our image, the passphrase works again: nothing was used up.
    boot(tpm, b"anchor UKI version 2");
    let r = run(&["unlock", "--check"], &v2_file, &format!("{PASS}\n"));
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains(opened), "{}", r.out);
}

/// `init` on an image whose signed policy it could not use itself (signed by another key,
/// not covering this PCR 11, or missing) refuses before asking anything, and the disk
/// stays blank; on our signed image the same command creates the vault.
#[test]
fn init_refuses_to_seal_a_vault_this_image_could_not_open() {
    let d = Device::new();
    let (tpm, dir, ours, theirs, vault) = (&d.tpm, &d.dir, &d.ours, &d.theirs, &d.vault);
    let mut args = vec!["init", "--no-open", "--pcr-public-key"];
    args.push(ours.public.to_str().unwrap());
    args.extend_from_slice(&CHEAP);
    let init = |sig: &Path, stdin: &str| d.run(sig, &args, stdin);
    let blank = |why: &str| {
        let head = std::fs::read(vault).unwrap();
        assert!(
            head.iter().take(1 << 20).all(|&b| b == 0),
            "{why}: disk written"
        );
    };
    let now = boot(tpm, b"anchor UKI version 1");
    let elsewhere = boot(tpm, b"some other image");
    boot(tpm, b"anchor UKI version 1");
    let cases = [
        (
            theirs.sign(dir.path(), "theirs.json", &now),
            "not by the key this vault trusts",
        ),
        (
            ours.sign(dir.path(), "other.json", &elsewhere),
            "no policy signed in",
        ),
        (dir.path().join("missing.json"), "missing"),
    ];
    for (sig, why) in &cases {
        // No passphrase is typed: a refusal must come before the dialog asks for one.
        let r = init(sig, "");
        assert_ne!(r.code, Some(0), "{}", r.out);
        assert!(
            r.out
                .contains("not creating a vault this image could not open again"),
            "{}",
            r.out
        );
        assert!(r.out.contains(why), "{why}: {}", r.out);
        assert!(r.out.contains("nothing was changed"), "{}", r.out);
        assert!(!r.out.contains("passphrase"), "asked anyway: {}", r.out);
        blank(why);
    }
    let good = ours.sign(dir.path(), "v1.json", &now);
    let r = init(&good, &typed_at_creation());
    assert_eq!(r.code, Some(0), "{}", r.out);
}

/// A vault sealed before signed policies existed (PCRs by value) keeps opening: it never
/// looks at the image's signature.
#[test]
fn a_vault_sealed_to_pcrs_by_value_still_opens() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let vault = disk(dir.path(), 40);
    let tcti = tpm.tcti();
    let ours = Signer::new(dir.path(), "ours");
    // Even with a UKI's key on hand, --no-signed-pcr11 makes the old kind.
    let mut init = vec![
        "init",
        "--no-open",
        "--no-signed-pcr11",
        "--pcr-signature",
        "/nonexistent/tpm2-pcr-signature.json",
    ];
    init.extend_from_slice(&CHEAP);
    let r = run_with(&vault, Some(&tcti), dir.path(), &init, &typed_at_creation());
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(
        r.out.contains("Sealing policy: TPM2 PCR policy"),
        "{}",
        r.out
    );
    let r = run_with(
        &vault,
        Some(&tcti),
        dir.path(),
        &[
            "unlock",
            "--check",
            "--pcr-signature",
            "/nonexistent/tpm2-pcr-signature.json",
        ],
        &format!("{PASS}\n"),
    );
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(
        r.out.contains("Checked: the passphrase opens the vault"),
        "{}",
        r.out
    );
    // --pcr-public-key with a file that is not a key: refused before anything is written.
    let other = dir.path().join("other.img");
    std::fs::File::create(&other)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let mut init = vec![
        "init",
        "--no-open",
        "--pcr-public-key",
        ours.key.to_str().unwrap(),
    ];
    init.extend_from_slice(&CHEAP);
    let r = run_with(&other, Some(&tcti), dir.path(), &init, &typed_at_creation());
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert!(r.out.contains("PCR policy public key"), "{}", r.out);
    assert!(
        std::fs::read(&other).unwrap().iter().all(|&b| b == 0),
        "the disk was written"
    );
}
