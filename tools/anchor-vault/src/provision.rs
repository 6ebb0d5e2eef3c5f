// SPDX-License-Identifier: GPL-3.0-or-later
//! Creating a vault: `anchor-vault init`, and the first-boot flow `unlock --first-boot`
//! offers on a blank disk.
//!
//! Order matters: everything on the TPM is prepared before the disk is touched, so a
//! TPM that refuses leaves the disk as it was. The disk must be blank (or, with
//! `--force`, hold something that is not a LUKS header: an existing vault, even a
//! damaged one, is never overwritten).

use std::time::Instant;

use zeroize::Zeroizing;

use crate::auditlog::Event;
use crate::console::Console;
use crate::error::{Outcome, VaultError};
use crate::keys::{self, RecoveryKey, Secret, SALT_LEN, TPM_SECRET_LEN};
use crate::luks::{self, DiskState, RECOVERY_SLOT, TPM_SLOT};
use crate::persist;
use crate::settings::{InitOptions, Paths, PcrKeyChoice};
use crate::sys::esys::RawEsys;
use crate::token::{AuditNv, VaultToken};
use crate::tpm::nv::Indices;
use crate::tpm::{self, PcrKey, SealPolicy, Tpm, TpmError};
use crate::unlock::{self, How, Timing};

/// The shortest passphrase accepted.
pub const MIN_PASSPHRASE: usize = 8;

/// Ask for a new passphrase twice (three rounds at most).
fn new_passphrase(con: &mut dyn Console) -> Result<Option<Secret>, VaultError> {
    for _ in 0..3 {
        let Some(first) = con.secret("New vault passphrase: ")? else {
            return Ok(None);
        };
        if first.len() < MIN_PASSPHRASE {
            con.say(&format!(
                "Use at least {MIN_PASSPHRASE} characters (the TPM limits guesses, but the passphrase is still half of the key)."
            ));
            continue;
        }
        let Some(again) = con.secret("Type it again: ")? else {
            return Ok(None);
        };
        if *first == *again {
            return Ok(Some(first));
        }
        con.say("The two passphrases differ.");
    }
    Ok(None)
}

/// Show the new recovery key, once, and wait for Enter.
pub fn show_recovery_key(con: &mut dyn Console, key: &RecoveryKey) -> Result<(), VaultError> {
    con.say("================================ RECOVERY KEY ================================");
    // Built in a wiped buffer of its final size (it never grows, so no unwiped copy is
    // left behind by a reallocation).
    let mut line = Zeroizing::new(String::with_capacity(4 + key.text().len()));
    line.push_str("    ");
    line.push_str(key.text());
    con.say(&line);
    con.say("==============================================================================");
    con.say("Write it down now and keep it away from this machine: it is shown only this once.");
    con.say("It opens the vault when the TPM cannot (changed boot chain, TPM lockout, no TPM).");
    con.line("Press Enter once you have written it down: ")?;
    Ok(())
}

/// What the TPM side of a new vault produced.
struct Sealed {
    token: VaultToken,
    keyslot: Secret,
    /// Why the dictionary-attack settings stay as they are (`None`: anchor-vault sets
    /// them once the recovery key has been shown).
    da_note: Option<String>,
}

/// Set the dictionary-attack parameters and make the lockout authorization the
/// recovery key's (only when nobody owned the lockout hierarchy). Done after the
/// recovery key was shown: a failure before that must not leave the TPM locked to a
/// key nobody saw.
pub(crate) fn take_lockout(
    tcti: &str,
    recovery: &RecoveryKey,
    opts: &InitOptions,
) -> Result<String, VaultError> {
    let mut raw = RawEsys::open(tcti).map_err(TpmError::from)?;
    raw.da_parameters(
        &[],
        opts.da.max_tries,
        opts.da.recovery_s,
        opts.da.lockout_recovery_s,
    )
    .map_err(TpmError::from)?;
    drop(raw);
    let mut tpm = Tpm::open(tcti)?;
    tpm.set_lockout_auth(&*recovery.lockout_auth())?;
    Ok(format!(
        "set: {} tries, one forgiven every {} s; clearing a lockout needs the recovery key",
        opts.da.max_tries, opts.da.recovery_s
    ))
}

/// The key a new vault's signed PCR 11 policy trusts, if any.
fn pcr_key(choice: &PcrKeyChoice) -> Result<Option<PcrKey>, VaultError> {
    match choice {
        PcrKeyChoice::Off => Ok(None),
        PcrKeyChoice::IfPresent(p) if !p.exists() => Ok(None),
        PcrKeyChoice::IfPresent(p) | PcrKeyChoice::Required(p) => PcrKey::read(p)
            .map(Some)
            .map_err(|e| TpmError::Signed(e).into()),
    }
}

/// Before anything is asked or written: a vault sealed to a signed PCR 11 policy opens
/// only on an image whose `.pcrsig` covers its PCR 11 under the trusted key, so refuse
/// to create one on an image that could not open it itself (a wrong `.pcrpkey`, a
/// signature made with another key or for another image, no signature at all).
fn image_opens_what_it_seals(
    tcti: &str,
    opts: &InitOptions,
    signature: &std::path::Path,
) -> Result<(), VaultError> {
    let Some(key) = pcr_key(&opts.pcr_key)? else {
        return Ok(());
    };
    let mut tpm = Tpm::open(tcti)?;
    let policy = tpm.signed_policy(key, &opts.pcrs)?;
    match tpm.approve(&policy, &tpm::signed::PcrSignature::read(signature)) {
        Ok(_) => Ok(()),
        Err(e) => Err(VaultError::Refused(format!(
            "not creating a vault this image could not open again: {e}; nothing was changed"
        ))),
    }
}

/// Prepare the TPM side: seal the secret, define the audit anchor, note who owns the
/// lockout hierarchy.
fn prepare_tpm(tcti: &str, pass: &[u8], opts: &InitOptions) -> Result<Sealed, VaultError> {
    let mut tpm = Tpm::open(tcti)?;
    let da = tpm.da_status()?;
    if da.owner_auth_set {
        return Err(TpmError::OwnerAuth.into());
    }
    let policy = match pcr_key(&opts.pcr_key)? {
        Some(key) => tpm.signed_policy(key, &opts.pcrs)?,
        None => tpm.pcr_policy(&opts.pcrs)?,
    };
    let secret = keys::random(TPM_SECRET_LEN)?;
    let salt = keys::random(SALT_LEN)?;
    let blob = tpm.seal(&secret, &*keys::tpm_auth(&salt, pass), &policy)?;
    tpm.define_anchor(Indices::default())?;
    let keyslot = keys::keyslot_key(&secret, pass, &salt);
    drop(secret);
    let da_note = if da.lockout_auth_set {
        Some(format!(
            "kept as they are (the TPM's lockout authorization is already set): {} tries, one forgiven every {} s",
            da.max_tries, da.recovery_s
        ))
    } else {
        None
    };
    Ok(Sealed {
        token: VaultToken {
            blob,
            policy,
            salt: salt.to_vec(),
            audit: Some(AuditNv {
                indices: Indices::default(),
            }),
        },
        keyslot,
        da_note,
    })
}

/// What is said before a vault whose creation was cut short is created again.
pub const CUT_SHORT: &str = "The vault's creation on this disk was cut short (before its filesystem was made): it never held anything. Creating it again.";

/// Create a vault on `paths.disk`; `force` allows overwriting a non-LUKS disk.
pub fn init(
    con: &mut dyn Console,
    paths: &Paths,
    opts: &InitOptions,
    tcti: Option<&str>,
    force: bool,
) -> Result<Outcome, VaultError> {
    match luks::probe(&paths.disk)? {
        DiskState::Blank => {}
        DiskState::Luks if luks::unfinished(&paths.disk)? => {
            con.say(CUT_SHORT);
        }
        DiskState::Luks => {
            return Err(VaultError::Refused(format!(
                "{} already holds a LUKS header (a vault, perhaps a damaged one): refusing to overwrite it; nothing was changed",
                paths.disk.display()
            )))
        }
        DiskState::Foreign if force => {}
        DiskState::Foreign => {
            return Err(VaultError::Refused(format!(
                "{} is not blank: refusing to overwrite it without --force; nothing was changed",
                paths.disk.display()
            )))
        }
    }
    create(con, paths, opts, tcti)
}

/// The first-boot flow on a blank disk: explain, ask, create, open.
pub fn first_boot(
    con: &mut dyn Console,
    paths: &Paths,
    opts: &InitOptions,
    tcti: Option<&str>,
) -> Result<Outcome, VaultError> {
    con.say(&format!(
        "{} is blank: this is the first boot. A new vault will be created on it.",
        paths.disk.display()
    ));
    con.say("Choose a passphrase: you will type it at every boot; together with this machine's TPM it opens the vault.");
    create(con, paths, opts, tcti)
}

/// What the creation line adds when the written cost has fewer lanes than `chosen`.
fn lanes_note(chosen: luks::Argon2Cost, written: luks::Argon2Cost) -> String {
    if written.parallel >= chosen.parallel {
        return String::new();
    }
    format!(
        " ({} lanes asked: libcryptsetup gives argon2id at most one per online CPU)",
        chosen.parallel
    )
}

fn create(
    con: &mut dyn Console,
    paths: &Paths,
    opts: &InitOptions,
    tcti: Option<&str>,
) -> Result<Outcome, VaultError> {
    // Before anything is asked: a PCR list the sealing would refuse after the dialog.
    tpm::policy::check_pcrs(&opts.pcrs)
        .map_err(|e| VaultError::Refused(format!("--pcrs: {e}; nothing was changed")))?;
    let tcti = match tpm::find(tcti) {
        Ok(t) => t,
        Err(e) => {
            return Err(VaultError::Refused(format!(
                "a vault needs a TPM 2.0 to seal its key to: {e}"
            )))
        }
    };
    image_opens_what_it_seals(&tcti, opts, &paths.pcr_signature)?;
    let Some(pass) = new_passphrase(con)? else {
        con.say("No passphrase chosen: no vault was created.");
        return Ok(Outcome::NoVault);
    };
    let recovery = RecoveryKey::generate()?;
    let started = Instant::now();
    let sealed = prepare_tpm(&tcti, &pass, opts)?;
    drop(pass);
    let tpm_s = started.elapsed().as_secs_f64();
    con.say(&format!(
        "Sealing policy: {}.",
        sealed.token.policy.describe()
    ));
    // Shown before the disk is written: a power cut while a person copies the key
    // (the one step that waits for them) must leave the disk blank, not a vault that
    // opens but holds no filesystem and that nothing will replace.
    show_recovery_key(con, &recovery)?;
    let started = Instant::now();
    // Until the filesystem is made, the header says the creation is under way (its label,
    // written with the header itself): cut short (a failure, a kill, a power cut), the
    // vault is created again, never left as one that opens but can never be mounted, or
    // has no keyslot, and that nothing would replace.
    let mut vault = luks::format(&paths.disk)?;
    vault.add_keyslot(TPM_SLOT, &sealed.keyslot, opts.cost)?;
    vault.add_keyslot(RECOVERY_SLOT, recovery.text().as_bytes(), opts.cost)?;
    vault.set_token(&sealed.token.to_json())?;
    let created_s = tpm_s + started.elapsed().as_secs_f64();
    // The cost as written: libcryptsetup gives argon2id at most one lane per online CPU.
    let written = vault.keyslot_cost(TPM_SLOT).unwrap_or(opts.cost);
    con.say(&format!(
        "Vault created on {} in {created_s:.1} s: LUKS2 aes-xts-plain64, keyslot {TPM_SLOT} (TPM + passphrase) and keyslot {RECOVERY_SLOT} (recovery key), {written}{}.",
        paths.disk.display(),
        lanes_note(opts.cost, written)
    ));
    // The lockout authorization is taken once the vault is made: a creation cut short
    // before must not leave the TPM's lockout owned by a recovery key that opens nothing.
    let lockout = |con: &mut dyn Console| {
        let da_note = match sealed.da_note.clone() {
            Some(note) => note,
            None => take_lockout(&tcti, &recovery, opts)
                .unwrap_or_else(|e| format!("not changed ({e})")),
        };
        con.say(&format!("TPM dictionary-attack settings {da_note}."));
    };
    if !opts.open {
        // Header and TPM objects only, as asked: nothing more will be made here.
        vault.mark_finished()?;
        lockout(con);
        return Ok(Outcome::Done);
    }
    let start = Instant::now();
    vault.activate(&paths.mapper, TPM_SLOT, &sealed.keyslot)?;
    let keyslot_s = start.elapsed().as_secs_f64();
    let mkfs = persist::find_mkfs(paths.mkfs.as_deref()).ok_or_else(|| {
        VaultError::Refused("mke2fs not found: cannot make the vault's filesystem".to_owned())
    });
    let made = mkfs.and_then(|mkfs| {
        persist::mkfs(&mkfs, &persist::mapper_path(&paths.mapper)).map_err(VaultError::from)
    });
    if let Err(e) = made.and_then(|()| vault.mark_finished().map_err(VaultError::from)) {
        let _ = luks::deactivate(&paths.disk, &paths.mapper);
        return Err(e);
    }
    lockout(con);
    drop(recovery);
    drop(sealed.keyslot);
    let mut pcrs: Vec<String> = opts.pcrs.iter().map(u8::to_string).collect();
    if let Some(key) = sealed.token.policy.signing_key() {
        pcrs.push(format!(
            "11:signed:{}",
            tpm::signed::short(&key.fingerprint())
        ));
    }
    let cost = opts.cost.to_string();
    let events = vec![Event::new(
        "vault.init",
        &[("pcrs", &pcrs.join(",")), ("kdf", &cost)],
    )];
    let tpm = Tpm::open(&tcti).ok();
    unlock::finish(
        con,
        paths,
        tpm,
        How::Created,
        Timing {
            start,
            tpm_s: 0.0,
            keyslot_s,
        },
        events,
    )
}

impl Tpm {
    /// A PCR policy over `pcrs` with their current values.
    pub fn pcr_policy(&mut self, pcrs: &[u8]) -> Result<SealPolicy, TpmError> {
        Ok(SealPolicy::pcr_now(self.ctx(), pcrs)?)
    }

    /// A signed PCR 11 policy trusting `key`, plus `pcrs` with their current values.
    pub fn signed_policy(&mut self, key: PcrKey, pcrs: &[u8]) -> Result<SealPolicy, TpmError> {
        Ok(SealPolicy::signed_now(self.ctx(), key, pcrs)?)
    }
}
