// SPDX-License-Identifier: GPL-3.0-or-later
//! Hostile policies: each must be rejected with the right `FILE:LINE:KEY: message`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use anchor_policy::{parse, resolve, Name, PolicyError, Problem, Resolved, MAX_PROBLEMS};

/// A valid top-level room; cases append to or edit it.
const BASE: &str = "name = \"room\"\nimage = \"base\"\nbackend = \"microvm\"\n\
[resources]\nmemory = \"1GiB\"\nvcpus = 1\n";

fn rejected(file: &str, bytes: &[u8]) -> PolicyError {
    match parse(file, bytes) {
        Ok(p) => panic!("{file}: hostile policy accepted: {p:?}"),
        Err(e) => e,
    }
}

/// Asserts that some problem renders as `prefix` followed by a message containing `needle`.
fn assert_problem(err: &PolicyError, prefix: &str, needle: &str) {
    let found = err.problems().iter().any(|p| {
        let s = p.to_string();
        s.starts_with(prefix) && s[prefix.len()..].starts_with(": ") && s.contains(needle)
    });
    assert!(
        found,
        "expected a problem `{prefix}: ...{needle}...`, got:\n{err}"
    );
}

#[test]
fn hostile_single_files() {
    let huge_nesting = format!(
        "{BASE}[lifetime]\nmax = {}1{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("unknown top-level key", BASE.replace("image", "imag").into_bytes(), "t.toml:2:imag", "unknown key"),
        ("unknown key in a table", format!("{BASE}swap = \"1GiB\"\n").into_bytes(), "t.toml:7:resources.swap", "unknown key"),
        ("unknown table", format!("{BASE}[gpu]\nx = 1\n").into_bytes(), "t.toml:7:gpu", "unknown key"),
        ("wrong type: string for integer", BASE.replace("vcpus = 1", "vcpus = \"two\"").into_bytes(), "t.toml:6:resources.vcpus", "expected an integer, found string"),
        ("wrong type: integer for string", BASE.replace("\"microvm\"", "1").into_bytes(), "t.toml:3:backend", "expected a string, found integer"),
        ("wrong type: float", BASE.replace("vcpus = 1", "vcpus = 1.5").into_bytes(), "t.toml:6:resources.vcpus", "expected an integer, found float"),
        ("negative number", BASE.replace("vcpus = 1", "vcpus = -1").into_bytes(), "t.toml:6:resources.vcpus", "-1 is out of range 1..=64"),
        ("huge number", format!("{BASE}pids_max = 9223372036854775807\n").into_bytes(), "t.toml:7:resources.pids_max", "out of range 16..=65536"),
        ("integer overflow past i64", BASE.replace("vcpus = 1", "vcpus = 99999999999999999999999").into_bytes(), "t.toml:6:resources.vcpus", "integer does not fit in 64 bits"),
        ("u32 wrap-around", format!("{BASE}cpu_weight = 4294967396\n").into_bytes(), "t.toml:7:resources.cpu_weight", "out of range"),
        ("size overflow", BASE.replace("1GiB", "99999999999TiB").into_bytes(), "t.toml:5:resources.memory", "overflows 64 bits"),
        ("bad unit", BASE.replace("1GiB", "512MB").into_bytes(), "t.toml:5:resources.memory", "unknown size unit \"MB\""),
        ("no unit", BASE.replace("\"1GiB\"", "\"1024\"").into_bytes(), "t.toml:5:resources.memory", "has no unit"),
        ("fractional size", BASE.replace("1GiB", "1.5GiB").into_bytes(), "t.toml:5:resources.memory", "unknown size unit \".5GiB\""),
        ("zero memory", BASE.replace("1GiB", "0GiB").into_bytes(), "t.toml:5:resources.memory", "must not be zero"),
        ("memory below minimum", BASE.replace("1GiB", "1MiB").into_bytes(), "t.toml:5:resources.memory", "out of range 32MiB..=1TiB"),
        ("bad duration unit", format!("{BASE}[lifetime]\nmax = \"8 hours\"\n").into_bytes(), "t.toml:8:lifetime.max", "unknown duration unit"),
        ("idle longer than max", format!("{BASE}[lifetime]\nmax = \"1h\"\nidle = \"2h\"\n").into_bytes(), "t.toml:9:lifetime.idle", "longer than lifetime.max"),
        ("empty file", Vec::new(), "t.toml", "file is empty"),
        ("whitespace-only file", b"\n  \n\t\n".to_vec(), "t.toml", "file is empty"),
        ("invalid UTF-8", {
            let mut b = BASE.as_bytes().to_vec();
            b.extend_from_slice(b"pids_max = 1\xff\n");
            b
        }, "t.toml:7", "not valid UTF-8"),
        ("control character in name", BASE.replace("\"room\"", "\"ro\\u0007om\"").into_bytes(), "t.toml:1:name", "contains control characters"),
        ("escape sequence in a courier name", format!("{BASE}[courier]\nsend_to = [\"ok\", \"\\u001b[31mred\"]\n").into_bytes(), "t.toml:8:courier.send_to[1]", "contains control characters"),
        ("upper case and slash in image", BASE.replace("\"base\"", "\"../Base\"").into_bytes(), "t.toml:2:image", "not a valid name"),
        ("name too long", BASE.replace("\"room\"", &format!("\"{}\"", "r".repeat(33))).into_bytes(), "t.toml:1:name", "longer than 32"),
        ("10 MB file", {
            let mut b = BASE.as_bytes().to_vec();
            b.resize(10 * 1024 * 1024, b'#');
            b
        }, "t.toml", "file is 10485760 bytes; the limit is 65536 bytes"),
        ("deeply nested arrays", huge_nesting.into_bytes(), "t.toml:8:lifetime.max", "recursion"),
        ("deeply dotted key", format!("{BASE}{} = 1\n", vec!["a"; 20_000].join(".")).into_bytes(), "t.toml:7", "nested too deep"),
        ("deeply dotted table", format!("{BASE}[{}]\n", vec!["a"; 90].join(".")).into_bytes(), "t.toml:7", "nested too deep"),
        ("duplicate key", format!("{BASE}vcpus = 2\n").into_bytes(), "t.toml:7:resources.vcpus", "duplicate key"),
        ("duplicate table", format!("{BASE}[resources]\n").into_bytes(), "t.toml:7:resources", "duplicate key"),
        ("missing backend (no silent default)", BASE.replace("backend = \"microvm\"\n", "").into_bytes(), "t.toml:backend", "missing; there is no default"),
        ("missing memory", BASE.replace("memory = \"1GiB\"\n", "").into_bytes(), "t.toml:resources.memory", "missing"),
        ("unknown backend", BASE.replace("\"microvm\"", "\"kvm\"").into_bytes(), "t.toml:3:backend", "not one of"),
        ("unknown network", format!("network = \"bridged\"\n{BASE}").into_bytes(), "t.toml:1:network", "not one of"),
        ("unknown device", format!("devices = [\"display\", \"keylogger\"]\n{BASE}").into_bytes(), "t.toml:1:devices[1]", "not one of"),
        ("duplicate device", format!("devices = [\"gpu\", \"gpu\"]\n{BASE}").into_bytes(), "t.toml:1:devices[1]", "listed twice"),
        ("root on the host kernel", format!("privileged = true\n{BASE}").replace("\"microvm\"", "\"namespaces\"").into_bytes(), "t.toml:1:privileged", "needs backend = \"microvm\""),
        ("root with auto backend", format!("privileged = true\n{BASE}").replace("\"microvm\"", "\"auto\"").into_bytes(), "t.toml:1:privileged", "needs backend"),
        ("own parent", format!("parent = \"room\"\n{BASE}").into_bytes(), "t.toml:1:parent", "its own parent"),
        ("courier to itself", format!("{BASE}[courier]\nreceive_from = [\"room\"]\n").into_bytes(), "t.toml:8:courier.receive_from[0]", "cannot name itself"),
        ("courier quota in bytes", format!("{BASE}[courier]\nmax_size = \"5000\"\n").into_bytes(), "t.toml:8:courier.max_size", "unit"),
        ("courier quota over 1TiB", format!("{BASE}[courier]\nmax_size = \"2TiB\"\n").into_bytes(), "t.toml:8:courier.max_size", "out of range 1MiB..=1TiB"),
        ("persist without size", format!("{BASE}[persist]\nvolume = \"v\"\n").into_bytes(), "t.toml:persist.size", "missing"),
        ("ceiling above own resources", format!("{BASE}[nesting]\nallowed = true\nmax_children = 1\nmemory = \"2GiB\"\nvcpus = 1\npids_max = 16\n").into_bytes(), "t.toml:10:nesting.memory", "exceeds the room's own"),
        ("nesting without a ceiling", format!("{BASE}[nesting]\nallowed = true\n").into_bytes(), "t.toml:nesting.max_children", "missing"),
        ("ceiling while nesting is off", format!("{BASE}[nesting]\nvcpus = 1\n").into_bytes(), "t.toml:8:nesting.vcpus", "nesting.allowed is not true"),
    ];
    assert!(cases.len() >= 20);
    for (what, bytes, prefix, needle) in &cases {
        let err = rejected("t.toml", bytes);
        assert!(!err.problems().is_empty(), "{what}");
        let found = err.problems().iter().any(|p| {
            let s = p.to_string();
            s.starts_with(prefix) && s[prefix.len()..].starts_with(": ") && s.contains(needle)
        });
        assert!(
            found,
            "{what}: expected `{prefix}: ...{needle}...`, got:\n{err}"
        );
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = "name = \"Bad Name\"\nimage = \"base\"\nbackend = \"kvm\"\nnetwork = \"all\"\n\
[resources]\nmemory = \"1GB\"\nvcpus = 0\npids_max = -5\n";
    let err = rejected("many.toml", text.as_bytes());
    for prefix in [
        "many.toml:1:name",
        "many.toml:3:backend",
        "many.toml:4:network",
        "many.toml:6:resources.memory",
        "many.toml:7:resources.vcpus",
        "many.toml:8:resources.pids_max",
    ] {
        assert_problem(&err, prefix, "");
    }
    assert_eq!(err.problems().len(), 6, "{err}");
}

/// A 64 KiB file holds thousands of bad entries: the report lists the first
/// MAX_PROBLEMS in file order and counts the rest on one line, for every kind of
/// problem (values, shape, duplicates), and a child of such a parent still says first
/// that its parent is invalid. (Each problem once also cost a scan of the whole text
/// for its line: seconds for one file.)
#[test]
fn thousands_of_problems_make_a_bounded_report() {
    let fill = |head: &str, entry: &str| {
        let mut t = format!("{BASE}{head}");
        let mut n = 0;
        while t.len() + entry.len() + 2 < anchor_policy::MAX_FILE_BYTES {
            t.push_str(entry);
            n += 1;
        }
        t.push_str("]\n");
        (t, n)
    };
    let cases = [
        (
            "bad names",
            "[courier]\nsend_to = [\n",
            "\"A\",\n",
            "t.toml:9:courier.send_to[0]",
        ),
        (
            "duplicates",
            "[courier]\nsend_to = [\"a\", ",
            "\"a\",",
            "t.toml:8:courier.send_to[1]",
        ),
        (
            "wrong types",
            "[courier]\nsend_to = [\n",
            "1,\n",
            "t.toml:9:courier.send_to[0]",
        ),
    ];
    for (what, head, entry, first) in cases {
        let (text, n) = fill(head, entry);
        assert!(n > 5000, "{what}: {n}");
        let err = rejected("t.toml", text.as_bytes());
        let problems = err.problems();
        assert_eq!(problems.len(), MAX_PROBLEMS + 1, "{what}");
        assert!(
            problems[0].to_string().starts_with(first),
            "{what}: {}",
            problems[0]
        );
        let lines: Vec<usize> = problems[..MAX_PROBLEMS]
            .iter()
            .map(|p| p.line_number().unwrap())
            .collect();
        assert!(
            lines.windows(2).all(|w| w[0] <= w[1]),
            "{what}: not in file order"
        );
        let last = problems[MAX_PROBLEMS].to_string();
        let counted = n - MAX_PROBLEMS;
        assert_eq!(
            last,
            format!("t.toml: {counted} more problem(s) not listed (at most {MAX_PROBLEMS} are)"),
            "{what}"
        );
        assert!(
            err.to_string().len() < 100 * 200,
            "{what}: {} bytes",
            err.to_string().len()
        );
    }
    let mut many_keys = BASE.to_owned();
    for i in 0.. {
        let line = format!("k{i} = 1\n");
        if many_keys.len() + line.len() > anchor_policy::MAX_FILE_BYTES {
            break;
        }
        many_keys.push_str(&line);
    }
    let err = rejected("t.toml", many_keys.as_bytes());
    assert_eq!(err.problems().len(), MAX_PROBLEMS + 1);
    // A key is user text too: a 60 000-byte one is cut like any other.
    let long_key = format!("{BASE}{} = 1\n", "k".repeat(60_000));
    let long = rejected("t.toml", long_key.as_bytes());
    let cut = format!("t.toml:7:resources.\"{}...\": unknown key", "k".repeat(40));
    assert!(long.to_string().starts_with(&cut), "{long}");
    assert!(long.to_string().len() < 300, "{long}");
    // And in a syntax error, where the key comes from the line itself.
    for text in [
        format!("{BASE}{} = \n", "k".repeat(60_000)),
        format!("{BASE}[{t}]\n[{t}]\n", t = "k".repeat(30_000)),
    ] {
        let long = rejected("t.toml", text.as_bytes());
        assert!(long.to_string().contains(&"k".repeat(40)), "{long}");
        assert!(long.to_string().len() < 300, "{long}");
    }
    assert_problem(&err, "t.toml:7:resources.k0", "unknown key");

    let mut files = BTreeMap::new();
    files.insert("kid".to_owned(), nestable("kid", Some("big")));
    files.insert("big".to_owned(), many_keys.replace("\"room\"", "\"big\""));
    let err = resolve_in(&files, "kid").unwrap_err();
    assert_eq!(err.problems().len(), MAX_PROBLEMS + 1, "{err}");
    assert!(
        err.problems()[0]
            .to_string()
            .starts_with("kid.toml:2:parent: parent \"big\""),
        "{}",
        err.problems()[0]
    );
    assert_problem(&err, "big.toml:7:resources.k0", "unknown key");
    let last = err.problems()[MAX_PROBLEMS].to_string();
    assert!(
        last.starts_with("big.toml: ") && last.contains("more problem(s) not listed"),
        "{last}"
    );
}

#[test]
fn every_shape_problem_is_reported_not_just_the_first() {
    let text = "name = \"x\"\nimgae = \"base\"\nbackend = 3\ndevices = [\"gpu\", 7]\n\
[resources]\nmemory = 1024\nswap = \"1GiB\"\n[nesting]\nallowed = \"yes\"\n";
    let err = rejected("shape.toml", text.as_bytes());
    assert_problem(&err, "shape.toml:2:imgae", "unknown key");
    assert_problem(
        &err,
        "shape.toml:3:backend",
        "expected a string, found integer",
    );
    assert_problem(
        &err,
        "shape.toml:4:devices[1]",
        "expected a string, found integer",
    );
    assert_problem(
        &err,
        "shape.toml:6:resources.memory",
        "expected a string, found integer",
    );
    assert_problem(&err, "shape.toml:7:resources.swap", "unknown key");
    assert_problem(&err, "shape.toml:9:nesting.allowed", "expected a boolean");
    assert_eq!(err.problems().len(), 6, "{err}");
    let lines: Vec<usize> = err
        .problems()
        .iter()
        .filter_map(|p| p.line_number())
        .collect();
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "not in file order: {err}"
    );
}

#[test]
fn problem_kinds_summarise_without_allocating() {
    use anchor_policy::ProblemKind;
    let kind = |bytes: &[u8]| rejected("k.toml", bytes).problems()[0].kind();
    assert_eq!(kind(b""), ProblemKind::File);
    assert_eq!(kind(b"name = \"\xff\"\n"), ProblemKind::File);
    assert_eq!(kind(b"name = \"a\"\nname = \"b\"\n"), ProblemKind::Syntax);
    assert_eq!(
        kind(format!("{BASE}swap = 1\n").as_bytes()),
        ProblemKind::Shape
    );
    assert_eq!(
        kind(BASE.replace("backend = \"microvm\"\n", "").as_bytes()),
        ProblemKind::Missing
    );
    assert_eq!(
        kind(BASE.replace("vcpus = 1", "vcpus = 0").as_bytes()),
        ProblemKind::Value
    );
    let err = resolve_in(&chain(6), "r6").unwrap_err();
    assert_eq!(err.problems()[0].kind(), ProblemKind::Nesting);
    assert!(!ProblemKind::Nesting.as_str().is_empty());
}

#[test]
fn messages_never_echo_raw_control_characters() {
    let text = BASE.replace("\"room\"", "\"\\u001b]0;pwned\\u0007\"");
    let err = rejected("t.toml", text.as_bytes());
    let shown = err.to_string();
    assert!(
        !shown.chars().any(|c| c.is_control() && c != '\n'),
        "{shown:?}"
    );
}

#[test]
fn base_policy_is_valid_and_defaults_are_least_privilege() {
    let p = parse("t.toml", BASE.as_bytes()).unwrap();
    assert_eq!(p.network(), anchor_policy::Network::None);
    assert!(p.devices().is_empty());
    assert!(p.persist().is_none());
    assert!(p.nesting().is_none());
    assert!(!p.privileged());
    assert!(p.courier().send_to().is_empty() && p.courier().receive_from().is_empty());
    assert_eq!(p.resources().cpu_weight(), 100);
    assert_eq!(p.resources().pids_max(), 512);
    assert_eq!(p.lifetime().max(), anchor_policy::Limit::UNLIMITED);

    // A finite max with the idle limit left at its default (unlimited) is fine.
    let p = parse(
        "t.toml",
        format!("{BASE}[lifetime]\nmax = \"1h\"\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(p.lifetime().max().secs(), Some(3600));
    assert_eq!(p.lifetime().idle(), anchor_policy::Limit::UNLIMITED);
}

// ---- nesting -------------------------------------------------------------------------

/// A room that may nest, with a ceiling equal to its own resources.
fn nestable(name: &str, parent: Option<&str>) -> String {
    let parent = parent.map_or(String::new(), |p| format!("parent = \"{p}\"\n"));
    format!(
        "name = \"{name}\"\n{parent}image = \"base\"\nbackend = \"microvm\"\nnetwork = \"outbound\"\n\
devices = [\"display\"]\n[resources]\nmemory = \"1GiB\"\nvcpus = 1\npids_max = 256\n\
[lifetime]\nmax = \"8h\"\nidle = \"1h\"\n[persist]\nvolume = \"v\"\nsize = \"1GiB\"\n\
[courier]\nsend_to = [\"x\"]\nreceive_from = [\"y\"]\n\
[nesting]\nallowed = true\nmax_children = 2\nmemory = \"1GiB\"\nvcpus = 1\npids_max = 256\n"
    )
}

fn resolve_in(files: &BTreeMap<String, String>, room: &str) -> Result<Resolved, PolicyError> {
    let text = &files[room];
    resolve(&format!("{room}.toml"), text.as_bytes(), |name: &Name| {
        let label = format!("{name}.toml");
        files
            .get(name.as_str())
            .map(|t| (label.clone(), t.clone().into_bytes()))
            .ok_or_else(|| anchor_policy::missing_parent(&label, "no such policy"))
    })
}

fn chain(len: usize) -> BTreeMap<String, String> {
    (1..=len)
        .map(|i| {
            let parent = (i > 1).then(|| format!("r{}", i - 1));
            (
                format!("r{i}"),
                nestable(&format!("r{i}"), parent.as_deref()),
            )
        })
        .collect()
}

#[test]
fn depth_five_accepted_depth_six_rejected() {
    let files = chain(6);
    let ok = resolve_in(&files, "r5").unwrap();
    assert_eq!(ok.depth(), 5);
    assert_eq!(ok.ancestors().len(), 4);
    assert_eq!(ok.ancestors()[0].name().as_str(), "r4");
    let err = resolve_in(&files, "r6").unwrap_err();
    assert_problem(
        &err,
        "r6.toml:2:parent",
        "nesting depth exceeds the maximum of 5",
    );
    assert_eq!(resolve_in(&files, "r1").unwrap().depth(), 1);
}

#[test]
fn parent_cycles_rejected() {
    let mut files = BTreeMap::new();
    files.insert("a".to_owned(), nestable("a", Some("b")));
    files.insert("b".to_owned(), nestable("b", Some("a")));
    let err = resolve_in(&files, "a").unwrap_err();
    assert_problem(&err, "b.toml:2:parent", "parent cycle: a -> b -> a");
    let mut three = BTreeMap::new();
    three.insert("a".to_owned(), nestable("a", Some("b")));
    three.insert("b".to_owned(), nestable("b", Some("c")));
    three.insert("c".to_owned(), nestable("c", Some("a")));
    assert_problem(
        &resolve_in(&three, "b").unwrap_err(),
        "a.toml:2:parent",
        "b -> c -> a -> b",
    );
}

#[test]
fn missing_or_invalid_parent_rejected() {
    let mut files = BTreeMap::new();
    files.insert("kid".to_owned(), nestable("kid", Some("ghost")));
    assert_problem(
        &resolve_in(&files, "kid").unwrap_err(),
        "kid.toml:2:parent",
        "cannot load parent \"ghost\"",
    );

    files.insert(
        "ghost".to_owned(),
        "name = \"ghost\"\nvcpus = 1\n".to_owned(),
    );
    let err = resolve_in(&files, "kid").unwrap_err();
    assert_problem(&err, "ghost.toml:2:vcpus", "unknown key");
    assert_problem(&err, "kid.toml:2:parent", "is invalid");

    files.insert("ghost".to_owned(), nestable("other", None));
    assert_problem(
        &resolve_in(&files, "kid").unwrap_err(),
        "kid.toml:2:parent",
        "declares name \"other\"",
    );
}

/// The parent used by the "wider child" cases, and a child that is exactly as wide.
fn parent_and_child() -> (String, String) {
    (nestable("p", None), nestable("c", Some("p")))
}

#[test]
fn child_wider_than_parent_on_each_field() {
    let (parent, child) = parent_and_child();
    let mut ok = BTreeMap::new();
    ok.insert("p".to_owned(), parent.clone());
    ok.insert("c".to_owned(), child.clone());
    assert_eq!(
        resolve_in(&ok, "c").unwrap().depth(),
        2,
        "an equal child is a subset"
    );

    // (what, edit to the child, expected prefix, message)
    type Edit = Box<dyn Fn(&str) -> String>;
    let r = |from: &'static str, to: &'static str| -> Edit {
        Box::new(move |t: &str| t.replacen(from, to, 1))
    };
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "memory over parent",
            r(
                "memory = \"1GiB\"\nvcpus = 1\npids_max = 256\n[lifetime]",
                "memory = \"2GiB\"\nvcpus = 1\npids_max = 256\n[lifetime]",
            ),
            "c.toml:8:resources.memory",
            "exceeds parent \"p\"'s 1GiB",
        ),
        (
            "vcpus over parent",
            r(
                "vcpus = 1\npids_max = 256\n[lifetime]",
                "vcpus = 2\npids_max = 256\n[lifetime]",
            ),
            "c.toml:9:resources.vcpus",
            "exceeds parent",
        ),
        (
            "pids over parent",
            r("pids_max = 256\n[lifetime]", "pids_max = 257\n[lifetime]"),
            "c.toml:10:resources.pids_max",
            "exceeds parent",
        ),
        (
            "cpu weight over parent",
            r(
                "vcpus = 1\npids_max = 256\n[lifetime]",
                "vcpus = 1\ncpu_weight = 101\npids_max = 256\n[lifetime]",
            ),
            "c.toml:10:resources.cpu_weight",
            "exceeds parent \"p\"'s 100",
        ),
        (
            "lifetime over parent",
            r("max = \"8h\"", "max = \"9h\""),
            "c.toml:12:lifetime.max",
            "9h exceeds parent \"p\"'s 8h",
        ),
        (
            "unlimited lifetime under a limit",
            r("max = \"8h\"", "max = \"unlimited\""),
            "c.toml:12:lifetime.max",
            "unlimited exceeds",
        ),
        (
            "idle over parent",
            r("idle = \"1h\"", "idle = \"2h\""),
            "c.toml:13:lifetime.idle",
            "exceeds parent",
        ),
        (
            "device not granted to parent",
            r(
                "devices = [\"display\"]",
                "devices = [\"display\", \"camera\"]",
            ),
            "c.toml:6:devices",
            "\"camera\" is not granted to parent",
        ),
        (
            "courier send_to wider",
            r("send_to = [\"x\"]", "send_to = [\"x\", \"z\"]"),
            "c.toml:18:courier.send_to",
            "\"z\" is not in parent",
        ),
        (
            "courier quota wider",
            r(
                "receive_from = [\"y\"]",
                "receive_from = [\"y\"]\nmax_size = \"2GiB\"",
            ),
            "c.toml:20:courier.max_size",
            "exceeds parent",
        ),
        (
            "courier receive_from wider",
            r("receive_from = [\"y\"]", "receive_from = [\"q\"]"),
            "c.toml:19:courier.receive_from",
            "\"q\" is not in parent",
        ),
        (
            "weaker backend",
            r("backend = \"microvm\"", "backend = \"namespaces\""),
            "c.toml:4:backend",
            "weaker than parent",
        ),
        (
            "auto under microvm",
            r("backend = \"microvm\"", "backend = \"auto\""),
            "c.toml:4:backend",
            "weaker than parent",
        ),
        (
            "privileged under unprivileged",
            r(
                "backend = \"microvm\"",
                "backend = \"microvm\"\nprivileged = true",
            ),
            "c.toml:5:privileged",
            "not privileged",
        ),
        (
            "bigger persist",
            r("size = \"1GiB\"", "size = \"2GiB\""),
            "c.toml:16:persist.size",
            "exceeds parent",
        ),
        (
            "another vault volume",
            r("volume = \"v\"", "volume = \"w\""),
            "c.toml:15:persist.volume",
            "not parent \"p\"'s volume",
        ),
        (
            "more grandchildren",
            r("max_children = 2", "max_children = 3"),
            "c.toml:22:nesting.max_children",
            "exceeds parent",
        ),
    ];
    for (what, edit, prefix, needle) in &cases {
        let mut files = ok.clone();
        files.insert("c".to_owned(), edit(&child));
        assert_ne!(files["c"], child, "{what}: edit did nothing");
        let err = resolve_in(&files, "c").map(|_| ()).unwrap_err();
        assert_problem(&err, prefix, needle);
    }

    // Network wider: a parent without network.
    let mut files = ok.clone();
    files.insert(
        "p".to_owned(),
        parent.replacen("network = \"outbound\"", "network = \"none\"", 1),
    );
    assert_problem(
        &resolve_in(&files, "c").unwrap_err(),
        "c.toml:5:network",
        "wider than parent",
    );

    // Persist in a child of an amnesiac parent.
    let mut files = ok.clone();
    files.insert(
        "p".to_owned(),
        parent.replacen("[persist]\nvolume = \"v\"\nsize = \"1GiB\"\n", "", 1),
    );
    assert_problem(
        &resolve_in(&files, "c").unwrap_err(),
        "c.toml:15:persist.volume",
        "no vault volume",
    );

    // Parent that does not allow nesting.
    let mut files = ok.clone();
    let closed = parent.split("[nesting]").next().unwrap().to_owned();
    files.insert("p".to_owned(), closed);
    assert_problem(
        &resolve_in(&files, "c").unwrap_err(),
        "c.toml:2:parent",
        "does not allow nesting",
    );

    // Within the parent's own resources but above its nesting ceiling.
    let mut files = ok.clone();
    files.insert(
        "p".to_owned(),
        parent.replacen(
            "memory = \"1GiB\"\nvcpus = 1\npids_max = 256\n[lifetime]",
            "memory = \"4GiB\"\nvcpus = 4\npids_max = 1024\n[lifetime]",
            1,
        ),
    );
    let kid = child.replacen(
        "memory = \"1GiB\"\nvcpus = 1\npids_max = 256\n[lifetime]",
        "memory = \"2GiB\"\nvcpus = 2\npids_max = 512\n[lifetime]",
        1,
    );
    files.insert("c".to_owned(), kid);
    let err = resolve_in(&files, "c").unwrap_err();
    assert_problem(
        &err,
        "c.toml:8:resources.memory",
        "nesting.memory ceiling (1GiB)",
    );
    assert_problem(&err, "c.toml:9:resources.vcpus", "nesting.vcpus ceiling");
    assert_problem(
        &err,
        "c.toml:10:resources.pids_max",
        "nesting.pids_max ceiling",
    );
}

/// A microVM child of a namespace parent would mark their shared volume as a guest disk
/// (the VMM jail does, before the VMM runs), which the namespace jail then refuses for
/// good: the parent would lose its own volume. Such a child may not name it; a namespace
/// child may, and a microVM child without `[persist]` is fine.
#[test]
fn a_child_that_may_run_as_a_microvm_cannot_share_a_namespace_parents_volume() {
    let (parent, child) = parent_and_child();
    let ns = |t: &str| t.replacen("backend = \"microvm\"", "backend = \"namespaces\"", 1);
    let mut files = BTreeMap::new();
    files.insert("p".to_owned(), ns(&parent));
    for backend in ["microvm", "auto"] {
        let kid = child.replacen("\"microvm\"", &format!("\"{backend}\""), 1);
        files.insert("c".to_owned(), kid);
        let err = resolve_in(&files, "c").unwrap_err();
        assert_eq!(err.problems().len(), 1, "{err}");
        assert_problem(
            &err,
            "c.toml:15:persist.volume",
            &format!("backend \"{backend}\" may run as a microVM"),
        );
        assert_problem(&err, "c.toml:15:persist.volume", "lock the parent out");
    }
    files.insert("c".to_owned(), ns(&child));
    assert_eq!(resolve_in(&files, "c").unwrap().depth(), 2);
    let amnesiac = child.replacen("[persist]\nvolume = \"v\"\nsize = \"1GiB\"\n", "", 1);
    files.insert("c".to_owned(), amnesiac);
    assert_eq!(resolve_in(&files, "c").unwrap().depth(), 2);
}

#[test]
fn all_subset_violations_reported_together() {
    let (parent, child) = parent_and_child();
    let mut files = BTreeMap::new();
    files.insert("p".to_owned(), parent);
    let wide = child
        .replacen("backend = \"microvm\"", "backend = \"namespaces\"", 1)
        .replacen(
            "memory = \"1GiB\"\nvcpus = 1\npids_max = 256\n[lifetime]",
            "memory = \"2GiB\"\nvcpus = 1\npids_max = 256\n[lifetime]",
            1,
        )
        .replacen("max = \"8h\"", "max = \"9h\"", 1);
    files.insert("c".to_owned(), wide);
    let err = resolve_in(&files, "c").unwrap_err();
    let keys: Vec<&str> = err
        .problems()
        .iter()
        .filter_map(Problem::key_path)
        .collect();
    for k in ["backend", "resources.memory", "lifetime.max"] {
        assert!(keys.contains(&k), "{k} missing from {err}");
    }
}

/// A microVM room gets exactly its policy's vCPUs and memory from anchor-vmm, which
/// refuses more than 16 vCPUs or 16 GiB (vmm/src/config.rs MAX_VCPUS, the layouts'
/// MAX_MEM_MIB): a policy that asks more must be refused here, not by the VMM once the
/// room is opening. `auto` is a microVM wherever KVM works.
#[test]
fn microvm_rooms_fit_what_anchor_vmm_can_give() {
    for backend in ["microvm", "auto"] {
        let b = BASE.replace("\"microvm\"", &format!("\"{backend}\""));
        let err = rejected("t.toml", b.replace("vcpus = 1", "vcpus = 17").as_bytes());
        assert_problem(&err, "t.toml:6:resources.vcpus", "microVM");
        let err = rejected("t.toml", b.replace("1GiB", "16385MiB").as_bytes());
        assert_problem(&err, "t.toml:5:resources.memory", "microVM");
        assert!(parse(
            "t.toml",
            b.replace("vcpus = 1", "vcpus = 16")
                .replace("1GiB", "16GiB")
                .as_bytes()
        )
        .is_ok());
    }
    // A namespace room has no VMM: the policy's own ranges apply.
    let ns = BASE
        .replace("\"microvm\"", "\"namespaces\"")
        .replace("vcpus = 1", "vcpus = 64")
        .replace("1GiB", "64GiB");
    assert!(parse("t.toml", ns.as_bytes()).is_ok());
}
