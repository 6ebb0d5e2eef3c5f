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
                   [--ro HOST_PATH:JAIL_PATH]... [--rw HOST_FILE:JAIL_PATH]...
                   [--dev kvm|urandom|null]... [--net outbound] -- PROGRAM [ARG]...
       anchor-jail --backend namespaces --name ROOM --uid UID --gid GID --run-dir DIR
                   --memory BYTES --pids N --cpu-weight N [--cpus N] --image SQUASHFS
                   [--volume FILE] [--nofile N] [--nproc N] [--fsize BYTES]
                   [--net outbound --net-uid UID] -- PROGRAM [ARG]...

Both forms put PROGRAM in the room's cgroup (anchor/ROOM: memory.max BYTES without swap,
pids.max N, cpu weight N, with --cpus the CPU time of N CPUs; cgroup v2 where it has the
memory, pids and cpu controllers, v1 otherwise; the version used is printed on stderr)
and in a fresh PID namespace (bay0 starts the jail as its PID 1; started otherwise, the
jail makes one itself), with no_new_privs.

First form (--backend vmm, the default: a room's anchor-vmm): fresh mount, IPC, UTS and
network namespaces; a root file system holding only each --ro file or directory
(read-only, nosuid, nodev), each --rw file (writable, nosuid, nodev, noexec: one
regular file, never a symlink, a path under one, a directory or a device; the caller
makes it accessible to UID; marked as a guest's disk, xattr trusted.anchor.guest-disk,
so that the second form never mounts it) -- each bind at a JAIL_PATH of its own, none
inside another's --, the --dev device nodes under /dev (owned by UID), and DIR
(the room's run directory, owned by UID) as /run; PROGRAM runs as UID:GID with no
capabilities. The memory cgroup kills the whole group on OOM. Defaults: --nofile 256,
--nproc 64, --fsize 0 (a --rw file is written only within --fsize BYTES).
--net outbound (PROGRAM is anchor-vmm): before leaving the host's network namespace,
start /usr/bin/passt on one end of a Unix socket pair, in the room's cgroup and PID
namespace, as UID:GID with no capabilities (no inbound ports, gateway not mapped to
the host, DNS forwarded to the host's resolver); PROGRAM gets the other end as
`--net-fd N`, `--net-host-fd M` (a NETLINK_ROUTE socket of the host's network namespace:
the VMM refuses every address the host holds as its own, as it is at each frame),
`--net-deny 10.0.2.3` (so no DNS) when the host's resolver is the host itself or cannot
be read, and `anchor.net=10.0.2.15/24,10.0.2.2,10.0.2.3` appended to its `--cmdline`
value.

Second form (--backend namespaces: the whole room on the host kernel): fresh user, mount,
IPC, UTS, network (loopback, up; with --net eth0 too), cgroup and time namespaces (the
room's clocks start at zero); uid and gid 0 in the room are UID and GID on the host,
nothing else is mapped; the root is SQUASHFS, attached read-only through an autoclear
loop device of its own (never a running room's: rooms share no superblock, no inode), with
one tmpfs of BYTES/2 for /tmp /run /var /home /root /dev/shm, a /dev of null zero full
random urandom tty and a private devpts, /proc with the host's knobs read-only or
masked, and DIR/vsock_1024 (bay0's umbilical socket) at /dev/anchor-umbilical. With
--volume, FILE (the room's vault volume: one regular file, its size the quota) is
formatted ext4 if it is all zeros, attached through an autoclear loop device and
mounted at /persist (nodev, nosuid, noexec, writable by the room's root only), its
contents given to UID:GID; a FILE holding anything but ext2/3/4, or marked as a
microVM's disk by the first form, is refused. The room's task count (pids.max and
RLIMIT_NPROC) is at most a sixteenth of the host's (kernel.pid_max, threads-max; said on
stderr when it lowers --pids or --nproc). PROGRAM
(a path in the image, normally /sbin/init) runs as the room's PID 1 with no capability
in any namespace (securebits locked, so uid 0 cannot regain any), under landlock where
the kernel has it (whether it applied is printed on stderr) and the room's seccomp
filter, its stderr joined to its stdout (the console). Only the chosen process is OOM
killed. Defaults: --nofile 4096, --nproc the --pids value, --fsize unlimited.
--net outbound --net-uid NUID: the room's network namespace gets eth0 (a TAP device,
10.0.2.15/24, MTU 1500, default route via 10.0.2.2) besides loopback, set up by the jail
(the room cannot change it); passt starts as in the first form, and a relay forked by the
jail carries frames between eth0 and passt, refusing those addressed to the host itself
as the VMM does (loopback, multicast, broadcast, every address the host holds as its own
at each frame, and 10.0.2.3 when DNS would reach the host). passt and the relay run as
NUID:NUID (not UID: the room's processes may neither signal nor trace them), with no
capabilities; the relay is not dumpable and under a seccomp allow list of its own.
PROGRAM gets `anchor.net=10.0.2.15/24,10.0.2.2,10.0.2.3` as one more argument.

Exit status: PROGRAM's, or 1 when the jail cannot be built (the reason on stderr), 2
for a bad command line.
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

/// What the jail runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A room's VMM, alone in a minimal root (`--backend vmm`, the default).
    Vmm,
    /// A whole room on the host kernel (`--backend namespaces`).
    Namespaces,
}

/// A bind mount: a host path shown at a path inside the jail, read-only unless
/// `writable` (`--rw`: one regular file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub jail: PathBuf,
    pub writable: bool,
}

/// Everything the jail does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub backend: Backend,
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub run_dir: PathBuf,
    pub limits: Limits,
    pub rlimits: Rlimits,
    pub binds: Vec<Bind>,
    pub devs: Vec<Dev>,
    /// The room's SquashFS image (namespaces).
    pub image: Option<PathBuf>,
    /// The room's network (`--net`).
    pub net: Option<crate::net::Mode>,
    /// The uid and gid of a namespace room's passt and relay (`--net-uid`).
    pub net_uid: Option<u32>,
    /// The room's vault volume, mounted at /persist (namespaces).
    pub volume: Option<PathBuf>,
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

/// Every option; each takes a value.
const VALUE_FLAGS: [&str; 19] = [
    "--name",
    "--uid",
    "--gid",
    "--run-dir",
    "--memory",
    "--pids",
    "--cpu-weight",
    "--nofile",
    "--nproc",
    "--fsize",
    "--cpus",
    "--backend",
    "--image",
    "--volume",
    "--ro",
    "--rw",
    "--net",
    "--net-uid",
    "--dev",
];

/// Parses the arguments (without the program name).
pub fn parse(args: &[std::ffi::OsString]) -> Result<Command> {
    let mut name = None;
    let (mut uid, mut gid, mut run_dir) = (None, None, None);
    let (mut memory, mut pids, mut weight, mut cpus) = (None, None, None, None);
    let (mut nofile, mut nproc, mut fsize) = (None, None, None);
    let (mut backend, mut image, mut volume, mut net) = (Backend::Vmm, None, None, None);
    let mut net_uid = None;
    let (mut binds, mut devs) = (Vec::new(), Vec::new());
    let mut seen: Vec<&str> = Vec::new();
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
        let Some(&known) = VALUE_FLAGS.iter().find(|f| **f == flag) else {
            return usage(format!("unknown option {flag} (see --help)"));
        };
        let Some(value) = args.get(i + 1) else {
            return usage(format!("{flag} needs a value (see --help)"));
        };
        // Only --ro, --rw and --dev repeat; a second --name (or --memory...) is a mistake,
        // not an override.
        if !matches!(known, "--ro" | "--rw" | "--dev") {
            if seen.contains(&known) {
                return usage(format!("{flag} given more than once"));
            }
            seen.push(known);
        }
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
            "--nofile" => nofile = Some(number(&flag, v)?),
            "--nproc" => nproc = Some(number(&flag, v)?),
            "--fsize" => fsize = Some(number(&flag, v)?),
            "--cpus" => cpus = Some(number::<u32>(&flag, v)?),
            "--backend" => {
                backend = match v {
                    "vmm" => Backend::Vmm,
                    "namespaces" => Backend::Namespaces,
                    _ => return usage(format!("--backend wants vmm or namespaces, not {v:?}")),
                }
            }
            "--image" => {
                if !Path::new(v).is_absolute() {
                    return usage(format!("--image: {v:?} is not an absolute path"));
                }
                image = Some(PathBuf::from(v));
            }
            "--volume" => {
                regular_file("--volume", Path::new(v))?;
                volume = Some(PathBuf::from(v));
            }
            "--ro" | "--rw" => {
                let (host, jail) = v
                    .split_once(':')
                    .ok_or_else(|| Error::Usage(format!("{flag} wants HOST:JAIL, not {v:?}")))?;
                if !Path::new(host).is_absolute() {
                    return usage(format!("{flag}: host path {host:?} is not absolute"));
                }
                let writable = flag == "--rw";
                if writable {
                    regular_file("--rw", Path::new(host))?;
                }
                binds.push(Bind {
                    host: PathBuf::from(host),
                    jail: jail_path(&flag, jail)?,
                    writable,
                });
            }
            "--net" => {
                net = Some(
                    crate::net::Mode::parse(v)
                        .ok_or_else(|| Error::Usage(format!("--net wants outbound, not {v:?}")))?,
                )
            }
            "--net-uid" => net_uid = Some(number::<u32>(&flag, v)?),
            "--dev" => {
                let dev = Dev::parse(v)
                    .ok_or_else(|| Error::Usage(format!("--dev: unknown device {v:?}")))?;
                if devs.contains(&dev) {
                    return usage(format!("--dev {v} given more than once"));
                }
                devs.push(dev);
            }
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
    if cpus.is_some_and(|c| !(1..=1024).contains(&c)) {
        return usage("--cpus wants 1..=1024");
    }
    overlapping_binds(&binds)?;
    let namespaces = backend == Backend::Namespaces;
    if namespaces && (!binds.is_empty() || !devs.is_empty()) {
        return usage(
            "--ro, --rw and --dev are for the VMM jail; a namespace room gets its image and a fixed /dev",
        );
    }
    match (namespaces && net.is_some(), net_uid) {
        (true, None) => return usage("--net with --backend namespaces needs --net-uid"),
        (false, Some(_)) => {
            return usage("--net-uid is for a namespace room's --net (a VMM's passt is UID's)")
        }
        (true, Some(n)) if n == 0 || n == uid || n == gid => {
            return usage("--net-uid must be neither root nor the room's uid or gid")
        }
        _ => {}
    }
    if volume.is_some() && !namespaces {
        return usage("--volume is for a namespace room (a VMM gets its volume with --rw)");
    }
    if namespaces != image.is_some() {
        return usage("--image is required with --backend namespaces, and only there");
    }
    let rlimits = if namespaces {
        Rlimits {
            nofile: nofile.unwrap_or(4096),
            nproc: nproc.unwrap_or(pids),
            fsize: fsize.unwrap_or(libc::RLIM_INFINITY),
            memlock: 8 << 20,
        }
    } else {
        let d = Rlimits::default();
        Rlimits {
            nofile: nofile.unwrap_or(d.nofile),
            nproc: nproc.unwrap_or(d.nproc),
            fsize: fsize.unwrap_or(d.fsize),
            memlock: d.memlock,
        }
    };
    let Some((program, _)) = rest.split_first() else {
        return usage("no program after --");
    };
    let program_path = jail_path_program(program.as_bytes())?;
    let argv = rest
        .iter()
        .map(|a| cstring("an argument", a.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Command::Run(Box::new(Config {
        backend,
        name,
        uid,
        gid,
        run_dir,
        limits: Limits {
            memory_bytes,
            pids,
            cpu_weight,
            cpus,
            // A VMM is the room: all or nothing. In a namespace room the kernel picks
            // the process to kill, as a room's own kernel would.
            oom_group: !namespaces,
        },
        rlimits,
        binds,
        devs,
        image,
        net,
        net_uid,
        volume,
        program: program_path,
        argv,
    })))
}

/// Refuses two binds at one jail path, or one inside another's: the second would be
/// made inside the first (a host file or directory bound there), never in the jail's own
/// tmpfs, and a `--rw` host file under it would be truncated by its creation. Sorted by
/// components, a path's descendants follow it at once, so neighbours are enough (no
/// quadratic walk over a command line of many binds).
fn overlapping_binds(binds: &[Bind]) -> Result<()> {
    let mut paths: Vec<&Path> = binds.iter().map(|b| b.jail.as_path()).collect();
    paths.sort_unstable();
    for pair in paths.windows(2) {
        let [outer, inner] = pair else { continue };
        if !inner.starts_with(outer) {
            continue;
        }
        let at = if outer == inner {
            "is bound twice".to_owned()
        } else {
            format!("is inside {}, bound too", outer.display())
        };
        return usage(format!(
            "--ro/--rw: jail path {} {at} (each bind needs a path of its own)",
            inner.display()
        ));
    }
    Ok(())
}

/// A `--rw` host path (or the `--volume` file, `flag` names which) must name one regular
/// file by its real path: no symlink (as the file or anywhere above it), no directory,
/// device, FIFO or socket. Its identity (device, inode) is returned, so the mount can be
/// checked to show this very file.
pub fn regular_file(flag: &str, host: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: &str| usage(format!("{flag}: {} {why}", host.display()));
    let meta = match std::fs::symlink_metadata(host) {
        Ok(m) => m,
        Err(e) => return refuse(&format!("cannot be read: {e}")),
    };
    if meta.file_type().is_symlink() {
        return refuse("is a symlink (the path must name the file itself)");
    }
    if !meta.is_file() {
        return refuse("is not a regular file");
    }
    if std::fs::canonicalize(host).ok().as_deref() != Some(host) {
        return refuse("is not its real path (a symlink, . or .. on the way)");
    }
    Ok((meta.dev(), meta.ino()))
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
        assert_eq!(c.net, None);
        let Command::Run(n) = parse(&args(&format!("{BASE} --net outbound -- /v"))).unwrap() else {
            panic!()
        };
        assert_eq!(n.net, Some(crate::net::Mode::Outbound));
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
            (
                "--dev kvm --dev null --dev kvm -- /v",
                "--dev kvm given more than once",
            ),
            ("--net inbound -- /v", "--net wants outbound"),
            ("--bogus 1 -- /v", "unknown option"),
            ("--version", "unknown option --version"),
            ("--name other -- /v", "--name given more than once"),
            ("--memory 1 -- /v", "--memory given more than once"),
            (
                "--backend namespaces --image /i --volume /nonexistent/v -- /v",
                "--volume: /nonexistent/v cannot be read",
            ),
            ("", "no program"),
            ("--ro /a:/x --ro /b:/x -- /v", "jail path /x is bound twice"),
            (
                "--ro /a:/lib --ro /b:/lib/x/y -- /v",
                "jail path /lib/x/y is inside /lib, bound too",
            ),
            (
                "--ro /b:/lib/x --ro /a:/lib -- /v",
                "jail path /lib/x is inside /lib, bound too",
            ),
            (
                "--ro /a:/a --ro /c:/a/b/c --ro /d:/a/b0 --ro /e:/a0 -- /v",
                "jail path /a/b/c is inside /a, bound too",
            ),
        ] {
            let line = format!("{BASE} {extra}");
            let e = parse(&args(line.trim())).unwrap_err().to_string();
            assert!(e.contains(why), "{extra}: {e}");
        }
        // Neighbours are not nested: /lib64 is not inside /lib.
        let libs = format!(
            "{BASE} --ro /lib:/lib --ro /lib64:/lib64 --ro /usr/lib:/usr/lib --ro /x:/lib-x \
             --ro /y:/lib0/lib -- /v"
        );
        assert!(parse(&args(&libs)).is_ok());
        let root = BASE.replace("--uid 64001", "--uid 0");
        let e = parse(&args(&format!("{root} -- /v")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("never runs its program as root"), "{e}");
        let bad_name = BASE.replace("--name web", "--name ../x");
        assert!(parse(&args(&format!("{bad_name} -- /v"))).is_err());
        assert!(matches!(parse(&args("--help")).unwrap(), Command::Help));
    }

    #[test]
    fn a_namespace_room_command_line_parses_with_its_own_defaults() {
        let line = format!(
            "--backend namespaces {BASE} --cpus 2 --image /i/base.squashfs -- /sbin/init \
             anchor.backend=namespaces"
        );
        let Command::Run(c) = parse(&args(&line)).unwrap() else {
            panic!()
        };
        assert_eq!(c.backend, Backend::Namespaces);
        assert_eq!(c.image.as_deref(), Some(Path::new("/i/base.squashfs")));
        assert_eq!((c.limits.cpus, c.limits.oom_group), (Some(2), false));
        assert_eq!(c.rlimits.nproc, 24);
        assert_eq!(c.rlimits.nofile, 4096);
        assert_eq!(c.rlimits.fsize, libc::RLIM_INFINITY);
        assert_eq!((c.net, c.net_uid), (None, None));
        let with_net = line.replace(" -- ", " --net outbound --net-uid 64101 -- ");
        let Command::Run(n) = parse(&args(&with_net)).unwrap() else {
            panic!()
        };
        assert_eq!(n.net, Some(crate::net::Mode::Outbound));
        assert_eq!(n.net_uid, Some(64101));
        let Command::Run(v) = parse(&args(&format!("{BASE} -- /v"))).unwrap() else {
            panic!()
        };
        assert_eq!(
            (v.backend, v.limits.oom_group, v.rlimits.fsize),
            (Backend::Vmm, true, 0)
        );
        for (extra, why) in [
            ("--backend namespaces -- /sbin/init", "--image is required"),
            ("--image /i -- /v", "--image is required"),
            (
                "--backend namespaces --image i -- /v",
                "not an absolute path",
            ),
            (
                "--backend namespaces --image /i --dev kvm -- /v",
                "--ro, --rw and --dev",
            ),
            ("--backend ns --image /i -- /v", "wants vmm or namespaces"),
            (
                "--backend namespaces --image /i --net outbound -- /v",
                "--net with --backend namespaces needs --net-uid",
            ),
            (
                "--backend namespaces --image /i --net outbound --net-uid 64001 -- /v",
                "neither root nor the room's uid",
            ),
            (
                "--backend namespaces --image /i --net outbound --net-uid 0 -- /v",
                "neither root nor the room's uid",
            ),
            (
                "--net outbound --net-uid 64101 -- /v",
                "--net-uid is for a namespace",
            ),
            (
                "--backend namespaces --image /i --net-uid 64101 -- /v",
                "--net-uid is for a namespace",
            ),
            ("--cpus 0 -- /v", "--cpus wants"),
        ] {
            let e = parse(&args(&format!("{BASE} {extra}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{extra}: {e}");
        }
    }

    /// A scratch directory with a regular file, a symlink to it, a directory and a
    /// symlinked directory holding the file.
    fn scratch() -> PathBuf {
        let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        let dir = tmp.join(format!("jail-rw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/vol.img"), [0u8; 4096]).unwrap();
        std::os::unix::fs::symlink(dir.join("d/vol.img"), dir.join("link.img")).unwrap();
        std::os::unix::fs::symlink(dir.join("d"), dir.join("dlink")).unwrap();
        dir
    }

    #[test]
    fn a_rw_bind_is_one_regular_file_by_its_real_path() {
        let dir = scratch();
        let file = dir.join("d/vol.img");
        let line = format!(
            "{BASE} --fsize 4096 --ro /k:/boot/kernel --rw {}:/volume.img -- /v",
            file.display()
        );
        let Command::Run(c) = parse(&args(&line)).unwrap() else {
            panic!()
        };
        assert_eq!(
            c.binds[1],
            Bind {
                host: file.clone(),
                jail: PathBuf::from("/volume.img"),
                writable: true
            }
        );
        assert!(!c.binds[0].writable);
        assert_eq!(c.rlimits.fsize, 4096);
        for (host, why) in [
            (dir.join("link.img"), "is a symlink"),
            (dir.join("dlink/vol.img"), "is not its real path"),
            (dir.join("d/../d/vol.img"), "is not its real path"),
            (dir.join("d"), "is not a regular file"),
            (PathBuf::from("/dev/null"), "is not a regular file"),
            (dir.join("none.img"), "cannot be read"),
        ] {
            let line = format!("{BASE} --rw {}:/volume.img -- /v", host.display());
            let e = parse(&args(&line)).unwrap_err().to_string();
            assert!(
                e.contains(&format!("--rw: {} {why}", host.display())),
                "{e}"
            );
        }
        for (extra, why) in [
            (
                format!("--rw {}:/run/v -- /v", file.display()),
                "which the jail owns",
            ),
            ("--rw d/vol.img:/v -- /v".into(), "not absolute"),
            (
                format!("--rw {} -- /v", file.display()),
                "--rw wants HOST:JAIL",
            ),
            (
                format!(
                    "--backend namespaces --image /i --rw {}:/v -- /v",
                    file.display()
                ),
                "--ro, --rw and --dev are for the VMM jail",
            ),
        ] {
            let e = parse(&args(&format!("{BASE} {extra}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{extra}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
