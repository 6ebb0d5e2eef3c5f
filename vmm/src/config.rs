// SPDX-License-Identifier: GPL-3.0-or-later
//! The validated VM configuration and its command-line parser.
//! Parse -> validate -> apply: `parse` returns either a complete, checked
//! `VmConfig` or one error naming the offending flag.

use std::fmt;
use std::path::PathBuf;

use crate::arch::current::layout;
use crate::devices::serial::SerialTarget;

/// Default kernel command line for rooms.
#[cfg(not(target_arch = "aarch64"))]
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";
/// Default kernel command line for rooms (aarch64: no PC devices to tame; the
/// UART is still ttyS0, and PSCI ends the room on reboot or power-off).
#[cfg(target_arch = "aarch64")]
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=1 nomodule";

/// Which kind of VM to create (`--vm-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmType {
    /// An ordinary KVM VM.
    #[default]
    Ordinary,
    /// A protected VM (arm64 pKVM): refused, never downgraded, where the
    /// host's KVM does not offer it.
    Protected,
}

/// Maximum number of vcpus.
pub const MAX_VCPUS: u8 = 16;

/// One `--disk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// Image path.
    pub path: PathBuf,
    /// Read-only.
    pub read_only: bool,
}

/// `--vsock-cid` + `--vsock-uds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsockConfig {
    /// Guest CID (>= 3).
    pub cid: u64,
    /// Host Unix socket path.
    pub uds: PathBuf,
}

/// `--net-uds` / `--net-fd`: the virtio-net device's backend, a Unix stream socket
/// speaking QEMU's `-netdev stream` framing (passt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetConfig {
    /// Connect to the socket listening at this path (passt `--socket PATH`).
    Uds(PathBuf),
    /// An inherited, connected socket (the other end of a socketpair handed to
    /// `passt --fd`); taken over before the VMM opens anything else.
    Fd(i32),
}

/// A complete VM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// ELF kernel.
    pub kernel: PathBuf,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// Kernel command line (virtio_mmio.device= entries are appended).
    pub cmdline: String,
    /// Disks in command-line order.
    pub disks: Vec<DiskConfig>,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Number of vcpus.
    pub vcpus: u8,
    /// Optional vsock.
    pub vsock: Option<VsockConfig>,
    /// Optional network device.
    pub net: Option<NetConfig>,
    /// `--net-deny`: the network device is strict and refuses these networks too.
    pub net_deny: Option<Vec<crate::devices::virtio::net::egress::Net4>>,
    /// `--net-host-fd`: an inherited NETLINK_ROUTE socket of the anchor host; the device
    /// is strict and refuses the host's local networks as they are at each moment.
    pub net_host_fd: Option<i32>,
    /// Serial output.
    pub serial: SerialTarget,
    /// Boot timer device present.
    pub boot_timer: bool,
    /// Print VM exit counts (KVM statistics) on stderr when the VM stops.
    pub exit_stats: bool,
    /// Kind of VM.
    pub vm_type: VmType,
    /// Test-only: make the VMM thread issue a forbidden syscall.
    pub seccomp_test_trigger: bool,
    /// Test-only: the host entropy source reports "not ready" for this many ms after start
    /// (exercises virtio-rng's retry path under the real seccomp filter).
    pub test_entropy_unready_ms: u64,
    /// Test-only: do not map the virtio register pages into the guest, so register reads
    /// exit as on a KVM without KVM_CAP_READONLY_MEM (exercises that path end to end).
    pub test_register_reads_exit: bool,
}

/// How many virtio devices a VM has: its disks, the rng every VM gets, and vsock and
/// network when asked for.
pub fn virtio_devices(disks: usize, vsock: bool, net: bool) -> u64 {
    (disks as u64)
        .saturating_add(1)
        .saturating_add(u64::from(vsock))
        .saturating_add(u64::from(net))
}

impl VmConfig {
    /// How many virtio devices this VM has (see [`virtio_devices`]).
    pub fn virtio_devices(&self) -> u64 {
        virtio_devices(self.disks.len(), self.vsock.is_some(), self.net.is_some())
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print usage and exit 0.
    Help,
    /// Run a VM.
    Run(Box<VmConfig>),
}

/// A usage error: the flag and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// The flag (or argument) at fault.
    pub flag: String,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.flag, self.msg)
    }
}

impl std::error::Error for UsageError {}

fn err(flag: &str, msg: impl Into<String>) -> UsageError {
    UsageError {
        flag: flag.to_owned(),
        msg: msg.into(),
    }
}

/// Most `--net-deny` addresses (a host has a handful).
pub const MAX_NET_DENY: usize = 256;

/// Usage text.
pub const USAGE: &str = "\
usage: anchor-vmm --kernel PATH [--initrd PATH] [--cmdline STR] [--disk PATH[,ro]]...
                  [--mem-mib N] [--vcpus N] [--vsock-cid N --vsock-uds PATH]
                  [--net-uds PATH | --net-fd N] [--net-deny IPV4[/N]]...
                  [--net-host-fd N]
                  [--serial stdout|file:PATH|socket:PATH] [--boot-timer]
                  [--exit-stats] [--vm-type ordinary|protected] [--help]

  --kernel PATH      x86_64: ELF vmlinux with a PVH note (PVH boot) or a plain
                     64-bit ELF (Linux 64-bit boot protocol); aarch64: a Linux
                     arm64 Image (booted with a device tree in x0)
  --initrd PATH      initial ramdisk
  --cmdline STR      kernel command line (default: console=ttyS0 panic=1 nomodule,
                     on x86_64 also reboot=k pci=off and i8042 settings)
  --disk PATH[,ro]   virtio-blk disk, repeatable, in order (,ro = read-only)
  --mem-mib N        guest RAM in MiB, 16..=16384 (default 128)
  --vcpus N          number of vcpus, 1..=16 (default 1)
  --vsock-cid N      guest CID (>= 3) of the virtio-vsock device
  --vsock-uds PATH   host Unix socket of the vsock device (needs --vsock-cid)
  --net-uds PATH     virtio-net device (no offloads, MTU 1500) whose frames go to
                     the Unix stream socket listening at PATH, with QEMU's
                     `-netdev stream` framing (passt --socket PATH); connected
                     once at start (exit 3 if nobody listens)
  --net-fd N         the same device over the inherited, connected Unix stream
                     socket N (>= 3), e.g. one end of a socketpair whose other
                     end was given to `passt --fd`
  --net-deny IPV4[/N] drop guest frames to this IPv4 address or network
                     (repeatable: the host's own addresses and local networks);
                     with any, only IPv4 and ARP frames leave. Frames to 127/8,
                     0/8 and 224/4 and above never leave.
  --net-host-fd N    the inherited NETLINK_ROUTE socket N (>= 3) of the host's
                     network namespace, subscribed to its IPv4 address and route
                     changes: guest frames to any address the host holds as its
                     own (a local route) at that moment are dropped too, however
                     new; only IPv4 and ARP frames leave. The VMM exits 3 if the
                     host's routes cannot be read through it at start.
  --serial TARGET    serial output: stdout (default), file:PATH (created or
                     truncated), socket:PATH (connects to a listening Unix socket)
  --boot-timer       enable the boot-timer device (x86_64 0xc0000000,
                     aarch64 0x40000000)
  --exit-stats       at exit, print one line of VM exit counts on stderr (KVM's
                     per-vcpu statistics, summed, and queue notifications that
                     reached the VMM as MMIO exits)
  --vm-type TYPE     ordinary (default) or protected: a pKVM protected VM
                     (arm64 only; exit 3 if the host's KVM refuses it)
  --help             this text

exit status: 0 guest powered off or reset, 2 usage error, 3 VMM error,
             4 guest fault (triple fault, KVM internal error, unhandled exit)
";

fn path(flag: &str, v: &str) -> Result<PathBuf, UsageError> {
    if v.is_empty() {
        return Err(err(flag, "empty path"));
    }
    Ok(PathBuf::from(v))
}

fn number(flag: &str, v: &str) -> Result<u64, UsageError> {
    v.parse::<u64>()
        .map_err(|_| err(flag, format!("'{v}' is not a non-negative integer")))
}

fn set_once<T>(slot: &mut Option<T>, flag: &str, v: T) -> Result<(), UsageError> {
    if slot.is_some() {
        return Err(err(flag, "given more than once"));
    }
    *slot = Some(v);
    Ok(())
}

fn serial_target(v: &str) -> Result<SerialTarget, UsageError> {
    const F: &str = "--serial";
    if v == "stdout" {
        Ok(SerialTarget::Stdout)
    } else if let Some(p) = v.strip_prefix("file:") {
        Ok(SerialTarget::File(path(F, p)?))
    } else if let Some(p) = v.strip_prefix("socket:") {
        Ok(SerialTarget::Socket(path(F, p)?))
    } else {
        Err(err(
            F,
            format!("'{v}' is not stdout, file:PATH or socket:PATH"),
        ))
    }
}

fn vm_type_arg(v: &str) -> Result<VmType, UsageError> {
    const F: &str = "--vm-type";
    match v {
        "ordinary" => Ok(VmType::Ordinary),
        "protected" if cfg!(target_arch = "aarch64") => Ok(VmType::Protected),
        "protected" => Err(err(F, "protected VMs exist only on arm64 hosts (pKVM)")),
        _ => Err(err(F, format!("'{v}' is not ordinary or protected"))),
    }
}

fn disk(v: &str) -> Result<DiskConfig, UsageError> {
    const F: &str = "--disk";
    let (p, ro) = match v.rsplit_once(',') {
        Some((p, "ro")) => (p, true),
        Some((_, opt)) => return Err(err(F, format!("unknown option '{opt}' (only ,ro)"))),
        None => (v, false),
    };
    Ok(DiskConfig {
        path: path(F, p)?,
        read_only: ro,
    })
}

/// Parses the arguments after argv[0].
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let mut kernel = None;
    let mut initrd = None;
    let mut cmdline = None;
    let mut disks = Vec::new();
    let mut mem = None;
    let mut vcpus = None;
    let mut cid = None;
    let mut uds = None;
    let mut net_uds = None;
    let mut net_fd = None;
    let mut net_host_fd = None;
    let mut net_deny: Option<Vec<crate::devices::virtio::net::egress::Net4>> = None;
    let mut serial = None;
    let mut vm_type = None;
    let mut boot_timer = false;
    let mut exit_stats = false;
    let mut trigger = false;
    let mut unready = 0;
    let mut reads_exit = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let flag = a.as_str();
        if flag == "--help" || flag == "-h" {
            return Ok(Command::Help);
        }
        if flag == "--boot-timer" {
            boot_timer = true;
            continue;
        }
        if flag == "--exit-stats" {
            exit_stats = true;
            continue;
        }
        if cfg!(feature = "seccomp-test-trigger") && flag == "--seccomp-test-trigger" {
            trigger = true;
            continue;
        }
        if cfg!(feature = "seccomp-test-trigger") && flag == "--test-register-reads-exit" {
            reads_exit = true;
            continue;
        }
        if cfg!(feature = "seccomp-test-trigger") && flag == "--test-entropy-unready-ms" {
            let v = it.next().ok_or_else(|| err(flag, "missing value"))?;
            unready = number(flag, &v)?;
            continue;
        }
        let known = [
            "--kernel",
            "--initrd",
            "--cmdline",
            "--disk",
            "--mem-mib",
            "--vcpus",
            "--vsock-cid",
            "--vsock-uds",
            "--net-uds",
            "--net-fd",
            "--net-deny",
            "--net-host-fd",
            "--serial",
            "--vm-type",
        ];
        if !known.contains(&flag) {
            return Err(err(flag, "unknown argument (see --help)"));
        }
        // A value never starts with "--": `--kernel --initrd x` is a missing value.
        let v = it
            .next()
            .filter(|v| !v.starts_with("--"))
            .ok_or_else(|| err(flag, "missing value"))?;
        match flag {
            "--kernel" => set_once(&mut kernel, flag, path(flag, &v)?)?,
            "--initrd" => set_once(&mut initrd, flag, path(flag, &v)?)?,
            "--cmdline" => set_once(&mut cmdline, flag, v)?,
            "--disk" => disks.push(disk(&v)?),
            "--mem-mib" => set_once(&mut mem, flag, number(flag, &v)?)?,
            "--vcpus" => set_once(&mut vcpus, flag, number(flag, &v)?)?,
            "--vsock-cid" => set_once(&mut cid, flag, number(flag, &v)?)?,
            "--vsock-uds" => set_once(&mut uds, flag, path(flag, &v)?)?,
            "--net-uds" => set_once(&mut net_uds, flag, path(flag, &v)?)?,
            "--net-fd" => set_once(&mut net_fd, flag, number(flag, &v)?)?,
            "--net-host-fd" => set_once(&mut net_host_fd, flag, number(flag, &v)?)?,
            "--net-deny" => net_deny
                .get_or_insert_with(Vec::new)
                .push(v.parse().map_err(|_| {
                    err(
                        flag,
                        format!("{v:?} is not an IPv4 address or ADDRESS/PREFIX"),
                    )
                })?),
            "--vm-type" => set_once(&mut vm_type, flag, vm_type_arg(&v)?)?,
            _ => set_once(&mut serial, flag, serial_target(&v)?)?,
        }
    }
    let kernel = kernel.ok_or_else(|| err("--kernel", "is required"))?;
    let mem_mib = mem.unwrap_or(128);
    if !(layout::MIN_MEM_MIB..=layout::MAX_MEM_MIB).contains(&mem_mib) {
        return Err(err(
            "--mem-mib",
            format!(
                "{mem_mib} is outside {}..={}",
                layout::MIN_MEM_MIB,
                layout::MAX_MEM_MIB
            ),
        ));
    }
    let vcpus = vcpus.unwrap_or(1);
    let vcpus = u8::try_from(vcpus)
        .ok()
        .filter(|n| (1..=MAX_VCPUS).contains(n))
        .ok_or_else(|| err("--vcpus", format!("{vcpus} is outside 1..={MAX_VCPUS}")))?;
    let vsock = match (cid, uds) {
        (None, None) => None,
        (Some(_), None) => return Err(err("--vsock-cid", "needs --vsock-uds")),
        (None, Some(_)) => return Err(err("--vsock-uds", "needs --vsock-cid")),
        (Some(cid), Some(uds)) => {
            if !(3..u64::from(u32::MAX)).contains(&cid) {
                return Err(err(
                    "--vsock-cid",
                    format!("{cid} is outside 3..4294967295"),
                ));
            }
            Some(VsockConfig { cid, uds })
        }
    };
    let net = match (net_uds, net_fd) {
        (None, None) => None,
        (Some(p), None) => Some(NetConfig::Uds(p)),
        (None, Some(fd)) => {
            let fd = i32::try_from(fd)
                .ok()
                .filter(|fd| *fd >= 3)
                .ok_or_else(|| err("--net-fd", format!("{fd} is not a descriptor >= 3")))?;
            Some(NetConfig::Fd(fd))
        }
        (Some(_), Some(_)) => return Err(err("--net-fd", "not together with --net-uds")),
    };
    if net.is_none() && net_deny.is_some() {
        return Err(err("--net-deny", "needs --net-uds or --net-fd"));
    }
    let net_host_fd = net_host_fd
        .map(|fd: u64| {
            i32::try_from(fd)
                .ok()
                .filter(|h| *h >= 3 && Some(NetConfig::Fd(*h)) != net)
                .ok_or_else(|| {
                    err(
                        "--net-host-fd",
                        format!("{fd} is not a descriptor >= 3 of its own"),
                    )
                })
        })
        .transpose()?;
    if net.is_none() && net_host_fd.is_some() {
        return Err(err("--net-host-fd", "needs --net-uds or --net-fd"));
    }
    if net_deny.as_ref().is_some_and(|d| d.len() > MAX_NET_DENY) {
        return Err(err(
            "--net-deny",
            format!("more than {MAX_NET_DENY} addresses"),
        ));
    }
    let devices = virtio_devices(disks.len(), vsock.is_some(), net.is_some());
    if devices > layout::MAX_VIRTIO_DEVICES {
        return Err(err(
            "--disk",
            format!(
                "too many devices (max {} virtio devices)",
                layout::MAX_VIRTIO_DEVICES
            ),
        ));
    }
    let cmdline = cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.to_owned());
    // Leave room for the appended virtio_mmio.device= entries (~40 bytes each).
    let budget = layout::CMDLINE_MAX_SIZE.saturating_sub(1 + 40 * devices as usize);
    if cmdline.len() > budget {
        return Err(err("--cmdline", format!("longer than {budget} bytes")));
    }
    if cmdline.bytes().any(|b| b == 0 || b == b'\n') {
        return Err(err("--cmdline", "contains a NUL or newline"));
    }
    Ok(Command::Run(Box::new(VmConfig {
        kernel,
        initrd,
        cmdline,
        disks,
        mem_mib,
        vcpus,
        vsock,
        net,
        net_deny,
        net_host_fd,
        serial: serial.unwrap_or(SerialTarget::Stdout),
        boot_timer,
        exit_stats,
        vm_type: vm_type.unwrap_or_default(),
        seccomp_test_trigger: trigger,
        test_entropy_unready_ms: unready,
        test_register_reads_exit: reads_exit,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Command, UsageError> {
        parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn full_command_line() {
        let c = p(&[
            "--kernel",
            "/k",
            "--disk",
            "/a,ro",
            "--disk",
            "/b",
            "--mem-mib",
            "64",
            "--vcpus",
            "2",
            "--vsock-cid",
            "3",
            "--vsock-uds",
            "/v",
            "--net-uds",
            "/n",
            "--serial",
            "file:/s",
            "--boot-timer",
            "--exit-stats",
        ])
        .unwrap();
        let Command::Run(c) = c else { panic!() };
        assert_eq!(
            c.disks[0],
            DiskConfig {
                path: "/a".into(),
                read_only: true
            }
        );
        assert!(!c.disks[1].read_only);
        assert_eq!((c.mem_mib, c.vcpus, c.boot_timer), (64, 2, true));
        assert!(c.exit_stats);
        assert_eq!(
            c.vsock,
            Some(VsockConfig {
                cid: 3,
                uds: "/v".into()
            })
        );
        assert_eq!(c.net, Some(NetConfig::Uds("/n".into())));
        assert_eq!(c.serial, SerialTarget::File("/s".into()));
        assert_eq!(c.cmdline, DEFAULT_CMDLINE);
        assert_eq!(c.vm_type, VmType::Ordinary);
    }

    #[test]
    fn net_fd_is_an_alternative_to_net_uds() {
        let Command::Run(c) = p(&["--kernel", "/k", "--net-fd", "7"]).unwrap() else {
            panic!()
        };
        assert_eq!(c.net, Some(NetConfig::Fd(7)));
        let Command::Run(c) = p(&["--kernel", "/k"]).unwrap() else {
            panic!()
        };
        assert_eq!(c.net, None);
    }

    #[test]
    fn net_host_fd_is_a_descriptor_of_its_own_and_needs_a_network() {
        let Command::Run(c) =
            p(&["--kernel", "/k", "--net-fd", "7", "--net-host-fd", "8"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.net_host_fd, Some(8));
        for (bad, why) in [
            (&["--net-host-fd", "8"][..], "needs --net-uds or --net-fd"),
            (&["--net-fd", "7", "--net-host-fd", "7"], "of its own"),
            (&["--net-fd", "7", "--net-host-fd", "2"], "of its own"),
        ] {
            let mut a = vec!["--kernel", "/k"];
            a.extend_from_slice(bad);
            let e = p(&a).unwrap_err();
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn net_deny_lists_addresses_and_needs_a_network() {
        let Command::Run(c) = p(&[
            "--kernel",
            "/k",
            "--net-fd",
            "7",
            "--net-deny",
            "10.77.0.1",
            "--net-deny",
            "127.0.0.1",
        ])
        .unwrap() else {
            panic!()
        };
        let want = vec![
            std::net::Ipv4Addr::new(10, 77, 0, 1).into(),
            std::net::Ipv4Addr::LOCALHOST.into(),
        ];
        assert_eq!(c.net_deny, Some(want));
        // Regression (review): a local network of the anchor host (an address with a
        // prefix on its loopback device, a local route) is refused whole.
        let Command::Run(c) = p(&[
            "--kernel",
            "/k",
            "--net-fd",
            "7",
            "--net-deny",
            "10.99.0.0/24",
        ])
        .unwrap() else {
            panic!()
        };
        let net = crate::devices::virtio::net::egress::Net4::new(
            std::net::Ipv4Addr::new(10, 99, 0, 0),
            24,
        );
        assert_eq!(c.net_deny, net.map(|n| vec![n]));
        let e = p(&["--kernel", "/k", "--net-deny", "10.0.0.1"]).unwrap_err();
        assert!(e.msg.contains("needs --net-uds or --net-fd"), "{e}");
        let e = p(&["--kernel", "/k", "--net-fd", "7", "--net-deny", "::1"]).unwrap_err();
        assert!(
            e.msg.contains("is not an IPv4 address or ADDRESS/PREFIX"),
            "{e}"
        );
        let Command::Run(c) = p(&["--kernel", "/k", "--net-fd", "7"]).unwrap() else {
            panic!()
        };
        assert_eq!(c.net_deny, None);
    }

    #[test]
    fn protected_vms_are_an_arm64_request() {
        let r = p(&["--kernel", "/k", "--vm-type", "protected"]);
        if cfg!(target_arch = "aarch64") {
            let Ok(Command::Run(c)) = r else {
                panic!("{r:?}")
            };
            assert_eq!(c.vm_type, VmType::Protected);
        } else {
            let e = r.unwrap_err();
            assert_eq!(e.flag, "--vm-type");
            assert!(e.msg.contains("arm64"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--kernel"),
            (&["--kernel"], "--kernel"),
            (&["--kernel", "--initrd", "/i"], "--kernel"),
            (&["--kernel", "/k", "--mem-mib", "99999999"], "--mem-mib"),
            (&["--kernel", "/k", "--mem-mib", "-1"], "--mem-mib"),
            (&["--kernel", "/k", "--vcpus", "0"], "--vcpus"),
            (&["--kernel", "/k", "--vcpus", "300"], "--vcpus"),
            (&["--kernel", "/k", "--vsock-cid", "3"], "--vsock-cid"),
            (&["--kernel", "/k", "--vsock-uds", "/x"], "--vsock-uds"),
            (
                &["--kernel", "/k", "--vsock-cid", "2", "--vsock-uds", "/x"],
                "--vsock-cid",
            ),
            (&["--kernel", "/k", "--serial", "tcp:1"], "--serial"),
            (&["--kernel", "/k", "--net-uds"], "--net-uds"),
            (&["--kernel", "/k", "--net-uds", ""], "--net-uds"),
            (
                &["--kernel", "/k", "--net-uds", "/a", "--net-uds", "/b"],
                "--net-uds",
            ),
            (&["--kernel", "/k", "--net-fd", "2"], "--net-fd"),
            (&["--kernel", "/k", "--net-fd", "x"], "--net-fd"),
            (&["--kernel", "/k", "--net-fd", "4294967299"], "--net-fd"),
            (
                &["--kernel", "/k", "--net-fd", "5", "--net-uds", "/n"],
                "--net-fd",
            ),
            (&["--kernel", "/k", "--disk", "/a,rw"], "--disk"),
            (&["--kernel", "/k", "--kernel", "/k"], "--kernel"),
            (&["--kernel", "/k", "--bogus"], "--bogus"),
            (&["--kernel", "/k", "--vm-type", "secret"], "--vm-type"),
            (
                &[
                    "--kernel",
                    "/k",
                    "--vm-type",
                    "ordinary",
                    "--vm-type",
                    "ordinary",
                ],
                "--vm-type",
            ),
            (
                &["--kernel", "/k", "--seccomp-test-trigger-x"],
                "--seccomp-test-trigger-x",
            ),
        ];
        for (args, flag) in cases {
            let e = p(args).unwrap_err();
            assert_eq!(&e.flag, flag, "{args:?}: {e}");
            assert!(!e.to_string().contains('\n'));
        }
        let long = "x".repeat(5000);
        assert_eq!(
            p(&["--kernel", "/k", "--cmdline", &long]).unwrap_err().flag,
            "--cmdline"
        );
        assert_eq!(p(&["--help"]).unwrap(), Command::Help);
    }
}
