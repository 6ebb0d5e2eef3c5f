// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchorctl vault ...`: runs the anchor-vault helper on this terminal (anchorctl never
//! links the TPM or LUKS libraries).

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

/// Run `anchor_vault ARGS` with this process's terminal; its exit status.
pub fn run(anchor_vault: &Path, args: &[OsString]) -> Result<i32, String> {
    let status = Command::new(anchor_vault)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", anchor_vault.display()))?;
    Ok(status.code().unwrap_or(1))
}
