"""Claim JSON -> Claim -> facts, and the errors a submitter sees for bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.claims import (
    ClaimError,
    ClaimFileError,
    Problem,
    Row,
    claim_to_facts,
    fact_origin,
    field_path,
    load_claims,
    parse_claim,
    parse_claim_text,
)

B12_CLAIM: dict[str, Any] = {
    "id": "CLM-1001",
    "patient": {"id": "PAT-1", "birth_date": "1971-02-03", "sex": "F"},
    "lines": [
        {
            "line": 1, "service_date": "2026-03-02", "code": "96372", "modifiers": ["59"],
            "units": 1, "pos": "11", "rendering_npi": "1234567893",
            "rendering_credential": "MD", "diagnoses": ["D51.0"],
            "drug": {"ndc": "00409-4911-01", "name": "cyanocobalamin", "dose": "1000 mcg"},
            "documentation": {
                "drug_name": "cyanocobalamin", "dose": "1000 mcg", "route": "IM",
                "site": "left deltoid", "time": "10:15",
                "administered_by": {"name": "Ann Lee", "credential": "RN"},
                "diagnosis_linked": True, "consent": True, "supervision": "direct",
                "monitoring": None,
            },
        },
        {
            "line": 2, "service_date": "2026-03-02", "code": " j3420 ", "pos": "11",
            "rendering_npi": "1234567893", "diagnoses": ["D51.0"],
            "drug": {"ndc": "00409-4911-01", "name": "cyanocobalamin"},
            "documentation": {"consent": False, "site": ""},
        },
        {
            "line": 3, "service_date": "2026-03-02", "code": "99213", "modifiers": ["25"],
            "pos": "11", "rendering_npi": "1234567893", "diagnoses": ["D51.0", "R53.83"],
        },
    ],
    "history": [
        {"claim_id": "CLM-0999", "line": 1, "service_date": "2026-02-20", "code": "96372",
         "modifiers": ["xs"], "units": 1, "pos": "22", "rendering_npi": "1234567893"},
    ],
}

NPI = "1234567893"
DELETE = object()  # a claim_with() value that removes the field


def claim_with(**changes: Any) -> dict[str, Any]:
    """A deep copy of the B12 claim; `lines__0__units=...` style keys reach nested fields."""
    obj = copy.deepcopy(B12_CLAIM)
    for key, value in changes.items():
        *path, last = [int(p) if p.isdigit() else p for p in key.split("__")]
        target: Any = obj
        for part in path:
            target = target[part]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return obj



def problems_of(obj: Any) -> list[Problem]:
    with pytest.raises(ClaimError) as info:
        parse_claim(obj)
    return info.value.problems


def fields_of(obj: Any) -> list[str]:
    return [p.field for p in problems_of(obj)]


def test_valid_claim_gives_exactly_the_claim_facts() -> None:
    claim = parse_claim(B12_CLAIM)
    assert claim_to_facts(claim) == {
        "claim": [("CLM-1001", "PAT-1")],
        "line": [
            (1, "96372", "2026-03-02", "11", NPI, 1),
            (2, "J3420", "2026-03-02", "11", NPI, 1),
            (3, "99213", "2026-03-02", "11", NPI, 1),
        ],
        "line_modifier": [(1, "59"), (3, "25")],
        "line_diagnosis": [(1, "D51.0"), (2, "D51.0"), (3, "D51.0"), (3, "R53.83")],
        "line_credential": [(1, "MD")],
        "line_drug": [
            (1, "00409-4911-01", "cyanocobalamin", "1000 mcg"),
            (2, "00409-4911-01", "cyanocobalamin", ""),
        ],
        "line_documented": [(1,), (2,)],
        "line_doc": [
            (1, "administered_by_credential", "RN"),
            (1, "administered_by_name", "Ann Lee"),
            (1, "consent", "true"),
            (1, "diagnosis_linked", "true"),
            (1, "dose", "1000 mcg"),
            (1, "drug_name", "cyanocobalamin"),
            (1, "route", "IM"),
            (1, "site", "left deltoid"),
            (1, "supervision", "direct"),
            (1, "time", "10:15"),
            (2, "consent", "false"),  # a record that says "no" is a fact, not silence
        ],
        "history": [("CLM-0999", 1, "96372", "2026-02-20", "22", NPI, 1)],
        "history_modifier": [("CLM-0999", 1, "XS")],
    }


def test_typed_claim_keeps_defaults_and_documentation_flags() -> None:
    claim = parse_claim(B12_CLAIM)
    second = claim.lines[1]
    assert (second.modifiers, second.units, second.rendering_credential) == ((), 1, None)
    assert second.documentation is not None
    assert (second.documentation.consent, second.documentation.site) == (False, None)
    assert claim.lines[2].documentation is None and claim.lines[2].drug is None
    assert claim.patient.birth_date == "1971-02-03"


def test_facts_match_the_relations_declared_in_claim_dl() -> None:
    declared = Path(__file__).resolve().parents[1] / "kb" / "claim.dl"
    claim_relations = {
        line.split()[1] for line in declared.read_text().splitlines()
        if line.startswith(".claim ")
    }
    assert set(claim_to_facts(parse_claim(B12_CLAIM))) == claim_relations


def test_facts_are_deterministic_whatever_the_input_order() -> None:
    reordered = claim_with(lines=list(reversed(B12_CLAIM["lines"])))
    assert claim_to_facts(parse_claim(reordered)) == claim_to_facts(parse_claim(B12_CLAIM))


@pytest.mark.parametrize("reverse", [False, True])
def test_a_lines_repeated_and_unordered_codes_give_sorted_distinct_facts(reverse: bool) -> None:
    """Lines in ascending order take a path that sorts only each line's own codes: a line that
    repeats a modifier and a diagnosis, out of order, still gives each row once, in order."""
    lines = [dict(line) for line in B12_CLAIM["lines"]]
    lines[0]["modifiers"] = ["59", "25", "59"]
    lines[0]["diagnoses"] = ["R53.83", "D51.0", "D51.0"]
    facts = claim_to_facts(parse_claim(claim_with(lines=lines[::-1] if reverse else lines)))
    assert facts["line_modifier"] == [(1, "25"), (1, "59"), (3, "25")]
    assert facts["line_diagnosis"] == [(1, "D51.0"), (1, "R53.83"), (2, "D51.0"), (3, "D51.0"), (3, "R53.83")]
    for rows in facts.values():
        assert rows == sorted(set(rows))


@pytest.mark.parametrize(
    ("relation", "row", "path"),
    [
        ("claim", ("CLM-1001", "PAT-1"), "id"),
        ("line", (2, "J3420", "2026-03-02", "11", NPI, 1), "lines[1]"),
        ("line_modifier", (1, "59"), "lines[0].modifiers[0]"),
        ("line_diagnosis", (3, "R53.83"), "lines[2].diagnoses[1]"),
        ("line_credential", (1, "MD"), "lines[0].rendering_credential"),
        ("line_drug", (2, "00409-4911-01", "cyanocobalamin", ""), "lines[1].drug"),
        ("line_documented", (2,), "lines[1].documentation"),
        ("line_doc", (1, "site", "left deltoid"), "lines[0].documentation.site"),
        ("line_doc", (1, "administered_by_name", "Ann Lee"),
         "lines[0].documentation.administered_by.name"),
        ("history", ("CLM-0999", 1, "96372", "2026-02-20", "22", NPI, 1), "history[0]"),
        ("history_modifier", ("CLM-0999", 1, "XS"), "history[0].modifiers[0]"),
        ("line_modifier", (1, "25"), None),
        ("deny", (1, "inj.facility_em"), None),
    ],
)
def test_fact_origin_points_back_at_the_json(relation: str, row: Row, path: str | None) -> None:
    assert fact_origin(parse_claim(B12_CLAIM), relation, row) == path


def test_field_path_names_a_field_of_a_claim_line() -> None:
    claim = parse_claim(B12_CLAIM)
    assert field_path(claim, 3, "units") == "lines[2].units"
    assert field_path(claim, 9, "units") is None


def test_unknown_or_malformed_codes_are_left_to_the_kb() -> None:
    obj = claim_with(lines__0__code="ZZZZZ", lines__0__pos="99", lines__0__modifiers=["Q?"])
    facts = claim_to_facts(parse_claim(obj))
    assert facts["line"][0][1:4] == ("ZZZZZ", "2026-03-02", "99")
    assert facts["line_modifier"][0] == (1, "Q?")


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"id": DELETE}, "id", "required field is missing"),
        ({"id": "  "}, "id", "must not be empty"),
        ({"patient__id": None}, "patient.id", "required field is null"),
        ({"lines__1__code": DELETE}, "lines[1].code", "line 2: required field is missing"),
        ({"lines__0__units": "two"}, "lines[0].units", 'expected an integer, got string "two"'),
        ({"lines__0__units": 0}, "lines[0].units", "must be between 1 and 9999, got 0"),
        ({"lines__0__units": True}, "lines[0].units", "got boolean true"),
        ({"lines__0__units": 10000}, "lines[0].units", "between 1 and 9999"),
        ({"lines__0__service_date": "2026-02-30"}, "lines[0].service_date",
         'line 1: not a real date: "2026-02-30"'),
        ({"lines__0__service_date": "03/02/2026"}, "lines[0].service_date", "YYYY-MM-DD"),
        ({"patient__birth_date": "1971-13-01"}, "patient.birth_date", "not a real date"),
        ({"lines__2__pos": 11}, "lines[2].pos",
         'line 3: expected a string, got number 11 (quote it: "11")'),
        ({"lines__1__line": 1}, "lines[1].line",
         "line 1: duplicate line number (first at lines[0].line)"),
        ({"lines__0__line": "1"}, "lines[0].line", 'expected an integer, got string "1"'),
        ({"lines__0__line": 0}, "lines[0].line", "must be between 1 and 2147483647, got 0"),
        ({"lines__0__modifiers": ["59", "25", "XS", "LT", "RT"]}, "lines[0].modifiers",
         "at most 4 modifiers per line, got 5"),
        ({"lines__0__modifiers": [59]}, "lines[0].modifiers[0]", "expected a string"),
        ({"lines__0__modifiers": "59"}, "lines[0].modifiers", "expected an array of strings"),
        ({"lines": {"line": 1}}, "lines", "expected an array, got object"),
        ({"lines": []}, "lines", "must have at least one entry"),
        ({"lines__0__documentation__consent": "yes"}, "lines[0].documentation.consent",
         "expected true or false"),
        ({"lines__0__drug__dose": 1000}, "lines[0].drug.dose", "expected a string"),
        ({"history__0__rendering_npi": DELETE}, "history[0].rendering_npi",
         "CLM-0999 line 1: required field is missing"),
        ({"history__0__units": "1"}, "history[0].units", "expected an integer"),
    ],
)
def test_bad_input_names_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    problems = problems_of(claim_with(**changes))
    assert [p.field for p in problems] == [field]
    assert words in problems[0].message


def test_every_problem_in_a_claim_is_reported() -> None:
    obj = claim_with(
        patient__birth_date="1971-02-30", lines__0__units="two", lines__1__code=DELETE,
        lines__2__pos=22, lines__2__line=1,
    )
    assert fields_of(obj) == [
        "patient.birth_date", "lines[0].units", "lines[1].code", "lines[2].pos", "lines[2].line",
    ]


def test_error_text_has_one_line_per_problem_with_where_it_came_from() -> None:
    with pytest.raises(ClaimError) as info:
        parse_claim(claim_with(lines__0__units=0, lines__1__code=""), source="in.jsonl", record=7)
    assert str(info.value).splitlines() == [
        "in.jsonl:7: claim CLM-1001: lines[0].units: line 1: must be between 1 and 9999, got 0",
        "in.jsonl:7: claim CLM-1001: lines[1].code: line 2: must not be empty",
    ]
    assert info.value.claim_id == "CLM-1001"


def test_malformed_json_reports_line_and_column() -> None:
    text = '{"id": "CLM-1001",\n "patient": {"id": "PAT-1"},\n "lines": [}'
    with pytest.raises(ClaimError) as info:
        parse_claim_text(text, source="claims.jsonl", record=3)
    (problem,) = info.value.problems
    assert problem.field == "$"
    assert "line 3, column 12" in problem.message
    assert str(info.value).startswith("claims.jsonl:3: $: malformed JSON")


def test_a_claim_must_be_an_object() -> None:
    assert [(p.field, p.message) for p in problems_of(["CLM-1001"])] == [
        ("$", "expected a claim object, got array"),
    ]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"lines__0__modifer": ["25"]}, "lines[0].modifer",
         'line 1: unknown field "modifer" (did you mean "modifiers"?)'),
        ({"lines__1__documentation": {"concent": True}}, "lines[1].documentation.concent",
         'line 2: unknown field "concent" (did you mean "consent"?)'),
        ({"patient__dob": "1971-01-01"}, "patient.dob",
         'unknown field "dob"; known fields: id, birth_date, sex'),
        ({"history__0__claimid": "CLM-0999"}, "history[0].claimid",
         'CLM-0999 line 1: unknown field "claimid" (did you mean "claim_id"?)'),
        ({"payer": "MEDICARE"}, "payer",
         'unknown field "payer"; known fields: $schema, id, patient, lines, history'),
    ],
)
def test_unknown_fields_are_errors_with_a_suggestion(changes: dict[str, Any], field: str, message: str) -> None:
    """A typo silently dropped would deny a line for a modifier the sender believes they sent."""
    assert [(p.field, p.message) for p in problems_of(claim_with(**changes))] == [(field, message)]


def test_numbers_are_json_numbers_and_dates_are_exact() -> None:
    """2.0 is the JSON integer 2 (as JSON Schema says); a padded date is not YYYY-MM-DD."""
    assert parse_claim(claim_with(lines__0__units=2.0)).lines[0].units == 2
    assert fields_of(claim_with(lines__0__units=1.5)) == ["lines[0].units"]
    assert fields_of(claim_with(lines__0__service_date=" 2026-03-02")) == ["lines[0].service_date"]
    assert fields_of(claim_with(patient__birth_date="")) == ["patient.birth_date"]


def test_load_claims_reads_one_claim_or_an_array(tmp_path: Path) -> None:
    single = tmp_path / "one.json"
    single.write_text(json.dumps(B12_CLAIM))
    many = tmp_path / "many.json"
    many.write_text(json.dumps([B12_CLAIM, claim_with(id="CLM-1002")]))
    assert [c.id for c in load_claims(single)] == ["CLM-1001"]
    assert [c.id for c in load_claims(many)] == ["CLM-1001", "CLM-1002"]


def test_load_claims_names_the_file_and_every_bad_claim(tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    bad = [B12_CLAIM, claim_with(id="CLM-1002", lines__0__pos=11), claim_with(id=DELETE)]
    path.write_text(json.dumps(bad))
    with pytest.raises(ClaimFileError) as info:
        load_claims(path)
    assert str(info.value).splitlines() == [
        f"{path}[1]: claim CLM-1002: lines[0].pos: line 1: expected a string, got number 11"
        ' (quote it: "11")',
        f"{path}[2]: id: required field is missing",
    ]


def test_load_claims_reports_malformed_json_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    path.write_text('[{"id": "CLM-1001"}')
    with pytest.raises(ClaimFileError) as info:
        load_claims(path)
    assert str(info.value).startswith(f"{path}: $: malformed JSON")


def test_the_fast_readers_objects_are_the_dataclasses_themselves() -> None:
    """read_fast makes its Lines, Claims ... through claims.frozen_maker (a twin class's object given
    the dataclass's class): each must be what the dataclass's own constructor makes, equal,
    hashed alike, frozen, pickled and copied as one."""
    import dataclasses
    import pickle

    from engine.claims import Claim, Drug, Line, read_fast

    text = json.dumps(B12_CLAIM | {"lines": [B12_CLAIM["lines"][0] | {"drug": {"ndc": "0", "name": "b12"}}]})
    fast = read_fast(text.encode())
    slow = parse_claim(json.loads(text))
    assert fast is not None and type(fast) is Claim and fast == slow and hash(fast) == hash(slow)
    line = fast.lines[0]
    assert type(line) is Line and type(line.drug) is Drug
    assert Line(*(getattr(line, f.name) for f in dataclasses.fields(Line))) == line
    with pytest.raises(dataclasses.FrozenInstanceError):
        line.units = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(fast)) == fast and copy.deepcopy(fast) == fast
    assert dataclasses.replace(line, units=2) == dataclasses.replace(slow.lines[0], units=2)


def test_the_fast_reader_gives_one_object_for_a_repeated_text() -> None:
    """read_fast keeps the codes, credentials, places of service, NPIs and dates it has read: a
    line of another claim (or another line) with the same text holds the same object, read as
    read_claim reads it (trimmed, in upper case for codes and credentials). A text that is blank
    once trimmed is never kept: such a line is still declined (and read_claim names the field)."""
    from engine.claims import read_fast

    def claim(n: int, code: str, credential: str, pos: str) -> bytes:
        line = B12_CLAIM["lines"][1] | {"code": code, "rendering_credential": credential, "pos": pos}
        return json.dumps(B12_CLAIM | {"id": f"CLM-{n}", "lines": [line]}).encode()

    first, second = read_fast(claim(1, " j3420 ", "md ", " 11")), read_fast(claim(2, " j3420 ", "md ", " 11"))
    assert first is not None and second is not None
    one, two = first.lines[0], second.lines[0]
    assert (one.code, one.rendering_credential, one.pos) == ("J3420", "MD", "11")
    for field in ("code", "rendering_credential", "pos", "rendering_npi", "service_date"):
        assert getattr(one, field) is getattr(two, field), field
    for blank in ("code", "pos"):
        text = claim(3, "   " if blank == "code" else "J3420", "MD", "   " if blank == "pos" else "11")
        assert read_fast(text) is None and read_fast(text) is None
        with pytest.raises(ClaimError, match=blank):
            parse_claim(json.loads(text))
