// SPDX-License-Identifier: GPL-3.0-or-later
//! The typed, immutable policy. Built only by validation; fields are private and read
//! through getters, so a `Policy` in hand is always a valid one.

use std::collections::BTreeSet;
use std::fmt;

use crate::units::{ByteSize, Limit};

/// Longest room, image or volume name.
pub const MAX_NAME_LEN: usize = 32;

/// A room, image or vault volume name: `[a-z0-9][a-z0-9-]{0,31}`.
///
/// Safe as a file name, a cgroup name and a log field: no `/`, `.`, spaces, upper case or
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// Checks the charset and length.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if text.chars().any(char::is_control) {
            return Err(format!(
                "{} contains control characters",
                crate::error::shown(text)
            ));
        }
        if text.len() > MAX_NAME_LEN {
            return Err(format!(
                "{} is longer than {MAX_NAME_LEN} bytes",
                crate::error::shown(text)
            ));
        }
        let mut bytes = text.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(first_ok && rest_ok) {
            return Err(format!(
                "{} is not a valid name (lower-case letters, digits and '-', starting with a \
                 letter or digit, at most {MAX_NAME_LEN})",
                crate::error::shown(text)
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a room is isolated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A microVM if KVM is usable, else namespaces. Guaranteed isolation: namespaces.
    Auto,
    /// Its own kernel in a microVM (strongest).
    Microvm,
    /// Linux namespaces + cgroups + seccomp on the host kernel.
    Namespaces,
}

impl Backend {
    pub(crate) const ALL: [(&'static str, Self); 3] = [
        ("auto", Self::Auto),
        ("microvm", Self::Microvm),
        ("namespaces", Self::Namespaces),
    ];

    /// The policy-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Microvm => "microvm",
            Self::Namespaces => "namespaces",
        }
    }

    /// Whether a room with this backend runs in namespaces on a machine where KVM is
    /// (`kvm`) or is not usable; an error when it cannot run there at all.
    pub fn runs_in_namespaces(self, kvm: bool) -> Result<bool, &'static str> {
        match (self, kvm) {
            (Self::Microvm | Self::Auto, true) => Ok(false),
            (Self::Microvm, false) => {
                Err("no usable KVM on this machine and the policy demands backend microvm")
            }
            (Self::Auto | Self::Namespaces, _) => Ok(true),
        }
    }

    /// Whether a child with backend `self` is never weaker than a parent with `parent`,
    /// whatever `auto` resolves to on this machine. `auto` resolves the same way for a
    /// parent and its child (one machine), so `auto` under `auto` is allowed; `auto`
    /// under `microvm` is not (it may fall back to namespaces).
    pub fn at_least(self, parent: Self) -> bool {
        match (self, parent) {
            (Self::Microvm, _) => true,
            (_, Self::Namespaces) => true,
            (Self::Auto, Self::Auto) => true,
            (Self::Auto, Self::Microvm) | (Self::Namespaces, Self::Microvm | Self::Auto) => false,
        }
    }
}

/// Network reach of a room. Ordered: `None` < `Outbound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Network {
    /// No network interface but loopback.
    None,
    /// Outbound connections through NAT; nothing can connect in.
    Outbound,
}

impl Network {
    pub(crate) const ALL: [(&'static str, Self); 2] =
        [("none", Self::None), ("outbound", Self::Outbound)];

    /// The policy-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Outbound => "outbound",
        }
    }
}

/// A host device a room may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Device {
    /// A window on the compositor (framebuffer + input while focused).
    Display,
    /// Audio playback.
    Audio,
    /// Audio capture.
    Microphone,
    /// Video capture.
    Camera,
    /// GPU render node.
    Gpu,
}

impl Device {
    pub(crate) const ALL: [(&'static str, Self); 5] = [
        ("display", Self::Display),
        ("audio", Self::Audio),
        ("microphone", Self::Microphone),
        ("camera", Self::Camera),
        ("gpu", Self::Gpu),
    ];

    /// The policy-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Display => "display",
            Self::Audio => "audio",
            Self::Microphone => "microphone",
            Self::Camera => "camera",
            Self::Gpu => "gpu",
        }
    }
}

/// Resource limits (cgroup v2 / VMM sizing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub(crate) memory: ByteSize,
    pub(crate) vcpus: u32,
    pub(crate) cpu_weight: u32,
    pub(crate) pids_max: u32,
}

impl Resources {
    /// Memory limit (guest RAM for a microVM, memory.max for namespaces).
    pub fn memory(&self) -> ByteSize {
        self.memory
    }
    /// Virtual CPUs (microVM) or CPUs in the cpuset (namespaces).
    pub fn vcpus(&self) -> u32 {
        self.vcpus
    }
    /// cgroup v2 `cpu.weight` (1..=10000).
    pub fn cpu_weight(&self) -> u32 {
        self.cpu_weight
    }
    /// cgroup v2 `pids.max`.
    pub fn pids_max(&self) -> u32 {
        self.pids_max
    }
}

/// A named vault volume mounted at the room's /persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    pub(crate) volume: Name,
    pub(crate) size: ByteSize,
}

impl Persist {
    /// The vault volume name.
    pub fn volume(&self) -> &Name {
        &self.volume
    }
    /// The volume's quota.
    pub fn size(&self) -> ByteSize {
        self.size
    }
}

/// Courier rights: with which rooms this room may exchange one-shot, approved transfers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Courier {
    pub(crate) send_to: BTreeSet<Name>,
    pub(crate) receive_from: BTreeSet<Name>,
    pub(crate) max_size: ByteSize,
}

impl Courier {
    /// The largest item this room may send or receive.
    pub fn max_size(&self) -> ByteSize {
        self.max_size
    }
    /// Rooms this room may send to (each transfer still needs approval).
    pub fn send_to(&self) -> &BTreeSet<Name> {
        &self.send_to
    }
    /// Rooms this room may receive from (each transfer still needs approval).
    pub fn receive_from(&self) -> &BTreeSet<Name> {
        &self.receive_from
    }
}

/// What child rooms of this room may get at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceiling {
    pub(crate) max_children: u32,
    pub(crate) memory: ByteSize,
    pub(crate) vcpus: u32,
    pub(crate) pids_max: u32,
}

impl Ceiling {
    /// How many child rooms may be open at once.
    pub fn max_children(&self) -> u32 {
        self.max_children
    }
    /// Most memory any one child may have.
    pub fn memory(&self) -> ByteSize {
        self.memory
    }
    /// Most vCPUs any one child may have.
    pub fn vcpus(&self) -> u32 {
        self.vcpus
    }
    /// Highest pids.max any one child may have.
    pub fn pids_max(&self) -> u32 {
        self.pids_max
    }
}

/// Time limits. Both are `unlimited` unless stated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifetime {
    pub(crate) max: Limit,
    pub(crate) idle: Limit,
}

impl Lifetime {
    /// The room is closed this long after it opened.
    pub fn max(&self) -> Limit {
        self.max
    }
    /// The room is closed after this long without input or courier activity.
    pub fn idle(&self) -> Limit {
        self.idle
    }
}

/// One validated room policy, exactly as written (defaults filled in). Immutable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) name: Name,
    pub(crate) image: Name,
    pub(crate) backend: Backend,
    pub(crate) parent: Option<Name>,
    pub(crate) privileged: bool,
    pub(crate) network: Network,
    pub(crate) devices: BTreeSet<Device>,
    pub(crate) resources: Resources,
    pub(crate) persist: Option<Persist>,
    pub(crate) courier: Courier,
    pub(crate) nesting: Option<Ceiling>,
    pub(crate) lifetime: Lifetime,
}

impl Policy {
    /// The room's name (equals the file's stem when loaded from a file).
    pub fn name(&self) -> &Name {
        &self.name
    }
    /// The room image flavour (`images/<image>.squashfs`).
    pub fn image(&self) -> &Name {
        &self.image
    }
    /// Isolation backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }
    /// The parent room's policy name, for a nested room.
    pub fn parent(&self) -> Option<&Name> {
        self.parent.as_ref()
    }
    /// Whether the workload runs as root with full capabilities inside its microVM.
    pub fn privileged(&self) -> bool {
        self.privileged
    }
    /// Network reach.
    pub fn network(&self) -> Network {
        self.network
    }
    /// Host devices granted.
    pub fn devices(&self) -> &BTreeSet<Device> {
        &self.devices
    }
    /// What this policy asks for and this release does not give a room, on either
    /// backend (the room opens with less, never more).
    pub fn not_granted(&self) -> impl Iterator<Item = &'static str> {
        [(
            !self.devices.is_empty(),
            "devices (none are passed through in this release)",
        )]
        .into_iter()
        .filter_map(|(wanted, what)| wanted.then_some(what))
    }
    /// Resource limits.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }
    /// The vault volume, or `None` for an amnesiac room (the default).
    pub fn persist(&self) -> Option<&Persist> {
        self.persist.as_ref()
    }
    /// Courier rights.
    pub fn courier(&self) -> &Courier {
        &self.courier
    }
    /// The ceiling for child rooms, or `None` when the room may not open any.
    pub fn nesting(&self) -> Option<&Ceiling> {
        self.nesting.as_ref()
    }
    /// Time limits.
    pub fn lifetime(&self) -> &Lifetime {
        &self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_map_to_what_this_machine_has() {
        assert_eq!(Backend::Microvm.runs_in_namespaces(true), Ok(false));
        assert_eq!(Backend::Auto.runs_in_namespaces(true), Ok(false));
        assert!(Backend::Microvm
            .runs_in_namespaces(false)
            .unwrap_err()
            .contains("demands backend microvm"));
        for (b, kvm) in [
            (Backend::Auto, false),
            (Backend::Namespaces, true),
            (Backend::Namespaces, false),
        ] {
            assert_eq!(b.runs_in_namespaces(kvm), Ok(true), "{b:?}");
        }
    }

    #[test]
    fn names() {
        for good in ["a", "web", "0", "dev-2", "a-", &"x".repeat(32)] {
            assert!(Name::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "-a",
            "Web",
            "a b",
            "a/b",
            "..",
            "a.toml",
            "a\u{7}",
            "\u{202e}abc",
            "é",
            &"x".repeat(33),
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backend_strength() {
        use Backend::*;
        let ok = |c: Backend, p: Backend| c.at_least(p);
        assert!(ok(Microvm, Microvm) && ok(Microvm, Auto) && ok(Microvm, Namespaces));
        assert!(ok(Auto, Auto) && ok(Auto, Namespaces) && !ok(Auto, Microvm));
        assert!(ok(Namespaces, Namespaces) && !ok(Namespaces, Auto) && !ok(Namespaces, Microvm));
    }
}
