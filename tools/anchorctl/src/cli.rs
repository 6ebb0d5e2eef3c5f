// SPDX-License-Identifier: GPL-3.0-or-later
//! Command-line syntax (clap derive). The help text is the user documentation: keep it true.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Anchor OS operator CLI.
///
/// Exit status: 0 success, 1 a policy is invalid or unreadable, or bay0 refused or could
/// not be reached (the reason on stderr, one line), 2 usage error.
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
