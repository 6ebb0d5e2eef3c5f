// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchor-jail`: see `anchor-jail --help` and the crate documentation.

use anchor_jail::args::{self, Command, USAGE};
use anchor_jail::{note, sys};

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let cfg = match args::parse(&argv) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            return;
        }
        Ok(Command::Run(cfg)) => cfg,
        Err(e) => {
            note(format_args!("{e}"));
            std::process::exit(2);
        }
    };
    // bay0 starts us as PID 1 of a fresh PID namespace. Started any other way (by hand,
    // by a test), make one: the child is its PID 1, we wait and pass its status on.
    // The child dies with us: its death signal is set again after each uid change (which
    // clears it), and a pipe whose write end only we hold shows it that we died before.
    if sys::getpid() != 1 {
        let forked = sys::pipe().and_then(|(r, w)| {
            sys::unshare(libc::CLONE_NEWPID)?;
            Ok((sys::fork()?, r, w))
        });
        match forked {
            Ok((0, r, w)) => {
                drop(w);
                sys::watch_parent(r);
                if let Err(e) = sys::die_with_parent() {
                    note(format_args!("room {}: {e}", cfg.name));
                    std::process::exit(1);
                }
            }
            Ok((child, _, _w)) => std::process::exit(sys::wait_exit_code(child)),
            Err(e) => {
                note(format_args!("room {}: new PID namespace: {e}", cfg.name));
                std::process::exit(1);
            }
        }
    }
    match anchor_jail::run(&cfg) {
        Ok(never) => match never {},
        Err(e) => {
            note(format_args!("room {}: {e}", cfg.name));
            std::process::exit(1);
        }
    }
}
