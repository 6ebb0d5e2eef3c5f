// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-vault entry point: parse, run, print the error chain once, exit.

use std::process::ExitCode;

use anchor_vault::auditlog::Event;
use anchor_vault::cli::{AuditCommand, Cli, Command, CreateArgs, VolumeCommand};
use anchor_vault::console::{Console, Terminal};
use anchor_vault::error::{Outcome, VaultError, EXIT_ERROR, EXIT_USAGE};
use anchor_vault::luks::Argon2Cost;
use anchor_vault::settings::{self, DaSettings, InitOptions, Paths, PcrKeyChoice, UnlockOptions};
use anchor_vault::tpm::signed;
use anchor_vault::{commands, provision, sys, unlock};
use clap::Parser;

fn init_options(c: &CreateArgs, open: bool) -> InitOptions {
    let memory_kib = c
        .argon2_memory_mib
        .map(|m| m.saturating_mul(1024))
        .or_else(|| settings::argon2_kib_from_cmdline(&settings::cmdline()))
        .unwrap_or(Argon2Cost::DEFAULT.memory_kib);
    let pcr_key = match (&c.pcr_public_key, c.no_signed_pcr11) {
        (_, true) => PcrKeyChoice::Off,
        (Some(p), false) => PcrKeyChoice::Required(p.clone()),
        (None, false) => PcrKeyChoice::IfPresent(signed::PUBLIC_KEY_FILE.into()),
    };
    InitOptions {
        pcrs: c.pcrs.clone(),
        pcr_key,
        cost: Argon2Cost {
            memory_kib,
            iterations: c.argon2_iterations,
            parallel: c.argon2_lanes,
        },
        da: DaSettings {
            max_tries: c.tpm_max_tries,
            recovery_s: c.tpm_recovery_secs,
            ..DaSettings::default()
        },
        open,
    }
}

fn print(text: &str) -> Result<Outcome, VaultError> {
    let mut t = Terminal::stdio();
    for line in text.lines() {
        t.say(line);
    }
    Ok(Outcome::Done)
}

fn run(cli: Cli) -> Result<Outcome, VaultError> {
    let g = &cli.global;
    let needs_disk = !matches!(
        cli.command,
        Command::Volume(_) | Command::Audit(_) | Command::ResetLockout
    );
    let disk = settings::disk(g.disk.as_deref());
    if needs_disk && disk.is_none() {
        return Err(VaultError::Refused(
            "no vault disk: pass --disk or boot with bay0.vault=PATH".to_owned(),
        ));
    }
    let paths = Paths {
        mount: g.mount.clone(),
        mapper: g.mapper.clone(),
        pre_log: g.pre_log.clone(),
        policies: g.policies.clone(),
        mkfs: g.mkfs.clone(),
        pcr_signature: g.pcr_signature.clone(),
        ..Paths::system(disk.unwrap_or_default())
    };
    let tcti = g.tpm.as_deref();
    let dialog = matches!(
        cli.command,
        Command::Init { .. } | Command::Unlock { .. } | Command::ResetLockout
    );
    let mut con = if dialog {
        Terminal::dialog()?
    } else {
        Terminal::stdio()
    };
    match &cli.command {
        Command::Init {
            create,
            no_open,
            force,
        } => {
            let _ = sys::protect_memory();
            provision::init(
                &mut con,
                &paths,
                &init_options(create, !no_open),
                tcti,
                *force,
            )
        }
        Command::Unlock {
            tries,
            check,
            first_boot,
            create,
        } => {
            let _ = sys::protect_memory();
            let opts = UnlockOptions {
                tcti: g.tpm.clone(),
                tries: *tries,
                check: *check,
                first_boot: *first_boot,
                init: init_options(create, true),
            };
            unlock::unlock(&mut con, &paths, &opts)
        }
        Command::Status => print(&commands::status(&paths, tcti)),
        Command::Volume(VolumeCommand::Attach { name, size, owner }) => print(
            &commands::volume_ensure(&paths, name, *size, owner.as_deref())?,
        ),
        Command::Volume(VolumeCommand::List) => print(&commands::volume_list(&paths)?),
        Command::Volume(VolumeCommand::Give { name, to }) => {
            print(&commands::volume_give(&paths, name, to)?)
        }
        Command::Volume(VolumeCommand::Delete { name }) => {
            print(&commands::volume_delete(&paths, name)?)
        }
        Command::Audit(AuditCommand::Append {
            actor,
            event,
            fields,
        }) => {
            let mut e = Event::new(event, &[]);
            e.actor.clone_from(actor);
            for (k, v) in fields {
                e.fields.push((k.clone(), v.as_bytes().to_vec()));
            }
            print(&commands::audit_append(&paths, &e)?)
        }
        Command::Audit(AuditCommand::Anchor) => {
            // A shutdown's SIGTERM to every process must not cut an anchoring short: it
            // takes milliseconds, and bay0 waits for it before powering off.
            sys::ignore_termination();
            print(&commands::audit_anchor(&paths, tcti)?)
        }
        Command::Audit(AuditCommand::TpmState) => print(&commands::audit_tpm_state(tcti)?),
        Command::ResetLockout => {
            let _ = sys::protect_memory();
            commands::reset_lockout(&mut con, tcti)
        }
        Command::Lock => print(&commands::lock(&paths)?),
    }
}

fn main() -> ExitCode {
    // libtss2 logs TPM error responses on stderr; anchor-vault explains them itself.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+none");
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(e) => {
            // Most errors already say their cause; a cause is added only where one does not.
            let mut msg = format!("anchor-vault: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let cause = s.to_string();
                if !msg.contains(&cause) {
                    msg.push_str(&format!(": {cause}"));
                }
                source = s.source();
            }
            let mut t = Terminal::stdio();
            t.say(&msg);
            ExitCode::from(EXIT_ERROR)
        }
    }
}
