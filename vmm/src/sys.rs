// SPDX-License-Identifier: GPL-3.0-or-later
//! Every unsafe call of the crate lives here, each with its SAFETY argument.

use std::io;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MmapRegion};

/// The huge-page size guest RAM is aligned to: a PMD on x86_64 and on arm64 with 4 KiB
/// pages, the size KVM maps a stage-2 fault at when the host backs it with one page.
pub const GUEST_RAM_ALIGN: usize = 2 << 20;

/// Maps `len` bytes (a multiple of 4 KiB) of anonymous, private, unreserved read-write
/// memory starting on a `GUEST_RAM_ALIGN` boundary, and asks the kernel for transparent
/// huge pages over it (`MADV_HUGEPAGE`). Returns the region and whether the kernel took
/// the advice (a kernel without THP refuses it; the memory then works in 4 KiB pages).
///
/// Aligned because KVM maps a guest 2 MiB range with one huge stage-2 entry only when
/// guest-physical and host-virtual addresses agree modulo 2 MiB, and guest RAM ranges
/// start 2 MiB aligned. The region is not owned: nothing unmaps it. One VMM process runs
/// one VM, whose memory lives until the process exits (the runner never drops it); a
/// unit test that drops one leaves the address range mapped.
pub fn map_guest_ram(len: usize) -> io::Result<(MmapRegion<()>, bool)> {
    let padded = len
        .checked_add(GUEST_RAM_ALIGN)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing: no
    // existing memory is affected.
    let base = unsafe { libc::mmap(std::ptr::null_mut(), padded, prot, flags, -1, 0) };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = base as usize;
    let start = base.next_multiple_of(GUEST_RAM_ALIGN);
    let head = start - base;
    let tail = padded - head - len;
    // Failing to unmap an end would only leave unused address space behind.
    if head > 0 {
        // SAFETY: [base, start) is the head of the mapping made above, before the part
        // kept; nothing refers to it.
        unsafe { libc::munmap(base as *mut libc::c_void, head) };
    }
    if tail > 0 {
        // SAFETY: [start + len, base + padded) is the tail of that mapping, after the part
        // kept; nothing refers to it.
        unsafe { libc::munmap((start + len) as *mut libc::c_void, tail) };
    }
    // SAFETY: advice over the kept part of our own mapping; it changes no contents.
    let huge = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE) } == 0;
    let builder = MmapRegionBuilder::new(len)
        .with_mmap_prot(prot)
        .with_mmap_flags(flags);
    // SAFETY: [start, start + len) is a live read-write mapping of this process that
    // nothing else uses and nothing unmaps (see above).
    let region = unsafe { builder.with_raw_mmap_pointer(start as *mut u8) }
        .build()
        .map_err(io::Error::other)?;
    Ok((region, huge))
}

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
