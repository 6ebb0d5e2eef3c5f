// SPDX-License-Identifier: GPL-3.0-or-later
//! The single-threaded epoll loop: a signalfd (SIGCHLD, SIGTERM, SIGINT, SIGPWR), a
//! timerfd ticking the watchdog, a timerfd for the shutdown grace period, and the
//! power-button input devices. Sockets join here later. Decisions are the
//! [`Supervisor`]'s; this module only moves events and performs effects.

use crate::config::RoomName;
use crate::error::Result;
use crate::supervisor::{Host, Input, Phase, Stop, Supervisor, WaitStatus};
use crate::sys::{self, Reaped, SigSet};
use crate::watchdog::Watchdog;
use std::os::fd::{AsRawFd, OwnedFd};

/// The signals PID 1 handles; all are blocked and read from the signalfd.
pub const SIGNALS: [i32; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR];

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_TICK: u64 = 2;
const TOKEN_STOP: u64 = 3;
const TOKEN_INPUT: u64 = 100;

/// The loop's descriptors and what it drives.
#[derive(Debug)]
pub struct EventLoop {
    epoll: OwnedFd,
    signals: OwnedFd,
    tick: OwnedFd,
    stop_timer: OwnedFd,
    inputs: Vec<Option<OwnedFd>>,
    watchdog: Option<Watchdog>,
    supervised: Vec<(i32, Option<RoomName>)>,
    /// The vault unlock helper, and the boot room that waits for it.
    vault: Option<(i32, Option<RoomName>)>,
    stall_after: Option<u32>,
}

/// The process table as PID 1 sees it (a trait so the loop is tested without
/// signalling real processes).
pub trait Processes {
    /// waitpid(-1, WNOHANG) once.
    fn reap_one(&mut self) -> Result<Reaped>;
    /// Signal every process but ourselves.
    fn signal_all(&mut self, sig: i32) -> Result<()>;
}

/// The real process table: waitpid(2) and kill(-1, sig).
#[derive(Debug, Default)]
pub struct RealProcesses;

impl Processes for RealProcesses {
    fn reap_one(&mut self) -> Result<Reaped> {
        sys::reap_one()
    }
    fn signal_all(&mut self, sig: i32) -> Result<()> {
        sys::kill(-1, sig)
    }
}

/// The supervisor's effects: processes, plus the loop's stop timer and child names.
struct LoopHost<'a> {
    procs: &'a mut dyn Processes,
    stop_timer: &'a OwnedFd,
    supervised: &'a mut Vec<(i32, Option<RoomName>)>,
    vault: &'a mut Option<(i32, Option<RoomName>)>,
}

impl Host for LoopHost<'_> {
    fn reap_one(&mut self) -> Result<Reaped> {
        self.procs.reap_one()
    }
    fn signal_all(&mut self, sig: i32) -> Result<()> {
        self.procs.signal_all(sig)
    }
    fn arm_stop_timer(&mut self, ms: u64) -> Result<()> {
        sys::timer_set(self.stop_timer, ms, 0)
    }
    fn child_ended(&mut self, pid: i32, status: i32) {
        if let Some((_, room)) = self.vault.take_if(|(p, _)| *p == pid) {
            crate::vault::unlock_ended(WaitStatus(status).exit_code());
            if let Some(pid) = room.and_then(crate::room::open_logged) {
                self.supervised.push((pid, room));
            }
            return;
        }
        if let Some(i) = self.supervised.iter().position(|&(p, _)| p == pid) {
            let (_, room) = self.supervised.swap_remove(i);
            let status = WaitStatus(status);
            match room {
                Some(room) => crate::log_notice!(
                    "room {} (pid {pid}) {status}: {}",
                    room.as_str(),
                    crate::room::describe_exit(status.exit_code())
                ),
                None => crate::log_info!("child {pid} {status}"),
            }
        } else {
            crate::log_debug!("reaped {pid}: {}", WaitStatus(status));
        }
    }
}

impl EventLoop {
    /// Block the handled signals and create the loop's descriptors. Call this first:
    /// from here on no handled signal is lost.
    pub fn new() -> Result<EventLoop> {
        let set = SigSet::of(&SIGNALS);
        sys::set_sigmask(&set)?;
        let lp = EventLoop {
            epoll: sys::epoll()?,
            signals: sys::signalfd(&set)?,
            tick: sys::timerfd()?,
            stop_timer: sys::timerfd()?,
            inputs: Vec::new(),
            watchdog: None,
            supervised: Vec::new(),
            vault: None,
            stall_after: None,
        };
        sys::epoll_add(&lp.epoll, lp.signals.as_raw_fd(), TOKEN_SIGNAL)?;
        sys::epoll_add(&lp.epoll, lp.tick.as_raw_fd(), TOKEN_TICK)?;
        sys::epoll_add(&lp.epoll, lp.stop_timer.as_raw_fd(), TOKEN_STOP)?;
        Ok(lp)
    }

    /// Tickle `watchdog` from now on, every `interval_s` seconds.
    pub fn set_watchdog(&mut self, watchdog: Watchdog) -> Result<()> {
        let ms = u64::from(watchdog.interval_s).saturating_mul(1000);
        sys::timer_set(&self.tick, ms, ms)?;
        self.watchdog = Some(watchdog);
        Ok(())
    }

    /// Test builds: stop the loop for good after this many tickles.
    pub fn set_stall_after(&mut self, ticks: Option<u32>) {
        self.stall_after = ticks;
    }

    /// Watch an input device for the power key.
    pub fn add_input(&mut self, fd: OwnedFd) -> Result<()> {
        let token = TOKEN_INPUT + u64::try_from(self.inputs.len()).unwrap_or(0);
        sys::epoll_add(&self.epoll, fd.as_raw_fd(), token)?;
        self.inputs.push(Some(fd));
        Ok(())
    }

    /// Log the end of this child by name (others are reaped quietly).
    pub fn supervise(&mut self, pid: i32) {
        self.supervised.push((pid, None));
    }

    /// Log the end of this room's VMM by the room's name.
    pub fn supervise_room(&mut self, pid: i32, room: RoomName) {
        self.supervised.push((pid, Some(room)));
    }

    /// Watch the vault unlock helper; open `then` (the boot room) once it has ended.
    pub fn supervise_vault(&mut self, pid: i32, then: Option<RoomName>) {
        self.vault = Some((pid, then));
    }

    /// Is the vault unlock helper still running?
    pub fn vault_pending(&self) -> bool {
        self.vault.is_some()
    }

    /// Give the watchdog back (for the magic close at shutdown).
    pub fn take_watchdog(&mut self) -> Option<Watchdog> {
        self.watchdog.take()
    }

    /// Run until the supervisor is done; returns how to stop.
    pub fn run(&mut self, sup: &mut Supervisor, procs: &mut dyn Processes) -> Result<Stop> {
        let mut tokens = [0u64; 16];
        loop {
            let n = sys::epoll_wait(&self.epoll, &mut tokens, -1)?;
            for &token in tokens.iter().take(n) {
                self.dispatch(token, sup, procs)?;
                if let Phase::Done(stop) = sup.phase() {
                    return Ok(stop);
                }
            }
        }
    }

    fn dispatch(
        &mut self,
        token: u64,
        sup: &mut Supervisor,
        procs: &mut dyn Processes,
    ) -> Result<()> {
        let mut host = LoopHost {
            procs,
            stop_timer: &self.stop_timer,
            supervised: &mut self.supervised,
            vault: &mut self.vault,
        };
        match token {
            TOKEN_SIGNAL => {
                while let Some(sig) = sys::read_signal(&self.signals)? {
                    if let Phase::Done(_) = sup.handle(Input::Signal(sig), &mut host) {
                        break;
                    }
                }
            }
            TOKEN_STOP => {
                if sys::timer_ack(&self.stop_timer)? > 0 {
                    sup.handle(Input::StopTimer, &mut host);
                }
            }
            TOKEN_TICK => {
                if sys::timer_ack(&self.tick)? > 0 {
                    self.tickle();
                }
            }
            _ => {
                let index =
                    usize::try_from(token.saturating_sub(TOKEN_INPUT)).unwrap_or(usize::MAX);
                let Some(slot) = self.inputs.get_mut(index) else {
                    return Ok(());
                };
                let Some(fd) = slot.as_ref() else {
                    return Ok(());
                };
                match crate::input::read_presses(fd) {
                    Ok(0) => {}
                    Ok(_) => {
                        crate::log_notice!("power button pressed");
                        sup.handle(Input::PowerKey, &mut host);
                    }
                    Err(e) => {
                        crate::log_warn!("input device gone ({e}); no longer watched");
                        let _ = sys::epoll_del(&self.epoll, fd.as_raw_fd());
                        *slot = None;
                    }
                }
            }
        }
        Ok(())
    }

    fn tickle(&mut self) {
        let Some(wd) = self.watchdog.as_mut() else {
            return;
        };
        match wd.tickle() {
            Ok(ticks) => {
                if self.stall_after.is_some_and(|n| ticks >= u64::from(n)) {
                    crate::log_warn!(
                        "debug-stall: stalling the event loop after {ticks} watchdog ticks"
                    );
                    sys::pause_forever();
                }
            }
            Err(e) => crate::log_error!("watchdog tickle: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `alive` processes end only on SIGKILL; nothing real is ever signalled.
    struct Fake {
        alive: usize,
        sent: Vec<i32>,
    }

    impl Processes for Fake {
        fn reap_one(&mut self) -> Result<Reaped> {
            Ok(if self.alive > 0 {
                Reaped::Running
            } else {
                Reaped::NoChildren
            })
        }
        fn signal_all(&mut self, sig: i32) -> Result<()> {
            self.sent.push(sig);
            if sig == libc::SIGKILL {
                self.alive = 0;
            }
            Ok(())
        }
    }

    fn power_press() -> Vec<u8> {
        let mut ev = vec![0u8; 16];
        ev.extend_from_slice(&crate::input::EV_KEY.to_ne_bytes());
        ev.extend_from_slice(&crate::input::KEY_POWER.to_ne_bytes());
        ev.extend_from_slice(&1i32.to_ne_bytes());
        ev
    }

    #[test]
    fn a_power_key_press_powers_off() {
        let mut lp = EventLoop::new().unwrap();
        let (dev, mut key) = std::os::unix::net::UnixStream::pair().unwrap();
        dev.set_nonblocking(true).unwrap();
        lp.add_input(dev.into()).unwrap();
        key.write_all(&power_press()).unwrap();
        let mut fake = Fake {
            alive: 0,
            sent: vec![],
        };
        let stop = lp.run(&mut Supervisor::new(5), &mut fake).unwrap();
        assert_eq!(stop, Stop::PowerOff);
        assert_eq!(fake.sent, [libc::SIGTERM, libc::SIGCONT]);
    }

    #[test]
    fn sigint_reboots_and_stragglers_get_sigkill_after_the_grace_timer() {
        let mut lp = EventLoop::new().unwrap();
        // SAFETY: raise only queues a signal for this thread, which blocks it.
        assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
        let mut fake = Fake {
            alive: 2,
            sent: vec![],
        };
        let stop = lp.run(&mut Supervisor::new(0), &mut fake).unwrap();
        assert_eq!(stop, Stop::Reboot);
        assert_eq!(fake.sent, [libc::SIGTERM, libc::SIGCONT, libc::SIGKILL]);
    }
}
