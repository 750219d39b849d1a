"""A set relation that many rules fill is filled in two statements in the DuckDB backend
(engine/backends/duckdb.py `Step.staged_sql`): the rules' rows appended to a staging table
(UNION ALL), then copied from it DISTINCT, instead of a UNION that de-duplicates each rule's rows
as a pipeline of its own. On the shipped KB that is deny (some thirty rules): its rows are
pyDatalog's, each once, though some rules derive a row more than once."""

from __future__ import annotations

from pathlib import Path

from conftest import named_claims
from engine.api import PolicyKB
from engine.backends.duckdb import STAGED_SELECTS, program_sql
from engine.claims import claim_to_facts
from engine.evaluate import Evaluator

ROOT = Path(__file__).resolve().parent.parent


def test_deny_is_staged_and_its_rows_are_the_pydatalog_rows_each_once() -> None:
    kb = PolicyKB.open(ROOT / "kb")
    assert kb.kb.compiled is not None
    assert sum(rule.head.relation == "deny" for rule in kb.kb.compiled.rules) >= STAGED_SELECTS
    text = program_sql(kb.kb)
    assert 'CREATE OR REPLACE TEMP TABLE "u:deny" AS' in text
    assert 'INSERT INTO "d:deny"\nSELECT DISTINCT * FROM "u:deny";' in text
    assert 'INSERT INTO "d:warn"\nSELECT' in text  # a few rules: a UNION, not staged

    claims = [claim for _, claim in named_claims(300, 5)]
    backend = kb.duckdb()
    models = backend.evaluate_many([claim_to_facts(c) for c in claims])
    engine = Evaluator(kb.kb.compiled, kb.kb.store)
    for claim, model in zip(claims, models, strict=True):
        want = engine.evaluate(claim_to_facts(claim))
        assert set(model.rows("deny")) == set(want.rows("deny"))
    ((staged, distinct, stored),) = backend.con.execute(
        'SELECT (SELECT count(*) FROM "u:deny"), (SELECT count(*) FROM (SELECT DISTINCT * FROM "u:deny")),'
        ' (SELECT count(*) FROM "d:deny")'
    ).fetchall()
    assert staged > distinct == stored > 0  # rules derived rows twice; the table holds each once
