// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-rng queue logic against MockSplitQueue.

use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::test_utils::*;

/// Counts bytes and fills with a constant so tests can see what was written.
struct Pattern(u64);

impl Entropy for Pattern {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0x5a);
        self.0 += buf.len() as u64;
        Ok(())
    }
}

#[test]
fn fills_writable_buffers_and_skips_readable_ones() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    push_chain(
        &vq,
        &m,
        &chain(
            &[
                (0x1_0000, 100, true),
                (0x2_0000, 50, false),
                (0x3_0000, 28, true),
            ],
            0,
        ),
        0,
    );
    let mut e = Pattern(0);
    let pass = process_requests(&mut q, &m, &mut e).unwrap();
    assert_eq!(pass.used, 1);
    assert_eq!(used_elem(&vq, &m, 0), (0, 128));
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x1_0000 + 99)).unwrap(), 0x5a);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x2_0000)).unwrap(), 0);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x3_0000 + 27)).unwrap(), 0x5a);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x3_0000 + 28)).unwrap(), 0);
}

#[test]
fn kernel_entropy_fills_buffers() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    push_chain(&vq, &m, &chain(&[(0x1_0000, 4096, true)], 0), 0);
    let pass = process_requests(&mut q, &m, &mut KernelEntropy).unwrap();
    assert_eq!(pass.used, 1);
    assert_eq!(used_elem(&vq, &m, 0), (0, 4096));
    let mut buf = vec![0u8; 4096];
    m.read_slice(&mut buf, GuestAddress(0x1_0000)).unwrap();
    assert!(
        buf.iter().filter(|&&b| b == 0).count() < 200,
        "random bytes were written"
    );
}

#[test]
fn per_chain_cap_and_per_turn_budget() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    // Each chain offers 128 KiB; only MAX_BYTES_PER_CHAIN go in.
    for i in 0..8u16 {
        push_chain(&vq, &m, &chain(&[(0x1_0000, 128 * 1024, true)], i), i);
    }
    let mut e = Pattern(0);
    let pass = process_requests(&mut q, &m, &mut e).unwrap();
    let per_turn = MAX_BYTES_PER_TURN / MAX_BYTES_PER_CHAIN;
    assert_eq!(pass.used, per_turn);
    assert!(pass.more);
    assert_eq!(e.0, u64::from(MAX_BYTES_PER_TURN));
    assert_eq!(used_elem(&vq, &m, 0), (0, MAX_BYTES_PER_CHAIN));
    let pass = process_requests(&mut q, &m, &mut e).unwrap();
    assert_eq!(pass.used, 8 - per_turn);
    assert!(!pass.more);
}

#[test]
fn bad_buffers_are_returned_short() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    push_chain(&vq, &m, &chain(&[(MEM_SIZE as u64 - 16, 64, true)], 0), 0);
    push_chain(&vq, &m, &chain(&[(u64::MAX - 8, 64, true)], 1), 1);
    push_chain(&vq, &m, &chain(&[(0x1_0000, 0, true)], 2), 2);
    let mut e = Pattern(0);
    let pass = process_requests(&mut q, &m, &mut e).unwrap();
    assert_eq!(pass.used, 3);
    // The first chunk straddles the end of memory and is refused whole.
    assert_eq!(used_elem(&vq, &m, 0), (0, 0));
    assert_eq!(used_elem(&vq, &m, 1), (1, 0));
    assert_eq!(used_elem(&vq, &m, 2), (2, 0));
}

#[test]
fn avail_jump_faults() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    m.write_obj(100u16, GuestAddress(vq.avail_addr().0 + 2))
        .unwrap();
    assert_eq!(
        process_requests(&mut q, &m, &mut Pattern(0)).unwrap_err(),
        DeviceFault::AvailIndex
    );
}
