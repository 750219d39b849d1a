"""Which values the compiled program cannot tell apart, derived from the rules and the stored data.

A remedy search tries several values in the same place (modifier 59, XE, XS, XP or XU added to
one line). Where the program treats two of them alike, both changed claims are decided alike,
and one judgment serves both. `Symmetry` proves this for a pair of symbols a and b instead of
assuming it from a list of modifiers.

The argument. Columns that a rule relates (the same variable in two places, `=`, `!=` or
another built-in between two variables, an aggregate's groups) hold values of one *sort*; the
sorts are inferred from the rules alone (declared types are not trusted). Let S be the sorts of
the claim columns where the caller puts a or b (the *seeds*, e.g. line_modifier's modifier), and
let σ swap a and b in the columns of S and change nothing else. Then σ maps every derivation
to a derivation, so evaluating σ(facts) derives σ(model), when

1. no rule names a or b where a value of S is expected (an atom column of S, or a comparison
   with a variable of S);
2. every built-in on a variable of S answers alike under σ: `=` and `!=` do (both sides are of
   one sort); `match` with a constant pattern is asked for both values (engine.semantics, as the
   evaluators do); an ordering comparison, arithmetic, a pattern of S or a `sum` / `min` / `max`
   over S is not trusted;
3. every stored relation with columns of S, projected onto the columns the rules read (a column
   every reading atom leaves to a variable used nowhere else is projected away), is the same set
   of rows after σ (modifier_role: XS has exactly the roles XU has; 25 has others);
4. no column of the outcome relations is of S: the decision is fixed by σ.

Only the rules that can derive a row the decision reads count (`targets`: relations with the
constants a row must have, e.g. the `overridden` rows of a rule id some `deny` rule names; then,
as Evaluator.needed does, every rule a counted rule reads by its constants): a warning that
overrides no denial does not make its modifier different.

A value elsewhere (the place-of-service code "59" in the pos table) is of another sort and
does not matter. For a claim whose facts hold a only at the seeds and b nowhere, the decision
of the claim with a replaced by b is then the claim's own decision: engine/explain/rejudge.py
judges such candidates once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from engine import semantics
from engine.compiler import CompiledProgram
from engine.evaluate import Target, needed
from engine.ir import CompiledRule, IAtom, ICompare, IConst, IMatch, IOp, ITerm, IVar, RelKind, Value
from engine.store import Store

Position = tuple[str, int]  # (relation, column)
_Node = tuple[object, ...]  # ("pos", relation, column) or ("var", rule index, name)

ORDERING = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True)
class Verdict:
    """Whether a pair is interchangeable, and if not every reason found (for tests and for
    whoever bisects a remedy search)."""

    ok: bool
    reasons: tuple[str, ...] = ()


@dataclass
class _Sort:
    """What the rules do with the values of one sort."""

    positions: set[Position] = field(default_factory=set)
    constants: dict[Value, str] = field(default_factory=dict)  # constant -> where a rule names it
    patterns: dict[Value, str] = field(default_factory=dict)  # constant match pattern -> where
    problems: list[str] = field(default_factory=list)  # built-ins not trusted under a swap


class Symmetry:
    """Interchangeable symbols of one compiled program and store, memoised per pair and seeds."""

    def __init__(self, cp: CompiledProgram, store: Store | None, targets: Iterable[Target]):
        """`targets`: the rows the decision is read from (the outcome relations)."""
        self.cp = cp
        self.store = store
        self.targets = tuple(targets)
        self.outputs = frozenset(rel for rel, _pattern in self.targets)
        self._rules: list[CompiledRule] | None = None
        self._aggregates: list[str] = []
        self._memo: dict[tuple[str, str, frozenset[Position]], Verdict] = {}
        self._sorts: dict[_Node, _Sort] | None = None
        self._parent: dict[_Node, _Node] = {}
        self._reads: dict[str, tuple[int, ...]] | None = None

    def interchangeable(self, a: Value, b: Value, seeds: frozenset[Position]) -> bool:
        return self.verdict(a, b, seeds).ok

    def verdict(self, a: Value, b: Value, seeds: frozenset[Position]) -> Verdict:
        """Whether swapping a and b (in the sorts of `seeds`, claim relation columns) commutes
        with evaluation, for facts that hold them only at `seeds`."""
        if not isinstance(a, str) or not isinstance(b, str):
            return Verdict(False, ("only symbols are compared",))
        if a == b:
            return Verdict(True)
        key = (min(a, b), max(a, b), seeds)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._verdict(key[0], key[1], seeds)
        return found

    def sort_of(self, position: Position) -> frozenset[Position]:
        """The columns whose values are of one sort with `position`'s."""
        sorts = self.sorts()
        found = sorts.get(self._find(("pos", *position)))
        return frozenset(found.positions) if found is not None else frozenset({position})

    # -- the four conditions ----------------------------------------------------------------

    def _verdict(self, a: str, b: str, seeds: frozenset[Position]) -> Verdict:
        reasons: list[str] = []
        sorts = self.sorts()
        roots = {self._find(("pos", *seed)) for seed in seeds}
        for rel, col in sorted(seeds):
            if self.cp.kinds.get(rel) not in (RelKind.CLAIM, RelKind.FACTS):
                reasons.append(f"seed {rel}.{col} is not a claim relation")
        members = [sorts[r] for r in roots if r in sorts]
        for sort in members:
            reasons.extend(sort.problems)
            reasons.extend(f"{where} names {v!r}" for v, where in sort.constants.items() if v in (a, b))
            for pattern, where in sort.patterns.items():
                if semantics.matches(pattern, a) != semantics.matches(pattern, b):
                    reasons.append(f"{where}: match({pattern!r}, ...) tells {a!r} from {b!r}")
        positions = {p for sort in members for p in sort.positions} | set(seeds)
        reasons.extend(
            f"outcome relation {rel} is of their sort (column {col})"
            for rel, col in sorted(positions)
            if rel in self.outputs
        )
        stored: dict[str, list[int]] = {}
        for rel, col in sorted(positions):
            if self.cp.kinds.get(rel) is RelKind.STORED:
                stored.setdefault(rel, []).append(col)
        for rel, cols in stored.items():
            reasons.extend(self._stored_problems(rel, cols, a, b))
        return Verdict(not reasons, tuple(reasons))

    def _stored_problems(self, rel: str, swapped: list[int], a: str, b: str) -> list[str]:
        """Condition 3: the rows of `rel` projected onto the columns the rules read that hold a
        or b in a column of their sort, swapped there, are rows of `rel` too."""
        cols = self.reads().get(rel, ())
        swapped = [c for c in swapped if c in cols]
        store = self.store
        if store is None or not swapped or not any(store.holds(rel, c, (a, b)) for c in swapped):
            return []
        swap = {a: b, b: a}
        seen: set[tuple[Value, ...]] = set()
        problems: list[str] = []
        for col in swapped:
            for v in (a, b):
                for row in store.lookup(rel, (col,), (v,)):
                    proj = tuple(row[c] for c in cols)
                    if proj in seen:
                        continue
                    seen.add(proj)
                    image = tuple(
                        swap.get(x, x) if c in swapped and isinstance(x, str) else x
                        for c, x in zip(cols, proj, strict=True)
                    )
                    if image != proj and not store.lookup(rel, cols, image):
                        problems.append(f"stored {rel} has {_show(cols, proj)} but not {_show(cols, image)}")
        return problems

    # -- sorts --------------------------------------------------------------------------------

    def rules(self) -> list[CompiledRule]:
        """The rules that can derive a target row or a row some such rule reads by its constants
        (engine.evaluate.needed); the aggregates they read are kept in `_aggregates`."""
        if self._rules is None:
            found = needed(self.cp, self.targets)
            self._aggregates = sorted(rel for rel in found.relations if rel in self.cp.aggregates)
            self._rules = [self.cp.rules[i] for i in sorted(found.rules)]
        return self._rules

    def reads(self) -> dict[str, tuple[int, ...]]:
        """Per stored relation some rule reads, the columns some reading atom needs: a constant,
        or a variable that occurs anywhere else in the rule (a lone variable, `_` included, reads
        nothing of its column)."""
        if self._reads is None:
            cols: dict[str, set[int]] = {}
            for rule in self.rules():
                counts: dict[str, int] = {}
                for term in _rule_terms(rule):
                    for name in _var_names(term):
                        counts[name] = counts.get(name, 0) + 1
                for lit in rule.body:
                    if isinstance(lit, IAtom) and self.cp.kinds.get(lit.relation) is RelKind.STORED:
                        used = cols.setdefault(lit.relation, set())
                        for i, t in enumerate(lit.args):
                            if not isinstance(t, IVar) or counts.get(t.name, 0) > 1:
                                used.add(i)
            self._reads = {rel: tuple(sorted(c)) for rel, c in sorted(cols.items())}
        return self._reads

    def sorts(self) -> dict[_Node, _Sort]:
        """The sorts of the program (by union-find root), each with the constants, patterns and
        untrusted built-ins its values meet."""
        if self._sorts is not None:
            return self._sorts
        cp = self.cp
        rules = self.rules()
        aggregates = {rel: cp.aggregates[rel] for rel in self._aggregates}
        for rule in rules:
            for atom in (rule.head, *(lit for lit in rule.body if isinstance(lit, IAtom))):
                for i, t in enumerate(atom.args):
                    for name in _var_names(t):
                        self._union(_var(rule, name), ("pos", atom.relation, i))
            for lit in rule.body:
                if isinstance(lit, (ICompare, IMatch)):
                    names = sorted(_literal_vars(lit))
                    for x, y in itertools.pairwise(names):
                        self._union(_var(rule, x), _var(rule, y))
        for rel, spec in aggregates.items():
            for i in range(spec.group_arity):
                self._union(("pos", spec.body_relation, i), ("pos", rel, i))
            if spec.target_pos is not None:
                self._union(("pos", spec.body_relation, spec.target_pos), ("pos", rel, spec.group_arity))
        sorts: dict[_Node, _Sort] = {}

        def sort(node: _Node) -> _Sort:
            root = self._find(node)
            found = sorts.get(root)
            if found is None:
                found = sorts[root] = _Sort()
            return found

        for rel, arity in cp.arity.items():
            for i in range(arity):
                sort(("pos", rel, i)).positions.add((rel, i))
        for rel, spec in aggregates.items():
            if spec.func != "count" and spec.target_pos is not None:
                sort(("pos", spec.body_relation, spec.target_pos)).problems.append(
                    f"{spec.func} aggregate {rel} folds their sort"
                )
        for rule in rules:
            where = f"rule {rule.index} ({rule.head.relation})"
            for atom in (rule.head, *(lit for lit in rule.body if isinstance(lit, IAtom))):
                for i, t in enumerate(atom.args):
                    if isinstance(t, IConst):
                        sort(("pos", atom.relation, i)).constants.setdefault(t.value, where)
                    elif isinstance(t, IOp):
                        for name in _var_names(t):
                            sort(_var(rule, name)).problems.append(f"{where}: arithmetic on their sort")
            for lit in rule.body:
                if isinstance(lit, ICompare):
                    _compare_facts(lit, rule, where, sort)
                elif isinstance(lit, IMatch):
                    _match_facts(lit, rule, where, sort)
        self._sorts = sorts
        return sorts

    def _find(self, node: _Node) -> _Node:
        parent = self._parent
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def _union(self, x: _Node, y: _Node) -> None:
        rx, ry = self._find(x), self._find(y)
        if rx != ry:
            self._parent[rx] = ry


def _var(rule: CompiledRule, name: str) -> _Node:
    return ("var", rule.index, name)


def _compare_facts(lit: ICompare, rule: CompiledRule, where: str, sort: Callable[[_Node], _Sort]) -> None:
    """What a comparison tells the sorts of its variables: arithmetic and ordering are not
    trusted; a constant compared with a variable is named in the variable's sort."""
    for side in (lit.left, lit.right):
        if isinstance(side, IOp):
            for name in _var_names(side):
                sort(_var(rule, name)).problems.append(f"{where}: arithmetic on their sort")
    names = _var_names(lit.left) | _var_names(lit.right)
    if lit.op in ORDERING:
        for name in names:
            sort(_var(rule, name)).problems.append(f"{where}: ordering comparison {lit.op} on their sort")
    for const, other in ((lit.left, lit.right), (lit.right, lit.left)):
        if isinstance(const, IConst):
            for name in _var_names(other):
                sort(_var(rule, name)).constants.setdefault(const.value, where)


def _match_facts(lit: IMatch, rule: CompiledRule, where: str, sort: Callable[[_Node], _Sort]) -> None:
    """`match` is trusted only for a constant pattern, asked for both values of a pair."""
    for name in _var_names(lit.pattern):
        sort(_var(rule, name)).problems.append(f"{where}: a match pattern of their sort")
    for name in _var_names(lit.value):
        if isinstance(lit.pattern, IConst) and isinstance(lit.value, IVar):
            sort(_var(rule, name)).patterns.setdefault(lit.pattern.value, where)
        else:
            sort(_var(rule, name)).problems.append(
                f"{where}: match of their sort against a pattern that is not a constant"
            )


def _literal_vars(lit: ICompare | IMatch) -> set[str]:
    if isinstance(lit, ICompare):
        return _var_names(lit.left) | _var_names(lit.right)
    return _var_names(lit.pattern) | _var_names(lit.value)


def _rule_terms(rule: CompiledRule) -> Iterator[ITerm]:
    yield from rule.head.args
    for lit in rule.body:
        if isinstance(lit, IAtom):
            yield from lit.args
        elif isinstance(lit, ICompare):
            yield lit.left
            yield lit.right
        else:
            yield lit.pattern
            yield lit.value


def _var_names(term: ITerm) -> set[str]:
    if isinstance(term, IVar):
        return {term.name}
    if isinstance(term, IOp):
        return _var_names(term.left) | _var_names(term.right)
    return set()


def _show(cols: tuple[int, ...], row: tuple[Value, ...]) -> str:
    return "(" + ", ".join(f"{c}={v!r}" for c, v in zip(cols, row, strict=True)) + ")"
