// SPDX-License-Identifier: GPL-3.0-or-later
//! The hash chain and the append path.
//!
//! Appending encodes the whole line into the caller's buffer (no heap allocation), hands
//! it to the writer in one `write_all` (one `write(2)` on a regular file), and only then
//! advances the chain: a failed write leaves the chain where it was.

use core::fmt;
use std::io::Write;

use sha2::{Digest, Sha256};

use crate::record::{encode_body, Buf, Entry, RecordError, MAX_RECORD};
use crate::{Hash, GENESIS};

/// SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// The next link: `SHA-256(prev || digest)`, what a TPM extend index computes.
pub fn link(prev: &Hash, digest: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(digest);
    h.finalize().into()
}

/// Why an append failed.
#[derive(Debug)]
pub enum ChainError {
    /// The entry cannot be encoded.
    Record(RecordError),
    /// Writing the record failed; the chain did not advance.
    Write(std::io::Error),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::Record(e) => write!(f, "audit record: {e}"),
            ChainError::Write(e) => write!(f, "writing the audit record: {e}"),
        }
    }
}

impl std::error::Error for ChainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChainError::Record(e) => Some(e),
            ChainError::Write(e) => Some(e),
        }
    }
}

impl From<RecordError> for ChainError {
    fn from(e: RecordError) -> Self {
        ChainError::Record(e)
    }
}

/// A record ready to be (or just) written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number (the first record is 1).
    pub seq: u64,
    /// SHA-256 of its body: what the TPM extend index is extended with.
    pub digest: Hash,
    /// Its chain hash (the new head).
    pub hash: Hash,
    /// Length of the encoded line, newline included.
    pub len: usize,
}

/// Where the chain stands: how many records, and the hash of the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    records: u64,
    head: Hash,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

impl Chain {
    /// An empty log.
    pub const fn new() -> Chain {
        Chain {
            records: 0,
            head: GENESIS,
        }
    }

    /// Continue a log of `records` records whose last hash is `head` (from [`crate::verify`]).
    pub const fn resume(records: u64, head: Hash) -> Chain {
        Chain { records, head }
    }

    /// How many records the log holds.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The hash of the last record ([`GENESIS`] for an empty log).
    pub fn head(&self) -> Hash {
        self.head
    }

    /// Encode the next record as a whole line into `buf` (at least [`MAX_RECORD`] bytes
    /// are used at most); the line is `buf[..appended.len]`. The chain does not move.
    pub fn encode(&self, entry: &Entry<'_>, buf: &mut [u8]) -> Result<Appended, RecordError> {
        let seq = self.records.checked_add(1).ok_or(RecordError::TooLong)?;
        let body_len = encode_body(seq, entry, &self.head, buf)?;
        let body = buf.get(..body_len).ok_or(RecordError::TooLong)?;
        let digest = digest(body);
        let hash = link(&self.head, &digest);
        let mut hex = [0u8; 64];
        let hex = crate::hex(&hash, &mut hex);
        let mut tail = [0u8; 72];
        let mut t = Buf::new(&mut tail);
        t.push(b" hash=")?;
        t.push(hex.as_bytes())?;
        t.push(b"\n")?;
        let end = body_len
            .checked_add(t.len())
            .filter(|&e| e <= MAX_RECORD)
            .ok_or(RecordError::TooLong)?;
        buf.get_mut(body_len..end)
            .ok_or(RecordError::TooLong)?
            .copy_from_slice(t.written());
        Ok(Appended {
            seq,
            digest,
            hash,
            len: end,
        })
    }

    /// Take a record encoded by [`Chain::encode`] as written.
    pub fn advance(&mut self, appended: &Appended) {
        self.records = appended.seq;
        self.head = appended.hash;
    }

    /// Encode, write in one piece, then advance. `buf` is scratch space
    /// ([`MAX_RECORD`] bytes are enough for any record).
    pub fn append(
        &mut self,
        out: &mut dyn Write,
        entry: &Entry<'_>,
        buf: &mut [u8],
    ) -> Result<Appended, ChainError> {
        let appended = self.encode(entry, buf)?;
        let line = buf.get(..appended.len).ok_or(RecordError::TooLong)?;
        out.write_all(line).map_err(ChainError::Write)?;
        self.advance(&appended);
        Ok(appended)
    }
}

/// The chain continuing `log` (a whole log file's contents). Usually after its last
/// record, read from the end: when that line is whole and its hash matches its own body
/// and `prev`, the chain resumes from its seq and hash, so an append costs the same however
/// long the log has grown (bay0 appends on every room start and stop, on its single event
/// loop). Whether the records before it are intact is for verification to say
/// (`anchor-vault audit verify`, the TPM anchor), never for the writer. Otherwise (a
/// cut-off or altered last line) after the last good record found by verifying from the
/// start: the damaged tail is left as it is and chained past, so verification still
/// names it.
pub fn chain_after(log: &[u8]) -> Chain {
    if log.is_empty() {
        return Chain::new();
    }
    if let Some(chain) = after_last_line(log) {
        return chain;
    }
    let good =
        crate::verify(log).or_else(|bad| crate::verify(log.get(..bad.offset).unwrap_or_default()));
    good.map_or(Chain::new(), |g| Chain::resume(g.records, g.head))
}

/// Whether `end`, the last whole lines of a log, is enough for [`chain_after`]: its last
/// line is a whole, self-consistent record, so the chain resumes from it whatever came
/// before (a writer then reads only the end of a long log: anchor-sys `audit::append`).
pub fn resumes_from_end(end: &[u8]) -> bool {
    after_last_line(end).is_some()
}

/// The chain after `log`'s last line, if that line is a whole, self-consistent record.
fn after_last_line(log: &[u8]) -> Option<Chain> {
    let body = log.strip_suffix(b"\n")?;
    let start = body
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    let record = crate::record::Record::parse(body.get(start..)?).ok()?;
    (record.seq >= 1 && record.is_intact()).then_some(Chain::resume(record.seq, record.hash))
}

/// The record that comes after `log` as a whole line, ready to append.
pub fn next_line(log: &[u8], entry: &Entry<'_>) -> Result<Vec<u8>, RecordError> {
    let mut buf = vec![0u8; MAX_RECORD];
    let n = chain_after(log).encode(entry, &mut buf)?.len;
    buf.truncate(n);
    Ok(buf)
}

/// [`next_line`] for a record written now by `actor` (`None` if it cannot be encoded:
/// a bad event name or too long a record).
pub fn next_line_now(
    log: &[u8],
    actor: &str,
    event: &str,
    fields: &[(&str, &[u8])],
) -> Option<Vec<u8>> {
    let time = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
    let entry = Entry {
        time,
        actor,
        event,
        fields,
    };
    next_line(log, &entry).ok()
}

/// bay0's record of a room opening or ending, after `log`. `code` is `None` when the
/// room opened (`room.start`); otherwise its VMM's exit code: `room.stop` when bay0
/// closed it (`how` is `closed`) or it powered off (code 0), `room.end` for any other
/// end (the VMM failed or was killed). Fields: `room`, `how`, then `facts`; all escaped.
pub fn room_line(
    log: &[u8],
    room: &str,
    how: &str,
    code: Option<i32>,
    facts: &[(&str, &str)],
) -> Option<Vec<u8>> {
    let event = match code {
        None => "room.start",
        Some(0) => "room.stop",
        Some(_) if how == "closed" => "room.stop",
        Some(_) => "room.end",
    };
    let mut fields: Vec<(&str, &[u8])> = vec![("room", room.as_bytes()), ("how", how.as_bytes())];
    fields.extend(facts.iter().map(|(k, v)| (*k, v.as_bytes())));
    next_line_now(log, "bay0", event, &fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn entry(event: &str) -> Entry<'_> {
        Entry {
            time: 1,
            actor: "test",
            event,
            fields: &[],
        }
    }

    #[test]
    fn each_record_links_to_the_last() {
        let mut chain = Chain::new();
        let mut log = Vec::new();
        let mut buf = [0u8; MAX_RECORD];
        let a = chain.append(&mut log, &entry("one"), &mut buf).unwrap();
        let b = chain.append(&mut log, &entry("two"), &mut buf).unwrap();
        assert_eq!((a.seq, b.seq, chain.records()), (1, 2, 2));
        assert_eq!(chain.head(), b.hash);
        assert_eq!(a.hash, link(&GENESIS, &a.digest));
        assert_eq!(b.hash, link(&a.hash, &b.digest));
        let text = String::from_utf8(log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let r2 = Record::parse(lines[1].as_bytes()).unwrap();
        assert_eq!((r2.prev, r2.hash, r2.digest), (a.hash, b.hash, b.digest));
        assert_eq!(a.len, lines[0].len() + 1);
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc_enospc()))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    fn libc_enospc() -> i32 {
        28
    }

    #[test]
    fn a_failed_write_does_not_advance_the_chain() {
        let mut chain = Chain::new();
        let mut buf = [0u8; MAX_RECORD];
        let e = chain
            .append(&mut Broken, &entry("x"), &mut buf)
            .unwrap_err();
        assert!(matches!(e, ChainError::Write(_)), "{e}");
        assert_eq!(chain, Chain::new());
        let e = chain
            .append(&mut Vec::new(), &entry("Bad Event"), &mut buf)
            .unwrap_err();
        assert!(matches!(e, ChainError::Record(RecordError::Event)));
    }

    #[test]
    fn the_chain_is_what_a_tpm_extend_index_computes() {
        // An extend index starts at zeros and becomes H(old || data) per extend.
        let mut chain = Chain::new();
        let mut nv = [0u8; 32];
        let mut buf = [0u8; MAX_RECORD];
        for event in ["a", "b", "c"] {
            let a = chain
                .append(&mut Vec::new(), &entry(event), &mut buf)
                .unwrap();
            let mut h = Sha256::new();
            h.update(nv);
            h.update(a.digest);
            nv = h.finalize().into();
        }
        assert_eq!(chain.head(), nv);
    }

    #[test]
    fn the_next_line_continues_the_log_even_past_a_damaged_tail() {
        let mut log = Vec::new();
        let mut chain = Chain::new();
        let mut buf = [0u8; MAX_RECORD];
        chain.append(&mut log, &entry("one"), &mut buf).unwrap();
        let fields: [(&str, &[u8]); 1] = [("room", b"we b\n")];
        let two = next_line_now(&log, "bay0", "room.start", &fields).unwrap();
        log.extend_from_slice(&two);
        let v = crate::verify(&log).unwrap();
        assert_eq!(v.records, 2);
        let r = Record::parse(two.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(
            (r.seq, r.actor.as_str(), r.event.as_str()),
            (2, "bay0", "room.start")
        );
        assert_eq!(r.field("room"), Some(&b"we b\n"[..]));
        assert!(!two[..two.len() - 1].contains(&b'\n'), "one line only");
        // A cut-off tail: the next record chains after the last good one.
        log.extend_from_slice(b"v1 seq=3 tim");
        let three = next_line_now(&log, "bay0", "room.stop", &[]).unwrap();
        let r = Record::parse(three.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!((r.seq, r.prev), (3, v.head));
        assert!(next_line_now(&log, "bay0", "Bad Event", &[]).is_none());
        assert_eq!(chain_after(b"garbage").records(), 0);
        // An altered last line (whole, but its hash no longer matches): the same.
        let mut altered = log[..log.len() - 12].to_vec();
        let mut four = three.clone();
        let at = four.windows(9).position(|w| w == b"room.stop").unwrap();
        four[at..at + 9].copy_from_slice(b"room.stap");
        altered.extend_from_slice(&three);
        altered.extend_from_slice(&four);
        let five = chain_after(&altered);
        let r3 = Record::parse(three.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!((five.records(), five.head()), (3, r3.hash));
    }

    #[test]
    fn the_end_of_a_log_is_enough_when_its_last_line_is_an_intact_record() {
        let mut log = Vec::new();
        let mut chain = Chain::new();
        let mut buf = [0u8; MAX_RECORD];
        for _ in 0..3 {
            chain.append(&mut log, &entry("one"), &mut buf).unwrap();
        }
        let second = log.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert!(resumes_from_end(&log) && resumes_from_end(&log[second..]));
        assert_eq!(chain_after(&log[second..]), chain);
        assert!(!resumes_from_end(b""));
        assert!(!resumes_from_end(&log[..log.len() - 1]), "cut off");
        let mut altered = log.clone();
        let last = altered.len() - 2;
        altered[last] ^= 1;
        assert!(!resumes_from_end(&altered), "altered");
    }

    #[test]
    fn the_next_line_is_found_from_the_end_of_a_long_log() {
        let mut log = Vec::new();
        let mut chain = Chain::new();
        let mut buf = [0u8; MAX_RECORD];
        for _ in 0..1000 {
            chain.append(&mut log, &entry("one"), &mut buf).unwrap();
        }
        assert_eq!(chain_after(&log), chain);
        // Damage in the middle is verification's to name; the writer carries on after
        // the last record, so the damage stays where it is and sequence numbers go on.
        let at = log.len() / 2;
        log[at] ^= 1;
        assert_eq!(chain_after(&log), chain);
        assert!(crate::verify(&log).is_err());
        let next = next_line_now(&log, "bay0", "room.start", &[]).unwrap();
        let r = Record::parse(next.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!((r.seq, r.prev), (1001, chain.head()));
        // One line only, whole and consistent: the chain resumes from it.
        let mut one = Vec::new();
        Chain::new()
            .append(&mut one, &entry("one"), &mut buf)
            .unwrap();
        assert_eq!(chain_after(&one).records(), 1);
        assert_eq!(chain_after(b"").records(), 0);
    }

    #[test]
    fn room_records_name_the_event_by_how_the_room_ended() {
        let mut log = Vec::new();
        let hostile = "a b\nv1 seq=9 \x1b[2J";
        for (code, how, event) in [
            (None, "opened", "room.start"),
            (Some(0), "the room powered off", "room.stop"),
            (Some(137), "closed", "room.stop"),
            (Some(3), "anchor-vmm failed (VMM error)", "room.end"),
        ] {
            let line = room_line(&log, hostile, how, code, &[("why", hostile)]).unwrap();
            let r = Record::parse(line.strip_suffix(b"\n").unwrap()).unwrap();
            assert_eq!(r.event, event);
            assert_eq!(r.field("room"), Some(hostile.as_bytes()));
            assert_eq!(r.field("how"), Some(how.as_bytes()));
            assert_eq!(r.field("why"), Some(hostile.as_bytes()));
            let text = std::str::from_utf8(&line).unwrap();
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            assert!(!text.contains('\x1b') && !text.contains("a b"), "{text}");
            log.extend_from_slice(&line);
        }
        assert_eq!(crate::verify(&log).unwrap().records, 4);
    }
}
