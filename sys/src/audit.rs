// SPDX-License-Identifier: GPL-3.0-or-later
//! Appending to the audit log from bay0 (docs/AUDIT-LOG-FORMAT.md, "Who writes where").
//!
//! Every writer of the log (bay0 here, anchor-vault in its own crate) holds an exclusive
//! `flock` on the log file while it reads the chain's end and appends, so two writers
//! never fork the chain. bay0 always names the pre-unlock path (`/run/anchor/audit.log`);
//! when the vault opens, anchor-vault carries that file's records into /persist and
//! atomically replaces the file by a symlink to the persistent log. A writer that was
//! waiting for the lock on the old file sees it unlinked (`st_nlink == 0`) once it gets
//! the lock, and opens the path again, now the persistent log: no record falls between
//! the two files. The writer never waits more than [`LOCK_WAIT_MS`] for the lock (bay0 is
//! single-threaded): a lock held longer fails the append with `EWOULDBLOCK`.
//!
//! A long log is not read whole: the chain resumes from its last record, so an append
//! reads the last [`END_BYTES`] and falls back to the whole log only when its last line
//! is cut off or altered (anchor-audit `chain_after`). The log only grows (in /persist,
//! across boots); bay0's cost and memory per append stay the same.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Longest wait for another writer's lock.
pub const LOCK_WAIT_MS: u64 = 2000;
/// How often the lock is tried again meanwhile.
const LOCK_RETRY_MS: u64 = 5;
/// How much of a long log's end an append reads: two of the longest records, so the last
/// line and the newline before it always fall inside.
pub const END_BYTES: u64 = 2 * anchor_audit::MAX_RECORD as u64;

/// Takes `flock(LOCK_EX)` on `file` (or `LOCK_SH` when `shared`) without blocking:
/// `Ok(false)` if another open file description holds a conflicting lock.
pub fn try_flock(file: &File, shared: bool) -> std::io::Result<bool> {
    let op = if shared { libc::LOCK_SH } else { libc::LOCK_EX } | libc::LOCK_NB;
    loop {
        // SAFETY: flock on a descriptor `file` owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// [`try_flock`] again every few milliseconds for at most `wait_ms`.
pub fn flock_within(file: &File, shared: bool, wait_ms: u64) -> std::io::Result<()> {
    let mut waited = 0;
    while !try_flock(file, shared)? {
        if waited >= wait_ms {
            return Err(std::io::Error::from_raw_os_error(libc::EWOULDBLOCK));
        }
        std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
        waited += LOCK_RETRY_MS;
    }
    Ok(())
}

/// Opens the log at `path` (following a symlink; created 0600) and locks it, opening it
/// again if the file it first found was replaced while it waited.
pub fn open_locked(path: &Path) -> std::io::Result<File> {
    let mut attempts = 0;
    loop {
        let mut o = OpenOptions::new();
        let file = o
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        flock_within(&file, false, LOCK_WAIT_MS)?;
        if file.metadata()?.nlink() > 0 {
            return Ok(file);
        }
        attempts += 1;
        if attempts >= 8 {
            return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
        }
    }
}

/// What an append derives its record from: the log's last whole lines when its last line
/// is an intact record (the chain resumes from it), else the whole log.
fn contents(file: &mut File) -> std::io::Result<Vec<u8>> {
    let from = file.metadata()?.len().saturating_sub(END_BYTES);
    let mut end = Vec::new();
    if from > 0 {
        file.seek(SeekFrom::Start(from))?;
        file.read_to_end(&mut end)?;
        // The first line read is most likely cut: whole lines only.
        let cut = end
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end.len(), |nl| nl + 1);
        end.drain(..cut);
        if anchor_audit::chain::resumes_from_end(&end) {
            return Ok(end);
        }
        file.seek(SeekFrom::Start(0))?;
        end.clear();
    }
    file.read_to_end(&mut end)?;
    Ok(end)
}

/// Appends to the audit log at `path` what `derive` makes of its current contents (one
/// write, then fsync), under the writers' lock; `derive` returning `None` appends
/// nothing. `derive` is given the log's last whole lines when its last line is an intact
/// record, else the whole log: enough for anchor-audit's `chain_after` either way. After
/// a cut-off last line, what it makes starts on a new line. Then, if `anchor` is given (a
/// helper's argv), starts it with stdin and stdout on /dev/null to anchor the record in
/// the TPM; it is not waited for here (the caller reaps its children).
pub fn append(
    path: impl AsRef<Path>,
    derive: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    anchor: Option<&[&str]>,
) -> std::io::Result<()> {
    let mut file = open_locked(path.as_ref())?;
    let old = contents(&mut file)?;
    if let Some(mut new) = derive(&old) {
        // After a cut-off last line (a write the power cut short) the record starts a line
        // of its own: the damage stays a line of its own for verification to name.
        if old.last().is_some_and(|&b| b != b'\n') {
            new.insert(0, b'\n');
        }
        file.write_all(&new)?;
        file.sync_data()?;
    }
    drop(file);
    let Some((helper, args)) = anchor.and_then(<[&str]>::split_first) else {
        return Ok(());
    };
    let mut cmd = std::process::Command::new(helper);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    crate::clean_signals_on_exec(&mut cmd);
    cmd.spawn().map(drop)
}

/// Runs `argv` (the anchor helper) to its end, waiting at most `wait_ms` before killing
/// it: the last records' anchoring at shutdown, when nothing else is waited for. Its
/// exit status, or `TimedOut`.
pub fn run_within(argv: &[&str], wait_ms: u64) -> std::io::Result<std::process::ExitStatus> {
    let (helper, args) = argv.split_first().ok_or(std::io::ErrorKind::InvalidInput)?;
    let mut cmd = std::process::Command::new(helper);
    cmd.args(args).stdin(std::process::Stdio::null());
    crate::clean_signals_on_exec(&mut cmd);
    let mut child = cmd.spawn()?;
    let mut waited = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if waited >= wait_ms {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
        waited += LOCK_RETRY_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("anchor-sys-audit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn appends_what_derive_makes_of_the_contents() {
        let dir = tmp("derive");
        let log = dir.join("audit.log");
        append(
            &log,
            |old| Some([old, b"one\n"].concat()[old.len()..].to_vec()),
            None,
        )
        .unwrap();
        append(
            &log,
            |old| Some(format!("{}\n", old.len()).into_bytes()),
            None,
        )
        .unwrap();
        append(&log, |_| None, None).unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"one\n4\n");
        let mode = std::fs::metadata(&log).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Bytes this thread has read through read(2) and friends so far.
    fn bytes_read() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        let line = io.lines().find(|l| l.starts_with("rchar:")).unwrap();
        line["rchar:".len()..].trim().parse().unwrap()
    }

    fn room_opened(log: &[u8]) -> Option<Vec<u8>> {
        anchor_audit::room_line(log, "web", "opened", None, &[])
    }

    /// The last record of the log at `path`.
    fn last_record(path: &Path) -> anchor_audit::Record {
        last_record_of(&std::fs::read(path).unwrap())
    }

    /// The log only grows (in /persist, across boots): an append reads its end, never
    /// the whole of it. Here 64 MiB of NUL bytes (a hole) come before three records.
    #[test]
    fn an_append_reads_only_the_end_of_a_long_log() {
        let dir = tmp("long");
        let log = dir.join("audit.log");
        let mut records = Vec::new();
        for _ in 0..3 {
            let next = room_opened(&records).unwrap();
            records.extend_from_slice(&next);
        }
        let third = last_record_of(&records);
        let file = File::create(&log).unwrap();
        file.set_len(64 << 20).unwrap();
        drop(file);
        let mut file = OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(b"\n").unwrap();
        file.write_all(&records).unwrap();
        drop(file);
        let before = bytes_read();
        append(&log, room_opened, None).unwrap();
        // The end of the log, and this thread's reads of /proc for the count.
        let read = bytes_read() - before;
        assert!(read < 2 * END_BYTES, "read {read} bytes of a 64 MiB log");
        let fourth = last_record(&log);
        assert_eq!((fourth.seq, fourth.prev), (4, third.hash));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A cut-off last line: the end of the log is not enough, the whole log is read, the
    /// record chained after the last good one (as anchor-audit `chain_after` says) and
    /// written as a line of its own, after the cut-off one.
    #[test]
    fn a_cut_off_last_line_makes_the_append_read_the_whole_log() {
        let dir = tmp("cut");
        let log = dir.join("audit.log");
        let mut records = Vec::new();
        while records.len() as u64 <= 3 * END_BYTES {
            let next = room_opened(&records).unwrap();
            records.extend_from_slice(&next);
        }
        let good = last_record_of(&records);
        let cut = room_opened(&records).unwrap();
        records.extend_from_slice(&cut[..cut.len() / 2]);
        std::fs::write(&log, &records).unwrap();
        let before = bytes_read();
        append(&log, room_opened, None).unwrap();
        assert!(bytes_read() - before >= records.len() as u64);
        let next = last_record(&log);
        assert_eq!((next.seq, next.prev), (good.seq + 1, good.hash));
        let written = std::fs::read(&log).unwrap();
        assert_eq!(written[..records.len()], records[..]);
        assert_eq!(written[records.len()], b'\n');
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn last_record_of(log: &[u8]) -> anchor_audit::Record {
        let body = log.strip_suffix(b"\n").unwrap();
        let start = body
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |nl| nl + 1);
        anchor_audit::Record::parse(&body[start..]).unwrap()
    }

    #[test]
    fn a_held_lock_fails_the_append_instead_of_waiting_forever() {
        let dir = tmp("held");
        let log = dir.join("audit.log");
        let holder = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        assert!(try_flock(&holder, false).unwrap());
        let e = append(&log, |_| Some(b"x\n".to_vec()), None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EWOULDBLOCK));
        drop(holder);
        append(&log, |_| Some(b"x\n".to_vec()), None).unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"x\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The carry-over: a writer waiting on the old file while it is replaced by a symlink
    /// appends to the symlink's target, never to the unlinked file.
    #[test]
    fn a_writer_waiting_on_a_replaced_file_appends_to_its_replacement() {
        let dir = tmp("replaced");
        let pre = dir.join("pre.log");
        let persistent = dir.join("persistent.log");
        std::fs::write(&pre, b"old\n").unwrap();
        let carrier = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&pre)
            .unwrap();
        assert!(try_flock(&carrier, false).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let pre = pre.clone();
            std::thread::spawn(move || {
                tx.send(()).unwrap();
                append(
                    &pre,
                    |old| Some(format!("after {}\n", old.len()).into_bytes()),
                    None,
                )
            })
        };
        rx.recv().unwrap();
        // Whether the writer opened the old file before the swap or not, its record must
        // land in the persistent log.
        std::fs::write(&persistent, b"carried old\n").unwrap();
        let link = dir.join("pre.log.new");
        std::os::unix::fs::symlink(&persistent, &link).unwrap();
        std::fs::rename(&link, &pre).unwrap();
        drop(carrier);
        writer.join().unwrap().unwrap();
        assert_eq!(
            std::fs::read(&persistent).unwrap(),
            b"carried old\nafter 12\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_anchor_helper_is_started_after_the_append() {
        let dir = tmp("helper");
        let log = dir.join("audit.log");
        let seen = dir.join("seen");
        let script = format!("cat {} > {}", log.display(), seen.display());
        let argv = ["/bin/sh", "-c", script.as_str()];
        append(&log, |_| Some(b"rec\n".to_vec()), Some(&argv)).unwrap();
        for _ in 0..2000 {
            if std::fs::read(&seen).is_ok_and(|s| s == b"rec\n") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(std::fs::read(&seen).unwrap(), b"rec\n");
        let e = append(&log, |_| None, Some(&["/nonexistent/anchor-vault"])).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_helper_run_within_a_deadline_is_waited_for_or_killed() {
        let ok = run_within(&["/bin/sh", "-c", "exit 3"], 10_000).unwrap();
        assert_eq!(ok.code(), Some(3));
        let e = run_within(&["/bin/sleep", "30"], 50).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(run_within(&[], 10).is_err());
    }
}
