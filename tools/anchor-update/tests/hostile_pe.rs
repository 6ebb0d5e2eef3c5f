// SPDX-License-Identifier: GPL-3.0-or-later
//! A slot file on the ESP is not authenticated until it is verified: reading its version
//! (status, bless's report, apply's floor) must not allocate what its section headers
//! claim. One test in its own binary: it lowers the address-space limit of its process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use anchor_update::esp::{Esp, EspError};

mod common;

use common::stub_with_vsize;

fn vm_size() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

#[test]
fn a_slot_file_claiming_a_4_gib_section_is_refused_not_allocated() {
    let d = tempfile::tempdir().unwrap();
    let esp = Esp::new(d.path());
    std::fs::create_dir_all(esp.entry_dir()).unwrap();
    std::fs::write(esp.entry_path("anchor-A.efi"), stub_with_vsize(0xffff_fff0)).unwrap();
    // 1 GiB more address space than now: plenty for reading a small file, not for the
    // 4 GiB the header claims (an allocation failure aborts the process).
    let limit = vm_size() + (1 << 30);
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
    let r = esp.version_of("anchor-A.efi");
    assert!(matches!(r, Err(EspError::Image { .. })), "{r:?}");
}
