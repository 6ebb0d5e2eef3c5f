// SPDX-License-Identifier: GPL-3.0-or-later
//! Image versions: dotted non-negative integers (`1`, `0.2`, `2026.11.3`), compared
//! numerically component by component (`1.10` > `1.9`; `1.0` == `1`). The version of a
//! UKI is its os-release `IMAGE_VERSION`; anything else is refused rather than guessed.

use std::cmp::Ordering;
use std::fmt;

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// Empty string.
    Empty,
    /// More than [`MAX_PARTS`] components.
    TooLong,
    /// A component that is not a decimal number of at most 9 digits.
    BadPart(String),
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionError::Empty => f.write_str("empty version"),
            VersionError::TooLong => write!(f, "version has more than {MAX_PARTS} parts"),
            VersionError::BadPart(p) => write!(
                f,
                "version part {p:?} is not a number (versions are like 1.2.3)"
            ),
        }
    }
}

impl std::error::Error for VersionError {}

/// At most this many dotted components.
pub const MAX_PARTS: usize = 8;

/// A parsed image version.
#[derive(Debug, Clone)]
pub struct Version {
    parts: Vec<u32>,
    text: String,
}

impl Version {
    /// Parse `1.2.3`.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        let mut parts = Vec::new();
        for p in text.split('.') {
            if parts.len() == MAX_PARTS {
                return Err(VersionError::TooLong);
            }
            let ok = !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit());
            let n: u32 = if ok { p.parse().ok() } else { None }
                .ok_or_else(|| VersionError::BadPart(p.chars().take(32).collect()))?;
            parts.push(n);
        }
        Ok(Version {
            parts,
            text: text.to_string(),
        })
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn significant(&self) -> &[u32] {
        let keep = self
            .parts
            .iter()
            .rposition(|&p| p != 0)
            .map_or(0, |i| i + 1);
        self.parts.get(..keep).unwrap_or(&[])
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // Trailing zeros do not count: 1.0 == 1.
        self.significant().cmp(other.significant())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn numeric_order_not_text_order() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.99.99"));
        assert!(v("0.1.1") > v("0.1"));
        assert_eq!(v("1.0"), v("1"));
        assert_eq!(v("1.0.0").cmp(&v("1")), Ordering::Equal);
    }

    #[test]
    fn junk_is_refused() {
        for bad in ["", "1..2", "1.a", "-1", "1.2-rc1", " 1", "1.", "1234567890"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Version::parse("1.2.3.4.5.6.7.8.9"),
            Err(VersionError::TooLong).map(|()| v("0"))
        );
    }

    proptest! {
        #[test]
        fn order_matches_the_numbers(a in proptest::collection::vec(0u32..1000, 1..5),
                                     b in proptest::collection::vec(0u32..1000, 1..5)) {
            let text = |p: &Vec<u32>| p.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
            let (va, vb) = (v(&text(&a)), v(&text(&b)));
            let pad = |p: &Vec<u32>| { let mut p = p.clone(); p.resize(8, 0); p };
            prop_assert_eq!(va.cmp(&vb), pad(&a).cmp(&pad(&b)));
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Version::parse(&s);
        }
    }
}
