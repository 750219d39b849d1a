"""One docs entry point: `policykb docs` and `python -m engine.docs` are the same command, and a
broken KB gets the checker's report and exit code 1 (as `policykb check` does), not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from conftest import ROOT
from engine.cli import main

BROKEN = "tests/fixtures/broken_kb"


def test_docs_on_a_broken_kb_prints_the_diagnostics_and_exits_1(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("POLICYKB_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "site"
    res = CliRunner().invoke(main, ["docs", "--kb", BROKEN, "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    # the same lines `policykb check` prints, with the source line under each
    assert f"{BROKEN}/rules.dl:20:12: error[arity-mismatch]" in res.stderr
    assert f"{BROKEN}/rules.dl:45:9: error[outcome-id]" in res.stderr
    assert "19 error(s), 2 warning(s)" in res.stderr
    assert not out.exists()


def test_docs_on_a_missing_kb_is_an_input_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("POLICYKB_CACHE_DIR", str(tmp_path / "cache"))
    res = CliRunner().invoke(main, ["docs", "--kb", str(tmp_path / "nope"), "--out", str(tmp_path / "site")])
    assert res.exit_code == 2
    assert "error[kb-missing]" in res.stderr


def test_python_m_engine_docs_is_the_same_command(tmp_path: Path) -> None:
    env = dict(os.environ, POLICYKB_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "engine.docs", "--kb", BROKEN, "--out", str(tmp_path / "site")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{BROKEN}/rules.dl:20:12: error[arity-mismatch]" in proc.stderr
    assert "19 error(s), 2 warning(s)" in proc.stderr
    helped = subprocess.run([sys.executable, "-m", "engine.docs", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: python -m engine.docs [OPTIONS]")
    cli_help = CliRunner().invoke(main, ["docs", "--help"]).output
    assert helped.stdout.split("\n", 1)[1] == cli_help.split("\n", 1)[1]  # same text after the usage line


def test_docs_on_a_broken_guide_scenarios_file_names_the_file_and_exits_2(tmp_path: Path, monkeypatch) -> None:
    import shutil

    monkeypatch.setenv("POLICYKB_CACHE_DIR", str(tmp_path / "cache"))
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "kb", kb)
    (kb / "guide.scenarios.json").write_text('{"scenarios": [{"title": "no claim"}]}')
    res = CliRunner().invoke(main, ["docs", "--kb", str(kb), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "guide.scenarios.json: scenarios[0] needs a \"title\" string and a \"claim\" object" in res.stderr
    assert "Traceback" not in res.output
