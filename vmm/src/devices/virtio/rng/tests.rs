// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-rng queue logic against MockSplitQueue.

use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::*;
use crate::devices::virtio::queue::MAX_CHAIN_DESCRIPTORS;
use crate::devices::virtio::test_utils::*;

/// One turn with the device's per-turn budget.
fn pr<E: Entropy>(q: &mut Queue, m: &GuestMemoryMmap<()>, e: &mut E) -> Result<Pass, DeviceFault> {
    let stop = AtomicBool::new(false);
    let mut budget = Budget::new(u64::from(MAX_BYTES_PER_TURN), &stop);
    process_requests(q, m, e, &mut budget).map(|p| p.pass)
}

/// Counts bytes and fills with a constant so tests can see what was written.
struct Pattern(u64);

impl Entropy for Pattern {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0x5a);
        self.0 += buf.len() as u64;
        Ok(())
    }
    fn seed(&mut self) -> std::io::Result<bool> {
        Ok(false)
    }
}

#[test]
fn fills_writable_buffers_and_skips_readable_ones() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    push_chain(
        &vq,
        &m,
        &chain(
            &[
                (0x1_0000, 100, true),
                (0x2_0000, 50, false),
                (0x3_0000, 28, true),
            ],
            0,
        ),
        0,
    );
    let mut e = Pattern(0);
    let pass = pr(&mut q, &m, &mut e).unwrap();
    assert_eq!(pass.used, 1);
    assert_eq!(used_elem(&vq, &m, 0), (0, 128));
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x1_0000 + 99)).unwrap(), 0x5a);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x2_0000)).unwrap(), 0);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x3_0000 + 27)).unwrap(), 0x5a);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x3_0000 + 28)).unwrap(), 0);
}

#[test]
fn kernel_entropy_fills_buffers() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    push_chain(&vq, &m, &chain(&[(0x1_0000, 4096, true)], 0), 0);
    let pass = pr(&mut q, &m, &mut KernelEntropy::default()).unwrap();
    assert_eq!(pass.used, 1);
    assert_eq!(used_elem(&vq, &m, 0), (0, 4096));
    let mut buf = vec![0u8; 4096];
    m.read_slice(&mut buf, GuestAddress(0x1_0000)).unwrap();
    assert!(
        buf.iter().filter(|&&b| b == 0).count() < 200,
        "random bytes were written"
    );
}

#[test]
fn per_chain_cap_and_per_turn_budget() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    // Each chain offers 128 KiB; only MAX_BYTES_PER_CHAIN go in.
    for i in 0..8u16 {
        push_chain(&vq, &m, &chain(&[(0x1_0000, 128 * 1024, true)], i), i);
    }
    let mut e = Pattern(0);
    let pass = pr(&mut q, &m, &mut e).unwrap();
    let per_turn = MAX_BYTES_PER_TURN / MAX_BYTES_PER_CHAIN;
    assert_eq!(pass.used, per_turn);
    assert!(pass.more);
    assert_eq!(e.0, u64::from(MAX_BYTES_PER_TURN));
    assert_eq!(used_elem(&vq, &m, 0), (0, MAX_BYTES_PER_CHAIN));
    let pass = pr(&mut q, &m, &mut e).unwrap();
    assert_eq!(pass.used, 8 - per_turn);
    assert!(!pass.more);
}

#[test]
fn bad_buffers_are_returned_short() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    push_chain(&vq, &m, &chain(&[(MEM_SIZE as u64 - 16, 64, true)], 0), 0);
    push_chain(&vq, &m, &chain(&[(u64::MAX - 8, 64, true)], 1), 1);
    push_chain(&vq, &m, &chain(&[(0x1_0000, 0, true)], 2), 2);
    let mut e = Pattern(0);
    let pass = pr(&mut q, &m, &mut e).unwrap();
    assert_eq!(pass.used, 3);
    // The first chunk straddles the end of memory and is refused whole.
    assert_eq!(used_elem(&vq, &m, 0), (0, 0));
    assert_eq!(used_elem(&vq, &m, 1), (1, 0));
    assert_eq!(used_elem(&vq, &m, 2), (2, 0));
}

#[test]
fn avail_jump_faults() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    m.write_obj(100u16, GuestAddress(vq.avail_addr().0 + 2))
        .unwrap();
    assert_eq!(
        pr(&mut q, &m, &mut Pattern(0)).unwrap_err(),
        DeviceFault::AvailIndex
    );
}

/// A source that is not ready until told so (like the host pool right after boot).
struct NotYet {
    ready: bool,
}

impl Entropy for NotYet {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if !self.ready {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        buf.fill(0x77);
        Ok(())
    }
    /// Waiting does not help (like the test-only `--test-entropy-unready-ms` window).
    fn seed(&mut self) -> std::io::Result<bool> {
        Ok(false)
    }
}

/// The kernel's pool as Linux (5.18 and later) behaves on a quiet host: a non-blocking read
/// fails until somebody waits for the pool, and only that wait seeds it (the CPU-jitter
/// loop). Nothing else ever makes it ready.
#[derive(Default)]
struct SeededOnlyByWaiting {
    seeded: bool,
    waits: u32,
}

impl Entropy for SeededOnlyByWaiting {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if !self.seeded {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        buf.fill(0x33);
        Ok(())
    }
    fn seed(&mut self) -> std::io::Result<bool> {
        self.waits += 1;
        let waited = !self.seeded;
        self.seeded = true;
        Ok(waited)
    }
}

/// Regression (arm64 rooms hung after issue 15): with GRND_NONBLOCK alone nobody ever waited
/// for the host's pool, so on the quiet arm64 anchor host it was never seeded, the rng
/// retried every 20 ms forever and the room kernel stalled at boot. The device is seeded
/// when it is built (before the guest runs), once, and serves the first request at once.
#[test]
fn the_device_seeds_an_unseeded_pool_before_the_guest_runs() {
    use crate::devices::virtio::queue::{Interrupt, NullRegistry, QueueCtx};
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut queues = [queue(&vq)];
    push_chain(&vq, &m, &chain(&[(0x1_0000, 64, true)], 0), 0);
    let mut dev = Rng::with_entropy(SeededOnlyByWaiting::default()).unwrap();
    assert_eq!(dev.entropy_mut().waits, 1, "seeded once, at build time");
    let irq = Interrupt::new(crate::devices::irq::IrqLine::none()).unwrap();
    let stop = AtomicBool::new(false);
    let mut reg = NullRegistry::default();
    let mut ctx = QueueCtx {
        mem: &m,
        queues: &mut queues,
        interrupt: &irq,
        stop: &stop,
    };
    assert_eq!(dev.process_queue(0, &mut ctx, &mut reg).unwrap(), 0);
    assert!(!dev.retry_armed(), "no retry: the first request was served");
    assert_eq!(used_idx(&vq, &m), 1);
    assert_eq!(used_elem(&vq, &m, 0), (0, 64));
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x1_0000 + 63)).unwrap(), 0x33);
    assert_eq!(irq.raised(), 1);
    assert_eq!(dev.entropy_mut().waits, 1, "the event loop never waits");
}

/// Seeding the kernel source leaves the host's pool initialised for good: seeding again
/// never waits, and the non-blocking source fills buffers.
#[test]
fn kernel_entropy_seed_leaves_the_pool_ready() {
    let mut e = KernelEntropy::default();
    e.seed().unwrap();
    assert!(!e.seed().unwrap(), "a seeded pool needs no wait");
    let mut buf = [0u8; 64];
    e.fill(&mut buf).unwrap();
    assert_ne!(buf, [0u8; 64]);
}

/// The VMM thread never waits for entropy: a pool that is not ready leaves the request in
/// the ring (nothing used, no interrupt), and the next pass after it is ready serves it.
#[test]
fn an_uninitialised_pool_leaves_requests_queued_instead_of_blocking() {
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    push_chain(&vq, &m, &chain(&[(0x1_0000, 64, true)], 0), 0);
    push_chain(&vq, &m, &chain(&[(0x2_0000, 64, true)], 1), 1);
    let mut e = NotYet { ready: false };
    let stop = AtomicBool::new(false);
    let mut budget = Budget::new(u64::from(MAX_BYTES_PER_TURN), &stop);
    let p = process_requests(&mut q, &m, &mut e, &mut budget).unwrap();
    assert!(p.starved);
    assert_eq!((p.pass.used, p.pass.more), (0, false));
    assert_eq!(used_idx(&vq, &m), 0);
    e.ready = true;
    let p = process_requests(&mut q, &m, &mut e, &mut budget).unwrap();
    assert!(!p.starved);
    assert_eq!(p.pass.used, 2);
    assert_eq!(used_elem(&vq, &m, 0), (0, 64));
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x2_0000 + 63)).unwrap(), 0x77);
}

/// The device arms its retry timer when starved, and the timer event asks for another
/// pass over the queue.
#[test]
fn the_device_retries_on_a_timer_when_starved() {
    use crate::devices::virtio::queue::{Interrupt, NullRegistry, QueueCtx};
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut queues = [queue(&vq)];
    push_chain(&vq, &m, &chain(&[(0x1_0000, 64, true)], 0), 0);
    let mut dev = Rng::with_entropy(NotYet { ready: false }).unwrap();
    let irq = Interrupt::new(crate::devices::irq::IrqLine::none()).unwrap();
    let stop = AtomicBool::new(false);
    let mut reg = NullRegistry::default();
    let mut ctx = QueueCtx {
        mem: &m,
        queues: &mut queues,
        interrupt: &irq,
        stop: &stop,
    };
    assert_eq!(dev.process_queue(0, &mut ctx, &mut reg).unwrap(), 0);
    assert!(dev.retry_armed());
    assert_eq!(irq.raised(), 0);
    dev.register_extra(&mut reg);
    assert_eq!(reg.fds.len(), 1, "the retry timer is watched");
    std::thread::sleep(RETRY * 2);
    dev.entropy_mut().ready = true;
    let fd = reg.fds[0];
    let mask = dev
        .process_extra(fd, EV_RETRY, EventSet::IN, &mut reg, Some(&mut ctx))
        .unwrap();
    assert_eq!(mask, 1, "queue 0 is served again");
    assert!(!dev.retry_armed());
    assert_eq!(dev.process_queue(0, &mut ctx, &mut reg).unwrap(), 0);
    assert_eq!(used_idx(&vq, &m), 1);
    assert_eq!(irq.raised(), 1);
}

/// Lay out `n` descriptors of `len` bytes each (device-writable when `writable`), chained,
/// as an indirect table at `table`, and make descriptor 0 the chain's head pointing at it.
fn indirect_table(
    vq: &MockSplitQueue<GuestMemoryMmap<()>>,
    m: &GuestMemoryMmap<()>,
    table: u64,
    n: u16,
    len: u32,
    writable: bool,
) {
    for i in 0..n {
        let mut flags = if writable { WRITE } else { 0 };
        if i + 1 < n {
            flags |= NEXT;
        }
        let addr = 0x20_0000 + u64::from(i) * u64::from(len);
        m.write_obj(
            desc(addr, len, flags, i.wrapping_add(1)),
            GuestAddress(table + u64::from(i) * 16),
        )
        .unwrap();
    }
    vq.desc_table()
        .store(0, desc(table, u32::from(n) * 16, INDIRECT, 0))
        .unwrap();
}

/// A chain longer than the spec allows (an indirect table of more descriptors than any
/// queue here holds) is returned unused; the device never walks it. Before, a ring of 256
/// chains each pointing at a table of 65535 empty descriptors asked for no byte, so no
/// byte budget slowed it, and one turn walked 16.7 M descriptors (0.28 s of the VMM thread
/// for rng, 0.42 s for vsock tx, optimised; seconds in a debug build).
#[test]
fn an_overlong_indirect_chain_is_returned_unused() {
    let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    let n = MAX_CHAIN_DESCRIPTORS as u16 + 1;
    indirect_table(&vq, &m, 0x10_0000, n, 1, true);
    make_avail(&vq, &m, 0);
    let mut e = Pattern(0);
    let pass = pr(&mut q, &m, &mut e).unwrap();
    assert_eq!(pass.used, 1);
    assert_eq!(
        used_elem(&vq, &m, 0),
        (0, 0),
        "returned with nothing written"
    );
    assert_eq!(e.0, 0, "the device never saw the chain");
    // At the bound, the chain is served as before.
    indirect_table(&vq, &m, 0x10_0000, n - 1, 1, true);
    make_avail(&vq, &m, 0);
    pr(&mut q, &m, &mut e).unwrap();
    assert_eq!(used_elem(&vq, &m, 1), (0, u32::from(n - 1)));
}

/// Counts the calls made to the source.
struct Calls(u64);

impl Entropy for Calls {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0x5a);
        self.0 += 1;
        Ok(())
    }
    fn seed(&mut self) -> std::io::Result<bool> {
        Ok(false)
    }
}

/// Regression (review, round 3): the source was asked once per descriptor, so a chain of
/// 512 one-byte buffers cost 512 getrandom(2) calls for 512 bytes, and a ring of such
/// chains 131,072 calls in one turn (the byte budget, 256 KiB, never came near; that turn
/// took 51 ms of the VMM thread before, 33 ms after, optimised, on the dev host). The bytes
/// are now drawn a chunk at a time whatever the layout: one call here, and no byte is drawn
/// that the chain has no room for.
#[test]
fn a_chain_of_tiny_buffers_costs_one_source_call_per_chunk() {
    let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let vq = MockSplitQueue::new(&m, 16);
    let mut q = queue(&vq);
    let n = MAX_CHAIN_DESCRIPTORS as u16;
    indirect_table(&vq, &m, 0x10_0000, n, 1, true);
    make_avail(&vq, &m, 0);
    let mut e = Calls(0);
    let pass = pr(&mut q, &m, &mut e).unwrap();
    assert_eq!(pass.used, 1);
    assert_eq!(
        used_elem(&vq, &m, 0),
        (0, u32::from(n)),
        "every byte filled"
    );
    let mut got = vec![0u8; usize::from(n)];
    m.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
    assert!(got.iter().all(|&b| b == 0x5a));
    assert_eq!(e.0, 1, "one call to the source for {n} bytes");

    // Buffers larger than a chunk: one call per chunk, none for bytes that have no room.
    let mut e = Pattern(0);
    indirect_table(&vq, &m, 0x10_0000, 3, 5000, true);
    make_avail(&vq, &m, 0);
    pr(&mut q, &m, &mut e).unwrap();
    assert_eq!(used_elem(&vq, &m, 1), (0, 15000));
    assert_eq!(e.0, 15000, "exactly the bytes the chain holds were drawn");
}

/// A retry timer that cannot be armed (timerfd_settime failing).
#[derive(Debug)]
struct Unarmable(TimerFd);

impl AsRawFd for Unarmable {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl RetryTimer for Unarmable {
    fn arm(&mut self, _after: Duration) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EINVAL))
    }
    fn clear(&mut self) {}
}

/// An event loop that refuses to watch any fd.
struct Refusing;

impl FdRegistry for Refusing {
    fn add(&mut self, _fd: RawFd, _data: u32, _set: EventSet) -> bool {
        false
    }
    fn remove(&mut self, _fd: RawFd) -> bool {
        true
    }
}

/// A starved request with no retry timer to wake the device: every turn asks for the next
/// one (the driver will not notify: its notifications are off while the request is kept),
/// and once the source is ready the request is served.
fn starved_without_a_timer<T: RetryTimer + Send>(
    mut dev: Rng<NotYet, T>,
    reg: &mut dyn FdRegistry,
) {
    use crate::devices::virtio::queue::{Interrupt, QueueCtx};
    let m = mem();
    let vq = MockSplitQueue::new(&m, 16);
    let mut queues = [queue(&vq)];
    push_chain(&vq, &m, &chain(&[(0x1_0000, 64, true)], 0), 0);
    let irq = Interrupt::new(crate::devices::irq::IrqLine::none()).unwrap();
    let stop = AtomicBool::new(false);
    dev.register_extra(reg);
    let mut ctx = QueueCtx {
        mem: &m,
        queues: &mut queues,
        interrupt: &irq,
        stop: &stop,
    };
    for turn in 0..3 {
        assert_eq!(
            dev.process_queue(0, &mut ctx, reg).unwrap(),
            1,
            "turn {turn}: another turn is asked for (nothing else would come back)"
        );
        assert!(!dev.retry_armed());
        let used_flags: u16 = m.read_obj(used_addr(&vq)).unwrap();
        assert_eq!(used_flags & 1, 1, "the driver's notifications are off");
    }
    assert_eq!(used_idx(&vq, &m), 0);
    dev.entropy_mut().ready = true;
    assert_eq!(dev.process_queue(0, &mut ctx, reg).unwrap(), 0);
    assert_eq!(used_idx(&vq, &m), 1);
    assert_eq!(used_elem(&vq, &m, 0), (0, 64));
    assert_eq!(irq.raised(), 1);
}

/// Regression (review): when the retry timer could not be armed the device said "the next
/// notification retries anyway", but the kept request had left the driver's notifications
/// off and the driver waits for that request: nothing ever woke the device and the guest's
/// rng hung. Now the device asks for another turn instead, and tries the timer again then.
#[test]
fn a_starved_request_is_retried_each_turn_when_the_timer_cannot_be_armed() {
    let dev = Rng::with_timer(NotYet { ready: false }, Unarmable(TimerFd::new().unwrap()));
    starved_without_a_timer(
        dev,
        &mut crate::devices::virtio::queue::NullRegistry::default(),
    );
}

/// Regression (review): the same hang when the event loop refused to watch the retry timer
/// (its registration result was ignored): the timer was armed but its expiry reached nobody.
#[test]
fn a_starved_request_is_retried_each_turn_when_the_timer_is_not_watched() {
    let dev = Rng::with_entropy(NotYet { ready: false }).unwrap();
    starved_without_a_timer(dev, &mut Refusing);
}
