// SPDX-License-Identifier: GPL-3.0-or-later
//! Who holds a volume file: a process with it open (a microVM room's VMM) or a loop device
//! backed by it (a namespace room's mount of it). `volume delete` refuses a volume in use,
//! since its room would go on writing to a file no name reaches, and a new room naming
//! the volume would get an empty one beside it.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A process or loop device that holds the file with device `dev` and inode `ino`, said
/// in a few words, or None when nothing does; `mine`, a descriptor of this process's own
/// that does not count. Processes that end while they are looked at, and loop devices that
/// go, are passed over; a /proc or /sys that cannot be listed is an error (the caller
/// cannot tell, so it must not go on).
pub fn holder(dev: u64, ino: u64, mine: Option<RawFd>) -> io::Result<Option<String>> {
    if let Some(pid) = process_holding(dev, ino, mine)? {
        return Ok(Some(format!("process {pid} ({}) has it open", comm(pid))));
    }
    Ok(loop_holding(dev, ino)?.map(|name| format!("loop device /dev/{name} is backed by it")))
}

fn process_holding(dev: u64, ino: u64, mine: Option<RawFd>) -> io::Result<Option<u32>> {
    let me = std::process::id();
    let skip = mine.map(|fd| fd.to_string());
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone, or a kernel thread: nothing to look at.
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if pid == me && skip.as_deref().is_some_and(|s| fd.file_name() == s) {
                continue;
            }
            // stat(2) through the magic link: the open file's own device and inode.
            if std::fs::metadata(fd.path()).is_ok_and(|m| (m.dev(), m.ino()) == (dev, ino)) {
                return Ok(Some(pid));
            }
        }
    }
    Ok(None)
}

/// The process's command name, with anything but printable ASCII shown as `?` (a process
/// names itself).
fn comm(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
    let name: String = raw
        .strip_suffix(b"\n")
        .unwrap_or(&raw)
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    if name.is_empty() {
        "?".to_owned()
    } else {
        name
    }
}

fn loop_holding(dev: u64, ino: u64) -> io::Result<Option<String>> {
    let block = match std::fs::read_dir("/sys/block") {
        Ok(b) => b,
        // No block devices at all: no loop device either.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in block {
        let name = entry?.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with("loop")) else {
            continue;
        };
        // Only a bound loop device has a `loop` directory.
        if !Path::new("/sys/block").join(name).join("loop").exists() {
            continue;
        }
        let Ok(device) = std::fs::File::open(Path::new("/dev").join(name)) else {
            continue;
        };
        if crate::sys::loop_backing(&device)? == Some((dev, ino)) {
            return Ok(Some(name.to_owned()));
        }
    }
    Ok(None)
}
