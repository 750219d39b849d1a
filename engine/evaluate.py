"""Evaluate a compiled program for one batch of facts (a claim), stratum by stratum.

Per evaluation: the claim's facts are handed to the engine; each strongly connected component
of claim-dependent relations is asked in dependency order and its answers become materialised
rows that later components read (so a negation always looks at a finished relation); aggregates
are folded in Python from materialised rows. Claim facts and materialised rows are served to
pyDatalog by resolvers over Python indexes (engine.datalog.Table), not asserted as facts.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import semantics
from engine.compiler import CompiledProgram
from engine.datalog import Session, Table
from engine.ir import AggregateSpec, CompiledRule, IAtom, IConst, ILiteral, RelKind, Value
from engine.store import RowSource, Store
from engine.triggers import RuleCheck, Selector, rule_check

Row = tuple[Value, ...]


Pattern = tuple[tuple[int, Value], ...]  # constants by position
Change = frozenset[tuple[str, Pattern]]  # see Evaluator.change


class EvaluationError(Exception):
    """Facts that do not fit the program (unknown relation, wrong arity)."""


@dataclass
class Model:
    """What one evaluation derived: every claim and claim-dependent relation, as sorted rows.
    Stored and static relations are asked through `Evaluator.lookup` instead (they are large)."""

    relations: dict[str, list[Row]] = field(default_factory=dict)
    # per rule (CompiledRule.index), the rows it derived, where the evaluation asked rule by rule
    by_rule: dict[int, list[Row]] = field(default_factory=dict)

    def rows(self, relation: str) -> list[Row]:
        return self.relations.get(relation, [])


@dataclass(frozen=True)
class Needed:
    """Rules (CompiledRule.index) and relations an evaluation must ask for some outputs."""

    rules: frozenset[int]
    relations: frozenset[str]


Target = tuple[str, tuple[Value | None, ...]]  # a relation and the constants its rows must have (None: any)


def needed(cp: CompiledProgram, targets: Iterable[str | Target]) -> Needed:
    """The rules that can derive a row of `targets` or a row some needed rule reads, with the
    constants it reads it by: a rule whose head constant differs from every needed pattern (e.g.
    a warning of another rule id than the one an override reads) is not needed. A target is a
    relation (every row) or (relation, pattern): the rows holding the pattern's values where it
    has one (None: any value). The relations are those of the needed rules' heads and bodies,
    with the aggregates they read and what those fold."""
    rules: set[int] = set()
    relations: set[str] = set()
    seen: set[Target] = set()
    todo: list[Target] = [
        (rel, (None,) * cp.arity[rel]) if isinstance(rel, str) else rel
        for rel in targets
        if (rel if isinstance(rel, str) else rel[0]) in cp.arity  # a KB may lack one
    ]
    while todo:
        rel, pattern = todo.pop()
        if (rel, pattern) in seen:
            continue
        seen.add((rel, pattern))
        relations.add(rel)
        if rel in cp.aggregates:
            spec = cp.aggregates[rel]
            todo.append((spec.body_relation, (None,) * cp.arity[spec.body_relation]))
        for rule in cp.rules_for(rel):
            if any(
                isinstance(t, IConst) and p is not None and t.value != p
                for t, p in zip(rule.head.args, pattern, strict=True)
            ):
                continue
            rules.add(rule.index)
            for lit in rule.body:
                if isinstance(lit, IAtom):
                    todo.append((lit.relation, tuple(t.value if isinstance(t, IConst) else None for t in lit.args)))
    return Needed(frozenset(rules), frozenset(relations))


class Evaluator:
    """Holds one pyDatalog session with the program's rules, reused across evaluations."""

    def __init__(
        self, compiled: CompiledProgram, store: Store | None = None, *, select: bool = True, joins: bool = True
    ):
        """`select`: leave out of each ask the rules that cannot fire for the claim (see
        engine/triggers.py); off, every rule is asked (the tests compare the two). `joins`: let
        the engine adapter join complete relations in Python (see engine.datalog.Session); off,
        pyDatalog answers every literal."""
        self.cp = compiled
        self.store = store
        self.select = select
        self.session = Session(joins=joins)
        for rel, kind in sorted(compiled.kinds.items()):
            if kind is RelKind.STORED:
                self.session.add_resolver(
                    compiled.engine_name(rel, materialised=True),
                    compiled.arity[rel],
                    self._resolver(rel),
                    self._stored_lookup(rel),
                    # rows from SQLite may differ from the key in type (its equality converts)
                    exact=store is None or rel not in store.tables,
                )
        # Claim facts and finished strata are served from Python rows (datalog.Table), not asserted.
        self._tables: dict[str, Table] = {}
        self._held: dict[str, Iterable[Row]] = {}  # per table, the rows object last set (see _sync)
        for rel, kind in sorted(compiled.kinds.items()):
            if kind in (RelKind.CLAIM, RelKind.FACTS, RelKind.DYNAMIC, RelKind.AGGREGATE):
                name = compiled.engine_name(rel, materialised=True)
                self._tables[name] = self.session.add_table(name, compiled.arity[rel])
        # A static relation (derived from stored data alone) answers the same for the same bound
        # values in every claim: claim-dependent rules read it through a memoised resolver
        # instead of re-deriving it in every ask (each derivation costs pyDatalog a subgoal per
        # rule and lookup). The static rules themselves keep their own references.
        self._static: dict[tuple[str, tuple[Value | None, ...]], list[Row]] = {}
        for rel, kind in sorted(compiled.kinds.items()):
            if kind is RelKind.STATIC:
                self.session.add_resolver(
                    _memo_name(rel),
                    compiled.arity[rel],
                    self._static_resolver(rel),
                    self._static_lookup(rel),
                    exact=True,
                )
        # A relation of several rules can also be asked rule by rule (each rule again under a
        # head of its own), so that a remedy candidate asks only the rules its change reaches.
        self._split: dict[str, list[CompiledRule]] = {}
        # A claim-dependent rule that cannot fire for the claim at hand (engine/triggers.py) is
        # withdrawn from its relation's ask while it cannot: pyDatalog would pay a subgoal for every
        # literal it reaches in it and find nothing.
        self._clauses: dict[int, object] = {}
        self._checks: dict[int, RuleCheck] = {}
        self._withdrawn: set[int] = set()
        # rules whose body is one join in Python: asking one that cannot fire costs no more than
        # checking that it cannot (its first lookups find nothing), so they are not checked
        self._joined: set[int] = set()
        for rule in compiled.rules:
            body = rule.body
            if compiled.kinds.get(rule.head.relation) is not RelKind.STATIC:
                body = tuple(_via_memo(lit, compiled) for lit in body)
            clause = self.session.add_rule(rule.head, body)
            if compiled.kinds.get(rule.head.relation) is RelKind.DYNAMIC:
                self._clauses[rule.index] = clause
                self._checks[rule.index] = rule_check(rule, compiled)
                if self.session.joined(clause):
                    self._joined.add(rule.index)
            rel = rule.head.relation
            if compiled.kinds.get(rel) is RelKind.DYNAMIC and _splittable(compiled, rel):
                self._split.setdefault(rel, []).append(rule)
                self.session.add_rule(dataclasses.replace(rule.head, engine_name=_rule_name(rule)), body)
        self._guards = _guards(compiled)
        self._rule_guards = _rule_guards(compiled)
        self._stale_memo: dict[Change, tuple[frozenset[int], frozenset[str]]] = {}
        # per claim (or facts) relation, the patterns of constants rule bodies read it by (see `change`)
        self._fact_patterns: dict[str, set[Pattern]] = {}
        for rule in compiled.rules:
            for lit in rule.body:
                if isinstance(lit, IAtom) and compiled.kinds.get(lit.relation) in (RelKind.CLAIM, RelKind.FACTS):
                    pattern = _pattern(lit)
                    if pattern:
                        self._fact_patterns.setdefault(lit.relation, set()).add(pattern)
        self._apart_memo: dict[
            tuple[frozenset[str], frozenset[int], frozenset[str] | None],
            tuple[tuple[tuple[int, str, tuple[int, ...], tuple[Value, ...]], ...], tuple[int, ...]],
        ] = {}
        self._needed_memo: dict[tuple[str | Target, ...], Needed] = {}
        self._names = {rel: compiled.engine_name(rel, materialised=True) for rel in compiled.kinds}
        self._asked = {rel: compiled.engine_name(rel, materialised=False) for rel in compiled.kinds}
        self._claim_names = sorted(
            {self._names[rel] for rel, kind in compiled.kinds.items() if kind in (RelKind.CLAIM, RelKind.FACTS)}
        )
        self._materialised = frozenset(
            rel
            for rel, kind in compiled.kinds.items()
            if kind in (RelKind.CLAIM, RelKind.FACTS, RelKind.AGGREGATE, RelKind.DYNAMIC)
        )
        # the materialised relations some rule reads (the others' rows are not asserted at all)
        self._read = frozenset(
            lit.engine_name for rule in compiled.rules for lit in rule.body if isinstance(lit, IAtom)
        )
        self._static_arity = {
            rel: compiled.arity[rel] for rel, kind in compiled.kinds.items() if kind is RelKind.STATIC
        }
        self._fact_kinds = frozenset(
            rel for rel, kind in compiled.kinds.items() if kind in (RelKind.CLAIM, RelKind.FACTS)
        )
        # the claim and facts relations some rule reads: (engine name, relation), see _unordered
        self._read_facts = sorted((self._names[rel], rel) for rel in self._fact_kinds if self._names[rel] in self._read)
        self._plans: dict[tuple[frozenset[str], frozenset[int], Needed | None, bool], _Plan] = {}

    def _resolver(self, rel: str):
        store = self.store
        source = rel

        def resolve(bound: dict[int, Value]) -> Iterable[tuple]:
            if store is None:
                return ()
            pattern = tuple(sorted(bound))
            return store.lookup(source, pattern, tuple(bound[i] for i in pattern))

        return resolve

    def _stored_lookup(self, rel: str):
        store = self.store

        def lookup(pattern: tuple[int, ...], key: tuple) -> Sequence[Row]:
            return store.lookup(rel, pattern, key) if store is not None else ()

        return lookup

    def _static_lookup(self, rel: str):
        arity = self.cp.arity[rel]

        def lookup(pattern: tuple[int, ...], key: tuple) -> Sequence[Row]:
            args: list[Value | None] = [None] * arity
            for i, v in zip(pattern, key, strict=True):
                args[i] = v
            return self.static_rows(rel, tuple(args))

        return lookup

    def _static_resolver(self, rel: str):
        arity = self.cp.arity[rel]

        def resolve(bound: dict[int, Value]) -> Iterable[tuple]:
            return self.static_rows(rel, tuple(bound.get(i) for i in range(arity)))

        return resolve

    def static_rows(self, rel: str, args: tuple[Value | None, ...]) -> list[Row]:
        """Rows of static relation `rel` matching the bound positions of `args` (memoised)."""
        key = (rel, args)
        rows = self._static.get(key)
        if rows is None:
            rows = self._static[key] = self.session.query(self.cp.engine_name(rel, materialised=True), list(args))
        return rows

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(
        self,
        facts: Mapping[str, Iterable[Row]],
        known: Mapping[str, list[Row]] | None = None,
        known_rules: Mapping[int, list[Row]] | None = None,
        by_rule: bool = False,
        only: Needed | None = None,
        ordered: bool = True,
    ) -> Model:
        """`known`: rows of derived relations already computed for the same inputs (see
        `unaffected`), taken as they are instead of asked again; `known_rules` likewise per rule.
        `by_rule`: ask relations of several rules rule by rule, recording each rule's rows in
        `Model.by_rule` (for later `known_rules`). `only`: ask just these rules (see `needed`);
        the other relations' rows are left incomplete or empty. `ordered=False`: a model read
        only as sets of rows (a remedy candidate's), see `_unordered`."""
        cp, session = self.cp, self.session
        known = known or {}
        known_rules = known_rules or {}
        if not ordered and not cp.fact_relations:
            return self._unordered(facts, known, known_rules, only, by_rule)
        model = Model()
        try:
            claim_rows: dict[str, set[Row]] = {name: set() for name in self._claim_names}
            asserted: dict[str, set[Row]] = {}  # claim and facts relations (by target) -> their rows
            for rel, rows in sorted(facts.items()):
                kind = cp.kinds.get(rel)
                target = cp.fact_relations.get(rel, rel)
                tkind = cp.kinds.get(target)
                if kind is None or tkind not in (RelKind.CLAIM, RelKind.FACTS):
                    raise EvaluationError(f"cannot assert facts for {rel}: it is not a claim relation")
                clean = set(_check_rows(rel, rows, cp.arity[target]))
                model.relations[rel] = semantics.sort_rows(clean)
                claim_rows.setdefault(self._names[target], set()).update(clean)
                asserted.setdefault(target, set()).update(clean)
            for name, rows in claim_rows.items():
                if name in self._read:
                    self._sync(name, rows)
            selector = self.selector(model, asserted)
            for scc in cp.order:
                off = self._select(scc, selector, known, known_rules, only)
                for rel in scc:
                    if only is not None and rel not in only.relations:
                        model.relations[rel] = []
                    elif rel in known:
                        model.relations[rel] = known[rel]
                    elif cp.kinds[rel] is RelKind.AGGREGATE:
                        model.relations[rel] = _fold(cp.aggregates[rel], model.rows(cp.aggregates[rel].body_relation))
                    elif self._cannot_fire(rel, model) or all(r.index in off for r in cp.rules_for(rel)):
                        model.relations[rel] = []
                    elif rel in self._split and (
                        by_rule or only is not None or any(r.index in known_rules for r in self._split[rel])
                    ):
                        model.relations[rel] = self._rule_by_rule(rel, model, known_rules, only, off)
                    else:
                        model.relations[rel] = session.query(self._asked[rel], [None] * cp.arity[rel])
                for rel in scc:
                    if self._names[rel] in self._read:
                        self._sync(self._names[rel], model.relations[rel])
        except BaseException:
            self._clear()
            raise
        return model

    def _unordered(
        self,
        facts: Mapping[str, Iterable[Row]],
        known: Mapping[str, list[Row]],
        known_rules: Mapping[int, list[Row]],
        only: Needed | None,
        by_rule: bool,
    ) -> Model:
        """`evaluate` for a model read only as sets: the same rules asked on the same rows, but
        what each stratum does is decided once per (known relations, known rules, `only`,
        `by_rule`) (see `_Plan`), the rows are not sorted, and `facts` are taken as distinct
        rows of claim relations (claim_to_facts' rows). A remedy search evaluates dozens of
        candidates that differ in a line or two; for them this bookkeeping was half the cost
        of an evaluation."""
        key = (frozenset(known), frozenset(known_rules), only, by_rule)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(*key)
        model = Model()
        rels = model.relations
        held, tables, fact_kinds = self._held, self._tables, self._fact_kinds
        try:
            for rel, rows in facts.items():
                if rel not in fact_kinds:
                    raise EvaluationError(f"cannot assert facts for {rel}: it is not a claim relation")
                rels[rel] = rows if isinstance(rows, list) else list(rows)
            for rel in plan.empty:
                rels[rel] = []
            for rel in plan.known:  # no rule reads a relation before its stratum: set them first
                rels[rel] = known[rel]
            for name, rel in plan.facts:
                rows = rels.get(rel, _NO_ROWS)
                if held.get(name) is not rows:
                    held[name] = rows
                    tables[name].set(rows)
            selector = self.selector(model, rels) if plan.select else None
            for scc, select, steps, syncs in plan.strata:
                off = self._select(scc, selector, known, known_rules, only) if select else _NO_OFF  # type: ignore[arg-type]
                for rel, how, arg, ids, guards in steps:
                    if how == _FOLD:
                        rows = _fold(arg, rels.get(arg.body_relation, []))
                    elif (guards is not None and all(any(not rels.get(g) for g in rule) for rule in guards)) or (
                        off and all(i in off for i in ids)
                    ):
                        rows = []  # see _cannot_fire
                    elif how == _RULES:
                        found: set[Row] = set()
                        for index, answer, needs in arg:
                            got = known_rules.get(index)
                            if got is None:
                                if index in off:
                                    got = []
                                else:
                                    for g in needs:
                                        if not rels.get(g):
                                            got = []  # a relation its body needs a row of is empty
                                            break
                                    else:
                                        got = answer()
                            if by_rule:
                                model.by_rule[index] = got
                            found.update(got)
                        rows = list(found)
                    else:
                        rows = arg()
                    rels[rel] = rows
                for name, rel in syncs:
                    rows = rels[rel]
                    if held.get(name) is not rows:  # see _sync
                        held[name] = rows
                        tables[name].set(rows)
        except BaseException:
            self._clear()
            raise
        return model

    def _plan(self, known: frozenset[str], known_rules: frozenset[int], only: Needed | None, by_rule: bool) -> _Plan:
        """What `evaluate` does in each stratum, for these known relations and rules, `only` and
        `by_rule`."""
        cp = self.cp
        strata: list[
            tuple[list[str], bool, list[tuple[str, int, Any, tuple[int, ...], Any]], list[tuple[str, str]]]
        ] = []
        empty: list[str] = []
        known_rels: list[str] = []
        first: list[tuple[str, str]] = []  # the tables set before any rule is asked
        any_select = False
        # the tables the rules that may be asked read (None: every table), the only ones set
        reads: set[str] | None = set()
        for rel in (rel for scc in cp.order for rel in scc):
            if rel in known or (only is not None and rel not in only.relations):
                continue
            for rule in cp.rules_for(rel):
                if only is not None and rule.index not in only.rules:
                    continue
                for lit in rule.body:
                    if not isinstance(lit, IAtom) or cp.kinds.get(lit.relation) in (RelKind.STORED, RelKind.STATIC):
                        continue
                    if lit.engine_name in self._tables and reads is not None:
                        reads.add(lit.engine_name)
                    else:
                        reads = None  # read through the engine's own rules: set every table
        for scc in cp.order:
            asked = not all(rel in known or (only is not None and rel not in only.relations) for rel in scc)
            # `_select` changes nothing where every rule of the stratum is a join in Python (never withdrawn)
            select = asked and any(
                r.index not in self._joined
                for rel in scc
                if cp.kinds[rel] is RelKind.DYNAMIC
                for r in cp.rules_for(rel)
            )
            any_select = any_select or select
            steps: list[tuple[str, int, Any, tuple[int, ...], Any]] = []
            for rel in scc:
                ids = tuple(r.index for r in cp.rules_for(rel))
                guards = self._guards.get(rel)
                if (only is not None and rel not in only.relations) or (
                    rel not in known and cp.kinds[rel] is not RelKind.AGGREGATE and not ids
                ):  # not needed, or no rule (evaluate finds every one of its none off)
                    empty.append(rel)
                elif rel in known:
                    known_rels.append(rel)
                elif cp.kinds[rel] is RelKind.AGGREGATE:
                    steps.append((rel, _FOLD, cp.aggregates[rel], ids, None))
                elif rel in self._split and (
                    by_rule or only is not None or any(r.index in known_rules for r in self._split[rel])
                ):
                    rules = [
                        (
                            r.index,
                            self.session.answerer(_rule_name(r), cp.arity[rel]),
                            tuple(self._rule_guards.get(r.index, ())),
                        )
                        for r in self._split[rel]
                        if only is None or r.index in only.rules
                    ]
                    steps.append((rel, _RULES, rules, ids, guards))
                else:
                    steps.append((rel, _WHOLE, self.session.answerer(self._asked[rel], cp.arity[rel]), ids, guards))
            syncs = [
                (self._names[rel], rel)
                for rel in scc
                if self._names[rel] in self._read and (reads is None or self._names[rel] in reads)
            ]
            first += [(name, rel) for name, rel in syncs if rel in known]
            syncs = [(name, rel) for name, rel in syncs if rel not in known]
            if select or steps or syncs:  # (a stratum wholly known or empty has nothing to do)
                strata.append((scc, select, steps, syncs))
        first = [(name, rel) for name, rel in self._read_facts if reads is None or name in reads] + first
        return _Plan(strata, any_select, first, empty, known_rels)

    def selector(self, model: Model, asserted: Mapping[str, Iterable[Row]]) -> Selector:
        """Which rules cannot fire, given `model`'s rows so far and the claim and facts rows
        asserted (by the relation the engine reads them from)."""
        return Selector(
            lambda rel: asserted.get(rel, ()) if rel in self._fact_kinds else model.rows(rel),
            self._any_row,
            self._materialised.__contains__,
        )

    def check(self, rule: CompiledRule) -> RuleCheck | None:
        """The necessary conditions of a claim-dependent rule (None for any other rule)."""
        return self._checks.get(rule.index)

    def _select(
        self,
        scc: list[str],
        selector: Selector,
        known: Mapping[str, list[Row]],
        known_rules: Mapping[int, list[Row]],
        only: Needed | None,
    ) -> set[int]:
        """The rules of this stratum that cannot fire now (see engine/triggers.py), withdrawn from
        the engine; the ones withdrawn for an earlier evaluation that now can are restored. A rule
        whose rows are known, or that `only` leaves out, is not checked (and stays in the engine)."""
        off: set[int] = set()
        if all(rel in known or (only is not None and rel not in only.relations) for rel in scc):
            return off  # nothing of it is asked
        # every rule of the stratum: asking one relation of a recursive stratum runs the others' rules
        rules = [rule for rel in scc if self.cp.kinds[rel] is RelKind.DYNAMIC for rule in self.cp.rules_for(rel)]
        if self.select:
            off.update(
                rule.index
                for rule in rules
                if (only is None or rule.index in only.rules)
                and rule.index not in known_rules
                and rule.index not in self._joined
                and selector.cannot_fire(self._checks[rule.index])
            )
        back = [r.index for r in rules if r.index in self._withdrawn and r.index not in off]
        if back:
            self._withdrawn.difference_update(back)
            self.session.restore([self._clauses[i] for i in back])
        gone = [i for i in off if i not in self._withdrawn]
        if gone:
            self._withdrawn.update(gone)
            self.session.withdraw([self._clauses[i] for i in gone])
        return off

    def _any_row(self, rel: str, pattern: tuple[int, ...], key: tuple[Value, ...]) -> bool:
        """Whether a stored or static relation has a row with the values `key` at `pattern`."""
        if rel in self._static_arity:
            args: list[Value | None] = [None] * self._static_arity[rel]
            for i, v in zip(pattern, key, strict=True):
                args[i] = v
            return bool(self.static_rows(rel, tuple(args)))
        if self.store is None:
            return False
        return bool(self.store.lookup(rel, pattern, key))

    def _rule_by_rule(
        self, rel: str, model: Model, known_rules: Mapping[int, list[Row]], only: Needed | None, off: set[int]
    ) -> list[Row]:
        rows: set[Row] = set()
        for rule in self._split[rel]:
            if only is not None and rule.index not in only.rules:
                continue
            found = known_rules.get(rule.index)
            if found is None:
                needs = self._rule_guards.get(rule.index)
                if rule.index in off or (needs is not None and any(not model.relations.get(g) for g in needs)):
                    found = []
                else:
                    found = self.session.query(_rule_name(rule), [None] * self.cp.arity[rel])
            model.by_rule[rule.index] = found
            rows.update(found)
        return semantics.sort_rows(rows) if len(rows) > 1 else list(rows)

    def needed(self, targets: tuple[str | Target, ...]) -> Needed:
        """`needed` (the module function) for this program, memoised."""
        found = self._needed_memo.get(targets)
        if found is None:
            found = self._needed_memo[targets] = needed(self.cp, targets)
        return found

    def unaffected_rules(
        self, before: Mapping[str, Iterable[Row]], after: Mapping[str, Iterable[Row]]
    ) -> frozenset[int]:
        """The rules (CompiledRule.index) of split relations whose rows cannot differ between
        an evaluation of `before` and one of `after`: they read nothing the change reaches."""
        stale = self._stale(self.change(before, after))[0]
        return frozenset(rule.index for rules in self._split.values() for rule in rules if rule.index not in stale)

    def change(self, before: Mapping[str, Iterable[Row]], after: Mapping[str, Iterable[Row]]) -> Change:
        """What differs between two sets of claim facts, as far as the rules can tell: for each
        claim relation whose rows differ, (relation, ()), and (relation, pattern) for each
        pattern of constants a rule body reads the relation by (e.g. `line_modifier(L, "25")`)
        that some added or removed row holds. Two changes alike so reach the same rules."""
        out: set[tuple[str, Pattern]] = set()
        for rel in before.keys() | after.keys():
            old, new = before.get(rel, ()), after.get(rel, ())
            if old is new:
                continue
            diff = set(old) ^ set(new)
            if not diff:
                continue
            out.add((rel, ()))
            for pattern in self._fact_patterns.get(self.cp.fact_relations.get(rel, rel), ()):
                if any(all(row[i] == v for i, v in pattern) for row in diff):
                    out.add((rel, pattern))
        return frozenset(out)

    def _sync(self, name: str, rows: Iterable[Row]) -> None:
        """Make `name`'s rows, as the engine reads them, exactly `rows`. (A stratum is asked
        before its own rows are set; its rules read only the earlier strata's rows, which are
        current by then.)"""
        if self._held.get(name) is rows:
            return  # the very rows it holds (a known relation of a remedy search): indexes kept
        self._held[name] = rows
        self._tables[name].set(rows)

    def _clear(self) -> None:
        """Empty every relation left from evaluations (after a failed one: start clean)."""
        self._held.clear()
        for table in self._tables.values():
            table.set(())

    def unaffected(self, before: Mapping[str, Iterable[Row]], after: Mapping[str, Iterable[Row]]) -> frozenset[str]:
        """The derived relations whose rows cannot differ between an evaluation of `before` and
        one of `after` (claim facts): none of the claim relations they read, directly or through
        other rules and aggregates, changed (see `_stale`)."""
        stale = self._stale(self.change(before, after))[1]
        return frozenset(rel for scc in self.cp.order for rel in scc if rel not in stale)

    def apart(
        self, keep: frozenset[str], rules: frozenset[int], relations: frozenset[str] | None
    ) -> tuple[tuple[tuple[int, str, tuple[int, ...], tuple[Value, ...]], ...], tuple[int, ...]]:
        """For known rows per rule, given the relations (`keep`, see `unaffected`) and the rules
        of split relations (`rules`, see `unaffected_rules`) a change cannot reach: of each
        split relation it does reach (among `relations`, None: any), the rules it cannot reach
        whose rows are told apart from those of every rule it reaches by the head's constants
        (rule, relation, the constants' positions and values: its rows are the relation's rows
        holding those), and the rules told apart by none (to be asked alone)."""
        key = (keep, rules, relations)
        found = self._apart_memo.get(key)
        if found is not None:
            return found
        cp = self.cp
        told: list[tuple[int, str, tuple[int, ...], tuple[Value, ...]]] = []
        ask: list[int] = []
        for rel in sorted({cp.rules[i].head.relation for i in rules} - keep):
            if relations is not None and rel not in relations:
                continue
            reached = [r.head for r in cp.rules_for(rel) if r.index not in rules]
            for rule in cp.rules_for(rel):
                if rule.index not in rules:
                    continue
                if any(_may_match(rule.head, head) for head in reached):
                    ask.append(rule.index)
                    continue
                consts = [(i, t.value) for i, t in enumerate(rule.head.args) if isinstance(t, IConst)]
                told.append((rule.index, rel, tuple(i for i, _v in consts), tuple(v for _i, v in consts)))
        found = self._apart_memo[key] = (tuple(told), tuple(ask))
        return found

    def _stale(self, change: Change) -> tuple[frozenset[int], frozenset[str]]:
        """The rules, and the relations, whose rows can differ on a `change` of claim facts. A
        rule is stale when a body atom (positive or negated) can read a row that differs: over
        a claim relation, one the change holds the atom's pattern of constants in; over a stale
        aggregate, any; over another relation, one a stale rule's head can make, i.e. whose
        constants the atom's do not contradict (e.g. an override reading `deny(L,
        "inj.facility_pos")` is not reached by a change that only stales the rule denying
        "validity.unknown_modifier"). A relation is stale when a rule of it is, it folds a stale
        relation, or its claim facts changed."""
        found = self._stale_memo.get(change)
        if found is not None:
            return found
        cp = self.cp
        patterns = {(cp.fact_relations.get(rel, rel), p) for rel, p in change} | set(change)
        facts = {rel for rel, _p in patterns}
        rels = set(facts)
        wholly: set[str] = set()  # stale aggregates: every row may differ
        heads: dict[str, list[IAtom]] = {}  # per relation, the heads of its stale rules

        def reached(lit: IAtom) -> bool:
            if lit.relation in facts:
                return (lit.relation, _pattern(lit)) in patterns
            return lit.relation in wholly or any(_may_match(head, lit) for head in heads.get(lit.relation, ()))

        rules: set[int] = set()
        grew = True
        while grew:
            grew = False
            for rule in cp.rules:
                if rule.index not in rules and any(isinstance(lit, IAtom) and reached(lit) for lit in rule.body):
                    rules.add(rule.index)
                    heads.setdefault(rule.head.relation, []).append(rule.head)
                    rels.add(rule.head.relation)
                    grew = True
            for rel, spec in cp.aggregates.items():
                if rel not in wholly and spec.body_relation in rels:
                    wholly.add(rel)
                    rels.add(rel)
                    grew = True
        found = self._stale_memo[change] = (frozenset(rules), frozenset(rels))
        return found

    def _cannot_fire(self, rel: str, model: Model) -> bool:
        """Every rule for `rel` needs a row of some already-materialised relation that is empty:
        skip asking pyDatalog (each ask costs ~60 µs even when it finds nothing)."""
        guards = self._guards.get(rel)
        if guards is None:
            return False
        return all(any(not model.relations.get(g) for g in rule_guards) for rule_guards in guards)

    def lookup(self, relation: str, args: tuple[Value | None, ...]) -> list[tuple[RowSource | None, Row]]:
        """Rows of a stored or static relation matching the bound positions of `args`."""
        kind = self.cp.kinds.get(relation)
        if kind is RelKind.STORED:
            if self.store is None:
                return []
            pattern = tuple(i for i, a in enumerate(args) if a is not None)
            return list(self.store.lookup_with_sources(relation, pattern, tuple(args[i] for i in pattern)))
        if kind is RelKind.STATIC:
            return [(None, row) for row in self.static_rows(relation, tuple(args))]
        raise EvaluationError(f"{relation} is not a stored or static relation")

    def close(self) -> None:
        self._clear()
        self.session.close()


_FOLD, _RULES, _WHOLE = range(3)  # how a stratum's step has its rows (see Evaluator._plan)
_NO_ROWS: tuple[Row, ...] = ()  # one object, so that a table already empty is not set again
_NO_OFF: frozenset[int] = frozenset()


@dataclass
class _Plan:
    """Per stratum of `CompiledProgram.order`: its relations, whether `_select` must run, a step
    per relation (how its rows are had: none, known, folded, asked rule by rule, asked whole)
    and the tables to set afterwards; `select`: whether any stratum needs a selector. A table
    no rule asked in the evaluation reads is not set: it keeps an earlier evaluation's rows,
    and whichever evaluation reads it next sets it first."""

    strata: list[tuple[list[str], bool, list[tuple[str, int, Any, tuple[int, ...], Any]], list[tuple[str, str]]]]
    select: bool
    facts: list[tuple[str, str]]  # the claim, facts and known tables to set first: (engine name, relation)
    empty: list[str]  # the relations with no rows: not needed, or without rules
    known: list[str]  # the relations whose rows are known


def _pattern(atom: IAtom) -> Pattern:
    """The atom's constants by position: it reads only rows holding them."""
    return tuple((i, t.value) for i, t in enumerate(atom.args) if isinstance(t, IConst))


def _may_match(head: IAtom, atom: IAtom) -> bool:
    """Whether a row `head` makes can be one `atom` reads: no position holds two different constants."""
    return not any(
        isinstance(h, IConst) and isinstance(a, IConst) and h.value != a.value
        for h, a in zip(head.args, atom.args, strict=True)
    )


def _splittable(cp: CompiledProgram, rel: str) -> bool:
    """Several rules, none reading its own relation's SCC (a recursive relation is asked whole)."""
    rules = cp.rules_for(rel)
    scc = next((s for s in cp.order if rel in s), [rel])
    return len(rules) > 1 and not any(
        isinstance(lit, IAtom) and lit.relation in scc for rule in rules for lit in rule.body
    )


def _rule_name(rule: CompiledRule) -> str:
    return f"r{rule.index}__{rule.head.engine_name}"


_MATERIALISED = {RelKind.CLAIM, RelKind.FACTS, RelKind.AGGREGATE}


def _needs(rule: CompiledRule, cp: CompiledProgram) -> set[str]:
    """The materialised relations (claim facts, KB facts, aggregates, memoised derived
    relations) rule's body needs a row of: with one of them empty the rule cannot fire."""
    return {
        lit.relation
        for lit in rule.body
        if isinstance(lit, IAtom)
        and not lit.negated
        and (
            cp.kinds.get(lit.relation) in _MATERIALISED
            or (cp.kinds.get(lit.relation) is RelKind.DYNAMIC and lit.engine_name.startswith("m__"))
        )
    }


def _rule_guards(cp: CompiledProgram) -> dict[int, set[str]]:
    """Per rule: the materialised relations its body needs a row of (see _guards)."""
    return {rule.index: _needs(rule, cp) for rule in cp.rules}


def _memo_name(rel: str) -> str:
    """The memoised resolver serving static relation `rel` to claim-dependent rules."""
    return "z__" + "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in rel)


def _via_memo(lit: ILiteral, cp: CompiledProgram) -> ILiteral:
    if isinstance(lit, IAtom) and cp.kinds.get(lit.relation) is RelKind.STATIC:
        return dataclasses.replace(lit, engine_name=_memo_name(lit.relation))
    return lit


def _guards(cp: CompiledProgram) -> dict[str, list[set[str]]]:
    """Per derived relation, per rule: the materialised relations its body needs a row of.
    A relation with a rule that has no such guard (e.g. only recursive or stored atoms) is left out."""
    out: dict[str, list[set[str]]] = {}
    unguarded: set[str] = set()
    for rule in cp.rules:
        rel = rule.head.relation
        needs = _needs(rule, cp)
        if not needs:
            unguarded.add(rel)
        out.setdefault(rel, []).append(needs)
    return {rel: g for rel, g in out.items() if rel not in unguarded}


def _check_rows(rel: str, rows: Iterable[Row], arity: int) -> Iterable[Row]:
    for row in rows:
        row = tuple(row)
        if len(row) != arity:
            raise EvaluationError(f"{rel} has arity {arity}, got a row of {len(row)}: {row}")
        yield row


def _fold(spec: AggregateSpec, rows: Iterable[Row]) -> list[Row]:
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row[: spec.group_arity]].append(row)
    out = []
    for g, members in groups.items():
        if spec.func == "count":
            value: Value = len(members)
        else:
            assert spec.target_pos is not None
            vals = [m[spec.target_pos] for m in members]
            value = {"sum": sum, "min": min, "max": max}[spec.func](vals)  # type: ignore[operator]
        out.append((*g, value))
    return semantics.sort_rows(out)
