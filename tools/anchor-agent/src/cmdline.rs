// SPDX-License-Identifier: GPL-3.0-or-later
//! Room settings from the kernel command line (`/proc/cmdline`).
//!
//! Keys (all optional):
//! - `anchor.room=NAME`       room name: 1-32 of `[a-z0-9_-]`, starting with a letter
//!   or digit. Used for the console marker and the hostname. Default `unnamed`.
//! - `anchor.exit=reboot|poweroff`  how the agent stops the VM when the shell exits.
//!   `reboot` (default) pairs with `reboot=k`: anchor-vmm treats the i8042 reset as
//!   "room stopped". `poweroff` needs ACPI, which the room kernel does not have.
//! - `anchor.shell=on|off`    start a console shell (default on). With `off` the agent
//!   powers the room off as soon as it has no children left.
//! - `anchor.vsock_echo=PORT` also run the vsock echo test service on PORT.
//! - `anchor.privileged=0|1`  whether the console shell runs as root in the room (1) or
//!   as the unprivileged user `room` (0, the default).
//! - `anchor.pids_max=N`      cap on the processes and threads of the shell and everything
//!   it starts (a cgroup inside the room). Default: no cap.
//! - `anchor.backend=namespaces`  the room is a namespace room, not a microVM: anchor-jail
//!   passes the settings as the agent's arguments (there /proc/cmdline is the host's), has
//!   made every mount, and runs the agent with no capabilities; the agent then leaves the
//!   mounts and the hostname alone, talks to bay0 over a Unix socket, and ends the room
//!   by exiting (see `init`). `anchor.backend=microvm` is the default.
//!
//! A bad value never stops the room from booting: the default is kept and a warning
//! is returned for the console.

use std::fmt;

/// Default room name when `anchor.room=` is absent or invalid.
pub const DEFAULT_ROOM: &str = "unnamed";
const MAX_ROOM_LEN: usize = 32;

/// How the agent ends the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitMode {
    /// `reboot(RB_AUTOBOOT)`: with `reboot=k` the kernel pulses the i8042 reset line.
    Reboot,
    /// `reboot(RB_POWER_OFF)`: needs a power-off method (ACPI) in the guest.
    PowerOff,
    /// A namespace room: PID 1 exits, and the kernel ends every process of the room.
    Exit,
}

/// A problem with one command-line key; the default was used instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// `anchor.room=` value is not a valid room name.
    BadRoomName(String),
    /// `anchor.exit=` is neither `reboot` nor `poweroff`.
    BadExitMode(String),
    /// `anchor.shell=` is neither `on` nor `off`.
    BadShell(String),
    /// `anchor.vsock_echo=` is not a port number in 1..=u32::MAX-1.
    BadPort(String),
    /// `anchor.privileged=` is neither 0 nor 1.
    BadPrivileged(String),
    /// `anchor.pids_max=` is not a number >= 1.
    BadPidsMax(String),
    /// `anchor.persist=` is not a virtio disk (`/dev/vdX`).
    BadPersist(String),
    /// `anchor.backend=` is neither `microvm` nor `namespaces`.
    BadBackend(String),
    /// `anchor.net=` is not `ADDR/PREFIX,GATEWAY,DNS`.
    BadNet(String),
    /// An `anchor.` key the agent does not know.
    UnknownKey(String),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::BadRoomName(v) => write!(
                f,
                "anchor.room={v:?} is not a room name (1-32 of a-z 0-9 _ -); using {DEFAULT_ROOM:?}"
            ),
            Warning::BadExitMode(v) => {
                write!(f, "anchor.exit={v:?} is not reboot|poweroff; using reboot")
            }
            Warning::BadShell(v) => write!(f, "anchor.shell={v:?} is not on|off; using on"),
            Warning::BadPort(v) => {
                write!(
                    f,
                    "anchor.vsock_echo={v:?} is not a vsock port; echo service off"
                )
            }
            Warning::BadPrivileged(v) => {
                write!(
                    f,
                    "anchor.privileged={v:?} is not 0|1; the shell is unprivileged"
                )
            }
            Warning::BadPidsMax(v) => write!(f, "anchor.pids_max={v:?} is not a count; no cap"),
            Warning::BadPersist(v) => {
                write!(f, "anchor.persist={v:?} is not /dev/vdX; no /persist")
            }
            Warning::BadBackend(v) => {
                write!(
                    f,
                    "anchor.backend={v:?} is not microvm|namespaces; using microvm"
                )
            }
            Warning::BadNet(v) => write!(
                f,
                "anchor.net={v:?} is not ADDR/PREFIX,GATEWAY,DNS; no network"
            ),
            Warning::UnknownKey(k) => write!(f, "unknown setting {k:?} ignored"),
        }
    }
}

/// Everything the agent takes from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The room's name.
    pub room: String,
    /// How to end the VM.
    pub exit: ExitMode,
    /// Whether to start the console shell.
    pub shell: bool,
    /// Port of the vsock echo test service, if requested.
    pub vsock_echo: Option<u32>,
    /// Whether the shell runs as root in the room.
    pub privileged: bool,
    /// Cap on the shell's processes and threads.
    pub pids_max: Option<u32>,
    /// The room's vault volume, mounted at /persist (`anchor.persist=/dev/vdb`).
    pub persist: Option<String>,
    /// A namespace room (`anchor.backend=namespaces`).
    pub namespaces: bool,
    /// The room's network (`anchor.net=`), if its policy grants one.
    pub net: Option<crate::net::NetSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            room: DEFAULT_ROOM.to_owned(),
            exit: ExitMode::Reboot,
            shell: true,
            vsock_echo: None,
            privileged: false,
            pids_max: None,
            persist: None,
            namespaces: false,
            net: None,
        }
    }
}

/// Splits a kernel command line into parameters the way the kernel does: on
/// whitespace, except inside double quotes, which are removed.
pub fn split(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut have = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                have = true;
            }
            c if c.is_ascii_whitespace() && !in_quotes => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        out.push(cur);
    }
    out
}

/// True if `name` is an acceptable room name.
pub fn valid_room_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok && name.len() <= MAX_ROOM_LEN && name.chars().all(ok_char)
}

/// Parses the settings from a full kernel command line. Later keys win, as in the
/// kernel. Returns the settings and one warning per rejected or unknown key.
pub fn parse(cmdline: &str) -> (Settings, Vec<Warning>) {
    let mut s = Settings::default();
    let mut warnings = Vec::new();
    for param in split(cmdline) {
        let Some(rest) = param.strip_prefix("anchor.") else {
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        match key {
            "room" => {
                if valid_room_name(value) {
                    value.clone_into(&mut s.room);
                } else {
                    s.room = DEFAULT_ROOM.to_owned();
                    warnings.push(Warning::BadRoomName(value.to_owned()));
                }
            }
            "exit" => match value {
                "reboot" => s.exit = ExitMode::Reboot,
                "poweroff" => s.exit = ExitMode::PowerOff,
                _ => {
                    s.exit = ExitMode::Reboot;
                    warnings.push(Warning::BadExitMode(value.to_owned()));
                }
            },
            "shell" => match value {
                "on" => s.shell = true,
                "off" => s.shell = false,
                _ => {
                    s.shell = true;
                    warnings.push(Warning::BadShell(value.to_owned()));
                }
            },
            "vsock_echo" => match parse_port(value) {
                Some(p) => s.vsock_echo = Some(p),
                None => {
                    s.vsock_echo = None;
                    warnings.push(Warning::BadPort(value.to_owned()));
                }
            },
            "privileged" => match value {
                "0" | "1" => s.privileged = value == "1",
                _ => {
                    s.privileged = false;
                    warnings.push(Warning::BadPrivileged(value.to_owned()));
                }
            },
            "pids_max" => match value.parse::<u32>() {
                Ok(n) if n >= 1 => s.pids_max = Some(n),
                _ => {
                    s.pids_max = None;
                    warnings.push(Warning::BadPidsMax(value.to_owned()));
                }
            },
            "persist" => match value.strip_prefix("/dev/vd") {
                Some(d) if d.len() == 1 && d.bytes().all(|b| b.is_ascii_lowercase()) => {
                    s.persist = Some(value.to_owned());
                }
                _ => warnings.push(Warning::BadPersist(value.to_owned())),
            },
            "backend" => match value {
                "microvm" | "namespaces" => s.namespaces = value == "namespaces",
                _ => {
                    s.namespaces = false;
                    warnings.push(Warning::BadBackend(value.to_owned()));
                }
            },
            "net" => match crate::net::parse(value) {
                Some(n) => s.net = Some(n),
                None => warnings.push(Warning::BadNet(value.to_owned())),
            },
            _ => warnings.push(Warning::UnknownKey(param.clone())),
        }
    }
    if s.namespaces {
        s.exit = ExitMode::Exit;
    }
    (s, warnings)
}

/// A vsock port: decimal, 1..=0xffff_fffe (0xffffffff is VMADDR_PORT_ANY).
pub fn parse_port(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u32 = s.parse().ok()?;
    (p != 0 && p != u32::MAX).then_some(p)
}

/// The console's real tty from `/sys/class/tty/console/active` (e.g. "tty0 ttyS0"):
/// the last entry is the one behind /dev/console. `None` if it is not a plain name.
pub fn console_tty(active: &str) -> Option<&str> {
    let name = active.split_ascii_whitespace().last()?;
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(name)
}

/// The first field of /proc/uptime ("12.34 5.67"), if it looks like seconds.
pub fn uptime_seconds(proc_uptime: &str) -> Option<&str> {
    let first = proc_uptime.split_ascii_whitespace().next()?;
    let ok = !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    ok.then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_like_the_kernel() {
        assert_eq!(
            split("  console=ttyS0   quiet\tanchor.room=web\n"),
            vec!["console=ttyS0", "quiet", "anchor.room=web"]
        );
        assert_eq!(split("a=\"x y\" \"b=1 2\" c"), vec!["a=x y", "b=1 2", "c"]);
        assert_eq!(split("e=\"\""), vec!["e="]);
        assert!(split("   ").is_empty());
    }

    #[test]
    fn reads_room_and_keeps_defaults() {
        let (s, w) = parse("console=ttyS0 quiet reboot=k root=/dev/vda ro anchor.room=web");
        assert_eq!(s.room, "web");
        assert_eq!(s.exit, ExitMode::Reboot);
        assert!(s.shell);
        assert_eq!(s.vsock_echo, None);
        assert!(w.is_empty());
    }

    #[test]
    fn privilege_and_pids_cap() {
        let (s, w) = parse("anchor.privileged=1 anchor.pids_max=1024");
        assert!(s.privileged && s.pids_max == Some(1024) && w.is_empty());
        let (s, w) = parse("anchor.privileged=yes anchor.pids_max=0");
        assert!(!s.privileged && s.pids_max.is_none());
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn no_settings_gives_defaults() {
        let (s, w) = parse("console=ttyS0 init=/sbin/init");
        assert_eq!(s, Settings::default());
        assert_eq!(s.room, DEFAULT_ROOM);
        assert!(w.is_empty());
    }

    #[test]
    fn all_keys() {
        let (s, w) =
            parse("anchor.room=dev-2 anchor.exit=poweroff anchor.shell=off anchor.vsock_echo=5000 anchor.persist=/dev/vdb anchor.net=10.0.2.15/24,10.0.2.2,10.0.2.3");
        assert_eq!(
            s,
            Settings {
                room: "dev-2".into(),
                exit: ExitMode::PowerOff,
                shell: false,
                vsock_echo: Some(5000),
                privileged: false,
                pids_max: None,
                persist: Some("/dev/vdb".into()),
                namespaces: false,
                net: crate::net::parse("10.0.2.15/24,10.0.2.2,10.0.2.3"),
            }
        );
        assert!(s.net.is_some() && w.is_empty());
        let (s, w) = parse("anchor.net=10.0.2.15");
        assert_eq!(
            (s.net, w),
            (None, vec![Warning::BadNet("10.0.2.15".into())])
        );
    }

    #[test]
    fn persist_names_a_virtio_disk_only() {
        for bad in [
            "/dev/sda",
            "/dev/vd",
            "/dev/vdb1",
            "/dev/../etc/x",
            "vdb",
            "/dev/vdB",
        ] {
            let (s, w) = parse(&format!("anchor.persist={bad}"));
            assert_eq!(s.persist, None, "{bad}");
            assert_eq!(w, vec![Warning::BadPersist(bad.into())]);
        }
    }

    #[test]
    fn later_key_wins() {
        let (s, _) = parse("anchor.room=a anchor.room=b");
        assert_eq!(s.room, "b");
    }

    #[test]
    fn bad_values_fall_back_with_warnings() {
        let (s, w) = parse(
            "anchor.room=Web/../x anchor.exit=halt anchor.shell=yes anchor.vsock_echo=-1 anchor.colour=red",
        );
        assert_eq!(s, Settings::default());
        assert_eq!(
            w,
            vec![
                Warning::BadRoomName("Web/../x".into()),
                Warning::BadExitMode("halt".into()),
                Warning::BadShell("yes".into()),
                Warning::BadPort("-1".into()),
                Warning::UnknownKey("anchor.colour=red".into()),
            ]
        );
        assert!(w
            .iter()
            .all(|x| !x.to_string().is_empty() && x.to_string().is_ascii()));
    }

    #[test]
    fn room_names() {
        assert!(valid_room_name("base"));
        assert!(valid_room_name("0"));
        assert!(valid_room_name("a_b-c9"));
        assert!(valid_room_name(&"a".repeat(32)));
        assert!(!valid_room_name(&"a".repeat(33)));
        assert!(!valid_room_name(""));
        assert!(!valid_room_name("-x"));
        assert!(!valid_room_name("Web"));
        assert!(!valid_room_name("a b"));
        assert!(!valid_room_name("ä"));
        let (s, w) = parse("anchor.room=");
        assert_eq!(s.room, DEFAULT_ROOM);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("1"), Some(1));
        assert_eq!(parse_port("4294967294"), Some(4_294_967_294));
        assert_eq!(parse_port("4294967295"), None);
        assert_eq!(parse_port("4294967296"), None);
        assert_eq!(parse_port("0"), None);
        assert_eq!(parse_port("+5"), None);
        assert_eq!(parse_port(""), None);
        assert_eq!(parse_port("0x10"), None);
    }

    #[test]
    fn a_namespace_room_exits_instead_of_resetting() {
        let (s, w) = parse("anchor.backend=namespaces anchor.room=work anchor.exit=reboot");
        assert!(w.is_empty(), "{w:?}");
        assert!(s.namespaces);
        assert_eq!((s.room.as_str(), s.exit), ("work", ExitMode::Exit));
        let (s, w) = parse("anchor.backend=container");
        assert!(!s.namespaces && s.exit == ExitMode::Reboot);
        assert_eq!(w, [Warning::BadBackend("container".into())]);
        assert!(!parse("anchor.backend=microvm").0.namespaces);
    }

    #[test]
    fn quoted_room_value() {
        let (s, w) = parse("\"anchor.room=web\" x");
        assert_eq!(s.room, "web");
        assert!(w.is_empty());
    }

    #[test]
    fn uptime_field() {
        assert_eq!(uptime_seconds("1.62 0.10\n"), Some("1.62"));
        assert_eq!(uptime_seconds(""), None);
        assert_eq!(uptime_seconds("x 1"), None);
    }

    #[test]
    fn console_device() {
        assert_eq!(console_tty("ttyS0\n"), Some("ttyS0"));
        assert_eq!(console_tty("tty0 ttyS0\n"), Some("ttyS0"));
        assert_eq!(console_tty(""), None);
        assert_eq!(console_tty("../x"), None);
    }
}
