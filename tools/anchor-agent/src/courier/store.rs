// SPDX-License-Identifier: GPL-3.0-or-later
//! The destination's side of a transfer: an approved item is written into ~/Incoming as
//! an unnamed file (O_TMPFILE), fsync'ed, checked against the approved size and SHA-256,
//! and only then linked in under its name -- or, when that name exists (whatever it is:
//! a file, a hard link, a symbolic link), under `NAME (1).EXT`, `NAME (2).EXT`, ...:
//! nothing is ever overwritten or written through a link. Every path step is opened
//! relative to the one before without following a symbolic link, so a room that turns
//! ~/Incoming into a link (before or during the transfer) gets a refusal, never a write
//! elsewhere. A transfer that fails, or whose process dies, leaves nothing: the unnamed
//! file goes with its descriptor.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anchor_proto::courier::{Data, Digest, Manifest, RequestError, Token, MAX_SUFFIX};
use anchor_proto::umbilical::{Frames, PAYLOAD_MAX};
use sha2::{Digest as _, Sha256};

use super::sys;

/// Where items arrive: `dir/Incoming`, owned by `owner` (the room's user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub dir: PathBuf,
    /// uid and gid the stored files and ~/Incoming get; `None` keeps the agent's own.
    pub owner: Option<(u32, u32)>,
}

/// The directory items arrive in, under [`Home::dir`].
pub const INCOMING: &str = "Incoming";
/// Bytes read per step.
const CHUNK: usize = 256 * 1024;
/// Transfer ids remembered.
const SEEN_MAX: usize = 64;

/// Why an item was not stored (the text goes back to the courier, and from there to
/// the sender and the audit log).
#[derive(Debug)]
pub enum StoreError {
    Request(RequestError),
    /// This transfer id was delivered (or tried) before.
    Repeated,
    /// ~/Incoming is a symbolic link.
    IncomingIsLink,
    /// ~/Incoming is something else than a directory (a file, a FIFO, ...).
    IncomingNotDir,
    /// ~/Incoming could not be prepared.
    Incoming(io::Error),
    NoSpace {
        free: u64,
        need: u64,
    },
    /// The stream ended before the item did.
    Short {
        got: u64,
        size: u64,
    },
    /// No commit after the item (the source's stream did not end as declared).
    NoCommit,
    /// The bytes are not the approved ones.
    Mismatch,
    Io(&'static str, io::Error),
    /// Every candidate name exists.
    NoFreeName,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Request(e) => write!(f, "refused: {e}"),
            StoreError::Repeated => f.write_str("refused: this transfer was delivered before"),
            StoreError::IncomingIsLink => {
                f.write_str("~/Incoming is a symbolic link; nothing is written through it")
            }
            StoreError::IncomingNotDir => {
                f.write_str("~/Incoming is not a directory; nothing is written there")
            }
            StoreError::Incoming(e) => write!(f, "~/Incoming: {e}"),
            StoreError::NoSpace { free, need } => write!(
                f,
                "not enough space in ~/Incoming ({free} bytes free, {need} needed)"
            ),
            StoreError::Short { got, size } => {
                write!(
                    f,
                    "the item ended after {got} of {size} bytes; nothing was stored"
                )
            }
            StoreError::NoCommit => {
                f.write_str("the transfer was not completed; nothing was stored")
            }
            StoreError::Mismatch => f.write_str(
                "the bytes received do not match the approved SHA-256; nothing was stored",
            ),
            StoreError::Io(what, e) => write!(f, "{what}: {e}; nothing was stored"),
            StoreError::NoFreeName => write!(
                f,
                "the name and {MAX_SUFFIX} numbered variants of it all exist in ~/Incoming"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// Transfer ids seen lately: each is accepted once.
#[derive(Debug, Default)]
pub struct Seen(VecDeque<Token>);

impl Seen {
    /// Nothing seen yet.
    pub const fn new() -> Seen {
        Seen(VecDeque::new())
    }

    /// Records `id`; false if it was there already.
    pub fn first_time(&mut self, id: &Token) -> bool {
        if self.0.contains(id) {
            return false;
        }
        if self.0.len() >= SEEN_MAX {
            self.0.pop_front();
        }
        self.0.push_back(*id);
        true
    }
}

pub use anchor_proto::courier::candidate;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Opens ~/Incoming (creating it for the owner), refusing a symbolic link at each step.
fn incoming(home: &Home) -> Result<OwnedFd, StoreError> {
    let dir = CString::new(home.dir.as_os_str().as_bytes())
        .map_err(|_| StoreError::Incoming(io::Error::from_raw_os_error(libc::EINVAL)))?;
    let home_fd = sys::open_dir(None, &dir).map_err(StoreError::Incoming)?;
    let name = cstr(INCOMING).map_err(StoreError::Incoming)?;
    let created = sys::mkdir_at(home_fd.as_raw_fd(), &name, 0o700).map_err(StoreError::Incoming)?;
    // O_DIRECTORY | O_NOFOLLOW fails alike (ENOTDIR, or ELOOP) on a link and on a file:
    // what is there says which.
    let fd = sys::open_dir(Some(home_fd.as_raw_fd()), &name).map_err(|e| {
        match (
            e.raw_os_error(),
            sys::is_symlink_at(home_fd.as_raw_fd(), &name),
        ) {
            (Some(libc::ELOOP | libc::ENOTDIR), true) => StoreError::IncomingIsLink,
            (Some(libc::ENOTDIR), false) => StoreError::IncomingNotDir,
            _ => StoreError::Incoming(e),
        }
    })?;
    if let (true, Some((uid, gid))) = (created, home.owner) {
        std::os::unix::fs::fchown(&fd, Some(uid), Some(gid)).map_err(StoreError::Incoming)?;
    }
    Ok(fd)
}

/// Receives the item `m` announced (its raw bytes follow in `stream`, after what `dec`
/// holds already), then waits for the commit. Returns the name it was stored under.
pub fn receive<S: Read>(
    stream: &mut S,
    dec: &mut Frames<Data>,
    m: &Manifest,
    home: &Home,
    first_time: &mut dyn FnMut(&Token) -> bool,
) -> Result<String, StoreError> {
    let (_, name) = m.check().map_err(StoreError::Request)?;
    if !first_time(&m.token) {
        return Err(StoreError::Repeated);
    }
    let dir = incoming(home)?;
    let free = sys::free_bytes(dir.as_raw_fd()).map_err(StoreError::Incoming)?;
    if free < m.size {
        return Err(StoreError::NoSpace { free, need: m.size });
    }
    let fd = sys::tmpfile(dir.as_raw_fd(), 0o600)
        .map_err(|e| StoreError::Io("creating the file in ~/Incoming", e))?;
    let mut file = File::from(fd);
    let digest = copy_hashing(stream, dec, &mut file, m.size)?;
    let mut payload = [0u8; PAYLOAD_MAX];
    match dec.read_from(stream, &mut payload) {
        Ok(Some((Data::Commit, 0))) => {}
        _ => return Err(StoreError::NoCommit),
    }
    file.sync_all()
        .map_err(|e| StoreError::Io("writing the file to storage", e))?;
    if digest != m.sha256 {
        return Err(StoreError::Mismatch);
    }
    if let Some((uid, gid)) = home.owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| StoreError::Io("giving the file to the room's user", e))?;
    }
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| StoreError::Io("setting the file's mode", e))?;
    for n in 0..=MAX_SUFFIX {
        let try_name = candidate(name, n);
        let c = cstr(&try_name).map_err(|e| StoreError::Io("naming the file", e))?;
        match sys::link_tmpfile(file.as_raw_fd(), dir.as_raw_fd(), &c) {
            Ok(()) => return make_durable(&file, File::from(dir), try_name, &c),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(StoreError::Io(
                    "~/Incoming was removed during the transfer",
                    e,
                ))
            }
            Err(e) => return Err(StoreError::Io("naming the file", e)),
        }
    }
    Err(StoreError::NoFreeName)
}

/// Makes the name just linked in (`name`, `c` in `dir`) durable: fsyncs ~/Incoming. When
/// that fails, the link is undone and the transfer fails: a failed transfer leaves nothing
/// in ~/Incoming, as at every other step. Only when the name cannot be taken back either
/// (the file system went read-only after the error, or something else stands under the
/// name now) is the item reported delivered: it is there, under that name.
fn make_durable(file: &File, dir: File, name: String, c: &CStr) -> Result<String, StoreError> {
    let Err(e) = sync_dir(&dir) else {
        return Ok(name);
    };
    match unlink_if_same(&dir, c, file) {
        Ok(()) => Err(StoreError::Io("writing ~/Incoming to storage", e)),
        Err(_) => Ok(name),
    }
}

#[cfg(not(test))]
fn sync_dir(dir: &File) -> io::Result<()> {
    dir.sync_all()
}

#[cfg(not(test))]
fn unlink_if_same(dir: &File, name: &CStr, file: &File) -> io::Result<()> {
    sys::unlink_if_same(dir.as_raw_fd(), name, file.as_raw_fd())
}

/// The tests' seam: the two steps above fail with an errno a test chose.
#[cfg(test)]
fn sync_dir(dir: &File) -> io::Result<()> {
    match tests::FAIL_DIR_SYNC.with(std::cell::Cell::get) {
        Some(errno) => Err(io::Error::from_raw_os_error(errno)),
        None => dir.sync_all(),
    }
}

#[cfg(test)]
fn unlink_if_same(dir: &File, name: &CStr, file: &File) -> io::Result<()> {
    match tests::FAIL_UNLINK.with(std::cell::Cell::get) {
        Some(errno) => Err(io::Error::from_raw_os_error(errno)),
        None => sys::unlink_if_same(dir.as_raw_fd(), name, file.as_raw_fd()),
    }
}

/// Writes exactly `size` bytes from `stream` into `out`, hashing them.
fn copy_hashing<S: Read, W: Write>(
    stream: &mut S,
    dec: &mut Frames<Data>,
    out: &mut W,
    size: u64,
) -> Result<Digest, StoreError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut got: u64 = 0;
    while got < size {
        let want = usize::try_from(size - got).unwrap_or(CHUNK).min(CHUNK);
        let room = buf.get_mut(..want).unwrap_or_default();
        let n = match dec.take_raw(room) {
            0 => match stream.read(room) {
                Ok(0) => return Err(StoreError::Short { got, size }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::Io("receiving the item", e)),
            },
            n => n,
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        out.write_all(chunk)
            .map_err(|e| StoreError::Io("writing the file", e))?;
        got += n as u64;
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// The errno fsync of ~/Incoming fails with (none: it runs).
        pub(super) static FAIL_DIR_SYNC: Cell<Option<i32>> = const { Cell::new(None) };
        /// The errno taking a name back fails with (none: it runs).
        pub(super) static FAIL_UNLINK: Cell<Option<i32>> = const { Cell::new(None) };
    }

    /// What a test home's ~/Incoming holds: names and contents.
    fn incoming_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<_> = std::fs::read_dir(dir.join(INCOMING))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        all.sort();
        all
    }

    /// An fsync of ~/Incoming that fails after the file was linked in under its name made
    /// the transfer fail ("nothing was stored") while the file stood in ~/Incoming under
    /// that name. Now the name is taken back: the report and ~/Incoming agree. When it
    /// cannot be taken back, the file is there, and the item is reported delivered.
    #[test]
    fn a_failed_directory_sync_leaves_what_the_report_says() {
        let dir = std::env::temp_dir().join(format!("courier-dirsync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(INCOMING)).unwrap();
        let home = Home {
            dir: dir.clone(),
            owner: None,
        };
        let body = b"the report";
        let deliver = |id: u8| {
            let m =
                Manifest::new([id; 16], "web", b"r.txt", 10, Sha256::digest(body).into()).unwrap();
            let mut stream = body.to_vec();
            stream.extend_from_slice(
                &anchor_proto::umbilical::encode_vec(Data::Commit, &[]).unwrap(),
            );
            let mut dec = Frames::<Data>::default();
            receive(&mut &stream[..], &mut dec, &m, &home, &mut |_| true)
        };
        FAIL_DIR_SYNC.with(|f| f.set(Some(libc::EIO)));
        let e = deliver(1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "writing ~/Incoming to storage: Input/output error (os error 5); nothing was stored"
        );
        assert_eq!(incoming_files(&dir), vec![]);
        // The name cannot be taken back: the item is there, and reported delivered.
        FAIL_UNLINK.with(|f| f.set(Some(libc::EROFS)));
        assert_eq!(deliver(2).unwrap(), "r.txt");
        assert_eq!(incoming_files(&dir), vec![("r.txt".into(), body.to_vec())]);
        FAIL_DIR_SYNC.with(|f| f.set(None));
        FAIL_UNLINK.with(|f| f.set(None));
        assert_eq!(deliver(3).unwrap(), "r (1).txt");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn candidates_keep_the_extension_and_never_repeat() {
        assert_eq!(candidate("report.pdf", 0), "report.pdf");
        assert_eq!(candidate("report.pdf", 1), "report (1).pdf");
        assert_eq!(candidate(".bashrc", 2), ".bashrc (2)");
        assert_eq!(candidate("noext", 3), "noext (3)");
        assert_eq!(candidate("a.tar.gz", 1), "a.tar (1).gz");
        let all: std::collections::BTreeSet<String> =
            (0..=MAX_SUFFIX).map(|n| candidate("x.y", n)).collect();
        assert_eq!(all.len(), MAX_SUFFIX as usize + 1);
        let long = "x".repeat(anchor_proto::courier::NAME_MAX);
        assert!(candidate(&long, MAX_SUFFIX).len() <= 255);
    }

    /// A file where ~/Incoming should be is not a directory, and said so: it was reported
    /// as "~/Incoming is a symbolic link" (open with O_DIRECTORY | O_NOFOLLOW fails with
    /// ENOTDIR on both). A link is still reported as a link; neither is written to.
    #[test]
    fn a_file_in_place_of_incoming_is_not_called_a_link() {
        let dir = std::env::temp_dir().join(format!("courier-notdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let home = Home {
            dir: dir.clone(),
            owner: None,
        };
        let m = Manifest::new([3; 16], "web", b"f", 0, Sha256::digest(b"").into()).unwrap();
        let receive_into = |home: &Home| {
            let mut dec = Frames::<Data>::default();
            receive(&mut &b""[..], &mut dec, &m, home, &mut |_| true)
        };
        std::fs::write(dir.join(INCOMING), b"mine").unwrap();
        let e = receive_into(&home).unwrap_err();
        assert_eq!(
            e.to_string(),
            "~/Incoming is not a directory; nothing is written there"
        );
        assert_eq!(std::fs::read(dir.join(INCOMING)).unwrap(), b"mine");
        std::fs::remove_file(dir.join(INCOMING)).unwrap();
        std::fs::create_dir(dir.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join(INCOMING)).unwrap();
        let e = receive_into(&home).unwrap_err();
        assert!(matches!(e, StoreError::IncomingIsLink), "{e}");
        assert_eq!(std::fs::read_dir(dir.join("elsewhere")).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_id_is_accepted_once() {
        let mut s = Seen::default();
        assert!(s.first_time(&[1; 16]));
        assert!(!s.first_time(&[1; 16]));
        for i in 0..SEEN_MAX as u8 {
            s.first_time(&[i + 2; 16]);
        }
        assert_eq!(s.0.len(), SEEN_MAX);
    }
}
