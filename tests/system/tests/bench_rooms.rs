// SPDX-License-Identifier: GPL-3.0-or-later
//! Room benchmarks in the anchor host (run by tests/system/bench-rooms.sh from `make bench`;
//! `#[ignore]`d so `make test` does not run them). Printed, never asserted:
//! - `anchorctl room start` -> agent ready, one room, 5 times;
//! - three rooms started at once -> all ready;
//! - `anchorctl room reset` (stop -> agent ready again), 5 times;
//! - bay0's RSS idle and with three rooms;
//! - jail setup cost: anchor-vmm started by hand vs through anchor-jail (same arguments,
//!   same run, alternating), exec -> the agent's ready line.
//!
//! Times come from the anchor host's /proc/uptime (10 ms resolution) around each command.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{rooms_initramfs, Machine, Options};
use std::time::Duration;

const T: Duration = Duration::from_secs(300);

/// Seconds `cmd` took in the anchor host.
fn timed(m: &mut Machine, cmd: &str) -> f64 {
    let out = m
        .sh_ok(
            &format!(
            "t0=$(cut -d' ' -f1 /proc/uptime); {cmd} >/dev/null; t1=$(cut -d' ' -f1 /proc/uptime); \
             echo took=$(echo \"$t1 $t0\" | awk '{{printf \"%.2f\", $1 - $2}}')"
        ),
            T,
        )
        .unwrap();
    out.lines()
        .find_map(|l| l.trim().strip_prefix("took="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no timing in {out:?}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rss_kib(m: &mut Machine) -> u64 {
    let out = m.sh_ok("grep VmRSS /proc/1/status", T).unwrap();
    out.lines()
        .find_map(|l| l.trim().strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "benchmark: make bench"]
fn bench_rooms() {
    let mut opts = Options::from_env("bench-rooms")
        .unwrap()
        .initramfs(rooms_initramfs().unwrap())
        .append("bay0.shell=1 quiet");
    // `make run`'s anchor host has one vCPU (ANCHOR_BENCH_CPUS=2 for two).
    opts.cpus = std::env::var("ANCHOR_BENCH_CPUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let cpus = opts.cpus;
    let mut m = Machine::start(opts).unwrap();
    // `quiet`: bay0's own lines stay in the kernel log; its operator shell's prompt says
    // it is up.
    m.wait_for("anchor# ", T).unwrap();
    m.sh_ok("stty cols 1000", T).unwrap();
    let idle = rss_kib(&mut m);

    let (mut start, mut stop) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        start.push(timed(&mut m, "anchorctl room start alpha"));
        stop.push(timed(&mut m, "anchorctl room stop alpha"));
    }
    let three = timed(
        &mut m,
        "(anchorctl room start alpha & anchorctl room start beta & anchorctl room start gamma & wait)",
    );
    let with_three = rss_kib(&mut m);
    let memory =
        "cat /sys/fs/cgroup/anchor/alpha/memory.current /sys/fs/cgroup/anchor/alpha/memory.peak";
    let charged = m.sh_ok(memory, T).unwrap();
    m.sh_ok("anchorctl room stop beta; anchorctl room stop gamma", T)
        .unwrap();
    // Each reset from a settled room (the previous reset's old VMM has been torn down).
    let reset: Vec<f64> = (0..5)
        .map(|_| {
            m.sh_ok("sleep 3", T).unwrap();
            timed(&mut m, "anchorctl room reset alpha")
        })
        .collect();
    let fell_back = m
        .sh_ok("dmesg | grep -c 'reopens once it has ended' || true", T)
        .unwrap();
    m.sh_ok("anchorctl room stop alpha", T).unwrap();

    // The same VMM, by hand and jailed (the arguments bay0 builds; see bay0/src/room.rs).
    let vmm_args =
        "--kernel /usr/lib/anchor/kernel/vmlinux --disk /usr/lib/anchor/images/base.squashfs,ro \
        --mem-mib 160 --vcpus 1 --cmdline 'console=ttyS0 quiet reboot=k panic=-1 root=/dev/vda ro \
        rootfstype=squashfs init=/sbin/init anchor.room=bench anchor.shell=off' --serial stdout";
    let jailed_args =
        "--kernel /boot/vmlinux --disk /images/room.squashfs,ro --mem-mib 160 --vcpus 1 \
        --cmdline 'console=ttyS0 quiet reboot=k panic=-1 root=/dev/vda ro rootfstype=squashfs \
        init=/sbin/init anchor.room=bench anchor.shell=off' --serial stdout";
    m.sh_ok(
        "mkdir -p /run/anchor/rooms/bench && chown 64007:64007 /run/anchor/rooms/bench",
        T,
    )
    .unwrap();
    let (mut bare, mut jailed) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        bare.push(timed(
            &mut m,
            &format!("/usr/bin/anchor-vmm {vmm_args} | grep -m1 -q 'room bench ready'; sleep 0"),
        ));
        jailed.push(timed(
            &mut m,
            &format!(
                "/usr/lib/anchor/anchor-jail --name bench --uid 64007 --gid 64007 \
                 --run-dir /run/anchor/rooms/bench --memory 234881024 --pids 17 --cpu-weight 100 \
                 --nproc 17 --ro /usr/bin/anchor-vmm:/bin/anchor-vmm \
                 --ro /usr/lib/anchor/kernel/vmlinux:/boot/vmlinux \
                 --ro /usr/lib/anchor/images/base.squashfs:/images/room.squashfs --dev kvm \
                 -- /bin/anchor-vmm {jailed_args} | grep -m1 -q 'room bench ready'"
            ),
        ));
    }
    println!("bench-rooms: anchor host under QEMU TCG with {cpus} vCPU(s), rooms nested under KVM (alpha/beta/gamma: 160 MiB, 1 vCPU)");
    println!(
        "bench-rooms: anchorctl room start -> ready, median of 5: {:.2} s ({start:?})",
        median(start.clone())
    );
    println!("bench-rooms: three rooms started at once -> all ready: {three:.2} s");
    println!(
        "bench-rooms: anchorctl room stop (kill -> VMM reaped, room cleaned), median of 5: {:.2} s ({stop:?})",
        median(stop.clone())
    );
    println!(
        "bench-rooms: anchorctl room reset (-> ready again), median of 5: {:.2} s ({reset:?}); \
         beside the old VMM, held stopped ({} of 5 closed first for lack of memory)",
        median(reset.clone()),
        fell_back.trim()
    );
    println!("bench-rooms: bay0 RSS idle {idle} KiB, with three rooms {with_three} KiB");
    let c: Vec<u64> = charged
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if let [current, peak] = c[..] {
        println!(
            "bench-rooms: an idle 160 MiB room's cgroup (VMM + guest pages touched + KVM): {} MiB now, {} MiB peak (admission charges 160 + 64)",
            current >> 20,
            peak >> 20
        );
    }
    let (b, j) = (median(bare.clone()), median(jailed.clone()));
    println!(
        "bench-rooms: VMM exec -> agent ready, median of 5: by hand {b:.2} s, jailed {j:.2} s, jail cost {:.2} s ({bare:?} vs {jailed:?})",
        j - b
    );
    m.system_powerdown().unwrap();
    m.wait_for_line("reboot: Power down", T).unwrap();
}
