// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-agent binary.
//!
//! - As PID 1 (the room's /sbin/init): see [`anchor_agent::init::run_pid1`].
//! - `anchor-agent --vsock-echo PORT`: the vsock echo test service, in the foreground.
//! - `anchor-agent --parse-cmdline [FILE]`: print the settings the agent would use
//!   (from FILE, default /proc/cmdline) and exit; for checking a command line.
//! - `anchor-agent --vsock-send|--vsock-recv PORT FILE`: the courier benchmark's raw copy
//!   baseline (see [`anchor_agent::courier::bench`]).
//! - Called as `courier` (the symlink in every room image): the courier client.

use anchor_agent::cmdline;
use anchor_agent::console;
use anchor_agent::echo;
use anchor_agent::error::Error;
use anchor_agent::init;
use std::process::ExitCode;

const USAGE: &str = "anchor-agent (as PID 1) | anchor-agent --vsock-echo PORT | \
                     anchor-agent --parse-cmdline [FILE] | \
                     anchor-agent --vsock-send|--vsock-recv PORT FILE (benchmark baseline) | \
                     courier send FILE --to ROOM";

fn main() -> ExitCode {
    // Called as `courier` (the symlink in every room image): the courier client.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name() == Some("courier".as_ref()) {
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let (out, err) = (&mut std::io::stdout(), &mut std::io::stderr());
        let socket = std::path::Path::new(anchor_agent::courier::SOCKET);
        return ExitCode::from(anchor_agent::courier::client::run(&args, socket, out, err));
    }
    if init::is_pid1() {
        init::run_pid1();
    }
    // Not std::env::args(): it panics on an argument that is not UTF-8.
    let args: Option<Vec<String>> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().ok())
        .collect();
    let Some(args) = args else {
        console::say_fmt(format_args!("{}", Error::Usage("an argument is not UTF-8")));
        return ExitCode::from(2);
    };
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--vsock-echo", port] => match cmdline::parse_port(port) {
            Some(p) => echo::serve(p),
            None => Err(Error::Usage(
                "PORT must be a vsock port number (1..4294967294)",
            )),
        },
        [flag @ ("--vsock-send" | "--vsock-recv"), port, file] => {
            use anchor_agent::courier::bench;
            match cmdline::parse_port(port) {
                Some(p) if *flag == "--vsock-send" => bench::send_file(p, file),
                Some(p) => bench::recv_file(p, file),
                None => Err(Error::Usage(
                    "PORT must be a vsock port number (1..4294967294)",
                )),
            }
            .map(|n| console::print_line(&format!("{n} bytes")))
        }
        ["--parse-cmdline"] => return show_settings("/proc/cmdline"),
        ["--parse-cmdline", file] => return show_settings(file),
        _ => Err(Error::Usage(USAGE)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            console::say_fmt(format_args!("{e}"));
            ExitCode::from(2)
        }
    }
}

fn show_settings(path: &str) -> ExitCode {
    // The error names the file, and says what std says (a file that is not UTF-8 has no
    // errno: it once read "Success (os error 0)").
    let raw = match std::fs::read_to_string(path) {
        Ok(raw) => raw,
        Err(e) => {
            console::say_fmt(format_args!("cannot read command line file {path}: {e}"));
            return ExitCode::from(2);
        }
    };
    let (s, warnings) = cmdline::parse(&raw);
    for w in &warnings {
        console::say_fmt(format_args!("{w}"));
    }
    console::print_line(&format!("room={}", s.room));
    console::print_line(&format!("exit={:?}", s.exit));
    console::print_line(&format!("shell={}", s.shell));
    match s.vsock_echo {
        Some(p) => console::print_line(&format!("vsock_echo={p}")),
        None => console::print_line("vsock_echo=off"),
    }
    ExitCode::SUCCESS
}
