"""PolicyKB against its baselines on one seeded claim corpus, with the full tables loaded.

    python -m benchmarks.run [--claims 5000] [--seed 1] [--out benchmarks/results/latest.json]
                             [--quick] [--compare PATH] [--systems policykb,oracle,clingo,naive]

For PolicyKB and each baseline: cold start to a first answer (a fresh interpreter; for
PolicyKB with its compiled cache present and absent), per-claim latency, batch throughput
with 1 and 2 worker processes, and peak memory (ru_maxrss) per worker, each configuration in
its own process. Every NCCI decision of every system is checked against the oracle; any
disagreement is printed and makes the exit status 1.

Baselines: the oracle (plain Python over dicts: the floor), clingo with the claim's rows
injected, and naive pyDatalog with table rows asserted as facts (on a slice of the PTP table;
its full-table figures are extrapolated and labelled so).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.corpus import generate, strip_meta, write_jsonl
from benchmarks.oracle import NCCI_KINDS, Oracle, ncci_kinds_of_result
from benchmarks.tables import KB_DIR, REPO, shared_tables
from engine.claims import parse_claim

SYSTEMS = ("policykb", "duckdb", "dask", "oracle", "clingo", "naive")
LABEL = {
    "policykb": "PolicyKB",
    "duckdb": "PolicyKB DuckDB\n(batch backend)",
    "dask": "PolicyKB DuckDB on\nDask local:N",
    "oracle": "oracle (dicts)",
    "clingo": "clingo",
    "naive": "naive pyDatalog",
}
FULL_PTP_ROWS = 2_546_017
COLD_EXAMPLE = "office-96372-with-em.json"
TARGETS = {
    "cold_cached_s": ("cold start, cache present", "<", 1.0, "s"),
    "p50_10_ms": ("10-line claim with proofs, p50", "<", 5.0, "ms"),
    "p99_10_ms": ("10-line claim with proofs, p99", "<", 25.0, "ms"),
    "batch2_claims_s": ("batch, 2 workers", ">=", 300.0, "claims/s"),
    "worker_rss_mb": ("peak memory per worker", "<", 400.0, "MB"),
    "disagreements": ("oracle disagreements (NCCI)", "==", 0, ""),
    # issue 13: explain latency with proofs, and remedies at most 3x a plain decision (CPU p50s)
    "p50_10_cpu_ms": ("10-line claim with proofs, p50 CPU (issue 13)", "<=", 10.0, "ms"),
    "remedies_ratio": ("10-line claim with remedies / plain decision, p50 CPU", "<=", 3.0, "x"),
}
# Issue 13: the set-at-a-time backend, batch end to end (stated for 100,000 claims).
DUCKDB_TARGETS = {
    "batch2_claims_s": ("DuckDB batch, 2 workers", ">=", 10_000.0, "claims/s"),
    "total_rss_mb": ("DuckDB batch, peak memory (parent + workers)", "<", 1536.0, "MB"),
    "disagreements": ("DuckDB oracle disagreements (NCCI)", "==", 0, ""),
}
# A throughput target stated for a corpus of at least this many claims: a smaller run's figure is
# dominated by worker start (5,000 claims: ~4,000 claims/s where 100,000 give ~12,000), so it is
# printed and not judged.
STATED_FOR = {"duckdb.batch2_claims_s": 100_000}


class Fail(Exception):
    pass


# The naive pyDatalog baseline's extrapolated figures, by the key of the row they stand in
NAIVE_KEYS = {
    "cold_nocache_s": "cold_s",
    "worker_rss_mb": "worker_rss_mb",
    "batch1_claims_s": "batch1_claims_s",
    "batch2_claims_s": "batch2_claims_s",
    "build_s": "load_s",
}


# ---------------------------------------------------------------------------------------------
# Subprocess helpers


def _env(cache_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONHASHSEED", None)
    if cache_dir is not None:
        env["POLICYKB_CACHE_DIR"] = str(cache_dir)
    return env


def _measure(spec: dict[str, Any], tmp: Path, cache_dir: Path | None, timeout: float) -> dict:
    tag = f"{spec['system']}-{spec['mode']}-{spec.get('workers', 1)}"
    spec = {**spec, "out": str(tmp / f"{tag}.json")}
    spec_path = tmp / f"{tag}.spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.measure", str(spec_path)],
        cwd=REPO,
        env=_env(cache_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise Fail(f"{tag} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(Path(spec["out"]).read_text(encoding="utf-8"))


def _timed_run(
    cmd: list[str], cache_dir: Path | None, timeout: float, ok_codes: tuple[int, ...] = (0,)
) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(cache_dir), capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok_codes or "Traceback (most recent call last)" in proc.stderr:
        raise Fail(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-3000:]}")
    return elapsed, proc.stdout


_POLICYKB_SNIPPET = """
import json, sys
from engine.api import PolicyKB
from engine.claims import load_claims
kb = PolicyKB.open(sys.argv[2])
claim = load_claims(sys.argv[1])[0]
print(json.dumps(kb.adjudicate(claim, proofs=True).to_dict())[:200])
"""

_DUCKDB_PREPARE = """
import sys
from engine.api import PolicyKB
from engine.backends.duckdb import prepare_tables
prepare_tables(PolicyKB.open(sys.argv[1]).kb)
"""

_BASELINE_SNIPPET = """
import json, sys
from engine.claims import load_claims
from benchmarks.tables import shared_tables
claim = load_claims(sys.argv[1])[0]
system = sys.argv[2]
if system == "oracle":
    from benchmarks.oracle import Oracle
    check = Oracle(shared_tables()).check
elif system == "clingo":
    from benchmarks.clingo_baseline import ClingoChecker
    check = ClingoChecker(shared_tables()).check
else:
    from benchmarks.naive_pydatalog import NaivePyDatalog
    rows = [tuple(r) for r in json.load(open(sys.argv[3]))]
    check = NaivePyDatalog(shared_tables(), rows).check
print(json.dumps(check(claim)))
"""


def _policykb_cold_cmds(claim_path: Path, kb: Path) -> list[tuple[list[str], str, tuple]]:
    """`policykb explain CLAIM` when the CLI has an explain command, then the API as the
    fallback: (command, description, accepted exit codes; explain may exit 1 on a denial)."""
    api = (
        [sys.executable, "-c", _POLICYKB_SNIPPET, str(claim_path), str(kb)],
        "python -c 'PolicyKB.open(); adjudicate(proofs=True)'",
        (0,),
    )
    cli = REPO / "engine" / "cli.py"
    if cli.exists() and "explain" in cli.read_text(encoding="utf-8"):
        code = "import sys; from engine.cli import main; sys.exit(main())"
        return [([sys.executable, "-c", code, "explain", str(claim_path)], "policykb explain CLAIM.json", (0, 1)), api]
    return [api]


def _policykb_cold(
    claim_path: Path, kb: Path, tmp: Path, repeats: tuple[int, int], timeout: float
) -> tuple[dict[str, Any], Path]:
    """Cold starts with an empty cache dir, then with the cache those runs built. Returns the
    figures and the warm cache dir for the rest of the benchmark."""
    errors = []
    for n, (cmd, how, ok) in enumerate(_policykb_cold_cmds(claim_path, kb)):
        warm = tmp / f"cache-{n}-0"
        try:
            first = _timed_run(cmd, warm, timeout, ok)[0]
        except Fail as e:
            errors.append(f"{how}: {e}")
            continue
        nocache = [first] + [_timed_run(cmd, tmp / f"cache-{n}-{i}", timeout, ok)[0] for i in range(1, repeats[1])]
        cached = [_timed_run(cmd, warm, timeout, ok)[0] for _ in range(repeats[0])]
        return {
            "cold_how": how,
            "cold_cached_s": _median(cached),
            "cold_nocache_s": _median(nocache),
            "cold_fallback_errors": errors,
            "cold_runs": {"cached": cached, "nocache": nocache},
        }, warm
    raise Fail("no PolicyKB cold start command worked:\n" + "\n".join(errors))


# ---------------------------------------------------------------------------------------------
# Correctness


def _disagreements(
    system: str, where: str, reference: list[dict[int, list[str]]], ids: list[str], results_path: Path
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with results_path.open(encoding="utf-8") as f:
        results = [json.loads(line) for line in f if line.strip()]
    if len(results) != len(reference):
        out.append(
            {
                "system": system,
                "where": where,
                "claim": None,
                "problem": f"{len(results)} results for {len(reference)} claims",
            }
        )
    for i, (ref, res) in enumerate(zip(reference, results, strict=False)):
        if "error" in res:
            out.append(
                {
                    "system": system,
                    "where": where,
                    "claim": ids[i],
                    "problem": "error record: " + json.dumps(res["error"])[:300],
                }
            )
            continue
        got = ncci_kinds_of_result(res)
        if got != ref:
            for line in sorted(set(got) | set(ref)):
                if got.get(line, []) != ref.get(line, []):
                    out.append(
                        {
                            "system": system,
                            "where": where,
                            "claim": ids[i],
                            "line": line,
                            "oracle": ref.get(line, []),
                            "system_kinds": got.get(line, []),
                        }
                    )
    return out


# ---------------------------------------------------------------------------------------------
# The run


def _fmt(v: Any, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}{unit}"
        return f"{v:,.{digits}f}{unit}"
    return f"{v}{unit}"


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _check_target(key: str, value: Any) -> str:
    _label, op, limit, _unit = TARGETS[key]
    return _meets(op, limit, value)


def _meets(op: str, limit: float, value: Any) -> str:
    if value is None:
        return "MISS"
    ok = {"<": value < limit, "<=": value <= limit, ">=": value >= limit, "==": value == limit}[op]
    return "PASS" if ok else "MISS"


def _policykb_available() -> str | None:
    """None when engine.api provides PolicyKB and make_worker, else why not."""
    if importlib.util.find_spec("engine.api") is None:
        return "engine/api.py does not exist yet"
    proc = subprocess.run(
        [sys.executable, "-c", "from engine.api import PolicyKB, make_worker"],
        cwd=REPO,
        env=_env(None),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return "importing PolicyKB, make_worker from engine.api failed:\n" + proc.stderr[-1500:]
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--claims", type=int, default=None, help="corpus size (default 5000; 300 with --quick)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/latest.json"))
    ap.add_argument("--quick", action="store_true", help="small smoke run: 300 claims, one cold start each")
    ap.add_argument("--compare", type=Path, help="a previous results JSON to compare with")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    ap.add_argument("--kb", type=Path, default=KB_DIR)
    ap.add_argument(
        "--naive-rows", type=int, default=50_000, help="PTP rows asserted into naive pyDatalog (a slice; default 50000)"
    )
    ap.add_argument("--keep-temp", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    n_claims = args.claims or (300 if args.quick else 5000)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if "clingo" in systems and importlib.util.find_spec("clingo") is None:
        ap.error(
            "clingo is not installed: pip install clingo==5.8.3 (the `bench` extra), or leave it out with --systems"
        )
    console = Console(width=None if sys.stdout.isatty() else 150)
    cold_repeats = (1, 1) if args.quick else (3, 2)  # (cache present, cache absent)
    timeout = 900.0

    tmp = Path(tempfile.mkdtemp(prefix="policykb-bench-"))
    failures: list[str] = []
    report: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seed": args.seed,
            "claims": n_claims,
            "quick": args.quick,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "commit": _git("rev-parse", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--", "engine", "kb", "benchmarks")),
            "naive_ptp_rows": args.naive_rows,
        },
        "systems": {},
    }
    try:
        with console.status("calibrating: CPU scaling with 2 processes"):
            report["meta"]["two_process_cpu_scaling"] = _parallel_scaling()
        with console.status("loading tables and generating the corpus") as status:
            tables = shared_tables()
            corpus = generate(tables, n_claims, args.seed)
            corpus_path = tmp / "corpus.jsonl"
            write_jsonl(corpus, corpus_path)
            claims = [parse_claim(strip_meta(c)) for c in corpus]
            ids = [c.id for c in claims]
            oracle = Oracle(tables)
            reference = [oracle.check(c) for c in claims]
            claim_path = REPO / "examples" / COLD_EXAMPLE
            if not claim_path.exists():  # a 10-line corpus claim instead
                claim_path = tmp / "claim.json"
                sample = _sample_claim(corpus, claims)
                claim_path.write_text(json.dumps(strip_meta(sample), indent=1), encoding="utf-8")
            report["meta"]["cold_start_claim"] = str(
                claim_path.relative_to(REPO) if claim_path.is_relative_to(REPO) else "a 10-line corpus claim"
            )
            report["corpus"] = _corpus_stats(corpus, claims, reference, tables)
            report["tables"] = {
                "ptp_rows": tables.ptp_rows_read,
                "ptp_rows_in_force_2024": tables.ptp_rows_kept,
                "mue_rows": len(tables.mue),
                "aoc_rows": len(tables.aoc_code),
                "aoc_primary_rows": sum(len(v) for v in tables.aoc_primary.values()),
                "oracle_load_s": tables.load_s,
            }
            status.update("")
        _print_corpus(console, report)

        unavailable = _policykb_available() if "policykb" in systems else None
        if unavailable:
            failures.append(f"PolicyKB not measured: {unavailable}")
            console.print(f"[bold red]PolicyKB cannot be measured:[/] {unavailable}")
            systems = [s for s in systems if s != "policykb"]

        naive_slice = tmp / "naive_slice.json"
        if "naive" in systems:
            from benchmarks.naive_pydatalog import relevant_pairs, slice_rows

            rows = slice_rows(tables, relevant_pairs(claims), args.naive_rows)
            naive_slice.write_text(json.dumps(rows), encoding="utf-8")
        warm_cache = tmp / "cache-unused"
        for system in systems:
            res: dict[str, Any] = {"disagreements": []}
            report["systems"][system] = res
            # 1. cold start
            with console.status(f"{LABEL[system]}: cold start"):
                if system in ("duckdb", "dask"):  # untimed in the batch: copy the tables into DuckDB files once
                    cache = warm_cache if warm_cache.exists() else None
                    res["prepare_s"], _out = _timed_run(
                        [sys.executable, "-c", _DUCKDB_PREPARE, str(args.kb)], cache, timeout
                    )
                    res["cold_how"] = "n/a: the batch backend is measured in batch only"
                elif system == "policykb":
                    cold, warm_cache = _policykb_cold(claim_path, args.kb, tmp, cold_repeats, timeout)
                    res.update(cold)
                    for err in cold["cold_fallback_errors"]:
                        console.print(f"[yellow]cold start fell back to the API:[/] {err}")
                else:
                    cmd = [sys.executable, "-c", _BASELINE_SNIPPET, str(claim_path), system, str(naive_slice)]
                    runs = [_timed_run(cmd, None, timeout)[0] for _ in range(max(1, cold_repeats[1]))]
                    res["cold_s"] = _median(runs)
                    res["cold_runs"] = runs
                    res["cold_how"] = "python -c (load tables, one claim)"
            batch_backend = system in ("duckdb", "dask")
            cache = warm_cache if system == "policykb" or (batch_backend and warm_cache.exists()) else None
            # 2. latency (not for the batch backend: it decides chunks, not claims)
            with console.status(f"{LABEL[system]}: per-claim latency, {n_claims} claims"):
                if system not in ("duckdb", "dask"):
                    spec = {
                        "system": system,
                        "mode": "latency",
                        "corpus": str(corpus_path),
                        "results": str(tmp / f"{system}-latency.jsonl"),
                        "kb": str(args.kb),
                        "naive_rows": args.naive_rows,
                        "warmup": 20,
                    }
                    res["latency"] = _measure(spec, tmp, cache, timeout)
                    res["disagreements"] += _disagreements(system, "latency", reference, ids, Path(spec["results"]))
            # 3. batch, 1 and 2 workers
            res["batch"] = {}
            for workers in (1, 2):
                with console.status(f"{LABEL[system]}: batch, {workers} worker(s)"):
                    spec = {
                        "system": system,
                        "mode": "batch",
                        "corpus": str(corpus_path),
                        "results": str(tmp / f"{system}-batch{workers}.jsonl"),
                        "workers": workers,
                        "kb": str(args.kb),
                        "naive_rows": args.naive_rows,
                    }
                    res["batch"][str(workers)] = _measure(spec, tmp, cache, timeout)
                    res["disagreements"] += _disagreements(
                        system, f"batch{workers}", reference, ids, Path(spec["results"])
                    )
            res["worker_rss_mb"] = max(b["worker_maxrss_mb"] for b in res["batch"].values())
            if res["disagreements"]:
                n = _figures(system, res)["disagreements"]
                failures.append(f"{LABEL[system]}: {n} claim lines where NCCI decisions disagree with the oracle")
            console.print(f"[dim]{LABEL[system]} measured[/]")
        if "naive" in report["systems"]:
            report["naive_extrapolated"] = _extrapolate_naive(report["systems"]["naive"])
    except Fail as e:
        failures.append(str(e))
        console.print(f"[bold red]benchmark step failed:[/] {e}")
    finally:
        if args.keep_temp:
            console.print(f"work directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    report["targets"] = _targets(report)
    report["failures"] = failures
    _print_results(console, report)
    _print_disagreements(console, report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, sort_keys=True), encoding="utf-8")
    console.print(f"figures written to {args.out}")
    if args.compare:
        _print_compare(console, report, args.compare)
    if failures:
        console.print("[bold red]FAILED[/]")
        for f in failures:
            console.print(f"  - {f.splitlines()[0]}")
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# Corpus


def _sample_claim(corpus: list[dict[str, Any]], claims: list[Any]) -> dict[str, Any]:
    """A 10-line claim with the injection policy in play, for the cold start."""
    for raw, c in zip(corpus, claims, strict=False):
        if raw["_scenario"] == "injection" and len(c.lines) == 10:
            return raw
    return max(corpus, key=lambda r: len(r["lines"]))


def _corpus_stats(corpus, claims, reference, tables) -> dict[str, Any]:
    kinds = Counter(k for ref in reference for ks in ref.values() for k in ks)
    pos = Counter(ln.pos for c in claims for ln in c.lines)
    mods = Counter(m for c in claims for ln in c.lines for m in ln.modifiers)
    return {
        "claims": len(claims),
        "lines": sum(len(c.lines) for c in claims),
        "history_lines": sum(len(c.history) for c in claims),
        "claims_with_history": sum(1 for c in claims if c.history),
        "ten_line_claims": sum(1 for c in claims if len(c.lines) == 10),
        "claims_with_ncci_denial": sum(1 for r in reference if r),
        "lines_with_ncci_denial": sum(len(r) for r in reference),
        "denials_by_kind": {k: kinds.get(k, 0) for k in NCCI_KINDS},
        "scenarios": dict(sorted(Counter(c["_scenario"] for c in corpus).items())),
        "pos": dict(pos.most_common(8)),
        "modifiers": dict(mods.most_common(10)),
    }


def _print_corpus(console: Console, report: dict[str, Any]) -> None:
    c, t = report["corpus"], report["tables"]
    table = Table(title=f"corpus (seed {report['meta']['seed']}) and tables", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("claims / lines / 10-line claims", f"{c['claims']:,} / {c['lines']:,} / {c['ten_line_claims']:,}")
    table.add_row("claims with history (history lines)", f"{c['claims_with_history']:,} ({c['history_lines']:,})")
    table.add_row(
        "claims with an NCCI denial (oracle)",
        f"{c['claims_with_ncci_denial']:,} ({c['claims_with_ncci_denial'] / c['claims']:.0%})",
    )
    table.add_row(
        "lines denied (oracle)",
        f"{c['lines_with_ncci_denial']:,} "
        + "("
        + ", ".join(f"{k} {v:,}" for k, v in c["denials_by_kind"].items())
        + ")",
    )
    table.add_row("scenarios", ", ".join(f"{k} {v}" for k, v in c["scenarios"].items()))
    table.add_row("POS", ", ".join(f"{k} {v}" for k, v in c["pos"].items()))
    table.add_row("PTP rows (in force 2024 and later)", f"{t['ptp_rows']:,} ({t['ptp_rows_in_force_2024']:,})")
    table.add_row("MUE / AOC / AOC primary rows", f"{t['mue_rows']:,} / {t['aoc_rows']:,} / {t['aoc_primary_rows']:,}")
    console.print(table)


# ---------------------------------------------------------------------------------------------
# Figures


def _extrapolate_naive(naive: dict[str, Any]) -> dict[str, Any]:
    """Linear in PTP rows, from the increment between the slice's half and its end."""
    info = naive["latency"]["info"]
    marks = info["ptp_marks"]
    (n1, t1, m1), (n2, t2, m2) = marks[0], marks[-1]
    if n2 == n1:
        per_row_s, per_row_mb = t2 / n2, m2 / n2
    else:
        per_row_s, per_row_mb = (t2 - t1) / (n2 - n1), (m2 - m1) / (n2 - n1)
    extra_rows = FULL_PTP_ROWS - n2
    load_full = naive["latency"]["tables_s"] + info["load_other_s"] + per_row_s * FULL_PTP_ROWS
    return {
        "label": f"EXTRAPOLATED linearly from a {n2:,}-row slice to {FULL_PTP_ROWS:,} PTP rows",
        "slice_rows": n2,
        "per_row_us": per_row_s * 1e6,
        "per_row_bytes": per_row_mb * 2**20,
        "load_s": load_full,
        "cold_s": naive["cold_s"] + per_row_s * extra_rows,
        "worker_rss_mb": naive["worker_rss_mb"] + per_row_mb * extra_rows,
        "batch2_claims_s": _batch_with_extra_start(naive["batch"]["2"], per_row_s * extra_rows),
        "batch1_claims_s": _batch_with_extra_start(naive["batch"]["1"], per_row_s * extra_rows),
        "note": "per-claim latency is the slice's (not extrapolated); each worker would "
        "assert the full table at start, which the batch figures add",
    }


def _batch_with_extra_start(b: dict[str, Any], extra_s: float) -> float:
    return b["claims"] / (b["elapsed_s"] + extra_s)


# Latency figure keys: (key suffix, the latency section they come from, the percentiles kept)
_PERCENTILES = (
    ("", "all", (50, 95, 99)),
    ("_10", "ten_line", (50, 95, 99)),
    ("_10_cpu", "ten_line_cpu", (50, 95)),
    ("_10_plain_cpu", "ten_line_plain_cpu", (50, 95)),
    ("_10_remedies_cpu", "ten_line_remedies_cpu", (50, 95)),
)


def _percentiles(lat: dict[str, Any]) -> dict[str, Any]:
    """`p50_ms`, `p95_10_cpu_ms`, ...: each kept percentile of each latency section."""
    return {
        f"p{p}{suffix}_ms": lat.get(section, {}).get(f"p{p}_ms") for suffix, section, kept in _PERCENTILES for p in kept
    }


def _figures(system: str, res: dict[str, Any]) -> dict[str, Any]:
    lat = res.get("latency", {})
    b1 = res.get("batch", {}).get("1", {})
    b2 = res.get("batch", {}).get("2", {})
    return {
        "cold_cached_s": res.get("cold_cached_s"),
        "cold_nocache_s": res.get("cold_nocache_s", res.get("cold_s")),
        "build_s": (lat["build_s"] + lat.get("tables_s", 0.0)) if "build_s" in lat else None,
        **_percentiles(lat),
        "remedies_ratio": lat.get("remedies_ratio"),
        "batch1_claims_s": b1.get("claims_per_s"),
        "batch1_lines_s": b1.get("lines_per_s"),
        "batch2_claims_s": b2.get("claims_per_s"),
        "batch2_lines_s": b2.get("lines_per_s"),
        "latency_rss_mb": lat.get("maxrss_mb"),
        "worker_rss_mb": res.get("worker_rss_mb"),
        "total_rss_mb": max(
            (
                b.get("parent_maxrss_mb", 0) + b.get("worker_maxrss_mb", 0) * int(w) + b.get("slots_peak_mb", 0)
                if w != "1"
                else b.get("parent_maxrss_mb", 0)
            )
            for w, b in res.get("batch", {"1": {}}).items()
        )
        if res.get("batch")
        else None,
        # distinct (claim, line) pairs over the latency and batch runs
        "disagreements": len({(d.get("claim"), d.get("line"), d.get("problem")) for d in res.get("disagreements", [])})
        if res
        else None,
    }


def _targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for system, targets in (("policykb", TARGETS), ("duckdb", DUCKDB_TARGETS)):
        res = report["systems"].get(system)
        if system == "duckdb" and res is None:
            continue
        figs = _figures(system, res) if res else {}
        for key, (label, op, limit, unit) in targets.items():
            value = figs.get(key) if res else None
            name = key if system == "policykb" else f"{system}.{key}"
            status = _meets(op, limit, value) if res else "MISS"
            if report["meta"]["claims"] < STATED_FOR.get(name, 0):
                status = "n/a"
            out.append(
                {
                    "key": name,
                    "label": label,
                    "op": op,
                    "limit": limit,
                    "unit": unit,
                    "value": value,
                    "status": status,
                }
            )
    return out


ROWS = [  # (figure key, label, unit, higher is better)
    ("cold_cached_s", "cold start to first answer, cache present", " s", False),
    ("cold_nocache_s", "cold start to first answer, no cache*", " s", False),
    ("build_s", "load tables / open KB, in-process", " s", False),
    ("p50_ms", "latency all claims p50", " ms", False),
    ("p95_ms", "latency all claims p95", " ms", False),
    ("p99_ms", "latency all claims p99", " ms", False),
    ("p50_10_ms", "latency 10-line claims p50", " ms", False),
    ("p95_10_ms", "latency 10-line claims p95", " ms", False),
    ("p99_10_ms", "latency 10-line claims p99", " ms", False),
    ("p50_10_cpu_ms", "10-line claims p50, CPU time", " ms", False),
    ("p95_10_cpu_ms", "10-line claims p95, CPU time", " ms", False),
    ("p50_10_plain_cpu_ms", "10-line plain decision p50, CPU", " ms", False),
    ("p95_10_plain_cpu_ms", "10-line plain decision p95, CPU", " ms", False),
    ("p50_10_remedies_cpu_ms", "10-line explain with remedies p50, CPU", " ms", False),
    ("p95_10_remedies_cpu_ms", "10-line explain with remedies p95, CPU", " ms", False),
    ("remedies_ratio", "remedies / plain decision (p50 CPU)", "x", False),
    ("batch1_claims_s", "batch 1 worker, claims/s", "", True),
    ("batch1_lines_s", "batch 1 worker, lines/s", "", True),
    ("batch2_claims_s", "batch 2 workers, claims/s", "", True),
    ("batch2_lines_s", "batch 2 workers, lines/s", "", True),
    ("worker_rss_mb", "peak RSS per batch worker", " MB", False),
    ("latency_rss_mb", "peak RSS, latency process", " MB", False),
    ("disagreements", "NCCI disagreements with oracle", "", False),
]


def _print_results(console: Console, report: dict[str, Any]) -> None:
    systems = list(report["systems"])
    if not systems:
        return
    figs = {s: _figures(s, report["systems"][s]) for s in systems}
    naive_x = report.get("naive_extrapolated")
    n_claims = report["meta"]["claims"]
    scaling = report["meta"].get("two_process_cpu_scaling")
    table = Table(
        title=f"results: {n_claims:,} claims, full tables "
        f"({report['meta']['cpus']} CPUs, {report['meta']['cpu']}; "
        f"2 processes do {scaling:.2f}× the CPU work of 1 here)",
        title_justify="left",
    )
    table.add_column("figure")
    for s in systems:
        label = LABEL[s]
        if s == "naive":
            label += f"\n(slice: {report['meta']['naive_ptp_rows']:,} PTP rows)"
        table.add_column(label, justify="right")
    if naive_x:
        table.add_column("naive pyDatalog\nEXTRAPOLATED to\n2.5M PTP rows", justify="right", style="italic")
    if "policykb" in systems:
        table.add_column("PolicyKB target", justify="right")
    targets = {t["key"]: t for t in report["targets"]}
    for key, label, unit, _hib in ROWS:
        row = [label]
        for s in systems:
            v = figs[s].get(key)
            if key == "cold_cached_s" and s != "policykb":
                row.append("[dim]n/a: no cache[/]")
            else:
                row.append(_fmt(v, unit if v is not None else ""))
        if naive_x:
            xkey = NAIVE_KEYS.get(key)
            row.append(_fmt(naive_x.get(xkey), unit) if xkey else "")
        if "policykb" in systems:
            t = targets.get(key)
            if t:
                row.append(f"{t['op']} {t['limit']}{(' ' + t['unit']) if t['unit'] else ''} {_mark(t, report)}")
            else:
                row.append("")
        table.add_row(*row)
    console.print(table)
    notes = [
        "latency: one claim in, result dict out, in a warm process (20 untimed warm-up claims); "
        "PolicyKB with proofs=True, baselines give decisions only",
        "batch: engine.batch.run_batch over the corpus JSONL as `policykb scrub` runs it "
        "(make_worker defaults: no proofs); elapsed includes worker start; baselines' pool "
        "workers inherit the preloaded tables by fork",
        "memory: peak RSS of the measuring process (VmHWM: Linux carries ru_maxrss across "
        "exec from the launcher) / ru_maxrss of the largest pool worker; parent + workers adds the "
        "most the shared-memory slots held at once (sampled: no process maps their pages)",
        "* a baseline has no cache: its only cold start (read the CSV tables, answer one claim)",
    ]
    if "policykb" in systems:
        notes.append(
            f"cold start: {report['systems']['policykb'].get('cold_how')} on "
            f"{report['meta'].get('cold_start_claim')}, POLICYKB_CACHE_DIR a warm vs "
            "an empty temp dir"
        )
    if naive_x:
        notes.append(
            f"naive pyDatalog: {naive_x['label']} "
            f"({naive_x['per_row_us']:.1f} us and {naive_x['per_row_bytes']:.0f} bytes "
            f"per asserted row); {naive_x['note']}"
        )
    for n in notes:
        console.print(f"[dim]- {n}[/]")

    if "policykb" in systems and len(systems) > 1:
        ratios = Table(title="PolicyKB relative to each baseline (same corpus)", title_justify="left")
        ratios.add_column("figure")
        baselines = [s for s in systems if s not in ("policykb", "duckdb", "dask")]
        for s in baselines:
            ratios.add_column(f"vs {LABEL[s]}", justify="right")
        if naive_x:
            ratios.add_column("vs naive\nEXTRAPOLATED", justify="right", style="italic")
        pk = figs["policykb"]
        for key, label, _unit, higher_better in ROWS:
            if key in ("disagreements", "latency_rss_mb", "cold_cached_s"):
                continue
            row = [label]
            words = ("more", "less") if key.endswith("_mb") else ("slower", "faster")
            for s in baselines:
                row.append(_ratio(pk.get(key), figs[s].get(key), higher_better, words))
            if naive_x:
                xkey = NAIVE_KEYS.get(key)
                row.append(_ratio(pk.get(key), naive_x.get(xkey), higher_better, words) if xkey else "")
            ratios.add_row(*row)
        # PolicyKB's cached cold start against each baseline's only cold start
        row = ["cold start, PolicyKB cached vs baseline"]
        for s in baselines:
            row.append(_ratio(pk.get("cold_cached_s"), figs[s].get("cold_nocache_s"), False))
        if naive_x:
            row.append(_ratio(pk.get("cold_cached_s"), naive_x.get("cold_s"), False))
        ratios.add_row(*row)
        console.print(ratios)
        console.print(
            "[dim]- 'N× slower' / 'N× faster': PolicyKB's figure against the "
            "baseline's (for memory: 'N× more' / 'N× less')[/]"
        )
    if "duckdb" in systems:
        _print_duckdb(console, report, figs)
    if "dask" in systems:
        from benchmarks.dask_rows import print_dask

        print_dask(console, report)


def _print_duckdb(console: Console, report: dict[str, Any], figs: dict[str, dict[str, Any]]) -> None:
    """The batch backend against every other system, and its own targets (issue 13)."""
    others = [s for s in figs if s != "duckdb"]
    dk = figs["duckdb"]
    table = Table(title="PolicyKB DuckDB backend relative to each system (batch, same corpus)", title_justify="left")
    table.add_column("figure")
    for s in others:
        table.add_column(f"vs {LABEL[s]}", justify="right")
    for key in ("batch1_claims_s", "batch2_claims_s", "worker_rss_mb"):
        label = next(lbl for k, lbl, _u, _h in ROWS if k == key)
        words = ("more", "less") if key.endswith("_mb") else ("slower", "faster")
        table.add_row(label, *[_ratio(dk.get(key), figs[s].get(key), key != "worker_rss_mb", words) for s in others])
    b1, b2 = dk.get("batch1_claims_s"), dk.get("batch2_claims_s")
    console.print(table)
    if b1 and b2:
        console.print(
            f"[dim]- DuckDB scaling, 2 workers / 1 worker: {b2 / b1:.2f}×; prepare (copy tables "
            f"into DuckDB files, once per table content): "
            f"{report['systems']['duckdb'].get('prepare_s', 0):.1f} s[/]"
        )
    for w, b in sorted(report["systems"]["duckdb"].get("batch", {}).items()):
        if b.get("cpu_s"):  # wall-clock figures suffer on a shared machine; CPU time does not
            console.print(
                f"[dim]- DuckDB, {w} worker(s): {b['claims'] / b['cpu_s']:,.0f} claims per CPU-second "
                f"({b['cpu_s']:.1f} s of CPU, parent and workers, worker start included)[/]"
            )
    for t in report["targets"]:
        if t["key"].startswith("duckdb."):
            console.print(
                f"  {t['label']}: {_fmt(t['value'], ' ' + t['unit'] if t['unit'] else '')} "
                f"(target {t['op']} {t['limit']:,} {t['unit']}) {_mark(t, report)}"
            )


def _mark(target: dict[str, Any], report: dict[str, Any]) -> str:
    """PASS or MISS, or why a target was not judged on this run."""
    if target["status"] == "n/a":
        return (
            f"[yellow]not judged[/] [dim](stated for {STATED_FOR[target['key']]:,} claims; "
            f"this run has {report['meta']['claims']:,}: --claims {STATED_FOR[target['key']]})[/]"
        )
    return "[green]PASS[/]" if target["status"] == "PASS" else "[red]MISS[/]"


def _ratio(
    mine: float | None, theirs: float | None, higher_better: bool, words: tuple[str, str] = ("slower", "faster")
) -> str:
    if not mine or not theirs:
        return "-"
    # throughput: PolicyKB is slower when it does less per second
    r = theirs / mine if higher_better else mine / theirs
    return f"{r:.1f}× {words[0]}" if r >= 1 else f"{1 / r:.1f}× {words[1]}"


def _print_disagreements(console: Console, report: dict[str, Any]) -> None:
    for system, res in report["systems"].items():
        dis = res.get("disagreements", [])
        if not dis:
            continue
        distinct = _figures(system, res)["disagreements"]
        runs = len({d["where"] for d in dis})
        table = Table(
            title=f"{LABEL[system]}: {distinct} claim lines disagree with the oracle "
            f"({len(dis)} findings over {runs} runs; first 30 shown)",
            title_justify="left",
            style="red",
        )
        for col in ("where", "claim", "line", "oracle", LABEL[system]):
            table.add_column(col)
        for d in dis[:30]:
            if "problem" in d:
                table.add_row(d["where"], str(d["claim"]), "", d["problem"], "")
            else:
                table.add_row(
                    d["where"],
                    d["claim"],
                    str(d["line"]),
                    ", ".join(d["oracle"]) or "(none)",
                    ", ".join(d["system_kinds"]) or "(none)",
                )
        console.print(table)


def _print_compare(console: Console, report: dict[str, Any], path: Path) -> None:
    try:
        prev = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        console.print(f"[red]cannot read {path} to compare: {e}[/]")
        return
    table = Table(
        title=f"against {path} ({prev.get('meta', {}).get('date', '?')}, "
        f"commit {str(prev.get('meta', {}).get('commit', '?'))[:10]})",
        title_justify="left",
    )
    for col in ("system", "figure", "before", "now", "change"):
        table.add_column(col, justify="right" if col in ("before", "now", "change") else "left")
    for system, res in report["systems"].items():
        before_res = prev.get("systems", {}).get(system)
        if not before_res:
            continue
        now, before = _figures(system, res), _figures(system, before_res)
        for key, label, unit, higher_better in ROWS:
            a, b = before.get(key), now.get(key)
            if a is None or b is None:
                continue
            if a:
                change = (b - a) / a
                better = change > 0 if higher_better else change < 0
                colour = "green" if better else "red"
                text = f"[{colour}]{change:+.0%}[/]" if abs(change) >= 0.005 else "0%"
            else:
                text = "-" if b == a else "new"
            table.add_row(LABEL[system], label, _fmt(a, unit), _fmt(b, unit), text)
    console.print(table)


def _burn(n: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - start


def _parallel_scaling(n: int = 4_000_000, jobs: int = 4) -> float:
    """How much faster 2 processes finish CPU-bound work than 1 on this machine (ideal 2.0):
    the ceiling for any 2-worker speed-up here, since vCPUs may share a physical core."""
    from multiprocessing import Pool

    start = time.perf_counter()
    for _ in range(jobs):
        _burn(n)
    serial = time.perf_counter() - start
    with Pool(2) as pool:
        pool.map(_burn, [n // 10] * 2)  # start the workers before timing
        start = time.perf_counter()
        pool.map(_burn, [n] * jobs, chunksize=1)
        parallel = time.perf_counter() - start
    return serial / parallel


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


if __name__ == "__main__":
    sys.exit(main())
