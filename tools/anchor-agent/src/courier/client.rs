// SPDX-License-Identifier: GPL-3.0-or-later
//! `courier send FILE --to ROOM`: the client in every room image (the agent binary called
//! as `courier`). It opens FILE itself (never following a symbolic link), passes the open
//! file to the room's agent, shows progress for large files, and ends with one line
//! saying what happened: delivered, refused (reason), timed out, failed (reason).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// `courier --help`.
pub const USAGE: &str = "\
usage: courier send FILE --to ROOM

Asks the anchor to carry FILE (a regular file) to room ROOM. The anchor checks both rooms'
policies, then asks you on its own screen: press Y there to send it, N or Esc to refuse;
no answer in time refuses it. The file arrives in ROOM's ~/Incoming under its name (or
NAME (1).EXT if that exists). Nothing else ever crosses between rooms.

Exit status: 0 delivered, 1 refused, 2 usage, 3 timed out, 4 failed.
";

/// Exit statuses.
pub const DELIVERED: u8 = 0;
pub const REFUSED: u8 = 1;
pub const USAGE_ERROR: u8 = 2;
pub const TIMED_OUT: u8 = 3;
pub const FAILED: u8 = 4;

fn mib(n: u64) -> String {
    format!("{}.{} MiB", n >> 20, ((n & ((1 << 20) - 1)) * 10) >> 20)
}

/// Runs the command line (without argv\[0\]) against the agent at `socket`, printing on
/// `out` (results) and `err` (progress, errors); the exit status.
pub fn run(args: &[OsString], socket: &Path, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let words: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let (file, to) = match words.as_slice() {
        [b"send", f, b"--to", r] | [b"send", b"--to", r, f] => {
            (Path::new(std::ffi::OsStr::from_bytes(f)), *r)
        }
        [b"--help" | b"-h" | b"help"] => {
            let _ = out.write_all(USAGE.as_bytes());
            return DELIVERED;
        }
        _ => {
            let _ = err.write_all(format!("courier: wrong arguments\n{USAGE}").as_bytes());
            return USAGE_ERROR;
        }
    };
    let shown = file.display().to_string();
    let say = |w: &mut dyn Write, s: String| {
        let _ = w.write_all(format!("courier: {s}\n").as_bytes());
    };
    let Some(name) = file.file_name() else {
        say(err, format!("refused: {shown} has no file name"));
        return REFUSED;
    };
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file);
    let f = match opened {
        Ok(f) => f,
        Err(e) => {
            let why = match e.raw_os_error() {
                Some(libc::ELOOP) => {
                    "it is a symbolic link: send the file it points to".to_string()
                }
                Some(libc::ENXIO) => {
                    "it is a socket: the courier carries regular files only".to_string()
                }
                _ => e.to_string(),
            };
            say(err, format!("refused: {shown}: {why}"));
            return REFUSED;
        }
    };
    let conn = match UnixStream::connect(socket) {
        Ok(c) => c,
        Err(e) => {
            say(
                err,
                format!(
                    "failed: the room's agent does not answer at {}: {e}",
                    socket.display()
                ),
            );
            return FAILED;
        }
    };
    let mut msg = b"send\0".to_vec();
    msg.extend_from_slice(to);
    msg.push(0);
    msg.extend_from_slice(name.as_bytes());
    if let Err(e) = super::sys::send_with_fd(&conn, &msg, f.as_raw_fd()) {
        say(
            err,
            format!("failed: sending the request to the agent: {e}"),
        );
        return FAILED;
    }
    drop(f);
    let to = String::from_utf8_lossy(to).into_owned();
    let reader = match conn.try_clone() {
        Ok(c) => BufReader::new(c),
        Err(e) => {
            say(err, format!("failed: {e}"));
            return FAILED;
        }
    };
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let big = |total: u64| total >= 1 << 20;
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let mut nums = rest
            .split(' ')
            .skip(1)
            .filter_map(|n| n.parse::<u64>().ok());
        let (done, total) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
        match word {
            "progress" if rest.starts_with("waiting") => say(
                err,
                format!("waiting for approval on the anchor's screen (send {shown} to {to})"),
            ),
            "progress" if big(total) => {
                let what = rest.split(' ').next().unwrap_or("");
                let pct = done.saturating_mul(100) / total.max(1);
                say(
                    err,
                    format!("{what} {shown}: {pct}% ({} of {})", mib(done), mib(total)),
                );
            }
            "progress" => {}
            "delivered" => {
                say(
                    out,
                    format!("delivered {shown} to room {to} as ~/Incoming/{rest}"),
                );
                return DELIVERED;
            }
            "refused" => {
                say(out, format!("refused: {rest}"));
                return REFUSED;
            }
            "timed-out" => {
                say(out, format!("timed out: {rest}"));
                return TIMED_OUT;
            }
            _ => {
                say(out, format!("failed: {rest}"));
                return FAILED;
            }
        }
    }
    say(
        out,
        "failed: the room's agent closed the connection without an answer".into(),
    );
    FAILED
}
