"""Load a KB directory: parse, check, compile, open the table store. Cached on disk.

Each `.dl` file's parsed module is cached by engine.syntax.cache (keyed by the file's bytes and
the parser's code), so an unchanged KB opens without running the parser.

The checked and compiled program is kept under the cache directory as JSON data (engine.codec),
keyed by the digest of every `.dl` file and of the compiler's own code, so a second start skips
checking and compiling; the tables are cached separately by engine.store (keyed by their bytes).
The cache directory may be writable by others: a cache file is only ever read as data, and one
that is corrupt, foreign or of another format is a miss, rebuilt with a one-line notice.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import checks, codec
from engine.compiler import CompiledProgram, CompileError, compile_program
from engine.datacache import read_data, write_data
from engine.diagnostics import Diagnostic, DiagnosticError, Location
from engine.program import Program, load_program
from engine.store import Store, TableBuild, default_cache_dir
from engine.syntax.cache import ParsedModules

ENGINE_VERSION = "0.1.0-5"
CACHE_FORMAT = 1  # bump when the layout of the compiled-program cache file changes


@dataclass
class LoadedKB:
    """A checked, compiled KB and its store, ready for evaluation."""

    root: Path
    program: Program
    compiled: CompiledProgram | None
    store: Store
    diagnostics: list[Diagnostic] = field(default_factory=list)
    from_cache: bool = False

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def version(self) -> str:
        """Identifies the KB content: rules and tables."""
        h = hashlib.sha256(self.program.digest.encode())
        for rel in sorted(self.store.table_digests):
            h.update(f"{rel}={self.store.table_digests[rel]}".encode())
        return f"{self.program.digest[:8]}-{h.hexdigest()[:8]}"

    @property
    def table_builds(self) -> list[TableBuild]:
        return self.store.builds


def default_kb_dir() -> Path:
    """The KB next to the package (a source checkout), or $POLICYKB_KB."""
    env = os.environ.get("POLICYKB_KB")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "kb"


def check_kb(root: Path, cache_dir: Path | None = None, progress=None) -> LoadedKB:
    """Everything `policykb check` reports; never raises for problems in the KB."""
    root = Path(root)
    if not root.is_dir():
        raise DiagnosticError([Diagnostic("kb-missing", f"KB directory {root} does not exist", Location(str(root)))])
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    program = load_program(root, ParsedModules(cache, _notice))
    if not program.modules:
        raise DiagnosticError([Diagnostic("kb-empty", f"no .dl files under {root}", Location(str(root)))])
    cached = _read_compiled(cache, program.digest)
    from_cache = cached is not None
    if cached is not None:
        diags, compiled = cached
    else:
        diags = checks.run_passes(program)
        compiled = None
        if not any(d.is_error for d in diags):
            try:
                compiled = compile_program(program)
            except CompileError as exc:
                diags.append(
                    Diagnostic("compile", str(exc), exc.loc if isinstance(exc.loc, Location) else Location("<kb>"))
                )
    store = Store(program, cache)
    store.load_tables(compiled.patterns if compiled else None, progress=progress)
    all_diags = list(diags) + store.diagnostics
    if compiled is not None and not store.diagnostics:
        all_diags += checks.check_denial_codes(program, lambda rel, code: bool(store.lookup(rel, (0,), (code,))))
        if not from_cache:
            _write_compiled(cache, program.digest, diags, compiled)
    kb = LoadedKB(root, program, compiled, store, sorted(set(all_diags), key=Diagnostic.sort_key), from_cache)
    return kb


def load_kb(root: Path | None = None, cache_dir: Path | None = None, progress=None) -> LoadedKB:
    """A KB ready to evaluate; raises DiagnosticError when it has errors. `progress(table, rows)`
    is called while a table is built into the cache (see Store.load_tables)."""
    kb = check_kb(Path(root) if root else default_kb_dir(), cache_dir, progress)
    if kb.errors or kb.compiled is None:
        raise DiagnosticError(kb.errors or [Diagnostic("compile", "KB did not compile", Location(str(kb.root)))])
    return kb


@functools.cache
def _engine_digest() -> str:
    """The compiled form depends on the compiler's own code: key the cache on it too (read once
    a process: an open asked for it three times, reading nine files each time)."""
    h = hashlib.sha256(ENGINE_VERSION.encode())
    here = Path(__file__).resolve().parent
    for name in (
        "analysis.py",
        "checks.py",
        "codec.py",
        "compiler.py",
        "ir.py",
        "program.py",
        "syntax/nodes.py",
        "syntax/parser.py",
        "syntax/grammar.lark",
    ):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:12]


def compiled_cache_file(cache: Path, digest: str) -> Path:
    """The cache file of a checked, compiled KB: named by its sources' digest and the engine's."""
    return cache / f"program-{digest}-{_engine_digest()}.json"


def _notice(message: str) -> None:
    print(f"policykb: {message}", file=sys.stderr)


def _read_compiled(cache: Path, digest: str) -> tuple[list[Diagnostic], CompiledProgram | None] | None:
    """The cached (diagnostics, compiled program), or None (a miss) for anything else."""

    def check(data: dict[str, Any]) -> tuple[list[Diagnostic], CompiledProgram | None]:
        if data.get("kb") != digest or data.get("engine") != _engine_digest():
            raise ValueError("written for another KB or engine")
        diags = codec.decode(data["diagnostics"])
        compiled = codec.decode(data["compiled"])
        if not (
            isinstance(diags, list)
            and all(isinstance(d, Diagnostic) for d in diags)
            and (compiled is None or isinstance(compiled, CompiledProgram))
        ):
            raise ValueError("unexpected contents")
        return diags, compiled

    return read_data(
        compiled_cache_file(cache, digest), CACHE_FORMAT, "compiled-KB cache", "rebuilding it", _notice, check
    )


def _write_compiled(cache: Path, digest: str, diags: list[Diagnostic], compiled: CompiledProgram) -> None:
    path = compiled_cache_file(cache, digest)
    data = {
        "format": CACHE_FORMAT,
        "kb": digest,
        "engine": _engine_digest(),
        "diagnostics": codec.encode(list(diags)),
        "compiled": codec.encode(compiled),
    }
    try:
        write_data(path, data)
    except OSError as exc:
        _notice(f"cannot write the compiled-KB cache {path} ({exc.strerror or exc}); continuing without it")
