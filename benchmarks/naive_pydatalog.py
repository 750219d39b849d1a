"""Baseline (b): the naive use of pyDatalog. Every table row is asserted into pyDatalog as a
fact, through the engine-level API (pyEngine.Clause / Literal / assert_, never load/ask on
text); the NCCI rules are pyDatalog clauses built with its Python operator API (no text
either); per claim the claim's facts are asserted, `deny(Line, Kind)` is asked, and the claim's
facts are retracted.

Asserting the full 2.5M-row PTP table this way takes minutes and gigabytes (see
/work/shared/notes/pydatalog.md), so the benchmark loads a SLICE: every PTP row of the pairs
the corpus can touch (so decisions stay comparable with the oracle), topped up with other rows
in file order to `ptp_rows`, plus all MUE and add-on rows. Load time and memory for the full
table are extrapolated linearly from the slice and labelled as such.

Values are encoded deliberately (pyDatalog traps): line ids are strings ("L3", "h0") so `!=`
never compares an int with a str; dates are integers YYYYMMDD, an empty deletion date is
99999999 and an empty effective date 0.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from benchmarks.oracle import AOC, MUE, PTP, is_em, result_dict
from benchmarks.tables import NcciTables, shared_tables
from engine.claims import Claim

NO_DELETION = 99999999
DEFAULT_SLICE = 50_000

_TABLE_PREDS = {"ptp": 5, "mue": 3, "aoc": 2, "aoc_primary": 2, "role": 2}
_CLAIM_PREDS = {"cur": 5, "hist": 5, "mod": 2}


def _date(s: str, empty: int) -> int:
    return int(s.replace("-", "")) if s else empty


def relevant_pairs(claims: Iterable[Claim]) -> set[tuple[str, str]]:
    """Every (column 1, column 2) code pair whose rows a claim of `claims` could use."""
    pairs: set[tuple[str, str]] = set()
    for claim in claims:
        enc: dict[tuple[str, str], list[tuple[str, bool]]] = {}
        for ln in claim.lines:
            enc.setdefault((ln.rendering_npi, ln.service_date), []).append((ln.code, True))
        for h in claim.history:
            key = (h.rendering_npi, h.service_date)
            if key in enc:
                enc[key].append((h.code, False))
        for svcs in enc.values():
            for c2, current in svcs:
                if current:
                    pairs.update((c1, c2) for c1, _ in svcs)
    return pairs


def slice_rows(tables: NcciTables, pairs: set[tuple[str, str]], size: int) -> list[tuple[str, str, int, int, int]]:
    """The PTP slice: rows of `pairs` first, then other rows in table order up to `size`."""
    rows: list[tuple[str, str, int, int, int]] = []
    for c1, c2 in sorted(pairs):
        for eff, dele, mi in tables.ptp_rows(c1, c2):
            rows.append((c1, c2, _date(eff, 0), _date(dele, NO_DELETION), mi))
    if len(rows) < size:
        for c1, inner in tables.ptp.items():
            for c2, rs in inner.items():
                if (c1, c2) in pairs:
                    continue
                for eff, dele, mi in rs:
                    rows.append((c1, c2, _date(eff, 0), _date(dele, NO_DELETION), mi))
                if len(rows) >= size:
                    break
            if len(rows) >= size:
                break
    return rows


class NaivePyDatalog:
    """Holds the process's pyDatalog logic (its state is per thread: one instance per worker)."""

    def __init__(
        self, tables: NcciTables, ptp_rows: list[tuple[str, str, int, int, int]], checkpoint: int | None = None
    ) -> None:
        from pyDatalog import Logic as _Logic  # noqa: F401  (initialises pyEngine.Logic)
        from pyDatalog import pyDatalog, pyEngine

        self.E = pyEngine
        self._logic = pyDatalog.Logic()  # a fresh logic, current for this thread
        for name, arity in {**_TABLE_PREDS, **_CLAIM_PREDS}.items():
            pyEngine.insert(pyEngine.Pred(name, arity))
        self._rules()
        self.stats: dict[str, Any] = {}
        started = time.perf_counter()
        rss0 = _rss_mb()
        for m, roles in sorted(tables.roles.items()):
            for r in sorted(roles):
                self._fact("role", (m, r))
        for code, (value, mai) in tables.mue.items():
            self._fact("mue", (code, value, mai))
        for code, et in tables.aoc_code.items():
            self._fact("aoc", (code, et))
        for code, prims in tables.aoc_primary.items():
            for p in sorted(prims):
                self._fact("aoc_primary", (code, p))
        other_s = time.perf_counter() - started
        rss1 = _rss_mb()
        t_ptp = time.perf_counter()
        marks = []
        for i, row in enumerate(ptp_rows, start=1):
            self._fact("ptp", row)
            if checkpoint and i == checkpoint:
                marks.append((i, time.perf_counter() - t_ptp, _rss_mb() - rss1))
        ptp_s = time.perf_counter() - t_ptp
        marks.append((len(ptp_rows), ptp_s, _rss_mb() - rss1))
        self.stats = {
            "ptp_rows": len(ptp_rows),
            "mue_rows": len(tables.mue),
            "aoc_rows": len(tables.aoc_code) + sum(len(p) for p in tables.aoc_primary.values()),
            "load_other_s": other_s,
            "load_ptp_s": ptp_s,
            "load_s": other_s + ptp_s,
            "rss_other_mb": rss1 - rss0,
            "ptp_marks": marks,
        }

    def _fact(self, name: str, values: tuple) -> Any:
        E = self.E
        clause = E.Clause(E.Literal(name, [E.Const(v) for v in values]), [])
        E.assert_(clause)
        return clause

    def _rules(self) -> None:
        from pyDatalog import pyParser

        T = pyParser.Term
        (A, B, C, C1, C2, D, Dl, E_, I, M, Ma, Mb, Mi, N, P, S, U, U2, V) = (
            T(n)
            for n in [
                "A",
                "B",
                "C",
                "C1",
                "C2",
                "D",
                "Dl",
                "E",
                "I",
                "M",
                "Ma",
                "Mb",
                "Mi",
                "N",
                "P",
                "S",
                "U",
                "U2",
                "V",
            ]
        )
        cur, hist, mod, svc = T("cur"), T("hist"), T("mod"), T("svc")
        ptp, mue, aoc, aoc_primary, role = (T("ptp"), T("mue"), T("aoc"), T("aoc_primary"), T("role"))
        live, bypass, col2_bypass, deny = T("live"), T("bypass"), T("col2_bypass"), T("deny")
        total, has_primary, sum_ = T("total"), T("has_primary"), T("sum_")

        svc(I, C, D, N, U) <= cur(I, C, D, N, U)
        svc(I, C, D, N, U) <= hist(I, C, D, N, U)
        # PTP (positive literals first, bound-first; comparisons after their variables).
        live(B, A, Mi) <= (
            cur(B, C2, D, N, U)
            & svc(A, C1, D, N, U2)
            & (A != B)
            & ptp(C1, C2, E_, Dl, Mi)
            & (Mi != 9)
            & (D >= E_)
            & (D <= Dl)
        )
        col2_bypass(M) <= role(M, "ncci_associated") & ~role(M, "anatomic")
        em = T("em")
        bypass(B, A) <= live(B, A, 1) & mod(B, M) & col2_bypass(M) & ~role(M, "distinct_service")
        bypass(B, A) <= (live(B, A, 1) & mod(B, M) & role(M, "distinct_service") & cur(B, C2, D, N, U) & ~em(C2))
        bypass(B, A) <= (live(B, A, 1) & mod(A, M) & role(M, "distinct_service") & cur(B, C2, D, N, U) & ~em(C2))
        bypass(B, A) <= (
            live(B, A, 1)
            & mod(B, Mb)
            & role(Mb, "anatomic")
            & mod(A, Ma)
            & role(Ma, "anatomic")
            & (Ma != Mb)
            & ~mod(A, Mb)
        )
        deny(B, PTP) <= live(B, A, 0)
        deny(B, PTP) <= live(B, A, 1) & ~bypass(B, A)
        # MUE
        deny(B, MUE) <= cur(B, C, D, N, U) & mue(C, V, 1) & (U > V)
        (total[C, D, N] == sum_(U, for_each=I)) <= svc(I, C, D, N, U)
        deny(B, MUE) <= (cur(B, C, D, N, U) & mue(C, V, M) & (M >= 2) & (total[C, D, N] == S) & (S > V))
        # AOC
        has_primary(B) <= (cur(B, C, D, N, U) & aoc(C, 1) & svc(A, P, D, N, U2) & (A != B) & aoc_primary(C, P))
        deny(B, AOC) <= cur(B, C, D, N, U) & aoc(C, 1) & ~has_primary(B)

    def check(self, claim: Claim) -> dict[int, list[str]]:
        E = self.E
        E.Logic.tl.logic = self._logic  # another logic may have become current meanwhile
        handles = []
        for ln in claim.lines:
            lid = f"L{ln.line}"
            handles.append(self._fact("cur", (lid, ln.code, _date(ln.service_date, 0), ln.rendering_npi, ln.units)))
            if is_em(ln.code):
                handles.append(self._fact("em", (ln.code,)))
            handles += [self._fact("mod", (lid, m)) for m in set(ln.modifiers)]
        for i, h in enumerate(claim.history):
            hid = f"h{i}"
            handles.append(self._fact("hist", (hid, h.code, _date(h.service_date, 0), h.rendering_npi, h.units)))
            handles += [self._fact("mod", (hid, m)) for m in set(h.modifiers)]
        try:
            answers = E.Literal("deny", [E.Var("B"), E.Var("K")]).ask() or []
        finally:
            for clause in handles:
                E.retract(clause)
        denied: dict[int, set[str]] = {}
        for lid, kind in answers:
            denied.setdefault(int(lid[1:]), set()).add(kind)
        return {line: sorted(k) for line, k in sorted(denied.items())}

    def result(self, claim: Claim) -> dict[str, Any]:
        return result_dict(claim, self.check(claim))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# Set by the benchmark before workers fork: the slice every worker loads.
SLICE: list[tuple[str, str, int, int, int]] = []


def make_worker():
    """Worker factory for run_batch: each worker asserts the slice itself (pyDatalog state is
    per process and per thread, so it cannot be shared), which is part of the measured time."""
    return NaivePyDatalog(shared_tables(), SLICE).result
