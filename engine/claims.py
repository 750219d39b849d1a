"""Claim JSON in, typed claim out, and the claim as the facts `kb/claim.dl` declares.

Input checks here are about the *shape* of the JSON only. Whether a code, place of service or
modifier is valid is a billing question the KB answers with a line denial, so such values are
only required to be non-empty strings. Every problem in a claim is collected before raising, so
one run tells the submitter everything to fix.

`CLAIM_FIELDS` (the claim model) is the one description of that shape: the reader follows it
field by field and rejects any key it does not list, and engine.claim_schema publishes it as a
JSON Schema. A new field is added there, and nowhere else, for both to know it.
"""

from __future__ import annotations

import difflib
import json
import operator
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date
from itertools import repeat
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, TypeVar

import msgspec
import orjson

Row = tuple[str | int, ...]
"""One fact: str for symbols, int for numbers, in the relation's column order."""
Facts = dict[str, list[Row]]

MAX_MODIFIERS = 4
MAX_UNITS = 9999
# FHIR's positiveInt, the largest line number any supported format can carry (X12's LX01 has six digits);
# a larger one is a typing error, and the batch backend could not store it
MAX_LINE_NUMBER = 2_147_483_647
_DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_MISSING = object()
_T = TypeVar("_T")

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


# ---------------------------------------------------------------------------------------------
# The claim model: the one description of the claim JSON. The reader below follows it key by
# key (and rejects keys it does not list); engine.claim_schema turns it into the JSON Schema.

Kind = Literal["text", "date", "integer", "flag", "texts", "object", "objects"]


@dataclass(frozen=True, eq=False)
class Field:
    """One key of a claim object: its JSON kind, whether it must be there, and what it means.

    `text` is a string (trimmed; a required one must not be blank), `date` is YYYY-MM-DD,
    `texts` an array of non-blank strings, `object` a nested object with `fields`, `objects`
    an array of such objects. An optional key may be absent or null.
    """

    kind: Kind
    about: str
    required: bool = False
    case: Literal["upper", "lower"] | None = None  # how text is normalised before use
    low: int | None = None  # integers: smallest allowed
    high: int | None = None  # integers: largest allowed
    default: int | None = None  # integers: the value when absent
    limit: int | None = None  # texts: most entries
    fields: Mapping[str, Field] | None = None  # object, objects: the keys inside


def _text(about: str, *, required: bool = False, case: Literal["upper", "lower"] | None = None) -> Field:
    return Field("text", about, required=required, case=case)


PATIENT_FIELDS: Mapping[str, Field] = {
    "id": _text("The patient's identifier; claims and history are matched by it.", required=True),
    "birth_date": Field("date", "Date of birth."),
    "sex": _text("Administrative sex, as sent."),
}

DRUG_FIELDS: Mapping[str, Field] = {
    "ndc": _text("National Drug Code of the drug supplied."),
    "name": _text("Drug name."),
    "dose": _text("Dose given, with its unit."),
}

ADMINISTERED_BY_FIELDS: Mapping[str, Field] = {
    "name": _text("Who gave the injection."),
    "credential": _text("Their credential (MD, RN, MA, ...).", case="upper"),
}

DOCUMENTATION_FIELDS: Mapping[str, Field] = {
    "drug_name": _text("Drug named in the record."),
    "dose": _text("Dose recorded."),
    "route": _text("Route recorded (e.g. IM, SC)."),
    "site": _text("Injection site recorded."),
    "time": _text("Time of administration recorded."),
    "administered_by": Field("object", "Who administered it, per the record.", fields=ADMINISTERED_BY_FIELDS),
    "diagnosis_linked": Field("flag", "The record links the injection to a diagnosis."),
    "consent": Field("flag", "The record shows the patient's consent."),
    "supervision": _text("Supervision level recorded (e.g. direct); compared without case.", case="lower"),
    "monitoring": _text("Post-injection monitoring recorded."),
}

_LINE_NUMBER = Field(
    "integer",
    "Line number, unique within the claim (or within its history claim).",
    required=True,
    low=1,
    high=MAX_LINE_NUMBER,
)

SERVICE_FIELDS: Mapping[str, Field] = {
    "service_date": Field("date", "Date of service.", required=True),
    "code": _text("CPT or HCPCS code billed.", required=True, case="upper"),
    "modifiers": Field("texts", "Modifiers on the line, in billed order.", case="upper", limit=MAX_MODIFIERS),
    "units": Field("integer", "Units of service.", low=1, high=MAX_UNITS, default=1),
    "pos": _text("Place-of-service code (two characters, e.g. 11).", required=True),
    "rendering_npi": _text("NPI of the rendering provider.", required=True),
}

LINE_FIELDS: Mapping[str, Field] = {
    "line": _LINE_NUMBER,
    **SERVICE_FIELDS,
    "rendering_credential": _text("Credential of the rendering provider (MD, NP, ...).", case="upper"),
    "diagnoses": Field("texts", "ICD-10-CM diagnosis codes pointed to by the line.", case="upper"),
    "drug": Field("object", "The drug supplied for the line.", fields=DRUG_FIELDS),
    "documentation": Field(
        "object", "What the reviewed medical record shows; absent means not reviewed.", fields=DOCUMENTATION_FIELDS
    ),
}

HISTORY_FIELDS: Mapping[str, Field] = {
    "claim_id": _text("The earlier claim this line was billed on.", required=True),
    "line": _LINE_NUMBER,
    **SERVICE_FIELDS,
}

CLAIM_FIELDS: Mapping[str, Field] = {
    "$schema": _text("The claim JSON Schema's address, for editors; ignored."),
    "id": _text("The claim's identifier.", required=True),
    "patient": Field("object", "The patient.", required=True, fields=PATIENT_FIELDS),
    "lines": Field("objects", "The lines to decide.", required=True, fields=LINE_FIELDS),
    "history": Field("objects", "Lines billed earlier for the same patient.", fields=HISTORY_FIELDS),
}


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
    """JSON integers only: `true` is not a line number or a unit count."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(slots=True)
class _Scope:
    """One JSON object being read: knows its path and the label problems in it carry."""

    obj: Mapping[str, Any]
    path: str
    problems: list[Problem]
    label: str = ""

    def at(self, key: str) -> str:
        """The path of key: `lines[0].code`; a key that is no plain name (only an unknown one can
        be) is quoted, `lines[0]["a.b"]`, so the path stays unambiguous."""
        if not _PLAIN_KEY.fullmatch(key):
            return f"{self.path}[{_show(key)}]"
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
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON has one number type: 2.0 is the integer 2, as JSON Schema says
        if not _is_int(value):
            self.wrong_type(self.at(key), "an integer", value)
            return None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.add(self.at(key), f"must be {bounds}, got {value}")
            return None
        return value

    def date(self, key: str, *, required: bool) -> str | None:
        """Exactly YYYY-MM-DD, a real date: what JSON Schema's `"format": "date"` accepts."""
        value = self.get(key, required=required)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self.wrong_type(self.at(key), "a string", value)
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
        items = (self._text_value(self.at(key) + f"[{i}]", v, required=True, upper=upper) for i, v in enumerate(value))
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

    def read(self, key: str, spec: Field) -> Any:
        """The value at key as the model describes it (objects as dicts of their fields)."""
        if spec.kind == "text":
            text = self.text(key, required=spec.required, upper=spec.case == "upper")
            return text.lower() if text is not None and spec.case == "lower" else text
        if spec.kind == "date":
            return self.date(key, required=spec.required)
        if spec.kind == "integer":
            return self.integer(key, default=None if spec.required else spec.default, low=spec.low or 0, high=spec.high)
        if spec.kind == "flag":
            return self.flag(key)
        if spec.kind == "texts":
            return self.texts(key, upper=spec.case == "upper", limit=spec.limit)
        assert spec.kind == "object" and spec.fields is not None, spec.kind
        child = self.child(key, required=spec.required)
        return child.read_all(spec.fields) if child is not None else None

    def read_all(self, fields: Mapping[str, Field], *, done: tuple[str, ...] = ()) -> dict[str, Any]:
        """Every field of the model not in `done` (read already), then the keys it lacks."""
        values = {
            key: self.read(key, spec) for key, spec in fields.items() if key not in done and spec.kind != "objects"
        }
        self.reject_unknown(fields)
        return values

    def reject_unknown(self, fields: Mapping[str, Field]) -> None:
        """A key the model does not know is a mistake (usually a typo), never silently dropped:
        `"modifer": ["25"]` ignored would deny the line for a modifier the sender believes sent."""
        for key in self.obj:
            if key in fields:
                continue
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {_show(close[0])}?)" if close else f"; known fields: {', '.join(fields)}"
            self.add(self.at(str(key)), f"unknown field {_show(key)}{hint}")


# ---------------------------------------------------------------------------------------------
# The claim's parts


def _patient(values: dict[str, Any] | None) -> Patient:
    if values is None:
        return Patient("", None, None)
    return Patient(id=values["id"] or "", birth_date=values["birth_date"], sex=values["sex"])


def _drug(values: dict[str, Any] | None) -> Drug | None:
    if values is None:
        return None
    return Drug(*(values[key] or "" for key in ("ndc", "name", "dose")))


def _documentation(values: dict[str, Any] | None) -> Documentation | None:
    """Each element from its JSON path in `_DOC_TEXT_ELEMENTS` (e.g. administered_by.name)."""
    if values is None:
        return None
    elements: dict[str, Any] = {}
    for element, path in _DOC_TEXT_ELEMENTS.items():
        value: Any = values
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        elements[element] = value
    elements.update((flag, values[flag]) for flag in _DOC_FLAG_ELEMENTS)
    return Documentation(**elements)


def _service_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The fields a claim line and a history line share; unreadable ones get a placeholder
    (the claim is rejected anyway, with the problem named)."""
    return {
        "service_date": values["service_date"] or "",
        "code": values["code"] or "",
        "modifiers": values["modifiers"],
        "units": values["units"] or 0,
        "pos": values["pos"] or "",
        "rendering_npi": values["rendering_npi"] or "",
    }


def _read_line_number(scope: _Scope, prefix: str) -> int:
    """Read `line` first so every later problem on the line can say which claim line it is."""
    number = scope.read("line", _LINE_NUMBER)
    if number is not None:
        scope.label = f"{prefix}line {number}: "
    return number or 0


def _read_line(scope: _Scope) -> Line:
    number = _read_line_number(scope, "")
    values = scope.read_all(LINE_FIELDS, done=("line",))
    return Line(
        line=number,
        **_service_fields(values),
        rendering_credential=values["rendering_credential"],
        diagnoses=values["diagnoses"],
        drug=_drug(values["drug"]),
        documentation=_documentation(values["documentation"]),
    )


def _read_history_line(scope: _Scope) -> HistoryLine:
    claim_id = scope.read("claim_id", HISTORY_FIELDS["claim_id"]) or ""
    number = _read_line_number(scope, f"{claim_id} " if claim_id else "")
    values = scope.read_all(HISTORY_FIELDS, done=("claim_id", "line"))
    return HistoryLine(claim_id=claim_id, line=number, **_service_fields(values))


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
        [(ln.line, f"lines[{i}].line", f"line {ln.line}: ") for i, ln in enumerate(lines) if ln.line],
        "line number",
        claim.problems,
    )
    _check_unique(
        [
            ((h.claim_id, h.line), f"history[{i}].line", f"{h.claim_id} line {h.line}: ")
            for i, h in enumerate(history)
            if h.line
        ],
        "history line (same claim_id and line)",
        claim.problems,
    )


def _claim_id(obj: Any) -> str | None:
    """The id to name a claim by in errors, when there is a usable one."""
    value = obj.get("id") if isinstance(obj, dict) else None
    return (value.strip() or None) if isinstance(value, str) else None


def parse_claim(obj: Any, *, source: str | None = None, record: int | None = None) -> Claim:
    """Validate decoded claim JSON into a Claim, or raise ClaimError listing every problem."""
    claim = _fast_claim(obj)  # the common case, a claim with nothing wrong, read directly
    return claim if claim is not None else read_claim(obj, source=source, record=record)


def read_claim(obj: Any, *, source: str | None = None, record: int | None = None) -> Claim:
    """parse_claim by the claim model, field by field, collecting every problem (the reference:
    `_fast_claim` must give the same Claim for every claim this accepts, and None otherwise)."""
    problems: list[Problem] = []
    if not isinstance(obj, dict):
        message = f"expected a claim object, got {_json_type(obj)}"
        raise ClaimError(None, [Problem("$", message)], source, record)
    top = _Scope(obj, "", problems)
    values = top.read_all(CLAIM_FIELDS)
    claim_id = values["id"] or ""
    patient = _patient(values["patient"])
    lines = [_read_line(s) for s in top.items("lines", required=True)]
    history = [_read_history_line(s) for s in top.items("history", required=False)]
    _check_line_numbers(top, lines, history)
    if problems:
        raise ClaimError(_claim_id(obj), problems, source, record)
    return Claim(claim_id, patient, tuple(lines), tuple(history))


# ---------------------------------------------------------------------------------------------
# The fast path: a claim with nothing wrong, read in one pass. Any doubt (a key or type the
# checks below do not expect, a value they would reject) returns None and read_claim, the
# model-driven reader, reads the claim and words its problems. It must never accept what
# read_claim rejects, nor read a value differently (tests/fuzz/test_fuzz_fast_claims.py).
# parse_claim reads every claim through it (and read_fast the lines msgspec refuses), so the
# common case (every line a dict of well-typed values) is written out with few calls.

_FAST_TOP = frozenset(CLAIM_FIELDS)
_FAST_PATIENT = frozenset(PATIENT_FIELDS)
_FAST_LINE = frozenset(LINE_FIELDS)
_FAST_HISTORY = frozenset(HISTORY_FIELDS)
_FAST_DRUG = frozenset(DRUG_FIELDS)
_FAST_DOC = frozenset(DOCUMENTATION_FIELDS)
_FAST_BY = frozenset(ADMINISTERED_BY_FIELDS)
_DOC_TEXTS = ("drug_name", "dose", "route", "site", "time", "monitoring")
# Dates the fast path has found real: a batch repeats a few hundred service dates, and a set
# look-up costs a tenth of the pattern match and the calendar check. Bounded, so a file of
# all-different dates does not grow it without end.
_REAL_DATES: dict[str, str] = {}  # each date as the one object _struct_read gives for it
_REAL_DATES_MAX = 1 << 14


class _Reject(Exception):
    """The fast path declines: read_claim decides."""


def _req_text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if type(value) is not str:
        raise _Reject
    value = value.strip()
    if not value:
        raise _Reject
    return value


def _opt_text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise _Reject
    return value.strip() or None


def frozen_maker(cls: type[_T]) -> Callable[..., _T]:
    """`cls(*values)` for a frozen slots dataclass, in a third of the time: the object is made as
    an instance of a plain twin class with the same slots, whose attributes Python stores directly
    (the frozen class's __setattr__ refuses, and a slot's member descriptor costs a call each),
    then given its class (CPython allows it: the two have the same layout, checked here once).
    Only for classes without __post_init__, defaults that matter or validation; every field is
    given."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    assert tuple(names) == getattr(cls, "__slots__", None) and not hasattr(cls, "__post_init__"), cls
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": tuple(names), "__module__": __name__})
    args = ", ".join(f"v{i}" for i in range(len(names)))
    sets = "".join(f"    o.{name} = v{i}\n" for i, name in enumerate(names))
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls, "twin": twin}
    exec(f"def make({args}):\n    o = new(twin)\n{sets}    o.__class__ = cls\n    return o\n", scope)
    made: Callable[..., _T] = scope["make"]
    sample = made(*range(len(names)))  # TypeError here, at import, if the layouts ever differ
    assert type(sample) is cls and [getattr(sample, name) for name in names] == list(range(len(names))), cls
    return made


_new_line = frozen_maker(Line)
_new_history = frozen_maker(HistoryLine)
_new_claim = frozen_maker(Claim)
_new_patient = frozen_maker(Patient)
_new_drug = frozen_maker(Drug)
_new_documentation = frozen_maker(Documentation)


def _real_date(value: Any) -> bool:
    """Whether value is a real date as YYYY-MM-DD (ValueError from the calendar check if not)."""
    if type(value) is not str:
        return False
    if value not in _REAL_DATES:
        if not _DATE_SHAPE.fullmatch(value):
            return False
        date.fromisoformat(value)  # ValueError: not a real date
        if len(_REAL_DATES) < _REAL_DATES_MAX:
            _REAL_DATES[value] = value
    return True


def _fast_date(value: Any) -> str:
    """A real date as YYYY-MM-DD, else _Reject (or ValueError from the calendar check)."""
    if not _real_date(value):
        raise _Reject
    return str(value)


_strip, _upper = str.strip, str.upper


def _fast_texts(value: Any, limit: int | None) -> tuple[str, ...]:
    """A non-null array of strings, each trimmed, upper case and not blank. (str.strip called on
    anything but a string raises TypeError: one pass checks and trims.)"""
    if type(value) is not list or (limit is not None and len(value) > limit):
        raise _Reject
    try:
        out = tuple(map(_upper, map(_strip, value)))
    except TypeError:
        raise _Reject from None
    if "" in out:
        raise _Reject
    return out


def _fast_object(obj: dict[str, Any], key: str, keys: frozenset[str]) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not dict or not keys.issuperset(value):
        raise _Reject
    return value


def _fast_documentation(doc: Any) -> Documentation:
    if type(doc) is not dict or not _FAST_DOC.issuperset(doc):
        raise _Reject
    by = _fast_object(doc, "administered_by", _FAST_BY)
    flags = []
    for flag in _DOC_FLAG_ELEMENTS:
        value = doc.get(flag)
        if value is not None and type(value) is not bool:
            raise _Reject
        flags.append(value)
    texts = {key: _opt_text(doc, key) for key in _DOC_TEXTS}
    supervision = _opt_text(doc, "supervision")
    credential = _opt_text(by, "credential") if by is not None else None
    return _new_documentation(  # Documentation's fields, in order
        texts["drug_name"],
        texts["dose"],
        texts["route"],
        texts["site"],
        texts["time"],
        _opt_text(by, "name") if by is not None else None,
        credential.upper() if credential is not None else None,
        flags[0],
        flags[1],
        supervision.lower() if supervision is not None else None,
        texts["monitoring"],
    )


def _fast_drug(drug: Any) -> Drug:
    if type(drug) is not dict or not _FAST_DRUG.issuperset(drug):
        raise _Reject
    return _new_drug(_opt_text(drug, "ndc") or "", _opt_text(drug, "name") or "", _opt_text(drug, "dose") or "")


_REQUIRED = operator.itemgetter("line", "service_date", "code", "pos", "rendering_npi")  # a line's required keys


def _fast_line(obj: Any) -> Line:
    """One claim line (and the service fields of a history line, _fast_history), checked with few
    calls: parse_claim reads every line through this function."""
    if type(obj) is not dict or not _FAST_LINE.issuperset(obj):
        raise _Reject
    number, day, code, pos, npi = _REQUIRED(obj)  # KeyError when one is missing: declined
    if type(number) is not int or not 1 <= number <= MAX_LINE_NUMBER or type(code) is not str or type(pos) is not str:
        raise _Reject
    if type(npi) is not str or type(day) is not str or (day not in _REAL_DATES and not _real_date(day)):
        raise _Reject
    get = obj.get
    units = get("units")
    if units is None:
        units = 1
    elif type(units) is not int or units < 1 or units > MAX_UNITS:
        raise _Reject
    code, pos, npi = code.strip().upper(), pos.strip(), npi.strip()
    if not (code and pos and npi):
        raise _Reject
    modifiers = get("modifiers")
    modifiers = () if modifiers is None else _fast_texts(modifiers, MAX_MODIFIERS)
    credential = get("rendering_credential")
    if credential is not None:
        if type(credential) is not str:
            raise _Reject
        credential = credential.strip().upper() or None
    diagnoses = get("diagnoses")
    drug = get("drug")
    documentation = get("documentation")
    return _new_line(
        number,
        day,
        code,
        modifiers,
        units,
        pos,
        npi,
        credential,
        () if diagnoses is None else _fast_texts(diagnoses, None),
        None if drug is None else _fast_drug(drug),
        None if documentation is None else _fast_documentation(documentation),
    )


def _fast_history(obj: Any) -> HistoryLine:
    if type(obj) is not dict or not _FAST_HISTORY.issuperset(obj):
        raise _Reject
    claim_id = _req_text(obj, "claim_id")
    # its other fields are a claim line's service fields, read the same way
    ln = _fast_line({key: value for key, value in obj.items() if key != "claim_id"})
    return _new_history(claim_id, ln.line, ln.service_date, ln.code, ln.modifiers, ln.units, ln.pos, ln.rendering_npi)


def _fast_claim(obj: Any) -> Claim | None:
    """The Claim read_claim would give, when the claim has nothing wrong; else None."""
    try:
        if type(obj) is not dict or not _FAST_TOP.issuperset(obj):
            return None
        claim_id = _req_text(obj, "id")
        _opt_text(obj, "$schema")
        patient = obj.get("patient")
        if type(patient) is not dict or not _FAST_PATIENT.issuperset(patient):
            return None
        birth_date = patient.get("birth_date")
        person = _new_patient(
            _req_text(patient, "id"),
            None if birth_date is None else _fast_date(birth_date),
            _opt_text(patient, "sex"),
        )
        raw_lines = obj.get("lines")
        raw_history = obj.get("history")
        if type(raw_lines) is not list or not raw_lines or (raw_history is not None and type(raw_history) is not list):
            return None
        lines = tuple([_fast_line(x) for x in raw_lines])
        history = tuple([_fast_history(x) for x in raw_history]) if raw_history else ()
    except (_Reject, ValueError, KeyError):
        return None
    if len({ln.line for ln in lines}) != len(lines) or (
        history and len({(h.claim_id, h.line) for h in history}) != len(history)
    ):
        return None
    return _new_claim(claim_id, person, lines, history)


# ---------------------------------------------------------------------------------------------
# The fastest path, for a JSONL line: msgspec decodes the text into Structs made from the claim
# model (_model_struct), and so checks in C what _fast_claim checks in Python: every key known,
# every value of its kind (null for an optional key), integers within their bounds, arrays within
# their limits, `lines` not empty. What is left to Python (_struct_read) is what only Python
# does the same way as read_claim: trimming, case, the calendar and unique line numbers. A text
# msgspec refuses goes to orjson and _fast_claim as before, and a claim _struct_read declines is
# declined: read_fast must never accept what read_claim rejects, nor read a value differently
# (tests/fuzz/test_fuzz_struct_claims.py).


def _model_type(name: str, spec: Field) -> Any:
    """The type msgspec decodes one field of the claim model as (an optional one: or None)."""
    if spec.kind in ("text", "date"):  # trimmed, cased and checked as dates by _struct_read
        return str
    if spec.kind == "integer":
        return Annotated[int, msgspec.Meta(ge=spec.low or 0, le=spec.high)]
    if spec.kind == "flag":
        return bool
    if spec.kind == "texts":
        return Annotated[tuple[str, ...], msgspec.Meta(max_length=spec.limit)]
    assert spec.fields is not None, name
    struct = _model_struct(name, spec.fields)
    if spec.kind == "object":
        return struct
    return Annotated[list[struct], msgspec.Meta(min_length=1 if spec.required else 0)]  # type: ignore[valid-type]


def _model_struct(name: str, model: Mapping[str, Field]) -> type[msgspec.Struct]:
    """A Struct with one attribute per key of `model` (a key that is no Python name, `$schema`,
    as `schema_`), refusing any other key; not tracked by the cycle collector (it holds none)."""
    attrs: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for key, spec in model.items():
        attr = key if key.isidentifier() else key.strip("$") + "_"
        if attr != key:
            rename[attr] = key
        kind = _model_type(f"{name}_{attr}", spec)
        attrs.append((attr, kind) if spec.required else (attr, kind | None, None))
    return msgspec.defstruct(name, attrs, kw_only=True, forbid_unknown_fields=True, rename=rename or None, gc=False)


_STRUCT_DECODER = msgspec.json.Decoder(_model_struct("_ClaimJson", CLAIM_FIELDS))


# Arrays of codes (`modifiers`, `diagnoses`) as given -> as read: a batch repeats a few thousand
# of them, and one look-up costs less than trimming and casing each code again (measured: the
# arrays were a fifth of the claim reader, _struct_read). Only arrays read without a problem; bounded as _REAL_DATES.
_UPPER_TEXTS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _upper_texts(values: tuple[str, ...]) -> tuple[str, ...]:
    """An array of strings as read_claim reads `modifiers` and `diagnoses`: each trimmed, in upper
    case and not blank (_Reject if one is blank)."""
    out = tuple(map(_upper, map(_strip, values)))
    if "" in out:
        raise _Reject
    if len(_UPPER_TEXTS) < _REAL_DATES_MAX:
        _UPPER_TEXTS[values] = out
    return out


def _struct_text(value: str | None) -> str | None:
    """An optional text: trimmed, None when blank."""
    return None if value is None else (value.strip() or None)


def _struct_drug(drug: Any) -> Drug:
    return _new_drug(
        "" if drug.ndc is None else drug.ndc.strip(),
        "" if drug.name is None else drug.name.strip(),
        "" if drug.dose is None else drug.dose.strip(),
    )


def _struct_documentation(doc: Any) -> Documentation:
    by = doc.administered_by
    credential = None if by is None else _struct_text(by.credential)
    supervision = _struct_text(doc.supervision)
    return _new_documentation(  # Documentation's fields, in order
        _struct_text(doc.drug_name),
        _struct_text(doc.dose),
        _struct_text(doc.route),
        _struct_text(doc.site),
        _struct_text(doc.time),
        None if by is None else _struct_text(by.name),
        None if credential is None else credential.upper(),
        doc.diagnosis_linked,
        doc.consent,
        None if supervision is None else supervision.lower(),
        _struct_text(doc.monitoring),
    )


# Texts as given -> as read, for the values a batch repeats most (codes, credentials, places of
# service, NPIs): one look-up instead of trimming and casing again, and every line holding the
# same text holds the same object (with the dates of _REAL_DATES), so a chunk's facts, CSV and
# results touch a few thousand strings, not one per value. Only texts that are not blank once
# trimmed; bounded as _REAL_DATES.
_UPPER_TEXT: dict[str, str] = {}  # trimmed, upper case: codes, credentials
_TRIMMED_TEXT: dict[str, str] = {}  # trimmed: places of service, NPIs


def _upper_text(value: str) -> str:
    """value trimmed, in upper case ("" when blank), as _UPPER_TEXT keeps it."""
    out = value.strip().upper()
    if out and len(_UPPER_TEXT) < _REAL_DATES_MAX:
        _UPPER_TEXT[value] = out
    return out


def _trimmed_text(value: str) -> str:
    """value trimmed ("" when blank), as _TRIMMED_TEXT keeps it."""
    out = value.strip()
    if out and len(_TRIMMED_TEXT) < _REAL_DATES_MAX:
        _TRIMMED_TEXT[value] = out
    return out


def _struct_day(value: str) -> str:
    """A real date (the object _REAL_DATES keeps, once it has it), else _Reject or ValueError."""
    if not _real_date(value):
        raise _Reject
    return _REAL_DATES.get(value, value)


def _struct_history(h: Any) -> HistoryLine:
    """A history line: its claim id, and the service fields read as _struct_read reads a line's."""
    claim_id, code = h.claim_id.strip(), _UPPER_TEXT.get(h.code) or _upper_text(h.code)
    pos = _TRIMMED_TEXT.get(h.pos) or _trimmed_text(h.pos)
    npi = _TRIMMED_TEXT.get(h.rendering_npi) or _trimmed_text(h.rendering_npi)
    if not (claim_id and code and pos and npi):
        raise _Reject
    day = _REAL_DATES.get(h.service_date) or _struct_day(h.service_date)
    modifiers = () if h.modifiers is None else _upper_texts(h.modifiers)
    return _new_history(claim_id, h.line, day, code, modifiers, h.units or 1, pos, npi)


def _struct_read(c: Any) -> tuple[Claim, ClaimFacts]:
    """The Claim read_claim gives for a decoded _ClaimJson, when nothing in it is wrong, with its
    facts (what claim_to_facts gives for it, made in the same pass over the lines: scrub reads
    every line through the loop below, and walking the lines again for the facts cost a third as
    much as reading them); else _Reject (or ValueError from the calendar). The common case is
    written out with few calls. Rows as claim_to_facts makes them: lines in ascending order of
    their numbers (so distinct) give rows sorted and distinct line by line, and only any other
    order needs the rows sorted and made distinct at the end."""
    claim_id, patient = c.id.strip(), c.patient
    patient_id = patient.id.strip()
    if not (claim_id and patient_id):
        raise _Reject
    known, upper, trimmed, days = _UPPER_TEXTS, _UPPER_TEXT, _TRIMMED_TEXT, _REAL_DATES
    birth_date = patient.birth_date
    if birth_date is not None:
        birth_date = days.get(birth_date) or _struct_day(birth_date)
    person = _new_patient(patient_id, birth_date, _struct_text(patient.sex))
    lines = []
    rows: list[Row] = []
    modifier_rows: list[Row] = []
    diagnosis_rows: list[Row] = []
    credentials: list[Row] = []
    drugs: list[Row] = []
    documented: list[Row] = []
    docs: list[Row] = []
    last = 0  # the number of the line before (numbers are at least 1)
    in_order = True
    for ln in c.lines:
        n, code, pos, npi, day, units = ln.line, ln.code, ln.pos, ln.rendering_npi, ln.service_date, ln.units
        code = upper.get(code) or _upper_text(code)
        pos = trimmed.get(pos) or _trimmed_text(pos)
        npi = trimmed.get(npi) or _trimmed_text(npi)
        if not (code and pos and npi):
            raise _Reject
        day = days.get(day) or _struct_day(day)
        if units is None:
            units = 1
        if n <= last:
            in_order = False
        last = n
        rows.append((n, code, day, pos, npi, units))
        modifiers, credential, diagnoses, drug, doc = (
            ln.modifiers,
            ln.rendering_credential,
            ln.diagnoses,
            ln.drug,
            ln.documentation,
        )
        if modifiers is None:
            modifiers = ()
        elif modifiers:
            modifiers = known.get(modifiers) or _upper_texts(modifiers)
            if len(modifiers) == 1:  # the usual case, without a call
                modifier_rows.append((n, modifiers[0]))
            else:
                _code_rows(modifier_rows, n, modifiers)
        if credential is not None:
            credential = upper.get(credential) or _upper_text(credential) or None
            if credential is not None:
                credentials.append((n, credential))
        if diagnoses is None:
            diagnoses = ()
        elif diagnoses:
            diagnoses = known.get(diagnoses) or _upper_texts(diagnoses)
            if len(diagnoses) == 1:  # the usual case, without a call
                diagnosis_rows.append((n, diagnoses[0]))
            else:
                _code_rows(diagnosis_rows, n, diagnoses)
        if drug is not None:
            drug = _struct_drug(drug)
            drugs.append((n, drug.ndc, drug.name, drug.dose))
        if doc is not None:
            doc = _struct_documentation(doc)
            documented.append((n,))
            docs += _doc_facts(n, doc)
        lines.append(_new_line(n, day, code, modifiers, units, pos, npi, credential, diagnoses, drug, doc))
    if not in_order:
        if len({ln.line for ln in lines}) != len(lines):
            raise _Reject
        rows, modifier_rows, diagnosis_rows, credentials, drugs, documented, docs = map(
            _distinct, (rows, modifier_rows, diagnosis_rows, credentials, drugs, documented, docs)
        )
    history: tuple[HistoryLine, ...] = ()
    if c.history:
        history = tuple([_struct_history(h) for h in c.history])
        if len({(h.claim_id, h.line) for h in history}) != len(history):
            raise _Reject
    claim = _new_claim(claim_id, person, tuple(lines), history)
    history_rows, history_modifiers = _history_facts(claim) if history else ([], [])
    return claim, ClaimFacts(  # in CLAIM_RELATIONS order
        claim=[(claim_id, patient_id)],
        line=rows,
        line_modifier=modifier_rows,
        line_diagnosis=diagnosis_rows,
        line_credential=credentials,
        line_drug=drugs,
        line_documented=documented,
        line_doc=docs,
        history=history_rows,
        history_modifier=history_modifiers,
    )


def read_fast(data: bytes) -> Claim | None:
    """The claim in one JSON text (UTF-8 bytes, e.g. a JSONL line) when it has nothing wrong;
    None otherwise, and then parse_claim_text reads it and words its problems (see read_fast_facts)."""
    read = read_fast_facts(data)
    return None if read is None else read[0]


def read_fast_facts(data: bytes) -> tuple[Claim, ClaimFacts] | None:
    """read_fast's claim with its facts (claim_to_facts'), when the claim has nothing wrong; None
    otherwise, and then parse_claim_text reads it and words its problems.

    msgspec decodes the text into the claim model's Structs (_struct_read reads them, and makes
    the facts as it goes); a text it refuses (a float for an integer, an unknown key: most claims
    with a problem, and some without, e.g. a duplicated key whose first value is wrong) is parsed
    by orjson for _fast_claim. What either accepts, json.loads reads to the same value: a text they
    refuse and json.loads reads (a byte order mark, NaN, a lone surrogate, an integer beyond 64
    bits, deep nesting) is left to parse_claim_text, so the errors stay json's words."""
    try:
        decoded = _STRUCT_DECODER.decode(data)
    except msgspec.DecodeError:  # ValidationError too
        pass
    else:
        try:
            return _struct_read(decoded)
        except (_Reject, ValueError):
            return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    claim = _fast_claim(obj)
    return None if claim is None else (claim, claim_to_facts(claim))


# a JSON escape of a UTF-16 surrogate: json.loads turns one without its pair into a lone surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogates(value: Any, path: str) -> Iterator[Problem]:
    """A problem for each string (key or value) holding a lone surrogate: it is no Unicode text,
    and neither the claim nor an error record naming it could be written as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            bad = value[e.start]
            yield Problem(
                path or "$", f"not Unicode text: \\u{ord(bad):04x} is half of a surrogate pair, without the other half"
            )
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _lone_surrogates(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            # named as _Scope.at names it, but in ASCII: the key may be the bad text
            where = f"{path}.{key}" if path else key
            if not _PLAIN_KEY.fullmatch(key):
                where = f"{path}[{json.dumps(key)}]"
            found = list(_lone_surrogates(key, where))
            yield from found or _lone_surrogates(item, where)


def _decode(text: str, source: str | None, record: int | None) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        message = f"malformed JSON: {e.msg} at line {e.lineno}, column {e.colno}"
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        message = f"malformed JSON: {e}"
    except RecursionError:
        message = "malformed JSON: nested too deeply"
    else:
        if not _SURROGATE_ESCAPE.search(text):
            return value
        problems = list(_lone_surrogates(value, ""))
        if not problems:  # every surrogate escape had its pair
            return value
        claim_id = _claim_id(value)
        bad_id = claim_id is not None and any(p.field == "id" for p in problems)
        raise ClaimError(None if bad_id else claim_id, problems, source, record)
    raise ClaimError(None, [Problem("$", message)], source, record) from None


def parse_claim_text(text: str, *, source: str | None = None, record: int | None = None) -> Claim:
    """Parse one claim from JSON text; malformed JSON is a ClaimError on field `$`."""
    return parse_claim(_decode(text, source, record), source=source, record=record)


def load_claims(path: str | Path) -> list[Claim]:
    """Load a .json file holding one claim object or an array of them.

    Raises ClaimFileError naming the file (and `[i]`, the claim's index in an array) with
    every bad claim's problems; OSError when the file cannot be read.
    """
    return read_claims(Path(path).read_bytes(), str(path))[0]


def read_claims(data: bytes, name: str) -> tuple[list[Claim], bool]:
    """The claims in the bytes of a claim file (one object or an array), and whether it was an
    array. `name` is how errors name the input (a path, or `<stdin>`). Raises ClaimFileError."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        message = f"not a JSON text file: byte 0x{data[e.start]:02x} at offset {e.start} is not UTF-8 ({e.reason})"
        raise ClaimFileError(name, [ClaimError(None, [Problem("$", message)], name)]) from None
    try:
        data_json = _decode(text, name, None)
    except ClaimError as e:
        raise ClaimFileError(name, [e]) from None
    if not isinstance(data_json, list):
        return _load_all(name, [(name, data_json)]), False
    return _load_all(name, [(f"{name}[{i}]", obj) for i, obj in enumerate(data_json)]), True


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


# Every line_doc element in the order of its name (so a line's rows come sorted), with how its
# value becomes the fact's: 0 a text as given, 1 a text normalised (_normal), 2 a flag.
_DOC_ORDER = sorted(
    [(e, 1 if e in _NORMALISED_ELEMENTS else 0) for e in _DOC_TEXT_ELEMENTS] + [(f, 2) for f in _DOC_FLAG_ELEMENTS]
)
_DOC_VALUES = operator.attrgetter(*[e for e, _how in _DOC_ORDER])


def _doc_facts(number: int, doc: Documentation) -> list[Row]:
    """What the record shows, sorted: empty and absent elements give no fact; a flag gives "true" or
    "false" (a record that says the diagnosis is not linked is not a silent record)."""
    rows: list[Row] = []
    for (element, how), value in zip(_DOC_ORDER, _DOC_VALUES(doc), strict=True):
        if how == 2:
            if value is not None:
                rows.append((number, element, "true" if value else "false"))
        elif value:
            if how and not (value := _normal(value)):
                continue
            rows.append((number, element, value))
    return rows


CLAIM_RELATIONS = (
    "claim",
    "line",
    "line_modifier",
    "line_diagnosis",
    "line_credential",
    "line_drug",
    "line_documented",
    "line_doc",
    "history",
    "history_modifier",
)


class ClaimFacts(dict[str, list[Row]]):
    """Facts as claim_to_facts gives them: every relation of CLAIM_RELATIONS, each a list of
    distinct tuples of one length, in sorted order. A batch backend takes these rows as they are
    instead of deduplicating and sorting them again (engine/backends/duckdb.py)."""


def _distinct(rows: list[Row]) -> list[Row]:
    """The rows sorted, each once. Sorted first: a claim's rows are seldom repeated, and comparing
    neighbours costs a fifth of hashing every row into a set."""
    if len(rows) > 1:
        rows.sort()
        if any(map(operator.eq, rows, rows[1:])):
            return sorted(set(rows))
    return rows


# A line's and a history line's row, read in one C call (the relation's column order)
_LINE_ROW = operator.attrgetter("line", "code", "service_date", "pos", "rendering_npi", "units")
_LINE_PARTS = operator.attrgetter("line", "modifiers", "diagnoses", "rendering_credential", "drug", "documentation")
_HISTORY_ROW = operator.attrgetter("claim_id", "line", "code", "service_date", "pos", "rendering_npi", "units")


def _code_rows(rows: list[Row], n: int, codes: tuple[str, ...]) -> None:
    """Add line n's rows of its codes (modifiers or diagnoses, at least one), each once and in
    order: one code, the usual case, and two without making a set or sorting (claim_to_facts and
    the reader, _struct_read, both make them here)."""
    if len(codes) == 1:
        rows.append((n, codes[0]))
    elif len(codes) == 2:
        a, b = codes
        if a == b:
            rows.append((n, a))
        else:
            rows += ((n, a), (n, b)) if a < b else ((n, b), (n, a))
    else:
        rows += zip(repeat(n), sorted(set(codes)))


def claim_to_facts(claim: Claim) -> ClaimFacts:
    """The claim as rows of every `.claim` relation in kb/claim.dl, deduplicated and sorted.

    Lines in ascending order of their (so distinct) numbers, the usual claim: each line's rows
    come after the rows of the lines before it, so rows made line by line, each line's own sorted
    and distinct, are sorted and distinct, and nothing else is sorted. Any other order: every
    relation's rows are sorted and made distinct at the end."""
    lines = list(map(_LINE_ROW, claim.lines))
    in_order = len(lines) < 2 or all(map(operator.lt, lines, lines[1:]))
    modifiers: list[Row] = []
    diagnoses: list[Row] = []
    credentials: list[Row] = []
    drugs: list[Row] = []
    documented: list[Row] = []
    docs: list[Row] = []
    for n, codes, more, credential, drug, doc in map(_LINE_PARTS, claim.lines):
        if codes:
            _code_rows(modifiers, n, codes)
        if more:
            _code_rows(diagnoses, n, more)
        if credential is not None:
            credentials.append((n, credential))
        if drug is not None:
            drugs.append((n, drug.ndc, drug.name, drug.dose))
        if doc is not None:
            documented.append((n,))
            docs += _doc_facts(n, doc)  # one row per element: distinct, sorted
    if not in_order:
        lines, modifiers, diagnoses, credentials, drugs, documented, docs = map(
            _distinct, (lines, modifiers, diagnoses, credentials, drugs, documented, docs)
        )
    history, history_modifiers = _history_facts(claim) if claim.history else ([], [])
    return ClaimFacts(  # in CLAIM_RELATIONS order
        claim=[(claim.id, claim.patient.id)],
        line=lines,
        line_modifier=modifiers,
        line_diagnosis=diagnoses,
        line_credential=credentials,
        line_drug=drugs,
        line_documented=documented,
        line_doc=docs,
        history=history,
        history_modifier=history_modifiers,
    )


def _history_facts(claim: Claim) -> tuple[list[Row], list[Row]]:
    """The rows of history and history_modifier, sorted and distinct."""
    history = list(map(_HISTORY_ROW, claim.history))
    history_modifiers: list[Row] = []
    for h in claim.history:
        if h.modifiers:
            history_modifiers += [(h.claim_id, h.line, m) for m in h.modifiers]
    return _distinct(history), _distinct(history_modifiers)


class ClaimsRead(tuple[Claim, ...]):
    """Claims as a batch worker read them, with the facts of each (read_fast_facts made them in
    the same pass): chunk_facts takes these instead of making them again."""

    facts: list[Facts] | None  # None once chunk_facts has taken them

    def __new__(cls, claims: Iterable[Claim], facts: Iterable[ClaimFacts]) -> ClaimsRead:
        read = super().__new__(cls, claims)
        read.facts = [*facts]
        if len(read.facts) != len(read):
            raise ValueError(f"{len(read)} claims with the facts of {len(read.facts)}")
        return read


def chunk_facts(claims: Sequence[Claim]) -> list[Facts]:
    """claim_to_facts of each claim, in order. A ClaimsRead's facts, made as its claims were read,
    are handed over to the first caller, not kept: freed with what it makes of them (a backend's
    models, freed claim by claim as each is decided, while their rows are still in the CPU's
    caches), not all at once when the chunk is done. Any later call makes them again."""
    if type(claims) is ClaimsRead and claims.facts is not None:
        facts, claims.facts = claims.facts, None
        return facts
    return [*map(claim_to_facts, claims)]


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
    index, h = next((i, h) for i, h in enumerate(claim.history) if (h.claim_id, h.line) == tuple(row[:2]))
    if relation == "history_modifier":
        return f"history[{index}].modifiers[{h.modifiers.index(row[2])}]"
    return f"history[{index}]"


def fact_origin(
    claim: Claim, relation: str, row: Row, facts: Mapping[str, Collection[Row]] | None = None
) -> str | None:
    """The JSON path that produced a claim fact, so explanations can point at the input.

    Returns None for a relation that is not a claim relation or a row the claim does not give;
    checking the row against the claim's own facts first keeps the lookups below exact.
    `facts`: the claim's facts already built (claim_to_facts), when asking for many rows.
    """
    if tuple(row) not in (claim_to_facts(claim) if facts is None else facts).get(relation, ()):
        return None
    if relation == "claim":
        return "id"
    if relation.startswith("history"):
        return _history_fact_origin(claim, relation, row)
    return _line_fact_origin(claim, relation, row)
