"""The one adapter around pyDatalog. Nothing else in PolicyKB imports it.

Builds engine clauses directly from compiled IR (no `load()`/`ask()` on text, which would
execute code), serves stored relations through keyed Python resolvers, and keeps each
Session's logic separate from any other in the process.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

from pyDatalog import Logic as _LogicModule  # noqa: F401  (initialises pyEngine.Logic)
from pyDatalog import pyDatalog, pyEngine

from engine.ir import IAtom, ICompare, IConst, ILiteral, IMatch, IOp, ITerm, IVar, Value

Resolver = Callable[[dict[int, Value]], Iterable[tuple]]

_OPS = {"+": "+", "-": "-", "*": "*", "/": "//", "%": "%"}
_CMP = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def compiled_extension_loaded() -> bool:
    """pyDatalog is usable only with its compiled engine (the pure-Python one is ~100x slower)."""
    return pyEngine.__file__.endswith((".so", ".pyd"))


def _safe_compare(literal, subgoal):
    """pyDatalog's comparison raises mid-query when an int meets a str; Datalog says 'false'."""
    x, y = literal.terms[0], literal.terms[1]
    if not (x.is_const() and y.is_const()):
        raise pyEngine.util.DatalogError(f"comparison {literal.pred.id} reached with an unbound side", None, None)
    a, b = x.id, y.id
    if type(a) is not type(b) and not (isinstance(a, int) and isinstance(b, int)):
        if literal.pred.name == "!=":
            subgoal.fact(True)
        return
    if pyEngine.compare(a, literal.pred.name, b):
        subgoal.fact(True)


class Session:
    """One pyDatalog logic: the rules of a program plus the facts of the current evaluation."""

    def __init__(self) -> None:
        previous = getattr(pyEngine.Logic.tl, "logic", None)
        self._logic = pyDatalog.Logic()  # fresh and current
        for op in ("<", "<=", ">", ">=", "!="):
            pyEngine.Logic.tl.logic.Db[f"{op}/2"].prim = _safe_compare
        self._resolver_names: list[str] = []
        if previous is not None:
            pyEngine.Logic.tl.logic = previous
        self._activate()

    def _activate(self) -> None:
        pyEngine.Logic.tl.logic = self._logic

    # -- program ----------------------------------------------------------------------

    def add_rule(self, head: IAtom, body: Sequence[ILiteral]) -> None:
        self._activate()
        names: dict[str, pyEngine.Var] = {}
        clause = pyEngine.Clause(_atom(head, names), [_literal(lit, names) for lit in body])
        pyEngine.assert_(clause)

    def add_resolver(self, engine_name: str, arity: int, resolver: Resolver) -> None:
        """Serve `engine_name` from Python: called with the bound argument positions."""
        def resolve(*terms):
            bound = {i: t.id for i, t in enumerate(terms) if t.is_const()}
            return resolver(bound)
        key = f"{engine_name}/{arity}"
        pyEngine.Python_resolvers[key] = resolve
        self._resolver_names.append(key)

    def add_match_builtin(self) -> None:
        cache: dict[tuple[str, str], bool] = {}

        def match(bound: dict[int, Value]) -> Iterable[tuple]:
            pat, val = bound.get(0), bound.get(1)
            if not isinstance(pat, str) or not isinstance(val, str):
                return []
            hit = cache.get((pat, val))
            if hit is None:
                try:
                    hit = re.fullmatch(pat, val) is not None
                except re.error:
                    hit = False
                cache[(pat, val)] = hit
            return [(pat, val)] if hit else []
        self.add_resolver("b__match", 2, match)

    def declare(self, engine_name: str, arity: int) -> None:
        """Make a fact relation known even while it holds no facts, so a negation over an
        empty relation is simply true instead of an 'undefined predicate' error."""
        self._activate()
        pyEngine.insert(pyEngine.Pred(engine_name, arity))

    # -- facts --------------------------------------------------------------------------

    def assert_fact(self, engine_name: str, values: tuple) -> object:
        self._activate()
        clause = pyEngine.Clause(pyEngine.Literal(engine_name, [pyEngine.Const(v) for v in values]), [])
        pyEngine.assert_(clause)
        return clause

    def retract(self, handles: Iterable[object]) -> None:
        self._activate()
        for clause in handles:
            pyEngine.retract(clause)

    # -- queries ------------------------------------------------------------------------

    def query(self, engine_name: str, args: Sequence[Value | None]) -> list[tuple]:
        """Answers to `engine_name(args)`, None meaning a free position; sorted."""
        self._activate()
        terms = [pyEngine.Var(f"Q{i}") if a is None else pyEngine.Const(a) for i, a in enumerate(args)]
        answers = pyEngine.Literal(engine_name, terms).ask()
        if not answers:
            return []
        if not args:
            return [()]
        return sorted({tuple(ans) for ans in answers}, key=_sort_key)

    def close(self) -> None:
        for key in self._resolver_names:
            pyEngine.Python_resolvers.pop(key, None)
        self._resolver_names.clear()


def _sort_key(row: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, int) else (1, 0, str(v)) for v in row)


def _term(t: ITerm, names: dict[str, pyEngine.Var]):
    if isinstance(t, IVar):
        v = names.get(t.name)
        if v is None:
            v = names[t.name] = pyEngine.Var(t.name)
        return v
    if isinstance(t, IConst):
        return pyEngine.Const(t.value)
    assert isinstance(t, IOp)
    return pyEngine.Operation(_term(t.left, names), _OPS[t.op], _term(t.right, names))


def _atom(a: IAtom, names: dict[str, pyEngine.Var]):
    name = ("~" + a.engine_name) if a.negated else a.engine_name
    return pyEngine.Literal(name, [_term(x, names) for x in a.args])


def _literal(lit: ILiteral, names: dict[str, pyEngine.Var]):
    if isinstance(lit, IAtom):
        return _atom(lit, names)
    if isinstance(lit, IMatch):
        name = "~b__match" if lit.negated else "b__match"
        return pyEngine.Literal(name, [_term(lit.pattern, names), _term(lit.value, names)])
    assert isinstance(lit, ICompare)
    return pyEngine.Literal(_CMP[lit.op], [_term(lit.left, names), _term(lit.right, names)])
