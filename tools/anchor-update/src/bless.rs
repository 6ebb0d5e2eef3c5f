// SPDX-License-Identifier: GPL-3.0-or-later
//! `bless`: after a healthy boot, keep the slot that booted (drop its boot counter); after
//! an unhealthy one, leave the counter running so systemd-boot falls back by itself; when
//! no slot is left that can boot, say so plainly (the recovery message).

use crate::esp::{Esp, EspError};
use crate::slots::{Counter, EntryName, Slot};
use std::fmt;

/// What the boot check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blessed {
    /// The slot was already good: nothing to do.
    AlreadyGood(Slot),
    /// The counter was removed: the slot is now the known-good one.
    Blessed { slot: Slot, from: String },
    /// Unhealthy: the counter stays; `fallback` boots once the tries are used up.
    NotBlessed {
        slot: Slot,
        left: u32,
        fallback: Option<Slot>,
        reason: String,
    },
}

/// The boot needs a person: every slot has failed (or is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub booted: Slot,
    pub reason: String,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RECOVERY NEEDED: no slot can boot: slot {} has used its last try and failed its \
             health check ({}), slot {} is bad or empty. Keep this machine off the network; \
             write a signed image to the ESP from another machine (anchorctl update apply \
             FILE --esp DIR --running {}, docs/SIGNING.md \"Recovery\")",
            self.booted,
            self.reason,
            self.booted.other(),
            self.booted
        )
    }
}

/// Why bless could not run.
#[derive(Debug)]
pub enum BlessError {
    /// The slot that booted has no file on the ESP (renamed behind our back?).
    Missing(EntryName),
    /// The slot that booted is under several names (a counter rename cut short by a
    /// power loss: FAT has no atomic rename, both names may share the same clusters).
    Several {
        slot: Slot,
        files: Vec<String>,
    },
    Esp(EspError),
}

impl fmt::Display for BlessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlessError::Missing(e) => write!(
                f,
                "the booted slot {} ({}) is not on the ESP",
                e.slot,
                e.file_name()
            ),
            BlessError::Several { slot, files } => write!(
                f,
                "the booted slot {slot} is under {} names ({}), probably a counter rename \
                 cut short by a power loss (both names on the same clusters): not blessed; \
                 check the ESP with fsck.vfat",
                files.len(),
                files.join(", ")
            ),
            BlessError::Esp(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BlessError {}

impl From<EspError> for BlessError {
    fn from(e: EspError) -> Self {
        BlessError::Esp(e)
    }
}

/// Bless (or not) the slot that booted. `health` is `Ok` for a healthy boot, or the reason
/// it is not. Returns the outcome, or a recovery message when no slot can boot.
pub fn bless(
    esp: &Esp,
    booted: EntryName,
    health: Result<(), String>,
) -> Result<Result<Blessed, Recovery>, BlessError> {
    let state = esp.scan()?;
    let slot = booted.slot;
    let mine = match state.files(slot) {
        [one] => one,
        [] => return Err(BlessError::Missing(booted)),
        several => {
            return Err(BlessError::Several {
                slot,
                files: several.iter().map(|f| f.file.clone()).collect(),
            })
        }
    };
    let left = match mine.entry.counter {
        Counter::Good => return Ok(Ok(Blessed::AlreadyGood(slot))),
        Counter::Counting { left, .. } => left,
    };
    match health {
        Ok(()) => {
            let to = EntryName {
                slot,
                counter: Counter::Good,
            }
            .file_name();
            esp.rename(&mine.file, &to)?;
            Ok(Ok(Blessed::Blessed {
                slot,
                from: mine.file.clone(),
            }))
        }
        Err(reason) => {
            let other_ok = state
                .single(slot.other())
                .is_some_and(|f| !f.entry.counter.is_bad());
            if left == 0 && !other_ok {
                return Ok(Err(Recovery {
                    booted: slot,
                    reason,
                }));
            }
            Ok(Ok(Blessed::NotBlessed {
                slot,
                left,
                fallback: other_ok.then_some(slot.other()),
                reason,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esp_with(files: &[&str]) -> (tempfile::TempDir, Esp) {
        let d = tempfile::tempdir().unwrap();
        let esp = Esp::new(d.path());
        std::fs::create_dir_all(esp.entry_dir()).unwrap();
        for f in files {
            std::fs::write(esp.entry_path(f), b"x").unwrap();
        }
        (d, esp)
    }

    fn e(name: &str) -> EntryName {
        EntryName::parse(name).unwrap()
    }

    #[test]
    fn a_healthy_trial_boot_is_blessed() {
        let (_d, esp) = esp_with(&["anchor-A.efi", "anchor-B+2-1.efi"]);
        let r = bless(&esp, e("anchor-B+2-1.efi"), Ok(())).unwrap().unwrap();
        assert_eq!(
            r,
            Blessed::Blessed {
                slot: Slot::B,
                from: "anchor-B+2-1.efi".into()
            }
        );
        let s = esp.scan().unwrap();
        assert_eq!(s.single(Slot::B).unwrap().file, "anchor-B.efi");
        // Blessing again is a no-op.
        assert_eq!(
            bless(&esp, e("anchor-B.efi"), Ok(())).unwrap().unwrap(),
            Blessed::AlreadyGood(Slot::B)
        );
    }

    #[test]
    fn an_unhealthy_boot_keeps_counting_and_names_the_fallback() {
        let (_d, esp) = esp_with(&["anchor-A.efi", "anchor-B+1-2.efi"]);
        let r = bless(
            &esp,
            e("anchor-B+1-2.efi"),
            Err("room work did not start".into()),
        );
        assert_eq!(
            r.unwrap().unwrap(),
            Blessed::NotBlessed {
                slot: Slot::B,
                left: 1,
                fallback: Some(Slot::A),
                reason: "room work did not start".into()
            }
        );
        assert_eq!(
            esp.scan().unwrap().single(Slot::B).unwrap().file,
            "anchor-B+1-2.efi"
        );
    }

    #[test]
    fn no_slot_left_is_a_recovery() {
        let (_d, esp) = esp_with(&["anchor-A+0-3.efi", "anchor-B+0-3.efi"]);
        let r = bless(
            &esp,
            e("anchor-B+0-3.efi"),
            Err("vault did not open".into()),
        )
        .unwrap();
        let rec = r.unwrap_err();
        assert_eq!(rec.booted, Slot::B);
        assert!(rec
            .to_string()
            .starts_with("RECOVERY NEEDED: no slot can boot"));
        // The command it names is one apply takes (tests/apply.rs,
        // recovery_writes_over_a_bad_slot_when_no_slot_can_boot).
        assert!(rec.to_string().contains("--esp DIR --running B,"), "{rec}");
        // A healthy last-chance boot recovers by itself.
        let r = bless(&esp, e("anchor-B+0-3.efi"), Ok(())).unwrap().unwrap();
        assert!(matches!(r, Blessed::Blessed { slot: Slot::B, .. }));
        // With only one slot on the ESP, too.
        let (_d, esp) = esp_with(&["anchor-A+0-3.efi"]);
        assert!(bless(&esp, e("anchor-A+0-3.efi"), Err("x".into()))
            .unwrap()
            .is_err());
    }

    /// A power cut inside a counter rename (FAT has no atomic rename) can leave the booted
    /// slot under two names. bless said "the booted slot B is not on the ESP", which is
    /// false: the error names the files and what to do, and nothing is renamed.
    #[test]
    fn a_booted_slot_under_two_names_is_named_not_called_missing() {
        let files = ["anchor-A.efi", "anchor-B+1-2.efi", "anchor-B+2-1.efi"];
        let (_d, esp) = esp_with(&files);
        let err = bless(&esp, e("anchor-B+1-2.efi"), Ok(())).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("not on the ESP"), "{text}");
        assert!(
            text.contains("anchor-B+1-2.efi") && text.contains("anchor-B+2-1.efi"),
            "{text}"
        );
        assert!(text.contains("fsck.vfat"), "{text}");
        let mut names: Vec<String> = std::fs::read_dir(esp.entry_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, files);
    }

    #[test]
    fn a_missing_booted_file_is_an_error() {
        let (_d, esp) = esp_with(&["anchor-A.efi"]);
        assert!(matches!(
            bless(&esp, e("anchor-B+2-1.efi"), Ok(())),
            Err(BlessError::Missing(_))
        ));
    }
}
