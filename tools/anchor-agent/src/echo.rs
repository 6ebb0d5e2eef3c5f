// SPDX-License-Identifier: GPL-3.0-or-later
//! The vsock echo test service: listens on an AF_VSOCK port and sends back every
//! byte it receives, one thread per connection. It exists so the VMM's vsock device
//! can be tested end to end (host Unix socket -> VMM -> guest and back).

use crate::error::Result;
use crate::sys;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;

/// Copies everything read from `stream` back to it until EOF; returns the byte count.
pub fn echo<S: Read + Write>(stream: &mut S) -> std::io::Result<u64> {
    let mut buf = [0u8; 4096];
    let mut total: u64 = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        stream.write_all(chunk)?;
        total = total.saturating_add(n as u64);
    }
}

/// Serves forever on `port` (returns only if the socket cannot be set up or accept
/// fails for good).
pub fn serve(port: u32) -> Result<()> {
    let listener = sys::vsock_listen(port)?;
    crate::console::say_fmt(format_args!("vsock echo listening on port {port}"));
    loop {
        let conn = sys::accept(listener.as_raw_fd())?;
        let spawned = std::thread::Builder::new()
            .name("echo".into())
            .spawn(move || {
                let mut stream = std::fs::File::from(conn);
                if let Err(e) = echo(&mut stream) {
                    crate::console::say_fmt(format_args!("vsock echo connection: {e}"));
                }
            });
        if let Err(e) = spawned {
            crate::console::say_fmt(format_args!("vsock echo: cannot start a thread: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn echoes_everything_back_until_eof() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || echo(&mut b).unwrap());
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let writer_data = data.clone();
        let mut w = a.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(&writer_data).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        a.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(server.join().unwrap(), 20_000);
        assert_eq!(got, data);
    }
}
