// SPDX-License-Identifier: GPL-3.0-or-later
//! The Anchor OS system-test harness: boots the anchor host (our host kernel plus an
//! initramfs with bay0 as /init) under `qemu-system-x86_64 -M q35 -accel tcg -cpu max`
//! and drives it: wait for serial lines, type on the serial console, QMP commands
//! (system_powerdown, send-key, screendump), wait for QEMU to exit. When a test
//! panics, the machine's serial log is printed (it is also kept under
//! `$ANCHOR_CACHE/systest/logs/NAME.log`).
//!
//! Extend it through [`Options`]: new devices are new fields (or [`Options::arg`]).

use serde_json::{json, Value};
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A harness failure, with a message meant for the person reading the test output.
pub struct Error(pub String);

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Result with the harness error.
pub type Result<T> = std::result::Result<T, Error>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}

fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Error(format!("{what}: {e}")))
}

/// A shell snippet (for the anchor host's or a room's busybox sh) that waits until `cond`
/// succeeds, 10 s at most, looking every 0.1 s: for what a test would otherwise assume
/// after a fixed sleep. `cond`'s output goes through (the last try's is what it printed).
pub fn shell_until(cond: &str) -> String {
    format!("i=0; until {cond} || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done")
}

/// `$ANCHOR_CACHE` (default /var/cache/anchor-os).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("ANCHOR_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/anchor-os"), PathBuf::from)
}

/// `$ANCHOR_OUT` (default `$ANCHOR_CACHE/out`).
pub fn out_dir() -> PathBuf {
    std::env::var_os("ANCHOR_OUT").map_or_else(|| cache_dir().join("out"), PathBuf::from)
}

/// An input file named by `env` (or `default`); a clear error when it is missing.
pub fn artifact(env: &str, default: PathBuf, what: &str, how: &str) -> Result<PathBuf> {
    let path = std::env::var_os(env).map_or(default, PathBuf::from);
    if path.is_file() {
        Ok(path)
    } else {
        err(format!(
            "{what} not found at {} (set {env}, or {how})",
            path.display()
        ))
    }
}

/// The anchor host kernel: `$ANCHOR_HOST_KERNEL`, default `$ANCHOR_OUT/host-bzImage`.
pub fn host_kernel() -> Result<PathBuf> {
    let default = out_dir().join("host-bzImage");
    artifact(
        "ANCHOR_HOST_KERNEL",
        default,
        "host kernel",
        "build it: host-kernel/build.sh",
    )
}

/// The initramfs: `$ANCHOR_INITRAMFS`, default `$ANCHOR_OUT/initramfs.cpio.gz`.
pub fn initramfs() -> Result<PathBuf> {
    let default = out_dir().join("initramfs.cpio.gz");
    artifact(
        "ANCHOR_INITRAMFS",
        default,
        "initramfs",
        "build it: tests/system/mkinitramfs.sh",
    )
}

/// The initramfs whose bay0 has the `debug-stall` feature (built by run-all.sh).
pub fn stall_initramfs() -> Result<PathBuf> {
    let default = cache_dir().join("systest/initramfs-debug-stall.cpio.gz");
    artifact(
        "ANCHOR_STALL_INITRAMFS",
        default,
        "debug-stall initramfs",
        "run tests/system/run-all.sh",
    )
}

/// The initramfs for the vault power-cut test: the product initramfs plus a test-only
/// busybox script (built by run-all.sh with mk-vault-test-initramfs.sh).
pub fn vault_test_initramfs() -> Result<PathBuf> {
    let default = out_dir().join("initramfs-vault-test.cpio.gz");
    artifact(
        "ANCHOR_VAULT_TEST_INITRAMFS",
        default,
        "vault test initramfs",
        "run tests/system/run-all.sh",
    )
}

/// The initramfs with the system tests' small room policies (tests/system/policies) next
/// to the shipped ones (built by run-all.sh).
pub fn rooms_initramfs() -> Result<PathBuf> {
    let default = cache_dir().join("systest/initramfs-rooms.cpio.gz");
    artifact(
        "ANCHOR_ROOMS_INITRAMFS",
        default,
        "rooms initramfs",
        "run tests/system/run-all.sh",
    )
}

/// A blank 64 MiB disk and a TPM state directory for a vault first boot, under
/// `$ANCHOR_CACHE/systest/vault/NAME-PID`, that outlive the machines of one test (a second
/// boot opens the vault the first made); removed when dropped.
#[derive(Debug)]
pub struct VaultDisk {
    dir: PathBuf,
}

impl VaultDisk {
    pub fn new(name: &str) -> Result<VaultDisk> {
        let dir = cache_dir().join(format!("systest/vault/{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        io(
            "make the vault test's TPM directory",
            std::fs::create_dir_all(dir.join("tpm")),
        )?;
        let disk = io(
            "make the vault test's disk",
            std::fs::File::create(dir.join("vault.img")),
        )?;
        io("size the vault test's disk", disk.set_len(64 << 20))?;
        Ok(VaultDisk { dir })
    }

    /// Where the disk and the TPM state are (a test may keep more there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A machine `name` with this disk (`/dev/vda`) and this TPM state.
    pub fn options(&self, name: &str) -> Result<Options> {
        Ok(Options::from_env(name)?
            .tpm_state(self.dir.join("tpm"))
            .disk(self.dir.join("vault.img")))
    }
}

impl Drop for VaultDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kernel command line every machine gets; [`Options::append`] adds to it.
/// `no_timer_check`: the kernel's early IO-APIC timer check counts ticks during a
/// busy-wait calibrated moments before; under TCG on a loaded host the two disagree and
/// the emulated anchor host panics ("IO-APIC + timer doesn't work!", about 2 boots in 60
/// at load 9-10).
/// `highres=off`: keeps the anchor host's local APIC timer periodic. QEMU 10.0's TCG can
/// lose the request to look at the APIC: its VMRUN helper sets `CPU_INTERRUPT_VIRQ` in
/// the vCPU's `interrupt_request` without the big QEMU lock, so a `CPU_INTERRUPT_POLL` the
/// main loop sets at that moment (the APIC timer just fired) is overwritten (fixed
/// upstream by an atomic or, after 10.0). With a one-shot tick that timer was the only
/// one armed: the anchor host halts with the timer's vector pending in the APIC and never
/// wakes (measured: `info lapic` IRR 236, RIP in default_idle, HLT=1, IF=1, for minutes;
/// about one hang in 2,800 typed room commands with two machines beside a CPU hog; the
/// watchdog then resets it). A periodic timer fires again 4 ms later and raises the
/// request anew.
/// Emulated machines only; the product's command line carries neither.
/// The line lives in `tests/system/emulated-x86_64.cmdline`, which `make run`
/// (run-qemu.sh), the nested benchmark and the test UKIs (uki/tests/mk-test-ukis.sh) read
/// too: every emulated x86_64 anchor host boots with the same workarounds.
pub const BASE_APPEND: &str = include_str!("../emulated-x86_64.cmdline").trim_ascii();
/// The same for the arm64 anchor host (QEMU virt's PL011 is ttyAMA0).
pub const BASE_APPEND_ARM64: &str = "console=ttyAMA0 panic=-1 printk.time=1";

/// Which anchor host QEMU emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `qemu-system-x86_64 -M q35 -accel tcg -cpu max` (AMD SVM + NPT for nested rooms).
    X86_64,
    /// `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -accel tcg
    /// -cpu max,pauth-impdef=on`: EL2 for the host kernel, so KVM (VHE, or protected
    /// mode with `kvm-arm.mode=protected`) runs nested rooms.
    Aarch64,
}

/// The arm64 anchor host kernel: `$ANCHOR_ARM64_HOST_KERNEL`, default
/// `$ANCHOR_OUT/aarch64/host-Image`.
pub fn arm64_host_kernel() -> Result<PathBuf> {
    let default = out_dir().join("aarch64/host-Image");
    artifact(
        "ANCHOR_ARM64_HOST_KERNEL",
        default,
        "arm64 host kernel",
        "build it: host-kernel/build-arm64.sh",
    )
}

/// The arm64 product initramfs: `$ANCHOR_ARM64_INITRAMFS`, default
/// `$ANCHOR_OUT/aarch64/initramfs.cpio.gz`.
pub fn arm64_initramfs() -> Result<PathBuf> {
    let default = out_dir().join("aarch64/initramfs.cpio.gz");
    artifact(
        "ANCHOR_ARM64_INITRAMFS",
        default,
        "arm64 initramfs",
        "build it: tests/system/mk-arm64-initramfs.sh --product",
    )
}

/// How to start a machine. Defaults: 1024 MiB, 1 CPU, no extra devices, `-no-reboot`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Names the work directory and the kept serial log.
    pub name: String,
    /// The emulated machine ([`Options::new`]: x86_64; [`Options::arm64`]: aarch64).
    pub arch: Arch,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Added to [`BASE_APPEND`].
    pub append: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// `-device i6300esb` (a watchdog that resets the machine).
    pub watchdog: bool,
    /// A TPM 2.0 (`tpm-tis`) backed by a private swtpm.
    pub tpm: bool,
    /// Raw images attached as virtio-blk disks, in order.
    pub disks: Vec<PathBuf>,
    /// A VGA framebuffer (for screendump); otherwise no display device.
    pub framebuffer: bool,
    /// Exit QEMU instead of rebooting (a kernel panic or reset ends the run).
    pub no_reboot: bool,
    /// Further QEMU arguments, appended last.
    pub extra_args: Vec<String>,
    /// Boot through UEFI firmware (OVMF) from a disk instead of `-kernel`/`-initrd`;
    /// `kernel`, `initramfs` and `append` are then unused (the UKI carries them).
    pub uefi: Option<Uefi>,
    /// Keep the TPM's state in this directory (it survives the machine: power-cut
    /// tests); default: a fresh TPM per machine.
    pub tpm_state: Option<PathBuf>,
}

/// UEFI boot: OVMF firmware, its variable store and the disk it boots.
#[derive(Debug, Clone)]
pub struct Uefi {
    /// The firmware code (read-only pflash), e.g. `OVMF_CODE_4M.secboot.fd`.
    pub code: PathBuf,
    /// The variable store (writable pflash): the machine writes to it, so give each
    /// machine its own copy (and keep it across boots of the same "device").
    pub vars: PathBuf,
    /// Secure Boot firmware (needs SMM and a secure pflash).
    pub secure: bool,
    /// The disk holding the ESP (virtio-blk, raw).
    pub disk: PathBuf,
}

/// Debian's OVMF with Secure Boot (package ovmf).
pub const OVMF_SECBOOT_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

impl Options {
    pub fn new(name: &str, kernel: PathBuf, initramfs: PathBuf) -> Options {
        Options {
            name: name.to_string(),
            arch: Arch::X86_64,
            kernel,
            initramfs,
            append: String::new(),
            memory_mib: 1024,
            cpus: 1,
            watchdog: false,
            tpm: false,
            tpm_state: None,
            disks: Vec::new(),
            framebuffer: false,
            no_reboot: true,
            extra_args: Vec::new(),
            uefi: None,
        }
    }

    /// An arm64 anchor host (see [`Arch::Aarch64`]); same defaults otherwise. The x86-only
    /// devices ([`Options::watchdog`], [`Options::tpm`], [`Options::framebuffer`]) are
    /// not offered on it.
    pub fn arm64(name: &str, kernel: PathBuf, initramfs: PathBuf) -> Options {
        Options {
            arch: Arch::Aarch64,
            ..Options::new(name, kernel, initramfs)
        }
    }

    /// A machine that boots `uefi.disk` through OVMF (no kernel or initramfs of its own).
    pub fn uefi(name: &str, uefi: Uefi) -> Options {
        let mut o = Options::new(name, PathBuf::new(), PathBuf::new());
        o.uefi = Some(uefi);
        o
    }

    /// Keep the TPM state in `dir` (implies a TPM).
    pub fn tpm_state(mut self, dir: PathBuf) -> Self {
        self.tpm = true;
        self.tpm_state = Some(dir);
        self
    }

    /// Options with the kernel and initramfs from the environment (see [`host_kernel`]).
    pub fn from_env(name: &str) -> Result<Options> {
        Ok(Options::new(name, host_kernel()?, initramfs()?))
    }

    pub fn initramfs(mut self, path: PathBuf) -> Self {
        self.initramfs = path;
        self
    }
    pub fn append(mut self, words: &str) -> Self {
        if !self.append.is_empty() {
            self.append.push(' ');
        }
        self.append.push_str(words);
        self
    }
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }
    pub fn watchdog(mut self) -> Self {
        self.watchdog = true;
        self
    }
    pub fn tpm(mut self) -> Self {
        self.tpm = true;
        self
    }
    pub fn disk(mut self, image: PathBuf) -> Self {
        self.disks.push(image);
        self
    }
    pub fn framebuffer(mut self) -> Self {
        self.framebuffer = true;
        self
    }
    /// Let the guest reboot (for tests that count boots).
    pub fn allow_reboot(mut self) -> Self {
        self.no_reboot = false;
        self
    }
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// The full kernel command line.
    pub fn cmdline(&self) -> String {
        let base = match self.arch {
            Arch::X86_64 => BASE_APPEND,
            Arch::Aarch64 => BASE_APPEND_ARM64,
        };
        if self.append.is_empty() {
            base.to_string()
        } else {
            format!("{base} {}", self.append)
        }
    }

    /// The QEMU binary for [`Options::arch`].
    pub fn qemu_binary(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// QEMU's arguments, with sockets under `workdir`. The serial console is stdio.
    pub fn qemu_args(&self, workdir: &Path) -> Vec<String> {
        let x86 = match &self.uefi {
            Some(u) if u.secure => "q35,smm=on",
            _ => "q35",
        };
        let machine: [&str; 6] = match self.arch {
            Arch::X86_64 => ["-M", x86, "-accel", "tcg", "-cpu", "max"],
            Arch::Aarch64 => [
                "-M",
                "virt,virtualization=on,gic-version=3",
                "-accel",
                "tcg",
                "-cpu",
                "max,pauth-impdef=on",
            ],
        };
        let mut a: Vec<String> = machine
            .iter()
            .chain(
                [
                    "-nodefaults",
                    "-no-user-config",
                    "-display",
                    "none",
                    "-serial",
                    "stdio",
                ]
                .iter(),
            )
            .map(|s| s.to_string())
            .collect();
        let mut push = |args: &[&str]| a.extend(args.iter().map(|s| s.to_string()));
        let (mem, cpus) = (self.memory_mib.to_string(), self.cpus.to_string());
        push(&["-m", &mem, "-smp", &cpus]);
        match &self.uefi {
            None => {
                push(&[
                    "-kernel",
                    &self.kernel.to_string_lossy(),
                    "-initrd",
                    &self.initramfs.to_string_lossy(),
                ]);
                push(&["-append", &self.cmdline()]);
            }
            Some(u) => {
                if u.secure {
                    push(&["-global", "driver=cfi.pflash01,property=secure,value=on"]);
                }
                let code = format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    u.code.display()
                );
                let vars = format!("if=pflash,format=raw,unit=1,file={}", u.vars.display());
                let disk = format!("file={},if=none,id=esp,format=raw", u.disk.display());
                push(&["-drive", &code, "-drive", &vars]);
                push(&[
                    "-drive",
                    &disk,
                    "-device",
                    "virtio-blk-pci,drive=esp,bootindex=0",
                ]);
            }
        }
        let qmp = format!(
            "unix:{},server=on,wait=off",
            workdir.join("qmp.sock").display()
        );
        push(&["-qmp", &qmp]);
        if self.no_reboot {
            push(&["-no-reboot"]);
        }
        if self.watchdog {
            push(&["-device", "i6300esb", "-action", "watchdog=reset"]);
        }
        if self.tpm {
            let sock = format!(
                "socket,id=chrtpm,path={}",
                workdir.join("swtpm.sock").display()
            );
            push(&[
                "-chardev",
                &sock,
                "-tpmdev",
                "emulator,id=tpm0,chardev=chrtpm",
                "-device",
                "tpm-tis,tpmdev=tpm0",
            ]);
        }
        for (i, disk) in self.disks.iter().enumerate() {
            let drive = format!("file={},if=none,id=disk{i},format=raw", disk.display());
            let dev = format!("virtio-blk-pci,drive=disk{i}");
            push(&["-drive", &drive, "-device", &dev]);
        }
        if self.framebuffer {
            push(&["-device", "VGA"]);
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// Everything the guest wrote on its serial console.
#[derive(Default)]
struct Serial {
    text: String,
    /// QEMU closed the console (it exited).
    closed: bool,
}

type Shared<T> = Arc<(Mutex<T>, Condvar)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A line found on the serial console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The whole line holding the match.
    pub line: String,
    /// Offset in the serial log just past that line (search from here for "later").
    pub end: usize,
}

/// A running QEMU machine. Dropping it stops QEMU (and swtpm).
pub struct Machine {
    opts: Options,
    qemu: Child,
    stdin: Option<ChildStdin>,
    serial: Shared<Serial>,
    qemu_stderr: Arc<Mutex<String>>,
    qmp: UnixStream,
    responses: mpsc::Receiver<Value>,
    events: Shared<Vec<Value>>,
    swtpm: Option<Child>,
    workdir: PathBuf,
    /// The command-line argument vector (for failure reports).
    pub args: Vec<String>,
}

impl fmt::Debug for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Machine({})", self.opts.name)
    }
}

static RUN: AtomicU32 = AtomicU32::new(0);
static SH_RUN: AtomicU32 = AtomicU32::new(0);

fn wait_for_path(path: &Path, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

impl Machine {
    /// Start QEMU with `opts` and connect to its QMP socket.
    pub fn start(opts: Options) -> Result<Machine> {
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        let workdir = cache_dir().join(format!(
            "systest/run/{}-{}-{run}",
            opts.name,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&workdir);
        io("create work dir", std::fs::create_dir_all(&workdir))?;
        let logs = cache_dir().join("systest/logs");
        io("create log dir", std::fs::create_dir_all(&logs))?;
        let log_path = logs.join(format!("{}.log", opts.name));

        let swtpm = if opts.tpm {
            let state = opts
                .tpm_state
                .clone()
                .unwrap_or_else(|| workdir.join("tpm"));
            Some(start_swtpm(&workdir, &state)?)
        } else {
            None
        };
        let args = opts.qemu_args(&workdir);
        let what = format!(
            "start {} (is QEMU installed? scripts/setup.sh)",
            opts.qemu_binary()
        );
        let mut qemu = io(
            &what,
            Command::new(opts.qemu_binary())
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn(),
        )?;
        let stdin = qemu.stdin.take();
        let serial: Shared<Serial> = Arc::default();
        if let Some(out) = qemu.stdout.take() {
            let serial = serial.clone();
            let log = std::fs::File::create(&log_path).ok();
            std::thread::spawn(move || pump_serial(out, &serial, log));
        }
        let qemu_stderr = Arc::new(Mutex::new(String::new()));
        if let Some(e) = qemu.stderr.take() {
            let buf = qemu_stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(e).lines().map_while(std::result::Result::ok) {
                    let mut b = lock(&buf);
                    b.push_str(&line);
                    b.push('\n');
                }
            });
        }
        let qmp_path = workdir.join("qmp.sock");
        let connected = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(&qmp_path) {
                Ok(s) => break s,
                Err(e) => {
                    if Instant::now() > connected || io("qemu", qemu.try_wait())?.is_some() {
                        let _ = qemu.kill();
                        let stderr = lock(&qemu_stderr).clone();
                        return err(format!(
                            "QMP socket {}: {e}; QEMU stderr:\n{stderr}",
                            qmp_path.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let (tx, responses) = mpsc::channel();
        let events: Shared<Vec<Value>> = Arc::default();
        let reader = io("clone QMP socket", stream.try_clone())?;
        let ev = events.clone();
        std::thread::spawn(move || pump_qmp(reader, &tx, &ev));
        let mut m = Machine {
            opts,
            qemu,
            stdin,
            serial,
            qemu_stderr,
            qmp: stream,
            responses,
            events,
            swtpm,
            workdir,
            args,
        };
        m.qmp("qmp_capabilities", None)?;
        Ok(m)
    }

    /// The options this machine was started with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The serial log so far.
    pub fn serial(&self) -> String {
        lock(&self.serial.0).text.clone()
    }

    /// How often `needle` appears on the serial console so far.
    pub fn count(&self, needle: &str) -> usize {
        lock(&self.serial.0).text.matches(needle).count()
    }

    /// Wait for a serial line holding `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<Found> {
        self.wait_for_from(0, needle, timeout)
    }

    /// Wait for a serial line holding `needle` at or after offset `from`.
    pub fn wait_for_from(&self, from: usize, needle: &str, timeout: Duration) -> Result<Found> {
        let end = Instant::now() + timeout;
        let (mutex, cond) = &*self.serial;
        let mut s = lock(mutex);
        // A line is returned once it is complete (its newline arrived), so callers never
        // judge half a line; a line that stays open (a shell prompt) is returned after
        // LINE_GRACE.
        let mut seen_open: Option<Instant> = None;
        loop {
            if let Some(found) = find_line(&s.text, from, needle) {
                let complete = s.text.get(..found.end).is_some_and(|t| t.ends_with('\n'));
                let first_seen = *seen_open.get_or_insert_with(Instant::now);
                if complete || s.closed || first_seen.elapsed() >= LINE_GRACE {
                    return Ok(found);
                }
                let wait = LINE_GRACE.saturating_sub(first_seen.elapsed());
                s = cond
                    .wait_timeout(s, wait)
                    .map_or_else(|e| e.into_inner().0, |r| r.0);
                continue;
            }
            if s.closed {
                let text = tail(&s.text);
                drop(s);
                return err(format!(
                    "QEMU exited before {needle:?} appeared on serial ({}){text}",
                    self.why_it_ended()
                ));
            }
            let now = Instant::now();
            if now >= end {
                return err(format!(
                    "no {needle:?} on serial within {timeout:?}{}",
                    tail(&s.text)
                ));
            }
            s = cond
                .wait_timeout(s, end - now)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    }

    /// Wait for a marker: a whole serial line (its newline arrived) that starts with
    /// `marker`, after an optional printk timestamp (`[    3.2] `). A marker torn by
    /// another writer, or buried inside some other line, does not count.
    pub fn wait_for_line(&self, marker: &str, timeout: Duration) -> Result<Found> {
        self.wait_for_line_from(0, marker, timeout)
    }

    /// [`Machine::wait_for_line`] at or after offset `from`.
    pub fn wait_for_line_from(
        &self,
        from: usize,
        marker: &str,
        timeout: Duration,
    ) -> Result<Found> {
        let end = Instant::now() + timeout;
        let (mutex, cond) = &*self.serial;
        let mut s = lock(mutex);
        loop {
            if let Some(found) = find_marker_line(&s.text, from, marker) {
                return Ok(found);
            }
            if s.closed {
                let text = tail(&s.text);
                drop(s);
                return err(format!(
                    "QEMU exited before a line starting with {marker:?} appeared on serial \
                     ({}){text}",
                    self.why_it_ended()
                ));
            }
            let now = Instant::now();
            if now >= end {
                return err(format!(
                    "no line starting with {marker:?} on serial within {timeout:?}{}",
                    tail(&s.text)
                ));
            }
            s = cond
                .wait_timeout(s, end - now)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    }

    /// Runs `cmd` in the operator shell (`bay0.shell=1`) and returns what it printed (the
    /// lines between the command and its end marker) and its exit status.
    pub fn sh(&mut self, cmd: &str, timeout: Duration) -> Result<(String, i32)> {
        let n = SH_RUN.fetch_add(1, Ordering::Relaxed);
        let marker = format!("@@end-{n}@@");
        let from = self.serial().len();
        // The marker starts a line of its own even after output without a final newline.
        self.type_text(&format!("{cmd}; printf '\\n{marker} %s\\n' $?\r"))?;
        let end = self.wait_for_line_from(from, &marker, timeout)?;
        let log = self.serial();
        let text = log.get(from..end.end).unwrap_or("");
        // Drop the echoed command line (it holds the marker too, after the prompt).
        let body = text.split_once('\n').map_or("", |(_, rest)| rest);
        let body = body.rsplit_once(&marker).map_or(body, |(b, _)| b);
        let status = end
            .line
            .rsplit(' ')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1);
        Ok((body.to_string(), status))
    }

    /// [`Machine::sh`] for a command that must succeed: its output, or an error naming
    /// the command, its status and what it printed.
    pub fn sh_ok(&mut self, cmd: &str, timeout: Duration) -> Result<String> {
        match self.sh(cmd, timeout)? {
            (out, 0) => Ok(out),
            (out, status) => err(format!("`{cmd}` exited with {status}:\n{out}")),
        }
    }

    /// Runs `cmd` in the shell of `room`, whose console is on the serial line (a boot
    /// room, or one attached with `anchorctl room console`): its output lines (without
    /// the `room| ` prefix) and its exit status.
    pub fn in_room(
        &mut self,
        room: &str,
        cmd: &str,
        timeout: Duration,
    ) -> Result<(Vec<String>, i32)> {
        let n = SH_RUN.fetch_add(1, Ordering::Relaxed);
        let marker = format!("@@room-done-{n}@@");
        let from = self.serial().len();
        self.type_text(&format!("{cmd}; echo {marker} $?\r"))?;
        let end = self.wait_for_line_from(from, &format!("{room}| {marker}"), timeout)?;
        let status = end
            .line
            .rsplit(' ')
            .next()
            .and_then(|s| s.trim().parse().ok());
        let prefix = format!("{room}| ");
        let lines = self
            .serial()
            .get(from..end.end)
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest.to_string()))
            .filter(|l| !l.contains(&marker))
            .collect();
        Ok((lines, status.unwrap_or(-1)))
    }

    /// Attaches the operator shell's terminal to `room` (`anchorctl room console`) and
    /// waits for the room's prompt.
    pub fn attach_console(&mut self, room: &str, timeout: Duration) -> Result<()> {
        let from = self.serial().len();
        self.type_text(&format!("anchorctl room console {room}\r"))?;
        let attached = format!("attached to room {room} (Ctrl-] detaches)");
        self.wait_for_line_from(from, &attached, timeout)?;
        self.type_text("\r")?;
        self.wait_for_from(from, &format!("{room}| {room}:"), timeout)
            .map(drop)
    }

    /// Ctrl-]: back to the operator shell; waits for bay0's line saying so.
    pub fn detach_console(&mut self, room: &str, timeout: Duration) -> Result<()> {
        let from = self.serial().len();
        self.type_text("\x1d")?;
        let detached = format!("[detached from room {room}]");
        self.wait_for_line_from(from, &detached, timeout).map(drop)
    }

    /// bay0's first-boot vault dialog, answered: `pass` typed at "New vault passphrase"
    /// and again at "Type it again", the recovery key read off the console, and Enter
    /// pressed at "Press Enter once" (each step given `wait`). Returns the recovery key
    /// (eight groups of four characters between dashes: 39 characters).
    pub fn make_vault(&mut self, pass: &str, wait: Duration) -> Result<String> {
        self.wait_for("New vault passphrase", wait)?;
        self.type_text(&format!("{pass}\n"))?;
        self.wait_for("Type it again", wait)?;
        self.type_text(&format!("{pass}\n"))?;
        let banner = self.wait_for("RECOVERY KEY", wait)?;
        let key = self.wait_for_from(banner.end, "-", wait)?.line;
        let key = key.trim();
        if key.len() != 39 {
            return Err(Error(format!("recovery key line: {key:?}")));
        }
        self.wait_for("Press Enter once", wait)?;
        self.type_text("\n")?;
        Ok(key.to_owned())
    }

    /// Type `text` on the serial console.
    pub fn type_text(&mut self, text: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or(Error("serial input closed".into()))?;
        io(
            "type on serial",
            stdin
                .write_all(text.as_bytes())
                .and_then(|()| stdin.flush()),
        )
    }

    /// Run a QMP command; its `return` value.
    pub fn qmp(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let msg = match arguments {
            Some(args) => json!({ "execute": command, "arguments": args }),
            None => json!({ "execute": command }),
        };
        let mut line = msg.to_string();
        line.push('\n');
        io("write QMP", self.qmp.write_all(line.as_bytes()))?;
        let reply = self
            .responses
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| Error(format!("QMP {command}: no reply ({e})")))?;
        match reply.get("error") {
            Some(e) => err(format!("QMP {command} failed: {e}")),
            None => Ok(reply.get("return").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Run a human-monitor command through QMP (`info lapic`, `info registers`); the
    /// text it prints.
    pub fn hmp(&mut self, command: &str) -> Result<String> {
        let text = self.qmp(
            "human-monitor-command",
            Some(json!({ "command-line": command })),
        )?;
        match text {
            Value::String(s) => Ok(s),
            other => err(format!("monitor command {command}: not text: {other}")),
        }
    }

    /// Press the ACPI power button.
    pub fn system_powerdown(&mut self) -> Result<()> {
        self.qmp("system_powerdown", None).map(drop)
    }

    /// Press keys together, by QEMU qcode (e.g. `["ctrl", "alt", "delete"]`).
    pub fn send_key(&mut self, qcodes: &[&str]) -> Result<()> {
        let keys: Vec<Value> = qcodes
            .iter()
            .map(|k| json!({ "type": "qcode", "data": k }))
            .collect();
        self.qmp("send-key", Some(json!({ "keys": keys })))
            .map(drop)
    }

    /// Save the framebuffer as PNG (needs [`Options::framebuffer`]).
    pub fn screendump(&mut self, path: &Path) -> Result<()> {
        let args = json!({ "filename": path.to_string_lossy(), "format": "png" });
        self.qmp("screendump", Some(args)).map(drop)
    }

    /// Wait for a QMP event (e.g. "SHUTDOWN", "WATCHDOG", "RESET"); its whole message.
    pub fn wait_event(&self, name: &str, timeout: Duration) -> Result<Value> {
        let end = Instant::now() + timeout;
        let (mutex, cond) = &*self.events;
        let mut evs = lock(mutex);
        loop {
            if let Some(e) = evs
                .iter()
                .find(|e| e.get("event").and_then(Value::as_str) == Some(name))
            {
                return Ok(e.clone());
            }
            let now = Instant::now();
            if now >= end {
                return err(format!("no QMP event {name} within {timeout:?}"));
            }
            evs = cond
                .wait_timeout(evs, end - now)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    }

    /// The QMP events QEMU sent, in order, for a report of why a machine went away: a
    /// `WATCHDOG` event before `SHUTDOWN` means the watchdog reset it (turned into an exit
    /// by `-no-reboot`); `SHUTDOWN` with reason `guest-reset` alone means the guest reset
    /// itself (a reboot, or a triple fault, which prints nothing).
    pub fn why_it_ended(&self) -> String {
        // The serial pipe and the QMP socket are read by different threads: give the
        // last events a moment to arrive.
        let _ = self.wait_event("SHUTDOWN", Duration::from_secs(2));
        let evs = lock(&self.events.0);
        let list: Vec<String> = evs
            .iter()
            .map(|e| {
                let name = e.get("event").and_then(Value::as_str).unwrap_or("?");
                match e.get("data") {
                    Some(data) => format!("{name} {data}"),
                    None => name.to_owned(),
                }
            })
            .collect();
        if list.is_empty() {
            "no QMP event".to_owned()
        } else {
            format!("QMP events: {}", list.join(", "))
        }
    }

    /// Wait for QEMU to exit on its own.
    /// Once it returns, [`Machine::serial`] holds everything QEMU wrote: the reader of
    /// the console pipe has seen its end (QEMU's exit alone does not mean the last bytes
    /// were read).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = io("wait for qemu", self.qemu.try_wait())? {
                self.wait_serial_closed(Duration::from_secs(30))?;
                return Ok(status);
            }
            if Instant::now() >= end {
                return err(format!("QEMU still running after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the console pipe reached its end (QEMU closed it).
    fn wait_serial_closed(&self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        let (mutex, cond) = &*self.serial;
        let mut s = lock(mutex);
        while !s.closed {
            let now = Instant::now();
            if now >= end {
                return err(format!(
                    "QEMU exited but its console did not close within {timeout:?}"
                ));
            }
            s = cond
                .wait_timeout(s, end - now)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
        Ok(())
    }

    /// Pull the plug.
    pub fn power_off(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }

    /// Print the serial log and QEMU's stderr (done automatically when a test panics).
    pub fn dump(&self) {
        eprintln!(
            "===== serial log of {} =====\n{}",
            self.opts.name,
            self.serial()
        );
        eprintln!("===== qemu stderr =====\n{}", lock(&self.qemu_stderr));
        eprintln!("===== {} =====", self.why_it_ended());
        eprintln!("===== qemu {} =====", self.args.join(" "));
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        self.power_off();
        if let Some(mut tpm) = self.swtpm.take() {
            let _ = tpm.kill();
            let _ = tpm.wait();
        }
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

fn start_swtpm(workdir: &Path, state: &Path) -> Result<Child> {
    io("create tpm dir", std::fs::create_dir_all(state))?;
    let sock = workdir.join("swtpm.sock");
    let child = io(
        "start swtpm (is swtpm installed? scripts/setup.sh)",
        Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", sock.display()))
            .stdout(Stdio::null())
            .spawn(),
    )?;
    if !wait_for_path(&sock, Duration::from_secs(10)) {
        return err("swtpm did not create its socket within 10 s");
    }
    Ok(child)
}

fn pump_serial(mut out: impl Read, serial: &Shared<Serial>, mut log: Option<std::fs::File>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = out.read(&mut buf).unwrap_or(0);
        let (mutex, cond) = &**serial;
        let mut s = lock(mutex);
        if n == 0 {
            s.closed = true;
            cond.notify_all();
            return;
        }
        let chunk = String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).replace('\r', "");
        if let Some(f) = log.as_mut() {
            let _ = f.write_all(chunk.as_bytes());
        }
        s.text.push_str(&chunk);
        cond.notify_all();
    }
}

fn pump_qmp(stream: UnixStream, responses: &mpsc::Sender<Value>, events: &Shared<Vec<Value>>) {
    for line in BufReader::new(stream)
        .lines()
        .map_while(std::result::Result::ok)
    {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v.get("event").is_some() {
            let (mutex, cond) = &**events;
            lock(mutex).push(v);
            cond.notify_all();
        } else if (v.get("return").is_some() || v.get("error").is_some())
            && responses.send(v).is_err()
        {
            return;
        }
    }
}

/// How long [`Machine::wait_for_from`] waits for the rest of a matching line.
const LINE_GRACE: Duration = Duration::from_secs(2);

/// The line of `text` holding `needle` at or after `from`.
pub fn find_line(text: &str, from: usize, needle: &str) -> Option<Found> {
    let tail = text.get(from..)?;
    let at = from + tail.find(needle)?;
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text
        .get(at..)?
        .find('\n')
        .map_or(text.len(), |i| at + i + 1);
    Some(Found {
        line: text.get(start..end)?.trim_end().to_string(),
        end,
    })
}

/// How many serial lines a failure message carries (the whole log is printed too when
/// the test panics, and kept under `$ANCHOR_CACHE/systest/logs`).
const TAIL_LINES: usize = 60;

/// The last [`TAIL_LINES`] lines of `text`, as a block for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(TAIL_LINES);
    let mut out = format!(
        "\n----- serial, last {} of {} lines -----\n",
        lines.len() - skip,
        lines.len()
    );
    for l in lines.iter().skip(skip) {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str("----- end of serial -----");
    out
}

/// A line's text without a leading printk timestamp (`[    3.236016] `).
pub fn strip_timestamp(line: &str) -> &str {
    let t = line.trim_start();
    if let Some(rest) = t.strip_prefix('[') {
        if let Some(close) = rest.find(']') {
            let stamp = rest.get(..close).unwrap_or("");
            if !stamp.is_empty() && stamp.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
                return rest.get(close + 1..).unwrap_or("").trim_start();
            }
        }
    }
    t
}

/// The first complete line at or after `from` that starts with `marker` (after an
/// optional printk timestamp).
pub fn find_marker_line(text: &str, from: usize, marker: &str) -> Option<Found> {
    // Start at the beginning of the line holding `from`.
    let mut start = text.get(..from)?.rfind('\n').map_or(0, |i| i + 1);
    while let Some(nl) = text.get(start..)?.find('\n') {
        let end = start + nl + 1;
        let line = text.get(start..start + nl)?.trim_end();
        if end > from && strip_timestamp(line).starts_with(marker) {
            return Some(Found {
                line: line.to_string(),
                end,
            });
        }
        start = end;
    }
    None
}

/// The printk timestamp of a kernel log line ("[    3.236016] ..."), in seconds.
pub fn kernel_time(line: &str) -> Option<f64> {
    let open = line.find('[')?;
    let close = open + line.get(open..)?.find(']')?;
    line.get(open + 1..close)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_command_line_is_one_line_of_arguments() {
        // The file is read by shell scripts too: one line, words separated by spaces.
        assert!(!BASE_APPEND.is_empty());
        assert!(BASE_APPEND
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' '));
        assert!(BASE_APPEND.split(' ').any(|w| w == "highres=off"));
        assert!(BASE_APPEND.split(' ').any(|w| w == "no_timer_check"));
    }

    #[test]
    fn qemu_args_follow_the_options() {
        let o = Options::new("t", "/k".into(), "/i".into())
            .append("a=1")
            .append("b=2")
            .watchdog()
            .tpm();
        let o = o.disk("/d.img".into()).framebuffer().arg("-s");
        let a = o.qemu_args(Path::new("/w"));
        let joined = a.join(" ");
        assert!(joined.starts_with("-M q35 -accel tcg -cpu max"));
        assert!(joined.contains("-kernel /k -initrd /i"));
        let append = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(a[append + 1], format!("{BASE_APPEND} a=1 b=2"));
        for part in [
            "-qmp unix:/w/qmp.sock,server=on,wait=off",
            "-no-reboot",
            "-device i6300esb",
            "-device tpm-tis,tpmdev=tpm0",
            "file=/d.img,if=none,id=disk0,format=raw -device virtio-blk-pci,drive=disk0",
            "-device VGA",
        ] {
            assert!(joined.contains(part), "{part} missing from {joined}");
        }
        assert_eq!(a.last().unwrap(), "-s");
        let u = Options::uefi(
            "u",
            Uefi {
                code: "/c.fd".into(),
                vars: "/v.fd".into(),
                secure: true,
                disk: "/esp.img".into(),
            },
        )
        .tpm_state("/t".into());
        let joined = u.qemu_args(Path::new("/w")).join(" ");
        assert!(
            joined.starts_with("-M q35,smm=on -accel tcg -cpu max"),
            "{joined}"
        );
        assert!(
            !joined.contains("-kernel") && !joined.contains("-append"),
            "{joined}"
        );
        for part in [
            "-global driver=cfi.pflash01,property=secure,value=on",
            "-drive if=pflash,format=raw,unit=0,readonly=on,file=/c.fd",
            "-drive if=pflash,format=raw,unit=1,file=/v.fd",
            "file=/esp.img,if=none,id=esp,format=raw -device virtio-blk-pci,drive=esp,bootindex=0",
            "-device tpm-tis,tpmdev=tpm0",
        ] {
            assert!(joined.contains(part), "{part} missing from {joined}");
        }
        assert!(!Options::new("t", "/k".into(), "/i".into())
            .allow_reboot()
            .qemu_args(Path::new("/w"))
            .contains(&"-no-reboot".to_string()));
    }

    #[test]
    fn arm64_options_start_the_virt_machine_at_el2() {
        let o = Options::arm64("a", "/k".into(), "/i".into()).append("kvm-arm.mode=protected");
        assert_eq!(o.qemu_binary(), "qemu-system-aarch64");
        let joined = o.qemu_args(Path::new("/w")).join(" ");
        assert!(
            joined.starts_with(
                "-M virt,virtualization=on,gic-version=3 -accel tcg -cpu max,pauth-impdef=on"
            ),
            "{joined}"
        );
        assert_eq!(
            o.cmdline(),
            format!("{BASE_APPEND_ARM64} kvm-arm.mode=protected")
        );
        // The x86_64 default is untouched.
        let x = Options::new("x", "/k".into(), "/i".into());
        assert_eq!(
            (x.arch, x.qemu_binary()),
            (Arch::X86_64, "qemu-system-x86_64")
        );
    }

    #[test]
    fn find_line_returns_the_whole_line_and_where_it_ends() {
        let text = "[ 1.0] boot\n[ 3.5] bay0: ready\nmore";
        let f = find_line(text, 0, "bay0: ready").unwrap();
        assert_eq!(f.line, "[ 3.5] bay0: ready");
        assert_eq!(&text[f.end..], "more");
        assert!(find_line(text, f.end, "ready").is_none());
        assert_eq!(find_line(text, 0, "more").unwrap().end, text.len());
    }

    #[test]
    fn a_marker_is_a_whole_line_that_starts_with_it() {
        let text = "[ 1.0] boot\n[    3.5] bay0: ready\nanchor-agent: anchor-agent: vsock echo \
                    listening on port 5000\nroom base ready (uptime 3.06 s)\nanchor-agent: room";
        let f = find_marker_line(text, 0, "bay0: ready").unwrap();
        assert_eq!(f.line, "[    3.5] bay0: ready");
        // A torn marker (its parts on two lines) is not the marker.
        assert!(find_marker_line(text, 0, "anchor-agent: room base ready").is_none());
        assert!(find_marker_line(text, 0, "room base ready").is_some());
        // Buried inside another line is not the marker either.
        assert!(find_marker_line(text, 0, "vsock echo").is_none());
        // A line that has not ended yet is not a marker.
        assert!(find_marker_line(text, 0, "anchor-agent: room").is_none());
        // `from` inside a line still considers that line; earlier lines are skipped.
        assert!(find_marker_line(text, 14, "bay0: ready").is_some());
        assert!(find_marker_line(text, f.end, "bay0: ready").is_none());
    }

    #[test]
    fn timestamps_are_stripped_but_other_brackets_stay() {
        assert_eq!(strip_timestamp("[    3.236016] bay0: ready"), "bay0: ready");
        assert_eq!(strip_timestamp("[work] x"), "[work] x");
        assert_eq!(strip_timestamp("plain"), "plain");
    }

    #[test]
    fn failure_messages_carry_the_end_of_the_serial_log() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.contains("last 60 of 100 lines"));
        assert!(t.contains("line 99\n") && t.contains("line 40\n") && !t.contains("line 39\n"));
    }

    #[test]
    fn kernel_time_parses_printk_stamps() {
        assert_eq!(
            kernel_time("[    3.236016] Run /init as init process"),
            Some(3.236016)
        );
        assert_eq!(kernel_time("bay0: starting"), None);
    }

    #[test]
    fn missing_artifacts_say_what_to_do() {
        let e = artifact(
            "ANCHOR_TEST_NO_SUCH_VAR",
            "/nonexistent/k".into(),
            "host kernel",
            "build it",
        )
        .unwrap_err();
        assert_eq!(
            e.0,
            "host kernel not found at /nonexistent/k (set ANCHOR_TEST_NO_SUCH_VAR, or build it)"
        );
    }
}
