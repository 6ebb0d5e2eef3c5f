// SPDX-License-Identifier: GPL-3.0-or-later
//! The room table and each room's life. Start: policy, admission (memory), a pty for its
//! console, a pipe for its VMM's messages, its run directory and umbilical socket, then
//! `anchor-jail` as PID 1 of a new PID namespace. While it runs: console output (rendered,
//! see `console`), the VMM's stderr lines (logged under the room's name), the umbilical
//! (the agent's `ready`), lifetime limits. Stop: a room with nothing to save is killed at
//! once; one with a vault volume is asked to power off first and killed after
//! [`STOP_GRACE_MS`]. When its VMM ends, everything of the room goes: run directory,
//! cgroup, descriptors.

use core::fmt::Write as _;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anchor_policy::admission;
use anchor_proto::courier::{Malformed, Manifest};
use anchor_proto::umbilical::{self, Decoder, Kind};
use anchor_sys::cgroup;

use crate::config::RoomName;
use crate::error::{io, Error, Result};
use crate::logger::Line;
use crate::room::{self, Layout, Plan};
use crate::supervisor::WaitStatus;
use crate::sys;
use anchor_text::console::{Renderer, Scrollback};

/// Most rooms open at once.
pub const MAX_ROOMS: usize = 8;
/// How long a room asked to power off gets before its VMM is killed.
pub const STOP_GRACE_MS: u64 = 3_000;
/// How long before a lifetime limit the room is warned.
const WARN_LEAD_MS: u64 = 60_000;
/// Console bytes bay0 reads from a room a second; past them its pty is unwatched till the
/// next tick, and the room's writers wait (bay0's rendering is outside the room's cgroup).
pub const CONSOLE_BYTES_PER_S: usize = 256 * 1024;
/// First epoll token of the room descriptors (4 per slot: console, stderr, umbilical
/// listener, umbilical connection).
pub const TOKEN_BASE: u64 = 300;

/// Where a room is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// VMM started; the agent has not reported ready yet.
    Booting,
    Ready,
    Stopping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Booting => "booting",
            Phase::Ready => "running",
            Phase::Stopping => "stopping",
        }
    }
}

/// One open room.
#[derive(Debug)]
pub struct Room {
    pub name: RoomName,
    pub backend: &'static str,
    pub pid: i32,
    pub phase: Phase,
    pub started_ms: u64,
    /// How long after its start the agent reported ready (ms; 0 before).
    pub ready_ms: u64,
    pub memory_mib: u64,
    pub vcpus: u32,
    charged_mib: u64,
    /// Open again once it has ended (reset).
    pub restart: bool,
    kill_at_ms: u64,
    max_at_ms: Option<u64>,
    idle_ms: Option<u64>,
    pub last_input_ms: u64,
    warned: bool,
    /// Where its run directory and cgroup were moved when it was reset (see [`set_aside`]).
    aside: Option<Leftover>,
    /// The vault volume file (the room is asked to power off before it is killed).
    volume: Option<std::path::PathBuf>,
    pub pty: OwnedFd,
    /// Console bytes left this second ([`CONSOLE_BYTES_PER_S`]); None once it closed.
    pub console_left: Option<usize>,
    pub render: Renderer,
    pub scroll: Scrollback,
    err: OwnedFd,
    err_line: anchor_text::lines::Lines<{ crate::logger::LINE_MAX }>,
    pub last_err: Line,
    umb_listen: UnixListener,
    /// The agent's umbilical connection (bay0 writes whole frames, never waits).
    pub umb: Option<UnixStream>,
    dec: Box<Decoder>,
    /// Courier rights (from the policy, read once at start).
    pub courier: anchor_policy::Courier,
}

/// Something control clients waiting on a room want to hear (short-lived, on the stack).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Notice {
    /// The room's agent is up, `ms` after its VMM started.
    Ready { slot: usize, ms: u64 },
    /// The room ended (and, being reset, opened again in `new_slot`).
    Ended {
        slot: usize,
        name: RoomName,
        status: WaitStatus,
        why: Line,
        new_slot: Option<usize>,
    },
    /// A courier request arrived on room NAME's umbilical.
    Courier(RoomName, core::result::Result<Manifest, Malformed>),
}

/// MemTotal of this machine, in MiB.
pub fn mem_total_mib() -> u64 {
    admission::mem_total_mib(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
}

/// The name of what a room leaves on the host (its run directory, its cgroup): the room's
/// name, or `NAME_PID` once set aside.
type Leftover = anchor_text::fixed::Fixed<48>;

/// Moves a closing room's run directory and cgroup to `NAME_PID` (PID: its VMM's), so that
/// a new room of the same name can open beside it; `None`, with nothing moved, when either
/// cannot be (see `cgroup::set_aside`: on v2 the room's processes move to a frozen cgroup).
fn set_aside(run: &Path, root: &Path, name: &str, pid: i32) -> Option<Leftover> {
    let mut aside = Leftover::default();
    write!(aside, "{name}_{pid}").ok()?;
    let (dir, to) = (run.join(name), run.join(aside.as_str()));
    std::fs::rename(&dir, &to).ok()?;
    let (from_cg, to_cg) = (
        format!("anchor/{name}"),
        format!("anchor/{}", aside.as_str()),
    );
    if cgroup::set_aside(root, &from_cg, &to_cg).is_err() {
        let _ = std::fs::rename(&to, &dir);
        return None;
    }
    Some(aside)
}

/// The room table.
#[derive(Debug)]
pub struct Rooms {
    pub slots: Vec<Option<Room>>,
    pub layout: Layout,
    pub kvm: bool,
    /// Rooms whose cgroup could not be removed yet (processes still exiting).
    stale_cgroups: Vec<Leftover>,
    /// bay0 is shutting down: no room opens any more (not even one being reset).
    pub closing: bool,
}

fn token(slot: usize, kind: u64) -> u64 {
    TOKEN_BASE + (slot as u64) * 4 + kind
}

/// Gives `path` to the room's uid with `mode`.
fn hand_over(path: &std::path::Path, uid: u32, mode: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).map_err(io("chown"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod"))
}

impl Rooms {
    pub fn new(layout: Layout, kvm: bool) -> Rooms {
        Rooms {
            slots: (0..MAX_ROOMS).map(|_| None).collect(),
            layout,
            kvm,
            stale_cgroups: Vec::new(),
            closing: false,
        }
    }

    /// The slot of the open room called `name`: not one set aside by a reset (its
    /// successor has the name), unless it is to open again once it has ended (the
    /// successor could not open beside it): until then it is the room, to stop or list.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|r| {
            r.as_ref()
                .is_some_and(|r| r.name.as_str() == name && (r.aside.is_none() || r.restart))
        })
    }

    pub fn get(&self, slot: usize) -> Option<&Room> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Room> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// Memory charged by the open rooms (MiB).
    pub fn used_mib(&self) -> u64 {
        self.slots.iter().flatten().map(|r| r.charged_mib).sum()
    }

    /// Opens room `name`; its slot. On failure `detail` may hold more about why. `how`:
    /// `opened` (asked to start) or `reset` (reopened by a reset), as audited.
    pub fn start(
        &mut self,
        ep: &OwnedFd,
        (name, how): (&str, &'static str),
        now_ms: u64,
        detail: &mut Line,
    ) -> Result<usize> {
        if self.closing {
            return Err(Error::Room("bay0 is shutting down"));
        }
        // A room being stopped still has its name, but is not running.
        if let Some(r) = self.find(name).and_then(|s| self.get(s)) {
            let why = (r.phase == Phase::Stopping && !r.restart).then_some("still stopping");
            return Err(Error::Room(why.unwrap_or("already running")));
        }
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(Error::Room("too many rooms open (8)"))?;
        let resolved = crate::policy::load_room(&self.layout.policies, name, detail)?;
        let open = crate::vault::is_open();
        let plan = room::plan(&self.layout, &resolved, self.kvm, open, slot)?;
        admission::admit(mem_total_mib(), self.used_mib(), plan.charged_mib)
            .map_err(Error::Memory)?;
        let busy = |r: &Room| r.volume.is_some() && r.volume == plan.volume;
        if self.slots.iter().flatten().any(busy) {
            return Err(Error::Room(
                "its vault volume is in use by another open room",
            ));
        }
        for what in resolved.policy().not_granted() {
            crate::log_warn!("room {name}: not granted: {what}");
        }
        if let Some(why) = &plan.no_volume {
            crate::log_warn!("room {name}: not granted: vault volume ({why})");
        }
        let room_name =
            crate::config::room_name(name).map_err(|_| Error::Room("invalid room name"))?;
        let room = self.launch(ep, slot, room_name, &plan, now_ms)?;
        crate::log_notice!(
            "room {name} opened: {}, {} MiB, {} vCPU(s), jailed as uid {} (pid {}){}",
            plan.backend,
            plan.memory_mib,
            plan.vcpus,
            plan.uid,
            room.pid,
            room.volume
                .as_ref()
                .map_or("", |_| ", vault volume attached")
        );
        crate::vault::audit_room(name, how, None, &[("backend", plan.backend)]);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(room);
        }
        Ok(slot)
    }

    fn launch(
        &mut self,
        ep: &OwnedFd,
        slot: usize,
        name: RoomName,
        plan: &Plan,
        now_ms: u64,
    ) -> Result<Room> {
        // A leftover directory of an earlier run is removed first (nothing in it is kept);
        // one that cannot be removed is never reused: the start fails (EEXIST).
        let _ = std::fs::remove_dir_all(&plan.run_dir);
        std::fs::create_dir_all(&self.layout.run).map_err(io("create the rooms' run directory"))?;
        std::fs::create_dir(&plan.run_dir).map_err(io("create the room's run directory"))?;
        hand_over(&plan.run_dir, plan.uid, 0o700)?;
        if let Some(volume) = &plan.volume {
            hand_over(volume, plan.uid, 0o600)?;
        }
        let umb_path = plan.run_dir.join(format!("vsock_{}", umbilical::PORT));
        let umb_listen = UnixListener::bind(&umb_path).map_err(io("bind the umbilical"))?;
        umb_listen.set_nonblocking(true).map_err(io("umbilical"))?;
        hand_over(&umb_path, plan.uid, 0o600)?;
        let (pty, slave) = sys::open_pty()?;
        let (err, err_w) = sys::pipe()?;
        let stdio = [slave.as_raw_fd(), slave.as_raw_fd(), err_w.as_raw_fd()];
        let pid = sys::spawn(&sys::Spawn::child(&plan.argv, stdio, libc::CLONE_NEWPID))?;
        drop((slave, err_w));
        for (fd, kind) in [
            (pty.as_raw_fd(), 0),
            (err.as_raw_fd(), 1),
            (umb_listen.as_raw_fd(), 2),
        ] {
            sys::epoll_add(ep, fd, token(slot, kind))?;
        }
        let at = |s: Option<u64>| s.map(|s| now_ms.saturating_add(s.saturating_mul(1000)));
        Ok(Room {
            name,
            backend: plan.backend,
            pid,
            phase: Phase::Booting,
            started_ms: now_ms,
            ready_ms: 0,
            memory_mib: plan.memory_mib,
            vcpus: plan.vcpus,
            charged_mib: plan.charged_mib,
            restart: false,
            kill_at_ms: 0,
            max_at_ms: at(plan.max_s),
            idle_ms: plan.idle_s.map(|s| s.saturating_mul(1000)),
            last_input_ms: now_ms,
            warned: false,
            aside: None,
            volume: plan.volume.clone(),
            pty,
            console_left: Some(CONSOLE_BYTES_PER_S),
            render: Renderer::for_screen(name.as_str(), sys::columns(libc::STDOUT_FILENO)),
            scroll: Scrollback::default(),
            err,
            err_line: Default::default(),
            last_err: Line::default(),
            umb_listen,
            umb: None,
            dec: Box::default(),
            courier: plan.courier.clone(),
        })
    }

    /// Closes the room in `slot` (and opens it again once it has ended, if `restart`). The
    /// last request decides: a stop that comes while a reset closes the room first is not
    /// undone by the reopening the reset asked for.
    pub fn stop(&mut self, slot: usize, restart: bool, now_ms: u64) {
        let Some(r) = self.get_mut(slot) else { return };
        r.restart = restart;
        if r.phase == Phase::Stopping {
            return;
        }
        r.phase = Phase::Stopping;
        r.kill_at_ms = now_ms.saturating_add(STOP_GRACE_MS);
        if !power_off(r) {
            signal(r, libc::SIGKILL);
        }
    }

    /// Resets the room in `slot`; the slot to wait on for it to be ready. A fresh room of
    /// the same name opens at once in another slot while the old one is held stopped
    /// (SIGSTOP: it takes no CPU from the new room's boot) and set aside (run directory and
    /// cgroup renamed); the old one is killed, and torn down, once the new room is ready or
    /// after [`STOP_GRACE_MS`]. A room with a vault volume (it powers off before the
    /// volume is free), whose leftovers cannot be set aside, or that does not fit beside its
    /// old self, is closed first and opened again in its own slot once it has ended.
    pub fn reset(&mut self, ep: &OwnedFd, slot: usize, now_ms: u64) -> usize {
        let fresh = |r: &&Room| r.volume.is_none() && r.phase != Phase::Stopping;
        let run = &self.layout.run;
        let set = self.get(slot).filter(fresh).and_then(|r| {
            set_aside(run, Path::new(cgroup::ROOT), r.name.as_str(), r.pid).map(|a| (r.name, a))
        });
        let Some((name, aside)) = set else {
            self.stop(slot, true, now_ms);
            return slot;
        };
        if let Some(r) = self.get_mut(slot) {
            (r.aside, r.phase) = (Some(aside), Phase::Stopping);
            r.kill_at_ms = now_ms.saturating_add(STOP_GRACE_MS);
            signal(r, libc::SIGSTOP);
        }
        let mut detail = Line::default();
        self.start(ep, (name.as_str(), "reset"), now_ms, &mut detail)
            .unwrap_or_else(|e| {
                let n = name.as_str();
                crate::log_warn!(
                    "room {n}: reopens once it has ended: {e} {}",
                    detail.as_str()
                );
                if let Some(r) = self.get_mut(slot) {
                    r.restart = true;
                    signal(r, libc::SIGKILL);
                }
                slot
            })
    }

    /// Shutdown: kills every room's VMM at once, but a room with a vault volume is asked
    /// to power off (its agent syncs first) and killed after [`STOP_GRACE_MS`] (or the
    /// supervisor's SIGKILL at the end of the shutdown grace, if that comes first). (A VMM is PID 1 of its PID namespace: the SIGTERM sent to
    /// every process does not reach it.)
    pub fn kill_all(&mut self) {
        let now = sys::monotonic_ms();
        for r in self.slots.iter_mut().flatten() {
            r.phase = Phase::Stopping;
            // Housekeeping kills a stopping room at `kill_at_ms`: not before the grace.
            r.kill_at_ms = now.saturating_add(STOP_GRACE_MS);
            if !power_off(r) {
                signal(r, libc::SIGKILL);
            }
        }
    }

    /// Handles readiness of a room descriptor; returns rendered console output, if any.
    pub fn on_token(
        &mut self,
        ep: &OwnedFd,
        tok: u64,
        notices: &mut Vec<Notice>,
        out: &mut Vec<u8>,
    ) {
        let rel = tok.saturating_sub(TOKEN_BASE);
        let slot = usize::try_from(rel / 4).unwrap_or(usize::MAX);
        let Some(r) = self.get_mut(slot) else { return };
        match rel % 4 {
            // Its console closed by every program of the room (reads give EIO), or its
            // stderr's writers gone (a namespace room's jail became the agent, whose stderr
            // is the console): unwatched, or its endless EPOLLHUP would spin the loop.
            // Or its budget for this second spent (watched again at the next tick).
            0 => {
                if read_console(r, out) {
                    r.console_left = None;
                }
                if r.console_left.is_none_or(|left| left == 0) {
                    let _ = sys::epoll_del(ep, r.pty.as_raw_fd());
                }
            }
            1 if read_stderr(r, 8) => drop(sys::epoll_del(ep, r.err.as_raw_fd())),
            1 => {}
            2 => accept_umbilical(r, slot, ep),
            _ => {
                if read_umbilical(r, notices, ep) {
                    let (name, ms) = (r.name, sys::monotonic_ms().saturating_sub(r.started_ms));
                    // Its setup's lines (a namespace room's jail's last) are no reason it ends.
                    (r.ready_ms, r.last_err) = (ms, Line::default());
                    notices.push(Notice::Ready { slot, ms });
                    // Its old self, held stopped while it booted (reset), goes now.
                    let old = |o: &&Room| o.aside.is_some() && o.name.as_str() == name.as_str();
                    self.slots
                        .iter()
                        .flatten()
                        .filter(old)
                        .for_each(|o| signal(o, libc::SIGKILL));
                }
            }
        }
    }

    /// A child ended: if it was a room's VMM, clean the room up (and restart it when it
    /// was being reset). Returns what waiting clients should hear.
    pub fn ended(&mut self, ep: &OwnedFd, pid: i32, status: i32, now_ms: u64) -> Option<Notice> {
        let slot = self
            .slots
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.pid == pid))?;
        let mut r = self.slots.get_mut(slot)?.take()?;
        let _ = read_stderr(&mut r, 1024);
        // The volume is root's again while no room runs it (its uid goes to other rooms).
        let _ = r.volume.as_ref().map(|v| hand_over(v, 0, 0o600));
        let status = WaitStatus(status);
        let name = r.name;
        let (what, mut why) = how_it_ended(r.phase, status.exit_code(), r.last_err);
        let sep = if why.as_str().is_empty() { "" } else { ": " };
        crate::log_notice!(
            "room {} (pid {pid}) {status}: {what}{sep}{}",
            name.as_str(),
            why.as_str()
        );
        let st = status.to_string();
        let f = [("status", st.as_str()), ("why", why.as_str())];
        crate::vault::audit_room(name.as_str(), what, Some(status.exit_code()), &f);
        let restart = r.restart;
        // A room reset beside its old self: that one's leftovers go; consoles follow.
        let mut new_slot = r.aside.and_then(|_| self.find(name.as_str()));
        self.clean(r.aside.as_ref().map_or(name.as_str(), Leftover::as_str));
        drop(r);
        if restart {
            let mut detail = Line::default();
            match self.start(ep, (name.as_str(), "reset"), now_ms, &mut detail) {
                Ok(s) => new_slot = Some(s),
                // Said to the clients waiting for it (a reset), too.
                Err(e) => {
                    let (n, d) = (name.as_str(), detail.as_str());
                    crate::log_error!("room {n}: reopening: {e} {d}");
                    let _ = write!(why, "not opened again: {e} {d}");
                }
            }
        }
        Some(Notice::Ended {
            slot,
            name,
            status,
            why,
            new_slot,
        })
    }

    /// Removes what a room left on the host: its run directory and its cgroup.
    fn clean(&mut self, name: &str) {
        let dir = self.layout.run.join(name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                crate::log_warn!("room {name}: removing {}: {e}", dir.display());
            }
        }
        if !cgroup::remove(Path::new(cgroup::ROOT), &format!("anchor/{name}")) {
            self.stale_cgroups.extend(Leftover::parse(name, |_| true));
        }
    }

    /// Once a second: console budgets, lifetime limits, stop deadlines, leftover cgroups.
    pub fn tick(&mut self, now_ms: u64, ep: &OwnedFd) {
        self.stale_cgroups.retain(|n| {
            !cgroup::remove(Path::new(cgroup::ROOT), &format!("anchor/{}", n.as_str()))
        });
        for slot in 0..MAX_ROOMS {
            let Some(r) = self.get_mut(slot) else {
                continue;
            };
            if r.console_left == Some(0) {
                let _ = sys::epoll_add(ep, r.pty.as_raw_fd(), token(slot, 0));
            }
            r.console_left = r.console_left.map(|_| CONSOLE_BYTES_PER_S);
            if r.phase == Phase::Stopping {
                if now_ms >= r.kill_at_ms {
                    signal(r, libc::SIGKILL);
                    r.kill_at_ms = now_ms.saturating_add(STOP_GRACE_MS);
                }
                continue;
            }
            let idle_at = r.idle_ms.map(|i| r.last_input_ms.saturating_add(i));
            let due = [
                (r.max_at_ms, "its lifetime is over"),
                (idle_at, "it was idle too long"),
            ];
            let set = due.into_iter().filter_map(|(at, why)| Some((at?, why)));
            let Some((at, why)) = set.min_by_key(|&(at, _)| at) else {
                continue;
            };
            if now_ms >= at {
                crate::log_notice!("room {}: closing: {why}", r.name.as_str());
                self.stop(slot, false, now_ms);
            } else if !r.warned && now_ms.saturating_add(WARN_LEAD_MS) >= at {
                r.warned = true;
                let secs = (at - now_ms).div_ceil(1000);
                let mut text = Line::default();
                let _ = write!(text, "bay0: this room closes in {secs} s: {why}");
                crate::log_notice!("room {}: closes in {secs} s: {why}", r.name.as_str());
                send_notice(r, text.as_bytes());
            }
        }
    }
}

/// Asks a room with a vault volume to power off; false when it has none or cannot be asked.
fn power_off(r: &Room) -> bool {
    let mut frame = [0u8; umbilical::HEADER];
    let asked = r.volume.is_some()
        && umbilical::encode(Kind::PowerOff, &[], &mut frame).is_ok()
        && r.umb.as_ref().is_some_and(|mut u| u.write(&frame).is_ok());
    if asked {
        crate::log_info!("room {}: asked to power off", r.name.as_str());
    }
    asked
}

/// What a room's end was and why: one bay0 closed ended as asked, one that powered off
/// needs no why; otherwise its VMM's last line since it was ready (its jail's, if never).
fn how_it_ended(phase: Phase, code: i32, last_err: Line) -> (&'static str, Line) {
    match (phase, code) {
        (Phase::Stopping, _) => ("closed", Line::default()),
        (_, 0) => (anchor_proto::exit::room(0), Line::default()),
        _ => (anchor_proto::exit::room(code), last_err),
    }
}

fn signal(r: &Room, sig: i32) {
    if let Err(e) = sys::kill(r.pid, sig) {
        crate::log_warn!("room {}: signal {sig}: {e}", r.name.as_str());
    }
}

fn send_notice(r: &Room, text: &[u8]) {
    let Some(mut umb) = r.umb.as_ref() else {
        return;
    };
    let mut frame = [0u8; umbilical::HEADER + umbilical::NOTICE_MAX];
    let text = text.get(..umbilical::NOTICE_MAX).unwrap_or(text);
    if let Ok(n) = umbilical::encode(Kind::Notice, text, &mut frame) {
        let _ = umb.write(frame.get(..n).unwrap_or_default());
    }
}

/// Renders what the room printed; true once no program holds its console (EIO: every one
/// closed it, or the VMM is gone; what they printed before is read first).
fn read_console(r: &mut Room, out: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    let Some(n) = sys::read_terminal("read room console", r.pty.as_raw_fd(), &mut buf) else {
        return true;
    };
    r.console_left = r.console_left.map(|left| left.saturating_sub(n));
    let start = out.len();
    r.render.render(buf.get(..n).unwrap_or_default(), out);
    r.scroll.push(out.get(start..).unwrap_or_default());
    // bay0 is the room's terminal: it answers where the cursor is (see cursor_report).
    if let Some(reply) = r.render.cursor_report() {
        let _ = sys::write("answer the room", r.pty.as_raw_fd(), reply.as_bytes());
    }
    false
}

/// Logs the VMM's (and jail's) stderr lines under the room's name; keeps the last one.
/// True once every writer has closed it. At most `reads` reads: a few a turn, so that a VMM
/// writing without pause does not hold the loop (epoll is level-triggered: what is left
/// wakes the next turn); the rest of the pipe (at most 1 MiB) once the room has ended.
fn read_stderr(r: &mut Room, reads: usize) -> bool {
    let mut buf = [0u8; 1024];
    for _ in 0..reads {
        match sys::read("read room stderr", r.err.as_raw_fd(), &mut buf) {
            Ok(0) => return true,
            Ok(n) => r.err_line.feed(buf.get(..n).unwrap_or_default(), |line| {
                crate::log_info!("room {}: {line}", r.name.as_str());
                r.last_err = Line::parse(line, |_| true).unwrap_or_default();
            }),
            Err(_) => return false,
        }
    }
    false
}

fn accept_umbilical(r: &mut Room, slot: usize, ep: &OwnedFd) {
    // A few a turn: a room connecting without pause must not hold the loop (epoll is
    // level-triggered: what is left wakes the next turn, after the other descriptors).
    for (conn, _) in (0..8).map_while(|_| r.umb_listen.accept().ok()) {
        // One agent at a time: the first connection is the agent (it connects before any
        // other program of the room runs); others are refused while it holds its own. A
        // new one is read from its first byte, never as the rest of an old one's frame.
        if r.umb.is_none()
            && conn.set_nonblocking(true).is_ok()
            && sys::epoll_add(ep, conn.as_raw_fd(), token(slot, 3)).is_ok()
        {
            (r.umb, *r.dec) = (Some(conn), Decoder::default());
        }
    }
}

/// Reads umbilical frames (courier requests become notices); true when the agent
/// reported ready. A frame that breaks the rules ends the umbilical for good: no other
/// connection is taken (one logged line, however often the room would try again).
fn read_umbilical(r: &mut Room, notices: &mut Vec<Notice>, ep: &OwnedFd) -> bool {
    let Some(mut umb) = r.umb.as_ref() else {
        return false;
    };
    let mut ready = false;
    let mut payload = [0u8; umbilical::PAYLOAD_MAX];
    // A few reads a turn: a room writing without pause neither holds the loop nor piles up
    // requests here (epoll is level-triggered: what is left wakes the next turn).
    for _ in 0..8 {
        let space = r.dec.space();
        let n = match umb.read(space) {
            Ok(n @ 1..) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Ok(0) | Err(_) => {
                r.umb = None;
                break;
            }
        };
        r.dec.filled(n);
        loop {
            match r.dec.next_frame(&mut payload) {
                Ok(Some((Kind::Ready, _))) if r.phase == Phase::Booting => {
                    r.phase = Phase::Ready;
                    ready = true;
                }
                // A room set aside by a reset no longer speaks for its name (its successor does).
                Ok(Some((Kind::CourierRequest, n))) if r.aside.is_none() => {
                    let req = Manifest::decode(payload.get(..n).unwrap_or_default());
                    notices.push(Notice::Courier(r.name, req));
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    crate::log_warn!("room {}: {e}; umbilical closed for good", r.name.as_str());
                    let _ = sys::epoll_del(ep, r.umb_listen.as_raw_fd());
                    r.umb = None;
                    return ready;
                }
            }
        }
        if r.umb.is_none() {
            break;
        }
    }
    ready
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A room as bay0 keeps it, with its umbilical listener at `dir/NAME.sock` and no
    /// process behind it (its pid is one no process has: a signal to it fails, logged).
    pub(crate) fn room(name: &str, dir: &Path) -> Room {
        let null = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let text = format!("name = \"{name}\"\nimage = \"base\"\nbackend = \"namespaces\"\n[resources]\nmemory = \"64MiB\"\nvcpus = 1\n");
        let policy = anchor_policy::parse("r.toml", text.as_bytes()).unwrap();
        let umb_listen = UnixListener::bind(dir.join(format!("{name}.sock"))).unwrap();
        umb_listen.set_nonblocking(true).unwrap();
        Room {
            name: crate::config::room_name(name).unwrap(),
            backend: "namespaces",
            pid: i32::MAX,
            phase: Phase::Ready,
            started_ms: 0,
            ready_ms: 0,
            memory_mib: 64,
            vcpus: 1,
            charged_mib: 64,
            restart: false,
            kill_at_ms: u64::MAX,
            max_at_ms: None,
            idle_ms: None,
            last_input_ms: 0,
            warned: false,
            aside: None,
            volume: None,
            pty: null(),
            console_left: Some(CONSOLE_BYTES_PER_S),
            render: Renderer::for_screen(name, 80),
            scroll: Scrollback::default(),
            err: null(),
            err_line: Default::default(),
            last_err: Line::default(),
            umb_listen,
            umb: None,
            dec: Box::default(),
            courier: policy.courier().clone(),
        }
    }

    /// Rooms holding one room, `name`, whose console is a real pty watched on `ep` as bay0
    /// watches a room's; and the room's end of that pty (what its programs write to).
    fn room_on_a_pty(name: &str, dir: &Path, ep: &OwnedFd) -> (Rooms, OwnedFd) {
        let mut rooms = Rooms::new(Layout::under(dir), false);
        let mut r = room(name, dir);
        let (pty, tty) = sys::open_pty().unwrap();
        sys::epoll_add(ep, pty.as_raw_fd(), token(0, 0)).unwrap();
        r.pty = pty;
        rooms.slots[0] = Some(r);
        (rooms, tty)
    }

    pub(crate) fn scratch(what: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("bay0-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A room whose processes connect to its umbilical without pause (a second connection
    /// is refused while the agent holds its own) must not hold bay0's loop: one turn
    /// takes a few connections, epoll (level-triggered) brings the listener back after the
    /// other descriptors had theirs. Before, one turn accepted until none was left: 8
    /// processes of a namespace room connecting in a loop held bay0 for 20 to 62 s at a
    /// time (no console, no control request, no reaping, no watchdog tickle: the
    /// hardware watchdog resets the machine after 60 s without one).
    #[test]
    fn a_room_connecting_to_its_umbilical_without_pause_does_not_hold_the_loop() {
        let dir = scratch("umb-flood");
        let ep = sys::epoll().unwrap();
        let mut rooms = Rooms::new(Layout::under(&dir), false);
        rooms.slots[0] = Some(room("flood", &dir));
        let path = dir.join("flood.sock");
        let _agent = UnixStream::connect(&path).unwrap();
        let others: Vec<UnixStream> = (0..100)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let (mut notices, mut out) = (Vec::new(), Vec::new());
        rooms.on_token(&ep, token(0, 2), &mut notices, &mut out);
        // The first connection is the agent's.
        assert!(rooms.get(0).unwrap().umb.is_some());
        // The others were closed unread, but not all of them in one turn.
        let closed = |s: &UnixStream| {
            s.set_nonblocking(true).unwrap();
            matches!((&*s).read(&mut [0u8; 1]), Ok(0))
        };
        let gone = others.iter().filter(|s| closed(s)).count();
        assert!(
            gone < others.len(),
            "one turn accepted all {gone} connections"
        );
        // Later turns take the rest.
        for _ in 0..others.len() {
            rooms.on_token(&ep, token(0, 2), &mut notices, &mut out);
        }
        assert_eq!(others.iter().filter(|s| closed(s)).count(), others.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Regression (review): a room printing without pause (`yes`) had bay0 read, render and
    /// draw all of it, work done in bay0's time, outside the room's cgroup and its
    /// cpu.max. bay0 reads [`CONSOLE_BYTES_PER_S`] of a room's console a second, then
    /// unwatches its pty till the next tick (its writers wait on the full pty); the tick
    /// watches it again with a new budget, and nothing printed is lost.
    #[test]
    fn a_room_printing_without_pause_gets_its_console_budget_a_second() {
        let dir = scratch("console-flood");
        let ep = sys::epoll().unwrap();
        let (mut rooms, tty) = room_on_a_pty("flood", &dir, &ep);
        sys::set_nonblocking(tty.as_raw_fd()).unwrap();
        let (mut notices, mut out) = (Vec::new(), Vec::new());
        let (mut written, mut rendered) = (0usize, 0usize);
        let line = [b'y'; 1000];
        let mut budgets = 0;
        // The pty hands what the room wrote on to bay0's side a moment later.
        let watched = |ep: &OwnedFd| {
            let mut tokens = [0u64; 16];
            sys::epoll_wait(ep, &mut tokens, 300).unwrap() > 0
        };
        while budgets < 3 {
            // The room fills its pty; bay0 takes what its loop is woken for.
            while let Ok(n) = sys::write("room prints", tty.as_raw_fd(), &line) {
                written += n;
            }
            if watched(&ep) {
                out.clear();
                rooms.on_token(&ep, token(0, 0), &mut notices, &mut out);
                rendered += out.iter().filter(|&&b| b == b'y').count();
                assert!(
                    rendered < (budgets + 1) * (CONSOLE_BYTES_PER_S + 4096),
                    "{rendered} bytes read in {budgets} seconds and still watched"
                );
                continue;
            }
            // Unwatched: this second's budget was read (the last read may pass it by less
            // than one read's buffer), and the pty holds more.
            let left = rooms.get(0).unwrap().console_left;
            assert_eq!(left, Some(0), "unwatched with budget left");
            budgets += 1;
            assert!(
                rendered < budgets * (CONSOLE_BYTES_PER_S + 4096),
                "{rendered} bytes rendered in {budgets} seconds"
            );
            assert!(
                rendered + 4096 > budgets * CONSOLE_BYTES_PER_S,
                "{rendered}"
            );
            rooms.tick(0, &ep);
            assert_eq!(
                rooms.get(0).unwrap().console_left,
                Some(CONSOLE_BYTES_PER_S)
            );
            assert!(watched(&ep), "the tick does not watch the console again");
        }
        // Nothing is lost: what the room wrote is all read once it stops.
        loop {
            out.clear();
            rooms.on_token(&ep, token(0, 0), &mut notices, &mut out);
            let n = out.iter().filter(|&&b| b == b'y').count();
            if n == 0 && !watched(&ep) && rooms.get(0).unwrap().console_left != Some(0) {
                break;
            }
            rendered += n;
            if !watched(&ep) {
                rooms.tick(0, &ep);
            }
        }
        assert_eq!(rendered, written);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Regression (review, compromised VMM): a room's VMM writing its stderr without
    /// pause (its seccomp filter allows `write`, from every thread) must not hold bay0's
    /// loop, any more than its umbilical may: one turn reads a few KiB of it, epoll
    /// (level-triggered) brings it back after the other descriptors had theirs. Before,
    /// one turn read until the pipe was empty, which a writer on the other CPU keeps
    /// it from ever being: no console, no control request, no reaping, no watchdog.
    #[test]
    fn a_vmm_writing_its_stderr_without_pause_does_not_hold_the_loop() {
        let dir = scratch("stderr-flood");
        let ep = sys::epoll().unwrap();
        let mut rooms = Rooms::new(Layout::under(&dir), false);
        let mut r = room("flood", &dir);
        let (err, err_w) = sys::pipe().unwrap();
        r.err = err;
        rooms.slots[0] = Some(r);
        // Half a pipe of lines: what a writer that never stops keeps there, and more.
        let mut w = std::fs::File::from(err_w);
        let line = [b"x".repeat(63), b"\n".to_vec()].concat();
        for _ in 0..32 * 1024 / line.len() {
            w.write_all(&line).unwrap();
        }
        let (mut notices, mut out) = (Vec::new(), Vec::new());
        rooms.on_token(&ep, token(0, 1), &mut notices, &mut out);
        let r = rooms.get(0).unwrap();
        assert_eq!(r.last_err.as_str(), "x".repeat(63), "it read some lines");
        let mut left = [0u8; 1];
        let n = sys::read("test", r.err.as_raw_fd(), &mut left);
        assert!(matches!(n, Ok(1)), "one turn read the whole pipe: {n:?}");
        // Later turns take the rest, and see the writer gone.
        drop(w);
        for _ in 0..64 {
            rooms.on_token(&ep, token(0, 1), &mut notices, &mut out);
        }
        assert!(
            sys::read("test", rooms.get(0).unwrap().err.as_raw_fd(), &mut left)
                .is_ok_and(|n| n == 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A room whose programs all close its console (a namespace room's, or a compromised
    /// VMM, closing their stdio) and go on running: the pty's master then reads EIO and
    /// polls EPOLLHUP for good. bay0 must stop watching it, as it does a room's stderr and
    /// its own console: before, the level-triggered EPOLLHUP woke the loop without pause
    /// for the room's whole life (one core of the host spent on reads that fail).
    #[test]
    fn a_room_that_closes_its_console_is_no_longer_watched() {
        let dir = scratch("pty-hup");
        let ep = sys::epoll().unwrap();
        let (mut rooms, slave) = room_on_a_pty("hup", &dir, &ep);
        // What it printed before it closed the console is still shown.
        std::fs::File::from(slave).write_all(b"bye\n").unwrap();
        let mut tokens = [0u64; 16];
        let (mut notices, mut out) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            if sys::epoll_wait(&ep, &mut tokens, 0).unwrap() == 0 {
                break;
            }
            rooms.on_token(&ep, token(0, 0), &mut notices, &mut out);
        }
        assert!(
            String::from_utf8_lossy(&out).contains("hup| bye"),
            "{out:?}"
        );
        let n = sys::epoll_wait(&ep, &mut tokens, 0).unwrap();
        assert_eq!(n, 0, "the closed console still wakes the loop");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A reset sets the old room aside while a new room of the same name opens: a
    /// courier request still arriving on the old one's umbilical is not the new room's
    /// (bay0 would answer it on the new room's umbilical, with the new room's rights).
    #[test]
    fn a_room_set_aside_makes_no_courier_request() {
        let dir = scratch("umb-aside");
        let ep = sys::epoll().unwrap();
        let mut rooms = Rooms::new(Layout::under(&dir), false);
        let m = Manifest::new([1; 16], "work", b"a.txt", 1, [2; 32]).unwrap();
        let frame = umbilical::encode_vec(Kind::CourierRequest, &m.to_vec()).unwrap();
        let mut agents = Vec::new();
        for (slot, name, aside) in [(0, "web", true), (1, "other", false)] {
            let mut r = room(name, &dir);
            let (bay0, mut agent) = UnixStream::pair().unwrap();
            bay0.set_nonblocking(true).unwrap();
            agent.write_all(&frame).unwrap();
            r.umb = Some(bay0);
            r.aside = aside
                .then(|| Leftover::parse("web_4242", |_| true))
                .flatten();
            rooms.slots[slot] = Some(r);
            agents.push(agent);
        }
        let mut notices = Vec::new();
        rooms.on_token(&ep, token(0, 3), &mut notices, &mut Vec::new());
        assert!(notices.is_empty(), "{notices:?}");
        // The same frame on an open room's umbilical is its request.
        rooms.on_token(&ep, token(1, 3), &mut notices, &mut Vec::new());
        assert!(matches!(notices.as_slice(), [Notice::Courier(n, Ok(_))] if n.as_str() == "other"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Found driving a namespace room: `exit` at its shell (the room powered off) was
    /// logged and audited with `why=anchor-jail: room nsb: landlock applied (kernel ABI
    /// 7)`, the jail's last line before it became the agent; a web room that powered off
    /// would have had its VMM's "net: backend closed" as the why. A room's setup lines
    /// are forgotten once it is ready; a room that powered off has no why.
    #[test]
    fn a_rooms_setup_lines_and_a_power_off_give_no_reason_it_ended() {
        let dir = scratch("why");
        let ep = sys::epoll().unwrap();
        let mut rooms = Rooms::new(Layout::under(&dir), false);
        let mut r = room("ns", &dir);
        r.phase = Phase::Booting;
        let (err, err_w) = sys::pipe().unwrap();
        r.err = err;
        let (bay0, mut agent) = UnixStream::pair().unwrap();
        bay0.set_nonblocking(true).unwrap();
        r.umb = Some(bay0);
        rooms.slots[0] = Some(r);
        let mut w = std::fs::File::from(err_w);
        let (mut notices, mut out) = (Vec::new(), Vec::new());
        w.write_all(b"anchor-jail: room ns: landlock applied\n")
            .unwrap();
        rooms.on_token(&ep, token(0, 1), &mut notices, &mut out);
        let last = |rooms: &Rooms| rooms.get(0).unwrap().last_err;
        assert_eq!(
            last(&rooms).as_str(),
            "anchor-jail: room ns: landlock applied"
        );
        agent
            .write_all(&umbilical::encode_vec(Kind::Ready, &[]).unwrap())
            .unwrap();
        rooms.on_token(&ep, token(0, 3), &mut notices, &mut out);
        assert!(
            matches!(notices.as_slice(), [Notice::Ready { slot: 0, .. }]),
            "{notices:?}"
        );
        assert_eq!(last(&rooms).as_str(), "", "a setup line outlived the ready");
        // A line after the ready is the reason of an end that was no power-off.
        w.write_all(b"anchor-vmm: the guest faulted\n").unwrap();
        rooms.on_token(&ep, token(0, 1), &mut notices, &mut out);
        let (phase, line) = (Phase::Ready, last(&rooms));
        assert_eq!(
            how_it_ended(phase, 4, line),
            ("the room's guest faulted", line)
        );
        assert_eq!(line.as_str(), "anchor-vmm: the guest faulted");
        let none = Line::default();
        assert_eq!(how_it_ended(phase, 0, line), ("the room powered off", none));
        assert_eq!(how_it_ended(Phase::Stopping, 4, line), ("closed", none));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_room_that_does_not_fit_is_refused_with_both_figures() {
        let e = admission::admit(1024, 0, 2112)
            .map_err(Error::Memory)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("needs 2112 MiB") && msg.contains("832 MiB are left"),
            "{msg}"
        );
        assert!(mem_total_mib() > 0);
    }

    #[test]
    fn a_room_set_aside_moves_its_run_directory_and_cgroups_or_nothing() {
        let tmp = std::env::temp_dir().join(format!("bay0-aside-{}", std::process::id()));
        let (run, cg) = (tmp.join("run"), tmp.join("cg"));
        for dir in [
            "run/web",
            "run/work",
            "cg/anchor/web",
            "cg/memory/anchor/web",
            "cg/memory/anchor/work",
        ] {
            std::fs::create_dir_all(tmp.join(dir)).unwrap();
        }
        assert_eq!(
            set_aside(&run, &cg, "web", 4242).unwrap().as_str(),
            "web_4242"
        );
        for dir in [
            "run/web_4242",
            "cg/anchor/web_4242",
            "cg/memory/anchor/web_4242",
        ] {
            assert!(tmp.join(dir).is_dir(), "{dir}");
        }
        assert!(!run.join("web").exists() && !cg.join("anchor/web").exists());
        // A cgroup that cannot be moved (the name is taken): everything stays where it was.
        std::fs::create_dir_all(cg.join("memory/anchor/work_4243/busy")).unwrap();
        assert!(set_aside(&run, &cg, "work", 4243).is_none());
        assert!(run.join("work").is_dir() && cg.join("memory/anchor/work").is_dir());
        assert!(cg.join("memory/anchor/work_4243/busy").is_dir());
        // No run directory to move: the cgroups moved first are moved back.
        std::fs::create_dir_all(cg.join("anchor/gone")).unwrap();
        assert!(set_aside(&run, &cg, "gone", 4244).is_none());
        assert!(cg.join("anchor/gone").is_dir() && !cg.join("anchor/gone_4244").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
