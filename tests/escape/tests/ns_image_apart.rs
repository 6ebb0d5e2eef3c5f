// SPDX-License-Identifier: GPL-3.0-or-later
//! Namespace rooms of one image never share its loop device (jail/src/image.rs): each
//! room mounts the image through a device of its own, so no two rooms share a SquashFS
//! superblock (its inodes, locks, inotify events, page cache); each room keeps working
//! when the other stops, two rooms started at the same moment both get the right image,
//! and once a room is gone no loop device of it backs the image any more.
//!
//! Needs root, and `make images` (static binaries + the base image) done first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{loop_devices_of, ns_policy, root_device, Bay0, Console};
use std::time::{Duration, Instant};

/// The backing file of the block device `MAJOR:MINOR`, if it is a bound loop device.
fn backing_file(dev: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/dev/block/{dev}/loop/backing_file"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// `loopN` of `/sys/dev/block/MAJOR:MINOR`.
fn device_name(dev: &str) -> String {
    std::fs::read_link(format!("/sys/dev/block/{dev}"))
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The jail's image lines for `room` in bay0's log, in order.
/// How `room`'s starts got the image (the jail's line in bay0's log), once there are `n`
/// of them. bay0 logs the line before it answers the start, but its log reaches this test
/// through a pipe and a reader thread, which may still hold the newest line when the
/// answer is in: waited for (20 s at most), then returned as it is.
fn image_notes(b: &Bay0, room: &str, n: usize) -> Vec<String> {
    let key = format!("room {room}: image ");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let notes: Vec<String> = b
            .log()
            .lines()
            .filter_map(|l| l.find(&key).map(|i| l[i + key.len()..].to_string()))
            .collect();
        if notes.len() >= n || Instant::now() > end {
            return notes;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start(b: &Bay0, room: &str) {
    let ok = b.answer(&format!("start {room}"));
    assert!(
        ok.starts_with(&format!("ok room {room} ready")),
        "{ok}\n{}",
        b.log()
    );
}

fn stop(b: &Bay0, room: &str) {
    assert_eq!(
        b.answer(&format!("stop {room}")),
        format!("ok room {room} stopped")
    );
}

/// Waits (hang detection only) until the loop devices backing the test's image are
/// `want` (sorted).
fn settle_loops(b: &Bay0, want: &[String]) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(10);
    let mut left = loop_devices_of(&b.image);
    while left != want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        left = loop_devices_of(&b.image);
    }
    left
}

#[test]
fn rooms_of_one_image_share_no_device_and_leave_nothing_behind() {
    let (a, b_) = ("nsapart-a", "nsapart-b");
    let b = Bay0::start(
        "apart",
        &[(a, ns_policy(a, 64, 32)), (b_, ns_policy(b_, 64, 32))],
    );
    let image = b.image.to_string_lossy().into_owned();

    // The first room attaches a device of its own.
    start(&b, a);
    let dev_a = root_device(b.room_pid(a));
    let name_a = device_name(&dev_a);
    assert!(name_a.starts_with("loop"), "{dev_a} is {name_a}");
    assert_eq!(backing_file(&dev_a).as_deref(), Some(image.as_str()));
    assert_eq!(image_notes(&b, a, 1), [format!("attached on {name_a}")]);

    // So does the second, while the first runs: another device, another superblock.
    start(&b, b_);
    let dev_b = root_device(b.room_pid(b_));
    assert_ne!(
        dev_b, dev_a,
        "the second room mounted the first room's device"
    );
    let name_b = device_name(&dev_b);
    assert_eq!(backing_file(&dev_b).as_deref(), Some(image.as_str()));
    assert_eq!(image_notes(&b, b_, 1), [format!("attached on {name_b}")]);
    let mut both = vec![name_a.clone(), name_b.clone()];
    both.sort();
    assert_eq!(loop_devices_of(&b.image), both);

    // Stopping the first frees its device and leaves the second working on its own,
    // reading image files it had not read yet.
    stop(&b, a);
    let left = settle_loops(&b, std::slice::from_ref(&name_b));
    assert_eq!(
        left,
        std::slice::from_ref(&name_b),
        "the first room's device outlived it"
    );
    let mut c = Console::attach(&b, b_);
    let (out, status) = c.run(
        "wc -l < /usr/lib/anchor/escape/escape.sh; echo room-$((20+22))",
        "",
        Duration::from_secs(20),
    );
    assert_eq!(status, 0, "{out:?}");
    assert_eq!(out.last().map(String::as_str), Some("room-42"), "{out:?}");
    assert!(
        out.first().and_then(|n| n.trim().parse::<u32>().ok()) > Some(10),
        "{out:?}"
    );
    drop(c);
    assert_eq!(root_device(b.room_pid(b_)), dev_b);

    // The first comes back while the second runs: a device of its own again.
    start(&b, a);
    let again = root_device(b.room_pid(a));
    assert_ne!(
        again, dev_b,
        "the first room mounted the second room's device"
    );
    let notes = image_notes(&b, a, 2);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[1].starts_with("attached on loop"), "{notes:?}");

    // With both rooms gone, so are their devices.
    stop(&b, b_);
    stop(&b, a);
    let left = settle_loops(&b, &[]);
    assert!(left.is_empty(), "loop devices outlived the rooms: {left:?}");
    let fp = b.footprint("nsapart-");
    assert!(fp.cgroups.is_empty() && fp.run_dirs.is_empty(), "{fp:?}");
}

#[test]
fn rooms_of_one_image_started_at_once_both_get_it() {
    let (c, d) = ("nsrace-c", "nsrace-d");
    let b = Bay0::start(
        "race",
        &[(c, ns_policy(c, 64, 32)), (d, ns_policy(d, 64, 32))],
    );
    let image = b.image.to_string_lossy().into_owned();
    for round in 0..10 {
        std::thread::scope(|s| {
            let one = s.spawn(|| b.answer(&format!("start {c}")));
            let two = s.spawn(|| b.answer(&format!("start {d}")));
            for (room, answer) in [(c, one.join().unwrap()), (d, two.join().unwrap())] {
                assert!(
                    answer.starts_with(&format!("ok room {room} ready")),
                    "round {round}: {answer}\n{}",
                    b.log()
                );
            }
        });
        let (dc, dd) = (root_device(b.room_pid(c)), root_device(b.room_pid(d)));
        assert_ne!(dc, dd, "round {round}: two rooms on one device");
        for dev in [&dc, &dd] {
            assert_eq!(
                backing_file(dev).as_deref(),
                Some(image.as_str()),
                "round {round}: {dev}"
            );
        }
        assert_eq!(loop_devices_of(&b.image).len(), 2, "round {round}");
        // Each start logged its device, once.
        for room in [c, d] {
            assert_eq!(image_notes(&b, room, round + 1).len(), round + 1, "{room}");
        }
        stop(&b, c);
        stop(&b, d);
        let left = settle_loops(&b, &[]);
        assert!(
            left.is_empty(),
            "round {round}: loop devices left: {left:?}"
        );
    }
}
