// SPDX-License-Identifier: GPL-3.0-or-later
//! Removing a room's cgroup once its VMM has ended. `anchor-jail` creates it (cgroup v2
//! `/sys/fs/cgroup/anchor/NAME`, or v1 `/sys/fs/cgroup/{memory,pids,cpu}/anchor/NAME`);
//! bay0 removes whichever exists. A cgroup that still holds processes (they are being
//! killed with the room's PID namespace) has them killed and is retried on the next tick.

/// Every place a room's cgroup can be.
const PLACES: [&str; 4] = ["", "memory/", "pids/", "cpu/"];

/// Removes room `name`'s cgroups; true when none is left.
pub fn remove(name: &str) -> bool {
    let mut gone = true;
    for place in PLACES {
        let dir = format!("/sys/fs/cgroup/{place}anchor/{name}");
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => {
                gone = false;
                let procs = std::fs::read_to_string(format!("{dir}/cgroup.procs"));
                for pid in procs
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.parse().ok())
                {
                    let _ = crate::sys::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    gone
}
