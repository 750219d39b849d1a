"""Adjudication off the event loop: a pool of worker processes, each loading the KB once.

pyDatalog holds the GIL and keeps its state per thread, so claims run in processes (spawned,
not forked: the server has threads and an open socket). Each worker opens the KB in its
initializer, so a request pays only for its claim. With N workers, one slow claim occupies one
worker and the others keep answering. A pool whose worker died is replaced on the next request.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from engine.claims import Claim

_KB: Any = None  # the worker's engine.api.PolicyKB


def _init(kb_dir: str | None, cache_dir: str | None) -> None:
    global _KB
    from engine.api import PolicyKB

    _KB = PolicyKB.open(kb_dir, cache_dir)


def _ready() -> dict[str, object]:
    return {"pid": os.getpid(), "kb": _KB.version}


def _adjudicate(claim: Claim, proofs: bool, remedies: bool) -> dict[str, object]:
    return _KB.adjudicate(claim, proofs=proofs, remedies=remedies).to_dict()


def _why_not(claim: Claim, line: int, rule: str) -> dict[str, object]:
    return _KB.why_not(claim, line, rule).to_dict()


class WorkerPool:
    """N worker processes behind an asyncio-friendly `call`."""

    def __init__(self, workers: int, kb_dir: str | None, cache_dir: str | None) -> None:
        self.size = workers
        self._args = (kb_dir, cache_dir)
        self._executor: ProcessPoolExecutor | None = None
        self.ready = 0  # workers that answered since the pool started
        self.restarts = 0
        self._lock = threading.Lock()

    def _start(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.size,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init,
                    initargs=self._args,
                )
            return self._executor

    def warm_blocking(self) -> None:
        """Start every worker and wait until each has its KB loaded (call off the event loop)."""
        executor = self._start()
        futures = [executor.submit(_ready) for _ in range(self.size)]
        self.ready = sum(1 for f in futures if f.exception() is None)

    async def adjudicate(self, claim: Claim, *, proofs: bool, remedies: bool) -> dict[str, object]:
        return await self._call(_adjudicate, claim, proofs, remedies)

    async def why_not(self, claim: Claim, line: int, rule: str) -> dict[str, object]:
        return await self._call(_why_not, claim, line, rule)

    async def _call(self, fn: Any, *args: Any) -> dict[str, object]:
        executor = self._start()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except BrokenProcessPool:
            # a worker died (killed, out of memory, or the KB failed to load): start afresh next time
            self._executor = None
            self.ready = 0
            self.restarts += 1
            executor.shutdown(wait=False, cancel_futures=True)
            from engine.service.problems import ProblemError  # not at the top: workers need no FastAPI

            raise ProblemError(
                503,
                "workers-unavailable",
                "Workers unavailable",
                "an adjudication worker stopped; the pool is being restarted, retry the request",
                headers={"Retry-After": "2"},
            ) from None

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
