// SPDX-License-Identifier: GPL-3.0-or-later
//! One record: what a writer supplies ([`Entry`]), its encoding into a fixed buffer, and
//! the parsed form ([`Record`]).
//!
//! A record is one line:
//!
//! ```text
//! v1 seq=N time=UNIX_SECONDS actor=NAME event=NAME [KEY=VALUE ...] prev=HEX64 hash=HEX64
//! ```
//!
//! The *body* is the line up to (not including) ` hash=`. `hash` is
//! `SHA-256(prev || SHA-256(body))`, so the chain is exactly what a TPM 2.0 extend index
//! holds after extending each record's `SHA-256(body)` in turn from all zeros.

use core::fmt;

use crate::escape::{self, is_key, is_name};
use crate::{parse_hex, Hash};

/// The longest record, newline included. Longer entries are refused, never cut.
pub const MAX_RECORD: usize = 4096;

/// The most fields a record carries besides its fixed ones.
pub const MAX_FIELDS: usize = 16;

/// The format version, the first word of every line.
pub const VERSION: &str = "v1";

/// What a writer appends: fixed names from the program, values from anywhere.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// Who writes it (`bay0`, `anchor-vault`, ...).
    pub actor: &'a str,
    /// What happened (`vault.unlock`, `room.start`, ...).
    pub event: &'a str,
    /// Further facts; values may hold any bytes (they are escaped).
    pub fields: &'a [(&'a str, &'a [u8])],
}

/// Why an entry cannot be encoded (or a line cannot be parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The actor is not 1..=32 of `[a-z0-9._-]`.
    Actor,
    /// The event is not 1..=32 of `[a-z0-9._-]`.
    Event,
    /// A field key is not 1..=32 of `[a-z0-9_]` or is reserved.
    Key,
    /// More than [`MAX_FIELDS`] fields.
    TooManyFields,
    /// The encoded record would be longer than [`MAX_RECORD`] (or the buffer).
    TooLong,
    /// A line that is not a well-formed record; the text says which part.
    Malformed(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Actor => f.write_str("actor must be 1..=32 of [a-z0-9._-]"),
            RecordError::Event => f.write_str("event must be 1..=32 of [a-z0-9._-]"),
            RecordError::Key => f.write_str("field keys must be 1..=32 of [a-z0-9_], not reserved"),
            RecordError::TooManyFields => write!(f, "more than {MAX_FIELDS} fields"),
            RecordError::TooLong => write!(f, "record longer than {MAX_RECORD} bytes"),
            RecordError::Malformed(why) => write!(f, "malformed record: {why}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// A byte sink over a fixed buffer.
pub(crate) struct Buf<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Buf<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Buf<'b> {
        Buf { buf, len: 0 }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(RecordError::TooLong)?;
        if end > MAX_RECORD {
            return Err(RecordError::TooLong);
        }
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(RecordError::TooLong)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    pub(crate) fn push_u64(&mut self, mut n: u64) -> Result<(), RecordError> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        self.push(digits.get(i..).unwrap_or_default())
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Encode the body of record `seq` (everything before ` hash=`) into `buf`; its length.
pub fn encode_body(
    seq: u64,
    entry: &Entry<'_>,
    prev: &Hash,
    buf: &mut [u8],
) -> Result<usize, RecordError> {
    if !is_name(entry.actor) {
        return Err(RecordError::Actor);
    }
    if !is_name(entry.event) {
        return Err(RecordError::Event);
    }
    if entry.fields.len() > MAX_FIELDS {
        return Err(RecordError::TooManyFields);
    }
    if entry.fields.iter().any(|(k, _)| !is_key(k)) {
        return Err(RecordError::Key);
    }
    let mut out = Buf::new(buf);
    out.push(VERSION.as_bytes())?;
    out.push(b" seq=")?;
    out.push_u64(seq)?;
    out.push(b" time=")?;
    out.push_u64(entry.time)?;
    out.push(b" actor=")?;
    out.push(entry.actor.as_bytes())?;
    out.push(b" event=")?;
    out.push(entry.event.as_bytes())?;
    for (key, value) in entry.fields {
        out.push(b" ")?;
        out.push(key.as_bytes())?;
        out.push(b"=")?;
        escape::escape(value, &mut |piece| out.push(piece))?;
    }
    out.push(b" prev=")?;
    let mut hex = [0u8; 64];
    out.push(crate::hex(prev, &mut hex).as_bytes())?;
    Ok(out.len())
}

/// A record read back from a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub time: u64,
    pub actor: String,
    pub event: String,
    /// Keys and unescaped values, in order.
    pub fields: Vec<(String, Vec<u8>)>,
    pub prev: Hash,
    pub hash: Hash,
    /// SHA-256 of the body (what the TPM extend index is extended with).
    pub digest: Hash,
}

fn number(text: &[u8]) -> Option<u64> {
    let canonical = text.first() != Some(&b'0') || text.len() == 1;
    if text.is_empty() || text.len() > 20 || !canonical {
        return None;
    }
    core::str::from_utf8(text).ok()?.parse().ok()
}

impl Record {
    /// Parse one line (without its newline). Checks the shape only, not the hashes.
    pub fn parse(line: &[u8]) -> Result<Record, RecordError> {
        use RecordError::Malformed;
        let split = line
            .windows(6)
            .rposition(|w| w == b" hash=")
            .ok_or(Malformed("no hash field"))?;
        let (body, hash) = (
            line.get(..split).unwrap_or_default(),
            line.get(split + 6..).unwrap_or_default(),
        );
        let hash = parse_hex(hash).ok_or(Malformed("hash is not 64 lower-case hex digits"))?;
        let mut words = body.split(|&b| b == b' ');
        if words.next() != Some(VERSION.as_bytes()) {
            return Err(Malformed("does not start with v1"));
        }
        let mut take = |key: &'static [u8], why: &'static str| {
            words
                .next()
                .and_then(|w| w.strip_prefix(key))
                .and_then(|w| w.strip_prefix(b"="))
                .ok_or(Malformed(why))
        };
        let seq = number(take(b"seq", "no seq")?).ok_or(Malformed("seq is not a number"))?;
        let time = number(take(b"time", "no time")?).ok_or(Malformed("time is not a number"))?;
        let text = |b: &[u8]| core::str::from_utf8(b).map(str::to_owned).ok();
        let actor = text(take(b"actor", "no actor")?)
            .filter(|a| is_name(a))
            .ok_or(RecordError::Actor)?;
        let event = text(take(b"event", "no event")?)
            .filter(|e| is_name(e))
            .ok_or(RecordError::Event)?;
        let rest: Vec<&[u8]> = words.collect();
        let (last, fields) = rest.split_last().ok_or(Malformed("no prev"))?;
        let prev = last
            .strip_prefix(b"prev=")
            .and_then(parse_hex)
            .ok_or(Malformed("prev is not prev=<64 hex digits>"))?;
        if fields.len() > MAX_FIELDS {
            return Err(RecordError::TooManyFields);
        }
        let mut parsed = Vec::with_capacity(fields.len());
        for field in fields {
            let at = field
                .iter()
                .position(|&b| b == b'=')
                .ok_or(Malformed("a field without '='"))?;
            let key = text(field.get(..at).unwrap_or_default())
                .filter(|k| is_key(k))
                .ok_or(RecordError::Key)?;
            let value = escape::unescape(field.get(at + 1..).unwrap_or_default())
                .ok_or(Malformed("a value is not canonically escaped"))?;
            parsed.push((key, value));
        }
        Ok(Record {
            seq,
            time,
            actor,
            event,
            fields: parsed,
            prev,
            hash,
            digest: crate::chain::digest(body),
        })
    }

    /// Whether the record's `hash` is the link of its own `prev` and body: the line was
    /// written whole by a writer of the chain and not altered since (what verification
    /// checks of every record, and the writer of the last one before chaining after it).
    pub fn is_intact(&self) -> bool {
        self.hash == crate::chain::link(&self.prev, &self.digest)
    }

    /// The value of field `key`, if present.
    pub fn field(&self, key: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GENESIS;

    fn body(entry: &Entry<'_>) -> Result<String, RecordError> {
        let mut buf = [0u8; MAX_RECORD];
        let n = encode_body(7, entry, &GENESIS, &mut buf)?;
        Ok(String::from_utf8(buf[..n].to_vec()).unwrap())
    }

    fn entry<'a>(fields: &'a [(&'a str, &'a [u8])]) -> Entry<'a> {
        Entry {
            time: 1_700_000_000,
            actor: "bay0",
            event: "room.start",
            fields,
        }
    }

    #[test]
    fn body_layout() {
        let b = body(&entry(&[("room", b"work"), ("note", b"a b")])).unwrap();
        assert_eq!(
            b,
            format!(
                "v1 seq=7 time=1700000000 actor=bay0 event=room.start room=work note=a%20b prev={}",
                "0".repeat(64)
            )
        );
    }

    #[test]
    fn bad_entries_are_refused_not_cut() {
        let e = Entry {
            actor: "Bay0",
            ..entry(&[])
        };
        assert_eq!(body(&e), Err(RecordError::Actor));
        let e = Entry {
            event: "a b",
            ..entry(&[])
        };
        assert_eq!(body(&e), Err(RecordError::Event));
        assert_eq!(body(&entry(&[("hash", b"x")])), Err(RecordError::Key));
        let many: Vec<(&str, &[u8])> = vec![("k", b"v"); MAX_FIELDS + 1];
        assert_eq!(body(&entry(&many)), Err(RecordError::TooManyFields));
        let big = vec![b'\n'; MAX_RECORD / 3];
        assert_eq!(body(&entry(&[("v", &big)])), Err(RecordError::TooLong));
        let mut small = [0u8; 16];
        assert_eq!(
            encode_body(1, &entry(&[]), &GENESIS, &mut small),
            Err(RecordError::TooLong)
        );
    }

    #[test]
    fn numbers_encode_at_the_limits() {
        let mut buf = [0u8; 64];
        let mut b = Buf::new(&mut buf);
        b.push_u64(0).unwrap();
        b.push(b" ").unwrap();
        b.push_u64(u64::MAX).unwrap();
        assert_eq!(b.written(), b"0 18446744073709551615");
        assert_eq!(number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(number(b"18446744073709551616"), None);
        assert_eq!(number(b"007"), None);
        assert_eq!(number(b""), None);
        assert_eq!(number(b"-1"), None);
    }

    #[test]
    fn parse_reads_back_what_was_written() {
        let hostile: &[u8] = b"x\ny hash=00 \x00\xff";
        let b = body(&entry(&[("room", b"work"), ("detail", hostile)])).unwrap();
        let line = format!("{b} hash={}", "ab".repeat(32));
        let r = Record::parse(line.as_bytes()).unwrap();
        assert_eq!((r.seq, r.time), (7, 1_700_000_000));
        assert_eq!((r.actor.as_str(), r.event.as_str()), ("bay0", "room.start"));
        assert_eq!(r.field("detail"), Some(hostile));
        assert_eq!(r.field("room"), Some(&b"work"[..]));
        assert_eq!(r.prev, GENESIS);
        assert_eq!(r.hash, [0xab; 32]);
    }

    #[test]
    fn parse_names_what_is_malformed() {
        let good = format!(
            "v1 seq=1 time=2 actor=a event=b prev={} hash={}",
            "0".repeat(64),
            "0".repeat(64)
        );
        assert!(Record::parse(good.as_bytes()).is_ok());
        let cases = [
            ("v2 seq", "does not start with v1"),
            ("seq=1 ", "no seq"),
            ("seq=01", "seq is not a number"),
            ("time=2", "time is not a number"),
            ("prev=0", "prev is not"),
            ("hash=0", "hash is not"),
        ];
        for (what, why) in cases {
            let bad = match what {
                "v2 seq" => good.replacen("v1 seq", "v2 seq", 1),
                "seq=1 " => good.replacen("seq=1 ", "", 1),
                "seq=01" => good.replacen("seq=1", "seq=01", 1),
                "time=2" => good.replacen("time=2", "time=x", 1),
                "prev=0" => good.replacen("prev=0", "prev=g", 1),
                _ => good.replacen("hash=0", "hash=G", 1),
            };
            let e = Record::parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(why), "{what}: {e}");
        }
        let raw = good.replacen("event=b", "event=b k=a\x01", 1);
        assert!(Record::parse(raw.as_bytes()).is_err());
    }
}
