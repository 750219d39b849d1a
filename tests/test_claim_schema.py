"""The published claim JSON Schema and the claim reader agree, because both come from one model.

Every claim the project ships (examples, batch input, policy cases, the schema page's example)
must be valid against the schema and accepted by the reader; and on claims mutated field by
field, the reader accepts exactly the claims the schema accepts (plus the one rule JSON Schema
cannot state: unique line numbers).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.claim_schema import claim_schema, example_claim
from engine.claims import ClaimError, parse_claim

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = Draft202012Validator(claim_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _shipped_claims() -> Iterator[tuple[str, Any]]:
    for path in sorted((ROOT / "examples").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for i, claim in enumerate(data if isinstance(data, list) else [data]):
            yield f"{path.name}[{i}]", claim
    for path in sorted((ROOT / "kb").rglob("*.cases.json")):
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            yield f"{path.name}:{case['name']}", case["claim"]
    yield "claim-schema.md example", example_claim()


SHIPPED = list(_shipped_claims())


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(claim_schema())


def test_claims_are_shipped_to_check() -> None:
    assert len(SHIPPED) > 40


@pytest.mark.parametrize(("name", "claim"), SHIPPED, ids=[name for name, _ in SHIPPED])
def test_every_shipped_claim_is_valid_against_the_schema(name: str, claim: Any) -> None:
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in VALIDATOR.iter_errors(claim)]
    assert errors == []
    parse_claim(claim)


def test_on_the_batch_example_schema_and_reader_agree_record_by_record() -> None:
    """examples/batch.jsonl mixes good claims with deliberately broken ones."""
    verdicts = []
    for line in (ROOT / "examples" / "batch.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            claim = json.loads(line)
        except json.JSONDecodeError:
            continue  # not JSON at all: neither side sees a claim
        verdicts.append((_accepted_by_reader(claim), _accepted_by_schema(claim)))
    assert {reader for reader, _ in verdicts} == {True, False}
    assert [reader for reader, _ in verdicts] == [schema for _, schema in verdicts]


def _accepted_by_reader(claim: Any) -> bool:
    try:
        parse_claim(claim)
    except ClaimError:
        return False
    return True


def _unique_line_numbers(claim: dict[str, Any]) -> bool:
    lines = [ln["line"] for ln in claim["lines"]]
    history = [(h["claim_id"], h["line"]) for h in claim.get("history") or []]
    return len(set(lines)) == len(lines) and len(set(history)) == len(history)


def _accepted_by_schema(claim: Any) -> bool:
    return VALIDATOR.is_valid(claim) and _unique_line_numbers(claim)


REPLACEMENTS: list[Any] = [
    None,
    "",
    "  ",
    "x",
    "2026-02-30",
    "2024-07-15",
    " 2024-07-15",
    0,
    1,
    2.0,
    1.5,
    10000,
    True,
    [],
    ["25"],
    [""],
    ["a", "b", "c", "d", "e"],
    {},
    {"name": "x"},
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and array index in a JSON value, outermost first."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*path, key)
            yield from _paths(inner, (*path, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield (*path, i)
            yield from _paths(inner, (*path, i))


def _mutations(claim: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The claim with one field removed, renamed (a typo), or replaced by a value of each kind."""
    for path in _paths(claim):
        *outer, last = path
        for what in ["delete", "typo", *range(len(REPLACEMENTS))]:
            mutated = copy.deepcopy(claim)
            target: Any = mutated
            for part in outer:
                target = target[part]
            if what == "delete":
                del target[last]
            elif what == "typo":
                if isinstance(last, int):
                    continue
                target[last[:-1] or "x"] = target.pop(last)
            else:
                target[last] = copy.deepcopy(REPLACEMENTS[int(what)])
            yield f"{'.'.join(map(str, path))} {what}", mutated


BASES = [example_claim(), *(claim for name, claim in SHIPPED if name.startswith("duplicate-96372-already"))]


def test_the_reader_accepts_exactly_what_the_schema_accepts() -> None:
    checked = disagreements = 0
    both_outcomes = set()
    report = []
    for base in BASES:
        for name, mutated in _mutations(base):
            reader, schema = _accepted_by_reader(mutated), _accepted_by_schema(mutated)
            both_outcomes.add(reader)
            checked += 1
            if reader != schema:
                disagreements += 1
                report.append(f"{name}: reader {'accepts' if reader else 'rejects'}, schema the opposite")
    assert both_outcomes == {True, False}  # the mutations reach both sides of the line
    assert checked > 1000
    assert report == [], f"{disagreements} of {checked} disagree"
