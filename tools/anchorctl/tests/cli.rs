// SPDX-License-Identifier: GPL-3.0-or-later
//! Runs the anchorctl binary as a user would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn anchorctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorctl"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run anchorctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("UTF-8 output")
}

#[test]
fn check_shipped_policies_ok() {
    let out = anchorctl(&[
        "policy",
        "check",
        "policies/web.toml",
        "policies/work.toml",
        "policies/dev.toml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "policies/web.toml: ok\npolicies/work.toml: ok\npolicies/dev.toml: ok\n"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn check_nested_fixture_ok() {
    let out = anchorctl(&["policy", "check", "policy/tests/fixtures/nested/lab.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "policy/tests/fixtures/nested/lab.toml: ok\n"
    );
}

#[test]
fn check_bad_files_prints_file_line_key_and_exits_1() {
    let out = anchorctl(&[
        "policy",
        "check",
        "policies/web.toml",
        "policy/tests/fixtures/bad/bad-units.toml",
        "policy/tests/fixtures/bad/unknown-key.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    // The good file is still reported ok; every problem of the bad ones is printed.
    assert_eq!(text(&out.stdout), "policies/web.toml: ok\n");
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let f = "policy/tests/fixtures/bad/bad-units.toml";
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{f}:7:resources.memory: unknown size unit"))),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{f}:8:resources.vcpus: 0 is out of range"))),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{f}:11:lifetime.max: "))),
        "{err}"
    );
    let g = "policy/tests/fixtures/bad/unknown-key.toml";
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{g}:5:netwrok: unknown key"))),
        "{err}"
    );
    assert_eq!(lines.len(), 4, "{err}");
}

#[test]
fn check_wider_child_names_each_field() {
    let out = anchorctl(&[
        "policy",
        "check",
        "policy/tests/fixtures/nested/greedy.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for key in [
        ":5:backend:",
        ":7:devices:",
        ":10:resources.memory:",
        ":14:courier.send_to:",
    ] {
        assert!(
            err.contains(&format!("greedy.toml{key}")),
            "{key} missing:\n{err}"
        );
    }
}

/// `policy check NAME.toml` run in the policy directory (the file named without a
/// directory) sees the other policies there too: two naming one vault volume are refused.
#[test]
fn check_in_the_policy_directory_sees_a_vault_volume_named_twice() {
    let dir = std::env::temp_dir().join(format!("anchorctl-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["a", "b"] {
        let text = format!(
            "name = \"{name}\"\nimage = \"base\"\nbackend = \"microvm\"\n\
             [resources]\nmemory = \"512MiB\"\nvcpus = 1\n\
             [persist]\nvolume = \"notes\"\nsize = \"8MiB\"\n"
        );
        std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_anchorctl"))
        .args(["policy", "check", "a.toml"])
        .current_dir(&dir)
        .output()
        .expect("run anchorctl");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).starts_with(
            "a.toml:8:persist.volume: vault volume \"notes\" is also named by ./b.toml, "
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_missing_file_exits_1() {
    let out = anchorctl(&["policy", "check", "no/such/file.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("no/such/file.toml: cannot read"));
}

#[test]
fn show_toml_is_a_valid_equal_policy() {
    let out = anchorctl(&["policy", "show", "policies/work.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("pids_max = 1024"), "{shown}");
    // Defaults are filled in: work.toml does not write privileged.
    assert!(shown.contains("privileged = false"), "{shown}");
    let reparsed = anchor_policy::parse("shown.toml", shown.as_bytes()).unwrap();
    let original = anchor_policy::load(&root().join("policies/work.toml")).unwrap();
    assert_eq!(&reparsed, original.policy());
}

#[test]
fn show_json_is_valid_json_with_defaults() {
    let out = anchorctl(&["policy", "show", "--json", "policies/web.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["name"], "web");
    assert_eq!(v["backend"], "microvm");
    assert_eq!(v["privileged"], false);
    assert_eq!(v["resources"]["memory"], "2GiB");
    assert_eq!(v["resources"]["cpu_weight"], 100);
    assert_eq!(v["nesting"]["allowed"], false);
    assert_eq!(v["courier"]["send_to"], serde_json::json!(["work"]));
}

#[test]
fn show_invalid_file_exits_1_with_problems() {
    let out = anchorctl(&[
        "policy",
        "show",
        "policy/tests/fixtures/bad/unknown-key.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("unknown-key.toml:5:netwrok:"));
}

#[test]
fn help_exits_0_and_describes_the_commands() {
    let out = anchorctl(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("policy"));
    let out = anchorctl(&["policy", "check", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("FILE: ok") && help.contains("FILE:LINE:KEY: message"),
        "{help}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["policy", "check"][..],
        &["policy", "frobnicate"],
        &["policy", "show"],
        &["--bogus"],
        &["update", "apply", "x.efi", "--tries", "0"],
        &["update", "apply", "x.efi", "--tries", "10"],
    ] {
        let out = anchorctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn room_commands_refuse_a_bad_room_name_before_talking_to_bay0() {
    // The socket does not exist: a name that passes would say "cannot reach bay0" (exit 1).
    for name in ["", "Web", "web x", "web\nstop work", &"a".repeat(33)] {
        for verb in ["start", "stop", "reset", "console"] {
            let out = anchorctl(&["--socket", "/nonexistent/h8.sock", "room", verb, name]);
            assert_eq!(out.status.code(), Some(2), "{verb} {name:?}");
            let err = text(&out.stderr);
            assert!(err.contains("is not a room name"), "{verb} {name:?}: {err}");
            assert!(err.contains(&format!("{name:?}")), "{verb} {name:?}: {err}");
            assert!(out.stdout.is_empty());
        }
    }
    let out = anchorctl(&["--socket", "/nonexistent/h8.sock", "room", "start", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot reach bay0"));
}

#[test]
fn update_status_refuses_a_missing_esp_dir() {
    let out = anchorctl(&["update", "status", "--esp", "/nonexistent/esp"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "anchorctl: --esp /nonexistent/esp: No such file or directory (os error 2)\n"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn audit_commands_report_an_unreadable_log_on_stderr() {
    for args in [
        &["audit", "show", "--file", "/nonexistent/audit.log"][..],
        &[
            "audit",
            "verify",
            "--file",
            "/nonexistent/audit.log",
            "--no-tpm",
        ],
    ] {
        let cmd = args[1];
        let out = anchorctl(args);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert!(out.stdout.is_empty(), "{cmd}: {}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(
            err.starts_with("anchorctl: /nonexistent/audit.log: ") && err.lines().count() == 1,
            "{cmd}: {err}"
        );
    }
}

#[test]
fn help_describes_every_option_and_argument() {
    let bin = env!("CARGO_BIN_EXE_anchorctl");
    let mut bad = Vec::new();
    for args in [
        &["policy", "check"][..],
        &["policy", "show"],
        &["update", "status"],
        &["update", "apply"],
        &["room", "list"],
        &["room", "start"],
        &["room", "stop"],
        &["room", "reset"],
        &["room", "console"],
        &["status"],
        &["vault", "status"],
        &["vault", "init"],
        &["audit", "show"],
        &["audit", "verify"],
    ] {
        bad.extend(anchor_testkit::undocumented(bin, args));
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// A file name with a newline or a terminal escape in it: every problem stays one line
/// that starts with the name, its control characters escaped (nothing reaches the
/// terminal as a control sequence).
#[test]
fn a_file_name_with_control_characters_is_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a\nb\u{1b}[31m.toml");
    std::fs::write(&file, "name = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_anchorctl"))
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(!err.contains('\u{1b}'), "{err:?}");
    let label = format!("{}/a\\nb\\u{{1b}}[31m.toml:", dir.path().display());
    assert!(err.lines().count() >= 2, "{err}");
    for line in err.lines() {
        assert!(line.starts_with(&label), "{line:?} in {err:?}");
    }
}

/// An audit log path that is a FIFO is refused as not a regular file, not read: the
/// commands blocked in open(2) until a writer came (and read whatever it wrote).
#[test]
fn audit_commands_refuse_a_fifo_log() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = anchor_testkit::Fifo::fed(&dir.path().join("audit.log"), b"junk\n");
    let f = fifo.as_str().to_string();
    let outs = [
        anchorctl(&["audit", "show", "--file", &f]),
        anchorctl(&["audit", "verify", "--file", &f, "--no-tpm"]),
    ];
    drop(fifo);
    for out in outs {
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!("anchorctl: {f}: ")) && err.contains("not a regular file"),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
}

/// A one-connection stand-in for bay0 at a fresh socket: it reads the request line, then
/// writes `reply` in one write and, if `close`, closes the connection (else it keeps it
/// until the client closes its end). The socket's path and the request it got.
fn fake_bay0(
    tag: &str,
    reply: &'static [u8],
    close: bool,
) -> (PathBuf, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, Read, Write};
    let path = std::env::temp_dir().join(format!("anchorctl-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let served = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut request = String::new();
        std::io::BufReader::new(&s).read_line(&mut request).unwrap();
        s.write_all(reply).unwrap();
        if !close {
            let _ = s.read_to_end(&mut Vec::new());
        }
        request
    });
    (path, served)
}

/// `anchorctl room console web` against `socket`, its input a pipe (`keys`, written
/// then held open and silent, like a terminal nobody types on); waits (hang detection
/// only) for it to exit.
fn console_web(socket: &Path, keys: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_anchorctl"))
        .args([
            "--socket",
            socket.to_str().unwrap(),
            "room",
            "console",
            "web",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(keys).unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("anchorctl is still attached (nothing left to wait for)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn room_console_returns_when_the_room_ends_without_a_key_pressed() {
    // bay0 tells the attached client that the room ended and closes the connection:
    // anchorctl must give the terminal back then, not only at the next key.
    let (socket, served) = fake_bay0(
        "console-end",
        b"ok attached to room web (Ctrl-] detaches)\n\x18\r\nbay0: room web ended (exit 0)\r\n",
        true,
    );
    let out = console_web(&socket, b"");
    assert_eq!(served.join().unwrap(), "console web\n");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).ends_with("[detached from room web]\r\n"),
        "{out:?}"
    );
    let _ = std::fs::remove_file(socket);
}

#[test]
fn room_console_shows_what_bay0_sends_with_its_answer() {
    // bay0 writes the room's recent output (its scrollback) right behind `ok attached`,
    // usually arriving with it: anchorctl must show it, not drop it with the buffer it
    // read the answer line through.
    let (socket, served) = fake_bay0(
        "console-back",
        b"ok attached to room web (Ctrl-] detaches)\nweb| what the room printed lately\r\n",
        false,
    );
    // Ctrl-] detaches.
    let out = console_web(&socket, &[0x1d]);
    assert_eq!(served.join().unwrap(), "console web\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "web| what the room printed lately\r\n",
        "{out:?}"
    );
    let _ = std::fs::remove_file(socket);
}

#[test]
fn room_list_json_keeps_a_room_name_of_digits_a_string() {
    // `007` is a valid room name (a-z 0-9 -): JSON must show it as bay0 named it, not as
    // the number 7. Numeric fields are numbers.
    let (socket, served) = fake_bay0(
        "list-json",
        b"room name=007 backend=namespaces state=running uptime_s=5 memory_mib=64 vcpus=1 pid=9\nroom name=42 state=stopped\nhost memory_mib=1000 reserved_mib=256 rooms_mib=64 free_mib=680\nok\n",
        true,
    );
    let out = anchorctl(&["--socket", socket.to_str().unwrap(), "status", "--json"]);
    assert_eq!(served.join().unwrap(), "list\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["rooms"][0]["name"], "007", "{doc}");
    assert_eq!(doc["rooms"][0]["pid"], 9, "{doc}");
    assert_eq!(doc["rooms"][1]["name"], "42", "{doc}");
    assert_eq!(doc["host"]["free_mib"], 680, "{doc}");
    let _ = std::fs::remove_file(socket);
}
