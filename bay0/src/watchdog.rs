// SPDX-License-Identifier: GPL-3.0-or-later
//! The hardware watchdog: opened at boot when /dev/watchdog exists, its timeout set,
//! tickled from the event loop. If bay0's loop stops, the tickles stop and the hardware
//! resets the machine. On a clean shutdown the magic close ('V') disarms it.

use crate::config::WatchdogConfig;
use crate::error::Result;
use std::os::fd::{AsRawFd, OwnedFd};

/// Where the kernel exposes the first watchdog.
pub const DEVICE: &std::ffi::CStr = c"/dev/watchdog";

/// The operations on an open watchdog device.
pub trait Device {
    fn set_timeout(&mut self, secs: u32) -> Result<u32>;
    fn keepalive(&mut self) -> Result<()>;
    /// Write the magic 'V' and close: the driver disarms (unless built NOWAYOUT).
    fn magic_close(self: Box<Self>) -> Result<()>;
}

/// /dev/watchdog.
#[derive(Debug)]
pub struct RealDevice(OwnedFd);

impl RealDevice {
    /// Open the device; Ok(None) when the machine has none.
    pub fn open() -> Result<Option<RealDevice>> {
        match crate::sys::open("open /dev/watchdog", DEVICE, libc::O_WRONLY) {
            Ok(fd) => Ok(Some(RealDevice(fd))),
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::ENODEV)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Device for RealDevice {
    fn set_timeout(&mut self, secs: u32) -> Result<u32> {
        Ok(crate::sys::watchdog_set_timeout(&self.0, secs)?)
    }
    fn keepalive(&mut self) -> Result<()> {
        Ok(crate::sys::watchdog_keepalive(&self.0)?)
    }
    fn magic_close(self: Box<Self>) -> Result<()> {
        Ok(crate::sys::write("write watchdog magic", self.0.as_raw_fd(), b"V").map(drop)?)
    }
}

/// An armed watchdog and how often to tickle it.
pub struct Watchdog {
    device: Box<dyn Device>,
    /// Timeout the driver accepted, seconds.
    pub timeout_s: u32,
    /// Seconds between tickles.
    pub interval_s: u32,
    ticks: u64,
}

impl core::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Watchdog(timeout {} s, every {} s)",
            self.timeout_s, self.interval_s
        )
    }
}

impl Watchdog {
    /// Arm `device` with the configured timeout. If the driver refuses the timeout it
    /// keeps its own, which is read back by a second request with that value.
    pub fn arm(mut device: Box<dyn Device>, cfg: WatchdogConfig) -> Result<Watchdog> {
        let timeout_s = match device.set_timeout(cfg.timeout_s) {
            Ok(actual) if actual > 0 => actual,
            Ok(_) => cfg.timeout_s,
            Err(e) => {
                crate::log_warn!(
                    "watchdog refused a {} s timeout ({e}); keeping its default",
                    cfg.timeout_s
                );
                cfg.timeout_s
            }
        };
        device.keepalive()?;
        Ok(Watchdog {
            device,
            timeout_s,
            interval_s: cfg.interval_for(timeout_s),
            ticks: 0,
        })
    }

    /// Tickle; returns the number of tickles so far.
    pub fn tickle(&mut self) -> Result<u64> {
        self.device.keepalive()?;
        self.ticks = self.ticks.saturating_add(1);
        Ok(self.ticks)
    }

    /// Disarm on a clean shutdown.
    pub fn close(self) -> Result<()> {
        self.device.magic_close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Fake {
        log: Rc<RefCell<Vec<String>>>,
        max_timeout: u32,
        refuse: bool,
    }

    impl Device for Fake {
        fn set_timeout(&mut self, secs: u32) -> Result<u32> {
            self.log.borrow_mut().push(format!("timeout {secs}"));
            if self.refuse {
                return Err(Error::Sys {
                    op: "WDIOC_SETTIMEOUT",
                    errno: libc::EINVAL,
                });
            }
            Ok(secs.min(self.max_timeout))
        }
        fn keepalive(&mut self) -> Result<()> {
            self.log.borrow_mut().push("ping".into());
            Ok(())
        }
        fn magic_close(self: Box<Self>) -> Result<()> {
            self.log.borrow_mut().push("V".into());
            Ok(())
        }
    }

    fn fake(max_timeout: u32, refuse: bool) -> (Box<Fake>, Rc<RefCell<Vec<String>>>) {
        let log = Rc::new(RefCell::new(Vec::new()));
        (
            Box::new(Fake {
                log: log.clone(),
                max_timeout,
                refuse,
            }),
            log,
        )
    }

    #[test]
    fn arming_sets_timeout_pings_and_closes_with_magic() {
        let (dev, log) = fake(1000, false);
        let mut wd = Watchdog::arm(
            dev,
            WatchdogConfig {
                timeout_s: 60,
                interval_s: 30,
            },
        )
        .unwrap();
        assert_eq!((wd.timeout_s, wd.interval_s), (60, 30));
        assert_eq!(wd.tickle().unwrap(), 1);
        assert_eq!(wd.tickle().unwrap(), 2);
        wd.close().unwrap();
        assert_eq!(*log.borrow(), ["timeout 60", "ping", "ping", "ping", "V"]);
    }

    #[test]
    fn a_shorter_driver_timeout_shortens_the_interval() {
        let (dev, _) = fake(20, false);
        let wd = Watchdog::arm(
            dev,
            WatchdogConfig {
                timeout_s: 60,
                interval_s: 30,
            },
        )
        .unwrap();
        assert_eq!((wd.timeout_s, wd.interval_s), (20, 10));
    }

    #[test]
    fn a_refused_timeout_still_arms() {
        let (dev, log) = fake(20, true);
        let wd = Watchdog::arm(
            dev,
            WatchdogConfig {
                timeout_s: 8,
                interval_s: 2,
            },
        )
        .unwrap();
        assert_eq!(wd.interval_s, 2);
        assert_eq!(log.borrow().last().unwrap(), "ping");
    }
}
