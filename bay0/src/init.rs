// SPDX-License-Identifier: GPL-3.0-or-later
//! Early system setup: the file systems PID 1 provides (/proc, /sys, /dev, /dev/pts,
//! /sys/fs/cgroup, /run, /tmp)
//! and the directories bay0 needs. Mounts that are already there are left alone and
//! not claimed; only what bay0 mounted is unmounted at shutdown.
//!
//! In hosted mode the same plan runs inside a private mount namespace: /proc is a fresh
//! procfs (it must show the new PID namespace), /sys and /dev stay the host's, and
//! /run, /tmp are bind mounts of STATE_DIR/run, STATE_DIR/tmp.

use crate::error::{Error, Result};
use std::ffi::{CStr, CString};

/// How a plan entry is provided in hosted mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosted {
    /// Mounted as on a machine.
    Mount,
    /// The host's is used.
    Skip,
    /// Bind-mounted from this subdirectory of STATE_DIR.
    BindState(&'static CStr),
}

/// One file system PID 1 provides.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    pub target: &'static CStr,
    pub fstype: &'static CStr,
    pub flags: libc::c_ulong,
    pub data: Option<&'static CStr>,
    pub hosted: Hosted,
}

const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

const fn spec(
    target: &'static CStr,
    fstype: &'static CStr,
    flags: libc::c_ulong,
    data: Option<&'static CStr>,
    hosted: Hosted,
) -> MountSpec {
    MountSpec {
        target,
        fstype,
        flags,
        data,
        hosted,
    }
}

const NOEXEC: libc::c_ulong = NOSUID_NODEV | libc::MS_NOEXEC;

/// The plan, in mount order (unmounted in reverse): /dev/pts gives ptys to room consoles
/// and the operator shell (only root opens the multiplexer); /sys/fs/cgroup holds the
/// rooms' cgroups (anchor-jail creates them under `anchor/`), `favordynmods` so that
/// moving a process between cgroups (each room start; a reset's set-aside; KVM_CREATE_VM
/// on x86_64, which moves the VM's own kernel thread into its creator's cgroups) waits
/// for no RCU grace period (forks and exits pay a little instead; Linux >= 6.1).
#[rustfmt::skip]
pub const PLAN: [MountSpec; 7] = [
    spec(c"/proc", c"proc", NOEXEC, None, Hosted::Mount),
    spec(c"/sys", c"sysfs", NOEXEC, None, Hosted::Skip),
    spec(c"/dev", c"devtmpfs", libc::MS_NOSUID, Some(c"mode=0755"), Hosted::Skip),
    spec(c"/dev/pts", c"devpts", NOEXEC, Some(c"mode=0620,ptmxmode=0600"), Hosted::Skip),
    spec(c"/sys/fs/cgroup", c"cgroup2", NOEXEC, Some(c"favordynmods"), Hosted::Skip),
    spec(c"/run", c"tmpfs", NOSUID_NODEV, Some(c"mode=0755"), Hosted::BindState(c"run")),
    spec(c"/tmp", c"tmpfs", NOSUID_NODEV, Some(c"mode=1777"), Hosted::BindState(c"tmp")),
];

/// Directories bay0 creates once its file systems are up: (path, mode).
pub const DIRS: [(&CStr, libc::mode_t); 1] = [(c"/run/anchor", 0o700)];

/// The mount-related system calls, behind a trait so the plan logic is tested without root.
pub trait MountOps {
    fn mkdir(&mut self, path: &CStr, mode: libc::mode_t) -> Result<()>;
    /// True when `path` is already a mount point (its device differs from its parent's).
    fn is_mount_point(&mut self, path: &CStr) -> Result<bool>;
    fn mount(
        &mut self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> Result<()>;
    fn umount(&mut self, target: &CStr, flags: libc::c_int) -> Result<()>;
}

/// The real system calls.
#[derive(Debug, Default)]
pub struct RealMounts;

impl MountOps for RealMounts {
    fn mkdir(&mut self, path: &CStr, mode: libc::mode_t) -> Result<()> {
        Ok(crate::sys::mkdir("mkdir", path, mode)?)
    }
    fn is_mount_point(&mut self, path: &CStr) -> Result<bool> {
        let mut parent = path.to_bytes().to_vec();
        while parent.last().is_some_and(|&b| b != b'/') {
            parent.pop();
        }
        let parent = CString::new(parent).map_err(|_| Error::Fatal("path with NUL"))?;
        let parent: &CStr = if parent.is_empty() { c"/" } else { &parent };
        Ok(crate::sys::stat_dev("stat", path)? != crate::sys::stat_dev("stat", parent)?)
    }
    fn mount(
        &mut self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> Result<()> {
        Ok(crate::sys::mount(
            "mount", source, target, fstype, flags, data,
        )?)
    }
    fn umount(&mut self, target: &CStr, flags: libc::c_int) -> Result<()> {
        Ok(crate::sys::umount("umount", target, flags)?)
    }
}

/// Where bay0 runs.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// The machine's init.
    Machine,
    /// PID 1 of private namespaces; the state directory (absolute).
    Hosted(&'a CStr),
}

impl MountSpec {
    /// Mounts this file system (its type names its source too).
    fn mount(&self, ops: &mut dyn MountOps) -> Result<()> {
        let fs = Some(self.fstype);
        ops.mount(fs, self.target, fs, self.flags, self.data)
    }
}

/// Which plan entries bay0 mounted itself (to unmount them at shutdown).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mounted([bool; PLAN.len()]);

impl Mounted {
    /// Targets bay0 mounted, in mount order.
    pub fn targets(&self) -> impl DoubleEndedIterator<Item = &'static CStr> + '_ {
        PLAN.iter()
            .zip(self.0.iter())
            .filter(|(_, &m)| m)
            .map(|(s, _)| s.target)
    }
}

fn join(dir: &CStr, sub: &CStr) -> Result<CString> {
    let mut v = dir.to_bytes().to_vec();
    v.push(b'/');
    v.extend_from_slice(sub.to_bytes());
    CString::new(v).map_err(|_| Error::Fatal("path with NUL"))
}

/// Mount the plan. Failures are reported to `report` and the rest goes on: a missing
/// /sys is bad, a dead PID 1 is worse.
pub fn mount_all(
    ops: &mut dyn MountOps,
    mode: Mode<'_>,
    report: &mut dyn FnMut(&CStr, Error),
) -> Mounted {
    let mut mounted = Mounted::default();
    if let Mode::Hosted(_) = mode {
        // Our mounts must not leak into the host's namespace (nor the host's into ours).
        let private = libc::MS_REC | libc::MS_PRIVATE;
        if let Err(e) = ops.mount(None, c"/", None, private, None) {
            report(c"/", e);
        }
    }
    for (spec, done) in PLAN.iter().zip(mounted.0.iter_mut()) {
        let result = match (mode, spec.hosted) {
            (Mode::Hosted(_), Hosted::Skip) => continue,
            (Mode::Hosted(state), Hosted::BindState(sub)) => join(state, sub).and_then(|src| {
                ops.mkdir(&src, 0o755)?;
                ops.mount(Some(&src), spec.target, None, libc::MS_BIND, None)
            }),
            (Mode::Hosted(_), Hosted::Mount) => spec.mount(ops),
            (Mode::Machine, _) => mount_fresh(ops, spec),
        };
        match result {
            Ok(()) => *done = true,
            Err(e) if e.errno() == Some(libc::EBUSY) => {}
            Err(e) => report(spec.target, e),
        }
    }
    for (dir, mode) in DIRS {
        if let Err(e) = ops.mkdir(dir, mode) {
            report(dir, e);
        }
    }
    mounted
}

/// Mount one entry on a machine unless something is mounted there already
/// (reported as EBUSY, which the caller treats as "not ours, fine").
fn mount_fresh(ops: &mut dyn MountOps, spec: &MountSpec) -> Result<()> {
    ops.mkdir(spec.target, 0o755)?;
    if ops.is_mount_point(spec.target)? {
        return Err(Error::Sys {
            op: "mount",
            errno: libc::EBUSY,
        });
    }
    spec.mount(ops)
}

/// Unmount what [`mount_all`] mounted, in reverse order. Busy file systems are detached.
pub fn unmount_all(ops: &mut dyn MountOps, mounted: Mounted, report: &mut dyn FnMut(&CStr, Error)) {
    for target in mounted.targets().rev() {
        if let Err(e) = unmount(ops, target) {
            report(target, e);
        }
    }
}

/// Unmounts `target`; a busy file system is detached.
pub fn unmount(ops: &mut dyn MountOps, target: &CStr) -> Result<()> {
    match ops.umount(target, 0) {
        Err(e) if e.errno() == Some(libc::EBUSY) => ops.umount(target, libc::MNT_DETACH),
        other => other,
    }
}

/// Let every /dev/kmsg line through: the kernel rate-limits userspace writes by default
/// (10 lines per 5 s), which would swallow bay0's shutdown log.
pub fn unlimit_kmsg() -> Result<()> {
    use std::os::fd::AsRawFd;
    let path = c"/proc/sys/kernel/printk_devkmsg";
    let fd = crate::sys::open("open printk_devkmsg", path, libc::O_WRONLY)?;
    crate::sys::write("write printk_devkmsg", fd.as_raw_fd(), b"on\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        calls: Vec<String>,
        already: Vec<&'static str>,
        fail: Vec<&'static str>,
    }

    impl MountOps for Fake {
        fn mkdir(&mut self, path: &CStr, _mode: libc::mode_t) -> Result<()> {
            self.calls.push(format!("mkdir {}", path.to_str().unwrap()));
            Ok(())
        }
        fn is_mount_point(&mut self, path: &CStr) -> Result<bool> {
            Ok(self.already.contains(&path.to_str().unwrap()))
        }
        fn mount(
            &mut self,
            source: Option<&CStr>,
            target: &CStr,
            fstype: Option<&CStr>,
            flags: libc::c_ulong,
            _data: Option<&CStr>,
        ) -> Result<()> {
            let t = target.to_str().unwrap();
            let s =
                |c: Option<&CStr>| c.map_or("-".to_string(), |c| c.to_str().unwrap().to_string());
            self.calls.push(format!(
                "mount {} {} {} bind={}",
                s(source),
                t,
                s(fstype),
                flags & libc::MS_BIND != 0
            ));
            if self.fail.contains(&t) {
                return Err(Error::Sys {
                    op: "mount",
                    errno: libc::ENODEV,
                });
            }
            Ok(())
        }
        fn umount(&mut self, target: &CStr, flags: libc::c_int) -> Result<()> {
            let t = target.to_str().unwrap();
            self.calls.push(format!(
                "umount {t} detach={}",
                flags & libc::MNT_DETACH != 0
            ));
            if t == "/dev" && flags == 0 {
                return Err(Error::Sys {
                    op: "umount",
                    errno: libc::EBUSY,
                });
            }
            Ok(())
        }
    }

    fn mounts(calls: &[String]) -> Vec<&str> {
        calls
            .iter()
            .filter(|c| c.starts_with("mount "))
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn machine_mounts_everything_in_order() {
        let mut fake = Fake::default();
        let mut problems = 0;
        let m = mount_all(&mut fake, Mode::Machine, &mut |_, _| problems += 1);
        assert_eq!(problems, 0);
        assert_eq!(
            mounts(&fake.calls),
            [
                "mount proc /proc proc bind=false",
                "mount sysfs /sys sysfs bind=false",
                "mount devtmpfs /dev devtmpfs bind=false",
                "mount devpts /dev/pts devpts bind=false",
                "mount cgroup2 /sys/fs/cgroup cgroup2 bind=false",
                "mount tmpfs /run tmpfs bind=false",
                "mount tmpfs /tmp tmpfs bind=false"
            ]
        );
        assert!(fake.calls.contains(&"mkdir /run/anchor".to_string()));
        assert_eq!(m.targets().count(), 7);
    }

    #[test]
    fn already_mounted_is_left_alone_and_not_unmounted() {
        let mut fake = Fake {
            already: vec!["/dev", "/proc"],
            ..Fake::default()
        };
        let m = mount_all(&mut fake, Mode::Machine, &mut |t, e| panic!("{t:?} {e}"));
        assert!(!mounts(&fake.calls)
            .iter()
            .any(|c| c.contains(" /dev ") || c.contains(" /proc ")));
        let left: Vec<_> = m.targets().map(|t| t.to_str().unwrap()).collect();
        assert_eq!(left, ["/sys", "/dev/pts", "/sys/fs/cgroup", "/run", "/tmp"]);
    }

    #[test]
    fn a_failed_mount_is_reported_and_the_rest_goes_on() {
        let mut fake = Fake {
            fail: vec!["/sys"],
            ..Fake::default()
        };
        let mut problems = Vec::new();
        let m = mount_all(&mut fake, Mode::Machine, &mut |t, e| {
            problems.push(format!("{t:?}: {e}"))
        });
        assert_eq!(problems, ["\"/sys\": mount: ENODEV (errno 19)"]);
        assert_eq!(m.targets().count(), 6);
    }

    #[test]
    fn hosted_makes_root_private_and_binds_state_dirs() {
        let mut fake = Fake::default();
        let m = mount_all(&mut fake, Mode::Hosted(c"/var/s"), &mut |t, e| {
            panic!("{t:?} {e}")
        });
        assert_eq!(
            mounts(&fake.calls),
            [
                "mount - / - bind=false",
                "mount proc /proc proc bind=false",
                "mount /var/s/run /run - bind=true",
                "mount /var/s/tmp /tmp - bind=true"
            ]
        );
        let left: Vec<_> = m.targets().map(|t| t.to_str().unwrap()).collect();
        assert_eq!(left, ["/proc", "/run", "/tmp"]);
    }

    #[test]
    fn unmount_goes_in_reverse_and_detaches_busy_ones() {
        let mut fake = Fake::default();
        let m = mount_all(&mut fake, Mode::Machine, &mut |_, _| {});
        fake.calls.clear();
        unmount_all(&mut fake, m, &mut |t, e| panic!("{t:?} {e}"));
        assert_eq!(
            fake.calls,
            [
                "umount /tmp detach=false",
                "umount /run detach=false",
                "umount /sys/fs/cgroup detach=false",
                "umount /dev/pts detach=false",
                "umount /dev detach=false",
                "umount /dev detach=true",
                "umount /sys detach=false",
                "umount /proc detach=false"
            ]
        );
    }
}
