// SPDX-License-Identifier: GPL-3.0-or-later
//! Namespace room benchmarks on this machine (`make bench` runs them through
//! tests/escape/bench.sh; printed, never asserted): start -> first command inside, against
//! bubblewrap (`bwrap`, Debian's) with the same namespaces and the same image in the same
//! run; reset; the memory an idle namespace room costs. Ignored by the normal test run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ns_policy, Bay0};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Timed runs of each contender (after two untimed ones); `BENCH_NS_RUNS` overrides.
fn runs() -> usize {
    std::env::var("BENCH_NS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(20)
}

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

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[s.len() / 2]
}

/// The image mounted read-only for bwrap (which cannot mount a SquashFS itself); the
/// mount is made once, outside the timing.
struct Mounted(std::path::PathBuf);

impl Mounted {
    fn new(image: &std::path::Path, dir: &std::path::Path) -> Mounted {
        let mnt = dir.join("bwrap-root");
        std::fs::create_dir_all(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "squashfs", "-o", "ro,loop"])
            .arg(image)
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mounted(mnt)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// bwrap with the namespace room's namespaces (user as uid 0, pid, mount, net, ipc,
/// uts, cgroup) on the same image, tmpfs for the same paths, its own /proc and /dev.
fn bwrap(root: &std::path::Path, cmd: &str) -> Command {
    let mut c = Command::new("bwrap");
    c.args([
        "--unshare-user",
        "--uid",
        "0",
        "--gid",
        "0",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
        "--die-with-parent",
        "--ro-bind",
    ])
    .arg(root)
    .arg("/");
    for t in ["/tmp", "/run", "/var", "/home", "/root"] {
        c.args(["--tmpfs", t]);
    }
    c.args(["--proc", "/proc", "--dev", "/dev", "--hostname", "bw"])
        .args(["/bin/sh", "-c", cmd]);
    c
}

/// Attaches to the room's console, types a command at once and waits for its output.
fn first_output(b: &Bay0) {
    let mut s = b.connect();
    s.write_all(b"console nsbench\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // bay0 reads the request line alone: type once it has answered.
    while !seen.contains("ok attached") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "console closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s.write_all(b"echo first-$((1+1))\r").unwrap();
    while !seen.contains("nsbench| first-2") {
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
/// image attached and mounted through a fresh loop device (`mount -o loop`, like each
/// room start), and with `cgroup` also the room's cgroup with its limits, joined before
/// bwrap starts; then undone.
fn bwrap_with(image: &std::path::Path, dir: &std::path::Path, cgroup: bool) -> Duration {
    let t0 = Instant::now();
    let mnt = dir.join("bwrap-full");
    std::fs::create_dir_all(&mnt).unwrap();
    let procs = if cgroup { peer_cgroup() } else { Vec::new() };
    let out = Command::new("mount")
        .args(["-t", "squashfs", "-o", "ro,loop"])
        .arg(image)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

#[test]
#[ignore = "benchmark: make bench"]
fn bench_namespace_rooms_against_bwrap() {
    let b = Bay0::start("bench", &[("nsbench", ns_policy("nsbench", 256, 256))]);
    let root = Mounted::new(&b.image, &b.dir);
    let runs = runs();
    let (mut ours_ready, mut ours_first, mut reset) = (vec![], vec![], vec![]);
    let (mut plain, mut mounted, mut full) = (vec![], vec![], vec![]);
    // Each round runs every contender once, in turn, so that load from elsewhere on the
    // machine falls on all of them alike; medians are compared.
    for i in 0..runs + 2 {
        // Ours: the request to bay0 -> the agent's ready -> a command typed on the
        // room's console right away -> its output.
        let t0 = Instant::now();
        let ok = b.answer("start nsbench");
        let ready = t0.elapsed();
        assert!(ok.starts_with("ok room nsbench ready"), "{ok}");
        first_output(&b);
        let first = t0.elapsed();
        if i >= 2 {
            let t = Instant::now();
            let r = b.answer("reset nsbench");
            assert!(r.starts_with("ok room nsbench ready"), "{r}");
            reset.push(ms(t.elapsed()));
        }
        assert_eq!(b.answer("stop nsbench"), "ok room nsbench stopped");
        // bwrap: spawn -> the first command's output.
        let t0 = Instant::now();
        let mut child = bwrap(&root.0, "echo first-$((1+1))")
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
        let with_mount = bwrap_with(&b.image, &b.dir, false);
        let with_all = bwrap_with(&b.image, &b.dir, true);
        if i >= 2 {
            ours_ready.push(ms(ready));
            ours_first.push(ms(first));
            plain.push(ms(bw));
            mounted.push(ms(with_mount));
            full.push(ms(with_all));
        }
    }
    let ours = median(&ours_first);
    println!(
        "bench-ns: start -> first command's output, {runs} interleaved rounds (median, p90, min):"
    );
    println!(
        "bench-ns:   ours, namespace room: start -> agent ready            {}",
        summary(&mut ours_ready.clone())
    );
    println!(
        "bench-ns:   ours, namespace room: start -> typed command's output {}",
        summary(&mut ours_first.clone())
    );
    for (what, v) in [
        ("bwrap, image pre-mounted (lower bound)         ", &plain),
        ("bwrap + loop-mounting the image                ", &mounted),
        ("bwrap + room cgroup + loop mount (like-for-like)", &full),
    ] {
        println!(
            "bench-ns:   {what} {}; ours/this = {:.2}",
            summary(&mut v.clone()),
            ours / median(v)
        );
    }
    println!(
        "bench-ns: like-for-like = bwrap + the room's cgroup + a fresh loop mount of the \
         image: a room start must do both (docs/TESTING.md); ours also does landlock, \
         seccomp, a time namespace, masks /proc, starts the agent (which starts a login \
         shell) and goes through bay0 and the room's console"
    );
    println!(
        "bench-ns: reset (stop + start, until ready): {}",
        summary(&mut reset)
    );

    // An idle room: what its processes hold and what its cgroup is charged.
    assert!(b
        .answer("start nsbench")
        .starts_with("ok room nsbench ready"));
    std::thread::sleep(Duration::from_secs(2));
    let pids = cgroup_pids("nsbench");
    let charged = cgroup_memory("nsbench").unwrap_or(0);
    println!(
        "bench-ns: idle namespace room: {} processes, {} KiB resident, {} KiB charged to its \
         memory cgroup (includes its page cache and kernel objects)",
        pids.len(),
        rss_kib(&pids),
        charged / 1024
    );
    let mut idle = bwrap(&root.0, "sleep 30")
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
    assert_eq!(b.answer("stop nsbench"), "ok room nsbench stopped");
}
