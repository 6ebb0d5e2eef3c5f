// SPDX-License-Identifier: GPL-3.0-or-later
//! Turning the jail, root on the host, into a namespace room's powerless PID 1: a user
//! namespace in which only uid and gid 0 exist (mapped to the room's unprivileged host
//! uid and gid), then no capability at all, in any namespace, for good; then landlock.
//! (The seccomp filters come last, just before exec: see `seccomp`.)

use std::path::Path;

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use crate::error::{Error, Result};
use crate::sys;

/// securebits: uid 0 gets no capability from exec or setuid, ambient capabilities cannot
/// be raised, and none of that can be undone (the *_LOCKED bits).
const SECUREBITS: libc::c_ulong = (1 << 0) // SECBIT_NOROOT
    | (1 << 1) // SECBIT_NOROOT_LOCKED
    | (1 << 2) // SECBIT_NO_SETUID_FIXUP
    | (1 << 3) // SECBIT_NO_SETUID_FIXUP_LOCKED
    | (1 << 5) // SECBIT_KEEP_CAPS_LOCKED (KEEP_CAPS stays off)
    | (1 << 6) // SECBIT_NO_CAP_AMBIENT_RAISE
    | (1 << 7); // SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED

/// The jail's privileged helper, forked at the very start of a namespace room (still
/// root, in the host's namespaces, in bay0's cgroup) so that its two jobs cost the jail
/// no wait of its own:
///
/// 1. it moves the jail into the room's cgroup while the jail builds the room's
///    namespaces and mounts: a move may wait several milliseconds in the kernel for an
///    RCU grace period (see [`crate::cgroup::join`]), time the jail now spends working.
///    The jail checks the move is done ([`Helper::joined`]) before anything that must
///    happen inside the cgroup: its cgroup namespace, and the exec of the room's program;
/// 2. once the jail has created its user namespace, it writes that namespace's maps: a
///    process cannot map a host id other than its own from inside the namespace it just
///    created, and the helper is still root on the host. So this works even where
///    unprivileged user namespaces are switched off.
///
/// The jail waits for the helper to end before it execs anything; no room code ever
/// runs beside it.
#[derive(Debug)]
pub struct Helper {
    pid: i32,
    sock: std::os::unix::net::UnixStream,
    uid: u32,
    gid: u32,
}

impl Helper {
    /// Forks the helper; `procs` are the room's `cgroup.procs` files, `uid`/`gid` the host
    /// ids the room's uid and gid 0 become.
    pub fn start(procs: Vec<std::path::PathBuf>, uid: u32, gid: u32) -> Result<Helper> {
        let me = sys::getpid();
        // Our /proc directory as the /proc seen now names it: the helper opens the id map
        // files through it once the user namespace exists (by then the jail has left this
        // mount tree; the helper has not).
        let proc_dir = sys::open_path(Path::new("/proc/self"), libc::O_PATH | libc::O_DIRECTORY)?;
        let (ours, mut theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| Error::Sys {
                op: "socketpair for the jail's helper",
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            })?;
        let pid = sys::fork()?;
        if pid == 0 {
            drop(ours);
            let code = match helper(&mut theirs, &proc_dir, &procs, me, uid, gid) {
                Ok(()) => 0,
                // The jail gave up and says why itself (its line stays the last one).
                Err(None) => 1,
                Err(Some(e)) => {
                    crate::note(format_args!("the jail's helper: {e}"));
                    1
                }
            };
            sys::exit_now(code);
        }
        // The room never holds a handle on the host's /proc.
        drop((theirs, proc_dir));
        Ok(Helper {
            pid,
            sock: ours,
            uid,
            gid,
        })
    }

    /// Waits until the helper has moved the jail into the room's cgroup.
    pub fn joined(&mut self) -> Result<()> {
        let mut byte = [0u8; 1];
        match std::io::Read::read_exact(&mut self.sock, &mut byte) {
            Ok(()) if byte == *b"m" => Ok(()),
            _ => Err(Error::Unsupported(
                "the jail's helper could not move the jail into the room's cgroup",
            )),
        }
    }
}

/// The helper's side (see [`Helper`]); `Err(None)`: the jail gave up (it reports why).
fn helper(
    sock: &mut std::os::unix::net::UnixStream,
    proc_dir: &std::os::fd::OwnedFd,
    procs: &[std::path::PathBuf],
    jail: i32,
    uid: u32,
    gid: u32,
) -> core::result::Result<(), Option<Error>> {
    use std::io::{Read, Write};
    sys::die_with_parent()?;
    let joined = crate::cgroup::join(procs, &jail.to_string());
    let told = sock.write_all(if joined.is_ok() { b"m" } else { b"x" });
    joined?;
    let mut byte = [0u8; 1];
    let read = sock.read_exact(&mut byte);
    if told.is_err() || read.is_err() || byte != *b"u" {
        return Err(None);
    }
    for (file, text) in [
        (c"setgroups", "deny".to_string()),
        (c"uid_map", format!("0 {uid} 1\n")),
        (c"gid_map", format!("0 {gid} 1\n")),
    ] {
        let fd = sys::open_at(proc_dir, file, libc::O_WRONLY)?;
        std::fs::File::from(fd)
            .write_all(text.as_bytes())
            .map_err(|e| Error::Path {
                op: "write",
                path: format!("/proc/{jail}/{}", file.to_string_lossy()),
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            })?;
    }
    Ok(())
}

/// Enters a new user namespace whose uid 0 and gid 0 are the host ids `helper` was given
/// (nothing else is mapped, setgroups is denied; the helper writes the maps) and becomes
/// its uid/gid 0. Ends the helper.
pub fn become_room_root(helper: Helper) -> Result<()> {
    sys::setgroups_none()?;
    let Helper {
        pid,
        sock: mut ours,
        uid,
        gid,
    } = helper;
    // The namespace is owned by the room's host uid, not by host root: the kernel counts
    // what a namespace's processes hold against per-user limits at every level up to the
    // host's, charging its owner there (inotify instances and watches, queued signals and
    // POSIX timers, locked shared memory). Owned by root, one room could use up host root's
    // share, which bay0 and every other room draw on. Only the effective ids change (the
    // jail needs no capability of the host's from here: the new namespace gives it all of
    // its own, and the helper, still root, writes the maps).
    sys::set_effective_ids(uid, gid)?;
    let created = sys::unshare(libc::CLONE_NEWUSER);
    // Tell the helper either way; it maps only after a "u".
    let told = std::io::Write::write_all(&mut ours, if created.is_ok() { b"u" } else { b"x" });
    drop(ours);
    let code = sys::wait_exit_code(pid);
    created?;
    if told.is_err() || code != 0 {
        return Err(Error::Unsupported(
            "the helper could not write the room's user namespace maps",
        ));
    }
    sys::setresgid(0)?;
    sys::setresuid(0)
}

/// Drops every capability of the room's user namespace, locks securebits so that uid 0
/// never regains any, and sets no_new_privs; checks that nothing survived.
pub fn give_up_capabilities() -> Result<()> {
    sys::set_securebits(SECUREBITS)?;
    for cap in 0..=sys::last_cap() {
        sys::capbset_drop(cap)?;
    }
    sys::ambient_clear()?;
    sys::capset_none()?;
    sys::no_new_privs()?;
    if sys::capabilities_held()? {
        return Err(Error::Unsupported(
            "capabilities survived in the room's user namespace; refusing to start it",
        ));
    }
    Ok(())
}

/// The landlock ABI whose rights were tested with this code; newer kernels get the same
/// rules, older ones as much of them as they know (best effort).
const TESTED_ABI: ABI = ABI::V7;

/// Writable directories of the room (all on its tmpfs).
const WRITABLE: [&str; 6] = ["/tmp", "/run", "/var", "/home", "/root", "/dev/shm"];
/// Device files the room reads, writes and controls.
const DEVICES: [&str; 7] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/pts",
];

/// The room's console (bay0's pty), a device the room reads, writes and controls too.
const CONSOLE: &str = "/dev/console";

fn ll_err(e: landlock::RulesetError) -> Error {
    Error::Landlock(e.to_string())
}

/// What `landlock()` could enforce, for the jail's log line.
#[derive(Debug)]
pub struct LandlockOutcome {
    status: RulesetStatus,
    kernel: LandlockStatus,
}

impl core::fmt::Display for LandlockOutcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self.status {
            RulesetStatus::FullyEnforced => "applied",
            RulesetStatus::PartiallyEnforced => "applied in part",
            RulesetStatus::NotEnforced => "not applied",
        };
        match self.kernel {
            LandlockStatus::Available { effective_abi, .. } => {
                write!(f, "{what} (kernel ABI {})", effective_abi as i32)
            }
            LandlockStatus::NotEnabled => write!(f, "{what}: landlock is not enabled at boot"),
            LandlockStatus::NotImplemented => write!(f, "{what}: the kernel has no landlock"),
        }
    }
}

/// Restricts the room's file access (where the kernel has landlock): read and execute
/// everywhere; write only on its tmpfs directories and a few devices; no device nodes
/// anywhere; with ABI 6, no abstract socket or signal beyond the room. /proc is
/// read-only. With `persist` (a vault volume is mounted), /persist is writable too.
/// Call after entering the room's root and setting no_new_privs.
pub fn landlock(persist: bool) -> Result<LandlockOutcome> {
    let abi = TESTED_ABI;
    let all = AccessFs::from_all(abi);
    let no_nodes = all & !(AccessFs::MakeChar | AccessFs::MakeBlock);
    let device: BitFlags<AccessFs> =
        (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev) & all;
    let rule = |path: &str, access: BitFlags<AccessFs>| -> Result<PathBeneath<PathFd>> {
        let fd =
            PathFd::new(Path::new(path)).map_err(|e| Error::Landlock(format!("{path}: {e}")))?;
        Ok(PathBeneath::new(fd, access))
    };
    let mut rules = vec![
        rule("/", AccessFs::from_read(abi))?,
        rule("/proc", AccessFs::ReadFile | AccessFs::ReadDir)?,
    ];
    for dir in WRITABLE {
        rules.push(rule(dir, no_nodes)?);
    }
    if persist {
        rules.push(rule("/persist", no_nodes)?);
    }
    for dev in DEVICES {
        let access = if dev == "/dev/pts" {
            device | AccessFs::ReadDir
        } else {
            device
        };
        rules.push(rule(dev, access)?);
    }
    // The room's console, where the jail bound it (crate::room: stdin is a terminal).
    if Path::new(CONSOLE).exists() {
        rules.push(rule(CONSOLE, device)?);
    }
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(ll_err)?
        .scope(Scope::from_all(abi))
        .map_err(ll_err)?
        .create()
        .map_err(ll_err)?
        .add_rules(rules.into_iter().map(Ok::<_, landlock::RulesetError>))
        .map_err(ll_err)?
        .restrict_self()
        .map_err(ll_err)?;
    Ok(LandlockOutcome {
        status: status.ruleset,
        kernel: status.landlock,
    })
}
