// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's entry point: decide the mode, then wire the modules to the event loop.

use bay0::cli::{self, Invocation};
use bay0::config::{Config, RoomName};
use bay0::error::Result;
use bay0::event::{EventLoop, RealProcesses};
use bay0::hosted::{self, Role};
use bay0::init::{self, Mode, RealMounts};
use bay0::supervisor::Supervisor;
use bay0::watchdog::{RealDevice, Watchdog};
use bay0::{input, logger, room, shutdown, sys, update};
use bay0::{log_error, log_info, log_notice, log_warn};
use std::ffi::OsString;

fn main() {
    let is_pid1 = std::process::id() == 1;
    match cli::parse(std::env::args_os().skip(1), is_pid1) {
        Ok(Invocation::Help) => print!("{}", cli::HELP),
        Ok(Invocation::Version) => println!("bay0 {}", env!("CARGO_PKG_VERSION")),
        Ok(Invocation::Pid1) => boot(Mode::Machine, &[]),
        Ok(Invocation::Hosted { state_dir, command }) => match hosted::enter(&state_dir) {
            Ok(Role::Relay(code)) => std::process::exit(code),
            Ok(Role::Init(dir)) => boot(Mode::Hosted(&dir), &command),
            Err(e) => {
                logger::to_stderr(format_args!("{e}"));
                std::process::exit(1);
            }
        },
        Err(e) => {
            logger::to_stderr(format_args!("{e}"));
            std::process::exit(2);
        }
    }
}

/// Run as PID 1; never returns.
fn boot(mode: Mode<'_>, command: &[OsString]) -> ! {
    let hosted = matches!(mode, Mode::Hosted(_));
    match run(mode, command) {
        Ok(never) => match never {},
        Err(e) => shutdown::fatal(e, hosted),
    }
}

fn run(mode: Mode<'_>, command: &[OsString]) -> Result<core::convert::Infallible> {
    let machine = matches!(mode, Mode::Machine);
    logger::use_stderr();
    let mut event_loop = EventLoop::new()?;
    let mounted = init::mount_all(&mut RealMounts, mode, &mut |target, e| {
        log_error!("mount {}: {e}", target.to_str().unwrap_or("?"));
    });
    let mut config = Config::default();
    if machine {
        // The base is the signed UKI's initramfs, in RAM: nothing changes it at run time
        // (docs/THREAT-MODEL.md); runtime state lives on /run, /tmp and /dev.
        let ro = libc::MS_REMOUNT | libc::MS_RDONLY;
        match sys::mount("remount / read-only", None, c"/", None, ro, None) {
            Ok(()) => log_info!("/ is read-only"),
            Err(e) => log_warn!("{e}"),
        }
        match sys::open("open /dev/kmsg", c"/dev/kmsg", libc::O_WRONLY) {
            Ok(fd) => logger::use_kmsg(fd),
            Err(e) => log_warn!("{e}; logging to the console"),
        }
        if let Err(e) = init::unlimit_kmsg() {
            log_warn!("{e}");
        }
        // Ctrl-Alt-Del becomes SIGINT to us instead of an immediate reboot.
        if let Err(e) = sys::reboot(libc::RB_DISABLE_CAD) {
            log_warn!("disabling Ctrl-Alt-Del: {e}");
        }
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        config = Config::from_cmdline(&cmdline, &mut |word, e| {
            log_warn!("kernel command line {word}: {e}")
        });
    }
    let how = if machine { "machine" } else { "hosted" };
    log_info!("starting as PID 1 ({how})");
    let kvm = std::path::Path::new("/dev/kvm").exists();
    log_info!("/dev/kvm {}", if kvm { "present" } else { "absent" });
    if machine {
        arm_watchdog(&mut event_loop, &config)?;
        let buttons = input::open_power_buttons();
        log_info!("watching {} power button device(s)", buttons.len());
        for fd in buttons {
            event_loop.add_input(fd)?;
        }
    }
    event_loop.set_stall_after(config.debug_stall_after);
    if !command.is_empty() {
        match hosted::spawn(command) {
            Ok(pid) => {
                log_info!("started command as pid {pid}");
                event_loop.supervise(pid);
            }
            Err(e) => log_error!("{e}"),
        }
    }
    let mut supervisor = Supervisor::new(config.shutdown_grace_s);
    log_info!("ready");
    let boot_room = config
        .boot_room
        .map(|name| (name, open_room(&mut event_loop, name, kvm)));
    match update::spawn_bless(boot_room) {
        Some(Ok(pid)) => event_loop.supervise(pid),
        Some(Err(e)) => log_error!("{}: {e}", update::HELPER),
        None => {}
    }
    let stop = event_loop.run(&mut supervisor, &mut RealProcesses)?;
    shutdown::finish(!machine, stop, event_loop.take_watchdog(), mounted)
}

/// Open the boot room; a room that cannot start is logged, never fatal for PID 1.
fn open_room(event_loop: &mut EventLoop, name: RoomName, kvm: bool) -> Option<i32> {
    match room::open(&room::Layout::system(), name.as_str(), kvm) {
        Ok(pid) => {
            log_notice!("room {} opened (anchor-vmm pid {pid})", name.as_str());
            event_loop.supervise_room(pid, name);
            Some(pid)
        }
        Err(e) => {
            log_error!("room {}: {e}", name.as_str());
            None
        }
    }
}

fn arm_watchdog(event_loop: &mut EventLoop, config: &Config) -> Result<()> {
    let device = match RealDevice::open() {
        Ok(Some(device)) => device,
        Ok(None) => {
            log_warn!("no /dev/watchdog: running without a hardware watchdog");
            return Ok(());
        }
        Err(e) => {
            log_error!("{e}: running without a hardware watchdog");
            return Ok(());
        }
    };
    let watchdog = match Watchdog::arm(Box::new(device), config.watchdog) {
        Ok(watchdog) => watchdog,
        Err(e) => {
            log_error!("arming the watchdog: {e}; running without it");
            return Ok(());
        }
    };
    log_info!(
        "watchdog armed: timeout {} s, tickle every {} s",
        watchdog.timeout_s,
        watchdog.interval_s
    );
    event_loop.set_watchdog(watchdog)
}
