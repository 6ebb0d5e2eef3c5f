// SPDX-License-Identifier: GPL-3.0-or-later
//! What the courier's integration tests share.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anchor_agent::courier::Home;
use anchor_proto::courier::Launch;
use sha2::{Digest, Sha256};

/// A fresh, empty destination home `/var/tmp/courier-{suite}-{tag}-PID` and its `Home`
/// (no owner to hand files to).
#[allow(dead_code)] // not every test crate uses it
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

/// A connected pair whose reads and writes give up after `stall` (a test never hangs).
#[allow(dead_code)] // not every test crate uses it
pub fn pair(stall: Duration) -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(stall)).unwrap();
        s.set_write_timeout(Some(stall)).unwrap();
    }
    (a, b)
}

/// The launch of `item` as `name` from web to work over sockets (no vsock).
#[allow(dead_code)] // not every test crate uses it
pub fn launch(name: &str, item: &[u8]) -> Launch {
    Launch {
        id: [3; 16],
        token: [4; 16],
        from: "web".into(),
        to: "work".into(),
        name: name.into(),
        size: item.len() as u64,
        sha256: Sha256::digest(item).into(),
        vsock: [false, false],
    }
}
