// SPDX-License-Identifier: GPL-3.0-or-later
//! The top-level error of anchor-vault's commands: one variant per module's error, the
//! whole chain printed once by `main`.

use core::fmt;

use crate::auditlog::AuditError;
use crate::keys::KeyError;
use crate::luks::LuksError;
use crate::persist::PersistError;
use crate::token::TokenError;
use crate::tpm::TpmError;

/// Anything a command can fail with.
#[derive(Debug)]
pub enum VaultError {
    Luks(LuksError),
    Tpm(TpmError),
    Token(TokenError),
    Keys(KeyError),
    Persist(PersistError),
    Audit(AuditError),
    /// Reading from or writing to the console.
    Console(std::io::Error),
    /// A request that cannot be carried out, said plainly.
    Refused(String),
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultError::Luks(e) => write!(f, "{e}"),
            VaultError::Tpm(e) => write!(f, "{e}"),
            VaultError::Token(e) => write!(f, "{e}"),
            VaultError::Keys(e) => write!(f, "{e}"),
            VaultError::Persist(e) => write!(f, "{e}"),
            VaultError::Audit(e) => write!(f, "{e}"),
            VaultError::Console(e) => write!(f, "console: {e}"),
            VaultError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for VaultError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VaultError::Luks(e) => e.source(),
            VaultError::Tpm(e) => e.source(),
            VaultError::Token(e) => e.source(),
            VaultError::Keys(e) => e.source(),
            VaultError::Persist(e) => e.source(),
            VaultError::Audit(e) => e.source(),
            VaultError::Console(e) => e.source(),
            VaultError::Refused(_) => None,
        }
    }
}

macro_rules! from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for VaultError {
            fn from(e: $t) -> Self {
                VaultError::$v(e)
            }
        }
    )*};
}

from!(LuksError => Luks, TpmError => Tpm, TokenError => Token, KeyError => Keys,
      PersistError => Persist, AuditError => Audit, std::io::Error => Console);

/// How a command ended, mapped to the exit status by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (vault opened, created, checked, ...): exit 0.
    Done,
    /// The vault stays locked: no right passphrase or recovery key was given: exit 3.
    Locked,
    /// The disk holds no vault (blank, or something else): exit 4.
    NoVault,
    /// Both LUKS2 header copies are damaged; nothing was changed: exit 5.
    Damaged,
}

impl Outcome {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Locked => 3,
            Outcome::NoVault => 4,
            Outcome::Damaged => 5,
        }
    }
}

/// Exit status for an error (1) and a usage error (2).
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
