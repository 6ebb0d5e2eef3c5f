// SPDX-License-Identifier: GPL-3.0-or-later
//! The anchor host's uplink, as `make run` boots it (tests/system/run-qemu.sh --uplink):
//! the product initramfs, a virtio-net NIC on QEMU's user-mode network (10.0.9.0/24),
//! `ip=dhcp` on the kernel command line. The kernel configures the NIC before bay0 starts
//! and publishes the DNS server in /proc/net/pnp, which the initramfs's /etc/resolv.conf
//! links to. The shipped web room (outbound, a microVM) then reaches this machine's
//! service through the anchor host's uplink (QEMU maps 10.0.9.2 to this machine's
//! loopback), and still nothing of the anchor host itself.
//!
//! Needs: qemu-system-x86_64, $ANCHOR_OUT/host-bzImage, the product initramfs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_systest::{shell_until, Machine, Options};
use std::io::Write;
use std::time::Duration;

/// Hang detection only (TCG + nesting on a busy 2-core machine).
const BOOT: Duration = Duration::from_secs(180);
const ROOM: Duration = Duration::from_secs(240);
const SHELL: Duration = Duration::from_secs(90);

#[test]
fn the_anchor_host_configures_its_uplink_and_the_web_room_reaches_the_world_through_it() {
    // This machine's service: QEMU's user-mode network takes the anchor host's
    // connections to 10.0.9.2:PORT to 127.0.0.1:PORT here.
    let token = format!("anchor-uplink-{}", std::process::id());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = token.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(format!("{served}\n").as_bytes());
        }
    });
    let opts = Options::from_env("uplink")
        .unwrap()
        .memory_mib(4096)
        .append("bay0.shell=1 ip=dhcp")
        .arg("-nic")
        .arg("user,model=virtio-net-pci,net=10.0.9.0/24,ipv6=off")
        .watchdog();
    let mut m = Machine::start(opts).unwrap();
    m.wait_for_line("bay0: ready", BOOT).unwrap();
    m.wait_for("anchor# ", SHELL).unwrap();
    m.sh_ok("stty cols 1000", ROOM).unwrap();

    // Configured by the kernel before bay0: address, route, resolver.
    let show =
        "ifconfig eth0; route -n; echo resolv=$(readlink /etc/resolv.conf); cat /etc/resolv.conf";
    let conf = m.sh_ok(show, ROOM).unwrap();
    assert!(conf.contains("inet addr:10.0.9.15"), "{conf}");
    assert!(
        conf.lines()
            .any(|l| l.starts_with("0.0.0.0") && l.contains("10.0.9.2")),
        "no default route via 10.0.9.2:\n{conf}"
    );
    assert!(conf.contains("resolv=../proc/net/pnp"), "{conf}");
    assert!(conf.contains("nameserver 10.0.9.3"), "{conf}");
    // The anchor host itself reaches this machine's service.
    let out = m
        .sh_ok(&format!("sleep 2 | nc 10.0.9.2 {port}"), ROOM)
        .unwrap();
    assert!(out.contains(&token), "{out}");
    // A listener on every address of the anchor host, which the room must not reach.
    m.sh_ok(
        &format!(
            "nc -ll -p 9999 -e sh -c 'echo HOST-REACHED' & {}",
            shell_until("netstat -ltn | grep -q ':9999 '")
        ),
        ROOM,
    )
    .unwrap();
    let local = m.sh_ok("echo | nc 10.0.9.15 9999", ROOM).unwrap();
    assert!(local.contains("HOST-REACHED"), "{local}");

    let out = m.sh_ok("anchorctl room start web", ROOM).unwrap();
    assert!(out.contains("room web ready"), "{out}");
    let log = m.serial();
    assert!(
        log.contains("room web: network outbound: passt as uid"),
        "the web room got no network"
    );
    // The anchor host has a resolver now: the room's DNS is forwarded to it.
    assert!(!log.contains("room web: no DNS"), "the web room got no DNS");
    m.attach_console("web", SHELL).unwrap();
    let (lines, status) = m
        .in_room("web", &format!("sleep 3 | nc 10.0.9.2 {port}"), ROOM)
        .unwrap();
    let text = lines.join("\n");
    assert_eq!(status, 0, "{text}");
    assert!(
        text.contains(&token),
        "the web room did not reach this machine's service through the uplink:\n{text}"
    );
    let (lines, _) = m
        .in_room(
            "web",
            "echo | nc -w 5 10.0.9.15 9999 2>&1; echo rc=$?",
            ROOM,
        )
        .unwrap();
    let text = lines.join("\n");
    assert!(
        !text.contains("HOST-REACHED"),
        "the web room reached the anchor host's own address:\n{text}"
    );
    m.detach_console("web", SHELL).unwrap();
    let out = m.sh_ok("anchorctl room stop web", ROOM).unwrap();
    assert!(out.contains("room web stopped"), "{out}");
}
