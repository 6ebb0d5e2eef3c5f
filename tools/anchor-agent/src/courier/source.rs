// SPDX-License-Identifier: GPL-3.0-or-later
//! The source's side: what may be sent (a regular file, no set-user/group-ID bit: the
//! descriptor the client passed is checked, never its path again), its SHA-256 for the
//! request, and serving it once to the courier that presents the request's token.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};

use anchor_proto::courier::{Data, Digest};
use anchor_proto::umbilical::write_frame;
use sha2::{Digest as _, Sha256};

/// Bytes read per step.
const CHUNK: usize = 256 * 1024;

/// Why a file cannot be sent (or stopped being sendable).
#[derive(Debug)]
pub enum SourceError {
    /// Not a regular file: what it is.
    NotRegular(&'static str),
    /// Set-user-ID or set-group-ID.
    Special,
    /// The file changed size while it was read.
    Changed {
        size: u64,
        got: u64,
    },
    Io(&'static str, io::Error),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::NotRegular(what) => write!(
                f,
                "it is {what}: the courier carries regular files only"
            ),
            SourceError::Special => f.write_str(
                "it has the set-user-ID or set-group-ID bit: the courier carries no special permissions (copy it without them)",
            ),
            SourceError::Changed { size, got } => write!(
                f,
                "the file changed while it was read (it had {size} bytes, {got} could be read)"
            ),
            SourceError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for SourceError {}

/// The size of `file` if the courier may carry it.
pub fn check(file: &File) -> Result<u64, SourceError> {
    let meta = file
        .metadata()
        .map_err(|e| SourceError::Io("reading the file's type", e))?;
    let t = meta.file_type();
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        ""
    };
    if !what.is_empty() || !t.is_file() {
        return Err(SourceError::NotRegular(if what.is_empty() {
            "not a regular file"
        } else {
            what
        }));
    }
    if meta.mode() & 0o6000 != 0 {
        return Err(SourceError::Special);
    }
    Ok(meta.len())
}

/// What [`read_all`] hands each chunk to (with the count so far).
type Each<'a> = &'a mut dyn FnMut(&[u8], u64) -> Result<(), SourceError>;

/// Reads exactly `size` bytes of `file` from offset 0 in chunks, handing each to `each`.
fn read_all(file: &File, size: u64, each: Each<'_>) -> Result<(), SourceError> {
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    while done < size {
        let want = usize::try_from(size - done).unwrap_or(CHUNK).min(CHUNK);
        let room = buf.get_mut(..want).unwrap_or_default();
        let n = match file.read_at(room, done) {
            Ok(0) => return Err(SourceError::Changed { size, got: done }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SourceError::Io("reading the file", e)),
        };
        done += n as u64;
        each(buf.get(..n).unwrap_or_default(), done)?;
    }
    Ok(())
}

/// The SHA-256 of the first `size` bytes of `file`; `progress` hears the bytes done.
pub fn hash(file: &File, size: u64, progress: &mut dyn FnMut(u64)) -> Result<Digest, SourceError> {
    let mut h = Sha256::new();
    read_all(file, size, &mut |chunk, done| {
        h.update(chunk);
        progress(done);
        Ok(())
    })?;
    Ok(h.finalize().into())
}

/// Answers a courier's fetch: the offer, then exactly `size` bytes of `file`.
pub fn serve<W: Write>(
    out: &mut W,
    file: &File,
    size: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), SourceError> {
    write_frame(out, Data::Offer, &size.to_le_bytes())
        .map_err(|e| SourceError::Io("sending the offer", e))?;
    read_all(file, size, &mut |chunk, done| {
        out.write_all(chunk)
            .map_err(|e| SourceError::Io("sending the file", e))?;
        progress(done);
        Ok(())
    })?;
    out.flush()
        .map_err(|e| SourceError::Io("sending the file", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_regular_files_may_be_sent() {
        let dir = std::env::temp_dir().join(format!("courier-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("plain");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(check(&File::open(&f).unwrap()).unwrap(), 5);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4755)).unwrap();
        assert!(matches!(
            check(&File::open(&f).unwrap()),
            Err(SourceError::Special)
        ));
        assert!(matches!(
            check(&File::open(&dir).unwrap()),
            Err(SourceError::NotRegular("a directory"))
        ));
        assert!(matches!(
            check(&File::open("/dev/null").unwrap()),
            Err(SourceError::NotRegular("a device"))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hash_and_serve_read_exactly_size_bytes() {
        let dir = std::env::temp_dir().join(format!("courier-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("data");
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&f, &data).unwrap();
        let file = File::open(&f).unwrap();
        let mut last = 0;
        let h = hash(&file, data.len() as u64, &mut |d| last = d).unwrap();
        assert_eq!(last, data.len() as u64);
        assert_eq!(h, <[u8; 32]>::from(Sha256::digest(&data)));
        let mut out = Vec::new();
        serve(&mut out, &file, data.len() as u64, &mut |_| {}).unwrap();
        assert_eq!(&out[..4], &[0x42, 0, 8, 0]);
        assert_eq!(&out[12..], &data[..]);
        assert!(matches!(
            hash(&file, data.len() as u64 + 1, &mut |_| {}),
            Err(SourceError::Changed { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
