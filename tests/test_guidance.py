"""The 96372 guidance as KB data (kb/policy/guidance_96372.dl) and the rules that cite it.

Every statement is either cited by a rule's @guidance or listed as undecidable with a reason,
never both; every cited id exists; ids run G-96372-01.. without gaps, in document order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.api import PolicyKB

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _rows(kb: PolicyKB, relation: str, arity: int) -> list[tuple]:
    return [tuple(r) for _s, r in kb.evaluator.lookup(relation, (None,) * arity)]


def test_ids_are_sequential_and_sections_are_headings(kb: PolicyKB) -> None:
    statements = _rows(kb, "guidance_statement", 3)
    ids = sorted(str(r[0]) for r in statements)
    assert ids == [f"G-96372-{i:02d}" for i in range(1, len(ids) + 1)]
    source = ROOT.parent / "shared" / "sources" / "000_2ff5f0aa6c5879f6.txt"
    if source.exists():
        text = source.read_text(encoding="utf-8")
        for _id, section, statement in statements:
            assert str(section) in text, section
            assert str(statement) not in text, f"{_id} copies the source; paraphrase it"


def test_every_statement_is_cited_or_undecidable(kb: PolicyKB) -> None:
    ids = {str(r[0]) for r in _rows(kb, "guidance_statement", 3)}
    undecidable = {str(r[0]): str(r[1]) for r in _rows(kb, "guidance_undecidable", 2)}
    cited: dict[str, list[str]] = {}
    for rule in kb.kb.program.rules:
        for gid in (rule.doc.get("guidance") or "").split():
            cited.setdefault(gid, []).append(rule.rule_id or "")
    assert sorted(set(cited) - ids) == [], "cited ids that are no statement"
    assert sorted(set(undecidable) - ids) == []
    assert sorted(ids - set(cited) - set(undecidable)) == [], "neither cited nor undecidable"
    assert sorted(set(cited) & set(undecidable)) == [], "both cited and called undecidable"
    assert all(reason.strip() for reason in undecidable.values())


def test_every_outcome_rule_has_precedence_and_policy_rules_cite_guidance(kb: PolicyKB) -> None:
    for rule in kb.kb.program.rules:
        if rule.head.pred not in ("deny", "warn"):
            continue
        assert (rule.doc.get("precedence") or "").isdigit(), rule.rule_id
        if rule.doc.get("remedy"):
            assert rule.doc.get("remedy_condition"), f"{rule.rule_id}: @remedy without @remedy_condition"
        if (rule.rule_id or "").startswith("inj."):
            assert rule.doc.get("guidance"), f"{rule.rule_id}: no @guidance"
