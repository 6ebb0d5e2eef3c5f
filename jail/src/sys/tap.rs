// SPDX-License-Identifier: GPL-3.0-or-later
//! The system calls that make a namespace room's network device: a TAP interface made
//! in the room's network namespace (which belongs to the anchor host's user namespace, so
//! only the jail, still root, can change it), its MTU, address, netmask and default route
//! set with the classic interface and routing ioctls, before the room's processes exist.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::check;
use crate::error::{Error, Result};

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// TUN/TAP flags: an Ethernet device (TAP), frames without the packet-info header.
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
/// Route flags: usable, through a gateway.
const RTF_UP: libc::c_ushort = 0x0001;
const RTF_GATEWAY: libc::c_ushort = 0x0002;

/// `struct ifreq` with the members this file uses: the name, then a union of 24 bytes
/// (flags, an MTU or a `struct sockaddr`).
#[repr(C)]
struct Ifreq {
    name: [u8; 16],
    data: [u8; 24],
}

/// `struct rtentry` (linux/route.h): field for field, so the C layout and padding match.
#[repr(C)]
struct Rtentry {
    pad1: libc::c_ulong,
    dst: libc::sockaddr,
    gateway: libc::sockaddr,
    genmask: libc::sockaddr,
    flags: libc::c_ushort,
    pad2: libc::c_short,
    pad3: libc::c_ulong,
    pad4: *mut libc::c_void,
    metric: libc::c_short,
    dev: *mut libc::c_char,
    mtu: libc::c_ulong,
    window: libc::c_ulong,
    irtt: libc::c_ushort,
}

fn ifreq(name: &str) -> Ifreq {
    let mut req = Ifreq {
        name: [0; 16],
        data: [0; 24],
    };
    for (d, s) in req.name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    req
}

/// `struct sockaddr_in` of `a` (port 0), as the 16 bytes of a `struct sockaddr`.
fn sockaddr(a: Ipv4Addr) -> libc::sockaddr {
    let mut data = [0 as libc::c_char; 14];
    // sin_port (2 bytes, 0), then sin_addr in network order; the rest is sin_zero.
    for (d, s) in data.iter_mut().skip(2).zip(a.octets()) {
        *d = libc::c_char::from_ne_bytes([s]);
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data: data,
    }
}

fn set_sockaddr(req: &mut Ifreq, a: Ipv4Addr) {
    let sa = sockaddr(a);
    let family = sa.sa_family.to_ne_bytes();
    let bytes = family
        .iter()
        .copied()
        .chain(sa.sa_data.iter().flat_map(|b| b.to_ne_bytes()));
    for (d, s) in req.data.iter_mut().zip(bytes) {
        *d = s;
    }
}

/// Makes TAP device `name` in the calling process's network namespace (the namespace of
/// the process that opens /dev/net/tun is the device's) and returns its descriptor
/// (close-on-exec, non-blocking): each read gives one Ethernet frame the namespace sends,
/// each write delivers one to it. The device goes away with the descriptor's last copy.
pub fn make(name: &str) -> Result<OwnedFd> {
    let path = std::path::Path::new("/dev/net/tun");
    let tun = super::open_path(path, libc::O_RDWR | libc::O_NONBLOCK)?;
    let mut req = ifreq(name);
    let flags = (IFF_TAP | IFF_NO_PI).to_ne_bytes();
    for (d, s) in req.data.iter_mut().zip(flags) {
        *d = s;
    }
    // SAFETY: `req` has the layout of struct ifreq (name, then the flags member of its
    // union) and outlives the call; the kernel reads it and writes the name back.
    let ret = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &raw mut req) };
    check("make the room's network device (TUNSETIFF)", ret)?;
    Ok(tun)
}

/// An AF_INET datagram socket: what the interface address and route ioctls go through.
fn inet_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let fd = check("socket for the room's network settings", fd)?;
    // SAFETY: `fd` was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl_ifreq(
    sock: &OwnedFd,
    op: &'static str,
    request: libc::c_ulong,
    req: &mut Ifreq,
) -> Result<()> {
    // SAFETY: `req` has the layout of struct ifreq and outlives the call; `request` is one
    // of the SIOC*IF* requests, which read (or write back) at most that struct.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, core::ptr::from_mut(req)) };
    check(op, ret).map(drop)
}

/// Gives interface `name` its MTU, the address `addr` with a `prefix`-bit netmask, brings it
/// up and routes everything else through `gateway`.
pub fn configure(
    name: &str,
    mtu: u16,
    addr: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<()> {
    if !(1..=30).contains(&prefix) {
        return Err(Error::Unsupported(
            "the room's network prefix is not 1..=30",
        ));
    }
    let sock = inet_socket()?;
    let mut req = ifreq(name);
    for (d, s) in req.data.iter_mut().zip(i32::from(mtu).to_ne_bytes()) {
        *d = s;
    }
    ioctl_ifreq(&sock, "set the room's MTU", libc::SIOCSIFMTU, &mut req)?;
    let mut req = ifreq(name);
    set_sockaddr(&mut req, addr);
    ioctl_ifreq(&sock, "set the room's address", libc::SIOCSIFADDR, &mut req)?;
    let mask = Ipv4Addr::from(u32::MAX << (32 - u32::from(prefix)));
    let mut req = ifreq(name);
    set_sockaddr(&mut req, mask);
    ioctl_ifreq(
        &sock,
        "set the room's netmask",
        libc::SIOCSIFNETMASK,
        &mut req,
    )?;
    super::interface_up(name)?;
    let any = Ipv4Addr::UNSPECIFIED;
    let mut route = Rtentry {
        pad1: 0,
        dst: sockaddr(any),
        gateway: sockaddr(gateway),
        genmask: sockaddr(any),
        flags: RTF_UP | RTF_GATEWAY,
        pad2: 0,
        pad3: 0,
        pad4: core::ptr::null_mut(),
        metric: 0,
        dev: core::ptr::null_mut(),
        mtu: 0,
        window: 0,
        irtt: 0,
    };
    // SAFETY: `route` has the layout of struct rtentry (field for field, repr(C)); its
    // device pointer is null (the kernel picks the interface that reaches the gateway);
    // it outlives the call, which only reads it.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT as _, &raw mut route) };
    check("add the room's default route", ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structs_have_the_kernels_sizes() {
        assert_eq!(core::mem::size_of::<Ifreq>(), 40);
        // struct rtentry: 120 bytes on every 64-bit Linux.
        assert_eq!(core::mem::size_of::<Rtentry>(), 120);
    }

    #[test]
    fn an_address_is_laid_out_as_sockaddr_in() {
        let mut req = ifreq("eth0");
        set_sockaddr(&mut req, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(&req.name[..5], b"eth0\0");
        let family = (libc::AF_INET as u16).to_ne_bytes();
        assert_eq!(req.data[..8], [family[0], family[1], 0, 0, 10, 0, 2, 15]);
        assert!(req.data[8..].iter().all(|b| *b == 0));
        let long = ifreq("a-name-longer-than-fifteen");
        assert_eq!(long.name[15], 0);
    }
}
