"""Message queries of rules alike but for one constant are one statement, with the same messages.

Two outcome rules whose solutions SELECTs differ only in the constant a top-level WHERE test
compares a column with (kb/: the MUE date rules, MAI 2 and 3) are asked in one statement that
tests the column against both constants and tags each row with its rule (engine/backends/duckdb.py
_fetch_fused): the relations are scanned and joined once. Each rule's messages must be those of
its own query.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.corpus import generate, strip_meta
from benchmarks.tables import shared_tables
from conftest import ROOT
from engine.api import PolicyKB
from engine.backends.decide import BatchDecider
from engine.backends.duckdb import _constant_tests, _fused_sql
from engine.claims import claim_to_facts, parse_claim
from engine.ir import IAtom, IConst


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _record_fused(backend: Any, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The rule indices whose rows each chunk's fused statements gave, from now on."""
    fused: list[list[int]] = []
    real = backend._fetch_fused

    def recording(queries: Any) -> Any:
        found = real(queries)
        fused.append(sorted(found))
        return found

    monkeypatch.setattr(backend, "_fetch_fused", recording)
    return fused


def _differ_in_one_constant(one: Any, two: Any) -> bool:
    """Whether two rules are alike but for one constant of one body atom."""
    if one.head.relation != two.head.relation or len(one.body) != len(two.body):
        return False
    differ = [(a, b) for a, b in zip(one.body, two.body, strict=True) if a != b]
    if len(differ) != 1:
        return False
    ((a, b),) = differ
    if not (isinstance(a, IAtom) and isinstance(b, IAtom) and a.relation == b.relation):
        return False
    args = [(x, y) for x, y in zip(a.args, b.args, strict=True) if x != y]
    return len(args) == 1 and all(isinstance(t, IConst) for t in args[0])


def test_rules_alike_but_for_a_constant_are_queried_once(kb: PolicyKB, monkeypatch: pytest.MonkeyPatch) -> None:
    claims = [claim_to_facts(parse_claim(strip_meta(raw))) for raw in generate(shared_tables(), 2000, 7)]
    request = BatchDecider(kb).request
    backend = kb.duckdb()
    fused = _record_fused(backend, monkeypatch)
    together = backend.evaluate_many(claims, messages=request)
    (indices,) = fused
    assert len(indices) >= 2  # the chunk fired rules alike but for a constant, asked in one statement
    assert kb.kb.compiled is not None
    rules = [kb.kb.compiled.rules[i] for i in indices]
    assert all(_differ_in_one_constant(rules[0], rule) for rule in rules[1:])
    # each rule asked alone: the same messages, model by model
    monkeypatch.setattr(backend, "_fetch_fused", lambda queries: {})
    alone = backend.evaluate_many(claims, messages=request)
    assert [m.messages for m in together] == [m.messages for m in alone]
    assert {index for m in together for index, _ in m.messages} >= set(indices)


def test_a_constant_test_inside_a_string_constant_is_not_one() -> None:
    sql = (
        "SELECT t0.ck AS s0, 'a\n  AND (t0.c1 = 7)\n' AS s1\n"
        "FROM \"d:line\" t0\nWHERE (t0.c2 = 3)\n  AND (t0.c4 = 'x')\nORDER BY 1, 2"
    )
    tests = _constant_tests(sql)
    assert [(test, const) for _, test, const in tests] == [("t0.c2", "3"), ("t0.c4", "'x'")]
    rest, test, _ = tests[0]
    assert _fused_sql(rest, test, ["3", "5"]) == (
        "SELECT t0.ck AS s0, 'a\n  AND (t0.c1 = 7)\n' AS s1, CASE WHEN t0.c2 = 3 THEN 0 WHEN t0.c2 = 5 THEN 1 END\n"
        "FROM \"d:line\" t0\nWHERE (t0.c2 IN (3, 5))\n  AND (t0.c4 = 'x')\nORDER BY 1, 2"
    )
    # a constant of the select list that holds "\nFROM ": where the list ends is not told, not fused
    rest, test, _ = _constant_tests(sql.replace("a\n  AND", "a\nFROM"))[0]
    assert _fused_sql(rest, test, ["3", "5"]) is None
