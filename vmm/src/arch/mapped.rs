// SPDX-License-Identifier: GPL-3.0-or-later
//! A cursor over a mapped file ([`crate::sys::FileMap`]) that the kernel loaders read
//! like a file: small reads for headers (`Read`, `Seek`) and segment copies straight into
//! guest memory (`ReadVolatile`), each a plain memory copy.

use std::io::{self, Read, Seek, SeekFrom};

use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice};

/// Reads `src` from a position, like a `File` opened on the same bytes.
#[derive(Debug)]
pub struct MappedReader<'a> {
    src: VolatileSlice<'a>,
    pos: u64,
}

impl<'a> MappedReader<'a> {
    /// A reader at the start of `src`.
    pub fn new(src: VolatileSlice<'a>) -> Self {
        Self { src, pos: 0 }
    }

    /// What is left from the position on; `None` past the end (nothing to read).
    fn rest(&self) -> Option<VolatileSlice<'a>> {
        usize::try_from(self.pos)
            .ok()
            .and_then(|p| self.src.offset(p).ok())
    }

    fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n as u64);
    }
}

impl Read for MappedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(rest) = self.rest() else {
            return Ok(0);
        };
        let n = rest.copy_to(buf);
        self.advance(n);
        Ok(n)
    }
}

impl Seek for MappedReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(p) => (p, 0),
            SeekFrom::End(d) => (self.src.len() as u64, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        // Like a file: past the end is allowed (reads there return nothing), before the
        // start is an error.
        self.pos = base.checked_add_signed(delta).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start or past u64",
            )
        })?;
        Ok(self.pos)
    }
}

impl ReadVolatile for MappedReader<'_> {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let Some(rest) = self.rest() else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        rest.subslice(0, n)?
            .copy_to_volatile_slice(buf.subslice(0, n)?);
        self.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    fn slice(v: &mut [u8]) -> VolatileSlice<'_> {
        VolatileSlice::from(v)
    }

    #[test]
    fn reads_and_seeks_like_a_file() {
        let mut bytes: Vec<u8> = (0u8..=99).collect();
        let mut r = MappedReader::new(slice(&mut bytes));
        let mut b = [0u8; 4];
        assert_eq!(r.read(&mut b).unwrap(), 4);
        assert_eq!(b, [0, 1, 2, 3]);
        assert_eq!(r.seek(SeekFrom::Current(6)).unwrap(), 10);
        r.read_exact(&mut b).unwrap();
        assert_eq!(b, [10, 11, 12, 13]);
        assert_eq!(r.seek(SeekFrom::End(-2)).unwrap(), 98);
        assert_eq!(r.read(&mut b).unwrap(), 2);
        assert_eq!(&b[..2], &[98, 99]);
        // Past the end: allowed, and reads give nothing, as with a file.
        assert_eq!(r.seek(SeekFrom::Start(1000)).unwrap(), 1000);
        assert_eq!(r.read(&mut b).unwrap(), 0);
        assert!(r.read_exact(&mut b).is_err());
        // Before the start: refused, and the position stays.
        assert!(r.seek(SeekFrom::Current(-2000)).is_err());
        assert_eq!(r.stream_position().unwrap(), 1000);
    }

    #[test]
    fn copies_into_guest_memory_and_refuses_a_short_source() {
        let mut bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let want = bytes.clone();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x4000)]).unwrap();
        let mut r = MappedReader::new(slice(&mut bytes));
        r.seek(SeekFrom::Start(100)).unwrap();
        mem.read_exact_volatile_from(GuestAddress(0x1000), &mut r, 4900)
            .unwrap();
        let mut got = vec![0u8; 4900];
        mem.read_slice(&mut got, GuestAddress(0x1000)).unwrap();
        assert_eq!(got, want[100..]);
        // Nothing left: an exact read of one more byte fails instead of copying less.
        assert!(mem
            .read_exact_volatile_from(GuestAddress(0), &mut r, 1)
            .is_err());
    }
}
