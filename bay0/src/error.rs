// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's one error type. Every payload is `Copy` (errno, `&'static str`): building,
//! passing or printing an error never allocates (spec: no allocation on error paths).

use core::fmt;

/// Everything that can go wrong in bay0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A system call failed: what bay0 was doing and the errno it got.
    Sys { op: &'static str, errno: i32 },
    /// The command line bay0 was started with is wrong.
    Usage(&'static str),
    /// A configuration value (kernel command line) is out of range or malformed.
    Config(&'static str),
    /// A room policy was rejected (used by the policy module).
    Policy(&'static str),
    /// A room could not be started as its policy asks.
    Room(&'static str),
    /// bay0 cannot uphold one of its own invariants.
    Fatal(&'static str),
    /// A room does not fit in the memory left for rooms (MiB).
    Memory(anchor_policy::admission::NoRoom),
}

/// Result with bay0's error.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// The errno of a failed system call, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

pub use anchor_sys::errno_name;

/// Maps a std I/O error to [`Error::Sys`] for `op` (EIO when it carries no errno).
pub fn io(op: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Sys {
        op,
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

impl From<anchor_sys::Error> for Error {
    fn from(e: anchor_sys::Error) -> Error {
        Error::Sys {
            op: e.op,
            errno: e.errno,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys { op, errno } => match errno_name(*errno) {
                Some(name) => write!(f, "{op}: {name} (errno {errno})"),
                None => write!(f, "{op}: errno {errno}"),
            },
            Error::Usage(msg) => write!(f, "usage: {msg}"),
            Error::Config(msg) => write!(f, "config: {msg}"),
            Error::Policy(msg) => write!(f, "policy: {msg}"),
            Error::Room(msg) => f.write_str(msg),
            Error::Fatal(msg) => write!(f, "fatal: {msg}"),
            Error::Memory(anchor_policy::admission::NoRoom { need_mib, free_mib }) => write!(
                f,
                "not enough memory: the room needs {need_mib} MiB (its memory plus the VMM's \
                 overhead) and {free_mib} MiB are left for rooms"
            ),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_error_names_known_errno() {
        let e = Error::Sys {
            op: "mount /proc",
            errno: libc::EBUSY,
        };
        assert_eq!(e.to_string(), "mount /proc: EBUSY (errno 16)");
        assert_eq!(e.errno(), Some(libc::EBUSY));
    }

    #[test]
    fn sys_error_with_unknown_errno_prints_number() {
        let e = Error::Sys {
            op: "ioctl",
            errno: 4095,
        };
        assert_eq!(e.to_string(), "ioctl: errno 4095");
    }

    #[test]
    fn other_variants_display_their_kind() {
        assert_eq!(Error::Usage("bad").to_string(), "usage: bad");
        assert_eq!(Error::Config("x").to_string(), "config: x");
        assert_eq!(Error::Policy("too deep").to_string(), "policy: too deep");
        assert_eq!(Error::Fatal("no loop").to_string(), "fatal: no loop");
        assert_eq!(Error::Fatal("no loop").errno(), None);
    }

    #[test]
    fn error_is_copy_and_small() {
        fn assert_copy<T: Copy>() {}
        assert_copy::<Error>();
        assert!(core::mem::size_of::<Error>() <= 24);
    }
}
