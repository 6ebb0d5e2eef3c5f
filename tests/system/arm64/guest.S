// SPDX-License-Identifier: GPL-3.0-or-later
// Hand-made arm64 guests for anchor-vmm's aarch64 boot and device checks, run by
// the arm64 anchor host (tests/system/mk-arm64-initramfs.sh assembles one Image
// per CASE with `--defsym CASE=n`; tests/system/tests/arm64.rs reads the results).
// Each is a Linux arm64 Image (64-byte header, text_offset 0) that talks only to
// the 16550 at 0x40001000 and ends through PSCI, like a real kernel would.
//
//   CASE 1 boot     check the Image protocol: x0 = a device tree (FDT magic), x1-x3
//                   zero, EL1, MMU off, pc = the load address; print one line per
//                   check; PSCI SYSTEM_OFF
//   CASE 2 reset    PSCI SYSTEM_RESET
//   CASE 3 abuse    unmapped MMIO reads/writes, virtio-mmio registers programmed with
//                   nonsense (huge queue, addresses outside RAM, 2000 notifies), a
//                   32 KiB UART flood; then SYSTEM_OFF (the VMM must survive all of it)
//   CASE 4 nisv     a load pair from MMIO (no valid syndrome: KVM cannot emulate
//                   it): the VMM must stop with the guest-fault code, not hang
//   CASE 5 smp      PSCI CPU_ON for vcpu 1 (MPIDR 1, named by the device tree):
//                   vcpu 1 (started powered off) prints and powers the machine off
//   CASE 6 wfi      interrupts masked, WFI forever: the vcpu sleeps in KVM (used to
//                   inspect the running VMM's threads, then killed)
//   CASE 7 psci     firmware calls with nonsense (unknown SMCCC ids over HVC and SMC,
//                   CPU_ON of a vcpu that does not exist and of itself, SYSTEM_RESET2
//                   with a reserved type) and MMIO at the edges (a 64-bit UART read,
//                   reads in the GIC's unused space, above RAM, beyond the IPA range,
//                   with a vector table that skips a faulting access): each answer is
//                   checked and printed, then SYSTEM_OFF (none of it may end the VM)

    .equ UART, 0x40001000
    .equ VIRTIO0, 0x40100000
    .equ UNMAPPED, 0x50000000
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ PSCI_SYSTEM_RESET, 0x84000009
    .equ PSCI_CPU_ON, 0xc4000003
    .equ PSCI_VERSION, 0x84000000
    .equ PSCI_SYSTEM_RESET2, 0xc4000012
    .equ SMCCC_UNKNOWN, 0xc6001234
    .equ GIC_UNUSED, 0x48030000     // after the one vcpu's redistributor

    .text
    .globl _start
_start:
    b       entry                   // code0
    .word   0                       // code1
    .quad   0                       // text_offset
    .quad   image_end - _start      // image_size
    .quad   0xa                     // flags: little-endian, 4K pages, anywhere
    .quad   0, 0, 0                 // res2-4
    .word   0x644d5241              // "ARM\x64"
    .word   0                       // res5

entry:
    mov     x19, x0                 // keep the boot registers
    mov     x20, x1
    mov     x21, x2
    mov     x22, x3
    ldr     x0, =stack_top
    mov     sp, x0
.if CASE == 1
    // x0: a device tree (magic 0xd00dfeed, big-endian) inside RAM
    ldr     w1, [x19]
    ldr     w2, =0xedfe0dd0
    adr     x0, msg_fdt_ok
    cmp     w1, w2
    b.eq    1f
    adr     x0, msg_fdt_bad
1:  bl      puts
    // x1-x3 are zero
    orr     x1, x20, x21
    orr     x1, x1, x22
    adr     x0, msg_regs_ok
    cbz     x1, 1f
    adr     x0, msg_regs_bad
1:  bl      puts
    // running at EL1
    mrs     x1, CurrentEL
    adr     x0, msg_el1_ok
    cmp     x1, #4
    b.eq    1f
    adr     x0, msg_el1_bad
1:  bl      puts
    // MMU off (SCTLR_EL1.M == 0)
    mrs     x1, sctlr_el1
    adr     x0, msg_mmu_ok
    tbz     x1, #0, 1f
    adr     x0, msg_mmu_bad
1:  bl      puts
    // entered at the load address: start of RAM + text_offset 0
    adr     x1, _start
    ldr     x2, =0x80000000
    adr     x0, msg_pc_ok
    cmp     x1, x2
    b.eq    1f
    adr     x0, msg_pc_bad
1:  bl      puts
    b       off
.endif
.if CASE == 2
    adr     x0, msg_reset
    bl      puts
    ldr     x0, =PSCI_SYSTEM_RESET
    hvc     #0
    b       hang
.endif
.if CASE == 3
    // Unmapped MMIO: reads are all ones, writes vanish.
    ldr     x1, =UNMAPPED
    mov     x2, #0x55
    str     w2, [x1]
    ldr     w3, [x1]
    adr     x0, msg_unmapped_ok
    cmn     w3, #1
    b.eq    1f
    adr     x0, msg_unmapped_bad
1:  bl      puts
    // virtio-mmio window 0: select absurd queues, huge sizes, rings outside RAM,
    // ready, then notify 20000 times; status garbage; then every register
    // offset written with all ones.
    ldr     x1, =VIRTIO0
    mov     w2, #0xffff
    str     w2, [x1, #0x30]         // QueueSel
    str     w2, [x1, #0x38]         // QueueNum
    mov     w2, #0
    str     w2, [x1, #0x30]         // QueueSel 0
    mov     w2, #0x8000
    str     w2, [x1, #0x38]         // QueueNum 32768
    mov     w2, #0xfffff000
    str     w2, [x1, #0x80]         // QueueDescLow
    str     w2, [x1, #0x84]         // QueueDescHigh
    str     w2, [x1, #0x90]         // QueueAvailLow
    str     w2, [x1, #0xa0]         // QueueUsedLow
    mov     w2, #1
    str     w2, [x1, #0x44]         // QueueReady
    mov     w2, #0xff
    str     w2, [x1, #0x70]         // Status
    ldr     x4, =2000
2:  str     wzr, [x1, #0x50]        // QueueNotify
    subs    x4, x4, #1
    b.ne    2b
    mov     x4, #0
    mov     w2, #-1
3:  str     w2, [x1, x4]
    add     x4, x4, #4
    cmp     x4, #0x1000
    b.lt    3b
    adr     x0, msg_virtio_done
    bl      puts
    // UART flood: 32 KiB of 'z' (8 times the VMM's output buffer), a newline every 64
    // bytes. (Every byte is a nested MMIO exit under TCG: keep the case cheap.)
    ldr     x1, =UART
    ldr     x4, =512
4:  mov     x5, #63
5:  mov     w2, #'z'
    strb    w2, [x1]
    subs    x5, x5, #1
    b.ne    5b
    mov     w2, #'\n'
    strb    w2, [x1]
    subs    x4, x4, #1
    b.ne    4b
    adr     x0, msg_abuse_done
    bl      puts
    b       off
.endif
.if CASE == 4
    adr     x0, msg_nisv
    bl      puts
    ldr     x1, =VIRTIO0
    ldp     x2, x3, [x1]            // no valid ISS: KVM cannot emulate this
    adr     x0, msg_nisv_survived
    bl      puts
    b       off
.endif
.if CASE == 5
    ldr     x0, =PSCI_CPU_ON
    mov     x1, #1                  // target: MPIDR affinity 1 (vcpu 1)
    adr     x2, secondary
    mov     x3, #0
    hvc     #0
    cbz     x0, hang                // accepted: vcpu 1 reports and powers off
    adr     x0, msg_cpu_on_bad      // (vcpu 0 stays quiet: no interleaved bytes)
    bl      puts
    b       off
secondary:
    ldr     x0, =stack2_top
    mov     sp, x0
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    adr     x0, msg_cpu1_ok
    cmp     x1, #1
    b.eq    1f
    adr     x0, msg_cpu1_bad
1:  bl      puts
    b       off
.endif
.if CASE == 7
    // A data abort the guest takes itself (beyond the IPA range) skips the access and
    // sets x28.
    adr     x0, vectors
    msr     vbar_el1, x0
    isb
    // PSCI_VERSION answers a version (bit 31 clear, not 0).
    ldr     x0, =PSCI_VERSION
    hvc     #0
    adr     x1, msg_psci_ver_ok
    adr     x2, msg_psci_ver_bad
    tst     w0, #0x80000000
    csel    x1, x2, x1, ne
    cmp     w0, #0
    csel    x0, x2, x1, eq
    bl      puts
    // An unknown SMCCC function over HVC: NOT_SUPPORTED (-1), the VM goes on.
    ldr     x0, =SMCCC_UNKNOWN
    hvc     #0
    adr     x1, msg_hvc_unknown_ok
    adr     x2, msg_hvc_unknown_bad
    cmn     x0, #1
    csel    x0, x1, x2, eq
    bl      puts
    // The same over SMC (trapped by KVM): -1.
    ldr     x0, =SMCCC_UNKNOWN
    smc     #0
    adr     x1, msg_smc_unknown_ok
    adr     x2, msg_smc_unknown_bad
    cmn     x0, #1
    csel    x0, x1, x2, eq
    bl      puts
    // CPU_ON for an MPIDR no vcpu has: INVALID_PARAMETERS (-2).
    ldr     x0, =PSCI_CPU_ON
    mov     x1, #0x7f
    mov     x2, #0
    mov     x3, #0
    hvc     #0
    adr     x1, msg_cpu_on_none_ok
    adr     x2, msg_cpu_on_none_bad
    cmn     x0, #2
    csel    x0, x1, x2, eq
    bl      puts
    // CPU_ON for the calling vcpu: ALREADY_ON (-4).
    ldr     x0, =PSCI_CPU_ON
    mov     x1, #0
    mov     x2, #0
    mov     x3, #0
    hvc     #0
    adr     x1, msg_cpu_on_self_ok
    adr     x2, msg_cpu_on_self_bad
    cmn     x0, #4
    csel    x0, x1, x2, eq
    bl      puts
    // SYSTEM_RESET2 with a reserved reset type: refused (negative), no reset.
    ldr     x0, =PSCI_SYSTEM_RESET2
    mov     x1, #1
    mov     x2, #0
    hvc     #0
    adr     x1, msg_reset2_ok
    adr     x2, msg_reset2_bad
    cmp     x0, #0
    csel    x0, x1, x2, lt
    bl      puts
    // A 64-bit read of the UART's registers: handled, the VM goes on.
    ldr     x1, =UART
    ldr     x3, [x1]
    adr     x0, msg_uart_wide
    bl      puts
    // Reads in the GIC's window that no GIC frame covers, and above RAM: all ones.
    ldr     x1, =GIC_UNUSED
    ldr     w3, [x1]
    mov     x4, #1
    lsl     x4, x4, #36             // 64 GiB: above RAM, inside any IPA range
    ldr     w5, [x4]
    and     w3, w3, w5
    adr     x1, msg_holes_ok
    adr     x2, msg_holes_bad
    cmn     w3, #1
    csel    x0, x1, x2, eq
    bl      puts
    // Beyond any IPA range: the guest takes the abort (the VMM sees nothing).
    mov     x28, #0
    mov     x4, #1
    lsl     x4, x4, #52
    ldr     w5, [x4]
    adr     x1, msg_beyond_ok
    adr     x2, msg_beyond_bad
    cmp     x28, #1
    csel    x0, x1, x2, eq
    bl      puts
    b       off
.endif
.if CASE == 6
    adr     x0, msg_wfi
    bl      puts
    msr     daifset, #0xf
1:  wfi
    b       1b
.endif

off:
    adr     x0, msg_off
    bl      puts
    ldr     x0, =PSCI_SYSTEM_OFF
    hvc     #0
hang:
    wfi
    b       hang

// Exception vectors (CASE 7): skip the faulting instruction, set x28.
    .balign 2048
vectors:
    .rept   16
    mrs     x27, elr_el1
    add     x27, x27, #4
    msr     elr_el1, x27
    mov     x28, #1
    eret
    .balign 0x80
    .endr

// puts(x0 = NUL-terminated string): byte writes to the UART's THR.
puts:
    ldr     x1, =UART
1:  ldrb    w2, [x0], #1
    cbz     w2, 2f
    strb    w2, [x1]
    b       1b
2:  ret

msg_fdt_ok:         .asciz "arm64-guest: boot: x0 points at a device tree\n"
msg_fdt_bad:        .asciz "arm64-guest: boot: FAIL x0 is not a device tree\n"
msg_regs_ok:        .asciz "arm64-guest: boot: x1-x3 are zero\n"
msg_regs_bad:       .asciz "arm64-guest: boot: FAIL x1-x3 not zero\n"
msg_el1_ok:         .asciz "arm64-guest: boot: running at EL1\n"
msg_el1_bad:        .asciz "arm64-guest: boot: FAIL not at EL1\n"
msg_mmu_ok:         .asciz "arm64-guest: boot: MMU off\n"
msg_mmu_bad:        .asciz "arm64-guest: boot: FAIL MMU on\n"
msg_pc_ok:          .asciz "arm64-guest: boot: entered at the load address\n"
msg_pc_bad:         .asciz "arm64-guest: boot: FAIL wrong load address\n"
msg_reset:          .asciz "arm64-guest: reset: asking PSCI for SYSTEM_RESET\n"
msg_unmapped_ok:    .asciz "arm64-guest: abuse: unmapped MMIO reads all ones\n"
msg_unmapped_bad:   .asciz "arm64-guest: abuse: FAIL unmapped MMIO read\n"
msg_virtio_done:    .asciz "arm64-guest: abuse: virtio registers survived\n"
msg_abuse_done:     .asciz "arm64-guest: abuse: uart flood done\n"
msg_nisv:           .asciz "arm64-guest: nisv: load pair from MMIO\n"
msg_nisv_survived:  .asciz "arm64-guest: nisv: FAIL the load pair returned\n"
msg_cpu_on_bad:     .asciz "arm64-guest: smp: FAIL CPU_ON refused\n"
msg_cpu1_ok:        .asciz "arm64-guest: smp: vcpu 1 running (MPIDR aff0 1)\n"
msg_cpu1_bad:       .asciz "arm64-guest: smp: FAIL secondary has the wrong MPIDR\n"
msg_wfi:            .asciz "arm64-guest: wfi: sleeping with interrupts masked\n"
msg_off:            .asciz "arm64-guest: PSCI SYSTEM_OFF\n"
msg_psci_ver_ok:    .asciz "arm64-guest: psci: PSCI_VERSION answered\n"
msg_psci_ver_bad:   .asciz "arm64-guest: psci: FAIL PSCI_VERSION\n"
msg_hvc_unknown_ok: .asciz "arm64-guest: psci: unknown HVC function is NOT_SUPPORTED\n"
msg_hvc_unknown_bad: .asciz "arm64-guest: psci: FAIL unknown HVC function\n"
msg_smc_unknown_ok: .asciz "arm64-guest: psci: unknown SMC function is NOT_SUPPORTED\n"
msg_smc_unknown_bad: .asciz "arm64-guest: psci: FAIL unknown SMC function\n"
msg_cpu_on_none_ok: .asciz "arm64-guest: psci: CPU_ON of no vcpu is INVALID_PARAMETERS\n"
msg_cpu_on_none_bad: .asciz "arm64-guest: psci: FAIL CPU_ON of no vcpu\n"
msg_cpu_on_self_ok: .asciz "arm64-guest: psci: CPU_ON of itself is ALREADY_ON\n"
msg_cpu_on_self_bad: .asciz "arm64-guest: psci: FAIL CPU_ON of itself\n"
msg_reset2_ok:      .asciz "arm64-guest: psci: SYSTEM_RESET2 with a reserved type refused\n"
msg_reset2_bad:     .asciz "arm64-guest: psci: FAIL SYSTEM_RESET2 with a reserved type\n"
msg_uart_wide:      .asciz "arm64-guest: psci: 64-bit UART read survived\n"
msg_holes_ok:       .asciz "arm64-guest: psci: GIC hole and above-RAM reads are all ones\n"
msg_holes_bad:      .asciz "arm64-guest: psci: FAIL GIC hole or above-RAM read\n"
msg_beyond_ok:      .asciz "arm64-guest: psci: beyond the IPA range the guest takes the abort\n"
msg_beyond_bad:     .asciz "arm64-guest: psci: FAIL no abort beyond the IPA range\n"

    .ltorg
    .balign 16
    .space  4096
stack_top:
    .space  4096
stack2_top:
image_end:
