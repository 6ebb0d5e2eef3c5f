// SPDX-License-Identifier: GPL-3.0-or-later
//! A room's vault volume as the vault holds it: the volume file, its owner record, and
//! whether a room may be given it now (bay0 asks at every opening; anchor-vault writes
//! the record when it makes a volume, at unlock).
//!
//! Policies say which family of rooms may name a volume *today* (the `volume` module);
//! the volume itself outlives them. A room removed by an update leaves its volume in
//! /persist, and a new room of another name whose policy names the same volume would get
//! the old room's data: a path between rooms outside the courier, across an update. So
//! every volume carries an owner record, `volumes/<volume>.owner`, one line: the name of
//! the top-level room whose family made it. A room is given the volume only when its own
//! top-level room is the owner; otherwise it is not granted, with one line naming the
//! room, the volume and the owner, and how to hand the volume over
//! (`anchor-vault volume give`) or delete it (`anchor-vault volume delete`).

use core::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::model::Name;
use crate::nesting::Resolved;

/// What follows a volume's name in the name of its file.
pub const IMAGE_SUFFIX: &str = ".img";
/// What follows a volume's name in the name of its owner record.
pub const OWNER_SUFFIX: &str = ".owner";
/// The longest owner record read (a name and a newline fit many times over).
const RECORD_MAX: u64 = 256;

/// The file of `volume` in the vault's volume directory `volumes`.
pub fn image_path(volumes: &Path, volume: &Name) -> PathBuf {
    // Safe to join: a Name has no '/', '.' or other path syntax.
    volumes.join(format!("{volume}{IMAGE_SUFFIX}"))
}

/// The owner record of `volume` in `volumes`.
pub fn owner_path(volumes: &Path, volume: &Name) -> PathBuf {
    volumes.join(format!("{volume}{OWNER_SUFFIX}"))
}

/// The family `room` belongs to: its top-level room (itself when it has no parent).
pub fn family(room: &Resolved) -> &Name {
    room.ancestors().last().unwrap_or(room.policy()).name()
}

/// The owner `volume`'s record names; `None` when it has none. A record that is not a
/// regular file (a symlink, a FIFO), is too long or names no valid room is an error:
/// who owns the volume is then unknown, and the volume is given to nobody.
pub fn read_owner(volumes: &Path, volume: &Name) -> std::io::Result<Option<Name>> {
    let path = owner_path(volumes, volume);
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    if !file.metadata()?.is_file() {
        return Err(invalid("not a regular file".to_owned()));
    }
    let mut text = String::new();
    file.take(RECORD_MAX).read_to_string(&mut text)?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    Name::parse(line)
        .map(Some)
        .map_err(|e| invalid(format!("not an owner record: {e}")))
}

/// Records `owner` as the owner of `volume`: written to a new file, made durable, then
/// renamed over the old record (a crash leaves the old record or the new one).
pub fn write_owner(volumes: &Path, volume: &Name, owner: &Name) -> std::io::Result<()> {
    let path = owner_path(volumes, volume);
    let tmp = volumes.join(format!("{volume}{OWNER_SUFFIX}.new"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(format!("{owner}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(volumes)?.sync_all()
}

/// Why a room is not given its vault volume now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotGranted {
    /// /persist is not open.
    Locked,
    /// No regular file of that name (none, or a symlink, a directory...).
    NotMade,
    /// The file is not exactly the policy's quota.
    SizeDiffers,
    /// The volume belongs to another family of rooms.
    Foreign {
        room: Name,
        volume: Name,
        family: Name,
        owner: Name,
    },
    /// Who owns the volume cannot be told (no record, or one that cannot be read).
    Unowned {
        volume: Name,
        family: Name,
        why: String,
    },
}

impl fmt::Display for NotGranted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotGranted::Locked => f.write_str("the vault is locked"),
            NotGranted::NotMade => f.write_str("the volume was not made"),
            NotGranted::SizeDiffers => f.write_str("its size differs from the policy"),
            NotGranted::Foreign {
                room,
                volume,
                family,
                owner,
            } => {
                write!(
                    f,
                    "volume \"{volume}\" belongs to room \"{owner}\", not to \"{family}\""
                )?;
                if room != family {
                    write!(f, " (the top-level room of \"{room}\")")?;
                }
                write!(
                    f,
                    ": `anchor-vault volume give {volume} --to {family}` hands it and its data \
                     over, `anchor-vault volume delete {volume}` deletes it"
                )
            }
            NotGranted::Unowned {
                volume,
                family,
                why,
            } => write!(
                f,
                "volume \"{volume}\" has no owner record ({why}): `anchor-vault volume give \
                 {volume} --to {family}` gives it to this room's family"
            ),
        }
    }
}

/// The file of `room`'s vault volume in `volumes` and its quota, or why the room gets
/// none now (`None`: the policy asks for none). Given only when the vault is `open`, the
/// file is a regular file (not a symlink) of exactly the policy's quota, and its owner
/// record names the room's family.
pub fn grant(
    volumes: &Path,
    room: &Resolved,
    open: bool,
) -> Option<Result<(PathBuf, u64), NotGranted>> {
    let persist = room.policy().persist()?;
    let (volume, size) = (persist.volume(), persist.size().bytes());
    let file = image_path(volumes, volume);
    if !open {
        return Some(Err(NotGranted::Locked));
    }
    match std::fs::symlink_metadata(&file) {
        Ok(m) if m.is_file() && m.len() == size => {}
        Ok(m) if m.is_file() => return Some(Err(NotGranted::SizeDiffers)),
        _ => return Some(Err(NotGranted::NotMade)),
    }
    let family = family(room);
    let unowned = |why: String| NotGranted::Unowned {
        volume: volume.clone(),
        family: family.clone(),
        why,
    };
    Some(match read_owner(volumes, volume) {
        Ok(Some(owner)) if owner == *family => Ok((file, size)),
        Ok(Some(owner)) => Err(NotGranted::Foreign {
            room: room.policy().name().clone(),
            volume: volume.clone(),
            family: family.clone(),
            owner,
        }),
        Ok(None) => Err(unowned("none was written".to_owned())),
        Err(e) => Err(unowned(format!(
            "{}: {e}",
            crate::file_label(&owner_path(volumes, volume))
        ))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str, parent: Option<&str>) -> String {
        let parent = parent
            .map(|p| format!("parent = \"{p}\"\n"))
            .unwrap_or_default();
        let nesting = if parent.is_empty() {
            "[nesting]\nallowed = true\nmax_children = 1\nmemory = \"512MiB\"\nvcpus = 1\n\
             pids_max = 512\n"
        } else {
            ""
        };
        format!(
            "name = \"{name}\"\n{parent}image = \"base\"\nbackend = \"microvm\"\n\
             [resources]\nmemory = \"512MiB\"\nvcpus = 1\n\
             [persist]\nvolume = \"notes\"\nsize = \"8MiB\"\n{nesting}"
        )
    }

    fn resolved(name: &str, parent: Option<&str>) -> Resolved {
        let top = room(parent.unwrap_or(name), None);
        let text = room(name, parent);
        crate::resolve(&format!("{name}.toml"), text.as_bytes(), |p| {
            Ok((format!("{p}.toml"), top.clone().into_bytes()))
        })
        .unwrap()
    }

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    /// A volume made for one room, whose policy an update removed, is not given to a new
    /// room of another name that names it: the refusal names the room, the volume and
    /// its owner, and says how to hand it over or delete it. The owner's family (its
    /// nested rooms) gets it; once handed over, the new room does.
    #[test]
    fn a_volume_goes_only_to_the_family_that_owns_it() {
        let dir = tempfile::tempdir().unwrap();
        let vols = dir.path();
        std::fs::File::create(vols.join("notes.img"))
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        write_owner(vols, &name("notes"), &name("old")).unwrap();
        let diary = resolved("diary", None);
        let e = grant(vols, &diary, true).unwrap().unwrap_err();
        let line = e.to_string();
        assert!(
            line.starts_with("volume \"notes\" belongs to room \"old\", not to \"diary\": ")
                && line.contains("anchor-vault volume give notes --to diary")
                && line.contains("anchor-vault volume delete notes")
                && !line.contains('\n'),
            "{line}"
        );
        // A nested room of the wrong family is told whose family it is in.
        let kid = resolved("kid", Some("diary"));
        let line = grant(vols, &kid, true).unwrap().unwrap_err().to_string();
        assert!(
            line.contains("not to \"diary\" (the top-level room of \"kid\")"),
            "{line}"
        );
        // The owner and its nested rooms get it.
        let ok = Ok((vols.join("notes.img"), 8 << 20));
        assert_eq!(grant(vols, &resolved("old", None), true), Some(ok.clone()));
        assert_eq!(
            grant(vols, &resolved("kid", Some("old")), true),
            Some(ok.clone())
        );
        // Handed over: the new room gets it, the old owner's family no longer does.
        write_owner(vols, &name("notes"), &name("diary")).unwrap();
        assert_eq!(grant(vols, &diary, true), Some(ok));
        assert!(matches!(
            grant(vols, &resolved("old", None), true),
            Some(Err(NotGranted::Foreign { .. }))
        ));
    }

    /// No record, a record that is a symlink (even to a record naming the right room) or
    /// that names no room: the volume is given to nobody, and the line says why.
    #[test]
    fn a_volume_whose_owner_cannot_be_told_is_given_to_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let vols = dir.path();
        std::fs::File::create(vols.join("notes.img"))
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let diary = resolved("diary", None);
        let refused = |needle: &str| {
            let line = grant(vols, &diary, true).unwrap().unwrap_err().to_string();
            assert!(
                line.starts_with("volume \"notes\" has no owner record (")
                    && line.contains(needle)
                    && line.ends_with("`anchor-vault volume give notes --to diary` gives it to this room's family"),
                "{line}"
            );
        };
        refused("none was written");
        std::fs::write(vols.join("elsewhere"), "diary\n").unwrap();
        std::os::unix::fs::symlink(vols.join("elsewhere"), vols.join("notes.owner")).unwrap();
        refused("notes.owner: ");
        std::fs::remove_file(vols.join("notes.owner")).unwrap();
        std::fs::write(vols.join("notes.owner"), "../diary\n").unwrap();
        refused("not an owner record");
        std::fs::write(vols.join("notes.owner"), "diary").unwrap();
        assert!(grant(vols, &diary, true).unwrap().is_ok());
    }

    #[test]
    fn the_static_reasons_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let vols = dir.path();
        let diary = resolved("diary", None);
        assert_eq!(grant(vols, &diary, false), Some(Err(NotGranted::Locked)));
        assert_eq!(grant(vols, &diary, true), Some(Err(NotGranted::NotMade)));
        std::fs::File::create(vols.join("notes.img"))
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        assert_eq!(
            grant(vols, &diary, true),
            Some(Err(NotGranted::SizeDiffers))
        );
    }
}
