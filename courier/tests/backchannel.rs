// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier carries one item in one direction, yet the destination room's agent used
//! to choose the text the source room hears back: its `Stored` name and its `Failed`
//! reason reached the sender's `courier send` output verbatim (control characters aside).
//! A destination room (compromised, holding data) could thus send up to 400 bytes of its
//! choosing to the source room on every approved transfer: data crossing the other way,
//! with no prompt for that direction. Now only a name it may store the item under, and
//! the fixed words of the agent's reasons, come back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Read;
use std::time::Duration;

mod common;

use anchor_courier::transfer;
use anchor_proto::courier::Data;
use anchor_proto::umbilical::{write_frame, Frames, PAYLOAD_MAX};

const SECRET: &str = "work-db-password=hunter2;api-key=AKIAEXAMPLE0123456789";

/// The transfer with an honest-looking source and a destination that answers `answer`
/// with the secret as its payload.
fn carry(answer: Data) -> String {
    let mut frame = [0u8; PAYLOAD_MAX + 4];
    let n = anchor_proto::umbilical::encode(answer, SECRET.as_bytes(), &mut frame).unwrap();
    carry_raw(frame[..n].to_vec())
}

/// The transfer with an honest-looking source and a destination that answers with these
/// bytes.
fn carry_raw(answer: Vec<u8>) -> String {
    let item = b"an approved item".to_vec();
    let l = common::launch("item.txt", &item);
    let (mut src, mut s_end) = common::pair(Duration::from_secs(20));
    let data = item.clone();
    let source = std::thread::spawn(move || {
        let mut p = [0u8; PAYLOAD_MAX];
        let _ = Frames::<Data>::default().read_from(&mut s_end, &mut p);
        write_frame(&mut s_end, Data::Offer, &(data.len() as u64).to_le_bytes()).unwrap();
        std::io::Write::write_all(&mut s_end, &data).unwrap();
    });
    let (mut dst, mut d_end) = common::pair(Duration::from_secs(20));
    let dest = std::thread::spawn(move || {
        // Takes the delivery and its commit, then answers with its own text.
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while !all.ends_with(&[0x44, 0, 0, 0]) {
            let n = d_end.read(&mut buf).unwrap();
            assert!(n > 0);
            all.extend_from_slice(&buf[..n]);
        }
        std::io::Write::write_all(&mut d_end, &answer).unwrap();
    });
    let r = transfer::run(&mut src, &mut dst, &l);
    source.join().unwrap();
    dest.join().unwrap();
    // What bay0 gets on the courier's stderr, and forwards to the sender and the audit.
    match r {
        Ok(name) => format!("delivered {name}"),
        Err(e) => format!("failed {}", e.explain(&l)),
    }
}

#[test]
fn the_destination_cannot_send_its_own_text_back_to_the_source() {
    for answer in [Data::Stored, Data::Failed] {
        let line = carry(answer);
        assert!(
            !line.contains(SECRET),
            "{answer:?}: the destination's text reaches the sender: {line:?}"
        );
    }
}

/// A destination that breaks the protocol on purpose picks the kind, the reserved byte or
/// the length of its answer's header; none of those numbers reaches the sender.
#[test]
fn a_broken_answer_says_only_that_the_destination_broke_the_protocol() {
    use anchor_proto::umbilical::FrameKind;
    let stored = Data::Stored.code();
    let fetch = Data::Fetch.code();
    for (what, answer, chosen) in [
        ("an unknown kind", vec![0xab, 0, 0, 0], "171"),
        ("a reserved byte set", vec![stored, 0xcd, 0, 0], "205"),
        ("an over-long length", vec![stored, 0, 0x39, 0x30], "12345"),
        ("another kind", vec![fetch, 0, 0, 0], "Fetch"),
    ] {
        let line = carry_raw(answer);
        assert!(line.contains("broke the protocol"), "{what}: {line}");
        assert!(
            !line.contains(chosen),
            "{what}: the sender hears {chosen}: {line}"
        );
    }
}

/// Every reason the real agent gives keeps its category for the sender (the fixed words),
/// and none of the destination's own details (numbers, error texts) comes through.
#[test]
fn every_reason_of_the_agent_reaches_the_sender_as_fixed_words() {
    use anchor_agent::courier::store::StoreError;
    use anchor_courier::transfer::destination_reason;
    let e = || std::io::Error::from_raw_os_error(libc::EACCES);
    let reasons = [
        StoreError::Request(anchor_proto::courier::RequestError::Room),
        StoreError::Repeated,
        StoreError::IncomingIsLink,
        StoreError::IncomingNotDir,
        StoreError::Incoming(e()),
        StoreError::NoSpace {
            free: 12345,
            need: 67890,
        },
        StoreError::Short {
            got: 4242,
            size: 9999,
        },
        StoreError::NoCommit,
        StoreError::Mismatch,
        StoreError::Io("writing the item", e()),
        StoreError::NoFreeName,
    ];
    for r in reasons {
        let said = destination_reason(r.to_string().as_bytes());
        assert!(!said.contains("does not pass on"), "{r}: withheld ({said})");
        for detail in ["12345", "67890", "4242", "9999", "denied"] {
            assert!(!said.contains(detail), "{r}: {said}");
        }
    }
    assert_eq!(
        destination_reason(StoreError::IncomingNotDir.to_string().as_bytes()),
        "~/Incoming is not a directory; nothing was stored"
    );
    let own = destination_reason(b"work-db-password=hunter2; nothing was stored");
    assert!(!own.contains("hunter2"), "{own}");
}
