// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchorctl room ...` and `anchorctl status`: bay0's control socket as a command line
//! (anchor-proto's `control` module; docs/CONTROL-PROTOCOL.md).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anchor_proto::control::{self, Reply, Verb, DETACH_KEY};

/// What a room command ended with.
#[derive(Debug)]
pub enum Failure {
    /// bay0 could not be reached or the conversation broke (exit 1).
    Io(String),
    /// bay0 refused the request; its one-line reason (exit 1).
    Refused(String),
}

fn io_fail(what: &str, socket: &Path) -> impl Fn(io::Error) -> Failure {
    let what = format!("{what} {}", socket.display());
    move |e| Failure::Io(format!("{what}: {e}"))
}

/// Sends one request and returns the reply lines (records, then the final ok/err), and
/// what came after the final line in the same read (a console's first output).
fn request(
    socket: &Path,
    verb: Verb,
    room: &str,
) -> Result<(UnixStream, Vec<Reply>, Vec<u8>), Failure> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        Failure::Io(format!(
            "cannot reach bay0 at {}: {e} (anchorctl runs on the anchor host, as root)",
            socket.display()
        ))
    })?;
    stream
        .write_all(control::format_request(verb, room).as_bytes())
        .map_err(io_fail("writing to", socket))?;
    let mut replies = Vec::new();
    let mut reader = BufReader::new(stream.try_clone().map_err(io_fail("socket", socket))?);
    loop {
        let mut line = String::new();
        let n = reader
            .by_ref()
            .take(control::REPLY_LINE_MAX as u64)
            .read_line(&mut line)
            .map_err(io_fail("reading from", socket))?;
        if n == 0 {
            return Err(Failure::Io(
                "bay0 closed the connection without an answer".into(),
            ));
        }
        let reply = control::parse_reply(line.trim_end_matches(['\n', '\r']))
            .ok_or_else(|| Failure::Io(format!("bay0 sent a malformed line: {line:?}")))?;
        match reply {
            Reply::Err(msg) => return Err(Failure::Refused(msg)),
            Reply::Ok(_) => {
                replies.push(reply);
                return Ok((stream, replies, reader.buffer().to_vec()));
            }
            Reply::Record { .. } => replies.push(reply),
        }
    }
}

/// `room start|stop|reset NAME`: prints bay0's `ok` text.
pub fn simple(socket: &Path, verb: Verb, room: &str, out: &mut dyn Write) -> Result<(), Failure> {
    let (_, replies, _) = request(socket, verb, room)?;
    if let Some(Reply::Ok(text)) = replies.last() {
        let _ = writeln!(out, "{}", if text.is_empty() { "ok" } else { text });
    }
    Ok(())
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map_or("-", |(_, v)| v.as_str())
}

fn uptime(secs: &str) -> String {
    match secs.parse::<u64>() {
        Ok(s) if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        Ok(s) if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        Ok(s) => format!("{s}s"),
        Err(_) => "-".into(),
    }
}

/// `room list` / `status`: a table, or JSON with `json`. `host` adds the memory summary.
pub fn list(socket: &Path, json: bool, host: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let (_, replies, _) = request(socket, Verb::List, "")?;
    let records: Vec<(&str, &[(String, String)])> = replies
        .iter()
        .filter_map(|r| match r {
            Reply::Record { kind, fields } => Some((kind.as_str(), fields.as_slice())),
            _ => None,
        })
        .collect();
    let w = |e: io::Error| Failure::Io(format!("writing output: {e}"));
    if json {
        let to_obj = |f: &[(String, String)]| {
            serde_json::Value::Object(
                f.iter()
                    .map(|(k, v)| {
                        // A name is a string even when it is all digits (`007`).
                        let number = v.parse::<u64>().ok().filter(|_| k != "name");
                        let val = number.map_or_else(
                            || serde_json::Value::String(v.clone()),
                            serde_json::Value::from,
                        );
                        (k.clone(), val)
                    })
                    .collect(),
            )
        };
        let rooms: Vec<_> = records
            .iter()
            .filter(|(k, _)| *k == "room")
            .map(|(_, f)| to_obj(f))
            .collect();
        let mut doc = serde_json::Map::new();
        doc.insert("rooms".into(), serde_json::Value::Array(rooms));
        if host {
            if let Some((_, f)) = records.iter().find(|(k, _)| *k == "host") {
                doc.insert("host".into(), to_obj(f));
            }
        }
        let doc = serde_json::Value::Object(doc);
        return writeln!(out, "{doc:#}").map_err(w);
    }
    writeln!(
        out,
        "{:<16} {:<9} {:<9} {:>8} {:>8} {:>5} {:>7}",
        "NAME", "BACKEND", "STATE", "UPTIME", "MEMORY", "VCPUS", "PID"
    )
    .map_err(w)?;
    for (_, f) in records.iter().filter(|(k, _)| *k == "room") {
        let mem = match field(f, "memory_mib") {
            "-" => "-".to_string(),
            m => format!("{m}M"),
        };
        writeln!(
            out,
            "{:<16} {:<9} {:<9} {:>8} {:>8} {:>5} {:>7}",
            field(f, "name"),
            field(f, "backend"),
            field(f, "state"),
            if field(f, "uptime_s") == "-" {
                "-".into()
            } else {
                uptime(field(f, "uptime_s"))
            },
            mem,
            field(f, "vcpus"),
            field(f, "pid"),
        )
        .map_err(w)?;
    }
    if host {
        if let Some((_, f)) = records.iter().find(|(k, _)| *k == "host") {
            writeln!(
                out,
                "host: {} MiB, {} reserved for the host, {} used by rooms, {} free for rooms",
                field(f, "memory_mib"),
                field(f, "reserved_mib"),
                field(f, "rooms_mib"),
                field(f, "free_mib")
            )
            .map_err(w)?;
        }
    }
    Ok(())
}

/// `room console NAME`: the terminal becomes the room's console until Ctrl-] (or the
/// room ends).
pub fn console(socket: &Path, room: &str) -> Result<(), Failure> {
    let (stream, replies, first) = request(socket, Verb::Console, room)?;
    if let Some(Reply::Ok(text)) = replies.last() {
        eprint!("{text}\r\n");
    }
    let _ = io::stdout()
        .write_all(&first)
        .and_then(|()| io::stdout().flush());
    let raw = crate::sys::RawTerminal::enter(libc::STDIN_FILENO);
    let mut from_room = stream.try_clone().map_err(io_fail("socket", socket))?;
    let printer = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdout = io::stdout();
        while let Ok(n @ 1..) = from_room.read(&mut buf) {
            if stdout
                .write_all(buf.get(..n).unwrap_or_default())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                break;
            }
        }
    });
    let mut to_room = stream;
    let mut buf = [0u8; 1024];
    // Until Ctrl-], the end of the input, or the room's end (bay0 closed the connection:
    // the printer is done), which must not wait for the next key.
    while !printer.is_finished() {
        if !crate::sys::wait_input(libc::STDIN_FILENO, 100) {
            continue;
        }
        let n = match crate::sys::read(libc::STDIN_FILENO, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let keys = buf.get(..n).unwrap_or_default();
        let (send, detach) = match keys.iter().position(|&b| b == DETACH_KEY) {
            Some(i) => (keys.get(..i).unwrap_or_default(), true),
            None => (keys, false),
        };
        if to_room.write_all(send).is_err() || detach {
            break;
        }
    }
    let _ = to_room.shutdown(std::net::Shutdown::Both);
    let _ = printer.join();
    drop(raw);
    eprint!("\r\n[detached from room {room}]\r\n");
    Ok(())
}
