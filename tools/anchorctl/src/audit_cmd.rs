// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchorctl audit show` and `anchorctl audit verify` (docs/AUDIT-LOG-FORMAT.md).
//!
//! The chain is checked here with anchor-audit; the TPM anchor (counter and head) is
//! read by running `anchor-vault audit tpm-state`, so anchorctl never links the TPM
//! stack.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anchor_audit::{match_anchor, verify, Anchor, Record};

/// Outcome of `audit verify`, mapped to the exit status by main.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Intact (and matching the TPM anchor unless it was not asked for): exit 0.
    Intact,
    /// A bad record, or the log does not match the anchor: exit 1.
    Bad,
    /// The chain is intact but the TPM anchor could not be read: exit 3.
    Unanchored,
}

/// The log `audit show|verify` read when no `--file` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// The persistent log (or what reading it says is wrong with it).
    Persistent(PathBuf),
    /// The vault is not open: this boot's log, kept until the vault opens and then carried
    /// into it. The TPM anchors none of it yet.
    ThisBoot(PathBuf),
}

/// Which log to read by default: `persistent` (the vault's) unless it is not there and
/// `this_boot` is a regular file, which it is only while the vault is not open (unlock
/// replaces it with a symlink to `persistent`). A persistent log missing from an open
/// vault is never covered up by the pre-unlock one: it is read, and its absence named.
pub fn locate(persistent: &Path, this_boot: &Path) -> Located {
    let missing = matches!(
        std::fs::symlink_metadata(persistent),
        Err(e) if e.kind() == io::ErrorKind::NotFound
    );
    let boot_file = std::fs::symlink_metadata(this_boot).is_ok_and(|m| m.file_type().is_file());
    if missing && boot_file {
        Located::ThisBoot(this_boot.to_path_buf())
    } else {
        Located::Persistent(persistent.to_path_buf())
    }
}

/// `YYYY-MM-DD HH:MM:SSZ` for seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn escaped(value: &[u8]) -> String {
    let mut s = String::with_capacity(value.len());
    let _ = anchor_audit::escape::escape::<()>(value, &mut |p| {
        s.push_str(&String::from_utf8_lossy(p));
        Ok(())
    });
    s
}

/// The bytes of the log at `file`, a regular file: a FIFO is refused, not waited on
/// (O_NONBLOCK open), and a device is not read without end.
fn read_log(file: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Print every record of `file` readably (values stay escaped: nothing in the log can
/// reach the terminal as a control sequence).
pub fn show(file: &Path, raw: bool, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<bool> {
    let bytes = match read_log(file) {
        Ok(b) => b,
        Err(e) => {
            writeln!(err, "anchorctl: {}: {e}", file.display())?;
            return Ok(false);
        }
    };
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match Record::parse(line) {
            Ok(_) if raw => {
                out.write_all(line)?;
                writeln!(out)?;
            }
            Ok(r) => {
                write!(out, "#{} {} {} {}", r.seq, utc(r.time), r.actor, r.event)?;
                for (k, v) in &r.fields {
                    write!(out, " {k}={}", escaped(v))?;
                }
                writeln!(out)?;
            }
            Err(e) => writeln!(out, "#? line {}: {e}", i + 1)?,
        }
    }
    Ok(true)
}

/// Read the TPM anchor by running `anchor_vault audit tpm-state`.
pub fn tpm_state(
    anchor_vault: &Path,
    tpm: Option<&str>,
) -> Result<(u64, anchor_audit::Hash), String> {
    let mut cmd = Command::new(anchor_vault);
    if let Some(t) = tpm {
        cmd.arg("--tpm").arg(t);
    }
    let out = cmd
        .args(["audit", "tpm-state"])
        .output()
        .map_err(|e| format!("{}: {e}", anchor_vault.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(text.trim().to_owned());
    }
    let mut counter = None;
    let mut head = None;
    for word in text.split_whitespace() {
        if let Some(c) = word.strip_prefix("counter=") {
            counter = c.parse().ok();
        } else if let Some(h) = word.strip_prefix("head=") {
            head = anchor_audit::parse_hex(h.as_bytes());
        }
    }
    match (counter, head) {
        (Some(c), Some(h)) => Ok((c, h)),
        _ => Err(format!(
            "unexpected answer from anchor-vault: {}",
            text.trim()
        )),
    }
}

/// Verify `file`; with `anchor` (counter, head) also against the TPM anchor. The verdict
/// goes to `out`; a file that cannot be read is an error, on `err` (as `audit show` does).
pub fn verify_file(
    file: &Path,
    anchor: Option<Result<(u64, anchor_audit::Hash), String>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<Verdict> {
    let bytes = match read_log(file) {
        Ok(b) => b,
        Err(e) => {
            writeln!(err, "anchorctl: {}: cannot read: {e}", file.display())?;
            return Ok(Verdict::Bad);
        }
    };
    let v = match verify(&bytes) {
        Ok(v) => v,
        Err(bad) => {
            writeln!(out, "{}: BAD: {bad}", file.display())?;
            return Ok(Verdict::Bad);
        }
    };
    for line in &v.torn {
        writeln!(
            out,
            "{}: line {line}: a torn append (a write cut short, e.g. by a power cut): \
             skipped, the chain continues past it",
            file.display()
        )?;
    }
    match anchor {
        None => {
            writeln!(
                out,
                "{}: chain intact: {} records (not compared with the TPM anchor)",
                file.display(),
                v.records
            )?;
            Ok(Verdict::Intact)
        }
        Some(Err(why)) => {
            writeln!(
                out,
                "{}: chain intact: {} records, but the TPM anchor could not be read: {why}",
                file.display(),
                v.records
            )?;
            Ok(Verdict::Unanchored)
        }
        Some(Ok((counter, head))) => {
            let started = v.base.is_some();
            let base = v.base.unwrap_or(counter);
            let anchor = Anchor {
                count: counter.saturating_sub(base),
                head,
            };
            // The log verified once above: compared with the anchor without a second pass.
            let records = v.records;
            match match_anchor(v, &anchor) {
                Ok(a) => {
                    writeln!(
                        out,
                        "{}: intact: {} records, matching the TPM anchor ({} anchored, {} not yet)",
                        file.display(),
                        records,
                        anchor.count,
                        a.unanchored
                    )?;
                    Ok(Verdict::Intact)
                }
                Err(p) => {
                    let lacks = if started {
                        ""
                    } else {
                        "; it has no audit.start record, as a log the TPM anchors does (a log \
                         kept before the vault opens has none, and is anchored only once \
                         carried into the vault: --no-tpm checks its chain)"
                    };
                    writeln!(out, "{}: BAD: {p}{lacks}", file.display())?;
                    Ok(Verdict::Bad)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (make run, vault locked): `anchorctl audit show` said only
    /// "/persist/audit/audit.log: No such file or directory", though this boot's log held
    /// every record so far. The persistent log is read whenever it is there, and never
    /// passed over when only it is missing from an open vault (this boot's path is then
    /// a symlink to it).
    #[test]
    fn the_log_of_this_boot_is_read_only_while_the_vault_is_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let persist = dir.path().join("persist/audit.log");
        let boot = dir.path().join("run/audit.log");
        let persistent = Located::Persistent(persist.clone());
        // Neither there: the persistent log, whose absence reading it names.
        assert_eq!(locate(&persist, &boot), persistent);
        // Vault not open: this boot's regular file.
        std::fs::create_dir_all(boot.parent().unwrap()).unwrap();
        std::fs::write(&boot, b"").unwrap();
        assert_eq!(locate(&persist, &boot), Located::ThisBoot(boot.clone()));
        // Vault open, its log missing: this boot's path is a symlink to it, not a log.
        std::fs::remove_file(&boot).unwrap();
        std::os::unix::fs::symlink(&persist, &boot).unwrap();
        assert_eq!(locate(&persist, &boot), persistent);
        // Vault open with its log: the persistent one, whatever this boot's path holds.
        std::fs::create_dir_all(persist.parent().unwrap()).unwrap();
        std::fs::write(&persist, b"").unwrap();
        assert_eq!(locate(&persist, &boot), persistent);
        std::fs::remove_file(&boot).unwrap();
        std::fs::write(&boot, b"").unwrap();
        assert_eq!(locate(&persist, &boot), persistent);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_796_022_235), "2026-11-30 07:03:55Z");
    }
}
