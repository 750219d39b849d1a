"""Set-at-a-time evaluation of the compiled program in DuckDB (embedded, no server).

The compiler's IR is turned into SQL once per program:
- every claim-dependent relation (claim, facts, dynamic, aggregate) becomes a table with a
  hidden first column `ck`, the claim's position in the chunk, and every join between such
  relations also joins on `ck`; a rule whose positive body reads none of them takes its claim
  keys from the chunk's `_claims` table;
- each strongly connected component of `CompiledProgram.order` is one step: a UNION (set
  semantics, as in Datalog) of its rules' SELECTs, or a UNION ALL for a relation whose readers
  cannot see a repeated row (see _bag); negation is NOT EXISTS; an aggregate is a
  GROUP BY over the distinct rows of its body relation (today's semantics: groups that have
  rows only, count of distinct rows, sum over distinct rows); a recursive component is iterated
  to a fixpoint, inserting only rows not yet present;
- a per-chunk relation that copies another, or that one statement at most reads (positively, and
  not an outcome rule), is a view instead of a table: its reader computes its rows (_projection,
  _inlined);
- relations derived from stored data only (static) are computed once and saved in a DuckDB file
  in the cache, which later connections attach (DuckDBBackend._create_static);
- stored relations are the validated `.input` tables, copied once from the SQLite store into a
  DuckDB file in the cache (keyed like the SQLite file, plus this module's format version), and
  the KB's inline facts; all but the big ones are copied again into one file, which a
  connection attaches (_build_stored_file).

Built-ins keep the pyDatalog adapter's type-safe semantics (see `_SEMANTICS` below): values of
different types are never equal or ordered, arithmetic on a symbol has no result, `/` and `%`
are Python's floor division and modulo, division by zero has no result, `match` is a full match.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import functools
import gc
import hashlib
import itertools
import operator
import os
import re
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path
from typing import IO, Any, TypeGuard

import duckdb

from engine.backends import OUTCOMES, BatchModel, MessageRequest
from engine.claims import ClaimFacts, Facts
from engine.compiler import CompiledProgram
from engine.ir import CompiledRule, IAtom, ICompare, IConst, ILiteral, IMatch, IOp, ITerm, IVar, RelKind, Value
from engine.kb import LoadedKB
from engine.semantics import CROSS_KIND, OPERATORS
from engine.store import Store

DUCKDB_FORMAT = 1  # bump when the cached table files change layout
STATIC_FORMAT = 2  # bump when the static relations' saved files, or how they are computed, change

NUM, SYM = "n", "s"
MESSAGE_OUTCOMES = ("deny", "warn")  # the reasons whose message is filled from the rule's bindings
_SQL_TYPE = {NUM: "BIGINT", SYM: "VARCHAR"}
_CK_KINDS = (RelKind.CLAIM, RelKind.FACTS, RelKind.DYNAMIC, RelKind.AGGREGATE)
# A stored table with more rows than this is joined through a semi-join on the chunk's values
# (see _semi_joined): scanning the whole of it costs tens of milliseconds a chunk, while the
# restriction costs the planner a little on every statement that reads it
BIG_STORED_ROWS = 500_000
# A claim relation's key is checked in a chunk (see DuckDBBackend._keyed_atoms) only for a message
# rule with at least this many outcome rows in it: the check is a scan of the relation, and a
# shorter ORDER BY saves a fraction of a microsecond a row
MESSAGE_KEYED_HEADS = 2_000
# A rule's message query returns one row per head, its solutions' sort keys and shown values as
# one text (see DuckDBBackend._grouped_sql), once its last chunk's heads had this many solution
# rows each on average: fewer, larger rows cost less to fetch and merge; with about one row per
# head the grouping costs more than it saves
MESSAGE_GROUPED_ROWS = 2.0
_FIELD, _RECORD = "\x1f", "\x1e"  # how the grouped query joins a solution's values and the solutions
# A grouped message query leaves out a shown value that a stored or static relation of at most
# this many rows gives for the solution's sort keys (see DuckDBBackend._lookup): it is read from
# the relation's rows, kept in memory once per connection, instead of joined into every text
MESSAGE_LOOKUP_ROWS = 50_000
# A rule's message values are read from the claims' facts without a query (see
# DuckDBBackend._from_facts) for at most this many outcome rows of it in a chunk: each costs some
# 5 us of Python, the query a few ms a chunk and a little a row (fee.facility_na's 2,300 heads in
# a 5,000-claim chunk: 17 ms in Python, 14 ms queried; validity.deleted_code's 300: 3 ms, 8 ms)
MESSAGE_FACT_HEADS = 1_000
# A join of two claim-dependent relations is made once per chunk for the rules that make it alike
# (see _narrowings) when at least this many do: each saves a scan and a join, the table made
# costs a statement and its rows (measured on kb/, best per statement: with 2 instead of 5, the
# joins four and two rules share are made too, and a chunk costs 4% more at 5,000 claims, 2% at 10)
NARROWED_RULES = 5
# A set relation that at least this many of its rules' SELECTs fill in a chunk is filled in two
# statements (see Step.staged_sql): their rows appended to a table, then copied from it DISTINCT.
# A UNION de-duplicates the rows of each SELECT as a pipeline of its own, at some 2M instructions
# each however few its rows (deny's 29 SELECTs of 31,000 rows at 10,000 claims: 10% of the
# statement), where the copy costs a statement and a few hundred instructions a row (warn's 4
# SELECTs of 160,000 rows: staged, 37% more; deny's: 7% less)
STAGED_SELECTS = 16


@atexit.register
def _release_frozen_heap() -> None:
    """api.PolicyKB freezes the heap (gc.freeze) for speed; DuckDB's bindings report every object
    still alive at interpreter exit as a leak, so let the collector see them again first."""
    gc.unfreeze()
    gc.collect()


class BackendUnsupported(Exception):
    """A program this backend cannot run with the pyDatalog semantics (the reason says why)."""


Row = tuple[Value, ...]


# ---------------------------------------------------------------------------------------------
# Built-in semantics: the ONE place each operator is mapped to SQL. Each function mirrors the
# Python function named in its docstring (engine/datalog.py `_safe_compare`, the pyDatalog
# adapter's `_OPS`/`add_match_builtin`, engine/explain/proof.py `_compare`/`_eval`); at merge
# they are to be wired to engine/semantics.py.


def sql_compare(op: str, left: str, ltype: str, right: str, rtype: str) -> str:
    """engine.semantics.compare in SQL: values of different kinds are unequal and unordered
    (semantics.CROSS_KIND), same kinds use the operator's SQL template (semantics.OPERATORS)."""
    if ltype != rtype:
        return "TRUE" if CROSS_KIND[op] else "FALSE"
    return "(" + OPERATORS[op].sql.format(a=left, b=right) + ")"


def sql_arith(op: str, left: str, ltype: str, right: str, rtype: str) -> str | None:
    """engine.semantics.arith in SQL (semantics.OPERATORS): integers only, floored division and
    modulo, no result (NULL) on division by zero; None when a side is a symbol."""
    if ltype != NUM or rtype != NUM:
        return None
    return OPERATORS[op].sql.format(a=left, b=right)


def sql_match(pattern: str, ptype: str, value: str, vtype: str, negated: bool, const_pattern: Value | None) -> str:
    """engine.semantics.matches in SQL: a full match of a symbol against a pattern; any other
    kinds, or a pattern Python cannot compile, is no match."""
    if ptype != SYM or vtype != SYM:
        return "TRUE" if negated else "FALSE"
    if isinstance(const_pattern, str):
        try:
            re.compile(const_pattern)
        except re.error:
            return "TRUE" if negated else "FALSE"
    test = OPERATORS["match"].sql.format(a=pattern, b=value)  # semantics.matches
    return f"(NOT {test})" if negated else test


def sql_value(v: Value) -> tuple[str, str]:
    """A constant as SQL, with its type."""
    if isinstance(v, bool):
        raise BackendUnsupported(f"boolean constant {v!r}")
    if isinstance(v, int):
        return str(v), NUM
    return "'" + v.replace("'", "''") + "'", SYM


# ---------------------------------------------------------------------------------------------
# Types of every column (pyDatalog is untyped; SQL is not)


def value_type(v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise BackendUnsupported(f"value {v!r} is neither a number nor a symbol")
    return NUM if isinstance(v, int) else SYM


def infer_types(cp: CompiledProgram, given: dict[str, list[str | None]]) -> dict[str, tuple[str, ...]]:
    """Column types of every relation: `given` fixes the input relations (declarations, or the
    data for untyped programs); derived relations take the types their rules produce. A column
    that would hold both numbers and symbols cannot be one SQL column: BackendUnsupported."""
    types: dict[str, list[str | None]] = {rel: list(given.get(rel) or [None] * n) for rel, n in cp.arity.items()}

    def merge(rel: str, i: int, t: str | None) -> bool:
        if t is None:
            return False
        cur = types[rel][i]
        if cur is None:
            types[rel][i] = t
            return True
        if cur != t:
            raise BackendUnsupported(f"column {i + 1} of {rel} would hold both numbers and symbols")
        return False

    changed = True
    while changed:
        changed = False
        for rule in cp.rules:
            env: dict[str, str | None] = {}
            for lit in rule.body:
                if isinstance(lit, IAtom) and not lit.negated:
                    for i, a in enumerate(lit.args):
                        if isinstance(a, IVar) and env.get(a.name) is None:
                            env[a.name] = types[lit.relation][i]
                elif isinstance(lit, ICompare) and lit.assigns and isinstance(lit.left, IVar):
                    env[lit.left.name] = _term_type(lit.right, env)
            for i, a in enumerate(rule.head.args):
                changed |= merge(rule.head.relation, i, _term_type(a, env))
        for res, spec in cp.aggregates.items():
            g = spec.group_arity
            for i in range(g):
                changed |= merge(res, i, types[spec.body_relation][i])
            if spec.func in ("sum", "count"):
                changed |= merge(res, g, NUM)
            elif spec.target_pos is not None:
                changed |= merge(res, g, types[spec.body_relation][spec.target_pos])
    return {rel: tuple(t or SYM for t in cols) for rel, cols in types.items()}


def _term_type(t: ITerm, env: dict[str, str | None]) -> str | None:
    if isinstance(t, IConst):
        return value_type(t.value)
    if isinstance(t, IVar):
        return env.get(t.name)
    return NUM


# ---------------------------------------------------------------------------------------------
# The program as SQL


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_name(cp: CompiledProgram, rel: str) -> str:
    """Claim-dependent relations live in `d:`, stored ones behind `s:`, static ones in `x:`."""
    kind = cp.kinds[rel]
    prefix = "d" if kind in _CK_KINDS else "s" if kind is RelKind.STORED else "x"
    return _q(f"{prefix}:{rel}")


@dataclass
class Step:
    """One component of the evaluation order: its relations and the SQL that fills each."""

    relations: list[str]
    sql: dict[str, str]  # relation -> SELECT producing its rows (with ck first when claim-dependent)
    recursive: bool = False
    aggregate: bool = False
    # relation -> each rule's SELECT with the claim-dependent relations from earlier steps its
    # positive body reads: a rule one of them is empty for cannot fire, and is left out of the chunk
    parts: dict[str, list[tuple[frozenset[str], str]]] = field(default_factory=dict)
    # relations whose rules' rows are appended (UNION ALL), not de-duplicated: see _bag
    bags: set[str] = field(default_factory=set)
    # relation -> the relation it projects: a view over it, not a table (see _projection)
    views: dict[str, str] = field(default_factory=dict)
    # relations read by one statement at most: a view of their SELECT, not a table (see _inlined)
    inline: set[str] = field(default_factory=set)
    # table -> (its SELECT, the relations it reads): made again at the start of the step, in every
    # chunk whose rows can fill it, and read by this step's rules and later ones (see _narrowings)
    narrowed: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    # set relation -> the table its rules' rows are appended to before they are copied DISTINCT
    # into its own, when at least STAGED_SELECTS of them can fire (see staged_sql)
    staged: dict[str, str] = field(default_factory=dict)

    def live_sql(self, rel: str, nonempty: set[str] | None) -> str | None:
        """The SELECT for `rel` over the rules that can fire given the relations that have rows
        (None: all of them); None when none can."""
        if nonempty is None:
            return self.sql[rel]
        selects = [sql for needs, sql in self.parts[rel] if needs <= nonempty]
        if rel in self.bags:
            return "\nUNION ALL\n".join(selects) if selects else None
        if len(selects) == 1 < len(self.parts[rel]):  # what the UNION of several rules did: a set
            return f"SELECT DISTINCT * FROM ({selects[0]})"
        return "\nUNION\n".join(selects) if selects else None

    def staged_sql(self, rel: str, nonempty: set[str] | None) -> tuple[str, str] | None:
        """For a relation of `staged` with at least STAGED_SELECTS rules that can fire: the
        statement that makes its staging table of their rows (UNION ALL) and the SELECT DISTINCT
        of that table that fills the relation. The rows are the UNION's, de-duplicated in one
        pipeline instead of one per rule."""
        if rel not in self.staged:
            return None
        selects = [sql for needs, sql in self.parts[rel] if nonempty is None or needs <= nonempty]
        if len(selects) < STAGED_SELECTS:
            return None
        stage = self.staged[rel]
        return f"CREATE OR REPLACE TEMP TABLE {stage} AS\n" + "\nUNION ALL\n".join(
            selects
        ), f"SELECT DISTINCT * FROM {stage}"


@dataclass(frozen=True)
class SolutionLayout:
    """The columns of a rule's solutions SELECT: the claim key first, then each distinct
    expression once (a variable bound to a head argument's column, or to another variable's,
    shares that column), so no value is fetched twice. Rows come ordered by claim, head, then
    the prover's order."""

    head: tuple[tuple[int | None, Value | None], ...]  # per head argument: its column, or (None, the constant)
    names: dict[str, int]  # named variable -> its column (every name of SqlProgram.named_vars that is bound)
    columns: tuple[str, ...] = ()  # each column's expression
    # how the body binds its variables, in the prover's order (see _sort_keys): each positive atom,
    # and each variable an assignment binds with the variables it is computed from
    atoms: tuple[SolutionAtom, ...] | None = ()  # None: not read as the SQL binds them; no shorter sort
    assigned: tuple[tuple[str, frozenset[str]], ...] = ()
    head_vars: frozenset[str] = frozenset()  # the head's variables: the prover solves with them bound
    # the relations of the narrowed table the SELECT reads (see _solution_narrowing): the table is
    # made in a chunk only where both have rows, so the rule has solutions only there
    narrowed: frozenset[str] = frozenset()

    def head_of(self, rec: tuple) -> tuple:
        return tuple(v if col is None else rec[col] for col, v in self.head)


@dataclass(frozen=True)
class SolutionAtom:
    """A positive atom of a rule's body as the solutions SELECT reads it."""

    relation: str
    key: tuple[int, ...]  # its columns bound when the prover reaches it (a constant, or variables bound before)
    args: tuple[frozenset[str], ...]  # the variables each of its columns depends on
    order: tuple[tuple[str, str], ...]  # the columns it adds to the ORDER BY, each with the variable it binds


@dataclass
class SqlProgram:
    cp: CompiledProgram
    types: dict[str, tuple[str, ...]]
    static_steps: list[Step] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    patterns: set[str] = field(default_factory=set)  # constant `match` patterns (checked against RE2)
    # stored relations too big to scan whole for a chunk: a rule that joins one on a value from a
    # claim-dependent relation reads only its rows whose column holds one of the chunk's values
    big: frozenset[str] = frozenset()
    solutions: dict[int, str] = field(default_factory=dict)  # outcome rule index -> its solutions SELECT
    # outcome rule index -> where its solutions SELECT puts the head and the named variables
    solution_layout: dict[int, SolutionLayout] = field(default_factory=dict)
    # outcome rule index -> the head's constant arguments (position, value): a rule has solutions in
    # a chunk only if the outcome relation holds a row with these values
    head_consts: dict[int, tuple[tuple[int, Value], ...]] = field(default_factory=dict)
    # (relation, column) that one rule of the relation fills with a constant and another with a
    # variable: see _frequent_value_test
    const_columns: frozenset[tuple[str, int]] = frozenset()
    # rule index -> the narrowed table it reads for one atom of its body instead of that atom's
    # relation, the atom's position, and the position of the atom it then leaves out (see _narrowings)
    narrowing: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    # rule index -> the positions of the atoms of its body that an earlier atom's rows imply: its
    # SELECT leaves them out (see _implied_atoms)
    implied: dict[int, frozenset[int]] = field(default_factory=dict)
    # (relation, column) of a relation made by joining claim-dependent relations -> the columns of
    # those relations its rules take the column's values from (see _value_sources)
    value_sources: dict[tuple[str, int], tuple[tuple[str, int], ...]] = field(default_factory=dict)

    @staticmethod
    def named_vars(rule: CompiledRule) -> list[str]:
        """The variables a reason's bindings show (engine/explain/proof.py drops names with `_`)."""
        names: set[str] = set()
        for lit in (rule.head, *rule.body):
            if isinstance(lit, IAtom):
                names |= {a.name for a in lit.args if isinstance(a, IVar)}
            elif isinstance(lit, ICompare) and lit.assigns and isinstance(lit.left, IVar):
                names.add(lit.left.name)
        return sorted(n for n in names if not n.startswith("_"))

    def columns(self, rel: str) -> list[str]:
        cols = [f"c{i} {_SQL_TYPE[t]}" for i, t in enumerate(self.types[rel])]
        if self.cp.kinds[rel] in _CK_KINDS:
            cols.insert(0, "ck BIGINT")
        return cols

    def text(self) -> str:
        """Every step's SQL, for `policykb compile --sql`."""
        out: list[str] = []
        if self.big:
            out.append(
                f"-- stored relations of more than {BIG_STORED_ROWS:,} rows, read through the chunk's values they"
                f" are joined to: {', '.join(sorted(self.big))}\n"
            )
        for title, steps in (
            ("static relations (materialised once)", self.static_steps),
            ("claim-dependent relations (per chunk, in order)", self.steps),
        ):
            out.append(f"-- {title}")
            for n, step in enumerate(steps, 1):
                how = " (recursive: repeated until no new rows)" if step.recursive else ""
                out.append(f"-- step {n}: {', '.join(step.relations)}{how}")
                for table, (sql, _) in step.narrowed.items():
                    out.append(f"CREATE OR REPLACE TEMP TABLE {table} AS\n{sql};\n")
                for rel in step.relations:
                    how = "CREATE TEMP VIEW {} AS" if rel in step.views or rel in step.inline else "INSERT INTO {}"
                    staged = step.staged_sql(rel, None)
                    if staged is not None:
                        out.append(f"{staged[0]};\n")
                    sql = step.sql[rel] if staged is None else staged[1]
                    out.append(f"{how.format(table_name(self.cp, rel))}\n{sql};\n")
        return "\n".join(out)


def compile_sql(
    cp: CompiledProgram, types: dict[str, tuple[str, ...]], big: frozenset[str] = frozenset()
) -> SqlProgram:
    filled: dict[tuple[str, int], set[bool]] = {}  # (relation, column) -> whether rules write constants there
    for rule in cp.rules:
        for i, a in enumerate(rule.head.args):
            filled.setdefault((rule.head.relation, i), set()).add(isinstance(a, IConst))
    const_columns = frozenset(col for col, kinds in filled.items() if kinds == {True, False})
    sp = SqlProgram(cp, types, big=big, const_columns=const_columns)
    by_head: dict[str, list[CompiledRule]] = {}
    for rule in cp.rules:
        by_head.setdefault(rule.head.relation, []).append(rule)
    if big:
        sp.value_sources = _value_sources(cp, by_head)
    for members in cp.static_order:
        sp.static_steps.append(_step(sp, members, by_head))
    narrowed = _narrowings(sp, by_head)
    sp.implied = _implied_atoms(sp, by_head)
    for scc in cp.order:
        sp.steps.append(_step(sp, scc, by_head))
        for table, (select, reads, readers) in list(narrowed.items()):
            if readers & set(scc):  # made where it is first read
                sp.steps[-1].narrowed[table] = (select, reads)
                del narrowed[table]
    _inlined(sp, by_head)
    for rule in cp.rules:
        if rule.head.relation in MESSAGE_OUTCOMES and not rule.aux and rule.source_index is not None:
            sql = _rule_sql(sp, rule, solutions=True)
            if sql is not None:
                sp.solutions[rule.index] = sql
                sp.head_consts[rule.index] = tuple(
                    (i, a.value) for i, a in enumerate(rule.head.args) if isinstance(a, IConst)
                )
    return sp


def _step(sp: SqlProgram, members: list[str], by_head: dict[str, list[CompiledRule]]) -> Step:
    cp = sp.cp
    inside = set(members)
    recursive = any(
        isinstance(lit, IAtom) and lit.relation in inside
        for rel in members
        for rule in by_head.get(rel, [])
        for lit in rule.body
    )
    step = Step(list(members), {}, recursive)

    def needs(bodies: list[str]) -> frozenset[str]:
        return frozenset(b for b in bodies if cp.kinds[b] in _CK_KINDS and b not in inside)

    for rel in members:
        if cp.kinds[rel] is RelKind.AGGREGATE:
            step.aggregate = True
            step.sql[rel] = _aggregate_sql(sp, rel)
            step.parts[rel] = [(needs([cp.aggregates[rel].body_relation]), step.sql[rel])]
            continue
        step.parts[rel] = [
            (needs([lit.relation for lit in rule.body if isinstance(lit, IAtom) and not lit.negated]), s)
            for rule in by_head.get(rel, [])
            if (s := _rule_sql(sp, rule)) is not None
        ]
        if not recursive:
            step.parts[rel] = _fused_heads(step.parts[rel])
        selects = [s for _, s in step.parts[rel]]
        if not selects:  # no rule can fire (e.g. every one joins a number with a symbol): no rows
            cols = ["ck"] if cp.kinds[rel] in _CK_KINDS else []
            cols += [f"CAST(NULL AS {_SQL_TYPE[t]})" for t in sp.types[rel]]
            selects = [f"SELECT {', '.join(cols)} FROM {_q('_claims')} WHERE FALSE"]
        if _bag(cp, rel, recursive):
            step.bags.add(rel)
            step.parts[rel] = _fused(step.parts[rel])
            selects = [s for _, s in step.parts[rel]] or selects
            source = _projection(cp, by_head.get(rel, []))
            if source is not None:
                step.views[rel] = source
        elif rel in OUTCOMES and len(step.parts[rel]) == 1:  # an answer is a set, whatever its body reads
            needs_one, select = step.parts[rel][0]
            step.parts[rel] = [(needs_one, f"SELECT DISTINCT * FROM ({select})")]
            selects = [step.parts[rel][0][1]]
        step.sql[rel] = ("\nUNION ALL\n" if rel in step.bags else "\nUNION\n").join(selects)
        if rel not in step.bags and not recursive and len(step.parts[rel]) >= STAGED_SELECTS:
            step.staged[rel] = _q(f"u:{rel}")
    return step


def _bag(cp: CompiledProgram, rel: str, recursive: bool) -> bool:
    """Whether a per-chunk relation may hold a row twice. Its table is then filled with UNION ALL,
    which spares the hash de-duplication of every row (a fifth of the time of a big UNION). No
    reader can tell: a join or NOT EXISTS gives the same set of rows over a table holding a row
    twice, an aggregate reads its body DISTINCT (_aggregate_sql), and a relation derived by a
    single rule was never de-duplicated anyway. Kept as sets: the outcome relations (fetched as
    each claim's answer, de-duplicated even when a single rule derives them), recursive
    components (their fixpoint test compares sets, EXCEPT) and the static relations
    (materialised once)."""
    return cp.kinds[rel] in (RelKind.CLAIM, RelKind.FACTS, RelKind.DYNAMIC) and rel not in OUTCOMES and not recursive


_LITERAL = re.compile(r"'(?:[^']|'')*'")


def _fused(parts: list[tuple[frozenset[str], str]]) -> list[tuple[frozenset[str], str]]:
    """A bag relation's rule SELECTs (see _bag), with rules that differ in one WHERE condition
    only made one SELECT whose condition is the OR of theirs (kb/codes/periods.dl: a date before
    a table's period, or after it): it holds the same rows, but the body is joined once, and
    DuckDB joins the two conditions as one filter instead of planning an inequality join for
    each. A row both conditions keep is then appended once, not twice, which no reader of a bag
    can tell."""
    return _merged(parts, _or_pair)


def _fused_heads(parts: list[tuple[frozenset[str], str]]) -> list[tuple[frozenset[str], str]]:
    """Rules that differ only in a constant of their head and in the constant one column of their
    body equals, made one SELECT: the column is tested against both constants (an IN list) and
    the head's constant is chosen by the column's value (a CASE). No row meets both tests, so
    every row comes once, with the head of the rule whose test it meets: the rows are the two
    rules'. The body is then joined once (kb/ncci/mue.dl: a date's units against the MUE of
    policy 2, or of policy 3)."""
    return _merged(parts, _head_pair)


def _merged(
    parts: list[tuple[frozenset[str], str]], pair: Callable[[list[str], list[str]], list[str] | None]
) -> list[tuple[frozenset[str], str]]:
    """Rule SELECTs with each one that `pair` can make one with an earlier one (reading the same
    relations) merged into it. Compared as text, line by line (`_rule_sql` writes one condition a
    line, the head's SELECT first); a SELECT with a line break inside a string constant is left
    as it is."""
    out: list[tuple[frozenset[str], list[str]]] = []
    for needs, sql in parts:
        lines = sql.split("\n")
        if not any("\n" in lit for lit in _LITERAL.findall(sql)):
            for n, (other_needs, other) in enumerate(out):
                merged = pair(other, lines) if other_needs == needs and len(other) == len(lines) else None
                if merged is not None:
                    out[n] = (needs, merged)
                    break
            else:
                out.append((needs, lines))
            continue
        out.append((needs, [sql]))  # one piece: nothing is merged with it
    return [(needs, "\n".join(lines)) for needs, lines in out]


def _or_pair(one: list[str], two: list[str]) -> list[str] | None:
    """_fused's SELECT for two rules' lines of the same length, or None when they are not alike so."""
    differ = [i for i, (a, b) in enumerate(zip(one, two, strict=True)) if a != b]
    if len(differ) != 1:
        return None
    i = differ[0]
    prefix = two[i][:6]
    if prefix not in ("WHERE ", "  AND ") or not one[i].startswith(prefix):
        return None
    return [*one[:i], f"{prefix}(({one[i][6:]}) OR ({two[i][6:]}))", *one[i + 1 :]]


_CONST_TEST = re.compile(r"\((t\d+\.c\d+) = ('(?:[^']|'')*'|-?\d+)\)")


def _head_pair(one: list[str], two: list[str]) -> list[str] | None:
    """_fused_heads's SELECT for two rules' lines of the same length, or None when they are not
    alike so (the two constants tested must be of one type: a column never equals both a number
    and a symbol, and an IN list of both would not be type-safe). Besides the test of a column
    against their two constants, the rules may differ in other conditions (kb/codes/validity.dl:
    a place of service of the facility kind and the fee schedule's facility indicator, or of the
    non-facility kind and its non-facility indicator): they are then one condition, `(col = one's
    value AND one's conditions) OR (col = two's value AND two's conditions)`, which DuckDB can
    still narrow each table's scan by (the OR of each rule's tests of that table)."""
    if one[0] == two[0]:
        return None
    differ = [i for i, (a, b) in enumerate(zip(one, two, strict=True)) if a != b]
    if len(differ) < 2 or differ[0] != 0:
        return None
    prefix = {i: one[i][:6] for i in differ[1:]}
    if any(p not in ("WHERE ", "  AND ") or not two[i].startswith(p) for i, p in prefix.items()):
        return None
    tests = [(i, _CONST_TEST.fullmatch(one[i][6:]), _CONST_TEST.fullmatch(two[i][6:])) for i in differ[1:]]
    apart_tests = [
        (i, t1, t2)
        for i, t1, t2 in tests
        if t1 is not None
        and t2 is not None
        and t1[1] == t2[1]
        and t1[2] != t2[2]
        and t1[2].startswith("'") == t2[2].startswith("'")
    ]
    if not apart_tests:
        return None
    i, test_one, test_two = apart_tests[0]
    heads_one, heads_two = _LITERAL.findall(one[0]), _LITERAL.findall(two[0])
    if _LITERAL.sub("''", one[0]) != _LITERAL.sub("''", two[0]) or len(heads_one) != len(heads_two):
        return None
    apart = [k for k, (a, b) in enumerate(zip(heads_one, heads_two, strict=True)) if a != b]
    if len(apart) != 1:
        return None
    col, value_one, value_two = test_one[1], test_one[2], test_two[2]
    case = f"CASE {col} WHEN {value_one} THEN {heads_one[apart[0]]} WHEN {value_two} THEN {heads_two[apart[0]]} END"
    pieces = _LITERAL.split(one[0])  # the text around each literal
    head = pieces[0] + "".join((case if k == apart[0] else lit) + pieces[k + 1] for k, lit in enumerate(heads_one))
    out = [head, *one[1:]]
    out[i] = f"{prefix[i]}({col} IN ({value_one}, {value_two}))"
    rest = [j for j in differ[1:] if j != i]
    if rest:  # on the first of their lines, the others dropped
        either = " OR ".join(
            "(" + " AND ".join([f"{col} = {value}", *(lines[j][6:] for j in rest)]) + ")"
            for value, lines in ((value_one, one), (value_two, two))
        )
        out[rest[0]] = f"{prefix[rest[0]]}({either})"
        out = [line for j, line in enumerate(out) if j not in rest[1:]]
    return out


def _projection(cp: CompiledProgram, rules: list[CompiledRule]) -> str | None:
    """The relation a bag relation's (see _bag) only rule copies, when that rule's body is one
    positive claim-dependent atom of distinct variables: the relation is then a view of its
    SELECT, and no chunk copies the rows. A reader sees the very rows the table would hold (the
    table of a bag relation is not de-duplicated either), and the view has rows exactly when
    its source has."""
    if len(rules) != 1 or len(rules[0].body) != 1:
        return None
    (lit,) = rules[0].body
    if not isinstance(lit, IAtom) or lit.negated or cp.kinds[lit.relation] not in _CK_KINDS:
        return None
    names = [a.name for a in lit.args if isinstance(a, IVar)]
    if len(names) != len(lit.args) or len(set(names)) != len(names):
        return None
    return lit.relation


def _inlined(sp: SqlProgram, by_head: dict[str, list[CompiledRule]]) -> None:
    """Marks the per-chunk relations that are views of their SELECT instead of tables
    (Step.inline): an aggregate, or a bag relation (see _bag) derived by rules, that is read,
    positively, by one statement at most, not counting the statements a view reading it is part of but the ones
    that read that view. Writing a table costs more than computing its rows (some 80 ns a symbol:
    line_uses_table's 108,000 rows of a 5,000-claim chunk take 10 ms to store, 6 ms to compute),
    and its one reader then computes the rows as part of its own statement instead (line_uses_table
    inside outside_table_period, service and _agg5 inside units_on_date). Left as tables: a relation a negation
    reads (a view under NOT EXISTS was measured slower), one a recursive step reads (computed
    again on every round), one an outcome rule reads (its solutions SELECT, which fills the
    message, would compute it again) and one read twice (computed twice)."""
    cp = sp.cp
    step_of = {rel: step for step in sp.steps for rel in step.relations}
    readers: dict[str, set[str]] = {}  # relation -> the relations whose rules (or aggregate) read it
    negated: set[str] = set()
    for rule in cp.rules:
        for lit in rule.body:
            if isinstance(lit, IAtom):
                readers.setdefault(lit.relation, set()).add(rule.head.relation)
                if lit.negated:
                    negated.add(lit.relation)
    for res, spec in cp.aggregates.items():
        readers.setdefault(spec.body_relation, set()).add(res)
    reads: dict[str, float] = {}  # relation -> the statements that compute its rows (views: their readers')
    narrowing = [sql for step in sp.steps for sql, _ in step.narrowed.values()]  # statements of their own
    # a narrowed table is made when chunks run: a view reading it could not be created before
    narrowed_readers = {rule.head.relation for rule in cp.rules if rule.index in sp.narrowing}
    for step in reversed(sp.steps):  # a relation's readers come in later steps
        for rel in step.relations:
            table = table_name(cp, rel)
            count = 0.0 if rel not in narrowed_readers else float("inf")
            count += sum(sql.count(table) for sql in narrowing)
            for head in readers.get(rel, ()):
                reader = step_of.get(head)
                if reader is None or head in OUTCOMES or reader.recursive:
                    count = float("inf")
                    break
                times = reader.sql[head].count(table)  # rules fused into one SELECT read it once
                if head in reader.views or head in reader.inline:  # computed where the view is read
                    count += times * reads[head]
                    if head in negated:
                        negated.add(rel)
                else:
                    count += times
            reads[rel] = count
            if (
                count <= 1
                and rel not in negated
                and rel not in step.views
                and (
                    (cp.kinds[rel] is RelKind.DYNAMIC and rel in step.bags and by_head.get(rel))
                    or cp.kinds[rel] is RelKind.AGGREGATE  # groups with rows only, whether stored or not
                )
            ):
                step.inline.add(rel)


def _narrowings(
    sp: SqlProgram, by_head: dict[str, list[CompiledRule]]
) -> dict[str, tuple[str, frozenset[str], set[str]]]:
    """Joins that several per-chunk rules make alike, made once per chunk instead. A rule whose
    body has a positive claim-dependent atom A and, before or after it, a positive claim-dependent
    atom B that only tests A's rows (each argument of B is a constant, a variable of A, or a
    variable used nowhere else in the rule) reads A's rows that hold A's constants and have a row
    of B, a table made once per chunk (Step.narrowed), and leaves B out. B may come first where no
    literal between them reads its variables (see _binds_between). Done where NARROWED_RULES
    rules at least make the same test: partner (35 rows a claim) joined with the injection lines,
    in nine rules, eight of them for 'this claim' (a 5,000-claim chunk: 66 ms -> 34 ms for the
    eight; the ninth, same_day_em, names the injection lines first and reads every source: with
    it the table tests no source and each reader its own, 10,000 claims: 39 -> 27 ms for the table
    and its readers). The rule finds the same rows, less often the same row twice (A's row once,
    not once for each row of B it joins), which no reader of a per-chunk relation can tell (see
    _bag). A rule that tests more of A's constants than the others shares the table of the ones
    they share; a rule takes part in one such table at most. Fills sp.narrowing; returns table ->
    (its SELECT, the relations it reads, the relations whose rules read it)."""
    cp, types = sp.cp, sp.types
    # (A, some of its constant tests, B, how B's columns are tested) -> (rule, A's position, B's)
    found: dict[
        tuple[str, tuple[tuple[int, Value], ...], str, tuple[tuple[int, int | None, Value | None], ...]],
        list[tuple[CompiledRule, int, int]],
    ] = {}
    step_of = {rel: n for n, scc in enumerate(cp.order) for rel in scc}
    for rule in cp.rules:
        if cp.kinds[rule.head.relation] not in (RelKind.CLAIM, RelKind.FACTS, RelKind.DYNAMIC):
            continue
        uses: Counter[str] = Counter(_term_vars_all(rule))
        here = step_of.get(rule.head.relation, -1)
        for ai, a in enumerate(rule.body):
            if not _narrowable(a, cp) or step_of.get(a.relation, -1) >= here:
                continue
            a_tests: list[tuple[int, Value]] = []
            for j, arg in enumerate(a.args):
                if isinstance(arg, IOp):
                    break
                if isinstance(arg, IConst):
                    a_tests.append((j, arg.value))
            else:
                of_a = {arg.name: j for j, arg in reversed(list(enumerate(a.args))) if isinstance(arg, IVar)}
                for bi, b in enumerate(rule.body):
                    if bi == ai or not _narrowable(b, cp) or step_of.get(b.relation, -1) >= here:
                        continue  # (a relation of the rule's own step changes while the step runs)
                    if bi < ai and _binds_between(rule, bi, ai, b):
                        continue
                    spec: list[tuple[int, int | None, Value | None]] = []  # B's column, A's column or a constant
                    for i, arg in enumerate(b.args):
                        if isinstance(arg, IConst):
                            spec.append((i, None, arg.value))
                        elif isinstance(arg, IVar) and arg.name in of_a:
                            spec.append((i, of_a[arg.name], None))
                        elif not (isinstance(arg, IVar) and uses[arg.name] == 1):
                            break
                    else:  # rules that test A on some constants more than the others share the rest
                        for k in range(len(a_tests) + 1):
                            for some in itertools.combinations(a_tests, k):
                                key = (a.relation, some, b.relation, tuple(spec))
                                found.setdefault(key, []).append((rule, ai, bi))
    out: dict[str, tuple[str, frozenset[str], set[str]]] = {}
    taken: set[int] = set()
    # the tests most rules make first, then the narrowest of them
    for key, places in sorted(found.items(), key=lambda kv: (-len({r.index for r, _, _ in kv[1]}), -len(kv[0][1]))):
        places = [(r, ai, bi) for r, ai, bi in places if r.index not in taken]
        a_rel, shared, b_rel, joined = key
        if len({r.index for r, _, _ in places}) < NARROWED_RULES:
            continue
        tests = [sql_compare("=", f"c{j}", types[a_rel][j], *sql_value(v)) for j, v in shared]
        tests = [  # as _rule_sql tests such a column (partner's "this claim": 24 ms -> 14 ms a 5,000-claim chunk)
            _frequent_value_test(f"c{j}", sql_value(v)[0])
            if test != "FALSE" and (a_rel, j) in sp.const_columns
            else test
            for (j, v), test in zip(shared, tests, strict=True)
        ]
        inner = [
            sql_compare("=", f"c{i}", types[b_rel][i], *sql_value(v))
            for i, j, v in joined
            if j is None and v is not None
        ]
        pairs = [("ck", "ck")] + [(f"c{j}", f"c{i}") for i, j, _ in joined if j is not None]
        if (
            "FALSE" in tests
            or "FALSE" in inner
            or any(types[a_rel][j] != types[b_rel][i] for i, j, _ in joined if j is not None)
        ):
            continue  # the rules cannot fire (see _rule_sql): left as they are
        ours = "(" + ", ".join(x for x, _ in pairs) + ")" if len(pairs) > 1 else pairs[0][0]
        sub = f"SELECT {', '.join(y for _, y in pairs)} FROM {table_name(cp, b_rel)}"
        if inner:
            sub += " WHERE " + " AND ".join(inner)
        where = " AND ".join([*tests, f"{ours} IN ({sub})"])
        table = _q(f"n:{a_rel}#{len(out) + 1}")
        out[table] = (f"SELECT * FROM {table_name(cp, a_rel)} WHERE {where}", frozenset((a_rel, b_rel)), set())
        for rule, ai, bi in places:
            if rule.index in taken:
                continue
            taken.add(rule.index)
            sp.narrowing[rule.index] = (table, ai, bi)
            out[table][2].add(rule.head.relation)
    return out


def _implied_atoms(sp: SqlProgram, by_head: dict[str, list[CompiledRule]]) -> dict[int, frozenset[int]]:
    """For each per-chunk rule, the positive claim-dependent atoms B of its body that an earlier
    positive claim-dependent atom A implies: B's arguments are distinct variables, each used
    nowhere else in the rule or also an argument of A, and every row of A's relation has a row
    of B's, in the same claim, holding A's values of those variables where B holds them (see
    _included). Joining B then keeps every row of the rest of the body, and only repeats some,
    which no reader of a per-chunk relation can tell (see _bag; an outcome is read DISTINCT), so
    the rule's SELECT leaves B out (kb/codes/periods.dl: a line outside a table's period, whose
    rows come from the line's own, joined again to the line only for a date it does not use:
    10,000 claims, warn 182M -> 145M instructions). B is of an earlier step than the rule's head
    (its table is whole). A solutions SELECT keeps every atom (it shows their variables), and so
    does a rule with a narrowed table (see _narrowings), whose atoms it places by position."""
    cp = sp.cp
    step_of = {rel: n for n, scc in enumerate(cp.order) for rel in scc}
    memo: dict[tuple[str, tuple[tuple[int, int], ...], str], bool] = {}
    out: dict[int, frozenset[int]] = {}
    for rule in cp.rules:
        here = step_of.get(rule.head.relation)
        if here is None or rule.index in sp.narrowing:
            continue
        uses = Counter(_term_vars_all(rule))
        implied: set[int] = set()
        for bi, b in enumerate(rule.body):
            if not _positive_claim_atom(b, cp) or step_of.get(b.relation, -1) >= here:
                continue
            names = [a.name for a in b.args if isinstance(a, IVar)]
            if len(names) != len(b.args) or len(set(names)) != len(names):
                continue
            shared = [(v, p) for p, v in enumerate(names) if uses[v] > 1]
            for ai, a in enumerate(rule.body[:bi]):
                if ai in implied or not _positive_claim_atom(a, cp):
                    continue
                pairs = _places(a, shared)
                if pairs is not None and _included(cp, by_head, a.relation, pairs, b.relation, memo, frozenset()):
                    implied.add(bi)
                    break
        if implied:
            out[rule.index] = frozenset(implied)
    return out


def _positive_claim_atom(lit: ILiteral, cp: CompiledProgram) -> TypeGuard[IAtom]:
    return isinstance(lit, IAtom) and not lit.negated and cp.kinds.get(lit.relation) in _CK_KINDS


def _included(
    cp: CompiledProgram,
    by_head: dict[str, list[CompiledRule]],
    rel: str,
    pairs: tuple[tuple[int, int], ...],
    target: str,
    memo: dict[tuple[str, tuple[tuple[int, int], ...], str], bool],
    seen: frozenset[str],
) -> bool:
    """Whether every row of the per-chunk relation `rel` has a row of `target` in the same claim
    whose column p holds the row's column i, for each (i, p) of `pairs`: `rel` is `target` read
    at the same columns, or a derived relation each of whose rules has the head's variable at
    each i and a positive claim-dependent atom of its body holding them all, of `target` at the
    columns p or of a relation itself so included (its rows are made only from such rows; a
    relation that reaches itself so is taken as not included)."""
    if rel == target and all(i == p for i, p in pairs):
        return True
    key = (rel, pairs, target)
    if key in memo:
        return memo[key]
    rules = by_head.get(rel, [])
    found = cp.kinds[rel] is RelKind.DYNAMIC and bool(rules) and rel not in seen
    for rule in rules if found else ():
        names = [(v.name, p) for i, p in pairs if isinstance(v := rule.head.args[i], IVar)]
        found = len(names) == len(pairs) and any(
            _included(cp, by_head, lit.relation, places, target, memo, seen | {rel})
            for lit in rule.body
            if _positive_claim_atom(lit, cp) and (places := _places(lit, names)) is not None
        )
        if not found:
            break
    memo[key] = found
    return found


def _places(atom: IAtom, names: Sequence[tuple[str, int]]) -> tuple[tuple[int, int], ...] | None:
    """For each (variable, column) of `names`, the atom's column holding the variable with that
    column; None when the atom does not hold them all."""
    at = {a.name: j for j, a in enumerate(atom.args) if isinstance(a, IVar)}
    if not all(v in at for v, _ in names):
        return None
    return tuple((at[v], p) for v, p in names)


def _binds_between(rule: CompiledRule, bi: int, ai: int, b: IAtom) -> bool:
    """Whether a literal between B (at bi) and A (at ai, after it) reads a variable of B: left
    out, B would no longer bind it there (a negation would then match anything)."""
    of_b = {arg.name for arg in b.args if isinstance(arg, IVar)}
    return any(not of_b.isdisjoint(_literal_vars(lit)) for lit in rule.body[bi + 1 : ai])


def _narrowable(lit: ILiteral, cp: CompiledProgram) -> TypeGuard[IAtom]:
    return (
        isinstance(lit, IAtom)
        and not lit.negated
        and cp.kinds.get(lit.relation) in (RelKind.CLAIM, RelKind.FACTS, RelKind.DYNAMIC, RelKind.AGGREGATE)
    )


def _term_vars_all(rule: CompiledRule) -> Iterable[str]:
    """Every occurrence of a variable in the rule (head and body)."""
    for lit in (rule.head, *rule.body):
        yield from _literal_vars(lit)


def _literal_vars(lit: ILiteral) -> Iterable[str]:
    """Every occurrence of a variable in one literal."""
    terms: tuple[ITerm, ...]
    if isinstance(lit, IAtom):
        terms = lit.args
    elif isinstance(lit, ICompare):
        terms = (lit.left, lit.right)
    else:
        terms = (lit.pattern, lit.value)
    for t in terms:
        yield from _occurrences(t)


def _occurrences(t: ITerm) -> Iterable[str]:
    if isinstance(t, IVar):
        yield t.name
    elif isinstance(t, IOp):
        yield from _occurrences(t.left)
        yield from _occurrences(t.right)


def _aggregate_sql(sp: SqlProgram, rel: str) -> str:
    """Mirrors evaluate._fold: only groups that have rows; the body relation is a set, so count
    counts distinct rows and sum adds over distinct rows."""
    spec = sp.cp.aggregates[rel]
    group = ["ck", *(f"c{i}" for i in range(spec.group_arity))]
    if spec.func == "count":
        value = "COUNT(*)"
    else:
        assert spec.target_pos is not None
        target = f"c{spec.target_pos}"
        value = {"sum": f"CAST(SUM({target}) AS BIGINT)", "min": f"MIN({target})", "max": f"MAX({target})"}[spec.func]
    value += f" AS c{spec.group_arity}"  # read by name where the aggregate is a view (_inlined)
    # DISTINCT: a relation derived by a single rule, or filled with UNION ALL (_bag), is not
    # de-duplicated when its step runs, and a repeated row must not be summed or counted twice
    body = f"(SELECT DISTINCT * FROM {table_name(sp.cp, spec.body_relation)})"
    return f"SELECT {', '.join(group)}, {value} FROM {body} GROUP BY {', '.join(group)}"


def _semi_joined(
    sp: SqlProgram,
    table: str,
    args: Sequence[ITerm],
    cols: tuple[str, ...],
    env: dict[str, tuple[str, str]],
    claim_side: dict[str, tuple[str, int]],
) -> str:
    """A big stored table as it is joined: restricted, on the first column the rule joins to a
    variable bound from a claim-dependent relation, to the values that relation holds (a superset
    of the rows the join keeps, small enough for DuckDB to push into the table scan). The values
    are read DISTINCT: DuckDB sizes the filter it pushes into the scan (a Bloom filter, or an IN
    list under 50 values) by the rows of the semi-join's build side, and a filter built from the
    chunk's 2,600 distinct codes instead of partner's 173,000 rows stays in cache while every row
    of the big table probes it (NCCI PTP, 2.55M rows: a third less time for the scan and join).
    Where that relation is a join whose rules copy the column from smaller ones, they give the
    values instead (see _value_sources)."""
    for i, a in enumerate(args):
        if isinstance(a, IVar) and a.name in claim_side and env[a.name][1] == cols[i]:
            src, col = claim_side[a.name]
            sources = sp.value_sources.get((src, col), ((src, col),))
            if len(sources) == 1:
                values = f"SELECT DISTINCT c{sources[0][1]} FROM {table_name(sp.cp, sources[0][0])}"
            else:
                values = " UNION ".join(f"SELECT c{j} FROM {table_name(sp.cp, rel)}" for rel, j in sources)
            return f"(SELECT * FROM {table} WHERE c{i} IN ({values}))"
    return table


def _value_sources(
    cp: CompiledProgram, by_head: dict[str, list[CompiledRule]]
) -> dict[tuple[str, int], tuple[tuple[str, int], ...]]:
    """For a per-chunk relation each of whose rules joins two claim-dependent relations or more:
    each column whose value every rule copies from a column of a positive claim-dependent atom of
    its body -> those columns. Every value of the column is in one of them, so a big table's
    semi-join (see _semi_joined) can read its values there: a join's rows are many more than its
    inputs' (partner, 35 rows a claim, copies its code from line, 6.6 rows a claim, and history:
    the DISTINCT over 351,197 rows of a 10,000-claim chunk becomes a UNION over 67,678, which hold
    4,168 codes instead of 4,100; ptp_started's statement 735 -> 704 M instructions)."""
    out: dict[tuple[str, int], tuple[tuple[str, int], ...]] = {}
    for rel, rules in by_head.items():
        if cp.kinds[rel] is not RelKind.DYNAMIC:
            continue
        claim_atoms = [
            [
                lit
                for lit in rule.body
                if isinstance(lit, IAtom) and not lit.negated and cp.kinds[lit.relation] in _CK_KINDS
            ]
            for rule in rules
        ]
        if any(len(atoms) < 2 for atoms in claim_atoms):
            continue
        for i in range(len(rules[0].head.args)):
            found = [
                _copied_from(rule.head.args[i], atoms, rel) for rule, atoms in zip(rules, claim_atoms, strict=True)
            ]
            if all(src is not None for src in found):
                out[(rel, i)] = tuple(dict.fromkeys(src for src in found if src is not None))
    return out


def _copied_from(arg: ITerm, atoms: list[IAtom], rel: str) -> tuple[str, int] | None:
    """The first column of `atoms` (other than `rel`'s own) that holds the head variable `arg`."""
    if not isinstance(arg, IVar):
        return None
    for atom in atoms:
        for j, a in enumerate(atom.args):
            if atom.relation != rel and isinstance(a, IVar) and a.name == arg.name:
                return atom.relation, j
    return None


def _frequent_value_test(col: str, value: str) -> str:
    """`col = value` for a column that one rule fills with a constant and another with a variable
    (SqlProgram.const_columns), written so that DuckDB's planner does not see an equality. It
    estimates an equality from the column's distinct count, as if the value were as rare as any
    other; but a constant stands for all the rows of its rule (partner's "this claim" is 99% of
    its rows, the rule that writes a variable there gives the distinct values), and the planner
    then builds its hash table on the big side of a join. An IN list is estimated with the
    default selectivity, and gives the same rows (columns are never NULL). Where every rule
    writes a constant (deny's rule ids), the distinct count is the number of rules: the estimate
    is right, and the equality stays."""
    return f"({col} IN ({value}, {value}))"


def _not_in(table: str, alias: str, keys: list[tuple[str, str, str | None]], consts: list[str]) -> str:
    """A negated atom, `NOT EXISTS (SELECT 1 FROM table alias WHERE column = value AND ...)`,
    written as `(value, ...) NOT IN (SELECT column, ... FROM table alias WHERE constant tests)`.
    `keys`: each column of the atom that must equal a value of the rule (its claim key, bound
    variables) with the value and its type (None: a claim key); `consts`: the tests of its columns
    against constants. DuckDB plans a correlated NOT EXISTS as a dependent join (a CTE of the
    outer rows, a DISTINCT of their values, an anti join), which costs every negation of every
    rule a millisecond or two of planning in every chunk; the NOT IN is one mark join (a
    10-claim chunk: 6% fewer instructions; ptp_bypassed, four rules and five negations,
    16.8 -> 12.7 ms). The rows are the same but for NULLs, where NOT IN is unknown and NOT EXISTS
    finds no equal row: a symbol (read with force_not_null) and a claim key are never NULL, a
    number is NULL only where a fact leaves it out, and that NULL is tested for on both sides."""
    nullable = [(col, value) for col, value, t in keys if t == NUM]
    where = consts + [f"{col} IS NOT NULL" for col, _ in nullable]
    values = keys[0][1] if len(keys) == 1 else "(" + ", ".join(value for _, value, _ in keys) + ")"
    test = f"{values} NOT IN (SELECT {', '.join(col for col, _, _ in keys)} FROM {table} {alias}"
    test += (" WHERE " + " AND ".join(where) + ")") if where else ")"
    if nullable:
        return "(" + " OR ".join(f"{value} IS NULL" for _, value in nullable) + f" OR {test})"
    return test


def _anti_joined(source: str, conds: list[str], anti: dict[str, str]) -> tuple[list[str], list[str]]:
    """A per-chunk rule of one positive atom: its negations of claim-dependent relations as ANTI
    JOINs of the atom instead of NOT IN (`anti`: each NOT IN condition -> its ANTI JOIN), the
    other conditions kept. DuckDB builds a NOT IN's hash table on the negated relation, however
    big, but an ANTI JOIN's on the smaller side (kb/: the injection lines without a diagnosis
    pointer, 3,700 rows of a 10,000-claim chunk against line_diagnosis' 99,000: 7.5 -> 3.5 ms).
    An ANTI JOIN keeps a row unless an equal row exists, as NOT EXISTS does: a NULL equals
    nothing. Where other atoms are joined the NOT IN stays (every negation an anti join of the
    atom that binds its values: no fewer instructions over a chunk), and so does a negation of a
    stored or static relation, small, the build side the NOT IN has already (as anti joins, deny's
    three of them cost 96 -> 106 ms)."""
    return [" ".join([source, *anti.values()])], [c for c in conds if c not in anti]


class _NoRows(Exception):
    """The rule can never fire (e.g. a join of a number with a symbol)."""


def _rule_sql(sp: SqlProgram, rule: CompiledRule, *, solutions: bool = False) -> str | None:
    """The rule as one SELECT of (ck, head columns). With `solutions`: one row per solution of the
    body instead, with the head and every named variable (laid out as sp.solution_layout says),
    ordered by claim and head, then as the prover enumerates solutions (depth first, each
    positive atom's candidates sorted by row). Only the columns that bind a new variable order
    them: any other column equals a constant or a column before it."""
    cp, types = sp.cp, sp.types
    order: list[str] = []
    froms: list[str] = []
    conds: list[str] = []
    env: dict[str, tuple[str, str]] = {}
    claim_side: dict[
        str, tuple[str, int]
    ] = {}  # variable -> (relation, column) it was first bound from, if claim-dependent
    ck: str | None = None
    head_has_ck = cp.kinds[rule.head.relation] in _CK_KINDS
    anti: dict[str, str] = {}  # each NOT IN of a claim-dependent relation -> the same test as an ANTI JOIN

    def term(t: ITerm) -> tuple[str, str]:
        if isinstance(t, IConst):
            return sql_value(t.value)
        if isinstance(t, IVar):
            if t.name not in env:
                raise BackendUnsupported(f"variable {t.name} is used before it is bound")
            return env[t.name]
        left, right = term(t.left), term(t.right)
        expr = sql_arith(t.op, left[0], left[1], right[0], right[1])
        if expr is None:
            raise _NoRows
        return expr, NUM

    narrowing = _solution_narrowing(sp, rule) if solutions else sp.narrowing.get(rule.index)
    implied = frozenset() if solutions else sp.implied.get(rule.index, frozenset())
    try:
        for n, lit in enumerate(rule.body):
            if narrowing is not None and n == narrowing[2]:
                continue  # the narrowed table holds only the rows it joins: see _narrowings
            if n in implied:
                continue  # an earlier atom's rows have its rows: see _implied_atoms
            if isinstance(lit, IAtom):
                has_ck = cp.kinds[lit.relation] in _CK_KINDS
                alias = f"t{n}"
                cols = types[lit.relation]
                if lit.negated:
                    sub: list[str] = []
                    equal: list[tuple[str, str, str | None]] = []  # its columns bound to values, see _not_in
                    consts: list[str] = []
                    as_not_in = not solutions  # a solutions SELECT keeps its NOT EXISTS
                    if has_ck:
                        if ck is None:
                            froms.append(f"{_q('_claims')} k")
                            ck = "k.ck"
                        sub.append(f"{alias}.ck = {ck}")
                        equal.append((f"{alias}.ck", ck, None))
                    for i, a in enumerate(lit.args):
                        if isinstance(a, IVar) and a.name not in env:
                            continue  # an unbound variable under negation matches anything
                        expr, t = term(a)
                        c = sql_compare("=", f"{alias}.c{i}", cols[i], expr, t)
                        sub.append(c)
                        if c == "FALSE" or isinstance(a, IOp):  # never equal; NULL where it has no result
                            as_not_in = False
                        elif isinstance(a, IConst):
                            consts.append(c)
                        else:
                            equal.append((f"{alias}.c{i}", expr, t))
                    if as_not_in and equal:
                        conds.append(_not_in(table_name(cp, lit.relation), alias, equal, consts))
                        if has_ck:
                            anti[conds[-1]] = f"ANTI JOIN {table_name(cp, lit.relation)} {alias} ON {' AND '.join(sub)}"
                        continue
                    where = " AND ".join(sub) or "TRUE"
                    conds.append(f"NOT EXISTS (SELECT 1 FROM {table_name(cp, lit.relation)} {alias} WHERE {where})")
                    continue
                source = table_name(cp, lit.relation)
                if narrowing is not None and n == narrowing[1]:
                    source = narrowing[0]
                if lit.relation in sp.big:
                    source = _semi_joined(sp, source, lit.args, cols, env, claim_side)
                froms.append(f"{source} {alias}")
                if has_ck:
                    if ck is None:
                        ck = f"{alias}.ck"
                    else:
                        conds.append(f"{alias}.ck = {ck}")
                for i, a in enumerate(lit.args):
                    col = f"{alias}.c{i}"
                    if isinstance(a, IVar) and a.name not in env:
                        env[a.name] = (col, cols[i])
                        order.append(col)
                        if has_ck:
                            claim_side[a.name] = (lit.relation, i)
                        continue
                    expr, t = term(a)
                    c = sql_compare("=", col, cols[i], expr, t)
                    if c == "FALSE":
                        raise _NoRows
                    if not solutions and has_ck and isinstance(a, IConst) and (lit.relation, i) in sp.const_columns:
                        c = _frequent_value_test(col, expr)  # same kinds: sql_compare gave an equality
                    conds.append(c)
            elif isinstance(lit, ICompare):
                if lit.assigns and isinstance(lit.left, IVar) and lit.left.name not in env:
                    expr, t = term(lit.right)
                    if isinstance(lit.right, IOp):
                        conds.append(f"{expr} IS NOT NULL")
                    env[lit.left.name] = (expr, t)
                    continue
                (le, lt), (re_, rt) = term(lit.left), term(lit.right)
                c = sql_compare(lit.op, le, lt, re_, rt)
                if c == "FALSE":
                    raise _NoRows
                if c != "TRUE":
                    conds.append(c)
            else:
                assert isinstance(lit, IMatch)
                (pe, pt), (ve, vt) = term(lit.pattern), term(lit.value)
                const = lit.pattern.value if isinstance(lit.pattern, IConst) else None
                if isinstance(const, str):
                    sp.patterns.add(const)
                c = sql_match(pe, pt, ve, vt, lit.negated, const)
                if c == "FALSE":
                    raise _NoRows
                if c != "TRUE":
                    conds.append(c)
        if head_has_ck and ck is None:
            froms.append(f"{_q('_claims')} k")
            ck = "k.ck"
        head_types = types[rule.head.relation]
        select: list[str] = [ck] if head_has_ck and ck is not None else []
        for i, a in enumerate(rule.head.args):
            expr, t = term(a)
            if t != head_types[i]:
                raise _NoRows
            select.append(f"{expr} AS c{i}")
        if solutions:
            exprs = [ck or "0"]  # see SolutionLayout
            head: list[tuple[int | None, Value | None]] = []
            for a in rule.head.args:
                if isinstance(a, IConst):
                    head.append((None, a.value))
                    continue
                expr = term(a)[0]
                if expr not in exprs:
                    exprs.append(expr)
                head.append((exprs.index(expr), None))
            keys = [str(col + 1) for col, _ in head if col is not None]
            placed: dict[str, int] = {}
            for v in sp.named_vars(rule):
                if v in env:
                    if env[v][0] not in exprs:
                        exprs.append(env[v][0])
                    placed[v] = exprs.index(env[v][0])
            atoms: tuple[SolutionAtom, ...] | None
            atoms, assigned = _solution_atoms(rule) if narrowing is None else _solution_atoms(rule, narrowing[2])
            if [c for atom in atoms for c, _ in atom.order] != order:  # not as the loop above bound them:
                atoms = None  # the message query keeps the full ORDER BY (see _message_sql)
            head_vars = frozenset(a.name for a in rule.head.args if isinstance(a, IVar))
            narrowed = [
                reads for step in sp.steps for t, (_, reads) in step.narrowed.items() if narrowing and t == narrowing[0]
            ]
            sp.solution_layout[rule.index] = SolutionLayout(
                tuple(head), placed, tuple(exprs), atoms, assigned, head_vars, *narrowed
            )
            select = [f"{e} AS s{i}" for i, e in enumerate(exprs)]
            heads = {exprs[col] for col, _ in head if col is not None}  # sorted on already
            order[:] = ["1", *dict.fromkeys(keys), *(k for k in order if k not in heads)]
    except _NoRows:
        return None
    if len(froms) == 1 and head_has_ck and anti:
        froms, conds = _anti_joined(froms[0], conds, anti)
    sql = f"SELECT {', '.join(select) or '1'}"
    if froms:
        sql += f"\nFROM {', '.join(froms)}"
    if conds:
        sql += "\nWHERE " + "\n  AND ".join(conds)
    if solutions:
        sql += "\nORDER BY " + ", ".join(order)
    return sql


def _term_vars(t: ITerm) -> frozenset[str]:
    if isinstance(t, IVar):
        return frozenset((t.name,))
    if isinstance(t, IOp):
        return _term_vars(t.left) | _term_vars(t.right)
    return frozenset()


def _solution_narrowing(sp: SqlProgram, rule: CompiledRule) -> tuple[str, int, int] | None:
    """The narrowed table (see _narrowings) the rule's solutions SELECT reads too, as its strata
    SELECT does: where the atom B it leaves out binds no named variable (each of B's arguments is
    a constant, a variable of A or an anonymous one). A message query then reads the narrowed
    rows (partner's for 'this claim' with an injection line: a 5,000-claim chunk's 172,000 rows
    scanned and joined, 30 ms for inj.chemo, become 9,000) instead of joining A and B again.

    The solutions are the same, in the same order: B's rows for a row of A depend on that row
    alone (B tests A's variables and constants; its other variables are used nowhere else), so
    each solution of the full SELECT is a solution with A's row, the atoms between A and B, one
    of B's rows and the atoms after B, and each of B's rows gives the same continuations. Ordered
    by B's anonymous columns or not, each distinct solution of a head first appears in the same
    order (in the first of B's rows); only repeated rows are fewer, which no reader counts on (a
    head of more than `limit` rows is merged again from the full query, de-duplicated)."""
    found = sp.narrowing.get(rule.index)
    if found is None or found[2] < found[1]:
        return None  # B before A: the solutions would be ordered by A's columns where B's came first
    a, b = rule.body[found[1]], rule.body[found[2]]
    assert isinstance(a, IAtom) and isinstance(b, IAtom)
    of_a = {arg.name for arg in a.args if isinstance(arg, IVar)}
    named = set(sp.named_vars(rule))
    if any(isinstance(arg, IVar) and arg.name not in of_a and arg.name in named for arg in b.args):
        return None  # a binding the message may show, or that tells solutions apart
    return found


def _solution_atoms(
    rule: CompiledRule, skip: int | None = None
) -> tuple[tuple[SolutionAtom, ...], tuple[tuple[str, frozenset[str]], ...]]:
    """The positive atoms of the rule's body and the variables its assignments bind, as
    _rule_sql reads them (atom n is aliased `tn`; a variable's first column binds it and orders
    the solutions); `skip`: the position of an atom a narrowed table leaves out."""
    atoms: list[SolutionAtom] = []
    assigned: list[tuple[str, frozenset[str]]] = []
    bound = {a.name for a in rule.head.args if isinstance(a, IVar)}  # the prover solves with the head bound
    seen: set[str] = set()  # bound in the body so far (an ORDER BY column is a variable's first)
    for n, lit in enumerate(rule.body):
        if n == skip:
            continue
        if isinstance(lit, IAtom) and not lit.negated:
            args = tuple(_term_vars(a) for a in lit.args)
            key = tuple(i for i, vs in enumerate(args) if vs <= bound)
            order: list[tuple[str, str]] = []
            for i, a in enumerate(lit.args):
                if isinstance(a, IVar) and a.name not in seen:
                    seen.add(a.name)
                    order.append((f"t{n}.c{i}", a.name))
            bound |= seen
            atoms.append(SolutionAtom(lit.relation, key, args, tuple(order)))
        elif isinstance(lit, ICompare) and lit.assigns and isinstance(lit.left, IVar) and lit.left.name not in seen:
            seen.add(lit.left.name)
            bound.add(lit.left.name)
            assigned.append((lit.left.name, _term_vars(lit.right)))
    return tuple(atoms), tuple(assigned)


def _determined(known: set[str], layout: SolutionLayout, keyed: frozenset[int]) -> set[str]:
    """The variables whose values `known` fixes (with them): an assignment's, once its inputs are,
    and every variable of an atom `keyed` (its relation holds no two distinct rows that agree on
    the atom's key columns, see DuckDBBackend._keyed_atoms) once its key columns' are."""
    known = set(known)
    changed = True
    while changed:
        changed = False
        for k in keyed:
            atom = (layout.atoms or ())[k]
            if all(atom.args[i] <= known for i in atom.key):
                every = frozenset().union(*atom.args)
                if not every <= known:
                    known |= every
                    changed = True
        for var, deps in layout.assigned:
            if var not in known and deps <= known:
                known.add(var)
                changed = True
    return known


def _sort_keys(layout: SolutionLayout, keyed: frozenset[int]) -> tuple[list[str], set[str]]:
    """The body's ORDER BY columns (after the claim key and the head's) that order a head's
    distinct solutions as the full ORDER BY does, and the named variables with one value per
    head. A column is left out when its variable is fixed by the columns before it (a keyed atom,
    an assignment), and so is every column after the point where the named variables all are.

    Why the order is the same: take two rows of one head that are different solutions (their
    named variables differ), and the first column of the full ORDER BY where they differ. Every
    column before it is equal, so every variable those columns fix is equal: the column cannot
    be one left out as fixed by earlier columns, nor one after the point where the named
    variables are all fixed (they would be equal). It is kept, and the shorter ORDER BY, whose
    columns before it are a subset of the equal ones, compares the rows by it. Rows that differ
    in no kept column are the same solution, whose order among themselves changes nothing: the
    first row of each distinct solution comes in the same order, so each name's values appear
    first in the same order, the first `limit` distinct solutions are the same, and each head
    has the same rows."""
    named = set(layout.names)
    known = _determined(set(layout.head_vars), layout, keyed)
    fixed = named & known
    heads = {layout.columns[col] for col, _ in layout.head if col is not None}  # sorted on already
    keys: list[str] = []
    for atom in layout.atoms or ():
        for col, var in atom.order:
            if named <= known:
                return keys, fixed
            if col in heads or var in known:
                continue
            keys.append(col)
            known = _determined(known | {var}, layout, keyed)
    return keys, fixed


# ---------------------------------------------------------------------------------------------
# Stored tables: one DuckDB file per `.input` table in the cache


def table_file(store: Store, rel: str) -> Path:
    """The DuckDB copy of a stored table (beside its SQLite file in the cache, named after it)."""
    sqlite_path = store.tables[rel]
    return sqlite_path.with_name(f"{sqlite_path.stem}-d{DUCKDB_FORMAT}.duckdb")


def ensure_table_files(store: Store, types: dict[str, tuple[str, ...]]) -> dict[str, Path]:
    """Copy each validated table from the SQLite store into a DuckDB file, once per content."""
    out: dict[str, Path] = {}
    for rel in sorted(store.tables):
        if rel not in types:
            continue
        path = table_file(store, rel)
        if not path.exists():
            _build_table_file(store, rel, types[rel], path)
        out[rel] = path
    return out


def _csv_writer(fh: IO[str]) -> Any:
    """csv.writer for DuckDB: rows end in "\n" alone, and a field holding a carriage return is
    quoted as one holding a line feed is (DuckDB ends a line at an unquoted "\r" whatever NEW_LINE
    says; csv.writer quotes only the characters of its line terminator). The writer is given
    "\r\n" to quote both, and each row it writes (one write call a row) loses the "\r"."""

    class _LineFeed:
        def write(self, line: str) -> int:
            return fh.write(line[:-2] + "\n")

    return csv.writer(_LineFeed(), lineterminator="\r\n")


def _build_table_file(store: Store, rel: str, types: tuple[str, ...], path: Path) -> None:
    tmpdir = Path(tempfile.mkdtemp(prefix="pkb-duck-", dir=path.parent))
    try:
        csv_path = tmpdir / "rows.csv"
        with csv_path.open("w", encoding="utf-8", newline="") as fh:
            writer = _csv_writer(fh)
            src = sqlite3.connect(f"file:{store.tables[rel]}?mode=ro", uri=True)
            try:  # the store's layout: table t, columns c0.., rows in file order
                writer.writerows(src.execute("SELECT * FROM t ORDER BY rowid"))
            finally:
                src.close()
        db = tmpdir / "t.duckdb"
        con = duckdb.connect(str(db))
        try:
            con.execute(f"CREATE TABLE t AS SELECT * FROM {_read_csv(csv_path, types, ck=False)}")
        finally:
            con.close()
        os.replace(db, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _read_csv(path: Path, types: tuple[str, ...], *, ck: bool) -> str:
    cols = ([("ck", "BIGINT")] if ck else []) + [(f"c{i}", _SQL_TYPE[t]) for i, t in enumerate(types)]
    spec = ", ".join(f"'{n}': '{t}'" for n, t in cols)
    literal = "'" + str(path).replace("'", "''") + "'"
    # symbols are never NULL: an empty field is the empty string
    symbols = ", ".join(f"'{n}'" for n, t in cols if t == "VARCHAR")
    keep = f", force_not_null=[{symbols}]" if symbols else ""
    # every writer ends rows with "\n" alone; a "\r" is data (csv.writer does not quote it)
    return (
        f"read_csv({literal}, header=false, columns={{{spec}}}, delim=',', quote='\"', escape='\"'{keep}, "
        "new_line='\\n', auto_detect=false)"
    )


def _copy_csv(table: str, path: Path, types: tuple[str, ...]) -> str:
    """COPY of a CSV file into `table`, whose columns (ck when it has one, then c0 ...) give the
    types: the rows INSERT ... SELECT * FROM _read_csv gives, in a seventh less time."""
    literal = "'" + str(path).replace("'", "''") + "'"
    symbols = ", ".join(f"c{i}" for i, t in enumerate(types) if _SQL_TYPE[t] == "VARCHAR")
    keep = f", FORCE_NOT_NULL ({symbols})" if symbols else ""  # symbols are never NULL, as in _read_csv
    return (
        f"COPY {table} FROM {literal} (HEADER false, DELIMITER ',', QUOTE '\"', ESCAPE '\"', "
        f"NEW_LINE '\\n', AUTO_DETECT false{keep})"
    )


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _inline_rows(store: Store | None, rel: str) -> list:
    """A stored relation's inline facts (none without a store)."""
    return store.memory[rel].rows if store is not None and rel in store.memory else []


def _load_rows(
    con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Row], types: tuple[str, ...], scratch: Path
) -> None:
    """Rows of Python values into a table through a CSV file in `scratch` (one COPY)."""
    if not rows:
        return
    path = scratch / "rows.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        _csv_writer(fh).writerows(rows)
    con.execute(_copy_csv(table, path, types))


def _attach_checked(con: duckdb.DuckDBPyConnection, path: Path, alias: str, check: str) -> list[tuple] | None:
    """Attach the cache file at `path` read-only as `alias` and return the rows of `check`, a
    query of the table written last into it (a file cut short has lost it; DuckDB attaches a
    truncated file without complaint, and listing its tables costs ~8 ms); None, with nothing
    attached, where there is no such file or it cannot be attached or checked."""
    if not path.exists():
        return None
    try:
        con.execute(f"ATTACH {_literal(path)} AS {alias} (READ_ONLY)")
    except duckdb.Error:
        return None
    try:
        return con.execute(check).fetchall()
    except duckdb.Error:
        con.execute(f"DETACH {alias}")
        return None


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[tuple]) -> None:
    """A few rows of Python values into a table (executemany refuses none)."""
    if rows:
        con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)


# ---------------------------------------------------------------------------------------------
# Stored relations: one DuckDB file in the cache holds every one of at most BIG_STORED_ROWS rows,
# inline facts and table rows alike, so a connection opens them with one ATTACH (measured: the
# 39 of kb/, 26 of them inline facts, cost a worker ~60 ms of CPU one relation at a time)

_STORED = "pkb_stored"  # the stored relations' file, as a connection attaches it
_STATIC = "pkb_static"  # the static relations' saved file (see DuckDBBackend._create_static)


def stored_relations(cp: CompiledProgram) -> list[str]:
    return sorted(rel for rel, kind in cp.kinds.items() if kind is RelKind.STORED)


def stored_key(
    cp: CompiledProgram, store: Store | None, types: dict[str, tuple[str, ...]], files: dict[str, Path]
) -> str:
    """What the stored relations' rows are made of: each one's name, types, table file (named by
    its content) and inline facts (by value)."""
    key = hashlib.sha256(f"stored {DUCKDB_FORMAT} {BIG_STORED_ROWS}\n".encode())
    for rel in stored_relations(cp):
        file = files.get(rel)
        key.update(repr((rel, types[rel], file.name if file else None, _inline_rows(store, rel))).encode())
    return key.hexdigest()[:20]


def stored_file(store: Store, key: str) -> Path:
    """The stored relations' file in the cache, for the rows `key` (stored_key) names."""
    return store.cache_dir / f"stored-{key}-d{DUCKDB_FORMAT}.duckdb"


def _build_stored_file(
    cp: CompiledProgram, store: Store | None, types: dict[str, tuple[str, ...]], files: dict[str, Path], path: Path
) -> None:
    """Write the stored relations' file at `path`, made aside and renamed into place (a process
    opening it meanwhile makes its own): each stored relation of at most BIG_STORED_ROWS rows as
    a table named as the backend reads it (table_name), holding its inline facts then its table
    file's rows, and every stored relation's row count in the table `_counts`."""
    scratch = Path(tempfile.mkdtemp(prefix="pkb-duck-", dir=path.parent))
    try:
        db = scratch / "stored.duckdb"
        con = duckdb.connect(str(db))
        try:
            counts = [_copy_stored(con, cp, store, types, rel, files.get(rel), scratch) for rel in stored_relations(cp)]
            con.execute("CREATE TABLE _counts (rel VARCHAR, n BIGINT)")
            _insert(con, "_counts", counts)
        finally:
            con.close()
        os.replace(db, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _copy_stored(
    con: duckdb.DuckDBPyConnection,
    cp: CompiledProgram,
    store: Store | None,
    types: dict[str, tuple[str, ...]],
    rel: str,
    file: Path | None,
    scratch: Path,
) -> tuple[str, int]:
    """One stored relation's rows into the stored relations' file, unless it has more than
    BIG_STORED_ROWS (the backend then reads its table file); its name and row count."""
    rows = _inline_rows(store, rel)
    n = len(rows)
    if file is not None:
        con.execute(f"ATTACH {_literal(file)} AS f (READ_ONLY)")
        (m,) = con.execute("SELECT count(*) FROM f.t").fetchone()  # type: ignore[misc]
        n += m
    if n <= BIG_STORED_ROWS:
        table = table_name(cp, rel)
        con.execute(f"CREATE TABLE {table} ({', '.join(f'c{i} {_SQL_TYPE[t]}' for i, t in enumerate(types[rel]))})")
        _load_rows(con, table, [tuple(r) for r in rows], types[rel], scratch)
        if file is not None:
            con.execute(f"INSERT INTO {table} SELECT * FROM f.t")
    if file is not None:
        con.execute("DETACH f")
    return rel, n


# Claims a block of _keyed_csv formats at once: its values, flattened, stay in the CPU's cache for
# the format that reads them again and the decref that drops them (a chunk's are tens of MB of
# objects scattered by the reader, each touched three times). 10,000-claim chunks of the
# reference corpus: 13.3-15.2 us a claim in one format, 12.3-13.6 in blocks of 256 (64: no better)
_CSV_BLOCK = 256


def _keyed_csv(per_claim: Sequence[list[Row]], keys: Sequence[str]) -> bytes | None:
    """What csv.writer writes for the rows `(ck, *row)` of one relation, `per_claim[ck]` being claim
    ck's rows (`keys[ck]` is str(ck)), made with one %-format a block of claims (_keyed_block).
    None when that would differ: a value holding a comma, quote or line break (csv.writer quotes
    it), a None (csv.writer writes nothing) or text that is not UTF-8 (csv.writer raises what it
    always raised); csv.writer then writes the rows itself. Every row must have the length of the
    first."""
    width = next(len(rows[0]) for rows in per_claim if rows)
    counts = list(map(len, per_claim))
    n = sum(counts)
    row = ",%s" * width + "\n"
    text = "".join(
        _keyed_block(per_claim[i : i + _CSV_BLOCK], keys[i : i + _CSV_BLOCK], counts[i : i + _CSV_BLOCK], row)
        for i in range(0, len(per_claim), _CSV_BLOCK)
    )
    if text.count("\n") != n or text.count(",") != n * width or '"' in text or "\r" in text or "None" in text:
        return None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _keyed_block(per_claim: Sequence[list[Row]], keys: Sequence[str], counts: Sequence[int], row: str) -> str:
    """The %-format of some claims' rows: its pattern made in C (each claim's head repeated once a
    row), its values flattened in C."""
    heads = map(operator.add, keys, repeat(row))
    return "".join(map(operator.mul, heads, counts)) % tuple(chain.from_iterable(chain.from_iterable(per_claim)))


def _claim_target(cp: CompiledProgram, rel: str) -> str:
    """The table relation a claim relation's facts go to; BackendUnsupported for any other."""
    target = cp.fact_relations.get(rel, rel)
    if cp.kinds.get(target) not in (RelKind.CLAIM, RelKind.FACTS):
        raise BackendUnsupported(f"cannot assert facts for {rel}: it is not a claim relation")
    return target


# ---------------------------------------------------------------------------------------------
# The backend


class DuckDBBackend:
    """Evaluates chunks of claims set-at-a-time; one per process (it holds a DuckDB connection)."""

    name = "duckdb"

    def __init__(
        self,
        cp: CompiledProgram,
        store: Store | None,
        given_types: dict[str, list[str | None]],
        *,
        threads: int | None = None,
        detail: set[str] | None = None,
    ):
        self.cp = cp
        self.store = store
        self.stored_file: Path | None = None  # the stored relations' cache file (see _attach_stored)
        self.static_file: Path | None = None  # the static relations' cache file (see _create_static)
        self.types = infer_types(cp, given_types)
        self.outcomes = [r for r in OUTCOMES if r in cp.kinds]
        # relation -> the columns every rule of it fills with a constant (see _fetch_grouped)
        self._const_columns = {
            rel: tuple(
                j
                for j in range(cp.arity[rel])
                if all(isinstance(r.head.args[j], IConst) for r in cp.rules if r.head.relation == rel)
            )
            for rel in {r.head.relation for r in cp.rules}
        }
        # this chunk's rows of such a relation, grouped: relation -> (the columns, their values ->
        # (claim keys, rows)), as _fetch_grouped fetched them; kept until evaluate_many returns
        self._groups: dict[str, tuple[tuple[int, ...], dict[tuple, tuple[list[int], list[Row]]]]] = {}
        # the claim-dependent tables that may hold rows from the last chunk (emptied before the next)
        self._filled = {rel for rel, kind in cp.kinds.items() if kind in _CK_KINDS}
        self._message_sqls: dict[
            tuple[int, tuple[int | None, ...], frozenset[int]], tuple[str, list[int | None], list[int]]
        ] = {}
        # (stored or static relation, columns) -> whether no two distinct rows agree on them (_is_unique)
        self._unique: dict[tuple[str, tuple[int, ...]], bool] = {}
        self._grouped: dict[int, bool] = {}  # outcome rule index -> whether its message query groups (_fetch_messages)
        self._grouped_sqls: dict[tuple[int, tuple[int | None, ...], frozenset[int]], tuple[str, GroupPlan] | None] = {}
        self._fact_plans: dict[int, list[FactStep] | None] = {}  # outcome rule index -> _fact_steps
        self._kept_rows: dict[tuple[str, tuple[int, ...]], dict[tuple, set[tuple]] | None] = {}  # _kept
        self._lookups: dict[tuple[str, str, tuple[int, ...], int], dict[tuple[str, ...], str] | None] = {}  # _lookup
        self._parsed: dict[str, duckdb.Statement] = {}  # per-chunk statement text -> parsed once (_run)
        self._tmp = Path(tempfile.mkdtemp(prefix="pkb-chunk-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        self.con = duckdb.connect(":memory:")
        atexit.register(self.close)  # closed before interpreter teardown, which warns about live handles
        self.con.execute(f"SET threads = {max(1, threads or 1)}")
        self.con.execute("SET preserve_insertion_order = false")
        # No optimizer is disabled (measured on kb/ with DuckDB 2.0.0, same outcomes every time):
        # without compressed_materialization and join_filter_pushdown a chunk plans faster but runs
        # slower (valgrind: +1% instructions for start-up plus a 2,500-claim chunk; CPU of a
        # 10,000-claim chunk 3.26-3.29 s -> 3.58-3.80 s, ptp_started, deny, units_on_date, ptp_hit
        # and warn each slower), and no other optimizer, alone, moved a 2,500-claim chunk beyond
        # the noise of the ones that cannot touch these statements (top_n, window_rewriter: +-15%)
        try:
            files = ensure_table_files(store, self.types) if store is not None else {}
            counts = self._attach_stored(files)
            self.sql = compile_sql(cp, self.types, big_stored(cp, counts.__getitem__))
            self._check_patterns()
            self._create_tables(files)
        except BaseException:
            self.close()
            raise

    def _check_patterns(self) -> None:
        for pat in sorted(self.sql.patterns):
            try:
                re.compile(pat)
            except re.error:
                continue
            try:
                self.con.execute("SELECT regexp_full_match('', ?)", [pat]).fetchall()
            except duckdb.Error as exc:
                raise BackendUnsupported(
                    f"pattern {pat!r} is not supported by DuckDB's regular expressions: {exc}"
                ) from None

    def _create_tables(self, files: dict[str, Path]) -> None:
        cp, con = self.cp, self.con
        self._load_claims(0)
        for rel in sorted(self.sql.big):
            self._create_stored(rel, files.get(rel))
        # which relations are views depends on the SQL of their readers (a semi-join on a big
        # table reads its source twice, see _inlined): decided on the final SQL
        self._views = views = {rel for step in self.sql.steps for rel in (*step.views, *step.inline)}  # not emptied
        for rel, kind in sorted(cp.kinds.items()):
            if kind in _CK_KINDS and rel not in views:
                con.execute(f"CREATE TEMP TABLE {table_name(cp, rel)} ({', '.join(self.sql.columns(rel))})")
        self._create_static()
        for step in self.sql.steps:  # in order: a view reads tables (static ones too) and earlier views
            for rel in (*step.views, *step.inline):
                con.execute(f"CREATE TEMP VIEW {table_name(cp, rel)} AS {step.sql[rel]}")

    def _attach_stored(self, files: dict[str, Path]) -> dict[str, int]:
        """Attach the stored relations' file (_build_stored_file) and put it on the search path,
        so each relation of at most BIG_STORED_ROWS rows is read from it by name; returns every
        stored relation's row count (one above that is big: see _create_stored). The file is
        made in the cache, once per content (stored_key), or made again where the one there
        cannot be read (e.g. torn by a crash); in this connection's directory where the cache
        cannot be written."""
        self._stored_key = key = stored_key(self.cp, self.store, self.types, files)
        if self.store is not None:
            path = stored_file(self.store, key)
            counts = self._attached(path)
            if counts is None:
                with contextlib.suppress(OSError, duckdb.Error):
                    _build_stored_file(self.cp, self.store, self.types, files, path)
                counts = self._attached(path)
            if counts is not None:
                self.stored_file = path
                return counts
        path = self._tmp / "stored.duckdb"
        _build_stored_file(self.cp, self.store, self.types, files, path)
        counts = self._attached(path)
        if counts is None:
            raise RuntimeError(f"cannot read the stored relations' file just made: {path}")
        return counts

    def _attached(self, path: Path) -> dict[str, int] | None:
        """The stored relations' row counts once the file at `path` is attached and searched;
        None (nothing attached) where there is no such file, or one whose counts cannot be read
        or do not name every stored relation."""
        con = self.con
        rows = _attach_checked(con, path, _STORED, f"SELECT rel, n FROM {_STORED}._counts")
        if rows is None:
            return None
        counts = dict(rows)
        if sorted(counts) != stored_relations(self.cp):
            con.execute(f"DETACH {_STORED}")
            return None
        con.execute(f"SET search_path = '{_STORED}.main'")
        return counts

    def _create_static(self) -> None:
        """The static relations (derived from stored data only), materialised once per connection:
        read from a DuckDB file in the cache when a connection before this one computed them from
        the same SQL and the same stored rows (_static_key), else computed and saved there.
        Computing them is most of a new connection's cost (measured: 0.55 of 0.8 s CPU)."""
        cp, con = self.cp, self.con
        rels = [rel for step in self.sql.static_steps for rel in step.relations]
        path = None
        if rels and self.store is not None:
            path = self.static_file = self.store.cache_dir / f"static-{self._static_key()}-d{DUCKDB_FORMAT}.duckdb"
            if self._attach_static(rels, path):
                return
        for rel in rels:
            con.execute(f"CREATE TEMP TABLE {table_name(cp, rel)} ({', '.join(self.sql.columns(rel))})")
        for step in self.sql.static_steps:
            self._run_step(step)
        if path is not None:
            self._save_static(rels, path)

    def _static_key(self) -> str:
        """What the static relations are computed from: their steps' SQL and columns, and the
        stored relations' rows (stored_key)."""
        key = hashlib.sha256(f"static {STATIC_FORMAT} {self._stored_key}\n".encode())
        for step in self.sql.static_steps:
            key.update(
                repr((step.recursive, [(rel, self.sql.columns(rel), step.sql[rel]) for rel in step.relations])).encode()
            )
        return key.hexdigest()[:20]

    def _attach_static(self, rels: list[str], path: Path) -> bool:
        """Read the static relations from a saved file (attached read-only and searched after the
        stored relations' file, as they are named in it), with what it says of which of their
        and the stored relations' columns are keys (see _save_static); False (nothing attached)
        where there is no such file or one whose last tables cannot be read (e.g. torn by a
        crash): they are then computed again."""
        con = self.con
        rows = _attach_checked(con, path, _STATIC, f"SELECT rel, key, is_unique FROM {_STATIC}._unique")
        if rows is None:
            return False
        held = [rel for (rel,) in con.execute(f"SELECT rel FROM {_STATIC}._relations").fetchall()]
        if held != rels:
            con.execute(f"DETACH {_STATIC}")
            return False
        con.execute(f"SET search_path = '{_STORED}.main,{_STATIC}.main'")
        self._unique.update(((rel, tuple(key)), is_unique) for rel, key, is_unique in rows)
        return True

    def _save_static(self, rels: list[str], path: Path) -> None:
        """Save the static tables for the next connection (written aside, then renamed into place:
        a worker starting meanwhile computes them itself), then, last, their names and whether
        each stored or static relation's rows are unique on the columns a message query may ask
        about (_unique_asked): a file cut short has lost these. A cache that cannot be written is
        skipped: it only saves time."""
        alias = _q("static:new")
        con = self.con
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        unique = [(rel, list(key), self._is_unique(rel, key)) for rel, key in sorted(self._unique_asked())]
        try:
            tmp.unlink(missing_ok=True)
            con.execute(f"ATTACH {_literal(tmp)} AS {alias}")
            try:
                for table in map(functools.partial(table_name, self.cp), rels):
                    con.execute(f"CREATE TABLE {alias}.{table} AS SELECT * FROM {table}")
                con.execute(f"CREATE TABLE {alias}._relations (rel VARCHAR)")
                _insert(con, f"{alias}._relations", [(rel,) for rel in rels])
                con.execute(f"CREATE TABLE {alias}._unique (rel VARCHAR, key INTEGER[], is_unique BOOLEAN)")
                _insert(con, f"{alias}._unique", unique)
            finally:
                con.execute(f"DETACH {alias}")
            os.replace(tmp, path)
        except (OSError, duckdb.Error):
            with contextlib.suppress(OSError):  # e.g. no directory to remove it from
                tmp.unlink(missing_ok=True)

    def _create_stored(self, rel: str, file: Path | None) -> None:
        """A big stored relation's view (one the stored relations' file does not hold): its inline
        facts (a table of this connection), its table file (attached read-only), or the UNION ALL
        of both where it has both. A view of one table spares every statement that reads it the
        UNION's binding and operator (ptp_started: planning 5.8 -> 4.3 ms a chunk)."""
        con, cols = self.con, self.sql.columns(rel)
        rows = _inline_rows(self.store, rel)
        parts = []
        if rows or file is None:
            mem = _q(f"m:{rel}")
            con.execute(f"CREATE TEMP TABLE {mem} ({', '.join(cols)})")
            self._load(mem, rel, [tuple(r) for r in rows])
            parts.append(f"SELECT * FROM {mem}")
        if file is not None:
            alias = _q(f"f:{rel}")
            con.execute(f"ATTACH {_literal(file)} AS {alias} (READ_ONLY)")
            parts.append(f"SELECT * FROM {alias}.t")
        con.execute(f"CREATE TEMP VIEW {table_name(self.cp, rel)} AS {' UNION ALL '.join(parts)}")

    def _load(self, table: str, rel: str, rows: Sequence[Row]) -> None:
        _load_rows(self.con, table, rows, self.types[rel], self._tmp)

    def _load_keyed(self, table: str, rel: str, per_claim: Sequence[list[Row]], keys: Sequence[str] | None) -> None:
        """A claim-dependent relation's rows, `per_claim[ck]` those of claim ck (maybe none). `keys`
        (str(ck) for each ck) when every part is a ClaimFacts relation (rows of one length):
        _keyed_csv may write them."""
        data = _keyed_csv(per_claim, keys) if keys is not None else None
        if data is None:
            self._load(table, rel, [(ck, *r) for ck, rows in enumerate(per_claim) for r in rows])
            return
        path = self._tmp / "rows.csv"
        path.write_bytes(data)
        self.con.execute(_copy_csv(table, path, self.types[rel]))

    def _run(self, sql: str) -> duckdb.DuckDBPyConnection:
        """Run a statement that every chunk runs again, parsed once. DuckDB binds and plans a
        statement each time it runs (so does EXECUTE of a prepared one: it is rebound every time,
        even twice in a row), but a parsed Statement skips the parser: a sixth of the time of the
        big UNIONs (deny, warn). The texts are few (one per step and set of rules that can fire)."""
        statement = self._parsed.get(sql)
        if statement is None:
            if len(self._parsed) >= 4096:  # a bound on memory, should the texts ever be many
                self._parsed.clear()
            (statement,) = self.con.extract_statements(sql)
            self._parsed[sql] = statement
        return self.con.execute(statement)

    def _run_step(self, step: Step, nonempty: set[str] | None = None) -> None:
        """Fill the step's relations. With `nonempty` (the claim-dependent relations that have rows
        so far), run only the rules that can fire, and add the relations that got rows."""
        cp = self.cp
        for table, (select, reads) in step.narrowed.items():  # none can fire without these rows: left stale
            if nonempty is None or reads <= nonempty:
                self._run(f"CREATE OR REPLACE TEMP TABLE {table} AS {select}")
        live = {rel: sql for rel in step.relations if (sql := step.live_sql(rel, nonempty)) is not None}
        if not step.recursive:
            for rel, sql in live.items():
                if rel in step.views:  # nothing to fill; it has rows when its source has
                    if nonempty is not None and step.views[rel] in nonempty:
                        nonempty.add(rel)
                    continue
                if rel in step.inline:  # nothing to fill; it may have rows, as one of its rules can fire
                    if nonempty is not None:
                        nonempty.add(rel)
                    continue
                staged = step.staged_sql(rel, nonempty)
                if staged is not None:
                    self._run(staged[0])
                    sql = staged[1]
                (n,) = self._run(f"INSERT INTO {table_name(cp, rel)} {sql}").fetchone()  # type: ignore[misc]
                if n and nonempty is not None:
                    nonempty.add(rel)
            return
        while True:
            added = 0
            for rel, sql in live.items():
                t = table_name(cp, rel)
                (n,) = self._run(f"INSERT INTO {t} SELECT * FROM ({sql}) EXCEPT SELECT * FROM {t}").fetchone()  # type: ignore[misc]
                added += n
                if n and nonempty is not None:
                    nonempty.add(rel)
            if not added:
                return

    # -- a chunk ---------------------------------------------------------------------------

    def evaluate_many(
        self, chunk: Sequence[Facts], relations: Iterable[str] | None = None, messages: MessageRequest | None = None
    ) -> list[BatchModel]:
        """One model per claim: its claim facts, the outcome relations and the solutions that
        fill each reason's message (`relations`: these relations instead, e.g. all of them;
        `messages`: only what the messages show of the solutions, see MessageRequest)."""
        cp = self.cp
        for rel in sorted(self._filled - self._views):
            self._empty(table_name(cp, rel), self.sql.columns(rel))
        self._filled = {rel for rel, kind in cp.kinds.items() if kind in _CK_KINDS}  # until this chunk ends
        inputs: dict[str, Sequence[list[Row]]] = {}  # table relation -> each claim's rows, in chunk order
        if chunk and all(type(facts) is ClaimFacts for facts in chunk):
            # claim_to_facts' facts: every relation in each, distinct and sorted already. Taken a
            # relation at a time, in C: each model's claim relations are its facts (a copy of the
            # dict, the same lists), each relation's rows those of every claim in turn
            models = [*map(BatchModel, map(dict, chunk))]
            for rel in chunk[0]:
                per_claim = [*map(operator.itemgetter(rel), chunk)]
                if any(per_claim):
                    inputs[_claim_target(cp, rel)] = per_claim
            keys: list[str] | None = [*map(str, range(len(chunk)))]
        else:
            models = [BatchModel() for _ in chunk]
            parts: dict[str, list[list[Row]]] = {}
            targets: dict[str, str] = {}  # relation -> the table its facts go to, checked once per chunk
            for ck, facts in enumerate(chunk):
                given = models[ck].relations
                for rel, rows in facts.items():
                    target = targets.get(rel)
                    if target is None:
                        target = targets[rel] = _claim_target(cp, rel)
                    clean = sorted(set(map(tuple, rows)))  # one type per column: natural order is _key order
                    given[rel] = clean
                    if clean:
                        sink = parts.get(target)
                        if sink is None:
                            sink = parts[target] = [[] for _ in chunk]
                        sink[ck] = sink[ck] + clean if sink[ck] else clean  # two relations' facts, one table
            inputs.update(parts)
            keys = None
        self._load_claims(len(chunk))
        for rel, rows_by_claim in inputs.items():
            self._load_keyed(table_name(cp, rel), rel, rows_by_claim, keys)
        nonempty = set(inputs)
        for step in self.sql.steps:
            self._run_step(step, nonempty)
        self._filled = nonempty
        if relations is not None:
            self._fetch(models, sorted(relations))
        else:
            self._fetch(models, self.outcomes)
            if messages is not None:
                self._fetch_messages(models, messages)
            else:
                self._fetch_solutions(models)
        # the groups served this chunk's messages: let go, so its outcome rows are freed with the
        # models (as each claim is decided), not kept alive and young until the next chunk, when
        # the collector's first run after the chunk walked them all (~80,000 tuples, 10-40 ms)
        self._groups = {}
        return models

    def _solved_rules(self, models: list[BatchModel], indices: Iterable[int]) -> Iterable[tuple[int, str, int]]:
        """The outcome rules (index, solutions SELECT, outcome rows it may have derived) among
        `indices` whose head matches an outcome row of the chunk: any other has no solutions, and
        is not queried. Nor is a rule whose SELECT reads a narrowed table not made in this chunk
        (one of its relations has no rows: the rule has no solutions, and the table is stale)."""
        heads: dict[tuple[str, tuple[int, ...]], Counter[object]] = {}
        for index in indices:
            sql = self.sql.solutions.get(index)
            if sql is None or not self.sql.solution_layout[index].narrowed <= self._filled:
                continue
            rule = self.cp.rules[index]
            consts = self.sql.head_consts[index]
            key = (rule.head.relation, tuple(i for i, _ in consts))
            groups = self._groups.get(key[0])
            if groups is not None and groups[0] == key[1]:  # fetched grouped on these columns
                n = len(groups[1].get(tuple(v for _, v in consts), ((), ()))[1])
                if n:
                    yield index, sql, n
                continue
            found_heads = heads.get(key)
            if found_heads is None:
                get = operator.itemgetter(*key[1]) if key[1] else lambda _row: ()
                rows = chain.from_iterable(m.relations.get(key[0], ()) for m in models)
                found_heads = heads[key] = Counter(map(get, rows))
            values = tuple(v for _, v in consts)
            n = found_heads[values[0] if len(values) == 1 else values]  # as itemgetter gives them
            if n:
                yield index, sql, n

    def _fetch_solutions(self, models: list[BatchModel]) -> None:
        """Each outcome row's solutions (distinct named bindings, in the prover's order)."""
        for index, sql, _n in self._solved_rules(models, self.sql.solutions):
            layout = self.sql.solution_layout[index]
            names = list(layout.names.items())
            seen: set[tuple] = set()  # a repeated row is a repeated solution (same claim, head, bindings)
            for rec in self.con.execute(sql).fetchall():
                if rec in seen:
                    continue
                seen.add(rec)
                found = models[rec[0]].solutions.setdefault((index, layout.head_of(rec)), [])
                found.append({name: rec[col] for name, col in names})

    def _fetch_messages(self, models: list[BatchModel], request: MessageRequest) -> None:
        """What each outcome row's message shows of its solutions (see MessageRequest), merged
        head by head (_merge_heads): the rows come ordered by claim, head and the prover's order.
        The query fetches the claim key, the head and the columns the message shows only, sorted
        on no more columns than that order needs (_message_sql); the other named variables matter
        only to which solutions are distinct, so only to a head with more than `limit` rows, which
        is merged again from the full query. A rule whose heads had several rows each in the last
        chunk is asked for one row per head instead (_grouped_sql, merged by _merge_groups). A
        message that shows its head only (_head_places), or values its head fixes (_from_facts),
        needs no query. Queries alike but for one constant are one statement (_fetch_fused)."""
        limit = request.limit
        join: Callable[[list[str]], str] = request.join
        solved = list(self._solved_rules(models, request.names))
        keyed = self._keyed_atoms([(index, n) for index, _, n in solved])
        messages = [m.messages for m in models]
        outcome_rows: dict[tuple[str, tuple[int, ...]], dict[tuple, list[tuple[int, tuple]]]] = {}  # _from_facts
        forms = [self._message_form(index, sql, n, request.names[index], keyed[index]) for index, sql, n in solved]
        fetched = self._fetch_fused([(index, form[3]) for (index, _, _), form in zip(solved, forms, strict=True)])
        for (index, sql, _n), (full, at, grouped, short) in zip(solved, forms, strict=True):
            layout = self.sql.solution_layout[index]
            cols = [col for col, _ in layout.head if col is not None]
            if at is not None:  # the message shows the head only: no query (see _head_places)
                rel = self.cp.rules[index].head.relation
                for ck, row in _rule_heads(
                    models, rel, self.sql.head_consts[index], outcome_rows, self._groups.get(rel)
                ):
                    messages[ck][(index, row)] = tuple(None if j is None else str(row[j]) for j in at)
                continue
            found = (
                self._from_facts(models, index, request.names[index], outcome_rows)
                if _n <= MESSAGE_FACT_HEADS
                else None
            )
            if found is not None:  # each shown value is the one row's of its key: no query (_from_facts)
                for ck, row, values in found:
                    messages[ck][(index, row)] = values
                continue
            head_key = operator.itemgetter(0, *cols)
            merged: dict[tuple, str] = {}  # a name's values over a head's solutions -> their text
            # the usual outcome head, (a line variable, the rule id), built from the line's column alone
            line_rule = len(layout.head) == 2 and layout.head[0][0] is not None and layout.head[1][0] is None
            # (a row starting with the claim key and head, values), for the heads not written already
            heads: list[tuple[tuple, tuple[str | None, ...]]] = []
            if grouped is not None:
                group_sql, plan = grouped
                fill = (messages, index, layout.head)
                rows = self._run(group_sql).fetchall()
                written, overflow, n_rows = _merge_groups(rows, head_key, plan, limit, join, fill)
            else:
                short_sql, places, fixed = short or self._message_sql(index, sql, full, keyed[index])
                rows = fetched[index] if index in fetched else self._run(short_sql).fetchall()
                heads, overflow = _merge_heads(rows, head_key, fixed, places, limit, join, merged)
                written, n_rows = 0, len(rows)
            # the next chunk's form: grouped where this one's heads had several rows each
            self._grouped[index] = n_rows >= MESSAGE_GROUPED_ROWS * (written + len(heads) + len(overflow))
            if overflow:
                rows = [rec for rec in self._run(sql).fetchall() if head_key(rec) in overflow]
                heads += _merge_heads(rows, head_key, cols, full, limit, join, merged, dedupe=True)[0]
            if line_rule:
                line, rule_id = cols[0], layout.head[1][1]
                for first, values in heads:
                    messages[first[0]][(index, (first[line], rule_id))] = values
            else:
                for first, values in heads:
                    messages[first[0]][(index, layout.head_of(first))] = values

    def _message_form(
        self, index: int, sql: str, n: int, names: tuple[str, ...], keyed: frozenset[int]
    ) -> tuple[
        list[int | None],
        list[int | None] | None,
        tuple[str, GroupPlan] | None,
        tuple[str, list[int | None], list[int]] | None,
    ]:
        """How _fetch_messages fills a rule's messages, decided before any is queried: the columns
        of the names its message shows (None: not bound), the head's places where it shows the head
        only (_head_places), its grouped query where it groups (_grouped_sql), and its message
        query (_message_sql) where it is certainly asked that one: not a message read from the
        facts (_from_facts may be, for a rule with few heads: it is then asked on its own)."""
        layout = self.sql.solution_layout[index]
        full = [layout.names.get(name) for name in names]
        at = _head_places(self.cp, index, layout, full)
        if at is not None:
            return full, at, None, None
        grouped = self._grouped_sql(index, sql, full, keyed) if self._grouped.get(index) else None
        if grouped is not None or (n <= MESSAGE_FACT_HEADS and self._fact_steps(index, names) is not None):
            return full, None, grouped, None
        return full, None, None, self._message_sql(index, sql, full, keyed)

    def _fetch_fused(
        self, queries: list[tuple[int, tuple[str, list[int | None], list[int]] | None]]
    ) -> dict[int, list[tuple]]:
        """The rows of the message queries (rule index, _message_sql's query or None) that differ
        from another's only in the constant one top-level WHERE test compares a column with (rules
        alike but for a constant: ncci.mue.date_policy and date_clinical, MAI 2 and 3): such
        queries are one statement (_fused_sql), which scans and joins their relations once, each
        row tagged with its query; a rule's rows keep their order. The others are not run here."""
        # the query around a constant -> (rule index, column, constant)
        alike: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
        for index, query in queries:
            if query is not None:
                for rest, test, const in _constant_tests(query[0]):
                    alike.setdefault(rest, []).append((index, test, const))
        out: dict[int, list[tuple]] = {}
        for rest, found in sorted(alike.items(), key=lambda kv: -len(kv[1])):
            found = [(index, test, const) for index, test, const in found if index not in out]
            consts = [const for _, _, const in found]
            if len(found) < 2 or len(set(consts)) != len(consts):
                continue
            sql = _fused_sql(rest, found[0][1], consts)
            if sql is None:
                continue
            parts: list[list[tuple]] = [[] for _ in found]
            for rec in self._run(sql).fetchall():
                parts[rec[-1]].append(rec)
            out.update(zip((index for index, _, _ in found), parts, strict=True))
        return out

    def _keyed_atoms(self, rules: list[tuple[int, int]]) -> dict[int, frozenset[int]]:
        """For each rule (index, outcome rows), its positive atoms (by place in
        SolutionLayout.atoms) whose relation holds no two distinct rows that agree on the atom's
        key columns (and the claim key): a solution has one row of it per value of those columns,
        which fixes the atom's other variables (see _sort_keys). Only atoms that bind a variable
        are asked about, and a relation is keyed only where that is certain:
        - on all its columns, or an aggregate on its group's columns (one row per group);
        - a stored or static relation checked on its rows, once per connection (they do not
          change), but for a big stored table (see BIG_STORED_ROWS), taken as not keyed;
        - a claim relation (the claims' facts) checked in this chunk (as many distinct keys as
          rows: a repeated row would make it not keyed, which costs speed only), for a rule with
          at least MESSAGE_KEYED_HEADS outcome rows (the check costs a scan a chunk, and a shorter
          ORDER BY saves next to nothing on a few rows). The checks of a chunk are one query;
        - no other: a derived per-chunk relation is not checked (each check costs a scan in
          every chunk), and taken as not keyed."""
        cp = self.cp
        asked: dict[tuple[str, tuple[int, ...]], list[tuple[int, int]]] = {}
        for index, n in rules:
            for k, atom in enumerate(self.sql.solution_layout[index].atoms or ()):
                kind = cp.kinds[atom.relation]
                if atom.order and (kind is not RelKind.CLAIM or n >= MESSAGE_KEYED_HEADS):
                    asked.setdefault((atom.relation, atom.key), []).append((index, k))
        keyed: set[tuple[str, tuple[int, ...]]] = set()
        tests: list[tuple[tuple[str, tuple[int, ...]], str]] = []
        for rk in asked:
            rel, key = rk
            kind = cp.kinds[rel]
            if len(key) == cp.arity[rel] or (
                kind is RelKind.AGGREGATE and set(range(cp.aggregates[rel].group_arity)) <= set(key)
            ):
                keyed.add(rk)
            elif kind is RelKind.CLAIM:
                cols = ", ".join(["ck", *(f"c{i}" for i in key)])
                tests.append((rk, f"(SELECT count(DISTINCT ({cols})) = count(*) FROM {table_name(cp, rel)})"))
            elif kind in (RelKind.STORED, RelKind.STATIC) and self._is_unique(rel, key):
                keyed.add(rk)
        if tests:
            found = self.con.execute("SELECT " + ", ".join(sql for _, sql in tests)).fetchone()
            assert found is not None
            keyed.update(rk for (rk, _), unique in zip(tests, found, strict=True) if unique)
        out: dict[int, set[int]] = {index: set() for index, _ in rules}
        for rk in keyed:
            for index, k in asked[rk]:
                out[index].add(k)
        return {index: frozenset(ks) for index, ks in out.items()}

    def _unique_asked(self) -> set[tuple[str, tuple[int, ...]]]:
        """The (stored or static relation, columns) _keyed_atoms may ask _is_unique about: those
        of the positive atoms of an outcome rule's solutions that bind a variable, on fewer
        columns than the relation has."""
        cp = self.cp
        return {
            (atom.relation, atom.key)
            for layout in self.sql.solution_layout.values()
            for atom in layout.atoms or ()
            if atom.order
            and cp.kinds[atom.relation] in (RelKind.STORED, RelKind.STATIC)
            and len(atom.key) != cp.arity[atom.relation]
        }

    def _is_unique(self, rel: str, key: tuple[int, ...]) -> bool:
        """Whether a stored or static relation holds no two distinct rows that agree on the columns
        `key`, taken as not for a big stored one; asked once per connection (the rows do not
        change), or read with the static relations' saved file (see _save_static)."""
        rk = (rel, key)
        if rk not in self._unique:
            self._unique[rk] = rel not in self.sql.big and self._unique_on(rel, key)
        return self._unique[rk]

    def _unique_on(self, rel: str, key: tuple[int, ...]) -> bool:
        """Whether no two distinct rows of a stored or static relation agree on the columns `key`."""
        t = table_name(self.cp, rel)
        cols = ", ".join(f"c{i}" for i in key) or "1"
        sql = f"SELECT (SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {t})) = (SELECT count(*) FROM (SELECT DISTINCT * FROM {t}))"
        (unique,) = self.con.execute(sql).fetchone()  # type: ignore[misc]
        return bool(unique)

    def _fact_steps(self, index: int, names: tuple[str, ...]) -> list[FactStep] | None:
        """How _from_facts finds the values of the names a rule's message shows from its head: the
        positive atoms, in the body's order, that bind a shown variable or one a later such atom
        is looked up by, each a claim relation (its rows are the model's facts) or a stored or
        static one (kept in memory, see _kept); None where a shown variable is bound otherwise (an
        assignment, an atom of a derived relation) or where another rule may derive rows of the
        rule's head (see _head_places: a row then may not be a head this rule has a solution
        for)."""
        if index in self._fact_plans:
            return self._fact_plans[index]
        self._fact_plans[index] = None
        cp, rule = self.cp, self.cp.rules[index]
        layout = self.sql.solution_layout[index]
        if _head_places(cp, index, layout, [None]) is None:  # [None]: only whether the rule alone derives its rows
            return None
        known = {a.name for a in rule.head.args if isinstance(a, IVar)}
        # a claim relation whose rows are the model's facts alone
        derived = {r.head.relation for r in cp.rules} | set(cp.fact_relations) | set(cp.fact_relations.values())
        steps: list[FactStep] = []
        for lit in rule.body:
            if not isinstance(lit, IAtom) or lit.negated:
                continue
            kind = cp.kinds[lit.relation]
            fresh = [a.name for a in lit.args if isinstance(a, IVar) and a.name not in known]
            if (
                not fresh
                or len(set(fresh)) != len(fresh)
                or any(isinstance(a, IOp) for a in lit.args)
                or not (
                    (kind is RelKind.CLAIM and lit.relation not in derived)
                    or (kind in (RelKind.STORED, RelKind.STATIC) and lit.relation not in self.sql.big)
                )
            ):
                continue  # its variables stay unknown: a later atom reading one is looked up without it
            key = tuple(
                j for j, a in enumerate(lit.args) if isinstance(a, IConst) or (isinstance(a, IVar) and a.name in known)
            )
            if not key and kind is not RelKind.CLAIM:
                continue  # the whole relation: one row at most in a rule's useful case, not looked for
            by = tuple(a if isinstance(a, IConst) else a.name for j, a in enumerate(lit.args) if j in key)  # type: ignore[union-attr]
            binds = tuple((j, a.name) for j, a in enumerate(lit.args) if isinstance(a, IVar) and a.name in fresh)
            steps.append(FactStep(lit.relation, kind is RelKind.CLAIM, key, by, binds))
            known.update(fresh)
        shown = {n for n in names if n in layout.names}
        if not shown <= known:
            return None
        needed, kept = set(shown), []
        for step in reversed(steps):  # only the atoms a shown value needs
            if needed & {name for _, name in step.binds}:
                kept.append(step)
                needed |= {b for b in step.by if isinstance(b, str)}
        self._fact_plans[index] = kept[::-1]
        return self._fact_plans[index]

    def _kept(self, rel: str, key: tuple[int, ...]) -> dict[tuple, set[tuple]] | None:
        """A stored or static relation's rows by their values at `key`, kept once per connection;
        None for one of more than MESSAGE_LOOKUP_ROWS rows."""
        if (rel, key) not in self._kept_rows:
            self._kept_rows[(rel, key)] = None
            t = table_name(self.cp, rel)
            (n,) = self.con.execute(f"SELECT count(*) FROM {t}").fetchone()  # type: ignore[misc]
            if n <= MESSAGE_LOOKUP_ROWS:
                rows: dict[tuple, set[tuple]] = {}
                for row in self.con.execute(f"SELECT DISTINCT * FROM {t}").fetchall():
                    rows.setdefault(tuple(row[j] for j in key), set()).add(row)
                self._kept_rows[(rel, key)] = rows
        return self._kept_rows[(rel, key)]

    def _from_facts(
        self,
        models: list[BatchModel],
        index: int,
        names: tuple[str, ...],
        outcome_rows: dict[tuple[str, tuple[int, ...]], dict[tuple, list[tuple[int, tuple]]]],
    ) -> list[tuple[int, tuple, tuple[str | None, ...]]] | None:
        """Each head's message values without a query, where the rule alone derives its rows and
        each shown value is read from the one row of a relation that holds its key (_fact_steps):
        every head has a solution, which holds that row, so all its solutions show the same
        values (the first of them: merged, one value each). A claim relation's rows are the
        claim's facts; a value whose type is not the column's (an int or str) is not trusted.
        None where a head's key has no row or several: the rule is queried, in this chunk and
        the next ones. inj.unknown_code, fee.*, ncci.aoc, mod.25_not_em: the code of the head's line.
        `outcome_rows`: the chunk's outcome rows by relation and the values at some columns."""
        steps = self._fact_steps(index, names)
        if steps is None:
            return None
        rule, consts = self.cp.rules[index], self.sql.head_consts[index]
        head = [(j, a.name) for j, a in enumerate(rule.head.args) if isinstance(a, IVar)]
        layout = self.sql.solution_layout[index]
        shown = [n if n in layout.names else None for n in names]
        out: list[tuple[int, tuple, tuple[str | None, ...]]] = []
        kept = [None if step.claim else self._kept(step.relation, step.key) for step in steps]
        if any(rows is None and not step.claim for rows, step in zip(kept, steps, strict=True)):
            return None
        # each step as a head reads it: the variables it binds that a shown value or a later step needs
        needed = {n for n in shown if n is not None}
        plan: list[
            tuple[str, dict[tuple, set[tuple]] | None, Callable[[Row], object], tuple, list[tuple[int, str]]]
        ] = []
        for step, by_key in reversed(list(zip(steps, kept, strict=True))):
            binds = [(j, name) for j, name in step.binds if name in needed]
            needed.update(b for b in step.by if isinstance(b, str))
            key: Callable[[Row], object] = operator.itemgetter(*step.key) if step.key else lambda _row: ()
            plan.append((step.relation, by_key, key, step.by, binds))
        plan.reverse()
        for ck, row in _rule_heads(
            models, rule.head.relation, consts, outcome_rows, self._groups.get(rule.head.relation)
        ):
            env: dict[str, Value] = {name: row[j] for j, name in head}
            for relation, by_key, key, by, binds in plan:
                look = tuple([env[b] if isinstance(b, str) else b.value for b in by])
                found: Collection[Row]
                if by_key is None:  # a claim relation: the claim's few rows, read through
                    want = look[0] if len(look) == 1 else look  # as itemgetter gives them
                    found = [fact for fact in models[ck].relations.get(relation, ()) if key(fact) == want]
                    if len(found) > 1:
                        found = set(map(tuple, found))  # a repeated fact is one row
                else:
                    found = by_key.get(look, ())
                if len(found) != 1:
                    self._fact_plans[index] = None  # not a rule whose values its heads fix: queried from now on
                    return None
                for fact in found:
                    for j, name in binds:
                        env[name] = fact[j]
            values = [None if n is None else env[n] for n in shown]
            for v in values:
                if v is not None and type(v) is not int and type(v) is not str:
                    return None
            out.append((ck, row, tuple([None if v is None else str(v) for v in values])))
        return out

    def _message_sql(
        self, index: int, sql: str, places: list[int | None], keyed: frozenset[int] = frozenset()
    ) -> tuple[str, list[int | None], list[int]]:
        """The rule's solutions SELECT with only the claim key, the head and the columns at
        `places`, ordered by the claim key, the head and the body columns _sort_keys keeps given
        the `keyed` atoms; where each place is in it, and the columns that hold one value per
        head (the head's, and a place whose variable the head fixes)."""
        found = self._message_sqls.get((index, tuple(places), keyed))
        if found is not None:
            return found
        layout = self.sql.solution_layout[index]
        first, rest = sql.split("\n", 1) if "\n" in sql else (sql, "")
        exprs = layout.columns
        cols = [col for col, _ in layout.head if col is not None]
        head = 1 + len(cols)  # the head's columns come first
        keep = [*range(head), *sorted({p for p in places if p is not None and p >= head})]
        if (
            layout.atoms is None
            or first != "SELECT " + ", ".join(f"{e} AS s{i}" for i, e in enumerate(exprs))
            or "\nORDER BY " not in rest
        ):
            found = (sql, places, cols)
        else:  # ORDER BY names a column by number among the head's only: those keep their place
            body, order = rest.rsplit("\nORDER BY ", 1)
            heads = order.split(", ")[: 1 + len(dict.fromkeys(cols))]  # the claim key and the head's columns
            keys, fixed = _sort_keys(layout, keyed)
            moved = {old: new for new, old in enumerate(keep)}
            select = ", ".join(f"{exprs[old]} AS s{new}" for new, old in enumerate(keep))
            one = {*cols, *(layout.names[n] for n in fixed)}  # columns with one value per head
            found = (
                f"SELECT {select}\n{body}\nORDER BY {', '.join([*heads, *keys])}",
                [None if p is None else moved[p] for p in places],
                sorted(moved[p] for p in one if p in moved),
            )
        self._message_sqls[(index, tuple(places), keyed)] = found
        return found

    def _grouped_sql(
        self, index: int, sql: str, places: list[int | None], keyed: frozenset[int] = frozenset()
    ) -> tuple[str, GroupPlan] | None:
        """The message query of _message_sql as one row per head: the claim key, the head's
        columns, the columns with one value per head, the number of solution rows, and each row's
        sort keys and shown values that vary within a head, cast to text, joined with _FIELD and
        the rows with _RECORD in no particular order (_merge_groups sorts them as the ORDER BY
        does). None where that cannot be: a sort key or shown value that is not a column of a
        body atom, a sort on the full ORDER BY, or no shown value that varies."""
        cache_key = (index, tuple(places), keyed)
        if cache_key not in self._grouped_sqls:
            self._grouped_sqls[cache_key] = self._make_grouped_sql(index, sql, places, keyed)
        return self._grouped_sqls[cache_key]

    def _make_grouped_sql(
        self, index: int, sql: str, places: list[int | None], keyed: frozenset[int]
    ) -> tuple[str, GroupPlan] | None:
        layout = self.sql.solution_layout[index]
        first, rest = sql.split("\n", 1) if "\n" in sql else (sql, "")
        exprs = layout.columns
        if (
            layout.atoms is None
            or first != "SELECT " + ", ".join(f"{e} AS s{i}" for i, e in enumerate(exprs))
            or "\nORDER BY " not in rest
        ):
            return None
        body = rest.rsplit("\nORDER BY ", 1)[0]
        cols = [col for col, _ in layout.head if col is not None]
        head = 1 + len(cols)
        keys, fixed = _sort_keys(layout, keyed)
        one = {*range(head), *(layout.names[n] for n in fixed)}
        shown = [p for p in places if p is not None]
        varying = sorted({p for p in shown if p not in one})
        if not varying:
            return None
        key_vars = {col: var for atom in layout.atoms for col, var in atom.order}
        field_of = {key_vars[key]: n for n, key in enumerate(keys)}  # a sort key's variable -> its field
        looked = {p: found for p in varying if (found := self._lookup(index, exprs[p], field_of)) is not None}
        fetched = [p for p in varying if p not in looked]
        types: list[str] = []  # each sort key's type
        for key in [*keys, *(exprs[p] for p in fetched)]:
            m = _ATOM_COLUMN.fullmatch(key)
            if m is None:
                return None
            atom = self.cp.rules[index].body[int(m[1])]
            assert isinstance(atom, IAtom)
            types.append(self.types[atom.relation][int(m[2])])
        once = sorted(p for p in {p for p in shown if p in one} if p >= head)  # one value per head, not the head
        texts = [f"CAST({e} AS VARCHAR)" for e in [*keys, *(exprs[p] for p in fetched)]]
        late = self._joined_late(index, keyed, body, exprs[:head], [*texts, *(exprs[p] for p in once)])
        body, after, moved = late if late is not None else (body, "", set())
        inner = [p for p in once if exprs[p] not in moved]
        select = [f"{exprs[i]} AS s{i}" for i in range(head)]
        select += [f"{exprs[p]} AS s{head + n}" for n, p in enumerate(inner)]
        record = f" || '{_FIELD}' || ".join(texts)
        select += ["count(*) AS n", f"string_agg({record}, '{_RECORD}') AS t"]
        at = {p: n for n, p in enumerate(once, head)}
        where = tuple(
            ("head", p)
            if p is not None and p < head
            else ("once", at[p] - head)
            if p in at
            else ("varying", varying.index(p))
            if p is not None
            else ("none", 0)
            for p in places
        )
        plan = GroupPlan(
            count=len(once),
            keys=len(keys),
            numeric=tuple(t == NUM for t in types[: len(keys)]),
            width=len(texts),
            places=where,
            values=tuple(looked[p] if p in looked else (len(keys) + fetched.index(p), None) for p in varying),
        )
        heads = ", ".join(f"list(g.s{i})" for i in range(head))
        values = [exprs[p] if exprs[p] in moved else f"g.s{head + inner.index(p)}" for p in once]
        outer = ", ".join([*values, "g.n", "g.t", heads])
        return f"SELECT {outer} FROM (SELECT {', '.join(select)}\n{body}\nGROUP BY ALL) g{after} GROUP BY ALL", plan

    def _joined_late(
        self, index: int, keyed: frozenset[int], body: str, heads: Sequence[str], grouped: list[str]
    ) -> tuple[str, str, set[str]] | None:
        """The FROM and WHERE of a grouped message query (`body`) without the atoms better joined
        after grouping, the join that adds them to the grouped rows (aliased g, whose s0, s1, ...
        are the head's columns `heads`) and their columns a value with one per head may read (as
        `body` names them, read as they are after the join); None where no atom is. Such an atom
        is of a claim relation checked keyed (_keyed_atoms: no two rows agree on the claim key and
        the atom's key columns), each of its tests compares its columns with the head's or
        constants only, and no column of it is a sort key, a fetched value (`grouped`) or a head
        column: within a head, each solution row then joins the same one row of it, or none;
        joined after grouping it adds that row's values to the head's one grouped row, or drops
        it, as joining before grouping would, at a join of one row per head instead of one per
        solution (dates.outside_table_period: `line` for its date, 51,000 heads of 163,000 rows)."""
        parsed = _body_parts(body)
        if parsed is None:
            return None
        froms, conds = parsed
        layout = self.sql.solution_layout[index]
        head_of = {col: f"g.s{i}" for i, col in enumerate(heads)}
        after: list[str] = []
        tests: list[str] = []
        moved: set[str] = set()
        for k in sorted(keyed):
            atom = (layout.atoms or ())[k]
            if self.cp.kinds[atom.relation] is not RelKind.CLAIM or not atom.order:
                continue
            alias = atom.order[0][0].split(".")[0]
            own = {col for col, _ in atom.order}  # its columns that bind a variable: read as they are
            mine = [c for c in conds if _refers(c, alias)]
            rewritten = [_on_heads(c, alias, head_of) for c in mine]
            if (
                alias not in froms
                or any(_refers(e, alias) for e in heads)
                or any(_refers(e, alias) for e in grouped if e not in own)
                or any(c is None for c in rewritten)
            ):
                continue
            after.append(f"{froms.pop(alias)} {alias}")
            tests += [c for c in rewritten if c is not None]
            conds = [c for c in conds if c not in mine]
            moved |= own
        if not after:
            return None
        kept = "FROM " + ", ".join(f"{f} {a}" for a, f in froms.items())
        if conds:
            kept += "\nWHERE " + "\n  AND ".join(conds)
        join = ", " + ", ".join(after) + (" WHERE " + " AND ".join(tests) if tests else "")
        return kept, join, moved

    def _lookup(
        self, index: int, expr: str, field_of: dict[str, int]
    ) -> tuple[tuple[int, ...], dict[tuple[str, ...], str]] | None:
        """For a shown value `expr` of a grouped message query: where it is a column of a positive
        atom of a stored or static relation (of at most MESSAGE_LOOKUP_ROWS rows) that holds no two
        distinct rows agreeing on the atom's columns bound to sort keys (`field_of`: a sort key's
        variable -> its field in a solution's text), those fields and the relation's text of the
        value for each key, as the grouped query would CAST them; None otherwise. A solution's row
        of the atom is then the one row of its key: its value is looked up, not joined into the
        text (dates.outside_table_period: the table's label, ~100 characters, for its name)."""
        m = _ATOM_COLUMN.fullmatch(expr)
        if m is None:
            return None
        atom, col = self.cp.rules[index].body[int(m[1])], int(m[2])
        if (
            not isinstance(atom, IAtom)
            or atom.negated
            or self.cp.kinds[atom.relation] not in (RelKind.STORED, RelKind.STATIC)
            or atom.relation in self.sql.big
        ):
            return None
        key = tuple(j for j, a in enumerate(atom.args) if isinstance(a, IVar) and a.name in field_of and j != col)
        if not key:
            return None
        cache_key = ("lookup", atom.relation, key, col)
        if cache_key not in self._lookups:
            self._lookups[cache_key] = None
            t = table_name(self.cp, atom.relation)
            (n,) = self.con.execute(f"SELECT count(*) FROM {t}").fetchone()  # type: ignore[misc]
            if n <= MESSAGE_LOOKUP_ROWS and self._is_unique(atom.relation, key):
                cols = ", ".join(f"CAST(c{j} AS VARCHAR)" for j in (*key, col))
                rows = self.con.execute(f"SELECT DISTINCT {cols} FROM {t}").fetchall()
                self._lookups[cache_key] = {tuple(row[:-1]): row[-1] for row in rows}
        table = self._lookups[cache_key]
        if table is None:
            return None
        fields = tuple(field_of[a.name] for j, a in enumerate(atom.args) if j in key and isinstance(a, IVar))
        return fields, table

    def _empty(self, table: str, columns: list[str]) -> None:
        """Empty a table of the last chunk's rows by making it anew. DELETE leaves the deleted rows
        in the table's row groups, which every later scan and append of the table still walks:
        measured on 10,000-claim chunks, a COPY of `line` into a table emptied so took 32 ms
        instead of 22, and callgrind counted 6% more instructions for loading and the strata."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({', '.join(columns)})")

    def _load_claims(self, n: int) -> None:
        """The chunk's claim keys 0..n-1, in a table made anew (see _empty)."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {_q('_claims')} AS SELECT range AS ck FROM range({n})")

    def _fetch(self, models: list[BatchModel], relations: list[str]) -> None:
        """Each claim's rows of the relations (sorted: one type per column, natural order is _key
        order). A relation whose rules all put a constant at some columns (the outcomes' rule id)
        is fetched grouped on those columns (_fetch_grouped); the groups are kept for this chunk's
        messages (_rule_heads, _solved_rules). A claim without rows of a relation keeps those it
        had, or gets an empty list."""
        cp, con = self.cp, self.con
        self._groups = {}
        for rel in relations:
            if cp.kinds.get(rel) not in _CK_KINDS:
                continue
            # a relation filled with UNION ALL may hold a row twice (see _bag): a model holds sets
            table = table_name(cp, rel)
            if any(rel in step.bags for step in self.sql.steps):
                table = f"(SELECT DISTINCT * FROM {table})"
            at = self._const_columns.get(rel)
            # each claim's rows, in a list of its own made up front: appended to by claim key,
            # with no dict to find it in, and the empty list of a claim without rows as it is
            by_claim: list[list[Row]] = [[] for _ in models]
            if at:
                self._fetch_grouped(rel, table, at, by_claim)
            else:
                for rec in con.execute(f"SELECT * FROM {table}").fetchall():
                    by_claim[rec[0]].append(rec[1:])
            for m, rows in zip(models, by_claim, strict=True):
                if not rows:
                    m.relations.setdefault(rel, rows)
                    continue
                if len(rows) > 1:
                    rows.sort()
                m.relations[rel] = rows

    def _fetch_grouped(self, rel: str, table: str, at: tuple[int, ...], by_claim: list[list[Row]]) -> None:
        """The relation's rows, each appended to its claim's list in `by_claim`, fetched as one row
        per distinct value of the columns `at` with the claim keys and other columns as lists: each
        of those values (a rule id) is turned into a Python object once per group, not once per
        row, which is most of the cost of fetching a row. The groups (values -> claim keys, rows)
        are kept in self._groups."""
        rest = [j for j in range(self.cp.arity[rel]) if j not in at]
        select = ", ".join(["list(ck)", *(f"list(c{j})" for j in rest), *(f"c{j}" for j in at)])
        by = ", ".join(f"c{j}" for j in at)
        groups: dict[tuple, tuple[list[int], list[Row]]] = {}
        self._groups[rel] = (at, groups)
        for rec in self.con.execute(f"SELECT {select} FROM {table} GROUP BY {by}").fetchall():
            cks: list[int] = rec[0]
            values = rec[1 + len(rest) :]
            columns: list[Iterable[Value]] = [()] * (len(rest) + len(at))
            for j, column in zip(rest, rec[1 : 1 + len(rest)], strict=True):
                columns[j] = column
            for j, v in zip(at, values, strict=True):
                columns[j] = repeat(v, len(cks))
            rows: list[Row] = [*zip(*columns, strict=True)]
            groups[values] = (cks, rows)
            for ck, row in zip(cks, rows, strict=True):
                by_claim[ck].append(row)

    def close(self) -> None:
        atexit.unregister(self.close)
        self.con.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def _merge_heads(
    rows: list[tuple],
    head_key: Callable[[tuple], tuple],
    cols: list[int],
    places: list[int | None],
    limit: int,
    join: Callable[[list[str]], str],
    merged: dict[tuple, str],
    *,
    dedupe: bool = False,
) -> tuple[list[tuple[tuple, tuple[str | None, ...]]], set[tuple]]:
    """Each head's (first row, the text of the columns at `places`) from solution rows in the
    prover's order, as adjudicate._merge then str() give them, and the keys of the heads left
    out: those with more than `limit` rows, unless `dedupe` (the rows then hold every named
    variable, and the first `limit` distinct ones are merged). A head of at most `limit` rows
    needs no de-duplication: a repeated solution adds no value that did not appear before it, so
    each name's distinct values, in order, are the same with or without it. A name's values are
    merged once per distinct sequence of values (`merged`): most heads of a rule repeat a few of
    them (the same three table labels, say). `cols`: the columns that hold one value per head
    (the head's own, or a variable the head fixes, see _sort_keys): read off the first row."""
    fixed = [(k, p) for k, p in enumerate(places) if p is not None and p in cols]
    varying = [(k, p, operator.itemgetter(p)) for k, p in enumerate(places) if p is not None and p not in cols]
    blank: list[str | None] = [None] * len(places)  # None: a name the rule does not bind
    out: list[tuple[tuple, tuple[str | None, ...]]] = []
    overflow: set[tuple] = set()
    for key, group in itertools.groupby(rows, head_key):
        sols = list(group)
        if len(sols) > limit:
            if not dedupe:
                overflow.add(key)
                continue
            sols = list(dict.fromkeys(sols))[:limit]  # the first `limit` distinct solutions
        first = sols[0]
        values = blank[:]
        for k, p in fixed:
            values[k] = str(first[p])
        if len(sols) == 1:
            for k, p, _get in varying:
                values[k] = str(first[p])
        else:
            for k, _p, get in varying:
                column = tuple(map(get, sols))
                text = merged.get(column)
                if text is None:
                    distinct = dict.fromkeys(column)  # in order of first appearance
                    text = merged[column] = str(column[0]) if len(distinct) == 1 else join(list(map(str, distinct)))
                values[k] = text
        out.append((first, tuple(values)))
    return out, overflow


_FROM_ITEM = re.compile(r'("[^"]*") (t\d+)')  # a FROM item of _rule_sql: a table and its alias
_COLUMN_REF = re.compile(r"\b(t\d+)\.(ck|c\d+)\b")  # a column of an atom, as _rule_sql names it


def _body_parts(body: str) -> tuple[dict[str, str], list[str]] | None:
    """The FROM items (alias -> table) and WHERE tests of a solutions SELECT's body as _rule_sql
    writes it (a test a line); None where it is not read so surely: a FROM item that is not a
    plain table (a subquery), or a test whose quotes do not close on its line."""
    first, *rest = body.split("\n")
    if not first.startswith("FROM "):
        return None
    items = first[len("FROM ") :].split(", ")
    found = [_FROM_ITEM.fullmatch(item) for item in items]
    if any(m is None for m in found):
        return None
    froms = {m[2]: m[1] for m in found if m is not None}
    conds: list[str] = []
    for n, line in enumerate(rest):
        lead = "WHERE " if n == 0 else "  AND "
        if not line.startswith(lead) or line.count("'") % 2:
            return None
        conds.append(line[len(lead) :])
    return froms, conds


def _refs(sql: str) -> list[re.Match[str]]:
    """The atom columns a piece of SQL names, outside its string constants."""
    return [m for m in _COLUMN_REF.finditer(sql) if sql.count("'", 0, m.start()) % 2 == 0]


def _refers(sql: str, alias: str) -> bool:
    """Whether a piece of SQL names a column of the atom aliased `alias`."""
    return any(m[1] == alias for m in _refs(sql))


def _on_heads(cond: str, alias: str, head_of: dict[str, str]) -> str | None:
    """A test of the atom aliased `alias` with every other column it names replaced by the
    grouped row's (`head_of`: a head column -> its name there); None where it names another."""
    out, at = [], 0
    for m in _refs(cond):
        if m[1] == alias:
            continue
        name = head_of.get(m[0])
        if name is None:
            return None
        out += [cond[at : m.start()], name]
        at = m.end()
    return "".join([*out, cond[at:]])


# a top-level WHERE test of a column against a constant, as _rule_sql writes it (one a line)
_CONSTANT_TEST = re.compile(r"\n(?:WHERE|  AND) \((t\d+\.c\d+) = ('(?:[^']|'')*'|-?\d+)\)(?=\n)")


def _constant_tests(sql: str) -> list[tuple[tuple[str, str], str, str]]:
    """Each top-level WHERE test of a solutions SELECT that compares a column with a constant,
    as (the SELECT before and after the constant, the column, the constant). Text inside a
    string constant is not a test (an odd number of quotes before it)."""
    return [
        ((sql[: m.start(2)], sql[m.end(2) :]), m[1], m[2])
        for m in _CONSTANT_TEST.finditer(sql)
        if sql.count("'", 0, m.start()) % 2 == 0
    ]


def _fused_sql(rest: tuple[str, str], test: str, consts: list[str]) -> str | None:
    """The SELECT around a constant `rest` (see _constant_tests) for every constant at once: its
    test `column = constant` becomes `column IN (the constants)`, and each row gets a last
    column, the place of its constant among `consts` (the ORDER BY names columns by number, so
    it sorts as before). None where the select list does not end a line (a constant in it
    holding a line break)."""
    head, tail = rest
    fused = head[: -len(f"{test} = ")] + f"{test} IN ({', '.join(consts)})" + tail
    end = fused.find("\nFROM ")
    if end < 0 or fused.count("'", 0, end) % 2:
        return None
    tag = " ".join(f"WHEN {test} = {const} THEN {i}" for i, const in enumerate(consts))
    return f"{fused[:end]}, CASE {tag} END{fused[end:]}"


def _rule_heads(
    models: list[BatchModel],
    rel: str,
    consts: tuple[tuple[int, Value], ...],
    outcome_rows: dict[tuple[str, tuple[int, ...]], dict[tuple, list[tuple[int, tuple]]]],
    groups: tuple[tuple[int, ...], dict[tuple, tuple[list[int], list[Row]]]] | None = None,
) -> Iterable[tuple[int, tuple]]:
    """The chunk's rows of outcome relation `rel` that hold the values `consts` (position,
    value), each with its claim key; `outcome_rows` keeps the chunk's rows by relation and the
    values at the positions, read once for all the rules that ask. `groups`: the relation's rows
    as DuckDBBackend._fetch_grouped fetched them, read without a pass over the rows where they
    are grouped on these positions."""
    where = (rel, tuple(j for j, _ in consts))
    if groups is not None and groups[0] == where[1]:
        cks, found_rows = groups[1].get(tuple(v for _, v in consts), ((), ()))
        return zip(cks, found_rows, strict=True)
    rows = outcome_rows.get(where)
    if rows is None:
        rows = outcome_rows[where] = {}
        get = operator.itemgetter(*where[1]) if where[1] else lambda _row: ()
        for ck, m in enumerate(models):
            for row in m.relations.get(rel, ()):
                found = get(row)
                key = found if len(where[1]) != 1 else (found,)
                sink = rows.get(key)
                if sink is None:
                    rows[key] = [(ck, row)]
                else:
                    sink.append((ck, row))
    return rows.get(tuple(v for _, v in consts), [])


def _head_places(
    cp: CompiledProgram, index: int, layout: SolutionLayout, places: list[int | None]
) -> list[int | None] | None:
    """For a rule whose message shows only head arguments (the solutions SELECT's columns at
    `places`), each place's head argument (None: a name the rule does not bind), so that every
    outcome row matching the rule's head fills the message without a query; None otherwise. Only
    where no other rule can derive such a row (its head has a different constant at some
    argument): each such row is then a head this rule has solutions for, as the query finds."""
    args = {col: j for j, (col, _) in enumerate(layout.head) if col is not None}
    if not all(p is None or p in args for p in places):
        return None
    head = cp.rules[index].head
    for rule in cp.rules:
        if (
            rule.index != index
            and rule.head.relation == head.relation
            and not any(
                isinstance(a, IConst) and isinstance(b, IConst) and a.value != b.value
                for a, b in zip(rule.head.args, head.args, strict=True)
            )
        ):
            return None  # it may derive rows of this rule's head
    return [None if p is None else args[p] for p in places]


@dataclass(frozen=True)
class FactStep:
    """An atom DuckDBBackend._from_facts reads: its relation's rows (a claim relation's from the
    model's facts) whose columns `key` hold `by` (a constant, or a variable's name), and the
    variables it binds at its other columns."""

    relation: str
    claim: bool
    key: tuple[int, ...]
    by: tuple[IConst | str, ...]
    binds: tuple[tuple[int, str], ...]


_ATOM_COLUMN = re.compile(r"t(\d+)\.c(\d+)")  # a body atom's column, as _rule_sql names it


@dataclass(frozen=True)
class GroupPlan:
    """Where _merge_groups finds things in a row of DuckDBBackend._grouped_sql: the values with
    one per head first, the number of solution rows at `count`, their joined texts after it, then
    the heads' columns as lists; each text holds `keys` sort keys (`numeric`: compared as numbers)
    then the varying shown values it fetches, `width` fields in all; per message place, where its
    value is: ("head", column of the solutions SELECT), ("once", its place among the values with
    one per head), ("varying", its place in `values`) or ("none", 0) for a name the rule does not
    bind; per varying value, its field (field, None), or (the key fields, the relation's value for
    each key) for one looked up (see DuckDBBackend._lookup)."""

    count: int
    keys: int
    numeric: tuple[bool, ...]
    width: int
    places: tuple[tuple[str, int], ...]
    values: tuple[tuple[Any, dict[tuple[str, ...], str] | None], ...] = ()


def _merge_groups(
    rows: list[tuple],
    head_key: Callable[[tuple], tuple],
    plan: GroupPlan,
    limit: int,
    join: Callable[[list[str]], str],
    fill: tuple[
        list[dict[tuple[int, tuple], tuple[str | None, ...]]], int, tuple[tuple[int | None, Value | None], ...]
    ],
) -> tuple[int, set[tuple], int]:
    """_merge_heads over the rows of a grouped message query, written straight into the models'
    messages (`fill`: each model's messages, the rule index, and the outcome row's layout,
    SolutionLayout.head): the number of heads written, the keys of those left out and the number
    of solution rows. A row holds the heads whose solutions give the same texts (and values with
    one per head): their texts are split, sorted on their sort keys as the ORDER BY sorts (a text
    sorts as DuckDB's VARCHAR does, by code point; a number as a number; rows equal on every key
    are one solution, so their order changes nothing) and merged as _merge_heads merges them,
    once for all its heads. Heads with more than `limit` rows, or whose texts do not split into
    their rows and fields (a value holding a separator), are left out as an overflow (merged from
    the full query). The merge of a text is kept per distinct text: several rows may share one.
    A row's heads are written column by column (_zipped): its outcome rows and messages are made
    by zip and map over the heads' column lists, not head by head in Python (~50,000 heads a
    10,000-claim chunk for dates.outside_table_period)."""
    messages, index, head_layout = fill
    count, nkeys, width = plan.count, plan.keys, plan.width
    numeric = [i for i, num in enumerate(plan.numeric) if num]
    merged: dict[str, tuple[str | None, ...] | None] = {}
    written = total = 0
    overflow: set[tuple] = set()
    for rec in rows:
        n = rec[count]
        lists = rec[count + 2 :]  # each of the solutions SELECT's head columns, a value per head
        total += n * len(rec[-1])
        texts = merged.get(rec[count + 1], ()) if n <= limit else None
        if texts == ():
            agg: str = rec[count + 1]
            texts = merged[agg] = _merge_texts(agg, n, nkeys, width, numeric, join, plan.values)
        if texts is None:
            overflow.update(map(head_key, zip(*lists, strict=True)))
            continue
        written += len(rec[-1])
        shown = [
            [str(v) for v in lists[at]]
            if how == "head"
            else repeat(str(rec[at]) if how == "once" else texts[at] if how == "varying" else None)
            for how, at in plan.places
        ]
        outcome = _zipped([repeat(v) if col is None else lists[col] for col, v in head_layout])
        for ck, row, values in zip(lists[0], outcome, _zipped(shown), strict=False):  # repeats are endless
            messages[ck][(index, row)] = values
    return written, overflow, total


def _zipped(columns: Sequence[Iterable[Any]]) -> Iterable[tuple]:
    """The tuples of `columns` read side by side (zip); endless empty tuples for no columns."""
    return zip(*columns, strict=False) if columns else repeat(())


def _merge_texts(
    agg: str,
    n: int,
    nkeys: int,
    width: int,
    numeric: list[int],
    join: Callable[[list[str]], str],
    values: tuple[tuple[Any, dict[tuple[str, ...], str] | None], ...] = (),
) -> tuple[str | None, ...] | None:
    """One head's joined texts (see _merge_groups) as the merged text of each varying value, or
    None where they do not split into `n` rows of `width` fields (or a key to look up a value by
    is not in its relation). `values`: where each varying value is (GroupPlan.values);
    empty: the fields after the keys, in order."""
    fields = [record.split(_FIELD) for record in agg.split(_RECORD)]
    if len(fields) != n or any(len(f) != width for f in fields):
        return None
    if numeric:
        try:
            fields.sort(key=lambda f: [int(v) if i in numeric else v for i, v in enumerate(f[:nkeys])])
        except ValueError:
            return None
    else:
        fields.sort(key=lambda f: f[:nkeys])
    out: list[str] = []
    for at, table in values or tuple((k, None) for k in range(nkeys, width)):
        if table is None:
            column = [f[at] for f in fields]
        else:
            column = [table.get(tuple(f[k] for k in at)) for f in fields]
            if None in column:
                return None
        distinct = list(dict.fromkeys(column))  # in order of first appearance
        out.append(distinct[0] if len(distinct) == 1 else join(distinct))
    return tuple(out)


def prepare_tables(kb: LoadedKB) -> None:
    """Build the DuckDB copies of the KB's tables and the stored relations' file (worker
    processes then only open them)."""
    cp = kb.compiled
    assert cp is not None
    types = infer_types(cp, declared_types(cp, kb.program))
    files = ensure_table_files(kb.store, types)
    path = stored_file(kb.store, stored_key(cp, kb.store, types, files))
    if not path.exists():
        _build_stored_file(cp, kb.store, types, files, path)


def big_stored(cp: CompiledProgram, count: Callable[[str], int]) -> frozenset[str]:
    """The stored relations of more than BIG_STORED_ROWS rows (`count`: a relation's rows), which a
    rule joins through the chunk's values (see _semi_joined)."""
    return frozenset(rel for rel, kind in cp.kinds.items() if kind is RelKind.STORED and count(rel) > BIG_STORED_ROWS)


def _sql_program(kb: LoadedKB) -> SqlProgram:
    """The SQL a backend of this KB runs: big stored relations counted in the store, as the
    backend counts them in its tables (the same rows)."""
    cp = kb.compiled
    assert cp is not None
    return compile_sql(cp, infer_types(cp, declared_types(cp, kb.program)), big_stored(cp, kb.store.count))


def program_sql(kb: LoadedKB) -> str:
    """The SQL of every step (`policykb compile --sql`)."""
    return _sql_program(kb).text()


def describe_steps(kb: LoadedKB) -> list[tuple[str, list[tuple[list[str], str]]]]:
    """The evaluation steps in order, each with a word on how it is computed (`policykb compile`)."""
    sp = _sql_program(kb)

    def how(step: Step) -> str:
        return "aggregate" if step.aggregate else "recursive" if step.recursive else ""

    return [
        ("static relations (computed once from the tables)", [(s.relations, how(s)) for s in sp.static_steps]),
        ("claim-dependent relations (per chunk of claims)", [(s.relations, how(s)) for s in sp.steps]),
    ]


def declared_types(cp: CompiledProgram, program) -> dict[str, list[str | None]]:
    """Column types from the KB's declarations (number or symbol)."""
    out: dict[str, list[str | None]] = {}
    for rel in cp.kinds:
        infos = program.attr_types(rel)
        if infos is not None:
            out[rel] = [NUM if t.base == "number" else SYM for t in infos]
    for rel, hidden in cp.fact_relations.items():
        if rel in out:
            out[hidden] = out[rel]
    return out
