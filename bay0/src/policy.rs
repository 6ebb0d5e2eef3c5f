// SPDX-License-Identifier: GPL-3.0-or-later
//! Room policies for bay0: load one policy file (and its parent chain) into the typed,
//! immutable `Policy` that rooms are spawned from. Parsed once; the value is handed on,
//! the file is never consulted again (no check-then-use).
//!
//! The language and its validation live in the `anchor-policy` crate (shared with
//! anchorctl; docs/POLICY.md). Detailed `FILE:LINE:KEY` messages are anchorctl's job: bay0
//! logs one line with the first problem and returns a compact, `Copy` reason.

use std::path::Path;

pub use anchor_policy::{Backend, Name, Network, Policy, Resolved, MAX_DEPTH};

use crate::error::{Error, Result};
use crate::logger::Line;
use core::fmt::Write as _;

/// Loads and validates the policy at `path` and every ancestor it names. On failure the
/// first problem (`FILE:LINE:KEY: message`) is also written into `detail`.
pub fn load(path: &Path, detail: &mut Line) -> Result<Resolved> {
    anchor_policy::load(path).map_err(|e| {
        let first = e.problems().first();
        let n = e.problems().len();
        // Formatted into fixed lines: nothing allocated here.
        match first {
            Some(p) => {
                let _ = write!(detail, "{p}");
                crate::log_warn!(
                    "policy rejected: {p} ({n} problem(s); `anchorctl policy check` lists all)"
                )
            }
            None => crate::log_warn!("policy rejected: {}", path.display()),
        }
        Error::Policy(first.map_or("policy rejected", |p| p.kind().as_str()))
    })
}

/// Loads room `room` from `dir/<room>.toml`. The name is checked against the policy name
/// charset first, so a requested name can never walk out of `dir`.
pub fn load_room(dir: &Path, room: &str, detail: &mut Line) -> Result<Resolved> {
    let name = Name::parse(room).map_err(|_| Error::Policy("invalid room name"))?;
    let path = dir.join(format!("{name}.toml"));
    // No policy file: no such room (not a policy that failed to load).
    if !path.exists() {
        let _ = write!(detail, "there is no {}", path.display());
        return Err(Error::Room("no such room"));
    }
    load(&path, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    #[test]
    fn shipped_rooms_load() {
        for room in ["web", "work", "dev"] {
            let r = load_room(&shipped(), room, &mut Line::default()).unwrap();
            assert_eq!(r.policy().name().as_str(), room);
            assert_eq!(r.depth(), 1);
            assert_eq!(r.policy().backend(), Backend::Microvm);
        }
        let dev = load(&shipped().join("dev.toml"), &mut Line::default()).unwrap();
        assert!(dev.policy().privileged() && dev.policy().nesting().is_some());
    }

    /// Found in `make run`: `anchorctl room start nosuch` said "policy: policy file
    /// unreadable, empty, too large or not UTF-8: ...: cannot read: No such file or
    /// directory (os error 2)", and bay0 logged a rejected policy.
    #[test]
    fn a_room_with_no_policy_file_is_no_such_room() {
        let mut detail = Line::default();
        let e = load_room(&shipped(), "nosuch", &mut detail).unwrap_err();
        assert_eq!(e, Error::Room("no such room"));
        let want = format!("there is no {}", shipped().join("nosuch.toml").display());
        assert_eq!(detail.as_str(), want);
        // A policy file that is there but unreadable is still a policy problem.
        let dir = std::env::temp_dir().join(format!("bay0-nopolicy-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("dir.toml")).unwrap();
        let e = load_room(&dir, "dir", &mut Line::default()).unwrap_err();
        assert!(matches!(e, Error::Policy(_)), "{e:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_room_names_rejected_before_touching_files() {
        for room in [
            "../policies/web",
            "/etc/passwd",
            "WEB",
            "",
            "web.toml",
            "a\nb",
        ] {
            assert_eq!(
                load_room(&shipped(), room, &mut Line::default()).unwrap_err(),
                Error::Policy("invalid room name"),
                "{room:?}"
            );
        }
    }

    #[test]
    fn rejected_policies_give_a_compact_static_reason() {
        let dir = std::env::temp_dir().join(format!("bay0-policy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        let base =
            "image = \"base\"\nbackend = \"microvm\"\n[resources]\nmemory = \"1GiB\"\nvcpus = 1\n";
        write("empty.toml", "");
        write("typo.toml", &format!("name = \"typo\"\n{base}swap = 1\n"));
        write(
            "big.toml",
            &format!("name = \"big\"\n{base}").replace("1GiB", "2TiB"),
        );
        write(
            "kid.toml",
            &format!("name = \"kid\"\nparent = \"web\"\n{base}"),
        );
        write("web.toml", &format!("name = \"web\"\n{base}"));
        write(
            "orphan.toml",
            &format!("name = \"orphan\"\nparent = \"nobody\"\n{base}"),
        );
        let reason = |room: &str| match load_room(&dir, room, &mut Line::default()) {
            Err(Error::Policy(r)) => r,
            other => panic!("{room}: {other:?}"),
        };
        assert_eq!(reason("empty"), anchor_policy::ProblemKind::File.as_str());
        assert_eq!(reason("typo"), anchor_policy::ProblemKind::Shape.as_str());
        assert_eq!(reason("big"), anchor_policy::ProblemKind::Value.as_str());
        assert_eq!(reason("kid"), anchor_policy::ProblemKind::Nesting.as_str());
        // A room with no policy file: `a_room_with_no_policy_file_is_no_such_room`.
        // The compact reason must not say "wider than its parent" of a parent that is
        // not there (it did); the detail line names the missing file.
        assert!(
            reason("orphan").contains("parent missing"),
            "{}",
            reason("orphan")
        );
        assert!(load_room(&dir, "web", &mut Line::default()).is_ok());
        let mut d = Line::default();
        let _ = load_room(&dir, "typo", &mut d);
        let d = String::from_utf8_lossy(d.as_bytes()).into_owned();
        assert!(d.contains("typo.toml") && d.contains("swap"), "{d}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A room whose vault volume an unrelated policy names too is refused (its data would
    /// reach that room across boots, outside the courier), with both files in the detail.
    #[test]
    fn a_room_sharing_its_vault_volume_with_an_unrelated_policy_is_refused() {
        let dir = std::env::temp_dir().join(format!("bay0-policy-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a", "b"] {
            let text = format!(
                "name = \"{name}\"\nimage = \"base\"\nbackend = \"microvm\"\n\
                 [resources]\nmemory = \"1GiB\"\nvcpus = 1\n\
                 [persist]\nvolume = \"notes\"\nsize = \"8MiB\"\n"
            );
            std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
        }
        let mut d = Line::default();
        let e = load_room(&dir, "a", &mut d).unwrap_err();
        assert_eq!(
            e,
            Error::Policy(anchor_policy::ProblemKind::Volume.as_str())
        );
        let d = String::from_utf8_lossy(d.as_bytes()).into_owned();
        assert!(
            d.contains("a.toml") && d.contains("b.toml") && d.contains("\"notes\""),
            "{e:?}: {d}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
