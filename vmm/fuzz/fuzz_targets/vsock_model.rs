// SPDX-License-Identifier: GPL-3.0-or-later
//! vsock_tx's model of the connections: what the device must have done with each so far,
//! the checks on every packet it sends the guest, and the bytes each side writes (fixed
//! pseudo-random streams, checked where they land).

use std::io::{ErrorKind, Read};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;

use anchor_vmm::devices::virtio::vsock::conn::BUF_ALLOC;
use anchor_vmm::devices::virtio::vsock::packet::{
    Header, HOST_CID, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN,
    SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};
use anchor_vmm::devices::virtio::vsock::CONNECT_TIMEOUT;

/// Streams: guest to host and host to guest.
pub const G2H: u8 = 0;
pub const H2G: u8 = 1;
/// The guest's CID.
pub const GUEST_CID: u64 = 3;
/// [`CONNECT_TIMEOUT`] in milliseconds of the harness's clock.
pub const TIMEOUT_MS: u64 = CONNECT_TIMEOUT.as_millis() as u64;

/// The streams' bytes repeat every `PERIOD` bytes (a prime: no chunk size divides it),
/// so a loss, repeat or swap of anything but a multiple of it shows.
pub const PERIOD: usize = 65521;

/// `n` (at most `PERIOD`) bytes of stream `seed` from offset `off`.
pub fn pat(seed: u8, off: u64, n: usize) -> &'static [u8] {
    static TABLES: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    let t = TABLES.get_or_init(|| {
        let table = |mut x: u32| {
            let one: Vec<u8> = (0..PERIOD)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            [one.as_slice(), one.as_slice()].concat()
        };
        [table(0x9e37_79b9), table(0x85eb_ca6b)]
    });
    let start = (off % PERIOD as u64) as usize;
    &t[usize::from(seed == H2G)][start..start + n.min(PERIOD)]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum St {
    Connecting,
    Established,
    Closing,
}

/// The harness's model of one connection: what the device must have done so far.
pub struct Conn {
    /// Host-side (device) port and guest port.
    pub local: u32,
    pub peer: u32,
    pub host_init: bool,
    /// The host process's end (None once it closed it).
    pub host: Option<UnixStream>,
    pub host_shut: bool,
    /// The device's registration of its end.
    pub ev: (RawFd, u32),
    pub st: St,
    pub announced: bool,
    pub no_send: bool,
    pub no_recv: bool,
    /// The guest kept within the credit the device advertised and the host kept its end:
    /// nothing the device took may be lost.
    pub clean: bool,
    /// Neither the guest (a packet the device answers with RST) nor an event (ERROR) gave
    /// the device a reason to reset: an RST then only ends a connection the guest closed,
    /// after the host got everything.
    pub polite: bool,
    /// Guest to host: bytes the device took, the last fwd_cnt it told the guest, data
    /// bytes the host read, the `OK <port>` line the host reads first.
    pub sent: u64,
    pub adv_fwd: u64,
    pub host_got: u64,
    pub ok_line: Vec<u8>,
    pub ok_pos: usize,
    /// Host to guest: bytes the host wrote, bytes the guest got (also as the device's
    /// wrapping rx_cnt), and the credit fields of the guest's last packet.
    pub host_sent: u64,
    pub rx_total: u64,
    pub rx_cnt: u32,
    pub peer_buf: u32,
    pub peer_fwd: u32,
    /// Harness clock (ms): when a host-initiated connection's wait for the guest's answer
    /// ends, and the first and the last time the device (SHUTDOWN sent) or the guest
    /// (SHUTDOWN of both directions) may have started the wait for the guest's RST: the
    /// device's deadline is between the first and the last plus the timeout (the guest's
    /// SHUTDOWN sets it only while the host has not taken everything).
    pub deadline: u64,
    pub closing_first: Option<u64>,
    pub closing_at: Option<u64>,
}

impl Conn {
    pub fn new(local: u32, peer: u32, host: UnixStream, ev: (RawFd, u32), host_init: bool) -> Self {
        Self {
            local,
            peer,
            host_init,
            host: Some(host),
            host_shut: false,
            ev,
            st: if host_init {
                St::Connecting
            } else {
                St::Established
            },
            announced: false,
            no_send: false,
            no_recv: false,
            clean: true,
            polite: true,
            sent: 0,
            adv_fwd: 0,
            host_got: 0,
            ok_line: Vec::new(),
            ok_pos: 0,
            host_sent: 0,
            rx_total: 0,
            rx_cnt: 0,
            peer_buf: 0,
            peer_fwd: 0,
            deadline: u64::MAX,
            closing_first: None,
            closing_at: None,
        }
    }

    /// Bytes the host read from its end, checked against what the guest sent.
    pub fn host_bytes(&mut self, mut got: &[u8]) {
        while let (Some(&b), Some(&want)) = (got.first(), self.ok_line.get(self.ok_pos)) {
            assert_eq!(b, want, "conn {}:{}: the OK line", self.local, self.peer);
            self.ok_pos += 1;
            got = &got[1..];
        }
        if self.clean {
            for part in got.chunks(PERIOD) {
                let want = pat(G2H, self.host_got, part.len());
                assert!(
                    part == want,
                    "conn {}:{}: guest bytes from {}",
                    self.local,
                    self.peer,
                    self.host_got
                );
                self.host_got += part.len() as u64;
            }
        } else {
            self.host_got += got.len() as u64;
        }
        assert!(
            self.host_got <= self.sent,
            "the host read more than the guest sent"
        );
    }

    /// Read what the host's end has (up to `max` bytes): None at EOF or error.
    pub fn host_read(&mut self, max: usize) -> Option<usize> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 1 << 16]);
        }
        let s = self.host.as_mut()?;
        let mut buf = BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let got = s.read(&mut buf[..max.clamp(1, 1 << 16)]);
        let r = match got {
            Ok(0) => None,
            Ok(n) => {
                self.host_bytes(&buf[..n]);
                Some(n)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Some(0),
            Err(_) => None,
        };
        BUF.with(|b| *b.borrow_mut() = buf);
        r
    }
}

/// The connections the guest and the host know of, as the device must see them.
#[derive(Default)]
pub struct Model {
    pub conns: Vec<Conn>,
    /// The harness's clock (ms since the device was made).
    pub now: u64,
    /// Connections the device closed at their deadline whose RST the guest has not got
    /// yet (local port, guest port).
    pub expired: Vec<(u32, u32)>,
}

impl Model {
    pub fn find(&self, local: u32, peer: u32) -> Option<usize> {
        self.conns
            .iter()
            .position(|c| c.local == local && c.peer == peer)
    }

    /// Checks a packet the device sent the guest and plays it into the model.
    pub fn device_packet(&mut self, h: &Header, payload: &[u8]) {
        assert_eq!(
            (h.src_cid, h.dst_cid, h.type_),
            (HOST_CID, GUEST_CID, TYPE_STREAM),
            "{h:?}"
        );
        assert!(
            (OP_REQUEST..=OP_CREDIT_UPDATE).contains(&h.op),
            "device sent {h:?}"
        );
        assert_eq!(
            h.op == OP_RW,
            h.len > 0,
            "payload only (and always) in OP_RW: {h:?}"
        );
        if h.buf_alloc == 0 {
            // An RST for a packet that had no connection.
            assert_eq!((h.op, h.fwd_cnt), (OP_RST, 0), "{h:?}");
            return;
        }
        assert_eq!(h.buf_alloc, BUF_ALLOC, "{h:?}");
        // The RST of a connection closed at its deadline is queued before anything of a
        // later connection on the same ports: any other packet first means it was dropped
        // (the queue of RST replies was full).
        if let Some(e) = self
            .expired
            .iter()
            .position(|&p| p == (h.src_port, h.dst_port))
        {
            self.expired.remove(e);
            if h.op == OP_RST {
                return;
            }
        }
        let Some(i) = self.find(h.src_port, h.dst_port) else {
            panic!("{h:?} is for a connection the guest was never told of");
        };
        let c = &mut self.conns[i];
        let fwd = u64::from(h.fwd_cnt);
        assert!(
            fwd >= c.adv_fwd,
            "fwd_cnt went back: {} then {fwd}",
            c.adv_fwd
        );
        assert!(
            fwd <= c.sent,
            "fwd_cnt {fwd} counts more than the guest sent ({})",
            c.sent
        );
        assert!(
            fwd >= c.host_got,
            "fwd_cnt {fwd} below what the host read ({})",
            c.host_got
        );
        if c.clean {
            assert!(
                c.sent - fwd <= u64::from(BUF_ALLOC),
                "the device holds {} bytes of a connection the guest kept within credit",
                c.sent - fwd
            );
        }
        c.adv_fwd = fwd;
        match h.op {
            OP_REQUEST => {
                assert!(c.host_init && !c.announced, "{h:?}");
                c.announced = true;
            }
            OP_RESPONSE => {
                assert!(!c.host_init && !c.announced, "{h:?}");
                c.announced = true;
            }
            OP_RST => {
                let mut c = self.conns.remove(i);
                if c.clean && c.polite {
                    let what = format!("conn {}:{}", c.local, c.peer);
                    assert!(c.no_send && c.no_recv, "{what}: reset, and nobody broke it");
                    // The device closed its end: the host reads the rest, then the end.
                    for _ in 0..64 {
                        if c.host_read(1 << 16).is_none() {
                            break;
                        }
                    }
                    assert_eq!(c.host_got, c.sent, "{what}: closed before the host got all");
                    assert_eq!(c.ok_pos, c.ok_line.len(), "{what}: the OK line");
                }
            }
            OP_SHUTDOWN => {
                assert_eq!(h.flags, SHUTDOWN_RCV | SHUTDOWN_SEND, "{h:?}");
                c.st = St::Closing;
                c.closing_first = c.closing_first.or(Some(self.now));
                c.closing_at = Some(self.now);
            }
            OP_RW => {
                assert!(
                    c.announced,
                    "data before the connection was announced: {h:?}"
                );
                assert_eq!(
                    c.st,
                    St::Established,
                    "data on a connection not established: {h:?}"
                );
                assert!(!c.no_recv, "data after the guest's SHUTDOWN(RCV): {h:?}");
                let credit = c.peer_buf.saturating_sub(c.rx_cnt.wrapping_sub(c.peer_fwd));
                assert!(
                    h.len <= credit,
                    "{} bytes sent on a credit of {credit}: {h:?}",
                    h.len
                );
                let want = pat(H2G, c.rx_total, payload.len());
                assert!(
                    payload == want,
                    "conn {}:{}: host bytes from {}",
                    c.local,
                    c.peer,
                    c.rx_total
                );
                c.rx_total += payload.len() as u64;
                c.rx_cnt = c.rx_cnt.wrapping_add(h.len);
                assert!(
                    c.rx_total <= c.host_sent,
                    "the guest got more than the host wrote"
                );
            }
            _ => {}
        }
    }

    /// The model's side of a guest packet the device accepted (mirrors handle_tx):
    /// `accepted` is the stream the device connected to a harness listener for it, `added`
    /// the registrations the device made meanwhile.
    pub fn guest_packet(
        &mut self,
        h: &Header,
        accepted: Option<UnixStream>,
        added: &[(RawFd, u32)],
    ) {
        let ci = self.find(h.dst_port, h.src_port);
        if let Some(i) = ci {
            self.conns[i].peer_buf = h.buf_alloc;
            self.conns[i].peer_fwd = h.fwd_cnt;
        }
        if h.op != OP_REQUEST || ci.is_some() {
            assert!(accepted.is_none(), "the device connected for {h:?}");
        }
        let Some(i) = ci else {
            if let (OP_REQUEST, Some(s)) = (h.op, accepted) {
                assert_eq!(added.len(), 1, "one registration per new connection");
                let _ = s.set_nonblocking(true);
                let mut c = Conn::new(h.dst_port, h.src_port, s, added[0], false);
                c.peer_buf = h.buf_alloc;
                c.peer_fwd = h.fwd_cnt;
                self.conns.push(c);
            } else {
                assert!(added.is_empty());
            }
            return;
        };
        let c = &mut self.conns[i];
        match h.op {
            OP_RST => {
                self.conns.remove(i);
            }
            OP_REQUEST => c.polite = false,
            OP_RESPONSE if c.st == St::Connecting => {
                c.st = St::Established;
                if c.no_send || c.host.is_none() {
                    // The device cannot write the OK line: it resets.
                    c.clean = false;
                } else {
                    c.ok_line = format!("OK {}\n", c.local).into_bytes();
                }
            }
            OP_RESPONSE => c.polite = false,
            OP_RW if c.st == St::Established && !c.no_send => {
                let len = u64::from(h.len);
                if c.sent + len - c.adv_fwd > u64::from(BUF_ALLOC) {
                    c.clean = false;
                }
                c.sent += len;
            }
            OP_RW => c.polite = false,
            OP_SHUTDOWN => {
                c.no_send |= h.flags & SHUTDOWN_SEND != 0;
                c.no_recv |= h.flags & SHUTDOWN_RCV != 0;
                if c.no_send && c.no_recv {
                    c.closing_first = c.closing_first.or(Some(self.now));
                    c.closing_at = Some(self.now);
                }
            }
            _ => {}
        }
    }
}

impl Conn {
    /// The device must have closed it at a tick at `now`: a host connection the guest
    /// never answered, or one whose SHUTDOWN the guest never answered with RST.
    pub fn due(&self, now: u64) -> bool {
        match self.st {
            St::Connecting => self.deadline <= now,
            St::Closing => self.closing_at.is_some_and(|t| t + TIMEOUT_MS <= now),
            St::Established => false,
        }
    }

    /// The device may have closed it at a tick at `now`: past the earliest deadline it
    /// may have set for the guest's RST.
    pub fn may_be_due(&self, now: u64) -> bool {
        self.closing_first.is_some_and(|t| t + TIMEOUT_MS <= now)
    }
}
