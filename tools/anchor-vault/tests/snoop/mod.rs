// SPDX-License-Identifier: GPL-3.0-or-later
//! An allocator for the secret-memory test binaries (one test each, since each redirects
//! its stdin): it passes every call on to the system allocator, and while armed it looks
//! into every block being freed for a marker, counting the blocks that still hold it.
//! A binary uses it with `#[global_allocator] static GLOBAL: snoop::Snoop = snoop::Snoop;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

static ARMED: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);
static MARKER: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static MARKER_LEN: AtomicUsize = AtomicUsize::new(0);

/// Counts freed blocks holding the armed marker.
pub struct Snoop;

/// Start looking for `marker` in freed blocks (the count starts at 0).
pub fn arm(marker: &'static [u8]) {
    MARKER.store(marker.as_ptr().cast_mut(), Ordering::SeqCst);
    MARKER_LEN.store(marker.len(), Ordering::SeqCst);
    FOUND.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
}

/// Stop looking; how many freed blocks held the marker.
pub fn disarm() -> usize {
    ARMED.store(false, Ordering::SeqCst);
    FOUND.load(Ordering::SeqCst)
}

// SAFETY: every call is passed on to System unchanged; dealloc only reads the block
// it is about to free, which is still valid, and the marker, which is 'static.
unsafe impl GlobalAlloc for Snoop {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let len = MARKER_LEN.load(Ordering::SeqCst);
        if ARMED.load(Ordering::SeqCst) && len > 0 {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until freed below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            // SAFETY: the marker was armed from a 'static slice of `len` bytes.
            let marker = unsafe { std::slice::from_raw_parts(MARKER.load(Ordering::SeqCst), len) };
            if block.windows(len).any(|w| w == marker) {
                FOUND.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// A pipe, as `[read end, write end]`: the console a test types on and reads from.
#[allow(dead_code)] // not every test binary that snoops uses a console
pub fn pipe() -> [i32; 2] {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    fds
}
