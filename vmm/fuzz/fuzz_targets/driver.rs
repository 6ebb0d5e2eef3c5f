// SPDX-License-Identifier: GPL-3.0-or-later
//! What the device targets share: the input reader, the event loop as a device sees it,
//! a driver's view of a split ring, and the VMM's SIGPIPE disposition. (Each target uses
//! part of it.)
#![allow(dead_code)]

use std::os::fd::RawFd;

use event_manager::EventSet;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use anchor_vmm::devices::virtio::queue::FdRegistry;

/// The fuzz input, read front to back (zeros once it runs out).
pub struct In<'a>(pub &'a [u8]);

impl In<'_> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

/// The identity of an open fd (device and inode; None once it is closed).
pub fn fd_id(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat writes only into `st`, a plain struct of ours; a bad fd is an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// Whether `fd` is a timerfd (vsock_tx delivers the device's only with its clock op).
pub fn is_timer(fd: RawFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|l| l.to_string_lossy().contains("timerfd"))
}

/// One watched fd: the fd, its event data and its identity when it was added.
pub type Watched = (RawFd, u32, Option<(u64, u64)>);

/// The event loop as the device sees it: epoll semantics (adding a watched fd fails; a
/// closed fd is forgotten), and a log of what was added during the last call.
#[derive(Default)]
pub struct Reg {
    pub fds: Vec<Watched>,
    pub added: Vec<(RawFd, u32)>,
}

impl FdRegistry for Reg {
    fn add(&mut self, fd: RawFd, data: u32, _set: EventSet) -> bool {
        let id = fd_id(fd);
        if self.fds.iter().any(|e| e.0 == fd && e.2 == id) {
            return false;
        }
        self.fds.retain(|e| e.0 != fd);
        self.fds.push((fd, data, id));
        self.added.push((fd, data));
        true
    }
    fn remove(&mut self, fd: RawFd) -> bool {
        self.fds.retain(|e| e.0 != fd);
        true
    }
}

/// A split ring of `size` entries in guest memory (descriptors at `base`, avail at
/// +0x1000, used at +0x2000), written as a driver writes it.
pub struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    pub avail_idx: u16,
    pub used_seen: u16,
}

impl Ring {
    pub fn new(base: u64, size: u16) -> Self {
        Self {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            size,
            avail_idx: 0,
            used_seen: 0,
        }
    }
    pub fn queue(&self, event_idx: bool) -> Option<Queue> {
        let mut q = Queue::new(self.size).ok()?;
        q.set_event_idx(event_idx);
        q.try_set_desc_table_address(GuestAddress(self.desc)).ok()?;
        q.try_set_avail_ring_address(GuestAddress(self.avail))
            .ok()?;
        q.try_set_used_ring_address(GuestAddress(self.used)).ok()?;
        q.set_ready(true);
        Some(q)
    }
    pub fn set_desc(
        &self,
        m: &GuestMemoryMmap<()>,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let at = self.desc + 16 * u64::from(i);
        let _ = m.write_obj(addr, GuestAddress(at));
        let _ = m.write_obj(len, GuestAddress(at + 8));
        let _ = m.write_obj(flags, GuestAddress(at + 12));
        let _ = m.write_obj(next, GuestAddress(at + 14));
    }
    pub fn push(&mut self, m: &GuestMemoryMmap<()>, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        let _ = m.write_obj(head, GuestAddress(self.avail + 4 + 2 * slot));
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let _ = m.write_obj(self.avail_idx, GuestAddress(self.avail + 2));
    }
    pub fn take_used(&mut self, m: &GuestMemoryMmap<()>) -> Vec<(u32, u32)> {
        let idx: u16 = m
            .read_obj(GuestAddress(self.used + 2))
            .unwrap_or(self.used_seen);
        let mut out = Vec::new();
        while self.used_seen != idx {
            let at = self.used + 4 + 8 * u64::from(self.used_seen % self.size);
            let id: u32 = m.read_obj(GuestAddress(at)).unwrap_or(u32::MAX);
            let len: u32 = m.read_obj(GuestAddress(at + 4)).unwrap_or(u32::MAX);
            out.push((id, len));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
}

/// A device clock that moves only when the harness says: its creation time plus the
/// milliseconds in `ms`.
#[derive(Debug)]
pub struct FuzzClock {
    pub start: std::time::Instant,
    pub ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FuzzClock {
    /// A clock at its creation time, and the handle that moves it.
    pub fn new() -> (Self, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = Self {
            start: std::time::Instant::now(),
            ms: ms.clone(),
        };
        (c, ms)
    }
}

impl anchor_vmm::devices::virtio::vsock::Clock for FuzzClock {
    fn now(&self) -> std::time::Instant {
        let ms = self.ms.load(std::sync::atomic::Ordering::Relaxed);
        self.start + std::time::Duration::from_millis(ms)
    }
}

/// The VMM runs with SIGPIPE ignored (Rust's runtime does it before main; libFuzzer's
/// main does not): a device writing to a closed stream gets EPIPE, not death.
pub fn ignore_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: setting a signal's disposition to SIG_IGN touches no memory of ours.
    ONCE.call_once(|| unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    });
}
