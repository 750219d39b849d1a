"""An adjudication result as 835 adjustments: per line the CAS and LQ segments that carry its
group code, CARCs and RARCs, and with `to_x12` a whole X12 5010 835 (005010X221A1).

A line's adjustments are its deny reasons in force, grouped the way CAS groups them (one CAS per
group code, up to six reason/amount pairs each) with one `LQ*HE` per distinct RARC. We compute
no money: the claim model has no charges, so every amount is 0 and the 835 is a notification
(BPR01 `H`, BPR04 `NON`). A claim with every line denied has CLP02 `4` (denied), else `1`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from engine.claims import Claim
from engine.formats.envelope import interchange
from engine.formats.out_fhir import deny_reasons

MAX_CAS_PAIRS = 6


def line_adjustments(line: dict[str, Any]) -> dict[str, Any]:
    """One result line as its 835 adjustments: groups, CARCs, RARCs and the segments."""
    groups: dict[str, list[str]] = {}
    remarks: list[str] = []
    for r in deny_reasons(line):
        carcs = groups.setdefault(r.get("group") or "CO", [])
        if r.get("carc") and r["carc"] not in carcs:
            carcs.append(r["carc"])
        remarks += [code for code in r.get("rarc", []) if code not in remarks]
    segments = []
    for group, carcs in groups.items():
        for start in range(0, len(carcs), MAX_CAS_PAIRS):
            pairs = carcs[start : start + MAX_CAS_PAIRS]
            # CAS02-04, CAS05-07, ...: reason, amount, quantity (left empty).
            segments.append("*".join(["CAS", group, *(f"{c}*0*" for c in pairs)]).rstrip("*"))
    segments += [f"LQ*HE*{code}" for code in remarks]
    return {
        "line": line["line"],
        "code": line["code"],
        "decision": line["decision"],
        "adjustments": [{"group": g, "carc": c, "amount": "0"} for g, cs in groups.items() for c in cs],
        "remarks": remarks,
        "segments": segments,
    }


def claim_adjustments(claim: Claim, result: dict[str, Any]) -> dict[str, Any]:
    """The record `--format 835` prints for one claim (JSON): with each line the service it
    answers (code, modifiers, units, date), so the record alone can be posted or written as X12."""
    served = {ln.line: ln for ln in claim.lines}
    lines = []
    for ln in result.get("lines", []):
        src = served[ln["line"]]
        lines.append(
            {
                **line_adjustments(ln),
                "modifiers": list(src.modifiers),
                "units": src.units,
                "service_date": src.service_date,
                "rendering_npi": src.rendering_npi,
            }
        )
    return {"claim": claim.id, "patient": claim.patient.id, "kb": result.get("kb"), "lines": lines}


def _claim_loop(record: dict[str, Any]) -> list[str]:
    lines = record["lines"]
    status = "4" if lines and all(ln["decision"] == "deny" for ln in lines) else "1"
    segs = [
        f"CLP*{record['claim']}*{status}*0*0**MB*{record['claim']}",
        f"NM1*QC*1*PATIENT*EXAMPLE****MI*{record['patient']}",
    ]
    for ln in lines:
        composite = ":".join(["HC", ln["code"], *ln["modifiers"]])
        segs += [f"SVC*{composite}*0*0**{ln['units']}", f"DTM*472*{ln['service_date'].replace('-', '')}"]
        segs += [s for s in ln["segments"] if s.startswith("CAS")]
        segs.append(f"REF*6R*{ln['line']}")
        segs += [s for s in ln["segments"] if s.startswith("LQ")]
    return segs


def to_x12(records: list[dict[str, Any]], *, today: date | None = None, control: int = 1) -> str:
    """One 835 interchange answering the claims (claim_adjustments records), in order."""
    day = (today or date.today()).strftime("%Y%m%d")
    npi = records[0]["lines"][0]["rendering_npi"] if records and records[0]["lines"] else "0000000000"
    body = [
        f"BPR*H*0*C*NON************{day}",
        f"TRN*1*PKB{control:09d}*1000000000",
        f"DTM*405*{day}",
        "N1*PR*POLICYKB SCRUBBER",
        "N3*100 MAIN STREET",
        "N4*SPRINGFIELD*IL*627010000",
        "PER*BL*CLAIMS*TE*5555550100",
        f"N1*PE*PAYEE*XX*{npi}",
    ]
    if records:
        body.append("LX*1")
    for record in records:
        body += _claim_loop(record)
    return interchange(
        transaction="835",
        version="005010X221A1",
        functional_id="HP",
        receiver="PAYEE",
        date8=day,
        control=control,
        body=body,
    )
