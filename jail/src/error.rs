// SPDX-License-Identifier: GPL-3.0-or-later
//! The jail's one error type: what it was doing, and the errno or the reason.

use core::fmt;

/// Everything that can stop a jail from being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A system call failed.
    Sys { op: &'static str, errno: i32 },
    /// A system call on a path failed.
    Path {
        op: &'static str,
        path: String,
        errno: i32,
    },
    /// The command line is wrong.
    Usage(String),
    /// The machine cannot give this jail what it needs.
    Unsupported(&'static str),
    /// Landlock refused a rule or the restriction.
    Landlock(String),
}

/// Result with the jail's error.
pub type Result<T> = core::result::Result<T, Error>;

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys { op, errno } => write!(f, "{op}: {}", errno_text(*errno)),
            Error::Path { op, path, errno } => write!(f, "{op} {path}: {}", errno_text(*errno)),
            Error::Usage(msg) => write!(f, "usage: {msg}"),
            Error::Unsupported(msg) => f.write_str(msg),
            Error::Landlock(msg) => write!(f, "landlock: {msg}"),
        }
    }
}

impl std::error::Error for Error {}
