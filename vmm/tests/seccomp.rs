// SPDX-License-Identifier: GPL-3.0-or-later
//! Seccomp: every VMM thread runs under a filter (`Seccomp: 2`) while the
//! guest runs, and a forbidden syscall from the VMM dies with SIGSYS.
//!
//! The SIGSYS trigger (`--seccomp-test-trigger`) exists only in builds with the
//! `seccomp-test-trigger` cargo feature. When this test binary was built
//! without it, the test builds such a binary itself (cargo, separate target
//! dir under CARGO_TARGET_TMPDIR) and checks the default binary rejects the flag.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{guest_elf, require_kvm, run_vmm_with, vmm_bin, Script};

fn tasks_seccomp(pid: u32) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let status = std::fs::read_to_string(t.join("status")).unwrap_or_default();
        let get = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .map(|l| l[k.len()..].trim().to_owned())
                .unwrap_or_default()
        };
        v.push((get("Name:"), get("Seccomp:"), get("NoNewPrivs:")));
    }
    v
}

fn check_all_threads_filtered(vcpus: &str) {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    // Print READY, then keep the vcpu busy inside the guest (no exits).
    std::fs::write(
        &script,
        Script::new()
            .print("READY")
            .repeat(u64::MAX, 1)
            .write(0x30_0000, 8, 1)
            .end()
            .bytes(),
    )
    .unwrap();
    let serial = dir.path().join("serial");
    let mut child = Command::new(vmm_bin())
        .arg("--kernel")
        .arg(guest_elf())
        .arg("--initrd")
        .arg(&script)
        .args(["--mem-mib", "32", "--vcpus", vcpus])
        .arg("--serial")
        .arg(format!("file:{}", serial.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .contains("READY")
    {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("guest never printed READY");
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("VMM exited early: {st}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let tasks = tasks_seccomp(child.id());
    let _ = child.kill();
    let _ = child.wait();
    // The main thread, one thread per vcpu, plus KVM's own kernel worker
    // (kvm-nx-lpage-recovery), which lives in our thread group too.
    let n_vcpus = vcpus.parse::<usize>().unwrap();
    let ours = tasks.iter().filter(|t| !t.0.starts_with("kvm-")).count();
    assert_eq!(ours, 1 + n_vcpus, "threads: {tasks:?}");
    for i in 0..n_vcpus {
        assert!(tasks.iter().any(|t| t.0 == format!("vcpu{i}")), "{tasks:?}");
    }
    for (name, mode, nnp) in &tasks {
        assert_eq!(
            mode, "2",
            "thread {name} is not in seccomp filter mode: {tasks:?}"
        );
        assert_eq!(nnp, "1", "thread {name} lacks no_new_privs");
    }
}

#[test]
fn every_thread_shows_seccomp_2_while_the_guest_runs() {
    check_all_threads_filtered("1");
}

#[test]
fn every_vcpu_thread_is_filtered_with_two_vcpus() {
    check_all_threads_filtered("2");
}

/// Builds anchor-vmm with or without the `seccomp-test-trigger` feature into
/// its own target dir under CARGO_TARGET_TMPDIR; returns the binary.
fn build_vmm(with_trigger: bool) -> PathBuf {
    let name = if with_trigger {
        "seccomp-trigger-build"
    } else {
        "seccomp-default-build"
    };
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let cargo = std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(str::to_owned))
        .unwrap_or_else(|| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "anchor-vmm", "--bin", "anchor-vmm"]);
    if with_trigger {
        cmd.args(["--features", "seccomp-test-trigger"]);
    }
    let st = cmd
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo to build anchor-vmm");
    assert!(
        st.success(),
        "building anchor-vmm (seccomp-test-trigger: {with_trigger}) failed"
    );
    target.join("debug/anchor-vmm")
}

/// A binary with the trigger: this test's own when it was built with the
/// feature, else one built here.
fn trigger_binary() -> PathBuf {
    if cfg!(feature = "seccomp-test-trigger") {
        return vmm_bin();
    }
    build_vmm(true)
}

/// A binary without the trigger: this test's own when it was built without
/// the feature, else one built here (so the property is checked in every build).
fn default_binary() -> PathBuf {
    if cfg!(feature = "seccomp-test-trigger") {
        return build_vmm(false);
    }
    vmm_bin()
}

/// Runs `bin` on the interpreter guest with script `s` (in a temporary directory) and 32
/// MiB, plus `extra` arguments.
fn run_guest(bin: &Path, s: &Script, extra: &[&str]) -> common::Outcome {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    std::fs::write(&script, s.bytes()).unwrap();
    let mut args = vec![
        "--kernel",
        guest_elf().to_str().unwrap(),
        "--initrd",
        script.to_str().unwrap(),
        "--mem-mib",
        "32",
    ];
    args.extend_from_slice(extra);
    run_vmm_with(bin, &args, Duration::from_secs(20))
}

#[test]
fn forbidden_syscall_from_the_vmm_dies_with_sigsys() {
    require_kvm();
    let o = run_guest(
        &trigger_binary(),
        Script::new().print("UP").end(),
        &["--seccomp-test-trigger"],
    );
    assert!(!o.timed_out, "{o:?}");
    assert_eq!(o.signal, Some(libc::SIGSYS), "{o:?}");
}

#[test]
fn default_build_has_no_trigger_flag() {
    // Regression (review): this test used to return early (and pass) when the
    // test binary was built with the feature; now it checks a default build
    // in every configuration.
    let o = run_guest(
        &default_binary(),
        Script::new().end(),
        &["--seccomp-test-trigger"],
    );
    assert_eq!(o.exit_code, Some(2), "{o:#?}");
    assert!(o.stderr.contains("--seccomp-test-trigger"), "{o:#?}");
}

/// Runs the trigger build on the interpreter guest with script `s`, 32 MiB and a disk
/// holding `disk`, plus `extra` arguments; the run must end cleanly (exit 0, no signal).
fn run_trigger_build(s: &Script, disk: &[u8], extra: &[&str]) -> common::Outcome {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, disk).unwrap();
    let mut args = vec!["--disk", img.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run_guest(&trigger_binary(), s, &args);
    assert_eq!(o.signal, None, "{o:#?}");
    assert_eq!(o.exit_code, Some(0), "{o:#?}");
    o
}

#[test]
fn rng_retry_path_runs_under_the_vmm_filter() {
    // A host whose entropy pool is not initialised yet (the first room after a host boot)
    // makes virtio-rng arm its retry timer (timerfd_settime) on the VMM thread, under the
    // seccomp filter. The test build makes the pool look unready for 1 s: the request is
    // served after the retries, the VMM is not killed with SIGSYS, and a disk request made
    // meanwhile is served at once (the VMM thread never waits for entropy).
    use anchor_vmm::devices::virtio::mmio::reg;
    use common::virtio::{r, F_WRITE, S_OK};
    let (blk, rng) = (common::virtio_base(0), common::virtio_base(1));
    let (bq, rq) = (0x20_0000u64, 0x30_0000u64);
    let mut s = Script::new();
    s.init(rng)
        .queue(rng, 0, 16, rq, rq + 0x1000, rq + 0x2000)
        .reg(rng, reg::STATUS, S_OK)
        .desc(rq, 0, 0x50_0000, 16, F_WRITE, 0)
        .avail(rq + 0x1000, 0, 0, 1)
        .notify(rng, 0)
        // A one-sector read while the rng waits.
        .init(blk)
        .queue(blk, 0, 16, bq, bq + 0x1000, bq + 0x2000)
        .reg(blk, reg::STATUS, S_OK)
        .write(0x21_0000, 8, 0)
        .write(0x21_0008, 8, 0)
        .desc(bq, 0, 0x21_0000, 16, 1, 1)
        .desc(bq, 1, 0x22_0000, 512, 1 | F_WRITE, 2)
        .desc(bq, 2, 0x23_0000, 1, F_WRITE, 0)
        .avail(bq + 0x1000, 0, 0, 1)
        .notify(blk, 0)
        .poll(bq + 0x2002, 2, 1)
        .print("BLK")
        .read(rq + 0x2002, 2)
        .read(0x22_0000, 8)
        // Each poll gives up after ~1M loads (a few ms); repeated, it waits long enough.
        .repeat(3000, 1)
        .poll(rq + 0x2002, 2, 1)
        .print("RNG")
        .read(rq + 0x2008, 4)
        .end();
    let o = run_trigger_build(&s, &[0x61; 512], &["--test-entropy-unready-ms", "1000"]);
    let lines: Vec<&str> = o.serial.lines().collect();
    let blk_at = lines.iter().position(|l| *l == "BLK").unwrap();
    assert_eq!(
        lines[blk_at + 1..blk_at + 3],
        [r(0), r(0x6161_6161_6161_6161)],
        "the disk was served while the rng still waited: {o:#?}"
    );
    let rng_at = lines.iter().position(|l| *l == "RNG").unwrap();
    assert_eq!(lines[rng_at - 1], "P ok", "the rng was served: {o:#?}");
    assert_eq!(lines[rng_at + 1], r(16), "{o:#?}");
}

#[test]
fn register_reads_that_exit_are_answered_from_the_register_page_under_the_vcpu_filter() {
    // The path a KVM without KVM_CAP_READONLY_MEM (or aarch64) takes: the test build leaves
    // the register pages out of the guest, so every register read exits to a vcpu thread,
    // under its seccomp filter, and is answered from the same page the guest would have
    // read: the same values as without the exit (hostile_virtio's register-page case).
    use anchor_vmm::devices::virtio::mmio::{reg, status, MAGIC};
    use common::virtio::{after, r};
    let b = common::virtio_base(0);
    let mut s = Script::new();
    s.print("ID")
        .read(b + reg::MAGIC, 4)
        .read(b + reg::DEVICE_ID, 4)
        .read(b + reg::MAGIC, 2)
        .reg(b, reg::DEVICE_FEATURES_SEL, 1)
        .read(b + reg::DEVICE_FEATURES, 4)
        .reg(b, reg::STATUS, status::ACKNOWLEDGE.into())
        .read(b + reg::STATUS, 4)
        .read(b + reg::CONFIG, 4)
        .end();
    let o = run_trigger_build(
        &s,
        &[0; 512],
        &["--exit-stats", "--test-register-reads-exit"],
    );
    assert_eq!(
        after(&o, "ID")[..6],
        [
            r(u64::from(MAGIC)),
            r(2),      // block
            r(0x6976), // the magic's low 2 bytes
            r(1),      // VERSION_1
            r(1),      // ACKNOWLEDGE
            r(1),      // capacity: one sector
        ],
        "{o:#?}"
    );
    assert!(
        o.stderr.contains("register_read_exits=6"),
        "every read exited: {o:#?}"
    );
}
