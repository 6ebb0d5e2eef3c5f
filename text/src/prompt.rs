// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier's trusted prompt: what bay0 shows before a file may cross between rooms,
//! as text lines (the console) and as pixels (the framebuffer, with the built-in font).
//!
//! The file name comes from a room, so it is shown escaped ([`Escaped`]): in quotes, with
//! printable ASCII as itself and every other character -- controls, escape sequences,
//! bidirectional overrides, zero-width and every other non-ASCII character, including
//! look-alike letters -- written as `\u{...}`, invalid UTF-8 as `\xNN`. What the user
//! reads is exactly the bytes the name holds; nothing in it can move, hide or reorder
//! text. Pure: strings in, lines or a pixel buffer out.

use core::fmt::{self, Write as _};

use crate::font::{self, Font};

/// What the prompt shows.
#[derive(Debug, Clone, Copy)]
pub struct Prompt<'a> {
    /// The sending room (identified by bay0, never by the request).
    pub from: &'a str,
    /// The destination room.
    pub to: &'a str,
    /// The file name as the room sent it.
    pub name: &'a [u8],
    pub size: u64,
    pub sha256: &'a [u8; 32],
    /// Seconds until no answer counts as No.
    pub timeout_s: u32,
}

/// A room-supplied name, quoted and escaped for a trusted display (see the module
/// documentation). The result is printable ASCII only.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    ' '..='~' => f.write_char(c)?,
                    _ => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02X}")?;
            }
        }
        f.write_char('"')
    }
}

/// Most lines the file name may take; a longer one is cut and the cut is said.
pub const NAME_LINES: usize = 8;

/// What starts every line of the file name after its first (as wide as `File:    `).
/// Not blank: a name padded to wrap where it likes would otherwise show a line of its
/// own text, `Size:    1 bytes` say, that looks like one of the prompt's, merely
/// indented. The name's text never reaches the first nine columns, so with this gutter
/// every line it fills is marked as the name's. (The line that says how much of a long
/// name is not shown is the prompt's own: it has no gutter.)
pub const NAME_GUTTER: &str = "       | ";

fn human(size: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, n) in UNITS {
        if size >= n {
            let tenths = u128::from(size) * 10 / u128::from(n);
            return format!("{}.{} {unit}", tenths / 10, tenths % 10);
        }
    }
    format!("{size} bytes")
}

/// Splits `text` (ASCII) into pieces of at most `width` characters.
fn wrap(text: &str, width: usize) -> impl Iterator<Item = &str> {
    let width = width.max(1);
    (0..text.len().div_ceil(width))
        .filter_map(move |i| text.get(i * width..((i + 1) * width).min(text.len())))
}

/// Appends `text` (ASCII) as lines of at most `cols` characters, broken at spaces where
/// it can be (a word longer than a line is split).
fn wrap_words(text: &str, cols: usize, out: &mut Vec<String>) {
    let cols = cols.max(1);
    let mut rest = text;
    while rest.len() > cols {
        let head = rest.get(..=cols).unwrap_or(rest);
        let at = head.rfind(' ').filter(|&i| i > 0).unwrap_or(cols);
        let (line, next) = rest.split_at_checked(at).unwrap_or((rest, ""));
        out.push(line.trim_end().to_string());
        rest = next.trim_start();
    }
    out.push(rest.to_string());
}

impl<'a> Prompt<'a> {
    /// A prompt for a transfer of `name` (`size` bytes, `sha256`) from room `from` to
    /// room `to`, refused after `timeout_s` without an answer.
    pub fn of(
        from: &'a str,
        to: &'a str,
        name: &'a [u8],
        size: u64,
        sha256: &'a [u8; 32],
        timeout_s: u32,
    ) -> Prompt<'a> {
        Prompt {
            from,
            to,
            name,
            size,
            sha256,
            timeout_s,
        }
    }

    /// The title line (also the marker a reader of the console looks for).
    pub const TITLE: &'static str = "ANCHOR TRUSTED PROMPT - drawn by bay0, never by a room";

    /// The prompt as lines of at most `cols` characters (printable ASCII only). Nothing is
    /// cut but the title and the middle of a long file name: a longer line is wrapped.
    pub fn lines(&self, cols: usize) -> Vec<String> {
        self.fitted(cols, NAME_LINES, false)
    }

    /// [`Prompt::lines`] with the file name on at most `name_lines` lines (at least 3): a
    /// longer name shows its beginning, how many characters are not shown, and its end.
    /// `compact`: without the blank lines.
    fn fitted(&self, cols: usize, name_lines: usize, compact: bool) -> Vec<String> {
        let (cols, name_lines) = (cols.max(20), name_lines.max(3));
        let mut sha = [0u8; 16];
        for (pair, b) in sha.chunks_exact_mut(2).zip(self.sha256.iter()) {
            let hex = format!("{b:02x}");
            pair.copy_from_slice(hex.as_bytes());
        }
        let mut title = Prompt::TITLE.to_string();
        title.truncate(cols);
        let blank = if compact { None } else { Some(String::new()) };
        let mut out: Vec<String> = [Some(title), blank.clone()].into_iter().flatten().collect();
        let (from, to) = (self.from, self.to);
        let room = format!("Room {from} asks to send a file to room {to}.");
        wrap_words(&room, cols, &mut out);
        out.extend(blank.clone());
        let name = Escaped(self.name).to_string();
        let label = "File:    ";
        let width = cols - label.len();
        let pieces: Vec<&str> = wrap(&name, width).collect();
        let mut shown: Vec<&str> = pieces.clone();
        let mut cut = None;
        if pieces.len() > name_lines {
            shown.truncate(name_lines - 2);
            let tail = name
                .get(name.len().saturating_sub(width)..)
                .unwrap_or_default();
            let hidden = name.len() - (name_lines - 2) * width - tail.len();
            cut = Some(format!("[{hidden} characters not shown]"));
            shown.push(tail);
        }
        for (i, piece) in shown.iter().enumerate() {
            let lead = if i == 0 { label } else { NAME_GUTTER };
            if let (Some(cut), true) = (&cut, i + 1 == shown.len()) {
                // The prompt's own words, so not in the name's gutter.
                wrap_words(&format!("         {cut}"), cols, &mut out);
            }
            out.push(format!("{lead}{piece}"));
        }
        let size = format!("Size:    {} bytes ({})", self.size, human(self.size));
        wrap_words(&size, cols, &mut out);
        let sha = core::str::from_utf8(&sha).unwrap_or("?");
        wrap_words(&format!("SHA-256: {sha}..."), cols, &mut out);
        out.extend(blank);
        wrap_words(
            "Press Y to send it. Press N or Esc to refuse.",
            cols,
            &mut out,
        );
        let timeout = format!("No answer within {} s refuses it.", self.timeout_s);
        wrap_words(&timeout, cols, &mut out);
        out
    }

    /// The prompt drawn for `surface`: a whole frame (`stride * height` bytes) to write
    /// at offset 0 of the framebuffer; `None` for a pixel format it cannot draw or a
    /// screen too small for every line of it (then the console shows the prompt alone).
    pub fn draw(&self, surface: &Surface) -> Option<Vec<u8>> {
        let font = font::builtin()?;
        let s = surface;
        let bpp = usize::try_from(s.bytes_per_pixel)
            .ok()
            .filter(|b| (2..=4).contains(b))?;
        let (width, height) = (
            usize::try_from(s.width).ok()?,
            usize::try_from(s.height).ok()?,
        );
        let stride = usize::try_from(s.stride).ok()?;
        if stride < width.checked_mul(bpp)? || width < font.width * 22 || height < font.height * 12
        {
            return None;
        }
        let mut frame = Frame {
            buf: vec![0u8; stride.checked_mul(height)?],
            s,
            bpp,
            stride,
            font,
        };
        frame.rect(0, 0, width, height, BACKGROUND);
        let cols = width / font.width - 2;
        let rows = height / font.height;
        // Every line must be on the screen: a long name gives up lines (not the rooms,
        // size, hash or keys), then the blank lines go; a screen too small even then is
        // not drawn on at all.
        let lines = [false, true]
            .into_iter()
            .flat_map(|compact| (3..=NAME_LINES).rev().map(move |n| (n, compact)))
            .map(|(n, compact)| self.fitted(cols, n, compact))
            .find(|l| l.len() <= rows.saturating_sub(2))?;
        frame.rect(0, 0, width, font.height * 2, TITLE_BAR);
        for (row, line) in lines.iter().enumerate() {
            let (fg, bg) = if row == 0 {
                (TITLE_TEXT, TITLE_BAR)
            } else {
                (TEXT, BACKGROUND)
            };
            let y = font.height / 2 + row * font.height + if row == 0 { 0 } else { font.height };
            frame.text(font.width, y, line, fg, bg);
        }
        Some(frame.buf)
    }
}

/// An RGB colour.
pub type Rgb = (u8, u8, u8);
const BACKGROUND: Rgb = (0x0b, 0x1f, 0x4a);
const TEXT: Rgb = (0xff, 0xff, 0xff);
const TITLE_BAR: Rgb = (0xff, 0xc4, 0x00);
const TITLE_TEXT: Rgb = (0x00, 0x00, 0x00);

/// One colour channel of a framebuffer pixel: its bit offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub offset: u32,
    pub length: u32,
}

/// A framebuffer's geometry and pixel format (Linux fbdev's screeninfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Surface {
    pub width: u32,
    pub height: u32,
    /// Bytes per line.
    pub stride: u32,
    pub bytes_per_pixel: u32,
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
}

impl Surface {
    /// The surface Linux fbdev describes: `var` is `struct fb_var_screeninfo` (160 bytes)
    /// and `fix` is `struct fb_fix_screeninfo` (80 bytes, LP64 layout) as the kernel
    /// returned them. `None` for a panned view (the frame would not start at offset 0),
    /// a non-packed format or sizes that do not fit each other.
    pub fn from_fbdev(var: &[u8; 160], fix: &[u8; 80]) -> Option<Surface> {
        let word = |b: &[u8], at: usize| {
            b.get(at..at + 4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .map(u32::from_le_bytes)
        };
        let v = |at: usize| word(var, at);
        let channel = |at: usize| {
            Some(Channel {
                offset: v(at)?,
                length: v(at + 4)?,
            })
        };
        let bits = v(24)?;
        let s = Surface {
            width: v(0)?,
            height: v(4)?,
            stride: word(fix, 48)?,
            bytes_per_pixel: bits.div_ceil(8),
            red: channel(32)?,
            green: channel(44)?,
            blue: channel(56)?,
        };
        let fits = u64::from(s.width) * u64::from(s.bytes_per_pixel) <= u64::from(s.stride);
        (v(16)? == 0 && v(20)? == 0 && bits % 8 == 0 && fits).then_some(s)
    }

    /// A black frame (`stride * height` bytes).
    pub fn blank(&self) -> Vec<u8> {
        vec![0; (self.stride as usize).saturating_mul(self.height as usize)]
    }

    /// The pixel value for `rgb`.
    pub fn pixel(&self, (r, g, b): Rgb) -> u32 {
        let put = |v: u8, c: Channel| {
            let len = c.length.min(8);
            let v = u32::from(v) >> (8 - len);
            v.checked_shl(c.offset).unwrap_or(0)
        };
        put(r, self.red) | put(g, self.green) | put(b, self.blue)
    }
}

struct Frame<'a> {
    buf: Vec<u8>,
    s: &'a Surface,
    bpp: usize,
    stride: usize,
    font: Font,
}

impl Frame<'_> {
    fn put(&mut self, x: usize, y: usize, rgb: Rgb) {
        let value = self.s.pixel(rgb).to_le_bytes();
        let at = y * self.stride + x * self.bpp;
        if let (Some(dst), Some(src)) = (self.buf.get_mut(at..at + self.bpp), value.get(..self.bpp))
        {
            dst.copy_from_slice(src);
        }
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: Rgb) {
        let (maxw, maxh) = (self.s.width as usize, self.s.height as usize);
        for yy in y..(y + h).min(maxh) {
            for xx in x..(x + w).min(maxw) {
                self.put(xx, yy, rgb);
            }
        }
    }

    fn text(&mut self, x: usize, y: usize, line: &str, fg: Rgb, bg: Rgb) {
        let font = self.font;
        for (i, c) in line.bytes().enumerate() {
            let x0 = x + i * font.width;
            for gy in 0..font.height {
                for gx in 0..font.width {
                    let lit = font.pixel(c, gx, gy);
                    self.put(x0 + gx, y + gy, if lit { fg } else { bg });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(name: &[u8]) -> Prompt<'_> {
        Prompt {
            from: "web",
            to: "work",
            name,
            size: 104_857_600,
            sha256: &[0xab; 32],
            timeout_s: 60,
        }
    }

    fn esc(b: &[u8]) -> String {
        Escaped(b).to_string()
    }

    #[test]
    fn every_character_a_room_could_hide_behind_is_shown_escaped() {
        assert_eq!(esc(b"report.pdf"), "\"report.pdf\"");
        assert_eq!(esc(b"a b\\c\"d"), "\"a b\\\\c\\\"d\"");
        assert_eq!(
            esc(b"\x1b[2J\x07\n\r\t\0\x7f"),
            "\"\\u{1b}[2J\\u{7}\\u{a}\\u{d}\\u{9}\\u{0}\\u{7f}\""
        );
        assert_eq!(esc("\u{9b}31m".as_bytes()), "\"\\u{9b}31m\"");
        assert_eq!(
            esc("invoice\u{202e}fdp.exe".as_bytes()),
            "\"invoice\\u{202e}fdp.exe\""
        );
        assert_eq!(
            esc("a\u{200b}b\u{feff}\u{2066}".as_bytes()),
            "\"a\\u{200b}b\\u{feff}\\u{2066}\""
        );
        // Look-alikes: Cyrillic a, full-width letters.
        assert_eq!(
            esc("p\u{430}ypal\u{ff41}".as_bytes()),
            "\"p\\u{430}ypal\\u{ff41}\""
        );
        assert_eq!(esc(b"bad\xff\xc3"), "\"bad\\xFF\\xC3\"");
        assert_eq!(esc("tag\u{e0041}".as_bytes()), "\"tag\\u{e0041}\"");
        // The output is always printable ASCII.
        let all: Vec<u8> = (0..=255u8).collect();
        assert!(esc(&all).bytes().all(|b| (0x20..0x7f).contains(&b)));
        let chars: String = ('\u{0}'..'\u{3000}').collect();
        assert!(esc(chars.as_bytes())
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn the_prompt_names_rooms_file_size_hash_keys_and_timeout() {
        let lines = prompt("invoice\u{202e}fdp.exe".as_bytes()).lines(80);
        let text = lines.join("\n");
        for want in [
            Prompt::TITLE,
            "Room web asks to send a file to room work.",
            "File:    \"invoice\\u{202e}fdp.exe\"",
            "Size:    104857600 bytes (100.0 MiB)",
            "SHA-256: abababababababab...",
            "Press Y to send it. Press N or Esc to refuse.",
            "No answer within 60 s refuses it.",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want:?} missing:\n{text}");
        }
        assert!(text
            .bytes()
            .all(|b| b == b'\n' || (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn long_names_wrap_and_a_cut_is_said() {
        let name = "\u{4e00}".repeat(60);
        let lines = prompt(name.as_bytes()).lines(48);
        assert!(lines.iter().all(|l| l.len() <= 48), "{lines:#?}");
        let shown: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("File:") || l.starts_with("       "))
            .collect();
        // The beginning, the cut, the end (with the closing quote).
        assert_eq!(shown.len(), NAME_LINES);
        assert_eq!(shown[NAME_LINES - 2].trim(), "[209 characters not shown]");
        assert!(shown[NAME_LINES - 1].ends_with("\\u{4e00}\""), "{lines:#?}");
        let short = prompt(b"x").lines(40);
        assert_eq!(short.iter().filter(|l| l.starts_with("File:")).count(), 1);
    }

    /// What the frame shows, read back glyph by glyph: each text row (title included) as
    /// the ASCII characters whose glyphs match its cells ('?' for none), trailing spaces
    /// trimmed.
    fn screen_text(frame: &[u8], s: &Surface) -> Vec<String> {
        let f = font::builtin().unwrap();
        let bpp = s.bytes_per_pixel as usize;
        let px = |x: usize, y: usize| {
            let at = y * s.stride as usize + x * bpp;
            let mut v = [0u8; 4];
            v[..bpp].copy_from_slice(&frame[at..at + bpp]);
            u32::from_le_bytes(v)
        };
        let (cols, rows) = (s.width as usize / f.width - 2, s.height as usize / f.height);
        let mut out = Vec::new();
        for row in 0..rows.saturating_sub(2) {
            let y0 = f.height / 2 + row * f.height + if row == 0 { 0 } else { f.height };
            let fg = s.pixel(if row == 0 { TITLE_TEXT } else { TEXT });
            let mut line = String::new();
            for col in 0..cols {
                let x0 = f.width + col * f.width;
                let lit = |c: u8| {
                    (0..f.height).all(|gy| {
                        (0..f.width).all(|gx| f.pixel(c, gx, gy) == (px(x0 + gx, y0 + gy) == fg))
                    })
                };
                line.push((0x20..0x7f).find(|&c| lit(c)).map_or('?', char::from));
            }
            out.push(line.trim_end().to_string());
        }
        out
    }

    /// A VGA-sized screen (640x480, 38 columns, 15 rows of the 16x32 font).
    fn vga() -> Surface {
        Surface {
            width: 640,
            height: 480,
            stride: 640 * 3,
            ..vesa_24()
        }
    }

    /// Every line is shown whole, wrapped rather than cut: on a narrow screen the
    /// destination room's name was cut after its first letter (38 columns), and two long
    /// room names differing only at their end looked the same (62 columns).
    #[test]
    fn room_names_and_keys_are_never_cut_off() {
        let words = |lines: &[String]| {
            lines
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let p = prompt(b"report.pdf");
        let at38 = p.lines(38);
        assert!(at38.iter().all(|l| l.len() <= 38), "{at38:#?}");
        let text = words(&at38);
        for want in [
            "Room web asks to send a file to room work.",
            "Press Y to send it. Press N or Esc to refuse.",
            "Size: 104857600 bytes (100.0 MiB)",
        ] {
            assert!(text.contains(want), "{want:?} not in {at38:#?}");
        }
        let (from, to) = (
            "finance-records-2024-private-aaa",
            "finance-records-2024-private-zzz",
        );
        let p = Prompt {
            from,
            to,
            ..prompt(b"r.pdf")
        };
        let at62 = p.lines(62);
        assert!(at62.iter().all(|l| l.len() <= 62), "{at62:#?}");
        let want = format!("Room {from} asks to send a file to room {to}.");
        assert!(words(&at62).contains(&want), "{at62:#?}");
    }

    /// A name too long for the prompt keeps its end in view (where its extension is): the
    /// middle is cut, and the cut is said.
    #[test]
    fn a_long_name_shows_its_beginning_and_its_end() {
        let name = format!("invoice.pdf{}.desktop", "\u{4e00}".repeat(60));
        let lines = prompt(name.as_bytes()).lines(62);
        let text = lines.join("\n");
        assert!(text.contains("File:    \"invoice.pdf\\u{4e00}"), "{text}");
        assert!(text.contains("\\u{4e00}.desktop\""), "{text}");
        assert!(text.contains("characters not shown]"), "{text}");
        assert!(lines.iter().all(|l| l.len() <= 62), "{text}");
    }

    /// A name cannot show a line that passes for one of the prompt's: padded so that
    /// its wrap starts a line with `Size:    1 bytes (1 bytes)`, it showed that line
    /// merely indented, above the real size. Every line of the name after its first is
    /// marked.
    #[test]
    fn a_name_cannot_pass_a_line_of_its_own_for_one_of_the_prompts() {
        let fakes = [
            "Size:    1 bytes (1 bytes)",
            "SHA-256: 0000000000000000...",
            "Room work asks to send a file to room web.",
            "[1 characters not shown]",
        ];
        for cols in [38, 48, 62, 80, 120] {
            let width = cols - "File:    ".len();
            for fake in fakes {
                // The opening quote and the padding fill the first line exactly.
                let name = format!("{}{fake}", " ".repeat(width - 1));
                let lines = prompt(name.as_bytes()).lines(cols);
                let text = lines.join("\n");
                let name_at = lines.iter().position(|l| l.starts_with("File:")).unwrap();
                let size_at = lines.iter().position(|l| l.starts_with("Size:")).unwrap();
                assert!(size_at > name_at + 1, "{text}");
                for line in &lines[name_at + 1..size_at] {
                    assert!(line.starts_with(NAME_GUTTER), "{line:?} in\n{text}");
                }
                let head = fake.split_whitespace().next().unwrap();
                let seen = lines
                    .iter()
                    .filter(|l| l.trim_start().starts_with(head))
                    .count();
                // The prompt has one line of each fake's kind, but no cut for a short name.
                let real = usize::from(!fake.starts_with('['));
                assert_eq!(seen, real, "{head:?} passed for the prompt's in\n{text}");
            }
            // A long name, cut: only the prompt's own line says what is not shown.
            let name = format!(
                "{}[1 characters not shown]{}",
                " ".repeat(width - 1),
                "x".repeat(2000)
            );
            let lines = prompt(name.as_bytes()).lines(cols);
            let cuts: Vec<&String> = lines
                .iter()
                .filter(|l| l.trim_start().starts_with('['))
                .collect();
            assert_eq!(cuts.len(), 1, "{lines:#?}");
            assert!(
                cuts[0].contains("characters not shown]") && !cuts[0].contains('|'),
                "{lines:#?}"
            );
        }
    }

    /// What the screen shows (read back from the pixels) holds every part of the prompt,
    /// whatever the name: on a 640x480 screen the size, hash, keys and timeout of a
    /// request with a long name fell below the last row, and the destination was cut.
    #[test]
    fn the_screen_shows_the_whole_prompt_even_when_small() {
        let name = format!("invoice.pdf{}.desktop", "\u{4e00}".repeat(60));
        let p = prompt(name.as_bytes());
        for s in [vga(), vesa_24()] {
            let shown = screen_text(&p.draw(&s).unwrap(), &s);
            let all = shown.join("\n");
            let words = shown
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            for want in [
                "Room web asks to send a file to room work.",
                "Size: 104857600 bytes (100.0 MiB)",
                "SHA-256: abababababababab...",
                "Press Y to send it. Press N or Esc to refuse.",
                "No answer within 60 s refuses it.",
            ] {
                assert!(
                    words.contains(want),
                    "{}x{}: {want:?} not on screen:\n{all}",
                    s.width,
                    s.height
                );
            }
            assert!(
                all.contains(".desktop\""),
                "{}x{}: the name's end not on screen:\n{all}",
                s.width,
                s.height
            );
        }
        // A screen too small for all of it is not drawn on (the console has the prompt).
        let tiny = Surface {
            width: 24 * 16,
            height: 12 * 32,
            stride: 24 * 16 * 3,
            ..vga()
        };
        assert!(p.draw(&tiny).is_none());
        // The short prompt on the usual screen is drawn as its lines say.
        let s = vesa_24();
        let q = prompt(b"report.pdf");
        let shown = screen_text(&q.draw(&s).unwrap(), &s);
        let cols = s.width as usize / 16 - 2;
        for (i, line) in q.lines(cols).iter().enumerate() {
            assert_eq!(&shown[i], line.trim_end());
        }
    }

    fn vesa_24() -> Surface {
        Surface {
            width: 1024,
            height: 768,
            stride: 3072,
            bytes_per_pixel: 3,
            red: Channel {
                offset: 16,
                length: 8,
            },
            green: Channel {
                offset: 8,
                length: 8,
            },
            blue: Channel {
                offset: 0,
                length: 8,
            },
        }
    }

    #[test]
    fn the_frame_holds_the_text_in_the_font_and_colours() {
        let s = vesa_24();
        let p = prompt(b"report.pdf");
        let frame = p.draw(&s).unwrap();
        assert_eq!(frame.len(), 3072 * 768);
        let px = |x: usize, y: usize| {
            let at = y * 3072 + x * 3;
            (frame[at + 2], frame[at + 1], frame[at])
        };
        assert_eq!(px(1023, 767), BACKGROUND);
        assert_eq!(px(0, 0), TITLE_BAR);
        // Each glyph of the third line ("Room web asks ...") is drawn from the font.
        let f = font::builtin().unwrap();
        let line = &p.lines(62)[2];
        let y0 = f.height / 2 + 2 * f.height + f.height;
        for (i, c) in line.bytes().enumerate() {
            for gy in 0..f.height {
                for gx in 0..f.width {
                    let want = if f.pixel(c, gx, gy) { TEXT } else { BACKGROUND };
                    assert_eq!(
                        px(f.width + i * f.width + gx, y0 + gy),
                        want,
                        "{:?} at {gx},{gy}",
                        c as char
                    );
                }
            }
        }
    }

    #[test]
    fn fbdev_screeninfo_is_read_as_the_kernel_lays_it_out() {
        let mut var = [0u8; 160];
        let mut fix = [0u8; 80];
        for (at, v) in [
            (0, 1024u32),
            (4, 768),
            (8, 1024),
            (12, 768),
            (24, 24),
            (32, 16),
            (36, 8),
            (44, 8),
            (48, 8),
            (56, 0),
            (60, 8),
        ] {
            var[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        fix[48..52].copy_from_slice(&3072u32.to_le_bytes());
        assert_eq!(Surface::from_fbdev(&var, &fix), Some(vesa_24()));
        let mut panned = var;
        panned[20] = 1;
        assert_eq!(Surface::from_fbdev(&panned, &fix), None);
        let mut narrow = fix;
        narrow[48..52].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(Surface::from_fbdev(&var, &narrow), None);
    }

    #[test]
    fn other_pixel_formats_and_odd_screens() {
        let mut s = vesa_24();
        s.bytes_per_pixel = 4;
        s.stride = 4096;
        assert_eq!(s.pixel((0x12, 0x34, 0x56)), 0x0012_3456);
        assert_eq!(prompt(b"x").draw(&s).unwrap().len(), 4096 * 768);
        let rgb565 = Surface {
            bytes_per_pixel: 2,
            stride: 2048,
            red: Channel {
                offset: 11,
                length: 5,
            },
            green: Channel {
                offset: 5,
                length: 6,
            },
            blue: Channel {
                offset: 0,
                length: 5,
            },
            ..s
        };
        assert_eq!(rgb565.pixel((0xff, 0xff, 0xff)), 0xffff);
        assert!(prompt(b"x").draw(&rgb565).is_some());
        for bad in [
            Surface {
                bytes_per_pixel: 1,
                ..s
            },
            Surface { stride: 100, ..s },
            Surface { width: 100, ..s },
            Surface { height: 100, ..s },
            Surface {
                red: Channel {
                    offset: 40,
                    length: 8,
                },
                ..s
            },
        ] {
            let _ = prompt(b"x").draw(&bad);
        }
        assert!(prompt(b"x")
            .draw(&Surface {
                bytes_per_pixel: 1,
                ..s
            })
            .is_none());
        assert!(prompt(b"x").draw(&Surface { stride: 100, ..s }).is_none());
    }
}
