// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchor-courier`: see `--help` and the crate documentation.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anchor_courier::transfer::{self, Until};
use anchor_courier::{confine, sys};
use anchor_proto::courier::Launch;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: anchor-courier --id HEX32 --token HEX32 --from ROOM --to ROOM --size BYTES
                      --sha256 HEX64 --name NAME [--vsock-from] [--vsock-to]

Started by bay0 (as root, PID 1 of a new PID namespace) once the user approved a courier
transfer on bay0's prompt, with stdin connected to the source room's agent and stdout to
the destination room's agent (--vsock-from, --vsock-to: that connection first answers
`OK <port>`, as anchor-vmm's hybrid vsock does for a microVM room; without, it is a
socket bay0 passed to a namespace room's agent over its umbilical). It confines itself (empty read-only root, no network,
uid 63999, no capabilities, seccomp), fetches the item with the request's --token,
delivers it under transfer id --id with its --name, --size and --sha256, and commits it
only if the source sent exactly --size bytes. A peer that makes no progress for 30 s
fails the transfer, and so does a transfer still running after 120 s + 1 s per MiB of
--size (however steadily a peer trickles). Its last line on stderr is `delivered NAME`
(exit 0: the name the destination stored it under in ~/Incoming, one of the names it
may choose) or `failed REASON` (exit 1).
";

/// Seconds a peer may make no progress.
const STALL_S: u32 = 30;

/// The one result line (one write), then the exit status.
fn finish(ok: bool, text: &str) -> ExitCode {
    let line = format!("{} {text}\n", if ok { "delivered" } else { "failed" });
    let _ = std::io::stderr().write_all(line.as_bytes());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    // Not std::env::args(): it panics on an argument that is not UTF-8.
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let args = match args {
        Ok(a) => a,
        Err(bad) => {
            return finish(
                false,
                &format!("anchor-courier: usage: argument {bad:?} is not UTF-8"),
            )
        }
    };
    // Only on its own: an argument's value (a file may be named `--help`) is not a flag.
    if matches!(args.as_slice(), [a] if a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let l = match Launch::parse(&args) {
        Ok(l) => l,
        Err(e) => return finish(false, &format!("anchor-courier: usage: {e}")),
    };
    if let Err(e) = sys::close_others() {
        return finish(
            false,
            &format!("the courier could not close what it inherited: {e}"),
        );
    }
    if let Err(e) = confine::jail(Path::new(confine::RUN_DIR)) {
        return finish(false, &format!("the courier could not confine itself: {e}"));
    }
    let streams = sys::inherited(0).and_then(|src| {
        let dst = sys::inherited(1)?;
        sys::blocking_with_timeouts(0, STALL_S)?;
        sys::blocking_with_timeouts(1, STALL_S)?;
        Ok((src, dst))
    });
    let until = Instant::now() + Duration::from_secs(transfer::allowance_secs(l.size));
    let (mut src, mut dst) = match streams {
        Ok((src, dst)) => (Until { inner: src, until }, Until { inner: dst, until }),
        Err(e) => return finish(false, &format!("the courier's connections: {e}")),
    };
    if let Err(e) = confine::seccomp() {
        return finish(false, &e);
    }
    match transfer::run(&mut src, &mut dst, &l) {
        Ok(name) => finish(true, &name),
        Err(e) => finish(false, &e.explain(&l)),
    }
}
