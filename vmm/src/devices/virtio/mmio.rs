// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-mmio version 2 transport: the register state machine, run on the vcpu threads.
//! Device work runs elsewhere ([`super::worker::Worker`], on the VMM thread); the two share
//! only atomics (interrupt status, DEVICE_NEEDS_RESET, a "yield now" flag), and a register
//! access never waits for device work. Activation (DRIVER_OK) and reset take the worker's
//! lock after asking it to yield, which it does within one chunk of work.
//! Queue notifications normally never get here: at the device's first accepted DRIVER_OK
//! the transport fires the registrar the VMM armed ([`super::LazyNotify`]), which registers
//! a KVM ioeventfd per queue on QueueNotify (datamatch = queue index), so KVM signals the
//! queue's eventfd without leaving the kernel; a notify that does exit (before that first
//! DRIVER_OK, no ioeventfd support, another width or value) signals the same eventfd from
//! here. Registration happens once per device: resets and later DRIVER_OKs keep it.
//!
//! What the guest reads is kept in the device's register page ([`RegisterPage`]): after
//! every register write the transport re-renders the words a write can change (features
//! for the selected half, the selected queue's size and readiness, the status), the
//! worker sets DEVICE_NEEDS_RESET there, and InterruptStatus lives there. On x86_64 the
//! VMM maps the page into the guest as a read-only KVM memory slot over the device's
//! window, so a register read never leaves the guest (a device interrupt costs one exit,
//! the acknowledgement, instead of two); a read that does exit (no KVM_CAP_READONLY_MEM,
//! aarch64) is answered from the same page, so both paths see the same bytes.
//!
//! Guest rules enforced here:
//! - registers are 32-bit; writes of other widths are ignored; a read of any width
//!   returns the page's bytes (what the covering 32-bit reads would give);
//! - writes to read-only registers are ignored;
//! - features may only be written between DRIVER and FEATURES_OK; FEATURES_OK is refused
//!   (stays clear) unless the driver acked VERSION_1 and nothing we did not offer;
//! - queue registers may only be written between FEATURES_OK and DRIVER_OK; a queue size
//!   that is zero, not a power of two or above the maximum makes QueueReady refuse, as do
//!   misaligned rings or rings outside guest memory;
//! - DRIVER_OK is refused without FEATURES_OK or with a queue not ready;
//! - status 0 resets the device and drops all queue state;
//! - a device fault sets DEVICE_NEEDS_RESET and raises a config interrupt; queues are not
//!   processed again until reset.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::queue::{DeviceFault, Interrupt};
use super::worker::{Shared, SharedWorker, Worker};
use super::{LazyNotify, VirtioDevice, VirtioError, F_EVENT_IDX, F_VERSION_1};
use crate::devices::bus::MmioDevice;
use crate::devices::irq::IrqLine;
use crate::sys::{RegisterPage, REGISTER_PAGE_SIZE};

// The register page covers the whole device window.
const _: () = assert!(reg::WINDOW as usize == REGISTER_PAGE_SIZE);

/// Event data values at or above this belong to the device, below are queue indexes.
pub const EXTRA_EVENT_BASE: u32 = 0x100;

/// "virt"
pub const MAGIC: u32 = 0x7472_6976;
/// Vendor id reported to the guest ("ANCH").
pub const VENDOR_ID: u32 = 0x4843_4e41;

/// Register offsets (virtio spec 1.2, 4.2.2).
pub mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_AVAIL_LOW: u64 = 0x090;
    pub const QUEUE_AVAIL_HIGH: u64 = 0x094;
    pub const QUEUE_USED_LOW: u64 = 0x0a0;
    pub const QUEUE_USED_HIGH: u64 = 0x0a4;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
    /// End of the device window.
    pub const WINDOW: u64 = 0x1000;
}

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// Driver-programmed parameters of one queue, applied to the `Queue` at QueueReady.
#[derive(Debug, Clone, Copy, Default)]
struct QueueRegs {
    size: u32,
    desc: u64,
    avail: u64,
    used: u64,
}

/// The register side of one device.
#[derive(Debug)]
pub struct MmioTransport<D> {
    worker: SharedWorker<D>,
    shared: Arc<Shared>,
    mem: GuestMemoryMmap<()>,
    features: u64,
    /// The driver's view of each queue, validated at QueueReady; handed to the worker (as
    /// state) at DRIVER_OK.
    queues: Vec<Queue>,
    regs: Vec<QueueRegs>,
    /// The queues' notification eventfds (the worker's, duplicated).
    notify: Vec<EventFd>,
    /// Turns `notify` into KVM ioeventfds at the first accepted DRIVER_OK.
    lazy_notify: Arc<LazyNotify>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
}

fn set_half(v: u64, high: bool, half: u32) -> u64 {
    if high {
        (v & 0xffff_ffff) | (u64::from(half) << 32)
    } else {
        (v & !0xffff_ffff) | u64::from(half)
    }
}

fn half(v: u64, high: bool) -> u32 {
    let h = if high { v >> 32 } else { v & 0xffff_ffff };
    u32::try_from(h).unwrap_or(0)
}

/// Writes the registers that never change (identity, shared-memory regions: none, the
/// configuration generation, the configuration space) into a fresh register page.
fn write_fixed_registers(page: &RegisterPage, device_type: u32, config: &[u8]) {
    let set = |offset: u64, v: u32| page.set(offset, v);
    set(reg::MAGIC, MAGIC);
    set(reg::VERSION, 2);
    set(reg::DEVICE_ID, device_type);
    set(reg::VENDOR_ID, VENDOR_ID);
    // No shared memory regions: every length and base reads as all ones.
    for offset in (reg::SHM_LEN_LOW..=reg::SHM_BASE_HIGH).step_by(4) {
        set(offset, u32::MAX);
    }
    set(reg::CONFIG_GENERATION, 0);
    for (offset, chunk) in (reg::CONFIG..).step_by(4).zip(config.chunks(4)) {
        let mut b = [0u8; 4];
        b.iter_mut().zip(chunk).for_each(|(d, s)| *d = *s);
        set(offset, u32::from_le_bytes(b));
    }
}

/// A read of `data.len()` bytes at `offset` in the window, from the page (bytes past the
/// page read as 0).
fn read_page(page: &RegisterPage, offset: u64, data: &mut [u8]) {
    for (i, byte) in (0u64..).zip(data.iter_mut()) {
        *byte = offset.checked_add(i).map_or(0, |at| {
            page.get(at & !3)
                .to_le_bytes()
                .get((at & 3) as usize)
                .copied()
                .unwrap_or(0)
        });
    }
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Wrap `device`; `irq` is the device's interrupt line. Returns the register side
    /// (for the MMIO bus) and the worker (for the event loop).
    pub fn new(
        mem: GuestMemoryMmap<()>,
        irq: IrqLine,
        device: D,
    ) -> Result<(Self, SharedWorker<D>), VirtioError> {
        let interrupt = Interrupt::new(irq).map_err(VirtioError::RegisterPage)?;
        Self::with_interrupt(mem, interrupt, device)
    }

    /// Wrap `device` with a given interrupt (tests use one without irqfd); the registers
    /// live in the interrupt's register page.
    pub fn with_interrupt(
        mem: GuestMemoryMmap<()>,
        interrupt: Interrupt,
        device: D,
    ) -> Result<(Self, SharedWorker<D>), VirtioError> {
        let sizes = device.queue_max_sizes();
        let mut queues = Vec::with_capacity(sizes.len());
        let mut evts = Vec::with_capacity(sizes.len());
        let mut notify = Vec::with_capacity(sizes.len());
        for &max in sizes {
            queues.push(Queue::new(max).map_err(VirtioError::Queue)?);
            let e = EventFd::new(EFD_NONBLOCK).map_err(VirtioError::EventFd)?;
            notify.push(e.try_clone().map_err(VirtioError::EventFd)?);
            evts.push(e);
        }
        write_fixed_registers(
            interrupt.page(),
            device.device_type(),
            device.config_space(),
        );
        let shared = Arc::new(Shared::new(interrupt));
        let transport = Self {
            regs: vec![QueueRegs::default(); sizes.len()],
            features: device.avail_features() | F_VERSION_1,
            worker: Arc::new(Mutex::new(Worker::new(
                device,
                mem.clone(),
                evts,
                shared.clone(),
            ))),
            shared,
            mem,
            queues,
            notify,
            lazy_notify: Arc::new(LazyNotify::default()),
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
        };
        transport.publish();
        let worker = transport.worker.clone();
        Ok((transport, worker))
    }

    /// Device status register (with DEVICE_NEEDS_RESET when the device failed).
    pub fn status(&self) -> u32 {
        if self.shared.needs_reset.load(Ordering::SeqCst) {
            self.status | status::DEVICE_NEEDS_RESET
        } else {
            self.status
        }
    }

    /// Interrupt state (tests).
    pub fn interrupt(&self) -> &Interrupt {
        &self.shared.interrupt
    }

    /// The page holding the registers as the guest reads them (the VMM maps it into the
    /// guest read-only where KVM allows).
    pub fn register_page(&self) -> Arc<RegisterPage> {
        self.shared.interrupt.page().clone()
    }

    /// The queue notification eventfds, by queue index (the VMM registers them as KVM
    /// ioeventfds on QueueNotify).
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.notify
    }

    /// The slot the VMM arms with its ioeventfd registrar (fired at the first accepted
    /// DRIVER_OK, then never again).
    pub fn lazy_notify(&self) -> Arc<LazyNotify> {
        self.lazy_notify.clone()
    }

    /// Whether the device is running (tests).
    pub fn is_active(&self) -> bool {
        self.worker.lock().is_ok_and(|w| w.is_active())
    }

    /// Run `f` on the worker once it yields (see the module doc). `None` if the worker's
    /// lock is poisoned (never with panic = "abort").
    fn with_worker<R>(&self, f: impl FnOnce(&mut Worker<D>) -> R) -> Option<R> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let r = self.worker.lock().ok().map(|mut w| f(&mut w));
        self.shared.stop.store(false, Ordering::SeqCst);
        r
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        for r in &mut self.regs {
            *r = QueueRegs::default();
        }
        let shared = self.shared.clone();
        self.with_worker(|w| {
            w.reset();
            shared.clear_needs_reset();
        });
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.shared.interrupt.ack(u32::MAX);
    }

    /// Mark the device broken (tests; the worker does this on a device fault).
    pub fn fail(&mut self, fault: DeviceFault) {
        self.with_worker(|w| w.fail(fault));
    }

    fn selected(&self) -> Option<usize> {
        let i = usize::try_from(self.queue_sel).ok()?;
        (i < self.queues.len()).then_some(i)
    }

    fn queue_config_allowed(&self) -> bool {
        let st = self.status();
        st & status::FEATURES_OK != 0
            && st & (status::DRIVER_OK | status::FAILED | status::DEVICE_NEEDS_RESET) == 0
    }

    /// Re-renders the words of the register page that a register write can change.
    /// (InterruptStatus and DEVICE_NEEDS_RESET are kept there by their writers.)
    fn publish(&self) {
        let page = self.shared.interrupt.page();
        let set = |offset: u64, v: u32| page.set(offset, v);
        set(
            reg::DEVICE_FEATURES,
            match self.device_features_sel {
                0 => half(self.features, false),
                1 => half(self.features, true),
                _ => 0,
            },
        );
        let queue = self.selected().and_then(|i| self.queues.get(i));
        set(
            reg::QUEUE_NUM_MAX,
            queue.map_or(0, |q| u32::from(q.max_size())),
        );
        set(reg::QUEUE_READY, queue.map_or(0, |q| u32::from(q.ready())));
        if let Some(w) = page.word(reg::STATUS) {
            // Keep DEVICE_NEEDS_RESET, which the worker may set at any moment.
            let _ = w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |old| {
                Some(self.status | (old & status::DEVICE_NEEDS_RESET))
            });
        }
    }

    fn write_queue_reg(&mut self, offset: u64, val: u32) {
        if !self.queue_config_allowed() {
            return;
        }
        let Some(i) = self.selected() else { return };
        // A ready queue's parameters are frozen until it is un-readied or reset.
        let ready = self.queues.get(i).is_some_and(|q| q.ready());
        if offset == reg::QUEUE_READY {
            match val {
                0 => {
                    if let Some(q) = self.queues.get_mut(i) {
                        q.set_ready(false);
                    }
                }
                1 => self.try_ready(i),
                _ => {}
            }
            return;
        }
        if ready {
            return;
        }
        let Some(r) = self.regs.get_mut(i) else {
            return;
        };
        match offset {
            reg::QUEUE_NUM => r.size = val,
            reg::QUEUE_DESC_LOW => r.desc = set_half(r.desc, false, val),
            reg::QUEUE_DESC_HIGH => r.desc = set_half(r.desc, true, val),
            reg::QUEUE_AVAIL_LOW => r.avail = set_half(r.avail, false, val),
            reg::QUEUE_AVAIL_HIGH => r.avail = set_half(r.avail, true, val),
            reg::QUEUE_USED_LOW => r.used = set_half(r.used, false, val),
            reg::QUEUE_USED_HIGH => r.used = set_half(r.used, true, val),
            _ => {}
        }
    }

    /// Apply the programmed parameters and mark queue `i` ready, or leave it not ready
    /// when anything is invalid (the driver reads QueueReady back as 0).
    fn try_ready(&mut self, i: usize) {
        let (Some(r), Some(q)) = (self.regs.get(i).copied(), self.queues.get_mut(i)) else {
            return;
        };
        let Ok(size) = u16::try_from(r.size) else {
            return;
        };
        if q.try_set_size(size).is_err()
            || q.try_set_desc_table_address(GuestAddress(r.desc)).is_err()
            || q.try_set_avail_ring_address(GuestAddress(r.avail)).is_err()
            || q.try_set_used_ring_address(GuestAddress(r.used)).is_err()
        {
            return;
        }
        q.set_next_avail(0);
        q.set_next_used(0);
        q.set_ready(true);
        if !q.is_valid(&self.mem) {
            q.set_ready(false);
        }
    }

    fn write_status(&mut self, val: u32) {
        if val == 0 {
            self.reset();
            return;
        }
        if val & status::FAILED != 0 {
            self.status |= status::FAILED;
            self.with_worker(Worker::deactivate);
            return;
        }
        let cur = self.status();
        let new_bits = val & !cur;
        // Status bits only accumulate, in order.
        if val & cur != cur {
            return;
        }
        let next = match new_bits {
            status::ACKNOWLEDGE if cur == 0 => val,
            status::DRIVER if cur == status::ACKNOWLEDGE => val,
            status::FEATURES_OK if cur == status::ACKNOWLEDGE | status::DRIVER => {
                let acked = self.driver_features;
                if acked & !self.features != 0 || acked & F_VERSION_1 == 0 {
                    return;
                }
                val
            }
            status::DRIVER_OK
                if cur == status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK =>
            {
                if !self.queues.iter().all(|q| q.ready()) {
                    return;
                }
                self.status = val;
                self.lazy_notify.fire(&self.notify);
                let event_idx = self.driver_features & F_EVENT_IDX != 0;
                let states: Vec<_> = self
                    .queues
                    .iter()
                    .map(|q| {
                        let mut st = q.state();
                        st.event_idx_enabled = event_idx;
                        st
                    })
                    .collect();
                // A refusal marks the device failed (DEVICE_NEEDS_RESET) in the worker.
                self.with_worker(|w| w.activate(&states));
                return;
            }
            _ => return,
        };
        self.status = next;
    }

    fn write_reg(&mut self, offset: u64, val: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = val,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = val,
            reg::DRIVER_FEATURES => {
                let writable = self.status & status::DRIVER != 0
                    && self.status & (status::FEATURES_OK | status::FAILED) == 0;
                if writable {
                    match self.driver_features_sel {
                        0 => self.driver_features = set_half(self.driver_features, false, val),
                        1 => self.driver_features = set_half(self.driver_features, true, val),
                        // Features above bit 63 do not exist: acking one is acking an
                        // unknown feature, remembered so FEATURES_OK is refused.
                        _ if val != 0 => self.driver_features |= 1 << 63,
                        _ => {}
                    }
                }
            }
            reg::QUEUE_SEL => self.queue_sel = val,
            reg::QUEUE_NUM
            | reg::QUEUE_READY
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_AVAIL_LOW
            | reg::QUEUE_AVAIL_HIGH
            | reg::QUEUE_USED_LOW
            | reg::QUEUE_USED_HIGH => self.write_queue_reg(offset, val),
            reg::QUEUE_NOTIFY => {
                // Only reached when KVM did not take the notify (see the module doc).
                crate::stats::NOTIFY_EXITS.fetch_add(1, Ordering::Relaxed);
                if let Some(e) = usize::try_from(val).ok().and_then(|i| self.notify.get(i)) {
                    let _ = e.write(1);
                }
            }
            reg::INTERRUPT_ACK => self.shared.interrupt.ack(val),
            reg::STATUS => self.write_status(val),
            // Everything else is read-only or reserved.
            _ => {}
        }
    }
}

impl<D: VirtioDevice> MmioDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Only here when the read exited (see the module doc).
        crate::stats::REGISTER_READ_EXITS.fetch_add(1, Ordering::Relaxed);
        read_page(self.shared.interrupt.page(), offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            // No device here has writable configuration fields.
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if offset % 4 != 0 {
            return;
        }
        self.write_reg(offset, u32::from_le_bytes(bytes));
        self.publish();
    }
}

#[cfg(test)]
impl<D: VirtioDevice> MmioTransport<D> {
    /// Run queue `index` on the worker, as the event loop would.
    pub(crate) fn run_queue(&self, index: usize, reg: &mut dyn super::queue::FdRegistry) {
        if let Ok(mut w) = self.worker.lock() {
            w.run_queue(index, reg);
        }
    }

    /// The worker (tests that play the event loop's part).
    pub(crate) fn worker(&self) -> SharedWorker<D> {
        self.worker.clone()
    }

    /// The shared state (tests).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Guest memory (tests).
    pub(crate) fn mem(&self) -> &GuestMemoryMmap<()> {
        &self.mem
    }
}

#[cfg(test)]
mod tests;
