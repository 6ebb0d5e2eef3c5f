// SPDX-License-Identifier: GPL-3.0-or-later
//! Every unsafe call of the crate lives here, each with its SAFETY argument.

use std::io;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Registers every region of `mem` with KVM as a memory slot.
pub fn register_guest_memory(
    vm: &VmFd,
    mem: &GuestMemoryMmap<()>,
) -> Result<(), kvm_ioctls::Error> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region.as_ptr() as u64;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host,
            flags: 0,
        };
        // SAFETY: the region is a live mapping of exactly `memory_size` bytes
        // owned by `mem`. The mapping outlives the VM: `Built` owns both and the
        // runner leaks both until process exit; on a build error the VM fd is
        // dropped before the mapping (declaration order in `builder::build`).
        unsafe { vm.set_user_memory_region(r)? };
    }
    Ok(())
}

/// KVM_GET_STATS_FD on a vcpu: a file with the vcpu's binary statistics (KVM 5.14+).
pub fn vcpu_stats_fd(vcpu: &kvm_ioctls::VcpuFd) -> io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    const KVM_GET_STATS_FD: libc::c_ulong = 0xaece;
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1.
    let fd = unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_GET_STATS_FD) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

thread_local! {
    /// This vcpu thread's `kvm_run.immediate_exit` byte (null elsewhere).
    static IMMEDIATE_EXIT: std::cell::Cell<*mut u8> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

/// Registers the calling vcpu thread's `immediate_exit` byte for the kick
/// handler. The pointer targets the vcpu's mmapped `kvm_run`, which lives as
/// long as the VcpuFd, and the VcpuFd is never dropped (the thread parks).
pub fn register_immediate_exit(flag: &mut u8) {
    let p: *mut u8 = flag;
    IMMEDIATE_EXIT.with(|c| c.set(p));
}

extern "C" fn kick_handler(_: libc::c_int) {
    // Async-signal-safe: a const-initialised TLS read and one volatile store.
    let p = IMMEDIATE_EXIT.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: `p` was registered by this thread and points into its live
        // kvm_run mapping (see register_immediate_exit). If the signal lands
        // just before KVM_RUN, KVM sees the flag and returns EINTR at once.
        unsafe { std::ptr::write_volatile(p, 1) };
    }
}

/// The real-time signal used to kick vcpu threads out of KVM_RUN.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// Installs the kick handler (it interrupts KVM_RUN with EINTR and sets the
/// thread's immediate_exit flag instead of killing the process).
pub fn install_kick_handler() -> io::Result<()> {
    // SAFETY: zeroed sigaction is a valid "no flags, empty mask" value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = kick_handler as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = 0;
    // SAFETY: sa is fully initialised; the handler is async-signal-safe (empty).
    let r = unsafe { libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends the kick signal to a thread.
pub fn kick_thread(t: libc::pthread_t) {
    // SAFETY: `t` comes from a JoinHandle of a thread that is never joined
    // or detached before the process exits, so the id stays valid.
    unsafe {
        libc::pthread_kill(t, kick_signal());
    }
}

/// Test-only trigger: issues a syscall that no filter allows.
#[cfg(feature = "seccomp-test-trigger")]
pub fn forbidden_syscall() {
    // SAFETY: getpgid(0) has no memory effects; it is simply not on the
    // allow-list, so seccomp kills the process with SIGSYS.
    unsafe {
        libc::syscall(libc::SYS_getpgid, 0);
    }
}

/// Terminates the process at once with `code` (exit_group), without running
/// destructors: VM and memory teardown is left to the kernel.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// Defers KVM's VM destruction (about 16 ms on this host) past the VMM's own
/// exit. Forks a holder process that inherits only the KVM fds in `keep`
/// (every other fd, including stdio, is closed in it) and waits until the VMM
/// process is gone (EOF on a pipe whose write end only the VMM holds), then
/// exits; the last reference to the VM is dropped there. Guest memory is
/// marked MADV_DONTFORK first, so the holder shares none of it (no
/// copy-on-write of guest pages). Must be called while the process is still
/// single-threaded (before the vcpu threads are spawned).
pub fn spawn_teardown_holder(
    mem: &GuestMemoryMmap<()>,
    keep: &[std::os::fd::RawFd],
) -> io::Result<()> {
    for region in mem.iter() {
        // SAFETY: the range is exactly one live mapping owned by `mem`;
        // MADV_DONTFORK only changes what a fork inherits.
        let r = unsafe {
            libc::madvise(
                region.as_ptr().cast(),
                region.len() as usize,
                libc::MADV_DONTFORK,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [rd, wr] = fds;
    // SAFETY: the process is single-threaded here (documented precondition),
    // so the child may run arbitrary code; it only calls close/read/_exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // Child: keep the KVM fds and the pipe's read end, close the rest
        // (close_range over the gaps between the kept fds, up to ~0).
        let mut kept: Vec<u32> = keep
            .iter()
            .chain(std::iter::once(&rd))
            .filter_map(|&f| u32::try_from(f).ok())
            .collect();
        kept.sort_unstable();
        let mut next = 0u32;
        for &k in kept.iter().chain(std::iter::once(&u32::MAX)) {
            if k > next {
                // SAFETY: close_range only closes fds of this freshly forked
                // child; no pointers are involved.
                unsafe { libc::syscall(libc::SYS_close_range, next, k - 1, 0) };
            }
            next = k.saturating_add(1);
        }
        let mut b = [0u8; 1];
        // SAFETY: reads into a valid 1-byte buffer; returns 0 (EOF) once the
        // VMM process, the only holder of the write end, has exited.
        while unsafe { libc::read(rd, b.as_mut_ptr().cast(), 1) } < 0 {}
        // SAFETY: terminate the holder; this drops the last VM references.
        unsafe { libc::_exit(0) };
    }
    // Parent: the write end stays open until the process exits.
    // SAFETY: `rd` is our own fd and is not used afterwards.
    unsafe { libc::close(rd) };
    let _ = wr;
    Ok(())
}
