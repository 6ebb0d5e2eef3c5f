// SPDX-License-Identifier: GPL-3.0-or-later
//! bay0's own command line. As the machine's PID 1 the arguments come from the kernel
//! and are ignored; otherwise bay0 only runs in hosted mode.

use crate::error::Error;
use std::ffi::OsString;

/// Printed by `--help` (plain text, kept beside the code).
pub const HELP: &str = include_str!("help.txt");

/// What bay0 was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Be the machine's init.
    Pid1,
    /// Be PID 1 of fresh namespaces on an ordinary Linux.
    Hosted {
        state_dir: OsString,
        layout: Option<OsString>,
        command: Vec<OsString>,
    },
    Help,
    Version,
}

/// Decide what to do from argv (without argv\[0\]) and whether we are PID 1.
pub fn parse(mut args: impl Iterator<Item = OsString>, is_pid1: bool) -> Result<Invocation, Error> {
    if is_pid1 {
        return Ok(Invocation::Pid1);
    }
    let Some(first) = args.next() else {
        return Err(Error::Usage(
            "not PID 1: use --hosted STATE_DIR (see --help)",
        ));
    };
    match first.to_str() {
        Some("--help" | "-h") => Ok(Invocation::Help),
        Some("--version" | "-V") => Ok(Invocation::Version),
        Some("--hosted") => {
            let state_dir = args
                .next()
                .ok_or(Error::Usage("--hosted needs STATE_DIR"))?;
            if state_dir.is_empty() || state_dir.to_str().is_some_and(|s| s.starts_with('-')) {
                return Err(Error::Usage("--hosted needs STATE_DIR"));
            }
            let mut layout = None;
            let mut next = args.next();
            if next.as_ref().is_some_and(|a| a == "--layout") {
                layout = Some(args.next().ok_or(Error::Usage("--layout needs DIR"))?);
                next = args.next();
            }
            let command: Vec<OsString> = match next {
                None => Vec::new(),
                Some(sep) if sep == "--" => args.collect(),
                Some(_) => {
                    return Err(Error::Usage(
                        "unexpected argument after STATE_DIR (put a command after --)",
                    ))
                }
            };
            Ok(Invocation::Hosted {
                state_dir,
                layout,
                command,
            })
        }
        _ => Err(Error::Usage("unknown argument (see --help)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, Error> {
        parse(args.iter().map(OsString::from), false)
    }

    #[test]
    fn pid1_ignores_kernel_arguments() {
        let args = ["single", "--weird"].iter().map(OsString::from);
        assert_eq!(parse(args, true), Ok(Invocation::Pid1));
    }

    #[test]
    fn hosted_with_and_without_command() {
        assert_eq!(
            p(&["--hosted", "/tmp/s"]),
            Ok(Invocation::Hosted {
                state_dir: "/tmp/s".into(),
                layout: None,
                command: vec![]
            })
        );
        assert_eq!(
            p(&["--hosted", "/tmp/s", "--", "sh", "-c", "true"]),
            Ok(Invocation::Hosted {
                state_dir: "/tmp/s".into(),
                layout: None,
                command: vec!["sh".into(), "-c".into(), "true".into()]
            })
        );
        assert_eq!(
            p(&["--hosted", "/tmp/s", "--layout", "/l"]),
            Ok(Invocation::Hosted {
                state_dir: "/tmp/s".into(),
                layout: Some("/l".into()),
                command: vec![]
            })
        );
    }

    #[test]
    fn help_and_version() {
        assert_eq!(p(&["--help"]), Ok(Invocation::Help));
        assert_eq!(p(&["-V"]), Ok(Invocation::Version));
        assert!(HELP.contains("--hosted STATE_DIR"));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for bad in [
            &[][..],
            &["--hosted"],
            &["--hosted", "--"],
            &["--bogus"],
            &["--hosted", "/s", "sh"],
            &["--hosted", "/s", "--layout"],
        ] {
            assert!(matches!(p(bad), Err(Error::Usage(_))), "{bad:?}");
        }
    }
}
