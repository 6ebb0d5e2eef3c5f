// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-rng: fills device-writable buffers with getrandom(2) bytes.
//!
//! Work is bounded: at most [`MAX_BYTES_PER_CHAIN`] bytes go into one chain and at most
//! [`MAX_BYTES_PER_TURN`] bytes per event-loop turn; the rest waits for the next turn.

use virtio_queue::{DescriptorChain, Queue};
use vm_memory::{Address, Bytes, GuestMemoryMmap};

use super::queue::{drain_turn, DeviceFault, FdRegistry, Pass, QueueCtx};
use super::{sys, VirtioDevice, F_INDIRECT_DESC, TYPE_RNG};

/// Cap on bytes written into one chain.
pub const MAX_BYTES_PER_CHAIN: u32 = 64 * 1024;
/// Cap on bytes produced per event-loop turn.
pub const MAX_BYTES_PER_TURN: u32 = 256 * 1024;
/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE];
const CHUNK: usize = 4096;

/// Source of random bytes (the kernel in production, a pattern in tests).
pub trait Entropy {
    /// Fill `buf` completely.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()>;
}

/// getrandom(2).
#[derive(Debug, Default)]
pub struct KernelEntropy;

impl Entropy for KernelEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..) {
            if rest.is_empty() {
                break;
            }
            match sys::getrandom(rest) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done = done.saturating_add(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Fill the writable descriptors of `chain`, up to `cap` bytes. Returns bytes written.
pub fn fill_chain<E: Entropy>(
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    entropy: &mut E,
    cap: u32,
) -> u32 {
    let mut buf = [0u8; CHUNK];
    let mut written: u32 = 0;
    for d in chain {
        if !d.is_write_only() {
            continue;
        }
        let mut done: u32 = 0;
        while done < d.len() && written < cap {
            let n = (d.len() - done).min(cap - written).min(CHUNK as u32);
            let Some(chunk) = buf.get_mut(..n as usize) else {
                return written;
            };
            let Some(addr) = d.addr().checked_add(u64::from(done)) else {
                return written;
            };
            if entropy.fill(chunk).is_err() || mem.write_slice(chunk, addr).is_err() {
                return written;
            }
            done = done.saturating_add(n);
            written = written.saturating_add(n);
        }
        if written >= cap {
            break;
        }
    }
    written
}

/// One bounded pass over the request queue.
pub fn process_requests<E: Entropy>(
    queue: &mut Queue,
    mem: &GuestMemoryMmap<()>,
    entropy: &mut E,
) -> Result<Pass, DeviceFault> {
    let mut budget = MAX_BYTES_PER_TURN;
    drain_turn(queue, mem, |chain| {
        if budget == 0 {
            return None;
        }
        let n = fill_chain(chain, mem, entropy, MAX_BYTES_PER_CHAIN.min(budget));
        budget = budget.saturating_sub(n.max(1));
        Some(n)
    })
}

/// The virtio-rng device.
#[derive(Debug, Default)]
pub struct Rng {
    entropy: KernelEntropy,
}

impl Rng {
    /// A new device reading the kernel's pool.
    pub fn new() -> Self {
        Self::default()
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }
    fn avail_features(&self) -> u64 {
        F_INDIRECT_DESC
    }
    fn queue_max_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }
    fn config_space(&self) -> &[u8] {
        &[]
    }
    fn reset(&mut self) {}
    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueCtx<'_>,
        _reg: &mut dyn FdRegistry,
    ) -> Result<bool, DeviceFault> {
        ctx.serve(index, |queue, mem| {
            process_requests(queue, mem, &mut self.entropy)
        })
    }
}

#[cfg(test)]
mod tests;
