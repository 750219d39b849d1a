"""An adjudication result as a FHIR R4 ClaimResponse, validated with fhir.resources (R4B).

Per line an `item` with its `adjudication`: a denied line has one entry per deny reason in
force, its CARC as `reason` (X12 CARC code system, the group code with it in `reason.text`)
and a benefit amount of zero; a paid line has one `eligible` entry. Every reason's explanation
(its message, rule id and codes) is a `processNote`, and so is each RARC; the line's
`noteNumber` points at its notes. `outcome` is `complete` (every line was decided),
`disposition` says how many lines were paid.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.claims import Claim

CARC_SYSTEM = "https://x12.org/codes/claim-adjustment-reason-codes"
RARC_SYSTEM = "https://x12.org/codes/remittance-advice-remark-codes"
ADJUDICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/adjudication"


class InvalidResource(ValueError):
    """A resource we built does not validate: a bug here, reported rather than written."""


def deny_reasons(line: dict[str, Any]) -> list[dict[str, Any]]:
    """The reasons that deny a line: severity deny, not set aside by a higher-precedence rule."""
    return [r for r in line.get("reasons", []) if r.get("severity") == "deny" and not r.get("overridden_by")]


def _category(code: str) -> dict[str, Any]:
    return {"coding": [{"system": ADJUDICATION_SYSTEM, "code": code}]}


def _disposition(lines: list[dict[str, Any]]) -> str:
    paid = sum(1 for ln in lines if ln["decision"] == "pay")
    denied = [str(ln["line"]) for ln in lines if ln["decision"] != "pay"]
    text = f"{paid} of {len(lines)} line(s) paid"
    return text + (f"; denied: line {', '.join(denied)}" if denied else "")


def claim_response(claim: Claim, result: dict[str, Any], *, created: datetime | None = None) -> dict[str, Any]:
    """The ClaimResponse for one adjudicated claim (`result` is ClaimResult.to_dict())."""
    notes: list[dict[str, Any]] = []

    def note(text: str) -> int:
        notes.append({"number": len(notes) + 1, "type": "display", "text": text})
        return len(notes)

    items = []
    lines: list[dict[str, Any]] = list(result.get("lines", []))
    for ln in lines:
        numbers: list[int] = []
        adjudication = []
        for r in ln.get("reasons", []):
            if r.get("overridden_by"):
                continue
            codes = "-".join(filter(None, (r.get("group"), r.get("carc"))))
            label = f"{r['rule']} ({codes})" if codes else r["rule"]
            numbers.append(note(f"{label}: {r['message']}"))
        for r in deny_reasons(ln):
            adjudication.append(
                {
                    "category": _category("benefit"),
                    "reason": {
                        "coding": [{"system": CARC_SYSTEM, "code": r["carc"]}],
                        "text": f"{r.get('group', '')}-{r['carc']}".lstrip("-"),
                    },
                    "amount": {"value": 0, "currency": "USD"},
                }
            )
            numbers += [note(f"RARC {rarc}") for rarc in r.get("rarc", [])]
        if ln["decision"] == "pay":
            adjudication.append({"category": _category("eligible")})
        item: dict[str, Any] = {"itemSequence": ln["line"], "adjudication": adjudication}
        if numbers:
            item["noteNumber"] = numbers
        items.append(item)
    when = (created or datetime.now(UTC)).replace(microsecond=0).isoformat()
    response: dict[str, Any] = {
        "resourceType": "ClaimResponse",
        "id": _fhir_id(f"{claim.id}-response"),
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": {"identifier": {"value": claim.patient.id}},
        "created": when,
        "insurer": {"display": f"PolicyKB {result.get('kb', '')}".strip()},
        "request": {"identifier": {"value": claim.id}},
        "outcome": "complete",
        "disposition": _disposition(lines),
        "item": items,
    }
    if notes:
        response["processNote"] = notes
    check(response)
    return response


def _fhir_id(text: str) -> str:
    """FHIR ids are [A-Za-z0-9-.]{1,64}: other characters become '-'."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in text)
    return cleaned[:64] or "response"


def check(resource: dict[str, Any]) -> None:
    """Validate a resource we wrote; raise InvalidResource listing what fhir.resources found."""
    from engine.formats.fhir import validate

    problems = validate(resource, "")
    if problems:
        raise InvalidResource("; ".join(f"{p.field}: {p.message}" for p in problems))
