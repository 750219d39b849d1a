"""X12 837P and FHIR R4 in, FHIR ClaimResponse and 835 out (engine/formats).

The bundled examples exist as 837P (examples/x12/) and FHIR (examples/fhir/), written by
`python -m engine.formats.convert`. Each must read back as its JSON claim (less what the format
cannot carry) and get the same decisions and reasons. The shared samples (imsweb 837P parser
fixtures, HL7 and CMS FHIR examples; copied into tests/fixtures/claims_samples so a fresh clone
has them) must each give decisions or a located error.
"""

from __future__ import annotations

import io
import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.api import PolicyKB
from engine.batch import run_batch
from engine.claims import Claim, ClaimError, ClaimFileError, load_claims
from engine.cli import main
from engine.formats import detect_format, load_claims_any, read_records
from engine.formats.convert import example_files, fhir_projection, to_fhir, to_x12, x12_obstacle, x12_projection
from engine.formats.fhir import validate
from engine.formats.out_835 import claim_adjustments, line_adjustments
from engine.formats.out_835 import to_x12 as to_835
from engine.formats.out_fhir import claim_response, deny_reasons
from engine.formats.output import make_worker
from engine.formats.x12 import validation_errors

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
SAMPLES = ROOT / "tests" / "fixtures" / "claims_samples"  # copies of the shared samples (see SOURCES.md there)
X12_SAMPLES = sorted((SAMPLES / "x12_837p").rglob("*.txt"))
FHIR_SAMPLES = sorted((SAMPLES / "fhir_r4").rglob("*.json"))


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def decisions(kb: PolicyKB, claim: Claim) -> list[tuple[Any, ...]]:
    """What a biller acts on: per line the decision and every reason's rule, codes and words."""
    result = kb.adjudicate(claim, proofs=False, remedies=False).to_dict()
    return [
        (
            ln["line"],
            ln["code"],
            ln["decision"],
            sorted(
                (
                    r["rule"],
                    r["kind"],
                    r["severity"],
                    r["group"],
                    r["carc"],
                    tuple(r["rarc"]),
                    r["message"],
                    r.get("overridden_by") or "",
                )
                for r in ln["reasons"]
            ),
        )
        for ln in result["lines"]  # type: ignore[union-attr]
    ]


def x12_problems(text: str) -> list[tuple[int, str, str]]:
    return validation_errors(text)


# ---- the bundled examples in three formats -------------------------------------------------


def test_converted_examples_are_current() -> None:
    """examples/x12 and examples/fhir are what the converter writes from examples/*.json."""
    files = example_files(ROOT)
    in_x12 = [p for p in EXAMPLES if x12_obstacle(load_claims(p)) is None]
    assert len([p for p in files if p.suffix == ".x12"]) == len(in_x12) + 1  # + the batch
    assert len(in_x12) >= len(EXAMPLES) - 2  # only claims an 837P cannot express are left out
    stale = [
        str(p.relative_to(ROOT))
        for p, text in files.items()
        if not p.is_file() or p.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"run `python -m engine.formats.convert`: {stale}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_reads_back_from_837p_and_fhir(path: Path) -> None:
    (claim,) = load_claims(path)
    assert load_claims_any(ROOT / "examples" / "fhir" / f"{path.stem}.json") == [fhir_projection(claim)]
    if x12_obstacle([claim]) is not None:  # e.g. a line with no diagnosis: SV107 is required
        assert not (ROOT / "examples" / "x12" / f"{path.stem}.x12").exists()
        return
    x12_text = (ROOT / "examples" / "x12" / f"{path.stem}.x12").read_text()
    assert x12_problems(x12_text) == [], "pyx12 finds the converted 837P invalid"
    assert load_claims_any(ROOT / "examples" / "x12" / f"{path.stem}.x12") == [x12_projection(claim)]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_gets_the_same_decisions_in_every_format(kb: PolicyKB, path: Path) -> None:
    (claim,) = load_claims(path)
    (from_fhir,) = load_claims_any(ROOT / "examples" / "fhir" / f"{path.stem}.json")
    original = decisions(kb, claim)
    # FHIR carries everything but the claim history (earlier claims are the payer's records).
    assert decisions(kb, from_fhir) == (original if not claim.history else decisions(kb, fhir_projection(claim)))
    if x12_obstacle([claim]) is not None:
        return  # no 837P form (see test_example_reads_back_from_837p_and_fhir)
    (from_x12,) = load_claims_any(ROOT / "examples" / "x12" / f"{path.stem}.x12")
    # An 837P carries no record review, credential or history: without those, nothing differs.
    assert decisions(kb, from_x12) == decisions(kb, x12_projection(claim))
    # ... and a drug with no NDC keeps only its name (no 2410 loop), so its dose is lost.
    carries_all = not claim.history and all(
        ln.documentation is None and (ln.drug is None or ln.drug.ndc) for ln in claim.lines
    )
    if carries_all:
        assert decisions(kb, from_x12) == original


def test_record_review_is_carried_by_fhir_only(kb: PolicyKB) -> None:
    """The record shows no injection site: FHIR's supportingInfo carries that, an 837P cannot."""
    path = ROOT / "examples" / "injection-record-incomplete.json"
    (claim,) = load_claims(path)
    rules = {r[0] for ln in decisions(kb, claim) for r in ln[3]}
    assert "inj.record_incomplete" in rules
    (from_fhir,) = load_claims_any(ROOT / "examples" / "fhir" / f"{path.stem}.json")
    (from_x12,) = load_claims_any(ROOT / "examples" / "x12" / f"{path.stem}.x12")
    assert "inj.record_incomplete" in {r[0] for ln in decisions(kb, from_fhir) for r in ln[3]}
    assert "inj.record_incomplete" not in {r[0] for ln in decisions(kb, from_x12) for r in ln[3]}


# ---- the shared samples --------------------------------------------------------------------

POSITION = re.compile(r"segment \d+")


@pytest.mark.parametrize("path", X12_SAMPLES + FHIR_SAMPLES, ids=[p.name for p in X12_SAMPLES + FHIR_SAMPLES])
def test_every_sample_yields_decisions_or_a_located_error(kb: PolicyKB, path: Path) -> None:
    with path.open("rb") as src:
        records = list(read_records(src, None, str(path)))
    assert records
    assert [r.number for r in records] == list(range(1, len(records) + 1))
    for r in records:
        if isinstance(r.item, Claim):
            result = kb.adjudicate(r.item, proofs=False).to_dict()
            assert {ln["decision"] for ln in result["lines"]} <= {"pay", "deny"}  # type: ignore[union-attr]
        else:
            assert r.item.problems
            for p in r.item.problems:
                assert p.field and p.message
                if path.suffix == ".txt":
                    assert POSITION.search(p.field), p


def test_each_clm_of_a_many_claim_837p_is_one_record() -> None:
    path = SAMPLES / "x12_837p" / "imsweb_x12_parser" / "x12_many_claims.txt"
    text = path.read_text()
    claim_ids = [m.group(1) for m in re.finditer(r"(?:^|~)\s*CLM\*([^*~]*)", text)]
    assert len(claim_ids) > 100
    with path.open("rb") as src:
        records = list(read_records(src))
    assert [r.item.id if isinstance(r.item, Claim) else r.item.claim_id for r in records] == claim_ids


def test_a_file_that_is_not_x12_is_one_located_error() -> None:
    for name in ("x12_bad_first_line.txt", "x12_no_isa_line.txt"):
        path = SAMPLES / "x12_837p" / "imsweb_x12_parser" / name
        with path.open("rb") as src:
            fmt = detect_format(src.peek(100))
            records = list(read_records(src, "x12"))
        assert len(records) == 1 and isinstance(records[0].item, ClaimError)
        assert records[0].item.problems[0].field == "segment 1", fmt


def test_claims_with_errors_name_the_segment_pyx12_found_them_at() -> None:
    """x12_valid.txt repeats HL01 2 at segment 27; that error is the second claim's alone."""
    path = SAMPLES / "x12_837p" / "imsweb_x12_parser" / "x12_valid.txt"
    with pytest.raises(ClaimFileError) as info:
        load_claims_any(path)
    first, second = info.value.errors
    assert (first.claim_id, second.claim_id) == ("A37YH556", "A37YH667")
    hl_count = [p for p in second.problems if p.field == "HL at segment 27"]
    assert hl_count and "HL count" in hl_count[0].message
    assert not [p for p in first.problems if p.field == "HL at segment 27"]
    # The SE count is wrong: an envelope error, so it is every claim's.
    assert all(any(p.field.startswith("ST/SE") for p in e.problems) for e in (first, second))


def test_official_fhir_r4_claim_examples_validate() -> None:
    """fhir.resources' R4B models accept the FHIR 4.0.1 Claim examples (the version we claim)."""
    claims = [p for p in FHIR_SAMPLES if p.name.startswith("Claim-")]
    assert len(claims) >= 17
    for path in claims:
        assert validate(json.loads(path.read_text()), "") == [], path.name


def test_an_invalid_fhir_claim_is_located_by_element_path() -> None:
    path = SAMPLES / "fhir_r4" / "cms_bfd" / "claimMcsRead.json"
    with pytest.raises(ClaimFileError) as info:
        load_claims_any(path)
    fields = {p.field for e in info.value.errors for p in e.problems}
    assert "created" in fields  # "IGNORED_FIELD" is not a dateTime


# ---- mapping details, on claims written by hand -------------------------------------------


def _x12(claim_segments: list[str]) -> str:
    head = [
        "ISA*00*          *00*          *ZZ*SUBMITTER      *ZZ*RECEIVER       *240801*1200*^*00501*000000007*0*T*:",
        "GS*HC*SUBMITTER*RECEIVER*20240801*1200*7*X*005010X222A1",
        "ST*837*0007*005010X222A1",
        "BHT*0019*00*REF7*20240801*1200*CH",
        "NM1*41*2*CLINIC*****46*S1",
        "PER*IC*OFFICE*TE*5555550100",
        "NM1*40*2*PAYER*****46*P1",
        "HL*1**20*1",
        "NM1*85*2*CLINIC*****XX*1234567893",
        "N3*1 MAIN ST",
        "N4*SPRINGFIELD*IL*627010000",
        "REF*EI*123456789",
    ]
    st = [*head[2:], *claim_segments]
    segs = [*head[:2], *st, f"SE*{len(st) + 1}*0007", "GE*1*7", "IEA*1*000000007"]
    return "".join(s + "~\n" for s in segs)


HAND_837P = _x12(
    [
        "HL*2*1*22*0",
        "SBR*P*18*******MB",
        "NM1*IL*1*DOE*JANE****MI*MEM123",
        "DMG*D8*19600102*F",
        "NM1*PR*2*PAYER*****PI*P1",
        "CLM*HAND-1*0***11:B:1*Y*A*Y*Y",
        "HI*ABK:M1711*ABF:E119*ABF:Z7901",
        "NM1*82*1*DOE*JOHN****XX*1234567893",
        "LX*1",
        "SV1*HC:20610:RT:59*0*UN*1*22**1:3",
        "DTP*472*RD8*20240610-20240612",
        "NM1*82*1*ROE*ANN****XX*1497758544",
        "LX*2",
        "SV1*HC:J1030*0*UN*2***1",
        "DTP*472*D8*20240610",
        "NTE*ADD*methylprednisolone acetate",
        "LIN**N4*00009028002",
        "CTP****80*ME",
    ]
)


def test_837p_fields_map_to_the_claim_model() -> None:
    """Decided from the 837P guide: SV105 overrides CLM05-1, 2420A overrides 2310B, SV107
    points into HI (1-based), DTP*472 RD8 starts the range, 2410 LIN/CTP and the 2400 NTE are the drug."""
    assert x12_problems(HAND_837P) == []
    (claim,) = load_claims_any_text(HAND_837P, ".x12")
    assert (claim.id, claim.patient.id, claim.patient.birth_date, claim.patient.sex) == (
        "HAND-1",
        "MEM123",
        "1960-01-02",
        "F",
    )
    one, two = claim.lines
    assert (one.code, one.modifiers, one.units, one.pos, one.service_date) == (
        "20610",
        ("RT", "59"),
        1,
        "22",
        "2024-06-10",
    )
    assert one.rendering_npi == "1497758544" and one.diagnoses == ("M17.11", "Z79.01")
    assert (two.code, two.units, two.pos, two.rendering_npi, two.diagnoses) == (
        "J1030",
        2,
        "11",
        "1234567893",
        ("M17.11",),
    )
    assert two.drug is not None
    assert (two.drug.ndc, two.drug.name, two.drug.dose) == ("00009-0280-02", "methylprednisolone acetate", "80 mg")
    assert one.documentation is None and one.rendering_credential is None


def load_claims_any_text(text: str, suffix: str) -> list[Claim]:
    with io.BytesIO(text.encode()) as src:
        records = list(read_records(src))  # type: ignore[arg-type]
    bad = [r.item for r in records if isinstance(r.item, ClaimError)]
    assert not bad, [str(e) for e in bad]
    return [r.item for r in records if isinstance(r.item, Claim)]


def test_a_diagnosis_pointer_past_the_hi_codes_is_located() -> None:
    text = HAND_837P.replace("SV1*HC:20610:RT:59*0*UN*1*22**1:3", "SV1*HC:20610:RT:59*0*UN*1*22**1:4")
    with io.BytesIO(text.encode()) as src:
        (record,) = list(read_records(src))  # type: ignore[arg-type]
    assert isinstance(record.item, ClaimError)
    # ISA is segment 1, the first SV1 the 22nd.
    assert [p.field for p in record.item.problems] == ["SV107-02 at segment 22"]


def test_fhir_bundle_fields_map_to_the_claim_model() -> None:
    """careTeam qualification is the credential, diagnosisSequence links HI-like codes,
    a Patient entry of the Bundle gives the patient, an NDC detail is the drug."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "https://example.org/Patient/p1",
                "resource": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "identifier": [{"value": "MEM9"}],
                    "gender": "male",
                    "birthDate": "1970-03-04",
                },
            },
            {
                "fullUrl": "https://example.org/Practitioner/d1",
                "resource": {
                    "resourceType": "Practitioner",
                    "id": "d1",
                    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1497758544"}],
                },
            },
            {
                "resource": {
                    "resourceType": "Claim",
                    "id": "F-1",
                    "status": "active",
                    "use": "claim",
                    "created": "2024-08-01",
                    "type": {"coding": [{"code": "professional"}]},
                    "priority": {"coding": [{"code": "normal"}]},
                    "patient": {"reference": "Patient/p1"},
                    "provider": {"reference": "Practitioner/d1"},
                    "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "c"}}],
                    "careTeam": [
                        {
                            "sequence": 1,
                            "provider": {"reference": "Practitioner/d1"},
                            "qualification": {"coding": [{"code": "do"}]},
                        }
                    ],
                    "diagnosis": [
                        {"sequence": 1, "diagnosisCodeableConcept": {"coding": [{"code": "D51.0"}]}},
                        {"sequence": 2, "diagnosisCodeableConcept": {"coding": [{"code": "E53.8"}]}},
                    ],
                    "item": [
                        {
                            "sequence": 1,
                            "careTeamSequence": [1],
                            "diagnosisSequence": [2, 1],
                            "productOrService": {"coding": [{"code": "J3420"}]},
                            "servicedDate": "2024-07-15",
                            "modifier": [{"coding": [{"code": "jw"}]}],
                            "quantity": {"value": 1},
                            "locationCodeableConcept": {"coding": [{"code": "11"}]},
                            "detail": [
                                {
                                    "sequence": 1,
                                    "quantity": {"value": 1000, "unit": "mcg"},
                                    "productOrService": {
                                        "coding": [
                                            {
                                                "system": "http://hl7.org/fhir/sid/ndc",
                                                "code": "00409491101",
                                                "display": "cyanocobalamin",
                                            }
                                        ]
                                    },
                                }
                            ],
                        }
                    ],
                }
            },
        ],
    }
    (claim,) = load_claims_any_text(json.dumps(bundle), ".json")
    assert (claim.id, claim.patient.id, claim.patient.sex, claim.patient.birth_date) == (
        "F-1",
        "MEM9",
        "M",
        "1970-03-04",
    )
    (line,) = claim.lines
    assert (line.rendering_npi, line.rendering_credential, line.diagnoses, line.modifiers) == (
        "1497758544",
        "DO",
        ("E53.8", "D51.0"),
        ("JW",),
    )
    assert line.drug is not None and (line.drug.ndc, line.drug.name, line.drug.dose) == (
        "00409-4911-01",
        "cyanocobalamin",
        "1000 mcg",
    )


# ---- answers out ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def answers(kb: PolicyKB) -> list[tuple[Claim, dict[str, Any]]]:
    out = []
    for path in EXAMPLES:
        (claim,) = load_claims(path)
        out.append((claim, kb.adjudicate(claim, proofs=False, remedies=False).to_dict()))
    return out


def test_claim_responses_carry_each_denial_and_validate(answers: list[tuple[Claim, dict[str, Any]]]) -> None:
    denied_somewhere = False
    for claim, result in answers:
        response = claim_response(claim, result)  # validates, or raises
        assert response["outcome"] == "complete" and response["request"]["identifier"]["value"] == claim.id
        notes = {n["number"]: n["text"] for n in response.get("processNote", [])}
        for line, item in zip(result["lines"], response["item"], strict=True):
            assert item["itemSequence"] == line["line"]
            carcs = [a["reason"]["coding"][0]["code"] for a in item["adjudication"] if "reason" in a]
            assert carcs == [r["carc"] for r in deny_reasons(line)]
            texts = [notes[n] for n in item.get("noteNumber", [])]
            for r in deny_reasons(line):
                denied_somewhere = True
                assert any(r["message"] in t for t in texts)
                assert all(f"RARC {code}" in texts for code in r["rarc"])
            assert (line["decision"] == "pay") == any(
                a["category"]["coding"][0]["code"] == "eligible" for a in item["adjudication"]
            )
    assert denied_somewhere


def test_835_segments_carry_group_carc_and_rarc(answers: list[tuple[Claim, dict[str, Any]]]) -> None:
    for _claim, result in answers:
        for line in result["lines"]:
            adj = line_adjustments(line)
            expected = {(r["group"], r["carc"]) for r in deny_reasons(line)}
            assert {(a["group"], a["carc"]) for a in adj["adjustments"]} == expected
            cas = [s for s in adj["segments"] if s.startswith("CAS*")]
            assert {(s.split("*")[1], code) for s in cas for code in s.split("*")[2::3]} == expected
            lq = [s.split("*")[2] for s in adj["segments"] if s.startswith("LQ*HE*")]
            assert set(lq) == {code for r in deny_reasons(line) for code in r["rarc"]}
            assert (line["decision"] == "pay") == (not cas)


def test_the_835_transaction_validates_with_pyx12(answers: list[tuple[Claim, dict[str, Any]]]) -> None:
    text = to_835([claim_adjustments(c, r) for c, r in answers])
    assert x12_problems(text) == []
    assert text.count("\nCLP*") == len(answers)
    assert text.count("\nSVC*") == sum(len(r["lines"]) for _, r in answers)


# ---- scrub and explain over multi-claim files ----------------------------------------------


# examples/batch.jsonl's BATCH-UNKNOWN-CODES bills place of service "00", which is no POS code:
# in our JSON that is a line denial, but an 837P with it fails pyx12's SV105 code check.
REJECTED_BY_PYX12 = ["BATCH-UNKNOWN-CODES"]


def test_the_837p_batch_is_valid_but_for_the_unknown_pos() -> None:
    with (ROOT / "examples" / "x12" / "batch.x12").open("rb") as src:
        errors = [r.item for r in read_records(src) if isinstance(r.item, ClaimError)]
    assert [e.claim_id for e in errors] == REJECTED_BY_PYX12
    assert [p.field.split(" ")[0] for p in errors[0].problems] == ["SV105"]


def _bad_batch_x12(tmp_path: Path) -> tuple[Path, list[str], str]:
    """examples/x12/batch.x12 with one claim's date of service made impossible (2024-02-31)."""
    text = (ROOT / "examples" / "x12" / "batch.x12").read_text()
    ids = re.findall(r"\nCLM\*([^*]+)", text)
    target = ids[3]
    start = text.index(f"\nCLM*{target}*")
    date_at = text.index("DTP*472*D8*", start)
    bad = text[:date_at] + "DTP*472*D8*20240231" + text[date_at + len("DTP*472*D8*20240715") :]
    path = tmp_path / "claims.x12"
    path.write_text(bad)
    return path, ids, target


def test_scrub_reads_a_multi_claim_837p_one_record_per_claim_in_order(tmp_path: Path) -> None:
    src, ids, bad_id = _bad_batch_x12(tmp_path)
    out = tmp_path / "out.jsonl"
    worker = partial(make_worker, "835", str(ROOT / "kb"), None, False)
    summary = run_batch(src, out, workers=1, make_worker=worker, progress=False)
    records = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r.get("claim") or r.get("error", {}).get("claim") for r in records] == ids
    errors = [r["error"] for r in records if "error" in r]
    assert sorted(e["claim"] for e in errors) == sorted([bad_id, *REJECTED_BY_PYX12])
    assert summary.error_records == 1 + len(REJECTED_BY_PYX12)
    errors = [e for e in errors if e["claim"] == bad_id]
    assert any(POSITION.search(p["field"]) for p in errors[0]["problems"])


def test_scrub_reads_a_fhir_bundle_and_writes_claim_responses(tmp_path: Path) -> None:
    bundle = json.loads((ROOT / "examples" / "fhir" / "batch.json").read_text())
    bundle["entry"][2]["resource"]["item"][0]["quantity"]["value"] = "two"
    src = tmp_path / "bundle.json"
    src.write_text(json.dumps(bundle))
    out = tmp_path / "out.ndjson"
    res = CliRunner().invoke(main, ["scrub", str(src), "--format", "fhir", "-o", str(out)])
    assert res.exit_code == 1, res.output
    records = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert len(records) == len(bundle["entry"])
    assert records[2]["error"]["problems"][0]["field"].startswith("entry[2].resource.item[0].quantity")
    responses = [r for r in records if "error" not in r]
    assert [r["request"]["identifier"]["value"] for r in responses] == [
        e["resource"]["id"] for i, e in enumerate(bundle["entry"]) if i != 2
    ]
    assert all(validate(r, "") == [] for r in responses)


def test_scrub_writes_a_valid_835_and_lists_the_claims_it_could_not_read(tmp_path: Path) -> None:
    src, ids, bad_id = _bad_batch_x12(tmp_path)
    out = tmp_path / "answer.835"
    res = CliRunner().invoke(main, ["scrub", str(src), "--format", "835", "--x12", "-o", str(out)])
    assert res.exit_code == 1
    text = out.read_text()
    assert x12_problems(text) == []
    assert re.findall(r"\nCLP\*([^*]+)", text) == [i for i in ids if i not in (bad_id, *REJECTED_BY_PYX12)]
    assert bad_id in res.output


def test_explain_answers_an_837p_as_fhir_and_835(tmp_path: Path) -> None:
    x12 = str(ROOT / "examples" / "x12" / "office-96372-with-em.x12")
    res = CliRunner().invoke(main, ["explain", x12, "--format", "fhir"])
    assert res.exit_code == 0, res.output
    assert validate(json.loads(res.output), "") == []
    res = CliRunner().invoke(main, ["explain", x12, "--format", "835", "--x12"])
    assert res.exit_code == 0, res.output
    assert x12_problems(res.output) == []
    res = CliRunner().invoke(main, ["explain", x12, "--format", "json", "--input-format", "fhir"])
    assert res.exit_code == 2


def test_input_format_is_detected_from_content() -> None:
    assert detect_format(b"  ISA*00*") == "x12"
    assert detect_format(json.dumps(to_fhir(load_claims(EXAMPLES[0])[0]), indent=2).encode()) == "fhir"
    assert detect_format(EXAMPLES[0].read_bytes()) == "json"
    assert detect_format(to_x12(load_claims(EXAMPLES[0])).encode()) == "x12"


def test_fhir_ndjson_gives_one_record_per_line_in_order() -> None:
    """Bulk FHIR (one resource per line): a bad line is its own located error record."""
    claims = [load_claims(p)[0] for p in EXAMPLES[:3]]
    lines = [json.dumps(to_fhir(c)) for c in claims]
    lines.insert(1, json.dumps({"resourceType": "Claim", "id": "broken"}))
    with io.BytesIO("\n".join(lines).encode()) as src:
        records = list(read_records(src, None, "claims.ndjson"))  # type: ignore[arg-type]
    assert [r.item.id if isinstance(r.item, Claim) else r.item.claim_id for r in records] == [
        claims[0].id,
        "broken",
        claims[1].id,
        claims[2].id,
    ]
    bad = records[1].item
    assert isinstance(bad, ClaimError) and bad.source == "claims.ndjson:2"
    assert {p.field for p in bad.problems} >= {"patient", "insurance"}


def test_error_records_survive_the_trip_to_a_worker_process() -> None:
    """scrub --workers N pickles each record; a located error must arrive whole."""
    import pickle

    with (ROOT / "examples" / "x12" / "batch.x12").open("rb") as src:
        records = list(read_records(src, None, "batch.x12"))
    bad = next(r for r in records if isinstance(r.item, ClaimError))
    back = pickle.loads(pickle.dumps(bad))
    assert back.number == bad.number and isinstance(back.item, ClaimError)
    assert (back.item.claim_id, back.item.problems, back.item.source) == (
        bad.item.claim_id,
        bad.item.problems,
        "batch.x12",
    )
