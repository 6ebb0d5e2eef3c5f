// SPDX-License-Identifier: GPL-3.0-or-later
//! A room's network, end to end, in the anchor host (our host kernel + the rooms
//! initramfs under QEMU TCG with nested KVM, bay0 as PID 1 with its operator shell).
//!
//! "The outside world" is anchor-outside (tests/system/net-tools: DNS for
//! `*.anchor-test`, HTTP, echo) in a network namespace of its own, joined to the anchor
//! host by a veth pair (anchor host 10.77.0.1, outside 10.77.0.2, the anchor host's
//! default route and resolver). No traffic leaves the anchor host. An outbound room
//! (tests/system/policies/surf.toml) reaches the outside by address and by name through
//! its passt, and reaches nothing of the anchor host: not its loopback, not its own
//! address, not another room; passt runs jailed, in the room's cgroup, and is gone with
//! the room. A room without network has only loopback. A namespace room granted
//! `outbound` (tests/system/policies/surfns.toml) does the same through the TAP device
//! and relay its jail gives it.
//!
//! Needs: qemu-system-x86_64, $ANCHOR_OUT/host-bzImage, the rooms initramfs with
//! anchor-outside and the test resolv.conf (tests/system/run-all.sh builds it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{rooms_initramfs, shell_until, Machine, Options};
use std::time::{Duration, Instant};

/// Hang detection only (TCG + nesting on a busy 2-core machine).
const BOOT: Duration = Duration::from_secs(180);
const ROOM: Duration = Duration::from_secs(240);
const SHELL: Duration = Duration::from_secs(90);

/// Runs `cmd` in the attached room's shell: its output lines and exit status.
fn room_sh(m: &mut Machine, room: &str, cmd: &str) -> (String, i32) {
    let (lines, status) = m
        .in_room(room, cmd, ROOM)
        .unwrap_or_else(|e| panic!("`{cmd}` in {room}: {e}"));
    (lines.join("\n"), status)
}

fn attach(m: &mut Machine, room: &str) {
    m.attach_console(room, SHELL).unwrap();
}

fn detach(m: &mut Machine, room: &str) {
    let from = m.serial().len();
    m.detach_console(room, SHELL).unwrap();
    m.wait_for_from(from, "anchor# ", SHELL).unwrap();
}

/// Starts `room` and waits for its agent's network line (or its ready line).
fn start(m: &mut Machine, room: &str) {
    let out = m
        .sh_ok(&format!("anchorctl room start {room}"), ROOM)
        .unwrap();
    assert!(out.contains(&format!("room {room} ready")), "{out}");
}

/// The passt processes of the anchor host (pid and name), one per line. Only those
/// lines: the anchor host's kernel messages share the console and may land in between.
fn passts(m: &mut Machine) -> String {
    let out = m.sh_ok("for p in /proc/[0-9]*; do case $(cat $p/comm 2>/dev/null) in passt*) echo passt-pid ${p#/proc/} $(cat $p/comm);; esac; done", ROOM).unwrap();
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("passt-pid "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of the first output line `KEY=VALUE` (kernel messages may share the console).
fn value(out: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in:\n{out}"))
        .to_string()
}

/// bay0's descriptors, the rooms' cgroups and run directories, and the mounts.
fn footprint(m: &mut Machine) -> String {
    let cmd = "echo fds=$(ls /proc/1/fd | wc -l) mounts=$(wc -l < /proc/mounts) \
         cg=$(ls /sys/fs/cgroup/anchor 2>/dev/null | grep -v '\\.' | tr '\\n' ,) run=$(ls /run/anchor/rooms 2>/dev/null | tr '\\n' ,)";
    let out = m.sh_ok(cmd, ROOM).unwrap();
    format!("fds={}", value(&out, "fds"))
}

#[test]
fn an_outbound_room_reaches_the_outside_and_nothing_of_the_anchor_host() {
    let t0 = Instant::now();
    let opts = Options::from_env("network")
        .unwrap()
        .initramfs(rooms_initramfs().unwrap())
        .append("bay0.shell=1")
        .watchdog();
    let mut m = Machine::start(opts).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    m.wait_for("anchor# ", SHELL).unwrap();
    m.sh_ok("stty cols 1000", ROOM).unwrap();

    // The outside: its own network namespace, a veth pair to the anchor host. Its veth
    // end moves into that namespace: waited for (10 s at most), not assumed after a sleep.
    let moved = r#"[ "$(readlink /proc/$OUTSIDE/ns/net)" != "$(readlink /proc/$$/ns/net)" ]"#;
    m.sh_ok(
        &format!(
            "/bin/unshare -n /usr/lib/anchor/test/anchor-outside 10.77.0.2 & OUTSIDE=$!; {}",
            shell_until(moved)
        ),
        ROOM,
    )
    .unwrap();
    m.sh_ok(
        "ip link add ah0 type veth && ip link set veth0 netns $OUTSIDE && \
         ip addr add 10.77.0.1/24 dev ah0 && ip link set ah0 up && ip link set lo up && \
         ip route add default via 10.77.0.2",
        ROOM,
    )
    .unwrap();
    m.sh_ok("nsenter -t $OUTSIDE -n sh -c 'ip link set lo up && ip addr add 10.77.0.2/24 dev veth0 && ip link set veth0 up'", ROOM).unwrap();
    // Its web server listens once it has started (waited for, 10 s at most).
    let page = m
        .sh_ok(&shell_until("wget -q -O - http://10.77.0.2/"), ROOM)
        .unwrap();
    assert!(page.contains("hello from the outside"), "{page}");
    // What a room must never reach: a listener on every address of the anchor host (its
    // loopback, its own address on the outside link); it records a connection in a file.
    m.sh_ok(
        &format!(
            "rm -f /run/hit-*; nc -ll -p 9999 -e sh -c 'echo HOST-REACHED; touch /run/hit-any' & \
             {}; echo listeners up",
            shell_until("netstat -ltn | grep -q ':9999 '")
        ),
        ROOM,
    )
    .unwrap();
    let ready = m
        .sh_ok(
            "echo listening=$(netstat -ltn 2>/dev/null | grep -c ':9999 ')",
            ROOM,
        )
        .unwrap();
    assert_eq!(value(&ready, "listening"), "1", "{ready}");
    // The listener answers locally (so its silence towards the room below means something).
    let local = m
        .sh_ok(
            "echo | nc 127.0.0.1 9999; ls /run/hit-any && rm /run/hit-any",
            ROOM,
        )
        .unwrap();
    assert!(local.contains("HOST-REACHED"), "{local}");

    let before = footprint(&mut m);
    assert_eq!(passts(&mut m), "", "a passt runs before any room");

    // The outbound room: its passt, jailed, in the room's cgroup and PID namespace.
    let t1 = Instant::now();
    start(&mut m, "surf");
    eprintln!(
        "figure: anchorctl room start surf (with passt) {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    let log = m.serial();
    assert!(
        log.contains("room surf: network outbound: passt as uid"),
        "the jail did not report the network"
    );
    assert!(
        !log.contains("room surf: not granted: network"),
        "an outbound microVM room is granted its network"
    );
    let p = passts(&mut m);
    assert_eq!(p.lines().count(), 1, "one passt for one room: {p}");
    let pid = p.split(' ').next().unwrap().to_string();
    let status = m.sh_ok(&format!("grep -E '^(Uid|Gid|NoNewPrivs|Seccomp|CapEff|CapBnd):' /proc/{pid}/status; cat /proc/{pid}/cgroup; echo rootfiles=$(ls -A /proc/{pid}/root/ | wc -l); readlink /proc/{pid}/ns/net; readlink /proc/1/ns/net"), ROOM).unwrap();
    eprintln!("passt in the anchor host:\n{status}");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{status}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert!(
        field("Uid:").starts_with("640"),
        "passt is not a room uid:\n{status}"
    );
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(field("Seccomp:"), "2", "{status}");
    assert!(
        status.contains("/anchor/surf"),
        "passt is not in the room's cgroup:\n{status}"
    );
    let lines: Vec<&str> = status.lines().collect();
    // passt's root is an empty directory: bay0's control socket and the VMM's vsock
    // socket (under /run) do not exist for it.
    assert_eq!(
        value(&status, "rootfiles"),
        "0",
        "passt sees files:\n{status}"
    );
    // passt lives in the anchor host's network namespace (the VMM has an empty one).
    let nets: Vec<&&str> = lines.iter().filter(|l| l.starts_with("net:[")).collect();
    assert_eq!(nets.len(), 2, "{status}");
    assert_eq!(
        nets[0], nets[1],
        "passt is not in the host's network namespace"
    );
    let mem = m
        .sh_ok(
            "echo mem=$(cat /sys/fs/cgroup/anchor/surf/memory.current)",
            ROOM,
        )
        .unwrap();
    eprintln!(
        "figure: surf's cgroup (VMM + passt + guest RAM touched) {} KiB",
        value(&mem, "mem").parse::<u64>().unwrap_or(0) / 1024
    );

    attach(&mut m, "surf");
    let (ip, _) = room_sh(&mut m, "surf", "ip -4 addr show eth0; ip route");
    assert!(ip.contains("inet 10.0.2.15/24"), "{ip}");
    assert!(ip.contains("default via 10.0.2.2"), "{ip}");
    // The outside, by address and by name.
    let (page, st) = room_sh(&mut m, "surf", "timeout 60 wget -q -O - http://10.77.0.2/");
    assert_eq!(st, 0, "{page}");
    assert!(
        page.contains("anchor-outside: hello from the outside"),
        "{page}"
    );
    let (ns, st) = room_sh(&mut m, "surf", "nslookup www.anchor-test");
    assert_eq!(st, 0, "{ns}");
    assert!(ns.contains("Address: 10.77.0.2"), "{ns}");
    let (page, st) = room_sh(
        &mut m,
        "surf",
        "timeout 60 wget -q -O - http://www.anchor-test/",
    );
    assert_eq!(st, 0, "{page}");
    assert!(page.contains("hello from the outside"), "{page}");
    let (ns, _) = room_sh(&mut m, "surf", "nslookup nosuch.example");
    assert!(ns.contains("NXDOMAIN"), "{ns}");
    // Nothing of the anchor host: its loopback, the gateway and DNS addresses (not
    // mapped to it), its own address on the outside link, the room's own address.
    for addr in [
        "127.0.0.1",
        "10.0.2.2",
        "10.0.2.3",
        "10.77.0.1",
        "10.0.2.15",
    ] {
        let cmd = format!("echo | nc -w 5 {addr} 9999 2>&1; echo rc=$?");
        let (out, _) = room_sh(&mut m, "surf", &cmd);
        assert!(
            !out.contains("HOST-REACHED"),
            "{addr} reached the anchor host: {out}"
        );
    }
    detach(&mut m, "surf");
    let hit = m
        .sh_ok("echo hits=$(ls /run/hit-* 2>/dev/null | wc -l)", ROOM)
        .unwrap();
    assert_eq!(
        value(&hit, "hits"),
        "0",
        "a room reached the anchor host's listener"
    );

    // Another outbound room: it listens; the first room cannot reach it either.
    start(&mut m, "surf2");
    attach(&mut m, "surf2");
    room_sh(
        &mut m,
        "surf2",
        &format!(
            "nc -ll -p 8080 -e sh -c 'echo ROOM2-REACHED' & {}",
            shell_until("netstat -ltn | grep -q ':8080 '")
        ),
    );
    // It answers inside its own room (so its silence towards the first room means
    // something).
    let (local, _) = room_sh(&mut m, "surf2", "echo | nc -w 5 127.0.0.1 8080");
    assert!(local.contains("ROOM2-REACHED"), "{local}");
    detach(&mut m, "surf2");
    assert_eq!(passts(&mut m).lines().count(), 2, "one passt per room");
    attach(&mut m, "surf");
    for addr in ["10.0.2.15", "10.0.2.2", "10.77.0.1"] {
        let (out, _) = room_sh(
            &mut m,
            "surf",
            &format!("echo | nc -w 5 {addr} 8080 2>&1; echo rc=$?"),
        );
        assert!(!out.contains("ROOM2-REACHED"), "{addr}: {out}");
    }
    detach(&mut m, "surf");
    m.sh_ok("anchorctl room stop surf2", ROOM).unwrap();

    // A room without network: loopback only.
    start(&mut m, "alpha");
    attach(&mut m, "alpha");
    let (ifs, _) = room_sh(
        &mut m,
        "alpha",
        "echo ifs=$(ls /sys/class/net | tr '\\n' ,)",
    );
    assert!(ifs.lines().any(|l| l == "ifs=lo,"), "{ifs}");
    detach(&mut m, "alpha");
    m.sh_ok("anchorctl room stop alpha", ROOM).unwrap();
    assert_eq!(
        passts(&mut m).lines().count(),
        1,
        "surf2's passt outlived it"
    );

    // passt ends with its room, every time; nothing else is left behind.
    m.sh_ok("anchorctl room stop surf", ROOM).unwrap();
    assert_eq!(passts(&mut m), "", "passt outlived its room");
    assert_eq!(footprint(&mut m), before);
    for _ in 0..3 {
        start(&mut m, "surf");
        assert_eq!(passts(&mut m).lines().count(), 1);
        m.sh_ok("anchorctl room stop surf", ROOM).unwrap();
        assert_eq!(passts(&mut m), "");
    }
    assert_eq!(footprint(&mut m), before);
    // A room whose VMM is killed from outside takes its passt with it.
    start(&mut m, "surf");
    let from = m.serial().len();
    m.sh_ok(
        "kill -9 $(anchorctl room list | awk '$1 == \"surf\" { print $7 }')",
        ROOM,
    )
    .unwrap();
    let ended = m
        .wait_for_line_from(from, "bay0: room surf (pid", SHELL)
        .unwrap();
    assert!(ended.line.contains("killed by signal 9"), "{}", ended.line);
    assert_eq!(passts(&mut m), "", "passt outlived its killed room");
    assert_eq!(footprint(&mut m), before);
    assert!(
        !m.serial().contains("net: backend closed"),
        "a room lost its passt"
    );

    namespace_room(&mut m, &before);

    m.system_powerdown().unwrap();
    m.wait_for_line("reboot: Power down", BOOT).unwrap();
    eprintln!("figure: whole run {:.1} s", t0.elapsed().as_secs_f64());
}

/// The anchor host's processes of a namespace room's network uid (641xx), one `uid
/// comm` line each.
fn net_uid_processes(m: &mut Machine) -> String {
    let out = m
        .sh_ok(
            "for p in /proc/[0-9]*; do u=$(awk '/^Uid:/ { print $2 }' $p/status 2>/dev/null); \
         case $u in 641??) echo net-uid $u $(cat $p/comm);; esac; done",
            ROOM,
        )
        .unwrap();
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("net-uid "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A namespace room granted `outbound` (tests/system/policies/surfns.toml): eth0 made and
/// set up by its jail, which the room cannot change; its passt and its relay run as the
/// room's network uid (not the room's); the outside by address and by name; nothing of
/// the anchor host (its address on the outside link, the gateway and DNS addresses);
/// nothing left after the room.
fn namespace_room(m: &mut Machine, before: &str) {
    start(m, "surfns");
    let log = m.serial();
    assert!(
        log.contains("room surfns: eth0 10.0.2.15/24, gateway 10.0.2.2"),
        "the jail did not set up eth0"
    );
    assert!(!log.contains("room surfns: not granted: network"));
    let procs = net_uid_processes(m);
    assert!(
        procs.lines().any(|l| l.ends_with(" anchor-relay")) && procs.contains(" passt"),
        "no relay and passt under a network uid: {procs}"
    );
    attach(m, "surfns");
    let (ifc, _) = room_sh(m, "surfns", "ifconfig eth0; route -n");
    assert!(ifc.contains("inet addr:10.0.2.15"), "{ifc}");
    assert!(ifc.contains("10.0.2.2"), "{ifc}");
    let (page, st) = room_sh(m, "surfns", "timeout 60 wget -q -O - http://10.77.0.2/");
    assert_eq!(st, 0, "{page}");
    assert!(page.contains("hello from the outside"), "{page}");
    let (ns, st) = room_sh(m, "surfns", "nslookup www.anchor-test");
    assert_eq!(st, 0, "{ns}");
    assert!(ns.contains("Address: 10.77.0.2"), "{ns}");
    let (page, st) = room_sh(
        m,
        "surfns",
        "timeout 60 wget -q -O - http://www.anchor-test/",
    );
    assert_eq!(st, 0, "{page}");
    assert!(page.contains("hello from the outside"), "{page}");
    for addr in ["10.0.2.2", "10.0.2.3", "10.77.0.1", "127.0.0.1"] {
        let cmd = format!("echo | nc -w 5 {addr} 9999 2>&1; echo rc=$?");
        let (out, _) = room_sh(m, "surfns", &cmd);
        assert!(
            !out.contains("HOST-REACHED"),
            "{addr} reached the anchor host: {out}"
        );
    }
    // The room may not change its network, nor end its relay or passt (the words echoed
    // are split in the command, so that its echo on the console is not taken for them).
    let (tried, _) = room_sh(
        m,
        "surfns",
        "ifconfig eth0 10.0.2.99 2>&1; route del default 2>&1; \
         for p in /proc/[0-9]*; do u=$(awk '/^Uid:/ { print $2 }' $p/status 2>/dev/null); \
         [ \"$u\" = 65534 ] && { kill -9 ${p#/proc/} 2>/dev/null && echo KIL''LED || echo kill-ref''used; }; \
         done; ifconfig eth0 | grep -o 'inet addr:[0-9.]*'",
    );
    assert!(tried.contains("inet addr:10.0.2.15"), "{tried}");
    assert!(!tried.contains("KILLED"), "{tried}");
    assert!(tried.matches("kill-refused").count() >= 2, "{tried}");
    let (page, st) = room_sh(m, "surfns", "timeout 60 wget -q -O - http://10.77.0.2/");
    assert_eq!(st, 0, "{page}");
    detach(m, "surfns");
    let hit = m
        .sh_ok("echo hits=$(ls /run/hit-* 2>/dev/null | wc -l)", ROOM)
        .unwrap();
    assert_eq!(
        value(&hit, "hits"),
        "0",
        "a namespace room reached the anchor host"
    );
    m.sh_ok("anchorctl room stop surfns", ROOM).unwrap();
    assert_eq!(passts(m), "", "passt outlived its namespace room");
    assert_eq!(net_uid_processes(m), "", "the relay outlived its room");
    assert_eq!(footprint(m), before);
}
