"""How a chunk travels between scrub's parent and its pool workers (engine.transport, the packed
chunks of engine.batch): whatever the way, every input line yields its one record, in order,
named by its file line, exactly as when the claims are decided in the parent."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine import transport
from engine.batch import _Lines, _split_lf, run_batch
from engine.formats.reader import RawRecord
from test_batch import claim_obj, comparable, make_records, make_test_worker, read_output, write_input


def _awkward_input(path: Path) -> tuple[Path, dict[int, str]]:
    """Claims with CRLF and LF endings, blank and whitespace-only lines, a lone CR and a form feed
    inside malformed lines, and a last line without its newline. Returns the file and, for each
    line that must give an error record, the field that record must name."""
    good = [json.dumps(claim_obj(n, ("99211", "99213", "J3420")[n % 3])).encode() for n in range(1, 9)]
    lines = [
        good[0] + b"\r\n",  # 1
        good[1] + b"\n",  # 2
        b"\n",  # 3 blank
        b" \t \r\n",  # 4 whitespace only
        b'{"id": "CLM-X", \r "lines": [\n',  # 5 malformed, a lone CR inside
        good[2] + b"\n",  # 6
        b'{"id": "CLM-Y"\x0c, "patient": 1}\n',  # 7 malformed, a form feed inside
        good[3] + b"\r\n",  # 8
        b"\r\n",  # 9 blank (CRLF)
        good[4],  # 10, no newline at the end of the file
    ]
    path.write_bytes(b"".join(lines))
    return path, {5: "$", 7: "$"}


def _decided(path: Path, out: Path, workers: int, chunk: int) -> list[dict]:
    run_batch(path, out, workers=workers, make_worker=make_test_worker, progress=False, chunk=chunk)
    return [comparable(o) for o in read_output(out)]


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_awkward_line_ends_give_the_same_records_through_the_pool(tmp_path: Path, chunk: int) -> None:
    src, errors = _awkward_input(tmp_path / "in.jsonl")
    in_parent = _decided(src, tmp_path / "one.jsonl", 1, chunk)
    in_pool = _decided(src, tmp_path / "two.jsonl", 2, chunk)
    assert in_pool == in_parent
    assert len(in_pool) == 7  # ten lines, three of them blank
    assert {o["error"]["record"]: o["error"]["problems"][0]["field"] for o in in_pool if "error" in o} == errors
    assert [o["claim"] for o in in_pool if "claim" in o] == [f"CLM-{n:04d}" for n in (1, 2, 3, 4, 5)]


@pytest.mark.parametrize("where", ["lines", "output"])
def test_a_chunk_too_big_for_its_slot_goes_through_the_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Slots of 64 bytes hold only the shortest lines (a malformed claim cut at 40 characters),
    the others travel through the pipe; or no output fits (the workers are forked after the
    patch, so they have it too)."""
    monkeypatch.setattr(transport, "SLOT_BYTES_PER_CLAIM", 1)
    if where == "lines":
        monkeypatch.setattr(transport, "MIN_SLOT_BYTES", 64)
    else:
        monkeypatch.setattr(transport.Slots, "put_all", lambda self, slot, parts: None)
    records = make_records(90)
    src = write_input(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    summary = run_batch(src, out, workers=2, make_worker=make_test_worker, progress=False, chunk=1)
    assert [comparable(o) for o in read_output(out)] == [r.expected for r in records if r.expected]
    assert summary.claims_read == sum(1 for r in records if r.expected)


def test_slots_refuse_what_does_not_fit_and_wrap_around() -> None:
    slots = transport.Slots(2, 8)
    assert slots.put(0, b"12345678") and not slots.put(1, b"123456789")
    assert slots.put_all(3, [b"abc", b"de"]) == 5  # slot 3 is slot 1
    assert slots.put_all(1, [b"abcde", b"fghi"]) is None
    assert slots.take(1, 5) == b"abcde" and slots.take(2, 8) == b"12345678"
    with slots.view(0, 3) as view:
        assert bytes(view) == b"123"


@pytest.mark.parametrize(
    "data",
    [b"a\nb\n", b"a\r\nb", b"a\rb\x0cc\n\nd\n", b"\n", b"x"],
)
def test_packed_lines_split_as_a_binary_file_iterates(data: bytes) -> None:
    lines = list(io.BytesIO(data))
    assert _split_lf(data) == lines
    packed = _Lines(range(1, len(lines) + 1), data)
    records = packed.records()
    assert all(isinstance(r, RawRecord) for r in records)
    assert [r.data for r in records if isinstance(r, RawRecord)] == lines
    assert [r.number for r in records] == list(range(1, len(lines) + 1))


def test_a_chunk_that_fits_travels_by_its_slot_and_comes_back_from_it() -> None:
    """The parent's side of the shared-memory path: chunk k goes to slot k modulo the count, and
    a worker's answer in that slot is handed back as a view of the slot, not a copy."""
    from engine.batch import _Chunk, _received, _share, _SharedLines

    slots = transport.Slots(2, 64)
    tasks = [_Lines(range(1, 3), b"a\nb\n"), _Lines(range(3, 4), b"c" * 65), _Lines(range(4, 5), b"d\n")]
    shared = list(_share(slots, tasks))
    assert shared[0] == _SharedLines(range(1, 3), 0, 4)
    assert shared[1] is tasks[1]  # 65 bytes do not fit a 64-byte slot
    assert shared[2] == _SharedLines(range(4, 5), 0, 2)  # chunk 2 reuses slot 0
    assert slots.put_all(1, [b"out-1\n", b"out-2\n"]) == 12
    answer = _Chunk(b"", 2, 2, 3, 1, {"ncci": 1}, slot=1, size=12)
    chunks = _received(slots, [answer])
    received = next(chunks)
    assert isinstance(received.data, memoryview) and bytes(received.data) == b"out-1\nout-2\n"
    assert (received.records, received.ok, received.lines, received.denied) == (2, 2, 3, 1)
    assert next(chunks, None) is None
    with pytest.raises(ValueError, match="released"):
        bytes(received.data)  # the view ends when the writer asks for the next chunk


@pytest.mark.parametrize("block", [1, 3, 4, 1 << 16])
def test_resume_finds_the_last_complete_line_whatever_the_block(block: int) -> None:
    from engine.batch import _complete_length

    for data, keep in [(b"ab\ncd\nef", 6), (b"ab\ncd\n", 6), (b"abcdef", 0), (b"", 0), (b"\n", 1)]:
        assert _complete_length(io.BytesIO(data), block) == keep, data


def test_a_released_slot_gives_its_pages_back_and_serves_again() -> None:
    slots = transport.Slots(2, 1 << 20)
    assert slots.put(1, b"x" * 5000)
    slots.release(1)
    assert slots.take(1, 5000) == bytes(5000)  # its pages are gone: they read as zeros
    assert slots.put(3, b"abc")  # slot 1 again
    assert slots.take(1, 3) == b"abc"
