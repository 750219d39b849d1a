"""Evaluators in one process are independent: each answers from its own store, and closing one
leaves the others working (pyDatalog's Python resolvers are one dict for the whole process)."""

from __future__ import annotations

from engine.compiler import compile_program
from engine.evaluate import Evaluator
from engine.program import program_from_text
from engine.store import Store

TEXT = """
.decl line(l: number, c: symbol)
.claim line
.decl edit(a: symbol, b: symbol)
.decl hit(l: number, b: symbol)
hit(l, b) :- line(l, a), edit(a, b).
"""


def test_two_evaluators_each_read_their_own_store_and_survive_the_others_close() -> None:
    prog = program_from_text({"t.dl": TEXT})
    cp = compile_program(prog)
    stores = {}
    for name in ("one", "two"):
        stores[name] = Store(prog)
        stores[name].add_rows("edit", [("96372", name)], name)
    first, second = Evaluator(cp, stores["one"]), Evaluator(cp, stores["two"])
    claim = {"line": [(1, "96372")]}
    try:
        assert first.evaluate(claim).rows("hit") == [(1, "one")]
        assert second.evaluate(claim).rows("hit") == [(1, "two")]
        assert first.evaluate(claim).rows("hit") == [(1, "one")]
        assert [row for _src, row in first.lookup("edit", ("96372", None))] == [("96372", "one")]
        second.close()
        assert first.evaluate(claim).rows("hit") == [(1, "one")]
    finally:
        first.close()
        second.close()
