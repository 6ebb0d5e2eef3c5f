// SPDX-License-Identifier: GPL-3.0-or-later
//! `apply`: put a signed update into the slot that is not running, so that the next boot
//! tries it.
//!
//! Steps (each is durable before the next starts; a power cut between any two leaves the
//! running slot untouched and bootable, see docs/SIGNING.md "Power cuts"):
//!
//! 1. `verify` — read the file, check its Authenticode signature against our db
//!    certificate, its version against the floor and its architecture against the running
//!    slot's. Nothing is written before this passes.
//! 2. `clean`  — remove leftovers of an interrupted apply, and the inactive slot's old image
//!    when the ESP has no room for the update beside it (else it goes at `arm`).
//! 3. `write`  — write the image to `EFI/Linux/anchor-X.efi.new` (not a boot entry).
//! 4. `sync`   — fsync it, drop its pages from the page cache and read it back from the
//!    device (the bytes on the ESP are the verified bytes).
//! 5. `arm`    — remove the inactive slot's old image if still there, rename the new one to
//!    `anchor-X+N-0.efi` and fsync the directory: from here on
//!    systemd-boot boots it first, N times at most, until `bless` keeps it.

use crate::esp::{io_err, Esp, EspError, EspState};
use crate::slots::{Counter, EntryName, Slot, MAX_TRIES};
use crate::verify::{self, Trust, VerifyError};
use crate::version::Version;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

/// The steps of an apply, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Verify,
    Clean,
    Write,
    Sync,
    Arm,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Verify,
        Step::Clean,
        Step::Write,
        Step::Sync,
        Step::Arm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Verify => "verify",
            Step::Clean => "clean",
            Step::Write => "write",
            Step::Sync => "sync",
            Step::Arm => "arm",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// Largest update accepted (an ESP slot; the UKI is a few tens of MiB).
pub const MAX_IMAGE: u64 = 1 << 30;

/// Why an update was refused or failed.
#[derive(Debug)]
pub enum ApplyError {
    /// The update file cannot be read.
    Read {
        path: String,
        err: std::io::Error,
    },
    TooBig(u64),
    /// Signature check failed: nothing was written.
    Untrusted(VerifyError),
    /// No usable os-release version in the update.
    NoVersion(String),
    /// Not newer than the floor: nothing was written.
    Downgrade {
        new: Version,
        floor: Version,
    },
    /// Which slot runs is unknown.
    RunningUnknown,
    /// The running slot is still on trial: replacing the other one would leave no
    /// known-good slot.
    RunningNotBlessed(Slot),
    /// The slot said to be running has no image on this ESP, and the other one holds the
    /// only bootable image: writing it would leave nothing to boot.
    RunningMissing(Slot),
    /// Tries outside 1..=MAX_TRIES.
    BadTries(u32),
    /// Not enough room on the ESP.
    NoSpace {
        need: u64,
        free: u64,
    },
    /// The bytes read back differ from the bytes written.
    ReadBack,
    /// A file clean would remove (a leftover `.efi.new`, or one of two names of the slot
    /// being replaced) holds the same bytes as another slot file: probably the other name
    /// of a rename a power cut interrupted (both names on the same FAT clusters). Removing
    /// it would free the other's clusters (or free them twice).
    Twin {
        file: String,
        twin: String,
    },
    /// A file clean would remove is a directory (or cannot be looked at): found before
    /// anything is removed, so a refused update never leaves the other slot emptied.
    NotRemovable {
        path: String,
        why: String,
    },
    /// Built for another architecture than the base it updates (PE machine types): the
    /// firmware and systemd-boot of this machine would never start it.
    WrongMachine {
        update: u16,
        machine: u16,
        slot_file: String,
    },
    Esp(EspError),
    /// Another apply holds the ESP.
    Busy,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Read { path, err } => write!(f, "cannot read update {path}: {err}"),
            ApplyError::TooBig(n) => {
                write!(
                    f,
                    "update is {n} bytes, more than the {MAX_IMAGE} a slot may hold"
                )
            }
            ApplyError::Untrusted(e) => write!(f, "update refused, nothing written: {e}"),
            ApplyError::NoVersion(e) => write!(f, "update refused, nothing written: {e}"),
            ApplyError::Downgrade { new, floor } => write!(
                f,
                "update refused, nothing written: version {new} is not newer than {floor} \
                 (no downgrades)"
            ),
            ApplyError::RunningUnknown => f.write_str(
                "cannot tell which slot is running (not booted through systemd-boot?): \
                 pass --running A|B",
            ),
            ApplyError::RunningNotBlessed(s) => write!(
                f,
                "update refused: the running slot {s} has not passed its health check yet \
                 (writing slot {} now would leave no known-good slot)",
                s.other()
            ),
            ApplyError::RunningMissing(s) => write!(
                f,
                "update refused, nothing written: slot {s}, said to be running, has no image \
                 on this ESP, and slot {} holds its only bootable one (writing it would leave \
                 nothing to boot): is this the right ESP, and the right --running?",
                s.other()
            ),
            ApplyError::BadTries(n) => write!(f, "--tries {n}: must be 1..={MAX_TRIES}"),
            ApplyError::NoSpace { need, free } => write!(
                f,
                "update refused, nothing written: the ESP has {free} bytes free, {need} needed"
            ),
            ApplyError::ReadBack => {
                f.write_str("the update read back from the ESP differs from what was written")
            }
            ApplyError::Twin { file, twin } => write!(
                f,
                "update refused, nothing written: {file} has the same bytes as {twin}, \
                 probably a rename cut short by a power loss (both names on the same \
                 clusters); check the ESP with fsck.vfat before updating"
            ),
            ApplyError::NotRemovable { path, why } => write!(
                f,
                "update refused, nothing written: {path} cannot be removed to make room for \
                 the update ({why}); remove it by hand"
            ),
            ApplyError::WrongMachine {
                update,
                machine,
                slot_file,
            } => write!(
                f,
                "update refused, nothing written: the update is built for {}, but this \
                 machine's base ({slot_file}) is {}: it would never boot",
                crate::pe::machine_name(*update),
                crate::pe::machine_name(*machine)
            ),
            ApplyError::Esp(e) => write!(f, "{e}"),
            ApplyError::Busy => f.write_str(
                "update refused, nothing written: another update is being applied to this ESP",
            ),
        }
    }
}

impl std::error::Error for ApplyError {}

impl From<EspError> for ApplyError {
    fn from(e: EspError) -> Self {
        ApplyError::Esp(e)
    }
}

/// What is known about the running system.
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// The slot that booted (from systemd-boot's variables, or `--running`).
    pub slot: Option<Slot>,
    /// The running base's IMAGE_VERSION (from its own /usr/lib/os-release).
    pub version: Option<Version>,
}

/// Called after each step (progress lines; test builds stop here to cut the power).
pub trait Observer {
    fn after(&mut self, step: Step, what: &str);
}

/// A finished apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub slot: Slot,
    pub version: String,
    pub file: String,
    pub tries: u32,
}

/// The slot an update goes to: the one not running.
pub fn target_slot(state: &EspState, running: &Running) -> Result<Slot, ApplyError> {
    let slot = match running.slot {
        Some(s) => s,
        // Offline (no loader variables): the only slot that holds an image is the
        // current one; with both or neither filled we cannot guess.
        None => match (state.a.is_empty(), state.b.is_empty()) {
            (false, true) => Slot::A,
            (true, false) => Slot::B,
            (true, true) => return Ok(Slot::A),
            (false, false) => return Err(ApplyError::RunningUnknown),
        },
    };
    // The other slot, about to be replaced, can still boot (a bad image is no loss: a
    // recovery writes over it).
    let files = state.files(slot);
    let other_boots = state
        .files(slot.other())
        .iter()
        .any(|f| !f.entry.counter.is_bad());
    // On trial unless one of its files is good: a power cut inside a counter rename (FAT
    // has no atomic rename) can leave the slot under two trial names.
    if !files.is_empty() && !files.iter().any(|f| f.entry.counter == Counter::Good) && other_boots {
        return Err(ApplyError::RunningNotBlessed(slot));
    }
    // Said to run but not on this ESP: the other slot is all there is to boot, and
    // cleaning it would leave nothing until the update is armed.
    if files.is_empty() && other_boots {
        return Err(ApplyError::RunningMissing(slot));
    }
    Ok(slot.other())
}

/// Apply the update at `path` to `esp`.
pub fn apply(
    esp: &Esp,
    path: &str,
    trust: &Trust,
    running: &Running,
    tries: u32,
    obs: &mut dyn Observer,
) -> Result<Applied, ApplyError> {
    if tries == 0 || tries > MAX_TRIES {
        return Err(ApplyError::BadTries(tries));
    }
    // 1. verify
    let image = read_limited(path)?;
    verify::verify(&image, trust).map_err(ApplyError::Untrusted)?;
    let version = crate::esp::image_version(&image).map_err(ApplyError::NoVersion)?;
    // Held until the slot is armed: a second apply would remove this one's temp file, or
    // have its own (unsynced) one armed under this one's name.
    let _lock = esp.lock()?.ok_or(ApplyError::Busy)?;
    let state = esp.scan()?;
    let target = target_slot(&state, running)?;
    // Each slot image verify needs is read once: its version (the floor) and machine
    // type come from the same bytes.
    let mut images = SlotImages::default();
    let floor = floor(esp, &state, running, &mut images)?;
    if let Some(floor) = floor {
        if version <= floor {
            return Err(ApplyError::Downgrade {
                new: version,
                floor,
            });
        }
    }
    check_machine(esp, &state, target, &image, &mut images)?;
    let clean_first = check_space(esp, &state, target, image.len() as u64)?;
    check_twins(esp, &state, target)?;
    check_removable(esp, &state, target)?;
    obs.after(
        Step::Verify,
        &format!("update {path}: signed by our key, version {version}, for slot {target}"),
    );

    // 2. clean: the leftovers, and the target's old image only when the update needs its
    // room; else that image stays (and bootable, should the write fail) until arm.
    if clean_first {
        for f in state.files(target) {
            esp.remove(&f.file)?;
        }
    }
    let temp = target.temp_name();
    for t in &state.temps {
        esp.remove(t)?;
    }
    let kept = !clean_first && !state.files(target).is_empty();
    obs.after(
        Step::Clean,
        &if kept {
            format!("leftovers removed; slot {target}'s old image stays until the update is synced")
        } else {
            format!("slot {target} emptied")
        },
    );

    // 3. write
    std::fs::create_dir_all(esp.entry_dir()).map_err(io_err("create", &esp.entry_dir()))?;
    let temp_path = esp.entry_path(&temp);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp_path)
        .map_err(io_err("create", &temp_path))?;
    // 3. write and 4. sync; cut short by an error (a full ESP, an I/O error, bytes that
    // read back wrong), the half-written file is removed, not left for the next apply.
    if let Err(e) = write_and_sync(esp, f, &temp, &image, obs) {
        let _ = esp.remove(&temp);
        return Err(e);
    }

    // 5. arm
    let armed = EntryName {
        slot: target,
        counter: Counter::Counting {
            left: tries,
            done: 0,
        },
    }
    .file_name();
    if !clean_first {
        for f in state.files(target) {
            esp.remove(&f.file)?;
        }
    }
    esp.rename(&temp, &armed)?;
    obs.after(
        Step::Arm,
        &format!("slot {target} armed: {armed} ({tries} tries; reboot to try it)"),
    );
    Ok(Applied {
        slot: target,
        version: version.to_string(),
        file: armed,
        tries,
    })
}

/// Steps 3 (write) and 4 (sync) of an apply: `image` into the new file `f`, `temp` in
/// the entry directory, synced and read back.
fn write_and_sync(
    esp: &Esp,
    mut f: std::fs::File,
    temp: &str,
    image: &[u8],
    obs: &mut dyn Observer,
) -> Result<(), ApplyError> {
    let temp_path = esp.entry_path(temp);
    f.write_all(image).map_err(io_err("write", &temp_path))?;
    obs.after(
        Step::Write,
        &format!("{} bytes written to {temp}", image.len()),
    );
    f.sync_all().map_err(io_err("sync", &temp_path))?;
    // The pages the write filled are dropped, so the read-back fetches what reached the
    // device, not what is still in memory (a device that lost or garbled the write).
    crate::sys::drop_cached(&f).map_err(io_err("drop the cached pages of", &temp_path))?;
    drop(f);
    esp.sync_dir()?;
    let back = std::fs::read(&temp_path).map_err(io_err("read back", &temp_path))?;
    if Sha256::digest(&back) != Sha256::digest(image) {
        return Err(ApplyError::ReadBack);
    }
    obs.after(Step::Sync, &format!("{temp} synced and read back"));
    Ok(())
}

/// What verify learnt from a slot image: its version and its PE machine type.
struct ImageFacts {
    version: Result<Version, String>,
    machine: Result<u16, crate::pe::PeError>,
}

/// The slot images verify has read, by file name: each is read once.
#[derive(Default)]
struct SlotImages(std::collections::BTreeMap<String, ImageFacts>);

impl SlotImages {
    fn get(&mut self, esp: &Esp, file: &str) -> Result<&ImageFacts, EspError> {
        use std::collections::btree_map::Entry;
        match self.0.entry(file.to_string()) {
            Entry::Occupied(known) => Ok(known.into_mut()),
            Entry::Vacant(new) => {
                let bytes = crate::esp::read_slot_file(&esp.entry_path(file))?;
                Ok(new.insert(ImageFacts {
                    version: crate::esp::image_version(&bytes),
                    machine: crate::pe::machine(&bytes),
                }))
            }
        }
    }
}

/// The lowest version an update must exceed: the running base's, and every good slot's
/// (also the one about to be replaced: a machine never goes back below a version it once
/// booted healthy). Slots on trial or bad do not count.
fn floor(
    esp: &Esp,
    state: &EspState,
    running: &Running,
    images: &mut SlotImages,
) -> Result<Option<Version>, ApplyError> {
    let mut floor = running.version.clone();
    for slot in Slot::ALL {
        for f in state.files(slot) {
            if f.entry.counter != Counter::Good {
                continue;
            }
            let v = images
                .get(esp, &f.file)?
                .version
                .clone()
                .map_err(|what| EspError::Image {
                    path: esp.entry_path(&f.file),
                    what,
                })?;
            if floor.as_ref().is_none_or(|fl| v > *fl) {
                floor = Some(v);
            }
        }
    }
    Ok(floor)
}

/// The update must be built for the machine the ESP's base runs on: the PE machine type
/// of the running slot's image (or, when that slot has none here, of the slot being
/// replaced). An ESP with no readable image gives nothing to compare with (an installer
/// may write another architecture's ESP).
fn check_machine(
    esp: &Esp,
    state: &EspState,
    target: Slot,
    image: &[u8],
    images: &mut SlotImages,
) -> Result<(), ApplyError> {
    let update = crate::pe::machine(image)
        .map_err(|e| ApplyError::Untrusted(VerifyError::NotPe(e.to_string())))?;
    let running = state.files(target.other());
    let files = if running.is_empty() {
        state.files(target)
    } else {
        running
    };
    for f in files {
        let Ok(machine) = images.get(esp, &f.file)?.machine else {
            continue;
        };
        if machine != update {
            return Err(ApplyError::WrongMachine {
                update,
                machine,
                slot_file: f.file.clone(),
            });
        }
        return Ok(());
    }
    Ok(())
}

/// Refuse to remove a file that is byte-identical to another one (see
/// [`ApplyError::Twin`]): a leftover and any slot file, or two names of the target slot
/// (a counter rename cut short keeps the slot letter). Two slots holding the same image
/// are not compared: an ESP may well hold one image in both.
fn check_twins(esp: &Esp, state: &EspState, target: Slot) -> Result<(), ApplyError> {
    let slot_files = || Slot::ALL.iter().flat_map(|s| state.files(*s));
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for temp in &state.temps {
        pairs.extend(slot_files().map(|f| (temp.as_str(), f.file.as_str())));
    }
    let mine = state.files(target);
    for (i, f) in mine.iter().enumerate() {
        pairs.extend(
            mine.iter()
                .skip(i + 1)
                .map(|g| (f.file.as_str(), g.file.as_str())),
        );
    }
    for (file, twin) in pairs {
        let (fpath, tpath) = (esp.entry_path(file), esp.entry_path(twin));
        let len = std::fs::metadata(&fpath).map_or(0, |m| m.len());
        if len == 0 || std::fs::metadata(&tpath).map_or(0, |m| m.len()) != len {
            continue;
        }
        if crate::esp::read_slot_file(&fpath)? == crate::esp::read_slot_file(&tpath)? {
            return Err(ApplyError::Twin {
                file: file.to_string(),
                twin: twin.to_string(),
            });
        }
    }
    Ok(())
}

/// Every file clean will remove (the target slot's files and the leftovers) can be
/// removed: a directory under such a name would stop clean half-way, after the target's
/// image was already gone.
fn check_removable(esp: &Esp, state: &EspState, target: Slot) -> Result<(), ApplyError> {
    let names = state
        .files(target)
        .iter()
        .map(|f| &f.file)
        .chain(state.temps.iter());
    for name in names {
        let path = esp.entry_path(name);
        let refuse = |why: String| ApplyError::NotRemovable {
            path: path.display().to_string(),
            why,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(|e| refuse(e.to_string()))?;
        if meta.is_dir() {
            return Err(refuse("a directory, not an image".to_string()));
        }
    }
    Ok(())
}

fn read_limited(path: &str) -> Result<Vec<u8>, ApplyError> {
    let read = |err| ApplyError::Read {
        path: path.to_string(),
        err,
    };
    // O_NONBLOCK: opening a fifo must not wait for a writer; the descriptor is checked
    // before anything is read (a device or a fifo has no length to bound the read).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(read(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    if meta.len() > MAX_IMAGE {
        return Err(ApplyError::TooBig(meta.len()));
    }
    // The file may grow after fstat: never read more than one byte past the limit.
    let mut image = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_IMAGE + 1)
        .read_to_end(&mut image)
        .map_err(read)?;
    if image.len() as u64 > MAX_IMAGE {
        return Err(ApplyError::TooBig(image.len() as u64));
    }
    Ok(image)
}

/// Whether the update fits on the ESP, and whether the target slot's old image must be
/// removed first to make room for it (true), or can stay until the update is synced
/// (false: a write that fails, e.g. an ESP filled up by someone else, then leaves both
/// slots as they were). Unknown free space: removed first, as it may be needed.
fn check_space(esp: &Esp, state: &EspState, target: Slot, need: u64) -> Result<bool, ApplyError> {
    let Some(free) = crate::sys::free_bytes(esp.root()) else {
        return Ok(true);
    };
    // What clean will free: the target's old files and leftovers.
    let mut freed = 0u64;
    let names = state
        .files(target)
        .iter()
        .map(|f| f.file.clone())
        .chain(state.temps.iter().cloned());
    for n in names {
        freed += std::fs::metadata(esp.entry_path(&n)).map_or(0, |m| m.len());
    }
    // A little slack for FAT metadata.
    let need = need + (1 << 20);
    if free + freed < need {
        return Err(ApplyError::NoSpace {
            need,
            free: free + freed,
        });
    }
    Ok(free < need)
}
