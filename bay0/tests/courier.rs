// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's courier glue, for real, on this machine: bay0 in hosted mode (`--layout`), rooms
//! jailed by the real anchor-jail with `anchor-courier-test-room` standing in for each
//! room (it speaks for the room's agent on the umbilical, on command from its console).
//! What a room sends is answered on its umbilical with the reason, audited in
//! /run/anchor/audit.log (hash-chained, verified here), and never stalls bay0; a request
//! that passes shows bay0's prompt (on the console: no framebuffer here) with the name
//! escaped; a room that ends while its request waits cancels it. Approval needs a
//! keyboard and a framebuffer: tests/system/tests/courier.rs does that in the anchor host.
//!
//! Needs root, and the workspace's binaries built (`make unit` builds them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchor_proto::courier::{hex, Manifest};
use anchor_proto::umbilical::{encode_vec, Kind};

mod common;

const BAY0: &str = env!("CARGO_BIN_EXE_bay0");

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first",
        path.display()
    );
    path
}

const POLICY: &str =
    "image = \"base\"\nbackend = \"microvm\"\n[resources]\nvcpus = 1\nmemory = \"128MiB\"\n";

struct Bay0 {
    child: Child,
    log: Arc<Mutex<String>>,
    dir: PathBuf,
    ours: &'static [&'static str],
}

impl Bay0 {
    /// bay0 with rooms `cq-src` (may send to `cq-dst` and `cq-no`), `cq-dst` (receives from
    /// `cq-src`), `cq-no` (receives from nobody), `cq-one` and `cq-two` (may send to
    /// `cq-to`), `cq-to` (receives from both), `cq-held` (may send to `cq-sink`; its
    /// stand-in does not report ready by itself) and `cq-sink` (receives from `cq-held`).
    /// `tag` names its directory. The tests run at once (nextest: one process each) and a
    /// room's cgroup is named after the room, so no two tests open a room of one name.
    /// `ours`: the rooms the test opens (their cgroups are the test's to remove at its end).
    fn start(tag: &str, ours: &'static [&'static str]) -> Bay0 {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
        let dir = PathBuf::from(format!(
            "/var/tmp/bay0-courier-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = dir.join("layout");
        std::fs::create_dir_all(layout.join("images")).unwrap();
        std::fs::create_dir_all(layout.join("policies")).unwrap();
        std::fs::copy(sibling("anchor-jail"), layout.join("anchor-jail")).unwrap();
        std::fs::copy(
            sibling("anchor-courier-test-room"),
            layout.join("anchor-vmm"),
        )
        .unwrap();
        std::fs::write(layout.join("vmlinux"), b"kernel").unwrap();
        std::fs::write(layout.join("images/base.squashfs"), b"image").unwrap();
        for (room, courier) in [
            ("cq-src", "send_to = [\"cq-dst\", \"cq-no\"]"),
            ("cq-dst", "receive_from = [\"cq-src\"]"),
            ("cq-one", "send_to = [\"cq-to\"]"),
            ("cq-two", "send_to = [\"cq-to\"]"),
            ("cq-to", "receive_from = [\"cq-one\", \"cq-two\"]"),
            ("cq-no", ""),
            ("cq-held", "send_to = [\"cq-sink\"]"),
            ("cq-sink", "receive_from = [\"cq-held\"]"),
        ] {
            let text = format!("name = \"{room}\"\n{POLICY}[courier]\n{courier}\n");
            std::fs::write(layout.join(format!("policies/{room}.toml")), text).unwrap();
        }
        let (child, log) = common::spawn_hosted(BAY0, &dir.join("state"), &layout, Stdio::null());
        let b = Bay0 {
            child,
            log,
            dir,
            ours,
        };
        b.wait_log(0, "bay0: ready");
        b
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line holding `needle` after byte `from` of the log; the offset past it.
    fn wait_log(&self, from: usize, needle: &str) -> usize {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log();
            if let Some(at) = log.get(from..).and_then(|t| t.find(needle)) {
                return from + at + needle.len();
            }
            assert!(Instant::now() < end, "no {needle:?} in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.dir.join("state/run/anchor/control.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    fn answer(&self, request: &str) -> String {
        let mut s = self.connect();
        s.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines().last().unwrap_or_default().to_string()
    }

    fn audit(&self) -> Vec<String> {
        let log = std::fs::read(self.dir.join("state/run/anchor/audit.log")).unwrap_or_default();
        let ok = anchor_audit::verify(&log).unwrap_or_else(|bad| panic!("audit log: {bad}"));
        let text = String::from_utf8(log).unwrap();
        assert_eq!(ok.records as usize, text.lines().count());
        text.lines().map(str::to_string).collect()
    }
}

impl Drop for Bay0 {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== bay0 log =====\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        // A room set aside by a reset leaves `NAME_PID` until it has ended.
        let ours = self.ours;
        common::remove_room_cgroups(|n| ours.contains(&n.split('_').next().unwrap_or(n)));
    }
}

/// A console attachment to the stand-in room: commands in, lines out.
struct Console {
    s: UnixStream,
    got: String,
}

impl Console {
    fn attach(b: &Bay0, room: &str) -> Console {
        Console::attach_as(b, room, "ready")
    }

    /// Attaches to `room` and waits for its stand-in's `test room: WORD` line.
    fn attach_as(b: &Bay0, room: &str, word: &str) -> Console {
        let mut s = b.connect();
        s.write_all(format!("console {room}\n").as_bytes()).unwrap();
        let mut c = Console {
            s,
            got: String::new(),
        };
        c.wait(&format!("{room}| test room: {word}"));
        c
    }

    /// Types a line into the room.
    fn type_line(&mut self, line: &str) {
        self.s.write_all(format!("{line}\r").as_bytes()).unwrap();
    }

    /// Waits for `needle`; the rest of its line.
    fn wait(&mut self, needle: &str) -> String {
        let end = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 65536];
        loop {
            // The matching line is taken out; lines before and after it stay (the room's
            // answers and its own messages may come in any order).
            if let Some(at) = self.got.find(needle) {
                let rest = &self.got[at + needle.len()..];
                if let Some(nl) = rest.find('\n') {
                    let line = rest[..nl].trim_end_matches('\r').to_string();
                    let start = self.got[..at].rfind('\n').map_or(0, |i| i + 1);
                    self.got
                        .replace_range(start..at + needle.len() + nl + 1, "");
                    return line;
                }
            }
            assert!(
                Instant::now() < end,
                "no {needle:?} on the console:\n{}",
                self.got
            );
            let n = self.s.read(&mut buf).unwrap();
            assert!(n > 0, "console closed:\n{}", self.got);
            self.got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// Makes the room write `frame` `count` times on its umbilical.
    fn raw(&mut self, frame: &[u8], count: usize) {
        let mut h = vec![0u8; frame.len() * 2];
        let text = hex(frame, &mut h).to_string();
        self.s
            .write_all(format!("raw {text} {count}\r").as_bytes())
            .unwrap();
        self.wait("test room: sent ");
    }
}

fn request(token: u8, to: &str, name: &[u8], size: u64) -> Vec<u8> {
    let m = Manifest::new([token; 16], to, name, size, [0xab; 32]).unwrap();
    encode_vec(Kind::CourierRequest, &m.to_vec()).unwrap()
}

#[test]
fn requests_are_answered_audited_prompted_cancelled_and_bounded_through_bay0() {
    let b = Bay0::start("flow", &["cq-src", "cq-dst", "cq-no"]);
    for room in ["cq-src", "cq-dst", "cq-no"] {
        let ok = b.answer(&format!("start {room}"));
        assert!(ok.starts_with(&format!("ok room {room} ready")), "{ok}");
    }
    let mut c = Console::attach(&b, "cq-src");
    let tok = |t: u8| format!("{t:02x}").repeat(16);

    // The destination's policy refuses: answered with the reason (token echoed), audited.
    c.raw(&request(1, "cq-no", b"a.txt", 5), 1);
    let line = c.wait(&format!("answer refused {} ", tok(1)));
    assert_eq!(line, "policy: room cq-no may not receive from cq-src (its courier.receive_from does not name it)");
    // A malformed request: answered (no token to echo), audited.
    let mut bad = request(2, "cq-dst", b"a", 1);
    bad.truncate(20);
    bad[2] = 16;
    c.raw(&bad, 1);
    let line = c.wait(&format!("answer refused {} ", tok(0)));
    assert!(line.starts_with("malformed courier message"), "{line}");
    // A bidi override in the name.
    c.raw(&request(3, "cq-dst", "x\u{202e}fdp.exe".as_bytes(), 1), 1);
    let line = c.wait(&format!("answer refused {} ", tok(3)));
    assert!(line.contains("U+202E"), "{line}");

    // A request that passes: bay0's prompt (here on the console), the name escaped.
    let from = b.log().len();
    c.raw(
        &request(4, "cq-dst", "caf\u{e9} \"menu\".txt".as_bytes(), 1234),
        1,
    );
    let at = b.wait_log(
        from,
        "bay0: courier: ANCHOR TRUSTED PROMPT - drawn by bay0, never by a room",
    );
    b.wait_log(
        at,
        "bay0: courier: Room cq-src asks to send a file to room cq-dst.",
    );
    b.wait_log(
        at,
        "bay0: courier: File:    \"caf\\u{e9} \\\"menu\\\".txt\"",
    );
    b.wait_log(at, "bay0: courier: Size:    1234 bytes (1.2 KiB)");
    b.wait_log(at, "bay0: courier: SHA-256: abababababababab...");
    b.wait_log(at, "bay0: courier: No answer within 60 s refuses it.");
    // Another request while it is up: busy.
    c.raw(&request(5, "cq-dst", b"b.txt", 1), 1);
    let line = c.wait(&format!("answer refused {} ", tok(5)));
    assert!(line.starts_with("busy"), "{line}");
    // The destination ends while the prompt is up: the request is cancelled.
    assert_eq!(b.answer("stop cq-dst"), "ok room cq-dst stopped");
    let line = c.wait(&format!("answer failed {} ", tok(4)));
    assert_eq!(line, "room cq-dst ended before the answer");

    // A flood in one write: bay0 answers what it can, audits a handful, stays responsive.
    let before = b.audit().len();
    let t = Instant::now();
    c.raw(&request(6, "cq-no", b"f", 1), 3000);
    c.wait("answer refused ");
    assert!(b.answer("list").starts_with("ok"));
    eprintln!(
        "figure: 3000 requests in one write, bay0 answered `list` after {:?}",
        t.elapsed()
    );
    c.wait("too many courier requests");
    let records = b.audit();
    assert!(
        records.len() - before <= 5,
        "{} records for a flood",
        records.len() - before
    );
    // Nor is the log flooded: only what is audited is logged (a room's flood would
    // otherwise be one kernel log line per request, printed on the serial console).
    let logged = b.log().matches("bay0: courier: cq-src -> cq-no").count();
    assert!(logged <= 1 + 5, "{logged} log lines for a flood");

    // Every record: the sender from the transport, decision, outcome, reason.
    let courier: Vec<&String> = records
        .iter()
        .filter(|r| r.contains(" actor=bay0 event=courier "))
        .collect();
    for (i, want) in [
        "from=cq-src to=cq-no name=a.txt size=5 ",
        "from=cq-src to= name= size=0 ",
        "from=cq-src to=cq-dst name=x%E2%80%AEfdp.exe size=1 ",
        "from=cq-src to=cq-dst name=b.txt size=1 ",
        "from=cq-src to=cq-dst name=caf%C3%A9%20\"menu\".txt size=1234 ",
    ]
    .iter()
    .enumerate()
    {
        assert!(courier[i].contains(want), "{}: {want}", courier[i]);
    }
    assert!(courier[4].contains(
        " decision=cancelled outcome=failed reason=room%20cq-dst%20ended%20before%20the%20answer "
    ));
    assert!(courier[..4]
        .iter()
        .all(|r| r.contains(" decision=refused outcome=refused ")));
}

/// Two rooms ask for the one prompt: the second room's request, made while the first's
/// prompt is up, waits its turn (before, it was refused "busy", so a room asking again the
/// moment its prompt ended could keep the prompt from every other room) and comes up
/// when the first prompt ends.
#[test]
fn a_second_rooms_request_waits_for_its_turn_through_bay0() {
    let b = Bay0::start("turns", &["cq-one", "cq-two", "cq-to"]);
    for room in ["cq-one", "cq-two", "cq-to"] {
        let ok = b.answer(&format!("start {room}"));
        assert!(ok.starts_with(&format!("ok room {room} ready")), "{ok}");
    }
    let (mut one, mut two) = (Console::attach(&b, "cq-one"), Console::attach(&b, "cq-two"));
    let tok = |t: u8| format!("{t:02x}").repeat(16);
    let from = b.log().len();
    one.raw(&request(1, "cq-to", b"one.txt", 1), 1);
    let at = b.wait_log(from, "Room cq-one asks to send a file to room cq-to.");
    two.raw(&request(2, "cq-to", b"two.txt", 1), 1);
    // The first prompt ends (its sender stops): the second room's prompt comes up.
    assert_eq!(b.answer("stop cq-one"), "ok room cq-one stopped");
    let at = b.wait_log(at, "room cq-one ended before the answer");
    b.wait_log(at, "Room cq-two asks to send a file to room cq-to.");
    assert!(!two.got.contains("busy"), "{}", two.got);
    // It is answered once, when it ends.
    assert_eq!(b.answer("stop cq-to"), "ok room cq-to stopped");
    let line = two.wait(&format!("answer failed {} ", tok(2)));
    assert_eq!(line, "room cq-to ended before the answer");
}

/// The last line a control request that waits (start, reset) is answered with.
fn answer_of(mut s: UnixStream) -> String {
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines().last().unwrap_or_default().to_string()
}

/// The courier records of the audit log that name room `from` as the sender.
fn courier_records(b: &Bay0, from: &str) -> Vec<String> {
    let f = format!(" actor=bay0 event=courier from={from} ");
    b.audit().into_iter().filter(|r| r.contains(&f)).collect()
}

/// A reset sets the old room aside (stopped, its run directory and cgroup renamed) while
/// a new room of the same name boots; both carry the same name, so what bay0 hears on the
/// old one's umbilical, and its end, must not be taken for the new one's:
///
/// - a request from a process of the set-aside room that still runs (bay0 stops only the
///   room's first process) is not a request of the new room: before the fix it was
///   answered on the new room's umbilical and audited as `from=cq-held`;
/// - a request the new room makes as soon as it is ready (in the same write as its
///   `Ready`: before bay0 kills the old one) is not cancelled when the old one ends:
///   before the fix it was, "room cq-held ended before the answer";
/// - but a prompt raised before the reset (here: to the room being reset) is still
///   cancelled when the old room ends.
#[test]
fn a_room_set_aside_by_a_reset_is_not_taken_for_its_successor() {
    let b = Bay0::start("reset", &["cq-held", "cq-sink"]);
    let tok = |t: u8| format!("{t:02x}").repeat(16);
    let ready = encode_vec(Kind::Ready, &[]).unwrap();
    let ok = b.answer("start cq-sink");
    assert!(ok.starts_with("ok room cq-sink ready"), "{ok}");
    let mut start = b.connect();
    start.write_all(b"start cq-held\n").unwrap();
    let mut old = Console::attach_as(&b, "cq-held", "held");
    old.raw(&ready, 1);
    let ok = answer_of(start);
    assert!(ok.starts_with("ok room cq-held ready"), "{ok}");

    // The old room's child takes the console over; the reset stops the old room's first
    // process and opens the new room (held: not ready until the test says so).
    old.type_line("fork");
    old.wait("test room: forked");
    let from = b.log().len();
    let mut reset = b.connect();
    reset.write_all(b"reset cq-held\n").unwrap();
    b.wait_log(from, "room cq-held opened");
    // The set-aside room's child asks (the console still shows the old room).
    old.raw(&request(1, "cq-sink", b"old.txt", 1), 1);
    // Everything bay0 read before the child's console line is handled by now.
    assert!(b.answer("list").starts_with("ok"));
    assert_eq!(
        courier_records(&b, "cq-held"),
        Vec::<String>::new(),
        "a request from the set-aside room was taken for the new room's"
    );

    // The new room is ready and asks in the same write; the old room is killed then.
    let mut new = Console::attach_as(&b, "cq-held", "held");
    let mut both = ready.clone();
    both.extend(request(2, "cq-sink", b"new.txt", 1));
    let from = b.log().len();
    new.raw(&both, 1);
    let ok = answer_of(reset);
    assert!(ok.starts_with("ok room cq-held ready"), "{ok}");
    b.wait_log(
        from,
        "bay0: courier: Room cq-held asks to send a file to room cq-sink.",
    );
    let at = b.wait_log(from, "room cq-held (pid ");
    b.wait_log(at, ": closed");
    // Its prompt is still up: another request is busy (else: cq-no is not running).
    new.raw(&request(3, "cq-no", b"more.txt", 1), 1);
    let line = new.wait(&format!("answer refused {} ", tok(3)));
    assert!(line.starts_with("busy"), "{line}");
    assert!(
        !new.got.contains(&format!("answer failed {}", tok(2))),
        "the new room's request was cancelled by the old room's end:\n{}",
        new.got
    );

    // A prompt raised before a reset of its destination is cancelled when the old
    // destination ends (the new one never heard of it).
    let ok = b.answer("reset cq-sink");
    assert!(ok.starts_with("ok room cq-sink ready"), "{ok}");
    let line = new.wait(&format!("answer failed {} ", tok(2)));
    assert_eq!(line, "room cq-sink ended before the answer");
    let records = courier_records(&b, "cq-held");
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(records[0].contains(" name=more.txt ") && records[0].contains(" decision=refused "));
    assert!(records[1].contains(" name=new.txt ") && records[1].contains(" decision=cancelled "));
}
