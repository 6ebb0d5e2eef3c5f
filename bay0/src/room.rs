// SPDX-License-Identifier: GPL-3.0-or-later
//! From a validated policy to a launch plan: the `anchor-jail` command line that runs the
//! room under its own uid, cgroup and namespaces -- a microVM room's `anchor-vmm` with
//! the room kernel and image, or a namespace room's agent on the image itself -- and the
//! limits bay0 keeps for the room (docs/POLICY.md has the field -> enforcement table).
//!
//! The policy is parsed once (crate::policy) and the typed value is handed here; this
//! module never re-reads the file. What this release cannot grant (network, devices,
//! a vault volume the vault cannot give now) is left out and reported: the room gets
//! less, never more.

use std::ffi::CString;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::policy::{Network, Resolved};

/// Where the base keeps what rooms are made of (all read-only, inside the signed image).
#[derive(Debug, Clone)]
pub struct Layout {
    /// The jail binary.
    pub jail: PathBuf,
    /// The VMM binary.
    pub vmm: PathBuf,
    /// The room kernel (x86_64: ELF vmlinux with a PVH entry; aarch64: Linux arm64 Image).
    pub kernel: PathBuf,
    /// Directory of `<image>.squashfs` room images.
    pub images: PathBuf,
    /// Directory of `<room>.toml` policies.
    pub policies: PathBuf,
    /// Directory of per-room runtime directories (on tmpfs).
    pub run: PathBuf,
    /// Directory of the vault's room volumes (`<volume>.img`, made by anchor-vault).
    pub volumes: PathBuf,
    /// Show the host's libraries read-only inside the jail (hosted-mode tests run
    /// dynamically linked stand-ins for the VMM).
    pub host_libs: bool,
}

impl Layout {
    /// The paths inside the anchor host's initramfs / UKI.
    pub fn system() -> Layout {
        Layout {
            jail: PathBuf::from("/usr/lib/anchor/anchor-jail"),
            vmm: PathBuf::from("/usr/bin/anchor-vmm"),
            kernel: PathBuf::from(ROOM_KERNEL),
            images: PathBuf::from("/usr/lib/anchor/images"),
            policies: PathBuf::from(anchor_policy::POLICY_DIR),
            run: PathBuf::from("/run/anchor/rooms"),
            volumes: PathBuf::from("/persist/volumes"),
            host_libs: false,
        }
    }

    /// Everything under `root` (hosted-mode tests): `anchor-jail`, `anchor-vmm`,
    /// `vmlinux`, `images/`, `policies/`.
    pub fn under(root: &std::path::Path) -> Layout {
        Layout {
            jail: root.join("anchor-jail"),
            vmm: root.join("anchor-vmm"),
            kernel: root.join("vmlinux"),
            images: root.join("images"),
            policies: root.join("policies"),
            run: PathBuf::from("/run/anchor/rooms"),
            volumes: root.join("volumes"),
            host_libs: true,
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
/// Room slot N runs as uid and gid `ROOM_UID_BASE + N` (never root, never shared by two
/// rooms running at the same time).
pub const ROOM_UID_BASE: u32 = 64_000;
/// A namespace room's passt and network relay run as `NET_UID_BASE + N`: not the room's
/// uid, so the room's processes can neither signal nor trace them.
pub const NET_UID_BASE: u32 = 64_100;
/// Memory charged for a room on top of its policy memory: the VMM process (~1.3 MiB), its
/// vsock buffers (up to 2 MiB), and the kernel memory charged to the room's cgroup for
/// KVM's page tables and per-VM structures, with headroom. Part of the room's cgroup
/// limit and of admission; `make bench` prints what a room's cgroup really uses.
pub const VMM_OVERHEAD_MIB: u64 = 64;
/// Processes and threads the VMM may have beyond one per vCPU (cgroup pids.max and
/// RLIMIT_NPROC of the room's uid).
pub const VMM_TASKS: u32 = 16;

/// Kernel command line of every room. `reboot=k` makes the guest reset through the i8042,
/// which anchor-vmm turns into a clean exit; `panic=-1` makes a guest panic end the room.
const ROOM_CMDLINE: &str =
    "console=ttyS0 quiet reboot=k panic=-1 root=/dev/vda ro rootfstype=squashfs init=/sbin/init";

/// Paths inside the jail.
const JAIL_VMM: &str = "/bin/anchor-vmm";
const JAIL_KERNEL: &str = "/boot/vmlinux";
const JAIL_IMAGE: &str = "/images/room.squashfs";
const JAIL_VOLUME: &str = "/volume.img";

/// Everything bay0 needs to launch and keep a room.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `anchor-jail ... -- anchor-vmm ...`.
    pub argv: Vec<CString>,
    /// The room's runtime directory (its uid's, mode 0700).
    pub run_dir: PathBuf,
    pub uid: u32,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// Policy memory plus [`VMM_OVERHEAD_MIB`].
    pub charged_mib: u64,
    pub max_s: Option<u64>,
    pub idle_s: Option<u64>,
    /// The vault volume file, granted: bound read-write into the jail as the VMM's second
    /// disk; bay0 gives it to the room's uid at every start.
    pub volume: Option<PathBuf>,
    /// Why the vault volume the policy asks for is not granted.
    pub no_volume: Option<anchor_policy::vault::NotGranted>,
    pub courier: anchor_policy::Courier,
    /// "microvm" or "namespaces".
    pub backend: &'static str,
}

fn cstr(s: impl Into<Vec<u8>>) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Room("a path contains a NUL byte"))
}

/// The launch plan for `room` in slot `slot`; `vault`: is /persist open (room volumes
/// are granted only then).
pub fn plan(layout: &Layout, room: &Resolved, kvm: bool, vault: bool, slot: usize) -> Result<Plan> {
    use std::os::unix::ffi::OsStrExt;
    let policy = room.policy();
    let ns = policy
        .backend()
        .runs_in_namespaces(kvm)
        .map_err(Error::Room)?;
    let name = policy.name().as_str();
    let res = policy.resources();
    let slot = u32::try_from(slot).map_err(|_| Error::Room("slot"))?;
    let uid = ROOM_UID_BASE + slot;
    let run_dir = layout.run.join(name);
    let memory_mib = res.memory().mib();
    // A namespace room has no VMM: its cgroup caps the room itself, at its memory and
    // its pids_max.
    let charged_mib = memory_mib.saturating_add(if ns { 0 } else { VMM_OVERHEAD_MIB });
    let tasks = if ns {
        res.pids_max()
    } else {
        res.vcpus().saturating_add(VMM_TASKS)
    };
    let tasks = tasks.to_string();
    let image = layout
        .images
        .join(format!("{}.squashfs", policy.image().as_str()));
    let (granted, no_volume) = match anchor_policy::vault::grant(&layout.volumes, room, vault) {
        Some(Ok(v)) => (Some(v), None),
        Some(Err(why)) => (None, Some(why)),
        None => (None, None),
    };
    let cmdline = format!(
        "{ROOM_CMDLINE} anchor.room={name} anchor.privileged={} anchor.pids_max={}{}",
        u8::from(policy.privileged()),
        res.pids_max(),
        granted.as_ref().map_or("", |_| " anchor.persist=/dev/vdb")
    );
    let (uid_s, mem_s) = (
        uid.to_string(),
        charged_mib.saturating_mul(1 << 20).to_string(),
    );
    let run_s = run_dir.to_string_lossy();
    let mut words: Vec<Vec<u8>> = vec![layout.jail.as_os_str().as_bytes().to_vec()];
    let mut opts = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .for_each(|(k, v)| words.extend([k.as_bytes().to_vec(), v.as_bytes().to_vec()]))
    };
    let weight = res.cpu_weight().to_string();
    opts(&[
        ("--name", name),
        ("--uid", &uid_s),
        ("--gid", &uid_s),
        ("--run-dir", &run_s),
    ]);
    opts(&[
        ("--memory", &mem_s),
        ("--pids", &tasks),
        ("--cpu-weight", &weight),
        ("--nproc", &tasks),
    ]);
    let (vcpus, image_s) = (res.vcpus().to_string(), image.to_string_lossy());
    let net_uid = (NET_UID_BASE + slot).to_string();
    if policy.network() == Network::Outbound {
        opts(&[("--net", "outbound")]);
        if ns {
            opts(&[("--net-uid", &net_uid)]);
        }
    }
    if ns {
        let init = format!("anchor.room={name}");
        opts(&[
            ("--backend", "namespaces"),
            ("--cpus", &vcpus),
            ("--image", &image_s),
        ]);
        let vol = granted.as_ref().map(|(file, _)| file.to_string_lossy());
        vol.iter().for_each(|v| opts(&[("--volume", v)]));
        opts(&[("--", "/sbin/init"), ("anchor.backend=namespaces", &init)]);
    } else {
        let ro = |host: &PathBuf, jail: &str| format!("{}:{jail}", host.to_string_lossy());
        let (vmm, kernel, img) = (
            ro(&layout.vmm, JAIL_VMM),
            ro(&layout.kernel, JAIL_KERNEL),
            ro(&image, JAIL_IMAGE),
        );
        opts(&[
            ("--ro", &vmm),
            ("--ro", &kernel),
            ("--ro", &img),
            ("--dev", "kvm"),
        ]);
        for lib in ["/lib", "/lib64", "/usr/lib"] {
            if layout.host_libs && std::path::Path::new(lib).exists() {
                opts(&[("--ro", &format!("{lib}:{lib}"))]);
            }
        }
        if let Some((file, size)) = &granted {
            let rw = ro(file, JAIL_VOLUME);
            opts(&[("--rw", &rw), ("--fsize", &size.to_string())]);
        }
        let (disk, mem) = (format!("{JAIL_IMAGE},ro"), memory_mib.to_string());
        opts(&[
            ("--", JAIL_VMM),
            ("--kernel", JAIL_KERNEL),
            ("--disk", &disk),
            ("--mem-mib", &mem),
        ]);
        if granted.is_some() {
            opts(&[("--disk", JAIL_VOLUME)]);
        }
        opts(&[
            ("--vcpus", &vcpus),
            ("--cmdline", &cmdline),
            ("--vsock-cid", &ROOM_CID.to_string()),
        ]);
        opts(&[("--vsock-uds", "/run/vsock"), ("--serial", "stdout")]);
    }
    let argv = words.into_iter().map(cstr).collect::<Result<Vec<_>>>()?;
    let life = policy.lifetime();
    Ok(Plan {
        argv,
        run_dir,
        uid,
        memory_mib,
        vcpus: res.vcpus(),
        charged_mib,
        max_s: life.max().secs(),
        idle_s: life.idle().secs(),
        volume: granted.map(|(file, _)| file),
        no_volume,
        courier: policy.courier().clone(),
        backend: if ns { "namespaces" } else { "microvm" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn layout() -> Layout {
        let root = Path::new("/x");
        Layout {
            jail: root.join("jail"),
            vmm: root.join("bin/anchor-vmm"),
            kernel: root.join("vmlinux"),
            images: root.join("images"),
            policies: Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
            run: root.join("run"),
            volumes: root.join("volumes"),
            host_libs: false,
        }
    }

    fn plan_of(room: &str, kvm: bool) -> Result<(Plan, Vec<String>)> {
        let l = layout();
        let resolved =
            crate::policy::load_room(&l.policies, room, &mut crate::logger::Line::default())?;
        let p = plan(&l, &resolved, kvm, false, 2)?;
        let argv = p
            .argv
            .iter()
            .map(|a| a.to_str().unwrap().to_string())
            .collect();
        Ok((p, argv))
    }

    fn value_of<'a>(argv: &'a [String], flag: &str) -> &'a str {
        let i = argv.iter().position(|a| a == flag).unwrap();
        &argv[i + 1]
    }

    #[test]
    fn work_room_becomes_a_jailed_vmm_from_its_policy() {
        let (p, argv) = plan_of("work", true).unwrap();
        assert_eq!(argv[0], "/x/jail");
        assert_eq!(value_of(&argv, "--uid"), "64002");
        assert_eq!(value_of(&argv, "--run-dir"), "/x/run/work");
        assert_eq!(
            value_of(&argv, "--memory"),
            ((2048u64 + 64) << 20).to_string()
        );
        assert_eq!(value_of(&argv, "--cpu-weight"), "200");
        assert_eq!(value_of(&argv, "--pids"), "18");
        assert!(argv.contains(&"/x/images/work.squashfs:/images/room.squashfs".to_string()));
        let sep = argv.iter().position(|a| a == "--").unwrap();
        let vmm = &argv[sep + 1..];
        assert_eq!(vmm[0], "/bin/anchor-vmm");
        assert_eq!(value_of(vmm, "--disk"), "/images/room.squashfs,ro");
        assert_eq!(value_of(vmm, "--mem-mib"), "2048");
        assert_eq!(value_of(vmm, "--vcpus"), "2");
        assert_eq!(value_of(vmm, "--vsock-uds"), "/run/vsock");
        let cmdline = value_of(vmm, "--cmdline");
        assert!(cmdline.contains(" anchor.room=work anchor.privileged=0 anchor.pids_max=1024"));
        assert_eq!((p.charged_mib, p.max_s, p.idle_s), (2112, None, None));
        assert_eq!(p.backend, "microvm");
    }

    #[test]
    fn lifetimes_and_privilege_come_from_the_policy() {
        let (web, web_argv) = plan_of("web", true).unwrap();
        assert_eq!((web.max_s, web.idle_s), (Some(12 * 3600), Some(2 * 3600)));
        // An outbound room's jail starts its network before the VMM (`--net` is the
        // jail's, so it comes before `--`); a network-none room has no `--net`.
        let dashes = web_argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(value_of(&web_argv[..dashes], "--net"), "outbound");
        let (_, work_argv) = plan_of("work", true).unwrap();
        assert!(!work_argv.iter().any(|a| a == "--net"));
        let (_, dev) = plan_of("dev", true).unwrap();
        assert!(value_of(&dev, "--cmdline").contains("anchor.privileged=1"));
    }

    #[test]
    fn a_microvm_room_is_refused_without_kvm() {
        assert_eq!(
            plan_of("work", false).unwrap_err(),
            Error::Room("no usable KVM on this machine and the policy demands backend microvm")
        );
    }

    /// A policy in a scratch directory (the shipped ones are all microvm).
    fn plan_text(text: &str, kvm: bool) -> (Plan, Vec<String>) {
        plan_in(text, kvm, false, "plan", |_| ())
    }

    /// [`plan_text`] with the vault open or not, and `volumes` (the vault's volume
    /// directory, empty at first) prepared by the caller.
    fn plan_in(
        text: &str,
        kvm: bool,
        vault_open: bool,
        tag: &str,
        volumes: impl FnOnce(&Path),
    ) -> (Plan, Vec<String>) {
        let dir = std::env::temp_dir().join(format!("bay0-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("volumes")).unwrap();
        std::fs::write(dir.join("lab.toml"), text).unwrap();
        volumes(&dir.join("volumes"));
        let l = Layout {
            policies: dir.clone(),
            volumes: dir.join("volumes"),
            ..layout()
        };
        let mut d = crate::logger::Line::default();
        let resolved = crate::policy::load_room(&dir, "lab", &mut d).unwrap();
        let p = plan(&l, &resolved, kvm, vault_open, 1).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let argv = p.argv.iter().map(|a| a.to_str().unwrap().into()).collect();
        (p, argv)
    }

    #[test]
    fn a_namespace_room_is_the_image_run_by_the_jail_with_the_agent_as_pid_1() {
        let text = "name = \"lab\"\nimage = \"base\"\nbackend = \"namespaces\"\n\
                    [resources]\nmemory = \"256MiB\"\nvcpus = 2\npids_max = 100\n";
        let (p, argv) = plan_text(text, true);
        assert_eq!(
            (p.backend, p.charged_mib, p.uid),
            ("namespaces", 256, 64001)
        );
        assert_eq!(value_of(&argv, "--backend"), "namespaces");
        assert_eq!(value_of(&argv, "--memory"), (256u64 << 20).to_string());
        assert_eq!(value_of(&argv, "--pids"), "100");
        assert_eq!(value_of(&argv, "--nproc"), "100");
        assert_eq!(value_of(&argv, "--cpus"), "2");
        assert_eq!(value_of(&argv, "--image"), "/x/images/base.squashfs");
        let sep = argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(
            argv[sep + 1..],
            ["/sbin/init", "anchor.backend=namespaces", "anchor.room=lab"]
        );
        assert!(!argv
            .iter()
            .any(|a| a == "--ro" || a == "--dev" || a == "kvm"));
        // `auto` without a usable KVM is the same namespace room; with KVM, a microVM.
        let auto = text.replace("namespaces", "auto");
        let (p, argv) = plan_text(&auto, false);
        assert_eq!(p.backend, "namespaces");
        assert_eq!(value_of(&argv, "--backend"), "namespaces");
        let (p, argv) = plan_text(&auto, true);
        assert_eq!((p.backend, p.charged_mib), ("microvm", 256 + 64));
        assert!(argv.contains(&"/bin/anchor-vmm".to_string()));
    }

    /// A namespace room's network is granted as a microVM's is: its jail gets `--net
    /// outbound` and the uid its passt and relay run as (not the room's, which must not
    /// signal or trace them; one per slot, like the room's).
    #[test]
    fn an_outbound_namespace_room_gets_its_network_and_a_uid_for_it() {
        let l = layout();
        let mut d = crate::logger::Line::default();
        let web = crate::policy::load_room(&l.policies, "web", &mut d).unwrap();
        assert!(!web.policy().not_granted().any(|m| m.starts_with("network")));
        let text = "name = \"lab\"\nimage = \"base\"\nbackend = \"namespaces\"\n\
                    network = \"outbound\"\n[resources]\nmemory = \"256MiB\"\nvcpus = 1\n";
        let (p, argv) = plan_text(text, true);
        assert_eq!(p.backend, "namespaces");
        let dashes = argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(value_of(&argv[..dashes], "--net"), "outbound");
        // Slot 1 (the plan tests' slot): uid 64001, network uid 64101.
        assert_eq!(value_of(&argv[..dashes], "--uid"), "64001");
        assert_eq!(value_of(&argv[..dashes], "--net-uid"), "64101");
        let (_, work) = plan_text(&text.replace("outbound", "none"), false);
        assert!(!work.iter().any(|a| a == "--net" || a == "--net-uid"));
    }

    const KEEPER: &str = "name = \"lab\"\nimage = \"base\"\nbackend = \"microvm\"\n\
                          [resources]\nmemory = \"256MiB\"\nvcpus = 1\n\
                          [persist]\nvolume = \"notes\"\nsize = \"8MiB\"\n";

    /// The volume `notes` at `len` bytes, owned by room `lab` (anchor-vault's record).
    fn sized(len: u64) -> impl FnOnce(&Path) {
        owned(len, "lab")
    }

    fn owned(len: u64, owner: &'static str) -> impl FnOnce(&Path) {
        move |dir| {
            let f = std::fs::File::create(dir.join("notes.img")).unwrap();
            f.set_len(len).unwrap();
            std::fs::write(dir.join("notes.owner"), format!("{owner}\n")).unwrap();
        }
    }

    fn why(p: &Plan) -> Option<String> {
        p.no_volume.as_ref().map(ToString::to_string)
    }

    #[test]
    fn an_open_vault_volume_of_the_policys_size_is_the_rooms_second_disk() {
        let (p, argv) = plan_in(KEEPER, true, true, "vol-ok", sized(8 << 20));
        let file = std::env::temp_dir().join(format!(
            "bay0-vol-ok-{}/volumes/notes.img",
            std::process::id()
        ));
        assert_eq!(
            (p.volume.as_deref(), p.no_volume),
            (Some(file.as_path()), None)
        );
        let sep = argv.iter().position(|a| a == "--").unwrap();
        let (jail, vmm) = (&argv[..sep], &argv[sep + 1..]);
        assert_eq!(
            value_of(jail, "--rw"),
            format!("{}:/volume.img", file.display())
        );
        // The VMM may write the volume up to its quota and no further.
        assert_eq!(value_of(jail, "--fsize"), (8u64 << 20).to_string());
        let disks: Vec<_> = vmm
            .windows(2)
            .filter(|w| w[0] == "--disk")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(disks, ["/images/room.squashfs,ro", "/volume.img"]);
        assert!(value_of(vmm, "--cmdline").ends_with(" anchor.persist=/dev/vdb"));
    }

    #[test]
    fn a_namespace_room_gets_its_vault_volume_from_the_jail() {
        let ns = KEEPER.replace("microvm", "namespaces");
        let (p, argv) = plan_in(&ns, true, true, "vol-ns", sized(8 << 20));
        let file = std::env::temp_dir().join(format!(
            "bay0-vol-ns-{}/volumes/notes.img",
            std::process::id()
        ));
        assert_eq!(
            (p.volume.as_deref(), p.no_volume),
            (Some(file.as_path()), None)
        );
        let sep = argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(
            value_of(&argv[..sep], "--volume"),
            file.display().to_string()
        );
        assert!(!argv
            .iter()
            .any(|a| a == "--rw" || a.contains("anchor.persist")));
    }

    #[test]
    fn a_vault_volume_that_cannot_be_given_now_is_refused_with_the_reason() {
        let ns = KEEPER.replace("microvm", "namespaces");
        // (policy, vault open, volume file size if made, why it is refused)
        let cases = [
            (KEEPER, false, Some(8 << 20), "the vault is locked"),
            (KEEPER, true, None, "the volume was not made"),
            (
                KEEPER,
                true,
                Some(4 << 20),
                "its size differs from the policy",
            ),
            (ns.as_str(), false, Some(8 << 20), "the vault is locked"),
        ];
        for (i, (text, open, size, reason)) in cases.into_iter().enumerate() {
            let prepare = |d: &Path| size.map_or((), |len| sized(len)(d));
            let (p, argv) = plan_in(text, true, open, &format!("vol-no{i}"), prepare);
            assert_eq!(
                (p.volume.as_ref(), why(&p).as_deref()),
                (None, Some(reason))
            );
            assert!(!argv.iter().any(|a| a == "--rw"
                || a == "--fsize"
                || a.contains("volume.img")
                || a.contains("anchor.persist")));
        }
        // A directory where the volume should be is not the volume.
        let (p, _) = plan_in(KEEPER, true, true, "vol-dir", |d| {
            std::fs::create_dir(d.join("notes.img")).unwrap()
        });
        assert_eq!(why(&p).as_deref(), Some("the volume was not made"));
        // A symlink where the volume should be is not the volume.
        let (p, _) = plan_in(KEEPER, true, true, "vol-link", |d| {
            std::fs::File::create(d.join("real.img"))
                .unwrap()
                .set_len(8 << 20)
                .unwrap();
            std::os::unix::fs::symlink(d.join("real.img"), d.join("notes.img")).unwrap();
        });
        assert_eq!(why(&p).as_deref(), Some("the volume was not made"));
        // A volume an earlier room made (an update removed its policy) is not this room's:
        // one line names the volume, its owner and this room, and how to hand it over.
        let (p, argv) = plan_in(KEEPER, true, true, "vol-foreign", owned(8 << 20, "old"));
        let line = why(&p).unwrap();
        assert!(
            line.starts_with("volume \"notes\" belongs to room \"old\", not to \"lab\": ")
                && line.contains("anchor-vault volume give notes --to lab"),
            "{line}"
        );
        assert!(p.volume.is_none() && !argv.iter().any(|a| a.contains("volume.img")));
        // No [persist]: nothing asked, nothing refused, nothing given.
        let (p, argv) = plan_in(
            &KEEPER.replace("[persist]\nvolume = \"notes\"\nsize = \"8MiB\"\n", ""),
            true,
            true,
            "vol-none",
            |_| (),
        );
        assert_eq!((p.volume, p.no_volume), (None, None));
        assert!(!argv.iter().any(|a| a.contains("persist") || a == "--rw"));
    }
}
