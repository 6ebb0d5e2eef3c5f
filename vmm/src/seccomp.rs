// SPDX-License-Identifier: GPL-3.0-or-later
//! Per-thread seccomp filters, compiled from seccomp/*.json by build.rs and
//! installed on each thread before the first guest instruction runs.
//! Default action: kill the process (SIGSYS). Justifications per syscall:
//! docs/SYSCALL-JUSTIFICATIONS.md and the `comment` fields of the JSON.

use std::fmt;

use seccompiler::{sock_filter, BpfProgram};

/// Thread kinds with their own filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread: event loop and virtio device work.
    Vmm,
    /// A vcpu thread: KVM_RUN and exit handling.
    Vcpu,
}

static VMM_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vmm.bpf"));
static VCPU_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vcpu.bpf"));

/// Seccomp errors.
#[derive(Debug)]
pub enum SeccompError {
    /// The embedded program is malformed (should be impossible).
    Corrupt(ThreadKind),
    /// The kernel refused the filter.
    Install(ThreadKind, seccompiler::Error),
}

impl fmt::Display for SeccompError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Corrupt(k) => write!(f, "embedded {k:?} seccomp filter is corrupt"),
            Self::Install(k, e) => write!(f, "installing the {k:?} seccomp filter: {e}"),
        }
    }
}

impl std::error::Error for SeccompError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Install(_, e) => Some(e),
            Self::Corrupt(_) => None,
        }
    }
}

/// Decodes the embedded program for `kind`.
pub fn program(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let raw = match kind {
        ThreadKind::Vmm => VMM_BPF,
        ThreadKind::Vcpu => VCPU_BPF,
    };
    if raw.is_empty() || raw.len() % 8 != 0 {
        return Err(SeccompError::Corrupt(kind));
    }
    Ok(raw
        .chunks_exact(8)
        .map(|c| {
            let b = |i: usize| c.get(i).copied().unwrap_or(0);
            sock_filter {
                code: u16::from_le_bytes([b(0), b(1)]),
                jt: b(2),
                jf: b(3),
                k: u32::from_le_bytes([b(4), b(5), b(6), b(7)]),
            }
        })
        .collect())
}

/// Installs the filter for `kind` on the calling thread (sets no_new_privs).
pub fn install(kind: ThreadKind) -> Result<(), SeccompError> {
    let prog = program(kind)?;
    seccompiler::apply_filter(&prog).map_err(|e| SeccompError::Install(kind, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_decode() {
        for k in [ThreadKind::Vmm, ThreadKind::Vcpu] {
            let p = program(k).unwrap();
            assert!(p.len() > 10);
            // Classic BPF programs end in a RET.
            assert_eq!(p.last().unwrap().code & 0x07, 0x06);
        }
    }

    /// Every syscall a filter allows has its line in the justification doc.
    #[test]
    fn doc_lists_every_allowed_syscall() {
        let doc = include_str!("../../docs/SYSCALL-JUSTIFICATIONS.md");
        for (kind, json) in [
            ("vmm", include_str!("../seccomp/vmm.json")),
            ("vcpu", include_str!("../seccomp/vcpu.json")),
        ] {
            for part in json.split("\"syscall\": \"").skip(1) {
                let name = part.split('"').next().unwrap();
                let row = format!("| {kind} | {name} |");
                assert!(
                    doc.contains(&row),
                    "docs/SYSCALL-JUSTIFICATIONS.md lacks `{row}`"
                );
            }
        }
    }
}
