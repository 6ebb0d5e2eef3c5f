// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier against hostile requests and hostile streams, over socket pairs (no KVM):
//! the real code at every step -- the umbilical payload decoder (anchor-proto), the
//! arbiter and its audit records (anchor-policy, anchor-audit), the room's agent (its
//! client socket, source and store: anchor-agent), the courier's transfer
//! (anchor-courier) -- with this test standing in for bay0 and for whichever party is
//! hostile. Every case asserts the error the sender (or the courier) gets, that an audit
//! record is written and the log verifies, and that nothing is left in the destination's
//! ~/Incoming (no file, no hidden or temporary name).
//!
//! One `#[test]`: the agent keeps its per-room state in process-wide statics, so the
//! cases run in order in one process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anchor_agent::courier::{self as agent, client, Home};
use anchor_courier::transfer;
use anchor_policy::arbiter::{Arbiter, RoomView, Step, Verdict};
use anchor_policy::Courier;
use anchor_proto::courier::{Data, Launch, Malformed, Manifest, Outcome};
use anchor_proto::umbilical::{self, write_frame, Frames, Kind, PAYLOAD_MAX};
use sha2::{Digest, Sha256};

fn rights(text: &str) -> Courier {
    let policy = format!(
        "name = \"r\"\nimage = \"base\"\nbackend = \"microvm\"\n[resources]\nmemory = \"64MiB\"\nvcpus = 1\n[courier]\n{text}"
    );
    anchor_policy::parse("r.toml", policy.as_bytes())
        .unwrap()
        .courier()
        .clone()
}

/// A `courier send` running: its exit status and output when it ends.
type Client = std::thread::JoinHandle<(u8, String)>;

/// bay0's side and both rooms, in one process.
struct Rig {
    dir: PathBuf,
    home: Home,
    /// bay0's end of the (source) agent's umbilical.
    umb: UnixStream,
    socket: PathBuf,
    arb: Arbiter,
    log: Vec<u8>,
    web: Courier,
    work: Courier,
    now: u64,
}

impl Rig {
    fn new() -> Rig {
        let dir = PathBuf::from(format!("/var/tmp/courier-hostile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::create_dir_all(dir.join("files")).unwrap();
        let (agent_end, bay0_end) = UnixStream::pair().unwrap();
        agent::attach_umbilical(File::from(OwnedFd::from(agent_end)));
        bay0_end
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let socket = dir.join("courier.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || agent::handle_client(conn));
            }
        });
        Rig {
            home: Home {
                dir: dir.join("home"),
                owner: None,
            },
            dir,
            umb: bay0_end,
            socket,
            arb: Arbiter::default(),
            log: Vec::new(),
            web: rights("send_to = [\"work\"]\nmax_size = \"1GiB\"\n"),
            work: rights("receive_from = [\"web\"]\n"),
            now: 0,
        }
    }

    fn incoming(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.home.dir.join("Incoming"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.join("files").join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// Writes the verdict's record and checks the whole log still verifies.
    fn audit(&mut self, v: &Verdict) -> String {
        assert!(v.audit, "not audited: {v}");
        let line = v.record(&self.log, 1_800_000_000).unwrap();
        self.log.extend(&line);
        let ok = anchor_audit::verify(&self.log).unwrap();
        assert_eq!(
            ok.records as usize,
            self.log.iter().filter(|&&b| b == b'\n').count()
        );
        String::from_utf8(line).unwrap()
    }

    /// A request as bay0 receives it on web's umbilical; the arbiter's verdict.
    fn arbitrate(&mut self, req: Result<Manifest, Malformed>) -> Option<Verdict> {
        // A request every 6 s: within the room's budget.
        self.now += anchor_proto::courier::Budget::REFILL_MS;
        let (web, work) = (&self.web, &self.work);
        let view = |n: &str| match n {
            "web" => Some(RoomView::new(web, true, "microvm")),
            "work" => Some(RoomView::new(work, true, "microvm")),
            "stopped" => Some(RoomView::new(work, false, "microvm")),
            _ => None,
        };
        self.arb.request(self.now, "web", req, view)
    }

    /// A refused request: its audited reason.
    fn refused(&mut self, req: Result<Manifest, Malformed>) -> String {
        let v = self.arbitrate(req).expect("refused at once");
        assert_eq!((v.decision, v.outcome), ("refused", Outcome::Refused));
        assert_eq!(v.from, "web", "the sender is the transport's room");
        let line = self.audit(&v);
        assert!(
            line.contains(" decision=refused outcome=refused "),
            "{line}"
        );
        v.reason
    }

    /// `courier send FILE --to ROOM` in web: the client's exit status and output, or
    /// the request the agent sent bay0 (the client then waits for the answer).
    fn send(&mut self, file: &Path, to: &str) -> Result<(Manifest, Client), (u8, String)> {
        let args: Vec<OsString> = vec!["send".into(), file.into(), "--to".into(), to.into()];
        let socket = self.socket.clone();
        let client = std::thread::spawn(move || {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = client::run(&args, &socket, &mut out, &mut err);
            out.extend(err);
            (code, String::from_utf8_lossy(&out).into_owned())
        });
        let mut dec = umbilical::Decoder::default();
        let mut payload = [0u8; PAYLOAD_MAX];
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            match dec.read_from(&mut self.umb, &mut payload) {
                Ok(Some((Kind::CourierRequest, n))) => {
                    return Ok((Manifest::decode(&payload[..n]).unwrap(), client));
                }
                Ok(other) => panic!("unexpected umbilical frame {other:?}"),
                Err(_) if client.is_finished() => return Err(client.join().unwrap()),
                Err(_) => assert!(Instant::now() < end, "no request and no answer"),
            }
        }
    }

    /// bay0 answers the waiting client.
    fn answer(&self, v: &Verdict, client: Client) -> (u8, String) {
        let frame = v.answer();
        agent::on_answer(&frame[umbilical::HEADER..]);
        client.join().unwrap()
    }

    /// Approves `m` (prompt, then Y); the courier's command line.
    fn approve(&mut self, m: Manifest) -> Launch {
        assert!(self.arbitrate(Ok(m)).is_none(), "the prompt should come up");
        self.now += 2_000;
        let id = u128::from(self.now).to_le_bytes();
        let Some(Step::Launch(mut l)) = self.arb.key(self.now, true, id) else {
            panic!("yes did not launch")
        };
        assert!(self.arb.started(Ok(4242)).is_none());
        l.vsock = [false, false];
        *l
    }

    /// Runs the courier between two streams; feeds its result line to the arbiter as
    /// bay0 would and audits the verdict.
    fn carry(&mut self, l: &Launch, src: &mut UnixStream, dst: &mut UnixStream) -> Verdict {
        let r = transfer::run(src, dst, l);
        let line = match &r {
            Ok(name) => format!("delivered {name}\n"),
            Err(e) => format!("failed {}\n", e.explain(l)),
        };
        let v = self
            .arb
            .ended(4242, r.is_ok(), line.as_bytes(), &"exited", None)
            .unwrap();
        let rec = self.audit(&v);
        assert!(rec.contains(" decision=yes "), "{rec}");
        v
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How long the courier's end waits for a source that stalls before it gives up.
const STALL_MS: u64 = 700;
/// A wait no peer that keeps going reaches, even on a loaded machine: for the ends whose
/// timeout is not what a case is about.
const PATIENT_MS: u64 = 30_000;

fn pair(timeout_ms: u64) -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_millis(timeout_ms)))
            .unwrap();
        s.set_write_timeout(Some(Duration::from_millis(timeout_ms)))
            .unwrap();
    }
    (a, b)
}

/// The real agent's data service on a new connection (thread); the courier's end.
fn agent_side(home: &Home, timeout_ms: u64) -> UnixStream {
    let (mut theirs, ours) = pair(timeout_ms);
    let home = home.clone();
    std::thread::spawn(move || agent::handle_data(&mut theirs, &home));
    ours
}

/// A hostile peer: `f` plays it on a new connection (thread); the courier's end.
fn hostile(timeout_ms: u64, f: impl FnOnce(UnixStream) + Send + 'static) -> UnixStream {
    let (theirs, ours) = pair(timeout_ms);
    std::thread::spawn(move || f(theirs));
    ours
}

fn manifest(name: &[u8], size: u64, data: &[u8]) -> Manifest {
    Manifest::new([9; 16], "work", name, size, Sha256::digest(data).into()).unwrap()
}

fn has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in {text:?}");
}

/// Whether this process holds an unnamed (O_TMPFILE) file in directory `dir`.
fn open_tmpfile_in(dir: &Path) -> bool {
    let prefix = format!("{}/#", dir.display());
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .any(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with(&prefix))
        })
}

#[test]
fn hostile_requests_and_streams_get_a_reason_an_audit_record_and_leave_nothing() {
    // A private mount namespace: the small tmpfs below never shows outside this test.
    // SAFETY: a plain system call on this (test) process only.
    let unshared = unsafe { libc::unshare(libc::CLONE_NEWNS) } == 0;
    let flags = libc::MS_REC | libc::MS_PRIVATE;
    let (none, root, null) = (c"none".as_ptr(), c"/".as_ptr(), core::ptr::null());
    // SAFETY: NUL-terminated static strings and null pointers mount(2) accepts.
    let private = unshared && unsafe { libc::mount(none, root, null, flags, null.cast()) } == 0;
    assert!(private, "needs root (a private mount namespace)");
    let mut r = Rig::new();
    let mut cases = 0;
    let mut case = |what: &str| {
        cases += 1;
        eprintln!("case {cases}: {what}");
    };

    // --- Requests (as bay0 receives them on web's umbilical) -------------------------
    let data = b"payload".to_vec();
    for (what, name, reason) in [
        ("path traversal", &b"../../etc/passwd"[..], "holds a '/'"),
        ("absolute path", b"/etc/passwd", "holds a '/'"),
        ("empty name", b"", "the file name is empty"),
        ("dot", b".", "is \".\" or \"..\""),
        ("dot dot", b"..", "is \".\" or \"..\""),
        ("NUL", b"a\0b", "control character U+0000"),
        (
            "ANSI escape",
            b"\x1b[2J\x1b[31mred",
            "control character U+001B",
        ),
        (
            "C1 control",
            "x\u{9b}31m".as_bytes(),
            "control character U+009B",
        ),
        (
            "bidi override",
            "invoice\u{202e}fdp.exe".as_bytes(),
            "bidirectional formatting character U+202E",
        ),
        (
            "zero-width",
            "a\u{200b}b".as_bytes(),
            "invisible character U+200B",
        ),
        ("invalid UTF-8", b"bad\xff.pdf", "not UTF-8"),
        (
            "over-long name",
            &[b'n'; 201][..],
            "201 bytes long (at most 200)",
        ),
    ] {
        case(what);
        let why = r.refused(Ok(manifest(name, 7, &data)));
        has(&why, reason);
        assert!(!r.arb.prompting());
        assert!(r.incoming().is_empty());
    }
    case("size over the quota");
    has(
        &r.refused(Ok(manifest(b"big", (1 << 30) + 1, b""))),
        "courier.max_size",
    );
    case("size that overflows (u64::MAX)");
    has(
        &r.refused(Ok(manifest(b"big", u64::MAX, b""))),
        "courier.max_size",
    );
    case("a request naming another room as its source (trailing bytes)");
    let mut forged = manifest(b"f", 1, b"x").to_vec();
    forged.extend_from_slice(b"from=work");
    has(
        &r.refused(Manifest::decode(&forged)),
        "malformed courier message",
    );
    case("a request to its own room");
    let to_self = Manifest::new([1; 16], "web", b"f", 1, [0; 32]);
    has(&r.refused(to_self), "room web cannot send to itself");
    case("a truncated request");
    has(&r.refused(Manifest::decode(&forged[..20])), "malformed");
    case("the destination is not running");
    let stopped = Manifest::new([1; 16], "stopped", b"f", 1, [0; 32]);
    has(&r.refused(stopped), "room stopped is not running");
    case("the destination's policy does not receive from the sender");
    r.work = rights("receive_from = [\"dev\"]\n");
    has(
        &r.refused(Ok(manifest(b"f", 1, b"x"))),
        "room work may not receive from web",
    );
    r.work = rights("receive_from = [\"web\"]\n");

    case("a second request while a prompt is up");
    assert!(r.arbitrate(Ok(manifest(b"first", 1, b"x"))).is_none());
    has(&r.refused(Ok(manifest(b"second", 1, b"y"))), "busy");
    r.now += 2_000;
    let Some(Step::Done(no)) = r.arb.key(r.now, false, [0; 16]) else {
        panic!()
    };
    assert_eq!(no.outcome, Outcome::Refused);
    r.audit(&no);

    case("a flood of requests (bounded, the log grows by a handful)");
    let before = r.log.len();
    let mut audited = 0;
    for _ in 0..10_000 {
        let (web, work) = (&r.web, &r.work);
        let view = |n: &str| match n {
            "web" => Some(RoomView::new(web, true, "microvm")),
            _ => Some(RoomView::new(work, true, "microvm")),
        };
        let v = r
            .arb
            .request(r.now, "web", Ok(manifest(b"../x", 1, b"")), view)
            .unwrap();
        if v.audit {
            r.audit(&v);
            audited += 1;
        }
    }
    assert!(
        audited <= anchor_proto::courier::Budget::BURST as usize,
        "{audited}"
    );
    assert!(r.log.len() - before < 10 * 1024);
    r.now += 60_000;
    let v = r.arbitrate(Ok(manifest(b"../x", 1, b""))).unwrap();
    assert!(v.audit);
    assert!(v.dropped >= 9_000, "{}", v.dropped);
    has(&r.audit(&v), " dropped=");

    // --- What the sender asks to send (the client and the agent in web) ---------------
    let target = r.file("target", b"secret");
    let link = r.dir.join("files/link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    case("a symbolic link");
    let (code, out) = r.send(&link, "work").unwrap_err();
    assert_eq!(code, client::REFUSED);
    has(&out, "it is a symbolic link");
    let fifo = r.dir.join("files/fifo");
    assert_eq!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    let sock = r.dir.join("files/sock");
    let _listening = UnixListener::bind(&sock).unwrap();
    let setuid = r.file("setuid", b"#!/bin/sh\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    for (what, path, reason) in [
        ("a FIFO", fifo.clone(), "it is a FIFO"),
        ("a device", PathBuf::from("/dev/null"), "it is a device"),
        ("a socket", sock.clone(), "it is a socket"),
        ("a set-user-ID file", setuid.clone(), "set-user-ID"),
        ("a directory", r.dir.join("files"), "it is a directory"),
    ] {
        case(what);
        let (code, out) = r.send(&path, "work").unwrap_err();
        assert_eq!(code, client::REFUSED, "{out}");
        has(&out, reason);
    }

    // --- Whole transfers with the real agents, and with a hostile party ----------------
    case("a hard-linked source: its content travels, nothing about the link");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let orig = r.file("orig.bin", &content);
    let hard = r.dir.join("files/hard.bin");
    std::fs::hard_link(&orig, &hard).unwrap();
    let (m, client) = r.send(&hard, "work").unwrap();
    assert_eq!(
        (m.size, m.sha256),
        (
            content.len() as u64,
            <[u8; 32]>::from(Sha256::digest(&content))
        )
    );
    let l = r.approve(m);
    let (mut src, mut dst) = (agent_side(&r.home, 5_000), agent_side(&r.home, 5_000));
    let v = r.carry(&l, &mut src, &mut dst);
    assert_eq!(
        (v.outcome, v.reason.as_str()),
        (Outcome::Delivered, "hard.bin")
    );
    let (code, out) = r.answer(&v, client);
    assert_eq!(code, client::DELIVERED, "{out}");
    has(&out, "delivered");
    assert_eq!(
        std::fs::read(r.home.dir.join("Incoming/hard.bin")).unwrap(),
        content
    );
    let meta = std::fs::metadata(r.home.dir.join("Incoming/hard.bin")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.nlink(), meta.mode() & 0o7777), (1, 0o644));

    case("reuse after completion: the same token fetched again");
    let mut again = agent_side(&r.home, 5_000);
    write_frame(&mut again, Data::Fetch, &m.token).unwrap();
    let mut dec = Frames::<Data>::default();
    let mut p = [0u8; PAYLOAD_MAX];
    let (k, n) = dec.read_from(&mut again, &mut p).unwrap().unwrap();
    assert_eq!(k, Data::Failed);
    has(&String::from_utf8_lossy(&p[..n]), "no such request");

    case("a replayed delivery (the same transfer id)");
    let mut replay = agent_side(&r.home, 5_000);
    let mut deliver =
        Manifest::new(l.id, "web", b"hard.bin", content.len() as u64, m.sha256).unwrap();
    write_frame(&mut replay, Data::Deliver, &deliver.to_vec()).unwrap();
    // The agent refuses after the header and closes: the rest may not be taken.
    let _ = replay.write_all(&content);
    let _ = write_frame(&mut replay, Data::Commit, &[]);
    let (k, n) = Frames::<Data>::default()
        .read_from(&mut replay, &mut p)
        .unwrap()
        .unwrap();
    assert_eq!(k, Data::Failed);
    has(&String::from_utf8_lossy(&p[..n]), "delivered before");
    assert_eq!(r.incoming(), ["hard.bin"]);
    std::fs::remove_file(r.home.dir.join("Incoming/hard.bin")).unwrap();

    case(
        "names that collide, a symbolic link and a hard link in ~/Incoming: nothing is overwritten",
    );
    let inc = r.home.dir.join("Incoming");
    std::fs::write(inc.join("report.pdf"), b"mine").unwrap();
    std::os::unix::fs::symlink(&target, inc.join("report (1).pdf")).unwrap();
    std::fs::hard_link(&target, inc.join("report (2).pdf")).unwrap();
    let file = r.file("report.pdf", &content);
    let (m, client) = r.send(&file, "work").unwrap();
    let l = r.approve(m);
    let (mut src, mut dst) = (agent_side(&r.home, 5_000), agent_side(&r.home, 5_000));
    let v = r.carry(&l, &mut src, &mut dst);
    assert_eq!(v.reason, "report (3).pdf");
    r.answer(&v, client);
    assert_eq!(std::fs::read(inc.join("report.pdf")).unwrap(), b"mine");
    assert_eq!(std::fs::read(&target).unwrap(), b"secret");
    assert_eq!(std::fs::read(inc.join("report (3).pdf")).unwrap(), content);
    std::fs::remove_dir_all(&inc).unwrap();

    // Hostile sources (the courier faces them; the destination is the real agent).
    let ok_data = b"the approved bytes".to_vec();
    let approved = |r: &mut Rig| r.approve(manifest(b"item.txt", ok_data.len() as u64, &ok_data));
    type Play = Box<dyn FnOnce(UnixStream) + Send>;
    let offer = |size: u64, then: Vec<u8>| -> Play {
        Box::new(move |mut s: UnixStream| {
            let mut dec = Frames::<Data>::default();
            let mut p = [0u8; PAYLOAD_MAX];
            let _ = dec.read_from(&mut s, &mut p);
            let _ = write_frame(&mut s, Data::Offer, &size.to_le_bytes());
            let _ = s.write_all(&then);
        })
    };
    let stall: Play = Box::new(|mut s: UnixStream| {
        let _ = write_frame(&mut s, Data::Offer, &18u64.to_le_bytes());
        let _ = s.write_all(b"the ");
        // Then nothing, and the connection held open until the courier has given up on
        // it (closed its end), however long it took to get there.
        let end = Instant::now() + Duration::from_millis(PATIENT_MS);
        while Instant::now() < end {
            use std::io::ErrorKind::{Interrupted, WouldBlock};
            match s.read(&mut [0u8; 64]) {
                Ok(1..) => {}
                Err(e) if matches!(e.kind(), WouldBlock | Interrupted) => {}
                Ok(0) | Err(_) => break,
            }
        }
    });
    let spoof: Play = Box::new(|mut s: UnixStream| {
        let _ = write_frame(&mut s, Data::Stored, b"item.txt");
    });
    let garbage: Play = Box::new(|mut s: UnixStream| {
        let _ = s.write_all(&[0xff; 64]);
    });
    let mut longer = ok_data.clone();
    longer.extend_from_slice(b" and more");
    let mut other = ok_data.clone();
    other[0] ^= 1;
    for (what, play, reason) in [
        (
            "declared size short (the source closes early)",
            offer(18, ok_data[..10].to_vec()),
            "ended after 10 of 18 bytes",
        ),
        (
            "declared size long (the source sends more)",
            offer(18, longer),
            "sent more than the 18 bytes it declared",
        ),
        (
            "an offer of another size",
            offer(17, ok_data[..17].to_vec()),
            "offered 17 bytes, 18 were approved",
        ),
        ("a stream that stalls", stall, "stalled"),
        (
            "a spoofed completion (stored, from the source)",
            spoof,
            "broke the protocol",
        ),
        ("garbage instead of frames", garbage, "broke the protocol"),
        (
            "other bytes than approved",
            offer(18, other),
            "do not match the approved SHA-256",
        ),
    ] {
        case(what);
        let l = approved(&mut r);
        // Only a source that stalls is to be waited for no longer than that.
        let ms = if reason == "stalled" {
            STALL_MS
        } else {
            PATIENT_MS
        };
        let mut src = hostile(ms, play);
        let mut dst = agent_side(&r.home, PATIENT_MS);
        let v = r.carry(&l, &mut src, &mut dst);
        assert_eq!(v.outcome, Outcome::Failed, "{what}");
        has(&v.reason, reason);
        std::thread::sleep(Duration::from_millis(100));
        assert!(r.incoming().is_empty(), "{what}: {:?}", r.incoming());
    }

    // Hostile couriers (the destination agent faces them).
    let commit_early = {
        let d = ok_data.clone();
        move |mut s: UnixStream| {
            let m = manifest(b"item.txt", d.len() as u64, &d);
            let _ = write_frame(
                &mut s,
                Data::Deliver,
                &Manifest::new([77; 16], "web", b"item.txt", m.size, m.sha256)
                    .unwrap()
                    .to_vec(),
            );
            let _ = s.write_all(&d[..5]);
            let _ = write_frame(&mut s, Data::Commit, &[]);
        }
    };
    case("a commit before the item is complete, then the end");
    // The hostile end plays the courier; the real agent reads the other end.
    let mut s = hostile(700, commit_early);
    agent::handle_data(&mut s, &r.home);
    assert!(r.incoming().is_empty());
    case("no commit: the connection ends after the item");
    let (mut courier_end, mut agent_end) = pair(700);
    let h = r.home.clone();
    let t = std::thread::spawn(move || agent::handle_data(&mut agent_end, &h));
    deliver = manifest(b"item.txt", ok_data.len() as u64, &ok_data);
    let hdr = Manifest::new([78; 16], "web", b"item.txt", deliver.size, deliver.sha256)
        .unwrap()
        .to_vec();
    write_frame(&mut courier_end, Data::Deliver, &hdr).unwrap();
    courier_end.write_all(&ok_data).unwrap();
    courier_end.shutdown(std::net::Shutdown::Write).unwrap();
    let (k, n) = Frames::<Data>::default()
        .read_from(&mut courier_end, &mut p)
        .unwrap()
        .unwrap();
    t.join().unwrap();
    assert_eq!(k, Data::Failed);
    has(
        &String::from_utf8_lossy(&p[..n]),
        "not completed; nothing was stored",
    );
    assert!(r.incoming().is_empty());

    case("~/Incoming is a symbolic link");
    let elsewhere = r.dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let _ = std::fs::remove_dir_all(r.home.dir.join("Incoming"));
    std::os::unix::fs::symlink(&elsewhere, r.home.dir.join("Incoming")).unwrap();
    let l = approved(&mut r);
    let (mut src, mut dst) = (
        hostile(PATIENT_MS, offer(18, ok_data.clone())),
        agent_side(&r.home, PATIENT_MS),
    );
    let v = r.carry(&l, &mut src, &mut dst);
    has(&v.reason, "~/Incoming is a symbolic link");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    std::fs::remove_file(r.home.dir.join("Incoming")).unwrap();

    case("~/Incoming becomes a symbolic link during the transfer");
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 241) as u8).collect();
    let l = r.approve(manifest(b"big.bin", big.len() as u64, &big));
    let inc = r.home.dir.join("Incoming");
    let swap = {
        let (inc, elsewhere, big) = (inc.clone(), elsewhere.clone(), big.clone());
        move |mut s: UnixStream| {
            let mut dec = Frames::<Data>::default();
            let mut p = [0u8; PAYLOAD_MAX];
            let _ = dec.read_from(&mut s, &mut p);
            let _ = write_frame(&mut s, Data::Offer, &(big.len() as u64).to_le_bytes());
            let _ = s.write_all(&big[..1_000_000]);
            // Once the destination holds its unnamed file in ~/Incoming:
            let end = Instant::now() + Duration::from_secs(20);
            while !open_tmpfile_in(&inc) {
                assert!(
                    Instant::now() < end,
                    "the destination never opened its file"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            std::fs::rename(&inc, inc.with_file_name("Incoming.moved")).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &inc).unwrap();
            let _ = s.write_all(&big[1_000_000..]);
        }
    };
    let (mut src, mut dst) = (hostile(5_000, swap), agent_side(&r.home, 5_000));
    let v = r.carry(&l, &mut src, &mut dst);
    assert_eq!(v.outcome, Outcome::Delivered, "{}", v.reason);
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "written through the link"
    );
    assert_eq!(
        std::fs::read(inc.with_file_name("Incoming.moved").join("big.bin")).unwrap(),
        big
    );
    std::fs::remove_file(&inc).unwrap();
    std::fs::remove_dir_all(inc.with_file_name("Incoming.moved")).unwrap();

    case("not enough space in the destination");
    let tiny = r.dir.join("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tiny"])
        .arg(&tiny)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a small tmpfs (needs root)");
    let small_home = Home {
        dir: tiny.clone(),
        owner: None,
    };
    let l = r.approve(manifest(b"big.bin", big.len() as u64, &big));
    let (mut src, mut dst) = (
        hostile(2_000, offer(big.len() as u64, big.clone())),
        agent_side(&small_home, 2_000),
    );
    let v = r.carry(&l, &mut src, &mut dst);
    has(&v.reason, "not enough space in ~/Incoming");
    assert_eq!(std::fs::read_dir(tiny.join("Incoming")).unwrap().count(), 0);
    // Unmounted, or the rig's directory could not be removed after the test.
    let unmounted = std::process::Command::new("umount").arg(&tiny).status();
    assert!(unmounted.unwrap().success(), "umount {}", tiny.display());

    case("the destination dies mid-transfer: nothing is left, the courier says failed");
    let l = r.approve(manifest(b"big.bin", big.len() as u64, &big));
    let mut src = hostile(2_000, offer(big.len() as u64, big.clone()));
    let mut dst = hostile(2_000, move |mut s: UnixStream| {
        // A destination whose room was killed after the first megabyte.
        let mut head = vec![0u8; 1 << 20];
        let _ = s.read_exact(&mut head);
    });
    let v = r.carry(&l, &mut src, &mut dst);
    assert_eq!(v.outcome, Outcome::Failed);
    has(&v.reason, "the destination room work");
    assert!(r.incoming().is_empty());

    case("the courier dies mid-transfer: the destination keeps nothing");
    let (mut courier_end, mut agent_end) = pair(2_000);
    let h = r.home.clone();
    let t = std::thread::spawn(move || agent::handle_data(&mut agent_end, &h));
    let hdr = Manifest::new(
        [79; 16],
        "web",
        b"big.bin",
        big.len() as u64,
        Sha256::digest(&big).into(),
    )
    .unwrap();
    write_frame(&mut courier_end, Data::Deliver, &hdr.to_vec()).unwrap();
    courier_end.write_all(&big[..2_000_000]).unwrap();
    drop(courier_end);
    t.join().unwrap();
    assert!(r.incoming().is_empty());

    eprintln!(
        "{cases} hostile cases; audit log: {} records",
        r.log.iter().filter(|&&b| b == b'\n').count()
    );
    assert!(cases >= 25, "{cases}");
    assert!(anchor_audit::verify(&r.log).is_ok());
}
