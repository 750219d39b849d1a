"""The DuckDB backend's stored relations (but the big ones) are one file in the cache
(_build_stored_file), made once per content and attached by every later connection; what the
message queries ask of the stored and static relations' keys is saved with the static relations
(DuckDBBackend._save_static). A changed row makes a new file, and a file that cannot be read is
made again rather than trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.api import PolicyKB
from engine.backends import duckdb as backend_module
from engine.backends.duckdb import DuckDBBackend, declared_types, table_name
from engine.compiler import compile_program
from engine.ir import RelKind
from engine.program import program_from_text
from engine.store import Store

# code(c, label) and edit(c1, c2, mi) are inline facts (stored); pair holds the edits whose mi is 1
# (static); a line billing the first code of a pair is denied, its message shows the code's label.
PROGRAM = """
.decl line(l: number, code: symbol)
.decl code(c: symbol, label: symbol)
.decl edit(c1: symbol, c2: symbol, mi: number)
.decl pair(c1: symbol, c2: symbol)
.decl deny(l: number, rule: symbol)
code("A", "alpha").
code("C", "gamma").
edit("A", "B", 1).
edit("Z", "A", 0).
{extra}
pair(c1, c2) :- edit(c1, c2, 1).
deny(l, "pair") :- line(l, c), pair(c, _), code(c, _).
"""
CLAIM: dict[str, list[tuple[int | str, ...]]] = {"line": [(1, "A"), (2, "C"), (3, "Z")]}


def _backend(cache: Path, extra: str = "") -> DuckDBBackend:
    prog = program_from_text({"<stored>": PROGRAM.replace("{extra}", extra)})
    cp = compile_program(prog, dynamic_facts={"line"})
    assert cp.kinds["code"] is RelKind.STORED and cp.kinds["pair"] is RelKind.STATIC
    return DuckDBBackend(cp, Store(prog, cache_dir=cache), declared_types(cp, prog))


def _denied(backend: DuckDBBackend) -> list[tuple]:
    try:
        return backend.evaluate_many([CLAIM], ["deny"])[0].rows("deny")
    finally:
        backend.close()


def _builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The stored relations' files made from now on (where each was made)."""
    made: list[Path] = []
    build = backend_module._build_stored_file

    def counted(cp, store, types, files, path: Path) -> None:
        made.append(path)
        build(cp, store, types, files, path)

    monkeypatch.setattr(backend_module, "_build_stored_file", counted)
    return made


def test_a_second_connection_attaches_the_file_the_first_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _builds(monkeypatch)
    first = _backend(tmp_path)
    assert first.stored_file is not None and made == [first.stored_file]
    assert first.stored_file.parent == tmp_path and first.stored_file.name.startswith("stored-")
    # each stored relation is read from it by name (no view of this connection), every row
    rows = first.con.execute(f"SELECT * FROM {table_name(first.cp, 'code')}").fetchall()
    assert rows == [("A", "alpha"), ("C", "gamma")]
    assert not first.con.execute("SELECT view_name FROM duckdb_views() WHERE view_name LIKE 's:%'").fetchall()
    assert _denied(first) == [(1, "pair")]
    second = _backend(tmp_path)
    assert second.stored_file == first.stored_file and len(made) == 1  # attached, not made again
    assert _denied(second) == [(1, "pair")]


def test_a_changed_inline_fact_makes_a_new_file_and_the_old_one_is_used_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _builds(monkeypatch)
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert _denied(_backend(tmp_path, 'edit("C", "D", 1).')) == [(1, "pair"), (2, "pair")]
    assert len(made) == 2 and made[0] != made[1]
    assert len(list(tmp_path.glob("stored-*.duckdb"))) == 2
    assert len(list(tmp_path.glob("static-*.duckdb"))) == 2  # its static relations are new too
    assert _denied(_backend(tmp_path, 'code("Z", "zeta").')) == [(1, "pair")]  # a stored row only: no pair for Z
    assert len(made) == 3
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert len(made) == 3  # the first file, still there


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_a_file_that_cannot_be_read_is_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    _backend(tmp_path).close()
    (saved,) = tmp_path.glob("stored-*.duckdb")
    good = saved.read_bytes()
    saved.write_bytes(good[: len(good) // 2] if damage == "cut" else b"not a database")
    made = _builds(monkeypatch)
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert made == [saved]
    assert saved.stat().st_size == len(good)  # made again, whole this time
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert made == [saved]


def test_a_static_file_cut_short_is_computed_again(tmp_path: Path) -> None:
    """Its tables are read where they lie, not copied: what it holds last (the relations' names
    and their keys) tells a file cut short."""
    _backend(tmp_path).close()
    (saved,) = tmp_path.glob("static-*.duckdb")
    good = saved.read_bytes()
    saved.write_bytes(good[: len(good) * 9 // 10])
    backend = _backend(tmp_path)
    computed = backend.con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
    assert ("x:pair",) in computed  # a table of this connection, not the file's
    assert _denied(backend) == [(1, "pair")]
    assert saved.stat().st_size == len(good)  # saved again


def test_a_cache_that_cannot_be_written_makes_the_file_for_the_connection(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    backend = _backend(blocked / "cache")  # no directory can be made under a file
    assert backend.stored_file is None
    assert _denied(backend) == [(1, "pair")]


def test_the_bundled_kbs_key_checks_are_read_with_its_static_relations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a stored or static relation is unique on the columns a message query may ask about
    (_keyed_atoms) is saved with the static relations: a connection opening them asks none of it
    again, and has the answers a connection computing them gets."""
    kb = PolicyKB.open()
    cp = kb.kb.compiled
    assert cp is not None
    types = declared_types(cp, kb.kb.program)
    DuckDBBackend(cp, kb.kb.store, types).close()  # the static relations saved, if no run did yet
    asked: list[tuple[str, tuple[int, ...]]] = []
    unique_on = DuckDBBackend._unique_on

    def counted(self: DuckDBBackend, rel: str, key: tuple[int, ...]) -> bool:
        asked.append((rel, key))
        return unique_on(self, rel, key)

    monkeypatch.setattr(DuckDBBackend, "_unique_on", counted)
    backend = DuckDBBackend(cp, kb.kb.store, types)
    try:
        pairs = backend._unique_asked()
        assert len(pairs) > 10 and {cp.kinds[rel] for rel, _ in pairs} == {RelKind.STORED, RelKind.STATIC}
        keyed = backend._keyed_atoms([(index, 0) for index in backend.sql.solutions])
        assert any(keyed.values())
        assert asked == []  # all read from the file
        saved = {pair: backend._is_unique(*pair) for pair in pairs}
        assert saved == {pair: unique_on(backend, *pair) and pair[0] not in backend.sql.big for pair in pairs}
        assert True in saved.values() and False in saved.values()
    finally:
        backend.close()
