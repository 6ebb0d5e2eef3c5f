// SPDX-License-Identifier: GPL-3.0-or-later
//! Key material and how the two factors are combined (docs/ARCHITECTURE.md, "Vault").
//!
//! - `tpm_secret`: 32 random bytes, sealed in the TPM (PCR policy + PolicyAuthValue).
//! - The sealed object's authorization value is `HMAC-SHA256(salt, "anchor-vault v1
//!   tpm-auth" || 0 || passphrase)`: the TPM itself checks the passphrase, so every wrong
//!   guess counts against its dictionary-attack lockout.
//! - The LUKS2 keyslot passphrase is `HKDF-SHA256(ikm = tpm_secret || passphrase, salt,
//!   info = "anchor-vault v1 luks keyslot")`: opening the disk needs both the secret
//!   only this TPM releases (in the right boot state) and the passphrase, stretched again
//!   by the keyslot's argon2id.
//! - The recovery key: 128 random bits shown once as 8 groups of 4 hex digits; its
//!   canonical text is the passphrase of its own keyslot (so plain `cryptsetup open`
//!   takes it too) and keys the TPM lockout authorization.
//!
//! Everything secret lives in `Zeroizing` buffers and is wiped when dropped.

use core::fmt;
use std::io::Read;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Bytes of the sealed secret.
pub const TPM_SECRET_LEN: usize = 32;
/// Bytes of the per-vault salt.
pub const SALT_LEN: usize = 32;
/// Bytes of entropy in a recovery key.
pub const RECOVERY_BYTES: usize = 16;

const TPM_AUTH_LABEL: &[u8] = b"anchor-vault v1 tpm-auth\0";
const KEYSLOT_INFO: &[u8] = b"anchor-vault v1 luks keyslot";
const LOCKOUT_LABEL: &[u8] = b"anchor-vault v1 tpm lockout";

/// A secret byte string, wiped on drop.
pub type Secret = Zeroizing<Vec<u8>>;

/// Why key material could not be made.
#[derive(Debug)]
pub enum KeyError {
    /// Reading the kernel's random source failed.
    Random(std::io::Error),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Random(e) => write!(f, "reading /dev/urandom: {e}"),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Random(e) => Some(e),
        }
    }
}

/// `n` bytes from the kernel's random source.
pub fn random(n: usize) -> Result<Secret, KeyError> {
    let mut out = Zeroizing::new(vec![0u8; n]);
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .map_err(KeyError::Random)?;
    Ok(out)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Zeroizing::new([0u8; 32]),
    };
    for p in parts {
        mac.update(p);
    }
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The authorization value of the sealed object for `passphrase`.
pub fn tpm_auth(salt: &[u8], passphrase: &[u8]) -> Zeroizing<[u8; 32]> {
    hmac(salt, &[TPM_AUTH_LABEL, passphrase])
}

/// The LUKS2 keyslot passphrase from the unsealed secret and the passphrase.
pub fn keyslot_key(tpm_secret: &[u8], passphrase: &[u8], salt: &[u8]) -> Secret {
    let mut ikm = Zeroizing::new(Vec::with_capacity(tpm_secret.len() + passphrase.len()));
    ikm.extend_from_slice(tpm_secret);
    ikm.extend_from_slice(passphrase);
    let hk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut okm = Zeroizing::new(vec![0u8; 32]);
    // 32 bytes is far below HKDF's limit (255 * 32): expand cannot fail here.
    if hk.expand(KEYSLOT_INFO, &mut okm).is_err() {
        okm.iter_mut().for_each(|b| *b = 0);
    }
    okm
}

/// A recovery key in its canonical text form (`xxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxx`).
pub struct RecoveryKey(Zeroizing<String>);

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKey(..)")
    }
}

impl RecoveryKey {
    /// Format 16 random bytes.
    pub fn from_bytes(bytes: &[u8]) -> RecoveryKey {
        let mut text = Zeroizing::new(String::with_capacity(40));
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 && i % 2 == 0 {
                text.push('-');
            }
            for nibble in [b >> 4, b & 0x0f] {
                text.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
            }
        }
        RecoveryKey(text)
    }

    /// A new random recovery key.
    pub fn generate() -> Result<RecoveryKey, KeyError> {
        Ok(RecoveryKey::from_bytes(&random(RECOVERY_BYTES)?))
    }

    /// Read what a person typed: case, spaces and dashes do not matter; exactly 32 hex
    /// digits do.
    pub fn parse(input: &[u8]) -> Option<RecoveryKey> {
        // Sized for the key and never grown: a reallocation would free the digits read so
        // far unwiped (Zeroizing wipes only the last buffer). A digit too many is refused
        // before it is pushed.
        let mut digits = Zeroizing::new(Vec::with_capacity(RECOVERY_BYTES * 2));
        for &c in input {
            if c.is_ascii_hexdigit() && digits.len() == RECOVERY_BYTES * 2 {
                return None;
            }
            match c {
                b'0'..=b'9' => digits.push(c - b'0'),
                b'a'..=b'f' => digits.push(c - b'a' + 10),
                b'A'..=b'F' => digits.push(c - b'A' + 10),
                b' ' | b'-' | b'\t' => {}
                _ => return None,
            }
        }
        if digits.len() != RECOVERY_BYTES * 2 {
            return None;
        }
        let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(
            digits
                .chunks_exact(2)
                .map(|p| match p {
                    [hi, lo] => (hi << 4) | lo,
                    _ => 0,
                })
                .collect(),
        );
        Some(RecoveryKey::from_bytes(&bytes))
    }

    /// The canonical text: the passphrase of the recovery keyslot.
    pub fn text(&self) -> &str {
        &self.0
    }

    /// The TPM lockout authorization held by whoever holds this recovery key.
    pub fn lockout_auth(&self) -> Zeroizing<[u8; 32]> {
        hmac(self.0.as_bytes(), &[LOCKOUT_LABEL])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_keys_read_back_however_they_are_typed() {
        let k = RecoveryKey::from_bytes(&[0xab; 16]);
        assert_eq!(k.text(), "abab-abab-abab-abab-abab-abab-abab-abab");
        for typed in [
            "abab-abab-abab-abab-abab-abab-abab-abab",
            "ABAB ABAB ABAB ABAB ABAB ABAB ABAB ABAB",
            "ababababababababababababababababa b",
        ] {
            let parsed = RecoveryKey::parse(typed.as_bytes());
            if typed.len() == 35 {
                assert!(parsed.is_none(), "{typed}");
            } else {
                assert_eq!(parsed.unwrap().text(), k.text(), "{typed}");
            }
        }
        assert!(RecoveryKey::parse(b"abab").is_none());
        assert!(RecoveryKey::parse(b"zzzz-abab-abab-abab-abab-abab-abab-abab").is_none());
        let fresh = RecoveryKey::generate().unwrap();
        assert_eq!(fresh.text().len(), 39);
        assert_eq!(format!("{fresh:?}"), "RecoveryKey(..)");
    }

    #[test]
    fn both_factors_change_the_keyslot_key() {
        let salt = [7u8; SALT_LEN];
        let a = keyslot_key(&[1; 32], b"pass", &salt);
        assert_eq!(a.len(), 32);
        assert_ne!(*a, *keyslot_key(&[2; 32], b"pass", &salt));
        assert_ne!(*a, *keyslot_key(&[1; 32], b"pasz", &salt));
        assert_ne!(*a, *keyslot_key(&[1; 32], b"pass", &[8u8; SALT_LEN]));
        assert_eq!(*a, *keyslot_key(&[1; 32], b"pass", &salt));
        assert_ne!(*tpm_auth(&salt, b"pass"), *tpm_auth(&salt, b"pasz"));
        assert_ne!(*tpm_auth(&salt, b"pass"), *tpm_auth(&[0; 32], b"pass"));
        let k = RecoveryKey::from_bytes(&[1; 16]);
        assert_ne!(
            *k.lockout_auth(),
            *RecoveryKey::from_bytes(&[2; 16]).lockout_auth()
        );
    }
}
