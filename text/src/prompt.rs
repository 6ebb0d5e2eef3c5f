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

    /// The prompt as lines of at most `cols` characters (printable ASCII only).
    pub fn lines(&self, cols: usize) -> Vec<String> {
        let cols = cols.max(20);
        let mut sha = [0u8; 16];
        for (pair, b) in sha.chunks_exact_mut(2).zip(self.sha256.iter()) {
            let hex = format!("{b:02x}");
            pair.copy_from_slice(hex.as_bytes());
        }
        let mut out = vec![
            Prompt::TITLE.to_string(),
            String::new(),
            format!(
                "Room {} asks to send a file to room {}.",
                self.from, self.to
            ),
            String::new(),
        ];
        let name = Escaped(self.name).to_string();
        let label = "File:    ";
        let pieces: Vec<&str> = wrap(&name, cols - label.len()).collect();
        for (i, piece) in pieces.iter().take(NAME_LINES).enumerate() {
            let lead = if i == 0 { label } else { "         " };
            if i + 1 == NAME_LINES && pieces.len() > NAME_LINES {
                let shown: usize = pieces.iter().take(NAME_LINES - 1).map(|p| p.len()).sum();
                out.push(format!(
                    "{lead}[{} more characters not shown]",
                    name.len() - shown
                ));
            } else {
                out.push(format!("{lead}{piece}"));
            }
        }
        out.push(format!(
            "Size:    {} bytes ({})",
            self.size,
            human(self.size)
        ));
        out.push(format!(
            "SHA-256: {}...",
            core::str::from_utf8(&sha).unwrap_or("?")
        ));
        out.push(String::new());
        out.push("Press Y to send it. Press N or Esc to refuse.".into());
        out.push(format!("No answer within {} s refuses it.", self.timeout_s));
        for line in &mut out {
            if line.len() > cols {
                line.truncate(cols);
            }
        }
        out
    }

    /// The prompt drawn for `surface`: a whole frame (`stride * height` bytes) to write
    /// at offset 0 of the framebuffer; `None` for a pixel format it cannot draw (then
    /// the console shows the prompt alone).
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
        frame.rect(0, 0, width, font.height * 2, TITLE_BAR);
        for (row, line) in self
            .lines(cols)
            .iter()
            .enumerate()
            .take(rows.saturating_sub(2))
        {
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
            .filter(|l| l.starts_with("File:") || l.starts_with("         "))
            .collect();
        assert_eq!(shown.len(), NAME_LINES);
        assert_eq!(
            shown[NAME_LINES - 1].trim(),
            "[209 more characters not shown]"
        );
        let short = prompt(b"x").lines(40);
        assert_eq!(short.iter().filter(|l| l.starts_with("File:")).count(), 1);
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
