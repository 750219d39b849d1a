"""The DuckDB backend hands claim rows to DuckDB as CSV written with one %-format per relation
(`_keyed_csv`); it must write exactly what csv.writer writes for the same rows, or decline (and
csv.writer writes them). So DuckDB reads the same file whichever wrote it, and an error quoting
a CSV line reads the same.
"""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from engine.backends.duckdb import _CSV_BLOCK, _keyed_csv
from engine.claims import Row
from fuzz import BUDGET

# more claims than a block of _keyed_csv: a relation's rows may span blocks
KEYS = [str(ck) for ck in range(2 * _CSV_BLOCK + 40)]
# Values a row may hold, and the awkward ones on purpose: text csv.writer must quote, None (it
# writes nothing), the word None, surrogates (not UTF-8), numbers of every size.
VALUES = st.one_of(
    st.integers(),
    st.text(max_size=6),
    st.text(st.characters(codec="utf-8"), max_size=6),
    st.sampled_from(["", ",", '"', "\n", "\r", "a\r\nb", "None", "Nonexistent", "\ud800", " x ", "%s", "%"]),
    st.none(),
    st.booleans(),
    st.floats(),
)


@st.composite
def relations(draw: st.DrawFn) -> list[tuple[int, list[Row]]]:
    """Each claim key's rows of one relation (rows of one length), keys ascending as in a chunk."""
    width = draw(st.integers(0, 4))
    row = st.tuples(*[VALUES] * width)
    keys = sorted(draw(st.sets(st.integers(0, len(KEYS) - 1), min_size=1, max_size=6)))
    return [(ck, draw(st.lists(row, min_size=1, max_size=4))) for ck in keys]


def _per_claim(parts: list[tuple[int, list[Row]]]) -> list[list[Row]]:
    """The parts as evaluate_many hands them to _keyed_csv: each claim's rows, none for a claim
    without any."""
    rows_of = dict(parts)
    return [rows_of.get(ck, []) for ck in range(max(rows_of) + 1)]


def _csv_writer(parts: list[tuple[int, list[Row]]]) -> bytes | None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([(ck, *r) for ck, rows in parts for r in rows])
    try:
        return buf.getvalue().encode("utf-8")
    except UnicodeEncodeError:
        return None


@BUDGET
@given(relations())
def test_keyed_csv_writes_what_csv_writer_writes_or_declines(parts: list[tuple[int, list[Row]]]) -> None:
    data = _keyed_csv(_per_claim(parts), KEYS)
    assert data is None or data == _csv_writer(parts)


def test_plain_claim_rows_take_the_one_format_path() -> None:
    parts: list[tuple[int, list[Row]]] = [
        (0, [(1, "96372", "2024-03-07", "11", "1234567893", 1), (2, "J3420", "2024-03-07", "11", "1234567893", 2)]),
        (3, [(1, "99213", "2024-03-08", "22", "1245319599", 1)]),
    ]
    data = _keyed_csv(_per_claim(parts), KEYS)
    assert data == _csv_writer(parts)
    assert data == (
        b"0,1,96372,2024-03-07,11,1234567893,1\n0,2,J3420,2024-03-07,11,1234567893,2\n"
        b"3,1,99213,2024-03-08,22,1245319599,1\n"
    )


def test_rows_of_claims_in_several_blocks_are_written_and_checked_as_one() -> None:
    """Claims in three blocks, some without rows (a block may have none), and a value csv.writer
    would quote in the last block only: every row is written in chunk order, or none is."""
    parts: list[tuple[int, list[Row]]] = [
        (ck, [(line, f"code {ck}") for line in range(1, ck % 4 + 1)]) for ck in range(len(KEYS)) if ck % 4
    ]
    assert parts[-1][0] >= 2 * _CSV_BLOCK
    assert _keyed_csv(_per_claim(parts), KEYS) == _csv_writer(parts)
    parts[-1] = (parts[-1][0], [(1, "a,b")])
    assert _keyed_csv(_per_claim(parts), KEYS) is None


def test_values_csv_writer_writes_otherwise_are_left_to_it() -> None:
    for value in ("a,b", 'say "hi"', "two\nlines", "cr\r", None, "None", "\ud800"):
        assert _keyed_csv([[(1, value)]], KEYS) is None, value


# Claim rows of a symbol and a number as csv.writer writes them: odd text included (quotes,
# separators, line breaks, carriage returns, blanks, words DuckDB might read as NULL).
TYPED_ROWS = st.lists(
    st.tuples(
        st.one_of(st.text(max_size=6), st.sampled_from(["", ",", '"', "\n", "\r", "a\r\nb", "NULL", "\\N", " "])),
        st.integers(-(2**63), 2**63 - 1),
    ),
    min_size=1,
    max_size=5,
)


@BUDGET
@given(TYPED_ROWS)
def test_copy_loads_what_insert_from_read_csv_loads_or_fails_the_same_way(rows: list[tuple[str, int]]) -> None:
    """The backend COPYs a CSV file into a claim table (_copy_csv) instead of INSERT ... SELECT *
    FROM read_csv(...) (_read_csv): the same rows, or the same error and message."""
    import tempfile
    from pathlib import Path

    import duckdb

    from engine.backends.duckdb import NUM, SYM, _copy_csv, _read_csv

    types = (SYM, NUM)
    con = duckdb.connect(":memory:")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows([(ck, *r) for ck, r in enumerate(rows)])
        found = []
        for table, statement in (
            ("a", f"INSERT INTO a SELECT * FROM {_read_csv(path, types, ck=True)}"),
            ("b", _copy_csv("b", path, types)),
        ):
            con.execute(f"CREATE TABLE {table} (ck BIGINT, c0 VARCHAR, c1 BIGINT)")
            try:
                con.execute(statement)
            except duckdb.Error as e:
                found.append((type(e), str(e)))
            else:
                found.append(con.execute(f"SELECT * FROM {table} ORDER BY ck").fetchall())
    assert found[0] == found[1]
