// SPDX-License-Identifier: GPL-3.0-or-later
//! The jail holds: anchor-jail-probe, playing a compromised VMM, is started through
//! anchor-jail with the options bay0 uses (its own uid, cgroup limits, no capabilities, a
//! minimal root) and tries to reach another room's socket, a host socket (path and
//! abstract), the host's loopback, /proc of other processes, the room image for writing,
//! ptrace and signals to an outside process, mounts, mknod, chroot, uid 0, memory past
//! its cgroup, and a descriptor the jail was started with. Every attempt must be BLOCKED.
//!
//! Needs root (cgroups, namespaces, mknod); fails with a clear message otherwise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

fn need_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap();
    assert_eq!(
        uid, "0",
        "this test needs root (cgroups, namespaces, device nodes)"
    );
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The jail for room `room` as `uid` (its gid too) with the run directory `run`, the
/// room's cgroups left by an earlier run removed first; the caller adds the rest.
fn jail_for(room: &str, uid: u32, run: &Path) -> Command {
    remove_cgroups(room);
    let id = uid.to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchor-jail"));
    cmd.args(["--name", room, "--uid", &id, "--gid", &id, "--run-dir"])
        .arg(run);
    cmd
}

/// The jail of an outbound room `room` (uid `uid`, run directory `run`) whose program,
/// standing in for the VMM, is busybox `sh -c script` (the jail requires a --cmdline: it
/// appends the room's address there), its standard streams piped. Needs passt.
fn outbound_stand_in(room: &str, uid: u32, run: &Path, script: &str) -> Command {
    assert!(
        anchor_jail::net::PASST
            .to_str()
            .is_ok_and(|p| Path::new(p).is_file()),
        "this test needs /usr/bin/passt (apt-get install passt; scripts/setup.sh)"
    );
    let mut cmd = jail_for(room, uid, run);
    cmd.args([
        "--memory",
        "134217728",
        "--pids",
        "32",
        "--cpu-weight",
        "50",
    ])
    .args(["--ro", "/bin/busybox:/bin/busybox", "--net", "outbound"])
    .args(["--", "/bin/busybox", "sh", "-c", script, "--cmdline", "q"])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    cmd
}

/// A scratch directory for a jail run (`anchor-jail-TAG-PID` under the temp dir) with its
/// run directory owned by `uid`; busybox must be there for the jail's program.
fn scratch_run(tag: &str, uid: u32) -> (Scratch, PathBuf) {
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox missing (apt-get install busybox-static)"
    );
    let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
    let dir = Scratch(tmp.join(format!("anchor-jail-{tag}-{}", std::process::id())));
    let run = dir.0.join("run");
    std::fs::create_dir_all(&run).unwrap();
    chown(&run, uid);
    (dir, run)
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn remove_cgroups(room: &str) {
    for c in ["", "memory/", "pids/", "cpu/"] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{c}anchor/{room}"));
    }
}

/// Makes `cmd` start holding `file` as its descriptor 9 (inheritable), as a careless
/// starter of the jail would.
fn started_holding(cmd: &mut Command, file: &std::fs::File) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    let hook = move || {
        // SAFETY: dup2 only changes this process's descriptor table; the new descriptor
        // 9 is inheritable.
        if unsafe { libc::dup2(fd, 9) } == 9 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the hook runs between fork and exec and only calls dup2 (async-signal-safe).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, hook);
    }
}

#[test]
fn a_jailed_program_cannot_reach_anything_outside_its_room() {
    need_root();
    let pid = std::process::id();
    let dir = Scratch(std::env::temp_dir().join(format!("anchor-jail-test-{pid}")));
    let rooms = dir.0.join("rooms");
    let (mine, other) = (rooms.join("probe"), rooms.join("other"));
    for (d, uid) in [(&mine, 64_100), (&other, 64_101)] {
        std::fs::create_dir_all(d).unwrap();
        chown(d, uid);
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let _other_room = UnixListener::bind(other.join("vsock")).unwrap();
    let host_sock = dir.0.join("control.sock");
    let _host = UnixListener::bind(&host_sock).unwrap();
    let abstract_name = format!("anchor-jail-test-{pid}");
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap();
        UnixListener::bind_addr(&addr).unwrap()
    };
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let image = dir.0.join("image.squashfs");
    std::fs::write(&image, b"pristine").unwrap();

    let room = format!("jt{}", pid % 100_000);
    let limit: u64 = 64 << 20;
    let probe = env!("CARGO_BIN_EXE_anchor-jail-probe");
    let mut cmd = jail_for(&room, 64_100, &mine);
    cmd.args([
        "--memory",
        &limit.to_string(),
        "--pids",
        "16",
        "--cpu-weight",
        "50",
    ])
    .args(["--nofile", "64", "--nproc", "16"]);
    // The probe is a dynamically linked test binary: give it the host's libraries
    // (read-only) beside what bay0's jail would hold.
    for lib in ["/lib", "/lib64", "/usr/lib"] {
        if Path::new(lib).exists() {
            cmd.arg("--ro").arg(format!("{lib}:{lib}"));
        }
    }
    cmd.arg("--ro")
        .arg(format!("{probe}:/bin/probe"))
        .arg("--ro")
        .arg(format!("{}:/room/image", image.display()))
        .args(["--dev", "null", "--dev", "urandom", "--", "/bin/probe"])
        .arg("--other-socket")
        .arg(other.join("vsock"))
        .arg("--host-socket")
        .arg(&host_sock)
        .args(["--abstract", &abstract_name, "--tcp", &port.to_string()])
        .args(["--image", "/room/image", "--outside-pid", &pid.to_string()])
        .args(["--memory-bytes", &(2 * limit).to_string()]);
    // Whoever starts the jail may hold a descriptor it did not mean to pass on (here a
    // directory of the host, from which a program outside the jail's root could open
    // anything its uid may): the jailed program must not start with it.
    let host_dir = std::fs::File::open(&dir.0).unwrap();
    started_holding(&mut cmd, &host_dir);
    let out = cmd.output().unwrap();
    drop(host_dir);
    remove_cgroups(&room);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        out.status.success(),
        "jail or probe failed: {}\n{context}",
        out.status
    );
    assert!(
        stderr.contains("cgroup v"),
        "the jail names its cgroup version\n{context}"
    );
    assert!(!stdout.contains("ESCAPED"), "{context}");
    for name in [
        "inherited-fds",
        "other-room-socket",
        "host-socket",
        "host-abstract-socket",
        "host-loopback-tcp",
        "proc-of-others",
        "mount-proc",
        "mount-tmpfs",
        "mount-cgroup",
        "write-image",
        "write-root",
        "ptrace-outside",
        "signal-outside",
        "setuid-root",
        "mknod-mem",
        "chroot",
        "capabilities",
        "memory-over-cgroup",
        "done",
    ] {
        assert!(
            stdout.contains(&format!("BLOCKED {name}: ")),
            "{name} not reported as blocked\n{context}"
        );
    }
    assert_eq!(std::fs::read(&image).unwrap(), b"pristine");
    assert!(!dir.0.join("evil").exists());
}

#[test]
fn bad_command_lines_exit_2_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_anchor-jail"))
        .args(["--name", "web", "--uid", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("anchor-jail: usage: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let help = Command::new(env!("CARGO_BIN_EXE_anchor-jail"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--run-dir DIR"));
}

/// The value of the jail's trusted.anchor.guest-disk mark on `file`, if any.
fn guest_disk_mark(file: &Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap();
    let mut value = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and `value` is writable for its length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"trusted.anchor.guest-disk".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    usize::try_from(n).ok().map(|n| value[..n].to_vec())
}

/// `--rw`: the one regular file a room's VMM may write (its vault volume). Inside the
/// jail it can be written up to `--fsize` but not grown, not executed; the rest of the
/// root stays read-only; the host file is marked as a guest's disk. A symlink in its
/// place is refused before anything runs.
#[test]
fn a_rw_file_is_writable_within_fsize_and_nothing_more() {
    need_root();
    let pid = std::process::id();
    let (dir, run) = scratch_run("rw", 64_102);
    let volume = dir.0.join("volume.img");
    std::fs::File::create(&volume)
        .unwrap()
        .set_len(8192)
        .unwrap();
    chown(&volume, 64_102);
    // Executable by its mode on purpose: only the mount's noexec can stop it running.
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&volume, dir.0.join("link.img")).unwrap();
    assert_eq!(guest_disk_mark(&volume), None);
    let room = format!("jr{}", pid % 100_000);
    let jail = |host: &Path, script: &str| {
        let mut cmd = jail_for(&room, 64_102, &run);
        cmd.args(["--memory", "67108864", "--pids", "16", "--cpu-weight", "50"])
            .args([
                "--fsize",
                "8192",
                "--ro",
                "/bin/busybox:/bin/busybox",
                "--rw",
            ])
            .arg(format!("{}:/volume.img", host.display()))
            .args(["--", "/bin/busybox", "sh", "-c", script]);
        let out = cmd.output().unwrap();
        remove_cgroups(&room);
        out
    };
    let script = "B=/bin/busybox; printf written | $B dd of=/volume.img conv=notrunc 2>&1; \
                  echo write=$?; /volume.img; echo exec=$?; \
                  ( printf x | $B dd of=/volume.img bs=1 seek=8192 conv=notrunc ); \
                  echo grow=$?; $B touch /new; echo root=$?";
    let out = jail(&volume, script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let context = format!(
        "{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{}\n{context}", out.status);
    assert!(stdout.contains("write=0"), "{context}");
    // noexec: EACCES, the shell cannot run it (126; without noexec, ENOEXEC would make
    // it a shell script: 127); past --fsize: SIGXFSZ; / is read-only.
    assert!(stdout.contains("exec=126"), "{context}");
    assert!(
        !stdout.contains("grow=0") && stdout.contains("grow="),
        "{context}"
    );
    assert!(stdout.contains("root=1"), "{context}");
    assert!(
        context.contains("touch: /new: Read-only file system"),
        "{context}"
    );
    let data = std::fs::read(&volume).unwrap();
    assert_eq!((&data[..7], data.len()), (&b"written"[..], 8192));
    // Marked as a guest's disk: the host kernel never mounts it (tests/room.rs).
    assert_eq!(
        guest_disk_mark(&volume).as_deref(),
        Some(&b"1"[..]),
        "{context}"
    );

    let out = jail(&dir.0.join("link.img"), "echo ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a symlink"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran"));
}

/// Two binds at one jail path (or one inside another's): refused before anything is
/// built. The jail once made the second bind's file inside the first, opening the bound
/// host file for writing: a room's vault volume, bound `--rw`, was truncated to 0 bytes
/// on the host and the jail ran its program as if nothing had happened.
#[test]
fn a_bind_over_another_leaves_the_host_file_whole() {
    need_root();
    let pid = std::process::id();
    let (dir, run) = scratch_run("overlap", 64_103);
    let volume = dir.0.join("volume.img");
    std::fs::write(&volume, b"the room's data").unwrap();
    chown(&volume, 64_103);
    let room = format!("jo{}", pid % 100_000);
    let rw = format!("{}:/volume.img", volume.display());
    for second in [["--ro", "/bin/busybox:/volume.img"], ["--rw", rw.as_str()]] {
        let mut cmd = jail_for(&room, 64_103, &run);
        cmd.args(["--memory", "67108864", "--pids", "16", "--cpu-weight", "50"])
            .args(["--ro", "/bin/busybox:/bin/busybox", "--rw", &rw])
            .args(second)
            .args(["--", "/bin/busybox", "echo", "ran"]);
        let out = cmd.output().unwrap();
        remove_cgroups(&room);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            std::fs::read(&volume).unwrap(),
            b"the room's data",
            "{second:?}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(2), "{second:?}: {stderr}");
        assert!(stderr.contains("/volume.img is bound twice"), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("ran"));
    }
}

/// The passt of room `room` (pid), once the jail's child has become it (comm `passt`, or
/// `passt.avx2`, which passt execs on a CPU with AVX2; in the room's cgroup); `None` if
/// `jail` ended first.
fn passt_of(room: &str, jail: &mut std::process::Child) -> Option<u32> {
    // Hang detection only: the jail forks passt before it execs the room's program.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < end {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}"));
            let passt = read("comm").is_ok_and(|c| c.starts_with("passt"));
            if passt && read("cgroup").is_ok_and(|c| c.contains(&format!("/anchor/{room}\n"))) {
                return Some(pid);
            }
        }
        if jail.try_wait().unwrap().is_some() {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("room {room}: no passt after 30 s");
}

/// Regression (review, network): the jail hands the VMM nothing of whoever started it
/// (every other descriptor is closed at its exec, its rlimits are the room's), but it
/// forked passt before any of that, and passt (the room's uid, parsing the guest's
/// frames) kept both: a descriptor the jail was started with (here a directory of the
/// host; passt closes none it inherits), and the starter's rlimits, such as its open
/// files limit, which bounds how many UDP ports of the anchor host one room's passt can
/// hold (each source port the guest sends from is one socket bound on the host), and an
/// unlimited file size. passt now gets 0, 1, 2 and its socket, and limits of its own.
#[test]
fn passt_gets_nothing_of_whoever_started_the_jail() {
    need_root();
    let pid = std::process::id();
    let (dir, run) = scratch_run("net", 64_103);
    let room = format!("jn{}", pid % 100_000);
    // The room's program stands in for the VMM until its input ends.
    let mut cmd = outbound_stand_in(&room, 64_103, &run, "echo up; read x; exit 0");
    let host_dir = std::fs::File::open(&dir.0).unwrap();
    started_holding(&mut cmd, &host_dir);
    let mut jail = cmd.spawn().unwrap();
    drop(host_dir);
    let mut up = String::new();
    let mut out = std::io::BufReader::new(jail.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut up).unwrap();
    let passt = passt_of(&room, &mut jail);
    let seen = passt.map(|p| {
        let fds: Vec<(String, PathBuf)> = std::fs::read_dir(format!("/proc/{p}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let target = std::fs::read_link(e.path()).ok()?;
                Some((e.file_name().to_string_lossy().into_owned(), target))
            })
            .collect();
        let limits = std::fs::read_to_string(format!("/proc/{p}/limits")).unwrap();
        (fds, limits)
    });
    drop(jail.stdin.take());
    let status = jail.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut jail.stderr.take().unwrap(), &mut err).unwrap();
    remove_cgroups(&room);
    let context = format!("up: {up:?}, status {status}\nstderr:\n{err}");
    let (fds, limits) = seen.unwrap_or_else(|| panic!("passt never ran\n{context}"));
    assert!(status.success(), "{context}");
    let mut problems: Vec<String> = fds
        .iter()
        .filter(|(_, target)| target == &dir.0)
        .map(|(fd, _)| format!("descriptor {fd} is the starter's directory"))
        .collect();
    let (nofile, nproc) = (
        anchor_jail::net::PASST_NOFILE.to_string(),
        anchor_jail::privs::Rlimits::default().nproc.to_string(),
    );
    for (name, want) in [
        ("Max open files", nofile.as_str()),
        ("Max processes", nproc.as_str()),
        ("Max file size", "0"),
        ("Max locked memory", "0"),
    ] {
        // "NAME  SOFT  HARD  UNITS": both must be `want`.
        let line = limits.lines().find_map(|l| l.strip_prefix(name));
        let got: Vec<&str> = line
            .unwrap_or_default()
            .split_whitespace()
            .take(2)
            .collect();
        if got != [want, want] {
            problems.push(format!("{name} {got:?}, not {want}"));
        }
    }
    assert!(
        problems.is_empty(),
        "passt: {problems:?}\n{limits}\n{context}"
    );
}

/// The pids of the processes in room `room`'s cgroup now (zombies included: they are
/// gone only once reaped).
fn room_processes(room: &str) -> Vec<u32> {
    let mine = format!("/anchor/{room}\n");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(&mine))
        })
        .collect()
}

/// Regression (review, network, item "passt's die-with-parent"): a jail started by hand
/// (not PID 1: a test, a benchmark, an operator) makes the room's PID namespace itself and
/// runs the room in a child that was to die with it (PR_SET_PDEATHSIG). The kernel
/// forgets that signal at the uid change (setresuid, and a namespace room's new user
/// namespace), which came after it, and passt's too (set before its own uid change), so
/// a jail killed with SIGKILL left its room, the VMM's stand-in and its passt, running
/// for good: the room's network stayed up after the room was closed. The signal is now
/// set again after each uid change, and a parent that died before it was set is seen
/// through a pipe (the child's getppid() is 0 in its own PID namespace).
#[test]
fn a_room_and_its_passt_end_with_a_jail_killed_by_hand() {
    need_root();
    let pid = std::process::id();
    let (_dir, run) = scratch_run("netkill", 64_104);
    let room = format!("jk{}", pid % 100_000);
    // The room's program stands in for the VMM; it would wait for its input for good.
    let mut cmd = outbound_stand_in(&room, 64_104, &run, "echo up; read x");
    let mut jail = cmd.spawn().unwrap();
    let mut up = String::new();
    let mut out = std::io::BufReader::new(jail.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut up).unwrap();
    if up != "up\n" {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut jail.stderr.take().unwrap(), &mut err).unwrap();
        panic!("the room did not start: {up:?}\n{err}");
    }
    assert!(passt_of(&room, &mut jail).is_some(), "passt never ran");
    // The starter is killed; the room's input stays open (held here).
    // (Child::wait closes the child's stdin: taken out first, and held.)
    let input = jail.stdin.take();
    jail.kill().unwrap();
    jail.wait().unwrap();
    // Hang detection only: the kernel kills the room at once.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut left = room_processes(&room);
    while !left.is_empty() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = room_processes(&room);
    }
    let names: Vec<String> = left
        .iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default())
        .collect();
    for p in &left {
        // SAFETY: kill(2) of a process of this test's own room (cleanup).
        unsafe { libc::kill(i32::try_from(*p).unwrap(), libc::SIGKILL) };
    }
    drop(input);
    std::thread::sleep(std::time::Duration::from_millis(200));
    remove_cgroups(&room);
    assert!(
        left.is_empty(),
        "room {room} outlived its jail: {left:?} {names:?}"
    );
}
