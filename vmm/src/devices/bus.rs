// SPDX-License-Identifier: GPL-3.0-or-later
//! The MMIO bus: a sorted list of non-overlapping address windows, each owned
//! by one device. Called from vcpu threads; never panics on guest input.

use std::fmt;
use std::sync::{Arc, Mutex};

/// A device reachable through guest-physical MMIO.
pub trait MmioDevice: Send {
    /// `offset` is relative to the device's base; `data.len()` is 1, 2, 4 or 8.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// `offset` is relative to the device's base; `data.len()` is 1, 2, 4 or 8.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors while building the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusError {
    /// The new window is empty or wraps around the address space.
    BadWindow { base: u64, len: u64 },
    /// The new window overlaps an existing one.
    Overlap { base: u64, len: u64 },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadWindow { base, len } => {
                write!(f, "invalid MMIO window {base:#x}+{len:#x}")
            }
            Self::Overlap { base, len } => {
                write!(f, "MMIO window {base:#x}+{len:#x} overlaps another device")
            }
        }
    }
}

impl std::error::Error for BusError {}

/// Result of a bus access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A device handled the access.
    Handled,
    /// No device covers the address (reads return all-ones).
    Unmapped,
    /// The device's mutex was poisoned: the device is considered failed.
    DeviceFailed,
}

struct Entry {
    base: u64,
    len: u64,
    dev: Arc<Mutex<dyn MmioDevice>>,
}

/// The MMIO bus. Cloned cheaply (Arc'd devices) into each vcpu thread.
#[derive(Clone, Default)]
pub struct MmioBus {
    entries: Arc<Vec<Entry>>,
}

impl fmt::Debug for MmioBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        for e in self.entries.iter() {
            l.entry(&format_args!("{:#x}+{:#x}", e.base, e.len));
        }
        l.finish()
    }
}

/// Builder used before the vcpus start; the bus is immutable afterwards.
#[derive(Default)]
pub struct MmioBusBuilder {
    entries: Vec<Entry>,
}

impl fmt::Debug for MmioBusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MmioBusBuilder({} devices)", self.entries.len())
    }
}

impl MmioBusBuilder {
    /// Creates an empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `dev` at `[base, base + len)`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        dev: Arc<Mutex<dyn MmioDevice>>,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::BadWindow { base, len })?;
        let overlaps = self
            .entries
            .iter()
            .any(|e| base < e.base.saturating_add(e.len) && e.base < end);
        if overlaps {
            return Err(BusError::Overlap { base, len });
        }
        self.entries.push(Entry { base, len, dev });
        self.entries.sort_by_key(|e| e.base);
        Ok(())
    }

    /// Freezes the bus.
    pub fn build(self) -> MmioBus {
        MmioBus {
            entries: Arc::new(self.entries),
        }
    }
}

impl MmioBus {
    fn find(&self, addr: u64, size: usize) -> Option<(&Entry, u64)> {
        let size = u64::try_from(size).ok()?;
        let idx = self.entries.partition_point(|e| e.base <= addr);
        let e = self.entries.get(idx.checked_sub(1)?)?;
        let off = addr.checked_sub(e.base)?;
        // The whole access must lie inside the window.
        if off.checked_add(size)? <= e.len {
            Some((e, off))
        } else {
            None
        }
    }

    /// Dispatches a guest read. Unmapped reads fill `data` with 0xff.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Access {
        if !matches!(data.len(), 1 | 2 | 4 | 8) {
            data.fill(0xff);
            return Access::Unmapped;
        }
        let Some((e, off)) = self.find(addr, data.len()) else {
            data.fill(0xff);
            return Access::Unmapped;
        };
        match e.dev.lock() {
            Ok(mut d) => {
                d.read(off, data);
                Access::Handled
            }
            Err(_) => {
                data.fill(0xff);
                Access::DeviceFailed
            }
        }
    }

    /// Dispatches a guest write. Unmapped writes are dropped.
    pub fn write(&self, addr: u64, data: &[u8]) -> Access {
        if !matches!(data.len(), 1 | 2 | 4 | 8) {
            return Access::Unmapped;
        }
        let Some((e, off)) = self.find(addr, data.len()) else {
            return Access::Unmapped;
        };
        match e.dev.lock() {
            Ok(mut d) => {
                d.write(off, data);
                Access::Handled
            }
            Err(_) => Access::DeviceFailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reg(u64);
    impl MmioDevice for Reg {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            let v = self.0.wrapping_add(offset).to_le_bytes();
            data.copy_from_slice(&v[..data.len()]);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            let mut b = [0u8; 8];
            b[..data.len()].copy_from_slice(data);
            self.0 = u64::from_le_bytes(b);
        }
    }

    #[test]
    fn dispatch_and_bounds() {
        let mut b = MmioBusBuilder::new();
        let dev: Arc<Mutex<dyn MmioDevice>> = Arc::new(Mutex::new(Reg(0x10)));
        b.insert(0x1000, 0x100, dev.clone()).unwrap();
        assert_eq!(
            b.insert(0x10ff, 0x10, dev.clone()),
            Err(BusError::Overlap {
                base: 0x10ff,
                len: 0x10
            })
        );
        assert!(b.insert(u64::MAX, 2, dev.clone()).is_err());
        assert!(b.insert(0x2000, 0, dev).is_err());
        let bus = b.build();
        let mut d = [0u8; 4];
        assert_eq!(bus.read(0x1004, &mut d), Access::Handled);
        assert_eq!(u32::from_le_bytes(d), 0x14);
        // Straddles the end of the window.
        assert_eq!(bus.read(0x10fe, &mut d), Access::Unmapped);
        assert_eq!(d, [0xff; 4]);
        assert_eq!(bus.write(0x0fff, &[1]), Access::Unmapped);
        assert_eq!(
            bus.write(0x1000, &[7, 0, 0, 0, 0, 0, 0, 0]),
            Access::Handled
        );
        assert_eq!(bus.read(0x1000, &mut d), Access::Handled);
        assert_eq!(u32::from_le_bytes(d), 7);
        let mut odd = [0u8; 3];
        assert_eq!(bus.read(0x1000, &mut odd), Access::Unmapped);
    }

    #[test]
    fn poisoned_device_is_reported_not_panicking() {
        let dev: Arc<Mutex<dyn MmioDevice>> = Arc::new(Mutex::new(Reg(0)));
        let d2 = dev.clone();
        let _ = std::thread::spawn(move || {
            let _g = d2.lock().unwrap();
            panic!("poison");
        })
        .join();
        let mut b = MmioBusBuilder::new();
        b.insert(0, 0x10, dev).unwrap();
        let bus = b.build();
        let mut d = [0u8; 1];
        assert_eq!(bus.read(0, &mut d), Access::DeviceFailed);
        assert_eq!(bus.write(0, &[1]), Access::DeviceFailed);
    }
}
