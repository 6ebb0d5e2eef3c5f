// SPDX-License-Identifier: GPL-3.0-or-later
//! Console round trip in a namespace room (`make bench` runs it through
//! tests/escape/bench.sh; printed, never asserted): a command typed at the shell's prompt
//! -> its output, for the room's console shell (through bay0 and the room's pty) against
//! the same busybox shell under bwrap on a pty this bench holds and plays the terminal
//! for, answering its cursor position questions as a terminal does (same namespaces,
//! same image, mounted beforehand). Each command is typed a little after its prompt
//! shows, as a person would. Ignored by the normal test run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::multiple_unsafe_ops_per_block
)]

mod common;

use common::peer::{bwrap_sandbox, median, runs, Mounted};
use common::{ns_policy, Bay0, Console};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

const ROOM: &str = "nsbcon";
/// How long after its prompt each command is typed.
const PAUSE: Duration = Duration::from_millis(30);
const T: Duration = Duration::from_secs(20);

fn median_ms(v: &[f64]) -> String {
    let (min, max) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    format!(
        "median {:.2} ms, min {min:.2} ms, max {max:.2} ms (n={})",
        median(v),
        v.len()
    )
}

/// Ours: `runs` commands at the room's console shell (after two untimed ones).
fn ours(b: &Bay0, runs: usize) -> Vec<f64> {
    let mut c = Console::attach(b, ROOM);
    let prompt = format!("{ROOM}:~# ");
    let mut times = Vec::new();
    for i in 0..runs + 2 {
        c.wait_for(&prompt, T);
        std::thread::sleep(PAUSE);
        let t0 = Instant::now();
        c.stream
            .write_all(format!("echo rt-{i}-$((1+1))\r").as_bytes())
            .unwrap();
        c.wait_for(&format!("{ROOM}| rt-{i}-2"), T);
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times
}

/// A pty master this bench reads as a terminal: it answers `ESC [ 6 n` (column 1: the
/// shell only corrects its idea of the column when told it is further right).
struct Terminal {
    master: std::fs::File,
    seen: Vec<u8>,
}

impl Terminal {
    fn wait_for(&mut self, needle: &[u8]) {
        let end = Instant::now() + T;
        let mut buf = [0u8; 4096];
        loop {
            while let Some(i) = find(&self.seen, b"\x1b[6n") {
                self.seen.drain(i..i + 4);
                self.master.write_all(b"\x1b[1;1R").unwrap();
            }
            if let Some(i) = find(&self.seen, needle) {
                self.seen.drain(..i + needle.len());
                return;
            }
            assert!(Instant::now() < end, "no {needle:?} from bwrap's shell");
            let n = self.master.read(&mut buf).unwrap();
            assert!(n > 0, "bwrap's shell closed its terminal");
            self.seen.extend_from_slice(&buf[..n]);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The peer: busybox's login shell under bwrap on a pty, `runs` commands the same way.
fn peer(root: &std::path::Path, runs: usize) -> Vec<f64> {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors; no name, termios or size is passed.
    let ret = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            core::ptr::null_mut(),
            core::ptr::null(),
            core::ptr::null(),
        )
    };
    assert_eq!(ret, 0, "openpty");
    // SAFETY: both were just returned by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = bwrap_sandbox(root);
    cmd.args([
        "--setenv", "HOME", "/root", "--chdir", "/root", "/bin/sh", "-l",
    ])
    .stdin(Stdio::from(slave.try_clone().unwrap()))
    .stdout(Stdio::from(slave.try_clone().unwrap()))
    .stderr(Stdio::from(slave));
    // SAFETY: between fork and exec, setsid and TIOCSCTTY only (async-signal-safe): the
    // pty becomes the shell's controlling terminal, as the room's console is its shell's.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = cmd.spawn().unwrap();
    let mut term = Terminal {
        master: std::fs::File::from(master),
        seen: Vec::new(),
    };
    let mut times = Vec::new();
    for i in 0..runs + 2 {
        term.wait_for(b"# ");
        std::thread::sleep(PAUSE);
        let t0 = Instant::now();
        term.master
            .write_all(format!("echo rt-{i}-$((1+1))\r").as_bytes())
            .unwrap();
        term.wait_for(format!("\nrt-{i}-2").as_bytes());
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    times
}

#[test]
#[ignore = "benchmark: make bench"]
fn bench_console_round_trip_against_bwrap() {
    let b = Bay0::start("bench-console", &[(ROOM, ns_policy(ROOM, 256, 256))]);
    let copy = b.dir.join("peer-console.squashfs");
    std::fs::copy(&b.image, &copy).unwrap();
    let root = Mounted::new(&copy, &b.dir);
    assert!(b
        .answer(&format!("start {ROOM}"))
        .starts_with(&format!("ok room {ROOM} ready")));
    let runs = runs();
    let ours = ours(&b, runs);
    let peer = peer(&root.0, runs);
    let ratio = median(&ours) / median(&peer);
    println!(
        "bench-ns: console round trip, a command typed {} ms after its prompt -> its output:",
        PAUSE.as_millis()
    );
    println!(
        "bench-ns:   ours, namespace room's console shell via bay0   {}",
        median_ms(&ours)
    );
    println!(
        "bench-ns:   busybox sh -l under bwrap on a pty (the terminal) {}; ours/this = {ratio:.2}",
        median_ms(&peer)
    );
    assert_eq!(
        b.answer(&format!("stop {ROOM}")),
        format!("ok room {ROOM} stopped")
    );
}
