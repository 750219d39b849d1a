"""The rule selection of engine/triggers.py never leaves out a rule that could fire.

For real claims (every example and policy case, and generated corpus claims over the real CMS
tables), every rule is asked on its own with nothing left out; each rule the selector says cannot
fire must then have derived nothing. The evaluation with selection must give the same rows for
every relation as the one without. A small program checks each kind of condition on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import named_claims, small_program
from engine.api import PolicyKB
from engine.claims import Claim, claim_to_facts
from engine.evaluate import Evaluator, Model
from engine.ir import RelKind

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _claims(kb: PolicyKB) -> Iterator[tuple[str, Claim]]:
    return named_claims(150, 7)


def _rule_rows(ev: Evaluator, model: Model, index: int) -> list[tuple] | None:
    """The rows one rule derived (None where its relation was asked as a whole with other rules)."""
    if index in model.by_rule:
        return model.by_rule[index]
    rule = ev.cp.rules[index]
    if len(ev.cp.rules_for(rule.head.relation)) == 1:
        return model.rows(rule.head.relation)
    return None


def _asserted(ev: Evaluator, facts: dict[str, list[tuple]]) -> dict[str, set[tuple]]:
    out: dict[str, set[tuple]] = {}
    for rel, rows in facts.items():
        out.setdefault(ev.cp.fact_relations.get(rel, rel), set()).update(map(tuple, rows))
    return out


def test_no_rule_that_fires_is_left_out(kb: PolicyKB) -> None:
    assert kb.kb.compiled is not None
    full = Evaluator(kb.kb.compiled, kb.kb.store, select=False)
    left_out = fired = 0
    wrong: list[str] = []
    for name, claim in _claims(kb):
        facts = claim_to_facts(claim)
        model = full.evaluate(facts, by_rule=True)  # every rule asked, each split rule on its own
        selector = full.selector(model, _asserted(full, facts))  # the complete rows: the strictest test
        for rule in full.cp.rules:
            check = full.check(rule)
            rows = _rule_rows(full, model, rule.index)
            if check is None or rows is None:
                continue
            fired += bool(rows)
            if selector.cannot_fire(check):
                left_out += 1
                if rows:
                    wrong.append(f"{name}: rule {rule.index} ({rule.head.relation}) derived {rows[:3]}")
    full.close()
    assert not wrong, "\n".join(wrong[:20])
    # the test means something only if the selector leaves rules out and the claims fire rules
    assert left_out > 1000 and fired > 1000, (left_out, fired)


def test_selection_gives_the_same_rows(kb: PolicyKB) -> None:
    assert kb.kb.compiled is not None
    full = Evaluator(kb.kb.compiled, kb.kb.store, select=False)
    derived = [rel for rel, kind in kb.kb.compiled.kinds.items() if kind in (RelKind.DYNAMIC, RelKind.AGGREGATE)]
    for name, claim in _claims(kb):
        facts = claim_to_facts(claim)
        want, got = full.evaluate(facts), kb.evaluator.evaluate(facts)
        for rel in derived:
            assert got.rows(rel) == want.rows(rel), (name, rel)
    full.close()


PROGRAM = """
.decl line(l: number, code: symbol)
.claim line
.decl addon(code: symbol)
.decl primary(addon: symbol, code: symbol)
.decl known(code: symbol)
.decl flag(l: number, rule: symbol)
.decl has_primary(l: number)
flag(l, "addon") :- line(l, c), addon(c), !has_primary(l).
has_primary(l) :- line(l, c), primary(c, p), line(l2, p), l2 != l.
flag(l, "unknown") :- line(l, c), !known(c).
flag(l, "twice") :- line(l, c), line(l2, c), l2 < l.
"""
TABLES = {"addon": [("A1",)], "primary": [("A1", "P1")], "known": [("A1",), ("P1",), ("X9",)]}


@pytest.mark.parametrize(
    ("lines", "denied", "left_out"),
    [
        # no add-on code: the add-on rules' lookups find no row; every code known: the negation
        # cannot hold; one line: no pair of lines is ordered
        ([(1, "X9")], [], {"addon", "has_primary", "unknown", "twice"}),
        # an add-on code without its primary: the add-on rule must be asked (and fires); no pair
        # of the claim's codes is in `primary`; two lines can be ordered (the selector does not
        # see that they must share a code, so "twice" is asked and finds nothing)
        ([(1, "A1"), (2, "X9")], [(1, "addon")], {"unknown", "has_primary"}),
        # the primary is billed: has_primary must be asked (and fires)
        ([(1, "A1"), (2, "P1")], [], {"unknown"}),
        # an unknown code and a repeated code: those rules must be asked (and fire)
        ([(1, "Z7"), (2, "Z7")], [(1, "unknown"), (2, "twice"), (2, "unknown")], {"addon", "has_primary"}),
    ],
)
def test_each_condition(lines: list[tuple], denied: list[tuple], left_out: set[str]) -> None:
    cp, store = small_program(PROGRAM, TABLES)
    ev = Evaluator(cp, store)
    try:
        model = ev.evaluate({"line": lines})
        assert model.rows("flag") == denied
        selector = ev.selector(model, {"line": set(lines)})
        out = set()
        for rule in cp.rules:
            check = ev.check(rule)
            if check is not None and selector.cannot_fire(check):
                head = rule.head.args[1] if rule.head.relation == "flag" else None
                out.add(getattr(head, "value", rule.head.relation))
        assert out == left_out
    finally:
        ev.close()
