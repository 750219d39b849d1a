"""Policy test cases: every `kb/**/*.cases.json` file, one pytest case per listed case.

A cases file sits next to the rule file it tests and holds `{"cases": [...]}`; each case has a
`name`, the rule ids it is `about`, a `claim` (the JSON engine/claims.py reads) and `expect`:
per line number, the `decision` and the sorted ids of the reasons in force on that line (deny
and warn reasons not overridden), and optionally `overridden`, the ids of reasons present but
set aside by a higher-precedence rule. Every line of the claim is listed.

Besides the cases themselves:
- every rule with an `@id` must be in the `about` of a case where it fires and of a case where
  it does not (a near miss), judged from the adjudication results, not from the lists;
- every denial names a group code, a CARC and at least one source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import testing
from engine.api import PolicyKB
from engine.testing import Case

ROOT = Path(__file__).resolve().parent.parent
KB_DIR = ROOT / "kb"


def load_cases() -> list[Case]:
    """The bundled KB's cases (tests/test_answers.py reads them too)."""
    return testing.load_cases(KB_DIR)


CASES = load_cases()


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(KB_DIR)


@pytest.fixture(scope="module")
def outcomes(kb: PolicyKB) -> list[testing.CaseOutcome]:
    """Every case adjudicated once (the coverage tests read them all)."""
    return testing.run_cases(kb, CASES)


@pytest.fixture(scope="module")
def results(outcomes: list[testing.CaseOutcome]) -> dict[str, dict[str, Any]]:
    return {o.case.id: o.result.to_dict() for o in outcomes if o.result is not None}


def test_cases_found() -> None:
    files = {c.file.relative_to(KB_DIR).as_posix() for c in CASES}
    assert {"policy/injection_96372.cases.json", "ncci/edits.cases.json",
            "codes/validity.cases.json"} <= files
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case names must be unique within a file"


def test_each_cases_file_sits_next_to_a_rule_file() -> None:
    for path in sorted(KB_DIR.rglob("*.cases.json")):
        rules = path.with_name(path.name.removesuffix(".cases.json") + ".dl")
        assert rules.is_file(), f"{path.relative_to(ROOT)} has no {rules.name} beside it"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(kb: PolicyKB, case: Case) -> None:
    claim_lines = sorted(str(ln["line"]) for ln in case.claim["lines"])
    assert sorted(case.expect) == claim_lines, "expect must list every line of the claim"
    outcome = testing.run_case(kb, case)
    assert outcome.error is None, outcome.error
    assert not outcome.mismatches, "\n".join(
        f"line {m.line}: expected {m.expected}, got {m.actual}" for m in outcome.mismatches)


# ---- Coverage: each rule fires in some case and stays quiet in a near miss --------------


def test_every_rule_has_a_firing_case_and_a_near_miss(
        kb: PolicyKB, outcomes: list[testing.CaseOutcome]) -> None:
    cov = testing.coverage(kb, outcomes)
    assert cov.rules, "the KB has no rules with an @id"
    assert not cov.unobserved_rules, "rules with an @id whose effect no result shows"
    missing = [f"{rid}: no case about it where it fires" for rid in cov.never_fired]
    missing += [f"{rid}: no near-miss case about it where it does not fire" for rid in cov.no_near_miss]
    assert not missing, "\n".join(missing)


def test_about_names_real_rules(kb: PolicyKB) -> None:
    ids = {r.rule_id for r in kb.kb.program.rules if r.rule_id}
    unknown = sorted({(c.id, rid) for c in CASES for rid in c.about if rid not in ids})
    assert not unknown


def test_expected_rules_are_real_rules(kb: PolicyKB) -> None:
    ids = {r.rule_id for r in kb.kb.program.rules if r.rule_id}
    named = {(c.id, rid) for c in CASES for e in c.expect.values()
             for rid in [*e["rules"], *e.get("overridden", [])]}
    assert not sorted((cid, rid) for cid, rid in named if rid not in ids)


def test_denials_carry_denial_codes_and_a_source(results: dict[str, dict[str, Any]]) -> None:
    bad = []
    seen = set()
    for cid, result in results.items():
        for line in result["lines"]:
            for r in line["reasons"]:
                if r["severity"] != "deny":
                    continue
                seen.add(r["rule"])
                if not r["group"] or not r["carc"] or not r["sources"]:
                    bad.append(f"{cid} line {line['line']}: {r['rule']} group={r['group']!r} "
                               f"carc={r['carc']!r} sources={r['sources']!r}")
    assert seen, "no case produced a denial"
    assert not bad, "\n".join(bad)


def test_every_denying_rule_declares_group_carc_and_source(kb: PolicyKB) -> None:
    """The same, from the annotations, for rules no case happens to fire."""
    bad = []
    for rule in kb.kb.program.rules:
        if not rule.rule_id or rule.head.pred != "deny":
            continue
        doc = rule.doc
        sources = [e for e in doc.entries if e.key == "source"]
        if not doc.get("group") or not doc.get("carc") or not sources:
            bad.append(rule.rule_id)
    assert not bad
