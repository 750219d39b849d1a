"""Which claim lines can affect each other's decisions, derived from the compiled program.

A remedy search changes one line (a modifier, the units, the code) and asks how every line is
decided afterwards. Lines only influence each other where a rule combines facts of two lines;
if every such combination equates some attributes of the `line` relation (in the bundled KB:
the date of service and the rendering provider, the NCCI "same encounter"), then a line's
decision depends only on the lines that share those attributes with it, and a change can be
judged by re-evaluating that encounter alone.

`analyse` proves this from the rules instead of assuming it. It takes as the candidate key the
`line` attributes that every line-to-line join equates, then checks each claim-dependent rule:
the line-dependent facts its body reads (positive or negated) must all belong to one encounter,
known from a line number or from the key values, and its head must carry that encounter on. A
relation fed by rows of several encounters at once (a count over the whole claim, a join on a
value that is not the key) fails the check, and then `locality` is None: every candidate is
judged on the whole claim, as before.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

from engine.claims import Claim, claim_to_facts
from engine.compiler import CompiledProgram
from engine.ir import CompiledRule, IAtom, ICompare, IConst, IVar, RelKind, Value
from engine.program import Program

LINE = "line"  # the claim relation with one row per service line (kb/claim.dl)

# How a relation's row names its encounter: ("line", (i,)) - position i holds a claim line number;
# ("key", (i, j, ...)) - positions i, j, ... hold the key attributes, in key order.
Descriptor = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class Locality:
    """The proven encounter key: positions of the `line` relation that lines must share to
    influence each other's decisions, and the claim relations keyed by line number."""

    key: tuple[int, ...]
    line_relations: frozenset[str]
    # constants the rules tell rows apart by (e.g. the source "this claim" versus a history
    # claim's id); a claim carrying one of them as a value is judged whole
    marks: frozenset[object] = frozenset()
    # per line-dependent relation, how its rows name their encounter (see `within`)
    carriers: Mapping[str, list[Variant]] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def encounter(self, row: tuple[Value, ...]) -> tuple[Value, ...]:
        return tuple(row[i] for i in self.key)

    def touched(self, before: Claim, after: Claim) -> set[tuple[Value, ...]] | None:
        """The encounters a change from `before` to `after` touches (the changed lines'
        encounters before and after the change); None when the change reaches beyond lines
        (then the whole claim must be judged)."""
        if not self.same_claim(before, after):
            return None
        fa, fb = claim_to_facts(before), claim_to_facts(after)
        if self.marked(fa) or self.marked(fb):
            return None
        return self.touched_facts(fa, fb)

    @staticmethod
    def same_claim(before: Claim, after: Claim) -> bool:
        """Whether the change keeps what is not a line (claim id, patient, history)."""
        return before.id == after.id and before.patient == after.patient and before.history == after.history

    def marked(self, facts: Mapping[str, Iterable[tuple[Value, ...]]]) -> bool:
        """Whether some row holds one of the constants the rules tell rows apart by."""
        marks = self.marks
        for rel, rows in facts.items():
            skip = 1 if rel in self.line_relations else 0  # a line number is no constant
            if any(v in marks for row in rows for v in row[skip:]):
                return True
        return False

    def touched_facts(
        self, fa: Mapping[str, list[tuple[Value, ...]]], fb: Mapping[str, list[tuple[Value, ...]]]
    ) -> set[tuple[Value, ...]] | None:
        """`touched` from the two claims' facts (the same claim otherwise, neither marked)."""
        changed: set[int] = set()
        for rel in set(fa) | set(fb):
            before, after = fa.get(rel, ()), fb.get(rel, ())
            if before == after:
                continue
            diff = set(before) ^ set(after)
            if not diff:
                continue
            if rel not in self.line_relations:
                return None
            changed |= {int(row[0]) for row in diff}
        rows = [r for r in [*fa.get(LINE, []), *fb.get(LINE, [])] if int(r[0]) in changed]
        return {self.encounter(r) for r in rows}

    def restrict(self, claim: Claim, encounters: set[tuple[Value, ...]]) -> Claim:
        """The claim with only the lines of these encounters (history and patient kept)."""
        keep = {int(r[0]) for r in claim_to_facts(claim).get(LINE, ()) if self.encounter(r) in encounters}
        return dataclasses.replace(claim, lines=tuple(ln for ln in claim.lines if ln.line in keep))

    def lines_of(self, claim: Claim, encounters: set[tuple[Value, ...]]) -> set[int]:
        return {int(r[0]) for r in claim_to_facts(claim).get(LINE, ()) if self.encounter(r) in encounters}

    def within(
        self, relation: str, rows: list[tuple[Value, ...]], lines: Set[int], encounters: Set[tuple[Value, ...]]
    ) -> list[tuple[Value, ...]] | None:
        """Of `rows`, the rows of `relation` in an evaluation of the whole claim, the ones an
        evaluation of just these encounters (whose lines are `lines`) derives as well, or more:
        a relation that does not depend on the claim's lines keeps every row, and so does a
        demand relation (its extra rows match no rule reading it within the encounters, see
        `_carriers`). None when a row cannot be placed (it fits variants that disagree)."""
        variants = self.carriers.get(relation)
        if not variants or not rows:
            return rows
        marks = {c for v in variants for _k, c in v.consts if c is not _OTHER}
        # per variant: its constants, and how its rows name their encounter: a line number
        # ("line") before the key ("key")
        plans = [(v.consts, *min(v.descriptors)) for v in variants]
        out = []
        for row in rows:
            inside: bool | None = None
            for consts, kind, pos in plans:
                if not all((row[k] not in marks) if c is _OTHER else row[k] == c for k, c in consts):
                    continue
                here = row[pos[0]] in lines if kind == LINE else tuple(row[p] for p in pos) in encounters
                if inside is not None and inside != here:
                    return None
                inside = here
            if inside is None or inside:
                out.append(row)  # a row of no variant (e.g. of a history claim) reads no line
        return out


def analyse(cp: CompiledProgram, program: Program) -> Locality | None:
    """The encounter key the rules respect, or None when they do not respect one."""
    if LINE not in cp.kinds or cp.kinds[LINE] is not RelKind.CLAIM:
        return None
    line_relations = frozenset(
        rel
        for rel, kind in cp.kinds.items()
        if kind is RelKind.CLAIM and (decl := program.decls.get(rel)) is not None and decl.attrs
        if decl.attrs[0].name == LINE
    )
    if LINE not in line_relations:
        return None
    key = _candidate_key(cp)
    if key is None:
        return None
    carriers = _carriers(cp, line_relations, key)
    if carriers is None:
        return None
    for outcome in ("deny", "warn", "overridden"):
        if any((LINE, (0,)) not in v.descriptors for v in carriers.get(outcome, ())):
            return None  # an outcome row must name the line it decides
    marks = frozenset(
        c
        for variants in carriers.values()
        for k in {k for v in variants for k, c in v.consts if c is _OTHER}
        for v in variants
        for k2, c in v.consts
        if k2 == k and c is not _OTHER
    )
    return Locality(key, line_relations, marks, carriers)


def _candidate_key(cp: CompiledProgram) -> tuple[int, ...] | None:
    """The `line` positions equated by every rule body that joins two different lines."""
    arity = cp.arity[LINE]
    key = set(range(1, arity))
    for rule in cp.rules:
        atoms = [lit for lit in rule.body if isinstance(lit, IAtom) and lit.relation == LINE and not lit.negated]
        for i, a in enumerate(atoms):
            for b in atoms[i + 1 :]:
                if a.args[0] == b.args[0] and isinstance(a.args[0], IVar):
                    continue  # the same line
                key &= {p for p in range(1, arity) if isinstance(a.args[p], IVar) and a.args[p] == b.args[p]}
    return tuple(sorted(key)) if key else None


class _Classes:
    """Union-find over the encounter tokens of one rule body."""

    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, x: object) -> object:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: object, b: object) -> None:
        self.parent[self.find(a)] = self.find(b)


Condition = tuple[tuple, tuple[IAtom, ...]]  # (head terms, line-dependent atoms that derive it)


@dataclass(frozen=True)
class Variant:
    """Rows of a relation from some of its rules: the constants those rows hold (position ->
    value) and the ways they name their encounter. A relation whose rows for "this claim"
    name a line while its rows for a history claim do not has two variants."""

    consts: tuple[tuple[int, object], ...]  # a value, or _OTHER: none of the rules' constants
    descriptors: frozenset[Descriptor]


def _carriers(
    cp: CompiledProgram, line_relations: frozenset[str], key: tuple[int, ...]
) -> dict[str, list[Variant]] | None:
    """Per line-dependent relation, its variants; None on failure. Relations absent from the
    result do not depend on the claim's lines, or are "demand" relations: rows determined by
    their values (e.g. a PTP edit in force for two codes on a date), computed only where some
    encounter's lines call for them; a rule may read one only where its own encounter's atoms
    already imply that call (checked as containment), so the encounter alone derives every
    row it reads."""
    carriers: dict[str, list[Variant]] = {rel: [Variant((), frozenset({(LINE, (0,))}))] for rel in line_relations}
    carriers[LINE] = [Variant((), frozenset({(LINE, (0,)), ("key", key)}))]
    demands: dict[str, list[Condition]] = {}
    claim_rels = frozenset(rel for rel, kind in cp.kinds.items() if kind is RelKind.CLAIM)
    for scc in cp.order:
        if len(scc) > 1 or any(a.relation in scc for r in cp.rules_for(scc[0]) for a in _atoms(r)):
            # recursion through line data: not analysed (judged on the whole claim)
            if any(_reads_lines(r, carriers, demands) for rel in scc for r in cp.rules_for(rel)):
                return None
            continue
        rel = scc[0]
        if cp.kinds[rel] is RelKind.AGGREGATE:
            spec = cp.aggregates[rel]
            if spec.body_relation in demands:
                return None
            body = carriers.get(spec.body_relation)
            if body is None:
                continue
            folded = []
            for v in body:
                kept = frozenset(d for d in v.descriptors if _within(d, spec.group_arity))
                if not kept:
                    return None  # folds rows of several encounters together
                folded.append(Variant(tuple((k, c) for k, c in v.consts if k < spec.group_arity), kept))
            carriers[rel] = folded
            continue
        variants: list[Variant] = []
        conditions: list[Condition] = []
        for rule in cp.rules_for(rel):
            out = _rule_carrier(rule, carriers, demands, claim_rels)
            if out is None:
                return None
            for item in out:
                if isinstance(item, Variant):
                    variants.append(item)
                else:
                    conditions.append(item)
        if variants and conditions:
            return None  # some rows name their encounter, others do not
        if variants:
            carriers[rel] = list(dict.fromkeys(variants))
        elif conditions:
            demands[rel] = list(dict.fromkeys(conditions))
    return carriers


def _atoms(rule: CompiledRule) -> Iterable[IAtom]:
    return (lit for lit in rule.body if isinstance(lit, IAtom))


def _reads_lines(rule: CompiledRule, carriers: Mapping[str, object], demands: Mapping[str, object]) -> bool:
    return any(a.relation in carriers or a.relation in demands for a in _atoms(rule))


def _within(d: Descriptor, n: int) -> bool:
    return all(p < n for p in d[1])


_OTHER = object()  # a case: the variable holds none of the constants that tell variants apart


def _rule_carrier(
    rule: CompiledRule,
    carriers: Mapping[str, list[Variant]],
    demands: Mapping[str, list[Condition]],
    claim_rels: frozenset[str],
) -> list[Variant | Condition] | None:
    """What the rule's head rows are, case by case over the values of the variables that tell
    variants apart: variants (the body reads one encounter), demand conditions, or nothing
    (reads no line data); None when some case reads several encounters, loses track of its
    encounter, or negates a demand relation."""
    cases: dict[str, set[object]] = {}
    for lit in _atoms(rule):
        for v in carriers.get(lit.relation, ()):
            for k, c in v.consts:
                t = lit.args[k]
                if isinstance(t, IVar) and c is not _OTHER:
                    cases.setdefault(t.name, set()).add(c)
    names = sorted(cases)
    out: list[Variant | Condition] = []
    for values in itertools.product(*[[*sorted(cases[n], key=repr), _OTHER] for n in names]):
        found = _one_case(rule, carriers, demands, claim_rels, dict(zip(names, values, strict=True)))
        if found is None:
            return None
        out += found
    return out


def _one_case(
    rule: CompiledRule,
    carriers: Mapping[str, list[Variant]],
    demands: Mapping[str, list[Condition]],
    claim_rels: frozenset[str],
    case: dict[str, object],
) -> list[Variant | Condition] | None:
    def value(t: object) -> object:
        if isinstance(t, IConst):
            return t.value
        return case.get(t.name) if isinstance(t, IVar) else None

    classes = _Classes()
    nodes = []
    local: list[IAtom] = []
    wanted: list[IAtom] = []
    descs: dict[int, frozenset[Descriptor]] = {}
    for n, lit in enumerate(rule.body):
        if isinstance(lit, ICompare) and lit.op == "=" and isinstance(lit.left, IVar) and isinstance(lit.right, IVar):
            classes.union(("var", lit.left.name), ("var", lit.right.name))
        if isinstance(lit, IAtom) and lit.relation in demands:
            if lit.negated:
                return None
            wanted.append(lit)
        if not isinstance(lit, IAtom) or lit.relation not in carriers:
            continue
        fits = []
        marks = {c for v in carriers[lit.relation] for _k, c in v.consts if c is not _OTHER}
        for v in carriers[lit.relation]:
            ok = True
            for k, c in v.consts:
                have = value(lit.args[k])
                if c is _OTHER:
                    ok = ok and (have is None or have is _OTHER or have not in marks)
                elif have is _OTHER or (have is not None and have != c):
                    ok = False
            if ok:
                fits.append(v)
        if not fits:
            if lit.negated:
                continue  # nothing of this encounter's kind can match: the negation is global
            return []  # the body cannot hold in this case
        common = frozenset.intersection(*[v.descriptors for v in fits])
        local.append(lit)
        node = ("atom", n)
        nodes.append(node)
        descs[id(lit)] = common
        for token in _tokens(lit.args, common):
            classes.union(node, token)
    if not nodes:
        if not wanted:
            return []
        atoms: list[IAtom] = []
        for i, lit in enumerate(wanted):  # a chain of demand relations: the conditions compose
            conds = demands[lit.relation]
            if len(conds) != 1:
                return None
            atoms += _substitute(conds[0], lit.args, f"~{i}")
        return [(rule.head.args, tuple(atoms))]
    roots = {classes.find(n) for n in nodes}
    if len(roots) > 1:
        return None
    positive = [a for a in local if not a.negated]
    for lit in wanted:
        if not any(_contained(cond, lit.args, positive) for cond in demands[lit.relation]):
            return None
    root = roots.pop()
    head = rule.head.args
    found: set[Descriptor] = set()
    for i, t in enumerate(head):
        # a line number of this encounter, if some body atom used it as one
        if (
            isinstance(t, IVar)
            and ("var", t.name) in classes.parent
            and classes.find(("var", t.name)) == root
            and any(d[0] == LINE and lit.args[d[1][0]] == t for lit in local for d in descs[id(lit)])
        ):
            found.add((LINE, (i,)))
    for lit in local:
        for kind, pos in descs[id(lit)]:
            if kind != "key":
                continue
            values = [lit.args[p] for p in pos]
            if all(isinstance(v, IVar) for v in values) and all(v in head for v in values):
                found.add(("key", tuple(head.index(v) for v in values)))
    if found:
        # a head value read from the claim's own data is never one of the rules' constants
        # (Locality.touched judges a claim whole when it is)
        from_claim = {
            t.name
            for lit in _atoms(rule)
            if lit.relation in claim_rels and not lit.negated
            for t in lit.args
            if isinstance(t, IVar)
        }
        consts = tuple(
            (i, _OTHER if val is None else val)
            for i, t in enumerate(head)
            if (val := value(t)) is not None or (isinstance(t, IVar) and t.name in from_claim)
        )
        return [Variant(consts, frozenset(found))]
    if len(positive) != len(local):
        return None  # a demand row resting on an absent line fact: not monotone
    return [(head, tuple(positive))]


def _substitute(cond: Condition, args: tuple, suffix: str) -> list[IAtom]:
    """The condition's atoms with its head variables replaced by `args`, the rest renamed apart."""
    head, atoms = cond
    mapping = {t.name: a for t, a in zip(head, args, strict=True) if isinstance(t, IVar)}

    def term(t: object) -> object:
        if isinstance(t, IVar):
            return mapping.get(t.name, IVar(t.name + suffix))
        return t

    return [dataclasses.replace(a, args=tuple(term(t) for t in a.args)) for a in atoms]  # type: ignore[misc]


def _contained(cond: Condition, args: tuple, body: list[IAtom]) -> bool:
    """Whether `body` implies the condition of a demand atom read with `args`: a mapping of
    the condition's atoms onto body atoms that sends its head variables to `args`."""
    head, atoms = cond
    start: dict[str, object] = {}
    for t, a in zip(head, args, strict=True):
        if isinstance(t, IVar):
            if start.setdefault(t.name, a) != a:
                return False
        elif t != a:
            return False

    def match(i: int, m: dict[str, object]) -> bool:
        if i == len(atoms):
            return True
        goal = atoms[i]
        for cand in body:
            if cand.relation != goal.relation:
                continue
            m2 = dict(m)
            ok = True
            for g, c in zip(goal.args, cand.args, strict=True):
                if isinstance(g, IVar):
                    if m2.setdefault(g.name, c) != c:
                        ok = False
                        break
                elif g != c:
                    ok = False
                    break
            if ok and match(i + 1, m2):
                return True
        return False

    return match(0, start)


def _tokens(args: tuple, descriptors: frozenset[Descriptor]) -> list[object]:
    out: list[object] = []
    for kind, pos in descriptors:
        if kind == LINE:
            t = args[pos[0]]
            out.append(("var", t.name) if isinstance(t, IVar) else ("const", t))
        else:
            ts = tuple(args[p] for p in pos)
            out.append(("key", tuple(t.name if isinstance(t, IVar) else ("const", t) for t in ts)))
    return out
