// SPDX-License-Identifier: GPL-3.0-or-later
//! The room's network, when its policy grants one: `anchor.net=ADDR/PREFIX,GATEWAY,DNS`
//! on the kernel command line of a microVM room, among the agent's arguments in a
//! namespace room (anchor-jail puts it there and starts passt with the same addresses).
//! In a microVM the agent configures eth0 statically with busybox's `ip` (the room
//! kernel has no DHCP client, and a fixed plan needs none); in a namespace room the jail
//! has done that. Either way the agent writes the resolver to /run/resolv.conf (the
//! image's /etc/resolv.conf points there). Without the argument the room has only
//! loopback.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// The interface of the room's virtio-net device.
pub const IFACE: &str = "eth0";
/// Where the resolver goes (/etc/resolv.conf in every image is a link to it).
pub const RESOLV_CONF: &str = "/run/resolv.conf";
/// busybox, whose `ip` applet does the work (every room image has it at this path).
const BUSYBOX: &str = "/bin/busybox";

/// What `anchor.net=` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetSettings {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Ipv4Addr,
}

/// Parses `ADDR/PREFIX,GATEWAY,DNS` (prefix 1..=30, the gateway inside the prefix).
pub fn parse(value: &str) -> Option<NetSettings> {
    let mut parts = value.split(',');
    let (cidr, gw, dns) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (addr, prefix) = cidr.split_once('/')?;
    let s = NetSettings {
        address: addr.parse().ok()?,
        prefix: prefix.parse().ok().filter(|p| (1..=30).contains(p))?,
        gateway: gw.parse().ok()?,
        dns: dns.parse().ok()?,
    };
    let mask = u32::MAX << (32 - u32::from(s.prefix));
    let same_net = u32::from(s.address) & mask == u32::from(s.gateway) & mask;
    (same_net && s.address != s.gateway).then_some(s)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new(BUSYBOX)
        .arg("ip")
        .args(args)
        .env_clear()
        .output()
        .map_err(|e| format!("{BUSYBOX} ip: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    Err(format!("ip {}: {}", args.join(" "), why.trim()))
}

/// Configures loopback, eth0, the default route and the resolver; the line to print.
pub fn setup(s: &NetSettings) -> Result<String, String> {
    let cidr = format!("{}/{}", s.address, s.prefix);
    let gw = s.gateway.to_string();
    ip(&["link", "set", "lo", "up"])?;
    ip(&["addr", "add", &cidr, "dev", IFACE])?;
    ip(&["link", "set", IFACE, "up"])?;
    ip(&["route", "add", "default", "via", &gw, "dev", IFACE])?;
    resolver(s)
}

/// Writes the resolver only: in a namespace room anchor-jail has set up eth0 (the room may
/// not change its network namespace, which is the anchor host's); the line to print.
pub fn resolver(s: &NetSettings) -> Result<String, String> {
    write_resolver(Path::new(RESOLV_CONF), s.dns)?;
    Ok(format!(
        "network: {IFACE} {}/{}, gateway {}, DNS {}",
        s.address, s.prefix, s.gateway, s.dns
    ))
}

fn write_resolver(path: &Path, dns: Ipv4Addr) -> Result<(), String> {
    std::fs::write(path, format!("nameserver {dns}\n"))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jails_address_plan_parses_and_nonsense_does_not() {
        let s = parse("10.0.2.15/24,10.0.2.2,10.0.2.3").unwrap();
        assert_eq!(s.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(
            (s.prefix, s.gateway, s.dns.octets()[3]),
            (24, Ipv4Addr::new(10, 0, 2, 2), 3)
        );
        for bad in [
            "",
            "10.0.2.15",
            "10.0.2.15/24,10.0.2.2",
            "10.0.2.15/24,10.0.2.2,10.0.2.3,x",
            "10.0.2.15/33,10.0.2.2,10.0.2.3",
            "10.0.2.15/0,10.0.2.2,10.0.2.3",
            "10.0.2.15/24,10.0.3.2,10.0.2.3",
            "10.0.2.15/24,10.0.2.15,10.0.2.3",
            "10.0.2.15/24,10.0.2.2,dns",
            "eth0/24,10.0.2.2,10.0.2.3",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_resolver_names_the_rooms_dns_forwarder() {
        let dir = std::env::temp_dir().join(format!("agent-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("resolv.conf");
        write_resolver(&file, Ipv4Addr::new(10, 0, 2, 3)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "nameserver 10.0.2.3\n"
        );
        let e = write_resolver(&dir.join("no/such"), Ipv4Addr::LOCALHOST).unwrap_err();
        assert!(e.contains("no/such"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
