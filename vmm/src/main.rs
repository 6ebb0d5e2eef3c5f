// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchor-vmm`: thin CLI over the library. Exit status: 0 guest off/reset,
//! 2 usage error, 3 VMM error, 4 guest fault; one-line reason on stderr.

use std::time::Instant;

use anchor_vmm::config::{self, Command};
use anchor_vmm::exit::{EXIT_OK, EXIT_USAGE, EXIT_VMM_ERROR};
use anchor_vmm::{builder, runner, sys};

fn main() {
    let start = Instant::now();
    // Not std::env::args(): it panics on an argument that is not UTF-8.
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let args = args.unwrap_or_else(|bad| {
        anchor_vmm::log::say(format_args!("argument {bad:?} is not UTF-8"));
        std::process::exit(EXIT_USAGE);
    });
    let cfg = match config::parse(args) {
        Ok(Command::Help) => {
            print!("{}", config::USAGE);
            std::process::exit(EXIT_OK);
        }
        Ok(Command::Run(c)) => c,
        Err(e) => {
            anchor_vmm::log::say(format_args!("{e}"));
            std::process::exit(EXIT_USAGE);
        }
    };
    let built = match builder::build(&cfg, start) {
        Ok(b) => b,
        Err(e) => {
            anchor_vmm::log::say(format_args!("{e}"));
            std::process::exit(EXIT_VMM_ERROR);
        }
    };
    let opts = runner::RunOptions {
        seccomp_test_trigger: cfg.seccomp_test_trigger,
        exit_stats: cfg.exit_stats,
    };
    let stop = runner::run(built, opts);
    anchor_vmm::log::say(format_args!("{}", stop.reason));
    sys::exit_now(stop.code);
}
