// SPDX-License-Identifier: GPL-3.0-or-later
//! A room's console output, as hostile as it likes, through what bay0 shows it with: the
//! renderer (for a screen of unknown width or one 60..295 columns wide), the scrollback
//! replayed to a new viewer, a viewer whose terminal takes only part of some writes, and a
//! follower (a control client) whose socket now and then takes part of the backlog or
//! nothing.
//! Beyond "no crash", what reaches each terminal is replayed on a model of a terminal,
//! which fails the run on anything console.rs promises never happens:
//! - a byte a terminal could act on other than text, CR, LF, backspace, erase-to-end-of-
//!   line and cursor left/right (no other escape or control sequence, no C1 control, no
//!   invalid UTF-8, no bidirectional override, no tab);
//! - text, backspace or cursor movement on a row before that row got the room's prefix
//!   (`NAME| `), so no room draws a line that looks like bay0's;
//! - backspace or cursor-left reaching into the prefix, counting every character of
//!   uncertain width as the narrowest it can be drawn;
//! - on a screen of known width, anything reaching its last column (where a terminal
//!   would wrap a row that has no prefix).
//!
//! Also: the same input in other pieces renders to the same bytes, and a follower that
//! never said it lost output (CAN) was shown all of it.
//! The input: byte 0 picks the screen width, byte 1 the room name's length, byte 2 the
//! pieces' size and byte 3 the viewer's write budget; the rest is the room's output.
#![no_main]

use anchor_text::console::{Follower, Renderer, Scrollback, Viewer, RESUME};
use libfuzzer_sys::fuzz_target;

/// The renderer's "one column, whatever the terminal" characters (console.rs `one_column`).
fn one_column(c: char) -> bool {
    matches!(c,
        '\u{a0}'..='\u{ac}' | '\u{ae}'..='\u{24f}' | '\u{391}'..='\u{3a1}'
        | '\u{3a3}'..='\u{3c9}' | '\u{400}'..='\u{482}' | '\u{48a}'..='\u{4ff}')
}

/// A terminal fed what a renderer wrote: fails on anything the renderer promises not to do.
struct Terminal<'a> {
    prefix: &'a [u8],
    /// Screen width (0: unknown).
    columns: usize,
    /// The cursor's column, at least (characters of uncertain width count 0).
    least: usize,
    /// The cursor's column, at most (characters of uncertain width count 2).
    most: usize,
    /// The row's prefix has been written.
    prefixed: bool,
    /// Bytes of the current row before it was prefixed (must become the prefix).
    start: Vec<u8>,
    /// Only CAN CR LF may follow (a viewer resumed after a loss): see `feed`.
    resume: usize,
    /// A viewer's output, which may lose bytes (see `cut`).
    lossy: bool,
}

impl<'a> Terminal<'a> {
    fn new(prefix: &'a [u8], columns: usize, lossy: bool) -> Self {
        Terminal {
            lossy,
            prefix,
            columns,
            least: 0,
            most: 0,
            prefixed: false,
            start: Vec::new(),
            resume: 0,
        }
    }

    fn row(&mut self) {
        (self.least, self.most, self.prefixed) = (0, 0, false);
        self.start.clear();
    }

    /// The row must have its prefix before `what`.
    fn need_prefix(&self, what: &str, at: &[u8]) {
        assert!(
            self.prefixed,
            "{what} on a row without the prefix, at {:?}",
            String::from_utf8_lossy(at)
        );
    }

    fn moved_right(&mut self, sure: usize, width: usize, at: &[u8]) {
        self.least += sure;
        self.most += width;
        if self.columns > 0 {
            assert!(
                self.most < self.columns,
                "reached the screen's last column at {:?}",
                String::from_utf8_lossy(at)
            );
        }
    }

    fn moved_left(&mut self, n: usize, at: &[u8]) {
        self.need_prefix("a move left", at);
        assert!(
            self.least >= self.prefix.len() + n,
            "moved left {n} from column {} into the prefix, at {:?}",
            self.least,
            String::from_utf8_lossy(at)
        );
        self.least -= n;
        self.most -= n.min(self.most);
    }

    /// Where a sequence at `rest[0]` of `len` bytes and more (`len` at least) is cut
    /// short: by a viewer's loss (CAN follows, which a terminal takes to abort it), or by
    /// the end of a viewer's output (the terminal waits for the rest). The length to skip,
    /// or `None` when it is whole.
    fn cut(&self, rest: &[u8], len: usize) -> Option<usize> {
        if !self.lossy {
            return None;
        }
        match rest.iter().take(len + 1).skip(1).position(|&b| b == 0x18) {
            Some(at) => Some(at + 1),
            None if rest.len() <= len => Some(rest.len()),
            None => None,
        }
    }

    /// Replays `out` (a renderer's or a viewer's output).
    fn feed(&mut self, out: &[u8]) {
        let mut i = 0;
        while i < out.len() {
            let rest = &out[i..];
            let b = rest[0];
            if self.resume > 0 {
                // After a loss: CAN then CR LF, then a row like any other (a viewer cut
                // short inside RESUME writes it whole again, CAN first).
                let want = RESUME[RESUME.len() - self.resume];
                if b == 0x18 {
                    self.resume = RESUME.len() - 1;
                    i += 1;
                    continue;
                }
                assert_eq!(b, want, "a viewer resumed without {:?}", RESUME);
                self.resume -= 1;
                if self.resume == 0 {
                    self.row();
                }
                i += 1;
                continue;
            }
            let cancel = self.lossy && b == 0x18;
            if !self.prefixed && !cancel && !matches!(b, b'\r' | b'\n' | 0x1b) {
                // Text before the prefix: it must be the prefix itself.
                self.start.push(b);
                assert!(
                    self.prefix.starts_with(&self.start),
                    "a row starts with {:?}, not the prefix {:?}",
                    String::from_utf8_lossy(&self.start),
                    String::from_utf8_lossy(self.prefix)
                );
                if self.start.len() == self.prefix.len() {
                    self.prefixed = true;
                    self.least = self.prefix.len();
                    self.most = self.prefix.len();
                }
                i += 1;
                continue;
            }
            let n = match b {
                b'\r' => {
                    self.row();
                    1
                }
                b'\n' => {
                    // Only after a CR: a bare LF would keep the column of a row above.
                    assert!(
                        i > 0 && out[i - 1] == b'\r',
                        "a bare LF at {:?}",
                        String::from_utf8_lossy(rest)
                    );
                    self.row();
                    1
                }
                0x08 => {
                    self.moved_left(1, rest);
                    1
                }
                0x18 => {
                    assert!(self.lossy, "CAN in a renderer's output");
                    self.resume = RESUME.len() - 1;
                    1
                }
                0x1b => self.escape(rest),
                0x20..=0x7e => {
                    self.need_prefix("text", rest);
                    self.moved_right(1, 1, rest);
                    1
                }
                _ => {
                    let len = match b {
                        0xc2..=0xdf => 2,
                        0xe0..=0xef => 3,
                        0xf0..=0xf4 => 4,
                        _ => panic!(
                            "control or invalid byte {b:#04x} at {:?}",
                            String::from_utf8_lossy(rest)
                        ),
                    };
                    if let Some(cut) = self.cut(rest, len - 1) {
                        i += cut;
                        continue;
                    }
                    let c = rest
                        .get(..len)
                        .and_then(|s| core::str::from_utf8(s).ok())
                        .and_then(|s| s.chars().next())
                        .unwrap_or_else(|| panic!("invalid UTF-8 at {rest:?}"));
                    assert!(!('\u{80}'..='\u{9f}').contains(&c), "a C1 control {c:?}");
                    assert!(
                        !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'),
                        "a bidirectional override {c:?}"
                    );
                    self.need_prefix("text", rest);
                    if one_column(c) {
                        self.moved_right(1, 1, rest);
                    } else {
                        self.moved_right(0, 2, rest);
                    }
                    len
                }
            };
            i += n;
        }
    }

    /// An escape sequence at `rest[0]`; its length.
    fn escape(&mut self, rest: &[u8]) -> usize {
        if rest.starts_with(b"\x1b[K") {
            return 3;
        }
        if let Some(cut) = self.cut(
            rest,
            2 + rest
                .iter()
                .skip(2)
                .take_while(|b| b.is_ascii_digit())
                .count(),
        ) {
            return cut;
        }
        let digits = rest
            .iter()
            .skip(2)
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = rest.get(2 + digits).copied();
        assert!(
            rest.get(1) == Some(&b'[') && digits > 0 && matches!(end, Some(b'C' | b'D')),
            "an escape sequence other than erase or cursor left/right: {:?}",
            String::from_utf8_lossy(&rest[..rest.len().min(24)])
        );
        let n: usize = core::str::from_utf8(&rest[2..2 + digits])
            .unwrap()
            .parse()
            .unwrap();
        assert!(n > 0, "a move of 0 columns");
        if end == Some(b'C') {
            self.need_prefix("a move right", rest);
            self.moved_right(n, n, rest);
        } else {
            self.moved_left(n, rest);
        }
        3 + digits
    }
}

fuzz_target!(|data: &[u8]| {
    let [width, name_len, piece, budget, input @ ..] = data else {
        return;
    };
    let columns = if *width < 20 {
        0
    } else {
        usize::from(*width) + 40
    };
    // A room name as bay0 allows them: lower-case letters, digits and '-', 1..=32.
    let name: String = (0..usize::from(*name_len) % 32 + 1)
        .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789-"[i * 7 % 37]))
        .collect();
    let prefix = format!("{name}| ");

    // Whole, and in pieces: the same bytes.
    let mut whole = Vec::new();
    Renderer::for_screen(&name, columns).render(input, &mut whole);
    let mut r = Renderer::for_screen(&name, columns);
    let mut pieces = Vec::new();
    let mut back = Scrollback::default();
    let mut viewer = Viewer::default();
    let mut seen = Vec::new();
    let mut left = usize::from(*budget);
    let (mut follower, mut followed) = (Follower::default(), Vec::new());
    for (n, part) in input.chunks(usize::from(*piece) % 64 + 1).enumerate() {
        let mut out = Vec::new();
        r.render(part, &mut out);
        pieces.extend_from_slice(&out);
        back.push(&out);
        // The follower's socket takes nothing on every other read, `budget` bytes on the
        // others; then it has room again (EPOLLOUT) and takes as much once more.
        for fresh in [&out[..], b""] {
            let mut room = if n % 2 == 0 { 0 } else { usize::from(*budget) };
            let took = follower.follow(&back, fresh, |b: &[u8]| {
                if room == 0 {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                let k = b.len().min(room);
                room -= k;
                followed.extend_from_slice(&b[..k]);
                Ok(k)
            });
            assert!(took.is_ok());
        }
        // The viewer's terminal takes `budget` bytes, then a write of any size, then
        // `budget` bytes again, and so on: the rest of a write it cuts short is lost.
        viewer.show(&out, |b: &[u8]| {
            let n = if left == 0 {
                b.len()
            } else {
                b.len().min(left)
            };
            left = if left == 0 {
                usize::from(*budget)
            } else {
                left - n
            };
            seen.extend_from_slice(&b[..n]);
            n
        });
    }
    assert_eq!(
        whole, pieces,
        "the pieces rendered differently from the whole"
    );

    Terminal::new(prefix.as_bytes(), columns, false).feed(&whole);
    // A replay starts where a line starts: a new terminal shows it like the room's own.
    Terminal::new(prefix.as_bytes(), columns, false).feed(&back.contents());
    Terminal::new(prefix.as_bytes(), columns, true).feed(&seen);
    // Writable at last, with room for everything.
    let all = follower.follow(&back, b"", |b: &[u8]| {
        followed.extend_from_slice(b);
        Ok(b.len())
    });
    assert!(all.is_ok());
    Terminal::new(prefix.as_bytes(), columns, true).feed(&followed);
    if !followed.contains(&0x18) {
        assert!(followed == whole, "a follower lost output and did not say so");
    }
});
