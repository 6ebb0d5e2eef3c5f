// SPDX-License-Identifier: GPL-3.0-or-later
//! One transfer over two connected streams (docs/COURIER-PROTOCOL.md, "Data
//! connections"): fetch the approved item from the source room's agent, deliver it to
//! the destination room's agent, commit only when the source's stream ended exactly at
//! the approved size, and report the name the destination stored it under. Generic over
//! the streams, so the same code runs on vsock connections, Unix sockets and test pairs.
//! Stall timeouts are the streams' own (the binary sets SO_RCVTIMEO / SO_SNDTIMEO); the
//! whole transfer's time allowance is [`Until`]'s.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::Instant;

use anchor_proto::courier::{cut, is_candidate, Data, Launch, Manifest, MANIFEST_MAX, TEXT_MAX};
use anchor_proto::umbilical::{encode, Frames, HEADER, PAYLOAD_MAX};

/// Bytes moved per read.
pub const CHUNK: usize = 256 * 1024;
/// Longest `OK <port>\n` line of the hybrid vsock handshake.
const OK_LINE_MAX: usize = 32;

/// Seconds a whole transfer of `size` bytes may take: 2 minutes, and 1 s more per MiB.
/// Every byte a peer sends resets its stall timeout, so without this a room sending one
/// byte before each timeout would hold the courier, and with it every other room's
/// courier requests (one transfer at a time), for as long as it liked.
pub fn allowance_secs(size: u64) -> u64 {
    120 + size.div_ceil(1 << 20)
}

/// A stream whose reads and writes fail once `until` has passed ([`Overdue`]). It is
/// checked before each call: one already waiting ends at the stream's own stall timeout.
#[derive(Debug)]
pub struct Until<S> {
    pub inner: S,
    pub until: Instant,
}

/// The error of a read or write past the transfer's allowance.
#[derive(Debug)]
pub struct Overdue;

impl fmt::Display for Overdue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("past the transfer's time allowance")
    }
}

impl std::error::Error for Overdue {}

impl<S> Until<S> {
    fn check(&self) -> io::Result<()> {
        if Instant::now() < self.until {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::TimedOut, Overdue))
        }
    }
}

impl<S: Read> Read for Until<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Until<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Which end of the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

/// Why a transfer failed: each says which room and what happened.
#[derive(Debug)]
pub enum TransferError {
    /// The room's agent did not take the connection (no `OK` line).
    Handshake(Side, String),
    /// Reading or writing failed (a timeout is a stall).
    Io(Side, &'static str, io::Error),
    /// The agent sent something the protocol does not allow there.
    Protocol(Side, String),
    /// The agent said it cannot (its reason).
    Refused(Side, String),
    /// The source offered a different size than the one approved.
    Offer { offered: u64, approved: u64 },
    /// The source's stream ended early.
    Short { got: u64, size: u64 },
    /// The source sent more than it declared.
    Long { size: u64 },
}

impl TransferError {
    /// The message, naming the rooms of `l`.
    pub fn explain(&self, l: &Launch) -> String {
        let room = |s: &Side| match s {
            Side::Source => format!("the source room {}", l.from),
            Side::Destination => format!("the destination room {}", l.to),
        };
        match self {
            TransferError::Handshake(s, why) => {
                format!("{}'s agent did not take the connection ({why})", room(s))
            }
            TransferError::Io(s, what, e) if overdue(e) => format!(
                "the transfer took longer than its allowance ({} s for {} bytes; time ran \
                 out {what}, with {})",
                allowance_secs(l.size),
                l.size,
                room(s)
            ),
            TransferError::Io(s, what, e) if stalled(e) => {
                format!(
                    "{} stalled ({what}: no progress before the timeout)",
                    room(s)
                )
            }
            TransferError::Io(s, what, e) => format!("{}: {what}: {e}", room(s)),
            TransferError::Protocol(s, what) => format!("{} broke the protocol: {what}", room(s)),
            TransferError::Refused(s, why) => format!("{}: {why}", room(s)),
            TransferError::Offer { offered, approved } => format!(
                "the source room {} offered {offered} bytes, {approved} were approved",
                l.from
            ),
            TransferError::Short { got, size } => format!(
                "the source room {}'s stream ended after {got} of {size} bytes",
                l.from
            ),
            TransferError::Long { size } => format!(
                "the source room {} sent more than the {size} bytes it declared",
                l.from
            ),
        }
    }
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::Handshake(s, why) => write!(f, "{s:?}: no connection ({why})"),
            TransferError::Io(s, what, e) => write!(f, "{s:?}: {what}: {e}"),
            TransferError::Protocol(s, what) => write!(f, "{s:?}: protocol: {what}"),
            TransferError::Refused(s, why) => write!(f, "{s:?}: {why}"),
            TransferError::Offer { offered, approved } => {
                write!(f, "offered {offered} bytes, approved {approved}")
            }
            TransferError::Short { got, size } => write!(f, "ended after {got} of {size} bytes"),
            TransferError::Long { size } => write!(f, "more than {size} bytes"),
        }
    }
}

impl std::error::Error for TransferError {}

fn overdue(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Overdue>())
}

fn stalled(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads the hybrid vsock's `OK <port>\n` (byte by byte: what follows is the stream).
pub fn handshake<S: Read>(s: &mut S, side: Side) -> Result<(), TransferError> {
    let mut line = Vec::with_capacity(OK_LINE_MAX);
    let mut b = [0u8; 1];
    while line.len() < OK_LINE_MAX {
        match s.read(&mut b) {
            Ok(0) => {
                return Err(TransferError::Handshake(
                    side,
                    "the room closed the connection: nothing listens on its courier port".into(),
                ))
            }
            Ok(_) if b[0] == b'\n' => {
                return match line.strip_prefix(b"OK ") {
                    Some(port) if !port.is_empty() && port.iter().all(u8::is_ascii_digit) => Ok(()),
                    _ => Err(TransferError::Handshake(side, "no OK line".into())),
                }
            }
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TransferError::Io(side, "waiting for the connection", e)),
        }
    }
    Err(TransferError::Handshake(side, "OK line too long".into()))
}

fn send<W: Write>(w: &mut W, side: Side, kind: Data, payload: &[u8]) -> Result<(), TransferError> {
    let mut frame = [0u8; HEADER + MANIFEST_MAX];
    let n = encode(kind, payload, &mut frame)
        .map_err(|e| TransferError::Protocol(side, e.to_string()))?;
    w.write_all(frame.get(..n).unwrap_or_default())
        .map_err(|e| TransferError::Io(side, "sending a frame", e))
}

/// Reads the next frame (`None` at a clean end of the stream before any byte of one).
fn next<R: Read>(
    r: &mut R,
    dec: &mut Frames<Data>,
    side: Side,
    payload: &mut [u8; PAYLOAD_MAX],
) -> Result<Option<(Data, usize)>, TransferError> {
    loop {
        match dec.next_frame(payload) {
            Ok(Some(f)) => return Ok(Some(f)),
            Ok(None) => {}
            // The sender hears this: a destination's header bytes stay its own.
            Err(e) => {
                let what = match side {
                    Side::Source => e.to_string(),
                    Side::Destination => "a malformed frame".into(),
                };
                return Err(TransferError::Protocol(side, what));
            }
        }
        match r.read(dec.space()) {
            Ok(0) if dec.pending() == 0 => return Ok(None),
            Ok(0) => return Err(TransferError::Protocol(side, "a frame cut short".into())),
            Ok(n) => dec.filled(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TransferError::Io(side, "reading a frame", e)),
        }
    }
}

fn text(payload: &[u8]) -> String {
    let s = String::from_utf8_lossy(payload);
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    cut(&clean, TEXT_MAX).to_string()
}

/// The destination's refusal as the sender may hear it: the agent's reasons
/// (tools/anchor-agent `StoreError`) reduced to their fixed words, so a destination room
/// cannot send text of its own back to the source room (the courier carries data one
/// way); anything else is withheld.
pub fn destination_reason(payload: &[u8]) -> String {
    let t = text(payload);
    let fixed: &[(&str, &str)] = &[
        (
            "refused: this transfer was delivered before",
            "refused: this transfer was delivered before",
        ),
        ("refused: ", "refused: the delivery was malformed"),
        (
            "~/Incoming is a symbolic link",
            "~/Incoming is a symbolic link; nothing is written through it",
        ),
        (
            "~/Incoming is not a directory",
            "~/Incoming is not a directory; nothing was stored",
        ),
        ("~/Incoming", "~/Incoming could not be prepared"),
        (
            "not enough space in ~/Incoming",
            "not enough space in ~/Incoming",
        ),
        (
            "the item ended after",
            "the item ended early; nothing was stored",
        ),
        (
            "the transfer was not completed",
            "the transfer was not completed; nothing was stored",
        ),
        (
            "the bytes received do not match the approved SHA-256",
            "the bytes received do not match the approved SHA-256; nothing was stored",
        ),
        (
            "the name and ",
            "the name and every numbered variant of it exist in ~/Incoming",
        ),
    ];
    match fixed.iter().find(|(p, _)| t.starts_with(p)) {
        Some((_, say)) => (*say).to_string(),
        None if t.ends_with("; nothing was stored") => {
            "it could not store the item; nothing was stored".to_string()
        }
        None => "its agent refused with a reason the courier does not pass on".to_string(),
    }
}

/// Carries the item `l` describes from `src` to `dst`; the name the destination stored it
/// under. `l.vsock`: which streams (source, destination) start with the hybrid vsock's
/// `OK` line (a microVM room's); the others are sockets passed to a namespace room's
/// agent, which start with the agent's first frame.
pub fn run<S: Read + Write, D: Read + Write>(
    src: &mut S,
    dst: &mut D,
    l: &Launch,
) -> Result<String, TransferError> {
    use Side::{Destination, Source};
    let [vsock_src, vsock_dst] = l.vsock;
    if vsock_src {
        handshake(src, Source)?;
    }
    if vsock_dst {
        handshake(dst, Destination)?;
    }
    let mut payload = [0u8; PAYLOAD_MAX];
    let mut from_src = Frames::<Data>::default();
    // What the source says counts even if it closed before taking the fetch.
    let fetched = send(src, Source, Data::Fetch, &l.token);
    let offer = next(src, &mut from_src, Source, &mut payload);
    let offer = match (offer, fetched) {
        (Ok(Some(frame)), _) => Some(frame),
        (Err(e @ TransferError::Protocol(..)), _) => return Err(e),
        (Ok(None) | Err(_), Err(e)) => return Err(e),
        (other, Ok(())) => other?,
    };
    match offer {
        Some((Data::Offer, 8)) => {
            let offered = u64::from_le_bytes(
                <[u8; 8]>::try_from(payload.get(..8).unwrap_or_default()).unwrap_or_default(),
            );
            if offered != l.size {
                return Err(TransferError::Offer {
                    offered,
                    approved: l.size,
                });
            }
        }
        Some((Data::Failed, n)) => {
            return Err(TransferError::Refused(
                Source,
                text(payload.get(..n).unwrap_or_default()),
            ))
        }
        Some((k, n)) => {
            return Err(TransferError::Protocol(
                Source,
                format!("{k:?} of {n} bytes instead of an offer"),
            ))
        }
        None => {
            return Err(TransferError::Protocol(
                Source,
                "closed instead of offering the item".into(),
            ))
        }
    }
    let manifest = Manifest::new(l.id, &l.from, l.name.as_bytes(), l.size, l.sha256)
        .map_err(|e| TransferError::Protocol(Destination, e.to_string()))?;
    let mut head = [0u8; MANIFEST_MAX];
    let n = manifest.encode(&mut head);
    let mut from_dst = Frames::<Data>::default();
    let sent = send(
        dst,
        Destination,
        Data::Deliver,
        head.get(..n).unwrap_or_default(),
    )
    .and_then(|()| copy(src, &mut from_src, dst, l.size))
    .and_then(|()| send(dst, Destination, Data::Commit, &[]));
    if let Err(e @ TransferError::Io(Destination, ..)) = sent {
        // The destination stopped taking bytes: its refusal says why, if it sent one.
        return match next(dst, &mut from_dst, Destination, &mut payload) {
            Ok(Some((Data::Failed, n))) => Err(TransferError::Refused(
                Destination,
                destination_reason(payload.get(..n).unwrap_or_default()),
            )),
            _ => Err(e),
        };
    }
    sent?;
    match next(dst, &mut from_dst, Destination, &mut payload)? {
        Some((Data::Stored, n)) => {
            // Only a name the destination may store it under: never text of its own.
            let stored = core::str::from_utf8(payload.get(..n).unwrap_or_default()).ok();
            match stored.filter(|s| is_candidate(&l.name, s)) {
                Some(s) => Ok(s.to_string()),
                None => Err(TransferError::Protocol(
                    Destination,
                    "stored it under a name it may not have chosen".into(),
                )),
            }
        }
        Some((Data::Failed, n)) => Err(TransferError::Refused(
            Destination,
            destination_reason(payload.get(..n).unwrap_or_default()),
        )),
        Some(_) => Err(TransferError::Protocol(
            Destination,
            "a frame other than stored or failed".into(),
        )),
        None => Err(TransferError::Protocol(
            Destination,
            "closed the connection without an answer".into(),
        )),
    }
}

/// Moves exactly `size` raw bytes from `src` (after what `dec` already holds) to `dst`,
/// then makes sure the source's stream ends there.
fn copy<S: Read, D: Write>(
    src: &mut S,
    dec: &mut Frames<Data>,
    dst: &mut D,
    size: u64,
) -> Result<(), TransferError> {
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    while done < size {
        let want = usize::try_from(size - done).unwrap_or(CHUNK).min(CHUNK);
        let room = buf.get_mut(..want).unwrap_or_default();
        let n = match dec.take_raw(room) {
            0 => match src.read(room) {
                Ok(0) => return Err(TransferError::Short { got: done, size }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TransferError::Io(Side::Source, "reading the item", e)),
            },
            n => n,
        };
        dst.write_all(buf.get(..n).unwrap_or_default())
            .map_err(|e| TransferError::Io(Side::Destination, "writing the item", e))?;
        done += n as u64;
    }
    if dec.pending() > 0 {
        return Err(TransferError::Long { size });
    }
    let mut one = [0u8; 1];
    loop {
        return match src.read(&mut one) {
            Ok(0) => Ok(()),
            Ok(_) => Err(TransferError::Long { size }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(TransferError::Io(
                Side::Source,
                "waiting for the end of the stream",
                e,
            )),
        };
    }
}
