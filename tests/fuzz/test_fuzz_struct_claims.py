"""The msgspec path of read_fast reads exactly what the reference reader reads, and is the path taken.

`read_fast` first decodes a JSONL line into the claim model's Structs (msgspec checks keys, kinds,
bounds and sizes in C) and reads them with `_struct_read`, which makes the claim's facts too; only a
text msgspec refuses goes on to orjson and `_fast_claim`. For any line the msgspec path must give
the Claim `parse_claim_text` gives (json.loads, then the model-driven reader; the reference that
words every error record), and that claim's facts, or refuse or decline it. Claims are compared by value and by repr, so that 1, 1.0 and True, equal to
Python, count as different. Lines are drawn valid, broken, with odd values, and as texts JSON can
spell in more than one way (a key given twice, escapes, whitespace around the value).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine.claims
from engine.claims import (
    _STRUCT_DECODER,
    Claim,
    ClaimError,
    ClaimFacts,
    _Reject,
    _struct_read,
    claim_to_facts,
    parse_claim_text,
    read_fast,
)
from fuzz import BUDGET
from fuzz.strategies import JSON_VALUES, claims
from fuzz.test_fuzz_fast_claims import LINES, ODD_VALUES, _put, _spell

ROOT = Path(__file__).resolve().parent.parent.parent
REFUSED = "refused"  # msgspec refused the text: read_fast tries orjson and _fast_claim next


def _msgspec_path(raw: bytes) -> Claim | str | None:
    """What the msgspec path makes of a line: a Claim, None (declined) or REFUSED. The facts it
    makes with the claim are the claim's (claim_to_facts', the same rows in the same order)."""
    try:
        decoded = _STRUCT_DECODER.decode(raw)
    except msgspec.DecodeError:
        return REFUSED
    try:
        claim, facts = _struct_read(decoded)
    except (_Reject, ValueError):
        return None
    assert type(facts) is ClaimFacts and facts == claim_to_facts(claim)
    assert list(facts) == list(claim_to_facts(claim))  # CLAIM_RELATIONS order
    assert {rel: [repr(row) for row in rows] for rel, rows in facts.items()} == {
        rel: [repr(row) for row in rows] for rel, rows in claim_to_facts(claim).items()
    }  # the same types too: 1 is not 1.0 nor True
    return claim


def _agree(raw: bytes) -> bool:
    """Whether the msgspec path accepted the line; fails when it reads it otherwise than the
    reference, or when read_fast does."""
    got = _msgspec_path(raw)
    fast = read_fast(raw)
    try:
        reference = parse_claim_text(raw.rstrip(b"\r\n").decode("utf-8-sig"))
    except (UnicodeDecodeError, ClaimError) as e:
        assert not isinstance(got, Claim), f"the msgspec path accepted a line the reader rejects: {e}"
        assert fast is None
        return False
    for claim in (got, fast):
        if isinstance(claim, Claim):
            assert claim == reference
            assert repr(claim) == repr(reference)  # the same types too: 1 is not 1.0 nor True
            assert claim_to_facts(claim) == claim_to_facts(reference)
    if got is not REFUSED:  # a line the msgspec path declines is declined by read_fast
        assert fast is got or fast == got
    return isinstance(got, Claim)


@BUDGET
@given(LINES)
def test_any_jsonl_line_is_refused_declined_or_read_as_the_reader_reads_it(raw: bytes) -> None:
    _agree(raw)


@BUDGET
@given(claims(broken=False), st.booleans())
def test_a_well_formed_claim_is_read_the_same_way(obj: dict[str, Any], ascii_only: bool) -> None:
    raw = _spell(obj, ascii_only, False, b"\n")
    if raw is not None:
        _agree(raw)


@BUDGET
@given(claims(broken=True))
def test_a_broken_claim_is_never_accepted(obj: dict[str, Any]) -> None:
    raw = _spell(obj, False, False, b"")
    if raw is not None:
        _agree(raw)


@BUDGET
@given(st.builds(_put, claims(broken=False), ODD_VALUES, st.integers(0, 20)), st.booleans())
def test_odd_values_are_refused_declined_or_read_the_same_way(obj: dict[str, Any], ascii_only: bool) -> None:
    raw = _spell(obj, ascii_only, False, b"\n")
    if raw is not None:
        _agree(raw)


# Text values that trimming and case change, or that are blank: the msgspec path trims and cases
# them in Python, as read_claim does (str.strip's whitespace is Unicode's: no-break space, line
# separator, the ASCII separators \x1c-\x1f).
ODD_TEXTS = st.sampled_from(
    ["", " ", "\t", " 96372 ", "xu", " z23", "Direct ", "\u00a0", "25\u2028", "\x1f59", "ß", "ǆ", "\u0130", "M.D."]
)


def _with_text(obj: dict[str, Any], text: str, where: int, deep: int) -> dict[str, Any]:
    """obj with one text of a line, its drug or documentation, or of the claim swapped for text."""
    line = obj["lines"][where % len(obj["lines"])]
    targets: list[tuple[dict[str, Any], str]] = [(obj, "id"), (obj["patient"], "id")]
    for key, value in line.items():
        if isinstance(value, str):
            targets.append((line, key))
        elif isinstance(value, list) and value:
            targets.append((value, deep % len(value)))  # type: ignore[arg-type]
        elif isinstance(value, dict):
            targets += [(value, k) for k, v in value.items() if isinstance(v, str)]
            by = value.get("administered_by")
            if isinstance(by, dict):
                targets += [(by, k) for k in by]
    target, key = targets[deep % len(targets)]
    target[key] = text  # type: ignore[index]
    return obj


@BUDGET
@given(st.builds(_with_text, claims(broken=False), ODD_TEXTS, st.integers(0, 9), st.integers(0, 40)), st.booleans())
def test_texts_to_trim_case_or_refuse_are_read_the_same_way(obj: dict[str, Any], ascii_only: bool) -> None:
    raw = _spell(obj, ascii_only, False, b"\n")
    if raw is not None:
        _agree(raw)


def _twice(obj: dict[str, Any], value: Any, where: int, first: bool) -> bytes:
    """obj's JSON text with one key of the top, the patient or a line given a second time, with
    `value`, before (first) or after the key's own value: json.loads keeps the last one."""
    places: list[dict[str, Any]] = [obj, obj["patient"], *obj["lines"]]
    place = places[where % len(places)]
    key = list(place)[where % len(place)]
    marker = "__twice__"
    if first:
        own = list(place.items())
        place.clear()
        place[marker] = None
        place.update(own)
    else:
        place[marker] = None
    text = json.dumps(obj).replace(json.dumps({marker: None})[1:-1], json.dumps({key: value})[1:-1], 1)
    return text.encode("utf-8")


@BUDGET
@given(claims(broken=False), st.one_of(JSON_VALUES, ODD_VALUES), st.integers(0, 30), st.booleans())
def test_a_key_given_twice_is_read_as_json_loads_reads_it(
    obj: dict[str, Any], value: Any, where: int, first: bool
) -> None:
    try:
        raw = _twice(obj, value, where, first)
    except (UnicodeEncodeError, ValueError):
        return
    _agree(raw)


@pytest.mark.parametrize(
    "raw",
    [
        # a key spelled with an escape, and an escaped slash in a value
        b'{"\\u0069d": "C", "patient": {"id": "P"}, "lines": [{"line": 1, "service_date": "2024-01-02",'
        b' "code": "96372", "pos": "1\\/1", "rendering_npi": "1"}]}',
        # whitespace around the document and a carriage return
        b' {"id": "C", "patient": {"id": "P"}, "lines": [{"line": 1, "service_date": "2024-01-02",'
        b' "code": "96372", "pos": "11", "rendering_npi": "1"}]} \r\n',
        # null for every optional key
        b'{"$schema": null, "id": "C", "patient": {"id": "P", "birth_date": null, "sex": null}, "lines": [{"line": 1,'
        b' "service_date": "2024-01-02", "code": "96372", "pos": "11", "rendering_npi": "1", "modifiers": null,'
        b' "units": null, "rendering_credential": null, "diagnoses": null, "drug": null, "documentation": null}],'
        b' "history": null}',
        # empty arrays, a drug and a record with nulls inside, a history line
        b'{"$schema": "x", "id": "C", "patient": {"id": "P"}, "lines": [{"line": 2, "service_date": "2024-01-02",'
        b' "code": "j3420", "pos": "11", "rendering_npi": "1", "modifiers": [], "diagnoses": [],'
        b' "drug": {"ndc": null}, "documentation": {"administered_by": {"name": null}, "consent": false}}],'
        b' "history": [{"claim_id": " H ", "line": 2, "service_date": "2023-12-31", "code": "99213",'
        b' "pos": "11", "rendering_npi": "1", "units": 2}]}',
    ],
)
def test_hand_picked_texts_are_read_by_the_msgspec_path_as_the_reader_reads_them(raw: bytes) -> None:
    assert _agree(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "C", "patient": {"id": "P"}, "lines": []}',  # no line
        b'{"id": "C", "patient": {"id": "P"}, "lines": [{"line": 1.0, "service_date": "2024-01-02",'
        b' "code": "96372", "pos": "11", "rendering_npi": "1"}]}',  # an integral float: the reader's 1
        b'{"id": "C", "patient": {"id": "P"}, "lines": [{"line": 1, "service_date": "2024-01-02",'
        b' "code": "96372", "pos": "11", "rendering_npi": "1", "modifiers": ["a", "b", "c", "d", "e"]}]}',
        b'{"id": "C", "patient": {"id": "P"}, "lines": [{"line": 1, "service_date": "2024-01-02",'
        b' "code": "96372", "pos": "11", "rendering_npi": "1", "modifer": ["25"]}]}',  # unknown key
        b'{"id": "C", "patient": {"id": "P"}, "lines": [{"line": 1, "service_date": "2024-01-02",'
        b' "code": "96372", "pos": "11", "rendering_npi": "1", "units": true}]}',
        b'{"id": "C", "patient": {"id": "P"}, "lines": [{"line": 1, "service_date": "2024-01-02", "line": "1",'
        b' "code": "96372", "pos": "11", "rendering_npi": "1"}]}',  # the last of a key given twice is wrong
    ],
)
def test_what_msgspec_refuses_goes_to_the_next_reader(raw: bytes) -> None:
    assert _msgspec_path(raw) is REFUSED
    _agree(raw)


@pytest.mark.parametrize("key", ["x", "history", "$schema"])
def test_deep_nesting_is_refused_without_a_recursion_error(key: str) -> None:
    """json.loads words it (nested too deeply); msgspec refuses it at the first wrong value."""
    deep = "[" * 100_000 + "]" * 100_000
    raw = (
        '{"id": "C", "patient": {"id": "P"}, "lines": [{"line": 1, "service_date": "2024-01-02",'
        f' "code": "96372", "pos": "11", "rendering_npi": "1"}}], {json.dumps(key)}: {deep}}}'
    ).encode()
    assert _msgspec_path(raw) is REFUSED
    assert read_fast(raw) is None
    with pytest.raises(ClaimError):
        parse_claim_text(raw.decode())


@pytest.mark.parametrize(
    "change",
    [
        {"code": "  "},
        {"service_date": "2024-02-30"},
        {"service_date": "2024-2-3"},
        {"modifiers": [" "]},
        {"diagnoses": ["Z23", "\u00a0"]},
        {"pos": "\t"},
    ],
)
def test_what_only_python_checks_is_declined(change: dict[str, Any]) -> None:
    claim = json.loads((ROOT / "examples" / "batch.jsonl").read_text(encoding="utf-8").splitlines()[0])
    claim["lines"][0].update(change)
    raw = json.dumps(claim).encode("utf-8")
    assert _msgspec_path(raw) is None
    assert not _agree(raw)


def test_duplicate_line_numbers_are_declined() -> None:
    claim = json.loads((ROOT / "examples" / "batch.jsonl").read_text(encoding="utf-8").splitlines()[0])
    claim["lines"].append(dict(claim["lines"][0]))
    claim["history"] = [{**claim["lines"][0], "claim_id": "H"}, {**claim["lines"][0], "claim_id": "H"}]
    for h in claim["history"]:
        h.pop("rendering_credential", None), h.pop("diagnoses", None), h.pop("drug", None), h.pop("documentation", None)
    raw = json.dumps(claim).encode("utf-8")
    assert _msgspec_path(raw) is None
    claim["lines"].pop()
    assert _msgspec_path(json.dumps(claim).encode("utf-8")) is None  # the history lines still repeat
    claim["history"][1]["line"] += 1
    assert _agree(json.dumps(claim).encode("utf-8"))


# -- the path taken on real claims ---------------------------------------------------------------


def _bundled_lines() -> list[bytes]:
    return [raw for raw in (ROOT / "examples" / "batch.jsonl").read_bytes().splitlines() if raw.strip()]


def test_every_valid_bundled_line_takes_the_msgspec_path() -> None:
    taken = 0
    for raw in _bundled_lines():
        accepted = _agree(raw)
        try:
            parse_claim_text(raw.decode("utf-8-sig"))
        except ClaimError:
            continue
        assert accepted, raw
        taken += 1
    assert taken >= 25


def test_generated_claims_take_the_msgspec_path_and_read_the_same() -> None:
    from benchmarks.corpus import generate, strip_meta
    from benchmarks.tables import shared_tables

    corpus = generate(shared_tables(), 300, seed=13)
    for obj in corpus:
        raw = json.dumps(strip_meta(obj)).encode("utf-8")
        assert _agree(raw), raw


def test_read_fast_reads_ordinary_claims_without_orjson_or_the_dict_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled claims read as before with the second path disabled: the msgspec path read them."""
    expected = [read_fast(raw) for raw in _bundled_lines()]

    def no(*_args: Any) -> Any:
        raise AssertionError("the orjson path was taken")

    monkeypatch.setattr(engine.claims, "_fast_claim", no)
    monkeypatch.setattr(engine.claims.orjson, "loads", no)
    valid = [(raw, claim) for raw, claim in zip(_bundled_lines(), expected, strict=True) if claim is not None]
    assert len(valid) >= 25
    for raw, claim in valid:
        assert read_fast(raw) == claim


def test_the_structs_follow_the_claim_model() -> None:
    """Every key of the model, and no other, is a key of the decoded Struct at its place, required
    as the model requires it; an unknown key is refused."""
    from engine.claims import CLAIM_FIELDS

    def struct_in(kind: Any) -> msgspec.inspect.StructType:
        while not isinstance(kind, msgspec.inspect.StructType):
            if isinstance(kind, msgspec.inspect.UnionType):
                (kind,) = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
            else:
                kind = kind.item_type  # a list of objects
        return kind

    def check(info: msgspec.inspect.StructType, model: Any) -> None:
        assert info.forbid_unknown_fields
        fields = {f.encode_name: f for f in info.fields}
        assert list(fields) == list(model)
        for key, spec in model.items():
            assert fields[key].required == spec.required, key
            if spec.fields is not None:
                check(struct_in(fields[key].type), spec.fields)

    check(struct_in(msgspec.inspect.type_info(_STRUCT_DECODER.type)), CLAIM_FIELDS)


# -- claim_to_facts, by its definition -----------------------------------------------------------


def _defined_facts(claim: Claim) -> dict[str, list[tuple[Any, ...]]]:
    """Every relation of kb/claim.dl as the set of rows the claim gives, sorted: what
    claim_to_facts must give, whatever shortcuts it takes for the usual claim."""
    from engine.claims import CLAIM_RELATIONS, _doc_facts

    rows: dict[str, set[tuple[Any, ...]]] = {rel: set() for rel in CLAIM_RELATIONS}
    rows["claim"].add((claim.id, claim.patient.id))
    for ln in claim.lines:
        n = ln.line
        rows["line"].add((n, ln.code, ln.service_date, ln.pos, ln.rendering_npi, ln.units))
        rows["line_modifier"] |= {(n, m) for m in ln.modifiers}
        rows["line_diagnosis"] |= {(n, d) for d in ln.diagnoses}
        if ln.rendering_credential is not None:
            rows["line_credential"].add((n, ln.rendering_credential))
        if ln.drug is not None:
            rows["line_drug"].add((n, ln.drug.ndc, ln.drug.name, ln.drug.dose))
        if ln.documentation is not None:
            rows["line_documented"].add((n,))
            rows["line_doc"] |= set(_doc_facts(n, ln.documentation))
    for h in claim.history:
        rows["history"].add((h.claim_id, h.line, h.code, h.service_date, h.pos, h.rendering_npi, h.units))
        rows["history_modifier"] |= {(h.claim_id, h.line, m) for m in h.modifiers}
    return {rel: sorted(found) for rel, found in rows.items()}


FEW_CODES = st.lists(st.sampled_from(["Z23", "D51.0", "59"]), min_size=1, max_size=3)


def _recoded(obj: dict[str, Any], codes: list[list[str]], reverse: bool) -> dict[str, Any]:
    """obj with its lines' diagnoses and modifiers drawn from a few codes (repeats and reversed
    pairs included), its lines in reverse order or not."""
    for i, line in enumerate(obj["lines"]):
        line["diagnoses"] = codes[i % len(codes)] if codes else []
        line["modifiers"] = codes[(i + 1) % len(codes)][:4] if codes else []
    if reverse:
        obj["lines"].reverse()
    return obj


@BUDGET
@given(st.builds(_recoded, claims(broken=False), st.lists(FEW_CODES, min_size=1, max_size=4), st.booleans()))
def test_claim_to_facts_gives_each_relations_rows_once_in_order(obj: dict[str, Any]) -> None:
    from engine.claims import parse_claim

    claim = parse_claim(obj)
    facts = claim_to_facts(claim)
    assert facts == _defined_facts(claim)
    assert list(facts) == list(_defined_facts(claim))  # CLAIM_RELATIONS order


@pytest.mark.parametrize("reverse", [False, True])
def test_two_codes_of_a_line_give_their_rows_in_order(reverse: bool) -> None:
    claim = json.loads((ROOT / "examples" / "batch.jsonl").read_text(encoding="utf-8").splitlines()[0])
    claim["lines"] = [
        {**claim["lines"][0], "line": n, "diagnoses": d}
        for n, d in enumerate([["Z23", "D51.0"], ["D51.0", "Z23"], ["Z23", "Z23"]], 1)
    ]
    if reverse:
        claim["lines"].reverse()
    from engine.claims import parse_claim

    facts = claim_to_facts(parse_claim(claim))
    assert facts["line_diagnosis"] == [(1, "D51.0"), (1, "Z23"), (2, "D51.0"), (2, "Z23"), (3, "Z23")]
