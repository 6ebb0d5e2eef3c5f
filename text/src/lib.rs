// SPDX-License-Identifier: GPL-3.0-or-later
//! Text that comes from a room is untrusted: shown on one of bay0's displays it must not be
//! able to paint outside its place, talk back to the terminal, or pass for bay0's own
//! words. This crate holds that logic, pure and without dependencies, so bay0 (PID 1)
//! keeps only the plumbing:
//!
//! - [`console`]: a room's console output rendered for a trusted terminal, line by line,
//!   each line carrying the room's name.
//! - [`prompt`]: the courier's trusted prompt, with the file name a room chose shown
//!   escaped, as text lines and as pixels drawn with [`font`] (a built-in bitmap font).
//! - [`fixed`]: short texts in fixed arrays (log lines, names), which never allocate.
//! - [`lines`]: byte streams cut into lines, and lines interjected on a shared console
//!   without tearing the line a room left open.

pub mod console;
pub mod fixed;
pub mod font;
pub mod lines;
pub mod prompt;
