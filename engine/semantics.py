"""The built-in semantics of the KB language, written once.

Comparison, arithmetic, `match` and the order of rows are defined here and nowhere else. The
pyDatalog adapter (engine/datalog.py) calls these functions during evaluation, the evaluator
sorts with `row_key`, and the prover's re-solver (engine/explain/proof.py) calls the same
functions when it rebuilds a proof, so a proof can never disagree with the decision it explains.

A backend that compiles rules to SQL cannot call Python once per row. It reads `OPERATORS`: for
each operator, what it means in plain words, the Python function, and an SQL template that
gives the same answers (with the caveats noted there). Values are only ever `int` (type
`number`) or `str` (type `symbol` and its subtypes).
"""

from __future__ import annotations

import operator as _op
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.ir import Value

# -- kinds ---------------------------------------------------------------------------------


def kind(value: object) -> str | None:
    """ "number", "symbol", or None for anything that is not a KB value."""
    if isinstance(value, int):
        return "number"
    if isinstance(value, str):
        return "symbol"
    return None


# -- comparison ----------------------------------------------------------------------------

_COMPARE: dict[str, Callable[[Value, Value], bool]] = {
    "=": _op.eq,
    "!=": _op.ne,
    "<": _op.lt,
    "<=": _op.le,
    ">": _op.gt,
    ">=": _op.ge,
}
CROSS_KIND = {"=": False, "!=": True, "<": False, "<=": False, ">": False, ">=": False}
"""What a comparison between a number and a symbol yields: they are never equal and never
ordered (Datalog says "false" where Python would raise)."""


def compare(a: Value, op: str, b: Value) -> bool:
    """`a op b`, type-safe: numbers compare as integers, symbols by code point (Python's `str`
    order, which is also UTF-8 byte order), and a number and a symbol only ever differ."""
    ka, kb = kind(a), kind(b)
    if ka != kb or ka is None:
        return CROSS_KIND[op]
    return _COMPARE[op](a, b)


# -- arithmetic ----------------------------------------------------------------------------


def _floordiv(a: int, b: int) -> int | None:
    return None if b == 0 else a // b


def _floormod(a: int, b: int) -> int | None:
    return None if b == 0 else a % b


_ARITH: dict[str, Callable[[int, int], int | None]] = {
    "+": _op.add,
    "-": _op.sub,
    "*": _op.mul,
    "/": _floordiv,
    "%": _floormod,
}


def arith(op: str, a: Value, b: Value) -> int | None:
    """Integer arithmetic: `/` rounds towards minus infinity and `%` takes the sign of the
    divisor (Python's `//` and `%`). None means "no value": an operand that is not a number, or
    division or remainder by zero. A literal whose expression has no value does not hold."""
    if kind(a) != "number" or kind(b) != "number":
        return None
    return _ARITH[op](a, b)  # type: ignore[arg-type]


# -- match ---------------------------------------------------------------------------------

_MATCH_MEMO: dict[tuple[str, str], bool] = {}
_MATCH_MEMO_MAX = 100_000


def matches(pattern: Value, value: Value) -> bool:
    """`match(pattern, value)`: the whole of `value` matches the regular expression `pattern`
    (Python `re.fullmatch`, so the pattern is anchored at both ends whether or not it says ^ or
    $). False when either side is not a symbol or the pattern is not a valid expression, so
    `!match(...)` then holds."""
    if not isinstance(pattern, str) or not isinstance(value, str):
        return False
    hit = _MATCH_MEMO.get((pattern, value))
    if hit is None:
        try:
            hit = re.fullmatch(pattern, value) is not None
        except re.error:
            hit = False
        if len(_MATCH_MEMO) >= _MATCH_MEMO_MAX:
            _MATCH_MEMO.clear()
        _MATCH_MEMO[(pattern, value)] = hit
    return hit


# -- order of rows -------------------------------------------------------------------------


def value_key(v: object) -> tuple[int, int, str]:
    """Numbers first, in numeric order; then symbols in code-point order."""
    if isinstance(v, int):
        return (0, v, "")
    return (1, 0, str(v))


def row_key(row: Sequence[object]) -> tuple[tuple[int, int, str], ...]:
    """The order answers are listed in everywhere (answers are sets; output must be repeatable).
    In SQL: ORDER BY every column ascending; a column is typed, so numbers and symbols never
    share one, and DuckDB orders text by code point like Python."""
    return tuple(value_key(v) for v in row)


def sort_rows(rows: object) -> list:
    """`rows` (any iterable of tuples) sorted by `row_key`."""
    return sorted(rows, key=row_key)  # type: ignore[call-overload]


# -- the table a SQL backend mirrors -------------------------------------------------------


@dataclass(frozen=True)
class Operator:
    """One built-in operator: what it means, the function evaluators call, and the SQL that
    gives the same answers for operands of the expected kind ({a} and {b} are SQL expressions)."""

    symbol: str
    family: str  # comparison | arithmetic | match
    meaning: str
    python: Callable[..., object]
    sql: str


def _cmp_op(symbol: str, sql: str, words: str) -> Operator:
    return Operator(
        symbol,
        "comparison",
        words + " (a number and a symbol: " + ("always true" if CROSS_KIND[symbol] else "always false") + ")",
        lambda a, b: compare(a, symbol, b),
        sql,
    )


def _arith_op(symbol: str, sql: str, words: str) -> Operator:
    return Operator(symbol, "arithmetic", words, lambda a, b: arith(symbol, a, b), sql)


# SQL is DuckDB's dialect. `/` and `%` are floored here while DuckDB's integer `//` and `%`
# truncate towards zero (and its `/` is floating point), hence the longer templates; NULLIF turns a zero divisor into NULL, which (like None here) makes the
# literal fail. Regular expressions: DuckDB's regexp_full_match uses RE2, which accepts the
# patterns the KB uses (classes, alternation, repetition) but not back-references or look-around.
OPERATORS: dict[str, Operator] = {
    op.symbol: op
    for op in (
        _cmp_op("=", "{a} = {b}", "equal"),
        _cmp_op("!=", "{a} <> {b}", "not equal"),
        _cmp_op("<", "{a} < {b}", "less than (numbers by value, symbols by code point)"),
        _cmp_op("<=", "{a} <= {b}", "less than or equal"),
        _cmp_op(">", "{a} > {b}", "greater than"),
        _cmp_op(">=", "{a} >= {b}", "greater than or equal"),
        _arith_op("+", "({a} + {b})", "sum of two numbers"),
        _arith_op("-", "({a} - {b})", "difference of two numbers"),
        _arith_op("*", "({a} * {b})", "product of two numbers"),
        _arith_op(
            "/",
            "(({a} - ((({a}) % NULLIF({b}, 0) + ({b})) % NULLIF({b}, 0))) // NULLIF({b}, 0))",
            "quotient rounded towards minus infinity; no value when dividing by zero",
        ),
        _arith_op(
            "%",
            "((({a}) % NULLIF({b}, 0) + ({b})) % NULLIF({b}, 0))",
            "remainder with the sign of the divisor; no value when dividing by zero",
        ),
        Operator(
            "match",
            "match",
            "the whole symbol matches the regular expression (anchored at both ends); "
            "false for an invalid pattern or a number",
            matches,
            "regexp_full_match({b}, {a})",
        ),
    )
}
COMPARISON_OPS = tuple(s for s, o in OPERATORS.items() if o.family == "comparison")
ARITHMETIC_OPS = tuple(s for s, o in OPERATORS.items() if o.family == "arithmetic")
