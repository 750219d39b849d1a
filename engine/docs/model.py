"""What the reference site shows, collected from a loaded KB: plain data, no Markdown.

Everything here is read from the program (rules, declarations, facts, doc comments), the store
(tables) and the engine (static relations such as in_range); nothing is restated by hand, so
the pages cannot disagree with the rules. Which relation plays which part (the code lists, the
pair edits, the reference lists ...) is the KB's `@docs` annotations' to say (engine/docroles.py);
the pair-edit table (millions of rows) is read in one pass that buckets rows for the codes with
a page and gathers the counts for the code lookup.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from engine.checks import all_atoms
from engine.docroles import RARC, DocRole, fill, roles_of
from engine.evaluate import Evaluator
from engine.kb import LoadedKB
from engine.program import OUTCOME_RELATIONS, TypeInfo
from engine.store import RowSource
from engine.syntax import nodes as A

Row = tuple[A.Value, ...]


class NamedRow(tuple):
    """A table row that also answers by its relation's attribute names (`row.description`), so
    pages and templates read columns by name, never by position."""

    names: tuple[str, ...]

    def __new__(cls, values: Row, names: tuple[str, ...] = ()) -> NamedRow:
        obj = super().__new__(cls, values)
        obj.names = names
        return obj

    def __getattr__(self, name: str) -> A.Value:
        try:
            return self[self.names.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def get(self, name: str, default: A.Value = "") -> A.Value:
        return self[self.names.index(name)] if name in self.names else default


PTP_ROWS_SHOWN = 300  # a code page lists every edit row when it has at most this many
LOOKUP_PARTNERS = 10  # partners per side (first / second code) in the lookup index


@dataclass(frozen=True, order=True)
class Src:
    """Where something shown comes from: a KB file line, or a table file's data row."""

    path: str
    line: int = 0
    row: int | None = None

    def __str__(self) -> str:
        if self.row is not None:
            return f"{self.path} row {self.row}"
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class Mention:
    """A constant written in a rule or fact, at a known argument position."""

    relation: str
    attr: str
    value: A.Value
    src: Src
    rule: int | None = None  # index into DocsModel.rules; None for a fact
    negated: bool = False


@dataclass
class GuidanceDoc:
    """A statement of the injection guidance: id, section, our paraphrase, and why a claim
    cannot decide it (empty when it can)."""

    id: str
    section: str
    statement: str
    src: Src
    undecidable: str = ""


@dataclass
class RuleDoc:
    index: int
    rule: A.Rule
    src: Src

    @property
    def id(self) -> str | None:
        return self.rule.rule_id

    @property
    def head(self) -> str:
        return self.rule.head.pred

    @property
    def is_outcome(self) -> bool:
        return self.head in OUTCOME_RELATIONS and self.id is not None

    def ann(self, key: str) -> str:
        return " ".join((self.rule.doc.get(key) or "").split())

    @property
    def title(self) -> str:
        return self.ann("title") or self.id or self.head

    @property
    def rarcs(self) -> list[str]:
        return self.ann(RARC).split()

    @property
    def sources(self) -> list[str]:
        return [s.strip() for s in self.ann("source").split(";") if s.strip()]

    @property
    def page(self) -> str:
        return f"rules/{self.id}.md" if self.id else f"relations/{self.head}.md"

    @property
    def anchor(self) -> str:
        return "" if self.id else f"rule-{Path(self.src.path).stem}-{self.src.line}"


@dataclass
class RelationDoc:
    name: str
    decl: A.RelDecl
    src: Src
    origin: str  # claim | table | facts | derived | outcome
    kind: str  # the compiler's classification
    stratum: int | None
    table: str | None = None
    rows: int = 0
    facts: list[tuple[Src, Row]] = field(default_factory=list)
    defined_by: list[int] = field(default_factory=list)
    used_by: list[int] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return " ".join((self.decl.doc.get("summary") or "").split())

    @property
    def source(self) -> str:
        return " ".join((self.decl.doc.get("source") or "").split())

    @property
    def page(self) -> str:
        return f"relations/{self.name}.md"

    def named_facts(self) -> list[tuple[Src, NamedRow]]:
        names = tuple(a.name for a in self.decl.attrs)
        return [(s, NamedRow(row, names)) for s, row in self.facts]


@dataclass
class EditRow:
    """A row of the pair-edit relation (`@docs code_edit`), by the role's column names."""

    first: str
    second: str
    deleted: str
    indicator: str
    reason: str
    src: Src
    row: Row


@dataclass
class CodeStats:
    """Pair-edit counts of one code, for every code in the tables (the lookup index)."""

    col1_active: int = 0
    col1_deleted: int = 0
    col2_active: int = 0
    col2_deleted: int = 0
    partners1: list[str] = field(default_factory=list)  # "code:indicator", active rows as the first code
    partners2: list[str] = field(default_factory=list)  # as the second code

    @property
    def col1_total(self) -> int:
        return self.col1_active + self.col1_deleted

    @property
    def col2_total(self) -> int:
        return self.col2_active + self.col2_deleted

    @property
    def total(self) -> int:
        return self.col1_total + self.col2_total


@dataclass
class CodeDoc:
    code: str
    description: str = ""
    category: str = ""
    # the code's rows in each role's relation, keyed by the relation name (`@docs` on its .decl)
    listed: list[tuple[DocRole, Src, NamedRow]] = field(default_factory=list)  # code_list
    facts: dict[str, tuple[Src, NamedRow]] = field(default_factory=dict)  # code_fact
    links: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # code_link: (others, reverse)
    rows: dict[str, list[tuple[Src, NamedRow]]] = field(default_factory=dict)  # code_rows
    ranges: list[str] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)
    via: dict[int, tuple[str, bool]] = field(default_factory=dict)  # rule -> (how it reaches the code, negated)
    via_outcomes: dict[int, list[int]] = field(default_factory=dict)  # rule -> outcome rules it leads to
    outcome_rules: list[int] = field(default_factory=list)
    # side (1: the code is the first code of the edit, 2: the second) -> (rows listed on the page,
    # whether that is all of them)
    edits: dict[int, tuple[list[EditRow], bool]] = field(default_factory=dict)
    stats: CodeStats = field(default_factory=CodeStats)

    @property
    def page(self) -> str:
        return f"codes/{self.code}.md"


@dataclass
class RangeDoc:
    name: str
    low: str
    high: str
    src: Src
    members: list[str] = field(default_factory=list)


@dataclass
class Case:
    """A policy test case (kb/**/*.cases.json) and what the engine decided for it."""

    name: str
    about: list[str]
    claim: dict
    expect: dict
    src: Src
    result: dict | None = None
    error: str | None = None


@dataclass
class DocsModel:
    root: Path
    repo: Path
    version: str
    modules: dict[str, str]  # KB file -> its header comment
    rules: list[RuleDoc]
    relations: dict[str, RelationDoc]
    types: list[tuple[str, A.TypeDecl | None, TypeInfo, Src | None]]
    codes: dict[str, CodeDoc]
    categories: dict[str, list[str]]
    ranges: dict[str, RangeDoc]
    mentions: list[Mention]
    graph: nx.DiGraph  # ("rel", name) / ("rule", index) nodes
    roles: list[DocRole]  # the KB's `@docs` annotations: which relation plays which part
    references: dict[str, list[tuple[Src, NamedRow]]]  # reference relation -> its rows
    tags: dict[str, dict[str, list[tuple[Src, str]]]]  # tag relation -> key value -> (src, tag)
    denial_codes: dict[str, dict[str, tuple[Src, NamedRow]]]  # annotation (group, carc, rarc) -> code -> row
    stats: dict[str, CodeStats]
    lookup_descriptions: dict[str, str]
    lookup_extra: dict[str, dict]
    cases: list[Case]
    code_pattern: str
    guidance: dict[str, GuidanceDoc] = field(default_factory=dict)

    def role(self, name: str) -> DocRole | None:
        return next((r for r in self.roles if r.role == name), None)

    def roles_named(self, name: str) -> list[DocRole]:
        return [r for r in self.roles if r.role == name]

    def denial_role(self, annotation: str) -> DocRole | None:
        return next((r for r in self.roles_named("denial_code") if r.text("annotation") == annotation), None)

    @property
    def outcome_rules(self) -> list[RuleDoc]:
        return [r for r in self.rules if r.is_outcome]

    @property
    def id_rules(self) -> list[RuleDoc]:
        return [r for r in self.rules if r.id]


# --- collection --------------------------------------------------------------------------


def collect(kb: LoadedKB, evaluator: Evaluator, adjudicate=None) -> DocsModel:
    """Everything the site shows. `adjudicate(claim_json) -> result dict` runs the cases."""
    root = Path(kb.root).resolve()
    repo = root.parent
    prog = kb.program

    def src(path: str, line: int = 0, row: int | None = None) -> Src:
        return Src(_repo_path(path, repo), line, row)

    def rsrc(rs: RowSource) -> Src:
        return src(rs.path, rs.line, rs.table_row)

    rules = [RuleDoc(i, r, src(r.loc.path, r.loc.line)) for i, r in enumerate(prog.rules)]
    modules = {_repo_path(m.path, repo): _header_comment(m.lines) for m in prog.modules}
    mentions = _mentions(prog, rules, src)
    graph = rule_graph(prog, rules)
    relations = _relations(kb, rules, src, rsrc)
    types = [
        (name, prog.type_decls.get(name), info, src(info.loc.path, info.loc.line) if info.loc else None)
        for name, info in sorted(prog.types.items())
    ]

    roles = roles_of(prog.decls)

    def role(name: str) -> DocRole | None:
        return next((r for r in roles if r.role == name), None)

    def named(name: str) -> list[DocRole]:
        return [r for r in roles if r.role == name]

    tables: dict[str, list[tuple[Src, NamedRow]]] = {}

    def table(rel: str) -> list[tuple[Src, NamedRow]]:
        """A relation's rows by attribute name: a stored table's, or the facts the KB lists."""
        if rel not in tables:
            decl = prog.decls.get(rel)
            names = tuple(a.name for a in decl.attrs) if decl else ()
            if kb.store.has(rel):
                tables[rel] = [(rsrc(rs), NamedRow(row, names)) for rs, row in kb.store.scan(rel)]
            else:
                tables[rel] = relations[rel].named_facts() if rel in relations else []
        return tables[rel]

    def keyed(rel: str, col: str) -> dict[str, tuple[Src, NamedRow]]:
        """Rows by the value of their key column (a code, a modifier ...); the first row wins."""
        out: dict[str, tuple[Src, NamedRow]] = {}
        for s, row in table(rel):
            out.setdefault(str(row.get(col)), (s, row))
        return out

    edit = role("code_edit")
    code_pattern = getattr(prog.types.get("Code"), "pattern", None) or r"^[0-9A-Z]{5}$"
    # every table row that names a code in a Code-typed column, by code (the pair edits apart: too big)
    rows_by_code: dict[str, dict[str, list[tuple[Src, NamedRow]]]] = defaultdict(lambda: defaultdict(list))
    code_lists = named("code_list")
    scanned = set(prog.inputs) | {r.relation for r in code_lists}
    for rel in sorted(scanned):
        decl = prog.decls.get(rel)
        if (edit and rel == edit.relation) or decl is None:
            continue
        positions = [i for i, a in enumerate(decl.attrs) if a.type == "Code"]
        positions += [
            decl.attrs.index(a)
            for a in decl.attrs
            for r in code_lists
            if r.relation == rel and a.name == r.col("code") and a.type != "Code"
        ]
        for s, row in table(rel):
            for i in positions:
                rows_by_code[str(row[i])][rel].append((s, row))

    # the curated lists (pages=all) describe a code first; the others by relation name
    code_lists.sort(key=lambda r: (r.text("pages") != "all", r.relation))
    listed = {r.relation: keyed(r.relation, r.col("code")) for r in code_lists}
    facts = {r.relation: keyed(r.relation, r.col("code")) for r in named("code_fact")}
    range_role, bounds_role, category_role = role("range"), role("range_bounds"), role("category")
    paged = {r.relation for r in code_lists if r.text("pages") == "all"}
    bounds_rel = bounds_role.relation if bounds_role else ""
    page_codes = _page_codes(rows_by_code, mentions, code_pattern, paged, bounds_rel)
    stats, buckets = _scan_edits(kb, edit, page_codes, rsrc)
    universe = set(stats) | set(rows_by_code)

    ranges = _ranges(table(bounds_rel) if bounds_role else [], bounds_role, range_role, universe, evaluator)
    categories: dict[str, list[str]] = defaultdict(list)

    def ask(r: DocRole | None, code: str | None, value_col: str) -> list[str]:
        """The values of `value_col` the engine gives for a code (all codes: None) in the role's relation."""
        if r is None:
            return []
        ci, vi = r.attrs.index(r.col("code")), r.attrs.index(value_col)
        args = tuple(code if i == ci else None for i in range(len(r.attrs)))
        return [f"{row[ci]}\t{row[vi]}" for _s, row in evaluator.lookup(r.relation, args)]

    for pair in ask(category_role, None, category_role.col("category") if category_role else ""):
        code, cat = pair.split("\t", 1)
        categories[cat].append(code)
    category_of = {c: cat for cat, cs in sorted(categories.items(), reverse=True) for c in cs}

    codes: dict[str, CodeDoc] = {}
    for c in sorted(page_codes):
        mine = rows_by_code.get(c, {})
        d = CodeDoc(c)
        for r in code_lists:
            if c in listed[r.relation]:
                s, row = listed[r.relation][c]
                d.listed.append((r, s, row))
                if not d.description:
                    d.description = next((str(row.get(col)) for col in r.cols("description") if row.get(col)), "")
        d.facts = {rel: by_code[c] for rel, by_code in facts.items() if c in by_code}
        for r in named("code_link"):
            rows = mine.get(r.relation, [])
            d.links[r.relation] = (
                [str(row.get(r.col("other"))) for _s, row in rows if row.get(r.col("code")) == c],
                [str(row.get(r.col("code"))) for _s, row in rows if row.get(r.col("other")) == c],
            )
        for r in named("code_rows"):
            d.rows[r.relation] = sorted(
                (sr for sr in mine.get(r.relation, []) if sr[1].get(r.col("code")) == c), key=lambda sr: sr[1]
            )
        d.category = category_of.get(c, "")
        d.ranges = sorted(
            pair.split("\t", 1)[1] for pair in ask(range_role, c, range_role.col("name") if range_role else "")
        )
        d.stats = stats.get(c, CodeStats())
        for side, count in ((1, d.stats.col1_total), (2, d.stats.col2_total)):
            policy_rows, other_rows = buckets[c][side]
            every = count <= PTP_ROWS_SHOWN
            d.edits[side] = (
                sorted(
                    policy_rows + other_rows if every else policy_rows,
                    key=lambda p: (p.first, p.second, p.deleted, p.src),
                ),
                every,
            )
        codes[c] = d
    static = {rel for rel, k in (kb.compiled.kinds.items() if kb.compiled else []) if k.value == "static"}
    _link_codes_to_rules(
        codes, rules, mentions, graph, rows_by_code, buckets, static, edit, range_role, category_role, bounds_rel
    )

    cases = _cases(root, repo, adjudicate)
    lookup_descriptions: dict[str, str] = {}
    for r in reversed(code_lists):  # the first list's text wins
        col = r.col("lookup") or next(iter(r.cols("description")), "")
        if col:
            lookup_descriptions.update({c: str(row.get(col)) for c, (_s, row) in listed[r.relation].items()})
    lookup_extra: dict[str, dict] = {}
    shorts = lookup_fields(roles)
    for c in universe:
        e: dict = {}
        values = []
        for r in shorts:
            hit: NamedRow | None = None
            if r.role == "code_fact":
                hit = facts[r.relation].get(c, (None, None))[1]
            else:
                where = r.extra.get("where", {})
                hit = next(
                    (
                        x
                        for _s, x in rows_by_code.get(c, {}).get(r.relation, [])
                        if x.get(r.col("code")) == c and all(str(x.get(k)) == v for k, v in where.items())
                    ),
                    None,
                )
            values.append(fill(r.text("short"), dict(zip(hit.names, hit, strict=False))) if hit is not None else "")
        if any(values):
            e["f"] = values
        lookup_extra[c] = e

    tags: dict[str, dict[str, list[tuple[Src, str]]]] = {}
    for r in named("tag"):
        by_key: dict[str, list[tuple[Src, str]]] = defaultdict(list)
        for s, row in table(r.relation):
            by_key[str(row.get(r.col("key")))].append((s, str(row.get(r.col("tag")))))
        tags[r.relation] = dict(by_key)

    return DocsModel(
        root=root,
        repo=repo,
        version=kb.version,
        modules=modules,
        rules=rules,
        relations=relations,
        types=types,
        codes=codes,
        categories={k: sorted(v) for k, v in sorted(categories.items())},
        ranges=ranges,
        mentions=mentions,
        graph=graph,
        roles=roles,
        references={r.relation: table(r.relation) for r in named("reference")},
        tags=tags,
        denial_codes={r.text("annotation"): keyed(r.relation, r.col("key")) for r in named("denial_code")},
        stats=stats,
        lookup_descriptions=lookup_descriptions,
        lookup_extra=lookup_extra,
        cases=cases,
        code_pattern=code_pattern,
        guidance=_guidance(relations, role("guidance"), named("guidance_note")),
    )


def lookup_fields(roles: list[DocRole]) -> list[DocRole]:
    """The roles whose `short` text the code lookup and the code tables show, in order."""
    return [r for r in roles if r.role in ("code_fact", "code_rows") and r.text("short")]


def _guidance(
    relations: dict[str, RelationDoc], stated: DocRole | None, notes: list[DocRole]
) -> dict[str, GuidanceDoc]:
    """The guidance statements (KB facts), with the reasons some are not decidable."""
    out: dict[str, GuidanceDoc] = {}
    if stated is None or stated.relation not in relations:
        return out
    for src, row in relations[stated.relation].named_facts():
        key = str(row.get(stated.col("id")))
        out[key] = GuidanceDoc(key, str(row.get(stated.col("section"))), str(row.get(stated.col("statement"))), src)
    for note in notes:
        for _src, row in relations[note.relation].named_facts() if note.relation in relations else []:
            if str(row.get(note.col("id"))) in out:
                out[str(row.get(note.col("id")))].undecidable = str(row.get(note.col("reason")))
    return out


@functools.lru_cache(maxsize=256)
def _repo_path(path: str, repo: Path) -> str:
    """Paths as seen from the repository root, whatever the current directory was."""
    p = Path(path)
    if not p.is_absolute():
        p = Path.cwd() / p
    try:
        return p.resolve().relative_to(repo).as_posix()
    except ValueError:
        return path


def _header_comment(lines: tuple[str, ...]) -> str:
    """The `//` comment a KB file opens with, as one paragraph."""
    out = []
    for line in lines:
        s = line.strip()
        if not s.startswith("//"):
            break
        out.append(s[2:].strip())
    return " ".join(x for x in out if x)


def _literals(body: tuple[A.Literal, ...]):
    """(atom, negated) for every atom of a body; atoms inside an aggregate count as negative."""
    return all_atoms(body, aggregate_negative=True)


def _mentions(prog, rules: list[RuleDoc], src) -> list[Mention]:
    out: list[Mention] = []

    def add(atom: A.Atom, where: Src, rule: int | None, negated: bool) -> None:
        decl = prog.decls.get(atom.pred)
        names = [a.name for a in decl.attrs] if decl and decl.arity == len(atom.args) else []
        for i, arg in enumerate(atom.args):
            if isinstance(arg, A.Const) and names:
                out.append(Mention(atom.pred, names[i], arg.value, where, rule, negated))

    for r in rules:
        for atom, neg in _literals(r.rule.body):
            add(atom, r.src, r.index, neg)
        add(r.rule.head, r.src, r.index, False)
    for f in prog.facts:
        add(f.atom, src(f.loc.path, f.loc.line), None, False)
    return out


def rule_graph(prog, rules: list[RuleDoc]) -> nx.DiGraph:
    """Relations and rules as nodes: body relation -> rule -> head relation.

    Unlike engine.checks.dependency_graph (relation level, for stratification) each rule is its
    own node, so the diagram can show which rule reads what. A body atom on an outcome relation
    that names a rule id (`deny(l, "inj.facility_em")`) depends on that rule only."""
    g = nx.DiGraph()
    ids = {r.id: r.index for r in rules if r.id}
    for name in prog.decls:
        g.add_node(("rel", name))
    for r in rules:
        node = ("rule", r.index)
        g.add_node(node)
        g.add_edge(node, ("rel", r.head), negative=False)
        for atom, neg in _literals(r.rule.body):
            source: tuple = ("rel", atom.pred)
            named = atom.args[1] if atom.pred in OUTCOME_RELATIONS and len(atom.args) > 1 else None
            if isinstance(named, A.Const) and named.value in ids:
                source = ("rule", ids[str(named.value)])
            prev = g.get_edge_data(source, node)
            g.add_edge(source, node, negative=neg or bool(prev and prev["negative"]))
    return g


def _relations(kb: LoadedKB, rules: list[RuleDoc], src, rsrc) -> dict[str, RelationDoc]:
    prog, compiled = kb.program, kb.compiled
    out: dict[str, RelationDoc] = {}
    facts: dict[str, list[tuple[Src, Row]]] = defaultdict(list)
    for f in prog.facts:
        values = [a.value for a in f.atom.args if isinstance(a, A.Const)]
        if len(values) == len(f.atom.args):
            facts[f.atom.pred].append((src(f.loc.path, f.loc.line), tuple(values)))
    for name, decl in sorted(prog.decls.items()):
        defined = [r.index for r in rules if r.head == name]
        used = sorted({r.index for r in rules for atom, _n in _literals(r.rule.body) if atom.pred == name})
        if name in prog.claim_relations:
            origin = "claim"
        elif name in prog.inputs:
            origin = "table"
        elif defined:
            origin = "outcome" if name in OUTCOME_RELATIONS else "derived"
        else:
            origin = "facts" if facts.get(name) else ("outcome" if name in OUTCOME_RELATIONS else "derived")
        kind = compiled.kinds.get(name) if compiled else None
        doc = RelationDoc(
            name,
            decl,
            src(decl.loc.path, decl.loc.line),
            origin,
            kind.value if kind is not None else "",
            compiled.strata.get(name) if compiled else None,
            defined_by=defined,
            used_by=used,
            facts=sorted(facts.get(name, [])),
        )
        if origin == "table":
            doc.table = _repo_path(kb.store.table_files.get(name, ""), Path(kb.root).resolve().parent)
            doc.rows = kb.store.count(name) if kb.store.has(name) else 0
        else:
            doc.rows = len(doc.facts)
        out[name] = doc
    return out


def _page_codes(rows_by_code: dict, mentions: list[Mention], pattern: str, paged: set[str], bounds: str) -> set[str]:
    """Codes with a page: every code of a `code_list pages=all`, and every code in the tables
    that a rule or fact names (range bounds are boundaries, not codes the policy names)."""
    codes = {c for c, rels in rows_by_code.items() if paged & set(rels)}
    rx = re.compile(pattern)
    for m in mentions:
        if m.relation == bounds or not isinstance(m.value, str) or not rx.fullmatch(m.value):
            continue
        if m.value in rows_by_code:
            codes.add(m.value)
    return codes


def _scan_edits(kb: LoadedKB, edit: DocRole | None, page_codes: set[str], rsrc):
    """One pass over the pair-edit table (`@docs code_edit`): counts and first partners for every
    code, and the rows the code pages list (all of a code's rows while it has few, else those with
    another page code)."""
    stats: dict[str, CodeStats] = defaultdict(CodeStats)
    # code -> side (1: the code is the first code, 2: the second) -> (rows whose partner has a page, other rows)
    buckets: dict[str, dict[int, tuple[list[EditRow], list[EditRow]]]] = {
        c: {1: ([], []), 2: ([], [])} for c in page_codes
    }
    if edit is None or not kb.store.has(edit.relation):
        return {}, buckets
    names = edit.attrs
    # millions of rows: the columns are looked up by name once, then read by their index (an
    # optional column the role leaves out reads as "")
    cols = [
        names.index(edit.col(k)) if edit.col(k) else -1 for k in ("first", "second", "deleted", "indicator", "reason")
    ]
    for rs, row in kb.store.scan(edit.relation):
        c1, c2, dele, mi, why = (str(row[i]) if i >= 0 else "" for i in cols)
        s1, s2 = stats[c1], stats[c2]
        if dele == "":
            s1.col1_active += 1
            s2.col2_active += 1
            if len(s1.partners1) < LOOKUP_PARTNERS:
                s1.partners1.append(f"{c2}:{mi}")
            if len(s2.partners2) < LOOKUP_PARTNERS:
                s2.partners2.append(f"{c1}:{mi}")
        else:
            s1.col1_deleted += 1
            s2.col2_deleted += 1
        in1, in2 = c1 in page_codes, c2 in page_codes
        if not (in1 or in2):
            continue
        prow = None
        for code, role, partner_has_page in ((c1, 1, in2), (c2, 2, in1)):
            if code in buckets:
                policy, other = buckets[code][role]
                if partner_has_page or len(other) <= PTP_ROWS_SHOWN:
                    prow = prow or EditRow(c1, c2, dele, mi, why, rsrc(rs), row)
                    (policy if partner_has_page else other).append(prow)
    return dict(stats), buckets


def _ranges(
    rows: list[tuple[Src, NamedRow]],
    bounds: DocRole | None,
    member: DocRole | None,
    universe: set[str],
    evaluator: Evaluator,
) -> dict[str, RangeDoc]:
    """Each named range (`@docs range_bounds`) and its members, as the engine answers the
    `@docs range` relation (codes outside a range's bounds are not asked)."""
    out: dict[str, RangeDoc] = {}
    if bounds is None:
        return out
    for s, row in rows:
        name, low, high = (str(row.get(bounds.col(k))) for k in ("name", "low", "high"))
        doc = out.setdefault(name, RangeDoc(name, low, high, s))
        if member is None:
            continue
        ci, ni = member.attrs.index(member.col("code")), member.attrs.index(member.col("name"))
        candidates = sorted(c for c in universe if low <= c <= high)
        doc.members = sorted(
            {
                c
                for c in candidates
                if any(
                    r[ni] == name
                    for _s, r in evaluator.lookup(
                        member.relation, tuple(c if i == ci else None for i in range(len(member.attrs)))
                    )
                )
            }
        )
    return dict(sorted(out.items()))


def _link_codes_to_rules(
    codes: dict[str, CodeDoc],
    rules: list[RuleDoc],
    mentions: list[Mention],
    graph: nx.DiGraph,
    rows_by_code: dict,
    buckets: dict,
    static: set[str],
    edit: DocRole | None,
    range_role: DocRole | None,
    category_role: DocRole | None,
    bounds: str,
) -> None:
    """Which rules reach each code, and so which outcome rules can decide a claim with it.

    A rule reaches a code when it names it, names a range or category the engine puts it in,
    reads a fact relation that lists it, or reads a table row of the code that matches the
    constants the rule asks for (`mue(c, limit, 3, _)` reaches only codes with MAI 3). From
    there the outcome rules downstream count when the path passes an even number of negations;
    static relations (in_range, known_code ...) are not followed, the engine answered them."""
    by_range: dict[str, list[tuple[int, bool]]] = defaultdict(list)  # range -> (rule, negated)
    by_category: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    listed: dict[str, set[str]] = defaultdict(set)
    for m in mentions:
        if not isinstance(m.value, str):
            continue
        if m.rule is not None and range_role and (m.relation, m.attr) == (range_role.relation, range_role.col("name")):
            by_range[m.value].append((m.rule, m.negated))
        elif (
            m.rule is not None
            and category_role
            and (m.relation, m.attr) == (category_role.relation, category_role.col("category"))
        ):
            by_category[m.value].append((m.rule, m.negated))
        if m.value in codes:
            codes[m.value].mentions.append(m)
            if m.rule is not None:
                codes[m.value].via.setdefault(m.rule, ("names it", m.negated))
            elif m.relation != bounds:
                listed[m.value].add(m.relation)
    readers: dict[str, list[tuple[int, A.Atom, bool]]] = defaultdict(list)
    for r in rules:
        for atom, neg in _literals(r.rule.body):
            readers[atom.pred].append((r.index, atom, neg))
    for c, d in codes.items():
        for rng in d.ranges:
            for i, neg in by_range.get(rng, ()):
                d.via.setdefault(i, (f"range {rng}", neg))
        for i, neg in by_category.get(d.category, ()):
            d.via.setdefault(i, (f"category {d.category}", neg))
        for rel in sorted(listed.get(c, ())):
            for i, _atom, neg in readers.get(rel, ()):
                d.via.setdefault(i, (f"listed in {rel}", neg))
        rows = {rel: [row for _s, row in srs] for rel, srs in rows_by_code.get(c, {}).items()}
        if edit is not None:
            rows[edit.relation] = [p.row for side in (1, 2) for part in buckets[c][side] for p in part]
        for rel, rel_rows in sorted(rows.items()):
            for i, atom, neg in readers.get(rel, ()):
                if not neg and any(_matches(atom, row) for row in rel_rows):
                    d.via.setdefault(i, (f"its {rel} row", False))
        for i, (_how, neg) in d.via.items():
            d.via_outcomes[i] = sorted(o for o, pols in polarity(graph, i, neg, rules, static).items() if True in pols)
        d.outcome_rules = sorted({o for outs in d.via_outcomes.values() for o in outs})


def _matches(atom: A.Atom, row: Row) -> bool:
    """The row fits every constant the atom asks for."""
    return len(atom.args) == len(row) and all(
        not isinstance(a, A.Const) or a.value == v for a, v in zip(atom.args, row, strict=False)
    )


def _cases(root: Path, repo: Path, adjudicate) -> list[Case]:
    out: list[Case] = []
    for path in sorted(root.rglob("*.cases.json")):
        text = path.read_text(encoding="utf-8")
        shown = path.resolve().relative_to(repo).as_posix()
        try:
            data = json.loads(text)
        except ValueError as exc:
            out.append(Case(path.name, [], {}, {}, Src(shown), error=f"not valid JSON: {exc}"))
            continue
        for i, obj in enumerate(data.get("cases", []) if isinstance(data, dict) else []):
            name = str(obj.get("name", f"case {i + 1}"))
            line = _line_of(text, f'"name": {json.dumps(name)}')
            case = Case(name, list(obj.get("about", [])), obj.get("claim", {}), obj.get("expect", {}), Src(shown, line))
            if adjudicate is not None:
                try:
                    case.result = adjudicate(case.claim)
                except Exception as exc:
                    case.error = f"{type(exc).__name__}: {exc}"
            out.append(case)
    return out


def _line_of(text: str, needle: str) -> int:
    at = text.find(needle)
    return text.count("\n", 0, at) + 1 if at >= 0 else 0


def polarity(
    graph: nx.DiGraph, start_rule: int, negated: bool, rules: list[RuleDoc], stop: Collection[str] = ()
) -> dict[int, set[bool]]:
    """For each outcome rule reachable from `start_rule`: True when the path passes an even
    number of negations (the mention can bring the outcome about), False when odd (it can
    prevent it)."""
    seen: set[tuple[tuple, bool]] = set()
    todo = [(("rule", start_rule), not negated)]
    out: dict[int, set[bool]] = defaultdict(set)
    while todo:
        node, pos = todo.pop()
        if (node, pos) in seen:
            continue
        seen.add((node, pos))
        if node[0] == "rule" and rules[node[1]].is_outcome:
            out[node[1]].add(pos)
        if node[0] == "rel" and node[1] in stop:
            continue
        for _u, v, data in graph.out_edges(node, data=True):
            todo.append((v, pos != data["negative"]))
    return dict(out)
