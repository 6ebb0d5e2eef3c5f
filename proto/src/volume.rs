// SPDX-License-Identifier: GPL-3.0-or-later
//! A room's vault volume as both of its users judge it before mounting: anchor-jail (a
//! namespace room's volume, on the host) and anchor-agent (a microVM room's `/dev/vdb`,
//! in the guest). anchor-vault makes every volume as a sparse file, so a blank head means
//! "never used: format it"; an ext2/3/4 superblock means "mount it"; anything else is
//! refused, never formatted over.

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
}
