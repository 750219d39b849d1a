"""One remedy candidate's judgment, made cheap, is still a full adjudication's verdict.

engine/explain/rejudge.py builds a candidate's facts by swapping the changed lines' rows into
the base's (`Rejudge._patch`), the evaluator asks only the rules a change can reach, reading
head constants (`Evaluator._stale`), and evaluates the candidate without sorting rows
(`evaluate(..., ordered=False)`). These tests compare every such judgment with a whole,
ordered evaluation of the changed claim: the candidates the remedy search itself makes for
the examples, the policy cases and generated claims, and single-line changes made here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.corpus import generate, strip_meta
from benchmarks.tables import shared_tables
from engine.api import PolicyKB
from engine.claims import Claim, Line, claim_to_facts, load_claims, parse_claim
from engine.explain.rejudge import Rejudge
from engine.ir import IAtom, IConst
from engine.testing import load_cases

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _named() -> Iterator[tuple[str, Claim]]:
    for path in sorted((ROOT / "examples").glob("*.json")):
        (claim,) = load_claims(path)
        yield path.stem, claim
    for case in load_cases(ROOT / "kb"):
        yield case.id, parse_claim(case.claim)


NAMED = list(_named())
GENERATED = [parse_claim(strip_meta(raw)) for raw in generate(shared_tables(), 120, 23)]


def _searched(kb: PolicyKB, claims: list[Claim], monkeypatch: pytest.MonkeyPatch) -> list[tuple[Claim, Any]]:
    """Every candidate claim the remedy search judges for these claims, with its judgment."""
    judged: list[tuple[Claim, Any]] = []
    real = Rejudge._judge

    def spy(self: Rejudge, changed: Claim) -> Any:
        found = real(self, changed)
        judged.append((changed, found))
        return found

    monkeypatch.setattr(Rejudge, "_judge", spy)
    for claim in claims:
        kb.adjudicate(claim, proofs=False, remedies=True)
    monkeypatch.undo()
    return judged


def test_search_judgments_are_full_adjudications(kb: PolicyKB, monkeypatch: pytest.MonkeyPatch) -> None:
    judged = _searched(kb, [c for _n, c in NAMED] + GENERATED, monkeypatch)
    assert len(judged) >= 100, "the examples, cases and generated claims make candidates"
    for changed, found in judged:
        assert found == kb.adjudicator.denials(changed), changed.id


def _changes(claim: Claim) -> Iterator[Callable[[Line], Line]]:
    """Single-line changes of the kinds a `@remedy` makes, and some it never makes."""
    codes = sorted({ln.code for ln in claim.lines})
    for mod in ("59", "XS", "25", "LT", "76", "ZZ"):
        yield lambda ln, mod=mod: dataclasses.replace(ln, modifiers=(*ln.modifiers, mod)[:4])
    yield lambda ln: dataclasses.replace(ln, modifiers=ln.modifiers[1:])
    yield lambda ln: dataclasses.replace(ln, units=max(1, ln.units - 1))
    yield lambda ln: dataclasses.replace(ln, units=ln.units + 2)
    for code in codes[:2]:
        yield lambda ln, code=code: dataclasses.replace(ln, code=code)
    yield lambda ln: dataclasses.replace(ln, diagnoses=())
    yield lambda ln: dataclasses.replace(ln, service_date="2024-02-29")  # moves it to another encounter


def _judge_of(kb: PolicyKB, claim: Claim) -> Rejudge:
    model = kb.adjudicator.evaluate(claim)
    return kb.adjudicator._rejudge(claim, model, True)


def test_single_line_changes_are_judged_as_full_adjudications(kb: PolicyKB) -> None:
    checked = 0
    for claim in [c for _n, c in NAMED] + GENERATED[:40]:
        judge = _judge_of(kb, claim)
        for i, line in enumerate(claim.lines[:3]):
            for change in _changes(claim):
                new = change(line)
                if new == line:
                    continue
                changed = dataclasses.replace(claim, lines=(*claim.lines[:i], new, *claim.lines[i + 1 :]))
                assert judge.denials(changed) == kb.adjudicator.denials(changed), (claim.id, new)
                checked += 1
    assert checked > 500


def test_the_fast_path_is_taken(kb: PolicyKB, monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidates of the benchmark's kind (one line changed in place) take the patched facts
    (`_patch`, never the whole claim's facts in `_facts`) and the unordered evaluation."""
    slow: list[Claim] = []
    real_facts = Rejudge._facts
    monkeypatch.setattr(Rejudge, "_facts", lambda self, changed: slow.append(changed) or real_facts(self, changed))
    patched: list[bool] = []
    real_patch = Rejudge._patch

    def patch(self: Rejudge, changed: Claim) -> Any:
        found = real_patch(self, changed)
        patched.append(found is not None)
        return found

    monkeypatch.setattr(Rejudge, "_patch", patch)
    lean: list[object] = []
    real_unordered = kb.evaluator._unordered
    monkeypatch.setattr(kb.evaluator, "_unordered", lambda *a: lean.append(a) or real_unordered(*a))
    judged = _searched(kb, GENERATED[:60], monkeypatch)
    assert len(judged) >= 20
    assert not slow
    assert len(patched) == len(judged) and all(patched)
    assert len(lean) >= len(judged)  # each candidate, and rules asked alone for known rows


def test_unordered_evaluation_gives_the_same_rows(kb: PolicyKB) -> None:
    """The same rows as the ordered evaluation, per relation and per rule, as sets."""
    ev = kb.evaluator
    needed = kb.adjudicator._for_denials
    for claim in [c for _n, c in NAMED][:20] + GENERATED[:30]:
        facts = claim_to_facts(claim)
        for only in (None, needed):
            ordered = ev.evaluate(facts, by_rule=True, only=only)
            loose = ev.evaluate(facts, by_rule=True, only=only, ordered=False)
            assert ordered.relations.keys() == loose.relations.keys()
            for rel, rows in ordered.relations.items():
                assert set(rows) == set(loose.relations[rel]), rel
            assert {i: set(r) for i, r in ordered.by_rule.items()} == {i: set(r) for i, r in loose.by_rule.items()}


def test_staleness_reads_head_constants(kb: PolicyKB) -> None:
    """A change of modifiers reaches the rules reading modifiers, but not an override that
    reads only the denial of the injection-in-a-facility rule (that rule reads the place of
    service and the code, never a modifier)."""
    cp = kb.kb.compiled
    assert cp is not None
    stale_rules, stale_rels = kb.evaluator._stale(frozenset({("line_modifier", ())}))

    def reads(rule: Any, rel: str, const: str | None = None) -> bool:
        return any(
            isinstance(lit, IAtom)
            and lit.relation == rel
            and (const is None or any(isinstance(t, IConst) and t.value == const for t in lit.args))
            for lit in rule.body
        )

    facility = [r for r in cp.rules if r.head.relation == "overridden" and reads(r, "deny", "inj.facility_pos")]
    assert facility and all(r.index not in stale_rules for r in facility)
    denies_it = [r for r in cp.rules_for("deny") if r.head.args[1] == IConst("inj.facility_pos")]
    assert denies_it and all(r.index not in stale_rules for r in denies_it)
    modifier_readers = [r for r in cp.rules if _reads_modifiers_freely(r)]  # any modifier
    assert modifier_readers and all(r.index in stale_rules for r in modifier_readers)
    assert {"deny", "overridden", "service_modifier"} <= stale_rels
    assert "partner" not in stale_rels


def test_a_change_names_the_constants_it_touches(kb: PolicyKB) -> None:
    """Adding modifier XS to a line touches `line_modifier` but none of the rules that read
    it only for modifier 25 (E/M modifier on a non-E/M code) or 59; adding 25 touches those."""
    cp = kb.kb.compiled
    assert cp is not None
    claim = GENERATED[0]
    first = claim.lines[0]
    assert "25" not in first.modifiers and "XS" not in first.modifiers

    def added(mod: str) -> Any:
        line = dataclasses.replace(first, modifiers=(*first.modifiers, mod))
        return kb.evaluator.change(
            claim_to_facts(claim), claim_to_facts(dataclasses.replace(claim, lines=(line, *claim.lines[1:])))
        )

    xs, twentyfive = added("XS"), added("25")
    assert ("line_modifier", ()) in xs and all(p == () for _r, p in xs)
    assert ("line_modifier", ((1, "25"),)) in twentyfive
    reads_25 = [
        r
        for r in cp.rules
        if any(
            isinstance(lit, IAtom) and lit.relation == "line_modifier" and lit.args[1] == IConst("25") for lit in r.body
        )
    ]
    assert reads_25
    assert all(r.index not in kb.evaluator._stale(xs)[0] for r in reads_25 if not _reads_modifiers_freely(r))
    assert all(r.index in kb.evaluator._stale(twentyfive)[0] for r in reads_25)


def _reads_modifiers_freely(rule: Any) -> bool:
    return any(
        isinstance(lit, IAtom) and lit.relation == "line_modifier" and not any(isinstance(t, IConst) for t in lit.args)
        for lit in rule.body
    )
