"""Evaluate a compiled program for one batch of facts (a claim), stratum by stratum.

Per evaluation: the claim's facts are asserted; each strongly connected component of
claim-dependent relations is asked in dependency order and its answers are asserted as
materialised facts that later components read (so a negation always looks at a finished
relation); aggregates are folded in Python from materialised rows. Everything asserted is
retracted afterwards, leaving the rules and resolvers for the next claim.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine import semantics
from engine.compiler import CompiledProgram
from engine.datalog import Session
from engine.ir import AggregateSpec, IAtom, ILiteral, RelKind, Value
from engine.store import RowSource, Store

Row = tuple[Value, ...]


class EvaluationError(Exception):
    """Facts that do not fit the program (unknown relation, wrong arity)."""


@dataclass
class Model:
    """What one evaluation derived: every claim and claim-dependent relation, as sorted rows.
    Stored and static relations are asked through `Evaluator.lookup` instead (they are large)."""

    relations: dict[str, list[Row]] = field(default_factory=dict)

    def rows(self, relation: str) -> list[Row]:
        return self.relations.get(relation, [])


class Evaluator:
    """Holds one pyDatalog session with the program's rules, reused across evaluations."""

    def __init__(self, compiled: CompiledProgram, store: Store | None = None):
        self.cp = compiled
        self.store = store
        self.session = Session()
        for rel, kind in sorted(compiled.kinds.items()):
            if kind is RelKind.STORED:
                self.session.add_resolver(
                    compiled.engine_name(rel, materialised=True), compiled.arity[rel], self._resolver(rel)
                )
        for rel, kind in sorted(compiled.kinds.items()):
            if kind in (RelKind.CLAIM, RelKind.FACTS, RelKind.DYNAMIC, RelKind.AGGREGATE):
                self.session.declare(compiled.engine_name(rel, materialised=True), compiled.arity[rel])
        # A static relation (derived from stored data alone) answers the same for the same bound
        # values in every claim: claim-dependent rules read it through a memoised resolver
        # instead of re-deriving it in every ask (each derivation costs pyDatalog a subgoal per
        # rule and lookup). The static rules themselves keep their own references.
        self._static: dict[tuple[str, tuple[Value | None, ...]], list[Row]] = {}
        for rel, kind in sorted(compiled.kinds.items()):
            if kind is RelKind.STATIC:
                self.session.add_resolver(_memo_name(rel), compiled.arity[rel], self._static_resolver(rel))
        for rule in compiled.rules:
            body = rule.body
            if compiled.kinds.get(rule.head.relation) is not RelKind.STATIC:
                body = tuple(_via_memo(lit, compiled) for lit in body)
            self.session.add_rule(rule.head, body)
        self._guards = _guards(compiled)

    def _resolver(self, rel: str):
        store = self.store
        source = rel

        def resolve(bound: dict[int, Value]) -> Iterable[tuple]:
            if store is None:
                return ()
            pattern = tuple(sorted(bound))
            return store.lookup(source, pattern, tuple(bound[i] for i in pattern))

        return resolve

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

    def evaluate(self, facts: Mapping[str, Iterable[Row]]) -> Model:
        cp, session = self.cp, self.session
        handles: list[object] = []
        model = Model()
        try:
            for rel, rows in sorted(facts.items()):
                kind = cp.kinds.get(rel)
                target = cp.fact_relations.get(rel, rel)
                tkind = cp.kinds.get(target)
                if kind is None or tkind not in (RelKind.CLAIM, RelKind.FACTS):
                    raise EvaluationError(f"cannot assert facts for {rel}: it is not a claim relation")
                name = cp.engine_name(target, materialised=True)
                clean = semantics.sort_rows(set(_check_rows(rel, rows, cp.arity[target])))
                model.relations[rel] = clean
                for row in clean:
                    handles.append(session.assert_fact(name, row))
            for scc in cp.order:
                for rel in scc:
                    if cp.kinds[rel] is RelKind.AGGREGATE:
                        model.relations[rel] = _fold(cp.aggregates[rel], model.rows(cp.aggregates[rel].body_relation))
                    elif self._cannot_fire(rel, model):
                        model.relations[rel] = []
                    else:
                        model.relations[rel] = session.query(
                            cp.engine_name(rel, materialised=False), [None] * cp.arity[rel]
                        )
                for rel in scc:
                    name = cp.engine_name(rel, materialised=True)
                    for row in model.relations[rel]:
                        handles.append(session.assert_fact(name, row))
        finally:
            session.retract(handles)
        return model

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
        self.session.close()


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
    materialised = {RelKind.CLAIM, RelKind.FACTS, RelKind.AGGREGATE}
    out: dict[str, list[set[str]]] = {}
    unguarded: set[str] = set()
    for rule in cp.rules:
        rel = rule.head.relation
        needs = {
            lit.relation
            for lit in rule.body
            if isinstance(lit, IAtom)
            and not lit.negated
            and (
                cp.kinds.get(lit.relation) in materialised
                or (cp.kinds.get(lit.relation) is RelKind.DYNAMIC and lit.engine_name.startswith("m__"))
            )
        }
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


def _fold(spec: AggregateSpec, rows: list[Row]) -> list[Row]:
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
