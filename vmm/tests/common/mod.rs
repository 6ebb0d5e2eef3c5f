// SPDX-License-Identifier: GPL-3.0-or-later
//! Hostile-guest test support: the script interpreter guest (tests/common/guest.S,
//! assembled and linked with binutils at test time) and a runner for anchor-vmm.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod virtio;

pub const OP_END: u32 = 0;
pub const OP_WRITE: u32 = 1;
pub const OP_READ: u32 = 2;
pub const OP_OUTB: u32 = 3;
pub const OP_INB: u32 = 4;
pub const OP_PRINT: u32 = 5;
pub const OP_REPEAT: u32 = 6;
pub const OP_TRIPLE: u32 = 7;
pub const OP_HLT: u32 = 8;
pub const OP_POLL: u32 = 9;
pub const OP_CALL: u32 = 10;
pub const OP_POLL_BITS: u32 = 11;

/// Scratch guest RAM scripts may use freely.
pub const SCRATCH_START: u64 = 0x0020_0000;
pub const SCRATCH_END: u64 = 0x0080_0000;

/// A script for the interpreter guest: 24-byte records {op, size, addr, val}.
#[derive(Debug, Clone, Default)]
pub struct Script {
    bytes: Vec<u8>,
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a raw record (also usable for invalid ops).
    pub fn op(&mut self, op: u32, size: u32, addr: u64, val: u64) -> &mut Self {
        self.bytes.extend_from_slice(&op.to_le_bytes());
        self.bytes.extend_from_slice(&size.to_le_bytes());
        self.bytes.extend_from_slice(&addr.to_le_bytes());
        self.bytes.extend_from_slice(&val.to_le_bytes());
        self
    }

    pub fn write(&mut self, addr: u64, size: u32, val: u64) -> &mut Self {
        assert!(matches!(size, 1 | 2 | 4 | 8), "bad write size {size}");
        self.op(OP_WRITE, size, addr, val)
    }

    pub fn read(&mut self, addr: u64, size: u32) -> &mut Self {
        assert!(matches!(size, 1 | 2 | 4 | 8), "bad read size {size}");
        self.op(OP_READ, size, addr, 0)
    }

    pub fn outb(&mut self, port: u16, val: u8) -> &mut Self {
        self.op(OP_OUTB, 1, u64::from(port), u64::from(val))
    }

    pub fn inb(&mut self, port: u16) -> &mut Self {
        self.op(OP_INB, 1, u64::from(port), 0)
    }

    /// Prints `tag` (<= 8 ASCII bytes) followed by a newline.
    pub fn print(&mut self, tag: &str) -> &mut Self {
        assert!(
            tag.len() <= 8 && tag.is_ascii(),
            "tag must be <= 8 ASCII bytes"
        );
        let mut b = [0u8; 8];
        b[..tag.len()].copy_from_slice(tag.as_bytes());
        self.op(OP_PRINT, 0, 0, u64::from_le_bytes(b))
    }

    /// Executes the next `n_ops` ops `times` times (no nesting).
    pub fn repeat(&mut self, times: u64, n_ops: u32) -> &mut Self {
        self.op(OP_REPEAT, n_ops, 0, times)
    }

    pub fn poll(&mut self, addr: u64, size: u32, val: u64) -> &mut Self {
        assert!(matches!(size, 1 | 2 | 4 | 8), "bad poll size {size}");
        self.op(OP_POLL, size, addr, val)
    }

    /// Waits (at most 1e6 reads) until every bit of `bits` is set in the value at `addr`;
    /// prints "P ok" or "P timeout".
    pub fn poll_bits(&mut self, addr: u64, size: u32, bits: u64) -> &mut Self {
        assert!(matches!(size, 1 | 2 | 4 | 8), "bad poll size {size}");
        self.op(OP_POLL_BITS, size, addr, bits)
    }

    /// Copies `code` to `addr` (scratch RAM), eight bytes per write.
    pub fn code(&mut self, addr: u64, code: &[u8]) -> &mut Self {
        for (i, chunk) in code.chunks(8).enumerate() {
            let mut b = [0x90u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write(addr + 8 * i as u64, 8, u64::from_le_bytes(b));
        }
        self
    }

    /// Calls the code at `addr` with rbp = `val`; it must end with `ret`.
    pub fn call(&mut self, addr: u64, val: u64) -> &mut Self {
        self.op(OP_CALL, 0, addr, val)
    }

    pub fn triple_fault(&mut self) -> &mut Self {
        self.op(OP_TRIPLE, 0, 0, 0)
    }

    pub fn hlt(&mut self) -> &mut Self {
        self.op(OP_HLT, 0, 0, 0)
    }

    pub fn end(&mut self) -> &mut Self {
        self.op(OP_END, 0, 0, 0)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What a run of anchor-vmm looked like from the outside.
#[derive(Clone)]
pub struct Outcome {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub serial: String,
    pub stderr: String,
    pub peak_rss_kib: u64,
    pub elapsed: Duration,
    /// User + system CPU time of the VMM process (from wait4).
    pub cpu_time: Duration,
}

fn clip(s: &str) -> String {
    const MAX: usize = 2000;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... [{} bytes total]", &s[..cut], s.len())
}

// Debug output clips serial/stderr so a flood test's failure stays readable.
impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("exit_code", &self.exit_code)
            .field("signal", &self.signal)
            .field("timed_out", &self.timed_out)
            .field("serial", &clip(&self.serial))
            .field("stderr", &clip(&self.stderr))
            .field("peak_rss_kib", &self.peak_rss_kib)
            .field("elapsed", &self.elapsed)
            .field("cpu_time", &self.cpu_time)
            .finish()
    }
}

pub fn virtio_base(index: u64) -> u64 {
    0xd000_0000 + index * 0x1000
}

/// Boot timer MMIO base.
pub const BOOT_TIMER_BASE: u64 = 0xc000_0000;

/// Fails with a clear message when /dev/kvm is unusable (never skips).
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!("these tests need read/write access to /dev/kvm (run as root on a KVM host): {e}");
    }
}

fn scratch_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("anchor-vmm-tests");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tool(name: &str) -> Command {
    Command::new(name)
}

/// Assembles and links the interpreter guest once per test binary.
pub fn guest_elf() -> &'static Path {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(|| build_guest("guest", "test guest"))
}

/// Assembles and links the PVH guest (tests/common/pvh_guest.S) once.
pub fn pvh_guest_elf() -> &'static Path {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(|| build_guest("pvh_guest", "PVH guest"))
}

/// Assembles tests/common/`name`.S and links it at 0x100000 with binutils; returns the ELF.
fn build_guest(name: &str, what: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/common/{name}.S"));
    let dir = scratch_dir();
    let pid = std::process::id();
    let obj = dir.join(format!("{name}-{pid}.o"));
    let elf = dir.join(format!("{name}-{pid}.elf"));
    let st = tool("as")
        .args(["--64", "-o"])
        .arg(&obj)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| {
            panic!("binutils `as` is needed to build the {what} (apt install binutils): {e}")
        });
    assert!(st.success(), "assembling {} failed", src.display());
    let st = tool("ld")
        .args([
            "-Ttext",
            "0x100000",
            "-e",
            "_start",
            "-static",
            "-nostdlib",
            "-o",
        ])
        .arg(&elf)
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("binutils `ld` is needed to build the {what}: {e}"));
    assert!(st.success(), "linking the {what} failed");
    elf
}

/// A pipe of one page (4 KiB): (read end, write end).
pub fn one_page_pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fds[0] was just made by pipe2 and nothing else owns it.
    let rd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above, for fds[1].
    let wr = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[1]) };
    // SAFETY: F_SETPIPE_SZ on our own pipe; it takes an int and touches no memory.
    assert!(unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) } >= 4096);
    (std::fs::File::from(rd), std::fs::File::from(wr))
}

/// Assembles a 64-bit snippet (AT&T syntax) with binutils; returns its bytes.
pub fn assemble(src: &str) -> Vec<u8> {
    let dir = scratch_dir();
    let base = unique("snippet");
    let s = base.with_extension("S");
    let obj = base.with_extension("o");
    let bin = base.with_extension("bin");
    std::fs::write(&s, format!("\t.code64\n\t.text\n{src}\n")).unwrap();
    let st = tool("as")
        .args(["--64", "-o"])
        .arg(&obj)
        .arg(&s)
        .status()
        .unwrap();
    assert!(st.success(), "assembling {src:?} failed");
    let st = tool("objcopy")
        .args(["-O", "binary", "-j", ".text"])
        .arg(&obj)
        .arg(&bin)
        .status()
        .unwrap();
    assert!(st.success(), "objcopy of {src:?} failed");
    let out = std::fs::read(&bin).unwrap();
    for p in [s, obj, bin] {
        let _ = std::fs::remove_file(p);
    }
    let _ = dir;
    out
}

/// The anchor-vmm binary under test: cargo's build for this test, or the
/// binary named by ANCHOR_VMM_BIN (e.g. the static release build).
pub fn vmm_bin() -> PathBuf {
    match std::env::var_os("ANCHOR_VMM_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_anchor-vmm")),
    }
}

/// A fresh path in the tests' scratch dir: `<prefix>-<pid>-<n>` (tests run in parallel).
pub fn unique(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    scratch_dir().join(format!("{prefix}-{}-{n}", std::process::id()))
}

/// Peak RSS (VmHWM) of a live process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits for a child, collecting peak RSS while it runs; kills it at `timeout`.
/// Returns (status, timed_out, peak_rss_kib, cpu_time). Peak RSS is the largest VmHWM
/// (the kernel's own high-water mark) sampled every 2 ms from /proc while the
/// child lives. (wait4's ru_maxrss is useless here: exec folds the spawning
/// test process's RSS into it.)
pub fn wait_bounded(
    child: &mut std::process::Child,
    timeout: Duration,
) -> (std::process::ExitStatus, bool, u64, Duration) {
    let start = Instant::now();
    let pid = child.id() as libc::pid_t;
    let mut timed_out = false;
    let mut peak = 0u64;
    loop {
        if let Some(k) = vm_hwm_kib(child.id()) {
            peak = peak.max(k);
        }
        let mut status: i32 = 0;
        // SAFETY: rusage is plain old data; all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            use std::os::unix::process::ExitStatusExt;
            let tv = |t: libc::timeval| {
                Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000)
            };
            let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
            return (
                std::process::ExitStatus::from_raw(status),
                timed_out,
                peak,
                cpu,
            );
        }
        if !timed_out && start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Spawns anchor-vmm with `args`, serial to a file; see `run_script`.
pub fn run_vmm(args: &[&str], timeout: Duration) -> Outcome {
    run_vmm_with(&vmm_bin(), args, timeout)
}

/// Like `run_vmm` with an explicit binary.
pub fn run_vmm_with(bin: &Path, args: &[&str], timeout: Duration) -> Outcome {
    let serial_path = unique("serial");
    let serial_arg = format!("file:{}", serial_path.display());
    let has_serial = args.contains(&"--serial");
    let start = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args(args);
    if !has_serial {
        cmd.args(["--serial", &serial_arg]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning anchor-vmm");
    let mut err_pipe = child.stderr.take().unwrap();
    // Read stderr on a thread so a chatty VMM cannot block on a full pipe.
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = (&mut err_pipe).take(1 << 20).read_to_end(&mut v);
        v
    });
    let (status, timed_out, peak_rss_kib, cpu_time) = wait_bounded(&mut child, timeout);
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    let serial = std::fs::read(&serial_path)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&serial_path);
    use std::os::unix::process::ExitStatusExt;
    Outcome {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        serial,
        stderr,
        peak_rss_kib,
        elapsed,
        cpu_time,
    }
}

/// Runs anchor-vmm with the interpreter guest, the script as --initrd,
/// --mem-mib 32 (unless extra_args has --mem-mib), serial to a file, plus `extra_args`. Kills it after `timeout`.
pub fn run_script(script: &Script, extra_args: &[&str], timeout: Duration) -> Outcome {
    require_kvm();
    let script_path = unique("script");
    std::fs::write(&script_path, script.bytes()).unwrap();
    let kernel = guest_elf().to_str().unwrap().to_owned();
    let initrd = script_path.to_str().unwrap().to_owned();
    let mut args: Vec<&str> = vec!["--kernel", &kernel, "--initrd", &initrd];
    if !extra_args.contains(&"--mem-mib") {
        args.extend_from_slice(&["--mem-mib", "32"]);
    }
    args.extend_from_slice(extra_args);
    let out = run_vmm(&args, timeout);
    let _ = std::fs::remove_file(&script_path);
    out
}
