"""Remedy search re-judges only the encounter a candidate change touches.

The encounter key is derived from the rules (engine/explain/encounter.py); these tests check
that the bundled KB yields the NCCI encounter (date of service and rendering provider), that a
search evaluates no line of another encounter, and that every example claim and policy case
gets the same remedies as a search that re-adjudicates the whole claim for every candidate.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.api import PolicyKB
from engine.claims import Claim, HistoryLine, claim_to_facts, load_claims, parse_claim
from engine.explain import encounter
from engine.testing import load_cases

ROOT = Path(__file__).resolve().parent.parent
KNEE = ROOT / "examples" / "knee-surgery-27380-27540-june-2024.json"


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _whole_claim(kb: PolicyKB, claim: Claim) -> dict[str, Any]:
    """The result when every candidate is judged on the whole claim, every relation and rule
    asked again (the search before encounters, reuse and needed rules)."""
    saved, needed = kb.adjudicator.locality, kb.adjudicator._for_denials
    kb.adjudicator.locality = None
    kb.adjudicator._for_denials = None  # type: ignore[assignment]
    kb.evaluator.unaffected = lambda _before, _after: frozenset()  # type: ignore[method-assign]
    kb.evaluator.unaffected_rules = lambda _before, _after: frozenset()  # type: ignore[method-assign]
    try:
        return kb.adjudicate(claim, proofs=True, remedies=True).to_dict()
    finally:
        kb.adjudicator.locality, kb.adjudicator._for_denials = saved, needed
        del kb.evaluator.unaffected, kb.evaluator.unaffected_rules


def test_bundled_kb_key_is_date_and_rendering_provider(kb: PolicyKB) -> None:
    loc = kb.adjudicator.locality
    assert loc is not None
    attrs = [a.name for a in kb.kb.program.decls["line"].attrs]
    assert [attrs[i] for i in loc.key] == ["dos", "npi"]
    assert {"line", "line_modifier", "line_doc"} <= loc.line_relations
    assert "history" not in loc.line_relations  # keyed by the history claim, not a line


def _two_encounters() -> Claim:
    """The knee example (27380 and 27540 on 2024-06-01, one surgeon: a PTP pair) plus a visit
    by the same surgeon two weeks later and a joint injection that day by another provider."""
    raw = json.loads(KNEE.read_text(encoding="utf-8"))
    first = raw["lines"][0]
    later = copy.deepcopy(first) | {"line": 3, "code": "99213", "service_date": "2024-06-15", "pos": "11"}
    other = copy.deepcopy(first) | {"line": 4, "code": "20610", "rendering_npi": "1467585592", "pos": "11"}
    raw["lines"] += [later, other]
    return parse_claim(raw)


def test_search_evaluates_only_the_touched_encounter(kb: PolicyKB, monkeypatch: pytest.MonkeyPatch) -> None:
    claim = _two_encounters()
    evaluated: list[list[tuple]] = []  # the `line` facts of every evaluation
    real = kb.evaluator.evaluate

    def spy(facts, **kw):  # type: ignore[no-untyped-def]
        evaluated.append(list(facts["line"]))
        return real(facts, **kw)

    monkeypatch.setattr(kb.evaluator, "evaluate", spy)
    result = kb.adjudicate(claim, proofs=True, remedies=True)
    monkeypatch.undo()
    ptp = [r for n in (1, 2) for r in result.line(n).reasons if r.rule == "ncci.ptp"]  # type: ignore[union-attr]
    assert ptp and all(r.remedies is not None for r in ptp)
    assert any(r.remedies for r in ptp), "the PTP pair admits a modifier remedy"
    assert {row[0] for row in evaluated[0]} == {1, 2, 3, 4}  # the claim itself, once
    search = evaluated[1:]
    assert search, "the search judged candidate claims"
    for rows in search:
        numbers = {row[0] for row in rows}
        encounters = {(row[2], row[4]) for row in rows}  # (dos, npi)
        assert len(encounters) == 1, f"a candidate evaluation mixed encounters: lines {sorted(numbers)}"
        if numbers & {1, 2}:
            assert numbers == {1, 2}
    assert result.to_dict() == _whole_claim(kb, claim)


def _claims() -> Iterator[tuple[str, Claim]]:
    for path in sorted((ROOT / "examples").glob("*.json")):
        (claim,) = load_claims(path)
        yield path.stem, claim
    for case in load_cases(ROOT / "kb"):
        yield case.id, parse_claim(case.claim)
    yield "two encounters", _two_encounters()


CLAIMS = list(_claims())


@pytest.mark.parametrize("claim", [c for _n, c in CLAIMS], ids=[n for n, _c in CLAIMS])
def test_remedies_match_whole_claim_search(kb: PolicyKB, claim: Claim) -> None:
    assert kb.adjudicate(claim, proofs=True, remedies=True).to_dict() == _whole_claim(kb, claim)


def test_claim_using_a_rule_constant_is_judged_whole(kb: PolicyKB) -> None:
    """A history claim whose id is the source constant the rules give this claim's own lines
    ("this claim") would be read as this claim's lines: such a claim is never split."""
    loc = kb.adjudicator.locality
    assert loc is not None and "this claim" in loc.marks
    claim = _two_encounters()
    first = claim.lines[0]
    changed = dataclasses.replace(claim, lines=(dataclasses.replace(first, units=2), *claim.lines[1:]))
    assert loc.touched(claim, changed) == {(first.service_date, first.rendering_npi)}
    past = HistoryLine("this claim", 1, first.service_date, "27540", (), 1, "22", first.rendering_npi)
    claim2 = dataclasses.replace(claim, history=(past,))
    changed2 = dataclasses.replace(changed, history=(past,))
    assert loc.touched(claim2, changed2) is None
    assert kb.adjudicate(claim2, proofs=True, remedies=True).to_dict() == _whole_claim(kb, claim2)


def test_a_rule_joining_lines_on_the_code_alone_defeats_locality(kb: PolicyKB) -> None:
    """Locality is proved, not assumed: a rule relating two lines with no shared date and
    provider leaves no encounter key, and every candidate is judged on the whole claim."""
    cp = kb.kb.compiled
    assert cp is not None
    from engine.ir import CompiledRule, IAtom, IConst, IVar

    def v(name: str) -> IVar:
        return IVar(name)

    line = cp.engine_name("line", materialised=True)
    extra = CompiledRule(
        len(cp.rules),
        None,
        IAtom("deny", cp.engine_name("deny", materialised=False), (v("l"), IConst("test.same_code"))),
        (
            IAtom("line", line, (v("l"), v("c"), v("d"), v("_1"), v("n"), v("_2"))),
            IAtom("line", line, (v("l2"), v("c"), v("d2"), v("_3"), v("n2"), v("_4"))),
        ),
    )
    assert encounter.analyse(dataclasses.replace(cp, rules=[*cp.rules, extra]), kb.kb.program) is None


# -- reuse of the claim's own decision (engine/explain/rejudge.py) ---------------------------


def _mue_claim() -> Claim:
    """20610 (arthrocentesis, major joint) has an MUE of 2 units per patient, provider and date
    with MAI 3 (kb/tables/ncci_mue_practitioner.csv), so ncci.mue.date_clinical sums the units
    of every 20610 line of the encounter. On 2024-06-01: line 1 with 3 units and line 2 with 1
    (4 in all); on 2024-06-15, same provider: line 3 with 3 units alone."""
    raw = json.loads(KNEE.read_text(encoding="utf-8"))
    first = raw["lines"][0]
    lines = [(1, "2024-06-01", 3), (2, "2024-06-01", 1), (3, "2024-06-15", 3)]
    raw["lines"] = [
        copy.deepcopy(first) | {"line": n, "code": "20610", "service_date": d, "units": u} for n, d, u in lines
    ]
    return parse_claim(raw)


def _mue_reason(result: Any, line: int) -> Any:
    (reason,) = [r for r in result.line(line).reasons if r.rule == "ncci.mue.date_clinical"]
    return reason


def test_a_candidate_is_judged_with_the_other_lines_of_its_encounter(kb: PolicyKB) -> None:
    """Reporting 2 units on line 1 still leaves 3 units of 20610 on the date (line 2 keeps its
    unit): the candidate reaches the sum over the encounter, so line 1 stays denied. Line 3,
    alone on its date, pays with 2 units: the sum is taken again after the change, not from
    the decision (where it was 3). A search that judged a line alone, or kept the decision's
    sums, would offer the first change or block the second."""
    claim = _mue_claim()
    result = kb.adjudicate(claim, proofs=True, remedies=True)
    first, third = _mue_reason(result, 1), _mue_reason(result, 3)
    assert first.remedies == []
    assert [b["change"] for b in first.blocked_options] == ["report 2 unit(s) on line 1 instead of 3"]
    assert "ncci.mue.date_clinical" in first.blocked_options[0]["blocked_by"]
    assert _mue_reason(result, 2).remedies == []  # 1 unit: nothing to lower it to
    assert [m["change"] for m in third.remedies] == ["report 2 unit(s) on line 3 instead of 3"]
    assert result.to_dict() == _whole_claim(kb, claim)


def test_search_reads_the_decision_instead_of_evaluating_again(kb: PolicyKB, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the claim's decision at hand, the search evaluates no encounter before a change:
    every evaluation after the decision is of a candidate (or of a rule asked alone)."""
    claim = _two_encounters()
    calls: list[dict[str, Any]] = []
    real = kb.evaluator.evaluate

    def spy(facts: Any, **kw: Any) -> Any:
        calls.append(kw)
        return real(facts, **kw)

    monkeypatch.setattr(kb.evaluator, "evaluate", spy)
    result = kb.adjudicate(claim, proofs=True, remedies=True)
    monkeypatch.undo()
    assert len(calls) > 1 and not calls[0]  # the decision, then the search
    assert all(kw.get("known") is not None for kw in calls[1:])
    assert result.to_dict() == _whole_claim(kb, claim)


@pytest.mark.parametrize("claim", [_two_encounters(), _mue_claim()], ids=["two encounters", "mue"])
def test_a_model_from_elsewhere_is_not_read_as_the_decision(kb: PolicyKB, claim: Claim) -> None:
    """A model handed in (a batch backend's) may not hold every relation: the search then
    evaluates the touched encounters itself, and answers the same."""
    model = kb.adjudicator.evaluate(claim)
    given = kb.adjudicator.adjudicate(claim, proofs=True, remedies=True, model=model)
    assert given.to_dict() == kb.adjudicate(claim, proofs=True, remedies=True).to_dict()


@pytest.mark.parametrize("claim", [_two_encounters(), _mue_claim()], ids=["two encounters", "mue"])
def test_decision_rows_within_an_encounter_are_its_own_evaluation(kb: PolicyKB, claim: Claim) -> None:
    """Locality.within, on the whole claim's rows, gives what evaluating one encounter's lines
    alone derives: the same rows for a relation that names its encounter, and at least those
    rows for any other (a demand relation keeps the other encounters' rows, which nothing of
    this encounter reads)."""
    loc = kb.adjudicator.locality
    assert loc is not None
    whole = kb.adjudicator.evaluate(claim)
    facts = claim_to_facts(claim)["line"]
    encounters = {loc.encounter(row) for row in facts}
    assert len(encounters) >= 2
    named = 0
    for enc in encounters:
        lines = {int(row[0]) for row in facts if loc.encounter(row) == enc}
        alone = kb.adjudicator.evaluate(dataclasses.replace(claim, lines=tuple(x for x in claim.lines if x.line in lines)))
        for rel, rows in whole.relations.items():
            kept = loc.within(rel, rows, lines, {enc})
            assert kept is not None, rel
            if rel in loc.carriers:
                assert set(kept) == set(alone.rows(rel)), rel
                named += bool(set(rows) - set(kept))
            else:
                assert set(alone.rows(rel)) <= set(kept), rel
    assert named  # some relation held rows of the other encounter, and they were left out


def test_a_search_leaves_no_rows_behind(kb: PolicyKB) -> None:
    """The search hands the evaluator the same known rows object for many candidates (a table
    holding it is not set again); evaluating another claim afterwards sees only its own rows."""
    other = _two_encounters()
    first = kb.adjudicator.evaluate(other).relations
    kb.adjudicate(_mue_claim(), proofs=True, remedies=True)
    assert kb.adjudicator.evaluate(other).relations == first
