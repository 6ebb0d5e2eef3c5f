// SPDX-License-Identifier: GPL-3.0-or-later
//! The agent's end of the umbilical (anchor-proto's `umbilical`): at boot the agent
//! connects to bay0 (host CID 2, port 1024; in a namespace room, the Unix socket the jail
//! placed at `ROOM_SOCKET`), reports `Ready`, and from then on obeys bay0:
//! `PowerOff` syncs and ends the room; `Notice` prints bay0's line on the room's console.
//! Without bay0 (a VMM started by hand) the connection is refused and the room runs on.

use std::io::{Read, Write};

use anchor_proto::umbilical::{self, Decoder, Kind};

use crate::cmdline::ExitMode;
use crate::console::say;

/// The host's vsock context id.
const HOST_CID: u32 = 2;

/// Connects (to the Unix socket `unix`, else over vsock), reports ready and serves bay0 on
/// a thread. Returns whether bay0 answered.
pub fn start(exit: ExitMode, unix: Option<&str>) -> bool {
    let connected = match unix {
        Some(path) => std::os::unix::net::UnixStream::connect(path)
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| crate::error::Error::Sys {
                op: "connect to the umbilical socket",
                errno: e.raw_os_error().unwrap_or(0),
            }),
        None => crate::sys::vsock_connect(HOST_CID, umbilical::PORT),
    };
    let fd = match connected {
        Ok(fd) => fd,
        Err(e) => {
            say(&format!("no umbilical to bay0 ({e}); running on my own"));
            return false;
        }
    };
    let mut stream = std::fs::File::from(fd);
    if let Ok(writer) = stream.try_clone() {
        crate::courier::attach_umbilical(writer);
    }
    let ready = umbilical::encode_vec(Kind::Ready, &[]).unwrap_or_default();
    if let Err(e) = stream.write_all(&ready) {
        say(&format!("umbilical: cannot report ready: {e}"));
        return false;
    }
    let spawned = std::thread::Builder::new()
        .name("umbilical".into())
        .spawn(move || {
            serve(&mut stream, exit);
            crate::courier::detach_umbilical();
        });
    spawned.is_ok()
}

/// Reads bay0's frames until the channel closes or breaks a rule.
fn serve(stream: &mut std::fs::File, exit: ExitMode) {
    let mut dec = Decoder::default();
    let mut payload = [0u8; umbilical::PAYLOAD_MAX];
    loop {
        let n = match stream.read(dec.space()) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dec.filled(n);
        loop {
            match dec.next_frame(&mut payload) {
                Ok(Some((Kind::PowerOff, _))) => {
                    say("bay0 asked the room to power off");
                    crate::init::shutdown(exit);
                }
                Ok(Some((Kind::Notice, len))) => {
                    let text = payload.get(..len).unwrap_or_default();
                    say(&printable(text));
                }
                Ok(Some((Kind::CourierAnswer, len))) => {
                    crate::courier::on_answer(payload.get(..len).unwrap_or_default());
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    say(&format!("umbilical: {e}; closing it"));
                    return;
                }
            }
        }
    }
}

/// bay0's text with anything but printable characters left out.
fn printable(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn notices_are_printed_without_control_characters() {
        assert_eq!(
            super::printable(b"closes in\x1b[2J 60 s\n"),
            "closes in[2J 60 s"
        );
    }
}
