// SPDX-License-Identifier: GPL-3.0-or-later
//! Room names on the wire: 1..=32 bytes of `[a-z0-9-]`, starting with a letter or digit
//! (a subset of the policy language's names, so a name that passes here can never walk
//! out of a directory or forge a field separator).

/// Longest room name.
pub const NAME_MAX: usize = 32;

/// True when `name` is a valid room name.
pub fn is_valid(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    !b.is_empty()
        && b.len() <= NAME_MAX
        && b.iter().all(ok)
        && b.first().is_some_and(|c| *c != b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web", "work", "dev-2", "a", "0day", &"x".repeat(32)] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "-web",
            "Web",
            "web/../x",
            "a b",
            "w\n",
            "é",
            &"x".repeat(33),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
