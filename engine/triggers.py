"""Which rules of a claim-dependent relation can fire for one evaluation, before pyDatalog is asked.

pyDatalog pays a subgoal (~20-30 µs) for every distinct bound literal it reaches, also in rules that
derive nothing for the claim at hand (an add-on code rule on a claim without add-on codes, a
deleted-code rule on a claim of current codes). A rule can fire only if every positive body literal
has a row; two cheap necessary conditions are checked here in Python:

- a guard: a materialised relation (claim facts, an aggregate, a relation of an earlier stratum)
  the body reads positively must have a row that matches the literal's constants;
- a probe: a positive stored or static literal whose variables also occur in a positive materialised
  literal of the same body must have a row for some combination of the values those materialised
  rows hold there (the same keyed lookup pyDatalog's resolver would make, or one with fewer bound
  positions, so a superset of its rows).

- an absence: a negated literal whose variables all occur in positive materialised literals must
  hold (have no row) for some combination of their values;
- a test: a comparison or `match` whose variables all occur there must hold for some combination.

A rule failing any condition derives nothing for this evaluation and is left out of the ask.
Both conditions only look at complete relations (the evaluator materialises stratum by stratum), so
a rule that could fire is never left out (tests/test_triggers.py compares every rule's rows).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine import semantics
from engine.compiler import CompiledProgram
from engine.ir import CompiledRule, IAtom, ICompare, IConst, ILiteral, IMatch, IVar, RelKind, Value

Row = tuple[Value, ...]

MAX_COMBINATIONS = 256  # a probe with more value combinations than this is not tried (assumed to match)

_MATERIALISED = {RelKind.CLAIM, RelKind.FACTS, RelKind.AGGREGATE}


@dataclass(frozen=True)
class Source:
    """Where a variable's values come from: column `position` of the rows of `relation` that
    hold `consts` (position, value) at their constant positions."""

    relation: str
    consts: tuple[tuple[int, Value], ...]
    position: int


@dataclass(frozen=True)
class Probe:
    """A body literal tried on the values of its variables that come from materialised literals
    of the same body: `lookup` (a positive stored or static literal: some row must match), `absent`
    (a negated literal: for some values no row matches) or `test` (a comparison or match: true
    for some values). Constants stay at their positions; other positions are left open."""

    mode: str
    literal: ILiteral
    relation: str
    pattern: tuple[int, ...]  # the positions tried (constants and variables with a source), ascending
    fill: tuple[tuple[int, Value | None], ...]  # per position of `pattern`: (-1, constant) or (variable index, None)
    sources: tuple[Source, ...]  # per variable: where its values come from

    def key(self, values: tuple[Value, ...]) -> tuple[Value, ...]:
        """The values at `pattern` for one combination of the variables' values."""
        return tuple(c if j < 0 else values[j] for j, c in self.fill)  # type: ignore[misc]


@dataclass(frozen=True)
class RuleCheck:
    """The necessary conditions of one rule (see the module docstring)."""

    guards: tuple[tuple[str, tuple[tuple[int, Value], ...]], ...]
    probes: tuple[Probe, ...]


def materialised(lit: IAtom, cp: CompiledProgram) -> bool:
    """A positive literal read from rows that are complete when its rule is asked."""
    kind = cp.kinds.get(lit.relation)
    return kind in _MATERIALISED or (kind is RelKind.DYNAMIC and lit.engine_name.startswith("m__"))


def _consts(lit: IAtom) -> tuple[tuple[int, Value], ...]:
    return tuple((i, t.value) for i, t in enumerate(lit.args) if isinstance(t, IConst))


def rule_check(rule: CompiledRule, cp: CompiledProgram) -> RuleCheck:
    atoms = [lit for lit in rule.body if isinstance(lit, IAtom) and not lit.negated]
    guards: dict[tuple[str, tuple[tuple[int, Value], ...]], None] = {}
    sources: dict[str, Source] = {}
    for lit in atoms:
        if not materialised(lit, cp):
            continue
        consts = _consts(lit)
        guards[(lit.relation, consts)] = None
        for i, t in enumerate(lit.args):
            if isinstance(t, IVar) and t.name not in sources:
                sources[t.name] = Source(lit.relation, consts, i)
    probes = []
    bound: set[str] = set()  # the variables bound before each literal, in the engine's order
    for literal in rule.body:
        before = set(bound)
        if isinstance(literal, IAtom) and not literal.negated:
            bound.update(t.name for t in literal.args if isinstance(t, IVar))
        elif isinstance(literal, ICompare) and literal.assigns and isinstance(literal.left, IVar):
            bound.add(literal.left.name)
        mode, args = _mode(literal, cp)
        if mode is None:
            continue
        positions: dict[str, list[int]] = {}
        for i, t in enumerate(args):
            if isinstance(t, IVar) and t.name in sources:
                positions.setdefault(t.name, []).append(i)
            elif not isinstance(t, (IVar, IConst)) and mode != "lookup":
                positions.clear()  # an arithmetic term: not tried
                break
            elif isinstance(t, IVar) and mode != "lookup":
                positions.clear()  # a variable bound elsewhere: every value must be known to try it
                break
        if not positions:
            continue  # nothing narrows it (a lookup by its constants alone could return a whole table)
        engine = {i for i, t in enumerate(args) if isinstance(t, IConst) or (isinstance(t, IVar) and t.name in before)}
        if mode == "lookup" and engine != {i for ps in positions.values() for i in ps} | {
            i for i, t in enumerate(args) if isinstance(t, IConst)
        }:
            # tried only as the engine's own lookup (the same bound positions): a lookup by other
            # positions could find no index on a large table and scan it
            continue
        variables = list(positions)
        fill: list[tuple[int, tuple[int, Value | None]]] = [
            (i, (-1, t.value)) for i, t in enumerate(args) if isinstance(t, IConst)
        ]
        fill += [(i, (variables.index(v), None)) for v, ps in positions.items() for i in ps]
        fill.sort(key=lambda f: f[0])
        probes.append(
            Probe(
                mode,
                literal,
                literal.relation if isinstance(literal, IAtom) else "",
                tuple(i for i, _f in fill),
                tuple(f for _i, f in fill),
                tuple(sources[v] for v in variables),
            )
        )
    return RuleCheck(tuple(guards), tuple(probes))


def _mode(lit: ILiteral, cp: CompiledProgram) -> tuple[str | None, tuple]:
    if isinstance(lit, IAtom):
        if lit.negated:
            return "absent", lit.args
        if cp.kinds.get(lit.relation) in (RelKind.STORED, RelKind.STATIC):
            return "lookup", lit.args
        return None, ()
    if isinstance(lit, IMatch):
        return "test", (lit.pattern, lit.value)
    if isinstance(lit, ICompare) and not lit.assigns:
        return "test", (lit.left, lit.right)
    return None, ()


Rows = Callable[[str], Iterable[Row]]  # a materialised relation's complete rows
Lookup = Callable[[str, tuple[int, ...], tuple[Value, ...]], bool]  # a stored/static row with these values here?


class Selector:
    """Per evaluation: which rules cannot fire, given the rows materialised so far."""

    def __init__(self, rows: Rows, lookup: Lookup, is_materialised: Callable[[str], bool]):
        self._rows = rows
        self._lookup = lookup
        self._is_materialised = is_materialised
        self._values: dict[Source, frozenset[Value]] = {}
        self._matching: dict[tuple[str, tuple[tuple[int, Value], ...]], bool] = {}
        self._keys: dict[tuple[str, tuple[int, ...]], set[tuple]] = {}

    def _has(self, relation: str, consts: tuple[tuple[int, Value], ...]) -> bool:
        key = (relation, consts)
        found = self._matching.get(key)
        if found is None:
            rows = self._rows(relation)
            found = self._matching[key] = (
                any(all(row[i] == v for i, v in consts) for row in rows) if consts else bool(rows)
            )
        return found

    def _column(self, src: Source) -> frozenset[Value]:
        found = self._values.get(src)
        if found is None:
            pos, consts, rows = src.position, src.consts, self._rows(src.relation)
            if consts:
                found = frozenset(row[pos] for row in rows if all(row[i] == v for i, v in consts))
            else:
                found = frozenset(row[pos] for row in rows)
            self._values[src] = found
        return found

    def cannot_fire(self, check: RuleCheck) -> bool:
        if any(not self._has(rel, consts) for rel, consts in check.guards):
            return True
        return any(self._probe_fails(p) for p in check.probes)

    def _probe_fails(self, probe: Probe) -> bool:
        columns = [self._column(src) for src in probe.sources]
        total = 1
        for col in columns:
            total *= len(col)
        if total == 0:
            return True
        if total > MAX_COMBINATIONS:
            return False
        combos: Iterable[tuple[Value, ...]] = (
            ((v,) for v in columns[0]) if len(columns) == 1 else itertools.product(*columns)
        )
        holds = self._holds
        return not any(holds(probe, probe.key(values)) for values in combos)

    def _holds(self, probe: Probe, key: tuple[Value, ...]) -> bool:
        if probe.mode == "lookup":
            return self._lookup(probe.relation, probe.pattern, key)
        if probe.mode == "absent":
            return not self._present(probe.relation, probe.pattern, key)
        lit = probe.literal
        try:
            if isinstance(lit, IMatch):
                return semantics.matches(key[0], key[1]) != lit.negated
            assert isinstance(lit, ICompare)
            return semantics.compare(key[0], lit.op, key[1])
        except Exception:
            return True  # not decided here: pyDatalog decides

    def _present(self, relation: str, pattern: tuple[int, ...], key: tuple[Value, ...]) -> bool:
        """Whether `relation` (materialised, stored or static) has a row with `key` at `pattern`."""
        if not self._is_materialised(relation):
            return self._lookup(relation, pattern, key)
        index = self._keys.get((relation, pattern))
        if index is None:
            index = self._keys[(relation, pattern)] = {tuple(row[i] for i in pattern) for row in self._rows(relation)}
        return key in index
