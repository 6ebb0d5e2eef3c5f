// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's room lifecycle and control socket, for real, on this machine: bay0 in hosted
//! mode with `--layout` pointing at a scratch directory whose `anchor-jail` is the real
//! jail and whose `anchor-vmm` is `anchor-jail-probe`, which stands in for a room (it
//! reports ready on the umbilical and echoes its console) since this machine cannot boot
//! a Linux guest under KVM. Everything else is the product path: policies, admission,
//! the jail (cgroup v1 here), ptys, the umbilical, cleanup.
//!
//! Needs root, and the workspace's binaries built (`make unit` builds them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

const BAY0: &str = env!("CARGO_BIN_EXE_bay0");

/// A workspace binary next to this test's directory (target/<profile>/NAME).
fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`; make unit does)",
        path.display()
    );
    path
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test needs root (namespaces, cgroups)");
}

const POLICY: &str = "image = \"base\"\nbackend = \"microvm\"\n[resources]\nvcpus = 1\n";

/// bay0's descriptors, its children, its mounts, the rooms' cgroups and run directories.
type Footprint = (usize, String, usize, Vec<String>, Vec<String>);

struct Bay0 {
    child: Child,
    log: Arc<Mutex<String>>,
    dir: PathBuf,
    /// Prefix of this test's room names.
    name: String,
    /// Unique per test process: cgroups are the host's, shared by every test (and every
    /// test run) on the machine, so the real room names carry it (`NAME<tag>-x`); the tests
    /// read and write the short names (`NAME-x`) and these helpers translate.
    tag: String,
}

impl Bay0 {
    fn start(name: &str) -> Bay0 {
        Bay0::start_with(name, Stdio::null())
    }

    /// [`Bay0::start`] with `stdin` as bay0's console input.
    fn start_with(name: &str, stdin: Stdio) -> Bay0 {
        Bay0::start_spawned(name, |state, layout| {
            common::spawn_hosted(BAY0, state, layout, stdin)
        })
    }

    /// [`Bay0::start`] with a terminal as bay0's console, its log on that terminal too:
    /// `slave` is bay0's stdin, stdout and stderr; what it shows is read from `master`.
    fn start_on_terminal(name: &str, slave: OwnedFd, master: std::fs::File) -> Bay0 {
        Bay0::start_spawned(name, |state, layout| {
            let io = || Stdio::from(slave.try_clone().unwrap());
            let child = Command::new(BAY0)
                .arg("--hosted")
                .arg(state)
                .arg("--layout")
                .arg(layout)
                .stdin(io())
                .stdout(io())
                .stderr(io())
                .spawn()
                .unwrap();
            drop(slave);
            let log = Arc::new(Mutex::new(String::new()));
            let shown = log.clone();
            std::thread::spawn(move || {
                let (mut master, mut buf) = (master, [0u8; 4096]);
                while let Ok(n @ 1..) = master.read(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    shown.lock().unwrap().push_str(&text);
                }
            });
            (child, log)
        })
    }

    fn start_spawned(
        name: &str,
        spawn: impl FnOnce(&Path, &Path) -> (Child, Arc<Mutex<String>>),
    ) -> Bay0 {
        require_root();
        // Not under /tmp or /run: hosted bay0 mounts its own over those.
        let dir = PathBuf::from(format!("/var/tmp/bay0-rooms-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = dir.join("layout");
        std::fs::create_dir_all(layout.join("images")).unwrap();
        std::fs::create_dir_all(layout.join("policies")).unwrap();
        std::fs::copy(sibling("anchor-jail"), layout.join("anchor-jail")).unwrap();
        std::fs::copy(sibling("anchor-jail-probe"), layout.join("anchor-vmm")).unwrap();
        std::fs::write(layout.join("vmlinux"), b"kernel").unwrap();
        std::fs::write(layout.join("images/base.squashfs"), b"image").unwrap();
        // Room names are unique per test and per run: cgroups are the host's, shared by
        // every test running on the machine.
        let tag = format!("{:x}", std::process::id() % 0x10_0000);
        let big_mib = big_mib().unwrap_or(anchor_policy::MICROVM_MEMORY_MAX_MIB);
        let big = format!("memory = \"{big_mib}MiB\"\n");
        for (room, extra) in [
            ("big", big.as_str()),
            ("a", "memory = \"128MiB\"\n"),
            ("b", "memory = \"128MiB\"\n"),
            ("huge", "memory = \"900GiB\"\n"),
            ("short", "memory = \"128MiB\"\n[lifetime]\nmax = \"1m\"\n"),
        ] {
            let room = match (name, room) {
                ("probe", "a") => format!("probe{tag}-a"),
                ("probe", _) => format!("probe{tag}-other"),
                _ => format!("{name}{tag}-{room}"),
            };
            // `huge` is refused by admission whatever the host: a namespace room (a
            // microVM room can have at most 16 GiB, which a large host would admit).
            let policy = if extra.contains("900GiB") {
                POLICY.replace("\"microvm\"", "\"namespaces\"")
            } else {
                POLICY.to_owned()
            };
            let text = format!("name = \"{room}\"\n{policy}{extra}");
            std::fs::write(layout.join(format!("policies/{room}.toml")), text).unwrap();
        }
        // An outbound room (the jail starts its passt).
        let n = format!("{name}{tag}-n");
        let text = format!("name = \"{n}\"\nnetwork = \"outbound\"\n{POLICY}memory = \"128MiB\"\n");
        std::fs::write(layout.join(format!("policies/{n}.toml")), text).unwrap();
        let (child, log) = spawn(&dir.join("state"), &layout);
        let b = Bay0 {
            child,
            log,
            dir,
            name: name.to_string(),
            tag,
        };
        b.wait_log("bay0: ready", Duration::from_secs(20));
        b
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `text` with this test's short room names made real.
    fn real(&self, text: &str) -> String {
        let n = &self.name;
        text.replace(&format!("{n}-"), &format!("{n}{}-", self.tag))
    }

    /// `text` with this test's real room names made short.
    fn shown(&self, text: &str) -> String {
        let n = &self.name;
        text.replace(&format!("{n}{}-", self.tag), &format!("{n}-"))
    }

    fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        let needle = self.real(needle);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(&needle)) {
                return self.shown(line);
            }
            assert!(
                Instant::now() < end,
                "no {needle:?} within {timeout:?}; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("state/run/anchor/control.sock")
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    /// One request; every reply line.
    fn ask(&self, request: &str) -> Vec<String> {
        let mut s = self.connect();
        s.write_all(format!("{}\n", self.real(request)).as_bytes())
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines().map(|l| self.shown(l)).collect()
    }

    /// The final line of a request.
    fn answer(&self, request: &str) -> String {
        self.ask(request).last().cloned().unwrap_or_default()
    }

    /// The host pid of a running room's VMM (not of one being closed beside it).
    fn pid_of(&self, room: &str) -> i32 {
        let line = self
            .ask("list")
            .into_iter()
            .find(|l| l.starts_with(&format!("room name={room} ")) && !l.contains("state=stopping"))
            .unwrap();
        let pid = line
            .split(' ')
            .find_map(|f| f.strip_prefix("pid="))
            .unwrap_or_else(|| panic!("{line}"))
            .to_string();
        // `list` shows the pid as bay0's namespace sees it: find the host pid.
        let inner = self.inner_pid();
        let children =
            std::fs::read_to_string(format!("/proc/{inner}/task/{inner}/children")).unwrap();
        for host in children.split_whitespace() {
            let status =
                std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
            let ns = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .unwrap_or("");
            if ns.split_whitespace().nth(1) == Some(pid.as_str()) {
                return host.parse().unwrap();
            }
        }
        panic!("no child of bay0 ({inner}: {children:?}) has pid {pid} in its namespace");
    }

    /// The pid bay0's namespace gives host process `host`.
    fn ns_pid(&self, host: i32) -> String {
        let status = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap();
        let ns = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .unwrap();
        ns.split_whitespace().nth(1).unwrap().to_string()
    }

    /// Host pid of the namespace's PID 1 (bay0 itself).
    fn inner_pid(&self) -> i32 {
        let outer = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).unwrap();
        children.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// What a room could leave behind: bay0's descriptors, its children, its mounts, the
    /// rooms' cgroups and run directories.
    fn footprint(&self) -> Footprint {
        let pid = self.inner_pid();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .unwrap()
            .lines()
            .count();
        let mut cgroups = Vec::new();
        for c in ["memory", "pids", "cpu"] {
            if let Ok(d) = std::fs::read_dir(format!("/sys/fs/cgroup/{c}/anchor")) {
                for e in d.flatten().filter(|e| e.path().is_dir()) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(&format!("{}{}-", self.name, self.tag)) {
                        cgroups.push(format!("{c}/{}", self.shown(&n)));
                    }
                }
            }
        }
        let rundirs = std::fs::read_dir(self.dir.join("state/run/anchor/rooms"))
            .map(|d| {
                d.flatten()
                    .map(|e| self.shown(&e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        (fds, children.trim().to_string(), mounts, cgroups, rundirs)
    }
}

impl Bay0 {
    /// Waits (up to 5 s: cgroups may take a tick longer than the VMM's reaping) for the
    /// footprint to be `before` again, and asserts it is.
    fn assert_back_to(&self, before: &Footprint) {
        let end = Instant::now() + Duration::from_secs(5);
        let mut after = self.footprint();
        while after != *before && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
            after = self.footprint();
        }
        assert_eq!(
            *before, after,
            "(fds, children, mounts, cgroups, run dirs) before vs after"
        );
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
        // The rooms bay0 still had open die with it; their cgroups are this test's to go.
        let prefix = format!("{}{}-", self.name, self.tag);
        common::remove_room_cgroups(|n| n.starts_with(&prefix));
    }
}

#[test]
fn a_hundred_start_stop_cycles_leave_nothing_behind() {
    let b = Bay0::start("cycles");
    // Once first, so lazily created directories (rooms/, the cgroup parents) exist.
    assert!(
        b.answer("start cycles-a")
            .starts_with("ok room cycles-a ready in"),
        "{}",
        b.log()
    );
    assert_eq!(b.answer("stop cycles-a"), "ok room cycles-a stopped");
    let before = b.footprint();
    assert_eq!(
        before.1, "",
        "bay0 has children before the cycles: {before:?}"
    );
    for i in 0..100 {
        let started = b.answer("start cycles-a");
        assert!(
            started.starts_with("ok room cycles-a ready in"),
            "cycle {i}: {started}"
        );
        assert_eq!(
            b.answer("stop cycles-a"),
            "ok room cycles-a stopped",
            "cycle {i}"
        );
    }
    // The last VMM is reaped before `stop` answers; cgroups may take a tick longer.
    b.assert_back_to(&before);
}

/// The processes in room `real`'s cgroup: (pid, command).
fn in_cgroup(real: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let cg = std::fs::read_to_string(p.join("cgroup")).unwrap_or_default();
        if cg.contains(&format!("/anchor/{real}\n")) {
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            found.push((
                e.file_name().to_string_lossy().into_owned(),
                comm.trim().into(),
            ));
        }
    }
    found
}

/// Waits until room `real` has its passt (hang detection only: it is the jail's child,
/// which becomes passt at its exec, perhaps after the room reported ready).
fn wait_passt(real: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let procs = in_cgroup(real);
        let n = procs.iter().filter(|(_, c)| c.starts_with("passt")).count();
        if n == 1 {
            return;
        }
        assert!(n == 0 && Instant::now() < end, "passts: {procs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn outbound_rooms_take_their_passt_with_them_every_time() {
    if !std::path::Path::new("/usr/bin/passt").is_file() {
        panic!("this test needs /usr/bin/passt (apt-get install passt; scripts/setup.sh)");
    }
    let b = Bay0::start("net");
    let real = b.real("net-n");
    assert!(
        b.answer("start net-n")
            .starts_with("ok room net-n ready in"),
        "{}",
        b.log()
    );
    // The jail started exactly one passt, in the room's cgroup, and said so. Its line
    // reaches the log through bay0's read of the jail's stderr pipe, which bay0 may serve
    // after it has answered the start (a fast room greets on the umbilical at once), so
    // the test waits for the line rather than expecting it with the answer.
    wait_passt(&real);
    b.wait_log("network outbound: passt as uid", Duration::from_secs(10));
    assert_eq!(b.answer("stop net-n"), "ok room net-n stopped");
    assert_eq!(in_cgroup(&real), []);
    let before = b.footprint();
    for i in 0..50 {
        let started = b.answer("start net-n");
        assert!(
            started.starts_with("ok room net-n ready in"),
            "cycle {i}: {started}"
        );
        wait_passt(&real);
        assert_eq!(b.answer("stop net-n"), "ok room net-n stopped", "cycle {i}");
        // bay0 answers once the VMM is reaped; its PID namespace (and passt) went first.
        assert_eq!(in_cgroup(&real), [], "cycle {i}: passt outlived its room");
    }
    let end = Instant::now() + Duration::from_secs(5);
    let mut after = b.footprint();
    while after != before && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        after = b.footprint();
    }
    assert_eq!(
        before, after,
        "(fds, children, mounts, cgroups, run dirs) before vs after"
    );
}

#[test]
fn two_rooms_run_at_once_and_a_killed_vmm_is_cleaned_up() {
    let b = Bay0::start("two");
    assert!(b.answer("start two-a").starts_with("ok room two-a ready"));
    assert!(b.answer("start two-b").starts_with("ok room two-b ready"));
    let list = b.ask("list");
    for room in ["two-a", "two-b"] {
        let line = list
            .iter()
            .find(|l| l.starts_with(&format!("room name={room} ")))
            .unwrap();
        for field in [
            "backend=microvm",
            "state=running",
            "memory_mib=128",
            "vcpus=1",
        ] {
            assert!(line.contains(field), "{line}");
        }
    }
    assert!(
        list.iter().any(|l| l.starts_with("host memory_mib=")),
        "{list:?}"
    );
    assert_eq!(list.last().unwrap(), "ok");
    // Each room runs under its own uid, in its own cgroup.
    let (a, c) = (b.pid_of("two-a"), b.pid_of("two-b"));
    let uid = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .to_string()
    };
    assert_ne!(uid(a), uid(c), "pids {a} {c}");
    assert!(
        !uid(a).contains("\t0\t"),
        "a room's VMM runs as root: {}",
        uid(a)
    );
    // The jail's rlimits hold for the VMM (soft = hard): open files, processes of its uid
    // (the policy's 1 vCPU + the VMM's threads: pids.max), no file created or extended, no
    // core dumps (a core limit of 1 byte: 0 would not stop a core_pattern pipe), no locked
    // memory.
    let limits = std::fs::read_to_string(format!("/proc/{a}/limits")).unwrap();
    for (name, value) in [
        ("Max open files", "256"),
        ("Max processes", "17"),
        ("Max file size", "0"),
        ("Max core file size", "1"),
        ("Max locked memory", "0"),
    ] {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
        assert_eq!(fields[..2], [value, value], "{line}");
    }
    // A VMM that dies is noticed, logged with its reason, and its room cleaned up.
    // SAFETY: kill has no memory arguments.
    assert_eq!(unsafe { libc::kill(a, libc::SIGKILL) }, 0);
    let ended = b.wait_log("room two-a (pid", Duration::from_secs(10));
    assert!(ended.contains("killed by signal 9"), "{ended}");
    let list = b.ask("list");
    assert!(
        list.iter().any(|l| l == "room name=two-a state=stopped"),
        "{list:?}"
    );
    assert!(list
        .iter()
        .any(|l| l.starts_with("room name=two-b ") && l.contains("state=running")));
    let (_, _, _, cgroups, rundirs) = b.footprint();
    assert!(
        !cgroups.iter().any(|c| c.ends_with("/two-a")),
        "{cgroups:?}"
    );
    assert_eq!(rundirs, ["two-b"]);
    let reset = b.answer("reset two-b");
    assert!(reset.starts_with("ok room two-b ready"), "{reset}");
    assert_eq!(b.answer("stop two-b"), "ok room two-b stopped");
    // The old room (killed once the new one was ready) is listed, stopping, until reaped.
    let end = Instant::now() + Duration::from_secs(10);
    while b.ask("list").iter().any(|l| l.contains("state=stopping")) {
        assert!(Instant::now() < end, "the reset's old room was not reaped");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each start and end is an audit record (hash-chained, the room name escaped); a
    // reset's start says so (before, it was `opened` like any other).
    let log = std::fs::read(b.dir.join("state/run/anchor/audit.log")).unwrap();
    anchor_audit::verify(&log).unwrap_or_else(|bad| panic!("audit log: {bad}"));
    let records: Vec<(String, String, String)> = log
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| anchor_audit::Record::parse(l).unwrap())
        .map(|r| {
            let field = |k| String::from_utf8_lossy(r.field(k).unwrap_or_default()).into_owned();
            (r.event.clone(), b.shown(&field("room")), field("how"))
        })
        .collect();
    let want = [
        ("room.start", "two-a", "opened"),
        ("room.start", "two-b", "opened"),
        ("room.end", "two-a", "the room was killed (SIGKILL)"),
        ("room.start", "two-b", "reset"),
        // The old room (killed once the new one was ready) and the new one.
        ("room.stop", "two-b", "closed"),
        ("room.stop", "two-b", "closed"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(e, r, h)| (e.to_string(), r.to_string(), h.to_string()))
        .collect();
    assert_eq!(records, want);
}

#[test]
fn requests_that_overtake_a_booting_room_all_hear_of_its_successor() {
    let b = Bay0::start("spam");
    let before = b.footprint();
    // `start`, then two `reset`s written before the first room could be ready: each
    // waiting client follows the room to the one that replaced it and hears it is ready.
    let mut clients: Vec<UnixStream> = Vec::new();
    for req in ["start spam-a", "reset spam-a", "reset spam-a"] {
        let mut s = b.connect();
        s.write_all(format!("{}\n", b.real(req)).as_bytes())
            .unwrap();
        clients.push(s);
        // The next request must find the room already in the table.
        b.wait_log("room spam-a opened", Duration::from_secs(10));
    }
    for (i, mut s) in clients.into_iter().enumerate() {
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let text = b.shown(&text);
        assert!(
            text.starts_with("ok room spam-a ready in"),
            "request {i}: {text}\n{}",
            b.log()
        );
    }
    assert_eq!(b.answer("stop spam-a"), "ok room spam-a stopped");
    b.assert_back_to(&before);
}

/// A room memory that bay0's admission lets in once but not twice on this machine: 60 %
/// of what is left for rooms (MemTotal less the host reserve), at most what a microVM room
/// can have (16 GiB). `None` when the machine has room for two of those (MemTotal over
/// about 37 GiB): no microVM room fits only once there.
fn big_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total = anchor_policy::admission::mem_total_mib(&meminfo);
    let left = total - anchor_policy::admission::reserve_mib(total);
    let big = (left * 6 / 10).min(anchor_policy::MICROVM_MEMORY_MAX_MIB);
    // Each charged with its VMM's overhead.
    let charged = big + bay0::room::VMM_OVERHEAD_MIB;
    (2 * charged > left).then_some(big)
}

/// The position of the first log line holding every one of `parts`.
fn line_at(log: &str, parts: &[&str]) -> usize {
    log.lines()
        .position(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{log}"))
}

#[test]
fn reset_opens_the_room_beside_its_old_vmm_and_leaves_nothing_behind() {
    let b = Bay0::start("reset");
    let ready = |room: &str| {
        let a = b.answer(&format!("start {room}"));
        assert!(a.starts_with(&format!("ok room {room} ready in")), "{a}");
    };
    ready("reset-a");
    assert_eq!(b.answer("stop reset-a"), "ok room reset-a stopped");
    let before = b.footprint();
    ready("reset-a");
    for i in 0..5 {
        let old = b.ns_pid(b.pid_of("reset-a"));
        let a = b.answer("reset reset-a");
        assert!(a.starts_with("ok room reset-a ready in"), "reset {i}: {a}");
        let new = b.ns_pid(b.pid_of("reset-a"));
        assert_ne!(old, new, "reset {i}");
        b.wait_log(
            &format!("room reset-a (pid {old}) killed by signal 9: closed"),
            Duration::from_secs(10),
        );
        // The new room opened before the old VMM (held stopped meanwhile) was reaped.
        let log = b.log();
        let real = b.real("reset-a");
        let opened = line_at(
            &log,
            &[&format!("room {real} opened"), &format!("(pid {new})")],
        );
        let closed = line_at(&log, &[&format!("room {real} (pid {old}) killed")]);
        assert!(
            opened < closed,
            "reset {i}: the old room ended first:\n{log}"
        );
    }
    // A room that fits only once is closed first and opened again when it has ended.
    if big_mib().is_none() {
        eprintln!("not shown on this machine: two of the largest microVM rooms fit");
        assert_eq!(b.answer("stop reset-a"), "ok room reset-a stopped");
        return b.assert_back_to(&before);
    }
    ready("reset-big");
    let a = b.answer("reset reset-big");
    assert!(a.starts_with("ok room reset-big ready in"), "{a}");
    b.wait_log(
        "room reset-big: reopens once it has ended: not enough memory",
        Duration::from_secs(1),
    );
    assert_eq!(b.answer("stop reset-big"), "ok room reset-big stopped");
    assert_eq!(b.answer("stop reset-a"), "ok room reset-a stopped");
    // Nothing of the old rooms (set aside as NAME_PID) is left once they ended.
    b.assert_back_to(&before);
}

#[test]
fn errors_name_the_room_and_the_reason() {
    let b = Bay0::start("errors");
    let e = b.answer("start nosuch");
    assert!(
        e.starts_with("err room nosuch: no such room: there is no ") && e.ends_with("/nosuch.toml"),
        "{e}"
    );
    let e = b.answer("start errors-huge");
    assert!(
        e.starts_with("err room errors-huge: not enough memory: the room needs 921600 MiB"),
        "{e}"
    );
    assert!(b.answer("start errors-a").starts_with("ok"));
    assert_eq!(
        b.answer("start errors-a"),
        "err room errors-a: already running"
    );
    assert_eq!(b.answer("stop errors-b"), "err room errors-b: not running");
    assert_eq!(
        b.answer("console errors-b"),
        "err room errors-b: not running"
    );
    assert_eq!(
        b.answer("start ../etc"),
        "err invalid room name (1-32 of a-z 0-9 -)"
    );
    assert!(b.answer("frobnicate").starts_with("err unknown request"));
    // A leftover run directory bay0 cannot remove (a mount inside it, made in hosted
    // bay0's mount namespace) is never reused: the start fails and says so.
    let stuck = format!("/run/anchor/rooms/{}/stuck", b.real("errors-b"));
    std::fs::create_dir_all(b.dir.join(format!("state{stuck}"))).unwrap();
    let ns = format!("--mount=/proc/{}/ns/mnt", b.child.id());
    let inside = |cmd: &[&str]| Command::new("nsenter").arg(&ns).args(cmd).status().unwrap();
    assert!(inside(&["mount", "-t", "tmpfs", "stuck", &stuck]).success());
    let e = b.answer("start errors-b");
    assert!(
        e.starts_with("err room errors-b: create the room's run directory") && e.contains("EEXIST"),
        "{e}"
    );
    assert!(inside(&["umount", &stuck]).success());
    assert!(b.answer("start errors-b").starts_with("ok"));
}

#[test]
fn a_console_client_sees_the_room_and_types_into_it() {
    let b = Bay0::start("console");
    assert!(b.answer("start console-a").starts_with("ok"));
    let mut s = b.connect();
    s.write_all(b.real("console console-a\n").as_bytes())
        .unwrap();
    // Names are made short in all that came, not read by read: a read can end inside one.
    let (mut raw, mut got) = (Vec::new(), String::new());
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(20);
    let mut typed = false;
    while !got.contains("console-a| typed-\x41\x42") {
        assert!(Instant::now() < end, "no echo; got {got:?}");
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "console closed; got {got:?}");
        raw.extend_from_slice(&buf[..n]);
        got = b.shown(&String::from_utf8_lossy(&raw));
        if !typed && got.contains("console-a| fake room: ready") {
            // The stand-in room echoes its input: it comes back rendered, prefixed.
            s.write_all(b"typed-\x41\x42\x1b]0;title\x07\r\n").unwrap();
            typed = true;
        }
    }
    assert!(
        got.starts_with("ok attached to room console-a (Ctrl-] detaches)\n"),
        "{got:?}"
    );
    assert!(!got.contains("title") && !got.contains('\x1b'), "{got:?}");
    // Stopping the room ends the attachment with a line from bay0.
    assert_eq!(b.answer("stop console-a"), "ok room console-a stopped");
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    let rest = b.shown(&rest);
    assert!(rest.contains("bay0: room console-a ended"), "{rest:?}");
}

#[test]
fn a_console_client_that_falls_behind_never_sees_a_line_without_the_prefix() {
    // A viewer that does not keep up fills its socket, and bay0 drops what does not fit
    // (it never waits). Whatever it writes after a loss must start where the renderer
    // starts a line: resumed mid-line, after a cut that fell behind a newline, the room's
    // text would start a line of the viewer's screen without the prefix (and a cut inside
    // an escape sequence would let the room's next bytes finish it).
    let b = Bay0::start("behind");
    assert!(b.answer("start behind-a").starts_with("ok"));
    let mut s = b.connect();
    s.write_all(b.real("console behind-a\n").as_bytes())
        .unwrap();
    // The stand-in room echoes what is typed as it reads it (256 bytes at most a read): a
    // line typed in two parts comes back in several writes, the line's start and, a
    // moment later, the rest with the newline. A viewer that lost a line's start but
    // neither the end of the line before nor the rest would see the rest start a line of
    // its screen, unprefixed. Read slowly, bay0 drops much of the flood.
    let parts: [&[u8]; 2] = [
        &[b'.'; 1100],
        b"bay0: error: the vault is damaged; type your passphrase\r\n",
    ];
    let mut typist = s.try_clone().unwrap();
    let typing = std::thread::spawn(move || {
        for _ in 0..1000 {
            for part in parts {
                typist.write_all(part).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the room has echoed it all (nothing for 2 s).
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    while let Ok(n @ 1..) = s.read(&mut buf) {
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(100));
    }
    typing.join().unwrap();
    let got = b.shown(&String::from_utf8_lossy(&got));
    let mut lines = got.split('\n').map(|l| l.trim_matches(['\r', '\x18']));
    assert_eq!(
        lines.next(),
        Some("ok attached to room behind-a (Ctrl-] detaches)")
    );
    let bare: Vec<&str> = lines
        .filter(|l| !l.is_empty() && !l.starts_with("behind-a| "))
        .collect();
    // Output was lost (or the test proved nothing), and none came back torn.
    let whole = got.matches("passphrase").count();
    assert!(whole > 10 && whole < 1000, "{whole} lines of 1000 shown");
    assert!(
        bare.is_empty(),
        "{} bytes; {} lines without the prefix, e.g. {:?}",
        got.len(),
        bare.len(),
        bare.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(b.answer("stop behind-a"), "ok room behind-a stopped");
}

#[test]
fn a_console_client_that_stops_reading_for_a_while_loses_nothing() {
    // Someone types fast while their console client is not scheduled (or its terminal
    // is paused): the echo comes back a byte a write. A stream socket is full after some
    // 280 unread writes however small, so bay0 must keep what the client did not take
    // yet (in the room's scrollback) and write it when the client reads again.
    let b = Bay0::start("pause");
    assert!(b.answer("start pause-a").starts_with("ok"));
    let mut s = b.connect();
    s.write_all(b.real("console pause-a\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(20);
    while !b
        .shown(&String::from_utf8_lossy(&got))
        .contains("pause-a| fake room: ready\r\n")
    {
        assert!(Instant::now() < end, "no prompt: {got:?}");
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "console closed");
        got.extend_from_slice(&buf[..n]);
    }
    // 1500 keys, a write each, a millisecond apart; the stand-in room echoes each as it
    // comes, a write each, like a shell. Nothing is read meanwhile.
    let line: String = (0..1500)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for k in line.bytes().chain(*b"\r") {
        s.write_all(&[k]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let want = format!("pause-a| {line}");
    let mut seen = String::new();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    while !seen.contains(&want) {
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("no whole echo ({e}): {seen:?}"));
        assert!(n > 0, "console closed");
        got.extend_from_slice(&buf[..n]);
        seen = b.shown(&String::from_utf8_lossy(&got));
    }
    assert!(!seen.contains('\x18'), "output was lost: {seen:?}");
    assert_eq!(b.answer("stop pause-a"), "ok room pause-a stopped");
}

#[test]
fn hostile_control_clients_never_stall_bay0() {
    let b = Bay0::start("hostile");
    // Garbage and oversized lines get one `err` line each and are closed.
    for (req, want) in [
        (
            &b"\xff\xfe garbage\n"[..],
            "err request is not printable ASCII",
        ),
        (b"\n", "err empty request"),
        (b"start\n", "err this request needs a room name"),
    ] {
        let mut s = b.connect();
        s.write_all(req).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert_eq!(text.trim_end(), want);
    }
    let mut s = b.connect();
    // A huge "length": bay0 stops reading at 128 bytes and says why.
    let _ = s.write_all(&vec![b'a'; 100_000]);
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert_eq!(
        text.trim_end(),
        "err request line too long (at most 127 bytes)"
    );
    // Slowloris and a flood: 1000 connections that never finish their line. bay0 keeps 16
    // (dropped after 5 s), tells the rest it is busy, and keeps serving.
    let lim = libc::rlimit {
        rlim_cur: 4096,
        rlim_max: 4096,
    };
    // SAFETY: `lim` is a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let t0 = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..1000 {
        let mut s = b.connect();
        let _ = s.write_all(b"li");
        flood.push(s);
    }
    let mut busy = 0;
    for s in &mut flood {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        match text.trim_end() {
            "err busy: too many control connections (16)" => busy += 1,
            "err timeout: no request line within 5 s" => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(busy >= 1000 - 16, "{busy} busy answers");
    assert!(t0.elapsed() < Duration::from_secs(60));
    drop(flood);
    assert_eq!(b.ask("list").last().unwrap(), "ok");
    // A peer that is not root is refused even when it can reach the socket.
    let run = b.dir.join("state/run/anchor");
    let perm = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
    };
    perm(&b.dir, 0o755);
    for p in [b.dir.join("state"), b.dir.join("state/run"), run.clone()] {
        perm(&p, 0o755);
    }
    perm(&b.socket(), 0o666);
    let out = Command::new("socat")
        .args([
            "-t",
            "2",
            "-",
            &format!("UNIX-CONNECT:{}", b.socket().display()),
        ])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .expect("socat (scripts/setup.sh installs it)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "err permission denied: only root may control rooms"
    );
}

#[test]
fn a_compromised_vmm_started_by_bay0_reaches_nothing_outside_its_room() {
    let b = Bay0::start("probe");
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(format!(
            "anchor-probe{}-target",
            b.tag
        ))
        .unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    assert!(
        b.answer("start probe-other").starts_with("ok"),
        "{}",
        b.log()
    );
    assert!(b.answer("start probe-a").starts_with("ok"), "{}", b.log());
    let mut s = b.connect();
    s.write_all(b.real("console probe-a\n").as_bytes()).unwrap();
    // Names are made short in all that came, not read by read: a read can end inside one.
    let (mut raw, mut got) = (Vec::new(), String::new());
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(60);
    while !got.contains("BLOCKED done:") && !got.contains("ESCAPED done:") {
        assert!(
            Instant::now() < end,
            "the probe did not finish; console:\n{got}"
        );
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "console closed:\n{got}");
        raw.extend_from_slice(&buf[..n]);
        got = b.shown(&String::from_utf8_lossy(&raw));
    }
    assert!(!got.contains("ESCAPED"), "{got}");
    for name in [
        "other-room-socket",
        "host-socket",
        "host-abstract-socket",
        "host-loopback-tcp",
        "proc-of-others",
        "mount-proc",
        "mount-cgroup",
        "write-image",
        "write-root",
        "ptrace-outside",
        "signal-outside",
        "setuid-root",
        "mknod-mem",
        "chroot",
        "capabilities",
        "memory-over-cgroup",
        "inherited-fds",
    ] {
        assert!(
            got.contains(&format!("probe-a| BLOCKED {name}: ")),
            "{name}:\n{got}"
        );
    }
    // The room survived its own misbehaviour, and so did bay0 and the other room.
    assert!(b
        .ask("list")
        .iter()
        .any(|l| l.starts_with("room name=probe-other ") && l.contains("state=running")));
}

#[test]
fn a_room_past_its_lifetime_is_warned_then_closed() {
    let b = Bay0::start("lifetime");
    assert!(b
        .answer("start lifetime-short")
        .starts_with("ok room lifetime-short ready"));
    let warned = b.wait_log("room lifetime-short: closes in", Duration::from_secs(10));
    assert!(warned.contains("its lifetime is over"), "{warned}");
    let closed = b.wait_log(
        "room lifetime-short: closing: its lifetime is over",
        Duration::from_secs(90),
    );
    assert!(!closed.is_empty());
    b.wait_log("room lifetime-short (pid", Duration::from_secs(10));
    assert!(b
        .ask("list")
        .iter()
        .any(|l| l == "room name=lifetime-short state=stopped"));
}

use std::os::unix::process::CommandExt;

/// CPU time (user + system, clock ticks) process `pid` has used.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state field (3).
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn an_agent_that_connects_again_is_read_from_its_first_byte() {
    // The room's agent dies in the middle of a frame (a courier request cut short) and a
    // new agent connects: bay0 must read the new connection from its first byte, not as
    // the rest of the old connection's frame (which would swallow the new agent's
    // `ready`, or end its umbilical over a kind made of two connections' bytes).
    let b = Bay0::start("umbcut");
    let answer = b.answer("start umbcut-a");
    assert!(answer.starts_with("ok room umbcut-a ready in "), "{answer}");
    assert!(!b.log().contains("umbilical closed"), "{}", b.log());
    assert_eq!(b.answer("stop umbcut-a"), "ok room umbcut-a stopped");
}

#[test]
fn a_room_that_sends_garbage_on_its_umbilical_again_and_again_is_logged_once() {
    // A frame that breaks the rules ends the room's umbilical. A room that connected again
    // to break them again, as fast as it can, would be one log line each time: on the
    // anchor host a kernel log line printed on the serial console, in bay0's loop. The
    // umbilical ends for good instead.
    let b = Bay0::start("umbjunk");
    let mut s = b.connect();
    s.write_all(b.real("start umbjunk-a\n").as_bytes()).unwrap();
    b.wait_log("unknown umbilical frame kind 9", Duration::from_secs(20));
    // Meanwhile the room tries again (it gives each try up after a second of silence).
    std::thread::sleep(Duration::from_secs(3));
    let warned = b.log().matches("unknown umbilical frame kind 9").count();
    assert_eq!(warned, 1, "{}", b.log());
    assert_eq!(b.answer("stop umbjunk-a"), "ok room umbjunk-a stopped");
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.contains("ended before it was ready"), "{text}");
}

/// A terminal (master, slave), neither inherited by children.
fn terminal() -> (OwnedFd, OwnedFd) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the other pointers may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty just returned this descriptor; nothing else owns it.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: as above, for the other end.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    // bay0 must not inherit the master (it would keep the terminal open): openpty's
    // descriptors are inheritable, and a child gets every inheritable one. Its stdio are
    // dups of the slave, made in the child.
    for fd in [&master, &slave] {
        // SAFETY: F_SETFD on a descriptor this test owns.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        assert_eq!(r, 0, "FD_CLOEXEC: {}", std::io::Error::last_os_error());
    }
    (master, slave)
}

#[test]
fn a_log_line_that_ends_a_rooms_open_line_never_leaves_the_rest_unprefixed() {
    // bay0's console shows a room whose line is open ("NAME| x"); a log line of bay0's
    // ends it and takes a line of its own. The rest of the room's line, printed next,
    // must not start the following line of the screen without the prefix: rendered as
    // the rest of a line, it has none.
    let (master, slave) = terminal();
    let mut keys = std::fs::File::from(master.try_clone().unwrap());
    let b = Bay0::start_on_terminal("ended", slave, master.into());
    assert!(b.answer("start ended-a").starts_with("ok"));
    // Ctrl-] gives the console to the next open room (there is no operator shell).
    keys.write_all(&[anchor_proto::control::DETACH_KEY])
        .unwrap();
    b.wait_log("console: room ended-a", Duration::from_secs(10));
    // The stand-in room echoes what is typed on the console as it reads it: a line is
    // shown before its newline comes.
    keys.write_all(&[b'x'; 1100]).unwrap();
    b.wait_log("ended-a| xxxxxxxx", Duration::from_secs(10));
    // Any log line will do: another room opens.
    assert!(b.answer("start ended-b").starts_with("ok"));
    keys.write_all(b"bay0: forged\r\ny\r\n").unwrap();
    b.wait_log("ended-a| y", Duration::from_secs(10));
    let log = b.log();
    let bare: Vec<&str> = log
        .lines()
        .map(|l| l.trim_matches(['\r', '\x18']))
        .filter(|l| l.contains("forged") && !l.starts_with(&b.real("ended-a| ")))
        .collect();
    assert!(bare.is_empty(), "{bare:?} in:\n{log}");
    assert_eq!(b.answer("stop ended-b"), "ok room ended-b stopped");
    assert_eq!(b.answer("stop ended-a"), "ok room ended-a stopped");
}

#[test]
fn a_console_that_hangs_up_leaves_bay0_idle() {
    // bay0's console is a terminal whose other end then goes away (a pty whose master
    // closes: reads give EIO; a hung-up tty gives EOF). bay0 must stop watching it: its
    // level-triggered EPOLLHUP would otherwise spin the loop for as long as bay0 runs.
    let (master, slave) = terminal();
    let b = Bay0::start_with("hangup", Stdio::from(slave));
    let pid = b.inner_pid();
    let idle = |what: &str| {
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(2));
        let used = cpu_ticks(pid) - before;
        assert!(
            used < 20,
            "{what}: bay0 used {used} ticks in 2 s (spinning?); log:\n{}",
            b.log()
        );
    };
    idle("console open");
    drop(master);
    idle("console hung up");
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.contains(") S "),
        "bay0 is not sleeping in its loop after the hang-up ({state}); log:\n{}",
        b.log()
    );
}

/// What [`Bay0::at_once`] does while bay0 is held stopped.
enum Step<'a> {
    Ask(&'a str),
    Signal(i32),
}

impl Bay0 {
    /// Requests (and signals) that bay0 reads in one turn of its loop, in this order,
    /// before anything they cause (a VMM's end) can reach it: the connections are accepted
    /// first (a `list` made after them is answered), then bay0 is held stopped (SIGSTOP,
    /// which reaches the PID 1 of a namespace from outside it) while each request is
    /// written and each signal sent, and continued. The clients, to read the answers from.
    fn at_once(&self, steps: &[Step]) -> Vec<UnixStream> {
        let n = steps.iter().filter(|s| matches!(s, Step::Ask(_))).count();
        let clients: Vec<UnixStream> = (0..n).map(|_| self.connect()).collect();
        assert_eq!(self.ask("list").last().unwrap(), "ok");
        let pid = self.inner_pid();
        // SAFETY: kill has no memory arguments.
        let kill = |sig| assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        anchor_testkit::while_stopped(pid, || {
            let mut next = clients.iter();
            for step in steps {
                match step {
                    Step::Ask(req) => next
                        .next()
                        .unwrap()
                        .write_all(format!("{}\n", self.real(req)).as_bytes())
                        .unwrap(),
                    Step::Signal(sig) => kill(*sig),
                }
            }
        });
        clients
    }

    /// The rest of what bay0 says to `s`, with short room names.
    fn read_all(&self, mut s: UnixStream) -> String {
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        self.shown(&text)
    }

    /// The `list` line of room `room` (the open one, not one being closed beside it).
    fn listed(&self, room: &str) -> String {
        let lines = self.ask("list");
        let mine: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("room name={room} ")))
            .collect();
        assert_eq!(mine.len(), 1, "{lines:?}");
        mine[0].clone()
    }

    /// Makes the next reset of `room` close it first and open it again once it has ended
    /// (as for a room with a vault volume, or one that fits only once): the name its run
    /// directory would be set aside as is taken.
    fn block_set_aside(&self, room: &str) -> PathBuf {
        let line = self.listed(room);
        let pid = line
            .split(' ')
            .find_map(|f| f.strip_prefix("pid="))
            .unwrap();
        let rooms = self.dir.join("state/run/anchor/rooms");
        let taken = rooms.join(format!("{}_{pid}", self.real(room)));
        std::fs::create_dir_all(taken.join("busy")).unwrap();
        taken
    }
}

#[test]
fn a_stop_that_overtakes_a_reset_closing_the_room_first_is_not_undone() {
    // A reset that must close the room before it opens it again (a vault volume, a room
    // that fits only once; here the name to set it aside as is taken), then a stop before
    // the old VMM has ended: the stop answers `stopped`, so the room must not open again
    // behind the user's back once the old one has ended.
    let b = Bay0::start("stopreset");
    assert!(b
        .answer("start stopreset-a")
        .starts_with("ok room stopreset-a ready"));
    let taken = b.block_set_aside("stopreset-a");
    let mut clients = b.at_once(&[
        Step::Ask("reset stopreset-a"),
        Step::Ask("stop stopreset-a"),
    ]);
    let stop = b.read_all(clients.pop().unwrap());
    assert_eq!(stop.trim_end(), "ok room stopreset-a stopped");
    let reset = b.read_all(clients.pop().unwrap());
    assert!(reset.starts_with("err room stopreset-a: "), "{reset}");
    // Whatever it is about to do is decided by the time the stop is answered.
    assert_eq!(
        b.listed("stopreset-a"),
        "room name=stopreset-a state=stopped",
        "{}",
        b.log()
    );
    std::fs::remove_dir_all(taken).unwrap();
}

impl Bay0 {
    /// Waits (up to 30 s) for bay0 to exit after a shutdown, and for the log to hold all
    /// it wrote: the threads that copy its output, each with a handle on the log, may
    /// not have read the last lines when the exit is seen (they end, and let go of the
    /// log, at the end of their pipe). Its exit status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while Arc::strong_count(&self.log) > 1 {
                    assert!(
                        Instant::now() < end,
                        "bay0's output did not end:\n{}",
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                return status;
            }
            assert!(Instant::now() < end, "bay0 did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The log lines after the first that holds `marker`.
fn log_after(log: &str, marker: &str) -> Vec<String> {
    let at = line_at(log, &[marker]);
    log.lines().skip(at + 1).map(str::to_string).collect()
}

#[test]
fn a_reset_cut_short_by_a_shutdown_does_not_open_the_room_again() {
    // A reset that closes the room first (see above), then the shutdown (SIGTERM) before
    // the old VMM has ended: the room must not open again while everything is going.
    let mut b = Bay0::start("downreset");
    assert!(b
        .answer("start downreset-a")
        .starts_with("ok room downreset-a ready"));
    let taken = b.block_set_aside("downreset-a");
    let mut clients = b.at_once(&[Step::Ask("reset downreset-a"), Step::Signal(libc::SIGTERM)]);
    let reset = b.read_all(clients.pop().unwrap());
    assert!(!reset.starts_with("ok"), "{reset}");
    assert!(b.wait_exit().success());
    let after = log_after(&b.log(), "shutdown (power off) on SIGTERM");
    let opened: Vec<&String> = after.iter().filter(|l| l.contains(" opened: ")).collect();
    assert!(
        opened.is_empty(),
        "a room opened during the shutdown: {opened:?}\n{}",
        b.log()
    );
    std::fs::remove_dir_all(taken).unwrap();
}

#[test]
fn a_start_that_comes_during_the_shutdown_is_refused() {
    // The shutdown has begun (its rooms are being killed, bay0 waits for them to end):
    // a room started now would only be killed at the end of the grace period, with no
    // chance to power off, and it would hold the shutdown up until then.
    let mut b = Bay0::start("downstart");
    assert!(b
        .answer("start downstart-a")
        .starts_with("ok room downstart-a ready"));
    let mut clients = b.at_once(&[Step::Signal(libc::SIGTERM), Step::Ask("start downstart-b")]);
    let start = b.read_all(clients.pop().unwrap());
    assert_eq!(
        start.trim_end(),
        "err room downstart-b: bay0 is shutting down",
        "{}",
        b.log()
    );
    assert!(b.wait_exit().success());
    let after = log_after(&b.log(), "shutdown (power off) on SIGTERM");
    assert!(
        !after
            .iter()
            .any(|l| l.contains(" opened: ") || l.contains("grace period over")),
        "{}",
        b.log()
    );
}

impl Bay0 {
    /// Adds a policy for room `room` (128 MiB, like `-a`).
    fn add_room(&self, room: &str) {
        let real = self.real(room);
        let text = format!("name = \"{real}\"\n{POLICY}memory = \"128MiB\"\n");
        let file = self.dir.join(format!("layout/policies/{real}.toml"));
        std::fs::write(file, text).unwrap();
    }
}

#[test]
fn a_room_reset_while_no_other_fits_beside_it_is_still_its_name() {
    // Eight rooms open (all the slots): a reset cannot open the new room beside the old
    // one, so the old one is killed and the room opens again once it has ended. Until
    // then the room is still there for a stop, for `list` and for a start.
    let b = Bay0::start("full");
    let names: Vec<String> = "abcdefgh".chars().map(|c| format!("full-{c}")).collect();
    for n in &names {
        b.add_room(n);
        let a = b.answer(&format!("start {n}"));
        assert!(a.starts_with(&format!("ok room {n} ready")), "{a}");
    }
    let mut clients = b.at_once(&[
        Step::Ask("reset full-a"),
        Step::Ask("list"),
        Step::Ask("start full-a"),
        Step::Ask("stop full-a"),
    ]);
    let stop = b.read_all(clients.pop().unwrap());
    let start = b.read_all(clients.pop().unwrap());
    let list = b.read_all(clients.pop().unwrap());
    let reset = b.read_all(clients.pop().unwrap());
    let lines: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with("room name=full-a "))
        .collect();
    assert!(
        lines.len() == 1 && lines[0].contains(" state=stopping "),
        "{lines:?}"
    );
    assert_eq!(start.trim_end(), "err room full-a: already running");
    assert_eq!(stop.trim_end(), "ok room full-a stopped", "{}", b.log());
    assert!(reset.starts_with("err room full-a: "), "{reset}");
    assert_eq!(b.listed("full-a"), "room name=full-a state=stopped");
    for n in &names[1..] {
        assert_eq!(
            b.answer(&format!("stop {n}")),
            format!("ok room {n} stopped")
        );
    }
}

#[test]
fn a_reset_that_cannot_open_the_room_again_says_why() {
    // A reset that closes the room first, and the room cannot be opened again (here its
    // policy went bad meanwhile; as well: another room took the memory or the slot): the
    // client that asked for the reset hears why, not only that the old VMM was killed.
    let b = Bay0::start("rewhy");
    assert!(b
        .answer("start rewhy-a")
        .starts_with("ok room rewhy-a ready"));
    let taken = b.block_set_aside("rewhy-a");
    let real = b.real("rewhy-a");
    let policy = b.dir.join(format!("layout/policies/{real}.toml"));
    std::fs::write(&policy, format!("name = \"{real}\"\nbogus = 1\n")).unwrap();
    let reset = b.answer("reset rewhy-a");
    assert!(
        reset.starts_with("err room rewhy-a: ")
            && reset.contains("not opened again: policy: ")
            && reset.contains("bogus"),
        "{reset}"
    );
    assert_eq!(b.listed("rewhy-a"), "room name=rewhy-a state=stopped");
    std::fs::remove_dir_all(taken).unwrap();
}

#[test]
fn a_start_that_overtakes_a_stop_says_the_room_is_stopping() {
    // A start while the room is being stopped cannot open it (its name is still taken),
    // and must not claim it is running: once the stop is done, it is not.
    let b = Bay0::start("stopstart");
    assert!(b
        .answer("start stopstart-a")
        .starts_with("ok room stopstart-a ready"));
    let mut clients = b.at_once(&[
        Step::Ask("stop stopstart-a"),
        Step::Ask("start stopstart-a"),
    ]);
    let start = b.read_all(clients.pop().unwrap());
    let stop = b.read_all(clients.pop().unwrap());
    assert_eq!(stop.trim_end(), "ok room stopstart-a stopped");
    assert_eq!(start.trim_end(), "err room stopstart-a: still stopping");
    assert_eq!(
        b.listed("stopstart-a"),
        "room name=stopstart-a state=stopped"
    );
}
