// SPDX-License-Identifier: GPL-3.0-or-later
//! Starting a program in a child process the way posix_spawn(3) does: clone(2) with
//! CLONE_VM | CLONE_VFORK, so the child borrows our memory (on a stack of its own) until
//! it execs instead of getting a copy of it. A copy is what fork costs: on the
//! development host (a guest of a paravirtual hypervisor) cloning bay0's address space
//! and running the child in it until exec took ~0.3 ms of every room start.
//!
//! While the child shares our memory it only makes raw system calls through libc's
//! syscall() (no allocation, no lock, no libc state but errno, which the parent does not
//! read after a successful clone), reads what [`spawn`] prepared, and writes nothing but
//! the failure it reports back. We are suspended until it has exec'd or exited
//! (CLONE_VFORK); every signal is blocked around the clone, and the child resets every
//! handler to its default before it unblocks them, so no handler of ours ever runs in it.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicI32, Ordering};
use std::os::fd::RawFd;

use crate::{check, Error, Result};

/// What a spawned child gets.
#[derive(Debug, Clone, Copy)]
pub struct Spawn<'a> {
    /// Program path and argv (argv\[0\] included), environment.
    pub argv: &'a [std::ffi::CString],
    pub envp: &'a [std::ffi::CString],
    /// Descriptors that become the child's 0, 1, 2.
    pub stdio: [RawFd; 3],
    /// clone(2) namespace flags (e.g. CLONE_NEWPID); any other flag is refused
    /// ([`NAMESPACE_FLAGS`]).
    pub clone_flags: libc::c_int,
    /// Make stdin the controlling terminal of a new session.
    pub ctty: bool,
}

impl<'a> Spawn<'a> {
    /// `argv` with these stdio descriptors and clone flags, no environment, no terminal.
    pub fn child(argv: &'a [std::ffi::CString], stdio: [RawFd; 3], clone_flags: i32) -> Self {
        Spawn {
            argv,
            envp: &[],
            stdio,
            clone_flags,
            ctty: false,
        }
    }
}

/// What a child does besides, before its program runs (the in-room agent's console
/// shell: its home, the shell's cgroup and user in a microVM room).
#[derive(Debug, Clone, Copy, Default)]
pub struct Confine<'a> {
    /// The working directory.
    pub cwd: Option<&'a std::ffi::CStr>,
    /// An open `cgroup.procs` to join (writing "0" moves the writer).
    pub cgroup_procs: Option<RawFd>,
    /// The user (and group, of the same number, without supplementary groups) to become.
    pub uid: Option<u32>,
}

/// The child's stack: it makes a handful of system calls, nothing deeper.
const STACK_BYTES: usize = 64 * 1024;
/// An inaccessible page below it, so an overflow faults instead of writing our memory.
const GUARD_BYTES: usize = 4096;

/// Where a child failed before its program ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Stdio = 1,
    Cwd,
    Session,
    Cgroup,
    User,
    Handlers,
    Unblock,
    Exec,
}

impl Step {
    /// Every step, in order (a failed one travels to the parent as its number).
    const ALL: [Step; 8] = [
        Step::Stdio,
        Step::Cwd,
        Step::Session,
        Step::Cgroup,
        Step::User,
        Step::Handlers,
        Step::Unblock,
        Step::Exec,
    ];

    fn op(self) -> &'static str {
        match self {
            Step::Stdio => "spawn: set up the child's standard descriptors",
            Step::Cwd => "spawn: enter the working directory",
            Step::Session => "spawn: make a new session with the terminal",
            Step::Cgroup => "spawn: join the cgroup",
            Step::User => "spawn: become the user",
            Step::Handlers => "spawn: reset the child's signal handlers",
            Step::Unblock => "spawn: unblock the child's signals",
            Step::Exec => "spawn: exec",
        }
    }
}

/// What the child reads, and the one thing it writes (its failure).
struct Child {
    prog: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    stdio: [RawFd; 3],
    ctty: bool,
    cwd: *const libc::c_char,
    cgroup_procs: Option<RawFd>,
    uid: Option<u32>,
    /// The [`Step`] that failed, as its number (0: none).
    failed_step: AtomicI32,
    errno: AtomicI32,
}

/// The child's stack, unmapped when dropped.
struct Stack(*mut c_void);

impl Stack {
    fn new() -> Result<Stack> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing;
        // nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                GUARD_BYTES + STACK_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error {
                op: "map the child's stack",
                errno: crate::errno(),
            });
        }
        let stack = Stack(base);
        // SAFETY: the first page of the mapping made above.
        let ret = unsafe { libc::mprotect(base, GUARD_BYTES, libc::PROT_NONE) };
        check("guard the child's stack", ret)?;
        Ok(stack)
    }

    /// The highest address (stacks grow down on every architecture we build for); the
    /// mapping is page-aligned, so this is 16-byte aligned as the ABIs require.
    fn top(&self) -> *mut c_void {
        self.0.wrapping_byte_add(GUARD_BYTES + STACK_BYTES)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used (the child exec'd or exited).
        unsafe { libc::munmap(self.0, GUARD_BYTES + STACK_BYTES) };
    }
}

/// Every signal blocked; the previous mask is restored when dropped.
struct AllBlocked(libc::sigset_t);

impl AllBlocked {
    fn new() -> Result<AllBlocked> {
        let mut all = core::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        let mut old = core::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: `all` is a valid sigset_t buffer; sigfillset initialises it.
        unsafe { libc::sigfillset(all.as_mut_ptr()) };
        // SAFETY: `all` is initialised, `old` is a valid buffer the call fills.
        let ret = unsafe { libc::sigprocmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr()) };
        check("block signals to spawn", ret)?;
        // SAFETY: filled by the successful sigprocmask above.
        Ok(AllBlocked(unsafe { old.assume_init() }))
    }
}

impl Drop for AllBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`; the old mask is not requested.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.0, core::ptr::null_mut()) };
    }
}

/// Starts a child (clone(2) with `clone_flags`, then execve); its pid. A child that
/// fails before its program runs (exec included) is reaped here and its failure returned.
pub fn spawn(s: &Spawn<'_>) -> Result<i32> {
    spawn_confined(s, &Confine::default())
}

/// The clone(2) flags a [`Spawn`] may add: new namespaces only. The others would break
/// what the child may do while it shares our memory (CLONE_THREAD, CLONE_SIGHAND,
/// CLONE_FILES: its exit, handler resets and dup3s would be ours too), change its exit
/// signal (the low byte), or have the kernel write through clone's thread-id and TLS
/// arguments, which `spawn` does not pass (CLONE_*SETTID, CLONE_CHILD_CLEARTID,
/// CLONE_SETTLS, CLONE_PIDFD).
pub const NAMESPACE_FLAGS: c_int = libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWCGROUP;

/// [`spawn`], the child also doing what `confine` says before its program runs.
pub fn spawn_confined(s: &Spawn<'_>, confine: &Confine<'_>) -> Result<i32> {
    if s.clone_flags & !NAMESPACE_FLAGS != 0 {
        return Err(Error {
            op: "spawn: a clone flag other than a new namespace",
            errno: libc::EINVAL,
        });
    }
    let prog = s.argv.first().ok_or(Error {
        op: "spawn an empty command",
        errno: libc::EINVAL,
    })?;
    let mut argv: Vec<*const libc::c_char> = s.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(core::ptr::null());
    let mut envp: Vec<*const libc::c_char> = s.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(core::ptr::null());
    let child = Child {
        prog: prog.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        stdio: s.stdio,
        ctty: s.ctty,
        cwd: confine
            .cwd
            .map_or(core::ptr::null(), std::ffi::CStr::as_ptr),
        cgroup_procs: confine.cgroup_procs,
        uid: confine.uid,
        failed_step: AtomicI32::new(0),
        errno: AtomicI32::new(0),
    };
    let stack = Stack::new()?;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD | s.clone_flags;
    let blocked = AllBlocked::new()?;
    // SAFETY: `child_main` runs on `stack` (ours, unused by anything else) and reads
    // `child` and the argument vectors, all of which outlive it: CLONE_VFORK suspends
    // this thread until the child has exec'd or exited. See the module comment for what
    // the child may do while it shares our memory.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            (&raw const child).cast_mut().cast(),
        )
    };
    let pid = check("clone", pid);
    drop(blocked);
    let pid = pid?;
    let step = child.failed_step.load(Ordering::Acquire);
    if step == 0 {
        return Ok(pid);
    }
    reap(pid);
    let op = Step::ALL
        .iter()
        .find(|s| **s as i32 == step)
        .map_or("spawn", |s| s.op());
    Err(Error {
        op,
        errno: child.errno.load(Ordering::Acquire),
    })
}

/// Waits for the child `pid` that failed before its program ran.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: `status` is a valid int to write; `pid` is our child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && crate::errno() == libc::EINTR {}
}

/// A raw system call's result: the value, or the negated errno as `Err`.
fn raw(ret: libc::c_long) -> core::result::Result<libc::c_long, i32> {
    if ret < 0 {
        // The kernel's errno, which libc's syscall() leaves in errno; read it before
        // anything else can change it.
        Err(crate::errno())
    } else {
        Ok(ret)
    }
}

/// The child, between clone and exec. Never returns: execs, or records its failure and
/// exits.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Child` of `spawn`, alive while we run (CLONE_VFORK); we only
    // read it, and store into its atomics.
    let c = unsafe { &*arg.cast::<Child>() };
    let fail = |step: Step, errno: i32| -> c_int {
        c.errno.store(errno, Ordering::Release);
        c.failed_step.store(step as i32, Ordering::Release);
        // SAFETY: ends this child only (its own thread group); nothing to clean up.
        unsafe { libc::syscall(libc::SYS_exit_group, 127) };
        127
    };
    if let Err((step, e)) = prepare(c) {
        return fail(step, e);
    }
    // SAFETY: NULL-terminated arrays of NUL-terminated strings prepared by `spawn`.
    let e = raw(unsafe { libc::syscall(libc::SYS_execve, c.prog, c.argv, c.envp) });
    fail(Step::Exec, e.err().unwrap_or(libc::EIO))
}

/// Every step of the child before exec; the failed one and errno.
fn prepare(c: &Child) -> core::result::Result<(), (Step, i32)> {
    child_stdio(c.stdio).map_err(|e| (Step::Stdio, e))?;
    if !c.cwd.is_null() {
        // SAFETY: a NUL-terminated path prepared by `spawn_confined`.
        raw(unsafe { libc::syscall(libc::SYS_chdir, c.cwd) }).map_err(|e| (Step::Cwd, e))?;
    }
    if c.ctty {
        // SAFETY: no arguments; acts on this child only.
        raw(unsafe { libc::syscall(libc::SYS_setsid) }).map_err(|e| (Step::Session, e))?;
        // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal); fd 0 is ours.
        raw(unsafe { libc::syscall(libc::SYS_ioctl, 0, libc::TIOCSCTTY, 0) })
            .map_err(|e| (Step::Session, e))?;
    }
    if let Some(fd) = c.cgroup_procs {
        // SAFETY: writes one byte from a static buffer to a descriptor of this child.
        raw(unsafe { libc::syscall(libc::SYS_write, fd, b"0".as_ptr(), 1usize) })
            .map_err(|e| (Step::Cgroup, e))?;
    }
    if let Some(id) = c.uid {
        // Raw calls act on this child alone; libc's would act on every thread of the
        // parent whose memory we share.
        // SAFETY: an empty group list: the kernel reads no memory.
        raw(unsafe { libc::syscall(libc::SYS_setgroups, 0usize, core::ptr::null::<u32>()) })
            .map_err(|e| (Step::User, e))?;
        // SAFETY: plain integer arguments.
        raw(unsafe { libc::syscall(libc::SYS_setresgid, id, id, id) })
            .map_err(|e| (Step::User, e))?;
        // SAFETY: plain integer arguments.
        raw(unsafe { libc::syscall(libc::SYS_setresuid, id, id, id) })
            .map_err(|e| (Step::User, e))?;
    }
    default_handlers().map_err(|e| (Step::Handlers, e))?;
    let empty: u64 = 0;
    // SAFETY: an empty 8-byte kernel signal set; the old mask is not requested.
    raw(unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const empty,
            core::ptr::null_mut::<u64>(),
            8usize,
        )
    })
    .map_err(|e| (Step::Unblock, e))?;
    Ok(())
}

/// Makes `stdio` the child's descriptors 0, 1 and 2 (inheritable). A source that is
/// itself one of 0, 1 and 2 but not its own target is first copied above them (closed
/// at exec), so no dup3 overwrites a descriptor a later one still reads from (`[1, 0,
/// 2]` swaps stdin and stdout).
fn child_stdio(mut stdio: [RawFd; 3]) -> core::result::Result<(), i32> {
    for (target, fd) in (0..).zip(stdio.iter_mut()) {
        if (0..3).contains(fd) && *fd != target {
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor of this child; no memory involved.
            *fd = raw(unsafe { libc::syscall(libc::SYS_fcntl, *fd, libc::F_DUPFD_CLOEXEC, 3) })?
                as RawFd;
        }
    }
    for (target, fd) in (0..).zip(stdio) {
        if fd == target {
            // SAFETY: clears FD_CLOEXEC on a descriptor of this child.
            raw(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFD, 0) })?;
        } else {
            // SAFETY: dup3 on descriptors of this child (dup2 is missing on aarch64).
            raw(unsafe { libc::syscall(libc::SYS_dup3, fd, target, 0) })?;
        }
    }
    Ok(())
}

/// Every signal the parent handles goes back to its default action, and SIGPIPE (which
/// Rust programs ignore) too, as a program expects to start with it.
fn default_handlers() -> core::result::Result<(), i32> {
    // The kernel's struct sigaction (handler first; 32 bytes on x86_64 and aarch64).
    let default = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old = [0u64; 4];
        // SAFETY: reads the action of `sig` into a buffer the kernel's size.
        let got = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                core::ptr::null::<u64>(),
                old.as_mut_ptr(),
                8usize,
            )
        };
        if got < 0 {
            continue; // a number the kernel does not have
        }
        let [handler, ..] = old;
        let handled = handler > 1; // neither SIG_DFL (0) nor SIG_IGN (1)
        if handled || sig == libc::SIGPIPE {
            // SAFETY: installs SIG_DFL (an all-zero action) for `sig` in this child.
            raw(unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default.as_ptr(),
                    core::ptr::null_mut::<u64>(),
                    8usize,
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::multiple_unsafe_ops_per_block
    )]
    use super::*;
    use std::ffi::CString;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn cs(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn pipe() -> (std::fs::File, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid two-int buffer.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both were just returned by the kernel and are owned by nobody else.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                OwnedFd::from_raw_fd(fds[1]),
            )
        }
    }

    fn wait(pid: i32) -> i32 {
        let mut status = 0;
        // SAFETY: `status` is a valid int to write.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    /// Runs `argv` with `envp`, stdout and stderr into a pipe; its output and wait status.
    fn run(argv: &[&str], envp: &[&str]) -> (String, i32) {
        run_confined(argv, envp, &Confine::default())
    }

    fn run_confined(argv: &[&str], envp: &[&str], confine: &Confine<'_>) -> (String, i32) {
        let argv: Vec<CString> = argv.iter().map(|a| cs(a)).collect();
        let envp: Vec<CString> = envp.iter().map(|a| cs(a)).collect();
        let (mut r, w) = pipe();
        let null = std::fs::File::open("/dev/null").unwrap();
        let fd = w.as_raw_fd();
        let pid = spawn_confined(
            &Spawn {
                argv: &argv,
                envp: &envp,
                stdio: [null.as_raw_fd(), fd, fd],
                clone_flags: 0,
                ctty: false,
            },
            confine,
        )
        .unwrap();
        drop(w);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        (out, wait(pid))
    }

    #[test]
    fn the_program_runs_with_its_arguments_environment_and_descriptors() {
        let (out, status) = run(
            &[
                "/bin/sh",
                "-c",
                "echo \"$1 $GREETING\"; echo err >&2; exit 3",
                "sh",
                "hi",
            ],
            &["GREETING=there"],
        );
        assert_eq!(out, "hi there\nerr\n");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3);
    }

    #[test]
    fn the_program_starts_with_no_signal_blocked_and_sigpipe_at_its_default() {
        // Rust test binaries ignore SIGPIPE and this thread blocks SIGUSR1 meanwhile.
        let mut usr1 = core::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: valid sigset_t buffers; the mask of this test thread only.
        unsafe {
            libc::sigemptyset(usr1.as_mut_ptr());
            libc::sigaddset(usr1.as_mut_ptr(), libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, usr1.as_ptr(), core::ptr::null_mut());
        }
        let (out, _) = run(
            &["/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
            &[],
        );
        let mut now = core::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: reads this thread's mask into a valid buffer, then unblocks SIGUSR1.
        let still = unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), now.as_mut_ptr());
            let r = libc::sigismember(now.as_ptr(), libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, usr1.as_ptr(), core::ptr::null_mut());
            r
        };
        assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
        let ign = out
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:\t"))
            .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(ign & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
        assert_eq!(still, 1, "the caller's own mask was not restored");
    }

    #[test]
    fn the_child_enters_its_directory_and_becomes_its_user_alone() {
        let sh = ["/bin/sh", "-c", "pwd; id -u; id -g; id -G"];
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let (out, _) = run_confined(
                &sh[..2].iter().copied().chain(["pwd"]).collect::<Vec<_>>(),
                &[],
                &Confine {
                    cwd: Some(c"/tmp"),
                    ..Confine::default()
                },
            );
            assert_eq!(out, "/tmp\n");
            return;
        }
        let (out, status) = run_confined(
            &sh,
            &[],
            &Confine {
                cwd: Some(c"/tmp"),
                uid: Some(4242),
                cgroup_procs: None,
            },
        );
        assert_eq!(out, "/tmp\n4242\n4242\n4242\n");
        assert_eq!(status, 0);
        // SAFETY: getuid has no preconditions.
        assert_eq!(unsafe { libc::getuid() }, 0, "the parent's user changed");
    }

    #[test]
    fn a_program_that_cannot_be_executed_is_an_error() {
        let argv = [cs("/nonexistent/anchor-spawn-test")];
        let e = spawn(&Spawn::child(&argv, [0, 1, 2], 0)).unwrap_err();
        assert_eq!(
            e,
            Error {
                op: "spawn: exec",
                errno: libc::ENOENT
            }
        );
        let dir = [cs("/")];
        let e = spawn(&Spawn::child(&dir, [0, 1, 2], 0)).unwrap_err();
        assert_eq!(e.errno, libc::EACCES);
    }

    #[test]
    fn stdio_may_name_the_parents_own_0_1_2_in_any_order() {
        // The child's stderr is the parent's stdout: it must not become the pipe the
        // child's stdout was made first.
        let argv = [cs("/bin/sh"), cs("-c"), cs("readlink /proc/self/fd/2")];
        let (mut r, w) = pipe();
        let null = std::fs::File::open("/dev/null").unwrap();
        let stdio = [null.as_raw_fd(), w.as_raw_fd(), 1];
        let pid = spawn(&Spawn::child(&argv, stdio, 0)).unwrap();
        drop(w);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(wait(pid), 0);
        let ours = std::fs::read_link("/proc/self/fd/1").unwrap();
        assert_eq!(out.trim_end(), ours.to_str().unwrap());
    }

    #[test]
    fn a_bad_descriptor_is_an_error_before_exec() {
        let argv = [cs("/bin/true")];
        let e = spawn(&Spawn::child(&argv, [-1, 1, 2], 0)).unwrap_err();
        assert_eq!(
            e,
            Error {
                op: Step::Stdio.op(),
                errno: libc::EBADF
            }
        );
    }

    #[test]
    fn a_clone_flag_other_than_a_namespace_is_refused() {
        let argv = [cs("/bin/true")];
        for flag in [
            libc::CLONE_THREAD | libc::CLONE_SIGHAND,
            libc::CLONE_FILES,
            libc::CLONE_PIDFD,
            libc::CLONE_CHILD_CLEARTID,
            libc::SIGUSR1,
        ] {
            let e = spawn(&Spawn::child(&argv, [0, 1, 2], flag)).unwrap_err();
            assert_eq!(e.errno, libc::EINVAL, "flag {flag:#x}");
        }
    }

    #[test]
    fn an_empty_command_is_refused() {
        assert_eq!(
            spawn(&Spawn::child(&[], [0, 1, 2], 0)).unwrap_err().errno,
            libc::EINVAL
        );
    }
}
