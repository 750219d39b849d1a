"""Batch mechanics of `policykb scrub`: order, one output per record, error records, summary.

The worker here decides from the claim alone (99211 denies, 96372 in POS 22 denies), so the
assertions are about the runner, not about billing policy.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.batch import WorkerStartError, render_summary, run_batch
from engine.claims import Claim, Line

NPI = "1234567893"


def judge_line(ln: Line) -> dict[str, Any]:
    if ln.code == "99211":
        reason = {"rule": "ncci.ptp_96372_99211", "kind": "ncci", "severity": "deny"}
        return {"line": ln.line, "decision": "deny", "reasons": [reason]}
    if ln.code == "96372" and ln.pos == "22":
        reason = {"rule": "inj.facility_pos", "kind": "policy", "severity": "deny"}
        return {"line": ln.line, "decision": "deny", "reasons": [reason]}
    if ln.code.startswith("992") and "25" not in ln.modifiers:
        reason = {"rule": "em.modifier_25", "kind": "policy", "severity": "warn"}
        return {"line": ln.line, "decision": "pay", "reasons": [reason]}
    return {"line": ln.line, "decision": "pay", "reasons": []}


def make_test_worker() -> Callable[[Claim], dict[str, Any]]:
    """A worker factory like the real one: each call builds a fresh adjudicator."""
    identity = {"pid": os.getpid(), "token": uuid.uuid4().hex}

    def adjudicate(claim: Claim) -> dict[str, Any]:
        if claim.patient.id == "PAT-CRASH":
            raise ValueError("fee schedule has no row for 99213")
        lines = [judge_line(ln) for ln in claim.lines]
        return {"claim": claim.id, "lines": lines, "worker": identity}

    return adjudicate


def broken_factory() -> Callable[[Claim], dict[str, Any]]:
    raise FileNotFoundError("kb/tables/ncci_mue_practitioner.csv")


def claim_obj(n: int, second_code: str, pos: str = "11") -> dict[str, Any]:
    return {
        "id": f"CLM-{n:04d}",
        "patient": {"id": f"PAT-{n % 37}", "birth_date": "1971-02-03", "sex": "F"},
        "lines": [
            {"line": 1, "service_date": "2026-03-02", "code": "96372", "pos": pos,
             "rendering_npi": NPI, "diagnoses": ["D51.0"]},
            {"line": 2, "service_date": "2026-03-02", "code": second_code, "pos": pos,
             "rendering_npi": NPI, "modifiers": ["25"] if n % 5 == 0 else []},
        ],
    }


@dataclass
class Record:
    text: str
    expected: dict[str, Any] | None  # None for a blank line (no output)


def expected_result(obj: dict[str, Any]) -> dict[str, Any]:
    """What the worker must return, worked out from the JSON rather than by calling it."""
    lines = []
    for ln in obj["lines"]:
        if ln["code"] == "99211":
            kind, rule, decision = "ncci", "ncci.ptp_96372_99211", "deny"
        elif ln["code"] == "96372" and ln["pos"] == "22":
            kind, rule, decision = "policy", "inj.facility_pos", "deny"
        elif ln["code"] == "99213" and "25" not in ln.get("modifiers", []):
            kind, rule, decision = "policy", "em.modifier_25", "pay"
        else:
            lines.append({"line": ln["line"], "decision": "pay", "reasons": []})
            continue
        severity = "deny" if decision == "deny" else "warn"
        reason = {"rule": rule, "kind": kind, "severity": severity}
        lines.append({"line": ln["line"], "decision": decision, "reasons": [reason]})
    return {"claim": obj["id"], "lines": lines}


def error(record: int, claim: str | None, field: str, message: str) -> dict[str, Any]:
    return {"error": {"record": record, "claim": claim,
                      "problems": [{"field": field, "message": message}]}}


def make_records(count: int) -> list[Record]:
    """Valid claims mixed with blank lines, malformed JSON, invalid claims and one crash."""
    records: list[Record] = []
    for n in range(1, count + 1):
        obj = claim_obj(n, ("99211", "99213", "J3420")[n % 3], pos="22" if n % 11 == 0 else "11")
        if n % 20 == 0:
            records.append(Record("   " if n % 40 else "", None))
        elif n % 17 == 0:
            records.append(Record(json.dumps(obj)[:40], error(n, None, "$", "malformed JSON")))
        elif n % 23 == 0:
            obj["lines"][1]["units"] = "two"
            records.append(Record(json.dumps(obj), error(
                n, obj["id"], "lines[1].units", 'line 2: expected an integer, got string "two"')))
        elif n == 101:
            obj["patient"]["id"] = "PAT-CRASH"
            crash = "adjudication failed: ValueError: fee schedule has no row for 99213"
            records.append(Record(json.dumps(obj), error(n, obj["id"], "$", crash)))
        else:
            records.append(Record(json.dumps(obj), expected_result(obj)))
    return records


def write_input(path: Path, records: list[Record]) -> Path:
    path.write_text("".join(r.text + "\n" for r in records), encoding="utf-8")
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def comparable(out: dict[str, Any]) -> dict[str, Any]:
    """Drop the worker identity and shorten malformed-JSON messages to their stable start."""
    out = {k: v for k, v in out.items() if k != "worker"}
    problems = out.get("error", {}).get("problems", [])
    for p in problems:
        if p["message"].startswith("malformed JSON"):
            p["message"] = "malformed JSON"
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_one_output_per_record_in_input_order(tmp_path: Path, workers: int) -> None:
    records = make_records(210)
    src = write_input(tmp_path / "claims.jsonl", records)
    out = tmp_path / "results.jsonl"
    summary = run_batch(src, out, workers=workers, make_worker=make_test_worker, progress=False)
    outputs = read_output(out)
    assert [comparable(o) for o in outputs] == [r.expected for r in records if r.expected]
    assert summary.claims_read == len(outputs) == 200


@pytest.mark.parametrize("workers", [1, 2])
def test_each_worker_process_builds_its_adjudicator_once(tmp_path: Path, workers: int) -> None:
    src = write_input(tmp_path / "claims.jsonl", make_records(210))
    out = tmp_path / "results.jsonl"
    run_batch(src, out, workers=workers, make_worker=make_test_worker, progress=False)
    tokens_by_pid: dict[int, set[str]] = {}
    for o in read_output(out):
        if "worker" in o:
            tokens_by_pid.setdefault(o["worker"]["pid"], set()).add(o["worker"]["token"])
    assert all(len(tokens) == 1 for tokens in tokens_by_pid.values())
    assert 1 <= len(tokens_by_pid) <= workers
    in_process = set(tokens_by_pid) == {os.getpid()}
    assert in_process == (workers == 1)


def test_error_records_name_the_input_line_and_field(tmp_path: Path) -> None:
    lines = [
        json.dumps(claim_obj(1, "99213")),
        "",
        '{"id": "CLM-0003", "patient": {"id": "PAT-1"}, "lines": [',
        json.dumps({**claim_obj(4, "99213"), "id": ""}),
    ]
    src = tmp_path / "claims.jsonl"
    src.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "CLM-\xff"}\n')
    out = tmp_path / "results.jsonl"
    summary = run_batch(src, out, workers=1, make_worker=make_test_worker, progress=False)
    errors = [o["error"] for o in read_output(out) if "error" in o]
    assert [(e["record"], e["claim"], [p["field"] for p in e["problems"]]) for e in errors] == [
        (3, None, ["$"]), (4, None, ["id"]), (5, None, ["$"]),
    ]
    assert errors[0]["problems"][0]["message"] == (
        f"malformed JSON: Expecting value at line 1, column {len(lines[2]) + 1}"
    )
    assert errors[2]["problems"][0]["message"].startswith("not UTF-8")
    assert (summary.claims_read, summary.claims_ok, summary.error_records) == (4, 1, 3)


def test_a_crashing_worker_gives_an_error_record_without_traceback(tmp_path: Path) -> None:
    records = make_records(110)[95:105]
    src = write_input(tmp_path / "claims.jsonl", records)
    out = tmp_path / "results.jsonl"
    summary = run_batch(src, out, workers=2, make_worker=make_test_worker, progress=False)
    text = out.read_text(encoding="utf-8")
    assert "Traceback" not in text
    assert "adjudication failed: ValueError" in text
    assert len(text.splitlines()) == summary.claims_read == 9  # record 100 is blank
    assert summary.exit_code == 1


def test_summary_counts_lines_denials_and_kinds(tmp_path: Path) -> None:
    records = make_records(210)
    src = write_input(tmp_path / "claims.jsonl", records)
    summary = run_batch(src, tmp_path / "out.jsonl", workers=2, make_worker=make_test_worker,
                        progress=False)
    results = [r.expected for r in records if r.expected and "error" not in r.expected]
    lines = [ln for r in results for ln in r["lines"]]
    denied = [ln for ln in lines if ln["decision"] == "deny"]
    kinds: dict[str, int] = {}
    for ln in denied:
        for reason in ln["reasons"]:
            kinds[reason["kind"]] = kinds.get(reason["kind"], 0) + 1
    assert summary.claims_ok == len(results)
    assert summary.error_records == 200 - len(results) > 0
    assert (summary.lines, summary.denied_lines) == (len(lines), len(denied))
    assert dict(summary.denials_by_kind) == kinds and set(kinds) == {"ncci", "policy"}
    assert summary.exit_code == 1
    assert summary.claims_per_s > 0 and summary.lines_per_s > 0


def test_a_clean_file_exits_zero_and_can_write_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_input(tmp_path / "claims.jsonl", [Record(json.dumps(claim_obj(n, "99213")), {})
                                                  for n in (1, 2, 3)])
    summary = run_batch(src, None, workers=1, make_worker=make_test_worker, progress=True)
    captured = capsys.readouterr()
    assert [json.loads(line)["claim"] for line in captured.out.splitlines()] == [
        "CLM-0001", "CLM-0002", "CLM-0003",
    ]
    assert captured.err == ""  # no progress bar when stderr is not a terminal
    assert summary.exit_code == 0


def test_output_lines_are_compact_with_sorted_keys(tmp_path: Path) -> None:
    src = write_input(tmp_path / "claims.jsonl", [Record(json.dumps(claim_obj(1, "J3420")), {})])
    out = tmp_path / "results.jsonl"
    run_batch(src, out, workers=1, make_worker=make_test_worker, progress=False)
    (line,) = out.read_text(encoding="utf-8").splitlines()
    assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"))


def test_progress_bar_is_drawn_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's way to say "stderr is a terminal"
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    src = write_input(tmp_path / "claims.jsonl", make_records(12))
    run_batch(src, tmp_path / "out.jsonl", workers=1, make_worker=make_test_worker, progress=True)
    err = capsys.readouterr().err
    assert "12/12" in err and "claims/s" in err


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_that_cannot_start_fails_the_run(tmp_path: Path, workers: int) -> None:
    src = write_input(tmp_path / "claims.jsonl", make_records(40))
    with pytest.raises(WorkerStartError, match="FileNotFoundError: kb/tables/ncci_mue"):
        run_batch(src, tmp_path / "out.jsonl", workers=workers, make_worker=broken_factory,
                  progress=False)


def test_unusable_arguments_are_refused_before_any_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(FileNotFoundError):
        run_batch(tmp_path / "missing.jsonl", out, workers=1, make_worker=make_test_worker,
                  progress=False)
    assert not out.exists()
    src = write_input(tmp_path / "claims.jsonl", make_records(3))
    with pytest.raises(ValueError, match="is the input file"):
        run_batch(src, src, workers=1, make_worker=make_test_worker, progress=False)
    assert len(src.read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="workers"):
        run_batch(src, out, workers=0, make_worker=make_test_worker, progress=False)


def test_render_summary_prints_an_aligned_table(tmp_path: Path) -> None:
    src = write_input(tmp_path / "claims.jsonl", make_records(60))
    summary = run_batch(src, tmp_path / "out.jsonl", workers=1, make_worker=make_test_worker,
                        progress=False)
    console = Console(file=io.StringIO(), width=80, record=True)
    render_summary(summary, console)
    text = console.export_text()
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in text.splitlines() if line.count("│") == 3}
    assert rows["claims read"] == str(summary.claims_read)
    assert rows["error records"] == str(summary.error_records)
    assert rows["deny reasons: ncci"] == str(summary.denials_by_kind["ncci"])
    assert rows["lines/s"].replace(",", "").replace(".", "").isdigit()


# -- --resume ------------------------------------------------------------------------------------


def _without_worker(path: Path) -> list[dict[str, Any]]:
    return [comparable(r) for r in read_output(path)]


def test_resume_keeps_complete_records_and_cuts_a_torn_line(tmp_path: Path) -> None:
    records = make_records(120)
    src = write_input(tmp_path / "in.jsonl", records)
    full = tmp_path / "full.jsonl"
    whole = run_batch(src, full, workers=1, make_worker=make_test_worker, progress=False)
    lines = full.read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(lines[:37]) + lines[37][:25])  # interrupted mid-write
    resumed = run_batch(src, out, workers=2, make_worker=make_test_worker, progress=False, resume=True)
    assert _without_worker(out) == _without_worker(full)
    assert (resumed.claims_read, resumed.claims_ok, resumed.lines, resumed.denied_lines) == (
        whole.claims_read, whole.claims_ok, whole.lines, whole.denied_lines)


def test_resume_of_a_finished_run_adds_nothing(tmp_path: Path) -> None:
    src = write_input(tmp_path / "in.jsonl", make_records(30))
    out = tmp_path / "out.jsonl"
    run_batch(src, out, workers=1, make_worker=make_test_worker, progress=False)
    before = out.read_bytes()
    run_batch(src, out, workers=1, make_worker=make_test_worker, progress=False, resume=True)
    assert out.read_bytes() == before


def test_resume_refuses_an_output_that_is_not_this_inputs(tmp_path: Path) -> None:
    src = write_input(tmp_path / "in.jsonl", make_records(5))
    out = tmp_path / "out.jsonl"
    out.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not the output of an earlier run"):
        run_batch(src, out, workers=1, make_worker=make_test_worker, progress=False, resume=True)
    out.write_text('{"claim": "x", "lines": []}\n' * 9, encoding="utf-8")
    with pytest.raises(ValueError, match="holds 9 records but the input has only"):
        run_batch(src, out, workers=1, make_worker=make_test_worker, progress=False, resume=True)


_SLOW_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
import test_batch
def slow_worker():
    inner = test_batch.make_test_worker()
    def work(claim):
        time.sleep(0.02)
        return inner(claim)
    return work
from engine.batch import run_batch
run_batch(Path(sys.argv[1]), Path(sys.argv[2]), workers=2, make_worker=slow_worker, progress=False, chunk=4)
"""


def test_a_killed_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    src = write_input(tmp_path / "in.jsonl", make_records(300))
    full = tmp_path / "full.jsonl"
    run_batch(src, full, workers=1, make_worker=make_test_worker, progress=False)
    out = tmp_path / "out.jsonl"
    script = _SLOW_RUN.format(tests=str(Path(__file__).resolve().parent))
    proc = subprocess.Popen([sys.executable, "-c", script, str(src), str(out)], start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 40):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its pool workers, mid-write
    proc.wait()
    assert 0 < out.read_bytes().count(b"\n") < len(full.read_bytes().splitlines())
    run_batch(src, out, workers=2, make_worker=make_test_worker, progress=False, resume=True)
    assert _without_worker(out) == _without_worker(full)


def test_the_progress_rate_is_the_runs_own_not_a_burst() -> None:
    """Results arrive a chunk at a time: 5,000 claims decided in the same instant must not read as
    hundreds of thousands of claims per second; the bar shows claims since start over time since
    start, and a resumed run does not count the records it found already written."""
    from rich.progress import Progress

    from engine.batch import _RateColumn, _RemainingColumn

    now = [0.0]
    with Progress(get_time=lambda: now[0], disable=True) as bar:
        task_id = bar.add_task("claims", total=20_000, completed=1_000, resumed=1_000)
        now[0] = 10.0
        bar.advance(task_id, 5_000)  # one chunk, all at once
        task = bar.tasks[0]
        assert _RateColumn().render(task).plain == "500 claims/s"
        assert _RemainingColumn().render(task).plain == "0:00:28"  # 14,000 left at 500/s


# -- a JSONL input's chunks, made from its lines --------------------------------------------------


def _spaced_batch() -> bytes:
    """examples/batch.jsonl with blank and whitespace-only lines between some of its records
    (runs of them too), at its start and at its end."""
    lines = Path("examples/batch.jsonl").read_bytes().splitlines(keepends=True)
    gaps = (b"", b"\n", b"", b"  \t\n", b"\n\n", b"")
    return b"\n" + b"".join(line + gaps[i % len(gaps)] for i, line in enumerate(lines)) + b" \n"


def test_a_jsonl_inputs_lines_come_as_the_records_next_gives() -> None:
    """JsonlRecords.lines(size) gives the numbers and lines of the next `size` records, whatever
    blank lines fall among them, at any point of the input (after records taken one by one, as
    --resume skips them)."""
    from engine.formats.reader import JsonlRecords

    data = _spaced_batch()
    every = [(r.number, r.data) for r in JsonlRecords(io.BufferedReader(io.BytesIO(data)))]
    assert len({n for n, _ in every}) == len(every) and every[-1][0] < data.count(b"\n")
    for size in (1, 2, 3, 5, 7, len(every), len(every) + 3):
        for skipped in (0, 1, 4):
            records = JsonlRecords(io.BufferedReader(io.BytesIO(data)))
            got = [(r.number, r.data) for r in itertools.islice(records, skipped)]
            while True:
                numbers, lines = records.lines(size)
                if not lines:
                    break
                assert len(lines) == min(size, len(every) - len(got))
                assert isinstance(numbers, range) == (numbers[-1] - numbers[0] == len(numbers) - 1)
                got += zip(numbers, lines, strict=True)
            assert got == every, (size, skipped)


def test_scrubs_parent_makes_no_record_of_a_jsonl_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent joins a JSONL input's lines into chunks without a RawRecord of each line, and
    every output record is the one its input line gets on its own, numbered by file line."""
    import engine.formats.reader
    from engine.batch import _handle
    from engine.formats.reader import read_raw_records

    src = tmp_path / "in.jsonl"
    src.write_bytes(_spaced_batch())
    worker = make_test_worker()
    with src.open("rb") as fh:
        expected = [comparable(json.loads(_handle(worker, r).line)) for r in read_raw_records(fh)]

    def no_record(number: int, data: bytes) -> None:
        raise AssertionError(f"a RawRecord made of line {number}")

    monkeypatch.setattr(engine.formats.reader, "RawRecord", no_record)
    out = tmp_path / "out.jsonl"
    run_batch(src, out, workers=1, make_worker=make_test_worker, progress=False, chunk=4)
    assert [comparable(r) for r in read_output(out)] == expected
    assert any("error" in r for r in expected)  # error records name their line numbers
