"""A big stored table's semi-join (engine/backends/duckdb.py `_semi_joined`) reads the chunk's
values from the relations a per-chunk join copies its column from (`_value_sources`), not from the
join's many rows: NCCI's partner (35 rows a claim) copies its code from line and history. The
values are a superset of the join's: every claim must keep the rows pyDatalog derives for it, also
for a code that only one source holds and in a chunk where a source has no rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import engine.backends.duckdb as duckdb_backend
from engine.api import PolicyKB
from engine.backends.duckdb import DuckDBBackend, compile_sql, declared_types, infer_types
from engine.compiler import compile_program
from engine.evaluate import Evaluator
from engine.ir import IAtom
from engine.program import program_from_text
from engine.store import Store

ROOT = Path(__file__).resolve().parent.parent

# pair: a line's partners, the other lines of its date and the prior services of that date (a
# constant source for the claim's own lines). hit: a line (code c2) beside a partner (code c1)
# whose pair is an edit. edit is read as a big table: restricted to the chunk's values of c1.
PROGRAM = """
.decl line(l: number, code: symbol, d: symbol)
.decl prior(h: symbol, code: symbol, d: symbol)
.decl edit(c1: symbol, c2: symbol, mi: number)
.decl pair(l: number, src: symbol, code: symbol)
.decl solo(l: number, code: symbol)
.decl hit(l: number, src: symbol, c1: symbol, c2: symbol, mi: number)
.decl solo_hit(l: number, c2: symbol)
edit("A", "B", 1).
edit("B", "A", 0).
edit("C", "B", 1).
edit("P", "A", 1).
edit("X", "Y", 1).
pair(l, "this claim", c) :- line(l, _, d), line(l2, c, d), l != l2.
pair(l, h, c) :- line(l, _, d), prior(h, c, d).
solo(l, c) :- line(l, c, _), c != "Z".
hit(l, src, c1, c2, mi) :- line(l, c2, _), pair(l, src, c1), edit(c1, c2, mi).
solo_hit(l, c2) :- solo(l, c), edit(c, c2, _).
"""

# claim 0: A and B on one date, each the other's partner: edit(A, B) hits line 2, edit(B, A) line 1;
# claim 1: A beside a prior service P, a code no line of the chunk bills: edit(P, A) hits line 1;
# claim 2: C and B on two dates, no pair: no hit, though edit(C, B) holds two codes of the chunk.
CHUNK: list[dict[str, list[tuple[int | str, ...]]]] = [
    {"line": [(1, "A", "d1"), (2, "B", "d1")]},
    {"line": [(1, "A", "d1")], "prior": [("h1", "P", "d1")]},
    {"line": [(1, "C", "d1"), (2, "B", "d2")]},
]
EXPECTED_HITS = [
    [(1, "this claim", "B", "A", 0), (2, "this claim", "A", "B", 1)],
    [(1, "h1", "P", "A", 1)],
    [],
]
# a chunk without prior services: the union of the sources still holds every line's code
NO_PRIOR = CHUNK[:1] + CHUNK[2:]


def _compiled():
    prog = program_from_text({"<pairs>": PROGRAM})
    cp = compile_program(prog, dynamic_facts={"line", "prior"})
    return prog, cp


def test_a_join_reads_the_values_of_the_relations_it_copies_them_from() -> None:
    prog, cp = _compiled()
    sp = compile_sql(cp, infer_types(cp, declared_types(cp, prog)), frozenset({"edit"}))
    sql = {rel: s.sql[rel] for s in sp.steps for rel in s.relations}
    assert sp.value_sources[("pair", 2)] == (("line", 1), ("prior", 1))
    assert 'c0 IN (SELECT c1 FROM "d:line" UNION SELECT c1 FROM "d:prior")' in sql["hit"]
    assert '"d:pair")' not in sql["hit"]
    # a column one rule fills with a constant has no source to read; a relation of one claim
    # atom (solo) is no join, and keeps its own DISTINCT values
    assert ("pair", 1) not in sp.value_sources
    assert not any(rel == "solo" for rel, _ in sp.value_sources)
    assert 'c0 IN (SELECT DISTINCT c1 FROM "d:solo")' in sql["solo_hit"]


def test_without_a_big_table_no_sources_are_looked_for() -> None:
    prog, cp = _compiled()
    assert compile_sql(cp, infer_types(cp, declared_types(cp, prog))).value_sources == {}


@pytest.mark.parametrize("chunk", [CHUNK, NO_PRIOR], ids=["with prior", "no prior"])
def test_each_claim_gets_the_pydatalog_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: list[dict[str, list[tuple[int | str, ...]]]]
) -> None:
    monkeypatch.setattr(duckdb_backend, "BIG_STORED_ROWS", 0)
    prog, cp = _compiled()
    store = Store(prog, cache_dir=tmp_path)
    backend = DuckDBBackend(cp, store, declared_types(cp, prog))
    try:
        assert backend.sql.big == frozenset({"edit"})
        models = backend.evaluate_many(chunk, ["hit", "solo_hit"])
    finally:
        backend.close()
    expected = EXPECTED_HITS if chunk is CHUNK else EXPECTED_HITS[:1] + EXPECTED_HITS[2:]
    assert [m.rows("hit") for m in models] == expected
    ev = Evaluator(cp, store)
    try:
        for claim, model in zip(chunk, models, strict=True):
            mine = ev.evaluate(claim)
            assert model.rows("hit") == mine.rows("hit")
            assert model.rows("solo_hit") == mine.rows("solo_hit")
    finally:
        ev.close()


def test_the_shipped_big_table_is_restricted_on_the_sources_of_a_join() -> None:
    """In the shipped KB, the big table (PTP) is joined to a relation made by a join (partner):
    its semi-join reads the values from the relations that join's rules read, never from the
    join's own rows."""
    kb = PolicyKB.open(ROOT / "kb")
    sp = kb.duckdb().sql
    cp = kb.kb.compiled
    assert cp is not None and sp.big
    values = re.findall(r"WHERE c\d+ IN \((SELECT [^()]*)\)\)", sp.text())  # each semi-join's values
    assert any(" UNION SELECT " in v for v in values), "no semi-join reads the sources of a join"
    for (rel, col), sources in sp.value_sources.items():
        assert not any(f'SELECT DISTINCT c{col} FROM "d:{rel}"' in v for v in values)
        bodies = {
            lit.relation
            for rule in cp.rules
            if rule.head.relation == rel
            for lit in rule.body
            if isinstance(lit, IAtom)
        }
        assert {src for src, _ in sources} <= bodies
