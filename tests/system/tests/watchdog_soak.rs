// SPDX-License-Identifier: GPL-3.0-or-later
//! On-demand soak (`#[ignore]`d; not part of `make test`) for a flake of the vault and
//! escape tests: the anchor host went 8 s without tickling its watchdog while a room
//! worked, and the i6300ESB reset it. This boots the vault test's first boot (same command
//! line: watchdog 8 s, tickle every 2 s, the boot room keeper with a fresh vault volume)
//! and types the keeper room's command over and over for `ANCHOR_SOAK_SECS` (default 480).
//! The watchdog here only reports (`-action watchdog=none`): when it fires, the soak prints
//! QEMU's `info lapic`, `info pic` and `info registers`, samples RIP and the control
//! registers every 250 ms for 2 s (resolve RIP with the kernel's System.map in
//! `$ANCHOR_CACHE/kbuild/*/`), presses a key (a fresh interrupt through the IO-APIC),
//! says whether the command then finished, and fails. A command with no answer after
//! 60 s while the watchdog stays quiet (the anchor host lives; seen once: the room stopped
//! after its grep) fails too, with what the operator shell (`bay0.shell=1`) sees: the
//! rooms, each anchor-vmm thread's state and wait channel, D-state processes.
//!
//! What it found: the anchor host halted in `default_idle` with IF=1 and the APIC timer's
//! vector (236) pending in the APIC, for good: QEMU lost the request to poll the APIC
//! (see `BASE_APPEND`'s `highres=off`, the fix). `ANCHOR_SOAK_APPEND=highres=on` brings
//! the old one-shot tick back, to see the hang again.
//!
//! Run two at once beside a CPU hog (about one hang in 2,500 commands that way without
//! the fix): `cargo nextest run -p anchor-systest --run-ignored only --no-capture
//! keeper_commands` with the environment `tests/system/run-all.sh` sets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use anchor_systest::{rooms_initramfs, Machine, VaultDisk};

const PASS: &str = "correct horse battery staple";
const LONG: Duration = Duration::from_secs(300);

/// A command that has not finished after this long (it takes well under a second) is
/// stuck while the anchor host lives.
const STUCK: Duration = Duration::from_secs(60);

/// From the operator shell (Ctrl-] leaves the boot room): the rooms, the threads of
/// every anchor-vmm with their state and wait channel, the processes in D state, and the
/// anchor host's dirty and writeback memory.
fn what_the_host_sees(m: &mut Machine) -> String {
    let from = m.serial().len();
    m.type_text("\x1d").unwrap();
    if let Err(e) = m.wait_for_line_from(from, "bay0: console: operator shell", LONG) {
        return format!("no operator shell: {e}");
    }
    m.type_text("\r").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let probe = "anchorctl room list; \
        for p in $(pidof anchor-vmm); do for t in /proc/$p/task/*; do \
        echo \"$t $(cat $t/comm) $(cut -d' ' -f3 $t/stat) $(cat $t/wchan 2>/dev/null)\"; \
        done; done; grep -l '^State:.D' /proc/[0-9]*/status; \
        grep -E '^(Dirty|Writeback):' /proc/meminfo";
    match m.sh(probe, LONG) {
        Ok((out, _)) => out,
        Err(e) => format!("the probe did not finish: {e}"),
    }
}

/// The lines of `info registers` that place the vCPU: RIP, the code segment (CPL) and
/// the control registers.
fn where_the_cpu_is(m: &mut Machine) -> String {
    let text = m.hmp("info registers").unwrap();
    let keep = ["RAX", "RSI", "R8 ", "RIP", "CS ", "CR0", "EFER"];
    text.lines()
        .filter(|l| keep.iter().any(|k| l.starts_with(k)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "soak, run on demand: see the file's comment"]
fn keeper_commands_until_the_watchdog_fires() {
    let disk = VaultDisk::new("soak").unwrap();
    let secs = std::env::var("ANCHOR_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(480);
    let opts = disk
        .options(&format!("watchdog-soak-{}", std::process::id()))
        .unwrap()
        .initramfs(rooms_initramfs().unwrap())
        .append(
            "bay0.vault=/dev/vda anchor.vault_argon2_kib=32768 bay0.watchdog_timeout=8 \
             bay0.watchdog_interval=2 bay0.room=keeper bay0.shell=1",
        )
        .append(&std::env::var("ANCHOR_SOAK_APPEND").unwrap_or_default())
        .arg("-device")
        .arg("i6300esb")
        .arg("-action")
        .arg("watchdog=none");
    let mut m = Machine::start(opts).unwrap();
    m.make_vault(PASS, LONG).unwrap();
    m.wait_for("keeper| keeper:~$ ", LONG).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        let from = m.serial().len();
        m.type_text(&format!(
            "grep -c '^/dev/vdb /persist ext4' /proc/mounts && dd if=/dev/zero \
             of=/persist/m{} bs=64k count=4 2>/dev/null && echo x > /tmp/marker; \
             echo @@soak-{n}@@ $?\r",
            n % 20
        ))
        .unwrap();
        let marker = format!("keeper| @@soak-{n}@@ 0");
        let typed = Instant::now();
        while m
            .wait_for_line_from(from, &marker, Duration::from_millis(200))
            .is_err()
        {
            if m.wait_event("WATCHDOG", Duration::ZERO).is_ok() {
                let late = typed.elapsed().as_secs_f64();
                for what in ["info lapic", "info pic", "info registers"] {
                    eprintln!("{what}:\n{}", m.hmp(what).unwrap());
                }
                for k in 0..8 {
                    let at = typed.elapsed().as_secs_f64();
                    eprintln!("sample {k} at {at:.2} s:\n{}", where_the_cpu_is(&mut m));
                    std::thread::sleep(Duration::from_millis(250));
                }
                m.send_key(&["shift"]).unwrap();
                eprintln!(
                    "sent a key (i8042 IRQ 1) at {:.2} s",
                    typed.elapsed().as_secs_f64()
                );
                let back = m.wait_for_line_from(from, &marker, Duration::from_secs(60));
                eprintln!("info lapic after:\n{}", m.hmp("info lapic").unwrap());
                panic!(
                    "the watchdog fired {late:.1} s after command {n} was typed; the command \
                     then {}",
                    if back.is_ok() {
                        "finished"
                    } else {
                        "never finished"
                    }
                );
            }
            if typed.elapsed() > STUCK {
                panic!(
                    "command {n}: no answer in {} s, no watchdog; the anchor host's view:\n{}",
                    STUCK.as_secs(),
                    what_the_host_sees(&mut m)
                );
            }
        }
        n += 1;
    }
    eprintln!("figure: {n} commands, the watchdog never fired");
    m.power_off();
}
