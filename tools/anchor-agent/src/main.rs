// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-agent binary.
//!
//! - As PID 1 (the room's /sbin/init): see [`anchor_agent::init::run_pid1`].
//! - `anchor-agent --vsock-echo PORT`: the vsock echo test service, in the foreground.
//! - `anchor-agent --parse-cmdline [FILE]`: print the settings the agent would use
//!   (from FILE, default /proc/cmdline) and exit; for checking a command line.

use anchor_agent::cmdline;
use anchor_agent::console;
use anchor_agent::echo;
use anchor_agent::error::Error;
use anchor_agent::init;
use std::process::ExitCode;

const USAGE: &str = "anchor-agent (as PID 1) | anchor-agent --vsock-echo PORT | \
                     anchor-agent --parse-cmdline [FILE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if init::is_pid1() {
        init::run_pid1();
    }
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
        ["--parse-cmdline"] => show_settings("/proc/cmdline"),
        ["--parse-cmdline", file] => show_settings(file),
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

fn show_settings(path: &str) -> Result<(), Error> {
    let raw = std::fs::read_to_string(path).map_err(|e| Error::Sys {
        op: "read command line file",
        errno: e.raw_os_error().unwrap_or(0),
    })?;
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
    Ok(())
}
