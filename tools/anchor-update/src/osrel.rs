// SPDX-License-Identifier: GPL-3.0-or-later
//! os-release (the UKI's `.osrel` section and `/usr/lib/os-release` in the running base):
//! `KEY=value` lines, values optionally in double or single quotes. We read the few keys
//! updates need: `ID`/`IMAGE_ID` (must be `anchor`) and `IMAGE_VERSION`.

use crate::version::{Version, VersionError};
use std::fmt;

/// What made an os-release unusable for an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OsRelError {
    /// Not UTF-8.
    NotText,
    /// `IMAGE_ID` (or `ID`) is not `anchor`.
    NotAnchor(String),
    /// No `IMAGE_VERSION`.
    NoVersion,
    /// `IMAGE_VERSION` does not parse.
    BadVersion(VersionError),
}

impl fmt::Display for OsRelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OsRelError::NotText => f.write_str("os-release is not UTF-8 text"),
            OsRelError::NotAnchor(id) => write!(f, "os-release names {id:?}, not anchor"),
            OsRelError::NoVersion => f.write_str("os-release has no IMAGE_VERSION"),
            OsRelError::BadVersion(e) => write!(f, "os-release IMAGE_VERSION: {e}"),
        }
    }
}

impl std::error::Error for OsRelError {}

/// The value of `key`, unquoted.
pub fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().rev().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        if k != key {
            return None;
        }
        let v = v.trim();
        let unq = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
        Some(unq.unwrap_or(v))
    })
}

/// The Anchor OS image version an os-release declares.
pub fn anchor_version(raw: &[u8]) -> Result<Version, OsRelError> {
    let text = std::str::from_utf8(raw).map_err(|_| OsRelError::NotText)?;
    let id = value(text, "IMAGE_ID")
        .or_else(|| value(text, "ID"))
        .unwrap_or("");
    if id != "anchor" {
        return Err(OsRelError::NotAnchor(id.chars().take(40).collect()));
    }
    let v = value(text, "IMAGE_VERSION").ok_or(OsRelError::NoVersion)?;
    Version::parse(v).map_err(OsRelError::BadVersion)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_and_bare_values() {
        let t = "NAME=\"Anchor OS\"\nID=anchor\nIMAGE_ID='anchor'\nIMAGE_VERSION=1.2\n";
        assert_eq!(value(t, "NAME"), Some("Anchor OS"));
        assert_eq!(value(t, "IMAGE_ID"), Some("anchor"));
        assert_eq!(anchor_version(t.as_bytes()).unwrap().as_str(), "1.2");
    }

    #[test]
    fn refuses_other_systems_and_missing_versions() {
        assert_eq!(
            anchor_version(b"ID=debian\nIMAGE_VERSION=1\n"),
            Err(OsRelError::NotAnchor("debian".into()))
        );
        assert_eq!(anchor_version(b"ID=anchor\n"), Err(OsRelError::NoVersion));
        assert!(matches!(
            anchor_version(b"ID=anchor\nIMAGE_VERSION=1.x\n"),
            Err(OsRelError::BadVersion(_))
        ));
        assert_eq!(anchor_version(&[0xff, 0xfe]), Err(OsRelError::NotText));
    }
}
