// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-blk request parsing and execution: pure queue logic, no epoll.
//!
//! A request is a descriptor chain: a device-readable 16-byte header
//! `{type: u32, reserved: u32, sector: u64}`, zero or more data descriptors (device-writable
//! for IN and GET_ID, device-readable for OUT), and a final device-writable status byte.
//! The chain is validated completely (directions, lengths, sector range with checked
//! arithmetic, every buffer inside guest memory) before any I/O is done; data moves through
//! a fixed 64 KiB buffer, never one sized by the guest.

use std::fs::File;
use std::os::unix::fs::FileExt;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

/// Sector size in bytes.
pub const SECTOR_SIZE: u64 = 512;
/// Length of the GET_ID answer.
pub const ID_LEN: usize = 20;

/// Request types.
pub const T_IN: u32 = 0;
/// Write.
pub const T_OUT: u32 = 1;
/// Flush.
pub const T_FLUSH: u32 = 4;
/// Device id string.
pub const T_GET_ID: u32 = 8;

/// Status values.
pub const S_OK: u8 = 0;
/// I/O error (also: malformed request, out of range, write to a read-only disk).
pub const S_IOERR: u8 = 1;
/// Unsupported request type.
pub const S_UNSUPP: u8 = 2;

const HEADER_LEN: u32 = 16;
/// Bytes moved per pread/pwrite. Fixed (never the guest's length); on the stack of the
/// VMM thread, where block requests are processed.
const CHUNK: usize = 64 * 1024;

/// What a chain asks for, after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Request type as sent by the guest.
    pub kind: u32,
    /// First sector.
    pub sector: u64,
    /// Total length of the data descriptors.
    pub data_len: u64,
    /// Where to write the status byte.
    pub status_addr: GuestAddress,
}

/// Why a chain was refused. With a status descriptor the guest gets a status byte,
/// without one the chain is returned with used length 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No usable status descriptor: the chain is returned untouched.
    NoStatus,
    /// The request is malformed; answer `status` at `addr`.
    Bad {
        /// Where the status byte goes.
        addr: GuestAddress,
        /// Which status.
        status: u8,
    },
}

/// Validated shape of a chain, gathered in one pass without allocating.
#[derive(Debug, Default)]
struct Shape {
    count: u32,
    header: Option<Descriptor>,
    last: Option<Descriptor>,
    data_len: u64,
    data_writable: Option<bool>,
    mixed_dirs: bool,
    out_of_memory: bool,
    /// The walk stopped on a descriptor that says NEXT: virtio-queue cut the chain short
    /// (a loop, a u32 length overflow, a bad index or a nested indirect table).
    truncated: bool,
}

fn in_memory(mem: &GuestMemoryMmap<()>, d: &Descriptor) -> bool {
    let Ok(len) = usize::try_from(d.len()) else {
        return false;
    };
    let perm = if d.is_write_only() {
        Permissions::Write
    } else {
        Permissions::Read
    };
    len == 0 || mem.check_range(d.addr(), len, perm)
}

fn shape(chain: DescriptorChain<&GuestMemoryMmap<()>>, mem: &GuestMemoryMmap<()>) -> Shape {
    let mut s = Shape::default();
    for d in chain {
        s.count = s.count.saturating_add(1);
        s.truncated = d.has_next();
        if !in_memory(mem, &d) {
            s.out_of_memory = true;
        }
        if s.header.is_none() {
            s.header = Some(d);
            continue;
        }
        // The previous "last" was a data descriptor after all.
        if let Some(prev) = s.last.replace(d) {
            s.data_len = s.data_len.saturating_add(u64::from(prev.len()));
            let w = prev.is_write_only();
            match s.data_writable {
                None => s.data_writable = Some(w),
                Some(x) if x != w => s.mixed_dirs = true,
                Some(_) => {}
            }
        }
    }
    s
}

/// Validate a chain against a disk of `capacity` sectors.
pub fn parse(
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    capacity: u64,
    read_only: bool,
) -> Result<Request, ParseError> {
    let s = shape(chain, mem);
    if s.truncated {
        // Whatever came last is not the status descriptor the driver meant.
        return Err(ParseError::NoStatus);
    }
    let status = s
        .last
        .filter(|d| d.is_write_only() && d.len() >= 1 && in_memory(mem, d));
    let Some(status) = status else {
        return Err(ParseError::NoStatus);
    };
    let bad = |st: u8| ParseError::Bad {
        addr: status.addr(),
        status: st,
    };
    let Some(header) = s.header else {
        return Err(bad(S_IOERR));
    };
    if header.is_write_only() || header.len() < HEADER_LEN || s.out_of_memory {
        return Err(bad(S_IOERR));
    }
    let kind: u32 = mem.read_obj(header.addr()).map_err(|_| bad(S_IOERR))?;
    let sector_addr = header.addr().checked_add(8).ok_or(bad(S_IOERR))?;
    let sector: u64 = mem.read_obj(sector_addr).map_err(|_| bad(S_IOERR))?;
    let (kind, sector) = (u32::from_le(kind), u64::from_le(sector));
    let req = Request {
        kind,
        sector,
        data_len: s.data_len,
        status_addr: status.addr(),
    };
    match kind {
        T_IN | T_OUT => {
            let want_writable = kind == T_IN;
            if s.mixed_dirs
                || s.data_writable.is_some_and(|w| w != want_writable)
                || s.data_len % SECTOR_SIZE != 0
            {
                return Err(bad(S_IOERR));
            }
            let sectors = s.data_len / SECTOR_SIZE;
            match sector.checked_add(sectors) {
                Some(end) if end <= capacity => {}
                _ => return Err(bad(S_IOERR)),
            }
            if kind == T_OUT && read_only {
                return Err(bad(S_IOERR));
            }
            Ok(req)
        }
        T_FLUSH => Ok(req),
        T_GET_ID => {
            if s.mixed_dirs || s.data_writable == Some(false) || s.data_len < ID_LEN as u64 {
                return Err(bad(S_IOERR));
            }
            Ok(req)
        }
        _ => Err(bad(S_UNSUPP)),
    }
}

/// The backing store of a block device.
pub trait Disk {
    /// Read `buf.len()` bytes at `offset`.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    /// Write `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()>;
    /// Make writes durable.
    fn flush(&mut self) -> std::io::Result<()>;
}

impl Disk for File {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// Execute a validated request; returns (status, bytes written into the chain's data).
pub fn execute<D: Disk>(
    req: &Request,
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    disk: &mut D,
    id: &[u8; ID_LEN],
) -> (u8, u32) {
    if req.kind == T_FLUSH {
        return (if disk.flush().is_ok() { S_OK } else { S_IOERR }, 0);
    }
    let mut buf = [0u8; CHUNK];
    let mut offset = req.sector.saturating_mul(SECTOR_SIZE);
    let mut written: u32 = 0;
    // Skip the header; the final descriptor is the status byte.
    let data = chain.skip(1);
    let mut remaining = req.data_len;
    for d in data {
        if remaining == 0 {
            break;
        }
        let len = u64::from(d.len()).min(remaining);
        remaining = remaining.saturating_sub(len);
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from((len - done).min(CHUNK as u64)).unwrap_or(CHUNK);
            let Some(chunk) = buf.get_mut(..n) else {
                return (S_IOERR, written);
            };
            let Some(addr) = d.addr().checked_add(done) else {
                return (S_IOERR, written);
            };
            let ok = match req.kind {
                T_IN => disk.read_at(chunk, offset).is_ok() && mem.write_slice(chunk, addr).is_ok(),
                T_OUT => {
                    mem.read_slice(chunk, addr).is_ok() && disk.write_at(chunk, offset).is_ok()
                }
                T_GET_ID => {
                    let take = n.min(ID_LEN);
                    let ok = id
                        .get(..take)
                        .is_some_and(|src| mem.write_slice(src, addr).is_ok());
                    if ok {
                        written = written.saturating_add(u32::try_from(take).unwrap_or(0));
                    }
                    return (if ok { S_OK } else { S_IOERR }, written);
                }
                _ => true,
            };
            if !ok {
                return (S_IOERR, written);
            }
            if req.kind == T_IN {
                written = written.saturating_add(u32::try_from(n).unwrap_or(0));
            }
            let step = n as u64;
            offset = offset.saturating_add(step);
            done = done.saturating_add(step);
        }
    }
    (S_OK, written)
}

/// Handle one chain end to end; returns the used length (data written + status byte).
pub fn handle_chain<D: Disk>(
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    disk: &mut D,
    capacity: u64,
    read_only: bool,
    id: &[u8; ID_LEN],
) -> u32 {
    let (status, addr, written) = match parse(chain.clone(), mem, capacity, read_only) {
        Ok(req) => {
            let (st, w) = execute(&req, chain, mem, disk, id);
            (st, req.status_addr, w)
        }
        Err(ParseError::NoStatus) => return 0,
        Err(ParseError::Bad { addr, status }) => (status, addr, 0),
    };
    if mem.write_obj(status, addr).is_err() {
        return written;
    }
    written.saturating_add(1)
}
