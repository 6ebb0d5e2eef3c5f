// SPDX-License-Identifier: GPL-3.0-or-later
//! A forked helper's command line in /proc (`/proc/PID/cmdline`, which any process that
//! sees the helper may read): its own title instead of the jail's arguments (the room's
//! name, uids, run directory and image path on the host). The kernel's PR_SET_MM way
//! needs CAP_SYS_RESOURCE, which not every host's root has; this is setproctitle's way:
//! the argument strings are this process's own memory, and are overwritten in place.

use crate::error::{Error, Result};

/// The start and end of this process's argument strings, fields 48 and 49 of
/// /proc/self/stat (`text`). The name in field 2 may hold spaces and parentheses: the
/// fields are counted after its last `)`.
pub fn arg_range(text: &str) -> Option<(usize, usize)> {
    let (_, rest) = text.rsplit_once(')')?;
    // Field 3 is the first after the name.
    let mut fields = rest.split_ascii_whitespace().skip(48 - 3);
    let start: usize = fields.next()?.parse().ok()?;
    let end: usize = fields.next()?.parse().ok()?;
    (start > 0 && end > start).then_some((start, end))
}

/// Lays `title` over `area` (the argument strings): every byte of the arguments gone,
/// then the title, a NUL, and a last byte that is not NUL, by which the kernel reads the
/// command line as one string up to its first NUL (as for setproctitle(3)). The title is
/// shortened to fit; an area too small for any of it only loses the arguments.
pub fn lay_title(area: &mut [u8], title: &[u8]) {
    area.fill(0);
    let room = area.len().saturating_sub(2);
    let n = title.len().min(room);
    if let (Some(dst), Some(src)) = (area.get_mut(..n), title.get(..n)) {
        dst.copy_from_slice(src);
    }
    if n > 0 {
        if let Some(last) = area.last_mut() {
            *last = b' ';
        }
    }
}

/// The most argument bytes this will overwrite (a jail's command line is far shorter;
/// more would mean /proc/self/stat said something unexpected).
const MAX_ARGS: usize = 128 * 1024;

/// Sets this process's command line to `title` (see the module).
///
/// # Safety
/// The caller is single-threaded and reads its arguments no more, and `/proc` is a proc
/// file system of its own PID namespace, mounted by it or its jail (nothing a room
/// could have put there): the memory overwritten is wherever /proc/self/stat says the
/// argument strings are.
pub unsafe fn set_command_line(title: &[u8]) -> Result<()> {
    let text = std::fs::read_to_string("/proc/self/stat").map_err(|e| Error::Path {
        op: "read",
        path: "/proc/self/stat".into(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    let (start, end) = arg_range(&text).ok_or(Error::Unsupported(
        "/proc/self/stat names no argument strings",
    ))?;
    let len = end - start;
    if len > MAX_ARGS {
        return Err(Error::Unsupported(
            "/proc/self/stat names argument strings too long to be this process's",
        ));
    }
    // SAFETY: [start, end) is, by the caller's contract on /proc, where the kernel put
    // this process's argument strings at exec (its own stack, mapped readable and
    // writable for its whole life; nothing has moved them: no PR_SET_MM). No Rust
    // reference points into them: the standard library keeps only raw pointers to them,
    // and this process is single-threaded and reads its arguments no more. The slice
    // lives for this function only.
    let area = unsafe { core::slice::from_raw_parts_mut(start as *mut u8, len) };
    lay_title(area, title);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line whose name holds spaces and a `)`, with the argument strings at
    /// `start`..`end`.
    fn stat(start: usize, end: usize) -> String {
        let mut f: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        f[48 - 3] = start.to_string();
        f[49 - 3] = end.to_string();
        format!("1234 (a b) c) {}", f.join(" "))
    }

    #[test]
    fn the_argument_strings_are_read_after_the_last_parenthesis() {
        assert_eq!(arg_range(&stat(4096, 4200)), Some((4096, 4200)));
        assert_eq!(arg_range(&stat(4200, 4096)), None);
        assert_eq!(arg_range(&stat(0, 10)), None);
        assert_eq!(arg_range("1234 (x) S 1 2"), None);
        assert_eq!(arg_range("no name"), None);
        assert_eq!(arg_range(""), None);
    }

    #[test]
    fn the_title_replaces_every_byte_of_the_arguments() {
        let mut a = *b"/run/x/anchor-jail\0--name\0web\0";
        lay_title(&mut a, b"anchor-relay");
        assert_eq!(&a[..13], b"anchor-relay\0");
        assert!(a[13..a.len() - 1].iter().all(|&b| b == 0));
        assert_eq!(a[a.len() - 1], b' ');
        // What the kernel shows: up to the first NUL.
        let shown = a.split(|&b| b == 0).next().unwrap();
        assert_eq!(shown, b"anchor-relay");
    }

    #[test]
    fn a_small_area_shortens_the_title_and_still_loses_the_arguments() {
        let mut a = *b"ab\0cd\0";
        lay_title(&mut a, b"anchor-relay");
        assert_eq!(&a, b"anch\0 ");
        let mut a = *b"a\0";
        lay_title(&mut a, b"anchor-relay");
        assert_eq!(&a, b"\0\0");
        let mut a: [u8; 0] = [];
        lay_title(&mut a, b"x");
    }
}
