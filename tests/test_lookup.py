"""`policykb rules` and `policykb code` on the bundled KB, and the library both they and the
HTTP service use (engine/lookup.py).

Expectations come from the KB sources and the tables, read here independently of the engine:
96372 has an MUE of 4 with MAI 3; it is column 2 of 20610/96372 (modifier indicator 1) and column
1 of 96372/99211 (indicator 0, an active row and one deleted 2019-12-31); 27540 is column 2 of
27380/27540, deleted 2024-06-30; 90472 is a type 1 add-on whose primaries include 90471 and
G0008 (ncci_aoc_primaries.csv); 96372 has the facility NA indicator in the fee schedule.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KB = ROOT / "kb"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=ROOT)


def rule_annotations() -> dict[str, dict[str, str]]:
    """rule id -> its annotations, read from the .dl sources with a regex (not the parser)."""
    out: dict[str, dict[str, str]] = {}
    for path in KB.rglob("*.dl"):
        for doc in re.findall(r"/\*\*(.*?)\*/", path.read_text(encoding="utf-8"), re.S):
            ann = dict(re.findall(r"@(\w+)[ \t]+([^\n]*)", doc))
            if "id" in ann:
                out[ann["id"].strip()] = {k: v.strip() for k, v in ann.items()}
    return out


def ptp_rows(code: str, column: int) -> list[dict[str, str]]:
    with gzip.open(KB / "tables/ncci_ptp_practitioner.csv.gz", "rt", encoding="utf-8", newline="") as f:
        return [r for r in csv.DictReader(f) if r[f"column_{column}"] == code]


@pytest.fixture(scope="module")
def code_96372() -> str:
    r = run("code", "96372")  # piped: every partner is listed
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_rules_lists_every_rule_with_kind_and_denial_codes() -> None:
    ann = rule_annotations()
    r = run("rules")
    assert r.returncode == 0, r.stderr
    listed = {ln.split()[0] for ln in r.stdout.splitlines()[1:] if ln.strip() and not ln.endswith("rule(s)")}
    assert listed == set(ann)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("inj.facility_pos "))
    a = ann["inj.facility_pos"]
    assert a["kind"] in line and f"{a['group']}-{a['carc']} {a['rarc']}" in line and a["title"] in line
    assert f"{len(ann)} rule(s)" in r.stdout


def test_rules_kind_filter_and_an_unknown_kind() -> None:
    ann = rule_annotations()
    doc_rules = {rid for rid, a in ann.items() if a.get("kind") == "documentation"}
    assert doc_rules  # the KB has documentation rules
    r = run("rules", "--kind", "documentation")
    listed = {ln.split()[0] for ln in r.stdout.splitlines()[1:] if ln.strip() and not ln.endswith("rule(s)")}
    assert r.returncode == 0 and listed == doc_rules
    bad = run("rules", "--kind", "nonsense")
    assert bad.returncode == 2 and "documentation" in bad.stderr


def test_one_rule_shows_source_citation_annotations_and_its_cases() -> None:
    a = rule_annotations()["ncci.ptp"]
    cases = []
    for path in KB.rglob("*.cases.json"):
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            in_expect = any("ncci.ptp" in (e.get("rules") or []) for e in case.get("expect", {}).values())
            if in_expect or "ncci.ptp" in case.get("about", []):
                cases.append(case["name"])
    r = run("rules", "ncci.ptp")
    assert r.returncode == 0, r.stderr
    assert 'deny(l, "ncci.ptp") :-' in r.stdout and "kb/ncci/edits.dl:" in r.stdout
    assert a["source"] in r.stdout and "@carc" in r.stdout and "CO-236 N20" in r.stdout
    assert f"policy cases ({len(cases)})" in r.stdout
    assert all(name in r.stdout for name in cases)


def test_unknown_rule_gets_suggestions_and_exit_2() -> None:
    r = run("rules", "ncci.ptq")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no rule with id 'ncci.ptq'" in r.stderr and "did you mean ncci.ptp" in r.stderr


def test_code_shows_mue_category_and_ptp_partners_both_ways(code_96372: str) -> None:
    out = code_96372
    assert "category       injection" in out
    assert re.search(r"^  MUE\s+4 unit\(s\) per patient, provider and date; MAI 3 \(", out, re.M)
    as_1, as_2 = ptp_rows("96372", 1), ptp_rows("96372", 2)
    active_1 = [r for r in as_1 if not r["deletion_date"]]
    active_2 = [r for r in as_2 if not r["deletion_date"]]
    assert (
        f"NCCI PTP practitioner edits, as column 1: partners not paid beside it: {len(as_1):,} row(s), {len(active_1):,} active"
        in out
    )
    assert (
        f"NCCI PTP practitioner edits, as column 2: codes it is not paid beside: {len(as_2):,} row(s), {len(active_2):,} active"
        in out
    )
    col2 = out[out.index("edits, as column 2") :]
    assert re.search(r"^20610\s+-\s+active\s+1 \(a modifier may bypass it\)", col2, re.M)
    col1 = out[out.index("edits, as column 1") : out.index("edits, as column 2")]
    assert re.search(r"^99211\s+-\s+active\s+0 \(no modifier allowed\)", col1, re.M)
    assert re.search(r"^99211\s+-\s+2019-12-31\s+0", col1, re.M)


def test_code_lists_the_rules_that_can_decide_it(code_96372: str) -> None:
    deciding = code_96372[code_96372.index("rules that can decide it") :]
    for rid in ("ncci.ptp", "ncci.mue.date_clinical", "inj.facility_em", "fee.facility_na"):
        assert f"  {rid} " in deciding
    # 96372's MUE has MAI 3 and its fee schedule row has facility NA only: the other MUE rules and
    # the non-facility NA rule cannot fire for it
    for rid in ("ncci.mue.line", "ncci.mue.date_policy", "fee.non_facility_na"):
        assert f"  {rid} " not in deciding


def test_code_pages_partners_with_a_count() -> None:
    r = run("code", "27540", "--limit", "2")
    assert r.returncode == 0, r.stderr
    as_2 = ptp_rows("27540", 2)
    assert f"… {len(as_2) - 2:,} more; --all or --limit N lists them" in r.stdout
    full = run("code", "27540", "--status", "deleted").stdout
    assert re.search(r"^27380\s+-\s+2024-06-30\s+1", full[full.index("edits, as column 2") :], re.M)


def test_add_on_code_shows_its_primaries() -> None:
    with open(KB / "tables/ncci_aoc_primaries.csv", encoding="utf-8") as f:
        primaries = sorted(r["primary_code"] for r in csv.DictReader(f) if r["add_on_code"] == "90472")
    r = run("code", "90472")
    assert re.search(r"^  Add-on code\s+edit type 1$", r.stdout, re.M)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("  Primary codes"))
    assert {"90471", "G0008"} <= set(primaries)
    assert ", ".join(primaries[:12]) in line
    if len(primaries) > 12:
        assert f"… and {len(primaries) - 12} more" in line


def test_unknown_code_gets_suggestions_and_exit_2() -> None:
    r = run("code", "96373X")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "96373X" in r.stderr and "did you mean 96373" in r.stderr


def test_the_service_uses_the_same_look_up() -> None:
    """One implementation: the service's catalog delegates to engine.lookup."""
    import inspect

    from engine.service import catalog

    source = inspect.getsource(catalog.Catalog.code) + inspect.getsource(catalog.Catalog.rule)
    assert "lookup.code(" in source and "lookup.rule(" in source
    assert "store.lookup" not in inspect.getsource(catalog)
