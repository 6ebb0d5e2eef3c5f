// SPDX-License-Identifier: GPL-3.0-or-later
//! A passphrase longer than the console's first buffer
//! (128 bytes) leaves unwiped copies of its beginning in freed heap memory: the
//! `Zeroizing<Vec<u8>>` grows by reallocation, and only its last allocation is wiped.
//! This test binary's allocator looks into every block freed while a secret is read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anchor_vault::console::{Console, Terminal};

mod snoop;

#[global_allocator]
static GLOBAL: snoop::Snoop = snoop::Snoop;

const MARKER: &[u8] = b"vault-secret-mkr";

#[test]
fn a_long_passphrase_leaves_no_copy_in_freed_memory() {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // Typed on the console: a 320-byte passphrase (a long passphrase sentence).
    let mut typed = MARKER.repeat(20);
    typed.push(b'\n');
    // SAFETY: writes `typed` (smaller than a pipe buffer) to the pipe's write end.
    let n = unsafe { libc::write(fds[1], typed.as_ptr().cast(), typed.len()) };
    assert_eq!(usize::try_from(n).unwrap(), typed.len());
    // SAFETY: the test binary's stdin (it has this one test) becomes the pipe's read end.
    let stdin = unsafe { libc::dup2(fds[0], libc::STDIN_FILENO) };
    assert_eq!(stdin, libc::STDIN_FILENO);
    let mut t = Terminal::stdio();
    snoop::arm(MARKER);
    let secret = t.secret("Vault passphrase: ").unwrap().unwrap();
    assert_eq!(secret.len(), 320);
    drop(secret);
    let found = snoop::disarm();
    assert_eq!(found, 0, "freed heap blocks still held the passphrase");
}
