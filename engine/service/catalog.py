"""What the KB knows of rules, codes and tables, answered from a KB loaded in this process.

The KB lives on one dedicated thread (pyDatalog state is per thread; static relations such as
`code_category` are answered by the evaluator): every method here runs on that thread, called
through `Catalog.call`. Rows are read through the loaded store's keyed lookups and shown as
objects keyed by the attribute names the KB declares, so the columns come from the KB.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.service.problems import ProblemError

T = TypeVar("T")

# The relations behind a code's summary. Other stored relations keyed by a Code-typed first
# column are listed under `tables` as they are.
PTP, MUE, AOC, AOC_PRIMARY = "ptp", "mue", "aoc_code", "aoc_primary"
DESCRIPTIONS = (("cpt_code", "description"), ("hcpcs", "long_description"), ("hcpcs", "short_description"))
CATEGORY, RANGES, KNOWN = "code_category", "in_range", "known_code"
PTP_STATUSES = ("all", "active", "deleted")


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int
    status: str


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
        # Partners in both directions: the compiled rules only index PTP by column 1. Built once
        # per table content, before any worker starts reading the same file. The store has no
        # public way to ask for an index yet; without one, lookups by column 2 still answer
        # (a full scan), only slower.
        ensure_indexes = getattr(store, "_ensure_indexes", None)
        if PTP in store.tables and ensure_indexes is not None:
            ensure_indexes(PTP, {(1,)})
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
        return sorted(self.kb.adjudicator.rules)

    def rules(self) -> list[dict[str, Any]]:
        return [self._rule_summary(rid) for rid in self.rule_ids()]

    def rule(self, rule_id: str) -> dict[str, Any]:
        if rule_id not in self.kb.adjudicator.rules:
            raise unknown_rule(rule_id, self.rule_ids())
        out = self._rule_summary(rule_id)
        clauses = [r for r in self.kb.kb.program.rules if r.rule_id == rule_id]
        out["annotations"] = [{"key": e.key, "value": e.value} for e in clauses[0].doc.entries]
        out["clauses"] = [{"text": r.text or str(r), "location": f"{r.loc.path}:{r.loc.line}"} for r in clauses]
        out["remedies"] = [e.value for e in clauses[0].doc.entries if e.key == "remedy"]
        return out

    def _rule_summary(self, rule_id: str) -> dict[str, Any]:
        rule = self.kb.adjudicator.rules[rule_id].rule
        doc = rule.doc
        return {
            "id": rule_id,
            "title": doc.get("title") or rule_id,
            "kind": doc.get("kind") or "policy",
            "outcome": rule.head.pred,
            "severity": doc.get("severity") or rule.head.pred,
            "group": doc.get("group") or "",
            "carc": doc.get("carc") or "",
            "rarc": (doc.get("rarc") or "").split(),
            "message": doc.get("message") or "",
            "sources": [e.value for e in doc.entries if e.key == "source"],
            "location": f"{rule.loc.path}:{rule.loc.line}",
        }

    def code(self, code: str, page: Page) -> dict[str, Any]:
        code = code.strip().upper()
        ev = self.kb.evaluator
        store = self.kb.kb.store
        program = self.kb.kb.program

        def rows(relation: str, position: int = 0) -> list[dict[str, Any]]:
            if not store.has(relation) or relation not in program.decls:
                return []
            names = [a.name for a in program.decls[relation].attrs]
            return [dict(zip(names, row, strict=True)) for row in store.lookup(relation, (position,), (code,))]

        def static(relation: str) -> list[tuple]:
            if relation not in self.kb.kb.compiled.kinds:
                return []
            args: tuple[Any, ...] = (code,) + (None,) * (len(program.decls[relation].attrs) - 1)
            return [row for _src, row in ev.lookup(relation, args)]

        tables: dict[str, list[dict[str, Any]]] = {}
        for name in sorted(store.tables):
            decl = program.decls.get(name)
            if name in (PTP, AOC_PRIMARY) or decl is None or not decl.attrs or decl.attrs[0].type != "Code":
                continue
            found = rows(name)
            if found:
                tables[name] = found
        description = next(
            (str(t[0][col]) for rel, col in DESCRIPTIONS if (t := tables.get(rel)) and t[0].get(col)), ""
        )
        mue = tables.get(MUE, [None])[0]
        aoc = tables.get(AOC, [None])[0]
        primaries = sorted(str(r["primary_code"]) for r in rows(AOC_PRIMARY, 0))
        primary_of = sorted(str(r["add_on_code"]) for r in rows(AOC_PRIMARY, 1))
        as_1, as_2 = _partners(rows(PTP, 0), "column_2", page), _partners(rows(PTP, 1), "column_1", page)
        ptp = {"offset": page.offset, "limit": page.limit, "status": page.status, "column_1": as_1, "column_2": as_2}
        known = bool(static(KNOWN))
        if not known and not tables and not primary_of and not as_1["total"] and not as_2["total"]:
            raise ProblemError(
                404, "unknown-code", "Unknown code", f"the KB has no code list entry and no table row naming {code}"
            )
        category = next((str(r[1]) for r in static(CATEGORY)), None)
        return {
            "code": code,
            "known": known,
            "description": description,
            "category": category,
            "ranges": sorted(str(r[1]) for r in static(RANGES)),
            "mue": ({"value": mue["mue_value"], "mai": mue["mai"], "rationale": mue["rationale"]} if mue else None),
            "add_on": ({"edit_type": aoc["edit_type"], "primaries": primaries} if aoc else None),
            "primary_for": primary_of,
            "ptp": ptp,
            "tables": tables,
        }


def _partners(found: list[dict[str, Any]], partner_col: str, page: Page) -> dict[str, Any]:
    """One direction of PTP partners, active rows first, then by partner code; one page of them."""
    active = [r for r in found if r["deletion_date"] == ""]
    chosen = (
        found
        if page.status == "all"
        else active
        if page.status == "active"
        else [r for r in found if r["deletion_date"] != ""]
    )
    chosen = sorted(chosen, key=lambda r: (r["deletion_date"] != "", r[partner_col], r["deletion_date"]))
    items = [
        {
            "partner": r[partner_col],
            "column_1": r["column_1"],
            "column_2": r["column_2"],
            "modifier_indicator": r["modifier_indicator"],
            "deletion_date": r["deletion_date"] or None,
            "active": r["deletion_date"] == "",
            "rationale": r["rationale"],
        }
        for r in chosen[page.offset : page.offset + page.limit]
    ]
    end = page.offset + len(items)
    return {
        "total": len(chosen),
        "active": len(active),
        "items": items,
        "next_offset": end if end < len(chosen) else None,
    }


def unknown_rule(rule_id: str, ids: list[str]) -> ProblemError:
    """404 with the rule ids a person most likely meant."""
    close = difflib.get_close_matches(rule_id, ids, n=5, cutoff=0.6)
    stem = rule_id.split(".")[0]
    close += [i for i in ids if i.startswith(stem + ".") and i not in close][: max(0, 5 - len(close))]
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
