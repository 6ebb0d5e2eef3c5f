// SPDX-License-Identifier: GPL-3.0-or-later
//! Virtio devices over the virtio-mmio (version 2) transport.
//!
//! Each device is split three ways (see STYLE.md): pure queue logic that works on a
//! `virtio_queue::Queue` and guest memory only (unit-tested with `MockSplitQueue`), a thin
//! event handler ([`VirtioDevice::process_queue`] / [`VirtioDevice::process_extra`] called by
//! the [`worker::Worker`] on the VMM thread's event loop), and the MMIO register state
//! machine in [`mmio`] (vcpu threads). The two sides share only atomics: a vcpu never waits
//! for device work to read or write a register.

pub mod block;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod rng;
mod sys;
#[cfg(test)]
mod test_utils;
pub mod vsock;
pub mod worker;

use std::fmt;
use std::sync::{Arc, Mutex};

use std::os::fd::RawFd;

use event_manager::{EventSet, MutEventSubscriber};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::MmioDevice;
use crate::devices::irq::IrqLine;
use mmio::MmioTransport;
pub use queue::{DeviceFault, FdRegistry, QueueCtx, QueueMask};

/// Virtio device ids (virtio spec 1.2, section 5).
pub const TYPE_BLOCK: u32 = 2;
/// Network card.
pub const TYPE_NET: u32 = 1;
/// Entropy source.
pub const TYPE_RNG: u32 = 4;
/// Socket device.
pub const TYPE_VSOCK: u32 = 19;

/// VIRTIO_F_VERSION_1: the only transport generation we speak.
pub const F_VERSION_1: u64 = 1 << 32;
/// VIRTIO_RING_F_INDIRECT_DESC (virtio-queue walks indirect tables, one level only).
pub const F_INDIRECT_DESC: u64 = 1 << 28;
/// VIRTIO_RING_F_EVENT_IDX: notification suppression both ways through `used_event` and
/// `avail_event` (offered by every device here).
pub const F_EVENT_IDX: u64 = 1 << 29;

/// Errors building a virtio device.
#[derive(Debug)]
pub enum VirtioError {
    /// Opening the backing file of a block device failed.
    OpenDisk(std::path::PathBuf, std::io::Error),
    /// Reading the size of a block device's backing file failed.
    DiskSize(std::path::PathBuf, std::io::Error),
    /// A block device's backing file is locked by `anchor-vault volume delete`.
    DiskBeingDeleted(std::path::PathBuf),
    /// A block device's backing file was deleted or replaced while it was being opened.
    DiskGone(std::path::PathBuf),
    /// Locking a block device's backing file failed.
    DiskLock(std::path::PathBuf, std::io::Error),
    /// The backing file of a block device is not a whole number of 512-byte sectors.
    DiskNotSectorAligned(std::path::PathBuf, u64),
    /// Creating an eventfd failed.
    EventFd(std::io::Error),
    /// Creating a timerfd failed.
    TimerFd(std::io::Error),
    /// Mapping the page that holds a device's registers failed.
    RegisterPage(std::io::Error),
    /// Binding the vsock Unix socket failed.
    VsockBind(std::path::PathBuf, std::io::Error),
    /// Opening or locking the vsock socket's lock file failed.
    VsockLock(std::path::PathBuf, std::io::Error),
    /// The vsock socket path is taken (by another VMM, a live listener, or a non-socket).
    VsockInUse(std::path::PathBuf, &'static str),
    /// The guest CID is reserved (0, 1, 2 and u32::MAX are not valid guest CIDs).
    VsockCid(u64),
    /// Connecting to (or setting up) the network backend's Unix socket failed.
    NetBackend(std::path::PathBuf, std::io::Error),
    /// The inherited network backend descriptor is not a usable Unix stream socket.
    NetFd(i32, std::io::Error),
    /// The inherited descriptor of the anchor host's routes is not a NETLINK_ROUTE
    /// socket, or its local routes cannot be read through it.
    NetHostFd(i32, std::io::Error),
    /// Making the network backend socket non-blocking failed.
    NetSetup(std::io::Error),
    /// The virtio-queue crate refused a queue size (internal invariant).
    Queue(virtio_queue::Error),
}

impl fmt::Display for VirtioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OpenDisk(p, _) => write!(f, "cannot open disk image {}", p.display()),
            Self::DiskSize(p, _) => {
                write!(f, "cannot read the size of the disk image {}", p.display())
            }
            Self::DiskBeingDeleted(p) => write!(
                f,
                "disk image {} is being deleted (anchor-vault volume delete holds its lock)",
                p.display()
            ),
            Self::DiskGone(p) => write!(
                f,
                "disk image {} was deleted or replaced while it was being opened",
                p.display()
            ),
            Self::DiskLock(p, _) => write!(f, "cannot lock the disk image {}", p.display()),
            Self::DiskNotSectorAligned(p, n) => {
                write!(
                    f,
                    "disk image {}: size {n} is not a multiple of 512",
                    p.display()
                )
            }
            Self::EventFd(_) => write!(f, "cannot create an eventfd"),
            Self::TimerFd(_) => write!(f, "cannot create a timerfd"),
            Self::RegisterPage(_) => write!(f, "cannot map the device's register page"),
            Self::VsockBind(p, _) => write!(f, "cannot bind the vsock Unix socket {}", p.display()),
            Self::VsockLock(p, _) => write!(f, "cannot lock {}", p.display()),
            Self::VsockInUse(p, why) => write!(f, "vsock socket {} is in use: {why}", p.display()),
            Self::VsockCid(c) => write!(f, "invalid vsock guest CID {c}"),
            Self::NetBackend(p, _) => {
                write!(f, "cannot connect to the network backend {}", p.display())
            }
            Self::NetFd(fd, _) => write!(f, "cannot use fd {fd} as the network backend"),
            Self::NetHostFd(fd, _) => {
                write!(
                    f,
                    "cannot read the anchor host's own addresses through fd {fd}"
                )
            }
            Self::NetSetup(_) => write!(f, "cannot set up the network backend socket"),
            Self::Queue(_) => write!(f, "invalid virtio queue parameters"),
        }
    }
}

impl std::error::Error for VirtioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::OpenDisk(_, e)
            | Self::DiskSize(_, e)
            | Self::DiskLock(_, e)
            | Self::EventFd(e)
            | Self::TimerFd(e)
            | Self::RegisterPage(e)
            | Self::VsockBind(_, e)
            | Self::VsockLock(_, e)
            | Self::NetBackend(_, e)
            | Self::NetFd(_, e)
            | Self::NetHostFd(_, e)
            | Self::NetSetup(e) => Some(e),
            Self::Queue(e) => Some(e),
            Self::DiskNotSectorAligned(..)
            | Self::DiskBeingDeleted(_)
            | Self::DiskGone(_)
            | Self::VsockCid(_)
            | Self::VsockInUse(..) => None,
        }
    }
}

/// Registers a device's queue notification eventfds (by queue index) with KVM, one
/// ioeventfd per queue on QueueNotify. It runs at most once, on the vcpu thread that
/// writes the device's first accepted DRIVER_OK.
pub type NotifyRegistrar = Box<dyn FnOnce(&[EventFd]) + Send>;

/// A [`NotifyRegistrar`] waiting for the driver, shared by the transport (which fires it)
/// and the VMM core (which arms it).
///
/// Why not at build time: KVM frees the replaced I/O bus of every ioeventfd registration
/// through an SRCU callback (Linux 6.18: `call_srcu` in `kvm_io_bus_register_dev`), and
/// destroying the VM waits for every pending callback (`srcu_barrier` in
/// `kvm_destroy_vm`). A normal SRCU grace period plus the callback delay takes 2-4 jiffies
/// (8-16 ms at HZ=250), so a room that registered at build time and ends within that
/// window pays it at exit: it was most of a tiny guest's whole cycle (see
/// vmm/README.md, "Benchmarks and cold start"). Registered at DRIVER_OK (as QEMU starts
/// its ioeventfds when the driver is up), a guest without a virtio driver registers
/// nothing and a real room's grace period ends long before the room does. Until then a
/// notify exits to the VMM and the transport signals the same eventfd.
#[derive(Default)]
pub struct LazyNotify(Mutex<Option<NotifyRegistrar>>);

impl LazyNotify {
    /// Arms the registrar (replacing one not yet fired).
    pub fn arm(&self, f: NotifyRegistrar) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(f);
        }
    }

    /// Runs the registrar once; later calls do nothing.
    pub fn fire(&self, evts: &[EventFd]) {
        let f = self.0.lock().ok().and_then(|mut slot| slot.take());
        if let Some(f) = f {
            f(evts);
        }
    }

    /// Whether a registrar is armed and not yet fired (tests).
    pub fn is_armed(&self) -> bool {
        self.0.lock().is_ok_and(|slot| slot.is_some())
    }
}

impl fmt::Debug for LazyNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyNotify")
            .field("armed", &self.is_armed())
            .finish()
    }
}

/// What the VMM core needs to wire one virtio device: the MMIO window (register side,
/// vcpu threads), the event subscriber (device work, VMM thread; a separate object behind
/// its own lock) and the slot for the registrar that turns the queue notification
/// eventfds into KVM ioeventfds on the QueueNotify register once the driver is up.
pub struct VirtioDeviceHandle {
    /// Register window; called from vcpu threads.
    pub mmio: Arc<Mutex<dyn MmioDevice>>,
    /// Queue processing; runs on the VMM thread's event manager.
    pub subscriber: Arc<Mutex<dyn MutEventSubscriber + Send>>,
    /// Where the VMM arms the ioeventfd registration (fired at the first DRIVER_OK).
    pub lazy_notify: Arc<LazyNotify>,
    /// The registers as the guest reads them (mapped into the guest read-only where the
    /// VMM can, see [`mmio`]).
    pub registers: Arc<crate::sys::RegisterPage>,
}

impl fmt::Debug for VirtioDeviceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VirtioDeviceHandle")
    }
}

/// Configuration of one virtio-blk device.
#[derive(Debug, Clone)]
pub struct BlockConfig {
    /// Backing file (raw image).
    pub path: std::path::PathBuf,
    /// Offer VIRTIO_BLK_F_RO and fail every write.
    pub read_only: bool,
}

/// Configuration of the virtio-vsock device (Firecracker's hybrid model).
#[derive(Debug, Clone)]
pub struct VsockConfig {
    /// The guest's context id.
    pub guest_cid: u64,
    /// Host Unix socket: host processes connect here and send `CONNECT <port>\n`;
    /// guest connections to host port P go to `<uds_path>_<P>`.
    pub uds_path: std::path::PathBuf,
}

/// The device side of a virtio device, driven by [`MmioTransport`].
pub trait VirtioDevice: Send {
    /// Virtio device id.
    fn device_type(&self) -> u32;
    /// Features offered to the driver (VERSION_1 is added by the transport).
    fn avail_features(&self) -> u64;
    /// Maximum size of each queue; the number of entries is the number of queues.
    fn queue_max_sizes(&self) -> &'static [u16];
    /// Device configuration space (little-endian bytes). Read once, when the transport is
    /// built: configuration is fixed for the life of the device.
    fn config_space(&self) -> &[u8];
    /// Called once the driver sets DRIVER_OK (all queues are ready and validated).
    fn activate(&mut self, _ctx: &mut QueueCtx<'_>) -> Result<(), DeviceFault> {
        Ok(())
    }
    /// Drop every piece of state derived from the driver (status was written 0).
    fn reset(&mut self);
    /// Process queue `index` after a notification: one turn, bounded (a byte budget and at
    /// most a queue's worth of chains). Returns the queues with work left undone (the
    /// worker re-arms their eventfds so the event loop comes back after serving others).
    fn process_queue(
        &mut self,
        index: usize,
        ctx: &mut QueueCtx<'_>,
        reg: &mut dyn FdRegistry,
    ) -> Result<QueueMask, DeviceFault>;
    /// Register device-specific fds (data values >= [`mmio::EXTRA_EVENT_BASE`]).
    fn register_extra(&mut self, _reg: &mut dyn FdRegistry) {}
    /// Handle an event on a device-specific fd. `ctx` is `None` while the device is not
    /// active (the device must still drain/close its fd so the loop does not spin).
    /// Returns the queues with work left undone, as `process_queue`.
    fn process_extra(
        &mut self,
        _fd: RawFd,
        _data: u32,
        _set: EventSet,
        _reg: &mut dyn FdRegistry,
        _ctx: Option<&mut QueueCtx<'_>>,
    ) -> Result<QueueMask, DeviceFault> {
        Ok(0)
    }
    /// Called at the start of every event-loop callback, active or not (release fds that a
    /// reset dropped: reset runs on a vcpu thread without access to the event loop).
    fn housekeeping(&mut self, _reg: &mut dyn FdRegistry) {}
}

fn handle<D: VirtioDevice + 'static>(
    mem: GuestMemoryMmap<()>,
    irq: IrqLine,
    device: D,
) -> Result<VirtioDeviceHandle, VirtioError> {
    let (transport, worker) = MmioTransport::new(mem, irq, device)?;
    let lazy_notify = transport.lazy_notify();
    let registers = transport.register_page();
    let mmio: Arc<Mutex<dyn MmioDevice>> = Arc::new(Mutex::new(transport));
    let subscriber: Arc<Mutex<dyn MutEventSubscriber + Send>> = worker;
    Ok(VirtioDeviceHandle {
        mmio,
        subscriber,
        lazy_notify,
        registers,
    })
}

/// Build a virtio-blk device backed by `cfg.path`.
pub fn build_block(
    mem: GuestMemoryMmap<()>,
    irq: IrqLine,
    cfg: &BlockConfig,
) -> Result<VirtioDeviceHandle, VirtioError> {
    let dev = block::Block::open(cfg)?;
    handle(mem, irq, dev)
}

/// Build the virtio-rng device. `unready` (zero in production) makes the host pool look
/// uninitialised for that long after start (tests of the retry path).
pub fn build_rng(
    mem: GuestMemoryMmap<()>,
    irq: IrqLine,
    unready: std::time::Duration,
) -> Result<VirtioDeviceHandle, VirtioError> {
    let entropy = rng::KernelEntropy::new(unready);
    handle(mem, irq, rng::Rng::with_entropy(entropy)?)
}

/// Build the virtio-vsock device (binds `cfg.uds_path`).
pub fn build_vsock(
    mem: GuestMemoryMmap<()>,
    irq: IrqLine,
    cfg: &VsockConfig,
) -> Result<VirtioDeviceHandle, VirtioError> {
    let dev = vsock::Vsock::new(cfg)?;
    handle(mem, irq, dev)
}

/// Connect to the network backend listening at `path` (at start, before any seccomp
/// filter; the connection is never re-established). The connect does not wait: a backend
/// whose listen backlog is full is an error now, not a VMM stuck at start.
pub fn connect_net_backend(
    path: &std::path::Path,
) -> Result<std::os::unix::net::UnixStream, VirtioError> {
    sys::connect_unix_nonblocking(path).map_err(|e| VirtioError::NetBackend(path.to_path_buf(), e))
}

/// Take over the inherited descriptor `fd` as the network backend: it must be an open Unix
/// stream socket.
///
/// # Safety
/// Call it before the process opens any descriptor of its own (the number could
/// otherwise name one of those), and at most once for `fd`.
pub unsafe fn adopt_net_backend(fd: i32) -> Result<std::os::unix::net::UnixStream, VirtioError> {
    // SAFETY: the caller's contract, passed on.
    unsafe { sys::adopt_unix_stream(fd) }.map_err(|e| VirtioError::NetFd(fd, e))
}

/// Take over the inherited descriptor `fd` as the anchor host's NETLINK_ROUTE socket
/// and read its local networks (see [`net::host`]).
///
/// # Safety
/// As [`adopt_net_backend`]: before the process opens a descriptor, once for `fd`.
pub unsafe fn adopt_net_host(fd: i32) -> Result<net::host::HostNets, VirtioError> {
    // SAFETY: the caller's contract, passed on.
    unsafe { sys::adopt_netlink_route(fd) }
        .and_then(net::host::HostNets::new)
        .map_err(|e| VirtioError::NetHostFd(fd, e))
}

/// Build the virtio-net device over `backend` (from [`connect_net_backend`] or
/// [`adopt_net_backend`]); with `deny` or `host`, its egress rule is strict (see
/// [`net::egress`]) and, with `host`, refuses the anchor host's local networks as they
/// are at each moment.
pub fn build_net(
    mem: GuestMemoryMmap<()>,
    irq: IrqLine,
    backend: std::os::unix::net::UnixStream,
    deny: Option<Vec<net::egress::Net4>>,
    host: Option<net::host::HostNets>,
) -> Result<VirtioDeviceHandle, VirtioError> {
    let mut dev = net::Net::new(backend).map_err(VirtioError::NetSetup)?;
    if deny.is_some() || host.is_some() {
        dev.set_egress(net::egress::Egress::strict_nets(deny.unwrap_or_default()));
    }
    if let Some(h) = host {
        dev.set_host(h);
    }
    handle(mem, irq, dev)
}
