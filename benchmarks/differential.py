"""Both backends on a seeded generated corpus: every line must get the same decision and rule ids.

    python -m benchmarks.differential [--claims 5000] [--seed 1]

The test suite runs 1,000 claims (tests/test_backends.py); this runs the issue's 5,000 (a few
minutes: pyDatalog decides about 200 claims/s). Exit status 1 on any disagreement.
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks.corpus import generate, strip_meta
from benchmarks.tables import shared_tables
from engine.api import PolicyKB
from engine.backends import CHUNK_CLAIMS
from engine.claims import parse_claim
from engine.explain.result import ClaimResult


def _summary(r: ClaimResult) -> dict[int, tuple[str, list[tuple[str, str | None]]]]:
    return {ln.line: (ln.decision, [(x.rule, x.overridden_by) for x in ln.reasons]) for ln in r.lines}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.differential",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--claims", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    claims = [parse_claim(strip_meta(c)) for c in generate(shared_tables(), args.claims, args.seed)]
    kb = PolicyKB.open()
    seconds = {}
    results = {}
    for engine in ("duckdb", "pydatalog"):
        t0 = time.perf_counter()
        out: list[ClaimResult | Exception] = []
        for i in range(0, len(claims), CHUNK_CLAIMS):
            out += kb.adjudicate_many(claims[i : i + CHUNK_CLAIMS], engine=engine)
        seconds[engine] = time.perf_counter() - t0
        results[engine] = out
    lines = denied = 0
    problems = []
    for claim, a, b in zip(claims, results["duckdb"], results["pydatalog"], strict=True):
        if isinstance(a, Exception) or isinstance(b, Exception):
            problems.append(f"{claim.id}: failed: duckdb {a!r} / pydatalog {b!r}")
            continue
        lines += len(a.lines)
        denied += sum(ln.decision == "deny" for ln in a.lines)
        if _summary(a) != _summary(b):
            problems.append(f"{claim.id}: duckdb {_summary(a)} != pydatalog {_summary(b)}")
        elif a.to_dict() != b.to_dict():
            problems.append(f"{claim.id}: same decisions and rule ids, different records")
    print(
        f"{len(claims):,} claims, {lines:,} lines ({denied:,} denied), seed {args.seed}: "
        f"duckdb {seconds['duckdb']:.1f} s, pydatalog {seconds['pydatalog']:.1f} s (one process)"
    )
    for p in problems[:20]:
        print("  " + p)
    print(f"{len(problems)} claim(s) where the engines disagree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
