// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier between namespace rooms on this machine, through hosted bay0 and the
//! product binaries and base image (see common/mod.rs): the rooms' real agents and
//! `courier send` clients. A namespace room is no longer refused: its request passes the
//! arbiter and brings up bay0's prompt, a policy refusal and a cancelled request are
//! answered to the client and audited. The answer itself needs a keyboard bay0 reads
//! from evdev, which this host does not have (no /dev/input, no uinput): the approved
//! transfer between namespace rooms (a socket bay0 passes on the umbilical) runs in the
//! anchor host, tests/system/tests/courier.rs.
//!
//! Needs root, and `make images` (static binaries + the base image) done first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ns_policy, Bay0, Console};
use std::io::Write;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_namespace_room_asks_to_send_to_a_namespace_room_and_is_prompted_refused_and_cancelled() {
    let policy =
        |name: &str, courier: &str| format!("{}[courier]\n{courier}\n", ns_policy(name, 96, 40));
    let b = Bay0::start(
        "courier",
        &[
            ("nsc-a", policy("nsc-a", "send_to = [\"nsc-b\"]")),
            ("nsc-b", policy("nsc-b", "receive_from = [\"nsc-a\"]")),
        ],
    );
    for room in ["nsc-a", "nsc-b"] {
        let ok = b.answer(&format!("start {room}"));
        assert!(
            ok.starts_with(&format!("ok room {room} ready")),
            "{ok}\n{}",
            b.log()
        );
    }

    // The destination's policy does not let it send back: refused, with the reason.
    let mut c = Console::attach(&b, "nsc-b");
    let (out, status) = c.run("echo x > /tmp/x; courier send /tmp/x --to nsc-a", "", WAIT);
    assert_eq!(status, 1, "{out:?}");
    assert!(
        out.iter().any(|l| l.contains(
            "courier: refused: policy: room nsc-b may not send to nsc-a (its courier.send_to does not name it)"
        )),
        "{out:?}"
    );
    drop(c);

    // A request that passes: bay0's prompt comes up for two namespace rooms (no
    // keyboard here); the destination ends while it is up, so the request is cancelled
    // and the client hears why.
    let mut c = Console::attach(&b, "nsc-a");
    c.stream
        .write_all(
            b"head -c 5000 /dev/urandom > /tmp/item; courier send /tmp/item --to nsc-b; \
              printf '\\n@@sent %s\\n' $?\r",
        )
        .unwrap();
    b.wait_log("bay0: courier: ANCHOR TRUSTED PROMPT", WAIT);
    b.wait_log(
        "bay0: courier: Room nsc-a asks to send a file to room nsc-b.",
        WAIT,
    );
    b.wait_log("bay0: courier: File:    \"item\"", WAIT);
    b.wait_log("bay0: courier: Size:    5000 bytes", WAIT);
    c.wait_for("nsc-a| courier: waiting for approval", WAIT);
    assert_eq!(b.answer("stop nsc-b"), "ok room nsc-b stopped");
    c.wait_for(
        "nsc-a| courier: failed: room nsc-b ended before the answer",
        WAIT,
    );
    c.wait_for("nsc-a| @@sent 4", WAIT);
    drop(c);

    let records = b.audit_records(" event=courier ");
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records[0].contains(" event=courier from=nsc-b to=nsc-a name=x size=2 ")
            && records[0].contains(" decision=refused outcome=refused reason=policy:"),
        "{}",
        records[0]
    );
    assert!(
        records[1].contains(" event=courier from=nsc-a to=nsc-b name=item size=5000 ")
            && records[1].contains(" decision=cancelled outcome=failed "),
        "{}",
        records[1]
    );
}
