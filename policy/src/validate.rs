// SPDX-License-Identifier: GPL-3.0-or-later
//! Raw shape -> typed `Policy`, collecting every problem (ranges, units, names, required
//! fields, cross-field rules) instead of stopping at the first.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::error::{shown, PolicyError, Problem, ProblemKind};
use crate::model::{
    Backend, Ceiling, Courier, Device, Lifetime, Name, Network, Persist, Policy, Resources,
};
use crate::parse::{KeyLines, Lines};
use crate::raw::{NameList, RawPolicy, S};
use crate::units::{ByteSize, Limit};

/// Room memory range.
pub const MEMORY_MIN_MIB: u64 = 32;
/// Room memory range (1 TiB).
pub const MEMORY_MAX_MIB: u64 = 1 << 20;
/// vCPU range.
pub const VCPUS: (u32, u32) = (1, 64);
/// Most vCPUs and memory a microVM room can have: what anchor-vmm accepts (its
/// `config::MAX_VCPUS` and `layout::MAX_MEM_MIB`); a namespace room has no VMM.
pub const MICROVM_VCPUS_MAX: u32 = 16;
/// See [`MICROVM_VCPUS_MAX`] (16 GiB).
pub const MICROVM_MEMORY_MAX_MIB: u64 = 16 << 10;
/// cgroup v2 cpu.weight range, and the default (the kernel's own default).
pub const CPU_WEIGHT: (u32, u32) = (1, 10_000);
/// Default cpu.weight.
pub const CPU_WEIGHT_DEFAULT: u32 = 100;
/// pids.max range.
pub const PIDS_MAX: (u32, u32) = (16, 65_536);
/// Default pids.max.
pub const PIDS_MAX_DEFAULT: u32 = 512;
/// Vault volume size range (1 MiB .. 16 TiB).
pub const PERSIST_MAX_MIB: u64 = 16 << 20;
/// Largest courier item (1 TiB), and the default limit (1 GiB).
pub const COURIER_MAX_MIB: u64 = 1 << 20;
/// Default `courier.max_size` in MiB.
pub const COURIER_DEFAULT_MIB: u64 = 1 << 10;
/// Child rooms open at once.
pub const MAX_CHILDREN: (u32, u32) = (1, 16);
/// Shortest finite lifetime / idle limit (seconds).
pub const LIFETIME_MIN_SECS: u64 = 60;
/// Longest finite lifetime / idle limit (365 days).
pub const LIFETIME_MAX_SECS: u64 = 365 * 86_400;

struct V<'a> {
    file: &'a str,
    line_starts: Lines,
    problems: Vec<Problem>,
    lines: KeyLines,
}

impl V<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        self.line_starts.of(span.start)
    }

    fn at(&mut self, key: &'static str, span: &Range<usize>) {
        let line = self.line(span);
        self.lines.insert(key, line);
    }

    fn err(&mut self, key: impl Into<String>, span: Option<&Range<usize>>, msg: impl Into<String>) {
        let line = span.map(|s| self.line(s));
        self.problems.push(Problem::key(self.file, line, key, msg));
    }

    fn required<'r, T>(
        &mut self,
        key: &'static str,
        value: Option<&'r S<T>>,
        why: &str,
    ) -> Option<&'r S<T>> {
        if value.is_none() {
            self.problems.push(
                Problem::key(
                    self.file,
                    None,
                    key,
                    format!("missing; there is no default ({why})"),
                )
                .with_kind(ProblemKind::Missing),
            );
        }
        value
    }

    fn name(&mut self, key: &'static str, value: &S<String>) -> Option<Name> {
        self.at(key, &value.span());
        Name::parse(value.get_ref())
            .map_err(|m| self.err(key, Some(&value.span()), m))
            .ok()
    }

    fn int(&mut self, key: &'static str, value: &S<i64>, (min, max): (u32, u32)) -> Option<u32> {
        self.at(key, &value.span());
        let n = *value.get_ref();
        match u32::try_from(n) {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.err(
                    key,
                    Some(&value.span()),
                    format!("{n} is out of range {min}..={max}"),
                );
                None
            }
        }
    }

    fn size(
        &mut self,
        key: &'static str,
        value: &S<String>,
        min_mib: u64,
        max_mib: u64,
    ) -> Option<ByteSize> {
        self.at(key, &value.span());
        let size = match ByteSize::parse(value.get_ref()) {
            Ok(s) => s,
            Err(m) => {
                self.err(key, Some(&value.span()), m);
                return None;
            }
        };
        if size.mib() < min_mib || size.mib() > max_mib {
            let lo = ByteSize::from_mib(min_mib).map_or_else(String::new, |s| s.to_string());
            let hi = ByteSize::from_mib(max_mib).map_or_else(String::new, |s| s.to_string());
            self.err(
                key,
                Some(&value.span()),
                format!("{size} is out of range {lo}..={hi}"),
            );
            return None;
        }
        Some(size)
    }

    fn limit(&mut self, key: &'static str, value: Option<&S<String>>) -> Option<Limit> {
        let Some(value) = value else {
            return Some(Limit::UNLIMITED);
        };
        self.at(key, &value.span());
        let limit = match Limit::parse(value.get_ref()) {
            Ok(l) => l,
            Err(m) => {
                self.err(key, Some(&value.span()), m);
                return None;
            }
        };
        if let Some(secs) = limit.secs() {
            if !(LIFETIME_MIN_SECS..=LIFETIME_MAX_SECS).contains(&secs) {
                self.err(
                    key,
                    Some(&value.span()),
                    format!("{limit} is out of range 1m..=365d (or \"unlimited\")"),
                );
                return None;
            }
        }
        Some(limit)
    }

    fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        value: &S<String>,
        table: &[(&str, T)],
    ) -> Option<T> {
        self.at(key, &value.span());
        let found = table
            .iter()
            .find(|(word, _)| *word == value.get_ref().as_str())
            .map(|&(_, v)| v);
        if found.is_none() {
            let words: Vec<String> = table.iter().map(|(w, _)| format!("\"{w}\"")).collect();
            self.err(
                key,
                Some(&value.span()),
                format!(
                    "{} is not one of {}",
                    shown(value.get_ref()),
                    words.join(", ")
                ),
            );
        }
        found
    }

    /// A list of names with no duplicates; each bad entry reported as `key[i]`.
    fn names(
        &mut self,
        key: &'static str,
        list: Option<&NameList>,
        own: Option<&str>,
    ) -> BTreeSet<Name> {
        let mut out = BTreeSet::new();
        let Some(list) = list else {
            return out;
        };
        self.at(key, &list.span());
        for (i, item) in list.get_ref().iter().enumerate() {
            let ikey = format!("{key}[{i}]");
            let span = item.span();
            match Name::parse(item.get_ref()) {
                Err(m) => self.err(ikey, Some(&span), m),
                Ok(n) if Some(n.as_str()) == own => {
                    self.err(ikey, Some(&span), "a room cannot name itself here")
                }
                Ok(n) => {
                    if let Some(dup) = out.replace(n) {
                        self.err(ikey, Some(&span), format!("\"{dup}\" is listed twice"));
                    }
                }
            }
        }
        out
    }

    fn devices(&mut self, list: Option<&NameList>) -> BTreeSet<Device> {
        let mut out = BTreeSet::new();
        let Some(list) = list else {
            return out;
        };
        self.at("devices", &list.span());
        for (i, item) in list.get_ref().iter().enumerate() {
            let ikey = format!("devices[{i}]");
            let span = item.span();
            let found = Device::ALL
                .iter()
                .find(|(w, _)| *w == item.get_ref().as_str())
                .map(|&(_, d)| d);
            match found {
                None => {
                    let words: Vec<&str> = Device::ALL.iter().map(|(w, _)| *w).collect();
                    self.err(
                        ikey,
                        Some(&span),
                        format!(
                            "{} is not one of {}",
                            shown(item.get_ref()),
                            words.join(", ")
                        ),
                    );
                }
                Some(d) => {
                    if !out.insert(d) {
                        self.err(
                            ikey,
                            Some(&span),
                            format!("\"{}\" is listed twice", d.as_str()),
                        );
                    }
                }
            }
        }
        out
    }
}

/// Validates the raw shape; `Ok` only when there is no problem at all.
pub(crate) fn validate(
    file: &str,
    text: &str,
    raw: &RawPolicy,
) -> Result<(Policy, KeyLines), PolicyError> {
    let mut v = V {
        file,
        line_starts: Lines::new(text),
        problems: Vec::new(),
        lines: KeyLines::new(),
    };

    let name = v
        .required("name", raw.name.as_ref(), "the room's name")
        .and_then(|s| v.name("name", s));
    let image = v
        .required("image", raw.image.as_ref(), "which room image to boot")
        .and_then(|s| v.name("image", s));
    let backend = v
        .required(
            "backend",
            raw.backend.as_ref(),
            "the isolation strength must be chosen: microvm, namespaces or auto",
        )
        .and_then(|s| v.choice("backend", s, &Backend::ALL));
    let parent = raw.parent.as_ref().and_then(|s| v.name("parent", s));
    if let (Some(p), Some(n), Some(s)) = (&parent, &name, &raw.parent) {
        if p == n {
            v.err("parent", Some(&s.span()), "a room cannot be its own parent");
        }
    }
    let privileged = match &raw.privileged {
        Some(p) => {
            v.at("privileged", &p.span());
            *p.get_ref()
        }
        None => false,
    };
    if privileged && backend.is_some_and(|b| b != Backend::Microvm) {
        let span = raw.privileged.as_ref().map(Spanned::span);
        v.err(
            "privileged",
            span.as_ref(),
            "a privileged room (root inside the room) needs backend = \"microvm\": root must \
             never run on the host kernel, and \"auto\" may fall back to namespaces",
        );
    }
    let network = match &raw.network {
        Some(s) => v.choice("network", s, &Network::ALL),
        None => Some(Network::None),
    };
    let devices = v.devices(raw.devices.as_ref());
    let own = name.as_ref().map(Name::as_str);

    // [resources]
    let res = raw.resources.as_ref().map(|r| r.get_ref());
    let memory = v
        .required(
            "resources.memory",
            res.and_then(|r| r.memory.as_ref()),
            "the room's memory size",
        )
        .and_then(|s| v.size("resources.memory", s, MEMORY_MIN_MIB, MEMORY_MAX_MIB));
    let vcpus = v
        .required(
            "resources.vcpus",
            res.and_then(|r| r.vcpus.as_ref()),
            "the room's CPU count",
        )
        .and_then(|s| v.int("resources.vcpus", s, VCPUS));
    let cpu_weight = match res.and_then(|r| r.cpu_weight.as_ref()) {
        Some(s) => v.int("resources.cpu_weight", s, CPU_WEIGHT),
        None => Some(CPU_WEIGHT_DEFAULT),
    };
    let pids_max = match res.and_then(|r| r.pids_max.as_ref()) {
        Some(s) => v.int("resources.pids_max", s, PIDS_MAX),
        None => Some(PIDS_MAX_DEFAULT),
    };

    // A microVM (backend microvm, or auto where KVM works) gets exactly these from
    // anchor-vmm, which refuses more: refused here, not once the room is opening.
    if backend.is_some_and(|b| b != Backend::Namespaces) {
        let why = "anchor-vmm's limit; backend \"namespaces\" has none";
        if let (Some(n), Some(s)) = (vcpus, res.and_then(|r| r.vcpus.as_ref())) {
            if n > MICROVM_VCPUS_MAX {
                let msg = format!(
                    "{n} is more than a microVM room can have ({MICROVM_VCPUS_MAX}; {why})"
                );
                v.err("resources.vcpus", Some(&s.span()), msg);
            }
        }
        if let (Some(m), Some(s)) = (memory, res.and_then(|r| r.memory.as_ref())) {
            if m.mib() > MICROVM_MEMORY_MAX_MIB {
                let max = ByteSize::from_mib(MICROVM_MEMORY_MAX_MIB)
                    .map_or_else(String::new, |s| s.to_string());
                let msg = format!("{m} is more than a microVM room can have ({max}; {why})");
                v.err("resources.memory", Some(&s.span()), msg);
            }
        }
    }

    // [lifetime]
    let life = raw.lifetime.as_ref().map(|l| l.get_ref());
    let max = v.limit("lifetime.max", life.and_then(|l| l.max.as_ref()));
    let idle = v.limit("lifetime.idle", life.and_then(|l| l.idle.as_ref()));
    if let (Some(max), Some(idle)) = (max, idle) {
        if idle.secs().is_some() && !idle.within(max) {
            let span = life.and_then(|l| l.idle.as_ref()).map(Spanned::span);
            v.err(
                "lifetime.idle",
                span.as_ref(),
                format!("{idle} is longer than lifetime.max ({max}), so it could never apply"),
            );
        }
    }

    // [persist]
    let persist = raw.persist.as_ref().map(|p| {
        let p = p.get_ref();
        let volume = v
            .required(
                "persist.volume",
                p.volume.as_ref(),
                "which vault volume to mount",
            )
            .and_then(|s| v.name("persist.volume", s));
        let size = v
            .required("persist.size", p.size.as_ref(), "the volume's quota")
            .and_then(|s| v.size("persist.size", s, 1, PERSIST_MAX_MIB));
        (volume, size)
    });

    // [courier]
    let cour = raw.courier.as_ref().map(|c| c.get_ref());
    let send_to = v.names(
        "courier.send_to",
        cour.and_then(|c| c.send_to.as_ref()),
        own,
    );
    let receive_from = v.names(
        "courier.receive_from",
        cour.and_then(|c| c.receive_from.as_ref()),
        own,
    );
    let max_size = match cour.and_then(|c| c.max_size.as_ref()) {
        Some(s) => v.size("courier.max_size", s, 1, COURIER_MAX_MIB),
        None => ByteSize::from_mib(COURIER_DEFAULT_MIB),
    };

    // [nesting]
    let nesting = raw.nesting.as_ref().map(|n| n.get_ref());
    let allowed = match nesting.and_then(|n| n.allowed.as_ref()) {
        Some(a) => {
            v.at("nesting.allowed", &a.span());
            *a.get_ref()
        }
        None => false,
    };
    let ceiling = match nesting {
        Some(n) if allowed => {
            let why = "a room that may nest must state its children's ceiling";
            let max_children = v
                .required("nesting.max_children", n.max_children.as_ref(), why)
                .and_then(|s| v.int("nesting.max_children", s, MAX_CHILDREN));
            let cmem = v
                .required("nesting.memory", n.memory.as_ref(), why)
                .and_then(|s| v.size("nesting.memory", s, MEMORY_MIN_MIB, MEMORY_MAX_MIB));
            let cvcpus = v
                .required("nesting.vcpus", n.vcpus.as_ref(), why)
                .and_then(|s| v.int("nesting.vcpus", s, VCPUS));
            let cpids = v
                .required("nesting.pids_max", n.pids_max.as_ref(), why)
                .and_then(|s| v.int("nesting.pids_max", s, PIDS_MAX));
            ceiling_within_own(&mut v, n, memory, vcpus, pids_max, (cmem, cvcpus, cpids));
            Some((max_children, cmem, cvcpus, cpids))
        }
        Some(n) => {
            let set: [(&'static str, Option<Range<usize>>); 4] = [
                (
                    "nesting.max_children",
                    n.max_children.as_ref().map(Spanned::span),
                ),
                ("nesting.memory", n.memory.as_ref().map(Spanned::span)),
                ("nesting.vcpus", n.vcpus.as_ref().map(Spanned::span)),
                ("nesting.pids_max", n.pids_max.as_ref().map(Spanned::span)),
            ];
            for (key, span) in set {
                if let Some(span) = span {
                    v.err(key, Some(&span), "set, but nesting.allowed is not true");
                }
            }
            None
        }
        None => None,
    };

    let problems = std::mem::take(&mut v.problems);
    if !problems.is_empty() {
        // All of them: the caller sorts them into file order before listing the first.
        return Err(PolicyError::all(problems));
    }
    // No problem was reported, so every required value is present. Still written without
    // panics: a missing value here would be a bug, reported as a problem, not a crash.
    let built = (|| {
        let persist = match persist {
            Some((volume, size)) => Some(Persist {
                volume: volume?,
                size: size?,
            }),
            None => None,
        };
        let nesting = match ceiling {
            Some((max_children, memory, vcpus, pids_max)) => Some(Ceiling {
                max_children: max_children?,
                memory: memory?,
                vcpus: vcpus?,
                pids_max: pids_max?,
            }),
            None => None,
        };
        Some(Policy {
            name: name?,
            image: image?,
            backend: backend?,
            parent,
            privileged,
            network: network?,
            devices,
            resources: Resources {
                memory: memory?,
                vcpus: vcpus?,
                cpu_weight: cpu_weight?,
                pids_max: pids_max?,
            },
            persist,
            courier: Courier {
                send_to,
                receive_from,
                max_size: max_size?,
            },
            nesting,
            lifetime: Lifetime {
                max: max?,
                idle: idle?,
            },
        })
    })();
    match built {
        Some(policy) => Ok((policy, v.lines)),
        None => Err(PolicyError::one(Problem::file(
            file,
            "internal error: a validated value is missing",
        ))),
    }
}

use toml::Spanned;

type CeilingValues = (Option<ByteSize>, Option<u32>, Option<u32>);

/// The ceiling given to children can never exceed what the room has itself.
fn ceiling_within_own(
    v: &mut V<'_>,
    n: &crate::raw::RawNesting,
    memory: Option<ByteSize>,
    vcpus: Option<u32>,
    pids_max: Option<u32>,
    (cmem, cvcpus, cpids): CeilingValues,
) {
    if let (Some(c), Some(own)) = (cmem, memory) {
        if c > own {
            let span = n.memory.as_ref().map(Spanned::span);
            v.err(
                "nesting.memory",
                span.as_ref(),
                format!("{c} exceeds the room's own resources.memory ({own})"),
            );
        }
    }
    if let (Some(c), Some(own)) = (cvcpus, vcpus) {
        if c > own {
            let span = n.vcpus.as_ref().map(Spanned::span);
            v.err(
                "nesting.vcpus",
                span.as_ref(),
                format!("{c} exceeds the room's own resources.vcpus ({own})"),
            );
        }
    }
    if let (Some(c), Some(own)) = (cpids, pids_max) {
        if c > own {
            let span = n.pids_max.as_ref().map(Spanned::span);
            v.err(
                "nesting.pids_max",
                span.as_ref(),
                format!("{c} exceeds the room's own resources.pids_max ({own})"),
            );
        }
    }
}
