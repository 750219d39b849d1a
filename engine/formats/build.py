"""Build the typed claim model (engine.claims) from what a format reader found, checking it.

The X12 and FHIR readers do not go through the claim JSON reader: they build `Claim`, `Line`,
`Drug` and `Documentation` here, with the same shape rules as the JSON reader (dates are real
dates, units 1-9999, at most four modifiers, line numbers unique, required values present). A
problem names the place in the source format (an X12 segment position, a FHIR element path),
not a JSON path, so the submitter can find it in the file they sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from engine.claims import (
    MAX_MODIFIERS,
    MAX_UNITS,
    Claim,
    Documentation,
    Drug,
    Line,
    Patient,
    Problem,
)

_DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(slots=True)
class LineDraft:
    """One service line as read, before checks; `where` locates it for problems."""

    where: str
    number: int | None
    service_date: str | None
    code: str | None
    modifiers: list[str]
    units: float | None
    pos: str | None
    rendering_npi: str | None
    rendering_credential: str | None = None
    diagnoses: list[str] = field(default_factory=list)
    drug: Drug | None = None
    documentation: Documentation | None = None
    # Where each field came from, for problems: field name -> location text.
    origin: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ClaimDraft:
    where: str
    claim_id: str | None
    patient_id: str | None
    birth_date: str | None = None
    sex: str | None = None
    lines: list[LineDraft] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))


def iso_date(text: str | None) -> str | None:
    """A real YYYY-MM-DD date, or None."""
    if text is None or not _DATE_SHAPE.fullmatch(text):
        return None
    try:
        date.fromisoformat(text)
    except ValueError:
        return None
    return text


def _check_line(draft: ClaimDraft, ln: LineDraft) -> Line | None:
    def at(name: str) -> str:
        return ln.origin.get(name, ln.where)

    label = f"line {ln.number}: " if ln.number else ""
    before = len(draft.problems)

    def need(name: str, value: str | None, what: str) -> str:
        if not value:
            draft.problem(at(name), f"{label}{what} is missing")
            return ""
        return value

    if ln.number is None or ln.number < 1:
        draft.problem(at("line"), "service line number is missing or not a positive whole number")
    code = need("code", ln.code, "the procedure code")
    pos = need("pos", ln.pos, "the place of service")
    npi = need("rendering_npi", ln.rendering_npi, "the rendering provider NPI")
    if ln.service_date is None:
        draft.problem(at("service_date"), f"{label}the date of service is missing")
    elif iso_date(ln.service_date) is None:
        draft.problem(at("service_date"), f"{label}not a real date of service: {ln.service_date!r}")
    units = 0
    if ln.units is None:
        units = 1
    elif ln.units != int(ln.units) or not 1 <= ln.units <= MAX_UNITS:
        draft.problem(at("units"), f"{label}units must be a whole number from 1 to {MAX_UNITS}, got {ln.units:g}")
    else:
        units = int(ln.units)
    if len(ln.modifiers) > MAX_MODIFIERS:
        draft.problem(at("modifiers"), f"{label}at most {MAX_MODIFIERS} modifiers per line, got {len(ln.modifiers)}")
    if len(draft.problems) > before:
        return None
    return Line(
        line=ln.number or 0,
        service_date=ln.service_date or "",
        code=code.upper(),
        modifiers=tuple(m.upper() for m in ln.modifiers),
        units=units,
        pos=pos,
        rendering_npi=npi,
        rendering_credential=ln.rendering_credential.upper() if ln.rendering_credential else None,
        diagnoses=tuple(d.upper() for d in ln.diagnoses),
        drug=ln.drug,
        documentation=ln.documentation,
    )


def finish(draft: ClaimDraft) -> Claim | list[Problem]:
    """The checked Claim, or every problem found in the draft."""
    if not draft.claim_id:
        draft.problem(draft.where, "the claim has no identifier")
    if not draft.patient_id:
        draft.problem(draft.where, "the claim names no patient (member) identifier")
    if not draft.lines:
        draft.problem(draft.where, "the claim has no service lines")
    if draft.birth_date is not None and iso_date(draft.birth_date) is None:
        draft.problem(draft.where, f"not a real birth date: {draft.birth_date!r}")
    lines = [_check_line(draft, ln) for ln in draft.lines]
    seen: dict[int, str] = {}
    for ln in draft.lines:
        if ln.number is not None and ln.number in seen:
            draft.problem(
                ln.origin.get("line", ln.where),
                f"duplicate service line number {ln.number} (first at {seen[ln.number]})",
            )
        elif ln.number is not None:
            seen[ln.number] = ln.origin.get("line", ln.where)
    if draft.problems:
        return draft.problems
    patient = Patient(id=draft.patient_id or "", birth_date=iso_date(draft.birth_date), sex=draft.sex)
    return Claim(
        id=draft.claim_id or "", patient=patient, lines=tuple(ln for ln in lines if ln is not None), history=()
    )
