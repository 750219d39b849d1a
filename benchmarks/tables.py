"""The shipped NCCI tables as plain Python dicts, shared by the oracle, the baselines and the
corpus generator.

The PTP table has 2.5M rows; only rows that can be in force on a date of service on or after
`min_dos` are kept (every active row, plus deleted rows whose deletion date is on or after it),
so a 2024 corpus needs the 1.67M active rows and a few hundred deleted ones. Rows are stored as
nested dicts `ptp[column_1][column_2] -> ((effective_date, deletion_date, modifier_indicator), ...)`
with the row tuples shared between pairs: a flat dict keyed by (c1, c2) tuples would spend
~60 bytes more per pair on the key tuple alone.
"""

from __future__ import annotations

import csv
import gzip
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KB_DIR = REPO / "kb"
TABLES = KB_DIR / "tables"

DEFAULT_MIN_DOS = "2024-01-01"

PtpRow = tuple[str, str, int]  # (effective_date, deletion_date, modifier_indicator); "" = none


@dataclass(slots=True)
class NcciTables:
    ptp: dict[str, dict[str, tuple[PtpRow, ...]]]
    mue: dict[str, tuple[int, int]]  # code -> (mue_value, mai)
    aoc_code: dict[str, int]  # add-on code -> edit_type
    aoc_primary: dict[str, frozenset[str]]  # add-on code -> primary codes
    roles: dict[str, frozenset[str]]  # modifier -> roles (kb/codes/modifiers.dl)
    min_dos: str
    ptp_rows_read: int = 0
    ptp_rows_kept: int = 0
    ptp_pairs: int = 0
    load_s: float = 0.0
    # Small, deterministic samples of PTP pairs for the corpus generator (file order, strided).
    samples: dict[str, list[tuple[str, str, PtpRow]]] = field(default_factory=dict)

    def ptp_rows(self, c1: str, c2: str) -> tuple[PtpRow, ...]:
        inner = self.ptp.get(c1)
        if inner is None:
            return ()
        return inner.get(c2, ())

    def roles_of(self, modifier: str) -> frozenset[str]:
        return self.roles.get(modifier, frozenset())

    @property
    def bypass_on_column2(self) -> frozenset[str]:
        """NCCI-associated modifiers that are not anatomic: bypass when on the column 2 line."""
        return frozenset(m for m, r in self.roles.items() if "ncci_associated" in r and "anatomic" not in r)

    @property
    def distinct_service(self) -> frozenset[str]:
        """59 and the X modifiers: also honoured on the column 1 line."""
        return frozenset(m for m, r in self.roles.items() if "distinct_service" in r)

    @property
    def anatomic(self) -> frozenset[str]:
        return frozenset(m for m, r in self.roles.items() if "anatomic" in r)


_ROLE = re.compile(r'^\s*modifier_role\(\s*"([^"]+)"\s*,\s*"([^"]+)"\s*\)\s*\.', re.M)

SAMPLE_CAP = 4000  # pairs kept per sample category


def read_roles(path: Path = KB_DIR / "codes" / "modifiers.dl") -> dict[str, frozenset[str]]:
    roles: dict[str, set[str]] = {}
    for m, role in _ROLE.findall(path.read_text(encoding="utf-8")):
        roles.setdefault(m, set()).add(role)
    return {m: frozenset(r) for m, r in roles.items()}


def _csv_rows(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = next(reader)
        yield header
        yield from reader


def load_ptp(min_dos: str, tables: Path = TABLES):
    """Read the PTP table; returns (ptp, rows_read, rows_kept, samples)."""
    rows = _csv_rows(tables / "ncci_ptp_practitioner.csv.gz")
    header = next(rows)
    expect = ["column_1", "column_2", "effective_date", "deletion_date", "modifier_indicator"]
    if header[:5] != expect:
        raise ValueError(f"unexpected PTP header {header}")
    ptp: dict[str, dict[str, tuple[PtpRow, ...]]] = {}
    shared: dict[PtpRow, PtpRow] = {}
    singles: dict[PtpRow, tuple[PtpRow, ...]] = {}
    intern = sys.intern
    read = kept = 0
    # Strided samples per category, for the generator: deterministic in file order.
    samples: dict[str, list[tuple[str, str, PtpRow]]] = {"mi0": [], "mi1": [], "mi9": [], "deleted": []}
    seen = {"mi0": 0, "mi1": 0, "mi9": 0}
    stride = {"mi0": 191, "mi1": 421, "mi9": 23}
    for c1, c2, eff, dele, mi, *_ in rows:
        read += 1
        if dele and dele < min_dos:
            # Not in force in the corpus's dates; mi 9 rows are all of this kind in 2024 Q3.
            if mi == "9" and len(samples["mi9"]) < SAMPLE_CAP:
                seen["mi9"] += 1
                if seen["mi9"] % stride["mi9"] == 0:
                    samples["mi9"].append((c1, c2, (eff, dele, 9)))
            continue
        kept += 1
        row = (eff, dele, int(mi))
        row = shared.setdefault(row, row)
        inner = ptp.get(c1)
        if inner is None:
            inner = ptp[intern(c1)] = {}
        c2 = intern(c2)
        prev = inner.get(c2)
        if prev is None:
            one = singles.get(row)
            if one is None:
                one = singles[row] = (row,)
            inner[c2] = one
        else:
            inner[c2] = prev + (row,)
        if dele:
            samples["deleted"].append((c1, c2, row))
        elif row[2] != 9:
            cat = f"mi{row[2]}"
            seen[cat] += 1
            if seen[cat] % stride[cat] == 0 and len(samples[cat]) < SAMPLE_CAP:
                samples[cat].append((c1, c2, row))
    return ptp, read, kept, samples


def load_mue(tables: Path = TABLES) -> dict[str, tuple[int, int]]:
    rows = _csv_rows(tables / "ncci_mue_practitioner.csv")
    header = next(rows)
    if header[:3] != ["code", "mue_value", "mai"]:
        raise ValueError(f"unexpected MUE header {header}")
    return {code: (int(v), int(mai)) for code, v, mai, *_ in rows}


def load_aoc(tables: Path = TABLES) -> tuple[dict[str, int], dict[str, frozenset[str]]]:
    rows = _csv_rows(tables / "ncci_aoc_codes.csv")
    header = next(rows)
    if header[:2] != ["add_on_code", "edit_type"]:
        raise ValueError(f"unexpected AOC header {header}")
    codes = {code: int(t) for code, t, *_ in rows}
    rows = _csv_rows(tables / "ncci_aoc_primaries.csv")
    header = next(rows)
    if header[:2] != ["add_on_code", "primary_code"]:
        raise ValueError(f"unexpected AOC primaries header {header}")
    prim: dict[str, set[str]] = {}
    for add_on, primary, *_ in rows:
        prim.setdefault(add_on, set()).add(primary)
    return codes, {k: frozenset(v) for k, v in prim.items()}


def load_tables(min_dos: str = DEFAULT_MIN_DOS, tables: Path = TABLES) -> NcciTables:
    start = time.perf_counter()
    ptp, read, kept, samples = load_ptp(min_dos, tables)
    mue = load_mue(tables)
    aoc_code, aoc_primary = load_aoc(tables)
    t = NcciTables(ptp, mue, aoc_code, aoc_primary, read_roles(), min_dos)
    t.ptp_rows_read, t.ptp_rows_kept = read, kept
    t.ptp_pairs = sum(len(v) for v in ptp.values())
    t.samples = samples
    t.load_s = time.perf_counter() - start
    return t


_cached: dict[str, NcciTables] = {}


def shared_tables(min_dos: str = DEFAULT_MIN_DOS) -> NcciTables:
    """Load once per process (forked workers inherit the parent's copy)."""
    t = _cached.get(min_dos)
    if t is None:
        t = _cached[min_dos] = load_tables(min_dos)
    return t
