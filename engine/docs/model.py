"""What the reference site shows, collected from a loaded KB: plain data, no Markdown.

Everything here is read from the program (rules, declarations, facts, doc comments), the store
(tables) and the engine (static relations such as in_range); nothing is restated by hand, so
the pages cannot disagree with the rules. The 2.5M-row PTP table is read in one pass that
buckets rows for the codes with a page and gathers the counts for the code lookup.
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


PTP_ROWS_SHOWN = 300  # a code page lists every PTP row when it has at most this many
LOOKUP_PARTNERS = 10  # partners per role (column 1 / column 2) in the lookup index
RANGE_RELATION = "code_range"
GUIDANCE_STATEMENT = "guidance_statement"  # (id, section, statement)
GUIDANCE_UNDECIDABLE = "guidance_undecidable"  # (id, reason)
PTP = "ptp"


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
        return self.ann("rarc").split()

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
class PtpRow:
    column_1: str
    column_2: str
    deletion_date: str
    modifier_indicator: int
    rationale: str
    src: Src
    row: Row


@dataclass
class CodeStats:
    """PTP counts of one code, for every code in the tables (the lookup index)."""

    col1_active: int = 0
    col1_deleted: int = 0
    col2_active: int = 0
    col2_deleted: int = 0
    partners1: list[str] = field(default_factory=list)  # "code:mi", active rows as column 1
    partners2: list[str] = field(default_factory=list)  # as column 2

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
    hcpcs: tuple[Src, NamedRow] | None = None
    cpt: tuple[Src, NamedRow] | None = None
    ranges: list[str] = field(default_factory=list)
    pfs: list[tuple[Src, NamedRow]] = field(default_factory=list)
    mue: tuple[Src, NamedRow] | None = None
    aoc: tuple[Src, NamedRow] | None = None
    aoc_primaries: list[tuple[Src, NamedRow]] = field(default_factory=list)
    primary_of: list[tuple[Src, NamedRow]] = field(default_factory=list)
    deletion: tuple[Src, NamedRow] | None = None
    mentions: list[Mention] = field(default_factory=list)
    via: dict[int, tuple[str, bool]] = field(default_factory=dict)  # rule -> (how it reaches the code, negated)
    via_outcomes: dict[int, list[int]] = field(default_factory=dict)  # rule -> outcome rules it leads to
    outcome_rules: list[int] = field(default_factory=list)
    # role (1: the code is column 1, 2: column 2) -> (rows listed on the page, whether that is all of them)
    ptp: dict[int, tuple[list[PtpRow], bool]] = field(default_factory=dict)
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
    pos: list[tuple[Src, NamedRow]]
    modifiers: list[tuple[Src, NamedRow]]
    modifier_roles: dict[str, list[tuple[Src, str]]]
    group_codes: dict[str, tuple[Src, NamedRow]]
    carcs: dict[str, tuple[Src, NamedRow]]
    rarcs: dict[str, tuple[Src, NamedRow]]
    stats: dict[str, CodeStats]
    lookup_descriptions: dict[str, str]
    lookup_extra: dict[str, dict]
    cases: list[Case]
    code_pattern: str
    guidance: dict[str, GuidanceDoc] = field(default_factory=dict)

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

    tables: dict[str, list[tuple[Src, NamedRow]]] = {}

    def table(rel: str) -> list[tuple[Src, NamedRow]]:
        if rel not in tables:
            decl = prog.decls.get(rel)
            names = tuple(a.name for a in decl.attrs) if decl else ()
            tables[rel] = (
                [(rsrc(rs), NamedRow(row, names)) for rs, row in kb.store.scan(rel)] if kb.store.has(rel) else []
            )
        return tables[rel]

    def keyed(rel: str) -> dict[str, tuple[Src, NamedRow]]:
        """Rows by their first attribute (the table's key: a code, a modifier ...)."""
        return {str(row[0]): (s, row) for s, row in table(rel)}

    code_pattern = getattr(prog.types.get("Code"), "pattern", None) or r"^[0-9A-Z]{5}$"
    # every table row that names a code in a Code-typed column, by code (PTP apart: too big)
    rows_by_code: dict[str, dict[str, list[tuple[Src, NamedRow]]]] = defaultdict(lambda: defaultdict(list))
    for rel in sorted(prog.inputs):
        decl = prog.decls.get(rel)
        if rel == PTP or decl is None:
            continue
        positions = [i for i, a in enumerate(decl.attrs) if a.type == "Code"]
        for s, row in table(rel):
            for i in positions:
                rows_by_code[str(row[i])][rel].append((s, row))

    cpt, hcpcs, mue, aoc = keyed("cpt_code"), keyed("hcpcs"), keyed("mue"), keyed("aoc_code")
    deletions = keyed("code_deletion")
    page_codes = _page_codes(rows_by_code, mentions, code_pattern)
    stats, buckets = _scan_ptp(kb, page_codes, rsrc)
    universe = set(stats) | set(rows_by_code)

    ranges = _ranges(table(RANGE_RELATION), universe, evaluator)
    categories: dict[str, list[str]] = defaultdict(list)
    for _s, found in evaluator.lookup("code_category", (None, None)):
        categories[str(found[1])].append(str(found[0]))

    codes: dict[str, CodeDoc] = {}
    for c in sorted(page_codes):
        mine = rows_by_code.get(c, {})
        d = CodeDoc(
            c,
            cpt=cpt.get(c),
            hcpcs=hcpcs.get(c),
            mue=mue.get(c),
            aoc=aoc.get(c),
            deletion=deletions.get(c),
            pfs=sorted(mine.get("pfs", []), key=lambda sr: sr[1]),
            aoc_primaries=[sr for sr in mine.get("aoc_primary", []) if sr[1].add_on_code == c],
            primary_of=[sr for sr in mine.get("aoc_primary", []) if sr[1].primary_code == c],
        )
        if d.cpt:
            d.description = str(d.cpt[1].description)
        elif d.hcpcs:
            d.description = str(d.hcpcs[1].long_description or d.hcpcs[1].short_description)
        d.category = next((str(r[1]) for _s, r in evaluator.lookup("code_category", (c, None))), "")
        d.ranges = sorted(str(r[1]) for _s, r in evaluator.lookup("in_range", (c, None)))
        d.stats = stats.get(c, CodeStats())
        for role, count in ((1, d.stats.col1_total), (2, d.stats.col2_total)):
            policy_rows, other_rows = buckets[c][role]
            every = count <= PTP_ROWS_SHOWN
            d.ptp[role] = (
                sorted(
                    policy_rows + other_rows if every else policy_rows,
                    key=lambda p: (p.column_1, p.column_2, p.deletion_date, p.src),
                ),
                every,
            )
        codes[c] = d
    static = {rel for rel, k in (kb.compiled.kinds.items() if kb.compiled else []) if k.value == "static"}
    _link_codes_to_rules(codes, rules, mentions, graph, rows_by_code, buckets, static)

    cases = _cases(root, repo, adjudicate)
    lookup_descriptions = {c: str(r.short_description) for c, (_s, r) in hcpcs.items()}
    lookup_descriptions.update({c: str(r.description) for c, (_s, r) in cpt.items()})
    lookup_extra: dict[str, dict] = {}
    for c in universe:
        e: dict = {}
        if c in mue:
            e["m"], e["i"] = mue[c][1].mue_value, mue[c][1].mai
        if c in aoc:
            e["a"] = aoc[c][1].edit_type
        glob = next((r for _s, r in rows_by_code.get(c, {}).get("pfs", []) if r.code == c and r.modifier == ""), None)
        if glob is not None:
            e["s"] = glob.status
            flags = ("F" if glob.facility_na == "NA" else "") + ("N" if glob.non_facility_na == "NA" else "")
            if flags:
                e["na"] = flags
        lookup_extra[c] = e

    roles: dict[str, list[tuple[Src, str]]] = defaultdict(list)
    for s, row in table("modifier_role"):
        roles[str(row.modifier)].append((s, str(row.role)))

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
        pos=table("pos"),
        modifiers=table("modifier"),
        modifier_roles=dict(roles),
        group_codes=keyed("group_code"),
        carcs=keyed("carc"),
        rarcs=keyed("rarc"),
        stats=stats,
        lookup_descriptions=lookup_descriptions,
        lookup_extra=lookup_extra,
        cases=cases,
        code_pattern=code_pattern,
        guidance=_guidance(relations),
    )


def _guidance(relations: dict[str, RelationDoc]) -> dict[str, GuidanceDoc]:
    """The guidance statements (KB facts), with the reasons some are not decidable."""
    out: dict[str, GuidanceDoc] = {}
    stated = relations.get(GUIDANCE_STATEMENT)
    for src, row in stated.named_facts() if stated else []:
        out[str(row.id)] = GuidanceDoc(str(row.id), str(row.section), str(row.statement), src)
    undecidable = relations.get(GUIDANCE_UNDECIDABLE)
    for _src, row in undecidable.named_facts() if undecidable else []:
        if str(row.id) in out:
            out[str(row.id)].undecidable = str(row.reason)
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


def _page_codes(rows_by_code: dict, mentions: list[Mention], pattern: str) -> set[str]:
    """Codes with a page: the KB's CPT list, and every code in the tables that a rule or fact
    names (range bounds are boundaries, not codes the policy names)."""
    codes = {c for c, rels in rows_by_code.items() if "cpt_code" in rels}
    rx = re.compile(pattern)
    for m in mentions:
        if m.relation == RANGE_RELATION or not isinstance(m.value, str) or not rx.fullmatch(m.value):
            continue
        if m.value in rows_by_code:
            codes.add(m.value)
    return codes


def _scan_ptp(kb: LoadedKB, page_codes: set[str], rsrc):
    """One pass over the PTP table: counts and first partners for every code, and the rows the
    code pages list (all of a code's rows while it has few, else those with another page code)."""
    stats: dict[str, CodeStats] = defaultdict(CodeStats)
    # code -> role (1: the code is column 1, 2: column 2) -> (rows whose partner has a page, other rows)
    buckets: dict[str, dict[int, tuple[list[PtpRow], list[PtpRow]]]] = {
        c: {1: ([], []), 2: ([], [])} for c in page_codes
    }
    decl = kb.program.decls.get(PTP)
    if not kb.store.has(PTP) or decl is None:
        return {}, buckets
    names = tuple(a.name for a in decl.attrs)
    # 2.5M rows: the columns are looked up by name once, then read by their index
    cols = [names.index(n) for n in ("column_1", "column_2", "deletion_date", "modifier_indicator", "rationale")]
    for rs, row in kb.store.scan(PTP):
        c1, c2, dele, mi, why = (str(row[i]) for i in cols)
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
                    prow = prow or PtpRow(c1, c2, dele, int(mi), why, rsrc(rs), row)
                    (policy if partner_has_page else other).append(prow)
    return dict(stats), buckets


def _ranges(rows: list[tuple[Src, NamedRow]], universe: set[str], evaluator: Evaluator) -> dict[str, RangeDoc]:
    """Each named range and its members, as the engine's in_range answers them (codes outside a
    range's bounds are not asked)."""
    out: dict[str, RangeDoc] = {}
    for s, row in rows:
        name, low, high = str(row.name), str(row.low), str(row.high)
        doc = out.setdefault(name, RangeDoc(name, low, high, s))
        candidates = sorted(c for c in universe if low <= c <= high)
        doc.members = sorted(
            {c for c in candidates if any(r[1] == name for _s, r in evaluator.lookup("in_range", (c, None)))}
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
        if m.rule is not None and (m.relation, m.attr) == ("in_range", "name"):
            by_range[m.value].append((m.rule, m.negated))
        elif m.rule is not None and (m.relation, m.attr) == ("code_category", "category"):
            by_category[m.value].append((m.rule, m.negated))
        if m.value in codes:
            codes[m.value].mentions.append(m)
            if m.rule is not None:
                codes[m.value].via.setdefault(m.rule, ("names it", m.negated))
            elif m.relation != RANGE_RELATION:
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
        rows[PTP] = [p.row for role in (1, 2) for part in buckets[c][role] for p in part]
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
