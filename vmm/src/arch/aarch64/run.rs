// SPDX-License-Identifier: GPL-3.0-or-later
//! What a failed KVM_RUN means on arm64 (pure, so its unit tests run on any host).
//! KVM answers some things a guest does with an error from KVM_RUN rather than an exit:
//! those end the VM as a guest fault (exit 4), not as a VMM error (exit 3).

use crate::exit::{Stop, EXIT_GUEST_FAULT, EXIT_VMM_ERROR};

/// The stop for KVM_RUN failing with `errno` on vcpu `id`; `exit_reason` is the
/// vcpu's `kvm_run.exit_reason` after the call (KVM sets it on every run).
/// EINTR and EAGAIN are not failures (the caller retries): `None`.
pub fn run_failed(id: u8, errno: i32, exit_reason: u32) -> Option<Stop> {
    match errno {
        libc::EINTR | libc::EAGAIN => None,
        // The guest made its vcpu unrunnable: it dropped to AArch32 EL0 where KVM does not
        // allow that (KVM invalidates the vcpu), or KVM's exception return into it was
        // illegal. KVM says so with EINVAL and exit reason FAIL_ENTRY (handle_exit,
        // ARM_EXCEPTION_IL); EINVAL without it is a VMM error.
        libc::EINVAL if exit_reason == kvm_bindings::KVM_EXIT_FAIL_ENTRY => Some(Stop::new(
            EXIT_GUEST_FAULT,
            format!("guest fault: vcpu {id}: illegal guest state (KVM_RUN: FAIL_ENTRY, EINVAL)"),
        )),
        // A data abort outside memory that the CPU gave no syndrome for (e.g. a load
        // pair from MMIO): KVM cannot emulate it (io_mem_abort).
        libc::ENOSYS => Some(Stop::new(
            EXIT_GUEST_FAULT,
            format!("guest fault: vcpu {id}: MMIO access KVM cannot decode (no valid syndrome)"),
        )),
        _ => Some(Stop::new(
            EXIT_VMM_ERROR,
            format!(
                "vcpu {id}: KVM_RUN failed: {}",
                kvm_ioctls::Error::new(errno)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{KVM_EXIT_FAIL_ENTRY, KVM_EXIT_MMIO, KVM_EXIT_UNKNOWN};

    fn code(s: Option<Stop>) -> Option<i32> {
        s.map(|s| s.code)
    }

    #[test]
    fn retries_are_not_stops() {
        assert_eq!(run_failed(0, libc::EINTR, KVM_EXIT_UNKNOWN), None);
        assert_eq!(run_failed(0, libc::EAGAIN, KVM_EXIT_UNKNOWN), None);
    }

    #[test]
    fn mmio_without_a_syndrome_is_a_guest_fault() {
        let s = run_failed(2, libc::ENOSYS, KVM_EXIT_UNKNOWN).unwrap();
        assert_eq!(s.code, EXIT_GUEST_FAULT);
        assert!(
            s.reason.contains("vcpu 2: MMIO access KVM cannot decode"),
            "{s:?}"
        );
    }

    /// Regression (review): KVM_RUN fails with EINVAL and exit reason FAIL_ENTRY when the
    /// guest itself made its vcpu unrunnable: it dropped to AArch32 EL0 where KVM does not
    /// allow that (a host whose cores differ in AArch32 support: KVM "caught the guest
    /// red-handed" and invalidates the vcpu), or an exception return into the guest was
    /// illegal ("guest state must have been corrupted"). That used to end the VMM as its
    /// own error (exit 3); it is the guest's fault (exit 4).
    #[test]
    fn a_vcpu_the_guest_made_unrunnable_is_a_guest_fault() {
        let s = run_failed(1, libc::EINVAL, KVM_EXIT_FAIL_ENTRY).unwrap();
        assert_eq!(s.code, EXIT_GUEST_FAULT, "{s:?}");
        assert!(s.reason.starts_with("guest fault: vcpu 1: "), "{s:?}");
    }

    #[test]
    fn other_failures_are_vmm_errors() {
        // EINVAL without FAIL_ENTRY (e.g. a VMM that set up the vcpu wrongly), EFAULT
        // (guest RAM the host cannot fault in), ENOEXEC (vcpu not initialised).
        for (errno, reason) in [
            (libc::EINVAL, KVM_EXIT_UNKNOWN),
            (libc::EINVAL, KVM_EXIT_MMIO),
            (libc::EFAULT, KVM_EXIT_UNKNOWN),
            (libc::ENOEXEC, KVM_EXIT_UNKNOWN),
        ] {
            assert_eq!(code(run_failed(0, errno, reason)), Some(EXIT_VMM_ERROR));
        }
    }
}
