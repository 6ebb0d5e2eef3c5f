// SPDX-License-Identifier: GPL-3.0-or-later
//! Boot timer: the guest writes the magic byte 123 at offset 0 just before
//! exec'ing init; the VMM logs the time since its own start.

use std::time::Instant;

use super::bus::MmioDevice;

/// The magic value.
pub const MAGIC: u8 = 123;

/// The device.
#[derive(Debug)]
pub struct BootTimer {
    start: Instant,
}

impl BootTimer {
    /// `start` is the VMM's start time.
    pub fn new(start: Instant) -> Self {
        Self { start }
    }

    /// The log line for a magic write now.
    pub fn line(&self) -> String {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        format!("boot-timer: guest init after {ms:.1} ms")
    }
}

impl MmioDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data == [MAGIC] {
            let mut line = self.line();
            line.push('\n');
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let t = BootTimer::new(Instant::now());
        assert!(t.line().starts_with("boot-timer: guest init after "));
        assert!(t.line().ends_with(" ms"));
    }
}
