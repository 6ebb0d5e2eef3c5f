// SPDX-License-Identifier: GPL-3.0-or-later
//! What a VMM taken over by its guest can still ask the host kernel for: each case forks
//! a child that installs the compiled filter of one thread kind (the very program
//! anchor-vmm installs) and makes one system call; the filter either lets it through
//! (the child exits) or kills it (SIGSYS). Needs no KVM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::multiple_unsafe_ops_per_block
)]

use anchor_vmm::seccomp::{program, ThreadKind};

/// Raw system call numbers and arguments (what a return-oriented program can make).
type Call = (libc::c_long, [usize; 6]);

const FUTEX_PRIVATE: usize = 128;
const FUTEX_CLOCK_REALTIME: usize = 256;

/// Runs `call` in a child under the filter of `kind`; true when the filter let it through.
fn allowed(kind: ThreadKind, call: Call) -> bool {
    let prog = program(kind).unwrap();
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).unwrap(),
        filter: prog.as_ptr().cast_mut().cast(),
    };
    // A futex word of the child's own (a copy of this one after fork).
    let word = Box::new(0u32);
    let word_addr = &raw const *word as usize;
    let (nr, a) = call;
    let a = a.map(|x| if x == WORD { word_addr } else { x });
    // SAFETY: the child only makes raw system calls (no allocation, no lock) and ends
    // with _exit; `fprog` and `prog` are alive in its copy of our memory.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: raw system calls on integers and the prepared program; see above.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if libc::syscall(libc::SYS_seccomp, 1, 0, &raw const fprog) != 0 {
                libc::_exit(99);
            }
            libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: `status` is a valid int; `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    drop(word);
    if libc::WIFSIGNALED(status) {
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS, "status {status:#x}");
        return false;
    }
    assert_eq!(libc::WEXITSTATUS(status), 0, "the filter was not installed");
    true
}

/// Stands for the address of the child's futex word in a [`Call`].
const WORD: usize = usize::MAX - 7;

fn futex(op: usize) -> Call {
    // FUTEX_WAIT on a word that is 0, expecting 1: returns EAGAIN at once; the PI and
    // requeue operations on it return at once too (a free lock, nothing to requeue).
    (libc::SYS_futex, [WORD, op, 1, 0, WORD, 0])
}

/// Regression (review, compromised VMM): every futex operation was allowed, the
/// priority-inheritance and requeue ones too: the kernel's rt_mutex and requeue code,
/// the way of several local privilege escalations (CVE-2014-3153 through requeue_pi,
/// CVE-2021-3347 through the PI state), which nothing in the VMM uses. Only wait and
/// wake (plain and with a bit set; private or not, any clock) are left.
#[test]
fn only_the_futex_operations_the_vmm_uses_are_allowed() {
    for kind in [ThreadKind::Vmm, ThreadKind::Vcpu] {
        for op in [0, 1, 9, 10] {
            for flags in [0, FUTEX_PRIVATE, FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME] {
                assert!(
                    allowed(kind, futex(op | flags)),
                    "{kind:?}: futex op {op} flags {flags:#x} is refused"
                );
            }
        }
        // REQUEUE, CMP_REQUEUE, WAKE_OP, LOCK_PI, UNLOCK_PI, TRYLOCK_PI,
        // WAIT_REQUEUE_PI, CMP_REQUEUE_PI, LOCK_PI2, and numbers the kernel lacks.
        for op in [3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 0x7f] {
            for flags in [0, FUTEX_PRIVATE] {
                assert!(
                    !allowed(kind, futex(op | flags)),
                    "{kind:?}: futex op {op} flags {flags:#x} is allowed"
                );
            }
        }
    }
}

/// What the filters refuse however a hijacked VMM asks: files, programs, processes,
/// namespaces, other address families, KVM ioctls beyond the few it runs on, executable
/// memory, and the x32 numbering of allowed calls.
#[test]
fn a_hijacked_vmm_cannot_open_exec_spawn_trace_or_make_code() {
    const KVM_CREATE_VM: usize = 0xae01;
    const KVM_SET_USER_MEMORY_REGION: usize = 0x4020_ae46;
    const KVM_CREATE_DEVICE: usize = 0xc00c_aee0;
    let prot_rwx = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as usize;
    let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as usize;
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut refused: Vec<(&str, Call)> = vec![
        ("openat", (libc::SYS_openat, [0; 6])),
        ("open_by_handle_at", (libc::SYS_open_by_handle_at, [0; 6])),
        ("execve", (libc::SYS_execve, [0; 6])),
        ("execveat", (libc::SYS_execveat, [0; 6])),
        ("clone", (libc::SYS_clone, [0; 6])),
        ("clone3", (libc::SYS_clone3, [0; 6])),
        ("unshare", (libc::SYS_unshare, [0; 6])),
        ("setns", (libc::SYS_setns, [0; 6])),
        ("ptrace", (libc::SYS_ptrace, [0; 6])),
        ("process_vm_writev", (libc::SYS_process_vm_writev, [0; 6])),
        ("kill", (libc::SYS_kill, [0; 6])),
        ("prctl", (libc::SYS_prctl, [0; 6])),
        ("bind", (libc::SYS_bind, [0; 6])),
        ("listen", (libc::SYS_listen, [0; 6])),
        ("setsockopt", (libc::SYS_setsockopt, [0; 6])),
        ("socketpair", (libc::SYS_socketpair, [1, 1, 0, 0, 0, 0])),
        ("mount", (libc::SYS_mount, [0; 6])),
        ("bpf", (libc::SYS_bpf, [0; 6])),
        ("io_uring_setup", (libc::SYS_io_uring_setup, [0; 6])),
        ("userfaultfd", (libc::SYS_userfaultfd, [0; 6])),
        ("memfd_create", (libc::SYS_memfd_create, [0; 6])),
        ("pkey_mprotect", (libc::SYS_pkey_mprotect, [0; 6])),
        ("socket AF_INET", (libc::SYS_socket, [2, 1, 0, 0, 0, 0])),
        ("socket AF_NETLINK", (libc::SYS_socket, [16, 2, 0, 0, 0, 0])),
        ("socket AF_VSOCK", (libc::SYS_socket, [40, 1, 0, 0, 0, 0])),
        (
            "ioctl KVM_CREATE_VM",
            (libc::SYS_ioctl, [0, KVM_CREATE_VM, 0, 0, 0, 0]),
        ),
        (
            "ioctl KVM_SET_USER_MEMORY_REGION",
            (libc::SYS_ioctl, [0, KVM_SET_USER_MEMORY_REGION, 0, 0, 0, 0]),
        ),
        (
            "ioctl KVM_CREATE_DEVICE",
            (libc::SYS_ioctl, [0, KVM_CREATE_DEVICE, 0, 0, 0, 0]),
        ),
        ("ioctl TIOCSTI", (libc::SYS_ioctl, [0, 0x5412, 0, 0, 0, 0])),
        (
            "mmap PROT_EXEC",
            (libc::SYS_mmap, [0, 4096, prot_rwx, anon, usize::MAX, 0]),
        ),
        (
            "mprotect PROT_EXEC",
            (libc::SYS_mprotect, [0, 4096, prot_rwx, 0, 0, 0]),
        ),
    ];
    // Calls only x86_64 has: fork, and the x32 numbering of allowed ones.
    #[cfg(target_arch = "x86_64")]
    {
        const X32: libc::c_long = 0x4000_0000;
        refused.extend([
            ("fork", (libc::SYS_fork, [0; 6])),
            ("x32 openat", (X32 | libc::SYS_openat, [0; 6])),
            ("x32 read", (X32 | libc::SYS_read, [0; 6])),
        ]);
    }
    for kind in [ThreadKind::Vmm, ThreadKind::Vcpu] {
        for (name, call) in &refused {
            assert!(!allowed(kind, *call), "{kind:?} allows {name}");
        }
        // The test tells the two apart: what the thread kind needs goes through.
        assert!(allowed(kind, (libc::SYS_getpid, [0; 6])), "{kind:?}");
        assert!(
            allowed(kind, (libc::SYS_mmap, [0, 4096, 3, anon, usize::MAX, 0])),
            "{kind:?}"
        );
    }
    let rw_unix = (libc::SYS_socket, [1, 1, 0, 0, 0, 0]);
    assert!(allowed(ThreadKind::Vmm, rw_unix));
    assert!(!allowed(ThreadKind::Vcpu, rw_unix));
}
