"""Remedy candidates that differ only by interchangeable values are judged once.

engine/explain/symmetry.py proves from the compiled rules and the stored rows that swapping two
symbols commutes with evaluation; engine/explain/rejudge.py then answers a changed claim from a
judged one that differs only by such a value. Expectations below are read from the KB text and
tables: kb/codes/modifiers.dl gives XE, XS, XP and XU exactly the same NCCI roles
(ncci_associated, distinct_service) and no rule names any of them; 59 has them too and is
named only by the warning mod.59_with_x, which overrides no denial (so for the denials a remedy
search reads, 59 is one of them; for the whole outcome it is not); it is also a place-of-service
code in tables/pos.csv, which does not matter: POS codes are of another sort than modifiers.
25 has the role significant_em and no distinct_service role, and mod.25_not_em names it; 76 is
a repeat_modifier.
Small programs pin each condition that breaks the symmetry, and every example, policy case and
120 generated claims get the same remedies with the symmetry on and off.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import named_claims, small_program
from engine.adjudicate import Adjudicator
from engine.api import PolicyKB
from engine.claims import Claim, load_claims, parse_claim
from engine.evaluate import Evaluator
from engine.explain.rejudge import Rejudge
from engine.explain.symmetry import Symmetry

ROOT = Path(__file__).resolve().parent.parent
DUPLICATE = ROOT / "examples" / "duplicate-96372-lines.json"
ON_LINE = frozenset({("line_modifier", 1)})


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


@pytest.fixture(scope="module")
def off(kb: PolicyKB) -> Adjudicator:
    return Adjudicator(kb.kb, kb.evaluator, symmetry=False)


def _symmetry(kb: PolicyKB) -> Symmetry:
    assert kb.adjudicator.symmetry is not None
    return kb.adjudicator.symmetry


# -- the shipped KB ------------------------------------------------------------------------


@pytest.mark.parametrize("a,b", [("XS", "XU"), ("XE", "XS"), ("XP", "XU"), ("XE", "XP")])
def test_x_modifiers_are_interchangeable(kb: PolicyKB, a: str, b: str) -> None:
    sym = _symmetry(kb)
    assert sym.verdict(a, b, ON_LINE).reasons == ()
    assert sym.interchangeable(b, a, ON_LINE)
    # on a history line too (history_modifier feeds service_modifier like line_modifier)
    assert sym.interchangeable(a, b, frozenset({("history_modifier", 2)}))


def _every_outcome(kb: PolicyKB) -> Symmetry:
    """The symmetry of the whole outcome (warnings too), not only of the denials."""
    cp = kb.kb.compiled
    assert cp is not None
    return Symmetry(cp, kb.kb.store, [(rel, (None,) * cp.arity[rel]) for rel in ("deny", "warn", "overridden")])


def test_59_is_a_rule_constant(kb: PolicyKB) -> None:
    verdict = _every_outcome(kb).verdict("59", "XS", ON_LINE)
    assert not verdict.ok
    assert verdict.reasons and all("names '59'" in r for r in verdict.reasons), verdict.reasons
    # the place-of-service table lists a POS "59", but POS codes are of another sort
    assert kb.kb.store.holds("pos", 0, ("59",))
    assert not any("pos" in r for r in verdict.reasons), verdict.reasons


def test_59_denies_as_the_x_modifiers_do(kb: PolicyKB) -> None:
    """Only the warning mod.59_with_x names 59, and the one rule reading that warning
    (prec.modifier_once) overrides the warning itself, never a denial: for the denials a remedy
    search reads, 59 has the roles XS has (ncci_associated, distinct_service)."""
    sym = _symmetry(kb)
    assert ("overridden", (None, "mod.59_with_x", None)) not in sym.targets
    assert ("overridden", (None, "ncci.ptp", None)) in sym.targets
    assert sym.verdict("59", "XS", ON_LINE).reasons == ()
    assert not sym.interchangeable("59", "25", ON_LINE)


def test_the_modifier_sort(kb: PolicyKB) -> None:
    """The columns the rules relate to a line's modifier (kb/claim.dl, kb/ncci/encounter.dl,
    kb/codes/modifiers.dl, the repeat modifiers of kb/policy/injection_96372.dl)."""
    sort = _symmetry(kb).sort_of(("line_modifier", 1))
    named = {r for r, _c in sort if not r.startswith("_")}
    assert named == {
        "line_modifier",
        "history_modifier",
        "service_modifier",
        "modifier",
        "modifier_role",
        "repeat_modifier",
    }
    assert {("history_modifier", 2), ("service_modifier", 2), ("modifier_role", 0), ("modifier", 0)} <= sort
    assert ("modifier_role", 1) not in sort and ("pos", 0) not in sort and ("line", 1) not in sort


def test_25_has_other_roles_than_xe(kb: PolicyKB) -> None:
    verdict = _symmetry(kb).verdict("25", "XE", ON_LINE)
    assert not verdict.ok
    assert any(r.startswith("stored modifier_role has (0='25', 1='significant_em')") for r in verdict.reasons)
    assert any(r.startswith("stored modifier_role has (0='XE', 1='distinct_service')") for r in verdict.reasons)


def test_76_is_a_repeat_modifier(kb: PolicyKB) -> None:
    verdict = _symmetry(kb).verdict("76", "XS", ON_LINE)
    assert not verdict.ok
    assert any("repeat_modifier" in r for r in verdict.reasons), verdict.reasons


def test_seeds_must_be_claim_columns(kb: PolicyKB) -> None:
    assert not _symmetry(kb).interchangeable("XS", "XU", frozenset({("modifier_role", 0)}))


def test_store_holds_answers_from_the_rows(kb: PolicyKB) -> None:
    store = kb.kb.store
    assert store.holds("modifier", 0, ("XS",))  # tables/modifiers.csv lists XS
    assert not store.holds("modifier", 0, ("ZZ",))  # a well-formed modifier it does not list
    assert store.holds("pos", 0, ("59",)) and not store.holds("pos", 0, ("XS",))
    assert not store.holds("ptp", 0, ("XS",))  # column_1 codes (read by the index on it)
    assert store.holds("ptp", 0, ("27380",)) or store.holds("ptp", 1, ("27380",))  # the knee example's pair
    assert store.holds("modifier_role", 0, ("XU",))  # inline facts
    assert not store.holds("modifier_role", 0, ("76",))


# -- small programs: each condition that breaks the symmetry --------------------------------

BASE = """
.decl line_mod(l: number, m: symbol)
.claim line_mod
.decl role(m: symbol, r: symbol, note: symbol)
.decl flag(l: number, why: symbol)
flag(l, "distinct") :- line_mod(l, m), role(m, "distinct", _).
"""
ROLES = [("XS", "distinct", "site"), ("XU", "distinct", "unusual"), ("25", "em", "site")]


def _program(extra: str) -> tuple[Symmetry, Evaluator]:
    cp, store = small_program(BASE + extra, {"role": ROLES})
    return Symmetry(cp, store, [("flag", (None, None))]), Evaluator(cp, store)


def _flagged(ev: Evaluator, mod: str) -> list[tuple]:
    facts: dict[str, list[tuple]] = {"line_mod": [(1, mod), (2, "LT")]}
    if "tag" in ev.cp.kinds:
        facts["tag"] = [(1, "XS")]  # of another sort than line_mod's modifier
    return ev.evaluate(facts).rows("flag")


CASES = [
    # (name, extra rules, what breaks the symmetry: "" when nothing does)
    ("projected note column", "", ""),
    ("equality is fine", 'flag(l, "other") :- line_mod(l, m), line_mod(l, m2), m != m2.\n', ""),
    ("ordering on an uncarried number", 'flag(l, "late") :- line_mod(l, m), role(m, "distinct", _), l > 1.\n', ""),
    ("match that accepts both", 'flag(l, "x") :- line_mod(l, m), match("X[SU]", m).\n', ""),
    ("match that accepts one", 'flag(l, "s") :- line_mod(l, m), match("X[SP]", m).\n', "tells 'XS' from 'XU'"),
    ("ordering comparison on the value", 'flag(l, "low") :- line_mod(l, m), m < "XT".\n', "ordering comparison <"),
    ("a rule constant", 'flag(l, "xs") :- line_mod(l, "XS").\n', "names 'XS'"),
    ("a rule the outcome does not read", '.decl note(l: number)\nnote(l) :- line_mod(l, "XS").\n', ""),
    (
        "a constant of another sort",
        '.decl tag(l: number, t: symbol)\n.claim tag\nflag(l, "t") :- line_mod(l, _), tag(l, "XS").\n',
        "",
    ),
    ("a read stored column that differs", 'flag(l, "site") :- line_mod(l, m), role(m, _, "site").\n', "stored role"),
    ("an outcome that carries the value", "flag(l, m) :- line_mod(l, m).\n", "outcome relation flag"),
]


@pytest.mark.parametrize("extra,why", [(e, w) for _n, e, w in CASES], ids=[n for n, _e, _w in CASES])
def test_conditions(extra: str, why: str) -> None:
    sym, ev = _program(extra)
    try:
        verdict = sym.verdict("XS", "XU", frozenset({("line_mod", 1)}))
        assert verdict.ok == (why == ""), verdict.reasons
        assert all(why in r for r in verdict.reasons), verdict.reasons
        # every program here that breaks the symmetry does tell XS from XU on a claim
        assert (_flagged(ev, "XS") == _flagged(ev, "XU")) == (why == "")
    finally:
        ev.close()


def test_a_comparison_joins_sorts() -> None:
    """`m != t` relates a modifier to a tag: the tag column is of the modifier's sort, so a claim
    whose tags hold XS or XU is not one the swap covers (Rejudge then shares nothing); such a
    claim does tell XS from XU here."""
    sym, ev = _program(
        '.decl tag(l: number, t: symbol)\n.claim tag\nflag(l, "t") :- line_mod(l, m), tag(l, t), m != t.\n'
    )
    try:
        assert ("tag", 1) in sym.sort_of(("line_mod", 1))
        assert ("role", 1) not in sym.sort_of(("line_mod", 1))
        facts = {"tag": [(1, "XU")]}
        xs = ev.evaluate({"line_mod": [(1, "XS")], **facts}).rows("flag")
        xu = ev.evaluate({"line_mod": [(1, "XU")], **facts}).rows("flag")
        assert xs == [(1, "distinct"), (1, "t")] and xu == [(1, "distinct")]
    finally:
        ev.close()


def test_max_over_a_carried_column_is_not_trusted_count_is() -> None:
    extra = """
.decl seen(l: number, n: number)
seen(l, n) :- line_mod(l, _), n = count : { line_mod(l, m), role(m, _, _) }.
.decl top(l: number, m: symbol)
top(l, x) :- line_mod(l, _), x = max m : { line_mod(l, m) }.
flag(l, "many") :- seen(l, n), n > 1.
flag(l, "top") :- top(l, _).
"""
    sym, ev = _program(extra)
    ev.close()
    verdict = sym.verdict("XS", "XU", frozenset({("line_mod", 1)}))
    assert verdict.reasons and all("max aggregate" in r for r in verdict.reasons), verdict.reasons


# -- the remedy search ---------------------------------------------------------------------


def _searches(adj: Adjudicator, claim: Claim) -> tuple[dict[str, Any], list[Rejudge], list[Claim]]:
    """The result, the Rejudge objects made and the candidate claims judged (not answered from a memo)."""
    made: list[Rejudge] = []
    judged: list[Claim] = []
    make = adj._rejudge

    def spy_make(*args: Any) -> Rejudge:
        judge = make(*args)
        real = judge._judge

        def spy_judge(changed: Claim) -> Any:
            judged.append(changed)
            return real(changed)

        judge._judge = spy_judge  # type: ignore[method-assign]
        made.append(judge)
        return judge

    adj._rejudge = spy_make  # type: ignore[method-assign]
    try:
        result = adj.adjudicate(claim, proofs=True, remedies=True).to_dict()
    finally:
        del adj._rejudge
    return result, made, judged


def _modifiers(claim: Claim, line: int) -> tuple[str, ...]:
    return next(ln.modifiers for ln in claim.lines if ln.line == line)


def test_duplicate_injection_shares_59_xs_and_xu(kb: PolicyKB, off: Adjudicator) -> None:
    """Line 3 repeats the 96372 of line 1: 76, 59, XS and XU are tried on lines 3 and 1. XS and
    XU are decided as 59 is on each line: 4 of the 8 candidate claims are not judged."""
    (claim,) = load_claims(DUPLICATE)
    got, made, judged = _searches(kb.adjudicator, claim)
    want, _made, judged_off = _searches(off, claim)
    assert got == want
    assert len(judged_off) == 8 and len(judged) == 4
    assert sum(j.judged for j in made) == 4
    added = sorted(_modifiers(c, n)[-1] for c in judged for n in (1, 3) if _modifiers(c, n))
    assert added == ["59", "59", "76", "76"]
    line3 = next(line for line in got["lines"] if line["line"] == 3)
    fixes = {m["change"] for r in line3["reasons"] for m in r.get("remedies") or []}
    assert {"add modifier XS to line 3", "add modifier XU to line 3"} <= fixes


def test_a_claim_already_carrying_xs_shares_nothing_for_xs(kb: PolicyKB, off: Adjudicator) -> None:
    """With XS already on line 2 (the drug line), adding XS elsewhere brings no new value: such a
    candidate is judged itself. XU is still new, and decided as 59 is."""
    raw = json.loads(DUPLICATE.read_text(encoding="utf-8"))
    raw = copy.deepcopy(raw)
    raw["lines"][1]["modifiers"] = ["XS"]
    claim = parse_claim(raw)
    got, _made, judged = _searches(kb.adjudicator, claim)
    want, _made, judged_off = _searches(off, claim)
    assert got == want
    assert len(judged_off) == 8 and len(judged) == 6
    added = sorted(_modifiers(c, n)[-1] for c in judged for n in (1, 3) if _modifiers(c, n))
    assert added == ["59", "59", "76", "76", "XS", "XS"]


def _claims() -> Iterator[tuple[str, Claim]]:
    return named_claims(120, 5)


def test_symmetry_on_equals_off(kb: PolicyKB, off: Adjudicator) -> None:
    judged_on = judged_off = 0
    searched = 0
    for name, claim in _claims():
        got, made, on = _searches(kb.adjudicator, claim)
        want, _made, no = _searches(off, claim)
        assert got == want, name
        assert len(on) <= len(no), name
        judged_on += len(on)
        judged_off += len(no)
        searched += bool(made)
    assert searched > 40, searched  # claims with a remedy search to compare
    assert judged_on < judged_off * 0.9, (judged_on, judged_off)
