// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-blk: descriptor chain walking and request parsing/execution on a fuzzer-built
//! queue, against an in-memory 64-sector disk.
#![no_main]

mod common;

use anchor_vmm::devices::virtio::block::process_requests;
use anchor_vmm::devices::virtio::block::request::Disk;

struct MemDisk([u8; 64 * 512]);

impl Disk for MemDisk {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let o = usize::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let src = self
            .0
            .get(o..o + buf.len())
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let o = usize::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let dst = self
            .0
            .get_mut(o..o + buf.len())
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        dst.copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((mem, mut q)) = common::build(data) else {
        return;
    };
    let mut disk = MemDisk([0; 64 * 512]);
    let ro = data.first().is_some_and(|b| b & 1 == 1);
    // Twice: the second pass sees the state the first one left (next_avail, used ring).
    for _ in 0..2 {
        if let Ok(pass) = process_requests(&mut q, &mem, &mut disk, 64, ro, b"fuzz-disk-id-0000000")
        {
            assert!(pass.used <= u32::from(common::SIZE));
        }
    }
});
