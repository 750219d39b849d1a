"""Joins in Python inside the pyDatalog adapter give exactly the engine's rows.

engine.datalog answers runs of body literals over complete relations (claim facts, finished
strata, stored and static lookups) with a join in Python, and a relation whose rules are each
one such join without the engine. With `joins=False` pyDatalog answers every literal itself.
For real claims (every example and policy case, and generated corpus claims over the real CMS
tables) both must derive the same rows for every relation and every rule; small programs pin
the cases where a join could differ from the engine: a variable repeated in one literal, an
arithmetic lookup key, a negation with an anonymous variable, a number meeting a string.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import named_claims, small_program
from engine.api import PolicyKB
from engine.claims import Claim, claim_to_facts
from engine.evaluate import Evaluator
from engine.ir import RelKind

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _claims() -> Iterator[tuple[str, Claim]]:
    return named_claims(120, 11)


def test_joins_derive_the_engines_rows(kb: PolicyKB) -> None:
    cp = kb.kb.compiled
    assert cp is not None
    engine = Evaluator(cp, kb.kb.store, joins=False)
    joined = Evaluator(cp, kb.kb.store)
    derived = [rel for rel, kind in cp.kinds.items() if kind in (RelKind.DYNAMIC, RelKind.AGGREGATE)]
    rows = 0
    try:
        for name, claim in _claims():
            facts = claim_to_facts(claim)
            want, got = engine.evaluate(facts), joined.evaluate(facts)
            for rel in derived:
                assert got.rows(rel) == want.rows(rel), (name, rel)
                rows += len(want.rows(rel))
            # each rule of a split relation asked on its own (what a remedy candidate reuses); a
            # rule left out as unable to fire has no entry, one asked and finding nothing an empty one
            want, got = engine.evaluate(facts, by_rule=True), joined.evaluate(facts, by_rule=True)
            assert _fired(got.by_rule) == _fired(want.by_rule), name
    finally:
        engine.close()
        joined.close()
    assert rows > 10_000, rows  # the claims must derive something to compare


def _fired(by_rule: dict[int, list[tuple]]) -> dict[int, list[tuple]]:
    return {index: rows for index, rows in by_rule.items() if rows}


PROGRAM = """
.decl line(l: number, code: symbol, units: number)
.claim line
.decl limit(code: symbol, units: number)
.decl rated(code: symbol, level: symbol)
.decl pair(l: number, l2: number)
.decl self_pair(l: number)
.decl at_limit_plus_one(l: number)
.decl unrated(l: number)
.decl flag(l: number, why: symbol)
pair(l, l2) :- line(l, c, _), line(l2, c, _), l != l2.
self_pair(l) :- pair(l, l).
at_limit_plus_one(l) :- line(l, c, u), limit(c, u - 1).
unrated(l) :- line(l, c, _), !rated(c, _).
flag(l, "twice") :- pair(l, l2), l2 < l.
flag(l, "over") :- line(l, c, u), limit(c, n), u > n, !unrated(l).
"""
TABLES = {
    "limit": [("A1", 2), ("B2", 1), ("7", 7)],
    "rated": [("A1", "high"), ("A1", "low"), ("7", "x")],
}


def _evaluate(lines: list[tuple], joins: bool) -> dict[str, list[tuple]]:
    cp, store = small_program(PROGRAM, TABLES)
    ev = Evaluator(cp, store, joins=joins)
    try:
        model = ev.evaluate({"line": lines})
        return {rel: model.rows(rel) for rel in ("pair", "self_pair", "at_limit_plus_one", "unrated", "flag")}
    finally:
        ev.close()


@pytest.mark.parametrize("joins", [False, True])
def test_join_cases(joins: bool) -> None:
    # line 1: A1 at 3 units, one over its limit 2; line 2: A1 again (a pair with line 1);
    # line 3: B2 at 1 unit, within its limit, and B2 has no rating; line 4: the number 7 where
    # the tables hold the code "7" (a number never equals a string: no limit, no rating)
    got = _evaluate([(1, "A1", 3), (2, "A1", 2), (3, "B2", 1), (4, 7, 8)], joins)
    assert got["pair"] == [(1, 2), (2, 1)]
    assert got["self_pair"] == []  # pair(l, l): no line pairs with itself
    assert got["at_limit_plus_one"] == [(1,)]  # 3 units, limit(A1, 3 - 1)
    assert got["unrated"] == [(3,), (4,)]  # B2 has no rated row at any level; 7 is not "7"
    # line 1 is over (3 > 2) and rated; line 2 is the later of a pair (line 1 < 2); line 3 is
    # within its limit; line 4 finds no limit for the number 7
    assert got["flag"] == [(1, "over"), (2, "twice")]
