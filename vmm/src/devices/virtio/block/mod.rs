// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-blk: a raw image file, optionally read-only.

pub mod request;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;

use super::queue::{drain_turn, DeviceFault, FdRegistry, QueueCtx};
use super::{BlockConfig, VirtioDevice, VirtioError, F_INDIRECT_DESC, TYPE_BLOCK};
use request::{handle_chain, ID_LEN, SECTOR_SIZE};

/// VIRTIO_BLK_F_RO.
pub const F_RO: u64 = 1 << 5;
/// VIRTIO_BLK_F_FLUSH.
pub const F_FLUSH: u64 = 1 << 9;
/// VIRTIO_BLK_F_SEG_MAX: without it Linux sends one data segment per request.
pub const F_SEG_MAX: u64 = 1 << 2;
/// Data segments per request we announce (the queue holds header + status besides).
pub const SEG_MAX: u32 = 128;
/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE];
/// Length of struct virtio_blk_config up to and including `blk_size` .. `opt_io_size`.
const CONFIG_LEN: usize = 36;

/// The virtio-blk device.
#[derive(Debug)]
pub struct Block {
    file: File,
    capacity: u64,
    read_only: bool,
    id: [u8; ID_LEN],
    config: [u8; CONFIG_LEN],
}

impl Block {
    /// Open the image named by `cfg`.
    pub fn open(cfg: &BlockConfig) -> Result<Self, VirtioError> {
        let file = OpenOptions::new()
            .read(true)
            .write(!cfg.read_only)
            .open(&cfg.path)
            .map_err(VirtioError::OpenDisk)?;
        let meta = file.metadata().map_err(VirtioError::DiskSize)?;
        let size = meta.len();
        if size % SECTOR_SIZE != 0 {
            return Err(VirtioError::DiskNotSectorAligned(size));
        }
        let id_text = format!("anchor-{:x}-{:x}", meta.dev(), meta.ino());
        Ok(Self::from_file(
            file,
            size / SECTOR_SIZE,
            cfg.read_only,
            id_text.as_bytes(),
        ))
    }

    /// Build from an open file of `capacity` sectors (tests use this directly).
    pub fn from_file(file: File, capacity: u64, read_only: bool, id_text: &[u8]) -> Self {
        let mut id = [0u8; ID_LEN];
        for (dst, src) in id.iter_mut().zip(id_text) {
            *dst = *src;
        }
        let mut config = [0u8; CONFIG_LEN];
        if let Some(c) = config.get_mut(0..8) {
            c.copy_from_slice(&capacity.to_le_bytes());
        }
        if let Some(c) = config.get_mut(12..16) {
            c.copy_from_slice(&SEG_MAX.to_le_bytes());
        }
        Self {
            file,
            capacity,
            read_only,
            id,
            config,
        }
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The GET_ID string.
    pub fn id(&self) -> &[u8; ID_LEN] {
        &self.id
    }
}

/// Process the request queue: at most one queue's worth of chains per call.
pub fn process_requests<D: request::Disk>(
    queue: &mut virtio_queue::Queue,
    mem: &vm_memory::GuestMemoryMmap<()>,
    disk: &mut D,
    capacity: u64,
    read_only: bool,
    id: &[u8; ID_LEN],
) -> Result<super::queue::Pass, DeviceFault> {
    drain_turn(queue, mem, |chain| {
        Some(handle_chain(chain, mem, disk, capacity, read_only, id))
    })
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn avail_features(&self) -> u64 {
        let ro = if self.read_only { F_RO } else { 0 };
        F_FLUSH | F_SEG_MAX | F_INDIRECT_DESC | ro
    }

    fn queue_max_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }

    fn config_space(&self) -> &[u8] {
        &self.config
    }

    fn reset(&mut self) {}

    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueCtx<'_>,
        _reg: &mut dyn FdRegistry,
    ) -> Result<bool, DeviceFault> {
        ctx.serve(index, |queue, mem| {
            process_requests(
                queue,
                mem,
                &mut self.file,
                self.capacity,
                self.read_only,
                &self.id,
            )
        })
    }
}
