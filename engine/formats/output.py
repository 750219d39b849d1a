"""Answers in the industry's formats: pick the writer for `--format`, for explain and scrub."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from engine.claims import Claim
from engine.formats import out_835, out_fhir

if TYPE_CHECKING:
    from engine.api import BatchWorker

OutputFormat = Literal["json", "fhir", "835"]


def render(claim: Claim, result: dict[str, Any], fmt: OutputFormat) -> dict[str, Any]:
    """One claim's answer as the JSON of `fmt` (our result, a ClaimResponse, 835 adjustments)."""
    if fmt == "fhir":
        return out_fhir.claim_response(claim, result)
    if fmt == "835":
        return out_835.claim_adjustments(claim, result)
    return result


def render_many(answers: list[tuple[Claim, dict[str, Any]]], fmt: OutputFormat, *, x12: bool = False) -> str:
    """Every claim's answer as one document: an 835 interchange with `x12`, a Bundle of
    ClaimResponses for several FHIR answers, else one JSON document per claim."""
    if x12:
        return out_835.to_x12([out_835.claim_adjustments(c, r) for c, r in answers])
    docs = [render(c, r, fmt) for c, r in answers]
    if fmt == "fhir" and len(docs) > 1:
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:response-{i + 1}", "resource": d} for i, d in enumerate(docs)],
        }
        out_fhir.check(bundle)
        docs = [bundle]
    return "".join(json.dumps(d, indent=2, sort_keys=fmt == "json", ensure_ascii=False) + "\n" for d in docs)


class FormatWorker:
    """A scrub worker writing `fmt`: each answer is (the record to write, the result the summary
    reads). It wraps the backend-aware adjudicator, so a chunk is still decided at once."""

    def __init__(self, fmt: OutputFormat, base: BatchWorker):
        self.fmt, self.base = fmt, base

    def __call__(self, claim: Claim) -> tuple[dict[str, Any], dict[str, Any]]:
        result = self.base(claim)
        return render(claim, result, self.fmt), result

    def many(self, claims: Sequence[Claim]) -> list[tuple[dict[str, Any], dict[str, Any]] | Exception]:
        out: list[tuple[dict[str, Any], dict[str, Any]] | Exception] = []
        for claim, result in zip(claims, self.base.many(claims), strict=True):
            if isinstance(result, Exception):
                out.append(result)
                continue
            try:
                out.append((render(claim, result, self.fmt), result))
            except Exception as e:  # a response that does not validate fails its own record
                out.append(e)
        return out


def make_worker(
    fmt: OutputFormat,
    kb_dir: str | None = None,
    cache_dir: str | None = None,
    proofs: bool = False,
    engine: str = "duckdb",
    workers: int = 1,
) -> FormatWorker:
    """A per-process scrub worker writing `fmt` (pass it to engine.batch via functools.partial)."""
    from engine.api import make_worker as adjudicator

    return FormatWorker(fmt, adjudicator(kb_dir, cache_dir, proofs, False, engine, workers))


def jsonl_to_835(src: Path, out: IO[str], *, today: date | None = None) -> list[dict[str, Any]]:
    """Write the 835 for a scrub's JSONL of 835 records; return the error records it skipped
    (an 835 answers adjudicated claims only: an unreadable claim has no place in it)."""
    records: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    with src.open(encoding="utf-8") as fh:
        for raw in fh:
            record = json.loads(raw)
            (errors if "error" in record else records).append(record)
    out.write(out_835.to_x12(records, today=today))
    return errors
