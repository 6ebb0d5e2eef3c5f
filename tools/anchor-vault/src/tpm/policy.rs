// SPDX-License-Identifier: GPL-3.0-or-later
//! The sealing policy: what state the machine must be in for the TPM to release the
//! vault secret. One enum, one variant per kind of policy, so the UKI work can add a
//! signed PCR 11 policy (TPM2_PolicyAuthorize) beside the plain PCR one without
//! touching the callers; the kind is recorded in the LUKS2 token.
//!
//! [`SealPolicy::Pcr`]: TPM2_PolicyPCR over the chosen PCRs of the SHA-256 bank with the
//! values they had when the vault was sealed, plus [`LOCK_PCR`] still all zeros, then
//! TPM2_PolicyAuthValue (the passphrase-derived authorization value). anchor-vault
//! extends [`LOCK_PCR`] right after it opens the vault, so nothing that runs later in
//! the same boot can ask the TPM for the secret again.

use core::fmt;

use serde_json::{json, Value};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::PolicySession;
use tss_esapi::structures::{Digest, PcrSelectionList, PcrSelectionListBuilder, PcrSlot};
use tss_esapi::Context;

use crate::hex;

/// PCR 7: Secure Boot state, the keys in PK/KEK/db/dbx and the authority that
/// verified the boot image. The default binding (see docs/ARCHITECTURE.md).
pub const DEFAULT_PCRS: &[u8] = &[7];

/// Extended by anchor-vault once the vault is open ("vault opened this boot").
pub const LOCK_PCR: u8 = 15;

/// What a PCR measures, for messages.
pub fn pcr_meaning(pcr: u8) -> &'static str {
    match pcr {
        0 => "firmware code",
        1 => "firmware settings",
        2 => "option ROMs / extension firmware",
        3 => "extension firmware settings",
        4 => "boot loader / kernel image",
        5 => "boot loader settings, GPT",
        7 => "Secure Boot state and keys",
        11 => "unified kernel image",
        LOCK_PCR => "vault already opened this boot",
        _ => "boot measurements",
    }
}

/// Why a policy cannot be built or read.
#[derive(Debug)]
pub enum PolicyError {
    /// A PCR number outside 0..=23, a duplicate, or the lock PCR itself.
    BadPcr(u8),
    /// Too many PCRs (one TPM2_PCR_Read returns at most 8).
    TooMany,
    /// The TPM refused a policy command.
    Tpm(&'static str, tss_esapi::Error),
    /// The TPM returned fewer PCR values than asked for.
    ShortRead,
    /// The token's policy description is not one this version knows.
    Token(&'static str),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::BadPcr(p) => write!(
                f,
                "PCR {p} cannot be used: PCRs are 0..=23, each once, and {LOCK_PCR} is \
                 reserved for the vault's own lock"
            ),
            PolicyError::TooMany => f.write_str("at most 7 PCRs can be bound"),
            PolicyError::Tpm(op, e) => write!(f, "TPM {op}: {e}"),
            PolicyError::ShortRead => f.write_str("the TPM returned fewer PCR values than asked"),
            PolicyError::Token(why) => write!(f, "sealing policy in the LUKS2 token: {why}"),
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::Tpm(_, e) => Some(e),
            _ => None,
        }
    }
}

/// A PCR and its SHA-256 value.
pub type PcrValue = (u8, [u8; 32]);

/// The sealing policy, recorded in the vault's LUKS2 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealPolicy {
    /// PolicyPCR(sha256: `expected` PCRs + LOCK_PCR = 0) then PolicyAuthValue.
    Pcr {
        /// The bound PCRs with the values they had at sealing time, ascending.
        expected: Vec<PcrValue>,
    },
}

fn slot(pcr: u8) -> Result<PcrSlot, PolicyError> {
    if pcr > 23 {
        return Err(PolicyError::BadPcr(pcr));
    }
    PcrSlot::try_from(1u32 << pcr).map_err(|_| PolicyError::BadPcr(pcr))
}

/// The selection of `pcrs` in the SHA-256 bank.
pub fn selection(pcrs: &[u8]) -> Result<PcrSelectionList, PolicyError> {
    let slots = pcrs
        .iter()
        .map(|&p| slot(p))
        .collect::<Result<Vec<_>, _>>()?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(|e| PolicyError::Tpm("PCR selection", e))
}

/// Check a user's PCR list: 0..=23, no duplicates, not [`LOCK_PCR`], at most 7; sorted.
pub fn check_pcrs(pcrs: &[u8]) -> Result<Vec<u8>, PolicyError> {
    let mut sorted = pcrs.to_vec();
    sorted.sort_unstable();
    if sorted.len() > 7 {
        return Err(PolicyError::TooMany);
    }
    for (i, &p) in sorted.iter().enumerate() {
        if p > 23 || p == LOCK_PCR || (i > 0 && sorted.get(i - 1) == Some(&p)) {
            return Err(PolicyError::BadPcr(p));
        }
    }
    Ok(sorted)
}

/// Read the SHA-256 values of `pcrs` (at most 8), in ascending order.
pub fn read_pcrs(ctx: &mut Context, pcrs: &[u8]) -> Result<Vec<PcrValue>, PolicyError> {
    let (_, _, digests) = ctx.execute_without_session(|c| {
        c.pcr_read(selection(pcrs)?)
            .map_err(|e| PolicyError::Tpm("PCR_Read", e))
    })?;
    let values = digests.value();
    if values.len() != pcrs.len() {
        return Err(PolicyError::ShortRead);
    }
    let mut out = Vec::with_capacity(pcrs.len());
    for (&p, d) in pcrs.iter().zip(values) {
        let v: [u8; 32] = d.value().try_into().map_err(|_| PolicyError::ShortRead)?;
        out.push((p, v));
    }
    Ok(out)
}

impl SealPolicy {
    /// A PCR policy over `pcrs` with their current values.
    pub fn pcr_now(ctx: &mut Context, pcrs: &[u8]) -> Result<SealPolicy, PolicyError> {
        let pcrs = check_pcrs(pcrs)?;
        Ok(SealPolicy::Pcr {
            expected: read_pcrs(ctx, &pcrs)?,
        })
    }

    /// Every PCR the policy reads, ascending, with the value it demands.
    fn demanded(&self) -> Vec<PcrValue> {
        match self {
            SealPolicy::Pcr { expected } => {
                let mut all = expected.clone();
                all.push((LOCK_PCR, [0u8; 32]));
                all.sort_unstable_by_key(|(p, _)| *p);
                all
            }
        }
    }

    /// Run the policy's commands on `session`: a trial session (computing the digest
    /// from the demanded values) or a real one (the TPM uses its current PCRs).
    pub fn run(
        &self,
        ctx: &mut Context,
        session: PolicySession,
        trial: bool,
    ) -> Result<(), PolicyError> {
        match self {
            SealPolicy::Pcr { .. } => {
                let demanded = self.demanded();
                let pcrs: Vec<u8> = demanded.iter().map(|(p, _)| *p).collect();
                let digest = if trial {
                    let mut concat = Vec::with_capacity(demanded.len() * 32);
                    for (_, v) in &demanded {
                        concat.extend_from_slice(v);
                    }
                    Digest::try_from(anchor_audit::chain::digest(&concat).to_vec())
                        .map_err(|e| PolicyError::Tpm("PolicyPCR digest", e))?
                } else {
                    Digest::default()
                };
                ctx.policy_pcr(session, digest, selection(&pcrs)?)
                    .map_err(|e| PolicyError::Tpm("PolicyPCR", e))?;
                ctx.policy_auth_value(session)
                    .map_err(|e| PolicyError::Tpm("PolicyAuthValue", e))
            }
        }
    }

    /// The PCRs whose current value differs from what the policy demands.
    pub fn changed(&self, ctx: &mut Context) -> Result<Vec<u8>, PolicyError> {
        let demanded = self.demanded();
        let pcrs: Vec<u8> = demanded.iter().map(|(p, _)| *p).collect();
        let now = read_pcrs(ctx, &pcrs)?;
        Ok(demanded
            .iter()
            .zip(&now)
            .filter(|(a, b)| a != b)
            .map(|((p, _), _)| *p)
            .collect())
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            SealPolicy::Pcr { expected } => {
                let list: Vec<String> = expected
                    .iter()
                    .map(|(p, _)| format!("{p} ({})", pcr_meaning(*p)))
                    .collect();
                format!(
                    "TPM2 PCR policy, SHA-256 bank: PCRs {} as sealed, PCR {LOCK_PCR} unextended; plus the passphrase",
                    list.join(", ")
                )
            }
        }
    }

    /// The token form.
    pub fn to_json(&self) -> Value {
        match self {
            SealPolicy::Pcr { expected } => {
                let values: serde_json::Map<String, Value> = expected
                    .iter()
                    .map(|(p, v)| (p.to_string(), Value::String(hex::encode(v))))
                    .collect();
                json!({
                    "kind": "pcr",
                    "bank": "sha256",
                    "pcrs": values,
                    "lock_pcr": LOCK_PCR,
                    "auth": "passphrase",
                })
            }
        }
    }

    /// Read the token form back.
    pub fn from_json(v: &Value) -> Result<SealPolicy, PolicyError> {
        match v.get("kind").and_then(Value::as_str) {
            Some("pcr") => {}
            Some(_) => {
                return Err(PolicyError::Token(
                    "unknown policy kind (a newer anchor-vault?)",
                ))
            }
            None => return Err(PolicyError::Token("no policy kind")),
        }
        if v.get("bank").and_then(Value::as_str) != Some("sha256")
            || v.get("lock_pcr").and_then(Value::as_u64) != Some(u64::from(LOCK_PCR))
        {
            return Err(PolicyError::Token("unsupported bank or lock PCR"));
        }
        let map = v
            .get("pcrs")
            .and_then(Value::as_object)
            .ok_or(PolicyError::Token("no PCR values"))?;
        let mut expected = Vec::with_capacity(map.len());
        for (k, val) in map {
            let p: u8 = k
                .parse()
                .map_err(|_| PolicyError::Token("bad PCR number"))?;
            let bytes = val
                .as_str()
                .and_then(hex::decode)
                .ok_or(PolicyError::Token("bad PCR value"))?;
            let arr: [u8; 32] = bytes
                .try_into()
                .map_err(|_| PolicyError::Token("PCR value is not 32 bytes"))?;
            expected.push((p, arr));
        }
        let pcrs: Vec<u8> = expected.iter().map(|(p, _)| *p).collect();
        let sorted = check_pcrs(&pcrs)?;
        expected.sort_unstable_by_key(|(p, _)| *p);
        if sorted.len() != expected.len() {
            return Err(PolicyError::Token("duplicate PCRs"));
        }
        Ok(SealPolicy::Pcr { expected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_lists_are_checked() {
        assert_eq!(check_pcrs(&[7, 0, 4]).unwrap(), vec![0, 4, 7]);
        assert!(matches!(check_pcrs(&[15]), Err(PolicyError::BadPcr(15))));
        assert!(matches!(check_pcrs(&[24]), Err(PolicyError::BadPcr(24))));
        assert!(matches!(check_pcrs(&[7, 7]), Err(PolicyError::BadPcr(7))));
        assert!(matches!(
            check_pcrs(&[0, 1, 2, 3, 4, 5, 6, 7]),
            Err(PolicyError::TooMany)
        ));
    }

    #[test]
    fn the_token_form_round_trips_and_refuses_the_unknown() {
        let p = SealPolicy::Pcr {
            expected: vec![(0, [1; 32]), (7, [2; 32])],
        };
        let j = p.to_json();
        assert_eq!(SealPolicy::from_json(&j).unwrap(), p);
        let mut other = j.clone();
        other["kind"] = json!("signed-pcr11");
        assert!(SealPolicy::from_json(&other).is_err());
        let mut bad = j.clone();
        bad["pcrs"]["15"] = json!(hex::encode(&[0u8; 32]));
        assert!(SealPolicy::from_json(&bad).is_err());
        let mut short = j;
        short["pcrs"]["7"] = json!("abcd");
        assert!(SealPolicy::from_json(&short).is_err());
        assert!(p.describe().contains("7 (Secure Boot state and keys)"));
        assert_eq!(p.demanded().last().unwrap().0, LOCK_PCR);
    }
}
