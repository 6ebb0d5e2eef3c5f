// SPDX-License-Identifier: GPL-3.0-or-later
//! The A/B update hook: once per boot, after the boot room was started, bay0 spawns
//! `anchor-update bless`, which judges the boot healthy or not and blesses the running
//! slot (docs/SIGNING.md). All the logic lives in that helper; bay0 only says what it saw.

use crate::config::RoomName;
use crate::error::Result;
use std::ffi::OsString;

/// The helper, present in a base built as a UKI (uki/build.sh).
pub const HELPER: &str = "/usr/lib/anchor/anchor-update";

/// The helper's command line: with the boot room's VMM pid when it started, or the
/// reason the boot is unhealthy when it did not.
pub fn bless_argv(room: Option<(RoomName, Option<i32>)>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![HELPER.into(), "bless".into()];
    match room {
        Some((name, Some(pid))) => {
            argv.extend(["--room".into(), name.as_str().into(), "--room-pid".into()]);
            argv.push(pid.to_string().into());
        }
        Some((_, None)) => argv.extend(["--unhealthy".into(), "the boot room did not open".into()]),
        None => {}
    }
    argv
}

/// Spawn the helper; None when this base has none (booted without a UKI).
pub fn spawn_bless(room: Option<(RoomName, Option<i32>)>) -> Option<Result<i32>> {
    if !std::path::Path::new(HELPER).exists() {
        return None;
    }
    Some(crate::hosted::spawn(&bless_argv(room)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_hears_how_the_boot_room_went() {
        let work = RoomName::parse("work").unwrap();
        let words = |r| {
            bless_argv(r)
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(words(None), format!("{HELPER} bless"));
        assert_eq!(
            words(Some((work, Some(42)))),
            format!("{HELPER} bless --room work --room-pid 42")
        );
        assert_eq!(
            words(Some((work, None))),
            format!("{HELPER} bless --unhealthy the boot room did not open")
        );
    }
}
