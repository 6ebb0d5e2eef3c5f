// SPDX-License-Identifier: GPL-3.0-or-later
//! A transfer between a microVM room and a namespace room, as anchor-courier sees it: the
//! microVM side's connection starts with the hybrid vsock's `OK <port>` line, the
//! namespace side's (a socket bay0 passed on the room's umbilical) starts with the data
//! frames. `Launch::vsock` says which is which, per side; the destination is the real
//! agent code. A side flagged vsock whose connection sends no `OK` line stalls and fails
//! the transfer, leaving nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

mod common;

use anchor_agent::courier::{self as agent, Home};
use anchor_courier::transfer;
use anchor_proto::courier::{Data, Launch};
use anchor_proto::umbilical::{write_frame, Frames, PAYLOAD_MAX};
use sha2::{Digest, Sha256};

fn home(tag: &str) -> (PathBuf, Home) {
    common::home("mixed", tag)
}

/// A connection whose reads give up after `stall` without progress (the courier's and
/// the agent's stall timeouts, shortened).
fn pair(stall: Duration) -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(stall)).unwrap();
    }
    (a, b)
}

/// Carries an item with these vsock flags; `ok`: which room side writes the `OK` line
/// (as anchor-vmm would for a microVM room); `id`: the transfer id. The courier's result
/// and what arrived.
fn carry(
    vsock: [bool; 2],
    ok: [bool; 2],
    id: u8,
    stall: Duration,
) -> (Result<String, String>, Vec<String>) {
    let tag = format!("{id}");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let l = Launch {
        id: [id; 16],
        token: [4; 16],
        from: "vm".into(),
        to: "ns".into(),
        name: "item.bin".into(),
        size: data.len() as u64,
        sha256: Sha256::digest(&data).into(),
        vsock,
    };
    let (dir, home) = home(&tag);
    let (mut src_courier, mut src) = pair(stall);
    let (mut dst_courier, mut dst) = pair(stall);
    let source = std::thread::spawn(move || {
        if ok[0] {
            src.write_all(b"OK 1025\n").unwrap();
        }
        let mut dec = Frames::<Data>::default();
        let mut p = [0u8; PAYLOAD_MAX];
        let Ok(Some((Data::Fetch, 16))) = dec.read_from(&mut src, &mut p) else {
            return;
        };
        let _ = write_frame(&mut src, Data::Offer, &(data.len() as u64).to_le_bytes());
        let _ = src.write_all(&data);
    });
    let destination = std::thread::spawn(move || {
        if ok[1] {
            dst.write_all(b"OK 1025\n").unwrap();
        }
        agent::handle_data(&mut dst, &home);
    });
    let r = transfer::run(&mut src_courier, &mut dst_courier, &l).map_err(|e| e.explain(&l));
    drop((src_courier, dst_courier));
    source.join().unwrap();
    destination.join().unwrap();
    let mut got: Vec<String> = std::fs::read_dir(dir.join("Incoming"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    got.sort();
    if r.is_ok() {
        let stored = std::fs::read(dir.join("Incoming/item.bin")).unwrap();
        assert_eq!(Sha256::digest(&stored).as_slice(), &l.sha256[..]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    (r, got)
}

/// Hang detection only: a working transfer never waits this long.
const HANG: Duration = Duration::from_secs(30);

#[test]
fn microvm_to_namespace_room_and_back_each_side_by_its_own_transport() {
    for (i, (vsock, what)) in [
        ([true, false], "microVM -> namespace room"),
        ([false, true], "namespace room -> microVM"),
        ([false, false], "namespace room -> namespace room"),
        ([true, true], "microVM -> microVM"),
    ]
    .into_iter()
    .enumerate()
    {
        let (r, got) = carry(vsock, vsock, i as u8 + 1, HANG);
        assert_eq!(r, Ok("item.bin".to_string()), "{what}");
        assert_eq!(got, ["item.bin"], "{what}");
    }
}

#[test]
fn a_side_flagged_vsock_without_its_ok_line_stalls_fails_and_leaves_nothing() {
    // The destination is flagged vsock but is a passed socket (no OK line): the courier
    // waits for the line, the agent for its first frame; the stall fails the transfer.
    let stall = Duration::from_millis(300);
    let (r, got) = carry([false, true], [false, false], 9, stall);
    let why = r.unwrap_err();
    assert!(why.contains("destination room ns"), "{why}");
    assert_eq!(got, Vec::<String>::new());
    // The same for the source.
    let (r, got) = carry([true, false], [false, false], 10, stall);
    let why = r.unwrap_err();
    assert!(why.contains("source room vm"), "{why}");
    assert_eq!(got, Vec::<String>::new());
}
