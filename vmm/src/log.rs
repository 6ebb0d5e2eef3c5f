// SPDX-License-Identifier: GPL-3.0-or-later
//! One-line messages on stderr, each written with a single write(2) (formatted into a
//! buffer first), so lines from several threads or processes sharing the console never
//! tear. `eprintln!` on Rust's unbuffered stderr issues one write per formatted piece.

use std::io::Write;

/// Writes `line` plus a newline to stderr in one write(2).
pub fn line(line: &str) {
    let mut buf = String::with_capacity(line.len().saturating_add(1));
    buf.push_str(line);
    buf.push('\n');
    let _ = std::io::stderr().write_all(buf.as_bytes());
}

/// `format!` a line and write it to stderr in one write(2).
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {
        $crate::log::line(&format!($($arg)*))
    };
}
