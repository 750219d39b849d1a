"""The built-ins are defined once (engine.semantics), and the evaluator and the prover's re-solver
both follow that one definition: what pyDatalog derives is exactly what a proof can rebuild."""

from __future__ import annotations

import itertools

import pytest

from engine import semantics as S
from engine.compiler import compile_program
from engine.evaluate import Evaluator
from engine.explain.proof import Prover
from engine.ir import IVar
from engine.program import program_from_text
from engine.store import Store


def test_a_number_and_a_symbol_only_ever_differ() -> None:
    for op in S.COMPARISON_OPS:
        assert S.compare(1, op, "1") is (op == "!=")
        assert S.compare("1", op, 1) is (op == "!=")
    assert S.compare(2, "<", 10) and S.compare("10", "<", "2")  # numbers by value, symbols by code point
    assert S.compare("B", "<", "a") and not S.compare("b", "<", "B")


def test_arithmetic_is_floored_and_division_by_zero_has_no_value() -> None:
    assert [S.arith("/", a, 2) for a in (7, -7)] == [3, -4]
    assert [S.arith("%", a, b) for a, b in ((7, -2), (-7, 2), (-7, -2))] == [-1, 1, -1]
    assert S.arith("/", 5, 0) is None and S.arith("%", 5, 0) is None
    assert S.arith("+", "1", 2) is None and S.arith("*", 6, 7) == 42


def test_match_is_anchored_at_both_ends_and_an_invalid_pattern_never_matches() -> None:
    assert S.matches("9921[1-5]", "99213")
    assert not S.matches("9921[1-5]", "992134") and not S.matches("9921[1-5]", "x99213")
    assert S.matches("J.*", "J3420") and not S.matches("J", "J3420")
    assert not S.matches("([", "([") and not S.matches("1", 1)  # type: ignore[arg-type]


def test_rows_sort_numbers_first_then_symbols() -> None:
    rows = [("b", 1), (10, "x"), (2, "y"), ("B", 0), (2, "a")]
    assert S.sort_rows(rows) == [(2, "a"), (2, "y"), (10, "x"), ("B", 0), ("b", 1)]


def test_operator_table_covers_every_operator_the_language_has() -> None:
    assert set(S.COMPARISON_OPS) == {"=", "!=", "<", "<=", ">", ">="}
    assert set(S.ARITHMETIC_OPS) == {"+", "-", "*", "/", "%"}
    for sym in S.ARITHMETIC_OPS:
        for a, b in itertools.product((-7, 0, 7), (-2, 0, 3)):
            assert S.OPERATORS[sym].python(a, b) == S.arith(sym, a, b)
    assert S.OPERATORS["match"].python("a+", "aaa") is True


def test_sql_templates_give_the_same_answers_as_python() -> None:
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    values = (-7, -6, -1, 0, 1, 2, 7, 13)
    for sym in S.ARITHMETIC_OPS:
        for a, b in itertools.product(values, values):
            sql = "SELECT " + S.OPERATORS[sym].sql.format(a=f"{a}::BIGINT", b=f"{b}::BIGINT")
            assert con.execute(sql).fetchone()[0] == S.arith(sym, a, b), (sym, a, b)
    for sym in S.COMPARISON_OPS:
        for a, b in itertools.product(("10", "2", "B", "a"), repeat=2):
            sql = "SELECT " + S.OPERATORS[sym].sql.format(a=f"'{a}'", b=f"'{b}'")
            assert con.execute(sql).fetchone()[0] == S.compare(a, sym, b), (sym, a, b)
    for pat, val in (("9921[1-5]", "99213"), ("9921[1-5]", "992134"), ("J", "J3420"), ("J.*", "J3420")):
        sql = "SELECT " + S.OPERATORS["match"].sql.format(a=f"'{pat}'", b=f"'{val}'")
        assert con.execute(sql).fetchone()[0] == S.matches(pat, val), (pat, val)


PROGRAM = """
.decl v(x: number, y: number)
.claim v
.decl s(a: symbol)
.claim s
.decl quot(x: number, y: number, q: number)
.decl rem(x: number, y: number, r: number)
.decl bigger(x: number, y: number)
.decl code_like(a: symbol)
.decl not_code_like(a: symbol)
.decl sum_is(x: number, y: number)
quot(x, y, q) :- v(x, y), q = x / y.
rem(x, y, r) :- v(x, y), r = x % y.
bigger(x, y) :- v(x, y), x > y * 2.
code_like(a) :- s(a), match("[0-9]{4}[0-9A-Z]", a).
not_code_like(a) :- s(a), !match("[0-9]{4}[0-9A-Z]", a).
sum_is(x, y) :- v(x, y), x + y = 6.
"""
FACTS = {"v": [(7, 2), (-7, 2), (7, -2), (5, 0), (0, 0), (3, 3), (9, 1)],
         "s": [("99213",), ("0001F",), ("992134",), ("x9921",), ("J342",)]}


def test_the_evaluator_and_the_provers_re_solver_agree_on_every_built_in() -> None:
    prog = program_from_text({"t.dl": PROGRAM})
    cp = compile_program(prog)
    ev = Evaluator(cp, Store(prog))
    try:
        model = ev.evaluate(FACTS)
        prover = Prover(prog, cp, ev, model, lambda rel, row: None)
        for rel in ("quot", "rem", "bigger", "code_like", "not_code_like", "sum_is"):
            rebuilt = set()
            for crule in cp.rules_for(rel):
                for sol, _steps in prover.solve(crule.body, {}):
                    rebuilt.add(tuple(sol[t.name] if isinstance(t, IVar) else None for t in crule.head.args))
            assert set(model.rows(rel)) == rebuilt, rel
            for row in model.rows(rel):
                assert prover.prove(rel, row).holds, (rel, row)
    finally:
        ev.close()
    # and what both say is what semantics says
    assert set(model.rows("quot")) == {(x, y, S.arith("/", x, y)) for x, y in FACTS["v"] if y != 0}
    assert set(model.rows("rem")) == {(x, y, S.arith("%", x, y)) for x, y in FACTS["v"] if y != 0}
    assert set(model.rows("bigger")) == {(7, 2), (7, -2), (5, 0), (9, 1)}
    assert model.rows("code_like") == [("0001F",), ("99213",)]
    assert set(model.rows("not_code_like")) == {("992134",), ("x9921",), ("J342",)}
    assert model.rows("sum_is") == [(3, 3)]
