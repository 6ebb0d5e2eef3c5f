// SPDX-License-Identifier: GPL-3.0-or-later
//! The recovery key shown once at creation left unwiped copies of itself in freed heap
//! memory: the line that shows it was made with `format!`, and the console copied every
//! line into a buffer of its own to add the newline. The docs say the recovery key lives
//! in wiped buffers only. This test binary's allocator looks into every block freed while
//! the key is shown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anchor_vault::console::Terminal;
use anchor_vault::keys::RecoveryKey;
use anchor_vault::provision::show_recovery_key;

mod snoop;

#[global_allocator]
static GLOBAL: snoop::Snoop = snoop::Snoop;

/// The text of the key the test shows (16 bytes of 0x5e).
const MARKER: &[u8] = b"5e5e-5e5e-5e5e-5e5e-5e5e-5e5e-5e5e-5e5e";

#[test]
fn the_recovery_key_shown_at_creation_leaves_no_copy_in_freed_memory() {
    // The person presses Enter once the key is written down.
    let input = snoop::pipe();
    // SAFETY: writes one byte (far below a pipe buffer) to the pipe's write end.
    let typed = unsafe { libc::write(input[1], b"\n".as_ptr().cast(), 1) };
    assert_eq!(typed, 1);
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
    let mut shown = vec![0u8; 16384];
    // SAFETY: reads at most `shown.len()` bytes into `shown`.
    let n = unsafe { libc::read(output[0], shown.as_mut_ptr().cast(), shown.len()) };
    shown.truncate(usize::try_from(n).unwrap());
    // SAFETY: stdout back to what the harness gave, for its report.
    let restored = unsafe { libc::dup2(stdout, libc::STDOUT_FILENO) };
    assert_eq!(restored, libc::STDOUT_FILENO);
    assert_eq!(
        shown.windows(MARKER.len()).filter(|w| *w == MARKER).count(),
        1,
        "the key is shown once: {}",
        String::from_utf8_lossy(&shown)
    );
    assert_eq!(found, 0, "freed heap blocks still held the recovery key");
}
