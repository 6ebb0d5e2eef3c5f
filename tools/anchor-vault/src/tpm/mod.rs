// SPDX-License-Identifier: GPL-3.0-or-later
//! The TPM 2.0 side of the vault, on tss-esapi.
//!
//! Objects used (docs/ARCHITECTURE.md lists them too):
//! - a storage root key: ECC P-256 restricted decryption primary in the owner hierarchy,
//!   re-created from its template whenever needed and flushed after (never persisted);
//! - the sealed object: a keyed-hash object holding the 32-byte vault secret, its
//!   public/private blobs kept in the vault's LUKS2 token, loaded under the SRK only to
//!   unseal; DA-protected (no `noDA`), no `userWithAuth` (only its policy opens it);
//! - sessions: a salted HMAC session (create: the secret travels encrypted) and a salted
//!   policy session with response encryption (unseal: it comes back encrypted);
//! - PCR [`policy::LOCK_PCR`], extended once the vault is open;
//! - the dictionary-attack settings and, when nobody owns it yet, the lockout
//!   authorization (derived from the recovery key);
//! - two NV indices anchoring the audit log ([`nv`]).
//!
//! Without a resource manager (swtpm in tests) every transient object and session is
//! flushed, also on error paths.

pub mod nv;
pub mod policy;
pub mod signed;

use core::fmt;
use std::path::Path;
use std::str::FromStr;

use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::{CapabilityType, PropertyTag, SessionType, Tss2ResponseCodeKind};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PcrHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, CapabilityData, Digest, DigestValues, EccParameter, EccPoint, KeyedHashScheme, Private,
    Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData,
    SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

use crate::keys::Secret;
use crate::sys::esys::{RawError, RawEsys};
pub use policy::{PolicyError, SealPolicy};
pub use signed::{Approval, PcrKey, PcrSignature, SignedError};

/// Where to look for a TPM when none is named.
pub const DEVICES: [&str; 2] = ["/dev/tpmrm0", "/dev/tpm0"];

/// Everything that can go wrong talking to the TPM.
#[derive(Debug)]
pub enum TpmError {
    /// No TPM device exists.
    Absent,
    /// The TCTI string is not valid.
    BadTcti(String),
    /// Connecting failed.
    Connect(String, tss_esapi::Error),
    /// The authorization value (the passphrase) was wrong; the TPM counted it.
    AuthFail,
    /// The TPM is in dictionary-attack lockout.
    Lockout,
    /// The policy does not hold: PCRs differ from when the vault was sealed.
    PolicyFail,
    /// The owner hierarchy has a password: the SRK or NV indices cannot be made.
    OwnerAuth,
    /// Another TPM command failed.
    Command(&'static str, tss_esapi::Error),
    /// A raw command failed.
    Raw(RawError),
    /// The sealing policy failed.
    Policy(PolicyError),
    /// The sealed blobs in the token are damaged.
    Blob(&'static str),
    /// The TPM answered with a storage root key other than the one the vault was sealed
    /// under (another TPM, one cleared since, or someone between the machine and its TPM).
    SrkChanged,
    /// The running image's signed PCR 11 policy does not satisfy the vault's.
    Signed(SignedError),
}

impl fmt::Display for TpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpmError::Absent => f.write_str("no TPM found (no TPM device exists)"),
            TpmError::BadTcti(t) => write!(f, "TPM connection {t:?} is not a valid TCTI string"),
            TpmError::Connect(t, e) => write!(f, "cannot talk to the TPM at {t}: {e}"),
            TpmError::AuthFail => f.write_str("the TPM refused the passphrase"),
            TpmError::Lockout => f.write_str("the TPM is in dictionary-attack lockout"),
            TpmError::PolicyFail => f.write_str(
                "the TPM refused: the boot chain differs from when the vault was sealed",
            ),
            TpmError::OwnerAuth => {
                f.write_str("the TPM owner hierarchy has a password (someone else owns this TPM)")
            }
            TpmError::Command(op, e) => write!(f, "TPM {op}: {e}"),
            TpmError::Raw(e) => write!(f, "{e}"),
            TpmError::Policy(e) => write!(f, "{e}"),
            TpmError::Blob(why) => write!(f, "sealed key in the vault header: {why}"),
            TpmError::SrkChanged => f.write_str(
                "the TPM's storage root key is not the one the vault was sealed under \
                 (another TPM, this one cleared since, or something between this machine \
                 and its TPM answering for it); nothing was sent to it",
            ),
            TpmError::Signed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TpmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TpmError::Connect(_, e) | TpmError::Command(_, e) => Some(e),
            TpmError::Raw(e) => Some(e),
            TpmError::Policy(e) => Some(e),
            TpmError::Signed(e) => e.source(),
            _ => None,
        }
    }
}

impl From<PolicyError> for TpmError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Tpm(op, err) => classify(op, err),
            PolicyError::Signed(e) => TpmError::Signed(e),
            other => TpmError::Policy(other),
        }
    }
}

impl From<RawError> for TpmError {
    fn from(e: RawError) -> Self {
        match e {
            RawError::AuthFail => TpmError::AuthFail,
            RawError::Lockout => TpmError::Lockout,
            other => TpmError::Raw(other),
        }
    }
}

/// Sort a tss-esapi error into what the caller acts on.
pub fn classify(op: &'static str, e: tss_esapi::Error) -> TpmError {
    if let tss_esapi::Error::Tss2Error(rc) = e {
        match rc.kind() {
            Some(Tss2ResponseCodeKind::AuthFail | Tss2ResponseCodeKind::BadAuth) => {
                return TpmError::AuthFail
            }
            Some(Tss2ResponseCodeKind::Lockout) => return TpmError::Lockout,
            Some(Tss2ResponseCodeKind::PolicyFail | Tss2ResponseCodeKind::PcrChanged) => {
                return TpmError::PolicyFail
            }
            _ => {}
        }
    }
    TpmError::Command(op, e)
}

/// The TCTI to use: `explicit` if given, else the first TPM device that exists. A
/// `device:PATH` whose PATH does not exist is an absent TPM, as is finding none.
pub fn find(explicit: Option<&str>) -> Result<String, TpmError> {
    if let Some(t) = explicit {
        if let Some(path) = t.strip_prefix("device:") {
            if !Path::new(path).exists() {
                return Err(TpmError::Absent);
            }
        }
        return Ok(t.to_owned());
    }
    DEVICES
        .iter()
        .find(|d| Path::new(d).exists())
        .map(|d| format!("device:{d}"))
        .ok_or(TpmError::Absent)
}

/// The sealed object as stored in the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// TPM2B_PUBLIC, marshalled.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE contents.
    pub private: Vec<u8>,
    /// The TPM name of the storage root key it was sealed under (`None` in a token
    /// written before it was recorded: not checked then).
    pub srk_name: Option<Vec<u8>>,
}

/// The dictionary-attack state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaStatus {
    /// Failures counted now.
    pub failures: u32,
    /// Failures allowed before lockout.
    pub max_tries: u32,
    /// Seconds after which one failure is forgiven.
    pub recovery_s: u32,
    /// Seconds to wait after a failed lockout authorization.
    pub lockout_recovery_s: u32,
    /// The TPM refuses DA-protected authorizations now.
    pub in_lockout: bool,
    /// The lockout hierarchy has an authorization value.
    pub lockout_auth_set: bool,
    /// The owner hierarchy has an authorization value.
    pub owner_auth_set: bool,
}

impl DaStatus {
    /// Tries left before lockout.
    pub fn tries_left(&self) -> u32 {
        if self.in_lockout {
            0
        } else {
            self.max_tries.saturating_sub(self.failures)
        }
    }
}

/// Bytes of TPM2_StirRandom's input that overwrite an unseal response in ESYS's buffer:
/// a 10-byte header, 2 size bytes and 128 bytes (the most a TPM's StirRandom takes)
/// cover the response header, its parameter size and a sealed secret of up to 122 bytes.
const SCRUB_LEN: usize = 128;

/// An open TPM connection.
pub struct Tpm {
    ctx: Context,
    tcti: String,
}

impl fmt::Debug for Tpm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tpm({})", self.tcti)
    }
}

fn srk_template() -> Result<Public, tss_esapi::Error> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    let zero = EccParameter::try_from(vec![0u8; 32])?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::new(zero.clone(), zero))
        .build()
}

fn sealed_template(policy_digest: Digest) -> Result<Public, tss_esapi::Error> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(false)
        .with_admin_with_policy(true)
        .with_no_da(false)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_auth_policy(policy_digest)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

impl Tpm {
    /// Connect to the TPM named by `tcti` (see [`find`]).
    pub fn open(tcti: &str) -> Result<Tpm, TpmError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|_| TpmError::BadTcti(tcti.to_owned()))?;
        let ctx = Context::new(conf).map_err(|e| TpmError::Connect(tcti.to_owned(), e))?;
        Ok(Tpm {
            ctx,
            tcti: tcti.to_owned(),
        })
    }

    /// The TCTI string this connection uses.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Close this connection and open a raw one on the same TPM (for the commands
    /// tss-esapi lacks); reopen with [`Tpm::open`] afterwards if needed.
    pub fn into_raw(self) -> Result<RawEsys, TpmError> {
        let tcti = self.tcti.clone();
        drop(self);
        RawEsys::open(&tcti).map_err(TpmError::from)
    }

    /// Direct access for the submodules.
    pub(crate) fn ctx(&mut self) -> &mut Context {
        &mut self.ctx
    }

    fn flush(&mut self, handle: ObjectHandle) {
        // Best effort: a handle the TPM already dropped is not an error worth reporting.
        let _ = self.ctx.flush_context(handle);
    }

    /// The TPM name of `key` (as ESYS computed it from the public part it was given).
    fn name_of(&mut self, key: KeyHandle) -> Result<Vec<u8>, TpmError> {
        self.ctx
            .tr_get_name(key.into())
            .map(|n| n.value().to_vec())
            .map_err(|e| classify("TR_GetName", e))
    }

    fn srk(&mut self) -> Result<KeyHandle, TpmError> {
        let template = srk_template().map_err(|e| TpmError::Command("SRK template", e))?;
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map(|r| r.key_handle)
            .map_err(|e| match classify("CreatePrimary", e) {
                TpmError::AuthFail => TpmError::OwnerAuth,
                other => other,
            })
    }

    fn salted_session(
        &mut self,
        srk: KeyHandle,
        kind: SessionType,
    ) -> Result<AuthSession, TpmError> {
        let session = self
            .ctx
            .execute_without_session(|c| {
                c.start_auth_session(
                    Some(srk),
                    None,
                    None,
                    kind,
                    SymmetricDefinition::AES_128_CFB,
                    HashingAlgorithm::Sha256,
                )
            })
            .map_err(|e| classify("StartAuthSession", e))?
            .ok_or(TpmError::Blob("the TPM returned no session"))?;
        let (attrs, mask) = SessionAttributesBuilder::new()
            .with_continue_session(true)
            .with_decrypt(kind == SessionType::Hmac)
            .with_encrypt(true)
            .build();
        if let Err(e) = self.ctx.tr_sess_set_attributes(session, attrs, mask) {
            self.flush(SessionHandle::from(session).into());
            return Err(classify("TRSess_SetAttributes", e));
        }
        Ok(session)
    }

    /// The digest of `policy` (computed in a trial session).
    pub fn policy_digest(&mut self, policy: &SealPolicy) -> Result<Digest, TpmError> {
        let session = self
            .ctx
            .execute_without_session(|c| {
                c.start_auth_session(
                    None,
                    None,
                    None,
                    SessionType::Trial,
                    SymmetricDefinition::AES_128_CFB,
                    HashingAlgorithm::Sha256,
                )
            })
            .map_err(|e| classify("StartAuthSession(trial)", e))?
            .ok_or(TpmError::Blob("the TPM returned no session"))?;
        let result = (|| {
            let ps = PolicySession::try_from(session)
                .map_err(|e| TpmError::Command("trial session", e))?;
            self.ctx
                .execute_without_session(|c| policy.run(c, ps, true, None))?;
            self.ctx
                .execute_without_session(|c| c.policy_get_digest(ps))
                .map_err(|e| classify("PolicyGetDigest", e))
        })();
        self.flush(SessionHandle::from(session).into());
        result
    }

    /// Seal `secret` under `policy` with authorization value `auth`.
    pub fn seal(
        &mut self,
        secret: &[u8],
        auth: &[u8],
        policy: &SealPolicy,
    ) -> Result<SealedBlob, TpmError> {
        let digest = self.policy_digest(policy)?;
        let template = sealed_template(digest).map_err(|e| TpmError::Command("template", e))?;
        let srk = self.srk()?;
        let result = (|| {
            let session = self.salted_session(srk, SessionType::Hmac)?;
            let data = SensitiveData::try_from(secret.to_vec())
                .map_err(|e| TpmError::Command("sensitive data", e))?;
            let auth = Auth::try_from(auth.to_vec()).map_err(|e| TpmError::Command("auth", e))?;
            let created = self.ctx.execute_with_session(Some(session), |c| {
                c.create(srk, template, Some(auth), Some(data), None, None)
            });
            self.flush(SessionHandle::from(session).into());
            let created = created.map_err(|e| classify("Create", e))?;
            let public = created
                .out_public
                .marshall()
                .map_err(|e| TpmError::Command("marshal public", e))?;
            Ok(SealedBlob {
                public,
                private: created.out_private.value().to_vec(),
                srk_name: Some(self.name_of(srk)?),
            })
        })();
        self.flush(srk.into());
        result
    }

    /// The TPM's approval of the running image's signed PCR 11 policy, for a signed
    /// `policy` (`None` for a plain PCR policy, which needs none).
    pub fn approve(
        &mut self,
        policy: &SealPolicy,
        sigs: &PcrSignature,
    ) -> Result<Option<Approval>, TpmError> {
        let Some(key) = policy.signing_key() else {
            return Ok(None);
        };
        let now = policy::read_pcrs(&mut self.ctx, &[signed::SIGNED_PCR])?;
        let (_, pcr11) = now.first().ok_or(PolicyError::ShortRead)?;
        signed::approve(&mut self.ctx, key, sigs, pcr11)
            .map(Some)
            .map_err(TpmError::Signed)
    }

    /// Unseal `blob` with authorization value `auth`, if `policy` holds (a signed policy
    /// needs the TPM's `approval`, from [`Tpm::approve`]).
    pub fn unseal(
        &mut self,
        blob: &SealedBlob,
        auth: &[u8],
        policy: &SealPolicy,
        approval: Option<&Approval>,
    ) -> Result<Secret, TpmError> {
        let public =
            Public::unmarshall(&blob.public).map_err(|_| TpmError::Blob("public part damaged"))?;
        let private = Private::try_from(blob.private.clone())
            .map_err(|_| TpmError::Blob("private part damaged"))?;
        let srk = self.srk()?;
        let result = (|| {
            // Before anything is sent under it: a storage root key that is not the one
            // sealed under would receive the session's salt (and so the secret).
            if let Some(sealed_under) = &blob.srk_name {
                if self.name_of(srk)? != *sealed_under {
                    return Err(TpmError::SrkChanged);
                }
            }
            let object = self
                .ctx
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.load(srk, private, public)
                })
                .map_err(|e| match classify("Load", e) {
                    TpmError::Command(..) => TpmError::Blob(
                        "the TPM cannot load the sealed key (another TPM, or the TPM was cleared)",
                    ),
                    other => other,
                })?;
            let inner = (|| {
                let auth =
                    Auth::try_from(auth.to_vec()).map_err(|e| TpmError::Command("auth", e))?;
                self.ctx
                    .tr_set_auth(object.into(), auth)
                    .map_err(|e| classify("TR_SetAuth", e))?;
                let session = self.salted_session(srk, SessionType::Policy)?;
                let unsealed = (|| {
                    let ps = PolicySession::try_from(session)
                        .map_err(|e| TpmError::Command("policy session", e))?;
                    self.ctx
                        .execute_without_session(|c| policy.run(c, ps, false, approval))?;
                    self.ctx
                        .execute_with_session(Some(session), |c| c.unseal(object.into()))
                        .map_err(|e| classify("Unseal", e))
                })();
                self.flush(SessionHandle::from(session).into());
                if unsealed.is_ok() {
                    self.scrub_response();
                }
                let data = unsealed?;
                Ok(Zeroizing::new(data.value().to_vec()))
            })();
            self.flush(object.into());
            inner
        })();
        self.flush(srk.into());
        result
    }

    /// Overwrite the unsealed secret in ESYS's command/response buffer. ESYS decrypts
    /// the unseal response in place there, and the buffer is only overwritten by later
    /// commands as far as they reach, then freed unwiped when the context ends. A
    /// TPM2_StirRandom of [`SCRUB_LEN`] zero bytes is marshalled over the start of the
    /// buffer, past the response's secret, before it is sent (whatever the TPM answers;
    /// known bytes stirred in take nothing from its randomness).
    fn scrub_response(&mut self) {
        let Ok(zeros) = SensitiveData::try_from(vec![0u8; SCRUB_LEN]) else {
            return;
        };
        let _ = self.ctx.execute_without_session(|c| c.stir_random(zeros));
    }

    /// Which PCRs `policy` reads now differ from what it demands.
    pub fn changed_pcrs(&mut self, policy: &SealPolicy) -> Result<Vec<u8>, TpmError> {
        Ok(policy.changed(&mut self.ctx)?)
    }

    /// Extend PCR `pcr` (SHA-256 bank) with `digest`.
    pub fn extend_pcr(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        let handle =
            PcrHandle::try_from(u32::from(pcr)).map_err(|e| TpmError::Command("PCR handle", e))?;
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(digest.to_vec()).map_err(|e| TpmError::Command("digest", e))?,
        );
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.pcr_extend(handle, values)
            })
            .map_err(|e| classify("PCR_Extend", e))
    }

    /// The dictionary-attack state.
    pub fn da_status(&mut self) -> Result<DaStatus, TpmError> {
        let (data, _) = self
            .ctx
            .execute_without_session(|c| {
                c.get_capability(CapabilityType::TpmProperties, 0x200, 0x20)
            })
            .map_err(|e| classify("GetCapability", e))?;
        let CapabilityData::TpmProperties(list) = data else {
            return Err(TpmError::Blob("unexpected capability data"));
        };
        let get = |tag| list.find(tag).map_or(0, |p| p.value());
        let permanent = get(PropertyTag::Permanent);
        Ok(DaStatus {
            failures: get(PropertyTag::LockoutCounter),
            max_tries: get(PropertyTag::MaxAuthFail),
            recovery_s: get(PropertyTag::LockoutInterval),
            lockout_recovery_s: get(PropertyTag::LockoutRecovery),
            owner_auth_set: permanent & (1 << 0) != 0,
            lockout_auth_set: permanent & (1 << 2) != 0,
            in_lockout: permanent & (1 << 9) != 0,
        })
    }

    /// Set the lockout authorization (it must be empty now). The new value is the
    /// command's first parameter: it goes encrypted, in an HMAC session salted to the
    /// storage root key with parameter encryption (a password session sent it in the
    /// clear to anyone on the TPM's bus), as the sealed secret does.
    pub fn set_lockout_auth(&mut self, new: &[u8]) -> Result<(), TpmError> {
        let auth = Auth::try_from(new.to_vec()).map_err(|e| TpmError::Command("auth", e))?;
        let srk = self.srk()?;
        let result = (|| {
            let session = self.salted_session(srk, SessionType::Hmac)?;
            // The command has no response parameter to encrypt: decrypt only.
            let (attrs, mask) = SessionAttributesBuilder::new()
                .with_continue_session(true)
                .with_decrypt(true)
                .with_encrypt(false)
                .build();
            let changed = self
                .ctx
                .tr_sess_set_attributes(session, attrs, mask)
                .map_err(|e| classify("TRSess_SetAttributes", e))
                .and_then(|()| {
                    self.ctx
                        .execute_with_session(Some(session), |c| {
                            c.hierarchy_change_auth(tss_esapi::handles::AuthHandle::Lockout, auth)
                        })
                        .map_err(|e| classify("HierarchyChangeAuth(lockout)", e))
                });
            self.flush(SessionHandle::from(session).into());
            changed
        })();
        self.flush(srk.into());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_tcti_wins_and_none_found_is_absent() {
        assert_eq!(find(Some("swtpm:port=1")).unwrap(), "swtpm:port=1");
        assert!(matches!(
            find(Some("device:/nonexistent/tpmrm0")),
            Err(TpmError::Absent)
        ));
        if DEVICES.iter().all(|d| !Path::new(d).exists()) {
            assert!(matches!(find(None), Err(TpmError::Absent)));
        }
    }

    #[test]
    fn da_tries_left() {
        let mut s = DaStatus {
            failures: 2,
            max_tries: 3,
            recovery_s: 1,
            lockout_recovery_s: 1,
            in_lockout: false,
            lockout_auth_set: false,
            owner_auth_set: false,
        };
        assert_eq!(s.tries_left(), 1);
        s.in_lockout = true;
        assert_eq!(s.tries_left(), 0);
    }
}
