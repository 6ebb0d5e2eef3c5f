// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-update: the A/B update helper on the device (in the UKI's initramfs). bay0
//! spawns `anchor-update bless` once per boot; `status` and `apply` are the same commands
//! as `anchorctl update` (docs/SIGNING.md).

use anchor_update::apply::Step;
use anchor_update::commands::{self, say, Progress, Target};
use anchor_update::device::DeviceError;
use anchor_update::slots::Slot;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const PREFIX: &str = "anchor-update: ";

/// Anchor OS A/B update helper.
///
/// Exit status: 0 success (bless: the slot is good), 1 failure or refusal (bless: not
/// blessed), 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "anchor-update", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot-time check (bay0 runs it after `ready`): report the slot that booted and PCR 11,
    /// and bless the slot (drop its boot counter) if the boot is healthy.
    ///
    /// Healthy means: every boot room named by --room reaches ready (its agent reported in,
    /// as bay0's control socket says) within --timeout seconds; with no --room, the boot
    /// is healthy once bay0 is up. Not blessed, systemd-boot keeps counting and falls back
    /// to the other slot once the tries are used up.
    Bless {
        /// A boot room that must reach ready (repeatable).
        #[arg(long = "room", value_name = "NAME")]
        rooms: Vec<String>,
        /// Seconds to wait for the rooms.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// The boot is known to be unhealthy (for bay0, e.g. the vault did not open).
        #[arg(long, value_name = "REASON")]
        unhealthy: Option<String>,
    },
    /// Show the slots, their versions, tries left and the next boot.
    Status {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Verify a signed UKI and write it to the inactive slot, armed for a trial boot.
    Apply {
        /// The update (a UKI signed with our Secure Boot db key).
        file: String,
        /// Boots the new slot gets before systemd-boot falls back (1-9).
        #[arg(long, default_value_t = 3,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(anchor_update::slots::MAX_TRIES)))]
        tries: u32,
        #[command(flatten)]
        target: TargetArgs,
        /// Test builds only: stop after this step (verify|clean|write|sync|arm).
        #[cfg(feature = "test-hooks")]
        #[arg(long)]
        stop_after: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct TargetArgs {
    /// Use the ESP mounted at DIR instead of this machine's.
    #[arg(long, value_name = "DIR")]
    esp: Option<PathBuf>,
    /// The slot that is running (default: as systemd-boot reported it).
    #[arg(long, value_parser = parse_slot)]
    running: Option<Slot>,
    /// The certificate updates must be signed with (DER; default: the base's own).
    #[arg(long, value_name = "DER")]
    cert: Option<PathBuf>,
}

fn parse_slot(s: &str) -> Result<Slot, String> {
    Slot::parse(s).ok_or_else(|| format!("{s:?} is not a slot (A or B)"))
}

impl From<TargetArgs> for Target {
    fn from(t: TargetArgs) -> Target {
        Target {
            esp: t.esp,
            running: t.running,
            cert: t.cert,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let mut out = std::io::stdout();
    let ok = match cli.command {
        Command::Bless {
            rooms,
            timeout,
            unhealthy,
        } => bless(&mut out, &rooms, timeout, unhealthy),
        Command::Status { target } => {
            let r = commands::status(&target.into(), &mut out, PREFIX);
            report(&mut std::io::stderr(), r)
        }
        Command::Apply {
            file,
            tries,
            target,
            #[cfg(feature = "test-hooks")]
            stop_after,
        } => {
            #[cfg(feature = "test-hooks")]
            let stop_after = stop_after.as_deref().and_then(Step::parse);
            #[cfg(not(feature = "test-hooks"))]
            let stop_after: Option<Step> = None;
            let mut sink = std::io::stdout();
            let mut progress = Progress {
                out: &mut sink,
                prefix: PREFIX,
                stop_after,
            };
            let r = commands::apply(&target.into(), &file, tries, &mut progress);
            // The error on stderr (progress stays on stdout); bless keeps one stream: bay0
            // reads its stdout and stderr through one pipe anyway.
            report(&mut std::io::stderr(), r.map(drop))
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn report(out: &mut dyn Write, r: Result<(), commands::CmdError>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            say(out, PREFIX, &format!("error: {e}"));
            false
        }
    }
}

/// The health check: every boot room reaches `running` (ready) in bay0's room list.
fn rooms_health(rooms: &[String], timeout: u64) -> Result<(), String> {
    // checked: `Instant + Duration` panics past the clock's range (--timeout 2^64-1);
    // so long a wait has no deadline.
    let end = Instant::now().checked_add(Duration::from_secs(timeout));
    let mut waiting: Vec<&String> = rooms.iter().collect();
    loop {
        let states = room_states().unwrap_or_default();
        let mut still = Vec::new();
        for name in waiting {
            match states
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.as_str())
            {
                Some("running") => {}
                Some("stopped") => {
                    return Err(format!(
                        "room {name} is stopped (it did not start, or it ended)"
                    ))
                }
                _ => still.push(name),
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if end.is_some_and(|end| Instant::now() >= end) {
            let names: Vec<&str> = still.iter().map(|s| s.as_str()).collect();
            return Err(format!(
                "room(s) {} not ready after {timeout} s",
                names.join(", ")
            ));
        }
        waiting = still;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// (name, state) of every room bay0 lists on its control socket.
fn room_states() -> Option<Vec<(String, String)>> {
    use anchor_proto::control::{self, Reply, Verb};
    use std::io::{BufRead, BufReader, Read};
    let mut s = std::os::unix::net::UnixStream::connect(control::SOCKET_PATH).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(control::format_request(Verb::List, "").as_bytes())
        .ok()?;
    let mut reader = BufReader::new(s);
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader
            .by_ref()
            .take(control::REPLY_LINE_MAX as u64)
            .read_line(&mut line)
            .ok()?;
        if n == 0 {
            return None;
        }
        match control::parse_reply(line.trim_end_matches(['\n', '\r']))? {
            Reply::Record { kind, fields } if kind == "room" => {
                let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
                if let (Some(n), Some(st)) = (get("name"), get("state")) {
                    out.push((n, st));
                }
            }
            Reply::Record { .. } => {}
            Reply::Ok(_) => return Some(out),
            Reply::Err(_) => return None,
        }
    }
}

fn bless(out: &mut dyn Write, rooms: &[String], timeout: u64, unhealthy: Option<String>) -> bool {
    if !anchor_update::device::booted_through_uefi() {
        say(out, PREFIX, NOT_UEFI);
        return true;
    }
    commands::report_pcr11(out, PREFIX);
    let health = || match unhealthy {
        Some(reason) => Err(reason),
        None => rooms_health(rooms, timeout),
    };
    bless_esp(out, &Target::default(), health)
}

const NOT_UEFI: &str = "not booted through UEFI: no A/B slots here, nothing to bless";

/// Run the health check, then open the ESP and bless. The check may wait minutes for the
/// rooms; the ESP is mounted (read-write, FAT's dirty bit set) only after it, for the
/// moment bless takes, so a reset during an unhealthy trial boot does not find it mounted.
fn bless_esp(
    out: &mut dyn Write,
    target: &Target,
    health: impl FnOnce() -> Result<(), String>,
) -> bool {
    let health = health();
    let opened = match commands::open(target) {
        Ok(o) => o,
        Err(commands::CmdError::Device(DeviceError::NotUefi)) => {
            say(out, PREFIX, NOT_UEFI);
            return true;
        }
        Err(e) => {
            say(out, PREFIX, &format!("error: {e}"));
            return false;
        }
    };
    let blessed = match commands::bless_boot(&opened, health, out, PREFIX) {
        Ok(b) => b,
        Err(e) => {
            say(out, PREFIX, &format!("error: {e}"));
            false
        }
    };
    #[cfg(feature = "test-hooks")]
    test_hooks::staged_updates(out, &opened);
    if let Some(dev) = opened.device {
        if let Err(e) = dev.close() {
            say(out, PREFIX, &format!("error: unmount ESP: {e}"));
        }
    }
    blessed
}

/// Test builds only: updates staged on the ESP under `anchor-test/` are applied after the
/// boot check, in name order; `anchor-test/stop-after` names a step to stop after (the
/// system test then cuts the power). Never compiled into a release UKI.
#[cfg(feature = "test-hooks")]
mod test_hooks {
    use super::*;
    use anchor_update::commands::Opened;

    pub fn staged_updates(out: &mut dyn Write, opened: &Opened) {
        let dir = opened.esp.root().join("anchor-test");
        let stop = std::fs::read_to_string(dir.join("stop-after"))
            .ok()
            .and_then(|s| Step::parse(s.trim()));
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("efi")))
            .collect();
        files.sort();
        let trust = match commands::trust(&Target::default()) {
            Ok(t) => t,
            Err(e) => {
                say(out, PREFIX, &format!("test hook: {e}"));
                return;
            }
        };
        for f in files {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            say(out, PREFIX, &format!("test hook: applying staged {name}"));
            let mut sink = std::io::stdout();
            let mut progress = Progress {
                out: &mut sink,
                prefix: PREFIX,
                stop_after: stop,
            };
            let r = anchor_update::apply::apply(
                &opened.esp,
                &f.to_string_lossy(),
                &trust,
                &opened.running,
                3,
                &mut progress,
            );
            match r {
                Ok(a) => say(
                    out,
                    PREFIX,
                    &format!(
                        "test hook: {name}: applied to slot {} as {}",
                        a.slot, a.file
                    ),
                ),
                Err(e) => say(out, PREFIX, &format!("test hook: {name}: refused: {e}")),
            }
        }
        say(out, PREFIX, "test hook: staged updates done");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_timeout_is_no_panic() {
        assert_eq!(super::rooms_health(&[], u64::MAX), Ok(()));
        assert_eq!(super::rooms_health(&[], 0), Ok(()));
    }

    /// The ESP is opened only once the health check is over: here the ESP directory
    /// appears during the check, and bless finds it (opened first, it would not exist).
    #[test]
    fn the_esp_is_opened_after_the_health_check() {
        let dir = std::env::temp_dir().join(format!("anchor-update-order-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let target = super::Target {
            esp: Some(dir.clone()),
            ..Default::default()
        };
        let mut out = Vec::new();
        let blessed = super::bless_esp(&mut out, &target, || {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())
        });
        let text = String::from_utf8(out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(blessed, "{text}");
        assert!(text.contains("nothing to bless"), "{text}");
    }
}
