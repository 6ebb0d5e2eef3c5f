// SPDX-License-Identifier: GPL-3.0-or-later
//! Command-line syntax (clap derive). The help text is the user documentation: keep it true.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Anchor OS operator CLI.
///
/// Exit status: 0 success, 1 a policy is invalid or unreadable, bay0 refused or could
/// not be reached (the reason on stderr, one line), or an update was refused or failed,
/// 2 usage error.
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
    /// Every room (name, backend, state, uptime, memory, vCPUs, VMM pid) and the host's
    /// memory.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `anchorctl room ...`
#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Every room with a policy: open ones with backend, state, uptime, memory, vCPUs and
    /// VMM pid, the others as stopped.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Open a room from its policy; returns once its agent reports ready (or with the
    /// reason it could not start).
    Start {
        /// The room (its policy is /etc/anchor/policies/NAME.toml).
        name: String,
    },
    /// Close a room: everything in it is forgotten (only its vault volume, if it has one,
    /// is synced first).
    Stop { name: String },
    /// Close a room and open it again from its pristine image; returns once it is ready.
    Reset { name: String },
    /// Attach this terminal to a room's console. Ctrl-] detaches (the room keeps running).
    Console { name: String },
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
    /// FILE must be a UKI signed with our Secure Boot db key and newer than the running
    /// base and every good slot (no downgrades); otherwise nothing is written. The image
    /// is written to a temporary file, synced, read back, then renamed to
    /// `anchor-X+N-0.efi`: the next N boots try it, and unless one of them passes bay0's
    /// health check the machine falls back to the old slot by itself.
    Apply {
        /// The signed update (a UKI).
        #[arg(value_name = "FILE")]
        file: String,
        /// Trial boots before falling back (1-9).
        #[arg(long, default_value_t = 3)]
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
    /// nesting) are; a TOML syntax error is reported alone. A parent named by
    /// `parent = "x"` is read from x.toml in the same directory, and each file's `name`
    /// must equal its file name without `.toml`. Exits 0 if all files are valid, 1 if not.
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
