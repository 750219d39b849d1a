"""The Dask rows of `python -m benchmarks.run --systems dask`: `scrub --dask local:N` measured.

One configuration per process (benchmarks/measure.py hands a spec with "system": "dask" here):
a LocalCluster of N worker processes (one thread each, as `--dask local:N` starts them), then
engine.distributed.run_distributed over the corpus with the CLI's partition size and the DuckDB
backend. Two throughputs: over the whole run with the cluster's start (what a person running
`--dask local:N` waits for) and over the run on a cluster already up (what a long-lived cluster
gives); each worker loads the KB on its first task, inside both. CPU time of the workers and of
this process (client, scheduler, cluster start) is reported too: on a shared machine it says
what the run cost when wall time cannot.
"""

from __future__ import annotations

import functools
import logging
import resource
import time
from pathlib import Path
from typing import Any

from rich.console import Console


def _worker_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _worker_cpu_s() -> float:
    """CPU seconds of a worker process over its life: it was started for this run."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_batch_dask(spec: dict[str, Any]) -> dict[str, Any]:
    """measure.py's batch figures for `scrub --dask local:<workers>`."""
    import distributed

    from benchmarks.measure import _own_peak_mb
    from benchmarks.tables import KB_DIR
    from engine.api import make_worker
    from engine.backends import CHUNK_CLAIMS
    from engine.distributed import run_distributed

    workers = int(spec["workers"])
    factory = functools.partial(make_worker, spec.get("kb", str(KB_DIR)), None, False, False, "duckdb", workers)
    started, cpu_started = time.perf_counter(), time.process_time()
    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster:
        start_s = time.perf_counter() - started
        summary = run_distributed(
            Path(spec["corpus"]),
            Path(spec["results"]),
            address=cluster.scheduler_address,
            make_worker=factory,
            progress=False,
            partition=CHUNK_CLAIMS,
        )
        with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
            worker_rss = max(client.run(_worker_peak_mb).values())
            workers_cpu_s = sum(client.run(_worker_cpu_s).values())
        client_cpu_s = time.process_time() - cpu_started
    total_s = start_s + summary.elapsed_s
    return {
        "workers": workers,
        "claims": summary.claims_read,
        "ok": summary.claims_ok,
        "lines": summary.lines,
        "denied_lines": summary.denied_lines,
        "cluster_start_s": start_s,
        "run_s": summary.elapsed_s,
        "run_claims_per_s": summary.claims_read / summary.elapsed_s,
        "elapsed_s": total_s,
        "claims_per_s": summary.claims_read / total_s,
        "lines_per_s": summary.lines / total_s,
        "partition": CHUNK_CLAIMS,
        # CPU time does not depend on what else the machine runs, wall time does
        "client_cpu_s": client_cpu_s,
        "workers_cpu_s": workers_cpu_s,
        "parent_maxrss_mb": _own_peak_mb(),
        "worker_maxrss_mb": worker_rss,
    }


def print_dask(console: Console, report: dict[str, Any]) -> None:
    """Under the results table: the 2-worker / 1-worker ratio and the cluster start."""
    batch = report["systems"].get("dask", {}).get("batch", {})
    one, two = batch.get("1"), batch.get("2")
    if not (one and two):
        return
    cpu = report["meta"].get("two_process_cpu_scaling")
    console.print(
        f"[dim]- Dask local cluster (scrub --dask local:N, partitions of {one['partition']:,} claims): "
        f"2 workers / 1 worker = {two['claims_per_s'] / one['claims_per_s']:.2f}× with the cluster's start, "
        f"{two['run_claims_per_s'] / one['run_claims_per_s']:.2f}× on a cluster already up "
        f"({one['run_claims_per_s']:,.0f} and {two['run_claims_per_s']:,.0f} claims/s); cluster start "
        f"{one['cluster_start_s']:.1f} s and {two['cluster_start_s']:.1f} s"
        + (f"; this machine's CPU ceiling for 2 processes: {cpu:.2f}×[/]" if cpu else "[/]")
    )
    console.print(
        "[dim]- Dask CPU time (load-independent): "
        + "; ".join(
            f"{w} worker(s): workers {b['workers_cpu_s']:.1f} s, client and scheduler {b['client_cpu_s']:.1f} s "
            f"({1000 * (b['workers_cpu_s'] + b['client_cpu_s']) / b['claims']:.2f} ms per claim)"
            for w, b in (("1", one), ("2", two))
        )
        + "[/]"
    )
