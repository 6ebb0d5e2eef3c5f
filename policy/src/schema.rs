// SPDX-License-Identifier: GPL-3.0-or-later
//! The file's shape as a table, used only to *report* shape errors: serde stops at the
//! first unknown key or wrong type, so when serde rejects a file this walk lists every
//! such problem at once. serde (`deny_unknown_fields` in raw.rs) stays the authority: if
//! this walk finds nothing, serde's own error is reported. A test keeps the two in step.

use toml::de::{DeTable, DeValue};

use crate::error::{shown, Problem, ProblemKind};
use crate::parse::Lines;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    StrList,
    Table(&'static [(&'static str, Kind)]),
}

use Kind::{Bool, Int, Str, StrList, Table};

const RESOURCES: &[(&str, Kind)] = &[
    ("memory", Str),
    ("vcpus", Int),
    ("cpu_weight", Int),
    ("pids_max", Int),
];
const LIFETIME: &[(&str, Kind)] = &[("max", Str), ("idle", Str)];
const PERSIST: &[(&str, Kind)] = &[("volume", Str), ("size", Str)];
const COURIER: &[(&str, Kind)] = &[
    ("send_to", StrList),
    ("receive_from", StrList),
    ("max_size", Str),
];
const NESTING: &[(&str, Kind)] = &[
    ("allowed", Bool),
    ("max_children", Int),
    ("memory", Str),
    ("vcpus", Int),
    ("pids_max", Int),
];
/// Every key a policy file may contain.
const POLICY: &[(&str, Kind)] = &[
    ("name", Str),
    ("image", Str),
    ("backend", Str),
    ("parent", Str),
    ("privileged", Bool),
    ("network", Str),
    ("devices", StrList),
    ("resources", Table(RESOURCES)),
    ("lifetime", Table(LIFETIME)),
    ("persist", Table(PERSIST)),
    ("courier", Table(COURIER)),
    ("nesting", Table(NESTING)),
];

/// Every unknown key and wrong-typed value in a syntactically valid document.
pub(crate) fn shape_problems(file: &str, text: &str, doc: &DeTable<'_>) -> Vec<Problem> {
    let mut out = Vec::new();
    walk(file, &Lines::new(text), doc, POLICY, "", &mut out);
    out
}

fn walk(
    file: &str,
    lines: &Lines,
    table: &DeTable<'_>,
    schema: &[(&str, Kind)],
    prefix: &str,
    out: &mut Vec<Problem>,
) {
    for (key, value) in table.iter() {
        let raw: &str = key.get_ref();
        let plain = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let name = if plain && !raw.is_empty() && raw.len() <= crate::error::SHOWN_MAX {
            raw.to_owned()
        } else {
            shown(raw)
        };
        let path = format!("{prefix}{name}");
        let line = Some(lines.of(key.span().start));
        let Some(&(_, kind)) = schema.iter().find(|(k, _)| *k == raw) else {
            let expected: Vec<&str> = schema.iter().map(|(k, _)| *k).collect();
            out.push(
                Problem::key(
                    file,
                    line,
                    path,
                    format!("unknown key (expected one of: {})", expected.join(", ")),
                )
                .with_kind(ProblemKind::Shape),
            );
            continue;
        };
        let found = value.get_ref();
        let vline = Some(lines.of(value.span().start));
        match (kind, found) {
            (Int, DeValue::Integer(n)) => {
                if i64::from_str_radix(n.as_str(), n.radix()).is_err() {
                    out.push(
                        Problem::key(file, vline, path, "integer does not fit in 64 bits")
                            .with_kind(ProblemKind::Shape),
                    );
                }
            }
            (Str, DeValue::String(_)) | (Bool, DeValue::Boolean(_)) => {}
            (StrList, DeValue::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if !matches!(item.get_ref(), DeValue::String(_)) {
                        out.push(
                            Problem::key(
                                file,
                                Some(lines.of(item.span().start)),
                                format!("{path}[{i}]"),
                                format!("expected a string, found {}", item.get_ref().type_str()),
                            )
                            .with_kind(ProblemKind::Shape),
                        );
                    }
                }
            }
            (Table(inner), DeValue::Table(t)) => {
                walk(file, lines, t, inner, &format!("{path}."), out)
            }
            _ => out.push(
                Problem::key(
                    file,
                    vline,
                    path,
                    format!("expected {}, found {}", describe(kind), found.type_str()),
                )
                .with_kind(ProblemKind::Shape),
            ),
        }
    }
}

fn describe(kind: Kind) -> &'static str {
    match kind {
        Str => "a string",
        Int => "an integer",
        Bool => "a boolean (true or false)",
        StrList => "a list of strings",
        Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the schema lists, set to a value of its kind: serde must accept the shape
    /// (the walk and raw.rs must not drift apart).
    #[test]
    fn schema_matches_serde_shape() {
        let mut text = String::new();
        let value = |k: Kind| match k {
            Str => "\"x\"",
            Int => "1",
            Bool => "true",
            StrList => "[\"x\"]",
            Table(_) => "",
        };
        for (k, kind) in POLICY {
            if !matches!(kind, Table(_)) {
                text.push_str(&format!("{k} = {}\n", value(*kind)));
            }
        }
        for (k, kind) in POLICY {
            if let Table(inner) = kind {
                text.push_str(&format!("[{k}]\n"));
                for (ik, ikind) in *inner {
                    text.push_str(&format!("{ik} = {}\n", value(*ikind)));
                }
            }
        }
        let raw: Result<crate::raw::RawPolicy, _> = toml::from_str(&text);
        assert!(raw.is_ok(), "{text}\n{:?}", raw.err());
        let doc = DeTable::parse(&text).unwrap();
        assert!(shape_problems("t", &text, doc.get_ref()).is_empty());
        // And serde rejects any extra key the walk rejects.
        for table in ["", "[resources]\n", "[nesting]\n", "[courier]\n"] {
            let extra = format!("{text}{table}zzz = 1\n");
            assert!(toml::from_str::<crate::raw::RawPolicy>(&extra).is_err());
        }
    }
}
