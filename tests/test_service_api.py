"""The HTTP API through an HTTP client: answers, each class of error, and parity with the CLI.

Expected answers come from the data and the guidance, not from output: in an office (POS 11)
96372 is NCCI column 1 over 99213 with modifier indicator 1, so the E/M line without modifier
25 denies and modifier 25 is the remedy; 96372's MUE is 4 units with MAI 3; 20610 is column 1
over 96372 (indicator 1); 90472 is a type 1 add-on whose primaries include 90471 and G0008.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from engine.claims import ClaimError, parse_claim_text
from engine.service.app import create_app
from engine.service.config import ServiceConfig

ROOT = Path(__file__).resolve().parents[1]
OFFICE = ROOT / "examples" / "office-96372-with-em.json"
PROBLEM = "application/problem+json"
LIMITS = {"max_body_bytes": 64 * 1024, "max_lines": 5, "max_units": 50}
READY_SECONDS = 180  # the first run may build the table cache


def wait_ready(client: TestClient) -> dict:
    deadline = time.monotonic() + READY_SECONDS
    while True:
        r = client.get("/v1/health")
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return r.json()
        assert r.json()["status"] == "starting", r.text
        time.sleep(0.2)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(ServiceConfig(workers=1, **LIMITS))  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


def post_claim(client: TestClient, body: str | bytes, path: str = "/v1/adjudicate", **headers: str):
    return client.post(path, content=body, headers={"Content-Type": "application/json", **headers})


def office_claim() -> dict:
    return json.loads(OFFICE.read_text())


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("https://")
    assert "Traceback" not in r.text
    return body


# --- answers ------------------------------------------------------------------------------


def test_health_names_the_kb_its_tables_and_their_vintages(client: TestClient) -> None:
    h = client.get("/v1/health").json()
    assert h["status"] == "ok" and h["workers"] == {"configured": 1, "ready": 1, "restarts": 0}
    tables = {t["relation"]: t for t in h["kb"]["tables"]}
    assert tables["ptp"]["rows"] == 2_546_017  # the 2024 Q3 practitioner file, every row
    assert "2024 Q3" in tables["ptp"]["vintage"] and "October 2025" in tables["hcpcs"]["vintage"]
    assert len(tables["ptp"]["sha256"]) == 64 and h["uptime_seconds"] >= 0
    assert h["limits"] == LIMITS


def test_adjudicate_office_claim_denies_the_em_line_under_ncci(client: TestClient) -> None:
    r = post_claim(client, OFFICE.read_bytes())
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    result = r.json()
    assert result["claim"] == "EX-OFFICE-EM"
    assert result["kb"] == client.get("/v1/health").json()["kb"]["version"]
    assert {ln["line"]: ln["decision"] for ln in result["lines"]} == {1: "pay", 2: "deny", 3: "pay"}
    reason = result["lines"][1]["reasons"][0]
    assert (reason["rule"], reason["kind"], reason["group"]) == ("ncci.ptp", "ncci_ptp", "CO")
    assert reason["proof"] == {} and reason["remedies"] is None  # both are opt-in on the API (null: not searched)


def test_query_flags_add_proofs_and_remedies(client: TestClient) -> None:
    reason = post_claim(client, OFFICE.read_bytes(), "/v1/adjudicate?proofs=true&remedies=true").json()["lines"][1][
        "reasons"
    ][0]
    assert reason["proof"]["kind"] == "rule" and reason["proof"]["children"]
    assert {"add_modifier": "25", "line": 2} in [m["action"] for m in reason["remedies"]]


def test_answer_is_the_json_the_cli_prints(client: TestClient) -> None:
    env = {**os.environ, "POLICYKB_CACHE_DIR": os.environ.get("POLICYKB_CACHE_DIR", "")}
    cli = subprocess.run(
        [sys.executable, "-m", "engine.cli", "explain", str(OFFICE), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={k: v for k, v in env.items() if v},
    )
    api = post_claim(client, OFFICE.read_bytes(), "/v1/adjudicate?proofs=true&remedies=true").json()
    assert api == json.loads(cli.stdout)


def test_why_not_names_the_failed_condition(client: TestClient) -> None:
    r = post_claim(client, OFFICE.read_bytes(), "/v1/why-not?line=2&rule=inj.facility_em")
    assert r.status_code == 200, r.text
    w = r.json()
    assert (w["claim"], w["line"], w["rule"], w["fired"]) == ("EX-OFFICE-EM", 2, "inj.facility_em", False)
    assert w["failed_condition"].startswith("injection_line(2")
    fired = post_claim(client, OFFICE.read_bytes(), "/v1/why-not?line=2&rule=ncci.ptp").json()
    assert fired["fired"] is True and fired["bindings"]["c1"] == "96372"


def test_rules_list_and_one_rule(client: TestClient) -> None:
    listed = client.get("/v1/rules").json()
    ids = [r["id"] for r in listed["rules"]]
    assert ids == sorted(ids) and "inj.facility_em" in ids and "ncci.ptp" in ids
    one = client.get("/v1/rules/inj.facility_em").json()
    assert one["location"].startswith("kb/policy/injection_96372.dl:")
    assert one["clauses"] and "deny" in one["clauses"][0]["text"]
    assert {"key": "id", "value": "inj.facility_em"} in one["annotations"]


def test_code_knows_mue_category_and_ptp_partners_both_ways(client: TestClient) -> None:
    c = client.get("/v1/codes/96372").json()
    assert c["known"] and c["category"] == "injection"
    mue = next(f for f in c["facts"] if f["relation"] == "mue")
    assert mue["row"]["mue_value"] == 4 and mue["row"]["mai"] == 3 and mue["text"].startswith("4 unit(s)")
    as_col1 = client.get("/v1/codes/96372?limit=500&status=active").json()["edits"][0]["column_1"]
    assert any(p["partner"] == "99213" and p["modifier_indicator"] == 1 for p in as_col1["items"])
    as_col2 = client.get("/v1/codes/20610?limit=500&status=active").json()["edits"][0]["column_1"]
    assert any(p["partner"] == "96372" and p["modifier_indicator"] == 1 for p in as_col2["items"])
    bundled_by = []
    offset: int | None = 0
    while offset is not None:  # walk every page of 96372's column-2 rows
        page = client.get(f"/v1/codes/96372?limit=500&offset={offset}&status=active").json()["edits"][0]["column_2"]
        bundled_by += [p["partner"] for p in page["items"]]
        offset = page["next_offset"]
    assert "20610" in bundled_by and len(bundled_by) == len(set(bundled_by)) == page["total"] == page["active"]


def test_code_pages_do_not_overlap(client: TestClient) -> None:
    first = client.get("/v1/codes/96372?limit=3").json()["edits"][0]["column_2"]
    second = client.get("/v1/codes/96372?limit=3&offset=3").json()["edits"][0]["column_2"]
    assert first["next_offset"] == 3 and second["next_offset"] == 6
    assert not {p["partner"] for p in first["items"]} & {p["partner"] for p in second["items"]}


def test_add_on_code_lists_its_primaries(client: TestClient) -> None:
    c = client.get("/v1/codes/90472").json()
    add_on = next(f for f in c["facts"] if f["relation"] == "aoc_code")
    assert add_on["row"]["edit_type"] == 1
    primaries = next(link for link in c["links"] if link["label"] == "Primary codes")
    assert {"90471", "G0008"} <= set(primaries["codes"])
    reverse = next(link for link in client.get("/v1/codes/90471").json()["links"] if link["relation"] == "aoc_primary")
    assert "90472" in reverse["codes"] and reverse["label"] != primaries["label"]


# --- errors -------------------------------------------------------------------------------


def test_bad_json_is_400_at_field_dollar(client: TestClient) -> None:
    body = assert_problem(post_claim(client, '{"id": "X",'), 400)
    assert body["problems"][0]["field"] == "$" and "malformed JSON" in body["problems"][0]["message"]


def test_json_nested_too_deeply_is_400_not_a_crash(client: TestClient) -> None:
    body = assert_problem(post_claim(client, "[" * 50_000), 400)
    assert body["problems"] == [{"field": "$", "message": "malformed JSON: nested too deeply"}]


def test_missing_field_names_its_path_as_the_cli_does(client: TestClient) -> None:
    claim = office_claim()
    del claim["lines"][1]["service_date"]
    claim["lines"][2]["units"] = "2"
    text = json.dumps(claim)
    body = assert_problem(post_claim(client, text), 422)
    with pytest.raises(ClaimError) as cli:
        parse_claim_text(text)
    assert body["problems"] == [{"field": p.field, "message": p.message} for p in cli.value.problems]
    assert body["problems"][0] == {"field": "lines[1].service_date", "message": "line 2: required field is missing"}
    assert body["claim"] == "EX-OFFICE-EM"


def test_body_over_the_limit_is_413_declared_or_streamed(client: TestClient) -> None:
    big = json.dumps({**office_claim(), "padding": "x" * LIMITS["max_body_bytes"]})
    assert_problem(post_claim(client, big), 413)
    chunks = (big[i : i + 4096].encode() for i in range(0, len(big), 4096))  # no Content-Length
    assert_problem(post_claim(client, chunks), 413)  # type: ignore[arg-type]


def test_claim_over_line_or_unit_limits_is_422(client: TestClient) -> None:
    claim = office_claim()
    claim["lines"] = [{**claim["lines"][1], "line": n} for n in range(1, LIMITS["max_lines"] + 2)]
    body = assert_problem(post_claim(client, json.dumps(claim)), 422)
    assert [p["field"] for p in body["problems"]] == ["lines"]
    claim = office_claim()
    claim["lines"][2]["units"] = LIMITS["max_units"] + 1
    body = assert_problem(post_claim(client, json.dumps(claim)), 422)
    assert body["problems"] == [
        {"field": "lines[2].units", "message": "line 3: at most 50 units per line here, got 51"}
    ]


def test_unknown_rule_is_404_with_suggestions(client: TestClient) -> None:
    body = assert_problem(client.get("/v1/rules/inj.facility"), 404)
    assert "inj.facility_em" in body["suggestions"] and "inj.facility_pos" in body["suggestions"]
    body = assert_problem(post_claim(client, OFFICE.read_bytes(), "/v1/why-not?line=1&rule=ncci.ptpp"), 404)
    assert body["suggestions"][0] == "ncci.ptp"


def test_why_not_for_a_line_the_claim_lacks_is_422(client: TestClient) -> None:
    body = assert_problem(post_claim(client, OFFICE.read_bytes(), "/v1/why-not?line=9&rule=ncci.ptp"), 422)
    assert body["problems"][0]["field"] == "query.line"
    body = assert_problem(post_claim(client, OFFICE.read_bytes(), "/v1/why-not?line=zero&rule=ncci.ptp"), 422)
    assert body["problems"][0]["field"] == "query.line"


def test_unknown_code_is_404(client: TestClient) -> None:
    assert_problem(client.get("/v1/codes/ZZ999"), 404)


def test_fhir_and_x12_claims_get_the_json_claims_decisions(client: TestClient) -> None:
    """The same claim sent as our JSON, a FHIR Claim and an 837P gets the same decisions and
    reasons (the 837P version carries no record review, so the office example, which needs none
    for these decisions, is the one compared)."""
    want = post_claim(client, OFFICE.read_bytes()).json()
    shape = [(ln["line"], ln["decision"], ln["primary"], [r["rule"] for r in ln["reasons"]]) for ln in want["lines"]]
    fhir = (ROOT / "examples" / "fhir" / OFFICE.name).read_bytes()
    x12 = (ROOT / "examples" / "x12" / OFFICE.with_suffix(".x12").name).read_bytes()
    for body, ctype in ((fhir, "application/fhir+json"), (x12, "application/edi-x12"), (x12, "text/plain")):
        r = post_claim(client, body, **{"Content-Type": ctype})
        assert r.status_code == 200, r.text
        got = [(ln["line"], ln["decision"], ln["primary"], [x["rule"] for x in ln["reasons"]]) for ln in r.json()["lines"]]
        assert got == shape, ctype


def test_answers_as_a_claim_response_or_835_adjustments(client: TestClient) -> None:
    r = post_claim(client, OFFICE.read_bytes(), Accept="application/fhir+json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    response = r.json()
    assert response["resourceType"] == "ClaimResponse" and response["outcome"] == "complete"
    reasons = [a["reason"]["coding"][0]["code"] for item in response["item"] for a in item["adjudication"] if "reason" in a]
    assert "236" in reasons  # the E/M line's NCCI denial, CO-236
    r = post_claim(client, OFFICE.read_bytes(), Accept="application/edi-x12")
    assert r.status_code == 200 and r.text.startswith("ISA")
    assert "CAS*CO*236" in r.text


def test_a_bad_fhir_claim_is_a_problem_naming_the_element(client: TestClient) -> None:
    fhir = json.dumps({"resourceType": "Claim", "id": "c1"})
    body = assert_problem(post_claim(client, fhir, **{"Content-Type": "application/fhir+json"}), 422)
    assert body["problems"] and all(p["field"] for p in body["problems"])
    assert_problem(post_claim(client, "a,b", **{"Content-Type": "text/csv"}), 415)
    ok = post_claim(client, OFFICE.read_bytes(), Accept="application/fhir+json;q=0.9, application/json;q=0.5")
    assert ok.status_code == 200


def test_http_errors_are_problems_too(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.get("/v1/adjudicate"), 405)


def test_an_unexpected_failure_is_a_500_problem_without_traceback(client: TestClient, monkeypatch, caplog) -> None:
    async def boom(*_args, **_kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(client.app.state.service.pool, "adjudicate", boom)  # type: ignore[attr-defined]
    body = assert_problem(post_claim(client, OFFICE.read_bytes()), 500)
    assert "secret" not in json.dumps(body) and len(body["incident"]) == 12
    assert body["incident"] in caplog.text  # the log has it, with the traceback


# --- documents and the page ---------------------------------------------------------------


def test_openapi_and_offline_docs(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert {
        "/v1/adjudicate",
        "/v1/why-not",
        "/v1/rules",
        "/v1/rules/{rule_id}",
        "/v1/codes/{code}",
        "/v1/health",
    } <= set(doc["paths"])
    assert doc["paths"]["/v1/adjudicate"]["post"]["responses"]["422"]["content"] == {
        PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    html = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in html and "https://" not in html.replace("https://policykb", "")
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_page_and_its_examples(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<label for="claim">' in page.text
    config = client.get("/ui/config").json()
    assert "office-96372-with-em.json" in config["examples"] and "96372" in config["code_pages"]
    assert client.get("/ui/examples/office-96372-with-em.json").json()["id"] == "EX-OFFICE-EM"
    assert_problem(client.get("/ui/examples/..%2Fpyproject.toml"), 404)
