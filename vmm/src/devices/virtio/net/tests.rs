// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-net queue logic: MockSplitQueue on the guest side, a socketpair standing for
//! the backend (passt), no epoll (readiness is reported by calling the device directly).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::frame::{MAX_FRAME, VNET_HDR_LEN};
use super::*;
use crate::devices::virtio::queue::NullRegistry;
use crate::devices::virtio::test_utils::*;
use crate::devices::virtio::VirtioDevice;

static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn budget(bytes: u64) -> Budget<'static> {
    Budget::new(bytes, &NEVER)
}

/// Tx frames: 4 slots of 0x11000 bytes (a maximal chain fits in one).
const TX_BUF: u64 = 0x1_0000;
const TX_SLOT: u64 = 0x1_1000;
/// Rx buffers: 16 of 4 KiB.
const RX_BUF: u64 = 0x8_0000;
const RX_LEN: u32 = 4096;

struct H {
    m: &'static GuestMemoryMmap<()>,
    rxq: MockSplitQueue<'static, GuestMemoryMmap<()>>,
    txq: MockSplitQueue<'static, GuestMemoryMmap<()>>,
    rx: Queue,
    tx: Queue,
    dev: Net,
    peer: UnixStream,
    reg: NullRegistry,
    n_tx: u16,
    n_rx: u16,
    rx_seen: u16,
}

fn h() -> H {
    let m: &'static GuestMemoryMmap<()> = Box::leak(Box::new(mem()));
    let rxq = MockSplitQueue::create(m, GuestAddress(0), 16);
    let txq = MockSplitQueue::create(m, GuestAddress(0x1000), 16);
    let (rx, tx) = (queue(&rxq), queue(&txq));
    let (ours, peer) = UnixStream::pair().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut dev = Net::new(ours).unwrap();
    dev.set_ready(true, true);
    H {
        m,
        rxq,
        txq,
        rx,
        tx,
        dev,
        peer,
        reg: NullRegistry::default(),
        n_tx: 0,
        n_rx: 0,
        rx_seen: 0,
    }
}

/// An Ethernet-looking frame of `len` bytes whose content names `tag`.
fn eth(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
}

fn vnet_hdr(flags: u8, gso: u8) -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    h[0] = flags;
    h[1] = gso;
    h
}

impl H {
    /// One rx turn whose budget is unbounded but whose stop flag is set (a vcpu resetting
    /// the device asks the VMM thread to stop) after its first check.
    fn rx_turn_asked_to_stop(&mut self) -> Pass {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut b = Budget::new(u64::MAX, &stop);
        b.spend(0);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.dev
            .process_rx(&mut self.rx, self.m, &mut self.reg, &mut b)
            .unwrap()
    }

    /// Lay `bytes` out in the next tx slot and offer it as a chain of descriptors with
    /// the given lengths and writability (the bytes are cut in that order).
    fn offer_tx(&mut self, bytes: &[u8], parts: &[(u32, bool)]) {
        let slot = u64::from(self.n_tx % 4);
        let a = TX_BUF + slot * TX_SLOT;
        self.m.write_slice(bytes, GuestAddress(a)).unwrap();
        let mut off = 0u64;
        let descs: Vec<(u64, u32, bool)> = parts
            .iter()
            .map(|&(len, w)| {
                let d = (a + off, len, w);
                off += u64::from(len);
                d
            })
            .collect();
        let first = (self.n_tx % 4) * 4;
        push_chain(&self.txq, self.m, &chain(&descs, first), first);
        self.n_tx += 1;
    }

    /// The guest sends header + frame in two readable descriptors.
    fn send(&mut self, hdr: [u8; VNET_HDR_LEN], frame: &[u8]) {
        let mut b = hdr.to_vec();
        b.extend_from_slice(frame);
        self.offer_tx(
            &b,
            &[(VNET_HDR_LEN as u32, false), (frame.len() as u32, false)],
        );
        self.run_tx();
    }

    fn run_tx(&mut self) -> Pass {
        self.dev
            .process_tx(&mut self.tx, self.m, &mut self.reg, &mut budget(u64::MAX))
            .unwrap()
    }

    fn post_rx(&mut self, n: u16, len: u32) {
        for _ in 0..n {
            let i = self.n_rx % 16;
            push_chain(
                &self.rxq,
                self.m,
                &chain(&[(RX_BUF + u64::from(i) * 0x1000, len, true)], i),
                i,
            );
            self.n_rx += 1;
        }
    }

    /// Run the rx side and return (virtio-net header, frame) of every used chain.
    fn recv(&mut self) -> Vec<([u8; VNET_HDR_LEN], Vec<u8>)> {
        self.dev.set_ready(true, false);
        self.dev
            .process_rx(&mut self.rx, self.m, &mut self.reg, &mut budget(u64::MAX))
            .unwrap();
        self.collect_rx()
    }

    fn collect_rx(&mut self) -> Vec<([u8; VNET_HDR_LEN], Vec<u8>)> {
        let mut out = Vec::new();
        while self.rx_seen != used_idx(&self.rxq, self.m) {
            let (id, len) = used_elem(&self.rxq, self.m, self.rx_seen);
            self.rx_seen += 1;
            let a = RX_BUF + u64::from(id) * 0x1000;
            let mut hdr = [0u8; VNET_HDR_LEN];
            let mut data = vec![0u8; (len as usize).saturating_sub(VNET_HDR_LEN)];
            if len > 0 {
                self.m.read_slice(&mut hdr, GuestAddress(a)).unwrap();
                self.m
                    .read_slice(&mut data, GuestAddress(a + VNET_HDR_LEN as u64))
                    .unwrap();
            }
            out.push((hdr, data));
        }
        out
    }

    /// What the backend received: whole frames (prefix checked), waiting up to 2 s for
    /// `n` of them.
    fn backend_frames(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let mut len = [0u8; 4];
                self.peer.read_exact(&mut len).unwrap();
                let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
                self.peer.read_exact(&mut f).unwrap();
                f
            })
            .collect()
    }

    /// Nothing more arrives at the backend.
    fn backend_quiet(&mut self) {
        self.peer.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        match self.peer.read(&mut b) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("the backend got more bytes: {other:?}"),
        }
        self.peer.set_nonblocking(false).unwrap();
    }

    /// The backend sends `frame` with its length prefix.
    fn backend_send(&mut self, frame: &[u8]) {
        self.peer
            .write_all(&(frame.len() as u32).to_be_bytes())
            .unwrap();
        self.peer.write_all(frame).unwrap();
    }
}

#[test]
fn config_space_and_features_offer_no_offloads() {
    let h = h();
    let c = h.dev.config_space();
    assert_eq!(c.len(), 12);
    assert_eq!(&c[..6], &MAC);
    assert_eq!(c[6..8], [0, 0], "status is not offered");
    assert_eq!(u16::from_le_bytes([c[8], c[9]]), 1);
    assert_eq!(u16::from_le_bytes([c[10], c[11]]), MTU);
    let f = h.dev.avail_features();
    assert_ne!(f & F_MAC, 0);
    assert_ne!(f & F_MTU, 0);
    // CSUM 0, GUEST_CSUM 1, GUEST_TSO4..GUEST_UFO 7..10, HOST_TSO4..HOST_UFO 11..14,
    // MRG_RXBUF 15, STATUS 16, CTRL_VQ 17, MQ 22, GUEST/HOST_USO 54/56.
    for bit in [0, 1, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 22, 54, 56] {
        assert_eq!(f & (1 << bit), 0, "feature bit {bit} must not be offered");
    }
    assert_eq!(h.dev.device_type(), 1);
    assert_eq!(h.dev.queue_max_sizes().len(), 2);
}

#[test]
fn guest_frames_reach_the_backend_length_prefixed() {
    let mut h = h();
    let a = eth(60, 1);
    let b = eth(1514, 2);
    h.send(vnet_hdr(0, 0), &a);
    // Header split over two descriptors, frame over three.
    let mut bytes = vnet_hdr(0, 0).to_vec();
    bytes.extend_from_slice(&b);
    h.offer_tx(
        &bytes,
        &[
            (5, false),
            (7, false),
            (100, false),
            (1000, false),
            (414, false),
        ],
    );
    h.run_tx();
    assert_eq!(h.backend_frames(2), [a, b]);
    assert_eq!(used_idx(&h.txq, h.m), 2);
    assert_eq!(
        used_elem(&h.txq, h.m, 0).1,
        0,
        "tx chains are used with length 0"
    );
    assert_eq!(h.dev.stats().tx_frames, 2);
    assert_eq!(h.dev.buffered(), (0, 0));
}

#[test]
fn malformed_guest_frames_are_dropped_and_the_next_one_passes() {
    let mut h = h();
    let f = eth(100, 9);
    // Checksum offload and segmentation were not offered.
    h.send(vnet_hdr(1, 0), &f);
    h.send(vnet_hdr(0, 1), &f);
    h.send(vnet_hdr(0, 0x80), &f);
    // A header alone, a header and a runt, a short header.
    h.offer_tx(&vnet_hdr(0, 0), &[(12, false)]);
    h.offer_tx(&[0u8; 25], &[(12, false), (13, false)]);
    h.run_tx();
    h.offer_tx(&[0u8; 8], &[(8, false)]);
    // Write-only descriptors where the device must read.
    h.offer_tx(&[0u8; 112], &[(12, true), (100, true)]);
    h.offer_tx(&[0u8; 112], &[(12, false), (100, true)]);
    h.run_tx();
    // Memory that is not there.
    let rest = u32::try_from(MEM_SIZE as u64 - TX_BUF).unwrap();
    h.offer_tx(&vnet_hdr(0, 0), &[(12, false), (rest, false)]);
    h.run_tx();
    let dropped = h.dev.stats().tx_dropped;
    assert_eq!(dropped, 9);
    h.send(vnet_hdr(0, 0), &f);
    assert_eq!(h.backend_frames(1), [f]);
    h.backend_quiet();
    assert_eq!(used_idx(&h.txq, h.m), 10, "every chain was returned");
}

#[test]
fn the_tx_frame_size_bound_is_the_mtu_plus_an_ethernet_header_and_a_vlan_tag() {
    let mut h = h();
    let max = eth(MAX_TX_FRAME, 3);
    let mut bytes = vnet_hdr(0, 0).to_vec();
    bytes.extend_from_slice(&max);
    h.offer_tx(&bytes, &[(1530, false)]);
    h.run_tx();
    assert_eq!(h.backend_frames(1), std::slice::from_ref(&max));
    // One byte more, in one descriptor or spread over several: dropped, nothing sent.
    bytes.push(0);
    h.offer_tx(&bytes, &[(1531, false)]);
    h.offer_tx(&bytes, &[(500, false), (500, false), (531, false)]);
    // A huge readable length (the guest's claim; memory is 1 MiB).
    h.offer_tx(&bytes, &[(u32::MAX, false)]);
    h.run_tx();
    assert_eq!(h.dev.stats().tx_dropped, 3);
    h.backend_quiet();
    assert_eq!(h.dev.buffered(), (0, 0));
}

#[test]
fn backend_frames_reach_the_guest_with_a_header() {
    let mut h = h();
    let a = eth(42, 4);
    let b = eth(1514, 5);
    h.backend_send(&a);
    h.backend_send(&b);
    h.post_rx(4, RX_LEN);
    let got = h.recv();
    let mut want_hdr = [0u8; VNET_HDR_LEN];
    want_hdr[10] = 1; // num_buffers
    assert_eq!(got, [(want_hdr, a), (want_hdr, b)]);
    assert_eq!(h.dev.stats().rx_frames, 2);
    assert_eq!(h.dev.buffered(), (0, 0));
}

#[test]
fn a_frame_split_across_reads_is_reassembled() {
    let mut h = h();
    let f = eth(300, 6);
    let mut wire = (f.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(&f);
    h.post_rx(2, RX_LEN);
    for piece in wire.chunks(7) {
        h.peer.write_all(piece).unwrap();
        // The device sees each piece arrive as its own readable edge.
        let got = h.recv();
        if !got.is_empty() {
            assert_eq!(
                got,
                [(
                    {
                        let mut x = [0u8; 12];
                        x[10] = 1;
                        x
                    },
                    f.clone()
                )]
            );
            return;
        }
    }
    panic!("the frame never reached the guest");
}

#[test]
fn without_rx_chains_the_device_does_not_read() {
    let mut h = h();
    for i in 0..50 {
        h.backend_send(&eth(1500, i));
    }
    // No rx chains posted: nothing is read, however often the socket says readable.
    for _ in 0..5 {
        assert!(h.recv().is_empty());
    }
    assert_eq!(
        h.dev.buffered(),
        (0, 0),
        "no bytes were taken from the backend"
    );
    h.post_rx(16, RX_LEN);
    let got = h.recv();
    assert_eq!(got.len(), 16);
    assert_eq!(got[15].1, eth(1500, 15));
    assert!(h.dev.buffered().1 <= RX_QUEUE_BYTES);
}

#[test]
fn frames_too_big_for_the_chain_and_runts_are_dropped_not_truncated() {
    let mut h = h();
    h.backend_send(&eth(2000, 1)); // more than a 1518 + 12 byte buffer
    h.backend_send(&eth(13, 2)); // shorter than an Ethernet header
    h.backend_send(&[]);
    h.backend_send(&eth(1518, 3)); // exactly fits
    h.post_rx(1, 1518 + 12);
    // A chain too small for any frame is returned unused; so is a read-only one.
    h.post_rx(1, 20);
    let i = h.n_rx % 16;
    push_chain(
        &h.rxq,
        h.m,
        &chain(&[(RX_BUF + u64::from(i) * 0x1000, RX_LEN, false)], i),
        i,
    );
    h.n_rx += 1;
    let got = h.recv();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].1, eth(1518, 3));
    assert_eq!(used_elem(&h.rxq, h.m, 1).1, 0);
    assert_eq!(used_elem(&h.rxq, h.m, 2).1, 0);
    let st = h.dev.stats();
    assert_eq!((st.rx_dropped, st.rx_frames, st.rx_unusable), (3, 1, 2));
}

#[test]
fn an_oversized_length_prefix_closes_the_backend() {
    let mut h = h();
    h.post_rx(2, RX_LEN);
    let over = (MAX_FRAME as u32 + 1).to_be_bytes();
    h.peer.write_all(&over).unwrap();
    h.peer.write_all(&[0u8; 64]).unwrap();
    assert!(h.recv().is_empty());
    assert_eq!(
        h.dev.closed(),
        Some(Closed::Framing(frame::FrameError::TooLong(
            MAX_FRAME as u32 + 1
        )))
    );
    // The backend sees EOF; guest frames are dropped from now on (and the ring moves).
    let mut b = [0u8; 8];
    assert_eq!(h.peer.read(&mut b).unwrap(), 0);
    h.send(vnet_hdr(0, 0), &eth(60, 0));
    assert_eq!(used_idx(&h.txq, h.m), 1);
    assert_eq!(h.dev.stats().tx_dropped, 1);
    assert_eq!(h.dev.buffered(), (0, 0));
}

#[test]
fn backend_eof_closes_it_once() {
    let mut h = h();
    h.post_rx(2, RX_LEN);
    h.backend_send(&eth(60, 1));
    h.peer.shutdown(std::net::Shutdown::Write).unwrap();
    let got = h.recv();
    assert_eq!(got.len(), 1, "the frame before the EOF is delivered");
    assert!(h.recv().is_empty());
    assert_eq!(h.dev.closed(), Some(Closed::Eof));
}

#[test]
fn a_slow_backend_applies_backpressure_and_memory_stays_bounded() {
    let mut h = h();
    let frame = |k: u16| eth(MAX_TX_FRAME, k as u8);
    // The backend does not read: the socket buffer fills, then the device's queue, then
    // chains stay in the ring.
    let mut offered = 0u16;
    for _ in 0..2000 {
        let mut bytes = vnet_hdr(0, 0).to_vec();
        bytes.extend_from_slice(&frame(offered));
        h.offer_tx(&bytes, &[(bytes.len() as u32, false)]);
        offered += 1;
        h.run_tx();
        if h.dev.tx_blocked() {
            break;
        }
    }
    assert!(h.dev.tx_blocked(), "never blocked after {offered} frames");
    assert!(h.dev.buffered().0 <= TX_QUEUE_BYTES);
    let used = used_idx(&h.txq, h.m);
    assert_eq!(used, offered - 1, "the last chain waits in the ring");
    // More notifications change nothing while the backend is stuck.
    h.run_tx();
    assert_eq!(used_idx(&h.txq, h.m), used);
    // The backend reads (on its own thread); writable edges let everything through,
    // the waiting chain included.
    let mut peer = h.peer.try_clone().unwrap();
    let n = usize::from(offered);
    let reader = std::thread::spawn(move || {
        (0..n)
            .map(|_| {
                let mut len = [0u8; 4];
                peer.read_exact(&mut len)?;
                let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
                peer.read_exact(&mut f)?;
                Ok(f)
            })
            .collect::<std::io::Result<Vec<_>>>()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (used_idx(&h.txq, h.m) != offered || h.dev.buffered().0 > 0)
        && std::time::Instant::now() < deadline
    {
        h.dev.set_ready(false, true);
        h.run_tx();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(used_idx(&h.txq, h.m), offered);
    assert!(!h.dev.tx_blocked());
    let got = reader.join().unwrap().unwrap();
    assert_eq!(got.len(), n);
    for (k, g) in got.iter().enumerate() {
        assert!(
            *g == frame(k as u16),
            "frame {k} arrived whole and in order"
        );
    }
}

#[test]
fn rx_work_per_turn_is_bounded_by_the_budget() {
    let mut h = h();
    for i in 0..10 {
        h.backend_send(&eth(1500, i));
    }
    h.post_rx(10, RX_LEN);
    h.dev.set_ready(true, false);
    let p = h
        .dev
        .process_rx(&mut h.rx, h.m, &mut h.reg, &mut budget(4000))
        .unwrap();
    assert!(p.more, "work was left for the next turn");
    assert_eq!(p.used, 3, "1512-byte deliveries until 4000 bytes are spent");
    let p = h
        .dev
        .process_rx(&mut h.rx, h.m, &mut h.reg, &mut budget(u64::MAX))
        .unwrap();
    assert_eq!(p.used, 7);
    assert_eq!(h.collect_rx().len(), 10);
}

/// Regression (review, hostile guest): a frame dropped because the guest's rx chain is
/// too small for it cost the turn nothing, so one small rx chain made one turn read and
/// drop everything the backend had, whatever the turn's budget (and whatever a vcpu
/// waiting for a reset had asked through the stop flag).
#[test]
fn frames_dropped_for_a_small_rx_chain_count_against_the_turn_budget() {
    let mut h = h();
    for i in 0..40 {
        h.backend_send(&eth(1500, i));
    }
    h.post_rx(1, 100);
    h.dev.set_ready(true, false);
    let p = h
        .dev
        .process_rx(&mut h.rx, h.m, &mut h.reg, &mut budget(4000))
        .unwrap();
    assert!(p.more, "work was left for the next turn");
    assert_eq!(p.used, 0, "no frame fits the chain");
    assert_eq!(
        h.dev.stats().rx_dropped,
        3,
        "1500-byte drops until 4000 bytes are spent"
    );
    let p = h
        .dev
        .process_rx(&mut h.rx, h.m, &mut h.reg, &mut budget(u64::MAX))
        .unwrap();
    assert_eq!((p.used, p.more), (0, false), "the chain waits for a frame");
    assert_eq!(h.dev.stats().rx_dropped, 40);
    // A stop request (a vcpu resetting the device) ends the drops as well.
    for i in 0..5 {
        h.backend_send(&eth(1500, i));
    }
    let p = h.rx_turn_asked_to_stop();
    assert!(p.more);
    assert_eq!(h.dev.stats().rx_dropped, 40);
}

/// Regression (review, hostile backend): runts from the backend (frames shorter than an
/// Ethernet header, zero-length ones included) were dropped at no cost to the turn, and
/// the device read the socket again for more, so a backend (passt taken over) sending
/// runts without pause held the VMM thread in one turn for as long as it wrote (here:
/// all 20000 of them in one turn of 4000 bytes), whatever a vcpu waiting for a reset
/// had asked through the stop flag.
#[test]
fn runts_from_the_backend_count_against_the_turn_budget() {
    let mut h = h();
    let runts = 20_000u64;
    // One write: the socket holds them all at once (80 000 bytes).
    h.peer.write_all(&vec![0u8; 4 * runts as usize]).unwrap();
    h.post_rx(1, RX_LEN);
    h.dev.set_ready(true, false);
    let p = h
        .dev
        .process_rx(&mut h.rx, h.m, &mut h.reg, &mut budget(4000))
        .unwrap();
    assert!(p.more, "work was left for the next turn");
    assert_eq!(p.used, 0);
    assert_eq!(
        h.dev.stats().rx_dropped,
        1000,
        "4-byte runts (their prefix) until 4000 bytes are spent"
    );
    let p = h.rx_turn_asked_to_stop();
    assert!(p.more, "a stop request ends the drops as well");
    assert_eq!(h.dev.stats().rx_dropped, 1000);
    // Later turns drop the rest, and the chain still takes a frame after them.
    h.backend_send(&eth(60, 7));
    let mut turns = 0;
    let got = loop {
        let got = h.collect_rx();
        if !got.is_empty() {
            break got;
        }
        h.dev
            .process_rx(&mut h.rx, h.m, &mut h.reg, &mut budget(4000))
            .unwrap();
        turns += 1;
        assert!(turns <= runts / 1000 + 1, "{turns} turns");
    };
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, eth(60, 7));
    assert_eq!(h.dev.stats().rx_dropped, runts);
}

#[test]
fn a_driver_reset_keeps_the_backend() {
    let mut h = h();
    h.dev.reset();
    h.send(vnet_hdr(0, 0), &eth(60, 1));
    assert_eq!(h.backend_frames(1), [eth(60, 1)]);
    assert_eq!(h.dev.closed(), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Frames of any valid size cross the device both ways whole and in order, however
        /// the guest batches its rx buffers.
        #[test]
        fn frames_cross_intact_in_order(
            lens in proptest::collection::vec(14usize..=1518, 1..40),
            batches in proptest::collection::vec(1u16..=16, 1..40),
        ) {
            let mut h = h();
            // Guest -> backend, four at a time (the tx slots).
            for chunk in lens.chunks(4) {
                for (k, &len) in chunk.iter().enumerate() {
                    let mut b = vnet_hdr(0, 0).to_vec();
                    b.extend_from_slice(&eth(len, k as u8));
                    h.offer_tx(&b, &[(b.len() as u32, false)]);
                }
                h.run_tx();
                let got = h.backend_frames(chunk.len());
                for (k, (g, &len)) in got.iter().zip(chunk).enumerate() {
                    prop_assert_eq!(g, &eth(len, k as u8));
                }
            }
            // Backend -> guest.
            for (i, &len) in lens.iter().enumerate() {
                h.backend_send(&eth(len, i as u8));
            }
            let mut got = Vec::new();
            let mut b = batches.iter().cycle();
            while got.len() < lens.len() {
                let n = (*b.next().unwrap()).min(16);
                h.post_rx(n, RX_LEN);
                let new = h.recv();
                prop_assert!(!new.is_empty() || got.len() == lens.len());
                got.extend(new);
            }
            prop_assert_eq!(got.len(), lens.len());
            for (i, ((hdr, f), &len)) in got.iter().zip(&lens).enumerate() {
                prop_assert_eq!(hdr[10], 1);
                prop_assert_eq!(f, &eth(len, i as u8));
            }
        }
    }
}

/// An IPv4 frame (Ethernet + a 20-byte IPv4 header, no payload) to `dst`.
fn ipv4_to(dst: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[30..34].copy_from_slice(&dst);
    f
}

#[test]
fn frames_to_the_host_itself_never_reach_the_backend() {
    let mut h = h();
    // Always: loopback and "this host"; the device's ring moves on.
    h.send(vnet_hdr(0, 0), &ipv4_to([127, 0, 0, 1]));
    h.send(vnet_hdr(0, 0), &ipv4_to([0, 0, 0, 0]));
    let remote = ipv4_to([10, 77, 0, 2]);
    h.send(vnet_hdr(0, 0), &remote);
    assert_eq!(h.backend_frames(1), std::slice::from_ref(&remote));
    h.backend_quiet();
    assert_eq!((h.dev.stats().tx_refused, h.dev.stats().tx_frames), (2, 1));
    assert_eq!(used_idx(&h.txq, h.m), 3);
    // Strict (the jail's --net-deny): the host's addresses and non-IPv4 frames too.
    h.dev
        .set_egress(egress::Egress::strict(vec![std::net::Ipv4Addr::new(
            10, 77, 0, 1,
        )]));
    h.send(vnet_hdr(0, 0), &ipv4_to([10, 77, 0, 1]));
    h.send(vnet_hdr(0, 0), &eth(60, 1));
    h.send(vnet_hdr(0, 0), &remote);
    assert_eq!(h.backend_frames(1), [remote]);
    h.backend_quiet();
    assert_eq!((h.dev.stats().tx_refused, h.dev.stats().tx_frames), (4, 2));
    assert_eq!(h.dev.buffered(), (0, 0));
}

/// A device whose backend end is one end of a `SOCK_SEQPACKET` pair: every write the device
/// makes arrives at `peer` as one record, so a test sees where the device cut its writes.
fn h_seqpacket() -> (H, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid two-int array for the kernel to fill.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: the descriptor was just created and is owned by nobody else.
    let ours = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let peer = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[1]) };
    let mut h = h();
    h.dev = Net::new(UnixStream::from(ours)).unwrap();
    h.dev.set_ready(true, true);
    (h, peer)
}

/// The records waiting at a `SOCK_SEQPACKET` peer, each as it was written.
fn records(peer: &std::os::fd::OwnedFd) -> Vec<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    loop {
        let mut b = vec![0u8; 1 << 18];
        // SAFETY: `b` is a writable buffer of the length given.
        let n = unsafe {
            libc::recv(
                peer.as_raw_fd(),
                b.as_mut_ptr().cast(),
                b.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            return out;
        }
        b.truncate(n as usize);
        out.push(b);
    }
}

/// Regression (review, network escape): the device wrote its whole tx queue in one
/// write(). A stream socket that takes only part of such a write ends what passt can read
/// at an arbitrary byte, and this passt (Debian's 2023-03-09) loses a length prefix that
/// ends its read (and a frame whose rest does not come in one piece): its parse then
/// starts inside a guest frame, whose bytes the guest chose. A frame the egress rule let
/// through (to 10.0.2.15) then carried a second frame to 127.0.0.1 that passt sent to the
/// anchor host's loopback (measured with this passt). Each write must be exactly one
/// whole, small frame: a Unix stream socket takes such a write whole or not at all.
#[test]
fn each_write_to_the_backend_is_one_whole_frame() {
    let (mut h, peer) = h_seqpacket();
    let frames: Vec<Vec<u8>> = (0..4u8)
        .map(|k| eth(60 + 300 * usize::from(k), k))
        .collect();
    for f in &frames {
        let mut b = vnet_hdr(0, 0).to_vec();
        b.extend_from_slice(f);
        h.offer_tx(&b, &[(b.len() as u32, false)]);
    }
    h.run_tx();
    let want: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut w = (f.len() as u32).to_be_bytes().to_vec();
            w.extend_from_slice(f);
            w
        })
        .collect();
    let got = records(&peer);
    let sizes = |v: &[Vec<u8>]| v.iter().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(
        sizes(&got),
        sizes(&want),
        "one write per frame, prefix and frame together"
    );
    assert!(got == want, "the records are the frames, in order");
    assert_eq!(h.dev.stats().tx_frames, 4);
}

/// Regression (review, network escape): the device passed guest frames of up to 65538
/// bytes to passt although it offers an MTU of 1500. A frame that large is split by the
/// kernel over several socket buffers, so even a write of one frame could reach passt in
/// pieces (see the test above); and passt itself discards frames above 65535 bytes. The
/// guest's frames are bounded by the MTU it was offered (plus an Ethernet header and one
/// VLAN tag).
#[test]
fn guest_frames_above_the_mtu_are_dropped() {
    let mut h = h();
    let max = eth(MAX_TX_FRAME, 3);
    h.send(vnet_hdr(0, 0), &max);
    assert_eq!(h.backend_frames(1), std::slice::from_ref(&max));
    for len in [MAX_TX_FRAME + 1, 9000, MAX_FRAME] {
        let mut bytes = vnet_hdr(0, 0).to_vec();
        bytes.extend_from_slice(&eth(len, 4));
        h.offer_tx(&bytes, &[(bytes.len() as u32, false)]);
        h.run_tx();
    }
    assert_eq!(h.dev.stats().tx_dropped, 3);
    h.backend_quiet();
    assert_eq!(MAX_TX_FRAME, 1518);
}

/// `ip ARGS` in the calling thread's network namespace (a spawned process inherits it).
fn ip(args: &str) {
    let st = std::process::Command::new("ip")
        .args(args.split(' '))
        .status()
        .expect("this test needs iproute2's ip");
    assert!(st.success(), "ip {args}: {st}");
}

/// A NETLINK_ROUTE socket of the calling thread's network namespace, subscribed to IPv4
/// address and route changes, as the jail makes it for the VMM.
fn route_socket() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_nl is valid.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV4_ROUTE) as u32;
    // SAFETY: `sa` is a valid sockaddr_nl for the call, with its size.
    let r = unsafe {
        libc::bind(
            fd,
            std::ptr::from_ref(&sa).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    owned
}

/// Runs `f` in a thread of its own in a fresh network namespace (needs root).
fn in_private_netns(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        // SAFETY: unshare with a constant flag; it changes this thread's namespace only.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "this test needs root: {}",
            std::io::Error::last_os_error()
        );
        f();
    })
    .join()
    .unwrap();
}

/// Regression (review, network escape, item "deny list fixed at start"): the device
/// refused the anchor host's addresses as the jail read them when the room started
/// (`--net-deny`), so an address the host gained later (a new interface, a DHCP lease,
/// `ip addr add ... dev lo`) was the anchor host's own and still reachable from the
/// room through passt until the room restarted. The device now follows the host's local
/// routes through its NETLINK_ROUTE socket: a frame is judged against them as they are
/// when its batch is taken from the ring.
#[test]
fn an_address_the_host_gains_after_the_start_is_refused_at_once() {
    in_private_netns(|| {
        ip("link set lo up");
        let mut h = h();
        let host = host::HostNets::new(route_socket()).unwrap();
        h.dev.set_egress(egress::Egress::strict_nets(Vec::new()));
        h.dev.set_host(host);
        let new = ipv4_to([10, 55, 0, 1]);
        let in_net = ipv4_to([10, 56, 3, 4]);
        // Not the host's yet: they leave.
        h.send(vnet_hdr(0, 0), &new);
        h.send(vnet_hdr(0, 0), &in_net);
        assert_eq!(h.backend_frames(2), [new.clone(), in_net.clone()]);
        assert_eq!(h.dev.stats().tx_refused, 0);
        // The host gains an address and a local network while the room runs.
        ip("addr add 10.55.0.1/32 dev lo");
        ip("route add local 10.56.0.0/16 dev lo");
        h.send(vnet_hdr(0, 0), &new);
        h.send(vnet_hdr(0, 0), &in_net);
        h.backend_quiet();
        assert_eq!(h.dev.stats().tx_refused, 2);
        // And loses them: remote again.
        ip("addr del 10.55.0.1/32 dev lo");
        ip("route del local 10.56.0.0/16 dev lo");
        h.send(vnet_hdr(0, 0), &new);
        assert_eq!(h.backend_frames(1), [new]);
        assert_eq!(h.dev.stats().tx_refused, 2);
    });
}

/// Review (item "more than 256 deny entries"): a host with many addresses is read whole
/// from its routes (no argument per address, no limit of 256), and each is refused.
#[test]
fn a_host_with_many_addresses_has_each_refused() {
    in_private_netns(|| {
        ip("link set lo up");
        for i in 0..300u16 {
            ip(&format!(
                "addr add 10.57.{}.{}/32 dev lo",
                i / 200,
                1 + i % 200
            ));
        }
        let host = host::HostNets::new(route_socket()).unwrap();
        // 300 addresses, 127.0.0.1 and 127.0.0.0/8.
        assert_eq!(host.nets().map(<[_]>::len), Some(302));
        let mut h = h();
        h.dev.set_egress(egress::Egress::strict_nets(Vec::new()));
        h.dev.set_host(host);
        h.send(vnet_hdr(0, 0), &ipv4_to([10, 57, 1, 100]));
        h.send(vnet_hdr(0, 0), &ipv4_to([10, 57, 0, 1]));
        h.backend_quiet();
        assert_eq!(h.dev.stats().tx_refused, 2);
    });
}
