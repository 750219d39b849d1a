"""Claim JSON in, typed claim out, and the claim as the facts `kb/claim.dl` declares.

Input checks here are about the *shape* of the JSON only. Whether a code, place of service or
modifier is valid is a billing question the KB answers with a line denial, so such values are
only required to be non-empty strings. Every problem in a claim is collected before raising, so
one run tells the submitter everything to fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeGuard

Row = tuple[str | int, ...]
"""One fact: str for symbols, int for numbers, in the relation's column order."""
Facts = dict[str, list[Row]]

MAX_MODIFIERS = 4
MAX_UNITS = 9999
_DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MISSING = object()

# Documentation elements that become `line_doc` facts, with the JSON path of each.
_DOC_TEXT_ELEMENTS = {
    "drug_name": "drug_name",
    "dose": "dose",
    "route": "route",
    "site": "site",
    "time": "time",
    "administered_by_name": "administered_by.name",
    "administered_by_credential": "administered_by.credential",
    "supervision": "supervision",
    "monitoring": "monitoring",
}
_DOC_FLAG_ELEMENTS = ("diagnosis_linked", "consent")


@dataclass(frozen=True, slots=True)
class Patient:
    id: str
    birth_date: str | None
    sex: str | None


@dataclass(frozen=True, slots=True)
class Drug:
    ndc: str
    name: str
    dose: str


@dataclass(frozen=True, slots=True)
class Documentation:
    """What the reviewed medical record shows for one line; None means the record is silent."""

    drug_name: str | None
    dose: str | None
    route: str | None
    site: str | None
    time: str | None
    administered_by_name: str | None
    administered_by_credential: str | None
    diagnosis_linked: bool | None
    consent: bool | None
    supervision: str | None
    monitoring: str | None


@dataclass(frozen=True, slots=True)
class Line:
    line: int
    service_date: str
    code: str
    modifiers: tuple[str, ...]
    units: int
    pos: str
    rendering_npi: str
    rendering_credential: str | None
    diagnoses: tuple[str, ...]
    drug: Drug | None
    documentation: Documentation | None


@dataclass(frozen=True, slots=True)
class HistoryLine:
    claim_id: str
    line: int
    service_date: str
    code: str
    modifiers: tuple[str, ...]
    units: int
    pos: str
    rendering_npi: str


@dataclass(frozen=True, slots=True)
class Claim:
    id: str
    patient: Patient
    lines: tuple[Line, ...]
    history: tuple[HistoryLine, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a claim; `field` is the JSON path, e.g. `lines[2].service_date`."""

    field: str
    message: str


class ClaimError(ValueError):
    """A claim that cannot be adjudicated, with every problem found in it."""

    def __init__(
        self,
        claim_id: str | None,
        problems: list[Problem],
        source: str | None = None,
        record: int | None = None,
    ) -> None:
        self.claim_id = claim_id
        self.problems = problems
        self.source = source
        self.record = record
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.source, self.record) if p is not None)
        head = [where] if where else []
        if self.claim_id is not None:
            head.append(f"claim {self.claim_id}")
        return "\n".join(": ".join([*head, p.field, p.message]) for p in self.problems)


class ClaimFileError(ValueError):
    """A claims file with invalid content; holds one ClaimError per bad claim, in file order."""

    def __init__(self, path: str, errors: list[ClaimError]) -> None:
        self.path = path
        self.errors = errors
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


# ---------------------------------------------------------------------------------------------
# Reading JSON values while collecting problems


def _json_type(value: Any) -> str:
    """Name a Python value by its JSON type, the vocabulary the submitter knows."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _is_int(value: Any) -> TypeGuard[int]:
    """JSON integers only: `true` and `1.0` are not line numbers or units."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(slots=True)
class _Scope:
    """One JSON object being read: knows its path and the label problems in it carry."""

    obj: Mapping[str, Any]
    path: str
    problems: list[Problem]
    label: str = ""

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, self.label + message))

    def get(self, key: str, *, required: bool) -> Any:
        """The value at key; _MISSING when absent (null counts as absent for optional keys)."""
        value = self.obj.get(key, _MISSING)
        if value is None and not required:
            return _MISSING
        if required and (value is _MISSING or value is None):
            self.add(self.at(key), "required field is " + ("null" if value is None else "missing"))
            return _MISSING
        return value

    def wrong_type(self, path: str, expected: str, value: Any) -> None:
        """Show scalars as given; a number where text belongs is usually a code left unquoted."""
        got = _json_type(value)
        if not isinstance(value, (list, dict)):
            got += " " + _show(value)
        hint = f' (quote it: "{value}")' if expected == "a string" and _is_int(value) else ""
        self.add(path, f"expected {expected}, got {got}{hint}")

    def text(self, key: str, *, required: bool, upper: bool = False) -> str | None:
        """A trimmed string; required ones must be non-empty, empty optional ones are None."""
        value = self.get(key, required=required)
        if value is _MISSING:
            return None
        return self._text_value(self.at(key), value, required=required, upper=upper)

    def _text_value(self, path: str, value: Any, *, required: bool, upper: bool) -> str | None:
        if not isinstance(value, str):
            self.wrong_type(path, "a string", value)
            return None
        value = value.strip().upper() if upper else value.strip()
        if not value and required:
            self.add(path, "must not be empty")
        return value or None

    def flag(self, key: str) -> bool | None:
        value = self.get(key, required=False)
        if value is _MISSING:
            return None
        if not isinstance(value, bool):
            self.wrong_type(self.at(key), "true or false", value)
            return None
        return value

    def integer(self, key: str, *, default: int | None, low: int, high: int | None) -> int | None:
        value = self.get(key, required=default is None)
        if value is _MISSING:
            return default
        if not _is_int(value):
            self.wrong_type(self.at(key), "an integer", value)
            return None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.add(self.at(key), f"must be {bounds}, got {value}")
            return None
        return value

    def date(self, key: str, *, required: bool) -> str | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        if not _DATE_SHAPE.fullmatch(value):
            self.add(self.at(key), f"expected a date as YYYY-MM-DD, got {_show(value)}")
            return None
        try:
            date.fromisoformat(value)
        except ValueError:
            self.add(self.at(key), f"not a real date: {_show(value)}")
            return None
        return value

    def texts(self, key: str, *, upper: bool, limit: int | None = None) -> tuple[str, ...]:
        """A list of non-empty strings, absent meaning empty."""
        value = self.get(key, required=False)
        if value is _MISSING:
            return ()
        if not isinstance(value, list):
            self.wrong_type(self.at(key), "an array of strings", value)
            return ()
        if limit is not None and len(value) > limit:
            self.add(self.at(key), f"at most {limit} {key} per line, got {len(value)}")
        items = (self._text_value(self.at(key) + f"[{i}]", v, required=True, upper=upper)
                 for i, v in enumerate(value))
        return tuple(item for item in items if item is not None)

    def child(self, key: str, *, required: bool) -> _Scope | None:
        value = self.get(key, required=required)
        if value is _MISSING:
            return None
        return self.object_at(self.at(key), value)

    def items(self, key: str, *, required: bool) -> Iterator[_Scope]:
        """The objects of an array field, each as its own scope."""
        value = self.get(key, required=required)
        if value is _MISSING:
            return
        if not isinstance(value, list):
            self.wrong_type(self.at(key), "an array", value)
            return
        if required and not value:
            self.add(self.at(key), "must have at least one entry")
        for i, item in enumerate(value):
            scope = self.object_at(self.at(key) + f"[{i}]", item)
            if scope is not None:
                yield scope

    def object_at(self, path: str, value: Any) -> _Scope | None:
        if not isinstance(value, dict):
            self.wrong_type(path, "an object", value)
            return None
        return _Scope(value, path, self.problems, self.label)


# ---------------------------------------------------------------------------------------------
# The claim's parts


def _read_patient(scope: _Scope | None) -> Patient:
    if scope is None:
        return Patient("", None, None)
    return Patient(
        id=scope.text("id", required=True) or "",
        birth_date=scope.date("birth_date", required=False),
        sex=scope.text("sex", required=False),
    )


def _read_drug(scope: _Scope | None) -> Drug | None:
    if scope is None:
        return None
    return Drug(*(scope.text(key, required=False) or "" for key in ("ndc", "name", "dose")))


def _read_documentation(scope: _Scope | None) -> Documentation | None:
    if scope is None:
        return None
    by = scope.child("administered_by", required=False)
    return Documentation(
        drug_name=scope.text("drug_name", required=False),
        dose=scope.text("dose", required=False),
        route=scope.text("route", required=False),
        site=scope.text("site", required=False),
        time=scope.text("time", required=False),
        administered_by_name=by.text("name", required=False) if by else None,
        administered_by_credential=by.text("credential", required=False, upper=True) if by else None,
        diagnosis_linked=scope.flag("diagnosis_linked"),
        consent=scope.flag("consent"),
        supervision=_lower(scope.text("supervision", required=False)),
        monitoring=scope.text("monitoring", required=False),
    )


def _lower(text: str | None) -> str | None:
    """Supervision levels are compared as words ("direct", "personal"): case does not matter."""
    return text.lower() if text is not None else None


def _service_fields(scope: _Scope) -> dict[str, Any]:
    """The fields a claim line and a history line share, read in JSON order."""
    return {
        "service_date": scope.date("service_date", required=True) or "",
        "code": scope.text("code", required=True, upper=True) or "",
        "modifiers": scope.texts("modifiers", upper=True, limit=MAX_MODIFIERS),
        "units": scope.integer("units", default=1, low=1, high=MAX_UNITS) or 0,
        "pos": scope.text("pos", required=True) or "",
        "rendering_npi": scope.text("rendering_npi", required=True) or "",
    }


def _read_line_number(scope: _Scope, prefix: str) -> int:
    """Read `line` first so every later problem on the line can say which claim line it is."""
    number = scope.integer("line", default=None, low=1, high=None)
    if number is not None:
        scope.label = f"{prefix}line {number}: "
    return number or 0


def _read_line(scope: _Scope) -> Line:
    number = _read_line_number(scope, "")
    return Line(
        line=number,
        **_service_fields(scope),
        rendering_credential=scope.text("rendering_credential", required=False, upper=True),
        diagnoses=scope.texts("diagnoses", upper=True),
        drug=_read_drug(scope.child("drug", required=False)),
        documentation=_read_documentation(scope.child("documentation", required=False)),
    )


def _read_history_line(scope: _Scope) -> HistoryLine:
    claim_id = scope.text("claim_id", required=True) or ""
    number = _read_line_number(scope, f"{claim_id} " if claim_id else "")
    return HistoryLine(claim_id=claim_id, line=number, **_service_fields(scope))


def _check_unique(keys: list[tuple[Any, str, str]], what: str, problems: list[Problem]) -> None:
    """Report repeated keys (key, path, label): facts are sets, so a repeat would merge silently."""
    first: dict[Any, str] = {}
    for key, path, label in keys:
        if key in first:
            problems.append(Problem(path, f"{label}duplicate {what} (first at {first[key]})"))
        else:
            first[key] = path


def _check_line_numbers(claim: _Scope, lines: list[Line], history: list[HistoryLine]) -> None:
    """Only lines whose number was readable take part; others already have a problem."""
    _check_unique(
        [(ln.line, f"lines[{i}].line", f"line {ln.line}: ")
         for i, ln in enumerate(lines) if ln.line],
        "line number", claim.problems,
    )
    _check_unique(
        [((h.claim_id, h.line), f"history[{i}].line", f"{h.claim_id} line {h.line}: ")
         for i, h in enumerate(history) if h.line],
        "history line (same claim_id and line)", claim.problems,
    )


def _claim_id(obj: Any) -> str | None:
    """The id to name a claim by in errors, when there is a usable one."""
    value = obj.get("id") if isinstance(obj, dict) else None
    return (value.strip() or None) if isinstance(value, str) else None


def parse_claim(obj: Any, *, source: str | None = None, record: int | None = None) -> Claim:
    """Validate decoded claim JSON into a Claim, or raise ClaimError listing every problem."""
    problems: list[Problem] = []
    if not isinstance(obj, dict):
        message = f"expected a claim object, got {_json_type(obj)}"
        raise ClaimError(None, [Problem("$", message)], source, record)
    top = _Scope(obj, "", problems)
    claim_id = top.text("id", required=True) or ""
    patient = _read_patient(top.child("patient", required=True))
    lines = [_read_line(s) for s in top.items("lines", required=True)]
    history = [_read_history_line(s) for s in top.items("history", required=False)]
    _check_line_numbers(top, lines, history)
    if problems:
        raise ClaimError(_claim_id(obj), problems, source, record)
    return Claim(claim_id, patient, tuple(lines), tuple(history))


def _decode(text: str, source: str | None, record: int | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        message = f"malformed JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        raise ClaimError(None, [Problem("$", message)], source, record) from None


def parse_claim_text(text: str, *, source: str | None = None, record: int | None = None) -> Claim:
    """Parse one claim from JSON text; malformed JSON is a ClaimError on field `$`."""
    return parse_claim(_decode(text, source, record), source=source, record=record)


def load_claims(path: str | Path) -> list[Claim]:
    """Load a .json file holding one claim object or an array of them.

    Raises ClaimFileError naming the file (and `[i]`, the claim's index in an array) with
    every bad claim's problems; OSError when the file cannot be read.
    """
    name = str(path)
    try:
        data = _decode(Path(path).read_text(encoding="utf-8-sig"), name, None)
    except ClaimError as e:
        raise ClaimFileError(name, [e]) from None
    if not isinstance(data, list):
        return _load_all(name, [(name, data)])
    return _load_all(name, [(f"{name}[{i}]", obj) for i, obj in enumerate(data)])


def _load_all(name: str, entries: list[tuple[str, Any]]) -> list[Claim]:
    claims: list[Claim] = []
    errors: list[ClaimError] = []
    for source, obj in entries:
        try:
            claims.append(parse_claim(obj, source=source))
        except ClaimError as e:
            errors.append(e)
    if errors:
        raise ClaimFileError(name, errors)
    return claims


# ---------------------------------------------------------------------------------------------
# Facts


# Record values the KB compares with its tables of spellings (kb/policy/records.dl).
_NORMALISED_ELEMENTS = ("route", "administered_by_credential", "monitoring")


def _normal(text: str) -> str:
    """The one normalisation of record words: upper case, runs of spaces as one space. Every
    spelling (M.D., Nurse Practitioner, subcut ...) is then a row of a KB table, not code."""
    return " ".join(text.upper().split())


def _doc_facts(number: int, doc: Documentation) -> list[Row]:
    """What the record shows: empty and absent elements give no fact; a flag gives "true" or
    "false" (a record that says the diagnosis is not linked is not a silent record)."""
    rows: list[Row] = []
    for element in _DOC_TEXT_ELEMENTS:
        value = getattr(doc, element)
        if value and element in _NORMALISED_ELEMENTS:
            value = _normal(value)
        if value:
            rows.append((number, element, value))
    for flag in _DOC_FLAG_ELEMENTS:
        state = getattr(doc, flag)
        if state is not None:
            rows.append((number, flag, "true" if state else "false"))
    return rows


def _line_facts(ln: Line, facts: Facts) -> None:
    n = ln.line
    facts["line"].append((n, ln.code, ln.service_date, ln.pos, ln.rendering_npi, ln.units))
    facts["line_modifier"] += [(n, m) for m in ln.modifiers]
    facts["line_diagnosis"] += [(n, dx) for dx in ln.diagnoses]
    if ln.rendering_credential is not None:
        facts["line_credential"].append((n, ln.rendering_credential))
    if ln.drug is not None:
        facts["line_drug"].append((n, ln.drug.ndc, ln.drug.name, ln.drug.dose))
    if ln.documentation is not None:
        facts["line_documented"].append((n,))
        facts["line_doc"] += _doc_facts(n, ln.documentation)


def _history_facts(h: HistoryLine, facts: Facts) -> None:
    facts["history"].append(
        (h.claim_id, h.line, h.code, h.service_date, h.pos, h.rendering_npi, h.units)
    )
    facts["history_modifier"] += [(h.claim_id, h.line, m) for m in h.modifiers]


CLAIM_RELATIONS = (
    "claim", "line", "line_modifier", "line_diagnosis", "line_credential", "line_drug",
    "line_documented", "line_doc", "history", "history_modifier",
)


def claim_to_facts(claim: Claim) -> Facts:
    """The claim as rows of every `.claim` relation in kb/claim.dl, deduplicated and sorted."""
    facts: Facts = {name: [] for name in CLAIM_RELATIONS}
    facts["claim"].append((claim.id, claim.patient.id))
    for ln in claim.lines:
        _line_facts(ln, facts)
    for h in claim.history:
        _history_facts(h, facts)
    return {name: sorted(set(rows)) for name, rows in facts.items()}


# ---------------------------------------------------------------------------------------------
# From a fact back to the JSON that produced it


def field_path(claim: Claim, line_no: int, name: str | None = None) -> str | None:
    """JSON path of claim line `line_no`, or of `name` inside it (e.g. `units`, `drug.ndc`).

    None when the claim has no such line. Lines keep their JSON order, so the index is exact.
    """
    for i, ln in enumerate(claim.lines):
        if ln.line == line_no:
            return f"lines[{i}]" + (f".{name}" if name else "")
    return None


_LINE_FACT_FIELDS = {
    "line": None,
    "line_credential": "rendering_credential",
    "line_drug": "drug",
    "line_documented": "documentation",
}


def _line_fact_origin(claim: Claim, relation: str, row: Row) -> str | None:
    ln = next(ln for ln in claim.lines if ln.line == row[0])
    name: str | None
    if relation == "line_modifier":
        name = f"modifiers[{ln.modifiers.index(row[1])}]"
    elif relation == "line_diagnosis":
        name = f"diagnoses[{ln.diagnoses.index(row[1])}]"
    elif relation == "line_doc":
        name = f"documentation.{_DOC_TEXT_ELEMENTS.get(str(row[1]), row[1])}"
    else:
        name = _LINE_FACT_FIELDS[relation]
    return field_path(claim, ln.line, name)


def _history_fact_origin(claim: Claim, relation: str, row: Row) -> str:
    index, h = next(
        (i, h) for i, h in enumerate(claim.history) if (h.claim_id, h.line) == tuple(row[:2])
    )
    if relation == "history_modifier":
        return f"history[{index}].modifiers[{h.modifiers.index(row[2])}]"
    return f"history[{index}]"


def fact_origin(claim: Claim, relation: str, row: Row) -> str | None:
    """The JSON path that produced a claim fact, so explanations can point at the input.

    Returns None for a relation that is not a claim relation or a row the claim does not give;
    checking the row against the claim's own facts first keeps the lookups below exact.
    """
    if tuple(row) not in claim_to_facts(claim).get(relation, ()):
        return None
    if relation == "claim":
        return "id"
    if relation.startswith("history"):
        return _history_fact_origin(claim, relation, row)
    return _line_fact_origin(claim, relation, row)
