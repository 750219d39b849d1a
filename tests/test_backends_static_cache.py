"""The DuckDB backend's static relations (derived from stored rows only) are computed once and
saved in the cache (DuckDBBackend._create_static): a later connection copies them, a changed KB
computes them again, and a file that cannot be read is computed again rather than trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.api import PolicyKB
from engine.backends.duckdb import DuckDBBackend, declared_types, table_name
from engine.compiler import compile_program
from engine.ir import RelKind
from engine.program import program_from_text
from engine.store import Store

# edit(c1, c2, mi): pairs of codes; pair holds those whose mi is 1 (static: stored rows only); a
# line billing the first code of a pair is denied.
PROGRAM = """
.decl line(l: number, code: symbol)
.decl edit(c1: symbol, c2: symbol, mi: number)
.decl pair(c1: symbol, c2: symbol)
.decl deny(l: number, rule: symbol)
edit("A", "B", 1).
edit("Z", "A", 0).
{extra}
pair(c1, c2) :- edit(c1, c2, 1).
deny(l, "pair") :- line(l, c), pair(c, _).
"""
# line 1 bills A (pair A-B), line 2 bills C (a pair only with the extra fact), line 3 bills Z
# (edit Z-A has mi 0: no pair)
CLAIM: dict[str, list[tuple[int | str, ...]]] = {"line": [(1, "A"), (2, "C"), (3, "Z")]}


def _backend(cache: Path, extra: str = "") -> DuckDBBackend:
    prog = program_from_text({"<static>": PROGRAM.replace("{extra}", extra)})
    cp = compile_program(prog, dynamic_facts={"line"})
    assert cp.kinds["pair"] is RelKind.STATIC
    return DuckDBBackend(cp, Store(prog, cache_dir=cache), declared_types(cp, prog))


def _denied(backend: DuckDBBackend) -> list[tuple]:
    try:
        return backend.evaluate_many([CLAIM], ["deny"])[0].rows("deny")
    finally:
        backend.close()


def _static_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the static steps run (_run_step without `nonempty`) from now on."""
    runs: list[int] = []
    run_step = DuckDBBackend._run_step

    def counted(self: DuckDBBackend, step, nonempty=None) -> None:
        if nonempty is None:
            runs.append(1)
        run_step(self, step, nonempty)

    monkeypatch.setattr(DuckDBBackend, "_run_step", counted)
    return runs


def test_a_second_connection_copies_the_saved_static_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _static_runs(monkeypatch)
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert len(runs) == 1
    saved = list(tmp_path.glob("static-*.duckdb"))
    assert len(saved) == 1
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert len(runs) == 1  # copied, not computed
    assert list(tmp_path.glob("static-*.duckdb")) == saved


def test_a_changed_stored_row_computes_them_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _static_runs(monkeypatch)
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert _denied(_backend(tmp_path, 'edit("C", "D", 1).')) == [(1, "pair"), (2, "pair")]
    assert len(runs) == 2
    assert len(list(tmp_path.glob("static-*.duckdb"))) == 2
    assert _denied(_backend(tmp_path, 'edit("C", "D", 0).')) == [(1, "pair")]  # mi 0: no pair for C
    assert len(runs) == 3


def test_an_unreadable_saved_file_is_computed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _backend(tmp_path).close()
    (saved,) = tmp_path.glob("static-*.duckdb")
    saved.write_bytes(b"not a database")
    runs = _static_runs(monkeypatch)
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert len(runs) == 1
    assert saved.read_bytes() != b"not a database"  # saved again, good this time
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert len(runs) == 1


def test_the_bundled_kbs_static_rows_are_the_same_copied_or_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    kb = PolicyKB.open()
    assert kb.kb.compiled is not None
    cp = kb.kb.compiled
    types = declared_types(cp, kb.kb.program)

    def static_rows(backend: DuckDBBackend) -> dict[str, list[tuple]]:
        try:
            rels = [rel for step in backend.sql.static_steps for rel in step.relations]
            return {rel: sorted(backend.con.execute(f"SELECT * FROM {table_name(cp, rel)}").fetchall()) for rel in rels}
        finally:
            backend.close()

    copied = static_rows(DuckDBBackend(cp, kb.kb.store, types))  # copied, once an earlier run saved them
    runs = _static_runs(monkeypatch)
    monkeypatch.setattr(DuckDBBackend, "_copy_static", lambda self, rels, path: False)
    computed = static_rows(DuckDBBackend(cp, kb.kb.store, types))
    assert runs  # computed this time
    assert copied == computed
    assert sum(map(len, computed.values())) > 1000  # the KB's static relations hold thousands of rows
