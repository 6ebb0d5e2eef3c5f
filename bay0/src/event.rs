// SPDX-License-Identifier: GPL-3.0-or-later
//! The single-threaded epoll loop: a signalfd (the [`SIGNALS`]), a timerfd ticking the
//! watchdog, a timerfd for the shutdown grace period, a once-a-second housekeeping timer
//! (room lifetimes, client timeouts), the power-button input devices, bay0's console, the
//! operator shell's pty, the update helper's output, the control socket and its clients,
//! and every room's descriptors. Decisions are the [`Supervisor`]'s and the modules'; this
//! module only moves events between them.

use crate::config::Config;
use crate::console::{self, SystemConsole};
use crate::control::{self, Control};
use crate::error::Result;
use crate::rooms::{self, Notice, Rooms};
use crate::supervisor::{Host, Input, Phase, Stop, Supervisor, WaitStatus};
use crate::sys::{self, Reaped, SigSet};
use crate::watchdog::Watchdog;
use std::os::fd::{AsRawFd, OwnedFd};

/// The signals PID 1 handles; all are blocked and read from the signalfd.
pub const SIGNALS: [i32; 6] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGPWR,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_TICK: u64 = 2;
const TOKEN_STOP: u64 = 3;
const TOKEN_HOUSEKEEPING: u64 = 6;
const TOKEN_HELPER: u64 = 8;
const TOKEN_INPUT: u64 = 100;

/// The loop's descriptors and what it drives.
#[derive(Debug)]
pub struct EventLoop {
    pub epoll: OwnedFd,
    signals: OwnedFd,
    tick: OwnedFd,
    stop_timer: OwnedFd,
    housekeeping: OwnedFd,
    inputs: Vec<Option<OwnedFd>>,
    watchdog: Option<Watchdog>,
    supervised: Vec<i32>,
    ended: Vec<(i32, i32)>,
    stall_after: Option<u32>,
    pub rooms: Option<Rooms>,
    pub control: Option<Control>,
    pub console: Option<SystemConsole>,
    /// The vault unlock helper, and the settings to open the console with after it.
    vault: Option<(i32, Config)>,
    pub courier: crate::courier::Courier,
    /// The output of the update helper, shown on the console line by line.
    helper_out: Option<(
        OwnedFd,
        anchor_text::lines::Lines<{ crate::logger::LINE_MAX }>,
    )>,
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
        Ok(sys::reap_one()?)
    }
    fn signal_all(&mut self, sig: i32) -> Result<()> {
        Ok(sys::kill(-1, sig)?)
    }
}

/// The supervisor's effects: processes, the loop's stop timer, and the list of children
/// that ended (handled by the loop once the supervisor is done).
struct LoopHost<'a> {
    procs: &'a mut dyn Processes,
    stop_timer: &'a OwnedFd,
    ended: &'a mut Vec<(i32, i32)>,
}

impl Host for LoopHost<'_> {
    fn reap_one(&mut self) -> Result<Reaped> {
        self.procs.reap_one()
    }
    fn signal_all(&mut self, sig: i32) -> Result<()> {
        self.procs.signal_all(sig)
    }
    fn arm_stop_timer(&mut self, ms: u64) -> Result<()> {
        Ok(sys::timer_set(self.stop_timer, ms, 0)?)
    }
    fn child_ended(&mut self, pid: i32, status: i32) {
        self.ended.push((pid, status));
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
            housekeeping: sys::timerfd()?,
            inputs: Vec::new(),
            watchdog: None,
            supervised: Vec::new(),
            ended: Vec::new(),
            stall_after: None,
            rooms: None,
            control: None,
            console: None,
            vault: None,
            courier: Default::default(),
            helper_out: None,
        };
        sys::epoll_add(&lp.epoll, lp.signals.as_raw_fd(), TOKEN_SIGNAL)?;
        sys::epoll_add(&lp.epoll, lp.tick.as_raw_fd(), TOKEN_TICK)?;
        sys::epoll_add(&lp.epoll, lp.stop_timer.as_raw_fd(), TOKEN_STOP)?;
        sys::epoll_add(&lp.epoll, lp.housekeeping.as_raw_fd(), TOKEN_HOUSEKEEPING)?;
        sys::timer_set(&lp.housekeeping, 1000, 1000)?;
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

    /// Log the end of this child.
    pub fn supervise(&mut self, pid: i32) {
        self.supervised.push(pid);
    }

    /// Give the watchdog back (for the magic close at shutdown).
    pub fn take_watchdog(&mut self) -> Option<Watchdog> {
        self.watchdog.take()
    }

    /// Let the vault unlock helper (pid) have the console; open it after the helper ends.
    pub fn wait_for_vault(&mut self, pid: i32, config: Config) {
        self.vault = Some((pid, config));
    }

    /// Take bay0's console, open the boot rooms (the first one gets the console; a room
    /// that cannot start is logged, never fatal for PID 1), then start this boot's update
    /// check (`anchor-update bless`), which waits for those rooms; `unhealthy` says why
    /// the boot is known to be bad already (the vault did not open).
    pub fn open_console(&mut self, config: &Config, unhealthy: Option<&str>) {
        self.console = Some(SystemConsole::new(&self.epoll, config.shell));
        let now = sys::monotonic_ms();
        for (i, name) in config.boot_rooms.iter().flatten().enumerate() {
            let Some(rooms) = self.rooms.as_mut() else {
                return;
            };
            let mut detail = crate::logger::Line::default();
            match rooms.start(&self.epoll, (name.as_str(), "opened"), now, &mut detail) {
                Ok(slot) if i == 0 => {
                    if let Some(c) = self.console.as_mut() {
                        c.focus_room(slot, rooms);
                    }
                }
                Ok(_) => {}
                Err(e) => crate::log_error!("room {}: {e} {}", name.as_str(), detail.as_str()),
            }
        }
        match crate::update::spawn_bless(&config.boot_rooms, unhealthy) {
            Some(Ok((pid, out))) => {
                self.supervise(pid);
                if sys::epoll_add(&self.epoll, out.as_raw_fd(), TOKEN_HELPER).is_ok() {
                    self.helper_out = Some((out, Default::default()));
                }
            }
            Some(Err(e)) => crate::log_error!("{}: {e}", crate::update::HELPER),
            None => {}
        }
    }

    /// Run until the supervisor is done; returns how to stop.
    pub fn run(&mut self, sup: &mut Supervisor, procs: &mut dyn Processes) -> Result<Stop> {
        let mut tokens = [0u64; 16];
        loop {
            let n = sys::epoll_wait(&self.epoll, &mut tokens, -1)?;
            for &token in tokens.iter().take(n) {
                let before = sup.phase();
                self.dispatch(token, sup, procs)?;
                // Once the shutdown began no room opens (not one that ended being reset,
                // reaped by the shutdown); the others have nothing to save: they go at once,
                // not after the grace.
                let closing = before == Phase::Running && sup.phase() != Phase::Running;
                if let Some(rooms) = self.rooms.as_mut().filter(|_| closing) {
                    rooms.closing = true;
                }
                if let Some(c) = self.console.as_mut().filter(|_| closing) {
                    c.closing();
                }
                self.after_children();
                if let Some(rooms) = self.rooms.as_mut().filter(|_| closing) {
                    rooms.kill_all();
                }
                if let Phase::Done(stop) = sup.phase() {
                    return Ok(stop);
                }
            }
        }
    }

    /// Handles the children the supervisor reaped.
    fn after_children(&mut self) {
        let now = sys::monotonic_ms();
        for (pid, status) in core::mem::take(&mut self.ended) {
            if let Some((_, config)) = self.vault.take_if(|(p, _)| *p == pid) {
                let code = WaitStatus(status).exit_code();
                crate::vault::unlock_ended(code);
                let locked = (code != 0).then(|| anchor_proto::exit::vault(code));
                self.open_console(&config, locked);
                continue;
            }
            let notice = self
                .rooms
                .as_mut()
                .and_then(|r| r.ended(&self.epoll, pid, status, now));
            let (slot, name) = match &notice {
                Some(Notice::Ended { slot, name, .. }) => (Some(*slot), Some(*name)),
                _ => (None, None),
            };
            self.courier.ended(self.rooms.as_ref(), pid, status, name);
            if let Some(c) = self.console.as_mut() {
                c.ended(&self.epoll, pid, slot);
            }
            if let (Some(n), Some(ctl), Some(rooms)) =
                (&notice, self.control.as_mut(), self.rooms.as_ref())
            {
                ctl.notify(&self.epoll, n, rooms);
            }
            if let Some(i) = self.supervised.iter().position(|&p| p == pid) {
                self.supervised.swap_remove(i);
                crate::log_info!("child {pid} {}", WaitStatus(status));
            } else if notice.is_none() {
                crate::log_debug!("reaped {pid}: {}", WaitStatus(status));
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
            ended: &mut self.ended,
        };
        let now = sys::monotonic_ms();
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
            TOKEN_HOUSEKEEPING => {
                sys::timer_ack(&self.housekeeping)?;
                if let Some(rooms) = self.rooms.as_mut() {
                    rooms.tick(now, &self.epoll);
                    let v = self.courier.arb.tick(now);
                    self.courier.done(Some(rooms), v);
                }
                self.answer_key_up();
                if let Some(ctl) = self.control.as_mut() {
                    ctl.tick(now, self.rooms.as_ref());
                }
            }
            TOKEN_HELPER => self.helper_output(),
            console::TOKEN_INPUT => {
                if let (Some(c), Some(rooms)) = (self.console.as_mut(), self.rooms.as_mut()) {
                    c.on_input(&self.epoll, rooms, now);
                }
            }
            console::TOKEN_SHELL => {
                if let Some(c) = self.console.as_mut() {
                    c.on_shell(&self.epoll);
                }
            }
            control::TOKEN_LISTEN => {
                if let Some(ctl) = self.control.as_mut() {
                    ctl.accept(&self.epoll, now);
                }
            }
            t if (control::TOKEN_BASE..rooms::TOKEN_BASE).contains(&t) => {
                if let (Some(ctl), Some(rooms)) = (self.control.as_mut(), self.rooms.as_mut()) {
                    ctl.on_token(&self.epoll, t, rooms, now);
                }
            }
            t if t >= rooms::TOKEN_BASE => self.room_event(t),
            _ => {
                let keys = power_input(&mut self.inputs, &self.epoll, token, sup, &mut host);
                self.courier
                    .key(self.rooms.as_ref(), &keys.unwrap_or_default(), now);
                self.answer_key_up();
            }
        }
        Ok(())
    }

    fn room_event(&mut self, token: u64) {
        let Some(rooms) = self.rooms.as_mut() else {
            return;
        };
        let mut notices = Vec::new();
        let mut out = Vec::new();
        rooms.on_token(&self.epoll, token, &mut notices, &mut out);
        let slot = usize::try_from((token - rooms::TOKEN_BASE) / 4).unwrap_or(usize::MAX);
        if !out.is_empty() {
            if let Some(c) = self.console.as_mut() {
                c.show(slot, &out);
            }
            if let Some(ctl) = self.control.as_mut() {
                ctl.show(&self.epoll, slot, rooms, &out);
            }
        }
        for n in &notices {
            if let Notice::Courier(from, req) = n {
                let now = sys::monotonic_ms();
                self.courier.request(Some(rooms), from.as_str(), *req, now);
            } else if let Some(ctl) = self.control.as_mut() {
                ctl.notify(&self.epoll, n, rooms);
            }
        }
    }

    /// The update helper wrote: its complete lines go to the console (closed at its end).
    fn helper_output(&mut self) {
        let Some((fd, lines)) = self.helper_out.as_mut() else {
            return;
        };
        let mut buf = [0u8; 1024];
        match sys::read("read helper output", fd.as_raw_fd(), &mut buf) {
            Ok(n @ 1..) => lines.feed(buf.get(..n).unwrap_or_default(), |line| {
                if let Some(c) = self.console.as_mut() {
                    c.put_line(line.as_bytes());
                }
            }),
            Err(e) if e.errno == libc::EAGAIN => {}
            _ => {
                // Its end: a last line without a newline is shown too.
                if let (Some(c), false) = (self.console.as_mut(), lines.pending().is_empty()) {
                    c.put_line(lines.pending().as_bytes());
                }
                self.helper_out = None;
            }
        }
    }

    /// The key that ended the prompt is up (or its hold ran out, its release lost): what
    /// it queued on the console goes.
    fn answer_key_up(&mut self) {
        if let (true, Some(c)) = (self.courier.arb.take_released(), &self.console) {
            c.drop_typed();
        }
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

fn power_input(
    inputs: &mut [Option<OwnedFd>],
    epoll: &OwnedFd,
    token: u64,
    sup: &mut Supervisor,
    host: &mut LoopHost<'_>,
) -> Option<Vec<crate::input::Press>> {
    let index = usize::try_from(token.saturating_sub(TOKEN_INPUT)).unwrap_or(usize::MAX);
    let slot = inputs.get_mut(index)?;
    let fd = slot.as_ref()?;
    match crate::input::read_presses(fd) {
        Ok(keys) => {
            if keys
                .iter()
                .any(|&(_, code, down)| down && code == crate::input::KEY_POWER)
            {
                crate::log_notice!("power button pressed");
                sup.handle(Input::PowerKey, host);
            }
            // Every press: the courier's arbiter says which answer the prompt, and when.
            Some(keys)
        }
        Err(e) => {
            crate::log_warn!("input device gone ({e}); no longer watched");
            let _ = sys::epoll_del(epoll, fd.as_raw_fd());
            *slot = None;
            None
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

    /// A press of `code` the kernel dated `at_ms` (CLOCK_MONOTONIC, as bay0 sets it).
    fn press_at(code: u16, at_ms: u64) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&i64::try_from(at_ms / 1000).unwrap().to_ne_bytes());
        ev.extend_from_slice(&i64::try_from(at_ms % 1000 * 1000).unwrap().to_ne_bytes());
        ev.extend_from_slice(&crate::input::EV_KEY.to_ne_bytes());
        ev.extend_from_slice(&code.to_ne_bytes());
        ev.extend_from_slice(&1i32.to_ne_bytes());
        ev
    }

    /// A press counts from when it was made (the kernel's time of the event), not from
    /// when bay0 got round to reading it: a Y pressed 0.2 s after the prompt came up
    /// (the human typing into a room) does not answer it, even when bay0 reads it after
    /// the answer delay (its loop was busy: drawing the prompt, a flood of room events).
    #[test]
    fn a_press_too_soon_does_not_answer_the_prompt_when_read_late() {
        use anchor_policy::arbiter::{RoomView, ANSWER_DELAY_MS};
        let _courier = COURIER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut lp = EventLoop::new().unwrap();
        let (dev, mut key) = std::os::unix::net::UnixStream::pair().unwrap();
        dev.set_nonblocking(true).unwrap();
        lp.add_input(dev.into()).unwrap();
        let policy = "name = \"r\"\nimage = \"base\"\nbackend = \"microvm\"\n[resources]\n\
                      memory = \"64MiB\"\nvcpus = 1\n[courier]\nsend_to = [\"work\"]\n\
                      receive_from = [\"web\"]\n";
        let policy = anchor_policy::parse("r.toml", policy.as_bytes()).unwrap();
        let view = |_: &str| Some(RoomView::new(policy.courier(), true, "microvm"));
        let m = anchor_proto::courier::Manifest::new([5; 16], "work", b"f", 1, [7; 32]);
        let shown = sys::monotonic_ms();
        assert!(lp.courier.arb.request(shown, "web", m, view).is_none());
        key.write_all(&press_at(crate::input::KEY_Y, shown + 200))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ANSWER_DELAY_MS + 200));
        let mut fake = Fake {
            alive: 0,
            sent: vec![],
        };
        lp.dispatch(TOKEN_INPUT, &mut Supervisor::new(5), &mut fake)
            .unwrap();
        let answered = !lp.courier.arb.prompting();
        let _ = lp.courier.arb.tick(u64::MAX);
        crate::courier::HOLD.store(false, std::sync::atomic::Ordering::Relaxed);
        crate::courier::KEYS_HELD.store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(!answered, "a Y pressed 0.2 s after the prompt answered it");
    }

    /// The tests that bring up the prompt (which holds bay0's console, process-wide) take
    /// turns.
    static COURIER: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A key press or release (`down`) of `code` the kernel dated `at_ms`.
    fn key_at(code: u16, at_ms: u64, down: bool) -> Vec<u8> {
        let mut ev = press_at(code, at_ms);
        ev[20..24].copy_from_slice(&i32::from(down).to_ne_bytes());
        ev
    }

    /// Waits (no time limit) until `fd` has something to read.
    fn readable(fd: std::os::fd::RawFd) {
        let ep = sys::epoll().unwrap();
        sys::epoll_add(&ep, fd, 1).unwrap();
        sys::epoll_wait(&ep, &mut [0u64; 16], -1).unwrap();
    }

    /// The key that answers the prompt reaches bay0 twice: as an evdev press, and as a
    /// byte on its console's terminal (the kernel's keyboard feeds the text console too;
    /// that byte passes through the terminal's flip buffer after evdev has the press). Here
    /// evdev's N comes first and ends the prompt, then the N byte is read from the
    /// terminal, then an autorepeat's byte is queued, then N goes up, then the human types
    /// `ls`. Before, the console was held only while the prompt was up: the N reached the
    /// focused operator shell (or room: a room could learn the answer, or get an unwanted
    /// `y`). Now it stays held until the answering key is up, what the terminal queued
    /// until then is dropped, and only `ls` reaches the shell.
    #[test]
    fn the_key_that_answers_the_prompt_does_not_reach_the_focused_shell() {
        use anchor_policy::arbiter::{RoomView, KEY_NO};
        use std::io::Read as _;
        let _courier = COURIER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut lp = EventLoop::new().unwrap();
        let (dev, mut evdev) = std::os::unix::net::UnixStream::pair().unwrap();
        dev.set_nonblocking(true).unwrap();
        lp.add_input(dev.into()).unwrap();
        let dir = crate::rooms::tests::scratch("answer-key");
        lp.rooms = Some(Rooms::new(crate::room::Layout::under(&dir), false));
        // bay0's terminal: the keyboard writes to `keyboard`, bay0 reads `terminal`.
        let (keyboard, terminal) = sys::open_pty().unwrap();
        sys::set_nonblocking(terminal.as_raw_fd()).unwrap();
        let mut keyboard = std::fs::File::from(keyboard);
        let (shell, shell_tty) = sys::open_pty().unwrap();
        sys::set_nonblocking(shell_tty.as_raw_fd()).unwrap();
        let input = terminal.as_raw_fd();
        lp.console = Some(crate::console::tests::with_shell(input, shell));
        let policy = "name = \"r\"\nimage = \"base\"\nbackend = \"microvm\"\n[resources]\n\
                      memory = \"64MiB\"\nvcpus = 1\n[courier]\nsend_to = [\"work\"]\n\
                      receive_from = [\"web\"]\n";
        let policy = anchor_policy::parse("r.toml", policy.as_bytes()).unwrap();
        let view = |_: &str| Some(RoomView::new(policy.courier(), true, "microvm"));
        let m = anchor_proto::courier::Manifest::new([5; 16], "work", b"f", 1, [7; 32]);
        let shown = sys::monotonic_ms().saturating_sub(5_000);
        assert!(lp.courier.arb.request(shown, "web", m, view).is_none());
        let mut fake = Fake {
            alive: 0,
            sent: vec![],
        };
        let mut sup = Supervisor::new(5);
        let mut turn = |lp: &mut EventLoop, token| lp.dispatch(token, &mut sup, &mut fake).unwrap();
        // N down on evdev: the prompt ends (no).
        evdev
            .write_all(&key_at(KEY_NO[0], shown + 2_000, true))
            .unwrap();
        turn(&mut lp, TOKEN_INPUT);
        assert!(!lp.courier.arb.prompting(), "N did not answer");
        // Its byte is read from the terminal after; an autorepeat's is queued, unread.
        for _ in 0..2 {
            keyboard.write_all(b"n").unwrap();
            readable(input);
            turn(&mut lp, console::TOKEN_INPUT);
        }
        keyboard.write_all(b"n").unwrap();
        readable(input);
        // N up on evdev, then `ls` typed.
        evdev
            .write_all(&key_at(KEY_NO[0], shown + 2_300, false))
            .unwrap();
        turn(&mut lp, TOKEN_INPUT);
        keyboard.write_all(b"ls\r").unwrap();
        // bay0 reads its terminal, the shell what bay0 forwards, until the shell has `ls`.
        let (ep, mut got, mut buf) = (sys::epoll().unwrap(), Vec::new(), [0u8; 64]);
        sys::epoll_add(&ep, input, console::TOKEN_INPUT).unwrap();
        sys::epoll_add(&ep, shell_tty.as_raw_fd(), console::TOKEN_SHELL).unwrap();
        let mut shell_tty = std::fs::File::from(shell_tty);
        while !got.ends_with(b"ls\r") {
            let mut tokens = [0u64; 16];
            let n = sys::epoll_wait(&ep, &mut tokens, -1).unwrap();
            for &t in &tokens[..n] {
                if t == console::TOKEN_INPUT {
                    turn(&mut lp, t);
                } else {
                    let n = shell_tty.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            got, b"ls\r",
            "the shell got the key that answered the prompt"
        );
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
