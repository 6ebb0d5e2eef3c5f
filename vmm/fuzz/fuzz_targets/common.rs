// SPDX-License-Identifier: GPL-3.0-or-later
//! Builds a split virtqueue in guest memory from fuzzer bytes.
//!
//! Input layout: 16 descriptors (16 bytes each: addr, len, flags, next), the avail index
//! (2 bytes), 16 avail ring entries (2 bytes each), then bytes copied to guest memory at
//! `DATA` (request headers, packets, payloads). Descriptor addresses with the top bit clear
//! are reduced into guest memory so that most chains point at real RAM; the others stay
//! raw (out-of-range addresses).

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const MEM: u64 = 0x10_0000;
pub const DESC: u64 = 0;
pub const AVAIL: u64 = 0x1000;
pub const USED: u64 = 0x2000;
pub const DATA: u64 = 0x1_0000;
pub const SIZE: u16 = 16;

pub fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(data.len());
    out[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    out
}

/// Guest memory and a ready queue described by `data`; None if setup itself fails.
pub fn build(mut data: &[u8]) -> Option<(GuestMemoryMmap<()>, Queue)> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)]).ok()?;
    for i in 0..u64::from(SIZE) {
        let mut addr = u64::from_le_bytes(take::<8>(&mut data));
        if addr >> 63 == 0 {
            addr %= MEM;
        }
        let rest = take::<8>(&mut data);
        mem.write_obj(addr, GuestAddress(DESC + 16 * i)).ok()?;
        mem.write_slice(&rest, GuestAddress(DESC + 16 * i + 8))
            .ok()?;
    }
    let idx = take::<2>(&mut data);
    mem.write_slice(&idx, GuestAddress(AVAIL + 2)).ok()?;
    let ring = take::<32>(&mut data);
    mem.write_slice(&ring, GuestAddress(AVAIL + 4)).ok()?;
    let n = data.len().min((MEM - DATA) as usize);
    mem.write_slice(&data[..n], GuestAddress(DATA)).ok()?;
    let mut q = Queue::new(SIZE).ok()?;
    // EVENT_IDX on for half the inputs (the used_event / avail_event paths).
    q.set_event_idx(idx[0] & 0x80 != 0);
    q.try_set_desc_table_address(GuestAddress(DESC)).ok()?;
    q.try_set_avail_ring_address(GuestAddress(AVAIL)).ok()?;
    q.try_set_used_ring_address(GuestAddress(USED)).ok()?;
    q.set_ready(true);
    Some((mem, q))
}
