// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-blk: descriptor chain walking and request parsing/execution on a fuzzer-built
//! queue, against an in-memory 64-sector disk.
#![no_main]

mod common;

use std::sync::atomic::AtomicBool;

use anchor_vmm::devices::virtio::block::process_requests;
use anchor_vmm::devices::virtio::block::request::{Bufs, Disk, DiskRef};
use anchor_vmm::devices::virtio::queue::Budget;

struct MemDisk([u8; 64 * 512]);

impl Disk for MemDisk {
    fn read_vectored_at(&mut self, bufs: &Bufs<'_>, offset: u64) -> std::io::Result<usize> {
        let mut o = usize::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let mut n = 0;
        for b in bufs {
            let src = self.0.get(o..).unwrap_or(&[]);
            let take = src.len().min(b.len());
            b.copy_from(&src[..take]);
            n += take;
            o += take;
            if take < b.len() {
                break;
            }
        }
        Ok(n)
    }
    fn write_vectored_at(&mut self, bufs: &Bufs<'_>, offset: u64) -> std::io::Result<usize> {
        let mut o = usize::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let mut n = 0;
        for b in bufs {
            let dst = self.0.get_mut(o..).unwrap_or(&mut []);
            let take = dst.len().min(b.len());
            b.copy_to(&mut dst[..take]);
            n += take;
            o += take;
            if take < b.len() {
                break;
            }
        }
        Ok(n)
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
    // A small byte budget from the input, so requests get interrupted and resumed.
    let turn = 1 + u64::from(data.get(1).copied().unwrap_or(0)) * 512;
    let stop = AtomicBool::new(false);
    let mut inflight = None;
    // Several turns: later ones see the state earlier ones left (next_avail, used ring,
    // a request in flight).
    for _ in 0..8 {
        let d = DiskRef {
            disk: &mut disk,
            capacity: 64,
            read_only: ro,
            id: b"fuzz-disk-id-0000000",
        };
        let mut budget = Budget::new(turn, &stop);
        match process_requests(&mut q, &mem, d, &mut inflight, &mut budget) {
            Ok(pass) => {
                assert!(pass.used <= u32::from(common::SIZE) + 1);
                if !pass.more {
                    break;
                }
            }
            Err(_) => break,
        }
    }
});
