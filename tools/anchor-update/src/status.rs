// SPDX-License-Identifier: GPL-3.0-or-later
//! `status`: the slots, their versions and tries left, which one runs and which one the
//! next boot will pick.

use crate::esp::{next_boot, Esp, EspError};
use crate::slots::{Counter, Slot};
use crate::version::Version;
use std::fmt::Write;

/// One line per slot, then the leftovers and the next boot. `running` is the slot that
/// booted, when known.
pub fn report(esp: &Esp, running: Option<Slot>) -> Result<String, EspError> {
    let state = esp.scan()?;
    let mut out = String::new();
    let mut candidates = Vec::new();
    let mut unreadable = false;
    for slot in Slot::ALL {
        let files = state.files(slot);
        let mark = if running == Some(slot) {
            " (running)"
        } else {
            ""
        };
        if files.is_empty() {
            let _ = writeln!(out, "slot {slot}: empty{mark}");
            continue;
        }
        for f in files {
            let version = esp.version_of(&f.file);
            let vtext = match &version {
                Ok(v) => format!("version {v}"),
                Err(e) => format!("unreadable ({e})"),
            };
            let state_text = match f.entry.counter {
                Counter::Good => "good".to_string(),
                Counter::Counting { left: 0, done } => {
                    format!("bad: 0 tries left after {done} failed boots")
                }
                Counter::Counting { left, done } => {
                    format!("on trial: {left} tries left, {done} done")
                }
            };
            let _ = writeln!(out, "slot {slot}: {vtext}, {state_text}{mark} [{}]", f.file);
            match version {
                Ok(v) => candidates.push((slot, f.entry.counter, v)),
                Err(_) => unreadable = true,
            }
        }
        if files.len() > 1 {
            let _ = writeln!(
                out,
                "slot {slot}: WARNING: {} files hold this slot",
                files.len()
            );
        }
    }
    for t in &state.temps {
        let _ = writeln!(
            out,
            "leftover: {t} (an interrupted update; the next apply removes it)"
        );
    }
    match next_boot(&candidates) {
        Some(s) => {
            let all_bad = candidates.iter().all(|c| c.1.is_bad());
            let note = if all_bad {
                " (RECOVERY: every slot is bad)"
            } else {
                ""
            };
            let _ = writeln!(out, "next boot: slot {s}{note}");
        }
        None if unreadable => {
            let _ = writeln!(
                out,
                "next boot: nothing to boot (RECOVERY: no slot's image can be read, and \
                 systemd-boot lists none it cannot read)"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "next boot: nothing to boot (RECOVERY: the ESP holds no slot)"
            );
        }
    }
    Ok(out)
}

/// Versions on the ESP, for callers that need them (the highest good one is the floor).
pub fn good_versions(esp: &Esp) -> Result<Vec<(Slot, Version)>, EspError> {
    let state = esp.scan()?;
    let mut out = Vec::new();
    for slot in Slot::ALL {
        if let Some(f) = state.single(slot) {
            if f.entry.counter == Counter::Good {
                out.push((slot, esp.version_of(&f.file)?));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_esp_says_there_is_nothing_to_boot() {
        let d = tempfile::tempdir().unwrap();
        let r = report(&Esp::new(d.path()), None).unwrap();
        assert_eq!(
            r,
            "slot A: empty\nslot B: empty\nnext boot: nothing to boot (RECOVERY: the ESP holds no slot)\n"
        );
    }
}
