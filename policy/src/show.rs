// SPDX-License-Identifier: GPL-3.0-or-later
//! The effective policy (defaults filled in) as a serializable view, for
//! `anchorctl policy show` (TOML or JSON). Its TOML parses back to the same `Policy`.

use serde::Serialize;

use crate::model::Policy;

/// Serializable view of a `Policy`, every default written out.
#[derive(Debug, Serialize)]
pub struct Effective {
    name: String,
    image: String,
    backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    privileged: bool,
    network: &'static str,
    devices: Vec<&'static str>,
    resources: EffResources,
    lifetime: EffLifetime,
    #[serde(skip_serializing_if = "Option::is_none")]
    persist: Option<EffPersist>,
    courier: EffCourier,
    nesting: EffNesting,
}

#[derive(Debug, Serialize)]
struct EffResources {
    memory: String,
    vcpus: u32,
    cpu_weight: u32,
    pids_max: u32,
}

#[derive(Debug, Serialize)]
struct EffLifetime {
    max: String,
    idle: String,
}

#[derive(Debug, Serialize)]
struct EffPersist {
    volume: String,
    size: String,
}

#[derive(Debug, Serialize)]
struct EffCourier {
    send_to: Vec<String>,
    receive_from: Vec<String>,
    max_size: String,
}

#[derive(Debug, Serialize)]
struct EffNesting {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_children: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vcpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pids_max: Option<u32>,
}

impl Policy {
    /// The effective policy, every default filled in.
    pub fn effective(&self) -> Effective {
        let r = self.resources();
        let ceil = self.nesting();
        Effective {
            name: self.name().to_string(),
            image: self.image().to_string(),
            backend: self.backend().as_str(),
            parent: self.parent().map(ToString::to_string),
            privileged: self.privileged(),
            network: self.network().as_str(),
            devices: self.devices().iter().map(|d| d.as_str()).collect(),
            resources: EffResources {
                memory: r.memory().to_string(),
                vcpus: r.vcpus(),
                cpu_weight: r.cpu_weight(),
                pids_max: r.pids_max(),
            },
            lifetime: EffLifetime {
                max: self.lifetime().max().to_string(),
                idle: self.lifetime().idle().to_string(),
            },
            persist: self.persist().map(|p| EffPersist {
                volume: p.volume().to_string(),
                size: p.size().to_string(),
            }),
            courier: EffCourier {
                send_to: self
                    .courier()
                    .send_to()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                receive_from: self
                    .courier()
                    .receive_from()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                max_size: self.courier().max_size().to_string(),
            },
            nesting: EffNesting {
                allowed: ceil.is_some(),
                max_children: ceil.map(|c| c.max_children()),
                memory: ceil.map(|c| c.memory().to_string()),
                vcpus: ceil.map(|c| c.vcpus()),
                pids_max: ceil.map(|c| c.pids_max()),
            },
        }
    }

    /// The effective policy as a TOML policy file (parses back to an equal `Policy`).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(&self.effective())
    }
}
