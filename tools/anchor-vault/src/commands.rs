// SPDX-License-Identifier: GPL-3.0-or-later
//! The smaller commands: status (which never writes to the vault disk), volumes, the audit log's TPM side, reset-lockout, lock.

use std::fmt::Write as _;
use std::path::Path;

use anchor_audit::{match_anchor, verify};

use crate::auditlog::{self, Event, LogFile};
use crate::console::Console;
use crate::error::{Outcome, VaultError};
use crate::keys::RecoveryKey;
use crate::luks::{self, DiskState, LuksError, Vault, RECOVERY_SLOT, TPM_SLOT};
use crate::persist;
use crate::settings::Paths;
use crate::sys;
use crate::sys::esys::RawEsys;
use crate::token::VaultToken;
use crate::tpm::nv::Indices;
use crate::tpm::{self, Tpm, TpmError};

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// `status`: the vault disk, /persist, the volumes, the TPM, the audit log.
pub fn status(paths: &Paths, tcti: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "vault disk: {}", paths.disk.display());
    match luks::probe(&paths.disk) {
        Err(e) => {
            let _ = writeln!(s, "  state: unreadable ({e})");
        }
        Ok(DiskState::Blank) => {
            let _ = writeln!(s, "  state: blank (no vault yet)");
        }
        Ok(DiskState::Foreign) => {
            let _ = writeln!(s, "  state: holds something that is not a vault");
        }
        // Looked at through an in-memory copy of the header: loading one repairs a
        // damaged header copy, and status writes nothing to the disk.
        Ok(DiskState::Luks) => match Vault::inspect(&paths.disk) {
            Err(e) => {
                let _ = writeln!(s, "  state: {e}");
            }
            Ok(mut v) => {
                let _ = write!(s, "  state: LUKS2 vault");
                if let Some(r) = v.repaired {
                    let _ = write!(
                        s,
                        " (its {} header copy is damaged; the other is whole, and the next `anchor-vault unlock` restores it)",
                        r.as_str()
                    );
                }
                let _ = writeln!(s);
                for slot in v.keyslots() {
                    let what = match slot {
                        TPM_SLOT => "TPM + passphrase",
                        RECOVERY_SLOT => "recovery key",
                        _ => "unknown to anchor-vault",
                    };
                    let cost = v
                        .keyslot_cost(slot)
                        .map_or_else(|| "not argon2id".to_owned(), |c| c.to_string());
                    let _ = writeln!(s, "  keyslot {slot}: {what}, {cost}");
                }
                match v.token().ok().and_then(|t| VaultToken::from_json(&t).ok()) {
                    Some(t) => {
                        let _ = writeln!(s, "  sealing policy: {}", t.policy.describe());
                    }
                    None => {
                        let _ = writeln!(s, "  sealing policy: no readable anchor-vault token");
                    }
                }
            }
        },
    }
    if persist::is_open(&paths.mount) {
        let _ = write!(s, "{}: open", paths.mount.display());
        if let Ok(space) = sys::fs_space(&paths.mount) {
            let _ = write!(
                s,
                " ({} MiB, {} MiB free)",
                mib(space.total),
                mib(space.free)
            );
        }
        let _ = writeln!(s);
        match persist::volumes(&paths.mount) {
            Ok(vols) if vols.is_empty() => {
                let _ = writeln!(s, "  volumes: none");
            }
            Ok(vols) => {
                for v in vols {
                    let _ = writeln!(
                        s,
                        "  volume {}: quota {} MiB, using {} MiB",
                        v.name,
                        mib(v.size),
                        mib(v.used)
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(s, "  volumes: {e}");
            }
        }
    } else {
        let _ = writeln!(s, "{}: locked (not mounted)", paths.mount.display());
    }
    let tcti = match tpm::find(tcti) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(s, "TPM: {e}");
            return s;
        }
    };
    let nv = match Tpm::open(&tcti) {
        Err(e) => {
            let _ = writeln!(s, "TPM: {e}");
            None
        }
        Ok(mut t) => {
            let _ = writeln!(s, "TPM: {tcti}");
            if let Ok(da) = t.da_status() {
                let _ = writeln!(
                    s,
                    "  dictionary-attack protection: {} of {} failures counted, one forgiven every {} s{}",
                    da.failures,
                    da.max_tries,
                    da.recovery_s,
                    if da.in_lockout { ", LOCKED OUT" } else { "" }
                );
            }
            match t.read_anchor(Indices::default()) {
                Ok(nv) => {
                    let _ = writeln!(
                        s,
                        "  audit anchor: counter {}, head {}",
                        nv.counter,
                        crate::hex::encode(&nv.head)
                    );
                    Some(nv)
                }
                Err(e) => {
                    let _ = writeln!(s, "  audit anchor: {e}");
                    None
                }
            }
        }
    };
    if persist::is_open(&paths.mount) {
        let _ = writeln!(s, "audit log: {}", audit_summary(&paths.log(), nv.as_ref()));
    }
    s
}

fn audit_summary(log: &Path, nv: Option<&tpm::nv::NvState>) -> String {
    let bytes = match auditlog::read_log(log) {
        Ok(b) => b,
        Err(e) => return format!("{}: {e}", log.display()),
    };
    let v = match verify(&bytes) {
        Ok(v) => v,
        Err(bad) => return format!("BROKEN: {bad}"),
    };
    match nv {
        None => format!(
            "{} records, chain intact (no TPM anchor to compare)",
            v.records
        ),
        Some(nv) => {
            // The log verified once above: compared with the anchor without a second pass.
            let (records, anchor) = (v.records, auditlog::anchor_of(&v, nv));
            match match_anchor(v, &anchor) {
                Ok(a) => format!(
                    "{records} records, intact and matching the TPM anchor ({} not anchored yet)",
                    a.unanchored
                ),
                Err(p) => format!("DOES NOT MATCH THE TPM ANCHOR: {p}"),
            }
        }
    }
}

/// A name the command line already checked.
fn name(text: &str) -> Result<anchor_policy::Name, VaultError> {
    anchor_policy::Name::parse(text).map_err(|e| persist::PersistError::BadName(e).into())
}

fn open_vault(paths: &Paths) -> Result<(), VaultError> {
    if !persist::is_open(&paths.mount) {
        return Err(persist::PersistError::NotOpen.into());
    }
    Ok(())
}

/// `volume attach NAME --size SIZE [--for ROOM]`: make sure it exists (ROOM's); its path.
pub fn volume_ensure(
    paths: &Paths,
    volume: &str,
    size: u64,
    owner: Option<&str>,
) -> Result<String, VaultError> {
    open_vault(paths)?;
    let (path, _) = match owner {
        Some(owner) => persist::ensure_owned(&paths.mount, &name(volume)?, size, &name(owner)?)?,
        None => persist::ensure_volume(&paths.mount, volume, size)?,
    };
    Ok(path.display().to_string())
}

/// `volume list`.
pub fn volume_list(paths: &Paths) -> Result<String, VaultError> {
    open_vault(paths)?;
    let dir = paths.mount.join(persist::VOLUMES);
    let mut s = String::new();
    for v in persist::volumes(&paths.mount)? {
        let owner = name(&v.name)
            .ok()
            .and_then(|n| anchor_policy::vault::read_owner(&dir, &n).ok().flatten())
            .map_or_else(|| "-".to_owned(), |o| o.to_string());
        let _ = writeln!(
            s,
            "{} {} {} {} {owner}",
            v.name,
            v.size,
            v.used,
            v.path.display()
        );
    }
    Ok(s)
}

/// `volume give NAME --to ROOM`: recorded, and in the audit log.
pub fn volume_give(paths: &Paths, volume: &str, to: &str) -> Result<String, VaultError> {
    open_vault(paths)?;
    let old = persist::give(&paths.mount, &name(volume)?, &name(to)?)?;
    let from = old.map_or_else(|| "-".to_owned(), |o| o.to_string());
    let event = Event::new(
        "volume.give",
        &[("volume", volume), ("from", &from), ("to", to)],
    );
    audit_append(paths, &event)?;
    Ok(format!(
        "volume {volume} now belongs to room {to} and the rooms nested in it (it was {from}'s)"
    ))
}

/// `volume delete NAME`: gone, and in the audit log.
pub fn volume_delete(paths: &Paths, volume: &str) -> Result<String, VaultError> {
    open_vault(paths)?;
    persist::delete(&paths.mount, &name(volume)?)?;
    audit_append(paths, &Event::new("volume.delete", &[("volume", volume)]))?;
    Ok(format!("volume {volume} deleted"))
}

/// `audit append`: to the persistent log when the vault is open, else the pre-unlock
/// log. Not anchored here (`audit anchor` does that).
pub fn audit_append(paths: &Paths, event: &Event) -> Result<String, VaultError> {
    if persist::is_open(&paths.mount) {
        let mut log = LogFile::open(&paths.log(), anchor_audit::GENESIS)?;
        log.append(event)?;
        Ok(format!(
            "{} ({} records)",
            paths.log().display(),
            log.records()
        ))
    } else {
        auditlog::append_pre_unlock(&paths.pre_log, event)?;
        Ok(paths.pre_log.display().to_string())
    }
}

/// `audit anchor`: anchor the persistent log's new records ([`auditlog::unanchored`]).
pub fn audit_anchor(paths: &Paths, tcti: Option<&str>) -> Result<String, VaultError> {
    let tcti = tpm::find(tcti)?;
    let log = paths.log();
    let _anchoring = auditlog::anchor_lock(&log)?;
    let nv = auditlog::read_anchor(&tcti)?;
    let todo = auditlog::unanchored(&log, &nv)?;
    auditlog::anchor_digests(&tcti, todo.lag, &todo.digests)?;
    let (records, todo) = (todo.records, todo.digests);
    Ok(format!(
        "{}: {} records, {} anchored now",
        log.display(),
        records,
        todo.len()
    ))
}

/// `audit tpm-state`: the anchor as `counter=N head=HEX`.
pub fn audit_tpm_state(tcti: Option<&str>) -> Result<String, VaultError> {
    let nv = auditlog::read_anchor(&tpm::find(tcti)?)?;
    Ok(format!(
        "counter={} head={}",
        nv.counter,
        crate::hex::encode(&nv.head)
    ))
}

/// `reset-lockout`: clear the TPM's dictionary-attack lockout with the recovery key.
pub fn reset_lockout(con: &mut dyn Console, tcti: Option<&str>) -> Result<Outcome, VaultError> {
    let tcti = tpm::find(tcti)?;
    let Some(input) = con.secret("Recovery key: ")? else {
        return Ok(Outcome::Locked);
    };
    let Some(key) = RecoveryKey::parse(&input) else {
        return Err(VaultError::Refused(
            "that is not a recovery key (32 hexadecimal digits)".to_owned(),
        ));
    };
    let mut raw = RawEsys::open(&tcti).map_err(TpmError::from)?;
    match raw.da_lock_reset(&*key.lockout_auth()) {
        Ok(()) => {
            con.say("The TPM's dictionary-attack lockout is cleared: passphrases are accepted again.");
            Ok(Outcome::Done)
        }
        Err(e) => match TpmError::from(e) {
            TpmError::AuthFail => Err(VaultError::Refused(
                "the TPM refused: wrong recovery key, or the lockout authorization was set by someone else".to_owned(),
            )),
            TpmError::Lockout => Err(VaultError::Refused(
                "the TPM refuses lockout authorizations for a while after a wrong one; try again later".to_owned(),
            )),
            other => Err(other.into()),
        },
    }
}

/// `lock`: unmount /persist and close the vault.
pub fn lock(paths: &Paths) -> Result<String, VaultError> {
    // bay0's records go to a pre-unlock log again (carried over at the next unlock).
    if std::fs::symlink_metadata(&paths.pre_log).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(&paths.pre_log);
    }
    if persist::is_open(&paths.mount) {
        sys::umount(&paths.mount).map_err(|e| persist::PersistError::Io(paths.mount.clone(), e))?;
    }
    // Not open: nothing to close (libcryptsetup, asked to, fails with EINVAL and lines
    // of its own on stderr).
    let mapper = persist::mapper_path(&paths.mapper);
    if std::fs::symlink_metadata(&mapper).is_err() {
        return Ok(format!(
            "the vault is not open ({} does not exist): nothing to close",
            mapper.display()
        ));
    }
    match luks::deactivate(&paths.disk, &paths.mapper) {
        Ok(()) => Ok("vault closed".to_owned()),
        Err(LuksError::Crypt(_, e)) => Err(VaultError::Refused(format!(
            "closing {}: {e}",
            paths.mapper
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status` read the audit log with a plain `fs::read`: a FIFO under its name made
    /// `status` wait for a writer for ever (and a link to a device such as /dev/zero was
    /// read without end), where every other reader of the log refuses what is not a
    /// regular file. The FIFO here is fed, so the old read returned and this fails.
    #[test]
    fn status_refuses_an_audit_log_that_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = anchor_testkit::Fifo::fed(&dir.path().join("audit.log"), b"junk\n");
        let said = audit_summary(fifo.path(), None);
        drop(fifo);
        assert!(said.contains("not a regular file"), "{said}");
        assert!(said.contains("audit.log"), "{said}");
    }
}
