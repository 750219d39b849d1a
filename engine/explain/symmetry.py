"""Which values the compiled program cannot tell apart, derived from the rules and the stored data.

A remedy search tries several values in the same place (modifier 59, XE, XS, XP or XU added to
one line). Where the program treats two of them alike, both changed claims are decided alike,
and one judgment serves both. `Symmetry` proves this for a pair of symbols a and b instead of
assuming it from a list of modifiers.

The argument: let σ swap a and b (and fix every other value). If σ maps the rules and every
row they read onto themselves, evaluation commutes with σ: evaluating σ(facts) derives
σ(model). The pair is *interchangeable* when

1. no rule names a or b as a constant (head, body, comparison, pattern, expression);
2. every built-in that can meet a or b answers alike under σ. `=` and `!=` always do (σ is one
   to one); `match` with a constant pattern is asked for both values (with engine.semantics,
   as the evaluators do); an ordering comparison, arithmetic, a `match` pattern that can carry
   them, or a `sum` / `min` / `max` over them is not trusted;
3. every stored relation, projected onto the columns the rules read (a column every atom that
   reads it leaves to a variable used nowhere else is projected away), is the same set of rows
   after σ (e.g. modifier_role: XS has exactly the roles XU has; 25 has others);
4. no column of the outcome relations (`outputs`) can carry a or b: the decision, read from
   them, is then fixed by σ.

"Can carry" is a flow analysis over the compiled rules: from the *seeds* (the claim columns
where the caller puts a or b, and every read stored column that holds either) through positive
body atoms, assignments and `=` to heads and aggregate groups, to a fixpoint. A column not
reached holds neither value in any evaluation, so what a built-in does there does not matter.
Declared types are not trusted for that; only the store's own refusal of a table row whose value
its type rejects is (see Store.holds).

For a claim whose facts hold a only at the seeds and nowhere b, the decision of the claim with a
replaced by b is then the decision of the claim itself (when the decision's relations carry
neither): engine/explain/rejudge.py judges such candidates once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from engine import semantics
from engine.compiler import CompiledProgram
from engine.ir import CompiledRule, IAtom, ICompare, IConst, ILiteral, IMatch, IOp, ITerm, IVar, RelKind, Value
from engine.store import Store

Position = tuple[str, int]  # (relation, column)

ORDERING = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True)
class Verdict:
    """Whether a pair is interchangeable, and if not every reason found (for tests and for
    whoever bisects a remedy search)."""

    ok: bool
    reasons: tuple[str, ...] = ()


class Symmetry:
    """Interchangeable symbols of one compiled program and store, memoised per pair and seeds."""

    def __init__(self, cp: CompiledProgram, store: Store | None, outputs: Iterable[str]):
        self.cp = cp
        self.store = store
        self.outputs = tuple(outputs)
        self._memo: dict[tuple[str, str, frozenset[Position]], Verdict] = {}
        self._held: dict[tuple[str, int, str], bool] = {}
        self._constants: dict[Value, CompiledRule] | None = None
        self._reads: dict[str, tuple[int, ...]] | None = None

    def interchangeable(self, a: Value, b: Value, seeds: frozenset[Position]) -> bool:
        return self.verdict(a, b, seeds).ok

    def verdict(self, a: Value, b: Value, seeds: frozenset[Position]) -> Verdict:
        """Whether swapping a and b commutes with evaluation, for facts that hold them only at
        `seeds` (claim relation columns)."""
        if not isinstance(a, str) or not isinstance(b, str):
            return Verdict(False, ("only symbols are compared",))
        if a == b:
            return Verdict(True)
        key = (min(a, b), max(a, b), seeds)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._verdict(key[0], key[1], seeds)
        return found

    # -- the four conditions ----------------------------------------------------------------

    def _verdict(self, a: str, b: str, seeds: frozenset[Position]) -> Verdict:
        reasons: list[str] = []
        for v in (a, b):
            rule = self.constants().get(v)
            if rule is not None:
                reasons.append(f"rule {rule.index} ({rule.head.relation}) names {v!r}")
        for rel, col in sorted(seeds):
            if self.cp.kinds.get(rel) not in (RelKind.CLAIM, RelKind.FACTS):
                reasons.append(f"seed {rel}.{col} is not a claim relation")
        carried = set(seeds)
        for rel, cols in self.reads().items():
            holding = [c for c in cols if self._holds(rel, c, a) or self._holds(rel, c, b)]
            if holding:
                reasons.extend(self._stored_problems(rel, cols, holding, a, b))
                carried.update((rel, c) for c in holding)
        reasons.extend(self._flow(carried, a, b))
        reasons.extend(
            f"outcome relation {rel} can carry them (column {col})"
            for rel, col in sorted(carried)
            if rel in self.outputs
        )
        return Verdict(not reasons, tuple(reasons))

    def constants(self) -> dict[Value, CompiledRule]:
        """Every constant of every rule, with the first rule that names it."""
        if self._constants is None:
            found: dict[Value, CompiledRule] = {}
            for rule in self.cp.rules:
                for term in _rule_terms(rule):
                    for c in _consts(term):
                        found.setdefault(c, rule)
            self._constants = found
        return self._constants

    def reads(self) -> dict[str, tuple[int, ...]]:
        """Per stored relation some rule reads, the columns some reading atom needs: a constant,
        or a variable that occurs anywhere else in the rule (a lone variable, `_` included, reads
        nothing of its column)."""
        if self._reads is None:
            cols: dict[str, set[int]] = {}
            for rule in self.cp.rules:
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

    def _holds(self, rel: str, col: int, value: str) -> bool:
        key = (rel, col, value)
        found = self._held.get(key)
        if found is None:
            found = self._held[key] = self.store is not None and self.store.holds(rel, col, (value,))
        return found

    def _stored_problems(self, rel: str, cols: tuple[int, ...], holding: list[int], a: str, b: str) -> list[str]:
        """Condition 3: the rows of `rel` (projected onto `cols`) that hold a or b, swapped, are
        rows of `rel` too."""
        assert self.store is not None
        swap = {a: b, b: a}
        seen: set[tuple[Value, ...]] = set()
        problems: list[str] = []
        for col in holding:
            for v in (a, b):
                for row in self.store.lookup(rel, (col,), (v,)):
                    proj = tuple(row[c] for c in cols)
                    if proj in seen:
                        continue
                    seen.add(proj)
                    image = tuple(swap.get(x, x) if isinstance(x, str) else x for x in proj)
                    if image != proj and not self.store.lookup(rel, cols, image):
                        problems.append(f"stored {rel} has {_show(cols, proj)} but not {_show(cols, image)}")
        return problems

    def _flow(self, carried: set[Position], a: str, b: str) -> list[str]:
        """Grow `carried` to a fixpoint, then check every built-in a carried variable meets."""
        cp = self.cp
        grew = True
        while grew:
            grew = False
            for rule in cp.rules:
                names = _carried_vars(rule, carried)
                for i, t in enumerate(rule.head.args):
                    if _var_names(t) & names and (rule.head.relation, i) not in carried:
                        carried.add((rule.head.relation, i))
                        grew = True
            for rel, spec in cp.aggregates.items():
                for i in range(spec.group_arity):
                    if (spec.body_relation, i) in carried and (rel, i) not in carried:
                        carried.add((rel, i))
                        grew = True
        problems = [
            f"{spec.func} aggregate {rel} folds a column that can carry them"
            for rel, spec in cp.aggregates.items()
            if spec.target_pos is not None and (spec.body_relation, spec.target_pos) in carried
        ]
        for rule in cp.rules:
            names = _carried_vars(rule, carried)
            if not names:
                continue
            for lit in rule.body:
                problem = _builtin_problem(lit, names, a, b)
                if problem:
                    problems.append(f"rule {rule.index} ({rule.head.relation}): {problem}")
        return problems


def _carried_vars(rule: CompiledRule, carried: set[Position]) -> set[str]:
    """The variables of `rule` that can be bound to a carried value: at a carried position of a
    positive atom, or equal (`=`, an assignment) to such a variable."""
    names = {
        t.name
        for lit in rule.body
        if isinstance(lit, IAtom) and not lit.negated
        for i, t in enumerate(lit.args)
        if isinstance(t, IVar) and (lit.relation, i) in carried
    }
    grew = bool(names)
    while grew:
        grew = False
        for lit in rule.body:
            if isinstance(lit, ICompare) and lit.op == "=":
                for x, y in ((lit.left, lit.right), (lit.right, lit.left)):
                    if isinstance(x, IVar) and isinstance(y, IVar) and y.name in names and x.name not in names:
                        names.add(x.name)
                        grew = True
    return names


def _builtin_problem(lit: ILiteral, names: set[str], a: str, b: str) -> str:
    """Condition 2 for one literal, given the variables that can carry a or b."""
    if isinstance(lit, IAtom):
        if any(isinstance(t, IOp) and _var_names(t) & names for t in lit.args):
            return f"arithmetic on a value that can carry them in {lit.relation}"
        return ""
    if isinstance(lit, ICompare):
        for side in (lit.left, lit.right):
            if isinstance(side, IOp) and _var_names(side) & names:
                return f"arithmetic on a value that can carry them ({lit.op})"
        if lit.op in ORDERING and (_var_names(lit.left) | _var_names(lit.right)) & names:
            return f"ordering comparison {lit.op} on a value that can carry them"
        return ""
    assert isinstance(lit, IMatch)
    if _var_names(lit.pattern) & names:
        return "a match pattern that can carry them"
    if not _var_names(lit.value) & names:
        return ""
    if not isinstance(lit.pattern, IConst) or not isinstance(lit.value, IVar):
        return "match of a value that can carry them against a pattern that is not a constant"
    pattern = lit.pattern.value
    if semantics.matches(pattern, a) != semantics.matches(pattern, b):
        return f"match({pattern!r}, ...) tells {a!r} from {b!r}"
    return ""


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


def _consts(term: ITerm) -> Iterator[Value]:
    if isinstance(term, IConst):
        yield term.value
    elif isinstance(term, IOp):
        yield from _consts(term.left)
        yield from _consts(term.right)


def _var_names(term: ITerm) -> set[str]:
    if isinstance(term, IVar):
        return {term.name}
    if isinstance(term, IOp):
        return _var_names(term.left) | _var_names(term.right)
    return set()


def _show(cols: tuple[int, ...], row: tuple[Value, ...]) -> str:
    return "(" + ", ".join(f"{c}={v!r}" for c, v in zip(cols, row, strict=True)) + ")"
