// SPDX-License-Identifier: GPL-3.0-or-later
//! The vault inside the anchor host: QEMU with swtpm as a TPM 2.0 (tpm-tis, state kept
//! across boots), a virtio disk for the vault, our host kernel (dm-crypt, TPM TIS), and
//! the passphrase typed on the serial console.
//!
//! - `first_boot_then_unlock_survives_power_off`: the product path. bay0 (PID 1) runs
//!   `anchor-vault unlock --first-boot` for `bay0.vault=/dev/vda`: the blank disk gets a
//!   vault (passphrase twice, recovery key shown once), /persist is mounted and the
//!   audit log started and anchored, and the boot room `keeper` (tests/system/policies:
//!   `[persist] volume = "keeper", size = "8MiB"`) gets its vault volume: anchor-vault
//!   makes it at unlock, bay0 attaches it as the room's second disk, the room's agent
//!   formats it and mounts it at /persist; the room writes a marker there and one in
//!   /tmp; power off. Second boot: a wrong passphrase, then the right one while the
//!   watchdog keeps running; the log written in the first boot is there and matches the
//!   TPM anchor; the room opens again with its volume: the /persist marker is there, the
//!   /tmp one is gone (amnesia by default, the vault volume excepted). The second boot's
//!   policy gives keeper 16 MiB (an archive appended to the initramfs with its own
//!   keeper.toml): anchor-vault grows the volume file at unlock, and the room's agent grows
//!   its file system online after mounting it (`df` in the room sees the new size, the
//!   marker is kept), the microVM path of a quota that grows. The audit log
//!   after the second unlock holds 8 records: the first boot's 3, bay0's `room.start`
//!   and `room.stop` of keeper (written into /persist after the unlock, each anchored by
//!   `anchor-vault audit anchor` during that boot, so only the second boot's 3 are
//!   anchored at its unlock), then the carry-over, the refused attempt and the unlock
//!   (7 when bay0 never reaped keeper's VMM at the first shutdown, as it then says).
//! - `power_cuts_keep_every_acknowledged_write`: a test-only init (busybox,
//!   `rdinit=/vaulttest/init`, see mk-vault-test-initramfs.sh) unlocks with the product
//!   anchor-vault (the third boot with the recovery key) and appends fsync'ed records;
//!   QEMU is SIGKILLed mid-stream, three times; after every boot the vault opens, PCR 15
//!   holds the vault's lock, and every acknowledged record is there.
//!
//! Needs QEMU, swtpm, the host kernel, the rooms initramfs (product + test policies) and
//! the vault test initramfs (run-all.sh builds both).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anchor_systest::{rooms_initramfs, vault_test_initramfs, Machine, VaultDisk};

/// Generous: TCG on a busy 2-core machine.
const BOOT: Duration = Duration::from_secs(240);
/// Creating or opening the vault (argon2id at 32 MiB under TCG, mkfs).
const VAULT: Duration = Duration::from_secs(300);
const SHORT: Duration = Duration::from_secs(60);
/// A nested microVM room booting under TCG on a busy machine.
const ROOM: Duration = Duration::from_secs(240);

const PASS: &str = "correct horse battery staple";

/// Waits for the boot room `keeper` to open with its vault volume mounted at /persist
/// (`how`: what the agent says about it) and for its shell prompt.
fn keeper_opens_with_its_volume(m: &mut Machine, how: &str) {
    let opened = m.wait_for_line("bay0: room keeper opened", ROOM).unwrap();
    assert!(
        opened.line.ends_with(", vault volume attached"),
        "{}",
        opened.line
    );
    let mounted = format!("keeper| anchor-agent: vault volume /dev/vdb mounted on /persist{how}");
    let line = m.wait_for_line(&mounted, ROOM).unwrap().line;
    assert!(line.ends_with(&mounted), "{line}");
    m.wait_for("keeper| keeper:~$ ", ROOM).unwrap();
    assert!(!m.serial().contains("not granted: vault volume"));
    // A wide terminal: the room's shell never folds the commands typed below.
    let (_, status) = m.in_room("keeper", "stty cols 1000", ROOM).unwrap();
    assert_eq!(status, 0);
}

/// The rooms initramfs with keeper's policy giving its volume `size`: an archive with that
/// one file appended (the kernel unpacks concatenated archives in order, and a later file
/// replaces an earlier one of the same name), made in `dir`.
fn rooms_initramfs_with_keeper_at(dir: &Path, size: &str) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(here.join("policies/keeper.toml")).unwrap();
    let policy = shipped.replace("size = \"8MiB\"", &format!("size = \"{size}\""));
    assert_ne!(
        policy, shipped,
        "keeper.toml no longer says size = \"8MiB\""
    );
    let stage = dir.join("keeper-overlay");
    let policies = stage.join("etc/anchor/policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("keeper.toml"), policy).unwrap();
    let out = dir.join(format!("initramfs-rooms-keeper-{size}.cpio.gz"));
    let script =
        r#"set -euo pipefail; source "$1"; { cat "$2"; cpio_stage "$3" | gzip -n; } > "$4""#;
    let status = Command::new("bash")
        .args(["-c", script, "bash"])
        .arg(here.join("initramfs-lib.sh"))
        .arg(rooms_initramfs().unwrap())
        .arg(&stage)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "making {}: {status}", out.display());
    out
}

/// The figure after `word` in `line` (e.g. "in 3.21 s").
fn number_after(line: &str, word: &str) -> Option<f64> {
    let at = line.find(word)? + word.len();
    line[at..].split_whitespace().next()?.parse().ok()
}

#[test]
fn first_boot_then_unlock_survives_power_off() {
    let st = VaultDisk::new("persist").unwrap();
    let append = "bay0.vault=/dev/vda anchor.vault_argon2_kib=32768 \
                  bay0.watchdog_timeout=8 bay0.watchdog_interval=2 bay0.room=keeper";
    let options = |name: &str, initramfs: PathBuf| {
        st.options(name)
            .unwrap()
            .initramfs(initramfs)
            .append(append)
            .watchdog()
    };

    // First boot: the blank disk becomes a vault.
    let started = Instant::now();
    let mut m = Machine::start(options("vault-first-boot", rooms_initramfs().unwrap())).unwrap();
    m.wait_for("this is the first boot", BOOT).unwrap();
    m.make_vault(PASS, VAULT).unwrap();
    // The disk is written only once the recovery key has been copied.
    let created = m.wait_for("Vault created on /dev/vda", VAULT).unwrap();
    let open = m.wait_for("/persist open:", VAULT).unwrap();
    assert!(
        open.line
            .contains("audit log: 3 records (0 carried over), anchored in the TPM (3 now)"),
        "{}",
        open.line
    );
    m.wait_for("bay0: vault: /persist is open", SHORT).unwrap();
    let log = m.serial();
    assert!(log.contains("room volume keeper created"), "{}", open.line);
    assert!(
        log.contains("keyslot 0 (TPM + passphrase) and keyslot 1 (recovery key), argon2id, 32 MiB"),
        "{}",
        created.line
    );
    assert!(
        !log.contains(PASS),
        "the passphrase was echoed on the console"
    );
    assert!(!log.contains("bay0: error:"), "bay0 reported errors");
    eprintln!(
        "figure: first boot, QEMU start -> vault created and /persist open: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The boot room gets its volume, formatted on first use; it keeps a marker in
    // /persist and one in /tmp. No sync in the room: at power-off bay0 asks a room with a
    // volume to power off (its agent syncs) instead of killing it.
    keeper_opens_with_its_volume(&mut m, " (formatted on first use)");
    let cmd = "grep -c '^/dev/vdb /persist ext4 rw,nosuid,nodev' /proc/mounts && \
               echo kept-in-vault > /persist/marker && echo kept-in-tmp > /tmp/marker";
    let (out, status) = m.in_room("keeper", cmd, ROOM).unwrap();
    assert_eq!(
        (out.as_slice(), status),
        (&["1".to_string()][..], 0),
        "{out:?}"
    );
    m.system_powerdown().unwrap();
    let status = m.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(status.success(), "QEMU exit {status}");
    assert!(m.serial().contains("bay0: room keeper: asked to power off"));
    assert!(m.serial().contains("bay0: vault: /persist unmounted"));
    // bay0 writes keeper's room.stop when it reaps the room's VMM; a VMM that outlives
    // even the shutdown's SIGKILL wait (seen on a heavily loaded machine) is never
    // reaped, so there is no record of its end. What the first boot's log must hold
    // follows from what bay0 said.
    let first = m.serial();
    let shutdown = first.find("bay0: shutdown (power off)").unwrap();
    let stopped = first[shutdown..].contains("bay0: room keeper (pid ");
    let records = if stopped { 5 } else { 4 };
    drop(m);

    // Second boot: wait past the watchdog timeout at the prompt (bay0's loop must keep
    // tickling it), a wrong passphrase, then the right one. keeper's policy now gives its
    // volume 16 MiB.
    let grown = rooms_initramfs_with_keeper_at(st.dir(), "16MiB");
    let started = Instant::now();
    let mut m = Machine::start(options("vault-second-boot", grown)).unwrap();
    m.wait_for("Vault passphrase", BOOT).unwrap();
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        m.wait_event("WATCHDOG", Duration::ZERO).is_err() && m.wait_exit(Duration::ZERO).is_err(),
        "the machine reset while the passphrase prompt waited"
    );
    m.type_text("not the passphrase\n").unwrap();
    m.wait_for("Wrong passphrase.", VAULT).unwrap();
    let typed = Instant::now();
    m.type_text(&format!("{PASS}\n")).unwrap();
    let open = m
        .wait_for("/persist open: unlocked with the passphrase", VAULT)
        .unwrap();
    let wall = typed.elapsed().as_secs_f64();
    let want = format!(
        "audit log: {} records (1 carried over), anchored in the TPM (3 now)",
        records + 3
    );
    assert!(
        open.line.contains(&want),
        "the first boot's log (with bay0's room.start and room.stop of keeper, written \
         after unlock and anchored then) did not survive, does not match the TPM, or was \
         not anchored in the first boot: {}\nfirst boot's shutdown:\n{}",
        open.line,
        &first[shutdown..]
    );
    m.wait_for("bay0: vault: /persist is open", SHORT).unwrap();
    assert!(
        !m.serial().contains("WARNING: the audit log"),
        "{}",
        m.serial()
    );
    assert!(!m.serial().contains(PASS));
    if let Some(s) = number_after(&open.line, "passphrase in") {
        eprintln!(
            "figure: unlock, passphrase entered -> /persist mounted: {s:.2} s inside the guest \
             ({wall:.1} s seen from the harness), argon2id 32 MiB x4, TCG"
        );
    }
    eprintln!(
        "figure: second boot, QEMU start -> /persist open: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        m.serial()
            .contains("room volume keeper grown to its new quota"),
        "anchor-vault did not grow the volume to the new policy's quota"
    );
    // Amnesia: the room's /tmp is new, its vault volume is what it was, its file system
    // grown online by the room's agent to the new quota.
    keeper_opens_with_its_volume(
        &mut m,
        "; file system grown from 8 MiB to 16 MiB (its quota grew)",
    );
    let cmd = "cat /persist/marker; df -k /persist | tail -n 1; ls /tmp/marker 2>&1";
    let (out, status) = m.in_room("keeper", cmd, ROOM).unwrap();
    assert_eq!(
        out.first().map(String::as_str),
        Some("kept-in-vault"),
        "{out:?}"
    );
    // df's second column: the file system's size in KiB, 16 MiB less ext4's own
    // metadata (an 8 MiB one shows under 8192).
    let kib: u64 = out
        .get(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no df line: {out:?}"));
    assert!(
        (12 << 10..=16 << 10).contains(&kib),
        "/persist is {kib} KiB, not grown to 16 MiB: {out:?}"
    );
    assert!(
        status != 0 && out.get(2).is_some_and(|l| l.contains("No such file")),
        "/tmp/marker survived the power-off: {out:?}"
    );
    m.system_powerdown().unwrap();
    assert!(m.wait_exit(Duration::from_secs(120)).unwrap().success());
}

/// Records the test-only writer acknowledged in boot `boot` before its power was cut.
struct Cut {
    boot: usize,
    acked: u64,
}

#[test]
fn power_cuts_keep_every_acknowledged_write() {
    let st = VaultDisk::new("powercut").unwrap();
    let initramfs = vault_test_initramfs().unwrap();
    let mut cuts: Vec<Cut> = Vec::new();
    // Acknowledged records to wait for before each cut (varied on purpose).
    let targets = [7u64, 23, 3];
    let mut recovery = String::new();
    // What PCR 15 holds once anchor-vault has locked it (one extend from zeros).
    let locked = {
        let d = anchor_audit::chain::digest(b"anchor-vault: vault opened");
        let mut hex = [0u8; 64];
        anchor_audit::hex(&anchor_audit::chain::link(&[0u8; 32], &d), &mut hex).to_uppercase()
    };
    for boot in 0..=targets.len() {
        let opts = st
            .options(&format!("vault-powercut-{boot}"))
            .unwrap()
            .initramfs(initramfs.clone())
            .append("rdinit=/vaulttest/init anchor.vault_argon2_kib=32768");
        let mut m = Machine::start(opts).unwrap();
        if boot == 0 {
            recovery = m.make_vault(PASS, VAULT).unwrap();
        } else if boot == 2 {
            // This boot opens with the recovery key (keyslot 1, really activated).
            m.wait_for("Vault passphrase", BOOT).unwrap();
            m.type_text("\n").unwrap();
            m.wait_for("Recovery key:", SHORT).unwrap();
            m.type_text(&format!("{recovery}\n")).unwrap();
            m.wait_for("/persist open: unlocked with the recovery key", VAULT)
                .unwrap();
        } else {
            m.wait_for("Vault passphrase", BOOT).unwrap();
            m.type_text(&format!("{PASS}\n")).unwrap();
        }
        m.wait_for("vaulttest: unlock exit 0", VAULT).unwrap();
        let pcr = m.wait_for("vaulttest: pcr15=", SHORT).unwrap().line;
        assert!(
            pcr.ends_with(&format!("pcr15={locked}")),
            "boot {boot}: PCR 15 was not locked after opening: {pcr}"
        );
        for cut in &cuts {
            let f = format!("/persist/stream.{} ", cut.boot);
            let line = m.wait_for(&format!("vaulttest: {f}"), SHORT).unwrap().line;
            assert!(!line.contains("BROKEN"), "boot {boot}: {line}");
            let records: u64 = line
                .split("records=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("boot {boot}: {line}"));
            assert!(
                records > cut.acked,
                "boot {boot}: {f}has {records} records but record {} was acknowledged before the power cut",
                cut.acked
            );
        }
        let Some(&target) = targets.get(boot) else {
            break;
        };
        m.wait_for(&format!("vaulttest: writing /persist/stream.{boot}"), SHORT)
            .unwrap();
        m.wait_for(&format!("ACK {boot} {target}"), VAULT).unwrap();
        // Pull the plug while the stream goes on; the last ACK seen counts.
        m.power_off();
        let log = m.serial();
        let acked = log
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("ACK {boot} ")))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max()
            .unwrap();
        assert!(acked >= target);
        cuts.push(Cut { boot, acked });
    }
}
