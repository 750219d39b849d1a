"""Shared fixtures. Golden files regenerate with POLICYKB_REGEN=1."""

from __future__ import annotations

import os
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
