// SPDX-License-Identifier: GPL-3.0-or-later
//! The signed PCR 11 policy: the `systemd-cryptenroll --tpm2-public-key` model.
//!
//! The vault secret is sealed under `TPM2_PolicyAuthorize(our PCR public key)`: the
//! sealed object names our key, not a PCR 11 value. Every UKI we build carries our
//! signature over the TPM2_PolicyPCR digest of the PCR 11 it measures (`.pcrsig`, in
//! systemd-measure's JSON), and systemd-stub hands that file to the initramfs as
//! [`SIGNATURE_FILE`]. At unlock:
//!
//! 1. read PCR 11 and pick the `.pcrsig` entry (SHA-256 bank, PCRs = [11]) whose policy
//!    digest is the one this PCR 11 gives ([`anchor_update::pcr::policy_digest`]);
//! 2. load our public key (from the LUKS2 token, never from the running image) into the
//!    owner hierarchy and have the TPM check the signature (TPM2_VerifySignature): the
//!    TPM returns a ticket only for a signature by that key;
//! 3. in the policy session, PolicyPCR(sha256:11) then PolicyAuthorize(digest, ticket).
//!
//! The key is loaded into the owner hierarchy, not the null one: a ticket made with a key
//! of the null hierarchy is a NULL ticket, which PolicyAuthorize refuses.

use core::fmt;
use std::path::{Path, PathBuf};

use anchor_update::pcr::{self, SignedPolicy};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_VERIFIED};
use tss_esapi::constants::Tss2ResponseCodeKind;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::structures::{
    Digest, Name, Public, PublicBuilder, PublicKeyRsa, PublicRsaParametersBuilder, RsaExponent,
    RsaScheme, RsaSignature, Signature, SymmetricDefinitionObject, VerifiedTicket,
};
use tss_esapi::tss2_esys::{TPM2B_DIGEST, TPMT_TK_VERIFIED};
use tss_esapi::Context;

use crate::hex;

/// Where systemd-stub puts the running UKI's `.pcrsig` for the initramfs.
pub const SIGNATURE_FILE: &str = "/.extra/tpm2-pcr-signature.json";
/// Where systemd-stub puts the running UKI's `.pcrpkey` (the key `vault init` seals to).
pub const PUBLIC_KEY_FILE: &str = "/.extra/tpm2-pcr-public-key.pem";
/// The PCR whose value the signature covers.
pub const SIGNED_PCR: u8 = 11;

/// Why a signed PCR 11 policy cannot be used.
#[derive(Debug)]
pub enum SignedError {
    /// The public key file cannot be read.
    KeyUnreadable(PathBuf, std::io::Error),
    /// The public key is not an RSA (2048, 3072 or 4096 bit) SubjectPublicKeyInfo.
    BadKey(&'static str),
    /// The running image handed over no signed policy.
    Missing(PathBuf),
    /// The signed policy file cannot be read or parsed.
    Malformed(PathBuf, String),
    /// The file holds no SHA-256 entry for exactly PCR 11.
    NoEntry(PathBuf),
    /// No entry's policy is the one this PCR 11 gives (an unsigned image).
    NotCovered { file: PathBuf, pcr11: [u8; 32] },
    /// The TPM found no entry signed by the vault's key (a foreign image).
    NotOurKey {
        /// The fingerprint the entry claims.
        theirs: [u8; 32],
        /// The key the vault was sealed to.
        ours: [u8; 32],
    },
    /// A TPM command failed.
    Tpm(&'static str, tss_esapi::Error),
}

/// The first 16 hex digits of a fingerprint, for messages.
pub fn short(fp: &[u8; 32]) -> String {
    hex::encode(fp.get(..8).unwrap_or(fp))
}

impl fmt::Display for SignedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignedError::KeyUnreadable(p, e) => {
                write!(f, "PCR policy public key {}: {e}", p.display())
            }
            SignedError::BadKey(why) => write!(f, "PCR policy public key: {why}"),
            SignedError::Missing(p) => write!(
                f,
                "the running system image carries no signed PCR 11 policy ({} is missing): \
                 it was not booted from a signed Anchor OS image",
                p.display()
            ),
            SignedError::Malformed(p, why) => write!(
                f,
                "the running system image's signed PCR 11 policy {} is unreadable: {why}",
                p.display()
            ),
            SignedError::NoEntry(p) => write!(
                f,
                "the running system image's signed policy {} has no SHA-256 entry for PCR 11",
                p.display()
            ),
            SignedError::NotCovered { file, pcr11 } => write!(
                f,
                "PCR 11 (the unified kernel image) measures {}, and no policy signed in {} \
                 covers it: this system image is not one that was signed for this vault",
                hex::encode(pcr11),
                file.display()
            ),
            SignedError::NotOurKey { theirs, ours } => write!(
                f,
                "the running system image's PCR 11 policy is signed by key {}, not by the \
                 key this vault trusts ({}): a system image signed by someone else",
                short(theirs),
                short(ours)
            ),
            SignedError::Tpm(op, e) => write!(f, "TPM {op}: {e}"),
        }
    }
}

impl std::error::Error for SignedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SignedError::KeyUnreadable(_, e) => Some(e),
            SignedError::Tpm(_, e) => Some(e),
            _ => None,
        }
    }
}

impl SignedError {
    /// A short reason for the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            SignedError::Missing(_) => "no-signed-pcr-policy",
            SignedError::Malformed(..) | SignedError::NoEntry(_) => "bad-signed-pcr-policy",
            SignedError::NotCovered { .. } => "pcr11-not-signed",
            SignedError::NotOurKey { .. } => "pcr11-signed-by-foreign-key",
            SignedError::KeyUnreadable(..) | SignedError::BadKey(_) | SignedError::Tpm(..) => {
                "signed-pcr-policy-error"
            }
        }
    }
}

/// The RSA public key that signs PCR 11 policies, as recorded in the vault's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrKey {
    der: Vec<u8>,
    modulus: Vec<u8>,
    exponent: u32,
}

impl PcrKey {
    /// From a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<PcrKey, SignedError> {
        let key = RsaPublicKey::from_public_key_der(der)
            .map_err(|_| SignedError::BadKey("not an RSA SubjectPublicKeyInfo"))?;
        let modulus = key.n().to_bytes_be();
        if ![256, 384, 512].contains(&modulus.len()) {
            return Err(SignedError::BadKey(
                "the RSA modulus is not 2048, 3072 or 4096 bits",
            ));
        }
        let e = key.e().to_bytes_be();
        if e.len() > 4 {
            return Err(SignedError::BadKey("the RSA exponent does not fit 32 bits"));
        }
        let exponent = e.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        Ok(PcrKey {
            der: der.to_vec(),
            modulus,
            exponent,
        })
    }

    /// From PEM text (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(text: &str) -> Result<PcrKey, SignedError> {
        let der = pcr::pem_public_key_der(text)
            .map_err(|_| SignedError::BadKey("not a PEM PUBLIC KEY block"))?;
        PcrKey::from_der(&der)
    }

    /// Read a PEM file.
    pub fn read(path: &Path) -> Result<PcrKey, SignedError> {
        // A regular file of at most 1 MiB (a PEM key is a few hundred bytes): a FIFO or
        // a device is refused, not waited on or read without bound.
        let bytes = anchor_update::esp::read_regular(path, 1 << 20)
            .map_err(|e| SignedError::KeyUnreadable(path.to_owned(), e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            SignedError::KeyUnreadable(
                path.to_owned(),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
            )
        })?;
        PcrKey::from_pem(&text)
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER: systemd's `pkfp`.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// The TPM object for this key: unrestricted RSA signing key, null scheme (any
    /// signature scheme may be checked with it), no symmetric part. Its Name goes into
    /// the sealed policy, so this template never changes.
    fn public(&self) -> Result<Public, tss_esapi::Error> {
        let attrs = ObjectAttributesBuilder::new()
            .with_user_with_auth(true)
            .with_sign_encrypt(true)
            .with_decrypt(false)
            .build()?;
        let bits = match self.modulus.len() {
            256 => RsaKeyBits::Rsa2048,
            384 => RsaKeyBits::Rsa3072,
            _ => RsaKeyBits::Rsa4096,
        };
        // 65537 is the TPM's default exponent and encoded as 0.
        let exponent = if self.exponent == 65537 {
            RsaExponent::default()
        } else {
            RsaExponent::create(self.exponent)?
        };
        let params = PublicRsaParametersBuilder::new()
            .with_symmetric(SymmetricDefinitionObject::Null)
            .with_scheme(RsaScheme::Null)
            .with_key_bits(bits)
            .with_exponent(exponent)
            .with_is_signing_key(true)
            .with_is_decryption_key(false)
            .with_restricted(false)
            .build()?;
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Rsa)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attrs)
            .with_rsa_parameters(params)
            .with_rsa_unique_identifier(PublicKeyRsa::try_from(self.modulus.clone())?)
            .build()
    }

    /// Load into the owner hierarchy (tickets from the null hierarchy are NULL tickets).
    fn load(&self, ctx: &mut Context) -> Result<KeyHandle, SignedError> {
        let public = self
            .public()
            .map_err(|e| SignedError::Tpm("PCR key template", e))?;
        ctx.execute_without_session(|c| c.load_external_public(public, Hierarchy::Owner))
            .map_err(|e| SignedError::Tpm("LoadExternal(PCR key)", e))
    }

    /// The key's TPM Name (what PolicyAuthorize binds to).
    pub fn name(&self, ctx: &mut Context) -> Result<Name, SignedError> {
        let handle = self.load(ctx)?;
        let name = ctx
            .tr_get_name(handle.into())
            .map_err(|e| SignedError::Tpm("TR_GetName(PCR key)", e));
        let _ = ctx.flush_context(handle.into());
        name
    }
}

/// The running image's signed PCR policies (`.pcrsig`), as read at unlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcrSignature {
    /// Parsed entries (SHA-256 bank).
    Entries(PathBuf, Vec<SignedPolicy>),
    /// The file does not exist.
    Missing(PathBuf),
    /// The file exists but cannot be read or parsed.
    Malformed(PathBuf, String),
}

impl PcrSignature {
    /// Read `path` (at most 1 MiB).
    pub fn read(path: &Path) -> PcrSignature {
        // A regular file of at most 1 MiB: a FIFO or a device is refused, not waited on
        // or read without bound.
        let text = match anchor_update::esp::read_regular(path, 1 << 20) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return PcrSignature::Missing(path.to_owned())
            }
            Err(e) => return PcrSignature::Malformed(path.to_owned(), e.to_string()),
        };
        let Ok(text) = String::from_utf8(text) else {
            return PcrSignature::Malformed(path.to_owned(), "not UTF-8".into());
        };
        match pcr::parse_pcrsig(&text) {
            Ok(list) => PcrSignature::Entries(path.to_owned(), list),
            Err(e) => PcrSignature::Malformed(path.to_owned(), e.to_string()),
        }
    }
}

/// What the TPM granted: a ticket saying our key signed `policy`. Valid until the owner
/// hierarchy changes (TPM clear); used for every passphrase attempt of one unlock.
#[derive(Debug, Clone)]
pub struct Approval {
    policy: [u8; 32],
    name: Name,
    ticket: TPMT_TK_VERIFIED,
}

impl Approval {
    /// The approved PolicyPCR digest.
    pub fn policy(&self) -> &[u8; 32] {
        &self.policy
    }

    pub(crate) fn parts(&self) -> Result<(Digest, Name, VerifiedTicket), tss_esapi::Error> {
        Ok((
            Digest::try_from(self.policy.to_vec())?,
            self.name.clone(),
            VerifiedTicket::try_from(self.ticket)?,
        ))
    }
}

/// The ticket a trial session's PolicyAuthorize takes (the TPM does not check it there).
pub(crate) fn null_ticket() -> Result<VerifiedTicket, tss_esapi::Error> {
    VerifiedTicket::try_from(TPMT_TK_VERIFIED {
        tag: TPM2_ST_VERIFIED,
        hierarchy: TPM2_RH_NULL,
        digest: TPM2B_DIGEST {
            size: 0,
            buffer: [0; 64],
        },
    })
}

/// Find the entry covering `pcr11` and have the TPM verify it under `key`.
pub fn approve(
    ctx: &mut Context,
    key: &PcrKey,
    sigs: &PcrSignature,
    pcr11: &[u8; 32],
) -> Result<Approval, SignedError> {
    let (file, entries) = match sigs {
        PcrSignature::Entries(f, e) => (f, e),
        PcrSignature::Missing(f) => return Err(SignedError::Missing(f.clone())),
        PcrSignature::Malformed(f, why) => {
            return Err(SignedError::Malformed(f.clone(), why.clone()))
        }
    };
    let for_pcr11: Vec<&SignedPolicy> = entries
        .iter()
        .filter(|e| e.pcrs == [u32::from(SIGNED_PCR)])
        .collect();
    if for_pcr11.is_empty() {
        return Err(SignedError::NoEntry(file.clone()));
    }
    let want = pcr::policy_digest(pcr11);
    let covering: Vec<&&SignedPolicy> = for_pcr11.iter().filter(|e| e.policy == want).collect();
    let Some(first) = covering.first() else {
        return Err(SignedError::NotCovered {
            file: file.clone(),
            pcr11: *pcr11,
        });
    };
    let handle = key.load(ctx)?;
    let result = (|| {
        let name = ctx
            .tr_get_name(handle.into())
            .map_err(|e| SignedError::Tpm("TR_GetName(PCR key)", e))?;
        let digest = Digest::try_from(Sha256::digest(want).to_vec())
            .map_err(|e| SignedError::Tpm("policy digest", e))?;
        // The TPM is the judge: an entry claiming our fingerprint is tried like any other.
        for entry in &covering {
            let Ok(sig) = PublicKeyRsa::try_from(entry.signature.clone()) else {
                continue;
            };
            let sig = RsaSignature::create(HashingAlgorithm::Sha256, sig)
                .map_err(|e| SignedError::Tpm("signature", e))?;
            match ctx.execute_without_session(|c| {
                c.verify_signature(handle, digest.clone(), Signature::RsaSsa(sig))
            }) {
                Ok(ticket) => {
                    let ticket = TPMT_TK_VERIFIED::try_from(ticket)
                        .map_err(|e| SignedError::Tpm("VerifySignature ticket", e))?;
                    return Ok(Approval {
                        policy: want,
                        name,
                        ticket,
                    });
                }
                Err(e) if refused_signature(&e) => {}
                Err(e) => return Err(SignedError::Tpm("VerifySignature", e)),
            }
        }
        Err(SignedError::NotOurKey {
            theirs: first.key_fingerprint,
            ours: key.fingerprint(),
        })
    })();
    let _ = ctx.flush_context(handle.into());
    result
}

/// The TPM's answer to a signature that does not verify under the key (or does not fit it).
fn refused_signature(e: &tss_esapi::Error) -> bool {
    let tss_esapi::Error::Tss2Error(rc) = e else {
        return false;
    };
    matches!(
        rc.kind(),
        Some(
            Tss2ResponseCodeKind::Signature
                | Tss2ResponseCodeKind::Size
                | Tss2ResponseCodeKind::Value
                | Tss2ResponseCodeKind::Scheme
                | Tss2ResponseCodeKind::KeySize
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_bad_signature_file_is_named() {
        let dir = std::env::temp_dir().join(format!("anchor-vault-signed-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let missing = dir.join("none.json");
        assert_eq!(
            PcrSignature::read(&missing),
            PcrSignature::Missing(missing.clone())
        );
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{\"sha256\": 3}").unwrap();
        assert!(matches!(
            PcrSignature::read(&bad),
            PcrSignature::Malformed(..)
        ));
        let e = SignedError::Missing(missing.clone());
        assert!(e.to_string().contains("none.json is missing"), "{e}");
        assert_eq!(e.reason(), "no-signed-pcr-policy");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The signature file (`--pcr-signature`) and the public key (`--pcr-public-key`)
    /// are read only if they are regular files: a FIFO is refused, not waited on or read
    /// (it blocked until a writer came, and a device like /dev/zero was read without
    /// bound before the 1 MiB check). The FIFO here is fed, so the old read returned.
    #[test]
    fn a_signature_or_key_that_is_not_a_regular_file_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = anchor_testkit::Fifo::fed(&dir.path().join("sig.fifo"), b"{}");
        let path = fifo.path().to_owned();
        let sig = PcrSignature::read(&path);
        let key = PcrKey::read(&path).map(|_| ()).unwrap_err().to_string();
        drop(fifo);
        match sig {
            PcrSignature::Malformed(p, why) => {
                assert_eq!(p, path);
                assert!(why.contains("not a regular file"), "{why}");
            }
            other => panic!("a fifo was read: {other:?}"),
        }
        assert!(
            key.contains("sig.fifo") && key.contains("not a regular file"),
            "{key}"
        );
    }

    #[test]
    fn keys_must_be_rsa_public_keys() {
        assert!(matches!(
            PcrKey::from_pem("not a key"),
            Err(SignedError::BadKey(_))
        ));
        assert!(matches!(
            PcrKey::from_der(&[0x30, 0x03, 0x02, 0x01, 0x01]),
            Err(SignedError::BadKey(_))
        ));
    }
}
