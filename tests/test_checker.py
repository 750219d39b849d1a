"""The checker on the real KB (clean) and on a KB with one of every mistake (golden output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, check_golden
from engine import checks
from engine.diagnostics import format_diagnostic
from engine.kb import check_kb
from engine.program import program_from_text


def _render(kb) -> str:
    return "\n".join(format_diagnostic(d, kb.program.source_line(d.location.path, d.location.line))
                     for d in kb.diagnostics) + "\n"


def test_bundled_kb_is_clean() -> None:
    kb = check_kb(ROOT / "kb")
    assert [d.header() for d in kb.diagnostics] == []
    assert kb.compiled is not None


def test_broken_kb_reports_every_problem_with_locations(tmp_path: Path) -> None:
    kb = check_kb(Path("tests/fixtures/broken_kb"), cache_dir=tmp_path)
    check_golden(ROOT / "tests/golden/check/broken_kb.txt", _render(kb))
    codes = {d.code for d in kb.errors}
    for expected in ("syntax", "undeclared-relation", "arity-mismatch", "type-mismatch", "unbound-variable",
                     "unsafe-negation", "cyclic-negation", "duplicate-rule-id", "missing-annotation",
                     "table-header", "table-row", "table-missing", "claim-fact"):
        assert expected in codes
    # sorted by location
    keys = [d.sort_key() for d in kb.diagnostics]
    assert keys == sorted(keys)


def test_csv_row_errors_name_the_row(tmp_path: Path) -> None:
    kb = check_kb(Path("tests/fixtures/broken_kb"), cache_dir=tmp_path)
    rows = [d for d in kb.diagnostics if d.code == "table-row"]
    assert [d.location.line for d in rows] == [3, 4]
    assert "row 2: column c2" in rows[0].message
    assert rows[0].location.path == "broken_kb/tables/edit.csv"


def test_table_problems_are_reported_again_from_the_cache(tmp_path: Path) -> None:
    first = check_kb(Path("tests/fixtures/broken_kb"), cache_dir=tmp_path)
    second = check_kb(Path("tests/fixtures/broken_kb"), cache_dir=tmp_path)
    assert [d.header() for d in first.diagnostics] == [d.header() for d in second.diagnostics]
    assert all(b.reused for b in second.table_builds)


def _diags(text: str) -> list[str]:
    prog = program_from_text({"t.dl": text})
    return [d.header() for d in checks.run_passes(prog)]


def test_negation_cycle_names_the_cycle() -> None:
    out = _diags(".decl a(x: number)\n.decl b(x: number)\n.decl s(x: number)\n"
                 "a(x) :- s(x), !b(x).\nb(x) :- s(x), a(x).\n")
    assert any("cyclic-negation" in d and "a, b" in d for d in out), out


def test_underscore_in_head_and_unsafe_comparison() -> None:
    out = _diags(".decl p(x: number)\n.decl q(x: number)\nq(_) :- p(_).\nq(x) :- p(x), y < 3.\n")
    assert any("underscore-in-head" in d for d in out)
    assert any("unbound-variable" in d and "y" in d for d in out)


def test_message_template_must_name_rule_variables() -> None:
    text = (".decl line(l: number)\n.decl deny(l: number, r: symbol)\n"
            "/**\n * @id a.b\n * @title t\n * @summary s\n * @source x\n * @kind policy\n"
            " * @severity deny\n * @group CO\n * @carc 16\n * @message line {l} code {nope}\n */\n"
            'deny(l, "a.b") :- line(l).\n')
    out = _diags(text)
    assert any("{nope}" in d for d in out), out


@pytest.mark.parametrize("bad,code", [
    ('.decl p(x: number)\np("a").\n', "type-mismatch"),
    (".decl p(x: Nope)\n", "unknown-type"),
    (".decl p(x: number)\n.decl p(x: number)\n", "duplicate-declaration"),
    (".decl p(x: number)\np(1, 2).\n", "arity-mismatch"),
])
def test_small_mistakes(bad: str, code: str) -> None:
    assert any(f"[{code}]" in d for d in _diags(bad))
