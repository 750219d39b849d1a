"""Where DuckDB spends one chunk's time: statement by statement, then operator by operator.

    python -m benchmarks.sql_profile [--claims 5000] [--seed 1] [--input CLAIMS.jsonl]
                                     [--repeats 3] [--top 15] [--threads 1]

Evaluates one chunk as scrub does (the DuckDB backend, the message request of BatchDecider), on
the benchmark corpus or the first `--claims` claims of a JSONL file, then runs every statement of
that chunk again on the chunk's tables: the SELECT of each per-chunk step (a recursive step's is
left out: it reads its own table) and each message query, `--repeats` times for its best CPU time
(`time.process_time`, the figure to trust on a shared machine), and once under DuckDB's JSON
profiler for its operators. The profiler times operators by the wall clock, so on a busy machine
its shares, not its figures, say where a statement's time goes. Figures are per claim.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.corpus import generate, strip_meta
from benchmarks.tables import KB_DIR, shared_tables
from engine.api import PolicyKB
from engine.backends.decide import BatchDecider
from engine.backends.duckdb import DuckDBBackend
from engine.claims import Claim, ClaimError, claim_to_facts, parse_claim_text

Statement = tuple[str, str]  # (label, SELECT)


def capture(backend: DuckDBBackend, facts: list[Any], decider: BatchDecider) -> list[Statement]:
    """Evaluate the chunk, recording the SELECT of every per-chunk statement and message query."""
    seen: list[Statement] = []
    run, message_sql = backend._run, backend._message_sql

    def recording_run(sql: str) -> Any:
        if sql.startswith("INSERT INTO ") and " EXCEPT SELECT * FROM " not in sql:
            _, _, table, select = sql.split(" ", 3)  # table names are quoted identifiers
            seen.append((table.strip('"'), select))
        return run(sql)

    def recording_message_sql(index: int, *args: Any, **kw: Any) -> Any:
        found = message_sql(index, *args, **kw)
        seen.append((f"message of rule {index}", found[0]))
        return found

    backend._run = recording_run  # type: ignore[method-assign]
    backend._message_sql = recording_message_sql  # type: ignore[method-assign]
    try:
        backend.evaluate_many(facts, messages=decider.request)
    finally:
        del backend._run, backend._message_sql
    return seen


def _operators(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", ()):
        yield from _operators(child)


def _operator_name(node: dict[str, Any]) -> str:
    name = str(node.get("type", "?"))
    join = node.get("extra_info", {}).get("Join Type")
    return f"{name} {join}" if join else name


def _largest(times: dict[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(times.items(), key=lambda item: -item[1])[:n]


def profile(backend: DuckDBBackend, statements: list[Statement], repeats: int) -> list[dict[str, Any]]:
    """Each statement's best CPU seconds, rows and operator wall seconds (by operator name)."""
    con = backend.con
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pkb-sqlprof-") as tmp:
        target = Path(tmp) / "profile.json"
        for label, sql in statements:
            best, rows = float("inf"), 0
            for _ in range(repeats):
                start = time.process_time()
                rows = len(con.execute(sql).fetchall())
                best = min(best, time.process_time() - start)
            con.execute("PRAGMA enable_profiling='json'")
            con.execute(f"PRAGMA profiling_output='{target}'")
            try:
                con.execute(sql).fetchall()
            finally:
                con.execute("PRAGMA disable_profiling")
            found = json.loads(target.read_text(encoding="utf-8"))
            ops: dict[str, float] = {}
            for root in found.get("operator", ()):
                for node in _operators(root):
                    name = _operator_name(node)
                    ops[name] = ops.get(name, 0.0) + float(node.get("timing", 0.0))
            planning = sum(
                float(found.get(part, {}).get("total_time", 0.0))
                for part in ("planner", "optimizer", "physical_planner")
            )
            out.append({"label": label, "cpu": best, "rows": rows, "ops": ops, "planning": planning})
    return out


def load_chunk(args: argparse.Namespace) -> list[Claim]:
    if args.input is None:
        return [parse_claim_text(json.dumps(strip_meta(c))) for c in generate(shared_tables(), args.claims, args.seed)]
    claims: list[Claim] = []
    with args.input.open(encoding="utf-8") as fh:
        for number, text in enumerate(fh, 1):
            if len(claims) == args.claims:
                break
            if text.strip():
                claims.append(parse_claim_text(text, source=str(args.input), record=number))
    return claims


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sql_profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--claims", type=int, default=5000, help="chunk size (default 5000)")
    ap.add_argument("--seed", type=int, default=1, help="corpus seed (without --input)")
    ap.add_argument("--input", type=Path, help="read the chunk from this JSONL file instead of the corpus")
    ap.add_argument("--repeats", type=int, default=3, help="runs per statement; the best CPU time counts")
    ap.add_argument("--top", type=int, default=15, help="statements to list (default 15)")
    ap.add_argument("--threads", type=int, default=1, help="DuckDB threads (default 1, as with 2 workers)")
    ap.add_argument("--kb", type=Path, default=KB_DIR)
    args = ap.parse_args(argv)
    try:
        claims = load_chunk(args)
    except (ClaimError, OSError) as e:
        print(f"sql_profile: {e}", file=sys.stderr)
        return 2
    if not claims:
        print("no claims to profile", file=sys.stderr)
        return 1
    kb = PolicyKB.open(args.kb)
    backend = kb.duckdb(threads=args.threads)
    decider = BatchDecider(kb)
    facts = [claim_to_facts(c) for c in claims]
    backend.evaluate_many(facts[:100], messages=decider.request)  # warm up: statements parsed, tables built
    start = time.process_time()
    statements = capture(backend, facts, decider)
    chunk_cpu = time.process_time() - start
    figures = profile(backend, statements, args.repeats)
    n = len(claims)

    def us(seconds: float) -> str:
        return f"{seconds * 1e6 / n:8.1f}"

    print(f"one chunk of {n} claims, {args.threads} DuckDB thread(s); figures in CPU µs a claim")
    print(f"evaluate_many {us(chunk_cpu)}   its statements run again: {us(sum(f['cpu'] for f in figures))}")
    print(f"\n{'µs/claim':>8}  {'rows':>8}  {'statement':34} where (share of the operators' wall time)")
    for f in sorted(figures, key=lambda f: -f["cpu"])[: args.top]:
        total = sum(f["ops"].values()) or 1.0
        where = ", ".join(f"{name} {t / total:.0%}" for name, t in _largest(f["ops"], 3))
        print(f"{us(f['cpu'])}  {f['rows']:8d}  {f['label'][:34]:34} {where}")
    ops: dict[str, float] = {}
    for f in figures:
        for name, t in f["ops"].items():
            ops[name] = ops.get(name, 0.0) + t
    total = sum(ops.values()) or 1.0
    print(
        f"\n{'share':>6}  operator (over all statements; planning was {us(sum(f['planning'] for f in figures)).strip()} µs a claim)"
    )
    for name, t in _largest(ops, 12):
        print(f"{t / total:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
