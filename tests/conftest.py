"""Shared fixtures. Golden files regenerate with POLICYKB_REGEN=1."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGEN = os.environ.get("POLICYKB_REGEN") == "1"


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
