// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's entry point: decide the mode, then wire the modules to the event loop.

use bay0::cli::{self, Invocation};
use bay0::config::Config;
use bay0::control::Control;
use bay0::error::Result;
use bay0::event::{EventLoop, RealProcesses};
use bay0::hosted::{self, Role};
use bay0::init::{self, Mode, RealMounts};
use bay0::room::Layout;
use bay0::rooms::Rooms;
use bay0::supervisor::Supervisor;
use bay0::watchdog::{RealDevice, Watchdog};
use bay0::{input, logger, shutdown, sys, vault};
use bay0::{log_error, log_info, log_warn};
use std::ffi::OsString;
use std::path::Path;

const CONTROL_PATH: &str = anchor_proto::control::SOCKET_PATH;

fn main() {
    let is_pid1 = std::process::id() == 1;
    match cli::parse(std::env::args_os().skip(1), is_pid1) {
        Ok(Invocation::Help) => print!("{}", cli::HELP),
        Ok(Invocation::Version) => println!("bay0 {}", env!("CARGO_PKG_VERSION")),
        Ok(Invocation::Pid1) => boot(Mode::Machine, &[], Layout::system()),
        Ok(Invocation::Hosted {
            state_dir,
            layout,
            command,
        }) => match hosted::enter(&state_dir) {
            Ok(Role::Relay(code)) => std::process::exit(code),
            Ok(Role::Init(dir)) => {
                let layout = layout.map_or_else(Layout::system, |l| Layout::under(Path::new(&l)));
                boot(Mode::Hosted(&dir), &command, layout)
            }
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
fn boot(mode: Mode<'_>, command: &[OsString], layout: Layout) -> ! {
    let hosted = matches!(mode, Mode::Hosted(_));
    match run(mode, command, layout) {
        Ok(never) => match never {},
        Err(e) => shutdown::fatal(e, hosted),
    }
}

fn run(mode: Mode<'_>, command: &[OsString], layout: Layout) -> Result<core::convert::Infallible> {
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
    // Before any room: no room can take the locks of the kernel's one anonymous inode.
    let _anon = sys::pin_anon_inode_locks().inspect_err(|e| log_warn!("{e}"));
    // Probed once: `auto` rooms are microVMs only where KVM really runs a VM.
    let kvm = sys::kvm_usable();
    match kvm {
        Ok(()) => log_info!("/dev/kvm usable (a test VM was created): auto rooms are microVMs"),
        Err(e) => log_info!("/dev/kvm not usable ({e}): auto rooms run in namespaces"),
    }
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
        match hosted::spawn("spawn command", command, None) {
            Ok(pid) => {
                log_info!("started command as pid {pid}");
                event_loop.supervise(pid);
            }
            Err(e) => log_error!("{e}"),
        }
    }
    event_loop.courier.arb.timeout_s = config.courier_timeout_s;
    event_loop.rooms = Some(Rooms::new(layout, kvm.is_ok()));
    match Control::open(&event_loop.epoll, CONTROL_PATH) {
        Ok(c) => event_loop.control = Some(c),
        Err(e) => log_error!(
            "control socket {}: {e}; anchorctl cannot reach bay0",
            CONTROL_PATH
        ),
    }
    let mut supervisor = Supervisor::new(config.shutdown_grace_s);
    log_info!("ready");
    // The vault dialog needs the console: bay0's console, the boot rooms and the update
    // check of this boot wait for it.
    match config.vault.map(|d| (d, vault::start_unlock(&d))) {
        Some((_, Ok(pid))) => event_loop.wait_for_vault(pid, config),
        Some((d, Err(e))) => {
            log_error!("vault {}: {e}", d.as_str());
            event_loop.open_console(&config, Some("the vault helper did not start"));
        }
        None => event_loop.open_console(&config, None),
    }
    let stop = event_loop.run(&mut supervisor, &mut RealProcesses)?;
    shutdown::finish(!machine, stop, event_loop.take_watchdog(), mounted)
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
