// SPDX-License-Identifier: GPL-3.0-or-later
//! The arm64 anchor host (the Duet 5 path, emulated): our arm64 host kernel boots under
//! `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max,pauth-impdef=on
//! -accel tcg` at EL2, so KVM initialises (VHE; protected mode with
//! `kvm-arm.mode=protected`) and rooms run as nested arm64 microVMs.
//!
//! - the product path: bay0 (aarch64) is PID 1, reports ready, opens the work room from
//!   its policy; anchor-vmm boots the arm64 room kernel (Image + device tree) on the arm64
//!   work image; a command typed on the console runs in the room; the room ends, bay0
//!   stays up;
//! - the same with the host KVM in protected mode (pKVM): the room gets an ordinary VM,
//!   and anchor-vmm says so and that the host refuses protected VMs;
//! - anchor-vmm's aarch64 boot protocol, exit paths and firmware-call/MMIO edge cases
//!   against hand-made arm64 guests
//!   (tests/system/arm64/guest.S, run by a test-only busybox /init);
//! - a host whose GIC is a GICv2: the fallback GIC, its 8-vcpu limit, a room through it;
//! - without virtualization (`virtualization=off`: the host kernel starts at EL1, no
//!   /dev/kvm): a `backend = "auto"` room (tests/system/policies/nsauto.toml) opens in
//!   namespaces and its shell answers; a microvm room is refused plainly.
//!
//! Needs: qemu-system-aarch64, $ANCHOR_OUT/aarch64/{host-Image, initramfs.cpio.gz,
//! bin/anchor-vmm, guest-Image, images/base.squashfs} (make arm64), the arm64 busybox
//! (scripts/arm64-busybox.sh), binutils-aarch64-linux-gnu. The test initramfs archives are
//! built here with tests/system/mk-arm64-initramfs.sh. Prints figures; asserts
//! behaviour only (timeouts are hang detection).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{
    arm64_host_kernel, arm64_initramfs, cache_dir, find_line, out_dir, Machine, Options,
};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Hang detection only (TCG on a busy 2-core machine).
const BOOT: Duration = Duration::from_secs(180);
const ROOM: Duration = Duration::from_secs(240);
const SHELL: Duration = Duration::from_secs(60);

/// Types one shell command and waits for `expect` after it.
fn run(m: &mut Machine, cmd: &str, expect: &str) -> String {
    let from = m.serial().len();
    m.type_text(&format!("{cmd}\r")).unwrap();
    m.wait_for_from(from, expect, SHELL)
        .unwrap_or_else(|e| panic!("`{cmd}` did not print {expect:?}: {e}"))
        .line
}

/// Boots the product initramfs with `append`, opens the work room, types into it,
/// leaves it and powers the machine off. Returns the serial log.
fn product_room(name: &str, append: &str, kvm_mode: &str) -> String {
    let t0 = Instant::now();
    // The work policy asks for 2 GiB; bay0 admits a room only when the host has that plus
    // the VMM's overhead left (guest RAM is touched lazily: TCG's cost does not grow).
    let opts = Options::arm64(
        name,
        arm64_host_kernel().unwrap(),
        arm64_initramfs().unwrap(),
    )
    .memory_mib(3072)
    .append(append)
    .append("bay0.room=work");
    let mut m = Machine::start(opts).unwrap();
    let mode = m.wait_for("mode initialized successfully", BOOT).unwrap();
    assert!(
        mode.line.contains(kvm_mode),
        "the host's KVM is not in {kvm_mode:?} mode: {}",
        mode.line
    );
    let ready = m.wait_for("bay0: ready", BOOT).unwrap();
    let t_ready = t0.elapsed();
    let kvm = m.wait_for("bay0: /dev/kvm ", Duration::ZERO).unwrap();
    assert!(kvm.line.contains("bay0: /dev/kvm usable"), "{}", kvm.line);
    let opened = m
        .wait_for_from(ready.end, "bay0: room work opened", BOOT)
        .unwrap();
    let t_open = t0.elapsed();
    let vm = m
        .wait_for_from(opened.end, "anchor-vmm: aarch64 VM: ", ROOM)
        .unwrap();
    let agent = m
        .wait_for_from(opened.end, "anchor-agent: room work ready", ROOM)
        .unwrap();
    let t_agent = t0.elapsed();
    // The console shell runs unprivileged (the room's uid 1000).
    m.wait_for_from(agent.end, "work:~$ ", SHELL).unwrap();
    eprintln!("figure: {name}: host KVM: {}", mode.line);
    eprintln!("figure: {name}: room VM: {}", vm.line);
    eprintln!(
        "figure: {name}: boot -> bay0 ready {:.1} s, -> room opened {:.1} s, -> agent ready {:.1} s (TCG + nested KVM)",
        t_ready.as_secs_f64(),
        t_open.as_secs_f64(),
        t_agent.as_secs_f64()
    );

    // The console is the room's: what is typed runs in the arm64 room.
    run(&mut m, "echo hello-$((6*7))", "hello-42");
    run(&mut m, "uname -m", "aarch64");
    let cmdline = run(&mut m, "cat /proc/cmdline", "anchor.room=work");
    assert!(cmdline.contains("root=/dev/vda ro"), "{cmdline}");
    // The device tree's three virtio-mmio devices are found (blk, rng, vsock) and their
    // interrupts work: the root came from the disk, and virtio-rng is the hardware rng.
    run(
        &mut m,
        "echo virtio: $(cat /sys/bus/virtio/devices/*/device)",
        "virtio: 0x0002 0x0004 0x0013",
    );
    run(
        &mut m,
        "echo rng=$(cat /sys/class/misc/hw_random/rng_current)",
        "rng=virtio_rng.0",
    );
    // The policy's two vcpus came up (PSCI CPU_ON for the secondary) ...
    run(
        &mut m,
        "echo cpus=$(grep -c ^processor /proc/cpuinfo)",
        "cpus=2",
    );
    // ... and the image is read-only, the rest tmpfs.
    run(
        &mut m,
        "touch /etc/probe 2>&1; echo rc=$?",
        "Read-only file system",
    );

    let from = m.serial().len();
    m.type_text("exit\r").unwrap();
    let ended = m
        .wait_for_from(from, "bay0: room work (pid ", SHELL)
        .unwrap();
    assert!(
        ended
            .line
            .contains("exited with status 0: the room powered off"),
        "{}",
        ended.line
    );
    assert!(
        m.wait_exit(Duration::from_secs(2)).is_err(),
        "bay0 went down with the room"
    );
    // (No power-button press here: QEMU virt's button is a 100 ms GPIO pulse that
    // gpio-keys samples after its debounce delay, so a TCG guest on a loaded machine can
    // miss it; bay0's power-button path is covered by tests/boot.rs on x86_64.)
    eprintln!(
        "figure: {name}: whole run {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    m.serial()
}

#[test]
fn arm64_host_bay0_opens_a_room_and_a_person_types_into_it() {
    let log = product_room("arm64-room-vhe", "", "VHE mode");
    let vm = find_line(&log, 0, "anchor-vmm: aarch64 VM: ").unwrap();
    assert!(vm.line.contains("ordinary KVM VM, GICv3"), "{}", vm.line);
    assert!(!log.contains("Kernel panic"), "a kernel panicked");
}

#[test]
fn arm64_protected_mode_host_runs_the_room_in_an_ordinary_vm_and_says_so() {
    let log = product_room(
        "arm64-room-pkvm",
        "kvm-arm.mode=protected",
        "Protected nVHE mode",
    );
    // Debian-6.1-like kernels (ours included) have no protected-VM interface: the room
    // gets an ordinary VM under the protected-mode host, and anchor-vmm reports both.
    let vm = find_line(&log, 0, "anchor-vmm: aarch64 VM: ").unwrap();
    assert!(
        vm.line.contains("ordinary KVM VM")
            && vm.line.contains("protected VMs: refused by the host's KVM"),
        "{}",
        vm.line
    );
    assert!(!log.contains("Kernel panic"), "a kernel panicked");
}

/// Builds a test initramfs with mk-arm64-initramfs.sh `args` at `out`.
fn test_initramfs(args: &[&str], out: PathBuf) -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mk-arm64-initramfs.sh");
    let result = Command::new(&script)
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        result.status.success(),
        "cannot build the arm64 test initramfs:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

#[test]
fn arm64_host_without_virtualization_opens_auto_rooms_in_namespaces() {
    let initramfs = rooms_initramfs();
    let t0 = Instant::now();
    // virtualization=off: no EL2 for the host kernel, so KVM cannot start and there is no
    // /dev/kvm (a Duet 5 booted without pKVM). QEMU merges -M options; the last one wins.
    let opts = Options::arm64("arm64-room-ns", arm64_host_kernel().unwrap(), initramfs)
        .arg("-M")
        .arg("virtualization=off")
        .append("bay0.shell=1 bay0.room=nsauto");
    let mut m = Machine::start(opts).unwrap();
    let ready = m.wait_for("bay0: ready", BOOT).unwrap();
    let t_ready = t0.elapsed();
    let kvm = m.wait_for("bay0: /dev/kvm ", Duration::ZERO).unwrap();
    assert!(
        kvm.line
            .contains("/dev/kvm not usable (open /dev/kvm: ENOENT")
            && kvm.line.ends_with("auto rooms run in namespaces"),
        "{}",
        kvm.line
    );
    assert!(
        !m.serial().contains("mode initialized successfully"),
        "KVM initialised on a host without EL2"
    );
    // `backend = "auto"` became a namespace room (anchor-jail --backend namespaces).
    let opened = m
        .wait_for_from(ready.end, "bay0: room nsauto opened: ", BOOT)
        .unwrap();
    assert!(
        opened
            .line
            .contains("opened: namespaces, 128 MiB, 1 vCPU(s)"),
        "{}",
        opened.line
    );
    let agent = m
        .wait_for_from(opened.end, "anchor-agent: room nsauto ready", ROOM)
        .unwrap();
    m.wait_for_from(agent.end, "nsauto:~# ", SHELL).unwrap();
    let t_prompt = t0.elapsed();
    eprintln!("figure: arm64-room-ns: host KVM: {}", kvm.line);
    eprintln!(
        "figure: arm64-room-ns: boot -> bay0 ready {:.1} s, -> room shell {:.1} s (TCG, no KVM)",
        t_ready.as_secs_f64(),
        t_prompt.as_secs_f64()
    );

    // The console is the room's: what is typed runs in the namespace room, on the anchor
    // host's own kernel.
    run(&mut m, "echo hello-$((6*7))", "hello-42");
    run(&mut m, "uname -m", "aarch64");
    // Root in the room is the jail's unprivileged uid on the host (a user namespace).
    let uid = opened
        .line
        .split("jailed as uid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no uid in {}", opened.line));
    let map = run(&mut m, "cat /proc/self/uid_map", &format!(" {uid} "));
    let map: Vec<&str> = map.split_whitespace().collect();
    assert!(map.ends_with(&["0", uid, "1"]), "uid_map: {map:?}");

    // Ctrl-] leaves the room for the operator shell; the room keeps running.
    let from = m.serial().len();
    m.type_text("\x1d").unwrap();
    m.wait_for_from(from, "console: operator shell", SHELL)
        .unwrap();
    m.type_text("\r").unwrap();
    m.wait_for_from(from, "anchor# ", SHELL).unwrap();
    let list = m.sh_ok("anchorctl room list", SHELL).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("nsauto ") && l.contains("namespaces")),
        "{list}"
    );
    // A room that demands a microVM (the product's work room) is refused, plainly.
    let (out, status) = m.sh("anchorctl room start work", SHELL).unwrap();
    assert_ne!(status, 0, "{out}");
    assert!(
        out.contains("no usable KVM on this machine and the policy demands backend microvm"),
        "{out}"
    );
    let out = m.sh_ok("anchorctl room stop nsauto", SHELL).unwrap();
    assert!(out.contains("room nsauto stopped"), "{out}");
    let closed = m
        .wait_for("bay0: room nsauto (pid ", Duration::ZERO)
        .unwrap();
    assert!(closed.line.ends_with(": closed"), "{}", closed.line);
    let (list, _) = m.sh("anchorctl room list", SHELL).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("nsauto ") && l.contains(" stopped ")),
        "{list}"
    );
    assert!(!m.serial().contains("Kernel panic"), "a kernel panicked");
    assert_eq!(m.count("Linux version"), 1, "the anchor host rebooted");
    assert!(
        m.wait_exit(Duration::from_secs(2)).is_err(),
        "bay0 went down"
    );
    eprintln!(
        "figure: arm64-room-ns: whole run {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn nested_initramfs() -> PathBuf {
    test_initramfs(
        &["--nested"],
        cache_dir().join("systest/arm64/initramfs-nested.cpio.gz"),
    )
}

/// The product initramfs plus the system tests' small room policies (tests/system/policies).
/// Built from this checkout's aarch64 artifacts, so it lives beside them in `$ANCHOR_OUT`.
fn rooms_initramfs() -> PathBuf {
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    test_initramfs(
        &["--product", "--policies", policies.to_str().unwrap()],
        out_dir().join("aarch64/initramfs-rooms.cpio.gz"),
    )
}

/// The `arm64-case: NAME exit=N ...` line of a case.
fn case<'a>(log: &'a str, name: &str) -> &'a str {
    let needle = format!("arm64-case: {name} exit=");
    log.lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no result line for case {name}"))
}

fn exit_of(line: &str) -> i32 {
    line.split("exit=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exit code in {line:?}"))
}

#[test]
fn arm64_vmm_boot_protocol_and_exits_against_hand_made_guests() {
    let opts = Options::arm64(
        "arm64-guests",
        arm64_host_kernel().unwrap(),
        nested_initramfs(),
    )
    .append("arm64.case=guests");
    let mut m = Machine::start(opts).unwrap();
    let kvm = m.wait_for("arm64-init: /dev/kvm ", BOOT).unwrap();
    assert!(kvm.line.ends_with("present"), "{}", kvm.line);
    // Hang detection only: ten VMM runs under nested KVM in TCG on a shared machine.
    m.wait_for("arm64-init: done", Duration::from_secs(1200))
        .unwrap();
    let status = m.wait_exit(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
    let log = m.serial();

    // Boot protocol: every check the guest makes passes, then PSCI SYSTEM_OFF -> exit 0.
    guest_passed(
        &log,
        "boot",
        &[
            "x0 points at a device tree",
            "x1-x3 are zero",
            "running at EL1",
            "MMU off",
            "entered at the load address",
        ],
    );
    assert_eq!(exit_of(case(&log, "boot")), 0);
    assert!(log.contains("[boot stderr] anchor-vmm: guest powered off"));
    // PSCI SYSTEM_RESET ends the VMM with the same code as on x86_64.
    assert_eq!(exit_of(case(&log, "reset")), 0);
    assert!(log.contains("[reset stderr] anchor-vmm: guest reset"));
    // Device abuse: the VMM survives unmapped MMIO, virtio registers full of nonsense, a
    // notify flood and a 32 KiB UART flood, then powers off normally.
    let abuse = case(&log, "abuse");
    assert_eq!(exit_of(abuse), 0, "{abuse}");
    assert!(log.contains("[abuse] arm64-guest: abuse: unmapped MMIO reads all ones"));
    assert!(log.contains("[abuse] arm64-guest: abuse: virtio registers survived"));
    let bytes: u64 = abuse
        .split("serial_bytes=")
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        bytes > 32 * 1024,
        "the UART flood reached the file: {abuse}"
    );
    // A load pair from MMIO cannot be emulated: guest fault (4), not a hang or a VMM error.
    assert_eq!(exit_of(case(&log, "nisv")), 4);
    assert!(log.contains("MMIO access KVM cannot decode"), "{log}");
    assert!(!log.contains("nisv: FAIL"));
    // PSCI CPU_ON starts the powered-off secondary, named by its MPIDR.
    assert!(
        log.contains("[smp] arm64-guest: smp: vcpu 1 running (MPIDR aff0 1)"),
        "{log}"
    );
    assert_eq!(exit_of(case(&log, "smp")), 0);
    // Firmware calls with nonsense and MMIO at the edges are answered (by KVM, or as
    // unmapped by the VMM) and the VM goes on to power off normally.
    guest_passed(
        &log,
        "psci",
        &[
            "PSCI_VERSION answered",
            "unknown HVC function is NOT_SUPPORTED",
            "unknown SMC function is NOT_SUPPORTED",
            "CPU_ON of no vcpu is INVALID_PARAMETERS",
            "CPU_ON of itself is ALREADY_ON",
            "SYSTEM_RESET2 with a reserved type refused",
            "64-bit UART read survived",
            "GIC hole and above-RAM reads are all ones",
            "beyond the IPA range the guest takes the abort",
        ],
    );
    assert_eq!(exit_of(case(&log, "psci")), 0);
    assert!(log.contains("[psci stderr] anchor-vmm: guest powered off"));
    // Not an Image: refused before any guest runs, VMM error (3), one clear line.
    assert_eq!(exit_of(case(&log, "notimage")), 3);
    assert!(log.contains("[notimage stderr] anchor-vmm: cannot load kernel: not an arm64 Image"));
    // A protected VM demanded from a host that has none: refused (3), never downgraded.
    assert_eq!(exit_of(case(&log, "protected")), 3);
    assert!(log.contains("refuses the pKVM protected VM type"), "{log}");
    // The aarch64 filter kills: a forbidden syscall on the VMM thread dies with SIGSYS.
    assert_eq!(exit_of(case(&log, "seccomp-trigger")), 128 + 31);
    // A running VMM: every thread (VMM + 2 vcpus) under its seccomp filter, asleep.
    assert!(log.contains("arm64-case: wfi guest asleep=yes"), "{log}");
    let threads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("arm64-case: wfi thread "))
        .collect();
    assert_eq!(threads.len(), 3, "{threads:?}");
    for t in &threads {
        assert!(t.contains("Seccomp:2"), "{t}");
        assert!(t.ends_with("state=S"), "a thread spins: {t}");
    }
    eprintln!("figure: arm64 guest cases: {}", case(&log, "boot"));
}

/// Every check the hand-made guest's `case` reports passed (a line `[CASE] arm64-guest:
/// CASE: CHECK` each), and none failed.
fn guest_passed(log: &str, case: &str, checks: &[&str]) {
    for check in checks {
        assert!(
            log.contains(&format!("[{case}] arm64-guest: {case}: {check}")),
            "{case} check {check:?} missing:\n{log}"
        );
    }
    assert!(
        !log.contains(&format!("arm64-guest: {case}: FAIL")),
        "{log}"
    );
}

/// The host's GIC is a GICv2 (QEMU virt `gic-version=2`; arm64 hardware without a GICv3
/// exists): anchor-vmm falls back to an in-kernel GICv2 and describes it in the device
/// tree (`arm,cortex-a15-gic`, PPI CPU masks), which serves at most 8 vcpus.
#[test]
fn arm64_gicv2_host_runs_guests_and_a_room_and_refuses_a_ninth_vcpu_plainly() {
    let opts = Options::arm64(
        "arm64-gicv2",
        arm64_host_kernel().unwrap(),
        nested_initramfs(),
    )
    // QEMU merges -M options; the last one wins.
    .arg("-M")
    .arg("gic-version=2")
    .append("arm64.case=gicv2");
    let mut m = Machine::start(opts).unwrap();
    let kvm = m.wait_for("arm64-init: /dev/kvm ", BOOT).unwrap();
    assert!(kvm.line.ends_with("present"), "{}", kvm.line);
    // Hang detection only: six VMM runs (one a Linux room) under nested KVM in TCG.
    m.wait_for("arm64-init: done", Duration::from_secs(1200))
        .unwrap();
    let status = m.wait_exit(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "QEMU exit status {status}");
    let log = m.serial();

    assert!(
        log.contains("[boot stderr] anchor-vmm: aarch64 VM: ordinary KVM VM, GICv2;"),
        "{log}"
    );
    assert!(!log.contains("arm64-guest: boot: FAIL"), "{log}");
    assert_eq!(exit_of(case(&log, "boot")), 0);
    // PSCI CPU_ON and the firmware/MMIO edge cases behave as with a GICv3.
    assert!(
        log.contains("[smp] arm64-guest: smp: vcpu 1 running (MPIDR aff0 1)"),
        "{log}"
    );
    assert_eq!(exit_of(case(&log, "smp")), 0);
    assert!(!log.contains("arm64-guest: psci: FAIL"), "{log}");
    assert_eq!(exit_of(case(&log, "psci")), 0);
    // Eight vcpus are the GICv2's limit; a ninth is refused before any vcpu exists, in
    // one line that says why (KVM itself only fails the 9th KVM_CREATE_VCPU, EINVAL).
    assert_eq!(exit_of(case(&log, "eight")), 0);
    assert_eq!(exit_of(case(&log, "nine")), 3);
    assert!(
        log.contains(
            "[nine stderr] anchor-vmm: the host offers only GICv2, which addresses at most 8 vcpus, not 9"
        ),
        "{log}"
    );
    // The room's root came from virtio-blk and its agent ran: interrupts reach the guest
    // through the GICv2 (the agent, with no bay0 to answer, resets the room).
    assert!(
        log.contains("[room] anchor-agent: room base ready"),
        "{log}"
    );
    assert_eq!(exit_of(case(&log, "room")), 0);
    assert!(
        log.contains("[room stderr] anchor-vmm: guest reset"),
        "{log}"
    );
    assert!(!log.contains("Kernel panic"), "a kernel panicked");
}
