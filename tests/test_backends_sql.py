"""The per-chunk SQL of the DuckDB backend: relations no reader can see twice are filled with
UNION ALL (engine/backends/duckdb.py `_bag`), and what is read as a set still is one."""

from __future__ import annotations

from types import SimpleNamespace

from engine.backends.duckdb import DuckDBBackend, compile_sql, infer_types
from engine.compiler import compile_program
from engine.conformance import Evaluator, _declare
from engine.program import program_from_text

# p gets "x" three times (twice from a, once from b) when its rules' rows are appended: the
# expectations below are the Datalog answers, where every relation is a set.
FACTS: dict[str, list[tuple[int | str, ...]]] = {
    "a": [(1, "x"), (2, "x"), (3, "y")],
    "b": [("x",)],
    "c": [("y",)],
    "k": [("k1",)],
}
RULES = [
    "p(X) :- a(_, X).",
    "p(X) :- b(X).",
    "q(X) :- p(X), not c(X).",
    'deny(X, "dup") :- q(X).',
    "n(K, C) :- k(K), C = count : { p(X) }.",
    "s(K, T) :- k(K), T = sum L : { a(L, X), p(X) }.",
]


def _compiled():
    prog = program_from_text({"<rules>": "\n".join(RULES)})
    _declare(prog, FACTS)
    return compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(FACTS))


def test_a_relation_of_several_rules_is_appended_and_an_answer_is_not() -> None:
    cp = _compiled()
    sp = compile_sql(cp, infer_types(cp, {}))
    sql = {rel: step.sql[rel] for step in sp.steps for rel in step.relations}
    assert "UNION ALL" in sql["p"]
    assert sql["deny"].startswith("SELECT DISTINCT")  # one rule, but the answer is a set


def test_rows_appended_twice_are_read_as_a_set_on_both_engines() -> None:
    program = SimpleNamespace(facts=FACTS, rules=RULES)
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        assert out["p"] == {("x",), ("y",)}, backend
        assert out["q"] == {("x",)}, backend
        assert out["deny"] == {("x", "dup")}, backend
        assert out["n"] == {("k1", 2)}, backend  # p has two members, however many rows hold them
        assert out["s"] == {("k1", 6)}, backend  # 1 + 2 (x) + 3 (y), each once


def test_an_outcome_over_repeated_rows_is_fetched_once() -> None:
    cp = _compiled()
    given: dict[str, list[str | None]] = {"a": ["n", "s"], "b": ["s"], "c": ["s"], "k": ["s"]}
    backend = DuckDBBackend(cp, None, {cp.fact_relations.get(r, r): t for r, t in given.items()})
    try:
        (model,) = backend.evaluate_many([{rel: list(rows) for rel, rows in FACTS.items()}])
        (raw,) = backend.con.execute('SELECT count(*) FROM "d:p"').fetchone()  # type: ignore[misc]
    finally:
        backend.close()
    assert raw == 4  # x three times and y once: the repeated rows are there, and read as a set
    assert model.rows("deny") == [("x", "dup")]


def test_an_appended_relation_fetched_into_a_model_is_a_set() -> None:
    """A model holds sets (engine/evaluate.Model), also for a relation whose table holds a row
    twice: p's table has x three times, the model p once."""
    cp = _compiled()
    given: dict[str, list[str | None]] = {"a": ["n", "s"], "b": ["s"], "c": ["s"], "k": ["s"]}
    backend = DuckDBBackend(cp, None, {cp.fact_relations.get(r, r): t for r, t in given.items()})
    try:
        (model,) = backend.evaluate_many([{rel: list(rows) for rel, rows in FACTS.items()}], ["p", "q"])
    finally:
        backend.close()
    assert model.rows("p") == [("x",), ("y",)]
    assert model.rows("q") == [("x",)]


# src's second column holds the constant "this" (one rule) and h's names (another rule): the
# tests on it are written as an IN list (duckdb._frequent_value_test), and keep their meaning.
MIXED_FACTS: dict[str, list[tuple[int | str, ...]]] = {
    "a": [(1, "x"), (2, "y")],
    "h": [("h1", 3), ("h2", 1)],
}
MIXED_RULES = [
    'src(L, "this", L) :- a(L, _).',
    "src(L, H, M) :- a(L, _), h(H, M).",
    'mine(L, M) :- src(L, "this", M).',
    'from_h1(L) :- src(L, "h1", M), M > 2.',
    'none(L) :- src(L, "zz", _).',
    'deny(L, "own") :- mine(L, L).',
]


def test_a_constant_test_on_a_mixed_column_is_an_in_list_with_the_same_rows() -> None:
    prog = program_from_text({"<rules>": "\n".join(MIXED_RULES)})
    _declare(prog, MIXED_FACTS)
    cp = compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(MIXED_FACTS))
    given: dict[str, list[str | None]] = {"a": ["n", "s"], "h": ["s", "n"]}
    sp = compile_sql(cp, infer_types(cp, {cp.fact_relations.get(r, r): t for r, t in given.items()}))
    sql = {rel: step.sql[rel] for step in sp.steps for rel in step.relations}
    assert "IN ('this', 'this')" in sql["mine"]
    assert "IN ('h1', 'h1')" in sql["from_h1"]
    assert "= 'own'" not in sql["deny"] and "IN (" not in sql["deny"]  # deny's column: constants only
    program = SimpleNamespace(facts=MIXED_FACTS, rules=MIXED_RULES)
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        assert out["mine"] == {(1, 1), (2, 2)}, backend  # each line is its own "this" source
        assert out["from_h1"] == {(1,), (2,)}, backend  # h1 carries 3 > 2, for both lines
        assert out["none"] == set(), backend
        assert out["deny"] == {(1, "own"), (2, "own")}, backend


# pa and pz copy one relation each (duckdb._projection): views, not tables. pa holds "x" twice
# (from a's rows 1 and 2) and z, and so pz, has no rows at all.
VIEW_FACTS: dict[str, list[tuple[int | str, ...]]] = {
    "a": [(1, "x"), (2, "x"), (3, "y")],
    "k": [("k1",)],
}
VIEW_RULES = [
    "pa(X) :- a(_, X).",
    "n(K, C) :- k(K), C = count : { pa(X) }.",
    "j(L) :- a(L, X), pa(X).",
    'z(X) :- a(_, X), X = "none".',
    "pz(X) :- z(X).",
    'nz(L) :- a(L, _), not pz("x").',
    "yz(L) :- a(L, X), pz(X).",
    'deny(L, "seen") :- j(L), not pz("y").',
]


def test_a_relation_that_copies_another_is_a_view_read_like_its_table() -> None:
    prog = program_from_text({"<rules>": "\n".join(VIEW_RULES)})
    _declare(prog, VIEW_FACTS)
    cp = compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(VIEW_FACTS))
    sp = compile_sql(cp, infer_types(cp, {}))
    views = {rel: source for step in sp.steps for rel, source in step.views.items()}
    assert views["pa"] == "a" and views["pz"] == "z"
    assert "j" not in views and "z" not in views and "deny" not in views  # a join, a filter, an answer
    program = SimpleNamespace(facts=VIEW_FACTS, rules=VIEW_RULES)
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        assert out["pa"] == {("x",), ("y",)}, backend
        assert out["n"] == {("k1", 2)}, backend  # x and y, however many rows of a hold them
        assert out["j"] == {(1,), (2,), (3,)}, backend
        assert out["pz"] == set() and out["yz"] == set(), backend  # an empty source: an empty view
        assert out["nz"] == {(1,), (2,), (3,)}, backend
        assert out["deny"] == {(1, "seen"), (2, "seen"), (3, "seen")}, backend


def test_a_view_is_not_emptied_and_follows_its_source_from_chunk_to_chunk() -> None:
    cp = _compiled_views()
    backend = DuckDBBackend(
        cp, None, {cp.fact_relations.get("a", "a"): ["n", "s"], cp.fact_relations.get("k", "k"): ["s"]}
    )
    try:
        first = backend.evaluate_many([{"a": [(1, "x")], "k": [("k1",)]}, {"a": [], "k": [("k2",)]}], ["pa", "n", "j"])
        second = backend.evaluate_many([{"a": [(5, "y"), (6, "y")], "k": [("k3",)]}], ["pa", "n", "j"])
    finally:
        backend.close()
    assert [m.rows("pa") for m in first] == [[("x",)], []]
    assert [m.rows("n") for m in first] == [[("k1", 1)], []]  # no group without rows
    assert [m.rows("pa") for m in second] == [[("y",)]]  # the last chunk's rows are gone
    assert [m.rows("j") for m in second] == [[(5,), (6,)]]


def _compiled_views():
    prog = program_from_text({"<rules>": "\n".join(VIEW_RULES)})
    _declare(prog, VIEW_FACTS)
    return compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(VIEW_FACTS))
