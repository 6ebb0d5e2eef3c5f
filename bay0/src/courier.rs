// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier arbiter's I/O (docs/COURIER-PROTOCOL.md); the decisions are
//! anchor-policy's `Arbiter`. A request comes from a room's umbilical (that room is the
//! sender); the prompt is drawn by bay0 on /dev/fb0 (anchor-text) and logged on the
//! console, which is held from the rooms meanwhile; the answer is a key bay0 reads from
//! evdev; on yes bay0 connects to both rooms' agents and starts the one-shot
//! anchor-courier with only those two connections; every request ends in one answer to
//! the sender and one hash-chained audit record (anchor-audit).

use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use anchor_policy::arbiter::{Arbiter, RoomView, Step, Verdict};
use anchor_proto::courier::{Launch, Malformed, Manifest, CHANNEL_FRAME, CONNECT_LINE};
use anchor_text::prompt::{Prompt, Surface};

use crate::config::RoomName;
use crate::room::ROOM_UID_BASE;
use crate::rooms::{Phase, Rooms};
use crate::sys;

const NEWPID: i32 = libc::CLONE_NEWPID;

/// The audit log's path for bay0: a file until the vault is open, then anchor-vault's
/// symlink to /persist's log (docs/AUDIT-LOG-FORMAT.md).
pub const AUDIT_LOG: &str = anchor_policy::audit::PRE_UNLOCK_LOG;
/// The prompt is up: bay0's console shows nothing but bay0's own lines, and no key typed
/// on it reaches a room or the operator shell.
pub static HOLD: AtomicBool = AtomicBool::new(false);
/// No key typed on bay0's console reaches a room or the operator shell: the prompt is up,
/// or the key that ended it is not up yet (`Arbiter::holds_keys`).
pub static KEYS_HELD: AtomicBool = AtomicBool::new(false);

/// The arbiter and the running courier's stderr.
#[derive(Debug, Default)]
pub struct Courier {
    pub arb: Arbiter,
    err: Option<std::fs::File>,
}

type Request = core::result::Result<Manifest, Malformed>;

impl Courier {
    /// A request from room `from`.
    pub fn request(&mut self, rooms: Option<&Rooms>, from: &str, req: Request, now: u64) {
        let v = self.arb.request(now, from, req, |n| view(rooms, n));
        self.done(rooms, v);
    }

    /// Keys were pressed or released on a keyboard (each when the kernel saw it): maybe the
    /// answer, or the end of the key that answered.
    pub fn key(&mut self, rooms: Option<&Rooms>, keys: &[crate::input::Press], now: u64) {
        let (true, mut id) = (self.arb.holds_keys() && !keys.is_empty(), [0u8; 16]) else {
            return;
        };
        let v = match sys::getrandom(&mut id).map(|()| self.arb.keys(now, keys, id)) {
            Ok(Some(Step::Launch(l))) => match launch(rooms, &l) {
                Ok((pid, err)) => self.err.replace(err.into()).and(self.arb.started(Ok(pid))),
                Err(e) => self.arb.started(Err(&e)),
            },
            Ok(Some(Step::Done(v))) => Some(*v),
            _ => None,
        };
        self.done(rooms, v);
    }

    /// A child ended (`room`: the room whose VMM it was).
    pub fn ended(&mut self, rooms: Option<&Rooms>, pid: i32, status: i32, room: Option<RoomName>) {
        let (mut out, mine) = ([0u8; 1024], self.arb.courier() == Some(pid));
        let err = self.err.take_if(|_| mine);
        let n = err.map_or(0, |mut f| f.read(&mut out).unwrap_or(0));
        let st = crate::supervisor::WaitStatus(status);
        let text = out.get(..n).unwrap_or_default();
        // A room reset beside its old self: the old one's end is not the new one's.
        let again = |n: &str| Some(rooms?.get(rooms?.find(n)?)?.started_ms);
        let room = room.as_ref().map(RoomName::as_str).map(|n| (n, again(n)));
        let v = self.arb.reaped(pid, st.exit_code() == 0, text, &st, room);
        self.done(rooms, v);
    }

    /// Concludes a verdict (the answer to the sender, the log line, the audit record),
    /// clears the prompt when it has gone, gives the slot to the next waiting request
    /// (concluding those refused or cancelled) and shows its prompt.
    pub fn done(&mut self, rooms: Option<&Rooms>, v: Option<Verdict>) {
        if let Some(v) = v {
            conclude(rooms, v);
        }
        if !self.arb.prompting() && HOLD.swap(false, Relaxed) {
            let _ = sys::fb_present(|v, f| Surface::from_fbdev(v, f).map(|s| s.blank()), false);
        }
        while let Some(v) = self.arb.next(sys::monotonic_ms(), |n| view(rooms, n)) {
            conclude(rooms, v);
        }
        if let (Some((from, m, t)), false) =
            (self.arb.asking(), HOLD.swap(self.arb.prompting(), Relaxed))
        {
            let to = String::from_utf8_lossy(m.room());
            let p = Prompt::of(from, &to, m.name(), m.size, &m.sha256, t);
            // Without a framebuffer (or a format it can draw) the console has the prompt.
            let drawn = |v: &_, f: &_| Surface::from_fbdev(v, f).and_then(|s| p.draw(&s));
            let (_, lines) = (sys::fb_present(drawn, true), p.lines(100));
            // A key counts from when it is drawn (then it is logged).
            self.arb.shown(sys::monotonic_ms());
            for l in lines {
                crate::log_notice!("courier: {l}");
            }
        }
        KEYS_HELD.store(self.arb.holds_keys(), Relaxed);
    }
}

/// Room `n` as the arbiter sees it, if it is open.
fn view<'a>(rooms: Option<&'a Rooms>, n: &str) -> Option<RoomView<'a>> {
    let r = rooms?.get(rooms?.find(n)?)?;
    Some(RoomView::new(
        &r.courier,
        r.phase == Phase::Ready,
        r.backend,
    ))
}

/// The answer to the sender, the log line, the audit record. A refusal over the room's
/// budget is neither logged nor audited on its own (a room must not flood either): the
/// next verdict that is says how many there were.
fn conclude(rooms: Option<&Rooms>, v: Verdict) {
    let sender = rooms.and_then(|r| r.get(r.find(&v.from)?));
    if let Some(mut umb) = sender.and_then(|r| r.umb.as_ref()) {
        let _ = umb.write(&v.answer());
    }
    if v.audit {
        crate::log_notice!("{v}");
        crate::vault::audit_with(|log| v.record_now(log));
    }
}

/// Connects to both rooms' agents (a microVM room's hybrid vsock socket, used only if its
/// listener is the room's uid; a namespace room gets a socket passed on its umbilical:
/// anchor-sys `channel`) and starts anchor-courier with the two connections as its stdin
/// and stdout; its pid and the read end of its stderr.
fn launch(rooms: Option<&Rooms>, l: &Launch) -> crate::error::Result<(i32, OwnedFd)> {
    let nul = crate::error::Error::Room("a NUL byte in the courier's command");
    let argv = l.argv(b"/usr/lib/anchor/anchor-courier").ok_or(nul)?;
    let rooms = rooms.ok_or(crate::error::Error::Room("no room table"))?;
    let open = |(n, vsock): (&str, bool)| {
        let slot = rooms.find(n).unwrap_or(usize::MAX);
        let uid = ROOM_UID_BASE.saturating_add(u32::try_from(slot).unwrap_or(u32::MAX));
        let umb = rooms.get(slot).and_then(|r| r.umb.as_ref());
        let at = rooms.layout.run.join(n).join("vsock");
        sys::Side::new(vsock, &at, uid, umb).open(CONNECT_LINE, &CHANNEL_FRAME)
    };
    let [from, to] = l.sides().map(open);
    Ok(sys::spawn_connected(&argv, [from?, to?], NEWPID)?)
}
