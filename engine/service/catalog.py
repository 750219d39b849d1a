"""What the KB knows of rules, codes and tables, answered from a KB loaded in this process.

The KB lives on one dedicated thread (pyDatalog state is per thread; static relations such as
`code_category` are answered by the evaluator): every method here runs on that thread, called
through `Catalog.call`. Rows are read through the loaded store's keyed lookups and shown as
objects keyed by the attribute names the KB declares, so the columns come from the KB.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from engine import lookup
from engine.service.problems import ProblemError

T = TypeVar("T")

# The look-ups themselves live in engine/lookup.py, shared with `policykb rules` and `policykb code`.
PTP_STATUSES = lookup.PTP_STATUSES
Page = lookup.Page


class Catalog:
    """A KB on its own thread; `load()` starts loading it, `call(fn)` runs fn(self) there."""

    def __init__(self, kb_dir: Path | None, cache_dir: Path | None) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policykb-kb")
        self._args = (kb_dir, cache_dir)
        self.loaded: Future[None] | None = None
        self.kb: Any = None  # engine.api.PolicyKB
        self.load_seconds: float | None = None

    def load(self) -> Future[None]:
        if self.loaded is None:
            self.loaded = self._thread.submit(self._load)
        return self.loaded

    def _load(self) -> None:
        from engine.api import PolicyKB

        t0 = time.perf_counter()
        self.kb = PolicyKB.open(*self._args)
        store = self.kb.kb.store
        # Partners in both directions: the compiled rules only index pair edits by their first
        # column. Built once per table content, before any worker starts reading the same file.
        # The store has no public way to ask for an index yet; without one, lookups by the
        # second column still answer (a full scan), only slower.
        ensure_indexes = getattr(store, "_ensure_indexes", None)
        if ensure_indexes is not None:
            for relation, second in lookup.edit_columns(self.kb):
                if relation in store.tables:
                    ensure_indexes(relation, {(second,)})
        self.load_seconds = time.perf_counter() - t0

    @property
    def ready(self) -> bool:
        return self.loaded is not None and self.loaded.done() and self.loaded.exception() is None

    @property
    def failure(self) -> BaseException | None:
        return self.loaded.exception() if self.loaded is not None and self.loaded.done() else None

    async def call(self, fn: Callable[[Catalog], T]) -> T:
        """Wait for the KB, then run fn on its thread."""
        loaded = self.load()
        try:
            await asyncio.wrap_future(loaded)
        except Exception as exc:
            raise ProblemError(
                503,
                "kb-unavailable",
                "The KB could not be loaded",
                f"the KB failed to load: {type(exc).__name__}; run `policykb check`",
            ) from None
        return await asyncio.wrap_future(self._thread.submit(fn, self))

    def shutdown(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    # -- the KB as data (these run on the KB thread) ---------------------------------------

    def about(self) -> dict[str, Any]:
        """KB version, rule count and every table with its rows, digest and vintage."""
        loaded = self.kb.kb
        program = loaded.program
        headers = {m.path: _header_comment(m.lines) for m in program.modules}
        builds = {b.relation: b for b in loaded.store.builds}
        tables = []
        for name in sorted(loaded.store.tables):
            inp = program.inputs.get(name)
            build = builds.get(name)
            tables.append(
                {
                    "relation": name,
                    "file": loaded.store.table_files.get(name, ""),
                    "rows": build.rows if build else loaded.store.count(name),
                    "sha256": loaded.store.table_digests.get(name, ""),
                    "vintage": headers.get(inp.loc.path, "") if inp is not None else "",
                }
            )
        return {
            "version": loaded.version,
            "root": str(loaded.root),
            "rules": len(self.kb.adjudicator.rules),
            "tables": tables,
        }

    def rule_ids(self) -> list[str]:
        return lookup.rule_ids(self.kb)

    def rules(self) -> list[dict[str, Any]]:
        return lookup.rules(self.kb)

    def rule(self, rule_id: str) -> dict[str, Any]:
        try:
            return lookup.rule(self.kb, rule_id)
        except lookup.UnknownName:
            raise unknown_rule(rule_id, self.rule_ids()) from None

    def code(self, code: str, page: Page) -> dict[str, Any]:
        try:
            return lookup.code(self.kb, code, page)
        except lookup.UnknownName as exc:
            raise ProblemError(404, "unknown-code", "Unknown code", exc.detail) from None


def unknown_rule(rule_id: str, ids: list[str]) -> ProblemError:
    """404 with the rule ids a person most likely meant."""
    close = lookup.unknown_rule(rule_id, ids).suggestions
    hint = f"; did you mean {', '.join(close)}?" if close else "; GET /v1/rules lists them"
    return ProblemError(404, "unknown-rule", "Unknown rule", f"no rule with id {rule_id!r}{hint}", suggestions=close)


def _header_comment(lines: tuple[str, ...]) -> str:
    """The first sentence of the `//` comment a KB file opens with: what its tables are and when."""
    out: list[str] = []
    for line in lines:
        s = line.strip()
        if not s.startswith("//"):
            break
        out.append(s.lstrip("/").strip())
    text = " ".join(out)
    return text.split(". ")[0].rstrip(".") if text else ""
