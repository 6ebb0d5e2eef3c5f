// SPDX-License-Identifier: GPL-3.0-or-later
//! What a terminal really shows of a room's rendered console output. The renderer's
//! promise (text/src/console.rs): every line starts with `NAME| `, so no room can print a
//! line that looks like bay0's. Checked against a model of the terminal the output goes
//! to (Linux VT / xterm rules for the bytes the renderer lets through: printable
//! characters with autowrap at the right margin, combining marks 0 columns and CJK 2,
//! CR, LF, BS, HT to the next multiple of 8 of the *screen* column, CUB/CUF clamped at
//! the margins, EL). Each attack was shown to work against the renderer before it kept a
//! least column and broke long lines.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use anchor_text::console::Renderer;

/// A terminal `cols` wide: the screen rows and the cursor.
struct Term {
    cols: usize,
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
    /// xterm/VT "pending wrap": a character was written in the last column.
    wrap: bool,
}

fn width(c: char) -> usize {
    match c {
        '\u{300}'..='\u{36f}' | '\u{200b}' => 0,
        '\u{1100}'..='\u{115f}' | '\u{2e80}'..='\u{a4cf}' | '\u{ac00}'..='\u{d7a3}' => 2,
        _ => 1,
    }
}

impl Term {
    fn new(cols: usize) -> Term {
        Term {
            cols,
            rows: vec![vec![' '; cols]],
            row: 0,
            col: 0,
            wrap: false,
        }
    }

    fn line_feed(&mut self) {
        self.row += 1;
        if self.rows.len() <= self.row {
            self.rows.push(vec![' '; self.cols]);
        }
    }

    fn put(&mut self, c: char) {
        let w = width(c);
        if w == 0 {
            return;
        }
        if self.wrap || self.col + w > self.cols {
            self.col = 0;
            self.wrap = false;
            self.line_feed();
        }
        self.rows[self.row][self.col] = c;
        if w == 2 {
            self.rows[self.row][self.col + 1] = ' ';
        }
        if self.col + w >= self.cols {
            self.col = self.cols - 1;
            self.wrap = true;
        } else {
            self.col += w;
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let mut it = text.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '\r' => (self.col, self.wrap) = (0, false),
                '\n' => self.line_feed(),
                '\x08' => (self.col, self.wrap) = (self.col.saturating_sub(1), false),
                '\t' => {
                    self.col = ((self.col / 8 + 1) * 8).min(self.cols - 1);
                    self.wrap = false;
                }
                '\x1b' => {
                    assert_eq!(it.next(), Some('['));
                    let mut n = String::new();
                    let fin = loop {
                        let c = it.next().unwrap();
                        if c.is_ascii_digit() {
                            n.push(c);
                        } else {
                            break c;
                        }
                    };
                    let n: usize = n.parse().unwrap_or(1).max(1);
                    self.wrap = false;
                    match fin {
                        'D' => self.col = self.col.saturating_sub(n),
                        'C' => self.col = (self.col + n).min(self.cols - 1),
                        'K' => self.rows[self.row][self.col..].fill(' '),
                        other => panic!("the renderer let ESC [ {other} through"),
                    }
                }
                c => self.put(c),
            }
        }
    }

    fn lines(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(|r| r.iter().collect::<String>().trim_end().to_string())
            .collect()
    }
}

/// What `cols` columns of terminal show after room `name` printed `input`, rendered for
/// a screen of `known` columns (0: unknown).
fn screen(name: &str, cols: usize, known: usize, input: &[u8]) -> Vec<String> {
    let mut r = Renderer::for_screen(name, known);
    let mut out = Vec::new();
    r.render(input, &mut out);
    let mut t = Term::new(cols);
    t.feed(&out);
    t.lines()
}

fn assert_every_line_is_the_rooms(name: &str, cols: usize, known: usize, input: &[u8]) {
    let prefix = format!("{name}|");
    for line in screen(name, cols, known, input) {
        assert!(
            line.is_empty() || line.starts_with(&prefix),
            "a line on a {cols}-column screen (rendered for {known}) that is not room \
             {name}'s: {line:?} (room output {:?})",
            String::from_utf8_lossy(input)
        );
    }
}

const FORGED: &str = "bay0: console: operator shell (rooms keep running)";

#[test]
fn a_tab_then_backspaces_cannot_reach_the_prefix() {
    // "web| " is 5 columns: a tab passed on would move the screen's cursor 3 columns,
    // while the room's own count says 8 and allows 8 backspaces.
    let input = format!("\t{}{FORGED}\r\n", "\x08".repeat(8));
    assert_every_line_is_the_rooms("web", 80, 0, input.as_bytes());
    assert_every_line_is_the_rooms("web", 80, 80, input.as_bytes());
}

#[test]
fn cursor_right_past_the_margin_then_left_cannot_reach_the_prefix() {
    let input = format!("x\x1b[200C\x1b[201D{FORGED}\r\n");
    for (cols, known) in [(80, 0), (132, 0), (80, 80), (132, 132)] {
        assert_every_line_is_the_rooms("web", cols, known, input.as_bytes());
    }
    // From the start of a line too.
    let input = format!("\r\x1b[300C\x1b[300D\x08{FORGED}\r\n");
    assert_every_line_is_the_rooms("web", 80, 0, input.as_bytes());
}

#[test]
fn zero_width_characters_then_backspaces_cannot_reach_the_prefix() {
    let input = format!("{}{}{FORGED}\r\n", "\u{301}".repeat(5), "\x08".repeat(5));
    assert_every_line_is_the_rooms("web", 80, 0, input.as_bytes());
    let input = format!("{}\x1b[5D{FORGED}\r\n", "\u{200b}".repeat(5));
    assert_every_line_is_the_rooms("web", 80, 0, input.as_bytes());
}

#[test]
fn on_a_screen_of_known_width_a_long_line_cannot_wrap_onto_a_row_of_its_own() {
    for (pad, cols) in [
        (" ".repeat(75), 80),
        (" ".repeat(127), 132),
        ("\u{4e00}".repeat(40), 80),
    ] {
        let input = format!("{pad}{FORGED}\r\n");
        assert_every_line_is_the_rooms("web", cols, cols, input.as_bytes());
    }
    // The rest of the line goes on, prefixed.
    let shown = screen("web", 20, 20, b"0123456789abcdefghij\r\n");
    assert_eq!(shown, ["web| 0123456789abcd", "web| efghij", ""]);
}

#[test]
fn ordinary_output_and_line_editing_still_look_as_before() {
    assert_eq!(
        screen("web", 80, 80, b"web:~# ls\x08\x08xx\r\n\ta\tb\r\n"),
        // Tab stops are the room's own columns (they were the screen's, prefix included).
        ["web| web:~# xx", "web|         a       b", ""]
    );
    // Backspace over letters every terminal draws one column wide still erases them.
    assert_eq!(
        screen(
            "web",
            80,
            0,
            "caf\u{e9}\x08\x1b[Ke \u{416}\x08\x1b[K!\r\n".as_bytes()
        ),
        ["web| cafe !", ""]
    );
    // A shell's line editor moving right over its prompt after a carriage return.
    assert_eq!(
        screen("web", 80, 0, b"web:~# abc\r\x1b[8Cx\r\n"),
        ["web| web:~# axc", ""]
    );
}
