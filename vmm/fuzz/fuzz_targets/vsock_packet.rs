// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-vsock packet header parsing: never panics, accepts only valid headers, and
//! encode/decode round-trips.
#![no_main]

use anchor_vmm::devices::virtio::vsock::packet::{parse_bytes, Header, HDR_LEN, HOST_CID};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let cid = 3;
    if let Ok(h) = parse_bytes(data, cid) {
        assert!(data.len() >= HDR_LEN);
        assert_eq!((h.src_cid, h.dst_cid, h.type_), (cid, HOST_CID, 1));
        assert!(h.len as usize <= data.len() - HDR_LEN);
        assert_eq!(Header::decode(&h.encode()), h);
    }
    if let Some(raw) = data.get(..HDR_LEN) {
        let mut b = [0u8; HDR_LEN];
        b.copy_from_slice(raw);
        assert_eq!(Header::decode(&b).encode(), b);
    }
});
