// SPDX-License-Identifier: GPL-3.0-or-later
//! The escape-resistance suite's probe: the attempts `escape.sh` cannot make from a shell
//! (raw system calls), one verdict line each. Shipped in every room image next to the
//! script (`/usr/lib/anchor/escape/`), so the suite runs against the exact images rooms
//! boot, in any room. It grants nothing: every call it makes, any program in a room may
//! make, and each is made with arguments a kernel that let it through would reject
//! (invalid images, zeroed attributes) or undone at once (a mount is unmounted, a trace
//! detached, a descriptor closed unread).
//!
//! A verdict is `BLOCKED name: how` or `ESCAPED name: what worked`. With `--own-kernel`
//! (a microVM room) an attempt that only reached the room's own kernel (a keyring, a
//! perf counter of the guest) is BLOCKED with that said: a microVM room's system calls
//! never reach the host kernel. Attempts on mounts, roots and devices are judged the same
//! way for both backends.

pub mod sys;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sys::{describe, Errno};

/// One attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub name: String,
    pub escaped: bool,
    pub detail: String,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = if self.escaped { "ESCAPED" } else { "BLOCKED" };
        write!(f, "{word} {}: {}", self.name, self.detail)
    }
}

fn blocked(name: &str, detail: impl Into<String>) -> Verdict {
    Verdict {
        name: name.into(),
        escaped: false,
        detail: detail.into(),
    }
}

fn escaped(name: &str, detail: impl Into<String>) -> Verdict {
    Verdict {
        name: name.into(),
        escaped: true,
        detail: detail.into(),
    }
}

/// Processes that exist only outside a room (bay0 and the programs of other rooms).
const HOST_ONLY: [&str; 3] = ["bay0", "anchor-vmm", "anchor-jail"];
/// Highest pid scanned for invisible processes (the anchor host's pid_max; the harness
/// names host pids above it explicitly).
const SCAN_MAX: i32 = 32_768;

/// What the room's kernel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The room has a kernel of its own (microVM): its system calls never reach the host.
    pub own_kernel: bool,
}

impl Context {
    /// The verdict for a call into a kernel facility: `reached` says the call got past
    /// the kernel's permission checks (or succeeded).
    fn kernel_facility(self, name: &str, reached: bool, detail: &str) -> Verdict {
        match (reached, self.own_kernel) {
            (false, _) => blocked(name, detail),
            (true, true) => blocked(
                name,
                format!("{detail}: only the room's own kernel (a microVM's system calls never reach the host)"),
            ),
            (true, false) => escaped(name, detail),
        }
    }
}

fn answer<T>(what: &str, r: &Result<T, Errno>) -> String {
    match r {
        Ok(_) => format!("{what}: succeeded"),
        Err(e) => format!("{what}: {}", describe(*e)),
    }
}

/// Denied outright (permission, or the call does not exist here).
fn refused(e: Errno) -> bool {
    matches!(e, libc::EPERM | libc::EACCES | libc::ENOSYS)
}

fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The program name a process's command line starts with (argv[0] without its
/// directory): a fork of a host program keeps the host program's command line, whatever
/// its `comm` says.
fn argv0(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = raw.split(|&b| b == 0).next()?;
    let name = first.rsplit(|&b| b == b'/').next()?;
    Some(String::from_utf8_lossy(name).into_owned())
}

fn visible(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn visible_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// See host processes, signal them: every pid up to [`SCAN_MAX`] and `extra` that is not
/// in the room's /proc must be unknown to kill(2) (ESRCH), and no visible process may
/// be one that exists only outside rooms.
pub fn host_pids(extra: &[i32]) -> Vec<Verdict> {
    let pids = visible_pids();
    let names: Vec<String> = pids.iter().filter_map(|&p| comm(p)).collect();
    // By name, and by the program its command line names.
    let commands: Vec<String> = pids.iter().filter_map(|&p| argv0(p)).collect();
    let host: Vec<&String> = names
        .iter()
        .chain(&commands)
        .filter(|n| HOST_ONLY.contains(&n.as_str()))
        .collect();
    let (mut exists, mut signalled) = (Vec::new(), Vec::new());
    for pid in (1..=SCAN_MAX).chain(extra.iter().copied()) {
        if visible(pid) {
            continue;
        }
        match sys::kill(pid, 0) {
            Ok(()) => signalled.push(pid),
            Err(libc::EPERM) => exists.push(pid),
            Err(_) => {}
        }
    }
    let mut shown = names.clone();
    shown.sort();
    shown.dedup();
    let see = if !host.is_empty() || !exists.is_empty() || !signalled.is_empty() {
        escaped(
            "see-host-pids",
            format!("host processes visible {host:?}, invisible pids that exist: {exists:?} {signalled:?}"),
        )
    } else {
        blocked(
            "see-host-pids",
            format!(
                "{} processes visible, all the room's own ({}); no other pid up to {SCAN_MAX} or in {extra:?} exists for it",
                pids.len(),
                shown.join(" ")
            ),
        )
    };
    let signal = if signalled.is_empty() {
        blocked(
            "signal-host",
            format!("kill(pid, 0) found no process outside the room (bay0's pid {extra:?} included): ESRCH"),
        )
    } else {
        escaped(
            "signal-host",
            format!("could signal pids outside the room: {signalled:?}"),
        )
    };
    vec![see, signal]
}

/// The interfaces a /proc/…/net/dev `text` lists.
fn interfaces(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
        .collect()
}

/// The addresses a /proc/…/net/fib_trie `text` marks as the namespace's own (`host LOCAL`).
fn local_addresses(text: &str) -> Vec<String> {
    let mut last = "";
    let mut out = Vec::new();
    for l in text.lines() {
        if let Some(a) = l.trim().strip_prefix("|-- ") {
            last = a;
        } else if l.contains("host LOCAL") && !out.iter().any(|o| o == last) {
            out.push(last.to_string());
        }
    }
    out
}

/// The paths of the Unix sockets a /proc/…/net/unix `text` lists (bound ones, by path or
/// abstract name: its eighth field).
fn unix_paths(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7).map(str::to_string))
        .collect()
}

/// The mount points a /proc/…/mountinfo `text` lists (its fifth field).
fn mount_points(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

/// Reads the entries of a /proc file's text.
type Parse = fn(&str) -> Vec<String>;

/// The anchor host's namespaces through the /proc files of a process the room sees:
/// `/proc/PID/net` (the network namespace of PID, readable by whoever sees it, with no
/// ptrace check) and `/proc/PID/mountinfo` (its mount table, likewise). A process of the
/// room's PID namespace that lives in another network or mount namespace (passt, which
/// must be in the host's network namespace; the relay) would show the host's interfaces,
/// addresses and sockets (other rooms' connections among them) or the host's mounts.
/// Every visible process must show no interface, address, Unix socket or mount point the
/// room's own do not have.
pub fn proc_namespaces(cx: Context) -> Verdict {
    let name = "proc-namespaces";
    // What each /proc file shows, as a list to compare, and what the entries are.
    let views: [(&str, Parse, &str); 4] = [
        ("net/dev", interfaces, "network interface(s)"),
        ("net/fib_trie", local_addresses, "address(es)"),
        ("net/unix", unix_paths, "Unix socket(s)"),
        ("mountinfo", mount_points, "mount point(s)"),
    ];
    let view = |pid: &str, file: &str, parse: Parse| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()
            .map(|t| parse(&t))
    };
    let own = || -> Vec<Vec<String>> {
        views
            .iter()
            .map(|(file, parse, _)| view("self", file, *parse).unwrap_or_default())
            .collect()
    };
    let before = own();
    let me = std::process::id().try_into().unwrap_or(0);
    let mut theirs = Vec::new();
    for pid in visible_pids().into_iter().filter(|&p| p != me) {
        let who = format!("pid {pid} ({})", comm(pid).unwrap_or_default());
        let shown: Vec<Option<Vec<String>>> = views
            .iter()
            .map(|(file, parse, _)| view(&pid.to_string(), file, *parse))
            .collect();
        theirs.push((who, shown));
    }
    // The room's own views before and after: what a room process made or ended while
    // the others were read (a socket) is the room's own, not another namespace's.
    let after = own();
    let (mut seen, mut masked, mut other) = (0, 0, Vec::new());
    for (who, shown) in &theirs {
        if shown.first().is_some_and(Option::is_some) {
            seen += 1;
        } else {
            masked += 1;
        }
        for (i, (_, _, what)) in views.iter().enumerate() {
            let is_own = |e: &String| {
                [&before, &after]
                    .iter()
                    .any(|o| o.get(i).is_some_and(|v| v.contains(e)))
            };
            let foreign: Vec<&String> = shown
                .get(i)
                .and_then(Option::as_ref)
                .map(|v| v.iter().filter(|e| !is_own(e)).collect())
                .unwrap_or_default();
            if !foreign.is_empty() {
                other.push(format!(
                    "{who}: {} {what} not the room's, {:?}",
                    foreign.len(),
                    foreign.iter().take(4).collect::<Vec<_>>()
                ));
            }
        }
    }
    let detail = if other.is_empty() {
        format!(
            "{seen} other process(es) show the room's own interfaces ({}), addresses, \
             sockets and mounts, {masked} show no network at all",
            before.first().map(|v| v.join(" ")).unwrap_or_default()
        )
    } else {
        format!("another namespace seen through /proc: {}", other.join("; "))
    };
    cx.kernel_facility(name, !other.is_empty(), &detail)
}

/// ptrace(PTRACE_ATTACH) of host processes (pids not in the room's /proc).
pub fn ptrace_host(pids: &[i32]) -> Verdict {
    let mut how = Vec::new();
    for &pid in pids {
        if visible(pid) {
            how.push(format!("pid {pid} is the room's own"));
            continue;
        }
        match sys::ptrace_attach_detach(pid) {
            Ok(()) => return escaped("ptrace-host", format!("attached to host pid {pid}")),
            Err(e) => how.push(format!("pid {pid}: {}", describe(e))),
        }
    }
    blocked("ptrace-host", how.join("; "))
}

/// ptrace(PTRACE_ATTACH) of the room's PID 1 (its agent holds the umbilical).
pub fn ptrace_init() -> Verdict {
    match sys::ptrace_attach_detach(1) {
        Ok(()) => escaped("ptrace-init", "attached to the room's PID 1"),
        Err(e) => blocked(
            "ptrace-init",
            format!("PID 1 ({}): {}", comm(1).unwrap_or_default(), describe(e)),
        ),
    }
}

/// A path that exists only on the host must stay invisible, also through /proc.
pub fn host_file(path: &str) -> Verdict {
    let rel = path.trim_start_matches('/');
    let ways = [
        path.to_string(),
        format!("/proc/1/root/{rel}"),
        format!("/proc/self/root/../../../{rel}"),
        format!("/proc/self/cwd/../../../../{rel}"),
    ];
    for w in &ways {
        if Path::new(w).exists() {
            return escaped("host-file", format!("the host's {path} is visible as {w}"));
        }
    }
    blocked(
        "host-file",
        format!("the host's {path} is not visible (directly, via /proc/1/root, via ..)"),
    )
}

/// The root mount's source device and its major:minor, from mountinfo.
fn root_device() -> Option<(String, u32, u32)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.get(4) != Some(&"/") {
            continue;
        }
        let (maj, min) = f.get(2)?.split_once(':')?;
        let dash = f.iter().position(|x| *x == "-")?;
        let source = f.get(dash + 2)?.to_string();
        return Some((source, maj.parse().ok()?, min.parse().ok()?));
    }
    None
}

/// Write the room's image: its device, a node made for it, a file on it.
pub fn write_image() -> Verdict {
    let mut how = Vec::new();
    if let Some((source, major, minor)) = root_device() {
        let r = sys::open(&source, libc::O_RDWR);
        if r.is_ok() {
            return escaped("write-image", format!("opened {source} for writing"));
        }
        how.push(answer(&format!("open {source} rw"), &r));
        let node = "/tmp/.escape-root-dev";
        let made = sys::mknod(node, libc::S_IFBLK | 0o600, major, minor);
        how.push(answer(&format!("mknod b {major}:{minor}"), &made));
        if made.is_ok() {
            let r = sys::open(node, libc::O_RDWR);
            let _ = std::fs::remove_file(node);
            if r.is_ok() {
                return escaped(
                    "write-image",
                    "opened a node of the root device for writing",
                );
            }
            how.push(answer("open it rw", &r));
        }
    }
    for (path, flags) in [
        ("/sbin/init", libc::O_WRONLY),
        ("/.escape-write", libc::O_WRONLY | libc::O_CREAT),
    ] {
        let r = sys::open(path, flags);
        if r.is_ok() {
            let _ = std::fs::remove_file("/.escape-write");
            return escaped("write-image", format!("opened {path} for writing"));
        }
        how.push(answer(&format!("write {path}"), &r));
    }
    blocked("write-image", how.join("; "))
}

/// Mount a file system (unmounted again at once if that worked).
pub fn mount(name: &str, fstype: &str, target: &str) -> Verdict {
    let r = sys::mount(fstype, target, fstype, 0);
    match r {
        Ok(()) => escaped(name, format!("mounted {fstype} on {target}")),
        Err(e) => blocked(
            name,
            format!("mount -t {fstype} on {target}: {}", describe(e)),
        ),
    }
}

/// Remount / read-write.
pub fn remount_rw() -> Verdict {
    let mut how = Vec::new();
    for (what, flags) in [
        ("remount", libc::MS_REMOUNT),
        ("remount,bind", libc::MS_REMOUNT | libc::MS_BIND),
    ] {
        let r = sys::remount("/", flags);
        if r.is_ok() {
            return escaped("remount-rw", format!("mount -o {what},rw / succeeded"));
        }
        how.push(answer(&format!("mount -o {what},rw /"), &r));
    }
    blocked("remount-rw", how.join("; "))
}

/// The new mount API: fsopen and open_tree.
pub fn new_mount_api(cx: Context) -> Verdict {
    let a = sys::fsopen_tmpfs();
    let b = sys::open_tree_clone_root();
    let reached = a.is_ok() || b.is_ok();
    let detail = format!(
        "{}; {}",
        answer("fsopen(tmpfs)", &a),
        answer("open_tree(/, CLONE)", &b)
    );
    cx.kernel_facility("new-mount-api", reached, &detail)
}

/// The namespaces unshare(2) and clone(2) can make (time only through unshare and clone3).
const NAMESPACES: [(libc::c_int, &str); 7] = [
    (libc::CLONE_NEWNS, "mount"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWPID, "pid"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
    (libc::CLONE_NEWUSER, "user"),
];

/// New namespaces of every kind.
pub fn unshare(cx: Context) -> Verdict {
    let mut how = Vec::new();
    let mut reached = false;
    for (flag, name) in NAMESPACES {
        let r = sys::unshare(flag);
        reached |= r.is_ok();
        how.push(answer(name, &r));
    }
    cx.kernel_facility("unshare", reached, &format!("unshare {}", how.join(", ")))
}

/// Join namespaces through /proc/1/ns (the only namespace files a room can see are its
/// own processes').
pub fn setns(cx: Context) -> Verdict {
    let mut how = Vec::new();
    let mut reached = false;
    for ns in ["mnt", "net", "pid", "user", "uts", "ipc", "cgroup", "time"] {
        let path = format!("/proc/1/ns/{ns}");
        let r = sys::open(&path, libc::O_RDONLY).and_then(|fd| sys::setns(&fd));
        reached |= r.is_ok();
        how.push(answer(ns, &r));
    }
    cx.kernel_facility(
        "setns",
        reached,
        &format!("setns to /proc/1/ns/*: {}", how.join(", ")),
    )
}

/// chroot, and the classic escape with a directory descriptor kept from before.
pub fn chroot_escape(marker: &str) -> Verdict {
    let dir = "/tmp/.escape-chroot";
    let _ = std::fs::create_dir_all(dir);
    let outside = sys::open("/", libc::O_RDONLY | libc::O_DIRECTORY);
    let r = sys::chroot(dir);
    let _ = std::fs::remove_dir(dir);
    let Ok(outside) = outside else {
        return blocked("chroot-escape", "cannot open / (nothing to escape with)");
    };
    match r {
        Err(e) => blocked("chroot-escape", format!("chroot: {}", describe(e))),
        Ok(()) => {
            let _ = sys::fchdir(&outside);
            for _ in 0..64 {
                let _ = std::env::set_current_dir("..");
            }
            let _ = sys::chroot(".");
            if Path::new(marker).exists() {
                escaped("chroot-escape", format!("reached the host's {marker}"))
            } else {
                blocked(
                    "chroot-escape",
                    "chroot worked, but the way out led only to the room's own root",
                )
            }
        }
    }
}

/// pivot_root to a directory of the room.
pub fn pivot_root() -> Verdict {
    let new = "/tmp/.escape-pivot";
    let old = "/tmp/.escape-pivot/old";
    let _ = std::fs::create_dir_all(old);
    let r = sys::pivot_root(new, old);
    let _ = std::fs::remove_dir(old);
    let _ = std::fs::remove_dir(new);
    match r {
        Ok(()) => escaped("pivot-root", "pivot_root succeeded"),
        Err(e) => blocked("pivot-root", format!("pivot_root: {}", describe(e))),
    }
}

/// Open a host device: the node if the room has it, else one made with mknod.
pub fn device(name: &str) -> Verdict {
    let (paths, kind, major, minor): (&[&str], libc::mode_t, u32, u32) = match name {
        "kvm" => (&["/dev/kvm"], libc::S_IFCHR, 10, 232),
        "mem" => (&["/dev/mem"], libc::S_IFCHR, 1, 1),
        "sda" => (&["/dev/sda"], libc::S_IFBLK, 8, 0),
        "tty0" => (&["/dev/tty0"], libc::S_IFCHR, 4, 0),
        "fb0" => (&["/dev/fb0"], libc::S_IFCHR, 29, 0),
        "input" => (
            &["/dev/input/event0", "/dev/input/event1", "/dev/input/mice"],
            libc::S_IFCHR,
            13,
            64,
        ),
        _ => return escaped(&format!("dev-{name}"), "unknown device (probe error)"),
    };
    let verdict_name = format!("dev-{name}");
    let mut how = Vec::new();
    for path in paths {
        for flags in [libc::O_RDWR, libc::O_RDONLY] {
            let r = sys::open(path, flags | libc::O_NONBLOCK | libc::O_NOCTTY);
            if r.is_ok() {
                return escaped(&verdict_name, format!("opened {path}"));
            }
            if flags == libc::O_RDWR {
                how.push(answer(&format!("open {path}"), &r));
            }
        }
    }
    let node = format!("/tmp/.escape-dev-{name}");
    let made = sys::mknod(&node, kind | 0o666, major, minor);
    how.push(answer(&format!("mknod {major}:{minor}"), &made));
    if made.is_ok() {
        let r = sys::open(&node, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY);
        let _ = std::fs::remove_file(&node);
        if r.is_ok() {
            return escaped(
                &verdict_name,
                format!("opened a node made for {major}:{minor}"),
            );
        }
        how.push(answer("open it", &r));
    }
    blocked(&verdict_name, how.join("; "))
}

/// Load a kernel module (from a file, and from memory).
pub fn module(cx: Context) -> Verdict {
    let file = "/tmp/.escape-module.ko";
    let _ = std::fs::write(file, [0u8; 64]);
    let a = sys::open(file, libc::O_RDONLY).and_then(|fd| sys::finit_module(&fd));
    let _ = std::fs::remove_file(file);
    let b = sys::init_module_garbage();
    let reached = [&a, &b].iter().any(|r| !matches!(r, Err(e) if refused(*e)));
    let detail = format!(
        "{}; {}",
        answer("finit_module", &a),
        answer("init_module", &b)
    );
    cx.kernel_facility("module", reached, &detail)
}

/// Load a new kernel to boot into.
pub fn kexec(cx: Context) -> Verdict {
    let a = sys::kexec_load_invalid();
    let b = sys::kexec_file_load_invalid();
    let reached = [&a, &b].iter().any(|r| !matches!(r, Err(e) if refused(*e)));
    let detail = format!(
        "{}; {}",
        answer("kexec_load", &a),
        answer("kexec_file_load", &b)
    );
    cx.kernel_facility("kexec", reached, &detail)
}

/// eBPF.
pub fn bpf(cx: Context) -> Verdict {
    let r = sys::bpf_map_create_invalid();
    let reached = !matches!(r, Err(e) if refused(e));
    cx.kernel_facility("bpf", reached, &answer("bpf(BPF_MAP_CREATE)", &r))
}

/// A perf counter (user space only: what an unprivileged user may usually have).
pub fn perf(cx: Context) -> Verdict {
    let r = sys::perf_event_open_self();
    cx.kernel_facility("perf", r.is_ok(), &answer("perf_event_open", &r))
}

/// A userfaultfd (user-mode faults only).
pub fn userfaultfd(cx: Context) -> Verdict {
    let r = sys::userfaultfd();
    cx.kernel_facility("userfaultfd", r.is_ok(), &answer("userfaultfd", &r))
}

/// The session keyring (kernel keyrings are not namespaced).
pub fn keyctl(cx: Context) -> Verdict {
    let r = sys::keyctl_session_keyring();
    cx.kernel_facility("keyctl", r.is_ok(), &answer("keyctl(GET_KEYRING_ID)", &r))
}

/// open_by_handle_at with a forged handle (the "shocker" escape).
pub fn open_by_handle(cx: Context) -> Verdict {
    let r = sys::open("/", libc::O_RDONLY | libc::O_DIRECTORY)
        .and_then(|root| sys::open_by_forged_handle(&root));
    let reached = !matches!(r, Err(e) if refused(e));
    cx.kernel_facility(
        "open-by-handle",
        reached,
        &answer("open_by_handle_at(inode 2)", &r),
    )
}

/// Open host knobs for writing (nothing is written).
pub fn writable(name: &str, paths: &[&str]) -> Verdict {
    let mut how = Vec::new();
    for path in paths {
        if !Path::new(path).exists() {
            continue;
        }
        let r = sys::open(path, libc::O_WRONLY);
        if r.is_ok() {
            return escaped(name, format!("opened {path} for writing"));
        }
        how.push(answer(path, &r));
    }
    if how.is_empty() {
        blocked(
            name,
            format!("none of {} exists in the room", paths.join(" ")),
        )
    } else {
        blocked(name, how.join("; "))
    }
}

/// /proc/sys knobs of the host kernel.
pub const PROC_SYS: [&str; 6] = [
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/vm/drop_caches",
    "/proc/sys/kernel/hostname",
    "/proc/sys/kernel/sysrq",
    "/proc/sys/net/ipv4/ip_forward",
];
/// /sys attributes of the host.
pub const SYS: [&str; 5] = [
    "/sys/kernel/uevent_helper",
    "/sys/power/state",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/class/net/lo/mtu",
    "/sys/fs/cgroup/cgroup.procs",
];

/// The host kernel's log: it must not show the line the harness wrote there.
pub fn kernel_log(token: &str) -> Verdict {
    let mut buf = vec![0u8; 1 << 20];
    let r = sys::syslog_read_all(&mut buf);
    let mut how = vec![answer("syslog(READ_ALL)", &r)];
    if let Ok(n) = r {
        let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
        if text.contains(token) {
            return escaped(
                "host-kernel-log",
                "read the host's kernel log through syslog(2)",
            );
        }
    }
    match sys::open("/dev/kmsg", libc::O_RDONLY | libc::O_NONBLOCK) {
        Ok(fd) => {
            let mut f = std::fs::File::from(fd);
            let mut text = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = f.read(&mut chunk) {
                text.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
            if String::from_utf8_lossy(&text).contains(token) {
                return escaped(
                    "host-kernel-log",
                    "read the host's kernel log through /dev/kmsg",
                );
            }
            how.push("/dev/kmsg: opened, no host line in it".into());
        }
        Err(e) => how.push(format!("/dev/kmsg: {}", describe(e))),
    }
    blocked(
        "host-kernel-log",
        format!(
            "the host's marker line is out of reach ({})",
            how.join("; ")
        ),
    )
}

/// Connect to Unix sockets of the host by path.
pub fn unix_sockets(name: &str, paths: &[String]) -> Verdict {
    let mut how = Vec::new();
    for p in paths {
        match std::os::unix::net::UnixStream::connect(p) {
            Ok(_) => return escaped(name, format!("connected to {p}")),
            Err(e) => how.push(format!("{p}: {}", e.kind())),
        }
    }
    blocked(name, how.join("; "))
}

/// Connect to an abstract Unix socket of the host.
pub fn abstract_socket(socket: &str) -> Verdict {
    use std::os::linux::net::SocketAddrExt;
    let r = std::os::unix::net::SocketAddr::from_abstract_name(socket.as_bytes())
        .and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a));
    match r {
        Ok(_) => escaped("abstract-socket", format!("connected to @{socket}")),
        Err(e) => blocked("abstract-socket", format!("@{socket}: {}", e.kind())),
    }
}

/// TCP to the host's loopback, where the harness serves `token`.
pub fn host_loopback(port: u16, token: &str) -> Verdict {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match tcp_answer(addr, token, Duration::from_secs(3)) {
        Ok(()) => escaped(
            "host-loopback",
            format!("the host's service on {port} answered"),
        ),
        Err(how) => blocked(
            "host-loopback",
            format!("127.0.0.1:{port} (the room's own loopback): {how}"),
        ),
    }
}

/// The addresses passt gives a room for its gateway and its DNS server (a microVM room,
/// or a namespace room with `network = "outbound"`): passt's own, never the host's
/// (passt runs with `--no-map-gw`, and the egress rule drops DNS to 10.0.2.3 when the
/// host's resolver is on its loopback).
const PASST_GATEWAY_AND_DNS: [[u8; 4]; 2] = [[10, 0, 2, 2], [10, 0, 2, 3]];
/// How long each address is given to answer.
const HOST_NET_WAIT: Duration = Duration::from_secs(2);

/// The host's service (`token` on TCP and UDP `port`, on every address of the host)
/// through the room's network: at passt's gateway and DNS addresses and at each of
/// `hosts`, the host's own IPv4 addresses (which a room cannot learn; the harness names
/// them). All addresses at once, TCP and UDP each. Outbound means the world, never the
/// anchor host: the egress rule (the VMM's virtio-net device, a namespace room's relay)
/// drops every frame to an address the host holds.
pub fn host_network(port: u16, token: &str, hosts: &[std::net::Ipv4Addr]) -> Verdict {
    let mut targets: Vec<std::net::Ipv4Addr> = PASST_GATEWAY_AND_DNS
        .iter()
        .map(|a| std::net::Ipv4Addr::from(*a))
        .collect();
    for h in hosts {
        if !targets.contains(h) {
            targets.push(*h);
        }
    }
    let tries: Vec<_> = targets
        .iter()
        .map(|&ip| {
            let token = token.to_string();
            std::thread::spawn(move || {
                let addr = std::net::SocketAddr::from((ip, port));
                (
                    ip,
                    tcp_answer(addr, &token, HOST_NET_WAIT),
                    udp_answer(addr, &token),
                )
            })
        })
        .collect();
    let mut how = Vec::new();
    for t in tries {
        let Ok((ip, tcp, udp)) = t.join() else {
            return escaped("host-network", "a try of the probe died: no verdict");
        };
        match (tcp, udp) {
            (Ok(()), _) => {
                return escaped(
                    "host-network",
                    format!("the host's TCP service on port {port} answered at {ip}"),
                )
            }
            (_, Ok(())) => {
                return escaped(
                    "host-network",
                    format!("the host's UDP service on port {port} answered at {ip}"),
                )
            }
            (Err(t), Err(u)) => how.push(format!("{ip}: tcp {t}, udp {u}")),
        }
    }
    blocked("host-network", how.join("; "))
}

/// Ok if the service at `addr` answers `token` over TCP (given `wait` to connect and
/// again to answer); else what happened.
fn tcp_answer(addr: std::net::SocketAddr, token: &str, wait: Duration) -> Result<(), String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, wait).map_err(|e| e.kind().to_string())?;
    let _ = s.set_read_timeout(Some(wait));
    let _ = s.write_all(b"\n");
    let mut got = [0u8; 256];
    let n = s.read(&mut got).unwrap_or(0);
    if String::from_utf8_lossy(got.get(..n).unwrap_or_default()).contains(token) {
        Ok(())
    } else {
        Err(format!("connected, {n} byte(s) not the host's answer"))
    }
}

/// Ok if the service at `addr` answers `token` to a UDP datagram; else what happened.
fn udp_answer(addr: std::net::SocketAddr, token: &str) -> Result<(), String> {
    let s = std::net::UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| e.kind().to_string())?;
    let _ = s.set_read_timeout(Some(HOST_NET_WAIT));
    s.send_to(b"anchor-escape\n", addr)
        .map_err(|e| e.kind().to_string())?;
    let mut got = [0u8; 256];
    match s.recv_from(&mut got) {
        Ok((n, from)) => {
            if String::from_utf8_lossy(got.get(..n).unwrap_or_default()).contains(token) {
                Ok(())
            } else {
                Err(format!("{n} byte(s) from {from}, not the host's answer"))
            }
        }
        Err(e) => Err(format!("no answer ({})", e.kind())),
    }
}

/// Capabilities the probe (a room process) holds.
pub fn capabilities() -> Verdict {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (eff, prm, amb) = (field("CapEff:"), field("CapPrm:"), field("CapAmb:"));
    let zero = |v: &str| !v.is_empty() && v.bytes().all(|b| b == b'0');
    let detail = format!(
        "CapEff {eff} CapPrm {prm} CapAmb {amb} CapBnd {} NoNewPrivs {} Seccomp {}",
        field("CapBnd:"),
        field("NoNewPrivs:"),
        field("Seccomp:")
    );
    if zero(&eff) && zero(&prm) && zero(&amb) {
        blocked("capabilities", detail)
    } else {
        escaped("capabilities", detail)
    }
}

/// New namespaces through clone(2) (its flags are a register the room's seccomp filter
/// reads) and clone3(2) (its flags are in memory, where no filter can look; CLONE_NEWTIME
/// exists only there).
pub fn clone_namespaces(cx: Context) -> Verdict {
    let mut how = Vec::new();
    let mut reached = false;
    for (flag, name) in NAMESPACES {
        let r = sys::clone_and_reap(flag as libc::c_ulong);
        reached |= r.is_ok();
        how.push(answer(&format!("clone({name})"), &r));
    }
    for (flag, name) in [
        (libc::CLONE_NEWUSER as u64, "user"),
        (libc::CLONE_NEWTIME as u64, "time"),
        (libc::CLONE_NEWNS as u64, "mount"),
    ] {
        let r = sys::clone3_and_reap(flag);
        reached |= r.is_ok();
        how.push(answer(&format!("clone3({name})"), &r));
    }
    cx.kernel_facility("clone-namespaces", reached, &how.join(", "))
}

/// io_uring: a large kernel attack surface, and a way around a seccomp filter (its
/// operations are not system calls).
pub fn io_uring(cx: Context) -> Verdict {
    let r = sys::io_uring_setup();
    cx.kernel_facility("io-uring", r.is_ok(), &answer("io_uring_setup", &r))
}

/// The room's PID 1 (the agent holds the umbilical) by every way but ptrace: its memory
/// through /proc and process_vm_readv, its descriptors through /proc/1/fd and pidfd_getfd.
pub fn init_memory() -> Verdict {
    let mut how = Vec::new();
    let mut got = false;
    let mem = sys::open("/proc/1/mem", libc::O_RDONLY);
    got |= mem.is_ok();
    how.push(answer("open /proc/1/mem", &mem));
    let read = sys::process_vm_read(1, 0x40_0000);
    // EFAULT: past the permission check (the address is simply unmapped).
    got |= read.is_ok() || read == Err(libc::EFAULT);
    how.push(answer("process_vm_readv(1)", &read));
    let link = std::fs::read_link("/proc/1/fd/0");
    got |= link.is_ok();
    how.push(format!(
        "readlink /proc/1/fd/0: {}",
        match &link {
            Ok(p) => p.display().to_string(),
            Err(e) => describe(e.raw_os_error().unwrap_or(0)),
        }
    ));
    match sys::pidfd_open(1) {
        Err(e) => how.push(format!("pidfd_open(1): {}", describe(e))),
        Ok(pidfd) => {
            let mut errs = Vec::new();
            for target in 0..16 {
                match sys::pidfd_getfd(&pidfd, target) {
                    Ok(_) => {
                        got = true;
                        errs.push(format!("{target}: taken"));
                    }
                    Err(libc::EBADF) => {}
                    Err(e) => errs.push(format!("{target}: {}", describe(e))),
                }
            }
            errs.dedup_by(|a, b| a.split(": ").nth(1) == b.split(": ").nth(1));
            how.push(format!("pidfd_getfd(1, 0..16): {}", errs.join(" ")));
        }
    }
    let detail = format!(
        "PID 1 ({}): {}",
        comm(1).unwrap_or_default(),
        how.join("; ")
    );
    if got {
        escaped("init-memory", detail)
    } else {
        blocked("init-memory", detail)
    }
}

/// Socket families a room has no use for: raw packets, the kernel's audit, uevent and
/// socket-diagnostic netlink, vsock, the kernel's crypto API, XDP.
pub fn socket_families(cx: Context) -> Verdict {
    let mut how = Vec::new();
    let mut reached = false;
    for (domain, kind, proto, name) in [
        (libc::AF_PACKET, libc::SOCK_RAW, 0, "packet"),
        (libc::AF_INET, 10, 0, "inet/SOCK_PACKET"),
        (
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
            "inet/raw",
        ),
        (
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            libc::NETLINK_AUDIT,
            "netlink/audit",
        ),
        (
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            libc::NETLINK_KOBJECT_UEVENT,
            "netlink/uevent",
        ),
        (
            libc::AF_NETLINK,
            libc::SOCK_RAW,
            libc::NETLINK_SOCK_DIAG,
            "netlink/sock_diag",
        ),
        (libc::AF_VSOCK, libc::SOCK_STREAM, 0, "vsock"),
        (libc::AF_ALG, libc::SOCK_SEQPACKET, 0, "alg"),
        (libc::AF_XDP, libc::SOCK_RAW, 0, "xdp"),
    ] {
        let r = sys::socket(domain, kind, proto);
        // EAFNOSUPPORT / EPROTONOSUPPORT: the kernel has no such family (not reached).
        let ok = r.is_ok();
        reached |= ok;
        how.push(answer(name, &r));
    }
    cx.kernel_facility("socket-families", reached, &how.join(", "))
}

/// Sockets of the families a room has (IP) but of a kind or protocol no room program uses
/// (SCTP, DCCP, L2TP, ...). Whatever the kernel answers, a call that gets past seccomp
/// reaches the host kernel's protocol lookup, and a protocol it does not have makes it ask
/// modprobe (as host root) for one: a module the host never loaded, with its bugs, loaded
/// on a room's request. Only EPERM (the room's filter) is BLOCKED here; success and
/// EPROTONOSUPPORT alike say the lookup ran.
pub fn inet_protocols(cx: Context) -> Verdict {
    const SOCK_DCCP: i32 = 6;
    const IPPROTO_L2TP: i32 = 115;
    let mut how = Vec::new();
    let mut reached = false;
    for (domain, kind, proto, name) in [
        (
            libc::AF_INET,
            libc::SOCK_STREAM,
            libc::IPPROTO_SCTP,
            "inet/stream/sctp",
        ),
        (
            libc::AF_INET,
            libc::SOCK_SEQPACKET,
            libc::IPPROTO_SCTP,
            "inet/seqpacket/sctp",
        ),
        (libc::AF_INET, SOCK_DCCP, libc::IPPROTO_DCCP, "inet/dccp"),
        (
            libc::AF_INET,
            libc::SOCK_DGRAM,
            IPPROTO_L2TP,
            "inet/dgram/l2tp",
        ),
        (libc::AF_INET, libc::SOCK_STREAM, 253, "inet/stream/253"),
        (
            libc::AF_INET6,
            libc::SOCK_STREAM,
            libc::IPPROTO_SCTP,
            "inet6/stream/sctp",
        ),
        (
            libc::AF_INET6,
            libc::SOCK_DGRAM,
            libc::IPPROTO_UDPLITE,
            "inet6/dgram/udplite",
        ),
        (libc::AF_INET6, 9, 0, "inet6/type-9"),
    ] {
        let r = sys::socket(domain, kind, proto);
        reached |= !matches!(r, Err(libc::EPERM));
        how.push(answer(name, &r));
    }
    cx.kernel_facility("inet-protocols", reached, &how.join(", "))
}

/// sync(2) writes back every file system of the machine: the host's disk and every other
/// room's volume. A room calling it in a loop would cost all of them their disk time. A
/// room flushes its own files with fsync, fdatasync and syncfs.
pub fn host_sync(cx: Context) -> Verdict {
    let r = sys::sync();
    cx.kernel_facility("host-sync", r.is_ok(), &answer("sync", &r))
}

/// The machine's interrupt counts (/proc/interrupts, /proc/softirqs, /proc/irq/N/): they
/// rise with every key pressed in any room, a timing of another room's typing.
pub fn proc_interrupts(cx: Context) -> Verdict {
    let mut how = Vec::new();
    let mut reached = false;
    for path in ["/proc/interrupts", "/proc/softirqs"] {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {
                reached = true;
                how.push(format!("{path}: {} lines", text.lines().count()));
            }
            Ok(_) => how.push(format!("{path}: empty")),
            Err(e) => how.push(format!("{path}: {e}")),
        }
    }
    match std::fs::read_dir("/proc/irq") {
        Ok(dir) => {
            let n = dir.flatten().count();
            reached |= n > 0;
            how.push(format!("/proc/irq: {n} entries"));
        }
        Err(e) => how.push(format!("/proc/irq: {e}")),
    }
    cx.kernel_facility("proc-interrupts", reached, &how.join(", "))
}

/// The host's own inodes a room's /dev shows it: /dev/console (bay0's pty, in bay0's
/// devpts) and /dev/anchor-umbilical (bay0's socket). Both belong to the room's uid (its
/// own terminal, its own socket) but live on the host's file systems: a chmod, chown or
/// touch through these paths would change the host's inode. Tried with chmod to the mode
/// each already has (nothing changes if it passes). The room's descriptors 0 to 2 are the
/// same terminal opened by bay0, not through the room's /dev; they are not tried.
pub fn host_inodes(cx: Context) -> Verdict {
    use std::os::unix::fs::PermissionsExt;
    let mut how = Vec::new();
    let mut reached = false;
    for path in ["/dev/console", "/dev/anchor-umbilical"] {
        let Ok(meta) = std::fs::metadata(path) else {
            how.push(format!("{path}: absent"));
            continue;
        };
        let r = sys::chmod_same(path, meta.permissions().mode() & 0o7777);
        reached |= r.is_ok();
        how.push(answer(&format!("chmod {path}"), &r));
    }
    cx.kernel_facility("host-inodes", reached, &how.join(", "))
}

/// The console: push input into it (TIOCSTI), drive it as a virtual console (TIOCLINUX),
/// take the host kernel's console output (TIOCCONS).
pub fn tty_inject(cx: Context) -> Verdict {
    let names = ["TIOCSTI", "TIOCLINUX", "TIOCCONS"];
    let requests = [libc::TIOCSTI, libc::TIOCLINUX, libc::TIOCCONS].map(|r| r as libc::c_ulong);
    let answers = match sys::on_own_terminal(requests) {
        Ok(a) => a,
        Err(e) => {
            return escaped(
                "tty-inject",
                format!("no terminal of its own to try on: {}", describe(e)),
            )
        }
    };
    let mut how = Vec::new();
    let mut reached = false;
    for (name, r) in names.iter().zip(answers) {
        // ENOTTY/EINVAL: past the permission check (the request means nothing here).
        reached |= !matches!(r, Err(e) if refused(e) || e == libc::EBADF);
        how.push(answer(name, &r));
    }
    cx.kernel_facility(
        "tty-inject",
        reached,
        &format!(
            "{} (on a pty of its own, its controlling terminal)",
            how.join(", ")
        ),
    )
}

/// A second connection to bay0's umbilical (the agent's first one is the only one bay0
/// serves): bay0 must close it without a byte. The read has a hang guard only.
pub fn umbilical() -> Verdict {
    let path = "/dev/anchor-umbilical";
    if !Path::new(path).exists() {
        return blocked(
            "umbilical",
            format!("no {path} in this room (a microVM's umbilical is the agent's vsock)"),
        );
    }
    let mut s = match std::os::unix::net::UnixStream::connect(path) {
        Err(e) => return blocked("umbilical", format!("connect {path}: {}", e.kind())),
        Ok(s) => s,
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => blocked(
            "umbilical",
            format!("connect {path}: accepted, then closed by bay0 unread (one agent per boot)"),
        ),
        Ok(n) => escaped(
            "umbilical",
            format!("bay0 sent {n} bytes on a second umbilical"),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => blocked(
            "umbilical",
            format!("connect {path}: reset by bay0 (one agent per boot)"),
        ),
        Err(e) => escaped(
            "umbilical",
            format!("bay0 kept a second umbilical open ({})", e.kind()),
        ),
    }
}

/// Takes as much of the kernel's per-user counts as the room's limits allow: inotify
/// instances (up to 4096) and queued real-time signals (up to 200000). The kernel charges
/// them to the user that owns the room's user namespace at every level up to the host's;
/// another room (or the host's root) must still get its own.
pub fn ucount_hog() -> String {
    let inotify = (0..4096)
        .map_while(|_| sys::inotify_init().ok())
        .collect::<Vec<_>>();
    let signals = sys::queue_rt_signals(200_000);
    let n = inotify.len();
    std::mem::forget(inotify);
    format!("UCOUNTS inotify={n} signals={signals}")
}

/// The host's table of open files: fs.file-max is one count for the whole kernel, with no
/// share per room (only host root may open past it). Holder processes open /dev/null
/// until the room's limits stop them, up to what half the room's memory (`mem_mib`)
/// holds at 256 bytes a file (what an open file and its descriptor slot cost the room's
/// memory cgroup), or until the table would be full. ENFILE on the way is an escape: the
/// table is full, and every other room and unprivileged process of the host now fails to
/// open anything. Without `hold` the holders are killed before the verdict; with it they
/// keep their files after the probe ends, until the room does (the load of
/// tests/escape/tests/ns_files.rs, which then looks at what another room and the host can
/// still open).
pub fn file_table(mem_mib: u64, hold: bool) -> Verdict {
    const NAME: &str = "file-table";
    const PER_HOLDER: u64 = 4000;
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/fs/{f}"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let (Some(max), Some(open)) = (read("file-max"), read("file-nr")) else {
        return escaped(
            NAME,
            "/proc/sys/fs/file-max or file-nr unreadable: nothing to judge",
        );
    };
    let budget = (mem_mib << 20) / 2 / 256;
    let target = budget.min(max.saturating_sub(open).saturating_add(PER_HOLDER));
    let (mut held, mut holders, mut stop) = (0u64, Vec::new(), String::new());
    let mut full = false;
    while held < target {
        match sys::holder(PER_HOLDER.min(target - held), sys::keep_a_file) {
            Err(e) => {
                stop = format!("fork: {}", describe(e));
                break;
            }
            Ok((pid, n, why)) => {
                holders.push(pid);
                held += n;
                if why == libc::ENFILE {
                    full = true;
                    stop = format!("open: {}", describe(why));
                    break;
                }
                if n == 0 {
                    stop = format!("open: {}", describe(why));
                    break;
                }
            }
        }
    }
    if stop.is_empty() {
        stop = "the target was reached".into();
    }
    let detail = format!(
        "{held} files held by {} process(es) of a {mem_mib} MiB room ({stop}); fs.file-max {max}, \
         {open} open before",
        holders.len()
    );
    if !hold {
        for pid in holders {
            let _ = sys::kill(pid, libc::SIGKILL);
            // SAFETY: reaps our own child; a null status pointer is allowed.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
    if full {
        escaped(
            NAME,
            format!("{detail}: the host-wide table of open files is full"),
        )
    } else {
        blocked(NAME, detail)
    }
}

/// The host's process ids: every task of a room also takes an id in the host's PID
/// namespace, out of one space for the whole machine (kernel.pid_max, 32768 on a host of
/// up to 32 CPUs) that host root draws on too. Starts threads (the cheapest tasks) until
/// one fails, up to the room's own limit (RLIMIT_NPROC, which the jail sets to the
/// room's pids.max) or pid_max as the room reads it (on Linux >= 6.14 its own PID
/// namespace's, not the host's), whichever is lower. ESCAPED when the kernel
/// said EAGAIN while the room held fewer tasks than its own limit: something shared with
/// the host ran out (the PID space, or kernel.threads-max), and bay0, the host and every
/// other room can then fork nothing. With `hold`, the threads are kept after the verdict
/// until a line comes on stdin (tests/escape/tests/ns_pids.rs looks at the host and
/// another room meanwhile).
pub fn pid_space(hold: bool) -> Verdict {
    const NAME: &str = "pid-space";
    // Threads per holder process: each takes a few mappings (stack, guards, signal
    // stack), and a process may have 65530 (vm.max_map_count).
    const PER_HOLDER: u64 = 4000;
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let (Some(pid_max), Ok(nproc)) = (pid_max, sys::soft_rlimit(libc::RLIMIT_NPROC)) else {
        return escaped(NAME, "pid_max or RLIMIT_NPROC unreadable: nothing to judge");
    };
    let target = nproc.min(pid_max.saturating_add(64));
    let (mut started, mut holders, mut stop) = (0u64, Vec::new(), None);
    while started < target {
        match sys::holder(PER_HOLDER.min(target - started), sys::keep_a_thread) {
            Err(e) => {
                stop = Some(e);
                break;
            }
            Ok((pid, n, why)) => {
                holders.push(pid);
                started += n;
                if why != 0 {
                    stop = Some(why);
                    break;
                }
            }
        }
    }
    let tasks = room_tasks();
    let detail = format!(
        "{started} thread(s) started in {} process(es) ({}); the room then had {tasks} \
         task(s), its limit (RLIMIT_NPROC) {nproc}, kernel.pid_max {pid_max} as the room reads it",
        holders.len(),
        stop.map_or_else(|| "the target was reached".into(), describe),
    );
    let short = stop == Some(libc::EAGAIN) && tasks < nproc;
    let verdict = if short {
        escaped(
            NAME,
            format!("{detail}: a count the whole host shares ran out first"),
        )
    } else {
        blocked(NAME, detail)
    };
    if hold {
        let _ = std::io::stdout().write_all(format!("{verdict}\n").as_bytes());
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    for pid in holders {
        let _ = sys::kill(pid, libc::SIGKILL);
        // SAFETY: reaps our own child; a null status pointer is allowed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    verdict
}

/// Every task (thread) of the room: the tasks of every process its /proc shows.
fn room_tasks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_dir(e.path().join("task")).ok())
        .map(|tasks| tasks.count() as u64)
        .sum()
}

/// Linux AIO: its contexts come out of one count for the whole kernel (fs.aio-max-nr,
/// namespaced by nothing, limited per user by nothing). Takes all the kernel grants, then
/// reads the host-wide count: a room that can bring it to the maximum leaves every other
/// room, bay0 and the host with EAGAIN. Everything taken is given back before the verdict.
pub fn aio_exhaust(cx: Context) -> Verdict {
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/fs/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let max = read("aio-max-nr").unwrap_or(65_536);
    let first = sys::io_setup(u32::try_from(max).unwrap_or(u32::MAX));
    let mut taken = Vec::new();
    let mut last = first;
    let mut nr = u32::try_from(max).unwrap_or(u32::MAX);
    while taken.len() < 4096 {
        match last {
            Ok(ctx) => taken.push(ctx),
            Err(libc::EAGAIN | libc::EINVAL) if nr > 1 => nr /= 2,
            Err(_) => break,
        }
        last = sys::io_setup(nr);
    }
    let host_count = read("aio-nr");
    for ctx in &taken {
        sys::io_destroy(*ctx);
    }
    let detail = format!(
        "{}; {} context(s) taken, the kernel-wide count then {} of fs.aio-max-nr {max}",
        answer("io_setup(fs.aio-max-nr events)", &first),
        taken.len(),
        host_count.map_or_else(|| "unknown".into(), |n| n.to_string()),
    );
    let all_taken = !taken.is_empty() && host_count.is_none_or(|n| n >= max);
    cx.kernel_facility("aio-exhaust", all_taken, &detail)
}

/// The other system call entry points of an x86_64 kernel: x32 (number | 0x40000000) and
/// 32-bit (int 0x80, i386 numbers). A filter written for x86_64 numbers that let them in
/// would be bypassed; unshare(CLONE_NEWUSER) through each, in a child.
pub fn compat_syscalls(cx: Context) -> Verdict {
    #[cfg(target_arch = "x86_64")]
    {
        let mut how = Vec::new();
        let mut reached = false;
        for (name, call) in [
            (
                "x32 unshare(user)",
                sys::x32_unshare_user as fn() -> libc::c_long,
            ),
            ("int 0x80 unshare(user)", sys::int80_unshare_user),
        ] {
            match sys::in_child(call) {
                Err(e) => how.push(format!("{name}: fork: {}", describe(e))),
                Ok(sys::Ended::Succeeded) => {
                    reached = true;
                    how.push(format!("{name}: succeeded"));
                }
                Ok(sys::Ended::Failed(e)) => how.push(format!("{name}: {}", describe(e))),
                Ok(sys::Ended::Killed(sig)) => how.push(format!(
                    "{name}: the caller was killed by signal {sig}{}",
                    if sig == libc::SIGSYS {
                        " (seccomp: a foreign architecture)"
                    } else {
                        ""
                    }
                )),
            }
        }
        cx.kernel_facility("compat-syscalls", reached, &how.join("; "))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = cx;
        blocked(
            "compat-syscalls",
            format!(
                "not tried on {}: the probe holds no 32-bit code (the filters check the architecture of every call)",
                std::env::consts::ARCH
            ),
        )
    }
}

/// Line disciplines (TIOCSETD: n_gsm, n_hdlc and friends were kernel exploit routes), and
/// the terminal requests the deny filter refuses, again with bits above the 32 the kernel
/// reads set (a filter comparing all 64 would miss them).
pub fn tty_ldisc(cx: Context) -> Verdict {
    const HIGH: libc::c_ulong = 1 << 32;
    let names = ["TIOCSETD", "TIOCSTI|1<<32", "TIOCSETD|1<<32"];
    let requests = [
        libc::TIOCSETD as libc::c_ulong,
        libc::TIOCSTI as libc::c_ulong | HIGH,
        libc::TIOCSETD as libc::c_ulong | HIGH,
    ];
    let answers = match sys::on_own_terminal(requests) {
        Ok(a) => a,
        Err(e) => {
            return escaped(
                "tty-ldisc",
                format!("no terminal of its own to try on: {}", describe(e)),
            )
        }
    };
    let mut how = Vec::new();
    let mut reached = false;
    for (name, r) in names.iter().zip(answers) {
        reached |= !matches!(r, Err(e) if refused(e) || e == libc::EBADF);
        how.push(answer(name, &r));
    }
    cx.kernel_facility(
        "tty-ldisc",
        reached,
        &format!("{} (N_TTY, on a pty of its own)", how.join(", ")),
    )
}

/// Kernel keyrings beyond keyctl: adding a key, asking for one (request_key may start a
/// user-mode helper as host root).
pub fn add_key(cx: Context) -> Verdict {
    let a = sys::add_key();
    let b = sys::request_key();
    // ENOKEY from request_key: the kernel looked (past the permission checks).
    let reached = a.is_ok() || !matches!(b, Err(e) if refused(e));
    let detail = format!(
        "{}; {}",
        answer("add_key(user)", &a),
        answer("request_key(user)", &b)
    );
    cx.kernel_facility("add-key", reached, &detail)
}

/// name_to_handle_at: the handle half of the "shocker" escape (open-by-handle is the
/// other half).
pub fn name_to_handle(cx: Context) -> Verdict {
    let r = sys::name_to_handle_root();
    let reached = !matches!(r, Err(e) if refused(e));
    cx.kernel_facility(
        "name-to-handle",
        reached,
        &answer("name_to_handle_at(/)", &r),
    )
}

/// quotactl on the device under the room's root (the host's quota code parses it).
pub fn quotactl(cx: Context) -> Verdict {
    let device = root_device().map_or_else(|| "/dev/root".to_string(), |(s, ..)| s);
    let r = sys::quotactl_getinfo(&device);
    let reached = !matches!(r, Err(e) if refused(e));
    cx.kernel_facility(
        "quotactl",
        reached,
        &answer(&format!("quotactl(Q_GETINFO, {device})"), &r),
    )
}

/// Raising hard resource limits (CAP_SYS_RESOURCE of the host's user namespace).
pub fn rlimit_raise(cx: Context) -> Verdict {
    let mut how = Vec::new();
    let mut raised = false;
    for (res, name) in [
        (libc::RLIMIT_NPROC, "NPROC"),
        (libc::RLIMIT_NOFILE, "NOFILE"),
        (libc::RLIMIT_CORE, "CORE"),
        (libc::RLIMIT_MEMLOCK, "MEMLOCK"),
        (libc::RLIMIT_RTPRIO, "RTPRIO"),
        (libc::RLIMIT_SIGPENDING, "SIGPENDING"),
        (libc::RLIMIT_MSGQUEUE, "MSGQUEUE"),
    ] {
        let hard = match sys::hard_rlimit(res) {
            Ok(h) => h,
            Err(e) => {
                how.push(format!("{name}: getrlimit {}", describe(e)));
                continue;
            }
        };
        if hard == libc::RLIM_INFINITY {
            how.push(format!("{name}: already unlimited"));
            continue;
        }
        let r = sys::setrlimit(res, hard.saturating_add(1));
        raised |= r.is_ok();
        how.push(answer(
            &format!("{name} {hard} -> {}", hard.saturating_add(1)),
            &r,
        ));
    }
    cx.kernel_facility("rlimit-raise", raised, &how.join(", "))
}

/// The namespaces around the room's, by descriptor: NS_GET_USERNS (a namespace's owner:
/// the host's user namespace for every one the jail made) and NS_GET_PARENT (the host's
/// PID and user namespaces).
pub fn ns_owner(cx: Context) -> Verdict {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    const NS_GET_PARENT: libc::c_ulong = 0xb702;
    let mut how = Vec::new();
    let mut reached = false;
    for ns in ["user", "pid", "net", "mnt", "uts", "ipc", "cgroup", "time"] {
        let path = format!("/proc/self/ns/{ns}");
        let file = match sys::open(&path, libc::O_RDONLY) {
            Ok(f) => f,
            Err(e) => {
                how.push(format!("{ns}: open {}", describe(e)));
                continue;
            }
        };
        for (req, what) in [(NS_GET_USERNS, "owner"), (NS_GET_PARENT, "parent")] {
            if what == "parent" && !["user", "pid"].contains(&ns) {
                continue;
            }
            let r = sys::ns_ioctl(&file, req);
            reached |= r.is_ok();
            how.push(answer(&format!("{ns} {what}"), &r));
        }
    }
    cx.kernel_facility("ns-owner", reached, &how.join(", "))
}

/// Memory past the room's limit in socket buffers: loopback TCP connections whose
/// receiver never reads, each filled until the kernel pushes back (cgroup v1 counts TCP
/// buffers apart from memory.limit_in_bytes, and not at all unless asked; the kernel-wide
/// tcp_mem is then the only bound, shared with the host and every room). More queued than
/// the room's whole memory is an escape. The filling runs in a child holding a 32 MiB
/// decoy, so that where socket buffers count in the room's memory (cgroup v2, a microVM)
/// the OOM killer, which does not see them, picks the filler and not the room's agent;
/// the child reports its progress as it goes.
pub fn socket_memory(mem_mib: u64) -> Verdict {
    let why = |code| match code {
        1 => Some("no loopback listener".to_string()),
        2 => Some("a connection failed".to_string()),
        3 => Some("the kernel pushed back: 8 connections in a row took under 256 KiB".to_string()),
        _ => None,
    };
    let what = "queued in the buffers of loopback TCP connections nobody reads";
    filled_past_the_room("socket-memory", what, mem_mib, fill_tcp_buffers, why)
}

/// The verdict `name` of `fill` (up to the room's memory + 64 MiB, in a child that holds a
/// 32 MiB decoy and reports its running total): ESCAPED when more than the room's whole
/// memory (`mem_mib`) was queued. `what` says where the bytes queued; `why` names the
/// filler's own stops (exit codes 1..=3).
fn filled_past_the_room(
    name: &str,
    what: &str,
    mem_mib: u64,
    fill: fn(u64, &mut dyn FnMut(u64)) -> i32,
    why: impl Fn(i32) -> Option<String>,
) -> Verdict {
    let target = (mem_mib + 64) << 20;
    let run = sys::in_child_reporting(|report| {
        let decoy = vec![1u8; 32 << 20];
        let stop = fill(target, report);
        std::hint::black_box(&decoy);
        stop
    });
    let (queued, how) = match run {
        Err(e) => return blocked(name, format!("fork: {}", describe(e))),
        Ok((last, ended)) => (
            last.unwrap_or(0),
            match ended {
                sys::Ended::Succeeded => "target reached".to_string(),
                sys::Ended::Failed(e) => {
                    why(e).unwrap_or_else(|| format!("the filler exited with status {e}"))
                }
                sys::Ended::Killed(sig) => {
                    format!("the filler was killed by signal {sig} at the room's limit")
                }
            },
        ),
    };
    let detail = format!(
        "{} MiB {what}, in a {mem_mib} MiB room ({how})",
        queued >> 20
    );
    if mem_mib > 0 && queued > mem_mib << 20 {
        escaped(name, detail)
    } else {
        blocked(name, detail)
    }
}

/// Fills the buffers of loopback TCP connections nobody reads with up to `target` bytes,
/// reporting the running total after each connection; why it stopped: 0 the target was
/// reached, 1 no listener, 2 a connection failed, 3 the kernel pushed back.
fn fill_tcp_buffers(target: u64, report: &mut dyn FnMut(u64)) -> i32 {
    const CHUNK: usize = 64 << 10;
    let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", 0)) else {
        return 1;
    };
    let Ok(addr) = listener.local_addr() else {
        return 1;
    };
    let chunk = vec![0u8; CHUNK];
    let (mut held, mut queued, mut meagre) = (Vec::new(), 0u64, 0);
    while queued < target {
        let pair = std::net::TcpStream::connect(addr)
            .and_then(|c| Ok((listener.accept()?.0, c)))
            .and_then(|(s, c)| c.set_nonblocking(true).map(|()| (s, c)));
        let Ok((server, mut client)) = pair else {
            report(queued);
            return 2;
        };
        let mut took = 0u64;
        while took < target - queued {
            match client.write(&chunk) {
                Ok(n) if n > 0 => took += n as u64,
                _ => break,
            }
        }
        queued += took;
        held.push((server, client));
        report(queued);
        // The kernel lets each new connection queue a little whatever the limits; a run
        // of connections that took little each means it is pushing back.
        meagre = if took < 256 << 10 { meagre + 1 } else { 0 };
        if meagre >= 8 {
            return 3;
        }
    }
    0
}

/// Memory past the room's limit in netlink replies: the kernel's answers to routing
/// requests (RTM_GETLINK) queue on the asking socket until its receive buffer is full, in
/// kernel memory no cgroup is charged for, so sockets times buffer is the only bound. More
/// queued than the room's whole memory is an escape. In a child holding a decoy, as
/// [`socket_memory`].
pub fn netlink_memory(mem_mib: u64) -> Verdict {
    let why = |code| match code {
        1 => Some(answer(
            "socket(AF_NETLINK, NETLINK_ROUTE)",
            &sys::netlink_route_socket().map(drop),
        )),
        2 => Some("a socket or request failed".to_string()),
        3 => Some("the kernel pushed back: 8 sockets in a row took under 64 KiB".to_string()),
        _ => None,
    };
    let what = "of routing replies queued on netlink sockets nobody reads";
    filled_past_the_room("netlink-memory", what, mem_mib, fill_netlink, why)
}

/// Fills NETLINK_ROUTE sockets with replies nobody reads, up to `target` bytes, reporting
/// the running total after each socket; why it stopped: 0 the target was reached, 1 no
/// socket at all, 2 a later socket or request failed, 3 the kernel pushed back.
fn fill_netlink(target: u64, report: &mut dyn FnMut(u64)) -> i32 {
    let (mut held, mut queued, mut meagre) = (Vec::new(), 0u64, 0);
    while queued < target {
        let Ok(sock) = sys::netlink_route_socket() else {
            return if held.is_empty() { 1 } else { 2 };
        };
        let mut have = 0;
        loop {
            if sys::netlink_getlink(&sock, 256).is_err() {
                report(queued + have);
                return 2;
            }
            let now = sys::socket_rmem(&sock).unwrap_or(0);
            if now <= have || queued + now >= target {
                have = now.max(have);
                break;
            }
            have = now;
        }
        queued += have;
        held.push(sock);
        report(queued);
        meagre = if have < 64 << 10 { meagre + 1 } else { 0 };
        if meagre >= 8 {
            return 3;
        }
    }
    0
}

/// Another room's reads of a file of the image, seen through inotify. Rooms that shared
/// the image's SquashFS superblock would share its inodes, and a read-side watch on one
/// would report every other room's opens and reads of it as they happen. `file` is a file
/// of the image that another room of the image reads over and over (the harness starts
/// it with the probe's `neighbour`). The watch must see this room's own read of the file
/// (else the attempt proves nothing, and says so as ESCAPED); before that, for `quiet`,
/// no event may come.
pub fn image_watch(cx: Context, file: &str, quiet: Duration) -> Verdict {
    watch("image-watch", cx, file, quiet)
}

/// The room's device nodes (/dev/urandom, /dev/null, ...) watched as in [`image_watch`]:
/// a room whose nodes were the host's (bound from its /dev) would see every open and read
/// of them by the host and by every other room (a channel between rooms, and a view of
/// the host's activity). `file` is a device another room reads every 20 ms (the
/// harness's `neighbour`). A microVM's devices are its own kernel's.
pub fn dev_watch(cx: Context, file: &str, quiet: Duration) -> Verdict {
    let v = watch("dev-watch", cx, file, quiet);
    if v.escaped && cx.own_kernel {
        return cx.kernel_facility("dev-watch", true, &v.detail);
    }
    v
}

fn watch(name: &str, cx: Context, file: &str, quiet: Duration) -> Verdict {
    let name_owned = name.to_string();
    let name = name_owned.as_str();
    let mask = libc::IN_OPEN | libc::IN_ACCESS | libc::IN_CLOSE_NOWRITE;
    let what = format!("inotify_add_watch({file}, IN_OPEN|IN_ACCESS|IN_CLOSE_NOWRITE)");
    let fd = match sys::inotify_init().and_then(|fd| {
        sys::inotify_add_watch(&fd, file, mask)?;
        Ok(fd)
    }) {
        Ok(fd) => fd,
        Err(e) => return cx.kernel_facility(name, false, &format!("{what}: {}", describe(e))),
    };
    let counted = (|| {
        sys::inotify_drain(&fd)?;
        std::thread::sleep(quiet);
        let foreign = sys::inotify_pending(&fd)?;
        sys::inotify_drain(&fd)?;
        // SAFETY: the probe has one thread; the child only reads the file and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let _ = std::fs::read(file);
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        if pid > 0 {
            // SAFETY: reaps our own child.
            unsafe { libc::waitpid(pid, core::ptr::null_mut(), 0) };
        }
        Ok((foreign, sys::inotify_pending(&fd)?))
    })();
    match counted {
        Err(e) => escaped(name, format!("{what}: accepted, then {}: the attempt proves nothing", describe(e))),
        Ok((_, 0)) => escaped(
            name,
            format!("{what}: accepted, but this room's own read of it raised no event: the attempt proves nothing"),
        ),
        Ok((0, own)) => blocked(
            name,
            format!(
                "{what}: {} ms while another room reads it raised no event here (this room's own read: {own} bytes of events)",
                quiet.as_millis()
            ),
        ),
        Ok((foreign, _)) => escaped(
            name,
            format!(
                "{what}: {foreign} bytes of events in {} ms from another room's reads of it (rooms share its inode)",
                quiet.as_millis()
            ),
        ),
    }
}

/// Another room's lock on a file of the image, seen from this room. Rooms that shared the
/// image's superblock would share its inodes and so their flock and POSIX locks: a
/// channel between rooms (one takes and drops a lock, the other tries it) that no courier
/// approves. `file` is a file of the image on which another room of the image holds an
/// exclusive flock (the harness starts it with the probe's `neighbour`).
pub fn image_lock(file: &str) -> Verdict {
    lock("image-lock", file)
}

/// The room's device nodes locked as in [`image_lock`]: a device node shared with the host
/// and other rooms (bound from the host's /dev) would share their flock locks too. `file`
/// is a device on which another room holds an exclusive flock (the harness's `neighbour`).
pub fn dev_lock(file: &str) -> Verdict {
    lock("dev-lock", file)
}

fn lock(name: &str, file: &str) -> Verdict {
    let f = match sys::open(file, libc::O_RDONLY | libc::O_CLOEXEC) {
        Ok(f) => f,
        Err(e) => {
            return escaped(
                name,
                format!("open {file}: {}: the attempt proves nothing", describe(e)),
            )
        }
    };
    match sys::flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => blocked(
            name,
            format!("flock({file}, LOCK_EX|LOCK_NB): taken, though another room holds it: no lock crosses rooms"),
        ),
        Err(e) if e == libc::EWOULDBLOCK => escaped(
            name,
            format!("flock({file}, LOCK_EX|LOCK_NB): {}: another room's lock is seen here (rooms share its inode)", describe(e)),
        ),
        Err(e) => blocked(name, format!("flock({file}, LOCK_EX|LOCK_NB): {}", describe(e))),
    }
}

/// The kernel's one anonymous inode, locked from a room. Every eventfd, epoll, timerfd,
/// signalfd and inotify descriptor of the machine is a file of that one inode, in every
/// room and on the host: a room that takes an exclusive flock or a write lock through its
/// own eventfd is seen by every other room trying one (a channel between rooms no courier
/// approves), and stalls any host program that waits for one. bay0 pins the inode first
/// (a shared flock and a whole-file OFD read lock, anchor_sys::pin_anon_inode_locks), so
/// here the exclusive flock must be refused, a shared one taken, and the write lock in the
/// way must be that whole-file read lock. The harness's `neighbour` room tries to hold an
/// exclusive flock and a write lock there.
pub fn anon_lock(cx: Context) -> Verdict {
    const NAME: &str = "anon-lock";
    let mut how = Vec::new();
    let mut crossed = false;
    for (kind, file) in sys::anon_inode_files() {
        let f = match file {
            Ok(f) => f,
            Err(e) => {
                how.push(format!("{kind}: {}", describe(e)));
                continue;
            }
        };
        let ino = sys::inode_of(&f).map_or_else(describe, |(_, i)| format!("inode {i}"));
        let flock = match sys::flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {
                crossed = true;
                let _ = sys::flock(&f, libc::LOCK_UN);
                "flock LOCK_EX taken (every other holder of the inode would wait on it)".to_string()
            }
            Err(e) if e == libc::EWOULDBLOCK => match sys::flock(&f, libc::LOCK_SH | libc::LOCK_NB)
            {
                Ok(()) => {
                    let _ = sys::flock(&f, libc::LOCK_UN);
                    "flock LOCK_EX EWOULDBLOCK, LOCK_SH taken".to_string()
                }
                Err(e) => {
                    crossed = true;
                    format!(
                        "flock LOCK_SH {}: another room's exclusive lock is seen here",
                        describe(e)
                    )
                }
            },
            Err(e) => format!("flock LOCK_EX {}", describe(e)),
        };
        let range = match sys::ofd_getlk(&f, libc::F_WRLCK) {
            Ok((t, ..)) if t == libc::F_UNLCK => {
                crossed = true;
                "no lock in the way of a whole-file write lock (every other room would see it)"
                    .to_string()
            }
            Ok((t, 0, 0, -1)) if t == libc::F_RDLCK => {
                "a write lock meets the host's whole-file read lock".to_string()
            }
            Ok((t, start, len, pid)) => {
                crossed = true;
                format!(
                    "a write lock meets another's lock (type {t}, start {start}, length {len}, \
                     pid {pid}): seen from another room"
                )
            }
            Err(e) => format!("F_OFD_GETLK {}", describe(e)),
        };
        how.push(format!("{kind} ({ino}): {flock}; {range}"));
    }
    cx.kernel_facility(NAME, crossed, &how.join("; "))
}

/// Where the harness's neighbour room holds an OFD read lock on its own eventfd (one
/// byte at this offset): proc-locks looks for it.
pub const NEIGHBOUR_OFD_MARK: i64 = 0x5eed_0001;

/// /proc/locks, read from a room. It is one file for the whole machine: the kernel hides
/// the flock and POSIX locks of processes outside the reader's PID namespace, but shows
/// every OFD lock (its owner is an open file, pid -1) with its device, inode and byte
/// range, the host's and every other room's. One room taking OFD locks at ranges it
/// chooses (on its own eventfd, or any file of its own) writes numbers another room reads
/// here: a channel between rooms no courier approves, and a view of the host's locking
/// (QEMU and others lock their images so). The harness's `neighbour` room holds one byte
/// at [`NEIGHBOUR_OFD_MARK`]; a room seeing it is ESCAPED.
pub fn proc_locks(cx: Context) -> Verdict {
    const NAME: &str = "proc-locks";
    let text = match std::fs::read_to_string("/proc/locks") {
        Ok(t) => t,
        Err(e) => return blocked(NAME, format!("read /proc/locks: {e}")),
    };
    let mark = format!(" {NEIGHBOUR_OFD_MARK} {NEIGHBOUR_OFD_MARK}");
    let ofd = text.lines().filter(|l| l.contains("OFDLCK")).count();
    match text.lines().find(|l| l.contains("OFDLCK") && l.ends_with(&mark)) {
        Some(line) => cx.kernel_facility(
            NAME,
            true,
            &format!(
                "another room's OFD lock is seen here: {line:?} ({ofd} OFD lock(s) of the machine listed)"
            ),
        ),
        None => blocked(
            NAME,
            format!(
                "{} bytes, {ofd} OFD lock(s), no other room's lock among them",
                text.len()
            ),
        ),
    }
}

/// Not an attempt: the harness's neighbour room for image-watch and image-lock. A child
/// (the room ends it) takes an exclusive flock on `lock`, then reads `read` every 20 ms;
/// the caller returns once the lock is held.
pub fn neighbour(read: &str, lock: &str) -> Result<String, String> {
    let f = sys::open(lock, libc::O_RDONLY | libc::O_CLOEXEC)
        .map_err(|e| format!("neighbour: open {lock}: {}", describe(e)))?;
    sys::flock(&f, libc::LOCK_EX | libc::LOCK_NB)
        .map_err(|e| format!("neighbour: flock {lock}: {}", describe(e)))?;
    // The kernel's anonymous inode too (anon-lock), where it can: it must not.
    let anon = sys::anon_inode_files()
        .into_iter()
        .find_map(|(_, f)| f.ok());
    let anon_held = anon.as_ref().map(|a| {
        (
            answer(
                "flock LOCK_EX",
                &sys::flock(a, libc::LOCK_EX | libc::LOCK_NB),
            ),
            answer("write lock", &sys::ofd_setlk(a, libc::F_WRLCK)),
            // One byte read-locked at a number of its choosing (proc-locks).
            answer(
                "read lock at the mark",
                &sys::ofd_setlk_at(a, libc::F_RDLCK, NEIGHBOUR_OFD_MARK, 1),
            ),
        )
    });
    // SAFETY: the probe has one thread; the child loops on its own and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err("neighbour: fork failed".into());
    }
    if pid == 0 {
        // The child keeps the lock (its copy of the open file description) and lets go
        // of the console.
        if let Ok(null) = sys::open("/dev/null", libc::O_RDWR) {
            for n in 0..3 {
                // SAFETY: dup2 onto the child's own standard descriptors.
                unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), n) };
            }
        }
        loop {
            let _ = std::fs::read(read);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let anon = anon_held.map_or_else(
        || "no anonymous-inode file".to_string(),
        |(f, w, m)| format!("anonymous inode: {f}, {w}, {m}"),
    );
    Ok(format!(
        "NEIGHBOUR reading {read} and holding a flock on {lock}; {anon} (pid {pid})"
    ))
}

/// The room's own /proc/self files that would give it what it lacks: OOM immunity
/// (oom_score_adj -1000, which needs CAP_SYS_RESOURCE), new id maps and setgroups (host
/// ids), other clocks (timens_offsets). Each write must be refused; a value that took is
/// read back and named.
pub fn proc_self_write(cx: Context) -> Verdict {
    let mut how = Vec::new();
    let mut wrote = false;
    for (file, text) in [
        ("oom_score_adj", "-1000\n"),
        ("setgroups", "allow\n"),
        ("uid_map", "0 0 4294967295\n"),
        ("gid_map", "0 0 4294967295\n"),
        ("timens_offsets", "monotonic 86400 0\n"),
    ] {
        let path = format!("/proc/self/{file}");
        let r = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        match r {
            Ok(()) => {
                wrote = true;
                let now = std::fs::read_to_string(&path).unwrap_or_default();
                how.push(format!("{file}: written (now {:?})", now.trim()));
            }
            Err(e) => how.push(format!(
                "{file}: {}",
                describe(e.raw_os_error().unwrap_or(0))
            )),
        }
    }
    cx.kernel_facility("proc-self-write", wrote, &how.join(", "))
}

/// The name a crashing child of [`core_dump`] gives itself (`%e` of a core_pattern).
pub const CRASH_COMM: &str = "escape-crash";

/// A crash must not reach a core dump helper of the host: a core_pattern that starts with
/// `|` runs its program as host root, in the host's namespaces, with the crashed process's
/// memory on its standard input, and the kernel ignores a core limit of 0 for it (only a
/// limit of exactly 1 byte stops it). Two children crash (SIGSEGV): one after setting its
/// core limit to 0, one after trying to lift it; the kernel's core-dump bit in their
/// status (or a core file where they crashed) says a dump was taken.
pub fn core_dump(cx: Context) -> Verdict {
    const NAME: &str = "core-dump";
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"));
    let limits = |what: &str| match (
        sys::soft_rlimit(libc::RLIMIT_CORE),
        sys::hard_rlimit(libc::RLIMIT_CORE),
    ) {
        (Ok(s), Ok(h)) => format!("{what} {s}/{h}"),
        (Err(e), _) | (_, Err(e)) => format!("{what} {}", describe(e)),
    };
    let mut how = vec![format!("core_pattern '{pattern}'"), limits("core limit")];
    let mut dumped = false;
    for (i, (core, said)) in [(0, "0"), (libc::RLIM_INFINITY, "unlimited")]
        .into_iter()
        .enumerate()
    {
        let dir = format!("/tmp/.escape-core-{i}");
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return escaped(
                NAME,
                format!("mkdir {dir}: {e}: the attempt proves nothing"),
            );
        }
        let crash = sys::crash_in_child(core, CRASH_COMM, &dir);
        let files: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        match crash {
            Err(e) => {
                return escaped(
                    NAME,
                    format!(
                    "the crashing child did not die of a signal ({}): the attempt proves nothing",
                    describe(e)
                ),
                )
            }
            Ok(c) => {
                dumped |= c.dumped || !files.is_empty();
                how.push(format!(
                    "a crash after setting the core limit to {said} ({}): signal {}, {}, core files: {}",
                    answer("setrlimit", &sys::probe_core_limit(core)),
                    c.signal,
                    if c.dumped { "core dumped" } else { "no core dump" },
                    if files.is_empty() { "none".into() } else { files.join(" ") }
                ));
            }
        }
    }
    cx.kernel_facility(NAME, dumped, &how.join("; "))
}

/// Runs one command line of the probe; the verdicts (or a usage error).
pub fn run(args: &[String]) -> Result<Vec<Verdict>, String> {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let own_kernel = args.first() == Some(&"--own-kernel");
    if own_kernel {
        args.remove(0);
    }
    let cx = Context { own_kernel };
    let Some((&attempt, rest)) = args.split_first() else {
        return Err(USAGE.into());
    };
    let pids = || -> Result<Vec<i32>, String> {
        rest.iter()
            .map(|p| p.parse().map_err(|_| format!("{p:?} is not a pid")))
            .collect()
    };
    let one = |v: Verdict| Ok(vec![v]);
    let arg = |i: usize| -> Result<&str, String> {
        rest.get(i)
            .copied()
            .ok_or_else(|| format!("{attempt}: missing argument ({USAGE})"))
    };
    match attempt {
        "capabilities" => one(capabilities()),
        "host-pids" => Ok(host_pids(&pids()?)),
        "proc-namespaces" => one(proc_namespaces(cx)),
        "ptrace-host" => one(ptrace_host(&pids()?)),
        "ptrace-init" => one(ptrace_init()),
        "host-file" => one(host_file(arg(0)?)),
        "write-image" => one(write_image()),
        "remount-rw" => one(remount_rw()),
        "mount-proc" => one(mount("mount-proc", "proc", "/mnt")),
        "mount-sysfs" => one(mount("mount-sysfs", "sysfs", "/sys")),
        "mount-tmpfs" => one(mount("mount-tmpfs", "tmpfs", "/etc")),
        "new-mount-api" => one(new_mount_api(cx)),
        "unshare" => one(unshare(cx)),
        "setns" => one(setns(cx)),
        "clone-namespaces" => one(clone_namespaces(cx)),
        "io-uring" => one(io_uring(cx)),
        "aio-exhaust" => one(aio_exhaust(cx)),
        "compat-syscalls" => one(compat_syscalls(cx)),
        "tty-ldisc" => one(tty_ldisc(cx)),
        "add-key" => one(add_key(cx)),
        "name-to-handle" => one(name_to_handle(cx)),
        "quotactl" => one(quotactl(cx)),
        "rlimit-raise" => one(rlimit_raise(cx)),
        "ns-owner" => one(ns_owner(cx)),
        "image-watch" => one(image_watch(cx, arg(0)?, Duration::from_secs(1))),
        "image-lock" => one(image_lock(arg(0)?)),
        "dev-watch" => one(dev_watch(cx, arg(0)?, Duration::from_secs(1))),
        "dev-lock" => one(dev_lock(arg(0)?)),
        "anon-lock" => one(anon_lock(cx)),
        "proc-locks" => one(proc_locks(cx)),
        "neighbour" => {
            let line = neighbour(arg(0)?, arg(1)?)?;
            let _ = std::io::stdout().write_all(format!("{line}\n").as_bytes());
            Ok(Vec::new())
        }
        "netlink-memory" => {
            let mib = arg(0)?
                .parse()
                .map_err(|_| "netlink-memory: the room's memory in MiB")?;
            one(netlink_memory(mib))
        }
        "socket-memory" => {
            let mib = arg(0)?
                .parse()
                .map_err(|_| "socket-memory: the room's memory in MiB")?;
            one(socket_memory(mib))
        }
        "file-table" => {
            let mib = arg(0)?
                .parse()
                .map_err(|_| "file-table: the room's memory in MiB")?;
            one(file_table(mib, rest.get(1) == Some(&"hold")))
        }
        "pid-space" => one(pid_space(rest.first() == Some(&"hold"))),
        "init-memory" => one(init_memory()),
        "core-dump" => one(core_dump(cx)),
        "proc-self-write" => one(proc_self_write(cx)),
        "socket-families" => one(socket_families(cx)),
        "inet-protocols" => one(inet_protocols(cx)),
        "host-sync" => one(host_sync(cx)),
        "proc-interrupts" => one(proc_interrupts(cx)),
        "host-inodes" => one(host_inodes(cx)),
        "tty-inject" => one(tty_inject(cx)),
        "umbilical" => one(umbilical()),
        "ucount-hog" => {
            // Not an attempt: the harness's load for the per-user counts test
            // (tests/escape/tests/ns_ucounts.rs). Prints `UCOUNTS ...`, then holds what it
            // took until it is killed when asked to.
            let line = ucount_hog();
            let _ = std::io::stdout().write_all(format!("{line}\n").as_bytes());
            if rest.first() == Some(&"hold") {
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            Ok(Vec::new())
        }
        "chroot-escape" => one(chroot_escape(arg(0)?)),
        "pivot-root" => one(pivot_root()),
        "device" => one(device(arg(0)?)),
        "module" => one(module(cx)),
        "kexec" => one(kexec(cx)),
        "bpf" => one(bpf(cx)),
        "perf" => one(perf(cx)),
        "userfaultfd" => one(userfaultfd(cx)),
        "keyctl" => one(keyctl(cx)),
        "open-by-handle" => one(open_by_handle(cx)),
        "proc-sys" => one(writable("proc-sys", &PROC_SYS)),
        "sys-write" => one(writable("sys-write", &SYS)),
        "sysrq" => one(writable("sysrq", &["/proc/sysrq-trigger"])),
        "host-kernel-log" => one(kernel_log(arg(0)?)),
        "unix-socket" => {
            let paths: Vec<String> = rest.iter().skip(1).map(|s| s.to_string()).collect();
            one(unix_sockets(arg(0)?, &paths))
        }
        "abstract-socket" => one(abstract_socket(arg(0)?)),
        "host-loopback" => {
            let port = arg(0)?.parse().map_err(|_| "host-loopback: bad port")?;
            one(host_loopback(port, arg(1)?))
        }
        "host-network" => {
            let port = arg(0)?.parse().map_err(|_| "host-network: bad port")?;
            let hosts = rest
                .get(2..)
                .unwrap_or_default()
                .iter()
                .map(|h| {
                    h.parse()
                        .map_err(|_| format!("{h:?} is not an IPv4 address"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            one(host_network(port, arg(1)?, &hosts))
        }
        _ => Err(format!("unknown attempt {attempt:?} ({USAGE})")),
    }
}

/// The probe's usage line.
pub const USAGE: &str = "anchor-escape-probe [--own-kernel] ATTEMPT [ARG...]; see escape.sh";

#[cfg(test)]
mod tests {
    use super::*;

    /// The pid of the neighbour child, from the line `neighbour` returns.
    fn neighbour_pid(line: &str) -> i32 {
        line.rsplit("(pid ")
            .next()
            .unwrap()
            .trim_end_matches(')')
            .parse()
            .unwrap()
    }

    /// Ends and reaps the neighbour child a test started.
    fn end_neighbour(pid: i32) {
        // SAFETY: ends the neighbour child this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // SAFETY: reaps it.
        unsafe { libc::waitpid(pid, core::ptr::null_mut(), 0) };
    }

    #[test]
    fn verdicts_read_as_the_suite_prints_them() {
        assert_eq!(blocked("a", "b").to_string(), "BLOCKED a: b");
        assert_eq!(escaped("a", "b").to_string(), "ESCAPED a: b");
    }

    #[test]
    fn a_microvm_reaching_its_own_kernel_is_not_an_escape_but_a_namespace_room_is() {
        let vm = Context { own_kernel: true };
        let ns = Context { own_kernel: false };
        assert!(!vm.kernel_facility("k", true, "ok").escaped);
        assert!(vm
            .kernel_facility("k", true, "ok")
            .detail
            .contains("own kernel"));
        assert!(ns.kernel_facility("k", true, "ok").escaped);
        assert!(!ns.kernel_facility("k", false, "EPERM").escaped);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        assert!(run(&[]).is_err());
        assert!(run(&["nosuch".into()]).is_err());
        assert!(run(&["host-pids".into(), "x".into()]).is_err());
        assert!(run(&["host-file".into()]).is_err());
        let bad = ["host-network", "1", "t", "10.0.2"].map(String::from);
        assert!(run(&bad)
            .unwrap_err()
            .contains("\"10.0.2\" is not an IPv4 address"));
    }

    /// Run as root on the host (no room around it), the probe must see what a room must
    /// not: a probe that always said BLOCKED would be worthless.
    #[test]
    fn outside_a_room_the_probe_sees_the_host() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test needs root");
        }
        assert!(
            capabilities().escaped,
            "root on the host holds capabilities"
        );
        assert!(host_file("/proc/self/status").escaped);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"token-42\n").unwrap();
        });
        assert!(host_loopback(port, "token-42").escaped);
        server.join().unwrap();
        // The host's service on all its addresses, TCP and UDP: found at its own address
        // (here the loopback one: the harness has no other it can count on).
        let tcp = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let udp = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
        let local = std::net::Ipv4Addr::LOCALHOST;
        let server = std::thread::spawn(move || {
            let (mut s, _) = tcp.accept().unwrap();
            s.write_all(b"token-43\n").unwrap();
        });
        let v = host_network(port, "token-43", &[local]);
        assert!(v.escaped && v.detail.contains("TCP service"), "{v}");
        server.join().unwrap();
        // (It answers every datagram: the first tries' are queued too.)
        udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let server = std::thread::spawn(move || {
            let mut b = [0u8; 64];
            while let Ok((_, from)) = udp.recv_from(&mut b) {
                let _ = udp.send_to(b"token-43\n", from);
            }
        });
        // No TCP listener now: only UDP answers.
        let v = host_network(port, "token-43", &[local]);
        assert!(v.escaped && v.detail.contains("UDP service"), "{v}");
        server.join().unwrap();
        assert!(writable("proc-sys", &PROC_SYS).escaped);
        // The new attempts' calls reach the kernel from the host (each harmless: a handle
        // read, N_TTY set on a pty of its own, a child's user namespace, namespace
        // descriptors closed unused). (rlimit-raise is not asserted: this harness's root
        // may lack CAP_SYS_RESOURCE.)
        let host = Context { own_kernel: false };
        assert!(ns_owner(host).escaped, "{}", ns_owner(host));
        assert!(name_to_handle(host).escaped, "{}", name_to_handle(host));
        assert!(tty_ldisc(host).escaped, "{}", tty_ldisc(host));
        #[cfg(target_arch = "x86_64")]
        assert!(compat_syscalls(host).escaped, "{}", compat_syscalls(host));
        // Two "rooms" that share inodes (here: one host): the neighbour's reads and lock
        // are seen.
        let dir = std::env::temp_dir().join(format!("escape-share-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (read, lock) = (dir.join("read"), dir.join("lock"));
        std::fs::write(&read, b"x").unwrap();
        std::fs::write(&lock, b"x").unwrap();
        let (read, lock) = (read.to_str().unwrap(), lock.to_str().unwrap());
        let quiet = Duration::from_millis(300);
        let v = image_watch(host, read, quiet);
        assert!(!v.escaped, "nobody reads it yet: {v}");
        let line = neighbour(read, lock).unwrap();
        let pid = neighbour_pid(&line);
        let v = image_watch(host, read, quiet);
        assert!(v.escaped && v.detail.contains("bytes of events in"), "{v}");
        let v = image_lock(lock);
        assert!(v.escaped && v.detail.contains("another room's lock"), "{v}");
        // The kernel's anonymous inode: the neighbour's exclusive flock on its eventfd is
        // seen through any of ours (unless a hosted bay0 on this machine pinned it first).
        if line.contains("flock LOCK_EX: succeeded") {
            let v = anon_lock(host);
            assert!(
                v.escaped && v.detail.contains("exclusive lock is seen"),
                "{v}"
            );
        }
        end_neighbour(pid);
        assert!(!image_lock(lock).escaped);
        // Pinned as bay0 pins it, nothing is left to take or see.
        let pin = anchor_sys::pin_anon_inode_locks().unwrap();
        let v = anon_lock(host);
        assert!(
            !v.escaped && v.detail.contains("the host's whole-file read lock"),
            "{v}"
        );
        let line = neighbour(read, lock).unwrap();
        assert!(line.contains("anonymous inode: flock LOCK_EX: Resource temporarily unavailable, write lock: Resource temporarily unavailable, read lock at the mark: succeeded"), "{line}");
        // The neighbour's read lock at its mark, seen in the host's /proc/locks: what a
        // room whose /proc/locks is not masked sees too.
        let v = proc_locks(host);
        assert!(
            v.escaped && v.detail.contains("another room's OFD lock"),
            "{v}"
        );
        let pid = neighbour_pid(&line);
        end_neighbour(pid);
        drop(pin);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(device("mem").escaped || !Path::new("/dev/mem").exists());
        // A process in a mount namespace of its own, with a mount the host has not: its
        // /proc/PID/mountinfo shows it. (In its own network namespace it would show only
        // a loopback, which is no interface the host lacks.)
        let mnt = std::env::temp_dir().join(format!("escape-ns-{}", std::process::id()));
        std::fs::create_dir_all(&mnt).unwrap();
        let script = format!(
            "mount -t tmpfs none {} && echo up && exec sleep 30",
            mnt.display()
        );
        let mut child = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut up = [0u8; 3];
        child.stdout.take().unwrap().read_exact(&mut up).unwrap();
        let v = proc_namespaces(host);
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir(&mnt).unwrap();
        assert!(
            v.escaped && v.detail.contains(&mnt.display().to_string()),
            "{v}"
        );
    }

    #[test]
    fn interfaces_and_mount_points_are_read_as_proc_shows_them() {
        let dev = "Inter-|   Receive\n face |bytes\n    lo:  1 2 3\n  eth0: 4 5 6\n";
        assert_eq!(interfaces(dev), ["lo", "eth0"]);
        let info =
            "22 1 0:21 / /proc rw - proc proc rw\n48 92 7:0 / / ro - squashfs /dev/loop0 ro\n";
        assert_eq!(mount_points(info), ["/proc", "/"]);
        assert!(interfaces("").is_empty() && mount_points("").is_empty());
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.2.15\n        /32 host LOCAL\n     |-- 10.0.2.255\n        /32 link BROADCAST\nLocal:\n     |-- 10.0.2.15\n        /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(local_addresses(fib), ["10.0.2.15", "127.0.0.1"]);
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n0000: 00000002 00000000 00010000 0001 01 123 /run/anchor/control.sock\n0000: 00000003 00000000 00000000 0001 03 124\n";
        assert_eq!(unix_paths(unix), ["/run/anchor/control.sock"]);
    }
}
