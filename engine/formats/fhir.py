"""FHIR R4 Claim (JSON), or a Bundle of them, in: validated, then mapped to the claim model.

The models are fhir.resources' R4B package (FHIR 4.3.0; the library's default package is R5
5.0.0 and it ships no 4.0.1 package). R4B changed no element of Claim, ClaimResponse or Bundle
from R4 4.0.1, and every official R4 Claim example in the shared samples validates with it.
Each Claim is validated whole before anything is read from it; a validation error names the
element path (`item[0].quantity.value`), inside a Bundle prefixed with `entry[i].resource`.

Mapping: Claim.id (else its first identifier) is the claim id; the patient's identifier (or
its id), birthDate and gender come from the Patient it references (contained, in the Bundle,
or only the reference's id). Each item is a line: `sequence`, `productOrService`, `modifier`,
`quantity`, `servicedDate` (or the start of `servicedPeriod`), `locationCodeableConcept` (the
place of service), the rendering NPI and credential from the careTeam member of
`careTeamSequence` (its provider's us-npi identifier, its `qualification`), the diagnoses of
`diagnosisSequence`, the drug from an NDC `detail` (display or text as its name, quantity as its
dose). The medical record review travels as `supportingInfo` (category `info`, code from
RECORD_SYSTEM, one entry per element, `valueString` or `valueBoolean`) linked from the item by
`informationSequence`. A Claim carries no earlier claims' lines: the claim history stays empty.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from engine.claims import Claim, Documentation, Drug, Problem
from engine.formats.build import ClaimDraft, LineDraft, finish

FHIR_VERSION = "4.0.1 (validated with fhir.resources' R4B 4.3.0 models)"
RECORD_SYSTEM = "urn:policykb:record-element"
"""The code system of our record-review elements in Claim.supportingInfo.code."""
RECORD_REVIEWED = "record_reviewed"
"""Marks a line whose record was reviewed even when no element was found in it."""
INFO_CATEGORY = "http://terminology.hl7.org/CodeSystem/claiminformationcategory"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"
POS_SYSTEM = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
HCPCS_SYSTEM = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
_PROCEDURE_SYSTEMS = (CPT_SYSTEM, HCPCS_SYSTEM)
_FLAGS = {"diagnosis_linked", "consent"}
_RECORD_ELEMENTS = [f.name for f in fields(Documentation)]
_GENDER = {"female": "F", "male": "M", "other": "U", "unknown": "U"}
# Resources a Claim may point at: read for references, not adjudicated.
_REFERENCED = {
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Coverage",
    "Condition",
    "Location",
    "Encounter",
    "Device",
    "Procedure",
    "RelatedPerson",
}


@dataclass(frozen=True, slots=True)
class FhirRecord:
    """One Claim of the input, or problems that belong to no Claim; `position` orders them."""

    position: int
    claim: Claim | None
    claim_id: str | None
    problems: list[Problem]


def _validation_problems(error: ValidationError, prefix: str) -> list[Problem]:
    problems = []
    for e in error.errors():
        path = prefix
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        problems.append(Problem(path or "$", e["msg"]))
    return problems


def validate(resource: dict[str, Any], prefix: str) -> list[Problem]:
    """Problems fhir.resources finds in one resource (Claim, ClaimResponse or Bundle)."""
    from fhir.resources.R4B import get_fhir_model_class

    kind = resource.get("resourceType")
    try:
        model = get_fhir_model_class(str(kind))
    except (KeyError, ValueError) as e:
        return [Problem(f"{prefix}.resourceType" if prefix else "resourceType", f"unknown FHIR resource type: {e}")]
    try:
        model.model_validate(resource)
    except ValidationError as e:
        return _validation_problems(e, prefix)
    return []


def _codes(concept: Any) -> list[tuple[str, str]]:
    """(system, code) of each coding of a CodeableConcept."""
    if not isinstance(concept, dict):
        return []
    return [(c.get("system", ""), str(c.get("code", "")).strip()) for c in concept.get("coding", []) if c.get("code")]


def _code(concept: Any, prefer: tuple[str, ...] = ()) -> str | None:
    codes = _codes(concept)
    for system, code in codes:
        if system in prefer:
            return code
    return codes[0][1] if codes else None


def _ndc(code: str) -> str:
    digits = code.strip()
    return f"{digits[:5]}-{digits[5:9]}-{digits[9:]}" if len(digits) == 11 and digits.isdigit() else digits


def _number(value: Any) -> str:
    """A FHIR decimal as written: 7.5 stays 7.5, 1000.0 becomes 1000."""
    d = Decimal(str(value))
    return format(d.normalize(), "f") if d == d.to_integral_value() else str(value)


class _Resolver:
    """Finds the resource a Reference points at: contained (#id), in the Bundle, or nowhere."""

    def __init__(self, claim: dict[str, Any], bundle: dict[str, dict[str, Any]]) -> None:
        self.contained = {r.get("id"): r for r in claim.get("contained", []) if isinstance(r, dict)}
        self.bundle = bundle

    def __call__(self, ref: Any) -> dict[str, Any] | None:
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            return None
        target = ref["reference"]
        if target.startswith("#"):
            return self.contained.get(target[1:])
        return self.bundle.get(target) or self.bundle.get("/".join(target.split("/")[-2:]))


def _identifier(resource: dict[str, Any] | None, ref: Any, system: str | None) -> str | None:
    """An identifier value from the resolved resource or from a logical reference."""
    for holder in (resource or {}).get("identifier", []), [ref.get("identifier")] if isinstance(ref, dict) else []:
        for ident in holder:
            if isinstance(ident, dict) and ident.get("value") and (system is None or ident.get("system") == system):
                return str(ident["value"]).strip()
    return None


def _patient(claim: dict[str, Any], resolve: _Resolver, draft: ClaimDraft) -> None:
    ref = claim.get("patient")
    patient = resolve(ref)
    pid = _identifier(patient, ref, None) or (patient or {}).get("id")
    if not pid and isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        pid = ref["reference"].rstrip("/").split("/")[-1].lstrip("#")
    draft.patient_id = pid or None
    if patient:
        draft.birth_date = patient.get("birthDate")
        draft.sex = _GENDER.get(str(patient.get("gender")))


def _care_team(claim: dict[str, Any], resolve: _Resolver) -> dict[int, tuple[str | None, str | None]]:
    team = {}
    for member in claim.get("careTeam", []):
        ref = member.get("provider")
        npi = _identifier(resolve(ref), ref, NPI_SYSTEM)
        team[member.get("sequence")] = (npi, _code(member.get("qualification")))
    return team


def _record_info(claim: dict[str, Any]) -> dict[int, tuple[str, Any]]:
    """supportingInfo entries in our record code system: sequence -> (element, value)."""
    info = {}
    for entry in claim.get("supportingInfo", []):
        element = next((c for s, c in _codes(entry.get("code")) if s == RECORD_SYSTEM), None)
        if element is None:
            continue
        value = entry.get("valueBoolean", entry.get("valueString"))
        info[entry.get("sequence")] = (element, value)
    return info


def _documentation(
    item: dict[str, Any], info: dict[int, tuple[str, Any]], where: str, draft: ClaimDraft
) -> Documentation | None:
    found = [info[s] for s in item.get("informationSequence", []) if s in info]
    if not found:
        return None
    values: dict[str, Any] = {}
    for element, value in found:
        if element == RECORD_REVIEWED:
            continue
        if element not in _RECORD_ELEMENTS:
            draft.problem(f"{where}.informationSequence", f"unknown record element {element!r} in {RECORD_SYSTEM}")
        elif (element in _FLAGS) != isinstance(value, bool):
            kind = "valueBoolean" if element in _FLAGS else "valueString"
            draft.problem(f"{where}.informationSequence", f"record element {element} needs a {kind}")
        else:
            values[element] = value.lower() if element == "supervision" and isinstance(value, str) else value
    return Documentation(**{name: values.get(name) for name in _RECORD_ELEMENTS})


def _is_drug(detail: dict[str, Any]) -> bool:
    """An NDC-coded detail, or (a drug with no NDC) a detail named only by its text."""
    concept = detail.get("productOrService") or {}
    codes = _codes(concept)
    return any(s == NDC_SYSTEM for s, _ in codes) or (not codes and bool(concept.get("text")))


def _drug(item: dict[str, Any], where: str, draft: ClaimDraft) -> Drug | None:
    drugs = [(i, d) for i, d in enumerate(item.get("detail", [])) if _is_drug(d)]
    if len(drugs) > 1:
        draft.problem(f"{where}.detail[{drugs[1][0]}]", "one drug detail per item")
    if not drugs:
        return None
    detail = drugs[0][1]
    concept = detail["productOrService"]
    coding = next((c for c in concept.get("coding") or [] if c.get("system") == NDC_SYSTEM), None)
    name = (coding or {}).get("display") or concept.get("text") or ""
    quantity = detail.get("quantity") or {}
    dose = ""
    if quantity.get("value") is not None:
        dose = " ".join(filter(None, (_number(quantity["value"]), quantity.get("unit") or quantity.get("code"))))
    return Drug(ndc=_ndc(str(coding["code"])) if coding else "", name=name, dose=dose)


def _line(
    item: dict[str, Any],
    index: int,
    prefix: str,
    claim: dict[str, Any],
    draft: ClaimDraft,
    team: dict[int, tuple[str | None, str | None]],
    info: dict[int, tuple[str, Any]],
) -> LineDraft:
    where = f"{prefix}item[{index}]"
    quantity = (item.get("quantity") or {}).get("value")
    served = item.get("servicedDate") or (item.get("servicedPeriod") or {}).get("start")
    ln = LineDraft(
        where=where,
        number=item.get("sequence"),
        service_date=str(served)[:10] if served else None,
        code=_code(item.get("productOrService"), _PROCEDURE_SYSTEMS),
        modifiers=[m for m in (_code(c) for c in item.get("modifier", [])) if m],
        units=float(quantity) if quantity is not None else None,
        pos=_code(item.get("locationCodeableConcept"), (POS_SYSTEM,)),
        rendering_npi=None,
        origin={
            "line": f"{where}.sequence",
            "code": f"{where}.productOrService",
            "modifiers": f"{where}.modifier",
            "units": f"{where}.quantity",
            "service_date": f"{where}.servicedDate",
            "pos": f"{where}.locationCodeableConcept",
            "rendering_npi": f"{where}.careTeamSequence",
        },
    )
    sequences = item.get("careTeamSequence", [])
    if not sequences and len(team) == 1:
        sequences = list(team)
    if sequences:
        if sequences[0] not in team:
            draft.problem(f"{where}.careTeamSequence[0]", f"no careTeam member with sequence {sequences[0]}")
        else:
            ln.rendering_npi, ln.rendering_credential = team[sequences[0]]
            member = next(i for i, m in enumerate(claim.get("careTeam", [])) if m.get("sequence") == sequences[0])
            ln.origin["rendering_npi"] = f"{prefix}careTeam[{member}].provider (an identifier with system {NPI_SYSTEM})"
    diagnoses = {d.get("sequence"): (i, d) for i, d in enumerate(claim.get("diagnosis", []))}
    for k, seq in enumerate(item.get("diagnosisSequence", [])):
        if seq not in diagnoses:
            draft.problem(f"{where}.diagnosisSequence[{k}]", f"no diagnosis with sequence {seq}")
            continue
        i, diagnosis = diagnoses[seq]
        code = _code(diagnosis.get("diagnosisCodeableConcept"), (ICD10_SYSTEM,))
        if code is None:
            draft.problem(f"{prefix}diagnosis[{i}]", "only a diagnosisCodeableConcept with a code can be read")
        else:
            ln.diagnoses.append(code)
    ln.drug = _drug(item, where, draft)
    ln.documentation = _documentation(item, info, where, draft)
    return ln


def map_claim(
    claim: dict[str, Any], prefix: str = "", bundle: dict[str, dict[str, Any]] | None = None
) -> Claim | list[Problem]:
    """A validated FHIR Claim as our Claim, or the problems that stop it."""
    resolve = _Resolver(claim, bundle or {})
    claim_id = claim.get("id") or _identifier(claim, None, None)
    draft = ClaimDraft(where=prefix.rstrip(".") or "Claim", claim_id=claim_id, patient_id=None)
    _patient(claim, resolve, draft)
    team = _care_team(claim, resolve)
    info = _record_info(claim)
    draft.lines = [_line(item, i, prefix, claim, draft, team, info) for i, item in enumerate(claim.get("item", []))]
    return finish(draft)


def _claim_record(
    position: int, resource: dict[str, Any], prefix: str, bundle: dict[str, dict[str, Any]] | None
) -> FhirRecord:
    claim_id = resource.get("id") or _identifier(resource, None, None)
    problems = validate(resource, prefix.rstrip("."))
    if problems:
        return FhirRecord(position, None, claim_id, problems)
    built = map_claim(resource, prefix, bundle)
    if isinstance(built, Claim):
        return FhirRecord(position, built, built.id, [])
    return FhirRecord(position, None, claim_id, built)


def read_fhir(obj: Any) -> list[FhirRecord]:
    """Every Claim of a Claim or Bundle resource, in order, each mapped or with its problems."""
    if not isinstance(obj, dict) or "resourceType" not in obj:
        return [FhirRecord(0, None, None, [Problem("$", "not a FHIR resource (no resourceType)")])]
    kind = obj["resourceType"]
    if kind == "Claim":
        return [_claim_record(0, obj, "", None)]
    if kind != "Bundle":
        return [
            FhirRecord(
                0,
                None,
                obj.get("id"),
                [
                    Problem(
                        "resourceType",
                        f"a resource of type {kind} is not a claim to adjudicate: give a Claim or a Bundle of Claims",
                    )
                ],
            )
        ]
    entries = obj.get("entry", [])
    if not isinstance(entries, list):
        entries = []
    shell = {
        **obj,
        "entry": [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e for e in entries],
    }
    records = []
    shell_problems = validate(shell, "")
    if shell_problems:
        records.append(FhirRecord(0, None, obj.get("id"), shell_problems))
    index: dict[str, dict[str, Any]] = {}
    for e in entries:
        r = e.get("resource") if isinstance(e, dict) else None
        if isinstance(r, dict):
            if e.get("fullUrl"):
                index[str(e["fullUrl"])] = r
            if r.get("id"):
                index[f"{r.get('resourceType')}/{r['id']}"] = r
    for i, e in enumerate(entries):
        r = e.get("resource") if isinstance(e, dict) else None
        prefix = f"entry[{i}].resource."
        if not isinstance(r, dict):
            records.append(FhirRecord(i + 1, None, None, [Problem(f"entry[{i}]", "entry has no resource")]))
        elif r.get("resourceType") == "Claim":
            records.append(_claim_record(i + 1, r, prefix, index))
        elif r.get("resourceType") not in _REFERENCED:
            records.append(
                FhirRecord(
                    i + 1,
                    None,
                    r.get("id"),
                    [
                        Problem(
                            f"{prefix}resourceType",
                            f"a resource of type {r.get('resourceType')} is not a claim to adjudicate",
                        )
                    ],
                )
            )
    if not records:
        records.append(FhirRecord(0, None, obj.get("id"), [Problem("entry", "the Bundle holds no Claim")]))
    return records
