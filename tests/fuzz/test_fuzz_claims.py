"""Property tests of the claim reader: any input gives a claim (and then a decision per line) or
an input error whose every problem names a field path into that input; never another exception."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.api import PolicyKB
from engine.claims import Claim, ClaimError, ClaimFileError, parse_claim, parse_claim_text, read_claims
from fuzz import BUDGET
from fuzz.strategies import JSON_VALUES, claims

PATH_STEP = re.compile(r'\.?([A-Za-z_$][A-Za-z0-9_$]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


@cache
def _kb() -> PolicyKB:
    return PolicyKB.open()


def _steps(path: str) -> list[tuple[str | None, str | None]]:
    """A field path as (key, index) steps; a key that is no plain name is quoted: `["a.b"]`."""
    matches = list(PATH_STEP.finditer(path))
    assert "".join(m.group(0) for m in matches) == path, f"not a field path: {path!r}"
    return [(m.group(1) or (json.loads(m.group(3)) if m.group(3) else None), m.group(2)) for m in matches]


def _resolve(value: Any, path: str) -> tuple[bool, bool]:
    """(the path's parent exists in value, the path itself exists)."""
    if path == "$":
        return True, True
    steps = _steps(path)
    for n, (key, index) in enumerate(steps):
        last = n == len(steps) - 1
        if index is not None and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        elif key is not None and isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return last, False
    return True, True


def _read(obj: Any) -> Claim | list[Any]:
    """The claim, or the problems of the ClaimError (the only exception allowed)."""
    try:
        return parse_claim(obj)
    except ClaimError as e:
        assert e.problems, "a ClaimError with no problem"
        return e.problems


def _check_problems_point_into(obj: Any, problems: list[Any]) -> None:
    for p in problems:
        assert p.message.strip()
        parent_exists, exists = _resolve(obj, p.field)
        assert parent_exists, f"{p.field} does not point into the claim: {p.message}"
        if p.message.endswith("required field is missing"):
            assert not exists
        elif not p.message.endswith("required field is null") and "duplicate" not in p.message:
            assert exists, f"{p.field}: {p.message}"


@BUDGET
@given(JSON_VALUES)
def test_any_json_value_is_a_claim_or_an_input_error(obj: Any) -> None:
    outcome = _read(obj)
    if not isinstance(outcome, Claim):
        _check_problems_point_into(obj, outcome)


def _decide(claim: Claim) -> dict[str, Any]:
    result: dict[str, Any] = _kb().adjudicate(claim, proofs=True, remedies=True).to_dict()
    text = json.dumps(result, allow_nan=False)  # the JSON the CLI prints
    assert json.loads(text)["claim"] == claim.id
    assert [ln["line"] for ln in result["lines"]] == [ln.line for ln in claim.lines]
    assert {ln["decision"] for ln in result["lines"]} <= {"pay", "deny"}
    return result


@BUDGET
@given(claims(broken=True))
def test_a_claim_with_broken_fields_names_each_problem_by_its_path(obj: dict[str, Any]) -> None:
    outcome = _read(obj)
    if isinstance(outcome, Claim):
        _decide(outcome)
    else:
        _check_problems_point_into(obj, outcome)
        for p in outcome:
            if "unknown field" in p.message:  # the key is there, and the message quotes it
                assert _resolve(obj, p.field) == (True, True)
                assert json.dumps(_steps(p.field)[-1][0], ensure_ascii=False) in p.message


@BUDGET
@given(claims(broken=False))
def test_a_well_formed_claim_gets_a_decision_for_every_line(obj: dict[str, Any]) -> None:
    _decide(parse_claim(obj))


@BUDGET
@given(st.text(max_size=200))
def test_any_text_is_a_claim_or_an_input_error(text: str) -> None:
    try:
        parse_claim_text(text, source="fuzz.jsonl", record=1)
    except ClaimError as e:
        assert e.problems and str(e).startswith("fuzz.jsonl:1: ")


@BUDGET
@given(st.binary(max_size=200) | claims(broken=True).map(lambda c: json.dumps([c]).encode()))
def test_any_bytes_are_claims_or_a_claim_file_error(data: bytes) -> None:
    try:
        claims_read, is_array = read_claims(data, "in.json")
    except ClaimFileError as e:
        assert e.errors and all(err.problems for err in e.errors)
        assert str(e).startswith("in.json")
    else:
        assert all(isinstance(c, Claim) for c in claims_read)
        assert is_array or len(claims_read) == 1
