// SPDX-License-Identifier: GPL-3.0-or-later
//! The Anchor OS audit log (docs/AUDIT-LOG-FORMAT.md): one text line per record, fields
//! a room supplied escaped so no record can forge another, each record chained to the
//! previous one by SHA-256, and verification that names the first bad record and why.
//!
//! - [`escape`]: the value escaping and the token rules.
//! - [`record`]: encoding a record into a caller's fixed buffer (no allocation) and
//!   parsing a line back.
//! - [`chain`]: the hash chain and the append path (one `write` per record).
//! - [`verify`]: walking a whole log, with or without the TPM anchor (count + head).

pub mod chain;
pub mod escape;
pub mod record;
pub mod verify;

pub use chain::{chain_after, next_line, next_line_now, room_line, Appended, Chain, ChainError};
pub use record::{Entry, Record, RecordError, MAX_FIELDS, MAX_RECORD};
pub use verify::{
    locate_anchored, match_anchor, verify, verify_after, verify_anchored, verify_for_append,
    Anchor, AnchorProblem, Bad, Located, Problem, Verified,
};

/// The audit log's path on the anchor host before the vault is open (tmpfs): bay0 and
/// anchor-vault write records there, anchorctl reads it. At unlock anchor-vault carries
/// its records into the vault and replaces it with a symlink to the persistent log.
pub const PRE_UNLOCK_LOG: &str = "/run/anchor/audit.log";

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The `prev` of the first record, and the value a fresh TPM extend index starts from.
pub const GENESIS: Hash = [0u8; 32];

/// Lower-case hex of `hash` into `out` (64 bytes); returns it as text.
pub fn hex<'a>(hash: &Hash, out: &'a mut [u8; 64]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(hash.iter()) {
        if let [hi, lo] = pair {
            *hi = DIGITS.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
            *lo = DIGITS
                .get(usize::from(byte & 0x0f))
                .copied()
                .unwrap_or(b'0');
        }
    }
    core::str::from_utf8(out).unwrap_or("")
}

/// Parse 64 lower-case hex digits.
pub fn parse_hex(text: &[u8]) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = GENESIS;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let (hi, lo) = match pair {
            [hi, lo] => (digit(*hi)?, digit(*lo)?),
            _ => return None,
        };
        *byte = (hi << 4) | lo;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let mut h = GENESIS;
        for (i, b) in h.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37);
        }
        let mut buf = [0u8; 64];
        let text = hex(&h, &mut buf).to_owned();
        assert_eq!(text.len(), 64);
        assert_eq!(parse_hex(text.as_bytes()), Some(h));
        assert_eq!(parse_hex(text.to_uppercase().as_bytes()), None);
        assert_eq!(parse_hex(&text.as_bytes()[1..]), None);
    }
}
