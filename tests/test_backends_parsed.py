"""The DuckDB backend parses each per-chunk statement once (engine/backends/duckdb.py `_run`)
and runs the parsed Statement again for every later chunk: DuckDB still binds and plans it each
time, so a chunk reads its own rows, never the rows of the chunk that parsed the statement."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.api import PolicyKB
from engine.backends import BatchModel
from engine.claims import Claim, claim_to_facts, load_claims

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _claims() -> list[Claim]:
    return [c for path in sorted(EXAMPLES.glob("*.json")) for c in load_claims(path)]


def _outcomes(models: list[BatchModel]) -> list[dict[str, list[tuple]]]:
    return [{rel: m.relations.get(rel, []) for rel in ("deny", "warn", "overridden")} for m in models]


def test_parsed_statements_give_each_chunk_its_own_rows(kb: PolicyKB) -> None:
    backend = kb.duckdb()
    claims = _claims()
    assert len(claims) >= 4
    first, second = claims[: len(claims) // 2], claims[len(claims) // 2 :]
    chunks = [[claim_to_facts(c) for c in part] for part in (first, second, first)]
    # the oracle: every statement parsed from its text again (nothing kept from an earlier chunk)
    fresh = []
    for chunk in chunks:
        backend._parsed.clear()
        fresh.append(_outcomes(backend.evaluate_many(chunk)))
    kept = [_outcomes(backend.evaluate_many(chunk)) for chunk in chunks]
    assert kept == fresh
    assert fresh[0] == fresh[2] != fresh[1]  # the chunks differ, so a stale result would show
    assert any(m["deny"] for m in fresh[0]) and any(m["deny"] for m in fresh[1])


def test_a_statement_is_parsed_once(kb: PolicyKB) -> None:
    backend = kb.duckdb()
    chunk = [claim_to_facts(c) for c in _claims()]
    backend.evaluate_many(chunk)
    parsed = dict(backend._parsed)
    assert any(sql.startswith('INSERT INTO "d:deny"') for sql in parsed)
    backend.evaluate_many(chunk)
    assert backend._parsed.keys() == parsed.keys()  # the same chunk runs the same texts
    assert all(backend._parsed[sql] is statement for sql, statement in parsed.items())
