// SPDX-License-Identifier: GPL-3.0-or-later
//! Command-line syntax (clap derive). The help text is the user documentation: keep it true.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The Anchor OS vault helper: /persist on LUKS2, sealed to the TPM 2.0 plus a
/// passphrase; room volumes; the audit log's TPM anchor.
///
/// Dialogs (passphrases, the recovery key) happen on stdin/stdout: at boot that is
/// bay0's console. Exit status: 0 done, 1 error, 2 usage error, 3 the vault stays
/// locked (no right passphrase or recovery key), 4 the disk holds no vault, 5 both
/// LUKS2 header copies are damaged (nothing was changed).
#[derive(Debug, Parser)]
#[command(name = "anchor-vault", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The vault disk (default: `bay0.vault=` on the kernel command line).
    #[arg(long, global = true, value_name = "PATH")]
    pub disk: Option<PathBuf>,
    /// TPM connection as a TCTI string, e.g. `device:/dev/tpmrm0` or
    /// `swtpm:host=127.0.0.1,port=2321` (default: /dev/tpmrm0, else /dev/tpm0).
    #[arg(long, global = true, value_name = "TCTI")]
    pub tpm: Option<String>,
    /// Where the vault is mounted.
    #[arg(long, global = true, value_name = "DIR", default_value = "/persist")]
    pub mount: PathBuf,
    /// Device-mapper name of the opened vault.
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        default_value = "anchor-vault"
    )]
    pub mapper: String,
    /// The pre-unlock audit log (carried into the vault when it opens).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = anchor_audit::PRE_UNLOCK_LOG
    )]
    pub pre_log: PathBuf,
    /// Room policies, for the volumes they ask for.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = anchor_policy::POLICY_DIR
    )]
    pub policies: PathBuf,
    /// mke2fs to make the vault's filesystem with (default: found in /usr/sbin, /sbin).
    #[arg(long, global = true, value_name = "PATH")]
    pub mkfs: Option<PathBuf>,
    /// The running image's signed PCR 11 policy (systemd-measure JSON), checked at unlock
    /// when the vault was sealed to a signed policy. systemd-stub puts the booted UKI's
    /// `.pcrsig` there.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "/.extra/tpm2-pcr-signature.json"
    )]
    pub pcr_signature: PathBuf,
}

/// How a new vault is made.
#[derive(Debug, Args, Clone)]
pub struct CreateArgs {
    /// PCRs (SHA-256 bank) the key is sealed to by value, comma-separated; PCR 15 is
    /// always added as the vault's own lock.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "7")]
    pub pcrs: Vec<u8>,
    /// Also seal to PCR 11 through a policy signed by this RSA public key (PEM): any
    /// system image whose `.pcrsig` carries that key's signature over its PCR 11 opens
    /// the vault, updates included. Default: the booted UKI's key,
    /// /.extra/tpm2-pcr-public-key.pem, if that file exists (else PCRs by value only).
    #[arg(long, value_name = "PEM", conflicts_with = "no_signed_pcr11")]
    pub pcr_public_key: Option<PathBuf>,
    /// Do not seal to a signed PCR 11 policy, even when booted from a UKI.
    #[arg(long)]
    pub no_signed_pcr11: bool,
    /// argon2id memory per keyslot, MiB, 1-4096 (default 1024).
    // The ranges are libcryptsetup's argon2id limits: checked here, before the passphrase
    // dialog, the TPM and the disk, instead of by libcryptsetup after the header is written.
    #[arg(long, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::luks::MAX_ARGON2_MIB)))]
    pub argon2_memory_mib: Option<u32>,
    /// argon2id passes (at least 4).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(4..))]
    pub argon2_iterations: u32,
    /// argon2id lanes (at least 1).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub argon2_lanes: u32,
    /// TPM dictionary-attack: failures before lockout, at least 1 (set only if nobody
    /// owns the TPM's lockout authorization yet).
    // 0 puts every DA-protected authorization in lockout for good: the passphrase would
    // never open the vault.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub tpm_max_tries: u32,
    /// TPM dictionary-attack: seconds after which one failure is forgiven, at least 1.
    // 0 is the TPM's "dictionary-attack protection off": failures are not even counted.
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub tpm_recovery_secs: u32,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a vault on a blank disk: seal a new key to the TPM (PCR policy + the
    /// passphrase you choose, asked twice), write LUKS2 with a TPM+passphrase keyslot
    /// and a recovery keyslot, show the recovery key once, then make the filesystem
    /// and mount it (unless --no-open).
    Init {
        #[command(flatten)]
        create: CreateArgs,
        /// Write the header and TPM objects only: do not open, format or mount.
        #[arg(long)]
        no_open: bool,
        /// Overwrite a disk that is not blank (never one holding a LUKS header).
        #[arg(long)]
        force: bool,
    },
    /// Open the vault and mount it: passphrase (checked by the TPM), or the recovery
    /// key when the TPM cannot help. Mounts nodev,nosuid,noexec.
    Unlock {
        /// Passphrase attempts before offering the recovery key (at least 1).
        #[arg(long, value_name = "N", default_value_t = 3,
              value_parser = clap::value_parser!(u32).range(1..))]
        tries: u32,
        /// Only check that the key opens the vault: no device, mount or PCR lock. (The
        /// recovery key still takes a TPM lockout authorization that nobody set, as the
        /// vault's creation would have.)
        #[arg(long)]
        check: bool,
        /// On a blank disk, offer to create the vault (bay0's first boot).
        #[arg(long)]
        first_boot: bool,
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Show the vault disk, /persist, the volumes, the TPM and the audit log.
    Status,
    /// Room volumes (files in the vault, one per policy volume, sized to its quota).
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// The audit log's TPM side.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Clear the TPM's dictionary-attack lockout (asks for the recovery key).
    ResetLockout,
    /// Unmount /persist and close the vault.
    Lock,
}

/// `anchor-vault volume ...`
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Make sure volume NAME exists with quota SIZE (e.g. 8GiB); print its path (the
    /// room's extra disk). Grows a volume whose quota grew; never shrinks one. With
    /// --for, for the rooms of ROOM (a volume another room owns is refused).
    Attach {
        /// The volume (a name like a room's: a-z, 0-9 and -).
        #[arg(value_parser = volume_name)]
        name: String,
        /// Its quota: a whole number of MiB, written like a policy's (e.g. 512MiB, 8GiB).
        #[arg(long, value_name = "SIZE", value_parser = quota)]
        size: u64,
        /// The top-level room whose family owns it (recorded in volumes/NAME.owner; a
        /// new volume, or one without a record, becomes this room's). Without it the
        /// owner record is left as it is: a new volume has none, so bay0 gives it to no
        /// room until `volume give` (or the next unlock, for the room whose policy names
        /// it).
        #[arg(long = "for", value_name = "ROOM", value_parser = volume_name)]
        owner: Option<String>,
    },
    /// List volumes: NAME QUOTA_BYTES USED_BYTES PATH OWNER (`-`: no owner record).
    List,
    /// Hand volume NAME, with its data, over to ROOM's family of rooms: from now on only
    /// ROOM and the rooms nested in it are given it (bay0 checks the owner record at each
    /// opening; a room that has it open keeps it until it closes). For a volume an update
    /// left behind (its room's policy gone) that a new room's policy names.
    Give {
        /// The volume.
        #[arg(value_parser = volume_name)]
        name: String,
        /// The top-level room that owns it from now on.
        #[arg(long, value_name = "ROOM", value_parser = volume_name)]
        to: String,
    },
    /// Delete volume NAME and its data for good. Refused, naming the holder, while a
    /// room has it attached or is attaching it (it holds the volume's lock, a process has
    /// the file open, or a loop device is backed by it): close that room first. A room
    /// starting while the delete runs is refused the volume. A policy that names it gets a
    /// new, empty volume at the next unlock.
    Delete {
        /// The volume.
        #[arg(value_parser = volume_name)]
        name: String,
    },
}

/// `anchor-vault audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Append a record (to /persist's log when open, else the pre-unlock log).
    Append {
        /// Who the record names as its actor.
        #[arg(long, default_value = "anchor-vault")]
        actor: String,
        /// What happened (the record's event name).
        #[arg(long)]
        event: String,
        /// KEY=VALUE fields.
        #[arg(value_parser = key_value)]
        fields: Vec<(String, String)>,
    },
    /// Anchor /persist's log's new records in the TPM: those after the anchored one, checked
    /// to chain from it (the whole log is verified only when its end cannot tell).
    Anchor,
    /// Print the TPM anchor: `counter=N head=HEX`.
    TpmState,
}

/// A volume NAME: a name like a room's (a usage error otherwise, before anything is done).
fn volume_name(text: &str) -> Result<String, String> {
    anchor_policy::Name::parse(text).map(|n| n.as_str().to_owned())
}

/// A volume quota in bytes, written like a policy's size.
fn quota(text: &str) -> Result<u64, String> {
    anchor_policy::ByteSize::parse(text).map(anchor_policy::ByteSize::bytes)
}

/// An audit field: KEY=VALUE.
fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}
