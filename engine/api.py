"""The embedding API: open a KB once, then adjudicate claims, explain lines, ask why not.

from engine.api import PolicyKB
kb = PolicyKB.open()                        # the bundled kb/, compiled cache reused
result = kb.adjudicate(claim)               # engine.claims.Claim -> ClaimResult
result.to_dict()                            # the JSON the CLI prints
"""

from __future__ import annotations

import functools
import gc
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.adjudicate import Adjudicator
from engine.backends import DEFAULT_ENGINE, ENGINES, BatchModel
from engine.claims import Claim, Facts, chunk_facts
from engine.evaluate import Evaluator, Model
from engine.explain.proof import Prover, WhyNot
from engine.explain.result import ClaimResult
from engine.ir import CompiledRule, Value
from engine.kb import LoadedKB, load_kb

if TYPE_CHECKING:
    from engine.backends.duckdb import DuckDBBackend


class _SolvedProver(Prover):
    """A prover whose rule solutions came with a batch backend's model (see BatchModel)."""

    def __init__(self, base: Prover, solved: dict[tuple[int, tuple], list[dict[str, Value]]]):
        super().__init__(base.program, base.cp, base.evaluator, base.model, base.claim_origin)
        self._solved = solved

    def solutions(self, crule: CompiledRule, head: tuple, limit: int) -> list[dict[str, Value]]:
        return self._solved.get((crule.index, tuple(head)), [])[:limit]


class _BatchAdjudicator(Adjudicator):
    """Adjudication over a BatchModel: messages from the precomputed solutions."""

    def prover(self, claim: Claim, model: Model) -> Prover:
        base = super().prover(claim, model)
        return _SolvedProver(base, model.solutions) if isinstance(model, BatchModel) else base


class EngineDisagreement(Exception):
    """`--engine both`: the two backends decided a claim differently (names lines and rule ids)."""


class PolicyKB:
    """A loaded KB with its evaluator; one per process (pyDatalog state is per thread)."""

    def __init__(self, kb: LoadedKB):
        assert kb.compiled is not None
        self.kb = kb
        self.evaluator = Evaluator(kb.compiled, kb.store)
        self.adjudicator = Adjudicator(kb, self.evaluator)
        self._duckdb: DuckDBBackend | None = None
        self._batch_adjudicator = _BatchAdjudicator(kb, self.evaluator)
        # Everything loaded so far lives as long as the process: keep the cyclic collector from
        # re-scanning it on every collection (measured: p99 67 -> 38 ms on 10-line claims).
        gc.collect()
        gc.freeze()

    @classmethod
    def open(
        cls,
        root: Path | str | None = None,
        cache_dir: Path | str | None = None,
        progress: Callable[[str, int], None] | None = None,
    ) -> PolicyKB:
        """`progress(table, rows)` hears about tables being built into the cache (a first run)."""
        return cls(load_kb(Path(root) if root else None, Path(cache_dir) if cache_dir else None, progress))

    @property
    def version(self) -> str:
        return self.kb.version

    def adjudicate(self, claim: Claim, *, proofs: bool = True, remedies: bool = False) -> ClaimResult:
        return self.adjudicator.adjudicate(claim, proofs=proofs, remedies=remedies)

    def duckdb(self, threads: int | None = None) -> DuckDBBackend:
        """The set-at-a-time backend, opened on first use (one per process)."""
        if self._duckdb is None:
            from engine.backends.duckdb import DuckDBBackend, declared_types

            assert self.kb.compiled is not None
            self._duckdb = DuckDBBackend(
                self.kb.compiled, self.kb.store, declared_types(self.kb.compiled, self.kb.program), threads=threads
            )
        return self._duckdb

    def adjudicate_many(
        self, claims: Sequence[Claim], *, engine: str = DEFAULT_ENGINE, proofs: bool = False
    ) -> list[ClaimResult | Exception]:
        """Decide a chunk of claims; a claim that fails gets its exception in its place.

        `duckdb` evaluates the chunk set-at-a-time; `pydatalog` claim by claim; `both` runs the two
        and turns any difference into an EngineDisagreement. With `proofs`, a claim that has
        reasons is explained through the pyDatalog path (the prover needs its model)."""
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
        if engine == "pydatalog":
            return [_attempt(functools.partial(self.adjudicate, c, proofs=proofs)) for c in claims]
        models = _isolating(self.duckdb().evaluate_many, chunk_facts(claims))
        out: list[ClaimResult | Exception] = []
        for claim, model in zip(claims, models, strict=True):
            if isinstance(model, Exception):
                out.append(model)
                continue

            def decide(claim: Claim = claim, model: Model = model) -> ClaimResult:
                if proofs and (model.rows("deny") or model.rows("warn")):
                    result = self.adjudicate(claim, proofs=True)
                else:
                    result = self._batch_adjudicator.adjudicate(claim, proofs=False, model=model)
                if engine == "both":
                    _compare(result, self.adjudicate(claim, proofs=proofs))
                return result

            out.append(_attempt(decide))
        return out

    def why_not(self, claim: Claim, line: int, rule_id: str) -> WhyNot:
        return self.adjudicator.why_not(claim, line, rule_id)

    def evaluate(self, facts: dict[str, Iterable[tuple[str | int, ...]]]) -> Model:
        """Low level: evaluate raw claim-relation facts."""
        return self.evaluator.evaluate(facts)


def _isolating(evaluate: Callable[[list[Facts]], list[BatchModel]], chunk: list[Facts]) -> list[BatchModel | Exception]:
    """Evaluate a chunk; when it fails, halve it until the claims that fail are alone, so one
    claim the backend cannot take (e.g. a number beyond 64 bits) fails only its own record."""
    try:
        return list(evaluate(chunk))
    except Exception as e:
        if len(chunk) == 1:
            return [e]
        mid = len(chunk) // 2
        return _isolating(evaluate, chunk[:mid]) + _isolating(evaluate, chunk[mid:])


def _attempt(fn: Callable[[], ClaimResult]) -> ClaimResult | Exception:
    try:
        return fn()
    except Exception as e:  # one claim's failure is that claim's error record
        return e


def _compare(duck: ClaimResult, pyd: ClaimResult) -> None:
    """Raise EngineDisagreement naming every line whose decision, rule ids or reasons differ."""
    a, b = duck.to_dict(), pyd.to_dict()
    if a == b:
        return
    lines_a = {ln.line: ln for ln in duck.lines}
    lines_b = {ln.line: ln for ln in pyd.lines}
    problems = []
    for n in sorted(set(lines_a) | set(lines_b)):
        la, lb = lines_a.get(n), lines_b.get(n)
        if la is None or lb is None or la.to_dict() != lb.to_dict():

            def show(ln: Any) -> str:
                if ln is None:
                    return "no line"
                rules = ", ".join(
                    r.rule + (f" (overridden by {r.overridden_by})" if r.overridden_by else "") for r in ln.reasons
                )
                return f"{ln.decision} [{rules}]"

            problems.append(f"line {n}: duckdb {show(la)}, pydatalog {show(lb)}")
    raise EngineDisagreement("; ".join(problems) or "results differ outside the lines")


class BatchWorker:
    """What engine.batch runs in each worker process: one claim, or a chunk at once."""

    def __init__(self, kb: PolicyKB, engine: str, proofs: bool, remedies: bool):
        self.kb, self.engine, self.proofs, self.remedies = kb, engine, proofs, remedies

    def __call__(self, claim: Claim) -> dict:
        result = self.many([claim])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def many(self, claims: Sequence[Claim]) -> list[dict | Exception]:
        if self.remedies:  # remedies re-adjudicate candidate claims: the per-claim path
            return [self._one_with_remedies(c) for c in claims]
        if self.engine == "duckdb" and not self.proofs:  # scrub's default: dicts straight from the models
            from engine.backends.decide import decide_many

            return decide_many(self.kb, claims)
        return [
            r.to_dict() if isinstance(r, ClaimResult) else r
            for r in self.kb.adjudicate_many(claims, engine=self.engine, proofs=self.proofs)
        ]

    def many_written(self, claims: Sequence[Claim]) -> list[Any]:
        """As many, each result as scrub writes it (engine.batch.Written) on scrub's default path,
        where the results are only written; a dict otherwise."""
        if self.engine == "duckdb" and not self.proofs and not self.remedies:
            from engine.backends.decide import decide_many

            return decide_many(self.kb, claims, written=True)
        return self.many(claims)

    def _one_with_remedies(self, claim: Claim) -> dict | Exception:
        r = _attempt(lambda: self.kb.adjudicate(claim, proofs=self.proofs, remedies=True))
        return r.to_dict() if isinstance(r, ClaimResult) else r


def make_worker(
    kb_dir: str | None = None,
    cache_dir: str | None = None,
    proofs: bool = False,
    remedies: bool = False,
    engine: str = DEFAULT_ENGINE,
    workers: int = 1,
) -> BatchWorker:
    """A per-process adjudicator for engine.batch.run_batch (pass it via functools.partial)."""
    kb = _worker_kb(kb_dir, cache_dir)
    if engine != "pydatalog":  # open DuckDB now, sharing the cores between the worker processes
        kb.duckdb(threads=max(1, (os.cpu_count() or 1) // max(1, workers)))
    return BatchWorker(kb, engine, proofs, remedies)


# KBs opened in this process for batch workers, by (kb_dir, cache_dir), with the thread that opened
# each: a worker made in this process, or in a process this thread forks later, uses it instead of
# loading the KB again (pyDatalog's state is per thread: a process forked by another thread, such
# as a pool replacing a dead worker from its own thread, opens its own).
_opened: dict[tuple[str | None, str | None], tuple[int, PolicyKB]] = {}


def share_with_workers(kb: PolicyKB, kb_dir: str | None, cache_dir: str | None = None) -> None:
    """Let make_worker(kb_dir, cache_dir, ...) use `kb`, already open, in this process and in the
    workers it forks from this thread. `kb` must be what PolicyKB.open(kb_dir, cache_dir) opens."""
    _opened[(kb_dir, cache_dir)] = (threading.get_ident(), kb)


def _worker_kb(kb_dir: str | None, cache_dir: str | None) -> PolicyKB:
    found = _opened.get((kb_dir, cache_dir))
    if found is not None and found[0] == threading.get_ident():
        return found[1]
    return PolicyKB.open(kb_dir, cache_dir)


def _before_fork(
    kb_dir: str | None = None, cache_dir: str | None = None, *_args: Any, **_kwargs: Any
) -> Callable[[], None] | None:
    """make_worker's `before_fork` (see engine.batch): open the KB in the parent, so the workers it
    forks share it copy-on-write instead of each loading it (a third of a second of CPU apiece).
    Returns what lets go of it once they are forked (a later run opens the KB afresh, as it may
    have changed), or None when the caller shared its own (share_with_workers). A KB that does
    not load is left to the workers, which report it as they always did."""
    key = (kb_dir, cache_dir)
    found = _opened.get(key)
    if found is not None and found[0] == threading.get_ident():
        return None
    try:
        share_with_workers(PolicyKB.open(kb_dir, cache_dir), kb_dir, cache_dir)
    except Exception:
        return None

    def let_go() -> None:
        _opened.pop(key, None)

    return let_go


make_worker.before_fork = _before_fork  # type: ignore[attr-defined]
