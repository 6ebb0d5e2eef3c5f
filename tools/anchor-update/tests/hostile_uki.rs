// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-uki reads UKIs it did not build yet: what a section header claims is not
//! allocated. In its own binary: the child runs under an address-space limit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{stub_with_vsize, STUB};

/// `anchor-uki pcr11` loads every section as the firmware would: a header claiming a
/// 4 GiB section is refused with a message, not allocated (which aborted the process
/// under an address-space limit, or took 4 GiB per section without one).
#[test]
fn anchor_uki_refuses_sections_that_load_to_more_than_an_image_may_hold() {
    let d = tempfile::tempdir().unwrap();
    let uki = d.path().join("hostile.efi");
    std::fs::write(&uki, stub_with_vsize(0xffff_fff0)).unwrap();
    let limit: u64 = 3 << 30;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_anchor-uki"));
    cmd.arg("pcr11").arg(&uki);
    anchor_testkit::limited(&mut cmd, libc::RLIMIT_AS, limit);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!("anchor-uki: {}: ", uki.display())) && err.lines().count() == 1,
        "{err}"
    );
    assert!(err.contains("more than"), "{err}");
    assert!(out.stdout.is_empty());
}

/// `dir`/anchor.efi: the stub with a nonzero timestamp, as objcopy writes it (finalize has
/// something to change); its path and bytes.
fn stamped_uki(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let uki = dir.join("anchor.efi");
    let mut bytes = std::fs::read(STUB).unwrap();
    let pe = u32::from_le_bytes(bytes[0x3c..0x40].try_into().unwrap()) as usize;
    bytes[pe + 8..pe + 12].copy_from_slice(&0x6000_0000u32.to_le_bytes());
    std::fs::write(&uki, &bytes).unwrap();
    (uki, bytes)
}

/// `anchor-uki finalize` rewrites the UKI in place: a write cut short (here by a file
/// size limit, as by a full disk) leaves the UKI as it was, not truncated.
#[test]
fn finalize_cut_short_leaves_the_uki_whole() {
    let d = tempfile::tempdir().unwrap();
    let (uki, bytes) = stamped_uki(d.path());
    let limit = (bytes.len() / 2) as u64;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_anchor-uki"));
    cmd.arg("finalize").arg(&uki);
    anchor_testkit::limited(&mut cmd, libc::RLIMIT_FSIZE, limit);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!("anchor-uki: {}: ", uki.display())) && err.lines().count() == 1,
        "{err}"
    );
    assert!(std::fs::read(&uki).unwrap() == bytes, "the UKI was changed");
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "a temporary file was left: {left:?}");
}

/// Every file anchor-uki reads is a regular file: a FIFO is refused, not waited on.
#[test]
fn anchor_uki_refuses_a_fifo() {
    let d = tempfile::tempdir().unwrap();
    let fifo = anchor_testkit::Fifo::fed(&d.path().join("in.fifo"), b"MZ junk");
    let f = fifo.as_str();
    let outs: Vec<_> = [
        &["pcr11", f][..],
        &["version", f],
        &["verify", STUB, "--cert", f],
    ]
    .iter()
    .map(|args| {
        std::process::Command::new(env!("CARGO_BIN_EXE_anchor-uki"))
            .args(*args)
            .output()
            .unwrap()
    })
    .collect();
    let f = f.to_string();
    drop(fifo);
    for out in outs {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err, format!("anchor-uki: {f}: not a regular file\n"));
    }
}

/// `anchor-uki finalize` writes its temporary file only as a new file: a symlink planted
/// under the temporary name (`.NAME.finalize` beside the UKI) was followed, so the file
/// it pointed to was truncated and overwritten with the UKI, and the symlink was then
/// renamed over the UKI. Now a leftover under that name is removed (never followed) and
/// the UKI is replaced by a regular file.
#[test]
fn finalize_never_writes_through_a_symlink_at_its_temporary_name() {
    let d = tempfile::tempdir().unwrap();
    let (uki, bytes) = stamped_uki(d.path());
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, d.path().join(".anchor.efi.finalize")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anchor-uki"))
        .arg("finalize")
        .arg(&uki)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "written through"
    );
    let meta = std::fs::symlink_metadata(&uki).unwrap();
    assert!(meta.file_type().is_file(), "the UKI is now {meta:?}");
    let done = std::fs::read(&uki).unwrap();
    assert_eq!(done.len(), bytes.len());
    assert_ne!(done, bytes, "not finalized");
    assert!(!d.path().join(".anchor.efi.finalize").exists());
}

/// uki/build.sh took any dotted number as IMAGE_VERSION, while anchor-update reads at most
/// 8 parts of at most 9 digits each: a base built as version 202612021234 (a timestamp)
/// was signed and booted, but every later `apply` on it was refused (the floor reads the
/// running slot's version: "version part ... is not a number") and `status` called it
/// unreadable. The build now refuses such a version, before it makes keys or builds.
#[test]
fn build_refuses_a_version_anchor_update_cannot_read() {
    let d = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let kernel = file("bzImage", "kernel");
    let initramfs = file("initramfs", "initramfs");
    let helper = file("anchor-update", "#!/bin/sh\n");
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cache = d.path().join("cache");
    let uki = d.path().join("out/anchor.efi");
    for version in ["202612021234", "1.2.3.4.5.6.7.8.9"] {
        let out = std::process::Command::new("bash")
            .arg(root.join("uki/build.sh"))
            .args(["--version", version, "--kernel"])
            .arg(&kernel)
            .arg("--initramfs")
            .arg(&initramfs)
            .arg("--update-helper")
            .arg(&helper)
            .arg("--out")
            .arg(&uki)
            .env("ANCHOR_CACHE", &cache)
            .env("ANCHOR_OUT", d.path().join("out"))
            .env_remove("ANCHOR_KEYS")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{version}: {err}");
        assert!(
            err.starts_with(&format!("uki/build: version {version}: ")) && err.lines().count() == 1,
            "{err}"
        );
        assert!(
            !uki.exists() && !cache.exists(),
            "{version}: built or made keys"
        );
    }
}

/// `anchor-uki check-osrel` (uki/build.sh runs it on the os-release before it becomes the
/// `.osrel`) refuses a value systemd-boot and a shell would read differently, in one line
/// naming the file and the key, and prints the version of a plain one.
#[test]
fn check_osrel_refuses_a_value_read_two_ways_naming_file_and_key() {
    let d = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let f = d.path().join("os-release");
        std::fs::write(&f, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_anchor-uki"))
            .arg("check-osrel")
            .arg(&f)
            .output()
            .unwrap();
        let (o, e) = (out.stdout, out.stderr);
        (
            out.status.code(),
            String::from_utf8(o).unwrap(),
            String::from_utf8(e).unwrap(),
            f,
        )
    };
    let (code, out, err, _) = run("NAME=\"Anchor OS\"\nID=anchor\nIMAGE_VERSION=2.1\n");
    assert_eq!((code, out.as_str()), (Some(0), "2.1\n"), "{err}");
    // A shell reads 9; systemd-boot reads '9' (with the quotes), anchor-update used to read 9.
    let (code, out, err, f) = run("ID=anchor\nIMAGE_VERSION='9'\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        err.starts_with(&format!(
            "anchor-uki: {}: IMAGE_VERSION (line 2): ",
            f.display()
        )) && err.lines().count() == 1,
        "{err}"
    );
}
