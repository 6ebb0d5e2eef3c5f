// SPDX-License-Identifier: GPL-3.0-or-later
//! Console lines. Several processes of a room write to the same console (this PID 1,
//! the services it starts, the shell); a line written in pieces can be torn by another
//! writer's line landing in between. So every line the agent prints is formatted into
//! one buffer first and handed to the kernel in a single write(2): the tty layer never
//! interleaves two write calls.

use std::fmt::Write as _;
use std::os::fd::RawFd;

/// The prefix of every agent line.
pub const PREFIX: &str = "anchor-agent: ";

/// `anchor-agent: <msg>\n` as one buffer.
pub fn format_line(msg: &str) -> String {
    let mut line = String::with_capacity(PREFIX.len() + msg.len() + 1);
    line.push_str(PREFIX);
    // Embedded newlines would start lines without the prefix: show them escaped.
    for c in msg.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            c => line.push(c),
        }
    }
    line.push('\n');
    line
}

/// Writes `bytes` to `fd` in one write(2) (retried only for what a signal or a full
/// device cut short; a whole line of console size fits one call).
pub fn write_all(fd: RawFd, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match crate::sys::write(fd, rest) {
            Ok(0) => return,
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(e) if e.errno() == Some(libc::EINTR) || e.errno() == Some(libc::EAGAIN) => {}
            // Nobody to tell: the console itself failed.
            Err(_) => return,
        }
    }
}

/// Prints `anchor-agent: <msg>` on stderr (the console) as one write.
pub fn say(msg: &str) {
    write_all(libc::STDERR_FILENO, format_line(msg).as_bytes());
}

/// Prints `anchor-agent: <formatted>` on stderr as one write.
pub fn say_fmt(args: std::fmt::Arguments<'_>) {
    let mut msg = String::new();
    let _ = msg.write_fmt(args);
    say(&msg);
}

/// Prints a plain line (no prefix) on stdout as one write.
pub fn print_line(text: &str) {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    write_all(libc::STDOUT_FILENO, line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_line_is_prefixed_newline_terminated_and_never_spans_lines() {
        assert_eq!(format_line("room x ready"), "anchor-agent: room x ready\n");
        assert_eq!(
            format_line("a\nanchor-agent: forged\r"),
            "anchor-agent: a\\nanchor-agent: forged\\r\n"
        );
    }

    #[test]
    fn a_line_is_one_write_call() {
        // A datagram socket shows write boundaries: one write, one datagram.
        let (a, b) = UnixDatagram::pair().unwrap();
        write_all(a.as_raw_fd(), format_line("hello").as_bytes());
        let mut buf = [0u8; 64];
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"anchor-agent: hello\n");
        b.set_nonblocking(true).unwrap();
        assert!(b.recv(&mut buf).is_err(), "more than one write");
    }

    #[test]
    fn concurrent_writers_never_tear_lines() {
        // A pipe, like a tty, never interleaves the bytes of two small write calls.
        let (mut r, wp) = std::io::pipe().unwrap();
        let w = wp.as_raw_fd();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            r.read_to_string(&mut all).unwrap();
            all
        });
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..200 {
                        write_all(w, format_line(&format!("writer {t} line {i}")).as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(wp);
        let all = reader.join().unwrap();
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 1600);
        for l in lines {
            let rest = l
                .strip_prefix(PREFIX)
                .unwrap_or_else(|| panic!("torn: {l:?}"));
            assert!(
                rest.starts_with("writer ") && !rest.contains(PREFIX),
                "{l:?}"
            );
        }
    }
}
