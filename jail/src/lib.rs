// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-jail: what stands between a room's VMM and the rest of the machine. bay0 starts
//! it as PID 1 of a fresh PID namespace; it joins the room's cgroup, enters fresh mount,
//! IPC, UTS and network namespaces, builds a minimal root (only what the VMM needs),
//! pivots into it, drops every capability and its uid, sets rlimits and no_new_privs,
//! and execs the VMM. See docs/ARCHITECTURE.md ("The jail").

pub mod args;
pub mod cgroup;
pub mod error;
pub mod privs;
pub mod root;
pub mod sys;

use error::Result;

/// Sets the jail up as `cfg` says and execs its program; returns only on failure.
pub fn run(cfg: &args::Config) -> Result<core::convert::Infallible> {
    let cg = cgroup::Hierarchy::detect()?;
    cg.enter(&cfg.name, &cfg.limits)?;
    note(format_args!(
        "room {}: cgroup {} (memory {} MiB, pids {}, cpu weight {})",
        cfg.name,
        cg.describe(),
        cfg.limits.memory_bytes / (1024 * 1024),
        cfg.limits.pids,
        cfg.limits.cpu_weight
    ));
    sys::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNET)?;
    sys::sethostname(&cfg.name)?;
    root::build_and_enter(cfg)?;
    privs::limit(&cfg.rlimits)?;
    sys::umask_private();
    privs::drop_to(cfg.uid, cfg.gid)?;
    sys::exec(&cfg.program, &cfg.argv)
}

/// One `anchor-jail: ...` line on stderr, in one write (bay0 logs it with the room name).
pub fn note(args: core::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut line = String::from("anchor-jail: ");
    let _ = std::fmt::Write::write_fmt(&mut line, args);
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}
