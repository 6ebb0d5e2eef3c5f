// SPDX-License-Identifier: GPL-3.0-or-later
//! Benchmark helpers (`make bench`, tests/system/tests/bench_courier.rs): the raw copy the
//! courier is measured against, over the same transport. `--vsock-send PORT FILE` serves
//! FILE's bytes to the first connection on vsock PORT; `--vsock-recv PORT FILE` writes
//! what the first connection on PORT sends into FILE and fsyncs it. No framing, no
//! hashing, no checks: a baseline, never a way for data to cross between rooms by itself
//! (only the host can connect to a room's vsock ports, and only bay0's courier does).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;

use crate::error::{Error, Result};

fn io(op: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Sys {
        op,
        errno: e.raw_os_error().unwrap_or(0),
    }
}

fn first_connection(port: u32) -> Result<File> {
    let listener = crate::sys::vsock_listen(port)?;
    Ok(File::from(crate::sys::accept(listener.as_raw_fd())?))
}

/// Serves `path` to the first connection on `port`; the bytes sent.
pub fn send_file(port: u32, path: &str) -> Result<u64> {
    let mut file = File::open(path).map_err(io("open the file to send"))?;
    let mut conn = first_connection(port)?;
    let n = std::io::copy(&mut file, &mut conn).map_err(io("send"))?;
    conn.flush().map_err(io("send"))?;
    Ok(n)
}

/// Writes what the first connection on `port` sends into `path` (fsync'ed); the bytes.
pub fn recv_file(port: u32, path: &str) -> Result<u64> {
    let mut conn = first_connection(port)?;
    let mut file = File::create(path).map_err(io("create the file"))?;
    let n = std::io::copy(&mut conn, &mut file).map_err(io("receive"))?;
    file.sync_all().map_err(io("fsync"))?;
    Ok(n)
}
