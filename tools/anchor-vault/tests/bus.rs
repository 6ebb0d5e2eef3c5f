// SPDX-License-Identifier: GPL-3.0-or-later
//! What someone listening on the TPM's bus sees of a vault's creation (swtpm behind a
//! TCP relay that records every byte sent to the TPM). docs/THREAT-MODEL.md, "Someone on
//! the TPM's bus".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use anchor_vault::keys::RecoveryKey;
use common::{disk, recovery_key_of, run_with, swtpm_port_pair, typed_at_creation, Swtpm, CHEAP};

/// A relay on two ports (swtpm's command and control channels) in front of `tpm`,
/// keeping a copy of everything sent towards the TPM.
struct Relay {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, record: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(r) = &record {
            r.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Relay {
    fn start(tpm: &Swtpm) -> Relay {
        let (cmd, ctrl) = swtpm_port_pair();
        let port = cmd.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        for (listener, target, record) in [
            (cmd, tpm.port, Some(sent.clone())),
            (ctrl, tpm.port + 1, None),
        ] {
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let record = record.clone();
                    std::thread::spawn(move || pump(client, server, record));
                    std::thread::spawn(move || pump(s2, c2, None));
                }
            });
        }
        Relay { port, sent }
    }

    fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

/// The lockout authorization `init` gives the TPM (an HMAC of the recovery key: whoever
/// holds it can clear the dictionary-attack lockout, and so keep guessing the passphrase)
/// went to the TPM in the clear, as a parameter of TPM2_HierarchyChangeAuth in a password
/// session: anyone listening on the bus at creation could read it. It is sent encrypted
/// now (a session salted to the storage root key, parameter encryption), as the sealed
/// secret is.
#[test]
fn the_lockout_authorization_never_crosses_the_bus_in_the_clear() {
    let tpm = Swtpm::start();
    let relay = Relay::start(&tpm);
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(dir.path(), 40);
    let mut init = vec!["init", "--no-open"];
    init.extend_from_slice(&CHEAP);
    let made = run_with(
        &disk,
        Some(&relay.tcti()),
        dir.path(),
        &init,
        &typed_at_creation(),
    );
    assert_eq!(made.code, Some(0), "{}", made.out);
    assert!(
        made.out
            .contains("clearing a lockout needs the recovery key"),
        "{}",
        made.out
    );
    let key = RecoveryKey::parse(recovery_key_of(&made.out).as_bytes()).unwrap();
    let auth = key.lockout_auth();
    let sent = relay.sent.lock().unwrap().clone();
    assert!(sent.len() > 1000, "the relay saw the commands");
    assert_eq!(
        sent.windows(auth.len()).filter(|w| *w == &auth[..]).count(),
        0,
        "the lockout authorization was sent to the TPM in the clear"
    );
    // And it is what the TPM holds: the recovery key clears a lockout.
    let r = run_with(
        &disk,
        Some(&tpm.tcti()),
        dir.path(),
        &["reset-lockout"],
        &format!("{}\n", key.text()),
    );
    assert_eq!(r.code, Some(0), "{}", r.out);
}
