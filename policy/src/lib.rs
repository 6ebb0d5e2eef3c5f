// SPDX-License-Identifier: GPL-3.0-or-later
//! Anchor OS room policies.
//!
//! A policy is a small TOML file, one per room. It is parsed once into a typed, immutable
//! [`Policy`] (parse -> validate -> typed value); validation reports every problem as
//! `FILE:LINE:KEY: message`. A nested room names its `parent`; [`load`] / [`resolve`]
//! check the whole chain (subset rules, depth <= [`MAX_DEPTH`], no cycles); [`load`] also
//! refuses a vault volume that an unrelated policy in the same directory names.
//! The language is documented in docs/POLICY.md.

pub mod admission;
pub mod arbiter;
pub mod courier;
mod error;
mod model;
mod nesting;
mod parse;
mod raw;
mod schema;
mod show;
mod units;
mod validate;
pub mod vault;
mod volume;

/// Where the anchor host keeps the rooms' policies, `NAME.toml` each (bay0 opens rooms
/// from them; anchor-vault reads their volumes; anchorctl points there).
pub const POLICY_DIR: &str = "/etc/anchor/policies";

/// The audit log format, for bay0's records (bay0 reaches it through this crate).
pub use anchor_audit as audit;
pub use courier::{courier_allowed, Refusal};
pub use error::{PolicyError, Problem, ProblemKind, MAX_PROBLEMS};
pub use model::{
    Backend, Ceiling, Courier, Device, Lifetime, Name, Network, Persist, Policy, Resources,
    MAX_NAME_LEN,
};
pub use nesting::{
    file_label, load, load_dir, missing_parent, policy_files, read_policy_file, resolve, Resolved,
    MAX_DEPTH,
};
pub use parse::{parse, MAX_FILE_BYTES};
pub use show::Effective;
pub use units::{ByteSize, Limit};
pub use validate::{
    COURIER_DEFAULT_MIB, COURIER_MAX_MIB, CPU_WEIGHT, CPU_WEIGHT_DEFAULT, LIFETIME_MAX_SECS,
    LIFETIME_MIN_SECS, MAX_CHILDREN, MEMORY_MAX_MIB, MEMORY_MIN_MIB, MICROVM_MEMORY_MAX_MIB,
    MICROVM_VCPUS_MAX, PERSIST_MAX_MIB, PIDS_MAX, PIDS_MAX_DEFAULT, VCPUS,
};
