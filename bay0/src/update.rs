// SPDX-License-Identifier: GPL-3.0-or-later
//! The A/B update hook: once per boot, after the boot rooms were started, bay0 spawns
//! `anchor-update bless --room NAME...`. The helper judges the boot (each boot room must
//! reach ready, as bay0's control socket reports it) and blesses the running slot
//! (docs/SIGNING.md). All the logic lives in the helper. Its output comes back through a
//! pipe and is shown a line at a time, never inside a room's open line (see
//! `anchor_text::lines`).

use crate::config::RoomName;
use crate::error::Result;
use std::ffi::OsString;
use std::os::fd::OwnedFd;

/// The helper, present in a base built as a UKI (uki/build.sh).
pub const HELPER: &str = "/usr/lib/anchor/anchor-update";

/// The helper's command line: `bless`, the boot rooms it must see ready, and why the
/// boot is already known to be unhealthy (a configured vault that did not open).
pub fn bless_argv(rooms: &[Option<RoomName>], unhealthy: Option<&str>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![HELPER.into(), "bless".into()];
    for name in rooms.iter().flatten() {
        argv.push("--room".into());
        argv.push(name.as_str().into());
    }
    if let Some(why) = unhealthy {
        argv.push("--unhealthy".into());
        argv.push(why.into());
    }
    argv
}

/// Spawn the helper: its pid and the read end of its output; None when this base has
/// none (booted without a UKI).
pub fn spawn_bless(
    rooms: &[Option<RoomName>],
    unhealthy: Option<&str>,
) -> Option<Result<(i32, OwnedFd)>> {
    if !std::path::Path::new(HELPER).exists() {
        return None;
    }
    let argv = bless_argv(rooms, unhealthy);
    Some(
        crate::sys::pipe()
            .map_err(Into::into)
            .and_then(|(out, w)| Ok((crate::hosted::spawn("spawn command", &argv, Some(w))?, out))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_hears_the_boot_rooms() {
        let r = |s| Some(crate::config::room_name(s).unwrap());
        let words = |rooms: &[Option<RoomName>]| {
            let v: Vec<String> = bless_argv(rooms, None)
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect();
            v.join(" ")
        };
        assert_eq!(words(&[None, None]), format!("{HELPER} bless"));
        assert_eq!(
            words(&[r("work"), r("web")]),
            format!("{HELPER} bless --room work --room web")
        );
        let v: Vec<String> = bless_argv(&[None], Some("the vault stays locked"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(v[2..], ["--unhealthy", "the vault stays locked"]);
    }
}
