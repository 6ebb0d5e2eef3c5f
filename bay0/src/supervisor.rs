// SPDX-License-Identifier: GPL-3.0-or-later
//! What PID 1 decides, without the system calls: reap every ended child (looping until
//! none is left, since signals coalesce), and the shutdown sequence (SIGTERM to all,
//! a grace period, SIGKILL to stragglers, then done). The event loop feeds it inputs
//! and provides the effects through [`Host`].

use crate::error::Result;
use crate::sys::Reaped;
use core::fmt;

/// How the machine goes down once every process is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    PowerOff,
    Reboot,
}

/// Where the supervisor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// SIGTERM sent; waiting for processes to end or the grace period to pass.
    Terminating(Stop),
    /// SIGKILL sent; waiting for processes to end (bounded).
    Killing(Stop),
    /// Every process is gone (or would not die): finish the shutdown.
    Done(Stop),
}

/// Something the event loop saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Signal(i32),
    /// KEY_POWER pressed on an input device (the ACPI power button).
    PowerKey,
    /// The shutdown timer fired.
    StopTimer,
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Input::Signal(libc::SIGTERM) => f.write_str("SIGTERM"),
            Input::Signal(libc::SIGINT) => f.write_str("SIGINT"),
            Input::Signal(libc::SIGPWR) => f.write_str("SIGPWR"),
            Input::Signal(libc::SIGUSR1) => f.write_str("SIGUSR1 (halt)"),
            Input::Signal(libc::SIGUSR2) => f.write_str("SIGUSR2 (poweroff)"),
            Input::Signal(libc::SIGCHLD) => f.write_str("SIGCHLD"),
            Input::Signal(n) => write!(f, "signal {n}"),
            Input::PowerKey => f.write_str("power button"),
            Input::StopTimer => f.write_str("shutdown timer"),
        }
    }
}

/// The effects the supervisor needs.
pub trait Host {
    /// waitpid(-1, WNOHANG) once.
    fn reap_one(&mut self) -> Result<Reaped>;
    /// Signal every process but ourselves (kill(-1, sig)).
    fn signal_all(&mut self, sig: i32) -> Result<()>;
    /// Fire [`Input::StopTimer`] once after `ms`.
    fn arm_stop_timer(&mut self, ms: u64) -> Result<()>;
    /// A child ended (for logging).
    fn child_ended(&mut self, pid: i32, status: i32);
}

/// How long processes get after SIGKILL before bay0 goes on without them.
pub const KILL_WAIT_MS: u64 = 3000;

/// A wait status, printable ("exited with status 3", "killed by signal 9").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStatus(pub i32);

impl fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if libc::WIFEXITED(s) {
            write!(f, "exited with status {}", libc::WEXITSTATUS(s))
        } else if libc::WIFSIGNALED(s) {
            write!(f, "killed by signal {}", libc::WTERMSIG(s))
        } else {
            write!(f, "ended with wait status {s:#x}")
        }
    }
}

impl WaitStatus {
    /// The shell's view of the status: the exit code, or 128 + signal.
    pub fn exit_code(self) -> i32 {
        if libc::WIFEXITED(self.0) {
            libc::WEXITSTATUS(self.0)
        } else if libc::WIFSIGNALED(self.0) {
            128 + libc::WTERMSIG(self.0)
        } else {
            1
        }
    }
}

/// The PID 1 state machine.
#[derive(Debug)]
pub struct Supervisor {
    phase: Phase,
    grace_ms: u64,
    reaped: u64,
}

impl Supervisor {
    /// A running supervisor giving processes `grace_s` seconds between SIGTERM and SIGKILL.
    pub fn new(grace_s: u32) -> Supervisor {
        Supervisor {
            phase: Phase::Running,
            grace_ms: u64::from(grace_s) * 1000,
            reaped: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// How many processes were reaped so far.
    pub fn reaped(&self) -> u64 {
        self.reaped
    }

    /// Handle one input; failures of the effects are logged, never fatal.
    pub fn handle(&mut self, input: Input, host: &mut dyn Host) -> Phase {
        match input {
            Input::Signal(libc::SIGCHLD) => self.reap(host),
            // SIGUSR1 and SIGUSR2: busybox's halt and poweroff (bay0 has no halt).
            Input::Signal(libc::SIGTERM | libc::SIGPWR | libc::SIGUSR1 | libc::SIGUSR2)
            | Input::PowerKey => self.begin_stop(Stop::PowerOff, input, host),
            Input::Signal(libc::SIGINT) => self.begin_stop(Stop::Reboot, input, host),
            Input::Signal(sig) => crate::log_debug!("ignoring signal {sig}"),
            Input::StopTimer => self.stop_timer(host),
        }
        self.phase
    }

    /// Reap until no ended child is left; finish a shutdown when no process remains.
    fn reap(&mut self, host: &mut dyn Host) {
        loop {
            match host.reap_one() {
                Ok(Reaped::Child { pid, status }) => {
                    self.reaped = self.reaped.saturating_add(1);
                    host.child_ended(pid, status);
                }
                Ok(Reaped::Running) => return,
                Ok(Reaped::NoChildren) => {
                    if let Phase::Terminating(stop) | Phase::Killing(stop) = self.phase {
                        crate::log_info!(
                            "shutdown: all processes have ended ({} reaped since start)",
                            self.reaped
                        );
                        self.phase = Phase::Done(stop);
                    }
                    return;
                }
                Err(e) => {
                    crate::log_error!("reaping: {e}");
                    return;
                }
            }
        }
    }

    fn begin_stop(&mut self, stop: Stop, why: Input, host: &mut dyn Host) {
        if self.phase != Phase::Running {
            crate::log_info!("shutdown already in progress ({why} ignored)");
            return;
        }
        let what = if stop == Stop::PowerOff {
            "power off"
        } else {
            "reboot"
        };
        crate::log_notice!("shutdown ({what}) on {why}: sending SIGTERM to all processes");
        self.phase = Phase::Terminating(stop);
        self.signal_all(libc::SIGTERM, host);
        // Stopped processes only act on SIGTERM once continued.
        self.signal_all(libc::SIGCONT, host);
        if let Err(e) = host.arm_stop_timer(self.grace_ms.max(1)) {
            crate::log_error!("shutdown timer: {e}; not waiting for processes");
            self.phase = Phase::Done(stop);
            return;
        }
        self.reap(host);
    }

    fn stop_timer(&mut self, host: &mut dyn Host) {
        match self.phase {
            Phase::Terminating(stop) => {
                crate::log_warn!(
                    "shutdown: grace period over, sending SIGKILL to the remaining processes"
                );
                self.phase = Phase::Killing(stop);
                self.signal_all(libc::SIGKILL, host);
                if host.arm_stop_timer(KILL_WAIT_MS).is_err() {
                    self.phase = Phase::Done(stop);
                    return;
                }
                self.reap(host);
            }
            Phase::Killing(stop) => {
                crate::log_error!("shutdown: processes survived SIGKILL; going on without them");
                self.phase = Phase::Done(stop);
            }
            Phase::Running | Phase::Done(_) => {}
        }
    }

    fn signal_all(&mut self, sig: i32, host: &mut dyn Host) {
        match host.signal_all(sig) {
            Err(e) if e.errno() != Some(libc::ESRCH) => {
                crate::log_error!("signal {sig} to all: {e}")
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A fake process table: `ended` are waiting to be reaped; `alive` still run and
    /// end when signalled with a signal in `dies_on`.
    struct Fake {
        ended: Vec<i32>,
        alive: Vec<(i32, Vec<i32>)>,
        calls: Vec<String>,
        timer_fails: bool,
    }

    impl Fake {
        fn new(ended: Vec<i32>, alive: Vec<(i32, Vec<i32>)>) -> Fake {
            Fake {
                ended,
                alive,
                calls: vec![],
                timer_fails: false,
            }
        }
    }

    impl Host for Fake {
        fn reap_one(&mut self) -> Result<Reaped> {
            if let Some(pid) = self.ended.pop() {
                return Ok(Reaped::Child { pid, status: 0 });
            }
            Ok(if self.alive.is_empty() {
                Reaped::NoChildren
            } else {
                Reaped::Running
            })
        }
        fn signal_all(&mut self, sig: i32) -> Result<()> {
            self.calls.push(format!("kill {sig}"));
            if self.alive.is_empty() && self.ended.is_empty() {
                return Err(Error::Sys {
                    op: "kill",
                    errno: libc::ESRCH,
                });
            }
            let (die, live): (Vec<_>, Vec<_>) =
                self.alive.drain(..).partition(|(_, on)| on.contains(&sig));
            self.ended.extend(die.into_iter().map(|(p, _)| p));
            self.alive = live;
            Ok(())
        }
        fn arm_stop_timer(&mut self, ms: u64) -> Result<()> {
            self.calls.push(format!("timer {ms}"));
            if self.timer_fails {
                return Err(Error::Sys {
                    op: "timerfd_settime",
                    errno: libc::EINVAL,
                });
            }
            Ok(())
        }
        fn child_ended(&mut self, pid: i32, _status: i32) {
            self.calls.push(format!("reaped {pid}"));
        }
    }

    #[test]
    fn one_sigchld_reaps_every_ended_child() {
        let mut fake = Fake::new((2..1002).collect(), vec![(5000, vec![libc::SIGTERM])]);
        let mut sup = Supervisor::new(5);
        assert_eq!(
            sup.handle(Input::Signal(libc::SIGCHLD), &mut fake),
            Phase::Running
        );
        assert_eq!(sup.reaped(), 1000);
        assert!(fake.ended.is_empty());
    }

    #[test]
    fn sigterm_with_cooperative_children_finishes_without_sigkill() {
        let mut fake = Fake::new(
            vec![],
            vec![(10, vec![libc::SIGTERM]), (11, vec![libc::SIGTERM])],
        );
        let mut sup = Supervisor::new(5);
        assert_eq!(
            sup.handle(Input::Signal(libc::SIGTERM), &mut fake),
            Phase::Done(Stop::PowerOff)
        );
        assert_eq!(
            fake.calls,
            ["kill 15", "kill 18", "timer 5000", "reaped 11", "reaped 10"]
        );
    }

    /// Regression (`make run`): busybox's poweroff and halt signal PID 1 with SIGUSR2 and
    /// SIGUSR1 (busybox init's), which bay0 ignored: the operator's `poweroff` did nothing.
    #[test]
    fn busyboxs_poweroff_and_halt_signals_power_off() {
        for sig in [libc::SIGUSR2, libc::SIGUSR1] {
            let mut fake = Fake::new(vec![], vec![(10, vec![libc::SIGTERM])]);
            let mut sup = Supervisor::new(5);
            assert_eq!(
                sup.handle(Input::Signal(sig), &mut fake),
                Phase::Done(Stop::PowerOff)
            );
            assert!(Input::Signal(sig).to_string().starts_with("SIGUSR"));
        }
    }

    #[test]
    fn a_stubborn_child_gets_sigkill_after_the_grace_period() {
        let mut fake = Fake::new(vec![], vec![(10, vec![libc::SIGKILL])]);
        let mut sup = Supervisor::new(2);
        assert_eq!(
            sup.handle(Input::Signal(libc::SIGINT), &mut fake),
            Phase::Terminating(Stop::Reboot)
        );
        assert_eq!(
            sup.handle(Input::Signal(libc::SIGTERM), &mut fake),
            Phase::Terminating(Stop::Reboot)
        );
        assert_eq!(
            sup.handle(Input::StopTimer, &mut fake),
            Phase::Done(Stop::Reboot)
        );
        assert_eq!(
            fake.calls,
            [
                "kill 15",
                "kill 18",
                "timer 2000",
                "kill 9",
                "timer 3000",
                "reaped 10"
            ]
        );
    }

    #[test]
    fn processes_that_survive_sigkill_do_not_hang_the_shutdown() {
        let mut fake = Fake::new(vec![], vec![(10, vec![])]);
        let mut sup = Supervisor::new(0);
        sup.handle(Input::PowerKey, &mut fake);
        assert_eq!(
            sup.handle(Input::StopTimer, &mut fake),
            Phase::Killing(Stop::PowerOff)
        );
        assert_eq!(
            sup.handle(Input::StopTimer, &mut fake),
            Phase::Done(Stop::PowerOff)
        );
        assert_eq!(fake.calls[2], "timer 1");
    }

    #[test]
    fn shutdown_without_children_is_immediate() {
        let mut fake = Fake::new(vec![], vec![]);
        let mut sup = Supervisor::new(5);
        assert_eq!(
            sup.handle(Input::Signal(libc::SIGPWR), &mut fake),
            Phase::Done(Stop::PowerOff)
        );
    }

    #[test]
    fn a_broken_timer_still_shuts_down() {
        let mut fake = Fake::new(vec![], vec![(10, vec![])]);
        fake.timer_fails = true;
        let mut sup = Supervisor::new(5);
        assert_eq!(
            sup.handle(Input::Signal(libc::SIGTERM), &mut fake),
            Phase::Done(Stop::PowerOff)
        );
    }

    #[test]
    fn other_signals_and_early_timers_change_nothing() {
        let mut fake = Fake::new(vec![], vec![(10, vec![])]);
        let mut sup = Supervisor::new(5);
        assert_eq!(
            sup.handle(Input::Signal(libc::SIGHUP), &mut fake),
            Phase::Running
        );
        assert_eq!(sup.handle(Input::StopTimer, &mut fake), Phase::Running);
        assert!(fake.calls.is_empty());
    }

    #[test]
    fn wait_status_reads_like_a_shell() {
        assert_eq!(WaitStatus(3 << 8).to_string(), "exited with status 3");
        assert_eq!(WaitStatus(3 << 8).exit_code(), 3);
        assert_eq!(WaitStatus(9).to_string(), "killed by signal 9");
        assert_eq!(WaitStatus(9).exit_code(), 137);
        assert_eq!(Input::Signal(libc::SIGTERM).to_string(), "SIGTERM");
        assert_eq!(Input::PowerKey.to_string(), "power button");
    }
}
