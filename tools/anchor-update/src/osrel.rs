// SPDX-License-Identifier: GPL-3.0-or-later
//! os-release (the UKI's `.osrel` section and `/usr/lib/os-release` in the running base),
//! read exactly as systemd-boot reads `.osrel` to name, order and version its menu entries
//! (src/boot/efi/boot.c, `line_get_key_value` with the separator `=`): the text ends at the
//! first NUL; lines end at `\n` or `\r`; spaces and tabs around a line are dropped; a line
//! starting with `#` is a comment; the key is everything before the first `=`, the value
//! everything after the run of `=` that follows it; a value is unquoted only when it starts
//! with `"` and the line ends with `"` (single quotes, backslashes and `$` are kept as
//! they are); the last line of a key wins. So the version the floor compares is the
//! version systemd-boot sorts by, whatever the quoting. We read the few keys updates need:
//! `IMAGE_ID` (else `ID`, must be `anchor`) and `IMAGE_VERSION`.
//!
//! A shell (os-release(5), systemd's userspace) reads some of these lines differently
//! (`'1'`, `"a\"b"`, a value after spaces); [`check_plain`] refuses such a file at build
//! time, naming the key.

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

/// The text systemd-boot parses: the bytes up to the first NUL.
fn text(raw: &[u8]) -> &[u8] {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    raw.get(..end).unwrap_or_default()
}

/// One `KEY=value` line as systemd-boot splits it: (line number from 1, key, value).
fn pairs(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    text.split(['\n', '\r'])
        .enumerate()
        .filter_map(|(n, line)| {
            let line = line.trim_matches([' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let value = value.trim_start_matches('=');
            let value = match value.strip_prefix('"') {
                // `"` alone: systemd-boot's opening and closing quote are the same byte.
                Some("") => "",
                Some(inner) => inner.strip_suffix('"').unwrap_or(value),
                None => value,
            };
            Some((n + 1, key, value))
        })
}

/// The value of `key` as systemd-boot reads it (the last line naming it).
pub fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    pairs(text).filter(|p| p.1 == key).last().map(|p| p.2)
}

/// The Anchor OS image version an os-release declares.
pub fn anchor_version(raw: &[u8]) -> Result<Version, OsRelError> {
    let text = std::str::from_utf8(text(raw)).map_err(|_| OsRelError::NotText)?;
    let id = value(text, "IMAGE_ID")
        .or_else(|| value(text, "ID"))
        .unwrap_or("");
    if id != "anchor" {
        return Err(OsRelError::NotAnchor(id.chars().take(40).collect()));
    }
    let v = value(text, "IMAGE_VERSION").ok_or(OsRelError::NoVersion)?;
    Version::parse(v).map_err(OsRelError::BadVersion)
}

/// A line of an os-release that systemd-boot and a shell could read differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguous {
    /// Line number, from 1 (0: the file as a whole).
    pub line: usize,
    /// The key of that line (empty when there is none).
    pub key: String,
    pub why: &'static str,
}

impl fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.as_str()) {
            (0, _) => write!(f, "{}", self.why),
            (n, "") => write!(f, "line {n}: {}", self.why),
            (n, key) => write!(f, "{key} (line {n}): {}", self.why),
        }
    }
}

impl std::error::Error for Ambiguous {}

/// Characters a bare (unquoted) value may hold: none a shell would treat specially.
fn plain_bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-:/+,@%~=".contains(c)
}

/// Refuse an os-release whose values systemd-boot (see the module) and a shell
/// (os-release(5)) would not read alike: every line is empty, a `#` comment, or
/// `KEY=value` with KEY of `A-Z 0-9 _`, given once, and a value either bare (letters,
/// digits, `._-:/+,@%~=`) or in double quotes holding no `"`, `\`, `$` or `` ` ``;
/// nothing around the line, `\n` line ends only, no NUL, UTF-8.
pub fn check_plain(raw: &[u8]) -> Result<(), Ambiguous> {
    let whole = |why| Ambiguous {
        line: 0,
        key: String::new(),
        why,
    };
    if raw.contains(&0) {
        return Err(whole("a NUL byte (systemd-boot stops reading there)"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| whole("not UTF-8 text"))?;
    let mut seen = std::collections::BTreeSet::new();
    for (n, line) in text.split('\n').enumerate() {
        let bad = |key: &str, why| Ambiguous {
            line: n + 1,
            key: key.chars().take(40).collect(),
            why,
        };
        if line.contains('\r') {
            return Err(bad(
                "",
                "a carriage return (systemd-boot ends a line there)",
            ));
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad("", "not KEY=value"));
        };
        let key_ok = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !key_ok {
            return Err(bad(key, "the key is not made of A-Z, 0-9 and _"));
        }
        if !seen.insert(key) {
            return Err(bad(key, "given twice (systemd-boot keeps the last)"));
        }
        if value.starts_with('=') {
            return Err(bad(key, "the value starts with = (systemd-boot drops it)"));
        }
        let plain = match value.strip_prefix('"') {
            Some(rest) => rest
                .strip_suffix('"')
                .is_some_and(|inner| !inner.contains(['"', '\\', '$', '`'])),
            None => value.chars().all(plain_bare),
        };
        if !plain {
            return Err(bad(
                key,
                "the value is neither bare (letters, digits, ._-:/+,@%~=) nor in double \
                 quotes free of \" \\ $ ` (a shell and systemd-boot would read it differently)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bare_and_double_quoted_values() {
        let t = "NAME=\"Anchor OS\"\nID=anchor\nIMAGE_ID=anchor\nIMAGE_VERSION=1.2\n";
        assert_eq!(value(t, "NAME"), Some("Anchor OS"));
        assert_eq!(value(t, "IMAGE_ID"), Some("anchor"));
        assert_eq!(anchor_version(t.as_bytes()).unwrap().as_str(), "1.2");
    }

    /// Each of these was read differently by anchor-update (left) than by systemd-boot
    /// (right), so the floor compared another version than the one the menu sorts by, or
    /// took an image systemd-boot names otherwise for ours.
    #[test]
    fn reads_what_systemd_boot_reads() {
        let v = |t: &str| anchor_version(t.as_bytes()).map(|v| v.as_str().to_string());
        // Single quotes are kept by systemd-boot: `'9'` is no version.
        assert!(matches!(
            v("ID=anchor\nIMAGE_VERSION='9'\n"),
            Err(OsRelError::BadVersion(_))
        ));
        assert_eq!(
            v("ID=anchor\nIMAGE_ID='anchor'\nIMAGE_VERSION=1\n"),
            Err(OsRelError::NotAnchor("'anchor'".into()))
        );
        // The text ends at the first NUL.
        assert_eq!(
            v("ID=anchor\nIMAGE_VERSION=1\n\0IMAGE_VERSION=9\n").as_deref(),
            Ok("1")
        );
        // A carriage return ends a line.
        assert_eq!(
            v("ID=anchor\nIMAGE_VERSION=1\rIMAGE_VERSION=9\n").as_deref(),
            Ok("9")
        );
        // The run of = after the key is dropped; spaces after it are kept.
        assert_eq!(v("ID=anchor\nIMAGE_VERSION==9\n").as_deref(), Ok("9"));
        assert!(matches!(
            v("ID=anchor\nIMAGE_VERSION= 9\n"),
            Err(OsRelError::BadVersion(_))
        ));
        // Spaces and tabs around the line are dropped.
        assert_eq!(
            v(" \tID=anchor\nIMAGE_VERSION=\"3\"\t\n").as_deref(),
            Ok("3")
        );
        // A lone double quote is an empty value.
        assert_eq!(value("A=\"\n", "A"), Some(""));
        assert_eq!(value("A=\"x\n", "A"), Some("\"x"));
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

    #[test]
    fn check_plain_refuses_what_could_be_read_two_ways() {
        let ours = "NAME=\"Anchor OS\"\nID=anchor\nIMAGE_ID=anchor\nIMAGE_VERSION=1.2\n\
                    PRETTY_NAME=\"Anchor OS 1.2\"\nHOME_URL=\"https://anchor-os.example/\"\n";
        assert_eq!(check_plain(ours.as_bytes()), Ok(()));
        for (text, line, key) in [
            ("ID=anchor\nIMAGE_VERSION='2'\n", 2, "IMAGE_VERSION"),
            ("IMAGE_ID=\"anch\\\"or\"\n", 1, "IMAGE_ID"),
            ("NAME=Anchor OS\n", 1, "NAME"),
            ("IMAGE_VERSION=1\nIMAGE_VERSION=2\n", 2, "IMAGE_VERSION"),
            ("IMAGE_VERSION==2\n", 1, "IMAGE_VERSION"),
            (" IMAGE_VERSION=2\n", 1, " IMAGE_VERSION"),
            ("IMAGE_VERSION=2\r\n", 1, ""),
            ("IMAGE_VERSION=$V\n", 1, "IMAGE_VERSION"),
            ("just words\n", 1, ""),
        ] {
            let e = check_plain(text.as_bytes()).unwrap_err();
            assert_eq!((e.line, e.key.as_str()), (line, key), "{text:?}: {e}");
        }
        assert_eq!(check_plain(b"ID=anchor\0").unwrap_err().line, 0);
    }
}
