"""One measured configuration, run as its own process so its peak memory is its own.

    python -m benchmarks.measure SPEC.json

SPEC: {"system": "policykb"|"oracle"|"clingo"|"naive", "mode": "latency"|"batch",
       "corpus": JSONL path, "out": JSON path for the figures, "results": JSONL path for the
       per-claim results, "workers": int (batch), "kb": KB dir, "naive_rows": int,
       "warmup": int}

latency: build the system once, then adjudicate each claim alone (timed from Claim in to
result dict out; parsing the JSON is not timed), after `warmup` untimed claims.
batch: engine.batch.run_batch over the corpus file, the runner `policykb scrub` uses; the
elapsed time includes starting the workers. Peak memory: of this process (VmHWM, see
_own_peak_mb) for latency and 1-worker batch, ru_maxrss of the largest pool worker for 2+,
and the most bytes the shared-memory slots held at once (engine.transport: pages no process maps,
so no RSS shows them; sampled, see _SlotsPeak).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.tables import KB_DIR, shared_tables
from engine.claims import Claim, parse_claim_text


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def _own_peak_mb() -> float:
    """This process's peak RSS since it was exec'd: VmHWM. (Its ru_maxrss is not usable: Linux
    carries ru_maxrss across execve, so a measuring process started by a big parent reports
    the parent's peak. Pool workers are forked without exec and start from their own RSS, so
    RUSAGE_CHILDREN's ru_maxrss is right for them.)"""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _maxrss_mb(resource.RUSAGE_SELF)


def _read_claims(path: Path) -> list[Claim]:
    with path.open(encoding="utf-8") as f:
        return [parse_claim_text(line) for line in f if line.strip()]


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = (len(sorted_ms) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (k - lo)


def latency_summary(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {
        "n": len(s),
        "p50_ms": _pct(s, 0.50),
        "p95_ms": _pct(s, 0.95),
        "p99_ms": _pct(s, 0.99),
        "mean_ms": sum(s) / len(s) if s else float("nan"),
        "max_ms": s[-1] if s else float("nan"),
    }


# ---------------------------------------------------------------------------------------------
# Systems: each gives (build() -> adjudicate(Claim) -> dict, worker factory for run_batch)


def _naive_rows(spec: dict[str, Any]):
    from benchmarks.naive_pydatalog import relevant_pairs, slice_rows

    claims = _read_claims(Path(spec["corpus"]))
    return slice_rows(shared_tables(), relevant_pairs(claims), spec.get("naive_rows", 50_000))


def _system(spec: dict[str, Any]) -> tuple[Callable[[], Callable[[Claim], dict]], Callable, dict]:
    name = spec["system"]
    info: dict[str, Any] = {}
    if name == "policykb":
        from engine.api import PolicyKB, make_worker

        kb_dir = spec.get("kb", str(KB_DIR))

        def build():
            kb = PolicyKB.open(kb_dir)
            return lambda claim: kb.adjudicate(claim, proofs=True).to_dict()

        # the claim-by-claim pyDatalog engine (scrub --engine pydatalog); "duckdb" is the default
        return build, functools.partial(make_worker, kb_dir, None, False, False, "pydatalog"), info
    if name == "duckdb":  # batch only: set-at-a-time has no per-claim latency of its own
        from engine.api import make_worker as make_pkb_worker

        kb_dir = spec.get("kb", str(KB_DIR))
        factory = functools.partial(make_pkb_worker, kb_dir, None, False, False, "duckdb", int(spec.get("workers", 1)))
        return factory, factory, info
    if name == "oracle":
        from benchmarks import oracle

        return lambda: oracle.Oracle(shared_tables()).result, oracle.make_worker, info
    if name == "clingo":
        from benchmarks import clingo_baseline

        return (lambda: clingo_baseline.ClingoChecker(shared_tables()).result, clingo_baseline.make_worker, info)
    if name == "naive":
        from benchmarks import naive_pydatalog

        rows = _naive_rows(spec)
        naive_pydatalog.SLICE[:] = rows

        def build_naive():
            n = naive_pydatalog.NaivePyDatalog(shared_tables(), rows, checkpoint=len(rows) // 2)
            info.update(n.stats)
            return n.result

        return build_naive, naive_pydatalog.make_worker, info
    raise ValueError(f"unknown system {name}")


def _uses_tables(name: str) -> bool:
    return name in ("oracle", "clingo", "naive")


def run_latency(spec: dict[str, Any]) -> dict[str, Any]:
    claims = _read_claims(Path(spec["corpus"]))
    t0 = time.perf_counter()
    if _uses_tables(spec["system"]):
        shared_tables()
    tables_s = time.perf_counter() - t0
    build, _factory, info = _system(spec)
    t1 = time.perf_counter()
    adjudicate = build()
    build_s = time.perf_counter() - t1
    for claim in claims[: spec.get("warmup", 20)]:
        adjudicate(claim)
    ms: list[float] = []
    ms10: list[float] = []
    cpu10: list[float] = []
    perf, cpu = time.perf_counter_ns, time.process_time_ns
    with open(spec["results"], "w", encoding="utf-8") as f:  # written as we go: results
        for claim in claims:  # are not kept in memory
            start, start_cpu = perf(), cpu()
            result = adjudicate(claim)
            elapsed = (perf() - start) / 1e6
            ms.append(elapsed)
            if len(claim.lines) == 10:
                ms10.append(elapsed)
                cpu10.append((cpu() - start_cpu) / 1e6)
            f.write(json.dumps(result, sort_keys=True, separators=(",", ":")) + "\n")
    lines = sum(len(c.lines) for c in claims)
    total_s = sum(ms) / 1000
    extra = _policykb_variants(spec, [c for c in claims if len(c.lines) == 10]) if spec["system"] == "policykb" else {}
    return {
        **extra,
        "ten_line_cpu": latency_summary(cpu10),
        "tables_s": tables_s,
        "build_s": build_s,
        "info": info,
        "all": latency_summary(ms),
        "ten_line": latency_summary(ms10),
        "per_line_mean_ms": sum(ms) / lines if lines else float("nan"),
        "serial_claims_per_s": len(claims) / total_s if total_s else float("nan"),
        "maxrss_mb": _own_peak_mb(),
        "ru_maxrss_self_mb": _maxrss_mb(resource.RUSAGE_SELF),
    }


def _cpu_s() -> float:
    """User + system CPU seconds of this process and of its children that have ended."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _policykb_variants(spec: dict[str, Any], ten: list[Claim]) -> dict[str, Any]:
    """10-line claims again as a plain decision (no proofs, no remedies) and with proofs and
    remedies, wall and CPU time (process_time: the host is shared), and the remedies/plain
    ratio of the CPU p50s. Same warm process; results are not checked here (the main run is)."""
    from engine.api import PolicyKB

    kb = PolicyKB.open(spec.get("kb", str(KB_DIR)))
    out: dict[str, Any] = {}
    for name, kw in (("plain", {"proofs": False}), ("remedies", {"proofs": True, "remedies": True})):
        for claim in ten[: spec.get("warmup", 20)]:
            kb.adjudicate(claim, **kw).to_dict()
        wall: list[float] = []
        cpu: list[float] = []
        for claim in ten:
            start, start_cpu = time.perf_counter_ns(), time.process_time_ns()
            kb.adjudicate(claim, **kw).to_dict()
            wall.append((time.perf_counter_ns() - start) / 1e6)
            cpu.append((time.process_time_ns() - start_cpu) / 1e6)
        out[f"ten_line_{name}"] = latency_summary(wall)
        out[f"ten_line_{name}_cpu"] = latency_summary(cpu)
    plain, remedies = out["ten_line_plain_cpu"]["p50_ms"], out["ten_line_remedies_cpu"]["p50_ms"]
    out["remedies_ratio"] = remedies / plain if plain else float("nan")
    return out


class _SlotsPeak(threading.Thread):
    """Samples, every `every` s, the bytes held by the shared-memory slots of engine.transport
    (its memfd, found among this process's open files) and keeps the largest."""

    def __init__(self, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.peak_mb = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            held: dict[tuple[int, int], int] = {}  # by file: the mapping holds a second descriptor of it
            for fd in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []:
                try:
                    if "policykb-slots" in os.readlink(f"/proc/self/fd/{fd}"):
                        st = os.fstat(int(fd))
                        held[(st.st_dev, st.st_ino)] = st.st_blocks * 512
                except OSError:
                    continue
            self.peak_mb = max(self.peak_mb, sum(held.values()) / 2**20)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak_mb


def run_batch_mode(spec: dict[str, Any]) -> dict[str, Any]:
    from engine.batch import run_batch

    workers = int(spec["workers"])
    if _uses_tables(spec["system"]):
        shared_tables()  # loaded once here; pool workers inherit it by fork
    _build, factory, _info = _system(spec)
    rss_before = _own_peak_mb()
    cpu_before = _cpu_s()
    chunk = 16
    if spec["system"] == "duckdb":
        from engine.backends import CHUNK_CLAIMS

        chunk = CHUNK_CLAIMS
    slots = _SlotsPeak()
    slots.start()
    summary = run_batch(
        Path(spec["corpus"]), Path(spec["results"]), workers=workers, make_worker=factory, progress=False, chunk=chunk
    )
    slots_peak_mb = slots.stop()
    out = {
        "workers": workers,
        "claims": summary.claims_read,
        "ok": summary.claims_ok,
        "lines": summary.lines,
        "denied_lines": summary.denied_lines,
        "elapsed_s": summary.elapsed_s,
        "claims_per_s": summary.claims_per_s,
        "lines_per_s": summary.lines_per_s,
        # CPU seconds of the parent and its (joined) pool workers during the run: on a shared
        # machine claims per CPU-second says what dedicated cores would do
        "cpu_s": _cpu_s() - cpu_before,
        "parent_maxrss_before_mb": rss_before,
        "parent_maxrss_mb": _own_peak_mb(),
        "slots_peak_mb": slots_peak_mb,
    }
    if workers == 1:
        out["worker_maxrss_mb"] = out["parent_maxrss_mb"]
    else:
        out["worker_maxrss_mb"] = _maxrss_mb(resource.RUSAGE_CHILDREN)
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    started = time.perf_counter()
    if spec["system"] == "dask":  # scrub --dask local:N (benchmarks/dask_rows.py)
        from benchmarks.dask_rows import run_batch_dask

        out = run_batch_dask(spec)
    else:
        out = run_latency(spec) if spec["mode"] == "latency" else run_batch_mode(spec)
    out["wall_s"] = time.perf_counter() - started
    Path(spec["out"]).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
