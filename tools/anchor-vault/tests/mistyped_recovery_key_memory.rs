// SPDX-License-Identifier: GPL-3.0-or-later
//! A recovery key typed with a digit too many (a slip, or the key pasted twice) left its
//! first 32 digits in freed heap memory: `RecoveryKey::parse` gathered the digits in a
//! `Zeroizing` buffer sized for 32, which grew by reallocation at the 33rd, and only the
//! last allocation was wiped. This test binary's allocator looks into every block freed
//! while the typed line is read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anchor_vault::keys::RecoveryKey;

mod snoop;

#[global_allocator]
static GLOBAL: snoop::Snoop = snoop::Snoop;

/// The key's digits as `parse` holds them (one nibble a byte): 16 bytes of 0x5e.
const MARKER: &[u8] = &[
    5, 14, 5, 14, 5, 14, 5, 14, 5, 14, 5, 14, 5, 14, 5, 14, 5, 14, 5, 14, 5, 14, 5, 14, 5, 14, 5,
    14, 5, 14, 5, 14,
];

#[test]
fn a_recovery_key_typed_with_a_digit_too_many_leaves_no_copy_in_freed_memory() {
    // The right key, then one more digit.
    let typed: &[u8] = b"5e5e-5e5e-5e5e-5e5e-5e5e-5e5e-5e5e-5e5e5";
    snoop::arm(MARKER);
    let parsed = RecoveryKey::parse(typed);
    let found = snoop::disarm();
    assert!(parsed.is_none(), "33 digits are not a recovery key");
    assert_eq!(
        found, 0,
        "freed heap blocks still held the recovery key's digits"
    );
}
