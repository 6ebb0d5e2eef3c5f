// SPDX-License-Identifier: GPL-3.0-or-later
//! anchorctl entry point: parse arguments, run, map the outcome to an exit status.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anchor_proto::control::Verb;
use anchorctl::audit_cmd::{self, Located, Verdict};
use anchorctl::cli::{
    AuditCommand, Cli, Command, PolicyCommand, RoomCommand, VaultCommand, AUDIT_LOG,
};
use anchorctl::policy_cmd::{self, Outcome};
use anchorctl::room_cmd::{self, Failure};
use anchorctl::update_cmd;
use anchorctl::vault_cmd;
use clap::Parser;

fn vault_exit(r: Result<i32, String>, err: &mut dyn Write) -> ExitCode {
    match r {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            let _ = writeln!(err, "anchorctl: {e}");
            ExitCode::from(1)
        }
    }
}

/// The log `audit show|verify` read: `--file`, or [`audit_cmd::locate`]'s choice, said on
/// `err` when it is this boot's log; and whether it is.
fn audit_log(file: Option<&Path>, err: &mut dyn Write) -> (PathBuf, bool) {
    if let Some(f) = file {
        return (f.to_path_buf(), false);
    }
    match audit_cmd::locate(
        Path::new(AUDIT_LOG),
        Path::new(anchor_audit::PRE_UNLOCK_LOG),
    ) {
        Located::Persistent(p) => (p, false),
        Located::ThisBoot(p) => {
            let _ = writeln!(
                err,
                "anchorctl: the vault is not open ({AUDIT_LOG} is not there): this boot's \
                 log, {}, which is carried into the vault when it opens",
                p.display()
            );
            (p, true)
        }
    }
}

fn main() -> ExitCode {
    // clap prints help/version (exit 0) or the usage error (exit 2) itself.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(result) = room_command(&cli) {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failure::Io(msg) | Failure::Refused(msg)) => {
                let _ = writeln!(io::stderr(), "anchorctl: {msg}");
                ExitCode::from(1)
            }
        };
    }
    let (stdout, stderr) = (io::stdout(), io::stderr());
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    let result = match &cli.command {
        Command::Policy(PolicyCommand::Check { files }) => {
            policy_cmd::check(files, &mut out, &mut err)
        }
        Command::Policy(PolicyCommand::Show { file, json }) => {
            policy_cmd::show(file, *json, &mut out, &mut err)
        }
        Command::Update(cmd) => {
            return match update_cmd::run(cmd, &mut out, &mut err) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(usage) => {
                    let _ = writeln!(err, "anchorctl: {usage}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Room(_) | Command::Status { .. } => Ok(Outcome::Ok),
        Command::Vault(VaultCommand::Status { anchor_vault, args }) => {
            let mut all = vec!["status".into()];
            all.extend(args.iter().cloned());
            return vault_exit(vault_cmd::run(anchor_vault, &all), &mut err);
        }
        Command::Vault(VaultCommand::Init { anchor_vault, args }) => {
            let mut all = vec!["init".into()];
            all.extend(args.iter().cloned());
            return vault_exit(vault_cmd::run(anchor_vault, &all), &mut err);
        }
        Command::Audit(AuditCommand::Show { file, raw }) => {
            let (file, _) = audit_log(file.as_deref(), &mut err);
            audit_cmd::show(&file, *raw, &mut out, &mut err).map(|ok| {
                if ok {
                    Outcome::Ok
                } else {
                    Outcome::Invalid
                }
            })
        }
        Command::Audit(AuditCommand::Verify {
            file,
            no_tpm,
            anchor_vault,
            tpm,
        }) => {
            let (file, this_boot) = audit_log(file.as_deref(), &mut err);
            // This boot's log is anchored only once carried into the vault: its chain alone.
            let anchor =
                (!no_tpm && !this_boot).then(|| audit_cmd::tpm_state(anchor_vault, tpm.as_deref()));
            match audit_cmd::verify_file(&file, anchor, &mut out, &mut err) {
                Ok(Verdict::Intact) => Ok(Outcome::Ok),
                Ok(Verdict::Bad) => Ok(Outcome::Invalid),
                Ok(Verdict::Unanchored) => return ExitCode::from(3),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Invalid) => ExitCode::from(1),
        // The reader went away (`anchorctl policy show x | head`): nothing to say.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(1),
        Err(e) => {
            // Writing the output failed: say so if stderr still works.
            let _ = writeln!(err, "anchorctl: cannot write output: {e}");
            ExitCode::from(1)
        }
    }
}

/// The commands that talk to bay0; `None` for the others.
fn room_command(cli: &Cli) -> Option<Result<(), Failure>> {
    let socket = cli.socket.as_path();
    let mut out = io::stdout();
    Some(match &cli.command {
        Command::Status { json } => room_cmd::list(socket, *json, true, &mut out),
        Command::Room(RoomCommand::List { json }) => room_cmd::list(socket, *json, false, &mut out),
        Command::Room(RoomCommand::Start { name }) => {
            room_cmd::simple(socket, Verb::Start, name, &mut out)
        }
        Command::Room(RoomCommand::Stop { name }) => {
            room_cmd::simple(socket, Verb::Stop, name, &mut out)
        }
        Command::Room(RoomCommand::Reset { name }) => {
            room_cmd::simple(socket, Verb::Reset, name, &mut out)
        }
        Command::Room(RoomCommand::Console { name }) => room_cmd::console(socket, name),
        Command::Policy(_) | Command::Update(_) | Command::Vault(_) | Command::Audit(_) => {
            return None
        }
    })
}
