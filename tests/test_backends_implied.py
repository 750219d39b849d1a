"""A per-chunk rule's SELECT leaves out an atom that an earlier atom's rows imply (engine/backends/
duckdb.py `_implied_atoms`): its variables are the earlier atom's or used nowhere else, and every
row of the earlier atom's relation was made from a row of the atom's relation holding those
values. Left in: an atom another relation's rows are not made from, or made from at other
columns. Either way every relation holds the rows the pyDatalog engine derives."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from conftest import named_claims
from engine.api import PolicyKB
from engine.backends.duckdb import compile_sql, infer_types, table_name
from engine.claims import claim_to_facts
from engine.compiler import compile_program
from engine.conformance import Evaluator, _declare
from engine.evaluate import Evaluator as KBEvaluator
from engine.ir import IAtom
from engine.program import program_from_text

ROOT = Path(__file__).resolve().parent.parent

FACTS: dict[str, list[tuple[int | str, ...]]] = {
    "a": [(1, 10), (2, 20), (3, 30)],
    "b": [(2,), (4,)],
}
RULES = [
    "p(L, X) :- a(L, X), X > 10.",  # its rows are a's: a(L, _) holds for each
    "mixed(L) :- a(L, _).",
    "mixed(L) :- b(L).",  # 4 has no row of a
    "swap(X, L) :- a(L, X).",
    "implied(L) :- p(L, X), a(L, _), X < 30.",  # a is left out
    "implied_swapped(L) :- swap(_, L), a(L, Y).",  # swap's column 1 is a's column 0: left out
    "kept_other(L) :- b(L), a(L, _).",  # b's rows are not made from a's
    "kept_mixed(L) :- mixed(L), a(L, _).",  # one of mixed's rules does not read a
    "kept_columns(L) :- swap(L, _), a(L, _).",  # swap's column 0 is a's column 1, not 0
    "kept_used(L) :- p(L, X), a(L, Y), Y = X.",  # Y is used: a is joined for it
]


def _compiled():
    prog = program_from_text({"<rules>": "\n".join(RULES)})
    _declare(prog, FACTS)
    return compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(FACTS))


def test_an_implied_atom_is_left_out_and_only_then() -> None:
    cp = _compiled()
    sp = compile_sql(cp, infer_types(cp, {}))
    left_out = {
        cp.rules[index].head.relation: {cp.rules[index].body[n].relation for n in at}
        for index, at in sp.implied.items()
    }
    assert left_out == {"implied": {"a"}, "implied_swapped": {"a"}}
    sql = {rel: step.sql[rel] for step in sp.steps for rel in step.relations}
    a_table = table_name(cp, "a")
    for rel in ("implied", "implied_swapped"):
        assert a_table not in sql[rel], rel
    for rel in ("kept_other", "kept_mixed", "kept_columns", "kept_used"):
        assert a_table in sql[rel], rel


def test_rules_with_an_implied_atom_have_the_datalog_rows_on_both_engines() -> None:
    program = SimpleNamespace(facts=FACTS, rules=RULES)
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        assert out["implied"] == {(2,)}, backend
        assert out["implied_swapped"] == {(1,), (2,), (3,)}, backend
        assert out["kept_other"] == {(2,)}, backend
        assert out["kept_mixed"] == {(1,), (2,), (3,)}, backend
        assert out["kept_columns"] == set(), backend  # 10, 20, 30 are no line of a
        assert out["kept_used"] == {(2,), (3,)}, backend


def test_on_the_shipped_kb_an_implied_atom_is_left_out_with_the_pydatalog_outcomes() -> None:
    """kb/: a rule joins a relation again to the line its rows come from (for a value it does not
    use). Its outcome rows, and every outcome relation's, are pyDatalog's."""
    kb = PolicyKB.open(ROOT / "kb")
    cp = kb.kb.compiled
    assert cp is not None
    backend = kb.duckdb()
    sp = backend.sql
    assert sp.implied  # the shipped KB has such a rule
    heads: set[str] = set()
    for index, at in sp.implied.items():
        rule = cp.rules[index]
        heads.add(rule.head.relation)
        for n in at:
            lit = rule.body[n]
            assert isinstance(lit, IAtom) and not lit.negated
            assert not sp.solutions.get(index) or table_name(cp, lit.relation) in sp.solutions[index]
    claims = [claim for _, claim in named_claims(300, 11)]
    relations = sorted({"deny", "warn", "overridden", *heads})
    models = backend.evaluate_many([claim_to_facts(c) for c in claims], relations)
    engine = KBEvaluator(cp, kb.kb.store)
    seen = {rel: 0 for rel in heads}
    for claim, model in zip(claims, models, strict=True):
        want = engine.evaluate(claim_to_facts(claim))
        for rel in relations:
            assert set(model.rows(rel)) == set(want.rows(rel)), rel
            if rel in heads:
                seen[rel] += len(want.rows(rel))
    assert all(seen.values()), seen  # the claims reach every such rule
