"""What the cache directory holds, which of it a KB uses, and pruning what none uses.

Every cache file is named by a digest of what it was made from (a table file's bytes, a `.dl`
file's bytes, the compiler's code, ...), so an edited table or rule is simply a new file and
the old one stays. An author who edits the PTP table a few times leaves a few hundred MB
behind. `policykb cache` lists the files by kind and says which the given KB uses; with
`--prune` it removes files that KB does not use and that were last written before a cut-off
(other KBs, e.g. a branch checked out last week, keep theirs until then).

Kinds, by file name:
- `table`: a table's rows (`<relation>-<digest>.sqlite`) and its DuckDB copy (`...-d<N>.duckdb`);
- `stored`: the DuckDB backend's stored relations but the big ones, inline facts and table rows
  (`stored-<digest>-d<N>.duckdb`);
- `static`: the DuckDB backend's static relations (`static-<digest>-d<N>.duckdb`);
- `program`: a checked, compiled KB (`program-<digest>-<engine>.json`);
- `parsed`: one parsed `.dl` file (`parsed-<digest>.json`);
- `partial`: what a build that was cut short left (`*.tmp*`), or one being written; pruned
  like the others once a day old;
- `lock`: a table's lock file (`<relation>.lock`); never removed (a process may hold it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.api import PolicyKB
from engine.kb import compiled_cache_file
from engine.program import kb_files
from engine.store import table_lock
from engine.syntax.cache import ParsedModules

KINDS = ("table", "stored", "static", "program", "parsed", "partial", "lock", "other")
_PATTERNS = (
    ("lock", re.compile(r"(?P<rel>[^/]+)\.lock")),
    ("partial", re.compile(r".*\.tmp.*")),
    ("stored", re.compile(r"stored-[0-9a-f]+-d\d+\.duckdb")),
    ("static", re.compile(r"static-[0-9a-f]+-d\d+\.duckdb")),
    ("program", re.compile(r"program-[0-9a-f]+-[0-9a-f]+\.json")),
    ("parsed", re.compile(r"parsed-[0-9a-f]+\.json")),
    ("table", re.compile(r"(?P<rel>.+)-[0-9a-f]{20}(-d\d+\.duckdb|\.sqlite)")),
)


@dataclass(frozen=True)
class Entry:
    path: Path
    kind: str
    size: int
    mtime: float
    relation: str | None = None  # a table's, or a lock's


def entries(cache_dir: Path) -> list[Entry]:
    """Every file directly in the cache directory, classified by its name (sorted by name)."""
    out: list[Entry] = []
    if not cache_dir.is_dir():
        return out
    for path in sorted(cache_dir.iterdir()):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed meanwhile (another prune, a build's temp file)
            continue
        if not path.is_file():
            continue
        kind, rel = "other", None
        for name, pattern in _PATTERNS:
            m = pattern.fullmatch(path.name)
            if m:
                kind, rel = name, m.groupdict().get("rel")
                break
        out.append(Entry(path, kind, st.st_size, st.st_mtime, rel))
    return out


def used_by(kb: PolicyKB) -> set[Path]:
    """The cache files opening `kb` reads: its tables and their DuckDB copies, its compiled
    program, each `.dl` file's parse and, when every table has its DuckDB copy (so opening the
    backend builds nothing new), the backend's stored and static relations' files."""
    from engine.backends.duckdb import table_file  # imports DuckDB: only here

    loaded = kb.kb
    cache = loaded.store.cache_dir
    used = {compiled_cache_file(cache, loaded.program.digest)}
    copies = {table_file(loaded.store, rel) for rel in loaded.store.tables}
    used.update(loaded.store.tables.values(), (p for p in copies if p.exists()))
    parsed = ParsedModules(cache, lambda _message: None)  # only names files here: reads none
    for file, module in zip(kb_files(loaded.root), loaded.program.modules, strict=True):
        used.add(parsed.file_for(file.read_bytes(), module.path)[0])
    if loaded.compiled is not None and all(p.exists() for p in copies):
        backend = kb.duckdb()
        used.update(p for p in (backend.stored_file, backend.static_file) if p is not None)
    return used


PARTIAL_DAYS = 1  # a partial file younger than this may be a build still being written


def prunable(found: Iterable[Entry], used: set[Path], before: float) -> list[Entry]:
    """The entries `--prune` removes: not used, not a lock, last written before `before`; a
    partial file only when also older than PARTIAL_DAYS (another process may be writing it: a
    table build does so under the table's lock, a static file's under none)."""
    partial_before = min(before, cutoff(PARTIAL_DAYS))
    return [
        e
        for e in found
        if e.kind != "lock" and e.path not in used and e.mtime < (partial_before if e.kind == "partial" else before)
    ]


def prune(cache_dir: Path, doomed: list[Entry]) -> list[Entry]:
    """Remove `doomed`; a table's files under its lock, so no process is building it meanwhile.
    Returns what was removed (a file already gone is not)."""
    removed: list[Entry] = []
    for e in doomed:
        if e.kind == "table" and e.relation is not None:
            with table_lock(cache_dir, e.relation):
                gone = _remove(e.path)
        else:
            gone = _remove(e.path)
        if gone:
            removed.append(e)
    return removed


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def cutoff(days: float, now: float | None = None) -> float:
    return (time.time() if now is None else now) - days * 86400
