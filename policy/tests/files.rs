// SPDX-License-Identifier: GPL-3.0-or-later
//! Loading policies from files: the shipped policies, fixtures, and file-level limits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use anchor_policy::{load, Backend, Network, PolicyError};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn problems(e: &PolicyError) -> Vec<String> {
    e.problems().iter().map(ToString::to_string).collect()
}

fn has(e: &PolicyError, file: &Path, rest: &str) {
    let want = format!("{}{rest}", file.display());
    assert!(
        problems(e).iter().any(|p| p.starts_with(&want)),
        "expected a problem starting `{want}`, got:\n{e}"
    );
}

#[test]
fn shipped_policies_are_valid_and_mean_what_they_say() {
    let web = load(&repo("policies/web.toml")).unwrap();
    let work = load(&repo("policies/work.toml")).unwrap();
    let dev = load(&repo("policies/dev.toml")).unwrap();
    for r in [&web, &work, &dev] {
        assert_eq!(r.depth(), 1);
        assert_eq!(r.policy().backend(), Backend::Microvm);
    }
    // The browser is amnesiac and cannot nest; work has no network; only the workshop is
    // root, and only inside its own microVM.
    assert!(web.policy().persist().is_none() && web.policy().nesting().is_none());
    assert_eq!(work.policy().network(), Network::None);
    assert!(work.policy().persist().is_some());
    assert!(dev.policy().privileged() && !web.policy().privileged() && !work.policy().privileged());
    assert!(dev.policy().nesting().is_some());
    // Courier rights agree pairwise: whatever one room may send, the other may receive.
    let all = [web.policy(), work.policy(), dev.policy()];
    for from in all {
        for to in from.courier().send_to() {
            let target = all
                .iter()
                .find(|p| p.name() == to)
                .expect("send_to names a shipped room");
            assert!(
                target.courier().receive_from().contains(from.name()),
                "{} -> {to}",
                from.name()
            );
        }
    }
}

#[test]
fn nested_fixture_resolves_through_its_parent_file() {
    let lab = load(&fixture("nested/lab.toml")).unwrap();
    assert_eq!(lab.depth(), 2);
    assert_eq!(lab.ancestors()[0].name().as_str(), "shop");
    assert_eq!(lab.policy().resources().memory().mib(), 512);
}

#[test]
fn greedy_child_reports_every_widening() {
    let path = fixture("nested/greedy.toml");
    let e = load(&path).unwrap_err();
    has(&e, &path, ":5:backend: \"namespaces\" is weaker");
    has(&e, &path, ":7:devices: \"camera\" is not granted");
    has(
        &e,
        &path,
        ":10:resources.memory: 1GiB exceeds parent \"shop\"'s nesting.memory ceiling",
    );
    has(&e, &path, ":14:courier.send_to: \"web\" is not in parent");
    has(
        &e,
        &path,
        ":resources.pids_max: 512 exceeds parent \"shop\"'s nesting.pids_max ceiling (256) \
         (the default; write a smaller value)",
    );
}

#[test]
fn bad_fixtures_are_rejected_with_file_line_key() {
    let unknown = fixture("bad/unknown-key.toml");
    has(
        &load(&unknown).unwrap_err(),
        &unknown,
        ":5:netwrok: unknown key",
    );
    let units = fixture("bad/bad-units.toml");
    let e = load(&units).unwrap_err();
    has(&e, &units, ":7:resources.memory: unknown size unit \"GB\"");
    has(&e, &units, ":8:resources.vcpus: 0 is out of range");
    has(&e, &units, ":11:lifetime.max: unknown duration unit");
    let misnamed = fixture("bad/misnamed.toml");
    has(
        &load(&misnamed).unwrap_err(),
        &misnamed,
        ":2:name: \"something-else\" does not match",
    );
}

#[test]
fn unreadable_and_special_files_rejected() {
    let missing = fixture("bad/does-not-exist.toml");
    has(&load(&missing).unwrap_err(), &missing, ": cannot read");
    let dir = fixture("bad");
    has(&load(&dir).unwrap_err(), &dir, ": not a regular file");
    let zero = Path::new("/dev/zero");
    has(&load(zero).unwrap_err(), zero, ": not a regular file");
    // A FIFO no one writes: refused at once, never waited on (the open does not block,
    // and the check is made on what was opened, so a FIFO swapped in for a checked
    // file cannot hold the reader either).
    let fifo = tempdir().join("fifo.toml");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    has(&load(&fifo).unwrap_err(), &fifo, ": not a regular file");
    std::fs::remove_file(&fifo).unwrap();
}

/// A policy whose `name` differs from its file's name is refused with one plain line that
/// quotes the file's real name: a terminal escape in the file name is escaped (it went
/// to the terminal raw), a name that is not UTF-8 or has no `.toml` is quoted as it is
/// (it was quoted as ".toml", "noext.toml", ".toml.toml").
#[test]
fn a_misnamed_file_is_quoted_escaped_and_as_named() {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir().join(format!("anchor-policy-misnamed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = "name = \"a\"\nimage = \"base\"\nbackend = \"microvm\"\n\
                [resources]\nmemory = \"1GiB\"\nvcpus = 1\n";
    for (file, quoted) in [
        (&b"b\x1b[31m.toml"[..], "\"b\\u{1b}[31m.toml\""),
        (&b"c\xff.toml"[..], "\"c\u{fffd}.toml\""),
        (&b".toml"[..], "\".toml\""),
        (&b"noext"[..], "\"noext\""),
    ] {
        let path = dir.join(std::ffi::OsStr::from_bytes(file));
        std::fs::write(&path, text).unwrap();
        let e = load(&path).unwrap_err();
        let lines = problems(&e);
        assert_eq!(lines.len(), 1, "{e}");
        let line = &lines[0];
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.ends_with(&format!(
                ":1:name: \"a\" does not match the file name {quoted} (parents are found \
                 as <name>.toml, so they must agree)"
            )),
            "{line:?}"
        );
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_file_rejected_before_parsing() {
    let dir = tempdir();
    let path = dir.join("big.toml");
    std::fs::write(&path, vec![b'#'; 10 * 1024 * 1024]).unwrap();
    has(
        &load(&path).unwrap_err(),
        &path,
        ": file is 10485760 bytes; the limit is 65536 bytes",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anchor-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A vault volume belongs to one top-level room and the rooms nested in it. Two unrelated
/// policies naming one volume would hand its data from one room to the other across
/// boots (room A writes it, room B opens it later): a path between rooms outside the
/// courier. Each of them, and every room nested in either, is refused in one line naming
/// both files and the volume; rooms with other volumes or none are untouched.
#[test]
fn unrelated_policies_naming_one_vault_volume_are_refused() {
    let dir = std::env::temp_dir().join(format!("anchor-policy-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let room = |name: &str, extra: &str, volume: Option<&str>| {
        let persist = volume
            .map(|v| format!("[persist]\nvolume = \"{v}\"\nsize = \"64MiB\"\n"))
            .unwrap_or_default();
        let text = format!(
            "name = \"{name}\"\n{extra}image = \"base\"\nbackend = \"microvm\"\n\
             [resources]\nmemory = \"512MiB\"\nvcpus = 1\n{persist}"
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let nesting = "[nesting]\nallowed = true\nmax_children = 1\nmemory = \"512MiB\"\n\
                   vcpus = 1\npids_max = 512\n";
    let a = room("a", "", Some("notes"));
    // The nested room shares its parent's volume: that is allowed.
    std::fs::write(&a, std::fs::read_to_string(&a).unwrap() + nesting).unwrap();
    let kid = room("kid", "parent = \"a\"\n", Some("notes"));
    let c = room("c", "", Some("other"));
    let d = room("d", "", None);
    for ok in [&a, &kid, &c, &d] {
        load(ok).unwrap();
    }
    let b = room("b", "", Some("notes"));
    let claim = |e: &PolicyError, file: &Path, other: &Path| {
        let p = problems(e);
        assert_eq!(p.len(), 1, "{e}");
        assert!(
            p[0].starts_with(&format!("{}:", file.display()))
                && p[0].contains(":persist.volume: vault volume \"notes\" is also named by ")
                && p[0].contains(&other.display().to_string())
                && !p[0].contains('\n'),
            "{e}"
        );
    };
    claim(&load(&a).unwrap_err(), &a, &b);
    claim(&load(&b).unwrap_err(), &b, &a);
    claim(&load(&kid).unwrap_err(), &kid, &b);
    load(&c).unwrap();
    load(&d).unwrap();
    // A file that does not declare the name its file says (never loadable, so never a
    // room) claims nothing.
    std::fs::rename(&b, dir.join("misnamed.toml")).unwrap();
    load(&a).unwrap();
    load(&kid).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `load_dir` (each file read and parsed once, what anchor-vault does at unlock) answers
/// exactly as `load` does file by file, over a directory holding every case the volume
/// check and the parent chain see: two unrelated claimants of one volume, a child of one
/// of them, a room with a volume of its own, a file that does not parse, a misnamed
/// file, a child whose parent is missing, and a directory named like a policy.
#[test]
fn load_dir_answers_as_load_does_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let room = |name: &str, parent: Option<&str>, volume: &str| {
        let parent = parent.map_or(String::new(), |p| format!("parent = \"{p}\"\n"));
        let nesting = if parent.is_empty() {
            "[nesting]\nallowed = true\nmax_children = 1\nmemory = \"512MiB\"\nvcpus = 1\npids_max = 512\n"
        } else {
            ""
        };
        format!(
            "name = \"{name}\"\n{parent}image = \"base\"\nbackend = \"microvm\"\n\
             [resources]\nmemory = \"512MiB\"\nvcpus = 1\n\
             [persist]\nvolume = \"{volume}\"\nsize = \"16MiB\"\n{nesting}"
        )
    };
    let files = [
        ("a", room("a", None, "shared")),
        ("b", room("b", None, "shared")),
        ("c", room("c", Some("a"), "shared")),
        ("d", room("d", None, "own")),
        ("e", "name = \"e\"\nvcpus = [\n".to_owned()),
        ("f", room("other", None, "own")),
        ("g", room("g", Some("ghost"), "own")),
    ];
    for (stem, text) in &files {
        std::fs::write(dir.path().join(format!("{stem}.toml")), text).unwrap();
    }
    std::fs::create_dir(dir.path().join("h.toml")).unwrap();
    let each: Vec<_> = anchor_policy::policy_files(dir.path())
        .unwrap()
        .into_iter()
        .map(|f| (f.clone(), load(&f)))
        .collect();
    let all = anchor_policy::load_dir(dir.path()).unwrap();
    assert_eq!(all, each);
    // The cases are what they claim: a, b and c refused for the shared volume, d accepted.
    let refused: Vec<bool> = all.iter().map(|(_, r)| r.is_err()).collect();
    assert_eq!(
        refused,
        [true, true, true, false, true, true, true, true],
        "{all:#?}"
    );
    assert!(anchor_policy::load_dir(&dir.path().join("none")).is_err());
}
