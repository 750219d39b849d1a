"""Property test of the batch runner behind `policykb scrub`: whatever mix of good claims, broken
claims, malformed JSON, binary junk and blank lines a JSONL file holds, every non-blank line gets
exactly one output record, in input order, and a good claim is never an error record."""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.api import PolicyKB
from engine.batch import run_batch
from engine.claims import Claim
from fuzz import BUDGET
from fuzz.strategies import claims

RECORDS = st.one_of(
    claims(broken=False).map(lambda c: ("good", json.dumps(c, ensure_ascii=False).encode())),
    claims(broken=True).map(lambda c: ("any", json.dumps(c).encode())),
    st.sampled_from([b'{"id": "CLM-1", "lines": [}', b"[1, 2", b"null", b'"claim"', b"[]"]).map(lambda b: ("any", b)),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\n" not in b).map(lambda b: ("any", b)),
    st.sampled_from([b"", b"   ", b"\t"]).map(lambda b: ("blank", b)),
)


@cache
def _kb() -> PolicyKB:
    return PolicyKB.open()


def _real_worker() -> Any:
    kb = _kb()
    return lambda claim: kb.adjudicate(claim, proofs=False, remedies=False).to_dict()


def _echo(claim: Claim) -> dict[str, Any]:
    """A stand-in adjudicator for the multi-process run; fails on purpose for some claims."""
    if len(claim.lines) == 3:
        raise RuntimeError("a worker failure on purpose")
    return {"claim": claim.id, "lines": [{"line": ln.line, "decision": "pay", "reasons": []} for ln in claim.lines]}


def _make_echo() -> Any:
    return _echo


def _run(records: list[tuple[str, bytes]], newline: bytes, workers: int, make_worker: Any) -> None:
    data = newline.join(raw for _kind, raw in records) + newline
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_bytes(data)
        summary = run_batch(src, dst, workers=workers, make_worker=make_worker, progress=False)
        outputs = [json.loads(line) for line in dst.read_bytes().splitlines()]
    numbered = [(n, kind, raw) for n, (kind, raw) in enumerate(records, 1) if raw.strip()]
    assert len(outputs) == len(numbered) == summary.claims_read
    for (n, kind, raw), out in zip(numbered, outputs, strict=True):
        if "error" in out:
            assert out["error"]["record"] == n
            assert out["error"]["problems"]
            assert kind != "good" or workers > 1, out  # the real adjudicator never fails a good claim
        else:
            assert out["claim"] == json.loads(raw)["id"].strip()
    assert summary.error_records == sum("error" in out for out in outputs)


@BUDGET
@given(st.lists(RECORDS, max_size=6), st.sampled_from([b"\n", b"\r\n"]))
def test_one_output_record_per_input_record_in_order(records: list[tuple[str, bytes]], newline: bytes) -> None:
    _run(records, newline, 1, _real_worker)


@BUDGET
@given(st.lists(RECORDS, min_size=1, max_size=40))
def test_the_same_holds_with_worker_processes(records: list[tuple[str, bytes]]) -> None:
    _run(records, b"\n", 2, _make_echo)
