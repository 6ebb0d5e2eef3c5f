// SPDX-License-Identifier: GPL-3.0-or-later
//! Escaping of field values and the rules for names.
//!
//! A value may hold any bytes (a room chose them). In the log it is written with every
//! byte outside printable ASCII `!`..`~`, and `%` itself, as `%XX` (upper-case hex). So a
//! stored value never holds a space, a newline or a control character: it cannot end its
//! record, start a field, or send escape sequences to the terminal of whoever reads the
//! log. The escaping is canonical (one way to write each value), which the parser checks.

/// The longest actor, event or key name.
pub const NAME_MAX: usize = 32;

/// Keys the record format uses itself; a field may not take them.
pub const RESERVED_KEYS: [&str; 6] = ["seq", "time", "actor", "event", "prev", "hash"];

/// An actor or event name: 1..=32 of `[a-z0-9._-]`.
pub fn is_name(s: &str) -> bool {
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b);
    (1..=NAME_MAX).contains(&s.len()) && s.as_bytes().iter().all(ok)
}

/// A field key: 1..=32 of `[a-z0-9_]`, not one of [`RESERVED_KEYS`].
pub fn is_key(s: &str) -> bool {
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_';
    (1..=NAME_MAX).contains(&s.len()) && s.as_bytes().iter().all(ok) && !RESERVED_KEYS.contains(&s)
}

/// True if `b` is written as itself.
pub fn is_plain(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'%'
}

/// How many bytes `value` takes once escaped.
pub fn escaped_len(value: &[u8]) -> usize {
    value.iter().map(|&b| if is_plain(b) { 1 } else { 3 }).sum()
}

/// Escape `value`, handing each output piece to `out` (no allocation).
pub fn escape<E>(value: &[u8], out: &mut dyn FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        if is_plain(b) {
            continue;
        }
        out(value.get(start..i).unwrap_or_default())?;
        let hi = DIGITS.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
        let lo = DIGITS.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0');
        out(&[b'%', hi, lo])?;
        start = i + 1;
    }
    out(value.get(start..).unwrap_or_default())
}

/// Undo [`escape`]; `None` unless `text` is exactly what [`escape`] writes.
pub fn unescape(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let (code, tail) = (tail.get(..2)?, tail.get(2..)?);
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            };
            let byte = match code {
                [hi, lo] => (digit(*hi)? << 4) | digit(*lo)?,
                _ => return None,
            };
            if is_plain(byte) {
                return None;
            }
            out.push(byte);
            rest = tail;
        } else if is_plain(b) {
            out.push(b);
            rest = tail;
        } else {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn esc(v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        escape::<()>(v, &mut |p| {
            out.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn hostile_values_cannot_leave_their_field() {
        let v = b"ok\nv1 seq=9 actor=bay0 event=forged hash=00\r\x1b[2J %41";
        let e = esc(v);
        assert_eq!(
            e,
            b"ok%0Av1%20seq=9%20actor=bay0%20event=forged%20hash=00%0D%1B[2J%20%2541".to_vec()
        );
        assert!(e.iter().all(|&b| b.is_ascii_graphic()));
        assert_eq!(escaped_len(v), e.len());
        assert_eq!(unescape(&e).unwrap(), v.to_vec());
    }

    #[test]
    fn non_canonical_escapes_are_refused() {
        assert_eq!(unescape(b"a%41"), None, "plain byte written escaped");
        assert_eq!(unescape(b"%0a"), None, "lower-case hex");
        assert_eq!(unescape(b"%0"), None, "cut short");
        assert_eq!(unescape(b"a b"), None, "raw space");
        assert_eq!(unescape("é".as_bytes()), None, "raw UTF-8");
        assert_eq!(unescape(b"%C3%A9").unwrap(), "é".as_bytes());
        assert_eq!(unescape(b"").unwrap(), b"");
    }

    #[test]
    fn names_and_keys() {
        assert!(is_name("bay0") && is_name("vault.unlock") && is_name("room-start"));
        for bad in ["", "Bay0", "a b", "x=y", &"a".repeat(33), "é"] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(is_key("room") && is_key("tries_left"));
        for bad in ["seq", "hash", "prev", "a.b", "a-b", "", "K"] {
            assert!(!is_key(bad), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn escape_round_trips_and_stays_printable(v in proptest::collection::vec(any::<u8>(), 0..200)) {
            let e = esc(&v);
            prop_assert!(e.iter().all(|&b| is_plain(b) || b == b'%'));
            prop_assert_eq!(e.len(), escaped_len(&v));
            prop_assert_eq!(unescape(&e), Some(v));
        }
    }
}
