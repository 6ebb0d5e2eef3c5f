// SPDX-License-Identifier: GPL-3.0-or-later
//! If bay0's loop stops, the i6300esb watchdog resets the machine. Uses the initramfs
//! whose bay0 is built with the `debug-stall` feature ($ANCHOR_STALL_INITRAMFS, made by
//! run-all.sh) and the host kernel (I6300ESB_WDT built in).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{stall_initramfs, Machine, Options};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);

#[test]
fn watchdog_resets_a_stalled_machine() {
    let opts = Options::from_env("watchdog-stall")
        .unwrap()
        .initramfs(stall_initramfs().unwrap())
        .watchdog()
        .allow_reboot()
        .append("bay0.watchdog_timeout=3 bay0.watchdog_interval=1 bay0.debug_stall_after=3");
    let mut m = Machine::start(opts).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    let log = m.serial();
    assert!(
        !log.contains("no /dev/watchdog"),
        "no /dev/watchdog in the guest: the host kernel needs I6300ESB_WDT built in"
    );
    m.wait_for(
        "bay0: watchdog armed: timeout 3 s, tickle every 1 s",
        Duration::ZERO,
    )
    .unwrap();
    let stall = m
        .wait_for(
            "debug-stall: stalling the event loop after 3 watchdog ticks",
            Duration::from_secs(60),
        )
        .unwrap();
    let event = m.wait_event("WATCHDOG", Duration::from_secs(120)).unwrap();
    assert_eq!(event["data"]["action"], "reset", "{event}");
    // What a test whose machine went away reports names the watchdog.
    let report = m.why_it_ended();
    assert!(
        report.contains("WATCHDOG {\"action\":\"reset\""),
        "{report}"
    );
    // The machine really restarted: a second kernel banner after the stall, and bay0 again.
    let again = m.wait_for_from(stall.end, "Linux version", BOOT).unwrap();
    m.wait_for_line_from(again.end, "bay0: ready", BOOT)
        .unwrap();
    let between = &m.serial()[stall.end..again.end];
    assert!(
        !between.contains("bay0: shutdown"),
        "the restart was a clean shutdown, not the watchdog"
    );
    m.power_off();
}
