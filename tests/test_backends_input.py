"""The DuckDB backend's input: claim facts in, the same models out however they are handed over.

`claim_to_facts` returns ClaimFacts (rows distinct, sorted, of one length), which the backend
loads as they are and writes to DuckDB with one %-format per relation; any other facts mapping
is deduplicated and sorted first and written by csv.writer. Both must give the same models: the
same claim relations (content and order, as the decider and the adjudicator read them), the same
outcomes, the same message bindings.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.api import PolicyKB
from engine.backends import BatchModel
from engine.claims import CLAIM_RELATIONS, Claim, ClaimFacts, claim_to_facts, load_claims, parse_claim

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _claims() -> list[Claim]:
    """Every bundled example claim, and one with text csv.writer must quote (commas, quotes, line
    breaks, a carriage return alone and before a line feed), the word None, and a line repeated
    modifier and diagnosis (rows to deduplicate)."""
    claims = [c for path in sorted(EXAMPLES.glob("*.json")) for c in load_claims(path)]
    raw: dict[str, Any] = json.loads((EXAMPLES / "injection-record-incomplete.json").read_text(encoding="utf-8"))
    raw = copy.deepcopy(raw[0] if isinstance(raw, list) else raw)
    for ln in raw["lines"]:
        ln["diagnoses"] = [*ln.get("diagnoses", []), "D51.0", "D51.0"]
        ln["modifiers"] = ["59", "59"]
        if "documentation" in ln:
            ln["documentation"].update(drug_name='say "hi",\nthen leave\r\n', site="None", route="a,b", time="10\r15")
    return [*claims, parse_claim(raw)]


def _models(kb: PolicyKB, chunk: list[Any], relations: list[str] | None = None) -> list[BatchModel]:
    return kb.duckdb().evaluate_many(chunk, relations)


def test_claim_facts_are_marked_and_keep_their_rows() -> None:
    for claim in _claims():
        facts = claim_to_facts(claim)
        assert type(facts) is ClaimFacts
        assert list(facts) == list(CLAIM_RELATIONS)
        for rel, rows in facts.items():
            assert rows == sorted(set(rows)), rel
            assert len({len(r) for r in rows}) <= 1, rel


def test_claim_facts_and_plain_facts_give_the_same_models(kb: PolicyKB) -> None:
    claims = _claims()
    made = [claim_to_facts(c) for c in claims]
    plain = [{rel: list(reversed(rows)) * 2 for rel, rows in f.items()} for f in made]  # unsorted, repeated
    fast, slow = _models(kb, made), _models(kb, plain)
    assert [m.relations for m in fast] == [m.relations for m in slow]
    assert [m.solutions for m in fast] == [m.solutions for m in slow]
    assert any(m.rows("deny") for m in fast) and any(m.solutions for m in fast)
    for facts, model in zip(made, fast, strict=True):
        for rel in CLAIM_RELATIONS:
            assert model.relations[rel] == facts[rel]  # what the decider and the adjudicator read


def test_every_relation_crosses_into_duckdb_intact(kb: PolicyKB) -> None:
    """Asking back the claim relations themselves: what DuckDB holds is what went in."""
    claims = _claims()
    made = [claim_to_facts(c) for c in claims]
    plain = [dict(f) for f in made]
    mixed = [f if i % 2 else dict(f) for i, f in enumerate(made)]  # one chunk, both kinds
    for chunk in (made, plain, mixed):
        back = _models(kb, chunk, relations=list(CLAIM_RELATIONS))
        for facts, model in zip(made, back, strict=True):
            assert {rel: model.relations[rel] for rel in CLAIM_RELATIONS} == facts


def test_a_chunk_leaves_no_rows_of_the_last_one_behind(kb: PolicyKB) -> None:
    """Each chunk empties the last chunk's tables (claim relations, derived ones and the claim
    keys) by making them anew: no deleted row stays in a table for later scans to walk, as DELETE
    leaves them. DuckDB's estimate of a table's size counts the rows its row groups hold."""
    backend = kb.duckdb()
    made = [claim_to_facts(c) for c in _claims()]
    for _ in range(3):
        backend.evaluate_many(made, [])
    sizes = backend.con.execute(
        "SELECT table_name, estimated_size FROM duckdb_tables() WHERE temporary AND estimated_size > 0"
    ).fetchall()
    held = {name: size for name, size in sizes if name.startswith("d:") or name == "_claims"}
    assert held["_claims"] == len(made) and held["d:line"] > 0
    for name, size in held.items():
        (rows,) = backend.con.execute(f'SELECT count(*) FROM "{name}"').fetchone()  # type: ignore[misc]
        assert size == rows, name
