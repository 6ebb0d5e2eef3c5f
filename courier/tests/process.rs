// SPDX-License-Identifier: GPL-3.0-or-later
//! The `anchor-courier` binary as bay0 starts it (root, the two connections as stdin and
//! stdout, its result on stderr), in a private mount namespace with its own /run so the
//! jail it builds never touches the host's. While it works it holds nothing but its three
//! descriptors, runs as uid 63999 with no capability, no_new_privs and seccomp, in an
//! empty root; killed mid-transfer, it leaves nothing at the destination (the real
//! agent's store).
//!
//! Needs root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use anchor_agent::courier::{self as agent, Home};
use anchor_proto::courier::{Data, Launch};
use anchor_proto::umbilical::{write_frame, Frames, PAYLOAD_MAX};
use sha2::{Digest, Sha256};

const COURIER: &str = env!("CARGO_BIN_EXE_anchor-courier");

fn home(name: &str) -> (PathBuf, Home) {
    common::home("process", name)
}

/// Between fork and exec: a private mount namespace with a fresh tmpfs on /run, as
/// bay0's own /run is for the courier.
fn private_run() -> std::io::Result<()> {
    let none = core::ptr::null();
    let fail = || Err(std::io::Error::last_os_error());
    // SAFETY: a plain system call on the child.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return fail();
    }
    let flags = libc::MS_REC | libc::MS_PRIVATE;
    // SAFETY: NUL-terminated static strings and null pointers mount(2) accepts.
    if unsafe { libc::mount(c"none".as_ptr(), c"/".as_ptr(), none, flags, none.cast()) } != 0 {
        return fail();
    }
    let (run, tmpfs) = (c"/run".as_ptr(), c"tmpfs".as_ptr());
    // SAFETY: as above.
    if unsafe { libc::mount(c"run".as_ptr(), run, tmpfs, 0, none.cast()) } != 0 {
        return fail();
    }
    Ok(())
}

/// Starts the courier; its process, the source's and the destination's ends.
fn start(l: &Launch) -> (Child, UnixStream, UnixStream) {
    let (src_courier, src) = UnixStream::pair().unwrap();
    let (dst_courier, dst) = UnixStream::pair().unwrap();
    let mut cmd = Command::new(COURIER);
    cmd.args(l.args())
        .stdin(Stdio::from(OwnedFd::from(src_courier)))
        .stdout(Stdio::from(OwnedFd::from(dst_courier)))
        .stderr(Stdio::piped());
    // SAFETY: `private_run` makes only async-signal-safe system calls.
    unsafe { cmd.pre_exec(private_run) };
    (cmd.spawn().unwrap(), src, dst)
}

fn launch(data: &[u8], id: u8) -> Launch {
    Launch {
        id: [id; 16],
        token: [4; 16],
        from: "web".into(),
        to: "work".into(),
        name: "item.bin".into(),
        size: data.len() as u64,
        sha256: Sha256::digest(data).into(),
        vsock: [false, false],
    }
}

/// Plays the source agent: answers the fetch, sends the first `pause_at` bytes, waits for
/// a word on `go`, sends the rest.
fn source(mut s: UnixStream, data: Vec<u8>, pause_at: usize, go: mpsc::Receiver<()>) {
    let mut dec = Frames::<Data>::default();
    let mut p = [0u8; PAYLOAD_MAX];
    let (k, n) = dec.read_from(&mut s, &mut p).unwrap().unwrap();
    assert_eq!((k, &p[..n]), (Data::Fetch, &[4u8; 16][..]));
    write_frame(&mut s, Data::Offer, &(data.len() as u64).to_le_bytes()).unwrap();
    s.write_all(&data[..pause_at]).unwrap();
    if go.recv().is_ok() {
        let _ = s.write_all(&data[pause_at..]);
    }
}

/// The courier's exit status and all it wrote on stderr.
fn finish(child: &mut Child) -> (std::process::ExitStatus, String) {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap(), err)
}

fn status_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
}

/// Waits until the destination holds `bytes` of the item (its unnamed file's size).
fn wait_received(dir: &std::path::Path, bytes: u64) {
    let prefix = format!("{}/Incoming/#", dir.display());
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let got = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .find_map(|e| {
                let t = std::fs::read_link(e.path()).ok()?;
                t.to_string_lossy()
                    .starts_with(&prefix)
                    .then(|| std::fs::metadata(e.path()).map(|m| m.len()).unwrap_or(0))
            });
        if got.is_some_and(|n| n >= bytes) {
            return;
        }
        assert!(
            Instant::now() < end,
            "the destination never received {bytes} bytes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_courier_runs_unprivileged_confined_and_delivers() {
    let (dir, home) = home("ok");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let l = launch(&data, 1);
    let (mut child, src, mut dst) = start(&l);
    let (go, wait) = mpsc::channel();
    let d = data.clone();
    let s = std::thread::spawn(move || source(src, d, 1_000_000, wait));
    let h = home.clone();
    let a = std::thread::spawn(move || agent::handle_data(&mut dst, &h));
    // Mid-transfer: what the courier is and holds.
    wait_received(&dir, 1_000_000);
    let st = status_of(child.id());
    assert_eq!(field(&st, "Uid:"), "63999\t63999\t63999\t63999", "{st}");
    assert_eq!(field(&st, "Gid:"), "63999\t63999\t63999\t63999", "{st}");
    assert_eq!(field(&st, "Groups:"), "");
    assert_eq!(field(&st, "CapEff:"), "0000000000000000");
    assert_eq!(field(&st, "CapPrm:"), "0000000000000000");
    assert_eq!(field(&st, "CapBnd:"), "0000000000000000");
    assert_eq!(field(&st, "NoNewPrivs:"), "1");
    assert_eq!(field(&st, "Seccomp:"), "2");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        fds.len(),
        3,
        "it holds more than its two connections and stderr: {fds:?}"
    );
    let root: Vec<String> = std::fs::read_dir(format!("/proc/{}/root", child.id()))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        root.iter().all(|e| e == "dev" || e == "run"),
        "its root holds {root:?}"
    );
    let net = std::fs::read_link(format!("/proc/{}/ns/net", child.id())).unwrap();
    assert_ne!(
        net,
        std::fs::read_link("/proc/self/ns/net").unwrap(),
        "shares our network"
    );
    go.send(()).unwrap();
    s.join().unwrap();
    a.join().unwrap();
    let (status, err) = finish(&mut child);
    assert!(status.success(), "{status:?} {err}");
    assert_eq!(err, "delivered item.bin\n");
    assert_eq!(std::fs::read(dir.join("Incoming/item.bin")).unwrap(), data);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_courier_killed_mid_transfer_leaves_nothing() {
    let (dir, home) = home("kill");
    let data = vec![0x5au8; 3_000_000];
    let l = launch(&data, 2);
    let (mut child, src, mut dst) = start(&l);
    let (go, wait) = mpsc::channel::<()>();
    let d = data.clone();
    let s = std::thread::spawn(move || source(src, d, 1_000_000, wait));
    let h = home.clone();
    let a = std::thread::spawn(move || agent::handle_data(&mut dst, &h));
    wait_received(&dir, 1_000_000);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    drop(go);
    s.join().unwrap();
    a.join().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.join("Incoming"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_command_lines_fail_with_one_line_and_help_tells_the_truth() {
    let out = Command::new(COURIER).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success() && help.contains("uid 63999") && help.contains("--vsock-from"));
    let out = Command::new(COURIER).args(["--id", "zz"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("failed anchor-courier: usage: ") && err.ends_with('\n'),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    // An argument that is not UTF-8: the same one line, not a panic.
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(COURIER)
        .args(["--name".as_ref(), std::ffi::OsStr::from_bytes(b"\xff")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("failed anchor-courier: usage: ") && err.contains("not UTF-8"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

/// A file may be called `--help` or `-h` (the courier's names allow it): it is carried
/// like any other. The courier took the name's value for its own --help, wrote its usage
/// into the destination's connection and exited 0 with no result line.
#[test]
fn an_item_named_like_the_help_flag_is_carried() {
    for (i, name) in ["--help", "-h"].into_iter().enumerate() {
        let (dir, home) = home(&format!("help{i}"));
        let data = b"not a usage text".to_vec();
        let l = Launch {
            name: name.into(),
            ..launch(&data, 10 + i as u8)
        };
        let (mut child, src, mut dst) = start(&l);
        let (go, wait) = mpsc::channel();
        go.send(()).unwrap();
        let d = data.clone();
        let s = std::thread::spawn(move || source(src, d, 0, wait));
        let h = home.clone();
        let a = std::thread::spawn(move || agent::handle_data(&mut dst, &h));
        let (status, err) = finish(&mut child);
        a.join().unwrap();
        assert!(status.success(), "{name}: {status:?} {err}");
        assert_eq!(err, format!("delivered {name}\n"));
        s.join().unwrap();
        assert_eq!(
            std::fs::read(dir.join("Incoming").join(name)).unwrap(),
            data
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
