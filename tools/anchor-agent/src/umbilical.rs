// SPDX-License-Identifier: GPL-3.0-or-later
//! The agent's end of the umbilical (anchor-proto's `umbilical`): at boot the agent
//! connects to bay0 (host CID 2, port 1024; in a namespace room, the Unix socket the jail
//! placed at `ROOM_SOCKET`), reports `Ready`, and from then on obeys bay0:
//! `PowerOff` syncs and ends the room; `Notice` prints bay0's line on the room's console;
//! `CourierChannel` (namespace rooms) brings a courier data connection as an attached
//! descriptor, served like a vsock one.
//! Without bay0 (a VMM started by hand) the connection is refused and the room runs on.

use std::io::Write;

use anchor_proto::umbilical::{self, Decoder, FdQueue, Kind};

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

/// Reads from the umbilical into `dec`, keeping a descriptor bay0 attached in `fds`;
/// the byte count (0: closed).
fn receive(
    stream: &std::fs::File,
    dec: &mut Decoder,
    fds: &mut FdQueue<std::os::fd::OwnedFd>,
) -> std::io::Result<usize> {
    loop {
        match crate::courier::sys::recv_with_fd(stream, dec.space()) {
            Ok((n, fd)) => {
                if let Some(extra) = fd.and_then(|fd| fds.push(fd)) {
                    say("umbilical: too many descriptors waiting; one closed");
                    drop(extra);
                }
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads bay0's frames until the channel closes or breaks a rule.
fn serve(stream: &mut std::fs::File, exit: ExitMode) {
    let mut dec = Decoder::default();
    let mut fds = FdQueue::default();
    let mut payload = [0u8; umbilical::PAYLOAD_MAX];
    loop {
        let n = match receive(stream, &mut dec, &mut fds) {
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
                Ok(Some((Kind::CourierChannel, _))) => match fds.take() {
                    Some(conn) => crate::courier::on_channel(conn),
                    None => say("umbilical: a courier channel frame came without its socket"),
                },
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
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use anchor_proto::courier::{Data, Manifest, CHANNEL_FRAME};
    use anchor_proto::umbilical::{encode_vec, write_frame, Frames, Kind, PAYLOAD_MAX};
    use sha2::Digest;

    /// Plays bay0 on a namespace room's umbilical: passes a socket with the channel
    /// frame (between notices, so the descriptor must be matched to its frame), then
    /// plays anchor-courier delivering an item on it; the agent's umbilical reader hands
    /// the socket to the courier code, which stores the item in ~/Incoming. A second
    /// channel asks for a request that was never made and gets a refusal.
    #[test]
    fn a_channel_passed_on_the_umbilical_is_served_like_a_vsock_connection() {
        let home = std::env::temp_dir().join(format!("agent-channel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        crate::courier::start(crate::courier::Config {
            home: crate::courier::Home {
                dir: home.clone(),
                owner: None,
            },
            socket: home.join("courier.sock"),
            vsock: false,
        });
        let (bay0, agent) = UnixStream::pair().unwrap();
        let mut agent = std::fs::File::from(std::os::fd::OwnedFd::from(agent));
        let reader =
            std::thread::spawn(move || super::serve(&mut agent, crate::cmdline::ExitMode::Reboot));
        let pass = |bay0: &UnixStream| {
            let (ours, theirs) = UnixStream::pair().unwrap();
            (&*bay0)
                .write_all(&encode_vec(Kind::Notice, b"before").unwrap())
                .unwrap();
            crate::courier::sys::send_with_fd(bay0, &CHANNEL_FRAME, theirs.as_raw_fd()).unwrap();
            (&*bay0)
                .write_all(&encode_vec(Kind::Notice, b"after").unwrap())
                .unwrap();
            // Hang detection only: a channel nobody serves fails the read.
            ours.set_read_timeout(Some(std::time::Duration::from_secs(60)))
                .unwrap();
            ours
        };
        let item = b"hello from another room
"
        .repeat(1000);
        let sha: [u8; 32] = sha2::Sha256::digest(&item).into();
        let m = Manifest::new([9; 16], "web", b"note.txt", item.len() as u64, sha).unwrap();
        let mut conn = pass(&bay0);
        write_frame(&mut conn, Data::Deliver, &m.to_vec()).unwrap();
        conn.write_all(&item).unwrap();
        write_frame(&mut conn, Data::Commit, &[]).unwrap();
        let mut dec = Frames::<Data>::default();
        let mut p = [0u8; PAYLOAD_MAX];
        let (k, n) = dec.read_from(&mut conn, &mut p).unwrap().unwrap();
        assert_eq!((k, &p[..n]), (Data::Stored, &b"note.txt"[..]));
        assert_eq!(std::fs::read(home.join("Incoming/note.txt")).unwrap(), item);

        let mut conn = pass(&bay0);
        write_frame(&mut conn, Data::Fetch, &[7; 16]).unwrap();
        let mut dec = Frames::<Data>::default();
        let (k, n) = dec.read_from(&mut conn, &mut p).unwrap().unwrap();
        assert_eq!(k, Data::Failed);
        assert!(String::from_utf8_lossy(&p[..n]).starts_with("no such request"));
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());

        drop(bay0);
        reader.join().unwrap();
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn notices_are_printed_without_control_characters() {
        assert_eq!(
            super::printable(b"closes in\x1b[2J 60 s\n"),
            "closes in[2J 60 s"
        );
    }
}
