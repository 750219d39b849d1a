"""The two backends must agree: DuckDB (set-at-a-time, `scrub`'s default) and pyDatalog (claim by
claim, the engine of `explain`).

Every bundled example, every policy case and a seeded generated corpus go through both, and
every line must get the same decision, the same rule ids (with the same overrides) and the
same result record, message included. The generated corpus here is 1,000 claims (pyDatalog
decides about 200 claims/s on this machine); `python -m benchmarks.differential` runs 5,000.

Also: `scrub --engine duckdb` writes the same records as `--engine pydatalog`, error records
included, and `--engine both` turns a disagreement into a failed record naming line and rule.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from engine.api import EngineDisagreement, PolicyKB
from engine.backends.duckdb import sql_arith, sql_compare, sql_match
from engine.claims import Claim, load_claims, parse_claim, parse_claim_text
from engine.evaluate import Model

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def line_summary(result: dict[str, Any]) -> dict[int, tuple[str, list[tuple[str, str | None]]]]:
    return {
        ln["line"]: (ln["decision"], [(r["rule"], r.get("overridden_by")) for r in ln["reasons"]])
        for ln in result["lines"]
    }


def differences(kb: PolicyKB, claims: list[Claim]) -> list[str]:
    duck = kb.adjudicate_many(claims, engine="duckdb")
    pyd = kb.adjudicate_many(claims, engine="pydatalog")
    out = []
    for claim, a, b in zip(claims, duck, pyd, strict=True):
        assert not isinstance(a, Exception), f"{claim.id}: duckdb failed: {a!r}"
        assert not isinstance(b, Exception), f"{claim.id}: pydatalog failed: {b!r}"
        da, db = a.to_dict(), b.to_dict()
        if line_summary(da) != line_summary(db):
            out.append(f"{claim.id}: duckdb {line_summary(da)} != pydatalog {line_summary(db)}")
        elif da != db:
            out.append(f"{claim.id}: same decisions, different records (messages?)")
    return out


def test_every_bundled_example_agrees(kb: PolicyKB) -> None:
    claims = [c for path in sorted(EXAMPLES.glob("*.json")) for c in load_claims(path)]
    for raw in (EXAMPLES / "batch.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            claims.append(parse_claim_text(raw))
        except ValueError:
            continue  # the batch file's deliberately broken records; see the scrub test below
    assert len(claims) > 40
    assert any(
        ln.decision == "deny" for r in kb.adjudicate_many(claims) if not isinstance(r, Exception) for ln in r.lines
    )
    assert differences(kb, claims) == []


def _policy_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for path in sorted((ROOT / "kb").rglob("*.cases.json")):
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            out.append((f"{path.name}: {case['name']}", case["claim"], case["expect"]))
    return out


POLICY_CASES = _policy_cases()


def test_every_policy_case_agrees_and_meets_its_expectation(kb: PolicyKB) -> None:
    """The policy cases' own expectations (written from the guidance and the tables) hold on the
    DuckDB backend too, not only agreement with pyDatalog."""
    claims = [parse_claim(c) for _n, c, _e in POLICY_CASES]
    assert differences(kb, claims) == []
    results = kb.adjudicate_many(claims, engine="duckdb")
    wrong = []
    for (name, _c, expect), result in zip(POLICY_CASES, results, strict=True):
        assert not isinstance(result, Exception)
        for ln in result.lines:
            want = expect[str(ln.line)]
            got_rules = sorted(r.rule for r in ln.reasons if r.in_force)
            if ln.decision != want["decision"] or got_rules != sorted(want.get("rules", [])):
                wrong.append(f"{name} line {ln.line}: {ln.decision} {got_rules} != {want}")
    assert wrong == []


def test_a_seeded_generated_corpus_agrees_line_by_line(kb: PolicyKB) -> None:
    from benchmarks.corpus import generate, strip_meta
    from benchmarks.tables import shared_tables

    corpus = generate(shared_tables(), 1000, seed=7)
    claims = [parse_claim(strip_meta(c)) for c in corpus]
    decided = kb.adjudicate_many(claims)
    denied = sum(ln.decision == "deny" for r in decided if not isinstance(r, Exception) for ln in r.lines)
    assert denied > 100  # the corpus exercises the edits, not only clean claims
    assert differences(kb, claims) == []


# -- scrub -----------------------------------------------------------------------------------------


def test_scrub_writes_the_same_records_on_both_engines(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from engine.cli import main

    outs = {}
    for engine in ("duckdb", "pydatalog", "both"):
        out = tmp_path / f"{engine}.jsonl"
        res = CliRunner().invoke(main, ["scrub", str(EXAMPLES / "batch.jsonl"), "-o", str(out), "--engine", engine])
        assert res.exit_code == 1, res.output  # batch.jsonl holds two broken records on purpose
        outs[engine] = out.read_bytes()
    assert outs["duckdb"] == outs["pydatalog"] == outs["both"]
    records = [json.loads(x) for x in outs["duckdb"].splitlines()]
    errors = [r["error"] for r in records if "error" in r]
    assert len(errors) == 2 and all(e["record"] and e["problems"][0]["field"] for e in errors)


def test_scrub_proofs_are_the_pydatalog_proofs(tmp_path: Path) -> None:
    """--proofs explains the claims that have reasons through pyDatalog, so the records equal
    today's claim-by-claim output, proof trees included."""
    from click.testing import CliRunner

    from engine.cli import main

    outs = {}
    for engine in ("duckdb", "pydatalog"):
        out = tmp_path / f"{engine}.jsonl"
        args = ["scrub", str(EXAMPLES / "batch.jsonl"), "-o", str(out), "--engine", engine, "--proofs"]
        assert CliRunner().invoke(main, args).exit_code == 1
        outs[engine] = out.read_bytes()
    assert outs["duckdb"] == outs["pydatalog"]
    assert b'"proof":{"bindings"' in outs["duckdb"]


def test_engine_both_turns_a_disagreement_into_a_failed_record(kb: PolicyKB, monkeypatch) -> None:
    """Make the DuckDB side lose its deny rows (as a bug would) and check the record names it."""
    claim = next(c for c in load_claims(EXAMPLES / "office-99211-with-96372.json"))
    expected = kb.adjudicate(claim, proofs=False)
    denied = [(ln.line, r.rule) for ln in expected.lines for r in ln.reasons if ln.decision == "deny"]
    assert denied  # the example denies 99211 beside 96372
    backend = kb.duckdb()
    real = backend.evaluate_many

    def lossy(chunk, relations=None) -> list[Model]:
        models = real(chunk, relations)
        for m in models:
            m.relations["deny"] = []
        return models

    monkeypatch.setattr(backend, "evaluate_many", lossy)
    (result,) = kb.adjudicate_many([claim], engine="both")
    assert isinstance(result, EngineDisagreement)
    line, rule = denied[0]
    assert f"line {line}: duckdb pay" in str(result) and rule in str(result)


# -- the SQL built-ins keep pyDatalog's type-safe semantics -----------------------------------------


def test_comparisons_across_types_are_false_except_not_equal() -> None:
    assert sql_compare("=", "a", "n", "b", "s") == "FALSE"
    assert sql_compare("<", "a", "s", "b", "n") == "FALSE"
    assert sql_compare("!=", "a", "n", "b", "s") == "TRUE"
    assert sql_compare("<=", "a", "n", "b", "n") == "(a <= b)"


@pytest.mark.parametrize(
    ("op", "a", "b"),
    [
        ("/", 7, 2),
        ("/", -7, 2),
        ("/", 7, -2),
        ("%", -7, 3),
        ("%", 7, -3),
        ("%", 7, 3),
        ("/", 5, 0),
        ("%", 5, 0),
        ("-", 2, 9),
    ],
)
def test_arithmetic_is_python_floor_division_and_modulo(op: str, a: int, b: int) -> None:
    import duckdb

    expr = sql_arith(op, str(a), "n", str(b), "n")
    assert expr is not None
    (value,) = duckdb.connect().execute(f"SELECT {expr}").fetchone()  # type: ignore[misc]
    want = None if op in "/%" and b == 0 else {"/": lambda: a // b, "%": lambda: a % b, "-": lambda: a - b}[op]()
    assert value == want
    assert sql_arith(op, "'x'", "s", str(b), "n") is None  # arithmetic on a symbol has no result


def test_match_is_a_full_match_on_strings_only() -> None:
    import duckdb

    con = duckdb.connect()
    pat = "'^([0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$'"
    for value, want in (("96372", True), ("9637", False), ("J3420", True), ("x96372", False), ("96372x", False)):
        (got,) = con.execute(f"SELECT {sql_match(pat, 's', repr(value), 's', False, None)}").fetchone()  # type: ignore[misc]
        assert got is want, value
    assert sql_match(pat, "s", "5", "n", False, None) == "FALSE"
    assert sql_match(pat, "s", "5", "n", True, None) == "TRUE"
    assert sql_match("'(['", "s", "'a'", "s", False, "([") == "FALSE"  # Python cannot compile it: no match


def test_awkward_values_cross_into_duckdb_intact(kb: PolicyKB) -> None:
    """Quotes, commas, newlines, control characters and empty strings survive the trip through
    the backend's CSV loading: the record-incomplete message names what is missing, and agrees."""
    base = next(c for c in load_claims(EXAMPLES / "injection-record-incomplete.json"))
    raw = json.loads((EXAMPLES / "injection-record-incomplete.json").read_text(encoding="utf-8"))
    raw = raw[0] if isinstance(raw, list) else raw
    for ln in raw["lines"]:
        if "documentation" in ln:
            ln["documentation"]["drug_name"] = 'say "hi",\nthen\x01 leave'
            ln["documentation"]["site"] = ""
    claims = [base, parse_claim(raw)]
    assert differences(kb, claims) == []


def test_a_claim_the_backend_cannot_take_fails_alone(kb: PolicyKB) -> None:
    """A line number beyond 64 bits cannot be a DuckDB BIGINT: that claim gets an error, the
    rest of its chunk is decided as usual. The reader refuses such a number (it is past the
    largest line number), so the claim is built in code, as a library caller could."""
    good = [c for path in sorted(EXAMPLES.glob("*.json"))[:5] for c in load_claims(path)]
    raw = json.loads((EXAMPLES / "office-96372-with-em.json").read_text(encoding="utf-8"))
    raw = raw[0] if isinstance(raw, list) else raw
    claim = parse_claim(raw)
    bad = dataclasses.replace(claim, lines=(dataclasses.replace(claim.lines[0], line=10**20), *claim.lines[1:]))
    results = kb.adjudicate_many([*good[:2], bad, *good[2:]], engine="duckdb")
    assert isinstance(results[2], Exception)
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 2)
    expected = kb.adjudicate_many(good, engine="pydatalog")
    got = [r for i, r in enumerate(results) if i != 2]
    assert [r.to_dict() for r in got] == [r.to_dict() for r in expected]  # type: ignore[union-attr]


def test_a_variable_twice_in_one_literal_joins_its_own_positions_on_both_engines() -> None:
    """`m(L, L)` holds for the rows whose two columns are equal: 1 and 3 of a's rows (1,1),
    (1,2), (3,3), (4,5); under negation, only 4 has no such row. pyDatalog compares the two
    positions' engine constants themselves, so rows served from Python (datalog.Table) must
    give equal values one constant: with a Const each, m(L, L) once had no rows at all."""
    from types import SimpleNamespace

    from engine.conformance import Evaluator

    program = SimpleNamespace(
        facts={"a": [(1, 1), (1, 2), (3, 3), (4, 5)]},
        rules=[
            "m(L, M) :- a(L, M).",
            "fact_twice(L) :- a(L, L).",
            "derived_twice(L) :- m(L, L).",
            "tested_twice(L) :- m(L, L), L > 1.",
            "never_twice(L) :- a(L, _), not m(L, L).",
        ],
    )
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        assert out["fact_twice"] == {(1,), (3,)}, backend
        assert out["derived_twice"] == {(1,), (3,)}, backend
        assert out["tested_twice"] == {(3,)}, backend
        assert out["never_twice"] == {(4,)}, backend


def test_aggregates_fold_a_set_on_both_engines() -> None:
    """A relation derived by one rule can hold a row twice in DuckDB (only a UNION of rules is
    de-duplicated); an aggregate over it must still fold the set, as pyDatalog does: v is {5, 7}
    though two facts of a give 5, so the sum is 12, not 17."""
    from types import SimpleNamespace

    from engine.conformance import Evaluator

    program = SimpleNamespace(
        facts={"a": [(1, 5), (2, 5), (3, 7)], "k": [("x",)]},
        rules=["v(X) :- a(_, X).", "total(K, T) :- k(K), T = sum X : { v(X) }.", "n(K, C) :- k(K), C = count : { v(X) }."],
    )
    for backend in ("pydatalog", "duckdb"):
        out = Evaluator(backend).evaluate(program)
        assert out["v"] == {(5,), (7,)}, backend
        assert out["total"] == {("x", 12)}, backend
        assert out["n"] == {("x", 2)}, backend
