// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-vsock: guest packets on a fuzzer-built tx queue go through the connection muxer
//! (with a real Unix socket listener, connections to missing host services), then the rx
//! queue (the same fuzzer-built rings) carries the replies.
#![no_main]

mod common;

use anchor_vmm::devices::virtio::queue::{Budget, NullRegistry};
use anchor_vmm::devices::virtio::vsock::Vsock;
use anchor_vmm::devices::virtio::VsockConfig;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((mem, mut tx)) = common::build(data) else {
        return;
    };
    let Some((_, mut rx)) = common::build(data) else {
        return;
    };
    let path = std::env::temp_dir().join(format!("anchor-vmm-fuzz-{}.sock", std::process::id()));
    let cfg = VsockConfig {
        guest_cid: 3,
        uds_path: path,
    };
    let Ok(mut dev) = Vsock::new(&cfg) else {
        return;
    };
    let mut reg = NullRegistry::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut budget = Budget::new(256 * 1024, &stop);
    let _ = dev.process_tx(&mut tx, &mem, &mut reg, &mut budget);
    let _ = dev.process_rx(&mut rx, &mem, &mut reg, &mut budget);
    assert!(dev.connections() <= anchor_vmm::devices::virtio::vsock::MAX_CONNS);
});
