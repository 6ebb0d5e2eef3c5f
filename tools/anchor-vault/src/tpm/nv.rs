// SPDX-License-Identifier: GPL-3.0-or-later
//! The audit log's anchor in TPM NV memory (docs/AUDIT-LOG-FORMAT.md, "The TPM anchor").
//!
//! - A monotonic counter index: incremented once per anchored record. A TPM never lets
//!   a counter go back, not even by deleting and re-creating it (a new counter starts at
//!   the highest value any counter ever had), so putting back an older log, or an older
//!   copy of the whole vault disk, shows as missing records.
//! - An extend index: extended with each record's `SHA-256(body)`, so it holds the log's
//!   head hash exactly as the log computes it; a rewritten history no longer matches.
//!
//! Both take an empty authorization value (reading and advancing them needs no secret)
//! and are `noDA`. The count of the log is `counter - base`, where `base` is the
//! counter's value when the log started (the `base` field of its first record,
//! `audit.start`).

use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::{NvIndexType, Tss2ResponseCodeKind};
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, ObjectHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::NvPublicBuilder;

use super::{classify, Tpm, TpmError};
use crate::sys::esys::RawEsys;
use anchor_audit::{Hash, GENESIS};

/// Default NV index of the record counter (TCG owner range 0x01800000..0x01BFFFFF).
pub const DEFAULT_COUNTER: u32 = 0x0180_a0a0;
/// Default NV index of the head hash (extend index).
pub const DEFAULT_HEAD: u32 = 0x0180_a0a1;

/// Which NV indices anchor this vault's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indices {
    pub counter: u32,
    pub head: u32,
}

impl Default for Indices {
    fn default() -> Self {
        Indices {
            counter: DEFAULT_COUNTER,
            head: DEFAULT_HEAD,
        }
    }
}

/// What the TPM holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvState {
    /// The counter's value (0 when never incremented).
    pub counter: u64,
    /// The extend index's value ([`GENESIS`] when never extended).
    pub head: Hash,
}

fn handle_of(index: u32) -> Result<TpmHandle, TpmError> {
    NvIndexTpmHandle::new(index)
        .map(TpmHandle::NvIndex)
        .map_err(|e| TpmError::Command("NV index handle", e))
}

impl Tpm {
    /// The ESYS handle of NV index `index`, or `None` if it is not defined.
    fn nv_handle(&mut self, index: u32) -> Result<Option<NvIndexHandle>, TpmError> {
        let tpm_handle = handle_of(index)?;
        match self
            .ctx()
            .execute_without_session(|c| c.tr_from_tpm_public(tpm_handle))
        {
            Ok(h) => Ok(Some(NvIndexHandle::from(h))),
            Err(tss_esapi::Error::Tss2Error(rc))
                if matches!(rc.kind(), Some(Tss2ResponseCodeKind::Handle)) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify("TR_FromTPMPublic(NV)", e)),
        }
    }

    fn close(&mut self, h: NvIndexHandle) {
        let mut o = ObjectHandle::from(h);
        let _ = self.ctx().tr_close(&mut o);
    }

    /// The type of index `index` (None when undefined).
    fn nv_type(&mut self, index: u32) -> Result<Option<(NvIndexType, usize)>, TpmError> {
        let Some(h) = self.nv_handle(index)? else {
            return Ok(None);
        };
        let public = self
            .ctx()
            .execute_without_session(|c| c.nv_read_public(h))
            .map_err(|e| classify("NV_ReadPublic", e));
        self.close(h);
        let (public, _) = public?;
        let kind = public
            .attributes()
            .index_type()
            .map_err(|e| TpmError::Command("NV attributes", e))?;
        Ok(Some((kind, public.data_size())))
    }

    fn define(&mut self, index: u32, kind: NvIndexType, size: usize) -> Result<(), TpmError> {
        let attrs = NvIndexAttributesBuilder::new()
            .with_nv_index_type(kind)
            .with_auth_write(true)
            .with_auth_read(true)
            .with_no_da(true)
            .build()
            .map_err(|e| TpmError::Command("NV attributes", e))?;
        let nv_index =
            NvIndexTpmHandle::new(index).map_err(|e| TpmError::Command("NV index handle", e))?;
        let public = NvPublicBuilder::new()
            .with_nv_index(nv_index)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attrs)
            .with_data_area_size(size)
            .build()
            .map_err(|e| TpmError::Command("NV public", e))?;
        let h = self
            .ctx()
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.nv_define_space(Provision::Owner, None, public)
            })
            .map_err(|e| match classify("NV_DefineSpace", e) {
                TpmError::AuthFail => TpmError::OwnerAuth,
                other => other,
            })?;
        self.close(h);
        Ok(())
    }

    fn undefine(&mut self, index: u32) -> Result<(), TpmError> {
        let Some(h) = self.nv_handle(index)? else {
            return Ok(());
        };
        self.ctx()
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.nv_undefine_space(Provision::Owner, h)
            })
            .map_err(|e| match classify("NV_UndefineSpace", e) {
                TpmError::AuthFail => TpmError::OwnerAuth,
                other => other,
            })
    }

    /// Make the two indices ready for a new log: the counter is kept if it exists (it
    /// cannot be reset anyway) and incremented once if it was never written (a new
    /// counter only takes its real starting value, the highest any counter on this TPM
    /// ever had, at its first increment); the head index is defined afresh (all zeros).
    pub fn define_anchor(&mut self, idx: Indices) -> Result<(), TpmError> {
        match self.nv_type(idx.counter)? {
            Some((NvIndexType::Counter, 8)) => {}
            Some(_) => {
                return Err(TpmError::Blob(
                    "the audit counter's NV index is in use by something else",
                ))
            }
            None => self.define(idx.counter, NvIndexType::Counter, 8)?,
        }
        if self.nv_read(idx.counter, 8)?.is_none() {
            let h = self
                .nv_handle(idx.counter)?
                .ok_or(TpmError::Blob("the audit counter vanished"))?;
            let r = self
                .ctx()
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.nv_increment(NvAuth::NvIndex(h), h)
                })
                .map_err(|e| classify("NV_Increment", e));
            self.close(h);
            r?;
        }
        match self.nv_type(idx.head)? {
            Some((NvIndexType::Extend, 32)) => self.undefine(idx.head)?,
            Some(_) => {
                return Err(TpmError::Blob(
                    "the audit head's NV index is in use by something else",
                ))
            }
            None => {}
        }
        self.define(idx.head, NvIndexType::Extend, 32)
    }

    fn nv_read(&mut self, index: u32, size: u16) -> Result<Option<Vec<u8>>, TpmError> {
        let h = self.nv_handle(index)?.ok_or(TpmError::Blob(
            "an audit anchor NV index is missing from the TPM",
        ))?;
        let read = self
            .ctx()
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.nv_read(NvAuth::NvIndex(h), h, size, 0)
            });
        self.close(h);
        match read {
            Ok(buf) => Ok(Some(buf.value().to_vec())),
            Err(tss_esapi::Error::Tss2Error(rc))
                if matches!(rc.kind(), Some(Tss2ResponseCodeKind::NvUninitialized)) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify("NV_Read", e)),
        }
    }

    /// The anchor as the TPM holds it now; checks both indices have the right type.
    pub fn read_anchor(&mut self, idx: Indices) -> Result<NvState, TpmError> {
        if self.nv_type(idx.counter)? != Some((NvIndexType::Counter, 8))
            || self.nv_type(idx.head)? != Some((NvIndexType::Extend, 32))
        {
            return Err(TpmError::Blob(
                "the audit anchor NV indices are missing or not what the vault defined",
            ));
        }
        let counter = match self.nv_read(idx.counter, 8)? {
            Some(b) => {
                let arr: [u8; 8] = b
                    .try_into()
                    .map_err(|_| TpmError::Blob("counter read is not 8 bytes"))?;
                u64::from_be_bytes(arr)
            }
            None => 0,
        };
        let head = match self.nv_read(idx.head, 32)? {
            Some(b) => b
                .try_into()
                .map_err(|_| TpmError::Blob("head read is not 32 bytes"))?,
            None => GENESIS,
        };
        Ok(NvState { counter, head })
    }
}

/// Anchor one more record: extend the head with its `digest`, then count it. (In that
/// order: a crash between the two leaves the head one ahead, which verification
/// recognises and the next anchoring repairs.)
pub fn advance(raw: &mut RawEsys, idx: Indices, digest: &Hash) -> Result<(), TpmError> {
    raw.nv_extend(idx.head, digest)?;
    raw.nv_increment(idx.counter)?;
    Ok(())
}

/// Count one record the head already holds (repairing a crash between the two steps).
pub fn bump(raw: &mut RawEsys, idx: Indices) -> Result<(), TpmError> {
    raw.nv_increment(idx.counter)?;
    Ok(())
}
