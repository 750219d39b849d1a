"""Program analysis, computed once: the dependency graph, its strongly connected components,
their evaluation order, strata, and an index of rules by head relation and by id.

The checker (stratification), the compiler (evaluation order and strata) and the docs (diagram
columns) all read these; none builds its own graph. A graph here is a networkx MultiDiGraph of
relations with an edge `body relation -> head relation` per use, whose data says whether the use
is `negative` (under `!` or inside an aggregate) and where it is (`loc`).

networkx is imported where a graph is built, not with the module: a KB opened from the
compiled cache builds none, and the import is about a fifth of `policykb explain`'s start.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.diagnostics import Location
from engine.syntax import nodes as A

if TYPE_CHECKING:
    import networkx as nx

Node = Hashable


def all_atoms(
    lits: Iterable[A.Literal], aggregate_negative: bool = False, negated: bool = False
) -> Iterable[tuple[A.Atom, bool]]:
    """Every atom in a body (recursing into aggregates), with whether it is negated; with
    `aggregate_negative`, atoms inside an aggregate count as negative (for stratification)."""
    for lit in lits:
        if isinstance(lit, A.Atom):
            yield lit, negated
        elif isinstance(lit, A.Negation):
            yield lit.atom, True
        elif isinstance(lit, A.Aggregate):
            yield from all_atoms(lit.body, aggregate_negative, negated or aggregate_negative)


def body_uses(body: Iterable[A.Literal], negative: bool = False) -> Iterator[tuple[str, bool, Location]]:
    """(relation, negative, where) for each relation a body reads. Uses inside an aggregate are
    negative: the aggregate needs the whole relation, like a negation does."""
    for lit in body:
        if isinstance(lit, A.Atom):
            yield lit.pred, negative, lit.loc
        elif isinstance(lit, A.Negation):
            yield lit.atom.pred, True, lit.loc
        elif isinstance(lit, A.Aggregate):
            yield from body_uses(lit.body, negative=True)


def dependency_graph(rules: Iterable[tuple[str, Sequence[A.Literal]]], nodes: Iterable[str] = ()) -> nx.MultiDiGraph:
    """The graph of `(head relation, body)` rules; `nodes` are added first (in their order), so
    relations no rule mentions are in the graph too."""
    import networkx as nx  # here, not at import time (see the module docstring)

    g = nx.MultiDiGraph()
    g.add_nodes_from(nodes)
    for head, body in rules:
        g.add_node(head)
        for rel, negative, loc in body_uses(body):
            g.add_edge(rel, head, negative=negative, loc=loc)
    return g


def program_graph(prog) -> nx.MultiDiGraph:
    """The dependency graph of a parsed program: every declared relation and every rule."""
    return dependency_graph(((r.head.pred, r.body) for r in prog.rules), nodes=prog.decls)


# --- components ----------------------------------------------------------------------------


def _min_member(cond: nx.DiGraph, c: int) -> str:
    return min(str(n) for n in cond.nodes[c]["members"])


def ordered_components(g: nx.DiGraph | nx.MultiDiGraph) -> list[list]:
    """Strongly connected components in dependency order (each after everything it reads),
    members sorted; ties broken by the smallest member's name, so the order is repeatable."""
    import networkx as nx  # here, not at import time (see the module docstring)

    cond = nx.condensation(g)
    return [
        sorted(cond.nodes[c]["members"], key=str)
        for c in nx.lexicographical_topological_sort(cond, key=lambda c: _min_member(cond, c))
    ]


def levels(g: nx.DiGraph | nx.MultiDiGraph, weight: Callable[[Node, Node], int] = lambda u, v: 1) -> dict:
    """For each node, the heaviest path to its component from a source component, where going
    from component P to component C costs the largest `weight(u, v)` of the edges u -> v from
    P to C. With the default weight this is the longest path (the diagram's columns); with
    weight 1 for negative edges and 0 otherwise it is the stratum."""
    import networkx as nx  # here, not at import time (see the module docstring)

    cond = nx.condensation(g)
    members = {c: cond.nodes[c]["members"] for c in cond.nodes}
    level: dict[int, int] = {}
    for c in nx.lexicographical_topological_sort(cond, key=lambda c: _min_member(cond, c)):
        best = 0
        for p in cond.predecessors(c):
            w = max((weight(u, v) for u in members[p] for v in g.successors(u) if v in members[c]), default=0)
            best = max(best, level[p] + w)
        level[c] = best
    return {n: level[c] for c, ms in members.items() for n in ms}


def negative_weight(g: nx.MultiDiGraph) -> Callable[[Node, Node], int]:
    """Edge weight for `levels`: 1 where some use u -> v is negative, else 0."""

    def weight(u: Node, v: Node) -> int:
        return int(any(d.get("negative") for d in g.get_edge_data(u, v, default={}).values()))

    return weight


def strata(g: nx.MultiDiGraph) -> dict[str, int]:
    """Stratum of each relation: 0 with no negation or aggregate below it, and one more for each
    negation or aggregate on the way up."""
    return levels(g, negative_weight(g))


def negative_cycles(g: nx.MultiDiGraph) -> list[tuple[set, str, str, dict]]:
    """Components that depend on themselves through negation or aggregation (they cannot be
    stratified): each component with the first such edge found inside it (u, v, edge data)."""
    import networkx as nx  # here, not at import time (see the module docstring)

    out = []
    for scc in nx.strongly_connected_components(g):
        for u, v, data in g.edges(data=True):
            if data["negative"] and u in scc and v in scc:
                out.append((scc, u, v, data))
                break
    return out


# --- rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleIndex:
    """Rules (by position) grouped by head relation and by `@id`, in source order."""

    by_head: dict[str, list[int]] = field(default_factory=dict)
    by_id: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, heads: Iterable[str], ids: Iterable[str | None] = ()) -> RuleIndex:
        index = cls()
        for i, head in enumerate(heads):
            index.by_head.setdefault(head, []).append(i)
        for i, rid in enumerate(ids):
            if rid is not None:
                index.by_id.setdefault(rid, []).append(i)
        return index

    @classmethod
    def of_program(cls, prog) -> RuleIndex:
        return cls.of((r.head.pred for r in prog.rules), (r.rule_id for r in prog.rules))
