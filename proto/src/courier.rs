// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier's wire formats (docs/COURIER-PROTOCOL.md is the same in prose).
//!
//! Three channels, all framed as the umbilical is ([`crate::umbilical`]: kind, reserved,
//! u16 length, payload):
//!
//! - the umbilical (agent <-> bay0): [`Kind::CourierRequest`] carries a [`Manifest`] (its
//!   `room` is the destination; the source is the room whose umbilical it arrived on) and
//!   [`Kind::CourierAnswer`] carries an [`Answer`];
//! - a data connection to the source room's agent (guest port [`DATA_PORT`]): the courier
//!   sends [`Data::Fetch`] (the request's token), the agent answers [`Data::Offer`] (the
//!   size) and then exactly that many raw bytes, or [`Data::Failed`];
//! - a data connection to the destination room's agent: the courier sends
//!   [`Data::Deliver`] (a [`Manifest`] whose `room` is the source and whose token is the
//!   transfer id), the raw bytes, then [`Data::Commit`] once the source's stream ended
//!   exactly at the approved size; the agent answers [`Data::Stored`] (the name it
//!   stored the file under) or [`Data::Failed`].
//!
//! bay0 starts `anchor-courier` with a [`Launch`] command line and reads its one result
//! line ([`result_of`]). Everything is bounded and checked; nothing here allocates on the
//! decoding side except [`Launch::parse`] (the courier's own command line).

use core::fmt;

use crate::umbilical::{self, FrameKind, Kind};

/// The guest vsock port (or, for namespace rooms, the socket) the agent's courier service
/// listens on.
pub const DATA_PORT: u32 = 1025;
/// Longest file name the courier carries, in bytes: below Linux's 255 so that the
/// destination can always add a ` (N)` suffix to avoid an existing name.
pub const NAME_MAX: usize = 200;
/// Longest name the wire format can express (its length is one byte).
pub const WIRE_NAME_MAX: usize = 255;
pub use crate::umbilical::CHANNEL_FRAME;
/// What bay0 writes on a microVM room's hybrid vsock socket to reach [`DATA_PORT`].
pub const CONNECT_LINE: &[u8] = b"CONNECT 1025\n";
/// Longest room name.
pub const ROOM_MAX: usize = crate::name::NAME_MAX;
/// Longest text of an answer or a failure.
pub const TEXT_MAX: usize = umbilical::NOTICE_MAX;
/// A request's token and a transfer's id: 16 random bytes.
pub type Token = [u8; 16];
/// A SHA-256 value.
pub type Digest = [u8; 32];
/// Fixed part of a [`Manifest`]: token, size, sha256, two length bytes.
const MANIFEST_FIXED: usize = 16 + 8 + 32 + 2;
/// Longest encoded [`Manifest`].
pub const MANIFEST_MAX: usize = MANIFEST_FIXED + ROOM_MAX + WIRE_NAME_MAX;
/// Longest encoded [`Answer`].
pub const ANSWER_MAX: usize = 16 + 1 + TEXT_MAX;

/// Why a file name cannot travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    /// `.` or `..`.
    Dots,
    /// Longer than [`NAME_MAX`] bytes.
    TooLong(usize),
    /// Not UTF-8 (the first bad byte's offset).
    NotUtf8(usize),
    /// A `/`: a name is one path component, never a path.
    Slash,
    /// A C0 or C1 control character (NUL, ESC and so every ANSI sequence, DEL, ...).
    Control(char),
    /// A bidirectional formatting character (it can make a name read backwards).
    Bidi(char),
    /// A zero-width or otherwise invisible character.
    Invisible(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = |c: &char| u32::from(*c);
        match self {
            NameError::Empty => f.write_str("the file name is empty"),
            NameError::Dots => f.write_str("the file name is \".\" or \"..\""),
            NameError::TooLong(n) => {
                write!(f, "the file name is {n} bytes long (at most {NAME_MAX})")
            }
            NameError::NotUtf8(at) => write!(f, "the file name is not UTF-8 (byte {at})"),
            NameError::Slash => f.write_str("the file name holds a '/' (a path, not a name)"),
            NameError::Control(c) => write!(
                f,
                "the file name holds the control character U+{:04X}",
                code(c)
            ),
            NameError::Bidi(c) => write!(
                f,
                "the file name holds the bidirectional formatting character U+{:04X}",
                code(c)
            ),
            NameError::Invisible(c) => write!(
                f,
                "the file name holds the invisible character U+{:04X}",
                code(c)
            ),
        }
    }
}

/// Bidirectional formatting characters (Unicode's Bidi_Control set).
pub fn is_bidi(c: char) -> bool {
    matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Characters that take no visible space or stand in for nothing: every default-ignorable
/// code point (Unicode's Default_Ignorable_Code_Point: soft hyphen, zero-width spaces and
/// joiners, fillers, variation selectors, invisible operators, tags, and the code points
/// reserved as such) that is not a bidirectional one ([`is_bidi`]), and the line and
/// paragraph separators and interlinear annotation marks.
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{34f}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
        | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200d}' | '\u{2028}' | '\u{2029}'
        | '\u{2060}'..='\u{2065}' | '\u{206a}'..='\u{206f}' | '\u{3164}'
        | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}'
        | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}')
}

/// The file name the courier may carry: one path component of 1..=[`NAME_MAX`] bytes of
/// UTF-8, not `.` or `..`, with no `/`, no control character, no bidirectional
/// formatting character and no invisible character.
pub fn check_name(bytes: &[u8]) -> Result<&str, NameError> {
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes.len() > NAME_MAX {
        return Err(NameError::TooLong(bytes.len()));
    }
    let name = core::str::from_utf8(bytes).map_err(|e| NameError::NotUtf8(e.valid_up_to()))?;
    if name == "." || name == ".." {
        return Err(NameError::Dots);
    }
    for c in name.chars() {
        if c == '/' {
            return Err(NameError::Slash);
        }
        if c.is_control() {
            return Err(NameError::Control(c));
        }
        if is_bidi(c) {
            return Err(NameError::Bidi(c));
        }
        if is_invisible(c) {
            return Err(NameError::Invisible(c));
        }
    }
    Ok(name)
}

/// A payload that does not have the shape its kind demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// `got` bytes where the fields say `want`.
    Length { got: usize, want: usize },
    /// A room name longer than [`ROOM_MAX`] bytes.
    RoomTooLong(usize),
    /// A name longer than [`WIRE_NAME_MAX`] bytes (cannot be encoded).
    NameTooLong(usize),
    /// An unknown outcome code.
    Outcome(u8),
    /// Text that is not UTF-8.
    Text,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Length { got, want } => write!(
                f,
                "malformed courier message: {got} bytes where its fields make {want}"
            ),
            Malformed::RoomTooLong(n) => write!(
                f,
                "malformed courier message: a room name of {n} bytes (at most {ROOM_MAX})"
            ),
            Malformed::NameTooLong(n) => write!(
                f,
                "malformed courier message: a file name of {n} bytes (at most {WIRE_NAME_MAX})"
            ),
            Malformed::Outcome(c) => write!(f, "malformed courier answer: outcome {c}"),
            Malformed::Text => f.write_str("malformed courier message: text is not UTF-8"),
        }
    }
}

/// Why a well-formed request cannot be carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The destination is not a valid room name.
    Room,
    Name(NameError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Room => write!(
                f,
                "the destination is not a room name (1-{ROOM_MAX} of a-z 0-9 -)"
            ),
            RequestError::Name(e) => e.fmt(f),
        }
    }
}

/// One item's metadata and one room's name (the default is all zeros and empty names,
/// the stand-in for a request too malformed to read): a courier request (token = the request's
/// token, room = the destination) or a delivery header (token = the transfer id, room =
/// the source). Wire layout: token (16) | size (u64 LE) | sha256 (32) | room length (u8)
/// | name length (u8) | room | name, and nothing after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    pub token: Token,
    /// The item's size in bytes.
    pub size: u64,
    /// The item's SHA-256.
    pub sha256: Digest,
    room: [u8; ROOM_MAX],
    room_len: u8,
    name: [u8; WIRE_NAME_MAX],
    name_len: u8,
}

fn take<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

impl Default for Manifest {
    fn default() -> Manifest {
        Manifest {
            token: [0; 16],
            size: 0,
            sha256: [0; 32],
            room: [0; ROOM_MAX],
            room_len: 0,
            name: [0; WIRE_NAME_MAX],
            name_len: 0,
        }
    }
}

impl Manifest {
    /// A manifest; `Malformed` when a field is too long for the wire.
    pub fn new(
        token: Token,
        room: &str,
        name: &[u8],
        size: u64,
        sha256: Digest,
    ) -> Result<Manifest, Malformed> {
        let room_len = u8::try_from(room.len())
            .ok()
            .filter(|&n| usize::from(n) <= ROOM_MAX)
            .ok_or(Malformed::RoomTooLong(room.len()))?;
        let name_len = u8::try_from(name.len()).map_err(|_| Malformed::NameTooLong(name.len()))?;
        let mut m = Manifest {
            token,
            size,
            sha256,
            room: [0; ROOM_MAX],
            room_len,
            name: [0; WIRE_NAME_MAX],
            name_len,
        };
        if let Some(dst) = m.room.get_mut(..room.len()) {
            dst.copy_from_slice(room.as_bytes());
        }
        if let Some(dst) = m.name.get_mut(..name.len()) {
            dst.copy_from_slice(name);
        }
        Ok(m)
    }

    /// The room name's bytes (unchecked: see [`Manifest::check`]).
    pub fn room(&self) -> &[u8] {
        self.room
            .get(..usize::from(self.room_len))
            .unwrap_or_default()
    }

    /// The file name's bytes (unchecked: see [`Manifest::check`]).
    pub fn name(&self) -> &[u8] {
        self.name
            .get(..usize::from(self.name_len))
            .unwrap_or_default()
    }

    /// Writes the payload into `out` (at least [`MANIFEST_MAX`] bytes); its length.
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let (room, name) = (self.room(), self.name());
        let mut at = 0;
        for part in [
            &self.token[..],
            &self.size.to_le_bytes(),
            &self.sha256,
            &[self.room_len, self.name_len],
            room,
            name,
        ] {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        at.min(out.len())
    }

    /// The payload as a vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; MANIFEST_MAX];
        let n = self.encode(&mut out);
        out.truncate(n);
        out
    }

    /// Parses a payload: every length must match exactly.
    pub fn decode(p: &[u8]) -> Result<Manifest, Malformed> {
        let short = Malformed::Length {
            got: p.len(),
            want: MANIFEST_FIXED,
        };
        let lens = p.get(MANIFEST_FIXED - 2..MANIFEST_FIXED).ok_or(short)?;
        let (room_len, name_len) = match lens {
            [r, n] => (usize::from(*r), usize::from(*n)),
            _ => return Err(short),
        };
        if room_len > ROOM_MAX {
            return Err(Malformed::RoomTooLong(room_len));
        }
        let want = MANIFEST_FIXED + room_len + name_len;
        if p.len() != want {
            return Err(Malformed::Length { got: p.len(), want });
        }
        let room = p
            .get(MANIFEST_FIXED..MANIFEST_FIXED + room_len)
            .unwrap_or_default();
        let room = core::str::from_utf8(room).map_err(|_| Malformed::Text)?;
        let name = p.get(MANIFEST_FIXED + room_len..want).unwrap_or_default();
        Manifest::new(
            take(p, 0),
            room,
            name,
            u64::from_le_bytes(take(p, 16)),
            take(p, 24),
        )
    }

    /// The room and file names once they pass the rules ([`crate::name::is_valid`],
    /// [`check_name`]).
    pub fn check(&self) -> Result<(&str, &str), RequestError> {
        let room = core::str::from_utf8(self.room())
            .ok()
            .filter(|r| crate::name::is_valid(r))
            .ok_or(RequestError::Room)?;
        let name = check_name(self.name()).map_err(RequestError::Name)?;
        Ok((room, name))
    }
}

/// How a courier request ended, as the sender hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Refused,
    TimedOut,
    Failed,
}

impl Outcome {
    /// The outcome byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Delivered => 0,
            Outcome::Refused => 1,
            Outcome::TimedOut => 2,
            Outcome::Failed => 3,
        }
    }

    fn from_code(c: u8) -> Option<Outcome> {
        Some(match c {
            0 => Outcome::Delivered,
            1 => Outcome::Refused,
            2 => Outcome::TimedOut,
            3 => Outcome::Failed,
            _ => return None,
        })
    }

    /// The word used in answers, audit records and the client's output.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Refused => "refused",
            Outcome::TimedOut => "timed-out",
            Outcome::Failed => "failed",
        }
    }
}

/// bay0's answer to a request: its token, the outcome and a text (the name the file was
/// stored under when delivered, the reason otherwise). Wire layout: token (16) | outcome
/// (u8) | UTF-8 text (at most [`TEXT_MAX`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer<'a> {
    pub token: Token,
    pub outcome: Outcome,
    pub text: &'a str,
}

/// Most ` (N)` suffixes a destination tries before giving up.
pub const MAX_SUFFIX: u32 = 1000;

/// The `n`th name a destination tries for `name`: `name` itself, then `stem (n).ext`
/// (the extension is what follows the last `.`, unless that dot starts the name).
pub fn candidate(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => {
            let (stem, ext) = name.split_at(dot);
            format!("{stem} ({n}){ext}")
        }
        _ => format!("{name} ({n})"),
    }
}

/// Whether `stored` is one of the names a destination may store `name` under.
pub fn is_candidate(name: &str, stored: &str) -> bool {
    (0..=MAX_SUFFIX).any(|n| candidate(name, n) == stored)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

impl Answer<'_> {
    /// Writes the payload into `out` (at least [`ANSWER_MAX`] bytes), the text cut to
    /// [`TEXT_MAX`] bytes; its length.
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let text = cut(self.text, TEXT_MAX).as_bytes();
        let mut at = 0;
        for part in [&self.token[..], &[self.outcome.code()], text] {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        at.min(out.len())
    }

    /// The whole umbilical frame into `out`; its length.
    pub fn frame(&self, out: &mut [u8; umbilical::HEADER + ANSWER_MAX]) -> usize {
        let mut payload = [0u8; ANSWER_MAX];
        let n = self.encode(&mut payload);
        umbilical::encode(
            Kind::CourierAnswer,
            payload.get(..n).unwrap_or_default(),
            out,
        )
        .unwrap_or(0)
    }

    /// Parses a payload.
    pub fn decode(p: &[u8]) -> Result<Answer<'_>, Malformed> {
        let short = Malformed::Length {
            got: p.len(),
            want: 17,
        };
        let code = *p.get(16).ok_or(short)?;
        let text = p.get(17..).unwrap_or_default();
        if text.len() > TEXT_MAX {
            return Err(Malformed::Length {
                got: p.len(),
                want: ANSWER_MAX,
            });
        }
        Ok(Answer {
            token: take(p, 0),
            outcome: Outcome::from_code(code).ok_or(Malformed::Outcome(code))?,
            text: core::str::from_utf8(text).map_err(|_| Malformed::Text)?,
        })
    }
}

/// The frames of a courier data connection (their own kind space: an umbilical frame on
/// a data connection, or the reverse, is an unknown kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// Courier -> source agent: send the item of this request. Payload: the token (16).
    Fetch,
    /// Source agent -> courier: here it comes. Payload: its size (u64 LE); then exactly
    /// that many raw bytes, then the agent closes.
    Offer,
    /// Courier -> destination agent: an approved item. Payload: a [`Manifest`] (token =
    /// transfer id, room = source); then exactly `size` raw bytes.
    Deliver,
    /// Courier -> destination agent: the source's stream ended exactly at the approved
    /// size; store the item if it matches its SHA-256. Payload: empty.
    Commit,
    /// Destination agent -> courier: stored under this name (UTF-8) in ~/Incoming.
    Stored,
    /// Either agent -> courier: it could not be done; the reason (UTF-8).
    Failed,
}

impl FrameKind for Data {
    fn code(self) -> u8 {
        match self {
            Data::Fetch => 0x41,
            Data::Offer => 0x42,
            Data::Deliver => 0x43,
            Data::Commit => 0x44,
            Data::Stored => 0x45,
            Data::Failed => 0x46,
        }
    }

    fn from_code(code: u8) -> Option<Data> {
        Some(match code {
            0x41 => Data::Fetch,
            0x42 => Data::Offer,
            0x43 => Data::Deliver,
            0x44 => Data::Commit,
            0x45 => Data::Stored,
            0x46 => Data::Failed,
            _ => return None,
        })
    }
}

/// Lower-case hex of `bytes` into `out` (twice as long, or the hex is cut); returns it.
pub fn hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut n = 0;
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = DIGITS.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
            *lo = DIGITS.get(usize::from(byte & 15)).copied().unwrap_or(b'0');
            n += 2;
        }
    }
    core::str::from_utf8(out.get(..n).unwrap_or_default()).unwrap_or_default()
}

/// Parses exactly `2 * N` lower-case hex digits.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        if let [hi, lo] = pair {
            *byte = (digit(*hi)? << 4) | digit(*lo)?;
        }
    }
    Some(out)
}

/// The flags that mark the source's and the destination's connection as hybrid vsock.
const VSOCK_FLAGS: [&str; 2] = ["--vsock-from", "--vsock-to"];

/// What bay0 hands `anchor-courier` on its command line (the two connections are its
/// stdin, the source, and stdout, the destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The transfer id (fresh per approval; the destination refuses a repeated one).
    pub id: Token,
    /// The source's request token (the source serves it once).
    pub token: Token,
    pub from: String,
    pub to: String,
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// Which connections (source, destination) first answer `OK <port>\n`
    /// (anchor-vmm's hybrid vsock: a microVM room); the other kind is a socket passed to a
    /// namespace room's agent over its umbilical ([`crate::umbilical::Kind::CourierChannel`]).
    pub vsock: [bool; 2],
}

impl Launch {
    /// The command line (without the program).
    pub fn args(&self) -> Vec<String> {
        let mut h = [0u8; 64];
        let mut v = vec![
            "--id".into(),
            hex(&self.id, &mut h).into(),
            "--token".into(),
            hex(&self.token, &mut h).into(),
            "--from".into(),
            self.from.clone(),
            "--to".into(),
            self.to.clone(),
            "--size".into(),
            self.size.to_string(),
            "--sha256".into(),
            hex(&self.sha256, &mut h).into(),
            "--name".into(),
            self.name.clone(),
        ];
        for (on, flag) in self.vsock.into_iter().zip(VSOCK_FLAGS) {
            if on {
                v.push(flag.into());
            }
        }
        v
    }

    /// The source and the destination room, each with whether it is reached over vsock.
    pub fn sides(&self) -> [(&str, bool); 2] {
        let [from, to] = self.vsock;
        [(self.from.as_str(), from), (self.to.as_str(), to)]
    }

    /// The whole argv: `program`, then [`Launch::args`]; `None` if a NUL byte is in one.
    pub fn argv(&self, program: &[u8]) -> Option<Vec<std::ffi::CString>> {
        let args = self.args().into_iter().map(String::into_bytes);
        let all = core::iter::once(program.to_vec()).chain(args);
        all.map(|a| std::ffi::CString::new(a).ok()).collect()
    }

    /// Parses [`Launch::args`] (every flag exactly once, `--vsock-from` and `--vsock-to`
    /// optional); the error names the flag.
    pub fn parse(args: &[String]) -> Result<Launch, String> {
        let mut vsock = [false; 2];
        let mut seen: [Option<&str>; 7] = [None; 7];
        const FLAGS: [&str; 7] = [
            "--id", "--token", "--from", "--to", "--size", "--sha256", "--name",
        ];
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if let Some(i) = VSOCK_FLAGS.iter().position(|f| f == flag) {
                match vsock.get_mut(i) {
                    Some(on @ false) => *on = true,
                    _ => return Err(format!("{flag} given twice")),
                }
                continue;
            }
            let i = FLAGS
                .iter()
                .position(|f| f == flag)
                .ok_or_else(|| format!("unknown argument {flag:?} (see --help)"))?;
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match seen.get_mut(i) {
                Some(slot @ None) => *slot = Some(value),
                _ => return Err(format!("{flag} given twice")),
            }
        }
        let flag = |i: usize| FLAGS.get(i).copied().unwrap_or("?");
        let get = |i: usize| {
            seen.get(i)
                .copied()
                .flatten()
                .ok_or_else(|| format!("{} is required", flag(i)))
        };
        let token = |i: usize| {
            get(i).and_then(|v| {
                unhex::<16>(v).ok_or_else(|| format!("{} wants 32 hex digits", flag(i)))
            })
        };
        let room = |i: usize| {
            get(i).and_then(|v| {
                if crate::name::is_valid(v) {
                    Ok(v.to_string())
                } else {
                    Err(format!("{} {v:?} is not a room name", flag(i)))
                }
            })
        };
        let name = get(6)?;
        check_name(name.as_bytes()).map_err(|e| format!("--name: {e}"))?;
        Ok(Launch {
            id: token(0)?,
            token: token(1)?,
            from: room(2)?,
            to: room(3)?,
            size: get(4)?
                .parse()
                .map_err(|_| "--size wants a number of bytes".to_string())?,
            sha256: unhex::<32>(get(5)?).ok_or("--sha256 wants 64 hex digits")?,
            name: name.to_string(),
            vsock,
        })
    }
}

/// What bay0 makes of the courier's end: it exited 0 (`ok`) and its output (`out`, the
/// bytes it wrote on stderr) ends with the line `delivered NAME`, or it did not and the
/// line `failed REASON` says why. `None` when the output says nothing usable (bay0 then
/// describes the exit status itself).
pub fn result_of(ok: bool, out: &[u8]) -> Option<(Outcome, &str)> {
    let text = core::str::from_utf8(out).ok()?.trim_end_matches('\n');
    let line = text.rsplit('\n').next()?;
    match (ok, line.split_once(' ')) {
        (true, Some(("delivered", name))) if !name.is_empty() => Some((Outcome::Delivered, name)),
        (false, Some(("failed", why))) if !why.is_empty() => Some((Outcome::Failed, why)),
        _ => None,
    }
}

/// How many requests a room may make: at most [`Budget::BURST`] at once and one more
/// every [`Budget::REFILL_MS`] (a token bucket). Requests beyond it are answered but not
/// audited one by one, so a flood costs bay0 a counter, never its loop or the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    tokens: u32,
    last_ms: u64,
    /// Requests refused for want of budget since the last audited one.
    pub dropped: u32,
}

impl Budget {
    pub const BURST: u32 = 5;
    pub const REFILL_MS: u64 = 6_000;

    /// A full budget at `now_ms`.
    pub fn new(now_ms: u64) -> Budget {
        Budget {
            tokens: Budget::BURST,
            last_ms: now_ms,
            dropped: 0,
        }
    }

    /// Takes one request's worth; false when the room is over its budget.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let earned = now_ms.saturating_sub(self.last_ms) / Budget::REFILL_MS;
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(Budget::BURST);
            self.last_ms = now_ms;
        }
        if self.tokens == 0 {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::umbilical::{encode_vec, Frames, PAYLOAD_MAX};
    use proptest::prelude::*;

    fn manifest(name: &[u8]) -> Manifest {
        Manifest::new([7; 16], "work", name, 1234, [9; 32]).unwrap()
    }

    #[test]
    fn manifests_round_trip_and_reject_any_other_length() {
        let m = manifest("report.pdf".as_bytes());
        let wire = m.to_vec();
        assert_eq!(wire.len(), MANIFEST_FIXED + 4 + 10);
        assert_eq!(Manifest::decode(&wire), Ok(m));
        assert_eq!(m.check(), Ok(("work", "report.pdf")));
        let mut long = wire.clone();
        long.push(0);
        assert_eq!(
            Manifest::decode(&long),
            Err(Malformed::Length {
                got: wire.len() + 1,
                want: wire.len()
            })
        );
        assert!(Manifest::decode(&wire[..wire.len() - 1]).is_err());
        assert!(Manifest::decode(&[]).is_err());
        let mut big_room = wire.clone();
        big_room[56] = 33;
        assert_eq!(Manifest::decode(&big_room), Err(Malformed::RoomTooLong(33)));
        assert_eq!(
            Manifest::new([0; 16], "w", &[b'a'; 256], 0, [0; 32]),
            Err(Malformed::NameTooLong(256))
        );
        let m = Manifest::new([0; 16], "w", &[b'a'; 255], u64::MAX, [0; 32]).unwrap();
        assert_eq!(Manifest::decode(&m.to_vec()).unwrap().size, u64::MAX);
        assert_eq!(m.check(), Err(RequestError::Name(NameError::TooLong(255))));
    }

    #[test]
    fn names_that_cannot_travel_say_why() {
        let bad: &[(&[u8], NameError)] = &[
            (b"", NameError::Empty),
            (b".", NameError::Dots),
            (b"..", NameError::Dots),
            (b"../etc/passwd", NameError::Slash),
            (b"/etc/passwd", NameError::Slash),
            (b"a/b", NameError::Slash),
            (b"a\0b", NameError::Control('\0')),
            (b"red\x1b[31m", NameError::Control('\u{1b}')),
            (b"a\nb", NameError::Control('\n')),
            (b"del\x7f", NameError::Control('\u{7f}')),
            ("c1\u{9b}".as_bytes(), NameError::Control('\u{9b}')),
            (
                "invoice\u{202e}fdp.exe".as_bytes(),
                NameError::Bidi('\u{202e}'),
            ),
            ("a\u{2067}b".as_bytes(), NameError::Bidi('\u{2067}')),
            ("a\u{200b}b".as_bytes(), NameError::Invisible('\u{200b}')),
            ("a\u{feff}".as_bytes(), NameError::Invisible('\u{feff}')),
            ("tag\u{e0041}".as_bytes(), NameError::Invisible('\u{e0041}')),
            (b"bad\xff", NameError::NotUtf8(3)),
            (&[b'x'; NAME_MAX + 1], NameError::TooLong(NAME_MAX + 1)),
        ];
        for (name, want) in bad {
            assert_eq!(check_name(name), Err(*want), "{name:?}");
            assert!(!want.to_string().is_empty());
        }
        for good in [
            "report.pdf",
            ".hidden",
            "...",
            "caf\u{e9} menu.txt",
            "a b",
            "x".repeat(NAME_MAX).as_str(),
        ] {
            assert_eq!(check_name(good.as_bytes()), Ok(good));
        }
        assert_eq!(
            NameError::Bidi('\u{202e}').to_string(),
            "the file name holds the bidirectional formatting character U+202E"
        );
    }

    /// Every default-ignorable code point (Unicode's Default_Ignorable_Code_Point, what
    /// renderers draw as nothing) but the bidirectional ones is an invisible character:
    /// `report\u{fe0f}.pdf` (a variation selector) looked like `report.pdf` wherever it
    /// landed. The visible neighbours of each range stay allowed.
    #[test]
    fn every_default_ignorable_character_is_invisible() {
        const IGNORABLE: &[(u32, u32)] = &[
            (0xad, 0xad),
            (0x34f, 0x34f),
            (0x115f, 0x1160),
            (0x17b4, 0x17b5),
            (0x180b, 0x180f),
            (0x200b, 0x200d),
            (0x2060, 0x2065),
            (0x206a, 0x206f),
            (0x3164, 0x3164),
            (0xfe00, 0xfe0f),
            (0xfeff, 0xfeff),
            (0xffa0, 0xffa0),
            (0xfff0, 0xfff8),
            (0x1bca0, 0x1bca3),
            (0x1d173, 0x1d17a),
            (0xe0000, 0xe0fff),
        ];
        for &(lo, hi) in IGNORABLE {
            for c in (lo..=hi).filter_map(char::from_u32) {
                let name = format!("report{c}.pdf");
                assert_eq!(
                    check_name(name.as_bytes()),
                    Err(NameError::Invisible(c)),
                    "U+{:04X}",
                    u32::from(c)
                );
            }
        }
        for visible in [
            '\u{ac}',
            '\u{ae}',
            '\u{2070}',
            '\u{fe10}',
            '\u{1d172}',
            '\u{1d17b}',
        ] {
            let name = format!("report{visible}.pdf");
            assert!(check_name(name.as_bytes()).is_ok(), "{visible:?}");
        }
    }

    #[test]
    fn answers_round_trip_and_are_bounded() {
        let a = Answer {
            token: [1; 16],
            outcome: Outcome::Refused,
            text: "work does not receive from web",
        };
        let mut buf = [0u8; ANSWER_MAX];
        let n = a.encode(&mut buf);
        assert_eq!(Answer::decode(&buf[..n]), Ok(a));
        let long = "é".repeat(TEXT_MAX);
        let b = Answer { text: &long, ..a };
        let n = b.encode(&mut buf);
        let back = Answer::decode(&buf[..n]).unwrap();
        assert_eq!(back.text.len(), TEXT_MAX);
        assert!(Answer::decode(&[0; 16]).is_err());
        let mut bad = buf;
        bad[16] = 9;
        assert_eq!(Answer::decode(&bad[..n]), Err(Malformed::Outcome(9)));
        let mut frame = [0u8; umbilical::HEADER + ANSWER_MAX];
        let n = a.frame(&mut frame);
        let mut d = umbilical::Decoder::default();
        d.space()[..n].copy_from_slice(&frame[..n]);
        d.filled(n);
        let mut p = [0u8; PAYLOAD_MAX];
        let (k, len) = d.next_frame(&mut p).unwrap().unwrap();
        assert_eq!(k, Kind::CourierAnswer);
        assert_eq!(Answer::decode(&p[..len]), Ok(a));
    }

    #[test]
    fn the_connect_line_names_the_data_port() {
        assert_eq!(CONNECT_LINE, format!("CONNECT {DATA_PORT}\n").as_bytes());
        assert_eq!(Manifest::default().check(), Err(RequestError::Room));
    }

    #[test]
    fn data_frames_are_not_umbilical_frames() {
        let wire = encode_vec(Data::Fetch, &[0; 16]).unwrap();
        let mut d = umbilical::Decoder::default();
        d.space()[..wire.len()].copy_from_slice(&wire);
        d.filled(wire.len());
        let mut p = [0u8; PAYLOAD_MAX];
        assert!(d.next_frame(&mut p).is_err());
        let wire = encode_vec(Kind::Ready, &[]).unwrap();
        let mut d = Frames::<Data>::default();
        d.space()[..wire.len()].copy_from_slice(&wire);
        d.filled(wire.len());
        assert!(d.next_frame(&mut p).is_err());
    }

    #[test]
    fn launch_args_round_trip_and_bad_ones_name_the_flag() {
        let l = Launch {
            id: [0xab; 16],
            token: [1; 16],
            from: "web".into(),
            to: "work".into(),
            name: "--to".into(),
            size: 99,
            sha256: [0xcd; 32],
            vsock: [true, true],
        };
        assert_eq!(Launch::parse(&l.args()), Ok(l.clone()));
        for vsock in [[false, false], [true, false], [false, true]] {
            let mixed = Launch { vsock, ..l.clone() };
            assert_eq!(Launch::parse(&mixed.args()), Ok(mixed.clone()));
            assert_eq!(mixed.sides(), [("web", vsock[0]), ("work", vsock[1])]);
        }
        let mut twice = l.args();
        twice.push("--vsock-to".into());
        assert_eq!(Launch::parse(&twice).unwrap_err(), "--vsock-to given twice");
        let argv = l.argv(b"/usr/lib/anchor/anchor-courier").unwrap();
        assert_eq!(argv.len(), 17);
        assert_eq!(argv[0].to_bytes(), b"/usr/lib/anchor/anchor-courier");
        assert_eq!(l.argv(b"a\0b"), None);
        let mut args = l.args();
        args[5] = "../x".into();
        assert!(Launch::parse(&args).unwrap_err().contains("--from"));
        let mut args = l.args();
        args.truncate(12);
        assert_eq!(Launch::parse(&args).unwrap_err(), "--name is required");
        let mut args = l.args();
        args.extend(["--size".into(), "1".into()]);
        assert_eq!(Launch::parse(&args).unwrap_err(), "--size given twice");
        let mut args = l.args();
        args[13] = "a/b".into();
        assert!(Launch::parse(&args).unwrap_err().contains("'/'"));
    }

    #[test]
    fn the_courier_result_comes_from_its_last_line_and_exit() {
        assert_eq!(
            result_of(true, b"anchor-courier: x\ndelivered report (1).pdf\n"),
            Some((Outcome::Delivered, "report (1).pdf"))
        );
        assert_eq!(
            result_of(false, b"failed the source stalled\n"),
            Some((Outcome::Failed, "the source stalled"))
        );
        assert_eq!(result_of(false, b"delivered x\n"), None);
        assert_eq!(result_of(true, b"failed x\n"), None);
        assert_eq!(result_of(false, b""), None);
        assert_eq!(result_of(false, b"\xff"), None);
    }

    #[test]
    fn a_flood_is_bounded_by_the_budget() {
        let mut b = Budget::new(0);
        let allowed = (0..1000).filter(|_| b.take(10)).count();
        assert_eq!(allowed as u32, Budget::BURST);
        assert_eq!(b.dropped, 1000 - Budget::BURST);
        assert!(b.take(10 + Budget::REFILL_MS));
        assert!(!b.take(10 + Budget::REFILL_MS));
        assert!(b.take(u64::MAX));
    }

    #[test]
    fn hex_round_trips() {
        let mut buf = [0u8; 64];
        let h = hex(&[0x01, 0xab, 0xff], &mut buf).to_string();
        assert_eq!(h, "01abff");
        assert_eq!(unhex::<3>(&h), Some([0x01, 0xab, 0xff]));
        assert_eq!(unhex::<3>("01ABff"), None);
        assert_eq!(unhex::<3>("01ab"), None);
        assert_eq!(cut("aé", 2), "a");
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(m) = Manifest::decode(&bytes) {
                prop_assert_eq!(m.to_vec(), bytes.clone());
                let _ = m.check();
            }
            if let Ok(a) = Answer::decode(&bytes) {
                let mut buf = [0u8; ANSWER_MAX];
                let n = a.encode(&mut buf);
                prop_assert_eq!(&buf[..n], &bytes[..]);
            }
            let _ = check_name(&bytes);
        }

        #[test]
        fn manifests_decode_to_what_was_encoded(
            token in any::<[u8; 16]>(),
            room in "[a-z0-9][a-z0-9-]{0,31}",
            name in proptest::collection::vec(any::<u8>(), 0..=255),
            size in any::<u64>(),
            sha in any::<[u8; 32]>(),
        ) {
            let m = Manifest::new(token, &room, &name, size, sha).unwrap();
            let back = Manifest::decode(&m.to_vec()).unwrap();
            prop_assert_eq!(back, m);
            prop_assert_eq!(back.room(), room.as_bytes());
            prop_assert_eq!(back.name(), &name[..]);
            if let Ok((_, n)) = back.check() {
                prop_assert!(!n.contains('/') && n != "." && n != "..");
                prop_assert!(!n.chars().any(|c| c.is_control() || is_bidi(c) || is_invisible(c)));
            }
        }
    }
}
