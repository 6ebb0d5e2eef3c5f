// SPDX-License-Identifier: GPL-3.0-or-later
//! Namespace rooms for real on this machine, through bay0 (hosted) and the product
//! binaries and base image (see common/mod.rs): the escape-resistance suite run from
//! inside a room finds every wall standing, and a hundred start/stop cycles leave
//! nothing behind.
//!
//! Needs root, and `make images` (static binaries + the base image) done first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ns_policy, processes_with, root_device, Bay0, Console, PROBE};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Attempts the suite must report, each as BLOCKED (tests/escape/attempts.txt, shared
/// with the anchor-host test).
fn attempts() -> impl Iterator<Item = &'static str> {
    include_str!("../attempts.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn sha256(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// The host's own IPv4 addresses but its loopback ones (`ip -4 -o addr`), comma-separated:
/// what host-network aims at through the room's eth0.
fn host_addresses() -> String {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .expect("ip (iproute2: scripts/setup.sh installs it)");
    assert!(out.status.success(), "ip -4 -o addr show: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let addrs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|a| a.split('/').next())
        .filter(|a| !a.starts_with("127."))
        .collect();
    addrs.join(",")
}

/// An address the host takes while the room runs (on a veth pair of its own, both ends on
/// the host), so host-network has one to aim at on any machine, and one the room's relay
/// only learns of through netlink after the room started. Removed on drop.
struct NewHostAddress {
    link: String,
}

impl NewHostAddress {
    const ADDR: &'static str = "10.231.9.1";

    fn add() -> NewHostAddress {
        let link = format!("aesc{}", std::process::id() % 100_000);
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &link])
            .output();
        let peer = format!("{link}p");
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        let a = NewHostAddress { link };
        ip(&["addr", "add", &format!("{}/32", Self::ADDR), "dev", &a.link]);
        ip(&["link", "set", &peer, "up"]);
        ip(&["link", "set", &a.link, "up"]);
        a
    }
}

impl Drop for NewHostAddress {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
    }
}

/// `policy` with `network = "outbound"`: the room under attack has the network a web
/// room has (eth0, its relay and passt), so the suite's attempts meet that too.
fn outbound(policy: String) -> String {
    policy.replacen("\n[resources]", "\nnetwork = \"outbound\"\n[resources]", 1)
}

#[test]
fn the_escape_suite_finds_every_wall_of_a_namespace_room_standing() {
    let (room, other) = ("esc-a", "esc-b");
    let b = Bay0::start(
        "suite",
        &[
            (room, outbound(ns_policy(room, 128, 64))),
            (other, ns_policy(other, 64, 32)),
        ],
    );
    let image_before = sha256(&b.image);
    assert!(
        b.answer(&format!("start {other}"))
            .starts_with("ok room esc-b ready"),
        "{}",
        b.log()
    );
    assert!(
        b.answer(&format!("start {room}"))
            .starts_with("ok room esc-a ready"),
        "{}",
        b.log()
    );
    assert!(
        b.record(room).contains(" backend=namespaces "),
        "{}",
        b.record(room)
    );

    // What the host offers, for the attempts to aim at.
    let token = format!("anchor-escape-token-{}", std::process::id());
    // On every address of the host, TCP and UDP: host-loopback aims at 127.0.0.1,
    // host-network at the host's own addresses (`hosts`) and passt's gateway and DNS.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = token.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(format!("{served}\n").as_bytes());
        }
    });
    let udp = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
    let served = token.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while let Ok((_, from)) = udp.recv_from(&mut b) {
            let _ = udp.send_to(format!("{served}\n").as_bytes(), from);
        }
    });
    let _new_address = NewHostAddress::add();
    let hosts = match host_addresses() {
        h if h.split(',').any(|a| a == NewHostAddress::ADDR) => h,
        h => panic!(
            "{} is not among the host's addresses: {h}",
            NewHostAddress::ADDR
        ),
    };
    let abstract_name = format!("anchor-escape-{}", std::process::id());
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&a).unwrap()
    };
    let marker = b.dir.join("host-only-marker");
    std::fs::write(&marker, &token).unwrap();
    let kmsg = format!("{token}-kmsg");
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut k| k.write_all(format!("anchor-escape: {kmsg}\n").as_bytes()))
        .expect("write the host's kernel log (/dev/kmsg)");

    // The other room of the image reads one of its files over and over and holds an
    // exclusive flock on another (escape.sh's defaults): image-watch and image-lock must
    // see neither from this room. The lock is checked on the host: it exists, on the
    // other room's own device.
    let mut o = Console::attach(&b, other);
    // Starts the other room's probe reading `read` over and over and locking `lock`.
    let mut neighbour = |read: &str, lock: &str| {
        let (out, status) = o.run(
            &format!("{PROBE} neighbour {read} {lock}"),
            "",
            Duration::from_secs(20),
        );
        assert_eq!(status, 0, "{out:?}");
        assert!(
            out.iter().any(|l| l.starts_with("NEIGHBOUR reading")),
            "{out:?}"
        );
    };
    neighbour("/etc/anchor-flavour", "/etc/os-release");
    // /proc/locks names a file's device as `MAJ:MIN:` in hex.
    let (maj, min) = root_device(b.room_pid(other))
        .split_once(':')
        .map(|(a, i)| (a.parse::<u32>().unwrap(), i.parse::<u32>().unwrap()))
        .unwrap();
    let root_dev = format!("{maj:02x}:{min:02x}:");
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    assert!(
        locks
            .lines()
            .any(|l| l.contains("FLOCK") && l.contains(" WRITE ") && l.contains(&root_dev)),
        "no flock of {other} on its image ({root_dev}):\n{locks}"
    );

    // And opens /dev/null over and over, holding an exclusive flock on /dev/zero
    // (dev-watch and dev-lock: each room's device nodes must be its own).
    neighbour("/dev/null", "/dev/zero");

    let mut c = Console::attach(&b, room);
    let cmd = format!(
        "sh /usr/lib/anchor/escape/escape.sh backend=namespaces mem_mib=128 pids_max=64 \
         host_pids={},{} marker={} kmsg={kmsg} port={port} token={token} hosts={hosts} \
         other={other} abstract={abstract_name} control={}",
        b.pid(),
        std::process::id(),
        marker.display(),
        b.socket().display()
    );
    let t0 = Instant::now();
    let (lines, status) = c.run(&cmd, "", Duration::from_secs(300));
    eprintln!("escape suite ran in {:.1} s", t0.elapsed().as_secs_f64());
    let text = lines.join("\n");
    assert_eq!(status, 0, "{text}");
    for l in &lines {
        eprintln!("{l}");
    }
    assert!(!text.contains("ESCAPED"), "an attempt escaped:\n{text}");
    // 68 attempts today: a truncated or emptied list fails here.
    assert_eq!(attempts().count(), 72, "tests/escape/attempts.txt");
    for name in attempts() {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("BLOCKED {name}: "))),
            "{name} not reported BLOCKED:\n{text}"
        );
    }
    let done = lines
        .iter()
        .find(|l| l.starts_with("ESCAPE-SUITE done: "))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    assert!(done.ends_with(" blocked, 0 escaped"), "{done}");
    assert!(
        lines.iter().any(|l| l.starts_with("LINGER linger: ")),
        "{text}"
    );

    // The room survived its own misbehaviour (only the hog was killed), and so did bay0
    // and the other room.
    let (out, _) = c.run("echo still-$((40+2))", "", Duration::from_secs(20));
    assert_eq!(out, ["still-42"]);
    // (Through the console kept since the neighbour started: a second attach replays
    // that command's lines first.)
    assert_eq!(
        o.run("echo other-$((1+1))", "", Duration::from_secs(20)).0,
        ["other-2"]
    );
    drop(o);

    // Closing the room ends everything in it: the lingering processes too.
    let agent = b.room_pid(room);
    for lingerer in [
        "sleep 987654",
        "sleep 987653",
        "sleep 987652",
        "sleep 987651",
    ] {
        assert!(
            !processes_with(lingerer).is_empty(),
            "the linger attempt did not start {lingerer}"
        );
    }
    // The stopped one is still stopped when the room closes.
    let stopped = processes_with("sleep 987652");
    let stopped_pid = stopped[0].split(':').next().unwrap();
    let state = std::fs::read_to_string(format!("/proc/{stopped_pid}/stat")).unwrap();
    assert!(
        state
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('T'),
        "{stopped:?}: {state}"
    );
    drop(c);
    assert_eq!(b.answer(&format!("stop {room}")), "ok room esc-a stopped");
    let end = Instant::now() + Duration::from_secs(5);
    while (!processes_with("sleep 98765").is_empty()
        || std::path::Path::new(&format!("/proc/{agent}")).exists())
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = processes_with("sleep 98765");
    assert!(left.is_empty(), "processes outlived their room: {left:?}");
    println!("BLOCKED linger: no process of the room outlived it (checked on the host)");
    assert_eq!(sha256(&b.image), image_before, "the room's image changed");
    assert_eq!(b.answer(&format!("stop {other}")), "ok room esc-b stopped");
    assert!(b.log().contains("landlock applied"), "{}", b.log());
    // Nor does anything else of theirs (a stopped process, an orphan, connections full
    // of unread data): no cgroup, no run directory, no loop device of the image.
    let end = Instant::now() + Duration::from_secs(5);
    let mut left = b.footprint("esc-");
    while !(left.cgroups.is_empty() && left.run_dirs.is_empty() && left.loops.is_empty())
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(50));
        left = b.footprint("esc-");
    }
    assert!(
        left.cgroups.is_empty() && left.run_dirs.is_empty() && left.loops.is_empty(),
        "the rooms left {left:?}"
    );
}

#[test]
fn a_hundred_namespace_room_cycles_leave_nothing_behind() {
    let b = Bay0::start("cycles", &[("nscyc-a", ns_policy("nscyc-a", 64, 32))]);
    // Once first, so lazily created directories (rooms/, the cgroup parents) exist.
    assert!(
        b.answer("start nscyc-a")
            .starts_with("ok room nscyc-a ready"),
        "{}",
        b.log()
    );
    assert_eq!(b.answer("stop nscyc-a"), "ok room nscyc-a stopped");
    let settle = |want: &common::Footprint| {
        let end = Instant::now() + Duration::from_secs(5);
        let mut now = b.footprint("nscyc-");
        while &now != want && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
            now = b.footprint("nscyc-");
        }
        now
    };
    let empty = common::Footprint {
        loops: Vec::new(),
        cgroups: Vec::new(),
        run_dirs: Vec::new(),
        ..b.footprint("nscyc-")
    };
    let before = settle(&empty);
    assert_eq!(before, empty, "the first room left something behind");
    let t0 = Instant::now();
    for i in 0..100 {
        let started = b.answer("start nscyc-a");
        assert!(
            started.starts_with("ok room nscyc-a ready"),
            "cycle {i}: {started}"
        );
        if i == 0 {
            // While it runs, the room has its loop device, cgroup and run directory.
            let open = b.footprint("nscyc-");
            assert_eq!(open.loops.len(), 1, "{open:?}");
            assert!(
                !open.cgroups.is_empty() && !open.run_dirs.is_empty(),
                "{open:?}"
            );
        }
        assert_eq!(
            b.answer("stop nscyc-a"),
            "ok room nscyc-a stopped",
            "cycle {i}"
        );
    }
    eprintln!("100 cycles in {:.1} s", t0.elapsed().as_secs_f64());
    let after = settle(&before);
    assert_eq!(
        before, after,
        "what 100 cycles left behind (after vs before)"
    );
}

/// The descriptors `pid` holds once its set stops changing: bay0 answers "ready" when the
/// room's agent greets it on the umbilical, while the agent is still finishing its start
/// (reading /proc/uptime, spawning the shell through a close-on-exec pipe), so one listing
/// can catch a descriptor that is gone by the time it is read, or a transient one. Two
/// listings 50 ms apart that agree, every link read, end the wait (at most 10 s); an
/// inherited descriptor stays in every listing, so the caller's check still sees it.
fn settled_fds(pid: i32) -> Vec<(String, String)> {
    let list = || -> Option<Vec<(String, String)>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
            let target = std::fs::read_link(e.path()).ok()?;
            v.push((
                e.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            ));
        }
        v.sort();
        Some(v)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = list();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = list();
        if now.is_some() && now == last {
            return now.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "PID {pid}'s descriptors never settled: {now:?}"
        );
        last = now;
    }
}

/// Runs `cmd` in an attached room; its output, which must end with status 0.
fn sh_in(c: &mut Console, cmd: &str) -> String {
    let (out, status) = c.run(cmd, "", Duration::from_secs(30));
    assert_eq!(status, 0, "`{cmd}`: {out:?}");
    out.join("\n")
}

#[test]
fn a_namespace_room_is_its_image_its_tmpfs_and_nothing_else() {
    // A descriptor bay0 inherits without close-on-exec (a harness's pipe, say): it must
    // not reach the room.
    let mut leak = [0; 2];
    // SAFETY: `leak` is a writable array of two ints, as pipe(2) expects.
    assert_eq!(unsafe { libc::pipe(leak.as_mut_ptr()) }, 0);
    let b = Bay0::start("shape", &[("nsshape", ns_policy("nsshape", 96, 40))]);
    assert!(
        b.answer("start nsshape")
            .starts_with("ok room nsshape ready"),
        "{}",
        b.log()
    );
    // The room's PID 1 holds its console and its own sockets, nothing it was started with.
    let agent = b.room_pid("nsshape");
    let bay0_has = |want: &str| {
        std::fs::read_dir(format!("/proc/{}/fd", b.pid()))
            .unwrap()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).unwrap().to_string_lossy() == want)
    };
    let pipe = std::fs::read_link(format!("/proc/self/fd/{}", leak[0])).unwrap();
    assert!(
        bay0_has(&pipe.to_string_lossy()),
        "bay0 did not inherit the pipe"
    );
    for (fd, target) in settled_fds(agent) {
        assert!(
            target.starts_with("/dev/pts/") || target.starts_with("socket:["),
            "the room's PID 1 holds fd {fd} -> {target}"
        );
    }
    let rec = b.record("nsshape");
    for f in [
        "backend=namespaces",
        "state=running",
        "memory_mib=96",
        "vcpus=1",
    ] {
        assert!(rec.contains(f), "{rec}");
    }
    let mut c = Console::attach(&b, "nsshape");
    let mut sh = |cmd: &str| sh_in(&mut c, cmd);
    // uid 0 of the room is the room's own unprivileged host uid; nothing else exists.
    assert_eq!(sh("id"), "uid=0(root) gid=0(root)");
    let map = sh("cat /proc/self/uid_map /proc/self/gid_map");
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "64000", "1", "0", "64000", "1"]
    );
    assert!(
        sh("grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs)' /proc/self/status")
            .split('\n')
            .all(|l| l.ends_with("0000000000000000") || l.ends_with('1') || l.ends_with('2'))
    );
    // Its cgroup namespace is rooted at its own cgroup (the jail makes it only once it is
    // in there): it sees itself at the root of every hierarchy, not where the host put it.
    let cg = sh("cat /proc/self/cgroup");
    assert!(
        !cg.is_empty() && cg.lines().all(|l| l.ends_with(":/")),
        "{cg}"
    );
    // Its PID 1 is the agent; its hostname is its name; its clocks started with it.
    assert_eq!(sh("cat /proc/1/comm"), "init");
    assert_eq!(sh("hostname"), "nsshape");
    let up: f64 = sh("cut -d' ' -f1 /proc/uptime").parse().unwrap();
    assert!(up < 60.0, "uptime {up}: the room's clocks are the host's");
    // Loopback only, up (read without netlink, which a room does not get).
    // No netlink, refused as such (it said "Function not implemented").
    assert_eq!(
        sh("ip link 2>&1 || true"),
        "ip: socket: Operation not permitted"
    );
    let links = sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    assert_eq!(links, "lo");
    let lo = sh("ifconfig lo");
    assert!(lo.contains("UP") && lo.contains("LOOPBACK"), "{lo}");
    // The image is the read-only root; the writable paths share one tmpfs of half the
    // room's memory; /dev holds only what a room needs.
    assert!(sh("grep ' / ' /proc/mounts").contains(" squashfs ro,"));
    let tmp = sh("df -k /tmp | tail -n 1");
    assert!(tmp.split_whitespace().nth(1) == Some("49152"), "{tmp}");
    assert!(sh("touch /etc/x 2>&1 || echo refused").ends_with("refused"));
    assert_eq!(
        sh("ls /dev | tr '\\n' ' '"),
        "anchor-umbilical console fd full null ptmx pts random shm stderr stdin stdout tty \
         urandom zero "
    );
    assert_eq!(sh("ls /sys | wc -l"), "0");
    // The jail's rlimits (soft = hard): open files, processes of the room's uid (its
    // pids_max), no core dumps (a core limit of 1 byte: 0 would not stop a core_pattern
    // pipe); files may grow (the tmpfs size bounds them).
    let limits = sh("cat /proc/self/limits");
    for (name, value) in [
        ("Max open files", "4096"),
        ("Max processes", "40"),
        ("Max core file size", "1"),
        ("Max file size", "unlimited"),
    ] {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
        assert_eq!(fields[..2], [value, value], "{line}");
    }
    // Amnesia: a reset forgets what the room wrote.
    sh("echo kept > /tmp/marker");
    drop(c);
    assert!(
        b.answer("reset nsshape")
            .starts_with("ok room nsshape ready"),
        "{}",
        b.log()
    );
    let mut c = Console::attach(&b, "nsshape");
    let (out, status) = c.run("cat /tmp/marker", "", Duration::from_secs(10));
    assert_ne!(status, 0, "{out:?}");
    drop(c);
    // Its limits are the policy's, in its cgroup (v1 on this host, v2 in the anchor host).
    let pid = b.room_pid("nsshape");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains("/anchor/nsshape"), "{cg}");
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory/anchor/nsshape");
    if v1.exists() {
        let read = |p: &str| std::fs::read_to_string(p).unwrap().trim().to_string();
        assert_eq!(
            read("/sys/fs/cgroup/memory/anchor/nsshape/memory.limit_in_bytes"),
            (96u64 << 20).to_string()
        );
        // TCP buffers, which v1 counts apart: a quarter of the memory.
        assert_eq!(
            read("/sys/fs/cgroup/memory/anchor/nsshape/memory.kmem.tcp.limit_in_bytes"),
            (24u64 << 20).to_string()
        );
        assert_eq!(read("/sys/fs/cgroup/pids/anchor/nsshape/pids.max"), "40");
        assert_eq!(
            read("/sys/fs/cgroup/cpu/anchor/nsshape/cpu.cfs_quota_us"),
            "100000"
        );
    }
    assert_eq!(b.answer("stop nsshape"), "ok room nsshape stopped");
    let mut s = b.connect();
    s.write_all(b"list\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    assert!(all.contains("room name=nsshape state=stopped"), "{all}");
}

/// The room's shell runs on its console as a terminal's shell does, and bay0 plays the
/// terminal's part: the shell leads its own session with the console as its controlling
/// terminal (so Ctrl-C interrupts the command in the foreground), and a program asking
/// where the cursor is (`ESC [ 6 n`, as busybox's shell does after every prompt; without
/// an answer it sleeps 20 ms after every command line) gets bay0's answer, its column
/// counted on the room's own line.
#[test]
fn the_console_shell_leads_its_terminal_and_bay0_answers_it() {
    let room = "nstty";
    let b = Bay0::start("tty", &[(room, ns_policy(room, 64, 32))]);
    assert!(
        b.answer(&format!("start {room}"))
            .starts_with(&format!("ok room {room} ready")),
        "{}",
        b.log()
    );
    let mut c = Console::attach(&b, room);
    let t = Duration::from_secs(20);

    // Session id (field 6) is the shell's own pid; its controlling tty (field 7) is set.
    let (lines, status) = c.run("echo \"$$ $(cut -d' ' -f6,7 /proc/$$/stat)\"", "", t);
    assert_eq!(status, 0, "{lines:?}");
    let fields: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(
        fields[0], fields[1],
        "the shell does not lead its session: {lines:?}"
    );
    assert_ne!(
        fields[2], "0",
        "the shell has no controlling terminal: {lines:?}"
    );

    // The terminal has a name in the room: /dev/console is the very pty the shell runs on
    // (bay0's, of another devpts instance than the room's /dev/pts), the room's own to
    // open again. Before, `tty` said "not a tty": no path in the room named it.
    let (lines, status) = c.run("tty", "", t);
    assert_eq!((lines, status), (vec!["/dev/console".to_string()], 0));
    let (lines, status) = c.run(
        "stat -L -c '%t:%T %i %U %a' /proc/self/fd/0 /dev/console; echo mine >/dev/console",
        "",
        t,
    );
    assert_eq!(status, 0, "{lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[0], lines[1],
        "/dev/console is not the shell's terminal"
    );
    assert!(lines[0].ends_with(" root 600"), "{lines:?}");
    assert_eq!(lines[2], "mine");

    // Ctrl-C ends a foreground command long before it would end by itself.
    c.stream.write_all(b"sleep 3607\r").unwrap();
    let end = Instant::now() + t;
    while processes_with("sleep 3607").is_empty() {
        assert!(Instant::now() < end, "sleep never started: {}", c.seen);
        std::thread::sleep(Duration::from_millis(20));
    }
    c.stream.write_all(b"\x03").unwrap();
    let (lines, status) = c.run("echo interrupted", "", t);
    assert_eq!(
        (lines.last().map(String::as_str), status),
        (Some("interrupted"), 0)
    );

    // The question, asked after "abc" on a fresh line: the answer is column 4. Asked
    // again (after 1 s without an answer) should it share bay0's read with the echo of
    // the typed command: bay0 leaves that one unanswered (see anchor-text's
    // cursor_report).
    let ask = "stty -icanon -echo min 0 time 10; i=0; r=; \
               while [ -z \"$r\" ] && [ $i -lt 5 ]; do i=$((i+1)); printf '\\nabc\\033[6n'; \
               r=$(dd bs=1 count=6 2>/dev/null); done; stty sane; printf '%s' \"$r\" | od -An -c";
    let (lines, status) = c.run(ask, "", t);
    assert_eq!(status, 0, "{lines:?}");
    let answer: Vec<&str> = lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .skip_while(|w| *w != "033")
        .collect();
    assert_eq!(answer, ["033", "[", "1", ";", "4", "R"], "{lines:?}");
    assert_eq!(
        b.answer(&format!("stop {room}")),
        format!("ok room {room} stopped")
    );
}
