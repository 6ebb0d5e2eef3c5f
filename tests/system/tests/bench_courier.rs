// SPDX-License-Identifier: GPL-3.0-or-later
//! Courier benchmarks in the anchor host (run by tests/system/bench-courier.sh from `make
//! bench`; `#[ignore]`d so `make test` does not run them). Printed, never asserted, in one
//! run with two microVM rooms (`bsend`, `brecv`):
//! - a raw copy of the item over the same transport: the sender's agent serves the file on
//!   vsock port 5001 (`--vsock-send`), the receiver's writes it to its tmpfs and fsyncs
//!   (`--vsock-recv`), `anchor-courier-bench relay` in the anchor host copies between the
//!   two rooms' hybrid vsock sockets with the courier's buffer size;
//! - the same item carried by the courier: from the Y key to the sender's `delivered` line
//!   (bay0 connects and starts the courier, it jails itself, fetches, the destination
//!   writes an unnamed file while hashing it, fsyncs, checks and links it, and bay0 answers;
//!   the source's hash is taken before the prompt and is reported apart);
//! - approval -> file in place for a small item (Y -> `delivered`), median of 3.
//!
//! The item is COURIER_BENCH_MIB MiB (default 256: 1 GiB would fit the rooms' memory, but
//! hashing it twice in nested TCG rooms takes tens of minutes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{rooms_initramfs, Machine, Options};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(3600);
const TITLE: &str = "bay0: courier: ANCHOR TRUSTED PROMPT";

fn attach(m: &mut Machine, room: &str) {
    let from = m.serial().len();
    m.type_text(&format!("anchorctl room console {room}\r"))
        .unwrap();
    m.wait_for_line_from(from, &format!("attached to room {room}"), T)
        .unwrap();
    m.type_text("\r").unwrap();
    m.wait_for_from(from, &format!("{room}| {room}:"), T)
        .unwrap();
}

fn detach(m: &mut Machine, room: &str) {
    let from = m.serial().len();
    m.type_text("\x1d").unwrap();
    m.wait_for_line_from(from, &format!("[detached from room {room}]"), T)
        .unwrap();
    m.type_text("\r").unwrap();
    m.wait_for_from(from, "anchor# ", T).unwrap();
}

/// Types `cmd` into the attached room and waits for its line `room| done`.
fn in_room(m: &mut Machine, room: &str, cmd: &str, done: &str) -> String {
    let from = m.serial().len();
    m.type_text(&format!("{cmd}\r")).unwrap();
    m.wait_for_line_from(from, &format!("{room}| {done}"), T)
        .unwrap()
        .line
}

/// `courier send FILE --to brecv` in the attached sender: seconds from the prompt's
/// appearance (the source's hash before it) and from Y to `delivered`.
fn carry(m: &mut Machine, file: &str) -> (f64, f64) {
    let from = m.serial().len();
    let t0 = Instant::now();
    m.type_text(&format!("courier send {file} --to brecv\r"))
        .unwrap();
    m.wait_for_line_from(from, TITLE, T).unwrap();
    let hashed = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(1200));
    let t = Instant::now();
    m.send_key(&["y"]).unwrap();
    let done = format!("bsend| courier: delivered {file} to room brecv");
    m.wait_for_line_from(from, &done, T).unwrap();
    (hashed, t.elapsed().as_secs_f64())
}

#[test]
#[ignore = "benchmark: make bench"]
fn bench_courier() {
    let mib: u64 = std::env::var("COURIER_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let opts = Options::from_env("bench-courier")
        .unwrap()
        .initramfs(rooms_initramfs().unwrap())
        .append("bay0.shell=1 bay0.courier_timeout=600")
        .memory_mib(4096);
    let mut m = Machine::start(opts).unwrap();
    m.wait_for_line("bay0: ready", T).unwrap();
    m.wait_for_from(0, "anchor# ", T).unwrap();
    m.sh_ok("stty cols 1000", T).unwrap();
    for room in ["bsend", "brecv"] {
        assert!(m
            .sh_ok(&format!("anchorctl room start {room}"), T)
            .unwrap()
            .contains("ready"));
    }
    attach(&mut m, "bsend");
    let t = Instant::now();
    in_room(
        &mut m,
        "bsend",
        &format!(
            "head -c 1048560 /dev/urandom > /tmp/seed && for i in $(seq {mib}); do \
             printf '%016d' $i; cat /tmp/seed; done > big; echo made-$?"
        ),
        "made-0",
    );
    println!(
        "bench-courier: item {mib} MiB made in the sender in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Raw copy over the same transport.
    in_room(
        &mut m,
        "bsend",
        "(/sbin/init --vsock-send 5001 big > /tmp/sent 2>&1 &); echo serving",
        "serving",
    );
    detach(&mut m, "bsend");
    attach(&mut m, "brecv");
    in_room(
        &mut m,
        "brecv",
        "(/sbin/init --vsock-recv 5001 /tmp/raw > /tmp/got 2>&1 &); echo listening",
        "listening",
    );
    detach(&mut m, "brecv");
    let relay =
        "anchor-courier-bench relay /run/anchor/rooms/bsend/vsock /run/anchor/rooms/brecv/vsock 5001";
    let out = m.sh_ok(relay, T).unwrap();
    let line = out.lines().find(|l| l.starts_with("relayed ")).unwrap();
    let words: Vec<&str> = line.split(' ').collect();
    let (bytes, secs): (f64, f64) = (words[1].parse().unwrap(), words[4].parse().unwrap());
    assert_eq!(bytes as u64, mib << 20, "{line}");
    let raw = bytes / 1048576.0 / secs;
    println!("bench-courier: raw copy room -> host -> room (hybrid vsock, no checks): {mib} MiB in {secs:.2} s = {raw:.1} MiB/s");
    attach(&mut m, "brecv");
    in_room(&mut m, "brecv", "rm -f /tmp/raw; echo removed", "removed");
    detach(&mut m, "brecv");

    // The courier, same item, same rooms.
    attach(&mut m, "bsend");
    let (hashed, secs) = carry(&mut m, "big");
    let courier = (mib as f64) / secs;
    println!("bench-courier: source hash + request before the prompt: {hashed:.1} s");
    println!(
        "bench-courier: courier Y -> delivered: {mib} MiB in {secs:.2} s = {courier:.1} MiB/s"
    );
    println!(
        "bench-courier: courier / raw copy = {:.2} (goal >= 0.50)",
        courier / raw
    );

    // Approval -> file in place, small item.
    in_room(
        &mut m,
        "bsend",
        "echo small-note > small.txt; echo made",
        "made",
    );
    let mut times = Vec::new();
    for _ in 0..3 {
        let (_, s) = carry(&mut m, "small.txt");
        times.push(s);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "bench-courier: small item, Y -> file in place (delivered): median {:.2} s of {times:.2?}",
        times[1]
    );
    m.power_off();
}
