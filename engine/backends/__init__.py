"""Evaluation backends for the compiled program: the same IR, two ways of running it.

- `pydatalog` (engine/evaluate.py through engine/datalog.py): one claim at a time, top-down,
  with the per-claim model the prover rebuilds proofs over. `explain`, `--why-not`, remedies and
  the policy cases use it.
- `duckdb` (engine/backends/duckdb.py): a whole chunk of claims at once, set-at-a-time in SQL,
  every claim-dependent relation carrying a hidden claim key. `scrub` uses it by default.

The interface both honour: given a chunk of claims' facts, return one `Model` per claim holding
at least the claim relations and the outcome relations (`deny`, `warn`, `overridden`); a batch
backend's BatchModel also carries each reason's bindings (or, asked with a MessageRequest, only
what each message shows of them), which the pyDatalog path finds by re-solving the rule body
over its model. Stages above cannot tell which backend ran.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from engine.claims import Facts
from engine.evaluate import Evaluator, Model
from engine.ir import Value

ENGINES = ("duckdb", "pydatalog", "both")
DEFAULT_ENGINE = "duckdb"
OUTCOMES = ("deny", "warn", "overridden")
# Claims a set-at-a-time backend decides in one pass: each pass has a fixed cost (a few dozen
# statements), so chunks must be large; small enough that a worker's chunk stays in memory.
# Peak memory of 100,000 claims on 2 workers is about parent (~100 MB) + 2 x worker (~230 MB
# + ~30 MB per 1,000 claims of a chunk) + the slots in flight (engine.transport: ~2 chunks' output,
# 6.7 kB a claim): measured 1,223-1,233 + 102-154 MB at 10,000, 1,338 + 184 at 12,000, 1,383 + 193
# at 12,500, 1,542 + 205 at 15,000 (a pass costs ~0.4-0.7 s fixed: 12,000 would save ~2-3 % of the CPU).
CHUNK_CLAIMS = 10000


@dataclass
class BatchModel(Model):
    """A Model from a batch backend. It carries, for each outcome row, the solutions of the rule
    that derived it (distinct named bindings, in the order the prover would find them), so the
    adjudicator fills messages without re-solving rule bodies in Python."""

    solutions: dict[tuple[int, tuple], list[dict[str, Value]]] = field(default_factory=dict)
    # asked with a MessageRequest instead: for each outcome row, the message's values as text
    messages: dict[tuple[int, tuple], tuple[str | None, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageRequest:
    """What a reason's message shows of its rule's solutions, asked of a batch backend that is to
    merge them itself (scrub without proofs needs nothing else): for each outcome rule index, the
    variables its message names. The backend gives, per head, one text per name, merged as
    engine.adjudicate does (the first `limit` distinct solutions in the prover's order, then per
    variable its distinct values in order of first appearance, one as str() gives it, several
    as `join` joins their str()), or None for a name the rule does not bind; a head the rule has no
    solution for has no entry. A rule index not asked for is not solved at all."""

    names: Mapping[int, tuple[str, ...]]
    limit: int
    join: Callable[[list[str]], str]


class Backend(Protocol):
    name: str

    def evaluate_many(self, chunk: Sequence[Facts]) -> list[Model]:
        """One Model per claim, in order (see the module docstring for what it must hold)."""
        ...


class PyDatalogBackend:
    """The per-claim path, behind the chunk interface: each claim evaluated on its own."""

    name = "pydatalog"

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator

    def evaluate_many(self, chunk: Sequence[Facts]) -> list[Model]:
        return [self.evaluator.evaluate(dict(facts)) for facts in chunk]
