// SPDX-License-Identifier: GPL-3.0-or-later
//! The room's side of the courier (docs/COURIER-PROTOCOL.md). The agent:
//!
//! - serves the room's `courier send` clients on a local socket ([`Config::socket`]):
//!   each passes the open file (the client's own rights, never a path the agent opens),
//!   the agent checks it ([`source::check`]), hashes it, and sends one request at a time
//!   to bay0 over the umbilical; bay0's answer ends the client's wait;
//! - serves data connections ([`handle_data`], transport-neutral: any connected
//!   stream): a courier's fetch of the pending request (once: the token is spent), or a
//!   courier's delivery into ~/Incoming ([`store`]). A microVM room takes them on vsock
//!   port [`DATA_PORT`] from the host only; a namespace room (no vsock) gets each one
//!   from bay0 as a socket passed on its umbilical ([`on_channel`]). Either way the
//!   connection is served the same.

pub mod bench;
pub mod client;
pub mod source;
pub mod store;
pub mod sys;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

pub use anchor_proto::courier::DATA_PORT;
use anchor_proto::courier::{Answer, Data, Manifest, Outcome, Token, MANIFEST_MAX};
use anchor_proto::umbilical::{write_frame, Frames, Kind, PAYLOAD_MAX};

use crate::console::say;
pub use store::Home;

/// Where the room's `courier` clients reach the agent.
pub const SOCKET: &str = "/run/courier.sock";
/// Seconds a data connection may make no progress.
pub const STALL_S: u32 = 30;
/// Data connections served at once (more are closed at once).
const MAX_DATA: usize = 4;
/// `courier send` clients served at once (each holds a thread; more are refused at once).
const MAX_CLIENTS: usize = 8;
/// How long a client may take to send its request once connected.
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// The host's vsock context id: the only peer a data connection may come from.
const HOST_CID: u32 = 2;

/// The courier's settings in this room.
#[derive(Debug, Clone)]
pub struct Config {
    pub home: Home,
    /// The local socket for clients.
    pub socket: PathBuf,
    /// Listen on vsock port [`DATA_PORT`] (a microVM room); a namespace room gets its
    /// data connections over the umbilical instead ([`on_channel`]).
    pub vsock: bool,
}

/// A request sent to bay0, waiting for its answer (and for its one fetch).
struct Pending {
    token: Token,
    file: Arc<File>,
    size: u64,
    fetched: bool,
    client: Option<UnixStream>,
    done: mpsc::SyncSender<(Outcome, String)>,
}

static UMBILICAL: Mutex<Option<File>> = Mutex::new(None);
static PENDING: Mutex<Option<Pending>> = Mutex::new(None);
static SEEN: Mutex<store::Seen> = Mutex::new(store::Seen::new());
static BUSY: AtomicBool = AtomicBool::new(false);
static DATA: AtomicUsize = AtomicUsize::new(0);
/// Where deliveries go, once [`start`] ran (a channel passed before that is closed).
static HOME: std::sync::OnceLock<Home> = std::sync::OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The umbilical's write side (the agent's umbilical module hands it over at boot).
pub fn attach_umbilical(writer: File) {
    *lock(&UMBILICAL) = Some(writer);
}

/// The umbilical closed: a waiting request will never hear from bay0.
pub fn detach_umbilical() {
    *lock(&UMBILICAL) = None;
    if let Some(p) = lock(&PENDING).take() {
        let _ = p
            .done
            .try_send((Outcome::Failed, "the umbilical to bay0 closed".into()));
    }
}

/// bay0's answer to a request (a [`Kind::CourierAnswer`] payload).
pub fn on_answer(payload: &[u8]) {
    let Ok(a) = Answer::decode(payload) else {
        say("courier: a malformed answer from bay0 was ignored");
        return;
    };
    let mut pending = lock(&PENDING);
    if pending.as_ref().is_some_and(|p| p.token == a.token) {
        if let Some(p) = pending.take() {
            let _ = p.done.try_send((a.outcome, a.text.to_string()));
        }
    }
}

/// A data connection bay0 passed on the umbilical (a namespace room's
/// [`anchor_proto::umbilical::Kind::CourierChannel`]): served as a vsock one is.
pub fn on_channel(conn: std::os::fd::OwnedFd) {
    match HOME.get() {
        Some(home) => serve_data_connection(File::from(conn), home.clone()),
        None => say("courier: a data connection came before the courier started; closed"),
    }
}

/// Starts the client socket and (in a microVM room) the vsock data port, each served by
/// its own thread.
pub fn start(cfg: Config) {
    let _ = HOME.set(cfg.home.clone());
    let _ = std::fs::remove_file(&cfg.socket);
    match UnixListener::bind(&cfg.socket) {
        Ok(l) => {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o666));
            spawn("courier-local", move || serve_clients(&l, WAITS));
        }
        Err(e) => say(&format!(
            "courier: no client socket {}: {e}",
            cfg.socket.display()
        )),
    }
    let home = cfg.home;
    if !cfg.vsock {
        return;
    }
    spawn("courier-data", move || {
        match crate::sys::vsock_listen(DATA_PORT) {
            Ok(l) => loop {
                let Ok(conn) = crate::sys::accept(l.as_raw_fd()) else {
                    continue;
                };
                if sys::vsock_peer_cid(conn.as_raw_fd()).ok() != Some(HOST_CID) {
                    continue;
                }
                let home = home.clone();
                serve_data_connection(File::from(conn), home);
            },
            Err(e) => say(&format!("courier: no data port {DATA_PORT}: {e}")),
        }
    });
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        say(&format!("courier: cannot start {name}: {e}"));
    }
}

/// Serves one data connection on its own thread (at most [`MAX_DATA`] at once), with
/// the stall timeouts set.
pub fn serve_data_connection(mut stream: File, home: Home) {
    let Some(slot) = Slot::take(&DATA, MAX_DATA) else {
        return;
    };
    let _ = sys::set_timeouts(stream.as_raw_fd(), STALL_S);
    // The place is given back when the thread ends, or when it cannot start.
    spawn("courier-conn", move || {
        let _slot = slot;
        handle_data(&mut stream, &home);
    });
}

/// One data connection (any connected stream): a fetch of the pending request or a
/// delivery into ~/Incoming. Every refusal is a [`Data::Failed`] frame with the reason.
pub fn handle_data<S: Read + Write>(stream: &mut S, home: &Home) {
    let mut dec = Frames::<Data>::default();
    let mut payload = [0u8; PAYLOAD_MAX];
    let first = dec.read_from(stream, &mut payload);
    let failed = |s: &mut S, why: &str| {
        let _ = write_frame(s, Data::Failed, why.as_bytes());
    };
    match first {
        Ok(Some((Data::Fetch, 16))) => {
            let token =
                <Token>::try_from(payload.get(..16).unwrap_or_default()).unwrap_or_default();
            fetch(stream, &token);
        }
        Ok(Some((Data::Deliver, n))) => {
            match Manifest::decode(payload.get(..n).unwrap_or_default()) {
                Ok(m) => {
                    let result = store::receive(stream, &mut dec, &m, home, &mut |id| {
                        lock(&SEEN).first_time(id)
                    });
                    match result {
                        Ok(name) => {
                            let from = String::from_utf8_lossy(m.room());
                            say(&format!(
                            "courier: received \"{name}\" ({} bytes) from room {from} in ~/Incoming",
                            m.size
                        ));
                            let _ = write_frame(stream, Data::Stored, name.as_bytes());
                        }
                        Err(e) => failed(stream, &e.to_string()),
                    }
                }
                Err(e) => failed(stream, &e.to_string()),
            }
        }
        Ok(Some((k, n))) => failed(stream, &format!("unexpected {k:?} frame of {n} bytes")),
        Ok(None) => {}
        Err(e) => failed(stream, &format!("bad frame: {e}")),
    }
}

/// A courier fetches the pending request's file: served once, and only for its token.
fn fetch<S: Write>(stream: &mut S, token: &Token) {
    let item = {
        let mut pending = lock(&PENDING);
        match pending.as_mut() {
            Some(p) if p.token == *token && !p.fetched => {
                p.fetched = true;
                Some((
                    p.file.clone(),
                    p.size,
                    p.client.as_ref().and_then(|c| c.try_clone().ok()),
                ))
            }
            _ => None,
        }
    };
    let Some((file, size, client)) = item else {
        let _ = write_frame(
            stream,
            Data::Failed,
            b"no such request: it was served already or never made",
        );
        return;
    };
    let mut step = Progress::new(client, "sending", size);
    if let Err(e) = source::serve(stream, &file, size, &mut |done| step.tell(done)) {
        say(&format!("courier: sending stopped: {e}"));
    }
}

/// Progress lines to a client, every tenth of the way.
struct Progress {
    client: Option<UnixStream>,
    what: &'static str,
    size: u64,
    next: u64,
}

impl Progress {
    fn new(client: Option<UnixStream>, what: &'static str, size: u64) -> Progress {
        Progress {
            client,
            what,
            size,
            next: 0,
        }
    }

    fn tell(&mut self, done: u64) {
        if done < self.next && done < self.size {
            return;
        }
        self.next = done.saturating_add(self.size / 10).max(1);
        if let Some(c) = self.client.as_mut() {
            let _ =
                c.write_all(format!("progress {} {done} {}\n", self.what, self.size).as_bytes());
        }
    }
}

/// The lines a client reads: progress, then one final `OUTCOME text`.
fn final_line(outcome: Outcome, text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    format!("{} {clean}\n", outcome.as_str())
}

/// Serves the room's `courier send` clients, each on its own thread: at most
/// [`MAX_CLIENTS`] at once (another is refused at once), each given `waits.request` to
/// send its request. So no program in the room, however many connections it opens and
/// leaves idle, makes the agent hold threads without bound or keeps other clients out for
/// good.
fn serve_clients(listener: &UnixListener, waits: Waits) {
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let Some(slot) = Slot::take(live.clone(), MAX_CLIENTS) else {
            let why = format!("too many courier clients at once in this room ({MAX_CLIENTS})");
            let _ = conn.set_nonblocking(true);
            let _ = conn.write_all(final_line(Outcome::Refused, &why).as_bytes());
            continue;
        };
        // Given back when the client's thread ends, or when it cannot start.
        spawn("courier-client", move || {
            let _slot = slot;
            serve_client(conn, waits);
        });
    }
}

/// One of a bounded number of places (data connections, clients), counted in `C`; given
/// back when dropped, so also when the thread it was taken for could not start.
struct Slot<C: Deref<Target = AtomicUsize>>(C);

impl<C: Deref<Target = AtomicUsize>> Slot<C> {
    /// One of `max` places counted in `count`; `None` when all are taken.
    fn take(count: C, max: usize) -> Option<Slot<C>> {
        if count.fetch_add(1, Ordering::SeqCst) >= max {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(count))
    }
}

impl<C: Deref<Target = AtomicUsize>> Drop for Slot<C> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Releases the one-request-at-a-time claim when dropped.
struct Claim;

impl Drop for Claim {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::SeqCst);
    }
}

/// One `courier send`: `send\0ROOM\0NAME` with the open file attached (within
/// [`REQUEST_WAIT`] of connecting).
pub fn handle_client(conn: UnixStream) {
    serve_client(conn, WAITS);
}

fn serve_client(mut conn: UnixStream, waits: Waits) {
    let (outcome, text) = request(&mut conn, waits);
    let _ = conn.write_all(final_line(outcome, &text).as_bytes());
}

/// A client's waits.
#[derive(Debug, Clone, Copy)]
struct Waits {
    /// For its request, from connecting.
    request: std::time::Duration,
    /// For bay0's answer before the client is told it waits for approval on the anchor's
    /// screen: bay0 refuses at once (milliseconds) what it will not prompt for, while a
    /// prompt's answer takes a human's keypress.
    refused_at_once: std::time::Duration,
}

const WAITS: Waits = Waits {
    request: REQUEST_WAIT,
    refused_at_once: std::time::Duration::from_millis(300),
};

fn request(conn: &mut UnixStream, waits: Waits) -> (Outcome, String) {
    let wait = waits.request;
    let refused = |t: String| (Outcome::Refused, t);
    let mut buf = [0u8; 512];
    if let Err(e) = conn.set_read_timeout(Some(wait)) {
        return refused(format!("bad request: {e}"));
    }
    let (n, fd) = match sys::recv_with_fd(conn, &mut buf) {
        Ok(r) => r,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            let ms = wait.as_millis();
            return refused(format!(
                "bad request: none came within {ms} ms of connecting"
            ));
        }
        Err(e) => return refused(format!("bad request: {e}")),
    };
    let mut parts = buf.get(..n).unwrap_or_default().splitn(3, |&b| b == 0);
    let (Some(b"send"), Some(to), Some(name), Some(fd)) =
        (parts.next(), parts.next(), parts.next(), fd)
    else {
        return refused("bad request: want send, a room, a name and the open file".into());
    };
    let file = File::from(fd);
    let size = match source::check(&file) {
        Ok(s) => s,
        Err(e) => return refused(e.to_string()),
    };
    let to = String::from_utf8_lossy(to).into_owned();
    let checked = Manifest::new([0; 16], &to, name, size, [0; 32])
        .map_err(|e| e.to_string())
        .and_then(|m| m.check().map(drop).map_err(|e| e.to_string()));
    if let Err(e) = checked {
        return refused(e);
    }
    if BUSY.swap(true, Ordering::SeqCst) {
        return refused("another courier send is in progress in this room".into());
    }
    let _claim = Claim;
    let mut step = Progress::new(conn.try_clone().ok(), "hashing", size);
    let digest = match source::hash(&file, size, &mut |d| step.tell(d)) {
        Ok(d) => d,
        Err(e) => return (Outcome::Failed, e.to_string()),
    };
    let mut token = [0u8; 16];
    if let Err(e) = sys::random(&mut token) {
        return (
            Outcome::Failed,
            format!("no randomness for the request: {e}"),
        );
    }
    let manifest = match Manifest::new(token, &to, name, size, digest) {
        Ok(m) => m,
        Err(e) => return refused(e.to_string()),
    };
    let (done, answer) = mpsc::sync_channel(1);
    *lock(&PENDING) = Some(Pending {
        token,
        file: Arc::new(file),
        size,
        fetched: false,
        client: conn.try_clone().ok(),
        done,
    });
    let mut frame = [0u8; MANIFEST_MAX];
    let len = manifest.encode(&mut frame);
    let sent = match lock(&UMBILICAL).as_mut() {
        Some(u) => write_frame(
            u,
            Kind::CourierRequest,
            frame.get(..len).unwrap_or_default(),
        )
        .map_err(|e| e.to_string()),
        None => Err("the room has no umbilical to bay0".to_string()),
    };
    if let Err(e) = sent {
        lock(&PENDING).take();
        return (Outcome::Failed, e);
    }
    // What the rooms' policies or states do not allow, bay0 refuses at once, with no
    // prompt: that answer alone, not "waiting for approval" first (it was said before
    // every refusal, for a moment, as if a prompt were up).
    let closed = || (Outcome::Failed, "the umbilical to bay0 closed".to_string());
    match answer.recv_timeout(waits.refused_at_once) {
        Ok(a) => return a,
        Err(mpsc::RecvTimeoutError::Disconnected) => return closed(),
        Err(mpsc::RecvTimeoutError::Timeout) => {}
    }
    let _ = conn.write_all(b"progress waiting 0 0\n");
    answer.recv().unwrap_or_else(|_| closed())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::time::Duration;

    /// A listener in a new directory, served by [`serve_clients`] with `wait` for the
    /// request.
    fn clients(tag: &str, wait: Duration) -> (PathBuf, PathBuf) {
        let waits = Waits {
            request: wait,
            ..WAITS
        };
        clients_waiting(tag, waits)
    }

    fn clients_waiting(tag: &str, waits: Waits) -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("courier-clients-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("courier.sock");
        let l = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || serve_clients(&l, waits));
        (dir, sock)
    }

    /// The one line the agent answers a client with (a long read timeout: hang
    /// detection only).
    fn answer(c: &UnixStream) -> String {
        c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).unwrap();
        line
    }

    /// Found in `make run`: `courier send FILE --to ROOM` for a room that is not running
    /// (or the sender itself) printed "waiting for approval on the anchor's screen" and
    /// then bay0's refusal: no prompt was ever shown. A request bay0 answers at once is
    /// told its answer alone; one that waits for a keypress is told it waits.
    #[test]
    fn a_request_bay0_refuses_at_once_is_not_said_to_wait_for_approval() {
        use anchor_proto::umbilical::{Decoder, PAYLOAD_MAX};
        use std::os::fd::OwnedFd;
        // A wide window: a thread held up on a loaded machine must not pass for a prompt.
        let at_once = Duration::from_secs(1);
        let waits = Waits {
            refused_at_once: at_once,
            ..WAITS
        };
        let (dir, sock) = clients_waiting("at-once", waits);
        let item = dir.join("item");
        std::fs::write(&item, b"x").unwrap();
        let (agent, mut bay0) = UnixStream::pair().unwrap();
        attach_umbilical(File::from(OwnedFd::from(agent)));
        for (delay, waits) in [(Duration::ZERO, false), (at_once * 3, true)] {
            let c = UnixStream::connect(&sock).unwrap();
            let f = File::open(&item).unwrap();
            sys::send_with_fd(&c, b"send\0web\0item", f.as_raw_fd()).unwrap();
            // bay0: reads the request, answers it after `delay`.
            let (mut dec, mut payload) = (Decoder::default(), [0u8; PAYLOAD_MAX]);
            let (kind, n) = loop {
                if let Some(frame) = dec.next_frame(&mut payload).unwrap() {
                    break frame;
                }
                let n = bay0.read(dec.space()).unwrap();
                assert!(n > 0, "the umbilical closed");
                dec.filled(n);
            };
            assert_eq!(kind, Kind::CourierRequest);
            let token = Manifest::decode(&payload[..n]).unwrap().token;
            std::thread::sleep(delay);
            let mut out = [0u8; anchor_proto::courier::ANSWER_MAX];
            let text = "room web is not running";
            let len = Answer {
                token,
                outcome: Outcome::Refused,
                text,
            }
            .encode(&mut out);
            on_answer(&out[..len]);
            c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            let mut lines = String::new();
            BufReader::new(&c).read_to_string(&mut lines).unwrap();
            let said_wait = lines.lines().any(|l| l.starts_with("progress waiting"));
            assert_eq!(said_wait, waits, "answered after {delay:?}: {lines:?}");
            assert!(
                lines.ends_with("refused room web is not running\n"),
                "{lines:?}"
            );
        }
        detach_umbilical();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Any program in a room may connect to /run/courier.sock. Each connection got its
    /// own thread, which waited for the request without end: connections left idle
    /// piled up threads in the agent (the room's PID 1) without bound, and kept their
    /// threads for good. Now at most MAX_CLIENTS are served at once (another is refused
    /// at once) and each has its wait to send its request.
    #[test]
    fn idle_clients_are_bounded_and_let_go() {
        let (dir, sock) = clients("bound", Duration::from_secs(600));
        let idle: Vec<UnixStream> = (0..MAX_CLIENTS)
            .map(|_| UnixStream::connect(&sock).unwrap())
            .collect();
        let extra = UnixStream::connect(&sock).unwrap();
        assert_eq!(
            answer(&extra),
            format!("refused too many courier clients at once in this room ({MAX_CLIENTS})\n")
        );
        drop(idle);
        std::fs::remove_dir_all(&dir).unwrap();

        let (dir, sock) = clients("wait", Duration::from_millis(200));
        let idle = UnixStream::connect(&sock).unwrap();
        assert_eq!(
            answer(&idle),
            "refused bad request: none came within 200 ms of connecting\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
