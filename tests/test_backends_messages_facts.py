"""A message whose values its head fixes is filled from the claim's facts and kept stored rows,
without a query (engine/backends/duckdb.py `DuckDBBackend._from_facts`): the rule alone derives
its rows, so each has a solution, and each shown value is read from the one row of a relation
that holds its key (the line's row for its number, a code's one group, a group's label). Where a
key has several rows (a code in two groups), the rule is queried, and the message lists every
value, as the prover's does. Each message is decided from the facts first, then compared with
the pyDatalog path."""

from __future__ import annotations

from typing import Any

import pytest

import engine.backends.duckdb as duck
from conftest import lint_fixture_kb, record_message_queries
from engine.api import PolicyKB
from engine.backends import BatchModel
from engine.backends.decide import BatchDecider
from engine.claims import Claim, claim_to_facts, parse_claim
from engine.ir import IConst

RULES = """
/** @summary The group of a visit code (99212 in two groups). */
.decl code_group(code: symbol, grp: symbol)
code_group("99213", "office").
code_group("99214", "office").
code_group("99211", "nurse").
code_group("99212", "other").
code_group("99212", "office").

/** @summary How a message names a group. */
.decl group_label(grp: symbol, label: symbol)
group_label("office", "an office visit").
group_label("nurse", "a nurse visit").
group_label("other", "another visit").

/**
 * @id t.visit
 * @title Visit group
 * @summary The group of the line's visit code.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l} ({c} on {d}) is {label}.
 */
warn(l, "t.visit") :- line(l, c, d, _, _, _), code_group(c, g), group_label(g, label).
"""


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> PolicyKB:
    return lint_fixture_kb(tmp_path_factory.mktemp("facts_kb"), {"rules.dl": RULES})


@pytest.fixture
def backend(kb: PolicyKB) -> Any:
    cp = kb.kb.compiled
    assert cp is not None
    made = duck.DuckDBBackend(cp, kb.kb.store, duck.declared_types(cp, kb.kb.program))
    made.queried = record_message_queries(made)
    yield made
    made.close()


def _claim(codes: list[str], dates: list[str] | None = None) -> Claim:
    base = {"units": 1, "pos": "11", "rendering_npi": "1234567893"}
    dates = dates or ["2024-03-01"] * len(codes)
    return parse_claim(
        {
            "id": "FACTS-1",
            "patient": {"id": "P1", "birth_date": "1960-01-01", "sex": "F"},
            "lines": [
                {**base, "line": n, "code": c, "service_date": d}
                for n, (c, d) in enumerate(zip(codes, dates, strict=True), 1)
            ],
        }
    )


def _texts(kb: PolicyKB, backend: Any, claims: list[Claim]) -> list[dict[tuple[int, str], str]]:
    request = BatchDecider(kb).request
    models = backend.evaluate_many([claim_to_facts(c) for c in claims], messages=request)
    decider = BatchDecider(kb)
    out = []
    for model in models:
        assert isinstance(model, BatchModel)
        out.append({head: decider._template(head[1], "warn").fill(v) for (_i, head), v in model.messages.items()})
    return out


def _provers(kb: PolicyKB, claim: Claim) -> dict[tuple[int, str], str]:
    result = kb.adjudicate(claim, proofs=False).to_dict()
    return {(ln["line"], r["rule"]): r["message"] for ln in result["lines"] for r in ln["reasons"]}


def test_values_the_head_fixes_need_no_query(kb: PolicyKB, backend: Any) -> None:
    one = _claim(["99213", "99211"])
    two = _claim(["99214", "99213"], ["2024-04-02", "2024-04-03"])
    texts = _texts(kb, backend, [one, two])
    assert texts == [
        {
            (1, "t.visit"): "Line 1 (99213 on 2024-03-01) is an office visit.",
            (2, "t.visit"): "Line 2 (99211 on 2024-03-01) is a nurse visit.",
        },
        {
            (1, "t.visit"): "Line 1 (99214 on 2024-04-02) is an office visit.",
            (2, "t.visit"): "Line 2 (99213 on 2024-04-03) is an office visit.",
        },
    ]
    assert backend.queried == []  # read from the facts and group_label's kept rows
    assert texts == [_provers(kb, one), _provers(kb, two)]
    assert kb.kb.compiled is not None
    index = next(r.index for r in kb.kb.compiled.rules if r.head.args[-1] == IConst("t.visit"))
    steps = backend._fact_steps(index, BatchDecider(kb).request.names[index])
    assert [(s.relation, s.key) for s in steps] == [("line", (0,)), ("code_group", (0,)), ("group_label", (0,))]


def test_a_key_with_several_rows_is_queried(kb: PolicyKB, backend: Any) -> None:
    # 99212 is in two groups: two solutions, office then other (sorted on the group), both labels
    claim = _claim(["99213", "99212"])
    (texts,) = _texts(kb, backend, [claim])
    assert texts[(2, "t.visit")] == "Line 2 (99212 on 2024-03-01) is an office visit and another visit."
    assert texts[(1, "t.visit")] == "Line 1 (99213 on 2024-03-01) is an office visit."
    assert texts == _provers(kb, claim)
    assert len(backend.queried) == 1  # the rule is queried, and from then on
    (again,) = _texts(kb, backend, [_claim(["99213"])])
    assert again == {(1, "t.visit"): "Line 1 (99213 on 2024-03-01) is an office visit."}
    assert len(backend.queried) == 2


def test_a_line_number_twice_in_the_facts_is_queried(kb: PolicyKB, backend: Any) -> None:
    """Facts not read from a claim may hold two lines with one number: the line's row is not
    the one of its number, and the message lists both codes' values."""
    request = BatchDecider(kb).request
    row = ("2024-03-01", "11", "1234567893", 1)
    facts = {"line": [(1, "99213", *row), (1, "99211", *row)]}
    (model,) = backend.evaluate_many([facts], messages=request)
    assert isinstance(model, BatchModel)
    ((key, values),) = model.messages.items()
    assert values == ("1", "99211 and 99213", "2024-03-01", "a nurse visit and an office visit")
    assert backend.queried == [key[0]]
