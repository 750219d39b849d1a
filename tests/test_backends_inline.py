"""Per-chunk relations that one statement at most reads are views of their SELECT, not tables
(engine/backends/duckdb.py `_inlined`): their reader computes the rows. Kept as tables: a relation
read twice, one read under negation and one an outcome rule reads. Either way every relation holds
the rows the pyDatalog engine derives."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import engine.backends.duckdb as duckdb_backend
from engine.backends.duckdb import DuckDBBackend, compile_sql, declared_types, infer_types
from engine.compiler import compile_program
from engine.conformance import Evaluator, _declare
from engine.ir import RelKind
from engine.program import program_from_text
from engine.store import Store

FACTS: dict[str, list[tuple[int | str, ...]]] = {
    "a": [(1, "x"), (2, "x"), (3, "y"), (4, "q")],
    "b": [("x",)],
    "k": [("k1",)],
}
RULES = [
    'u(X) :- a(_, X), X != "q".',  # read by w only: a view
    "w(L) :- a(L, X), u(X).",  # read by deny, an outcome: a table
    "t2(X) :- a(L, X), L > 1.",  # read by r1 and r2: a table
    "r1(X) :- t2(X), b(X).",
    "r2(X) :- t2(X), not b(X).",
    "neg(X) :- a(L, X), L > 0.",  # read under negation: a table
    'nn(L) :- a(L, _), not neg("z").',
    'nm(L) :- a(L, _), not neg("x").',
    "chain(X) :- a(L, X), L < 3.",  # read through pc, a view read by the aggregate only: a view
    "pc(X) :- chain(X).",
    "n(K, C) :- k(K), C = count : { pc(X) }.",
    'empty(X) :- a(_, X), X = "none".',  # a view without rows, and ye reads it
    "ye(L) :- a(L, X), empty(X).",
    'deny(L, "w") :- w(L).',
    'warn(X, "r1") :- r1(X).',  # r1 and r2, answers' readers, are tables: t2 is read twice
    'warn(X, "r2") :- r2(X).',
]
# The Datalog answers, from the facts and rules above
EXPECTED = {
    "u": {("x",), ("y",)},
    "w": {(1,), (2,), (3,)},
    "t2": {("x",), ("y",), ("q",)},
    "r1": {("x",)},
    "r2": {("y",), ("q",)},
    "neg": {("x",), ("y",), ("q",)},
    "nn": {(1,), (2,), (3,), (4,)},
    "nm": set(),
    "chain": {("x",)},
    "pc": {("x",)},
    "n": {("k1", 1)},
    "empty": set(),
    "ye": set(),
    "deny": {(1, "w"), (2, "w"), (3, "w")},
    "warn": {("x", "r1"), ("y", "r2"), ("q", "r2")},
}
GIVEN: dict[str, list[str | None]] = {"a": ["n", "s"], "b": ["s"], "k": ["s"]}


def _compiled():
    prog = program_from_text({"<rules>": "\n".join(RULES)})
    _declare(prog, FACTS)
    return compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(FACTS))


def test_a_relation_read_by_one_statement_is_a_view_and_the_others_tables() -> None:
    cp = _compiled()
    sp = compile_sql(cp, infer_types(cp, {cp.fact_relations.get(r, r): t for r, t in GIVEN.items()}))
    inline = {rel for step in sp.steps for rel in step.inline}
    assert {"u", "chain", "empty", "ye", "nn", "nm"} <= inline  # nn, nm: read by no statement
    assert not inline & {"w", "t2", "neg", "r1", "r2", "deny", "pc"}
    (aggregate,) = (rel for rel, kind in cp.kinds.items() if kind is RelKind.AGGREGATE)
    assert aggregate in inline  # n's count, read by n only  # read by an answer, twice, under negation...
    assert 'CREATE TEMP VIEW "d:u" AS' in sp.text()


def test_inlined_relations_hold_the_rows_of_both_engines() -> None:
    program = SimpleNamespace(facts=FACTS, rules=RULES)
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        for rel, rows in EXPECTED.items():
            assert out[rel] == rows, (backend, rel)


def test_an_inlined_relation_follows_its_sources_from_chunk_to_chunk() -> None:
    cp = _compiled()
    backend = DuckDBBackend(cp, None, {cp.fact_relations.get(r, r): t for r, t in GIVEN.items()})
    wanted = ["u", "w", "n", "ye", "deny"]
    try:
        first = backend.evaluate_many([{"a": [(1, "x")], "b": [], "k": [("k1",)]}, {"a": [], "b": [], "k": []}], wanted)
        second = backend.evaluate_many([{"a": [(5, "q"), (6, "y")], "b": [], "k": [("k3",)]}], wanted)
    finally:
        backend.close()
    assert [m.rows("u") for m in first] == [[("x",)], []]
    assert [m.rows("n") for m in first] == [[("k1", 1)], []]
    assert [m.rows("deny") for m in first] == [[(1, "w")], []]
    assert [m.rows("u") for m in second] == [[("y",)]]  # q is left out, and the last chunk's x is gone
    assert [m.rows("w") for m in second] == [[(6,)]]
    assert [m.rows("n") for m in second] == [[]]  # chain needs a line below 3: no group, no row
    assert [m.rows("ye") for m in second] == [[]]


# A big stored table is joined through a semi-join on the values of the relation the rule binds
# its column from (duckdb._semi_joined), which then reads that relation twice: r is a view when
# edit is read whole, a table when edit is big. edit(c1, c2, mi): pairs of codes.
BIG_PROGRAM = """
.decl line(l: number, code: symbol)
.decl edit(c1: symbol, c2: symbol, mi: number)
.decl r(l: number, code: symbol)
.decl hit(l: number, c2: symbol, mi: number)
.decl deny(l: number, rule: symbol)
edit("A", "B", 1).
edit("Z", "A", 0).
edit("C", "D", 1).
r(l, c) :- line(l, c), c != "Z".
hit(l, c2, mi) :- r(l, c), edit(c, c2, mi).
deny(l, "hit") :- hit(l, _, _).
"""
# claim 0: line 1 (A) hits edit(A, B); line 2 bills Z, which r leaves out, so edit(Z, A) is not
# reached. Claim 1: C, with edit(C, D). Claim 2 bills Z only: no r row, no hit.
BIG_CHUNK: list[dict[str, list[tuple[int | str, ...]]]] = [
    {"line": [(1, "A"), (2, "Z")]},
    {"line": [(1, "C")]},
    {"line": [(3, "Z")]},
]


@pytest.mark.parametrize("big", [False, True])
def test_a_relation_a_semi_join_reads_again_is_a_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big: bool
) -> None:
    monkeypatch.setattr(duckdb_backend, "BIG_STORED_ROWS", 0 if big else 10**9)
    prog = program_from_text({"<big>": BIG_PROGRAM})
    cp = compile_program(prog, dynamic_facts={"line"})
    backend = DuckDBBackend(cp, Store(prog, cache_dir=tmp_path), declared_types(cp, prog))
    try:
        inline = {rel for step in backend.sql.steps for rel in step.inline}
        models = backend.evaluate_many(BIG_CHUNK, ["r", "hit", "deny"])
    finally:
        backend.close()
    assert ("r" in inline) is not big  # the semi-join on edit reads r's codes, and the join its rows
    assert [m.rows("r") for m in models] == [[(1, "A")], [(1, "C")], []]
    assert [m.rows("hit") for m in models] == [[(1, "B", 1)], [(1, "D", 1)], []]
    assert [m.rows("deny") for m in models] == [[(1, "hit")], [(1, "hit")], []]
