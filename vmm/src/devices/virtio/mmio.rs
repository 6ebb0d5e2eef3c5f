// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-mmio version 2 transport: the register state machine (vcpu threads) and the
//! event subscriber that runs queue processing (VMM thread).
//!
//! Guest rules enforced here:
//! - registers are 32-bit; other access widths read as 0 and are ignored on write;
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

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use std::os::fd::{AsRawFd, RawFd};

use super::queue::{DeviceFault, FdRegistry, Interrupt, QueueCtx, INT_CONFIG};
use super::{VirtioDevice, VirtioError, F_VERSION_1};
use crate::devices::bus::MmioDevice;

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

/// The transport around one device.
#[derive(Debug)]
pub struct MmioTransport<D> {
    device: D,
    mem: GuestMemoryMmap<()>,
    interrupt: Interrupt,
    queues: Vec<Queue>,
    regs: Vec<QueueRegs>,
    queue_evts: Vec<EventFd>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    config_generation: u32,
    active: bool,
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

impl<D: VirtioDevice> MmioTransport<D> {
    /// Wrap `device`; `irq` is the irqfd for the device's GSI.
    pub fn new(mem: GuestMemoryMmap<()>, irq: EventFd, device: D) -> Result<Self, VirtioError> {
        Self::with_interrupt(mem, Interrupt::new(Some(irq)), device)
    }

    /// Wrap `device` with a given interrupt (tests use one without irqfd).
    pub fn with_interrupt(
        mem: GuestMemoryMmap<()>,
        interrupt: Interrupt,
        device: D,
    ) -> Result<Self, VirtioError> {
        let sizes = device.queue_max_sizes();
        let mut queues = Vec::with_capacity(sizes.len());
        let mut queue_evts = Vec::with_capacity(sizes.len());
        for &max in sizes {
            queues.push(Queue::new(max).map_err(VirtioError::Queue)?);
            queue_evts.push(EventFd::new(EFD_NONBLOCK).map_err(VirtioError::EventFd)?);
        }
        Ok(Self {
            regs: vec![QueueRegs::default(); sizes.len()],
            device,
            mem,
            interrupt,
            queues,
            queue_evts,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            config_generation: 0,
            active: false,
        })
    }

    /// The wrapped device (tests).
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Interrupt state (tests).
    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// The queue notification eventfds, by queue index.
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// Whether DRIVER_OK was accepted and the device has not failed since.
    pub fn is_active(&self) -> bool {
        self.active
    }

    fn features(&self) -> u64 {
        self.device.avail_features() | F_VERSION_1
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        for r in &mut self.regs {
            *r = QueueRegs::default();
        }
        self.device.reset();
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.active = false;
        self.interrupt.ack(u32::MAX);
        // Wake the event loop once so the device can release what the reset dropped.
        // (Pending notifications are not drained here: this runs on a vcpu thread, whose
        // seccomp filter has no read(2); the VMM thread reads them and, the device being
        // inactive, ignores them.)
        if let Some(e) = self.queue_evts.first() {
            let _ = e.write(1);
        }
    }

    /// Mark the device broken: DEVICE_NEEDS_RESET + config interrupt, no more processing.
    pub fn fail(&mut self, _fault: DeviceFault) {
        self.active = false;
        self.status |= status::DEVICE_NEEDS_RESET;
        self.interrupt.raise(INT_CONFIG);
    }

    fn selected(&self) -> Option<usize> {
        let i = usize::try_from(self.queue_sel).ok()?;
        (i < self.queues.len()).then_some(i)
    }

    fn queue_config_allowed(&self) -> bool {
        self.status & status::FEATURES_OK != 0
            && self.status & (status::DRIVER_OK | status::FAILED | status::DEVICE_NEEDS_RESET) == 0
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let max_size = |i: usize| self.queues.get(i).map_or(0, |q| u32::from(q.max_size()));
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => 2,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => half(self.features(), false),
                1 => half(self.features(), true),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected().map_or(0, max_size),
            reg::QUEUE_READY => self
                .selected()
                .and_then(|i| self.queues.get(i))
                .map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => self.status,
            reg::SHM_LEN_LOW..=reg::SHM_BASE_HIGH => u32::MAX,
            reg::CONFIG_GENERATION => self.config_generation,
            _ => 0,
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
            self.active = false;
            return;
        }
        let new_bits = val & !self.status;
        // Status bits only accumulate, in order.
        if val & self.status != self.status {
            return;
        }
        let next = match new_bits {
            status::ACKNOWLEDGE if self.status == 0 => val,
            status::DRIVER if self.status == status::ACKNOWLEDGE => val,
            status::FEATURES_OK if self.status == status::ACKNOWLEDGE | status::DRIVER => {
                let acked = self.driver_features;
                if acked & !self.features() != 0 || acked & F_VERSION_1 == 0 {
                    return;
                }
                val
            }
            status::DRIVER_OK
                if self.status == status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK =>
            {
                if !self.queues.iter().all(|q| q.ready()) {
                    return;
                }
                self.status = val;
                let mut ctx = QueueCtx {
                    mem: &self.mem,
                    queues: &mut self.queues,
                    interrupt: &mut self.interrupt,
                };
                match self.device.activate(&mut ctx) {
                    Ok(()) => self.active = true,
                    Err(f) => self.fail(f),
                }
                // Buffers made available before DRIVER_OK are picked up now.
                for e in &self.queue_evts {
                    let _ = e.write(1);
                }
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
                if let Some(e) = usize::try_from(val)
                    .ok()
                    .and_then(|i| self.queue_evts.get(i))
                {
                    let _ = e.write(1);
                }
            }
            reg::INTERRUPT_ACK => self.interrupt.ack(val),
            reg::STATUS => self.write_status(val),
            // Everything else is read-only or reserved.
            _ => {}
        }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let cfg = self.device.config_space();
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        let Some(end) = start.checked_add(data.len()) else {
            return;
        };
        if let Some(src) = cfg.get(start..end) {
            data.copy_from_slice(src);
        }
    }

    /// Run queue `index` once (event loop). Public for tests that drive the transport
    /// without an event manager.
    pub fn run_queue(&mut self, index: usize, reg: &mut dyn FdRegistry) {
        let Some(evt) = self.queue_evts.get(index) else {
            return;
        };
        let _ = evt.read();
        self.device.housekeeping(reg);
        if !self.active {
            return;
        }
        let mut ctx = QueueCtx {
            mem: &self.mem,
            queues: &mut self.queues,
            interrupt: &mut self.interrupt,
        };
        match self.device.process_queue(index, &mut ctx, reg) {
            Ok(true) => {
                if let Some(e) = self.queue_evts.get(index) {
                    let _ = e.write(1);
                }
            }
            Ok(false) => {}
            Err(f) => self.fail(f),
        }
    }
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Dispatch an event on a device-specific fd (event loop; tests call it directly).
    pub fn run_extra(&mut self, fd: RawFd, data: u32, set: EventSet, reg: &mut dyn FdRegistry) {
        self.device.housekeeping(reg);
        let res = if self.active {
            let mut ctx = QueueCtx {
                mem: &self.mem,
                queues: &mut self.queues,
                interrupt: &mut self.interrupt,
            };
            self.device
                .process_extra(fd, data, set, reg, Some(&mut ctx))
        } else {
            self.device.process_extra(fd, data, set, reg, None)
        };
        match res {
            Ok(true) => {
                if let Some(e) = self.queue_evts.first() {
                    let _ = e.write(1);
                }
            }
            Ok(false) => {}
            Err(f) => self.fail(f),
        }
    }

    /// Register the queue eventfds and the device's own fds.
    pub fn register(&mut self, reg: &mut dyn FdRegistry) {
        for (i, e) in self.queue_evts.iter().enumerate() {
            let Ok(data) = u32::try_from(i) else { continue };
            // Registration only fails on resource exhaustion at setup: the device then
            // simply never processes that queue (no panic on the VMM thread).
            let _ = reg.add(e.as_raw_fd(), data, EventSet::IN);
        }
        self.device.register_extra(reg);
    }
}

impl<D: VirtioDevice> MmioDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            let off = offset.saturating_sub(reg::CONFIG);
            self.read_config(off, data);
            return;
        }
        data.fill(0);
        if data.len() != 4 || offset % 4 != 0 {
            return;
        }
        let v = self.read_reg(offset).to_le_bytes();
        data.copy_from_slice(&v);
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
    }
}

impl<D: VirtioDevice> MutEventSubscriber for MmioTransport<D> {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let data = events.data();
        if data < EXTRA_EVENT_BASE {
            if let Ok(i) = usize::try_from(data) {
                self.run_queue(i, ops);
            }
            return;
        }
        self.run_extra(events.fd(), data, events.event_set(), ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        self.register(ops);
    }
}

#[cfg(test)]
mod tests;
