// SPDX-License-Identifier: GPL-3.0-or-later
//! Namespace rooms under concurrent control: requests that overtake each other on one
//! room, rooms up to and past the slot limit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ns_policy, Bay0};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Requests that bay0 reads in one turn of its loop, in this order (it is held stopped,
/// SIGSTOP from outside its namespace, while they are written); the clients.
fn at_once(b: &Bay0, requests: &[&str]) -> Vec<UnixStream> {
    let clients: Vec<UnixStream> = requests.iter().map(|_| b.connect()).collect();
    // Answered after the connections above were accepted.
    assert_eq!(b.answer("list"), "ok");
    anchor_testkit::while_stopped(b.pid(), || {
        for (mut c, r) in clients.iter().zip(requests) {
            c.write_all(format!("{r}\n").as_bytes()).unwrap();
        }
    });
    clients
}

fn read_all(mut s: UnixStream) -> String {
    let mut t = String::new();
    s.read_to_string(&mut t).unwrap();
    t
}

/// Waits (up to 5 s: a room set aside by a reset is killed 3 s after, at the latest)
/// for the rooms' footprint to be `want`; the last one read.
fn settle(b: &Bay0, want: &common::Footprint, prefix: &str) -> common::Footprint {
    let end = Instant::now() + Duration::from_secs(5);
    let mut now = b.footprint(prefix);
    while &now != want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        now = b.footprint(prefix);
    }
    now
}

#[test]
fn requests_that_overtake_each_other_on_a_namespace_room_are_all_answered_and_leave_nothing() {
    let b = Bay0::start("storm", &[("nsstorm-a", ns_policy("nsstorm-a", 64, 32))]);
    assert!(b.answer("start nsstorm-a").starts_with("ok"), "{}", b.log());
    assert_eq!(b.answer("stop nsstorm-a"), "ok room nsstorm-a stopped");
    let empty = common::Footprint {
        loops: Vec::new(),
        cgroups: Vec::new(),
        run_dirs: Vec::new(),
        ..b.footprint("nsstorm-")
    };
    let before = settle(&b, &empty, "nsstorm-");
    assert_eq!(before, empty, "the first room left something behind");
    let resets = ["reset nsstorm-a"; 9];
    for requests in [
        &["start nsstorm-a", "reset nsstorm-a", "stop nsstorm-a"][..],
        &[
            "start nsstorm-a",
            "reset nsstorm-a",
            "reset nsstorm-a",
            "stop nsstorm-a",
        ],
        &[
            "start nsstorm-a",
            "stop nsstorm-a",
            "start nsstorm-a",
            "stop nsstorm-a",
        ],
        &["start nsstorm-a", "start nsstorm-a"],
        // Eight slots: the eighth reset finds none free for the new room beside the old.
        &resets,
        &["reset nsstorm-a", "stop nsstorm-a", "start nsstorm-a"],
        &["stop nsstorm-a", "list"],
    ] {
        let clients = at_once(&b, requests);
        for (c, r) in clients.into_iter().zip(requests) {
            let answer = read_all(c);
            let last = answer.lines().last().unwrap_or_default();
            // One final line, `ok ...` or `err room NAME: ...` (`list`: just `ok`).
            assert!(
                last == "ok" && *r == "list"
                    || last.starts_with("ok room nsstorm-a ")
                    || last.starts_with("err room nsstorm-a: "),
                "{requests:?}: {r}: {answer:?}\n{}",
                b.log()
            );
        }
        // Whatever is left open is stopped; then the room is gone whole.
        let _ = b.answer("stop nsstorm-a");
        let after = settle(&b, &before, "nsstorm-");
        assert_eq!(before, after, "after {requests:?}\n{}", b.log());
        assert_eq!(b.record("nsstorm-a"), "room name=nsstorm-a state=stopped");
    }
}

#[test]
fn eight_namespace_rooms_run_under_eight_uids_and_a_ninth_is_refused_whole() {
    let names: Vec<String> = (0..9).map(|i| format!("nsmany-{i}")).collect();
    let policies: Vec<(&str, String)> = names
        .iter()
        .map(|n| (n.as_str(), ns_policy(n, 64, 32)))
        .collect();
    let b = Bay0::start("many", &policies);
    let mut uids = Vec::new();
    for n in &names[..8] {
        let a = b.answer(&format!("start {n}"));
        assert!(
            a.starts_with(&format!("ok room {n} ready")),
            "{a}\n{}",
            b.log()
        );
        let status = std::fs::read_to_string(format!("/proc/{}/status", b.room_pid(n))).unwrap();
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .to_string();
        assert!(!uids.contains(&uid), "{n}: {uid} already had {uids:?}");
        uids.push(uid);
    }
    let before = b.footprint("nsmany-");
    assert_eq!(
        b.answer("start nsmany-8"),
        "err room nsmany-8: too many rooms open (8)"
    );
    assert_eq!(b.footprint("nsmany-"), before);
    assert_eq!(b.record("nsmany-8"), "room name=nsmany-8 state=stopped");
    for n in &names[..8] {
        assert!(
            b.record(n).contains(" backend=namespaces state=running "),
            "{}",
            b.record(n)
        );
        assert_eq!(
            b.answer(&format!("stop {n}")),
            format!("ok room {n} stopped")
        );
    }
    assert!(b
        .answer("start nsmany-8")
        .starts_with("ok room nsmany-8 ready"));
    assert_eq!(b.answer("stop nsmany-8"), "ok room nsmany-8 stopped");
}
