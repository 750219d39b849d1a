"""Rules that differ only in a constant of their head and in the constant one body column equals
are one SELECT in the DuckDB backend (engine/backends/duckdb.py `_fused_heads`): kb/ncci/mue.dl's
date rules (the MUE of policy 2, or of policy 3) join a line's units once. The rows are the
rules', a row that meets both rules' tests included. The rules may differ in other conditions
too (kb/codes/validity.dl: a facility place of service and the facility indicator, or a
non-facility one and the non-facility indicator): each holds for its own rule's rows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from conftest import named_claims
from engine.api import PolicyKB
from engine.backends.duckdb import compile_sql, infer_types, program_sql
from engine.claims import claim_to_facts
from engine.compiler import compile_program
from engine.conformance import Evaluator, _declare
from engine.evaluate import Evaluator as Engine
from engine.program import program_from_text

ROOT = Path(__file__).resolve().parent.parent

# line(line, code, units); limit(code, most units, kind): code D has the same limit of both kinds
FACTS: dict[str, list[tuple[int | str, ...]]] = {
    "line": [(1, "A", 5), (2, "A", 15), (3, "B", 25), (4, "C", 1), (5, "D", 50)],
    "limit": [("A", 10, 2), ("B", 20, 3), ("B", 30, 2), ("C", 0, 4), ("D", 10, 2), ("D", 10, 3)],
}
RULES = [
    # a head constant and a body constant apart: one SELECT
    'over(L, "policy") :- line(L, C, U), limit(C, M, 2), U > M.',
    'over(L, "clinical") :- line(L, C, U), limit(C, M, 3), U > M.',
    # a head constant and a comparison apart (both can hold): left as two SELECTs
    'big(L, "a") :- line(L, C, U), U > 20.',
    'big(L, "b") :- line(L, C, U), U > 40.',
    # a head constant, a body constant and a comparison apart (line 2's 15 units are over 10 and
    # under 20; B, whose limit is of both kinds 2 and 3, is tested by each rule's comparison)
    'odd(L, "low") :- line(L, C, U), limit(C, M, 2), U > 10.',
    'odd(L, "high") :- line(L, C, U), limit(C, M, 3), U < 20.',
]
TYPES: dict[str, list[str | None]] = {"line": ["n", "s", "n"], "limit": ["s", "n", "n"]}


def _step_sql() -> dict[str, str]:
    prog = program_from_text({"<rules>": "\n".join(RULES)})
    _declare(prog, FACTS)
    cp = compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(FACTS))
    sp = compile_sql(cp, infer_types(cp, {cp.fact_relations.get(r, r): t for r, t in TYPES.items()}))
    return {rel: step.sql[rel] for step in sp.steps for rel in step.relations}


def test_rules_a_head_constant_apart_are_one_select() -> None:
    sql = _step_sql()
    assert "UNION" not in sql["over"] and "CASE" in sql["over"] and " IN (2, 3)" in sql["over"]
    assert "UNION" in sql["big"] and "CASE" not in sql["big"]
    assert "UNION" not in sql["odd"] and "CASE" in sql["odd"] and " IN (2, 3)" in sql["odd"]


def test_fused_heads_give_the_rules_rows_on_both_engines() -> None:
    program = SimpleNamespace(facts=FACTS, rules=RULES)
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        # line 2: 15 units over A's 10 (kind 2); line 3: 25 over B's 20 (kind 3), not B's 30
        # (kind 2); line 4's limit is of kind 4; line 5: 50 over D's 10 of both kinds
        assert out["over"] == {(2, "policy"), (3, "clinical"), (5, "policy"), (5, "clinical")}, backend
        assert out["big"] == {(3, "a"), (5, "a"), (5, "b")}, backend
        # "low": a limit of kind 2 (A, B, D) and over 10 units (lines 2, 3, 5); "high": one of
        # kind 3 (B, D) and under 20 units (none of lines 3 and 5)
        assert out["odd"] == {(2, "low"), (3, "low"), (5, "low")}, backend


def test_constants_of_two_types_are_not_fused() -> None:
    # the pair test on SELECT lines as _rule_sql writes them: a column tested against the number
    # 2 in one rule and the symbol '2' in the other is left as two SELECTs (one column never
    # equals both, and an IN list of both is not type-safe); two numbers are fused
    from engine.backends.duckdb import _head_pair

    def select(head: str, test: str) -> list[str]:
        return [f"SELECT t0.ck AS ck, t0.c0 AS c0, '{head}' AS c1", 'FROM "d:line" t0', f"WHERE (t0.c2 = {test})"]

    assert _head_pair(select("policy", "2"), select("clinical", "'2'")) is None
    fused = _head_pair(select("policy", "2"), select("clinical", "3"))
    assert fused is not None and fused[-1] == "WHERE (t0.c2 IN (2, 3))"
    assert "CASE t0.c2 WHEN 2 THEN 'policy' WHEN 3 THEN 'clinical' END" in fused[0]


def test_the_fee_schedule_rules_are_one_select_with_the_rows_of_both() -> None:
    # the shipped KB: fee.facility_na and fee.non_facility_na differ in their head, the kind of
    # place of service and the indicator they read; deny's statement joins them once, and every
    # claim's fee schedule denials are pyDatalog's
    kb = PolicyKB.open(ROOT / "kb")
    (deny,) = [step for step in program_sql(kb.kb).split("-- step ") if step.split("\n")[0].endswith(": deny")]
    assert deny.count("'fee.facility_na'") == 1
    assert "WHEN 'facility' THEN 'fee.facility_na' WHEN 'non_facility' THEN 'fee.non_facility_na'" in deny
    claims = [claim for _, claim in named_claims(400, 7)]
    fee = ("fee.facility_na", "fee.non_facility_na")
    engine = Engine(kb.kb.compiled, kb.kb.store)
    found: set[str] = set()
    for claim, model in zip(claims, kb.duckdb().evaluate_many([claim_to_facts(c) for c in claims]), strict=True):
        rows = {row for row in model.rows("deny") if row[1] in fee}
        assert rows == {row for row in engine.evaluate(claim_to_facts(claim)).rows("deny") if row[1] in fee}
        found |= {rule for _, rule in rows}
    assert found == set(fee)  # both rules deny some line
