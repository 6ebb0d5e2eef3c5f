// SPDX-License-Identifier: GPL-3.0-or-later
//! `anchor-courier-bench relay SRC_SOCKET DST_SOCKET PORT`: the raw copy the courier is
//! measured against (tests/system/tests/bench_courier.rs, `make bench`): connects to both
//! rooms' hybrid vsock sockets, asks each for guest port PORT, and copies everything the
//! source sends to the destination, with the courier's buffer size and no framing,
//! hashing or checks; prints `relayed N bytes in S s`. Benchmark-only: it exists in the
//! bench initramfs, never in a product image.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

fn connect(path: &str, port: &str) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(path)?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())?;
    let mut b = [0u8; 1];
    let mut line = Vec::new();
    while b != [b'\n'] {
        if s.read(&mut b)? == 0 {
            return Err(std::io::Error::other(format!("{path}: closed before OK")));
        }
        line.extend_from_slice(&b);
    }
    if !line.starts_with(b"OK ") {
        return Err(std::io::Error::other(format!("{path}: no OK line")));
    }
    Ok(s)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cmd, src, dst, port] = args.as_slice() else {
        eprintln!("usage: anchor-courier-bench relay SRC_SOCKET DST_SOCKET PORT");
        std::process::exit(2);
    };
    if cmd != "relay" {
        eprintln!("usage: anchor-courier-bench relay SRC_SOCKET DST_SOCKET PORT");
        std::process::exit(2);
    }
    let run = || -> std::io::Result<(u64, f64)> {
        let mut to = connect(dst, port)?;
        let mut from = connect(src, port)?;
        let t = Instant::now();
        let mut buf = vec![0u8; anchor_courier::transfer::CHUNK];
        let mut total = 0u64;
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            to.write_all(buf.get(..n).unwrap_or_default())?;
            total += n as u64;
        }
        // The receiver fsyncs and prints its count; wait for it to close its end.
        to.shutdown(std::net::Shutdown::Write)?;
        let _ = to.read(&mut buf);
        Ok((total, t.elapsed().as_secs_f64()))
    };
    match run() {
        Ok((n, s)) => println!("relayed {n} bytes in {s:.2} s"),
        Err(e) => {
            eprintln!("anchor-courier-bench: {e}");
            std::process::exit(1);
        }
    }
}
