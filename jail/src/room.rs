// SPDX-License-Identifier: GPL-3.0-or-later
//! The namespace backend: a whole room on the host kernel (`--backend namespaces`). The
//! jail, still root on the host, builds everything the room is made of in its private
//! mount namespace, enters it, then becomes the room's uid 0 in a user namespace that
//! owns nothing, gives up every capability for good and execs the room's agent as PID 1
//! (docs/ARCHITECTURE.md, "The namespace backend"). Before anything else it lifts the host's
//! table of open files to its maximum (see [`FILE_MAX`]).
//!
//! Every namespace but the user namespace is created while the jail is still root on
//! the host, so all of them belong to the host's user namespace: the room holds no
//! capability over its own mounts, network, hostname or clocks, and cannot change them
//! (no mount, no umount, no ifconfig, no sethostname), even if it regained capabilities
//! inside its user namespace.
//!
//! The network: loopback, up; with `--net outbound` also eth0, a TAP device the jail
//! makes and sets up in the room's network namespace before anything else of the room
//! exists, whose frames a relay of the jail's carries to the room's passt (see
//! [`crate::net::attach_room`] and [`crate::relay`]).
//!
//! The file system: the room's SquashFS image, attached read-only through an autoclear
//! loop device of its own (never another room's, see [`crate::image`]), is the root; one
//! tmpfs of half the room's memory holds every writable path (/tmp /run /var /home /root
//! /dev/shm); /dev is a read-only tmpfs with null, zero, full, random, urandom and tty
//! nodes of its own (never the host's), a private devpts instance, the room's console
//! (bay0's pty, bound as /dev/console) and bay0's umbilical socket; /proc is the room's
//! own (its PID namespace), with the host's knobs (/proc/sys, /proc/sysrq-trigger, ...)
//! read-only and its secrets (kcore, keys, kmsg, ...) masked.
//! /sys is not mounted. A vault volume (`--volume`) is mounted at /persist (see
//! [`crate::volume`]). When the room's last process ends, the mount namespace goes, and
//! with it every mount, the tmpfs, and (autoclear) the loop device.

use std::ffi::CString;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::args::Config;
use crate::error::{Error, Result};
use crate::image as loopdev;
use crate::root::{inside, io_err, mkdir_all};
use crate::{cgroup, confine, net, note, root, sys};

/// Where bay0's umbilical socket appears in the room (the agent connects to it).
pub const UMBILICAL: &str = anchor_proto::umbilical::ROOM_SOCKET;

/// Writable directories of the room (one shared tmpfs) and their modes.
const WRITABLE: [(&str, u32); 5] = [
    ("tmp", 0o1777),
    ("run", 0o755),
    ("var", 0o755),
    ("home", 0o755),
    ("root", 0o700),
];

/// The room's device nodes: name, major, minor (Linux's fixed numbers), each made anew in
/// the room's own /dev (mode 0666, owned by host root), never bound from the host's: a node
/// shared with the host would share its inode, and so every inotify event of the host's
/// and every other room's opens and reads of it, and its flock locks (a channel between
/// rooms, and a view of the host's activity; escape suite: dev-watch, dev-lock).
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// /proc entries the room may read but not write (the host kernel's knobs).
const PROC_READ_ONLY: [&str; 4] = ["sys", "sysrq-trigger", "bus", "fs"];
/// /proc files hidden behind /dev/null (host secrets and kernel internals). `locks` is one
/// list for the whole machine that shows every OFD lock (pid -1: its owner is an open
/// file, not a process the PID namespace could hide) with its inode and byte range: the
/// host's, and every other room's, which a room could set at numbers of its choosing (a
/// channel between rooms; escape suite: proc-locks). `diskstats` and `partitions` list
/// every block device of the machine: each other room's own loop devices, with their
/// sizes and exact I/O counts, which that room drives at will (its vault volume's writes,
/// its image's reads after dropping its own cache). `interrupts` and `softirqs` count the
/// machine's interrupts per source as they happen: the keyboard's among them, which times
/// every key the user presses in another room (escape suite: proc-interrupts).
const PROC_MASKED_FILES: [&str; 13] = [
    "kcore",
    "locks",
    "diskstats",
    "partitions",
    "interrupts",
    "softirqs",
    "keys",
    "key-users",
    "kmsg",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "kallsyms",
];
/// /proc directories hidden behind an empty read-only tmpfs (`irq`: each interrupt's
/// count again, in `irq/N/spurious`).
const PROC_MASKED_DIRS: [&str; 3] = ["acpi", "scsi", "irq"];

const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;
const BIND_REMOUNT: libc::c_ulong = libc::MS_BIND | libc::MS_REMOUNT;

/// The writable tmpfs gets half the room's memory (its pages count in the room's memory
/// cgroup, so a full tmpfs still leaves the room's programs the other half).
pub fn tmpfs_bytes(memory_bytes: u64) -> u64 {
    (memory_bytes / 2) & !0xfff
}

/// Builds the room and execs its program as the room's PID 1; returns only on failure.
pub fn run(cfg: &Config) -> Result<core::convert::Infallible> {
    let image = cfg
        .image
        .as_deref()
        .ok_or(Error::Unsupported("a namespace room needs --image"))?;
    let cg = cgroup::Hierarchy::detect()?;
    // Not fatal: where it cannot be lifted (a read-only /proc/sys) the room still works,
    // and the log says what is left open.
    if let Err(e) = lift_file_table(&cfg.name) {
        note(format_args!(
            "room {}: {e}; the host's table of open files stays shared by every room",
            cfg.name
        ));
    }
    let (limits, rlimits) = within_host_tasks(cfg);
    // The helper moves us into the room's cgroup while we build the room (the move can
    // wait on the kernel for milliseconds); we check it is done before the cgroup
    // namespace is made, and everything runs inside the cgroup from there on.
    let mut helper = confine::Helper::start(cg.prepare(&cfg.name, &limits)?, cfg.uid, cfg.gid)?;
    note(format_args!(
        "room {}: namespaces backend; cgroup {} (memory {} MiB, pids {}, cpu weight {}{})",
        cfg.name,
        cg.describe(),
        limits.memory_bytes >> 20,
        limits.pids,
        limits.cpu_weight,
        limits
            .cpus
            .map(|n| format!(", {n} CPU(s) of time"))
            .unwrap_or_default(),
    ));
    // An outbound room's passt starts here: in the room's cgroup (so the move must be
    // done), in the host's network namespace; its relay once the room's namespace exists.
    let mut joined = false;
    let link = match (cfg.net, cfg.net_uid) {
        (Some(_), Some(uid)) => {
            helper.joined()?;
            joined = true;
            net::start(cfg, uid)?.map(|l| (l, uid))
        }
        _ => None,
    };
    sys::unshare(libc::CLONE_NEWNET)?;
    sys::interface_up("lo")?;
    let mut argv = cfg.argv.clone();
    let room_net = match link {
        Some((l, uid)) => {
            argv.push(
                CString::new(net::cmdline_arg())
                    .map_err(|_| Error::Unsupported("NUL in the room's address"))?,
            );
            Some(net::attach_room(cfg, l, uid)?)
        }
        None => None,
    };
    sys::unshare(
        libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWTIME,
    )?;
    sys::sethostname(&cfg.name)?;
    clocks_start_at_zero()?;
    enter_time_namespace()?;
    let passt = room_net.as_ref().map(|n| n.link.passt);
    let new_root = build(cfg, image, passt)?;
    root::enter(&new_root)?;
    if let Some(n) = room_net {
        crate::relay::spawn(cfg, n.tap, n.link, n.uid)?;
    }
    crate::privs::limit(&rlimits)?;
    // A cgroup namespace is rooted at the cgroup its creator is in: the room's, now.
    if !joined {
        helper.joined()?;
    }
    sys::unshare(libc::CLONE_NEWCGROUP)?;
    confine::become_room_root(helper)?;
    confine::give_up_capabilities()?;
    // Becoming the room's root cleared the death signal (when the jail is not bay0's child).
    sys::die_with_parent()?;
    let landlock = confine::landlock(cfg.volume.is_some())?;
    note(format_args!("room {}: landlock {landlock}", cfg.name));
    // The room's program gets its console on 0, 1 and 2 and nothing else: no
    // descriptor the jail was started with (bay0's, or a test harness's) reaches it.
    sys::cloexec_from(3)?;
    crate::seccomp::install()?;
    // The room's stderr is its console, like a microVM's; the jail's own failure from
    // here on still goes to bay0's log.
    let log = sys::dup_cloexec(libc::STDERR_FILENO)?;
    sys::dup2(libc::STDOUT_FILENO, libc::STDERR_FILENO)?;
    let Err(e) = sys::exec(&cfg.program, &argv);
    let _ = sys::dup2(std::os::fd::AsRawFd::as_raw_fd(&log), libc::STDERR_FILENO);
    Err(e)
}

/// The host kernel's table of open files (fs.file-max, about a tenth of RAM in KiB by
/// default) is one count for the whole machine, with no share per room and only host root
/// allowed past it: a room whose processes each open as many files as their rlimit allows
/// could fill it (it takes a few hundred MiB of the room's memory), and every other room,
/// and every unprivileged process of the host (VMMs, passt, the courier), would then fail
/// to open anything (ENFILE). Every open file and descriptor slot is charged to the memory
/// cgroup of the room that opened it, which is the bound a room must meet; so, as systemd
/// does on every host it boots, the count is lifted to its maximum (never lowered). The
/// room cannot change it back: its /proc/sys is read-only.
pub const FILE_MAX: &str = "/proc/sys/fs/file-max";
/// The largest fs.file-max the kernel accepts (LONG_MAX).
pub const FILE_MAX_LIMIT: u64 = i64::MAX as u64;

fn lift_file_table(room: &str) -> Result<()> {
    let path = Path::new(FILE_MAX);
    let now = std::fs::read_to_string(path).map_err(|e| io_err("read", path, &e))?;
    if now.trim().parse::<u64>().is_ok_and(|n| n >= FILE_MAX_LIMIT) {
        return Ok(());
    }
    std::fs::write(path, format!("{FILE_MAX_LIMIT}\n")).map_err(|e| io_err("write", path, &e))?;
    note(format_args!(
        "room {room}: fs.file-max raised from {} to {FILE_MAX_LIMIT} (open files are bounded \
         by each room's memory cgroup, not by one count for the whole host)",
        now.trim()
    ));
    Ok(())
}

/// The host's task counts (kernel.pid_max and kernel.threads-max) are one each for the
/// whole machine, and every task of a room takes one in the host's PID namespace too: no
/// one is exempt, host root included. A policy may give a room up to 65536 tasks, twice a
/// small host's whole PID space (32768 below 32 CPUs); a room that took it all would leave
/// bay0, the host and every other room unable to fork. So a room gets at most a
/// [`TASK_SHARE`]th of the host's (pids.max and RLIMIT_NPROC alike; said in the log when
/// it is lowered): bay0 runs at most 8 rooms, so all of them together take at most half.
pub const TASK_SHARE: u64 = 16;

/// The kernel's default pid_max: 32768, or 1024 a CPU on a host of more than 32.
fn default_pid_max() -> u64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    cpus.saturating_mul(1024).max(32_768)
}

/// `cfg`'s cgroup limits and rlimits, their task counts lowered to the room's share of
/// the host's (see [`TASK_SHARE`]). The jail runs in the room's PID namespace already,
/// and where pid_max is per namespace (Linux >= 6.14) it reads the room's (4194304), not
/// the host's: so the kernel's default pid_max bounds the host's too (a host that raised
/// its pid_max gets the default's share; one that lowered it is seen only on kernels
/// where pid_max is one for the machine).
fn within_host_tasks(cfg: &Config) -> (cgroup::Limits, crate::privs::Rlimits) {
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let host = [
        read("pid_max"),
        read("threads-max"),
        Some(default_pid_max()),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(32_768);
    let share = (host / TASK_SHARE).max(1);
    let (mut limits, mut rlimits) = (cfg.limits, cfg.rlimits);
    if limits.pids > share || rlimits.nproc > share {
        note(format_args!(
            "room {}: at most {share} tasks (pids {} lowered): a {TASK_SHARE}th of the \
             host's {host} (kernel.pid_max, threads-max), which bay0, the host and every \
             room share",
            cfg.name, limits.pids
        ));
    }
    limits.pids = limits.pids.min(share);
    rlimits.nproc = rlimits.nproc.min(share);
    (limits, rlimits)
}

/// Joins the time namespace unshared above now (its offsets are written), rather than
/// at exec: Linux 6.1 (the anchor host's kernel) moves a process into a new time
/// namespace only when it forks (newer kernels also at exec), and a process whose time
/// namespace differs from its children's cannot make threads (clone with CLONE_VM or
/// CLONE_THREAD fails with EINVAL), so the room's PID 1 (the agent) could not start its
/// umbilical and courier threads. Entering it here works on every kernel; exec then has
/// nothing left to switch.
fn enter_time_namespace() -> Result<()> {
    let ns = sys::open_path(Path::new("/proc/self/ns/time_for_children"), libc::O_RDONLY)?;
    sys::setns(&ns, libc::CLONE_NEWTIME)
}

/// The room's monotonic and boot-time clocks start near zero, as a microVM's would (its
/// uptime is the room's age). Written before any process enters the time namespace
/// (this one does next, [`enter_time_namespace`]).
fn clocks_start_at_zero() -> Result<()> {
    let text = format!(
        "monotonic -{} 0\nboottime -{} 0\n",
        sys::clock_secs(libc::CLOCK_MONOTONIC),
        sys::clock_secs(libc::CLOCK_BOOTTIME)
    );
    let path = Path::new("/proc/self/timens_offsets");
    std::fs::write(path, text).map_err(|e| io_err("write", path, &e))
}

fn cstring(s: String) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Unsupported("mount options contain a NUL byte"))
}

fn mkdir_owned(path: &Path, mode: u32, uid: u32, gid: u32) -> Result<()> {
    mkdir_all(path)?;
    sys::chown(path, uid, gid)?;
    sys::chmod(path, mode)
}

fn create_file(path: &Path) -> Result<()> {
    std::fs::File::create(path)
        .map(drop)
        .map_err(|e| io_err("create", path, &e))
}

fn bind(source: &Path, target: &Path, flags: libc::c_ulong) -> Result<()> {
    sys::mount("bind", Some(source), target, None, libc::MS_BIND, None)?;
    sys::mount(
        "restrict a bind mount",
        None,
        target,
        None,
        BIND_REMOUNT | flags,
        None,
    )
}

/// Mounts everything under the room's run directory; returns the new root.
fn build(cfg: &Config, image: &Path, passt: Option<libc::pid_t>) -> Result<PathBuf> {
    root::make_private()?;
    let new_root = cfg.run_dir.join(".root");
    let state = cfg.run_dir.join(".state");
    mkdir_all(&new_root)?;
    mkdir_all(&state)?;
    // The image: read-only, through a loop device that frees itself with the last mount.
    let meta = std::fs::metadata(image).map_err(|e| io_err("the room image", image, &e))?;
    if !meta.is_file() {
        return Err(Error::Path {
            op: "the room image is not a regular file",
            path: image.display().to_string(),
            errno: libc::EINVAL,
        });
    }
    mount_image(cfg, image, &new_root)?;
    // One tmpfs for every writable path, owned by the room's root.
    let bytes = tmpfs_bytes(cfg.limits.memory_bytes);
    let opts = cstring(format!(
        "size={bytes},nr_inodes={},mode=0755,uid={},gid={}",
        (bytes / 4096).max(1024),
        cfg.uid,
        cfg.gid
    ))?;
    sys::mount(
        "mount the room's tmpfs",
        Some(Path::new("tmpfs")),
        &state,
        Some(c"tmpfs"),
        NOSUID_NODEV,
        Some(&opts),
    )?;
    for (dir, mode) in WRITABLE {
        let target = new_root.join(dir);
        if !target.is_dir() {
            return Err(Error::Path {
                op: "the room image lacks the mount point",
                path: format!("/{dir}"),
                errno: libc::ENOENT,
            });
        }
        mkdir_owned(&state.join(dir), mode, cfg.uid, cfg.gid)?;
        // A bind mount takes the flags of the mount it comes from: the tmpfs's nosuid and
        // nodev, with no second call to set them.
        sys::mount(
            "bind",
            Some(&state.join(dir)),
            &target,
            None,
            libc::MS_BIND,
            None,
        )?;
    }
    build_dev(cfg, &new_root.join("dev"), &state)?;
    build_proc(&new_root.join("proc"), &new_root.join("dev/null"), passt)?;
    if let Some(file) = &cfg.volume {
        let attached = crate::volume::attach(cfg, file, &new_root)?;
        let how = if attached.formatted {
            " (formatted on first use)"
        } else {
            ""
        };
        note(format_args!(
            "room {}: vault volume mounted on /persist{how}",
            cfg.name
        ));
        if let Some(grown) = attached.grown {
            note(format_args!(
                "room {}: vault volume {}: {grown}",
                cfg.name,
                file.display()
            ));
        }
    }
    Ok(new_root)
}

/// Mounts `image` read-only on `new_root` through a loop device of the room's own (never
/// another room's: see [`crate::image`]), and logs which.
fn mount_image(cfg: &Config, image: &Path, new_root: &Path) -> Result<()> {
    let dev = loopdev::attach(image)?;
    sys::mount(
        "mount the room image",
        Some(&dev.path),
        new_root,
        Some(c"squashfs"),
        libc::MS_RDONLY | NOSUID_NODEV,
        None,
    )?;
    note(format_args!(
        "room {}: image attached on {}",
        cfg.name,
        dev.name()
    ));
    // The mount holds the device now; autoclear frees it with the last mount.
    drop(dev);
    Ok(())
}

/// The room's /dev: its own device nodes, ptys, shared memory, the umbilical. Its tmpfs
/// is the one file system of the room that allows device nodes (the nodes the jail makes;
/// it is read-only before the room runs, and the room could not make one anyway).
fn build_dev(cfg: &Config, dev: &Path, state: &Path) -> Result<()> {
    sys::mount(
        "mount the room's /dev",
        Some(Path::new("tmpfs")),
        dev,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(c"mode=0755,size=64k,nr_inodes=64"),
    )?;
    for (name, major, minor) in DEVICES {
        let node = dev.join(name);
        sys::mknod_char(&node, 0o666, major, minor)?;
        sys::chmod(&node, 0o666)?;
    }
    let pts = dev.join("pts");
    mkdir_all(&pts)?;
    sys::mount(
        "mount the room's devpts",
        Some(Path::new("devpts")),
        &pts,
        Some(c"devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620,max=256"),
    )?;
    let link = |target: &str, name: &str| {
        let path = dev.join(name);
        symlink(target, &path).map_err(|e| io_err("symlink", &path, &e))
    };
    link("pts/ptmx", "ptmx")?;
    link("/proc/self/fd", "fd")?;
    for (i, name) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        link(&format!("/proc/self/fd/{i}"), name)?;
    }
    let shm = state.join("shm");
    mkdir_owned(&shm, 0o1777, cfg.uid, cfg.gid)?;
    let dev_shm = dev.join("shm");
    mkdir_all(&dev_shm)?;
    bind(&shm, &dev_shm, NOSUID_NODEV | libc::MS_NOEXEC)?;
    let umbilical = inside(dev.parent().unwrap_or(dev), Path::new(UMBILICAL));
    create_file(&umbilical)?;
    let socket = cfg
        .run_dir
        .join(format!("vsock_{}", anchor_proto::umbilical::PORT));
    // Read-only like the /dev around it: connecting needs no write to the mount, while a
    // chmod, chown or touch of the host's socket inode fails with EROFS (escape suite:
    // host-inodes).
    bind(
        &socket,
        &umbilical,
        libc::MS_RDONLY | NOSUID_NODEV | libc::MS_NOEXEC,
    )?;
    console(cfg, dev)?;
    sys::mount(
        "make the room's /dev read-only",
        None,
        dev,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
        None,
    )
}

/// The room's console, bay0's pty the jail got as stdin, appears as /dev/console (as a
/// container's does): it belongs to another devpts instance than the room's own /dev/pts,
/// so without it no path in the room names the terminal the room's shell runs on, and
/// `tty`, ttyname(3) and every program that asks which terminal it has found none ("not a
/// tty"). The same inode, bound: the room reaches nothing it does not already hold open.
/// Nothing when stdin is no terminal (a jail run by hand or by a test without one), nor
/// when the terminal has no path of its own here (said in the log).
///
/// The bind's source is the pty's path in this mount namespace (the kernel binds only a
/// mount of the caller's namespace, and stdin was opened in bay0's), checked to be the
/// very file stdin is.
fn console(cfg: &Config, dev: &Path) -> Result<()> {
    use std::io::IsTerminal;
    use std::os::unix::fs::MetadataExt;
    if !std::io::stdin().is_terminal() {
        return Ok(());
    }
    let stdin = Path::new("/proc/self/fd/0");
    let pty = std::fs::read_link(stdin).map_err(|e| io_err("readlink", stdin, &e))?;
    let (held, named) = (std::fs::metadata(stdin), std::fs::metadata(&pty));
    let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
        (a.dev(), a.ino(), a.rdev()) == (b.dev(), b.ino(), b.rdev())
    };
    if !matches!((&held, &named), (Ok(a), Ok(b)) if same(a, b)) {
        // The room still runs on it; only its name is missing (as before).
        note(format_args!(
            "room {}: no /dev/console: its terminal (stdin) is not {} in the jail's mount \
             namespace",
            cfg.name,
            pty.display()
        ));
        return Ok(());
    }
    // Owned by the room's uid (its root), as a container's console is: the room may open
    // it again (the pty is this room's alone; bay0 makes a new one for every room).
    std::os::unix::fs::chown(&pty, Some(cfg.uid), Some(cfg.gid))
        .map_err(|e| io_err("chown", &pty, &e))?;
    let console = dev.join("console");
    create_file(&console)?;
    // Read-only: a device opens for writing on a read-only mount (the terminal works), but
    // its inode, bay0's pty in bay0's devpts, takes no chmod, chown or touch from the room
    // (EROFS; escape suite: host-inodes).
    bind(
        &pty,
        &console,
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
    )
}

/// The room's /proc: its own processes; the host's knobs read-only, secrets masked with
/// `null` (the room's own /dev/null, not the host's: see [`DEVICES`]); and the network
/// namespace of `passt` (the room's passt, in the anchor host's) masked.
fn build_proc(proc: &Path, null: &Path, passt: Option<libc::pid_t>) -> Result<()> {
    let hidden = NOSUID_NODEV | libc::MS_NOEXEC;
    sys::mount(
        "mount the room's /proc",
        Some(Path::new("proc")),
        proc,
        Some(c"proc"),
        hidden,
        None,
    )?;
    for name in PROC_READ_ONLY {
        let p = proc.join(name);
        if p.exists() {
            bind(&p, &p, libc::MS_RDONLY | hidden)?;
        }
    }
    // The first masked file gets /dev/null, made read-only, nosuid, nodev and noexec; the
    // others are bound from that mount and take its flags with it (one call each).
    let mut mask: Option<std::path::PathBuf> = None;
    for name in PROC_MASKED_FILES {
        let p = proc.join(name);
        if !p.is_file() {
            continue;
        }
        match &mask {
            Some(first) => sys::mount("bind", Some(first), &p, None, libc::MS_BIND, None)?,
            None => {
                bind(null, &p, libc::MS_RDONLY | hidden)?;
                mask = Some(p);
            }
        }
    }
    let passt_net = passt
        .map(|pid| passt_net_dirs(proc, pid))
        .unwrap_or_default();
    for p in PROC_MASKED_DIRS
        .iter()
        .map(|name| proc.join(name))
        .chain(passt_net)
    {
        if p.is_dir() {
            sys::mount(
                "mask a /proc directory",
                Some(Path::new("tmpfs")),
                &p,
                Some(c"tmpfs"),
                libc::MS_RDONLY | hidden,
                Some(c"size=4k,nr_inodes=1,mode=0555"),
            )?;
        }
    }
    Ok(())
}

/// The directories of the room's /proc (`proc`) that show the network namespace of
/// passt (`pid`): `PID/net` and `PID/task/TID/net` for each of its tasks. passt is in
/// the room's PID namespace (the room sees it in `ps`) but in the anchor host's network
/// namespace, and /proc/PID/net is readable by whoever sees the process, without the
/// ptrace check that guards its other namespaces: the room would read the host's
/// interfaces, addresses and routes there, and every TCP, UDP and Unix socket of the
/// host, other rooms' passt connections among them.
fn passt_net_dirs(proc: &Path, pid: libc::pid_t) -> Vec<PathBuf> {
    let dir = proc.join(pid.to_string());
    let tasks = std::fs::read_dir(dir.join("task"))
        .map(|d| {
            d.flatten()
                .map(|t| t.path().join("net"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::iter::once(dir.join("net")).chain(tasks).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writable_tmpfs_is_half_the_rooms_memory_in_whole_pages() {
        assert_eq!(tmpfs_bytes(128 << 20), 64 << 20);
        assert_eq!(tmpfs_bytes((32 << 20) + 3), 16 << 20);
    }

    #[test]
    fn the_umbilical_is_inside_the_read_only_dev() {
        assert!(UMBILICAL.starts_with("/dev/") && !UMBILICAL.contains(".."));
        assert_eq!(
            inside(Path::new("/r/.root"), Path::new(UMBILICAL)),
            Path::new("/r/.root/dev/anchor-umbilical")
        );
    }
}
