// SPDX-License-Identifier: GPL-3.0-or-later
//! The backend's wire format and the two bounded byte queues between it and the guest.
//!
//! The backend speaks QEMU's `-netdev stream` framing, which is also what passt speaks on
//! its Unix socket (or the socket handed to it with `--fd`): every Ethernet frame is
//! preceded by its length as a 4-byte big-endian integer. There is no virtio-net header on
//! the wire; the device adds it towards the guest and strips it from the guest's frames.
//!
//! The framing itself is `anchor_net::stream` (shared with anchor-jail's relay for namespace
//! rooms), re-exported here. Everything here is pure (no I/O): the device feeds the
//! queues from and to its socket.

pub use anchor_net::stream::{peek, prefix, FrameError, Peek, LEN_PREFIX, MAX_FRAME, MIN_FRAME};

/// `struct virtio_net_hdr_v1` (VIRTIO_F_VERSION_1: `num_buffers` is always present).
pub const VNET_HDR_LEN: usize = 12;
/// Most bytes of one frame as a virtio chain carries it, virtio-net header included.
pub const MAX_CHAIN_BYTES: usize = 65550;
// The stream's bound is the chain's minus the header: a frame either side passes on fits.
const _: () = assert!(MAX_CHAIN_BYTES - VNET_HDR_LEN == MAX_FRAME);

/// A fixed-capacity FIFO of bytes, allocated once. Data is kept contiguous (the unread part
/// is moved to the front when the tail runs out of room), so a frame can always be read or
/// written as one slice when the capacity is at least one maximal frame plus its prefix.
#[derive(Debug)]
pub struct ByteQueue {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ByteQueue {
    /// An empty queue of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            buf: vec![0u8; cap].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The unread bytes.
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    /// Number of unread bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Drop `n` bytes from the front (all of them if fewer are queued).
    pub fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn compact(&mut self) {
        if self.start > 0 && self.start <= self.end && self.end <= self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// All free room after the data (compacted first when the data does not start at the
    /// front). Write into it, then [`ByteQueue::commit`] what was written.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        self.compact();
        self.buf.get_mut(self.end..).unwrap_or(&mut [])
    }

    /// Exactly `n` bytes of free room after the data, or `None` when the queue cannot take
    /// that much now.
    pub fn reserve(&mut self, n: usize) -> Option<&mut [u8]> {
        if self.buf.len().saturating_sub(self.len()) < n {
            return None;
        }
        if self.buf.len().saturating_sub(self.end) < n {
            self.compact();
        }
        let end = self.end.checked_add(n)?;
        self.buf.get_mut(self.end..end)
    }

    /// Mark `n` bytes after the data as written (clamped to the capacity).
    pub fn commit(&mut self, n: usize) {
        self.end = self.end.saturating_add(n).min(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn queue_keeps_data_contiguous_and_bounded() {
        let mut q = ByteQueue::new(10);
        q.reserve(6).unwrap().copy_from_slice(b"abcdef");
        q.commit(6);
        assert!(q.reserve(5).is_none(), "only 4 bytes free");
        q.consume(4);
        // 8 free, but only 4 at the tail: reserving 7 compacts.
        q.reserve(7).unwrap().copy_from_slice(b"ghijklm");
        q.commit(7);
        assert_eq!(q.data(), b"efghijklm");
        assert!(q.reserve(2).is_none());
        assert_eq!(q.spare_mut().len(), 1);
        q.consume(100);
        assert!(q.is_empty());
        assert_eq!(q.spare_mut().len(), 10);
        q.commit(100);
        assert_eq!(q.len(), 10, "commit is clamped to the capacity");
    }

    proptest! {
        /// Any sequence of writes and reads moves bytes through in order, never holds more
        /// than the capacity, and never panics.
        #[test]
        fn queue_is_a_fifo(ops in proptest::collection::vec((any::<bool>(), 0usize..40), 0..200)) {
            let mut q = ByteQueue::new(32);
            let mut model = std::collections::VecDeque::new();
            let mut next = 0u8;
            for (write, n) in ops {
                if write {
                    if let Some(room) = q.reserve(n) {
                        for b in room.iter_mut() {
                            *b = next;
                            model.push_back(next);
                            next = next.wrapping_add(1);
                        }
                        q.commit(n);
                    } else {
                        prop_assert!(32 - model.len() < n);
                    }
                } else {
                    let k = n.min(model.len());
                    q.consume(n);
                    model.drain(..k);
                }
                prop_assert!(q.len() <= 32);
                prop_assert_eq!(q.data().to_vec(), model.iter().copied().collect::<Vec<_>>());
            }
        }
    }
}
