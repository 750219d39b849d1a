"""Code categories derived from the shipped tables (kb/codes/categories.dl), tested on real rows.

The must/must-not lists were drawn from the HCPCS October 2025 file and the CPT list before the
rules were written; each test asks the engine, which reads kb/tables, so a change in the data or
the derivation that moves one of these codes fails here.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from engine.api import PolicyKB

ROOT = Path(__file__).resolve().parent.parent
TABLES = ROOT / "kb" / "tables"

MUST = {
    "vaccine_product": [
        "Q2034",
        "Q2035",
        "Q2036",
        "Q2037",
        "Q2038",
        "Q2039",
        "90686",
        "90732",
        "91300",
        "91320",
        "91322",
    ],
    "injectable_drug": ["J3420", "J1071", "J0696", "J1040", "J2315", "Q9991", "Q9992", "Q5101", "J0401", "Q0220"],
    "chemotherapy": ["J9025", "J9045", "J9171", "J9260"],
    "hormonal_antineoplastic": ["J9217", "J9202", "J9395", "J9155", "J3315"],
    "not_injected": ["J8499", "J8520", "J8610", "J7506", "J7674", "J2062", "Q0162", "Q0511"],
}
# Codes that must fall in no drug category: administration codes (some inside the old
# vaccine-product range), DME inhalation solutions (BETOS D1G), E/M and injection services.
NONE = [
    "90480",
    "90460",
    "90461",
    "90471",
    "90472",
    "90473",
    "90474",
    "G0008",
    "G0009",
    "G0010",
    "M0201",
    "0001A",
    "J7620",
    "J7608",
    "96372",
    "96401",
    "96402",
    "99213",
]


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def categories(kb: PolicyKB, code: str) -> list[str]:
    return sorted(str(r[1]) for _s, r in kb.evaluator.lookup("drug_category", (code, None)))


@pytest.mark.parametrize("category", sorted(MUST))
def test_category_members(kb: PolicyKB, category: str) -> None:
    for code in MUST[category]:
        assert categories(kb, code) == [category], code


def test_codes_in_no_category(kb: PolicyKB) -> None:
    for code in NONE:
        assert categories(kb, code) == [], code


def _hcpcs_codes() -> list[str]:
    with gzip.open(TABLES / "hcpcs_level2.csv.gz", "rt", encoding="utf-8") as f:
        return [r["code"] for r in csv.DictReader(f) if r["code"][0] in "JQ"]


def _cpt_rows() -> list[dict[str, str]]:
    with open(TABLES / "cpt_codes.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_no_code_in_two_exclusive_categories(kb: PolicyKB) -> None:
    """Every J and Q code and every CPT code of the list: at most one drug category, and no
    vaccine administration code is also a vaccine product."""
    codes = _hcpcs_codes() + [r["code"] for r in _cpt_rows()]
    clashes = {c: cats for c in codes if len(cats := categories(kb, c)) > 1}
    assert clashes == {}
    admin_and_product = [c for c in codes if kb.evaluator.lookup("vaccine_admin", (c,)) and categories(kb, c)]
    assert admin_and_product == []


def test_every_j_q_drug_is_categorised(kb: PolicyKB) -> None:
    """A J or Q code the HCPCS BETOS calls a drug gets exactly one category."""
    for code in _hcpcs_codes():
        if kb.evaluator.lookup("hcpcs_drug", (code, None)):
            assert len(categories(kb, code)) == 1, code


def _cms_codes() -> set[str]:
    codes: set[str] = set()
    with open(TABLES / "ncci_mue_practitioner.csv", encoding="utf-8") as f:
        codes |= {r["code"] for r in csv.DictReader(f)}
    with gzip.open(TABLES / "pfs_indicators.csv.gz", "rt", encoding="utf-8") as f:
        codes |= {r["code"] for r in csv.DictReader(f)}
    with gzip.open(TABLES / "ncci_ptp_practitioner.csv.gz", "rt", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            codes.add(r["column_1"])
            codes.add(r["column_2"])
    return codes


def test_curated_cpt_codes_exist_in_cms_tables(kb: PolicyKB) -> None:
    """Each curated CPT category member and each code named by a vaccine family or a
    long-acting injectable is a code some CMS table (NCCI PTP, MUE, PFS) or HCPCS lists."""
    cms = _cms_codes() | set(_hcpcs_codes())
    curated = [r["code"] for r in _cpt_rows()]
    families = [str(r[0]) for _s, r in kb.evaluator.lookup("cpt_vaccine_family", (None, None))]
    lai = [str(r[0]) for _s, r in kb.evaluator.lookup("long_acting_injectable", (None,))]
    assert families and lai
    assert sorted(c for c in curated + families + lai if c not in cms) == []
    for code in families:
        assert categories(kb, code) == ["vaccine_product"], code


def test_medicare_vaccine_admin_codes(kb: PolicyKB) -> None:
    def admin(code: str) -> list[str]:
        return sorted(str(r[1]) for _s, r in kb.evaluator.lookup("vaccine_admin_code_for", (code, None)))

    assert admin("Q2035") == ["G0008"]
    assert admin("90686") == ["G0008"]
    assert admin("90732") == ["G0009"]
    assert admin("90746") == ["G0010"]
    assert admin("91320") == ["90480"]
    assert admin("90715") == ["90471"]  # Tdap: no Medicare-specific administration code


def test_route_alternatives_name_listed_injection_or_infusion_codes(kb: PolicyKB) -> None:
    """The code each non-96372 route points to is in the CPT list's injection or infusion family."""
    rows = kb.evaluator.lookup("route_alternative", (None, None, None))
    codes = {str(r[1]) for _s, r in rows if r[1]}
    assert codes == {"96365", "96369", "96373", "96374"}
    for code in codes:
        cats = [str(r[1]) for _s, r in kb.evaluator.lookup("code_category", (code, None))]
        assert cats in (["injection"], ["hydration_infusion"]), code
