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

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.api import PolicyKB
from engine.claims import parse_claim
from engine.syntax import nodes as A

ROOT = Path(__file__).resolve().parent.parent
KB_DIR = ROOT / "kb"


@dataclass(frozen=True)
class Case:
    file: Path
    name: str
    about: tuple[str, ...]
    claim: dict[str, Any]
    expect: dict[str, dict[str, Any]]

    @property
    def id(self) -> str:
        return f"{self.file.name.removesuffix('.cases.json')}: {self.name}"


def load_cases() -> list[Case]:
    cases = []
    for path in sorted(KB_DIR.rglob("*.cases.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for raw in data["cases"]:
            cases.append(Case(path, raw["name"], tuple(raw["about"]), raw["claim"], raw["expect"]))
    return cases


CASES = load_cases()


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(KB_DIR)


@pytest.fixture(scope="module")
def results(kb: PolicyKB) -> dict[str, dict[str, Any]]:
    """Every case adjudicated once, by case id (the coverage tests read them all)."""
    return {c.id: adjudicate(kb, c) for c in CASES}


def adjudicate(kb: PolicyKB, case: Case) -> dict[str, Any]:
    return kb.adjudicate(parse_claim(case.claim), proofs=False, remedies=False).to_dict()


def observed(line: dict[str, Any]) -> dict[str, Any]:
    """A result line in the shape of an `expect` entry."""
    reasons = line["reasons"]
    out: dict[str, Any] = {
        "decision": line["decision"],
        "rules": sorted(r["rule"] for r in reasons if not r.get("overridden_by")),
    }
    overridden = sorted(r["rule"] for r in reasons if r.get("overridden_by"))
    if overridden:
        out["overridden"] = overridden
    return out


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
    result = adjudicate(kb, case)
    got = {str(ln["line"]): observed(ln) for ln in result["lines"]}
    for number, want in case.expect.items():
        want = {"decision": want["decision"], "rules": sorted(want["rules"]),
                **({"overridden": sorted(want["overridden"])} if want.get("overridden") else {})}
        if "overridden" not in case.expect[number]:
            got[number].pop("overridden", None)  # not asserted unless the case says
        assert got[number] == want, f"line {number}"


# ---- Coverage: each rule fires in some case and stays quiet in a near miss --------------


def rule_observers(kb: PolicyKB) -> dict[str, list[tuple[str, str | None]]]:
    """Rule id -> how to see it in a result: (reason rule, overridden_by) pairs.

    A rule deriving `deny(_, "id")` or `warn(_, "id")` shows as a reason with that id (in force
    or overridden); a rule deriving `overridden(_, "rule", "by")` shows as a reason `rule`
    marked overridden by `by`.
    """
    out: dict[str, list[tuple[str, str | None]]] = {}
    for rule in kb.kb.program.rules:
        rid = rule.rule_id
        if not rid:
            continue
        head = rule.head
        consts = [a.value if isinstance(a, A.Const) else None for a in head.args]
        if head.pred in ("deny", "warn"):
            assert consts[1] == rid, f"{rid}: head {head} names another rule id"
            out.setdefault(rid, []).append((rid, None))
        elif head.pred == "overridden":
            assert isinstance(consts[1], str) and isinstance(consts[2], str), str(head)
            out.setdefault(rid, []).append((consts[1], consts[2]))
        else:
            pytest.fail(f"{rid}: no way to observe a rule deriving {head.pred}")
    return out


def fires(result: dict[str, Any], signs: list[tuple[str, str | None]]) -> bool:
    for line in result["lines"]:
        for r in line["reasons"]:
            for rule, by in signs:
                if r["rule"] == rule and (by is None or r.get("overridden_by") == by):
                    return True
    return False


def test_every_rule_has_a_firing_case_and_a_near_miss(
        kb: PolicyKB, results: dict[str, dict[str, Any]]) -> None:
    observers = rule_observers(kb)
    assert observers, "the KB has no rules with an @id"
    missing = []
    for rid, signs in sorted(observers.items()):
        about = [c for c in CASES if rid in c.about]
        fired = [c.id for c in about if fires(results[c.id], signs)]
        quiet = [c.id for c in about if not fires(results[c.id], signs)]
        if not fired:
            missing.append(f"{rid}: no case about it where it fires")
        if not quiet:
            missing.append(f"{rid}: no near-miss case about it where it does not fire")
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
