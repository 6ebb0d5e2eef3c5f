// SPDX-License-Identifier: GPL-3.0-or-later
//! Policy problems: every one carries the file, the line (when known) and the key.
//!
//! Rendered as `FILE:LINE:KEY: message`, `FILE:KEY: message` when no line is known, and
//! `FILE: message` for problems with the file as a whole (size, encoding, empty).

use std::fmt;

/// What sort of problem it is: a compact, allocation-free summary for callers (bay0)
/// that log a short reason instead of the full message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file cannot be read, is empty, too large or not UTF-8.
    File,
    /// The file is not valid TOML.
    Syntax,
    /// An unknown key or a value of the wrong TOML type.
    Shape,
    /// A required key is missing.
    Missing,
    /// A value is out of range, malformed, or contradicts another field.
    Value,
    /// Nesting: a child wider than its parent, too deep, a cycle, or an unusable parent.
    Nesting,
    /// A vault volume that an unrelated policy (another top-level room's family) names too.
    Volume,
}

impl ProblemKind {
    /// A short, static description.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "policy file unreadable, empty, too large or not UTF-8",
            Self::Syntax => "policy file is not valid TOML",
            Self::Shape => "unknown key or wrong type in policy",
            Self::Missing => "required policy key missing",
            Self::Value => "policy value out of range or malformed",
            Self::Nesting => {
                "nested policy refused by its parent chain (parent missing or invalid, child \
                 wider than its parent, too deep or cyclic)"
            }
            Self::Volume => "vault volume also named by an unrelated room's policy",
        }
    }
}

/// One problem found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    file: String,
    line: Option<usize>,
    key: Option<String>,
    message: String,
    kind: ProblemKind,
    /// A summary line standing for this many problems that are not listed (0: a problem).
    more: usize,
}

impl Problem {
    /// A problem with the file as a whole (no key).
    pub(crate) fn file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            key: None,
            message: message.into(),
            kind: ProblemKind::File,
            more: 0,
        }
    }

    /// A problem with one key, optionally at a known line (kind `Value` unless changed).
    pub(crate) fn key(
        file: &str,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line,
            key: Some(key.into()),
            message: message.into(),
            kind: ProblemKind::Value,
            more: 0,
        }
    }

    /// A problem at a line whose key is unknown (TOML syntax errors).
    pub(crate) fn line(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            key: None,
            message: message.into(),
            kind: ProblemKind::Syntax,
            more: 0,
        }
    }

    /// The same problem, classified as `kind`.
    pub(crate) fn with_kind(mut self, kind: ProblemKind) -> Self {
        self.kind = kind;
        self
    }

    /// What sort of problem this is.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    /// The file (as given by the caller) the problem is in.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// 1-based line number, when the parser reported a position.
    pub fn line_number(&self) -> Option<usize> {
        self.line
    }

    /// Dotted key path (`resources.memory`, `courier.send_to[1]`), if the problem has one.
    pub fn key_path(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The human-readable message (user-supplied values in it are escaped).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ":{key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one policy (and, when resolving, its ancestors). Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    problems: Vec<Problem>,
}

/// Most problems one error lists; the rest are counted on one last line. A 64 KiB file
/// can hold 20 000 bad entries: listed one by one they made megabytes of messages.
pub const MAX_PROBLEMS: usize = 100;

impl PolicyError {
    /// Wraps a list of problems, in the order given, the first [`MAX_PROBLEMS`] of them
    /// and then one line counting the others; `None` when the list is empty.
    pub(crate) fn from_problems(problems: Vec<Problem>) -> Option<Self> {
        let mut listed = Vec::with_capacity(problems.len().min(MAX_PROBLEMS + 1));
        let (mut more, mut more_file) = (0usize, None);
        for p in problems {
            if p.more == 0 && listed.len() < MAX_PROBLEMS {
                listed.push(p);
                continue;
            }
            more = more.saturating_add(p.more.max(1));
            more_file.get_or_insert(p.file);
        }
        if let Some(file) = more_file {
            let mut summary = Problem::file(
                &file,
                format!("{more} more problem(s) not listed (at most {MAX_PROBLEMS} are)"),
            );
            summary.more = more;
            listed.push(summary);
        }
        (!listed.is_empty()).then_some(Self { problems: listed })
    }

    /// Wraps a non-empty list of problems, all of them (for a caller that orders them
    /// before [`PolicyError::from_problems`] picks those listed).
    pub(crate) fn all(problems: Vec<Problem>) -> Self {
        Self { problems }
    }

    pub(crate) fn one(problem: Problem) -> Self {
        Self {
            problems: vec![problem],
        }
    }

    /// All problems, in file order within each file.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for p in &self.problems {
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// Longest user text a message quotes whole (a key written in the file included).
pub(crate) const SHOWN_MAX: usize = 40;

/// Renders a user-supplied string safely for a message: control characters and quotes
/// escaped, long values cut (a 10 MB name must not become a 10 MB error line).
pub(crate) fn shown(value: &str) -> String {
    const MAX_CHARS: usize = SHOWN_MAX;
    let mut out = String::from("\"");
    for (i, c) in value.chars().enumerate() {
        if i >= MAX_CHARS {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        assert_eq!(
            Problem::key("a.toml", Some(3), "vcpus", "too many").to_string(),
            "a.toml:3:vcpus: too many"
        );
        assert_eq!(
            Problem::key("a.toml", None, "vcpus", "missing").to_string(),
            "a.toml:vcpus: missing"
        );
        assert_eq!(
            Problem::file("a.toml", "empty").to_string(),
            "a.toml: empty"
        );
    }

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(shown("a\u{7}b"), "\"a\\u{7}b\"");
        assert_eq!(shown("x\ny"), "\"x\\ny\"");
        let long = "z".repeat(1000);
        assert!(shown(&long).len() < 50);
    }
}
