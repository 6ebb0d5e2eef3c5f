// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's log: one line per message, `bay0: ` prefixed, to /dev/kmsg with a `<N>`
//! priority when bay0 is the machine's PID 1, to stderr otherwise (hosted mode, early
//! boot before /dev exists). Lines are formatted into a fixed stack buffer: logging
//! never allocates and never fails loudly (a lost log line must not stop PID 1).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicI32, AtomicU8, Ordering};

/// Log levels, numbered as the kernel's printk priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            _ => "",
        }
    }
}

/// Longest line written, including prefix and newline; longer messages are cut.
pub const LINE_MAX: usize = 512;

/// Descriptor lines go to: -1 means stderr (plain text), otherwise /dev/kmsg.
static KMSG_FD: AtomicI32 = AtomicI32::new(-1);
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// bay0 left a line open on its console (a room's prompt): end it before a log line, so
/// every log line starts a line of its own.
static CONSOLE_OPEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Record whether the last thing written to the console left its line open; whether the
/// line was still open before (false: nothing left it open, or a log line ended it).
pub fn console_line_open(open: bool) -> bool {
    CONSOLE_OPEN.swap(open, Ordering::Relaxed)
}

/// A log line (or any short message): a fixed buffer that silently truncates.
pub type Line = anchor_text::fixed::Fixed<LINE_MAX>;

/// Format one log line. `kmsg` adds the `<N>` priority the kernel log expects.
pub fn format_line(line: &mut Line, kmsg: bool, level: Level, args: fmt::Arguments<'_>) {
    line.clear();
    if kmsg {
        let _ = write!(line, "<{}>", level as u8);
    }
    let _ = write!(line, "bay0: {}{}", level.label(), args);
    line.push_tail("\n");
}

/// Send lines to this /dev/kmsg descriptor from now on (it stays open for good).
pub fn use_kmsg(fd: std::os::fd::OwnedFd) {
    use std::os::fd::IntoRawFd;
    // A replaced descriptor is left open: that only happens in tests.
    KMSG_FD.store(fd.into_raw_fd(), Ordering::Relaxed);
}

/// Send lines to stderr from now on.
pub fn use_stderr() {
    KMSG_FD.store(-1, Ordering::Relaxed);
}

/// Drop messages less important than `level`.
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Write one message (used by the `log_*!` macros).
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    if level as u8 > MAX_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let fd = KMSG_FD.load(Ordering::Relaxed);
    let mut line = Line::default();
    format_line(&mut line, fd >= 0, level, args);
    let target = if fd >= 0 { fd } else { libc::STDERR_FILENO };
    if CONSOLE_OPEN.swap(false, Ordering::Relaxed) {
        let _ = crate::sys::write("log", libc::STDOUT_FILENO, b"\r\n");
    }
    // Lost log lines are not worth dying for: the error is dropped on purpose.
    let _ = crate::sys::write("log", target, line.as_bytes());
}

/// Write `bay0: <args>` to stderr as one line in one write(2), whatever the log target
/// (command-line errors before bay0 runs as PID 1).
pub fn to_stderr(args: fmt::Arguments<'_>) {
    let mut line = Line::default();
    let _ = write!(line, "bay0: {args}");
    line.push_tail("\n");
    let _ = crate::sys::write("log", libc::STDERR_FILENO, line.as_bytes());
}

/// Log at error level.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::logger::log($crate::logger::Level::Error, format_args!($($arg)*)) };
}
/// Log at warning level.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::logger::log($crate::logger::Level::Warn, format_args!($($arg)*)) };
}
/// Log at notice level.
#[macro_export]
macro_rules! log_notice {
    ($($arg:tt)*) => { $crate::logger::log($crate::logger::Level::Notice, format_args!($($arg)*)) };
}
/// Log at info level.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::logger::log($crate::logger::Level::Info, format_args!($($arg)*)) };
}
/// Log at debug level (dropped unless enabled).
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::logger::log($crate::logger::Level::Debug, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(kmsg: bool, level: Level, args: fmt::Arguments<'_>) -> String {
        let mut line = Line::default();
        format_line(&mut line, kmsg, level, args);
        String::from_utf8(line.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn kmsg_lines_carry_priority_and_prefix() {
        assert_eq!(
            fmt(true, Level::Info, format_args!("ready")),
            "<6>bay0: ready\n"
        );
        assert_eq!(
            fmt(
                true,
                Level::Error,
                format_args!("mount {}: {}", "/proc", 16)
            ),
            "<3>bay0: error: mount /proc: 16\n"
        );
        assert_eq!(fmt(true, Level::Debug, format_args!("x")), "<7>bay0: x\n");
    }

    #[test]
    fn stderr_lines_have_no_priority() {
        assert_eq!(
            fmt(false, Level::Warn, format_args!("no watchdog")),
            "bay0: warning: no watchdog\n"
        );
        assert_eq!(fmt(false, Level::Notice, format_args!("n")), "bay0: n\n");
    }

    #[test]
    fn long_lines_are_cut_but_end_in_newline_and_stay_utf8() {
        let long = "é".repeat(1000);
        let s = fmt(true, Level::Info, format_args!("{long}"));
        assert!(
            s.len() <= LINE_MAX && s.len() >= LINE_MAX - 2,
            "{}",
            s.len()
        );
        assert!(s.ends_with('\n'));
        assert!(s.starts_with("<6>bay0: éé"));
    }

    #[test]
    fn levels_order_like_printk() {
        assert!(Level::Error < Level::Warn && Level::Info < Level::Debug);
        assert_eq!(Level::Notice as u8, 5);
    }

    #[test]
    fn log_writes_to_the_kmsg_descriptor_and_filters_levels() {
        let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        use_kmsg(w.into());
        log_info!("hello {}", 7);
        log_debug!("hidden");
        set_max_level(Level::Debug);
        log_debug!("shown");
        set_max_level(Level::Info);
        use_stderr();
        let want: &[u8] = b"<6>bay0: hello 7\n<7>bay0: shown\n";
        let mut got = vec![0u8; want.len()];
        std::io::Read::read_exact(&mut &r, &mut got).unwrap();
        assert_eq!(got, want);
    }
}
