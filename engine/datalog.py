"""The one adapter around pyDatalog. Nothing else in PolicyKB imports it.

Builds engine clauses directly from compiled IR (no `load()`/`ask()` on text, which would
execute code), serves stored relations through keyed Python resolvers, evaluates comparison,
arithmetic and `match` with engine.semantics (as primitives of the session's own logic), and
keeps each Session's logic separate from any other in the process.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

from pyDatalog import Logic as _LogicModule  # noqa: F401  (initialises pyEngine.Logic)
from pyDatalog import pyDatalog, pyEngine

from engine import semantics
from engine.ir import IAtom, ICompare, IConst, ILiteral, IMatch, IOp, ITerm, IVar, Value

Resolver = Callable[[dict[int, Value]], Iterable[tuple]]

# The built-ins are primitives of each Session's own logic, named apart from pyDatalog's
# (whose comparison raises when an int meets a str, and whose division by zero binds the
# exception as a value); every one of them calls engine.semantics.
_CMP_NAMES = {"=": "b__eq", "!=": "b__ne", "<": "b__lt", "<=": "b__le", ">": "b__gt", ">=": "b__ge"}
_ARITH_NAMES = {"+": "b__add", "-": "b__sub", "*": "b__mul", "/": "b__div", "%": "b__mod"}
_MATCH_NAME = "b__match"


def compiled_extension_loaded() -> bool:
    """pyDatalog is usable only with its compiled engine (the pure-Python one is ~100x slower)."""
    return pyEngine.__file__.endswith((".so", ".pyd"))


def _bound(literal, *terms) -> None:
    if not all(t.is_const() for t in terms):
        raise pyEngine.util.DatalogError(f"built-in {literal.pred.id} reached with an unbound argument", None, None)


def _comparison(op: str):
    def prim(literal, subgoal) -> None:
        x, y = literal.terms[0], literal.terms[1]
        _bound(literal, x, y)
        if semantics.compare(x.id, op, y.id):
            subgoal.fact(True)

    return prim


def _arithmetic(op: str):
    def prim(literal, subgoal) -> None:
        x, y, result = literal.terms[0], literal.terms[1], literal.terms[2]
        _bound(literal, x, y)
        value = semantics.arith(op, x.id, y.id)
        if value is None:
            return
        if not result.is_const():
            subgoal.fact(pyEngine.Literal(literal.pred.name, [x, y, pyEngine.Const(value)]))
        elif semantics.compare(result.id, "=", value):
            subgoal.fact(True)

    return prim


def _match(literal, subgoal) -> None:
    pattern, value = literal.terms[0], literal.terms[1]
    _bound(literal, pattern, value)
    if semantics.matches(pattern.id, value.id):
        subgoal.fact(True)


_RESOLVERS = "_policykb_resolvers"  # attribute of a session's logic: resolver key -> function


def _dispatch(key: str) -> Callable:
    """The process-wide resolver for `key`: asks the session whose logic is current."""

    def resolve(*terms):
        own = getattr(pyEngine.Logic.tl.logic, _RESOLVERS, {}).get(key)
        return own(*terms) if own is not None else ()

    return resolve


def _install_builtins() -> None:
    for op, name in _CMP_NAMES.items():
        pyEngine.insert(pyEngine.Pred(name, 2)).prim = _comparison(op)
    for op, name in _ARITH_NAMES.items():
        pyEngine.insert(pyEngine.Pred(name, 3)).prim = _arithmetic(op)
    pyEngine.insert(pyEngine.Pred(_MATCH_NAME, 2)).prim = _match


class Session:
    """One pyDatalog logic: the rules of a program plus the facts of the current evaluation."""

    def __init__(self) -> None:
        previous = getattr(pyEngine.Logic.tl, "logic", None)
        self._logic = pyDatalog.Logic()  # fresh and current
        _install_builtins()
        # pyDatalog keeps Python resolvers in one dict for the whole process; each session keeps
        # its own on its logic, and the process-wide entry dispatches to the current logic's.
        self._resolvers: dict[str, Callable] = {}
        self._tables: dict[str, Table] = {}
        setattr(self._logic, _RESOLVERS, self._resolvers)
        if previous is not None:
            pyEngine.Logic.tl.logic = previous
        self._activate()

    def _activate(self) -> None:
        pyEngine.Logic.tl.logic = self._logic

    # -- program ----------------------------------------------------------------------

    def add_rule(self, head: IAtom, body: Sequence[ILiteral]) -> object:
        """Assert a rule; the handle returned can be withdrawn and restored (`withdraw`, `restore`).

        A test (comparison or `match`) placed right after a positive literal of a Table, with
        every variable bound by then, is applied by that literal's resolver (see _fuse): pyDatalog
        would otherwise open a subgoal for every distinct pair of values it compares (the pairs of
        `l != l2` over a claim's partner lines)."""
        self._activate()
        clause = _Clause()
        goals: list = []
        bound: set[str] = set()
        i = 0
        while i < len(body):
            lit = body[i]
            if isinstance(lit, IAtom) and not lit.negated and lit.engine_name in self._tables:
                after = bound | {t.name for t in lit.args if isinstance(t, IVar)}
                j = i + 1
                while j < len(body) and _fusable(body[j], after, self._tables):
                    j += 1
                if j > i + 1:
                    goals.append(self._fuse(clause, lit, list(body[i + 1 : j]), goals, after))
                    bound, i = after, j
                    continue
            goals.extend(clause.literal(lit))
            bound |= _binds(lit)
            i += 1
        rule = pyEngine.Clause(clause.atom(head, goals), goals)
        pyEngine.assert_(rule)
        return rule

    def _fuse(self, clause: _Clause, atom: IAtom, tests: list[ILiteral], goals: list, bound: set[str]):
        """One engine literal for `atom` followed by `tests`: a resolver over the atom's Table
        that returns only the rows passing the tests (the engine.semantics built-ins the tests'
        own primitives call). Its arguments are the atom's, then the tests' other variables
        (bound earlier in the body)."""
        table = self._tables[atom.engine_name]
        terms = [clause.term(t, goals) for t in atom.args]
        positions: dict[str, int] = {}
        for i, t in enumerate(atom.args):
            if isinstance(t, IVar):
                positions.setdefault(t.name, i)
        extra: list[str] = []
        for lit in tests:
            for t in _test_terms(lit):
                if isinstance(t, IVar) and t.name not in positions and not _free_in_negation(lit, t.name, bound):
                    positions[t.name] = len(atom.args) + len(extra)
                    extra.append(t.name)
        terms += [clause.term(IVar(name), goals) for name in extra]
        checks = [_check(lit, positions, self._tables) for lit in tests]
        width = len(atom.args)
        name = f"f{len(self._resolvers)}__{atom.engine_name}"

        def resolve(*args):
            given = args[width:]
            for t in given:
                if not isinstance(t, pyEngine.Const):
                    raise pyEngine.util.DatalogError(
                        f"built-in test in {name} reached with an unbound argument", None, None
                    )
            out = []
            for row in table.resolve(*args[:width]):
                full = row + given
                if all(check(full) for check in checks):
                    out.append(full)
            return out

        key = f"{name}/{len(terms)}"
        self._resolvers[key] = resolve
        if key not in pyEngine.Python_resolvers:
            pyEngine.Python_resolvers[key] = _dispatch(key)
        return pyEngine.Literal(name, terms)

    def withdraw(self, rules: Iterable[object]) -> None:
        """Take rules out of the program until `restore` (an ask no longer tries them)."""
        self._activate()
        for rule in rules:
            pyEngine.retract(rule)

    def restore(self, rules: Iterable[object]) -> None:
        self._activate()
        for rule in rules:
            pyEngine.assert_(rule)

    def add_resolver(self, engine_name: str, arity: int, resolver: Resolver) -> None:
        """Serve `engine_name` from Python: called with the bound argument positions."""

        def resolve(*terms):
            bound = {i: t.id for i, t in enumerate(terms) if t.is_const()}
            return resolver(bound)

        key = f"{engine_name}/{arity}"
        self._resolvers[key] = resolve
        if key not in pyEngine.Python_resolvers:
            pyEngine.Python_resolvers[key] = _dispatch(key)

    def add_table(self, engine_name: str, arity: int) -> Table:
        """Serve `engine_name` from rows held in Python (see Table) instead of asserted facts."""
        table = self._tables[engine_name] = Table()
        key = f"{engine_name}/{arity}"
        self._resolvers[key] = table.resolve
        if key not in pyEngine.Python_resolvers:
            pyEngine.Python_resolvers[key] = _dispatch(key)
        return table

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
        return semantics.sort_rows({tuple(ans) for ans in answers})

    def close(self) -> None:
        self._resolvers.clear()


class Table:
    """A relation whose rows are complete before any rule reading it is asked (the claim's facts,
    a finished stratum): served to the engine by a resolver over Python indexes instead of
    asserted as facts. An asserted fact costs pyDatalog an assert and a retract (~10 us each) and,
    every time a literal reads it, a renamed clause, a unification and a scheduled task; a
    resolver's row goes straight to the subgoal's answers."""

    __slots__ = ("_index", "_rows")

    def __init__(self) -> None:
        self._rows: list[tuple] = []  # rows of engine constants
        self._index: dict[tuple[int, ...], dict[tuple, list[tuple]]] = {}  # bound positions -> values -> rows

    def set(self, rows: Iterable[tuple]) -> None:
        """Make the relation exactly `rows` (distinct rows of values). Equal values share one
        engine constant: pyDatalog tests a variable that occurs twice in a literal, `m(L, L)`, by
        comparing the constants themselves, so two Const(1) objects would never match."""
        const = pyEngine.Const
        consts: dict[tuple[type, Value], object] = {}

        def one(v: Value) -> object:
            key = (v.__class__, v)
            c = consts.get(key)
            if c is None:
                c = consts[key] = const(v)
            return c

        self._rows = [tuple(one(v) for v in row) for row in rows]
        self._index = {}

    def _by(self, pattern: tuple[int, ...]) -> dict[tuple, list[tuple]]:
        """The rows by their values at `pattern` (built on first use after each `set`)."""
        index = self._index.get(pattern)
        if index is None:
            index = self._index[pattern] = {}
            for row in self._rows:
                index.setdefault(tuple(row[i].id for i in pattern), []).append(row)
        return index

    def has(self, pattern: tuple[int, ...], key: tuple) -> bool:
        """Whether some row holds the values `key` at the positions `pattern`."""
        return key in self._by(pattern) if pattern else bool(self._rows)

    def resolve(self, *terms) -> Sequence[tuple]:
        const = pyEngine.Const
        pattern = tuple(i for i, t in enumerate(terms) if isinstance(t, const))
        if not pattern:
            return self._rows
        return self._by(pattern).get(tuple(terms[i].id for i in pattern), ())


def _test_terms(lit: ILiteral) -> tuple[ITerm, ...]:
    if isinstance(lit, IAtom):
        return lit.args
    if isinstance(lit, IMatch):
        return (lit.pattern, lit.value)
    assert isinstance(lit, ICompare)
    return (lit.left, lit.right)


def _fusable(lit: ILiteral, bound: set[str], tables: dict[str, Table]) -> bool:
    """A test of constants and variables bound by now (an assignment or arithmetic stays in the
    engine), or a negated literal of a Table whose other variables occur once (no row may match
    its constants and bound values)."""
    if isinstance(lit, IAtom):
        if not lit.negated or lit.engine_name not in tables:
            return False
        free = [t.name for t in lit.args if isinstance(t, IVar) and t.name not in bound]
        return len(free) == len(set(free)) and all(isinstance(t, (IConst, IVar)) for t in lit.args)
    if not isinstance(lit, (IMatch, ICompare)) or (isinstance(lit, ICompare) and lit.assigns):
        return False
    return all(isinstance(t, IConst) or (isinstance(t, IVar) and t.name in bound) for t in _test_terms(lit))


def _binds(lit: ILiteral) -> set[str]:
    if isinstance(lit, IAtom) and not lit.negated:
        return {t.name for t in lit.args if isinstance(t, IVar)}
    if isinstance(lit, ICompare) and lit.assigns and isinstance(lit.left, IVar):
        return {lit.left.name}
    return set()


def _free_in_negation(lit: ILiteral, name: str, bound: set[str]) -> bool:
    return isinstance(lit, IAtom) and name not in bound


def _check(lit: ILiteral, positions: dict[str, int], tables: dict[str, Table]) -> Callable[[tuple], bool]:
    """The test as a function of a fused row of engine constants (see Session._fuse)."""
    if isinstance(lit, IAtom):  # a negated Table literal: no row matches the known positions
        table = tables[lit.engine_name]
        known = [
            (i, t)
            for i, t in enumerate(lit.args)
            if isinstance(t, IConst) or (isinstance(t, IVar) and t.name in positions)
        ]
        at = tuple(i for i, _t in known)
        getters = [_operand(t, positions) for _i, t in known]
        return lambda row: not table.has(at, tuple(g(row) for g in getters))
    if isinstance(lit, IMatch):
        pattern, value, negated = _operand(lit.pattern, positions), _operand(lit.value, positions), lit.negated
        return lambda row: semantics.matches(pattern(row), value(row)) != negated
    assert isinstance(lit, ICompare)
    left, right, op = _operand(lit.left, positions), _operand(lit.right, positions), lit.op
    return lambda row: semantics.compare(left(row), op, right(row))


def _operand(t: ITerm, positions: dict[str, int]) -> Callable[[tuple], Value]:
    if isinstance(t, IConst):
        value = t.value
        return lambda _row: value
    assert isinstance(t, IVar)
    p = positions[t.name]
    return lambda row: row[p].id


class _Clause:
    """Translates one rule into engine literals. An arithmetic expression becomes a built-in
    literal binding a fresh variable, placed just before the literal that uses it (the compiler
    orders bodies so its operands are bound there)."""

    def __init__(self) -> None:
        self.names: dict[str, pyEngine.Var] = {}
        self.fresh = itertools.count(1)

    def term(self, t: ITerm, goals: list):
        if isinstance(t, IVar):
            v = self.names.get(t.name)
            if v is None:
                v = self.names[t.name] = pyEngine.Var(t.name)
            return v
        if isinstance(t, IConst):
            return pyEngine.Const(t.value)
        assert isinstance(t, IOp)
        left, right = self.term(t.left, goals), self.term(t.right, goals)
        result = pyEngine.Var(f"__arith{next(self.fresh)}")
        goals.append(pyEngine.Literal(_ARITH_NAMES[t.op], [left, right, result]))
        return result

    def atom(self, a: IAtom, goals: list):
        name = ("~" + a.engine_name) if a.negated else a.engine_name
        return pyEngine.Literal(name, [self.term(x, goals) for x in a.args])

    def literal(self, lit: ILiteral) -> list:
        goals: list = []
        if isinstance(lit, IAtom):
            goals.append(self.atom(lit, goals))
        elif isinstance(lit, IMatch):
            args = [self.term(lit.pattern, goals), self.term(lit.value, goals)]
            goals.append(pyEngine.Literal(("~" if lit.negated else "") + _MATCH_NAME, args))
        else:
            assert isinstance(lit, ICompare)
            args = [self.term(lit.left, goals), self.term(lit.right, goals)]
            # an assignment binds its variable (pyDatalog's own ==); a test calls semantics
            goals.append(pyEngine.Literal("==" if lit.assigns else _CMP_NAMES[lit.op], args))
        return goals
