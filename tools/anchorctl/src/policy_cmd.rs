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
                report(file, &e, err)?;
                outcome = Outcome::Invalid;
            }
        }
    }
    Ok(outcome)
}

/// For a `file` that is not there but names a room whose policy is in `dir`
/// (`anchorctl policy show web` on the anchor host): that policy's path.
pub fn room_policy(file: &Path, dir: &Path) -> Option<PathBuf> {
    let name = file.to_str()?;
    let bare = !name.is_empty() && !name.contains('/') && !name.ends_with(".toml");
    if !bare || std::fs::symlink_metadata(file).is_ok() {
        return None;
    }
    let policy = dir.join(format!("{name}.toml"));
    policy.is_file().then_some(policy)
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
            report(file, &e, err)?;
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

fn report(file: &Path, e: &PolicyError, err: &mut dyn Write) -> io::Result<()> {
    for p in e.problems() {
        writeln!(err, "{p}")?;
    }
    if let Some(policy) = room_policy(file, Path::new(anchor_policy::POLICY_DIR)) {
        writeln!(
            err,
            "anchorctl: a policy file's path is wanted: room {}'s is {}",
            file.display(),
            policy.display()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (`make run`): `anchorctl policy show web` said only "web: cannot read:
    /// No such file or directory"; the operator meant room web. The path is named.
    #[test]
    fn a_room_name_given_for_a_file_is_answered_with_its_policys_path() {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(policies.join("web.toml"), "name = \"web\"\n").unwrap();
        let web = policies.join("web.toml");
        assert_eq!(room_policy(Path::new("web"), &policies), Some(web.clone()));
        // Not a bare room name, or no such room: nothing to add.
        for given in ["web.toml", "./web", "nosuch", "", "a/web"] {
            assert_eq!(room_policy(Path::new(given), &policies), None, "{given}");
        }
        // A file of that name here is what was meant.
        let cwd = std::env::current_dir().unwrap();
        std::env::set_current_dir(dir.path()).unwrap();
        std::fs::write("web", "").unwrap();
        let here = room_policy(Path::new("web"), &policies);
        std::env::set_current_dir(cwd).unwrap();
        assert_eq!(here, None);
    }
}
