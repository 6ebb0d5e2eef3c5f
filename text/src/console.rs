// SPDX-License-Identifier: GPL-3.0-or-later
//! Showing a room's console on a trusted display. Room output is rendered as text: every
//! line starts with `NAME| ` (so no room can print a line that looks like bay0's), and
//! everything that could paint outside the room's own line or talk back to the terminal
//! is dropped: escape sequences (CSI, OSC, DCS, APC, PM, SOS and the rest) except erase-
//! to-end-of-line and cursor left/right within the line, C0 controls other than tab,
//! newline and backspace, C1 controls, invalid UTF-8 and the bidirectional overrides. A
//! lone carriage return restarts the line with its prefix. The renderer keeps only a few
//! bytes of state per room.
//!
//! Backspace and cursor-left must never reach the prefix, so the renderer keeps two
//! counts of the room's column: the least it can be (`sure`) and the most (`col`). They
//! differ only for characters whose width terminals disagree on: a non-ASCII character
//! outside a few scripts every terminal draws one column wide may take 0 (combining) to 2
//! (East Asian wide) columns. Tabs become spaces (a terminal's tab stops would count the
//! prefix too). Backspace and cursor-left go back at most `sure` columns; cursor-right
//! stops short of the right margin (a terminal clamps it there, and would then come back
//! further than it went). On a screen whose width is known ([`Renderer::for_screen`]) a
//! room's line is broken, and the next row prefixed, before the terminal would wrap it
//! onto a row of its own; of a screen of unknown width (a serial line says none) that
//! one row can still start without the prefix.

/// Longest prefix (`NAME| `).
const PREFIX_MAX: usize = 34;
/// Longest CSI sequence kept for inspection; longer ones are dropped whole.
const CSI_MAX: usize = 16;
/// The narrowest screen assumed when its width is unknown (cursor-right stops short of it).
const COLUMNS_MIN: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    /// ESC ( etc.: one more byte to swallow.
    EscArg,
    Csi,
    /// OSC, DCS, APC, PM, SOS: swallowed up to BEL or ST; `true` after an ESC.
    Str(bool),
}

/// Per-room rendering state.
#[derive(Debug, Clone)]
pub struct Renderer {
    prefix: [u8; PREFIX_MAX],
    prefix_len: usize,
    state: State,
    csi: [u8; CSI_MAX],
    csi_len: usize,
    utf8: [u8; 4],
    utf8_len: usize,
    utf8_need: usize,
    /// Nothing of the current line written yet (the prefix is due).
    line_start: bool,
    /// A carriage return waits to see whether a newline follows.
    cr: bool,
    /// Column after the prefix, at most (the column a cursor report gives).
    col: usize,
    /// Column after the prefix, at least: backspace and cursor-left never go further back.
    sure: usize,
    /// The screen's width in columns (0: unknown).
    columns: usize,
    /// Cursor position questions (`ESC [ 6 n`) not answered yet, at most
    /// [`CURSOR_QUERIES_MAX`].
    cursor_queries: usize,
    /// Keys reached the room since the render before the current or next one: see
    /// [`Renderer::cursor_report`].
    typed: bool,
}

/// Questions answered per [`Renderer::cursor_report`]: a room asking in a loop gets no more.
const CURSOR_QUERIES_MAX: usize = 4;

impl Renderer {
    /// A renderer prefixing lines with `name| `, for a screen `columns` wide (0: unknown):
    /// a line is broken before the terminal would wrap it.
    pub fn for_screen(name: &str, columns: usize) -> Renderer {
        Renderer {
            columns,
            ..Renderer::new(name)
        }
    }

    /// A renderer prefixing lines with `name| `, for a screen of unknown width.
    pub fn new(name: &str) -> Renderer {
        let mut prefix = [0u8; PREFIX_MAX];
        let mut len = 0;
        for b in name.bytes().chain(*b"| ").take(PREFIX_MAX) {
            if let Some(slot) = prefix.get_mut(len) {
                *slot = b;
                len += 1;
            }
        }
        Renderer {
            prefix,
            prefix_len: len,
            state: State::Ground,
            csi: [0; CSI_MAX],
            csi_len: 0,
            utf8: [0; 4],
            utf8_len: 0,
            utf8_need: 0,
            line_start: true,
            cr: false,
            col: 0,
            sure: 0,
            columns: 0,
            cursor_queries: 0,
            typed: false,
        }
    }

    /// Keys were written to the room's console input.
    pub fn typed(&mut self) {
        self.typed = true;
    }

    /// What a terminal answers a room that asked where its cursor is (`ESC [ 6 n`), for
    /// every question rendered since the last call (at most [`CURSOR_QUERIES_MAX`]):
    /// `ESC [ 1 ; COL R`, COL counted within the room's own line (the prefix is not the
    /// room's), the row unknown and given as 1. The question itself never reaches a
    /// terminal (it would answer into whatever has the keyboard), so without this answer
    /// a room waits for one that never comes: busybox's shell asks after every prompt and,
    /// unanswered, sleeps 20 ms after every command line typed.
    ///
    /// Questions in output rendered after keys were typed (since the render before) stay
    /// unanswered: the room may have asked before the keys reached it, and an answer
    /// queued behind them would be read by whatever the keys start (busybox, seeing the
    /// keys first, then waits its 20 ms; a real terminal has the same race). So does the
    /// prompt after a builtin when it comes back in the same read as the echo of the
    /// Enter that ran it: from here the two cases look alike.
    pub fn cursor_report(&mut self) -> Option<String> {
        if self.cursor_queries == 0 {
            return None;
        }
        let one = format!("\x1b[1;{}R", self.col.saturating_add(1));
        let all = one.repeat(self.cursor_queries);
        self.cursor_queries = 0;
        Some(all)
    }

    /// True when the last thing rendered ended a line.
    pub fn at_line_start(&self) -> bool {
        self.line_start && !self.cr
    }

    /// Columns a room's line may take on a screen `columns` wide: the prefix's, and the
    /// last column (where some terminals wrap at once), are not the room's.
    fn room_columns(&self, columns: usize) -> usize {
        columns.saturating_sub(self.prefix_len.saturating_add(1))
    }

    /// `bytes`, taking at least `sure` and at most `width` columns.
    fn text(&mut self, out: &mut Vec<u8>, bytes: &[u8], sure: usize, width: usize) {
        let full = self.col.saturating_add(width) > self.room_columns(self.columns);
        if self.columns > 0 && !self.line_start && full {
            self.newline(out);
        }
        self.start_line(out);
        out.extend_from_slice(bytes);
        self.col = self.col.saturating_add(width);
        self.sure = self.sure.saturating_add(sure);
    }

    /// The prefix, when it is due.
    fn start_line(&mut self, out: &mut Vec<u8>) {
        if self.line_start {
            out.extend_from_slice(self.prefix.get(..self.prefix_len).unwrap_or_default());
            self.line_start = false;
        }
    }

    /// Moves the counts back `n` columns, at most `sure`; returns how many.
    fn back(&mut self, n: usize) -> usize {
        let n = n.min(self.sure);
        (self.col, self.sure) = (self.col.saturating_sub(n), self.sure - n);
        n
    }

    fn newline(&mut self, out: &mut Vec<u8>) {
        if self.line_start {
            out.extend_from_slice(self.prefix.get(..self.prefix_len).unwrap_or_default());
        }
        out.extend_from_slice(b"\r\n");
        self.line_start = true;
        (self.col, self.sure) = (0, 0);
    }

    /// Renders `input` (raw room output) onto `out`.
    pub fn render(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.cr && self.state == State::Ground {
                self.cr = false;
                if b == b'\n' {
                    self.newline(out);
                    continue;
                }
                // A lone CR: back to column 0 and write the prefix again over itself.
                out.push(b'\r');
                self.line_start = true;
                (self.col, self.sure) = (0, 0);
            }
            match self.state {
                State::Ground => self.ground(b, out),
                State::Esc => {
                    self.state = match b {
                        b'[' => {
                            self.csi_len = 0;
                            State::Csi
                        }
                        b']' | b'P' | b'_' | b'^' | b'X' => State::Str(false),
                        b'(' | b')' | b'*' | b'+' | b'#' | b'%' => State::EscArg,
                        _ => State::Ground,
                    }
                }
                State::EscArg => self.state = State::Ground,
                State::Csi => self.csi_byte(b, out),
                State::Str(after_esc) => {
                    self.state = match b {
                        0x07 | 0x9c => State::Ground,
                        b'\\' if after_esc => State::Ground,
                        0x1b => State::Str(true),
                        _ => State::Str(false),
                    }
                }
            }
        }
        self.typed = false;
    }

    fn ground(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.utf8_need > 0 {
            if b & 0xc0 == 0x80 {
                if let Some(slot) = self.utf8.get_mut(self.utf8_len) {
                    *slot = b;
                }
                self.utf8_len += 1;
                if self.utf8_len == self.utf8_need {
                    self.utf8_need = 0;
                    self.emit_utf8(out);
                }
                return;
            }
            // A truncated sequence is dropped; this byte starts afresh.
            self.utf8_need = 0;
        }
        match b {
            0x20..=0x7e => self.text(out, &[b], 1, 1),
            b'\n' => self.newline(out),
            b'\r' => self.cr = true,
            b'\t' => {
                let n = 8 - self.col % 8;
                self.text(out, b"        ".get(..n).unwrap_or_default(), n, n);
            }
            0x08 if self.sure > 0 => {
                self.back(1);
                out.push(0x08);
            }
            0x1b => self.state = State::Esc,
            0xc2..=0xf4 => {
                self.utf8[0] = b;
                self.utf8_len = 1;
                self.utf8_need = match b {
                    0xc2..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
            }
            // Other C0 controls, DEL, stray continuation bytes, C1 and invalid leads.
            _ => {}
        }
    }

    fn emit_utf8(&mut self, out: &mut Vec<u8>) {
        let bytes = self.utf8.get(..self.utf8_len).unwrap_or_default();
        let Some(c) = core::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.chars().next())
        else {
            return;
        };
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        // C1 controls (U+0080..U+009F) act like ESC sequences on some terminals.
        if !bidi && !('\u{80}'..='\u{9f}').contains(&c) {
            let mut copy = [0u8; 4];
            let n = bytes.len().min(4);
            copy.get_mut(..n)
                .unwrap_or_default()
                .copy_from_slice(bytes.get(..n).unwrap_or_default());
            let (sure, width) = if one_column(c) { (1, 1) } else { (0, 2) };
            self.text(out, copy.get(..n).unwrap_or_default(), sure, width);
        }
    }

    fn csi_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            0x20..=0x3f => {
                if let Some(slot) = self.csi.get_mut(self.csi_len) {
                    *slot = b;
                }
                self.csi_len = self.csi_len.saturating_add(1);
            }
            0x40..=0x7e => {
                self.state = State::Ground;
                let params = self.csi.get(..self.csi_len).unwrap_or_default();
                if self.csi_len > CSI_MAX || !params.iter().all(u8::is_ascii_digit) {
                    return;
                }
                let n = core::str::from_utf8(params)
                    .ok()
                    .and_then(|p| p.parse::<usize>().ok())
                    .unwrap_or(1)
                    .max(1);
                match b {
                    // Erase to the end of the line (only the default form).
                    b'K' if params.is_empty() || params == b"0" => out.extend_from_slice(b"\x1b[K"),
                    // Cursor left, never into the prefix.
                    b'D' => {
                        let n = self.back(n);
                        if n > 0 {
                            out.extend_from_slice(format!("\x1b[{n}D").as_bytes());
                        }
                    }
                    // Device status report 6: where is the cursor (see `cursor_report`).
                    b'n' if params == b"6" && !self.typed => {
                        self.cursor_queries = (self.cursor_queries + 1).min(CURSOR_QUERIES_MAX);
                    }
                    // Cursor right, never as far as the right margin.
                    b'C' => {
                        self.start_line(out);
                        let edge = if self.columns > 0 {
                            self.columns
                        } else {
                            COLUMNS_MIN
                        };
                        let n = n.min(self.room_columns(edge).saturating_sub(self.col));
                        if n > 0 {
                            out.extend_from_slice(format!("\x1b[{n}C").as_bytes());
                            self.col = self.col.saturating_add(n);
                            self.sure = self.sure.saturating_add(n);
                        }
                    }
                    _ => {}
                }
            }
            // Anything else aborts the sequence.
            _ => self.state = State::Ground,
        }
    }
}

/// Characters every terminal draws one column wide: Latin-1 and Latin Extended A/B, the
/// basic Greek letters and Cyrillic without its combining marks (all assigned, none
/// combining, none wide). Width of anything else is uncertain (0 to 2).
fn one_column(c: char) -> bool {
    matches!(c,
        '\u{a0}'..='\u{ac}' | '\u{ae}'..='\u{24f}' | '\u{391}'..='\u{3a1}'
        | '\u{3a3}'..='\u{3c9}' | '\u{400}'..='\u{482}' | '\u{48a}'..='\u{4ff}')
}

/// The last bytes a room rendered, replayed when someone attaches to its console.
#[derive(Debug, Clone)]
pub struct Scrollback {
    buf: Box<[u8; SCROLLBACK]>,
    /// Total bytes ever written (the write position is `total % SCROLLBACK`).
    total: usize,
}

/// Bytes kept per room.
pub const SCROLLBACK: usize = 4096;

impl Default for Scrollback {
    fn default() -> Self {
        Scrollback {
            buf: Box::new([0; SCROLLBACK]),
            total: 0,
        }
    }
}

impl Scrollback {
    /// Appends `bytes`, forgetting the oldest.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.total % SCROLLBACK) {
                *slot = b;
            }
            self.total = self.total.wrapping_add(1);
        }
    }

    /// The kept bytes, oldest first, starting where the renderer starts a line: after a
    /// newline, or after a lone carriage return (the prefix comes next either way). When
    /// none is kept, nothing is: the kept bytes would start inside a room's line, with
    /// text the room chose where the viewer's screen starts a line.
    pub fn contents(&self) -> Vec<u8> {
        let all = self
            .span(self.total.saturating_sub(SCROLLBACK), self.total)
            .concat();
        if self.total <= SCROLLBACK {
            return all;
        }
        let cut = line_start(&all).unwrap_or(all.len());
        all.get(cut..).unwrap_or_default().to_vec()
    }

    /// Bytes `from..to` of the output, where all of them are still kept; as the two
    /// parts of the ring they are in.
    fn span(&self, from: usize, to: usize) -> [&[u8]; 2] {
        let len = to.saturating_sub(from).min(SCROLLBACK);
        let head = from % SCROLLBACK;
        let first = len.min(SCROLLBACK - head);
        let tail = len - first;
        [
            self.buf.get(head..head + first).unwrap_or_default(),
            self.buf.get(..tail).unwrap_or_default(),
        ]
    }
}

/// One client following a room's console (a control connection): bay0 never waits for
/// it, but what its socket cannot take at once is not dropped while the room's
/// [`Scrollback`] still holds it. The client is shown it when it can take more, the
/// whole backlog in one write. A client so far behind that the scrollback forgot what it
/// was not shown has lost that, and resumes as a [`Viewer`] does: after [`RESUME`], where
/// the renderer starts a line.
///
/// A [`Viewer`] would lose output to a client that only missed a few milliseconds of CPU:
/// a stream socket is full after some 280 unread writes however small they are (each
/// takes a kernel buffer of its own), and a shell's echo is a write per key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Follower {
    /// Where the next byte to show is in the room's output (counted as [`Scrollback`]
    /// counts it).
    at: usize,
    /// What came before `at` was not all shown: [`RESUME`] is due.
    lost: bool,
    /// `at` may be inside a line: output is shown from the next line start.
    seek: bool,
    /// Output is waiting for the client to take it.
    behind: bool,
    /// `at` was set from the scrollback (the first [`Follower::follow`]): before that, the
    /// follower is new and lost nothing.
    placed: bool,
}

/// A new follower ([`Follower::default`]) is first shown the lines the scrollback holds
/// (when it forgot the oldest output, from the first line start in it; none when it holds
/// no line start), with no [`RESUME`] before them: it lost nothing.
impl Follower {
    /// Follows another room's output (a reset room's successor), as new; whether output
    /// waits for the client is kept, so that the next [`Follower::follow`] says when it
    /// changes (the caller's wait for the socket stays in step).
    pub fn restart(&mut self) {
        *self = Follower {
            behind: self.behind,
            ..Follower::default()
        };
    }

    /// Shows what the client was not shown yet with `write` (which writes what it can at
    /// once, `WouldBlock` when nothing): from `kept` and from `fresh`, the newest output,
    /// which `kept` ends with (it may have forgotten the start of it already). `Ok(Some(
    /// behind))` when whether output waits for the client changed: the caller waits for
    /// its socket to be writable, or stops. An error of `write` other than `WouldBlock`:
    /// the client is gone.
    pub fn follow(
        &mut self,
        kept: &Scrollback,
        fresh: &[u8],
        mut write: impl FnMut(&[u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<Option<bool>> {
        let was = self.behind;
        self.behind = self.show(kept, fresh, |b| match write(b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            r => r.map(|n| n.min(b.len())),
        })?;
        Ok((self.behind != was).then_some(self.behind))
    }

    /// The output from `at` on, as it is kept: in the ring, then in `fresh`.
    fn pending<'a>(&self, kept: &'a Scrollback, fresh: &'a [u8]) -> [&'a [u8]; 3] {
        let fresh_from = kept.total.saturating_sub(fresh.len());
        let [a, b] = kept.span(self.at, fresh_from);
        let skip = self.at.saturating_sub(fresh_from);
        [a, b, fresh.get(skip..).unwrap_or_default()]
    }

    /// True when output is left for the client to take.
    fn show(
        &mut self,
        kept: &Scrollback,
        fresh: &[u8],
        mut write: impl FnMut(&[u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<bool> {
        let total = kept.total;
        let oldest = total.saturating_sub(SCROLLBACK.max(fresh.len()));
        // Past the end: output of a room the client no longer follows.
        self.at = self.at.min(total);
        if self.at < oldest {
            (self.at, self.lost, self.seek) = (oldest, self.placed, true);
        }
        self.placed = true;
        if self.seek {
            let pending = self.pending(kept, fresh);
            match line_start(pending.into_iter().flatten()) {
                Some(skip) => (self.at, self.seek) = (self.at + skip, false),
                None => {
                    self.at = total;
                    return Ok(false);
                }
            }
        }
        if self.lost {
            if write(RESUME)? < RESUME.len() {
                // Written whole again next time (a second CAN is harmless).
                return Ok(true);
            }
            self.lost = false;
        }
        for part in self.pending(kept, fresh) {
            if part.is_empty() {
                continue;
            }
            let n = write(part)?;
            self.at += n;
            if n < part.len() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Where the renderer next starts a line in `bytes` (its output): just after the first
/// newline or lone carriage return (the prefix comes next either way).
///
/// `bytes` may come in pieces (a ring's two parts and a read's output): a CR at the end
/// of one and an LF at the start of the next are one line end.
fn line_start<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> Option<usize> {
    let mut bytes = bytes.into_iter().peekable();
    let mut i = 0;
    while let Some(&b) = bytes.next() {
        i += 1;
        if b == b'\n' || (b == b'\r' && bytes.peek() != Some(&&b'\n')) {
            return Some(i);
        }
    }
    None
}

/// What a viewer gets before output resumes after a loss: CAN (ends an escape sequence
/// a terminal may be inside) and CR LF (ends the torn line).
pub const RESUME: &[u8] = b"\x18\r\n";

/// One terminal showing rendered room output that may lose some of it: bay0 never waits
/// for a viewer (a control client's socket, its own console), and what one cannot take
/// at once is dropped. The renderer's guarantees hold for its whole output, not for an
/// arbitrary part of it: after a loss the terminal may be inside an escape sequence the
/// renderer began (the room's next bytes would finish it), or on a line whose prefix it
/// never got (the room's next text would start it). So after a loss the output resumes
/// only where the renderer starts a line, and after [`RESUME`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    lost: bool,
    /// The output handed to this viewer so far (shown or not) ends where a line ends: the
    /// renderer's next byte starts a line.
    eol: bool,
}

impl Viewer {
    /// Shows `bytes` with `write` (which writes what it can at once and says how much; 0
    /// on an error); how many of `bytes` were lost (not written).
    pub fn show(&mut self, bytes: &[u8], mut write: impl FnMut(&[u8]) -> usize) -> usize {
        if bytes.is_empty() {
            return 0;
        }
        let was_eol = self.eol;
        self.eol = matches!(bytes.last(), Some(b'\n' | b'\r'));
        let mut rest = bytes;
        if self.lost {
            // Where the renderer starts a line: right here when the lost output ended
            // one, else after the next line end in `bytes`.
            let Some(at) = (if was_eol { Some(0) } else { line_start(bytes) }) else {
                return bytes.len();
            };
            if write(RESUME) < RESUME.len() {
                return bytes.len();
            }
            rest = bytes.get(at..).unwrap_or_default();
        }
        let n = if rest.is_empty() { 0 } else { write(rest) }.min(rest.len());
        self.lost = n < rest.len();
        bytes.len() - n
    }

    /// `bytes` were not shown at all (the viewer was held): a loss like any other.
    pub fn dropped(&mut self, bytes: &[u8]) {
        if let Some(last) = bytes.last() {
            self.lost = true;
            self.eol = matches!(last, b'\n' | b'\r');
        }
    }

    /// What comes next continues a line the viewer was not shown the start of (bay0's own
    /// line ended it on the terminal): lost up to the next line the renderer starts.
    pub fn torn(&mut self) {
        self.lost = true;
        self.eol = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(input: &[u8]) -> String {
        let mut r = Renderer::new("web");
        let mut out = Vec::new();
        r.render(input, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_cursor_position_question_is_answered_with_the_rooms_own_column() {
        let mut r = Renderer::new("web");
        let mut out = Vec::new();
        assert_eq!(r.cursor_report(), None);
        r.render(b"web:~# \x1b[6n", &mut out);
        // Not shown (it is a question to the terminal), answered once.
        assert_eq!(String::from_utf8(out.clone()).unwrap(), "web| web:~# ");
        assert_eq!(r.cursor_report().as_deref(), Some("\x1b[1;8R"));
        assert_eq!(r.cursor_report(), None);
        // Text before the prompt on the same line moves the column, not the prefix.
        r.render(b"\r\nno newline> \x1b[", &mut out);
        r.render(b"6n", &mut out);
        assert_eq!(r.cursor_report().as_deref(), Some("\x1b[1;13R"));
        // Other device status questions and private forms get no answer.
        r.render(b"\x1b[5n\x1b[?6n", &mut out);
        assert_eq!(r.cursor_report().as_deref(), None);
    }

    #[test]
    fn a_question_that_may_predate_typed_keys_is_not_answered() {
        let mut r = Renderer::new("web");
        let mut out = Vec::new();
        r.typed();
        r.render(b"web:~# \x1b[6n", &mut out);
        assert_eq!(r.cursor_report(), None);
        // The next question, with no keys typed since the last render, is answered.
        r.render(b"\x1b[6n", &mut out);
        assert_eq!(r.cursor_report().as_deref(), Some("\x1b[1;8R"));
        // A question split across two renders with keys typed in between: unanswered.
        r.render(b"\x1b[", &mut out);
        r.typed();
        r.render(b"6n", &mut out);
        assert_eq!(r.cursor_report(), None);
    }

    #[test]
    fn a_room_asking_in_a_loop_gets_a_bounded_answer() {
        let mut r = Renderer::new("web");
        let mut out = Vec::new();
        r.render(&b"\x1b[6n".repeat(10_000), &mut out);
        assert!(out.is_empty());
        let reply = r.cursor_report().unwrap();
        assert_eq!(reply, "\x1b[1;1R".repeat(CURSOR_QUERIES_MAX));
        assert_eq!(r.cursor_report(), None);
    }

    #[test]
    fn lines_carry_the_room_name() {
        assert_eq!(
            render(b"hello\r\nworld\r\n"),
            "web| hello\r\nweb| world\r\n"
        );
        assert_eq!(render(b"\n\n"), "web| \r\nweb| \r\n");
        assert_eq!(render(b"web:~# "), "web| web:~# ");
    }

    #[test]
    fn a_room_cannot_forge_a_bay0_line() {
        let out = render(b"x\r\nbay0: room work opened\r\n\rbay0: ready\n");
        for line in out.split("\r\n").filter(|l| !l.is_empty()) {
            let visible = line.rsplit('\r').next().unwrap();
            assert!(visible.starts_with("web| "), "{line:?} in {out:?}");
        }
    }

    #[test]
    fn screen_control_and_answerback_sequences_are_dropped() {
        let hostile: &[u8] = b"\x1b[2J\x1b[H\x1b]0;owned title\x07\x1b]52;c;Y2xpcA==\x1b\\\
            \x1bP$q m\x1b\\\x1b[6n\x1b[5;5H\x1b[?1049h\x1bc\x1b(0\x1b[31mred\x1b[0m\x07\x0c";
        assert_eq!(render(hostile), "web| red");
        assert_eq!(render("a\u{9b}2J\u{85}b".as_bytes()), "web| a2Jb");
        assert_eq!(render(b"a\x9b2Jb\xff\xc3"), "web| a2Jb");
        assert_eq!(render("x\u{202e}gpj.exe".as_bytes()), "web| xgpj.exe");
        assert_eq!(render("é€😀".as_bytes()), "web| é€😀");
    }

    #[test]
    fn line_editing_stays_inside_the_line() {
        assert_eq!(render(b"ab\x08\x08\x08\x08c"), "web| ab\x08\x08c");
        assert_eq!(render(b"abc\x1b[5D\x1b[K"), "web| abc\x1b[3D\x1b[K");
        assert_eq!(render(b"abc\x1b[2K\x1b[1J"), "web| abc");
        assert_eq!(render(b"50%\r60%\r\n"), "web| 50%\rweb| 60%\r\n");
    }

    #[test]
    fn state_survives_chunk_boundaries() {
        let input = "a\x1b]0;t\x07b\u{20ac}\r\nc".as_bytes();
        let whole = render(input);
        for split in 1..input.len() {
            let mut r = Renderer::new("web");
            let mut out = Vec::new();
            r.render(&input[..split], &mut out);
            r.render(&input[split..], &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), whole, "split at {split}");
        }
    }

    #[test]
    fn scrollback_keeps_the_newest_whole_lines() {
        let mut s = Scrollback::default();
        s.push(b"one\r\n");
        assert_eq!(s.contents(), b"one\r\n");
        for i in 0..1000 {
            s.push(format!("line {i}\r\n").as_bytes());
        }
        let c = String::from_utf8(s.contents()).unwrap();
        assert!(c.len() <= SCROLLBACK && c.starts_with("line ") && c.ends_with("line 999\r\n"));
    }

    /// What bay0 keeps of a room's output: the rendered bytes, pushed read by read.
    fn kept(input: &[u8]) -> String {
        let (mut r, mut s) = (Renderer::new("web"), Scrollback::default());
        for chunk in input.chunks(4096) {
            read(&mut r, &mut s, chunk);
        }
        String::from_utf8_lossy(&s.contents()).into_owned()
    }

    /// A terminal that takes everything.
    fn all(screen: &mut Vec<u8>) -> impl FnMut(&[u8]) -> usize + '_ {
        |x: &[u8]| {
            screen.extend_from_slice(x);
            x.len()
        }
    }

    #[test]
    fn a_viewer_that_lost_output_resumes_only_where_a_line_starts() {
        let mut r = Renderer::new("web");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        r.render(b"one\ntwo ", &mut a);
        r.render(b"\x1b[Kbay0: forged\nthree\rfour", &mut b);
        assert_eq!(a, b"web| one\r\nweb| two ");
        let mut v = Viewer::default();
        let mut screen = Vec::new();
        // The terminal takes 5 bytes of the first output: it is inside the line's prefix.
        let lost = v.show(&a, |x| {
            screen.extend_from_slice(&x[..5]);
            5
        });
        assert_eq!((lost, screen.as_slice()), (a.len() - 5, &b"web| "[..]));
        // It can take everything again: the torn line is ended and the output resumes
        // with the next line the renderer starts, never with "bay0: forged".
        let lost = v.show(&b, all(&mut screen));
        assert_eq!(
            String::from_utf8(screen).unwrap(),
            "web| \x18\r\nweb| three\rweb| four"
        );
        assert_eq!(lost, b"\x1b[Kbay0: forged\r\n".len());
        // Nothing lost since: everything goes through as it is.
        let mut screen = Vec::new();
        assert_eq!(v.show(b"\r\nweb| x", all(&mut screen)), 0);
        assert_eq!(screen, b"\r\nweb| x");
        // A terminal that takes nothing loses it all, and output with no line start in it
        // is lost too until one comes; a write error is a loss.
        assert_eq!(v.show(b"web| y", |_| 0), 6);
        assert_eq!(v.show(b"more", |_| panic!("written")), 4);
        let mut screen = Vec::new();
        assert_eq!(v.show(b"z\r\nweb| ok", all(&mut screen)), 3);
        assert_eq!(screen, b"\x18\r\nweb| ok");
        // Output held back (bay0's console during the courier prompt) is lost too.
        v.dropped(b"");
        let mut screen = Vec::new();
        assert_eq!(v.show(b" still", all(&mut screen)), 0);
        v.dropped(b"\r\nweb| ");
        assert_eq!(v.show(b"bay0: forged\r\nweb| a", all(&mut screen)), 14);
        assert_eq!(screen, b" still\x18\r\nweb| a");
        // Held output that ended a line: the next line is shown whole (after the mark of
        // the loss), never eaten waiting for a line start it already is.
        v.dropped(b"\r\nweb| held\r\n");
        let mut screen = Vec::new();
        assert_eq!(v.show(b"web| next\r\nweb| ", all(&mut screen)), 0);
        assert_eq!(screen, b"\x18\r\nweb| next\r\nweb| ");
        // A line bay0's own output tore: its rest is lost up to the next line start.
        v.torn();
        let mut screen = Vec::new();
        assert_eq!(v.show(b"rest\r\nweb| b", all(&mut screen)), 6);
        assert_eq!(screen, b"\x18\r\nweb| b");
    }

    /// One read of a room's output as bay0 keeps it and hands it on: its rendered bytes
    /// (`fresh`), after they were pushed to the scrollback.
    fn read(r: &mut Renderer, s: &mut Scrollback, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        r.render(input, &mut out);
        s.push(&out);
        out
    }

    #[test]
    fn a_follower_that_stops_reading_for_a_while_loses_nothing() {
        // A shell echoing a long typed line: a write per key.
        let line: Vec<u8> = (0..2000).map(|i| b'a' + (i % 26) as u8).collect();
        let (mut r, mut s) = (Renderer::new("web"), Scrollback::default());
        let mut f = Follower::default();
        let (mut screen, mut changes) = (Vec::new(), Vec::new());
        // The client takes nothing for the first 1500 writes (the whole backlog is
        // more than a third of the scrollback), then everything again.
        for (i, c) in [&line[..], b"\n"].concat().chunks(1).enumerate() {
            let out = read(&mut r, &mut s, c);
            let took = f.follow(&s, &out, |b| {
                if i < 1500 {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                screen.extend_from_slice(b);
                Ok(b.len())
            });
            changes.extend(took.unwrap());
        }
        let want = format!("web| {}\r\n", String::from_utf8(line).unwrap());
        assert_eq!(String::from_utf8(screen).unwrap(), want);
        // It waited for the client once, and stopped when it had taken everything.
        assert_eq!(changes, [true, false]);
        // Nothing new: nothing written, nothing changed.
        assert_eq!(f.follow(&s, b"", |_| panic!("written")).unwrap(), None);
    }

    #[test]
    fn a_follower_takes_what_its_socket_takes_and_the_rest_when_it_is_writable() {
        let (mut r, mut s) = (Renderer::new("web"), Scrollback::default());
        let mut f = Follower::default();
        let (mut screen, mut changes) = (Vec::new(), Vec::new());
        for c in [&b"one\n"[..], b"two\n", b"three\n"] {
            let out = read(&mut r, &mut s, c);
            // 7 bytes a read; the rest would block.
            let mut left = 7;
            let took = f.follow(&s, &out, |b| {
                if left == 0 {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                let n = b.len().min(left);
                left -= n;
                screen.extend_from_slice(&b[..n]);
                Ok(n)
            });
            changes.push(took.unwrap());
        }
        // Behind from the first read on; each write goes on where the last one stopped.
        assert_eq!(changes, [Some(true), None, None]);
        assert_eq!(screen, b"web| one\r\nweb| two\r\nw");
        // Writable again: the rest comes from the scrollback, in one write.
        let mut writes = 0;
        let took = f.follow(&s, b"", |b| {
            writes += 1;
            screen.extend_from_slice(b);
            Ok(b.len())
        });
        assert_eq!((took.unwrap(), writes), (Some(false), 1));
        assert_eq!(screen, b"web| one\r\nweb| two\r\nweb| three\r\n");
    }

    #[test]
    fn a_follower_too_far_behind_resumes_where_a_line_starts() {
        let (mut r, mut s) = (Renderer::new("web"), Scrollback::default());
        let mut f = Follower::default();
        let mut input = Vec::new();
        for i in 0..1000 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        // More output than the scrollback holds while the client takes nothing.
        for c in input[..input.len() / 2].chunks(100) {
            let out = read(&mut r, &mut s, c);
            let took = f.follow(&s, &out, |_| Err(std::io::ErrorKind::WouldBlock.into()));
            assert!(took.is_ok());
        }
        // The client takes everything again from here.
        let mut screen = Vec::new();
        for c in input[input.len() / 2..].chunks(4096) {
            let out = read(&mut r, &mut s, c);
            f.follow(&s, &out, all_io(&mut screen)).unwrap();
        }
        let seen = String::from_utf8(screen).unwrap();
        assert!(seen.starts_with("\x18\r\nweb| line "), "{}", &seen[..40]);
        assert!(seen.ends_with("web| line 999\r\n"));
        // Every line after the mark is whole and prefixed.
        let lines: Vec<&str> = seen[3..].split_terminator("\r\n").collect();
        assert!(
            lines.iter().all(|l| l.starts_with("web| line ")),
            "{lines:?}"
        );
        // Caught up, it sees a read longer than the scrollback whole.
        let mut screen = Vec::new();
        let out = read(&mut r, &mut s, &input);
        assert!(out.len() > SCROLLBACK);
        f.follow(&s, &out, all_io(&mut screen)).unwrap();
        assert_eq!(screen, kept_all(&input));
    }

    #[test]
    fn an_attached_follower_is_shown_the_kept_lines_and_never_half_a_line() {
        let (mut r, mut s) = (Renderer::new("web"), Scrollback::default());
        read(&mut r, &mut s, b"one\ntwo");
        let mut screen = Vec::new();
        let mut f = Follower::default();
        f.follow(&s, b"", all_io(&mut screen)).unwrap();
        assert_eq!(screen, b"web| one\r\nweb| two");
        // A line longer than the scrollback: none of it is shown, not even the text that
        // follows when the line goes on (it would start the client's line unprefixed).
        let mut forged = b"bay0: error: type your passphrase".to_vec();
        forged.resize(2 * SCROLLBACK, b' ');
        read(&mut r, &mut s, &forged);
        let mut screen = Vec::new();
        let mut f = Follower::default();
        f.follow(&s, b"", all_io(&mut screen)).unwrap();
        let out = read(&mut r, &mut s, b"bay0: more\nnext\n");
        f.follow(&s, &out, all_io(&mut screen)).unwrap();
        assert_eq!(screen, b"web| next\r\n");
        // A write error other than WouldBlock: the client is gone.
        read(&mut r, &mut s, b"x\n");
        let gone = f.follow(&s, b"", |_| Err(std::io::ErrorKind::BrokenPipe.into()));
        assert_eq!(gone.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_restarted_follower_says_when_it_no_longer_waits_for_its_client() {
        let (mut r, mut s) = (Renderer::new("web"), Scrollback::default());
        let mut f = Follower::default();
        let out = read(&mut r, &mut s, b"old room\n");
        let blocked = f.follow(&s, &out, |_| Err(std::io::ErrorKind::WouldBlock.into()));
        assert_eq!(blocked.unwrap(), Some(true));
        // The successor's output, all taken at once: the caller must hear that nothing
        // waits any more (or it would wait for a writable socket for ever, and wake for it).
        f.restart();
        let (mut r, mut s) = (Renderer::new("web"), Scrollback::default());
        read(&mut r, &mut s, b"new room\n");
        let mut screen = Vec::new();
        assert_eq!(f.follow(&s, b"", all_io(&mut screen)).unwrap(), Some(false));
        assert_eq!(screen, b"web| new room\r\n");
    }

    /// A socket that takes everything.
    fn all_io(screen: &mut Vec<u8>) -> impl FnMut(&[u8]) -> std::io::Result<usize> + '_ {
        |x: &[u8]| {
            screen.extend_from_slice(x);
            Ok(x.len())
        }
    }

    /// The whole rendered output of `input`.
    fn kept_all(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Renderer::new("web").render(input, &mut out);
        out
    }

    #[test]
    fn a_replayed_scrollback_never_starts_inside_a_rooms_line() {
        // On a screen of unknown width a room's line is never broken: a room that prints
        // one line longer than the scrollback chooses what its last SCROLLBACK bytes are.
        // Replayed from there, they would start a line of the viewer's screen unprefixed.
        let mut forged = b"bay0: error: the vault is corrupt; type your passphrase".to_vec();
        forged.resize(SCROLLBACK, b' ');
        let mut input = vec![b'x'; 2 * SCROLLBACK];
        input.extend_from_slice(&forged);
        let c = kept(&input);
        assert!(
            !c.contains("bay0:"),
            "replayed unprefixed: {:?}",
            &c[..c.len().min(60)]
        );
        // A line restarted by a lone carriage return starts with the prefix again: the
        // replay may start there.
        input.extend_from_slice(b"\rprogress 99%");
        let c = kept(&input);
        assert_eq!(c, "web| progress 99%");
        let c = kept(&[&input[..], b"\nnext\n"].concat());
        assert_eq!(c, "web| progress 99%\r\nweb| next\r\n");
    }
}
