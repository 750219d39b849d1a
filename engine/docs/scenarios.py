"""The claims the "Why does my line deny?" guide walks through, adjudicated when the site is built.

Only inputs live here; the decisions shown come from the engine, so the guide cannot drift from
the rules. One provider, one date: an established-patient visit, the injection and its drug.
"""

from __future__ import annotations

import copy

_NPI = "1234567893"
_DATE = "2024-09-03"


def _claim(claim_id: str, pos: str, em_modifiers: list[str]) -> dict:
    em: dict = {"line": 1, "service_date": _DATE, "code": "99213", "pos": pos, "rendering_npi": _NPI}
    if em_modifiers:
        em["modifiers"] = em_modifiers
    return {
        "id": claim_id,
        "patient": {"id": "PAT-1"},
        "lines": [
            em,
            {"line": 2, "service_date": _DATE, "code": "96372", "pos": pos, "rendering_npi": _NPI},
            {"line": 3, "service_date": _DATE, "code": "J3420", "pos": pos, "rendering_npi": _NPI,
             "drug": {"name": "cyanocobalamin", "dose": "1000 mcg"}},
        ],
    }


SCENARIOS: list[tuple[str, dict]] = [
    ("In POS 22 (on-campus outpatient hospital), 99213 and 96372", _claim("GUIDE-POS22", "22", [])),
    ("In POS 11 (office), 99213 without a modifier", _claim("GUIDE-POS11", "11", [])),
    ("In POS 11 (office), 99213 with modifier 25", _claim("GUIDE-POS11-25", "11", ["25"])),
]


def scenarios() -> list[tuple[str, dict]]:
    return copy.deepcopy(SCENARIOS)
