// SPDX-License-Identifier: GPL-3.0-or-later
//! Runs a built VM: one thread per vcpu, the event loop on the calling (VMM)
//! thread, seccomp on every thread before the first guest instruction, and
//! the process exit once the first terminal condition is latched.

use std::sync::{Arc, Barrier};

use event_manager::{EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;

use crate::builder::{Built, Subscriber};
use crate::exit::{ExitLatch, Stop, EXIT_VMM_ERROR};
use crate::seccomp::{self, ThreadKind};
use crate::sys;
use crate::vstate::vcpu;

/// Wakes the event loop when the exit latch fires.
struct ExitWatcher {
    latch: Arc<ExitLatch>,
}

impl MutEventSubscriber for ExitWatcher {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.latch.evt.read();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if ops.add(Events::new(&self.latch.evt, EventSet::IN)).is_err() {
            self.latch
                .request(Stop::new(EXIT_VMM_ERROR, "cannot watch the exit eventfd"));
        }
    }
}

/// Syscalls a vcpu thread would make if it returned (closing its VcpuFd;
/// std's thread exit disabling the signal stack it installed), none of which
/// the vcpu filter allows: so the thread parks instead. (munmap, which the
/// same exit path uses to free that signal stack, is allowed: the allocator
/// needs it.) A unit test checks this list against seccomp/vcpu.json.
pub const PARKED_VCPU_AVOIDS: &[&str] = &["close", "sigaltstack"];

/// Options for `run`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Test-only: issue a forbidden syscall on the VMM thread after its
    /// filter is installed.
    pub seccomp_test_trigger: bool,
    /// Print the `--exit-stats` line when the VM stops.
    pub exit_stats: bool,
}

/// Runs the VM to its end and returns why it stopped. The caller exits the
/// process right away (the VM, its memory and the vcpu threads are left to
/// the kernel's teardown).
pub fn run(built: Built, opts: RunOptions) -> Stop {
    let Built {
        mem,
        vm,
        vcpus,
        ctx,
        mut events,
        cmdline: _,
        stats,
    } = built;
    let latch = ctx.latch.clone();
    let watcher: Subscriber = Arc::new(std::sync::Mutex::new(ExitWatcher {
        latch: latch.clone(),
    }));
    events.add_subscriber(watcher);
    if let Err(e) = sys::install_kick_handler() {
        return Stop::new(
            EXIT_VMM_ERROR,
            format!("installing the vcpu kick handler: {e}"),
        );
    }

    let start = Arc::new(Barrier::new(vcpus.len() + 1));
    let mut threads = Vec::with_capacity(vcpus.len());
    for (id, fd) in vcpus.into_iter().enumerate() {
        let ctx = ctx.clone();
        let start = start.clone();
        let id = id as u8;
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut fd = fd;
                let ok = match seccomp::install(ThreadKind::Vcpu) {
                    Ok(()) => true,
                    Err(e) => {
                        ctx.latch.request(Stop::new(EXIT_VMM_ERROR, e.to_string()));
                        false
                    }
                };
                start.wait();
                if ok && !ctx.latch.is_stopping() {
                    vcpu::run(&mut fd, id, &ctx);
                }
                // Never return (and never drop `fd`): thread exit and fd close
                // would need syscalls the vcpu filter does not allow (see
                // `PARKED_VCPU_AVOIDS`), and the process is about to exit anyway.
                loop {
                    std::thread::park();
                }
            });
        match spawned {
            Ok(h) => threads.push(h),
            Err(e) => {
                return Stop::new(EXIT_VMM_ERROR, format!("spawning vcpu thread {id}: {e}"));
            }
        }
    }

    if let Err(e) = seccomp::install(ThreadKind::Vmm) {
        latch.request(Stop::new(EXIT_VMM_ERROR, e.to_string()));
    }
    start.wait();
    if opts.seccomp_test_trigger {
        #[cfg(feature = "seccomp-test-trigger")]
        sys::forbidden_syscall();
    }

    while !latch.is_stopping() {
        if let Err(e) = events.run() {
            latch.request(Stop::new(EXIT_VMM_ERROR, format!("event loop: {e:?}")));
        }
    }
    // Stop the other vcpus promptly (they also die with the process).
    for t in &threads {
        sys::kick_thread(t);
    }
    // What the console takes now of an open line; a stalled console never holds the exit.
    if let Ok(mut s) = ctx.ports.serial.try_lock() {
        s.flush_now();
    }
    if opts.exit_stats {
        crate::log::say(format_args!("{}", crate::stats::line(&stats)));
    }
    // Keep VM and memory alive until the process exits: no teardown work.
    std::mem::forget(vm);
    std::mem::forget(mem);
    std::mem::forget(threads);
    std::mem::forget(events);
    latch
        .take()
        .unwrap_or_else(|| Stop::new(EXIT_VMM_ERROR, "stopped without a reason"))
}

#[cfg(test)]
mod tests {
    use super::PARKED_VCPU_AVOIDS;

    fn allowed(json: &str) -> Vec<&str> {
        json.split("\"syscall\": \"")
            .skip(1)
            .filter_map(|p| p.split('"').next())
            .collect()
    }

    /// Regression (review): runner.rs said the vcpu filter lacked munmap while
    /// vcpu.json allowed it. The reason vcpu threads park must match the filter.
    #[test]
    fn parked_vcpu_reason_matches_the_vcpu_filter() {
        let vcpu = allowed(include_str!("../seccomp/vcpu.json"));
        assert!(
            vcpu.contains(&"ioctl") && vcpu.contains(&"munmap"),
            "{vcpu:?}"
        );
        for name in PARKED_VCPU_AVOIDS {
            assert!(
                !vcpu.contains(name),
                "runner.rs parks vcpu threads because `{name}` is not allowed, but vcpu.json allows it"
            );
        }
    }
}
