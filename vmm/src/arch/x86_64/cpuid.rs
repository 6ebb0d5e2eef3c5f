// SPDX-License-Identifier: GPL-3.0-or-later
//! CPUID filtering: start from what KVM supports, hide what we do not
//! emulate or what leaks host details, and describe the vcpu topology.
//! (This host's PVM KVM accepts but ignores KVM_SET_CPUID2; nested KVM honours it.)

use kvm_bindings::kvm_cpuid_entry2;

// Leaf 1 ECX
const ECX_DTES64: u32 = 1 << 2;
const ECX_MONITOR: u32 = 1 << 3;
const ECX_DS_CPL: u32 = 1 << 4;
const ECX_VMX: u32 = 1 << 5;
const ECX_SMX: u32 = 1 << 6;
const ECX_EST: u32 = 1 << 7;
const ECX_TM2: u32 = 1 << 8;
const ECX_XTPR: u32 = 1 << 14;
const ECX_PDCM: u32 = 1 << 15;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const ECX_HYPERVISOR: u32 = 1 << 31;
// Leaf 1 EDX
const EDX_DS: u32 = 1 << 21;
const EDX_ACPI: u32 = 1 << 22;
const EDX_HTT: u32 = 1 << 28;
const EDX_TM: u32 = 1 << 29;
const EDX_PBE: u32 = 1 << 31;
// Leaf 6 EAX
const EAX6_ARAT: u32 = 1 << 2;
// Leaf 7.0 EDX
const EDX7_ARCH_CAPABILITIES: u32 = 1 << 29;
const EDX7_CORE_CAPABILITIES: u32 = 1 << 30;
// Leaf 0x8000_0001 ECX
const ECX8_SVM: u32 = 1 << 2;
const ECX8_PERFCTR_CORE: u32 = 1 << 23;

/// Filters `entries` in place for vcpu `id` of `count`. `tsc_deadline`: KVM
/// emulates the LAPIC TSC-deadline timer (KVM_CAP_TSC_DEADLINE_TIMER with the
/// in-kernel irqchip) but KVM_GET_SUPPORTED_CPUID does not report it; offering
/// it spares the guest the LAPIC timer calibration, which fails or is slow
/// under nested virtualisation ("APIC timer disabled due to verification
/// failure").
pub fn filter(entries: &mut [kvm_cpuid_entry2], id: u8, count: u8, tsc_deadline: bool) {
    for e in entries.iter_mut() {
        match e.function {
            0x1 => {
                e.ecx &= !(ECX_DTES64
                    | ECX_MONITOR
                    | ECX_DS_CPL
                    | ECX_VMX
                    | ECX_SMX
                    | ECX_EST
                    | ECX_TM2
                    | ECX_XTPR
                    | ECX_PDCM);
                e.ecx |= ECX_HYPERVISOR;
                if tsc_deadline {
                    e.ecx |= ECX_TSC_DEADLINE;
                } else {
                    e.ecx &= !ECX_TSC_DEADLINE;
                }
                e.edx &= !(EDX_DS | EDX_ACPI | EDX_TM | EDX_PBE);
                // EBX: initial APIC id [31:24], logical processor count [23:16],
                // CLFLUSH line size [15:8] (keep), brand index [7:0] = 0.
                e.ebx = (u32::from(id) << 24) | (u32::from(count) << 16) | (e.ebx & 0xff00);
                if count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            // Thermal/power management: not emulated, except ARAT (the LAPIC timer keeps
            // running in every C-state, as KVM's does): with TSC-deadline it tells Linux
            // that no PIT is needed (there is none).
            0x6 => {
                e.eax = EAX6_ARAT;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            // The architectural PMU: not emulated.
            0xa => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0x7 if e.index == 0 => {
                e.edx &= !(EDX7_ARCH_CAPABILITIES | EDX7_CORE_CAPABILITIES);
            }
            // Extended topology: one thread per core, x2APIC id = vcpu id.
            0xb => {
                e.edx = u32::from(id);
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 0x100;
                    }
                    1 => {
                        e.eax = 8;
                        e.ebx = u32::from(count);
                        e.ecx = 0x201;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            0x8000_0001 => {
                e.ecx &= !(ECX8_SVM | ECX8_PERFCTR_CORE);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf1_and_hidden_features() {
        let mut v = vec![
            kvm_cpuid_entry2 {
                function: 1,
                ecx: ECX_VMX | ECX_PDCM | 1,
                edx: EDX_ACPI | 1,
                ebx: 0xffff_ffff,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 7,
                edx: EDX7_ARCH_CAPABILITIES | 4,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xa,
                eax: 0x0703_0804,
                ..Default::default()
            },
        ];
        filter(&mut v, 1, 2, false);
        assert_eq!(v[0].ecx, ECX_HYPERVISOR | 1);
        assert_eq!(v[0].edx, EDX_HTT | 1);
        assert_eq!(v[0].ebx >> 24, 1);
        assert_eq!((v[0].ebx >> 16) & 0xff, 2);
        assert_eq!(v[1].edx, 4);
        assert_eq!(v[2].eax, 0);
    }

    #[test]
    fn tsc_deadline_offered_exactly_when_kvm_has_it() {
        let leaf1 = |ecx| kvm_cpuid_entry2 {
            function: 1,
            ecx,
            ..Default::default()
        };
        let mut v = vec![leaf1(0)];
        filter(&mut v, 0, 1, true);
        assert_eq!(v[0].ecx & ECX_TSC_DEADLINE, ECX_TSC_DEADLINE);
        let mut v = vec![leaf1(ECX_TSC_DEADLINE)];
        filter(&mut v, 0, 1, false);
        assert_eq!(v[0].ecx & ECX_TSC_DEADLINE, 0);
    }

    #[test]
    fn leaf6_offers_only_arat() {
        let mut v = vec![kvm_cpuid_entry2 {
            function: 6,
            eax: 0xffff_ffff,
            ecx: 9,
            ..Default::default()
        }];
        filter(&mut v, 0, 1, true);
        assert_eq!((v[0].eax, v[0].ecx), (EAX6_ARAT, 0));
    }
}
