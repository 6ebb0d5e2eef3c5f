// SPDX-License-Identifier: GPL-3.0-or-later
//! On-demand soak (`#[ignore]`d; not part of `make test`) for a flake seen once in a
//! fresh-clone run of `vault::first_boot_then_unlock_survives_power_off`: the anchor host
//! went 8 s without tickling its watchdog while the keeper room answered commands, and
//! the i6300ESB reset it. This boots that test's first boot (same command line: watchdog
//! 8 s, tickle every 2 s, the boot room keeper with a fresh vault volume) and types the
//! keeper room's command over and over for `ANCHOR_SOAK_SECS` (default 480). The watchdog
//! here only reports (`-action watchdog=none`): when it fires, the machine keeps running
//! and the soak samples the vCPU's registers (QMP `info registers`) every 250 ms for 15 s,
//! to show where the anchor host was while nothing tickled (resolve RIP with the host or
//! guest kernel's System.map in `$ANCHOR_CACHE/kbuild/*/`), then fails.
//!
//! Run two at once beside a CPU hog (seen once in ~2,600 commands that way):
//! `cargo nextest run -p anchor-systest --run-ignored only --no-capture keeper_commands`
//! with the environment `tests/system/run-all.sh` sets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use anchor_systest::{cache_dir, rooms_initramfs, Machine, Options};
use serde_json::json;

const PASS: &str = "correct horse battery staple";
const LONG: Duration = Duration::from_secs(300);

/// The lines of `info registers` that place the vCPU: RIP, the code segment (CPL) and
/// the control registers.
fn where_the_cpu_is(m: &mut Machine) -> String {
    let r = m
        .qmp(
            "human-monitor-command",
            Some(json!({ "command-line": "info registers" })),
        )
        .unwrap();
    // Machine::qmp returns the reply's "return": for this command, the text.
    let text = r.as_str().unwrap_or_default();
    let keep = ["RAX", "RSI", "R8 ", "RIP", "CS ", "CR0", "EFER"];
    text.lines()
        .filter(|l| keep.iter().any(|k| l.starts_with(k)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "soak, run on demand: see the file's comment"]
fn keeper_commands_until_the_watchdog_fires() {
    let dir = cache_dir().join(format!("systest/vault/soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tpm")).unwrap();
    std::fs::File::create(dir.join("vault.img"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let secs = std::env::var("ANCHOR_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(480);
    let opts = Options::from_env(&format!("watchdog-soak-{}", std::process::id()))
        .unwrap()
        .tpm_state(dir.join("tpm"))
        .disk(dir.join("vault.img"))
        .initramfs(rooms_initramfs().unwrap())
        .append(
            "bay0.vault=/dev/vda anchor.vault_argon2_kib=32768 bay0.watchdog_timeout=8 \
             bay0.watchdog_interval=2 bay0.room=keeper",
        )
        .arg("-device")
        .arg("i6300esb")
        .arg("-action")
        .arg("watchdog=none");
    let mut m = Machine::start(opts).unwrap();
    m.wait_for("New vault passphrase", LONG).unwrap();
    m.type_text(&format!("{PASS}\n")).unwrap();
    m.wait_for("Type it again", LONG).unwrap();
    m.type_text(&format!("{PASS}\n")).unwrap();
    m.wait_for("Press Enter once", LONG).unwrap();
    m.type_text("\n").unwrap();
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
                for k in 0..60 {
                    let at = typed.elapsed().as_secs_f64();
                    eprintln!("sample {k} at {at:.2} s:\n{}", where_the_cpu_is(&mut m));
                    std::thread::sleep(Duration::from_millis(250));
                }
                let back = m.wait_for_line_from(from, &marker, Duration::from_secs(60));
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
            assert!(
                typed.elapsed() < LONG,
                "command {n}: no answer, no watchdog"
            );
        }
        n += 1;
    }
    eprintln!("figure: {n} commands, the watchdog never fired");
    m.power_off();
    let _ = std::fs::remove_dir_all(&dir);
}
