// SPDX-License-Identifier: GPL-3.0-or-later
//! The unsealed vault secret must not stay behind in this process's heap once the secret
//! anchor-vault holds is dropped. The secret comes back from the TPM encrypted (a salted
//! session with response encryption), so plaintext copies can only be made in-process:
//! by ESYS (libtss2-esys decrypts the response in place, in the command/response buffer
//! of its context, and returns it in a block it allocates) and by tss-esapi and
//! anchor-vault on top. The Rust side's frees are seen by the snooping allocator tests;
//! this one reads the C heap itself (the main thread's brk heap, through /proc/self/mem)
//! for the secret, so it runs on the main thread (`harness = false`).
//!
//! What it asserts on is the secret as the TPM marshals it (its size, big-endian, then
//! its bytes): the form ESYS decrypts in its command/response buffer, where it stayed
//! until the connection closed, and was then freed unwiped. The block ESYS allocates for
//! the result (host-endian size) is freed unwiped by tss-esapi (`Context::unseal` via
//! `MBox`), outside anchor-vault's reach (docs/THREAT-MODEL.md): whether a copy of it is
//! still whole depends on the allocator's reuse, so it is counted and printed, not asserted.
//!
//! The secret is sealed by a forked child, so the only way it can enter this process is
//! the unseal under test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Seek, SeekFrom, Write};

use anchor_vault::keys;
use anchor_vault::tpm::{SealedBlob, Tpm};
use common::Swtpm;

/// The sealed secret: 32 bytes, its last 16 the marker looked for (the first bytes of a
/// freed block are the allocator's own).
const SECRET: &[u8; 32] = b"0123456789abcdefunsealed-marker!";
const MARKER: &[u8] = b"unsealed-marker!";

fn auth() -> zeroize::Zeroizing<[u8; 32]> {
    keys::tpm_auth(&[1; 32], b"right passphrase")
}

/// Seal [`SECRET`] in a child process; its blob comes back through a pipe.
fn sealed_in_child(tpm: &Swtpm) -> SealedBlob {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: this process has one thread (no test harness), so the child may run on.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut t = Tpm::open(&tpm.tcti()).unwrap();
        let policy = t.pcr_policy(&[7]).unwrap();
        let blob = t.seal(SECRET, &*auth(), &policy).unwrap();
        let mut out = Vec::new();
        for part in [&blob.public, &blob.private, blob.srk_name.as_ref().unwrap()] {
            out.extend_from_slice(&u32::try_from(part.len()).unwrap().to_le_bytes());
            out.extend_from_slice(part);
        }
        // SAFETY: the write end is ours; `out` is far smaller than a pipe buffer.
        let mut w = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        w.write_all(&out).unwrap();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closes our copy of the write end, so the read sees the child's end of file.
    unsafe { libc::close(fds[1]) };
    // SAFETY: the read end is ours from here on.
    let mut r = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).unwrap();
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let mut parts = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        parts.push(bytes[at + 4..at + 4 + n].to_vec());
        at += 4 + n;
    }
    assert_eq!(parts.len(), 3, "the child sealed nothing");
    SealedBlob {
        public: parts[0].clone(),
        private: parts[1].clone(),
        srk_name: Some(parts[2].clone()),
    }
}

/// How many times `pattern` is in the brk heap now. Read through a buffer on the stack
/// (a heap buffer would hold a copy of what it looks for).
fn heap_copies(pattern: &[u8]) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| l.ends_with("[heap]"))
        .expect("a brk heap");
    let range = line.split(' ').next().unwrap();
    let (lo, hi) = range.split_once('-').unwrap();
    let (lo, hi) = (
        u64::from_str_radix(lo, 16).unwrap(),
        u64::from_str_radix(hi, 16).unwrap(),
    );
    let mut mem = std::fs::File::open("/proc/self/mem").unwrap();
    let mut buf = [0u8; 65536];
    let mut found = 0;
    let mut at = lo;
    while at < hi {
        // Chunks overlap by the marker's length less one, so none is missed or counted twice.
        let len = usize::try_from((hi - at).min(buf.len() as u64)).unwrap();
        mem.seek(SeekFrom::Start(at)).unwrap();
        mem.read_exact(&mut buf[..len]).unwrap();
        found += buf[..len]
            .windows(pattern.len())
            .filter(|w| *w == pattern)
            .count();
        if at + len as u64 >= hi {
            break;
        }
        at += (len - (pattern.len() - 1)) as u64;
    }
    found
}

/// This binary's one test, as it answers the test-list protocol of libtest (which
/// cargo-nextest speaks to every test binary: `--list --format terse`, then the name).
const NAME: &str = "unseal_memory";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        // One test, not ignored: listed only when the ignored ones are not asked for.
        if !has("--ignored") {
            println!("{NAME}: test");
        }
        return;
    }
    // Only ignored tests asked for, or a name filter this test does not match: none runs.
    let filtered_out = args
        .iter()
        .any(|a| !a.starts_with("--") && !NAME.contains(a.as_str()));
    if has("--ignored") || filtered_out {
        return;
    }
    unseal_leaves_no_copy();
}

fn unseal_leaves_no_copy() {
    let tpm = Swtpm::start();
    let blob = sealed_in_child(&tpm);
    // On the stack: a copy in the heap would be found.
    let mut wire = [0u8; 34];
    wire[1] = 32;
    wire[2..].copy_from_slice(SECRET);
    assert_eq!(
        heap_copies(MARKER),
        0,
        "the secret was here before unsealing"
    );
    let mut t = Tpm::open(&tpm.tcti()).unwrap();
    let policy = t.pcr_policy(&[7]).unwrap();
    let secret = t.unseal(&blob, &*auth(), &policy, None).unwrap();
    assert_eq!(&*secret, SECRET);
    drop(secret);
    let (open, any_open) = (heap_copies(&wire), heap_copies(MARKER));
    drop(t);
    let (closed, any_closed) = (heap_copies(&wire), heap_copies(MARKER));
    println!(
        "unseal_memory: the marshalled secret in the heap: {open} with the TPM open, \
         {closed} after; its last 16 bytes anywhere: {any_open}, {any_closed}"
    );
    assert_eq!(
        (open, closed),
        (0, 0),
        "ESYS's buffer still held the unsealed secret"
    );
    println!("unseal_memory: ok");
}
