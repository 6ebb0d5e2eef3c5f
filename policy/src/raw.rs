// SPDX-License-Identifier: GPL-3.0-or-later
//! The file's shape, as serde sees it. Unknown keys and wrong TOML types stop here
//! (`deny_unknown_fields`); every value is kept loosely typed and spanned so that
//! validation can check ranges, units and names and report all problems with lines.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;
pub(crate) type NameList = S<Vec<S<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub name: Option<S<String>>,
    pub image: Option<S<String>>,
    pub backend: Option<S<String>>,
    pub parent: Option<S<String>>,
    pub privileged: Option<S<bool>>,
    pub network: Option<S<String>>,
    pub devices: Option<NameList>,
    pub resources: Option<S<RawResources>>,
    pub lifetime: Option<S<RawLifetime>>,
    pub persist: Option<S<RawPersist>>,
    pub courier: Option<S<RawCourier>>,
    pub nesting: Option<S<RawNesting>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResources {
    pub memory: Option<S<String>>,
    pub vcpus: Option<S<i64>>,
    pub cpu_weight: Option<S<i64>>,
    pub pids_max: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLifetime {
    pub max: Option<S<String>>,
    pub idle: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPersist {
    pub volume: Option<S<String>>,
    pub size: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCourier {
    pub send_to: Option<NameList>,
    pub receive_from: Option<NameList>,
    pub max_size: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNesting {
    pub allowed: Option<S<bool>>,
    pub max_children: Option<S<i64>>,
    pub memory: Option<S<String>>,
    pub vcpus: Option<S<i64>>,
    pub pids_max: Option<S<i64>>,
}
