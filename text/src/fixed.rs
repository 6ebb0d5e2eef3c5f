// SPDX-License-Identifier: GPL-3.0-or-later
//! [`Fixed`]: a short text kept in a fixed array, `Copy`, never allocating. bay0 uses it
//! for its log lines, room names and device paths, so that none of them allocates on an
//! error path. Writing past the end truncates (at a character boundary, so the text is
//! always whole UTF-8); parsing refuses what does not fit.

use core::fmt;

/// Up to `N` bytes of UTF-8 text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fixed<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Fixed<N> {
    fn default() -> Self {
        Fixed {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> fmt::Debug for Fixed<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> Fixed<N> {
    /// `text` when it is 1..=N bytes and every byte passes `ok`; `None` otherwise.
    pub fn parse(text: &str, ok: impl Fn(u8) -> bool) -> Option<Self> {
        if text.is_empty() || text.len() > N || !text.bytes().all(ok) {
            return None;
        }
        let mut f = Fixed::default();
        f.push_str(text);
        Some(f)
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Empties it.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends as much of `s` as fits (whole characters); the bytes appended.
    pub fn push_str(&mut self, s: &str) -> usize {
        let mut take = s.len().min(N.saturating_sub(self.len));
        while take > 0 && !s.is_char_boundary(take) {
            take -= 1;
        }
        let src = s.as_bytes().get(..take).unwrap_or_default();
        if let Some(dst) = self.buf.get_mut(self.len..self.len.saturating_add(take)) {
            dst.copy_from_slice(src);
            self.len = self.len.saturating_add(take);
        }
        take
    }

    /// Appends `s` whole, cutting earlier text (whole characters) to make room; `s` must
    /// be at most N bytes (a line's final newline, say).
    pub fn push_tail(&mut self, s: &str) {
        let mut keep = self.len.min(N.saturating_sub(s.len()));
        while keep > 0 && !self.as_str().is_char_boundary(keep) {
            keep -= 1;
        }
        self.len = keep;
        self.push_str(s);
    }
}

impl<const N: usize> fmt::Write for Fixed<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn writes_truncate_at_character_boundaries() {
        let mut f = Fixed::<5>::default();
        let tail = "é€";
        write!(f, "ab{tail}").unwrap();
        assert_eq!(f.as_str(), "abé");
        f.push_tail("\n");
        assert_eq!(f.as_str(), "abé\n");
        let mut g = Fixed::<4>::default();
        g.push_str("ab€");
        g.push_tail("\n");
        assert_eq!(g.as_str(), "ab\n");
        g.clear();
        assert_eq!(g.as_bytes(), b"");
    }

    #[test]
    fn parse_refuses_what_does_not_fit_or_is_not_allowed() {
        let lower = |b: u8| b.is_ascii_lowercase();
        assert_eq!(Fixed::<3>::parse("abc", lower).unwrap().as_str(), "abc");
        assert!(Fixed::<3>::parse("abcd", lower).is_none());
        assert!(Fixed::<3>::parse("", lower).is_none());
        assert!(Fixed::<3>::parse("aB", lower).is_none());
        assert_eq!(
            format!("{:?}", Fixed::<3>::parse("ab", lower).unwrap()),
            "\"ab\""
        );
    }
}
