// SPDX-License-Identifier: GPL-3.0-or-later
//! A person who types the new recovery key back at "Press Enter once you have written it
//! down" (to check what they wrote) left a copy of it in freed heap memory: the console
//! read the line into a wiped buffer, then made a plain `String` of it for the caller,
//! which threw it away unwiped. This test binary's allocator looks into every block freed
//! while the key is shown and the line is read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anchor_vault::console::Terminal;
use anchor_vault::keys::RecoveryKey;
use anchor_vault::provision::show_recovery_key;

mod snoop;

#[global_allocator]
static GLOBAL: snoop::Snoop = snoop::Snoop;

/// The text of the key the test shows (16 bytes of 0x5e), as typed back.
const MARKER: &[u8] = b"5e5e-5e5e-5e5e-5e5e-5e5e-5e5e-5e5e-5e5e";

#[test]
fn a_recovery_key_typed_back_at_the_enter_prompt_leaves_no_copy_in_freed_memory() {
    let input = snoop::pipe();
    let mut typed = MARKER.to_vec();
    typed.push(b'\n');
    // SAFETY: writes `typed` (far below a pipe buffer) to the pipe's write end.
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
    let key = RecoveryKey::from_bytes(&[0x5e; 16]);
    let mut t = Terminal::stdio();
    snoop::arm(MARKER);
    show_recovery_key(&mut t, &key).unwrap();
    drop(key);
    let found = snoop::disarm();
    // SAFETY: stdout back to what the harness gave, for its report.
    let restored = unsafe { libc::dup2(stdout, libc::STDOUT_FILENO) };
    assert_eq!(restored, libc::STDOUT_FILENO);
    assert_eq!(found, 0, "freed heap blocks still held the recovery key");
}
