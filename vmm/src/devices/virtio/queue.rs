// SPDX-License-Identifier: GPL-3.0-or-later
//! Queue plumbing shared by the devices: the context handed to queue logic, interrupt
//! bookkeeping and the one failure that cannot be returned to the guest.

use std::fmt;
use std::os::fd::RawFd;

use event_manager::{EventOps, EventSet, Events};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// Interrupt status bit: a used buffer was added.
pub const INT_VRING: u32 = 1;
/// Interrupt status bit: the configuration (or device status) changed.
pub const INT_CONFIG: u32 = 2;

/// The driver broke the queue protocol in a way no per-request status can express
/// (for example an avail index that jumps past the queue size, or rings that are not in
/// guest memory any more). The transport sets DEVICE_NEEDS_RESET and stops the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFault {
    /// The available ring index advanced by more than the queue size.
    AvailIndex,
    /// The rings could not be read or written.
    RingAccess,
    /// The queue was used while not ready.
    QueueNotReady,
    /// A chain head index in the available ring is outside the descriptor table.
    DescriptorIndex,
}

impl fmt::Display for DeviceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AvailIndex => write!(f, "available ring index jumped past the queue size"),
            Self::RingAccess => write!(f, "virtqueue rings are not accessible"),
            Self::QueueNotReady => write!(f, "queue used before it was ready"),
            Self::DescriptorIndex => write!(f, "chain head index outside the descriptor table"),
        }
    }
}

impl std::error::Error for DeviceFault {}

impl From<virtio_queue::Error> for DeviceFault {
    fn from(e: virtio_queue::Error) -> Self {
        match e {
            virtio_queue::Error::InvalidAvailRingIndex => Self::AvailIndex,
            virtio_queue::Error::QueueNotReady => Self::QueueNotReady,
            virtio_queue::Error::InvalidDescriptorIndex => Self::DescriptorIndex,
            _ => Self::RingAccess,
        }
    }
}

/// Interrupt state of one device: the InterruptStatus register and the irqfd.
#[derive(Debug)]
pub struct Interrupt {
    status: u32,
    irq: Option<EventFd>,
    raised: u64,
}

impl Interrupt {
    /// `irq` is the irqfd registered by the VMM core; `None` in unit tests.
    pub fn new(irq: Option<EventFd>) -> Self {
        Self {
            status: 0,
            irq,
            raised: 0,
        }
    }

    /// Set `bits` in InterruptStatus and raise the interrupt line.
    pub fn raise(&mut self, bits: u32) {
        self.status |= bits;
        self.raised = self.raised.wrapping_add(1);
        if let Some(fd) = &self.irq {
            // A failed write means the counter is saturated: the interrupt is pending anyway.
            let _ = fd.write(1);
        }
    }

    /// InterruptStatus register value.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// InterruptACK: clear the acknowledged bits.
    pub fn ack(&mut self, bits: u32) {
        self.status &= !bits;
    }

    /// How many times the interrupt was raised (tests).
    pub fn raised(&self) -> u64 {
        self.raised
    }
}

/// What queue logic gets to work with: guest memory, the device's queues and its interrupt.
#[derive(Debug)]
pub struct QueueCtx<'a> {
    /// Guest memory.
    pub mem: &'a GuestMemoryMmap<()>,
    /// The device's queues, validated and ready.
    pub queues: &'a mut [Queue],
    /// Interrupt state.
    pub interrupt: &'a mut Interrupt,
}

impl QueueCtx<'_> {
    /// Run `pass` (one bounded pass of a device's queue logic) over queue `index` and
    /// raise the vring interrupt if it used any chain. A queue the device does not have is
    /// left alone. Returns whether work was left for the next turn.
    pub fn serve<F>(&mut self, index: usize, pass: F) -> Result<bool, DeviceFault>
    where
        F: FnOnce(&mut Queue, &GuestMemoryMmap<()>) -> Result<Pass, DeviceFault>,
    {
        let Some(queue) = self.queues.get_mut(index) else {
            return Ok(false);
        };
        let pass = pass(queue, self.mem)?;
        if pass.used > 0 {
            self.interrupt.raise(INT_VRING);
        }
        Ok(pass.more)
    }
}

/// Result of one bounded pass over a queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Chains returned to the used ring.
    pub used: u32,
    /// Chains (or bytes) were left for the next turn because of the per-turn bound.
    pub more: bool,
}

/// Pop at most `limit` chains from `queue`, handing each to `f`, which returns the number
/// of bytes written into the chain (the used length). Each chain is added to the used
/// ring. Stops early when `f` returns `None` (the device wants to keep the chain for
/// later: it is put back). Errors that concern the whole queue become a [`DeviceFault`].
pub fn drain_queue<F>(
    queue: &mut Queue,
    mem: &GuestMemoryMmap<()>,
    limit: u32,
    mut f: F,
) -> Result<Pass, DeviceFault>
where
    F: FnMut(DescriptorChain<&GuestMemoryMmap<()>>) -> Option<u32>,
{
    let mut pass = Pass::default();
    loop {
        if pass.used >= limit {
            // Is there anything left? Peek at the avail index without consuming.
            let avail = queue.avail_idx(mem, std::sync::atomic::Ordering::Acquire)?;
            pass.more = avail.0 != queue.next_avail();
            return Ok(pass);
        }
        let chain = {
            let mut iter = queue.iter(mem)?;
            match iter.next() {
                Some(c) => c,
                None => return Ok(pass),
            }
        };
        let head = chain.head_index();
        match f(chain) {
            Some(len) => {
                queue.add_used(mem, head, len)?;
                pass.used = pass.used.saturating_add(1);
            }
            None => {
                queue.go_to_previous_position();
                pass.more = true;
                return Ok(pass);
            }
        }
    }
}

/// [`drain_queue`] bounded to one queue's worth of chains (the per-turn bound of every
/// device's queue logic).
pub fn drain_turn<F>(
    queue: &mut Queue,
    mem: &GuestMemoryMmap<()>,
    f: F,
) -> Result<Pass, DeviceFault>
where
    F: FnMut(DescriptorChain<&GuestMemoryMmap<()>>) -> Option<u32>,
{
    let limit = u32::from(queue.size());
    drain_queue(queue, mem, limit, f)
}

/// Bytes the device may read (`writable == false`) or write (`writable == true`) in a chain.
pub fn chain_len(chain: DescriptorChain<&GuestMemoryMmap<()>>, writable: bool) -> u64 {
    chain
        .filter(|d| d.is_write_only() == writable)
        .fold(0u64, |acc, d| acc.saturating_add(u64::from(d.len())))
}

/// Copy between `buf` and the device-readable (`to_chain == false`) or device-writable
/// (`to_chain == true`) bytes of a chain, starting `skip` bytes into them. Returns the
/// number of bytes copied (short when the chain ends or memory is not accessible).
pub fn chain_copy(
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    skip: u64,
    buf: &mut [u8],
    to_chain: bool,
) -> usize {
    let mut pos: u64 = 0;
    let mut done: usize = 0;
    for d in chain.filter(|d| d.is_write_only() == to_chain) {
        if done >= buf.len() {
            break;
        }
        let len = u64::from(d.len());
        let end = pos.saturating_add(len);
        if end <= skip {
            pos = end;
            continue;
        }
        let inner = skip.saturating_sub(pos);
        let take = usize::try_from(len.saturating_sub(inner))
            .unwrap_or(usize::MAX)
            .min(buf.len().saturating_sub(done));
        let Some(addr) = d.addr().checked_add(inner) else {
            return done;
        };
        let Some(part) = buf.get_mut(done..done.saturating_add(take)) else {
            return done;
        };
        let ok = if to_chain {
            mem.write_slice(part, addr).is_ok()
        } else {
            mem.read_slice(part, addr).is_ok()
        };
        if !ok {
            return done;
        }
        done = done.saturating_add(take);
        pos = end;
    }
    done
}

/// Registration of file descriptors with the event loop (an `EventOps` in the VMM, a
/// recorder in tests).
pub trait FdRegistry {
    /// Watch `fd` for `set`, reporting `data`.
    fn add(&mut self, fd: RawFd, data: u32, set: EventSet) -> bool;
    /// Stop watching `fd`.
    fn remove(&mut self, fd: RawFd) -> bool;
}

impl FdRegistry for EventOps<'_> {
    fn add(&mut self, fd: RawFd, data: u32, set: EventSet) -> bool {
        EventOps::add(self, Events::with_data_raw(fd, data, set)).is_ok()
    }
    fn remove(&mut self, fd: RawFd) -> bool {
        EventOps::remove(self, Events::empty_raw(fd)).is_ok()
    }
}

/// A registry that accepts everything and watches nothing (unit tests).
#[derive(Debug, Default)]
pub struct NullRegistry {
    /// Currently "registered" fds.
    pub fds: Vec<RawFd>,
}

impl FdRegistry for NullRegistry {
    fn add(&mut self, fd: RawFd, _data: u32, _set: EventSet) -> bool {
        self.fds.push(fd);
        true
    }
    fn remove(&mut self, fd: RawFd) -> bool {
        self.fds.retain(|f| *f != fd);
        true
    }
}
