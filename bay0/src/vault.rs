// SPDX-License-Identifier: GPL-3.0-or-later
//! The vault from bay0's side. bay0 never links the TPM or LUKS libraries: when the
//! kernel command line names a vault disk (`bay0.vault=/dev/vdb`), bay0 starts
//! `anchor-vault unlock` on its own console (the trusted one) as a supervised child and
//! goes back to its event loop (the watchdog keeps being tickled while a person types).
//! /persist counts as open only once that child has exited 0. On a blank disk the
//! helper offers the first-boot creation of the vault.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::init::{MountOps, RealMounts};
use crate::sys;

/// The helper that owns everything TPM and LUKS.
pub const HELPER: &str = "/usr/bin/anchor-vault";
/// Where the helper mounts the vault.
pub const PERSIST: &str = "/persist";
/// Longest vault disk path accepted.
pub const DISK_MAX: usize = 64;

static OPEN: AtomicBool = AtomicBool::new(false);

/// The vault disk from the kernel command line, inline so `Config` stays `Copy`.
pub type VaultDisk = anchor_text::fixed::Fixed<DISK_MAX>;

/// The vault disk `text`: a /dev/ path of `[A-Za-z0-9/_.-]`, no `..`.
pub fn parse_disk(text: &str) -> Result<VaultDisk> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"/_.-".contains(&b);
    VaultDisk::parse(text, ok)
        .filter(|_| text.starts_with("/dev/") && !text.contains(".."))
        .ok_or(Error::Config("vault wants a /dev/ path of [A-Za-z0-9/_.-]"))
}

/// Start the unlock dialog on bay0's console; the helper's pid for supervision.
pub fn start_unlock(disk: &VaultDisk) -> Result<i32> {
    let argv = [HELPER, "--disk", disk.as_str(), "unlock", "--first-boot"].map(Into::into);
    crate::hosted::spawn("start anchor-vault", &argv, None)
}

/// The unlock helper ended with `code`: remember and log the outcome.
pub fn unlock_ended(code: i32) {
    OPEN.store(code == 0, Ordering::Relaxed);
    if code == 0 {
        crate::log_notice!("vault: {}", anchor_proto::exit::vault(code));
    } else {
        crate::log_warn!(
            "vault stays locked (exit {code}): {}",
            anchor_proto::exit::vault(code)
        );
    }
}

/// Is /persist open (the helper succeeded and the mount is there)?
pub fn is_open() -> bool {
    OPEN.load(Ordering::Relaxed) && RealMounts.is_mount_point(c"/persist").unwrap_or(false)
}

/// Appends bay0's audit record made from the log so far (in /persist once the vault is
/// open: docs/AUDIT-LOG-FORMAT.md) and starts the helper that anchors it in the TPM.
pub fn audit_with(derive: impl FnOnce(&[u8]) -> Option<Vec<u8>>) {
    let anchor = is_open().then_some(&[HELPER, "audit", "anchor"][..]);
    if let Err(e) = sys::audit::append(crate::courier::AUDIT_LOG, derive, anchor) {
        crate::log_warn!("audit log: {e}");
    }
}

/// A room opened (`code` None) or ended (its VMM's exit code; `how`: what it was).
pub fn audit_room(room: &str, how: &str, code: Option<i32>, facts: &[(&str, &str)]) {
    audit_with(|log| anchor_policy::audit::room_line(log, room, how, code, facts));
}

/// At shutdown, after sync: anchor the audit log's last records, then unmount /persist
/// (detached if still busy).
pub fn close() {
    if !is_open() {
        return;
    }
    // The last records (rooms closed at shutdown) are anchored before /persist goes.
    let _ = sys::audit::run_within(&[HELPER, "audit", "anchor"], 10_000);
    match crate::init::unmount(&mut RealMounts, c"/persist") {
        Ok(()) => crate::log_info!("vault: /persist unmounted"),
        Err(e) => crate::log_warn!("vault: unmount /persist: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_disks_are_device_paths_only() {
        assert_eq!(parse_disk("/dev/vdb").unwrap().as_str(), "/dev/vdb");
        let long = format!("/dev/{}", "a".repeat(DISK_MAX));
        for bad in [
            "vdb",
            "/tmp/x",
            "/dev/../etc/shadow",
            "/dev/a b",
            "",
            long.as_str(),
        ] {
            assert!(parse_disk(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_locked_vault_is_not_open() {
        OPEN.store(false, Ordering::Relaxed);
        assert!(!is_open());
    }
}
