// SPDX-License-Identifier: GPL-3.0-or-later
//! The vault's LUKS2 token: everything needed to open keyslot 0 besides the TPM and the
//! passphrase. Nothing in it is secret: the sealed blob only loads in this TPM, the salt
//! only matters together with the secret the TPM releases.

use core::fmt;

use serde_json::{json, Value};

use crate::hex;
use crate::luks::{RECOVERY_SLOT, TOKEN_TYPE, TPM_SLOT};
use crate::tpm::nv::Indices;
use crate::tpm::{PolicyError, SealPolicy, SealedBlob};

/// Token format version.
pub const VERSION: u64 = 1;

/// How the two factors become the keyslot passphrase (recorded for readers).
pub const COMBINE: &str =
    "keyslot = HKDF-SHA256(ikm = tpm_secret || passphrase, salt, info = 'anchor-vault v1 luks keyslot'); \
     tpm auth = HMAC-SHA256(salt, 'anchor-vault v1 tpm-auth' || 0 || passphrase)";

/// The audit log's anchor: the NV indices (for people reading the header; the
/// verifier always uses the fixed indices, so a rewritten token cannot point elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditNv {
    pub indices: Indices,
}

/// The parsed token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultToken {
    pub blob: SealedBlob,
    pub policy: SealPolicy,
    pub salt: Vec<u8>,
    pub audit: Option<AuditNv>,
}

/// A token that cannot be read.
#[derive(Debug)]
pub enum TokenError {
    /// A field is missing or malformed.
    Field(&'static str),
    /// The sealing policy is not understood.
    Policy(PolicyError),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Field(k) => write!(f, "vault token field {k:?} is missing or malformed"),
            TokenError::Policy(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TokenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenError::Policy(e) => Some(e),
            TokenError::Field(_) => None,
        }
    }
}

fn bytes(v: &Value, key: &'static str) -> Result<Vec<u8>, TokenError> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(hex::decode)
        .ok_or(TokenError::Field(key))
}

fn number(v: &Value, key: &'static str) -> Result<u64, TokenError> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or(TokenError::Field(key))
}

impl VaultToken {
    /// The JSON stored in the LUKS2 header.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "type": TOKEN_TYPE,
            "keyslots": [TPM_SLOT.to_string()],
            "version": VERSION,
            "srk": "ecc-nist-p256 primary, owner hierarchy, TCG SRK template",
            "tpm2_public": hex::encode(&self.blob.public),
            "tpm2_private": hex::encode(&self.blob.private),
            "policy": self.policy.to_json(),
            "salt": hex::encode(&self.salt),
            "combine": COMBINE,
            "recovery_keyslot": RECOVERY_SLOT,
        });
        if let (Some(n), Some(obj)) = (&self.blob.srk_name, v.as_object_mut()) {
            obj.insert("srk_name".into(), json!(hex::encode(n)));
        }
        if let (Some(a), Some(obj)) = (self.audit, v.as_object_mut()) {
            obj.insert(
                "audit_nv".into(),
                json!({"counter": a.indices.counter, "head": a.indices.head}),
            );
        }
        v
    }

    /// Read the stored JSON.
    pub fn from_json(v: &Value) -> Result<VaultToken, TokenError> {
        if v.get("type").and_then(Value::as_str) != Some(TOKEN_TYPE) {
            return Err(TokenError::Field("type"));
        }
        if number(v, "version")? != VERSION {
            return Err(TokenError::Field("version"));
        }
        let policy = SealPolicy::from_json(v.get("policy").ok_or(TokenError::Field("policy"))?)
            .map_err(TokenError::Policy)?;
        let audit = match v.get("audit_nv") {
            None => None,
            Some(a) => {
                let idx = |k| {
                    number(a, k)
                        .and_then(|n| u32::try_from(n).map_err(|_| TokenError::Field("audit_nv")))
                };
                Some(AuditNv {
                    indices: Indices {
                        counter: idx("counter")?,
                        head: idx("head")?,
                    },
                })
            }
        };
        Ok(VaultToken {
            blob: SealedBlob {
                public: bytes(v, "tpm2_public")?,
                private: bytes(v, "tpm2_private")?,
                srk_name: match v.get("srk_name") {
                    None => None,
                    Some(_) => Some(bytes(v, "srk_name")?),
                },
            },
            policy,
            salt: bytes(v, "salt")?,
            audit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_round_trips() {
        let t = VaultToken {
            blob: SealedBlob {
                public: vec![1, 2, 3],
                private: vec![4, 5],
                srk_name: Some(vec![0, 11, 7]),
            },
            policy: SealPolicy::Pcr {
                expected: vec![(7, [9; 32])],
            },
            salt: vec![6; 32],
            audit: Some(AuditNv {
                indices: Indices::default(),
            }),
        };
        let j = t.to_json();
        assert_eq!(j["keyslots"], json!(["0"]));
        assert_eq!(VaultToken::from_json(&j).unwrap(), t);
        let mut bad = j.clone();
        bad["salt"] = json!("xyz");
        assert!(matches!(
            VaultToken::from_json(&bad),
            Err(TokenError::Field("salt"))
        ));
        let mut older = j.clone();
        older.as_object_mut().unwrap().remove("srk_name");
        assert_eq!(VaultToken::from_json(&older).unwrap().blob.srk_name, None);
        let mut newer = j;
        newer["version"] = json!(2);
        assert!(VaultToken::from_json(&newer).is_err());
    }
}
