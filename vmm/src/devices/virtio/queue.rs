// SPDX-License-Identifier: GPL-3.0-or-later
//! Queue plumbing shared by the devices: the context handed to queue logic, interrupt
//! bookkeeping and the one failure that cannot be returned to the guest.

use std::fmt;
use std::os::fd::RawFd;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use crate::devices::irq::IrqLine;
use crate::sys::RegisterPage;

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

/// Interrupt state of one device: the InterruptStatus register and the irqfd. Shared by
/// the vcpu threads (register reads, InterruptACK) and the VMM thread (raising), so the
/// status is an atomic and never waits on a lock. It lives in the device's register page
/// ([`crate::sys::RegisterPage`]), the one copy the guest reads, with or without an exit.
#[derive(Debug)]
pub struct Interrupt {
    page: Arc<RegisterPage>,
    irq: IrqLine,
    raised: AtomicU64,
}

impl Interrupt {
    /// `irq` is the device's interrupt line (a line to nothing in unit tests); the status
    /// lives in a register page of its own.
    pub fn new(irq: IrqLine) -> std::io::Result<Self> {
        Ok(Self::with_page(irq, Arc::new(RegisterPage::new()?)))
    }

    /// As `new`, with the status in `page` (the device's register page).
    pub fn with_page(irq: IrqLine, page: Arc<RegisterPage>) -> Self {
        Self {
            page,
            irq,
            raised: AtomicU64::new(0),
        }
    }

    fn word(&self) -> Option<&AtomicU32> {
        self.page.word(super::mmio::reg::INTERRUPT_STATUS)
    }

    /// The register page the status lives in.
    pub fn page(&self) -> &Arc<RegisterPage> {
        &self.page
    }

    /// Set `bits` in InterruptStatus and raise the interrupt line.
    pub fn raise(&self, bits: u32) {
        // The status is visible before the interrupt: the guest's handler reads it.
        if let Some(w) = self.word() {
            w.fetch_or(bits, Ordering::SeqCst);
        }
        self.raised.fetch_add(1, Ordering::Relaxed);
        // Best effort: a failed irqfd write means its counter is saturated, so the
        // interrupt is pending anyway.
        let _ = self.irq.trigger();
    }

    /// InterruptStatus register value.
    pub fn status(&self) -> u32 {
        self.page.get(super::mmio::reg::INTERRUPT_STATUS)
    }

    /// InterruptACK: clear the acknowledged bits.
    pub fn ack(&self, bits: u32) {
        if let Some(w) = self.word() {
            w.fetch_and(!bits, Ordering::SeqCst);
        }
    }

    /// How many times the interrupt was raised (tests).
    pub fn raised(&self) -> u64 {
        self.raised.load(Ordering::Relaxed)
    }
}

/// Bytes of device work left in this event-loop turn. The turn also ends early when a
/// vcpu asks the device to stop (a reset or a status change waits for it): devices check
/// [`Budget::allows`] between chunks of at most [`CHUNK_BOUND`] bytes.
#[derive(Debug)]
pub struct Budget<'a> {
    left: u64,
    stop: &'a AtomicBool,
}

/// The most a device moves between two checks of its [`Budget`].
pub const CHUNK_BOUND: u64 = 64 * 1024;

impl<'a> Budget<'a> {
    /// `bytes` for this turn; `stop` is the transport's "yield now" flag.
    pub fn new(bytes: u64, stop: &'a AtomicBool) -> Self {
        Self { left: bytes, stop }
    }

    /// Whether more work may be done now.
    pub fn allows(&self) -> bool {
        self.left > 0 && !self.stop.load(Ordering::Acquire)
    }

    /// How much of `want` bytes may be done now (0 when the turn is over).
    pub fn grant(&self, want: u64) -> u64 {
        if self.allows() {
            want.min(self.left)
        } else {
            0
        }
    }

    /// Account for `n` bytes of work (at least one unit, so zero-byte work is bounded too).
    pub fn spend(&mut self, n: u64) {
        self.left = self.left.saturating_sub(n.max(1));
    }
}

/// Which queues still have work after a turn (bit i = queue i): the worker re-arms their
/// notification eventfds so the event loop comes back to them after serving the others.
pub type QueueMask = u32;

/// The mask bit of queue `index` (0 for indexes a mask cannot hold).
pub fn queue_bit(index: usize) -> QueueMask {
    u32::try_from(index)
        .ok()
        .and_then(|i| 1u32.checked_shl(i))
        .unwrap_or(0)
}

/// What queue logic gets to work with: guest memory, the device's queues, its interrupt and
/// the transport's "yield now" flag (see [`Budget`]).
#[derive(Debug)]
pub struct QueueCtx<'a> {
    /// Guest memory.
    pub mem: &'a GuestMemoryMmap<()>,
    /// The device's queues, validated and ready.
    pub queues: &'a mut [Queue],
    /// Interrupt state.
    pub interrupt: &'a Interrupt,
    /// Set by a vcpu that waits for the device to stop (reset, status change).
    pub stop: &'a AtomicBool,
}

impl QueueCtx<'_> {
    /// A budget of `bytes` for this turn.
    pub fn budget(&self, bytes: u64) -> Budget<'_> {
        Budget::new(bytes, self.stop)
    }

    /// After a turn that used chains of queue `index`: raise the vring interrupt unless the
    /// driver suppressed it (VIRTIO_RING_F_EVENT_IDX: only when the used index crossed the
    /// driver's `used_event`).
    pub fn notify_used(&mut self, index: usize) -> Result<(), DeviceFault> {
        let Some(queue) = self.queues.get_mut(index) else {
            return Ok(());
        };
        if queue.needs_notification(self.mem)? {
            self.interrupt.raise(INT_VRING);
        }
        Ok(())
    }

    /// Run `pass` (one pass of a device's queue logic, bounded by a budget of `bytes`) over
    /// queue `index` and raise the vring interrupt if it used any chain (and the driver
    /// wants it). A queue the device does not have is left alone. Returns the queue's mask
    /// bit if work was left for the next turn.
    pub fn serve<F>(&mut self, index: usize, bytes: u64, pass: F) -> Result<QueueMask, DeviceFault>
    where
        F: FnOnce(&mut Queue, &GuestMemoryMmap<()>, &mut Budget<'_>) -> Result<Pass, DeviceFault>,
    {
        let Some(queue) = self.queues.get_mut(index) else {
            return Ok(0);
        };
        let mut budget = Budget::new(bytes, self.stop);
        let pass = pass(queue, self.mem, &mut budget)?;
        if pass.used > 0 {
            self.notify_used(index)?;
        }
        Ok(if pass.more { queue_bit(index) } else { 0 })
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

/// What the device did with one chain handed to it by [`drain_queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Done: return it to the used ring with this many bytes written into it.
    Used(u32),
    /// Nothing to do with it now (for example an rx buffer and nothing to send): put it
    /// back and stop, without asking for another turn. The driver's notifications stay off
    /// (a driver waiting for this chain sends none anyway), so the device must have its own
    /// way back: vsock its host sockets and tick, rng its retry timer (or another turn when
    /// that timer cannot be used).
    Keep,
    /// This turn's budget is spent: put it back and ask for another turn.
    Stop,
    /// Taken and started; the device finishes it in a later turn (it remembers the head).
    Held,
}

/// The most descriptors a chain may have. The virtio spec bounds a chain by the queue size
/// (1.2, 2.7.5.3.1, indirect tables included), and no device here offers more than 256
/// entries; this leaves room for drivers that send SEG_MAX-sized requests on small queues.
/// A longer chain (an indirect table may hold 65535 descriptors) is returned unused before
/// any device walks it: each walk of it would cost up to 64 Ki descriptor reads, which no
/// byte budget counts (a turn of 256 such chains kept the VMM thread busy for 0.28 s
/// (rng) to 0.42 s (vsock tx) in an optimised build).
pub const MAX_CHAIN_DESCRIPTORS: usize = 512;

/// One bounded pass over `queue`: hand each available chain to `f` until the ring is
/// empty, `f` stops, or a queue's worth of chains was used. Chains longer than
/// [`MAX_CHAIN_DESCRIPTORS`] are returned unused (length 0) without reaching `f`.
/// Notifications from the driver are suppressed while the device works and re-enabled once
/// the ring is empty or a queue's worth was used (with VIRTIO_RING_F_EVENT_IDX through
/// `avail_event`, otherwise through the used ring's NO_NOTIFY flag); a chain that raced the
/// re-enable is served in the same pass, or the next turn after a queue's worth. Errors
/// that concern the whole queue become a [`DeviceFault`]. The caller raises the interrupt
/// ([`QueueCtx::notify_used`]) once all its used chains of the turn are added.
pub fn drain_queue<F>(
    queue: &mut Queue,
    mem: &GuestMemoryMmap<()>,
    mut f: F,
) -> Result<Pass, DeviceFault>
where
    F: FnMut(DescriptorChain<&GuestMemoryMmap<()>>) -> Step,
{
    let mut pass = Pass::default();
    let limit = u32::from(queue.size());
    queue.disable_notification(mem)?;
    // Each round either uses a chain or ends the pass; the extra rounds cover re-enables
    // that race with the driver (bounded anyway, whatever the guest does).
    for _ in 0..limit.saturating_mul(2).saturating_add(2) {
        if pass.used >= limit {
            // A queue's worth for this turn. Notifications come back on before leaving
            // (a driver that sees them off never notifies again); what is still available,
            // or raced the re-enable, is the next turn's.
            pass.more = queue.enable_notification(mem)?;
            return Ok(pass);
        }
        let next = {
            let mut iter = queue.iter(mem)?;
            iter.next()
        };
        let Some(chain) = next else {
            if queue.enable_notification(mem)? {
                continue;
            }
            return Ok(pass);
        };
        let head = chain.head_index();
        if chain.clone().nth(MAX_CHAIN_DESCRIPTORS).is_some() {
            queue.add_used(mem, head, 0)?;
            pass.used = pass.used.saturating_add(1);
            continue;
        }
        match f(chain) {
            Step::Used(len) => {
                queue.add_used(mem, head, len)?;
                pass.used = pass.used.saturating_add(1);
            }
            Step::Keep => {
                queue.go_to_previous_position();
                return Ok(pass);
            }
            Step::Stop => {
                queue.go_to_previous_position();
                pass.more = true;
                return Ok(pass);
            }
            Step::Held => {
                pass.more = true;
                return Ok(pass);
            }
        }
    }
    pass.more = true;
    Ok(pass)
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
    let total = buf.len();
    chain_walk(chain, to_chain, skip, total, |addr, range| {
        buf.get_mut(range).is_some_and(|part| {
            if to_chain {
                mem.write_slice(part, addr).is_ok()
            } else {
                mem.read_slice(part, addr).is_ok()
            }
        })
    })
}

/// Write `data` into the device-writable bytes of a chain, starting `skip` bytes into them
/// (like [`chain_copy`] towards the chain, from a shared slice). Returns the bytes written
/// (short when the chain ends or memory is not accessible).
pub fn chain_write(
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    skip: u64,
    data: &[u8],
) -> usize {
    chain_walk(chain, true, skip, data.len(), |addr, range| {
        data.get(range)
            .is_some_and(|part| mem.write_slice(part, addr).is_ok())
    })
}

/// Walks the device-readable (`writable == false`) or device-writable bytes of a chain
/// from `skip` on, piece by piece, until `total` bytes: `io(addr, range)` moves the
/// caller's bytes at `range` to or from guest address `addr` and says whether it could.
/// Returns the bytes moved (short when the chain ends, an address overflows or `io` fails).
fn chain_walk(
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    writable: bool,
    skip: u64,
    total: usize,
    mut io: impl FnMut(GuestAddress, core::ops::Range<usize>) -> bool,
) -> usize {
    let mut pos: u64 = 0;
    let mut done: usize = 0;
    for d in chain.filter(|d| d.is_write_only() == writable) {
        if done >= total {
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
            .min(total.saturating_sub(done));
        let Some(addr) = d.addr().checked_add(inner) else {
            return done;
        };
        if !io(addr, done..done.saturating_add(take)) {
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

#[cfg(test)]
mod tests {
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{Address, Bytes, GuestMemoryMmap};

    use super::*;
    use crate::devices::virtio::test_utils::*;

    const SIZE: u16 = 16;

    /// Whether a driver that just moved the available index from `old` to `new` notifies
    /// the device (virtio 1.2, 2.7.7.2 and 2.7.10: `vring_need_event` with EVENT_IDX,
    /// otherwise the used ring's NO_NOTIFY flag).
    fn driver_kicks(
        vq: &MockSplitQueue<GuestMemoryMmap<()>>,
        m: &GuestMemoryMmap<()>,
        event_idx: bool,
        old: u16,
        new: u16,
    ) -> bool {
        let used = used_addr(vq);
        if event_idx {
            let at = used.unchecked_add(4 + 8 * u64::from(SIZE));
            let avail_event: u16 = m.read_obj(at).unwrap();
            new.wrapping_sub(avail_event).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            let flags: u16 = m.read_obj(used).unwrap();
            flags & 1 == 0
        }
    }

    /// Regression (review): a pass that used exactly a queue's worth of chains and found
    /// the ring empty returned without re-enabling notifications (NO_NOTIFY left set, or
    /// `avail_event` left a queue behind) and without asking for another turn: the driver
    /// then never notified again and the queue stalled for good (virtio-blk and -rng have
    /// no other wake-up). A driver that fills its ring in one go does this.
    #[test]
    fn a_full_queue_served_in_one_pass_still_hears_the_next_notification() {
        for event_idx in [false, true] {
            let m = mem();
            let vq = MockSplitQueue::new(&m, SIZE);
            let mut q: Queue = queue(&vq);
            q.set_event_idx(event_idx);
            for i in 0..SIZE {
                push_chain(&vq, &m, &chain(&[(0x1_0000, 1, true)], i), i);
            }
            let pass = drain_queue(&mut q, &m, |_| Step::Used(0)).unwrap();
            assert_eq!(pass.used, u32::from(SIZE), "event_idx {event_idx}");
            if pass.more {
                // Asking for another turn would do as well: that turn re-enables them.
                continue;
            }
            push_chain(&vq, &m, &chain(&[(0x1_0000, 1, true)], 0), 0);
            assert!(
                driver_kicks(&vq, &m, event_idx, SIZE, SIZE + 1),
                "event_idx {event_idx}: the driver sees no need to notify and nothing else will come"
            );
        }
    }
}
