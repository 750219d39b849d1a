"""A grouped message query joins some atoms after grouping, with the same messages.

Where a rule's heads have several solution rows each, its message query returns one row per
head (engine/backends/duckdb.py _grouped_sql). An atom of a claim relation that is keyed on the
head's columns (one row per claim and key) and whose columns are only shown, one value per head,
adds the same row to every solution of a head: it is joined to the grouped rows (one per head)
instead of to the solution rows (_joined_late). In kb/, dates.outside_table_period reads the
line's date so. The messages must be those of the query that joins it first.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.corpus import generate, strip_meta
from benchmarks.tables import shared_tables
from conftest import ROOT
from engine.api import PolicyKB
from engine.backends import duckdb as duck
from engine.backends.decide import BatchDecider
from engine.claims import claim_to_facts, parse_claim
from engine.ir import IAtom


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _grouped_queries(backend: Any, monkeypatch: pytest.MonkeyPatch) -> dict[int, str]:
    """The grouped message query of each rule that is asked one, from now on."""
    found: dict[int, str] = {}
    real = backend._grouped_sql

    def recording(index: int, *args: Any) -> Any:
        grouped = real(index, *args)
        if grouped is not None:
            found[index] = grouped[0]
        return grouped

    monkeypatch.setattr(backend, "_grouped_sql", recording)
    return found


def test_a_keyed_claim_atom_is_joined_after_grouping_with_the_same_messages(
    kb: PolicyKB, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims = [claim_to_facts(parse_claim(strip_meta(raw))) for raw in generate(shared_tables(), 2000, 7)]
    request = BatchDecider(kb).request
    monkeypatch.setattr(duck, "MESSAGE_KEYED_HEADS", 0)  # a 2,000-claim chunk checks every claim key
    cp = kb.kb.compiled
    assert cp is not None
    backend = duck.DuckDBBackend(cp, kb.kb.store, duck.declared_types(cp, kb.kb.program))
    queries = _grouped_queries(backend, monkeypatch)
    backend.evaluate_many(claims, messages=request)  # the first chunk chooses each rule's form
    late = backend.evaluate_many(claims, messages=request)
    joined_late = {}
    for index, sql in queries.items():
        inner = sql.split(" g, ", 1)[0]
        after = sql.split(" g, ", 1)[1] if " g, " in sql else ""
        tables = {duck.table_name(cp, a.relation) for a in cp.rules[index].body if isinstance(a, IAtom)}
        joined_late[index] = {t for t in tables if t in after and t not in inner}
    moved = {index: tables for index, tables in joined_late.items() if tables}
    assert moved  # some grouped query joins an atom after grouping
    for index, tables in moved.items():
        for t in tables:
            (atom,) = [a for a in cp.rules[index].body if isinstance(a, IAtom) and duck.table_name(cp, a.relation) == t]
            assert cp.kinds[atom.relation] is duck.RelKind.CLAIM and not atom.negated
    shown = {index for m in late for index, _ in m.messages}
    assert set(moved) <= shown  # their messages were written
    # the same chunk with every atom joined before grouping: the same messages, model by model
    monkeypatch.setattr(backend, "_joined_late", lambda *args: None)
    backend._grouped_sqls.clear()
    first = backend.evaluate_many(claims, messages=request)
    assert all(" g, " not in queries[index] for index in moved)
    assert [m.messages for m in late] == [m.messages for m in first]
    backend.close()
