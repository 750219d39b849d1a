"""Scrub's fast decisions (engine/backends/decide.py) are the Adjudicator's decisions.

`scrub` without --proofs builds its result dicts from the DuckDB models directly instead of
through Reason/LineResult/ClaimResult. The records must be the very dicts the Adjudicator path
gives (messages, roles, overrides, citations and all) on every bundled example, every policy
case and a seeded generated corpus; and a claim the backend cannot take still fails alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import lint_fixture_kb
from engine.api import BatchWorker, PolicyKB
from engine.backends.decide import decide_many
from engine.claims import Claim, Line, claim_to_facts, load_claims, parse_claim, parse_claim_text
from engine.explain.result import ClaimResult

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _reference(kb: PolicyKB, claims: list[Claim]) -> list[dict[str, Any]]:
    out = []
    for r in kb.adjudicate_many(claims, engine="duckdb"):
        assert isinstance(r, ClaimResult), r
        out.append(r.to_dict())
    return out


def _example_claims() -> list[Claim]:
    claims = [c for path in sorted(EXAMPLES.glob("*.json")) for c in load_claims(path)]
    for raw in (EXAMPLES / "batch.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            claims.append(parse_claim_text(raw))
        except ValueError:
            continue  # the deliberately broken records
    return claims


def _case_claims() -> list[Claim]:
    return [
        parse_claim(case["claim"])
        for path in sorted((ROOT / "kb").rglob("*.cases.json"))
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]
    ]


def _roles(results: list[dict[str, Any]]) -> set[str]:
    return {r["role"] for res in results for ln in res["lines"] for r in ln["reasons"]}


@pytest.mark.parametrize("source", ["examples", "policy cases"])
def test_fast_decisions_equal_the_adjudicator_records(kb: PolicyKB, source: str) -> None:
    claims = _example_claims() if source == "examples" else _case_claims()
    assert len(claims) > 40
    fast = decide_many(kb, claims)
    assert fast == _reference(kb, claims)


def _as_written(results: list[Any]) -> list[tuple[bytes, int, int, tuple[str, ...]]]:
    """Each result as engine.batch writes and counts it (a Written as it is, a dict by _dumps)."""
    from engine.batch import Written, _dumps, _line_counts

    return [
        (r.line, r.lines, r.denied, r.deny_kinds) if isinstance(r, Written) else (_dumps(r), *_line_counts(r))
        for r in results
    ]


@pytest.mark.parametrize("source", ["examples", "policy cases", "corpus"])
def test_written_results_are_what_batch_writes_for_the_dicts(kb: PolicyKB, source: str) -> None:
    """Scrub writes decide_written's text as it is: it must be the very line engine.batch writes
    for decide's dict (orjson, sorted keys) and count the same lines, denials and kinds."""
    from benchmarks.corpus import generate, strip_meta
    from benchmarks.tables import shared_tables
    from engine.batch import Written

    if source == "corpus":
        claims = [parse_claim(strip_meta(c)) for c in generate(shared_tables(), 300, seed=5)]
    else:
        claims = _example_claims() if source == "examples" else _case_claims()
    written = decide_many(kb, claims, written=True)
    assert all(type(r) is Written for r in written)
    assert _as_written(written) == _as_written(decide_many(kb, claims))
    assert any(r.denied for r in written) and any(r.denied < r.lines for r in written)


def test_a_result_orjson_cannot_write_is_left_to_batch(kb: PolicyKB) -> None:
    """Text that is not UTF-8 (a lone surrogate, which json.loads lets through): no Written, the
    dict, which engine.batch writes as it always did."""
    from engine.backends.decide import BatchDecider

    decider = BatchDecider(kb)
    claim = _case_claims()[0]
    (model,) = kb.duckdb().evaluate_many([claim_to_facts(claim)], messages=decider.request)
    odd = Claim(claim.id + "\ud800", claim.patient, claim.lines, claim.history)  # DuckDB would refuse it
    result = decider.decide_written(odd, model)
    assert isinstance(result, dict) and result == decider.decide(odd, model)
    assert result["claim"] == odd.id and result["lines"]


def test_a_line_code_orjson_cannot_write_is_left_to_batch_and_not_kept(kb: PolicyKB) -> None:
    """decide_written keeps each line's text before its reasons per (code, line number): a code
    that is not UTF-8 gives the dict (as for the claim id), keeps nothing, and the next claim's
    lines are written as a new decider writes them."""
    import dataclasses

    from engine.backends.decide import BatchDecider

    decider = BatchDecider(kb)
    claim = _case_claims()[0]
    (model,) = kb.duckdb().evaluate_many([claim_to_facts(claim)], messages=decider.request)
    first = claim.lines[0]
    odd_line = dataclasses.replace(first, code=first.code + "\udc80")
    odd = Claim(claim.id, claim.patient, (odd_line, *claim.lines[1:]), claim.history)
    result = decider.decide_written(odd, model)
    assert isinstance(result, dict) and result == decider.decide(odd, model)
    assert (odd_line.code, first.line) not in decider._line_texts
    again = decider.decide_written(claim, model)  # the lines' texts kept from before, or made now
    assert again == BatchDecider(kb).decide_written(claim, model) == decider.decide_written(claim, model)


@pytest.mark.parametrize("size", [1, 3])
def test_small_chunks_get_the_records_of_one_whole_chunk(kb: PolicyKB, size: int) -> None:
    """A small chunk runs only the rules its claims can fire and empties only the tables the last
    chunk filled: chunk after chunk on one connection, no row may linger, go missing or repeat."""
    claims = _example_claims()
    whole = decide_many(kb, claims)
    small = [r for i in range(0, len(claims), size) for r in decide_many(kb, claims[i : i + size])]
    assert small == whole
    assert decide_many(kb, claims) == whole  # a whole chunk again after the small ones


def test_a_generated_corpus_gets_the_same_records_and_exercises_every_role(kb: PolicyKB) -> None:
    from benchmarks.corpus import generate, strip_meta
    from benchmarks.tables import shared_tables

    claims = [parse_claim(strip_meta(c)) for c in generate(shared_tables(), 1000, seed=11)]
    fast = decide_many(kb, claims)
    reference = _reference(kb, claims)
    assert fast == reference
    # the comparison means something only if the corpus has primary, supporting, overridden
    # and warning reasons, and messages filled from the rule's bindings
    assert _roles(reference) >= {"primary", "supporting", "overridden", "warning"}
    messages: dict[str, set[str]] = {}
    for res in reference:
        for ln in res["lines"]:
            for r in ln["reasons"]:
                messages.setdefault(r["rule"], set()).add(r["message"])
    assert any(len(texts) > 1 for texts in messages.values())  # one rule, messages filled per line


def test_a_claim_the_backend_cannot_take_fails_only_its_own_record(kb: PolicyKB) -> None:
    good = _case_claims()[:3]
    line = good[0].lines[0]
    huge = Line(**{**{f: getattr(line, f) for f in Line.__slots__}, "units": 2**70})  # beyond BIGINT
    bad = Claim("too-big", good[0].patient, (huge,), ())
    results = decide_many(kb, [good[0], bad, *good[1:]])
    assert isinstance(results[1], Exception)
    assert [r for i, r in enumerate(results) if i != 1] == _reference(kb, good)


def test_scrub_worker_uses_the_fast_path_only_without_proofs(kb: PolicyKB) -> None:
    claims = _case_claims()[:5]
    assert BatchWorker(kb, "duckdb", False, False).many(claims) == _reference(kb, claims)
    assert _as_written(BatchWorker(kb, "duckdb", False, False).many_written(claims)) == _as_written(
        _reference(kb, claims)
    )
    assert BatchWorker(kb, "duckdb", True, False).many_written(claims) == BatchWorker(kb, "duckdb", True, False).many(claims)
    with_proofs = BatchWorker(kb, "duckdb", True, False).many(claims)
    assert any(r["because"] for res in with_proofs for ln in res["lines"] for r in ln["reasons"])  # type: ignore[index]


# -- messages merged by the backend (MessageRequest) ------------------------------------------------

MESSAGE_RULES = """
/**
 * @id t.many
 * @title Many findings
 * @summary Every pair of a diagnosis and a modifier of the line is a solution.
 * @source test
 * @kind policy
 * @severity deny
 * @group CO
 * @carc 16
 * @message Line {l} ({c}): {dx} with {m}.
 */
deny(l, "t.many") :- line(l, c, _, _, _, _), line_diagnosis(l, dx), line_modifier(l, m).

/**
 * @id t.pos99
 * @title POS 99
 * @summary A second deny rule (the claim below never bills POS 99).
 * @source test
 * @kind policy
 * @severity deny
 * @group CO
 * @carc 58
 * @message Line {l} is billed in POS {p}.
 */
deny(l, "t.pos99") :- line(l, _, _, p, _, _), p = "99".

/**
 * @id t.units
 * @title Units already billed
 * @summary The units of each history line for the same code and date.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l} was billed before with {u} unit(s).
 */
warn(l, "t.units") :- line(l, c, d, _, _, _), history(_, _, c, d, _, _, u).

/**
 * @id t.plain
 * @title No placeholder
 * @summary A message that names no variable.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Nothing to fill here.
 */
warn(l, "t.plain") :- line(l, _, _, _, _, _), line_modifier(l, "25").
"""

# t.pos99 never fires below: it gives deny a second rule, so that deny's step is a UNION (the
# DuckDB backend de-duplicates a relation's rows only there: a relation derived by one rule keeps
# a repeated row, which is not what these tests are about)

# units of the history lines H01..H15 (the order the prover takes them in): 15 rows, 13 distinct
UNITS = [3, 3, 1, 2, 5, 1, 4, 6, 7, 8, 9, 10, 11, 12, 13]


@pytest.fixture(scope="module")
def message_kb(tmp_path_factory: pytest.TempPathFactory) -> PolicyKB:
    return lint_fixture_kb(tmp_path_factory.mktemp("message_kb"), {"messages.dl": MESSAGE_RULES})


def _message_claim() -> Claim:
    line = {
        "line": 1,
        "service_date": "2024-03-01",
        "code": "99213",
        "units": 1,
        "pos": "11",
        "rendering_npi": "1234567893",
    }
    diagnoses = [f"A{n:02}" for n in (14, 3, 9, 1, 12, 5, 2, 7, 11, 4, 13, 6, 10, 8)]  # 14, in no order
    history = [{**line, "claim_id": f"H{i:02}", "units": u} for i, u in enumerate(UNITS, 1)]
    return parse_claim(
        {
            "id": "MSG-1",
            "patient": {"id": "P1", "birth_date": "1960-01-01", "sex": "F"},
            "lines": [
                {**line, "modifiers": ["59", "25"], "diagnoses": diagnoses},
                {**line, "line": 2, "code": "99214", "diagnoses": ["B01"], "modifiers": ["76"]},
            ],
            "history": history,
        }
    )


def test_a_merged_message_keeps_the_first_twelve_distinct_solutions_in_the_provers_order(message_kb: PolicyKB) -> None:
    claim = _message_claim()
    (fast,) = decide_many(message_kb, [claim])
    messages = {(ln["line"], r["rule"]): r["message"] for ln in fast["lines"] for r in ln["reasons"]}  # type: ignore[index]
    # line 1: 14 diagnoses x 2 modifiers = 28 solutions; the prover takes diagnoses in sorted order
    # and, for each, the modifiers 25 then 59: the first twelve are A01..A06 with both modifiers
    assert messages[(1, "t.many")] == "Line 1 (99213): A01, A02, A03, A04, A05 and A06 with 25 and 59."
    # line 2: one solution, its values as they are
    assert messages[(2, "t.many")] == "Line 2 (99214): B01 with 76."
    # 15 history rows in claim-id order; repeated units are one solution (the claim id is `_`):
    # 13 distinct, the first 12 in order of first appearance, numbers as str() writes them
    assert messages[(1, "t.units")] == "Line 1 was billed before with 3, 1, 2, 5, 4, 6, 7, 8, 9, 10, 11 and 12 unit(s)."
    assert messages[(1, "t.plain")] == "Nothing to fill here."
    # and the whole record is the Adjudicator's, on either evaluator
    assert fast == message_kb.adjudicate(claim, proofs=False).to_dict() == _reference(message_kb, [claim])[0]


def test_only_the_rules_whose_message_names_a_variable_are_solved(message_kb: PolicyKB) -> None:
    from engine.backends.decide import BatchDecider

    request = BatchDecider(message_kb).request
    rules = {message_kb.kb.compiled.rules[i].head.args[1].value: names for i, names in request.names.items()}  # type: ignore[union-attr]
    assert rules == {"t.many": ("l", "c", "dx", "m"), "t.pos99": ("l", "p"), "t.units": ("l", "u")}
    (model,) = message_kb.duckdb().evaluate_many([claim_to_facts(_message_claim())], messages=request)
    assert model.relations["warn"] == [(1, "t.plain"), (1, "t.units")]
    assert {head for _index, head in model.messages} == {(1, "t.many"), (2, "t.many"), (1, "t.units")}
    assert not model.solutions


def test_a_written_message_is_filled_in_its_pieces_as_fill_fills_it(message_kb: PolicyKB) -> None:
    """decide_written fills a message that shows each of its names once by putting the values in
    its placeholders' places among its literal pieces (a literal % or {} as it is) and joining
    them; a message showing a name twice, and a name the rule does not bind, are left to
    _RuleTemplate.fill. Either way the
    line is what engine.batch writes for decide's dict (messages made by fill), for values with
    text orjson escapes, non-ASCII text, and text that reads like a format."""
    from engine.backends import BatchModel
    from engine.backends.decide import BatchDecider, _names, _RuleTemplate
    from engine.batch import Written, _dumps

    claim = _message_claim()
    odd = 'A"1\\\n\x07é %s %% {dx}'
    cases = {
        "Line {l} ({c}): {dx} with {m}, 100% sure.": ["Line ", "l", " (", "c", "): ", "dx", " with ", "m", ", 100% sure."],
        "{m} then {l}, {c} and {dx}": ["", "m", " then ", "l", ", ", "c", " and ", "dx", ""],
        "Line {l}: {dx}, {c}, {m} and {dx} again": None,  # dx twice
    }
    for template, pieces in cases.items():
        decider = BatchDecider(message_kb)
        (index,) = decider._message_of("t.many")[1]
        base = decider._template("t.many", "deny").base
        decider._templates[("t.many", "deny")] = _RuleTemplate(base, template, (index,))
        assert decider._written_entry("t.many", "deny").pieces == pieces
        model = BatchModel(relations={"deny": [(1, "t.many"), (2, "t.many")], "warn": [], "overridden": []})
        names = _names(template)  # the values come in the order the message first names them
        l1 = tuple({"l": "1", "c": None, "dx": odd, "m": "25"}[n] for n in names)
        l2 = tuple({"l": "2", "c": "99214", "dx": odd, "m": "25"}[n] for n in names)
        model.messages[(index, (1, "t.many"))] = l1
        model.messages[(index, (2, "t.many"))] = l2
        written = decider.decide_written(claim, model)
        expected = decider.decide(claim, model)
        messages = [r["message"] for ln in expected["lines"] for r in ln["reasons"]]
        assert messages[1] == decider._templates[("t.many", "deny")].fill(l2)
        assert "{c}" in messages[0] and odd in messages[1]
        assert isinstance(written, Written) and written.line == _dumps(expected), template
    first = "Line 2 (99214): " + odd + " with 25, 100% sure."
    decider = BatchDecider(message_kb)
    model = BatchModel(relations={"deny": [(2, "t.many")], "warn": [], "overridden": []})
    (index,) = decider._message_of("t.many")[1]
    model.messages[(index, (2, "t.many"))] = ("2", "99214", odd, "25")
    decider._templates[("t.many", "deny")] = _RuleTemplate(
        decider._template("t.many", "deny").base, "Line {l} ({c}): {dx} with {m}, 100% sure.", (index,)
    )
    written = decider.decide_written(claim, model)
    assert isinstance(written, Written) and _dumps(first)[:-1] in written.line


# A head with a few solutions (at most twelve rows) is merged without de-duplicating its rows, and
# a name's text is made once per distinct sequence of values: the history lines below make the
# values of `d` (a date, a symbol) and `u` (a number) appear in an order that is not sorted, with
# a repeated solution, on two heads that show the same values

SEEN_RULES = """
/**
 * @id t.seen
 * @title Billed before
 * @summary Each history line for the same code: its date of service and units.
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l}: {c} billed before on {d} with {u} unit(s).
 */
warn(l, "t.seen") :- line(l, c, _, _, _, _), history(_, _, c, d, _, _, u).

/**
 * @id t.units_seen
 * @title Units billed before
 * @summary The units of each history line for the same code (the history claim is named, not shown).
 * @source test
 * @kind policy
 * @severity warn
 * @group CO
 * @carc 18
 * @message Line {l} was billed before with {u} unit(s).
 */
warn(l, "t.units_seen") :- line(l, c, _, _, _, _), history(h, _, c, _, _, _, u).
"""


@pytest.fixture(scope="module")
def seen_kb(tmp_path_factory: pytest.TempPathFactory) -> PolicyKB:
    return lint_fixture_kb(tmp_path_factory.mktemp("seen_kb"), {"seen.dl": SEEN_RULES})


def test_a_head_with_a_few_solutions_keeps_each_names_values_in_order_of_first_appearance(seen_kb: PolicyKB) -> None:
    line = {"service_date": "2024-03-01", "units": 1, "pos": "11", "rendering_npi": "1234567893"}
    # history lines H01..H09 in claim-id order (the order the prover takes them in): the code,
    # date of service and units of each
    seen = [
        ("99213", "2024-02-01", 3),
        ("99213", "2024-01-15", 1),
        ("99213", "2024-02-01", 3),  # the same solution as H01 (the claim id is `_`)
        ("99213", "2024-01-15", 2),
        ("99214", "2024-01-20", 7),
        ("99215", "2024-02-01", 3),
        ("99215", "2024-01-15", 1),
        ("99215", "2024-02-01", 3),
        ("99215", "2024-01-15", 2),
    ]
    history = [
        {**line, "line": 1, "claim_id": f"H{i:02}", "code": c, "service_date": d, "units": u}
        for i, (c, d, u) in enumerate(seen, 1)
    ]
    claim = parse_claim(
        {
            "id": "SEEN-1",
            "patient": {"id": "P1", "birth_date": "1960-01-01", "sex": "F"},
            "lines": [{**line, "line": n, "code": c} for n, c in ((1, "99213"), (2, "99214"), (3, "99215"))],
            "history": history,
        }
    )
    (fast,) = decide_many(seen_kb, [claim])
    messages = {(ln["line"], r["rule"]): r["message"] for ln in fast["lines"] for r in ln["reasons"]}  # type: ignore[index]
    # four rows, three distinct solutions: each name's distinct values as they first appear
    # (2024-02-01 before 2024-01-15, 3 before 1 before 2); the line's code is one value
    assert messages[(1, "t.seen")] == "Line 1: 99213 billed before on 2024-02-01 and 2024-01-15 with 3, 1 and 2 unit(s)."
    # one row: its values as str() writes them
    assert messages[(2, "t.seen")] == "Line 2: 99214 billed before on 2024-01-20 with 7 unit(s)."
    # the same dates and units as line 1 (their text is reused), another code
    assert messages[(3, "t.seen")] == "Line 3: 99215 billed before on 2024-02-01 and 2024-01-15 with 3, 1 and 2 unit(s)."
    assert fast == seen_kb.adjudicate(claim, proofs=False).to_dict() == _reference(seen_kb, [claim])[0]


def test_a_variable_the_message_does_not_show_still_decides_which_twelve_solutions_are_merged(
    seen_kb: PolicyKB,
) -> None:
    from engine.backends.decide import BatchDecider

    line = {"service_date": "2024-03-01", "units": 1, "pos": "11", "rendering_npi": "1234567893"}
    # line 1: history lines H01..H14 for its code, 1 unit each but for H13 (2) and H14 (3); line 2:
    # H15 and H16 for its code, 4 units each
    units = [("99213", 1)] * 12 + [("99213", 2), ("99213", 3), ("99214", 4), ("99214", 4)]
    history = [
        {**line, "line": 1, "claim_id": f"H{i:02}", "code": c, "units": u} for i, (c, u) in enumerate(units, 1)
    ]
    claim = parse_claim(
        {
            "id": "SEEN-2",
            "patient": {"id": "P1", "birth_date": "1960-01-01", "sex": "F"},
            "lines": [{**line, "line": n, "code": c} for n, c in ((1, "99213"), (2, "99214"))],
            "history": history,
        }
    )
    (fast,) = decide_many(seen_kb, [claim])
    messages = {(ln["line"], r["rule"]): r["message"] for ln in fast["lines"] for r in ln["reasons"]}  # type: ignore[index]
    # 14 solutions, distinct by their history claim h: the first twelve (H01..H12) all have 1 unit,
    # so 2 and 3 are not shown (merging the distinct shown values alone would give "1, 2 and 3")
    assert messages[(1, "t.units_seen")] == "Line 1 was billed before with 1 unit(s)."
    # two solutions (H15, H16) with the same units
    assert messages[(2, "t.units_seen")] == "Line 2 was billed before with 4 unit(s)."
    assert fast == seen_kb.adjudicate(claim, proofs=False).to_dict() == _reference(seen_kb, [claim])[0]
    # the query behind it fetches the claim, the line and the units, not h
    request = BatchDecider(seen_kb).request
    backend = seen_kb.duckdb()
    (index,) = [i for i in request.names if seen_kb.kb.compiled.rules[i].head.args[1].value == "t.units_seen"]  # type: ignore[union-attr]
    layout = backend.sql.solution_layout[index]
    places = [layout.names[n] for n in request.names[index]]
    short = backend._message_sql(index, backend.sql.solutions[index], places)[0]  # type: ignore[arg-type]
    assert short.splitlines()[0].count(" AS s") == 3 < len(layout.columns)


def test_a_chunks_written_results_reach_the_parent_as_they_are(kb: PolicyKB) -> None:
    """Scrub's default path hands each Written to the parent (engine.batch._pack, the Dask client)
    as it is, not copied into an _Outcome: the chunk's error records stay _Outcomes, and the
    tally and the lines written are those of the same results as _Outcomes."""
    import pickle

    from engine.batch import Written, _handle_chunk, _Outcome, _pack
    from engine.formats.reader import RawRecord

    data = (EXAMPLES / "batch.jsonl").read_bytes().splitlines(keepends=True)
    records: list[Any] = [RawRecord(n, line) for n, line in enumerate(data, start=1)]
    outcomes = _handle_chunk(BatchWorker(kb, "duckdb", False, False), records)
    written = [o for o in outcomes if type(o) is Written]
    errors = [o for o in outcomes if type(o) is _Outcome]
    assert written and errors and len(written) + len(errors) == len(records)
    assert all(o.ok for o in written) and not any(o.ok for o in errors)
    copies = [o if type(o) is _Outcome else _Outcome(o.line, True, o.lines, o.denied, o.deny_kinds) for o in outcomes]
    assert _pack(outcomes) == _pack(copies)
    assert pickle.loads(pickle.dumps(outcomes)) == outcomes  # as a Dask partition's result travels


# -- a chunk's facts, made as its lines are read --------------------------------------------------


def _jsonl_records() -> list[Any]:
    """The bundled JSONL lines (broken ones included) and a generated corpus, as engine.batch gets them."""
    from benchmarks.corpus import generate, strip_meta
    from benchmarks.tables import shared_tables
    from engine.batch import _Lines

    lines = (EXAMPLES / "batch.jsonl").read_bytes().splitlines(keepends=True)
    lines += [json.dumps(strip_meta(obj)).encode() + b"\n" for obj in generate(shared_tables(), 200, seed=5)]
    return _Lines(range(1, len(lines) + 1), b"".join(lines)).records()


def test_a_chunk_is_decided_from_the_facts_made_as_its_lines_were_read(
    kb: PolicyKB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """engine.batch reads a chunk's JSONL lines with their facts (read_fast_facts) and hands them
    on with the claims (ClaimsRead): no claim is walked again for its facts, and every record,
    error records included, is the one the claim-by-claim path writes."""
    import engine.api
    import engine.backends.decide
    import engine.claims
    from engine.batch import _handle, _handle_chunk

    records = _jsonl_records()
    worker = BatchWorker(kb, "duckdb", False, False)
    expected = [_handle(worker, record) for record in records]

    def walked(claim: Claim) -> Any:
        raise AssertionError(f"claim {claim.id} walked again for its facts")

    for module in (engine.claims, engine.backends.decide, engine.api):  # wherever a chunk's facts could be made
        monkeypatch.setattr(module, "claim_to_facts", walked, raising=False)
    got = _handle_chunk(worker, records)
    assert [(o.line, o.ok, o.lines, o.denied, o.deny_kinds) for o in got] == [
        (o.line, o.ok, o.lines, o.denied, o.deny_kinds) for o in expected
    ]
    assert sum(not o.ok for o in got) >= 2 and sum(o.ok for o in got) >= 200


def test_claims_read_hand_over_the_facts_of_each_claim() -> None:
    """chunk_facts gives the facts a ClaimsRead carries (those claim_to_facts gives) to its first
    caller, and keeps no reference to them (freed with what the caller makes of them); a later
    call, or one for any other sequence of claims, makes them. A ClaimsRead is made only with the
    facts of every claim."""
    import weakref

    from engine.claims import ClaimsRead, chunk_facts, read_fast_facts

    read = [*filter(None, (read_fast_facts(record.data) for record in _jsonl_records()))]
    claims = ClaimsRead([c for c, _f in read], [f for _c, f in read])
    given = chunk_facts(claims)
    assert all(a is f for a, (_c, f) in zip(given, read, strict=True))
    assert given == [claim_to_facts(c) for c in claims] == chunk_facts(claims) == chunk_facts(list(claims))
    assert not any(a is f for a, (_c, f) in zip(chunk_facts(claims), read, strict=True))
    alive = [weakref.ref(f) for f in given]
    del read, given
    assert not any(ref() is not None for ref in alive) and len(claims) >= 200  # the claims kept, not their facts
    with pytest.raises(ValueError, match="claims with the facts of"):
        ClaimsRead(claims, [claim_to_facts(c) for c in claims][1:])


# -- what a chunk leaves for the cycle collector ---------------------------------------------------


def test_a_chunks_outcome_rows_are_freed_with_their_models(kb: PolicyKB) -> None:
    """The grouped outcome rows (deny, warn: fetched grouped on the rule id) serve the chunk's
    messages only: once evaluate_many returns, a row is held by its claim's model alone, so it
    is freed with the model as its claim is decided, not kept alive until the next chunk."""
    import gc

    from engine.backends.decide import BatchDecider
    from engine.claims import chunk_facts

    claims = [record.parse().item for record in _jsonl_records()]
    claims = [c for c in claims if isinstance(c, Claim)]
    request = BatchDecider(kb).request
    models = kb.duckdb().evaluate_many(chunk_facts(claims), messages=request)
    held = [m.relations["deny"] for m in models if m.relations.get("deny")]
    assert len(held) >= 20
    for rows in held:
        holders = [x for x in gc.get_referrers(rows[0]) if type(x) is list]
        assert len(holders) == 1 and holders[0] is rows


def _collections_during(task: Any) -> int:
    """How many times the cycle collector starts while `task()` runs, with it set to start at
    every allocation of a tracked object."""
    import gc

    started = []

    def count(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            started.append(1)

    threshold = gc.get_threshold()
    gc.callbacks.append(count)
    gc.set_threshold(1)
    try:
        task()
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(count)
    return len(started)


def test_the_collector_stays_paused_over_a_set_at_a_time_task(kb: PolicyKB) -> None:
    """A set-at-a-time worker's task (its lines made records, decided, its outcomes packed) runs
    with the cycle collector paused throughout: none of its objects (none in a cycle) is walked by
    a collection, and it resumes once they are freed. A claim-by-claim worker's task is left to
    the collector as before."""
    from engine.batch import _handle, _handle_task, _Lines

    records = _jsonl_records()
    task = _Lines(range(1, len(records) + 1), b"".join(r.data for r in records))
    worker = BatchWorker(kb, "duckdb", False, False)
    packed = []
    assert _collections_during(lambda: packed.append(_handle_task(worker, task))) < 10  # as it resumes

    def one_by_one(claim: Claim) -> dict[str, Any]:
        return worker(claim)

    expected = [_handle(worker, record) for record in records]
    assert packed[0].data == b"".join(o.line for o in expected)
    few = _Lines(range(1, 21), b"".join(r.data for r in records[:20]))
    assert _collections_during(lambda: _handle_task(one_by_one, few)) > 20
