// SPDX-License-Identifier: GPL-3.0-or-later
//! The product path, end to end: the anchor host boots (our host kernel + the product
//! initramfs, bay0 as /init) under QEMU TCG with `-cpu max` (AMD SVM + NPT, so
//! /dev/kvm exists inside), bay0 opens the room named by `bay0.room=` from its policy,
//! anchor-vmm boots the room kernel (PVH) on the room's read-only SquashFS image as a
//! nested KVM guest, and a person types into the room's shell on the console.
//!
//! Needs: qemu-system-x86_64, $ANCHOR_OUT/host-bzImage and the product
//! $ANCHOR_OUT/initramfs.cpio.gz (with anchor-vmm, the room kernel, images, policies).
//! Prints figures; asserts behaviour only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{Machine, Options};
use std::time::{Duration, Instant};

/// Hang detection only (TCG + nesting on a busy 2-core machine).
const BOOT: Duration = Duration::from_secs(180);
const ROOM: Duration = Duration::from_secs(240);
const SHELL: Duration = Duration::from_secs(60);

/// Types one shell command and waits for `expect` after it.
fn run(m: &mut Machine, cmd: &str, expect: &str) -> String {
    let from = m.serial().len();
    m.type_text(&format!("{cmd}\r")).unwrap();
    m.wait_for_from(from, expect, SHELL)
        .unwrap_or_else(|e| panic!("`{cmd}` did not print {expect:?}: {e}"))
        .line
}

#[test]
fn bay0_opens_a_room_from_its_policy_and_a_person_can_type_into_it() {
    let t0 = Instant::now();
    let opts = Options::from_env("room-work")
        .unwrap()
        .append("bay0.room=work");
    let mut m = Machine::start(opts).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    let kvm = m.wait_for_line("bay0: /dev/kvm ", Duration::ZERO).unwrap();
    assert!(
        kvm.line.ends_with("present"),
        "the anchor host has no /dev/kvm (QEMU must offer SVM: -cpu max): {}",
        kvm.line
    );
    let opened = m.wait_for_line("bay0: room work opened", BOOT).unwrap();
    let t_open = t0.elapsed();
    let ready = m
        .wait_for_line("anchor-agent: room work ready", ROOM)
        .unwrap();
    let t_ready = t0.elapsed();
    eprintln!(
        "figure: boot -> room opened {:.1} s; room opened -> agent ready {:.1} s (nested, TCG)",
        t_open.as_secs_f64(),
        (t_ready - t_open).as_secs_f64()
    );
    assert!(ready.end > opened.end);
    // The shell prompt comes after the banner.
    m.wait_for_from(ready.end, "work:~# ", SHELL).unwrap();

    // The console is the room's: a command typed here runs in the room.
    run(&mut m, "echo hello-$((6*7))", "hello-42");
    // The room's command line comes from bay0's policy mapping, with our devices.
    let cmdline = run(&mut m, "cat /proc/cmdline", "anchor.room=work");
    assert!(cmdline.contains("root=/dev/vda ro"), "{cmdline}");
    // The image is read-only; what is writable is tmpfs (amnesia).
    run(
        &mut m,
        "touch /etc/probe 2>&1; echo rc=$?",
        "Read-only file system",
    );
    run(
        &mut m,
        "echo kept > /tmp/probe && cat /tmp/probe && grep -c '^tmpfs /tmp ' /proc/mounts",
        "kept",
    );
    // A guest cannot see more CPUs or memory than the policy gave it.
    run(&mut m, "grep -c ^processor /proc/cpuinfo", "2");

    // Leaving the shell ends the room; bay0 logs it by name and stays up.
    let from = m.serial().len();
    m.type_text("exit\r").unwrap();
    let ended = m
        .wait_for_line_from(from, "bay0: room work (pid ", SHELL)
        .unwrap();
    assert!(
        ended
            .line
            .contains("exited with status 0: the room powered off"),
        "{}",
        ended.line
    );
    assert!(
        m.wait_exit(Duration::from_secs(2)).is_err(),
        "bay0 went down with the room"
    );

    // And the machine still powers off cleanly afterwards.
    m.system_powerdown().unwrap();
    m.wait_for_from(ended.end, "reboot: Power down", BOOT)
        .unwrap();
    eprintln!("figure: whole run {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn a_room_without_a_policy_is_refused_and_bay0_stays_up() {
    let opts = Options::from_env("room-missing")
        .unwrap()
        .append("bay0.room=nosuchroom");
    let mut m = Machine::start(opts).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    let refused = m
        .wait_for_line("bay0: error: room nosuchroom:", BOOT)
        .unwrap();
    assert!(refused.line.contains("policy"), "{}", refused.line);
    std::thread::sleep(Duration::from_secs(2));
    assert!(m.wait_exit(Duration::ZERO).is_err(), "bay0 exited");
    m.system_powerdown().unwrap();
    m.wait_for("reboot: Power down", BOOT).unwrap();
}
