// SPDX-License-Identifier: GPL-3.0-or-later
//! The room's cgroup: `anchor/<room>` with a memory cap, a pids cap and a CPU weight.
//!
//! cgroup v2 when /sys/fs/cgroup is a cgroup2 mount offering the memory, pids and cpu
//! controllers (the anchor host: bay0 mounts it); otherwise cgroup v1 when the memory,
//! pids and cpu hierarchies are mounted under /sys/fs/cgroup (some development hosts,
//! whose cgroup2 hierarchy offers none of them); otherwise the room is refused: a room is
//! never started without its limits. bay0 removes the directories when the room ends
//! (bay0/src/cgroup.rs knows the same paths).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where cgroup file systems are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";
/// The parent of every room's cgroup.
pub const GROUP: &str = "anchor";
const CGROUP2_SUPER_MAGIC: libc::c_long = 0x6367_7270;
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// A room's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// memory.max / memory.limit_in_bytes.
    pub memory_bytes: u64,
    /// pids.max.
    pub pids: u64,
    /// cpu.weight (1..=10000, 100 is the default share); cpu.shares on v1.
    pub cpu_weight: u32,
    /// At most this many CPUs' worth of time (cpu.max; v1 cpu.cfs_quota_us), if set.
    pub cpus: Option<u32>,
    /// OOM kills the whole group (v2 memory.oom.group) rather than one process.
    pub oom_group: bool,
}

/// The CPU bandwidth period (microseconds) for [`Limits::cpus`].
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup interface this machine offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy at this root.
    V2(PathBuf),
    /// One hierarchy per controller: memory, pids, cpu.
    V1([PathBuf; 3]),
}

fn path_err(op: &'static str, path: &Path, e: &std::io::Error) -> Error {
    Error::Path {
        op,
        path: path.display().to_string(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| path_err("write", path, &e))
}

fn mkdir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(path_err("create cgroup", path, &e))
        }
        _ => Ok(()),
    }
}

/// cgroup v1 memory.kmem.tcp.limit_in_bytes for a room of `memory_bytes`: a quarter of
/// it, in whole pages (charged beside memory.limit_in_bytes, not within it).
pub fn tcp_bytes_v1(memory_bytes: u64) -> u64 {
    (memory_bytes / 4) & !0xfff
}

/// cgroup v1 cpu.shares for a v2 weight (100 <-> 1024).
pub fn shares_for_weight(weight: u32) -> u64 {
    (u64::from(weight) * 1024 / 100).clamp(2, 262_144)
}

impl Hierarchy {
    /// The interface at [`ROOT`].
    pub fn detect() -> Result<Hierarchy> {
        let root = Path::new(ROOT);
        let v2 = crate::sys::fs_type(root).is_ok_and(|t| t == CGROUP2_SUPER_MAGIC);
        Hierarchy::detect_at(root, v2)
    }

    /// The interface at `root`, which is (`v2`) or is not a cgroup2 mount.
    pub fn detect_at(root: &Path, v2: bool) -> Result<Hierarchy> {
        if v2 {
            let offered = std::fs::read_to_string(root.join("cgroup.controllers"))
                .map_err(|e| path_err("read", &root.join("cgroup.controllers"), &e))?;
            let has = |c: &str| offered.split_whitespace().any(|o| o == c);
            if CONTROLLERS.iter().all(|c| has(c)) {
                return Ok(Hierarchy::V2(root.to_path_buf()));
            }
        }
        let v1 = CONTROLLERS.map(|c| root.join(c));
        let mounted = ["memory.limit_in_bytes", "cgroup.procs", "cpu.shares"];
        if v1
            .iter()
            .zip(mounted)
            .all(|(dir, file)| dir.join(file).exists())
        {
            return Ok(Hierarchy::V1(v1));
        }
        Err(Error::Unsupported(
            "no usable cgroups: need cgroup v2 with the memory, pids and cpu controllers at \
             /sys/fs/cgroup, or cgroup v1 memory, pids and cpu hierarchies under it",
        ))
    }

    /// "v2" or "v1", with the controllers used.
    pub fn describe(&self) -> &'static str {
        match self {
            Hierarchy::V2(_) => "v2 (memory, pids, cpu)",
            Hierarchy::V1(_) => "v1 (memory, pids, cpu hierarchies)",
        }
    }

    /// The room's cgroup directories.
    pub fn dirs(&self, room: &str) -> Vec<PathBuf> {
        match self {
            Hierarchy::V2(root) => vec![root.join(GROUP).join(room)],
            Hierarchy::V1(dirs) => dirs.iter().map(|d| d.join(GROUP).join(room)).collect(),
        }
    }

    /// Creates the room's cgroup with `limits` and moves this process into it.
    pub fn enter(&self, room: &str, limits: &Limits) -> Result<()> {
        join(&self.prepare(room, limits)?, "0")
    }

    /// Creates the room's cgroup with `limits`; its `cgroup.procs` file(s) (one per
    /// hierarchy on v1), to [`join`] it through.
    pub fn prepare(&self, room: &str, limits: &Limits) -> Result<Vec<PathBuf>> {
        for dir in self.dirs(room) {
            match std::fs::symlink_metadata(&dir) {
                // A cgroup v1 control file of anchor/ (`tasks`): never a room's cgroup.
                Ok(m) if !m.is_dir() => {
                    return Err(Error::Path {
                        op: "the room's name is a cgroup control file, not a cgroup:",
                        path: dir.display().to_string(),
                        errno: libc::ENOTDIR,
                    })
                }
                // A leftover directory of an earlier run of this room: empty ones go.
                Ok(_) if std::fs::remove_dir(&dir).is_err() => {
                    return Err(Error::Unsupported(
                        "the room's cgroup from its previous run still holds processes",
                    ));
                }
                _ => {}
            }
        }
        match self {
            Hierarchy::V2(root) => {
                let enable = "+memory +pids +cpu";
                write_file(&root.join("cgroup.subtree_control"), enable)?;
                let parent = root.join(GROUP);
                mkdir(&parent)?;
                write_file(&parent.join("cgroup.subtree_control"), enable)?;
                let dir = parent.join(room);
                mkdir(&dir)?;
                write_file(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
                // Optional knobs: absent without swap, or on older kernels.
                let _ = write_file(&dir.join("memory.swap.max"), "0");
                if limits.oom_group {
                    let _ = write_file(&dir.join("memory.oom.group"), "1");
                }
                write_file(&dir.join("pids.max"), &limits.pids.to_string())?;
                write_file(&dir.join("cpu.weight"), &limits.cpu_weight.to_string())?;
                if let Some(n) = limits.cpus {
                    let quota = u64::from(n).saturating_mul(CPU_PERIOD_US);
                    write_file(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                Ok(vec![dir.join("cgroup.procs")])
            }
            Hierarchy::V1([memory, pids, cpu]) => {
                let make = |ctrl: &PathBuf| -> Result<PathBuf> {
                    mkdir(&ctrl.join(GROUP))?;
                    let dir = ctrl.join(GROUP).join(room);
                    mkdir(&dir)?;
                    Ok(dir)
                };
                let (m, p, c) = (make(memory)?, make(pids)?, make(cpu)?);
                let bytes = limits.memory_bytes.to_string();
                write_file(&m.join("memory.limit_in_bytes"), &bytes)?;
                // Memory+swap, where swap accounting exists.
                let _ = write_file(&m.join("memory.memsw.limit_in_bytes"), &bytes);
                // v1 charges TCP buffers to a counter of their own, and only once it has a
                // limit: without one, a room's loopback connections could hold kernel
                // memory up to the host-wide tcp_mem, far past memory.limit_in_bytes (the
                // escape suite's socket-memory). v2 charges them to memory.max.
                write_file(
                    &m.join("memory.kmem.tcp.limit_in_bytes"),
                    &tcp_bytes_v1(limits.memory_bytes).to_string(),
                )?;
                write_file(&p.join("pids.max"), &limits.pids.to_string())?;
                let shares = shares_for_weight(limits.cpu_weight);
                write_file(&c.join("cpu.shares"), &shares.to_string())?;
                if let Some(n) = limits.cpus {
                    let quota = u64::from(n).saturating_mul(CPU_PERIOD_US);
                    write_file(&c.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write_file(&c.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                Ok([m, p, c].iter().map(|d| d.join("cgroup.procs")).collect())
            }
        }
    }
}

/// Moves the process `pid` (as this process's PID namespace numbers it; "0": this
/// process) into the cgroup whose `cgroup.procs` file(s) [`Hierarchy::prepare`] gave.
///
/// The first move after a quiet spell waits for an RCU grace period in the kernel
/// (cgroup_threadgroup_rwsem; several ms), unless the hierarchy is mounted with
/// `favordynmods` (bay0 mounts the anchor host's cgroup2 so): see
/// docs/ARCHITECTURE.md, "The namespace backend".
pub fn join(procs: &[PathBuf], pid: &str) -> Result<()> {
    procs.iter().try_for_each(|f| write_file(f, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_map_to_shares() {
        assert_eq!(shares_for_weight(100), 1024);
        assert_eq!(shares_for_weight(200), 2048);
        assert_eq!(shares_for_weight(1), 10);
        assert_eq!(shares_for_weight(10_000), 102_400);
    }

    #[test]
    fn v1_tcp_buffers_get_a_quarter_of_the_rooms_memory() {
        assert_eq!(tcp_bytes_v1(128 << 20), 32 << 20);
        assert_eq!(tcp_bytes_v1((64 << 20) + 5), 16 << 20);
    }

    #[test]
    fn detection_prefers_a_complete_v2_then_v1_then_refuses() {
        let dir = std::env::temp_dir().join(format!("jail-cg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        assert_eq!(
            Hierarchy::detect_at(&dir, true).unwrap(),
            Hierarchy::V2(dir.clone())
        );
        std::fs::write(dir.join("cgroup.controllers"), "hugetlb\n").unwrap();
        assert!(Hierarchy::detect_at(&dir, true).is_err());
        for (c, f) in [
            ("memory", "memory.limit_in_bytes"),
            ("pids", "cgroup.procs"),
            ("cpu", "cpu.shares"),
        ] {
            std::fs::create_dir_all(dir.join(c)).unwrap();
            std::fs::write(dir.join(c).join(f), "").unwrap();
        }
        let v1 = Hierarchy::detect_at(&dir, true).unwrap();
        assert!(matches!(v1, Hierarchy::V1(_)));
        assert_eq!(v1.dirs("web")[1], dir.join("pids/anchor/web"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A valid room name can be a cgroup v1 control file of `anchor/` (`tasks`): the
    /// room is refused for that reason, not as a leftover cgroup "still holding
    /// processes", and the file is left alone.
    #[test]
    fn a_room_named_like_a_v1_control_file_is_refused_for_that() {
        let dir = std::env::temp_dir().join(format!("jail-cg-tasks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let v1 = CONTROLLERS.map(|c| dir.join(c));
        for d in &v1 {
            std::fs::create_dir_all(d.join(GROUP)).unwrap();
            std::fs::write(d.join(GROUP).join("tasks"), "").unwrap();
        }
        let limits = Limits {
            memory_bytes: 64 << 20,
            pids: 32,
            cpu_weight: 100,
            cpus: None,
            oom_group: false,
        };
        let e = Hierarchy::V1(v1.clone())
            .prepare("tasks", &limits)
            .unwrap_err();
        let e = e.to_string();
        assert!(e.contains("not a cgroup") && e.contains("tasks"), "{e}");
        assert!(v1[0].join(GROUP).join("tasks").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
