"""The behaviour a KB change alters: corpus lines that change, and witness claims for the rest.

Both KBs are loaded (engine.api) and every corpus claim is adjudicated under each. A line whose
decision or in-force reasons differ is attributed to the changed rules, facts and table rows
found in its old or new proof. For each change that no changed corpus line is attributed to, a
bounded search looks for the smallest claim that decides differently under OLD and NEW: seeds
built from the changed row (one line per code of its key, on one date and provider) or from
the changed rule's body and the corpus claims that reach it, varied over candidate values
taken from the change itself (its dates and the day after, places of service, codes, units),
then shrunk line by line while the difference holds. Each witness is the claim run under both
KBs; a change with none is reported as "no witness found within N candidates".
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.api import PolicyKB
from engine.claims import ClaimError, parse_claim
from engine.diff import DiffError, FactChange, RowChange, RuleChange, StructuralDiff
from engine.explain.proof import ProofNode
from engine.explain.result import ClaimResult
from engine.program import Program
from engine.store import Store
from engine.syntax import nodes as A

MAX_CANDIDATES = 300
MAX_SEARCHES = 50  # witness searches per diff; a bulk table import lists the rest as not searched
STORED_EXAMPLES = 3  # stored rows a rule's constants select, taken as candidate values
DEFAULT_DATE = "2024-07-15"
NPI = "1234567893"
Outcome = tuple[str, tuple[str, ...]]  # decision, sorted in-force rule ids


# ---------------------------------------------------------------------------------------------
# The corpus


@dataclass
class CorpusClaim:
    source: str  # file, or file#case name, or file:line
    claim: dict[str, Any]


def default_corpus(kb_dirs: list[Path], examples: Path | None) -> list[CorpusClaim]:
    """Every policy case of the KBs (each case once, by file and name) and the bundled examples."""
    out: list[CorpusClaim] = []
    seen: set[tuple[str, str]] = set()
    for root in kb_dirs:
        for path in sorted(root.rglob("*.cases.json")):
            rel = path.relative_to(root).as_posix()
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise DiffError(f"{path}: cannot read the policy cases: {exc}") from None
            for case in data.get("cases", []) if isinstance(data, dict) else []:
                key = (rel, str(case.get("name")))
                if key not in seen and isinstance(case.get("claim"), dict):
                    seen.add(key)
                    out.append(CorpusClaim(f"{root.name}/{rel}#{case.get('name')}", case["claim"]))
    if examples is not None and examples.is_dir():
        for path in sorted(examples.glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            for i, obj in enumerate(data if isinstance(data, list) else [data]):
                out.append(CorpusClaim(f"examples/{path.name}" + (f"[{i}]" if isinstance(data, list) else ""), obj))
    return out


def read_claims_jsonl(path: Path) -> list[CorpusClaim]:
    """One claim per line; a line that is not a JSON object is an error naming file and line."""
    out: list[CorpusClaim] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DiffError(f"{path}: cannot read: {exc.strerror or exc}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise DiffError(f"{path}:{n}: not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise DiffError(f"{path}:{n}: expected a claim object, got {type(obj).__name__}")
        out.append(CorpusClaim(f"{path.name}:{n}", obj))
    return out


# ---------------------------------------------------------------------------------------------
# Running a claim under both KBs


def outcomes(result: ClaimResult) -> dict[int, Outcome]:
    return {ln.line: (ln.decision, tuple(sorted(r.rule for r in ln.reasons if r.in_force))) for ln in result.lines}


def _walk(node: ProofNode | None) -> Iterator[ProofNode]:
    if node is None:
        return
    yield node
    for c in node.children:
        yield from _walk(c)


@dataclass
class ChangeIndex:
    """The changes of a structural diff, keyed for matching against proof nodes."""

    diff: StructuralDiff
    labels: dict[int, str] = field(default_factory=dict)

    def label(self, change: RuleChange | FactChange | RowChange) -> str:
        if isinstance(change, RuleChange):
            ref = change.new or change.old
            assert ref is not None
            return f"rule {change.key}" if ref.rule_id else f"rule {change.key} ({change.status})"
        if isinstance(change, FactChange):
            return f"fact {change.relation}({', '.join(A.render_value(v) for v in change.values)}) {change.status}"
        return f"row {change.relation}({', '.join(change.key)}) {change.status}"

    def changes(self) -> list[RuleChange | FactChange | RowChange]:
        return [*self.diff.rules, *self.diff.facts, *self.diff.row_changes()]

    def hits(self, node: ProofNode, side: str) -> list[RuleChange | FactChange | RowChange]:
        """The changes a proof node shows (side: "old" or "new", the proof's KB)."""
        out: list[RuleChange | FactChange | RowChange] = []
        row = tuple("" if v is None else str(v) for v in node.row) if node.row is not None else None
        for rc in self.diff.rules:
            ref = rc.old if side == "old" else rc.new
            if ref is None or node.kind != "rule":
                continue
            src = node.source or {}
            if (ref.rule_id and node.rule == ref.rule_id) or (
                not ref.rule_id and node.rule is None and f"{src.get('file')}:{src.get('line')}" == ref.location
            ):
                out.append(rc)
        for fc in self.diff.facts:
            if node.relation != fc.relation or row is None:
                continue
            want = tuple(str(v) for v in fc.values)
            if (node.kind == "kb_fact" and row == want and fc.status == ("removed" if side == "old" else "added")) or (
                node.kind == "absent"
                and all(v is None or str(v) == w for v, w in zip(node.row or (), want, strict=False))
            ):
                out.append(fc)
        for rw in self.diff.row_changes():
            vals = rw.old if side == "old" else rw.new
            if node.kind == "table" and node.relation == rw.relation and vals is not None and row == vals:
                out.append(rw)
        return out


@dataclass
class LineChange:
    source: str
    claim_id: str
    line: int
    code: str
    old: Outcome
    new: Outcome
    causes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "claim": self.claim_id,
            "line": self.line,
            "code": self.code,
            "old": {"decision": self.old[0], "rules": list(self.old[1])},
            "new": {"decision": self.new[0], "rules": list(self.new[1])},
            "causes": self.causes,
        }


UNATTRIBUTED = "(no changed rule, fact or row in either proof)"
THROUGH = " (through another line of the claim)"


def corpus_changes(
    old: PolicyKB,
    new: PolicyKB,
    corpus: list[CorpusClaim],
    index: ChangeIndex,
) -> tuple[list[LineChange], list[str], dict[str, list[dict[str, Any]]]]:
    """Changed lines; claims that could not be read; and per change label, the corpus claims
    whose proofs (old or new) reach it (seeds for witness searches)."""
    changed: list[LineChange] = []
    unusable: list[str] = []
    reached: dict[str, list[dict[str, Any]]] = {}
    for item in corpus:
        try:
            claim = parse_claim(item.claim, source=item.source)
        except ClaimError as exc:
            unusable.append(f"{item.source}: {str(exc).splitlines()[0]}")
            continue
        ra, rb = old.adjudicate(claim, proofs=True), new.adjudicate(claim, proofs=True)
        oa, ob = outcomes(ra), outcomes(rb)
        per_line: dict[int, list[str]] = {}
        for side, result in (("old", ra), ("new", rb)):
            for lr in result.lines:
                causes = per_line.setdefault(lr.line, [])
                for reason in lr.reasons:
                    for node in _walk(reason.proof):
                        if node.rule:
                            _note(reached, f"rule:{node.rule}", item.claim)
                        if node.relation:
                            _note(reached, f"rel:{node.relation}", item.claim)
                        for ch in index.hits(node, side):
                            lab = index.label(ch)
                            _note(reached, lab, item.claim)
                            if lab not in causes:
                                causes.append(lab)
        # a line can change through another line's proof (an override set aside by a rule
        # that fires on another line): then the claim's causes are the line's causes
        claim_causes = sorted({c for cs in per_line.values() for c in cs})
        for lr_a in ra.lines:
            n = lr_a.line
            if oa[n] != ob.get(n):
                causes = sorted(per_line.get(n, [])) or [f"{c}{THROUGH}" for c in claim_causes]
                changed.append(LineChange(item.source, claim.id, n, lr_a.code, oa[n], ob[n], causes or [UNATTRIBUTED]))
    return changed, unusable, reached


def _note(reached: dict[str, list[dict[str, Any]]], key: str, claim: dict[str, Any]) -> None:
    claims = reached.setdefault(key, [])
    if claim not in claims:
        claims.append(claim)


# ---------------------------------------------------------------------------------------------
# Witness claims


@dataclass
class Witness:
    change: str
    found: bool
    tried: int
    claim: dict[str, Any] | None = None
    old: dict[int, Outcome] = field(default_factory=dict)
    new: dict[int, Outcome] = field(default_factory=dict)
    searched: bool = True

    @property
    def message(self) -> str:
        if not self.searched:
            return f"not searched: over the limit of {MAX_SEARCHES} witness searches"
        return f"no witness found within {self.tried} candidates"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"change": self.change, "found": self.found, "candidates_tried": self.tried}
        if self.found:
            d["claim"] = self.claim
            d["old"] = {str(k): {"decision": v[0], "rules": list(v[1])} for k, v in sorted(self.old.items())}
            d["new"] = {str(k): {"decision": v[0], "rules": list(v[1])} for k, v in sorted(self.new.items())}
        else:
            d["message"] = self.message
        return d


@dataclass
class Vocabulary:
    """Candidate values for a search, by role."""

    dates: list[str] = field(default_factory=list)
    pos: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    modifiers: list[str] = field(default_factory=list)
    units: list[int] = field(default_factory=list)

    def add(self, role: str, value: A.Value) -> None:
        if role == "date" and isinstance(value, str) and value:
            try:
                d = dt.date.fromisoformat(value)
            except ValueError:
                return
            for v in (value, (d + dt.timedelta(days=1)).isoformat(), (d - dt.timedelta(days=1)).isoformat()):
                _push(self.dates, v)
        elif role == "pos" and isinstance(value, str):
            _push(self.pos, value)
        elif role == "code" and isinstance(value, str):
            _push(self.codes, value)
        elif role == "modifier" and isinstance(value, str):
            _push(self.modifiers, value)
        elif role == "units":
            try:
                n = int(value)
            except ValueError:
                return
            for u in (n, n + 1):
                if 1 <= u <= 9999:
                    _push(self.units, u)


def _push(xs: list, v: object) -> None:
    if v not in xs:
        xs.append(v)


def role_of(attr: A.Attr) -> str | None:
    name, typ = attr.name.lower(), attr.type
    if typ in ("Date", "OptDate") or name in ("dos", "date") or name.endswith("_date"):
        return "date"
    if typ == "Pos" or name == "pos":
        return "pos"
    if typ == "Modifier" or (name.startswith("modifier") and "indicator" not in name):
        return "modifier"
    if typ == "Code" or name == "code" or name.startswith("column_"):
        return "code"
    if name in ("units", "mue_value", "limit"):
        return "units"
    return None


def _vocabulary(
    prog: Program, change: RuleChange | FactChange | RowChange, rules: dict[str, A.Rule], store: Store | None = None
) -> Vocabulary:
    """Candidate values from the change: its own values, the constants of the rules it touches
    (and of the rules defining their bodies), and a few stored rows those constants select."""
    voc = Vocabulary()

    def add_values(rel: str, values: tuple[A.Value, ...] | tuple[str, ...]) -> None:
        decl = prog.decls.get(rel)
        if decl is None:
            return
        for attr, v in zip(decl.attrs, values, strict=False):
            role = role_of(attr)
            if role:
                voc.add(role, v)

    by_head: dict[str, list[A.Rule]] = {}
    for r in rules.values():
        by_head.setdefault(r.head.pred, []).append(r)
    done: set[int] = set()

    def add_rule(rule: A.Rule, depth: int = 0) -> None:
        """The rule's constants, and those of the rules that define its body (two levels)."""
        if id(rule) in done:
            return
        done.add(id(rule))
        for lit in rule.body:
            if isinstance(lit, A.Atom) and depth < 2:
                for sub in by_head.get(lit.pred, []):
                    add_rule(sub, depth + 1)
            atom = lit.atom if isinstance(lit, A.Negation) else lit
            if isinstance(atom, A.Atom) and isinstance(lit, A.Atom) and store is not None:
                bound = [(i, a.value) for i, a in enumerate(atom.args) if isinstance(a, A.Const)]
                if bound and atom.pred not in prog.claim_relations and store.has(atom.pred):
                    pattern = tuple(i for i, _ in bound)
                    for row in store.lookup(atom.pred, pattern, tuple(v for _, v in bound))[:STORED_EXAMPLES]:
                        add_values(atom.pred, row)
            if isinstance(atom, A.Atom):
                decl = prog.decls.get(atom.pred)
                for i, a in enumerate(atom.args):
                    if isinstance(a, A.Const) and decl is not None and i < decl.arity:
                        role = role_of(decl.attrs[i])
                        if role:
                            voc.add(role, a.value)
            elif isinstance(lit, A.Comparison):
                for t in (lit.left, lit.right):
                    if isinstance(t, A.Const) and isinstance(t.value, str):
                        voc.add("date", t.value)

    if isinstance(change, RowChange):
        for vals in (change.old, change.new):
            if vals is not None:
                add_values(change.relation, vals)
    elif isinstance(change, FactChange):
        add_values(change.relation, change.values)
        for r in rules.values():  # the rules that read this relation
            if any(
                (isinstance(x, A.Atom) and x.pred == change.relation)
                or (isinstance(x, A.Negation) and x.atom.pred == change.relation)
                for x in r.body
            ):
                add_rule(r)
    else:
        for ref in (change.old, change.new):
            if ref is not None and ref.key in rules:
                add_rule(rules[ref.key])
    return voc


def _line(n: int, code: str, date: str, pos: str, units: int = 1) -> dict[str, Any]:
    return {"line": n, "service_date": date, "code": code, "units": units, "pos": pos, "rendering_npi": NPI}


def _seed_claims(
    change: RuleChange | FactChange | RowChange, prog: Program, voc: Vocabulary, corpus_seeds: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    seeds: list[dict[str, Any]] = []
    if isinstance(change, RowChange):
        decl = prog.decls.get(change.relation)
        codes: list[str] = []
        if decl is not None:
            for i, attr in enumerate(decl.attrs):
                vals = change.old or change.new or ()
                if role_of(attr) == "code" and i < len(vals) and vals[i]:
                    _push(codes, vals[i])
        # one line per code of the row, same date and provider; office and outpatient hospital
        for pos in ("11", "22"):
            if codes:
                seeds.append(
                    {
                        "id": "WITNESS",
                        "patient": {"id": "PAT-W"},
                        "lines": [_line(i + 1, c, DEFAULT_DATE, pos) for i, c in enumerate(codes)],
                    }
                )
    elif voc.codes:  # each code alone, then together
        for group in [[c] for c in voc.codes[:3]] + ([voc.codes[:3]] if len(voc.codes) > 1 else []):
            seeds.append(
                {
                    "id": "WITNESS",
                    "patient": {"id": "PAT-W"},
                    "lines": [_line(i + 1, c, DEFAULT_DATE, "11") for i, c in enumerate(group)],
                }
            )
    seeds += [copy.deepcopy(c) for c in corpus_seeds]
    return seeds


def _variants(seed: dict[str, Any], voc: Vocabulary) -> Iterator[dict[str, Any]]:
    """The seed, then the seed with one role's value changed on every line (dates, POS, units)."""
    yield seed
    for date in voc.dates:
        yield _with(seed, "service_date", date)
    for pos in voc.pos:
        yield _with(seed, "pos", pos)
        for date in voc.dates:
            yield _with(_with(seed, "pos", pos), "service_date", date)
    for u in voc.units:
        c = copy.deepcopy(seed)
        c["lines"][0]["units"] = u
        yield c
    for m in voc.modifiers:
        c = copy.deepcopy(seed)
        for ln in c["lines"]:
            ln["modifiers"] = [m]
        yield c


def _with(claim: dict[str, Any], key: str, value: object) -> dict[str, Any]:
    c = copy.deepcopy(claim)
    for ln in c.get("lines", []):
        ln[key] = value
    for h in c.get("history", []) or []:
        if key in ("service_date", "pos"):
            h[key] = value
    return c


class WitnessSearch:
    """Runs candidate claims under both KBs, memoised by their JSON."""

    def __init__(self, old: PolicyKB, new: PolicyKB, index: ChangeIndex, budget: int = MAX_CANDIDATES):
        self.old, self.new, self.index, self.budget = old, new, index, budget
        self._memo: dict[str, tuple[dict[int, Outcome], dict[int, Outcome]] | None] = {}
        self._shown: dict[str, set[str]] = {}
        self.label = ""

    def exercises(self, claim: dict[str, Any]) -> bool:
        """The change being searched for appears in the claim's old or new proofs (so another
        change of the same diff cannot pass for its witness)."""
        key = json.dumps(claim, sort_keys=True)
        if key not in self._shown:
            parsed = parse_claim(claim)
            labels: set[str] = set()
            for side, kb in (("old", self.old), ("new", self.new)):
                for lr in kb.adjudicate(parsed, proofs=True).lines:
                    for reason in lr.reasons:
                        for node in _walk(reason.proof):
                            labels.update(self.index.label(ch) for ch in self.index.hits(node, side))
            self._shown[key] = labels
        return self.label in self._shown[key]

    def ok(self, claim: dict[str, Any]) -> bool:
        return self.differs(claim) and self.exercises(claim)

    def run(self, claim: dict[str, Any]) -> tuple[dict[int, Outcome], dict[int, Outcome]] | None:
        key = json.dumps(claim, sort_keys=True)
        if key not in self._memo:
            try:
                parsed = parse_claim(claim)
            except ClaimError:
                self._memo[key] = None
            else:
                self._memo[key] = (
                    outcomes(self.old.adjudicate(parsed, proofs=False)),
                    outcomes(self.new.adjudicate(parsed, proofs=False)),
                )
        return self._memo[key]

    def differs(self, claim: dict[str, Any]) -> bool:
        """Some line's decision (pay/deny) differs between OLD and NEW."""
        r = self.run(claim)
        return r is not None and any(r[0].get(n, ("", ()))[0] != o[0] for n, o in r[1].items())

    def find(self, label: str, seeds: list[dict[str, Any]], voc: Vocabulary) -> Witness:
        self.label = label
        tried = 0
        for seed in sorted(seeds, key=lambda c: len(c.get("lines", []))):
            for cand in _variants(seed, voc):
                if tried >= self.budget:
                    return Witness(label, False, tried)
                tried += 1
                if self.ok(cand):
                    small = self.shrink(cand)
                    res = self.run(small)
                    assert res is not None
                    return Witness(label, True, tried, small, res[0], res[1])
        return Witness(label, False, tried)

    def shrink(self, claim: dict[str, Any]) -> dict[str, Any]:
        """Drop lines, history and documentation one at a time while OLD and NEW still differ."""
        cur = copy.deepcopy(claim)
        changed = True
        while changed:
            changed = False
            for i in range(len(cur.get("lines", []))):
                if len(cur["lines"]) <= 1:
                    break
                cand = copy.deepcopy(cur)
                del cand["lines"][i]
                if self.ok(cand):
                    cur, changed = cand, True
                    break
            if cur.get("history"):
                cand = copy.deepcopy(cur)
                cand.pop("history")
                if self.ok(cand):
                    cur, changed = cand, True
        for n, ln in enumerate(cur.get("lines", []), 1):  # renumber only if that keeps the witness
            if ln.get("line") != n:
                cand = copy.deepcopy(cur)
                for k, x in enumerate(cand["lines"], 1):
                    x["line"] = k
                if self.ok(cand):
                    cur = cand
                break
        return cur


def find_witnesses(
    old: PolicyKB,
    new: PolicyKB,
    index: ChangeIndex,
    exercised: set[str],
    reached: dict[str, list[dict[str, Any]]],
    budget: int = MAX_CANDIDATES,
    progress: Callable[[str], None] | None = None,
) -> list[Witness]:
    """A witness (or an honest "none found") for each change that no changed corpus line shows."""
    prog_new, prog_old = new.kb.program, old.kb.program
    rules: dict[str, A.Rule] = {}
    for p in (prog_old, prog_new):
        for r in p.rules:
            rules.setdefault(r.rule_id or _rule_key(r), r)
    search = WitnessSearch(old, new, index, budget)
    out: list[Witness] = []
    for change in index.changes():
        label = index.label(change)
        if label in exercised or any(w.change == label for w in out):
            continue
        if (
            isinstance(change, RuleChange)
            and change.what
            and all(w.startswith("@") for w in change.what)
            and not {"@severity", "@id"} & set(change.what)
        ):
            continue  # annotations only (message, title ...): no decision can change
        if sum(w.searched for w in out) >= MAX_SEARCHES:
            out.append(Witness(label, False, 0, searched=False))
            continue
        if progress is not None:
            progress(label)
        prog = (
            prog_new if not (isinstance(change, (FactChange, RowChange)) and change.status == "removed") else prog_old
        )
        kb = new if prog is prog_new else old
        voc = _vocabulary(prog, change, rules, kb.kb.store)
        seeds = _seed_claims(change, prog, voc, _corpus_seeds(change, label, rules, reached))
        out.append(search.find(label, seeds, voc))
    return out


def _readers(relation: str, rules: dict[str, A.Rule]) -> list[str]:
    """Keys of the rules whose body mentions `relation`."""
    out = []
    for key, r in rules.items():
        for x in r.body:
            atom = x.atom if isinstance(x, A.Negation) else x
            if isinstance(atom, A.Atom) and atom.pred == relation:
                out.append(key)
                break
    return out


def _corpus_seeds(
    change: RuleChange | FactChange | RowChange,
    label: str,
    rules: dict[str, A.Rule],
    reached: dict[str, list[dict[str, Any]]],
    limit: int = 6,
) -> list[dict[str, Any]]:
    """Corpus claims whose proofs reach the change, its rule, or the rules that read its relation."""
    keys = [label]
    if isinstance(change, RuleChange):
        keys.append(f"rule:{change.key}")
        ref = change.new or change.old
        if ref is not None:
            keys += [f"rule:{k}" for k in _readers(ref.head, rules)] + [f"rel:{ref.head}"]
    else:
        keys += [f"rule:{k}" for k in _readers(change.relation, rules)] + [f"rel:{change.relation}"]
    out: list[dict[str, Any]] = []
    for k in keys:
        for c in reached.get(k, []):
            if c not in out:
                out.append(c)
    return out[:limit]


def _rule_key(r: A.Rule) -> str:
    from engine.diff import normalise_rule

    head, body = normalise_rule(r)
    return f"{head} :- {body}"


@dataclass
class Impact:
    """Everything `policykb diff` reports."""

    old: str
    new: str
    structure: StructuralDiff
    corpus_size: int = 0
    unusable: list[str] = field(default_factory=list)
    lines: list[LineChange] = field(default_factory=list)
    witnesses: list[Witness] = field(default_factory=list)

    def by_cause(self) -> dict[str, list[LineChange]]:
        out: dict[str, list[LineChange]] = {}
        for lc in self.lines:
            for c in lc.causes:
                out.setdefault(c, []).append(lc)
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "structure": self.structure.to_dict(),
            "corpus": {"claims": self.corpus_size, "unusable": self.unusable, "changed_lines": len(self.lines)},
            "changed_lines": [lc.to_dict() for lc in self.lines],
            "by_cause": {k: [f"{lc.source} line {lc.line}" for lc in v] for k, v in self.by_cause().items()},
            "witnesses": [w.to_dict() for w in self.witnesses],
        }


def impact(
    old: PolicyKB,
    new: PolicyKB,
    structure: StructuralDiff,
    corpus: list[CorpusClaim],
    *,
    old_name: str = "OLD",
    new_name: str = "NEW",
    budget: int = MAX_CANDIDATES,
) -> Impact:
    index = ChangeIndex(structure)
    if structure.empty:  # same rules, facts and rows: no claim can be decided differently
        return Impact(old_name, new_name, structure, len(corpus))
    lines, unusable, reached = corpus_changes(old, new, corpus, index)
    exercised = {c.removesuffix(THROUGH) for lc in lines for c in lc.causes}
    witnesses = find_witnesses(old, new, index, exercised, reached, budget)
    return Impact(old_name, new_name, structure, len(corpus), unusable, lines, witnesses)
