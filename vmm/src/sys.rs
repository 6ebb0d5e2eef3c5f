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

/// A regular file mapped whole, private and read-only, with its pages mapped up front
/// (`MAP_POPULATE`: one call instead of a fault per page) when it is no larger than the
/// caller says it can use; a larger one is mapped lazily, so only what a loader reads is
/// read (a kernel file larger than guest RAM is refused after its header, not after
/// reading all of it: a sparse 1 TiB "kernel" cost an hour and the host's page cache).
/// Unmapped on drop.
///
/// Why a kernel is copied from a mapping rather than with `read(2)`: both copy the same
/// bytes once, but `read` copies inside the host kernel with the instruction the kernel
/// picks (`rep movsb` on CPUs with ERMS), which an emulated host such as the nested test
/// machine (QEMU TCG) runs a byte at a time. Measured there on the 18.7 MB room vmlinux:
/// `read` 29-31 ms; mapping it 2.5-3.2 ms plus a user-space copy 4.2-4.5 ms. On this
/// development host (hardware-virtualised) the two are level: 2.5 ms against 2.8 ms.
///
/// The contents are reached only through [`FileMap::volatile`]: another process may write
/// the file while it is mapped, so no `&[u8]` is ever made of it. A file truncated while
/// mapped makes a read past its new end fault (SIGBUS); the VMM maps only the room kernel,
/// from the read-only base, and only while it copies it before the guest exists.
#[derive(Debug)]
pub struct FileMap {
    addr: *mut u8,
    len: usize,
}

impl FileMap {
    /// Maps `file` (a regular file; an empty one gives an empty map), its pages read in
    /// up front only if it is at most `populate_max` bytes long.
    pub fn new(file: &std::fs::File, populate_max: u64) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let len =
            usize::try_from(meta.len()).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        if len == 0 {
            return Ok(Self {
                addr: std::ptr::NonNull::dangling().as_ptr(),
                len: 0,
            });
        }
        let flags = if meta.len() <= populate_max {
            libc::MAP_PRIVATE | libc::MAP_POPULATE
        } else {
            libc::MAP_PRIVATE
        };
        // SAFETY: a fresh read-only mapping of an open file at an address of the kernel's
        // choosing: no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                flags,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            addr: addr.cast(),
            len,
        })
    }

    /// The mapped bytes.
    pub fn volatile(&self) -> vm_memory::VolatileSlice<'_> {
        // SAFETY: [addr, addr + len) is this map's live mapping (or, for len 0, no
        // memory at all), readable for as long as `self` is borrowed. Writing through
        // the slice would fault (PROT_READ); nothing here writes to it.
        unsafe { vm_memory::VolatileSlice::new(self.addr, self.len) }
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `new`, unmapped once; no slice of it outlives
            // `self` (`volatile` borrows it).
            unsafe { libc::munmap(self.addr.cast(), self.len) };
        }
    }
}

/// Bytes in a [`RegisterPage`]: one 4 KiB page, the size of a virtio-mmio window.
pub const REGISTER_PAGE_SIZE: usize = 4096;

/// One page of anonymous memory holding a virtio-mmio device's registers as the guest
/// reads them (`devices::virtio::mmio`). The VMM may hand it to KVM as a read-only memory
/// slot over the device's window, so the guest's vcpus read it while VMM threads update
/// it: it is only ever accessed as `AtomicU32` words, never as plain memory. The guest
/// cannot write it (writes to a read-only slot exit to the VMM as MMIO).
#[derive(Debug)]
pub struct RegisterPage {
    addr: std::ptr::NonNull<std::sync::atomic::AtomicU32>,
}

// SAFETY: the page is reached only through `&AtomicU32` (see `word`), which is Sync;
// the pointer is owned by this value and unmapped only in Drop.
unsafe impl Send for RegisterPage {}
// SAFETY: as for Send: every access is atomic.
unsafe impl Sync for RegisterPage {}

impl RegisterPage {
    /// A zeroed page.
    pub fn new() -> io::Result<Self> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing: no
        // existing memory is affected. The kernel zero-fills it.
        let addr =
            unsafe { libc::mmap(std::ptr::null_mut(), REGISTER_PAGE_SIZE, prot, flags, -1, 0) };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr = std::ptr::NonNull::new(addr.cast())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Self { addr })
    }

    /// The 32-bit word at byte `offset` (a multiple of 4 below the page size).
    pub fn word(&self, offset: u64) -> Option<&std::sync::atomic::AtomicU32> {
        let off = usize::try_from(offset).ok()?;
        if off % 4 != 0 || off >= REGISTER_PAGE_SIZE {
            return None;
        }
        // SAFETY: `off / 4` words into the page stays inside the page's mapping (checked
        // above), so the offset pointer is in bounds of one allocation.
        let p = unsafe { self.addr.as_ptr().add(off / 4) };
        // SAFETY: `p` is in the live page and 4-byte aligned (the page is page-aligned);
        // AtomicU32 has the size and alignment of u32 and every access to the page is
        // atomic, so sharing it with the guest's reads (which Rust does not see) races
        // with nothing Rust reads non-atomically. The reference lives no longer than
        // `self`, which owns the mapping.
        Some(unsafe { &*p })
    }

    /// The word at `offset` (0 for an offset `word` refuses).
    pub fn get(&self, offset: u64) -> u32 {
        self.word(offset)
            .map_or(0, |w| w.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Stores `v` in the word at `offset` (nothing for an offset `word` refuses).
    pub fn set(&self, offset: u64, v: u32) {
        if let Some(w) = self.word(offset) {
            w.store(v, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The page's address in this process (for KVM's memory slot).
    pub fn host_addr(&self) -> u64 {
        self.addr.as_ptr() as u64
    }
}

impl Drop for RegisterPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no `word` reference outlives
        // `self`. A page handed to KVM is never dropped (see `register_register_page`).
        unsafe { libc::munmap(self.addr.as_ptr().cast(), REGISTER_PAGE_SIZE) };
    }
}

/// Makes `page` the guest's read-only view of the guest-physical page at `gpa`, as KVM
/// memory slot `slot` (KVM_MEM_READONLY: guest reads are served from the page without
/// an exit, writes exit to the VMM as MMIO). The page is kept alive for the life of the
/// process, as guest RAM is (one VMM process runs one VM).
pub fn register_register_page(
    vm: &VmFd,
    slot: u32,
    gpa: u64,
    page: &std::sync::Arc<RegisterPage>,
) -> Result<(), kvm_ioctls::Error> {
    let r = kvm_userspace_memory_region {
        slot,
        guest_phys_addr: gpa,
        memory_size: REGISTER_PAGE_SIZE as u64,
        userspace_addr: page.host_addr(),
        flags: kvm_bindings::KVM_MEM_READONLY,
    };
    // SAFETY: `userspace_addr` is a live mapping of exactly `memory_size` bytes, and it
    // stays mapped until the process exits: a reference to the page is leaked below,
    // so its Drop never runs, whatever happens to the VM or the transport.
    unsafe { vm.set_user_memory_region(r)? };
    std::mem::forget(page.clone());
    Ok(())
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

/// Sets or clears O_NONBLOCK on the open file behind `fd`; returns whether it was set
/// before (so the caller can put it back).
pub fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>, on: bool) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL takes no argument and only reads this descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let was = flags & libc::O_NONBLOCK != 0;
    let want = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if want != flags {
        // SAFETY: F_SETFL with an int of status flags only changes this open file's flags.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, want) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(was)
}

thread_local! {
    /// This vcpu thread's `kvm_run.immediate_exit` byte (null elsewhere).
    static IMMEDIATE_EXIT: std::cell::Cell<*mut u8> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

/// Registers the calling vcpu thread's `immediate_exit` byte for the kick
/// handler, which stores 1 in it (volatile) whenever the kick signal arrives.
///
/// # Safety
/// `flag` must stay valid for writes for as long as this thread can take the kick
/// signal (the borrow ends here; the pointer is kept): the byte of the vcpu's mmapped
/// `kvm_run`, which lives as long as its VcpuFd, never dropped (the thread parks).
/// The handler's store may come between any two of the thread's own accesses to the
/// byte, so the thread must read nothing from it that the store could invalidate:
/// only the kernel reads it (KVM_RUN), and the thread only writes 0 to it.
pub unsafe fn register_immediate_exit(flag: &mut u8) {
    let p: *mut u8 = flag;
    IMMEDIATE_EXIT.with(|c| c.set(p));
}

/// The width in bytes of each access of the port-I/O exit that KVM_RUN just returned
/// (`kvm_run.io.size`); 1 when the exit is not port I/O.
///
/// kvm-ioctls hands a port-I/O exit's data over as one slice of `size * count` bytes and
/// leaves `size` out, so `inw` (one access of 2 bytes) and `rep insb` of 2 (two of 1)
/// would look the same without it.
///
/// # Safety
/// `run` must point to the calling thread's vcpu's `kvm_run`, still mapped (its VcpuFd
/// alive), and KVM_RUN must have returned on this thread since its last entry (the
/// kernel writes the header only inside KVM_RUN). No reference to the header may be live
/// meanwhile: the exit kvm-ioctls returns borrows only the data of a port-I/O or MMIO
/// exit (port I/O: at `io.data_offset`, KVM_PIO_PAGE_OFFSET pages into the mapping, past
/// the header; MMIO: inside the union, which this only reads for a port-I/O exit).
pub unsafe fn pio_width(run: *const kvm_bindings::kvm_run) -> usize {
    // SAFETY: `run` is valid for reads (the contract); `exit_reason` is a plain u32, which
    // nothing writes while this thread is out of KVM_RUN.
    let reason = unsafe { (*run).exit_reason };
    if reason != kvm_bindings::KVM_EXIT_IO {
        return 1;
    }
    // SAFETY: only the field's address is formed, inside the struct `run` points to.
    let size = unsafe { std::ptr::addr_of!((*run).__bindgen_anon_1.io.size) };
    // SAFETY: readable as above; KVM_EXIT_IO says the union holds `io`, whose `size` is a
    // plain u8 that no live reference covers (the exit's slice is the data page).
    let size = unsafe { size.read() };
    usize::from(size)
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
    // SAFETY: sa is fully initialised; the handler is async-signal-safe (a
    // const-initialised TLS read and one volatile store).
    let r = unsafe { libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends the kick signal to the thread of `t`.
pub fn kick_thread<T>(t: &std::thread::JoinHandle<T>) {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: the id comes from `t`, a JoinHandle borrowed for the call: the thread
    // has not been joined or detached, so the id still names it.
    unsafe {
        libc::pthread_kill(t.as_pthread_t(), kick_signal());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_register_page_is_zeroed_page_aligned_and_has_only_aligned_words() {
        use std::sync::atomic::Ordering;
        let p = RegisterPage::new().unwrap();
        assert_eq!(p.host_addr() % REGISTER_PAGE_SIZE as u64, 0);
        for off in (0..REGISTER_PAGE_SIZE as u64).step_by(4) {
            assert_eq!(
                p.word(off).unwrap().load(Ordering::SeqCst),
                0,
                "offset {off}"
            );
        }
        assert!(p.word(1).is_none());
        assert!(p.word(0x62).is_none());
        assert!(p.word(REGISTER_PAGE_SIZE as u64).is_none());
        assert!(p.word(u64::MAX - 3).is_none());
        p.word(0xffc).unwrap().store(0xdead_beef, Ordering::SeqCst);
        assert_eq!(p.word(0xffc).unwrap().load(Ordering::SeqCst), 0xdead_beef);
    }

    #[test]
    fn a_file_map_holds_the_files_bytes() {
        let want: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&want).unwrap();
        // Read in up front, or (larger than the caller's bound) lazily: the same bytes.
        for populate_max in [u64::MAX, 100] {
            let map = FileMap::new(&f, populate_max).unwrap();
            let v = map.volatile();
            assert_eq!(v.len(), want.len());
            let mut got = vec![0u8; want.len()];
            assert_eq!(v.copy_to(&mut got[..]), want.len());
            assert_eq!(got, want);
        }
    }

    #[test]
    fn an_empty_file_maps_to_nothing_and_a_directory_is_refused() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(FileMap::new(&f, u64::MAX).unwrap().volatile().len(), 0);
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        let e = FileMap::new(&dir, u64::MAX).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file");
    }
}
