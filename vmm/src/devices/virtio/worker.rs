// SPDX-License-Identifier: GPL-3.0-or-later
//! The device side of a virtio-mmio device: its queues and its work, run by the VMM
//! thread's event loop. The register side ([`super::mmio::MmioTransport`]) lives on the
//! vcpu threads and shares only [`Shared`] (atomics) with it, so a vcpu reading or writing
//! a register never waits for block I/O or vsock work.
//!
//! The vcpu side takes this worker's lock only to activate (DRIVER_OK) or stop (reset,
//! FAILED) the device; it first raises [`Shared::stop`], and device work checks it between
//! chunks of at most [`super::queue::CHUNK_BOUND`] bytes, so that wait is short.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::{Queue, QueueState, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::mmio::EXTRA_EVENT_BASE;
use super::queue::{DeviceFault, FdRegistry, Interrupt, QueueCtx, QueueMask, INT_CONFIG};
use super::VirtioDevice;

/// What the register side and the worker share.
#[derive(Debug)]
pub struct Shared {
    /// InterruptStatus and the irqfd.
    pub interrupt: Interrupt,
    /// Set by the worker when the device failed (DEVICE_NEEDS_RESET), cleared by a reset.
    pub needs_reset: AtomicBool,
    /// Set by a vcpu that waits for the worker's lock: device work yields at the next chunk.
    pub stop: AtomicBool,
}

impl Shared {
    /// Shared state around `interrupt`.
    pub fn new(interrupt: Interrupt) -> Self {
        Self {
            interrupt,
            needs_reset: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// The device failed: DEVICE_NEEDS_RESET in the status the guest reads. Called with
    /// the worker's lock held, as `clear_needs_reset` is, so the two never interleave.
    pub fn set_needs_reset(&self) {
        self.needs_reset.store(true, Ordering::SeqCst);
        if let Some(w) = self.interrupt.page().word(super::mmio::reg::STATUS) {
            w.fetch_or(super::mmio::status::DEVICE_NEEDS_RESET, Ordering::SeqCst);
        }
    }

    /// A reset: DEVICE_NEEDS_RESET cleared (worker's lock held, see `set_needs_reset`).
    pub fn clear_needs_reset(&self) {
        self.needs_reset.store(false, Ordering::SeqCst);
        if let Some(w) = self.interrupt.page().word(super::mmio::reg::STATUS) {
            w.fetch_and(!super::mmio::status::DEVICE_NEEDS_RESET, Ordering::SeqCst);
        }
    }
}

/// A worker as shared between the register side and the event loop.
pub type SharedWorker<D> = Arc<std::sync::Mutex<Worker<D>>>;

/// The device, its queues and their notification eventfds.
#[derive(Debug)]
pub struct Worker<D> {
    device: D,
    mem: GuestMemoryMmap<()>,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    shared: Arc<Shared>,
    active: bool,
}

impl<D: VirtioDevice> Worker<D> {
    /// A worker for `device` with one notification eventfd per queue.
    pub fn new(
        device: D,
        mem: GuestMemoryMmap<()>,
        queue_evts: Vec<EventFd>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            device,
            mem,
            queues: Vec::new(),
            queue_evts,
            shared,
            active: false,
        }
    }

    /// The wrapped device (tests).
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The wrapped device (tests).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Whether the device is running (DRIVER_OK accepted, not failed or reset since).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The queue notification eventfds, by queue index.
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// Start the device on queues in the validated states `states` (DRIVER_OK; vcpu thread,
    /// under this worker's lock). Returns false when a queue could not be rebuilt or the
    /// device refused to start (either way it is then marked failed).
    pub(super) fn activate(&mut self, states: &[QueueState]) -> bool {
        self.queues.clear();
        for st in states {
            match Queue::try_from(*st) {
                Ok(q) if q.is_valid(&self.mem) => self.queues.push(q),
                // The transport validates a queue when it is made ready, so this is not
                // reached through the registers; were it, the guest must see a failed
                // device, not a DRIVER_OK one that never runs.
                _ => {
                    self.queues.clear();
                    self.fail(DeviceFault::RingAccess);
                    return false;
                }
            }
        }
        let mut ctx = QueueCtx {
            mem: &self.mem,
            queues: &mut self.queues,
            interrupt: &self.shared.interrupt,
            stop: &self.shared.stop,
        };
        match self.device.activate(&mut ctx) {
            Ok(()) => {
                self.active = true;
                // Buffers made available before DRIVER_OK are picked up now.
                self.rearm(QueueMask::MAX);
                true
            }
            Err(f) => {
                self.fail(f);
                false
            }
        }
    }

    /// Stop the device and drop every piece of driver-derived state (status 0 or FAILED;
    /// vcpu thread, under this worker's lock).
    pub(super) fn reset(&mut self) {
        self.queues.clear();
        self.device.reset();
        self.active = false;
        // Wake the event loop once so the device can release what the reset dropped.
        // (Pending notifications are not drained here: this runs on a vcpu thread, whose
        // seccomp filter has no read(2); the VMM thread reads them and, the device being
        // inactive, ignores them.)
        if let Some(e) = self.queue_evts.first() {
            let _ = e.write(1);
        }
    }

    /// Stop processing without dropping state (the driver set FAILED).
    pub(super) fn deactivate(&mut self) {
        self.active = false;
    }

    /// Mark the device broken: DEVICE_NEEDS_RESET + config interrupt, no more processing.
    pub fn fail(&mut self, _fault: DeviceFault) {
        self.active = false;
        self.shared.set_needs_reset();
        self.shared.interrupt.raise(INT_CONFIG);
    }

    fn rearm(&self, mask: QueueMask) {
        for (i, e) in self.queue_evts.iter().enumerate() {
            if mask & super::queue::queue_bit(i) != 0 {
                let _ = e.write(1);
            }
        }
    }

    /// Run queue `index` once (event loop; tests call it directly).
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
            interrupt: &self.shared.interrupt,
            stop: &self.shared.stop,
        };
        match self.device.process_queue(index, &mut ctx, reg) {
            Ok(mask) => self.rearm(mask),
            Err(f) => self.fail(f),
        }
    }

    /// Dispatch an event on a device-specific fd (event loop; tests call it directly).
    pub fn run_extra(&mut self, fd: RawFd, data: u32, set: EventSet, reg: &mut dyn FdRegistry) {
        self.device.housekeeping(reg);
        let res = if self.active {
            let mut ctx = QueueCtx {
                mem: &self.mem,
                queues: &mut self.queues,
                interrupt: &self.shared.interrupt,
                stop: &self.shared.stop,
            };
            self.device
                .process_extra(fd, data, set, reg, Some(&mut ctx))
        } else {
            self.device.process_extra(fd, data, set, reg, None)
        };
        match res {
            Ok(mask) => self.rearm(mask),
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

impl<D: VirtioDevice> MutEventSubscriber for Worker<D> {
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
