"""The explain path's shortcuts give what the plain way gives.

engine/explain/proof.py finds a derived fact's first derivation with `Prover._first_solution`
(no chain of generators) instead of the first answer of `Prover.solve`; engine/explain/because.py
keeps each row's labelled values (`pairs`) for the next reason and claim; the remedy search makes
its judge on first need, asks a rule that no change reaches once per base, answers a candidate's
rules without making distinct rows distinct again, copies claims with `remedies._replace` and
memoises judgments by the changed lines (`Rejudge._key`). These tests compare each shortcut with
the plain way on the example claims, the policy cases and generated claims.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from engine.api import PolicyKB
from engine.evaluate import _rule_name
from engine.explain.because import vocabulary
from engine.explain.proof import _unify
from engine.explain.rejudge import Rejudge
from engine.explain.remedies import _replace
from engine.ir import RelKind
from tests.conftest import named_claims

ROOT = Path(__file__).resolve().parent.parent
NAMED = list(named_claims(60, 31))


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def test_first_solution_is_solves_first(kb: PolicyKB) -> None:
    adj = kb.adjudicator
    cp = adj.cp
    compared = 0
    for name, claim in NAMED:
        model = adj.evaluate(claim)
        prover = adj.prover(claim, model)
        for rel, kind in cp.kinds.items():
            if kind is not RelKind.DYNAMIC:
                continue
            for row in model.rows(rel)[:20]:
                for crule in cp.rules_for(rel):
                    binding = _unify(crule.head.args, row, {})
                    if binding is None:
                        continue
                    plain = next(iter(prover.solve(crule.body, binding)), None)
                    fast = prover._first_solution(crule.body, binding, 0, [])
                    assert fast == plain, (name, rel, row, crule.index)
                    compared += 1
    assert compared > 500  # the walk reached many derivations, found and not found


def test_pairs_memo_is_pairs(kb: PolicyKB) -> None:
    vocab = vocabulary(kb.kb.program)
    adj = kb.adjudicator
    told = 0
    for _name, claim in NAMED[:80]:
        model = adj.evaluate(claim)
        for rel, rows in model.relations.items():
            for row in rows[:10]:
                for skip in (0, 1):
                    first = vocab.pairs(rel, row, skip)
                    assert first == vocab._pairs_of(rel, row, skip)
                    assert vocab.pairs(rel, row, skip) == first  # from the memo now
                    told += 1
    assert told > 1000


def test_pairs_memo_tells_bool_from_int(kb: PolicyKB) -> None:
    """True == 1 in Python: a memo keyed by the row alone would tell one as the other."""
    vocab = vocabulary(kb.kb.program)
    assert vocab.pairs("line", (1, "99213")) == vocab._pairs_of("line", (1, "99213"), 0)
    one = vocab.pairs("line_modifier", (1, 1))
    yes = vocab.pairs("line_modifier", (1, True))
    assert one.endswith(" 1") and yes.endswith(" yes")
    assert vocab.pairs("line_modifier", (1, 1)) == one


def test_a_claim_is_rejudged_only_when_some_denial_has_remedies_to_try(
    kb: PolicyKB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remedy search's judge (engine/explain/rejudge.py) is made on first need: a claim whose
    in-force denials name no rule with an `@remedy` gets none, and its denials are still searched
    (an empty list of remedies, not None)."""
    adj = kb.adjudicator
    made: list[str] = []
    real = type(adj)._rejudge

    def spy(self: Any, claim: Any, model: Any, decision: bool) -> Any:
        made.append(claim.id)
        return real(self, claim, model, decision)

    monkeypatch.setattr(type(adj), "_rejudge", spy)
    with_specs = {rid for rid, info in adj.rules.items() if any(e.key == "remedy" for e in info.rule.doc.entries)}
    seen = {True: 0, False: 0}
    for name, claim in NAMED:
        made.clear()
        result = kb.adjudicate(claim, proofs=False, remedies=True)
        searched = [
            r
            for ln in result.lines
            if ln.primary is not None
            for r in ln.reasons
            if r.severity == "deny" and r.in_force
        ]
        wanted = any(r.rule in with_specs for r in searched)
        assert len(made) == (1 if wanted else 0), name
        assert all(r.remedies is not None for r in searched), name
        seen[wanted] += 1
    assert seen[True] > 10 and seen[False] > 10  # both kinds of claim were walked


def test_a_rule_asked_alone_is_asked_once_per_base(kb: PolicyKB, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Rejudge._from_decision` asks a rule the change cannot reach, and that its head constants do
    not tell apart, on the base's facts alone: once per base, whatever change asks for it."""
    evaluator = kb.evaluator
    asked: dict[int, list[int]] = {}
    real = type(evaluator).evaluate

    def spy(self: Any, facts: Any, *args: Any, **kw: Any) -> Any:
        only = kw.get("only")
        if kw.get("by_rule") and kw.get("known") and only is not None:
            for i in only.rules:
                asked.setdefault(id(facts), []).append(i)
        return real(self, facts, *args, **kw)

    monkeypatch.setattr(type(evaluator), "evaluate", spy)
    for _name, claim in NAMED:
        asked.clear()
        kb.adjudicate(claim, proofs=False, remedies=True)
        for rules in asked.values():
            assert len(rules) == len(set(rules)), claim.id


def test_answerer_gives_the_rows_query_gives(kb: PolicyKB) -> None:
    """`Session.answerer` (the remedy candidates' evaluation) returns a rule's rows as `query`
    does, distinct, without making them distinct again where the join's rows are the head's."""
    evaluator = kb.evaluator
    compared = 0
    for _name, claim in NAMED[:60]:
        kb.adjudicator.evaluate(claim)  # the tables now hold this claim's rows
        for rel, rules in evaluator._split.items():
            arity = evaluator.cp.arity[rel]
            for rule in rules:
                name = _rule_name(rule)
                rows = evaluator.session.answerer(name, arity)()
                assert len(rows) == len(set(rows))
                assert set(rows) == set(evaluator.session.query(name, [None] * arity)), (name, claim.id)
                compared += 1
    assert compared > 1000


def test_replace_is_dataclasses_replace() -> None:
    for _name, claim in NAMED[:80]:
        for ln in claim.lines:
            for changes in ({"units": ln.units + 1}, {"modifiers": (*ln.modifiers, "59")}, {"code": "99213"}):
                ours, theirs = _replace(ln, **changes), dataclasses.replace(ln, **changes)  # type: ignore[arg-type]
                assert ours == theirs and type(ours) is type(theirs)
        lines = claim.lines[::-1]
        assert _replace(claim, lines=lines) == dataclasses.replace(claim, lines=lines)


def test_memo_keys_tell_changed_claims_apart(kb: PolicyKB, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Rejudge._key`: two candidate claims of one search share a key only when they are equal."""
    seen: list[tuple[Rejudge, object, Any]] = []
    real = Rejudge.denials

    def spy(self: Rejudge, changed: Any) -> Any:
        seen.append((self, self._key(changed), changed))
        return real(self, changed)

    monkeypatch.setattr(Rejudge, "denials", spy)
    for _name, claim in NAMED:
        kb.adjudicate(claim, proofs=False, remedies=True)
    assert len(seen) > 300
    by_key: dict[tuple[int, object], Any] = {}
    in_place = 0
    for judge, key, changed in seen:
        other = by_key.setdefault((id(judge), key), changed)
        assert other == changed
        in_place += isinstance(key, tuple)
    assert in_place == len(seen)  # every candidate the search makes changes lines in place
