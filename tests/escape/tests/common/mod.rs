// SPDX-License-Identifier: GPL-3.0-or-later
//! A hosted bay0 (`bay0 --hosted STATE --layout DIR`) running real namespace rooms on
//! this machine: the product binaries (`$ANCHOR_OUT/bin/bay0`, `anchor-jail`, static, as
//! `scripts/build-static.sh` makes them) and the real base image (`images/build.sh`
//! output, with the real agent as /sbin/init). `make escape` builds them first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

pub mod peer;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `$ANCHOR_OUT` (default `$ANCHOR_CACHE/out`, `ANCHOR_CACHE` default /var/cache/anchor-os).
pub fn out_dir() -> PathBuf {
    std::env::var_os("ANCHOR_OUT").map_or_else(
        || {
            std::env::var_os("ANCHOR_CACHE")
                .map_or_else(|| PathBuf::from("/var/cache/anchor-os"), PathBuf::from)
                .join("out")
        },
        PathBuf::from,
    )
}

/// An artifact of `make images`, or a clear failure.
pub fn artifact(rel: &str) -> PathBuf {
    let p = out_dir().join(rel);
    assert!(
        p.is_file(),
        "{} is missing: build it first (`make images`, or scripts/build-static.sh then \
         images/build.sh base, with the same ANCHOR_OUT)",
        p.display()
    );
    p
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (namespaces, cgroups, loop devices)"
    );
}

/// A namespace room policy.
pub fn ns_policy(name: &str, memory_mib: u32, pids_max: u32) -> String {
    format!(
        "name = \"{name}\"\nimage = \"base\"\nbackend = \"namespaces\"\n\
         [resources]\nmemory = \"{memory_mib}MiB\"\nvcpus = 1\npids_max = {pids_max}\n"
    )
}

/// The escape probe, where the room image has it.
pub const PROBE: &str = "/usr/lib/anchor/escape/anchor-escape-probe";

pub struct Bay0 {
    child: Child,
    log: Arc<Mutex<String>>,
    pub dir: PathBuf,
    /// This test's copy of the base image (its loop devices are told apart by it).
    pub image: PathBuf,
    /// This test's rooms (their cgroups are removed when the test ends).
    rooms: Vec<String>,
}

impl Bay0 {
    /// bay0 with two namespace rooms, both started: `hog` (`memory_mib`, `pids_max`), the
    /// room that takes all it may of something the host shares, and `other` (64 MiB, 32
    /// tasks), the neighbour that must keep its own.
    pub fn hog_and_other(tag: &str, hog: (&str, u32, u32), other: &str) -> Bay0 {
        let (name, memory_mib, pids_max) = hog;
        let b = Bay0::start(
            tag,
            &[
                (name, ns_policy(name, memory_mib, pids_max)),
                (other, ns_policy(other, 64, 32)),
            ],
        );
        for room in [name, other] {
            assert!(
                b.answer(&format!("start {room}")).starts_with("ok room"),
                "{}",
                b.log()
            );
        }
        b
    }

    /// bay0 with the rooms `policies` (name, policy text) in a scratch layout.
    pub fn start(tag: &str, policies: &[(&str, String)]) -> Bay0 {
        require_root();
        // Not under /tmp or /run: hosted bay0 mounts its own over those.
        let dir = PathBuf::from(format!(
            "/var/tmp/anchor-escape-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = dir.join("layout");
        std::fs::create_dir_all(layout.join("images")).unwrap();
        std::fs::create_dir_all(layout.join("policies")).unwrap();
        std::fs::copy(artifact("bin/anchor-jail"), layout.join("anchor-jail")).unwrap();
        let image = layout.join("images/base.squashfs");
        std::fs::copy(artifact("images/base.squashfs"), &image).unwrap();
        for (name, text) in policies {
            std::fs::write(layout.join(format!("policies/{name}.toml")), text).unwrap();
        }
        let mut child = Command::new(artifact("bin/bay0"))
            .arg("--hosted")
            .arg(dir.join("state"))
            .arg("--layout")
            .arg(&layout)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let b = Bay0 {
            child,
            log,
            dir,
            image,
            rooms: policies.iter().map(|(n, _)| n.to_string()).collect(),
        };
        b.wait_log("bay0: ready", Duration::from_secs(20));
        b
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < end,
                "no {needle:?} within {timeout:?}; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("state/run/anchor/control.sock")
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    /// One request; every reply line.
    pub fn ask(&self, request: &str) -> Vec<String> {
        let mut s = self.connect();
        s.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines().map(str::to_string).collect()
    }

    /// The final line of a request.
    pub fn answer(&self, request: &str) -> String {
        self.ask(request).last().cloned().unwrap_or_default()
    }

    /// bay0's `list` record of `room`: the open room's, not the one a reset set aside
    /// (listed under the same name, `state=stopping`, until its last process is reaped).
    pub fn record(&self, room: &str) -> String {
        let lines = self.ask("list");
        let mine = |l: &&String| l.starts_with(&format!("room name={room} "));
        let open = lines
            .iter()
            .filter(mine)
            .find(|l| !l.contains(" state=stopping "));
        open.or_else(|| lines.iter().find(mine))
            .cloned()
            .unwrap_or_default()
    }

    /// The records of bay0's audit log (this boot's: a hosted bay0 has no vault) that
    /// contain `needle`, in order.
    pub fn audit_records(&self, needle: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("state/run/anchor/audit.log")).unwrap();
        log.lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// bay0's own host pid (PID 1 of its namespaces).
    pub fn pid(&self) -> i32 {
        let outer = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).unwrap();
        children.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// The host pid of an open room's PID 1 (its agent).
    pub fn room_pid(&self, room: &str) -> i32 {
        let line = self.record(room);
        let inner: String = line
            .split(' ')
            .find_map(|f| f.strip_prefix("pid="))
            .unwrap_or_else(|| panic!("{room} is not open: {line}"))
            .into();
        let bay0 = self.pid();
        let children =
            std::fs::read_to_string(format!("/proc/{bay0}/task/{bay0}/children")).unwrap();
        for host in children.split_whitespace() {
            let status =
                std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
            let ns = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .unwrap_or("");
            if ns.split_whitespace().nth(1) == Some(inner.as_str()) {
                return host.parse().unwrap();
            }
        }
        panic!("no child of bay0 has pid {inner} in bay0's namespace");
    }

    /// What rooms could leave behind: bay0's descriptors, children and mounts, this
    /// test's rooms' cgroups, the run directories, loop devices backed by this test's
    /// image, processes of the rooms' uids.
    pub fn footprint(&self, prefix: &str) -> Footprint {
        let pid = self.pid();
        let count = |p: String| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
        let mut cgroups = Vec::new();
        for c in ["", "memory/", "pids/", "cpu/"] {
            if let Ok(d) = std::fs::read_dir(format!("/sys/fs/cgroup/{c}anchor")) {
                for e in d.flatten().filter(|e| e.path().is_dir()) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(prefix) {
                        cgroups.push(format!("{c}{n}"));
                    }
                }
            }
        }
        Footprint {
            fds: count(format!("/proc/{pid}/fd")),
            children: std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap()
                .trim()
                .to_string(),
            mounts: std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                .unwrap()
                .lines()
                .count(),
            cgroups,
            run_dirs: std::fs::read_dir(self.dir.join("state/run/anchor/rooms"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            loops: loop_devices_of(&self.image),
        }
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
        // The rooms bay0 still had open die with it; their cgroups are this test's to go
        // (once their processes are gone, up to 10 s a room).
        let root = Path::new(anchor_sys::cgroup::ROOT);
        for room in &self.rooms {
            anchor_sys::cgroup::remove_within(root, &format!("anchor/{room}"), 10_000);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub fds: usize,
    pub children: String,
    pub mounts: usize,
    pub cgroups: Vec<String>,
    pub run_dirs: Vec<String>,
    pub loops: Vec<String>,
}

/// Loop devices whose backing file is `image`.
pub fn loop_devices_of(image: &Path) -> Vec<String> {
    let want = image.to_string_lossy().into_owned();
    let mut found = Vec::new();
    if let Ok(d) = std::fs::read_dir("/sys/block") {
        for e in d.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            let backing =
                std::fs::read_to_string(e.path().join("loop/backing_file")).unwrap_or_default();
            if backing.trim() == want {
                found.push(name);
            }
        }
    }
    found.sort();
    found
}

/// `MAJOR:MINOR` of the device behind the root of the process `pid`'s mount namespace
/// (its SquashFS image), from the host's view of its mountinfo.
pub fn root_device(pid: i32) -> String {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let roots: Vec<&str> = info
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let fstype = l.split(" - ").nth(1).and_then(|t| t.split(' ').next());
            f.get(4) == Some(&"/") && fstype == Some("squashfs")
        })
        .collect();
    assert_eq!(roots.len(), 1, "no single squashfs root:\n{info}");
    roots[0].split(' ').nth(2).unwrap().to_string()
}

/// Host processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(d) = std::fs::read_dir("/proc") {
        for e in d.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

/// A room's console, attached through bay0's control socket.
pub struct Console {
    pub stream: UnixStream,
    pub seen: String,
    room: String,
}

impl Console {
    pub fn attach(b: &Bay0, room: &str) -> Console {
        let mut s = b.connect();
        s.write_all(format!("console {room}\n").as_bytes()).unwrap();
        let mut c = Console {
            stream: s,
            seen: String::new(),
            room: room.into(),
        };
        c.wait_for(&format!("{room}:~# "), Duration::from_secs(20));
        // A wide terminal: the shell never folds long command lines.
        c.run("stty cols 2000", "", Duration::from_secs(20));
        c
    }

    /// Reads until `needle` appears in what was rendered since the last mark.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(i) = self.seen.find(needle) {
                let upto = i + needle.len();
                let got = self.seen[..upto].to_string();
                self.seen.drain(..upto);
                return got;
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "room {}: no {needle:?} within {timeout:?}; console:\n{}",
                self.room,
                self.seen
            );
            self.stream
                .set_read_timeout(Some(left.min(Duration::from_secs(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => panic!(
                    "room {}: console closed; console:\n{}",
                    self.room, self.seen
                ),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
    }

    /// Types `cmd`, then waits for the line `@@done@@ STATUS` a trailer prints;
    /// returns the room's lines in between (the `ROOM| ` prefix removed) and the status.
    pub fn run(&mut self, cmd: &str, _expect: &str, timeout: Duration) -> (Vec<String>, i32) {
        let marker = "@@done@@";
        // The marker starts a line of its own even after output without a final newline.
        let typed = format!("{cmd}; printf '\\n{marker} %s\\n' $?\r");
        self.stream.write_all(typed.as_bytes()).unwrap();
        // The echo of the typed line holds the marker too: skip past it first.
        self.wait_for(&format!("{marker} %s"), timeout);
        let text = self.wait_for(&format!("{}| {marker} ", self.room), timeout);
        let status_text = self.wait_for("\n", timeout);
        let status = status_text.trim().parse().unwrap_or(-1);
        let echo = format!("{marker} %s");
        let prefix = format!("{}| ", self.room);
        let lines = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            // The typed line may be echoed twice (by the tty, then redrawn by the shell's
            // line editor): every copy holds the trailer's `%s`, output never does.
            .filter(|l| !l.is_empty() && !l.starts_with(marker) && !l.contains(&echo))
            .map(str::to_string)
            .collect();
        (lines, status)
    }
}
