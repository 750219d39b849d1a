"""Shared fixtures. Golden files regenerate with POLICYKB_REGEN=1."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGEN = os.environ.get("POLICYKB_REGEN") == "1"


def small_program(text: str, tables: Mapping[str, Iterable[tuple]] | None = None) -> tuple[Any, Any]:
    """A one-file test program (t.dl), checked free of errors and compiled, and a Store holding
    `tables`' rows: (CompiledProgram, Store), what the small-program tests evaluate."""
    from engine import checks
    from engine.compiler import compile_program
    from engine.program import program_from_text
    from engine.store import Store

    prog = program_from_text({"t.dl": text})
    assert [d for d in checks.run_passes(prog) if d.is_error] == []
    store = Store(prog)
    for rel, rows in (tables or {}).items():
        store.add_rows(rel, list(rows), "test")
    return compile_program(prog), store


def lint_fixture_kb(root: Path, files: Mapping[str, str]) -> Any:
    """A KB in `root`: the lint fixture's claim model and types (tests/fixtures/lint_kb) plus the
    `.dl` files given as name -> text, opened (a PolicyKB)."""
    from engine.api import PolicyKB

    for name in ("claim.dl", "types.dl"):
        (root / name).write_text((ROOT / "tests/fixtures/lint_kb" / name).read_text(encoding="utf-8"), encoding="utf-8")
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return PolicyKB.open(root)


def record_message_queries(backend: Any) -> list[int]:
    """Record the message queries a DuckDB backend makes from now on: the list returned gets the
    rule index of each `_message_sql` call (the backend is the test's own)."""
    asked: list[int] = []
    real = backend._message_sql

    def recording(index: int, *args: Any, **kw: Any) -> Any:
        asked.append(index)
        return real(index, *args, **kw)

    backend._message_sql = recording
    return asked


def named_claims(generated: int, seed: int) -> Iterator[tuple[str, Any]]:
    """The claims the two-path comparisons walk, each with a name: every bundled example claim
    (its file name), every policy case (file:case) and `generated` claims of the benchmark
    corpus drawn with `seed` ("corpus i")."""
    from benchmarks.corpus import generate, strip_meta
    from benchmarks.tables import shared_tables
    from engine.claims import load_claims, parse_claim
    from engine.testing import load_cases

    for path in sorted((ROOT / "examples").glob("*.json")):
        for claim in load_claims(path):
            yield path.name, claim
    for case in load_cases(ROOT / "kb"):
        yield f"{case.file.name}:{case.name}", parse_claim(case.claim)
    for i, raw in enumerate(generate(shared_tables(), generated, seed)):
        yield f"corpus {i}", parse_claim(strip_meta(raw))


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Diagnostics print paths relative to the working directory: pin it for golden files."""
    monkeypatch.chdir(ROOT)


def check_golden(path: Path, actual: str) -> None:
    """Compare with a golden file, or rewrite it when POLICYKB_REGEN=1."""
    if REGEN or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        if not REGEN:
            pytest.fail(f"golden file {path} was missing and has been written; check it in")
    assert actual == path.read_text(encoding="utf-8"), f"differs from {path} (POLICYKB_REGEN=1 regenerates)"


# The browser tests (built site, service page) drive Debian's chromium through Playwright, never a
# downloaded browser; without either they skip with the reason.
CHROMIUM = os.environ.get("POLICYKB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install playwright==1.65.2)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
