// SPDX-License-Identifier: GPL-3.0-or-later
//! Command-line syntax (clap derive). The help text is the user documentation: keep it true.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Anchor OS operator CLI.
///
/// Exit status: 0 success, 1 a policy is invalid or unreadable, 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "anchorctl", version)]
pub struct Cli {
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
