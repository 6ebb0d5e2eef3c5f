// SPDX-License-Identifier: GPL-3.0-or-later
//! Where things are and how the commands behave; defaults for the anchor host, every
//! one overridable on the command line (the tests point them at temporary paths).

use std::path::{Path, PathBuf};

use crate::auditlog;
use crate::luks::Argon2Cost;
use crate::persist;
use crate::tpm::policy::DEFAULT_PCRS;
use crate::tpm::signed;

/// Paths the commands use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The vault disk (block device or image file).
    pub disk: PathBuf,
    /// Where the vault is mounted.
    pub mount: PathBuf,
    /// The device-mapper name.
    pub mapper: String,
    /// The pre-unlock audit log.
    pub pre_log: PathBuf,
    /// Room policies (for the volumes they ask for).
    pub policies: PathBuf,
    /// mke2fs, if not in the usual places.
    pub mkfs: Option<PathBuf>,
    /// The running image's signed PCR 11 policy (systemd-stub's copy of `.pcrsig`).
    pub pcr_signature: PathBuf,
}

impl Paths {
    /// The anchor host's paths for `disk`.
    pub fn system(disk: PathBuf) -> Paths {
        Paths {
            disk,
            mount: PathBuf::from(persist::MOUNT_POINT),
            mapper: persist::MAPPER_NAME.to_owned(),
            pre_log: PathBuf::from(auditlog::PRE_UNLOCK_LOG),
            policies: PathBuf::from(anchor_policy::POLICY_DIR),
            mkfs: None,
            pcr_signature: PathBuf::from(signed::SIGNATURE_FILE),
        }
    }

    /// The persistent audit log.
    pub fn log(&self) -> PathBuf {
        self.mount.join(auditlog::LOG)
    }
}

/// The TPM's dictionary-attack settings anchor-vault sets when nobody owns the lockout
/// hierarchy yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaSettings {
    /// Failed authorizations before lockout.
    pub max_tries: u32,
    /// Seconds after which one failure is forgiven.
    pub recovery_s: u32,
    /// Seconds to wait after a wrong lockout authorization (the recovery key's).
    pub lockout_recovery_s: u32,
}

impl Default for DaSettings {
    /// 10 tries, one forgiven every 10 minutes, 1 hour after a wrong recovery key for
    /// `reset-lockout` (docs/ARCHITECTURE.md explains the numbers).
    fn default() -> Self {
        DaSettings {
            max_tries: 10,
            recovery_s: 600,
            lockout_recovery_s: 3600,
        }
    }
}

/// Which key a new vault's signed PCR 11 policy trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcrKeyChoice {
    /// This file if it exists (the running UKI's `.pcrpkey`), else no signed policy.
    IfPresent(PathBuf),
    /// This file; an error if it cannot be read.
    Required(PathBuf),
    /// No signed PCR 11 policy: PCRs by value only.
    Off,
}

/// How a new vault is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// PCRs the secret is sealed to by value (besides the lock PCR).
    pub pcrs: Vec<u8>,
    /// The signed PCR 11 policy's key.
    pub pcr_key: PcrKeyChoice,
    /// argon2id cost of both keyslots.
    pub cost: Argon2Cost,
    /// Dictionary-attack settings.
    pub da: DaSettings,
    /// Open and mount the new vault (make its filesystem); false only writes the header
    /// and the TPM objects (for a disk image prepared elsewhere).
    pub open: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            pcrs: DEFAULT_PCRS.to_vec(),
            pcr_key: PcrKeyChoice::IfPresent(PathBuf::from(signed::PUBLIC_KEY_FILE)),
            cost: Argon2Cost::DEFAULT,
            da: DaSettings::default(),
            open: true,
        }
    }
}

/// How `unlock` behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockOptions {
    /// TCTI string; `None` finds the TPM device.
    pub tcti: Option<String>,
    /// Passphrase attempts before offering the recovery key.
    pub tries: u32,
    /// Only check the key (no device, no mount, no PCR lock, no audit anchoring).
    pub check: bool,
    /// On a blank disk, offer to create the vault (bay0's first boot).
    pub first_boot: bool,
    /// How the first-boot vault is made.
    pub init: InitOptions,
}

/// The vault disk named on the kernel command line (`bay0.vault=PATH`).
pub fn disk_from_cmdline(cmdline: &str) -> Option<PathBuf> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("bay0.vault="))
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
}

/// An argon2 memory cost for first-boot creation from the kernel command line
/// (`anchor.vault_argon2_kib=N`, N from 8192 up to libcryptsetup's 4 GiB): lets small test
/// machines create a vault quickly. It only ever applies when a vault is created.
pub fn argon2_kib_from_cmdline(cmdline: &str) -> Option<u32> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("anchor.vault_argon2_kib="))
        .and_then(|n| n.parse().ok())
        .filter(|&n| (8192..=crate::luks::MAX_ARGON2_MIB * 1024).contains(&n))
}

/// The kernel command line (empty if unreadable).
pub fn cmdline() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

/// The disk to use: `explicit`, else the kernel command line's.
pub fn disk(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| disk_from_cmdline(&cmdline()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_command_line_names_the_disk_and_test_costs() {
        let c = "console=ttyS0 bay0.vault=/dev/vdb anchor.vault_argon2_kib=32768 quiet";
        assert_eq!(disk_from_cmdline(c), Some(PathBuf::from("/dev/vdb")));
        assert_eq!(argon2_kib_from_cmdline(c), Some(32768));
        assert_eq!(disk_from_cmdline("bay0.vault=vdb"), None);
        assert_eq!(argon2_kib_from_cmdline("anchor.vault_argon2_kib=1"), None);
        // More than libcryptsetup accepts: the default cost, not a failed creation.
        assert_eq!(
            argon2_kib_from_cmdline("anchor.vault_argon2_kib=4194305"),
            None
        );
        assert_eq!(argon2_kib_from_cmdline("x"), None);
    }
}
