"""`policykb cache`: what the cache directory holds, which files a KB uses, and pruning the rest
(engine/cachedir.py). A small KB with one table is opened, then its table and a rule file are
edited and it is opened again: the first version's files are left behind, and a prune must
remove exactly those, keep everything the edited KB uses (it reopens without rebuilding a
table) and never touch a lock file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import lint_fixture_kb
from engine import cachedir
from engine.cli import main

TABLE = """
/** @summary A pair of codes that may not be billed together (test table). */
.decl pair_edit(c1: symbol, c2: symbol, mi: number)
.input pair_edit(filename="pairs.csv")

/** @summary The pairs whose edit has modifier indicator 1 (static: from the table only). */
.decl bypassable(c1: symbol, c2: symbol)
bypassable(a, b) :- pair_edit(a, b, 1).

/**
 * @id t.pair
 * @title Pair edit
 * @summary The line's code is column 2 of a pair edit with another line's code.
 * @source test
 * @kind policy
 * @severity deny
 * @group CO
 * @carc 97
 * @message Line {l} ({c2}) is bundled into {c1}.
 */
deny(l, "t.pair") :- line(l, c2, _, _, _, _), line(_, c1, _, _, _, _), bypassable(c1, c2).
"""


def _open(root: Path, rows: str, comment: str = "") -> object:
    (root / "pairs.csv").write_text("c1,c2,mi\n" + rows, encoding="utf-8")
    kb = lint_fixture_kb(root, {"pairs.dl": comment + TABLE})
    kb.duckdb()  # the DuckDB copies of the table and the static relations' file
    return kb


def _names(cache: Path, kind: str) -> set[str]:
    return {e.path.name for e in cachedir.entries(cache) if e.kind == kind}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POLICYKB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_prune_removes_what_the_edited_kb_left_behind(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    _open(root, "96372,99213,1\n")
    first = {kind: _names(cache, kind) for kind in cachedir.KINDS}
    assert first["table"] and first["stored"] and first["static"] and first["program"] and first["parsed"]
    assert first["lock"]
    _open(root, "96372,99213,1\n96372,99214,1\n", comment="// edited\n")
    second = {kind: _names(cache, kind) for kind in cachedir.KINDS}
    left = {kind: first[kind] - second[kind] for kind in cachedir.KINDS}
    assert not left["table"] and not left["parsed"]  # nothing vanished by itself...
    new = {kind: second[kind] - first[kind] for kind in cachedir.KINDS}
    # ...and the edit made a new table (SQLite and DuckDB copy), stored and static file, program and parse
    assert len(new["table"]) == 2 and len(new["stored"]) == 1 and len(new["static"]) == 1
    assert len(new["program"]) == 1
    assert len(new["parsed"]) == 1

    runner = CliRunner()
    kept = runner.invoke(main, ["cache", "--kb", str(root), "--prune", "--format", "json"])
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.output)["removed"] == []  # all of it younger than 14 days

    dry = runner.invoke(main, ["cache", "--kb", str(root), "--prune", "--older-than", "0", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 6 file(s)" in dry.output
    assert {kind: _names(cache, kind) for kind in cachedir.KINDS} == second  # a dry run removes nothing

    building = cache / "pair_edit-0123456789abcdef0123.tmp999-1"  # a build another process is writing
    building.write_bytes(b"SQLite format 3")
    res = runner.invoke(main, ["cache", "--kb", str(root), "--prune", "--older-than", "0", "--format", "json"])
    assert res.exit_code == 0, res.output
    removed = set(json.loads(res.output)["removed"])
    assert building.exists()  # a partial file is left for a day, whatever --older-than says
    building.unlink()
    # the first version's table (both files), stored and static file and program; of the parses,
    # only the edited file's (claim.dl and types.dl did not change, so the edited KB still uses theirs)
    assert removed - first["parsed"] == first["table"] | first["stored"] | first["static"] | first["program"]
    assert len(removed & first["parsed"]) == 1
    assert _names(cache, "lock") == first["lock"]
    after = {e.path.name for e in cachedir.entries(cache)}
    assert after == {n for kind in cachedir.KINDS for n in second[kind]} - removed

    reopened = _open(root, "96372,99213,1\n96372,99214,1\n", comment="// edited\n")
    assert [b.reused for b in reopened.kb.store.builds] == [True]  # type: ignore[attr-defined]
    assert {e.path.name for e in cachedir.entries(cache)} == after  # nothing had to be made again


def test_a_young_file_is_kept_and_an_old_one_goes(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    _open(root, "96372,99213,1\n")
    old_tables = _names(cache, "table")
    _open(root, "96372,99214,1\n")
    sqlite = next(cache / n for n in old_tables if n.endswith(".sqlite"))
    month_ago = sqlite.stat().st_mtime - 30 * 86400
    os.utime(sqlite, (month_ago, month_ago))
    res = CliRunner().invoke(main, ["cache", "--kb", str(root), "--prune", "--older-than", "14", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["removed"] == [sqlite.name]  # its DuckDB copy is younger: kept
    assert not sqlite.exists()


def test_text_report_by_kind(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    _open(root, "96372,99213,1\n")
    res = CliRunner().invoke(main, ["cache", "--kb", str(root)])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line.split() for line in res.output.splitlines()[2:] if line.strip()}
    assert set(rows) == {"table", "stored", "static", "program", "parsed", "lock"}
    assert rows["table"][1] == "2" and rows["lock"][1] == "1"  # the SQLite table and its DuckDB copy
