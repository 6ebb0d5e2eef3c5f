// SPDX-License-Identifier: GPL-3.0-or-later
//! Build-time help for our seccomp filters (used by the build scripts of anchor-vmm and
//! anchor-jail, never at run time).
//!
//! seccompiler compiles a filter's rules into one chain: for every syscall in the
//! filter a comparison of the syscall number, then that syscall's rules. A call of a
//! number near the end of the chain, or of one not in the filter, walks the whole chain,
//! and the kernel walks it for every syscall number when it installs the filter (to
//! build its cache of calls that are always allowed). For the namespace room's allow
//! list that is a 1,449-instruction program and about 0.6 ms per room start.
//!
//! [`relayout`] keeps seccompiler's program as the definition of what the filter
//! answers and changes only how a syscall number finds its answer:
//! 1. it evaluates the program for every range of syscall numbers the program can tell
//!    apart ([`partial`]), with the architecture word equal to the filter's target: each
//!    range ends either in a fixed answer or at the first instruction that reads a
//!    syscall argument;
//! 2. it emits the architecture check, a balanced search over those ranges (at most
//!    ~log2 of their count comparisons), and, copied unchanged, the instructions that
//!    check arguments ([`layout`]);
//! 3. it runs both programs on the same inputs in an interpreter ([`check`]) and fails
//!    the build on any difference.
//!
//! Programs using the X register, scratch memory or an operation on the syscall number
//! other than a comparison are refused (seccompiler emits none of these): the ranges
//! would not be exact for them.

mod check;
mod insn;
mod interp;
mod layout;
mod partial;

pub use check::equivalent;
pub use insn::{encode, Insn};
pub use interp::{run, Data};
pub use layout::relayout;

/// Why a program could not be laid out, or differs from its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An instruction this crate does not evaluate (X register, scratch memory, ...).
    Unsupported { pc: usize, code: u16 },
    /// A load outside `struct seccomp_data`, or not 4-byte aligned.
    BadLoad { pc: usize, offset: u32 },
    /// A jump or the end of the program falls outside it.
    OutOfProgram { pc: usize },
    /// The answer depends on the syscall number in a way ranges cannot capture, or on
    /// the architecture word other than by equality with the target.
    Shape { pc: usize, why: &'static str },
    /// The program is longer than the kernel takes (BPF_MAXINSNS).
    TooLong(usize),
    /// The two programs answer one input differently.
    Differs {
        nr: u32,
        arch: u32,
        args: [u64; 6],
        original: u32,
        relaid: u32,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unsupported { pc, code } => {
                write!(f, "instruction {pc}: opcode {code:#06x} is not supported")
            }
            Error::BadLoad { pc, offset } => {
                write!(f, "instruction {pc}: load of seccomp_data offset {offset}")
            }
            Error::OutOfProgram { pc } => write!(f, "instruction {pc}: runs past the program"),
            Error::Shape { pc, why } => write!(f, "instruction {pc}: {why}"),
            Error::TooLong(n) => write!(f, "{n} instructions (the kernel takes 4096)"),
            Error::Differs {
                nr,
                arch,
                args,
                original,
                relaid,
            } => write!(
                f,
                "syscall {nr} (arch {arch:#x}, args {args:x?}): original answers {original:#x}, \
                 the laid-out program {relaid:#x}"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// [`relayout`] for the architecture Cargo calls `target_arch` (x86_64 or aarch64), from
/// and to the kernel's records: `prog` as (code, jt, jf, k) per instruction (seccompiler's
/// `sock_filter` fields), the result as [`encode`] writes it. What our build scripts store.
pub fn laid_out(
    target_arch: &str,
    prog: impl IntoIterator<Item = (u16, u8, u8, u32)>,
) -> Result<Vec<u8>, Error> {
    let arch = match target_arch {
        "x86_64" => AUDIT_ARCH_X86_64,
        "aarch64" => AUDIT_ARCH_AARCH64,
        _ => {
            return Err(Error::Shape {
                pc: 0,
                why: "no seccomp audit architecture for this target",
            })
        }
    };
    let prog: Vec<Insn> = prog
        .into_iter()
        .map(|(code, jt, jf, k)| Insn { code, jt, jf, k })
        .collect();
    Ok(encode(&relayout(&prog, arch)?))
}

/// `AUDIT_ARCH_X86_64` and `AUDIT_ARCH_AARCH64` (linux/audit.h): the `arch` word of
/// `struct seccomp_data` on our targets.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

/// The most instructions the kernel accepts in one program (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;
