"""Content negotiation, in one place: request media type -> claim reader, Accept -> renderer.

Our claim JSON (engine/claims.py) and our result JSON (the CLI's `--format json`) are complete.
The X12 837P / FHIR Claim readers and the FHIR ClaimResponse / 835 renderers live in
engine/formats/ (issue 11); until they are plugged into READERS and RENDERERS below, their
slots answer 415 (a claim we cannot read yet) or 406 (an answer we cannot write yet) as
problem details, so a client learns the format is known but not served.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from engine.claims import Claim, ClaimError, ClaimFileError, Problem, parse_claim_text
from engine.formats import InputFormat, detect_format, out_835, read_claims_any
from engine.formats.output import render
from engine.service.problems import ProblemError

JSON = "application/json"
FHIR_JSON = "application/fhir+json"
X12 = "application/edi-x12"

ClaimReader = Callable[[str], Claim]
"""Decoded body text -> one Claim; raises engine.claims.ClaimError naming the field paths."""
Renderer = Callable[[Claim, dict[str, object]], str]
"""(the claim, the result as the CLI's JSON dict) -> the response body."""


@dataclass(frozen=True)
class Format:
    media_type: str
    name: str  # what a person calls it, for error messages
    reader: ClaimReader | None = None
    renderer: Renderer | None = None


def _read_json(text: str) -> Claim:
    try:
        return parse_claim_text(text)
    except RecursionError:  # "[[[[…": json gives up on nesting deeper than the interpreter's stack
        raise ClaimError(None, [Problem("$", "malformed JSON: nested too deeply")]) from None


def _render_json(_claim: Claim, result: dict[str, object]) -> str:
    return json.dumps(result, ensure_ascii=False, sort_keys=True)


def _reader(input_format: InputFormat) -> ClaimReader:
    """One claim from an X12 837P or FHIR body, read and validated by engine.formats."""

    def read(text: str) -> Claim:
        try:
            claims, _several = read_claims_any(text.encode("utf-8"), "body", input_format)
        except ClaimFileError as e:
            problems = [p for err in e.errors for p in err.problems]
            raise ClaimError(e.errors[0].claim_id, problems) from None
        if len(claims) != 1:
            message = f"the body holds {len(claims)} claims; send one per request (`policykb scrub` takes batches)"
            raise ClaimError(None, [Problem("$", message)])
        return claims[0]

    return read


def _render_fhir(claim: Claim, result: dict[str, object]) -> str:
    return json.dumps(render(claim, dict(result), "fhir"), ensure_ascii=False)


def _render_835(claim: Claim, result: dict[str, object]) -> str:
    return out_835.to_x12([out_835.claim_adjustments(claim, dict(result))])


# Request Content-Type -> how to read the claim. None: known format, reader not plugged in yet.
READERS: dict[str, Format] = {
    JSON: Format(JSON, "PolicyKB claim JSON", reader=_read_json),
    FHIR_JSON: Format(FHIR_JSON, "FHIR Claim", reader=_reader("fhir")),
    X12: Format(X12, "X12 837P", reader=_reader("x12")),
}

# Accept -> how to write the answer. None: known format, renderer not plugged in yet.
RENDERERS: dict[str, Format] = {
    JSON: Format(JSON, "PolicyKB result JSON", renderer=_render_json),
    FHIR_JSON: Format(FHIR_JSON, "FHIR ClaimResponse", renderer=_render_fhir),
    X12: Format(X12, "X12 835 adjustment codes", renderer=_render_835),
}

_ALIASES = {
    "text/plain": None,
    "application/octet-stream": None,
    "": None,  # None: detect from the body
    "application/x12": X12,
    "application/edi-x12": X12,
    "text/x12": X12,
}


def detect(text: str) -> str:
    """The claim format of a body sent without a usable Content-Type, as engine.formats
    detects it (X12 starts with a segment, FHIR names a resourceType, else our JSON)."""
    return {"x12": X12, "fhir": FHIR_JSON}.get(detect_format(text[:65536].encode("utf-8")), JSON)


def reader_for(content_type: str | None, text: str) -> Format:
    """The reader for a request; 415 for a type we do not know or do not serve yet."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in _ALIASES:
        media = _ALIASES[media] or detect(text)
    fmt = READERS.get(media)
    if fmt is None:
        known = ", ".join(READERS)
        raise ProblemError(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"cannot read a claim sent as {media!r}; send one of {known}",
        )
    if fmt.reader is None:
        raise ProblemError(
            415,
            "format-not-served",
            "Claim format not served yet",
            f"{fmt.name} ({fmt.media_type}) claims are not read by this build; send {JSON}",
        )
    return fmt


def renderer_for(accept: str | None) -> Format:
    """The renderer for an Accept header (quality values honoured, */* means our JSON); 406 when
    nothing acceptable is served."""
    wanted = _accept_list(accept)
    unserved: list[Format] = []
    for media in wanted:
        if media in ("*/*", "application/*"):
            return RENDERERS[JSON]
        fmt = RENDERERS.get(media)
        if fmt is not None and fmt.renderer is not None:
            return fmt
        if fmt is not None:
            unserved.append(fmt)
    if unserved:
        names = ", ".join(f"{f.name} ({f.media_type})" for f in unserved)
        raise ProblemError(
            406,
            "format-not-served",
            "Answer format not served yet",
            f"{names} answers are not written by this build; accept {JSON}",
        )
    raise ProblemError(
        406, "not-acceptable", "Not acceptable", f"cannot answer as {accept!r}; accept one of {', '.join(RENDERERS)}"
    )


def _accept_list(accept: str | None) -> list[str]:
    """Media types of an Accept header, best first; an absent or empty header accepts anything."""
    if not accept or not accept.strip():
        return ["*/*"]
    items: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f.lower().startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if media and q > 0:
            items.append((-q, i, media))
    return [m for _q, _i, m in sorted(items)]
