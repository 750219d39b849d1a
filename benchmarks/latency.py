"""Per-claim latency of `explain` in a warm process: plain decision, with proofs, with remedies.

    python -m benchmarks.latency [--claims 600] [--seed 1] [--lines 10] [--repeats 3]

Generates the benchmark corpus (benchmarks/corpus.py), keeps the claims with `--lines` lines,
warms the process up on the first 20 claims of the corpus, then adjudicates each kept claim
`--repeats` times in each mode, the modes taking turns round by round (Claim in, result dict
out), and reports p50/p95 of wall time
and of CPU time (`time.process_time`: the figure to trust on a shared machine), each claim's
best of its repeats, and the remedies / plain ratio of the CPU p50s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.corpus import generate, strip_meta
from benchmarks.measure import latency_summary
from benchmarks.tables import KB_DIR, shared_tables
from engine.api import PolicyKB
from engine.claims import parse_claim

MODES = {
    "plain": {"proofs": False, "remedies": False},
    "proofs": {"proofs": True, "remedies": False},
    "remedies": {"proofs": True, "remedies": True},
}


def measure(kb: PolicyKB, claims: list[Any], warm: list[Any], repeats: int) -> dict[str, Any]:
    """Each claim's best time per mode. The modes take turns, one round of every claim each, so a
    host whose speed drifts (a shared machine) slows every mode alike instead of the one whose
    runs it happened to fall on: the ratio of two modes is what this benchmark exists for."""
    for kw in MODES.values():
        for claim in warm:
            kb.adjudicate(claim, **kw).to_dict()
    wall = {name: [float("inf")] * len(claims) for name in MODES}
    cpu = {name: [float("inf")] * len(claims) for name in MODES}
    for _ in range(repeats):
        for name, kw in MODES.items():
            best_wall, best_cpu = wall[name], cpu[name]
            for i, claim in enumerate(claims):
                start, start_cpu = time.perf_counter(), time.process_time()
                kb.adjudicate(claim, **kw).to_dict()
                best_cpu[i] = min(best_cpu[i], (time.process_time() - start_cpu) * 1000)
                best_wall[i] = min(best_wall[i], (time.perf_counter() - start) * 1000)
    out: dict[str, Any] = {
        name: {"wall": latency_summary(wall[name]), "cpu": latency_summary(cpu[name])} for name in MODES
    }
    plain, remedies = out["plain"]["cpu"]["p50_ms"], out["remedies"]["cpu"]["p50_ms"]
    out["remedies_ratio"] = remedies / plain if plain else float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--claims", type=int, default=600, help="corpus size (default 600)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lines", type=int, default=10, help="measure claims of this many lines (default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per claim and mode; the best counts")
    ap.add_argument("--kb", type=Path, default=KB_DIR)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    corpus = [parse_claim(strip_meta(c)) for c in generate(shared_tables(), args.claims, args.seed)]
    claims = [c for c in corpus if len(c.lines) == args.lines]
    if not claims:
        print(f"no {args.lines}-line claim among {args.claims}", file=sys.stderr)
        return 1
    kb = PolicyKB.open(args.kb)
    figures = measure(kb, claims, corpus[:20], args.repeats)
    print(f"{len(claims)} claims of {args.lines} lines, best of {args.repeats} runs each, warm process")
    print(f"{'mode':10} {'CPU p50':>9} {'CPU p95':>9} {'wall p50':>9} {'wall p95':>9}")
    for name in MODES:
        cpu, wall = figures[name]["cpu"], figures[name]["wall"]
        print(
            f"{name:10} {cpu['p50_ms']:7.1f}ms {cpu['p95_ms']:7.1f}ms {wall['p50_ms']:7.1f}ms {wall['p95_ms']:7.1f}ms"
        )
    print(f"remedies / plain (CPU p50): {figures['remedies_ratio']:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
