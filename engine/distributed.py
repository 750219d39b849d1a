"""`policykb scrub --dask`: the batch runner of engine/batch.py on a Dask distributed cluster.

The client splits the input into records (JSONL lines stay unparsed; see patient_key), cuts it into partitions that keep each
patient's claims together, and submits each partition as one task; a worker decides it with the
same code a local pool worker runs (engine.batch._handle_chunk), building its adjudicator once
per worker process. The client writes the outcomes in input order, so the output is byte for byte
what a local `scrub` writes, and tallies the same summary.

Why patients stay together: MUE date-of-service edits and history rules add up units over a
patient's lines. Today each claim carries the patient's earlier lines itself (`history`, see
engine/claims.py), so a claim's decision depends on that claim only and any partitioning gives
the same answers; grouping by patient keeps that true for rules that look across a patient's
claims in one run, and keeps related rows in one DuckDB pass.

A worker lost mid-run: the scheduler still holds the lost task (its partition travels inside the
task, not as scattered data on a worker) and runs it again on another worker. A task only
returns outcomes and the client writes each partition once, when its turn comes, so a retry can
neither lose nor duplicate a record. A partition that kills workers again and again (Dask gives
up after `distributed.scheduler.allowed-failures`) stops the run with a DistributedError.

Memory stays bounded on huge inputs: at most `window` partitions run at once (submitted, not yet
returned), and the client reads only as many blocks ahead as keep them busy.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.batch import (
    BatchSummary,
    Outcome,
    Record,
    Worker,
    WorkerFactory,
    WorkerStartError,
    _handle_chunk,
    _input,
    _Outcome,
    _output,
    _progress,
    _read,
    _start,
    _Tally,
)
from engine.claims import Claim
from engine.formats import InputFormat
from engine.formats.reader import RawRecord

LOCAL_PREFIX = "local:"
MAX_LOCAL_WORKERS = 64
# Seconds to wait for a scheduler before giving up on its address.
CONNECT_TIMEOUT = 10.0
# Partitions grouped at once: a patient's claims land in one partition when they are within the
# same block of BLOCK_PARTITIONS × partition size input records.
BLOCK_PARTITIONS = 4
# Partitions per worker thread that may be submitted and not yet written.
WINDOW_PER_THREAD = 2

PatientKey = str


class DistributedError(RuntimeError):
    """The cluster cannot be used: a bad address, no scheduler there, dask not installed, or a
    partition that kept killing its workers. The message says which, in plain words."""


class PartitionFailed(DistributedError):
    """A partition could not be decided on the cluster: it stopped every worker that tried it
    (Dask gave up on the task), or the cluster failed under it (e.g. the scheduler went away)."""


# ---------------------------------------------------------------------------------------------
# Partitions: a patient's claims together, input order kept by position


def patient_key(record: Record) -> PatientKey | None:
    """The patient a record's claim is for; None for a record that could not be read.

    A JSONL line stays bytes on the client (the workers parse and validate it, as in a local
    scrub): only its `patient.id` is looked up here. A line where that fails still goes to a
    worker, which writes its error record naming line and field."""
    if isinstance(record, RawRecord):
        try:
            doc = orjson.loads(record.data)
        except orjson.JSONDecodeError:
            return None
        patient = doc.get("patient") if isinstance(doc, dict) else None
        pid = patient.get("id") if isinstance(patient, dict) else None
        return pid.strip() if isinstance(pid, str) else None
    item = record.item
    return item.patient.id if isinstance(item, Claim) else None


def partition_records(records: list[Record], size: int) -> list[list[int]]:
    """Positions in `records` of each partition: every patient's claims in one partition, the
    patients in order of first appearance, packed into partitions of about `size` claims (a
    patient with more claims than that gets a partition of their own). A parsed record that could
    not be read belongs to no partition (the client writes its error record); an unparsed JSONL
    line without a readable patient is a group of its own (its worker writes the error record)."""
    if size < 1:
        raise ValueError(f"partition size must be at least 1, got {size}")
    groups: dict[PatientKey, list[int]] = {}
    for i, record in enumerate(records):
        key = patient_key(record)
        if key is not None:
            groups.setdefault(key, []).append(i)
        elif isinstance(record, RawRecord):
            groups[f"\0record {record.number}"] = [i]
    partitions: list[list[int]] = []
    current: list[int] = []
    for positions in groups.values():
        if current and len(current) + len(positions) > size:
            partitions.append(current)
            current = []
        current.extend(positions)
    if current:
        partitions.append(current)
    return partitions


# ---------------------------------------------------------------------------------------------
# On a worker: one adjudicator per process, whatever the number of tasks


_process_workers: dict[bytes, Worker | WorkerStartError] = {}
_process_lock = threading.Lock()


def _process_worker(make_worker: WorkerFactory) -> Worker:
    """The adjudicator this process built for `make_worker` (same factory, same KB path, same
    options: same pickled bytes), built on the first task; a start failure is kept and raised
    for every task, as the local pool does."""
    key = pickle.dumps(make_worker)
    found = _process_workers.get(key)
    if found is None:
        try:
            found = _start(make_worker)
        except WorkerStartError as e:
            found = e
        _process_workers[key] = found
    if isinstance(found, WorkerStartError):
        raise found
    return found


def decide_partition(make_worker: WorkerFactory, items: list[Record]) -> list[Outcome]:
    """The task each worker runs: a partition's records, decided in order. The lock keeps a
    worker started with several threads from building two adjudicators or sharing one DuckDB
    connection between threads (pyDatalog holds the GIL anyway)."""
    with _process_lock:
        return _handle_chunk(_process_worker(make_worker), items)


# ---------------------------------------------------------------------------------------------
# On the client: connect, submit a window of partitions, write in input order


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise DistributedError(
            f"--dask needs the dask and distributed packages ({e}); install them with `pip install policykb`"
        ) from None
    return distributed


def local_workers(address: str) -> int | None:
    """N for `local:N`, None for a scheduler address; DistributedError for a malformed local:N."""
    if not address.startswith(LOCAL_PREFIX):
        return None
    n = address[len(LOCAL_PREFIX) :]
    if not n.isdigit() or not 1 <= int(n) <= MAX_LOCAL_WORKERS:
        raise DistributedError(
            f"--dask {address}: local:N needs a number of workers from 1 to {MAX_LOCAL_WORKERS}, e.g. local:2"
        )
    return int(n)


def _probe(address: str, timeout: float) -> None:
    """Fail fast, with the address in the message, when no scheduler answers there (a Client
    that cannot connect leaves a half-made object whose clean-up prints a traceback)."""
    distributed = _distributed()
    from distributed.comm import connect
    from distributed.comm.addressing import get_address_host_port, parse_address

    try:
        scheme, _loc = parse_address(address, strict=False)
        if scheme in ("tcp", "tls"):
            get_address_host_port(address)
    except ValueError as e:
        raise DistributedError(f"--dask {address}: not a scheduler address ({e}); e.g. tcp://10.0.0.5:8786") from None

    async def knock() -> None:
        comm = await connect(address, timeout=timeout)
        await comm.close()

    try:
        asyncio.run(knock())
    except (OSError, ValueError, distributed.comm.CommClosedError) as e:
        raise DistributedError(f"--dask {address}: no Dask scheduler answered: {e}") from None


@contextmanager
def connect(address: str, timeout: float | None = None) -> Iterator[Any]:
    """A distributed.Client on `address`, or on a cluster of N worker processes started here
    for `local:N` (one thread each: an adjudicator is not shared between threads)."""
    distributed = _distributed()
    n = local_workers(address)
    if n is not None:
        with (
            distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port: never clash with another cluster
                silence_logs=logging.ERROR,
            ) as cluster,
            distributed.Client(cluster, set_as_default=False) as client,
        ):
            yield client
        return
    timeout = timeout or CONNECT_TIMEOUT
    _probe(address, timeout)
    with distributed.Client(address, timeout=timeout, set_as_default=False) as client:
        yield client


@dataclass(slots=True)
class _Block:
    """Consecutive input records, their outcomes as partitions finish, written when all are in."""

    outcomes: list[Outcome | None]
    pending: int


@dataclass(slots=True)
class _Submitted:
    block: _Block
    positions: list[int]
    first_record: int
    last_record: int


def _blocks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while block := list(itertools.islice(it, size)):
        yield block


def _new_block(block: list[Record], partition: int) -> tuple[_Block, deque[tuple[list[int], list[Record]]]]:
    """Unreadable records become their error records here; the rest wait to be submitted."""
    outcomes: list[Outcome | None] = [None] * len(block)
    for i, record in enumerate(block):
        if isinstance(record, RawRecord):
            continue  # parsed and validated on its worker
        claim = _read(record)
        if isinstance(claim, _Outcome):
            outcomes[i] = claim
    parts = partition_records(block, partition)
    todo = deque(([*p], [block[i] for i in p]) for p in parts)
    return _Block(outcomes, len(parts)), todo


def _outcomes(
    client: Any,
    records: Iterator[Record],
    make_worker: WorkerFactory,
    partition: int,
    threads: int,
    window: int,
    decided: Callable[[int], None],
) -> Iterator[Outcome]:
    """Every record's outcome in input order, with at most `window` partitions running and at
    most enough blocks read ahead to feed them. A block shorter than `threads` partitions (a
    small input, the end of a big one) is cut into smaller ones so every worker thread gets
    one. `decided(n)` is told as soon as n more records are decided, ahead of their writing."""
    distributed = _distributed()
    run = uuid.uuid4().hex[:8]
    max_blocks = 1 + -(-window // BLOCK_PARTITIONS)
    blocks: deque[_Block] = deque()
    todo: deque[tuple[_Block, list[int], list[Record]]] = deque()
    submitted: dict[str, _Submitted] = {}
    running = distributed.as_completed(loop=client.loop)
    source = _blocks(records, partition * BLOCK_PARTITIONS)
    exhausted = False
    while True:
        while blocks and blocks[0].pending == 0:
            for outcome in blocks.popleft().outcomes:
                assert outcome is not None
                yield outcome
        while len(submitted) < window:
            if todo:
                block, positions, part = todo.popleft()
                key = f"policykb-partition-{run}-{part[0].number}"
                future = client.submit(decide_partition, make_worker, part, key=key, pure=False)
                submitted[future.key] = _Submitted(block, positions, part[0].number, part[-1].number)
                running.add(future)
            elif exhausted or len(blocks) >= max_blocks:
                break
            elif (items := next(source, None)) is None:
                exhausted = True
            else:
                block, parts = _new_block(items, min(partition, -(-len(items) // threads)))
                decided(len(items) - sum(len(positions) for positions, _part in parts))  # error records
                blocks.append(block)
                todo.extend((block, positions, part) for positions, part in parts)
        if not submitted:
            if not blocks:
                return
            continue  # a block of unreadable records only: written at the top
        future = next(running)
        sent = submitted.pop(future.key)
        for i, outcome in zip(sent.positions, _result(future, sent), strict=True):
            sent.block.outcomes[i] = outcome
        sent.block.pending -= 1
        decided(len(sent.positions))


def _result(future: Any, sent: _Submitted) -> list[Outcome]:
    from distributed.scheduler import KilledWorker

    records = f"input records {sent.first_record}-{sent.last_record}"
    try:
        outcomes: list[Outcome] = future.result()
    except WorkerStartError:
        raise
    except KilledWorker as e:
        raise PartitionFailed(
            f"the partition of {records} stopped every worker that tried it ({e}); "
            "decide those records with a local scrub to see why"
        ) from None
    except Exception as e:  # the cluster, not a claim: claims' failures are error records
        raise PartitionFailed(f"the partition of {records} failed on the cluster: {type(e).__name__}: {e}") from None
    finally:
        future.release()
    return outcomes


def _threads(client: Any) -> int:
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def run_distributed(
    in_path: Path,
    out_path: Path | None,
    *,
    address: str,
    make_worker: WorkerFactory,
    progress: bool,
    partition: int,
    resume: bool = False,
    input_format: InputFormat | None = None,
    window: int | None = None,
    connect_timeout: float | None = None,
) -> BatchSummary:
    """engine.batch.run_batch on a Dask cluster (`address`: a scheduler, or `local:N`).

    `make_worker` must be picklable and importable on every worker (module-level function or
    functools.partial); each worker process calls it once. `partition`: claims per task, about
    (a patient's claims within a block of BLOCK_PARTITIONS partitions are never split).
    `resume`: as for run_batch; this process writes the output in input order, so an
    interrupted distributed run resumes like a local one. `window`: partitions running at once
    (submitted, not yet returned; default two per worker thread). Raises DistributedError (no
    cluster there, dask missing) and its PartitionFailed (a partition killing its workers, the
    cluster failing mid-run), WorkerStartError (make_worker failed on a worker), and OSError and
    ValueError as run_batch does.
    """
    if partition < 1:
        raise ValueError(f"partition must be at least 1, got {partition}")
    if resume and out_path is None:
        raise ValueError("--resume needs an output file")
    local_workers(address)  # a malformed local:N fails before the input is read
    started = time.perf_counter()
    tally = _Tally()
    with _input(in_path, out_path, resume, input_format, tally) as (records, done), warnings.catch_warnings():
        # a partition of thousands of claims travels inside its task (so a lost worker's task
        # can run again): that is intended, not the "large graph" Dask warns about
        warnings.filterwarnings("ignore", message=".*[Ll]arge (graph|object).*")
        with connect(address, connect_timeout or CONNECT_TIMEOUT) as client:
            threads = _threads(client)
            with (
                _output(out_path, append=done is not None) as out,
                _progress(in_path, progress, done or 0, input_format) as tick,
            ):
                for outcome in _outcomes(
                    client, records, make_worker, partition, threads, window or WINDOW_PER_THREAD * threads, tick
                ):
                    out.write(outcome.line)
                    tally.add(outcome)
                out.flush()
    return tally.summary(time.perf_counter() - started)
