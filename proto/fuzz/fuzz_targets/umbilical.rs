// SPDX-License-Identifier: GPL-3.0-or-later
//! The umbilical and courier decoders on arbitrary bytes, as bay0 and the agents meet
//! them: the first byte picks a chunk size, the rest is the stream. Oracles beyond "no
//! crash": the decoder never holds more than one frame, every frame it yields re-encodes
//! to the bytes it came from, courier payloads that decode re-encode to themselves, and
//! the same stream gives the same frames whatever the chunking.
#![no_main]

use anchor_proto::courier::{Answer, Data, Manifest, ANSWER_MAX};
use anchor_proto::umbilical::{encode_vec, FrameKind, Frames, Kind, FRAME_MAX, PAYLOAD_MAX};
use libfuzzer_sys::fuzz_target;

fn frames<K: FrameKind + PartialEq + core::fmt::Debug>(data: &[u8], chunk: usize) -> (Vec<(K, Vec<u8>)>, bool) {
    let mut d = Frames::<K>::default();
    let mut out = Vec::new();
    let mut payload = [0u8; PAYLOAD_MAX];
    for part in data.chunks(chunk.max(1)) {
        let mut rest = part;
        while !rest.is_empty() {
            let space = d.space();
            let n = space.len().min(rest.len());
            if n == 0 {
                // A whole frame waits: take it (or fail) before reading more.
                match d.next_frame(&mut payload) {
                    Ok(Some((k, len))) => out.push((k, payload[..len].to_vec())),
                    Ok(None) => panic!("full buffer but no frame"),
                    Err(_) => return (out, true),
                }
                continue;
            }
            space[..n].copy_from_slice(&rest[..n]);
            d.filled(n);
            rest = &rest[n..];
            assert!(d.pending() <= FRAME_MAX);
            loop {
                match d.next_frame(&mut payload) {
                    Ok(Some((k, len))) => out.push((k, payload[..len].to_vec())),
                    Ok(None) => break,
                    Err(_) => return (out, true),
                }
            }
        }
    }
    (out, false)
}

fn check<K: FrameKind + PartialEq + core::fmt::Debug>(stream: &[u8], chunk: usize) {
    let (got, failed) = frames::<K>(stream, chunk);
    let (again, failed_again) = frames::<K>(stream, 1 + chunk % 7);
    assert_eq!(got, again, "chunking changed the frames");
    assert_eq!(failed, failed_again);
    let mut wire = Vec::new();
    for (k, p) in &got {
        wire.extend(encode_vec(*k, p).expect("a decoded frame re-encodes"));
    }
    assert!(stream.starts_with(&wire), "frames are not a prefix of the stream");
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first) * 17 + 1;
    check::<Kind>(stream, chunk);
    check::<Data>(stream, chunk);
    let (got, _) = frames::<Kind>(stream, chunk);
    for (kind, p) in got {
        match kind {
            Kind::CourierRequest => {
                if let Ok(m) = Manifest::decode(&p) {
                    assert_eq!(m.to_vec(), p);
                    let _ = m.check();
                }
            }
            Kind::CourierAnswer => {
                if let Ok(a) = Answer::decode(&p) {
                    let mut buf = [0u8; ANSWER_MAX];
                    let n = a.encode(&mut buf);
                    assert_eq!(&buf[..n], &p[..]);
                }
            }
            _ => {}
        }
    }
});
