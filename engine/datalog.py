"""The one adapter around pyDatalog. Nothing else in PolicyKB imports it.

Builds engine clauses directly from compiled IR (no `load()`/`ask()` on text, which would
execute code), serves stored relations through keyed Python resolvers, evaluates comparison,
arithmetic and `match` with engine.semantics (as primitives of the session's own logic), and
keeps each Session's logic separate from any other in the process. Runs of body literals over
relations already complete are joined in Python (one engine literal instead of a subgoal per
literal and binding), and a relation whose rules are each one such join is answered from the
joins (see Session.add_rule and Session.query).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from pyDatalog import Logic as _LogicModule  # noqa: F401  (initialises pyEngine.Logic)
from pyDatalog import pyDatalog, pyEngine

from engine import semantics
from engine.ir import IAtom, ICompare, IConst, ILiteral, IMatch, IOp, ITerm, IVar, Value

Resolver = Callable[[dict[int, Value]], Iterable[tuple]]
# rows of a relation (tuples of values) by the positions bound and their values
Lookup = Callable[[tuple[int, ...], tuple], Sequence[tuple]]

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

    def __init__(self, *, joins: bool = True) -> None:
        """`joins`: answer runs of body literals over complete relations by joins in Python, and
        a query whose rules are each one such join without the engine (see `add_rule`, `query`);
        off, the engine answers every literal (the tests compare the two)."""
        previous = getattr(pyEngine.Logic.tl, "logic", None)
        self.joins = joins
        # per head predicate, its rules; the rules that are one join (see _Direct); the withdrawn
        self._rules: dict[str, list[object]] = {}
        self._direct: dict[int, _Direct] = {}
        self._off: set[int] = set()
        self._facts: set[str] = set()  # predicates with asserted facts (never answered directly)
        self._logic = pyDatalog.Logic()  # fresh and current
        _install_builtins()
        # pyDatalog keeps Python resolvers in one dict for the whole process; each session keeps
        # its own on its logic, and the process-wide entry dispatches to the current logic's.
        self._resolvers: dict[str, Callable] = {}
        self._tables: dict[str, Table] = {}
        # relations a join in Python can read: engine name -> (lookup, rows always equal the key)
        self._lookups: dict[str, tuple[Lookup, bool]] = {}
        setattr(self._logic, _RESOLVERS, self._resolvers)
        if previous is not None:
            pyEngine.Logic.tl.logic = previous
        self._activate()

    def _activate(self) -> None:
        pyEngine.Logic.tl.logic = self._logic

    # -- program ----------------------------------------------------------------------

    def add_rule(self, head: IAtom, body: Sequence[ILiteral]) -> object:
        """Assert a rule; the handle returned can be withdrawn and restored (`withdraw`, `restore`).

        A run of two or more body literals that Python can answer (lookups of relations served
        by `add_table` or `add_resolver` with a `lookup`, tests, assignments, negations of such
        relations) becomes one engine literal served by a join in Python (see _Join): pyDatalog
        would otherwise open a subgoal for every literal and every distinct binding reaching it
        (each `d < f` after a table-period lookup, each pair of `l != l2` over a claim's lines)."""
        self._activate()
        clause = _Clause()
        goals: list = []
        bound: set[str] = set()
        direct: _Direct | None = None
        i = 0
        while i < len(body):
            j, after = i, set(bound)
            while self.joins and j < len(body) and _fusable(body[j], after, self._lookups, body, head):
                after |= _binds(body[j])
                j += 1
            whole = i == 0 and j == len(body)
            if (j - i >= 2 or whole) and any(isinstance(lit, IAtom) and not lit.negated for lit in body[i:j]):
                join = self._join(clause, head, body, i, j, bound, goals)
                goals.append(join.literal)
                if whole:
                    direct = _Direct.of(head, join.join)
                bound, i = after, j
                continue
            lit = body[i]
            goals.extend(clause.literal(lit))
            bound |= _binds(lit)
            i += 1
        rule = pyEngine.Clause(clause.atom(head, goals), goals)
        pyEngine.assert_(rule)
        self._rules.setdefault(head.engine_name, []).append(rule)
        if direct is not None:
            self._direct[id(rule)] = direct
        return rule

    def _join(
        self, clause: _Clause, head: IAtom, body: Sequence[ILiteral], i: int, j: int, bound: set[str], goals: list
    ) -> _JoinLiteral:
        """One engine literal for body[i:j]: its arguments are the variables bound before the run
        that the run reads, then the ones the run binds that the head or a later literal reads."""
        run = body[i:j]
        used: list[str] = []
        for lit in run:
            for name in _literal_vars(lit):
                if name not in used:
                    used.append(name)
        later: set[str] = set(_term_vars(head.args))
        for lit in body[j:]:
            later.update(_literal_vars(lit))
        bound_by_run: set[str] = set()
        for lit in run:
            bound_by_run |= _binds(lit)
        inputs = [n for n in used if n in bound]
        outputs = [n for n in used if n not in bound and n in bound_by_run and n in later]
        names = inputs + outputs
        join = _Join(tuple(run), tuple(names), self._lookups)
        name = f"f{len(self._resolvers)}__join"
        key = f"{name}/{len(names)}"
        self._resolvers[key] = join.resolve
        if key not in pyEngine.Python_resolvers:
            pyEngine.Python_resolvers[key] = _dispatch(key)
        return _JoinLiteral(join, pyEngine.Literal(name, [clause.term(IVar(n), goals) for n in names]))

    def joined(self, rule: object) -> bool:
        """Whether the rule's whole body is one join in Python (asking it costs the join alone)."""
        return self.joins and id(rule) in self._direct

    def withdraw(self, rules: Iterable[object]) -> None:
        """Take rules out of the program until `restore` (an ask no longer tries them)."""
        self._activate()
        for rule in rules:
            pyEngine.retract(rule)
            self._off.add(id(rule))

    def restore(self, rules: Iterable[object]) -> None:
        self._activate()
        for rule in rules:
            pyEngine.assert_(rule)
            self._off.discard(id(rule))

    def add_resolver(
        self, engine_name: str, arity: int, resolver: Resolver, lookup: Lookup | None = None, *, exact: bool = False
    ) -> None:
        """Serve `engine_name` from Python: called with the bound argument positions. `lookup`,
        the same rows by (bound positions, their values), lets a join in Python read it (see
        add_rule); the join keeps only rows equal to the values asked, as the engine does,
        unless `exact` says the lookup already does (a Python index, not SQLite's equality)."""

        def resolve(*terms):
            bound = {i: t.id for i, t in enumerate(terms) if t.is_const()}
            return resolver(bound)

        key = f"{engine_name}/{arity}"
        self._resolvers[key] = resolve
        if key not in pyEngine.Python_resolvers:
            pyEngine.Python_resolvers[key] = _dispatch(key)
        if lookup is not None:
            self._lookups[engine_name] = (lookup, exact)

    def add_table(self, engine_name: str, arity: int) -> Table:
        """Serve `engine_name` from rows held in Python (see Table) instead of asserted facts."""
        table = self._tables[engine_name] = Table()
        key = f"{engine_name}/{arity}"
        self._resolvers[key] = table.resolve
        if key not in pyEngine.Python_resolvers:
            pyEngine.Python_resolvers[key] = _dispatch(key)
        self._lookups[engine_name] = (table.lookup, True)
        return table

    def declare(self, engine_name: str, arity: int) -> None:
        """Make a fact relation known even while it holds no facts, so a negation over an
        empty relation is simply true instead of an 'undefined predicate' error."""
        self._activate()
        pyEngine.insert(pyEngine.Pred(engine_name, arity))

    # -- facts --------------------------------------------------------------------------

    def assert_fact(self, engine_name: str, values: tuple) -> object:
        self._activate()
        self._facts.add(engine_name)
        clause = pyEngine.Clause(pyEngine.Literal(engine_name, [pyEngine.Const(v) for v in values]), [])
        pyEngine.assert_(clause)
        return clause

    def retract(self, handles: Iterable[object]) -> None:
        self._activate()
        for clause in handles:
            pyEngine.retract(clause)

    # -- queries ------------------------------------------------------------------------

    def query(self, engine_name: str, args: Sequence[Value | None], *, ordered: bool = True) -> list[tuple]:
        """Answers to `engine_name(args)`, None meaning a free position; sorted (unless not
        `ordered`: distinct, in no particular order). A query with
        every position free, of a predicate whose rules in force are each one join in Python
        over relations already complete (claim facts, finished strata, stored and static
        lookups), is answered by those joins without the engine: the engine would only copy
        their rows into its answers, at ~10 us a row."""
        if self.joins and engine_name not in self._facts and all(a is None for a in args):
            rules = self._rules.get(engine_name)
            if rules is not None and all(id(r) in self._direct for r in rules):
                found: set[tuple] = set()
                for rule in rules:
                    if id(rule) not in self._off:
                        found.update(self._direct[id(rule)].rows())
                return semantics.sort_rows(found) if ordered and len(found) > 1 else list(found)
        self._activate()
        terms = [pyEngine.Var(f"Q{i}") if a is None else pyEngine.Const(a) for i, a in enumerate(args)]
        answers = pyEngine.Literal(engine_name, terms).ask()
        if not answers:
            return []
        if not args:
            return [()]
        rows = {tuple(ans) for ans in answers}
        return semantics.sort_rows(rows) if ordered else list(rows)

    def answerer(self, engine_name: str, arity: int) -> Callable[[], list[tuple]]:
        """`query(engine_name, [None] * arity, ordered=False)` as a function made once: for a
        predicate whose rules are each one join in Python it calls the joins of the rules in
        force directly (no checks per call); any other predicate is queried."""

        def ask() -> list[tuple]:
            return self.query(engine_name, [None] * arity, ordered=False)

        rules = self._rules.get(engine_name)
        if not self.joins or not rules or not all(id(r) in self._direct for r in rules):
            return ask
        directs = [(id(r), self._direct[id(r)]) for r in rules]
        off, facts, count = self._off, self._facts, len(rules)

        def answer() -> list[tuple]:
            if engine_name in facts or len(rules) != count:
                return ask()  # facts asserted, or rules added, since: as `query` does
            if count == 1:
                key, direct = directs[0]
                if key in off:
                    return []
                rows = direct.rows()  # distinct already where the head is the join's row (see _Direct)
                return rows if direct.same else list(set(rows))
            found: set[tuple] = set()
            for key, direct in directs:
                if key not in off:
                    found.update(direct.rows())
            return list(found)

        return answer

    def close(self) -> None:
        self._resolvers.clear()


class Table:
    """A relation whose rows are complete before any rule reading it is asked (the claim's facts,
    a finished stratum): served to the engine by a resolver over Python indexes instead of
    asserted as facts. An asserted fact costs pyDatalog an assert and a retract (~10 us each) and,
    every time a literal reads it, a renamed clause, a unification and a scheduled task; a
    resolver's row goes straight to the subgoal's answers. A join in Python (add_rule) reads
    the values themselves (`lookup`)."""

    __slots__ = ("_consts", "_index", "_rows", "_values")

    def __init__(self) -> None:
        self._rows: list[tuple] = []  # rows of values
        self._consts: list[tuple] | None = []  # the rows as engine constants (built on first use)
        self._index: dict[tuple[int, ...], dict[tuple, list[tuple]]] = {}  # bound positions -> values -> rows
        self._values: dict[tuple[int, ...], dict[tuple, list[tuple]]] = {}  # the same for `lookup`

    def set(self, rows: Iterable[tuple]) -> None:
        """Make the relation exactly `rows` (distinct rows of values)."""
        self._rows = rows if isinstance(rows, list) else list(rows)
        self._consts = None
        self._index = {}
        self._values = {}

    def _const_rows(self) -> list[tuple]:
        """The rows as engine constants. Equal values share one engine constant: pyDatalog tests
        a variable that occurs twice in a literal, `m(L, L)`, by comparing the constants
        themselves, so two Const(1) objects would never match."""
        rows = self._consts
        if rows is None:
            const = pyEngine.Const
            consts: dict[tuple[type, Value], object] = {}

            def one(v: Value) -> object:
                key = (v.__class__, v)
                c = consts.get(key)
                if c is None:
                    c = consts[key] = const(v)
                return c

            rows = self._consts = [tuple(one(v) for v in row) for row in self._rows]
        return rows

    def _by(self, pattern: tuple[int, ...]) -> dict[tuple, list[tuple]]:
        """The engine rows by their values at `pattern` (built on first use after each `set`)."""
        index = self._index.get(pattern)
        if index is None:
            index = self._index[pattern] = {}
            for row in self._const_rows():
                index.setdefault(tuple(row[i].id for i in pattern), []).append(row)
        return index

    def lookup(self, pattern: tuple[int, ...], key: tuple) -> Sequence[tuple]:
        """The rows (of values) holding `key` at the positions `pattern`."""
        if not pattern:
            return self._rows
        index = self._values.get(pattern)
        if index is None:
            index = self._values[pattern] = {}
            if len(pattern) == 1:
                (p,) = pattern
                for row in self._rows:
                    index.setdefault((row[p],), []).append(row)
            else:
                for row in self._rows:
                    index.setdefault(tuple(row[i] for i in pattern), []).append(row)
        return index.get(key, ())

    def has(self, pattern: tuple[int, ...], key: tuple) -> bool:
        """Whether some row holds the values `key` at the positions `pattern`."""
        return bool(self.lookup(pattern, key)) if pattern else bool(self._rows)

    def resolve(self, *terms) -> Sequence[tuple]:
        const = pyEngine.Const
        pattern = tuple(i for i, t in enumerate(terms) if isinstance(t, const))
        if not pattern:
            return self._const_rows()
        return self._by(pattern).get(tuple(terms[i].id for i in pattern), ())


def _term_vars(terms: Iterable[ITerm]) -> list[str]:
    out: list[str] = []
    for t in terms:
        if isinstance(t, IVar):
            out.append(t.name)
        elif isinstance(t, IOp):
            out += _term_vars((t.left, t.right))
    return out


def _literal_vars(lit: ILiteral) -> list[str]:
    if isinstance(lit, IAtom):
        return _term_vars(lit.args)
    if isinstance(lit, IMatch):
        return _term_vars((lit.pattern, lit.value))
    return _term_vars((lit.left, lit.right))


def _fusable(
    lit: ILiteral, bound: set[str], lookups: Mapping[str, object], body: Sequence[ILiteral], head: IAtom
) -> bool:
    """Whether a join in Python can take `lit` with the variables `bound` before it: a lookup of
    a relation served from Python whose arithmetic arguments are bound; a negated one whose
    other variables occur once, nowhere else in the rule (no row may match its bound values); a
    test of bound values; an assignment of a bound value."""
    if isinstance(lit, IAtom):
        if lit.engine_name not in lookups:
            return False
        if not all(set(_term_vars((t,))) <= bound for t in lit.args if isinstance(t, IOp)):
            return False
        if not lit.negated:
            return True
        free = [t.name for t in lit.args if isinstance(t, IVar) and t.name not in bound]
        if len(free) != len(set(free)):
            return False
        elsewhere = set(_term_vars(head.args))
        for other in body:
            if other is not lit:
                elsewhere.update(_literal_vars(other))
        return not (set(free) & elsewhere)
    if isinstance(lit, ICompare) and lit.assigns:
        return isinstance(lit.left, IVar) and lit.left.name not in bound and set(_term_vars((lit.right,))) <= bound
    return set(_literal_vars(lit)) <= bound


def _binds(lit: ILiteral) -> set[str]:
    if isinstance(lit, IAtom) and not lit.negated:
        return {t.name for t in lit.args if isinstance(t, IVar)}
    if isinstance(lit, ICompare) and lit.assigns and isinstance(lit.left, IVar):
        return {lit.left.name}
    return set()


Env = list  # a join's variable values by slot
Step = Callable[[Env], None]


class _Join:
    """A run of body literals answered in Python, depth first, literal by literal as the engine
    would (the same lookups, engine.semantics for tests, arithmetic and `match`): one engine
    subgoal instead of one per literal and binding. Its arguments are `names`; each distinct
    pattern of bound arguments it is asked with gets a plan of its own."""

    def __init__(self, run: tuple[ILiteral, ...], names: tuple[str, ...], lookups: Mapping[str, tuple[Lookup, bool]]):
        self.run = run
        self.names = names
        self.lookups = lookups
        self._plans: dict[tuple[bool, ...], _Plan] = {}
        self._free: _Plan | None = None  # the plan with no argument given (see `rows`)
        # the variables some literal or argument reads: one occurring once is never bound
        counts: dict[str, int] = {}
        for lit in run:
            for name in set(_literal_vars(lit)):
                counts[name] = counts.get(name, 0) + 1
        self._read = {name for name, n in counts.items() if n > 1} | set(names)

    def resolve(self, *args) -> list[tuple]:
        const = pyEngine.Const
        mask = tuple(isinstance(a, const) for a in args)
        plan = self._plans.get(mask)
        if plan is None:
            plan = self._plans[mask] = self._plan(mask)
        first, given, slots, size = plan
        env: Env = [None] * size
        for i in given:
            env[slots[i]] = args[i].id
        out: set[tuple] = set()
        env[-1] = out
        first(env)
        return list(out)

    def rows(self) -> list[tuple]:
        """The join's rows (of values) with no argument given."""
        plan = self._free
        if plan is None:
            mask = (False,) * len(self.names)
            plan = self._plans.get(mask)
            if plan is None:
                plan = self._plans[mask] = self._plan(mask)
            self._free = plan
        env: Env = [None] * plan.size
        out: set[tuple] = set()
        env[-1] = out
        plan.first(env)
        return list(out)

    def _plan(self, mask: tuple[bool, ...]) -> _Plan:
        slot: dict[str, int] = {}

        def slot_of(name: str) -> int:
            s = slot.get(name)
            if s is None:
                s = slot[name] = len(slot)
            return s

        bound: set[str] = set()
        for name, is_given in zip(self.names, mask, strict=True):
            slot_of(name)
            if is_given:
                bound.add(name)
        makers: list[Callable[[Step], Step]] = []
        for lit in self.run:
            makers.append(self._step(lit, bound, slot_of))
            bound |= _binds(lit)
        # the rows found go to a set in the environment's last slot (a join asked again while
        # it runs, through a static relation the engine derives, gets an environment of its own)
        found = len(slot)
        width = len(self.names)
        out_slots = [slot[n] for n in self.names]
        if width == 0:

            def emit(env: Env) -> None:
                env[found].add(())
        elif width == 1:
            (s0,) = out_slots

            def emit(env: Env) -> None:
                env[found].add((env[s0],))
        else:

            def emit(env: Env) -> None:
                env[found].add(tuple([env[s] for s in out_slots]))

        step: Step = emit
        for make in reversed(makers):
            step = make(step)
        given = [i for i, g in enumerate(mask) if g]
        return _Plan(step, given, [slot[n] for n in self.names], found + 1)

    def _step(self, lit: ILiteral, bound: set[str], slot_of: Callable[[str], int]) -> Callable[[Step], Step]:
        if isinstance(lit, IAtom):
            return self._atom(lit, bound, slot_of)
        if isinstance(lit, ICompare) and lit.assigns:
            assert isinstance(lit.left, IVar)
            right = _getter(lit.right, bound, slot_of)
            target = slot_of(lit.left.name)
            if lit.left.name in bound:  # bound already (an argument given): the engine's == tests it

                def make_test(nxt: Step) -> Step:
                    def step(env: Env) -> None:
                        v = right(env)
                        if v is not None and env[target] == v:
                            nxt(env)

                    return step

                return make_test

            def make_assign(nxt: Step) -> Step:
                def step(env: Env) -> None:
                    v = right(env)
                    if v is not None:
                        env[target] = v
                        nxt(env)

                return step

            return make_assign
        if isinstance(lit, IMatch):
            pattern, value, negated = (
                _getter(lit.pattern, bound, slot_of),
                _getter(lit.value, bound, slot_of),
                lit.negated,
            )
            matches = semantics.matches

            def make_match(nxt: Step) -> Step:
                def step(env: Env) -> None:
                    p, v = pattern(env), value(env)
                    if p is not None and v is not None and matches(p, v) != negated:
                        nxt(env)

                return step

            return make_match
        assert isinstance(lit, ICompare)
        left, right, op = _getter(lit.left, bound, slot_of), _getter(lit.right, bound, slot_of), lit.op
        compare = semantics.compare

        def make_compare(nxt: Step) -> Step:
            def step(env: Env) -> None:
                a, b = left(env), right(env)
                if a is not None and b is not None and compare(a, op, b):
                    nxt(env)

            return step

        return make_compare

    def _atom(self, lit: IAtom, bound: set[str], slot_of: Callable[[str], int]) -> Callable[[Step], Step]:
        lookup, exact = self.lookups[lit.engine_name]
        pattern: list[int] = []
        keys: list[Callable[[Env], Value | None]] = []
        arith = False
        binds: list[tuple[int, int]] = []  # (position, slot) of a first free occurrence
        same: list[tuple[int, int]] = []  # (position, earlier position) of a repeated free variable
        first: dict[str, int] = {}
        for p, t in enumerate(lit.args):
            if isinstance(t, IVar) and t.name not in bound:
                if t.name in first:
                    same.append((p, first[t.name]))
                else:
                    first[t.name] = p
                    if not lit.negated and t.name in self._read:
                        binds.append((p, slot_of(t.name)))
                continue
            arith = arith or isinstance(t, IOp)
            pattern.append(p)
            keys.append(_getter(t, bound, slot_of))
        at = tuple(pattern)
        checks = () if exact else tuple(enumerate(at))
        if len(keys) == 1 and not arith:
            only = keys[0]

            def key_of(env: Env) -> tuple | None:
                return (only(env),)
        else:

            def key_of(env: Env) -> tuple | None:
                key = tuple([k(env) for k in keys])
                return None if arith and None in key else key

        def ok(row: tuple, key: tuple) -> bool:
            for j, p in checks:
                if row[p] != key[j]:
                    return False
            return all(row[p] == row[q] for p, q in same)

        plain = not checks and not same
        if lit.negated:

            def make_absent(nxt: Step) -> Step:
                def step(env: Env) -> None:
                    key = key_of(env)
                    if key is None:
                        return  # arithmetic the engine cannot compute fails the body
                    rows = lookup(at, key)
                    if plain:
                        if not rows:
                            nxt(env)
                    elif not any(ok(row, key) for row in rows):
                        nxt(env)

                return step

            return make_absent

        def make_rows(nxt: Step) -> Step:
            if plain and len(binds) == 1:
                ((p0, s0),) = binds

                def step1(env: Env) -> None:
                    key = key_of(env)
                    if key is None:
                        return
                    for row in lookup(at, key):
                        env[s0] = row[p0]
                        nxt(env)

                return step1

            if plain and len(binds) == 2:
                ((p0, s0), (p1, s1)) = binds

                def step2(env: Env) -> None:
                    key = key_of(env)
                    if key is None:
                        return
                    for row in lookup(at, key):
                        env[s0] = row[p0]
                        env[s1] = row[p1]
                        nxt(env)

                return step2

            def step(env: Env) -> None:
                key = key_of(env)
                if key is None:
                    return
                for row in lookup(at, key):
                    if plain or ok(row, key):
                        for p, s in binds:
                            env[s] = row[p]
                        nxt(env)

            return step

        return make_rows


class _JoinLiteral(NamedTuple):
    join: _Join
    literal: object  # the engine literal the join serves


class _Direct:
    """A rule whose whole body is one join: its head rows straight from the join's rows."""

    __slots__ = ("head", "join", "same")

    def __init__(self, join: _Join, head: list[tuple[int, Value]]) -> None:
        self.join = join
        self.head = head  # per head position: (index in the join's row, or -1 for the constant)
        self.same = [at for at, _v in head] == list(range(len(join.names)))

    @classmethod
    def of(cls, head: IAtom, join: _Join) -> _Direct | None:
        parts: list[tuple[int, Value]] = []
        for t in head.args:
            if isinstance(t, IVar) and t.name in join.names:
                parts.append((join.names.index(t.name), ""))
            elif isinstance(t, IConst):
                parts.append((-1, t.value))
            else:
                return None
        return cls(join, parts)

    def rows(self) -> list[tuple]:
        found = self.join.rows()
        if self.same:
            return found
        head = self.head
        return [tuple([row[at] if at >= 0 else v for at, v in head]) for row in found]


class _Plan(NamedTuple):
    first: Step
    given: list[int]  # positions of the join's arguments given bound
    slots: list[int]  # each argument's slot
    size: int  # slots of the environment (the variables, then the rows found)


def _getter(t: ITerm, bound: set[str], slot_of: Callable[[str], int]) -> Callable[[Env], Value | None]:
    """The value of `t` in a join's environment (None: arithmetic the engine cannot compute)."""
    if isinstance(t, IConst):
        value = t.value
        return lambda _env: value
    if isinstance(t, IVar):
        if t.name not in bound:
            raise pyEngine.util.DatalogError(f"a test in a Python join reached unbound variable {t.name}", None, None)
        s = slot_of(t.name)
        return lambda env: env[s]
    assert isinstance(t, IOp)
    left, right, op = _getter(t.left, bound, slot_of), _getter(t.right, bound, slot_of), t.op
    arith = semantics.arith

    def value_of(env: Env) -> Value | None:
        a, b = left(env), right(env)
        return None if a is None or b is None else arith(op, a, b)

    return value_of


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
