// SPDX-License-Identifier: GPL-3.0-or-later
//! The built-in bitmap font of the trusted prompt: Spleen 16x32, a PSF2 file included in
//! the binary (fonts/README.md: origin, checksum, BSD-2-Clause licence). Only printable
//! ASCII is drawn from it; callers escape everything else first.

/// The font file, unmodified.
static PSF: &[u8] = include_bytes!("../fonts/spleen-16x32.psfu");

const PSF2_MAGIC: u32 = 0x864a_b572;

/// A parsed PSF2 font (the header checked against the data).
#[derive(Debug, Clone, Copy)]
pub struct Font {
    data: &'static [u8],
    header: usize,
    glyphs: usize,
    glyph_bytes: usize,
    row_bytes: usize,
    /// Glyph width in pixels.
    pub width: usize,
    /// Glyph height in pixels.
    pub height: usize,
}

fn word(data: &[u8], i: usize) -> Option<usize> {
    let b = data.get(i * 4..i * 4 + 4)?;
    let w = u32::from_le_bytes(<[u8; 4]>::try_from(b).ok()?);
    usize::try_from(w).ok()
}

impl Font {
    /// Parses a PSF2 file; `None` unless its header is consistent with its size.
    pub fn parse(data: &'static [u8]) -> Option<Font> {
        if u32::try_from(word(data, 0)?).ok()? != PSF2_MAGIC {
            return None;
        }
        let (header, glyphs, glyph_bytes) = (word(data, 2)?, word(data, 4)?, word(data, 5)?);
        let (height, width) = (word(data, 6)?, word(data, 7)?);
        let row_bytes = width.div_ceil(8);
        let end = glyphs.checked_mul(glyph_bytes)?.checked_add(header)?;
        let sane = width > 0 && height > 0 && row_bytes.checked_mul(height)? == glyph_bytes;
        (sane && end <= data.len() && glyphs > 0x7e).then_some(Font {
            data,
            header,
            glyphs,
            glyph_bytes,
            row_bytes,
            width,
            height,
        })
    }

    /// Whether pixel (`x`, `y`) of the glyph for byte `c` is set. Anything but printable
    /// ASCII is drawn as `?` (callers never pass it: they escape first).
    pub fn pixel(&self, c: u8, x: usize, y: usize) -> bool {
        let c = if (0x20..0x7f).contains(&c) { c } else { b'?' };
        let glyph = usize::from(c).min(self.glyphs - 1);
        if x >= self.width || y >= self.height {
            return false;
        }
        let at = self.header + glyph * self.glyph_bytes + y * self.row_bytes + x / 8;
        self.data
            .get(at)
            .is_some_and(|b| b & (0x80 >> (x % 8)) != 0)
    }
}

/// The prompt's font.
pub fn builtin() -> Option<Font> {
    Font::parse(PSF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_font_parses_and_maps_ascii_to_itself() {
        let f = builtin().unwrap();
        assert_eq!((f.width, f.height, f.glyphs), (16, 32, 512));
        // The Unicode table after the glyphs: one entry per glyph, 0xff-terminated; the
        // first code point of entry N is what glyph N draws.
        let mut table = &PSF[f.header + f.glyphs * f.glyph_bytes..];
        for glyph in 0..0x7f_u32 {
            let end = table.iter().position(|&b| b == 0xff).unwrap();
            let entry =
                std::str::from_utf8(table[..end].split(|&b| b == 0xfe).next().unwrap()).unwrap();
            if glyph >= 0x20 {
                assert_eq!(entry.chars().next().map(u32::from), Some(glyph));
            }
            table = &table[end + 1..];
        }
        // A space is blank, a letter is not, and `?` stands in for non-ASCII.
        let lit = |c| {
            (0..16)
                .flat_map(|x| (0..32).map(move |y| (x, y)))
                .filter(|&(x, y)| f.pixel(c, x, y))
                .count()
        };
        assert_eq!(lit(b' '), 0);
        assert!(lit(b'A') > 20);
        assert_eq!(lit(0x1b), lit(b'?'));
        assert!(!f.pixel(b'A', 16, 0) && !f.pixel(b'A', 0, 32));
    }

    #[test]
    fn a_broken_font_is_refused() {
        static SHORT: [u8; 40] = [0; 40];
        assert!(Font::parse(&SHORT).is_none());
        assert!(Font::parse(&PSF[..1000]).is_none());
    }
}
