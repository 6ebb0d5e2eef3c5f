// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchorctl update status|apply`: the same code as the device's `anchor-update`
//! (crate anchor-update), with anchorctl's exit codes.

use crate::cli::{UpdateCommand, UpdateTarget};
use anchor_update::commands::{self, say, Progress, Target};
use anchor_update::slots::Slot;
use std::io::Write;

const PREFIX: &str = "anchorctl: ";

/// The result of an update command: Ok(true) done, Ok(false) refused or failed (the
/// message was written), Err(usage message).
pub fn run(cmd: &UpdateCommand, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, String> {
    match cmd {
        UpdateCommand::Status { target } => {
            let t = target_of(target)?;
            Ok(report(commands::status(&t, out, ""), err))
        }
        UpdateCommand::Apply {
            file,
            tries,
            target,
        } => {
            let t = target_of(target)?;
            let mut progress = Progress {
                out,
                prefix: PREFIX,
                stop_after: None,
            };
            let r = commands::apply(&t, file, *tries, &mut progress);
            Ok(report(r.map(drop), err))
        }
    }
}

fn report(r: Result<(), commands::CmdError>, err: &mut dyn Write) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            say(err, PREFIX, &e.to_string());
            false
        }
    }
}

fn target_of(t: &UpdateTarget) -> Result<Target, String> {
    let running = match &t.running {
        Some(s) => {
            Some(Slot::parse(s).ok_or_else(|| format!("--running {s:?}: a slot is A or B"))?)
        }
        None => None,
    };
    Ok(Target {
        esp: t.esp.clone(),
        running,
        cert: t.cert.clone(),
    })
}
