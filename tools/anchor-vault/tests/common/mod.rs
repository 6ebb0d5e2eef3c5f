// SPDX-License-Identifier: GPL-3.0-or-later
//! Shared by anchor-vault's integration tests: a private swtpm per test (one TCP port
//! each; tss-esapi 7 ignores `path=`), vault disk images, and running the binary with
//! what a person would type on its console.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running swtpm with its own state directory.
pub struct Swtpm {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = l.local_addr().unwrap().port();
        drop(l);
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

impl Swtpm {
    /// Start a fresh TPM 2.0 simulator (fails with a clear message if swtpm is missing).
    pub fn start() -> Swtpm {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port_pair();
            let child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", dir.path().display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start swtpm (apt-get install swtpm; scripts/setup.sh)");
            let mut tpm = Swtpm { child, port, dir };
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // The probe connection is closed at once; swtpm accepts the next.
                    return tpm;
                }
                if tpm.child.try_wait().unwrap().is_some() {
                    break; // lost the port race: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = tpm.child.kill();
        }
        panic!("swtpm did not start listening");
    }

    /// The TCTI string for this TPM.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Run a tpm2-tools command against this TPM.
    pub fn tool(&self, args: &[&str]) -> Output {
        let out = Command::new(args[0])
            .args(&args[1..])
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none")
            .output()
            .expect("run tpm2-tools (apt-get install tpm2-tools)");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Reboot the machine around the TPM (PCRs back to zero): TPM2_Shutdown(CLEAR) as
    /// the kernel sends at reboot, power off and on through swtpm's control channel,
    /// then TPM2_Startup(CLEAR) as firmware does. (Without the orderly shutdown the TPM
    /// counts a dictionary-attack failure at startup once DA-protected objects were used.)
    pub fn power_cycle(&self) {
        self.tool(&["tpm2_shutdown", "-c"]);
        let out = Command::new("swtpm_ioctl")
            .args(["--tcp", &format!("127.0.0.1:{}", self.port + 1), "-i"])
            .output()
            .expect("run swtpm_ioctl (apt-get install swtpm-tools)");
        assert!(
            out.status.success(),
            "swtpm_ioctl -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.tool(&["tpm2_startup", "-c"]);
    }

    /// Extend PCR `pcr` with `digest` (64 hex digits).
    pub fn extend_pcr_with(&self, pcr: u8, digest: &str) {
        self.tool(&["tpm2_pcrextend", &format!("{pcr}:sha256={digest}")]);
    }

    /// Extend PCR `pcr` with a digest of ones.
    pub fn extend_pcr(&self, pcr: u8) {
        self.tool(&[
            "tpm2_pcrextend",
            &format!("{pcr}:sha256={}", "01".repeat(32)),
        ]);
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TPM that is there but does no work: every command is answered with TPM_RC_FAILURE,
/// as a TPM in failure mode answers (it connects; only a self-test can bring it back).
/// Speaks swtpm's two TCP channels: commands on `port`, control on `port + 1`.
pub struct FailingTpm {
    pub port: u16,
}

/// Listeners on two adjacent loopback ports, as swtpm's TCTI wants them: commands on the
/// first, control on the next.
pub fn swtpm_port_pair() -> (TcpListener, TcpListener) {
    loop {
        let cmd = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = cmd.local_addr().unwrap().port();
        if let Ok(ctrl) = TcpListener::bind(("127.0.0.1", port.wrapping_add(1))) {
            return (cmd, ctrl);
        }
    }
}

impl FailingTpm {
    pub fn start() -> FailingTpm {
        let (cmd, ctrl) = swtpm_port_pair();
        let port = cmd.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in ctrl.incoming().flatten() {
                std::thread::spawn(move || failing_control(c));
            }
        });
        std::thread::spawn(move || {
            for c in cmd.incoming().flatten() {
                std::thread::spawn(move || failing_commands(c));
            }
        });
        FailingTpm { port }
    }

    /// The TCTI string for this TPM.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

/// Control channel: every request is acknowledged (a 4-byte zero result).
fn failing_control(mut c: std::net::TcpStream) {
    use std::io::Read;
    let mut buf = [0u8; 256];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 || c.write_all(&[0; 4]).is_err() {
            return;
        }
    }
}

/// Command channel: read each command (10-byte header, its size, the rest) and answer
/// TPM_ST_NO_SESSIONS, 10 bytes, TPM_RC_FAILURE.
fn failing_commands(mut c: std::net::TcpStream) {
    use std::io::Read;
    loop {
        let mut head = [0u8; 10];
        if c.read_exact(&mut head).is_err() {
            return;
        }
        let size = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        let mut rest = vec![0u8; size.saturating_sub(10)];
        if c.read_exact(&mut rest).is_err() {
            return;
        }
        let reply = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01];
        if c.write_all(&reply).is_err() {
            return;
        }
    }
}

/// A sparse disk image of `mib` MiB in `dir`.
pub fn disk(dir: &Path, mib: u64) -> PathBuf {
    let p = dir.join("vault.img");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(mib << 20).unwrap();
    p
}

/// The result of one anchor-vault run.
pub struct Run {
    pub code: Option<i32>,
    pub out: String,
}

impl Run {
    pub fn count(&self, needle: &str) -> usize {
        self.out.matches(needle).count()
    }
}

/// Test cost: 32 MiB, 4 passes, 1 lane.
pub const CHEAP: [&str; 6] = [
    "--argon2-memory-mib",
    "32",
    "--argon2-lanes",
    "1",
    "--argon2-iterations",
    "4",
];

/// A vault on a disk image with its own TPM.
pub struct Fixture {
    pub tpm: Swtpm,
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    pub recovery: String,
}

pub const PASS: &str = "correct horse battery";

/// What the operator types when a vault is made (`init`, `unlock --first-boot`): the
/// passphrase, again to confirm it, then Enter once the recovery key is copied.
pub fn typed_at_creation() -> String {
    format!("{PASS}\n{PASS}\n\n")
}

impl Fixture {
    /// Run anchor-vault with `args` (after the global options) and `stdin`.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        run_with(
            &self.disk,
            Some(&self.tpm.tcti()),
            self.dir.path(),
            args,
            stdin,
        )
    }

    /// A new vault (header + TPM objects, not opened: the host has no dm-crypt).
    pub fn new(max_tries: u32) -> Fixture {
        let tpm = Swtpm::start();
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path(), 40);
        let mut f = Fixture {
            tpm,
            dir,
            disk,
            recovery: String::new(),
        };
        let tries = max_tries.to_string();
        let mut args = vec!["init", "--no-open", "--tpm-max-tries", &tries];
        args.extend_from_slice(&CHEAP);
        let r = f.run(&args, &format!("{PASS}\n{PASS}\n\n"));
        assert_eq!(r.code, Some(0), "{}", r.out);
        f.recovery = recovery_key_of(&r.out);
        f
    }

    pub fn pre_log(&self) -> PathBuf {
        self.dir.path().join("pre.log")
    }
}

/// Run the binary on `disk` with its own pre-unlock log and mount point under `dir`.
pub fn run_with(disk: &Path, tcti: Option<&str>, dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchor-vault"));
    cmd.arg("--disk").arg(disk);
    if let Some(t) = tcti {
        cmd.arg("--tpm").arg(t);
    }
    cmd.arg("--pre-log")
        .arg(dir.join("pre.log"))
        .arg("--mount")
        .arg(dir.join("persist"))
        .arg("--policies")
        .arg(dir.join("policies"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run anchor-vault");
    // The program may exit before reading everything typed (e.g. it refuses the disk
    // first): a closed pipe is its answer, not a test failure.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => panic!("typing into anchor-vault: {e}"),
    }
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Run {
        code: out.status.code(),
        out: text,
    }
}

/// The recovery key printed by `init`.
pub fn recovery_key_of(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("RECOVERY KEY"))
        .expect("init printed a recovery key");
    lines[i + 1].trim().to_owned()
}

/// SHA-256 of a file, for "nothing was changed" checks.
pub fn digest(path: &Path) -> [u8; 32] {
    anchor_audit::chain::digest(&std::fs::read(path).unwrap())
}
