"""Property test of the CSV table loader: whatever mix of good and bad rows a table holds, every
good row is stored in order and every bad row is reported by its row number."""

from __future__ import annotations

import csv
import gzip
import io
import re
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.program import load_program
from engine.store import MAX_ROW_ERRORS, Store
from fuzz import BUDGET

KB = """/**
 * @summary A five-digit code.
 * @pattern ^[0-9]{5}$
 */
.type Code <: symbol
.decl edit(c1: Code, c2: Code, mi: number, note: symbol)
.input edit(filename="tables/edit.csv%s")
"""
CODE = st.from_regex(r"[0-9]{5}", fullmatch=True)
NOTE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=8)
GOOD = st.tuples(CODE, CODE, st.integers(-(10**6), 10**6).map(str), NOTE)
BAD = st.one_of(
    st.tuples(CODE.map(lambda c: c[:4]), CODE, st.just("1"), NOTE),  # a four-digit code
    st.tuples(CODE, CODE, st.text("abcxyz", min_size=1, max_size=3), NOTE),  # mi is not a number
    st.lists(CODE, min_size=0, max_size=6).filter(lambda r: len(r) != 4).map(tuple),  # wrong field count
)
ROW_MESSAGE = re.compile(r"tables/edit\.csv(?:\.gz)? row (\d+): ")


@BUDGET
@given(rows=st.lists(st.tuples(st.booleans(), GOOD, BAD), max_size=30), gz=st.booleans())
def test_bad_rows_are_reported_by_row_number_and_good_rows_kept(rows: list, gz: bool) -> None:
    table = [good if ok else bad for ok, good, bad in rows]
    bad_rows = [n for n, (ok, _g, _b) in enumerate(rows, 1) if not ok]
    good_rows = [(g[0], g[1], int(g[2]), g[3]) for ok, g, _b in rows if ok]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["c1", "c2", "mi", "note"])
    writer.writerows(table)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "kb"
        (root / "tables").mkdir(parents=True)
        (root / "edit.dl").write_text(KB % (".gz" if gz else ""), encoding="utf-8")
        data = out.getvalue().encode("utf-8")
        (root / "tables" / ("edit.csv.gz" if gz else "edit.csv")).write_bytes(gzip.compress(data) if gz else data)
        store = Store(load_program(root), Path(tmp) / "cache")
        store.load_tables()
        reported = [
            int(m.group(1))
            for d in store.diagnostics
            if d.code == "table-row"
            for m in [ROW_MESSAGE.search(d.message)]
            if m
        ]
        assert reported == bad_rows[:MAX_ROW_ERRORS]
        for d in store.diagnostics:
            m = ROW_MESSAGE.search(d.message)
            if m:  # the location is the row's line in the file (the header is line 1)
                assert d.location.line == int(m.group(1)) + 1
        if len(bad_rows) > MAX_ROW_ERRORS:
            assert any(f"{len(bad_rows) - MAX_ROW_ERRORS} more invalid rows" in d.message for d in store.diagnostics)
        assert [row for _src, row in store.scan("edit")] == good_rows
        assert [src.table_row for src, _row in store.scan("edit")] == [
            n for n, (ok, _g, _b) in enumerate(rows, 1) if ok
        ]
