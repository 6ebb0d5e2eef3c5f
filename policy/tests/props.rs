// SPDX-License-Identifier: GPL-3.0-or-later
//! Property tests: accepted children are subsets of their parents (checked by an oracle
//! written independently of the implementation), children that are not wider are
//! accepted, and `show` output parses back to the same policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;

use anchor_policy::{parse, resolve, Backend, Limit, Name, Network, Policy};
use proptest::prelude::*;

const BACKENDS: [&str; 3] = ["auto", "microvm", "namespaces"];
const NETWORKS: [&str; 2] = ["none", "outbound"];
const DEVICES: [&str; 5] = ["display", "audio", "microphone", "camera", "gpu"];
const ROOMS: [&str; 4] = ["r1", "r2", "r3", "r4"];

/// Field values of one policy, rendered to TOML by `render`.
#[derive(Debug, Clone)]
struct Spec {
    name: &'static str,
    parent: Option<&'static str>,
    backend: &'static str,
    privileged: bool,
    network: &'static str,
    devices: Vec<&'static str>,
    memory_mib: u64,
    vcpus: i64,
    cpu_weight: Option<i64>,
    pids: Option<i64>,
    max_min: Option<u64>,
    idle_min: Option<u64>,
    persist: Option<(&'static str, u64)>,
    send_to: Vec<&'static str>,
    receive_from: Vec<&'static str>,
    nesting: Option<(i64, u64, i64, i64)>,
    /// Write `unlimited` lifetimes out, or leave them to the default.
    spell_defaults: bool,
}

fn size(mib: u64) -> String {
    if mib % 1024 == 0 {
        format!("{}GiB", mib / 1024)
    } else {
        format!("{mib}MiB")
    }
}

fn minutes(m: Option<u64>) -> String {
    m.map_or_else(|| "unlimited".to_owned(), |m| format!("{m}m"))
}

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

impl Spec {
    fn render(&self) -> String {
        let mut t = String::new();
        writeln!(t, "name = \"{}\"", self.name).unwrap();
        if let Some(p) = self.parent {
            writeln!(t, "parent = \"{p}\"").unwrap();
        }
        writeln!(t, "image = \"base\"\nbackend = \"{}\"", self.backend).unwrap();
        writeln!(
            t,
            "privileged = {}\nnetwork = \"{}\"",
            self.privileged, self.network
        )
        .unwrap();
        writeln!(t, "devices = {}", list(&self.devices)).unwrap();
        writeln!(
            t,
            "[resources]\nmemory = \"{}\"\nvcpus = {}",
            size(self.memory_mib),
            self.vcpus
        )
        .unwrap();
        if let Some(w) = self.cpu_weight {
            writeln!(t, "cpu_weight = {w}").unwrap();
        }
        if let Some(p) = self.pids {
            writeln!(t, "pids_max = {p}").unwrap();
        }
        writeln!(t, "[lifetime]").unwrap();
        for (key, value) in [("max", self.max_min), ("idle", self.idle_min)] {
            if value.is_some() || self.spell_defaults {
                writeln!(t, "{key} = \"{}\"", minutes(value)).unwrap();
            }
        }
        if let Some((v, s)) = self.persist {
            writeln!(t, "[persist]\nvolume = \"{v}\"\nsize = \"{}\"", size(s)).unwrap();
        }
        writeln!(
            t,
            "[courier]\nsend_to = {}\nreceive_from = {}",
            list(&self.send_to),
            list(&self.receive_from)
        )
        .unwrap();
        match self.nesting {
            Some((n, m, v, p)) => writeln!(
                t,
                "[nesting]\nallowed = true\nmax_children = {n}\nmemory = \"{}\"\nvcpus = {v}\npids_max = {p}",
                size(m)
            )
            .unwrap(),
            None => writeln!(t, "[nesting]\nallowed = false").unwrap(),
        }
        t
    }
}

fn subset<T: Clone + std::fmt::Debug + 'static>(
    items: &'static [T],
) -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(any::<bool>(), items.len()).prop_map(move |mask| {
        items
            .iter()
            .zip(mask)
            .filter(|(_, m)| *m)
            .map(|(i, _)| i.clone())
            .collect()
    })
}

prop_compose! {
    /// A policy, mostly valid, with values near the range edges often enough.
    fn spec()(
        backend in prop::sample::select(&BACKENDS[..]),
        privileged in prop::bool::weighted(0.3),
        network in prop::sample::select(&NETWORKS[..]),
        devices in subset(&DEVICES),
        memory_mib in prop::sample::select(vec![16u64, 32, 64, 512, 1000, 1024, 1536, 4096, 8192]),
        vcpus in 0i64..=6,
        cpu_weight in prop::option::of(prop::sample::select(vec![0i64, 1, 50, 100, 200, 10_000, 10_001])),
        pids in prop::option::of(prop::sample::select(vec![8i64, 16, 256, 512, 4096, 65_536, 70_000])),
        max_min in prop::option::of(1u64..=2000),
        idle_min in prop::option::of(1u64..=2000),
        persist in prop::option::of((prop::sample::select(vec!["v1", "v2"]), 1u64..=4096)),
        send_to in subset(&ROOMS),
        receive_from in subset(&ROOMS),
        nesting in prop::option::weighted(0.8, (0i64..=4, prop::sample::select(vec![32u64, 256, 1024, 4096]), 1i64..=4, prop::sample::select(vec![16i64, 128, 512]))),
        tidy in prop::bool::weighted(0.8),
        spell_defaults in any::<bool>(),
    ) -> Spec {
        let mut s = Spec {
            name: "p", parent: None, backend, privileged, network, devices, memory_mib, vcpus,
            cpu_weight, pids, max_min, idle_min, persist, send_to, receive_from, nesting,
            spell_defaults,
        };
        if tidy {
            // Mostly-valid policies, so that pairs are accepted often enough to matter.
            s.memory_mib = s.memory_mib.max(32);
            s.vcpus = s.vcpus.max(1);
            s.cpu_weight = s.cpu_weight.map(|w| w.clamp(1, 10_000));
            s.pids = s.pids.map(|p| p.clamp(16, 65_536));
            s.privileged &= s.backend == "microvm";
            if let (Some(m), Some(i)) = (s.max_min, s.idle_min) {
                s.idle_min = Some(i.min(m));
            }
            let own_pids = s.pids.unwrap_or(512);
            s.nesting = s.nesting.map(|(n, m, v, p)| {
                (n.max(1), m.min(s.memory_mib), v.min(s.vcpus), p.min(own_pids))
            });
        }
        s
    }
}

/// How a child field relates to the parent's: 0 = widen (rare), 1..=3 = narrow, else same.
fn pick() -> impl Strategy<Value = u8> {
    0u8..=15
}

/// Derives a child from its parent: each field kept, narrowed, or (rarely) widened.
fn child_of(p: &Spec, k: &[u8]) -> Spec {
    let f = |i: usize| k.get(i).copied().unwrap_or(15);
    let widen = |i: usize| f(i) == 0;
    let narrow = |i: usize| (1..=3).contains(&f(i));
    let ceil = p
        .nesting
        .unwrap_or((1, p.memory_mib, p.vcpus, p.pids.unwrap_or(512)));
    let mut c = p.clone();
    c.name = "c";
    c.parent = Some("p");
    c.backend = if widen(0) {
        "namespaces"
    } else if narrow(0) {
        "microvm"
    } else {
        p.backend
    };
    c.privileged = if widen(1) {
        true
    } else if narrow(1) {
        false
    } else {
        p.privileged
    };
    c.network = if widen(2) {
        "outbound"
    } else if narrow(2) {
        "none"
    } else {
        p.network
    };
    c.devices = if widen(3) {
        DEVICES.to_vec()
    } else if narrow(3) {
        p.devices.iter().skip(1).copied().collect()
    } else {
        p.devices.clone()
    };
    c.memory_mib = if widen(4) {
        ceil.1 + 1024
    } else if narrow(4) {
        (ceil.1 / 2).max(32)
    } else {
        ceil.1
    };
    c.vcpus = if widen(5) {
        ceil.2 + 1
    } else if narrow(5) {
        (ceil.2 - 1).max(1)
    } else {
        ceil.2
    };
    let pw = p.cpu_weight.unwrap_or(100);
    c.cpu_weight = Some(if widen(6) {
        pw + 1
    } else if narrow(6) {
        (pw - 1).max(1)
    } else {
        pw
    });
    c.pids = Some(if widen(7) {
        ceil.3 + 1
    } else if narrow(7) {
        (ceil.3 / 2).max(16)
    } else {
        ceil.3
    });
    c.max_min = if widen(8) {
        None
    } else if narrow(8) {
        Some(p.max_min.map_or(60, |m| (m / 2).max(1)))
    } else {
        p.max_min
    };
    c.idle_min = if widen(9) {
        p.idle_min.map(|m| m + 1)
    } else if narrow(9) {
        Some(1)
    } else {
        p.idle_min
    };
    c.persist = if widen(10) {
        Some(p.persist.map_or(("v1", 1), |(v, s)| (v, s + 1)))
    } else if narrow(10) {
        None
    } else {
        p.persist
    };
    c.send_to = if widen(11) {
        ROOMS.to_vec()
    } else if narrow(11) {
        vec![]
    } else {
        p.send_to.clone()
    };
    c.receive_from = if widen(12) {
        ROOMS.to_vec()
    } else if narrow(12) {
        vec![]
    } else {
        p.receive_from.clone()
    };
    c.nesting = if widen(13) {
        Some((ceil.0 + 1, c.memory_mib, c.vcpus, c.pids.unwrap_or(16)))
    } else if narrow(13) {
        None
    } else {
        Some((ceil.0, c.memory_mib, c.vcpus, c.pids.unwrap_or(16)))
    };
    c
}

/// Oracle, independent of the implementation's `at_least`: on a machine with or without
/// KVM, the child's actual isolation is never weaker than the parent's.
fn never_weaker(child: Backend, parent: Backend) -> bool {
    [true, false].into_iter().all(|kvm| {
        let actual = |b: Backend| match b {
            Backend::Microvm => 2,
            Backend::Auto if kvm => 2,
            Backend::Auto | Backend::Namespaces => 1,
        };
        actual(child) >= actual(parent)
    })
}

fn within(a: Limit, b: Limit) -> bool {
    match (a.secs(), b.secs()) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(x), Some(y)) => x <= y,
    }
}

/// The subset oracle: every capability of `c` is within `p` and `p`'s ceiling.
fn assert_subset(c: &Policy, p: &Policy) {
    let ceil = p
        .nesting()
        .expect("a parent of an accepted child allows nesting");
    let (cr, pr) = (c.resources(), p.resources());
    assert!(cr.memory() <= pr.memory() && cr.memory() <= ceil.memory());
    assert!(cr.vcpus() <= pr.vcpus() && cr.vcpus() <= ceil.vcpus());
    assert!(cr.pids_max() <= pr.pids_max() && cr.pids_max() <= ceil.pids_max());
    assert!(cr.cpu_weight() <= pr.cpu_weight());
    assert!(never_weaker(c.backend(), p.backend()));
    assert!(!c.privileged() || p.privileged());
    assert!(c.network() == Network::None || p.network() == Network::Outbound);
    assert!(c.devices().is_subset(p.devices()));
    assert!(c.courier().send_to().is_subset(p.courier().send_to()));
    assert!(c
        .courier()
        .receive_from()
        .is_subset(p.courier().receive_from()));
    assert!(within(c.lifetime().max(), p.lifetime().max()));
    assert!(within(c.lifetime().idle(), p.lifetime().idle()));
    if let Some(cp) = c.persist() {
        let pp = p.persist().expect("child persists only if parent does");
        assert_eq!(cp.volume(), pp.volume());
        assert!(cp.size() <= pp.size());
        // One volume is mounted by one kind of room: a microVM's disk is never a namespace
        // room's again.
        assert!(p.backend() != Backend::Namespaces || c.backend() == Backend::Namespaces);
    }
    if let Some(cc) = c.nesting() {
        assert!(cc.max_children() <= ceil.max_children());
        assert!(cc.memory() <= ceil.memory() && cc.vcpus() <= ceil.vcpus());
        assert!(cc.pids_max() <= ceil.pids_max());
    }
}

fn resolve_pair(
    parent: &str,
    child: &str,
) -> Result<anchor_policy::Resolved, anchor_policy::PolicyError> {
    resolve("c.toml", child.as_bytes(), |n: &Name| {
        assert_eq!(n.as_str(), "p");
        Ok(("p.toml".to_owned(), parent.as_bytes().to_vec()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn accepted_children_are_subsets(p in spec(), k in proptest::collection::vec(pick(), 14)) {
        let c = child_of(&p, &k);
        let (ptext, ctext) = (p.render(), c.render());
        if let Ok(resolved) = resolve_pair(&ptext, &ctext) {
            prop_assert_eq!(resolved.depth(), 2);
            assert_subset(resolved.policy(), &resolved.ancestors()[0]);
        }
        // Completeness: a child that widens nothing, under a valid parent that allows
        // nesting, and valid on its own, must be accepted.
        // A child that may run as a microVM sharing a namespace parent's volume narrows
        // the backend but would lock the parent out of its volume: refused too.
        let shares_across_backends =
            p.backend == "namespaces" && c.backend != "namespaces" && c.persist.is_some();
        let widened = k.contains(&0) || shares_across_backends;
        let parent_ok = parse("p.toml", ptext.as_bytes()).is_ok_and(|pp| pp.nesting().is_some());
        if !widened && parent_ok && parse("c.toml", ctext.as_bytes()).is_ok() {
            let r = resolve_pair(&ptext, &ctext);
            prop_assert!(r.is_ok(), "narrow child rejected:\n{}\n---\n{}\n{}", ptext, ctext, r.unwrap_err());
        }
    }

    #[test]
    fn show_output_parses_back_to_the_same_policy(p in spec()) {
        if let Ok(policy) = parse("p.toml", p.render().as_bytes()) {
            let shown = policy.to_toml().unwrap();
            let again = parse("shown.toml", shown.as_bytes());
            prop_assert!(again.is_ok(), "show output invalid:\n{}\n{}", shown, again.unwrap_err());
            prop_assert_eq!(again.unwrap(), policy);
        }
    }
}

/// The generators must actually reach the interesting cases, or the properties prove
/// nothing: count how many random pairs are accepted and how many rejected.
#[test]
fn generators_reach_both_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut rejected, mut valid) = (0, 0, 0);
    for _ in 0..2000 {
        let p = spec().new_tree(&mut runner).unwrap().current();
        let k = proptest::collection::vec(pick(), 14)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        if parse("p.toml", p.render().as_bytes()).is_ok() {
            valid += 1;
        }
        match resolve_pair(&p.render(), &child_of(&p, &k).render()) {
            Ok(_) => accepted += 1,
            Err(_) => rejected += 1,
        }
    }
    println!("random pairs: {accepted} accepted, {rejected} rejected; {valid} valid parents");
    assert!(accepted >= 100, "only {accepted} of 2000 pairs accepted");
    assert!(rejected >= 100, "only {rejected} of 2000 pairs rejected");
    assert!(valid >= 200, "only {valid} of 2000 parents valid");
}
