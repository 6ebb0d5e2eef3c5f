// SPDX-License-Identifier: GPL-3.0-or-later
//! The end of PID 1: once every process is gone, sync, unmount what bay0 mounted, disarm
//! the watchdog and power off or reboot. In hosted mode bay0 exits 0 instead. The
//! watchdog stays armed till the disks are done with: a sync, vault close or unmount that
//! hangs gets the machine reset, not halted for good.
//! A fatal error takes the same road on purpose: PID 1 never just exits.

use crate::error::Error;
use crate::init::{self, Mounted, RealMounts};
use crate::supervisor::Stop;
use crate::sys;
use crate::watchdog::Watchdog;

/// Finish a clean shutdown. Never returns.
pub fn finish(hosted: bool, stop: Stop, watchdog: Option<Watchdog>, mounted: Mounted) -> ! {
    sys::sync();
    crate::vault::close();
    init::unmount_all(&mut RealMounts, mounted, &mut |target, e| {
        crate::log_warn!("unmount {}: {e}", target.to_str().unwrap_or("?"));
    });
    sys::sync();
    if let Some(wd) = watchdog {
        match wd.close() {
            Ok(()) => crate::log_info!("watchdog disarmed"),
            Err(e) => crate::log_error!("watchdog magic close: {e}"),
        }
    }
    if hosted {
        crate::log_info!("hosted: all processes ended, exiting");
        std::process::exit(0);
    }
    let (cmd, what) = match stop {
        Stop::PowerOff => (libc::RB_POWER_OFF, "powering off"),
        Stop::Reboot => (libc::RB_AUTOBOOT, "rebooting"),
    };
    crate::log_notice!("file systems synced and unmounted; {what}");
    if let Err(e) = sys::reboot(cmd) {
        crate::log_error!("{what}: {e}; halting here");
    }
    sys::pause_forever()
}

/// A fatal error: log it and power off (a machine) or exit 1 (hosted). Never returns.
pub fn fatal(err: Error, hosted: bool) -> ! {
    crate::log_error!(
        "fatal: {err}; {}",
        if hosted { "exiting" } else { "powering off" }
    );
    sys::sync();
    if hosted {
        std::process::exit(1);
    }
    if let Err(e) = sys::reboot(libc::RB_POWER_OFF) {
        crate::log_error!("power off: {e}; halting here");
    }
    sys::pause_forever()
}
