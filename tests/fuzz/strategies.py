"""Hypothesis strategies for claims, derived from the claim model so they follow it as it grows.

`claims()` draws claim JSON from `engine.claims.CLAIM_FIELDS`: with `broken=False` every value is
well formed (and codes, places of service and modifiers are mostly real ones, so the engine's
rules fire); with `broken=True` any field may be missing, of the wrong kind, or joined by an
unknown key, which is what the reader must survive.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from hypothesis import strategies as st

from engine.claims import CLAIM_FIELDS, Field

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
"""Any JSON value (no NaN: it is not JSON)."""

# Real values, so that generated claims reach the policy rules and the NCCI tables.
REAL_TEXT: Mapping[str, list[str]] = {
    "code": ["96372", "99213", "99214", "99211", "J3420", "J1885", "20610", "90471", "90472", "96401", "J9217"],
    "pos": ["11", "22", "19", "23", "12"],
    "modifiers": ["25", "59", "XS", "XU", "LT", "RT", "76"],
    "diagnoses": ["D51.0", "R53.83", "M17.11", "Z23"],
    "rendering_credential": ["MD", "DO", "NP", "PA", "RN", "MA"],
    "credential": ["MD", "RN", "MA", "LPN"],
    "route": ["IM", "SC", "IV"],
    "supervision": ["direct", "general", "personal"],
    "rendering_npi": ["1234567893", "1245319599"],
}

SOME_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=10)
NON_BLANK = SOME_TEXT.filter(lambda s: s.strip() != "")


def _text(key: str) -> st.SearchStrategy[str]:
    real = REAL_TEXT.get(key)
    return st.sampled_from(real) | NON_BLANK if real else NON_BLANK


def _valid(key: str, spec: Field) -> st.SearchStrategy[Any]:
    if spec.kind == "text":
        return _text(key)
    if spec.kind == "date":
        return st.dates(date(2023, 1, 1), date(2026, 12, 31)).map(date.isoformat)
    if spec.kind == "integer":
        return st.integers(spec.low if spec.low is not None else 0, min(spec.high or 12, 12))
    if spec.kind == "flag":
        return st.booleans()
    if spec.kind == "texts":
        return st.lists(_text(key), max_size=spec.limit or 3)
    assert spec.fields is not None
    if spec.kind == "object":
        return objects(spec.fields, broken=False)
    return st.lists(objects(spec.fields, broken=False), min_size=1 if spec.required else 0, max_size=3)


def _broken(key: str, spec: Field) -> st.SearchStrategy[Any]:
    """A well-formed value most of the time (1 in 12 is anything at all), so that some drawn
    claims are valid and the rest have a few problems each."""
    if spec.fields is not None:
        inner = objects(spec.fields, broken=True)
        good = inner if spec.kind == "object" else st.lists(inner, min_size=1 if spec.required else 0, max_size=3)
    else:
        good = _valid(key, spec)
    return st.integers(0, 11).flatmap(lambda n: JSON_VALUES if n == 0 else good)


def _without(obj: dict[str, Any], index: int) -> dict[str, Any]:
    return {k: v for i, (k, v) in enumerate(obj.items()) if i != index}


def objects(fields: Mapping[str, Field], *, broken: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object of the model: required keys always, optional ones sometimes; when broken, a
    key may be dropped (index drawn past the end: none) or an unknown one (a typo) added."""
    value = _broken if broken else _valid
    required = {k: value(k, s) for k, s in fields.items() if s.required and k != "$schema"}
    optional = {k: value(k, s) for k, s in fields.items() if not s.required and k != "$schema"}
    strategy = st.fixed_dictionaries(required, optional=optional)
    if not broken:
        return strategy
    strategy = st.builds(_without, strategy, st.integers(0, 4 * len(fields)))
    typo = st.sampled_from([*fields, "x"]).map(lambda k: k[:-1] or "y")
    unknown = st.integers(0, 7).flatmap(
        lambda n: st.dictionaries(typo, JSON_VALUES, max_size=1) if n == 0 else st.just({})
    )
    return st.builds(lambda known, extra: {**extra, **known}, strategy, unknown)


def _numbered(claim: Any) -> Any:
    """Line numbers unique (1, 2, ...) as the reader requires, where the lines are objects with
    a `line` (a broken claim keeps whatever else it has)."""
    if not isinstance(claim, dict):
        return claim
    for key in ("lines", "history"):
        items = claim.get(key)
        for i, line in enumerate(items if isinstance(items, list) else [], 1):
            if isinstance(line, dict) and isinstance(line.get("line"), int) and not isinstance(line["line"], bool):
                line["line"] = i
    return claim


def claims(*, broken: bool) -> st.SearchStrategy[dict[str, Any]]:
    return objects(CLAIM_FIELDS, broken=broken).map(_numbered)
