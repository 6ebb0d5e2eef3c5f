// SPDX-License-Identifier: GPL-3.0-or-later
//! Command-line syntax (clap derive). The help text is the user documentation: keep it true.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Anchor OS operator CLI.
///
/// Exit status: 0 success, 1 a policy is invalid or unreadable, bay0 refused or could not
/// be reached (the reason on stderr, one line), an update was refused or failed, or the
/// audit log is bad, 2 usage error; `vault` commands pass on anchor-vault's status;
/// `audit verify` exits 3 when the chain is intact but the TPM anchor could not be read.
#[derive(Debug, Parser)]
#[command(name = "anchorctl", version)]
pub struct Cli {
    /// bay0's control socket (room and status commands).
    #[arg(long, global = true, value_name = "PATH", env = "ANCHOR_CONTROL_SOCKET",
          default_value = anchor_proto::control::SOCKET_PATH)]
    pub socket: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Room policies (docs/POLICY.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// A/B updates of the signed base (docs/SIGNING.md).
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Open, close, reset, list and attach to rooms (talks to bay0; root on the anchor
    /// host).
    #[command(subcommand)]
    Room(RoomCommand),
    /// Every room (name, backend, state, uptime, memory, vCPUs, pid: its VMM's, or a
    /// namespace room's agent's) and the host's memory.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The vault (/persist): runs the anchor-vault helper on this terminal.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// The audit log (docs/AUDIT-LOG-FORMAT.md).
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// The anchor-vault helper anchorctl runs.
pub const ANCHOR_VAULT: &str = "/usr/bin/anchor-vault";
/// The persistent audit log.
pub const AUDIT_LOG: &str = "/persist/audit/audit.log";

/// `anchorctl vault ...`
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Locked or open, the keyslots and their cost, the volumes and their use, the
    /// TPM's dictionary-attack state and the audit log's check (`anchor-vault status`).
    Status {
        /// The anchor-vault binary.
        #[arg(long, value_name = "PATH", default_value = ANCHOR_VAULT)]
        anchor_vault: PathBuf,
        /// Further anchor-vault options (e.g. --disk PATH, --tpm TCTI).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// Create the vault on a blank disk (`anchor-vault init ARGS`): asks for the
    /// passphrase twice and shows the recovery key once.
    Init {
        /// The anchor-vault binary.
        #[arg(long, value_name = "PATH", default_value = ANCHOR_VAULT)]
        anchor_vault: PathBuf,
        /// anchor-vault init options (e.g. --disk PATH, --pcrs 7).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
}

/// `anchorctl audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the records, one per line: `#SEQ DATE TIME ACTOR EVENT KEY=VALUE...`
    /// (values stay escaped as stored); a line that is not a record is shown as `#?`.
    Show {
        /// The audit log to read [default: /persist/audit/audit.log; while the vault is
        /// not open, this boot's log, /run/anchor/audit.log, carried into the vault when it
        /// opens].
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Print the stored lines unchanged.
        #[arg(long)]
        raw: bool,
    },
    /// Check the hash chain and compare the log with its TPM anchor (read with
    /// `anchor-vault audit tpm-state`). Prints `intact` or the first bad record and why.
    Verify {
        /// The audit log to check [default: /persist/audit/audit.log; while the vault is
        /// not open, this boot's log, /run/anchor/audit.log, whose chain alone is checked:
        /// its records are anchored once carried into the vault].
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Check the chain only, not the TPM anchor.
        #[arg(long)]
        no_tpm: bool,
        /// The anchor-vault binary.
        #[arg(long, value_name = "PATH", default_value = ANCHOR_VAULT)]
        anchor_vault: PathBuf,
        /// TPM connection for anchor-vault (a TCTI string).
        #[arg(long, value_name = "TCTI")]
        tpm: Option<String>,
    },
}

/// `anchorctl room ...`
#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Every room with a policy: open ones with backend, state, uptime, memory, vCPUs and
    /// pid (its VMM's, or a namespace room's agent's), the others as stopped.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Open a room from its policy; returns once its agent reports ready (or with the
    /// reason it could not start).
    Start {
        /// The room (its policy is /etc/anchor/policies/NAME.toml).
        #[arg(value_parser = room_name)]
        name: String,
    },
    /// Close a room: everything in it is forgotten (only its vault volume, if it has one,
    /// is synced first).
    Stop {
        /// The room.
        #[arg(value_parser = room_name)]
        name: String,
    },
    /// Close a room and open it again from its pristine image; returns once it is ready.
    Reset {
        /// The room (its policy is /etc/anchor/policies/NAME.toml).
        #[arg(value_parser = room_name)]
        name: String,
    },
    /// Attach this terminal to a room's console. Ctrl-] detaches (the room keeps running).
    Console {
        /// The room.
        #[arg(value_parser = room_name)]
        name: String,
    },
}

/// A room name as bay0 accepts it, checked before anything is sent: the request is one
/// line, so a name with a space or a newline would otherwise reach bay0 as another
/// request's words (`stop "web\nx"` stopped web).
fn room_name(s: &str) -> Result<String, String> {
    if anchor_proto::name::is_valid(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a room name (1-{} of a-z 0-9 -, not starting with -)",
            anchor_proto::name::NAME_MAX
        ))
    }
}

/// `anchorctl update ...`
#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Show both slots: version, state (good, on trial with N tries left, bad), which one
    /// runs and which one the next boot picks.
    Status {
        #[command(flatten)]
        target: UpdateTarget,
    },
    /// Install an update into the slot that is not running and arm it for a trial boot.
    ///
    /// FILE must be a UKI signed with our Secure Boot db key, built for the architecture of
    /// the running slot's image, and newer than the running base and every good slot (no
    /// downgrades); otherwise nothing is written, and the line says why and names FILE. The image
    /// is written to a temporary file, synced, read back, then renamed to
    /// `anchor-X+N-0.efi`: the next N boots try it, and unless one of them passes bay0's
    /// health check the machine falls back to the old slot by itself.
    Apply {
        /// The signed update (a UKI).
        #[arg(value_name = "FILE")]
        file: String,
        /// Trial boots before falling back (1-9).
        #[arg(long, default_value_t = 3,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(anchor_update::slots::MAX_TRIES)))]
        tries: u32,
        #[command(flatten)]
        target: UpdateTarget,
    },
}

/// Which ESP `anchorctl update` works on.
#[derive(Debug, clap::Args)]
pub struct UpdateTarget {
    /// Work on the ESP mounted at DIR (e.g. a device's disk on another machine) instead of
    /// this machine's own ESP (found through systemd-boot's LoaderDevicePartUUID and
    /// mounted privately for the command).
    #[arg(long, value_name = "DIR")]
    pub esp: Option<PathBuf>,
    /// The slot that is running (default: what systemd-boot reported; with --esp and one
    /// filled slot, that one).
    #[arg(long, value_name = "A|B")]
    pub running: Option<String>,
    /// The DER certificate updates must be signed with (default: the running base's own,
    /// /etc/anchor/secureboot/db.der).
    #[arg(long, value_name = "DER")]
    pub cert: Option<PathBuf>,
}

/// `anchorctl policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files, including each one's parent chain.
    ///
    /// Prints `FILE: ok` on stdout for every valid file. For an invalid file, prints its
    /// problems on stderr, one per line, as `FILE:LINE:KEY: message` (LINE when known, KEY
    /// when the problem has one). All shape problems (unknown keys, wrong types) are
    /// listed together; once the shape is right, all value problems (ranges, units, names,
    /// nesting) are; a TOML syntax error is reported alone; at most 100 are listed, then
    /// a line counts the rest. A parent named by `parent = "x"` is read from x.toml in the
    /// same directory, and each file's `name` must equal its file name without `.toml`. A
    /// policy with `[persist]` is refused when another top-level policy in its directory
    /// (every *.toml there) names the same vault volume. Exits 0 if all files are valid, 1
    /// if not.
    Check {
        /// Policy files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the effective policy (every default filled in) after validating it.
    ///
    /// The TOML output is itself a valid policy that means exactly the same. Exits 1 (with
    /// the problems on stderr) if the file is invalid.
    Show {
        /// Policy file to show.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
}
