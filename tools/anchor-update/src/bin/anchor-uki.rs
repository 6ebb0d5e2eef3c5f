// SPDX-License-Identifier: GPL-3.0-or-later
//! anchor-uki: build-time helper of uki/build.sh (runs on the build machine, never on the
//! device): make an assembled UKI reproducible, predict its PCR 11, write the PolicyPCR
//! digest to be signed, wrap the signature as `.pcrsig` JSON, verify a signed UKI, check
//! the os-release that becomes its `.osrel`.

use anchor_update::{esp, osrel, pcr, pe, verify};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// UKI build helper (docs/SIGNING.md).
///
/// Exit status: 0 success, 1 failure (the message says which file), 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "anchor-uki", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Zero the PE timestamp and fix the checksum, in place (objcopy stamps the time).
    Finalize {
        /// The assembled UKI (rewritten in place).
        uki: PathBuf,
    },
    /// Print the PCR 11 events systemd-stub will log for UKI and the resulting PCR 11
    /// (`pcr11 HEX`) and PolicyPCR digest (`policy HEX`).
    Pcr11 {
        /// The UKI.
        uki: PathBuf,
    },
    /// Write the 32-byte PolicyPCR digest for UKI's PCR 11 to OUT (what the PCR key signs).
    Policy {
        /// The UKI.
        uki: PathBuf,
        /// Where to write the digest.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the `.pcrsig` JSON for a policy digest file, its signature and the public key.
    Pcrsig {
        /// The 32-byte PolicyPCR digest (written by `anchor-uki policy`).
        #[arg(long)]
        policy: PathBuf,
        /// RSA PKCS#1 v1.5 signature over SHA-256(policy) (openssl dgst -sha256 -sign).
        #[arg(long)]
        signature: PathBuf,
        /// The PCR public key (PEM), also the UKI's `.pcrpkey`.
        #[arg(long)]
        pubkey: PathBuf,
    },
    /// Verify UKI's Authenticode signature against a DER certificate (as anchor-update
    /// does before writing a slot).
    Verify {
        /// The signed UKI.
        uki: PathBuf,
        /// The certificate it must be signed with (DER).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Check an os-release file before it becomes a UKI's `.osrel`: every value reads
    /// the same to systemd-boot and to a shell (bare, or in plain double quotes; each key
    /// once), and it names an Anchor OS version; print that version.
    CheckOsrel {
        /// The os-release file.
        file: PathBuf,
    },
    /// Print the IMAGE_VERSION of UKI's `.osrel`.
    Version {
        /// The UKI.
        uki: PathBuf,
    },
}

/// A regular file of at most an image's size (a FIFO or a device is refused, not read).
fn read(p: &Path) -> Result<Vec<u8>, String> {
    esp::read_regular(p, anchor_update::apply::MAX_IMAGE)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// Replace the file at `path` with `bytes`, whole or not at all: a write cut short (a full
/// disk, a kill) must not leave half a UKI where the whole one was. The bytes go to a
/// sibling temporary file (same permissions), synced, then renamed over `path`, and the
/// directory synced. The temporary file is always a new one: whatever is under its name
/// (a leftover of a killed run, a symlink planted there) is removed, never written
/// through.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let perms = std::fs::metadata(path)?.permissions();
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".finalize");
    let temp = path.with_file_name(name);
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        f.set_permissions(perms)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&temp, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

fn run(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Finalize { uki } => {
            let mut img = read(&uki)?;
            pe::finalize(&mut img).map_err(|e| format!("{}: {e}", uki.display()))?;
            replace(&uki, &img).map_err(|e| format!("{}: {e}", uki.display()))
        }
        Command::Pcr11 { uki } => {
            let img = read(&uki)?;
            let secs = pe::sections(&img).map_err(|e| format!("{}: {e}", uki.display()))?;
            let events = pcr::events(secs.iter().map(|s| (s.name.as_str(), &*s.data)));
            for e in &events {
                println!("event {} {}", pcr::hex(&e.digest), e.what);
            }
            let value = pcr::replay(&events);
            println!("pcr11 {}", pcr::hex(&value));
            println!("policy {}", pcr::hex(&pcr::policy_digest(&value)));
            Ok(())
        }
        Command::Policy { uki, out } => {
            let img = read(&uki)?;
            let secs = pe::sections(&img).map_err(|e| format!("{}: {e}", uki.display()))?;
            let events = pcr::events(secs.iter().map(|s| (s.name.as_str(), &*s.data)));
            let policy = pcr::policy_digest(&pcr::replay(&events));
            std::fs::write(&out, policy).map_err(|e| format!("{}: {e}", out.display()))
        }
        Command::Pcrsig {
            policy,
            signature,
            pubkey,
        } => {
            let pol: [u8; 32] = read(&policy)?
                .try_into()
                .map_err(|_| format!("{}: not 32 bytes", policy.display()))?;
            let sig = read(&signature)?;
            let pem = String::from_utf8(read(&pubkey)?)
                .map_err(|_| format!("{}: not text", pubkey.display()))?;
            let json = pcr::pcrsig_json(&pem, &pol, &sig).map_err(|e| e.to_string())?;
            println!("{json}");
            Ok(())
        }
        Command::Verify { uki, cert } => {
            let trust = verify::Trust::from_der(&read(&cert)?)
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            verify::verify(&read(&uki)?, &trust).map_err(|e| format!("{}: {e}", uki.display()))?;
            println!("{}: signed by {}", uki.display(), cert.display());
            Ok(())
        }
        Command::CheckOsrel { file } => {
            let raw = esp::read_regular(&file, pe::MAX_SECTION as u64)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let at = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
            osrel::check_plain(&raw).map_err(|e| at(&e))?;
            println!("{}", osrel::anchor_version(&raw).map_err(|e| at(&e))?);
            Ok(())
        }
        Command::Version { uki } => {
            let v =
                esp::image_version(&read(&uki)?).map_err(|e| format!("{}: {e}", uki.display()))?;
            println!("{v}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anchor-uki: {e}");
            ExitCode::from(1)
        }
    }
}
