// SPDX-License-Identifier: GPL-3.0-or-later
//! The jail's command line: everything it does is decided by bay0 and written here, so
//! the jail holds no policy of its own.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::cgroup::Limits;
use crate::error::{Error, Result};
use crate::privs::Rlimits;

/// Usage text (`--help`).
pub const USAGE: &str = "\
usage: anchor-jail --name ROOM --uid UID --gid GID --run-dir DIR
                   --memory BYTES --pids N --cpu-weight N
                   [--nofile N] [--nproc N] [--fsize BYTES]
                   [--ro HOST_PATH:JAIL_PATH]... [--dev kvm|urandom|null]...
                   -- PROGRAM [ARG]...

Runs PROGRAM (a path inside the jail) as UID:GID with no capabilities and no_new_privs,
in the room's cgroup (anchor/ROOM: memory.max BYTES, pids.max N, cpu weight N; cgroup v2
where it has those controllers, v1 otherwise), in fresh mount, IPC, UTS and network
namespaces (and a fresh PID namespace), with a root file system holding only: each
--ro file or directory (read-only, nosuid, nodev), the --dev device nodes under /dev
(owned by UID), and DIR (the room's run directory, owned by UID) as /run. bay0 starts it
as PID 1 of a new PID namespace; started otherwise, it makes one itself.
Exit status: PROGRAM's, or 1 when the jail cannot be built (the reason on stderr).
";

/// A device node the jail may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dev {
    Kvm,
    Urandom,
    Null,
}

impl Dev {
    /// Name under /dev, (major, minor), and mode.
    pub fn node(self) -> (&'static str, u32, u32, u32) {
        match self {
            Dev::Kvm => ("kvm", 10, 232, 0o600),
            Dev::Urandom => ("urandom", 1, 9, 0o444),
            Dev::Null => ("null", 1, 3, 0o666),
        }
    }

    fn parse(s: &str) -> Option<Dev> {
        Some(match s {
            "kvm" => Dev::Kvm,
            "urandom" => Dev::Urandom,
            "null" => Dev::Null,
            _ => return None,
        })
    }
}

/// A read-only bind mount: a host path shown at a path inside the jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub jail: PathBuf,
}

/// Everything the jail does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub run_dir: PathBuf,
    pub limits: Limits,
    pub rlimits: Rlimits,
    pub binds: Vec<Bind>,
    pub devs: Vec<Dev>,
    pub program: CString,
    pub argv: Vec<CString>,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Help,
    Run(Box<Config>),
}

fn usage<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Usage(msg.into()))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| Error::Usage(format!("{flag} wants a number, not {v:?}")))
}

/// An absolute path inside the jail with only normal components, not under /run or /dev
/// (those are the jail's own).
fn jail_path(flag: &str, p: &str) -> Result<PathBuf> {
    let path = PathBuf::from(p);
    let normal = path
        .components()
        .skip(1)
        .all(|c| matches!(c, Component::Normal(_)));
    if !path.is_absolute() || !normal || path.components().count() < 2 {
        return usage(format!(
            "{flag}: {p:?} is not an absolute path below / without . or .."
        ));
    }
    if path.starts_with("/run") || path.starts_with("/dev") {
        return usage(format!(
            "{flag}: {p:?} is under /run or /dev, which the jail owns"
        ));
    }
    Ok(path)
}

fn cstring(what: &str, s: &[u8]) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Usage(format!("{what} contains a NUL byte")))
}

/// Parses the arguments (without the program name).
pub fn parse(args: &[std::ffi::OsString]) -> Result<Command> {
    let mut name = None;
    let (mut uid, mut gid, mut run_dir) = (None, None, None);
    let (mut memory, mut pids, mut weight) = (None, None, None);
    let mut rl = Rlimits::default();
    let (mut binds, mut devs) = (Vec::new(), Vec::new());
    let mut i = 0;
    let mut rest: &[std::ffi::OsString] = &[];
    while let Some(arg) = args.get(i) {
        let flag = arg.to_string_lossy();
        if flag == "--help" || flag == "-h" {
            return Ok(Command::Help);
        }
        if flag == "--" {
            rest = args.get(i + 1..).unwrap_or_default();
            break;
        }
        let Some(value) = args.get(i + 1) else {
            return usage(format!("{flag} needs a value (see --help)"));
        };
        let v = value
            .to_str()
            .ok_or_else(|| Error::Usage(format!("{flag}: value is not UTF-8")))?;
        match flag.as_ref() {
            "--name" => name = Some(v.to_string()),
            "--uid" => uid = Some(number::<u32>(&flag, v)?),
            "--gid" => gid = Some(number::<u32>(&flag, v)?),
            "--run-dir" => run_dir = Some(PathBuf::from(v)),
            "--memory" => memory = Some(number::<u64>(&flag, v)?),
            "--pids" => pids = Some(number::<u64>(&flag, v)?),
            "--cpu-weight" => weight = Some(number::<u32>(&flag, v)?),
            "--nofile" => rl.nofile = number(&flag, v)?,
            "--nproc" => rl.nproc = number(&flag, v)?,
            "--fsize" => rl.fsize = number(&flag, v)?,
            "--ro" => {
                let (host, jail) = v
                    .split_once(':')
                    .ok_or_else(|| Error::Usage(format!("--ro wants HOST:JAIL, not {v:?}")))?;
                if !Path::new(host).is_absolute() {
                    return usage(format!("--ro: host path {host:?} is not absolute"));
                }
                binds.push(Bind {
                    host: PathBuf::from(host),
                    jail: jail_path("--ro", jail)?,
                });
            }
            "--dev" => devs.push(
                Dev::parse(v)
                    .ok_or_else(|| Error::Usage(format!("--dev: unknown device {v:?}")))?,
            ),
            _ => return usage(format!("unknown option {flag} (see --help)")),
        }
        i += 2;
    }
    let name = name.ok_or_else(|| Error::Usage("--name is required".into()))?;
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return usage(format!(
            "--name {name:?} is not a room name (1-32 of a-z 0-9 -)"
        ));
    }
    let (Some(uid), Some(gid)) = (uid, gid) else {
        return usage("--uid and --gid are required");
    };
    if uid == 0 || gid == 0 {
        return usage("the jail never runs its program as root (uid/gid 0)");
    }
    let run_dir = run_dir.ok_or_else(|| Error::Usage("--run-dir is required".into()))?;
    if !run_dir.is_absolute() {
        return usage("--run-dir must be absolute");
    }
    let (Some(memory_bytes), Some(pids), Some(cpu_weight)) = (memory, pids, weight) else {
        return usage("--memory, --pids and --cpu-weight are required");
    };
    if !(1..=10_000).contains(&cpu_weight) || pids == 0 || memory_bytes < 16 << 20 {
        return usage("--cpu-weight wants 1..=10000, --pids >= 1, --memory >= 16 MiB");
    }
    let Some((program, _)) = rest.split_first() else {
        return usage("no program after --");
    };
    let program_path = jail_path_program(program.as_bytes())?;
    let argv = rest
        .iter()
        .map(|a| cstring("an argument", a.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Command::Run(Box::new(Config {
        name,
        uid,
        gid,
        run_dir,
        limits: Limits {
            memory_bytes,
            pids,
            cpu_weight,
        },
        rlimits: rl,
        binds,
        devs,
        program: program_path,
        argv,
    })))
}

fn jail_path_program(p: &[u8]) -> Result<CString> {
    if p.first() != Some(&b'/') {
        return usage("PROGRAM must be an absolute path inside the jail");
    }
    cstring("PROGRAM", p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn args(s: &str) -> Vec<OsString> {
        s.split(' ').map(OsString::from).collect()
    }

    const BASE: &str = "--name web --uid 64001 --gid 64001 --run-dir /run/anchor/rooms/web \
                        --memory 2214592512 --pids 24 --cpu-weight 100";

    #[test]
    fn a_full_command_line_parses() {
        let line = format!(
            "{BASE} --nofile 256 --ro /usr/bin/anchor-vmm:/bin/vmm --ro /k:/boot/kernel \
             --dev kvm --dev urandom -- /bin/vmm --kernel /boot/kernel"
        );
        let Command::Run(c) = parse(&args(&line)).unwrap() else {
            panic!()
        };
        assert_eq!(c.name, "web");
        assert_eq!((c.uid, c.gid), (64001, 64001));
        assert_eq!(c.limits.pids, 24);
        assert_eq!(c.rlimits.nofile, 256);
        assert_eq!(c.binds.len(), 2);
        assert_eq!(c.binds[0].jail, PathBuf::from("/bin/vmm"));
        assert_eq!(c.devs, vec![Dev::Kvm, Dev::Urandom]);
        assert_eq!(c.program.to_bytes(), b"/bin/vmm");
        assert_eq!(c.argv.len(), 3);
    }

    #[test]
    fn dangerous_or_broken_command_lines_are_refused() {
        for (extra, why) in [
            ("-- vmm", "absolute path inside"),
            ("--ro /a:/run/x -- /v", "which the jail owns"),
            ("--ro /a:/dev/kvm -- /v", "which the jail owns"),
            ("--ro /a:/x/../etc -- /v", "without . or .."),
            ("--ro a:/x -- /v", "not absolute"),
            ("--ro /a -- /v", "HOST:JAIL"),
            ("--dev mem -- /v", "unknown device"),
            ("--bogus 1 -- /v", "unknown option"),
            ("", "no program"),
        ] {
            let line = format!("{BASE} {extra}");
            let e = parse(&args(line.trim())).unwrap_err().to_string();
            assert!(e.contains(why), "{extra}: {e}");
        }
        let root = BASE.replace("--uid 64001", "--uid 0");
        let e = parse(&args(&format!("{root} -- /v")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("never runs its program as root"), "{e}");
        let bad_name = BASE.replace("--name web", "--name ../x");
        assert!(parse(&args(&format!("{bad_name} -- /v"))).is_err());
        assert!(matches!(parse(&args("--help")).unwrap(), Command::Help));
    }
}
