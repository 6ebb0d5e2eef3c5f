// SPDX-License-Identifier: GPL-3.0-or-later
//! A room's vault volume as both of its users judge it before mounting: anchor-jail (a
//! namespace room's volume, on the host) and anchor-agent (a microVM room's `/dev/vdb`,
//! in the guest). anchor-vault makes every volume as a sparse file, so a blank head means
//! "never used: format it"; an ext2/3/4 superblock means "mount it"; anything else is
//! refused, never formatted over -- but for a format cut short (the room closed, or the
//! power lost, while mke2fs ran: it writes the superblock last, so the head is then
//! neither blank nor ext). A format first writes [`MARK`] in the volume's last block
//! (which the filesystem leaves out), then runs mke2fs, then clears the mark: a head that
//! is not ext with the mark at the end is [`Contents::Unfinished`], formatted again.

/// Bytes of a volume's head that are judged.
pub const HEAD: usize = 64 << 10;

/// What the first [`HEAD`] bytes of a volume say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// All zeros: never used.
    Blank,
    /// An ext2/3/4 superblock (magic 0xEF53 at byte 1080).
    Ext,
    /// Something else.
    Other,
    /// Not ext, with [`MARK`] in the last block: a format of ours was cut short.
    Unfinished,
}

/// The block at a volume's end that holds [`MARK`] while a format is under way.
pub const MARK_BLOCK: u64 = 4096;
/// What that block starts with meanwhile.
pub const MARK: &[u8; 32] = b"anchor-volume: format under way\n";

/// Where the mark goes on a volume of `len` bytes (its last whole [`MARK_BLOCK`]); the
/// filesystem gets the bytes before it. `None` for a volume too small to format.
pub fn mark_at(len: u64) -> Option<u64> {
    let at = (len / MARK_BLOCK).checked_sub(1)?.checked_mul(MARK_BLOCK)?;
    (at >= HEAD as u64).then_some(at)
}

/// The size to give mke2fs for a volume of `len` bytes, in KiB (what both e2fsprogs'
/// and busybox's mke2fs take as a plain number): everything before the mark.
pub fn fs_kib(len: u64) -> Option<u64> {
    mark_at(len).map(|at| at / 1024)
}

/// Whether `tail` (read at [`mark_at`]) holds the mark.
pub fn marked(tail: &[u8]) -> bool {
    tail.starts_with(MARK)
}

/// The size of `volume` (a file or a block device, whose metadata says 0).
pub fn size(volume: &std::fs::File) -> std::io::Result<u64> {
    use std::io::Seek as _;
    let mut f = volume;
    let len = f.seek(std::io::SeekFrom::End(0))?;
    f.seek(std::io::SeekFrom::Start(0))?;
    Ok(len)
}

/// Judge the volume open as `volume`: its head and its mark block.
pub fn judge_volume(volume: &std::fs::File) -> std::io::Result<Contents> {
    use std::os::unix::fs::FileExt as _;
    let len = size(volume)?;
    let mut head = vec![0u8; usize::try_from(len).unwrap_or(HEAD).min(HEAD)];
    volume.read_exact_at(&mut head, 0)?;
    let mut tail = [0u8; MARK.len()];
    if let Some(at) = mark_at(len) {
        volume.read_exact_at(&mut tail, at)?;
    }
    Ok(judge(&head, &tail))
}

/// Whether the volume open as `volume` holds the mark.
pub fn is_marked(volume: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt as _;
    let Some(at) = mark_at(size(volume)?) else {
        return Ok(false);
    };
    let mut tail = [0u8; MARK.len()];
    volume.read_exact_at(&mut tail, at)?;
    Ok(marked(&tail))
}

/// Writes the mark (`on`) or clears it, and makes that durable (`volume` open for
/// writing). A volume too small to format is `InvalidInput`.
pub fn set_mark(volume: &std::fs::File, on: bool) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let at = mark_at(size(volume)?).ok_or(std::io::ErrorKind::InvalidInput)?;
    volume.write_all_at(if on { MARK } else { &[0u8; MARK.len()] }, at)?;
    volume.sync_all()
}

/// Where an ext2/3/4 superblock starts on its volume, and what of it is read.
const SUPERBLOCK: usize = 1024;
const SUPERBLOCK_READ: usize = 0x154;

/// An ext filesystem that is smaller than its volume: the quota grew (anchor-vault grows
/// the file, never the filesystem inside it, which it never parses). What the room's side
/// (the agent in a microVM, the jail for a namespace room) grows it to after mounting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Growth {
    /// The filesystem's block size, in bytes.
    pub block_size: u64,
    /// Its blocks now.
    pub from: u64,
    /// Its blocks once grown: everything before the mark, as a format would give it.
    pub to: u64,
}

impl Growth {
    /// The filesystem's size now, in bytes.
    pub fn from_bytes(&self) -> u64 {
        self.from.saturating_mul(self.block_size)
    }
    /// Its size once grown, in bytes.
    pub fn to_bytes(&self) -> u64 {
        self.to.saturating_mul(self.block_size)
    }

    /// The log line for `grown`, what growing it online came to: grown, or kept at the
    /// old size (the room starts either way), with the reason.
    pub fn said<E: core::fmt::Display>(&self, grown: Result<(), E>) -> String {
        let mib = |b: u64| (b + (1 << 19)) >> 20;
        let (from, to) = (mib(self.from_bytes()), mib(self.to_bytes()));
        match grown {
            Ok(()) => format!("file system grown from {from} MiB to {to} MiB (its quota grew)"),
            Err(e) => {
                format!("file system kept at {from} MiB, not grown to its quota of {to} MiB: {e}")
            }
        }
    }
}

/// The block count and block size an ext2/3/4 superblock at `head[1024..]` states;
/// `None` when `head` holds none (or a block size no ext makes).
pub fn ext_size(head: &[u8]) -> Option<(u64, u64)> {
    let sb = head.get(SUPERBLOCK..SUPERBLOCK + SUPERBLOCK_READ)?;
    let u32_at = |at: usize| -> Option<u64> {
        let b: [u8; 4] = sb.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(u32::from_le_bytes(b)))
    };
    if sb.get(0x38..0x3a) != Some(&[0x53, 0xef][..]) {
        return None;
    }
    // s_log_block_size: 1 KiB << it; ext makes 1 KiB..=64 KiB.
    let log = u32_at(0x18)?;
    let block_size = (log <= 6).then(|| 1024u64 << log)?;
    let lo = u32_at(0x04)?;
    // INCOMPAT_64BIT: s_blocks_count_hi counts too.
    let hi = if u32_at(0x60)? & 0x80 != 0 {
        u32_at(0x150)?
    } else {
        0
    };
    Some((hi << 32 | lo, block_size))
}

/// How the ext filesystem whose first bytes are `head`, on a volume of `len` bytes, is to
/// grow: to everything before the mark block (what [`fs_kib`] gives a format); `None` when
/// it is that large already (or larger), or `head` is not ext.
pub fn growth(head: &[u8], len: u64) -> Option<Growth> {
    let (from, block_size) = ext_size(head)?;
    let to = mark_at(len)? / block_size;
    (to > from).then_some(Growth {
        block_size,
        from,
        to,
    })
}

/// [`growth`] of the volume open as `volume`.
pub fn growth_of(volume: &std::fs::File) -> std::io::Result<Option<Growth>> {
    use std::os::unix::fs::FileExt as _;
    let len = size(volume)?;
    let mut head = [0u8; SUPERBLOCK + SUPERBLOCK_READ];
    if len < head.len() as u64 {
        return Ok(None);
    }
    volume.read_exact_at(&mut head, 0)?;
    Ok(growth(&head, len))
}

/// Judge a volume by its first bytes and the block at [`mark_at`].
pub fn judge(head: &[u8], tail: &[u8]) -> Contents {
    match contents(head) {
        Contents::Other if marked(tail) => Contents::Unfinished,
        c => c,
    }
}

/// Judge a volume by its first bytes.
pub fn contents(head: &[u8]) -> Contents {
    if head.get(1080..1082) == Some(&[0x53, 0xef][..]) {
        Contents::Ext
    } else if head.iter().all(|&b| b == 0) {
        Contents::Blank
    } else {
        Contents::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_judged_by_their_first_bytes() {
        let mut head = vec![0u8; HEAD];
        assert_eq!(contents(&head), Contents::Blank);
        head[1080] = 0x53;
        head[1081] = 0xef;
        assert_eq!(contents(&head), Contents::Ext);
        head[1081] = 0;
        assert_eq!(contents(&head), Contents::Other);
        assert_eq!(contents(&[]), Contents::Blank);
    }

    /// The superblock's block count is read as ext keeps it (the high half only with
    /// 64bit), and a filesystem smaller than what its volume now leaves before the mark
    /// is to grow to exactly that; one that fills it, or a head that is not ext, is not.
    #[test]
    fn a_filesystem_smaller_than_its_volume_is_to_grow() {
        let mut head = vec![0u8; HEAD];
        let put = |h: &mut Vec<u8>, at: usize, v: u32| {
            h[1024 + at..1024 + at + 4].copy_from_slice(&v.to_le_bytes())
        };
        assert_eq!(ext_size(&head), None);
        head[1080] = 0x53;
        head[1081] = 0xef;
        put(&mut head, 0x04, 8188); // 1 KiB blocks: an 8 MiB volume's fs_kib
        assert_eq!(ext_size(&head), Some((8188, 1024)));
        let g = growth(&head, 16 << 20).unwrap();
        assert_eq!((g.from, g.to, g.block_size), (8188, 16380, 1024));
        assert_eq!(g.to * 1024, fs_kib(16 << 20).unwrap() * 1024);
        assert_eq!(g.to_bytes(), (16 << 20) - 4096);
        assert_eq!(growth(&head, 8 << 20), None, "fills its volume already");
        assert_eq!(growth(&head, 4 << 20), None, "never shrunk");
        put(&mut head, 0x18, 2); // 4 KiB blocks
        put(&mut head, 0x150, 1); // a high half, counted only with 64bit
        assert_eq!(ext_size(&head), Some((8188, 4096)));
        put(&mut head, 0x60, 0x80);
        assert_eq!(ext_size(&head), Some(((1 << 32) + 8188, 4096)));
        put(&mut head, 0x18, 40); // no block size ext makes
        assert_eq!(ext_size(&head), None);
        assert_eq!(ext_size(&head[..1100]), None, "too short to hold it");
    }

    #[test]
    fn a_format_cut_short_is_told_apart_by_the_mark() {
        let mut head = vec![0u8; HEAD];
        head[8192] = 1; // what mke2fs writes before its superblock
        assert_eq!(judge(&head, &[0u8; 64]), Contents::Other);
        assert_eq!(judge(&head, MARK), Contents::Unfinished);
        head[1080] = 0x53;
        head[1081] = 0xef;
        assert_eq!(judge(&head, MARK), Contents::Ext);
        assert_eq!(judge(&[0u8; HEAD], MARK), Contents::Blank);
        assert_eq!(mark_at(64 << 20), Some((64 << 20) - 4096));
        assert_eq!(mark_at((64 << 20) + 100), Some((64 << 20) - 4096));
        assert_eq!(fs_kib(64 << 20), Some(65532));
        assert_eq!(mark_at(HEAD as u64), None);
        assert_eq!(mark_at(0), None);
    }
}
