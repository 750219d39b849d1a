"""Write claims as X12 5010 837P and as FHIR R4 Claims; regenerate the bundled examples in both.

    python -m engine.formats.convert            # examples/*.json -> examples/x12/, examples/fhir/
    python -m engine.formats.convert --check    # exit 1 when a written file is stale

What each format cannot carry, and so what a converted claim reads back without:
- 837P: the medical record review (`documentation`: an 837P carries claims, not records; the
  record travels as an attachment, and the one 80-character 2400 NTE is the drug's name), the
  rendering provider's credential (an 837P names providers by NPI and taxonomy only), the
  claim history (earlier claims are the payer's, not the submitter's). The drug dose is sent
  as CTP04/CTP05 in the units an 837P has (mcg becomes mg); a drug line with no dose is sent
  with the line's units as its quantity, because CTP04 is required. A drug with no NDC has no
  2410 loop (LIN03 is required): only its name travels, in the NTE, and its dose is lost.
- FHIR Claim: the claim history only. The record review goes into supportingInfo.
`x12_projection` and `fhir_projection` give the claim as it reads back from each format.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.claims import Claim, ClaimError, Drug, Line, load_claims, parse_claim_text
from engine.formats.envelope import interchange
from engine.formats.fhir import (
    CPT_SYSTEM,
    HCPCS_SYSTEM,
    ICD10_SYSTEM,
    INFO_CATEGORY,
    NDC_SYSTEM,
    NPI_SYSTEM,
    POS_SYSTEM,
    RECORD_REVIEWED,
    RECORD_SYSTEM,
)
from engine.formats.x12 import DRUG_UNITS

CREATED = "2024-08-01"
"""The date written into converted files (X12 envelope, FHIR created): fixed so output is stable."""
_DOSE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(.*?)\s*$")
# Dose unit -> (CTP05 unit code, factor to that unit).
_CTP_UNITS = {
    "mg": ("ME", Decimal(1)),
    "mcg": ("ME", Decimal("0.001")),
    "g": ("GR", Decimal(1)),
    "ml": ("ML", Decimal(1)),
    "units": ("UN", Decimal(1)),
    "usp units": ("UN", Decimal(1)),
    "unit": ("UN", Decimal(1)),
    "iu": ("F2", Decimal(1)),
    "international units": ("F2", Decimal(1)),
}
_V2_DEGREE = "http://terminology.hl7.org/CodeSystem/v2-0360"


class NotRepresentable(ValueError):
    """The claim has something the target format cannot hold exactly."""


def _num(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _ctp(drug: Drug, units: int) -> tuple[str, str]:
    """The drug's dose as CTP04 quantity and CTP05-1 unit."""
    m = _DOSE.fullmatch(drug.dose or "")
    if m and m.group(2).lower() in _CTP_UNITS:
        code, factor = _CTP_UNITS[m.group(2).lower()]
        return _num(Decimal(m.group(1)) * factor), code
    return str(units), "UN"


def x12_projection(claim: Claim) -> Claim:
    """The claim as it reads back from its 837P: no record, credential or history; 837P doses."""

    def line(ln: Line) -> Line:
        drug = ln.drug
        if drug is not None and drug.ndc:
            qty, unit = _ctp(drug, ln.units)
            drug = Drug(drug.ndc, drug.name, f"{qty} {DRUG_UNITS[unit]}")
        elif drug is not None:  # no NDC, so no 2410 loop: only the name travels, in the NTE
            drug = Drug("", drug.name, "") if drug.name else None
        return dataclasses.replace(ln, rendering_credential=None, documentation=None, drug=drug)

    return dataclasses.replace(claim, lines=tuple(line(ln) for ln in claim.lines), history=())


def fhir_projection(claim: Claim) -> Claim:
    """The claim as it reads back from its FHIR Claim: everything but the history."""
    return dataclasses.replace(claim, history=())


def _diagnoses(claim: Claim) -> list[str]:
    seen: list[str] = []
    for ln in claim.lines:
        seen += [d for d in ln.diagnoses if d not in seen]
    return seen


# ---- X12 837P ------------------------------------------------------------------------------


def _check_x12(claim: Claim) -> None:
    if [ln.line for ln in claim.lines] != list(range(1, len(claim.lines) + 1)):
        raise NotRepresentable(f"claim {claim.id}: 837P service lines are numbered 1, 2, 3... in order (LX01)")
    if len(_diagnoses(claim)) > 12:
        raise NotRepresentable(f"claim {claim.id}: an 837P claim holds at most 12 diagnosis codes (HI)")
    for ln in claim.lines:
        if len(ln.diagnoses) > 4:
            raise NotRepresentable(f"claim {claim.id} line {ln.line}: at most 4 diagnosis pointers (SV107)")
        if not ln.diagnoses:
            raise NotRepresentable(f"claim {claim.id} line {ln.line}: an 837P line must point to a diagnosis (SV107)")


def _claim_segments(claim: Claim, hl: int) -> list[str]:
    _check_x12(claim)
    dx = _diagnoses(claim)
    first = claim.lines[0]
    claim_pos, claim_npi = first.pos, first.rendering_npi
    segs = [f"HL*{hl}*1*22*0", "SBR*P*18*******MB", f"NM1*IL*1*PATIENT*EXAMPLE****MI*{claim.patient.id}"]
    if claim.patient.birth_date:
        segs.append(f"DMG*D8*{claim.patient.birth_date.replace('-', '')}*{claim.patient.sex or 'U'}")
    segs += ["NM1*PR*2*EXAMPLE PAYER*****PI*PAYER01", f"CLM*{claim.id}*0***{claim_pos}:B:1*Y*A*Y*Y"]
    if dx:
        codes = [f"{'ABK' if i == 0 else 'ABF'}:{d.replace('.', '')}" for i, d in enumerate(dx)]
        segs.append("HI*" + "*".join(codes))
    segs.append(f"NM1*82*1*PROVIDER*RENDERING****XX*{claim_npi}")
    for ln in claim.lines:
        composite = ":".join(["HC", ln.code, *ln.modifiers])
        pointers = ":".join(str(dx.index(d) + 1) for d in ln.diagnoses)
        pos = ln.pos if ln.pos != claim_pos else ""
        sv1 = f"SV1*{composite}*0*UN*{ln.units}*{pos}**{pointers}".rstrip("*")
        segs += [f"LX*{ln.line}", sv1, f"DTP*472*D8*{ln.service_date.replace('-', '')}"]
        if ln.drug is not None and ln.drug.name:
            segs.append(f"NTE*ADD*{ln.drug.name}")
        if ln.drug is not None and ln.drug.ndc:  # the 2410 loop needs an NDC (LIN03)
            qty, unit = _ctp(ln.drug, ln.units)
            segs += [f"LIN**N4*{ln.drug.ndc.replace('-', '')}", f"CTP****{qty}*{unit}"]
        if ln.rendering_npi != claim_npi:
            segs.append(f"NM1*82*1*PROVIDER*RENDERING****XX*{ln.rendering_npi}")
    return segs


def to_x12(claims: list[Claim], control: int = 1) -> str:
    """One interchange, one 837P transaction, each claim under its own subscriber HL.

    Segments end with `~` and a newline so a reader's line numbers are segment numbers.
    """
    if not claims:
        raise NotRepresentable("no claims to write")
    npi = claims[0].lines[0].rendering_npi
    date8 = CREATED.replace("-", "")
    body = [
        f"BHT*0019*00*PKB{control:06d}*{date8}*1200*CH",
        "NM1*41*2*POLICYKB EXAMPLES*****46*POLICYKB",
        "PER*IC*BILLING OFFICE*TE*5555550100",
        "NM1*40*2*EXAMPLE PAYER*****46*PAYER01",
        "HL*1**20*1",
        f"NM1*85*2*EXAMPLE CLINIC*****XX*{npi}",
        "N3*100 MAIN STREET",
        "N4*SPRINGFIELD*IL*627010000",
        "REF*EI*123456789",
    ]
    for i, claim in enumerate(claims):
        body += _claim_segments(claim, i + 2)
    return interchange(
        transaction="837",
        version="005010X222A1",
        functional_id="HC",
        receiver="PAYER01",
        date8=date8,
        control=control,
        body=body,
    )


# ---- FHIR Claim ----------------------------------------------------------------------------


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    c = {"system": system, "code": code}
    return {**c, "display": display} if display else c


def _procedure_system(code: str) -> str:
    return HCPCS_SYSTEM if code[:1].isalpha() else CPT_SYSTEM


def _record_entries(ln: Line, start: int) -> list[dict[str, Any]]:
    doc = ln.documentation
    if doc is None:
        return []
    values: list[tuple[str, Any]] = [(RECORD_REVIEWED, True)]
    values += [(f.name, getattr(doc, f.name)) for f in dataclasses.fields(doc) if getattr(doc, f.name) is not None]
    entries = []
    for k, (element, value) in enumerate(values):
        entries.append(
            {
                "sequence": start + k,
                "category": {"coding": [_coding(INFO_CATEGORY, "info")]},
                "code": {"coding": [_coding(RECORD_SYSTEM, element)]},
                "valueBoolean" if isinstance(value, bool) else "valueString": value,
            }
        )
    return entries


def to_fhir(claim: Claim) -> dict[str, Any]:
    """The claim as a FHIR R4 Claim resource (professional), with contained Patient and
    Practitioners so the file stands alone."""
    dx = _diagnoses(claim)
    team: list[tuple[str, str | None]] = []
    for ln in claim.lines:
        if (ln.rendering_npi, ln.rendering_credential) not in team:
            team.append((ln.rendering_npi, ln.rendering_credential))
    npis = list(dict.fromkeys(npi for npi, _ in team))
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "patient",
        "identifier": [{"system": "urn:policykb:patient", "value": claim.patient.id}],
    }
    if claim.patient.birth_date:
        patient["birthDate"] = claim.patient.birth_date
    if claim.patient.sex:
        patient["gender"] = {"F": "female", "M": "male"}.get(claim.patient.sex.upper(), "unknown")
    contained = [patient] + [
        {
            "resourceType": "Practitioner",
            "id": f"practitioner-{i + 1}",
            "identifier": [{"system": NPI_SYSTEM, "value": npi}],
        }
        for i, npi in enumerate(npis)
    ]
    care_team = []
    for k, (npi, credential) in enumerate(team):
        member: dict[str, Any] = {"sequence": k + 1, "provider": {"reference": f"#practitioner-{npis.index(npi) + 1}"}}
        if credential:
            member["qualification"] = {"coding": [_coding(_V2_DEGREE, credential)]}
        care_team.append(member)
    info: list[dict[str, Any]] = []
    items = []
    for ln in claim.lines:
        entries = _record_entries(ln, len(info) + 1)
        info += entries
        item: dict[str, Any] = {
            "sequence": ln.line,
            "careTeamSequence": [team.index((ln.rendering_npi, ln.rendering_credential)) + 1],
            "productOrService": {"coding": [_coding(_procedure_system(ln.code), ln.code)]},
            "servicedDate": ln.service_date,
            "locationCodeableConcept": {"coding": [_coding(POS_SYSTEM, ln.pos)]},
            "quantity": {"value": ln.units},
        }
        if ln.diagnoses:
            item["diagnosisSequence"] = [dx.index(d) + 1 for d in ln.diagnoses]
        if entries:
            item["informationSequence"] = [e["sequence"] for e in entries]
        if ln.modifiers:
            item["modifier"] = [{"coding": [_coding(_procedure_system(m), m)]} for m in ln.modifiers]
        if ln.drug is not None:
            detail: dict[str, Any] = {
                "sequence": 1,
                "productOrService": {"coding": [_coding(NDC_SYSTEM, ln.drug.ndc, ln.drug.name or None)]}
                if ln.drug.ndc
                else {"text": ln.drug.name},  # no NDC: the drug is named by text only
            }
            m = _DOSE.fullmatch(ln.drug.dose or "")
            if m:
                detail["quantity"] = {"value": float(m.group(1)) if "." in m.group(1) else int(m.group(1))}
                if m.group(2):
                    detail["quantity"]["unit"] = m.group(2)
            elif ln.drug.dose:
                raise NotRepresentable(f"claim {claim.id} line {ln.line}: dose {ln.drug.dose!r} is not a quantity")
            item["detail"] = [detail]
        items.append(item)
    resource: dict[str, Any] = {
        "resourceType": "Claim",
        "id": claim.id,
        "contained": contained,
        "status": "active",
        "type": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional")]},
        "use": "claim",
        "patient": {"reference": "#patient"},
        "created": CREATED,
        "provider": {"reference": "#practitioner-1"},
        "priority": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal")]},
        "careTeam": care_team,
    }
    if info:
        resource["supportingInfo"] = info
    if dx:
        resource["diagnosis"] = [
            {"sequence": i + 1, "diagnosisCodeableConcept": {"coding": [_coding(ICD10_SYSTEM, d)]}}
            for i, d in enumerate(dx)
        ]
    resource["insurance"] = [{"sequence": 1, "focal": True, "coverage": {"display": "example coverage"}}]
    resource["item"] = items
    return resource


def to_fhir_bundle(claims: list[Claim]) -> dict[str, Any]:
    """A collection Bundle of the claims, in order."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:claim-{i + 1}", "resource": to_fhir(c)} for i, c in enumerate(claims)],
    }


# ---- the bundled examples ------------------------------------------------------------------


def example_files(root: Path) -> dict[Path, str]:
    """Every file `examples/x12/` and `examples/fhir/` should hold, with its content."""
    examples = root / "examples"
    out: dict[Path, str] = {}
    for path in sorted(examples.glob("*.json")):
        claims = load_claims(path)
        if x12_obstacle(claims) is None:  # e.g. a line without a diagnosis has no 837P form
            out[examples / "x12" / f"{path.stem}.x12"] = to_x12(claims)
        document = to_fhir(claims[0]) if len(claims) == 1 else to_fhir_bundle(claims)
        out[examples / "fhir" / f"{path.stem}.json"] = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    batch = [c for c in _batch_claims(examples / "batch.jsonl") if x12_obstacle([c]) is None]
    if batch:
        out[examples / "x12" / "batch.x12"] = to_x12(batch)
        out[examples / "fhir" / "batch.json"] = json.dumps(to_fhir_bundle(batch), indent=2, ensure_ascii=False) + "\n"
    return out


def x12_obstacle(claims: list[Claim]) -> str | None:
    """Why these claims have no valid 837P form, or None when they have one."""
    try:
        for claim in claims:
            _check_x12(claim)
    except NotRepresentable as e:
        return str(e)
    return None


def _batch_claims(path: Path) -> list[Claim]:
    """The readable claims of the JSONL batch (its deliberately broken records are left out)."""
    if not path.is_file():
        return []
    claims = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            claims.append(parse_claim_text(text))
        except ClaimError:
            continue
    return claims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale or missing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in example_files(args.root).items():
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    verb = "stale" if args.check else "written"
    print(f"{len(stale)} file(s) {verb}" + "".join(f"\n  {p.relative_to(args.root)}" for p in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
