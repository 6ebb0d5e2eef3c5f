// SPDX-License-Identifier: GPL-3.0-or-later
//! The umbilical: the one channel between bay0 and a room's agent. A microVM room's agent
//! connects from the guest to the host's vsock port [`PORT`] (anchor-vmm's hybrid vsock
//! turns that into a connection to the Unix socket bay0 listens on in the room's own
//! directory); a namespace room's agent connects to a Unix socket placed in the room.
//! bay0 knows which room is talking from the socket the connection arrived on, never
//! from anything the room sends.
//!
//! Frames: a 4-byte header (kind: u8, reserved: u8 = 0, payload length: u16 little
//! endian) and at most [`PAYLOAD_MAX`] bytes of payload. A frame that breaks a rule
//! (unknown kind, reserved byte set, payload too long) ends the connection, and bay0 takes
//! no other from that room (it is logged once): a room that sends garbage only loses its
//! own umbilical. A connection that ends cleanly may be followed by a new one (an agent
//! started again), read from its first byte. The courier's data connections use the
//! same framing with their own kinds ([`crate::courier::Data`]): [`Frames`] decodes
//! either, by the kind type it is given.

/// The host vsock port bay0 listens on for agents.
pub const PORT: u32 = 1024;
/// Where a namespace room's agent finds bay0's socket (anchor-jail binds the room's
/// `vsock_1024` there, on the room's read-only /dev).
pub const ROOM_SOCKET: &str = "/dev/anchor-umbilical";
/// Header size.
pub const HEADER: usize = 4;
/// Largest payload.
pub const PAYLOAD_MAX: usize = 4096;
/// Largest frame.
pub const FRAME_MAX: usize = HEADER + PAYLOAD_MAX;
/// Longest notice text bay0 sends (one console line).
pub const NOTICE_MAX: usize = 400;

/// What a frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Agent -> bay0: the room has booted and its agent serves the umbilical. Payload:
    /// empty.
    Ready,
    /// bay0 -> agent: sync file systems and power the room off now. Payload: empty.
    PowerOff,
    /// bay0 -> agent: show this line on the room's console (e.g. "this room closes in
    /// 60 s"). Payload: UTF-8 text, at most [`NOTICE_MAX`] bytes, no control characters.
    Notice,
    /// Agent -> bay0: a courier request (payload: [`crate::courier::Request`]).
    CourierRequest,
    /// bay0 -> agent: how a courier request ended (payload: [`crate::courier::Answer`]).
    CourierAnswer,
    /// bay0 -> a namespace room's agent: a courier data connection (payload: empty). The
    /// frame's first byte carries one Unix stream socket as `SCM_RIGHTS` ancillary data:
    /// the agent serves it exactly as a microVM room's agent serves a data connection on
    /// vsock port [`crate::courier::DATA_PORT`]. A namespace room has no vsock, and bay0
    /// never connects to a path the room can write, so the connection comes to the room
    /// over the umbilical it already holds. See [`FdQueue`] for how the agent matches
    /// descriptors to frames.
    CourierChannel,
}

/// A [`Kind::CourierChannel`] frame: bay0 sends it with one descriptor attached.
pub const CHANNEL_FRAME: [u8; HEADER] = [6, 0, 0, 0];

/// The kinds of one channel's frames: each channel has its own set, so a frame meant for
/// another channel is an unknown kind.
pub trait FrameKind: Copy {
    /// The kind byte on the wire.
    fn code(self) -> u8;
    /// The kind a byte stands for on this channel.
    fn from_code(code: u8) -> Option<Self>;
}

impl FrameKind for Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Ready => 1,
            Kind::PowerOff => 2,
            Kind::Notice => 3,
            Kind::CourierRequest => 4,
            Kind::CourierAnswer => 5,
            Kind::CourierChannel => 6,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            1 => Kind::Ready,
            2 => Kind::PowerOff,
            3 => Kind::Notice,
            4 => Kind::CourierRequest,
            5 => Kind::CourierAnswer,
            6 => Kind::CourierChannel,
            _ => return None,
        })
    }
}

/// A frame that breaks the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    UnknownKind(u8),
    Reserved(u8),
    TooLong(usize),
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FrameError::UnknownKind(k) => write!(f, "unknown umbilical frame kind {k}"),
            FrameError::Reserved(r) => write!(f, "umbilical frame reserved byte is {r}, not 0"),
            FrameError::TooLong(n) => write!(
                f,
                "umbilical frame of {n} bytes (at most {PAYLOAD_MAX} bytes of payload)"
            ),
        }
    }
}

/// Writes one frame into `out`; its length, or `TooLong` when the payload (or `out`) is
/// too small for it.
pub fn encode<K: FrameKind>(kind: K, payload: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    let len = payload.len();
    let len16 = u16::try_from(len).map_err(|_| FrameError::TooLong(len))?;
    if len > PAYLOAD_MAX {
        return Err(FrameError::TooLong(len));
    }
    let total = HEADER + len;
    let frame = out.get_mut(..total).ok_or(FrameError::TooLong(len))?;
    let (head, body) = frame.split_at_mut(HEADER);
    let l = len16.to_le_bytes();
    head.copy_from_slice(&[kind.code(), 0, l[0], l[1]]);
    body.copy_from_slice(payload);
    Ok(total)
}

/// One frame as a new vector (for senders that may allocate).
pub fn encode_vec<K: FrameKind>(kind: K, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER + payload.len()];
    let n = encode(kind, payload, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// A streaming decoder with a fixed buffer: read into [`Frames::space`], report with
/// [`Frames::filled`], then take frames out with [`Frames::next_frame`].
#[derive(Debug, Clone)]
pub struct Frames<K> {
    buf: [u8; FRAME_MAX],
    len: usize,
    kind: core::marker::PhantomData<K>,
}

/// The umbilical's decoder.
pub type Decoder = Frames<Kind>;

impl<K> Default for Frames<K> {
    fn default() -> Self {
        Frames {
            buf: [0; FRAME_MAX],
            len: 0,
            kind: core::marker::PhantomData,
        }
    }
}

impl<K: FrameKind> Frames<K> {
    /// The free part of the buffer (empty while a whole frame waits to be taken).
    pub fn space(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.len..).unwrap_or_default()
    }

    /// `n` bytes were written into [`Decoder::space`].
    pub fn filled(&mut self, n: usize) {
        self.len = self.len.saturating_add(n).min(FRAME_MAX);
    }

    /// The next whole frame: its kind and payload copied into `payload`, or `None` when
    /// more bytes are needed. After an error the decoder is unusable (close the channel).
    pub fn next_frame(
        &mut self,
        payload: &mut [u8; PAYLOAD_MAX],
    ) -> Result<Option<(K, usize)>, FrameError> {
        let Some(head) = self.buf.get(..HEADER).filter(|_| self.len >= HEADER) else {
            return Ok(None);
        };
        let (code, reserved) = (head.first().copied(), head.get(1).copied());
        let len = usize::from(u16::from_le_bytes([
            head.get(2).copied().unwrap_or(0),
            head.get(3).copied().unwrap_or(0),
        ]));
        let kind = code.and_then(K::from_code);
        let Some(kind) = kind else {
            return Err(FrameError::UnknownKind(code.unwrap_or(0)));
        };
        if reserved != Some(0) {
            return Err(FrameError::Reserved(reserved.unwrap_or(0)));
        }
        if len > PAYLOAD_MAX {
            return Err(FrameError::TooLong(len));
        }
        let total = HEADER + len;
        if self.len < total {
            return Ok(None);
        }
        if let (Some(dst), Some(src)) = (payload.get_mut(..len), self.buf.get(HEADER..total)) {
            dst.copy_from_slice(src);
        }
        self.buf.copy_within(total..self.len, 0);
        self.len -= total;
        Ok(Some((kind, len)))
    }

    /// Takes out up to `out.len()` bytes that follow the frames taken so far (a raw byte
    /// stream after a header frame); how many.
    pub fn take_raw(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        if let (Some(dst), Some(src)) = (out.get_mut(..n), self.buf.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
        n
    }

    /// Bytes received but not taken out yet.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Reads from `r` (blocking) until a whole frame is there; `None` when the stream
    /// ends cleanly between frames. A rule-breaking frame, or an end inside one, is an
    /// `InvalidData` error.
    pub fn read_from<R: std::io::Read>(
        &mut self,
        r: &mut R,
        payload: &mut [u8; PAYLOAD_MAX],
    ) -> std::io::Result<Option<(K, usize)>> {
        use std::io::{Error, ErrorKind};
        loop {
            match self.next_frame(payload) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(Error::new(ErrorKind::InvalidData, e.to_string())),
            }
            match r.read(self.space()) {
                Ok(0) if self.len == 0 => return Ok(None),
                Ok(0) => return Err(Error::new(ErrorKind::UnexpectedEof, "a frame cut short")),
                Ok(n) => self.filled(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Descriptors received on the umbilical (`SCM_RIGHTS`), waiting for the
/// [`Kind::CourierChannel`] frames they came with. bay0 sends each such frame in one
/// `sendmsg` with its descriptor; Linux hands the descriptor to the `recvmsg` that
/// returns the frame's first byte and ends that read there, so a descriptor is always
/// received no later than its frame is decoded, and in the same order as the frames:
/// the agent pushes every descriptor it receives and takes the oldest one for each
/// channel frame it decodes. At most [`FdQueue::MAX`] wait; beyond that the newest is
/// given back to be closed (only bay0 writes here, but nothing may grow without bound).
#[derive(Debug)]
pub struct FdQueue<T> {
    waiting: std::collections::VecDeque<T>,
}

impl<T> Default for FdQueue<T> {
    fn default() -> Self {
        FdQueue {
            waiting: std::collections::VecDeque::new(),
        }
    }
}

impl<T> FdQueue<T> {
    /// Descriptors kept waiting at most.
    pub const MAX: usize = 4;

    /// A descriptor was received; `Some` (it, to be closed) when the queue is full.
    pub fn push(&mut self, fd: T) -> Option<T> {
        if self.waiting.len() >= Self::MAX {
            return Some(fd);
        }
        self.waiting.push_back(fd);
        None
    }

    /// A [`Kind::CourierChannel`] frame was decoded: its descriptor (`None`: it came
    /// without one).
    pub fn take(&mut self) -> Option<T> {
        self.waiting.pop_front()
    }

    /// Descriptors waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Writes one frame to `w` (blocking).
pub fn write_frame<W: std::io::Write, K: FrameKind>(
    w: &mut W,
    kind: K,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = [0u8; FRAME_MAX];
    let n = encode(kind, payload, &mut frame)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(frame.get(..n).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8], chunk: usize) -> Result<Vec<(Kind, Vec<u8>)>, FrameError> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let mut payload = [0u8; PAYLOAD_MAX];
        for part in bytes.chunks(chunk.max(1)) {
            let mut rest = part;
            while !rest.is_empty() {
                let space = d.space();
                let n = space.len().min(rest.len());
                assert!(n > 0, "decoder stalled with a full buffer");
                space[..n].copy_from_slice(&rest[..n]);
                d.filled(n);
                rest = &rest[n..];
                while let Some((k, len)) = d.next_frame(&mut payload)? {
                    out.push((k, payload[..len].to_vec()));
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn frames_round_trip_in_any_chunking() {
        let mut wire = encode_vec(Kind::Ready, b"").unwrap();
        wire.extend(encode_vec(Kind::Notice, b"closes in 60 s").unwrap());
        wire.extend(encode_vec(Kind::PowerOff, &[7u8; PAYLOAD_MAX]).unwrap());
        for chunk in [1, 3, 4, 5, 4100, 9000] {
            let got = decode_all(&wire, chunk).unwrap();
            assert_eq!(got.len(), 3);
            assert_eq!(got[0], (Kind::Ready, vec![]));
            assert_eq!(got[1], (Kind::Notice, b"closes in 60 s".to_vec()));
            assert_eq!(got[2].1.len(), PAYLOAD_MAX);
        }
    }

    #[test]
    fn rule_breaking_frames_are_errors() {
        assert_eq!(
            decode_all(&[9, 0, 0, 0], 4),
            Err(FrameError::UnknownKind(9))
        );
        assert_eq!(decode_all(&[1, 1, 0, 0], 4), Err(FrameError::Reserved(1)));
        assert_eq!(
            decode_all(&[1, 0, 0x01, 0x10], 4),
            Err(FrameError::TooLong(4097))
        );
        assert_eq!(
            encode_vec(Kind::Notice, &[0; PAYLOAD_MAX + 1]),
            Err(FrameError::TooLong(PAYLOAD_MAX + 1))
        );
        let mut small = [0u8; 5];
        assert!(encode(Kind::Notice, b"xx", &mut small).is_err());
    }

    #[test]
    fn raw_bytes_after_a_frame_are_taken_out_in_order() {
        let mut wire = encode_vec(Kind::Notice, b"head").unwrap();
        wire.extend_from_slice(b"raw-bytes");
        let mut d = Decoder::default();
        d.space()[..wire.len()].copy_from_slice(&wire);
        d.filled(wire.len());
        let mut payload = [0u8; PAYLOAD_MAX];
        assert_eq!(d.next_frame(&mut payload).unwrap(), Some((Kind::Notice, 4)));
        assert_eq!(d.pending(), 9);
        let mut out = [0u8; 4];
        assert_eq!(d.take_raw(&mut out), 4);
        assert_eq!(&out, b"raw-");
        let mut rest = [0u8; 64];
        assert_eq!(d.take_raw(&mut rest), 5);
        assert_eq!(&rest[..5], b"bytes");
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn the_channel_frame_is_an_empty_courier_channel_frame() {
        assert_eq!(
            encode_vec(Kind::CourierChannel, &[]).unwrap(),
            CHANNEL_FRAME.to_vec()
        );
        assert_eq!(Kind::from_code(6), Some(Kind::CourierChannel));
        assert_eq!(Kind::from_code(7), None);
        let mut q = FdQueue::default();
        for i in 0..FdQueue::<u32>::MAX as u32 {
            assert_eq!(q.push(i), None);
        }
        assert_eq!(q.push(99), Some(99), "a full queue gives the newest back");
        assert_eq!((q.take(), q.len()), (Some(0), 3));
    }

    /// Plays the kernel's rule for a stream socket carrying descriptors: a read returns
    /// the descriptor of the first segment it touches that has one and ends with that
    /// segment. `segments`: (bytes, descriptor) in send order; `reads`: read sizes.
    fn deliver(
        segments: &[(Vec<u8>, Option<u32>)],
        reads: &[usize],
    ) -> Vec<(Vec<u8>, Option<u32>)> {
        let mut out = Vec::new();
        let (mut seg, mut at, mut r) = (0usize, 0usize, 0usize);
        while seg < segments.len() {
            let want = reads[r % reads.len()].max(1);
            r += 1;
            let (mut got, mut fd) = (Vec::new(), None);
            while got.len() < want && seg < segments.len() {
                let (bytes, attached) = &segments[seg];
                if at == 0 && attached.is_some() {
                    fd = *attached;
                }
                let n = (want - got.len()).min(bytes.len() - at);
                got.extend_from_slice(&bytes[at..at + n]);
                at += n;
                let had_fd = attached.is_some();
                if at == bytes.len() {
                    seg += 1;
                    at = 0;
                }
                if had_fd {
                    break;
                }
            }
            out.push((got, fd));
        }
        out
    }

    proptest! {
        #[test]
        fn each_channel_frame_gets_its_own_descriptor_in_any_chunking(
            msgs in proptest::collection::vec((0u8..6, proptest::collection::vec(any::<u8>(), 0..64)), 0..30),
            reads in proptest::collection::vec(1usize..40, 1..8),
        ) {
            let kinds = [Kind::Ready, Kind::PowerOff, Kind::Notice, Kind::CourierRequest, Kind::CourierAnswer, Kind::CourierChannel];
            let mut segments = Vec::new();
            let mut next_fd = 100u32;
            let mut sent = Vec::new();
            for (k, p) in &msgs {
                let kind = kinds[usize::from(*k)];
                if kind == Kind::CourierChannel {
                    segments.push((CHANNEL_FRAME.to_vec(), Some(next_fd)));
                    sent.push(next_fd);
                    next_fd += 1;
                } else {
                    segments.push((encode_vec(kind, p).unwrap(), None));
                }
            }
            let mut d = Decoder::default();
            let mut q = FdQueue::default();
            let mut payload = [0u8; PAYLOAD_MAX];
            let mut got = Vec::new();
            for (bytes, fd) in deliver(&segments, &reads) {
                if let Some(fd) = fd {
                    prop_assert_eq!(q.push(fd), None);
                }
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let space = d.space();
                    let n = space.len().min(rest.len());
                    space[..n].copy_from_slice(&rest[..n]);
                    d.filled(n);
                    rest = &rest[n..];
                    while let Some((k, _)) = d.next_frame(&mut payload).unwrap() {
                        if k == Kind::CourierChannel {
                            got.push(q.take());
                        }
                    }
                }
            }
            prop_assert_eq!(got, sent.into_iter().map(Some).collect::<Vec<_>>());
            prop_assert!(q.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overflow(bytes in proptest::collection::vec(any::<u8>(), 0..10000), chunk in 1usize..5000) {
            let _ = decode_all(&bytes, chunk);
        }

        #[test]
        fn valid_streams_decode_to_what_was_sent(
            msgs in proptest::collection::vec((0u8..6, proptest::collection::vec(any::<u8>(), 0..300)), 0..20),
            chunk in 1usize..700,
        ) {
            let kinds = [Kind::Ready, Kind::PowerOff, Kind::Notice, Kind::CourierRequest, Kind::CourierAnswer, Kind::CourierChannel];
            let mut wire = Vec::new();
            for (k, p) in &msgs {
                wire.extend(encode_vec(kinds[usize::from(*k)], p).unwrap());
            }
            let got = decode_all(&wire, chunk).unwrap();
            prop_assert_eq!(got.len(), msgs.len());
            for ((k, p), (gk, gp)) in msgs.iter().zip(got) {
                prop_assert_eq!(kinds[usize::from(*k)], gk);
                prop_assert_eq!(p, &gp);
            }
        }
    }
}
