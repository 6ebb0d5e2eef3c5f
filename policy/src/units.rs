// SPDX-License-Identifier: GPL-3.0-or-later
//! Sizes (`512MiB`, `2GiB`) and durations (`90m`, `8h`, `unlimited`).
//!
//! Strict grammar: ASCII digits immediately followed by one unit, nothing else (no sign,
//! no fraction, no spaces). Binary units only, so `1GiB` means exactly what a VMM maps.

use std::fmt;

/// A size in bytes, always a whole number of MiB (what memory and vault volumes need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
const SIZE_UNITS: [(&str, u64); 4] = [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)];

/// Longest digit run accepted: 20 digits already exceed u64.
const MAX_DIGITS: usize = 20;

impl ByteSize {
    /// Size from a number of MiB (`None` on overflow).
    pub fn from_mib(mib: u64) -> Option<Self> {
        mib.checked_mul(MIB).map(Self)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The size in whole MiB.
    pub fn mib(self) -> u64 {
        self.0 / MIB
    }

    /// Parses `<digits><KiB|MiB|GiB|TiB>`; the result must be a non-zero whole number of MiB.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (digits, unit) = split_number(text)?;
        let Some(&(_, mult)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "unknown size unit {} (use KiB, MiB, GiB or TiB, e.g. \"512MiB\")",
                crate::error::shown(unit)
            ));
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("number {} is too large", crate::error::shown(digits)))?;
        let bytes = n
            .checked_mul(mult)
            .ok_or_else(|| format!("{} overflows 64 bits", crate::error::shown(text)))?;
        if bytes == 0 {
            return Err("must not be zero".to_owned());
        }
        if bytes % MIB != 0 {
            return Err(format!(
                "{} is not a whole number of MiB",
                crate::error::shown(text)
            ));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for ByteSize {
    /// Canonical form: the largest unit that divides the size exactly (`1536MiB`, `2GiB`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, mult) in SIZE_UNITS {
            if self.0 != 0 && self.0 % mult == 0 {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A time limit in whole seconds; `None` means unlimited (the widest value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit(Option<u64>);

const DURATION_UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
/// The word that means "no limit".
pub const UNLIMITED: &str = "unlimited";

impl Limit {
    /// No time limit.
    pub const UNLIMITED: Self = Self(None);

    /// A finite limit of `secs` seconds.
    pub fn from_secs(secs: u64) -> Self {
        Self(Some(secs))
    }

    /// Seconds, or `None` when unlimited.
    pub fn secs(self) -> Option<u64> {
        self.0
    }

    /// Whether `self` is at most `other` (every finite limit is within unlimited).
    pub fn within(self, other: Self) -> bool {
        match (self.0, other.0) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a <= b,
        }
    }

    /// Parses `unlimited` or `<digits><s|m|h|d>`; a finite limit must be > 0.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == UNLIMITED {
            return Ok(Self(None));
        }
        let (digits, unit) = split_number(text)?;
        let Some(&(_, mult)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "unknown duration unit {} (use s, m, h or d, e.g. \"8h\", or \"unlimited\")",
                crate::error::shown(unit)
            ));
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("number {} is too large", crate::error::shown(digits)))?;
        let secs = n
            .checked_mul(mult)
            .ok_or_else(|| format!("{} overflows 64 bits", crate::error::shown(text)))?;
        if secs == 0 {
            return Err("must not be zero (write \"unlimited\" for no limit)".to_owned());
        }
        Ok(Self(Some(secs)))
    }
}

impl fmt::Display for Limit {
    /// Canonical form: `unlimited`, or the largest unit that divides exactly (`90m`, `2d`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(secs) = self.0 else {
            return f.write_str(UNLIMITED);
        };
        for (unit, mult) in DURATION_UNITS {
            if secs != 0 && secs % mult == 0 {
                return write!(f, "{}{unit}", secs / mult);
            }
        }
        write!(f, "{secs}s")
    }
}

/// Splits `123GiB` into (`123`, `GiB`), rejecting anything but digits then a unit.
fn split_number(text: &str) -> Result<(&str, &str), String> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(end);
    if digits.is_empty() {
        return Err(format!(
            "{} does not start with a number (expected e.g. \"512MiB\" or \"8h\")",
            crate::error::shown(text)
        ));
    }
    if digits.len() > MAX_DIGITS {
        return Err(format!(
            "number {} is too large",
            crate::error::shown(digits)
        ));
    }
    if unit.is_empty() {
        return Err(format!(
            "{} has no unit (expected e.g. \"512MiB\" or \"8h\")",
            crate::error::shown(text)
        ));
    }
    Ok((digits, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_canonically() {
        assert_eq!(ByteSize::parse("512MiB").unwrap().bytes(), 512 * MIB);
        assert_eq!(ByteSize::parse("2GiB").unwrap().bytes(), 2 * GIB);
        assert_eq!(ByteSize::parse("1024KiB").unwrap().bytes(), MIB);
        assert_eq!(ByteSize::parse("2048MiB").unwrap().to_string(), "2GiB");
        assert_eq!(ByteSize::parse("1536MiB").unwrap().to_string(), "1536MiB");
        assert_eq!(ByteSize::parse("1TiB").unwrap().to_string(), "1TiB");
    }

    #[test]
    fn sizes_reject_bad_input() {
        for bad in [
            "",
            "MiB",
            "512",
            "512MB",
            "512 MiB",
            "-1GiB",
            "+1GiB",
            "1.5GiB",
            "0GiB",
            "0MiB",
            "1KiB",
            "17179869184TiB",
            "99999999999999999999999GiB",
            "1gib",
            "1GiB ",
        ] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits_parse_and_print() {
        assert_eq!(Limit::parse("unlimited").unwrap(), Limit::UNLIMITED);
        assert_eq!(Limit::parse("90m").unwrap().secs(), Some(5400));
        assert_eq!(Limit::parse("120m").unwrap().to_string(), "2h");
        assert_eq!(Limit::parse("48h").unwrap().to_string(), "2d");
        assert_eq!(Limit::parse("61s").unwrap().to_string(), "61s");
        for bad in [
            "0h",
            "h",
            "8",
            "8 h",
            "8hours",
            "-1h",
            "999999999999999999d",
            "Unlimited",
        ] {
            assert!(Limit::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limit_ordering() {
        let h = Limit::from_secs(3600);
        assert!(h.within(Limit::UNLIMITED));
        assert!(!Limit::UNLIMITED.within(h));
        assert!(Limit::UNLIMITED.within(Limit::UNLIMITED));
        assert!(Limit::from_secs(60).within(h));
        assert!(!h.within(Limit::from_secs(60)));
    }
}
