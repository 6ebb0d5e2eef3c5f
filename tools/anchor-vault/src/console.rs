// SPDX-License-Identifier: GPL-3.0-or-later
//! The console anchor-vault is given (its stdin and stdout: bay0's trusted console at
//! boot). Every line is one writev(2) of the line and its newline, never a copy (a line
//! may hold the recovery key); secrets are read byte by byte straight into a wiped
//! buffer. For a dialog, echo is off for the whole session (not per prompt), so what a
//! person types ahead while the TPM or argon2 works is neither echoed nor lost.

use std::io;
use std::os::fd::RawFd;

use zeroize::Zeroizing;

use crate::keys::Secret;
use crate::sys;

/// The longest line read (longer input is refused, not cut).
pub const MAX_LINE: usize = 1024;

/// Where dialogs happen. A trait so flows can be driven without a terminal.
pub trait Console {
    /// Show one line.
    fn say(&mut self, line: &str);
    /// Ask for a secret (no echo); `None` at end of input.
    fn secret(&mut self, prompt: &str) -> io::Result<Option<Secret>>;
    /// Ask for a line (echoed); `None` at end of input. Kept in a wiped buffer too: a
    /// person may type a secret at any prompt (the recovery key back, to check it).
    fn line(&mut self, prompt: &str) -> io::Result<Option<Secret>>;
}

/// The real console on two descriptors.
#[derive(Debug)]
pub struct Terminal {
    input: RawFd,
    output: RawFd,
    /// Echo is off while this lives (dialogs on a terminal).
    echo_off: Option<sys::EchoOff>,
}

impl Terminal {
    /// stdin and stdout, as they are (for printing).
    pub fn stdio() -> Terminal {
        Terminal {
            input: libc::STDIN_FILENO,
            output: libc::STDOUT_FILENO,
            echo_off: None,
        }
    }

    /// stdin and stdout for a dialog: echo off until dropped, when stdin is a terminal.
    pub fn dialog() -> io::Result<Terminal> {
        let mut t = Terminal::stdio();
        t.echo_off = sys::EchoOff::new(t.input)?;
        Ok(t)
    }

    /// One line (without its newline). A line longer than [`MAX_LINE`] is read to its
    /// end (nothing of it is left for the next prompt) and given back as `TooLong`: its
    /// first bytes are wiped with the buffer, never taken for a shorter line.
    fn read_line(&mut self) -> io::Result<Input> {
        // Room for the longest line up front: a Vec that grew would free its earlier,
        // smaller buffers unwiped (Zeroizing wipes only the last one).
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_LINE));
        let mut too_long = false;
        loop {
            match sys::read_byte(self.input)? {
                None if buf.is_empty() && !too_long => return Ok(Input::End),
                None | Some(b'\n') => break,
                Some(b'\r') => {}
                Some(b) if buf.len() < MAX_LINE => buf.push(b),
                Some(_) => too_long = true,
            }
        }
        Ok(if too_long {
            Input::TooLong
        } else {
            Input::Line(buf)
        })
    }

    /// Show `prompt` and read a line, asking again (after a one-line refusal naming
    /// `what`) as long as the line is longer than [`MAX_LINE`].
    fn ask(&mut self, prompt: &str, what: &str, secret: bool) -> io::Result<Option<Secret>> {
        loop {
            sys::write_all(self.output, prompt.as_bytes())?;
            let per_prompt = match self.echo_off {
                None if secret => sys::EchoOff::new(self.input)?,
                _ => None,
            };
            let read = self.read_line();
            drop(per_prompt);
            if secret || self.echo_off.is_some() {
                // The Enter the person typed was not echoed: end the prompt's line.
                sys::write_all(self.output, b"\n")?;
            }
            match read? {
                Input::End => return Ok(None),
                Input::Line(line) => return Ok(Some(line)),
                Input::TooLong => self.say(&format!(
                    "{what} longer than {MAX_LINE} bytes: refused (nothing of it was kept); type it again."
                )),
            }
        }
    }
}

/// What one read of a line found.
enum Input {
    Line(Secret),
    /// Longer than [`MAX_LINE`]: read to its end, and its beginning wiped.
    TooLong,
    End,
}

impl Console for Terminal {
    fn say(&mut self, line: &str) {
        // Nothing better to do if the console is gone.
        let _ = sys::write_line(self.output, line.as_bytes());
    }

    fn secret(&mut self, prompt: &str) -> io::Result<Option<Secret>> {
        self.ask(prompt, "passphrase", true)
    }

    fn line(&mut self, prompt: &str) -> io::Result<Option<Secret>> {
        self.ask(prompt, "line", false)
    }
}
