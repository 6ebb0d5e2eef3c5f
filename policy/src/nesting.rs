// SPDX-License-Identifier: GPL-3.0-or-later
//! Nested rooms: resolving a policy's parent chain and checking that every child is a
//! subset of its parent (and within the parent's nesting ceiling).
//!
//! Depth counts rooms: a top-level room (no `parent`) is at depth 1; its child at depth 2;
//! the deepest allowed room is at depth `MAX_DEPTH` = 5.

use std::fmt::Display;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::error::{PolicyError, Problem, ProblemKind};
use crate::model::{Backend, Name, Policy};
use crate::parse::{parse_with_lines, KeyLines, MAX_FILE_BYTES};

/// Deepest nesting: a chain of at most 5 policies, top-level room included.
pub const MAX_DEPTH: usize = 5;

/// A policy whose whole parent chain has been loaded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    room: Policy,
    /// Parent first, then grandparent, ... up to a top-level room.
    ancestors: Vec<Policy>,
}

impl Resolved {
    /// The room's own policy.
    pub fn policy(&self) -> &Policy {
        &self.room
    }

    /// Parent, grandparent, ... (empty for a top-level room).
    pub fn ancestors(&self) -> &[Policy] {
        &self.ancestors
    }

    /// 1 for a top-level room, up to `MAX_DEPTH`.
    pub fn depth(&self) -> usize {
        self.ancestors.len().saturating_add(1)
    }

    /// The room's own policy, by value.
    pub fn into_policy(self) -> Policy {
        self.room
    }
}

/// The policy files of `dir` (the machine's set: every `*.toml` in it), in name order.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// How a problem names the file at `path`: its path, with control characters escaped (a
/// file name may hold a newline or a terminal escape; a problem stays one plain line).
pub fn file_label(path: &Path) -> String {
    let shown = path.display().to_string();
    if !shown.chars().any(char::is_control) {
        return shown;
    }
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads a policy file, refusing non-regular files and anything over `MAX_FILE_BYTES`
/// (only `MAX_FILE_BYTES + 1` bytes are ever read). Errors are `FILE: message` problems.
pub fn read_policy_file(path: &Path) -> Result<Vec<u8>, Problem> {
    let label = file_label(path);
    let fail = |what: &str, e: &dyn Display| Problem::file(&label, format!("cannot {what}: {e}"));
    // Opened without blocking (a FIFO, even one swapped in for the file a moment before,
    // would block the open until some writer came), then checked through the descriptor:
    // what is read is what was checked.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| fail("read", &e))?;
    let meta = file.metadata().map_err(|e| fail("read", &e))?;
    if !meta.is_file() {
        return Err(Problem::file(&label, "not a regular file"));
    }
    let limit = u64::try_from(MAX_FILE_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| fail("read", &e))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Problem::file(
            &label,
            format!(
                "file is {} bytes; the limit is {MAX_FILE_BYTES} bytes",
                meta.len()
                    .max(u64::try_from(bytes.len()).unwrap_or(u64::MAX))
            ),
        ));
    }
    Ok(bytes)
}

/// Loads a policy file and its parents (`<parent>.toml` in the same directory), validates
/// each, and checks every child against its parent. The room's `name` must equal the
/// file's stem, because that is how parents are found. The directory is the machine's
/// set of policies: a vault volume that another top-level policy in it names too (an
/// unrelated room's) is refused, since its data would cross between the two rooms.
pub fn load(path: &Path) -> Result<Resolved, PolicyError> {
    load_from(path, &mut read_policy_file, |dir, resolved, label, line| {
        crate::volume::unrelated_claims(dir, resolved, label, line)
    })
}

/// [`load`] for every policy file of `dir` (in name order), each file read and parsed
/// once for the whole directory: the same answers as [`load`] on each file, in time
/// linear in the number of files, not quadratic (anchor-vault at unlock). An error when
/// `dir` cannot be listed.
#[allow(clippy::type_complexity)]
pub fn load_dir(dir: &Path) -> std::io::Result<Vec<(PathBuf, Result<Resolved, PolicyError>)>> {
    let files = policy_files(dir)?;
    let read: std::collections::BTreeMap<PathBuf, Result<Vec<u8>, Problem>> = files
        .iter()
        .map(|p| (p.clone(), read_policy_file(p)))
        .collect();
    let claimants = crate::volume::claimants(&files, |p| read.get(p)?.clone().ok());
    let mut cached = |p: &Path| match read.get(p) {
        Some(r) => r.clone(),
        // Not in the listing (made since): read as `load` would.
        None => read_policy_file(p),
    };
    Ok(files
        .iter()
        .map(|path| {
            let loaded = load_from(path, &mut cached, |dir, resolved, label, line| {
                crate::volume::claims_among(Ok(&claimants), dir, resolved, label, line)
            });
            (path.clone(), loaded)
        })
        .collect())
}

/// [`load`] with files read by `read`, and the resolved policy checked against the other
/// policies of its directory by `claims` (directory, policy, file label, key -> line).
fn load_from<C>(
    path: &Path,
    read: &mut dyn FnMut(&Path) -> Result<Vec<u8>, Problem>,
    claims: C,
) -> Result<Resolved, PolicyError>
where
    C: FnOnce(&Path, &Resolved, &str, &dyn Fn(&'static str) -> Option<usize>) -> Vec<Problem>,
{
    let label = file_label(path);
    let bytes = read(path).map_err(PolicyError::one)?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    // The file's own name, as the file system has it (not UTF-8 perhaps), compared and
    // quoted: a name never matches a stem that is not UTF-8, and a control character in
    // it is escaped like any user text a message quotes.
    let stem = path.file_stem().map(|s| s.to_string_lossy());
    let file_name = path.file_name().map(|s| s.to_string_lossy());
    let expect = (
        stem.as_deref().unwrap_or(""),
        file_name.as_deref().unwrap_or(""),
    );
    let mut lookup = |parent: &Name| {
        // Safe to join: a Name has no '/', '.' or other path syntax.
        let p = dir.join(format!("{parent}.toml"));
        read(&p).map(|b| (file_label(&p), b))
    };
    let resolved = resolve_inner(&label, &bytes, Some(expect), &mut lookup)?;
    let line = |key: &'static str| {
        let lines = parse_with_lines(&label, &bytes).map(|(_, lines)| lines);
        lines.ok().and_then(|l| l.get(key).copied())
    };
    // "a.toml" has the parent "", which names no directory to list.
    let listed = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match PolicyError::from_problems(claims(listed, &resolved, &label, &line)) {
        Some(e) => Err(e),
        None => Ok(resolved),
    }
}

/// Resolves a policy whose parents come from `lookup` (name -> (file label, bytes)).
/// Used by `load` with the filesystem and by tests and fuzzing with memory.
pub fn resolve<F>(file: &str, bytes: &[u8], mut lookup: F) -> Result<Resolved, PolicyError>
where
    F: FnMut(&Name) -> Result<(String, Vec<u8>), Problem>,
{
    resolve_inner(file, bytes, None, &mut lookup)
}

/// Builds a `Problem` for `lookup` implementations that cannot find a parent.
pub fn missing_parent(file: &str, message: &str) -> Problem {
    Problem::file(file, message.to_owned())
}

/// Finds a parent policy by name: (file label, bytes), or a problem saying why not.
type Lookup<'a> = dyn FnMut(&Name) -> Result<(String, Vec<u8>), Problem> + 'a;

struct Link {
    file: String,
    policy: Policy,
    lines: KeyLines,
}

fn resolve_inner(
    file: &str,
    bytes: &[u8],
    expect_name: Option<(&str, &str)>,
    lookup: &mut Lookup<'_>,
) -> Result<Resolved, PolicyError> {
    let (policy, lines) = parse_with_lines(file, bytes)?;
    let mut problems = Vec::new();
    if let Some((stem, file_name)) = expect_name {
        if policy.name().as_str() != stem {
            problems.push(Problem::key(
                file,
                lines.get("name").copied(),
                "name",
                format!(
                    "\"{}\" does not match the file name {} (parents are found as \
                     <name>.toml, so they must agree)",
                    policy.name(),
                    crate::error::shown(file_name)
                ),
            ));
        }
    }
    let mut chain = vec![Link {
        file: file.to_owned(),
        policy,
        lines,
    }];
    while let Some(child) = chain.last() {
        let Some(parent_name) = child.policy.parent().cloned() else {
            break;
        };
        let at_parent = |c: &Link, msg: String| {
            Problem::key(&c.file, c.lines.get("parent").copied(), "parent", msg)
                .with_kind(ProblemKind::Nesting)
        };
        if chain.iter().any(|l| l.policy.name() == &parent_name) {
            let mut path: Vec<String> = chain.iter().map(|l| l.policy.name().to_string()).collect();
            path.push(parent_name.to_string());
            problems.push(at_parent(
                child,
                format!("parent cycle: {}", path.join(" -> ")),
            ));
            break;
        }
        if chain.len() >= MAX_DEPTH {
            let room = chain.first().unwrap_or(child);
            let mut path: Vec<String> = chain.iter().map(|l| l.policy.name().to_string()).collect();
            path.push(parent_name.to_string());
            problems.push(at_parent(
                room,
                format!(
                    "nesting depth exceeds the maximum of {MAX_DEPTH} (top-level room = depth 1; \
                     chain {} ...)",
                    path.join(" -> ")
                ),
            ));
            break;
        }
        let (pfile, pbytes) = match lookup(&parent_name) {
            Ok(found) => found,
            Err(p) => {
                problems.push(at_parent(
                    child,
                    format!("cannot load parent \"{parent_name}\": {p}"),
                ));
                break;
            }
        };
        let (parent, plines) = match parse_with_lines(&pfile, &pbytes) {
            Ok(ok) => ok,
            Err(e) => {
                // The child's line first: a long list of the parent's may be cut short.
                problems.push(at_parent(
                    child,
                    format!("parent \"{parent_name}\" ({pfile}) is invalid; its problems follow"),
                ));
                problems.extend(e.into_problems());
                break;
            }
        };
        if parent.name() != &parent_name {
            problems.push(at_parent(
                child,
                format!(
                    "{pfile} declares name \"{}\", not \"{parent_name}\"",
                    parent.name()
                ),
            ));
            break;
        }
        check_subset(child, &parent, &mut problems);
        chain.push(Link {
            file: pfile,
            policy: parent,
            lines: plines,
        });
    }
    if let Some(err) = PolicyError::from_problems(problems) {
        return Err(err);
    }
    let mut links = chain.into_iter().map(|l| l.policy);
    match links.next() {
        Some(room) => Ok(Resolved {
            room,
            ancestors: links.collect(),
        }),
        None => Err(PolicyError::one(Problem::file(
            file,
            "internal error: empty chain",
        ))),
    }
}

/// Every way `child` could be wider than `parent`, as problems in the child's file.
fn check_subset(child: &Link, parent: &Policy, out: &mut Vec<Problem>) {
    let mut problems = Vec::new();
    subset_problems(child, parent, &mut problems);
    // File order; problems on defaulted keys (no line) last.
    problems.sort_by_key(|p| p.line_number().unwrap_or(usize::MAX));
    out.extend(problems);
}

fn subset_problems(child: &Link, parent: &Policy, problems: &mut Vec<Problem>) {
    let c = &child.policy;
    let pn = parent.name();
    let mut err = |key: &'static str, msg: String| {
        let line = child.lines.get(key).copied();
        // No line: the key is not written, so the value is its default. Say so.
        let msg = match line {
            Some(_) => msg,
            None => format!("{msg} (the default; write a smaller value)"),
        };
        problems.push(Problem::key(&child.file, line, key, msg).with_kind(ProblemKind::Nesting));
    };

    match parent.nesting() {
        None => err(
            "parent",
            format!("parent \"{pn}\" does not allow nesting (its nesting.allowed is not true)"),
        ),
        Some(ceil) => {
            let r = c.resources();
            if r.memory() > ceil.memory() {
                err(
                    "resources.memory",
                    format!(
                        "{} exceeds parent \"{pn}\"'s nesting.memory ceiling ({})",
                        r.memory(),
                        ceil.memory()
                    ),
                );
            }
            if r.vcpus() > ceil.vcpus() {
                err(
                    "resources.vcpus",
                    format!(
                        "{} exceeds parent \"{pn}\"'s nesting.vcpus ceiling ({})",
                        r.vcpus(),
                        ceil.vcpus()
                    ),
                );
            }
            if r.pids_max() > ceil.pids_max() {
                err(
                    "resources.pids_max",
                    format!(
                        "{} exceeds parent \"{pn}\"'s nesting.pids_max ceiling ({})",
                        r.pids_max(),
                        ceil.pids_max()
                    ),
                );
            }
            if let Some(cc) = c.nesting() {
                if cc.max_children() > ceil.max_children() {
                    err(
                        "nesting.max_children",
                        format!(
                            "{} exceeds parent \"{pn}\"'s nesting.max_children ({})",
                            cc.max_children(),
                            ceil.max_children()
                        ),
                    );
                }
            }
        }
    }
    if !c.backend().at_least(parent.backend()) {
        err(
            "backend",
            format!(
                "\"{}\" is weaker than parent \"{pn}\"'s \"{}\"",
                c.backend().as_str(),
                parent.backend().as_str()
            ),
        );
    }
    if c.privileged() && !parent.privileged() {
        err("privileged", format!("parent \"{pn}\" is not privileged"));
    }
    if c.network() > parent.network() {
        err(
            "network",
            format!(
                "\"{}\" is wider than parent \"{pn}\"'s \"{}\"",
                c.network().as_str(),
                parent.network().as_str()
            ),
        );
    }
    for d in c.devices().difference(parent.devices()) {
        err(
            "devices",
            format!("\"{}\" is not granted to parent \"{pn}\"", d.as_str()),
        );
    }
    let (r, pr) = (c.resources(), parent.resources());
    if r.memory() > pr.memory() {
        err(
            "resources.memory",
            format!("{} exceeds parent \"{pn}\"'s {}", r.memory(), pr.memory()),
        );
    }
    if r.vcpus() > pr.vcpus() {
        err(
            "resources.vcpus",
            format!("{} exceeds parent \"{pn}\"'s {}", r.vcpus(), pr.vcpus()),
        );
    }
    if r.cpu_weight() > pr.cpu_weight() {
        err(
            "resources.cpu_weight",
            format!(
                "{} exceeds parent \"{pn}\"'s {}",
                r.cpu_weight(),
                pr.cpu_weight()
            ),
        );
    }
    if r.pids_max() > pr.pids_max() {
        err(
            "resources.pids_max",
            format!(
                "{} exceeds parent \"{pn}\"'s {}",
                r.pids_max(),
                pr.pids_max()
            ),
        );
    }
    let (l, pl) = (c.lifetime(), parent.lifetime());
    if !l.max().within(pl.max()) {
        err(
            "lifetime.max",
            format!("{} exceeds parent \"{pn}\"'s {}", l.max(), pl.max()),
        );
    }
    if !l.idle().within(pl.idle()) {
        err(
            "lifetime.idle",
            format!("{} exceeds parent \"{pn}\"'s {}", l.idle(), pl.idle()),
        );
    }
    match (c.persist(), parent.persist()) {
        (None, _) => {}
        (Some(_), None) => err(
            "persist.volume",
            format!("parent \"{pn}\" has no vault volume to share"),
        ),
        (Some(cp), Some(pp)) => {
            if cp.volume() != pp.volume() {
                err("persist.volume", format!("\"{}\" is not parent \"{pn}\"'s volume \"{}\" (a child may only use a share of its parent's volume)", cp.volume(), pp.volume()));
            }
            if cp.size() > pp.size() {
                err(
                    "persist.size",
                    format!("{} exceeds parent \"{pn}\"'s {}", cp.size(), pp.size()),
                );
            }
            // A volume a microVM used is a guest disk the host never mounts again, so a
            // namespace parent would lose its own volume to its child for good.
            if parent.backend() == Backend::Namespaces && c.backend() != Backend::Namespaces {
                err("persist.volume", format!("backend \"{}\" may run as a microVM, whose disk the host kernel never mounts again, and parent \"{pn}\" runs in namespaces: sharing its volume would lock the parent out of it for good (give this room backend = \"namespaces\" or no [persist])", c.backend().as_str()));
            }
        }
    }
    if c.courier().max_size() > parent.courier().max_size() {
        err(
            "courier.max_size",
            format!(
                "{} exceeds parent \"{pn}\"'s {}",
                c.courier().max_size(),
                parent.courier().max_size()
            ),
        );
    }
    for n in c.courier().send_to().difference(parent.courier().send_to()) {
        err(
            "courier.send_to",
            format!("\"{n}\" is not in parent \"{pn}\"'s courier.send_to"),
        );
    }
    for n in c
        .courier()
        .receive_from()
        .difference(parent.courier().receive_from())
    {
        err(
            "courier.receive_from",
            format!("\"{n}\" is not in parent \"{pn}\"'s courier.receive_from"),
        );
    }
}
