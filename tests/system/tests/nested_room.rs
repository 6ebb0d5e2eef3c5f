// SPDX-License-Identifier: GPL-3.0-or-later
//! A room runs nested inside the anchor host: our host kernel boots under QEMU TCG
//! (`-cpu max`: AMD SVM + NPT), `/dev/kvm` exists inside, and anchor-vmm boots the
//! room kernel ($ANCHOR_OUT/guest-vmlinux) on the base image until the in-room agent
//! prints `anchor-agent: room base ready`, then the room resets itself (`reboot=k`)
//! and anchor-vmm exits 0.
//!
//! This is the VMM-level check, without bay0: the host runs a test-only initramfs
//! (tests/system/mk-nested-initramfs.sh: busybox /init that types the anchor-vmm
//! command), so a failure here points at the kernels, the image, the agent or
//! anchor-vmm rather than at bay0's room lifecycle (tests/room.rs covers the product
//! path bay0 -> anchor-vmm).
//!
//! Needs: qemu-system-x86_64, $ANCHOR_OUT/host-bzImage, $ANCHOR_OUT/bin/anchor-vmm,
//! $ANCHOR_OUT/guest-vmlinux, $ANCHOR_OUT/images/base.squashfs, busybox-static.
//! Prints figures (host boot, VMM start -> agent marker, total); asserts none.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{cache_dir, host_kernel, Machine, Options};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Generous bounds (TCG on a busy 2-core machine): hang detection only.
const HOST_BOOT: Duration = Duration::from_secs(180);
const ROOM_BOOT: Duration = Duration::from_secs(180);

fn nested_initramfs() -> PathBuf {
    let out = cache_dir().join("systest").join("initramfs-nested.cpio.gz");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mk-nested-initramfs.sh");
    let result = Command::new(&script)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        result.status.success(),
        "cannot build the nested-room initramfs (this test needs anchor-vmm, the room \
         kernel and the base image):\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

#[test]
fn nested_room_reaches_agent_marker() {
    let t0 = Instant::now();
    let initramfs = nested_initramfs();
    let kernel = host_kernel().unwrap();
    let opts = Options::new("nested-room", kernel, initramfs)
        .append("quiet nested.room=base")
        .memory_mib(1024);
    let mut m = Machine::start(opts).unwrap();

    let kvm = m
        .wait_for_line("nested-init: /dev/kvm ", HOST_BOOT)
        .unwrap();
    let t_host = t0.elapsed();
    assert!(
        kvm.line.ends_with("present"),
        "no /dev/kvm in the anchor host (needs KVM + KVM_AMD built in and -cpu max): {}",
        kvm.line
    );
    let start = m
        .wait_for_line_from(kvm.end, "nested-init: starting anchor-vmm", HOST_BOOT)
        .unwrap();
    let t_vmm = Instant::now();
    let ready = m
        .wait_for_line_from(start.end, "anchor-agent: room base ready", ROOM_BOOT)
        .unwrap();
    let t_marker = t_vmm.elapsed();
    m.wait_for_line_from(
        ready.end,
        "nested-init: anchor-vmm exited with status",
        ROOM_BOOT,
    )
    .unwrap();
    let t_total = t0.elapsed();
    eprintln!(
        "figure: anchor host boot to /dev/kvm check = {:.1} s (TCG)",
        t_host.as_secs_f64()
    );
    eprintln!(
        "figure: anchor-vmm start -> 'anchor-agent: room base ready' = {:.2} s (nested KVM under TCG)",
        t_marker.as_secs_f64()
    );
    eprintln!(
        "figure: nested-room test total = {:.1} s",
        t_total.as_secs_f64()
    );
    let status = m.wait_exit(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
    // Read the exit line again now that QEMU is gone: it may have been caught half-written.
    let log = m.serial();
    let exited = anchor_systest::find_line(
        &log,
        ready.end,
        "nested-init: anchor-vmm exited with status",
    )
    .unwrap();
    assert!(
        exited.line.contains("with status 0 "),
        "anchor-vmm did not exit 0 after the room reset itself: {}",
        exited.line
    );
    if let Some(marker) =
        anchor_systest::find_line(&log, start.end, "anchor-agent: room base ready")
    {
        eprintln!("figure: room kernel clock at the marker: {}", marker.line);
    }
    assert!(!log.contains("Kernel panic"), "a kernel panicked");
}

/// The vsock round trip host <-> guest through anchor-vmm's hybrid vsock: the anchor
/// host connects to the VMM's Unix socket, asks for guest port 5000 (`CONNECT 5000`),
/// gets `OK <host port>`, and the agent's echo service in the room sends its line back.
#[test]
fn nested_room_vsock_echo_round_trip() {
    let initramfs = nested_initramfs();
    let kernel = host_kernel().unwrap();
    let opts = Options::new("nested-vsock", kernel, initramfs)
        .append("quiet nested.room=base nested.vsock=5000")
        .memory_mib(1024);
    let mut m = Machine::start(opts).unwrap();
    let kvm = m
        .wait_for_line("nested-init: /dev/kvm ", HOST_BOOT)
        .unwrap();
    assert!(kvm.line.ends_with("present"), "{}", kvm.line);
    m.wait_for_line("anchor-agent: room base ready", ROOM_BOOT)
        .unwrap();
    let done = m
        .wait_for_line("nested-init: vsock test done", ROOM_BOOT)
        .unwrap();
    let log = m.serial();
    assert!(
        !log.contains("vsock round trip FAILED"),
        "the vsock round trip failed:\n{log}"
    );
    let reply = anchor_systest::find_line(&log, 0, "nested-init: vsock reply: ").unwrap();
    assert!(reply.end <= done.end);
    // `OK <port>` with the VMM's host-side port (>= 2^30), then our own line echoed.
    let text = reply.line;
    let ok = text
        .split("vsock reply: OK ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no OK <port> in {text:?}"));
    assert!(ok >= 1 << 30, "{text}");
    assert!(text.contains(" then hello-vsock-"), "{text}");
    let status = m.wait_exit(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
}
