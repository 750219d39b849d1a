"""Rules of one bag relation that differ in a single WHERE condition are one SELECT in the DuckDB
backend (engine/backends/duckdb.py `_fused`): kb/codes/periods.dl's outside_table_period (a date
before a table's period, or after it) is joined once instead of twice. The rows are the rules'."""

from __future__ import annotations

from types import SimpleNamespace

from engine.backends.duckdb import _fused, compile_sql, infer_types
from engine.compiler import compile_program
from engine.conformance import Evaluator, _declare
from engine.program import program_from_text

# three lines with their dates (as numbers), two tables with their periods, every line judged
# against every table
FACTS: dict[str, list[tuple[int | str, ...]]] = {
    "ln": [(1, 5), (2, 15), (3, 25)],
    "period": [("A", 10, 20), ("B", 0, 30)],
    "use": [(n, t) for n in (1, 2, 3) for t in ("A", "B")],
    "k": [("k1",)],
}
RULES = [
    # outside the period: before it or after it (one condition apart)
    "out(L, T) :- use(L, T), ln(L, D), period(T, F, Z), D < F.",
    "out(L, T) :- use(L, T), ln(L, D), period(T, F, Z), D > Z.",
    # two conditions apart: left as two SELECTs
    "far(L) :- ln(L, D), D < 10, D > 0.",
    "far(L) :- ln(L, D), D > 20, D < 30.",
    # one condition apart, and line 2 (15) meets both
    "mid(L) :- ln(L, D), D < 20.",
    "mid(L) :- ln(L, D), D > 10.",
    "nmid(K, C) :- k(K), C = count : { mid(L) }.",
]


def _step_sql() -> dict[str, str]:
    prog = program_from_text({"<rules>": "\n".join(RULES)})
    _declare(prog, FACTS)
    cp = compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(FACTS))
    given: dict[str, list[str | None]] = {"ln": ["n", "n"], "period": ["s", "n", "n"], "use": ["n", "s"], "k": ["s"]}
    sp = compile_sql(cp, infer_types(cp, {cp.fact_relations.get(r, r): t for r, t in given.items()}))
    return {rel: step.sql[rel] for step in sp.steps for rel in step.relations}


def test_rules_one_condition_apart_are_one_select() -> None:
    sql = _step_sql()
    assert "UNION" not in sql["out"] and sql["out"].count(" OR ") == 1
    assert "UNION" not in sql["mid"] and sql["mid"].count(" OR ") == 1
    assert "UNION ALL" in sql["far"] and " OR " not in sql["far"]


def test_fused_rules_give_the_rules_rows_on_both_engines() -> None:
    program = SimpleNamespace(facts=FACTS, rules=RULES)
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        # A (10 to 20): line 1 (5) is before it, line 3 (25) after it; B (0 to 30) holds all three
        assert out["out"] == {(1, "A"), (3, "A")}, backend
        assert out["far"] == {(1,), (3,)}, backend  # 5 is in (0, 10), 25 in (20, 30), 15 in neither
        assert out["mid"] == {(1,), (2,), (3,)}, backend
        assert out["nmid"] == {("k1", 3)}, backend  # line 2 is one member, though both rules keep it


def test_a_line_break_inside_a_string_constant_is_not_read_as_a_condition() -> None:
    # line by line, these differ in their last line only, which is inside the string constant
    parts = [
        (frozenset({"t"}), "SELECT t.c0\nFROM \"d:t\" t\nWHERE (t.c0 = 'a\n  AND b')"),
        (frozenset({"t"}), "SELECT t.c0\nFROM \"d:t\" t\nWHERE (t.c0 = 'a\n  AND c')"),
    ]
    assert _fused(parts) == parts
    # the same SELECTs with the condition on one line are fused
    plain = [(needs, sql.replace("\n  AND ", " AND ")) for needs, sql in parts]
    assert _fused(plain) == [
        (frozenset({"t"}), "SELECT t.c0\nFROM \"d:t\" t\nWHERE (((t.c0 = 'a AND b')) OR ((t.c0 = 'a AND c')))")
    ]
