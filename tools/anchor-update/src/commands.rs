// SPDX-License-Identifier: GPL-3.0-or-later
//! The commands shared by `anchor-update` (on the device) and `anchorctl update`: where
//! the ESP is (this machine's, mounted privately, or a directory given with `--esp`), and
//! status / apply / bless on it. Output is whole lines, each written with one write(2).

use crate::apply::{self, Applied, ApplyError, Observer, Running, Step};
use crate::bless::{self, BlessError, Blessed};
use crate::device::{self, Device, DeviceError};
use crate::esp::{Esp, EspError};
use crate::pcr;
use crate::slots::Slot;
use crate::verify::{Trust, VerifyError};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which ESP and what we know about the running system.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A directory holding an ESP (offline use); None: this machine's ESP.
    pub esp: Option<PathBuf>,
    /// Override (or, offline, declare) the running slot.
    pub running: Option<Slot>,
    /// The certificate updates must be signed with; default: the base's own db
    /// certificate ([`device::DB_CERT`]).
    pub cert: Option<PathBuf>,
}

/// A command that failed.
#[derive(Debug)]
pub enum CmdError {
    Device(DeviceError),
    Esp(EspError),
    Apply(ApplyError),
    /// The update file itself was refused (signature, version, size, architecture): the
    /// line names it.
    Refused {
        file: String,
        err: ApplyError,
    },
    Bless(BlessError),
    Cert {
        path: PathBuf,
        err: String,
    },
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Device(e) => write!(f, "{e}"),
            CmdError::Esp(e) => write!(f, "{e}"),
            CmdError::Apply(e) => write!(f, "{e}"),
            CmdError::Refused { file, err } => write!(f, "{err} ({file})"),
            CmdError::Bless(e) => write!(f, "{e}"),
            CmdError::Cert { path, err } => {
                write!(f, "trusted certificate {}: {err}", path.display())
            }
        }
    }
}

impl std::error::Error for CmdError {}

/// Write one whole line (prefix + text) with a single write.
pub fn say(out: &mut dyn Write, prefix: &str, text: &str) {
    let mut line = String::with_capacity(prefix.len() + text.len() + 1);
    line.push_str(prefix);
    line.push_str(text);
    line.push('\n');
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// An opened target: the ESP directory and the running system.
#[derive(Debug)]
pub struct Opened {
    pub esp: Esp,
    pub running: Running,
    pub device: Option<Device>,
}

/// Open the ESP: the given directory, or this machine's (private mount).
pub fn open(target: &Target) -> Result<Opened, CmdError> {
    match &target.esp {
        Some(dir) => Ok(Opened {
            esp: Esp::new(esp_dir(dir)?),
            running: Running {
                slot: target.running,
                version: None,
            },
            device: None,
        }),
        None => {
            let dev = device::open().map_err(CmdError::Device)?;
            let running = Running {
                slot: target.running.or(dev.info.booted.map(|e| e.slot)),
                version: device::running_version(),
            };
            Ok(Opened {
                esp: dev.esp.clone(),
                running,
                device: Some(dev),
            })
        }
    }
}

/// A `--esp DIR` must be an existing directory: a mistyped one would otherwise read as an
/// ESP without slots ("nothing to boot") and exit 0.
fn esp_dir(dir: &Path) -> Result<&Path, CmdError> {
    let esp_err = |err| {
        CmdError::Esp(EspError::Io {
            op: "--esp",
            path: dir.to_path_buf(),
            err,
        })
    };
    let meta = std::fs::metadata(dir).map_err(esp_err)?;
    if !meta.is_dir() {
        return Err(esp_err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    Ok(dir)
}

/// Read the trusted certificate.
pub fn trust(target: &Target) -> Result<Trust, CmdError> {
    let path = target
        .cert
        .clone()
        .unwrap_or_else(|| PathBuf::from(device::DB_CERT));
    // A certificate is a few KiB; a FIFO or a device named by --cert is refused.
    let der = crate::esp::read_regular(&path, 1 << 20).map_err(|e| CmdError::Cert {
        path: path.clone(),
        err: e.to_string(),
    })?;
    Trust::from_der(&der).map_err(|e: VerifyError| CmdError::Cert {
        path,
        err: e.to_string(),
    })
}

/// `status`.
pub fn status(target: &Target, out: &mut dyn Write, prefix: &str) -> Result<(), CmdError> {
    let opened = open(target)?;
    if let Some(v) = &opened.running.version {
        say(out, prefix, &format!("running base: version {v}"));
    }
    let report = crate::status::report(&opened.esp, opened.running.slot).map_err(CmdError::Esp)?;
    for line in report.lines() {
        say(out, prefix, line);
    }
    Ok(())
}

/// Progress lines for `apply`; test builds can stop after a named step.
pub struct Progress<'a> {
    pub out: &'a mut dyn Write,
    pub prefix: &'a str,
    /// Test builds only: stop (wait to be killed) after this step.
    pub stop_after: Option<Step>,
}

impl fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Progress(stop_after: {:?})", self.stop_after)
    }
}

impl Observer for Progress<'_> {
    fn after(&mut self, step: Step, what: &str) {
        say(
            self.out,
            self.prefix,
            &format!("apply: {}: {what}", step.name()),
        );
        #[cfg(feature = "test-hooks")]
        if self.stop_after == Some(step) {
            say(
                self.out,
                self.prefix,
                &format!("test hook: stopped after {}", step.name()),
            );
            crate::sys::pause_forever();
        }
    }
}

/// `apply FILE`.
pub fn apply(
    target: &Target,
    file: &str,
    tries: u32,
    progress: &mut Progress<'_>,
) -> Result<Applied, CmdError> {
    let trust = trust(target)?;
    let opened = open(target)?;
    let applied = apply::apply(&opened.esp, file, &trust, &opened.running, tries, progress)
        .map_err(|err| match err {
            ApplyError::TooBig(_)
            | ApplyError::Untrusted(_)
            | ApplyError::NoVersion(_)
            | ApplyError::Downgrade { .. }
            | ApplyError::WrongMachine { .. } => CmdError::Refused {
                file: file.to_string(),
                err,
            },
            other => CmdError::Apply(other),
        })?;
    if let Some(dev) = opened.device {
        dev.close().map_err(|e| {
            CmdError::Esp(EspError::Io {
                op: "unmount",
                path: PathBuf::from("ESP"),
                err: e,
            })
        })?;
    }
    Ok(applied)
}

/// The boot-time check on the device: report the boot, bless the slot when `health` is
/// Ok, print the recovery message when no slot is left. Returns false when not blessed.
pub fn bless_boot(
    opened: &Opened,
    health: Result<(), String>,
    out: &mut dyn Write,
    prefix: &str,
) -> Result<bool, CmdError> {
    let info = opened
        .device
        .as_ref()
        .map(|d| d.info.clone())
        .unwrap_or_default();
    let Some(booted) = info.booted else {
        say(
            out,
            prefix,
            "not booted from an Anchor OS slot (no systemd-boot loader variables): nothing to bless",
        );
        return Ok(true);
    };
    let version = opened
        .running
        .version
        .as_ref()
        .map_or_else(|| "unknown".to_string(), ToString::to_string);
    say(
        out,
        prefix,
        &format!(
            "booted slot {} (version {version}, entry {})",
            booted.slot,
            info.count_path.or(info.selected).unwrap_or_default()
        ),
    );
    let blessed = match bless::bless(&opened.esp, booted, health).map_err(CmdError::Bless)? {
        Ok(Blessed::AlreadyGood(s)) => {
            say(out, prefix, &format!("slot {s} is good (blessed earlier)"));
            true
        }
        Ok(Blessed::Blessed { slot, from }) => {
            say(
                out,
                prefix,
                &format!(
                    "slot {slot} passed its health check: blessed ({from} -> anchor-{slot}.efi)"
                ),
            );
            true
        }
        Ok(Blessed::NotBlessed {
            slot,
            left,
            fallback,
            reason,
        }) => {
            let then = match fallback {
                Some(f) => format!("then slot {f} boots"),
                None => "then no slot is left".to_string(),
            };
            say(
                out,
                prefix,
                &format!("slot {slot} NOT blessed: {reason}; {left} tries left, {then}"),
            );
            false
        }
        Err(recovery) => {
            say(out, prefix, &recovery.to_string());
            false
        }
    };
    let report = crate::status::report(&opened.esp, Some(booted.slot)).map_err(CmdError::Esp)?;
    for line in report.lines() {
        say(out, prefix, &format!("status: {line}"));
    }
    Ok(blessed)
}

/// Report PCR 11 and whether the UKI's signed policy (handed to the initrd by systemd-stub
/// as /.extra/tpm2-pcr-signature.json) covers it: the fact the vault's unlock relies on.
pub fn report_pcr11(out: &mut dyn Write, prefix: &str) {
    let pcr = std::fs::read_to_string("/sys/class/tpm/tpm0/pcr-sha256/11")
        .ok()
        .and_then(|t| pcr::unhex32(&t, "PCR 11").ok());
    let Some(pcr) = pcr else {
        say(
            out,
            prefix,
            "pcr11: no TPM (or no SHA-256 bank): not measured",
        );
        return;
    };
    say(out, prefix, &format!("pcr11: sha256 {}", pcr::hex(&pcr)));
    let sig = Path::new("/.extra/tpm2-pcr-signature.json");
    let policies = std::fs::read_to_string(sig)
        .map_err(|e| e.to_string())
        .and_then(|j| pcr::parse_pcrsig(&j).map_err(|e| e.to_string()));
    match policies {
        Ok(list) => {
            let want = pcr::policy_digest(&pcr);
            let covered = list.iter().any(|p| p.pcrs == [11] && p.policy == want);
            say(
                out,
                prefix,
                &format!(
                    "pcr11: signed policy {}: {}",
                    sig.display(),
                    if covered {
                        "covers this PCR 11 (the vault can unlock)"
                    } else {
                        "does NOT cover this PCR 11"
                    }
                ),
            );
        }
        Err(e) => say(
            out,
            prefix,
            &format!("pcr11: no signed policy ({}: {e})", sig.display()),
        ),
    }
}
