"""Import a CMS quarterly release into a KB's tables (`policykb import`).

    policykb import ncci-ptp|ncci-mue|ncci-aoc|hcpcs FILE [--kb DIR]

FILE is CSV (comma), tab-separated (.tsv/.tab, or a .txt whose first line has a tab) or the
fixed-width TXT layout (a .txt without tabs; positions in FIXED_WIDTH), optionally inside a
.zip (its one data member). CSV and TSV files have a header row; header names are matched
loosely (case, spaces and punctuation ignored; the aliases below cover the CMS and the
../shared/data spellings). Every row is validated first; a bad row is reported by its row
number (the header is row 1; fixed-width rows by line number) and nothing is written.

A release is the complete table (CMS ships deleted PTP edits with their deletion dates), so an
import replaces the KB's table. Each PTP row keeps its effective and deletion dates, so a
decision is made by the edits in force on the date of service. Tables are written with
engine.importers.cms's writer (sorted rows, minimal quoting, gzip with mtime 0): importing the
same file twice gives byte-identical tables.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.importers.cms import (
    AOC_CODE_HEADER,
    AOC_PLACEHOLDER,
    AOC_PRIMARY_HEADER,
    CODE_RE,
    HCPCS_HEADER,
    MUE_HEADER,
    NO_DATE,
    PTP_HEADER,
    render_csv,
    write_table,
)
from engine.syntax import nodes as A
from engine.syntax.parser import parse_file

Row = tuple[str, ...]
MAX_REPORTED = 20  # bad rows listed before "... and N more"


class ReleaseError(Exception):
    """The release cannot be imported; `problems` are (row number or 0, message)."""

    def __init__(self, path: str, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = problems
        first = problems[0]
        super().__init__(f"{path}: row {first[0]}: {first[1]}" if first[0] else f"{path}: {first[1]}")


# --- the four kinds -------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A KB table a release fills: its relation, its CSV header, the columns that identify a row
    (for the added/removed/changed summary)."""

    relation: str
    header: tuple[str, ...]
    key: tuple[int, ...]


@dataclass(frozen=True)
class Kind:
    name: str
    fields: tuple[str, ...]  # what a source row must give, in this order
    aliases: dict[str, tuple[str, ...]]  # field -> accepted header names (normalised)
    optional: frozenset[str]
    tables: tuple[Table, ...]
    build: Callable[[list[tuple[int, dict[str, str]]]], tuple[list[list[Row]], list[tuple[int, str]]]]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _date(value: str) -> str | None:
    """ISO date, "" for none (blank, `*`, 9999-12-31), or None when it is not a date.
    CMS writes YYYYMMDD in its TXT files; both are accepted."""
    v = value.strip()
    if v in ("", "*", NO_DATE, "99991231"):
        return ""
    if re.fullmatch(r"[0-9]{8}", v):
        v = f"{v[:4]}-{v[4:6]}-{v[6:]}"
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", v) and "01" <= v[5:7] <= "12" and "01" <= v[8:] <= "31":
        return v
    return None


class _Rows:
    """Collects a kind's rows and the problems found, each named by its row number."""

    def __init__(self) -> None:
        self.problems: list[tuple[int, str]] = []

    def code(self, n: int, what: str, value: str) -> str:
        v = value.strip().upper()
        if not CODE_RE.match(v):
            self.problems.append((n, f"{what}: not a CPT/HCPCS code: {value!r}"))
        return v

    def date(self, n: int, what: str, value: str) -> str:
        d = _date(value)
        if d is None:
            self.problems.append((n, f"{what}: not a date (YYYY-MM-DD or YYYYMMDD): {value!r}"))
            return ""
        return d

    def choice(self, n: int, what: str, value: str, allowed: tuple[str, ...]) -> str:
        v = value.strip()
        if v not in allowed:
            self.problems.append((n, f"{what}: {value!r} is not one of {', '.join(allowed)}"))
        return v


def _build_ptp(rows: list[tuple[int, dict[str, str]]]) -> tuple[list[list[Row]], list[tuple[int, str]]]:
    c = _Rows()
    out: list[Row] = []
    for n, r in rows:
        c1 = c.code(n, "column_1", r["column_1"])
        c2 = c.code(n, "column_2", r["column_2"])
        eff = c.date(n, "effective_date", r.get("effective_date", ""))
        dele = c.date(n, "deletion_date", r["deletion_date"])
        if eff and dele and dele < eff:
            c.problems.append((n, f"deletion_date {dele} is before effective_date {eff}"))
        mi = c.choice(n, "modifier_indicator", r["modifier_indicator"], ("0", "1", "9"))
        out.append((c1, c2, eff, dele, mi, r["rationale"].strip()))
    out.sort(key=lambda t: (t[0], t[1], t[3], t))
    return [out], c.problems


def _build_mue(rows: list[tuple[int, dict[str, str]]]) -> tuple[list[list[Row]], list[tuple[int, str]]]:
    c = _Rows()
    out: list[Row] = []
    for n, r in rows:
        code = c.code(n, "code", r["code"])
        value = r["mue_value"].strip()
        if not value.isdigit():
            c.problems.append((n, f"mue_value: not a whole number: {r['mue_value']!r}"))
        mai = (r.get("mai") or r.get("mue_adjudication_indicator") or "").strip()[:1]
        c.choice(n, "mai", mai, ("1", "2", "3"))
        out.append((code, value, mai, r["rationale"].strip()))
    seen = Counter(row[0] for row in out)
    for n, r in rows:
        if seen[r["code"].strip().upper()] > 1:
            c.problems.append((n, f"code {r['code'].strip()} has more than one MUE row"))
    out.sort()
    return [out], c.problems


def _build_aoc(rows: list[tuple[int, dict[str, str]]]) -> tuple[list[list[Row]], list[tuple[int, str]]]:
    c = _Rows()
    types: dict[str, tuple[str, int]] = {}
    primaries: set[Row] = set()
    for n, r in rows:
        aoc = c.code(n, "add_on_code", r["add_on_code"])
        edit_type = c.choice(n, "edit_type", r["edit_type"], ("1", "2", "3"))
        first = types.setdefault(aoc, (edit_type, n))
        if first[0] != edit_type:
            c.problems.append((n, f"{aoc} has edit type {edit_type} here and {first[0]} on row {first[1]}"))
        primary = r["primary_code"].strip().upper()
        if primary != AOC_PLACEHOLDER:
            primaries.add((aoc, c.code(n, "primary_code", primary), edit_type))
    codes: list[Row] = sorted((k, v[0]) for k, v in types.items())
    return [codes, sorted(primaries)], c.problems


def _build_hcpcs(rows: list[tuple[int, dict[str, str]]]) -> tuple[list[list[Row]], list[tuple[int, str]]]:
    c = _Rows()
    out: list[Row] = []
    for n, r in rows:
        record = r.get("record_type", "").strip().lower()
        if record in ("modifier", "7", "8"):
            continue
        code = c.code(n, "code", r["code"])
        short, long_ = r["short_description"].strip(), r["long_description"].strip()
        if not short and not long_:
            c.problems.append((n, "no description"))
        out.append(
            (
                code,
                short,
                long_,
                r.get("pricing_indicator", "").strip(),
                r.get("coverage_code", "").strip(),
                r.get("betos", "").strip(),
                c.date(n, "added_date", r.get("added_date", "")),
                c.date(n, "termination_date", r.get("termination_date", "")),
            )
        )
    seen = Counter(row[0] for row in out)
    dup = sorted(k for k, v in seen.items() if v > 1)
    if dup:
        c.problems.append((0, f"codes listed twice: {', '.join(dup[:10])}"))
    out.sort()
    return [out], c.problems


PTP_TABLE = Table("ptp", PTP_HEADER, (0, 1, 2))
KINDS: dict[str, Kind] = {
    "ncci-ptp": Kind(
        "ncci-ptp",
        PTP_HEADER,
        {
            "column_1": ("column_1", "column1", "column_1_code", "col_1"),
            "column_2": ("column_2", "column2", "column_2_code", "col_2"),
            "effective_date": ("effective_date", "effective", "eff_date"),
            "deletion_date": ("deletion_date", "deletion", "del_date"),
            "modifier_indicator": (
                "modifier_indicator",
                "modifier",
                "modifier_0_not_allowed_1_allowed_9_not_applicable",
            ),
            "rationale": ("ptp_edit_rationale", "rationale", "edit_rationale"),
        },
        frozenset({"effective_date"}),
        (PTP_TABLE,),
        _build_ptp,
    ),
    "ncci-mue": Kind(
        "ncci-mue",
        MUE_HEADER,
        {
            "code": ("hcpcs_cpt_code", "code", "hcpcs_code", "hcpcs_cpt"),
            "mue_value": ("mue_value", "practitioner_services_mue_values", "mue_values", "mue"),
            "mai": ("mai", "mue_adjudication_indicator"),
            "rationale": ("mue_rationale", "rationale"),
        },
        frozenset(),
        (Table("mue", MUE_HEADER, (0,)),),
        _build_mue,
    ),
    "ncci-aoc": Kind(
        "ncci-aoc",
        AOC_PRIMARY_HEADER,
        {
            "add_on_code": ("add_on_code", "addon_code", "add_on"),
            "primary_code": ("primary_code", "primary"),
            "edit_type": ("aoc_edit_type", "edit_type", "aoc_type"),
        },
        frozenset(),
        (
            Table("aoc_code", AOC_CODE_HEADER, (0,)),
            Table("aoc_primary", AOC_PRIMARY_HEADER, (0, 1)),
        ),
        _build_aoc,
    ),
    "hcpcs": Kind(
        "hcpcs",
        HCPCS_HEADER,
        {
            "code": ("hcpcs_code", "code", "hcpc", "hcpcs"),
            "short_description": ("short_description", "short_desc", "short"),
            "long_description": ("long_description", "long_desc", "long"),
            "pricing_indicator": ("pricing_indicator", "price1", "pricing"),
            "coverage_code": ("coverage_code", "cov", "coverage"),
            "betos": ("betos", "betos_code"),
            "added_date": ("added_date", "date_added", "add_dt", "add_date"),
            "termination_date": ("termination_date", "date_term", "term_dt", "term_date"),
        },
        frozenset({"pricing_indicator", "coverage_code", "betos", "added_date", "termination_date"}),
        (Table("hcpcs", HCPCS_HEADER, (0,)),),
        _build_hcpcs,
    ),
}

# The fixed-width TXT layouts: field -> (first column, last column), 1-based and inclusive,
# after the CMS record layouts (PTP and MUE: one edit per line; HCPCS: record identification
# 3 = procedure, 4 = its long-description continuation, 7/8 = modifiers, skipped).
END = 9999  # a last field that runs to the end of the line
FIXED_WIDTH: dict[str, dict[str, tuple[int, int]]] = {
    "ncci-ptp": {
        "column_1": (1, 5),
        "column_2": (6, 10),
        "prior_1996": (11, 11),
        "effective_date": (12, 19),
        "deletion_date": (20, 27),
        "modifier_indicator": (28, 28),
        "rationale": (29, END),
    },
    "ncci-mue": {"code": (1, 5), "mue_value": (6, 9), "mai": (10, 10), "rationale": (11, END)},
    "ncci-aoc": {"add_on_code": (1, 5), "primary_code": (6, 10), "edit_type": (11, 11)},
    "hcpcs": {
        "code": (1, 5),
        "sequence": (6, 10),
        "record_type": (11, 11),
        "long_description": (12, 91),
        "short_description": (92, 119),
        "pricing_indicator": (120, 121),
        "coverage_code": (230, 230),
        "betos": (257, 259),
        "added_date": (262, 269),
        "termination_date": (278, 285),
    },
}


# --- reading a release ----------------------------------------------------------------------


def read_release(path: Path) -> tuple[str, str]:
    """(layout, text) of a release file: layout is csv, tsv or fixed. A .zip must hold one data
    file (.csv, .tsv, .tab or .txt; others such as a README are ignored)."""
    name = path.name.lower()
    if name.endswith(".zip") or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = [
                m
                for m in zf.namelist()
                if re.search(r"\.(csv|tsv|tab|txt)$", m.lower()) and not re.search(r"readme|layout|notice", m.lower())
            ]
            if len(members) != 1:
                found = ", ".join(members) or "none"
                raise ReleaseError(str(path), [(0, f"a .zip must hold one data file (.csv/.tsv/.txt); found {found}")])
            name = members[0].lower()
            raw = zf.read(members[0])
    else:
        raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # CMS TXT files are Windows-1252/Latin-1
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if name.endswith(".csv"):
        return "csv", text
    if name.endswith((".tsv", ".tab")) or "\t" in first:
        return "tsv", text
    return "fixed", text


def source_rows(kind: Kind, layout: str, text: str, path: str) -> list[tuple[int, dict[str, str]]]:
    """(row number, field -> value) for each data row."""
    if layout == "fixed":
        return list(_fixed_rows(kind, text))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="," if layout == "csv" else "\t")
    try:
        header = next(reader)
    except StopIteration:
        raise ReleaseError(path, [(0, "the file is empty")]) from None
    names = [_norm(h) for h in header]
    where: dict[str, int] = {}
    for f in kind.fields:
        for alias in kind.aliases[f]:
            if alias in names:
                where[f] = names.index(alias)
                break
    if kind.name == "ncci-mue" and "mai" not in where and "mue_adjudication_indicator" in names:
        where["mai"] = names.index("mue_adjudication_indicator")
    missing = [f for f in kind.fields if f not in where and f not in kind.optional]
    if missing:
        raise ReleaseError(
            path, [(1, f"the header has no column for {', '.join(missing)} (it has {', '.join(header)})")]
        )
    extra = {"record_type": names.index("record_type")} if "record_type" in names else {}
    out = []
    for n, rec in enumerate(reader, start=2):
        if not any(x.strip() for x in rec):
            continue
        if len(rec) != len(header):
            raise ReleaseError(path, [(n, f"{len(rec)} columns where the header has {len(header)}")])
        row = {f: rec[i] for f, i in {**where, **extra}.items()}
        out.append((n, row))
    return out


def _fixed_rows(kind: Kind, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    layout = FIXED_WIDTH[kind.name]
    last: tuple[int, dict[str, str]] | None = None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = {f: line[a - 1 : b].strip() for f, (a, b) in layout.items()}
        if kind.name == "hcpcs" and row.get("record_type") in ("4", "8") and last is not None:
            # a continuation line: its long description continues the previous record's
            last[1]["long_description"] += " " + row["long_description"]
            continue
        if last is not None:
            yield last
        last = (n, row)
    if last is not None:
        yield last


# --- the KB's tables ------------------------------------------------------------------------


def table_files(kb_dir: Path) -> dict[str, Path]:
    """relation -> its table file, from the KB's `.input` declarations."""
    out: dict[str, Path] = {}
    for dl in sorted(kb_dir.rglob("*.dl")):
        module, _diags = parse_file(dl)
        for item in module.items:
            if isinstance(item, A.InputDecl):
                filename = item.option("filename")
                if isinstance(filename, str):
                    out[item.name] = kb_dir / filename
    return out


def read_table(path: Path) -> tuple[list[str], list[Row]]:
    import gzip

    if not path.exists():
        return [], []
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = next(reader, [])
    return header, [tuple(r) for r in reader]


@dataclass
class TableChange:
    relation: str
    file: Path
    before: int
    after: int
    added: int
    removed: int
    changed: int
    written: bool  # False when the bytes were already the same

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class ImportReport:
    kind: str
    source: Path
    layout: str
    rows_read: int
    tables: list[TableChange] = field(default_factory=list)


def compare(old: Iterable[Row], new: Iterable[Row], key: tuple[int, ...]) -> tuple[int, int, int]:
    """(added, removed, changed) rows; a row is changed when its key stays and the rest differs."""
    old_c, new_c = Counter(old), Counter(new)
    gone, came = old_c - new_c, new_c - old_c
    by_key_gone: dict[tuple[str, ...], int] = defaultdict(int)
    by_key_came: dict[tuple[str, ...], int] = defaultdict(int)
    for row, n in gone.items():
        by_key_gone[tuple(row[i] for i in key)] += n
    for row, n in came.items():
        by_key_came[tuple(row[i] for i in key)] += n
    changed = sum(min(n, by_key_came.get(k, 0)) for k, n in by_key_gone.items())
    return sum(came.values()) - changed, sum(gone.values()) - changed, changed


def import_release(kind_name: str, source: Path, kb_dir: Path) -> ImportReport:
    """Validate the release and replace the KB's tables with it. Raises ReleaseError (and
    writes nothing) when the file or any row is bad."""
    kind = KINDS[kind_name]
    shown = str(source)
    if not source.is_file():
        raise ReleaseError(shown, [(0, "no such file")])
    layout, text = read_release(source)
    rows = source_rows(kind, layout, text, shown)
    if not rows:
        raise ReleaseError(shown, [(0, "no data rows")])
    tables, problems = kind.build(rows)
    if problems:
        raise ReleaseError(shown, sorted(problems))
    files = table_files(kb_dir)
    report = ImportReport(kind_name, source, layout, len(rows))
    plans = []
    for table, new_rows in zip(kind.tables, tables, strict=True):
        target = files.get(table.relation)
        if target is None:
            raise ReleaseError(shown, [(0, f"the KB at {kb_dir} has no .input for relation {table.relation}")])
        header, old_rows = read_table(target)
        if header and tuple(header) != table.header:
            raise ReleaseError(shown, [(0, f"{target}: its header {header} is not {list(table.header)}")])
        plans.append((table, target, old_rows, new_rows))
    for table, target, old_rows, new_rows in plans:
        before = target.read_bytes() if target.exists() else b""
        write_table(target.parent, target.name, list(table.header), new_rows)
        added, removed, changed = compare(old_rows, new_rows, table.key)
        report.tables.append(
            TableChange(
                table.relation,
                target,
                len(old_rows),
                len(new_rows),
                added,
                removed,
                changed,
                target.read_bytes() != before,
            )
        )
    return report


__all__ = ["FIXED_WIDTH", "KINDS", "ImportReport", "ReleaseError", "TableChange", "import_release", "render_csv"]
