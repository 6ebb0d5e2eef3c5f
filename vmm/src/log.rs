// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-vmm's own stderr lines. The VMM's stderr is usually a console shared with
//! other writers (bay0, the host kernel), so every line is formatted into one buffer
//! and handed to the kernel in a single write(2): no other writer can land inside it.

use std::fmt::Write as _;
use std::io::Write as _;

/// `anchor-vmm: <args>\n` as one buffer.
pub fn format_line(args: std::fmt::Arguments<'_>) -> String {
    let mut line = String::from("anchor-vmm: ");
    let _ = line.write_fmt(args);
    line.push('\n');
    line
}

/// Writes `anchor-vmm: <args>` to stderr as one write (best effort: a VMM whose
/// stderr is gone has nobody to tell).
pub fn say(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().write_all(format_line(args).as_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_carry_the_prefix_and_one_newline() {
        assert_eq!(
            super::format_line(format_args!("exit {}", 3)),
            "anchor-vmm: exit 3\n"
        );
    }
}
