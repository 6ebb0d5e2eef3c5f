// SPDX-License-Identifier: GPL-3.0-or-later
//! Helpers shared by the device unit tests.

use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

pub const MEM_SIZE: usize = 0x10_0000;
pub const NEXT: u16 = VRING_DESC_F_NEXT as u16;
pub const WRITE: u16 = VRING_DESC_F_WRITE as u16;
pub const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

pub fn mem() -> GuestMemoryMmap<()> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

pub fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

/// A chain of (addr, len, writable) laid out from descriptor index `first`, linked in order.
pub fn chain(parts: &[(u64, u32, bool)], first: u16) -> Vec<RawDescriptor> {
    let n = parts.len();
    parts
        .iter()
        .enumerate()
        .map(|(i, &(a, l, w))| {
            let mut f = if w { WRITE } else { 0 };
            if i + 1 < n {
                f |= NEXT;
            }
            desc(a, l, f, first + i as u16 + 1)
        })
        .collect()
}

/// Put `descs` into the table at `offset` and make a chain headed at `offset` available.
pub fn push_chain(
    vq: &MockSplitQueue<GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    descs: &[RawDescriptor],
    offset: u16,
) {
    for (i, d) in descs.iter().enumerate() {
        vq.desc_table().store(offset + i as u16, *d).unwrap();
    }
    make_avail(vq, mem, offset);
}

/// Append `head` to the available ring.
pub fn make_avail(vq: &MockSplitQueue<GuestMemoryMmap<()>>, mem: &GuestMemoryMmap<()>, head: u16) {
    let idx_addr = vq.avail_addr().unchecked_add(2);
    let idx: u16 = mem.read_obj(idx_addr).unwrap();
    let size = vq.desc_table().total_size() / 16;
    let slot = vq
        .avail_addr()
        .unchecked_add(4 + 2 * (u64::from(idx) % size));
    mem.write_obj(head, slot).unwrap();
    mem.write_obj(idx.wrapping_add(1), idx_addr).unwrap();
}

/// Where our queues keep the used ring. MockSplitQueue 0.18 places its own used ring
/// over the tail of the available ring (it sizes the ring at one byte per entry), so the
/// tests move it out of the way.
pub fn used_addr(vq: &MockSplitQueue<GuestMemoryMmap<()>>) -> GuestAddress {
    vq.avail_addr().unchecked_add(0x400)
}

pub fn used_idx(vq: &MockSplitQueue<GuestMemoryMmap<()>>, mem: &GuestMemoryMmap<()>) -> u16 {
    mem.read_obj(used_addr(vq).unchecked_add(2)).unwrap()
}

/// (head id, len) of used ring entry `i`.
pub fn used_elem(
    vq: &MockSplitQueue<GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    i: u16,
) -> (u32, u32) {
    let size = vq.desc_table().total_size() / 16;
    let a = used_addr(vq).unchecked_add(4 + 8 * (u64::from(i) % size));
    (
        mem.read_obj(a).unwrap(),
        mem.read_obj(a.unchecked_add(4)).unwrap(),
    )
}

pub fn queue(vq: &MockSplitQueue<GuestMemoryMmap<()>>) -> Queue {
    let mut q: Queue = vq.create_queue().unwrap();
    q.try_set_used_ring_address(used_addr(vq)).unwrap();
    assert!(q.ready());
    q
}
