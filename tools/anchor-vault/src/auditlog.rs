// SPDX-License-Identifier: GPL-3.0-or-later
//! The audit log files and their TPM anchor (docs/AUDIT-LOG-FORMAT.md).
//!
//! Before the vault is open, records go to the pre-unlock log on tmpfs
//! ([`PRE_UNLOCK_LOG`]). When the vault opens, [`settle`] checks the persistent log
//! against the TPM anchor (a damaged log is kept aside and a new one starts from the
//! TPM's head, saying why), carries the pre-unlock records over, appends the caller's
//! records, and anchors everything not anchored yet.

use core::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anchor_audit::verify::Verified;
use anchor_audit::{
    verify, verify_for_append, Anchor, AnchorProblem, Chain, ChainError, Entry, Record, MAX_RECORD,
};

use crate::tpm::nv::{self, Indices, NvState};
use crate::tpm::{Tpm, TpmError};

/// Records written before the vault is open (tmpfs; carried over on unlock).
pub use anchor_audit::PRE_UNLOCK_LOG;
/// The persistent log, relative to the vault's mount point.
pub const LOG: &str = "audit/audit.log";
/// Who anchor-vault's records name as their actor.
pub const ACTOR: &str = "anchor-vault";

/// What went wrong with the audit log.
#[derive(Debug)]
pub enum AuditError {
    /// Reading or writing a log file.
    Io(PathBuf, std::io::Error),
    /// A record could not be encoded or written.
    Append(PathBuf, ChainError),
    /// The log file's chain is broken where it must not be.
    Broken(PathBuf, anchor_audit::Bad),
    /// The log does not match its TPM anchor.
    Anchor(PathBuf, AnchorProblem),
    /// The TPM anchor could not be read or advanced.
    Tpm(TpmError),
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::Io(p, e) => write!(f, "audit log {}: {e}", p.display()),
            AuditError::Append(p, e) => write!(f, "audit log {}: {e}", p.display()),
            AuditError::Broken(p, b) => write!(f, "audit log {}: {b}", p.display()),
            AuditError::Anchor(p, a) => write!(f, "audit log {}: {a}", p.display()),
            AuditError::Tpm(e) => write!(f, "audit log TPM anchor: {e}"),
        }
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuditError::Io(_, e) => Some(e),
            AuditError::Append(_, e) => Some(e),
            AuditError::Broken(_, b) => Some(b),
            AuditError::Anchor(_, a) => Some(a),
            AuditError::Tpm(e) => Some(e),
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A record to append, owning its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub time: u64,
    pub actor: String,
    pub event: String,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Event {
    /// An anchor-vault event now.
    pub fn new(event: &str, fields: &[(&str, &str)]) -> Event {
        Event {
            time: now(),
            actor: ACTOR.to_owned(),
            event: event.to_owned(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn from_record(r: &Record) -> Event {
        Event {
            time: r.time,
            actor: r.actor.clone(),
            event: r.event.clone(),
            fields: r.fields.clone(),
        }
    }
}

/// A log is a regular file: a FIFO (or a device) under its name is refused, not read (a
/// read of a FIFO opened read-write, as the writers open a log, waits for ever).
fn regular(file: &File) -> std::io::Result<()> {
    if file.metadata()?.is_file() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

/// Whether a log exists at `path` (a regular file: anything else is an error). Nothing is
/// read: the log is read once, under its writers' lock ([`open_read`]).
fn exists(path: &Path) -> Result<bool, AuditError> {
    // O_NONBLOCK: a FIFO must be refused, not waited on in open(2).
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    match opened {
        Ok(f) => {
            regular(&f).map_err(|e| AuditError::Io(path.to_path_buf(), e))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(AuditError::Io(path.to_path_buf(), e)),
    }
}

/// The whole log at `path`, for commands that only look (`status`): a regular file only,
/// never waited on in open(2) (a FIFO) nor read without end (a link to a device).
pub fn read_log(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    regular(&file)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Open the log at `path` (made if missing), locked against the other writers, and read it.
fn open_read(path: &Path) -> Result<(File, Vec<u8>), AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AuditError::Io(dir.to_path_buf(), e))?;
    }
    let mut file = anchor_sys::audit::open_locked(path).map_err(io)?;
    regular(&file).map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok((file, bytes))
}

/// An open log file and its chain.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    chain: Chain,
    /// The record digests appended through this handle, in order.
    pub appended: Vec<anchor_audit::Hash>,
}

impl LogFile {
    /// Open an existing log whose chain verifies, or start an empty one from `origin`.
    /// A last line cut short (a torn append) is left as it is and chained past
    /// ([`verify_for_append`]). The file stays locked against the other writers (bay0,
    /// other anchor-vault commands) while this handle lives; see [`anchor_sys::audit`].
    pub fn open(path: &Path, origin: anchor_audit::Hash) -> Result<LogFile, AuditError> {
        let (file, bytes) = open_read(path)?;
        let chain = if bytes.is_empty() {
            Chain::resume(0, origin)
        } else {
            let (v, _) =
                verify_for_append(&bytes).map_err(|b| AuditError::Broken(path.to_path_buf(), b))?;
            Chain::resume(v.records, v.head)
        };
        Ok(LogFile::resume(path, file, chain))
    }

    /// A log `file` (open, locked) whose chain stands at `chain`.
    fn resume(path: &Path, file: File, chain: Chain) -> LogFile {
        LogFile {
            path: path.to_path_buf(),
            file,
            chain,
            appended: Vec::new(),
        }
    }

    /// Append `event` (one write, then fsync). After a line cut short (a torn append
    /// found at open, or a write of ours that failed half way) it starts a line of its own.
    pub fn append(&mut self, event: &Event) -> Result<(), AuditError> {
        if ends_mid_line(&self.file).map_err(|e| AuditError::Io(self.path.clone(), e))? {
            self.file
                .write_all(b"\n")
                .map_err(|e| AuditError::Io(self.path.clone(), e))?;
        }
        let fields: Vec<(&str, &[u8])> = event
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let entry = Entry {
            time: event.time,
            actor: &event.actor,
            event: &event.event,
            fields: &fields,
        };
        let mut buf = [0u8; MAX_RECORD];
        let appended = self
            .chain
            .append(&mut self.file, &entry, &mut buf)
            .map_err(|e| AuditError::Append(self.path.clone(), e))?;
        self.file
            .sync_data()
            .map_err(|e| AuditError::Io(self.path.clone(), e))?;
        self.appended.push(appended.digest);
        Ok(())
    }

    /// Records in the log.
    pub fn records(&self) -> u64 {
        self.chain.records()
    }
}

/// Whether the log file's last byte is not a newline (its last line was cut short).
fn ends_mid_line(file: &File) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt as _;
    let Some(last) = file.metadata()?.len().checked_sub(1) else {
        return Ok(false);
    };
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, last)?;
    Ok(byte != *b"\n")
}

/// Most names [`move_aside`] tries for one damaged log before it gives up.
const ASIDE_TRIES: u32 = 1000;

/// Moves the damaged log at `path` to `<stem>.<extension>` beside it, or, where that name
/// is taken (an earlier damage in the same second, or a clock that starts at the same
/// time every boot), to `….1`, `….2`, …: an aside never replaces an earlier one, so
/// no evidence is lost. A link, then the unlink of the old name: a crash between them
/// leaves the log under both names, and the next check moves it aside again (a copy,
/// never a loss). Returns the name it was kept under.
fn move_aside(path: &Path, extension: &str) -> Result<PathBuf, AuditError> {
    let first = path.with_extension(extension);
    let mut aside = first.clone();
    for n in 1..=ASIDE_TRIES {
        match std::fs::hard_link(path, &aside) {
            Ok(()) => {
                std::fs::remove_file(path).map_err(|e| AuditError::Io(path.to_path_buf(), e))?;
                return Ok(aside);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                aside = path.with_extension(format!("{extension}.{n}"));
            }
            Err(e) => return Err(AuditError::Io(aside, e)),
        }
    }
    let full = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "every aside name taken");
    Err(AuditError::Io(first, full))
}

/// Append `event` to the pre-unlock log at `path`. A damaged pre-unlock log is moved
/// aside (`.damaged`, never over an earlier one) and a new one started, so the event is
/// never lost.
pub fn append_pre_unlock(path: &Path, event: &Event) -> Result<(), AuditError> {
    let mut log = match LogFile::open(path, anchor_audit::GENESIS) {
        Ok(l) => l,
        Err(AuditError::Broken(..)) => {
            move_aside(path, "log.damaged")?;
            LogFile::open(path, anchor_audit::GENESIS)?
        }
        Err(e) => return Err(e),
    };
    log.append(event)
}

/// What [`settle`] did, for the console and the tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settled {
    /// Records in the persistent log afterwards.
    pub records: u64,
    /// Records carried over from the pre-unlock log.
    pub carried: u64,
    /// Records anchored in the TPM now.
    pub anchored_now: u64,
    /// The check against the anchor failed: the problem, and where the old log went.
    pub tampered: Option<(String, PathBuf)>,
    /// The TPM anchor could not be used (the log is kept, unanchored).
    pub unanchored_because: Option<String>,
}

/// The state of the TPM anchor, read on its own connection.
pub fn read_anchor(tcti: &str) -> Result<NvState, TpmError> {
    Tpm::open(tcti)?.read_anchor(Indices::default())
}

/// Count the records of `v` the TPM anchors, given its state `nv`.
pub fn anchor_of(v: &Verified, nv: &NvState) -> Anchor {
    let base = v.base.unwrap_or(nv.counter);
    Anchor {
        count: nv.counter.saturating_sub(base),
        head: nv.head,
    }
}

/// Check the persistent log at `log_path` against the TPM (if `tcti` is given), carry
/// the pre-unlock log over, append `events`, then anchor. See the module docs.
pub fn settle(
    log_path: &Path,
    pre_unlock: &Path,
    tcti: Option<&str>,
    events: &[Event],
) -> Result<Settled, AuditError> {
    let mut out = Settled::default();
    let _anchoring = anchor_lock(log_path)?;
    let nv = match tcti.map(read_anchor) {
        Some(Ok(nv)) => Some(nv),
        Some(Err(e)) => {
            out.unanchored_because = Some(e.to_string());
            None
        }
        None => {
            out.unanchored_because = Some("no TPM".to_owned());
            None
        }
    };
    let origin = nv.map_or(anchor_audit::GENESIS, |n| n.head);
    let existed = exists(log_path)?;
    let mut restart: Option<(String, PathBuf)> = None;
    let mut lag = false;
    let mut to_anchor: Vec<anchor_audit::Hash> = Vec::new();
    let mut kept: Option<LogFile> = None;
    // A log without a whole record (its creation and its first record cut apart, or
    // that record torn: a power cut, a full disk) has no `audit.start`, the base its
    // count is taken from: it starts like a new one, or every later check would count
    // its records from the counter of the moment.
    let mut empty = false;
    if existed {
        // Read once, under the writers' lock, and verified in one pass.
        let (file, bytes) = open_read(log_path)?;
        match check(&bytes, nv.as_ref()) {
            Ok(checked) => {
                lag = checked.lag;
                to_anchor = checked.unanchored;
                empty = checked.chain.records() == 0;
                let chain = if bytes.is_empty() {
                    Chain::resume(0, origin)
                } else {
                    checked.chain
                };
                kept = Some(LogFile::resume(log_path, file, chain));
            }
            Err(problem) => {
                let aside = move_aside(log_path, &format!("log.damaged.{}", now()))?;
                drop(file);
                restart = Some((problem, aside));
            }
        }
    }
    let fresh = !existed || empty || restart.is_some();
    let mut log = match kept {
        Some(log) => log,
        None => LogFile::open(log_path, origin)?,
    };
    if fresh {
        let base = nv.map_or(0, |n| n.counter).to_string();
        let mut start = Event::new("audit.start", &[("base", &base)]);
        if let Some((problem, aside)) = &restart {
            let name = aside
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            start.fields.push(("why".into(), b"restart".to_vec()));
            start
                .fields
                .push(("problem".into(), problem.as_bytes().to_vec()));
            start.fields.push(("previous".into(), name.into_bytes()));
        } else {
            start.fields.push(("why".into(), b"new".to_vec()));
        }
        log.append(&start)?;
    }
    out.tampered = restart;
    out.carried = carry_over(pre_unlock, &mut log)?;
    for e in events {
        log.append(e)?;
    }
    out.records = log.records();
    to_anchor.extend_from_slice(&log.appended);
    drop(log);
    if let (Some(tcti), Some(_)) = (tcti, nv) {
        match anchor_digests(tcti, lag, &to_anchor) {
            Ok(()) => out.anchored_now = to_anchor.len() as u64,
            Err(e) => out.unanchored_because = Some(e.to_string()),
        }
    }
    Ok(out)
}

/// What [`check`] found in a log that may be kept.
struct Checked {
    /// Where its chain stands.
    chain: Chain,
    /// The TPM's counter is one behind its head.
    lag: bool,
    /// The body digests of its records the TPM does not hold yet.
    unanchored: Vec<anchor_audit::Hash>,
}

/// The check at unlock: the log's chain (one pass over `bytes`) and, given the TPM's state,
/// the anchor; or the first problem. A last line cut short (a power cut in an append) is
/// no sign of tampering: the log is checked without it, and the next record starts a line
/// of its own.
fn check(bytes: &[u8], nv: Option<&NvState>) -> Result<Checked, String> {
    let (v, _) = verify_for_append(bytes).map_err(|bad| bad.to_string())?;
    let chain = Chain::resume(v.records, v.head);
    let Some(nv) = nv else {
        return Ok(Checked {
            chain,
            lag: false,
            unanchored: Vec::new(),
        });
    };
    let anchor = anchor_of(&v, nv);
    let a = anchor_audit::match_anchor(v, &anchor).map_err(|p| p.to_string())?;
    let first = usize::try_from(a.verified.records - a.unanchored).unwrap_or(usize::MAX);
    Ok(Checked {
        chain,
        lag: a.counter_lag,
        unanchored: a.verified.digests.get(first..).unwrap_or_default().to_vec(),
    })
}

/// Extend and count each digest (after bumping a lagging counter).
pub fn anchor_digests(
    tcti: &str,
    lag: bool,
    digests: &[anchor_audit::Hash],
) -> Result<(), TpmError> {
    let mut raw = crate::sys::esys::RawEsys::open(tcti)?;
    if lag {
        nv::bump(&mut raw, Indices::default())?;
    }
    for d in digests {
        nv::advance(&mut raw, Indices::default(), d)?;
    }
    Ok(())
}

/// Move the pre-unlock log's records into `log`; returns how many. The pre-unlock log
/// is then replaced, atomically and under its writers' lock, by a symlink to `log`, so
/// every later record of bay0's (which names the pre-unlock path) lands in the vault.
/// A break in its chain is recorded, not hidden.
fn carry_over(pre_unlock: &Path, log: &mut LogFile) -> Result<u64, AuditError> {
    let io = |e| AuditError::Io(pre_unlock.to_path_buf(), e);
    // A symlink left by an earlier unlock of this boot points into the vault: nothing
    // to carry, and it is made again below.
    if std::fs::symlink_metadata(pre_unlock).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(pre_unlock).map_err(io)?;
    }
    if let Some(dir) = pre_unlock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AuditError::Io(dir.to_path_buf(), e))?;
    }
    let mut pre = anchor_sys::audit::open_locked(pre_unlock).map_err(io)?;
    regular(&pre).map_err(io)?;
    let mut bytes = Vec::new();
    pre.read_to_end(&mut bytes).map_err(io)?;
    let (good_len, problem) = match verify(&bytes) {
        Ok(_) => (bytes.len(), None),
        Err(bad) => (bad.offset, Some(bad.to_string())),
    };
    let good = bytes.get(..good_len).unwrap_or_default();
    let records: Vec<Record> = good
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| Record::parse(l).ok())
        .collect();
    if !bytes.is_empty() {
        let count = records.len().to_string();
        let from = pre_unlock.display().to_string();
        let mut summary = Event::new("audit.carry", &[("from", &from), ("records", &count)]);
        if let Some(p) = &problem {
            summary
                .fields
                .push(("problem".into(), p.as_bytes().to_vec()));
        }
        log.append(&summary)?;
        for r in &records {
            log.append(&Event::from_record(r))?;
        }
    }
    let link = pre_unlock.with_extension("log.link");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&log.path, &link).map_err(|e| AuditError::Io(link.clone(), e))?;
    std::fs::rename(&link, pre_unlock).map_err(io)?;
    drop(pre);
    Ok(records.len() as u64)
}

/// Where anchoring is serialised: one process at a time reads the TPM anchor and
/// advances it, so two never extend the same record twice.
pub fn anchor_lock_path(log_path: &Path) -> PathBuf {
    log_path.with_file_name("anchor.lock")
}

/// Take the anchoring lock for the log at `log_path` (waits for another anchoring
/// process, at most a minute).
pub fn anchor_lock(log_path: &Path) -> Result<File, AuditError> {
    let path = anchor_lock_path(log_path);
    let io = |e| AuditError::Io(path.clone(), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AuditError::Io(dir.to_path_buf(), e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    anchor_sys::audit::flock_within(&file, false, 60_000).map_err(io)?;
    Ok(file)
}

/// How much of a log's end the anchoring step reads first; four times more each time the
/// last anchored record is not in it.
pub const TAIL_WINDOW: u64 = 64 * 1024;

/// The records of a log not anchored yet, checked to chain from the anchored head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanchored {
    /// Records in the log (without a last line cut short).
    pub records: u64,
    /// The TPM's head is one record ahead of its counter: bump the counter first.
    pub lag: bool,
    /// The body digests to extend the head with, in order.
    pub digests: Vec<anchor_audit::Hash>,
    /// Where reading the log started (0: it was read, and verified, whole).
    pub read_from: u64,
}

/// The records of the log at `path` that the TPM anchor `nv` does not hold yet, read
/// under the writers' lock. Only the log's end is read and checked: the last anchored
/// record is found from the end ([`anchor_audit::locate_anchored`]: the whole,
/// self-consistent record whose hash is the TPM's head and whose number is the anchored
/// count), and every record after it must chain from it ([`anchor_audit::verify_after`];
/// a torn append is passed over, a last line cut short is left for later). What came
/// before it the TPM already binds: a change there is for `anchorctl audit verify` and
/// the check at unlock to find, and does not stop later records being anchored. When
/// the end cannot tell (no such record, or a break after it), the whole log is verified
/// against the anchor, as at unlock, and its first problem is the error.
pub fn unanchored(path: &Path, nv: &NvState) -> Result<Unanchored, AuditError> {
    use std::os::unix::fs::FileExt as _;
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    regular(&file).map_err(io)?;
    anchor_sys::audit::flock_within(&file, true, anchor_sys::audit::LOCK_WAIT_MS).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let read = |from: u64, to: u64| -> Result<Vec<u8>, AuditError> {
        let mut buf = vec![0u8; usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut buf, from).map_err(io)?;
        Ok(buf)
    };
    // The first record's `base`: the TPM counter's value when this log started.
    let first = read(0, len.min(MAX_RECORD as u64))?;
    let base = first
        .split(|&b| b == b'\n')
        .next()
        .filter(|_| first.contains(&b'\n'))
        .and_then(|l| Record::parse(l).ok())
        .filter(|r| r.seq == 1 && r.is_intact())
        .and_then(|r| {
            r.field("base")
                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
        });
    // No base (no `audit.start` first): the whole log is verified, as `anchor_of` does.
    let count = base.map_or(0, |b: u64| nv.counter.saturating_sub(b));
    let anchor = Anchor {
        count,
        head: nv.head,
    };
    if count > 0 {
        if let Some(found) = from_the_end(&read, len, &anchor)? {
            return Ok(found);
        }
    }
    let bytes = read(0, len)?;
    // A last line cut short (a torn append nobody wrote past yet) is not anchored. One
    // pass over the log: the anchor is compared with what it verified.
    let (v, _) =
        verify_for_append(&bytes).map_err(|b| AuditError::Broken(path.to_path_buf(), b))?;
    let anchor = anchor_of(&v, nv);
    let a = anchor_audit::match_anchor(v, &anchor)
        .map_err(|p| AuditError::Anchor(path.to_path_buf(), p))?;
    let v = a.verified;
    let first = usize::try_from(v.records - a.unanchored).unwrap_or(usize::MAX);
    Ok(Unanchored {
        records: v.records,
        lag: a.counter_lag,
        digests: v.digests.get(first..).unwrap_or_default().to_vec(),
        read_from: 0,
    })
}

/// [`unanchored`] from the log's end (`read(from, to)` reads its bytes), if that can tell.
fn from_the_end(
    read: &dyn Fn(u64, u64) -> Result<Vec<u8>, AuditError>,
    len: u64,
    anchor: &Anchor,
) -> Result<Option<Unanchored>, AuditError> {
    let mut window = TAIL_WINDOW;
    loop {
        let from = len.saturating_sub(window);
        let end = read(from, len)?;
        match anchor_audit::locate_anchored(&end, from == 0, anchor) {
            // A counter behind the head (a crash between the two TPM steps: rare) is
            // moved on only once the whole log verifies: the count comes from the first
            // record's `base`, which nothing here checks the rest of the chain against.
            anchor_audit::Located::At { lag: true, .. } => return Ok(None),
            anchor_audit::Located::At { offset, seq, lag } => {
                let rest = end.get(offset..).unwrap_or_default();
                let after = Chain::resume(seq, anchor.head);
                // A last line cut short (a torn append nobody wrote past yet) waits.
                let checked = anchor_audit::verify_after(after, rest).or_else(|bad| {
                    if bad.problem == anchor_audit::Problem::Incomplete {
                        anchor_audit::verify_after(
                            after,
                            rest.get(..bad.offset).unwrap_or_default(),
                        )
                    } else {
                        Err(bad)
                    }
                });
                return Ok(checked.ok().map(|v| Unanchored {
                    records: v.records,
                    lag,
                    digests: v.digests,
                    read_from: from,
                }));
            }
            anchor_audit::Located::Earlier if from > 0 => window = window.saturating_mul(4),
            _ => return Ok(None),
        }
    }
}
