// SPDX-License-Identifier: GPL-3.0-or-later
//! The stream framing of QEMU's `-netdev stream`, which is also what passt speaks on its
//! Unix socket (or the socket handed to it with `--fd`): every Ethernet frame is preceded
//! by its length as a 4-byte big-endian integer. Pure (no I/O).

/// Bytes of the length prefix on the wire.
pub const LEN_PREFIX: usize = 4;
/// Largest Ethernet frame accepted from either side: 65538, anchor-vmm's bound for one
/// frame as a virtio chain carries it (65550 bytes) minus its 12-byte virtio-net header,
/// so a frame any side passes on fits the other. A length prefix above this means the
/// stream is out of step: the connection is closed.
pub const MAX_FRAME: usize = 65538;
/// Smallest frame passed on (an Ethernet header); shorter ones are dropped.
pub const MIN_FRAME: usize = 14;

/// The other side broke the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A length prefix above [`MAX_FRAME`].
    TooLong(u32),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong(n) => write!(f, "frame length {n} is above {MAX_FRAME}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// What the head of a byte stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Not a whole frame yet (read more).
    Incomplete,
    /// A whole frame of `len` bytes follows the prefix.
    Frame {
        /// Frame length (without the prefix).
        len: usize,
    },
}

/// Look at the head of `data` (the bytes received from the backend, in order).
pub fn peek(data: &[u8]) -> Result<Peek, FrameError> {
    let Some(prefix) = data.get(..LEN_PREFIX) else {
        return Ok(Peek::Incomplete);
    };
    let mut be = [0u8; LEN_PREFIX];
    be.copy_from_slice(prefix);
    let n = u32::from_be_bytes(be);
    let len = usize::try_from(n).map_err(|_| FrameError::TooLong(n))?;
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(n));
    }
    if data.len().saturating_sub(LEN_PREFIX) < len {
        return Ok(Peek::Incomplete);
    }
    Ok(Peek::Frame { len })
}

/// The length prefix of a `len`-byte frame (`len` <= [`MAX_FRAME`]).
pub fn prefix(len: usize) -> [u8; LEN_PREFIX] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn peek_reads_big_endian_prefixes() {
        assert_eq!(peek(&[]), Ok(Peek::Incomplete));
        assert_eq!(peek(&[0, 0, 0]), Ok(Peek::Incomplete));
        assert_eq!(peek(&[0, 0, 0, 2, 9]), Ok(Peek::Incomplete));
        assert_eq!(peek(&[0, 0, 0, 2, 9, 9, 7]), Ok(Peek::Frame { len: 2 }));
        assert_eq!(peek(&[0, 0, 0, 0]), Ok(Peek::Frame { len: 0 }));
        let max = prefix(MAX_FRAME);
        assert_eq!(peek(&max), Ok(Peek::Incomplete));
        let over = u32::try_from(MAX_FRAME + 1).unwrap();
        assert_eq!(
            peek(&over.to_be_bytes()),
            Err(FrameError::TooLong(over)),
            "a prefix above the bound is an error even before its bytes arrive"
        );
        assert_eq!(peek(&[0xff; 4]), Err(FrameError::TooLong(u32::MAX)));
    }

    proptest! {
        /// Whatever the other side sends, peek either asks for more, names a whole frame
        /// within the data, or reports a bound violation; it never reads out of range.
        #[test]
        fn peek_never_overreads(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            match peek(&data) {
                Ok(Peek::Frame { len }) => prop_assert!(LEN_PREFIX + len <= data.len()),
                Ok(Peek::Incomplete) => {}
                Err(FrameError::TooLong(n)) => prop_assert!(n as usize > MAX_FRAME),
            }
        }
    }
}
