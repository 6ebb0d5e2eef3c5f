// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-blk: a raw image file, optionally read-only.

pub mod request;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::path::Path;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::queue::{drain_queue, Budget, DeviceFault, FdRegistry, Pass, QueueCtx, QueueMask, Step};
use super::{BlockConfig, VirtioDevice, VirtioError, F_EVENT_IDX, F_INDIRECT_DESC, TYPE_BLOCK};
pub use request::DiskRef;
use request::{resume, start, Disk, InFlight, ID_LEN, SECTOR_SIZE};

/// VIRTIO_BLK_F_RO.
pub const F_RO: u64 = 1 << 5;
/// VIRTIO_BLK_F_FLUSH.
pub const F_FLUSH: u64 = 1 << 9;
/// VIRTIO_BLK_F_SEG_MAX: without it Linux sends one data segment per request.
pub const F_SEG_MAX: u64 = 1 << 2;
/// Data segments per request we announce (the chain holds header + status besides);
/// a chain with more is answered with IOERR.
pub const SEG_MAX: u32 = request::SEG_MAX as u32;
/// Bytes of disk I/O per event-loop turn; a larger request continues next turn.
pub const TURN_BYTES: u64 = 1024 * 1024;
/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE];
/// Length of struct virtio_blk_config up to and including `blk_size` .. `opt_io_size`.
const CONFIG_LEN: usize = 36;

/// Holds the shared `flock` on the open image for as long as `file` lives (the VMM's
/// life), and checks that `path` still names it. `anchor-vault volume delete` takes the
/// exclusive lock before it checks that nothing holds a volume and keeps it until the file
/// is unlinked: a volume being deleted is refused here, and once this lock is held no
/// delete goes through. A file deleted or replaced between the open and the lock is
/// refused too: the guest would write data no name reaches. Runs before seccomp.
fn claim(file: &File, path: &Path) -> Result<(), VirtioError> {
    use std::os::unix::fs::MetadataExt;
    let gone = || VirtioError::DiskGone(path.to_path_buf());
    match super::sys::flock_nb(file, libc::LOCK_SH) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            return Err(VirtioError::DiskBeingDeleted(path.to_path_buf()))
        }
        Err(e) => return Err(VirtioError::DiskLock(path.to_path_buf(), e)),
    }
    let held = file
        .metadata()
        .map_err(|e| VirtioError::DiskSize(path.to_path_buf(), e))?;
    let named = std::fs::metadata(path).map_err(|_| gone())?;
    if held.nlink() == 0 || (held.dev(), held.ino()) != (named.dev(), named.ino()) {
        return Err(gone());
    }
    Ok(())
}

/// The virtio-blk device.
#[derive(Debug)]
pub struct Block {
    file: File,
    capacity: u64,
    read_only: bool,
    id: [u8; ID_LEN],
    config: [u8; CONFIG_LEN],
    /// The request the last turn's budget interrupted (at most one: requests run in order).
    inflight: Option<InFlight>,
}

impl Block {
    /// Open the image named by `cfg`.
    pub fn open(cfg: &BlockConfig) -> Result<Self, VirtioError> {
        let file = OpenOptions::new()
            .read(true)
            .write(!cfg.read_only)
            .open(&cfg.path)
            .map_err(|e| VirtioError::OpenDisk(cfg.path.clone(), e))?;
        claim(&file, &cfg.path)?;
        let meta = file
            .metadata()
            .map_err(|e| VirtioError::DiskSize(cfg.path.clone(), e))?;
        let size = meta.len();
        if size % SECTOR_SIZE != 0 {
            return Err(VirtioError::DiskNotSectorAligned(cfg.path.clone(), size));
        }
        // What the disk is, never where it lives: the host's device and inode numbers of
        // the image file are none of the guest's business.
        let id_text: &[u8] = if cfg.read_only {
            b"anchor-ro"
        } else {
            b"anchor-rw"
        };
        Ok(Self::from_file(
            file,
            size / SECTOR_SIZE,
            cfg.read_only,
            id_text,
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
            inflight: None,
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

/// One turn over the request queue, bounded by `budget` and a queue's worth of chains:
/// first the request a previous turn interrupted (`inflight`), then new chains in order.
/// A request the budget interrupts is kept in `inflight` (its chain stays taken).
pub fn process_requests<D: Disk>(
    queue: &mut Queue,
    mem: &GuestMemoryMmap<()>,
    mut d: DiskRef<'_, D>,
    inflight: &mut Option<InFlight>,
    budget: &mut Budget<'_>,
) -> Result<Pass, DeviceFault> {
    let mut used = 0u32;
    if let Some(mut f) = inflight.take() {
        match resume(&mut f, mem, d.disk, d.id, budget) {
            Some(len) => {
                queue.add_used(mem, f.head, len)?;
                used = 1;
            }
            None => {
                *inflight = Some(f);
                return Ok(Pass { used, more: true });
            }
        }
    }
    let pass = drain_queue(queue, mem, |chain| {
        if !budget.allows() {
            return Step::Stop;
        }
        match start(chain, mem, &mut d, budget, inflight) {
            Some(len) => Step::Used(len),
            None => Step::Held,
        }
    })?;
    Ok(Pass {
        used: used.saturating_add(pass.used),
        more: pass.more,
    })
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn avail_features(&self) -> u64 {
        let ro = if self.read_only { F_RO } else { 0 };
        F_FLUSH | F_SEG_MAX | F_INDIRECT_DESC | F_EVENT_IDX | ro
    }

    fn queue_max_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }

    fn config_space(&self) -> &[u8] {
        &self.config
    }

    fn reset(&mut self) {
        // The interrupted request's chain belongs to the old queue: forget it.
        self.inflight = None;
    }

    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueCtx<'_>,
        _reg: &mut dyn FdRegistry,
    ) -> Result<QueueMask, DeviceFault> {
        let d = DiskRef {
            disk: &mut self.file,
            capacity: self.capacity,
            read_only: self.read_only,
            id: &self.id,
        };
        let inflight = &mut self.inflight;
        ctx.serve(index, TURN_BYTES, |queue, mem, budget| {
            process_requests(queue, mem, d, inflight, budget)
        })
    }
}
