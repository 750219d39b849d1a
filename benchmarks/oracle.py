"""The floor and the correctness oracle: NCCI PTP, MUE and add-on checks in plain Python over
dicts of the shipped tables.

Semantics (the KB's NCCI rules follow the same):
- Only the claim's own lines can be denied; history lines (same patient, already adjudicated)
  are partners and count toward MUE sums. Same encounter = same rendering NPI and service date.
- PTP: current line B (code c2) is denied when another line A (current with a different line
  number, or history) of the same encounter has code c1, and a (c1, c2) row is in force on B's
  date (deletion_date "" or dos <= it; effective_date "" or dos >= it) with indicator != 9 and
  is not bypassed. Bypass only for indicator 1: B has an NCCI-associated non-anatomic modifier,
  or A has 59/XE/XS/XP/XU, or B has anatomic mb and A anatomic ma != mb with mb not on A;
  except that 59/XE/XS/XP/XU (on either line) never separate an E/M column 2 code
  (99201-99499): NCCI lets only 25 do that (NCCI Policy Manual ch. I, modifier 59).
- MUE: MAI 1 each line alone (units > value); MAI 2/3 the units of the code over all current
  and history lines of the encounter are summed, over the value denies every current line of
  that code in the encounter.
- AOC: edit type 1 add-on denied when no other line of the encounter has one of its primaries.

`check(claim)` returns {line_number: sorted NCCI kinds that deny it} (lines with no NCCI
denial are absent).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmarks.tables import NcciTables, shared_tables
from engine.claims import Claim

PTP, MUE, AOC = "ncci_ptp", "ncci_mue", "ncci_aoc"
NCCI_KINDS = (PTP, MUE, AOC)


def is_em(code: str) -> bool:
    """An E/M code: the CPT range 99201-99499."""
    return len(code) == 5 and code.isdigit() and "99201" <= code <= "99499"


def result_dict(claim: Claim, denied: dict[int, list[str]]) -> dict[str, Any]:
    """A baseline's per-line NCCI kinds in PolicyKB's result shape (decision + reasons per line)."""
    return {
        "claim": claim.id,
        "lines": [
            {
                "line": ln.line,
                "code": ln.code,
                "decision": "deny" if denied.get(ln.line) else "pay",
                "reasons": [{"rule": k, "kind": k, "severity": "deny"} for k in denied.get(ln.line, [])],
            }
            for ln in claim.lines
        ],
    }


class Oracle:
    def __init__(self, tables: NcciTables) -> None:
        self.t = tables
        self.col2_bypass = tables.bypass_on_column2
        self.col1_bypass = tables.distinct_service
        self.anatomic = tables.anatomic

    def _bypassed(self, mods_b: frozenset[str], mods_a: frozenset[str], c2: str) -> bool:
        if is_em(c2):
            if mods_b & (self.col2_bypass - self.col1_bypass):
                return True
        elif mods_b & self.col2_bypass or mods_a & self.col1_bypass:
            return True
        anat_b = mods_b & self.anatomic
        anat_a = mods_a & self.anatomic
        # some mb on B, not on A, with an anatomic ma on A (ma != mb holds since mb not on A)
        return bool(anat_a) and bool(anat_b - mods_a)

    def _ptp_denies(self, dos: str, c1: str, c2: str, mods_b: frozenset[str], mods_a: frozenset[str]) -> bool:
        for eff, dele, mi in self.t.ptp_rows(c1, c2):
            if mi == 9 or (dele and dos > dele) or (eff and dos < eff):
                continue
            if mi != 1 or not self._bypassed(mods_b, mods_a, c2):
                return True
        return False

    def check(self, claim: Claim) -> dict[int, list[str]]:
        t = self.t
        # service = (key, code, units, modifiers, is_current, line_number)
        encounters: dict[tuple[str, str], list[tuple[Any, str, int, frozenset[str], bool]]] = defaultdict(list)
        for ln in claim.lines:
            if ln.service_date < t.min_dos:
                raise ValueError(
                    f"{claim.id} line {ln.line}: date {ln.service_date} is before "
                    f"{t.min_dos}, the oldest date the loaded PTP rows cover"
                )
            encounters[(ln.rendering_npi, ln.service_date)].append(
                (ln.line, ln.code, ln.units, frozenset(ln.modifiers), True)
            )
        for h in claim.history:
            key = (h.rendering_npi, h.service_date)
            if key in encounters:  # history elsewhere cannot touch a current line
                encounters[key].append((("h", h.claim_id, h.line), h.code, h.units, frozenset(h.modifiers), False))
        denied: dict[int, set[str]] = defaultdict(set)
        for (_npi, dos), svcs in encounters.items():
            units_by_code: dict[str, int] = defaultdict(int)
            for _k, code, units, _m, _cur in svcs:
                units_by_code[code] += units
            for kb_, c2, units, mods_b, current in svcs:
                if not current:
                    continue
                # PTP
                for ka, c1, _u, mods_a, _c in svcs:
                    if ka != kb_ and self._ptp_denies(dos, c1, c2, mods_b, mods_a):
                        denied[kb_].add(PTP)
                        break
                # MUE
                mue = t.mue.get(c2)
                if mue is not None:
                    value, mai = mue
                    total = units if mai == 1 else units_by_code[c2]
                    if total > value:
                        denied[kb_].add(MUE)
                # AOC
                if t.aoc_code.get(c2) == 1:
                    primaries = t.aoc_primary.get(c2, frozenset())
                    if not any(ka != kb_ and code in primaries for ka, code, _u, _m, _c in svcs):
                        denied[kb_].add(AOC)
        return {line: sorted(kinds) for line, kinds in sorted(denied.items())}

    def result(self, claim: Claim) -> dict[str, Any]:
        """A result dict in PolicyKB's shape (decision + reasons per line), for run_batch."""
        return result_dict(claim, self.check(claim))


def make_worker():
    """Worker factory for engine.batch.run_batch (tables shared by fork when preloaded)."""
    return Oracle(shared_tables()).result


def ncci_kinds_of_result(result: dict[str, Any]) -> dict[int, list[str]]:
    """The NCCI kinds per line in a PolicyKB-shaped result, whatever the line's decision and
    whether or not a later policy overrode the reason (`overridden_by`)."""
    out: dict[int, list[str]] = {}
    for ln in result.get("lines", []):
        kinds = sorted({r.get("kind") for r in ln.get("reasons", []) if r.get("kind") in NCCI_KINDS})
        if kinds:
            out[int(ln["line"])] = kinds
    return out
