// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-rng: fills device-writable buffers with getrandom(2) bytes.
//!
//! Work is bounded: at most [`MAX_BYTES_PER_CHAIN`] bytes go into one chain and at most
//! [`MAX_BYTES_PER_TURN`] bytes per event-loop turn; the rest waits for the next turn.
//! The VMM thread never blocks on entropy once the guest runs: getrandom runs with
//! GRND_NONBLOCK, and while the source is not ready the request stays in the ring and a
//! one-shot timer retries every [`RETRY`]; the other devices keep running. The kept request
//! leaves the driver's notifications off, so that timer is the device's only way back: when
//! it cannot be armed (or the event loop refused to watch it) the device asks for another
//! turn instead, and tries the timer again then.
//!
//! The host's pool is made ready at setup, before the guest runs ([`Entropy::seed`]): on
//! Linux 5.18 and later an unseeded pool is seeded actively only for a caller that waits
//! for it (getrandom without GRND_NONBLOCK runs the kernel's CPU-jitter entropy loop);
//! otherwise only interrupt timings, a hardware rng driver or a trusted CPU rng credit it,
//! and a quiet host (the arm64 anchor host under QEMU has none of those) may never get
//! there. A room whose virtio-rng never answers may not boot at all (the arm64 room kernel
//! stalls right after its first block read, its virtio-rng request pending).

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use event_manager::EventSet;
use virtio_queue::{DescriptorChain, Queue};
use vm_memory::{Address, Bytes, GuestMemoryMmap};
use vmm_sys_util::timerfd::TimerFd;

use super::mmio::EXTRA_EVENT_BASE;
use super::queue::{
    chain_len, drain_queue, queue_bit, Budget, DeviceFault, FdRegistry, Pass, QueueCtx, QueueMask,
    Step,
};
use super::{sys, VirtioDevice, VirtioError, F_EVENT_IDX, F_INDIRECT_DESC, TYPE_RNG};

/// Cap on bytes written into one chain.
pub const MAX_BYTES_PER_CHAIN: u32 = 64 * 1024;
/// Cap on bytes produced per event-loop turn.
pub const MAX_BYTES_PER_TURN: u32 = 256 * 1024;
/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
/// How long to wait before asking an uninitialised host pool again.
pub const RETRY: Duration = Duration::from_millis(20);
const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE];
const CHUNK: usize = 4096;
const EV_RETRY: u32 = EXTRA_EVENT_BASE;

/// Source of random bytes (the kernel in production, a pattern in tests).
pub trait Entropy {
    /// Fill `buf` completely, or fail; `WouldBlock` when the source is not ready yet.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()>;
    /// Make the source ready, waiting for it if it is not (setup only, before the guest
    /// runs: see the module doc). Returns whether it had to wait.
    fn seed(&mut self) -> std::io::Result<bool>;
}

/// getrandom(2) with GRND_NONBLOCK.
#[derive(Debug, Default)]
pub struct KernelEntropy {
    /// Test builds only: report "not ready" until then (the retry path under seccomp).
    unready_until: Option<std::time::Instant>,
}

impl KernelEntropy {
    /// The kernel's pool, reported as not ready for `unready` first (tests; zero in
    /// production).
    pub fn new(unready: Duration) -> Self {
        let now = std::time::Instant::now();
        Self {
            unready_until: (!unready.is_zero()).then(|| now.checked_add(unready).unwrap_or(now)),
        }
    }
}

impl Entropy for KernelEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if self
            .unready_until
            .is_some_and(|t| std::time::Instant::now() < t)
        {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..) {
            if rest.is_empty() {
                break;
            }
            match sys::getrandom_nonblocking(rest) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done = done.saturating_add(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits for the host's pool when a non-blocking read says it is not initialised. The
    /// test-only `unready` window is not waited for (it exists to exercise the retry path).
    fn seed(&mut self) -> std::io::Result<bool> {
        let mut probe = [0u8; 1];
        match sys::getrandom_nonblocking(&mut probe) {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                sys::getrandom_blocking(&mut probe).map(|_| true)
            }
            Err(e) => Err(e),
        }
    }
}

/// What filling one chain gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Bytes written into the chain.
    pub written: u32,
    /// The source was not ready (nothing more can be produced now).
    pub starved: bool,
}

/// Fill the writable descriptors of `chain`, up to `cap` bytes. The bytes are drawn from
/// `entropy` 4 KiB at a time whatever the chain's layout, and never more than
/// the chain can still take: the number of calls to the source follows the bytes written,
/// not the number of descriptors (a chain of one-byte buffers would otherwise cost one
/// getrandom(2) per byte).
pub fn fill_chain<E: Entropy>(
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    entropy: &mut E,
    cap: u32,
) -> Fill {
    let room = chain_len(chain.clone(), true).min(u64::from(cap));
    let room = u32::try_from(room).unwrap_or(cap);
    let mut buf = [0u8; CHUNK];
    // Drawn bytes not yet written: buf[at..have].
    let (mut at, mut have) = (0usize, 0usize);
    let mut fill = Fill {
        written: 0,
        starved: false,
    };
    for d in chain {
        if !d.is_write_only() {
            continue;
        }
        let mut done: u32 = 0;
        while done < d.len() && fill.written < room {
            if at >= have {
                let want = usize::try_from(room - fill.written)
                    .unwrap_or(CHUNK)
                    .min(CHUNK);
                let Some(chunk) = buf.get_mut(..want) else {
                    return fill;
                };
                match entropy.fill(chunk) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        fill.starved = true;
                        return fill;
                    }
                    Err(_) => return fill,
                }
                (at, have) = (0, want);
            }
            let n = (d.len() - done).min(u32::try_from(have.saturating_sub(at)).unwrap_or(0));
            let Some(part) = buf.get(at..at.saturating_add(n as usize)) else {
                return fill;
            };
            let Some(addr) = d.addr().checked_add(u64::from(done)) else {
                return fill;
            };
            if mem.write_slice(part, addr).is_err() {
                return fill;
            }
            at = at.saturating_add(n as usize);
            done = done.saturating_add(n);
            fill.written = fill.written.saturating_add(n);
        }
        if fill.written >= room {
            break;
        }
    }
    fill
}

/// Result of one pass: the queue pass, and whether the entropy source was not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngPass {
    /// Chains used / work left.
    pub pass: Pass,
    /// The source was not ready: retry later (the unserved chains stay in the ring).
    pub starved: bool,
}

/// One pass over the request queue, bounded by `budget` (and [`MAX_BYTES_PER_CHAIN`]).
pub fn process_requests<E: Entropy>(
    queue: &mut Queue,
    mem: &GuestMemoryMmap<()>,
    entropy: &mut E,
    budget: &mut Budget<'_>,
) -> Result<RngPass, DeviceFault> {
    let mut starved = false;
    let pass = drain_queue(queue, mem, |chain| {
        if starved {
            return Step::Keep;
        }
        let cap = budget.grant(u64::from(MAX_BYTES_PER_CHAIN));
        if cap == 0 {
            return Step::Stop;
        }
        let cap = u32::try_from(cap).unwrap_or(MAX_BYTES_PER_CHAIN);
        let f = fill_chain(chain, mem, entropy, cap);
        budget.spend(u64::from(f.written));
        if f.starved {
            starved = true;
            // Nothing produced: the chain waits in the ring for the retry.
            if f.written == 0 {
                return Step::Keep;
            }
        }
        Step::Used(f.written)
    })?;
    Ok(RngPass { pass, starved })
}

/// The one-shot timer that brings a starved device back: a timerfd in production, one that
/// cannot be armed in tests.
pub trait RetryTimer: AsRawFd {
    /// Fire once, `after` from now.
    fn arm(&mut self, after: Duration) -> std::io::Result<()>;
    /// Consume the expiry that the event loop reported.
    fn clear(&mut self);
}

impl RetryTimer for TimerFd {
    fn arm(&mut self, after: Duration) -> std::io::Result<()> {
        self.reset(after, None).map_err(std::io::Error::from)
    }
    fn clear(&mut self) {
        // The timer fired (epoll said so): this read returns at once.
        let _ = self.wait();
    }
}

/// The virtio-rng device.
#[derive(Debug)]
pub struct Rng<E = KernelEntropy, T = TimerFd> {
    entropy: E,
    retry: T,
    /// The retry timer is armed and its expiry will reach the device.
    retry_armed: bool,
    /// The event loop watches the retry timer.
    retry_watched: bool,
    /// The retry timer could not be used since it last could (said once per such run).
    retry_failing: bool,
}

impl Rng<KernelEntropy> {
    /// A new device reading the kernel's pool.
    pub fn new() -> Result<Self, VirtioError> {
        Self::with_entropy(KernelEntropy::default())
    }
}

impl<E: Entropy> Rng<E> {
    /// A device over `entropy` (tests use a controllable source) with a timerfd for its
    /// retries; see [`Rng::with_timer`].
    pub fn with_entropy(entropy: E) -> Result<Self, VirtioError> {
        let retry = TimerFd::new().map_err(|e| VirtioError::TimerFd(e.into()))?;
        Ok(Self::with_timer(entropy, retry))
    }
}

impl<E: Entropy, T: RetryTimer> Rng<E, T> {
    /// A device over `entropy`, retrying on `retry`, seeded first: this waits for a host
    /// pool that is not initialised yet (see the module doc), saying so on stderr. A source
    /// that cannot be seeded is said too; the device then serves the room once the source
    /// is ready (retry timer).
    pub fn with_timer(mut entropy: E, retry: T) -> Self {
        let start = std::time::Instant::now();
        match entropy.seed() {
            Ok(false) => {}
            Ok(true) => crate::log::say(format_args!(
                "virtio-rng: the host entropy pool was not initialised: waited {} ms for the kernel to seed it",
                start.elapsed().as_millis()
            )),
            Err(e) => crate::log::say(format_args!(
                "virtio-rng: cannot wait for the host entropy pool ({e}): the room gets entropy once it is ready"
            )),
        }
        Self {
            entropy,
            retry,
            retry_armed: false,
            retry_watched: false,
            retry_failing: false,
        }
    }

    /// Whether a retry is pending because the source was not ready (tests).
    pub fn retry_armed(&self) -> bool {
        self.retry_armed
    }

    /// The entropy source (tests).
    pub fn entropy_mut(&mut self) -> &mut E {
        &mut self.entropy
    }

    /// Have the event loop watch the retry timer, unless it does already.
    fn watch_retry(&mut self, reg: &mut dyn FdRegistry) {
        if !self.retry_watched {
            self.retry_watched = reg.add(self.retry.as_raw_fd(), EV_RETRY, EventSet::IN);
        }
    }

    /// Arm the retry timer for a starved request; false when its expiry would never reach
    /// the device (the event loop refuses to watch it, or it cannot be armed). Said once per
    /// run of such failures.
    fn arm_retry(&mut self, reg: &mut dyn FdRegistry) -> bool {
        self.watch_retry(reg);
        let err = if self.retry_watched {
            match self.retry.arm(RETRY) {
                Ok(()) => {
                    self.retry_failing = false;
                    return true;
                }
                Err(e) => Some(e),
            }
        } else {
            None
        };
        if !self.retry_failing {
            self.retry_failing = true;
            let poll = "polling the host entropy pool each turn until it is ready";
            match err {
                Some(e) => crate::log::say(format_args!(
                    "virtio-rng: cannot arm the retry timer ({e}): {poll}"
                )),
                None => crate::log::say(format_args!(
                    "virtio-rng: the event loop refused to watch the retry timer: {poll}"
                )),
            }
        }
        false
    }
}

impl<E: Entropy + Send, T: RetryTimer + Send> VirtioDevice for Rng<E, T> {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }
    fn avail_features(&self) -> u64 {
        F_INDIRECT_DESC | F_EVENT_IDX
    }
    fn queue_max_sizes(&self) -> &'static [u16] {
        QUEUE_SIZES
    }
    fn config_space(&self) -> &[u8] {
        &[]
    }
    fn reset(&mut self) {
        // A pending retry finds the device inactive and does nothing.
    }
    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueCtx<'_>,
        reg: &mut dyn FdRegistry,
    ) -> Result<QueueMask, DeviceFault> {
        let mut starved = false;
        let entropy = &mut self.entropy;
        let mask = ctx.serve(
            index,
            u64::from(MAX_BYTES_PER_TURN),
            |queue, mem, budget| {
                let p = process_requests(queue, mem, entropy, budget)?;
                starved = p.starved;
                Ok(p.pass)
            },
        )?;
        if starved && !self.retry_armed {
            // The request stays in the ring with the driver's notifications off (see
            // `Step::Keep`), and the driver waits for it: nothing but this one-shot timer
            // brings the device back. Without it, come back next turn instead.
            self.retry_armed = self.arm_retry(reg);
            if !self.retry_armed {
                return Ok(mask | queue_bit(index));
            }
        }
        Ok(mask)
    }
    fn register_extra(&mut self, reg: &mut dyn FdRegistry) {
        // A refusal here is tried again when the timer is first needed.
        self.watch_retry(reg);
    }
    fn process_extra(
        &mut self,
        _fd: RawFd,
        data: u32,
        _set: EventSet,
        _reg: &mut dyn FdRegistry,
        ctx: Option<&mut QueueCtx<'_>>,
    ) -> Result<QueueMask, DeviceFault> {
        if data != EV_RETRY {
            return Ok(0);
        }
        self.retry.clear();
        self.retry_armed = false;
        // Serve the queue again on the next turn (through its eventfd).
        Ok(if ctx.is_some() { queue_bit(0) } else { 0 })
    }
}

#[cfg(test)]
mod tests;
