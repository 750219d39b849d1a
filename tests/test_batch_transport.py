"""How a chunk travels between scrub's parent and its pool workers (engine.transport, the packed
chunks of engine.batch): whatever the way, every input line yields its one record, in order,
named by its file line, exactly as when the claims are decided in the parent."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import transport
from engine.batch import Record, _Lines, run_batch
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


def test_many_parts_go_into_a_slot_in_order() -> None:
    """More parts than one pwritev takes, of uneven sizes (an output line per claim)."""
    parts = [str(n).encode() * (n % 7) + b"\n" for n in range(3000)]
    slots = transport.Slots(2, 1 << 16)
    assert slots.put_all(1, parts) == len(b"".join(parts))
    assert slots.take(1, len(b"".join(parts))) == b"".join(parts)


@pytest.mark.parametrize("how", ["file", "append", "buffer"])
def test_a_slot_is_sent_to_the_output_whatever_it_is(tmp_path: Path, how: str) -> None:
    """sendfile to a file; to a file opened to append (where Linux refuses sendfile) and to an
    in-memory buffer (no file descriptor) the bytes are read and written instead. What was
    written before stays before (the output's buffer is flushed first)."""
    slots = transport.Slots(2, 1 << 20)
    data = bytes(range(256)) * 3000  # 768,000 bytes, more than one piece of the fallback is not
    assert slots.put(1, data)
    path = tmp_path / "out.bin"
    path.write_bytes(b"old\n")
    buffer = io.BytesIO()
    with path.open("ab" if how == "append" else "wb") as fh:
        out = buffer if how == "buffer" else fh
        out.write(b"head\n")
        slots.send(1, len(data), out)
        out.write(b"tail\n")
    written = buffer.getvalue() if how == "buffer" else path.read_bytes()
    before = b"old\n" if how == "append" else b""
    assert written == before + b"head\n" + data + b"tail\n"


def _resident_shared_kb() -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("RssShmem:"):
            return int(line.split()[1])
    return None


def test_the_parent_never_maps_a_slot_page(tmp_path: Path) -> None:
    """Chunks in, answers out and sent on: no page of the slots becomes resident in this process
    (a mapped page would count in its memory, and again in each worker's)."""
    if _resident_shared_kb() is None:
        pytest.skip("needs Linux's /proc/self/status")
    before = _resident_shared_kb()
    slots = transport.Slots(2, 8 << 20)
    with (tmp_path / "out.bin").open("wb") as out:
        for k in range(4):
            assert slots.put(k, b"x" * (6 << 20))
            assert slots.take(k, 6 << 20)[:2] == b"xx"
            assert slots.put_all(k, [b"y" * (1 << 20)] * 7) == 7 << 20
            slots.send(k, 7 << 20, out)
            slots.release(k)
    after = _resident_shared_kb()
    assert before is not None and after is not None
    assert after - before < 1024  # kB: the 50 MB that went through are not resident here
    assert (tmp_path / "out.bin").stat().st_size == 4 * (7 << 20)
    slots.close()


def test_the_feeder_reads_a_chunk_only_once_it_has_a_place() -> None:
    """A chunk is read from the input only when a place is free, so no chunk waits in the
    parent's memory for one; closed while waiting, the feeder ends without reading another."""
    from engine.batch import _ReadAhead

    pulled: list[int] = []

    def chunks() -> Iterator[list[Record]]:
        for n in range(5):
            pulled.append(n)
            yield [RawRecord(n + 1, b"{}\n")]

    read_ahead = _ReadAhead(1)
    fed = read_ahead.feed(chunks())
    assert next(fed)[0].number == 1
    read_ahead.close()  # as when the run stops with one chunk in flight
    assert list(fed) == []
    assert pulled == [0]


@pytest.mark.parametrize(
    "data",
    [b"a\nb\n", b"a\r\nb", b"a\rb\x0cc\n\nd\n", b"\n", b"x", b"", b"\r", b"a\x0bb\x1c\x85\n\r\n"],
)
def test_packed_lines_split_as_a_binary_file_iterates(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "chunk.jsonl"
    path.write_bytes(data)
    with path.open("rb") as fh:
        lines = list(fh)
    packed = _Lines(range(1, len(lines) + 1), data)
    records = packed.records()
    assert all(isinstance(r, RawRecord) for r in records)
    assert [r.data for r in records if isinstance(r, RawRecord)] == lines
    assert [r.number for r in records] == list(range(1, len(lines) + 1))


def test_a_chunk_that_fits_travels_by_its_slot_and_comes_back_from_it(tmp_path: Path) -> None:
    """The parent's side of the shared-memory path: chunk k goes to slot k modulo the count, and
    a worker's answer in that slot is handed back as where it waits (not a copy), written from
    there."""
    from engine.batch import _Chunk, _InSlot, _received, _share, _SharedLines

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
    assert isinstance(received.data, _InSlot)
    assert (received.records, received.ok, received.lines, received.denied) == (2, 2, 3, 1)
    with (tmp_path / "out").open("wb") as out:
        received.data.write_to(out)
    assert (tmp_path / "out").read_bytes() == b"out-1\nout-2\n"
    assert next(chunks, None) is None


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
