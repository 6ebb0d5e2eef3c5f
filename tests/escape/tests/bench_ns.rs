// SPDX-License-Identifier: GPL-3.0-or-later
//! Namespace room benchmarks on this machine (`make bench` runs them through
//! tests/escape/bench.sh; printed, never asserted): start -> first command inside, against
//! bubblewrap (`bwrap`, Debian's) with the same namespaces and the same image in the same
//! run, for a room alone and for a room started while another room of its image runs
//! (with a loop device and superblock of its own: rooms share none; the image file's pages
//! are warm in the host's page cache); reset; the memory an idle namespace
//! room costs. Contenders run in turn, 50 ms apart (see [`settle`]: on this host a cgroup
//! move right after another skips the RCU grace period the first one waits for). Then
//! the same rounds with every contender's cgroup move made right after a bystander's
//! (no grace period to wait for, as the anchor host's `favordynmods` gives every move),
//! and, where the kernel lets it be undone (before Linux 6.18; see [`Favordynmods`]),
//! with the host's cgroup_threadgroup_rwsem really in the anchor host's mode (a named,
//! controller-less cgroup v1 hierarchy mounted with favordynmods for the rounds and
//! unmounted after). Ignored by the normal test run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::peer::{bwrap, median, mount_image, runs, Mounted};
use common::{ns_policy, Bay0};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(v: &mut [f64]) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = v[v.len() / 2];
    let p90 = v[(v.len() * 9 / 10).min(v.len() - 1)];
    format!(
        "median {median:.1} ms, p90 {p90:.1} ms, min {:.1} ms (n={})",
        v[0],
        v.len()
    )
}

/// Attaches to the room's console, types a command at once and waits for its output.
fn first_output(b: &Bay0, room: &str) {
    let mut s = b.connect();
    s.write_all(format!("console {room}\n").as_bytes()).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // bay0 reads the request line alone: type once it has answered.
    while !seen.contains("ok attached") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "console closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s.write_all(b"echo first-$((1+1))\r").unwrap();
    let want = format!("{room}| first-2");
    while !seen.contains(&want) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "console closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// The room's cgroup for a bwrap peer: memory, pids and CPU limits like a namespace
/// room's (256 MiB, 256 tasks, one CPU), in cgroup v2 where /sys/fs/cgroup offers those
/// controllers, else in the v1 hierarchies (this host). Its `cgroup.procs` files.
fn peer_cgroup() -> Vec<String> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|c| {
        ["memory", "pids", "cpu"]
            .iter()
            .all(|k| c.split_whitespace().any(|w| w == *k))
    });
    let settings: Vec<(String, String)> = if v2 {
        let _ = std::fs::write(
            "/sys/fs/cgroup/cgroup.subtree_control",
            "+memory +pids +cpu",
        );
        let _ = std::fs::create_dir_all("/sys/fs/cgroup/anchor");
        let _ = std::fs::write(
            "/sys/fs/cgroup/anchor/cgroup.subtree_control",
            "+memory +pids +cpu",
        );
        let g = "/sys/fs/cgroup/anchor/bwrap-bench";
        std::fs::create_dir_all(g).unwrap();
        [
            ("memory.max", (256u64 << 20).to_string()),
            ("pids.max", "256".into()),
            ("cpu.max", "100000 100000".into()),
        ]
        .into_iter()
        .map(|(f, v)| (format!("{g}/{f}"), v))
        .collect()
    } else {
        [
            (
                "memory",
                "memory.limit_in_bytes",
                (256u64 << 20).to_string(),
            ),
            ("pids", "pids.max", "256".into()),
            ("cpu", "cpu.cfs_quota_us", "100000".into()),
        ]
        .into_iter()
        .map(|(c, f, v)| {
            let g = format!("/sys/fs/cgroup/{c}/anchor/bwrap-bench");
            std::fs::create_dir_all(&g).unwrap();
            (format!("{g}/{f}"), v)
        })
        .collect()
    };
    settings
        .iter()
        .map(|(file, value)| {
            std::fs::write(file, value).unwrap();
            let dir = std::path::Path::new(file).parent().unwrap();
            format!("{}/cgroup.procs", dir.display())
        })
        .collect()
}

/// bwrap with what it does not do itself but a namespace room gets, all timed: the
/// image attached and mounted (`mount -o loop`: through a fresh loop device when no
/// other mount of that image file is up, like a room alone; through the device and
/// superblock of one that is, like a room started beside another of its image: util-linux
/// reuses a read-only device of the same file), and with `cgroup` also the room's cgroup
/// with its limits, joined before bwrap starts; then undone.
fn bwrap_with(image: &std::path::Path, dir: &std::path::Path, cgroup: bool) -> Duration {
    let t0 = Instant::now();
    let mnt = dir.join("bwrap-full");
    let procs = if cgroup { peer_cgroup() } else { Vec::new() };
    mount_image(image, &mnt);
    let join: String = procs.iter().map(|p| format!("echo $$ > {p}; ")).collect();
    let peer = bwrap(&mnt, "echo first-$((1+1))");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{join}exec \"$@\""))
        .arg("sh")
        .arg(peer.get_program())
        .args(peer.get_args())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(line.trim(), "first-2");
    let _ = child.wait();
    let _ = Command::new("umount").arg(&mnt).status();
    for p in &procs {
        let _ = std::fs::remove_dir(std::path::Path::new(p).parent().unwrap());
    }
    took
}

/// Resident memory (KiB) of the processes in a cgroup v1 pids hierarchy or a v2 group.
fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

fn cgroup_pids(room: &str) -> Vec<u32> {
    ["/sys/fs/cgroup/pids/anchor", "/sys/fs/cgroup/anchor"]
        .iter()
        .filter_map(|d| std::fs::read_to_string(format!("{d}/{room}/cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn cgroup_memory(room: &str) -> Option<u64> {
    [
        "/sys/fs/cgroup/memory/anchor/{}/memory.usage_in_bytes",
        "/sys/fs/cgroup/anchor/{}/memory.current",
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(f.replace("{}", room)).ok())
    .and_then(|s| s.trim().parse().ok())
}

/// One set of interleaved rounds' timings (ms).
#[derive(Default)]
struct Rounds {
    ready: Vec<f64>,
    first: Vec<f64>,
    shared_ready: Vec<f64>,
    shared_first: Vec<f64>,
    plain: Vec<f64>,
    mounted: Vec<f64>,
    full: Vec<f64>,
    full_reused: Vec<f64>,
    reset: Vec<f64>,
}

/// The room measured, and the other room of its image kept running for the shared rows.
const ROOM: &str = "nsbench";
const OTHER: &str = "nsbench-other";

/// Ours: the request to bay0 -> the agent's ready -> a command typed on the room's
/// console right away -> its output. (ready, output) since the request.
fn ours(b: &Bay0) -> (Duration, Duration) {
    let t0 = Instant::now();
    let ok = b.answer(&format!("start {ROOM}"));
    let ready = t0.elapsed();
    assert!(ok.starts_with(&format!("ok room {ROOM} ready")), "{ok}");
    first_output(b, ROOM);
    (ready, t0.elapsed())
}

fn stop(b: &Bay0, room: &str) {
    assert_eq!(
        b.answer(&format!("stop {room}")),
        format!("ok room {room} stopped")
    );
}

/// bwrap: spawn -> the first command's output.
fn bwrap_plain(root: &std::path::Path) -> Duration {
    let t0 = Instant::now();
    let mut child = bwrap(root, "echo first-$((1+1))")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bwrap (Debian's bubblewrap; scripts/setup.sh installs it)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let bw = t0.elapsed();
    assert_eq!(line.trim(), "first-2", "bwrap said {line:?}");
    let _ = child.wait();
    bw
}

/// `runs` timed rounds (after two untimed ones). Each round runs every contender once,
/// in turn, so that load from elsewhere on the machine falls on all of them alike; the
/// medians are compared. With `reset`, also times a reset of the lone room.
/// The peers' images: `premounted` (a copy, mounted through the rounds) and `fresh` (a
/// copy mounted by nobody else).
struct Peers {
    root: Mounted,
    premounted: std::path::PathBuf,
    fresh: std::path::PathBuf,
}

impl Peers {
    fn new(b: &Bay0) -> Peers {
        let copy = |name: &str| {
            let p = b.dir.join(name);
            std::fs::copy(&b.image, &p).unwrap();
            p
        };
        let premounted = copy("peer-premounted.squashfs");
        let fresh = copy("peer-fresh.squashfs");
        Peers {
            root: Mounted::new(&premounted, &b.dir),
            premounted,
            fresh,
        }
    }
}

/// A pause before each timed contender. On a host whose cgroup_threadgroup_rwsem is in
/// its fast-reader mode (this one), the first cgroup move waits for an RCU grace period
/// and a move within a grace period or two of another does not (the rwsem's rcu_sync is
/// still in its writer state): without the pause, whoever follows a mover (a room started
/// just before, the previous peer) would skip the wait the others pay. With `warm`, the
/// pause ends with a cgroup move of a bystander process, so that every contender's move
/// finds the rwsem in its writer state and waits for no grace period: what `favordynmods`
/// gives the anchor host's moves, without changing the host for longer than a grace
/// period (it does not reproduce favordynmods' cost to every fork and exit).
fn settle(warm: Option<&Warm>) {
    std::thread::sleep(Duration::from_millis(50));
    if let Some(w) = warm {
        w.touch();
    }
}

/// A bystander (`sleep`) and a scratch cgroup it is moved into and out of.
struct Warm {
    child: std::process::Child,
    group: std::path::PathBuf,
    parent: std::path::PathBuf,
}

impl Warm {
    fn new() -> Warm {
        // The v1 pids hierarchy where there is one (this host), else the unified one.
        let parent = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.join("cgroup.procs").is_file())
            .expect("a cgroup hierarchy under /sys/fs/cgroup");
        let group = parent.join(format!("anchor-bench-warm-{}", std::process::id()));
        std::fs::create_dir_all(&group).unwrap();
        let child = Command::new("sleep").arg("3600").spawn().unwrap();
        Warm {
            child,
            group,
            parent,
        }
    }

    /// Two moves: the first may wait for a grace period, the second finds none to wait
    /// for; the rwsem stays in its writer state for about a grace period after it.
    fn touch(&self) {
        let pid = self.child.id().to_string();
        std::fs::write(self.group.join("cgroup.procs"), &pid).unwrap();
        std::fs::write(self.parent.join("cgroup.procs"), &pid).unwrap();
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.group);
    }
}

fn rounds(b: &Bay0, peers: &Peers, runs: usize, reset: bool, warm: Option<&Warm>) -> Rounds {
    let mut r = Rounds::default();
    for i in 0..runs + 2 {
        let timed = i >= 2;
        // Ours, alone: no other room of the image runs, so its loop device is fresh.
        settle(warm);
        let (ready, first) = ours(b);
        if timed && reset {
            settle(warm);
            let t = Instant::now();
            let ok = b.answer(&format!("reset {ROOM}"));
            assert!(ok.starts_with(&format!("ok room {ROOM} ready")), "{ok}");
            r.reset.push(ms(t.elapsed()));
        }
        stop(b, ROOM);
        settle(warm);
        let bw = bwrap_plain(&peers.root.0);
        settle(warm);
        let with_mount = bwrap_with(&peers.fresh, &b.dir, false);
        settle(warm);
        let with_all = bwrap_with(&peers.fresh, &b.dir, true);
        settle(warm);
        let with_all_reused = bwrap_with(&peers.premounted, &b.dir, true);
        // Ours again while another room of the image runs (started untimed): a loop
        // device of its own, the image file's pages warm in the host's page cache.
        let ok = b.answer(&format!("start {OTHER}"));
        assert!(ok.starts_with(&format!("ok room {OTHER} ready")), "{ok}");
        settle(warm);
        let (shared_ready, shared_first) = ours(b);
        stop(b, ROOM);
        stop(b, OTHER);
        if timed {
            r.ready.push(ms(ready));
            r.first.push(ms(first));
            r.shared_ready.push(ms(shared_ready));
            r.shared_first.push(ms(shared_first));
            r.plain.push(ms(bw));
            r.mounted.push(ms(with_mount));
            r.full.push(ms(with_all));
            r.full_reused.push(ms(with_all_reused));
        }
    }
    r
}

fn report(r: &Rounds, runs: usize, what: &str) {
    let ours = median(&r.first);
    let shared = median(&r.shared_first);
    println!(
        "bench-ns: start -> first command's output, {runs} interleaved rounds, 50 ms apart{what} (median, p90, min):"
    );
    for (row, v) in [
        (
            "ours, namespace room: start -> agent ready                   ",
            &r.ready,
        ),
        (
            "ours, namespace room: start -> typed command's output        ",
            &r.first,
        ),
        (
            "ours, another room of the image running: start -> agent ready",
            &r.shared_ready,
        ),
        (
            "ours, another room of the image running: -> typed output     ",
            &r.shared_first,
        ),
    ] {
        println!("bench-ns:   {row} {}", summary(&mut v.clone()));
    }
    for (row, v) in [
        (
            "bwrap, image pre-mounted (lower bound)                          ",
            &r.plain,
        ),
        (
            "bwrap + loop-mounting the image (fresh device)                  ",
            &r.mounted,
        ),
        (
            "bwrap + room cgroup + loop mount, fresh device (like-for-like)  ",
            &r.full,
        ),
        (
            "bwrap + room cgroup + loop mount beside a mounted copy (reused) ",
            &r.full_reused,
        ),
    ] {
        println!(
            "bench-ns:   {row} {}; ours/this = {:.2} (another room running: {:.2})",
            summary(&mut v.clone()),
            ours / median(v),
            shared / median(v)
        );
    }
}

/// The anchor host's cgroup_threadgroup_rwsem mode, reproduced on this host for a set of
/// rounds: bay0 mounts cgroup2 there with `favordynmods`, which keeps that global rwsem
/// in its slow-reader mode, so a cgroup move (every room start) does not wait for an RCU
/// grace period. A cgroup v1 hierarchy takes the same option (kernel/cgroup/cgroup-v1.c
/// `cgroup1_parse_param`; since 6.0) and applies it to the same global rwsem for as long
/// as the hierarchy exists: `cgroup_favor_dynmods(root, true)` once the new root is set
/// up (`rcu_sync_enter`), and `cgroup_destroy_root` -- when the last mount of a
/// hierarchy with no child cgroup goes -- calls it with false (`rcu_sync_exit`). So a
/// named, controller-less hierarchy (it takes no controller from anyone) mounted for the
/// rounds and unmounted after reproduces the anchor host's mode and undoes it.
///
/// Except from Linux 6.18 on (commit 0568f89d4fb8, "cgroup: replace global percpu_rwsem
/// with per threadgroup rwsem when writing to cgroup.procs"): there the first
/// favordynmods also switches every later cgroup.procs write to per-process locking for
/// good (`cgroup_enable_per_threadgroup_rwsem`, "can't be disabled"), so the unmount no
/// longer restores the host: every cgroup move on the machine stays faster until reboot,
/// which would skew everyone's later measurements. On such a kernel these rounds run only
/// when asked (`BENCH_NS_FAVORDYNMODS=1`), and say the change stays.
struct Favordynmods {
    dir: std::path::PathBuf,
    undoable: bool,
}

impl Favordynmods {
    const NAME: &'static str = "anchor-bench";

    /// (major, minor) of the running kernel.
    fn kernel() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut nums = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok());
        (nums.next().unwrap_or(0), nums.next().unwrap_or(0))
    }

    /// Mounts the hierarchy, or says why not.
    fn mount(dir: &std::path::Path) -> Result<Favordynmods, String> {
        let (major, minor) = Self::kernel();
        let undoable = (major, minor) < (6, 18);
        if !undoable && std::env::var("BENCH_NS_FAVORDYNMODS").as_deref() != Ok("1") {
            return Err(format!(
                "skipped: on Linux {major}.{minor} (>= 6.18) favordynmods switches cgroup.procs \
                 writes to per-process locking until reboot (commit 0568f89d4fb8): the unmount \
                 would not undo it; BENCH_NS_FAVORDYNMODS=1 runs these rounds anyway"
            ));
        }
        let dir = dir.join("favordynmods");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "cgroup", "-o"])
            .arg(format!("none,name={},favordynmods", Self::NAME))
            .arg("cgroup")
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "refused by this kernel: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let f = Favordynmods { dir, undoable };
        if !f.mounted_with_option() {
            return Err(
                "the hierarchy was mounted without favordynmods (an older one of \
                        that name?): not measured"
                    .into(),
            );
        }
        Ok(f)
    }

    /// This mount's super options (mountinfo's last field) hold favordynmods.
    fn mounted_with_option(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.dir.to_string_lossy();
        info.lines().any(|l| {
            l.split(' ').nth(4) == Some(dir.as_ref())
                && l.rsplit(' ')
                    .next()
                    .is_some_and(|o| o.split(',').any(|w| w == "favordynmods"))
        })
    }
}

impl Drop for Favordynmods {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
#[ignore = "benchmark: make bench"]
fn bench_namespace_rooms_against_bwrap() {
    let b = Bay0::start(
        "bench",
        &[
            (ROOM, ns_policy(ROOM, 256, 256)),
            (OTHER, ns_policy(OTHER, 256, 256)),
        ],
    );
    let peers = Peers::new(&b);
    let runs = runs();
    let r = rounds(&b, &peers, runs, true, None);
    report(&r, runs, "");
    println!(
        "bench-ns: like-for-like = bwrap + the room's cgroup + a fresh loop mount of the \
         image: a room start must do both (docs/TESTING.md); ours also does landlock, \
         seccomp, a time namespace, masks /proc, starts the agent (which starts a login \
         shell) and goes through bay0 and the room's console. \"another room of the image \
         running\": a loop device and superblock of its own all the same (rooms share \
         none: docs/ARCHITECTURE.md), only the host's page cache of the image file is \
         warm; the last peer reuses the pre-mounted copy's device (util-linux does), \
         which a room never does"
    );
    println!(
        "bench-ns: reset (stop + start, until ready): {}",
        summary(&mut r.reset.clone())
    );

    // Again with every contender's cgroup move finding the rwsem in its writer state.
    let warm = Warm::new();
    let r = rounds(&b, &peers, runs, false, Some(&warm));
    drop(warm);
    report(
        &r,
        runs,
        ", each right after a bystander's cgroup move (no grace period to wait for: the \
         anchor host's favordynmods for moves, approximated, undone within a grace period)",
    );

    // The same rounds in the anchor host's cgroup_threadgroup_rwsem mode, where allowed.
    match Favordynmods::mount(&b.dir) {
        Err(why) => println!("bench-ns: rounds with favordynmods (the anchor host's mode): {why}"),
        Ok(f) => {
            let mode = if f.undoable {
                "; reproduced through a named v1 hierarchy mounted with favordynmods, \
                 undone by its unmount"
            } else {
                "; reproduced through a named v1 hierarchy mounted with favordynmods \
                 (BENCH_NS_FAVORDYNMODS=1): NOT undone, cgroup.procs writes stay \
                 per-process until reboot"
            };
            let r = rounds(&b, &peers, runs, false, None);
            drop(f);
            report(
                &r,
                runs,
                &format!(" with the anchor host's favordynmods{mode}"),
            );
        }
    }
    let still = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .contains(&format!("name={}", Favordynmods::NAME));
    if still {
        println!(
            "bench-ns: a cgroup hierarchy named {} is still mounted somewhere",
            Favordynmods::NAME
        );
    }

    // An idle room: what its processes hold and what its cgroup is charged.
    assert!(b
        .answer(&format!("start {ROOM}"))
        .starts_with(&format!("ok room {ROOM} ready")));
    std::thread::sleep(Duration::from_secs(2));
    let pids = cgroup_pids(ROOM);
    let charged = cgroup_memory(ROOM).unwrap_or(0);
    println!(
        "bench-ns: idle namespace room: {} processes, {} KiB resident, {} KiB charged to its \
         memory cgroup (includes its page cache and kernel objects)",
        pids.len(),
        rss_kib(&pids),
        charged / 1024
    );
    let mut idle = bwrap(&peers.root.0, "sleep 30")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let bw_pids: Vec<u32> =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", idle.id()))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .chain([idle.id()])
            .collect();
    let mut all = bw_pids.clone();
    for p in &bw_pids {
        let kids =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        all.extend(
            kids.split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok()),
        );
    }
    all.sort_unstable();
    all.dedup();
    println!(
        "bench-ns: idle bwrap sandbox (sleep): {} processes, {} KiB resident",
        all.len(),
        rss_kib(&all)
    );
    let _ = idle.kill();
    let _ = idle.wait();
    stop(&b, ROOM);
}
