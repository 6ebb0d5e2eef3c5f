// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-blk request parsing and execution: pure queue logic, no epoll.
//!
//! A request is a descriptor chain read as bytes, whatever its descriptors: the first 16
//! device-readable bytes are the header `{type: u32, reserved: u32, sector: u64}`, then
//! the data (device-readable for OUT, device-writable for IN and GET_ID, in at most
//! [`SEG_MAX`] pieces), and the last device-writable byte is the status. The chain is
//! validated completely (directions, lengths, segment count, sector range with checked
//! arithmetic, every buffer inside guest memory) before any I/O, and its data segments are
//! copied into the request (a fixed array: the guest cannot change them afterwards, and
//! nothing is sized by the guest). Data moves between the disk and guest
//! memory directly (preadv/pwritev on the guest's buffers), at most [`IO_BYTES`] per call,
//! so a large request is carried out over several event-loop turns ([`Progress`]).

use std::fs::File;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::volatile_memory::VolatileSlice;
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryMmap, Permissions,
};

use crate::devices::virtio::queue::Budget;

/// Sector size in bytes.
pub const SECTOR_SIZE: u64 = 512;
/// Length of the GET_ID answer.
pub const ID_LEN: usize = 20;
/// Data segments per request (announced as `seg_max`, enforced here).
pub const SEG_MAX: usize = 128;
/// Most bytes moved by one preadv/pwritev (and between two budget checks).
pub const IO_BYTES: u64 = crate::devices::virtio::queue::CHUNK_BOUND;
/// Most guest buffers handed to one preadv/pwritev.
pub const IO_VECS: usize = 64;

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

const HEADER_LEN: usize = 16;

/// One data segment of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seg {
    /// Guest address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

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
    segs: [Seg; SEG_MAX],
    nsegs: usize,
}

impl Request {
    /// The data segments, in chain order.
    pub fn segs(&self) -> &[Seg] {
        self.segs.get(..self.nsegs).unwrap_or(&[])
    }
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

/// A chain's bytes as the device sees them, gathered in one pass without allocating.
///
/// Any descriptor layout is served (virtio 1.x, "Message Framing": the device must not
/// assume one). The device-readable bytes, in chain order, are the 16-byte header and then
/// OUT's data; the device-writable bytes are IN's (or GET_ID's) data and then the status,
/// the last writable byte. A descriptor may hold the header and data, data and the status,
/// or one part of the header only; Linux happens to give each part descriptors of its own.
#[derive(Debug)]
struct Shape {
    /// The header bytes gathered so far.
    hdr: [u8; HEADER_LEN],
    hdr_got: usize,
    /// The last device-writable descriptor with a byte in it: its last byte is the status.
    last_w: Option<Descriptor>,
    /// Zero-length writable descriptors after `last_w` (data pieces if another follows).
    zeros_w: u32,
    /// The data pieces, as long as there are at most SEG_MAX of them (zero-length pieces
    /// are counted, not kept).
    segs: [Seg; SEG_MAX],
    nsegs: usize,
    /// Data pieces seen, zero-length ones included: the seg_max the driver promised.
    pieces: u32,
    data_len: u64,
    data_writable: Option<bool>,
    mixed_dirs: bool,
    /// A device-readable descriptor came after a device-writable one.
    misordered: bool,
    out_of_memory: bool,
    /// The walk stopped on a descriptor that says NEXT: virtio-queue cut the chain short
    /// (a loop, a u32 length overflow, a bad index or a nested indirect table).
    truncated: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            hdr: [0; HEADER_LEN],
            hdr_got: 0,
            last_w: None,
            zeros_w: 0,
            segs: [Seg::default(); SEG_MAX],
            nsegs: 0,
            pieces: 0,
            data_len: 0,
            data_writable: None,
            mixed_dirs: false,
            misordered: false,
            out_of_memory: false,
            truncated: false,
        }
    }
}

impl Shape {
    /// One piece of the request's data: `len` bytes at `addr`, device-writable or not.
    /// A zero-length piece counts against seg_max and carries nothing, not even a
    /// direction.
    fn piece(&mut self, addr: GuestAddress, len: u32, writable: bool) {
        self.pieces = self.pieces.saturating_add(1);
        if len == 0 {
            return;
        }
        self.data_len = self.data_len.saturating_add(u64::from(len));
        if let Some(slot) = self.segs.get_mut(self.nsegs) {
            *slot = Seg { addr, len };
            self.nsegs = self.nsegs.saturating_add(1);
        }
        match self.data_writable {
            None => self.data_writable = Some(writable),
            Some(x) if x != writable => self.mixed_dirs = true,
            Some(_) => {}
        }
    }

    /// A device-readable descriptor: header bytes first, then data.
    fn readable(&mut self, mem: &GuestMemoryMmap<()>, d: &Descriptor) {
        if self.last_w.is_some() && d.len() > 0 {
            self.misordered = true;
        }
        let need = self.hdr.len().saturating_sub(self.hdr_got);
        if need == 0 {
            self.piece(d.addr(), d.len(), false);
            return;
        }
        let take = need.min(usize::try_from(d.len()).unwrap_or(usize::MAX));
        if take == 0 {
            return;
        }
        let end = self.hdr_got.saturating_add(take);
        let read = self
            .hdr
            .get_mut(self.hdr_got..end)
            .is_some_and(|part| mem.read_slice(part, d.addr()).is_ok());
        if read {
            self.hdr_got = end;
        } else {
            self.out_of_memory = true;
        }
        // take <= need <= 16
        let take = u32::try_from(take).unwrap_or(u32::MAX);
        if d.len() > take {
            match d.addr().checked_add(u64::from(take)) {
                Some(rest) => self.piece(rest, d.len().saturating_sub(take), false),
                None => self.out_of_memory = true,
            }
        }
    }

    /// A device-writable descriptor: data, until one with a byte in it follows.
    fn writable(&mut self, d: Descriptor) {
        if d.len() == 0 {
            self.zeros_w = self.zeros_w.saturating_add(1);
            return;
        }
        if let Some(prev) = self.last_w.replace(d) {
            self.piece(prev.addr(), prev.len(), true);
        }
        for _ in 0..std::mem::take(&mut self.zeros_w) {
            self.piece(d.addr(), 0, true);
        }
    }

    /// The last writable descriptor, which holds the status byte: its bytes before the
    /// status are data. Zero-length descriptors after it carry nothing.
    fn close(&mut self) {
        if let Some(last) = self.last_w {
            if last.len() > 1 {
                self.piece(last.addr(), last.len().saturating_sub(1), true);
            }
        }
    }

    /// Where the status byte goes, if the chain has one in guest memory.
    fn status_addr(&self, mem: &GuestMemoryMmap<()>) -> Option<GuestAddress> {
        let last = self.last_w.filter(|d| in_memory(mem, d))?;
        last.addr()
            .checked_add(u64::from(last.len().saturating_sub(1)))
    }
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
    len == 0 || GuestMemory::check_range(mem, d.addr(), len, perm)
}

fn shape(chain: DescriptorChain<&GuestMemoryMmap<()>>, mem: &GuestMemoryMmap<()>) -> Shape {
    let mut s = Shape::default();
    let mut last_readable = false;
    for d in chain {
        s.truncated = d.has_next();
        if !in_memory(mem, &d) {
            s.out_of_memory = true;
        }
        if d.is_write_only() {
            s.writable(d);
        } else {
            s.readable(mem, &d);
        }
        if d.len() > 0 {
            last_readable = !d.is_write_only();
        }
    }
    s.close();
    if last_readable {
        // The chain ends in bytes the device may not write: no status byte.
        s.last_w = None;
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
    let Some(status_addr) = s.status_addr(mem) else {
        return Err(ParseError::NoStatus);
    };
    let bad = |st: u8| ParseError::Bad {
        addr: status_addr,
        status: st,
    };
    if s.hdr_got < s.hdr.len() || s.out_of_memory || s.misordered {
        return Err(bad(S_IOERR));
    }
    // seg_max is a promise the driver made when it read our configuration.
    if s.pieces > SEG_MAX as u32 {
        return Err(bad(S_IOERR));
    }
    let [k0, k1, k2, k3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = s.hdr;
    let kind = u32::from_le_bytes([k0, k1, k2, k3]);
    let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
    let req = Request {
        kind,
        sector,
        data_len: s.data_len,
        status_addr,
        segs: s.segs,
        nsegs: s.nsegs,
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

/// Guest buffers for one vectored disk call.
pub type Bufs<'a> = [VolatileSlice<'a, ()>];

/// The backing store of a block device. Transfers go straight between the store and the
/// guest's buffers; short transfers are allowed (the caller continues).
pub trait Disk {
    /// Read into `bufs`, in order, from `offset`. Returns the bytes read (0 = end of disk).
    fn read_vectored_at(&mut self, bufs: &Bufs<'_>, offset: u64) -> std::io::Result<usize>;
    /// Write `bufs`, in order, at `offset`. Returns the bytes written.
    fn write_vectored_at(&mut self, bufs: &Bufs<'_>, offset: u64) -> std::io::Result<usize>;
    /// Make writes durable.
    fn flush(&mut self) -> std::io::Result<()>;
}

impl Disk for File {
    fn read_vectored_at(&mut self, bufs: &Bufs<'_>, offset: u64) -> std::io::Result<usize> {
        crate::devices::virtio::sys::preadv(self, bufs, offset)
    }
    fn write_vectored_at(&mut self, bufs: &Bufs<'_>, offset: u64) -> std::io::Result<usize> {
        crate::devices::virtio::sys::pwritev(self, bufs, offset)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// How far the data transfer of a request got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Current segment.
    pub seg: usize,
    /// Offset inside it.
    pub off: u32,
    /// Bytes transferred so far.
    pub done: u64,
}

impl Progress {
    /// Move `n` bytes forward through `segs`.
    fn advance(&mut self, segs: &[Seg], mut n: u64) {
        self.done = self.done.saturating_add(n);
        while n > 0 {
            let Some(s) = segs.get(self.seg) else { return };
            let left = u64::from(s.len.saturating_sub(self.off));
            if n < left {
                // n < left <= u32::MAX
                self.off = self
                    .off
                    .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
                return;
            }
            n -= left;
            self.seg = self.seg.saturating_add(1);
            self.off = 0;
        }
        // Skip empty segments so `seg` points at the next byte.
        while segs.get(self.seg).is_some_and(|s| s.len == 0) {
            self.seg = self.seg.saturating_add(1);
        }
    }
}

/// Outcome of working on a request for one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// Finished: the status, and the bytes written into the chain's data buffers.
    Done(u8, u32),
    /// The turn's budget ran out; continue from the saved [`Progress`] next turn.
    Paused,
}

/// Gather the guest buffers from `p` on, up to `max` bytes and [`IO_VECS`] buffers.
/// `None` if a buffer is not in guest memory (validated at parse; kept as a check).
fn gather<'m>(
    mem: &'m GuestMemoryMmap<()>,
    segs: &[Seg],
    p: Progress,
    max: u64,
    out: &mut Vec<VolatileSlice<'m, ()>>,
) -> Option<()> {
    out.clear();
    let mut want = max;
    let mut seg = p.seg;
    let mut off = p.off;
    while want > 0 && out.len() < IO_VECS {
        let Some(s) = segs.get(seg) else { break };
        let len = u64::from(s.len.saturating_sub(off)).min(want);
        if len > 0 {
            let addr = s.addr.checked_add(u64::from(off))?;
            let len_usize = usize::try_from(len).ok()?;
            for slice in GuestMemoryBackend::get_slices(mem, addr, len_usize) {
                if out.len() >= IO_VECS {
                    return Some(());
                }
                out.push(slice.ok()?);
            }
            want -= len;
        }
        seg = seg.saturating_add(1);
        off = 0;
    }
    Some(())
}

/// Work on a validated request within `budget`: FLUSH (charged [`IO_BYTES`]) and GET_ID
/// finish at once; IN and OUT move at most [`IO_BYTES`] per disk call, checking the budget
/// between calls.
pub fn execute<D: Disk>(
    req: &Request,
    progress: &mut Progress,
    mem: &GuestMemoryMmap<()>,
    disk: &mut D,
    id: &[u8; ID_LEN],
    budget: &mut Budget<'_>,
) -> Exec {
    match req.kind {
        T_FLUSH => {
            // A flush moves no byte of the request, but fdatasync(2) can cost more than a
            // chunk of I/O: it is charged as one, or a ring of flushes would run the
            // queue's worth of them in one turn.
            budget.spend(IO_BYTES);
            return Exec::Done(if disk.flush().is_ok() { S_OK } else { S_IOERR }, 0);
        }
        T_GET_ID => {
            budget.spend(ID_LEN as u64);
            return get_id(req, mem, id);
        }
        _ => {}
    }
    // Fixed capacity (IO_VECS): never grows with what the guest sends.
    let mut bufs: Vec<VolatileSlice<'_, ()>> = Vec::with_capacity(IO_VECS);
    while progress.done < req.data_len {
        let grant = budget.grant(IO_BYTES.min(req.data_len - progress.done));
        if grant == 0 {
            return Exec::Paused;
        }
        if gather(mem, req.segs(), *progress, grant, &mut bufs).is_none() || bufs.is_empty() {
            return Exec::Done(S_IOERR, 0);
        }
        let offset = req
            .sector
            .saturating_mul(SECTOR_SIZE)
            .saturating_add(progress.done);
        let r = if req.kind == T_IN {
            disk.read_vectored_at(&bufs, offset)
        } else {
            disk.write_vectored_at(&bufs, offset)
        };
        let n = match r {
            Ok(0) | Err(_) => return Exec::Done(S_IOERR, 0),
            Ok(n) => u64::try_from(n).unwrap_or(0).min(grant),
        };
        budget.spend(n);
        progress.advance(req.segs(), n);
    }
    let written = if req.kind == T_IN {
        u32::try_from(req.data_len).unwrap_or(u32::MAX)
    } else {
        0
    };
    Exec::Done(S_OK, written)
}

fn get_id(req: &Request, mem: &GuestMemoryMmap<()>, id: &[u8; ID_LEN]) -> Exec {
    let mut done = 0usize;
    for s in req.segs() {
        let Some(src) = id.get(done..) else { break };
        let take = src.len().min(usize::try_from(s.len).unwrap_or(usize::MAX));
        let Some(part) = src.get(..take) else { break };
        if mem.write_slice(part, s.addr).is_err() {
            return Exec::Done(S_IOERR, u32::try_from(done).unwrap_or(0));
        }
        done = done.saturating_add(take);
        if done >= ID_LEN {
            break;
        }
    }
    Exec::Done(S_OK, u32::try_from(done).unwrap_or(0))
}

/// Write the status byte of a finished request; returns the chain's used length (data
/// written + the status byte, or just the data if the status byte cannot be written).
pub fn finish(
    mem: &GuestMemoryMmap<()>,
    status_addr: GuestAddress,
    status: u8,
    written: u32,
) -> u32 {
    if mem.write_obj(status, status_addr).is_err() {
        return written;
    }
    written.saturating_add(1)
}

/// A request the budget interrupted: the chain's head and where the transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Head index of the chain (returned to the used ring when done).
    pub head: u16,
    /// The validated request.
    pub req: Request,
    /// Transfer progress.
    pub progress: Progress,
}

/// The disk a request works on.
#[derive(Debug)]
pub struct DiskRef<'a, D> {
    /// Backing store.
    pub disk: &'a mut D,
    /// Capacity in sectors.
    pub capacity: u64,
    /// Refuse writes.
    pub read_only: bool,
    /// GET_ID answer.
    pub id: &'a [u8; ID_LEN],
}

/// Parse and start a chain: `Some(used length)` when it finished (or was refused) now;
/// `None` when the budget interrupted it, which is then left in `inflight` for [`resume`].
pub fn start<D: Disk>(
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    d: &mut DiskRef<'_, D>,
    budget: &mut Budget<'_>,
    inflight: &mut Option<InFlight>,
) -> Option<u32> {
    let head = chain.head_index();
    let req = match parse(chain, mem, d.capacity, d.read_only) {
        Ok(req) => req,
        Err(ParseError::NoStatus) => return Some(0),
        Err(ParseError::Bad { addr, status }) => {
            budget.spend(0);
            return Some(finish(mem, addr, status, 0));
        }
    };
    let mut f = InFlight {
        head,
        req,
        progress: Progress::default(),
    };
    let done = resume(&mut f, mem, d.disk, d.id, budget);
    if done.is_none() {
        *inflight = Some(f);
    }
    done
}

/// Continue an interrupted request; `Some(used length)` once it is finished.
pub fn resume<D: Disk>(
    f: &mut InFlight,
    mem: &GuestMemoryMmap<()>,
    disk: &mut D,
    id: &[u8; ID_LEN],
    budget: &mut Budget<'_>,
) -> Option<u32> {
    match execute(&f.req, &mut f.progress, mem, disk, id, budget) {
        Exec::Done(status, written) => Some(finish(mem, f.req.status_addr, status, written)),
        Exec::Paused => None,
    }
}

/// Handle one chain end to end, whatever the size (tests and fuzzing; the device goes
/// through [`start`]/[`resume`] with a per-turn budget).
pub fn handle_chain<D: Disk>(
    chain: DescriptorChain<&GuestMemoryMmap<()>>,
    mem: &GuestMemoryMmap<()>,
    disk: &mut D,
    capacity: u64,
    read_only: bool,
    id: &[u8; ID_LEN],
) -> u32 {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut budget = Budget::new(u64::MAX, &stop);
    let mut inflight = None;
    let mut d = DiskRef {
        disk,
        capacity,
        read_only,
        id,
    };
    // Never interrupted with an unbounded budget nobody stops (else: like a dropped chain).
    start(chain, mem, &mut d, &mut budget, &mut inflight).unwrap_or(0)
}
