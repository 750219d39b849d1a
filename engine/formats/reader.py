"""One way in for every claim format: detect it, read it, yield one record per claim.

`explain` and `scrub` (and the library) read claims through here whatever the input is: our
claim JSON (one object, an array, or JSONL for scrub), an X12 5010 837P interchange, or a FHIR
R4 Claim or Bundle (or NDJSON of them). Each record is a Claim or the ClaimError that names
where the input is wrong, numbered in input order, so a batch writes exactly one output record
per record read and one bad claim does not stop the others.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from engine.claims import Claim, ClaimError, ClaimFileError, Problem, parse_claim_text, read_claims, read_fast

InputFormat = Literal["json", "x12", "fhir"]
INPUT_FORMATS: tuple[InputFormat, ...] = ("json", "x12", "fhir")
_FHIR_HINT = re.compile(rb'^\s*[\[{]\s*"resourceType"\s*:|"resourceType"\s*:\s*"(Claim|Bundle)"')
_X12_START = re.compile(rb"[A-Z][A-Z0-9]{1,2}[^A-Za-z0-9\s\"{\[]")
_PEEK = 65536


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """Record `number` of the input (the JSONL line, or the claim's place in an X12 or FHIR
    file): a Claim, or the error that keeps it from being adjudicated."""

    number: int
    item: Claim | ClaimError

    def __reduce__(self) -> tuple[Any, ...]:
        """Records go to scrub's worker processes; an exception with its own __init__ does not
        pickle by itself, so send a ClaimError as its parts."""
        if isinstance(self.item, ClaimError):
            e = self.item
            return (_error_record, (self.number, e.claim_id, e.problems, e.source, e.record))
        return (ClaimRecord, (self.number, self.item))


def _error_record(
    number: int, claim_id: str | None, problems: list[Problem], source: str | None, record: int | None
) -> ClaimRecord:
    return ClaimRecord(number, ClaimError(claim_id, problems, source, record))


def detect_format(head: bytes) -> InputFormat:
    """X12 starts with a segment (ISA, or another one in a broken file); FHIR JSON names a
    resourceType; anything else is ours."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if _X12_START.match(text):
        return "x12"
    if _FHIR_HINT.search(text[:_PEEK]):
        return "fhir"
    return "json"


def _x12_records(text: str, source: str) -> Iterator[ClaimRecord]:
    from engine.formats.x12 import read_x12

    for number, r in enumerate(read_x12(text), start=1):
        yield ClaimRecord(number, r.claim if r.claim is not None else ClaimError(r.claim_id, r.problems, source))


def _fhir_records(text: str, source: str) -> Iterator[ClaimRecord]:
    from engine.formats.fhir import read_fhir

    try:
        documents = [json.loads(text)]
    except json.JSONDecodeError as whole:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        try:  # NDJSON: one resource per line
            documents = [json.loads(ln) for ln in lines] if len(lines) > 1 else []
        except json.JSONDecodeError:
            documents = []
        if not documents:
            message = f"malformed JSON: {whole.msg} at line {whole.lineno}, column {whole.colno}"
            yield ClaimRecord(1, ClaimError(None, [Problem("$", message)], source))
            return
    number = 0
    for d, document in enumerate(documents):
        at = f"{source}:{d + 1}" if len(documents) > 1 else source
        for r in read_fhir(document):
            number += 1
            yield ClaimRecord(number, r.claim if r.claim is not None else ClaimError(r.claim_id, r.problems, at))


@dataclass(frozen=True, slots=True)
class RawRecord:
    """Record `number` of a JSONL input as its bytes, not yet parsed: scrub's parent process only
    splits lines and its workers parse them (`parse_line`), so reading is not a serial step."""

    number: int
    data: bytes

    def parse(self) -> ClaimRecord:
        return parse_line(self.number, self.data)


def parse_line(number: int, raw: bytes) -> ClaimRecord:
    """One JSONL line (file line `number`) as its claim, or the error naming line and field."""
    claim = read_fast(raw)  # the common case, a claim with nothing wrong, read directly
    if claim is not None:
        return ClaimRecord(number, claim)
    return parse_declined(number, raw)


def parse_declined(number: int, raw: bytes) -> ClaimRecord:
    """parse_line for a line read_fast declined: json.loads and the model-driven reader."""
    try:
        text = raw.rstrip(b"\r\n").decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problem = Problem("$", f"not UTF-8: {e.reason} at byte {e.start}")
        return ClaimRecord(number, ClaimError(None, [problem], record=number))
    try:
        return ClaimRecord(number, parse_claim_text(text, record=number))
    except ClaimError as e:
        return ClaimRecord(number, e)


class JsonlRecords:
    """A JSONL input's records: its non-blank lines, numbered by file line (blank lines still
    count), each a RawRecord as it is asked for. `lines` gives the next records of a chunk at once
    without making a RawRecord of each (scrub's parent, engine.batch, only joins them)."""

    __slots__ = ("_number", "_src")

    def __init__(self, src: IO[bytes]) -> None:
        self._src = src
        self._number = 0  # the number of the last line read

    def __iter__(self) -> JsonlRecords:
        return self

    def __next__(self) -> RawRecord:
        for raw in self._src:
            self._number += 1
            if not raw.isspace():  # as raw.strip() but without copying the line
                return RawRecord(self._number, raw)
        raise StopIteration

    def lines(self, size: int) -> tuple[range | tuple[int, ...], list[bytes]]:
        """The next `size` records (fewer at the input's end; none past it) as the line numbers
        and lines of the RawRecords `size` calls of next() give: read by the file's own iteration
        and checked for blank lines in C (a chunk seldom has one), a tenth of the time of making
        each record. The numbers are a range where no blank line falls between the records."""
        lines = list(itertools.islice(self._src, size))
        first = self._number + 1
        self._number += len(lines)
        if not any(map(bytes.isspace, lines)):
            return range(first, self._number + 1), lines
        numbers = [n for n, raw in enumerate(lines, first) if not raw.isspace()]
        kept = [raw for raw in lines if not raw.isspace()]
        for raw in self._src:  # as many more as blank lines were read, one at a time
            self._number += 1
            if not raw.isspace():
                numbers.append(self._number)
                kept.append(raw)
                if len(kept) == size:
                    break
        if numbers and numbers[-1] - numbers[0] == len(numbers) - 1:
            return range(numbers[0], numbers[-1] + 1), kept
        return tuple(numbers), kept


def _jsonl_records(src: IO[bytes]) -> Iterator[ClaimRecord]:
    """Non-blank lines, numbered by file line (blank lines still count), parsed one by one."""
    for record in JsonlRecords(src):
        yield record.parse()


def _decode(data: bytes, source: str) -> str | ClaimError:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return ClaimError(None, [Problem("$", f"not UTF-8: {e.reason} at byte {e.start}")], source)


def read_records(src: IO[bytes], input_format: InputFormat | None = None, source: str = "") -> Iterator[ClaimRecord]:
    """Every claim record of a batch input: JSONL (streamed line by line), X12 or FHIR."""
    for record in read_raw_records(src, input_format, source):
        yield record.parse() if isinstance(record, RawRecord) else record


def read_raw_records(
    src: IO[bytes], input_format: InputFormat | None = None, source: str = ""
) -> Iterator[ClaimRecord | RawRecord]:
    """As read_records, but a JSONL line comes unparsed (RawRecord.parse reads it later, e.g. in
    a worker process): a JsonlRecords; an X12 or FHIR document is one whole, so its claims come
    parsed. The head of the input is looked at (its format detected) here, not at the first record."""
    if not hasattr(src, "peek"):  # e.g. BytesIO: buffer it so the head can be looked at
        src = io.BufferedReader(io.BytesIO(src.read()))
    head = src.peek(_PEEK)
    fmt = input_format or detect_format(head)
    if fmt == "json":
        return JsonlRecords(src)  # a scrub reads it a chunk at a time (JsonlRecords.lines)
    return _whole_records(src, fmt, source)


def _whole_records(src: IO[bytes], fmt: InputFormat, source: str) -> Iterator[ClaimRecord]:
    """An X12 or FHIR input's records, read when the first is asked for."""
    text = _decode(src.read(), source)
    if isinstance(text, ClaimError):
        yield ClaimRecord(1, text)
    elif fmt == "x12":
        yield from _x12_records(text, source)
    else:
        yield from _fhir_records(text, source)


def read_claims_any(data: bytes, name: str, input_format: InputFormat | None = None) -> tuple[list[Claim], bool]:
    """Every claim in the bytes of one file in any format, for `explain` and the library, and
    whether the file held several (a JSON array, or an X12/FHIR file of more than one claim).

    `name` is how errors name the input (a path, or `<stdin>`). Claim JSON keeps
    engine.claims.read_claims' behaviour. Raises ClaimFileError listing every bad claim (with
    its X12 segment or FHIR element) when any claim cannot be read.
    """
    fmt = input_format or detect_format(data[:_PEEK])
    if fmt == "json":
        return read_claims(data, name)
    text = _decode(data, name)
    if isinstance(text, ClaimError):
        raise ClaimFileError(name, [text])
    records = list(_x12_records(text, name) if fmt == "x12" else _fhir_records(text, name))
    errors = [r.item for r in records if isinstance(r.item, ClaimError)]
    if errors:
        raise ClaimFileError(name, errors)
    claims = [r.item for r in records if isinstance(r.item, Claim)]
    return claims, len(claims) > 1


def load_claims_any(path: str | Path, input_format: InputFormat | None = None) -> list[Claim]:
    """Every claim of one file in any format (see read_claims_any); OSError when unreadable."""
    return read_claims_any(Path(path).read_bytes(), str(path), input_format)[0]
