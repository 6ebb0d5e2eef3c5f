// SPDX-License-Identifier: GPL-3.0-or-later
//! The signed base under UEFI Secure Boot (OVMF with only our keys enrolled, swtpm, TCG):
//! the product UKI boots to a room and its PCR 11 is what we predicted and signed; the
//! firmware refuses unsigned and tampered images; and an A/B "device" lives through
//! power cuts at every step of an update, boots into it, refuses downgrades and tampered
//! updates before writing, and falls back by itself from an update that panics; and the
//! vault, sealed to our signed PCR 11 policy, opens after a signed update and not for an
//! image whose PCR 11 policy another key signed.
//!
//! Needs: `make uki` ($ANCHOR_OUT/anchor.efi) and uki/tests/mk-test-ukis.sh
//! ($ANCHOR_OUT/uki-test/), QEMU, OVMF, swtpm, mtools (tests/system/run-all.sh builds the
//! test images).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{cache_dir, out_dir, Machine, Options, Uefi, OVMF_SECBOOT_CODE};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Generous: TCG on a busy 2-core machine.
const BOOT: Duration = Duration::from_secs(240);
/// A nested room under TCG.
const ROOM: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn test_images() -> PathBuf {
    out_dir().join("uki-test")
}

fn need(p: &Path, how: &str) -> PathBuf {
    assert!(p.is_file(), "{} missing: {how}", p.display());
    p.to_path_buf()
}

fn image(name: &str) -> PathBuf {
    need(
        &test_images().join(name),
        "run uki/tests/mk-test-ukis.sh (make uki-check does)",
    )
}

fn product() -> PathBuf {
    let p =
        std::env::var_os("ANCHOR_UKI").map_or_else(|| out_dir().join("anchor.efi"), PathBuf::from);
    need(&p, "run make uki")
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One emulated machine that survives its boots: ESP disk, UEFI variables, TPM state.
struct Device {
    dir: PathBuf,
}

impl Device {
    fn new(
        name: &str,
        slots: &[(&str, PathBuf)],
        puts: &[(&str, PathBuf)],
        size_mib: u32,
    ) -> Device {
        let dir = cache_dir().join(format!("systest/uki/{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tpm")).unwrap();
        std::fs::copy(image("vars.fd"), dir.join("vars.fd")).unwrap();
        let mut cmd = Command::new(repo().join("uki/mkesp.sh"));
        cmd.arg("--out")
            .arg(dir.join("esp.img"))
            .arg("--size")
            .arg(size_mib.to_string());
        for (n, f) in slots {
            cmd.arg("--slot").arg(format!("{n}={}", f.display()));
        }
        for (n, f) in puts {
            cmd.arg("--put").arg(format!("{n}={}", f.display()));
        }
        sh(&mut cmd);
        Device { dir }
    }

    fn esp(&self) -> PathBuf {
        self.dir.join("esp.img")
    }

    fn img(&self) -> String {
        format!("{}@@1M", self.esp().display())
    }

    fn options(&self, name: &str) -> Options {
        Options::uefi(
            name,
            Uefi {
                code: PathBuf::from(OVMF_SECBOOT_CODE),
                vars: self.dir.join("vars.fd"),
                secure: true,
                disk: self.esp(),
            },
        )
        .tpm_state(self.dir.join("tpm"))
    }

    fn start(&self, name: &str) -> Machine {
        Machine::start(self.options(name)).unwrap()
    }

    /// Files in EFI/Linux, by name.
    fn slots(&self) -> Vec<String> {
        let out = sh(Command::new("mdir").args(["-b", "-i", &self.img(), "::/EFI/Linux"]));
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.rsplit('/').next().map(str::to_string))
            .collect();
        v.sort();
        v
    }

    fn put(&self, dest: &str, file: &Path) {
        sh(Command::new("mcopy")
            .args(["-o", "-i", &self.img()])
            .arg(file)
            .arg(format!("::/{dest}")));
    }

    fn put_text(&self, dest: &str, text: &str) {
        let f = self.dir.join("put.tmp");
        std::fs::write(&f, text).unwrap();
        self.put(dest, &f);
    }

    fn del(&self, path: &str) {
        sh(Command::new("mdel")
            .args(["-i", &self.img()])
            .arg(format!("::/{path}")));
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// The `pcr11 HEX` line uki/build.sh wrote beside an image.
fn predicted_pcr11(uki: &Path) -> String {
    let text = std::fs::read_to_string(format!("{}.pcr11", uki.display())).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("pcr11 "))
        .unwrap()
        .to_string()
}

#[test]
fn signed_uki_boots_under_secure_boot_to_a_room_and_is_measured() {
    let uki = product();
    // Read the prediction with the image (a rebuild may replace both while we boot).
    let want = predicted_pcr11(&uki);
    // Installed on trial (3 tries): the boot must pass the health check (the work room
    // reaches ready) to be blessed.
    let dev = Device::new("sb-room", &[("anchor-A+3-0.efi", uki.clone())], &[], 64);
    let t = Instant::now();
    // The work room asks for 2 GiB; bay0 admits a room only if the host has it.
    let m = Machine::start(dev.options("uki-sb-room").memory_mib(3072)).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    eprintln!(
        "figure: firmware -> bay0: ready (product UKI, OVMF Secure Boot, TCG) {:.1} s",
        secs(t)
    );
    let log = m.serial();
    assert!(
        log.contains("secureboot: Secure boot enabled"),
        "the kernel did not see Secure Boot on"
    );
    // Our kernel forces integrity lockdown itself (host-kernel fragment), Secure Boot or not.
    assert!(log.contains("Kernel is locked down from "), "no lockdown");
    assert!(log.contains("bay0: starting as PID 1 (machine)"));
    m.wait_for_line("bay0: / is read-only", Duration::ZERO)
        .unwrap();
    // bay0 prefixes the room's console lines with the room's name.
    m.wait_for("anchor-agent: room work ready", ROOM).unwrap();
    eprintln!("figure: firmware -> room work ready {:.1} s", secs(t));
    // Measured boot: PCR 11 is the value uki/build.sh predicted and signed.
    let pcr = m
        .wait_for_line("anchor-update: pcr11: sha256 ", BOOT)
        .unwrap();
    assert!(
        pcr.line.ends_with(&want),
        "PCR 11 {} is not the prediction {want}",
        pcr.line
    );
    m.wait_for_line(
        "anchor-update: pcr11: signed policy /.extra/tpm2-pcr-signature.json: covers this PCR 11",
        Duration::from_secs(30),
    )
    .unwrap();
    // The room's shell prompt is an open line on the same console: search, not markers.
    let booted = m
        .wait_for("anchor-update: booted slot A (version ", BOOT)
        .unwrap();
    assert!(
        booted
            .line
            .ends_with("entry \\EFI\\Linux\\anchor-A+2-1.efi)"),
        "systemd-boot did not count the trial boot: {}",
        booted.line
    );
    m.wait_for(
        "anchor-update: slot A passed its health check: blessed (anchor-A+2-1.efi -> anchor-A.efi)",
        BOOT,
    )
    .unwrap();
    assert!(
        !m.serial().contains("anchor-update: error"),
        "anchor-update reported an error"
    );
    // bless runs while the room's ready line may still be arriving byte by byte: its lines
    // come through bay0, which ends the room's open line and draws it again after them, so
    // the room's line is whole (it was once torn: `work| aanchor-update: ...`).
    m.wait_for_line("work| anchor-agent: room work ready", Duration::ZERO)
        .unwrap();
    drop(m);
    assert_eq!(dev.slots(), ["anchor-A.efi"]);
}

#[test]
fn the_firmware_refuses_unsigned_and_tampered_images() {
    // The unsigned product UKI as the firmware's removable-media loader: OVMF itself refuses.
    let unsigned = image("anchor.unsigned.efi");
    let dev = Device::new(
        "sb-unsigned",
        &[],
        &[("EFI/BOOT/BOOTX64.EFI", unsigned)],
        64,
    );
    let m = dev.start("uki-sb-unsigned");
    m.wait_for("BdsDxe: failed to load Boot0001", BOOT)
        .map(|f| assert!(f.line.ends_with("Access Denied"), "{}", f.line))
        .unwrap();
    m.wait_for("No bootable option or device was found", BOOT)
        .unwrap();
    assert!(
        !m.serial().contains("Linux version"),
        "an unsigned kernel ran"
    );
    drop(m);
    // A tampered (re-signed nowhere) product UKI in slot A behind our signed systemd-boot:
    // the firmware's image verification refuses it when the loader asks to start it.
    let tampered = image("anchor.tampered.efi");
    let dev = Device::new("sb-tampered", &[("anchor-A.efi", tampered)], &[], 64);
    let m = dev.start("uki-sb-tampered");
    m.wait_for(
        "Error loading \\EFI\\Linux\\anchor-A.efi: Access Denied",
        BOOT,
    )
    .unwrap();
    m.wait_for("No bootable option or device was found", BOOT)
        .unwrap();
    assert!(
        !m.serial().contains("Linux version"),
        "a tampered kernel ran"
    );
}

/// Boot until the test hook says it stopped after `step`, then cut the power.
fn boot_and_cut(dev: &Device, step: &str, expect_slot: &str) -> f64 {
    let t = Instant::now();
    let mut m = dev.start(&format!("uki-ab-cut-{step}"));
    let booted = m
        .wait_for_line("anchor-update: booted slot ", BOOT)
        .unwrap();
    assert!(
        booted.line.contains(&format!("booted slot {expect_slot} ")),
        "before the cut at {step}: {}",
        booted.line
    );
    m.wait_for_line(
        &format!("anchor-update: test hook: stopped after {step}"),
        BOOT,
    )
    .unwrap();
    m.power_off(); // SIGKILL: whatever the guest had not written is lost
    secs(t)
}

#[test]
fn ab_update_survives_power_cuts_refuses_bad_updates_and_falls_back_from_a_panic() {
    let total = Instant::now();
    let dev = Device::new(
        "ab",
        &[("anchor-A.efi", image("t1.efi"))],
        &[("anchor-test/2-update.efi", image("t2.efi"))],
        64,
    );
    // 1. A power cut after each step of `apply` (v2 into slot B). The running slot A
    //    keeps booting until the update is armed; then B boots.
    for (step, slots_after) in [
        ("verify", vec!["anchor-A.efi"]),
        ("clean", vec!["anchor-A.efi"]),
        ("write", vec!["anchor-A.efi", "anchor-B.efi.new"]),
        ("sync", vec!["anchor-A.efi", "anchor-B.efi.new"]),
        ("arm", vec!["anchor-A.efi", "anchor-B+3-0.efi"]),
    ] {
        dev.put_text("anchor-test/stop-after", step);
        let s = boot_and_cut(&dev, step, "A");
        eprintln!("figure: boot + apply up to {step} + power cut: {s:.1} s");
        assert_eq!(dev.slots(), slots_after, "ESP after a power cut at {step}");
    }
    // 2. The armed update boots (its counter goes 3 -> 2), passes the health check and is
    //    blessed. Staged now: a tampered v4, a downgrade to 0.5, and a v3 whose kernel
    //    panics at boot.
    dev.del("anchor-test/2-update.efi");
    dev.del("anchor-test/stop-after");
    dev.put("anchor-test/1-tampered.efi", &image("t4-tampered.efi"));
    dev.put("anchor-test/2-downgrade.efi", &image("t0.5.efi"));
    dev.put("anchor-test/3-panic.efi", &image("t3-panic.efi"));
    let t = Instant::now();
    let mut m = Machine::start(dev.options("uki-ab-update").allow_reboot()).unwrap();
    m.wait_for_line(
        "anchor-update: booted slot B (version 2, entry \\EFI\\Linux\\anchor-B+2-1.efi)",
        BOOT,
    )
    .unwrap();
    m.wait_for_line(
        "anchor-update: slot B passed its health check: blessed (anchor-B+2-1.efi -> anchor-B.efi)",
        BOOT,
    )
    .unwrap();
    let l = m
        .wait_for_line("anchor-update: test hook: 1-tampered.efi: ", BOOT)
        .unwrap();
    assert!(
        l.line.ends_with("refused: update refused, nothing written: the image does not match its signature (modified after signing)"),
        "{}",
        l.line
    );
    let l = m
        .wait_for_line("anchor-update: test hook: 2-downgrade.efi: ", BOOT)
        .unwrap();
    assert!(
        l.line.ends_with("refused: update refused, nothing written: version 0.5 is not newer than 2 (no downgrades)"),
        "{}",
        l.line
    );
    let l = m
        .wait_for_line("anchor-update: test hook: 3-panic.efi: ", BOOT)
        .unwrap();
    assert!(
        l.line.ends_with("applied to slot A as anchor-A+3-0.efi"),
        "{}",
        l.line
    );
    let done = m
        .wait_for_line("anchor-update: test hook: staged updates done", BOOT)
        .unwrap();
    // Nothing of the refused updates reached the ESP before v3 replaced slot A.
    let log = m.serial();
    assert!(
        !log.contains("apply: clean: slot A emptied\nanchor-update: test hook: 1-"),
        "{log}"
    );
    assert_eq!(
        log.matches("apply: write: ").count(),
        1,
        "only v3 was written"
    );
    eprintln!(
        "figure: update boot (bless + 3 staged updates) {:.1} s",
        secs(t)
    );
    // 3. Reset: v3 is tried first (highest version with tries left), panics three times,
    //    and systemd-boot falls back to the blessed v2 in slot B by itself.
    m.qmp("system_reset", None).unwrap();
    let back = m
        .wait_for_line_from(
            done.end,
            "anchor-update: booted slot B (version 2",
            Duration::from_secs(600),
        )
        .unwrap();
    let log = m.serial();
    let after = &log[done.end..back.end];
    assert_eq!(
        after.matches("Kernel panic - not syncing").count(),
        3,
        "v3 should have panicked exactly 3 times before the fallback"
    );
    m.wait_for_line_from(
        back.end,
        "anchor-update: slot B is good (blessed earlier)",
        BOOT,
    )
    .unwrap();
    m.wait_for_line_from(
        back.end,
        "anchor-update: status: slot A: version 3, bad: 0 tries left after 3 failed boots",
        BOOT,
    )
    .unwrap();
    m.wait_for_line_from(back.end, "anchor-update: status: next boot: slot B", BOOT)
        .unwrap();
    eprintln!(
        "figure: reset -> 3 panics -> fallback to B ready {:.1} s",
        secs(t)
    );
    drop(m);
    assert_eq!(dev.slots(), ["anchor-A+0-3.efi", "anchor-B.efi"]);
    eprintln!("figure: A/B test total {:.1} s", secs(total));
}

/// The vault's passphrase (tests only).
const PASS: &str = "correct horse battery";
/// A vault step under TCG (argon2id at 32 MiB, mkfs, the TPM).
const VAULT: Duration = Duration::from_secs(240);

/// Power the machine down the way a person would (ACPI button) and wait for QEMU to end.
fn power_down(mut m: Machine) {
    m.system_powerdown().unwrap();
    let status = m.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(status.success(), "QEMU exit {status}");
}

/// The vault through the signed PCR 11 policy in real boots (OVMF Secure Boot, swtpm,
/// the product initramfs): created at the first boot of v1, sealed to the PCR key the UKI
/// carries; after an "update" to v2 (another PCR 11, signed by the same key) the
/// passphrase opens it with nothing re-enrolled; an image our db key signed (so the
/// firmware boots it) but whose PCR 11 policy another key signed is refused before the
/// passphrase, with a line naming both keys, and the recovery key opens the vault.
#[test]
fn the_vault_opens_after_a_signed_update_and_not_for_a_foreign_pcr_policy() {
    let (v1, v2, foreign) = (
        image("vault-v1.efi"),
        image("vault-v2.efi"),
        image("vault-v2-foreign-pcr.efi"),
    );
    let (p1, p2, pf) = (
        predicted_pcr11(&v1),
        predicted_pcr11(&v2),
        predicted_pcr11(&foreign),
    );
    assert!(
        p1 != p2 && p2 != pf,
        "the images measure alike: the test proves nothing"
    );
    // Room for one 30 MB product UKI at a time (each is deleted before the next is put).
    let dev = Device::new("vault", &[("anchor-A.efi", v1)], &[], 96);
    let replace = |uki: &Path| {
        dev.del("EFI/Linux/anchor-A.efi");
        dev.put("EFI/Linux/anchor-A.efi", uki);
        assert_eq!(dev.slots(), ["anchor-A.efi"]);
    };
    let disk = dev.dir.join("vault.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let boot = |name: &str| Machine::start(dev.options(name).disk(disk.clone())).unwrap();
    let pcr11 = |m: &Machine| {
        m.wait_for_line("anchor-update: pcr11: sha256 ", BOOT)
            .unwrap()
            .line
    };

    // v1, first boot: the blank disk becomes a vault sealed to the UKI's PCR key.
    let t = Instant::now();
    let mut m = boot("uki-vault-v1");
    m.wait_for("this is the first boot", BOOT).unwrap();
    let key = m.make_vault(PASS, VAULT).unwrap();
    let sealed = m.wait_for("Sealing policy:", VAULT).unwrap();
    assert!(
        sealed.line.contains(
            "TPM2 signed PCR policy, SHA-256 bank: PCR 11 (unified kernel image) as signed by key "
        ) && sealed
            .line
            .contains("PCRs 7 (Secure Boot state and keys) as sealed"),
        "{}",
        sealed.line
    );
    m.wait_for("/persist open: unlocked with the new vault", VAULT)
        .unwrap();
    m.wait_for("bay0: vault: /persist is open", VAULT).unwrap();
    assert!(pcr11(&m).ends_with(&p1), "PCR 11 is not v1's");
    eprintln!(
        "figure: firmware -> vault created and open (UKI v1, OVMF, TCG) {:.1} s",
        secs(t)
    );
    power_down(m);

    // The update: v2 in the slot. Another PCR 11, signed by our key: the passphrase opens.
    replace(&v2);
    let t = Instant::now();
    let mut m = boot("uki-vault-v2");
    m.wait_for("Vault passphrase", BOOT).unwrap();
    m.type_text(&format!("{PASS}\n")).unwrap();
    m.wait_for("/persist open: unlocked with the passphrase", VAULT)
        .unwrap();
    m.wait_for("bay0: vault: /persist is open", VAULT).unwrap();
    assert!(pcr11(&m).ends_with(&p2), "PCR 11 is not v2's");
    eprintln!(
        "figure: firmware -> vault open with the passphrase after the update (UKI v2) {:.1} s",
        secs(t)
    );
    power_down(m);

    // Our db key signed it, another key its PCR 11 policy: the firmware boots it, the
    // vault refuses it before asking the passphrase; the recovery key opens.
    replace(&foreign);
    let mut m = boot("uki-vault-foreign-pcr");
    let refused = m
        .wait_for("not by the key this vault trusts", BOOT)
        .unwrap();
    assert!(
        refused.line.contains("PCR 11 policy is signed by key "),
        "{}",
        refused.line
    );
    m.wait_for("Recovery key: ", VAULT).unwrap();
    m.type_text(&format!("{key}\n")).unwrap();
    m.wait_for("/persist open: unlocked with the recovery key", VAULT)
        .unwrap();
    assert!(
        pcr11(&m).ends_with(&pf),
        "PCR 11 is not the foreign-policy image's"
    );
    let log = m.serial();
    assert!(
        !log.contains("Vault passphrase"),
        "the passphrase was asked for an image the vault does not trust"
    );
    assert!(!log.contains(PASS), "the passphrase was echoed");
    power_down(m);
}
