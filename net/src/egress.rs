// SPDX-License-Identifier: GPL-3.0-or-later
//! Which guest frames may leave for the backend.
//!
//! The rule anchor-vmm's virtio-net device applies to a microVM guest's frames, and
//! anchor-jail's relay to a namespace room's (the "guest" below, either way).
//!
//! A user-mode stack such as passt turns each guest connection into a socket of the host
//! it runs on, to the very address the guest wrote: a frame to 127.0.0.1 or to one of
//! the host's own addresses would reach the host itself. The device therefore drops,
//! always, IPv4 frames to loopback (127/8), "this network" (0/8), multicast (224/4) and
//! the reserved and broadcast range (240/4); and, when the VMM is given a deny list
//! (`--net-deny`, one entry per address or local network of the anchor host), IPv4
//! frames to those
//! addresses and every frame that is neither IPv4 nor ARP (the stack then sees nothing
//! it could route some other way: no IPv6, no VLAN tags).

use std::net::Ipv4Addr;

const ETHERTYPE: core::ops::Range<usize> = 12..14;
const IPV4: [u8; 2] = [0x08, 0x00];
const ARP: [u8; 2] = [0x08, 0x06];
/// Ethernet header (14) + the IPv4 header up to the destination (16..20).
const IPV4_VERSION: usize = 14;
const IPV4_DST: core::ops::Range<usize> = 30..34;

/// An IPv4 network: an address and a prefix length (32: that address alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net4 {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Net4 {
    /// The network of `addr` with `prefix` bits (`None` above 32).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Self { addr, prefix })
    }

    /// Whether `a` is in this network.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32u32.saturating_sub(u32::from(self.prefix)))
            .unwrap_or(0);
        (u32::from(a) ^ u32::from(self.addr)) & mask == 0
    }
}

impl From<Ipv4Addr> for Net4 {
    fn from(addr: Ipv4Addr) -> Self {
        Self { addr, prefix: 32 }
    }
}

impl std::str::FromStr for Net4 {
    type Err = ();

    /// `A.B.C.D` or `A.B.C.D/N` (N at most 32).
    fn from_str(s: &str) -> Result<Self, ()> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) if !p.starts_with('+') => (a, p.parse::<u8>().map_err(|_| ())?),
            Some(_) => return Err(()),
            None => (s, 32),
        };
        Self::new(a.parse().map_err(|_| ())?, p).ok_or(())
    }
}

/// The device's egress rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    /// `None`: only the fixed rules. `Some`: strict (IPv4 and ARP only) and these
    /// networks refused as well.
    deny: Option<Vec<Net4>>,
}

/// Addresses that always mean "this host" or "everyone here", never one remote peer.
fn never_remote(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    first == 0 || first == 127 || first >= 224
}

/// The IPv4 destination of the Ethernet `frame`, when it is an IPv4 frame that has one.
pub fn ipv4_destination(frame: &[u8]) -> Option<Ipv4Addr> {
    if frame.get(ETHERTYPE) != Some(&IPV4[..]) {
        return None;
    }
    frame
        .get(IPV4_DST)
        .and_then(|d| <[u8; 4]>::try_from(d).ok())
        .map(Ipv4Addr::from)
}

impl Egress {
    /// Strict: IPv4 and ARP only, and never to `deny`.
    pub fn strict(deny: Vec<Ipv4Addr>) -> Self {
        Self::strict_nets(deny.into_iter().map(Net4::from).collect())
    }

    /// Strict: IPv4 and ARP only, and never into the networks `deny`.
    pub fn strict_nets(deny: Vec<Net4>) -> Self {
        Self { deny: Some(deny) }
    }

    /// Whether the guest's Ethernet `frame` may go to the backend.
    pub fn allows(&self, frame: &[u8]) -> bool {
        let kind = frame.get(ETHERTYPE);
        if kind != Some(&IPV4[..]) {
            return self.deny.is_none() || kind == Some(&ARP[..]);
        }
        let version = frame.get(IPV4_VERSION).map(|b| b >> 4);
        let Some(dst) = frame
            .get(IPV4_DST)
            .and_then(|d| <[u8; 4]>::try_from(d).ok())
        else {
            return false;
        };
        let dst = Ipv4Addr::from(dst);
        if never_remote(dst) {
            return false;
        }
        match &self.deny {
            None => true,
            Some(list) => version == Some(4) && !list.iter().any(|n| n.contains(dst)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_to(dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&IPV4);
        f[14] = 0x45;
        f[30..34].copy_from_slice(&dst);
        f
    }

    #[test]
    fn the_host_itself_is_never_a_destination() {
        let open = Egress::default();
        let strict = Egress::strict(vec![Ipv4Addr::new(10, 77, 0, 1)]);
        for dst in [
            [127, 0, 0, 1],
            [127, 1, 2, 3],
            [0, 0, 0, 0],
            [224, 0, 0, 251],
            [255, 255, 255, 255],
        ] {
            assert!(!open.allows(&ipv4_to(dst)), "{dst:?}");
            assert!(!strict.allows(&ipv4_to(dst)), "{dst:?}");
        }
        assert!(open.allows(&ipv4_to([10, 77, 0, 1])));
        assert!(!strict.allows(&ipv4_to([10, 77, 0, 1])));
        for ok in [[10, 77, 0, 2], [192, 0, 2, 1], [10, 0, 2, 3]] {
            assert!(open.allows(&ipv4_to(ok)) && strict.allows(&ipv4_to(ok)));
        }
    }

    #[test]
    fn strict_passes_only_ipv4_and_arp_and_truncated_ipv4_never() {
        let strict = Egress::strict(Vec::new());
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ARP);
        assert!(strict.allows(&arp));
        let mut v6 = vec![0u8; 54];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(!strict.allows(&v6) && Egress::default().allows(&v6));
        let mut vlan = ipv4_to([10, 77, 0, 2]);
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        assert!(!strict.allows(&vlan));
        let short = &ipv4_to([10, 77, 0, 2])[..33];
        assert!(!strict.allows(short) && !Egress::default().allows(short));
        let mut v5 = ipv4_to([10, 77, 0, 2]);
        v5[14] = 0x55;
        assert!(!strict.allows(&v5));
    }

    /// Regression (review, network escape): an address on the anchor host's loopback
    /// device with a prefix, or a local route, makes a whole network the host's own; the
    /// rule named single addresses only.
    #[test]
    fn a_denied_network_refuses_every_address_in_it() {
        let net: Net4 = "10.99.0.0/24".parse().unwrap();
        let strict = Egress::strict_nets(vec![net, "10.77.0.1".parse().unwrap()]);
        for dst in [
            [10, 99, 0, 0],
            [10, 99, 0, 7],
            [10, 99, 0, 255],
            [10, 77, 0, 1],
        ] {
            assert!(!strict.allows(&ipv4_to(dst)), "{dst:?}");
        }
        for dst in [[10, 99, 1, 0], [10, 98, 255, 255], [10, 77, 0, 2]] {
            assert!(strict.allows(&ipv4_to(dst)), "{dst:?}");
        }
        let all: Net4 = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(192, 0, 2, 1)));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "/8",
            "::1",
        ] {
            assert!(bad.parse::<Net4>().is_err(), "{bad}");
        }
    }

    use proptest::prelude::*;
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_bytes_are_judged_without_panic(
            data in proptest::collection::vec(any::<u8>(), 0..80)
        ) {
            let strict = Egress::strict(vec![Ipv4Addr::new(10, 0, 0, 1)]);
            let _ = strict.allows(&data);
            if let Some(d) = data.get(30..34) {
                if data.get(12..14) == Some(&IPV4[..]) && d[0] == 127 {
                    prop_assert!(!strict.allows(&data) && !Egress::default().allows(&data));
                }
            }
        }
    }
}
