"""A negated atom is an uncorrelated NOT IN in the DuckDB backend (engine/backends/duckdb.py
`_not_in`), not a correlated NOT EXISTS, whose dependent-join planning cost every negation of
every rule a millisecond or two a chunk; in a per-chunk rule of one positive atom, a negated
claim-dependent atom is an ANTI JOIN instead (`_anti_joined`: DuckDB builds on the smaller side).
The rows must be the rules': the same on both engines, with a claim key, symbols, numbers and
constants among the negated atom's arguments, and NULLs (a number a fact leaves out) kept apart
as NOT EXISTS keeps them."""

from __future__ import annotations

from types import SimpleNamespace

import duckdb
import pytest

from engine.backends.duckdb import NUM, SYM, _not_in, compile_sql, infer_types
from engine.compiler import compile_program
from engine.conformance import Evaluator, _declare
from engine.program import program_from_text

# line(l, code, units), modifier(l, m), role(m, r): a claim's lines and modifiers, and the role of
# each modifier (per claim too, so that every negation below reads a claim-dependent relation
# except where it says otherwise)
FACTS: dict[str, list[tuple[int | str, ...]]] = {
    "line": [(1, "99213", 1), (2, "96372", 2), (3, "J3420", 1), (4, "96372", 5)],
    "modifier": [(1, "25"), (2, "59"), (4, "RT")],
    "role": [("25", "ncci"), ("59", "ncci"), ("59", "distinct"), ("RT", "anatomic")],
    "em": [("99213",)],
}
RULES = [
    # a symbol and a number bound, with the claim key: lines without modifier 59
    'no59(L) :- line(L, _, _), not modifier(L, "59").',
    # a variable and a constant: modifiers with an ncci role that is not also distinct
    'plain_ncci(L, M) :- modifier(L, M), role(M, "ncci"), not role(M, "distinct").',
    # two variables: lines with no modifier at all of any role
    "bare(L) :- line(L, _, _), not modifier(L, _).",
    # a number compared with a symbol column: never equal, so nothing is excluded
    "all_lines(L) :- line(L, _, U), not em(U).",
    # a number bound to a number column: lines whose units are no other line's number
    "units_free(L) :- line(L, _, U), not line(U, _, _).",
    # a value worked out by arithmetic: the line after L is not billed
    "last(L) :- line(L, _, _), N = L + 1, not line(N, _, _).",
    'deny(L, "no_admin") :- line(L, "J3420", _), not line(_, "96372", 1).',
]


def _sql() -> dict[str, str]:
    prog = program_from_text({"<rules>": "\n".join(RULES)})
    _declare(prog, FACTS)
    cp = compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(FACTS))
    given: dict[str, list[str | None]] = {
        "line": ["n", "s", "n"],
        "modifier": ["n", "s"],
        "role": ["s", "s"],
        "em": ["s"],
    }
    sp = compile_sql(cp, infer_types(cp, given))
    return {rel: step.sql[rel] for step in sp.steps for rel in step.relations}


def test_a_negation_is_an_uncorrelated_not_in_or_an_anti_join() -> None:
    sql = _sql()
    # two positive atoms: a NOT IN
    assert (
        "(t0.ck, t0.c0) NOT IN (SELECT t1.ck, t1.c0 FROM \"d:role\" t1 WHERE (t1.c1 = 'distinct'))" in sql["plain_ncci"]
    )
    # one positive atom: an ANTI JOIN of it, on the NOT EXISTS test (a NULL equals nothing)
    assert (
        'FROM "d:line" t0 ANTI JOIN "d:modifier" t1 ON t1.ck = t0.ck AND (t1.c0 = t0.c0) AND (t1.c1 = \'59\')'
        in (sql["no59"])
    )
    assert sql["bare"].endswith('ANTI JOIN "d:_neg1_modifier" t1 ON t1.ck = t0.ck AND (t1.c0 = t0.c0)')
    assert sql["units_free"].endswith('ANTI JOIN "d:_neg2_line" t1 ON t1.ck = t0.ck AND (t1.c0 = t0.c2)')
    assert 'k.ck NOT IN (SELECT t0.ck FROM "d:_neg4_line" t0)' in sql["deny"]  # with the claims: two atoms
    assert "NOT IN" not in "".join(sql[r] for r in ("no59", "bare", "units_free", "last"))
    assert "NOT EXISTS" not in "".join(sql[r] for r in ("no59", "plain_ncci", "bare", "units_free", "deny"))
    # a value worked out by arithmetic: the expression itself is the value
    assert 'ANTI JOIN "d:_neg3_line" t2 ON t2.ck = t0.ck AND (t2.c0 = (t0.c0 + 1))' in sql["last"]
    # a type mismatch keeps the NOT EXISTS, as written before (it excludes nothing)
    assert "NOT EXISTS" in sql["all_lines"] and "FALSE" in sql["all_lines"]


def test_negations_give_the_same_rows_on_both_engines() -> None:
    program = SimpleNamespace(facts=FACTS, rules=RULES)
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        assert out["no59"] == {(1,), (3,), (4,)}, backend
        assert out["plain_ncci"] == {(1, "25")}, backend  # 59 is also distinct
        assert out["bare"] == {(3,)}, backend
        assert out["all_lines"] == {(1,), (2,), (3,), (4,)}, backend
        assert out["units_free"] == {(4,)}, backend  # units 1, 2, 1 name billed lines, 5 does not
        assert out["last"] == {(4,)}, backend
        assert out["deny"] == {(3, "no_admin")}, backend  # 96372 is billed with 2 and 5 units, never 1


@pytest.mark.parametrize(
    ("outer", "inner", "guard_needed"),
    [
        # NULLs on both sides: an inner NULL makes every outer row's NOT IN unknown or false
        ([(1, "a"), (2, "b"), (None, "c"), (4, "d")], [(1, "a"), (None, "b"), (4, "x")], True),
        ([(1, "a"), (None, "b")], [(None, "b")], True),
        # an outer NULL against no inner row at all: NOT IN of an empty list is true anyway
        ([(None, "a")], [], False),
        # an outer NULL against an inner row of the same symbol: unknown without the guard (and
        # false where the symbols differ, which decides the row whatever the number)
        ([(None, "a"), (2, "a")], [(3, "a")], True),
        ([(None, "a"), (2, "a")], [(3, "b")], False),
        ([(1, "a"), (2, "a")], [(2, "a"), (3, "b")], False),
    ],
)
def test_not_in_keeps_the_rows_not_exists_keeps_also_with_nulls(
    outer: list[tuple[int | None, str]], inner: list[tuple[int | None, str]], guard_needed: bool
) -> None:
    """Rows of `o` with no row of `i` holding the same claim key, number and symbol (and the
    symbol constant 'k' in i's last column): NOT EXISTS and _not_in agree whatever is NULL."""
    con = duckdb.connect()
    con.execute("CREATE TABLE o (ck BIGINT, c0 BIGINT, c1 VARCHAR)")
    con.execute("CREATE TABLE i (ck BIGINT, c0 BIGINT, c1 VARCHAR, c2 VARCHAR)")
    for ck in (0, 1):  # the same rows for two claims, and claim 1's inner rows moved to claim 2
        for n, s in outer:
            con.execute("INSERT INTO o VALUES (?, ?, ?)", [ck, n, s])
        for n, s in inner:
            con.execute("INSERT INTO i VALUES (?, ?, ?, 'k')", [ck * 2, n, s])
    con.execute("INSERT INTO i VALUES (0, 1, 'a', 'other')")  # fails the constant test: excludes nothing
    keys = [("t1.ck", "t0.ck", None), ("t1.c0", "t0.c0", NUM), ("t1.c1", "t0.c1", SYM)]
    new = _not_in("i", "t1", keys, ["(t1.c2 = 'k')"])
    old = (
        "NOT EXISTS (SELECT 1 FROM i t1 WHERE t1.ck = t0.ck AND (t1.c0 = t0.c0) AND (t1.c1 = t0.c1) AND (t1.c2 = 'k'))"
    )
    rows = {w: sorted(con.execute(f"SELECT * FROM o t0 WHERE {w}").fetchall(), key=str) for w in (new, old)}
    assert rows[new] == rows[old]
    anti = "o t0 ANTI JOIN i t1 ON t1.ck = t0.ck AND (t1.c0 = t0.c0) AND (t1.c1 = t0.c1) AND (t1.c2 = 'k')"
    assert sorted(con.execute(f"SELECT t0.* FROM {anti}").fetchall(), key=str) == rows[old]
    # and the guard is needed: without it a NULL on either side drops rows NOT EXISTS keeps
    bare = new.split(" OR ", 1)[1][:-1].replace(" AND t1.c0 IS NOT NULL", "")
    unguarded = sorted(con.execute(f"SELECT * FROM o t0 WHERE {bare}").fetchall(), key=str)
    assert (unguarded != rows[old]) is guard_needed
