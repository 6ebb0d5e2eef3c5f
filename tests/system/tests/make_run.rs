// SPDX-License-Identifier: GPL-3.0-or-later
//! `make run VAULT=1`'s plumbing (tests/system/run-qemu.sh `--vault DIR`): a sparse vault
//! disk and a TPM (swtpm) kept in DIR, bay0 told of the disk, the TPM stopped with QEMU,
//! one run at a time per DIR. The vault itself (creation, unlock, volumes) is vault.rs's.
//! Needs QEMU, swtpm, the host kernel and the initramfs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{cache_dir, host_kernel, initramfs};
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn run_qemu(dir: &Path, log: &Path, until: &str) -> Output {
    Command::new("tests/system/run-qemu.sh")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env("ANCHOR_HOST_KERNEL", host_kernel().unwrap())
        .env("ANCHOR_INITRAMFS", initramfs().unwrap())
        .env("ANCHOR_APPEND", "bay0.shell=1")
        .args(["--until", until, "--timeout", "180", "--log"])
        .arg(log)
        .arg("--vault")
        .arg(dir)
        .output()
        .unwrap()
}

/// `make run`'s uplink (`run-qemu.sh --uplink`): the kernel configures QEMU's user-mode
/// network before bay0 from `ip=dhcp`, and /etc/resolv.conf shows its DNS server (what
/// the anchor host then does with it: uplink.rs). Without the flag: no NIC at all.
#[test]
fn an_uplink_run_boots_with_its_network_configured_by_the_kernel() {
    let dir = cache_dir().join(format!("systest/run/make-run-net-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("serial.log");
    let boot = |uplink: bool| {
        let mut c = Command::new("tests/system/run-qemu.sh");
        c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .env("ANCHOR_HOST_KERNEL", host_kernel().unwrap())
            .env("ANCHOR_INITRAMFS", initramfs().unwrap())
            .env("ANCHOR_APPEND", "bay0.shell=1")
            .args(["--until", "bay0: ready", "--timeout", "180", "--log"])
            .arg(&log);
        if uplink {
            c.arg("--uplink");
        }
        let out = c.output().unwrap();
        let serial = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            out.status.success(),
            "{}\n{serial}",
            String::from_utf8_lossy(&out.stderr)
        );
        serial
    };
    let serial = boot(true);
    assert!(serial.contains(" ip=dhcp"), "{serial}");
    let config = serial
        .lines()
        .skip_while(|l| !l.contains("IP-Config: Complete"))
        .take(6)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        config.contains("ipaddr=10.0.9.15") && config.contains("gw=10.0.9.2"),
        "{serial}"
    );
    assert!(config.contains("nameserver0=10.0.9.3"), "{serial}");
    let serial = boot(false);
    assert!(!serial.contains("ip=dhcp"), "{serial}");
    assert!(!serial.contains("IP-Config"), "{serial}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The swtpm processes serving `dir`'s TPM state.
fn swtpms_of(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("swtpm ") && cmdline.contains(&dir.display().to_string()) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn a_vault_run_boots_to_the_first_boot_prompt_and_leaves_no_tpm_running() {
    let dir = cache_dir().join(format!("systest/run/make-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let vault = dir.join("vault");
    let log = dir.join("serial.log");

    let out = run_qemu(&vault, &log, "New vault passphrase");
    let serial = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{serial}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("new vault disk"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // bay0 was told of the disk and found the TPM; the first-boot dialog began.
    assert!(serial.contains("bay0.vault=/dev/vda"), "{serial}");
    assert!(serial.contains("this is the first boot"), "{serial}");
    // A sparse 32 GiB disk, nothing written yet (no passphrase was typed).
    let disk = std::fs::metadata(vault.join("vault.img")).unwrap();
    assert_eq!(disk.len(), 32 << 30);
    assert!(disk.blocks() * 512 < 1 << 20, "{} blocks", disk.blocks());
    assert!(vault.join("tpm").read_dir().unwrap().next().is_some());
    assert_eq!(
        swtpms_of(&vault),
        Vec::<String>::new(),
        "swtpm outlived QEMU"
    );

    // One run at a time per vault: a second one is refused before anything starts.
    let mut holder = Command::new("flock")
        .arg(vault.join("lock"))
        .args(["-c", "echo locked; exec sleep 60"])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said, "locked\n");
    let out = run_qemu(&vault, &log, "New vault passphrase");
    // flock and its sleep (which holds the lock too): the whole group.
    let group = format!("-{}", holder.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another run is using the vault"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(swtpms_of(&vault), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
