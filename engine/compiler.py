"""Compile a checked Program into engine-ready rules.

Stages, in order (each a function below):
  1. classify   - which relations come from the claim, the store, or are derived (and which
                  derived ones depend on the claim, so must be recomputed per evaluation)
  2. rewrite    - aggregates and negations with `_` become auxiliary relations; expressions in
                  heads and atom arguments become assignments
  3. strata     - strongly connected components of the dynamic relations, in evaluation order
  4. order      - each body ordered so negations and comparisons run with their variables bound,
                  most selective lookups first (pyDatalog does no join reordering)
  5. indexes    - which argument positions each stored relation is looked up by
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

from engine import analysis
from engine.ir import AggregateSpec, CompiledRule, IAtom, ICompare, IConst, ILiteral, IMatch, IOp, ITerm, IVar, RelKind
from engine.program import Program
from engine.syntax import nodes as A


class CompileError(Exception):
    """A program that checks clean but cannot be evaluated (reported with a location)."""

    def __init__(self, message: str, loc: object):
        super().__init__(f"{loc}: {message}")
        self.loc = loc


@dataclass
class CompiledProgram:
    kinds: dict[str, RelKind]
    arity: dict[str, int]
    rules: list[CompiledRule]
    order: list[list[str]]  # dynamic / aggregate relations, SCCs in evaluation order
    aggregates: dict[str, AggregateSpec]
    patterns: dict[str, set[tuple[int, ...]]]  # stored relation -> lookup patterns
    strata: dict[str, int]  # every derived relation -> stratum number
    fact_relations: dict[str, str] = field(default_factory=dict)  # relation -> hidden facts relation
    aux_literals: dict[str, A.Literal] = field(default_factory=dict)  # auxiliary relation -> source literal
    # static relations (derived from stored data only), SCCs in evaluation order (see _static_order)
    static_order: list[list[str]] = field(default_factory=list)

    def engine_name(self, rel: str, *, materialised: bool) -> str:
        kind = self.kinds[rel]
        prefix = {
            RelKind.CLAIM: "c",
            RelKind.FACTS: "c",
            RelKind.STORED: "s",
            RelKind.STATIC: "x",
            RelKind.AGGREGATE: "m",
        }.get(kind)
        if kind is RelKind.DYNAMIC:
            prefix = "m" if materialised else "d"
        return f"{prefix}__{_safe(rel)}"

    def rules_for(self, rel: str) -> list[CompiledRule]:
        return [self.rules[i] for i in self._index.by_head.get(rel, ())]

    @functools.cached_property
    def _index(self) -> analysis.RuleIndex:
        return analysis.RuleIndex.of(r.head.relation for r in self.rules)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)


# --- stage 1 ---------------------------------------------------------------------------


def _classify(prog: Program, facts_are_dynamic: bool, dynamic_facts: set[str]) -> dict[str, RelKind]:
    idb = prog.idb()
    kinds: dict[str, RelKind] = {}
    for rel in prog.decls:
        if rel in prog.claim_relations:
            kinds[rel] = RelKind.CLAIM
        elif rel not in idb:
            kinds[rel] = RelKind.FACTS if (facts_are_dynamic or rel in dynamic_facts) else RelKind.STORED
    return kinds


# --- stage 2 ---------------------------------------------------------------------------


@dataclass
class _Rule:
    """A rule during rewriting: head and body as AST, plus provenance."""

    head: A.Atom
    body: list[A.Literal]
    source_index: int | None
    aux: str = ""


class _Rewriter:
    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.rules: list[_Rule] = []
        self.aggregates: dict[str, tuple[str, str, int, int | None]] = {}
        self.aux_arity: dict[str, int] = {}
        self.aux_literals: dict[str, A.Literal] = {}  # auxiliary relation -> the literal it stands for

    def fresh(self, loc: object, stem: str = "v") -> A.Var:
        return A.Var(f"__{stem}{next(self.counter)}", loc)  # type: ignore[arg-type]

    def flatten(self, atom: A.Atom, stem: str) -> tuple[A.Atom, list[A.Literal]]:
        """Replace each arithmetic argument by a fresh variable bound by an assignment."""
        extra: list[A.Literal] = []
        args: list[A.Term] = []
        for arg in atom.args:
            if isinstance(arg, A.BinOp):
                v = self.fresh(arg.loc, stem)
                extra.append(A.Comparison("=", v, arg, arg.loc))
                args.append(v)
            else:
                args.append(arg)
        return A.Atom(atom.pred, tuple(args), atom.loc), extra

    def rule(self, head: A.Atom, body: list[A.Literal], source_index: int | None, aux: str = "") -> None:
        head, extra = self.flatten(head, "h")
        outer_vars = {v.name for v in A.literal_vars(head)}
        for lit in body:
            if not isinstance(lit, A.Aggregate):
                outer_vars |= {v.name for v in A.literal_vars(lit)}
        new_body: list[A.Literal] = []
        for lit in body:
            new_body.extend(self.literal(lit, outer_vars, source_index))
        self.rules.append(_Rule(head, new_body + extra, source_index, aux))

    def literal(self, lit: A.Literal, outer_vars: set[str], source_index: int | None) -> list[A.Literal]:
        if isinstance(lit, A.Atom):
            return self.atom_args(lit)
        if isinstance(lit, A.Negation):
            named = _unique([v for v in A.literal_vars(lit) if not v.anonymous])
            if any(v.anonymous for v in A.literal_vars(lit)) or any(isinstance(a, A.BinOp) for a in lit.atom.args):
                aux = f"_neg{next(self.counter)}_{lit.atom.pred}"
                aux_head = A.Atom(aux, tuple(named), lit.loc)
                self.aux_arity[aux] = len(named)
                self.aux_literals[aux] = lit.atom
                self.rule(aux_head, [lit.atom], source_index, "negation")
                return [A.Negation(aux_head, lit.loc)]
            return [lit]
        if isinstance(lit, A.Aggregate):
            return self.aggregate(lit, outer_vars, source_index)
        return [lit]

    def atom_args(self, atom: A.Atom) -> list[A.Literal]:
        flat, extra = self.flatten(atom, "e")
        return [flat, *extra]

    def aggregate(self, agg: A.Aggregate, outer_vars: set[str], source_index: int | None) -> list[A.Literal]:
        inner_named = _unique([v for b in agg.body for v in A.literal_vars(b) if not v.anonymous])
        group = [v for v in inner_named if v.name in outer_vars]
        inner = [v for v in inner_named if v.name not in outer_vars]
        body = list(agg.body)
        target_pos: int | None = None
        if agg.target is not None:
            if isinstance(agg.target, A.Var):
                tv = agg.target
            else:
                tv = self.fresh(agg.loc, "t")
                body.append(A.Comparison("=", tv, agg.target, agg.loc))
                inner.append(tv)
            cols = group + inner
            target_pos = next(i for i, v in enumerate(cols) if v.name == tv.name)
        n = next(self.counter)
        body_rel = f"_agg{n}_body"
        result_rel = f"_agg{n}"
        cols = group + inner
        self.aux_arity[body_rel] = len(cols)
        self.aux_arity[result_rel] = len(group) + 1
        self.rule(A.Atom(body_rel, tuple(cols), agg.loc), body, source_index, "aggregate")
        self.aggregates[result_rel] = (body_rel, agg.func, len(group), target_pos)
        self.aux_literals[result_rel] = agg
        out: list[A.Literal] = []
        result = agg.result
        if not isinstance(result, A.Var):
            rv = self.fresh(agg.loc, "r")
            out.append(A.Comparison("=", result, rv, agg.loc))
            result = rv
        return [A.Atom(result_rel, (*group, result), agg.loc), *out]


def _unique(vs: list[A.Var]) -> list[A.Var]:
    seen: set[str] = set()
    out = []
    for v in vs:
        if v.name not in seen:
            seen.add(v.name)
            out.append(v)
    return out


# --- stages 3-5 ------------------------------------------------------------------------

# A recursive atom goes first: pyDatalog's tabling loops forever on right-recursive rules over
# cyclic data (measured: r(X,Y) :- edge(X,Z), r(Z,Y) on a 3-cycle never returns), while the
# left-recursive order terminates.
_COST_RECURSIVE, _COST_SMALL, _COST_STATIC_BOUND, _COST_STORED_BOUND = 0.8, 1, 4, 5
_COST_STATIC_FREE, _COST_STORED_FREE = 500, 1000


def compile_program(
    prog: Program, *, facts_are_dynamic: bool = False, dynamic_facts: set[str] | None = None
) -> CompiledProgram:
    """`facts_are_dynamic`: the program's facts are asserted per evaluation (conformance mode);
    otherwise they are stored and served by lookups, like the tables."""
    import networkx as nx  # here, not at import time: a KB opened from the cache compiles nothing

    kinds = _classify(prog, facts_are_dynamic, dynamic_facts or set())
    rw = _Rewriter()
    for i, r in enumerate(prog.rules):
        rw.rule(r.head, list(r.body), i)
    arity = {name: d.arity for name, d in prog.decls.items()} | rw.aux_arity
    fact_relations = _facts_of_derived(prog, rw, kinds, facts_are_dynamic, arity, dynamic_facts or set())

    derived = {r.head.pred for r in rw.rules} | set(rw.aggregates)
    graph = analysis.dependency_graph(((r.head.pred, r.body) for r in rw.rules), nodes=sorted(derived))
    for res, (body_rel, *_rest) in rw.aggregates.items():
        graph.add_edge(body_rel, res, negative=True, loc=None)

    source_kinds = {RelKind.CLAIM, RelKind.FACTS}
    dynamic: set[str] = set()
    roots = [n for n in graph.nodes if kinds.get(n) in source_kinds]
    for root in roots:
        dynamic |= nx.descendants(graph, root)
    for rel in derived:
        if rel in rw.aggregates:
            kinds[rel] = RelKind.AGGREGATE
        else:
            kinds[rel] = RelKind.DYNAMIC if rel in dynamic else RelKind.STATIC
    for res, (body_rel, *_r) in rw.aggregates.items():
        if kinds[body_rel] is not RelKind.DYNAMIC:
            raise CompileError("aggregates are supported over claim-dependent relations only", res)

    among_derived = graph.subgraph(derived)
    order = [
        members
        for members in analysis.ordered_components(among_derived)
        if any(kinds[m] in (RelKind.DYNAMIC, RelKind.AGGREGATE) for m in members)
    ]
    scc_of = {m: i for i, scc in enumerate(order) for m in scc}
    strata = analysis.strata(among_derived)

    cp = CompiledProgram(
        kinds=kinds,
        arity=arity,
        rules=[],
        order=order,
        aggregates={},
        patterns={},
        strata=strata,
        fact_relations=fact_relations,
        aux_literals=rw.aux_literals,
    )
    for res, (body_rel, func, g, tpos) in rw.aggregates.items():
        cp.aggregates[res] = AggregateSpec(res, body_rel, func, g, tpos)
    for planned in rw.rules:
        cp.rules.append(_plan(cp, planned, len(cp.rules), scc_of))
    cp.static_order = _static_order(cp)
    return cp


def _static_order(cp: CompiledProgram) -> list[list[str]]:
    """The static relations' SCCs in evaluation order, each after the static relations its rules
    read. Kept in the compiled program (and its cache) so that a batch backend, which computes
    them once per connection, does not have to build a graph, and import networkx, in every
    worker process (~80 ms of each worker's start)."""
    import networkx as nx  # here, not at import time: a KB opened from the cache builds no graph

    static = [rel for rel, k in cp.kinds.items() if k is RelKind.STATIC]
    edges = {
        (lit.relation, rule.head.relation)
        for rule in cp.rules
        if cp.kinds.get(rule.head.relation) is RelKind.STATIC
        for lit in rule.body
        if isinstance(lit, IAtom) and cp.kinds.get(lit.relation) is RelKind.STATIC
    }
    graph = nx.DiGraph()
    graph.add_nodes_from(static)
    graph.add_edges_from(edges)
    return analysis.ordered_components(graph)


def _facts_of_derived(
    prog: Program,
    rw: _Rewriter,
    kinds: dict[str, RelKind],
    facts_are_dynamic: bool,
    arity: dict[str, int],
    dynamic_facts: set[str],
) -> dict[str, str]:
    """A relation with both facts and rules reads its facts from a hidden relation."""
    idb = {r.head.pred for r in rw.rules}
    out = {}
    for rel in sorted(({f.atom.pred for f in prog.facts} | dynamic_facts) & idb):
        hidden = f"{rel}__facts"
        out[rel] = hidden
        kinds[hidden] = RelKind.FACTS if (facts_are_dynamic or rel in dynamic_facts) else RelKind.STORED
        arity[hidden] = arity[rel]
        loc = prog.decls[rel].loc
        vs = tuple(A.Var(f"__f{i}", loc) for i in range(arity[rel]))
        rw.rules.append(_Rule(A.Atom(rel, vs, loc), [A.Atom(hidden, vs, loc)], None, "facts"))
    return out


def _term(t: A.Term) -> ITerm:
    if isinstance(t, A.Var):
        return IVar(t.name)
    if isinstance(t, A.Const):
        return IConst(t.value)
    return IOp(t.op, _term(t.left), _term(t.right))


def _vars(t: ITerm) -> set[str]:
    if isinstance(t, IVar):
        return {t.name}
    if isinstance(t, IOp):
        return _vars(t.left) | _vars(t.right)
    return set()


def _plan(cp: CompiledProgram, r: _Rule, index: int, scc_of: dict[str, int]) -> CompiledRule:
    head_rel = r.head.pred
    head_scc = scc_of.get(head_rel)
    head = IAtom(head_rel, cp.engine_name(head_rel, materialised=False), tuple(_term(a) for a in r.head.args))
    remaining = list(r.body)
    bound: set[str] = set()
    ordered: list[ILiteral] = []
    # A static relation is asked with its head arguments bound (e.g. known_code("96372")), so
    # index its stored lookups for that call as well as for the all-free order used here.
    assume = {v.name for v in A.literal_vars(r.head)} if cp.kinds[head_rel] is RelKind.STATIC else set()

    def engine_name(rel: str) -> str:
        kind = cp.kinds[rel]
        if kind is RelKind.DYNAMIC:
            return cp.engine_name(rel, materialised=scc_of.get(rel) != head_scc)
        return cp.engine_name(rel, materialised=True)

    def cost(lit: A.Literal) -> float | None:
        """None when the literal cannot run yet; lower runs first."""
        if isinstance(lit, A.Negation):
            return 0 if _named(lit) <= bound else None
        if isinstance(lit, (A.Comparison, A.Match)):
            names = {v.name for v in A.literal_vars(lit)}
            if names <= bound:
                return 0
            if isinstance(lit, A.Comparison) and lit.op == "=" and _assignable(lit, bound):
                return 0.5
            return None
        assert isinstance(lit, A.Atom)
        kind = cp.kinds[lit.pred]
        nbound = sum(1 for a in lit.args if isinstance(a, A.Const) or (isinstance(a, A.Var) and a.name in bound))
        frac = nbound / max(len(lit.args), 1)
        base: float
        if kind is RelKind.STORED:
            base = _COST_STORED_BOUND if nbound else _COST_STORED_FREE
        elif kind is RelKind.STATIC:
            base = _COST_STATIC_BOUND if nbound else _COST_STATIC_FREE
        elif kind is RelKind.DYNAMIC and scc_of.get(lit.pred) == head_scc:
            base = _COST_RECURSIVE
        else:
            base = _COST_SMALL
        return base - frac

    while remaining:
        scored = [(c, i) for i, lit in enumerate(remaining) if (c := cost(lit)) is not None]
        if not scored:
            lit = remaining[0]
            raise CompileError(f"cannot order rule body: {lit} needs variables no atom binds", lit.loc)
        _c, i = min(scored)
        lit = remaining.pop(i)
        ordered.append(_to_ir(cp, lit, bound, engine_name, assume))
        bound |= {v.name for v in A.literal_vars(lit) if not isinstance(lit, A.Negation)}
    return CompiledRule(index, r.source_index, head, tuple(ordered), r.aux)


def _named(lit: A.Negation) -> set[str]:
    return {v.name for v in A.literal_vars(lit) if not v.anonymous}


def _assignable(lit: A.Comparison, bound: set[str]) -> bool:
    for a, b in ((lit.left, lit.right), (lit.right, lit.left)):
        if isinstance(a, A.Var) and a.name not in bound and {v.name for v in A.term_vars(b)} <= bound:
            return True
    return False


def _to_ir(cp: CompiledProgram, lit: A.Literal, bound: set[str], engine_name, assume: set[str]) -> ILiteral:
    if isinstance(lit, A.Atom):
        atom = IAtom(lit.pred, engine_name(lit.pred), tuple(_term(a) for a in lit.args))
        if cp.kinds[lit.pred] is RelKind.STORED:
            for known in (bound, bound | assume):
                pattern = tuple(
                    i
                    for i, a in enumerate(lit.args)
                    if isinstance(a, A.Const) or (isinstance(a, A.Var) and a.name in known)
                )
                cp.patterns.setdefault(lit.pred, set()).add(pattern)
        return atom
    if isinstance(lit, A.Negation):
        a = lit.atom
        if cp.kinds[a.pred] is RelKind.STORED:
            cp.patterns.setdefault(a.pred, set()).add(tuple(range(len(a.args))))
        return IAtom(a.pred, engine_name(a.pred), tuple(_term(x) for x in a.args), negated=True)
    if isinstance(lit, A.Match):
        return IMatch(_term(lit.pattern), _term(lit.value), lit.negated)
    assert isinstance(lit, A.Comparison)
    left, right = _term(lit.left), _term(lit.right)
    if lit.op == "=":
        if (
            isinstance(right, IVar)
            and right.name not in bound
            and not (isinstance(left, IVar) and left.name not in bound)
        ):
            left, right = right, left
        if isinstance(left, IVar) and left.name not in bound:
            return ICompare("=", left, right, assigns=True)
    return ICompare(lit.op, left, right)
