// SPDX-License-Identifier: GPL-3.0-or-later
//! Lines on a shared console. bay0's console shows one room's output, whose last line is
//! often open (a prompt, or a line still arriving byte by byte), and now and then a line
//! of a helper bay0 runs (`anchor-update bless`). Written straight to the console, the
//! helper's line would land inside the room's and tear both. Instead bay0 reads the
//! helper's output through a pipe, cut into lines by [`Lines`], and shows each line with
//! [`OpenLine::interject`]: the open line is ended, the helper's line gets a line of its
//! own, and the open line is drawn again below it, so the room's text stays whole.

use core::fmt::Write as _;
use std::time::Instant;

use crate::fixed::Fixed;

/// Lines passed on at once, before [`PER_SECOND`] applies.
pub const BURST: u32 = 64;
/// Lines a second passed on once a burst is spent.
pub const PER_SECOND: u32 = 10;

/// Cuts a byte stream into lines of printable ASCII (anything else is dropped; a line
/// longer than `N` bytes is cut), and passes them on at a pace: [`BURST`] at once, then
/// [`PER_SECOND`] a second. What bay0 reads this way (a VMM's stderr, a helper's output)
/// it writes to the kernel's log, one record a line, which the kernel also prints on the
/// consoles: a VMM taken over by its guest, writing empty lines without pause (8 KiB a
/// turn of bay0's loop, so 8192 records), would flood the log, push every other record
/// out of it, and hold bay0 in its writes while a slow console printed them. Lines beyond
/// the pace are left out, and their count is said before the next line passed on.
/// Never allocates.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lines<const N: usize> {
    line: Fixed<N>,
    pace: Pace,
}

/// A token bucket of lines.
#[derive(Debug, Default, Clone, Copy)]
struct Pace {
    tokens: u32,
    /// When tokens were last added (none yet: the first line fills the bucket).
    since: Option<Instant>,
    left_out: u64,
}

impl Pace {
    /// Whether one more line may pass at `now`.
    fn take(&mut self, now: Instant) -> bool {
        match self.since {
            None => (self.tokens, self.since) = (BURST, Some(now)),
            Some(t) => {
                let earned =
                    now.saturating_duration_since(t).as_millis() * u128::from(PER_SECOND) / 1000;
                if earned > 0 {
                    let earned = u32::try_from(earned).unwrap_or(BURST);
                    self.tokens = self.tokens.saturating_add(earned).min(BURST);
                    self.since = Some(now);
                }
            }
        }
        if self.tokens == 0 {
            self.left_out = self.left_out.saturating_add(1);
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl<const N: usize> Lines<N> {
    /// Feeds `bytes`; `each` gets every line they complete (without its newline), as the
    /// pace allows (see [`Lines`]).
    pub fn feed(&mut self, bytes: &[u8], each: impl FnMut(&str)) {
        self.feed_at(bytes, Instant::now(), each);
    }

    /// [`Lines::feed`] at `now`.
    pub fn feed_at(&mut self, bytes: &[u8], now: Instant, mut each: impl FnMut(&str)) {
        for &b in bytes {
            if b == b'\n' {
                if self.pace.take(now) {
                    if self.pace.left_out == 0 {
                        each(self.line.as_str());
                    } else {
                        let mut said = Fixed::<N>::default();
                        let _ = write!(said, "[{} lines left out] ", self.pace.left_out);
                        said.push_str(self.line.as_str());
                        each(said.as_str());
                        self.pace.left_out = 0;
                    }
                }
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

    /// A flood of lines (a VMM taken over by its guest writing empty lines to its stderr
    /// without pause) passes a burst, then the pace; the count left out is said with the
    /// next line passed on. Before, every line was passed on: 8192 kernel log records a
    /// turn of bay0's loop.
    #[test]
    fn a_flood_of_lines_is_paced_and_what_was_left_out_is_counted() {
        let mut l = Lines::<64>::default();
        let t0 = Instant::now();
        let mut got = Vec::new();
        l.feed_at(&[b'\n'; 8192], t0, |s| got.push(s.to_string()));
        assert_eq!(got.len(), BURST as usize);
        got.clear();
        // Half a second on: half a second's worth, the first saying what was left out.
        let t1 = t0 + std::time::Duration::from_millis(500);
        l.feed_at(b"a\nb\nc\nd\ne\nf\ng\n", t1, |s| got.push(s.to_string()));
        assert_eq!(got, ["[8128 lines left out] a", "b", "c", "d", "e"]);
        got.clear();
        // A line long enough to fill the line on its own is cut after the count.
        let t2 = t1 + std::time::Duration::from_secs(1);
        l.feed_at(format!("{}\n", "x".repeat(100)).as_bytes(), t2, |s| {
            got.push(s.to_string())
        });
        assert_eq!(got, [format!("[2 lines left out] {}", "x".repeat(45))]);
    }

    /// Lines at the pace or slower all pass, however many.
    #[test]
    fn lines_at_the_pace_all_pass() {
        let mut l = Lines::<16>::default();
        let mut t = Instant::now();
        let mut got = 0;
        for _ in 0..1000 {
            l.feed_at(b"line\n", t, |s| {
                assert_eq!(s, "line");
                got += 1;
            });
            t += std::time::Duration::from_millis(u64::from(1000 / PER_SECOND));
        }
        assert_eq!(got, 1000);
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
