// SPDX-License-Identifier: GPL-3.0-or-later
//! Bytes -> text -> TOML -> raw shape, with file-level checks first: size (before any
//! parsing), emptiness and UTF-8. TOML and serde errors are mapped to a line and the key
//! path they occurred at.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{PolicyError, Problem, ProblemKind};
use crate::model::Policy;
use crate::raw::RawPolicy;
use crate::validate;

/// Largest policy file accepted, checked before parsing.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// Line of each key that was written in the file (for later nesting messages).
pub(crate) type KeyLines = BTreeMap<&'static str, usize>;

/// Parses and validates one policy on its own (its parent, if any, is not consulted).
///
/// `file` is only used to label problems. Returns every problem found.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Policy, PolicyError> {
    parse_with_lines(file, bytes).map(|(policy, _)| policy)
}

pub(crate) fn parse_with_lines(
    file: &str,
    bytes: &[u8],
) -> Result<(Policy, KeyLines), PolicyError> {
    let text = check_file(file, bytes).map_err(PolicyError::one)?;
    let raw: RawPolicy = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            // serde stops at the first shape error; list them all if the syntax is valid.
            let mut problems = DeTable::parse(text)
                .map(|doc| crate::schema::shape_problems(file, text, doc.get_ref()))
                .unwrap_or_default();
            if problems.is_empty() {
                problems.push(toml_problem(file, text, &e));
            }
            sort_by_line(&mut problems);
            return Err(PolicyError::from_problems(problems)
                .unwrap_or_else(|| PolicyError::one(toml_problem(file, text, &e))));
        }
    };
    validate::validate(file, text, &raw).map_err(|e| {
        let mut problems = e.into_problems();
        sort_by_line(&mut problems);
        PolicyError::from_problems(problems).unwrap_or(e_fallback(file))
    })
}

/// File order; problems without a line (missing keys) last. Stable.
fn sort_by_line(problems: &mut [Problem]) {
    problems.sort_by_key(|p| p.line_number().unwrap_or(usize::MAX));
}

fn e_fallback(file: &str) -> PolicyError {
    PolicyError::one(Problem::file(file, "internal error: empty problem list"))
}

/// Size, emptiness and encoding, in that order (size first: never parse a huge file).
fn check_file<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, Problem> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Problem::file(
            file,
            format!(
                "file is {} bytes; the limit is {MAX_FILE_BYTES} bytes",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes
            .get(..at)
            .map_or(1, |b| b.iter().filter(|&&c| c == b'\n').count() + 1);
        Problem::line(
            file,
            Some(line),
            format!("file is not valid UTF-8 (bad byte at offset {at})"),
        )
        .with_kind(ProblemKind::File)
    })?;
    if text.trim().is_empty() {
        return Err(Problem::file(file, "file is empty"));
    }
    Ok(text)
}

/// 1-based line of a byte offset (one lookup; see [`Lines`] for many).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    Lines::new(text).of(offset)
}

/// Where a text's lines end, so that many byte offsets become line numbers without a
/// scan of the text each: a hostile file with thousands of problems costs a binary
/// search per problem, not a pass over up to 64 KiB (quadratic: seconds of bay0's loop).
pub(crate) struct Lines(Vec<usize>);

impl Lines {
    pub(crate) fn new(text: &str) -> Self {
        let newlines = text.bytes().enumerate().filter(|&(_, b)| b == b'\n');
        Self(newlines.map(|(i, _)| i).collect())
    }

    /// 1-based line of a byte offset (offsets past the end are on the last line).
    pub(crate) fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset).saturating_add(1)
    }
}

fn toml_problem(file: &str, text: &str, err: &toml::de::Error) -> Problem {
    let message = clean(err.message());
    let Some(span) = err.span() else {
        // The one error the parser gives without a place: a dotted key or table name of
        // too many parts. Found here by its dots, so the problem names its line.
        return match deep_key_at(text) {
            Some(at) if message == "recursion limit" => {
                let why = format!("a key of {DEEP_KEY} or more dotted parts is nested too deep");
                Problem::line(file, Some(line_of(text, at)), why)
            }
            _ => Problem::line(file, None, message),
        };
    };
    let line = Some(line_of(text, span.start));
    let (key, kind) = match DeTable::parse(text) {
        Ok(doc) => (key_at(doc.get_ref(), &span), ProblemKind::Shape),
        Err(_) => (key_from_line(text, span.start), ProblemKind::Syntax),
    };
    match key {
        Some(key) => Problem::key(file, line, key, message).with_kind(kind),
        None => Problem::line(file, line, message).with_kind(kind),
    }
}

/// How many parts of a dotted key the TOML parser refuses (its recursion limit).
const DEEP_KEY: usize = 80;

/// The offset of the first line whose key (before any `=`) or table header has at least
/// [`DEEP_KEY`] dotted parts, dots inside quotes not counted.
fn deep_key_at(text: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let (mut dots, mut quote) = (0usize, None);
        for c in line.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), _) if c == q => quote = None,
                (None, '.') => dots += 1,
                (None, '=' | '#') => break,
                _ => {}
            }
        }
        if dots.saturating_add(1) >= DEEP_KEY {
            return Some(at);
        }
        at += line.len();
    }
    None
}

/// For TOML syntax errors (no parsed document to walk): the key written on the error's
/// line, prefixed by the last `[table]` header above it. Only plain keys are returned.
fn key_from_line(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
    let rest = text.get(line_start..)?;
    let line = rest.split('\n').next().unwrap_or("").trim();
    let plain = |k: &str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    };
    if line.starts_with('[') {
        let header = line.split('#').next().unwrap_or("").trim();
        let header = header.trim_matches(|c| c == '[' || c == ']').trim();
        return plain(header).then(|| cut_key(header));
    }
    let key = line.split('=').next().unwrap_or("").trim();
    if !line.contains('=') || !plain(key) {
        return None;
    }
    let table = text
        .get(..line_start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned()
        });
    match table {
        Some(t) if plain(&t) => Some(format!("{}.{}", cut_key(&t), cut_key(key))),
        Some(_) => None,
        None => Some(cut_key(key)),
    }
}

/// A key written in the file as a problem names it: whole up to the length of user text
/// a message quotes, else quoted and cut like that text.
fn cut_key(key: &str) -> String {
    if key.len() <= crate::error::SHOWN_MAX {
        key.to_owned()
    } else {
        crate::error::shown(key)
    }
}

/// Escapes control characters and joins lines: messages quote user text.
fn clean(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.trim().chars() {
        if c == '\n' {
            out.push_str("; ");
        } else if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The dotted key path of the deepest key whose key or value span contains `span.start`.
fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    for (key, value) in table.iter() {
        let name = key_text(key);
        if let Some(inner) = value_key_at(value, span) {
            return Some(join(&name, &inner));
        }
        if key.span().contains(&span.start) || value.span().contains(&span.start) {
            return Some(name);
        }
    }
    None
}

fn value_key_at(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(t) => key_at(t, span),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let inner = value_key_at(item, span);
            match inner {
                Some(inner) => Some(format!("[{i}]{}", dotted(&inner))),
                None if item.span().contains(&span.start) => Some(format!("[{i}]")),
                None => None,
            }
        }),
        _ => None,
    }
}

fn key_text(key: &Spanned<toml::de::DeString<'_>>) -> String {
    let raw: &str = key.get_ref();
    let safe = !raw.is_empty()
        && raw.len() <= crate::error::SHOWN_MAX
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if safe {
        raw.to_owned()
    } else {
        crate::error::shown(raw)
    }
}

fn dotted(inner: &str) -> String {
    if inner.starts_with('[') {
        inner.to_owned()
    } else {
        format!(".{inner}")
    }
}

fn join(outer: &str, inner: &str) -> String {
    format!("{outer}{}", dotted(inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_found_from_spans() {
        let text = "a = 1\n[t]\nb = [1, {c = 2}]\n";
        let doc = DeTable::parse(text).unwrap();
        let c = text.find("c =").unwrap();
        assert_eq!(key_at(doc.get_ref(), &(c..c + 1)).unwrap(), "t.b[1].c");
        let a = text.find('a').unwrap();
        assert_eq!(key_at(doc.get_ref(), &(a..a + 1)).unwrap(), "a");
    }

    #[test]
    fn key_from_syntax_error_line() {
        let text = "a = 1\n[res]\nb = 1\nb = 2\n";
        let off = text.rfind("b = 2").unwrap();
        assert_eq!(key_from_line(text, off).unwrap(), "res.b");
        assert_eq!(key_from_line("x = [[[", 5).unwrap(), "x");
        assert_eq!(key_from_line("[t]\n[t]\n", 5).unwrap(), "t");
        assert!(key_from_line("\"q\" = [[", 7).is_none());
    }

    #[test]
    fn too_deep_keys_are_found_by_their_dots() {
        let deep = vec!["k"; DEEP_KEY].join(".");
        let text = format!("a = \"{}\"\n\"x.y\" = 1\n{deep} = 1\n", ".".repeat(200));
        assert_eq!(deep_key_at(&text).map(|at| line_of(&text, at)), Some(3));
        let text = format!("a = 1\n[{deep}]\n");
        assert_eq!(deep_key_at(&text).map(|at| line_of(&text, at)), Some(2));
        let shallow = vec!["k"; DEEP_KEY - 1].join(".");
        assert_eq!(deep_key_at(&format!("{shallow} = 1\n")), None);
    }

    #[test]
    fn lines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
        // The index gives what counting the newlines before each offset gives.
        let text = "\n\nab\n\ncd\nef\n\n";
        let lines = Lines::new(text);
        for offset in 0..text.len() + 3 {
            let end = offset.min(text.len());
            let counted = text[..end].bytes().filter(|&b| b == b'\n').count() + 1;
            assert_eq!(lines.of(offset), counted, "{offset}");
        }
    }
}
