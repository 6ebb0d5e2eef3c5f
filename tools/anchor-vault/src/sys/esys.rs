// SPDX-License-Identifier: GPL-3.0-or-later
//! The TPM commands tss-esapi 7 does not wrap (TPM2_NV_Extend, TPM2_NV_Increment on the
//! same connection, TPM2_DictionaryAttackLockReset, TPM2_DictionaryAttackParameters),
//! called through the same libtss2-esys it links. A [`RawEsys`] owns its own TCTI
//! connection: never hold one while a `tss_esapi::Context` is open on a TPM that takes
//! one client at a time (swtpm over TCP, /dev/tpm0).

use core::fmt;
use std::ffi::CString;
use std::ptr;

use tss_esapi::constants::tss::{TPM2_ALG_NULL, TPM2_ALG_SHA256, TPM2_SE_HMAC};
use tss_esapi::tss2_esys::{
    Esys_DictionaryAttackLockReset, Esys_DictionaryAttackParameters, Esys_Finalize,
    Esys_FlushContext, Esys_Initialize, Esys_NV_Extend, Esys_NV_Increment, Esys_StartAuthSession,
    Esys_TR_FromTPMPublic, Esys_TR_SetAuth, Tss2_TctiLdr_Finalize, Tss2_TctiLdr_Initialize,
    ESYS_CONTEXT, ESYS_TR, ESYS_TR_NONE, ESYS_TR_PASSWORD, ESYS_TR_RH_LOCKOUT, TPM2B_AUTH,
    TPM2B_MAX_NV_BUFFER, TPMT_SYM_DEF, TSS2_RC, TSS2_TCTI_CONTEXT,
};
use zeroize::Zeroize;

/// What a failed raw TPM command means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawError {
    /// The TCTI could not be loaded or connected.
    Connect(TSS2_RC),
    /// TPM_RC_AUTH_FAIL / TPM_RC_BAD_AUTH: the authorization value was wrong.
    AuthFail,
    /// TPM_RC_LOCKOUT: the TPM refuses (dictionary-attack lockout).
    Lockout,
    /// TPM_RC_NV_RATE: NV writes are being rate-limited; try later.
    NvRate,
    /// Any other response code.
    Tpm(&'static str, TSS2_RC),
    /// A value does not fit its TPM buffer.
    TooLong,
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawError::Connect(rc) => write!(f, "cannot connect to the TPM (TSS rc {rc:#x})"),
            RawError::AuthFail => f.write_str("the TPM refused the authorization value"),
            RawError::Lockout => f.write_str("the TPM is in dictionary-attack lockout"),
            RawError::NvRate => f.write_str("the TPM is rate-limiting NV writes"),
            RawError::Tpm(op, rc) => write!(f, "TPM command {op} failed (rc {rc:#x})"),
            RawError::TooLong => f.write_str("value too long for a TPM buffer"),
        }
    }
}

impl std::error::Error for RawError {}

/// Classify a TSS return code from the TPM layer.
pub fn classify(op: &'static str, rc: TSS2_RC) -> RawError {
    let tpm = rc & 0xffff;
    let layer = rc >> 16;
    if layer == 0 && tpm & 0x80 != 0 {
        // Format one: error number in the low 6 bits.
        match tpm & 0x3f {
            0x0e | 0x22 => return RawError::AuthFail, // AUTH_FAIL, BAD_AUTH
            _ => {}
        }
    } else if layer == 0 || layer == 9 {
        // Format zero (or the resource manager passing a TPM warning on).
        match tpm & 0xfff {
            0x921 => return RawError::Lockout,
            0x920 => return RawError::NvRate,
            _ => {}
        }
    }
    RawError::Tpm(op, rc)
}

fn check(op: &'static str, rc: TSS2_RC) -> Result<(), RawError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(classify(op, rc))
    }
}

/// One ESYS context on its own TCTI connection.
#[derive(Debug)]
pub struct RawEsys {
    ctx: *mut ESYS_CONTEXT,
    tcti: *mut TSS2_TCTI_CONTEXT,
}

impl RawEsys {
    /// Connect with a TCTI configuration string (`device:/dev/tpmrm0`,
    /// `swtpm:host=127.0.0.1,port=2321`).
    pub fn open(tcti_conf: &str) -> Result<RawEsys, RawError> {
        let conf = CString::new(tcti_conf).map_err(|_| RawError::Connect(0))?;
        let mut tcti: *mut TSS2_TCTI_CONTEXT = ptr::null_mut();
        // SAFETY: `conf` is NUL-terminated; `tcti` is a valid out-pointer.
        let rc = unsafe { Tss2_TctiLdr_Initialize(conf.as_ptr(), &mut tcti) };
        if rc != 0 || tcti.is_null() {
            return Err(RawError::Connect(rc));
        }
        let mut ctx: *mut ESYS_CONTEXT = ptr::null_mut();
        // SAFETY: `tcti` was just initialized; a NULL ABI version is accepted.
        let rc = unsafe { Esys_Initialize(&mut ctx, tcti, ptr::null_mut()) };
        if rc != 0 || ctx.is_null() {
            // SAFETY: `tcti` came from Tss2_TctiLdr_Initialize and is finalized once.
            unsafe { Tss2_TctiLdr_Finalize(&mut tcti) };
            return Err(RawError::Connect(rc));
        }
        Ok(RawEsys { ctx, tcti })
    }

    fn object(&mut self, tpm_handle: u32) -> Result<ESYS_TR, RawError> {
        let mut tr: ESYS_TR = ESYS_TR_NONE;
        // SAFETY: `self.ctx` is a live context; `tr` is a valid out-parameter.
        let rc = unsafe {
            Esys_TR_FromTPMPublic(
                self.ctx,
                tpm_handle,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                &mut tr,
            )
        };
        check("TR_FromTPMPublic", rc)?;
        Ok(tr)
    }

    /// TPM2_NV_Extend of an index whose auth value is empty (password session).
    pub fn nv_extend(&mut self, index: u32, data: &[u8]) -> Result<(), RawError> {
        let nv = self.object(index)?;
        let mut buf = TPM2B_MAX_NV_BUFFER {
            size: u16::try_from(data.len()).map_err(|_| RawError::TooLong)?,
            buffer: [0u8; 2048],
        };
        buf.buffer
            .get_mut(..data.len())
            .ok_or(RawError::TooLong)?
            .copy_from_slice(data);
        // SAFETY: live context, handles from this context, `buf` outlives the call.
        let rc = unsafe {
            Esys_NV_Extend(
                self.ctx,
                nv,
                nv,
                ESYS_TR_PASSWORD,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                &buf,
            )
        };
        check("NV_Extend", rc)
    }

    /// TPM2_NV_Increment of a counter index whose auth value is empty.
    pub fn nv_increment(&mut self, index: u32) -> Result<(), RawError> {
        let nv = self.object(index)?;
        // SAFETY: live context and handles from it.
        let rc = unsafe {
            Esys_NV_Increment(
                self.ctx,
                nv,
                nv,
                ESYS_TR_PASSWORD,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
            )
        };
        check("NV_Increment", rc)
    }

    /// An unsalted, unbound HMAC session: the lockout authorization is never sent in
    /// the clear (only an HMAC keyed with it).
    fn hmac_session(&mut self) -> Result<ESYS_TR, RawError> {
        // SAFETY: TPMT_SYM_DEF is plain data; all-zero then algorithm = NULL is valid.
        let mut sym: TPMT_SYM_DEF = unsafe { std::mem::zeroed() };
        sym.algorithm = TPM2_ALG_NULL;
        let mut session: ESYS_TR = ESYS_TR_NONE;
        // SAFETY: live context; `sym` and `session` outlive the call; NULL nonce is allowed.
        let rc = unsafe {
            Esys_StartAuthSession(
                self.ctx,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                ptr::null(),
                TPM2_SE_HMAC,
                &sym,
                TPM2_ALG_SHA256,
                &mut session,
            )
        };
        check("StartAuthSession", rc)?;
        Ok(session)
    }

    fn set_lockout_auth(&mut self, auth: &[u8]) -> Result<(), RawError> {
        let mut value = TPM2B_AUTH {
            size: u16::try_from(auth.len()).map_err(|_| RawError::TooLong)?,
            buffer: [0u8; 64],
        };
        value
            .buffer
            .get_mut(..auth.len())
            .ok_or(RawError::TooLong)?
            .copy_from_slice(auth);
        // SAFETY: live context; ESYS copies the value.
        let rc = unsafe { Esys_TR_SetAuth(self.ctx, ESYS_TR_RH_LOCKOUT, &value) };
        value.buffer.zeroize();
        check("TR_SetAuth", rc)
    }

    fn with_lockout<F>(&mut self, auth: &[u8], op: F) -> Result<(), RawError>
    where
        F: FnOnce(*mut ESYS_CONTEXT, ESYS_TR) -> TSS2_RC,
    {
        self.set_lockout_auth(auth)?;
        let session = self.hmac_session()?;
        let rc = op(self.ctx, session);
        // SAFETY: the session came from this context; flushed once.
        unsafe { Esys_FlushContext(self.ctx, session) };
        self.set_lockout_auth(&[])?;
        check("dictionary-attack command", rc)
    }

    /// TPM2_DictionaryAttackLockReset with the lockout authorization `auth`.
    pub fn da_lock_reset(&mut self, auth: &[u8]) -> Result<(), RawError> {
        self.with_lockout(auth, |ctx, session| {
            // SAFETY: live context and a session started on it.
            unsafe {
                Esys_DictionaryAttackLockReset(
                    ctx,
                    ESYS_TR_RH_LOCKOUT,
                    session,
                    ESYS_TR_NONE,
                    ESYS_TR_NONE,
                )
            }
        })
    }

    /// TPM2_DictionaryAttackParameters with the lockout authorization `auth`.
    pub fn da_parameters(
        &mut self,
        auth: &[u8],
        max_tries: u32,
        recovery_s: u32,
        lockout_recovery_s: u32,
    ) -> Result<(), RawError> {
        self.with_lockout(auth, |ctx, session| {
            // SAFETY: live context and a session started on it.
            unsafe {
                Esys_DictionaryAttackParameters(
                    ctx,
                    ESYS_TR_RH_LOCKOUT,
                    session,
                    ESYS_TR_NONE,
                    ESYS_TR_NONE,
                    max_tries,
                    recovery_s,
                    lockout_recovery_s,
                )
            }
        })
    }
}

impl Drop for RawEsys {
    fn drop(&mut self) {
        // SAFETY: the context came from Esys_Initialize and is finalized once.
        unsafe { Esys_Finalize(&mut self.ctx) };
        // SAFETY: the TCTI came from Tss2_TctiLdr_Initialize and is finalized once,
        // after the context that used it.
        unsafe { Tss2_TctiLdr_Finalize(&mut self.tcti) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_are_classified() {
        assert_eq!(classify("x", 0x98e), RawError::AuthFail); // AUTH_FAIL, session 1
        assert_eq!(classify("x", 0x9a2), RawError::AuthFail); // BAD_AUTH, session 1
        assert_eq!(classify("x", 0x921), RawError::Lockout);
        assert_eq!(classify("x", 0x920), RawError::NvRate);
        assert_eq!(classify("x", 0x0009_0921), RawError::Lockout);
        assert_eq!(classify("x", 0x0007_000e), RawError::Tpm("x", 0x0007_000e));
    }
}
