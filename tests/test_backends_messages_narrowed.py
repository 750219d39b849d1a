"""A message query reads the narrowed table its rule's strata SELECT reads (engine/backends/duckdb.py
`_solution_narrowing`): the rows of one atom that have a row of a later atom, which the rule then
leaves out. Only where that atom binds no named variable: the messages, the prover's order and
the full solutions are then those of the pyDatalog path. The rules below make the order visible
(the partners' names come in line order, not sorted), repeat a partner's rows (a line with two
modifiers), and show a variable of the left-out atom in another rule, which keeps its join.
Each message is decided from the facts first, then compared with the pyDatalog path."""

from __future__ import annotations

from typing import Any

import pytest

import engine.backends.duckdb as duck
from conftest import lint_fixture_kb, record_message_queries
from engine.adjudicate import MESSAGE_SOLUTIONS, _merge
from engine.api import PolicyKB
from engine.backends import BatchModel
from engine.backends.decide import BatchDecider, decide_many
from engine.claims import Claim, claim_to_facts, parse_claim
from engine.ir import IConst

RULES = """
/** @summary A short name of our own for a code. */
.decl code_name(code: symbol, name: symbol)
code_name("99213", "mike").
code_name("99214", "zulu").
code_name("99215", "alpha").

/** @summary Another line of the claim on the same date, and its code. */
.decl same_day(line: number, other: number, code: symbol)
same_day(l, m, c) :- line(l, _, d, _, _, _), line(m, c, d, _, _, _), l != m.

/**
 * @id t.partners
 * @title Partners of a modified line
 * @summary The codes billed on the same date as a line with a modifier.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l}: {name}.
 */
warn(l, "t.partners") :- same_day(l, m, c), line_modifier(l, _), code_name(c, name).

/**
 * @id t.modified
 * @title Modifiers and partners
 * @summary A line's modifiers and the codes billed on the same date.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l}: {mod} with {name}.
 */
warn(l, "t.modified") :- same_day(l, m, c), line_modifier(l, mod), code_name(c, name).
"""


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> PolicyKB:
    return lint_fixture_kb(tmp_path_factory.mktemp("narrowed_kb"), {"rules.dl": RULES})


@pytest.fixture
def backend(kb: PolicyKB, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A backend in which the two rules' join of same_day with line_modifier is narrowed (two
    rules make it, fewer than kb/'s threshold)."""
    monkeypatch.setattr(duck, "NARROWED_RULES", 2)
    cp = kb.kb.compiled
    assert cp is not None
    made = duck.DuckDBBackend(cp, kb.kb.store, duck.declared_types(cp, kb.kb.program))
    yield made
    made.close()


def _claim(lines: list[tuple[str, list[str]]]) -> Claim:
    base = {"service_date": "2024-03-01", "units": 1, "pos": "11", "rendering_npi": "1234567893"}
    return parse_claim(
        {
            "id": "NARROWED-1",
            "patient": {"id": "P1", "birth_date": "1960-01-01", "sex": "F"},
            "lines": [{**base, "line": n, "code": c, "modifiers": m} for n, (c, m) in enumerate(lines, 1)],
        }
    )


def _index(kb: PolicyKB, rule_id: str) -> int:
    assert kb.kb.compiled is not None
    (index,) = [r.index for r in kb.kb.compiled.rules if r.head.args[-1] == IConst(rule_id)]
    return index


def _texts(kb: PolicyKB, backend: Any, claim: Claim) -> dict[tuple[int, str], str]:
    request = BatchDecider(kb).request
    (model,) = backend.evaluate_many([claim_to_facts(claim)], messages=request)
    assert isinstance(model, BatchModel)
    decider = BatchDecider(kb)
    return {
        (head[0], head[1]): decider._template(head[1], "warn").fill(values)
        for (_index, head), values in model.messages.items()
    }


def test_a_message_query_reads_the_narrowed_table(kb: PolicyKB, backend: Any) -> None:
    partners, modified = _index(kb, "t.partners"), _index(kb, "t.modified")
    assert partners in backend.sql.narrowing and modified in backend.sql.narrowing  # the strata's join
    table = backend.sql.narrowing[partners][0]
    # t.partners leaves line_modifier out (its column is anonymous): the narrowed rows only
    assert table in backend.sql.solutions[partners]
    assert '"d:line_modifier"' not in backend.sql.solutions[partners]
    assert backend.sql.solution_layout[partners].narrowed == {"same_day", "line_modifier"}
    # t.modified shows the modifier: its solutions keep the join
    assert table not in backend.sql.solutions[modified]
    assert '"d:line_modifier"' in backend.sql.solutions[modified]
    assert backend.sql.solution_layout[modified].narrowed == frozenset()


def test_narrowed_messages_are_the_provers(kb: PolicyKB, backend: Any) -> None:
    # line 1 (99213, two modifiers) has partners 2 (99214, zulu) and 3 (99215, alpha), in line
    # order; line 2 (99214, one modifier) has 1 (99213, mike) and 3; line 3 has no modifier
    claim = _claim([("99213", ["25", "59"]), ("99214", ["76"]), ("99215", [])])
    texts = _texts(kb, backend, claim)
    assert texts == {
        (1, "t.partners"): "Line 1: zulu and alpha.",
        (2, "t.partners"): "Line 2: mike and alpha.",
        (1, "t.modified"): "Line 1: 25 and 59 with zulu and alpha.",
        (2, "t.modified"): "Line 2: 76 with mike and alpha.",
    }
    # the pyDatalog path writes the same records
    expected = kb.adjudicate(claim, proofs=False).to_dict()
    assert {(ln["line"], r["rule"]): r["message"] for ln in expected["lines"] for r in ln["reasons"]} == texts
    assert decide_many(kb, [claim]) == [expected]
    # and the full solutions (every named variable, as explain reads them) merge to the same
    partners = _index(kb, "t.partners")
    (model,) = backend.evaluate_many([claim_to_facts(claim)])
    assert isinstance(model, BatchModel)
    assert [s["name"] for s in model.solutions[(partners, (1, "t.partners"))]] == ["zulu", "alpha"]
    assert str(_merge(model.solutions[(partners, (1, "t.partners"))][:MESSAGE_SOLUTIONS])["name"]) == "zulu and alpha"


def test_a_chunk_that_does_not_make_the_narrowed_table_queries_nothing(kb: PolicyKB, backend: Any) -> None:
    """A chunk whose claims have no modifier does not make the narrowed table again: it holds the
    last chunk's rows (keyed by their position in that chunk), which the rule must not read."""
    request = BatchDecider(kb).request
    partners = _index(kb, "t.partners")
    with_mods = claim_to_facts(_claim([("99213", ["25"]), ("99214", [])]))
    (first,) = backend.evaluate_many([with_mods], messages=request)
    assert first.messages[(partners, (1, "t.partners"))] == ("1", "zulu")
    asked = record_message_queries(backend)
    (second,) = backend.evaluate_many([claim_to_facts(_claim([("99213", []), ("99214", [])]))], messages=request)
    assert second.messages == {} and asked == []
    assert list(backend._solved_rules([second], [partners])) == []
    # nor the full solutions, should a row of the head be there (as another rule could derive it)
    second.relations["warn"] = [(1, "t.partners")]
    assert list(backend._solved_rules([second], [partners])) == []
    assert [i for i, _, _ in backend._solved_rules([first], [partners])] == []  # stale: not made in this chunk
