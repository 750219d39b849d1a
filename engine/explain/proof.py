"""Proof trees, rebuilt after evaluation (pyDatalog keeps no provenance).

A derived fact is proved by finding a rule whose head matches it and a solution of the rule's
body: each body literal is re-asked with the bindings found so far, against the evaluation's
materialised relations, the store (stored facts with their file and row) and the engine (static
relations). Candidates are tried in sorted order, so the same input gives the same proof.
The same matcher answers "why not": the first body condition that no binding gets past.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from engine import semantics
from engine.compiler import CompiledProgram
from engine.evaluate import Evaluator, Model
from engine.ir import CompiledRule, IAtom, ICompare, IConst, ILiteral, IMatch, ITerm, IVar, RelKind, Value
from engine.program import Program
from engine.store import RowSource
from engine.syntax import nodes as A

Binding = dict[str, Value]
MAX_DEPTH = 14


# How a reader names each kind of proof step, in every rendering (text, site, service).
KIND_LABELS = {
    "rule": "by rule",
    "claim": "claim",
    "table": "table",
    "kb_fact": "KB fact",
    "absent": "absent",
    "comparison": "check",
    "match": "check",
    "aggregate": "total",
    "static": "derived table",
}


@dataclass
class ProofNode:
    """One step of a proof; `kind` says what justifies `fact`."""

    kind: str  # rule | claim | table | kb_fact | absent | comparison | match | aggregate | static
    fact: str
    relation: str | None = None
    rule: str | None = None
    source: dict[str, object] | None = None
    bindings: dict[str, Value] | None = None
    holds: bool = True
    note: str | None = None
    children: list[ProofNode] = field(default_factory=list)
    # The fact's values (None where an absent fact leaves a position open), for the
    # explanations built from the tree (engine/explain/because.py); not part of the JSON.
    row: tuple[Value | None, ...] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"kind": self.kind, "fact": self.fact}
        for key in ("relation", "rule", "source", "bindings", "note"):
            val = getattr(self, key)
            if val is not None:
                d[key] = val
        d["holds"] = self.holds
        if self.children:
            d["children"] = [c.to_dict() for c in self.children]
        return d


@dataclass
class Step:
    """How one body literal was satisfied in a solution."""

    literal: ILiteral
    row: tuple | None = None
    source: RowSource | None = None


@dataclass
class WhyNot:
    rule: str
    fired: bool
    failed_literal: str | None = None
    explanation: str = ""
    bindings: dict[str, Value] = field(default_factory=dict)
    index: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "fired": self.fired,
            "failed_condition": self.failed_literal,
            "condition_index": self.index,
            "explanation": self.explanation,
            "bindings": self.bindings,
        }


class Prover:
    """Rebuilds proofs over one evaluation."""

    def __init__(
        self,
        program: Program,
        cp: CompiledProgram,
        evaluator: Evaluator,
        model: Model,
        claim_origin: Callable[[str, tuple], str | None],
    ):
        self.program = program
        self.cp = cp
        self.evaluator = evaluator
        self.model = model
        self.claim_origin = claim_origin
        # (relation, bound positions) -> values there -> the model's matching rows (see candidates)
        self._index: dict[tuple[str, tuple[int, ...]], dict[tuple, list[tuple[tuple, RowSource | None]]]] = {}
        # stored and static lookups by their arguments (a proof asks the same ones again and again)
        self._lookups: dict[tuple[str, tuple[Value | None, ...]], list[tuple[tuple, RowSource | None]]] = {}
        # a derived fact's first derivation (rule, solution, steps), or None: what `prove` expands
        self._derivations: dict[tuple[str, tuple], tuple[CompiledRule, Binding, list[Step]] | None] = {}
        # the proof of a claim or stored fact (a leaf: the same wherever it occurs)
        self._leaves: dict[tuple[str, tuple], ProofNode] = {}
        # the first solution `solutions` found for a rule and head, for `prove_with`
        self._first: dict[tuple[int, tuple], tuple[Binding, list[Step]] | None] = {}

    # -- candidates ------------------------------------------------------------------------

    def candidates(self, rel: str, args: tuple[Value | None, ...]) -> list[tuple[tuple, RowSource | None]]:
        kind = self.cp.kinds.get(rel)
        if kind in (RelKind.STORED, RelKind.STATIC):
            found = self._lookups.get((rel, args))
            if found is None:
                found = self._lookups[(rel, args)] = [(row, src) for src, row in self.evaluator.lookup(rel, args)]
            return found
        bound = tuple([i for i, a in enumerate(args) if a is not None])
        if not bound:
            return [(r, None) for r in self.model.rows(rel)]
        index = self._index.get((rel, bound))
        if index is None:  # the model's rows by the values at these positions, in row order
            index = self._index[(rel, bound)] = {}
            if len(bound) == 1:
                (p,) = bound
                for r in self.model.rows(rel):
                    index.setdefault((r[p],), []).append((r, None))
            else:
                for r in self.model.rows(rel):
                    index.setdefault(tuple([r[i] for i in bound]), []).append((r, None))
        return index.get(tuple([args[i] for i in bound]), [])

    # -- solving --------------------------------------------------------------------------

    def solve(
        self,
        body: tuple[ILiteral, ...],
        binding: Binding,
        i: int = 0,
        trace: list[Step] | None = None,
        progress: list | None = None,
    ) -> Iterator[tuple[Binding, list[Step]]]:
        """Every solution of body[i:], depth first, in sorted candidate order. `progress`, when
        given, records the furthest literal reached and the binding there (for why-not)."""
        trace = trace or []
        if progress is not None and i >= progress[0] and (i > progress[0] or progress[1] is None):
            progress[0], progress[1] = i, dict(binding)
        if i == len(body):
            yield binding, trace
            return
        lit = body[i]
        if isinstance(lit, IAtom):
            args = _values(lit.args, binding)
            found = self.candidates(lit.relation, args)
            if lit.negated:
                if not found:
                    yield from self.solve(body, binding, i + 1, [*trace, Step(lit)], progress)
                elif progress is not None and progress[0] == i:
                    progress[2] = found[0][0]
                return
            for row, src in found:
                b2 = _unify(lit.args, row, binding)
                if b2 is not None:
                    yield from self.solve(body, b2, i + 1, [*trace, Step(lit, row, src)], progress)
            return
        if isinstance(lit, ICompare):
            if lit.assigns:
                assert isinstance(lit.left, IVar)
                val = _eval(lit.right, binding)
                if val is None:
                    return
                b2 = dict(binding)
                b2[lit.left.name] = val
                yield from self.solve(body, b2, i + 1, [*trace, Step(lit)], progress)
                return
            left, right = _eval(lit.left, binding), _eval(lit.right, binding)
            if left is not None and right is not None and semantics.compare(left, lit.op, right):
                yield from self.solve(body, binding, i + 1, [*trace, Step(lit)], progress)
            return
        assert isinstance(lit, IMatch)
        pat, val = _eval(lit.pattern, binding), _eval(lit.value, binding)
        ok = pat is not None and val is not None and semantics.matches(pat, val)
        if ok != lit.negated:
            yield from self.solve(body, binding, i + 1, [*trace, Step(lit)], progress)

    # -- proofs ---------------------------------------------------------------------------

    def prove(self, rel: str, row: tuple, depth: int = 0, seen: frozenset = frozenset()) -> ProofNode:
        kind = self.cp.kinds.get(rel)
        if kind in (RelKind.CLAIM, RelKind.FACTS, RelKind.STORED):
            leaf = self._leaves.get((rel, row))
            if leaf is None:
                leaf = self._leaves[(rel, row)] = self._leaf(rel, row, kind)
            return leaf
        if kind is RelKind.AGGREGATE:
            return self._prove_aggregate(rel, row, depth, seen)
        if depth >= MAX_DEPTH or (rel, row) in seen:
            return ProofNode("rule", render_atom(rel, row), rel, note="derived (shown above or too deep to expand)")
        seen = seen | {(rel, row)}
        derivation = self._derivation(rel, row)
        if derivation is not None:
            crule, sol, steps = derivation
            return self._rule_node(crule, rel, row, sol, steps, depth, seen)
        return ProofNode("rule", render_atom(rel, row), rel, holds=False, note="no derivation found")

    def _leaf(self, rel: str, row: tuple, kind: RelKind) -> ProofNode:
        """A claim fact with the field it comes from, or a stored fact with its file and row."""
        fact = render_atom(rel, row)
        if kind is not RelKind.STORED:
            origin = self.claim_origin(rel, row)
            return ProofNode("claim", fact, rel, source={"claim_field": origin} if origin else None, row=tuple(row))
        found = self.evaluator.lookup(rel, tuple(row))
        src = found[0][0] if found else None
        node_kind = "table" if src is not None and src.table_row is not None else "kb_fact"
        return ProofNode(node_kind, fact, rel, source=src.to_dict() if src else None, row=tuple(row))

    def _derivation(self, rel: str, row: tuple) -> tuple[CompiledRule, Binding, list[Step]] | None:
        """The first solution of the first rule that derives `row` (the same wherever the fact
        recurs in proofs over this evaluation, so it is found once)."""
        key = (rel, row)
        if key in self._derivations:
            return self._derivations[key]
        found = None
        for crule in self.cp.rules_for(rel):
            binding = _unify(crule.head.args, row, {})
            if binding is None:
                continue
            first = self._first_solution(crule.body, binding, 0, [])
            if first is not None:
                found = (crule, *first)
                break
        self._derivations[key] = found
        return found

    def _first_solution(
        self, body: tuple[ILiteral, ...], binding: Binding, i: int, trace: list[Step]
    ) -> tuple[Binding, list[Step]] | None:
        """`solve`'s first solution of body[i:] (None: there is none), found without a chain of
        generators: the same candidates in the same order, the steps kept on one list (`trace`,
        left as it was given) and copied once, at the solution."""
        if i == len(body):
            return binding, list(trace)
        lit = body[i]
        if isinstance(lit, IAtom):
            args = _values(lit.args, binding)
            found = self.candidates(lit.relation, args)
            if lit.negated:
                if found:
                    return None
                trace.append(Step(lit))
                out = self._first_solution(body, binding, i + 1, trace)
                trace.pop()
                return out
            for row, src in found:
                b2 = _unify(lit.args, row, binding)
                if b2 is not None:
                    trace.append(Step(lit, row, src))
                    out = self._first_solution(body, b2, i + 1, trace)
                    trace.pop()
                    if out is not None:
                        return out
            return None
        if isinstance(lit, ICompare):
            if lit.assigns:
                assert isinstance(lit.left, IVar)
                val = _eval(lit.right, binding)
                if val is None:
                    return None
                b2 = dict(binding)
                b2[lit.left.name] = val
                binding = b2
            else:
                left, right = _eval(lit.left, binding), _eval(lit.right, binding)
                if left is None or right is None or not semantics.compare(left, lit.op, right):
                    return None
        else:
            assert isinstance(lit, IMatch)
            pat, val = _eval(lit.pattern, binding), _eval(lit.value, binding)
            ok = pat is not None and val is not None and semantics.matches(pat, val)
            if ok == lit.negated:
                return None
        trace.append(Step(lit))
        out = self._first_solution(body, binding, i + 1, trace)
        trace.pop()
        return out

    def _rule_node(
        self, crule: CompiledRule, rel: str, row: tuple, sol: Binding, steps: list[Step], depth: int, seen: frozenset
    ) -> ProofNode:
        src_rule = self.program.rules[crule.source_index] if crule.source_index is not None else None
        if crule.aux == "facts":  # a relation's own facts, read through its hidden facts relation
            step = steps[0]
            return self.prove(self.cp.fact_relations[rel], step.row or row, depth, seen)
        children = [self._step_node(step, sol, depth, seen) for step in steps]
        if crule.aux:
            return ProofNode("rule", render_atom(rel, row), rel, children=children, note=f"auxiliary ({crule.aux})")
        source = {"file": src_rule.loc.path, "line": src_rule.loc.line} if src_rule else None
        bindings = {k: v for k, v in sorted(sol.items()) if k[:1] != "_"}  # (nor "__": hidden variables)
        return ProofNode(
            "rule",
            render_atom(rel, row),
            rel,
            rule=src_rule.rule_id if src_rule else None,
            source=source,
            bindings=bindings,
            children=children,
        )

    def _step_node(self, step: Step, sol: Binding, depth: int, seen: frozenset) -> ProofNode:
        lit = step.literal
        if isinstance(lit, IAtom):
            aux = self.cp.aux_literals.get(lit.relation)
            if lit.negated:
                if isinstance(aux, A.Atom):
                    shown = render_source_literal(aux, sol)
                    values = tuple(_source_value(a, sol) for a in aux.args)
                else:
                    values = tuple(_value(t, sol) for t in lit.args)
                    shown = render_atom(lit.relation, values)
                return ProofNode(
                    "absent",
                    "!" + shown,
                    lit.relation if aux is None else aux.pred,  # type: ignore[union-attr]
                    note="no such fact: the negated condition holds",
                    row=values,
                )
            assert step.row is not None
            return self.prove(lit.relation, step.row, depth + 1, seen)
        if isinstance(lit, ICompare):
            left, right = _eval(lit.left, sol), _eval(lit.right, sol)
            if lit.assigns:
                shown = f"{_render_term(lit.left, {})} = {_render_term(lit.right, sol)}"
                if not isinstance(lit.right, IConst):
                    shown += f" = {_fmt(left)}"
                return ProofNode("comparison", shown)
            return ProofNode(
                "comparison",
                f"{_fmt(left)} {lit.op} {_fmt(right)}",
                note=f"{_render_term(lit.left, {})} {lit.op} {_render_term(lit.right, {})}",
            )
        assert isinstance(lit, IMatch)
        val = _eval(lit.value, sol)
        return ProofNode("match", f"{'!' if lit.negated else ''}match({_fmt(_eval(lit.pattern, sol))}, {_fmt(val)})")

    def _prove_aggregate(self, rel: str, row: tuple, depth: int, seen: frozenset) -> ProofNode:
        spec = self.cp.aggregates[rel]
        agg = self.cp.aux_literals.get(rel)
        group = row[: spec.group_arity]
        members = [m for m in self.model.rows(spec.body_relation) if m[: spec.group_arity] == group]
        children = [self.prove(spec.body_relation, m, depth + 1, seen) for m in members]
        # the members' own proofs are the contributing facts; lift them one level for readability
        lifted = [gc for c in children for gc in (c.children or [c])]
        text = f"{spec.func} = {_fmt(row[-1])}"
        if isinstance(agg, A.Aggregate):
            text = f"{agg.func}{' ' + str(agg.target) if agg.target is not None else ''} : {{ {', '.join(str(b) for b in agg.body)} }} = {_fmt(row[-1])}"
        return ProofNode("aggregate", text, rel, note=f"over {len(members)} contributing fact(s)", children=lifted)

    def solutions(self, crule: CompiledRule, head: tuple, limit: int) -> list[dict[str, Value]]:
        """The bindings of the rule's first solutions for this head (distinct), without proofs."""
        binding = _unify(crule.head.args, head, {})
        if binding is None:
            return []
        out: list[dict[str, Value]] = []
        first = (crule.index, tuple(head))
        for sol, steps in self.solve(crule.body, binding):
            if first not in self._first:
                self._first[first] = (sol, steps)
            named = {k: v for k, v in sorted(sol.items()) if not k.startswith("_")}
            if named not in out:
                out.append(named)
            if len(out) >= limit:
                break
        return out

    def prove_with(self, crule: CompiledRule, head: tuple) -> ProofNode | None:
        """The proof of `head` through this particular rule."""
        rel = crule.head.relation
        found = self._first.get((crule.index, tuple(head)))
        if found is not None:
            sol, steps = found
            return self._rule_node(crule, rel, head, sol, steps, 0, frozenset({(rel, head)}))
        binding = _unify(crule.head.args, head, {})
        if binding is None:
            return None
        for sol, steps in self.solve(crule.body, binding):
            return self._rule_node(crule, rel, head, sol, steps, 0, frozenset({(rel, head)}))
        return None

    # -- why not ---------------------------------------------------------------------------

    def why_not(self, rule_id: str, head_values: dict[int, Value]) -> WhyNot:
        """Why rule `rule_id` did not derive a head with these argument values (position -> value)."""
        crules = [
            c
            for c in self.cp.rules
            if c.source_index is not None and not c.aux and self.program.rules[c.source_index].rule_id == rule_id
        ]
        best: tuple[int, Binding, ILiteral | None, tuple | None, CompiledRule] | None = None
        for crule in crules:
            binding: Binding = {}
            ok = True
            for pos, val in head_values.items():
                term = crule.head.args[pos]
                if isinstance(term, IVar):
                    binding[term.name] = val
                elif isinstance(term, IConst) and term.value != val:
                    ok = False
            if not ok:
                continue
            progress: list = [0, None, None]
            for sol, _steps in self.solve(crule.body, binding, progress=progress):
                bindings = {k: v for k, v in sorted(sol.items()) if not k.startswith("_")}
                return WhyNot(rule_id, True, explanation="the rule fires for this line", bindings=bindings)
            idx = progress[0]
            lit = crule.body[idx] if idx < len(crule.body) else None
            if best is None or idx > best[0]:
                best = (idx, progress[1] or binding, lit, progress[2], crule)
        if best is None:
            return WhyNot(rule_id, False, explanation=f"no rule with id {rule_id} applies to these values")
        idx, b, lit, blocker, _crule = best
        text = self.render_literal(lit, b) if lit is not None else None
        return WhyNot(
            rule_id,
            False,
            text,
            self._explain_failure(lit, b, blocker),
            {k: v for k, v in sorted(b.items()) if not k.startswith("_")},
            idx,
        )

    def _explain_failure(self, lit: ILiteral | None, b: Binding, blocker: tuple | None) -> str:
        if lit is None:
            return "no condition failed"
        if isinstance(lit, IAtom):
            shown = self.render_literal(lit, b)
            if lit.negated:
                return f"the rule requires {shown}, but a matching fact exists" + (
                    f": {render_atom(self._display_relation(lit), blocker)}" if blocker else ""
                )
            return f"no {self._display_relation(lit)} fact matches {shown}"
        if isinstance(lit, ICompare):
            return f"the comparison {self.render_literal(lit, b)} is false"
        return f"the pattern test {self.render_literal(lit, b)} fails"

    def _display_relation(self, lit: IAtom) -> str:
        aux = self.cp.aux_literals.get(lit.relation)
        return aux.pred if isinstance(aux, A.Atom) else lit.relation

    def render_literal(self, lit: ILiteral, b: Binding) -> str:
        if isinstance(lit, IAtom):
            aux = self.cp.aux_literals.get(lit.relation)
            text = (
                render_source_literal(aux, b)
                if isinstance(aux, A.Atom)
                else f"{lit.relation}({', '.join(_render_term(t, b) for t in lit.args)})"
            )
            return ("!" if lit.negated else "") + text
        if isinstance(lit, ICompare):
            return f"{_render_term(lit.left, b)} {lit.op} {_render_term(lit.right, b)}"
        return f"{'!' if lit.negated else ''}match({_render_term(lit.pattern, b)}, {_render_term(lit.value, b)})"


# -- helpers ---------------------------------------------------------------------------------


def render_atom(rel: str, row: tuple) -> str:
    return f"{rel}({', '.join([_fmt(v) for v in row])})"


def render_source_literal(atom: A.Atom, b: Binding) -> str:
    parts = []
    for a in atom.args:
        if isinstance(a, A.Var):
            parts.append("_" if a.anonymous or a.name not in b else _fmt(b[a.name]))
        else:
            parts.append(str(a))
    return f"{atom.pred}({', '.join(parts)})"


def _source_value(a: A.Term, b: Binding) -> Value | None:
    if isinstance(a, A.Var):
        return None if a.anonymous else b.get(a.name)
    return a.value if isinstance(a, A.Const) else None


def _fmt(v: object) -> str:
    return _rendered(v) if isinstance(v, (str, int)) else str(v)


@functools.lru_cache(maxsize=1 << 14, typed=True)
def _rendered(v: Value) -> str:
    """A value as Datalog text (values recur across the facts of a proof and across claims)."""
    return A.render_value(v)


def _value(t: ITerm, b: Binding) -> Value | None:
    if isinstance(t, IConst):
        return t.value
    if isinstance(t, IVar):
        return b.get(t.name)
    return _eval(t, b)


def _values(args: tuple[ITerm, ...], b: Binding) -> tuple[Value | None, ...]:
    """`_value` of each argument (one call for the literal, not one per argument)."""
    out: list[Value | None] = []
    for t in args:
        if isinstance(t, IVar):
            out.append(b.get(t.name))
        elif isinstance(t, IConst):
            out.append(t.value)
        else:
            out.append(_eval(t, b))
    return tuple(out)


def _eval(t: ITerm, b: Binding) -> Value | None:
    if isinstance(t, IConst):
        return t.value
    if isinstance(t, IVar):
        return b.get(t.name)
    left, right = _eval(t.left, b), _eval(t.right, b)
    if left is None or right is None:
        return None
    return semantics.arith(t.op, left, right)


def _unify(args: tuple[ITerm, ...], row: tuple, binding: Binding) -> Binding | None:
    b = dict(binding)
    for t, v in zip(args, row, strict=False):
        if isinstance(t, IConst):
            if t.value != v or type(t.value) is not type(v):
                return None
        elif isinstance(t, IVar):
            if t.name in b:
                if b[t.name] != v:
                    return None
            else:
                b[t.name] = v
        else:
            if _eval(t, b) != v:
                return None
    return b


def _render_term(t: ITerm, b: Binding) -> str:
    if isinstance(t, IConst):
        return _fmt(t.value)
    if isinstance(t, IVar):
        if t.name in b:
            return _fmt(b[t.name])
        return "_" if t.name.startswith("_") and t.name[1:].isdigit() else t.name
    return f"({_render_term(t.left, b)} {t.op} {_render_term(t.right, b)})"
