"""Baseline (c): clingo running the same NCCI rules as ASP, with only the claim's relevant
table rows injected (looked up from the dict indexes, as PolicyKB does with its store).

Per claim: a fresh clingo.Control, the rules plus the claim's facts as text, ground, solve (the
program is stratified, so there is exactly one model). Dates are integers YYYYMMDD; an empty
deletion date is 99999999 and an empty effective date 0, so "in force" is two comparisons.
"""

from __future__ import annotations

from typing import Any

from benchmarks.oracle import AOC, MUE, PTP, is_em, result_dict
from benchmarks.tables import NcciTables, shared_tables
from engine.claims import Claim

RULES = """
svc(I,C,D,N,U) :- cur(I,C,D,N,U).
svc(I,C,D,N,U) :- hist(I,C,D,N,U).

% PTP: B (current, column 2) with a partner A (column 1) in the same encounter.
live(B,A,Mi) :- cur(B,C2,D,N,_), svc(A,C1,D,N,_), A != B,
                ptp(C1,C2,E,Dl,Mi), Mi != 9, D >= E, D <= Dl.
col2_bypass(M) :- role(M,ncci_associated), not role(M,anatomic).
bypass(B,A) :- live(B,A,1), mod(B,M), col2_bypass(M), not role(M,distinct_service).
bypass(B,A) :- live(B,A,1), mod(B,M), role(M,distinct_service), cur(B,C2,_,_,_), not em(C2).
bypass(B,A) :- live(B,A,1), mod(A,M), role(M,distinct_service), cur(B,C2,_,_,_), not em(C2).
bypass(B,A) :- live(B,A,1), mod(B,Mb), role(Mb,anatomic), mod(A,Ma), role(Ma,anatomic),
               Ma != Mb, not mod(A,Mb).
deny(B,ncci_ptp) :- live(B,_,0).
deny(B,ncci_ptp) :- live(B,A,1), not bypass(B,A).

% MUE: MAI 1 per line; MAI 2/3 summed over the encounter's current and history lines.
deny(B,ncci_mue) :- cur(B,C,_,_,U), mue(C,V,1), U > V.
total(C,D,N,T) :- cur(_,C,D,N,_), mue(C,_,M), M >= 2, T = #sum{ U,I : svc(I,C,D,N,U) }.
deny(B,ncci_mue) :- cur(B,C,D,N,_), mue(C,V,M), M >= 2, total(C,D,N,T), T > V.

% AOC: a type 1 add-on needs one of its primaries on another line of the encounter.
has_primary(B) :- cur(B,C,D,N,_), aoc(C,1), svc(A,P,D,N,_), A != B, aoc_primary(C,P).
deny(B,ncci_aoc) :- cur(B,C,_,_,_), aoc(C,1), not has_primary(B).

#defined em/1.
#show deny/2.
"""

NO_DELETION = 99999999


def _date(s: str, empty: int) -> int:
    return int(s.replace("-", "")) if s else empty


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ClingoChecker:
    def __init__(self, tables: NcciTables) -> None:
        import clingo  # optional dependency (the `bench` extra)

        self.clingo = clingo
        self.t = tables
        roles = [f"role({_q(m)},{r})." for m, rs in sorted(tables.roles.items()) for r in sorted(rs)]
        self.static = RULES + "\n".join(roles) + "\n"

    def facts(self, claim: Claim) -> str:
        """The claim and exactly the table rows its lines can touch."""
        t = self.t
        out: list[str] = []
        by_enc: dict[tuple[str, str], list[tuple[str, bool]]] = {}
        for ln in claim.lines:
            d = _date(ln.service_date, 0)
            out.append(f"cur({ln.line},{_q(ln.code)},{d},{_q(ln.rendering_npi)},{ln.units}).")
            out += [f"mod({ln.line},{_q(m)})." for m in ln.modifiers]
            by_enc.setdefault((ln.rendering_npi, ln.service_date), []).append((ln.code, True))
        for i, h in enumerate(claim.history):
            key = (h.rendering_npi, h.service_date)
            if key not in by_enc:
                continue
            d = _date(h.service_date, 0)
            out.append(f"hist(h({i}),{_q(h.code)},{d},{_q(h.rendering_npi)},{h.units}).")
            out += [f"mod(h({i}),{_q(m)})." for m in h.modifiers]
            by_enc[key].append((h.code, False))
        codes: set[str] = set()
        pairs: set[tuple[str, str]] = set()
        for svcs in by_enc.values():
            for c2, current in svcs:
                if current:
                    codes.add(c2)
                    pairs.update((c1, c2) for c1, _ in svcs)
        for c1, c2 in sorted(pairs):
            for eff, dele, mi in t.ptp_rows(c1, c2):
                out.append(f"ptp({_q(c1)},{_q(c2)},{_date(eff, 0)},{_date(dele, NO_DELETION)},{mi}).")
        for c in sorted(codes):
            if is_em(c):
                out.append(f"em({_q(c)}).")
            mue = t.mue.get(c)
            if mue is not None:
                out.append(f"mue({_q(c)},{mue[0]},{mue[1]}).")
            et = t.aoc_code.get(c)
            if et is not None:
                out.append(f"aoc({_q(c)},{et}).")
                out += [f"aoc_primary({_q(c)},{_q(p)})." for p in sorted(t.aoc_primary.get(c, ()))]
        return "\n".join(out)

    def check(self, claim: Claim) -> dict[int, list[str]]:
        ctl = self.clingo.Control(["--warn=none"])
        ctl.add("base", [], self.static + self.facts(claim))
        ctl.ground([("base", [])])
        denied: dict[int, set[str]] = {}
        kinds = {"ncci_ptp": PTP, "ncci_mue": MUE, "ncci_aoc": AOC}

        def on_model(model) -> None:
            for sym in model.symbols(shown=True):
                line, kind = sym.arguments
                denied.setdefault(line.number, set()).add(kinds[kind.name])

        ctl.solve(on_model=on_model)
        return {line: sorted(k) for line, k in sorted(denied.items())}

    def result(self, claim: Claim) -> dict[str, Any]:
        return result_dict(claim, self.check(claim))


def make_worker():
    return ClingoChecker(shared_tables()).result
