"""The indexed store of stored relations: inline facts (in memory) and `.input` tables (SQLite).

The million-row NCCI tables never enter pyDatalog: rules reach them through keyed lookups
(see engine/datalog.py), so each evaluation touches only the rows its bound values select.
A table is validated and loaded once into a SQLite file in the cache directory, keyed by the
table's bytes and its declaration; later runs open the file and pay nothing.
"""

from __future__ import annotations

import csv
import fcntl
import gzip
import hashlib
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine import semantics
from engine.diagnostics import Diagnostic, Location, Severity
from engine.program import Program, TypeInfo, display_path
from engine.syntax import nodes as A

STORE_FORMAT = 4  # bump when the cache layout changes
MAX_ROW_ERRORS = 20  # per table; the rest are counted in one summary diagnostic

LOOKUP_MEMO_MAX = 200_000  # memoised lookups per store before the memo starts afresh

Row = tuple[A.Value, ...]
Pattern = tuple[int, ...]  # the argument positions that are bound in a lookup
SourcedRows = tuple[tuple["RowSource", Row], ...]


@contextmanager
def table_lock(cache_dir: Path, relation: str) -> Iterator[None]:
    """Hold the exclusive lock of a table's cache files (`<relation>.lock` beside them): worker
    processes that start on a cold cache build a table, or its indexes, one at a time, and never
    read one being written; `policykb cache --prune` removes a table's files under it too."""
    path = cache_dir / f"{relation}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class RowSource:
    """Where a stored fact comes from: a KB file line, or a table file's data row."""

    path: str
    line: int
    table_row: int | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"file": self.path, "line": self.line}
        if self.table_row is not None:
            d["row"] = self.table_row
        return d


@dataclass
class TableBuild:
    """What loading one table cost (reported by `policykb check` and the benchmark)."""

    relation: str
    rows: int
    seconds: float
    reused: bool


def default_cache_dir() -> Path:
    env = os.environ.get("POLICYKB_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "policykb"


@dataclass
class _MemoryRelation:
    rows: list[Row] = field(default_factory=list)
    sources: list[RowSource] = field(default_factory=list)
    index: dict[Pattern, dict[tuple, list[int]]] = field(default_factory=dict)

    def lookup(self, pattern: Pattern, key: tuple) -> list[int]:
        idx = self.index.get(pattern)
        if idx is None:
            idx = {}
            for i, row in enumerate(self.rows):
                idx.setdefault(tuple(row[p] for p in pattern), []).append(i)
            self.index[pattern] = idx
        return idx.get(key, [])


class Store:
    """Stored relations of one KB, answering lookups with some arguments bound."""

    def __init__(self, program: Program, cache_dir: Path | None = None):
        self.program = program
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.memory: dict[str, _MemoryRelation] = {}
        self.tables: dict[str, Path] = {}  # relation -> sqlite file
        self.table_files: dict[str, str] = {}  # relation -> table path as shown to users
        self.table_digests: dict[str, str] = {}  # relation -> sha256 of the table file
        self.diagnostics: list[Diagnostic] = []
        self.builds: list[TableBuild] = []
        self._conn: dict[str, sqlite3.Connection] = {}
        self._pid = os.getpid()
        # Lookups repeat across claims (the same codes come up again and again), so they are
        # memoised here, on the instance: the answers belong to this store's tables and nothing
        # else (a cache keyed by id(store) handed a new store the rows of a freed one).
        self._memo: dict[tuple[str, Pattern, tuple], tuple[SourcedRows, tuple[Row, ...]]] = {}
        self._load_facts()

    # -- inline facts ------------------------------------------------------------------

    def _load_facts(self) -> None:
        for f in self.program.facts:
            if f.atom.pred in self.program.claim_relations:
                continue
            if not all(isinstance(a, A.Const) for a in f.atom.args):
                continue
            rel = self.memory.setdefault(f.atom.pred, _MemoryRelation())
            row = tuple(a.value for a in f.atom.args)  # type: ignore[union-attr]
            rel.rows.append(row)
            rel.sources.append(RowSource(f.loc.path, f.loc.line))

    def add_rows(self, relation: str, rows: list[Row], source: str) -> None:
        """Stored facts given as data (conformance programs, tests)."""
        rel = self.memory.setdefault(relation, _MemoryRelation())
        for i, row in enumerate(rows, 1):
            rel.rows.append(tuple(row))
            rel.sources.append(RowSource(source, 0, i))

    # -- tables --------------------------------------------------------------------------

    def load_tables(self, patterns: dict[str, set[Pattern]] | None = None, progress=None) -> None:
        """Validate and cache every `.input` table (once per content), and make sure the
        indexes the compiled rules need exist."""
        patterns = patterns or {}
        root = self.program.root or Path(".")
        for name in sorted(self.program.inputs):
            inp = self.program.inputs[name]
            decl = self.program.decls.get(name)
            filename = inp.option("filename")
            if decl is None or not isinstance(filename, str):
                continue  # reported by the checker
            path = root / filename
            shown = display_path(root, path)
            self.table_files[name] = shown
            if not path.is_file():
                self.diagnostics.append(
                    Diagnostic("table-missing", f"table file {filename} for {name} does not exist", inp.loc)
                )
                continue
            with table_lock(self.cache_dir, name):
                db = self._ensure_table(name, decl, inp, path, shown, progress)
                if db is not None:
                    self.tables[name] = db
                    self._ensure_indexes(name, patterns.get(name, set()))

    def _ensure_table(
        self, name: str, decl: A.RelDecl, inp: A.InputDecl, path: Path, shown: str, progress
    ) -> Path | None:
        types = self.program.attr_types(name) or []
        key = hashlib.sha256()
        key.update(
            f"{STORE_FORMAT}|{name}|{[(a.name, t.name, t.pattern, t.is_date, t.optional) for a, t in zip(decl.attrs, types, strict=True)]}"
            f"|{inp.options}".encode()
        )
        digest = _file_digest(path)
        self.table_digests[name] = digest
        key.update(digest.encode())
        db = self.cache_dir / f"{name}-{key.hexdigest()[:20]}.sqlite"
        t0 = time.perf_counter()
        if db.exists():
            meta = self._read_meta(db)
            if meta is not None:
                self.diagnostics.extend(_diags_from_json(meta["diagnostics"]))
                self.builds.append(TableBuild(name, meta["rows"], time.perf_counter() - t0, True))
                return db
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # one build file per process and thread: two builders of the same table (the service's
        # catalog thread and a request, say) must not write into one file; os.replace is atomic
        tmp = db.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
        if tmp.exists():
            tmp.unlink()
        if progress is not None:
            progress(name, 0)  # announce the build: it is the slow part of a first run
        diags, rows = _build_table(tmp, name, decl, types, inp, path, shown, progress)
        if progress is not None:
            progress(name, rows)
        conn = sqlite3.connect(tmp)
        conn.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
        conn.execute(
            "INSERT INTO meta VALUES ('meta', ?)", (json.dumps({"rows": rows, "diagnostics": _diags_to_json(diags)}),)
        )
        conn.commit()
        conn.close()
        os.replace(tmp, db)
        self.diagnostics.extend(diags)
        self.builds.append(TableBuild(name, rows, time.perf_counter() - t0, False))
        return db

    @staticmethod
    def _read_meta(db: Path) -> dict | None:
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                (v,) = conn.execute("SELECT v FROM meta WHERE k='meta'").fetchone()
            finally:
                conn.close()
            return json.loads(v)
        except (sqlite3.Error, TypeError, ValueError):
            return None

    def _ensure_indexes(self, name: str, patterns: set[Pattern]) -> None:
        wanted = [p for p in patterns if p]
        if not wanted:
            return
        conn = sqlite3.connect(self.tables[name])
        try:
            for p in sorted(wanted):
                cols = ", ".join(f"c{i}" for i in p)
                conn.execute(f"CREATE INDEX IF NOT EXISTS ix_{'_'.join(map(str, p))} ON t ({cols})")
            conn.commit()
        finally:
            conn.close()

    def _connection(self, name: str) -> sqlite3.Connection:
        if self._pid != os.getpid():  # a forked worker must not share the parent's handles
            self._conn = {}
            self._pid = os.getpid()
        conn = self._conn.get(name)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.tables[name]}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            self._conn[name] = conn
        return conn

    # -- lookups --------------------------------------------------------------------------

    def has(self, relation: str) -> bool:
        return relation in self.memory or relation in self.tables

    def lookup(self, relation: str, pattern: Pattern, key: tuple) -> tuple[Row, ...]:
        """Rows of `relation` whose arguments at `pattern` equal `key`, sorted (immutable: the
        same answer is shared by every caller)."""
        return self._memoised(relation, pattern, key)[1]

    def lookup_with_sources(self, relation: str, pattern: Pattern, key: tuple) -> SourcedRows:
        """Like `lookup`, each row with where it comes from."""
        return self._memoised(relation, pattern, key)[0]

    def _memoised(self, relation: str, pattern: Pattern, key: tuple) -> tuple[SourcedRows, tuple[Row, ...]]:
        k = (relation, pattern, key)
        hit = self._memo.get(k)
        if hit is None:
            if len(self._memo) >= LOOKUP_MEMO_MAX:
                self._memo.clear()
            found = self._lookup_uncached(relation, pattern, key)
            hit = self._memo[k] = (found, tuple(row for _src, row in found))
        return hit

    def _lookup_uncached(self, relation: str, pattern: Pattern, key: tuple) -> SourcedRows:
        out: list[tuple[RowSource, Row]] = []
        mem = self.memory.get(relation)
        if mem is not None:
            for i in mem.lookup(pattern, key):
                out.append((mem.sources[i], mem.rows[i]))
        if relation in self.tables:
            conn = self._connection(relation)
            where = " AND ".join(f"c{p} = ?" for p in pattern) or "1"
            shown = self.table_files[relation]
            for rec in conn.execute(f"SELECT rowid, * FROM t WHERE {where}", key):
                out.append((RowSource(shown, rec[0] + 1, rec[0]), tuple(rec[1:])))
        out.sort(key=lambda sr: semantics.row_key(sr[1]))
        return tuple(out)

    def holds(self, relation: str, column: int, values: tuple[A.Value, ...]) -> bool:
        """Whether some row of `relation` has one of `values` at `column` (a table is read with
        an index on the column where there is one, else scanned)."""
        mem = self.memory.get(relation)
        if mem is not None and any(len(row) > column and row[column] in values for row in mem.rows):
            return True
        if relation not in self.tables or not values:
            return False
        marks = ", ".join("?" * len(values))
        found = self._connection(relation).execute(f"SELECT 1 FROM t WHERE c{column} IN ({marks}) LIMIT 1", values)
        return found.fetchone() is not None

    def count(self, relation: str) -> int:
        n = len(self.memory[relation].rows) if relation in self.memory else 0
        if relation in self.tables:
            (m,) = self._connection(relation).execute("SELECT count(*) FROM t").fetchone()
            n += m
        return n

    def scan(self, relation: str) -> Iterator[tuple[RowSource, Row]]:
        """Every row, in file order (docs and the benchmark's oracle use this)."""
        mem = self.memory.get(relation)
        if mem is not None:
            yield from zip(mem.sources, mem.rows, strict=True)
        if relation in self.tables:
            shown = self.table_files[relation]
            for rec in self._connection(relation).execute("SELECT rowid, * FROM t ORDER BY rowid"):
                yield RowSource(shown, rec[0] + 1, rec[0]), tuple(rec[1:])


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _build_table(
    db: Path, name: str, decl: A.RelDecl, types: list[TypeInfo], inp: A.InputDecl, path: Path, shown: str, progress
) -> tuple[list[Diagnostic], int]:
    """Read, validate and insert every row; return the problems found and the row count."""
    diags: list[Diagnostic] = []
    delimiter = inp.option("delimiter")
    delimiter = delimiter if isinstance(delimiter, str) and len(delimiter) == 1 else ","
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    cols = ", ".join(f"c{i} {'INTEGER' if t.base == 'number' else 'TEXT'}" for i, t in enumerate(types))
    conn.execute(f"CREATE TABLE t ({cols})")
    expected = [a.name for a in decl.attrs]
    n_rows = 0
    errors = 0
    checkers = [_value_checker(t) for t in types]
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                header = []
            except (csv.Error, UnicodeDecodeError, OSError) as exc:
                diags.append(Diagnostic("table-unreadable", f"cannot read {shown}: {exc}", Location(shown, 1, 1)))
                return diags, 0
            if [h.strip() for h in header] != expected:
                diags.append(
                    Diagnostic(
                        "table-header",
                        f"header of {shown} is {','.join(header) or '(empty)'}; {name} expects {','.join(expected)}",
                        Location(shown, 1, 1),
                        notes=(f"declared at {decl.loc}",),
                    )
                )
                return diags, 0
            insert = (
                f"INSERT INTO t (rowid, {', '.join(f'c{i}' for i in range(len(types)))}) VALUES (?{', ?' * len(types)})"
            )
            batch: list[tuple] = []
            row_no = 0
            try:
                for row_no, raw in enumerate(reader, 1):
                    values, problem = _convert(raw, checkers, expected)
                    if problem is not None:
                        errors += 1
                        if errors <= MAX_ROW_ERRORS:
                            diags.append(
                                Diagnostic(
                                    "table-row", f"{shown} row {row_no}: {problem}", Location(shown, row_no + 1, 1)
                                )
                            )
                        continue
                    batch.append((row_no, *values))
                    if len(batch) >= 50_000:
                        conn.executemany(insert, batch)
                        n_rows += len(batch)
                        batch.clear()
                        if progress is not None:
                            progress(name, n_rows)
            except (csv.Error, UnicodeDecodeError, OSError, EOFError) as exc:
                diags.append(
                    Diagnostic("table-unreadable", f"{shown} row {row_no + 1}: {exc}", Location(shown, row_no + 2, 1))
                )
            conn.executemany(insert, batch)
            n_rows += len(batch)
    finally:
        conn.commit()
        conn.close()
    if errors > MAX_ROW_ERRORS:
        diags.append(
            Diagnostic(
                "table-row", f"{shown}: {errors - MAX_ROW_ERRORS} more invalid rows not shown", Location(shown, 1, 1)
            )
        )
    return diags, n_rows


def _value_checker(t: TypeInfo):
    """A memoised per-type validator: NCCI tables repeat the same codes thousands of times."""
    cache: dict[str, tuple[A.Value | None, str | None]] = {}

    def check(cell: str) -> tuple[A.Value | None, str | None]:
        hit = cache.get(cell)
        if hit is not None:
            return hit
        value: A.Value = cell
        if t.base == "number":
            try:
                value = int(cell)
            except ValueError:
                res: tuple[A.Value | None, str | None] = (None, f"expected a number for type {t.name}, got {cell!r}")
                cache[cell] = res
                return res
        res = (value, t.problem(value))
        if len(cache) < 500_000:
            cache[cell] = res
        return res

    return check


def _convert(raw: list[str], checkers, names: list[str]) -> tuple[list[A.Value], str | None]:
    if len(raw) != len(checkers):
        return [], f"has {len(raw)} fields, expected {len(checkers)}"
    out = []
    for cell, check, col in zip(raw, checkers, names, strict=True):
        value, problem = check(cell)
        if problem is not None:
            return [], f"column {col}: {problem}"
        out.append(value)
    return out, None


def _diags_to_json(diags: list[Diagnostic]) -> list[dict]:
    return [
        {
            "code": d.code,
            "message": d.message,
            "path": d.location.path,
            "line": d.location.line,
            "col": d.location.col,
            "severity": d.severity.value,
            "notes": list(d.notes),
        }
        for d in diags
    ]


def _diags_from_json(items: list[dict]) -> list[Diagnostic]:
    return [
        Diagnostic(
            i["code"],
            i["message"],
            Location(i["path"], i["line"], i["col"]),
            Severity(i["severity"]),
            tuple(i["notes"]),
        )
        for i in items
    ]
