"""The evaluator: stratified negation, recursion, aggregates, stored lookups, determinism."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import small_program
from engine.compiler import compile_program
from engine.datalog import compiled_extension_loaded
from engine.evaluate import Evaluator
from engine.ir import IAtom, ICompare, RelKind
from engine.kb import check_kb
from engine.program import program_from_text
from engine.store import Store


def _run(text: str, facts: dict[str, list[tuple]], stored: dict[str, list[tuple]] | None = None):
    cp, store = small_program(text, stored)
    ev = Evaluator(cp, store)
    try:
        return ev.evaluate(facts), cp
    finally:
        ev.close()


def test_compiled_pydatalog_engine_is_loaded() -> None:
    assert compiled_extension_loaded()


def test_stratified_negation_sees_a_finished_relation() -> None:
    text = """
    .decl e(x: number, y: number)
    .claim e
    .decl reach(x: number, y: number)
    .decl node(x: number)
    .decl unreachable(x: number)
    reach(x, y) :- e(x, y).
    reach(x, z) :- reach(x, y), e(y, z).
    node(x) :- e(x, _).
    node(y) :- e(_, y).
    unreachable(y) :- node(y), !reach(1, y).
    """
    model, cp = _run(text, {"e": [(1, 2), (2, 3), (3, 1), (4, 5)]})
    assert model.rows("unreachable") == [(4,), (5,)]
    assert cp.strata["unreachable"] > cp.strata["reach"]


def test_right_recursion_over_a_cycle_terminates() -> None:
    text = ".decl e(x: symbol, y: symbol)\n.claim e\n.decl r(x: symbol, y: symbol)\n" \
           "r(x, y) :- e(x, y).\nr(x, y) :- e(x, z), r(z, y).\n"
    model, _ = _run(text, {"e": [("a", "b"), ("b", "c"), ("c", "a")]})
    assert len(model.rows("r")) == 9


def test_sum_aggregate_counts_each_binding_once() -> None:
    text = """
    .decl u(line: number, code: symbol, units: number)
    .claim u
    .decl total(code: symbol, t: number)
    total(c, t) :- u(_, c, _), t = sum n : { u(l, c, n) }.
    """
    model, _ = _run(text, {"u": [(1, "96372", 2), (2, "96372", 2), (3, "J3420", 1)]})
    assert model.rows("total") == [("96372", 4), ("J3420", 1)]


def test_stored_relations_are_looked_up_with_bound_values() -> None:
    text = """
    .decl line(l: number, c: symbol)
    .claim line
    .decl edit(c1: symbol, c2: symbol)
    .decl bundled(l: number)
    bundled(l2) :- line(l1, c1), line(l2, c2), edit(c1, c2).
    """
    prog = program_from_text({"t.dl": text})
    cp = compile_program(prog)
    body = next(r for r in cp.rules if r.head.relation == "bundled").body
    assert [b.relation for b in body if isinstance(b, IAtom)][-1] == "edit"  # the table comes last, bound
    assert (0, 1) in cp.patterns["edit"]
    model, _ = _run(text, {"line": [(1, "96372"), (2, "99213")]},
                    stored={"edit": [("96372", "99213"), ("20610", "96372")]})
    assert model.rows("bundled") == [(2,)]


def test_negations_and_comparisons_are_ordered_after_their_bindings() -> None:
    prog = program_from_text({"t.dl": ".decl a(x: number)\n.claim a\n.decl b(x: number)\n.claim b\n"
                                      ".decl c(x: number)\nc(x) :- !b(x), x > 1, a(x).\n"})
    cp = compile_program(prog)
    body = cp.rules[0].body
    assert isinstance(body[0], IAtom) and body[0].relation == "a" and not body[0].negated
    model, _ = _run(".decl a(x: number)\n.claim a\n.decl b(x: number)\n.claim b\n"
                    ".decl c(x: number)\nc(x) :- !b(x), x > 1, a(x).\n", {"a": [(1,), (2,), (3,)], "b": [(3,)]})
    assert model.rows("c") == [(2,)]


def test_mixed_type_comparison_is_false_not_an_error() -> None:
    model, _ = _run(".decl a(x: symbol)\n.claim a\n.decl n(x: number)\n.claim n\n.decl c(x: symbol)\n"
                    "c(x) :- a(x), n(y), x != \"z\", y < 5.\n", {"a": [("q",)], "n": [(1,)]})
    assert model.rows("c") == [("q",)]


def test_kb_relations_are_classified() -> None:
    kb = check_kb(Path("kb"))
    kinds = kb.compiled.kinds
    assert kinds["ptp"] is RelKind.STORED
    assert kinds["line"] is RelKind.CLAIM
    assert kinds["deny"] is RelKind.DYNAMIC
    assert kinds["known_code"] is RelKind.STATIC


def test_full_ptp_table_is_cached_once_and_reused(tmp_path: Path) -> None:
    """The 2.5M-row table is validated into the cache on first load and reused after."""
    first = check_kb(Path("kb"), cache_dir=tmp_path)
    ptp = next(b for b in first.table_builds if b.relation == "ptp")
    assert ptp.rows == 2_546_017 and not ptp.reused
    second = check_kb(Path("kb"), cache_dir=tmp_path)
    again = next(b for b in second.table_builds if b.relation == "ptp")
    assert again.reused and second.from_cache
    assert again.seconds < ptp.seconds


def test_answers_do_not_depend_on_the_hash_seed() -> None:
    code = ("from engine.api import PolicyKB\nfrom engine.claims import parse_claim\nimport json\n"
            "kb=PolicyKB.open()\n"
            "c=parse_claim({'id':'C','patient':{'id':'P'},'lines':["
            "{'line':1,'service_date':'2024-03-01','code':'96372','pos':'22','rendering_npi':'1','units':5},"
            "{'line':2,'service_date':'2024-03-01','code':'99213','pos':'22','rendering_npi':'1'}]})\n"
            "print(json.dumps(kb.adjudicate(c, proofs=True, remedies=True).to_dict(), sort_keys=True))\n")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(outs) == 1


@pytest.mark.parametrize("op,a,b,expected", [("<", 1, 2, True), ("<=", "2024-06-30", "2024-06-30", True),
                                              (">", "2024-07-01", "2024-06-30", True), ("!=", 1, "1", True)])
def test_comparisons(op: str, a, b, expected: bool) -> None:
    text = f".decl a(x: symbol)\n.claim a\n.decl c(x: symbol)\nc(x) :- a(x), {_lit(a)} {op} {_lit(b)}.\n"
    prog = program_from_text({"t.dl": text})
    cp = compile_program(prog)
    ev = Evaluator(cp, Store(prog))
    try:
        assert bool(ev.evaluate({"a": [("k",)]}).rows("c")) is expected
    finally:
        ev.close()
    assert any(isinstance(lit, ICompare) for lit in cp.rules[0].body)


def _lit(v) -> str:
    return f'"{v}"' if isinstance(v, str) else str(v)
