// SPDX-License-Identifier: GPL-3.0-or-later
//! Verification of a whole log: every record parses, matches its own hash, has the next
//! sequence number and links to the record before it. The first record that fails is
//! named with its line, its expected sequence number and the reason. With the TPM anchor
//! (the record count and head hash the TPM holds), a log that lost records at its end, or
//! an older copy put back in its place, is caught too.

use core::fmt;

use crate::chain::Chain;
use crate::record::{Record, RecordError};
use crate::Hash;

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Number of records.
    pub records: u64,
    /// The `prev` of the first record: where the chain starts ([`GENESIS`] for a log
    /// started on a fresh anchor, the TPM's head for one restarted on an old anchor).
    pub origin: Hash,
    /// Hash of the last record (`origin` when empty).
    pub head: Hash,
    /// Every record's hash, in order (`hashes[i]` belongs to record `i + 1`).
    pub hashes: Vec<Hash>,
    /// Every record's body digest (what the TPM extend index is extended with).
    pub digests: Vec<Hash>,
    /// The value of the first record's `base` field, if it has one (the TPM counter's
    /// value when the log started).
    pub base: Option<u64>,
    /// Lines (1-based) holding a torn append the chain continues past (see [`verify`]).
    pub torn: Vec<u64>,
}

/// What is wrong with the first bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The log ends in the middle of this record (no newline): its tail was cut.
    Incomplete,
    /// The line is not a record.
    Malformed(RecordError),
    /// The record's contents do not match its own hash: it was changed.
    Modified,
    /// Records `first..=last` are absent: the next one found is `last + 1`.
    Missing { first: u64, last: u64 },
    /// Record `found` stands where the expected one belongs, which comes later.
    Reordered { found: u64 },
    /// A copy of record `of`, already seen.
    Duplicate { of: u64 },
    /// Record `found`, already seen, stands here (and is not a plain copy).
    OutOfPlace { found: u64 },
    /// Right number, consistent with itself, but not chained to the record before it:
    /// it (or the one before it) was replaced by a forged record.
    BrokenLink,
}

/// The first bad record of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    /// Line number (1-based).
    pub line: u64,
    /// The sequence number the record at this line should have.
    pub record: u64,
    /// Byte offset of the line in the log (everything before it verified).
    pub offset: usize,
    pub problem: Problem,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Incomplete => {
                f.write_str("incomplete: the log ends in the middle of it (tail truncated)")
            }
            Problem::Malformed(e) => write!(f, "{e}"),
            Problem::Modified => f.write_str("its contents do not match its hash (modified)"),
            Problem::Missing { first, last } if first == last => {
                write!(f, "missing (deleted): record {} follows record {}", last + 1, first - 1)
            }
            Problem::Missing { first, last } => write!(
                f,
                "missing: records {first}..{last} were deleted (record {} follows record {})",
                last + 1,
                first - 1
            ),
            Problem::Reordered { found } => write!(
                f,
                "out of order: record {found} stands here and this record comes later (reordered)"
            ),
            Problem::Duplicate { of } => write!(f, "a copy of record {of} (duplicated)"),
            Problem::OutOfPlace { found } => {
                write!(f, "out of order: an earlier record {found} appears again here")
            }
            Problem::BrokenLink => f.write_str(
                "not chained to the record before it (its prev hash differs: a record was replaced)",
            ),
        }
    }
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} (line {}): {}",
            self.record, self.line, self.problem
        )
    }
}

impl std::error::Error for Bad {}

/// The sequence number of a line, if it parses at all.
fn seq_of(line: &[u8]) -> Option<u64> {
    Record::parse(line).ok().map(|r| r.seq)
}

/// Whether `line` (not a record) is what a torn append leaves: the start of a record
/// line (`v1 seq=...` cut short), or bytes a power cut left as NULs after such a start.
/// Never a blank line or other text.
fn looks_torn(line: &[u8], expected: u64) -> bool {
    const START: &[u8] = b"v1 seq=";
    let kept = line
        .iter()
        .rposition(|&b| b != 0)
        .map_or(&[][..], |last| line.get(..=last).unwrap_or_default());
    if kept.is_empty() {
        return !line.is_empty();
    }
    if START.starts_with(kept) {
        return true;
    }
    let Some(rest) = kept.strip_prefix(START) else {
        return false;
    };
    // A whole sequence number must be the expected one.
    match rest.iter().position(|&b| b == b' ') {
        Some(end) => rest.get(..end) == Some(expected.to_string().as_bytes()),
        None => rest.iter().all(u8::is_ascii_digit),
    }
}

/// Verify the chain of `log` (the whole file). The first record may start from any
/// `prev` (the chain's origin); every later one must link to the record before it.
///
/// A torn append (a write a power cut or a full disk cut short, which the next writer
/// left on a line of its own and chained past) is not a break: when a line is the
/// start of a record cut short and the very next line is the record expected there,
/// linked to the record before the torn line, the torn line is skipped and named in
/// [`Verified::torn`]. Nothing in the chain can hide behind it: the records on both
/// sides are linked to each other.
pub fn verify(log: &[u8]) -> Result<Verified, Bad> {
    walk(log, None, false).map(|(v, _)| v)
}

/// [`verify`] from a known place in the chain: `rest` are the lines that follow record
/// `after.records` (whose hash is `after.head`), and the first of them must link to it.
/// Line numbers, [`Verified::hashes`] and [`Verified::digests`] count from the start of
/// `rest`; `records` and `head` are the whole chain's. What the anchoring step checks:
/// only the records after the last anchored one ([`locate_anchored`]).
pub fn verify_after(after: Chain, rest: &[u8]) -> Result<Verified, Bad> {
    walk(rest, Some(after), false).map(|(v, _)| v)
}

#[cfg(test)]
thread_local! {
    /// Passes over a log this thread's [`walk`] made: what proves a check reads it once.
    pub(crate) static WALKS: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// The one pass over a log. `cut_tail`: a last line without its newline ends the log
/// before it (the length returned) instead of being [`Problem::Incomplete`]; every line
/// before it is checked exactly as [`verify`] checks it (a torn line before it looks at
/// the next line only when that line is whole, and a line cut short is not whole).
fn walk(log: &[u8], after: Option<Chain>, cut_tail: bool) -> Result<(Verified, usize), Bad> {
    #[cfg(test)]
    WALKS.with(|w| w.set(w.get() + 1));
    let mut hashes: Vec<Hash> = Vec::new();
    let mut digests: Vec<Hash> = Vec::new();
    let mut torn = Vec::new();
    let start = after.unwrap_or_default();
    let first = start.records();
    let mut head = start.head();
    let mut origin = head;
    let mut base = None;
    let mut offset = 0usize;
    let mut line_no = 0u64;
    let mut records = first;
    // The first record of a whole log may start from any `prev` (its origin); after a
    // known record, every record must link to the one before it.
    let free_start = |records: u64| after.is_none() && records == 0;
    while offset < log.len() {
        line_no += 1;
        let expected = records + 1;
        let rest = log.get(offset..).unwrap_or_default();
        let bad = |problem| Bad {
            line: line_no,
            record: expected,
            offset,
            problem,
        };
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if cut_tail {
                break;
            }
            return Err(bad(Problem::Incomplete));
        };
        let line = rest.get(..nl).unwrap_or_default();
        let record = match Record::parse(line) {
            Ok(r) => r,
            Err(e) => {
                let next = rest.get(nl + 1..).unwrap_or_default();
                let continues = next
                    .iter()
                    .position(|&b| b == b'\n')
                    .and_then(|end| Record::parse(next.get(..end)?).ok())
                    .is_some_and(|r| {
                        r.is_intact()
                            && r.seq == expected
                            && (free_start(records) || r.prev == head)
                    });
                if continues && looks_torn(line, expected) {
                    torn.push(line_no);
                    offset += nl + 1;
                    continue;
                }
                return Err(bad(Problem::Malformed(e)));
            }
        };
        if !record.is_intact() {
            return Err(bad(Problem::Modified));
        }
        if record.seq > expected {
            let later = rest.get(nl + 1..).unwrap_or_default();
            let comes_later = later
                .split(|&b| b == b'\n')
                .any(|l| seq_of(l) == Some(expected));
            return Err(bad(if comes_later {
                Problem::Reordered { found: record.seq }
            } else {
                Problem::Missing {
                    first: expected,
                    last: record.seq - 1,
                }
            }));
        }
        if record.seq < expected {
            let index = record
                .seq
                .checked_sub(first + 1)
                .and_then(|i| usize::try_from(i).ok());
            let copy = index.is_some_and(|i| hashes.get(i) == Some(&record.hash));
            return Err(bad(if copy {
                Problem::Duplicate { of: record.seq }
            } else {
                Problem::OutOfPlace { found: record.seq }
            }));
        }
        if free_start(records) {
            origin = record.prev;
            base = record
                .field("base")
                .and_then(|b| core::str::from_utf8(b).ok())
                .and_then(|b| b.parse().ok());
        } else if record.prev != head {
            return Err(bad(Problem::BrokenLink));
        }
        head = record.hash;
        hashes.push(head);
        digests.push(record.digest);
        records = expected;
        offset += nl + 1;
    }
    if records == first {
        head = origin;
    }
    let verified = Verified {
        records,
        origin,
        head,
        hashes,
        digests,
        base,
        torn,
    };
    Ok((verified, offset))
}

/// [`verify`] for a writer about to append, and for checking a log against its anchor: a
/// log whose last line was cut short (a torn append nobody has written past yet) is the
/// log before that line. Also returns how many bytes that is: less than `log.len()` says
/// the next record must start a line of its own (the torn line stays, and [`verify`]
/// skips it once the chain goes on past it). One pass over the log, as [`verify`].
pub fn verify_for_append(log: &[u8]) -> Result<(Verified, usize), Bad> {
    walk(log, None, true)
}

/// Where the last anchored record stands, as [`locate_anchored`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located {
    /// The record is the line ending just before `offset` in the bytes searched; its
    /// `seq` and hash are the chain's state there. `lag`: it is the record after the
    /// counted ones (the TPM's head is one record ahead of its counter).
    At { offset: usize, seq: u64, lag: bool },
    /// Not in these bytes: it may stand further back (search more of the log).
    Earlier,
    /// The search passed the place the anchored record belongs without finding it
    /// there: only verifying the whole log can say what is wrong.
    Nowhere,
}

/// Find the last anchored record in `end`, the last bytes of a log (`from_start`: they
/// are the whole log, else their first line may be cut and is not looked at), from the
/// end backwards: the whole, self-consistent record whose hash is the TPM's head and
/// whose `seq` is the anchored count (or one more: a crash between the two TPM steps).
/// The bytes after it are what the anchoring step verifies ([`verify_after`]); nothing
/// before it is read, so anchoring costs the same however long the log has grown.
/// A last line without its newline (a torn append) is passed over.
pub fn locate_anchored(end: &[u8], from_start: bool, anchor: &Anchor) -> Located {
    let skip = if from_start {
        0
    } else {
        match end.iter().position(|&b| b == b'\n') {
            Some(nl) => nl + 1,
            None => return Located::Earlier,
        }
    };
    let Some(last_nl) = end.iter().rposition(|&b| b == b'\n') else {
        return if from_start {
            Located::Nowhere
        } else {
            Located::Earlier
        };
    };
    let mut line_end = last_nl;
    while line_end >= skip {
        let line_start = end
            .get(skip..line_end)
            .unwrap_or_default()
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(skip, |nl| skip + nl + 1);
        let line = end.get(line_start..line_end).unwrap_or_default();
        if let Ok(r) = Record::parse(line) {
            if r.is_intact() {
                let lag = r.seq == anchor.count.saturating_add(1);
                if r.hash == anchor.head && (r.seq == anchor.count || lag) {
                    return Located::At {
                        offset: line_end + 1,
                        seq: r.seq,
                        lag,
                    };
                }
                if r.seq <= anchor.count {
                    return Located::Nowhere;
                }
            }
        }
        match line_start.checked_sub(1) {
            Some(prev_end) if line_start > skip => line_end = prev_end,
            _ => break,
        }
    }
    if from_start {
        Located::Nowhere
    } else {
        Located::Earlier
    }
}

/// What the TPM holds about the log: how many records were anchored and the head then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub count: u64,
    pub head: Hash,
}

/// Why a log fails against its anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorProblem {
    /// The chain itself is broken.
    Chain(Bad),
    /// The log holds fewer records than the TPM counted.
    Truncated { records: u64, anchored: u64 },
    /// The log's first `anchored` records are not the ones the TPM saw.
    Diverged { anchored: u64 },
}

impl fmt::Display for AnchorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnchorProblem::Chain(bad) => write!(f, "{bad}"),
            AnchorProblem::Truncated { records, anchored } => write!(
                f,
                "record {} (line {}): missing: the log ends after record {records} but the TPM \
                 anchor counts {anchored} records (its tail was cut off, or an older copy of \
                 the log was put back)",
                records + 1,
                records + 1
            ),
            AnchorProblem::Diverged { anchored: 0 } => f.write_str(
                "record 1 (line 1): the log does not match the TPM anchor: it does not start \
                 where the anchored log starts (the whole log was replaced)",
            ),
            AnchorProblem::Diverged { anchored } => write!(
                f,
                "record {anchored} (line {anchored}) or one before it: the log does not match \
                 the TPM anchor (records up to {anchored} were rewritten, or the whole log was \
                 replaced)"
            ),
        }
    }
}

impl std::error::Error for AnchorProblem {}

/// A log that matches its anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchored {
    pub verified: Verified,
    /// Records after the anchored ones (written, not anchored yet: e.g. a crash before
    /// the TPM update, or records bay0 appended since the last anchoring).
    pub unanchored: u64,
    /// The TPM's head is one record ahead of its counter (a crash between the two TPM
    /// updates); the counter should be moved on by one.
    pub counter_lag: bool,
}

/// Verify `log` and compare it with the TPM `anchor`.
pub fn verify_anchored(log: &[u8], anchor: &Anchor) -> Result<Anchored, AnchorProblem> {
    match_anchor(verify(log).map_err(AnchorProblem::Chain)?, anchor)
}

/// Compare a log that verified ([`verify`], [`verify_for_append`]) with the TPM
/// `anchor`, without reading the log again: [`verify_anchored`] after its own pass.
pub fn match_anchor(verified: Verified, anchor: &Anchor) -> Result<Anchored, AnchorProblem> {
    let n = verified.records;
    if n < anchor.count {
        return Err(AnchorProblem::Truncated {
            records: n,
            anchored: anchor.count,
        });
    }
    let head_at = |k: u64| -> Option<Hash> {
        if k == 0 {
            return Some(verified.origin);
        }
        let i = usize::try_from(k - 1).ok()?;
        verified.hashes.get(i).copied()
    };
    if head_at(anchor.count) == Some(anchor.head) {
        return Ok(Anchored {
            unanchored: n - anchor.count,
            counter_lag: false,
            verified,
        });
    }
    if n > anchor.count && head_at(anchor.count + 1) == Some(anchor.head) {
        return Ok(Anchored {
            unanchored: n - anchor.count - 1,
            counter_lag: true,
            verified,
        });
    }
    Err(AnchorProblem::Diverged {
        anchored: anchor.count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Entry, MAX_RECORD};
    use crate::GENESIS;
    use proptest::prelude::*;

    /// A log of `n` records; also the chain after it.
    fn log(n: u64) -> (Vec<u8>, Chain) {
        let mut chain = Chain::new();
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_RECORD];
        for i in 0..n {
            let room = format!("room{i}");
            let fields: [(&str, &[u8]); 2] = [("room", room.as_bytes()), ("note", b"x y\n")];
            let e = Entry {
                time: 1000 + i,
                actor: "bay0",
                event: "room.start",
                fields: &fields,
            };
            chain.append(&mut out, &e, &mut buf).unwrap();
        }
        (out, chain)
    }

    fn lines(log: &[u8]) -> Vec<Vec<u8>> {
        log.split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn join(lines: &[Vec<u8>]) -> Vec<u8> {
        lines.concat()
    }

    fn first_bad(log: &[u8]) -> Bad {
        verify(log).unwrap_err()
    }

    #[test]
    fn an_intact_log_verifies() {
        let (l, chain) = log(5);
        let v = verify(&l).unwrap();
        assert_eq!((v.records, v.head, v.origin), (5, chain.head(), GENESIS));
        assert_eq!(v.digests.len(), 5);
        assert_eq!(v.base, None);
        assert_eq!(verify(b"").unwrap().records, 0);
    }

    #[test]
    fn a_flipped_byte_names_its_record() {
        let (l, _) = log(6);
        let ls = lines(&l);
        for (i, line) in ls.iter().enumerate() {
            for pos in [0, 5, line.len() / 2, line.len() - 2] {
                let mut damaged = ls.clone();
                damaged[i][pos] ^= 0x01;
                let bad = first_bad(&join(&damaged));
                assert_eq!(bad.line, i as u64 + 1, "line {i} byte {pos}: {bad}");
                assert!(
                    matches!(bad.problem, Problem::Modified | Problem::Malformed(_)),
                    "line {i} byte {pos}: {bad}"
                );
            }
        }
        let mut damaged = ls.clone();
        let at = damaged[3].len() / 2;
        damaged[3][at] ^= 0x01;
        assert_eq!(
            first_bad(&join(&damaged)).to_string(),
            "record 4 (line 4): its contents do not match its hash (modified)"
        );
    }

    #[test]
    fn a_deleted_record_is_named() {
        let (l, _) = log(6);
        let mut ls = lines(&l);
        ls.remove(2);
        let bad = first_bad(&join(&ls));
        assert_eq!(
            (bad.line, bad.problem.clone()),
            (3, Problem::Missing { first: 3, last: 3 })
        );
        assert_eq!(
            bad.to_string(),
            "record 3 (line 3): missing (deleted): record 4 follows record 2"
        );
        ls.remove(2);
        assert_eq!(
            first_bad(&join(&ls)).problem,
            Problem::Missing { first: 3, last: 4 }
        );
        let mut first_gone = lines(&l);
        first_gone.remove(0);
        assert_eq!(
            first_bad(&join(&first_gone)).problem,
            Problem::Missing { first: 1, last: 1 }
        );
    }

    #[test]
    fn reordered_records_are_named() {
        let (l, _) = log(6);
        let mut ls = lines(&l);
        ls.swap(3, 4);
        let bad = first_bad(&join(&ls));
        assert_eq!(
            (bad.line, bad.problem),
            (4, Problem::Reordered { found: 5 })
        );
        let mut ls = lines(&l);
        let moved = ls.remove(1);
        ls.push(moved);
        assert_eq!(
            first_bad(&join(&ls)).problem,
            Problem::Reordered { found: 3 }
        );
    }

    #[test]
    fn duplicated_records_are_named() {
        let (l, _) = log(6);
        let mut ls = lines(&l);
        let copy = ls[2].clone();
        ls.insert(3, copy);
        let bad = first_bad(&join(&ls));
        assert_eq!((bad.line, bad.problem), (4, Problem::Duplicate { of: 3 }));
        let mut ls = lines(&l);
        let copy = ls[0].clone();
        ls.push(copy);
        let bad = first_bad(&join(&ls));
        assert_eq!((bad.line, bad.problem), (7, Problem::Duplicate { of: 1 }));
    }

    #[test]
    fn a_forged_but_consistent_record_breaks_the_link() {
        // Record 3 of another log: right number, consistent with itself, chained to
        // that log's record 2.
        let (l, _) = log(4);
        let mut other = Vec::new();
        let mut c = Chain::new();
        let mut buf = [0u8; MAX_RECORD];
        for ev in ["a", "b", "c"] {
            let e = Entry {
                time: 1,
                actor: "x",
                event: ev,
                fields: &[],
            };
            c.append(&mut other, &e, &mut buf).unwrap();
        }
        let mut forged = lines(&l);
        forged[2] = lines(&other)[2].clone();
        let bad = first_bad(&join(&forged));
        assert_eq!((bad.line, bad.problem), (3, Problem::BrokenLink));
    }

    #[test]
    fn a_cut_tail_is_named() {
        let (l, _) = log(4);
        let cut = &l[..l.len() - 10];
        let bad = first_bad(cut);
        assert_eq!((bad.line, bad.problem.clone()), (4, Problem::Incomplete));
        let ls = lines(&l);
        assert_eq!(bad.offset, ls[..3].concat().len());
        // A cut exactly at a record boundary is only visible against the anchor.
        let whole = &l[..bad.offset];
        assert_eq!(verify(whole).unwrap().records, 3);
    }

    /// A power cut (or a full disk) in the middle of an append leaves the start of a
    /// record without its end; the next writer starts a line of its own and chains after
    /// the last whole record (anchor-sys `audit::append`). That log must still verify,
    /// every record after the torn line included, or one torn write would make the log
    /// unverifiable (and unanchorable) from then on.
    #[test]
    fn a_torn_append_the_chain_continues_past_is_named_not_fatal() {
        let (l, _) = log(5);
        let ls = lines(&l);
        for cut in [1, 7, 12, ls[2].len() / 2, ls[2].len() - 2] {
            let mut torn = ls[..2].concat();
            torn.extend_from_slice(&ls[2][..cut]);
            // What the writers see: the log before the torn line, and a line to start.
            let (before, whole) = verify_for_append(&torn).unwrap();
            assert_eq!(
                (before.records, whole),
                (2, ls[..2].concat().len()),
                "cut {cut}"
            );
            let mut next = Vec::new();
            let mut chain = Chain::resume(before.records, before.head);
            let mut buf = [0u8; MAX_RECORD];
            let e = Entry {
                time: 1,
                actor: "bay0",
                event: "room.start",
                fields: &[],
            };
            chain.append(&mut next, &e, &mut buf).unwrap();
            torn.push(b'\n');
            torn.extend_from_slice(&next);
            let v = verify(&torn).unwrap_or_else(|b| panic!("cut at {cut}: {b}"));
            assert_eq!(
                (v.records, v.head, v.torn.clone()),
                (3, chain.head(), vec![3])
            );
            assert_eq!(verify_for_append(&torn).unwrap(), (v, torn.len()));
        }
        // NULs where a power cut lost the data of a torn append.
        let mut zeros = ls[..2].concat();
        zeros.extend_from_slice(&[0u8; 40]);
        zeros.push(b'\n');
        zeros.extend_from_slice(&ls[2]);
        assert_eq!(verify(&zeros).unwrap().torn, vec![3]);
    }

    /// Only a torn append is skipped: a line that is not the start of a record, a torn
    /// line not followed by the record expected there, and a cut-off record that was in
    /// the chain (the next record links to it) all remain breaks.
    #[test]
    fn only_a_torn_append_is_skipped() {
        let (l, _) = log(4);
        let ls = lines(&l);
        let with = |middle: &[u8], after: &[Vec<u8>]| {
            let mut out = ls[..2].concat();
            out.extend_from_slice(middle);
            out.extend_from_slice(&after.concat());
            out
        };
        let garbage = with(b"not a record\n", &ls[2..]);
        assert!(matches!(first_bad(&garbage).problem, Problem::Malformed(_)));
        let wrong_seq = with(b"v1 seq=7 ti\n", &ls[2..]);
        assert!(matches!(
            first_bad(&wrong_seq).problem,
            Problem::Malformed(_)
        ));
        // Record 3 cut short in place: record 4 links to the whole record 3.
        let mut cut = ls[2][..20].to_vec();
        cut.push(b'\n');
        let replaced = with(&cut, &ls[3..]);
        let bad = first_bad(&replaced);
        assert_eq!((bad.line, bad.record), (3, 3));
        assert!(matches!(bad.problem, Problem::Malformed(_)), "{bad}");
        // A torn line at the very end with nothing after it is still a torn tail.
        let tail = with(&cut, &[]);
        assert!(matches!(first_bad(&tail).problem, Problem::Malformed(_)));
    }

    #[test]
    fn blank_and_garbage_lines_are_malformed() {
        let (l, _) = log(2);
        let mut ls = lines(&l);
        ls.insert(1, b"\n".to_vec());
        assert!(matches!(
            first_bad(&join(&ls)).problem,
            Problem::Malformed(_)
        ));
    }

    #[test]
    fn the_anchor_catches_truncation_and_replay() {
        let (l, chain) = log(6);
        let anchor = Anchor {
            count: 6,
            head: chain.head(),
        };
        let ok = verify_anchored(&l, &anchor).unwrap();
        assert_eq!((ok.unanchored, ok.counter_lag), (0, false));
        // Truncated at a record boundary, or an older copy of the log put back.
        let ls = lines(&l);
        let older = join(&ls[..4]);
        let e = verify_anchored(&older, &anchor).unwrap_err();
        assert_eq!(
            e,
            AnchorProblem::Truncated {
                records: 4,
                anchored: 6
            }
        );
        assert!(
            e.to_string().starts_with("record 5 (line 5): missing"),
            "{e}"
        );
        // An unrelated log with at least as many records.
        let (mut other, _) = log(0);
        let mut c = Chain::new();
        let mut buf = [0u8; MAX_RECORD];
        for ev in ["a", "b", "c", "d", "e", "f", "g"] {
            let e = Entry {
                time: 5,
                actor: "x",
                event: ev,
                fields: &[],
            };
            c.append(&mut other, &e, &mut buf).unwrap();
        }
        assert_eq!(
            verify_anchored(&other, &anchor).unwrap_err(),
            AnchorProblem::Diverged { anchored: 6 }
        );
    }

    #[test]
    fn unanchored_tails_and_a_lagging_counter_are_reported_not_failed() {
        let (l, _) = log(6);
        let v = verify(&l).unwrap();
        let at = |k: usize| v.hashes[k - 1];
        let ok = verify_anchored(
            &l,
            &Anchor {
                count: 4,
                head: at(4),
            },
        )
        .unwrap();
        assert_eq!((ok.unanchored, ok.counter_lag), (2, false));
        let ok = verify_anchored(
            &l,
            &Anchor {
                count: 4,
                head: at(5),
            },
        )
        .unwrap();
        assert_eq!((ok.unanchored, ok.counter_lag), (1, true));
        let fresh = Anchor {
            count: 0,
            head: GENESIS,
        };
        assert_eq!(verify_anchored(&l, &fresh).unwrap().unanchored, 6);
    }

    #[test]
    fn a_log_restarted_on_an_old_anchor_chains_from_the_tpm_head() {
        let tpm_head = [0x5a; 32];
        let mut chain = Chain::resume(0, tpm_head);
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_RECORD];
        let start: [(&str, &[u8]); 1] = [("base", b"41")];
        for (event, fields) in [("audit.start", &start[..]), ("x", &[][..])] {
            let e = Entry {
                time: 1,
                actor: "anchor-vault",
                event,
                fields,
            };
            chain.append(&mut out, &e, &mut buf).unwrap();
        }
        let v = verify(&out).unwrap();
        assert_eq!((v.origin, v.base, v.records), (tpm_head, Some(41), 2));
        let fresh = Anchor {
            count: 0,
            head: tpm_head,
        };
        assert_eq!(verify_anchored(&out, &fresh).unwrap().unanchored, 2);
        let wrong = Anchor {
            count: 0,
            head: GENESIS,
        };
        assert_eq!(
            verify_anchored(&out, &wrong).unwrap_err(),
            AnchorProblem::Diverged { anchored: 0 }
        );
    }

    #[test]
    fn the_anchored_record_is_found_from_the_end() {
        let (l, _) = log(8);
        let v = verify(&l).unwrap();
        let ls = lines(&l);
        let at = |k: usize| Anchor {
            count: k as u64,
            head: v.hashes[k - 1],
        };
        let end_of = |k: usize| ls[..k].concat().len();
        // Whole log: found, with the records after it verified on their own.
        let Located::At { offset, seq, lag } = locate_anchored(&l, true, &at(5)) else {
            panic!("not found")
        };
        assert_eq!((offset, seq, lag), (end_of(5), 5, false));
        let after = verify_after(Chain::resume(5, v.hashes[4]), &l[offset..]).unwrap();
        assert_eq!((after.records, after.head), (8, v.head));
        assert_eq!(after.digests, v.digests[5..].to_vec());
        // Only the end: its first (maybe cut) line is never taken for a record.
        let from = end_of(4) + 3;
        assert_eq!(locate_anchored(&l[from..], false, &at(5)), Located::Earlier);
        let from = end_of(4) - 1;
        let Located::At { offset, .. } = locate_anchored(&l[from..], false, &at(5)) else {
            panic!("not found in the end")
        };
        assert_eq!(from + offset, end_of(5));
        // A crash between the two TPM steps: the head is record 6, the counter says 5.
        let lagging = Anchor {
            count: 5,
            head: v.hashes[5],
        };
        assert!(matches!(
            locate_anchored(&l, true, &lagging),
            Located::At {
                seq: 6,
                lag: true,
                ..
            }
        ));
        // Passing the place without the head there: only the whole log can tell.
        let wrong = Anchor {
            count: 5,
            head: [9; 32],
        };
        assert_eq!(locate_anchored(&l, true, &wrong), Located::Nowhere);
        assert_eq!(
            locate_anchored(&l[end_of(2)..], false, &wrong),
            Located::Nowhere
        );
        // A last line cut short is passed over.
        let mut torn = l.clone();
        torn.extend_from_slice(b"v1 seq=9 ti");
        assert!(matches!(
            locate_anchored(&torn, true, &at(8)),
            Located::At { seq: 8, .. }
        ));
    }

    #[test]
    fn records_after_the_anchored_one_must_chain_from_it() {
        let (l, _) = log(6);
        let v = verify(&l).unwrap();
        let ls = lines(&l);
        let after = Chain::resume(3, v.hashes[2]);
        assert_eq!(verify_after(after, &ls[3..].concat()).unwrap().records, 6);
        // Record 4 left out: record 5 does not follow the anchored record 3.
        let bad = verify_after(after, &ls[4..].concat()).unwrap_err();
        assert!(matches!(bad.problem, Problem::Missing { .. }), "{bad}");
        // Right number, wrong head: even the first record must link to the anchored one.
        let elsewhere = Chain::resume(3, [1; 32]);
        let bad = verify_after(elsewhere, &ls[3..].concat()).unwrap_err();
        assert_eq!((bad.line, bad.problem), (1, Problem::BrokenLink));
        // A copy of an anchored record is not taken as new.
        let bad = verify_after(after, &ls[2..].concat()).unwrap_err();
        assert!(
            matches!(bad.problem, Problem::OutOfPlace { found: 3 }),
            "{bad}"
        );
        // Nothing after it: the chain stays where it is.
        let none = verify_after(after, b"").unwrap();
        assert_eq!((none.records, none.head), (3, v.hashes[2]));
    }

    /// The check at unlock as it was: [`verify_for_append`] as two passes when the last
    /// line is cut short, then [`verify_anchored`], which verifies the log again.
    fn unlock_check_before(
        log: &[u8],
        anchor: impl Fn(&Verified) -> Anchor,
    ) -> Result<(Anchored, usize), AnchorProblem> {
        let (v, whole) = match verify(log) {
            Ok(v) => (v, log.len()),
            Err(bad) if bad.problem == Problem::Incomplete => {
                let v = verify(&log[..bad.offset]).map_err(AnchorProblem::Chain)?;
                (v, bad.offset)
            }
            Err(bad) => return Err(AnchorProblem::Chain(bad)),
        };
        verify_anchored(&log[..whole], &anchor(&v)).map(|a| (a, whole))
    }

    /// The check at unlock now: one pass, then the comparison with the anchor.
    fn unlock_check(
        log: &[u8],
        anchor: impl Fn(&Verified) -> Anchor,
    ) -> Result<(Anchored, usize), AnchorProblem> {
        let (v, whole) = verify_for_append(log).map_err(AnchorProblem::Chain)?;
        let a = anchor(&v);
        match_anchor(v, &a).map(|a| (a, whole))
    }

    fn walks_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
        WALKS.with(|w| w.set(0));
        let out = f();
        (out, WALKS.with(core::cell::Cell::get))
    }

    /// `k` records, a torn append (the first `cut` bytes of a record and a newline), then
    /// `m` more records chained past it, as the writers leave a log after a power cut.
    fn torn_log(k: u64, cut: usize, m: u64) -> Vec<u8> {
        let (mut l, mut chain) = log(k);
        let mut buf = [0u8; MAX_RECORD];
        let e = Entry {
            time: 2,
            actor: "bay0",
            event: "room.start",
            fields: &[],
        };
        let mut lost = Vec::new();
        let mut lost_chain = chain;
        lost_chain.append(&mut lost, &e, &mut buf).unwrap();
        l.extend_from_slice(&lost[..cut.clamp(1, lost.len() - 1)]);
        l.push(b'\n');
        for _ in 0..m {
            chain.append(&mut l, &e, &mut buf).unwrap();
        }
        l
    }

    /// A 100k-record log (a week of a hostile room) was verified two or three times at
    /// unlock: a last line cut short made `verify_for_append` verify the log, then the
    /// log before that line; the check against the anchor then verified it once more.
    #[test]
    fn the_unlock_check_reads_the_log_once() {
        let (whole, chain) = log(5);
        let mut torn_tail = whole.clone();
        torn_tail.extend_from_slice(b"v1 seq=6 ti");
        let anchor = |_: &Verified| Anchor {
            count: 5,
            head: chain.head(),
        };
        for l in [&whole, &torn_tail, &torn_log(3, 20, 2)] {
            let (now, walks) = walks_of(|| unlock_check(l, anchor));
            let (before, _) = walks_of(|| unlock_check_before(l, anchor));
            assert_eq!(now, before);
            assert_eq!(walks, 1);
            assert_eq!(walks_of(|| verify_for_append(l)).1, 1);
        }
    }

    proptest! {
        #[test]
        fn any_single_byte_change_is_caught_at_or_before_its_line(
            n in 1u64..8, pick in any::<prop::sample::Index>(), xor in 1u8..=255
        ) {
            let (l, chain) = log(n);
            let at = pick.index(l.len());
            let mut damaged = l.clone();
            damaged[at] ^= xor;
            let line_of_byte = l[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            let anchor = Anchor { count: n, head: chain.head() };
            match verify_anchored(&damaged, &anchor) {
                Ok(_) => prop_assert!(false, "change at byte {at} not detected"),
                Err(AnchorProblem::Chain(bad)) => prop_assert!(bad.line <= line_of_byte),
                Err(_) => {}
            }
        }

        /// The anchoring step never anchors a changed record after the anchored one, and
        /// a change before it (the TPM binds those) does not stop it.
        #[test]
        fn anchoring_from_the_end_takes_only_intact_new_records(
            n in 2u64..8, k in 1u64..8, pick in any::<prop::sample::Index>(), xor in 1u8..=255
        ) {
            let k = k.min(n - 1);
            let (l, _) = log(n);
            let v = verify(&l).unwrap();
            let anchor = Anchor { count: k, head: v.hashes[k as usize - 1] };
            let end_k = lines(&l)[..k as usize].concat().len();
            let at = pick.index(l.len());
            let mut damaged = l.clone();
            damaged[at] ^= xor;
            let found = match locate_anchored(&damaged, true, &anchor) {
                Located::At { offset, seq, lag } => {
                    prop_assert!(!lag);
                    verify_after(Chain::resume(seq, anchor.head), &damaged[offset..]).ok()
                }
                _ => None,
            };
            if at >= end_k {
                prop_assert!(found.is_none(), "a change at byte {} was anchored", at);
            } else if let Some(after) = found {
                prop_assert_eq!(after.digests, v.digests[k as usize..].to_vec());
            }
        }

        /// The one pass at unlock gives what the two did: the same verdict, the same first
        /// problem at the same line, the same torn lines and length, for whole logs, logs
        /// cut short, torn appends chained past, changed bytes, and any anchor.
        #[test]
        fn the_unlock_check_in_one_pass_says_what_two_did(
            n in 0u64..7, m in 0u64..3, kind in 0u8..4, pick in any::<prop::sample::Index>(),
            xor in 1u8..=255, count in 0u64..9, head in 0usize..10,
        ) {
            let mut l = match kind {
                0 | 1 => log(n).0,
                _ => torn_log(n, pick.index(200), m),
            };
            if kind == 1 && !l.is_empty() {
                l.truncate(pick.index(l.len()));
            }
            if kind == 3 && !l.is_empty() {
                let at = pick.index(l.len());
                l[at] ^= xor;
            }
            let anchor = |v: &Verified| Anchor {
                count: count.min(v.records + 1),
                head: match head {
                    0 => v.origin,
                    9 => [7; 32],
                    k => v.hashes.get(k - 1).copied().unwrap_or(v.head),
                },
            };
            let (now, walks) = walks_of(|| unlock_check(&l, anchor));
            prop_assert_eq!(now, unlock_check_before(&l, anchor));
            prop_assert_eq!(walks, 1);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = verify(&bytes);
        }
    }
}
