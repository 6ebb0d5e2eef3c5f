// SPDX-License-Identifier: GPL-3.0-or-later
//! The virtio-mmio register state machine and its worker, driven like a hostile guest,
//! over each device that can be built in-process: the first input byte picks rng, vsock
//! (its socket in the temporary directory), net (over a socket pair whose other end the
//! harness holds) or block (a 64-sector temporary file, read-only when bit 2 is set), so
//! feature negotiation, queue setup, activation and reset meet each device's own queue
//! count, features, configuration space, activate and reset.
//!
//! Then 8-byte operations: register reads and writes of any width and offset (status
//! sequences, feature bits including EVENT_IDX, queue setup, notify, ack, reset),
//! guest-memory pokes into the rings, event-loop turns of the worker on any queue (and one
//! past the last), events on the device's own fds (any event set, the devices' timers
//! included: vsock's housekeeping timer is non-blocking, rng retries on the harness's
//! timer), and the host's side of the device (vsock: host processes connecting with
//! `CONNECT <port>`, writing, reading, closing, and the device's clock moving on; net: the
//! backend sending frames or bytes, draining, hanging up; rng: the entropy source ready or
//! not, the retry timer armed or failing).
//!
//! Never panics; the register page (what the guest reads without an exit) always shows the
//! transport's status and InterruptStatus; the worker runs the device exactly when the
//! status says DRIVER_OK without FAILED or DEVICE_NEEDS_RESET; a reset (status 0) leaves
//! status and InterruptStatus 0 (and no vsock connection); the devices' own bounds hold
//! (vsock connections, net buffers); rng's retry is pending exactly while its timer is
//! armed.
#![no_main]

mod driver;

use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anchor_vmm::devices::bus::MmioDevice;
use anchor_vmm::devices::irq::IrqLine;
use anchor_vmm::devices::virtio::block::Block;
use anchor_vmm::devices::virtio::mmio::{reg, status, MmioTransport, EXTRA_EVENT_BASE};
use anchor_vmm::devices::virtio::net::{Net, RX_QUEUE_BYTES, TX_QUEUE_BYTES};
use anchor_vmm::devices::virtio::queue::Interrupt;
use anchor_vmm::devices::virtio::rng::{Entropy, RetryTimer, Rng};
use anchor_vmm::devices::virtio::vsock::{Vsock, MAX_CONNS};
use anchor_vmm::devices::virtio::{BlockConfig, VirtioDevice, VsockConfig};
use driver::{FuzzClock, Reg};
use event_manager::EventSet;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: u64 = 0x10_0000;
/// Host streams a vsock run keeps open at most.
const MAX_STREAMS: usize = 8;

/// The host's side of a device: what it does for an operation of its own, and what must
/// hold of the device after every operation (`reset`: the driver just wrote status 0).
trait Host<D> {
    fn act(&mut self, _op: &[u8]) {}
    fn check(&self, _dev: &D, _reset: bool) {}
}

/// rng and block: nothing on the host's side.
struct Nobody;

impl<D> Host<D> for Nobody {}

/// rng: an entropy source the input makes ready or not.
#[derive(Debug)]
struct FuzzEntropy {
    starved: Arc<AtomicBool>,
}

impl Entropy for FuzzEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if self.starved.load(Ordering::Relaxed) {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        buf.fill(0xa5);
        Ok(())
    }
    fn seed(&mut self) -> std::io::Result<bool> {
        Ok(false)
    }
}

/// rng: a retry timer that fires when the harness delivers its event (op 4), and that
/// the input can make fail to arm.
#[derive(Debug)]
struct FuzzTimer {
    fd: std::fs::File,
    armed: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
}

impl std::os::fd::AsRawFd for FuzzTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl RetryTimer for FuzzTimer {
    fn arm(&mut self, _after: std::time::Duration) -> std::io::Result<()> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOMEM));
        }
        self.armed.store(true, Ordering::Relaxed);
        Ok(())
    }
    fn clear(&mut self) {
        self.armed.store(false, Ordering::Relaxed);
    }
}

/// rng: the source and the timer as the host has them.
struct RngHost {
    starved: Arc<AtomicBool>,
    armed: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
}

impl Host<Rng<FuzzEntropy, FuzzTimer>> for RngHost {
    fn act(&mut self, op: &[u8]) {
        let on = op[2] & 1 != 0;
        match op[1] % 4 {
            0 => self.starved.store(on, Ordering::Relaxed),
            1 => self.failing.store(on, Ordering::Relaxed),
            _ => {}
        }
    }
    fn check(&self, dev: &Rng<FuzzEntropy, FuzzTimer>, _reset: bool) {
        assert_eq!(
            dev.retry_armed(),
            self.armed.load(Ordering::Relaxed),
            "the device's retry is pending exactly while its timer is armed"
        );
    }
}

/// vsock: host processes on the device's socket, and the device's clock.
struct VsockHost {
    uds: PathBuf,
    streams: Vec<UnixStream>,
    clock: Arc<AtomicU64>,
}

impl Host<Vsock> for VsockHost {
    fn act(&mut self, op: &[u8]) {
        if op[1] & 4 != 0 {
            // Time passes (up to 65 s); the timer fires when op 4 says so.
            let ms = u64::from(u16::from_le_bytes([op[2], op[3]]));
            self.clock.fetch_add(ms, Ordering::Relaxed);
            return;
        }
        let n = self.streams.len().max(1);
        let i = usize::from(op[2]) % n;
        match op[1] % 4 {
            0 => {
                let Ok(mut s) = UnixStream::connect(&self.uds) else {
                    return;
                };
                let _ = s.set_nonblocking(true);
                let port = u16::from_le_bytes([op[2], op[3]]);
                let _ = s.write_all(format!("CONNECT {port}\n").as_bytes());
                self.streams.push(s);
                if self.streams.len() > MAX_STREAMS {
                    self.streams.remove(0);
                }
            }
            1 => {
                if let Some(s) = self.streams.get_mut(i) {
                    let _ = s.write(&op[4..]);
                }
            }
            2 => {
                if let Some(s) = self.streams.get_mut(i) {
                    let _ = s.read(&mut [0u8; 4096]);
                }
            }
            _ => {
                if i < self.streams.len() {
                    self.streams.remove(i);
                }
            }
        }
    }
    fn check(&self, dev: &Vsock, reset: bool) {
        assert!(dev.connections() <= MAX_CONNS);
        if reset {
            assert_eq!(dev.connections(), 0, "a reset drops every connection");
        }
    }
}

/// net: the backend (passt's side of the socket pair).
struct NetHost {
    peer: Option<UnixStream>,
}

impl Host<Net> for NetHost {
    fn act(&mut self, op: &[u8]) {
        let Some(peer) = self.peer.as_mut() else {
            return;
        };
        match op[1] % 4 {
            0 => {
                // A frame as passt sends it: a 4-byte big-endian length, then the frame.
                let len = usize::from(op[2]) * 8;
                let mut f = (len as u32).to_be_bytes().to_vec();
                f.extend(op[4..].iter().cycle().take(len));
                let _ = peer.write(&f);
            }
            1 => {
                let _ = peer.write(&op[2..]);
            }
            2 => {
                let _ = peer.read(&mut [0u8; 4096]);
            }
            _ => self.peer = None,
        }
    }
    fn check(&self, dev: &Net, _reset: bool) {
        let (t, r) = dev.buffered();
        assert!(t <= TX_QUEUE_BYTES && r <= RX_QUEUE_BYTES);
    }
}

fn run<D: VirtioDevice + 'static>(
    mem: GuestMemoryMmap<()>,
    dev: D,
    mut host: impl Host<D>,
    ops: &[u8],
) {
    let queues = dev.queue_max_sizes().len();
    let Ok(interrupt) = Interrupt::new(IrqLine::none()) else {
        return;
    };
    let Ok((mut t, worker)) = MmioTransport::with_interrupt(mem.clone(), interrupt, dev) else {
        return;
    };
    let page = t.register_page();
    let mut reg = Reg::default();
    if let Ok(mut w) = worker.lock() {
        w.register(&mut reg);
    }
    for op in ops.chunks_exact(8) {
        let width = [1usize, 2, 4, 8][usize::from(op[1] & 3)];
        // Mostly register offsets (0..0x200), sometimes anywhere in the window and beyond.
        let off = u64::from(u16::from_le_bytes([op[2], op[3]]));
        let off = if op[1] & 0x80 != 0 { off } else { off % 0x200 };
        let val = u32::from_le_bytes([op[4], op[5], op[6], op[7]]);
        let mut reset = false;
        match op[0] & 7 {
            0 => {
                let mut b = [0u8; 8];
                t.read(off, &mut b[..width]);
            }
            1 | 6 => {
                let v = u64::from(val) | (u64::from(val) << 32);
                t.write(off, &v.to_le_bytes()[..width]);
                reset = off == reg::STATUS && width == 4 && val == 0;
            }
            2 | 7 => {
                // A queue notification (and now and then one for a queue that does not
                // exist).
                if let Ok(mut w) = worker.lock() {
                    w.run_queue(usize::from(op[2]) % (queues + 1), &mut reg);
                }
            }
            3 => {
                // Poke guest memory where rings and buffers live (first 64 KiB).
                let addr = (off * 4) % 0x1_0000;
                let _ = mem.write_obj(val, GuestAddress(addr));
            }
            4 => {
                // An event on one of the device's own fds, as the event loop reports it.
                let fds: Vec<(RawFd, u32)> = reg
                    .fds
                    .iter()
                    .filter(|e| e.1 >= EXTRA_EVENT_BASE)
                    .map(|e| (e.0, e.1))
                    .collect();
                if let Some(&(fd, data)) = fds.get(usize::from(op[2]) % fds.len().max(1)) {
                    if let Ok(mut w) = worker.lock() {
                        w.run_extra(fd, data, EventSet::from_bits_truncate(val), &mut reg);
                    }
                }
            }
            _ => host.act(op),
        }
        // The page the guest reads without an exit always shows the transport's status
        // (DEVICE_NEEDS_RESET included) and the same InterruptStatus.
        let word = |off: u64| page.word(off).map(|w| w.load(Ordering::SeqCst));
        let st = t.status();
        assert_eq!(word(reg::STATUS), Some(st));
        assert_eq!(word(reg::INTERRUPT_STATUS), Some(t.interrupt().status()));
        // The device runs exactly while the driver has it running.
        let running =
            st & status::DRIVER_OK != 0 && st & (status::FAILED | status::DEVICE_NEEDS_RESET) == 0;
        assert_eq!(t.is_active(), running, "status {st:#x}");
        if reset {
            assert_eq!((st, t.interrupt().status()), (0, 0), "after a reset");
        }
        if let Ok(w) = worker.lock() {
            host.check(w.device(), reset);
        }
    }
}

/// A 64-sector image in the temporary directory, zeroed (one per process).
fn image() -> Option<PathBuf> {
    let path = std::env::temp_dir().join(format!("anchor-vmm-fuzz-{}.img", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .ok()?;
    f.set_len(64 * 512).ok()?;
    Some(path)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    driver::ignore_sigpipe();
    let Some((&which, ops)) = data.split_first() else {
        return;
    };
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)]) else {
        return;
    };
    match which % 4 {
        0 => {
            let Ok(fd) = std::fs::File::open("/dev/null") else {
                return;
            };
            let host = RngHost {
                starved: Arc::new(AtomicBool::new(false)),
                armed: Arc::new(AtomicBool::new(false)),
                failing: Arc::new(AtomicBool::new(false)),
            };
            let entropy = FuzzEntropy {
                starved: host.starved.clone(),
            };
            let timer = FuzzTimer {
                fd,
                armed: host.armed.clone(),
                failing: host.failing.clone(),
            };
            run(mem, Rng::with_timer(entropy, timer), host, ops);
        }
        1 => {
            let uds = std::env::temp_dir()
                .join(format!("anchor-vmm-fuzz-mmio-{}.sock", std::process::id()));
            let cfg = VsockConfig {
                guest_cid: 3,
                uds_path: uds.clone(),
            };
            let (clock, ms) = FuzzClock::new();
            let Ok(vsock) = Vsock::with_clock(&cfg, Box::new(clock)) else {
                return;
            };
            let host = VsockHost {
                uds,
                streams: Vec::new(),
                clock: ms,
            };
            run(mem, vsock, host, ops);
        }
        2 => {
            let Ok((ours, peer)) = UnixStream::pair() else {
                return;
            };
            let Ok(net) = Net::new(ours) else { return };
            let _ = peer.set_nonblocking(true);
            run(mem, net, NetHost { peer: Some(peer) }, ops);
        }
        _ => {
            let Some(path) = image() else { return };
            let cfg = BlockConfig {
                path,
                read_only: which & 4 != 0,
            };
            let Ok(block) = Block::open(&cfg) else { return };
            run(mem, block, Nobody, ops);
        }
    }
});
