"""What a change to a KB changes: the structural diff of two KBs and its effect on a claims corpus.

Structure (no evaluation): rules are matched by `@id`, else by head relation and normalised body
(variables renamed in order of appearance); inline facts by relation and values; `.input` table
rows by key. A table whose file bytes did not change is skipped unread; a changed one is
streamed (a sorted merge when both files are sorted, else a set of row hashes), so the 2.5M-row
PTP table costs one pass over each file, never a copy of it in memory.

Behaviour: every claim of a corpus is adjudicated under both KBs; a line whose decision or
in-force reasons differ is attributed to the changed rules, facts and rows that appear in its
old or new proof. Witness claims for the changes no corpus line shows are in engine/witness.py.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.program import Program
from engine.syntax import nodes as A

Row = tuple[str, ...]


class DiffError(Exception):
    """An OLD or NEW that is neither a KB directory nor a git revision of one."""


# ---------------------------------------------------------------------------------------------
# Where the two KBs come from


@dataclass
class KBSource:
    """One side of a diff: the directory to read and how it was obtained."""

    spec: str
    path: Path
    how: str  # "directory" or "git revision <sha> (kb/ materialised with git archive into <dir>)"
    _tmp: Path | None = None

    def cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def resolve_source(spec: str, kb_dir: Path) -> KBSource:
    """`spec` as a KB directory, else as a git revision of the repository holding `kb_dir`
    (whose path inside the repository names the KB in that revision)."""
    p = Path(spec)
    if p.is_dir():
        return KBSource(spec, p, "directory")
    kb_dir = kb_dir.resolve()
    top = _git(kb_dir, "rev-parse", "--show-toplevel")
    if top is None:
        raise DiffError(f"{spec}: not a KB directory, and {kb_dir} is not in a git repository")
    sha = _git(kb_dir, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    if sha is None:
        raise DiffError(f"{spec}: neither a KB directory nor a git revision of {top}")
    rel = kb_dir.relative_to(Path(top).resolve()).as_posix()
    tmp = Path(tempfile.mkdtemp(prefix="policykb-diff-"))
    archive = subprocess.run(
        ["git", "-C", top, "archive", "--format=tar", sha, "--", rel], capture_output=True, check=False
    )
    if archive.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DiffError(f"{spec}: git archive of {rel} failed: {archive.stderr.decode(errors='replace').strip()}")
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp, filter="data")
    # keep the KB directory's own name, so paths read kb/... on both sides
    return KBSource(spec, tmp / rel, f"git revision {sha[:12]} ({rel}/ materialised with git archive into {tmp})", tmp)


def in_git_work_tree(path: Path) -> bool:
    """Whether `path` is inside a git work tree (so `policykb diff HEAD path` can read its past)."""
    return _git(path.resolve(), "rev-parse", "--is-inside-work-tree") == "true"


def _git(cwd: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


# ---------------------------------------------------------------------------------------------
# Structural diff


@dataclass(frozen=True)
class RuleRef:
    key: str  # the @id, or "head :- normalised body"
    rule_id: str | None
    head: str
    text: str
    location: str


@dataclass
class RuleChange:
    key: str
    old: RuleRef | None
    new: RuleRef | None
    what: list[str] = field(default_factory=list)  # "body", "@message", ...

    @property
    def status(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"

    def to_dict(self) -> dict[str, Any]:
        ref = self.new or self.old
        assert ref is not None
        return {
            "key": self.key,
            "status": self.status,
            "rule": ref.rule_id,
            "head": ref.head,
            "what": self.what,
            "old": self.old.text if self.old else None,
            "new": self.new.text if self.new else None,
            "location": ref.location,
        }


@dataclass(frozen=True)
class FactChange:
    relation: str
    values: tuple[A.Value, ...]
    status: str  # added | removed
    location: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "relation": self.relation,
            "values": list(self.values),
            "status": self.status,
            "location": self.location,
        }


@dataclass(frozen=True)
class RowChange:
    relation: str
    key: tuple[str, ...]
    old: Row | None
    new: Row | None

    @property
    def status(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"

    def to_dict(self, columns: list[str]) -> dict[str, Any]:
        d: dict[str, Any] = {
            "relation": self.relation,
            "status": self.status,
            "key": list(self.key),
            "old": dict(zip(columns, self.old, strict=True)) if self.old else None,
            "new": dict(zip(columns, self.new, strict=True)) if self.new else None,
        }
        if self.old and self.new:
            d["changed_columns"] = [c for c, a, b in zip(columns, self.old, self.new, strict=True) if a != b]
        return d


@dataclass
class TableDiff:
    relation: str
    file: str
    columns: list[str]
    key_columns: list[str]
    bytes_changed: bool
    method: str  # "unchanged (same bytes)", "sorted merge", "row hashes", "added", "removed"
    rows: list[RowChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "relation": self.relation,
            "file": self.file,
            "key": self.key_columns,
            "bytes_changed": self.bytes_changed,
            "method": self.method,
            "rows": [r.to_dict(self.columns) for r in self.rows],
        }


@dataclass
class StructuralDiff:
    rules: list[RuleChange] = field(default_factory=list)
    facts: list[FactChange] = field(default_factory=list)
    tables: list[TableDiff] = field(default_factory=list)
    relations: list[dict[str, str]] = field(default_factory=list)  # declarations added/removed/changed

    def row_changes(self) -> list[RowChange]:
        return [r for t in self.tables for r in t.rows]

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name, items in (
            ("rules", [r.status for r in self.rules]),
            ("facts", [f.status for f in self.facts]),
            ("table rows", [r.status for r in self.row_changes()]),
            ("relations", [r["status"] for r in self.relations]),
        ):
            out[name] = {s: items.count(s) for s in ("added", "removed", "changed")}
        return out

    @property
    def empty(self) -> bool:
        return not (self.rules or self.facts or self.row_changes() or self.relations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "rules": [r.to_dict() for r in self.rules],
            "facts": [f.to_dict() for f in self.facts],
            "tables": [t.to_dict() for t in self.tables],
            "relations": self.relations,
        }


def normalise_rule(rule: A.Rule) -> tuple[str, str]:
    """(head, body) with variables renamed v1, v2 ... in order of first appearance, and the body
    literals in sorted order: two rules that differ only in naming or order compare equal."""
    names: dict[str, str] = {}

    def term(t: A.Term) -> str:
        if isinstance(t, A.Var):
            if t.anonymous:
                return "_"
            names.setdefault(t.name, f"v{len(names) + 1}")
            return names[t.name]
        if isinstance(t, A.Const):
            return A.render_value(t.value)
        return f"({term(t.left)} {t.op} {term(t.right)})"

    def atom(a: A.Atom) -> str:
        return f"{a.pred}({', '.join(term(x) for x in a.args)})"

    def lit(x: A.Literal) -> str:
        if isinstance(x, A.Atom):
            return atom(x)
        if isinstance(x, A.Negation):
            return "!" + atom(x.atom)
        if isinstance(x, A.Comparison):
            return f"{term(x.left)} {x.op} {term(x.right)}"
        if isinstance(x, A.Match):
            return f"{'!' if x.negated else ''}match({term(x.pattern)}, {term(x.value)})"
        tgt = f" {term(x.target)}" if x.target is not None else ""
        return f"{term(x.result)} = {x.func}{tgt} : {{ {', '.join(lit(b) for b in x.body)} }}"

    head = atom(rule.head)
    return head, ", ".join(sorted(lit(b) for b in rule.body))


def _rule_refs(prog: Program) -> dict[str, tuple[RuleRef, A.Rule]]:
    out: dict[str, tuple[RuleRef, A.Rule]] = {}
    for r in prog.rules:
        head, body = normalise_rule(r)
        key = r.rule_id or f"{head} :- {body}"
        out.setdefault(key, (RuleRef(key, r.rule_id, r.head.pred, str(r), f"{r.loc.path}:{r.loc.line}"), r))
    return out


def diff_rules(old: Program, new: Program) -> list[RuleChange]:
    a, b = _rule_refs(old), _rule_refs(new)
    out: list[RuleChange] = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            out.append(RuleChange(key, a[key][0], None))
        elif key not in a:
            out.append(RuleChange(key, None, b[key][0]))
        else:
            (ra, rule_a), (rb, rule_b) = a[key], b[key]
            what = []
            if normalise_rule(rule_a) != normalise_rule(rule_b):
                what.append("body" if rule_a.head.pred == rule_b.head.pred else "head")
            ann_a = {e.key: e.value for e in rule_a.doc.entries}
            ann_b = {e.key: e.value for e in rule_b.doc.entries}
            what += [f"@{k}" for k in sorted(set(ann_a) | set(ann_b)) if ann_a.get(k) != ann_b.get(k)]
            if what:
                out.append(RuleChange(key, ra, rb, what))
    return out


def _fact_set(prog: Program) -> dict[tuple[str, tuple[A.Value, ...]], str]:
    out: dict[tuple[str, tuple[A.Value, ...]], str] = {}
    for f in prog.facts:
        if all(isinstance(a, A.Const) for a in f.atom.args):
            vals = tuple(a.value for a in f.atom.args)  # type: ignore[union-attr]
            out.setdefault((f.atom.pred, vals), f"{f.loc.path}:{f.loc.line}")
    return out


def diff_facts(old: Program, new: Program) -> list[FactChange]:
    a, b = _fact_set(old), _fact_set(new)
    out = [FactChange(rel, vals, "removed", loc) for (rel, vals), loc in a.items() if (rel, vals) not in b]
    out += [FactChange(rel, vals, "added", loc) for (rel, vals), loc in b.items() if (rel, vals) not in a]
    return sorted(out, key=lambda f: (f.relation, f.status, [str(v) for v in f.values]))


def diff_relations(old: Program, new: Program) -> list[dict[str, str]]:
    out = []
    for name in sorted(set(old.decls) | set(new.decls)):
        da, db = old.decls.get(name), new.decls.get(name)
        if da is None:
            out.append({"relation": name, "status": "added"})
        elif db is None:
            out.append({"relation": name, "status": "removed"})
        elif [(x.name, x.type) for x in da.attrs] != [(x.name, x.type) for x in db.attrs]:
            out.append({"relation": name, "status": "changed"})
    return out


# -- tables -------------------------------------------------------------------------------------


def key_columns(prog: Program, relation: str) -> list[int]:
    """Positions that identify a row: the `.input` key option when given, else the leading
    columns of a code-like type (a domain type with a pattern that is not a date), else the
    first column. PTP: (column_1, column_2); MUE: (code)."""
    inp, decl = prog.inputs.get(relation), prog.decls.get(relation)
    if decl is None:
        return [0]
    names = [a.name for a in decl.attrs]
    opt = inp.option("key") if inp else None
    if isinstance(opt, str) and opt:
        wanted = [k.strip() for k in opt.split(",")]
        if all(k in names for k in wanted):
            return [names.index(k) for k in wanted]
    types = prog.attr_types(relation) or []
    lead = []
    for i, t in enumerate(types):
        if t.pattern is None or t.is_date or t.base != "symbol" or t.optional:
            break
        lead.append(i)
    return lead or [0]


def _chunks(path: Path) -> Iterator[bytes]:
    """The file's data (header skipped), decompressed, in blocks of about 1 MB that end at a
    line end: two files that agree line by line give equal blocks, compared without decoding."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as raw:
        raw.readline()
        while block := raw.read(1 << 20):
            yield block + raw.readline()


def _lines(block: bytes) -> list[str]:
    return [x for x in (line.rstrip(b"\r").decode("utf-8") for line in block.split(b"\n")) if x]


def _open_rows(path: Path, delimiter: str) -> Iterator[str]:
    for block in _chunks(path):
        yield from _lines(block)


def _parse(line: str, delimiter: str) -> Row:
    return tuple(next(csv.reader([line], delimiter=delimiter)))


class _Unsorted(Exception):
    pass


def _merge_sorted(a: Iterator[bytes], b: Iterator[bytes]) -> tuple[list[str], list[str]]:
    """Lines only in a, lines only in b, for two sorted files read in batches (raises _Unsorted).
    While the two sides stay aligned, equal batches are skipped whole (one list comparison), so
    an edit that keeps the line count, like a changed date, costs little more than reading."""
    only_a: list[str] = []
    only_b: list[str] = []
    qa: deque[str] = deque()
    qb: deque[str] = deque()
    done_a = done_b = False
    px = py = ""
    while True:
        if not qa and not qb:
            ba, bb = next(a, None), next(b, None)
            done_a, done_b = ba is None, bb is None
            if done_a and done_b:
                break
            if ba == bb:
                continue
            qa.extend(_lines(ba or b""))
            qb.extend(_lines(bb or b""))
        if not qa and not done_a:
            ba = next(a, None)
            done_a = ba is None
            qa.extend(_lines(ba or b""))
        if not qb and not done_b:
            bb = next(b, None)
            done_b = bb is None
            qb.extend(_lines(bb or b""))
        if not qa and not qb:
            continue
        x = qa[0] if qa else None
        y = qb[0] if qb else None
        if (x is not None and x < px) or (y is not None and y < py):
            raise _Unsorted
        if y is None or (x is not None and x < y):
            only_a.append(qa.popleft())
            px = x  # type: ignore[assignment]
        elif x is None or y < x:
            only_b.append(qb.popleft())
            py = y
        else:
            qa.popleft()
            qb.popleft()
            px, py = x, y
    return only_a, only_b


def _hash_diff(a_path: Path, b_path: Path, delimiter: str) -> tuple[list[str], list[str]]:
    """Set difference by row hashes (8 bytes a row), then a second pass for the rows themselves."""

    def digests(p: Path) -> set[bytes]:
        return {hashlib.blake2b(line.encode(), digest_size=8).digest() for line in _open_rows(p, delimiter)}

    ha, hb = digests(a_path), digests(b_path)
    only_a = [
        ln for ln in _open_rows(a_path, delimiter) if hashlib.blake2b(ln.encode(), digest_size=8).digest() not in hb
    ]
    only_b = [
        ln for ln in _open_rows(b_path, delimiter) if hashlib.blake2b(ln.encode(), digest_size=8).digest() not in ha
    ]
    return only_a, only_b


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def diff_table(relation: str, old: Program, new: Program) -> TableDiff | None:
    oi, ni = old.inputs.get(relation), new.inputs.get(relation)
    prog = new if ni is not None else old
    decl = prog.decls.get(relation)
    columns = [a.name for a in decl.attrs] if decl else []
    keys = key_columns(prog, relation)
    inp = ni or oi
    assert inp is not None
    delim = inp.option("delimiter")
    delimiter = delim if isinstance(delim, str) and len(delim) == 1 else ","

    def path_of(p: Program, i: A.InputDecl | None) -> Path | None:
        fn = i.option("filename") if i else None
        if not isinstance(fn, str) or p.root is None:
            return None
        f = p.root / fn
        return f if f.is_file() else None

    pa, pb = path_of(old, oi), path_of(new, ni)
    if pa is None and pb is None:
        return None  # no table file on either side (the checker reports a missing one)
    shown = str(inp.option("filename"))
    td = TableDiff(relation, shown, columns, [columns[k] for k in keys if k < len(columns)], True, "")
    if pa is not None and pb is not None and _file_digest(pa) == _file_digest(pb):
        td.bytes_changed, td.method = False, "unchanged (same bytes)"
        return td
    try:
        if pa is None or pb is None:
            td.method = "added" if pa is None else "removed"
            lines_a = list(_open_rows(pa, delimiter)) if pa else []
            lines_b = list(_open_rows(pb, delimiter)) if pb else []
        else:
            try:
                lines_a, lines_b = _merge_sorted(_chunks(pa), _chunks(pb))
                td.method = "sorted merge"
            except _Unsorted:
                lines_a, lines_b = _hash_diff(pa, pb, delimiter)
                td.method = "row hashes"
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise DiffError(f"cannot read table {shown} of {relation}: {exc}") from None
    td.rows = _pair_rows(
        relation, [_parse(x, delimiter) for x in lines_a], [_parse(x, delimiter) for x in lines_b], keys
    )
    return td


def _pair_rows(relation: str, removed: list[Row], added: list[Row], keys: list[int]) -> list[RowChange]:
    """Rows of one key present on both sides are a change (paired in sorted order)."""

    def key(r: Row) -> tuple[str, ...]:
        return tuple(r[k] for k in keys if k < len(r))

    by_a: dict[tuple[str, ...], list[Row]] = {}
    by_b: dict[tuple[str, ...], list[Row]] = {}
    for r in removed:
        by_a.setdefault(key(r), []).append(r)
    for r in added:
        by_b.setdefault(key(r), []).append(r)
    out: list[RowChange] = []
    for k in sorted(set(by_a) | set(by_b)):
        ra, rb = sorted(by_a.get(k, [])), sorted(by_b.get(k, []))
        for i in range(max(len(ra), len(rb))):
            out.append(RowChange(relation, k, ra[i] if i < len(ra) else None, rb[i] if i < len(rb) else None))
    return out


def structural_diff(old: Program, new: Program) -> StructuralDiff:
    sd = StructuralDiff(diff_rules(old, new), diff_facts(old, new), [], diff_relations(old, new))
    for rel in sorted(set(old.inputs) | set(new.inputs)):
        td = diff_table(rel, old, new)
        if td is not None:
            sd.tables.append(td)
    return sd


def claim_json_text(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=False, ensure_ascii=False)
