// SPDX-License-Identifier: GPL-3.0-or-later
//! Namespace rooms under concurrent control: name reuse right after a stop, resets and
//! stops of rooms full of processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ns_policy, Bay0, Console};
use std::time::Duration;

#[test]
fn zz_experiment_name_reuse() {
    let b = Bay0::start("reuse", &[("nsreuse-a", ns_policy("nsreuse-a", 64, 32))]);
    let mut left = 0;
    for i in 0..10 {
        let a = b.answer("start nsreuse-a");
        assert!(a.starts_with("ok room nsreuse-a ready"), "{i} {a}\n{}", b.log());
        let mut c = Console::attach(&b, "nsreuse-a");
        let (_o, st) = c.run("for i in 1 2 3 4 5 6 7 8 9 10; do (while :; do :; done) & done; sleep 0.2", "", Duration::from_secs(20));
        assert_eq!(st, 0);
        drop(c);
        assert_eq!(b.answer("stop nsreuse-a"), "ok room nsreuse-a stopped");
        for cg in ["memory", "pids", "cpu"] {
            if std::path::Path::new(&format!("/sys/fs/cgroup/{cg}/anchor/nsreuse-a")).exists() {
                left += 1;
            }
        }
    }
    let a = b.answer("start nsreuse-a");
    assert!(a.starts_with("ok room nsreuse-a ready"), "{a}");
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("LEFT {left}\n{}", b.log());
    assert!(b.record("nsreuse-a").contains("state=running"), "{}", b.log());
}

#[test]
fn zz_experiment_kill_during_setup() {
    let b = Bay0::start("killsetup", &[("nskill-a", ns_policy("nskill-a", 64, 32))]);
    assert!(b.answer("start nskill-a").starts_with("ok"));
    assert_eq!(b.answer("stop nskill-a"), "ok room nskill-a stopped");
    std::thread::sleep(Duration::from_millis(500));
    let before = b.footprint("nskill-");
    for i in 0..30u64 {
        use std::io::{Read, Write};
        let mut s = b.connect();
        s.write_all(b"start nskill-a\n").unwrap();
        let pid = loop {
            let rec = b.record("nskill-a");
            if rec.contains("pid=") {
                break b.room_pid("nskill-a");
            }
        };
        std::thread::sleep(Duration::from_micros(i * 1000));
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        eprintln!("{i}: {}", t.trim());
        if t.starts_with("ok") {
            eprintln!("stop: {}", b.answer("stop nskill-a"));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = b.footprint("nskill-");
    eprintln!("{}", b.log());
    assert_eq!(before, after);
    assert!(b.answer("start nskill-a").starts_with("ok"));
}

/// Requests bay0 reads in one turn of its loop (it is held stopped while they are
/// written); the clients.
fn at_once(b: &Bay0, requests: &[&str]) -> Vec<std::os::unix::net::UnixStream> {
    use std::io::Write;
    let clients: Vec<_> = requests.iter().map(|_| b.connect()).collect();
    assert_eq!(b.answer("list"), "ok");
    let pid = b.pid();
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") T ") {
        std::thread::sleep(Duration::from_millis(5));
    }
    for (mut c, r) in clients.iter().zip(requests) {
        c.write_all(format!("{r}\n").as_bytes()).unwrap();
    }
    unsafe { libc::kill(pid, libc::SIGCONT) };
    clients
}

fn read_all(mut s: std::os::unix::net::UnixStream) -> String {
    use std::io::Read;
    let mut t = String::new();
    s.read_to_string(&mut t).unwrap();
    t
}

#[test]
fn zz_experiment_reset_storm() {
    let b = Bay0::start("storm", &[("nsstorm-a", ns_policy("nsstorm-a", 64, 32))]);
    assert!(b.answer("start nsstorm-a").starts_with("ok"));
    assert_eq!(b.answer("stop nsstorm-a"), "ok room nsstorm-a stopped");
    std::thread::sleep(Duration::from_millis(500));
    let before = b.footprint("nsstorm-");
    for combo in [
        &["start nsstorm-a", "reset nsstorm-a", "stop nsstorm-a"][..],
        &["start nsstorm-a", "reset nsstorm-a", "reset nsstorm-a", "list"][..],
        &["reset nsstorm-a", "stop nsstorm-a", "start nsstorm-a"][..],
        &["stop nsstorm-a", "start nsstorm-a", "reset nsstorm-a"][..],
        &["reset nsstorm-a", "reset nsstorm-a", "reset nsstorm-a", "reset nsstorm-a", "reset nsstorm-a", "reset nsstorm-a", "reset nsstorm-a", "reset nsstorm-a", "reset nsstorm-a", "list"][..],
        &["stop nsstorm-a", "list"][..],
    ] {
        let cs = at_once(&b, combo);
        for (c, r) in cs.into_iter().zip(combo.iter()) {
            eprintln!("{r} => {}", read_all(c).trim().replace('\n', " | "));
        }
        eprintln!("list now: {:?}", b.ask("list"));
    }
    let _ = b.answer("stop nsstorm-a");
    std::thread::sleep(Duration::from_secs(4));
    let after = b.footprint("nsstorm-");
    eprintln!("{}", b.log());
    assert_eq!(before, after);
}
