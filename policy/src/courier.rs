// SPDX-License-Identifier: GPL-3.0-or-later
//! The courier arbiter's policy check: may room `from` send an item of `size` bytes to
//! room `to`? Both policies must agree (the sender's `courier.send_to` names the
//! destination, the destination's `courier.receive_from` names the sender) and the item
//! must fit both rooms' `courier.max_size`. A yes here only allows bay0 to ask at the
//! keyboard; it never approves a transfer by itself.

use core::fmt;

use crate::model::Courier;
use crate::units::ByteSize;

/// Why the policies refuse a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A room cannot send to itself.
    SameRoom,
    /// The sender's `courier.send_to` does not name the destination.
    NotSendTo,
    /// The destination's `courier.receive_from` does not name the sender.
    NotReceiveFrom,
    /// Larger than the smaller of both rooms' `courier.max_size`.
    TooLarge { size: u64, limit: ByteSize },
}

/// A refusal with the room names, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Explained<'a> {
    pub refusal: Refusal,
    pub from: &'a str,
    pub to: &'a str,
}

impl fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.from, self.to);
        match self.refusal {
            Refusal::SameRoom => write!(f, "room {from} cannot send to itself"),
            Refusal::NotSendTo => write!(
                f,
                "policy: room {from} may not send to {to} (its courier.send_to does not name it)"
            ),
            Refusal::NotReceiveFrom => write!(
                f,
                "policy: room {to} may not receive from {from} (its courier.receive_from does not name it)"
            ),
            Refusal::TooLarge { size, limit } => write!(
                f,
                "policy: {size} bytes is more than the {limit} courier.max_size of {from} and {to}"
            ),
        }
    }
}

/// Checks a transfer of `size` bytes from room `from` (rights `from_rights`) to room `to`
/// (rights `to_rights`) against both policies.
pub fn courier_allowed(
    from: &str,
    from_rights: &Courier,
    to: &str,
    to_rights: &Courier,
    size: u64,
) -> Result<(), Refusal> {
    if from == to {
        return Err(Refusal::SameRoom);
    }
    if !from_rights.send_to().iter().any(|n| n.as_str() == to) {
        return Err(Refusal::NotSendTo);
    }
    if !to_rights.receive_from().iter().any(|n| n.as_str() == from) {
        return Err(Refusal::NotReceiveFrom);
    }
    let limit = from_rights.max_size().min(to_rights.max_size());
    if size > limit.bytes() {
        return Err(Refusal::TooLarge { size, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rights(text: &str) -> Courier {
        let policy = format!(
            "name = \"r\"\nimage = \"base\"\nbackend = \"microvm\"\n[resources]\nmemory = \"64MiB\"\nvcpus = 1\n[courier]\n{text}"
        );
        crate::parse("r.toml", policy.as_bytes())
            .unwrap()
            .courier()
            .clone()
    }

    #[test]
    fn both_policies_and_both_quotas_must_agree() {
        let web = rights("send_to = [\"work\"]\nmax_size = \"2GiB\"\n");
        let work = rights("receive_from = [\"web\"]\n");
        let gib = 1u64 << 30;
        assert_eq!(courier_allowed("web", &web, "work", &work, gib), Ok(()));
        assert_eq!(courier_allowed("web", &web, "work", &work, 0), Ok(()));
        assert_eq!(
            courier_allowed("web", &web, "work", &work, gib + 1),
            Err(Refusal::TooLarge {
                size: gib + 1,
                limit: ByteSize::from_mib(1024).unwrap()
            })
        );
        assert!(matches!(
            courier_allowed("web", &web, "work", &work, u64::MAX),
            Err(Refusal::TooLarge { .. })
        ));
        assert_eq!(
            courier_allowed("work", &work, "web", &web, 1),
            Err(Refusal::NotSendTo)
        );
        assert_eq!(
            courier_allowed("web", &web, "dev", &work, 1),
            Err(Refusal::NotSendTo)
        );
        let other = rights("receive_from = [\"dev\"]\n");
        assert_eq!(
            courier_allowed("web", &web, "work", &other, 1),
            Err(Refusal::NotReceiveFrom)
        );
        assert_eq!(
            courier_allowed("web", &web, "web", &web, 1),
            Err(Refusal::SameRoom)
        );
        let msg = Explained {
            refusal: Refusal::NotReceiveFrom,
            from: "web",
            to: "work",
        }
        .to_string();
        assert_eq!(
            msg,
            "policy: room work may not receive from web (its courier.receive_from does not name it)"
        );
    }
}
