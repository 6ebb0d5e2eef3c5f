// SPDX-License-Identifier: GPL-3.0-or-later
//! Lines on a shared console. bay0's console shows one room's output, whose last line is
//! often open (a prompt, or a line still arriving byte by byte), and now and then a line
//! of a helper bay0 runs (`anchor-update bless`). Written straight to the console, the
//! helper's line would land inside the room's and tear both. Instead bay0 reads the
//! helper's output through a pipe, cut into lines by [`Lines`], and shows each line with
//! [`OpenLine::interject`]: the open line is ended, the helper's line gets a line of its
//! own, and the open line is drawn again below it, so the room's text stays whole.

use crate::fixed::Fixed;

/// Cuts a byte stream into lines of printable ASCII (anything else is dropped; a line
/// longer than `N` bytes is cut). Never allocates.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lines<const N: usize> {
    line: Fixed<N>,
}

impl<const N: usize> Lines<N> {
    /// Feeds `bytes`; `each` gets every line they complete (without its newline).
    pub fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(&str)) {
        for &b in bytes {
            if b == b'\n' {
                each(self.line.as_str());
                self.line.clear();
            } else if (0x20..0x7f).contains(&b) {
                let mut c = [0u8; 1];
                self.line.push_str(char::from(b).encode_utf8(&mut c));
            }
        }
    }

    /// The line begun and not yet ended.
    pub fn pending(&self) -> &str {
        self.line.as_str()
    }
}

/// What a terminal shows after its last newline: the bytes written since, so that they
/// can be drawn again after an interjected line. Keeps the first `N` bytes of the open
/// line (a longer one is redrawn cut, and then followed by CAN: the cut may fall inside
/// an escape sequence, which the room's next bytes would otherwise finish).
#[derive(Debug, Clone, Copy)]
pub struct OpenLine<const N: usize> {
    buf: [u8; N],
    len: usize,
    cut: bool,
}

impl<const N: usize> Default for OpenLine<N> {
    fn default() -> Self {
        OpenLine {
            buf: [0; N],
            len: 0,
            cut: false,
        }
    }
}

impl<const N: usize> OpenLine<N> {
    /// Record `bytes`, just written to the terminal.
    pub fn wrote(&mut self, bytes: &[u8]) {
        let tail = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(nl) => {
                (self.len, self.cut) = (0, false);
                bytes.get(nl + 1..).unwrap_or_default()
            }
            None => bytes,
        };
        let take = tail.len().min(N.saturating_sub(self.len));
        self.cut |= take < tail.len();
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + take),
            tail.get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
    }

    /// The open line's bytes (empty when the terminal is at the start of a line).
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// The bytes that show `line` on a line of its own: the open line ended (CR LF), the
    /// line and its CR LF (the console is raw), then the open line drawn again (a cut one
    /// followed by CAN). One buffer, for one write.
    pub fn interject(&self, line: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(line.len() + self.len + 5);
        if self.len > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.as_bytes());
        if self.cut {
            out.push(0x18);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_newlines_and_keep_only_printable_ascii() {
        let mut l = Lines::<8>::default();
        let mut got = Vec::new();
        l.feed(b"ab\x1b[2Jc\r", |s| got.push(s.to_string()));
        assert!(got.is_empty());
        assert_eq!(l.pending(), "ab[2Jc");
        l.feed(b"\nsecond line is long\n\xff\n", |s| {
            got.push(s.to_string())
        });
        assert_eq!(got, ["ab[2Jc", "second l", ""]);
        assert_eq!(l.pending(), "");
    }

    #[test]
    fn a_line_split_across_feeds_arrives_whole() {
        let mut l = Lines::<64>::default();
        let mut got = Vec::new();
        for chunk in [&b"anchor-upd"[..], b"ate: slot A", b" passed\nnext"] {
            l.feed(chunk, |s| got.push(s.to_string()));
        }
        assert_eq!(got, ["anchor-update: slot A passed"]);
        assert_eq!(l.pending(), "next");
    }

    #[test]
    fn an_interjected_line_never_lands_inside_the_open_line() {
        let mut open = OpenLine::<32>::default();
        open.wrote(b"work| boot\r\nwork| a");
        assert_eq!(open.as_bytes(), b"work| a");
        let out = open.interject(b"anchor-update: blessed");
        assert_eq!(out, b"\r\nanchor-update: blessed\r\nwork| a");
        // What the terminal shows after it: the open line, drawn again.
        open.wrote(&out);
        assert_eq!(open.as_bytes(), b"work| a");
        // The room's line then goes on where it was.
        open.wrote(b"nchor-agent: room work ready\r\n");
        assert_eq!(open.as_bytes(), b"");
        assert_eq!(open.interject(b"x"), b"x\r\n");
    }

    #[test]
    fn a_redrawn_open_line_cut_inside_an_escape_sequence_leaves_none_open() {
        // A room's open line, rendered, whose erase-line sequence the cut falls into.
        let mut r = crate::console::Renderer::new("web");
        let mut rendered = Vec::new();
        r.render(b"0123456789\x1b[K", &mut rendered);
        assert_eq!(rendered, b"web| 0123456789\x1b[K");
        let mut open = OpenLine::<16>::default();
        open.wrote(&rendered);
        assert_eq!(open.as_bytes(), b"web| 0123456789\x1b");
        let out = open.interject(b"anchor-update: blessed");
        // Drawn again, the line must not leave the terminal inside a sequence (the room's
        // next bytes, "[2J" say, would finish it): CAN ends it.
        let esc = out.iter().rposition(|&b| b == 0x1b).unwrap();
        assert_eq!(&out[esc..], b"\x1b\x18");
        // A line that fits is drawn again as it was, and a newline starts over.
        open.wrote(b"\r\nweb| \x1b[K");
        assert_eq!(open.interject(b"x"), b"\r\nx\r\nweb| \x1b[K");
    }

    #[test]
    fn a_long_open_line_is_kept_cut_and_a_newline_starts_over() {
        let mut open = OpenLine::<4>::default();
        open.wrote(b"abc");
        open.wrote(b"def");
        assert_eq!(open.as_bytes(), b"abcd");
        open.wrote(b"x\ny");
        assert_eq!(open.as_bytes(), b"y");
        open.wrote(b"\n");
        assert_eq!(open.as_bytes(), b"");
    }
}
