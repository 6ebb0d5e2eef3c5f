// SPDX-License-Identifier: GPL-3.0-or-later
//! The jail holds: anchor-jail-probe, playing a compromised VMM, is started through
//! anchor-jail with the options bay0 uses (its own uid, cgroup limits, no capabilities, a
//! minimal root) and tries to reach another room's socket, a host socket (path and
//! abstract), the host's loopback, /proc of other processes, the room image for writing,
//! ptrace and signals to an outside process, mounts, mknod, chroot, uid 0, and memory past
//! its cgroup. Every attempt must be BLOCKED.
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

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn remove_cgroups(room: &str) {
    for c in ["", "memory/", "pids/", "cpu/"] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{c}anchor/{room}"));
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
    remove_cgroups(&room);
    let limit: u64 = 64 << 20;
    let probe = env!("CARGO_BIN_EXE_anchor-jail-probe");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchor-jail"));
    cmd.args(["--name", &room, "--uid", "64100", "--gid", "64100"])
        .arg("--run-dir")
        .arg(&mine)
        .args([
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
    let out = cmd.output().unwrap();
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
