"""Scrub's fast decisions (engine/backends/decide.py) are the Adjudicator's decisions.

`scrub` without --proofs builds its result dicts from the DuckDB models directly instead of
through Reason/LineResult/ClaimResult. The records must be the very dicts the Adjudicator path
gives (messages, roles, overrides, citations and all) on every bundled example, every policy
case and a seeded generated corpus; and a claim the backend cannot take still fails alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.api import BatchWorker, PolicyKB
from engine.backends.decide import decide_many
from engine.claims import Claim, Line, load_claims, parse_claim, parse_claim_text
from engine.explain.result import ClaimResult

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _reference(kb: PolicyKB, claims: list[Claim]) -> list[dict[str, Any]]:
    out = []
    for r in kb.adjudicate_many(claims, engine="duckdb"):
        assert isinstance(r, ClaimResult), r
        out.append(r.to_dict())
    return out


def _example_claims() -> list[Claim]:
    claims = [c for path in sorted(EXAMPLES.glob("*.json")) for c in load_claims(path)]
    for raw in (EXAMPLES / "batch.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            claims.append(parse_claim_text(raw))
        except ValueError:
            continue  # the deliberately broken records
    return claims


def _case_claims() -> list[Claim]:
    return [
        parse_claim(case["claim"])
        for path in sorted((ROOT / "kb").rglob("*.cases.json"))
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]
    ]


def _roles(results: list[dict[str, Any]]) -> set[str]:
    return {r["role"] for res in results for ln in res["lines"] for r in ln["reasons"]}


@pytest.mark.parametrize("source", ["examples", "policy cases"])
def test_fast_decisions_equal_the_adjudicator_records(kb: PolicyKB, source: str) -> None:
    claims = _example_claims() if source == "examples" else _case_claims()
    assert len(claims) > 40
    fast = decide_many(kb, claims)
    assert fast == _reference(kb, claims)


@pytest.mark.parametrize("size", [1, 3])
def test_small_chunks_get_the_records_of_one_whole_chunk(kb: PolicyKB, size: int) -> None:
    """A small chunk runs only the rules its claims can fire and empties only the tables the last
    chunk filled: chunk after chunk on one connection, no row may linger, go missing or repeat."""
    claims = _example_claims()
    whole = decide_many(kb, claims)
    small = [r for i in range(0, len(claims), size) for r in decide_many(kb, claims[i : i + size])]
    assert small == whole
    assert decide_many(kb, claims) == whole  # a whole chunk again after the small ones


def test_a_generated_corpus_gets_the_same_records_and_exercises_every_role(kb: PolicyKB) -> None:
    from benchmarks.corpus import generate, strip_meta
    from benchmarks.tables import shared_tables

    claims = [parse_claim(strip_meta(c)) for c in generate(shared_tables(), 1000, seed=11)]
    fast = decide_many(kb, claims)
    reference = _reference(kb, claims)
    assert fast == reference
    # the comparison means something only if the corpus has primary, supporting, overridden
    # and warning reasons, and messages filled from the rule's bindings
    assert _roles(reference) >= {"primary", "supporting", "overridden", "warning"}
    messages: dict[str, set[str]] = {}
    for res in reference:
        for ln in res["lines"]:
            for r in ln["reasons"]:
                messages.setdefault(r["rule"], set()).add(r["message"])
    assert any(len(texts) > 1 for texts in messages.values())  # one rule, messages filled per line


def test_a_claim_the_backend_cannot_take_fails_only_its_own_record(kb: PolicyKB) -> None:
    good = _case_claims()[:3]
    line = good[0].lines[0]
    huge = Line(**{**{f: getattr(line, f) for f in Line.__slots__}, "units": 2**70})  # beyond BIGINT
    bad = Claim("too-big", good[0].patient, (huge,), ())
    results = decide_many(kb, [good[0], bad, *good[1:]])
    assert isinstance(results[1], Exception)
    assert [r for i, r in enumerate(results) if i != 1] == _reference(kb, good)


def test_scrub_worker_uses_the_fast_path_only_without_proofs(kb: PolicyKB) -> None:
    claims = _case_claims()[:5]
    assert BatchWorker(kb, "duckdb", False, False).many(claims) == _reference(kb, claims)
    with_proofs = BatchWorker(kb, "duckdb", True, False).many(claims)
    assert any(r["because"] for res in with_proofs for ln in res["lines"] for r in ln["reasons"])  # type: ignore[index]
