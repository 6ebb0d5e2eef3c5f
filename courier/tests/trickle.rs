// SPDX-License-Identifier: GPL-3.0-or-later
//! A room that trickles its side of a transfer, one byte well within each stall timeout,
//! used to hold the courier (and with it every other room's courier requests: one
//! transfer at a time) for as long as it liked: every byte reset the stall timeout. The
//! transfer now has a time allowance for the whole of it (`transfer::allowance_secs`,
//! enforced by [`transfer::Until`] around both streams, as the binary wraps them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write;
use std::time::{Duration, Instant};

mod common;

use anchor_agent::courier as agent;
use anchor_courier::transfer::{self, Until};
use anchor_proto::courier::Data;
use anchor_proto::umbilical::{write_frame, Frames, PAYLOAD_MAX};

#[test]
fn the_allowance_is_two_minutes_and_a_second_per_mib() {
    assert_eq!(transfer::allowance_secs(0), 120);
    assert_eq!(transfer::allowance_secs(1), 121);
    assert_eq!(transfer::allowance_secs(1 << 20), 121);
    assert_eq!(transfer::allowance_secs((1 << 20) + 1), 122);
    assert_eq!(transfer::allowance_secs(1 << 30), 120 + 1024);
    assert_eq!(transfer::allowance_secs(u64::MAX), 120 + (1 << 44));
}

#[test]
fn a_trickling_source_is_stopped_at_the_allowance_and_nothing_is_stored() {
    // Each byte comes well within the stall timeout; the whole item takes 24 gaps, far
    // past the (shortened) allowance.
    let stall = Duration::from_secs(5);
    let gap = Duration::from_millis(50);
    let item = b"a trickled item, 24 byte".to_vec();
    let (dir, home) = common::home("trickle", "src");
    let l = common::launch("slow.txt", &item);
    let (src, mut theirs) = common::pair(stall);
    let data = item.clone();
    let source = std::thread::spawn(move || {
        let mut dec = Frames::<Data>::default();
        let mut p = [0u8; PAYLOAD_MAX];
        let _ = dec.read_from(&mut theirs, &mut p);
        write_frame(&mut theirs, Data::Offer, &(data.len() as u64).to_le_bytes()).unwrap();
        for b in &data {
            std::thread::sleep(gap);
            if theirs.write_all(&[*b]).is_err() {
                break;
            }
        }
    });
    // The honest destination: the real agent code.
    let (dst, mut agent_end) = common::pair(stall);
    let h = home.clone();
    let dest = std::thread::spawn(move || agent::handle_data(&mut agent_end, &h));
    let until = Instant::now() + Duration::from_millis(300);
    let (mut src, mut dst) = (Until { inner: src, until }, Until { inner: dst, until });
    let r = transfer::run(&mut src, &mut dst, &l);
    drop((src, dst));
    source.join().unwrap();
    dest.join().unwrap();
    let why = r.unwrap_err().explain(&l);
    assert!(
        why.starts_with("the transfer took longer than its allowance (121 s for 24 bytes"),
        "{why}"
    );
    let incoming = std::fs::read_dir(dir.join("Incoming")).map_or(0, |d| d.count());
    assert_eq!(incoming, 0, "a partial item was stored");
    std::fs::remove_dir_all(&dir).unwrap();
}
