// SPDX-License-Identifier: GPL-3.0-or-later
//! The benchmarks' peer: bubblewrap (`bwrap`, Debian's) with a namespace room's
//! namespaces on the room's image.

use std::process::Command;

/// The image mounted read-only for bwrap (which cannot mount a SquashFS itself); the
/// mount is made once, outside the timing. Of a copy of the room's image: util-linux's
/// `mount -o loop` and the jail both reuse a read-only loop device already backed by the
/// same file, so a mount of the room's own image file held through the rounds would make
/// every other mount of it (ours and the peers') a shared one.
pub struct Mounted(pub std::path::PathBuf);

impl Mounted {
    pub fn new(image: &std::path::Path, dir: &std::path::Path) -> Mounted {
        let mnt = dir.join("bwrap-root");
        mount_image(image, &mnt);
        Mounted(mnt)
    }
}

/// `mount -t squashfs -o ro,loop IMAGE MNT` (util-linux sets up the loop device), `mnt`
/// made first.
pub fn mount_image(image: &std::path::Path, mnt: &std::path::Path) {
    std::fs::create_dir_all(mnt).unwrap();
    let out = Command::new("mount")
        .args(["-t", "squashfs", "-o", "ro,loop"])
        .arg(image)
        .arg(mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Timed runs of each contender (after two untimed ones); `BENCH_NS_RUNS` overrides.
pub fn runs() -> usize {
    std::env::var("BENCH_NS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(20)
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// bwrap with the namespace room's namespaces (user as uid 0, pid, mount, net, ipc,
/// uts, cgroup) on the same image, tmpfs for the same paths, its own /proc and /dev.
pub fn bwrap(root: &std::path::Path, cmd: &str) -> Command {
    let mut c = bwrap_sandbox(root);
    c.args(["/bin/sh", "-c", cmd]);
    c
}

/// [`bwrap`] without the program: the caller appends it.
pub fn bwrap_sandbox(root: &std::path::Path) -> Command {
    let mut c = Command::new("bwrap");
    c.args([
        "--unshare-user",
        "--uid",
        "0",
        "--gid",
        "0",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
        "--die-with-parent",
        "--ro-bind",
    ])
    .arg(root)
    .arg("/");
    for t in ["/tmp", "/run", "/var", "/home", "/root"] {
        c.args(["--tmpfs", t]);
    }
    c.args(["--proc", "/proc", "--dev", "/dev", "--hostname", "bw"]);
    c
}

/// The median of `v` (the upper one of an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}
