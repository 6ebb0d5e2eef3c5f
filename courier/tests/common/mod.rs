// SPDX-License-Identifier: GPL-3.0-or-later
//! What the courier's integration tests share.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use anchor_agent::courier::Home;

/// A fresh, empty destination home `/var/tmp/courier-{suite}-{tag}-PID` and its `Home`
/// (no owner to hand files to).
pub fn home(suite: &str, tag: &str) -> (PathBuf, Home) {
    let dir = PathBuf::from(format!(
        "/var/tmp/courier-{suite}-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let home = Home {
        dir: dir.clone(),
        owner: None,
    };
    (dir, home)
}
