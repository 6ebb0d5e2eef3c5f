// SPDX-License-Identifier: GPL-3.0-or-later
//! Shared by bay0's hosted integration tests (rooms.rs, courier.rs).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Starts hosted bay0 (`--hosted STATE --layout LAYOUT`) with `stdin` as its console input
/// (a terminal makes it take the console over); its stdout and stderr lines are collected,
/// as they come, into the returned log.
pub fn spawn_hosted(
    bay0: &str,
    state: &Path,
    layout: &Path,
    stdin: Stdio,
) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(bay0)
        .arg("--hosted")
        .arg(state)
        .arg("--layout")
        .arg(layout)
        .stdin(stdin)
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
    (child, log)
}

/// After the test killed bay0: the cgroups of the rooms it still had open (every room
/// whose name `ours` accepts) are the test's to remove, with anchor-sys's own
/// `cgroup::remove`, once the rooms' processes are gone (up to 10 s a room).
pub fn remove_room_cgroups(ours: impl Fn(&str) -> bool) {
    let root = Path::new(anchor_sys::cgroup::ROOT);
    let mut names = Vec::new();
    for place in ["anchor", "memory/anchor", "pids/anchor", "cpu/anchor"] {
        let Ok(dir) = std::fs::read_dir(root.join(place)) else {
            continue;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && ours(&name) && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    for name in names {
        anchor_sys::cgroup::remove_within(root, &format!("anchor/{name}"), 10_000);
    }
}
