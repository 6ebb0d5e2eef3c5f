// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier's data service in the room's agent when a thread cannot be had: a data
//! connection whose thread could not start gives its place back. Its own test binary:
//! it caps this process's address space for a moment, and the agent's count of data
//! connections is process-wide.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anchor_agent::courier::{serve_data_connection, Home};
use anchor_proto::courier::Data;
use anchor_proto::umbilical::{write_frame, Frames, PAYLOAD_MAX};

fn rlimit_as() -> libc::rlimit {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit for the kernel to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) }, 0);
    r
}

fn set_rlimit_as(r: &libc::rlimit) {
    // SAFETY: `r` is a valid rlimit; only this process's soft limit changes.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, r) }, 0);
}

/// This process's address space now, in bytes.
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A data connection is counted before its thread starts (at most 4 at once); when the
/// thread could not start (the room at its task or memory limit, for a moment), the
/// count was never given back, so after four such moments the agent closed every data
/// connection at once, for good: the room could neither send nor receive again. Here
/// thread creation fails while the address space is capped; once the cap is lifted, a
/// data connection is served again.
#[test]
fn a_data_connection_without_a_thread_gives_its_place_back() {
    let dir = std::env::temp_dir().join(format!("agent-threads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let home = Home {
        dir: dir.clone(),
        owner: None,
    };
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(UnixStream::pair().unwrap());
    }
    let old = rlimit_as();
    let capped = libc::rlimit {
        rlim_cur: vm_size() + (1 << 20),
        rlim_max: old.rlim_max,
    };
    set_rlimit_as(&capped);
    let no_thread = std::thread::Builder::new().spawn(|| {}).is_err();
    for (agent_end, _ours) in conns.drain(..) {
        serve_data_connection(File::from(OwnedFd::from(agent_end)), home.clone());
    }
    set_rlimit_as(&old);
    assert!(no_thread, "the cap did not stop thread creation");

    let (agent_end, mut ours) = UnixStream::pair().unwrap();
    // Hang detection only.
    ours.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    serve_data_connection(File::from(OwnedFd::from(agent_end)), home.clone());
    write_frame(&mut ours, Data::Fetch, &[7; 16]).unwrap();
    let mut p = [0u8; PAYLOAD_MAX];
    let frame = Frames::<Data>::default()
        .read_from(&mut ours, &mut p)
        .unwrap();
    let (k, n) = frame.expect("the connection was closed unserved");
    assert_eq!(k, Data::Failed);
    assert!(String::from_utf8_lossy(&p[..n]).starts_with("no such request"));
    std::fs::remove_dir_all(&dir).unwrap();
}
