// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier arbiter's decisions, without any I/O (bay0 does the I/O: it feeds events
//! in and carries the results out). One request at a time:
//!
//! 1. [`Arbiter::request`]: a request from room `from` (bay0 knows the sender from the
//!    umbilical it arrived on; the request never names it) is refused at once -- over the
//!    room's [`Budget`], malformed, a bad name, the destination not running, either
//!    policy saying no ([`crate::courier_allowed`]), busy -- or it becomes the pending
//!    request and bay0 shows the prompt, or it waits its turn ([`Arbiter::next`]);
//! 2. [`Arbiter::key`]: a key on bay0's keyboard, no earlier than [`ANSWER_DELAY_MS`] after
//!    the prompt appeared: no ends it; yes asks bay0 to launch the courier
//!    ([`Step::Launch`], with a fresh transfer id), and [`Arbiter::started`] records it;
//!    bay0's terminal input stays held until that key is up ([`Arbiter::holds_keys`]);
//! 3. [`Arbiter::tick`]: the prompt's timeout (no answer means no);
//! 4. [`Arbiter::ended`]: the courier ended (its result line) or a room of the pending
//!    request ended before the answer ([`Arbiter::reaped`]: unless that room was reset
//!    beside its old self and the request is the new room's).
//!
//! Every request ends in exactly one [`Verdict`]: the answer to the sender and the audit
//! record ([`Verdict::record`], chained onto the log it is given; not audited only when
//! the room is over its [`Budget`]: a flood costs a counter, reported with the next
//! audited record). The budgets are the arbiter's, by room name, so a room's reset does
//! not refill its budget.

use core::fmt;

use anchor_proto::courier::{
    hex, result_of, Answer, Budget, Launch, Malformed, Manifest, Outcome, Token, ANSWER_MAX,
};
use anchor_proto::umbilical::HEADER;

use crate::courier::{courier_allowed, Explained};
use crate::model::Courier;

/// A key answers the prompt only when the keyboard was quiet this long before it: no
/// press since the prompt appeared, or since the last press while it is up, is sooner.
/// Typing into a room when the prompt comes up cannot answer it, however long it goes on.
pub const ANSWER_DELAY_MS: u64 = 1_000;
/// The keys that answer, as Linux input-event-codes.h numbers them: Y is yes, N or Esc
/// is no; any other key pressed while the prompt is up only restarts the quiet time, but
/// for the modifiers (Shift, Ctrl, Alt, Meta), which count for nothing: Shift+Y is Y.
pub const KEY_YES: u16 = 21;
pub const KEY_NO: [u16; 2] = [49, 1];
/// A key event as bay0 reads it from evdev: when the kernel saw it (ms), its key code,
/// and whether it went down (a press) or up (a release; autorepeats are not given).
pub type Key = (u64, u16, bool);
const MODIFIERS: [u16; 8] = [29, 42, 54, 56, 97, 100, 125, 126];

/// A room as the arbiter sees it: its courier rights, whether it runs, and how the
/// courier reaches its agent.
#[derive(Debug, Clone, Copy)]
pub struct RoomView<'a> {
    pub rights: &'a Courier,
    pub ready: bool,
    /// Over its hybrid vsock (a microVM room); else over a socket passed on its umbilical
    /// (a namespace room).
    pub vsock: bool,
}

impl<'a> RoomView<'a> {
    /// `backend`: how the room runs, "microvm" (reached over vsock) or "namespaces".
    pub fn new(rights: &'a Courier, ready: bool, backend: &str) -> Self {
        let vsock = backend == "microvm";
        RoomView {
            rights,
            ready,
            vsock,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The sending room (from the transport).
    pub from: String,
    pub req: Manifest,
    /// The transfer id (zeros when no transfer was approved).
    pub id: Token,
    /// `refused` (by the arbiter), `no`, `timeout`, `yes`, `cancelled`.
    pub decision: &'static str,
    pub outcome: Outcome,
    /// The name the file was stored under when delivered, the reason otherwise.
    pub reason: String,
    /// Write an audit record (false only for requests over the room's budget).
    pub audit: bool,
    /// Requests of this room refused over its budget (and not audited) before this one.
    pub dropped: u32,
    text: [String; 4],
}

impl Verdict {
    fn new(p: &Pending, decision: &'static str, outcome: Outcome, reason: String) -> Verdict {
        let (mut sha, mut id) = ([0u8; 64], [0u8; 32]);
        Verdict {
            from: p.from.clone(),
            req: p.req,
            id: p.id,
            decision,
            outcome,
            reason,
            audit: true,
            dropped: p.dropped,
            text: [
                p.req.size.to_string(),
                hex(&p.req.sha256, &mut sha).to_string(),
                hex(&p.id, &mut id).to_string(),
                p.dropped.to_string(),
            ],
        }
    }

    /// The answer for the sender as a whole umbilical frame.
    pub fn answer(&self) -> Vec<u8> {
        let (token, outcome, text) = (self.req.token, self.outcome, self.reason.as_str());
        let mut out = [0u8; HEADER + ANSWER_MAX];
        let a = Answer {
            token,
            outcome,
            text,
        };
        let n = a.frame(&mut out);
        out.get(..n).unwrap_or_default().to_vec()
    }

    /// The audit record as a whole line (written at `time`), chained onto the last good
    /// record of `log` (the audit log's current contents; a damaged tail is left as it is
    /// and chained past, so verification still names it).
    pub fn record(&self, log: &[u8], time: u64) -> Result<Vec<u8>, anchor_audit::RecordError> {
        let prefix =
            |b: anchor_audit::Bad| anchor_audit::verify(log.get(..b.offset).unwrap_or(&[]));
        let good = anchor_audit::verify(log).or_else(prefix);
        let chain = good.map_or(anchor_audit::Chain::new(), |g| {
            anchor_audit::Chain::resume(g.records, g.head)
        });
        let fields = self.fields();
        let entry = anchor_audit::Entry {
            time,
            actor: "bay0",
            event: "courier",
            fields: &fields,
        };
        let mut buf = vec![0u8; anchor_audit::MAX_RECORD];
        let n = chain.encode(&entry, &mut buf)?.len;
        buf.truncate(n);
        Ok(buf)
    }

    /// [`Verdict::record`] at the current time (`None` if it cannot be encoded).
    pub fn record_now(&self, log: &[u8]) -> Option<Vec<u8>> {
        let time = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
        self.record(log, time).ok()
    }

    /// The audit record's fields (docs/COURIER-PROTOCOL.md, "Audit").
    pub fn fields(&self) -> [(&'static str, &[u8]); 10] {
        let [size, sha, id, dropped] = &self.text;
        [
            ("from", self.from.as_bytes()),
            ("to", self.req.room()),
            ("name", self.req.name()),
            ("size", size.as_bytes()),
            ("sha256", sha.as_bytes()),
            ("id", id.as_bytes()),
            ("decision", self.decision.as_bytes()),
            ("outcome", self.outcome.as_str().as_bytes()),
            ("reason", self.reason.as_bytes()),
            ("dropped", dropped.as_bytes()),
        ]
    }
}

impl fmt::Display for Verdict {
    /// One log line, printable ASCII only: what a room chose (a destination that is not a
    /// room name, a stored name, a source's refusal) is escaped as the prompt escapes a
    /// file name (`\u{202e}`, `\\`; a control character is `?`), so no bidirectional
    /// override or other look-alike text reaches bay0's console.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clean = |s: &str| -> String {
            let mut out = String::new();
            for c in s.chars().take(400) {
                match c {
                    '\\' => out.push_str("\\\\"),
                    ' '..='~' => out.push(c),
                    c if c.is_control() => out.push('?'),
                    c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
                }
            }
            out
        };
        let to = clean(&String::from_utf8_lossy(self.req.room()));
        // A refusal made with no prompt is one word, not "refused, refused".
        let (d, o) = (self.decision, self.outcome.as_str());
        let (sep, o) = if d == o { ("", "") } else { (", ", o) };
        write!(
            f,
            "courier: {} -> {to}: {d}{sep}{o}: {}",
            self.from,
            clean(&self.reason)
        )?;
        match self.dropped {
            0 => Ok(()),
            n => write!(f, " ({n} more refused over its budget before this one)"),
        }
    }
}

/// What bay0 must do after a key.
#[derive(Debug, Clone)]
pub enum Step {
    /// Connect to both rooms and start anchor-courier with this command line; then call
    /// [`Arbiter::started`].
    Launch(Box<Launch>),
    Done(Box<Verdict>),
}

#[derive(Debug, Clone)]
struct Pending {
    from: String,
    req: Manifest,
    id: Token,
    shown_ms: u64,
    /// The prompt's appearance, or the last key pressed since (the quiet time's start).
    quiet_ms: u64,
    dropped: u32,
    /// The approved transfer's courier (0 while it is being started).
    courier: Option<i32>,
    /// How the courier reaches the source and the destination ([`Launch::vsock`]).
    vsock: [bool; 2],
}

/// Rooms whose request budget is kept (the least recently used goes beyond).
const BUDGETS: usize = 32;
/// Requests waiting for the prompt while another is pending (more are "busy").
pub const WAITING: usize = 8;
/// Longest the key that ended the prompt holds bay0's terminal input when its release
/// is never seen ([`Arbiter::holds_keys`]); a human lets go well within it.
pub const HOLD_MAX_MS: u64 = 2_000;

/// The arbiter: at most one request pending; others wait their turn, one per room, in
/// the order they came. A room's next request comes after those already waiting, so a
/// room asking again the moment its prompt ends cannot keep the prompt from the others.
#[derive(Debug, Default)]
pub struct Arbiter {
    pending: Option<Pending>,
    waiting: Vec<Pending>,
    /// Verdicts on waiting requests a room's end cancelled, for [`Arbiter::next`].
    cancelled: Vec<Verdict>,
    budgets: Vec<(String, Budget)>,
    /// Seconds the prompt waits for an answer.
    pub timeout_s: u32,
    /// The key that ended the prompt, while it is down, and when it ended it; and whether
    /// it went up (or the hold ran out) since [`Arbiter::take_released`] was last asked.
    held: Option<(u16, u64)>,
    released: bool,
}

impl Arbiter {
    /// True while the prompt is up.
    pub fn prompting(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.courier.is_none())
    }

    /// Keys typed on bay0's terminal go to nobody: the prompt is up, or the key that ended
    /// it is still down. The kernel's keyboard feeds the text console as well as evdev:
    /// that key's press queued its byte (and its autorepeats follow) on the terminal,
    /// where bay0 may read it only after the prompt went; a room must not get it. A key
    /// pressed after that key went up reaches the room again. Should its release never be
    /// seen (the keyboard went away with the key down, events were dropped), the hold
    /// ends [`HOLD_MAX_MS`] after the answer all the same ([`Arbiter::tick`]): the console
    /// never stays deaf.
    pub fn holds_keys(&self) -> bool {
        self.prompting() || self.held.is_some()
    }

    /// True once after the key that ended the prompt went up: bay0 drops what is queued
    /// on its terminal then (tcflush), all of it typed before that release was read.
    pub fn take_released(&mut self) -> bool {
        core::mem::take(&mut self.released)
    }

    /// The request on the prompt: its sender, its manifest, and the prompt's timeout.
    pub fn asking(&self) -> Option<(&str, &Manifest, u32)> {
        let p = self.pending.as_ref().filter(|p| p.courier.is_none())?;
        Some((p.from.as_str(), &p.req, self.timeout_s))
    }

    /// The running courier's pid.
    pub fn courier(&self) -> Option<i32> {
        self.pending.as_ref().and_then(|p| p.courier)
    }

    /// Takes one request's worth of room `from`'s budget: whether it was within it,
    /// and how many requests were refused over it since the last one within it.
    fn spend(&mut self, from: &str, now_ms: u64) -> (bool, u32) {
        let mut budget = match self.budgets.iter().position(|(n, _)| n == from) {
            Some(i) => self.budgets.remove(i).1,
            None => Budget::new(now_ms),
        };
        let within = budget.take(now_ms);
        let dropped = if within {
            core::mem::take(&mut budget.dropped)
        } else {
            0
        };
        if self.budgets.len() >= BUDGETS {
            self.budgets.remove(0);
        }
        self.budgets.push((from.to_string(), budget));
        (within, dropped)
    }

    /// A request from room `from`; `room` describes rooms by name. `Some` when refused
    /// at once, `None` when the prompt is to be shown or the request waits its turn (a
    /// room with a request pending or waiting, or a full [`WAITING`] line, is busy).
    pub fn request<'a>(
        &mut self,
        now_ms: u64,
        from: &str,
        req: Result<Manifest, Malformed>,
        room: impl Fn(&str) -> Option<RoomView<'a>>,
    ) -> Option<Verdict> {
        let (within, dropped) = self.spend(from, now_ms);
        let p = Pending {
            from: from.to_string(),
            req: *req.as_ref().unwrap_or(&Manifest::default()),
            id: [0; 16],
            shown_ms: now_ms,
            quiet_ms: now_ms,
            dropped,
            courier: None,
            vsock: [true; 2],
        };
        let why = match (req, within) {
            (_, false) => "too many courier requests (5 at once, then 1 every 6 s)".to_string(),
            (Err(e), _) => e.to_string(),
            (Ok(m), _) => match self.admit(from, &m, &room) {
                Err(why) => why,
                Ok(vsock) if self.pending.is_none() && self.waiting.is_empty() => {
                    self.pending = Some(Pending { vsock, ..p });
                    return None;
                }
                Ok(vsock) => {
                    self.waiting.push(Pending { vsock, ..p });
                    return None;
                }
            },
        };
        let mut v = Verdict::new(&p, "refused", Outcome::Refused, why);
        v.audit = within;
        Some(v)
    }

    /// Whether the request may go to the prompt: how the courier will reach both rooms
    /// (see [`Launch::vsock`]), or why not.
    fn admit<'a>(
        &self,
        from: &str,
        m: &Manifest,
        room: &impl Fn(&str) -> Option<RoomView<'a>>,
    ) -> Result<[bool; 2], String> {
        let (to, _) = m.check().map_err(|e| e.to_string())?;
        if self.waiting.len() >= WAITING || self.has(from) {
            return Err("busy: another transfer is waiting for approval or under way".into());
        }
        // `ready`: the room's agent is up (it reported ready on its umbilical).
        let Some(src) = room(from).filter(|s| s.ready) else {
            return Err(format!(
                "room {from} cannot send now (its agent is not ready)"
            ));
        };
        let Some(dst) = room(to).filter(|d| d.ready) else {
            return Err(format!("room {to} is not running"));
        };
        courier_allowed(from, src.rights, to, dst.rights, m.size)
            .map_err(|refusal| Explained { refusal, from, to }.to_string())?;
        Ok([src.vsock, dst.vsock])
    }

    /// Whether room `from` has a request pending or waiting.
    fn has(&self, from: &str) -> bool {
        self.pending
            .iter()
            .chain(&self.waiting)
            .any(|p| p.from == from)
    }

    /// Once the slot is free (call after every verdict): the first waiting request is
    /// checked again (its rooms may have ended) and goes to the prompt (`None`, as
    /// [`Arbiter::request`]), or is refused; and a waiting request a room's end cancelled
    /// is concluded. Call again while it returns a verdict.
    pub fn next<'a>(
        &mut self,
        now_ms: u64,
        room: impl Fn(&str) -> Option<RoomView<'a>>,
    ) -> Option<Verdict> {
        if let Some(v) = self.cancelled.pop() {
            return Some(v);
        }
        if self.pending.is_some() || self.waiting.is_empty() {
            return None;
        }
        let p = self.waiting.remove(0);
        match self.admit(&p.from, &p.req, &room) {
            Ok(vsock) => {
                let (shown_ms, quiet_ms) = (now_ms, now_ms);
                self.pending = Some(Pending {
                    vsock,
                    shown_ms,
                    quiet_ms,
                    ..p
                });
                None
            }
            Err(why) => Some(Verdict::new(&p, "refused", Outcome::Refused, why)),
        }
    }

    fn end(&mut self, decision: &'static str, outcome: Outcome, why: String) -> Option<Verdict> {
        let p = self.pending.take()?;
        Some(Verdict::new(&p, decision, outcome, why))
    }

    /// The prompt is on the screen now (drawn): the quiet time starts again.
    pub fn shown(&mut self, now_ms: u64) {
        if let Some(p) = self.pending.as_mut().filter(|p| p.courier.is_none()) {
            p.quiet_ms = p.quiet_ms.max(now_ms);
        }
    }

    /// One key pressed at `now_ms` on bay0's keyboard: Y (`yes`), N or Esc (see
    /// [`Arbiter::keys`]).
    pub fn key(&mut self, now_ms: u64, yes: bool, id: Token) -> Option<Step> {
        let code = if yes { KEY_YES } else { KEY_NO[0] };
        self.keys(now_ms, &[(now_ms, code, true)], id)
    }

    /// Keys pressed and released on bay0's keyboard, read together at `now_ms`, in order
    /// ([`Key`]; a press dated later than `now_ms` counts as `now_ms`). The first press
    /// after [`ANSWER_DELAY_MS`] of quiet decides: Y is yes (unless N or Esc follows it in
    /// the same read), N or Esc is no, another key nothing. The key that ended the prompt
    /// holds bay0's terminal input until it is up ([`Arbiter::holds_keys`]), whatever
    /// read its release comes in. `id` is a fresh random transfer id.
    pub fn keys(&mut self, now_ms: u64, keys: &[Key], id: Token) -> Option<Step> {
        let (mut answer, mut no) = (None, false);
        for &(at, code, down) in keys.iter().filter(|k| !MODIFIERS.contains(&k.1)) {
            if !down {
                self.released |= self.held.take_if(|h| h.0 == code).is_some();
                continue;
            }
            let Some(p) = self.pending.as_mut().filter(|p| p.courier.is_none()) else {
                continue;
            };
            let at = at.min(now_ms);
            if answer.is_none() && at >= p.quiet_ms.saturating_add(ANSWER_DELAY_MS) {
                answer = Some(code);
            }
            p.quiet_ms = p.quiet_ms.max(at);
            let refuses = answer.is_some() && KEY_NO.contains(&code);
            no |= refuses;
            if refuses || (answer == Some(KEY_YES) && code == KEY_YES) {
                self.held = Some((code, now_ms));
            }
        }
        let p = self.pending.as_mut().filter(|p| p.courier.is_none())?;
        if !no && answer? != KEY_YES {
            return None;
        }
        if no {
            let why = "declined on the anchor's keyboard".to_string();
            return self
                .end("no", Outcome::Refused, why)
                .map(|v| Step::Done(Box::new(v)));
        }
        p.id = id;
        p.courier = Some(0);
        let to = String::from_utf8_lossy(p.req.room()).into_owned();
        Some(Step::Launch(Box::new(Launch {
            id,
            token: p.req.token,
            from: p.from.clone(),
            to,
            name: String::from_utf8_lossy(p.req.name()).into_owned(),
            size: p.req.size,
            sha256: p.req.sha256,
            vsock: p.vsock,
        })))
    }

    /// The courier was started (its pid), or could not be (why).
    pub fn started(&mut self, pid: Result<i32, &dyn fmt::Display>) -> Option<Verdict> {
        match pid {
            Ok(pid) => {
                if let Some(p) = self.pending.as_mut() {
                    p.courier = Some(pid);
                }
                None
            }
            Err(e) => self.end(
                "yes",
                Outcome::Failed,
                format!("the courier could not start: {e}"),
            ),
        }
    }

    /// Once a second: a prompt past its timeout is a no.
    pub fn tick(&mut self, now_ms: u64) -> Option<Verdict> {
        if self
            .held
            .is_some_and(|(_, at)| now_ms >= at.saturating_add(HOLD_MAX_MS))
        {
            (self.held, self.released) = (None, true);
        }
        let p = self.pending.as_ref().filter(|p| p.courier.is_none())?;
        let due = p.shown_ms.saturating_add(u64::from(self.timeout_s) * 1000);
        if now_ms < due {
            return None;
        }
        let why = format!(
            "no answer on the anchor's keyboard within {} s",
            self.timeout_s
        );
        self.end("timeout", Outcome::TimedOut, why)
    }

    /// A child ended: the courier `pid` (`ok`: it exited 0; `out`: what it wrote on
    /// stderr; `status` describes its end), or room `room` while the prompt was up.
    pub fn ended(
        &mut self,
        pid: i32,
        ok: bool,
        out: &[u8],
        status: &dyn fmt::Display,
        room: Option<&str>,
    ) -> Option<Verdict> {
        self.reaped(pid, ok, out, status, room.map(|r| (r, None)))
    }

    /// [`Arbiter::ended`], where `room` comes with when another room of its name opened,
    /// if one is open: a reset opens the new room beside the old one, which ends later
    /// (bay0's `Rooms::reset`). A request on the prompt made after the new room opened
    /// is the new room's business (it involves the new one: only a ready room may send or
    /// receive), and stays; one made before is cancelled.
    pub fn reaped(
        &mut self,
        pid: i32,
        ok: bool,
        out: &[u8],
        status: &dyn fmt::Display,
        room: Option<(&str, Option<u64>)>,
    ) -> Option<Verdict> {
        // A waiting request of a room that ended (made before a room of its name opened
        // again) is cancelled: [`Arbiter::next`] concludes it.
        let gone = |p: &Pending, (r, opened): (&str, Option<u64>)| {
            let before = opened.is_none_or(|ms| p.shown_ms <= ms);
            before && (r == p.from || r.as_bytes() == p.req.room())
        };
        let (ended, waiting) = core::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|p| room.is_some_and(|r| gone(p, r)));
        self.waiting = waiting;
        for p in ended {
            let why = format!("room {} ended before its turn", room.map_or("", |r| r.0));
            let v = Verdict::new(&p, "cancelled", Outcome::Failed, why);
            self.cancelled.push(v);
        }
        let p = self.pending.as_ref()?;
        if p.courier == Some(pid) {
            let (outcome, why) = match result_of(ok, out) {
                Some((o, text)) => (o, text.to_string()),
                None => (Outcome::Failed, format!("anchor-courier {status}")),
            };
            return self.end("yes", outcome, why);
        }
        let before = |opened: Option<u64>| opened.is_none_or(|ms| p.shown_ms <= ms);
        let (r, _) = room.filter(|&(r, opened)| {
            p.courier.is_none() && before(opened) && (r == p.from || r.as_bytes() == p.req.room())
        })?;
        let why = format!("room {r} ended before the answer");
        self.end("cancelled", Outcome::Failed, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rights(text: &str) -> Courier {
        let policy = format!(
            "name = \"r\"\nimage = \"base\"\nbackend = \"microvm\"\n[resources]\nmemory = \"64MiB\"\nvcpus = 1\n[courier]\n{text}"
        );
        crate::parse("r.toml", policy.as_bytes())
            .unwrap()
            .courier()
            .clone()
    }

    struct World {
        web: Courier,
        work: Courier,
        work_ready: bool,
    }

    impl World {
        fn new() -> World {
            World {
                web: rights("send_to = [\"work\"]\n"),
                work: rights("receive_from = [\"web\", \"dev\"]\n"),
                work_ready: true,
            }
        }
        fn room(&self, n: &str) -> Option<RoomView<'_>> {
            match n {
                "web" | "dev" => Some(RoomView::new(&self.web, true, "microvm")),
                "work" => Some(RoomView::new(&self.work, self.work_ready, "namespaces")),
                _ => None,
            }
        }
    }

    fn req(to: &str, name: &str, size: u64) -> Result<Manifest, Malformed> {
        Manifest::new([5; 16], to, name.as_bytes(), size, [7; 32])
    }

    fn arbiter() -> Arbiter {
        Arbiter {
            timeout_s: 60,
            ..Arbiter::default()
        }
    }

    /// Room web asks to send "f" (1 byte) to room work at `at`: the prompt comes up.
    fn ask(a: &mut Arbiter, w: &World, at: u64) {
        assert!(a
            .request(at, "web", req("work", "f", 1), |n| w.room(n))
            .is_none());
    }

    /// Two rooms ask for the one prompt: web asks again the moment each of its prompts
    /// ends (within its budget, one every 6 s). Before, dev's requests were refused
    /// "busy" whenever web's prompt was up, so web could keep the prompt for good; now
    /// dev's request waits and goes before web's next one.
    #[test]
    fn a_room_asking_again_at_once_cannot_keep_the_prompt_from_another() {
        let mut w = World::new();
        let mut a = arbiter();
        ask(&mut a, &w, 0);
        let dev = a.request(10, "dev", req("work", "d", 1), |n| w.room(n));
        assert!(
            dev.is_none(),
            "dev was refused: {:?}",
            dev.map(|v| v.reason)
        );
        assert_eq!(a.asking().unwrap().0, "web", "web's prompt stays up");
        // One waiting request a room: dev asking again is busy.
        let v = a.request(20, "dev", req("work", "e", 1), |n| w.room(n));
        assert!(v.unwrap().reason.starts_with("busy"));
        // web's prompt ends (N); web asks again at once; then the slot is given out.
        let Some(Step::Done(v)) = a.key(2_000, false, [1; 16]) else {
            panic!("N did not end web's prompt")
        };
        assert_eq!((v.from.as_str(), v.decision), ("web", "no"));
        let again = a.request(2_001, "web", req("work", "f", 1), |n| w.room(n));
        assert!(again.is_none());
        assert!(a.next(2_002, |n| w.room(n)).is_none());
        assert_eq!(a.asking().map(|p| p.0), Some("dev"), "dev goes first");
        assert_eq!(a.asking().unwrap().1.name(), b"d");
        // Its prompt counts from when it came up: no timeout 60 s after dev asked.
        assert!(a.tick(60_010).is_none());
        let v = a.tick(62_002).unwrap();
        assert_eq!((v.from.as_str(), v.decision), ("dev", "timeout"));
        assert!(a.next(62_003, |n| w.room(n)).is_none());
        assert_eq!(a.asking().map(|p| p.0), Some("web"));
        // A waiting request is checked again when its turn comes: work has stopped.
        let dev = a.request(62_004, "dev", req("work", "g", 1), |n| w.room(n));
        assert!(dev.is_none());
        assert!(a.key(64_000, false, [1; 16]).is_some());
        w.work_ready = false;
        let v = a.next(64_001, |n| w.room(n)).unwrap();
        assert_eq!(
            (v.from.as_str(), v.reason.as_str()),
            ("dev", "room work is not running")
        );
        assert!(a.next(64_002, |n| w.room(n)).is_none());
        assert!(a.asking().is_none());
    }

    /// A room that ends while its request waits: the request is cancelled (answered and
    /// audited once), not shown later as if the room (or a new one of its name) asked.
    #[test]
    fn a_waiting_request_of_a_room_that_ended_is_cancelled() {
        let w = World::new();
        let mut a = arbiter();
        ask(&mut a, &w, 0);
        assert!(a
            .request(10, "dev", req("work", "d", 1), |n| w.room(n))
            .is_none());
        // dev ended; a new dev opened after its request (a reset): still cancelled.
        assert!(a
            .reaped(99, false, b"", &"", Some(("dev", Some(20))))
            .is_none());
        assert_eq!(
            a.asking().unwrap().0,
            "web",
            "web's prompt is not dev's business"
        );
        let v = a.next(30, |n| w.room(n)).unwrap();
        assert_eq!(
            (v.from.as_str(), v.decision, v.reason.as_str()),
            ("dev", "cancelled", "room dev ended before its turn")
        );
        assert!(a.next(31, |n| w.room(n)).is_none());
        assert!(a.key(2_000, false, [1; 16]).is_some());
        assert!(a.next(2_001, |n| w.room(n)).is_none());
        assert!(a.asking().is_none(), "dev's request came back");
    }

    #[test]
    fn refusals_are_answered_and_audited_with_their_reason() {
        let w = World::new();
        let mut a = arbiter();
        let mut refused = |r: Result<Manifest, Malformed>, from: &str| {
            a.request(0, from, r, |n| w.room(n)).unwrap()
        };
        let v = refused(req("work", "../etc/passwd", 1), "web");
        assert_eq!(
            (v.decision, v.outcome, v.audit),
            ("refused", Outcome::Refused, true)
        );
        assert!(v.reason.contains("'/'"), "{}", v.reason);
        let v = refused(req("web", "a", 1), "work");
        assert!(
            v.reason
                .starts_with("policy: room work may not send to web"),
            "{}",
            v.reason
        );
        assert_eq!(v.from, "work");
        let v = refused(req("nosuch", "a", 1), "web");
        assert_eq!(v.reason, "room nosuch is not running");
        let v = refused(req("work", "a", u64::MAX), "web");
        assert!(v.reason.contains("courier.max_size"), "{}", v.reason);
        let v = refused(Err(Malformed::Length { got: 3, want: 58 }), "web");
        assert!(v.reason.starts_with("malformed"), "{}", v.reason);
        assert_eq!(v.fields()[1].1, b"");
        let frame = v.answer();
        let ans = Answer::decode(&frame[HEADER..]).unwrap();
        assert_eq!(
            (ans.outcome, ans.text),
            (Outcome::Refused, v.reason.as_str())
        );
    }

    #[test]
    fn yes_launches_once_and_the_courier_result_ends_it() {
        let w = World::new();
        let mut a = arbiter();
        assert!(a
            .request(0, "web", req("work", "r.pdf", 9), |n| w.room(n))
            .is_none());
        assert!(a.prompting());
        assert_eq!(a.asking().unwrap().0, "web");
        // A second request while the prompt is up: busy.
        let v = a
            .request(5, "web", req("work", "x", 1), |n| w.room(n))
            .unwrap();
        assert!(v.reason.starts_with("busy"));
        // Keys before the answer delay do nothing (and the delay counts again from them).
        assert!(a.key(ANSWER_DELAY_MS - 1, true, [1; 16]).is_none());
        assert!(a.key(ANSWER_DELAY_MS, true, [1; 16]).is_none());
        let Some(Step::Launch(l)) = a.key(ANSWER_DELAY_MS * 2, true, [1; 16]) else {
            panic!()
        };
        assert_eq!(
            (l.from.as_str(), l.to.as_str(), l.name.as_str(), l.id),
            ("web", "work", "r.pdf", [1; 16])
        );
        // web runs as a microVM (vsock), work in namespaces (a passed socket).
        assert_eq!(l.vsock, [true, false]);
        assert!(!a.prompting());
        // No second launch, no timeout while it runs.
        assert!(a.key(ANSWER_DELAY_MS * 4, true, [2; 16]).is_none());
        assert!(a.started(Ok(42)).is_none());
        assert!(a.tick(u64::MAX).is_none());
        assert_eq!(a.courier(), Some(42));
        assert!(a.ended(41, true, b"delivered x\n", &"", None).is_none());
        let v = a
            .ended(42, true, b"delivered r (1).pdf\n", &"", None)
            .unwrap();
        assert_eq!(
            (v.decision, v.outcome, v.reason.as_str()),
            ("yes", Outcome::Delivered, "r (1).pdf")
        );
        assert_eq!(v.fields()[5].1, "01".repeat(16).as_bytes());
        assert!(a.pending.is_none());
    }

    /// Someone typing into a room when the prompt comes up goes on typing for a while
    /// before they see it: a Y typed in that flow must not answer, however late after the
    /// prompt appeared. A key answers only after the keyboard was quiet for
    /// ANSWER_DELAY_MS (counted from the prompt's appearance and from every press since).
    #[test]
    fn a_key_typed_in_the_flow_of_typing_does_not_answer() {
        let w = World::new();
        let mut a = arbiter();
        ask(&mut a, &w, 0);
        // Y at 0.9 s (too soon), then Y again 0.6 s later: still typing.
        assert!(a.key(900, true, [1; 16]).is_none());
        assert!(a.key(1_500, true, [1; 16]).is_none());
        assert!(a.key(2_300, false, [1; 16]).is_none());
        assert!(a.prompting());
        // A pause of a second, then Y: the answer.
        assert!(matches!(a.key(3_300, true, [1; 16]), Some(Step::Launch(_))));
    }

    /// Presses read together count by the kernel's time of each; other keys restart the
    /// quiet time; N or Esc after an answering Y in the same read makes it a no; the
    /// quiet time starts when the prompt is drawn.
    #[test]
    fn presses_count_by_their_own_time_and_any_key_restarts_the_quiet_time() {
        let w = World::new();
        let mut a = arbiter();
        const A: u16 = 30;
        ask(&mut a, &w, 0);
        // Read 5 s after the prompt, pressed 0.5 s after it: too soon.
        assert!(a.keys(5_000, &[(500, KEY_YES, true)], [1; 16]).is_none());
        // Another key typed at 1.6 s, then Y at 2.2 s: still typing.
        assert!(a
            .keys(5_000, &[(1_600, A, true), (2_200, KEY_YES, true)], [1; 16])
            .is_none());
        // A press dated after the read counts as read.
        assert!(a.keys(2_500, &[(9_999, KEY_YES, true)], [1; 16]).is_none());
        // Y after a quiet second, Esc right after it in the same read: no.
        let Some(Step::Done(v)) =
            a.keys(4_000, &[(3_600, KEY_YES, true), (3_610, 1, true)], [1; 16])
        else {
            panic!()
        };
        assert_eq!(v.decision, "no");
        // Drawn at 10.4 s (asked at 10 s): a Y at 11.2 s is too soon, one at 12.3 s is yes.
        ask(&mut a, &w, 10_000);
        a.shown(10_400);
        assert!(a
            .keys(11_300, &[(11_200, KEY_YES, true)], [1; 16])
            .is_none());
        let step = a.keys(
            12_300,
            &[(12_300, KEY_YES, true), (12_310, A, true)],
            [1; 16],
        );
        assert!(matches!(step, Some(Step::Launch(_))));
        // Shift (left, right) held for a capital Y counts for nothing: Shift+Y is Y.
        a.started(Err(&"test"));
        ask(&mut a, &w, 20_000);
        let shift_y = [
            (21_100, 42, true),
            (21_150, 54, true),
            (21_200, KEY_YES, true),
        ];
        assert!(matches!(
            a.keys(21_300, &shift_y, [1; 16]),
            Some(Step::Launch(_))
        ));
    }

    /// The key that ends the prompt put a byte on bay0's terminal too (the kernel's
    /// keyboard feeds the text console as well as evdev), which bay0 may read only after
    /// the prompt went: terminal input stays held until that key is up, whatever read its
    /// release comes in, and bay0 is told once to drop what the terminal queued. Before,
    /// the hold ended with the prompt, and the answer's byte reached the focused room.
    #[test]
    fn the_key_that_ends_the_prompt_holds_the_terminal_until_it_is_up() {
        let w = World::new();
        let mut a = arbiter();
        const A: u16 = 30;
        assert!(!a.holds_keys());
        ask(&mut a, &w, 0);
        assert!(a.holds_keys(), "the prompt is up");
        // Y answers; the prompt is gone, Y is still down.
        assert!(matches!(
            a.keys(2_000, &[(2_000, KEY_YES, true)], [1; 16]),
            Some(Step::Launch(_))
        ));
        assert!(!a.prompting());
        assert!(a.holds_keys(), "Y is down: its byte may still be read");
        // Another key's release, or a press, does not end it; nothing to drop yet.
        assert!(a
            .keys(2_050, &[(2_050, A, true), (2_060, A, false)], [1; 16])
            .is_none());
        assert!(a.holds_keys() && !a.take_released());
        // Y up: the hold ends, and bay0 drops what its terminal queued, once.
        assert!(a.keys(2_100, &[(2_100, KEY_YES, false)], [1; 16]).is_none());
        assert!(!a.holds_keys());
        assert!(a.take_released());
        assert!(!a.take_released());
        // Y pressed and released in one read (a quick tap): N in the same read after it
        // makes it a no, N holds until it is up, here in the same read too.
        a.started(Err(&"test"));
        ask(&mut a, &w, 10_000);
        let tap = [
            (11_500, KEY_YES, true),
            (11_520, KEY_NO[0], true),
            (11_540, KEY_YES, false),
        ];
        assert!(matches!(a.keys(11_600, &tap, [1; 16]), Some(Step::Done(_))));
        assert!(a.holds_keys() && !a.take_released());
        assert!(a
            .keys(11_700, &[(11_700, KEY_NO[0], false)], [1; 16])
            .is_none());
        assert!(!a.holds_keys() && a.take_released());
        // A key that does not end the prompt holds nothing beyond it; a timeout neither.
        ask(&mut a, &w, 20_000);
        assert!(a.keys(21_500, &[(21_500, A, true)], [1; 16]).is_none());
        assert!(a.tick(100_000).is_some());
        assert!(!a.holds_keys() && !a.take_released());
        // N ends a prompt and its release is never seen (the keyboard went away): the
        // hold ends HOLD_MAX_MS later at a tick, and bay0 is told to drop the queue.
        ask(&mut a, &w, 40_000);
        assert!(matches!(
            a.keys(41_500, &[(41_500, KEY_NO[0], true)], [1; 16]),
            Some(Step::Done(_))
        ));
        assert!(a.tick(41_500 + HOLD_MAX_MS - 1).is_none());
        assert!(a.holds_keys() && !a.take_released());
        assert!(a.tick(41_500 + HOLD_MAX_MS).is_none());
        assert!(!a.holds_keys() && a.take_released());
    }

    /// A request that takes the place of another on the prompt (the first one's room
    /// ended) gets its own quiet second: a Y meant for the first, landing just after the
    /// second appeared, does not approve the second.
    #[test]
    fn a_y_meant_for_a_prompt_that_went_does_not_approve_the_next() {
        let w = World::new();
        let mut a = arbiter();
        assert!(a
            .request(0, "web", req("work", "harmless.txt", 1), |n| w.room(n))
            .is_none());
        let v = a.reaped(9, false, b"", &"", Some(("web", None))).unwrap();
        assert_eq!(v.decision, "cancelled");
        assert!(a
            .request(4_900, "web", req("work", "secrets.db", 1), |n| w.room(n))
            .is_none());
        assert!(a.key(5_000, true, [1; 16]).is_none());
        assert_eq!(a.asking().unwrap().1.name(), b"secrets.db");
        assert!(matches!(a.key(6_500, true, [1; 16]), Some(Step::Launch(_))));
    }

    #[test]
    fn no_timeout_a_failed_start_a_killed_courier_and_a_vanished_room() {
        let w = World::new();
        let mut a = arbiter();
        ask(&mut a, &w, 0);
        let Some(Step::Done(v)) = a.key(2000, false, [0; 16]) else {
            panic!()
        };
        assert_eq!((v.decision, v.outcome), ("no", Outcome::Refused));
        ask(&mut a, &w, 0);
        assert!(a.tick(59_999).is_none());
        let v = a.tick(60_000).unwrap();
        assert_eq!((v.decision, v.outcome), ("timeout", Outcome::TimedOut));
        assert!(v.reason.contains("60 s"));
        ask(&mut a, &w, 0);
        a.key(2000, true, [3; 16]);
        let v = a.started(Err(&"connect: ECONNREFUSED")).unwrap();
        assert_eq!(v.outcome, Outcome::Failed);
        assert!(v.reason.contains("ECONNREFUSED"));
        ask(&mut a, &w, 0);
        a.key(2000, true, [3; 16]);
        a.started(Ok(7));
        let v = a.ended(7, false, b"", &"killed by signal 9", None).unwrap();
        assert_eq!(
            (v.outcome, v.reason.as_str()),
            (Outcome::Failed, "anchor-courier killed by signal 9")
        );
        ask(&mut a, &w, 0);
        assert!(a.ended(99, false, b"", &"", Some("dev")).is_none());
        let v = a.ended(99, false, b"", &"", Some("work")).unwrap();
        assert_eq!(v.decision, "cancelled");
    }

    /// A reset opens the new room beside the old one (same name); the old one ends later.
    /// Its end cancels what was asked before the new room opened (the old room's), never
    /// what was asked since (the new room's: the sender or the destination is the new one).
    #[test]
    fn the_end_of_a_room_reset_beside_its_old_self_cancels_only_what_was_asked_before() {
        let w = World::new();
        let mut a = arbiter();
        assert!(a
            .request(5_000, "web", req("work", "f", 1), |n| w.room(n))
            .is_none());
        // The old work ends; the new work opened at 4 s, before the request: it stays.
        assert!(a
            .reaped(99, false, b"", &"", Some(("work", Some(4_000))))
            .is_none());
        assert!(a.prompting());
        // The old web ends; the new web opened just before the request (it stays), or
        // on its ms (the old web's request, read in the same ms as the reset: it goes).
        assert!(a
            .reaped(99, false, b"", &"", Some(("web", Some(4_999))))
            .is_none());
        let v = a.reaped(99, false, b"", &"", Some(("web", Some(5_000))));
        assert_eq!(v.unwrap().reason, "room web ended before the answer");
        // No room of the name open again: whatever it asked goes.
        assert!(a
            .request(7_000, "web", req("work", "f", 1), |n| w.room(n))
            .is_none());
        let v = a.reaped(98, false, b"", &"", Some(("work", None))).unwrap();
        assert_eq!(v.decision, "cancelled");
        // Nor does a room's end cut a transfer under way short.
        a.request(8_000, "web", req("work", "f", 1), |n| w.room(n));
        a.key(10_000, true, [4; 16]);
        a.started(Ok(77));
        assert!(a
            .reaped(97, false, b"", &"", Some(("work", None)))
            .is_none());
        assert_eq!(a.courier(), Some(77));
    }

    /// The log line shows room-chosen text escaped: a destination that is not a room name
    /// (a malformed request) and a source's refusal in the courier's result line, each
    /// with a right-to-left override, and a stored name with a non-ASCII letter.
    #[test]
    fn log_lines_escape_what_a_room_chose() {
        let w = World::new();
        let printable = |line: &str| line.chars().all(|c| c == ' ' || c.is_ascii_graphic());
        let mut a = arbiter();
        let v = a
            .request(0, "web", req("w\u{202e}x", "f", 1), |n| w.room(n))
            .unwrap();
        let line = v.to_string();
        assert!(printable(&line), "{line:?}");
        assert!(
            line.starts_with("courier: web -> w\\u{202e}x: refused: "),
            "{line}"
        );
        for (ok, out, shown) in [
            (
                false,
                "failed the source room web: gpj\u{202e}exe.\\x\n",
                "yes, failed: the source room web: gpj\\u{202e}exe.\\\\x",
            ),
            (
                true,
                "delivered caf\u{e9}.txt\n",
                "yes, delivered: caf\\u{e9}.txt",
            ),
        ] {
            ask(&mut a, &w, 10_000);
            assert!(matches!(
                a.key(20_000, true, [1; 16]),
                Some(Step::Launch(_))
            ));
            assert!(a.started(Ok(42)).is_none());
            let v = a.ended(42, ok, out.as_bytes(), &"exited", None).unwrap();
            let line = v.to_string();
            assert!(printable(&line), "{line:?}");
            assert_eq!(line, format!("courier: web -> work: {shown}"));
        }
    }

    #[test]
    fn a_flood_is_answered_but_audited_once_with_its_count() {
        let w = World::new();
        let mut a = arbiter();
        let mut audited = 0;
        for _ in 0..1000 {
            let v = a
                .request(0, "web", req("dev", "f", 1), |n| w.room(n))
                .unwrap();
            audited += usize::from(v.audit);
        }
        assert_eq!(audited, Budget::BURST as usize);
        let v = a
            .request(Budget::REFILL_MS, "web", req("dev", "f", 1), |n| w.room(n))
            .unwrap();
        assert!(v.audit);
        assert_eq!(v.dropped, 1000 - Budget::BURST);
        // Its log line says so too (bay0 logs only the audited ones).
        let more = format!(
            " ({} more refused over its budget before this one)",
            v.dropped
        );
        assert!(v.to_string().ends_with(&more), "{v}");
        assert_eq!(
            v.fields()[9].1,
            (1000 - Budget::BURST).to_string().as_bytes()
        );
    }

    #[test]
    fn records_chain_onto_the_log_and_past_a_damaged_tail() {
        let w = World::new();
        let mut a = arbiter();
        let mut log = Vec::new();
        for i in 0..3 {
            let v = a
                .request(i, "web", req("nosuch", "f\u{e9}", 1), |n| w.room(n))
                .unwrap();
            log.extend(v.record(&log, 1_700_000_000).unwrap());
        }
        let ok = anchor_audit::verify(&log).unwrap();
        assert_eq!(ok.records, 3);
        let text = String::from_utf8(log.clone()).unwrap();
        assert!(
            text.contains(" actor=bay0 event=courier from=web to=nosuch name=f%C3%A9 size=1 "),
            "{text}"
        );
        assert!(
            text.contains(
                " decision=refused outcome=refused reason=room%20nosuch%20is%20not%20running dropped=0 "
            ),
            "{text}"
        );
        // A damaged last record: the next one chains onto record 2, and verification
        // still reports the damage.
        let cut = log.len() - 10;
        log[cut] ^= 1;
        let v = a
            .request(9, "web", req("nosuch", "g", 1), |n| w.room(n))
            .unwrap();
        log.extend(v.record(&log, 1_700_000_001).unwrap());
        let bad = anchor_audit::verify(&log).unwrap_err();
        assert_eq!(bad.record, 3);
    }

    #[test]
    fn a_destination_that_is_not_ready_is_not_running() {
        let mut w = World::new();
        w.work_ready = false;
        let mut a = arbiter();
        let v = a
            .request(0, "web", req("work", "f", 1), |n| w.room(n))
            .unwrap();
        assert_eq!(v.reason, "room work is not running");
    }
}
