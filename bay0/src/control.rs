// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's control socket: `/run/anchor/control.sock`, mode 0600, root peers only
//! (SO_PEERCRED), served by the event loop without ever blocking it. One request line
//! per connection (anchor-proto's `control` module and docs/CONTROL-PROTOCOL.md): at most
//! 127 bytes, within 5 s of connecting, at most 16 connections at once (more are told
//! `err busy` and closed). `start`, `stop` and `reset` answer when the room is ready or
//! gone; `console` turns the connection into the room's console.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};

use anchor_proto::control::{self, Verb, MAX_CLIENTS, REQUEST_MAX, REQUEST_TIMEOUT_MS};

use crate::error::{io, Result};
use crate::logger::Line;
use crate::rooms::{Notice, Phase, Rooms};
use crate::sys;
use core::fmt::Write as _;

/// epoll token of the listening socket.
pub const TOKEN_LISTEN: u64 = 5;
/// First epoll token of the client connections.
pub const TOKEN_BASE: u64 = 200;
/// How long `start`/`reset` wait for the room's agent to report ready.
pub const READY_TIMEOUT_MS: u64 = 180_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Request,
    /// Waiting for room `.0` to be ready (start, reset) or gone (stop).
    Wait(usize, Verb),
    Console(usize),
}

#[derive(Debug)]
struct Client {
    fd: UnixStream,
    buf: [u8; REQUEST_MAX],
    len: usize,
    deadline_ms: u64,
    mode: Mode,
    /// A console client: shown the room's output at its own pace, from the scrollback.
    view: anchor_text::console::Follower,
}

/// The listener and its clients.
#[derive(Debug)]
pub struct Control {
    listener: UnixListener,
    clients: Vec<Option<Client>>,
}

/// `say!(stream, "format", args...)`: one formatted line to a client.
macro_rules! say {
    ($fd:expr, $($arg:tt)*) => {
        send_line($fd, format_args!($($arg)*))
    };
}

/// Sends one formatted line, cut to fit with its newline (best effort: a client that does
/// not read loses it).
fn send_line(mut fd: &UnixStream, args: core::fmt::Arguments<'_>) {
    let mut line = Line::default();
    let _ = line.write_fmt(args);
    line.push_tail("\n");
    let _ = fd.write(line.as_bytes());
}

impl Control {
    /// Listens at `path` (mode 0600; its directory is root's alone anyway).
    pub fn open(ep: &OwnedFd, path: &str) -> Result<Control> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(io("bind the control socket"))?;
        let mode = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(path, mode).map_err(io("chmod the control socket"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("control socket"))?;
        sys::epoll_add(ep, listener.as_raw_fd(), TOKEN_LISTEN)?;
        Ok(Control {
            listener,
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
        })
    }

    /// Accepts waiting connections.
    pub fn accept(&mut self, ep: &OwnedFd, now_ms: u64) {
        while let Ok((fd, _)) = self.listener.accept() {
            if fd.set_nonblocking(true).is_err() {
                continue;
            }
            if !matches!(sys::peer_uid(fd.as_raw_fd()), Ok(0)) {
                say!(&fd, "err permission denied: only root may control rooms");
                continue;
            }
            let Some(i) = self.clients.iter().position(Option::is_none) else {
                say!(
                    &fd,
                    "err busy: too many control connections ({MAX_CLIENTS})"
                );
                continue;
            };
            if sys::epoll_add(ep, fd.as_raw_fd(), TOKEN_BASE + i as u64).is_err() {
                continue;
            }
            if let Some(slot) = self.clients.get_mut(i) {
                *slot = Some(Client {
                    fd,
                    buf: [0; REQUEST_MAX],
                    len: 0,
                    deadline_ms: now_ms.saturating_add(REQUEST_TIMEOUT_MS),
                    mode: Mode::Request,
                    view: Default::default(),
                });
            }
        }
    }

    /// A client connection is readable.
    pub fn on_token(&mut self, ep: &OwnedFd, tok: u64, rooms: &mut Rooms, now_ms: u64) {
        self.each(|c, t| {
            let keep = match c.mode {
                _ if t != tok => return true,
                Mode::Request => read_request(c, ep, rooms, now_ms),
                // Nothing is expected; EOF means the client gave up waiting.
                Mode::Wait(..) => !matches!((&c.fd).read(&mut [0u8; 64]), Ok(0)),
                Mode::Console(slot) => console_input(c, slot, rooms, now_ms),
            };
            // A console just attached, or room to write for one that output waits for.
            keep && follow(c, ep, tok, rooms, &[])
        });
    }

    /// Room output (`fresh`, just kept in its scrollback) for the clients attached to
    /// `slot`'s console.
    pub fn show(&mut self, ep: &OwnedFd, slot: usize, rooms: &Rooms, fresh: &[u8]) {
        self.each(|c, tok| c.mode != Mode::Console(slot) || follow(c, ep, tok, rooms, fresh));
    }

    /// Tells waiting clients what happened to a room.
    pub fn notify(&mut self, ep: &OwnedFd, notice: &Notice, rooms: &Rooms) {
        self.each(|c, tok| answer(c, notice, rooms) && follow(c, ep, tok, rooms, &[]));
    }

    /// `f` for every client and its token; closes those it returns false for (closing the
    /// descriptor also takes it out of the epoll set).
    fn each(&mut self, mut f: impl FnMut(&mut Client, u64) -> bool) {
        for (tok, slot) in (TOKEN_BASE..).zip(&mut self.clients) {
            if slot.as_mut().is_some_and(|c| !f(c, tok)) {
                *slot = None;
            }
        }
    }

    /// Once a second: clients that took too long.
    pub fn tick(&mut self, now_ms: u64, rooms: Option<&Rooms>) {
        self.each(|c, _| {
            match c.mode {
                Mode::Console(_) => return true,
                _ if now_ms < c.deadline_ms => return true,
                Mode::Request => say!(&c.fd, "err timeout: no request line within 5 s"),
                Mode::Wait(s, v) => {
                    let n = rooms.and_then(|r| Some(r.get(s)?.name.as_str()));
                    say!(&c.fd, "err room {}: {}", n.unwrap_or("?"), v.overdue())
                }
            }
            false
        });
    }
}

/// Handles a notice for one client; false when the client is done.
fn answer(c: &mut Client, notice: &Notice, rooms: &Rooms) -> bool {
    match *notice {
        Notice::Ready { slot, ms } => match c.mode {
            Mode::Wait(s, verb) if s == slot && verb != Verb::Stop => {
                let name = rooms.get(slot).map_or("?", |r| r.name.as_str());
                let (secs, centis) = (ms / 1000, (ms % 1000) / 10);
                say!(&c.fd, "ok room {name} ready in {secs}.{centis:02} s");
                false
            }
            _ => true,
        },
        Notice::Ended {
            slot,
            name,
            status,
            ref why,
            new_slot,
        } => {
            let n = name.as_str();
            match (c.mode, new_slot) {
                (Mode::Wait(s, Verb::Stop), _) if s == slot => {
                    say!(&c.fd, "ok room {n} stopped");
                    false
                }
                // Its successor (reset) may be ready already: then say so now.
                (Mode::Wait(s, verb @ (Verb::Reset | Verb::Start)), Some(ns)) if s == slot => {
                    c.mode = Mode::Wait(ns, verb);
                    let ready = rooms.get(ns).is_some_and(|r| r.phase == Phase::Ready);
                    let ms = rooms.get(ns).map_or(0, |r| r.ready_ms);
                    !ready || answer(c, &Notice::Ready { slot: ns, ms }, rooms)
                }
                (Mode::Wait(s, _), _) if s == slot => {
                    let what = anchor_proto::exit::room(status.exit_code());
                    let sep = if why.as_str().is_empty() { "" } else { ": " };
                    say!(
                        &c.fd,
                        "err room {n}: ended before it was ready ({status}: {what}){sep}{}",
                        why.as_str()
                    );
                    false
                }
                (Mode::Console(s), ns) if s == slot => {
                    say!(&c.fd, "\x18\r\nbay0: room {n} ended ({status})\r");
                    // On in its successor (reset), shown from its first line; else closed.
                    c.mode = Mode::Console(ns.unwrap_or(s));
                    c.view.restart();
                    ns.is_some()
                }
                _ => true,
            }
        }
        Notice::Courier(..) => true,
    }
}

/// Reads the request line; false when the connection is done.
fn read_request(c: &mut Client, ep: &OwnedFd, rooms: &mut Rooms, now_ms: u64) -> bool {
    let space = c.buf.get_mut(c.len..).unwrap_or_default();
    match (&c.fd).read(space) {
        Ok(0) => return false,
        Ok(n) => c.len = c.len.saturating_add(n).min(REQUEST_MAX),
        Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
    }
    let filled = c.buf.get(..c.len).unwrap_or_default();
    let Some(end) = filled.iter().position(|&b| b == b'\n') else {
        if c.len >= REQUEST_MAX {
            say!(&c.fd, "err {}", control::RequestError::TooLong);
            return false;
        }
        return true;
    };
    let req = match control::parse_request(filled.get(..end).unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => {
            say!(&c.fd, "err {e}");
            return false;
        }
    };
    let name = req.room;
    let running = rooms.find(name);
    match (req.verb, running) {
        (Verb::List, _) => {
            list(&c.fd, rooms, now_ms);
            say!(&c.fd, "ok");
            false
        }
        (Verb::Start, _) => {
            let mut detail = Line::default();
            match rooms.start(ep, (name, "opened"), now_ms, &mut detail) {
                Ok(slot) => {
                    c.mode = Mode::Wait(slot, Verb::Start);
                    c.deadline_ms = now_ms.saturating_add(READY_TIMEOUT_MS);
                    true
                }
                Err(e) => {
                    let sep = if detail.as_str().is_empty() { "" } else { ": " };
                    say!(&c.fd, "err room {name}: {e}{sep}{}", detail.as_str());
                    false
                }
            }
        }
        (_, None) => {
            say!(&c.fd, "err room {name}: not running");
            false
        }
        (Verb::Stop | Verb::Reset, Some(slot)) => {
            let wait = match req.verb {
                Verb::Reset => rooms.reset(ep, slot, now_ms),
                _ => {
                    rooms.stop(slot, false, now_ms);
                    slot
                }
            };
            c.mode = Mode::Wait(wait, req.verb);
            c.deadline_ms = now_ms.saturating_add(READY_TIMEOUT_MS);
            true
        }
        (Verb::Console, Some(slot)) => {
            say!(&c.fd, "ok attached to room {name} (Ctrl-] detaches)");
            if let Some(r) = rooms.get_mut(slot) {
                // Its scrollback is shown at once (on_token follows it).
                c.view.restart();
                r.last_input_ms = now_ms;
            }
            c.mode = Mode::Console(slot);
            true
        }
    }
}

/// Shows a console client what it was not shown yet of its room's output (`fresh` the
/// newest, just kept). While output waits for it, bay0 waits for room to write too. False
/// when its connection broke (a write error other than WouldBlock) or its room is gone.
fn follow(c: &mut Client, ep: &OwnedFd, tok: u64, rooms: &Rooms, fresh: &[u8]) -> bool {
    let Mode::Console(slot) = c.mode else {
        return true;
    };
    match rooms
        .get(slot)
        .map(|r| c.view.follow(&r.scroll, fresh, |b| (&c.fd).write(b)))
    {
        Some(Ok(Some(behind))) => sys::epoll_watch(ep, c.fd.as_raw_fd(), tok, behind).is_ok(),
        // A console of a room that is gone (never left so: see answer) is closed.
        r => matches!(r, Some(Ok(_))),
    }
}

/// Keyboard input from an attached client goes to the room's console.
fn console_input(c: &mut Client, slot: usize, rooms: &mut Rooms, now_ms: u64) -> bool {
    let mut buf = [0u8; 1024];
    let n = match (&c.fd).read(&mut buf) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
    };
    if let Some(r) = rooms.get_mut(slot) {
        r.last_input_ms = now_ms;
        r.render.typed();
        let keys = buf.get(..n).unwrap_or_default();
        let _ = sys::write("console input", r.pty.as_raw_fd(), keys);
    }
    true
}

/// `room ...` records for open rooms and the rooms that have a policy, then `host ...`.
fn list(fd: &UnixStream, rooms: &Rooms, now_ms: u64) {
    for r in rooms.slots.iter().flatten() {
        let up = now_ms.saturating_sub(r.started_ms) / 1000;
        say!(
            fd,
            "room name={} backend={} state={} uptime_s={up} memory_mib={} vcpus={} pid={}",
            r.name.as_str(),
            r.backend,
            r.phase.as_str(),
            r.memory_mib,
            r.vcpus,
            r.pid
        );
    }
    let files = anchor_policy::policy_files(&rooms.layout.policies).unwrap_or_default();
    for name in files.iter().filter_map(|f| f.file_stem()?.to_str()) {
        if anchor_proto::name::is_valid(name) && rooms.find(name).is_none() {
            say!(fd, "room name={name} state=stopped");
        }
    }
    let total = crate::rooms::mem_total_mib();
    let reserved = anchor_policy::admission::reserve_mib(total);
    let used = rooms.used_mib();
    say!(
        fd,
        "host memory_mib={total} reserved_mib={reserved} rooms_mib={used} free_mib={}",
        total.saturating_sub(reserved).saturating_sub(used)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::tests::{room, scratch};

    /// Every answer is one whole line, however long what it carries: a room that ends
    /// before it is ready is answered with its VMM's last stderr line, which may fill a
    /// log line on its own (a long error chain, or a VMM taken over by its guest). The
    /// newline was written only if it still fitted: the client got 512 bytes and no line
    /// end, which anchorctl reports as "bay0 sent a malformed line", the reason lost.
    #[test]
    fn an_answer_carrying_a_long_vmm_line_is_one_whole_line() {
        let dir = scratch("ctl-long");
        let ep = sys::epoll().unwrap();
        let path = dir.join("control.sock");
        let mut ctl = Control::open(&ep, path.to_str().unwrap()).unwrap();
        let rooms = Rooms::new(crate::room::Layout::under(&dir), false);
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ctl.clients[0] = Some(Client {
            fd: ours,
            buf: [0; REQUEST_MAX],
            len: 0,
            deadline_ms: READY_TIMEOUT_MS,
            mode: Mode::Wait(0, Verb::Start),
            view: Default::default(),
        });
        let why = Line::parse(&"anchor-vmm: x".repeat(38), |_| true).unwrap();
        let notice = Notice::Ended {
            slot: 0,
            name: crate::config::room_name("web").unwrap(),
            status: crate::supervisor::WaitStatus(3 << 8),
            why,
            new_slot: None,
        };
        ctl.notify(&ep, &notice, &rooms);
        assert!(ctl.clients[0].is_none(), "answered and closed");
        let mut said = String::new();
        theirs.read_to_string(&mut said).unwrap();
        assert!(said.ends_with('\n'), "no line end in {} bytes", said.len());
        assert!(said.len() <= control::REPLY_LINE_MAX, "{}", said.len());
        let reply = control::parse_reply(said.trim_end_matches('\n'));
        assert!(
            matches!(&reply, Some(control::Reply::Err(e)) if e.starts_with("room web: ended before it was ready")),
            "{reply:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A client whose wait runs out hears which room and what it waited for: a start or
    /// reset waits for the agent's ready, a stop for the room's end (it was told "did not
    /// report ready" for a stop, and no room was named).
    #[test]
    fn a_wait_that_runs_out_names_the_room_and_what_did_not_happen() {
        let dir = scratch("ctl-overdue");
        let ep = sys::epoll().unwrap();
        let path = dir.join("control.sock");
        let mut ctl = Control::open(&ep, path.to_str().unwrap()).unwrap();
        let mut rooms = Rooms::new(crate::room::Layout::under(&dir), false);
        rooms.slots[0] = Some(room("web", &dir));
        let mut peers = Vec::new();
        for (i, verb) in [Verb::Start, Verb::Stop, Verb::Reset]
            .into_iter()
            .enumerate()
        {
            let (ours, theirs) = UnixStream::pair().unwrap();
            ctl.clients[i] = Some(Client {
                fd: ours,
                buf: [0; REQUEST_MAX],
                len: 0,
                deadline_ms: READY_TIMEOUT_MS,
                mode: Mode::Wait(0, verb),
                view: Default::default(),
            });
            peers.push(theirs);
        }
        ctl.tick(READY_TIMEOUT_MS - 1, Some(&rooms));
        assert!(
            ctl.clients.iter().take(3).all(Option::is_some),
            "ran out early"
        );
        ctl.tick(READY_TIMEOUT_MS, Some(&rooms));
        let secs = READY_TIMEOUT_MS / 1000;
        let said: Vec<String> = peers
            .iter_mut()
            .map(|p| {
                let mut s = String::new();
                p.read_to_string(&mut s).unwrap();
                s
            })
            .collect();
        assert_eq!(
            said,
            [
                format!("err room web: its agent did not report ready within {secs} s\n"),
                format!("err room web: its agent has not ended within {secs} s\n"),
                format!("err room web: its agent did not report ready within {secs} s\n"),
            ]
        );
        assert!(ctl.clients.iter().all(Option::is_none));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
