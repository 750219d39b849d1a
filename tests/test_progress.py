"""A first run says that it is building the table cache, on standard error only, and only then."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from engine.cli import main
from engine.progress import NOTICE, CacheProgress

ROOT = Path(__file__).resolve().parents[1]
SMALL_KB = ROOT / "tests" / "fixtures" / "broken_kb"  # two small tables, quick to build


def test_check_announces_a_table_build_once_and_a_warm_cache_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLICYKB_CACHE_DIR", str(tmp_path))
    notice = NOTICE.format(cache=tmp_path)
    first = CliRunner().invoke(main, ["check", str(SMALL_KB)])
    assert first.stderr.count(notice) == 1
    assert notice not in first.stdout
    second = CliRunner().invoke(main, ["check", str(SMALL_KB)])
    assert "first run" not in second.stderr
    assert second.stdout == first.stdout  # the same diagnostics either way


def test_explain_announces_on_stderr_leaving_stdout_to_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broken KB does not open, but its tables are built first: the notice comes, on stderr."""
    monkeypatch.setenv("POLICYKB_CACHE_DIR", str(tmp_path))
    claim = ROOT / "examples" / "office-96372-with-em.json"
    res = CliRunner().invoke(main, ["explain", str(claim), "--format", "json", "--kb", str(SMALL_KB)])
    assert res.exit_code == 1
    assert res.stdout == ""
    assert NOTICE.format(cache=tmp_path) in res.stderr


def test_on_a_terminal_each_table_gets_a_live_row_count() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with CacheProgress(console, Path("/cache")) as progress:
        progress("ptp", 0)
        progress("ptp", 150_000)
        progress("mue", 0)
        progress("mue", 50_000)
    shown = screen.getvalue()
    assert "building the table cache in /cache" in shown
    assert "150,000 rows" in shown and "50,000 rows" in shown
    assert "ptp" in shown and "mue" in shown


def test_a_warm_cache_prints_nothing() -> None:
    screen = io.StringIO()
    with CacheProgress(Console(file=screen), Path("/cache")):
        pass
    assert screen.getvalue() == ""
