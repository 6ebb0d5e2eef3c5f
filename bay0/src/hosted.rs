// SPDX-License-Identifier: GPL-3.0-or-later
//! Hosted mode: bay0 as PID 1 of fresh PID, mount, IPC and UTS namespaces on an
//! ordinary Linux. The outer process creates the namespaces, forks the namespace's
//! init (which runs the normal PID 1 code) and stays outside as a relay: it forwards
//! SIGTERM/SIGINT/SIGHUP/SIGQUIT to the inner PID 1 and exits with its status. If the
//! relay is killed, the kernel kills the inner PID 1 (parent-death signal) and with it
//! the whole namespace.

use crate::error::{io, Error, Result};
use crate::supervisor::WaitStatus;
use crate::sys::{self, Fork, SigSet};
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

/// Which side of the fork we are on.
#[derive(Debug)]
pub enum Role {
    /// The relay outside; the value is the exit code to leave with.
    Relay(i32),
    /// The namespace's PID 1; the absolute state directory.
    Init(CString),
}

const RELAYED: [i32; 5] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGCHLD,
];

/// Create the state directory and the namespaces, and fork.
pub fn enter(state_dir: &OsStr) -> Result<Role> {
    std::fs::create_dir_all(state_dir).map_err(io("create STATE_DIR"))?;
    let abs = std::fs::canonicalize(state_dir).map_err(io("resolve STATE_DIR"))?;
    let abs = CString::new(abs.as_os_str().as_bytes())
        .map_err(|_| Error::Usage("STATE_DIR contains NUL"))?;
    // Blocked before the fork: the inner PID 1 inherits the mask and loses nothing.
    let set = SigSet::of(&RELAYED);
    sys::set_sigmask(&set)?;
    let flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    sys::unshare(flags).map_err(|e| match e.errno() {
        Some(libc::EPERM) => Error::Sys {
            op: "unshare namespaces (hosted mode needs root)",
            errno: libc::EPERM,
        },
        _ => e.into(),
    })?;
    match sys::fork()? {
        Fork::Child => {
            sys::set_parent_death_signal(libc::SIGKILL)?;
            Ok(Role::Init(abs))
        }
        Fork::Parent(pid) => Ok(Role::Relay(relay(pid, &set))),
    }
}

/// Forward stop signals to the inner PID 1 until it ends; its exit code.
fn relay(inner: i32, set: &SigSet) -> i32 {
    loop {
        match sys::sigwait(set) {
            Ok(libc::SIGCHLD) => match sys::reap_pid(inner) {
                Ok(Some(status)) => return WaitStatus(status).exit_code(),
                Ok(None) => {}
                Err(_) => return 1,
            },
            // SIGINT (a reboot) is passed on as it is, the other stop signals as SIGTERM.
            Ok(libc::SIGINT) => drop(sys::kill(inner, libc::SIGINT)),
            Ok(_) => drop(sys::kill(inner, libc::SIGTERM)),
            Err(_) => return 1,
        }
    }
}

/// Start a command (the hosted one, or a helper) as a child of PID 1; its pid. Its
/// stdout and stderr go to `out` when given, else to bay0's own; `op` names a failure.
pub fn spawn(op: &'static str, command: &[OsString], out: Option<OwnedFd>) -> Result<i32> {
    let (prog, args) = command.split_first().ok_or(Error::Usage("empty command"))?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    if let Some(fd) = out {
        cmd.stdout(fd.try_clone().map_err(io(op))?).stderr(fd);
    }
    sys::clean_signals_on_exec(&mut cmd);
    let child = cmd.spawn().map_err(io(op))?;
    i32::try_from(child.id()).map_err(|_| Error::Fatal("child pid out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn spawning_nothing_or_a_missing_program_is_an_error() {
        assert_eq!(
            spawn("spawn command", &[], None),
            Err(Error::Usage("empty command"))
        );
        let e = spawn("spawn command", &["/nonexistent/bay0-test".into()], None).unwrap_err();
        assert_eq!(
            e,
            Error::Sys {
                op: "spawn command",
                errno: libc::ENOENT
            }
        );
    }

    #[test]
    fn a_helpers_output_can_go_to_a_pipe() {
        let (out, w) = sys::pipe().unwrap();
        let argv = [
            "/bin/sh".into(),
            "-c".into(),
            "echo out; echo err >&2".into(),
        ];
        let pid = spawn("spawn command", &argv, Some(w)).unwrap();
        assert_eq!(
            sys::reap_pid_blocking(pid).map(|s| WaitStatus(s).exit_code()),
            Ok(0)
        );
        // The helper is gone and bay0 kept no copy of the write end: so reading comes to
        // EOF. The descriptor is non-blocking: a copy kept would give EAGAIN for ever.
        // Tests sharing a process (cargo test's threads) may briefly see EAGAIN too:
        // another test's child holds every descriptor between its clone and its exec.
        let mut got = Vec::new();
        let mut out = std::fs::File::from(out);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match out.read_to_end(&mut got) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < end, "no EOF: a copy was kept");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"out\nerr\n");
    }

    /// `bay0 --help` said only SIGTERM and SIGINT stop a hosted bay0, but the relay
    /// forwards SIGHUP and SIGQUIT too (as SIGTERM): the help names every one it forwards.
    #[test]
    fn the_help_names_every_signal_the_relay_forwards() {
        let name = |s| match s {
            libc::SIGTERM => "SIGTERM",
            libc::SIGINT => "SIGINT",
            libc::SIGHUP => "SIGHUP",
            libc::SIGQUIT => "SIGQUIT",
            _ => "an unnamed signal",
        };
        for s in RELAYED.into_iter().filter(|&s| s != libc::SIGCHLD) {
            assert!(
                crate::cli::HELP.contains(name(s)),
                "--help omits {}",
                name(s)
            );
        }
    }

    #[test]
    fn a_spawned_command_gets_a_pid() {
        let pid = spawn("spawn command", &["/bin/true".into()], None).unwrap();
        assert!(pid > 1);
        assert_eq!(
            sys::reap_pid_blocking(pid).map(|s| WaitStatus(s).exit_code()),
            Ok(0)
        );
    }
}
