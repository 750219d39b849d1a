"""The claim reader's fast path reads exactly what the model-driven reader reads.

`parse_claim` first tries `_fast_claim`, a one-pass reader for a claim with nothing wrong, and
falls back to `read_claim` (field by field, every problem worded) when the fast path declines.
So for any JSON value the two must agree: the same Claim, or the fast path declines and the
reference's ClaimError stands. Never may the fast path accept what the reference rejects.

Scrub reads a JSONL line with `read_fast` first (msgspec, see test_fuzz_struct_claims.py; a line
msgspec refuses: orjson, then `_fast_claim`); `parse_claim_text` (json.loads, then `parse_claim`)
stays the reference for the line's bytes, and words every error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.claims import ClaimError, _fast_claim, parse_claim, parse_claim_text, read_claim, read_fast
from engine.formats.reader import parse_line
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


def _agree_bytes(raw: bytes) -> bool:
    """Whether read_fast accepted the line; fails when it disagrees with parse_claim_text."""
    fast = read_fast(raw)
    try:
        reference = parse_claim_text(raw.rstrip(b"\r\n").decode("utf-8-sig"))
    except (UnicodeDecodeError, ClaimError) as e:
        assert fast is None, f"read_fast accepted a line the reader rejects: {e}"
        return False
    assert fast is None or fast == reference
    return fast is not None


# Values where orjson and json.loads part ways, or that JSON text spells in more than one way:
# integers beyond 64 bits (orjson: a float), NaN and infinities (json.loads only), lone and
# paired surrogates, integral floats, text with escapes.
ODD_VALUES = st.sampled_from(
    [2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, float("nan"), float("inf"), 1.0, 1e300, -0.0]
    + ["\ud800", "a\udfffb", "\U0001f600", '"', "\\", "\n", "\u2028", "\x00", "96372\t"]
)


def _put(obj: Any, value: Any, where: int) -> Any:
    """obj with one value swapped for `value`: in a line (the `where`-th key) or at the top."""
    if isinstance(obj, dict):
        lines = obj.get("lines")
        target = lines[0] if isinstance(lines, list) and lines and isinstance(lines[0], dict) else obj
        keys = list(target) or ["id"]
        target[keys[where % len(keys)]] = value
    return obj


def _spell(obj: Any, ascii_only: bool, bom: bool, ending: bytes) -> bytes | None:
    """obj as one JSONL line (None when its text cannot be UTF-8, e.g. a lone surrogate)."""
    try:
        raw = json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:
        return None
    return (b"\xef\xbb\xbf" if bom else b"") + raw + ending


LINES = st.builds(
    _spell,
    st.one_of(
        claims(broken=False),
        claims(broken=True),
        JSON_VALUES,
        st.builds(_put, claims(broken=False), ODD_VALUES, st.integers(0, 20)),
    ),
    st.booleans(),
    st.sampled_from([False, False, False, True]),
    st.sampled_from([b"", b"\n", b"\r\n", b" \n"]),
).filter(lambda raw: raw is not None)


@BUDGET
@given(LINES)
def test_a_jsonl_line_is_declined_or_read_as_json_loads_reads_it(raw: bytes) -> None:
    _agree_bytes(raw)


@BUDGET
@given(st.builds(_put, claims(broken=False), ODD_VALUES, st.integers(0, 20)), st.booleans())
def test_odd_values_are_declined_or_read_the_same_way(obj: dict[str, Any], ascii_only: bool) -> None:
    raw = _spell(obj, ascii_only, False, b"\n")
    if raw is not None:
        _agree_bytes(raw)


@pytest.mark.parametrize(
    ("text", "bad_field"),
    [
        (
            '{"id": "C", "patient": {"id": "P"}, "lines": [{"line": 18446744073709551616, "service_date": "2024-01-02",'
            ' "code": "96372", "pos": "11", "rendering_npi": "1"}]}',  # beyond 64 bits: a float to orjson
            "lines[0].line",  # and past the largest line number
        ),
        (
            '{"id": "C", "patient": {"id": "P"}, "lines": [{"line": 1, "service_date": "2024-01-02",'
            ' "code": "\\ud800", "pos": "11", "rendering_npi": "1"}]}',  # a lone surrogate: json.loads only
            "lines[0].code",
        ),
        (
            '\ufeff{"id": "C", "patient": {"id": "P"}, "lines": [{"line": 1, "service_date": "2024-01-02",'
            ' "code": "96372", "pos": "11", "rendering_npi": "1"}]}',  # a byte order mark
            None,
        ),
    ],
)
def test_what_orjson_refuses_or_reads_otherwise_is_read_by_json_loads(text: str, bad_field: str | None) -> None:
    raw = text.encode("utf-8")
    assert read_fast(raw) is None
    record = parse_line(7, raw)
    try:
        expected = parse_claim_text(text.removeprefix("\ufeff"), record=7)
    except ClaimError as e:  # an error naming its field, the same either way
        assert isinstance(record.item, ClaimError) and record.item.problems == e.problems
        assert [p.field for p in e.problems] == [bad_field]
        return
    assert bad_field is None
    assert record.item == expected


def test_every_bundled_batch_line_is_read_as_before() -> None:
    """parse_line, fast path first, gives what json.loads and parse_claim give, error or claim."""
    fast = 0
    for n, raw in enumerate((ROOT / "examples" / "batch.jsonl").read_bytes().splitlines(), 1):
        if not raw.strip():
            continue
        fast += _agree_bytes(raw)
        got = parse_line(n, raw).item
        try:
            want: Any = parse_claim_text(raw.decode("utf-8-sig"), record=n)
        except ClaimError as e:
            assert isinstance(got, ClaimError) and (got.problems, got.record) == (e.problems, e.record)
        else:
            assert got == want
    assert fast >= 25


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
