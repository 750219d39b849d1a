"""`policykb scrub --dask`: the bundled KB decided on a Dask LocalCluster of worker processes.

The reference for every comparison is a local `scrub` (engine.batch.run_batch) of the same
input with the same KB: the distributed run must write the same bytes, in the same order, with
one record per input record, even when a worker process dies in the middle of the run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine import distributed as dist
from engine.api import make_worker
from engine.batch import WorkerStartError, run_batch
from engine.claims import Claim
from engine.cli import main
from engine.formats import read_records
from engine.formats.reader import read_raw_records

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

EXAMPLES = Path("examples/batch.jsonl")
KB = str(Path("kb").resolve())
FACTORY = functools.partial(make_worker, KB, None, False, False, "duckdb", 2)


# -- inputs and the local reference ------------------------------------------------------------


def _with_bad_record(tmp_path: Path) -> Path:
    """examples/batch.jsonl with one more broken claim in the middle: a line with no patient."""
    lines = EXAMPLES.read_bytes().splitlines(keepends=True)
    broken = json.dumps({"id": "MID-NO-PATIENT", "lines": []}).encode() + b"\n"
    path = tmp_path / "batch-with-bad.jsonl"
    path.write_bytes(b"".join(lines[:16] + [broken] + lines[16:]))
    return path


@functools.cache
def _local(data: bytes) -> bytes:
    """A local scrub (one in-process worker) of the input bytes: the expected output."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "local-in.jsonl", Path(tmp) / "local-out.jsonl"
        src.write_bytes(data)
        run_batch(src, out, workers=1, make_worker=FACTORY, progress=False, chunk=5000)
        return out.read_bytes()


def _expected(path: Path) -> bytes:
    return _local(path.read_bytes())


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two worker processes of one thread each, as `--dask local:2` starts them."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as c:
        yield c


# -- partitions --------------------------------------------------------------------------------


def _patients(records: list[Any], positions: list[int]) -> set[str]:
    return {records[i].item.patient.id for i in positions}


def test_partitions_keep_each_patients_claims_together() -> None:
    records = list(read_records(EXAMPLES.open("rb")))
    by_patient: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if isinstance(r.item, Claim):
            by_patient.setdefault(r.item.patient.id, []).append(i)
    assert len(by_patient) >= 3, "the example batch must hold several patients for this test to mean anything"
    parts = dist.partition_records(records, 4)
    placed = [i for p in parts for i in p]
    # every readable record in exactly one partition; unreadable ones in none (written by the client)
    assert sorted(placed) == sorted(i for ps in by_patient.values() for i in ps)
    for patient, positions in by_patient.items():
        holding = [p for p in parts if set(positions) & set(p)]
        assert len(holding) == 1, f"{patient}'s claims are split over {len(holding)} partitions"
        assert set(positions) <= set(holding[0])
    # a patient with more claims than the partition size gets a partition of their own
    big = max(by_patient.values(), key=len)
    assert len(big) > 4
    assert any(p == big for p in parts)
    # several patients share a partition when they fit
    small = dist.partition_records(records, 1000)
    assert len(small) == 1 and _patients(records, small[0]) == set(by_patient)


def test_unparsed_lines_are_partitioned_like_the_claims_they_hold() -> None:
    """scrub ships JSONL lines unparsed (the workers validate them): the client reads only the
    patient id, so the partitions must be those of the parsed claims, and every line that is not
    a readable claim must still reach a worker to get its error record there."""
    parsed = list(read_records(EXAMPLES.open("rb")))
    raw = list(read_raw_records(EXAMPLES.open("rb")))
    assert [r.number for r in raw] == [r.number for r in parsed]
    bad = {i for i, r in enumerate(parsed) if not isinstance(r.item, Claim)}
    assert bad, "the example batch must hold unreadable lines for this test to mean anything"
    raw_parts = dist.partition_records(raw, 4)
    assert sorted(i for p in raw_parts for i in p) == list(range(len(raw)))
    for i, r in enumerate(parsed):
        if isinstance(r.item, Claim):
            assert dist.patient_key(raw[i]) == r.item.patient.id
            together = [
                i2 for i2, r2 in enumerate(parsed) if isinstance(r2.item, Claim) and r2.item.patient == r.item.patient
            ]
            assert sum(1 for p in raw_parts if set(together) & set(p)) == 1
    for i in bad:  # every unreadable line reaches exactly one worker, which writes its error record
        assert sum(1 for p in raw_parts if i in p) == 1


def test_partition_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        dist.partition_records([], 0)


# -- the same bytes as a local scrub -----------------------------------------------------------


def test_cluster_output_is_byte_for_byte_a_local_scrub(cluster: Any, tmp_path: Path) -> None:
    src = _with_bad_record(tmp_path)
    expected = _expected(src)
    out = tmp_path / "dask.jsonl"
    # small partitions and a window of 2: many tasks, several blocks, results out of order
    summary = dist.run_distributed(
        src, out, address=cluster.scheduler_address, make_worker=FACTORY, progress=False, partition=3, window=2
    )
    assert out.read_bytes() == expected
    records = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert len(records) == summary.claims_read == len(src.read_bytes().splitlines())
    # the broken claim in the middle is an error record naming its input line and field
    bad = records[16]["error"]
    assert (bad["record"], bad["claim"]) == (17, "MID-NO-PATIENT")
    assert "patient" in {p["field"] for p in bad["problems"]}
    assert summary.exit_code == 1 and summary.error_records == 3


def test_history_dependent_claims_are_decided_as_locally(cluster: Any, tmp_path: Path) -> None:
    """EX-DUP-HISTORY bills 96372 and J3420 for 2024-07-15 while its history shows both already
    billed that day by the same provider: 96372 is a duplicate (the guidance's already-billed
    denial) and J3420's units add up to 2 against its MUE of 1 for the date. Put other patients'
    claims around it so its partition is made up, and decide it on the cluster."""
    lines = EXAMPLES.read_bytes().splitlines(keepends=True)
    dup = next(ln for ln in lines if b'"EX-DUP-HISTORY"' in ln)
    others = [ln for ln in lines if b"PAT-20417" not in ln and ln.strip()]
    src = tmp_path / "history.jsonl"
    src.write_bytes(b"".join(others[:3] + [dup] + others[3:]))
    out = tmp_path / "history-dask.jsonl"
    dist.run_distributed(src, out, address=cluster.scheduler_address, make_worker=FACTORY, progress=False, partition=2)
    assert out.read_bytes() == _expected(src)
    result = json.loads(out.read_bytes().splitlines()[3])
    assert result["claim"] == "EX-DUP-HISTORY"
    kinds = {ln["code"]: (ln["decision"], {r["kind"] for r in ln["reasons"]}) for ln in result["lines"]}
    assert kinds["96372"][0] == "deny" and "duplicate" in kinds["96372"][1]
    assert kinds["J3420"][0] == "deny" and "ncci_mue" in kinds["J3420"][1]


def _adjudicators() -> list[int]:
    """On a worker: the adjudicators this process has built for FACTORY (their ids)."""
    key = pickle.dumps(FACTORY)
    return [id(w) for k, w in dist._process_workers.items() if k == key]


def test_each_worker_process_builds_its_adjudicator_once(cluster: Any, tmp_path: Path) -> None:
    def built() -> dict[str, list[int]]:
        with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
            return client.run(_adjudicators)

    def scrub(name: str) -> None:  # many small tasks
        out = tmp_path / name
        dist.run_distributed(
            EXAMPLES, out, address=cluster.scheduler_address, make_worker=FACTORY, progress=False, partition=2
        )

    scrub("first.jsonl")
    first = built()
    scrub("second.jsonl")
    second = built()
    assert any(first.values()) and all(len(ids) <= 1 for ids in second.values()), second  # one per process
    for worker, ids in first.items():
        if ids:  # the same object: nothing rebuilt for the second run's tasks
            assert second[worker] == ids


def test_resume_with_dask_finishes_an_interrupted_run(cluster: Any, tmp_path: Path) -> None:
    expected = _expected(EXAMPLES)
    out = tmp_path / "resumed.jsonl"
    kept = expected.splitlines(keepends=True)[:11]
    out.write_bytes(b"".join(kept) + expected.splitlines(keepends=True)[11][:40])  # torn 12th record
    summary = dist.run_distributed(
        EXAMPLES, out, address=cluster.scheduler_address, make_worker=FACTORY, progress=False, partition=4, resume=True
    )
    assert out.read_bytes() == expected
    assert summary.claims_read == len(expected.splitlines())


def test_a_worker_that_cannot_start_stops_the_run(cluster: Any, tmp_path: Path) -> None:
    broken = functools.partial(make_worker, str(tmp_path / "no-kb-here"), None, False, False, "duckdb", 2)
    with pytest.raises(WorkerStartError, match="worker failed to start"):
        dist.run_distributed(
            EXAMPLES,
            tmp_path / "o.jsonl",
            address=cluster.scheduler_address,
            make_worker=broken,
            progress=False,
            partition=8,
        )


# -- a worker killed in the middle of the run --------------------------------------------------


class _DiesOnce:
    """The real adjudicator, except that the first partition any worker takes kills that
    worker's process (SIGKILL, as the kernel's OOM killer would) before answering."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self.inner: Any = None

    def many(self, claims: list[Claim]) -> list[Any]:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            self.inner = self.inner or FACTORY()  # the KB, loaded once per process that lives
            return self.inner.many(claims)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the process was killed")


def dies_once(marker: str) -> _DiesOnce:
    return _DiesOnce(Path(marker))


def test_a_killed_worker_loses_and_duplicates_nothing(cluster: Any, tmp_path: Path) -> None:
    src = _with_bad_record(tmp_path)
    expected = _expected(src)
    marker = tmp_path / "killed"
    out = tmp_path / "dask.jsonl"
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        before = set(client.run(os.getpid).values())
    summary = dist.run_distributed(
        src,
        out,
        address=cluster.scheduler_address,
        make_worker=functools.partial(dies_once, str(marker)),
        progress=False,
        partition=4,
    )
    killed = int(marker.read_text())
    assert killed in before, "the task that died ran in one of the cluster's worker processes"
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # that process is gone
    assert out.read_bytes() == expected  # every record once, in order, decided as locally
    assert summary.claims_read == len(src.read_bytes().splitlines())


class _AlwaysDies:
    def many(self, claims: list[Claim]) -> list[Any]:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the process was killed")


def always_dies() -> _AlwaysDies:
    return _AlwaysDies()


def test_a_partition_that_keeps_killing_workers_stops_the_run_with_its_records(tmp_path: Path) -> None:
    """Dask gives up on a task after `allowed-failures` worker deaths (0 here, to be quick): the
    run stops with a PartitionFailed naming the partition's input records, not a traceback."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
        ) as c,
        pytest.raises(dist.PartitionFailed, match=r"input records 1-\d+ stopped every worker"),
    ):
        dist.run_distributed(
            EXAMPLES,
            tmp_path / "o.jsonl",
            address=c.scheduler_address,
            make_worker=always_dies,
            progress=False,
            partition=5000,
        )


# -- the command line --------------------------------------------------------------------------


def test_cli_scrub_on_a_local_cluster(tmp_path: Path) -> None:
    out = tmp_path / "cli.jsonl"
    res = CliRunner().invoke(main, ["scrub", str(EXAMPLES), "-o", str(out), "--dask", "local:1", "--kb", KB])
    assert res.exit_code == 1, res.output  # the examples hold two unreadable claims
    assert out.read_bytes() == _expected(EXAMPLES)
    assert "error records" in res.output and "Traceback" not in res.output


def test_without_dask_installed_the_message_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails as if not installed
    res = CliRunner().invoke(main, ["scrub", str(EXAMPLES), "-o", str(tmp_path / "o.jsonl"), "--dask", "local:1"])
    assert res.exit_code == 2, res.output
    assert "--dask needs the dask and distributed packages" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("tcp://127.0.0.1:1", "no Dask scheduler answered"),
        ("nonsense::", "not a scheduler address"),
        ("local:0", "local:N needs a number of workers"),
        ("local:x", "local:N needs a number of workers"),
    ],
)
def test_cli_bad_address_is_a_clear_error(
    address: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT", 1.0)
    res = CliRunner().invoke(main, ["scrub", str(EXAMPLES), "-o", str(tmp_path / "o.jsonl"), "--dask", address])
    assert res.exit_code == 2, res.output
    assert says in res.output and address in res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
