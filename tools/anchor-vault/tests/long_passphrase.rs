// SPDX-License-Identifier: GPL-3.0-or-later
//! A passphrase longer than the console's 1024-byte line was dropped and the prompt
//! answered with an empty line, which the unlock dialog takes for "use the recovery
//! key". It must be refused in one line naming the limit and asked for again, its bytes
//! wiped, and nothing of it left for the next prompt. This test binary's allocator looks
//! into every block freed while the long line is read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anchor_vault::console::{Console, Terminal, MAX_LINE};

mod snoop;

#[global_allocator]
static GLOBAL: snoop::Snoop = snoop::Snoop;

const MARKER: &[u8] = b"long-secret-mkr!";

#[test]
fn an_over_long_passphrase_is_refused_wiped_and_asked_for_again() {
    // Pasted: 1600 bytes (over the limit), then the passphrase meant, then another line.
    let mut typed = MARKER.repeat(100);
    typed.extend_from_slice(b"\nshort one\nnext\n");
    let input = snoop::pipe();
    // SAFETY: writes `typed` (smaller than a pipe buffer) to the pipe's write end.
    let n = unsafe { libc::write(input[1], typed.as_ptr().cast(), typed.len()) };
    assert_eq!(usize::try_from(n).unwrap(), typed.len());
    let output = snoop::pipe();
    // SAFETY: dup only duplicates the descriptor.
    let stdout = unsafe { libc::dup(libc::STDOUT_FILENO) };
    assert!(stdout >= 0);
    // SAFETY: the test binary's stdin (it has this one test) becomes the input pipe.
    let stdin = unsafe { libc::dup2(input[0], libc::STDIN_FILENO) };
    assert_eq!(stdin, libc::STDIN_FILENO);
    // SAFETY: its stdout becomes the output pipe until restored below.
    let piped = unsafe { libc::dup2(output[1], libc::STDOUT_FILENO) };
    assert_eq!(piped, libc::STDOUT_FILENO);
    let mut t = Terminal::stdio();
    snoop::arm(MARKER);
    let first = t.secret("Vault passphrase: ").unwrap().unwrap();
    let got = first.to_vec();
    drop(first);
    let next = t.secret("Again: ").unwrap().unwrap();
    let found = snoop::disarm();
    let mut shown = vec![0u8; 16384];
    // SAFETY: reads at most `shown.len()` bytes into `shown`.
    let n = unsafe { libc::read(output[0], shown.as_mut_ptr().cast(), shown.len()) };
    shown.truncate(usize::try_from(n).unwrap());
    // SAFETY: stdout back to what the harness gave, for its report.
    let restored = unsafe { libc::dup2(stdout, libc::STDOUT_FILENO) };
    assert_eq!(restored, libc::STDOUT_FILENO);
    let shown = String::from_utf8_lossy(&shown).into_owned();
    assert_eq!(got, b"short one", "what the first prompt gave: {shown}");
    assert_eq!(&*next, b"next", "the long line leaked into the next prompt");
    let refusal = format!("passphrase longer than {MAX_LINE} bytes");
    assert_eq!(shown.matches(&refusal).count(), 1, "{shown}");
    assert_eq!(
        shown.matches("Vault passphrase: ").count(),
        2,
        "asked again: {shown}"
    );
    assert_eq!(found, 0, "freed heap blocks still held the long passphrase");
}
