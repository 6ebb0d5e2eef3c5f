// SPDX-License-Identifier: GPL-3.0-or-later
//! Who may name a vault volume: one top-level room and the rooms nested in it.
//!
//! A volume keeps its data from one opening of a room to the next. Were two unrelated
//! policies to name the same volume, whatever one room wrote would be read by the other
//! when it opened later: a path between rooms outside the courier (spec: the courier is
//! the only way data crosses rooms; invariant 3, no ambient IPC between rooms). A nested
//! room may share its parent's volume (docs/POLICY.md, subset rules: the same `volume`),
//! so the owner of a volume is a whole family, named by its top-level room.
//!
//! The policies of a machine are the `*.toml` files of one directory (parents are found
//! there too), so a policy is checked against its siblings when it is loaded. Every room
//! of a family names its top-level room's volume (the subset rules), so looking at the
//! other top-level policies is enough: if one of them names the same volume, the two
//! families share it.

use std::path::{Path, PathBuf};

use crate::error::{Problem, ProblemKind};
use crate::model::Name;
use crate::nesting::{file_label, policy_files, read_policy_file, Resolved};
use crate::parse::parse;

/// A top-level policy of the directory that names a vault volume.
#[derive(Debug, Clone)]
pub(crate) struct Claimant {
    path: PathBuf,
    room: Name,
    volume: Name,
}

/// The claimants among the policy files `paths`, whose bytes `read` gives (`None`: the
/// file cannot be read). A file that cannot be loaded is no room: it claims nothing (and
/// is refused on its own when anything tries to open it).
pub(crate) fn claimants(
    paths: &[PathBuf],
    mut read: impl FnMut(&Path) -> Option<Vec<u8>>,
) -> Vec<Claimant> {
    paths
        .iter()
        .filter_map(|path| {
            let stem = path.file_stem().and_then(|s| s.to_str())?;
            let other = parse(&file_label(path), &read(path)?).ok()?;
            let volume = other.persist()?.volume().clone();
            (other.parent().is_none() && other.name().as_str() == stem).then(|| Claimant {
                path: path.clone(),
                room: other.name().clone(),
                volume,
            })
        })
        .collect()
}

/// Problems (one per other claimant, in file name order) when a top-level policy in
/// `dir` other than `resolved`'s own top-level room names its vault volume, reported
/// against `file` at the line `line` gives for its `persist.volume` (asked only then).
pub(crate) fn unrelated_claims(
    dir: &Path,
    resolved: &Resolved,
    file: &str,
    line: impl FnOnce(&'static str) -> Option<usize>,
) -> Vec<Problem> {
    if resolved.policy().persist().is_none() {
        return Vec::new();
    }
    let listed = policy_files(dir).map(|paths| claimants(&paths, |p| read_policy_file(p).ok()));
    claims_among(listed.as_deref(), dir, resolved, file, line)
}

/// [`unrelated_claims`] among `listed`, the claimants of `dir`. A directory that cannot be
/// listed refuses the volume (fail closed): an unrelated claimant could be in it unseen.
pub(crate) fn claims_among(
    listed: Result<&[Claimant], &std::io::Error>,
    dir: &Path,
    resolved: &Resolved,
    file: &str,
    line: impl FnOnce(&'static str) -> Option<usize>,
) -> Vec<Problem> {
    let Some(volume) = resolved.policy().persist().map(|p| p.volume()) else {
        return Vec::new();
    };
    let top = crate::vault::family(resolved);
    let key = "persist.volume";
    let all = match listed {
        Ok(all) => all,
        Err(e) => {
            let message = format!(
                "vault volume \"{volume}\": {} cannot be listed to check that no unrelated \
                 room names it too ({e})",
                file_label(dir)
            );
            return vec![Problem::key(file, line(key), key, message).with_kind(ProblemKind::Volume)];
        }
    };
    let others: Vec<_> = all
        .iter()
        .filter(|c| c.room != *top && c.volume == *volume)
        .collect();
    if others.is_empty() {
        return Vec::new();
    }
    let line = line(key);
    others
        .into_iter()
        .map(|c| {
            Problem::key(
                file,
                line,
                key,
                format!(
                    "vault volume \"{volume}\" is also named by {}, a room neither nested in \
                     this one nor containing it: a volume belongs to one top-level room and the \
                     rooms nested in it (data crosses rooms only through the courier)",
                    file_label(&c.path)
                ),
            )
            .with_kind(ProblemKind::Volume)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_cannot_be_listed_refuses_the_volume() {
        let text = "name = \"a\"\nimage = \"base\"\nbackend = \"microvm\"\n[resources]\n\
                    memory = \"512MiB\"\nvcpus = 1\n[persist]\nvolume = \"notes\"\n\
                    size = \"64MiB\"\n";
        let resolved = crate::resolve("a.toml", text.as_bytes(), |_| {
            Err(Problem::file("x", "no parent"))
        })
        .unwrap();
        let unlisted = std::io::Error::other("Input/output error");
        let dir = Path::new("/policies");
        let p = claims_among(Err(&unlisted), dir, &resolved, "a.toml", |_| Some(9));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].kind(), ProblemKind::Volume);
        assert_eq!(p[0].key_path(), Some("persist.volume"));
        assert!(
            p[0].message().contains("/policies cannot be listed"),
            "{p:?}"
        );
        // Listed, with no other claimant: nothing to say.
        assert!(claims_among(Ok(&[]), dir, &resolved, "a.toml", |_| None).is_empty());
    }
}
