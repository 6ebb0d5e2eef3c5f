// SPDX-License-Identifier: GPL-3.0-or-later
//! Nesting resolution on arbitrary sets of policies. The input is split on lines reading
//! `%%`: part 0 is the room, part i is the policy named `p{i}` (so `parent = "p1"` finds
//! part 1). Oracle: every accepted chain is within the depth limit and each child is no
//! wider than its parent on every field (checked here independently).
#![no_main]

use anchor_policy::{resolve, Name, Problem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = split(data);
    let Some((room, rest)) = parts.split_first() else {
        return;
    };
    let lookup = |name: &Name| -> Result<(String, Vec<u8>), Problem> {
        let label = format!("{name}.toml");
        let idx: Option<usize> = name.as_str().strip_prefix('p').and_then(|n| n.parse().ok());
        match idx.and_then(|i| i.checked_sub(1)).and_then(|i| rest.get(i)) {
            Some(bytes) => Ok((label, bytes.to_vec())),
            None => Err(anchor_policy::missing_parent(&label, "no such policy")),
        }
    };
    if let Ok(r) = resolve("room.toml", room, lookup) {
        assert!(r.depth() <= anchor_policy::MAX_DEPTH);
        let mut child = r.policy();
        for parent in r.ancestors() {
            let ceil = parent.nesting().expect("a parent allows nesting");
            assert!(child.resources().memory() <= ceil.memory());
            assert!(child.resources().memory() <= parent.resources().memory());
            assert!(child.resources().vcpus() <= parent.resources().vcpus());
            assert!(child.resources().pids_max() <= parent.resources().pids_max());
            assert!(child.network() <= parent.network());
            assert!(child.devices().is_subset(parent.devices()));
            assert!(child.lifetime().max().within(parent.lifetime().max()));
            assert!(child.lifetime().idle().within(parent.lifetime().idle()));
            assert!(!child.privileged() || parent.privileged());
            assert!(child.resources().cpu_weight() <= parent.resources().cpu_weight());
            assert!(child.resources().vcpus() <= ceil.vcpus());
            assert!(child.resources().pids_max() <= ceil.pids_max());
            // Never weaker, with or without KVM.
            for kvm in [true, false] {
                let ns = |b: anchor_policy::Backend| b.runs_in_namespaces(kvm).unwrap_or(false);
                assert!(!ns(child.backend()) || ns(parent.backend()));
            }
            let (cc, pc) = (child.courier(), parent.courier());
            assert!(cc.send_to().is_subset(pc.send_to()));
            assert!(cc.receive_from().is_subset(pc.receive_from()));
            assert!(cc.max_size() <= pc.max_size());
            if let Some(cp) = child.persist() {
                let pp = parent.persist().expect("a persisting child's parent persists");
                assert!(cp.volume() == pp.volume() && cp.size() <= pp.size());
            }
            if let Some(cn) = child.nesting() {
                assert!(cn.max_children() <= ceil.max_children());
            }
            child = parent;
        }
    }
});

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(pos) = find(rest, b"\n%%\n") {
        parts.push(&rest[..pos]);
        rest = &rest[pos + 4..];
        if parts.len() >= 8 {
            return parts;
        }
    }
    parts.push(rest);
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
