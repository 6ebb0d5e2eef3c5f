// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchor-escape-probe [--own-kernel] ATTEMPT [ARG...]`: makes one attempt of the
//! escape-resistance suite from inside a room and prints its verdict line(s), each in one
//! write. Exit status 0 whatever the verdict (escape.sh reads the lines), 2 for a bad
//! command line. See the crate documentation and tests/escape/escape.sh.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match anchor_escape::run(&args) {
        Ok(verdicts) => {
            for v in verdicts {
                let line = format!("{v}\n");
                let _ = std::io::stdout().write_all(line.as_bytes());
            }
        }
        Err(e) => {
            let _ = std::io::stderr().write_all(format!("anchor-escape-probe: {e}\n").as_bytes());
            std::process::exit(2);
        }
    }
}
