// SPDX-License-Identifier: GPL-3.0-or-later
//! Giving up power: resource limits, then the uid, every capability (effective,
//! permitted, inheritable, ambient and the bounding set) and the right to regain any
//! (no_new_privs).

use crate::error::{Error, Result};
use crate::sys;

/// Resource limits of the jailed program (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimits {
    /// Open files.
    pub nofile: u64,
    /// Processes and threads of the jail's uid.
    pub nproc: u64,
    /// Largest file it may create or extend (bytes); writes inside existing files (a
    /// disk image) are not limited by it.
    pub fsize: u64,
    /// Lockable memory (bytes; counted in the room's memory cgroup as well).
    pub memlock: u64,
}

impl Default for Rlimits {
    fn default() -> Self {
        Rlimits {
            nofile: 256,
            nproc: 64,
            fsize: 0,
            memlock: 0,
        }
    }
}

/// The core limit of every jailed program: one byte. A limit of 0 stops only core files;
/// a host core_pattern that pipes to a program (`|/usr/lib/systemd/systemd-coredump ...`)
/// ignores it, and the kernel runs that program as host root, in the host's namespaces,
/// with the crashed process's memory (a room's, a VMM's guest memory) on its standard
/// input. A limit of exactly 1 stops both: the kernel keeps that value to catch a crashing
/// core helper, and takes no core dump of any kind (core(5); fs/coredump.c). A namespace
/// room cannot change it (its seccomp filter refuses RLIMIT_CORE to setrlimit and
/// prlimit64); lowering it to 0 would bring the pipe back.
pub const CORE_LIMIT: u64 = 1;

/// Applies `rl`, plus no core dumps ([`CORE_LIMIT`]) and no real-time priority.
pub fn limit(rl: &Rlimits) -> Result<()> {
    sys::setrlimit(libc::RLIMIT_NOFILE, rl.nofile)?;
    sys::setrlimit(libc::RLIMIT_NPROC, rl.nproc)?;
    sys::setrlimit(libc::RLIMIT_FSIZE, rl.fsize)?;
    sys::setrlimit(libc::RLIMIT_CORE, CORE_LIMIT)?;
    sys::setrlimit(libc::RLIMIT_RTPRIO, 0)?;
    sys::setrlimit(libc::RLIMIT_MEMLOCK, rl.memlock)
}

/// Becomes `uid`:`gid` with no supplementary groups and no capabilities, for good.
pub fn drop_to(uid: u32, gid: u32) -> Result<()> {
    // The bounding set and ambient set first: dropping from the bounding set needs
    // CAP_SETPCAP, which the uid change below takes away.
    for cap in 0..=sys::last_cap() {
        sys::capbset_drop(cap)?;
    }
    sys::ambient_clear()?;
    sys::setgroups_none()?;
    sys::setresgid(gid)?;
    // Without SECBIT_KEEP_CAPS, leaving uid 0 clears the permitted and effective sets.
    sys::setresuid(uid)?;
    sys::no_new_privs()?;
    if sys::capabilities_held()? {
        return Err(Error::Unsupported(
            "capabilities survived the uid change; refusing to run the program",
        ));
    }
    Ok(())
}
