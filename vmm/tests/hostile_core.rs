// SPDX-License-Identifier: GPL-3.0-or-later
//! Hostile-guest tests of the VMM core (exits, port I/O, MMIO outside any
//! device, serial, i8042, boot timer, CLI/setup failures). They run the
//! interpreter guest (tests/common/guest.S) on this machine's KVM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{run_script, run_vmm, Outcome, Script, BOOT_TIMER_BASE};

const T: Duration = Duration::from_secs(20);
/// Peak RSS bound for a 32 MiB guest that touches only a few pages: 8 MiB for the VMM
/// itself, plus the guest RAM these guests touch. Guest RAM is backed by 2 MiB pages where
/// the host has transparent huge pages (`sys::map_guest_ram`), and a script guest's code,
/// boot structures, page tables, initrd and scratch lie in at most four 2 MiB regions.
const RSS_BOUND_KIB: u64 = 8 * 1024 + 4 * 2 * 1024;

fn assert_exit(o: &Outcome, code: i32) {
    assert!(!o.timed_out, "VMM hung: {o:#?}");
    assert_eq!(o.exit_code, Some(code), "{o:#?}");
    assert!(
        o.peak_rss_kib < RSS_BOUND_KIB,
        "peak RSS {} KiB: {o:#?}",
        o.peak_rss_kib
    );
}

fn one_line_stderr(o: &Outcome) -> &str {
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line: {o:#?}");
    lines[0]
}

#[test]
fn end_prints_and_resets_with_exit_0() {
    let o = run_script(Script::new().print("HELLO").end(), &[], T);
    assert_exit(&o, 0);
    assert_eq!(o.serial, "HELLO\nEND\n");
    assert!(o.stderr.contains("guest reset"), "{o:#?}");
}

#[test]
fn triple_fault_exits_4_with_reason() {
    let o = run_script(
        Script::new().print("PRE").triple_fault().print("POST"),
        &[],
        T,
    );
    assert_exit(&o, 4);
    assert_eq!(o.serial, "PRE\n");
    assert!(one_line_stderr(&o).contains("triple fault"), "{o:#?}");
}

#[test]
fn triple_fault_on_one_of_two_vcpus_stops_the_process() {
    // vcpu 1 waits for INIT/SIPI; the fault of vcpu 0 must still end the VM.
    let o = run_script(Script::new().triple_fault(), &["--vcpus", "2"], T);
    assert_exit(&o, 4);
    assert!(o.stderr.contains("triple fault"));
}

#[test]
fn mmio_outside_any_device_is_ignored_and_vmm_keeps_serving() {
    let mut s = Script::new();
    for addr in [
        0xe000_0000u64,                 // hole in the MMIO gap
        BOOT_TIMER_BASE,                // boot timer absent without --boot-timer
        common::virtio_base(5),         // past the last virtio device
        common::virtio_base(0) + 0xffc, // straddles the end of a window (8-byte read)
        0x0300_0000,                    // beyond the end of 32 MiB of RAM
    ] {
        s.write(addr, 4, 0xdead_beef)
            .write(addr, 1, 0xff)
            .read(addr, 8);
    }
    // A flood of unmapped writes: stderr logging stays rate-limited.
    s.repeat(5000, 1).write(0xe000_1000, 8, 0x1234);
    s.read(common::virtio_base(0), 4).print("ALIVE").end();
    let o = run_script(&s, &[], T);
    assert_exit(&o, 0);
    let lines: Vec<&str> = o.serial.lines().collect();
    // Line 3 is the read straddling the end of device 0's window: KVM splits
    // it at the page boundary, so its low half comes from the device.
    assert_eq!(lines.len(), 8, "{o:#?}");
    for i in [0, 1, 2, 4] {
        assert_eq!(lines[i], "R ffffffffffffffff", "line {i}: {o:#?}");
    }
    assert!(lines[3].starts_with("R ffffffff"), "{o:#?}");
    // virtio magic "virt" of the first device (rng) is still served.
    assert_eq!(lines[5], "R 0000000074726976");
    assert_eq!(&lines[6..], &["ALIVE", "END"]);
    let logged = o.stderr.lines().filter(|l| l.contains("unmapped")).count();
    assert!(
        logged <= 30,
        "unmapped accesses not rate-limited: {logged} lines"
    );
}

#[test]
fn port_io_flood_to_random_ports_is_harmless() {
    // xorshift so the sequence is reproducible.
    let mut x: u32 = 0x9e37_79b9;
    let mut s = Script::new();
    let mut n = 0;
    while n < 600 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = (x & 0xffff) as u16;
        // Skip the reset command port and the UART (re-programming it could
        // legitimately garble the output we assert on).
        if port == 0x64 || (0x3f8..0x400).contains(&port) {
            continue;
        }
        s.outb(port, (x >> 16) as u8);
        n += 1;
    }
    s.inb(0x80).inb(0xcf8).inb(0x1234).print("ALIVE").end();
    let o = run_script(&s, &[], T);
    assert_exit(&o, 0);
    let lines: Vec<&str> = o.serial.lines().collect();
    assert_eq!(lines, ["I ff", "I ff", "I ff", "ALIVE", "END"], "{o:#?}");
}

#[test]
fn serial_flood_keeps_memory_bounded() {
    let lines = 10_000u64;
    let o = run_script(
        Script::new().repeat(lines, 1).print("FLOOD123").end(),
        &[],
        Duration::from_secs(60),
    );
    assert_exit(&o, 0);
    assert_eq!(o.serial.len() as u64, lines * 9 + 4);
    assert!(o.serial.ends_with("FLOOD123\nEND\n"));
}

#[test]
fn serial_to_a_socket_that_never_reads_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let arg = format!("socket:{}", sock.display());
    let acceptor = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let o = run_script(
        Script::new().repeat(20_000, 1).print("SOCKFLD").end(),
        &["--serial", &arg],
        Duration::from_secs(60),
    );
    let _peer = acceptor.join().unwrap().unwrap();
    assert_exit(&o, 0);
}

#[test]
fn i8042_answers_like_a_controller_and_0xfe_resets() {
    let s = Script::new()
        .inb(0x64) // status: input buffer empty, nothing to read
        .outb(0x64, 0xaa) // self test
        .inb(0x64)
        .inb(0x60)
        .outb(0x64, 0xfe) // reset
        .print("AFTER")
        .end()
        .clone();
    let o = run_script(&s, &[], T);
    assert_exit(&o, 0);
    let lines: Vec<&str> = o.serial.lines().collect();
    let st0 = u8::from_str_radix(&lines[0][2..], 16).unwrap();
    assert_eq!(st0 & 0x03, 0, "status {st0:#x}");
    let st1 = u8::from_str_radix(&lines[1][2..], 16).unwrap();
    assert_eq!(st1 & 0x01, 1, "output buffer full after self test");
    assert_eq!(lines[2], "I 55");
    assert_eq!(lines.len(), 3, "guest ran past the reset: {o:#?}");
    assert!(o.stderr.contains("i8042"));
}

#[test]
fn hlt_with_interrupts_off_waits_without_spinning() {
    // Documented behaviour: a vcpu halted with IF=0 sleeps in KVM waiting for
    // an interrupt (none comes); the VMM does not exit on its own and burns no
    // CPU; the supervisor's timeout ends it.
    let s = Script::new()
        .print("HALT")
        .hlt()
        .print("WOKE")
        .end()
        .clone();
    let o = run_script(&s, &[], Duration::from_secs(3));
    assert!(o.timed_out, "{o:#?}");
    assert_eq!(o.signal, Some(9));
    assert_eq!(o.serial, "HALT\n");
    assert!(
        o.cpu_time < Duration::from_millis(1000),
        "halted guest made the VMM spin: {:?} CPU in {:?}",
        o.cpu_time,
        o.elapsed
    );
}

#[test]
fn boot_timer_magic_write_logs_the_line() {
    let o = run_script(
        Script::new()
            .write(BOOT_TIMER_BASE, 1, 123)
            .print("AFTER")
            .end(),
        &["--boot-timer"],
        T,
    );
    assert_exit(&o, 0);
    let line = o
        .stderr
        .lines()
        .find(|l| l.starts_with("boot-timer:"))
        .expect("no boot-timer line");
    let ms: f64 = line
        .trim_start_matches("boot-timer: guest init after ")
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!(ms > 0.0);
    assert_eq!(o.serial, "AFTER\nEND\n");
}

#[test]
fn boot_timer_logs_once_however_often_the_guest_writes_the_magic() {
    // Regression (review): every magic write used to print a line, so a guest
    // could flood the VMM's stderr through the boot timer.
    let o = run_script(
        Script::new()
            .write(BOOT_TIMER_BASE, 1, 123)
            .repeat(5000, 1)
            .write(BOOT_TIMER_BASE, 1, 123)
            .print("AFTER")
            .end(),
        &["--boot-timer"],
        T,
    );
    assert_exit(&o, 0);
    let n = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("boot-timer:"))
        .count();
    assert_eq!(n, 1, "{o:#?}");
    assert_eq!(o.serial, "AFTER\nEND\n");
}

#[test]
fn boot_timer_ignores_other_values() {
    let o = run_script(
        Script::new()
            .write(BOOT_TIMER_BASE, 1, 122)
            .write(BOOT_TIMER_BASE, 2, 123)
            .write(BOOT_TIMER_BASE, 4, 0xffff_ff7b)
            .write(BOOT_TIMER_BASE + 1, 1, 123)
            .write(BOOT_TIMER_BASE + 0xfff, 1, 123)
            .read(BOOT_TIMER_BASE, 8)
            .end(),
        &["--boot-timer"],
        T,
    );
    assert_exit(&o, 0);
    assert!(!o.stderr.contains("boot-timer"), "{o:#?}");
    assert_eq!(o.serial, "R 0000000000000000\nEND\n");
}

#[test]
fn huge_or_tiny_mem_is_a_usage_error() {
    for mem in ["99999999", "18446744073709551615", "1", "lots"] {
        let o = run_script(Script::new().end(), &["--mem-mib", mem], T);
        assert_exit(&o, 2);
        assert!(one_line_stderr(&o).contains("--mem-mib"), "{o:#?}");
    }
}

#[test]
fn usage_errors_name_the_flag() {
    for (args, flag) in [
        (&["--bogus"][..], "--bogus"),
        (&[][..], "--kernel"),
        (&["--kernel", "/x", "--vcpus", "0"][..], "--vcpus"),
        (&["--kernel", "/x", "--serial", "tcp:1"][..], "--serial"),
        (&["--kernel", "/x", "--vsock-cid", "3"][..], "--vsock-cid"),
        (&["--kernel", "/x", "--disk", "/a,rw"][..], "--disk"),
        (&["--kernel"][..], "--kernel"),
    ] {
        let o = run_vmm(args, T);
        assert_exit(&o, 2);
        assert!(one_line_stderr(&o).contains(flag), "{args:?}: {o:#?}");
    }
    let o = run_vmm(&["--help"], T);
    assert_exit(&o, 0);
}

#[test]
fn missing_or_garbage_kernel_is_a_vmm_error() {
    common::require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let o = run_vmm(&["--kernel", missing.to_str().unwrap()], T);
    assert_exit(&o, 3);
    assert!(one_line_stderr(&o).contains("kernel"), "{o:#?}");

    let garbage = dir.path().join("garbage");
    let mut bytes = vec![0u8; 64 * 1024];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for b in bytes.iter_mut() {
        x ^= x << 7;
        x ^= x >> 9;
        *b = x as u8;
    }
    std::fs::write(&garbage, &bytes).unwrap();
    let o = run_vmm(&["--kernel", garbage.to_str().unwrap()], T);
    assert_exit(&o, 3);
    assert!(one_line_stderr(&o).contains("kernel"), "{o:#?}");

    // An ELF header that lies about its program headers.
    let mut elf = bytes.clone();
    elf[..4].copy_from_slice(b"\x7fELF");
    std::fs::write(&garbage, &elf).unwrap();
    let o = run_vmm(&["--kernel", garbage.to_str().unwrap()], T);
    assert_exit(&o, 3);

    let o = run_vmm(
        &[
            "--kernel",
            common::guest_elf().to_str().unwrap(),
            "--initrd",
            missing.to_str().unwrap(),
        ],
        T,
    );
    assert_exit(&o, 3);
    assert!(one_line_stderr(&o).contains("initrd"), "{o:#?}");
}

/// Regression (review): the kernel file was mapped with MAP_POPULATE whole before any
/// loader looked at it, so a kernel "file" far larger than guest RAM (here a sparse
/// 512 MiB one for a 32 MiB guest; a 1 TiB one costs an hour of CPU and the host's page
/// cache) was read in full before being refused for what its first page already said.
/// Nothing that large can load (an arm64 Image is loaded whole; an ELF's segments must
/// fit in RAM): it is refused without being read, and the VMM stays small.
#[test]
fn a_kernel_file_larger_than_guest_ram_is_refused_without_reading_it() {
    common::require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(512 << 20).unwrap();
    drop(f);
    let o = run_vmm(
        &["--kernel", huge.to_str().unwrap(), "--mem-mib", "32"],
        Duration::from_secs(120),
    );
    assert_exit(&o, 3);
    assert!(one_line_stderr(&o).contains("kernel"), "{o:#?}");
}

#[test]
fn serial_socket_that_does_not_exist_is_a_vmm_error() {
    let o = run_script(
        Script::new().end(),
        &["--serial", "socket:/nonexistent/anchor.sock"],
        T,
    );
    assert_exit(&o, 3);
    assert!(one_line_stderr(&o).contains("/nonexistent/anchor.sock"));
}

#[test]
fn guest_that_never_exits_is_killed_by_the_timeout() {
    // Honest behaviour: the VMM runs a busy guest until someone stops it.
    let o = run_script(
        Script::new()
            .print("BUSY")
            .repeat(u64::MAX, 1)
            .write(0x30_0000, 8, 1)
            .end(),
        &[],
        Duration::from_secs(2),
    );
    assert!(o.timed_out);
    assert_eq!(o.signal, Some(9));
    assert_eq!(o.serial, "BUSY\n");
}

#[test]
fn unknown_script_op_and_script_end_without_end_op() {
    let o = run_script(Script::new().op(77, 0, 0, 0).print("NEXT"), &[], T);
    assert_exit(&o, 0);
    assert_eq!(o.serial, "BADOP\nNEXT\nEOS\n");
}

#[test]
fn poll_and_ram_round_trip_in_scratch() {
    let o = run_script(
        Script::new()
            .write(0x20_0000, 8, 0x0123_4567_89ab_cdef)
            .read(0x20_0000, 8)
            .read(0x20_0000, 2)
            .poll(0x20_0000, 4, 0x89ab_cdef)
            .poll(0x20_0008, 1, 0)
            .end(),
        &[],
        T,
    );
    assert_exit(&o, 0);
    assert_eq!(
        o.serial,
        "R 0123456789abcdef\nR 000000000000cdef\nP ok\nP ok\nEND\n"
    );
}

#[test]
fn pvh_elf_boots_through_the_32bit_entry_with_start_info() {
    common::require_kvm();
    let kernel = common::pvh_guest_elf().to_str().unwrap().to_owned();
    let o = run_vmm(
        &[
            "--kernel",
            &kernel,
            "--cmdline",
            "hello pvh",
            "--mem-mib",
            "32",
        ],
        T,
    );
    assert_exit(&o, 0);
    // start_info magic checked by the guest, 2 memmap entries (low RAM, high RAM),
    // the command line with the rng device appended.
    assert_eq!(
        o.serial,
        "PVH ok 2 0\nhello pvh virtio_mmio.device=4K@0xd0000000:5\n"
    );
}

#[test]
fn pvh_initrd_is_passed_as_module_0() {
    common::require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, vec![0x5au8; 10_000]).unwrap();
    let kernel = common::pvh_guest_elf().to_str().unwrap().to_owned();
    let o = run_vmm(
        &[
            "--kernel",
            &kernel,
            "--initrd",
            initrd.to_str().unwrap(),
            "--cmdline",
            "i",
        ],
        T,
    );
    assert_exit(&o, 0);
    assert!(o.serial.starts_with("PVH ok 2 1\ni "), "{o:#?}");
}

#[test]
fn virtio_devices_are_announced_in_the_fixed_order() {
    common::require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    std::fs::write(&a, vec![0u8; 4096]).unwrap();
    std::fs::write(&b, vec![0u8; 4096]).unwrap();
    let uds = dir.path().join("v.sock");
    let kernel = common::pvh_guest_elf().to_str().unwrap().to_owned();
    let a_ro = format!("{},ro", a.display());
    let o = run_vmm(
        &[
            "--kernel",
            &kernel,
            "--cmdline",
            "x",
            "--mem-mib",
            "32",
            "--disk",
            &a_ro,
            "--disk",
            b.to_str().unwrap(),
            "--vsock-cid",
            "3",
            "--vsock-uds",
            uds.to_str().unwrap(),
        ],
        T,
    );
    assert_exit(&o, 0);
    assert_eq!(
        o.serial,
        "PVH ok 2 0\nx virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 \
         virtio_mmio.device=4K@0xd0002000:7 virtio_mmio.device=4K@0xd0003000:8\n"
    );
}

#[test]
fn mp_table_describes_the_vcpus_to_the_guest() {
    let o = run_script(
        Script::new()
            .read(0x9_fc00, 4)
            .read(0x9_fc10, 4)
            .read(0x9_fc10 + 34, 2)
            .end(),
        &["--vcpus", "3"],
        T,
    );
    assert_exit(&o, 0);
    // "_MP_", "PCMP", 3 processors + bus + IOAPIC + 6 pins (the serial line's 4 and the
    // rng's 5 are the last) + 2 local = 13 entries.
    assert_eq!(
        o.serial,
        "R 000000005f504d5f\nR 00000000504d4350\nR 000000000000000d\nEND\n"
    );
}

#[test]
fn linux_64bit_boot_protocol_zero_page_is_filled_in() {
    let zp = 0x7000u64;
    let mut s = Script::new();
    s.read(zp + 0x1fe, 2) // boot_flag
        .read(zp + 0x202, 4) // header "HdrS"
        .read(zp + 0x1e8, 1) // e820 entries
        .read(zp + 0x2d0 + 20 + 8, 8) // size of e820 entry 1 (RAM from 1 MiB)
        .read(zp + 0x228, 4) // cmd_line_ptr
        .read(0x2_0000, 8) // start of the default command line
        .read(zp + 0x21c, 4) // ramdisk_size = script length
        .end();
    let script_len = s.bytes().len();
    let o = run_script(&s, &[], T);
    assert_exit(&o, 0);
    let want = format!(
        "R 000000000000aa55\nR 0000000053726448\nR 0000000000000002\nR {:016x}\n\
         R 0000000000020000\nR {:016x}\nR {script_len:016x}\nEND\n",
        (32u64 << 20) - 0x10_0000,
        u64::from_le_bytes(*b"console=")
    );
    assert_eq!(o.serial, want);
}

#[test]
fn fault_on_one_vcpu_stops_another_that_is_busy_in_the_guest() {
    // vcpu 0 wakes vcpu 1 with INIT + SIPI (vector 0x10 -> real-mode code at
    // 0x10000 that sets a flag at 0x600 and spins forever), sees the flag,
    // then triple-faults. The VMM must stop the spinning vcpu and exit 4.
    let ap_code = u64::from_le_bytes([0xc6, 0x06, 0x00, 0x06, 0x01, 0xeb, 0xfe, 0x90]);
    let icr_lo = 0xfee0_0300;
    let icr_hi = 0xfee0_0310;
    let o = run_script(
        Script::new()
            .write(0x1_0000, 8, ap_code)
            .write(icr_hi, 4, 1 << 24)
            .write(icr_lo, 4, 0x4500) // INIT
            .write(icr_hi, 4, 1 << 24)
            .write(icr_lo, 4, 0x4610) // SIPI, vector 0x10
            .poll(0x600, 1, 1)
            .triple_fault(),
        &["--vcpus", "2"],
        T,
    );
    assert_exit(&o, 4);
    assert_eq!(o.serial, "P ok\n", "vcpu 1 did not run: {o:#?}");
    assert!(one_line_stderr(&o).contains("triple fault"));
}

/// Regression (review): a console that stops reading (`--serial stdout` into a full pipe
/// or pty) blocks the vcpu that writes to it while it holds the UART, which is the
/// intended backpressure on the guest. The VMM thread's open-line flusher then waited
/// for the UART too, so the VMM thread (the event loop: every virtio device and the exit
/// latch) hung with it: a reset requested by another vcpu was never acted on and the VMM
/// ran on until it was killed.
#[test]
fn a_stalled_console_does_not_wedge_the_vmm_thread() {
    let mut flood = Script::new();
    flood
        .write(0x600, 1, 1)
        .repeat(1_000_000, 1)
        .print("FLOOD123");
    stalled_console_then_reset(&flood, false);
}

/// Regression (review): the VMM thread itself wrote an open line out with a blocking
/// write(2): into a console with less room than the line it waited, with the same
/// result. 455 lines of 9 bytes leave one byte of the one-page pipe; the guest then
/// leaves a two-byte line open and halts, so only the VMM thread writes.
#[test]
fn an_open_line_for_a_full_console_does_not_wedge_the_vmm_thread() {
    let mut open_line = Script::new();
    open_line
        .repeat(455, 1)
        .print("FLOOD123")
        .outb(0x3f8, b'x')
        .outb(0x3f8, b'x')
        .write(0x600, 1, 1)
        .hlt();
    stalled_console_then_reset(&open_line, false);
}

/// The same with keys typed while the console is stalled: the VMM thread moving them
/// into the UART's receive FIFO waited for the UART as well.
#[test]
fn input_typed_into_a_stalled_console_does_not_wedge_the_vmm_thread() {
    let mut flood = Script::new();
    flood
        .write(0x600, 1, 1)
        .repeat(1_000_000, 1)
        .print("FLOOD123");
    stalled_console_then_reset(&flood, true);
}

/// vcpu 0 starts vcpu 1 and runs `guest` against a console nobody reads (a one-page
/// pipe); vcpu 1 resets the VM a while after `guest` sets the flag at 0x600. With
/// `typing`, a byte arrives on stdin every 20 ms meanwhile.
fn stalled_console_then_reset(guest: &Script, typing: bool) {
    common::require_kvm();
    // Real-mode code for vcpu 1 (SIPI vector 0x10 -> 0x1000:0): wait for vcpu 0's flag at
    // 0x600, give it time to block on the console, then reset through the i8042.
    #[rustfmt::skip]
    let ap: [u8; 24] = [
        0x80, 0x3e, 0x00, 0x06, 0x01,       // cmpb $1, 0x600
        0x75, 0xf9,                         // jne .-5
        0x66, 0xb9, 0x00, 0x00, 0x10, 0x00, // mov $0x100000, %ecx
        0x66, 0x49,                         // dec %ecx
        0x75, 0xfc,                         // jnz .-2
        0xb0, 0xfe,                         // mov $0xfe, %al
        0xe6, 0x64,                         // out %al, $0x64
        0xf4,                               // hlt
        0xeb, 0xfd,                         // jmp .-1
    ];
    let icr_lo = 0xfee0_0300;
    let icr_hi = 0xfee0_0310;
    let mut s = Script::new();
    s.code(0x1_0000, &ap)
        .write(icr_hi, 4, 1 << 24)
        .write(icr_lo, 4, 0x4500) // INIT
        .write(icr_hi, 4, 1 << 24)
        .write(icr_lo, 4, 0x4610); // SIPI, vector 0x10
    let script = common::unique("script");
    std::fs::write(&script, [s.bytes(), guest.bytes()].concat()).unwrap();
    // A pipe of one page that nobody reads: the console stalls after 4 KiB.
    let (mut rd, wr) = common::one_page_pipe();
    let mut child = std::process::Command::new(common::vmm_bin())
        .arg("--kernel")
        .arg(common::guest_elf())
        .arg("--initrd")
        .arg(&script)
        .args(["--mem-mib", "32", "--vcpus", "2", "--serial", "stdout"])
        .stdin(if typing {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::from(wr))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let typist = child.stdin.take().map(|mut keys| {
        std::thread::spawn(move || {
            // Ends when the VMM is gone (EPIPE) or after 30 s.
            for _ in 0..1500 {
                if std::io::Write::write_all(&mut keys, b"k").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    });
    let mut err = child.stderr.take().unwrap();
    let errs = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut v);
        v
    });
    let (status, timed_out, _, _) = common::wait_bounded(&mut child, T);
    let stderr = errs.join().unwrap();
    if let Some(t) = typist {
        t.join().unwrap();
    }
    let _ = std::fs::remove_file(&script);
    // The VMM is gone, and with it the pipe's only writer: read to its end.
    let mut console = Vec::new();
    std::io::Read::read_to_end(&mut rd, &mut console).unwrap();
    assert!(
        !timed_out,
        "the VMM hung behind its stalled console after vcpu 1's reset: {stderr}"
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("guest reset (i8042)"), "{stderr}");
    assert!(
        console.starts_with(b"FLOOD123\n"),
        "the guest's lines did not reach the console: {stderr}"
    );
}

/// Instructions a hostile kernel can run against the platform: each ends the VM with
/// exit 4 and one line naming the guest fault, or is absorbed (the VMM serves on).
#[test]
fn vcpu_level_faults_end_the_vm_with_a_guest_fault() {
    const CODE: u64 = 0x30_0000;
    let faults = [
        // #GP (no IDT): a write to an MSR that does not exist.
        "mov $0x12345678, %ecx\n xor %eax, %eax\n xor %edx, %edx\n wrmsr\n ret",
        // Instruction fetch from MMIO outside any device, and from the IOAPIC.
        "mov $0xe0000000, %rax\n call *%rax\n ret",
        "mov $0xfec00000, %rax\n call *%rax\n ret",
        // 16- and 32-byte accesses to device MMIO.
        "mov $0xfec00000, %rdi\n movdqu %xmm0, (%rdi)\n ret",
        "mov $0xe0000000, %rdi\n xor %eax, %eax\n xor %edx, %edx\n lock cmpxchg16b (%rdi)\n ret",
        "mov $0xe0000000, %rdi\n vmovdqu (%rdi), %ymm0\n ret",
    ];
    for src in faults {
        let code = common::assemble(src);
        let o = run_script(
            Script::new()
                .code(CODE, &code)
                .print("PRE")
                .call(CODE, 0)
                .print("POST")
                .end(),
            &[],
            T,
        );
        assert_exit(&o, 4);
        assert_eq!(o.serial, "PRE\n", "{src}: {o:#?}");
        assert!(o.stderr.trim_end().ends_with(")"), "{src}: {o:#?}");
        assert!(o.stderr.contains("guest fault"), "{src}: {o:#?}");
    }
    // Locked read-modify-writes, xchg and string copies on the read-only register page of
    // the first virtio device (the rng) and on the IOAPIC: absorbed. The magic stays; the
    // locked increment of STATUS (0x70) reaches the device as a write of 1 (ACKNOWLEDGE).
    let absorbed = "mov $0xd0000000, %rax\n lock incl (%rax)\n lock incl 0x70(%rax)\n \
                    mov $1, %ecx\n xchg %ecx, 0x70(%rax)\n \
                    mov $0x300000, %rsi\n mov %rax, %rdi\n mov $4096, %ecx\n rep movsb\n \
                    mov $0xfec00000, %rdi\n mov $0x300000, %rsi\n mov $4096, %ecx\n rep movsb\n \
                    ret";
    let code = common::assemble(absorbed);
    let o = run_script(
        Script::new()
            .code(CODE, &code)
            .call(CODE, 0)
            .read(common::virtio_base(0), 4)
            .read(common::virtio_base(0) + 0x70, 4)
            .end(),
        &[],
        T,
    );
    assert_exit(&o, 0);
    assert_eq!(
        o.serial, "R 0000000074726976\nR 0000000000000001\nEND\n",
        "{o:#?}"
    );
}

/// Regression (review): the VMM used only the first byte of a port-I/O exit's data. KVM
/// serves `rep insb` with one exit of `count` one-byte reads (its emulator reads ahead), and
/// `inw` with one exit of one two-byte read: the guest got 0xff for every byte but the
/// first (`R 00000000ffffff60`, `R 000000000000ff60`). Now each repetition reads the port
/// again and a wide read's high byte comes from the next port, as on a PC's 8-bit bus
/// (here: the UART's LSR, 0x60 when idle, and MSR). `rep outsb` exits once per byte on this
/// KVM and printed whole before too; it must stay whole.
#[test]
fn string_and_wide_port_io_reaches_the_device_for_every_byte() {
    const CODE: u64 = 0x30_0000;
    const BUF: u64 = 0x20_0000;
    let src = "mov $0x200000, %rdi\n mov $0x3fd, %dx\n mov $4, %ecx\n rep insb\n \
               mov $0x3fd, %dx\n inw %dx, %ax\n mov $0x200008, %rsi\n mov %ax, (%rsi)\n \
               mov $0x200010, %rsi\n movl $0x0a706572, (%rsi)\n mov $0x3f8, %dx\n mov $4, %ecx\n \
               rep outsb\n ret";
    let code = common::assemble(src);
    let o = run_script(
        Script::new()
            .code(CODE, &code)
            .call(CODE, 0)
            .read(BUF, 4)
            .read(BUF + 8, 2)
            .end(),
        &[],
        T,
    );
    assert_exit(&o, 0);
    assert_eq!(
        o.serial, "rep\nR 0000000060606060\nR 000000000000b060\nEND\n",
        "{o:#?}"
    );
}
