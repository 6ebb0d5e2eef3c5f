// SPDX-License-Identifier: GPL-3.0-or-later
//! The two slots on the ESP and systemd-boot's boot-counting names.
//!
//! A slot is one UKI in `EFI/Linux/` (systemd-boot's Type #2 entries):
//!
//! | file name              | state                                          |
//! |------------------------|------------------------------------------------|
//! | `anchor-A.efi`         | good: blessed, no counter                      |
//! | `anchor-B+3-0.efi`     | trying: 3 boots left, 0 done                   |
//! | `anchor-B+0-3.efi`     | bad: no tries left (systemd-boot sorts it last) |
//! | `anchor-B.efi.new`     | an update being written (not an entry: no .efi) |
//!
//! systemd-boot decrements the counter (renames the file) before it starts an entry;
//! `anchor-update bless` removes the counter once the boot proved healthy. Among entries
//! with tries left, the highest IMAGE_VERSION boots first, so an armed update is tried
//! before the old slot, and an update that used up its tries falls back by itself.

use std::fmt;

/// Directory of the slots on the ESP.
pub const ENTRY_DIR: &str = "EFI/Linux";
/// File name prefix of every slot.
pub const PREFIX: &str = "anchor-";

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn letter(self) -> char {
        match self {
            Slot::A => 'A',
            Slot::B => 'B',
        }
    }

    /// `A` or `B` (either case).
    pub fn parse(text: &str) -> Option<Slot> {
        match text {
            "A" | "a" => Some(Slot::A),
            "B" | "b" => Some(Slot::B),
            _ => None,
        }
    }

    /// Name of the file an update is written to before it is armed.
    pub fn temp_name(self) -> String {
        format!("{PREFIX}{}.efi.new", self.letter())
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// Boot counting state encoded in a slot's file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// No counter: blessed.
    Good,
    /// `+left-done`.
    Counting { left: u32, done: u32 },
}

impl Counter {
    /// Counting with no tries left: systemd-boot will only pick it when nothing else is left.
    pub fn is_bad(self) -> bool {
        matches!(self, Counter::Counting { left: 0, .. })
    }
}

/// A parsed slot file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryName {
    pub slot: Slot,
    pub counter: Counter,
}

/// Most tries an update may be armed with.
pub const MAX_TRIES: u32 = 9;

impl EntryName {
    /// Parse `anchor-A.efi`, `anchor-B+2-1.efi` (prefix, slot letter and `.efi` suffix in
    /// any case, since FAT and the firmware are case-insensitive and systemd-boot
    /// lower-cases entry ids). Anything else is not a slot.
    pub fn parse(file: &str) -> Option<EntryName> {
        let rest = file.get(PREFIX.len()..).filter(|_| {
            file.get(..PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
        })?;
        // systemd-boot takes `.efi` in any case (`.Efi` too) as a boot entry.
        let cut = rest.len().checked_sub(4)?;
        let stem = rest.get(..cut).filter(|_| {
            rest.get(cut..)
                .is_some_and(|s| s.eq_ignore_ascii_case(".efi"))
        })?;
        let mut chars = stem.chars();
        let slot = Slot::parse(&chars.next()?.to_string())?;
        let tail = chars.as_str();
        if tail.is_empty() {
            return Some(EntryName {
                slot,
                counter: Counter::Good,
            });
        }
        let counts = tail.strip_prefix('+')?;
        let (left, done) = match counts.split_once('-') {
            Some((l, d)) => (l, Some(d)),
            None => (counts, None),
        };
        let num = |s: &str| -> Option<u32> {
            if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        Some(EntryName {
            slot,
            counter: Counter::Counting {
                left: num(left)?,
                done: match done {
                    Some(d) => num(d)?,
                    None => 0,
                },
            },
        })
    }

    /// The file name for this state.
    pub fn file_name(self) -> String {
        match self.counter {
            Counter::Good => format!("{PREFIX}{}.efi", self.slot),
            Counter::Counting { left, done } => {
                format!("{PREFIX}{}+{left}-{done}.efi", self.slot)
            }
        }
    }
}

/// The slot a boot-loader path names (`\EFI\Linux\anchor-B+2-1.efi`, or an entry id like
/// `anchor-b.efi`): its last path component, parsed.
pub fn entry_from_loader_path(path: &str) -> Option<EntryName> {
    let file = path.rsplit(['\\', '/']).next()?;
    // systemd-boot may report ids in lower case.
    let normal: String = file
        .char_indices()
        .map(|(i, c)| {
            if i == PREFIX.len() {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    EntryName::parse(&normal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for (name, slot, counter) in [
            ("anchor-A.efi", Slot::A, Counter::Good),
            (
                "anchor-B+3-0.efi",
                Slot::B,
                Counter::Counting { left: 3, done: 0 },
            ),
            (
                "anchor-A+0-3.efi",
                Slot::A,
                Counter::Counting { left: 0, done: 3 },
            ),
        ] {
            let e = EntryName::parse(name).unwrap();
            assert_eq!((e.slot, e.counter), (slot, counter));
            assert_eq!(e.file_name(), name);
        }
        assert_eq!(
            EntryName::parse("anchor-B+2.efi").unwrap().counter,
            Counter::Counting { left: 2, done: 0 }
        );
        assert!(EntryName::parse("anchor-A+0-3.efi")
            .unwrap()
            .counter
            .is_bad());
    }

    /// FAT is case-insensitive and systemd-boot boots `ANCHOR-A.EFI` (an 8.3 name a FAT
    /// tool may write in upper case) as entry `anchor-a.efi`, the id it reports in
    /// LoaderEntrySelected. Matched case-sensitively, the prefix made such a file no slot:
    /// status called slot A empty, apply's floor skipped its version and left it beside
    /// the new image, bless said the booted slot was not on the ESP.
    #[test]
    fn the_prefix_is_matched_in_any_case() {
        let e = EntryName::parse("ANCHOR-A.EFI").unwrap();
        assert_eq!((e.slot, e.counter), (Slot::A, Counter::Good));
        let e = EntryName::parse("Anchor-b+2-1.efi").unwrap();
        assert_eq!(
            (e.slot, e.counter),
            (Slot::B, Counter::Counting { left: 2, done: 1 })
        );
        assert_eq!(EntryName::parse("ANCHOR-C.EFI"), None);
    }

    #[test]
    fn other_files_are_not_slots() {
        for n in [
            "anchor-C.efi",
            "anchor-A.efi.new",
            "anchor-AB.efi",
            "anchor-A+.efi",
            "anchor-A+x-1.efi",
            "anchor-A+1-.efi",
            "debian.efi",
            "anchor-.efi",
            "anchor-A+99999-0.efi",
        ] {
            assert_eq!(EntryName::parse(n), None, "{n}");
        }
    }

    #[test]
    fn loader_paths_name_their_slot() {
        let e = entry_from_loader_path("\\EFI\\Linux\\anchor-B+2-1.efi").unwrap();
        assert_eq!(e.slot, Slot::B);
        assert_eq!(e.counter, Counter::Counting { left: 2, done: 1 });
        assert_eq!(
            entry_from_loader_path("anchor-a.efi").unwrap().slot,
            Slot::A
        );
        assert_eq!(entry_from_loader_path("\\EFI\\Linux\\other.efi"), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "anchor-[AB](\\+[0-9]{1,3}-[0-9]{1,3})?\\.efi|.{0,30}") {
            if let Some(e) = EntryName::parse(&s) {
                prop_assert_eq!(EntryName::parse(&e.file_name()), Some(e));
            }
        }
    }
}
