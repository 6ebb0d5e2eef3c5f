// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchor-vault unlock`: the boot-time dialog on the trusted console.
//!
//! 1. Look at the disk without changing it: blank (first boot: offer to create the
//!    vault), something else (refuse), both LUKS2 header copies damaged (say so, exit 5,
//!    nothing written). A damaged copy (first or second) is restored on the disk from
//!    the other by libcryptsetup, and said and audited (`status` only reports it).
//! 2. Before asking anything, ask the TPM: no TPM, dictionary-attack lockout, or PCRs
//!    that differ from the sealed ones each go straight to the recovery key, with a
//!    plain explanation (typing the passphrase could not help).
//! 3. Up to `tries` passphrases: the TPM checks each (a wrong one counts against its
//!    lockout, and the message says how many tries the TPM still allows).
//! 4. The recovery key, if the passphrase path failed (or an empty line to give up).
//! 5. Open, mount /persist nodev,nosuid,noexec, extend the lock PCR, carry the audit
//!    log over and anchor it, make the volumes the policies ask for.
//!
//! Secrets live in wiped buffers and are dropped as soon as the keyslot has opened.

use std::time::Instant;

use crate::auditlog::{self, Event};
use crate::console::Console;
use crate::error::{Outcome, VaultError};
use crate::keys::{self, RecoveryKey};
use crate::luks::{self, DiskState, LuksError, Restored, Vault, RECOVERY_SLOT, TPM_SLOT};
use crate::persist;
use crate::provision;
use crate::settings::{InitOptions, Paths, UnlockOptions};
use crate::token::VaultToken;
use crate::tpm::policy::{pcr_meaning, LOCK_PCR};
use crate::tpm::{self, DaStatus, PcrSignature, SignedError, Tpm, TpmError};

/// Recovery-key attempts before giving up.
pub const RECOVERY_TRIES: u32 = 3;

/// The passphrase prompt (an empty line switches to the recovery key).
pub const PASSPHRASE_PROMPT: &str = "Vault passphrase (Enter alone for the recovery key): ";

/// What the PCR lock is extended with once the vault is open.
pub const LOCK_EVENT: &[u8] = b"anchor-vault: vault opened";

/// How the vault was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Passphrase,
    Recovery,
    Created,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Passphrase => "passphrase",
            How::Recovery => "recovery key",
            How::Created => "new vault",
        }
    }
}

/// Where the time went, from the moment the right key was entered.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub start: Instant,
    /// TPM unseal (zero on the recovery path).
    pub tpm_s: f64,
    /// The keyslot (argon2id) and device activation.
    pub keyslot_s: f64,
}

enum Phase {
    /// Opened; with the recovery key that opened it, if that was the way.
    Opened(How, Timing, Option<RecoveryKey>),
    Recovery,
    GiveUp,
}

/// Record an event before /persist is open (it is carried over later). Never fatal.
fn pre_audit(con: &mut dyn Console, paths: &Paths, event: &Event) {
    if let Err(e) = auditlog::append_pre_unlock(&paths.pre_log, event) {
        con.say(&format!("(audit record not written: {e})"));
    }
}

/// Open keyslot `slot` with `key`: check only, or create the mapper device.
pub fn open_slot(
    vault: &mut Vault,
    paths: &Paths,
    slot: u32,
    key: &[u8],
    check: bool,
) -> Result<(), LuksError> {
    if check {
        vault.check(slot, key)
    } else {
        vault.activate(&paths.mapper, slot, key)
    }
}

fn minutes(s: u32) -> String {
    if s >= 120 {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}

fn explain_lockout(con: &mut dyn Console, da: Option<&DaStatus>) {
    con.say("The TPM is refusing passphrases: too many wrong ones were tried (its dictionary-attack lockout).");
    if let Some(da) = da {
        con.say(&format!(
            "It allows {} failures and forgives one every {}; it accepts a passphrase again after that.",
            da.max_tries,
            minutes(da.recovery_s)
        ));
    }
    con.say("You can use the recovery key now, or wait and reboot (`anchor-vault reset-lockout` with the recovery key clears the lockout).");
}

fn explain_pcrs(con: &mut dyn Console, changed: &[u8]) {
    let list: Vec<String> = changed
        .iter()
        .map(|p| format!("PCR {p} ({})", pcr_meaning(*p)))
        .collect();
    con.say(&format!(
        "This machine's boot chain is not the one the vault was sealed to: {} changed.",
        list.join(", ")
    ));
    con.say("The TPM will not release the vault key. If you changed firmware settings or updated the system yourself, use the recovery key; if you did not, treat this as a warning sign.");
}

fn explain_signed(con: &mut dyn Console, e: &SignedError) {
    con.say(&format!("The TPM will not release the vault key: {e}."));
    con.say("Use the recovery key. If you did not install another system image yourself, treat this as a warning sign.");
}

/// The TPM is there but cannot be used (`e`): said and audited; the recovery key is next.
fn tpm_unusable(con: &mut dyn Console, paths: &Paths, e: &TpmError) {
    con.say(&format!(
        "The TPM cannot be used ({e}): use the recovery key."
    ));
    pre_audit(
        con,
        paths,
        &Event::new("vault.unlock.refused", &[("reason", "tpm-unusable")]),
    );
}

fn tries_note(da: Option<&DaStatus>) -> String {
    match da {
        Some(d) if d.tries_left() == 0 => "The TPM now refuses further tries (lockout).".into(),
        Some(d) => format!(
            "The TPM allows {} more wrong ones before it locks out passphrases for a while.",
            d.tries_left()
        ),
        None => String::new(),
    }
}

fn passphrase_phase(
    con: &mut dyn Console,
    tpm: &mut Tpm,
    vault: &mut Vault,
    token: &VaultToken,
    paths: &Paths,
    opts: &UnlockOptions,
) -> Result<Phase, VaultError> {
    let da = tpm.da_status().ok();
    if da.is_some_and(|d| d.in_lockout) {
        explain_lockout(con, da.as_ref());
        pre_audit(
            con,
            paths,
            &Event::new("vault.unlock.refused", &[("reason", "tpm-lockout")]),
        );
        return Ok(Phase::Recovery);
    }
    // A TPM that connects but fails its commands (failure mode) cannot help either: the
    // recovery key, not an error that ends the dialog before it is asked for.
    let changed = match tpm.changed_pcrs(&token.policy) {
        Ok(c) => c,
        Err(e) => {
            tpm_unusable(con, paths, &e);
            return Ok(Phase::Recovery);
        }
    };
    if !changed.is_empty() {
        explain_pcrs(con, &changed);
        let pcrs: Vec<String> = changed.iter().map(u8::to_string).collect();
        pre_audit(
            con,
            paths,
            &Event::new(
                "vault.unlock.refused",
                &[("reason", "boot-chain-changed"), ("pcrs", &pcrs.join(","))],
            ),
        );
        return Ok(Phase::Recovery);
    }
    // A signed PCR 11 policy: the TPM checks the running image's signature once, before
    // any passphrase is asked for (typing one could not help a foreign image).
    let approval = match tpm.approve(&token.policy, &PcrSignature::read(&paths.pcr_signature)) {
        Ok(a) => a,
        Err(TpmError::Signed(e)) => {
            explain_signed(con, &e);
            pre_audit(
                con,
                paths,
                &Event::new("vault.unlock.refused", &[("reason", e.reason())]),
            );
            return Ok(Phase::Recovery);
        }
        Err(e) => {
            con.say(&format!("The TPM could not check the system image's signed PCR 11 policy: {e}. Use the recovery key."));
            return Ok(Phase::Recovery);
        }
    };
    for attempt in 1..=opts.tries {
        let Some(pass) = con.secret(PASSPHRASE_PROMPT)? else {
            return Ok(Phase::GiveUp);
        };
        if pass.is_empty() {
            return Ok(Phase::Recovery);
        }
        let start = Instant::now();
        let auth = keys::tpm_auth(&token.salt, &pass);
        match tpm.unseal(&token.blob, &*auth, &token.policy, approval.as_ref()) {
            Ok(secret) => {
                let tpm_s = start.elapsed().as_secs_f64();
                let key = keys::keyslot_key(&secret, &pass, &token.salt);
                drop(secret);
                drop(pass);
                let t1 = Instant::now();
                match open_slot(vault, paths, TPM_SLOT, &key, opts.check) {
                    Ok(()) => {
                        return Ok(Phase::Opened(
                            How::Passphrase,
                            Timing {
                                start,
                                tpm_s,
                                keyslot_s: t1.elapsed().as_secs_f64(),
                            },
                            None,
                        ))
                    }
                    Err(LuksError::WrongKey) => {
                        con.say("The TPM released the vault key, but the vault's keyslot refused it (was the vault header changed?).");
                        return Ok(Phase::Recovery);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(TpmError::AuthFail) => {
                let da = tpm.da_status().ok();
                con.say(&format!("Wrong passphrase. {}", tries_note(da.as_ref())));
                let n = attempt.to_string();
                pre_audit(
                    con,
                    paths,
                    &Event::new(
                        "vault.unlock.refused",
                        &[("reason", "wrong-passphrase"), ("attempt", &n)],
                    ),
                );
                if da.is_some_and(|d| d.in_lockout) {
                    explain_lockout(con, da.as_ref());
                    return Ok(Phase::Recovery);
                }
            }
            Err(TpmError::Lockout) => {
                let da = tpm.da_status().ok();
                explain_lockout(con, da.as_ref());
                pre_audit(
                    con,
                    paths,
                    &Event::new("vault.unlock.refused", &[("reason", "tpm-lockout")]),
                );
                return Ok(Phase::Recovery);
            }
            Err(TpmError::PolicyFail) => {
                let changed = tpm.changed_pcrs(&token.policy).unwrap_or_default();
                explain_pcrs(con, &changed);
                return Ok(Phase::Recovery);
            }
            Err(e) => {
                con.say(&format!("The TPM could not open the vault key: {e}."));
                if matches!(e, TpmError::SrkChanged) {
                    pre_audit(
                        con,
                        paths,
                        &Event::new("vault.unlock.refused", &[("reason", "srk-changed")]),
                    );
                }
                return Ok(Phase::Recovery);
            }
        }
    }
    con.say(&format!(
        "{} passphrase attempts failed: the recovery key can still open the vault.",
        opts.tries
    ));
    Ok(Phase::Recovery)
}

/// Ask for the recovery key (up to [`RECOVERY_TRIES`] times).
fn recovery_phase(
    con: &mut dyn Console,
    vault: &mut Vault,
    paths: &Paths,
    check: bool,
) -> Result<Phase, VaultError> {
    con.say("Type the recovery key you were shown when the vault was created (8 groups of 4 characters), or press Enter to leave the vault locked.");
    for _ in 0..RECOVERY_TRIES {
        let Some(input) = con.secret("Recovery key: ")? else {
            return Ok(Phase::GiveUp);
        };
        if input.is_empty() {
            return Ok(Phase::GiveUp);
        }
        let Some(key) = RecoveryKey::parse(&input) else {
            con.say("That is not a recovery key: it has 32 hexadecimal digits, like 0a1b-2c3d-4e5f-6071-8293-a4b5-c6d7-e8f9.");
            continue;
        };
        drop(input);
        let start = Instant::now();
        match open_slot(vault, paths, RECOVERY_SLOT, key.text().as_bytes(), check) {
            Ok(()) => {
                return Ok(Phase::Opened(
                    How::Recovery,
                    Timing {
                        start,
                        tpm_s: 0.0,
                        keyslot_s: start.elapsed().as_secs_f64(),
                    },
                    Some(key),
                ))
            }
            Err(LuksError::WrongKey) => {
                con.say("Wrong recovery key.");
                pre_audit(
                    con,
                    paths,
                    &Event::new("vault.unlock.refused", &[("reason", "wrong-recovery-key")]),
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Phase::GiveUp)
}

/// A TPM whose lockout hierarchy nobody owns, found by the recovery `key` that has just
/// opened this vault: `init` takes it only once the vault is made (so that it never
/// belongs to a recovery key that opens nothing), and a creation cut off between the two,
/// or a TPM error then, left it unowned, so that anyone could reset the
/// dictionary-attack counter and keep guessing the passphrase. The key takes it now, as
/// `init` would have, on connections of its own to the TPM at `tcti` (called once the
/// vault's own work with the TPM is done: the PCR lock never waits on this).
fn take_unowned_lockout(con: &mut dyn Console, tcti: &str, key: &RecoveryKey, init: &InitOptions) {
    match provision::take_lockout(tcti, key, init) {
        Ok(note) => con.say(&format!(
            "The TPM's lockout authorization was not set (the vault's creation was cut short before it was taken): TPM dictionary-attack settings {note}."
        )),
        Err(e) => con.say(&format!(
            "warning: the TPM's lockout authorization is not set (anyone can reset its count of wrong passphrases), and setting it failed: {e}"
        )),
    }
}

/// Mount the opened vault, lock the PCR, settle the audit log, make volumes, and say
/// how long it took. `tpm` is consumed (the audit anchor opens its own connections).
pub fn finish(
    con: &mut dyn Console,
    paths: &Paths,
    tpm: Option<Tpm>,
    how: How,
    timing: Timing,
    mut events: Vec<Event>,
) -> Result<Outcome, VaultError> {
    let t_mount = Instant::now();
    if let Err(e) = persist::mount(&persist::mapper_path(&paths.mapper), &paths.mount) {
        let _ = luks::deactivate(&paths.disk, &paths.mapper);
        return Err(e.into());
    }
    let mount_s = t_mount.elapsed().as_secs_f64();
    let unlock_s = timing.start.elapsed().as_secs_f64();
    let tcti = tpm.as_ref().map(|t| t.tcti().to_owned());
    if let Some(mut tpm) = tpm {
        let digest = anchor_audit::chain::digest(LOCK_EVENT);
        if let Err(e) = tpm.extend_pcr(LOCK_PCR, &digest) {
            con.say(&format!(
                "warning: could not extend PCR {LOCK_PCR} after opening: {e}"
            ));
        }
    }
    let ms = format!("{:.0}", unlock_s * 1000.0);
    events.push(Event::new(
        "vault.unlock",
        &[("how", how.as_str()), ("unlock_ms", &ms)],
    ));
    // The vault is open: an audit log problem is reported loudly, never a reason to
    // leave the user's data locked.
    let settled = match auditlog::settle(&paths.log(), &paths.pre_log, tcti.as_deref(), &events) {
        Ok(s) => s,
        Err(e) => {
            con.say(&format!("WARNING: the audit log could not be written: {e}"));
            auditlog::Settled {
                unanchored_because: Some("not written".to_owned()),
                ..auditlog::Settled::default()
            }
        }
    };
    if let Some((problem, aside)) = &settled.tampered {
        con.say("WARNING: the audit log failed its check against the TPM anchor:");
        con.say(&format!("  {problem}"));
        con.say(&format!(
            "  It was kept as {} and a new log starts from the TPM's record of it.",
            aside.display()
        ));
    }
    let anchored = match &settled.unanchored_because {
        None => format!("anchored in the TPM ({} now)", settled.anchored_now),
        Some(why) => format!("NOT anchored ({why})"),
    };
    for r in persist::ensure_for_policies(&paths.mount, &paths.policies) {
        match r {
            Ok((name, persist::Ensured::Created)) => {
                con.say(&format!("room volume {name} created"))
            }
            Ok((name, persist::Ensured::Grown)) => {
                con.say(&format!("room volume {name} grown to its new quota (its room's file system grows to match at the room's next start)"))
            }
            Ok((name, persist::Ensured::Adopted)) => con.say(&format!(
                "room volume {name} had no owner record: it now belongs to the room whose policy names it"
            )),
            Ok(_) => {}
            Err(e) => con.say(&format!("room volume not made: {e}")),
        }
    }
    con.say(&format!(
        "/persist open: unlocked with the {} in {unlock_s:.2} s (TPM {:.2} s, keyslot {:.2} s, mount {mount_s:.2} s); audit log: {} records ({} carried over), {anchored}",
        how.as_str(),
        timing.tpm_s,
        timing.keyslot_s,
        settled.records,
        settled.carried
    ));
    Ok(Outcome::Done)
}

/// The whole `unlock` command.
pub fn unlock(
    con: &mut dyn Console,
    paths: &Paths,
    opts: &UnlockOptions,
) -> Result<Outcome, VaultError> {
    match luks::probe(&paths.disk)? {
        DiskState::Luks => {}
        DiskState::Blank if opts.first_boot => {
            return provision::first_boot(con, paths, &opts.init, opts.tcti.as_deref())
        }
        DiskState::Blank => {
            con.say(&format!(
                "{} is blank: there is no vault yet (create one with `anchorctl vault init`).",
                paths.disk.display()
            ));
            return Ok(Outcome::NoVault);
        }
        DiskState::Foreign => {
            con.say(&format!(
                "{} holds something that is not an Anchor vault; it is left untouched.",
                paths.disk.display()
            ));
            return Ok(Outcome::NoVault);
        }
    }
    let mut vault = match Vault::open(&paths.disk) {
        Ok(v) => v,
        Err(e @ LuksError::Damaged(_)) => {
            con.say(&e.to_string());
            pre_audit(con, paths, &Event::new("vault.header.damaged", &[]));
            return Ok(Outcome::Damaged);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(r) = vault.repaired {
        let (bad, good) = match r {
            Restored::First => ("first", "second"),
            Restored::Second => ("second", "first"),
        };
        con.say(&format!(
            "The vault header's {bad} copy was damaged; it was restored from the {good} copy."
        ));
        pre_audit(
            con,
            paths,
            &Event::new("vault.header.repaired", &[("copy", bad)]),
        );
    }
    if vault.is_unfinished()? {
        if opts.first_boot {
            drop(vault);
            con.say(provision::CUT_SHORT);
            return provision::first_boot(con, paths, &opts.init, opts.tcti.as_deref());
        }
        con.say(&format!(
            "{}: the vault's creation was cut short (before its filesystem was made); \
             create it again with `anchorctl vault init`.",
            paths.disk.display()
        ));
        return Ok(Outcome::NoVault);
    }
    // Keyslot 1 (the recovery key) needs no token: one this anchor-vault cannot read
    // (damaged, removed, a newer anchor-vault's) sends the person to the recovery key.
    let token = match vault
        .token()
        .map_err(VaultError::from)
        .and_then(|t| VaultToken::from_json(&t).map_err(VaultError::from))
    {
        Ok(t) => Some(t),
        Err(e) => {
            con.say(&format!(
                "The vault's TPM keyslot cannot be used ({e}): use the recovery key."
            ));
            pre_audit(
                con,
                paths,
                &Event::new("vault.unlock.refused", &[("reason", "unreadable-token")]),
            );
            None
        }
    };
    let mut tpm = match tpm::find(opts.tcti.as_deref()).and_then(|t| Tpm::open(&t)) {
        Ok(t) => Some(t),
        Err(TpmError::Absent) => {
            con.say("No TPM was found on this machine. The vault's everyday key needs this machine's TPM 2.0: use the recovery key.");
            pre_audit(
                con,
                paths,
                &Event::new("vault.unlock.refused", &[("reason", "no-tpm")]),
            );
            None
        }
        Err(e) => {
            tpm_unusable(con, paths, &e);
            None
        }
    };
    let mut phase = match (tpm.as_mut(), &token) {
        (Some(t), Some(token)) => passphrase_phase(con, t, &mut vault, token, paths, opts)?,
        _ => Phase::Recovery,
    };
    if matches!(phase, Phase::Recovery) {
        phase = recovery_phase(con, &mut vault, paths, opts.check)?;
    }
    let (how, timing, recovered) = match phase {
        Phase::Opened(how, timing, key) => (how, timing, key),
        Phase::Recovery | Phase::GiveUp => {
            con.say("The vault stays locked.");
            return Ok(Outcome::Locked);
        }
    };
    // The recovery key is kept past this point only when the TPM's lockout is unowned
    // (see take_unowned_lockout); else it is wiped here.
    let heal = match (recovered, tpm.as_mut()) {
        (Some(key), Some(t)) => t
            .da_status()
            .is_ok_and(|da| !da.lockout_auth_set)
            .then(|| (key, t.tcti().to_owned())),
        _ => None,
    };
    let outcome = if opts.check {
        drop(tpm);
        con.say(&format!(
            "Checked: the {} opens the vault (keyslot {:.2} s; nothing was opened).",
            how.as_str(),
            timing.keyslot_s
        ));
        Ok(Outcome::Done)
    } else {
        finish(con, paths, tpm, how, timing, Vec::new())
    };
    if let Some((key, tcti)) = heal {
        take_unowned_lockout(con, &tcti, &key, &opts.init);
    }
    outcome
}
