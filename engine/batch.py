"""The batch runner behind `policykb scrub`: JSONL claims in, one JSONL result per claim out.

Output order is input order and every non-blank input line gets exactly one output line, so a
result can always be matched back to its claim. A bad claim or a failing adjudication becomes
an error record and the run goes on. Workers are separate processes (the Datalog engine holds
the GIL) that each build their adjudicator once.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from engine.claims import Claim, ClaimError, Problem
from engine.formats import ClaimRecord, InputFormat, detect_format, read_records

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
READ_AHEAD_CHUNKS = 4

Record = ClaimRecord


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


def _dumps(obj: Any) -> bytes:
    """One JSONL line; NaN is refused so every line stays valid JSON for the next tool."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return (text + "\n").encode("utf-8")


def _error(record: int, claim_id: str | None, problems: list[Problem]) -> _Outcome:
    entries = [{"field": p.field, "message": p.message} for p in problems]
    body = {"record": record, "claim": claim_id, "problems": entries}
    return _Outcome(_dumps({"error": body}), ok=False)


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


def _handle(worker: Worker, record: int, item: Claim | ClaimError) -> _Outcome:
    """Never raises for a bad claim or a failing worker: the run must go on."""
    if isinstance(item, ClaimError):
        return _error(record, item.claim_id, item.problems)
    claim = item
    try:
        result = worker(claim)
        output, summary = result if isinstance(result, tuple) else (result, result)
        lines, denied, kinds = _line_counts(summary)
        return _Outcome(_dumps(output), True, lines, denied, kinds)
    except Exception as e:  # any adjudicator failure becomes this claim's error record
        message = f"adjudication failed: {type(e).__name__}: {e}"
        return _error(record, claim.id, [Problem("$", message)])


def _start(make_worker: WorkerFactory) -> Worker:
    try:
        return make_worker()
    except Exception as e:
        raise WorkerStartError(f"worker failed to start: {type(e).__name__}: {e}") from e


# Per-process state of a pool worker, set once by the pool initializer.
_pool_worker: dict[str, Any] = {}


def _init_pool_worker(make_worker: WorkerFactory) -> None:
    """Keep a start failure for the first task to raise: an initializer that raises makes
    multiprocessing.Pool restart the worker forever instead of failing the run. Ctrl-C is left
    to the parent, which then stops the pool cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _pool_worker["worker"] = _start(make_worker)
    except WorkerStartError as e:
        _pool_worker["error"] = e


def _handle_in_pool(item: Record) -> _Outcome:
    if "error" in _pool_worker:
        raise _pool_worker["error"]
    return _handle(_pool_worker["worker"], item.number, item.item)


# ---------------------------------------------------------------------------------------------
# The run


def _records(src: IO[bytes], input_format: InputFormat | None = None) -> Iterator[Record]:
    """One record per claim, numbered: JSONL by input line (blank lines still count), X12 and
    FHIR by the claim's place in the file (engine.formats reads and detects them)."""
    return read_records(src, input_format, getattr(src, "name", ""))


class _ReadAhead:
    """Caps records in flight. Pool.imap keeps feeding workers however far the writer lags
    (e.g. stdout piped to a slow reader), so results would otherwise pile up in memory."""

    def __init__(self, size: int) -> None:
        self._slots = threading.Semaphore(size)
        self._closed = False

    def feed(self, records: Iterable[Record]) -> Iterator[Record]:
        for item in records:
            self._slots.acquire()
            if self._closed:
                return
            yield item

    def drain(self, outcomes: Iterable[_Outcome]) -> Iterator[_Outcome]:
        for outcome in outcomes:
            self._slots.release()
            yield outcome

    def close(self) -> None:
        """Wake a blocked feeder so the pool's task thread can end (terminate joins it)."""
        self._closed = True
        self._slots.release()


@contextmanager
def _outcomes(
    records: Iterator[Record], workers: int, make_worker: WorkerFactory
) -> Iterator[Iterator[_Outcome]]:
    if workers == 1:
        worker = _start(make_worker)
        yield (_handle(worker, r.number, r.item) for r in records)
        return
    read_ahead = _ReadAhead(workers * CHUNKSIZE * READ_AHEAD_CHUNKS)
    with Pool(workers, initializer=_init_pool_worker, initargs=(make_worker,)) as pool:
        try:
            tasks = read_ahead.feed(records)
            yield read_ahead.drain(pool.imap(_handle_in_pool, tasks, chunksize=CHUNKSIZE))
        finally:
            read_ahead.close()
        pool.close()
        pool.join()


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = f"{speed:,.0f}" if speed else "-"
        return Text(f"{shown} claims/s", style="progress.data.speed")


def _count_records(path: Path, input_format: InputFormat | None) -> int | None:
    """JSONL records are its non-blank lines; an X12 or FHIR file is counted as it is read."""
    with path.open("rb") as src:
        if (input_format or detect_format(src.peek(65536))) != "json":
            return None
        return sum(1 for raw in src if raw.strip())


@contextmanager
def _progress(in_path: Path, wanted: bool, input_format: InputFormat | None = None) -> Iterator[Callable[[], None]]:
    """Yield a tick function; a live bar only for a person watching a terminal."""
    console = Console(stderr=True)
    if not (wanted and console.is_interactive):
        yield lambda: None
        return
    columns = (TextColumn("scrub"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TimeRemainingColumn())
    # stdout may be the output stream: the bar must not capture it.
    with Progress(*columns, console=console, redirect_stdout=False,
                  redirect_stderr=False) as bar:
        task = bar.add_task("claims", total=_count_records(in_path, input_format))
        yield lambda: bar.advance(task)


@dataclass(slots=True)
class _Tally:
    claims_read: int = 0
    claims_ok: int = 0
    lines: int = 0
    denied_lines: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: _Outcome) -> None:
        self.claims_read += 1
        self.claims_ok += outcome.ok
        self.lines += outcome.lines
        self.denied_lines += outcome.denied
        self.kinds.update(outcome.deny_kinds)

    def summary(self, elapsed_s: float) -> BatchSummary:
        return BatchSummary(self.claims_read, self.claims_ok, self.lines, self.denied_lines,
                            dict(self.kinds), elapsed_s)


def _output(out_path: Path | None) -> AbstractContextManager[IO[bytes]]:
    """JSONL is UTF-8 whatever the locale, so write bytes; None means stdout (left open)."""
    if out_path is None:
        sys.stdout.flush()
        return nullcontext(sys.stdout.buffer)
    return out_path.open("wb")


def run_batch(
    in_path: Path,
    out_path: Path | None,
    *,
    workers: int,
    make_worker: WorkerFactory,
    progress: bool,
    input_format: InputFormat | None = None,
) -> BatchSummary:
    """Adjudicate every claim of a JSONL file, writing one result line per claim in order.

    `make_worker` must be picklable (module-level function or functools.partial) when
    workers > 1; it is called once per worker process. Raises OSError for an unreadable input,
    ValueError for bad arguments, WorkerStartError when make_worker fails.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    started = time.perf_counter()
    tally = _Tally()
    with in_path.open("rb") as src:
        if out_path is not None and out_path.exists() and out_path.samefile(in_path):
            raise ValueError(f"output {out_path} is the input file")
        with (
            _output(out_path) as out,
            _outcomes(_records(src, input_format), workers, make_worker) as outcomes,
            _progress(in_path, progress, input_format) as tick,
        ):
            for outcome in outcomes:
                out.write(outcome.line)
                tally.add(outcome)
                tick()
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
