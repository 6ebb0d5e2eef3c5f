// SPDX-License-Identifier: GPL-3.0-or-later
//! PID 1 duties: mounts (amnesia), console, the shell, reaping, stopping the VM.
//!
//! In a namespace room (`anchor.backend=namespaces` among the agent's arguments, given by
//! anchor-jail) the jail has already made the mounts, the hostname and the console (the
//! pty bay0 gives is stdin/stdout/stderr), and the agent holds no capability: it only
//! creates the usual directories, talks to bay0 through the socket the jail placed in
//! the room, runs the shell on its own terminal, reaps, and ends the room by exiting.

use crate::cmdline::{self, ExitMode, Settings};
use crate::error::{Error, Result};
use crate::sys;
use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

/// One mount the agent performs at boot.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    /// Source (device or a label for pseudo filesystems).
    pub source: &'static CStr,
    /// Mount point; it must exist in the read-only image.
    pub target: &'static CStr,
    /// Filesystem type.
    pub fstype: &'static CStr,
    /// MS_* flags.
    pub flags: libc::c_ulong,
    /// Filesystem options.
    pub data: Option<&'static CStr>,
    /// Without it the room is degraded (the marker says so).
    pub required: bool,
}

const fn m(
    source: &'static CStr,
    target: &'static CStr,
    fstype: &'static CStr,
    flags: libc::c_ulong,
    data: Option<&'static CStr>,
    required: bool,
) -> MountSpec {
    MountSpec {
        source,
        target,
        fstype,
        flags,
        data,
        required,
    }
}

/// Everything mounted at boot, in order. The image is read-only: every writable
/// path is a fresh tmpfs, so nothing a room writes survives it (amnesia).
pub const MOUNTS: &[MountSpec] = &[
    m(
        c"proc",
        c"/proc",
        c"proc",
        NOSUID | NODEV | NOEXEC,
        None,
        true,
    ),
    m(
        c"sysfs",
        c"/sys",
        c"sysfs",
        NOSUID | NODEV | NOEXEC,
        None,
        true,
    ),
    // Usually already mounted by the kernel (DEVTMPFS_MOUNT): EBUSY is success.
    m(
        c"devtmpfs",
        c"/dev",
        c"devtmpfs",
        NOSUID | NOEXEC,
        Some(c"mode=0755"),
        true,
    ),
    // Pseudo-terminals (tmux, script); optional: a kernel without UNIX98_PTYS still boots.
    m(
        c"devpts",
        c"/dev/pts",
        c"devpts",
        NOSUID | NOEXEC,
        Some(c"mode=0620,ptmxmode=0666"),
        false,
    ),
    m(
        c"tmpfs",
        c"/dev/shm",
        c"tmpfs",
        NOSUID | NODEV,
        Some(c"mode=1777"),
        false,
    ),
    m(
        c"tmpfs",
        c"/tmp",
        c"tmpfs",
        NOSUID | NODEV,
        Some(c"mode=1777"),
        true,
    ),
    m(
        c"tmpfs",
        c"/run",
        c"tmpfs",
        NOSUID | NODEV,
        Some(c"mode=0755"),
        true,
    ),
    m(
        c"tmpfs",
        c"/var",
        c"tmpfs",
        NOSUID | NODEV,
        Some(c"mode=0755"),
        true,
    ),
    m(
        c"tmpfs",
        c"/home",
        c"tmpfs",
        NOSUID | NODEV,
        Some(c"mode=0755"),
        true,
    ),
    m(
        c"tmpfs",
        c"/root",
        c"tmpfs",
        NOSUID | NODEV,
        Some(c"mode=0700"),
        true,
    ),
];

/// Mounts [`MOUNTS`]; returns how many required mounts failed (each is reported).
pub fn mount_all() -> usize {
    let mut failed = 0usize;
    for spec in MOUNTS {
        // Mount points inside /dev live on devtmpfs (writable): create them.
        if spec.target.to_bytes().starts_with(b"/dev/") {
            let target = spec.target.to_string_lossy();
            if let Err(e) = make_dir(&target, 0o755) {
                say(&format!("creating {target}: {e}"));
            }
        }
        match sys::mount(
            "mount",
            spec.source,
            spec.target,
            spec.fstype,
            spec.flags,
            spec.data,
        ) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::EBUSY) => {}
            Err(e) => {
                say(&format!(
                    "mounting {} on {}: {e}",
                    spec.fstype.to_string_lossy(),
                    spec.target.to_string_lossy()
                ));
                if spec.required {
                    failed = failed.saturating_add(1);
                }
            }
        }
    }
    make_conventional_dirs();
    failed
}

/// How long a page the room used stays safe from eviction (the multi-generational LRU's
/// thrashing prevention; ChromeOS uses the same second).
const MIN_TTL_MS: &str = "1000";

/// The room's kernel kills a program rather than thrash (guest-kernel fragments:
/// CONFIG_LRU_GEN): the pages used in the last second are never evicted, and when memory
/// cannot hold them the OOM killer runs. Without it, a program eating the room's memory
/// livelocked the room for minutes, its programs' pages evicted and re-read from the image
/// disk over and over (no swap). MicroVM rooms only: a namespace room's kernel is the
/// host's, whose settings are not the room's to make.
fn protect_working_set() {
    let path = "/sys/kernel/mm/lru_gen/min_ttl_ms";
    if let Err(e) = std::fs::write(path, MIN_TTL_MS) {
        say(&format!(
            "{path}: {e}; a room out of memory may thrash instead of killing a program"
        ));
    }
}

/// Conventional directories inside the fresh tmpfs mounts.
pub fn make_conventional_dirs() {
    for (dir, mode) in [
        ("/var/tmp", 0o1777),
        ("/var/log", 0o755),
        ("/run/lock", 0o755),
    ] {
        if let Err(e) = make_dir(dir, mode) {
            say(&format!("creating {dir}: {e}"));
        }
    }
}

fn make_dir(path: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Prints one line on the console, prefixed with the agent's name, in one write(2).
pub use crate::console::say;

/// Makes sure fds 0, 1, 2 are the console (the kernel normally opens /dev/console
/// for init; if it could not, do it now that /dev is mounted).
pub fn ensure_console() {
    if sys::fd_is_open(1) && sys::fd_is_open(2) {
        return;
    }
    if let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        // Nothing to report to if this fails: there is no console.
        let _ = sys::make_stdio(f.into());
    }
}

/// The tty behind /dev/console (job control needs a real tty, not /dev/console).
fn console_path() -> String {
    std::fs::read_to_string("/sys/class/tty/console/active")
        .ok()
        .as_deref()
        .and_then(cmdline::console_tty)
        .map_or_else(|| "/dev/console".to_owned(), |t| format!("/dev/{t}"))
}

/// The unprivileged user the console shell runs as unless the policy says
/// `privileged = true` (in /etc/passwd of every room image).
pub const ROOM_UID: u32 = 1000;

/// The cgroup of the console shell and everything it starts, capped at `pids_max`
/// processes and threads: an open `cgroup.procs` to join it between fork and exec.
fn shell_cgroup(pids_max: u32) -> Result<std::fs::File> {
    let err = |op: &'static str| {
        move |e: std::io::Error| Error::Sys {
            op,
            errno: e.raw_os_error().unwrap_or(0),
        }
    };
    let root = "/sys/fs/cgroup";
    match sys::mount(
        "mount",
        c"cgroup2",
        c"/sys/fs/cgroup",
        c"cgroup2",
        NOSUID | NODEV | NOEXEC,
        None,
    ) {
        Err(e) if e.errno() != Some(libc::EBUSY) => return Err(e),
        _ => {}
    }
    std::fs::write(format!("{root}/cgroup.subtree_control"), "+pids")
        .map_err(err("enable pids"))?;
    let dir = format!("{root}/room");
    make_dir(&dir, 0o755).map_err(err("create the room cgroup"))?;
    std::fs::write(format!("{dir}/pids.max"), pids_max.to_string()).map_err(err("set pids.max"))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("{dir}/cgroup.procs"))
        .map_err(err("open cgroup.procs"))
}

/// Starts /bin/sh on the console tty as the leader of a new session with the tty
/// as its controlling terminal (job control works), in the room's pids cgroup, as
/// root only when the policy makes the room privileged. Returns its pid.
///
/// In a namespace room the terminal is the agent's own stdin (bay0's pty, which bay0
/// keeps raw: it is given the line discipline a console has), there is no cgroup to
/// make (the room's own limits everything in it), and the shell is the room's uid 0
/// without any capability (the jail locked that in; no other uid exists there).
pub fn spawn_shell(settings: &Settings) -> Result<libc::pid_t> {
    let tty = if settings.namespaces {
        let fd = sys::dup_cloexec(libc::STDIN_FILENO)?;
        sys::console_line_discipline(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
        std::fs::File::from(fd)
    } else {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(console_path())
            .map_err(|e| Error::Sys {
                op: "open console tty",
                errno: e.raw_os_error().unwrap_or(0),
            })?
    };
    let io_err = |e: std::io::Error| Error::Sys {
        op: "make the shell's home",
        errno: e.raw_os_error().unwrap_or(0),
    };
    let cgroup = match settings.pids_max {
        Some(n) if !settings.namespaces => Some(shell_cgroup(n)?),
        _ => None,
    };
    let (uid, home) = if settings.privileged || settings.namespaces {
        (None, c"/root")
    } else {
        let home = c"/home/room";
        let path = home.to_str().unwrap_or_default();
        make_dir(path, 0o700).map_err(io_err)?;
        std::os::unix::fs::chown(path, Some(ROOM_UID), Some(ROOM_UID)).map_err(io_err)?;
        (Some(ROOM_UID), home)
    };
    let text = |s: String| {
        std::ffi::CString::new(s).map_err(|_| Error::Sys {
            op: "a NUL byte in the shell's environment",
            errno: libc::EINVAL,
        })
    };
    let argv = [c"/bin/sh".to_owned(), c"-l".to_owned()];
    let envp = [
        text(format!("HOME={}", home.to_string_lossy()))?,
        text(format!(
            "USER={}",
            if uid.is_some() { "room" } else { "root" }
        ))?,
        text("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_owned())?,
        text("TERM=linux".to_owned())?,
        text(format!("ANCHOR_ROOM={}", settings.room))?,
    ];
    let fd = tty.as_raw_fd();
    // The child borrows our memory until it execs (no copy of the agent's address space:
    // see anchor_sys::spawn), making itself a session leader with the tty as its
    // controlling terminal (job control works), joining the cgroup, dropping to `uid`.
    let pid = anchor_sys::spawn_confined(
        &anchor_sys::Spawn {
            argv: &argv,
            envp: &envp,
            stdio: [fd, fd, fd],
            clone_flags: 0,
            ctty: true,
        },
        &anchor_sys::Confine {
            cwd: Some(home),
            cgroup_procs: cgroup.as_ref().map(AsRawFd::as_raw_fd),
            uid,
        },
    )
    .map_err(|e| Error::Sys {
        op: e.op,
        errno: e.errno,
    })?;
    // Reaped by `reap_until`.
    Ok(pid)
}

/// Starts this binary again as the vsock echo service.
pub fn spawn_echo(port: u32) -> Result<libc::pid_t> {
    let child = Command::new("/proc/self/exe")
        .arg("--vsock-echo")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| Error::Sys {
            op: "spawn vsock echo",
            errno: e.raw_os_error().unwrap_or(0),
        })?;
    Ok(libc::pid_t::try_from(child.id()).unwrap_or(-1))
}

/// How [`reap_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// `main` exited: its raw wait status.
    Main(libc::c_int),
    /// No child is left.
    NoChildren,
    /// One of [`sys::STOP_SIGNALS`] came: busybox's `poweroff` or `halt` in the room.
    Asked(libc::c_int),
}

/// Reaps children until `main` (if any) has exited, no child is left, or a stop signal
/// comes. `signals`: SIGCHLD and the stop signals are blocked ([`sys::block_signals`]);
/// without it, waits in waitpid(2) and sees no stop signal.
pub fn reap_until(main: Option<libc::pid_t>, signals: bool) -> Reaped {
    loop {
        match sys::reap(!signals) {
            Ok(sys::Reaped::Child(pid, status)) if Some(pid) == main => {
                return Reaped::Main(status)
            }
            Ok(sys::Reaped::Child(..)) => {}
            Ok(sys::Reaped::NoChildren) => return Reaped::NoChildren,
            // Every ended child is reaped: wait for the next (a SIGCHLD pending since the
            // last waitpid wakes this at once) or for a stop signal.
            Ok(sys::Reaped::NoneYet) => match sys::wait_signal() {
                Ok(libc::SIGCHLD) => {}
                Ok(sig) => return Reaped::Asked(sig),
                Err(e) => {
                    say(&format!("{e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            },
            Err(e) => {
                say(&format!("{e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The agent's last line. A microVM room ends by a reset, which its VMM takes as the end
/// of the room: the room kernel's "reboot: Restarting system" that follows restarts
/// nothing, and the line says so first.
pub fn stopping_line(exit: ExitMode) -> &'static str {
    match exit {
        ExitMode::Reboot => "stopping the room (its VM ends by a reset: the room does not restart)",
        ExitMode::PowerOff => "stopping the room (power-off)",
        ExitMode::Exit => "stopping the room",
    }
}

/// Stops everything and ends the VM (a namespace room: exits). Never returns.
pub fn shutdown(exit: ExitMode) -> ! {
    sys::sync();
    sys::kill_all(libc::SIGTERM);
    for _ in 0..20 {
        if matches!(sys::reap(false), Ok(sys::Reaped::NoChildren)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sys::kill_all(libc::SIGKILL);
    while matches!(sys::reap(false), Ok(sys::Reaped::Child(..))) {}
    sys::sync();
    say(stopping_line(exit));
    let cmd = match exit {
        ExitMode::Reboot => libc::RB_AUTOBOOT,
        ExitMode::PowerOff => libc::RB_POWER_OFF,
        ExitMode::Exit => std::process::exit(0),
    };
    let err = sys::reboot(cmd);
    say(&format!("{err}; halting here"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The whole PID 1 sequence.
/// The room's side of the courier: the `courier send` socket and, in a microVM room, the
/// vsock data port (a namespace room gets its data connections over the umbilical). The
/// home is the shell user's: /root in a privileged or a namespace room (whose shell is
/// the room's root), else /home/room.
fn start_courier(settings: &Settings) {
    let root = settings.privileged || settings.namespaces;
    crate::courier::start(crate::courier::Config {
        home: crate::courier::Home {
            dir: if root { "/root" } else { "/home/room" }.into(),
            owner: (!root).then_some((ROOM_UID, ROOM_UID)),
        },
        socket: crate::courier::SOCKET.into(),
        vsock: !settings.namespaces,
    });
}

pub fn run_pid1() -> ! {
    // Before any thread starts: every thread then leaves these signals to PID 1's wait.
    let signals = sys::block_signals()
        .map_err(|e| say(&format!("{e}; poweroff and halt in the room do nothing")))
        .is_ok();
    // A namespace room's settings are the agent's arguments (/proc/cmdline is the
    // host's there); a microVM room's are the kernel command line.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let namespaces = args.iter().any(|a| a == "anchor.backend=namespaces");
    let (failed, raw) = if namespaces {
        // Nobody in the room may trace or read PID 1 (it holds the umbilical).
        if let Err(e) = sys::set_dumpable(false) {
            say(&format!("{e}"));
        }
        make_conventional_dirs();
        (0, args.join(" "))
    } else {
        let failed = mount_all();
        protect_working_set();
        ensure_console();
        (
            failed,
            std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
        )
    };
    let (mut settings, warnings) = cmdline::parse(&raw);
    for w in &warnings {
        say(&w.to_string());
    }
    if settings.namespaces && !namespaces {
        // Only anchor-jail's arguments make a namespace room, never a kernel command line.
        say("anchor.backend=namespaces ignored on the kernel command line");
        settings.namespaces = false;
        settings.exit = ExitMode::Reboot;
    }
    if !settings.namespaces {
        if let Err(e) = sys::sethostname(&settings.room) {
            say(&format!("{e}"));
        }
    }
    if let Some(port) = settings.vsock_echo {
        if let Err(e) = spawn_echo(port) {
            say(&format!("{e}"));
        }
    }
    if let Some(net) = settings.net {
        // A namespace room's eth0 is the jail's work; its resolver is the agent's.
        let done = if settings.namespaces {
            crate::net::resolver(&net)
        } else {
            crate::net::setup(&net)
        };
        match done {
            Ok(line) => say(&line),
            Err(e) => say(&format!("network: {e}; the room has no network")),
        }
    }
    if let Some(dev) = &settings.persist {
        match crate::volume::setup(dev) {
            Ok(msg) => say(&msg),
            Err(e) => say(&format!(
                "vault volume {dev}: {e}; no /persist in this room"
            )),
        }
    }
    let socket = settings
        .namespaces
        .then_some(anchor_proto::umbilical::ROOM_SOCKET);
    // The courier first: a data connection bay0 passes on the umbilical finds it ready.
    start_courier(&settings);
    crate::umbilical::start(settings.exit, socket);
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let uptime = cmdline::uptime_seconds(&uptime).unwrap_or("?");
    if failed == 0 {
        say(&format!("room {} ready (uptime {uptime} s)", settings.room));
    } else {
        say(&format!(
            "room {} degraded: {failed} mount(s) failed (uptime {uptime} s)",
            settings.room
        ));
    }
    let shell = if settings.shell {
        match spawn_shell(&settings) {
            Ok(pid) => Some(pid),
            Err(e) => {
                say(&format!("{e}"));
                None
            }
        }
    } else {
        None
    };
    match reap_until(shell, signals) {
        Reaped::Main(st) => say(&format!("shell exited (status {st:#x})")),
        Reaped::Asked(sig) => {
            let what = if sig == libc::SIGUSR1 {
                "halt"
            } else {
                "poweroff"
            };
            say(&format!("{what} asked in the room"));
        }
        Reaped::NoChildren => {}
    }
    shutdown(settings.exit)
}

/// True when running as PID 1.
pub fn is_pid1() -> bool {
    sys::getpid() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in `make run`: `poweroff` in a microVM room printed "stopping the room
    /// (reset)" then the room kernel's "reboot: Restarting system", as if the room came
    /// back; it ends.
    #[test]
    fn a_rooms_last_line_never_says_it_restarts() {
        let vm = stopping_line(ExitMode::Reboot);
        assert!(vm.ends_with("the room does not restart)"), "{vm}");
        assert_eq!(
            stopping_line(ExitMode::PowerOff),
            "stopping the room (power-off)"
        );
        assert_eq!(stopping_line(ExitMode::Exit), "stopping the room");
    }
}
