"""The CLI: exit codes and clear messages for bad input, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main

CLAIM = {"id": "CLM-T1", "patient": {"id": "PAT-1"}, "lines": [
    {"line": 1, "service_date": "2024-08-02", "code": "96372", "pos": "11", "rendering_npi": "1234567893",
     "diagnoses": ["D51.0"]},
    {"line": 2, "service_date": "2024-08-02", "code": "99213", "pos": "11", "rendering_npi": "1234567893"},
    {"line": 3, "service_date": "2024-08-02", "code": "J3420", "pos": "11", "rendering_npi": "1234567893",
     "drug": {"ndc": "00409-4911-01", "name": "cyanocobalamin", "dose": "1000 mcg"}}]}


def _write(tmp_path: Path, obj, name: str = "claim.json") -> Path:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


def test_help_lists_commands_with_examples() -> None:
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for cmd in ("check", "explain", "scrub", "docs"):
        assert cmd in res.output
    assert "Examples:" in res.output


def test_check_clean_kb_exits_0() -> None:
    res = CliRunner().invoke(main, ["check", "kb"])
    assert res.exit_code == 0, res.output
    assert "0 error(s)" in res.output


def test_check_broken_kb_exits_1_with_locations(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("POLICYKB_CACHE_DIR", str(tmp_path))
    res = CliRunner().invoke(main, ["check", "tests/fixtures/broken_kb"])
    assert res.exit_code == 1
    assert "tests/fixtures/broken_kb/rules.dl:20:12: error[arity-mismatch]" in res.output
    assert "Traceback" not in res.output


def test_explain_json_decides_each_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["explain", str(_write(tmp_path, CLAIM)), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    decisions = {ln["line"]: ln["decision"] for ln in data["lines"]}
    assert decisions == {1: "pay", 2: "deny", 3: "pay"}
    reason = data["lines"][1]["reasons"][0]
    assert (reason["rule"], reason["kind"], reason["group"], reason["carc"]) == ("ncci.ptp", "ncci_ptp", "CO", "236")
    assert {r["change"] for r in reason["remedies"]} >= {"add modifier 25 to line 2"}


def test_explain_text_leads_with_the_primary_reason_and_because(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["explain", str(_write(tmp_path, CLAIM)), "--line", "2"])
    assert res.exit_code == 0, res.output
    assert "DENY" in res.output and "PRIMARY  ncci.ptp" in res.output
    assert "because" in res.output and "NCCI PTP practitioner edits, Medicare 2024 Q3, row " in res.output
    # the derivation itself is only shown with --trace
    assert "kb/tables/ncci_ptp_practitioner.csv.gz row" not in res.output
    assert "ptp_hit(" not in res.output


def test_explain_trace_shows_the_proof(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["explain", str(_write(tmp_path, CLAIM)), "--line", "2", "--trace"])
    assert res.exit_code == 0, res.output
    assert "proof" in res.output and "ptp_hit(2, " in res.output
    assert "kb/tables/ncci_ptp_practitioner.csv.gz row" in res.output


def test_explain_json_carries_primary_and_null_remedies_when_not_searched(tmp_path: Path) -> None:
    path = str(_write(tmp_path, CLAIM))
    data = json.loads(CliRunner().invoke(main, ["explain", path, "--format", "json", "--no-remedies"]).output)
    assert [ln["primary"] for ln in data["lines"]] == [None, "ncci.ptp", None]
    reason = data["lines"][1]["reasons"][0]
    assert reason["role"] == "primary" and reason["remedies"] is None
    assert reason["because"] and all(isinstance(s, str) for s in reason["because"])


def test_why_not_names_the_first_failing_condition(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["explain", str(_write(tmp_path, CLAIM)), "--line", "1",
                                    "--why-not", "inj.facility_em", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["fired"] is False
    assert data["failed_condition"] == 'facility_em_pos("11")'


def test_bad_claims_exit_2_naming_the_field(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(CLAIM))
    bad["lines"][0]["service_date"] = "2024-02-30"
    bad["lines"][1]["units"] = "two"
    res = CliRunner().invoke(main, ["explain", str(_write(tmp_path, bad))])
    assert res.exit_code == 2
    assert "lines[0].service_date" in res.output and "lines[1].units" in res.output
    assert "Traceback" not in res.output


def test_malformed_json_and_missing_file_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["explain", str(_write(tmp_path, '{"id": "x", "lines": [}'))])
    assert res.exit_code == 2 and "line 1" in res.output
    res = CliRunner().invoke(main, ["explain", str(tmp_path / "nope.json")])
    assert res.exit_code == 2 and "no such file" in res.output


def test_unknown_code_is_a_line_denial_not_an_error(tmp_path: Path) -> None:
    claim = json.loads(json.dumps(CLAIM))
    claim["lines"][2]["code"] = "Z9999"
    res = CliRunner().invoke(main, ["explain", str(_write(tmp_path, claim)), "--format", "json"])
    assert res.exit_code == 0
    line3 = json.loads(res.stdout)["lines"][2]
    assert line3["decision"] == "deny"
    assert [r["rule"] for r in line3["reasons"]] == ["validity.unknown_code"]


def test_why_not_unknown_rule_exits_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["explain", str(_write(tmp_path, CLAIM)), "--line", "1", "--why-not", "no.such"])
    assert res.exit_code == 2 and "no rule with id no.such" in res.output


def test_scrub_writes_one_record_per_input_line(tmp_path: Path) -> None:
    good = json.dumps(CLAIM)
    src = _write(tmp_path, "\n".join([good, "{not json", good.replace("CLM-T1", "CLM-T2")]) + "\n", "in.jsonl")
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(main, ["scrub", str(src), "-o", str(out)])
    assert res.exit_code == 1  # one record failed
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 3
    assert records[0]["claim"] == "CLM-T1" and records[2]["claim"] == "CLM-T2"
    assert records[1]["error"]["record"] == 2
    # scrub does not search for remedies: the JSON says so with null, not an empty list
    reasons = [r for ln in records[0]["lines"] for r in ln["reasons"]]
    assert reasons and all(r["remedies"] is None for r in reasons)
    assert [ln["primary"] for ln in records[0]["lines"]] == [None, "ncci.ptp", None]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_stops_scrub_with_exit_2_naming_its_files(tmp_path: Path) -> None:
    # A write error (here ENOSPC from /dev/full) carries no file name: the message once read only
    # "[Errno 28] No space left on device", saying neither what was read nor where it went.
    src = _write(tmp_path, json.dumps(CLAIM) + "\n", "in.jsonl")
    for args in (["--workers", "1"], ["--workers", "2"]):
        res = CliRunner().invoke(main, ["scrub", str(src), "-o", "/dev/full", *args])
        assert res.exit_code == 2, res.output
        assert f"scrub stopped reading {src} into /dev/full: No space left on device" in " ".join(res.output.split())


def test_a_line_number_too_big_to_store_is_an_error_record_naming_its_field(tmp_path: Path) -> None:
    # A line number had no upper bound: one past 64 bits passed validation, then the DuckDB
    # backend failed to load the chunk and the record said "adjudication failed: Conversion
    # Error ... CSV Error" naming a temporary file. The largest line number any supported format
    # carries (FHIR's positiveInt) is still a claim.
    import copy

    top = copy.deepcopy(CLAIM)
    top["lines"][2]["line"] = 2_147_483_647
    over = copy.deepcopy(CLAIM)
    over["lines"][1]["line"] = 2**70
    history = copy.deepcopy(CLAIM)
    history["history"] = [{"claim_id": "CLM-OLD", "line": 2_147_483_648, "service_date": "2024-07-01",
                           "code": "96372", "pos": "11", "rendering_npi": "1234567893"}]
    src = _write(tmp_path, "\n".join(json.dumps(c) for c in (top, over, history)) + "\n", "in.jsonl")
    out = tmp_path / "out.jsonl"
    for args in (["--workers", "1"], ["--workers", "2"], ["--engine", "pydatalog"]):
        res = CliRunner().invoke(main, ["scrub", str(src), "-o", str(out), *args])
        assert res.exit_code == 1, res.output
        records = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert len(records) == 3
        assert [ln["line"] for ln in records[0]["lines"]] == [1, 2, 2_147_483_647]
        for record, field in ((records[1], "lines[1].line"), (records[2], "history[0].line")):
            assert record["error"]["claim"] == "CLM-T1"
            (problem,) = record["error"]["problems"]
            assert problem["field"] == field
            assert problem["message"].startswith("must be between 1 and 2147483647, got ")


def test_a_lone_surrogate_is_an_error_record_naming_its_field(tmp_path: Path) -> None:
    # JSON may escape half of a UTF-16 surrogate pair; such text cannot be written as UTF-8, so
    # it must be refused where it is read, not crash the writer (it once ended scrub with exit 2
    # and no record). A complete pair (an emoji) is ordinary text.
    good = json.dumps(CLAIM)
    bad_id = good.replace('"CLM-T1"', '"CLM-\\udc00"')
    bad_code = good.replace('"99213"', '"992\\ud83d13"')
    pair = good.replace('"CLM-T1"', '"CLM-\\ud83d\\ude00"')
    src = _write(tmp_path, "\n".join([good, bad_id, bad_code, pair]) + "\n", "in.jsonl")
    out = tmp_path / "out.jsonl"
    for workers in ("1", "2"):
        res = CliRunner().invoke(main, ["scrub", str(src), "-o", str(out), "--workers", workers])
        assert res.exit_code == 1, res.output  # two records failed, the run went on
        assert "Traceback" not in res.output
        records = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert len(records) == 4
        assert records[0]["claim"] == "CLM-T1" and records[3]["claim"] == "CLM-\U0001f600"
        assert records[1]["error"]["claim"] is None  # the id itself is the bad text
        assert [p["field"] for p in records[1]["error"]["problems"]] == ["id"]
        assert "\\udc00" in records[1]["error"]["problems"][0]["message"]
        assert records[2]["error"]["claim"] == "CLM-T1"
        assert [p["field"] for p in records[2]["error"]["problems"]] == ["lines[1].code"]
    res = CliRunner().invoke(main, ["explain", str(_write(tmp_path, bad_code))])
    assert res.exit_code == 2 and "lines[1].code" in res.output and "Traceback" not in res.output


def test_explain_from_the_cache_imports_no_graph_library() -> None:
    """A KB opened from the compiled cache needs no dependency graph, so `explain` does not import
    networkx (about a fifth of its start). The first run makes sure the cache holds the KB (it
    compiles, importing networkx, if it did not); the second, in a new interpreter, must not."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from engine.cli import main\n"
        "try:\n"
        "    main(['explain', sys.argv[1], '--format', 'json'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('networkx' in sys.modules, file=sys.stderr)\n"
    )
    claim = str(Path(__file__).resolve().parents[1] / "examples" / "office-96372-with-em.json")
    runs = [subprocess.run([sys.executable, "-c", script, claim], capture_output=True, text=True) for _ in "12"]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert runs[1].stderr.strip().splitlines()[-1] == "False"
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout)
