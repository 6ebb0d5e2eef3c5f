// SPDX-License-Identifier: GPL-3.0-or-later
//! The thin event side of virtio-vsock: host Unix sockets (listener, sockets still sending
//! their CONNECT line, connection streams), the housekeeping timer, and the
//! `VirtioDevice` glue that runs the queue logic of the parent module after each event.

use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use event_manager::EventSet;

use super::conn::{need, Conn, Deliver, State};
use super::packet;
use super::{
    deadline, parse_connect, Pending, Refusal, Vsock, EV_CONN, EV_LISTENER, EV_PENDING, EV_TIMER,
    MAX_CONNECT_LINE, MAX_CONNS, MAX_PENDING, QUEUE_SIZES, RXQ, TICK, TURN_BYTES, TXQ,
};
use crate::devices::virtio::queue::{
    queue_bit, Budget, DeviceFault, FdRegistry, QueueCtx, QueueMask,
};
use crate::devices::virtio::{VirtioDevice, F_EVENT_IDX, TYPE_VSOCK};

impl Vsock {
    pub(super) fn bury(&mut self, reg: &mut dyn FdRegistry) {
        for s in self.graveyard.drain(..) {
            reg.remove(s.as_raw_fd());
        }
    }

    pub(super) fn accept_host(&mut self, reg: &mut dyn FdRegistry) {
        self.accept_with(reg, |l| l.accept().map(|(s, _)| s));
    }

    /// [`Self::accept_host`] with `accept` in place of accept(2) on the listener (tests make
    /// it fail).
    pub(super) fn accept_with(
        &mut self,
        reg: &mut dyn FdRegistry,
        mut accept: impl FnMut(&UnixListener) -> io::Result<UnixStream>,
    ) {
        for _ in 0..MAX_PENDING {
            let stream = match accept(&self.listener) {
                Ok(s) => {
                    self.accept_failing = false;
                    s
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The peer left before we took it: try the next one.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) => return self.pause_listener(reg, &e),
            };
            // A stream refused here is closed at the end of this iteration (dropped).
            if !self.active {
                self.refuse(Refusal::Inactive, 0);
                continue;
            }
            let Some(slot) = self.pending.iter().position(Option::is_none) else {
                self.refuse(Refusal::TooManyPending, 0);
                continue;
            };
            let Ok(idx) = u32::try_from(slot) else {
                continue;
            };
            if stream.set_nonblocking(true).is_err()
                || !reg.add(
                    stream.as_raw_fd(),
                    EV_PENDING + idx,
                    EventSet::IN | EventSet::READ_HANG_UP,
                )
            {
                self.refuse(Refusal::Unwatchable, 0);
                continue;
            }
            let p = Pending {
                stream,
                line: [0; MAX_CONNECT_LINE],
                len: 0,
                deadline: deadline(&*self.clock),
            };
            if let Some(s) = self.pending.get_mut(slot) {
                *s = Some(p);
            }
        }
    }

    /// accept(2) failed with the connection still waiting (EMFILE, ENFILE, ENOBUFS, ENOMEM:
    /// nothing this turn frees): the listener is level-triggered and would be reported
    /// again at once, the VMM thread spinning. Stop watching it; the next tick (every
    /// [`TICK`]) watches it again and the waiting connections are tried then. Said once per
    /// run of failures (until accept(2) gives a connection again).
    fn pause_listener(&mut self, reg: &mut dyn FdRegistry, e: &io::Error) {
        reg.remove(self.listener.as_raw_fd());
        self.listener_paused = true;
        if !self.accept_failing {
            self.accept_failing = true;
            crate::log::say(format_args!(
                "vsock: cannot accept host connections ({e}): trying again every {} ms",
                TICK.as_millis()
            ));
        }
    }

    /// Watch the listener (at start, and again at each tick while it is paused). A refusal
    /// by the event loop leaves it paused for the next tick.
    pub(super) fn watch_listener(&mut self, reg: &mut dyn FdRegistry) {
        self.listener_paused = !reg.add(self.listener.as_raw_fd(), EV_LISTENER, EventSet::IN);
    }

    pub(super) fn drop_pending(
        &mut self,
        slot: usize,
        reg: &mut dyn FdRegistry,
    ) -> Option<Pending> {
        let p = self.pending.get_mut(slot).and_then(Option::take)?;
        reg.remove(p.stream.as_raw_fd());
        Some(p)
    }

    pub(super) fn pending_readable(&mut self, slot: usize, reg: &mut dyn FdRegistry) {
        let Some(p) = self.pending.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        // One byte at a time (at most MAX_CONNECT_LINE reads per socket): whatever the
        // host sends after the newline stays in the socket and becomes the first data of
        // the connection instead of being swallowed with the CONNECT line.
        let nl = loop {
            let Some(byte) = p.line.get_mut(p.len..p.len.saturating_add(1)) else {
                self.drop_pending(slot, reg);
                return;
            };
            match p.stream.read(byte) {
                Ok(1) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    return
                }
                Ok(_) | Err(_) => {
                    self.drop_pending(slot, reg);
                    return;
                }
            }
            let newline = byte.first() == Some(&b'\n');
            p.len = p.len.saturating_add(1);
            if newline {
                break p.len.saturating_sub(1);
            }
            if p.len >= MAX_CONNECT_LINE {
                self.drop_pending(slot, reg);
                return self.refuse(Refusal::BadConnectLine, 0);
            }
        };
        let line = p.line.get(..p.len).unwrap_or(&[]);
        let port = parse_connect(line.get(..=nl).unwrap_or(&[]));
        let Some(p) = self.drop_pending(slot, reg) else {
            return;
        };
        // Every way a host connection can fail from here on closes its stream (the host
        // sees EOF instead of `OK <port>`) and is reported, never dropped silently.
        let Some(port) = port else {
            return self.refuse(Refusal::BadConnectLine, 0);
        };
        // (Port 0 in a refusal message means: not known yet.)
        if !self.active {
            return self.refuse(Refusal::Inactive, port);
        }
        let Some(cslot) = self.free_slot() else {
            return self.refuse(Refusal::TableFull, port);
        };
        let local = self.alloc_local_port();
        let c = Conn::new(
            p.stream,
            local,
            port,
            self.guest_cid,
            State::Connecting(deadline(&*self.clock)),
            need::REQUEST,
        );
        if !self.add_conn(cslot, c, reg) {
            self.refuse(Refusal::Unwatchable, port);
        }
    }

    /// Count and log (bounded: the first 8, then every power of two) a host connection
    /// that is closed without reaching the guest.
    pub(super) fn refuse(&mut self, why: Refusal, port: u32) {
        self.refused = self.refused.saturating_add(1);
        self.last_refusal = Some(why);
        let n = self.refused;
        if n <= 8 || n.is_power_of_two() {
            crate::log::say(format_args!(
                "vsock: host connection to guest port {port} closed: {why} ({n} so far)"
            ));
        }
    }

    pub(super) fn conn_event(&mut self, slot: usize, set: EventSet) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if set.intersects(EventSet::IN | EventSet::READ_HANG_UP | EventSet::HANG_UP) {
            c.readable = true;
        }
        if set.contains(EventSet::OUT) && c.flush() == Deliver::Reset {
            c.needs |= need::RST;
        }
        if set.contains(EventSet::ERROR) {
            c.needs |= need::RST;
        }
    }

    pub(super) fn tick(&mut self, reg: &mut dyn FdRegistry) {
        // Consume the expiries (the timer is non-blocking: none due is no error here).
        let _ = self.timer.wait();
        if self.listener_paused {
            self.watch_listener(reg);
        }
        let now = self.clock.now();
        for slot in 0..self.pending.len() {
            if self
                .pending
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.deadline <= now)
            {
                self.drop_pending(slot, reg);
                self.refuse(Refusal::NoConnectLine, 0);
            }
        }
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            match c.state {
                // The guest did not answer: close the host stream now (even if the device
                // cannot deliver anything any more) and tell the guest when it can listen.
                State::Connecting(d) if d <= now => {
                    let h = c.header(packet::OP_RST, 0, 0);
                    self.remove_conn(slot, reg);
                    self.orphan(h);
                }
                State::Closing(d) if d <= now => {
                    let h = c.header(packet::OP_RST, 0, 0);
                    self.remove_conn(slot, reg);
                    self.orphan(h);
                }
                _ => {}
            }
        }
    }

    /// Run tx (when asked) and rx after any event, within one turn's budget, and raise the
    /// interrupt for each queue that used buffers (unless the driver suppressed it).
    /// Returns the queues with work left.
    pub(super) fn pump(
        &mut self,
        ctx: &mut QueueCtx<'_>,
        reg: &mut dyn FdRegistry,
        tx: bool,
    ) -> Result<QueueMask, DeviceFault> {
        let mut budget = Budget::new(TURN_BYTES, ctx.stop);
        let mut mask = 0;
        let (mut tx_used, mut rx_used) = (0, 0);
        if tx {
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
        if tx_used > 0 {
            ctx.notify_used(TXQ)?;
        }
        if rx_used > 0 {
            ctx.notify_used(RXQ)?;
        }
        Ok(mask)
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }
    fn avail_features(&self) -> u64 {
        // VIRTIO_VSOCK_F_STREAM is implied; no SEQPACKET.
        F_EVENT_IDX
    }
    fn queue_max_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }
    fn config_space(&self) -> &[u8] {
        &self.config
    }
    fn activate(&mut self, _ctx: &mut QueueCtx<'_>) -> Result<(), DeviceFault> {
        self.active = true;
        Ok(())
    }
    fn reset(&mut self) {
        self.active = false;
        for c in self.conns.iter_mut().filter_map(Option::take) {
            self.graveyard.push(c.stream);
        }
        for p in self.pending.iter_mut().filter_map(Option::take) {
            self.graveyard.push(p.stream);
        }
        self.orphans.clear();
    }
    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueCtx<'_>,
        reg: &mut dyn FdRegistry,
    ) -> Result<QueueMask, DeviceFault> {
        self.pump(ctx, reg, index == TXQ)
    }
    fn housekeeping(&mut self, reg: &mut dyn FdRegistry) {
        self.bury(reg);
    }
    fn register_extra(&mut self, reg: &mut dyn FdRegistry) {
        self.watch_listener(reg);
        let _ = reg.add(self.timer.as_raw_fd(), EV_TIMER, EventSet::IN);
    }
    fn process_extra(
        &mut self,
        fd: RawFd,
        data: u32,
        set: EventSet,
        reg: &mut dyn FdRegistry,
        ctx: Option<&mut QueueCtx<'_>>,
    ) -> Result<QueueMask, DeviceFault> {
        if ctx.is_none() {
            // The transport is not running (failed, or not yet DRIVER_OK): refuse host
            // connections until the driver activates the device again.
            self.active = false;
        }
        match data {
            EV_LISTENER => self.accept_host(reg),
            EV_TIMER => self.tick(reg),
            d if (EV_PENDING..EV_PENDING + MAX_PENDING as u32).contains(&d) => {
                let slot = (d - EV_PENDING) as usize;
                if self.pending.get(slot).is_some_and(Option::is_some) {
                    self.pending_readable(slot, reg);
                } else {
                    reg.remove(fd);
                }
            }
            d if (EV_CONN..EV_CONN + MAX_CONNS as u32).contains(&d) => {
                let slot = (d - EV_CONN) as usize;
                if self.conns.get(slot).is_some_and(Option::is_some) {
                    self.conn_event(slot, set);
                } else {
                    reg.remove(fd);
                }
            }
            _ => {}
        }
        match ctx {
            Some(ctx) => self.pump(ctx, reg, false),
            None => Ok(0),
        }
    }
}
