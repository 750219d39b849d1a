"""The explain path's shortcuts give what the plain way gives.

engine/explain/proof.py finds a derived fact's first derivation with `Prover._first_solution`
(no chain of generators) instead of the first answer of `Prover.solve`; engine/explain/because.py
keeps each row's labelled values (`pairs`) for the next reason and claim. These tests compare
each shortcut with the plain way on the example claims, the policy cases and generated claims.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.api import PolicyKB
from engine.explain.because import vocabulary
from engine.explain.proof import _unify
from engine.ir import RelKind
from tests.conftest import named_claims

ROOT = Path(__file__).resolve().parent.parent
NAMED = list(named_claims(60, 31))


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def test_first_solution_is_solves_first(kb: PolicyKB) -> None:
    adj = kb.adjudicator
    cp = adj.cp
    compared = 0
    for name, claim in NAMED:
        model = adj.evaluate(claim)
        prover = adj.prover(claim, model)
        for rel, kind in cp.kinds.items():
            if kind is not RelKind.DYNAMIC:
                continue
            for row in model.rows(rel)[:20]:
                for crule in cp.rules_for(rel):
                    binding = _unify(crule.head.args, row, {})
                    if binding is None:
                        continue
                    plain = next(iter(prover.solve(crule.body, binding)), None)
                    fast = prover._first_solution(crule.body, binding, 0, [])
                    assert fast == plain, (name, rel, row, crule.index)
                    compared += 1
    assert compared > 500  # the walk reached many derivations, found and not found


def test_pairs_memo_is_pairs(kb: PolicyKB) -> None:
    vocab = vocabulary(kb.kb.program)
    adj = kb.adjudicator
    told = 0
    for _name, claim in NAMED[:80]:
        model = adj.evaluate(claim)
        for rel, rows in model.relations.items():
            for row in rows[:10]:
                for skip in (0, 1):
                    first = vocab.pairs(rel, row, skip)
                    assert first == vocab._pairs_of(rel, row, skip)
                    assert vocab.pairs(rel, row, skip) == first  # from the memo now
                    told += 1
    assert told > 1000


def test_pairs_memo_tells_bool_from_int(kb: PolicyKB) -> None:
    """True == 1 in Python: a memo keyed by the row alone would tell one as the other."""
    vocab = vocabulary(kb.kb.program)
    assert vocab.pairs("line", (1, "99213")) == vocab._pairs_of("line", (1, "99213"), 0)
    one = vocab.pairs("line_modifier", (1, 1))
    yes = vocab.pairs("line_modifier", (1, True))
    assert one.endswith(" 1") and yes.endswith(" yes")
    assert vocab.pairs("line_modifier", (1, 1)) == one
