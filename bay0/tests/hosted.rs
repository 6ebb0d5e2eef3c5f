// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0 as PID 1 of real namespaces (hosted mode). Needs root: fails, never skips,
//! without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BAY0: &str = env!("CARGO_BIN_EXE_bay0");

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (hosted mode creates PID and mount namespaces)"
    );
}

struct Hosted {
    child: Child,
    log: Arc<Mutex<String>>,
    /// The threads that copy bay0's stdout and stderr into `log`, line by line.
    readers: Vec<std::thread::JoinHandle<()>>,
    state: PathBuf,
}

impl Hosted {
    fn start(name: &str, script: &str) -> Hosted {
        require_root();
        let state = std::env::temp_dir().join(format!("bay0-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let mut child = Command::new(BAY0)
            .arg("--hosted")
            .arg(&state)
            .args(["--", "/bin/sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            }));
        }
        let h = Hosted {
            child,
            log,
            readers,
            state,
        };
        h.wait_log("bay0: ready", Duration::from_secs(20));
        h
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < end,
                "no {needle:?} within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Host pid of the namespace's PID 1.
    fn inner_pid(&self) -> i32 {
        let outer = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).unwrap();
        children
            .split_whitespace()
            .next()
            .expect("relay has no child")
            .parse()
            .unwrap()
    }

    /// Waits for bay0 to exit and for the log to hold all it wrote: the lines are copied
    /// by threads of their own, which may not have read the last ones yet when the exit
    /// is seen (they end at the end of the pipes, which every process below bay0 held).
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while !self.readers.iter().all(|r| r.is_finished()) {
                    assert!(
                        Instant::now() < end,
                        "bay0 exited but its output did not end within {timeout:?}; log:\n{}",
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                return status;
            }
            assert!(
                Instant::now() < end,
                "bay0 did not exit within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Hosted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// (pid, ppid, state, comm) of every process.
fn processes() -> Vec<(i32, i32, char, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 2..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, state, comm));
    }
    out
}

/// Processes below `root` (not `root` itself): (pid, state, comm).
fn descendants(root: i32) -> Vec<(i32, char, String)> {
    let all = processes();
    let parent = |pid: i32| all.iter().find(|p| p.0 == pid).map(|p| p.1);
    all.iter()
        .filter(|p| {
            let mut cur = p.1;
            for _ in 0..64 {
                if cur == root {
                    return true;
                }
                match parent(cur) {
                    Some(pp) if pp != cur && cur > 1 => cur = pp,
                    _ => return false,
                }
            }
            false
        })
        .map(|p| (p.0, p.2, p.3.clone()))
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn bay0_is_pid1_of_its_namespace_and_run_is_the_state_dir() {
    let mut h = Hosted::start(
        "ns",
        "touch /run/hosted-marker; echo \"pid=$$ ppid=$PPID\"; exec sleep 600",
    );
    h.wait_log("pid=", Duration::from_secs(10));
    assert!(
        h.log().contains("ppid=1"),
        "the command's parent is not PID 1:\n{}",
        h.log()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", h.inner_pid())).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "inner bay0 is not PID 1 of its namespace: {nspid}"
    );
    assert!(
        h.state.join("run/hosted-marker").exists(),
        "/run inside is not STATE_DIR/run"
    );
    unsafe_kill(h.child.id() as i32, libc::SIGTERM);
    assert!(
        h.wait_exit(Duration::from_secs(30)).success(),
        "log:\n{}",
        h.log()
    );
}

#[test]
fn a_storm_of_1000_orphans_leaves_no_zombies() {
    let script = "i=0; while [ $i -lt 1000 ]; do (true &); i=$((i+1)); done; echo storm-done; exec sleep 600";
    let mut h = Hosted::start("storm", script);
    h.wait_log("storm-done", Duration::from_secs(120));
    let inner = h.inner_pid();
    // Orphans that were still running at "storm-done" get a moment to end; after that
    // the namespace must hold nothing but bay0 and the command's final sleep.
    let mut left = Vec::new();
    let settled = (0..400).any(|_| {
        left = descendants(inner);
        let done = left.len() == 1 && left[0].1 != 'Z';
        if !done {
            std::thread::sleep(Duration::from_millis(50));
        }
        done
    });
    let zombies = left.iter().filter(|p| p.1 == 'Z').count();
    assert!(
        settled,
        "{zombies} zombies among {} processes left below bay0 after 20 s",
        left.len()
    );
    assert!(
        alive(inner) && h.running(),
        "bay0 died during the storm; log:\n{}",
        h.log()
    );
    unsafe_kill(h.child.id() as i32, libc::SIGTERM);
    assert!(
        h.wait_exit(Duration::from_secs(30)).success(),
        "log:\n{}",
        h.log()
    );
    // The orphans were bay0's to reap: it counts them.
    let log = h.log();
    let reaped: u64 = log
        .split("all processes have ended (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no reaped count in the log:\n{log}"));
    assert!(reaped >= 1000, "bay0 reaped only {reaped} processes");
}

#[test]
fn sigterm_stops_every_child_and_exits_zero() {
    // One well-behaved sleep, one that ignores SIGTERM (needs the SIGKILL after the grace).
    let script = "trap 'echo sh-got-TERM; exit 0' TERM; \
                  sleep 600 & (trap '' TERM; exec sleep 601) & echo started; wait";
    let mut h = Hosted::start("term", script);
    h.wait_log("started", Duration::from_secs(10));
    let inner = h.inner_pid();
    wait_until("both sleeps", Duration::from_secs(10), || {
        descendants(inner).iter().filter(|p| p.2 == "sleep").count() == 2
    });
    let children: Vec<i32> = descendants(inner).iter().map(|p| p.0).collect();
    unsafe_kill(h.child.id() as i32, libc::SIGTERM);
    let status = h.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "log:\n{}", h.log());
    let log = h.log();
    for line in [
        "shutdown (power off) on SIGTERM: sending SIGTERM to all processes",
        "sh-got-TERM",
        "grace period over, sending SIGKILL",
        "all processes have ended",
        "hosted: all processes ended, exiting",
    ] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    assert!(!alive(inner), "bay0 still alive");
    for pid in children {
        assert!(!alive(pid), "child {pid} survived the shutdown");
    }
}

#[test]
fn bay0_survives_sigkill_of_its_children() {
    let mut h = Hosted::start("kill", "sleep 600 & sleep 601 & echo started; wait");
    h.wait_log("started", Duration::from_secs(10));
    let inner = h.inner_pid();
    wait_until("both sleeps", Duration::from_secs(10), || {
        descendants(inner).iter().filter(|p| p.2 == "sleep").count() == 2
    });
    let sh = descendants(inner)
        .into_iter()
        .find(|p| p.2 == "sh")
        .unwrap()
        .0;
    unsafe_kill(sh, libc::SIGKILL);
    h.wait_log("killed by signal 9", Duration::from_secs(10));
    // The sleeps are now orphans, children of bay0 itself: kill one of those too.
    let sleeps: Vec<i32> = descendants(inner)
        .iter()
        .filter(|p| p.2 == "sleep")
        .map(|p| p.0)
        .collect();
    assert_eq!(sleeps.len(), 2);
    unsafe_kill(sleeps[0], libc::SIGKILL);
    wait_until(
        "the killed sleep to be reaped",
        Duration::from_secs(10),
        || !Path::new(&format!("/proc/{}", sleeps[0])).exists(),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(inner) && h.running(),
        "bay0 did not survive; log:\n{}",
        h.log()
    );
    assert!(alive(sleeps[1]));
    unsafe_kill(h.child.id() as i32, libc::SIGTERM);
    assert_eq!(
        h.wait_exit(Duration::from_secs(30)).code(),
        Some(0),
        "log:\n{}",
        h.log()
    );
    assert!(!alive(sleeps[1]), "the other sleep survived the shutdown");
    // A plain sleep ends on SIGTERM: no SIGKILL was needed.
    assert!(
        !h.log().contains("SIGKILL"),
        "children ignored SIGTERM; log:\n{}",
        h.log()
    );
}

#[test]
fn help_and_bad_arguments() {
    let help = Command::new(BAY0).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("bay0 --hosted STATE_DIR"));
    for bad in [&[][..], &["--hosted"], &["--frobnicate"]] {
        let out = Command::new(BAY0).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("bay0: usage: "), "{err}");
    }
}

fn unsafe_kill(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid} {sig}");
}

#[test]
fn sigint_to_the_relay_stops_bay0_cleanly() {
    let mut h = Hosted::start("sigint", "exec sleep 600");
    unsafe_kill(h.child.id() as i32, libc::SIGINT);
    assert_eq!(
        h.wait_exit(Duration::from_secs(30)).code(),
        Some(0),
        "log:\n{}",
        h.log()
    );
    assert!(
        h.log().contains("shutdown (reboot) on SIGINT"),
        "log:\n{}",
        h.log()
    );
}

#[test]
fn killing_the_relay_takes_the_namespace_down() {
    let h = Hosted::start("relay-kill", "exec sleep 600");
    let inner = h.inner_pid();
    let sleep = descendants(inner)[0].0;
    unsafe_kill(h.child.id() as i32, libc::SIGKILL);
    wait_until(
        "bay0 and its child to die with the relay",
        Duration::from_secs(10),
        || !alive(inner) && !alive(sleep),
    );
}
