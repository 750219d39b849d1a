"""Evaluation backends for the compiled program: the same IR, two ways of running it.

- `pydatalog` (engine/evaluate.py through engine/datalog.py): one claim at a time, top-down,
  with the per-claim model the prover rebuilds proofs over. `explain`, `--why-not`, remedies and
  the policy cases use it.
- `duckdb` (engine/backends/duckdb.py): a whole chunk of claims at once, set-at-a-time in SQL,
  every claim-dependent relation carrying a hidden claim key. `scrub` uses it by default.

The interface both honour: given a chunk of claims' facts, return one `Model` per claim holding
at least the claim relations, the outcome relations (`deny`, `warn`, `overridden`) and, for a
claim that has outcome rows, every claim-dependent relation an outcome rule's body reads (what
the adjudicator needs to fill a reason's message from its bindings). Stages above see a Model
and cannot tell which backend produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.claims import Facts
from engine.compiler import CompiledProgram
from engine.evaluate import Evaluator, Model
from engine.ir import IAtom, RelKind

ENGINES = ("duckdb", "pydatalog", "both")
DEFAULT_ENGINE = "duckdb"
OUTCOMES = ("deny", "warn", "overridden")
# Claims a set-at-a-time backend decides in one pass: each pass has a fixed cost (a few dozen
# statements), so chunks must be large; small enough that a worker's chunk stays in memory.
CHUNK_CLAIMS = 2000


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


def message_relations(cp: CompiledProgram) -> set[str]:
    """Claim-dependent relations read by the body of an outcome rule: the adjudicator re-solves
    those bodies to fill each reason's message, so a batch backend must hand their rows over."""
    out: set[str] = set()
    for rule in cp.rules:
        if rule.head.relation not in OUTCOMES:
            continue
        for lit in rule.body:
            if isinstance(lit, IAtom) and cp.kinds.get(lit.relation) in (RelKind.DYNAMIC, RelKind.AGGREGATE):
                out.add(lit.relation)
    return out
