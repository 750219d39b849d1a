"""The batch backend's message queries sort on fewer columns, with the same messages.

A message shows, per name, its distinct values in the order the prover first meets them (its
solutions in depth-first order, each atom's candidate rows sorted). The DuckDB backend sorts a
rule's solution rows on only the columns that order needs (engine/backends/duckdb.py
_sort_keys): a column a keyed atom fixes (one row of its relation per value of its bound
columns) is left out, and so is every column after the point where the named variables are all
fixed. The rules below are chosen so that a wrong shortcut shows in the message text: the values
a message lists appear in an order that is not their sorted order, an anonymous column decides
the order of a shown one, a head has more solutions than a message shows, and a head has more
rows than that but few solutions. Each message is decided from the facts first, then compared
with the pyDatalog path (the Adjudicator) and with the backend's full solutions.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

import engine.backends.duckdb as duck
from conftest import lint_fixture_kb, record_message_queries
from engine.adjudicate import MESSAGE_SOLUTIONS, _merge
from engine.api import PolicyKB
from engine.backends import BatchModel
from engine.backends.decide import BatchDecider, decide_many
from engine.claims import Claim, claim_to_facts, parse_claim
from engine.ir import IConst, IVar

# 14 tables for code 99215 (more solutions than a message shows), their names in the reverse of
# the tables' order
MANY = [(f"t{i:02}", f"name {15 - i:02}") for i in range(1, 15)]

RULES = (
    """
/** @summary A table a code is judged against, with a release number. */
.decl uses(code: symbol, table: symbol, release: number)
uses("99213", "b", 2).
uses("99213", "a", 2).
uses("99213", "c", 1).
uses("99213", "a", 1).
uses("99212", "a", 1).
uses("99212", "a", 2).
uses("99212", "a", 3).
uses("99212", "a", 4).
uses("99212", "a", 5).
uses("99212", "c", 1).
uses("99212", "c", 2).
uses("99212", "c", 3).
uses("99212", "c", 4).
uses("99212", "c", 5).
uses("99212", "b", 1).
uses("99212", "b", 2).
uses("99212", "b", 3).
uses("99212", "b", 4).
uses("99212", "b", 5).
uses("99211", "a", 1).
"""
    + "".join(f'uses("99215", "{t}", 1).\n' for t, _ in MANY)
    + """
/** @summary How a message names a table (one name each). */
.decl table_name(table: symbol, name: symbol)
table_name("a", "zeta").
table_name("b", "alpha").
table_name("c", "mid").
"""
    + "".join(f'table_name("{t}", "{n}").\n' for t, n in MANY)
    + """
/** @summary A word for a code at each step (the step orders the words, and is not shown). */
.decl step_word(code: symbol, step: number, word: symbol)
step_word("99214", 1, "late").
step_word("99214", 2, "early").
step_word("99214", 3, "late").
step_word("99211", 10, "ten").
step_word("99211", 9, "nine").

/** @summary A nickname of a table (table "a" has two). */
.decl nickname(table: symbol, nick: symbol)
nickname("a", "the first").
nickname("a", "alpha one").
nickname("b", "the second").

/** @summary A table a line is judged against. */
.decl line_table(line: number, table: symbol, release: number)
line_table(l, t, r) :- line(l, c, _, _, _, _), uses(c, t, r).

/**
 * @id t.tables
 * @title Tables used
 * @summary The tables a line is judged against, by name.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l} on {d}: {name}.
 */
warn(l, "t.tables") :- line_table(l, t, _), line(l, _, d, _, _, _), table_name(t, name).

/**
 * @id t.steps
 * @title Words by step
 * @summary The words of the line's code, in the order of their steps.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l}: {w}.
 */
warn(l, "t.steps") :- line(l, c, _, _, _, _), step_word(c, _, w).

/**
 * @id t.nicknames
 * @title Nicknames
 * @summary The nicknames of the tables a line is judged against.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l}: {nick}.
 */
warn(l, "t.nicknames") :- line_table(l, t, _), nickname(t, nick).

/**
 * @id t.line
 * @title A line's own number
 * @summary A message that shows its head only.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l} uses table a.
 */
warn(l, "t.line") :- line_table(l, "a", 1).
"""
)


@pytest.fixture(scope="module")
def tables_kb(tmp_path_factory: pytest.TempPathFactory) -> PolicyKB:
    return lint_fixture_kb(tmp_path_factory.mktemp("tables_kb"), {"tables.dl": RULES})


@pytest.fixture
def check_every_claim_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check claim relations' keys on rules of any size (a test chunk has a few outcome rows)."""
    monkeypatch.setattr(duck, "MESSAGE_KEYED_HEADS", 0)


def _claim(codes: list[str]) -> Claim:
    line = {"service_date": "2024-03-01", "units": 1, "pos": "11", "rendering_npi": "1234567893"}
    return parse_claim(
        {
            "id": "TABLES-1",
            "patient": {"id": "P1", "birth_date": "1960-01-01", "sex": "F"},
            "lines": [{**line, "line": n, "code": c} for n, c in enumerate(codes, 1)],
        }
    )


def _messages(result: dict[str, Any]) -> dict[tuple[int, str], str]:
    return {(ln["line"], r["rule"]): r["message"] for ln in result["lines"] for r in ln["reasons"]}


def _index(kb: PolicyKB, rule_id: str) -> int:
    assert kb.kb.compiled is not None
    (index,) = [r.index for r in kb.kb.compiled.rules if r.head.args[-1] == IConst(rule_id)]
    return index


def _order_by(kb: PolicyKB, rule_id: str, model_facts: dict[str, list[tuple]]) -> str:
    """The ORDER BY of the rule's message query after a chunk of these facts."""
    backend = kb.duckdb()
    request = BatchDecider(kb).request
    backend.evaluate_many([model_facts], messages=request)
    index = _index(kb, rule_id)
    layout = backend.sql.solution_layout[index]
    places = [layout.names.get(n) for n in request.names[index]]
    (keyed,) = backend._keyed_atoms([(index, 1)]).values()
    sql = backend._message_sql(index, backend.sql.solutions[index], places, keyed)[0]
    return sql.rsplit("\nORDER BY ", 1)[1]


def test_messages_list_values_in_the_provers_order_not_sorted(tables_kb: PolicyKB, check_every_claim_key: None) -> None:
    claim = _claim(["99213", "99214", "99215", "99212"])
    (fast,) = decide_many(tables_kb, [claim])
    messages = _messages(fast)
    # line 1: uses rows for 99213 sorted are (a,1) (a,2) (b,2) (c,1): tables a, b, c, named
    # zeta, alpha, mid (the reverse of sorted for the first two); the line's date once
    assert messages[(1, "t.tables")] == "Line 1 on 2024-03-01: zeta, alpha and mid."
    # line 2: the steps 1, 2, 3 (not shown) give late, early, late: not the sorted early, late
    assert messages[(2, "t.steps")] == "Line 2: late and early."
    # line 3: 14 tables, one solution each: the first twelve (t01..t12) are shown, names 14..03
    twelve = [n for _, n in MANY[:MESSAGE_SOLUTIONS]]
    assert messages[(3, "t.tables")] == "Line 3 on 2024-03-01: " + ", ".join(twelve[:-1]) + " and " + twelve[-1] + "."
    # line 4: 15 rows (three tables, five releases each) but three solutions: all of them, a, b, c
    assert messages[(4, "t.tables")] == "Line 4 on 2024-03-01: zeta, alpha and mid."
    # line 1, t.nicknames: table a's two nicknames, sorted (nickname is not keyed on its table),
    # then b's
    assert messages[(1, "t.nicknames")] == "Line 1: alpha one, the first and the second."
    # the pyDatalog path agrees, record for record
    assert fast == tables_kb.adjudicate(claim, proofs=False).to_dict()


def test_the_message_query_sorts_only_on_what_orders_the_solutions(
    tables_kb: PolicyKB, check_every_claim_key: None
) -> None:
    facts = claim_to_facts(_claim(["99213", "99214"]))
    # t.tables: line is keyed on its line number (it fixes d) and table_name on its table (it
    # fixes name), so the table t0.c1 is all that orders a line's solutions: the release (an
    # anonymous column of line_table) comes after every named variable is fixed
    assert _order_by(tables_kb, "t.tables", facts) == "1, 2, t0.c1"
    # t.steps: the step (anonymous) orders the words, so it stays, before the word
    assert _order_by(tables_kb, "t.steps", facts) == "1, 2, t1.c1, t1.c2"
    # t.nicknames: nickname holds two rows for table a: not keyed, its column stays
    assert _order_by(tables_kb, "t.nicknames", facts) == "1, 2, t0.c1, t0.c2, t1.c1"


def test_a_claim_relation_is_keyed_only_where_the_chunk_says_so(
    tables_kb: PolicyKB, check_every_claim_key: None
) -> None:
    """Facts not read from a claim may hold two lines with one number: `line` is then not keyed
    on it, and each of the line's dates is a value of its own, in the prover's order."""
    backend = tables_kb.duckdb()
    request = BatchDecider(tables_kb).request
    index = _index(tables_kb, "t.tables")
    row = ("99213", "2024-03-01", "11", "1234567893", 1)
    facts = {"line": [(1, *row), (1, "99213", "2024-02-01", *row[2:])]}
    (model,) = backend.evaluate_many([facts], messages=request)
    assert isinstance(model, BatchModel)
    # the solutions sorted: per table a, b, c (as above), line 1's rows by date: 02-01, 03-01
    assert model.messages[(index, (1, "t.tables"))] == ("1", "2024-02-01 and 2024-03-01", "zeta, alpha and mid")
    assert model.messages[(index, (1, "t.tables"))] == _merged(tables_kb, facts, index, (1, "t.tables"))
    # not keyed: the release orders the dates as well, and the line's columns up to the date count
    assert _order_by(tables_kb, "t.tables", facts) == "1, 2, t0.c1, t0.c2, t1.c1, t1.c2"
    # one line per number: keyed, and the date is read off each head's first row
    facts = {"line": [(1, *row), (2, "99214", *row[1:])]}
    (model,) = backend.evaluate_many([facts], messages=request)
    assert model.messages[(index, (1, "t.tables"))] == ("1", "2024-03-01", "zeta, alpha and mid")
    assert model.messages[(index, (1, "t.tables"))] == _merged(tables_kb, facts, index, (1, "t.tables"))


def _merged(kb: PolicyKB, facts: dict[str, list[tuple]], index: int, head: tuple) -> tuple[str | None, ...]:
    """The message values from the backend's full solutions (every named variable, the full
    ORDER BY), merged as the Adjudicator merges the prover's."""
    (model,) = kb.duckdb().evaluate_many([facts])
    assert isinstance(model, BatchModel)
    merged = _merge(model.solutions[(index, head)][:MESSAGE_SOLUTIONS])
    names = BatchDecider(kb).request.names[index]
    return tuple(str(merged[n]) for n in names)


def test_a_stored_table_with_a_repeated_key_is_not_keyed(tables_kb: PolicyKB) -> None:
    backend = tables_kb.duckdb()
    assert backend._unique_on("table_name", (0,)) is True
    assert backend._unique_on("nickname", (0,)) is False
    assert backend._unique_on("nickname", (0, 1)) is True


def test_a_rule_whose_atoms_are_not_read_as_the_sql_binds_them_keeps_the_full_sort(
    tables_kb: PolicyKB, check_every_claim_key: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the body's atoms ever be read in another order than the SQL compiler bound them,
    the message query keeps every ORDER BY column (no shortcut is taken on a wrong reading) and
    the messages stay those of the prover."""
    facts = claim_to_facts(_claim(["99213", "99214"]))
    full = _order_by(tables_kb, "t.tables", facts)
    real = duck._solution_atoms

    def reversed_atoms(rule: Any) -> Any:
        atoms, assigned = real(rule)
        return tuple(reversed(atoms)), assigned

    monkeypatch.setattr(duck, "_solution_atoms", reversed_atoms)
    assert tables_kb.kb.compiled is not None
    cp = tables_kb.kb.compiled
    backend = duck.DuckDBBackend(cp, tables_kb.kb.store, duck.declared_types(cp, tables_kb.kb.program))
    index = _index(tables_kb, "t.tables")
    assert backend.sql.solution_layout[index].atoms is None
    request = BatchDecider(tables_kb).request
    places = [backend.sql.solution_layout[index].names.get(n) for n in request.names[index]]
    sql = backend._message_sql(index, backend.sql.solutions[index], places)[0]
    order = sql.rsplit("\nORDER BY ", 1)[1]
    assert order == backend.sql.solutions[index].rsplit("\nORDER BY ", 1)[1]  # the full sort
    assert len(order.split(", ")) > len(full.split(", ")) == 3  # longer than the shortened "1, 2, t0.c1"
    (model,) = backend.evaluate_many([facts], messages=request)
    assert isinstance(model, BatchModel)
    assert model.messages[(index, (1, "t.tables"))] == ("1", "2024-03-01", "zeta, alpha and mid")
    backend.close()


# -- one row per head (DuckDBBackend._grouped_sql) ---------------------------------------------


@pytest.fixture
def grouped_backend(tables_kb: PolicyKB, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A new backend whose message queries return one row per head from the second chunk on
    (a rule's form is chosen from its last chunk: any number of rows a head qualifies)."""
    monkeypatch.setattr(duck, "MESSAGE_GROUPED_ROWS", 0.0)
    monkeypatch.setattr(duck, "MESSAGE_KEYED_HEADS", 0)
    cp = tables_kb.kb.compiled
    assert cp is not None
    backend = duck.DuckDBBackend(cp, tables_kb.kb.store, duck.declared_types(cp, tables_kb.kb.program))
    grouped: list[int] = []
    real = backend._grouped_sql

    def recording(index: int, *args: Any) -> Any:
        found = real(index, *args)
        if found is not None:
            grouped.append(index)
        return found

    monkeypatch.setattr(backend, "_grouped_sql", recording)
    backend.grouped = grouped  # type: ignore[attr-defined]
    yield backend
    backend.close()


def test_grouped_message_queries_give_the_same_messages(tables_kb: PolicyKB, grouped_backend: Any) -> None:
    claim = _claim(["99213", "99214", "99215", "99212", "99211"])
    facts = claim_to_facts(claim)
    request = BatchDecider(tables_kb).request
    tables, steps, nicknames = (_index(tables_kb, r) for r in ("t.tables", "t.steps", "t.nicknames"))
    (rows,) = grouped_backend.evaluate_many([facts], messages=request)
    assert grouped_backend.grouped == []  # the first chunk's queries return solution rows
    (one,) = grouped_backend.evaluate_many([facts], messages=request)
    assert {tables, steps, nicknames} <= set(grouped_backend.grouped)
    assert one.messages == rows.messages
    # the date has one value per line (line is keyed on its number): read off the head's row;
    # the names' order is the tables' (a, b, c), not theirs
    assert one.messages[(tables, (1, "t.tables"))] == ("1", "2024-03-01", "zeta, alpha and mid")
    # 14 tables, more than a message shows: the first twelve, merged from the full query
    twelve = [n for _, n in MANY[:MESSAGE_SOLUTIONS]]
    assert one.messages[(tables, (3, "t.tables"))] == ("3", "2024-03-01", ", ".join(twelve[:-1]) + " and " + twelve[-1])
    # the step (not shown) orders the words: 1, 2, 3 give late, early; 9 before 10 as numbers
    assert one.messages[(steps, (2, "t.steps"))] == ("2", "late and early")
    assert one.messages[(steps, (5, "t.steps"))] == ("5", "nine and ten")
    # table a's nicknames sorted (nickname is not keyed on its table), then b's
    assert one.messages[(nicknames, (1, "t.nicknames"))] == ("1", "alpha one, the first and the second")
    # and the pyDatalog path writes these messages
    expected = _messages(tables_kb.adjudicate(claim, proofs=False).to_dict())
    assert expected[(5, "t.steps")] == "Line 5: nine and ten."
    assert expected[(3, "t.tables")].endswith(f"{twelve[-1]}.")
    for (index, (ln, rule_id)), values in one.messages.items():
        assert expected[(ln, rule_id)] == BatchDecider(tables_kb)._template(rule_id, "warn").fill(values), index
    # a chunk in which a rule has no solutions, then one in which it has again
    (none,) = grouped_backend.evaluate_many([claim_to_facts(_claim(["99213"]))], messages=request)
    assert not [key for key in none.messages if key[0] == steps]
    assert none.messages[(tables, (1, "t.tables"))] == ("1", "2024-03-01", "zeta, alpha and mid")
    (again,) = grouped_backend.evaluate_many([facts], messages=request)
    assert again.messages == rows.messages


@pytest.mark.parametrize("separator", [duck._FIELD, duck._RECORD])
def test_a_grouped_value_holding_a_separator_is_merged_from_the_full_query(
    tables_kb: PolicyKB, grouped_backend: Any, separator: str
) -> None:
    """The grouped query joins a head's values with control characters: a value holding one
    does not split back into its rows, and its head is merged from the full query instead."""
    request = BatchDecider(tables_kb).request
    index = _index(tables_kb, "t.tables")
    row = ("99211", "2024-03-01", "11", "1234567893", 1)
    # two lines numbered 1 (line is not keyed on its number): each date is a value of its own
    facts = {"line": [(1, *row), (1, "99211", f"2024-02-01{separator}", *row[2:])]}
    for _ in range(2):
        (model,) = grouped_backend.evaluate_many([facts], messages=request)
        assert model.messages[(index, (1, "t.tables"))] == (
            "1",
            f"2024-02-01{separator} and 2024-03-01",
            "zeta",
        )
    assert index in grouped_backend.grouped
    assert model.messages[(index, (1, "t.tables"))] == _merged(tables_kb, facts, index, (1, "t.tables"))


def test_a_message_showing_only_its_head_needs_no_query(tables_kb: PolicyKB) -> None:
    """t.line's message shows l, its head's: every warn row of t.line fills it, with no message
    query (no other rule derives warn rows for t.line)."""
    claim = _claim(["99213", "99214", "99211", "99212"])
    request = BatchDecider(tables_kb).request
    line = _index(tables_kb, "t.line")
    cp = tables_kb.kb.compiled
    assert cp is not None
    backend = duck.DuckDBBackend(cp, tables_kb.kb.store, duck.declared_types(cp, tables_kb.kb.program))
    asked = record_message_queries(backend)
    (model,) = backend.evaluate_many([claim_to_facts(claim)], messages=request)
    backend.close()
    assert isinstance(model, BatchModel)
    # uses holds (a, 1) for 99213 (line 1), 99211 (line 3) and 99212 (line 4), not for 99214
    assert {k: v for k, v in model.messages.items() if k[0] == line} == {
        (line, (1, "t.line")): ("1",),
        (line, (3, "t.line")): ("3",),
        (line, (4, "t.line")): ("4",),
    }
    assert line not in asked and _index(tables_kb, "t.tables") in asked
    # the pyDatalog path writes the same messages
    expected = _messages(tables_kb.adjudicate(claim, proofs=False).to_dict())
    assert expected[(3, "t.line")] == "Line 3 uses table a."
    assert _messages(decide_many(tables_kb, [claim])[0]) == expected


def test_a_head_only_message_is_queried_where_another_rule_may_derive_its_rows(tables_kb: PolicyKB) -> None:
    """Should another rule derive rows of the same head (here one whose rule id is a variable),
    a row no longer tells which rule derived it: the message is queried."""
    cp = tables_kb.kb.compiled
    assert cp is not None
    backend = tables_kb.duckdb()
    request = BatchDecider(tables_kb).request
    line = _index(tables_kb, "t.line")
    layout = backend.sql.solution_layout[line]
    places = [layout.names.get(n) for n in request.names[line]]
    assert duck._head_places(cp, line, layout, places) == [0]
    rule = cp.rules[line]
    other = dataclasses.replace(rule, index=len(cp.rules), head=dataclasses.replace(rule.head, args=(IVar("l"), IVar("r"))))
    assert duck._head_places(SimpleNamespace(rules=[*cp.rules, other]), line, layout, places) is None  # type: ignore[arg-type]
    # a rule of another id (a different constant) derives no such row
    named = dataclasses.replace(rule, index=len(cp.rules), head=dataclasses.replace(rule.head, args=(IVar("l"), IConst("t.x"))))
    assert duck._head_places(SimpleNamespace(rules=[*cp.rules, named]), line, layout, places) == [0]  # type: ignore[arg-type]
    # a message showing a body variable is queried
    tables = _index(tables_kb, "t.tables")
    layout = backend.sql.solution_layout[tables]
    assert duck._head_places(cp, tables, layout, [layout.names.get(n) for n in request.names[tables]]) is None


# -- a shown value looked up by its sort keys (DuckDBBackend._lookup) ---------------------------


def _grouped_plan(backend: Any, kb: PolicyKB, rule_id: str) -> tuple[str, duck.GroupPlan]:
    index = _index(kb, rule_id)
    request = BatchDecider(kb).request
    layout = backend.sql.solution_layout[index]
    places = [layout.names.get(n) for n in request.names[index]]
    (keyed,) = backend._keyed_atoms([(index, 1)]).values()
    found = backend._grouped_sql(index, backend.sql.solutions[index], places, keyed)
    assert found is not None
    return found


def test_a_grouped_query_looks_up_a_value_its_sort_keys_fix(tables_kb: PolicyKB, grouped_backend: Any) -> None:
    """t.tables shows each table's name: table_name holds one row per table, and the table is a
    sort key, so the grouped query fetches the tables only and the names are read from
    table_name's rows. nickname holds two rows for table a: t.nicknames fetches its nicknames."""
    claim = _claim(["99213", "99214", "99215", "99212", "99211"])
    facts = claim_to_facts(claim)
    request = BatchDecider(tables_kb).request
    for _ in range(2):
        (model,) = grouped_backend.evaluate_many([facts], messages=request)
    tables, nicknames = _index(tables_kb, "t.tables"), _index(tables_kb, "t.nicknames")
    assert {tables, nicknames} <= set(grouped_backend.grouped)
    sql, plan = _grouped_plan(grouped_backend, tables_kb, "t.tables")
    assert "string_agg(CAST(t0.c1 AS VARCHAR), " in sql  # the table only, not its name
    (name,) = [value for value in plan.values if value[1] is not None]
    assert name[0] == (0,) and name[1][("a",)] == "zeta" and name[1][("t01",)] == "name 14"
    sql, plan = _grouped_plan(grouped_backend, tables_kb, "t.nicknames")
    assert all(table is None for _, table in plan.values) and "t1.c1 AS VARCHAR" in sql
    # the names in the tables' order (a, b, c: zeta, alpha, mid), as the pyDatalog path gives them
    assert model.messages[(tables, (1, "t.tables"))] == ("1", "2024-03-01", "zeta, alpha and mid")
    assert model.messages[(nicknames, (1, "t.nicknames"))] == ("1", "alpha one, the first and the second")
    expected = _messages(tables_kb.adjudicate(claim, proofs=False).to_dict())
    for (index, (ln, rule_id)), values in model.messages.items():
        assert expected[(ln, rule_id)] == BatchDecider(tables_kb)._template(rule_id, "warn").fill(values), index


def test_a_relation_too_big_to_keep_is_joined(tables_kb: PolicyKB, grouped_backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duck, "MESSAGE_LOOKUP_ROWS", 3)  # table_name has 17 rows
    facts = claim_to_facts(_claim(["99213", "99212"]))
    request = BatchDecider(tables_kb).request
    for _ in range(2):
        (model,) = grouped_backend.evaluate_many([facts], messages=request)
    sql, plan = _grouped_plan(grouped_backend, tables_kb, "t.tables")
    assert all(table is None for _, table in plan.values) and "t2.c1 AS VARCHAR" in sql
    index = _index(tables_kb, "t.tables")
    assert model.messages[(index, (1, "t.tables"))] == ("1", "2024-03-01", "zeta, alpha and mid")
    # 99212: fifteen rows, tables a, b, c five releases each: three solutions, in the tables' order
    assert model.messages[(index, (2, "t.tables"))] == ("2", "2024-03-01", "zeta, alpha and mid")


def test_a_text_whose_key_is_not_looked_up_is_merged_from_the_full_query() -> None:
    """_merge_texts gives up (the head is merged from the full query) on a key its table lacks."""
    values = ((1, None), ((0,), {("a",): "zeta"}))
    agg = "a\x1f2\x1eb\x1f1"
    assert duck._merge_texts(agg, 2, 1, 2, [], " and ".join, values) is None
    assert duck._merge_texts("a\x1f2\x1ea\x1f1", 2, 1, 2, [], " and ".join, values) == ("2 and 1", "zeta")


# -- heads grouped by what their messages show (DuckDBBackend._grouped_sql, _merge_groups) -------


def test_heads_that_share_their_texts_are_one_row_of_the_grouped_query(
    tables_kb: PolicyKB, grouped_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines of one code and date have the same tables: the grouped query returns one row for all
    their heads (claim keys and lines as lists), merged once, and each head's message still shows
    its own line. The 99212 lines have more solution rows than a message shows: their row's heads
    are merged from the full query, each on its own."""
    claim = _claim(["99213", "99212", "99213", "99213", "99212"])
    facts = claim_to_facts(claim)
    request = BatchDecider(tables_kb).request
    given: list[tuple[Any, list[tuple]]] = []
    real = duck._merge_groups

    def recording(rows: list[tuple], head_key: Any, plan: Any, *args: Any) -> Any:
        given.append((plan, rows))
        return real(rows, head_key, plan, *args)

    monkeypatch.setattr(duck, "_merge_groups", recording)
    for _ in range(2):
        (model,) = grouped_backend.evaluate_many([facts], messages=request)
    _sql, plan = _grouped_plan(grouped_backend, tables_kb, "t.tables")
    (rows,) = [rows for p, rows in given if p == plan]
    assert sorted(sorted(rec[-1]) for rec in rows) == [[1, 3, 4], [2, 5]]  # each row's lines
    index = _index(tables_kb, "t.tables")
    assert model.messages[(index, (4, "t.tables"))] == ("4", "2024-03-01", "zeta, alpha and mid")
    assert model.messages[(index, (5, "t.tables"))] == ("5", "2024-03-01", "zeta, alpha and mid")
    expected = _messages(tables_kb.adjudicate(claim, proofs=False).to_dict())
    assert {(ln, rule_id) for _index_, (ln, rule_id) in model.messages} == set(expected)
    for (_i, (ln, rule_id)), values in model.messages.items():
        assert expected[(ln, rule_id)] == BatchDecider(tables_kb)._template(rule_id, "warn").fill(values)


# -- outcome rows fetched grouped on their rule id (DuckDBBackend._fetch_grouped) ---------------


def test_outcome_rows_are_fetched_grouped_on_the_columns_their_rules_fill_with_constants(tables_kb: PolicyKB) -> None:
    """Every rule of warn puts its rule id, a constant, in the second column: warn is fetched one
    row per rule id, which gives each claim its rows (those the pyDatalog path derives, sorted),
    each rule its number of heads and the heads themselves, without a pass over the rows."""
    cp = tables_kb.kb.compiled
    assert cp is not None
    claims = [_claim(["99213", "99214", "99211"]), _claim(["99212", "99215"]), _claim(["99201"])]
    backend = duck.DuckDBBackend(cp, tables_kb.kb.store, duck.declared_types(cp, tables_kb.kb.program))
    seen: dict[str, Any] = {}  # the groups as this chunk's messages are fetched from them
    fetch_messages = backend._fetch_messages

    def keep_groups(models: list[Any], request: Any) -> None:
        seen.update(backend._groups)
        fetch_messages(models, request)

    backend._fetch_messages = keep_groups  # type: ignore[method-assign]
    models = backend.evaluate_many([claim_to_facts(c) for c in claims], messages=BatchDecider(tables_kb).request)
    assert backend._groups == {}  # let go once the messages are fetched: the rows die with the models
    at, groups = seen["warn"]
    assert at == (1,) and {"t.tables", "t.steps", "t.line"} <= {rule_id for (rule_id,) in groups}
    for claim, model in zip(claims, models, strict=True):
        derived = tables_kb.evaluator.evaluate(dict(claim_to_facts(claim))).relations["warn"]
        assert model.relations["warn"] == sorted(map(tuple, derived))
    tables = _index(tables_kb, "t.tables")
    by_pass = [(ck, row) for ck, m in enumerate(models) for row in m.relations["warn"] if row[1] == "t.tables"]
    consts = backend.sql.head_consts[tables]
    heads = duck._rule_heads(models, "warn", consts, {}, seen["warn"])
    assert sorted(heads) == sorted(by_pass) == sorted(duck._rule_heads(models, "warn", consts, {}))
    backend._groups = seen  # as _fetch_messages has them
    ((_, _, n),) = backend._solved_rules(models, [tables])
    assert n == len(by_pass) > 1
    backend.close()
