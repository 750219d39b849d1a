"""A join that several per-chunk rules make alike is made once per chunk in the DuckDB backend
(engine/backends/duckdb.py `_narrowings`): the rules read the rows of one atom that have a row of
the other, a table made at the step of the first of them, and leave the other atom out. The rows
are the rules' on both engines; rules that use the other atom's columns, or that too few rules
share, are left as they are."""

from __future__ import annotations

from types import SimpleNamespace

from engine.backends.duckdb import NARROWED_RULES, compile_sql, infer_types
from engine.compiler import compile_program
from engine.conformance import Evaluator, _declare
from engine.program import program_from_text

# pair(line, source, code): a line's partners, most of them "here"; inj(line, route): the lines
# that are injections, line 1 twice (two routes), so a join with it doubles line 1's pairs
FACTS: dict[str, list[tuple[int | str, ...]]] = {
    "pair": [(1, "here", 10), (1, "here", 11), (2, "here", 10), (3, "here", 12), (3, "away", 10), (4, "here", 13)],
    "inj": [(1, "a"), (1, "b"), (3, "a")],
    "drug": [(10,), (12,)],
    "k": [("k1",)],
}
SHARED = ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]  # read pair(L, _, M) narrowed by inj(L, _)
RULES = [
    'r1(L, M) :- pair(L, "here", M), inj(L, _).',
    'r2(L) :- pair(L, "here", M), inj(L, _), drug(M).',
    'r3(L) :- pair(L, "here", M), inj(L, _), not drug(M).',
    'r4(M) :- pair(L, "here", M), inj(L, _), M > 10.',
    'r5(L) :- pair(L, "here", 12), inj(L, _).',  # one constant more: reads the shared table too
    'r6(L, M) :- pair(L, "here", M), inj(L, _), L < 2.',
    # inj first, every source: shares the table, which then tests no source (r1-r6 test theirs)
    "r7(L, S) :- inj(L, _), pair(L, S, M), drug(M).",
    # inj first, and a test of its line before pair: left as it is (pair would not bind L there)
    "keep3(L, S) :- inj(L, _), L > 2, pair(L, S, M).",
    # the route is used: not a test of pair's rows only, left as it is
    'keep1(L, T) :- pair(L, "here", M), inj(L, T).',
    # a test of pair's rows (route "b") that no other rule makes: left as it is
    'keep2(L) :- pair(L, "here", M), inj(L, "b").',
    # counted over r1, whose rows no longer come once per route of line 1
    "n(K, C) :- k(K), C = count : { r1(L, M) }.",
]
TYPES: dict[str, list[str | None]] = {"pair": ["n", "s", "n"], "inj": ["n", "s"], "drug": ["n"], "k": ["s"]}


def _sql(rules: list[str]) -> tuple[dict[str, str], str]:
    prog = program_from_text({"<rules>": "\n".join(rules)})
    _declare(prog, FACTS)
    cp = compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(FACTS))
    sp = compile_sql(cp, infer_types(cp, {cp.fact_relations.get(r, r): t for r, t in TYPES.items()}))
    return {rel: step.sql[rel] for step in sp.steps for rel in step.relations}, sp.text()


def test_rules_that_share_a_join_read_one_narrowed_table() -> None:
    assert len(SHARED) >= NARROWED_RULES
    sql, text = _sql(RULES)
    for rel in SHARED:
        assert '"n:' in sql[rel] and "inj" not in sql[rel], rel
    for rel in ("keep1", "keep2", "keep3"):
        assert '"n:' not in sql[rel] and "inj" in sql[rel], rel
    # compile --sql shows the statement that makes it, once
    assert text.count("CREATE OR REPLACE TEMP TABLE") == 1


def test_too_few_rules_are_left_as_they_are() -> None:
    sql, text = _sql([*RULES[: NARROWED_RULES - 1], *RULES[7:]])
    assert "CREATE OR REPLACE" not in text
    assert all('"n:' not in s for s in sql.values())


def test_narrowed_rules_give_the_rules_rows_on_both_engines() -> None:
    program = SimpleNamespace(facts=FACTS, rules=RULES)
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        # lines 1 and 3 are injections; line 3's "away" pair is not "here"
        assert out["r1"] == {(1, 10), (1, 11), (3, 12)}, backend
        assert out["r2"] == {(1,), (3,)}, backend  # codes 10 and 12 are drugs
        assert out["r3"] == {(1,)}, backend  # code 11 is not
        assert out["r4"] == {(11,), (12,)}, backend
        assert out["r5"] == {(3,)}, backend
        assert out["r6"] == {(1, 10), (1, 11)}, backend
        assert out["r7"] == {(1, "here"), (3, "here"), (3, "away")}, backend  # codes 10 and 12
        assert out["keep3"] == {(3, "here"), (3, "away")}, backend
        assert out["keep1"] == {(1, "a"), (1, "b"), (3, "a")}, backend
        assert out["keep2"] == {(1,)}, backend  # only line 1 has route "b"
        assert out["n"] == {("k1", 3)}, backend  # three pairs, though line 1 has two routes
