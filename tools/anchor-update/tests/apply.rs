// SPDX-License-Identifier: GPL-3.0-or-later
//! apply / status / bless on an ESP directory with real signed images (systemd-stub +
//! sections, signed by sbsign with keys made here): what is refused is refused before
//! anything is written; after every step of an apply the ESP still boots a verified image;
//! anchorctl's CLI says the same. Needs openssl, objcopy, sbsign and Debian's stub
//! (scripts/setup.sh).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_update::apply::{self, ApplyError, Observer, Running, Step};
use anchor_update::esp::{next_boot, Esp};
use anchor_update::slots::{Counter, Slot};
use anchor_update::verify::{self, Trust, VerifyError};
use anchor_update::version::Version;
use std::path::{Path, PathBuf};
use std::process::Command;

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Keys {
    key: PathBuf,
    crt: PathBuf,
    der: PathBuf,
}

fn keys(dir: &Path, name: &str) -> Keys {
    let k = Keys {
        key: dir.join(format!("{name}.key")),
        crt: dir.join(format!("{name}.crt")),
        der: dir.join(format!("{name}.der")),
    };
    run(Command::new("openssl")
        .args([
            "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}/"))
        .arg("-keyout")
        .arg(&k.key)
        .arg("-out")
        .arg(&k.crt));
    run(Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&k.crt)
        .arg("-out")
        .arg(&k.der));
    k
}

/// A small signed UKI of `version` (the stub plus .osrel and a dummy .linux).
fn uki(dir: &Path, version: &str, k: &Keys) -> PathBuf {
    let osrel = dir.join(format!("osrel-{version}"));
    std::fs::write(
        &osrel,
        format!("ID=anchor\nIMAGE_ID=anchor\nIMAGE_VERSION={version}\n"),
    )
    .unwrap();
    let linux = dir.join("linux");
    std::fs::write(&linux, vec![0x5a; 200_000]).unwrap();
    let unsigned = dir.join(format!("u-{version}.efi"));
    run(Command::new("objcopy")
        .arg("--add-section")
        .arg(format!(".osrel={}", osrel.display()))
        .args(["--change-section-vma", ".osrel=0x20000", "--add-section"])
        .arg(format!(".linux={}", linux.display()))
        .args(["--change-section-vma", ".linux=0x21000", STUB])
        .arg(&unsigned));
    sign(dir, &unsigned, &format!("anchor-{version}.efi"), k)
}

/// Sign `unsigned` with `k` as `dir/name`.
fn sign(dir: &Path, unsigned: &Path, name: &str, k: &Keys) -> PathBuf {
    let signed = dir.join(name);
    run(Command::new("sbsign")
        .arg("--key")
        .arg(&k.key)
        .arg("--cert")
        .arg(&k.crt)
        .arg("--output")
        .arg(&signed)
        .arg(unsigned));
    signed
}

/// A signed UKI of `version` whose PE header says it is built for `machine` (the COFF
/// Machine field, patched before signing: the signature is valid).
fn uki_for_machine(dir: &Path, version: &str, machine: u16, k: &Keys) -> PathBuf {
    uki(dir, version, k);
    let mut image = std::fs::read(dir.join(format!("u-{version}.efi"))).unwrap();
    let nt = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
    image[nt + 4..nt + 6].copy_from_slice(&machine.to_le_bytes());
    let unsigned = dir.join(format!("u-{version}-{machine:x}.efi"));
    std::fs::write(&unsigned, image).unwrap();
    sign(
        dir,
        &unsigned,
        &format!("anchor-{version}-{machine:x}.efi"),
        k,
    )
}

struct World {
    dir: tempfile::TempDir,
    k: Keys,
    esp: Esp,
}

fn world() -> World {
    world_in(tempfile::tempdir().unwrap())
}

/// A world under the build's own scratch directory, which is on the build cache's disk
/// (the default temporary directory may be a tmpfs, where no read reaches a device).
fn world_on_disk() -> World {
    world_in(tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap())
}

fn world_in(dir: tempfile::TempDir) -> World {
    let k = keys(dir.path(), "db");
    let esp = Esp::new(dir.path().join("esp"));
    std::fs::create_dir_all(esp.entry_dir()).unwrap();
    World { dir, k, esp }
}

impl World {
    fn trust(&self) -> Trust {
        Trust::from_der(&std::fs::read(&self.k.der).unwrap()).unwrap()
    }
    fn put(&self, name: &str, image: &Path) {
        std::fs::copy(image, self.esp.entry_path(name)).unwrap();
    }
    /// (name, sha256) of every file in EFI/Linux.
    fn listing(&self) -> Vec<(String, Vec<u8>)> {
        use sha2::Digest;
        let mut v: Vec<_> = std::fs::read_dir(self.esp.entry_dir())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let data = std::fs::read(e.path()).unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    sha2::Sha256::digest(data).to_vec(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

struct Quiet;
impl Observer for Quiet {
    fn after(&mut self, _: Step, _: &str) {}
}

fn running(slot: Slot, v: &str) -> Running {
    Running {
        slot: Some(slot),
        version: Some(Version::parse(v).unwrap()),
    }
}

#[test]
fn verify_accepts_ours_and_refuses_tampered_foreign_and_unsigned() {
    let w = world();
    let good = uki(w.dir.path(), "1", &w.k);
    let trust = w.trust();
    verify::verify(&std::fs::read(&good).unwrap(), &trust).unwrap();
    // Every single-byte change in the signed range is caught (sample of offsets).
    let bytes = std::fs::read(&good).unwrap();
    for at in [0x80usize, 0x400, 0x20400, bytes.len() / 2] {
        let mut t = bytes.clone();
        t[at] ^= 0x01;
        assert!(
            verify::verify(&t, &trust).is_err(),
            "flip at {at:#x} accepted"
        );
    }
    let foreign = keys(w.dir.path(), "foreign");
    let f = uki(w.dir.path(), "2", &foreign);
    assert_eq!(
        verify::verify(&std::fs::read(f).unwrap(), &trust),
        Err(VerifyError::ForeignSigner)
    );
    let unsigned = std::fs::read(w.dir.path().join("u-1.efi")).unwrap();
    assert_eq!(
        verify::verify(&unsigned, &trust),
        Err(VerifyError::Unsigned)
    );
    assert!(matches!(
        verify::verify(b"MZ", &trust),
        Err(VerifyError::NotPe(_))
    ));
}

#[test]
fn apply_writes_the_inactive_slot_and_arms_it() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    let v2 = uki(w.dir.path(), "2", &w.k);
    let done = apply::apply(
        &w.esp,
        v2.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    )
    .unwrap();
    assert_eq!(
        (done.slot, done.file.as_str()),
        (Slot::B, "anchor-B+3-0.efi")
    );
    assert_eq!(
        std::fs::read(w.esp.entry_path("anchor-B+3-0.efi")).unwrap(),
        std::fs::read(&v2).unwrap()
    );
    let names: Vec<String> = w.listing().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["anchor-A.efi", "anchor-B+3-0.efi"]);
    let report = anchor_update::status::report(&w.esp, Some(Slot::A)).unwrap();
    assert_eq!(
        report,
        "slot A: version 1, good (running) [anchor-A.efi]\n\
         slot B: version 2, on trial: 3 tries left, 0 done [anchor-B+3-0.efi]\n\
         next boot: slot B\n"
    );
}

#[test]
fn refusals_write_nothing() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "2", &w.k));
    w.put("anchor-B.efi", &uki(w.dir.path(), "1.5", &w.k));
    let before = w.listing();
    let trust = w.trust();
    let run = running(Slot::A, "2");
    let try_apply = |file: &Path, r: &Running| {
        apply::apply(&w.esp, file.to_str().unwrap(), &trust, r, 3, &mut Quiet).unwrap_err()
    };
    // Older and equal versions.
    for v in ["1", "2", "2.0"] {
        let e = try_apply(&uki(w.dir.path(), v, &w.k), &run);
        assert!(matches!(e, ApplyError::Downgrade { .. }), "{v}: {e}");
        assert!(e.to_string().contains("no downgrades"), "{e}");
    }
    // The floor is also every good slot: running 1 but slot A holds 2.
    let e = try_apply(&uki(w.dir.path(), "1.9", &w.k), &running(Slot::B, "1.5"));
    assert!(matches!(e, ApplyError::Downgrade { .. }), "{e}");
    // Tampered (a byte of the signed image changed): refused before anything is written.
    let mut t = std::fs::read(uki(w.dir.path(), "3", &w.k)).unwrap();
    let n = t.len();
    t[n / 3] ^= 0xff;
    let tampered = w.dir.path().join("tampered.efi");
    std::fs::write(&tampered, t).unwrap();
    assert!(matches!(
        try_apply(&tampered, &run),
        ApplyError::Untrusted(VerifyError::Tampered)
    ));
    // Foreign signer, unsigned, not a PE, missing.
    let foreign = keys(w.dir.path(), "foreign");
    let f = uki(w.dir.path(), "4", &foreign);
    assert!(matches!(
        try_apply(&f, &run),
        ApplyError::Untrusted(VerifyError::ForeignSigner)
    ));
    let u = w.dir.path().join("u-4.efi");
    assert!(matches!(
        try_apply(&u, &run),
        ApplyError::Untrusted(VerifyError::Unsigned)
    ));
    assert!(matches!(
        try_apply(Path::new("/nonexistent"), &run),
        ApplyError::Read { .. }
    ));
    assert_eq!(w.listing(), before, "a refused update changed the ESP");
}

#[test]
fn a_slot_on_trial_is_not_replaced() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    w.put("anchor-B+2-1.efi", &uki(w.dir.path(), "2", &w.k));
    let before = w.listing();
    let v3 = uki(w.dir.path(), "3", &w.k);
    let e = apply::apply(
        &w.esp,
        v3.to_str().unwrap(),
        &w.trust(),
        &running(Slot::B, "2"),
        3,
        &mut Quiet,
    )
    .unwrap_err();
    assert!(matches!(e, ApplyError::RunningNotBlessed(Slot::B)), "{e}");
    assert_eq!(w.listing(), before);
}

/// After each step, the slot systemd-boot would boot holds a complete image we signed,
/// and the running slot is untouched.
struct Checker<'a> {
    w: &'a World,
    old: Vec<u8>,
    seen: Vec<Step>,
}

impl Observer for Checker<'_> {
    fn after(&mut self, step: Step, _: &str) {
        self.seen.push(step);
        let state = self.w.esp.scan().unwrap();
        assert_eq!(
            std::fs::read(self.w.esp.entry_path("anchor-A.efi")).unwrap(),
            self.old,
            "running slot changed at {step:?}"
        );
        let cands: Vec<_> = Slot::ALL
            .iter()
            .filter_map(|&s| {
                let f = state.single(s)?;
                let version = self.w.esp.version_of(&f.file).ok()?;
                Some((s, f.entry.counter, version))
            })
            .collect();
        let next = next_boot(&cands).unwrap();
        let file = &state.single(next).unwrap().file;
        let image = std::fs::read(self.w.esp.entry_path(file)).unwrap();
        verify::verify(&image, &self.w.trust()).unwrap();
        let expect = if step == Step::Arm { Slot::B } else { Slot::A };
        assert_eq!(next, expect, "after {step:?}");
    }
}

#[test]
fn every_step_leaves_a_bootable_esp_and_leftovers_are_cleaned() {
    let w = world();
    let v1 = uki(w.dir.path(), "1", &w.k);
    w.put("anchor-A.efi", &v1);
    // An old bad slot B and a leftover temp from an interrupted apply.
    w.put("anchor-B+0-3.efi", &uki(w.dir.path(), "1.1", &w.k));
    std::fs::write(w.esp.entry_path("anchor-B.efi.new"), b"half an image").unwrap();
    let v2 = uki(w.dir.path(), "2", &w.k);
    let mut c = Checker {
        w: &w,
        old: std::fs::read(&v1).unwrap(),
        seen: Vec::new(),
    };
    apply::apply(
        &w.esp,
        v2.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        2,
        &mut c,
    )
    .unwrap();
    assert_eq!(c.seen, Step::ALL);
    let names: Vec<String> = w.listing().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["anchor-A.efi", "anchor-B+2-0.efi"]);
    assert_eq!(
        w.esp.scan().unwrap().single(Slot::B).unwrap().entry.counter,
        Counter::Counting { left: 2, done: 0 }
    );
}

#[test]
fn anchorctl_update_cli() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    let v2 = uki(w.dir.path(), "2", &w.k);
    let ctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_anchor-update"))
            .args(args)
            .arg("--esp")
            .arg(w.esp.root())
            .arg("--cert")
            .arg(&w.k.der)
            .output()
            .unwrap();
        // Progress and status on stdout, an error on stderr.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            assert!(out.stderr.is_empty(), "{text}");
        } else if out.status.code() == Some(1) {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.starts_with("anchor-update: error: "), "{text}");
        }
        (out.status.code(), text)
    };
    let (code, out) = ctl(&[
        "apply",
        v2.to_str().unwrap(),
        "--tries",
        "2",
        "--running",
        "A",
    ]);
    assert_eq!(code, Some(0), "{out}");
    for step in ["verify", "clean", "write", "sync", "arm"] {
        assert!(
            out.contains(&format!("anchor-update: apply: {step}: ")),
            "{out}"
        );
    }
    assert!(out.contains("slot B armed: anchor-B+2-0.efi"), "{out}");
    let (code, out) = ctl(&["status"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("anchor-update: slot B: version 2, on trial: 2 tries left, 0 done"),
        "{out}"
    );
    // Slot A (good, version 1) is the floor: version 1 again is refused.
    let v1 = w.dir.path().join("anchor-1.efi");
    let (code, out) = ctl(&["apply", v1.to_str().unwrap(), "--running", "A"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("error: update refused, nothing written: version 1 is not newer than 1"),
        "{out}"
    );
    let (code, _) = ctl(&[
        "apply",
        v2.to_str().unwrap(),
        "--tries",
        "0",
        "--running",
        "A",
    ]);
    // Out of 1..=9: a usage error (exit 2), before anything is read.
    assert_eq!(code, Some(2));
}

#[test]
fn a_leftover_identical_to_a_slot_is_not_removed() {
    // A power cut inside the arm rename can leave anchor-B.efi.new and anchor-B+3-0.efi
    // naming the same FAT clusters; removing the leftover would free the slot's data.
    let w = world();
    let v1 = uki(w.dir.path(), "1", &w.k);
    let v2 = uki(w.dir.path(), "2", &w.k);
    w.put("anchor-A.efi", &v1);
    w.put("anchor-B+3-0.efi", &v2);
    w.put("anchor-B.efi.new", &v2);
    let before = w.listing();
    let v3 = uki(w.dir.path(), "3", &w.k);
    let e = apply::apply(
        &w.esp,
        v3.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    )
    .unwrap_err();
    assert!(matches!(e, ApplyError::Twin { .. }), "{e}");
    assert!(e.to_string().contains("fsck.vfat"), "{e}");
    assert_eq!(w.listing(), before);
}

/// The same power cut inside a counter rename (systemd-boot's, or bless's) can leave the
/// slot apply replaces under two names on the same FAT clusters. clean removed both: the
/// second removal freed clusters already freed (and maybe reused), corrupting the FAT. Like
/// a leftover twin, it is refused, nothing removed.
#[test]
fn a_target_slot_under_two_names_with_the_same_bytes_is_not_removed() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    let v2 = uki(w.dir.path(), "2", &w.k);
    w.put("anchor-B+3-0.efi", &v2);
    w.put("anchor-B+0-3.efi", &v2);
    let before = w.listing();
    let v3 = uki(w.dir.path(), "3", &w.k);
    let e = apply::apply(
        &w.esp,
        v3.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    )
    .unwrap_err();
    assert!(matches!(e, ApplyError::Twin { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("anchor-B+0-3.efi") && text.contains("anchor-B+3-0.efi"),
        "{text}"
    );
    assert!(text.contains("fsck.vfat"), "{text}");
    assert_eq!(w.listing(), before);
}

// ---- Hostile and broken inputs ----

/// A power cut inside a counter rename (systemd-boot's before each boot, FAT has no atomic
/// rename) can leave the running slot under two trial names. The slot is still on trial:
/// the other, known-good slot must not be replaced.
#[test]
fn a_running_slot_under_two_trial_names_is_still_on_trial() {
    let w = world();
    let v2 = uki(w.dir.path(), "2", &w.k);
    w.put("anchor-A+3-0.efi", &v2);
    w.put("anchor-A+2-1.efi", &v2);
    w.put("anchor-B.efi", &uki(w.dir.path(), "1", &w.k));
    let before = w.listing();
    let v3 = uki(w.dir.path(), "3", &w.k);
    let r = apply::apply(
        &w.esp,
        v3.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "2"),
        3,
        &mut Quiet,
    );
    assert!(
        matches!(r, Err(ApplyError::RunningNotBlessed(Slot::A))),
        "{r:?}"
    );
    assert_eq!(w.listing(), before, "the known-good slot B was replaced");
}

/// An update path that is a fifo (or a device: /dev/zero has length 0 too) is refused
/// as not a regular file; it is never read (a fifo without writer would block, /dev/zero
/// would be read without bound).
#[test]
fn an_update_that_is_not_a_regular_file_is_refused() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    let before = w.listing();
    let fifo = anchor_testkit::Fifo::fed(&w.dir.path().join("update.fifo"), b"MZ not an image");
    let r = apply::apply(
        &w.esp,
        fifo.as_str(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    );
    drop(fifo);
    match &r {
        Err(ApplyError::Read { err, .. }) => {
            assert!(err.to_string().contains("not a regular file"), "{err}")
        }
        other => panic!("a fifo was read as an update: {other:?}"),
    }
    assert_eq!(w.listing(), before);
}

/// Two applies at once: one must not arm the other's file (unsynced, maybe half
/// written) under its own name and report its own version. P1 stops after sync; P2
/// cleans (removes P1's temp), writes its own temp; P1 then arms.
#[test]
fn concurrent_applies_do_not_arm_each_others_files() {
    use std::sync::mpsc;
    let w = std::sync::Arc::new(world());
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    let v2 = uki(w.dir.path(), "2", &w.k);
    let v3 = uki(w.dir.path(), "3", &w.k);
    let (synced_tx, synced_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();

    struct Pause {
        synced: mpsc::Sender<()>,
        go: mpsc::Receiver<()>,
    }
    impl Observer for Pause {
        fn after(&mut self, step: Step, _: &str) {
            if step == Step::Sync {
                let _ = self.synced.send(());
                let _ = self.go.recv();
            }
        }
    }
    let (w1, p1) = (w.clone(), v2.clone());
    std::thread::spawn(move || {
        let mut obs = Pause {
            synced: synced_tx,
            go: go_rx,
        };
        let r = apply::apply(
            &w1.esp,
            p1.to_str().unwrap(),
            &w1.trust(),
            &running(Slot::A, "1"),
            3,
            &mut obs,
        );
        let _ = done_tx.send(r);
    });
    synced_rx.recv().unwrap();

    struct Second {
        go: mpsc::Sender<()>,
        done: mpsc::Receiver<Result<apply::Applied, ApplyError>>,
        first: Option<Result<apply::Applied, ApplyError>>,
    }
    impl Observer for Second {
        fn after(&mut self, step: Step, _: &str) {
            if step == Step::Write && self.first.is_none() {
                let _ = self.go.send(());
                self.first = self.done.recv().ok();
            }
        }
    }
    let mut second = Second {
        go: go_tx,
        done: done_rx,
        first: None,
    };
    let r2 = apply::apply(
        &w.esp,
        v3.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut second,
    );
    if second.first.is_none() {
        let _ = second.go.send(());
        second.first = second.done.recv().ok();
    }
    let r1 = second.first.unwrap();
    // Whatever each reports, an apply that says it armed a file armed its own bytes.
    for (r, image) in [(&r1, &v2), (&r2, &v3)] {
        if let Ok(a) = r {
            assert!(
                std::fs::read(w.esp.entry_path(&a.file)).unwrap() == std::fs::read(image).unwrap(),
                "apply of {} reported {a:?}, but {} holds other bytes (other apply: {:?})",
                image.display(),
                a.file,
                if std::ptr::eq(r, &r1) { &r2 } else { &r1 }
            );
        }
    }
    assert!(r1.is_ok() || r2.is_ok(), "{r1:?} {r2:?}");
}

#[test]
fn status_refuses_an_esp_dir_that_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let missing = dir.path().join("missing");
    for esp in [&missing, &file] {
        let out = Command::new(env!("CARGO_BIN_EXE_anchor-update"))
            .arg("status")
            .arg("--esp")
            .arg(esp)
            .output()
            .unwrap();
        assert!(out.stdout.is_empty());
        let all = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{esp:?}: {all}");
        assert!(all.contains(&format!("--esp {}: ", esp.display())), "{all}");
        assert!(!all.contains("slot A"), "{all}");
    }
    assert!(!missing.exists());
}

/// The slot said to be running (`--running`, or the loader's variables when this ESP is
/// not the one the machine booted from) has no image on this ESP, and the other slot
/// holds the only bootable one. Writing "the slot not running" would remove that image
/// first: until the new one is armed (and for good if it fails its health check) the
/// ESP has no bootable entry. Refused, nothing written.
#[test]
fn the_only_bootable_image_is_never_removed_for_a_slot_said_to_run() {
    let w = world();
    let v1 = uki(w.dir.path(), "1", &w.k);
    let v2 = uki(w.dir.path(), "2", &w.k);
    for only in ["anchor-B.efi", "anchor-B+2-1.efi"] {
        for f in std::fs::read_dir(w.esp.entry_dir()).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        w.put(only, &v1);
        let before = w.listing();
        let e = apply::apply(
            &w.esp,
            v2.to_str().unwrap(),
            &w.trust(),
            &running(Slot::A, "1"),
            3,
            &mut Quiet,
        )
        .unwrap_err();
        assert!(e.to_string().contains("nothing written"), "{only}: {e}");
        assert_eq!(w.listing(), before, "{only}: the ESP changed");
    }
    // A bad image is no loss: a recovery may write over it.
    for f in std::fs::read_dir(w.esp.entry_dir()).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    w.put("anchor-B+0-3.efi", &v1);
    apply::apply(
        &w.esp,
        v2.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    )
    .unwrap();
}

/// `status` names as the next boot only an image systemd-boot would list: one whose
/// `.osrel` reads. An unreadable image on trial was named over a readable bad one, and
/// with no readable image at all slot A was named.
#[test]
fn status_never_names_an_unreadable_image_as_the_next_boot() {
    let w = world();
    let v1 = uki(w.dir.path(), "1", &w.k);
    std::fs::write(w.esp.entry_path("anchor-A+3-0.efi"), b"MZ not an image").unwrap();
    w.put("anchor-B+0-3.efi", &v1);
    let report = anchor_update::status::report(&w.esp, None).unwrap();
    assert!(report.contains("slot A: unreadable ("), "{report}");
    assert!(
        report.ends_with("next boot: slot B (RECOVERY: every slot is bad)\n"),
        "{report}"
    );
    std::fs::remove_file(w.esp.entry_path("anchor-B+0-3.efi")).unwrap();
    std::fs::write(w.esp.entry_path("anchor-B.efi"), b"").unwrap();
    let report = anchor_update::status::report(&w.esp, None).unwrap();
    assert!(
        report.ends_with(
            "next boot: nothing to boot (RECOVERY: no slot's image can be read, and \
             systemd-boot lists none it cannot read)\n"
        ),
        "{report}"
    );
}

/// A slot file on the ESP that is a FIFO (an ESP directory given with `--esp` may hold
/// anything) is refused as not a regular file, never read: status and apply's floor
/// (which reads every good slot's version) blocked in open(2) until a writer came.
#[test]
fn a_slot_file_that_is_a_fifo_is_refused_not_read() {
    let w = world();
    let v2 = uki(w.dir.path(), "2", &w.k);
    let fifo = anchor_testkit::Fifo::fed(&w.esp.entry_path("anchor-A.efi"), b"MZ not an image");
    let report = anchor_update::status::report(&w.esp, Some(Slot::A));
    let r = apply::apply(
        &w.esp,
        v2.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    );
    drop(fifo);
    let report = report.unwrap();
    assert!(
        report.contains("slot A: unreadable (") && report.contains("not a regular file"),
        "{report}"
    );
    match &r {
        Err(ApplyError::Esp(e)) => assert!(e.to_string().contains("not a regular file"), "{e}"),
        other => panic!("a fifo slot file was read: {other:?}"),
    }
    let names: Vec<String> = std::fs::read_dir(w.esp.entry_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["anchor-A.efi".to_string()], "nothing written");
}

/// systemd-boot takes a file ending in `.efi` in any case as a boot entry: a slot file
/// named `anchor-A.Efi` is slot A to status (it was "empty"), and apply neither sees the
/// slot as empty nor leaves it beside the new one.
#[test]
fn a_slot_file_with_a_mixed_case_suffix_is_still_the_slot() {
    let w = world();
    w.put("anchor-A.Efi", &uki(w.dir.path(), "1", &w.k));
    w.put("anchor-B+0-3.eFI", &uki(w.dir.path(), "1", &w.k));
    let report = anchor_update::status::report(&w.esp, Some(Slot::A)).unwrap();
    assert!(
        report.contains("slot A: version 1, good (running) [anchor-A.Efi]"),
        "{report}"
    );
    assert!(report.contains("slot B: version 1, bad: "), "{report}");
    let v2 = uki(w.dir.path(), "2", &w.k);
    let r = apply::apply(
        &w.esp,
        v2.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    );
    assert!(r.is_ok(), "{r:?}");
    let names: Vec<String> = w.listing().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["anchor-A.Efi", "anchor-B+3-0.efi"]);
}

/// A `--cert` that is a FIFO is refused as not a regular file, never read: apply blocked
/// in open(2) until a writer came.
#[test]
fn a_cert_that_is_a_fifo_is_refused_not_read() {
    let w = world();
    let fifo = anchor_testkit::Fifo::fed(&w.dir.path().join("db.fifo"), b"not a certificate");
    let out = Command::new(env!("CARGO_BIN_EXE_anchor-update"))
        .args([
            "apply",
            "/nonexistent/update.efi",
            "--running",
            "A",
            "--esp",
        ])
        .arg(w.esp.root())
        .arg("--cert")
        .arg(fifo.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        format!(
            "anchor-update: error: trusted certificate {}: not a regular file\n",
            fifo.path().display()
        )
    );
}

/// `anchor-update apply` of a version 2 update (running slot A) whose write is cut short
/// halfway by a file size limit (the same failed write(2) as a full ESP): it must fail
/// with one line naming the write. The update's file.
fn apply_cut_short(w: &World) -> PathBuf {
    let v2 = uki(w.dir.path(), "2", &w.k);
    let limit = std::fs::metadata(&v2).unwrap().len() / 2;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchor-update"));
    cmd.arg("apply")
        .arg(&v2)
        .args(["--running", "A", "--esp"])
        .arg(w.esp.root())
        .arg("--cert")
        .arg(&w.k.der);
    anchor_testkit::limited(&mut cmd, libc::RLIMIT_FSIZE, limit);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("anchor-update: error: write "), "{err}");
    v2
}

/// A write cut short (here by a file size limit, as by a full ESP or an I/O error) leaves
/// no half-written file on the ESP: the running slot as it was and nothing else.
#[test]
fn a_write_cut_short_leaves_no_half_written_file() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    let before = w.listing();
    apply_cut_short(&w);
    assert_eq!(w.listing(), before);
}

/// A write cut short (a file size limit here, as an ESP filled up by another writer: the
/// same failed write(2)) while the ESP has room for the update beside the other slot's
/// image leaves both slots as they were: the old image of the slot being replaced stays
/// until the update is synced. Clean removed it before the write, so a failed apply left
/// one bootable slot instead of two.
#[test]
fn a_write_cut_short_keeps_both_slots_when_the_esp_has_room_for_three() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    w.put("anchor-B.efi", &uki(w.dir.path(), "0.5", &w.k));
    let before = w.listing();
    let v2 = apply_cut_short(&w);
    assert_eq!(
        w.listing(),
        before,
        "slot B's image was removed for a failed write"
    );
    // Without the limit the update replaces slot B at arm.
    let done = apply::apply(
        &w.esp,
        v2.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    )
    .unwrap();
    let names: Vec<String> = w.listing().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["anchor-A.efi", "anchor-B+3-0.efi"]);
    assert_eq!(done.file, "anchor-B+3-0.efi");
}

/// Something clean cannot remove (a directory named like a leftover or a slot file: an
/// ESP may hold anything) refuses the update before anything is removed. Clean removed
/// the other slot's image first and then failed on the leftover: a refused update had
/// left the machine with one bootable image instead of two.
#[test]
fn a_leftover_clean_cannot_remove_refuses_before_anything_is_removed() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "2", &w.k));
    w.put("anchor-B.efi", &uki(w.dir.path(), "1", &w.k));
    let names = |w: &World| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(w.esp.entry_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let v3 = uki(w.dir.path(), "3", &w.k);
    for odd in ["anchor-B.efi.new", "anchor-B+0-3.efi"] {
        std::fs::create_dir(w.esp.entry_path(odd)).unwrap();
        let before = names(&w);
        let e = apply::apply(
            &w.esp,
            v3.to_str().unwrap(),
            &w.trust(),
            &running(Slot::A, "2"),
            3,
            &mut Quiet,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("nothing written"), "{odd}: {text}");
        assert!(text.contains(odd), "{odd}: {text}");
        assert_eq!(names(&w), before, "{odd}: the ESP changed");
        std::fs::remove_dir(w.esp.entry_path(odd)).unwrap();
    }
}

/// An update signed with our key but built for another architecture (arm64 here, where
/// the slots hold x86-64 images) was armed: systemd-boot lists only images for its own
/// machine type, so it never booted, while `status` promised it for the next boot and the
/// pending update it replaced was gone. It is refused before anything is written.
#[test]
fn an_update_for_another_architecture_is_refused() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    w.put("anchor-B+3-0.efi", &uki(w.dir.path(), "2", &w.k));
    let before = w.listing();
    let arm64 = uki_for_machine(w.dir.path(), "3", 0xaa64, &w.k);
    verify::verify(&std::fs::read(&arm64).unwrap(), &w.trust()).unwrap();
    let e = apply::apply(
        &w.esp,
        arm64.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    )
    .unwrap_err();
    assert!(matches!(e, ApplyError::WrongMachine { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("update refused, nothing written: ")
            && text.contains("arm64")
            && text.contains("x86-64")
            && text.contains("anchor-A.efi"),
        "{text}"
    );
    assert_eq!(w.listing(), before, "a refused update changed the ESP");
    // The same image for this architecture goes in.
    let x86 = uki_for_machine(w.dir.path(), "3", 0x8664, &w.k);
    apply::apply(
        &w.esp,
        x86.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut Quiet,
    )
    .unwrap();
}

/// The recovery bless prints when no slot can boot ("write a signed image to the ESP from
/// another machine") was refused: every slot on trial or bad counted as "the running slot
/// has not passed its health check", which guards a known-good other slot, but here there
/// was none to guard. A slot that can no longer boot is now written over; a running slot
/// on trial still never replaces one that can boot.
#[test]
fn recovery_writes_over_a_bad_slot_when_no_slot_can_boot() {
    let w = world();
    let offline = |slot| Running {
        slot,
        version: None,
    };
    let apply_v = |v: &str, r: Running| {
        let file = uki(w.dir.path(), v, &w.k);
        apply::apply(
            &w.esp,
            file.to_str().unwrap(),
            &w.trust(),
            &r,
            3,
            &mut Quiet,
        )
    };
    // Both slots used their last try (bless said RECOVERY NEEDED).
    w.put("anchor-A+0-3.efi", &uki(w.dir.path(), "1", &w.k));
    w.put("anchor-B+0-3.efi", &uki(w.dir.path(), "2", &w.k));
    let a = std::fs::read(w.esp.entry_path("anchor-A+0-3.efi")).unwrap();
    let done = apply_v("3", offline(Some(Slot::A))).unwrap();
    assert_eq!(
        (done.slot, done.file.as_str()),
        (Slot::B, "anchor-B+3-0.efi")
    );
    assert_eq!(
        std::fs::read(w.esp.entry_path("anchor-A+0-3.efi")).unwrap(),
        a
    );
    // Only one slot, and it is bad: no --running needed.
    for f in std::fs::read_dir(w.esp.entry_dir()).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    w.put("anchor-A+0-3.efi", &uki(w.dir.path(), "1", &w.k));
    let done = apply_v("2", offline(None)).unwrap();
    assert_eq!(
        (done.slot, done.file.as_str()),
        (Slot::B, "anchor-B+3-0.efi")
    );
    // Running on its last try while the other slot can still boot: refused as before.
    let before = w.listing();
    let e = apply_v("4", offline(Some(Slot::A))).unwrap_err();
    assert!(matches!(e, ApplyError::RunningNotBlessed(Slot::A)), "{e}");
    assert_eq!(w.listing(), before);
}

/// A refused update is one line on stderr that names the file: the refusals about the
/// file itself (not signed, another signer, truncated, empty, not newer, too big) said
/// only "update refused, nothing written: the image is not signed", not which image.
#[test]
fn a_refused_update_is_one_line_naming_the_file() {
    let w = world();
    w.put("anchor-A.efi", &uki(w.dir.path(), "2", &w.k));
    let before = w.listing();
    let d = w.dir.path();
    let signed = std::fs::read(uki(d, "3", &w.k)).unwrap();
    let foreign = uki(d, "4", &keys(d, "foreign"));
    let truncated = d.join("truncated.efi");
    std::fs::write(&truncated, &signed[..signed.len() - 100]).unwrap();
    let empty = d.join("empty.efi");
    std::fs::write(&empty, b"").unwrap();
    let old = uki(d, "1", &w.k);
    let big = d.join("big.efi");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(apply::MAX_IMAGE + 1)
        .unwrap();
    let unsigned = d.join("u-3.efi");
    for (file, why) in [
        (&unsigned, "not signed"),
        (&foreign, "not our db key"),
        (&truncated, "refused"),
        (&empty, "not an EFI image"),
        (&old, "not newer than 2"),
        (&big, "more than"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_anchor-update"))
            .arg("apply")
            .arg(file)
            .arg("--esp")
            .arg(w.esp.root())
            .arg("--cert")
            .arg(&w.k.der)
            .arg("--running")
            .arg("A")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(out.stdout.is_empty(), "{file:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("anchor-update: error: ")
                && err.contains(why)
                && err.contains(&file.display().to_string()),
            "{err}"
        );
    }
    assert_eq!(w.listing(), before, "a refused update changed the ESP");
}

/// A counter of this thread's I/O (/proc/thread-self/io): `read_bytes` counts what it
/// made the kernel fetch from the block device, `rchar` every byte read(2) gave it.
fn thread_io(counter: &str) -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix(counter)?.strip_prefix(": ")?.parse().ok())
        .unwrap_or_else(|| panic!("no {counter} in /proc/thread-self/io:\n{io}"))
}

/// `counter` after the write step and after the sync step.
struct IoAt {
    counter: &'static str,
    write: u64,
    sync: u64,
}

impl Observer for IoAt {
    fn after(&mut self, step: Step, _: &str) {
        match step {
            Step::Write => self.write = thread_io(self.counter),
            Step::Sync => self.sync = thread_io(self.counter),
            _ => {}
        }
    }
}

/// The read-back after fsync checks what reached the disk: the written file's cached
/// pages are dropped first, so reading it back fetches every byte from the device
/// (this thread's read_bytes grows by at least the image). The read-back used to be
/// served from the page cache the write had just filled, and checked nothing.
#[test]
fn the_read_back_fetches_the_image_from_the_disk_not_the_page_cache() {
    let w = world_on_disk();
    w.put("anchor-A.efi", &uki(w.dir.path(), "1", &w.k));
    let v2 = uki(w.dir.path(), "2", &w.k);
    let len = std::fs::metadata(&v2).unwrap().len();
    let mut io = IoAt {
        counter: "read_bytes",
        write: 0,
        sync: 0,
    };
    apply::apply(
        &w.esp,
        v2.to_str().unwrap(),
        &w.trust(),
        &running(Slot::A, "1"),
        3,
        &mut io,
    )
    .unwrap();
    let fetched = io.sync - io.write;
    assert!(
        fetched >= len,
        "the read-back fetched {fetched} bytes from the device for a {len}-byte image: it \
         came from the page cache (or {} is not on a block-device filesystem)",
        w.dir.path().display()
    );
}

/// Verify reads the update and each slot image it needs once: the running slot's image
/// gives both the version floor and the machine type. It was read twice (once for each),
/// so the two checks could see different bytes.
#[test]
fn verify_reads_the_running_slot_image_once() {
    let w = world();
    let v1 = uki(w.dir.path(), "1", &w.k);
    w.put("anchor-A.efi", &v1);
    let v2 = uki(w.dir.path(), "2", &w.k);
    let (slot_len, update_len) = (
        std::fs::metadata(&v1).unwrap().len(),
        std::fs::metadata(&v2).unwrap().len(),
    );
    let trust = w.trust();
    // rchar at the start, and (below) when verify is done.
    struct AtVerify(u64);
    impl Observer for AtVerify {
        fn after(&mut self, step: Step, _: &str) {
            if step == Step::Verify {
                self.0 = thread_io("rchar");
            }
        }
    }
    let mut at = AtVerify(0);
    let start = thread_io("rchar");
    apply::apply(
        &w.esp,
        v2.to_str().unwrap(),
        &trust,
        &running(Slot::A, "1"),
        3,
        &mut at,
    )
    .unwrap();
    let read = at.0 - start;
    assert!(
        read >= update_len + slot_len && read < update_len + slot_len + slot_len / 2,
        "verify read {read} bytes: the update is {update_len}, the running slot's image \
         {slot_len} (read more than once?)"
    );
}
