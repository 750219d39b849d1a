"""Program analysis (engine.analysis): the one dependency graph the checker, compiler and docs read."""

from __future__ import annotations

import networkx as nx

from engine import analysis
from engine.program import program_from_text

PROGRAM = """
.decl e(x: number, y: number)
.claim e
.decl reach(x: number, y: number)
.decl node(x: number)
.decl isolated(x: number)
.decl degree(x: number, n: number)
/** @id r.base */
reach(x, y) :- e(x, y).
/** @id r.step */
reach(x, z) :- reach(x, y), e(y, z).
node(x) :- e(x, _).
node(y) :- e(_, y).
isolated(x) :- node(x), !reach(x, _).
degree(x, n) :- node(x), n = count : { e(x, _) }.
"""


def test_graph_marks_negation_and_aggregation_as_negative_uses() -> None:
    g = analysis.program_graph(program_from_text({"t.dl": PROGRAM}))
    uses = {(u, v, d["negative"]) for u, v, d in g.edges(data=True)}
    assert ("reach", "isolated", True) in uses and ("node", "isolated", False) in uses
    assert ("e", "degree", True) in uses and ("reach", "reach", False) in uses
    assert set(g.nodes) == {"e", "reach", "node", "isolated", "degree"}


def test_components_come_in_dependency_order_and_strata_count_negations() -> None:
    g = analysis.program_graph(program_from_text({"t.dl": PROGRAM}))
    order = analysis.ordered_components(g)
    # ties go to the smallest name: after e, node and reach are ready; after node, degree is too
    assert order == [["e"], ["node"], ["degree"], ["reach"], ["isolated"]]
    assert analysis.strata(g) == {"e": 0, "reach": 0, "node": 0, "isolated": 1, "degree": 1}
    assert analysis.levels(g) == {"e": 0, "reach": 1, "node": 1, "isolated": 2, "degree": 2}


def test_levels_take_the_longest_path_and_keep_a_cycle_in_one_column() -> None:
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c"), ("c", "d"), ("d", "c")])
    assert analysis.levels(g) == {"a": 0, "b": 1, "c": 2, "d": 2}


def test_a_negative_cycle_is_found_with_the_edge_inside_it() -> None:
    prog = program_from_text({"t.dl": ".decl p(x: number)\n.decl q(x: number)\n.decl r(x: number)\n.claim r\n"
                                      "p(x) :- r(x), !q(x).\nq(x) :- r(x), p(x).\n"})
    ((scc, u, v, data),) = analysis.negative_cycles(analysis.program_graph(prog))
    assert scc == {"p", "q"} and (u, v) == ("q", "p") and data["negative"]
    assert (data["loc"].line, data["loc"].col) == (5, 15)


def test_rule_index_groups_rules_by_head_and_by_id() -> None:
    prog = program_from_text({"t.dl": PROGRAM})
    index = analysis.RuleIndex.of_program(prog)
    assert index.by_head == {"reach": [0, 1], "node": [2, 3], "isolated": [4], "degree": [5]}
    assert index.by_id == {"r.base": [0], "r.step": [1]}
