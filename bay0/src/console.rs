// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's own console: one room (rendered by anchor-text's `console::Renderer`, so no room
//! can paint or answer back) or the operator shell at a time; Ctrl-] leaves a room.

use crate::rooms::Rooms;
use crate::sys;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;

/// epoll token of bay0's console input (fd 0).
pub const TOKEN_INPUT: u64 = 4;
/// epoll token of the operator shell's pty.
pub const TOKEN_SHELL: u64 = 7;

/// Where bay0's own console (keyboard and screen) is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// Nobody: keys are dropped.
    None,
    /// The operator shell (`bay0.shell=1`).
    Shell,
    /// A room, rendered.
    Room(usize),
}

/// bay0's console: one room or the operator shell at a time; Ctrl-] leaves a room.
#[derive(Debug)]
pub struct SystemConsole {
    pub focus: Focus,
    shell_wanted: bool,
    shell: Option<(OwnedFd, i32)>,
    /// Where keys are read from: bay0's stdin.
    input: RawFd,
    /// `input` is a virtual console, fed by the keyboard the prompt is answered on.
    keyboard_fed: bool,
    /// Bytes dropped because the console could not take them.
    pub dropped: u64,
    /// After a loss the console gets room output again only from a line's start.
    viewer: anchor_text::console::Viewer,
    /// What the console shows after its last newline (drawn again after a helper's line).
    open: anchor_text::lines::OpenLine<512>,
}

impl SystemConsole {
    /// Takes over bay0's stdin/stdout when they are a terminal (raw, non-blocking input
    /// watched by the loop); `shell` asks for the operator shell.
    pub fn new(ep: &OwnedFd, shell: bool) -> SystemConsole {
        let mut c = SystemConsole {
            focus: Focus::None,
            shell_wanted: false,
            shell: None,
            input: libc::STDIN_FILENO,
            keyboard_fed: sys::is_virtual_console(libc::STDIN_FILENO),
            dropped: 0,
            viewer: Default::default(),
            open: Default::default(),
        };
        let tty = matches!(sys::console_passthrough(libc::STDIN_FILENO), Ok(true));
        if tty
            && sys::set_nonblocking(libc::STDIN_FILENO).is_ok()
            && sys::set_nonblocking(libc::STDOUT_FILENO).is_ok()
            && sys::epoll_add(ep, libc::STDIN_FILENO, TOKEN_INPUT).is_ok()
        {
            c.shell_wanted = shell;
            c.spawn_shell(ep);
        } else if shell {
            crate::log_warn!("no terminal on bay0's console: no operator shell");
        }
        c
    }

    fn spawn_shell(&mut self, ep: &OwnedFd) {
        if !self.shell_wanted {
            return;
        }
        let started = sys::open_pty().and_then(|(pty, slave)| {
            let argv = [CString::from(c"/bin/sh")];
            let envp = [
                c"HOME=/root",
                c"PATH=/usr/bin:/bin:/usr/sbin:/sbin",
                c"TERM=linux",
                c"PS1=anchor# ",
                c"ENV=/etc/anchor/operator.sh",
            ]
            .map(CString::from);
            let fd = slave.as_raw_fd();
            let pid = sys::spawn(&sys::Spawn {
                argv: &argv,
                envp: &envp,
                stdio: [fd, fd, fd],
                clone_flags: 0,
                ctty: true,
            })?;
            sys::epoll_add(ep, pty.as_raw_fd(), TOKEN_SHELL)?;
            Ok((pty, pid))
        });
        match started {
            Ok(shell) => {
                crate::log_info!(
                    "operator shell started (pid {}); Ctrl-] leaves a room for it",
                    shell.1
                );
                self.shell = Some(shell);
                if self.focus == Focus::None {
                    self.focus = Focus::Shell;
                }
            }
            Err(e) => {
                crate::log_error!("operator shell: {e}; no shell");
                self.shell_wanted = false;
            }
        }
    }

    /// Writes to bay0's console without ever blocking (what does not fit is dropped).
    pub fn put(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || crate::courier::HOLD.load(Relaxed) {
            // Held for the courier prompt: lost (the room's output resumes at a line start).
            return self.viewer.dropped(bytes);
        }
        // A log line ended a room's open line (see the logger): the rest of that line, shown
        // now, would start a line of its own without the prefix. It is lost instead.
        let ended = !crate::logger::console_line_open(true) && !self.open.as_bytes().is_empty();
        if ended && matches!(self.focus, Focus::Room(_)) {
            self.viewer.torn();
        }
        let write = |b: &[u8]| sys::write("console", libc::STDOUT_FILENO, b).unwrap_or(0);
        let lost = self.viewer.show(bytes, write);
        self.dropped = self.dropped.saturating_add(lost as u64);
        self.open.wrote(bytes);
        crate::logger::console_line_open(bytes.last() != Some(&b'\n'));
    }

    /// A helper's line, on a line of its own, with the open line drawn again after it.
    pub fn put_line(&mut self, line: &[u8]) {
        let bytes = self.open.interject(line);
        self.put(&bytes);
    }

    /// Gives the console to room `slot`, showing what it printed lately.
    pub fn focus_room(&mut self, slot: usize, rooms: &Rooms) {
        let Some(r) = rooms.get(slot) else { return };
        self.focus = Focus::Room(slot);
        crate::log_notice!("console: room {} (Ctrl-] leaves it)", r.name.as_str());
        let back = r.scroll.contents();
        self.put(&back);
    }

    /// Room output: shown when the room has the console.
    pub fn show(&mut self, slot: usize, bytes: &[u8]) {
        if self.focus == Focus::Room(slot) {
            self.put(bytes);
        }
    }

    /// Keys typed on bay0's console. A console whose terminal went away (EOF, or EIO from
    /// a pty whose other end closed) is unwatched: its EPOLLHUP would spin the loop.
    pub fn on_input(&mut self, ep: &OwnedFd, rooms: &mut Rooms, now_ms: u64) {
        let mut buf = [0u8; 256];
        let Some(n) = sys::read_terminal("read console", self.input, &mut buf) else {
            return sys::epoll_del(ep, self.input).unwrap_or_default();
        };
        let keys = buf.get(..n).unwrap_or_default();
        let mut rest = keys;
        while !rest.is_empty() {
            let (chunk, detach) = match rest
                .iter()
                .position(|&b| b == anchor_proto::control::DETACH_KEY)
            {
                Some(i) if self.focus != Focus::Shell => (rest.get(..i).unwrap_or_default(), true),
                _ => (rest, false),
            };
            self.forward(chunk, rooms, now_ms);
            rest = rest
                .get(chunk.len() + usize::from(detach)..)
                .unwrap_or_default();
            if detach {
                self.leave_room(rooms);
            }
        }
    }

    fn forward(&mut self, keys: &[u8], rooms: &mut Rooms, now_ms: u64) {
        let fd = match self.focus {
            Focus::Shell => self.shell.as_ref().map(|(pty, _)| pty.as_raw_fd()),
            Focus::Room(slot) => rooms.get_mut(slot).map(|r| {
                r.last_input_ms = now_ms;
                r.render.typed();
                r.pty.as_raw_fd()
            }),
            Focus::None => None,
        };
        // Past the prompt only a virtual console gets the answer key's byte (a serial one
        // is typed on elsewhere).
        let held = match self.keyboard_fed {
            true => &crate::courier::KEYS_HELD,
            false => &crate::courier::HOLD,
        };
        if let (Some(fd), false) = (fd, keys.is_empty() || held.load(Relaxed)) {
            let _ = sys::write("console input", fd, keys);
        }
    }

    /// Drops what was typed on the console and not read yet.
    pub fn drop_typed(&self) {
        if self.keyboard_fed {
            let _ = sys::drop_typed(self.input);
        }
    }

    /// Ctrl-] in a room: to the operator shell, or else to the next open room.
    fn leave_room(&mut self, rooms: &Rooms) {
        if self.shell.is_some() {
            return self.focus_shell();
        }
        let from = match self.focus {
            Focus::Room(s) => s + 1,
            _ => 0,
        };
        let n = rooms.slots.len();
        if let Some(next) = (0..n)
            .map(|i| (from + i) % n)
            .find(|&s| rooms.get(s).is_some())
        {
            self.focus_room(next, rooms);
        }
    }

    /// The operator shell printed something. A pty every program of the shell closed
    /// (reads give EIO) is unwatched, as a room's is, until the shell ends and starts again.
    pub fn on_shell(&mut self, ep: &OwnedFd) {
        let mut buf = [0u8; 4096];
        let Some((pty, _)) = &self.shell else { return };
        match (
            sys::read_terminal("read shell", pty.as_raw_fd(), &mut buf),
            self.focus,
        ) {
            (None, _) => drop(sys::epoll_del(ep, pty.as_raw_fd())),
            (Some(n), Focus::Shell) => self.put(buf.get(..n).unwrap_or_default()),
            _ => {}
        }
    }

    /// The shutdown began: the operator shell is hung up (an interactive shell ignores the
    /// shutdown's SIGTERM and held it for the whole grace) and not started again.
    pub fn closing(&mut self) {
        self.shell_wanted = false;
        if let Some((_, pid)) = &self.shell {
            let _ = sys::kill(*pid, libc::SIGHUP);
        }
    }

    /// A child ended: the shell is started again (not once the shutdown began); a room
    /// that had the console gives it back.
    pub fn ended(&mut self, ep: &OwnedFd, pid: i32, room_slot: Option<usize>) {
        if self.shell.as_ref().is_some_and(|(_, p)| *p == pid) {
            self.shell = None;
            self.spawn_shell(ep);
        }
        // Its room ended: the operator shell, said so (the console showed nothing more).
        if room_slot.is_some_and(|slot| self.focus == Focus::Room(slot)) {
            if self.shell.is_some() {
                return self.focus_shell();
            }
            self.focus = Focus::None;
            self.put(b"\r\n");
        }
    }

    /// The operator shell gets the console. Its prompt, printed while a room had it, is
    /// not kept: the line says that Enter shows it.
    fn focus_shell(&mut self) {
        self.focus = Focus::Shell;
        self.put(b"\r\n");
        crate::log_notice!("console: operator shell (rooms keep running; `anchorctl room console NAME` returns; Enter shows its prompt)");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write as _;

    /// A console reading keys from `input`, with the operator shell on `shell` (a pty's
    /// master) focused.
    pub(crate) fn with_shell(input: RawFd, shell: OwnedFd) -> SystemConsole {
        SystemConsole {
            focus: Focus::Shell,
            shell_wanted: true,
            shell: Some((shell, 0)),
            input,
            keyboard_fed: true,
            dropped: 0,
            viewer: Default::default(),
            open: Default::default(),
        }
    }

    /// Regression (`make run`): at shutdown the interactive operator shell ignored the
    /// SIGTERM sent to all, held the shutdown for its whole grace, was killed, and was
    /// started again just before the power-off. Now it is hung up and stays gone.
    #[test]
    fn the_shutdown_hangs_up_the_shell_and_does_not_start_it_again() {
        let ep = sys::epoll().unwrap();
        let (pty, _slave) = sys::open_pty().unwrap();
        let mut shell = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = i32::try_from(shell.id()).unwrap();
        let mut c = with_shell(libc::STDIN_FILENO, pty);
        c.shell = c.shell.take().map(|(fd, _)| (fd, pid));
        c.closing();
        let status = shell.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGHUP), "{status}");
        c.ended(&ep, pid, None);
        assert!(c.shell.is_none(), "a shell was started during the shutdown");
    }

    /// Everything on the operator shell's pty closes its stdio and goes on running
    /// (`exec >&- 2>&- <&-; sleep`): the pty's master then reads EIO and polls EPOLLHUP
    /// for good.
    /// bay0 must stop watching it, as it does a room's console: before, the
    /// level-triggered EPOLLHUP woke bay0's single-threaded loop without pause.
    #[test]
    fn a_shell_that_closes_its_pty_is_no_longer_watched() {
        let ep = sys::epoll().unwrap();
        let (pty, slave) = sys::open_pty().unwrap();
        sys::epoll_add(&ep, pty.as_raw_fd(), TOKEN_SHELL).unwrap();
        let mut c = SystemConsole {
            focus: Focus::None,
            shell_wanted: true,
            shell: Some((pty, 0)),
            input: libc::STDIN_FILENO,
            keyboard_fed: false,
            dropped: 0,
            viewer: Default::default(),
            open: Default::default(),
        };
        std::fs::File::from(slave).write_all(b"bye\n").unwrap();
        let mut tokens = [0u64; 16];
        for _ in 0..3 {
            if sys::epoll_wait(&ep, &mut tokens, 0).unwrap() == 0 {
                break;
            }
            c.on_shell(&ep);
        }
        let n = sys::epoll_wait(&ep, &mut tokens, 0).unwrap();
        assert_eq!(n, 0, "the hung-up shell pty still wakes the loop");
        assert!(c.shell.is_some(), "the shell is still bay0's until it ends");
    }
}
