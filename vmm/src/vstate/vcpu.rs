// SPDX-License-Identifier: GPL-3.0-or-later
//! vcpu configuration and the exit-handling loop. Nothing here may panic:
//! every value comes from the guest.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[cfg(target_arch = "x86_64")]
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_bindings::{KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::arch::current::boot::KernelEntry;
#[cfg(target_arch = "x86_64")]
use crate::arch::current::{cpuid, layout, regs};
use crate::devices::bus::{Access, MmioBus};
#[cfg(target_arch = "x86_64")]
use crate::devices::i8042;
use crate::devices::i8042::I8042;
use crate::devices::serial::SerialDevice;
use crate::exit::{ExitLatch, Stop, EXIT_GUEST_FAULT, EXIT_OK, EXIT_VMM_ERROR};
use crate::vstate::vm::Vm;

/// vcpu setup errors.
#[derive(Debug)]
pub enum VcpuError {
    /// A KVM step failed: the step plus KVM's errno.
    Kvm {
        /// The failing step.
        step: &'static str,
        /// KVM's error.
        source: kvm_ioctls::Error,
    },
    /// aarch64 vcpu init.
    #[cfg(target_arch = "aarch64")]
    Arch(crate::arch::current::kvm::KvmError),
}

impl fmt::Display for VcpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kvm { step, source } => write!(f, "vcpu setup: {step}: {source}"),
            #[cfg(target_arch = "aarch64")]
            Self::Arch(e) => write!(f, "vcpu setup: {e}"),
        }
    }
}

impl std::error::Error for VcpuError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Kvm { source, .. } => Some(source),
            #[cfg(target_arch = "aarch64")]
            Self::Arch(e) => Some(e),
        }
    }
}

fn step(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
    move |source| VcpuError::Kvm { step, source }
}

/// Creates and configures vcpu `id` of `count`.
pub fn create(vm: &Vm, id: u8, count: u8, entry: &KernelEntry) -> Result<VcpuFd, VcpuError> {
    let fd = vm
        .fd
        .create_vcpu(u64::from(id))
        .map_err(step("KVM_CREATE_VCPU"))?;
    configure(vm, &fd, id, count, entry)?;
    Ok(fd)
}

/// x86_64: CPUID, MSRs and LAPIC LINT pins on every vcpu; only vcpu 0 gets
/// boot registers, the others wait for INIT/SIPI in the in-kernel LAPIC.
#[cfg(target_arch = "x86_64")]
fn configure(
    vm: &Vm,
    fd: &VcpuFd,
    id: u8,
    count: u8,
    entry: &KernelEntry,
) -> Result<(), VcpuError> {
    let mut cpuid = vm
        .kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(step("KVM_GET_SUPPORTED_CPUID"))?;
    let tsc_deadline = vm.kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
    cpuid::filter(cpuid.as_mut_slice(), id, count, tsc_deadline);
    // This host's KVM accepts and ignores it; nested KVM honours it.
    fd.set_cpuid2(&cpuid).map_err(step("KVM_SET_CPUID2"))?;
    // Run the guest's TSC at the host's rate as the host knows it *now* (0 means exactly
    // that to KVM_SET_TSC_KHZ). KVM gives a new vcpu the rate it measured when it was
    // initialised; a host that refined its TSC calibration after that by more than KVM's
    // tolerance, without TSC scaling (nested under an emulated SVM: our anchor host),
    // leaves the vcpu without a TSC multiplier, and the guest's LAPIC timer never fires.
    // Where the rate already matches this changes nothing; a refusal leaves KVM's choice.
    let _ = fd.set_tsc_khz(0);
    let msrs = regs::boot_msrs_fam().map_err(|_| VcpuError::Kvm {
        step: "building MSR list",
        source: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    fd.set_msrs(&msrs).map_err(step("KVM_SET_MSRS"))?;
    let mut lapic = fd.get_lapic().map_err(step("KVM_GET_LAPIC"))?;
    regs::setup_lint(&mut lapic);
    fd.set_lapic(&lapic).map_err(step("KVM_SET_LAPIC"))?;
    if id == 0 {
        let sregs = fd.get_sregs().map_err(step("KVM_GET_SREGS"))?;
        fd.set_sregs(&regs::boot_sregs(entry.mode, sregs))
            .map_err(step("KVM_SET_SREGS"))?;
        fd.set_regs(&regs::boot_regs(entry))
            .map_err(step("KVM_SET_REGS"))?;
        fd.set_fpu(&regs::boot_fpu()).map_err(step("KVM_SET_FPU"))?;
    }
    Ok(())
}

/// aarch64: KVM_ARM_VCPU_INIT with the preferred target and PSCI 0.2 (vcpus
/// other than 0 start powered off, for PSCI CPU_ON); vcpu 0 enters the Image
/// with x0 = the device tree.
#[cfg(target_arch = "aarch64")]
fn configure(
    vm: &Vm,
    fd: &VcpuFd,
    id: u8,
    _count: u8,
    entry: &KernelEntry,
) -> Result<(), VcpuError> {
    crate::arch::current::kvm::init_vcpu(&vm.kvm, &vm.fd, fd, id, entry.entry, entry.fdt_addr)
        .map_err(VcpuError::Arch)
}

/// Legacy port devices, shared by all vcpus.
#[derive(Debug)]
pub struct PortDevices {
    /// The UART at 0x3f8.
    pub serial: Arc<Mutex<SerialDevice>>,
    /// The keyboard controller.
    pub i8042: Mutex<I8042>,
}

/// Everything a vcpu thread needs.
#[derive(Debug, Clone)]
pub struct VcpuCtx {
    /// MMIO bus.
    pub bus: MmioBus,
    /// Port devices.
    pub ports: Arc<PortDevices>,
    /// Exit latch.
    pub latch: Arc<ExitLatch>,
}

static UNMAPPED_LOGS: AtomicU64 = AtomicU64::new(0);

/// Logs the first 8 unmapped accesses, then every power-of-two-th one.
fn log_unmapped(kind: &str, addr: u64, len: usize) {
    let n = UNMAPPED_LOGS.fetch_add(1, Ordering::Relaxed);
    if n < 8 || n.is_power_of_two() {
        crate::log::say(format_args!(
            "guest {kind} of {len} bytes at unmapped {addr:#x} ignored ({} so far)",
            n + 1
        ));
    }
}

/// Where each byte of a port-I/O exit goes: `(index in the exit's data, port)`.
///
/// KVM reports `count` accesses of `width` bytes each, back to back in the data: `count`
/// is above 1 for a string instruction (`rep insb`, `rep outsb`), whose repetitions KVM's
/// emulator batches into one exit. The ports sit on an 8-bit bus, as the 8250 and the
/// i8042 do on a PC, so every byte is an access of its own, in order: a repetition goes
/// to the same port again, and an access wider than a byte reaches its byte lane `j` at
/// `port + j` (the chipset splits `inw 0x3f8` into reads of 0x3f8 and 0x3f9; QEMU's 8250
/// does the same). A lane past port 0xffff reaches nothing (`None`). Bytes after the last
/// whole access (KVM gives none) are left out. Pure: no device is touched.
#[cfg(target_arch = "x86_64")]
fn pio_lanes(port: u16, width: usize, len: usize) -> impl Iterator<Item = (usize, Option<u16>)> {
    let width = width.max(1);
    let whole = len.saturating_sub(len % width);
    (0..whole).map(move |i| {
        let lane = u16::try_from(i % width).ok();
        (i, lane.and_then(|l| port.checked_add(l)))
    })
}

/// A one-byte read of `port`: 0xff where no device answers.
#[cfg(target_arch = "x86_64")]
fn read_port(ctx: &VcpuCtx, port: u16) -> u8 {
    let serial_end = layout::SERIAL_PORT + 8;
    if (layout::SERIAL_PORT..serial_end).contains(&port) {
        if let Ok(mut s) = ctx.ports.serial.lock() {
            return s.read((port - layout::SERIAL_PORT) as u8);
        }
    } else if port == i8042::DATA_PORT || port == i8042::CMD_PORT {
        if let Ok(mut k) = ctx.ports.i8042.lock() {
            return k.read(port);
        }
    }
    0xff
}

/// A one-byte write of `v` to `port`; `Some` when it resets the machine.
#[cfg(target_arch = "x86_64")]
fn write_port(ctx: &VcpuCtx, port: u16, v: u8) -> Option<Stop> {
    let serial_end = layout::SERIAL_PORT + 8;
    if (layout::SERIAL_PORT..serial_end).contains(&port) {
        if let Ok(mut s) = ctx.ports.serial.lock() {
            s.write((port - layout::SERIAL_PORT) as u8, v);
        }
    } else if port == i8042::DATA_PORT || port == i8042::CMD_PORT {
        let action = match ctx.ports.i8042.lock() {
            Ok(mut k) => k.write(port, v),
            Err(_) => i8042::Action::None,
        };
        if action == i8042::Action::Reset {
            return Some(Stop::new(EXIT_OK, "guest reset (i8042)"));
        }
    }
    // Anything else (0x80 POST codes, probes of absent hardware) is ignored.
    None
}

/// A port read exit: `data` holds accesses of `width` bytes each (see [`pio_lanes`]).
#[cfg(target_arch = "x86_64")]
fn port_in(ctx: &VcpuCtx, port: u16, width: usize, data: &mut [u8]) {
    data.fill(0xff);
    for (i, lane) in pio_lanes(port, width, data.len()) {
        if let (Some(byte), Some(p)) = (data.get_mut(i), lane) {
            *byte = read_port(ctx, p);
        }
    }
}

/// A port write exit: `data` holds accesses of `width` bytes each (see [`pio_lanes`]).
/// A reset stops the string there: the VM is going away.
#[cfg(target_arch = "x86_64")]
fn port_out(ctx: &VcpuCtx, port: u16, width: usize, data: &[u8]) -> Option<Stop> {
    for (i, lane) in pio_lanes(port, width, data.len()) {
        if let (Some(&v), Some(p)) = (data.get(i), lane) {
            if let Some(stop) = write_port(ctx, p, v) {
                return Some(stop);
            }
        }
    }
    None
}

/// One exit; `Some` when the VM must stop. `pio_width` is the width of each access of a
/// port-I/O exit (`kvm_run.io.size`, which kvm-ioctls leaves out of the exit).
fn handle(ctx: &VcpuCtx, exit: VcpuExit<'_>, pio_width: usize) -> Option<Stop> {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pio_width;
    match exit {
        // Port I/O exists on x86 only.
        #[cfg(target_arch = "x86_64")]
        VcpuExit::IoIn(port, data) => {
            port_in(ctx, port, pio_width, data);
            None
        }
        #[cfg(target_arch = "x86_64")]
        VcpuExit::IoOut(port, data) => port_out(ctx, port, pio_width, data),
        VcpuExit::MmioRead(addr, data) => {
            match ctx.bus.read(addr, data) {
                Access::Handled => {}
                Access::Unmapped => log_unmapped("read", addr, data.len()),
                Access::DeviceFailed => {
                    return Some(Stop::new(
                        EXIT_VMM_ERROR,
                        format!("device at {addr:#x} failed"),
                    ))
                }
            }
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            match ctx.bus.write(addr, data) {
                Access::Handled => {}
                Access::Unmapped => log_unmapped("write", addr, data.len()),
                Access::DeviceFailed => {
                    return Some(Stop::new(
                        EXIT_VMM_ERROR,
                        format!("device at {addr:#x} failed"),
                    ))
                }
            }
            None
        }
        // Only reached without an in-kernel LAPIC halt path: treat as power-off.
        VcpuExit::Hlt => Some(Stop::new(EXIT_OK, "guest halted")),
        VcpuExit::Shutdown => Some(Stop::new(
            EXIT_GUEST_FAULT,
            "guest fault: triple fault (KVM_EXIT_SHUTDOWN)",
        )),
        VcpuExit::FailEntry(reason, cpu) => Some(Stop::new(
            EXIT_GUEST_FAULT,
            format!("guest fault: VM entry failed (reason {reason:#x}, cpu {cpu})"),
        )),
        VcpuExit::InternalError => Some(Stop::new(
            EXIT_GUEST_FAULT,
            "guest fault: KVM internal error (emulation failure)",
        )),
        VcpuExit::SystemEvent(ty, _) => match ty {
            KVM_SYSTEM_EVENT_SHUTDOWN => Some(Stop::new(EXIT_OK, "guest powered off")),
            KVM_SYSTEM_EVENT_RESET => Some(Stop::new(EXIT_OK, "guest reset")),
            other => Some(Stop::new(
                EXIT_GUEST_FAULT,
                format!("guest fault: system event {other}"),
            )),
        },
        VcpuExit::Intr => None,
        // Split irqchip: the guest EOI'd a vector KVM thinks our IOAPIC routes as
        // level-triggered. Our IOAPIC delivers every pin as an edge: nothing to do.
        VcpuExit::IoapicEoi(_) => None,
        other => Some(Stop::new(
            EXIT_GUEST_FAULT,
            format!("guest fault: unhandled VM exit {}", exit_name(&other)),
        )),
    }
}

fn exit_name(e: &VcpuExit<'_>) -> &'static str {
    match e {
        VcpuExit::Unknown => "Unknown",
        VcpuExit::Exception => "Exception",
        VcpuExit::Hypercall(_) => "Hypercall",
        VcpuExit::Debug(_) => "Debug",
        VcpuExit::IrqWindowOpen => "IrqWindowOpen",
        VcpuExit::Nmi => "Nmi",
        VcpuExit::Unsupported(_) => "Unsupported",
        _ => "other",
    }
}

/// Runs the vcpu until the VM stops. Never returns an error: every terminal
/// condition goes through the latch.
pub fn run(fd: &mut VcpuFd, id: u8, ctx: &VcpuCtx) {
    // SAFETY: the byte is in this vcpu's kvm_run mapping, which outlives the thread (its
    // VcpuFd is never dropped); this loop only writes 0 to it (set_kvm_immediate_exit).
    unsafe { crate::sys::register_immediate_exit(&mut fd.get_kvm_run().immediate_exit) };
    let kvm_run: *const kvm_bindings::kvm_run = fd.get_kvm_run();
    loop {
        if ctx.latch.is_stopping() {
            return;
        }
        let stop = match fd.run() {
            Ok(exit) => {
                // SAFETY: `kvm_run` is this thread's vcpu's kvm_run, mapped as long as `fd`
                // lives (past this loop); KVM_RUN has just returned on this thread; the
                // exit borrows no byte that pio_width reads (a port-I/O exit's data is a
                // page into the mapping; other exits' data is in the union, which it reads
                // only for port I/O).
                let width = unsafe { crate::sys::pio_width(kvm_run) };
                handle(ctx, exit, width)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                fd.set_kvm_immediate_exit(0);
                None
            }
            // arm64: some guest faults come back as KVM_RUN errors (an MMIO access
            // without a syndrome, a vcpu the guest made unrunnable).
            #[cfg(target_arch = "aarch64")]
            Err(e) => {
                let reason = fd.get_kvm_run().exit_reason;
                crate::arch::aarch64::run::run_failed(id, e.errno(), reason)
            }
            #[cfg(not(target_arch = "aarch64"))]
            Err(e) => Some(Stop::new(
                EXIT_VMM_ERROR,
                format!("vcpu {id}: KVM_RUN failed: {e}"),
            )),
        };
        if let Some(s) = stop {
            ctx.latch.request(s);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::bus::MmioBusBuilder;
    use crate::devices::serial::{SerialTarget, Sink};
    use vmm_sys_util::eventfd::EventFd;

    fn ctx(dir: &std::path::Path) -> VcpuCtx {
        let sink = Sink::open(&SerialTarget::File(dir.join("serial"))).unwrap();
        VcpuCtx {
            bus: MmioBusBuilder::new().build(),
            ports: Arc::new(PortDevices {
                serial: Arc::new(Mutex::new(SerialDevice::new(
                    crate::devices::irq::IrqLine::none(),
                    sink,
                    EventFd::new(0).unwrap(),
                ))),
                i8042: Mutex::new(I8042::new()),
            }),
            latch: Arc::new(ExitLatch::new().unwrap()),
        }
    }

    fn code(s: Option<Stop>) -> Option<i32> {
        s.map(|s| s.code)
    }

    #[test]
    fn exits_map_to_the_documented_codes() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path());
        assert_eq!(
            code(handle(&c, VcpuExit::Shutdown, 1)),
            Some(EXIT_GUEST_FAULT)
        );
        assert_eq!(
            code(handle(&c, VcpuExit::InternalError, 1)),
            Some(EXIT_GUEST_FAULT)
        );
        assert_eq!(
            code(handle(&c, VcpuExit::FailEntry(7, 0), 1)),
            Some(EXIT_GUEST_FAULT)
        );
        assert_eq!(
            code(handle(&c, VcpuExit::Unknown, 1)),
            Some(EXIT_GUEST_FAULT)
        );
        assert_eq!(
            code(handle(&c, VcpuExit::Exception, 1)),
            Some(EXIT_GUEST_FAULT)
        );
        assert_eq!(
            code(handle(
                &c,
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, &[]),
                1
            )),
            Some(EXIT_OK)
        );
        assert_eq!(
            code(handle(
                &c,
                VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, &[]),
                1
            )),
            Some(EXIT_OK)
        );
        assert_eq!(
            code(handle(&c, VcpuExit::SystemEvent(99, &[]), 1)),
            Some(EXIT_GUEST_FAULT)
        );
        assert_eq!(code(handle(&c, VcpuExit::Intr, 1)), None);
        // Port I/O exits exist on x86 only.
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(
                code(handle(&c, VcpuExit::IoOut(0x64, &[0xfe]), 1)),
                Some(EXIT_OK)
            );
            assert_eq!(code(handle(&c, VcpuExit::IoOut(0x80, &[1]), 1)), None);
            assert_eq!(code(handle(&c, VcpuExit::IoOut(0x3f8, &[]), 1)), None);
        }
    }

    #[test]
    fn port_and_mmio_reads_of_nothing_are_all_ones() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path());
        #[cfg(target_arch = "x86_64")]
        {
            let mut d = [0u8; 4];
            assert_eq!(code(handle(&c, VcpuExit::IoIn(0x1234, &mut d), 1)), None);
            assert_eq!(d, [0xff; 4]);
        }
        let mut m = [0u8; 8];
        assert_eq!(
            code(handle(&c, VcpuExit::MmioRead(0xe000_0000, &mut m), 1)),
            None
        );
        assert_eq!(m, [0xff; 8]);
        assert_eq!(
            code(handle(&c, VcpuExit::MmioWrite(0xe000_0000, &[1, 2]), 1)),
            None
        );
        // Serial LSR: transmitter empty bits set.
        #[cfg(target_arch = "x86_64")]
        {
            let mut lsr = [0u8; 1];
            handle(&c, VcpuExit::IoIn(0x3fd, &mut lsr), 1);
            assert_eq!(lsr[0] & 0x60, 0x60);
        }
    }

    /// Regression (review): a port-I/O exit's data holds `count` accesses of `size` bytes
    /// (kvm-ioctls passes `size * count` bytes); only its first byte was used. Each byte is
    /// now an access of its own: repetitions at the same port, wider accesses' byte lanes
    /// at the next ports.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn port_io_data_is_split_into_one_byte_accesses_as_on_an_8_bit_bus() {
        let lanes = |port, width, len| pio_lanes(port, width, len).collect::<Vec<_>>();
        let p = Some(0x3f8);
        assert_eq!(lanes(0x3f8, 1, 3), [(0, p), (1, p), (2, p)], "rep insb");
        assert_eq!(
            lanes(0x3f8, 2, 4),
            [(0, p), (1, Some(0x3f9)), (2, p), (3, Some(0x3f9))],
            "rep insw"
        );
        assert_eq!(lanes(0x3fc, 4, 4).last(), Some(&(3, Some(0x3ff))), "inl");
        assert_eq!(lanes(0xffff, 2, 2), [(0, Some(0xffff)), (1, None)]);
        assert_eq!(lanes(0x60, 4, 6).len(), 4, "no partial access");
        assert!(lanes(0x60, 0, 0).is_empty());
    }

    /// Regression (review): an exit of several one-byte writes to the UART (a `rep outsb`
    /// that KVM batches: it does for SEV-ES guests; on this host each repetition exits)
    /// sent only its first byte, and `rep insb` (which KVM batches: its emulator reads
    /// ahead) read one byte from the receive FIFO, the rest of the guest's buffer 0xff.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn rep_outsb_and_rep_insb_on_the_serial_port_move_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path());
        assert_eq!(code(handle(&c, VcpuExit::IoOut(0x3f8, b"abc\n"), 1)), None);
        assert_eq!(std::fs::read(dir.path().join("serial")).unwrap(), b"abc\n");
        assert_eq!(c.ports.serial.lock().unwrap().enqueue_input(b"xyz"), 3);
        let mut d = [0u8; 3];
        assert_eq!(code(handle(&c, VcpuExit::IoIn(0x3f8, &mut d), 1)), None);
        assert_eq!(&d, b"xyz");
    }

    /// A 16-bit read of the UART is two byte reads, 0x3f8 then 0x3f9 (as the chipset splits
    /// it): one byte leaves the receive FIFO, the high byte is the interrupt enable register
    /// (0), not 0xff. The same two bytes as `rep insb` of 2 read the FIFO twice.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_wide_port_read_reads_the_next_ports_in_its_high_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path());
        assert_eq!(c.ports.serial.lock().unwrap().enqueue_input(b"pqr"), 3);
        let mut w = [0u8; 2];
        handle(&c, VcpuExit::IoIn(0x3f8, &mut w), 2);
        assert_eq!(w, [b'p', 0x00]);
        let mut rep = [0u8; 2];
        handle(&c, VcpuExit::IoIn(0x3f8, &mut rep), 1);
        assert_eq!(&rep, b"qr");
    }

    /// Regression (review): a string write to the i8042 acted on its first byte only, so
    /// a reset command after another byte was lost.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_byte_of_a_string_write_reaches_the_i8042() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path());
        assert_eq!(
            code(handle(&c, VcpuExit::IoOut(0x64, &[0xaa, 0xfe]), 1)),
            Some(EXIT_OK)
        );
    }

    /// The width handed to `handle` is KVM's `io.size`, read only for a port-I/O exit.
    #[test]
    fn the_pio_width_is_kvm_runs_io_size() {
        let mut run = kvm_bindings::kvm_run {
            exit_reason: kvm_bindings::KVM_EXIT_IO,
            ..Default::default()
        };
        run.__bindgen_anon_1.io = kvm_bindings::kvm_run__bindgen_ty_1__bindgen_ty_4 {
            size: 4,
            count: 3,
            ..Default::default()
        };
        // SAFETY: a live kvm_run of this test's own, not borrowed.
        assert_eq!(unsafe { crate::sys::pio_width(&run) }, 4);
        run.exit_reason = kvm_bindings::KVM_EXIT_MMIO;
        // SAFETY: as above.
        assert_eq!(unsafe { crate::sys::pio_width(&run) }, 1);
    }
}
