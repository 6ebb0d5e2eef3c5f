// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchorctl policy check` and `anchorctl policy show`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anchor_policy::PolicyError;

/// Outcome of a policy command, mapped to the process exit status by main.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything valid (exit 0).
    Ok,
    /// At least one policy invalid or unreadable (exit 1).
    Invalid,
}

/// Checks each file (and its parent chain); writes `FILE: ok` lines to `out` and every
/// problem to `err`.
pub fn check(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> io::Result<Outcome> {
    let mut outcome = Outcome::Ok;
    for file in files {
        match anchor_policy::load(file) {
            Ok(_) => writeln!(out, "{}: ok", anchor_policy::file_label(file))?,
            Err(e) => {
                report(&e, err)?;
                outcome = Outcome::Invalid;
            }
        }
    }
    Ok(outcome)
}

/// Prints the effective policy as TOML (or JSON with `json`).
pub fn show(
    file: &Path,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<Outcome> {
    let resolved = match anchor_policy::load(file) {
        Ok(r) => r,
        Err(e) => {
            report(&e, err)?;
            return Ok(Outcome::Invalid);
        }
    };
    let policy = resolved.policy();
    if json {
        let text = serde_json::to_string_pretty(&policy.effective()).map_err(io::Error::other)?;
        writeln!(out, "{text}")?;
    } else {
        let text = policy.to_toml().map_err(io::Error::other)?;
        writeln!(
            out,
            "# Effective policy of {} (depth {} of at most {}; defaults filled in)",
            anchor_policy::file_label(file),
            resolved.depth(),
            anchor_policy::MAX_DEPTH
        )?;
        write!(out, "{text}")?;
    }
    Ok(Outcome::Ok)
}

fn report(e: &PolicyError, err: &mut dyn Write) -> io::Result<()> {
    for p in e.problems() {
        writeln!(err, "{p}")?;
    }
    Ok(())
}
