"""The public datalog-conformance corpus (Soufflé, Nemo and crepe cases), minus the defeasible
part, run through engine.conformance.Evaluator on both backends: the same parser, checker
passes and compiler as the KB, then the pyDatalog adapter or the DuckDB backend.

Known gaps are listed below per backend with the reason; every other case must pass on both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
dc = pytest.importorskip("datalog_conformance")
from datalog_conformance.plugin import _load_multi_case_file  # noqa: E402
from datalog_conformance.schema import TestCase as ConformanceCase  # noqa: E402

from engine.conformance import Evaluator  # noqa: E402

SUITES = ("basic", "negation", "recursion", "errors")

KNOWN_GAPS = {
    # Nemo treats a variable that occurs only inside a negated atom (P in `not s3(X, 5, P)`) as
    # existentially quantified. Our dialect is Soufflé's: such a variable is unsafe and must be
    # written `_`. The checker rejects the program with error[unsafe-negation] naming the variable
    # and suggesting `_` (the corpus' own review_v2 case expects exactly that rejection).
    **{f"nemo_negation_{r}": "Nemo-only semantics for variables that occur only under negation; "
       "rejected with error[unsafe-negation]" for r in (
           "projectedZ", "filteredX", "projectedX", "projectedY", "projectedXZ", "multiple",
           "singlePositionY", "filteredY", "reordered", "filteredZ", "projectedXY", "projectedYZ",
           "singlePositionX", "singlePositionZ")},
    # A points-to analysis with mutually recursive IsPtr/Memory/IsReachable over thousands of facts:
    # pyDatalog's tabled top-down resolution did not finish within 15 minutes on this machine.
    "souffle_hmmer_CPtrLoad": "pyDatalog does not finish this mutually recursive program in reasonable time",
    "souffle_hmmer_CPtrStore": "pyDatalog does not finish this mutually recursive program in reasonable time",
}
# The DuckDB backend shares the checker, so the Nemo cases are rejected the same way. It does
# finish the two points-to programs (set-at-a-time fixpoint: about a minute each on this
# machine), so they are left to POLICYKB_SLOW=1 rather than listed as failures.
KNOWN_GAPS_DUCKDB = {name: why for name, why in KNOWN_GAPS.items() if name.startswith("nemo_")}
SLOW_DUCKDB = {"souffle_hmmer_CPtrLoad", "souffle_hmmer_CPtrStore"}
BACKENDS = ("pydatalog", "duckdb")


def _cases() -> list[tuple[str, ConformanceCase]]:
    root = Path(dc.get_tests_dir())
    out = []
    for suite in SUITES:
        for path in sorted((root / suite).glob("*.yaml")):
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            cases = _load_multi_case_file(raw, path) if isinstance(raw, dict) and "tests" in raw else [ConformanceCase.from_dict(raw)]
            out.extend((f"{suite}/{path.stem}", c) for c in cases)
    return out


CASES = _cases()


class _MemoEvaluator:
    """Several corpus cases share one program and assert different relations of it; evaluate
    each distinct program once."""

    def __init__(self, backend: str) -> None:
        self.inner = Evaluator(backend)
        self.memo: dict[str, dict] = {}

    def evaluate(self, program):
        key = json.dumps([program.rules, {k: [list(r) for r in v] for k, v in sorted(program.facts.items())}],
                         sort_keys=True, default=str)
        if key not in self.memo:
            self.memo[key] = self.inner.evaluate(program)
        return self.memo[key]


_EVALUATORS = {backend: _MemoEvaluator(backend) for backend in BACKENDS}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[f"{s}:{c.name}" for s, c in CASES])
def test_conformance(case: ConformanceCase, backend: str) -> None:
    gaps = KNOWN_GAPS if backend == "pydatalog" else KNOWN_GAPS_DUCKDB
    if case.name in gaps:
        pytest.xfail(gaps[case.name])
    if backend == "duckdb" and case.name in SLOW_DUCKDB and os.environ.get("POLICYKB_SLOW") != "1":
        pytest.skip("passes on DuckDB in about a minute; run with POLICYKB_SLOW=1")
    dc.YamlTestRunner(_EVALUATORS[backend]).run_test_case(case)


def test_known_gaps_exist_in_corpus() -> None:
    """A gap listed for a case the corpus no longer has is stale."""
    names = {c.name for _, c in CASES}
    assert set(KNOWN_GAPS) <= names
    assert set(KNOWN_GAPS_DUCKDB) | SLOW_DUCKDB <= names


def test_unsafe_negation_is_rejected_with_a_clear_error() -> None:
    from types import SimpleNamespace

    from engine.conformance import SafetyViolationError
    with pytest.raises(SafetyViolationError) as exc:
        Evaluator().evaluate(SimpleNamespace(facts={"p": [(1,)]}, rules=["q(X) :- p(X), not r(X, P)."]))
    assert "variable P appears only in a negated atom" in str(exc.value)
    assert "write _" in str(exc.value)
