// SPDX-License-Identifier: GPL-3.0-or-later
//! The anchor host boots with bay0 as /init, and the ACPI power button, Ctrl-Alt-Del and
//! the operator shell's poweroff and reboot shut it down cleanly. Needs QEMU, the host kernel ($ANCHOR_HOST_KERNEL) and the initramfs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{kernel_time, Machine, Options};
use std::time::Duration;

/// Generous: TCG on a busy 2-core machine.
const BOOT: Duration = Duration::from_secs(180);

#[test]
fn boot_reaches_ready_and_bay0_stays_up() {
    let mut m = Machine::start(Options::from_env("boot-ready").unwrap()).unwrap();
    let ready = m.wait_for_line("bay0: ready", BOOT).unwrap();
    let init = m
        .wait_for("Run /init as init process", Duration::ZERO)
        .unwrap();
    if let (Some(a), Some(b)) = (kernel_time(&init.line), kernel_time(&ready.line)) {
        eprintln!(
            "figure: /init exec -> bay0: ready = {:.0} ms (kernel clock, TCG)",
            (b - a) * 1000.0
        );
    }
    let log = m.serial();
    assert!(
        log.contains("bay0: starting as PID 1 (machine)"),
        "bay0 did not start as the machine's init"
    );
    // The harness runs the anchor host with `-cpu max` (TCG offers AMD SVM with nested
    // paging) and the host kernel builds KVM and KVM_AMD in: bay0 must find /dev/kvm.
    // (This used to accept "present" or "absent", which cannot fail.)
    let kvm = m.wait_for_line("bay0: /dev/kvm ", Duration::ZERO).unwrap();
    assert!(
        kvm.line.contains("bay0: /dev/kvm usable"),
        "bay0 did not find a usable KVM in an anchor host with SVM: {}",
        kvm.line
    );
    assert!(
        !log.contains("bay0: error:"),
        "bay0 reported errors while booting"
    );
    // The harness's highres=off (see BASE_APPEND): the anchor host's APIC timer runs
    // periodic, so a wake-up QEMU loses is raised again at the next tick.
    let lapic = m.hmp("info lapic").unwrap();
    let timer = lapic
        .lines()
        .find(|l| l.starts_with("LVTT\t"))
        .unwrap_or("");
    assert!(
        timer.contains("periodic"),
        "the anchor host's APIC timer is not periodic: {timer:?}"
    );
    // PID 1 keeps running: an exit would panic the kernel (and -no-reboot would end QEMU).
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        m.wait_exit(Duration::ZERO).is_err(),
        "QEMU exited after ready"
    );
    assert!(
        !m.serial().contains("Kernel panic"),
        "kernel panicked after bay0 was ready"
    );
}

#[test]
fn acpi_power_button_powers_off_cleanly() {
    // With the i6300esb armed, so the clean path also disarms the watchdog.
    let opts = Options::from_env("powerdown").unwrap().watchdog();
    let mut m = Machine::start(opts).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    let buttons = m
        .wait_for("power button device(s)", Duration::ZERO)
        .unwrap();
    assert!(
        !buttons.line.contains("watching 0 "),
        "bay0 found no power button: the host kernel needs ACPI_BUTTON and INPUT_EVDEV built in"
    );
    m.system_powerdown().unwrap();
    let status = m.wait_exit(Duration::from_secs(90)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
    let shutdown = m.wait_event("SHUTDOWN", Duration::from_secs(5)).unwrap();
    assert_eq!(shutdown["data"]["reason"], "guest-shutdown", "{shutdown}");
    let log = m.serial();
    let order = [
        "bay0: power button pressed",
        "bay0: shutdown (power off) on power button: sending SIGTERM to all processes",
        "bay0: shutdown: all processes have ended",
        "bay0: watchdog disarmed",
        "bay0: file systems synced and unmounted; powering off",
        "reboot: Power down",
    ];
    let mut at = 0;
    for line in order {
        let found = anchor_systest::find_marker_line(&log, at, line);
        assert!(found.is_some(), "missing (in this order) {line:?}");
        at = found.unwrap().end;
    }
    assert!(
        !log.contains("Unexpected close"),
        "the watchdog was not disarmed by the magic close"
    );
}

#[test]
fn ctrl_alt_del_reboots_cleanly() {
    // -no-reboot (the harness default) turns the guest's restart into QEMU's exit.
    let mut m = Machine::start(Options::from_env("ctrl-alt-del").unwrap()).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    m.send_key(&["ctrl", "alt", "delete"]).unwrap();
    let status = m.wait_exit(Duration::from_secs(90)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
    let shutdown = m.wait_event("SHUTDOWN", Duration::from_secs(5)).unwrap();
    assert_eq!(shutdown["data"]["reason"], "guest-reset", "{shutdown}");
    let log = m.serial();
    let mut at = 0;
    for line in [
        "bay0: shutdown (reboot) on SIGINT: sending SIGTERM to all processes",
        "bay0: shutdown: all processes have ended",
        "bay0: file systems synced and unmounted; rebooting",
        "reboot: Restarting system",
    ] {
        let found = anchor_systest::find_marker_line(&log, at, line);
        assert!(found.is_some(), "missing (in this order) {line:?}");
        at = found.unwrap().end;
    }
}

/// The operator shell's `poweroff` or `reboot` (`bay0.shell=1`): the clean shutdown it
/// asks for, seen in bay0's log lines `order` and QEMU's shutdown `reason`. An option is
/// refused first (nothing skips the clean shutdown).
fn operator_shell_shuts_down(cmd: &str, reason: &str, order: &[&str]) {
    let name = cmd.replace(' ', "-");
    let opts = Options::from_env(&format!("operator-{name}"))
        .unwrap()
        .append("bay0.shell=1");
    let mut m = Machine::start(opts).unwrap();
    m.wait_for("anchor# ", BOOT).unwrap();
    if !cmd.starts_with("busybox ") {
        let (out, status) = m.sh(&format!("{cmd} -f"), Duration::from_secs(30)).unwrap();
        assert_eq!(status, 2, "{out}");
        assert!(out.contains(&format!("{cmd}: takes no options")), "{out}");
    }
    m.type_text(&format!("{cmd}\r")).unwrap();
    let status = m.wait_exit(Duration::from_secs(90)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
    let shutdown = m.wait_event("SHUTDOWN", Duration::from_secs(5)).unwrap();
    assert_eq!(shutdown["data"]["reason"], reason, "{shutdown}");
    let log = m.serial();
    let mut at = 0;
    let mut shutdown_began = None;
    for line in order {
        let found = anchor_systest::find_marker_line(&log, at, line);
        assert!(found.is_some(), "missing (in this order) {line:?}");
        at = found.unwrap().end;
        shutdown_began.get_or_insert(at);
    }
    // The shell (interactive: it ignores SIGTERM) was hung up, so the shutdown did not
    // wait out its grace for it, and it was not started again before the end.
    let after = log.get(shutdown_began.unwrap_or(0)..).unwrap_or_default();
    assert!(!after.contains("grace period over"), "{after}");
    assert!(!after.contains("operator shell started"), "{after}");
}

/// Regression (`make run`): busybox's `poweroff` signals PID 1 with SIGUSR2 (busybox
/// init's power off), which bay0 did not take: nothing happened. bay0 takes it now, and
/// the operator shell's `poweroff` (bay0/operator/operator.sh) sends bay0's SIGTERM.
#[test]
fn the_operator_shells_poweroff_powers_off_cleanly() {
    operator_shell_shuts_down(
        "poweroff",
        "guest-shutdown",
        &[
            "bay0: shutdown (power off) on SIGTERM: sending SIGTERM to all processes",
            "bay0: shutdown: all processes have ended",
            "bay0: file systems synced and unmounted; powering off",
            "reboot: Power down",
        ],
    );
}

/// busybox's own `poweroff` applet (SIGUSR2), run by name past the operator shell's
/// function, powers off cleanly too.
#[test]
fn busyboxs_poweroff_powers_off_cleanly() {
    operator_shell_shuts_down(
        "busybox poweroff",
        "guest-shutdown",
        &[
            "bay0: shutdown (power off) on SIGUSR2 (poweroff): sending SIGTERM to all processes",
            "bay0: shutdown: all processes have ended",
            "bay0: file systems synced and unmounted; powering off",
            "reboot: Power down",
        ],
    );
}

/// Regression (`make run`): busybox's `reboot` sends SIGTERM (busybox init's reboot),
/// which is bay0's power off. The operator shell's `reboot` sends SIGINT, Ctrl-Alt-Del's.
#[test]
fn the_operator_shells_reboot_reboots_cleanly() {
    operator_shell_shuts_down(
        "reboot",
        "guest-reset",
        &[
            "bay0: shutdown (reboot) on SIGINT: sending SIGTERM to all processes",
            "bay0: shutdown: all processes have ended",
            "bay0: file systems synced and unmounted; rebooting",
            "reboot: Restarting system",
        ],
    );
}
