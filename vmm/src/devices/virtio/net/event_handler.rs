// SPDX-License-Identifier: GPL-3.0-or-later
//! The thin event side of virtio-net: the backend socket's readiness edges and the
//! `VirtioDevice` glue that runs the queue logic of the parent module after each event.

use std::os::fd::{AsRawFd, RawFd};

use event_manager::EventSet;

use super::{Net, EV_BACKEND, F_MAC, F_MTU, QUEUE_SIZES, RXQ, TURN_BYTES, TXQ};
use crate::devices::virtio::queue::{
    queue_bit, Budget, DeviceFault, FdRegistry, QueueCtx, QueueMask,
};
use crate::devices::virtio::{VirtioDevice, F_EVENT_IDX, F_INDIRECT_DESC, TYPE_NET};

impl Net {
    /// Run tx (when asked, or when chains wait for room) and rx after any event, within
    /// one turn's budget, and raise the interrupt for each queue that used buffers (unless
    /// the driver suppressed it). Returns the queues with work left for another turn.
    pub(super) fn pump(
        &mut self,
        ctx: &mut QueueCtx<'_>,
        reg: &mut dyn FdRegistry,
        tx: bool,
    ) -> Result<QueueMask, DeviceFault> {
        let mut budget = Budget::new(TURN_BYTES, ctx.stop);
        let mut mask = 0;
        let (mut tx_used, mut rx_used) = (0, 0);
        self.flush(reg);
        if tx || self.tx_blocked {
            if let Some(q) = ctx.queues.get_mut(TXQ) {
                let p = self.process_tx(q, ctx.mem, reg, &mut budget)?;
                tx_used = p.used;
                if p.more {
                    mask |= queue_bit(TXQ);
                }
            }
        }
        if let Some(q) = ctx.queues.get_mut(RXQ) {
            let p = self.process_rx(q, ctx.mem, reg, &mut budget)?;
            rx_used = p.used;
            if p.more {
                mask |= queue_bit(RXQ);
            }
        }
        if self.tx_blocked && self.backend.is_none() {
            // The backend went away while chains waited for room: come back and drop them.
            mask |= queue_bit(TXQ);
        }
        if tx_used > 0 {
            ctx.notify_used(TXQ)?;
        }
        if rx_used > 0 {
            ctx.notify_used(RXQ)?;
        }
        Ok(mask)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }
    fn avail_features(&self) -> u64 {
        // No offloads (see the module documentation).
        F_MAC | F_MTU | F_EVENT_IDX | F_INDIRECT_DESC
    }
    fn queue_max_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }
    fn config_space(&self) -> &[u8] {
        &self.config
    }
    fn reset(&mut self) {
        // The backend connection belongs to the room, not to the driver: it stays open.
        // Frames already queued either way stay queued (they are whole frames, so the
        // stream keeps its framing); chains are the driver's and are forgotten.
        self.tx_blocked = false;
    }
    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueCtx<'_>,
        reg: &mut dyn FdRegistry,
    ) -> Result<QueueMask, DeviceFault> {
        self.pump(ctx, reg, index == TXQ)
    }
    fn register_extra(&mut self, reg: &mut dyn FdRegistry) {
        let Some(s) = self.backend.as_ref() else {
            return;
        };
        // Edge-triggered: the device keeps its own readable/writable flags, so a socket
        // with data that cannot be taken now (no rx chains) does not wake the loop again.
        let set = EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        if !reg.add(s.as_raw_fd(), EV_BACKEND, set) {
            crate::log::say(format_args!(
                "net: cannot watch the backend socket; the room has no network"
            ));
            self.backend = None;
        }
    }
    fn process_extra(
        &mut self,
        _fd: RawFd,
        data: u32,
        set: EventSet,
        reg: &mut dyn FdRegistry,
        ctx: Option<&mut QueueCtx<'_>>,
    ) -> Result<QueueMask, DeviceFault> {
        if data != EV_BACKEND {
            return Ok(0);
        }
        // Errors and hang-ups make the next read or write report them (and close).
        let gone = EventSet::HANG_UP | EventSet::ERROR;
        self.set_ready(
            set.intersects(EventSet::IN | EventSet::READ_HANG_UP | gone),
            set.intersects(EventSet::OUT | gone),
        );
        match ctx {
            Some(ctx) => self.pump(ctx, reg, false),
            None => {
                // Driver not running: frames already accepted still go out; nothing is
                // read (the backend waits, bounded by its socket buffer).
                self.flush(reg);
                Ok(0)
            }
        }
    }
}
