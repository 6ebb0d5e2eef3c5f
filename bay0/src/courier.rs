// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier arbiter's I/O (docs/COURIER-PROTOCOL.md); the decisions are
//! anchor-policy's `Arbiter`. A request comes from a room's umbilical (that room is the
//! sender); the prompt is drawn by bay0 on /dev/fb0 (anchor-text) and logged on the
//! console, which is held from the rooms meanwhile; the answer is a key bay0 reads from
//! evdev; on yes bay0 connects to both rooms' agents and starts the one-shot
//! anchor-courier with only those two connections; every request ends in one answer to
//! the sender and one hash-chained audit record (anchor-audit).

use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use anchor_policy::arbiter::{Arbiter, RoomView, Step, Verdict};
use anchor_proto::courier::{Launch, Malformed, Manifest, CONNECT_LINE};
use anchor_text::prompt::{Prompt, Surface};

use crate::config::RoomName;
use crate::rooms::{Phase, Rooms};
use crate::sys;

/// The audit log until the vault is open (the vault issue moves it to /persist).
pub const AUDIT_LOG: &str = "/run/anchor/audit.log";
/// The one-shot courier.
pub const PROGRAM: &str = "/usr/lib/anchor/anchor-courier";
/// The prompt is up: bay0's console shows nothing but bay0's own lines, and no key typed
/// on it reaches a room or the operator shell.
pub static HOLD: AtomicBool = AtomicBool::new(false);

/// The arbiter and the running courier's stderr.
#[derive(Debug, Default)]
pub struct Courier {
    pub arb: Arbiter,
    err: Option<OwnedFd>,
}

type Request = core::result::Result<Manifest, Malformed>;

impl Courier {
    /// A request from room `from`.
    pub fn request(&mut self, rooms: Option<&Rooms>, from: &str, req: Request, now: u64) {
        let view = |n: &str| rooms?.get(rooms?.find(n)?).map(|r| (&r.courier, r.phase));
        let view = |n: &str| view(n).map(|(rights, p)| RoomView::new(rights, p == Phase::Ready));
        let v = self.arb.request(now, from, req, view);
        self.done(rooms, v);
    }

    /// Y (`yes`), N or Esc was pressed on a keyboard.
    pub fn key(&mut self, rooms: Option<&Rooms>, yes: bool, now: u64) {
        let mut id = [0u8; 16];
        let v = match sys::getrandom(&mut id).map(|()| self.arb.key(now, yes, id)) {
            Ok(Some(Step::Launch(l))) => match launch(rooms, &l) {
                Ok((pid, err)) => self.err.replace(err).and(self.arb.started(Ok(pid))),
                Err(e) => self.arb.started(Err(&e)),
            },
            Ok(Some(Step::Done(v))) => Some(*v),
            _ => None,
        };
        self.done(rooms, v);
    }

    /// A child ended (`room`: the room whose VMM it was).
    pub fn ended(&mut self, rooms: Option<&Rooms>, pid: i32, status: i32, room: Option<RoomName>) {
        let mut out = [0u8; 1024];
        let mine = self.arb.courier() == Some(pid);
        let err = self.err.take_if(|_| mine);
        let read = |fd| sys::read("courier result", fd, &mut out).ok();
        let fd = err.as_ref().map(AsRawFd::as_raw_fd);
        let n = fd.and_then(read).unwrap_or(0);
        let st = crate::supervisor::WaitStatus(status);
        let text = out.get(..n).unwrap_or_default();
        let room = room.as_ref().map(RoomName::as_str);
        let v = self.arb.ended(pid, st.exit_code() == 0, text, &st, room);
        self.done(rooms, v);
    }

    /// Shows the prompt when it has just come up, clears it when it has just gone, and
    /// concludes a verdict: the answer to the sender, the log line, the audit record.
    pub fn done(&mut self, rooms: Option<&Rooms>, v: Option<Verdict>) {
        let up = self.arb.prompting();
        let was = HOLD.swap(up, Relaxed);
        if let (Some((from, m, t)), false) = (self.arb.asking(), was) {
            let to = String::from_utf8_lossy(m.room());
            let p = Prompt::of(from, &to, m.name(), m.size, &m.sha256, t);
            for l in p.lines(100) {
                crate::log_notice!("courier: {l}");
            }
            let drawn = |v: &_, f: &_| Surface::from_fbdev(v, f).and_then(|s| p.draw(&s));
            if let Err(e) = sys::fb_present(drawn, true) {
                crate::log_info!("courier: the prompt is on the console only ({e})");
            }
        }
        if was && !up {
            let _ = sys::fb_present(|v, f| Surface::from_fbdev(v, f).map(|s| s.blank()), false);
        }
        let Some(v) = v else { return };
        let sender = rooms.and_then(|r| r.get(r.find(&v.from)?));
        if let Some(mut umb) = sender.and_then(|r| r.umb.as_ref()) {
            let _ = umb.write(&v.answer());
        }
        crate::log_notice!("{v}");
        let time = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
        let record = |log: &[u8]| v.record(log, time).ok();
        let append = || sys::append_derived(AUDIT_LOG, 0o600, record);
        if let Some(Err(e)) = v.audit.then(append) {
            crate::log_warn!("audit log {AUDIT_LOG}: {e}");
        }
    }
}

/// Connects to both rooms' agents and starts anchor-courier with the two connections
/// as its stdin and stdout; its pid and the read end of its stderr.
fn launch(rooms: Option<&Rooms>, l: &Launch) -> crate::error::Result<(i32, OwnedFd)> {
    let run = rooms.map_or(crate::room::Layout::system().run, |r| r.layout.run.clone());
    let at = |room: &str| run.join(room).join("vsock");
    let src = sys::connect_unix(&at(&l.from), CONNECT_LINE)?;
    let dst = sys::connect_unix(&at(&l.to), CONNECT_LINE)?;
    let (err, err_w) = sys::pipe()?;
    let nul = crate::error::Error::Room("a NUL byte in the courier's command");
    let argv = l.argv(PROGRAM.as_bytes()).ok_or(nul)?;
    let stdio = [src.as_raw_fd(), dst.as_raw_fd(), err_w.as_raw_fd()];
    let spawn = sys::Spawn::child(&argv, stdio, libc::CLONE_NEWPID);
    Ok((sys::spawn(&spawn)?, err))
}
