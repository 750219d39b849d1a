"""The benchmark's NCCI oracle on the real shipped tables, its corpus, and its baselines.

The oracle is what PolicyKB's NCCI decisions are checked against, so its behaviour is pinned
here with hand-built claims whose outcomes follow from real table rows (quoted in each test).
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from benchmarks.corpus import generate, strip_meta
from benchmarks.oracle import Oracle, ncci_kinds_of_result
from benchmarks.tables import NcciTables, shared_tables
from engine.claims import parse_claim

NPI = "1234567893"
OTHER_NPI = "1098765432"


@pytest.fixture(scope="module")
def tables() -> NcciTables:
    return shared_tables()


@pytest.fixture(scope="module")
def oracle(tables: NcciTables) -> Oracle:
    return Oracle(tables)


def claim(*lines: tuple, history: tuple = ()) -> Any:
    """lines: (code, modifiers, units[, npi[, date]]); history the same shape."""
    def svc(i: int, spec: tuple) -> dict[str, Any]:
        code, mods, units, *rest = spec
        npi = rest[0] if rest else NPI
        dos = rest[1] if len(rest) > 1 else "2024-03-04"
        return {"line": i, "service_date": dos, "code": code, "modifiers": list(mods),
                "units": units, "pos": "11", "rendering_npi": npi}

    obj: dict[str, Any] = {
        "id": "T-1", "patient": {"id": "P-1"},
        "lines": [svc(i, spec) for i, spec in enumerate(lines, start=1)],
    }
    if history:
        obj["history"] = [{"claim_id": "OLD-1", **svc(i, spec)}
                          for i, spec in enumerate(history, start=1)]
    return parse_claim(obj)


def test_tables_hold_the_rows_these_tests_rely_on(tables: NcciTables) -> None:
    assert tables.ptp_rows("96372", "99213") == (("", "", 1),)
    assert tables.ptp_rows("96372", "99211") == (("", "", 0),)
    assert tables.ptp_rows("27380", "27540") == (("", "2024-06-30", 1),)
    assert tables.ptp_rows("27540", "27380") == (("", "", 1),)
    assert tables.ptp_rows("20610", "96372") == (("", "", 1),)
    assert tables.mue["96372"] == (4, 3)
    assert tables.mue["90471"] == (1, 2)
    assert tables.aoc_code["90472"] == 1
    assert tables.aoc_primary["90472"] == {"90460", "90471", "90473", "G0008", "G0009", "G0010"}
    # 2.5M rows read; active rows plus those deleted in 2024 kept.
    assert tables.ptp_rows_read == 2_546_017
    assert 1_669_820 <= tables.ptp_rows_kept < 1_671_000


def test_modifier_roles_come_from_the_kb(tables: NcciTables) -> None:
    assert tables.bypass_on_column2 == {"59", "XE", "XS", "XP", "XU", "25", "57", "24", "58",
                                        "78", "79", "27", "91"}
    assert tables.distinct_service == {"59", "XE", "XS", "XP", "XU"}
    assert {"LT", "RT", "F1", "TA", "E1", "LC"} <= tables.anatomic


def test_em_with_96372_needs_modifier_25(oracle: Oracle) -> None:
    assert oracle.check(claim(("96372", [], 1), ("99213", [], 1))) == {2: ["ncci_ptp"]}
    assert oracle.check(claim(("96372", [], 1), ("99213", ["25"], 1))) == {}
    # 59/X never separate an E/M column 2 code, on either line: NCCI lets only 25 do that
    assert oracle.check(claim(("96372", ["59"], 1), ("99213", [], 1))) == {2: ["ncci_ptp"]}
    assert oracle.check(claim(("17110", ["XU"], 1), ("99213", [], 1))) == {2: ["ncci_ptp"]}
    assert oracle.check(claim(("96372", [], 1), ("99213", ["59"], 1))) == {2: ["ncci_ptp"]}
    # ... while they do separate other column 2 codes: (20610, 96372) indicator 1
    assert oracle.check(claim(("20610", ["59"], 1), ("96372", [], 1))) == {}
    assert oracle.check(claim(("17110", [], 1), ("99213", [], 1))) == {2: ["ncci_ptp"]}
    # a modifier that is not NCCI-associated does not
    assert oracle.check(claim(("96372", [], 1), ("99213", ["22"], 1))) == {2: ["ncci_ptp"]}


def test_99211_with_96372_is_never_paid(oracle: Oracle) -> None:
    assert oracle.check(claim(("96372", [], 1), ("99211", ["25"], 1))) == {2: ["ncci_ptp"]}


def test_deleted_row_applies_up_to_its_deletion_date(oracle: Oracle) -> None:
    june = claim(("27380", [], 1, NPI, "2024-06-01"), ("27540", [], 1, NPI, "2024-06-01"))
    # both rows in force: (27380, 27540) until 2024-06-30, (27540, 27380) active
    assert oracle.check(june) == {1: ["ncci_ptp"], 2: ["ncci_ptp"]}
    last_day = claim(("27380", [], 1, NPI, "2024-06-30"), ("27540", [], 1, NPI, "2024-06-30"))
    assert 2 in oracle.check(last_day)
    august = claim(("27380", [], 1, NPI, "2024-08-01"), ("27540", [], 1, NPI, "2024-08-01"))
    assert oracle.check(august) == {1: ["ncci_ptp"]}  # only the active reverse row


def test_edits_need_the_same_provider_and_date(oracle: Oracle) -> None:
    assert oracle.check(claim(("96372", [], 1), ("99213", [], 1, OTHER_NPI))) == {}
    assert oracle.check(claim(("96372", [], 1), ("99213", [], 1, NPI, "2024-03-05"))) == {}


def test_history_line_is_a_partner_but_never_denied(oracle: Oracle) -> None:
    assert oracle.check(claim(("99213", [], 1), history=(("96372", [], 1),))) == {1: ["ncci_ptp"]}
    assert oracle.check(claim(("96372", [], 1), history=(("99213", [], 1),))) == {}


def test_anatomic_modifiers_bypass_only_for_different_sites(oracle: Oracle) -> None:
    # (20610, 96372) indicator 1
    assert oracle.check(claim(("20610", ["RT"], 1), ("96372", ["LT"], 1))) == {}
    assert oracle.check(claim(("20610", ["LT"], 1), ("96372", ["LT"], 1))) == {2: ["ncci_ptp"]}
    assert oracle.check(claim(("20610", [], 1), ("96372", ["LT"], 1))) == {2: ["ncci_ptp"]}
    # mb must not also be on A
    assert oracle.check(claim(("20610", ["LT", "RT"], 1), ("96372", ["LT"], 1))) == {
        2: ["ncci_ptp"]}


def test_mue_line_and_date_of_service_edits(oracle: Oracle) -> None:
    assert oracle.check(claim(("96372", [], 5))) == {1: ["ncci_mue"]}  # 4, MAI 3
    assert oracle.check(claim(("96372", [], 4))) == {}
    # MAI 2: units summed over the date, every line of the code denies
    assert oracle.check(claim(("90471", [], 1), ("90471", [], 1))) == {
        1: ["ncci_mue"], 2: ["ncci_mue"]}
    assert oracle.check(claim(("90471", [], 1), ("90471", [], 1, OTHER_NPI))) == {}
    # history units count toward the sum; the history line itself is not reported
    assert oracle.check(claim(("96372", [], 3), history=(("96372", [], 2),))) == {
        1: ["ncci_mue"]}
    assert oracle.check(claim(("96372", [], 3), history=(("96372", [], 1),))) == {}


def test_mue_line_edit_is_per_line(oracle: Oracle, tables: NcciTables) -> None:
    code = next(c for c, (v, mai) in tables.mue.items() if mai == 1 and v == 1)
    assert oracle.check(claim((code, [], 1), (code, [], 1))) == {}
    assert oracle.check(claim((code, [], 2))) == {1: ["ncci_mue"]}


def test_add_on_code_needs_a_primary(oracle: Oracle) -> None:
    assert oracle.check(claim(("90472", [], 1))) == {1: ["ncci_aoc"]}
    assert oracle.check(claim(("90471", [], 1), ("90472", [], 1))) == {}
    assert oracle.check(claim(("90472", [], 1), history=(("G0008", [], 1),))) == {}
    assert oracle.check(claim(("90471", [], 1, OTHER_NPI), ("90472", [], 1))) == {
        2: ["ncci_aoc"]}


def test_ncci_kinds_are_read_from_results_even_when_overridden() -> None:
    result = {"lines": [
        {"line": 1, "decision": "pay", "reasons": [
            {"kind": "ncci_ptp", "overridden_by": "inj.facility_em"},
            {"kind": "policy"}]},
        {"line": 2, "decision": "deny", "reasons": [{"kind": "ncci_mue"}, {"kind": "ncci_mue"}]},
        {"line": 3, "decision": "pay", "reasons": []},
    ]}
    assert ncci_kinds_of_result(result) == {1: ["ncci_ptp"], 2: ["ncci_mue"]}


def test_corpus_is_deterministic_and_every_claim_parses(tables: NcciTables) -> None:
    first = generate(tables, 300, seed=7)
    assert json.dumps(first) == json.dumps(generate(tables, 300, seed=7))
    assert json.dumps(first) != json.dumps(generate(tables, 300, seed=8))
    claims = [parse_claim(strip_meta(c)) for c in first]
    assert all(1 <= len(c.lines) <= 12 for c in claims)
    scenarios = {c["_scenario"] for c in first}
    assert {"ptp_mi0", "ptp_mi1", "ptp_mi9", "ptp_deleted", "mue", "aoc", "injection",
            "vaccine", "joint_injection", "clean"} <= scenarios


@pytest.mark.skipif(importlib.util.find_spec("clingo") is None, reason="clingo not installed")
def test_clingo_baseline_agrees_with_the_oracle(tables: NcciTables, oracle: Oracle) -> None:
    from benchmarks.clingo_baseline import ClingoChecker

    checker = ClingoChecker(tables)
    claims = [parse_claim(strip_meta(c)) for c in generate(tables, 200, seed=11)]
    disagreements = [(c.id, oracle.check(c), checker.check(c)) for c in claims
                     if oracle.check(c) != checker.check(c)]
    assert disagreements == []
    assert sum(1 for c in claims if oracle.check(c)) > 50  # the corpus does exercise denials


def test_naive_pydatalog_agrees_with_the_oracle(tables: NcciTables, oracle: Oracle) -> None:
    from benchmarks.naive_pydatalog import NaivePyDatalog, relevant_pairs, slice_rows

    claims = [parse_claim(strip_meta(c)) for c in generate(tables, 60, seed=12)]
    naive = NaivePyDatalog(tables, slice_rows(tables, relevant_pairs(claims), 2000))
    assert [naive.check(c) for c in claims] == [oracle.check(c) for c in claims]
