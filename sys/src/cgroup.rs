// SPDX-License-Identifier: GPL-3.0-or-later
//! Rooms' cgroups as bay0 handles them after `anchor-jail` made them: a room's cgroup is
//! `anchor/NAME` under the cgroup v2 root (`/sys/fs/cgroup`), or under each v1 controller
//! it uses (`memory/`, `pids/`, `cpu/`). bay0 removes a room's cgroup once its VMM has
//! ended, and sets it aside ([`set_aside`]) when a room is reset while its old self is
//! still there, so the new room can have the name.

use std::path::Path;

/// Where the cgroup hierarchies are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

/// Every place (relative to [`ROOT`]) a room's cgroup can be: v2, then the v1 controllers.
const PLACES: [&str; 4] = ["", "memory/", "pids/", "cpu/"];

/// Removes `rel` (e.g. `anchor/web`) in every place under `root`; true when none is left.
/// A cgroup that still holds processes (they are being killed with their room's PID
/// namespace) has them sent SIGKILL, so a later call can remove it.
pub fn remove(root: &Path, rel: &str) -> bool {
    let mut gone = true;
    for place in PLACES {
        let dir = root.join(place).join(rel);
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // A v1 control file (`anchor/tasks`): no room's cgroup is there.
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(_) => {
                gone = false;
                let procs = std::fs::read_to_string(dir.join("cgroup.procs"));
                for pid in procs
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.parse().ok())
                {
                    let _ = crate::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    gone
}

/// [`remove`] again every 50 ms until `rel` is gone, for at most `wait_ms`: for callers
/// that may block while a killed room's processes are reaped (test harnesses that killed
/// bay0; bay0 itself retries from its event loop instead). True when none is left.
pub fn remove_within(root: &Path, rel: &str, wait_ms: u64) -> bool {
    let mut waited = 0;
    loop {
        if remove(root, rel) {
            return true;
        }
        if waited >= wait_ms {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 50;
    }
}

/// Renames `rel` to `to` (same parent) in every place under `root` where it exists. On a
/// failure other than "not there" the places already renamed are renamed back, so the
/// cgroup is either wholly moved or left as it was; the error is the failure's.
pub fn rename(root: &Path, rel: &str, to: &str) -> crate::Result<()> {
    for (i, place) in PLACES.iter().enumerate() {
        let dir = root.join(place);
        match std::fs::rename(dir.join(rel), dir.join(to)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                for done in PLACES.iter().take(i) {
                    let dir = root.join(done);
                    let _ = std::fs::rename(dir.join(to), dir.join(rel));
                }
                return Err(io_err("rename a room's cgroup")(e));
            }
        }
    }
    Ok(())
}

/// Moves cgroup `rel` out of the way as `to` (same parent), all or nothing. cgroup v1
/// renames it (every hierarchy, see [`rename`]). cgroup v2 refuses renames (EPERM): there
/// `to` is made and frozen, every process of `rel` is moved into it (frozen as it arrives;
/// memory already charged stays with `rel`'s accounting until it is freed), and the
/// emptied `rel` is removed; if it cannot be, the processes go back and `to` goes.
pub fn set_aside(root: &Path, rel: &str, to: &str) -> crate::Result<()> {
    match rename(root, rel, to) {
        Err(e) if e.errno == libc::EPERM => move_all(&root.join(rel), &root.join(to)),
        other => other,
    }
}

fn io_err(op: &'static str) -> impl Fn(std::io::Error) -> crate::Error {
    move |e| crate::Error {
        op,
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// cgroup v2's [`set_aside`].
fn move_all(from: &Path, to: &Path) -> crate::Result<()> {
    std::fs::create_dir(to).map_err(io_err("make the set-aside cgroup"))?;
    let moved = std::fs::write(to.join("cgroup.freeze"), "1")
        .map_err(io_err("freeze the set-aside cgroup"))
        .and_then(|()| {
            move_procs(from, to);
            std::fs::remove_dir(from).map_err(io_err("remove the emptied cgroup"))
        });
    if moved.is_err() {
        move_procs(to, from);
        let _ = std::fs::remove_dir(to);
    }
    moved
}

/// Moves every process of cgroup `from` into `to`; processes forked while the list was
/// read are moved in a later round (at most 8).
fn move_procs(from: &Path, to: &Path) {
    for _ in 0..8 {
        let procs = std::fs::read_to_string(from.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            return;
        }
        for pid in procs.lines() {
            // A process that has ended meanwhile cannot be moved (ESRCH): nothing to do.
            let _ = std::fs::write(to.join("cgroup.procs"), pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(tag: &str) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("anchor-sys-cg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for place in ["anchor", "memory/anchor", "pids/anchor"] {
            std::fs::create_dir_all(root.join(place).join("web")).unwrap();
        }
        root
    }

    /// `anchor/tasks` on cgroup v1 is the hierarchy's own control file, not a room's
    /// cgroup: nothing of a room named `tasks` is left to remove (bay0 would otherwise
    /// keep retrying it every second, one more entry per refused start), and the file
    /// stays.
    #[test]
    fn a_control_file_named_like_the_room_is_not_a_leftover() {
        let root = tree("tasks");
        std::fs::write(root.join("memory/anchor/tasks"), "").unwrap();
        assert!(remove(&root, "anchor/tasks"));
        assert!(root.join("memory/anchor/tasks").is_file());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn rename_moves_every_place_that_exists_and_remove_takes_them() {
        let root = tree("rename");
        rename(&root, "anchor/web", "anchor/_42").unwrap();
        for place in ["anchor", "memory/anchor", "pids/anchor"] {
            assert!(!root.join(place).join("web").exists(), "{place}");
            assert!(root.join(place).join("_42").is_dir(), "{place}");
        }
        assert!(!root.join("cpu/anchor/_42").exists());
        assert!(remove(&root, "anchor/_42"));
        assert!(!root.join("memory/anchor/_42").exists());
        assert!(remove(&root, "anchor/nothing-here"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_rename_onto_a_busy_name_is_an_error_and_undone_and_a_busy_cgroup_is_not_gone() {
        let root = tree("busy");
        std::fs::create_dir_all(root.join("pids/anchor/_7/child")).unwrap();
        let e = rename(&root, "anchor/web", "anchor/_7").unwrap_err();
        assert_eq!(e.op, "rename a room's cgroup");
        // The v2 and memory places, moved before pids failed, are back where they were.
        for place in ["anchor", "memory/anchor", "pids/anchor"] {
            assert!(root.join(place).join("web").is_dir(), "{place}");
        }
        assert!(!root.join("anchor/_7").exists() && !root.join("memory/anchor/_7").exists());
        // A directory that cannot be removed (here: not empty) is reported as left over.
        std::fs::write(root.join("anchor/web/cgroup.procs"), "").unwrap();
        assert!(!remove(&root, "anchor/web"));
        assert!(!remove_within(&root, "anchor/web", 100));
        assert!(remove_within(&root, "anchor/nothing-here", 0));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
