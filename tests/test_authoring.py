"""Authoring tools: `policykb test` (cases, failures with proofs, coverage) and the lint
warnings of `policykb check` (one fixture rule per warning code, a golden of the diagnostics),
on the bundled KB and on tests/fixtures/lint_kb."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT, check_golden
from engine import lint, testing
from engine.api import PolicyKB
from engine.cli import main
from engine.diagnostics import format_diagnostic
from engine.explain.remedies import RemedySpec, RemedySpecError, parse_spec
from engine.kb import check_kb
from engine.program import program_from_text

FIXTURE = ROOT / "tests/fixtures/lint_kb"

# what each fixture rule or fact was written to trigger: (code, file, line)
EXPECTED = {
    ("code-range-inverted", "lint_kb/codes.dl", 15),
    ("code-range-overlap", "lint_kb/codes.dl", 17),
    ("unknown-code-in-fact", "lint_kb/codes.dl", 26),
    ("rule-shadowed", "lint_kb/rules.dl", 7),
    ("rule-without-case", "lint_kb/rules.dl", 45),
    ("rule-never-fires", "lint_kb/rules.dl", 57),
    ("remedy-syntax", "lint_kb/rules.dl", 69),
    ("remedy-unknown-code", "lint_kb/rules.dl", 70),
    ("remedy-unknown-modifier", "lint_kb/rules.dl", 71),
    ("remedy-placeholder", "lint_kb/rules.dl", 72),
    ("no-precedence", "lint_kb/rules.dl", 94),
}


@pytest.fixture(scope="module")
def fixture_kb(tmp_path_factory: pytest.TempPathFactory):
    return check_kb(FIXTURE, cache_dir=tmp_path_factory.mktemp("cache"))


# ---- lint -----------------------------------------------------------------------------------


def test_each_lint_code_fires_exactly_where_the_fixture_says(fixture_kb) -> None:
    assert fixture_kb.errors == []
    warnings = lint.lint_kb(fixture_kb)
    assert {(d.code, d.location.path, d.location.line) for d in warnings} == EXPECTED
    assert all(d.notes and d.notes[0].startswith("fix: ") for d in warnings)
    text = (
        "\n".join(
            format_diagnostic(d, fixture_kb.program.source_line(d.location.path, d.location.line)) for d in warnings
        )
        + "\n"
    )
    check_golden(ROOT / "tests/golden/lint/lint_kb.txt", text)


def test_near_misses_do_not_warn(fixture_kb) -> None:
    """The nested ranges (chemo inside drug), the `clear` rules (`!blocked(c, _)` is stronger than
    `!blocked(c, "x")`, so neither subsumes the other), the override with a consistent
    @precedence and the well-formed remedies (add-modifier 59, replace-code 90471) are silent."""
    lines = {d.location.line for d in lint.lint_kb(fixture_kb) if d.location.path == "lint_kb/codes.dl"}
    assert not lines & {19, 20}
    rules_lines = {d.location.line for d in lint.lint_kb(fixture_kb) if d.location.path == "lint_kb/rules.dl"}
    assert not rules_lines & {15, 16, 29, 73, 86}


def test_check_prints_warnings_and_strict_makes_them_errors() -> None:
    plain = CliRunner().invoke(main, ["check", str(FIXTURE)])
    assert plain.exit_code == 0, plain.output
    assert "warning[rule-shadowed]" in plain.output
    assert "0 error(s), 11 warning(s)" in plain.output
    strict = CliRunner().invoke(main, ["check", str(FIXTURE), "--strict"])
    assert strict.exit_code == 1, strict.output
    assert "error[rule-shadowed]" in strict.output
    assert "11 error(s), 0 warning(s)" in strict.output


def test_bundled_kb_is_lint_clean() -> None:
    """Every override in the KB states a consistent precedence (prec.facility_em_paid: inj.facility_em
    at 20 over ncci.ptp at 30; inj.chemo at 40 over inj.vaccine at 41), every deny rule has a case."""
    kb = check_kb(ROOT / "kb")
    warnings = lint.lint_kb(kb)
    assert kb.errors == []
    assert [(d.code, d.location.path, d.message) for d in warnings] == []


def test_a_precedence_that_contradicts_the_override_warns(fixture_kb) -> None:
    prog = fixture_kb.program
    rules = [
        dataclasses.replace(
            r,
            doc=dataclasses.replace(
                r.doc,
                entries=tuple(dataclasses.replace(e, value="5") if e.key == "precedence" else e for e in r.doc.entries),
            ),
        )
        if r.rule_id == "fx.em_injection"
        else r
        for r in prog.rules
    ]
    ctx = lint.LintContext(dataclasses.replace(prog, rules=rules))
    found = [d.message for d in lint.lint_precedence(ctx)]
    assert any("ranks fx.em_injection (5) at or above fx.remedies (10)" in m for m in found), found


def _rules(text: str):
    return program_from_text(
        {"t.dl": ".decl p(x: number)\n.decl q(x: number, y: number)\n.decl r(x: number)\n" + text}
    ).rules


@pytest.mark.parametrize(
    ("general", "specific", "expected"),
    [
        ("r(x) :- p(x).", "r(x) :- p(x), q(x, 1).", True),
        ("r(x) :- p(x), x < 3.", "r(y) :- p(y), 3 > y, q(y, y).", True),  # renamed, comparison mirrored
        ("r(x) :- p(x), !q(x, _).", "r(x) :- p(x), !q(x, 1).", False),  # no q at all is stronger
        ("r(x) :- p(x), !q(x, 1).", "r(x) :- p(x), !q(x, _).", False),
        ("r(x) :- p(x), !q(x, _).", "r(x) :- p(x), !q(x, _), q(x, 2).", True),
        ("r(x) :- p(x), q(x, 1).", "r(x) :- p(x), q(x, 2).", False),
        ("r(x) :- q(x, y), q(y, x).", "r(x) :- q(x, x).", True),
        ("r(x) :- q(x, x).", "r(x) :- q(x, y), q(y, x).", False),
    ],
)
def test_subsumption_is_sound(general: str, specific: str, expected: bool) -> None:
    g, s = _rules(general + "\n" + specific)
    assert lint.subsumes(g, s) is expected


def test_the_same_rule_twice_is_reported_once() -> None:
    prog = program_from_text({"t.dl": ".decl p(x: number)\n.decl r(x: number)\np(1).\nr(x) :- p(x).\nr(y) :- p(y).\n"})
    found = lint.lint_shadowed(lint.LintContext(prog))
    assert [(d.code, d.location.line) for d in found] == [("rule-shadowed", 5)]


def test_remedy_grammar() -> None:
    assert parse_spec("add-modifier 25 59") == RemedySpec("add-modifier", ("25", "59"))
    assert parse_spec("set-units {limit}") == RemedySpec("set-units", ("{limit}",))
    assert parse_spec("replace-modifier {m} 25") == RemedySpec("replace-modifier", ("{m}", "25"))
    for bad in (
        "",
        "add-modifier",
        "set-units two",
        "replace-code",
        "replace-code 1 2",
        "replace-modifier 25",
        "swap 25",
    ):
        with pytest.raises(RemedySpecError):
            parse_spec(bad)


# ---- policykb test --------------------------------------------------------------------------


def test_failing_case_shows_expected_actual_and_the_proof() -> None:
    res = CliRunner().invoke(main, ["test", str(FIXTURE)])
    assert res.exit_code == 1, res.output
    assert "FAIL  lint_kb/rules.cases.json  deliberately wrong: 99212 is expected to pay" in res.output
    expected_row = next(ln for ln in res.output.splitlines() if "expected" in ln and "PAY" in ln)
    actual_row = next(ln for ln in res.output.splitlines() if "actual" in ln and "DENY" in ln)
    assert "fx.remedies" in actual_row and "fx.remedies" not in expected_row
    assert 'deny(1, "fx.remedies")' in res.output  # the proof of the actual decision
    assert "2 passed, 1 failed of 3 case(s)" in res.output


def test_coverage_json_on_the_fixture() -> None:
    res = CliRunner().invoke(main, ["test", str(FIXTURE), "--coverage", "--format", "json"])
    assert res.exit_code == 1
    report = json.loads(res.output)
    assert (report["cases"], report["failed"]) == (3, 1)
    [failed] = [o for o in report["outcomes"] if not o["passed"]]
    assert failed["mismatches"] == [
        {
            "line": "1",
            "expected": {"decision": "pay", "rules": []},
            "actual": {"decision": "deny", "rules": ["fx.remedies"]},
        }
    ]
    [actual] = failed["actual_lines"]
    assert actual["reasons"][0]["rule"] == "fx.remedies" and actual["reasons"][0]["proof"]["rule"] == "fx.remedies"
    cov = report["coverage"]
    assert set(cov["never_fired"]) == {"fx.never", "fx.no_case", "fx.override_stated", "fx.override_unstated"}
    assert set(cov["no_near_miss"]) == {"fx.no_case", "fx.override_unstated"}
    assert "orphan" in cov["relations_untouched"] and "line" not in cov["relations_untouched"]
    assert {t["relation"]: t["rows"] for t in cov["tables"]} == {"code_table": 5, "modifier": 2}


def test_cases_file_errors_name_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "x.dl").write_text(".decl deny(line: number, rule: symbol)\n", encoding="utf-8")
    (tmp_path / "x.cases.json").write_text(
        '{"cases": [{"name": "a", "claim": {}, "expect": {"1": {}}}]}', encoding="utf-8"
    )
    with pytest.raises(testing.CaseFileError) as info:
        testing.load_cases(tmp_path)
    assert info.value.where == "case 'a': expect.1"
    res = CliRunner().invoke(main, ["test", str(tmp_path)])
    assert res.exit_code == 2
    assert "x.cases.json" in res.output and "expect.1" in res.output


@pytest.fixture(scope="module")
def bundled() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def test_real_case_with_a_wrong_expectation_fails_with_the_proof(bundled: PolicyKB) -> None:
    """Line 3 of this case is 99213 billed without modifier 25 beside 96372 in an office: NCCI
    PTP bundles the E/M. Claiming it pays must fail, and the proof must cite the PTP table row."""
    case = next(c for c in testing.load_cases(ROOT / "kb") if c.name.startswith("office: 96372 + 99213 without 25"))
    wrong = dataclasses.replace(case, expect={**case.expect, "3": {"decision": "pay", "rules": []}})
    outcome = testing.run_case(bundled, wrong, proofs=True)
    assert [(m.line, m.actual["decision"] if m.actual else None) for m in outcome.mismatches] == [("3", "deny")]
    assert outcome.mismatches[0].actual == {"decision": "deny", "rules": ["ncci.ptp"]}
    assert outcome.result is not None
    reason = outcome.result.lines[2].reasons[0]
    assert reason.proof is not None and "ncci_ptp_practitioner" in json.dumps(reason.proof.to_dict())


def test_real_kb_coverage(bundled: PolicyKB) -> None:
    report = testing.run(bundled, ROOT / "kb", with_coverage=True)
    assert not report.failed
    cov = report.coverage
    assert cov is not None
    assert cov.never_fired == [] and cov.no_near_miss == []
    # documentation facts no rule reads: no case can touch them
    assert {"guidance_statement", "guidance_undecidable"} <= set(cov.relations_untouched)
    ptp = next(t for t in cov.tables if t.relation == "ptp")
    assert ptp.rows > 1_000_000 and 1 <= ptp.touched < 100


def test_an_unreadable_cases_file_is_a_lint_warning_naming_it(tmp_path: Path) -> None:
    kb_dir = tmp_path / "mini"
    kb_dir.mkdir()
    (kb_dir / "x.dl").write_text(".decl p(x: number)\np(1).\n", encoding="utf-8")
    (kb_dir / "x.cases.json").write_text("{not json", encoding="utf-8")
    kb = check_kb(kb_dir, cache_dir=tmp_path / "cache")
    assert [(d.code, d.location.path) for d in lint.lint_kb(kb)] == [("cases-unreadable", "mini/x.cases.json")]
