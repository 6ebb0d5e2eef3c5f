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
//!
//! [`SealPolicy::SignedPcr11`]: first TPM2_PolicyAuthorize(our PCR key) over a signed
//! TPM2_PolicyPCR(sha256:11) digest ([`super::signed`]), then the same PolicyPCR over the
//! sealed PCRs (7 by default) and [`LOCK_PCR`] = 0, then PolicyAuthValue. The order is
//! forced by the TPM: PolicyAuthorize replaces the session digest with one naming the
//! key, so only what follows it stays in the sealed policy.

use core::fmt;

use serde_json::{json, Value};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::PolicySession;
use tss_esapi::structures::{Digest, Nonce, PcrSelectionList, PcrSelectionListBuilder, PcrSlot};
use tss_esapi::Context;

use super::signed::{self, Approval, PcrKey, SignedError, SIGNED_PCR};
use crate::hex;

/// PCR 7: Secure Boot state, the keys in PK/KEK/db/dbx and the authority that
/// verified the boot image. The default binding (see docs/ARCHITECTURE.md).
pub const DEFAULT_PCRS: &[u8] = &[7];

/// Extended by anchor-vault once the vault is open ("vault opened this boot").
pub const LOCK_PCR: u8 = 15;

/// The token's `kind` for [`SealPolicy::SignedPcr11`].
pub const SIGNED_KIND: &str = "signed-pcr11";

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
    /// The signed PCR 11 policy cannot be used.
    Signed(SignedError),
    /// A signed policy was run for real without the TPM's approval of a signature.
    NoApproval,
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
            PolicyError::Signed(e) => write!(f, "{e}"),
            PolicyError::NoApproval => {
                f.write_str("the signed PCR 11 policy was not approved by the TPM first")
            }
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::Tpm(_, e) => Some(e),
            PolicyError::Signed(e) => e.source(),
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
    /// PolicyAuthorize(`key`) over a signed PolicyPCR(sha256:11), then PolicyPCR(sha256:
    /// `expected` PCRs + LOCK_PCR = 0), then PolicyAuthValue.
    SignedPcr11 {
        /// The key whose signature over PCR 11's policy is accepted.
        key: PcrKey,
        /// PCRs bound by value (never 11), ascending.
        expected: Vec<PcrValue>,
    },
}

impl From<SignedError> for PolicyError {
    fn from(e: SignedError) -> Self {
        PolicyError::Signed(e)
    }
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

    /// A signed PCR 11 policy for `key`, with `pcrs` (not 11) bound by their current values.
    pub fn signed_now(
        ctx: &mut Context,
        key: PcrKey,
        pcrs: &[u8],
    ) -> Result<SealPolicy, PolicyError> {
        let pcrs = check_pcrs(pcrs)?;
        if pcrs.contains(&SIGNED_PCR) {
            return Err(PolicyError::BadPcr(SIGNED_PCR));
        }
        Ok(SealPolicy::SignedPcr11 {
            key,
            expected: read_pcrs(ctx, &pcrs)?,
        })
    }

    /// The PCRs bound by value, with their sealed values.
    fn expected(&self) -> &[PcrValue] {
        match self {
            SealPolicy::Pcr { expected } | SealPolicy::SignedPcr11 { expected, .. } => expected,
        }
    }

    /// The key a signed policy trusts.
    pub fn signing_key(&self) -> Option<&PcrKey> {
        match self {
            SealPolicy::Pcr { .. } => None,
            SealPolicy::SignedPcr11 { key, .. } => Some(key),
        }
    }

    /// Every PCR the policy reads by value, ascending, with the value it demands.
    fn demanded(&self) -> Vec<PcrValue> {
        let mut all = self.expected().to_vec();
        all.push((LOCK_PCR, [0u8; 32]));
        all.sort_unstable_by_key(|(p, _)| *p);
        all
    }

    /// Run the policy's commands on `session`: a trial session (computing the digest
    /// from the demanded values) or a real one (the TPM uses its current PCRs).
    /// A signed policy's `approval` (from [`signed::approve`]) is needed for a real one.
    pub fn run(
        &self,
        ctx: &mut Context,
        session: PolicySession,
        trial: bool,
        approval: Option<&Approval>,
    ) -> Result<(), PolicyError> {
        if let SealPolicy::SignedPcr11 { key, .. } = self {
            if trial {
                let name = key.name(ctx)?;
                let ticket =
                    signed::null_ticket().map_err(|e| PolicyError::Tpm("null ticket", e))?;
                ctx.policy_authorize(session, Digest::default(), Nonce::default(), &name, ticket)
                    .map_err(|e| PolicyError::Tpm("PolicyAuthorize", e))?;
            } else {
                let approval = approval.ok_or(PolicyError::NoApproval)?;
                ctx.policy_pcr(session, Digest::default(), selection(&[SIGNED_PCR])?)
                    .map_err(|e| PolicyError::Tpm("PolicyPCR(11)", e))?;
                let (approved, name, ticket) = approval
                    .parts()
                    .map_err(|e| PolicyError::Tpm("approval", e))?;
                ctx.policy_authorize(session, approved, Nonce::default(), &name, ticket)
                    .map_err(|e| PolicyError::Tpm("PolicyAuthorize", e))?;
            }
        }
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
        let list: Vec<String> = self
            .expected()
            .iter()
            .map(|(p, _)| format!("{p} ({})", pcr_meaning(*p)))
            .collect();
        let bound = if list.is_empty() {
            String::new()
        } else {
            format!("PCRs {} as sealed, ", list.join(", "))
        };
        match self {
            SealPolicy::Pcr { .. } => format!(
                "TPM2 PCR policy, SHA-256 bank: {bound}PCR {LOCK_PCR} unextended; plus the passphrase"
            ),
            SealPolicy::SignedPcr11 { key, .. } => format!(
                "TPM2 signed PCR policy, SHA-256 bank: PCR {SIGNED_PCR} ({}) as signed by key {} (any system image signed with it, updates included), {bound}PCR {LOCK_PCR} unextended; plus the passphrase",
                pcr_meaning(SIGNED_PCR),
                signed::short(&key.fingerprint())
            ),
        }
    }

    /// The token form.
    pub fn to_json(&self) -> Value {
        let values: serde_json::Map<String, Value> = self
            .expected()
            .iter()
            .map(|(p, v)| (p.to_string(), Value::String(hex::encode(v))))
            .collect();
        let mut v = json!({
            "kind": "pcr",
            "bank": "sha256",
            "pcrs": values,
            "lock_pcr": LOCK_PCR,
            "auth": "passphrase",
        });
        if let (SealPolicy::SignedPcr11 { key, .. }, Some(obj)) = (self, v.as_object_mut()) {
            obj.insert("kind".into(), json!(SIGNED_KIND));
            obj.insert(
                "signed".into(),
                json!({
                    "pcrs": [SIGNED_PCR],
                    "pkfp": hex::encode(&key.fingerprint()),
                    "pubkey": hex::encode(key.der()),
                    "key": "RSA, loaded into the owner hierarchy; RSASSA-PKCS1-v1_5 SHA-256 over the PolicyPCR digest; empty policyRef",
                    "signature_file": signed::SIGNATURE_FILE,
                }),
            );
        }
        v
    }

    /// Read the token form back.
    pub fn from_json(v: &Value) -> Result<SealPolicy, PolicyError> {
        let signed = match v.get("kind").and_then(Value::as_str) {
            Some("pcr") => false,
            Some(SIGNED_KIND) => true,
            Some(_) => {
                return Err(PolicyError::Token(
                    "unknown policy kind (a newer anchor-vault?)",
                ))
            }
            None => return Err(PolicyError::Token("no policy kind")),
        };
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
        if !signed {
            return Ok(SealPolicy::Pcr { expected });
        }
        if sorted.contains(&SIGNED_PCR) {
            return Err(PolicyError::Token(
                "PCR 11 is both signed and bound by value",
            ));
        }
        let s = v
            .get("signed")
            .ok_or(PolicyError::Token("no signed policy key"))?;
        if s.get("pcrs") != Some(&json!([SIGNED_PCR])) {
            return Err(PolicyError::Token("the signed policy is not over PCR 11"));
        }
        let der = s
            .get("pubkey")
            .and_then(Value::as_str)
            .and_then(hex::decode)
            .ok_or(PolicyError::Token("bad signed policy key"))?;
        let key =
            PcrKey::from_der(&der).map_err(|_| PolicyError::Token("bad signed policy key"))?;
        let fp = s
            .get("pkfp")
            .and_then(Value::as_str)
            .and_then(hex::decode)
            .ok_or(PolicyError::Token("no signed policy key fingerprint"))?;
        if fp != key.fingerprint() {
            return Err(PolicyError::Token(
                "the signed policy key does not match its fingerprint",
            ));
        }
        Ok(SealPolicy::SignedPcr11 { key, expected })
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
        other["kind"] = json!("pcr-and-moon-phase");
        assert!(SealPolicy::from_json(&other).is_err());
        // A signed kind without its key is refused too.
        other["kind"] = json!(SIGNED_KIND);
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

    /// A test key (public half only; nothing is signed with it here).
    const TEST_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzETC0OZcRjnTjSdKxkCb
Ca7H4yLC1bHGoyHbPPnLFlCp7zIVDadRXb4GbhMrCtyzUv4Rqd4H6D2u9q7ixR/X
tsqiT6dnrNW8U293A5GskyG42l32z4r2u8BN2z7PTW8a+VpSNkwg8Zm2L2VdWK+7
IQjquHEGRSFxwbpxxmKn7xuvXYwcwc5jPiREjUErxpoxXa+TEAhAoWQRHBPC+tY7
jCDtDIHSH09lAqaOCUH71gT/mUBoI1pLXO89KOd4328q4gFcdwWdIqPXJW7gAn5o
P8Llkz0bULIkx0BbBHfMOfagihW/4i6bGjv9oTc8cS+194LNpEzNdfydQHXSURrm
6wIDAQAB
-----END PUBLIC KEY-----
";

    #[test]
    fn the_signed_token_form_round_trips_and_checks_its_key() {
        let key = PcrKey::from_pem(TEST_KEY).unwrap();
        let p = SealPolicy::SignedPcr11 {
            key: key.clone(),
            expected: vec![(7, [2; 32])],
        };
        let j = p.to_json();
        assert_eq!(j["kind"], json!(SIGNED_KIND));
        assert_eq!(j["signed"]["pcrs"], json!([11]));
        assert_eq!(SealPolicy::from_json(&j).unwrap(), p);
        assert_eq!(p.signing_key(), Some(&key));
        let d = p.describe();
        assert!(d.contains("signed by key"), "{d}");
        assert!(d.contains(&signed::short(&key.fingerprint())), "{d}");
        assert!(d.contains("7 (Secure Boot state and keys)"), "{d}");
        // A key swapped in without its fingerprint, or the other way round, is refused.
        let mut swapped = j.clone();
        swapped["signed"]["pkfp"] = json!(hex::encode(&[0u8; 32]));
        assert!(SealPolicy::from_json(&swapped).is_err());
        let mut bad_key = j.clone();
        bad_key["signed"]["pubkey"] = json!("3003020101");
        assert!(SealPolicy::from_json(&bad_key).is_err());
        // PCR 11 cannot be both signed and bound by value.
        let mut both = j.clone();
        both["pcrs"]["11"] = json!(hex::encode(&[0u8; 32]));
        assert!(SealPolicy::from_json(&both).is_err());
        let mut other_pcr = j;
        other_pcr["signed"]["pcrs"] = json!([4]);
        assert!(SealPolicy::from_json(&other_pcr).is_err());
    }
}
