"""The claim reader's fast path reads exactly what the model-driven reader reads.

`parse_claim` first tries `_fast_claim`, a one-pass reader for a claim with nothing wrong, and
falls back to `read_claim` (field by field, every problem worded) when the fast path declines.
So for any JSON value the two must agree: the same Claim, or the fast path declines and the
reference's ClaimError stands. Never may the fast path accept what the reference rejects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from engine.claims import ClaimError, _fast_claim, parse_claim, read_claim
from fuzz import BUDGET
from fuzz.strategies import JSON_VALUES, claims

ROOT = Path(__file__).resolve().parent.parent.parent


def _agree(obj: Any) -> bool:
    """Whether the fast path accepted; fails when it disagrees with the reference."""
    fast = _fast_claim(obj)
    try:
        reference = read_claim(obj)
    except ClaimError as e:
        assert fast is None, f"fast path accepted a claim the reader rejects: {e}"
        return False
    assert fast is None or fast == reference
    return fast is not None


@BUDGET
@given(claims(broken=False))
def test_a_well_formed_claim_is_read_the_same_way(obj: dict[str, Any]) -> None:
    _agree(obj)


@BUDGET
@given(claims(broken=True))
def test_a_broken_claim_is_never_accepted_by_the_fast_path(obj: dict[str, Any]) -> None:
    _agree(obj)


@BUDGET
@given(JSON_VALUES)
def test_any_json_value_is_declined_or_read_the_same_way(obj: Any) -> None:
    _agree(obj)


@pytest.mark.parametrize(
    "change",
    [
        {"units": 2.0},  # an integral float: the reference reads 2, the fast path declines
        {"units": True},
        {"units": 0},
        {"units": 10000},
        {"line": 0},
        {"code": "  "},
        {"code": " 96372 "},
        {"service_date": "2024-02-30"},
        {"service_date": "2024-2-3"},
        {"modifiers": ["25", "59", "XU", "76", "77"]},
        {"modifiers": [""]},
        {"modifiers": None},
        {"rendering_credential": " "},
        {"drug": {"ndc": 1}},
        {"drug": {"nd": "x"}},
        {"documentation": {"consent": "yes"}},
        {"documentation": {"administered_by": {"credential": " rn "}, "supervision": " Direct "}},
        {"documentation": {"administered_by": "RN"}},
        {"diagnoses": ["e11.9", " z23 "]},
        {"extra": 1},
    ],
)
def test_hand_picked_edge_values_agree(change: dict[str, Any]) -> None:
    claim = json.loads((ROOT / "examples" / "batch.jsonl").read_text(encoding="utf-8").splitlines()[0])
    claim["lines"][0].update(change)
    _agree(claim)


def test_the_bundled_batch_takes_the_fast_path_and_reads_the_same() -> None:
    accepted = 0
    for raw in (ROOT / "examples" / "batch.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(raw)
        except ValueError:
            continue  # the batch file's malformed JSON line
        accepted += _agree(obj)
    assert accepted >= 25  # the valid claims of the batch file, not only declines


def test_duplicate_line_numbers_are_left_to_the_reader() -> None:
    claim = json.loads((ROOT / "examples" / "batch.jsonl").read_text(encoding="utf-8").splitlines()[0])
    claim["lines"].append(dict(claim["lines"][0]))
    assert _fast_claim(claim) is None
    with pytest.raises(ClaimError, match="duplicate line number"):
        parse_claim(claim)


@pytest.mark.parametrize("d", ["2024-01-01", "1999-12-31", "2024-02-29"])
def test_real_dates_pass(d: str) -> None:
    claim = json.loads((ROOT / "examples" / "batch.jsonl").read_text(encoding="utf-8").splitlines()[0])
    claim["lines"][0]["service_date"] = d
    assert _agree(claim)
