// SPDX-License-Identifier: GPL-3.0-or-later
//! Authenticode verification of a UKI against our Secure Boot db certificate: the same
//! question the firmware will ask at boot ("is this image signed by a key in db?"),
//! answered before an update is written, so that a tampered or foreign image never
//! reaches a slot.
//!
//! Accepted: a PKCS#7 SignedData (WIN_CERT revision 2.0) whose SpcIndirectData digest is
//! the image's SHA-256 Authenticode digest, whose signer is the trusted certificate
//! (issuer + serial) and whose RSA PKCS#1 v1.5 SHA-256 signature verifies with that
//! certificate's key, over the signed attributes (whose messageDigest must match the
//! SpcIndirectData) or, without signed attributes, over the SpcIndirectData itself.
//! Certificate chains are not followed: db holds the signing certificate itself
//! (docs/SIGNING.md).

use authenticode::{AttributeCertificateIterator, AuthenticodeSignature};
use cms::cert::IssuerAndSerialNumber;
use cms::signed_data::SignerIdentifier;
use const_oid::db::rfc5912::{ID_SHA_256, RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION};
use const_oid::db::rfc6268::ID_MESSAGE_DIGEST;
use der::{Decode, Encode};
use object::read::pe::PeFile64;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha2::{Digest, Sha256};
use std::fmt;
use x509_cert::Certificate;

/// Why an image is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The trusted certificate itself does not parse.
    BadTrust(String),
    /// Not a PE image.
    NotPe(String),
    /// No signature at all.
    Unsigned,
    /// The signature table or a signature does not parse.
    BadSignature(String),
    /// Signed, but the image bytes changed since (digest mismatch).
    Tampered,
    /// Signed by someone other than the trusted certificate.
    ForeignSigner,
    /// The RSA signature does not verify.
    BadRsa,
    /// A digest or signature algorithm other than SHA-256 / RSA.
    Algorithm,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::BadTrust(e) => write!(f, "the trusted certificate does not parse: {e}"),
            VerifyError::NotPe(e) => write!(f, "not an EFI image: {e}"),
            VerifyError::Unsigned => f.write_str("the image is not signed"),
            VerifyError::BadSignature(e) => write!(f, "the image's signature does not parse: {e}"),
            VerifyError::Tampered => {
                f.write_str("the image does not match its signature (modified after signing)")
            }
            VerifyError::ForeignSigner => {
                f.write_str("the image is signed by a key that is not our db key")
            }
            VerifyError::BadRsa => f.write_str("the image's signature does not verify"),
            VerifyError::Algorithm => f.write_str("the image is not signed with SHA-256/RSA"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// The certificate updates must be signed with (our db certificate, DER).
#[derive(Debug, Clone)]
pub struct Trust {
    cert: Certificate,
    key: RsaPublicKey,
}

impl Trust {
    /// From a DER X.509 certificate with an RSA key.
    pub fn from_der(der: &[u8]) -> Result<Trust, VerifyError> {
        let cert = Certificate::from_der(der).map_err(|e| VerifyError::BadTrust(e.to_string()))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| VerifyError::BadTrust(e.to_string()))?;
        let key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| VerifyError::BadTrust(format!("not an RSA key: {e}")))?;
        Ok(Trust { cert, key })
    }

    fn is_signer(&self, sid: &SignerIdentifier) -> bool {
        match sid {
            SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer,
                serial_number,
            }) => {
                *issuer == self.cert.tbs_certificate.issuer
                    && *serial_number == self.cert.tbs_certificate.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(_) => false,
        }
    }
}

/// Verify `image` against `trust`. Ok when at least one embedded signature is ours and
/// valid for these exact bytes.
pub fn verify(image: &[u8], trust: &Trust) -> Result<(), VerifyError> {
    let pe = PeFile64::parse(image).map_err(|e| VerifyError::NotPe(e.to_string()))?;
    let certs = AttributeCertificateIterator::new(&pe)
        .map_err(|e| VerifyError::BadSignature(e.to_string()))?
        .ok_or(VerifyError::Unsigned)?;
    let mut digest = Sha256::new();
    authenticode::authenticode_digest(&pe, &mut digest)
        .map_err(|e| VerifyError::NotPe(e.to_string()))?;
    let digest = digest.finalize();
    let mut first_error = VerifyError::Unsigned;
    for (i, cert) in certs.enumerate() {
        let result = cert
            .map_err(|e| VerifyError::BadSignature(e.to_string()))
            .and_then(|c| {
                c.get_authenticode_signature()
                    .map_err(|e| VerifyError::BadSignature(e.to_string()))
            })
            .and_then(|sig| check_one(&sig, &digest, trust));
        match result {
            Ok(()) => return Ok(()),
            Err(e) if i == 0 => first_error = e,
            Err(_) => {}
        }
    }
    Err(first_error)
}

fn check_one(sig: &AuthenticodeSignature, digest: &[u8], trust: &Trust) -> Result<(), VerifyError> {
    if sig.digest_algorithm().oid != ID_SHA_256 {
        return Err(VerifyError::Algorithm);
    }
    if sig.digest() != digest {
        return Err(VerifyError::Tampered);
    }
    let signer = sig.signer_info();
    if !trust.is_signer(&signer.sid) {
        return Err(VerifyError::ForeignSigner);
    }
    if signer.digest_alg.oid != ID_SHA_256 {
        return Err(VerifyError::Algorithm);
    }
    let alg = signer.signature_algorithm.oid;
    if alg != RSA_ENCRYPTION && alg != SHA_256_WITH_RSA_ENCRYPTION {
        return Err(VerifyError::Algorithm);
    }
    let content = sig
        .encapsulated_content()
        .ok_or_else(|| VerifyError::BadSignature("no SpcIndirectData".into()))?;
    let signed: Vec<u8> = match &signer.signed_attrs {
        Some(attrs) => {
            let want = Sha256::digest(content);
            let md = attrs
                .iter()
                .find(|a| a.oid == ID_MESSAGE_DIGEST)
                .and_then(|a| a.values.iter().next())
                .ok_or_else(|| VerifyError::BadSignature("no messageDigest".into()))?;
            let md = der::asn1::OctetStringRef::try_from(md)
                .map_err(|e| VerifyError::BadSignature(e.to_string()))?;
            if md.as_bytes() != want.as_slice() {
                return Err(VerifyError::Tampered);
            }
            attrs
                .to_der()
                .map_err(|e| VerifyError::BadSignature(e.to_string()))?
        }
        None => content.to_vec(),
    };
    let rsa_sig = Signature::try_from(sig.signature()).map_err(|_| VerifyError::BadRsa)?;
    VerifyingKey::<Sha256>::new(trust.key.clone())
        .verify(&signed, &rsa_sig)
        .map_err(|_| VerifyError::BadRsa)
}
