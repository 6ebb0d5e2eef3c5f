// SPDX-License-Identifier: GPL-3.0-or-later
//! What the tests of several crates share (a dev-dependency of anchorctl, anchor-update,
//! anchor-vault, bay0 and the escape suite; never linked into a product binary):
//! - [`undocumented`]: the options and arguments a `--help` lists with no description;
//! - [`Fifo`]: a fifo at a path, fed junk without ever blocking, for the tests that name a
//!   fifo where a file is wanted (the code must refuse it, not wait on it or read it);
//! - [`limited`]: a command run under a resource limit (a write cut short by a full disk,
//!   an allocation refused), set between fork and exec;
//! - [`while_stopped`]: a process held stopped while a test sets things up for it (bay0
//!   reading several control requests in one turn of its loop).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The options and arguments `bin ARGS -h` lists without a description (clap's layout:
/// an `Options:` or `Arguments:` heading, then one indented entry a line, its text after
/// two spaces; an entry whose text is empty or only `[default: ...]` is undocumented).
pub fn undocumented(bin: &str, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(bin)
        .args(args)
        .arg("-h")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{bin} {args:?} -h");
    let help = String::from_utf8(out.stdout).unwrap();
    let mut listing = false;
    let mut bad = Vec::new();
    for line in help.lines() {
        if line == "Options:" || line == "Arguments:" {
            listing = true;
        } else if line.is_empty() {
            listing = false;
        } else if listing && line.starts_with("  ") {
            let item = line.trim_start();
            let about = item.split_once("  ").map_or("", |(_, a)| a.trim());
            if about.is_empty() || about.starts_with('[') {
                bad.push(format!("{args:?}: {item}"));
            }
        }
    }
    bad
}

/// `cmd`, to be run with `resource` (`libc::RLIMIT_FSIZE`, `libc::RLIMIT_AS`, ...)
/// limited to `limit`. Under RLIMIT_FSIZE a write past the limit fails with EFBIG instead
/// of killing the process (SIGXFSZ is ignored), as a full disk makes it fail.
pub fn limited(
    cmd: &mut std::process::Command,
    resource: libc::__rlimit_resource_t,
    limit: u64,
) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    let set = move || {
        if resource == libc::RLIMIT_FSIZE {
            // SAFETY: setting a signal to SIG_IGN is async-signal-safe.
            unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        }
        let rl = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: setrlimit reads a valid rlimit struct; it is async-signal-safe.
        if unsafe { libc::setrlimit(resource, &rl) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the closure only calls signal and setrlimit, safe between fork and exec.
    unsafe { cmd.pre_exec(set) }
}

/// A fifo, and a thread that writes `junk` to it each time a reader has it open, so that
/// code which (wrongly) opens and reads a fifo returns instead of blocking, and a test of
/// that code fails instead of hanging. Ended (and the thread joined) on drop.
///
/// The writer opens and writes with O_NONBLOCK. A writer waiting in open(2) would count
/// as a writer and keep the fifo's buffer alive between readers, until it filled; one
/// blocked in write(2) on the full buffer would then never return while the test holds a
/// reader that does not read (a `make test` hung on exactly that). A non-blocking open
/// still pairs with a reader waiting in a blocking open (it counts as a reader).
#[derive(Debug)]
pub struct Fifo {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Fifo {
    /// Makes a fifo at `path` (mode 0600) and starts feeding it `junk`.
    pub fn fed(path: &Path, junk: &'static [u8]) -> Fifo {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "{path:?}");
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (path.to_path_buf(), stop.clone());
        let writer = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&p)
                {
                    Ok(mut f) => {
                        let _ = f.write(junk);
                    }
                    Err(_) => std::thread::yield_now(),
                }
            }
        });
        Fifo {
            path: path.to_path_buf(),
            stop,
            writer: Some(writer),
        }
    }

    /// The fifo's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fifo's path as text (the tests pass it on command lines).
    pub fn as_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Runs `f` while process `pid` is stopped: SIGSTOP, then wait (up to 10 s) until the
/// kernel shows it stopped (`T` in /proc/PID/stat: the signal is taken asynchronously),
/// then `f`, then SIGCONT. From outside its PID namespace SIGSTOP reaches even a
/// namespace's PID 1.
pub fn while_stopped<T>(pid: i32, f: impl FnOnce() -> T) -> T {
    // SAFETY: kill has no memory arguments.
    let kill = |sig| assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid} {sig}");
    kill(libc::SIGSTOP);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .contains(") T ")
    {
        assert!(
            std::time::Instant::now() < end,
            "process {pid} did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = f();
    kill(libc::SIGCONT);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A blocking reader gets the junk and then EOF; a reader that never reads, held
    /// while the feeder ends, does not keep it from ending (it never blocks).
    #[test]
    fn a_fed_fifo_feeds_a_blocking_reader_and_ends_beside_an_idle_one() {
        let d = std::env::temp_dir().join(format!("anchor-testkit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let fifo = Fifo::fed(&d.join("f"), b"junk");
        let mut got = Vec::new();
        std::fs::File::open(fifo.path())
            .unwrap()
            .take(4)
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, b"junk");
        let idle = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo.path())
            .unwrap();
        // Let the writer fill the buffer the idle reader keeps alive.
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(fifo);
        drop(idle);
        let _ = std::fs::remove_dir_all(&d);
    }
}
