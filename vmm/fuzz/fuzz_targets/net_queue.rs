// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-net: guest frames on a fuzzer-built tx queue go to a backend socket, then bytes
//! from the fuzzer (the input after the queue layout and 128 bytes of guest data, standing
//! for what passt sends: length prefixes and frames) are delivered into the rx queue (the
//! same fuzzer-built rings).
//! Checks that buffering stays within its bounds whatever either side does. Inputs whose
//! first byte is odd run with the strict egress rule an outbound room's VMM has.
#![no_main]

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;

use anchor_vmm::devices::virtio::net::egress::Egress;
use anchor_vmm::devices::virtio::net::{Net, RX_QUEUE_BYTES, TX_QUEUE_BYTES};
use anchor_vmm::devices::virtio::queue::{Budget, NullRegistry};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((mem, mut tx)) = common::build(data) else {
        return;
    };
    let Some((_, mut rx)) = common::build(data) else {
        return;
    };
    let Ok((ours, mut peer)) = UnixStream::pair() else {
        return;
    };
    let Ok(mut dev) = Net::new(ours) else {
        return;
    };
    if data.first().is_some_and(|b| b & 1 == 1) {
        dev.set_egress(Egress::strict(vec![std::net::Ipv4Addr::new(10, 77, 0, 1)]));
    }
    // 16 descriptors, the avail index and ring (see common.rs), then guest data.
    let backend = data.get(16 * 16 + 2 + 32 + 128..).unwrap_or(&[]);
    if peer.set_nonblocking(true).is_err() {
        return;
    }
    let _ = peer.write(backend);
    dev.set_ready(true, true);
    let mut reg = NullRegistry::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut budget = Budget::new(256 * 1024, &stop);
    let _ = dev.process_tx(&mut tx, &mem, &mut reg, &mut budget);
    let _ = dev.process_rx(&mut rx, &mem, &mut reg, &mut budget);
    let (t, r) = dev.buffered();
    assert!(t <= TX_QUEUE_BYTES && r <= RX_QUEUE_BYTES);
});
