// SPDX-License-Identifier: GPL-3.0-or-later
//! virtio-vsock packet header: parsing (guest-facing, checked) and encoding.

/// Size of `struct virtio_vsock_hdr` (packed, little-endian).
pub const HDR_LEN: usize = 44;
/// The host's CID.
pub const HOST_CID: u64 = 2;
/// Largest payload we accept in one guest packet (Linux sends at most 64 KiB).
pub const MAX_PKT_PAYLOAD: u32 = 64 * 1024;

/// VIRTIO_VSOCK_TYPE_STREAM, the only socket type we support.
pub const TYPE_STREAM: u16 = 1;

/// Operations.
pub const OP_REQUEST: u16 = 1;
/// Connection accepted.
pub const OP_RESPONSE: u16 = 2;
/// Connection reset.
pub const OP_RST: u16 = 3;
/// Half or full close.
pub const OP_SHUTDOWN: u16 = 4;
/// Data.
pub const OP_RW: u16 = 5;
/// Credit update.
pub const OP_CREDIT_UPDATE: u16 = 6;
/// Credit request.
pub const OP_CREDIT_REQUEST: u16 = 7;

/// Shutdown flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// Shutdown flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// A decoded header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

/// Why a guest packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer than [`HDR_LEN`] readable bytes.
    ShortHeader,
    /// `len` is above [`MAX_PKT_PAYLOAD`].
    PayloadTooLong(u32),
    /// `len` claims more bytes than the chain carries after the header.
    PayloadTruncated {
        /// What the header says.
        len: u32,
        /// What the chain holds.
        avail: u64,
    },
    /// Not from the guest's CID or not to the host.
    BadCid,
    /// Socket type other than stream (answered with RST).
    BadType(u16),
    /// Unknown operation (answered with RST).
    BadOp(u16),
    /// A non-RW packet carries payload.
    UnexpectedPayload,
}

fn u16_at(b: &[u8; HDR_LEN], off: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(off..off.saturating_add(2)) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8; HDR_LEN], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off.saturating_add(4)) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8; HDR_LEN], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off.saturating_add(8)) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn put(b: &mut [u8; HDR_LEN], off: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(off..off.saturating_add(v.len())) {
        d.copy_from_slice(v);
    }
}

impl Header {
    /// Decode the raw bytes (no validation).
    pub fn decode(b: &[u8; HDR_LEN]) -> Self {
        Self {
            src_cid: u64_at(b, 0),
            dst_cid: u64_at(b, 8),
            src_port: u32_at(b, 16),
            dst_port: u32_at(b, 20),
            len: u32_at(b, 24),
            type_: u16_at(b, 28),
            op: u16_at(b, 30),
            flags: u32_at(b, 32),
            buf_alloc: u32_at(b, 36),
            fwd_cnt: u32_at(b, 40),
        }
    }

    /// Encode to the wire layout.
    pub fn encode(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        put(&mut b, 0, &self.src_cid.to_le_bytes());
        put(&mut b, 8, &self.dst_cid.to_le_bytes());
        put(&mut b, 16, &self.src_port.to_le_bytes());
        put(&mut b, 20, &self.dst_port.to_le_bytes());
        put(&mut b, 24, &self.len.to_le_bytes());
        put(&mut b, 28, &self.type_.to_le_bytes());
        put(&mut b, 30, &self.op.to_le_bytes());
        put(&mut b, 32, &self.flags.to_le_bytes());
        put(&mut b, 36, &self.buf_alloc.to_le_bytes());
        put(&mut b, 40, &self.fwd_cnt.to_le_bytes());
        b
    }
}

/// Parse and validate a packet sent by the guest whose readable part is `bytes` long and
/// starts with `raw` (the first [`HDR_LEN`] bytes, zero-padded if shorter).
pub fn parse_guest_packet(
    raw: &[u8; HDR_LEN],
    readable: u64,
    guest_cid: u64,
) -> Result<Header, PacketError> {
    if readable < HDR_LEN as u64 {
        return Err(PacketError::ShortHeader);
    }
    let h = Header::decode(raw);
    if h.len > MAX_PKT_PAYLOAD {
        return Err(PacketError::PayloadTooLong(h.len));
    }
    let avail = readable.saturating_sub(HDR_LEN as u64);
    if u64::from(h.len) > avail {
        return Err(PacketError::PayloadTruncated { len: h.len, avail });
    }
    if h.src_cid != guest_cid || h.dst_cid != HOST_CID {
        return Err(PacketError::BadCid);
    }
    if h.type_ != TYPE_STREAM {
        return Err(PacketError::BadType(h.type_));
    }
    if !(OP_REQUEST..=OP_CREDIT_REQUEST).contains(&h.op) {
        return Err(PacketError::BadOp(h.op));
    }
    if h.op != OP_RW && h.len != 0 {
        return Err(PacketError::UnexpectedPayload);
    }
    Ok(h)
}

/// Parse a guest packet from a plain byte buffer (header + payload), as the fuzz target
/// and property tests do.
pub fn parse_bytes(bytes: &[u8], guest_cid: u64) -> Result<Header, PacketError> {
    let mut raw = [0u8; HDR_LEN];
    for (d, s) in raw.iter_mut().zip(bytes) {
        *d = *s;
    }
    parse_guest_packet(&raw, bytes.len() as u64, guest_cid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid(op: u16, len: u32) -> Header {
        Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1000,
            dst_port: 52,
            len,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: 4096,
            fwd_cnt: 0,
        }
    }

    #[test]
    fn roundtrip_and_validation() {
        let h = valid(OP_RW, 5);
        let mut bytes = h.encode().to_vec();
        bytes.extend_from_slice(b"hello");
        assert_eq!(parse_bytes(&bytes, 3), Ok(h));
        assert_eq!(parse_bytes(&bytes[..43], 3), Err(PacketError::ShortHeader));
        assert_eq!(
            parse_bytes(&bytes[..46], 3),
            Err(PacketError::PayloadTruncated { len: 5, avail: 2 })
        );
        assert_eq!(parse_bytes(&bytes, 4), Err(PacketError::BadCid));
        let mut t = valid(OP_REQUEST, 0);
        t.type_ = 2;
        assert_eq!(parse_bytes(&t.encode(), 3), Err(PacketError::BadType(2)));
        let mut o = valid(0, 0);
        assert_eq!(parse_bytes(&o.encode(), 3), Err(PacketError::BadOp(0)));
        o.op = 8;
        assert_eq!(parse_bytes(&o.encode(), 3), Err(PacketError::BadOp(8)));
        let big = valid(OP_RW, MAX_PKT_PAYLOAD + 1);
        assert_eq!(
            parse_bytes(&big.encode(), 3),
            Err(PacketError::PayloadTooLong(MAX_PKT_PAYLOAD + 1))
        );
        let mut req = valid(OP_REQUEST, 1);
        let mut b = req.encode().to_vec();
        b.push(0);
        assert_eq!(parse_bytes(&b, 3), Err(PacketError::UnexpectedPayload));
        req.len = 0;
        assert_eq!(parse_bytes(&req.encode(), 3), Ok(req));
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_accepts_only_valid(bytes in proptest::collection::vec(any::<u8>(), 0..200), cid in 3u64..10) {
            if let Ok(h) = parse_bytes(&bytes, cid) {
                prop_assert!(bytes.len() >= HDR_LEN);
                prop_assert_eq!(h.src_cid, cid);
                prop_assert_eq!(h.dst_cid, HOST_CID);
                prop_assert_eq!(h.type_, TYPE_STREAM);
                prop_assert!((OP_REQUEST..=OP_CREDIT_REQUEST).contains(&h.op));
                prop_assert!(h.len as usize <= bytes.len() - HDR_LEN);
                prop_assert!(h.op == OP_RW || h.len == 0);
            }
        }

        #[test]
        fn encode_decode_roundtrip(src_cid in any::<u64>(), dst_cid in any::<u64>(), src_port in any::<u32>(),
                                   dst_port in any::<u32>(), len in any::<u32>(), type_ in any::<u16>(),
                                   op in any::<u16>(), flags in any::<u32>(), buf_alloc in any::<u32>(),
                                   fwd_cnt in any::<u32>()) {
            let h = Header { src_cid, dst_cid, src_port, dst_port, len, type_, op, flags, buf_alloc, fwd_cnt };
            prop_assert_eq!(Header::decode(&h.encode()), h);
        }

        #[test]
        fn valid_headers_parse(op in OP_REQUEST..=OP_CREDIT_REQUEST, payload in proptest::collection::vec(any::<u8>(), 0..100),
                               buf_alloc in any::<u32>(), fwd_cnt in any::<u32>()) {
            let len = if op == OP_RW { payload.len() as u32 } else { 0 };
            let mut h = valid(op, len);
            h.buf_alloc = buf_alloc;
            h.fwd_cnt = fwd_cnt;
            let mut bytes = h.encode().to_vec();
            if op == OP_RW { bytes.extend_from_slice(&payload); }
            prop_assert_eq!(parse_bytes(&bytes, 3), Ok(h));
        }
    }
}
