// SPDX-License-Identifier: GPL-3.0-or-later
//! Rooms: turn a validated policy into one `anchor-vmm` process (a KVM microVM with the
//! room kernel and the room's read-only image) and start it under bay0's supervision.
//!
//! The policy is parsed once (crate::policy) and the typed value is handed here; this
//! module never re-reads the file. Capabilities this release cannot grant yet (vault
//! volumes, network) are left out, which only ever gives the room less than it asked for.
//! The namespace fallback backend is not built yet: a room that would need it is refused
//! with a clear reason instead of being started weaker than its policy says.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::policy::{Backend, Network, Resolved};
use crate::sys;

/// Where the base keeps what rooms are made of (all read-only, inside the signed image).
#[derive(Debug, Clone)]
pub struct Layout {
    /// The VMM binary.
    pub vmm: PathBuf,
    /// The room kernel (x86_64: ELF vmlinux with a PVH entry; aarch64: Linux arm64 Image).
    pub kernel: PathBuf,
    /// Directory of `<image>.squashfs` room images.
    pub images: PathBuf,
    /// Directory of `<room>.toml` policies.
    pub policies: PathBuf,
    /// Directory for per-room runtime sockets (on tmpfs).
    pub run: PathBuf,
}

impl Layout {
    /// The paths inside the anchor host's initramfs / UKI.
    pub fn system() -> Layout {
        Layout {
            vmm: PathBuf::from("/usr/bin/anchor-vmm"),
            kernel: PathBuf::from(ROOM_KERNEL),
            images: PathBuf::from("/usr/lib/anchor/images"),
            policies: PathBuf::from("/etc/anchor/policies"),
            run: PathBuf::from("/run/anchor/rooms"),
        }
    }
}

/// Where the base keeps the room kernel, in the format anchor-vmm boots on this architecture.
#[cfg(not(target_arch = "aarch64"))]
const ROOM_KERNEL: &str = "/usr/lib/anchor/kernel/vmlinux";
#[cfg(target_arch = "aarch64")]
const ROOM_KERNEL: &str = "/usr/lib/anchor/kernel/Image";

/// The guest context id every room gets on its own (private) vsock device.
pub const ROOM_CID: u32 = 3;

/// Kernel command line of every room. `reboot=k` makes the guest reset through the i8042,
/// which anchor-vmm turns into a clean exit; `panic=-1` makes a guest panic end the room.
const ROOM_CMDLINE: &str =
    "console=ttyS0 quiet reboot=k panic=-1 root=/dev/vda ro rootfstype=squashfs init=/sbin/init";

/// Decide how the room runs, or why it cannot. `kvm` says whether /dev/kvm exists.
pub fn check_backend(backend: Backend, kvm: bool) -> Result<()> {
    match (backend, kvm) {
        (Backend::Microvm | Backend::Auto, true) => Ok(()),
        (Backend::Microvm, false) => Err(Error::Room(
            "policy demands backend microvm and this machine has no /dev/kvm",
        )),
        (Backend::Auto | Backend::Namespaces, _) => Err(Error::Room(
            "the namespaces backend is not available in this release",
        )),
    }
}

/// The `anchor-vmm` argument vector for the room `resolved` describes.
pub fn vmm_argv(layout: &Layout, resolved: &Resolved, kvm: bool) -> Result<Vec<OsString>> {
    let policy = resolved.policy();
    check_backend(policy.backend(), kvm)?;
    let name = policy.name().as_str();
    let image = layout
        .images
        .join(format!("{}.squashfs", policy.image().as_str()));
    let mut disk = image.into_os_string();
    disk.push(",ro");
    let uds = layout.run.join(format!("{name}.vsock"));
    let res = policy.resources();
    let mut argv: Vec<OsString> = vec![layout.vmm.clone().into_os_string()];
    let mut arg = |a: &str, b: OsString| {
        argv.push(a.into());
        argv.push(b);
    };
    arg("--kernel", layout.kernel.clone().into_os_string());
    arg("--disk", disk);
    arg("--mem-mib", res.memory().mib().to_string().into());
    arg("--vcpus", res.vcpus().to_string().into());
    arg(
        "--cmdline",
        format!("{ROOM_CMDLINE} anchor.room={name}").into(),
    );
    arg("--vsock-cid", ROOM_CID.to_string().into());
    arg("--vsock-uds", uds.into_os_string());
    arg("--serial", "stdout".into());
    Ok(argv)
}

/// What of the policy this release does not grant (logged, never silently widened).
pub fn not_granted(resolved: &Resolved) -> impl Iterator<Item = &'static str> {
    let policy = resolved.policy();
    let network = policy.network() != Network::None;
    let persist = policy.persist().is_some();
    let devices = !policy.devices().is_empty();
    [
        (network, "network (rooms have none in this release)"),
        (
            persist,
            "vault volume (the vault is not available in this release)",
        ),
        (devices, "devices (none are passed through in this release)"),
    ]
    .into_iter()
    .filter_map(|(wanted, what)| wanted.then_some(what))
}

/// Load room `name`'s policy and start its VMM with the console as its terminal.
/// Returns the VMM's pid for supervision.
pub fn open(layout: &Layout, name: &str, kvm: bool) -> Result<i32> {
    let resolved = crate::policy::load_room(&layout.policies, name)?;
    let argv = vmm_argv(layout, &resolved, kvm)?;
    for what in not_granted(&resolved) {
        crate::log_warn!("room {name}: not granted: {what}");
    }
    ensure_dir(&layout.run)?;
    // The room's console is bay0's: keys go to the room's own tty untouched.
    match sys::console_passthrough(libc::STDIN_FILENO) {
        Ok(true) => crate::log_info!("room {name}: console passed through to the room"),
        Ok(false) => {}
        Err(e) => crate::log_warn!("room {name}: console stays in line mode: {e}"),
    }
    spawn(&argv)
}

fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Sys {
        op: "create the room runtime directory",
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })
}

fn spawn(argv: &[OsString]) -> Result<i32> {
    let (prog, args) = argv.split_first().ok_or(Error::Room("empty VMM command"))?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    // Children must not inherit PID 1's blocked signals (they could not be stopped).
    sys::clean_signals_on_exec(&mut cmd);
    let child = cmd.spawn().map_err(|e| Error::Sys {
        op: "start anchor-vmm",
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    i32::try_from(child.id()).map_err(|_| Error::Fatal("child pid out of range"))
}

/// What an `anchor-vmm` exit status means (its documented exit codes).
pub fn describe_exit(code: i32) -> &'static str {
    match code {
        0 => "the room powered off",
        2 => "anchor-vmm refused its command line",
        3 => "anchor-vmm failed (VMM error)",
        4 => "the room's guest faulted",
        _ => "anchor-vmm ended unexpectedly",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(root: &Path) -> Layout {
        Layout {
            vmm: root.join("bin/anchor-vmm"),
            kernel: root.join("vmlinux"),
            images: root.join("images"),
            policies: Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
            run: root.join("run"),
        }
    }

    fn argv_of(room: &str, kvm: bool) -> Result<Vec<String>> {
        let l = layout(Path::new("/x"));
        let resolved = crate::policy::load_room(&l.policies, room)?;
        vmm_argv(&l, &resolved, kvm).map(|v| {
            v.into_iter()
                .map(|s| s.into_string().unwrap())
                .collect::<Vec<_>>()
        })
    }

    fn value_of<'a>(argv: &'a [String], flag: &str) -> &'a str {
        let i = argv.iter().position(|a| a == flag).unwrap();
        &argv[i + 1]
    }

    #[test]
    fn work_room_becomes_a_vmm_command_line_from_its_policy() {
        let argv = argv_of("work", true).unwrap();
        assert_eq!(argv[0], "/x/bin/anchor-vmm");
        assert_eq!(value_of(&argv, "--kernel"), "/x/vmlinux");
        assert_eq!(value_of(&argv, "--disk"), "/x/images/work.squashfs,ro");
        assert_eq!(value_of(&argv, "--mem-mib"), "2048");
        assert_eq!(value_of(&argv, "--vcpus"), "2");
        assert_eq!(value_of(&argv, "--vsock-uds"), "/x/run/work.vsock");
        let cmdline = value_of(&argv, "--cmdline");
        assert!(cmdline.ends_with(" anchor.room=work"), "{cmdline}");
        assert!(cmdline.contains("reboot=k") && cmdline.contains(" ro "));
    }

    #[test]
    fn every_shipped_room_maps_its_own_image_and_size() {
        for (room, mib) in [("web", "2048"), ("dev", "4096")] {
            let argv = argv_of(room, true).unwrap();
            assert_eq!(
                value_of(&argv, "--disk"),
                format!("/x/images/{room}.squashfs,ro")
            );
            assert_eq!(value_of(&argv, "--mem-mib"), mib);
        }
    }

    #[test]
    fn a_microvm_room_is_refused_without_kvm() {
        assert_eq!(
            argv_of("work", false).unwrap_err(),
            Error::Room("policy demands backend microvm and this machine has no /dev/kvm")
        );
    }

    #[test]
    fn backends_map_to_what_exists() {
        assert!(check_backend(Backend::Microvm, true).is_ok());
        assert!(check_backend(Backend::Auto, true).is_ok());
        for (b, kvm) in [
            (Backend::Auto, false),
            (Backend::Namespaces, true),
            (Backend::Namespaces, false),
        ] {
            assert!(
                matches!(check_backend(b, kvm), Err(Error::Room(_))),
                "{b:?}"
            );
        }
    }

    #[test]
    fn capabilities_not_yet_built_are_reported_not_granted() {
        let l = layout(Path::new("/x"));
        let web = crate::policy::load_room(&l.policies, "web").unwrap();
        let missing: Vec<_> = not_granted(&web).collect();
        assert!(
            missing.iter().any(|m| m.starts_with("network")),
            "{missing:?}"
        );
        let work = crate::policy::load_room(&l.policies, "work").unwrap();
        assert!(!not_granted(&work).any(|m| m.starts_with("network")));
    }

    #[test]
    fn unknown_or_hostile_room_names_fail_before_spawning() {
        let l = layout(Path::new("/nonexistent"));
        assert!(matches!(
            open(&l, "nosuchroom", true),
            Err(Error::Policy(_))
        ));
        assert!(matches!(open(&l, "../etc/x", true), Err(Error::Policy(_))));
    }

    #[test]
    fn a_missing_vmm_binary_is_a_clear_error() {
        let root = std::env::temp_dir().join(format!("bay0-room-{}", std::process::id()));
        let l = layout(&root);
        assert_eq!(
            open(&l, "work", true).unwrap_err(),
            Error::Sys {
                op: "start anchor-vmm",
                errno: libc::ENOENT
            }
        );
        assert!(root.join("run").is_dir());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn exit_codes_are_described() {
        assert_eq!(describe_exit(0), "the room powered off");
        assert_eq!(describe_exit(4), "the room's guest faulted");
        assert_eq!(describe_exit(99), "anchor-vmm ended unexpectedly");
    }
}
