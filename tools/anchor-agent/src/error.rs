// SPDX-License-Identifier: GPL-3.0-or-later
//! The agent's error type: a failed system call (with its errno) or bad usage.

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A system call failed.
    Sys {
        /// What the agent was doing.
        op: &'static str,
        /// The errno it got.
        errno: i32,
    },
    /// Wrong command-line arguments to the binary itself.
    Usage(&'static str),
}

impl Error {
    /// The errno of a failed system call, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            Error::Usage(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys { op, errno } => {
                write!(f, "{op}: {}", std::io::Error::from_raw_os_error(*errno))
            }
            Error::Usage(msg) => write!(f, "usage: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
