// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's settings, from the kernel command line (`bay0.KEY=VALUE` words; the kernel
//! keeps dotted words away from init's argv). A bad value is reported and replaced by
//! its default: PID 1 does not refuse to boot over a typo.

use crate::error::Error;

/// Default seconds between watchdog tickles (spec: tickle every 30 s).
pub const DEFAULT_WATCHDOG_INTERVAL: u32 = 30;
/// Default hardware watchdog timeout: two missed tickles reset the machine.
pub const DEFAULT_WATCHDOG_TIMEOUT: u32 = 60;
/// Default seconds children get between SIGTERM and SIGKILL at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: u32 = 5;

/// Watchdog settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// Seconds without a tickle after which the hardware resets the machine.
    pub timeout_s: u32,
    /// Seconds between tickles; always below `timeout_s`.
    pub interval_s: u32,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            timeout_s: DEFAULT_WATCHDOG_TIMEOUT,
            interval_s: DEFAULT_WATCHDOG_INTERVAL,
        }
    }
}

impl WatchdogConfig {
    /// The tickle interval to use once the driver has chosen its real timeout: at most
    /// half of it, so one late tickle never resets a healthy machine.
    pub fn interval_for(&self, actual_timeout_s: u32) -> u32 {
        let half = (actual_timeout_s / 2).max(1);
        self.interval_s.clamp(1, half)
    }
}

/// Longest room name (the policy language's limit).
pub const ROOM_NAME_MAX: usize = 32;

/// A room name from the kernel command line, kept inline so `Config` stays `Copy`.
pub type RoomName = anchor_text::fixed::Fixed<ROOM_NAME_MAX>;

/// The room name `text`, or what is wrong with it. Only `[a-z0-9-]` is accepted here;
/// the policy loader checks the full name rules.
pub fn room_name(text: &str) -> Result<RoomName, Error> {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    RoomName::parse(text, ok).ok_or(Error::Config("room wants a name of 1..=32 of [a-z0-9-]"))
}

/// Most rooms opened at boot.
pub const BOOT_ROOMS: usize = 4;

fn parse_rooms(value: &str) -> Result<[Option<RoomName>; BOOT_ROOMS], Error> {
    let mut rooms = [None; BOOT_ROOMS];
    let mut names = value.split(',');
    for slot in rooms.iter_mut() {
        if let Some(name) = names.next() {
            *slot = Some(room_name(name)?);
        }
    }
    match names.next() {
        Some(_) => Err(Error::Config("room lists at most 4 rooms")),
        None => Ok(rooms),
    }
}

/// Everything configurable in bay0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub watchdog: WatchdogConfig,
    /// Seconds between SIGTERM and SIGKILL when shutting down.
    pub shutdown_grace_s: u32,
    /// Test builds only (feature `debug-stall`): stall the loop after this many ticks.
    pub debug_stall_after: Option<u32>,
    /// Rooms to open at boot (`bay0.room=NAME[,NAME...]`, at most [`BOOT_ROOMS`]); the
    /// first gets bay0's console.
    pub boot_rooms: [Option<RoomName>; BOOT_ROOMS],
    /// Run an operator shell on bay0's console (`bay0.shell=1`; development images).
    pub shell: bool,
    /// The vault disk to unlock at boot (`bay0.vault=/dev/...`).
    pub vault: Option<crate::vault::VaultDisk>,
    /// Seconds the courier prompt waits for an answer (`bay0.courier_timeout=SECS`).
    pub courier_timeout_s: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            watchdog: WatchdogConfig::default(),
            shutdown_grace_s: DEFAULT_SHUTDOWN_GRACE,
            debug_stall_after: None,
            boot_rooms: [None; BOOT_ROOMS],
            shell: false,
            vault: None,
            courier_timeout_s: 60,
        }
    }
}

fn number(value: &str, min: u32, max: u32, what: &'static str) -> Result<u32, Error> {
    let n = value.parse().ok().filter(|n| (min..=max).contains(n));
    n.ok_or(Error::Config(what))
}

impl Config {
    /// Parse a kernel command line. Each rejected `bay0.*` word is passed to `report`
    /// with the reason; the setting keeps its default.
    pub fn from_cmdline(cmdline: &str, report: &mut dyn FnMut(&str, Error)) -> Config {
        let mut cfg = Config::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some(setting) = word.strip_prefix("bay0.") else {
                continue;
            };
            let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
            let parsed = match key {
                "watchdog_timeout" => {
                    number(value, 2, 3600, "watchdog_timeout wants 2..=3600 seconds")
                        .map(|n| cfg.watchdog.timeout_s = n)
                }
                "watchdog_interval" => {
                    number(value, 1, 3600, "watchdog_interval wants 1..=3600 seconds")
                        .map(|n| cfg.watchdog.interval_s = n)
                }
                "shutdown_grace" => number(value, 0, 600, "shutdown_grace wants 0..=600 seconds")
                    .map(|n| cfg.shutdown_grace_s = n),
                "debug_stall_after" if cfg!(feature = "debug-stall") => {
                    number(value, 0, 1_000_000, "debug_stall_after wants a tick count")
                        .map(|n| cfg.debug_stall_after = Some(n))
                }
                "debug_stall_after" => {
                    Err(Error::Config("ignored: bay0 built without debug-stall"))
                }
                "room" => parse_rooms(value).map(|r| cfg.boot_rooms = r),
                "shell" if value == "0" || value == "1" => {
                    cfg.shell = value == "1";
                    Ok(())
                }
                "shell" => Err(Error::Config("shell wants 0 or 1")),
                "vault" => crate::vault::parse_disk(value).map(|d| cfg.vault = Some(d)),
                "courier_timeout" => number(value, 5, 600, "courier_timeout wants 5..=600 s")
                    .map(|s| cfg.courier_timeout_s = s),
                _ => Err(Error::Config("unknown bay0 setting")),
            };
            if let Err(e) = parsed {
                report(word, e);
            }
        }
        if cfg.watchdog.interval_s >= cfg.watchdog.timeout_s {
            report(
                "bay0.watchdog_interval",
                Error::Config("must be below the timeout: using half of it"),
            );
            cfg.watchdog.interval_s = (cfg.watchdog.timeout_s / 2).max(1);
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Config, Vec<String>) {
        let mut problems = Vec::new();
        let cfg = Config::from_cmdline(s, &mut |w, e| problems.push(format!("{w}: {e}")));
        (cfg, problems)
    }

    #[test]
    fn defaults_follow_the_spec() {
        let (cfg, problems) = parse("console=ttyS0 quiet");
        assert_eq!(cfg.watchdog.interval_s, 30);
        assert!(cfg.watchdog.timeout_s > cfg.watchdog.interval_s);
        assert_eq!(cfg, Config::default());
        assert!(problems.is_empty());
    }

    #[test]
    fn settings_are_read() {
        let (cfg, problems) = parse(
            "console=ttyS0 bay0.watchdog_timeout=10 bay0.watchdog_interval=2 bay0.shutdown_grace=1",
        );
        assert_eq!(
            cfg.watchdog,
            WatchdogConfig {
                timeout_s: 10,
                interval_s: 2
            }
        );
        assert_eq!(cfg.shutdown_grace_s, 1);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn bad_values_are_reported_and_defaulted() {
        let (cfg, problems) = parse("bay0.watchdog_timeout=abc bay0.shutdown_grace=9999 bay0.colour=red bay0.watchdog_interval");
        assert_eq!(cfg, Config::default());
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("bay0.watchdog_timeout=abc: config: watchdog_timeout"));
        assert!(problems[2].contains("unknown bay0 setting"));
    }

    #[test]
    fn the_courier_prompt_timeout_is_read_and_bounded() {
        assert_eq!(Config::default().courier_timeout_s, 60);
        assert_eq!(parse("bay0.courier_timeout=15").0.courier_timeout_s, 15);
        for bad in [
            "bay0.courier_timeout=4",
            "bay0.courier_timeout=601",
            "bay0.courier_timeout=x",
        ] {
            let (cfg, problems) = parse(bad);
            assert_eq!(cfg.courier_timeout_s, 60, "{bad}");
            assert!(
                problems[0].contains("courier_timeout wants 5..=600 s"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn boot_room_is_read_and_checked() {
        let (cfg, problems) = parse("bay0.room=work bay0.shell=1");
        assert_eq!(
            cfg.boot_rooms[0].map(|r| r.as_str().to_owned()),
            Some("work".into())
        );
        assert!(cfg.shell && cfg.boot_rooms[1].is_none());
        assert!(problems.is_empty());
        let (cfg, _) = parse("bay0.room=web,work");
        assert_eq!(
            cfg.boot_rooms[1].map(|r| r.as_str().to_owned()),
            Some("work".into())
        );
        let (_, problems) = parse("bay0.room=a,b,c,d,e bay0.shell=yes");
        assert_eq!(problems.len(), 2, "{problems:?}");
        let long = format!("bay0.room={}", "a".repeat(33));
        for bad in [
            "bay0.room=",
            "bay0.room=../etc",
            "bay0.room=Web",
            long.as_str(),
        ] {
            let (cfg, problems) = parse(bad);
            assert_eq!(cfg.boot_rooms, [None; BOOT_ROOMS], "{bad}");
            assert_eq!(problems.len(), 1, "{bad}");
            assert!(problems[0].contains("room wants a name"), "{problems:?}");
        }
        let max = "b".repeat(32);
        assert_eq!(room_name(&max).unwrap().as_str(), max);
    }

    #[test]
    fn interval_not_below_timeout_is_fixed() {
        let (cfg, problems) = parse("bay0.watchdog_timeout=8 bay0.watchdog_interval=8");
        assert_eq!(cfg.watchdog.interval_s, 4);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn debug_stall_only_with_the_feature() {
        let (cfg, problems) = parse("bay0.debug_stall_after=3");
        if cfg!(feature = "debug-stall") {
            assert_eq!(cfg.debug_stall_after, Some(3));
            assert!(problems.is_empty());
        } else {
            assert_eq!(cfg.debug_stall_after, None);
            assert!(problems[0].contains("without debug-stall"));
        }
    }

    /// Every setting the command line takes is named in `bay0 --help` (the test-only
    /// debug_stall_after aside): the keys are read from the parser's own match arms.
    #[test]
    fn help_names_every_setting() {
        let src = include_str!("config.rs");
        let body = src.split("fn from_cmdline").nth(1).unwrap();
        let body = body.split("#[cfg(test)]").next().unwrap();
        let keys: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('"'))
            .filter_map(|l| l.split_once('"'))
            .filter(|(_, rest)| rest.starts_with(" =>") || rest.starts_with(" if "))
            .map(|(key, _)| key)
            .collect();
        assert!(keys.len() >= 7, "{keys:?}");
        for key in keys {
            let (_, problems) = parse(&format!("bay0.{key}=1"));
            assert!(
                problems.iter().all(|p| !p.contains("unknown bay0 setting")),
                "{key}: {problems:?}"
            );
            if key != "debug_stall_after" {
                let shown = format!("bay0.{key}=");
                assert!(
                    crate::cli::HELP.contains(&shown),
                    "bay0 --help lacks {shown}"
                );
            }
        }
    }

    #[test]
    fn interval_is_capped_by_the_driver_timeout() {
        let w = WatchdogConfig {
            timeout_s: 60,
            interval_s: 30,
        };
        assert_eq!(w.interval_for(60), 30);
        assert_eq!(w.interval_for(20), 10);
        assert_eq!(w.interval_for(1), 1);
        assert_eq!(
            WatchdogConfig {
                timeout_s: 4,
                interval_s: 1
            }
            .interval_for(4),
            1
        );
    }
}
