"""Scrub's default path writes each result straight from its rules' reason texts
(`BatchDecider.decide_written`, engine/backends/decide.py) instead of building the result dict and
handing it to orjson. For any chunk of well-formed claims (any text in ids, codes, places of
service: quotes, backslashes, `%`, line separators, non-ASCII) the line it writes and the counts
it gives must be exactly what engine.batch writes and counts for decide's dict, or it declines
(the dict, which engine.batch then writes as before).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.api import BatchWorker, PolicyKB
from engine.backends.decide import decide_many
from engine.batch import Written, _dumps, _handle_chunk, _line_counts
from engine.claims import ClaimError, parse_claim
from engine.formats.reader import RawRecord
from fuzz import BUDGET
from fuzz.strategies import claims


@cache
def _kb() -> PolicyKB:
    return PolicyKB.open()


def _written(result: Any) -> tuple[bytes, int, int, tuple[str, ...]]:
    if isinstance(result, Written):
        return result.line, result.lines, result.denied, result.deny_kinds
    return (_dumps(result), *_line_counts(result))


def _read(objs: list[dict[str, Any]]) -> list[Any]:
    out = []
    for obj in objs:
        try:
            out.append(parse_claim(obj))
        except ClaimError:
            continue  # e.g. two lines drawn with one number: not this test's business
    return out


@BUDGET
@given(st.lists(claims(broken=False), min_size=1, max_size=6))
def test_a_written_result_is_the_line_batch_writes_for_the_dict(objs: list[dict[str, Any]]) -> None:
    chunk = _read(objs)
    written = decide_many(_kb(), chunk, written=True)
    dicts = decide_many(_kb(), chunk)
    assert len(written) == len(dicts) == len(chunk)
    for w, d in zip(written, dicts, strict=True):
        if isinstance(d, Exception):  # a claim the backend cannot take fails either way
            assert isinstance(w, Exception) and str(w) == str(d)
        else:  # text drawn as UTF-8 is always writable: never declined here (tests/test_batch_decide.py)
            assert isinstance(w, Written)
            assert _written(w) == _written(d)


@BUDGET
@given(st.lists(claims(broken=False), min_size=1, max_size=6))
def test_scrub_writes_the_same_lines_with_or_without_written_results(objs: list[dict[str, Any]]) -> None:
    """engine.batch's chunk handler: many_written (preferred) against many (the dicts)."""
    import json

    records = [RawRecord(n, json.dumps(obj, ensure_ascii=False).encode()) for n, obj in enumerate(objs, 1)]
    worker = BatchWorker(_kb(), "duckdb", False, False)

    class DictsOnly:
        def many(self, claims: Any) -> Any:
            return worker.many(claims)

    fast = _handle_chunk(worker, records)  # a Written as it is, an _Outcome for a dict or an error
    slow = _handle_chunk(DictsOnly(), records)  # type: ignore[arg-type]
    assert [*map(_tallied, fast)] == [*map(_tallied, slow)]


def _tallied(outcome: Any) -> tuple[bytes, bool, int, int, tuple[str, ...]]:
    """What the parent writes and tallies of an outcome (engine.batch._pack)."""
    return outcome.line, outcome.ok, outcome.lines, outcome.denied, outcome.deny_kinds
