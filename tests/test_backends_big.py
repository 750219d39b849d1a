"""A big stored table (the NCCI PTP edits, 2.55M rows) is joined in the DuckDB backend through a
restriction to the chunk's values (engine/backends/duckdb.py `_semi_joined`): only its rows whose
column holds a value the claims of the chunk bind it to are read. The restriction must keep every
row a claim joins, also where a code appears on one claim of the chunk and its partner on another,
and give each claim the rows the pyDatalog engine derives for it alone."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine.backends.duckdb as duckdb_backend
from engine.api import PolicyKB
from engine.backends.duckdb import (
    DuckDBBackend,
    compile_sql,
    declared_types,
    infer_types,
    program_sql,
    table_name,
)
from engine.compiler import compile_program
from engine.evaluate import Evaluator
from engine.ir import RelKind
from engine.program import program_from_text
from engine.store import Store

ROOT = Path(__file__).resolve().parent.parent

# edit(c1, c2, mi): a PTP-like table of column 1 and column 2 codes, stored (inline facts).
# hit: a line (code c2) billed with a partner line (code c1) of the same claim, the pair an edit.
PROGRAM = """
.decl line(l: number, code: symbol)
.decl edit(c1: symbol, c2: symbol, mi: number)
.decl hit(l: number, l1: number, c1: symbol, c2: symbol, mi: number)
.decl unpaired(l: number)
edit("A", "B", 1).
edit("B", "A", 0).
edit("C", "B", 1).
edit("A", "D", 1).
edit("A", "A", 9).
edit("E", "F", 1).
edit("X", "Y", 1).
hit(l, l1, c1, c2, mi) :- line(l, c2), line(l1, c1), l != l1, edit(c1, c2, mi).
unpaired(l) :- line(l, c), !edit(c, _, _).
"""

# A chunk of four claims. Expected answers, from the rule and the table above:
# - claim 0 bills A and B: edit(A, B) hits line 2 (B) with partner line 1, edit(B, A) line 1 with 2;
# - claim 1 bills C and D: edit(C, B) needs B, which only claim 0 bills, and edit(A, D) needs A,
#   which only claims 0 and 2 bill: no hit, although both rows hold a code of the chunk in c1;
# - claim 2 bills A twice: edit(A, A) hits each line with the other;
# - claim 3 bills F and E: edit(E, F) hits line 1 (F) with line 2 (E), the column 1 code on the
#   later line; edit(X, Y) holds no code of the chunk and no claim joins it.
CHUNK: list[dict[str, list[tuple[int | str, ...]]]] = [
    {"line": [(1, "A"), (2, "B")]},
    {"line": [(1, "C"), (2, "D")]},
    {"line": [(1, "A"), (2, "A")]},
    {"line": [(1, "F"), (2, "E")]},
]
EXPECTED_HITS = [
    [(1, 2, "B", "A", 0), (2, 1, "A", "B", 1)],
    [],
    [(1, 2, "A", "A", 9), (2, 1, "A", "A", 9)],
    [(1, 2, "E", "F", 1)],
]
# lines whose code is column 1 of no edit: D (claim 1) and F (claim 3)
EXPECTED_UNPAIRED = [[], [(2,)], [], [(1,)]]


def _program(tmp_path: Path):
    prog = program_from_text({"<ptp>": PROGRAM})
    cp = compile_program(prog, dynamic_facts={"line"})
    return cp, Store(prog, cache_dir=tmp_path), declared_types(cp, prog)


def _duckdb_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big: bool) -> tuple[list[list], list[str]]:
    """Each claim's hit and unpaired rows, and the SQL of hit, with edit read as a big table or not."""
    monkeypatch.setattr(duckdb_backend, "BIG_STORED_ROWS", 0 if big else 10**9)
    cp, store, types = _program(tmp_path)
    backend = DuckDBBackend(cp, store, types)
    try:
        assert backend.sql.big == (frozenset({"edit"}) if big else frozenset())
        models = backend.evaluate_many(CHUNK, ["hit", "unpaired"])
        sql = [step.sql[rel] for step in backend.sql.steps for rel in step.relations if rel == "hit"]
    finally:
        backend.close()
    return [[m.rows("hit"), m.rows("unpaired")] for m in models], sql


def test_a_big_table_is_read_through_the_distinct_values_of_the_chunk() -> None:
    prog = program_from_text({"<ptp>": PROGRAM})
    cp = compile_program(prog, dynamic_facts={"line"})
    types = infer_types(cp, declared_types(cp, prog))
    sql = {rel: s.sql[rel] for s in compile_sql(cp, types, frozenset({"edit"})).steps for rel in s.relations}
    # c1 is bound from line's code column: the table is restricted on its first column
    assert '(SELECT * FROM "s:edit" WHERE c0 IN (SELECT DISTINCT c1 FROM "d:line"))' in sql["hit"]
    plain = {rel: s.sql[rel] for s in compile_sql(cp, types).steps for rel in s.relations}
    assert "IN (SELECT" not in plain["hit"]


@pytest.mark.parametrize("big", [True, False])
def test_every_claim_gets_its_own_rows_whether_the_table_is_restricted_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big: bool
) -> None:
    rows, sql = _duckdb_rows(tmp_path, monkeypatch, big)
    assert ("IN (SELECT DISTINCT" in sql[0]) is big
    assert [hits for hits, _ in rows] == EXPECTED_HITS
    assert [unpaired for _, unpaired in rows] == EXPECTED_UNPAIRED


def test_the_restricted_join_gives_the_pydatalog_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows, _ = _duckdb_rows(tmp_path, monkeypatch, True)
    cp, store, _types = _program(tmp_path)
    ev = Evaluator(cp, store)
    try:
        for claim, (hits, unpaired) in zip(CHUNK, rows, strict=True):
            model = ev.evaluate(claim)
            assert model.rows("hit") == hits
            assert model.rows("unpaired") == unpaired
    finally:
        ev.close()


@pytest.fixture(scope="module")
def shipped() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def test_compile_sql_shows_the_restriction_the_backend_runs(shipped: PolicyKB) -> None:
    backend = shipped.duckdb()
    assert backend.sql.big, "the shipped KB has a stored table of more than BIG_STORED_ROWS rows"
    text = program_sql(shipped.kb)
    assert text == backend.sql.text()
    named = text.splitlines()[0].split(": ")[-1].split(", ")  # the header names them
    for rel in backend.sql.big:
        assert rel in named
        assert f'(SELECT * FROM "s:{rel}" WHERE c' in text


def test_a_stored_relation_is_read_from_one_file_or_a_big_ones_view_with_every_row(shipped: PolicyKB) -> None:
    """A stored relation of at most BIG_STORED_ROWS rows is a table of the stored relations' file
    (no view), holding the store's rows in its order (inline facts, then the table's rows); a big
    one is a view, a UNION ALL only where it has both inline facts and a table file."""
    backend = shipped.duckdb()
    store, cp = shipped.kb.store, shipped.kb.compiled
    assert cp is not None
    views = dict(backend.con.execute("SELECT view_name, sql FROM duckdb_views() WHERE temporary").fetchall())
    stored = [rel for rel, kind in cp.kinds.items() if kind is RelKind.STORED]
    assert any(rel in store.tables for rel in stored) and any(rel in store.memory for rel in stored)
    assert backend.sql.big and len(backend.sql.big) < len(stored)
    for rel in stored:
        if rel in backend.sql.big:
            both = rel in store.tables and bool(store.memory.get(rel) and store.memory[rel].rows)
            assert ("UNION ALL" in views[f"s:{rel}"]) is both, rel
            (n,) = backend.con.execute(f"SELECT count(*) FROM {table_name(cp, rel)}").fetchone()  # type: ignore[misc]
            assert n == store.count(rel), rel
        else:
            assert f"s:{rel}" not in views, rel
            rows = backend.con.execute(f"SELECT * FROM {table_name(cp, rel)}").fetchall()
            assert rows == [tuple(row) for _, row in store.scan(rel)], rel
