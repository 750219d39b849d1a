"""The batch runner behind `policykb scrub`: JSONL claims in, one JSONL result per claim out.

Output order is input order and every non-blank input line gets exactly one output line, so a
result can always be matched back to its claim. A bad claim or a failing adjudication becomes
an error record and the run goes on. Workers are separate processes (the Datalog engine holds
the GIL) that each build their adjudicator once.
"""

from __future__ import annotations

import functools
import gc
import io
import itertools
import json
import multiprocessing
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from multiprocessing import Pool
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, ClassVar

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

from engine.claims import (
    Claim,
    ClaimError,
    ClaimFacts,
    ClaimsRead,
    Problem,
    claim_to_facts,
    frozen_maker,
    read_fast,
    read_fast_facts,
)
from engine.formats import ClaimRecord, InputFormat, detect_format
from engine.formats.reader import JsonlRecords, RawRecord, parse_declined, read_raw_records
from engine.transport import Slots

Worker = Callable[[Claim], dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]]
"""Adjudicates one claim into a JSON-able result dict. The summary reads only
`{"lines": [{"decision": "deny"|"pay", "reasons": [{"kind": ..., "severity": ...}]}]}`;
the whole dict is written out as it is. A worker writing another format (a FHIR
ClaimResponse, 835 adjustments) returns (record to write, result for the summary)."""
WorkerFactory = Callable[[], Worker]

# Claims per task sent to a worker: big enough to amortise the pipe, small enough to keep
# workers evenly busy near the end of a run.
CHUNKSIZE = 16
# Chunks per worker that may be read ahead of the writer; bounds memory on huge inputs.
READ_AHEAD_CHUNKS = 2

Record = ClaimRecord | RawRecord
"""A record as the parent reads it: a JSONL line still unparsed (parsed in the worker), or an
X12/FHIR claim already read. Either way numbered as the error records name it."""


class WorkerStartError(RuntimeError):
    """make_worker() failed (e.g. the KB did not load), so no claim can be adjudicated."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one input record produced, tallied in the worker so the parent only writes."""

    line: bytes
    ok: bool
    lines: int = 0
    denied: int = 0
    deny_kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchSummary:
    claims_read: int
    claims_ok: int
    lines: int
    denied_lines: int
    denials_by_kind: Mapping[str, int]
    elapsed_s: float

    @property
    def error_records(self) -> int:
        return self.claims_read - self.claims_ok

    @property
    def claims_per_s(self) -> float:
        return self.claims_read / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def exit_code(self) -> int:
        """0 when every claim was adjudicated, 1 when the output holds error records."""
        return 1 if self.error_records else 0


# ---------------------------------------------------------------------------------------------
# One record (runs in a worker process, or in-process when workers=1)


class PlainJson(dict[str, Any]):
    """A result its maker guarantees holds only str-keyed dicts, lists, strings, integers within
    64 bits, booleans and null (no float, no other type): written by orjson, which spells exactly
    these the way json.dumps(sort_keys, compact, ensure_ascii=False) does, several times faster."""


@dataclass(frozen=True, slots=True)
class Written:
    """A result already written: exactly the JSONL line _dumps writes for it, and what
    _line_counts counts in it. A worker's `many_written` answers with these (scrub's default path,
    engine/backends/decide.py), so no result dict is built only to be written, and they go to the
    parent as they are (an Outcome, like _Outcome): not copied into an _Outcome each."""

    line: bytes
    lines: int
    denied: int
    deny_kinds: tuple[str, ...]
    ok: ClassVar[bool] = True  # as an _Outcome's: the parent writes and tallies a Written as it is


Outcome = _Outcome | Written
"""What one input record produced, as the parent writes and tallies it."""

_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


def _dumps(obj: Any) -> bytes:
    """One JSONL line; NaN is refused so every line stays valid JSON for the next tool."""
    if type(obj) is PlainJson:
        try:
            return orjson.dumps(obj, option=_ORJSON)
        except orjson.JSONEncodeError:
            pass  # e.g. text that is not UTF-8: json.dumps raises what it always raised
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def _error(record: int, claim_id: str | None, problems: list[Problem]) -> _Outcome:
    entries = [{"field": p.field, "message": p.message} for p in problems]
    body = {"record": record, "claim": claim_id, "problems": entries}
    return _Outcome(_dumps(PlainJson(error=body)), ok=False)


def _line_counts(result: dict[str, Any]) -> tuple[int, int, tuple[str, ...]]:
    """Lines, denied lines and the kind of each deny-severity reason on a denied line."""
    lines = result.get("lines", [])
    denied = [ln for ln in lines if ln.get("decision") == "deny"]
    kinds = tuple(
        reason.get("kind") or "unspecified"
        for ln in denied
        for reason in ln.get("reasons", [])
        if reason.get("severity", "deny") == "deny"
    )
    return len(lines), len(denied), kinds


Answer = dict[str, Any] | tuple[dict[str, Any], dict[str, Any]] | Written


def _read(record: Record) -> Claim | _Outcome:
    """A record as read by engine.formats: its claim, or the error record naming line and field.
    A JSONL line is parsed here, in the worker: read_fast first, as parse_line does, without
    making a ClaimRecord of a claim that has nothing wrong."""
    if type(record) is RawRecord:
        claim = read_fast(record.data)
        if claim is not None:
            return claim
    return _parsed(record)


def _read_with_facts(record: Record) -> tuple[Claim, ClaimFacts] | _Outcome:
    """_read's claim with its facts: a JSONL line's made as it is read (read_fast_facts), for a
    worker that decides a chunk at once."""
    if type(record) is RawRecord:
        read = read_fast_facts(record.data)
        if read is not None:
            return read
    claim = _parsed(record)
    return claim if isinstance(claim, _Outcome) else (claim, claim_to_facts(claim))


def _parsed(record: Record) -> Claim | _Outcome:
    """A record read_fast did not read (a JSONL line it declined, or a claim engine.formats read)."""
    if type(record) is RawRecord:
        record = parse_declined(record.number, record.data)
    elif isinstance(record, RawRecord):
        record = record.parse()
    if isinstance(record.item, ClaimError):
        return _error(record.number, record.item.claim_id, record.item.problems)
    return record.item


def _result(record: int, claim: Claim, result: Answer | Exception) -> Outcome:
    if isinstance(result, Written):  # scrub's default path: already what the parent writes and tallies
        return result
    if isinstance(result, Exception):  # any adjudicator failure becomes this claim's error record
        message = f"adjudication failed: {type(result).__name__}: {result}"
        return _error(record, claim.id, [Problem("$", message)])
    output, summary = result if isinstance(result, tuple) else (result, result)
    lines, denied, kinds = _line_counts(summary)
    return _Outcome(_dumps(output), True, lines, denied, kinds)


def _handle(worker: Worker, record: Record) -> Outcome:
    """Never raises for a bad claim or a failing worker: the run must go on."""
    claim = _read(record)
    if isinstance(claim, _Outcome):
        return claim
    try:
        result: Answer | Exception = worker(claim)
    except Exception as e:
        result = e
    return _result(record.number, claim, result)


def _handle_chunk(worker: Worker, items: list[Record]) -> list[Outcome]:
    """A chunk of records, in order (a RawRecord's JSONL line is parsed here, in the worker). A
    worker with `many(claims)` (a set-at-a-time backend) decides all valid claims of the chunk at
    once; others claim by claim. `many_written` is preferred: results already written (Written)."""
    many = _many(worker)
    if many is None:
        return [_handle(worker, record) for record in items]
    with _no_cycle_collection():
        read = [(record.number, _read_with_facts(record)) for record in items]
        valid = [r for _n, r in read if type(r) is tuple]
        claims = ClaimsRead(map(itemgetter(0), valid), map(itemgetter(1), valid))
        try:
            results: list[Answer | Exception] = list(many(claims)) if claims else []
        except Exception as e:
            results = [e] * len(claims)
        answers = iter(results)
        outcomes = [r if isinstance(r, _Outcome) else _result(n, r[0], next(answers)) for n, r in read]
        # freed while the collector is paused: once it runs again, its first collection would
        # walk every object of the chunk still alive (a tenth of a 5,000-claim chunk's CPU)
        del read, valid, claims, results, answers
    return outcomes


def _many(worker: Worker) -> Callable[[ClaimsRead], Iterable[Answer]] | None:
    """The worker's set-at-a-time method (see _handle_chunk), or None for a claim-by-claim one."""
    return getattr(worker, "many_written", None) or getattr(worker, "many", None)


def _task_paused(worker: Worker) -> AbstractContextManager[None]:
    """For a set-at-a-time worker, the collector paused (_no_cycle_collection) over a whole task,
    not just the chunk's decisions: its records (made before) and outcomes (packed after) are then
    freed before the collector runs again. Resumed with them still alive, its first collection
    walked them all (measured: ~20,000 objects, 10-50 ms a 10,000-claim chunk), and the
    records, made with it running, went through several collections each."""
    return _no_cycle_collection() if _many(worker) is not None else nullcontext()


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector while a set-at-a-time chunk is decided. Its claims,
    facts, models and results (about a hundred objects a claim) stay alive until the chunk ends,
    and after PolicyKB's gc.freeze() every few tens of thousands of allocations trigger a full
    collection that walks them all: measured, a sixth of a chunk's CPU time. They hold no cycles
    (a chunk of ref/c20k leaves none to collect), so reference counting frees them as before; the
    collector runs again as usual once the chunk is done."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _start(make_worker: WorkerFactory) -> Worker:
    try:
        return make_worker()
    except Exception as e:
        raise WorkerStartError(f"worker failed to start: {type(e).__name__}: {e}") from e


# Per-process state of a pool worker, set once by the pool initializer.
_pool_worker: dict[str, Any] = {}


def _init_pool_worker(make_worker: WorkerFactory, slots: Slots | None = None) -> None:
    """Keep a start failure for the first task to raise: an initializer that raises makes
    multiprocessing.Pool restart the worker forever instead of failing the run. Ctrl-C is left
    to the parent, which then stops the pool cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _pool_worker["slots"] = slots
    try:
        _pool_worker["worker"] = _start(make_worker)
    except WorkerStartError as e:
        _pool_worker["error"] = e


@dataclass(frozen=True, slots=True)
class _Lines:
    """A chunk of JSONL records on its way to a worker: their lines as one bytes object, and
    their file line numbers (a range unless blank lines fell between them). One object to pickle
    per chunk instead of one per record."""

    numbers: range | tuple[int, ...]
    data: bytes

    def records(self) -> list[Record]:
        """Each line ended by b"\\n" only, keeping its end, as a binary file iterates them (a lone
        b"\\r" is data). BytesIO finds each end with memchr: a third of the time bytes.splitlines
        takes, which also looks at every byte for a b"\\r" (3.5 ms instead of 9.3 for a chunk of
        10,000 claims of ref/c100k). Each RawRecord made as frozen_maker makes it: a third of the frozen
        class's __init__."""
        lines = io.BytesIO(self.data).readlines()
        if len(lines) != len(self.numbers):
            raise AssertionError(f"a chunk of {len(self.numbers)} records came as {len(lines)} lines")
        return [*map(_new_record, self.numbers, lines)]


_new_record = frozen_maker(RawRecord)


@dataclass(frozen=True, slots=True)
class _SharedLines:
    """A chunk of JSONL records whose lines wait in shared-memory slot `slot` (`size` bytes),
    where its worker leaves its output lines too (engine.transport)."""

    numbers: range | tuple[int, ...]
    slot: int
    size: int


_PoolTask = _Lines | _SharedLines | list[Record]


@dataclass(frozen=True, slots=True)
class _InSlot:
    """A chunk's output lines as they wait in shared-memory slot `slot` (`size` bytes)."""

    slots: Slots
    slot: int
    size: int

    def write_to(self, out: IO[bytes]) -> None:
        self.slots.send(self.slot, self.size, out)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A chunk's outcomes on their way back to the parent: their output lines as one bytes object
    (or, `slot` >= 0, as the first `size` bytes of that shared-memory slot) and their tally, so
    the parent writes once and adds once per chunk."""

    data: bytes | memoryview | _InSlot
    records: int
    ok: int
    lines: int
    denied: int
    kinds: dict[str, int]
    slot: int = -1
    size: int = 0


def _pack(outcomes: list[Outcome], slots: Slots | None = None, slot: int = -1) -> _Chunk:
    every: list[str] = []  # the chunk's deny kinds, counted once (Counter.update costs a call each)
    ok = lines = denied = 0
    for o in outcomes:
        if o.ok:
            ok += 1
            lines += o.lines
            denied += o.denied
            if o.deny_kinds:
                every += o.deny_kinds
    kinds = dict(Counter(every))
    data = [o.line for o in outcomes]
    size = slots.put_all(slot, data) if slots is not None else None
    if size is not None:
        return _Chunk(b"", len(outcomes), ok, lines, denied, kinds, slot, size)
    return _Chunk(b"".join(data), len(outcomes), ok, lines, denied, kinds)


def _task(items: list[Record]) -> _Lines | list[Record]:
    """A chunk as it travels to a worker: JSONL lines packed into one _Lines; X12 and FHIR claims
    (already read, and few) as they are."""
    raw = [r for r in items if type(r) is RawRecord]
    if len(raw) < len(items):
        return items
    first, last = items[0].number, items[-1].number
    consecutive = last - first == len(items) - 1  # no blank line between them
    numbers = range(first, last + 1) if consecutive else tuple(r.number for r in items)
    return _Lines(numbers, b"".join([r.data for r in raw]))


def _handle_task(worker: Worker, task: _Lines | list[Record]) -> _Chunk:
    with _task_paused(worker):  # the records die with _handle_chunk's frame, before the collector resumes
        return _pack(_handle_chunk(worker, task.records() if isinstance(task, _Lines) else task))


def _handle_in_pool(task: _PoolTask) -> _Chunk:
    if "error" in _pool_worker:
        raise _pool_worker["error"]
    worker = _pool_worker["worker"]
    if isinstance(task, _SharedLines):
        slots: Slots = _pool_worker["slots"]
        with _task_paused(worker):
            lines = _Lines(task.numbers, slots.take(task.slot, task.size))  # not the joined copy too
            return _pack(_handle_chunk(worker, lines.records()), slots, task.slot)
    return _handle_task(worker, task)


def _share(slots: Slots | None, tasks: Iterable[_Lines | list[Record]]) -> Iterator[_PoolTask]:
    """Chunk k's lines into slot k (modulo the slot count) when they fit."""
    for k, task in enumerate(tasks):
        if slots is not None and isinstance(task, _Lines) and slots.put(k, task.data):
            shared = _SharedLines(task.numbers, k % slots.count, len(task.data))
            del task  # its lines are in the slot: not kept while the feeder waits for a place
            yield shared
        else:
            yield task


def _received(slots: Slots | None, chunks: Iterable[_Chunk]) -> Iterator[_Chunk]:
    """Each chunk with its output lines in hand: bytes, or where they wait in a slot (_InSlot), to
    be written before the next chunk is asked for."""
    for chunk in chunks:
        if chunk.slot < 0 or slots is None:
            yield chunk
            continue
        data = _InSlot(slots, chunk.slot, chunk.size)
        yield _Chunk(data, chunk.records, chunk.ok, chunk.lines, chunk.denied, chunk.kinds)
        slots.release(chunk.slot)  # written out: its pages go (the next chunk in it is not fed yet)


# ---------------------------------------------------------------------------------------------
# The run


def _records(src: IO[bytes], input_format: InputFormat | None = None) -> Iterator[Record]:
    """One record per claim, numbered: JSONL by input line (blank lines still count), X12 and
    FHIR by the claim's place in the file (engine.formats reads and detects them). JSONL lines
    stay bytes here: the workers parse them, so the parent only splits lines and writes."""
    return read_raw_records(src, input_format, getattr(src, "name", ""))


class _ReadAhead:
    """Caps chunks of records in flight. Pool.imap keeps feeding workers however far the writer lags
    (e.g. stdout piped to a slow reader), so results would otherwise pile up in memory."""

    def __init__(self, size: int) -> None:
        self._slots = threading.Semaphore(size)
        self._closed = False

    def feed(self, chunks: Iterable[_Lines | list[Record]]) -> Iterator[_Lines | list[Record]]:
        """A place first, then the chunk is read: no chunk waits read in memory for its place."""
        items = iter(chunks)
        while True:
            self._slots.acquire()
            if self._closed:
                return
            item = next(items, None)
            if item is None:
                return
            yield item
            del item

    def drain(self, chunks: Iterable[_Chunk]) -> Iterator[_Chunk]:
        """Frees a chunk's place once the writer is done with it (asks for the next): a chunk's
        shared-memory slot is not reused before then."""
        for chunk in chunks:
            yield chunk
            self._slots.release()

    def close(self) -> None:
        """Wake a blocked feeder so the pool's task thread can end (terminate joins it)."""
        self._closed = True
        self._slots.release()


def _tasks(records: Iterator[Record], size: int) -> Iterator[_Lines | list[Record]]:
    """The input's chunks of `size` records as they travel to a worker (_task). A JSONL input's
    are made from its lines (JsonlRecords.lines) without a RawRecord of each: measured, the
    parent's reading and chunking of ref/c100k took ~2 us a claim, a fifth of it making records."""
    if isinstance(records, JsonlRecords):
        return iter(functools.partial(_lines_task, records, size), None)
    return map(_task, _chunks(records, size))


def _lines_task(records: JsonlRecords, size: int) -> _Lines | None:
    """The next chunk of a JSONL input, or None past its end: its lines are not kept once joined
    (not while the feeder waits with the chunk)."""
    numbers, lines = records.lines(size)
    return _Lines(numbers, b"".join(lines)) if lines else None


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    items = iter(records)
    while True:
        chunk = [list(itertools.islice(items, size))]
        if not chunk[0]:
            return
        yield chunk.pop()  # not kept here while the chunk is packed, nor while the feeder waits


@contextmanager
def _outcomes(
    records: Iterator[Record], workers: int, make_worker: WorkerFactory, chunk: int
) -> Iterator[Iterator[_Chunk]]:
    """Each chunk's outcomes, packed, in input order."""
    tasks = _tasks(records, chunk)
    if workers == 1:
        worker = _start(make_worker)
        yield (_handle_task(worker, task) for task in tasks)
        return
    in_flight = workers * READ_AHEAD_CHUNKS
    read_ahead = _ReadAhead(in_flight)
    slots = Slots.for_pool(in_flight, chunk)
    forked = _before_fork(make_worker)
    pool_slots = closing(slots) if slots is not None else nullcontext()
    with pool_slots, Pool(workers, initializer=_init_pool_worker, initargs=(make_worker, slots)) as pool:
        forked()  # the workers are forked: what the parent loaded for them may go
        try:
            fed = _share(slots, read_ahead.feed(tasks))
            yield _received(slots, read_ahead.drain(pool.imap(_handle_in_pool, fed, chunksize=1)))
        finally:
            read_ahead.close()
        pool.close()
        pool.join()


def _before_fork(make_worker: WorkerFactory) -> Callable[[], None]:
    """Let the factory load in the parent, before the pool forks, what every worker needs (the KB):
    the workers then share it copy-on-write instead of each loading its own. A factory (or the
    function a functools.partial of it wraps) offers this as its `before_fork` attribute, called
    with the factory's arguments; it may return what to call once the workers are forked (to let
    go of what it loaded for them). Workers that are not forked get nothing from it. A hook that
    fails is passed over: each worker then makes all it needs itself, as without one."""
    if multiprocessing.get_start_method() != "fork":
        return _nothing
    func: Any = make_worker
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if isinstance(make_worker, functools.partial):
        func, args, kwargs = make_worker.func, make_worker.args, make_worker.keywords
    hook = getattr(func, "before_fork", None)
    if hook is None:
        return _nothing
    try:
        after = hook(*args, **kwargs)
    except Exception:
        return _nothing
    return after if callable(after) else _nothing


def _nothing() -> None:
    pass


class _RateColumn(ProgressColumn):
    """Claims per second since the start of this run. Not rich's windowed speed: results come in
    bursts of a whole chunk or partition (thousands of claims at once), and a rate over the last
    few ticks then reads hundreds of thousands of claims per second."""

    def render(self, task: Task) -> Text:
        speed = _run_rate(task)
        shown = f"{speed:,.0f}" if speed else "-"
        return Text(f"{shown} claims/s", style="progress.data.speed")


class _RemainingColumn(ProgressColumn):
    """Time left at the run's own rate (see _RateColumn)."""

    def render(self, task: Task) -> Text:
        speed = _run_rate(task)
        if task.total is None or not speed:
            return Text("-:--:--", style="progress.remaining")
        left = int(max(task.total - task.completed, 0) / speed)
        return Text(f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}", style="progress.remaining")


def _run_rate(task: Task) -> float | None:
    elapsed = task.elapsed
    decided = task.completed - task.fields.get("resumed", 0)
    return decided / elapsed if elapsed and decided > 0 else None


def _count_records(path: Path, input_format: InputFormat | None) -> int | None:
    """JSONL records are its non-blank lines; an X12 or FHIR file is counted as it is read."""
    with path.open("rb") as src:
        if (input_format or detect_format(src.peek(65536))) != "json":
            return None
        return sum(1 for raw in src if not raw.isspace())  # as raw.strip(), without the copy


@contextmanager
def _progress(
    in_path: Path, wanted: bool, done: int = 0, input_format: InputFormat | None = None
) -> Iterator[Callable[[int], None]]:
    """Yield a tick function (`tick(n)`: n more records written); a live bar only for a person
    watching a terminal."""
    console = Console(stderr=True)
    if not (wanted and console.is_interactive):
        yield _no_tick
        return
    columns = (TextColumn("scrub"), BarColumn(), MofNCompleteColumn(), _RateColumn(), _RemainingColumn())
    # stdout may be the output stream: the bar must not capture it.
    with Progress(*columns, console=console, redirect_stdout=False, redirect_stderr=False) as bar:
        # a stream cannot be read twice: its bar shows the count and the rate, with no total
        total = None if is_stream(in_path) else _count_records(in_path, input_format)
        task = bar.add_task("claims", total=total, completed=done, resumed=done)
        yield functools.partial(bar.advance, task)


def _no_tick(advance: float = 1) -> None:
    pass


@dataclass(slots=True)
class _Tally:
    claims_read: int = 0
    claims_ok: int = 0
    lines: int = 0
    denied_lines: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.claims_read += 1
        self.claims_ok += outcome.ok
        self.lines += outcome.lines
        self.denied_lines += outcome.denied
        self.kinds.update(outcome.deny_kinds)

    def add_chunk(self, chunk: _Chunk) -> None:
        self.claims_read += chunk.records
        self.claims_ok += chunk.ok
        self.lines += chunk.lines
        self.denied_lines += chunk.denied
        self.kinds.update(chunk.kinds)

    def summary(self, elapsed_s: float) -> BatchSummary:
        return BatchSummary(
            self.claims_read, self.claims_ok, self.lines, self.denied_lines, dict(self.kinds), elapsed_s
        )


def _output(out_path: Path | None, append: bool = False) -> AbstractContextManager[IO[bytes]]:
    """JSONL is UTF-8 whatever the locale, so write bytes; None means stdout (left open)."""
    if out_path is None:
        sys.stdout.flush()
        return nullcontext(sys.stdout.buffer)
    return out_path.open("ab" if append else "wb")


def _resume(out_path: Path, tally: _Tally) -> int:
    """Cut a torn last line off an interrupted run's output, tally the complete records it
    holds and return how many there are (each stands for one input record, in order)."""
    if not out_path.exists():
        return 0
    with out_path.open("r+b") as fh:
        keep = _complete_length(fh)
        if keep < fh.seek(0, io.SEEK_END):
            fh.truncate(keep)
        fh.seek(0)
        count = 0
        for line in fh:  # read line by line: the output may be far bigger than memory allows
            count += 1
            result = _loads(line, out_path)
            if "error" in result:
                tally.add(_Outcome(b"", ok=False))
            else:
                n, denied, kinds = _line_counts(result)
                tally.add(_Outcome(b"", True, n, denied, kinds))
    return count


def _complete_length(fh: IO[bytes], block: int = 1 << 16) -> int:
    """Bytes up to and including the last b"\\n" of a file (0 when it has none)."""
    end = fh.seek(0, io.SEEK_END)
    while end > 0:
        start = max(0, end - block)
        fh.seek(start)
        at = fh.read(end - start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def _loads(line: bytes, out_path: Path) -> Any:
    """One output record read back; orjson first (several times faster), json for what it refuses
    (it decides what is not ours, with its message)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(line.rstrip(b"\n"))
    except ValueError as e:
        raise ValueError(f"{out_path} is not the output of an earlier run: {e}") from None


STDIN = Path("-")  # the input path that names standard input


def is_stream(in_path: Path) -> bool:
    """Whether the input is read once, front to back: standard input (`-`) or a pipe (e.g. a
    shell's `<(zcat claims.jsonl.gz)`), not a file that can be read again."""
    return in_path == STDIN or not in_path.is_file()


@contextmanager
def _open_input(in_path: Path) -> Iterator[IO[bytes]]:
    """The input's bytes: standard input for `-` (left open), else the file or pipe at the path."""
    if in_path == STDIN:
        yield sys.stdin.buffer
        return
    with in_path.open("rb") as src:
        yield src


@contextmanager
def _input(
    in_path: Path, out_path: Path | None, resume: bool, input_format: InputFormat | None, tally: _Tally
) -> Iterator[tuple[Iterator[Record], int | None]]:
    """The input's records, past those an interrupted run already wrote when `resume` (their
    outcomes counted into `tally`), and how many that was (None without `resume`)."""
    if resume and out_path is None:
        raise ValueError("--resume needs an output file")
    with _open_input(in_path) as src:
        if out_path is not None and out_path.exists() and not is_stream(in_path) and out_path.samefile(in_path):
            raise ValueError(f"output {out_path} is the input file")
        records = _records(src, input_format)
        done = _resume(out_path, tally) if resume and out_path is not None else None
        if done:
            skipped = sum(1 for _ in itertools.islice(records, done))
            if skipped < done:
                raise ValueError(f"output {out_path} holds {done} records but the input has only {skipped}")
        yield records, done


def run_batch(
    in_path: Path,
    out_path: Path | None,
    *,
    workers: int,
    make_worker: WorkerFactory,
    progress: bool,
    chunk: int = CHUNKSIZE,
    resume: bool = False,
    input_format: InputFormat | None = None,
) -> BatchSummary:
    """Adjudicate every claim of a JSONL file, writing one result line per claim in order.

    `make_worker` must be picklable (module-level function or functools.partial) when
    workers > 1; it is called once per worker process. `chunk`: records per task (a worker with
    `many(claims)` decides a whole chunk at once, so set-at-a-time backends want large ones).
    `resume`: keep the complete records an interrupted run left in `out_path` (a torn last line is
    cut off) and decide only the records after them. Raises OSError for an unreadable input,
    ValueError for bad arguments, WorkerStartError when make_worker fails.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    started = time.perf_counter()
    tally = _Tally()
    with (
        _input(in_path, out_path, resume, input_format, tally) as (records, done),
        _output(out_path, append=done is not None) as out,
        _outcomes(records, workers, make_worker, chunk) as chunks,
        _progress(in_path, progress, done or 0, input_format) as tick,
    ):
        for packed in chunks:
            data = packed.data
            if isinstance(data, _InSlot):
                data.write_to(out)
            else:
                out.write(data)
            tally.add_chunk(packed)
            tick(packed.records)
        out.flush()
    return tally.summary(time.perf_counter() - started)


def render_summary(summary: BatchSummary, console: Console) -> None:
    """Print the run's counts and speed as an aligned table."""
    table = Table(title="scrub summary", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("claims read", f"{summary.claims_read:,}"),
        ("claims adjudicated", f"{summary.claims_ok:,}"),
        ("error records", f"{summary.error_records:,}"),
        ("lines", f"{summary.lines:,}"),
        ("denied lines", f"{summary.denied_lines:,}"),
    ]
    by_count = sorted(summary.denials_by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    rows += [(f"  deny reasons: {kind}", f"{n:,}") for kind, n in by_count]
    rows += [
        ("elapsed", f"{summary.elapsed_s:,.2f} s"),
        ("claims/s", f"{summary.claims_per_s:,.1f}"),
        ("lines/s", f"{summary.lines_per_s:,.1f}"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
