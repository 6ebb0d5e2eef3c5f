// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchor-courier-test-room`: stands in for a room in bay0's hosted-mode courier tests
//! (bay0/tests/courier.rs), the way anchor-jail-probe does in its room tests. Started by
//! the jail in anchor-vmm's place, it connects to the umbilical (/run/vsock_1024),
//! reports ready, and then speaks for the room's agent on command from its console:
//!
//! - `raw HEX [COUNT]`: writes these bytes (a whole frame, or garbage) COUNT times (1 by
//!   default), in one write;
//! - `fork`: a child process takes the console commands over (this process reads them no
//!   more): it holds the umbilical too, and is not stopped when bay0 stops this one (a
//!   room set aside by a reset, whose other processes still run);
//!
//! A room whose name starts with `cq-held` does not report ready by itself (the test
//! sends the `Ready` frame with `raw`, alone or with other frames in the same write).
//!
//! and prints every answer bay0 sends as one console line, `answer OUTCOME TOKEN TEXT`
//! (`answer malformed` for one it cannot read), and exits when bay0 asks the room to power
//! off. Test-only: never in a room image or the initramfs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use anchor_proto::courier::{hex, unhex, Answer};
use anchor_proto::umbilical::{encode_vec, Decoder, Kind, PAYLOAD_MAX};

fn say(line: &str) {
    let _ = std::io::stdout().write_all(format!("{line}\r\n").as_bytes());
}

fn main() {
    let Ok(mut umb) = UnixStream::connect("/run/vsock_1024") else {
        say("test room: no umbilical");
        std::process::exit(3);
    };
    // The kernel command line anchor-vmm would get names the room.
    let held = std::env::args().any(|a| a.split(' ').any(|w| w.starts_with("anchor.room=cq-held")));
    if held {
        say("test room: held");
    } else {
        let _ = umb.write_all(&encode_vec(Kind::Ready, &[]).unwrap_or_default());
        say("test room: ready");
    }
    let Ok(mut reader) = umb.try_clone() else {
        std::process::exit(3);
    };
    std::thread::spawn(move || {
        let mut dec = Decoder::default();
        let mut payload = [0u8; PAYLOAD_MAX];
        while let Ok(Some((kind, n))) = dec.read_from(&mut reader, &mut payload) {
            let body = payload.get(..n).unwrap_or_default();
            match kind {
                Kind::CourierAnswer => match Answer::decode(body) {
                    Ok(a) => {
                        let mut t = [0u8; 32];
                        say(&format!(
                            "answer {} {} {}",
                            a.outcome.as_str(),
                            hex(&a.token, &mut t),
                            a.text
                        ));
                    }
                    Err(_) => say("answer malformed"),
                },
                Kind::PowerOff => std::process::exit(0),
                _ => {}
            }
        }
        say("test room: umbilical closed");
    });
    let mut line = Vec::new();
    let mut stdin = std::io::stdin().lock();
    loop {
        line.clear();
        // The console is a raw pty: read byte by byte up to CR or LF.
        let mut b = [0u8; 1];
        loop {
            match stdin.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(_) if b == [b'\r'] || b == [b'\n'] => break,
                Ok(_) => line.extend_from_slice(&b),
            }
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let mut words = text.split_whitespace();
        match words.next() {
            Some("raw") => {}
            Some("fork") => {
                // The umbilical reader thread writes to stdout too: stdout's lock is held
                // across the fork, so the child cannot inherit it held by a thread it
                // does not have (its first `say` would wait forever). The child's copy
                // belongs to its one thread, which is this one, and is let go at once.
                let out = std::io::stdout().lock();
                // SAFETY: fork has no preconditions; the child goes on with this loop
                // (libc's fork leaves its allocator usable in the child).
                let pid = unsafe { libc::fork() };
                drop(out);
                match pid {
                    0 => say("test room: forked"),
                    -1 => say("test room: fork failed"),
                    _ => loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    },
                }
                continue;
            }
            _ => continue,
        }
        let bytes: Vec<u8> = match words.next() {
            Some(h) if h.len() % 2 == 0 => h
                .as_bytes()
                .chunks(2)
                .filter_map(|p| unhex::<1>(std::str::from_utf8(p).unwrap_or("")).map(|[b]| b))
                .collect(),
            _ => continue,
        };
        let count: usize = words.next().and_then(|c| c.parse().ok()).unwrap_or(1);
        let all = bytes.repeat(count);
        let _ = umb.write_all(&all);
        say(&format!("test room: sent {} bytes", all.len()));
    }
}
