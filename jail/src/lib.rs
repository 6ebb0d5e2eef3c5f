// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-jail: what stands between a room and the rest of the machine. bay0 starts it
//! as PID 1 of a fresh PID namespace, in one of two modes:
//!
//! - a microVM room's VMM (the default): it joins the room's cgroup, enters fresh
//!   mount, IPC, UTS and network namespaces, builds a minimal root (only what the VMM
//!   needs), pivots into it, drops every capability and its uid, sets rlimits and
//!   no_new_privs, and execs the VMM (docs/ARCHITECTURE.md, "The jail");
//! - a namespace room (`--backend namespaces`, module `room`): the room's image becomes
//!   the root of fresh namespaces of every kind, and the room's agent runs there as PID 1
//!   with no capability, under landlock and seccomp (docs/ARCHITECTURE.md, "The
//!   namespace backend").

pub mod args;
pub mod cgroup;
pub mod confine;
pub mod error;
pub mod image;
pub mod net;
pub mod privs;
pub mod relay;
pub mod room;
pub mod root;
pub mod seccomp;
pub mod sys;
pub mod volume;

use error::Result;

/// Sets the jail up as `cfg` says and execs its program; returns only on failure.
pub fn run(cfg: &args::Config) -> Result<core::convert::Infallible> {
    if cfg.backend == args::Backend::Namespaces {
        return room::run(cfg);
    }
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
    // The network stack starts here: in the room's cgroup, in the host's network namespace.
    let net = cfg
        .net
        .map(|_| net::start(cfg, cfg.uid))
        .transpose()?
        .flatten();
    sys::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNET)?;
    sys::sethostname(&cfg.name)?;
    root::build_and_enter(cfg)?;
    privs::limit(&cfg.rlimits)?;
    sys::umask_private();
    privs::drop_to(cfg.uid, cfg.gid)?;
    // The uid change cleared the death signal (when the jail is not bay0's child).
    sys::die_with_parent()?;
    // The VMM gets 0, 1, 2, its passt socket and its view of the host's addresses,
    // nothing else: no descriptor the jail was started with (bay0's, or a test
    // harness's) reaches it.
    sys::cloexec_from(3)?;
    match &net {
        Some(link) => {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&link.backend);
            let host = std::os::fd::AsRawFd::as_raw_fd(&link.host);
            sys::set_inheritable(fd)?;
            sys::set_inheritable(host)?;
            sys::exec(
                &cfg.program,
                &net::vmm_argv(&cfg.argv, fd, host, &link.deny)?,
            )
        }
        None => sys::exec(&cfg.program, &cfg.argv),
    }
}

/// One `anchor-jail: ...` line on stderr, in one write (bay0 logs it with the room name).
pub fn note(args: core::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut line = String::from("anchor-jail: ");
    let _ = std::fmt::Write::write_fmt(&mut line, args);
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}
