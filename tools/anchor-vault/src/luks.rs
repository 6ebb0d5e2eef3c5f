// SPDX-License-Identifier: GPL-3.0-or-later
//! The LUKS2 side of the vault, on libcryptsetup-rs: format, keyslots, the vault's
//! token, checking and activating, and looking at a disk without changing it.
//!
//! Layout written by [`format`]: LUKS2, aes-xts-plain64 with a 512-bit volume key,
//! 4096-byte sectors, label `anchor-vault` (`anchor-vault-unfinished` until the vault is
//! made: [`UNFINISHED_LABEL`]); keyslot [`TPM_SLOT`] (TPM secret +
//! passphrase) and keyslot [`RECOVERY_SLOT`] (recovery key), both argon2id with the
//! fixed cost [`Argon2Cost`]; a token of type [`TOKEN_TYPE`] describing keyslot 0.

use core::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptDeactivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat, KeyslotInfo};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either,
    LibcryptErr, TokenInput,
};
use serde_json::Value;

/// The keyslot opened by the TPM secret plus the passphrase.
pub const TPM_SLOT: u32 = 0;
/// The keyslot opened by the recovery key.
pub const RECOVERY_SLOT: u32 = 1;
/// The LUKS2 token type naming the TPM keyslot's parameters.
pub const TOKEN_TYPE: &str = "anchor-vault-tpm2";
/// The LUKS2 token type that said a vault's creation was under way before
/// [`UNFINISHED_LABEL`] did (a vault cut short by an older anchor-vault still has it).
pub const UNFINISHED_TYPE: &str = "anchor-vault-unfinished";
/// The LUKS2 label.
pub const LABEL: &str = "anchor-vault";
/// The label [`format`] writes, in the same write as the header: the vault's creation is
/// under way. [`Vault::mark_finished`] makes it [`LABEL`] once the filesystem is made; a
/// vault that still has it never held anything and may be created again.
pub const UNFINISHED_LABEL: &str = "anchor-vault-unfinished";
/// Where the label is in a LUKS2 binary header, and its size.
const LABEL_AT: usize = 24;
const LABEL_LEN: usize = 48;
/// Bytes of the LUKS2 binary header's magic, first copy and second copy.
const MAGIC_1: &[u8; 6] = b"LUKS\xba\xbe";
const MAGIC_2: &[u8; 6] = b"SKUL\xba\xbe";
/// Both copies of the largest LUKS2 header (4 MiB each) lie in a disk's first 8 MiB.
const HEADERS_SPAN: usize = 8 << 20;
/// Where the binary header says its size (each copy's), a big-endian u64.
const HDR_SIZE_AT: usize = 8;
/// Where a second header copy may start (LUKS2 allows these metadata sizes).
const SECOND_OFFSETS: [u64; 7] = [0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000];
/// How much of a disk must be zero for it to count as blank.
pub const BLANK_PROBE: usize = 1 << 20;
/// Where a vault's data area starts (LUKS2's default offset, which [`format`] keeps) and
/// how much of it must be zero too: a vault whose first MiB was wiped still holds its
/// encrypted filesystem there, which a saved header opens again.
pub const DATA_PROBE: (u64, usize) = (16 << 20, 64 << 10);

/// The most argon2id memory libcryptsetup accepts for a keyslot: 4 GiB.
pub const MAX_ARGON2_MIB: u32 = 4096;

/// The argon2id cost of both keyslots (written as chosen: never benchmarked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes (threads).
    pub parallel: u32,
}

impl Argon2Cost {
    /// The product default: 1 GiB, 4 passes, 4 lanes (docs/ARCHITECTURE.md says why).
    pub const DEFAULT: Argon2Cost = Argon2Cost {
        memory_kib: 1 << 20,
        iterations: 4,
        parallel: 4,
    };
}

impl fmt::Display for Argon2Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argon2id, {} MiB, {} iterations, {} lanes",
            self.memory_kib / 1024,
            self.iterations,
            self.parallel
        )
    }
}

/// What a LUKS operation failed with.
#[derive(Debug)]
pub enum LuksError {
    /// Reading or probing the disk.
    Io(PathBuf, std::io::Error),
    /// Both header copies are damaged (LUKS magic present, nothing loads).
    Damaged(PathBuf),
    /// The disk holds no LUKS2 vault.
    NotAVault(PathBuf),
    /// The passphrase or key did not open the keyslot.
    WrongKey,
    /// The vault's token is missing or not understood.
    Token(&'static str),
    /// libcryptsetup failed at `op`.
    Crypt(&'static str, LibcryptErr),
}

impl fmt::Display for LuksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LuksError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            LuksError::Damaged(p) => write!(
                f,
                "{}: both copies of the LUKS2 header are damaged; nothing was changed on \
                 the disk (restore a header backup with `cryptsetup luksHeaderRestore`)",
                p.display()
            ),
            LuksError::NotAVault(p) => write!(f, "{}: holds no LUKS2 vault", p.display()),
            LuksError::WrongKey => f.write_str("the key did not open the keyslot"),
            LuksError::Token(why) => write!(f, "vault token in the LUKS2 header: {why}"),
            LuksError::Crypt(op, e) => write!(f, "libcryptsetup {op}: {e}"),
        }
    }
}

impl std::error::Error for LuksError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LuksError::Io(_, e) => Some(e),
            LuksError::Crypt(_, e) => Some(e),
            _ => None,
        }
    }
}

/// What a disk holds, judged without changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// Its first MiB and the start of a vault's data area are all zeros, and no LUKS
    /// magic is anywhere it could be.
    Blank,
    /// A LUKS header magic is present (whether or not it loads).
    Luks,
    /// Something else is on it.
    Foreign,
}

/// Open `disk` to read it: a block device or an image file. O_NONBLOCK: a FIFO (or a
/// terminal) named as the disk must be refused, not waited on (its open would block
/// until a writer came, and its bytes are nobody's vault).
fn open_disk(disk: &Path) -> Result<std::fs::File, LuksError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |e| LuksError::Io(disk.to_path_buf(), e);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(disk)
        .map_err(io)?;
    let kind = f.metadata().map_err(io)?.file_type();
    if !(kind.is_file() || kind.is_block_device()) {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a disk (a block device or an image file)",
        )));
    }
    Ok(f)
}

/// Look at `disk` (read-only).
pub fn probe(disk: &Path) -> Result<DiskState, LuksError> {
    let io = |e| LuksError::Io(disk.to_path_buf(), e);
    let mut f = open_disk(disk)?;
    let head = read_at_most(&mut f, 0, BLANK_PROBE).map_err(io)?;
    let magic_at = |off: u64, magic: &[u8; 6]| -> bool {
        let start = usize::try_from(off).unwrap_or(usize::MAX);
        head.get(start..start.saturating_add(6)) == Some(&magic[..])
    };
    if magic_at(0, MAGIC_1) || SECOND_OFFSETS.iter().any(|&o| magic_at(o, MAGIC_2)) {
        return Ok(DiskState::Luks);
    }
    // Larger metadata areas put the second copy beyond the probe; look there too.
    for &off in &[0x200000u64, 0x400000] {
        let mut m = [0u8; 6];
        if f.seek(SeekFrom::Start(off)).is_ok() && f.read_exact(&mut m).is_ok() && &m == MAGIC_2 {
            return Ok(DiskState::Luks);
        }
    }
    if head.iter().all(|&b| b == 0) && data_area_zero(&mut f).map_err(io)? {
        Ok(DiskState::Blank)
    } else {
        Ok(DiskState::Foreign)
    }
}

/// Whether the start of where a vault's data area would be ([`DATA_PROBE`]) is all zeros
/// (or beyond the end of the disk).
fn data_area_zero(f: &mut std::fs::File) -> std::io::Result<bool> {
    let (at, len) = DATA_PROBE;
    Ok(read_at_most(f, at, len)?.iter().all(|&b| b == 0))
}

/// Up to `len` bytes of `f` from offset `at` (fewer where the disk ends before).
fn read_at_most(f: &mut std::fs::File, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(at))?;
    let mut buf = Vec::with_capacity(len);
    f.by_ref()
        .take(u64::try_from(len).unwrap_or(u64::MAX))
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Whether `disk` holds a vault whose creation was cut short: either LUKS2 header copy is
/// labelled [`UNFINISHED_LABEL`] or names an [`UNFINISHED_TYPE`] token. Read only (loading
/// the header through libcryptsetup may repair it, and `init` must not write to a vault it
/// refuses).
pub fn unfinished(disk: &Path) -> Result<bool, LuksError> {
    let needle = format!("\"{UNFINISHED_TYPE}\"");
    let head = read_prefix(disk, BLANK_PROBE)?;
    let labelled = |at: usize, magic: &[u8; 6]| {
        let label = at.saturating_add(LABEL_AT);
        head.get(at..at.saturating_add(6)) == Some(&magic[..])
            && head
                .get(label..label.saturating_add(LABEL_LEN))
                .and_then(|l| l.split(|&b| b == 0).next())
                == Some(UNFINISHED_LABEL.as_bytes())
    };
    let second = SECOND_OFFSETS
        .iter()
        .filter_map(|&o| usize::try_from(o).ok())
        .any(|o| labelled(o, MAGIC_2));
    Ok(
        labelled(0, MAGIC_1)
            || second
            || head.windows(needle.len()).any(|w| w == needle.as_bytes()),
    )
}

fn crypt(op: &'static str) -> impl Fn(LibcryptErr) -> LuksError {
    move |e| LuksError::Crypt(op, e)
}

fn errno_of(e: &LibcryptErr) -> Option<i32> {
    match e {
        LibcryptErr::IOError(io) => io.raw_os_error(),
        _ => None,
    }
}

/// A LUKS2 header copy that was damaged and restored from the other one while loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The first (primary) copy, at the start of the disk.
    First,
    /// The second (secondary) copy, right after the first.
    Second,
}

impl Restored {
    /// "first" or "second".
    pub fn as_str(self) -> &'static str {
        match self {
            Restored::First => "first",
            Restored::Second => "second",
        }
    }
}

/// Which copy loading changed, from the disk's first bytes before and after.
fn restored<'a>(before: &'a [u8], after: &'a [u8]) -> Option<Restored> {
    let size = after
        .get(HDR_SIZE_AT..HDR_SIZE_AT + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(usize::MAX, |b| {
            usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX)
        });
    let part = |b: &'a [u8], from: usize| -> &'a [u8] {
        let end = from.saturating_add(size).min(b.len());
        b.get(from.min(end)..end).unwrap_or_default()
    };
    if part(before, 0) != part(after, 0) {
        Some(Restored::First)
    } else if part(before, size) != part(after, size) {
        Some(Restored::Second)
    } else {
        None
    }
}

/// An opened (loaded) vault header.
pub struct Vault {
    dev: CryptDevice,
    path: PathBuf,
    /// A damaged header copy libcryptsetup restored from the other while loading (on the
    /// disk for [`Vault::open`], only in the in-memory copy for [`Vault::inspect`]).
    pub repaired: Option<Restored>,
    /// The in-memory header copy [`Vault::inspect`] loaded (kept open: `dev` reads it
    /// through /proc/self/fd).
    _copy: Option<std::fs::File>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vault({})", self.path.display())
    }
}

fn read_prefix(path: &Path, n: usize) -> Result<Vec<u8>, LuksError> {
    let mut f = open_disk(path)?;
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf)
        .map_err(|e| LuksError::Io(path.to_path_buf(), e))?;
    Ok(buf)
}

fn pbkdf(cost: Argon2Cost) -> CryptPbkdfType {
    CryptPbkdfType {
        type_: CryptKdf::Argon2Id,
        hash: Some("sha256".to_owned()),
        time_ms: 0,
        iterations: cost.iterations,
        max_memory_kb: cost.memory_kib,
        parallel_threads: cost.parallel,
        flags: CryptPbkdf::NO_BENCHMARK,
    }
}

/// Write a new LUKS2 header on `disk` (destroys what was there: callers check first),
/// labelled [`UNFINISHED_LABEL`] until [`Vault::mark_finished`].
pub fn format(disk: &Path) -> Result<Vault, LuksError> {
    let mut dev = CryptInit::init(disk).map_err(crypt("init"))?;
    let params = CryptParamsLuks2 {
        pbkdf: None,
        integrity: None,
        integrity_params: None,
        data_alignment: 0,
        data_device: None,
        sector_size: 4096,
        label: Some(UNFINISHED_LABEL.to_owned()),
        subsystem: None,
    };
    let mut params_ref: CryptParamsLuks2Ref<'_> =
        (&params).try_into().map_err(crypt("format parameters"))?;
    dev.context_handle()
        .format::<CryptParamsLuks2Ref<'_>>(
            EncryptionFormat::Luks2,
            ("aes", "xts-plain64"),
            None,
            Either::Right(64),
            Some(&mut params_ref),
        )
        .map_err(crypt("format"))?;
    Ok(Vault {
        dev,
        path: disk.to_path_buf(),
        repaired: None,
        _copy: None,
    })
}

/// libcryptsetup's load of the LUKS2 header at `at` (`disk` names it in errors).
fn load(at: &Path, disk: &Path) -> Result<CryptDevice, LuksError> {
    let mut dev = CryptInit::init(at).map_err(crypt("init"))?;
    match dev
        .context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
    {
        Ok(()) => Ok(dev),
        Err(e) if errno_of(&e) == Some(libc::EINVAL) => Err(LuksError::Damaged(disk.to_path_buf())),
        Err(e) => Err(LuksError::Crypt("load", e)),
    }
}

impl Vault {
    /// Load the header of `disk`. A damaged copy is restored on the disk from the other
    /// by libcryptsetup (reported through [`Vault::repaired`]); if both are damaged
    /// nothing is written and [`LuksError::Damaged`] says so.
    pub fn open(disk: &Path) -> Result<Vault, LuksError> {
        let io = |e| LuksError::Io(disk.to_path_buf(), e);
        match probe(disk)? {
            DiskState::Luks => {}
            DiskState::Blank | DiskState::Foreign => {
                return Err(LuksError::NotAVault(disk.to_path_buf()))
            }
        }
        let before = read_at_most(&mut open_disk(disk)?, 0, HEADERS_SPAN).map_err(io)?;
        let dev = load(disk, disk)?;
        let after = read_at_most(&mut open_disk(disk)?, 0, HEADERS_SPAN).map_err(io)?;
        Ok(Vault {
            dev,
            path: disk.to_path_buf(),
            repaired: restored(&before, &after),
            _copy: None,
        })
    }

    /// Load a copy of `disk`'s header made in memory, never writing to the disk: for
    /// commands that only look (`status`). libcryptsetup restores a damaged header copy
    /// while loading; here only the in-memory copy is restored, and [`Vault::repaired`]
    /// says which copy `unlock` would restore on the disk. Keyslots cannot be opened.
    pub fn inspect(disk: &Path) -> Result<Vault, LuksError> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let io = |e| LuksError::Io(disk.to_path_buf(), e);
        match probe(disk)? {
            DiskState::Luks => {}
            DiskState::Blank | DiskState::Foreign => {
                return Err(LuksError::NotAVault(disk.to_path_buf()))
            }
        }
        let mut f = open_disk(disk)?;
        let before = read_at_most(&mut f, 0, HEADERS_SPAN).map_err(io)?;
        // As long as the disk (a sparse copy: libcryptsetup checks the header's areas
        // fit), holding only its first bytes.
        let len = f.seek(SeekFrom::End(0)).map_err(io)?;
        let mut copy = crate::sys::memfd("anchor-vault-header").map_err(io)?;
        copy.write_all(&before).map_err(io)?;
        copy.set_len(len.max(u64::try_from(before.len()).unwrap_or(u64::MAX)))
            .map_err(io)?;
        let at = PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
        let dev = load(&at, disk)?;
        let after = read_at_most(&mut copy, 0, HEADERS_SPAN).map_err(io)?;
        Ok(Vault {
            dev,
            path: disk.to_path_buf(),
            repaired: restored(&before, &after),
            _copy: Some(copy),
        })
    }

    /// The disk this header is on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Add keyslot `slot` opened by `passphrase`, right after [`format`] (the volume key
    /// is still in the context) or after a successful [`Vault::check`]-less activation.
    pub fn add_keyslot(
        &mut self,
        slot: u32,
        passphrase: &[u8],
        cost: Argon2Cost,
    ) -> Result<(), LuksError> {
        let kdf = pbkdf(cost);
        self.dev
            .settings_handle()
            .set_pbkdf_type(&kdf)
            .map_err(crypt("set_pbkdf_type"))?;
        self.dev
            .keyslot_handle()
            .add_by_key(Some(slot), None, passphrase, CryptVolumeKey::empty())
            .map_err(crypt("keyslot_add_by_volume_key"))?;
        Ok(())
    }

    /// Store the vault token (replacing an older one).
    pub fn set_token(&mut self, token: &Value) -> Result<(), LuksError> {
        if let Some(id) = self.find_token()? {
            self.dev
                .token_handle()
                .json_set(TokenInput::RemoveToken(id))
                .map_err(crypt("token_json_set(remove)"))?;
        }
        self.dev
            .token_handle()
            .json_set(TokenInput::AddToken(token))
            .map_err(crypt("token_json_set"))?;
        Ok(())
    }

    fn find_token(&mut self) -> Result<Option<u32>, LuksError> {
        self.find_token_of(TOKEN_TYPE)
    }

    fn find_token_of(&mut self, kind: &str) -> Result<Option<u32>, LuksError> {
        for id in 0..32u32 {
            match self.dev.token_handle().json_get(id) {
                Ok(v) if v.get("type").and_then(Value::as_str) == Some(kind) => {
                    return Ok(Some(id))
                }
                Ok(_) => {}
                Err(e) if matches!(errno_of(&e), Some(libc::ENOENT | libc::EINVAL)) => {}
                Err(e) => return Err(LuksError::Crypt("token_json_get", e)),
            }
        }
        Ok(None)
    }

    /// The vault is made (its filesystem too): label it [`LABEL`] (and drop an older
    /// anchor-vault's [`UNFINISHED_TYPE`] token, if any).
    pub fn mark_finished(&mut self) -> Result<(), LuksError> {
        if let Some(id) = self.find_token_of(UNFINISHED_TYPE)? {
            self.dev
                .token_handle()
                .json_set(TokenInput::RemoveToken(id))
                .map_err(crypt("token_json_set(finished)"))?;
        }
        self.dev
            .context_handle()
            .set_label(Some(LABEL), None)
            .map_err(crypt("set_label"))
    }

    /// Whether this vault's creation was cut short (it never held anything).
    pub fn is_unfinished(&mut self) -> Result<bool, LuksError> {
        Ok(self.find_token_of(UNFINISHED_TYPE)?.is_some() || unfinished(&self.path)?)
    }

    /// The vault token.
    pub fn token(&mut self) -> Result<Value, LuksError> {
        let id = self.find_token()?.ok_or(LuksError::Token(
            "no anchor-vault token (not made by anchor-vault?)",
        ))?;
        self.dev
            .token_handle()
            .json_get(id)
            .map_err(crypt("token_json_get"))
    }

    fn by_passphrase(
        &mut self,
        name: Option<&str>,
        slot: u32,
        passphrase: &[u8],
    ) -> Result<(), LuksError> {
        match self.dev.activate_handle().activate_by_passphrase(
            name,
            Some(slot),
            passphrase,
            CryptActivate::empty(),
        ) {
            Ok(_) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::EPERM) => Err(LuksError::WrongKey),
            Err(e) => Err(LuksError::Crypt("activate_by_passphrase", e)),
        }
    }

    /// Does `passphrase` open keyslot `slot`? (No device is created.)
    pub fn check(&mut self, slot: u32, passphrase: &[u8]) -> Result<(), LuksError> {
        self.by_passphrase(None, slot, passphrase)
    }

    /// Open keyslot `slot` with `passphrase` and create `/dev/mapper/NAME`.
    pub fn activate(&mut self, name: &str, slot: u32, passphrase: &[u8]) -> Result<(), LuksError> {
        self.by_passphrase(Some(name), slot, passphrase)
    }

    /// The keyslots in use: (slot, last one or not).
    pub fn keyslots(&mut self) -> Vec<u32> {
        (0..32u32)
            .filter(|&s| {
                matches!(
                    self.dev.keyslot_handle().status(s),
                    Ok(KeyslotInfo::Active | KeyslotInfo::ActiveLast)
                )
            })
            .collect()
    }

    /// The argon2 cost of keyslot `slot`, if it uses argon2id.
    pub fn keyslot_cost(&mut self, slot: u32) -> Option<Argon2Cost> {
        let p = self.dev.keyslot_handle().get_pbkdf(slot).ok()?;
        (p.type_ == CryptKdf::Argon2Id).then_some(Argon2Cost {
            memory_kib: p.max_memory_kb,
            iterations: p.iterations,
            parallel: p.parallel_threads,
        })
    }
}

/// Remove `/dev/mapper/NAME`.
pub fn deactivate(disk: &Path, name: &str) -> Result<(), LuksError> {
    let mut dev = CryptInit::init(disk).map_err(crypt("init"))?;
    dev.activate_handle()
        .deactivate(name, CryptDeactivate::empty())
        .map_err(crypt("deactivate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_tells_blank_foreign_and_luks_apart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        std::fs::write(&p, vec![0u8; 2 << 20]).unwrap();
        assert_eq!(probe(&p).unwrap(), DiskState::Blank);
        let mut d = vec![0u8; 2 << 20];
        d[0x438] = 0x53;
        std::fs::write(&p, &d).unwrap();
        assert_eq!(probe(&p).unwrap(), DiskState::Foreign);
        let mut d = vec![0u8; 2 << 20];
        d[0x4000..0x4006].copy_from_slice(MAGIC_2);
        std::fs::write(&p, &d).unwrap();
        assert_eq!(probe(&p).unwrap(), DiskState::Luks, "second copy alone");
        let mut d = vec![0u8; 17 << 20];
        d[(16 << 20) + 100] = 1;
        std::fs::write(&p, &d).unwrap();
        assert_eq!(probe(&p).unwrap(), DiskState::Foreign, "a data area");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(probe(&p).unwrap(), DiskState::Blank);
        assert!(matches!(
            probe(&dir.path().join("missing")),
            Err(LuksError::Io(..))
        ));
    }
}
