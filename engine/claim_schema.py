"""The claim's JSON Schema and its reference page, both generated from the claim model.

`engine.claims.CLAIM_FIELDS` is the one description of the claim JSON: the reader follows it
and rejects keys it does not list, and this module turns the same description into a JSON
Schema (draft 2020-12) and a Markdown page, so the published schema cannot drift from what
`policykb explain` accepts. One rule is beyond JSON Schema and stated in words: line numbers
are unique within a claim (and within each earlier claim in `history`).

    python -m engine.claim_schema            # print the schema
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.claims import CLAIM_FIELDS, Field

SCHEMA_FILE = "claim.schema.json"
PAGE_FILE = "claim-schema.md"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
NON_BLANK = r"\S"
DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
UNIQUE_LINES = "Line numbers are unique within the claim, and within each earlier claim in history."


def _nullable(schema: dict[str, Any], spec: Field) -> dict[str, Any]:
    """An optional key may also be null (read as absent)."""
    if not spec.required:
        schema["type"] = [schema["type"], "null"]
    return schema


def _object(fields: Mapping[str, Field]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: field_schema(spec) for key, spec in fields.items()},
        "required": [key for key, spec in fields.items() if spec.required],
        "additionalProperties": False,
    }


def field_schema(spec: Field) -> dict[str, Any]:
    """The JSON Schema of one field of the model."""
    schema: dict[str, Any]
    if spec.kind == "text":
        schema = {"type": "string"}
        if spec.required:
            schema["pattern"] = NON_BLANK
    elif spec.kind == "date":
        schema = {"type": "string", "format": "date", "pattern": DATE_PATTERN}
    elif spec.kind == "integer":
        schema = {"type": "integer"}
        if spec.low is not None:
            schema["minimum"] = spec.low
        if spec.high is not None:
            schema["maximum"] = spec.high
        if spec.default is not None:
            schema["default"] = spec.default
    elif spec.kind == "flag":
        schema = {"type": "boolean"}
    elif spec.kind == "texts":
        schema = {"type": "array", "items": {"type": "string", "pattern": NON_BLANK}}
        if spec.limit is not None:
            schema["maxItems"] = spec.limit
    else:
        assert spec.fields is not None, spec.kind
        inner = _object(spec.fields)
        if spec.kind == "object":
            schema = inner
        else:
            schema = {"type": "array", "items": inner}
            if spec.required:
                schema["minItems"] = 1
    schema = {"description": spec.about, **_nullable(schema, spec)}
    return schema


def claim_schema() -> dict[str, Any]:
    """The JSON Schema of one claim."""
    return {
        "$schema": DRAFT,
        "title": "PolicyKB claim",
        "description": "One claim for `policykb explain` and `policykb scrub`. " + UNIQUE_LINES,
        **_object(CLAIM_FIELDS),
    }


def schema_text() -> str:
    return json.dumps(claim_schema(), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# The reference page

_KIND_WORDS = {
    "text": "string",
    "date": "date (YYYY-MM-DD)",
    "integer": "integer",
    "flag": "true / false",
    "texts": "array of strings",
    "object": "object",
    "objects": "array of objects",
}


def _kind(spec: Field) -> str:
    words = _KIND_WORDS[spec.kind]
    if spec.kind == "integer":
        if spec.high is not None:
            words += f", {spec.low}–{spec.high}"
        elif spec.low is not None:
            words += f", ≥ {spec.low}"
        if spec.default is not None:
            words += f", default {spec.default}"
    if spec.kind == "texts" and spec.limit is not None:
        words += f", at most {spec.limit}"
    if spec.case == "upper":
        words += ", upper-cased"
    return words


def _rows(fields: Mapping[str, Field], prefix: str) -> list[str]:
    rows: list[str] = []
    for key, spec in fields.items():
        path = prefix + key
        required = "yes" if spec.required else ""
        about = spec.about.replace("|", "\\|")
        rows.append(f"| `{path}` | {_kind(spec)} | {required} | {about} |")
        if spec.fields is not None:
            rows += _rows(spec.fields, path + ("[]." if spec.kind == "objects" else "."))
    return rows


_PAGE_HEAD = """# Claim format

`policykb explain` reads a claim as JSON (one object, or an array of them); `policykb scrub`
reads one claim per line (JSONL). The fields below are all there is: a field that is not
listed is an input error naming its path, with a suggestion when it looks like a typo
(`lines[0].modifer: unknown field "modifer" (did you mean "modifiers"?)`), so a misspelt
modifier is never silently dropped.

The same description gives the [JSON Schema](claim.schema.json) (draft 2020-12), for editors
and for checking claims before sending them. Validate with format checking on, so dates are
real dates: with Python's `jsonschema`, pass `format_checker=Draft202012Validator.FORMAT_CHECKER`.

Rules the table shows in short:

- Text is trimmed; a required text field must not be blank. Codes, modifiers, diagnoses and
  credentials are compared upper-cased.
- An optional field may be left out or be `null`; both mean "not given".
- Numbers are JSON integers (`2.0` counts as `2`; `"2"` and `true` do not).
- Whether a code, place of service or modifier is valid is a billing question: a well-formed
  claim with an unknown code gets a line denial, not an input error.
- {unique}

| Field | Kind | Required | Meaning |
|---|---|---|---|
"""

_PAGE_EXAMPLE = """
## An example

```json
{example}
```
"""

_EXAMPLE: dict[str, Any] = {
    "id": "CLM-1001",
    "patient": {"id": "PAT-1", "birth_date": "1971-04-12", "sex": "F"},
    "lines": [
        {
            "line": 1,
            "service_date": "2026-03-02",
            "code": "99213",
            "modifiers": ["25"],
            "units": 1,
            "pos": "11",
            "rendering_npi": "1234567893",
            "diagnoses": ["D51.0"],
        },
        {
            "line": 2,
            "service_date": "2026-03-02",
            "code": "96372",
            "units": 1,
            "pos": "11",
            "rendering_npi": "1234567893",
            "diagnoses": ["D51.0"],
            "documentation": {
                "drug_name": "cyanocobalamin",
                "route": "IM",
                "site": "left deltoid",
                "administered_by": {"name": "Ann Lee", "credential": "RN"},
                "supervision": "direct",
                "consent": True,
                "diagnosis_linked": True,
            },
        },
    ],
}


def example_claim() -> dict[str, Any]:
    """The page's example claim (tests check that the reader and the schema accept it)."""
    return json.loads(json.dumps(_EXAMPLE))


def schema_page() -> str:
    head = _PAGE_HEAD.replace("{unique}", UNIQUE_LINES)
    example = _PAGE_EXAMPLE.replace("{example}", json.dumps(_EXAMPLE, indent=2))
    return head + "\n".join(_rows(CLAIM_FIELDS, "")) + "\n" + example


def site_files() -> dict[str, bytes]:
    """The page and the schema, as files of the reference site."""
    return {PAGE_FILE: schema_page().encode(), SCHEMA_FILE: schema_text().encode()}


if __name__ == "__main__":
    print(schema_text(), end="")
