// SPDX-License-Identifier: GPL-3.0-or-later
//! Rooms, end to end, in the anchor host: our host kernel and the product initramfs (plus
//! the small test rooms of tests/system/policies) under QEMU TCG with `-cpu max` (nested
//! KVM), bay0 as PID 1 with its operator shell (`bay0.shell=1`). A person types on the
//! serial console: into a boot room, into the operator shell (`anchorctl ...`), into
//! rooms attached with `anchorctl room console`. Every room is a real jailed anchor-vmm
//! booting the room kernel.
//!
//! Needs: qemu-system-x86_64, $ANCHOR_OUT/host-bzImage, the rooms initramfs (run-all.sh
//! builds it). Asserts behaviour; the figures printed are for the reader.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{rooms_initramfs, Machine, Options};
use std::time::{Duration, Instant};

/// Hang detection only (TCG + nesting on a busy 2-core machine).
const BOOT: Duration = Duration::from_secs(180);
const ROOM: Duration = Duration::from_secs(240);
const SHELL: Duration = Duration::from_secs(90);

fn machine(name: &str, append: &str) -> Machine {
    let opts = Options::from_env(name)
        .unwrap()
        .initramfs(rooms_initramfs().unwrap())
        .append("bay0.shell=1")
        .append(append)
        .watchdog();
    let m = Machine::start(opts).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    let kvm = m.wait_for_line("bay0: /dev/kvm ", Duration::ZERO).unwrap();
    assert!(
        kvm.line.contains("bay0: /dev/kvm usable"),
        "no /dev/kvm in the anchor host: {}",
        kvm.line
    );
    m
}

/// The operator shell is up (its prompt printed after `from`): give it a wide terminal, so
/// it never folds long command lines (the serial console has no size of its own).
fn shell_ready(m: &mut Machine, from: usize) {
    m.wait_for_from(from, "anchor# ", SHELL).unwrap();
    m.sh_ok("stty cols 1000", ROOM).unwrap();
}

/// Runs `cmd` in the operator shell; its output, which must end with a failing status.
fn sh_fails(m: &mut Machine, cmd: &str) -> String {
    let (out, status) = m.sh(cmd, ROOM).unwrap_or_else(|e| panic!("`{cmd}`: {e}"));
    assert_ne!(status, 0, "`{cmd}` should have failed:\n{out}");
    out
}

/// Types `cmd` into the room whose console is attached; waits for the rendered line
/// `room| <expect...>`.
fn in_room(m: &mut Machine, room: &str, cmd: &str, expect: &str) -> String {
    let from = m.serial().len();
    m.type_text(&format!("{cmd}\r")).unwrap();
    m.wait_for_line_from(from, &format!("{room}| {expect}"), SHELL)
        .unwrap_or_else(|e| panic!("`{cmd}` in {room}: {e}"))
        .line
}

/// Attaches the operator shell's terminal to `room` (anchorctl room console).
fn attach(m: &mut Machine, room: &str) {
    m.attach_console(room, SHELL).unwrap();
}

/// Ctrl-]: back to the operator shell.
fn detach(m: &mut Machine, room: &str) {
    m.detach_console(room, SHELL).unwrap();
}

/// Types `poweroff` in the attached `room`; once the room has ended and anchorctl has
/// given the terminal back, what the serial console showed meanwhile.
fn poweroff_inside(m: &mut Machine, room: &str) -> String {
    let from = m.serial().len();
    m.type_text("poweroff\r").unwrap();
    // The console client's line: bay0's own log line and the agent's may come after an
    // unfinished line (the shell's next prompt) on this one serial terminal.
    let ended = format!("bay0: room {room} ended (exited with status 0)");
    m.wait_for_line_from(from, &ended, SHELL).unwrap();
    // anchorctl gives the terminal back to the operator shell: type nothing before.
    let detached = format!("[detached from room {room}]");
    m.wait_for_line_from(from, &detached, SHELL).unwrap();
    m.serial().get(from..).unwrap_or_default().to_string()
}

/// `anchorctl room list --json` -> (name, state) pairs.
fn states(m: &mut Machine) -> Vec<(String, String)> {
    let out = m.sh_ok("anchorctl room list --json", ROOM).unwrap();
    let json = out
        .get(out.find('{').unwrap()..=out.rfind('}').unwrap())
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["state"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn state_of(m: &mut Machine, room: &str) -> String {
    states(m)
        .into_iter()
        .find(|(n, _)| n == room)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

#[test]
fn a_boot_room_two_rooms_at_once_and_clear_errors() {
    let t0 = Instant::now();
    let mut m = machine("rooms-boot", "bay0.room=alpha");
    // The boot room gets the console; its lines carry its name.
    m.wait_for_line("bay0: room alpha opened", BOOT).unwrap();
    m.wait_for_line("bay0: console: room alpha", BOOT).unwrap();
    m.wait_for_line("alpha| anchor-agent: room alpha ready", ROOM)
        .unwrap();
    eprintln!(
        "figure: boot -> boot room ready {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    m.wait_for("alpha| alpha:~$ ", SHELL).unwrap();
    // An unprivileged shell, in the room's pids cgroup, on a read-only image with tmpfs.
    in_room(&mut m, "alpha", "id", "uid=1000(room) gid=1000(room)");
    in_room(&mut m, "alpha", "echo hello-$((6*7))", "hello-42");
    in_room(&mut m, "alpha", "cat /sys/fs/cgroup/room/pids.max", "64");
    in_room(
        &mut m,
        "alpha",
        "touch /etc/probe 2>&1; echo rc=$?",
        "touch: /etc/probe: Read-only file system",
    );
    in_room(&mut m, "alpha", "grep -c '^tmpfs /tmp ' /proc/mounts", "1");
    // The vCPUs the policy grants, exactly.
    let cpus = in_room(
        &mut m,
        "alpha",
        "echo cpus=$(grep -c ^processor /proc/cpuinfo)",
        "cpus=",
    );
    assert_eq!(cpus.trim_end(), "alpha| cpus=1");
    // Escape sequences a room prints never reach the screen.
    let from = m.serial().len();
    in_room(
        &mut m,
        "alpha",
        "printf 'A\\033[2J\\033]0;pwned\\007B\\n'",
        "AB",
    );
    assert!(!m.serial()[from..].contains("\x1b[2J") && !m.serial()[from..].contains("pwned\x07"));
    // bay0 answers where the cursor is, as the room's terminal (busybox's shell asks after
    // every prompt), through the VMM's serial port: `ESC [ 1 ; 4 R` after "abc" on a fresh
    // line. Asked again after a second without an answer: bay0 leaves a question unanswered
    // when it shares a read with the echo of keys typed just before.
    in_room(
        &mut m,
        "alpha",
        "stty -icanon -echo min 0 time 10; i=0; r=; while [ -z \"$r\" ] && [ $i -lt 5 ]; do \
         i=$((i+1)); printf '\\nabc\\033[6n'; r=$(dd bs=1 count=6 2>/dev/null); done; \
         stty sane; printf '%s' \"$r\" | od -An -c",
        "abc 033   [   1   ;   4   R",
    );

    // Ctrl-] leaves the room for the operator shell; the room keeps running.
    let from = m.serial().len();
    m.type_text("\x1d").unwrap();
    m.wait_for_line_from(from, "bay0: console: operator shell", SHELL)
        .unwrap();
    m.type_text("\r").unwrap();
    shell_ready(&mut m, from);

    // The first room after the host booted found the host's entropy pool ready: the host
    // kernel credits the CPU's RNG at boot, so the crng is initialised before bay0 starts
    // any room, and the VMM never waits to seed it (it says so on stderr when it must,
    // and bay0 logs the VMM's stderr under the room's name, as the jail's line shows).
    let log = m.serial();
    let opened = anchor_systest::find_line(&log, 0, "bay0: room alpha opened").unwrap();
    assert!(
        log.contains("bay0: room alpha: anchor-jail: room alpha: "),
        "the room's stderr lines never reached the log: the check below would prove nothing"
    );
    assert!(
        log.get(..opened.end)
            .is_some_and(|before| before.contains("random: crng init done")),
        "the host's crng was not ready when the first room started"
    );
    assert!(
        !log.contains("entropy pool was not initialised"),
        "the first room's VMM waited for the host's entropy pool: {}",
        anchor_systest::find_line(&log, 0, "entropy pool was not initialised")
            .map(|f| f.line)
            .unwrap_or_default()
    );

    // A second room at once.
    let t1 = Instant::now();
    let out = m.sh_ok("anchorctl room start beta", ROOM).unwrap();
    assert!(out.contains("room beta ready in"), "{out}");
    eprintln!(
        "figure: anchorctl room start beta {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    let st = states(&mut m);
    for room in ["alpha", "beta"] {
        assert!(st.contains(&(room.into(), "running".into())), "{st:?}");
    }
    let table = m.sh_ok("anchorctl status", ROOM).unwrap();
    assert!(
        table.contains("NAME") && table.contains("host: "),
        "{table}"
    );
    attach(&mut m, "beta");
    in_room(&mut m, "beta", "echo B-$((2+1))", "B-3");
    in_room(
        &mut m,
        "beta",
        "echo cpus=$(grep -c ^processor /proc/cpuinfo)",
        "cpus=1",
    );
    detach(&mut m, "beta");

    // Errors: one line, naming the room and the reason.
    let out = sh_fails(&mut m, "anchorctl room start nosuch");
    assert!(
        out.contains(
            "anchorctl: room nosuch: no such room: there is no /etc/anchor/policies/nosuch.toml"
        ),
        "{out}"
    );
    let out = sh_fails(&mut m, "anchorctl room start huge");
    assert!(
        out.contains("anchorctl: room huge: not enough memory: the room needs"),
        "{out}"
    );
    let out = sh_fails(&mut m, "anchorctl room start alpha");
    assert!(
        out.contains("anchorctl: room alpha: already running"),
        "{out}"
    );

    // `poweroff` in an unprivileged room (busybox's may not signal PID 1: its login
    // shell's function leaves the shell) closes it too; it said "poweroff: (null):
    // Operation not permitted" before.
    attach(&mut m, "beta");
    let seen = poweroff_inside(&mut m, "beta");
    assert!(!seen.contains("Operation not permitted"), "{seen}");
    assert_eq!(state_of(&mut m, "beta"), "stopped");

    // A privileged room is root inside, and still jailed outside.
    assert!(m
        .sh_ok("anchorctl room start root", ROOM)
        .unwrap()
        .contains("room root ready"));
    attach(&mut m, "root");
    in_room(&mut m, "root", "id", "uid=0(root) gid=0(root)");
    detach(&mut m, "root");
    let ps = m.sh_ok("ps -o user,comm | grep anchor-vmm", ROOM).unwrap();
    assert!(
        !ps.lines().any(|l| l.trim_start().starts_with("root ")),
        "a VMM runs as root:\n{ps}"
    );
    // `poweroff` in a privileged room (root inside) closes it: busybox signals the room's
    // PID 1, the agent (it did nothing before). The room ends as powered off, the
    // console client is told, and the other room runs on.
    attach(&mut m, "root");
    let seen = poweroff_inside(&mut m, "root");
    assert!(
        seen.contains("anchor-agent: poweroff asked in the room"),
        "{seen}"
    );
    // Before the room kernel's "reboot: Restarting system": the room does not come back.
    assert!(
        seen.contains(
            "anchor-agent: stopping the room (its VM ends by a reset: the room does not restart)"
        ),
        "{seen}"
    );
    let stop = m
        .sh_ok(
            "anchorctl audit show | grep ' room.stop room=root ' | tail -n 1",
            ROOM,
        )
        .unwrap();
    assert!(
        stop.contains(" how=the%20room%20powered%20off status=exited%20with%20status%200 why="),
        "{stop}"
    );
    assert_eq!(state_of(&mut m, "root"), "stopped");
    assert_eq!(state_of(&mut m, "alpha"), "running");

    m.system_powerdown().unwrap();
    m.wait_for_line("reboot: Power down", BOOT).unwrap();
    eprintln!("figure: whole run {:.1} s", t0.elapsed().as_secs_f64());
}

/// bay0's descriptors, the rooms' cgroups and run directories, and the mounts.
fn footprint(m: &mut Machine) -> String {
    let cmd = "echo fds=$(ls /proc/1/fd | wc -l) mounts=$(wc -l < /proc/mounts) \
         cg=$(ls /sys/fs/cgroup/anchor | grep -v '\\.' | tr '\\n' ,) run=$(ls /run/anchor/rooms | tr '\\n' ,)";
    m.sh_ok(cmd, ROOM).unwrap().trim().to_string()
}

/// A kernel argument that makes the anchor host's first TSC calibration 0.3% low, so its
/// refined calibration later disagrees with the rate KVM captured at start-up (what a busy
/// CI machine does by accident): rooms must keep working. anchor-vmm sets each vcpu's TSC
/// rate to the host's current one; without that the rooms' LAPIC timers never fire here.
fn skewed_tsc() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mhz = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("cpu MHz"))
        .and_then(|v| {
            v.trim_start_matches([' ', '\t', ':'])
                .trim()
                .parse::<f64>()
                .ok()
        });
    match mhz {
        Some(mhz) => format!("tsc_early_khz={}", (mhz * 1000.0 * 0.997) as u64),
        None => String::new(),
    }
}

/// Found in `make run`: `exit` (or `poweroff`) in the boot room, which had bay0's console,
/// closed it and left the console showing nothing: the operator shell had it, its prompt
/// not shown, and nothing said so. bay0 now says so, as on Ctrl-].
#[test]
fn the_boot_room_closed_from_inside_gives_the_console_to_the_operator_shell() {
    let mut m = machine("rooms-exit", "bay0.room=alpha");
    m.wait_for("alpha| alpha:~$ ", SHELL).unwrap();
    let from = m.serial().len();
    m.type_text("exit\r").unwrap();
    m.wait_for_line_from(
        from,
        "alpha| anchor-agent: shell exited (status 0x0)",
        SHELL,
    )
    .unwrap();
    m.wait_for_line_from(from, "bay0: console: operator shell", SHELL)
        .unwrap();
    m.type_text("\r").unwrap();
    shell_ready(&mut m, from);
    assert_eq!(state_of(&mut m, "alpha"), "stopped");
    m.system_powerdown().unwrap();
    m.wait_for_line("reboot: Power down", BOOT).unwrap();
}

#[test]
fn reset_forgets_kill_is_cleaned_up_and_a_full_room_harms_nothing() {
    let mut m = machine("rooms-life", &skewed_tsc());
    shell_ready(&mut m, 0);
    assert!(m
        .sh_ok("anchorctl room start alpha", ROOM)
        .unwrap()
        .contains("room alpha ready"));
    let before = footprint(&mut m);

    // Amnesia: what a room writes is gone after a reset.
    attach(&mut m, "alpha");
    in_room(
        &mut m,
        "alpha",
        "echo kept > /tmp/marker; cat /tmp/marker",
        "kept",
    );
    detach(&mut m, "alpha");
    let from = m.serial().len();
    let t = Instant::now();
    let out = m.sh_ok("anchorctl room reset alpha", ROOM).unwrap();
    assert!(out.contains("room alpha ready in"), "{out}");
    eprintln!(
        "figure: anchorctl room reset alpha {:.2} s (nested, TCG)",
        t.elapsed().as_secs_f64()
    );
    // The new room opened beside the old one (held frozen in cgroup v2 and stopped), which
    // ended only afterwards; the old one's set-aside leftovers (`alpha_PID`) then go.
    let ended = m
        .wait_for_line_from(from, "bay0: room alpha (pid", SHELL)
        .unwrap();
    let opened = m
        .wait_for_from(from, "bay0: room alpha opened", SHELL)
        .unwrap();
    assert!(
        opened.end < ended.end,
        "the reset waited for the old room to end:\n{}",
        &m.serial()[from..]
    );
    let mut left = String::new();
    for _ in 0..20 {
        left = m
            .sh_ok(
                "ls /run/anchor/rooms /sys/fs/cgroup/anchor | grep alpha_ || true",
                ROOM,
            )
            .unwrap();
        if left.trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(left.trim().is_empty(), "left after the reset: {left}");
    attach(&mut m, "alpha");
    in_room(
        &mut m,
        "alpha",
        "cat /tmp/marker",
        "cat: can't open '/tmp/marker': No such file or directory",
    );
    detach(&mut m, "alpha");

    // A room that fills its memory: its own kernel kills the hog; nothing else notices.
    assert!(m
        .sh_ok("anchorctl room start hog", ROOM)
        .unwrap()
        .contains("room hog ready"));
    attach(&mut m, "hog");
    let from = m.serial().len();
    // A string that doubles until the room's memory is gone.
    m.type_text("awk 'BEGIN { s = \"0123456789abcdef\"; while (1) s = s s }'\r")
        .unwrap();
    m.wait_for_from(from, "Out of memory: Killed process", ROOM)
        .unwrap();
    m.wait_for_from(from, "hog| hog:~# ", ROOM).unwrap();
    detach(&mut m, "hog");
    assert_eq!(state_of(&mut m, "hog"), "running");
    attach(&mut m, "alpha");
    in_room(&mut m, "alpha", "echo still-$((1+1))", "still-2");
    detach(&mut m, "alpha");
    assert_eq!(
        m.count("Linux version"),
        1,
        "the anchor host rebooted (watchdog?)"
    );
    m.sh_ok("anchorctl room stop hog", ROOM).unwrap();

    // A VMM killed from outside is noticed, logged with its reason, and cleaned up.
    let from = m.serial().len();
    m.sh_ok(
        "kill -9 $(anchorctl room list | awk '$1 == \"alpha\" { print $7 }')",
        ROOM,
    )
    .unwrap();
    let ended = m
        .wait_for_line_from(from, "bay0: room alpha (pid", SHELL)
        .unwrap();
    assert!(ended.line.contains("killed by signal 9"), "{}", ended.line);
    assert_eq!(state_of(&mut m, "alpha"), "stopped");
    let gone = m
        .sh_ok("ls /run/anchor/rooms /sys/fs/cgroup/anchor", ROOM)
        .unwrap();
    assert!(!gone.contains("alpha"), "{gone}");

    // Start/stop cycles leave nothing behind (100 of them run in bay0's hosted tests).
    assert!(m
        .sh_ok("anchorctl room start alpha", ROOM)
        .unwrap()
        .contains("ready"));
    assert_eq!(footprint(&mut m), before);
    for _ in 0..5 {
        m.sh_ok("anchorctl room stop alpha", ROOM).unwrap();
        assert!(m
            .sh_ok("anchorctl room start alpha", ROOM)
            .unwrap()
            .contains("ready"));
    }
    assert_eq!(footprint(&mut m), before);
    m.sh_ok("anchorctl room stop alpha", ROOM).unwrap();
    let log = m.serial();
    assert!(
        !log.contains("rcu_sched self-detected stall"),
        "a room's timers stalled"
    );

    m.system_powerdown().unwrap();
    m.wait_for_line("reboot: Power down", BOOT).unwrap();
}
