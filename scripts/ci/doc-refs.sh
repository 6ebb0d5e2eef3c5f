#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Gate: what the docs cite exists. (1) Every Rust test the docs name (`MOD::tests::NAME`,
# `MOD::tests::PREFIX_*`, or a bare `snake_case_name_of_six_or_more_words`) is a `fn` in
# the tree (for MOD::tests::, in MOD.rs or MOD/); every other `a::b` path cited ends in
# an item that exists; every file named in backticks exists (a crate README's relative
# to its folder). (2) docs/SYSCALL-JUSTIFICATIONS.md has exactly the rules of every
# seccomp filter: one row per rule of each filter's JSON, under the filter's name, with
# the same argument values, and no row for a rule the filter lacks (the crates' unit tests
# check one direction, by name only). (3) The host kernel options docs/KERNEL-HARDENING.md
# lists are what host-kernel/config-x86_64.fragment sets. (4) "N attempts" of the escape
# suite is the count tests/escape/attempts.txt lists. (5) Every long option quoted in
# backticks exists in the tree.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || fail "python3 missing (run scripts/setup.sh)"
out=$(python3 - <<'EOF'
import glob, json, os, re, subprocess, sys

tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout.split()
docs = [f for f in tracked if f == "README.md" or re.fullmatch(r"docs/[^/]+\.md", f)
        or re.fullmatch(r"[^/]+/([^/]+/)?README\.md", f)]
rs = [f for f in tracked if f.endswith(".rs")]
src = {}
for f in rs:
    try:
        src[f] = open(f, encoding="utf-8", errors="replace").read()
    except OSError:
        pass
bad = []
cited = 0

def fns(name, files, prefix=False):
    pat = re.compile(r"\bfn " + re.escape(name) + (r"\w*" if prefix else r"\b"))
    return any(pat.search(src[f]) for f in files)

def item(name):
    pat = re.compile(r"\b(fn|struct|enum|mod|trait|const|type|static|macro_rules!) "
                     + re.escape(name) + r"\b|^\s*" + re.escape(name) + r"\s*[({,]", re.M)
    return any(f.endswith("/" + name + ".rs") or pat.search(t) for f, t in src.items())

for d in docs:
    text = open(d, encoding="utf-8").read()
    for ref in sorted(set(re.findall(r"`([A-Za-z_][\w:]*::[\w*]+)`", text))):
        cited += 1
        parts = ref.split("::")
        if len(parts) >= 3 and parts[-2] == "tests":
            mod, name = parts[-3], parts[-1]
            files = [f for f in src if f.endswith("/" + mod + ".rs") or ("/" + mod + "/") in f]
            ok = fns(name.rstrip("*"), files, name.endswith("*"))
        else:
            ok = item(parts[-1].rstrip("*"))
        if not ok:
            bad.append(f"{d}: `{ref}` names nothing in the tree")
    for name in sorted(set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+){5,})`", text))):
        cited += 1
        if not fns(name, src):
            bad.append(f"{d}: test `{name}` is no fn in the tree")

# Files the docs name exist: in a crate's README, relative to its folder (or the root),
# a bare name somewhere under it; in README.md and docs/, anywhere as a path suffix.
known = set(tracked)
for d in docs:
    base = os.path.dirname(d)
    text = open(d, encoding="utf-8").read()
    for p in sorted(set(re.findall(
            r"`([A-Za-z0-9_.][A-Za-z0-9_./-]*\.(?:rs|sh|json|toml|md|S|c|py|nix))`", text))):
        cited += 1
        if p in known or os.path.normpath(os.path.join(base, p)) in known:
            continue
        if base in ("", "docs"):
            ok = any(f.endswith("/" + p) for f in tracked)
        else:
            ok = "/" not in p and any(f.startswith(base + "/") and f.endswith("/" + p)
                                      for f in tracked)
        if not ok:
            bad.append(f"{d}: `{p}` is no file of the tree")

# Seccomp filters: every JSON rule <-> one row of the doc, under the filter's name.
FILTERS = {"vmm": "vmm/seccomp/vmm.json", "vcpu": "vmm/seccomp/vcpu.json",
           "courier": "courier/seccomp/courier.json", "room": "jail/seccomp/room.json",
           "room_deny": "jail/seccomp/room.json", "passt_deny": "jail/seccomp/passt.json",
           "relay": "jail/seccomp/relay.json"}
jsons = sorted(glob.glob("*/seccomp/*.json"))
for j in jsons:
    for k in json.load(open(j)):
        if FILTERS.get(k) != j:
            bad.append(f"{j}: filter {k} is not known to scripts/ci/doc-refs.sh")
doc = "docs/SYSCALL-JUSTIFICATIONS.md"
rows = {}
for line in open(doc, encoding="utf-8"):
    m = re.match(r"\| (\w+) \| (\w+) \| ([^|]*) \|", line)
    if m and m.group(1) in FILTERS:
        rows.setdefault(m.group(1), []).append((m.group(2), m.group(3).strip()))
rules = 0
for kind, path in FILTERS.items():
    want = {}
    for r in json.load(open(path))[kind]["filter"]:
        rules += 1
        vals = set()
        for a in r.get("args", []):
            op = a["op"]
            if op in ("eq", "ne", "gt", "ge", "lt", "le"):
                vals.add(str(a["val"]))
            else:
                vals.add(hex(op["masked_eq"]) if a["val"] else "0")
        want.setdefault(r["syscall"], []).append(vals)
    have = {}
    for name, args in rows.get(kind, []):
        have.setdefault(name, []).append(args)
    for name in sorted(set(want) | set(have)):
        w, h = want.get(name, []), have.get(name, [])
        if not h:
            bad.append(f"{doc}: no `| {kind} | {name} |` row: {path} has it")
            continue
        if not w:
            bad.append(f"{doc}: `| {kind} | {name} |` is justified but {path} has no such rule")
            continue
        # A row with "any" stands for a rule without argument checks; each other row
        # names its rule's values (one row may name several alternatives, as passt's).
        unconditioned = [v for v in w if not v]
        if unconditioned and any(a != "any" for a in h):
            bad.append(f"{doc}: `| {kind} | {name} |` names arguments; {path} checks none")
        if not unconditioned and "any" in h:
            bad.append(f"{doc}: `| {kind} | {name} |` says any; {path} checks arguments")
        for v in w:
            if v and not any(all(re.search(r"\b" + re.escape(x) + r"\b", a) for x in v)
                             for a in h):
                bad.append(f"{doc}: no `| {kind} | {name} |` row names {sorted(v)} ({path})")
        if len(h) > len(w):
            bad.append(f"{doc}: {len(h)} `| {kind} | {name} |` rows for {len(w)} rules in {path}")

# docs/KERNEL-HARDENING.md's host option tables say what the x86_64 host fragment sets:
# `SYM` is SYM=y, `SYM=V` is SYM=V, "no `SYM`" is off or absent.
frag = {}
for line in open("host-kernel/config-x86_64.fragment", encoding="utf-8"):
    m = re.match(r"CONFIG_(\w+)=(.*)|# CONFIG_(\w+) is not set", line.strip())
    if m:
        frag[m.group(1) or m.group(3)] = m.group(2) if m.group(1) else "n"
kdoc = open("docs/KERNEL-HARDENING.md", encoding="utf-8").read()
host = kdoc.split("## Host kernel, option by option", 1)[-1].split("\n## ", 1)[0]
options = 0
for row in host.splitlines():
    if not row.startswith("| `"):
        continue
    for neg, sym, val in re.findall(r"(no |)`([A-Z0-9_]+)(?:=([^`]*))?`", row.split("|")[1]):
        options += 1
        have = frag.get(sym)
        if neg and have not in (None, "n"):
            bad.append(f"docs/KERNEL-HARDENING.md: no `{sym}`, but the host fragment sets {have}")
        if not neg and have != (val or "y"):
            bad.append(f"docs/KERNEL-HARDENING.md: `{sym}`={val or 'y'}, the host fragment: {have}")
if options < 50:
    bad.append(f"docs/KERNEL-HARDENING.md: only {options} host options found (format changed?)")

# The escape suite's attempt count, wherever the docs give one ("N attempts"), is the
# number of attempts tests/escape/attempts.txt lists (it grew three times past README).
attempts = sum(1 for l in open("tests/escape/attempts.txt", encoding="utf-8")
               if l.strip() and not l.startswith("#"))
for d in docs:
    for n in re.findall(r"\b(\d+) attempts\b", open(d, encoding="utf-8").read()):
        cited += 1
        if int(n) != attempts:
            bad.append(f"{d}: {n} attempts, tests/escape/attempts.txt lists {attempts}")

# Every long option the docs quote (`... --flag ...`) is one the tree has: written out in
# a source file, a script or the Makefile, or a field of a clap-derived command line
# (`--foo-bar` is the field foo_bar). Options of other projects' tools are listed here.
FOREIGN = {"--engine"}  # sbsign's (docs/SIGNING.md)
text_src = "".join(open(f, encoding="utf-8", errors="replace").read() for f in tracked
                   if f.endswith((".rs", ".sh", ".S", ".json", ".txt")) or f == "Makefile")
clap = "".join(t for t in src.values() if "clap" in t)
for d in docs:
    quoted = re.findall(r"`[^`\n]*`", open(d, encoding="utf-8").read())
    for flag in sorted({f for q in quoted for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", q)}):
        cited += 1
        field = re.escape(flag[2:].replace("-", "_"))
        if flag not in text_src and flag not in FOREIGN \
                and not re.search(r"\b(pub )?" + field + r": ", clap):
            bad.append(f"{d}: option `{flag}` is in no source file, script or clap field")

for b in bad:
    print(b, file=sys.stderr)
print(f"{cited} code references in {len(docs)} docs, {rules} seccomp rules of {len(jsons)} filter files, {options} host kernel options")
sys.exit(1 if bad else 0)
EOF
) || fail "the docs cite what is not there (above)"
pass "$out"
