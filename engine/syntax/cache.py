"""Parsed modules kept on disk as data, so opening an unchanged KB does not run the parser.

What parsing a `.dl` file gives (its module and its syntax diagnostics) depends only on the
file's bytes, the path it is shown under and the parser's own code (this package, the codec,
the diagnostics and the installed lark). A cache file is named by a hash of all of them and
holds the module as JSON data (engine.codec), so an edited file, a moved KB or a changed parser
is simply another name: parsed again. As with the compiled-KB cache (engine.kb), the cache
directory may be writable by others: a file is only ever read as data and checked against its
key, and one that is corrupt, foreign or of another format is a miss, parsed again with a
one-line notice. Never pickle.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import codec
from engine.datacache import read_data, write_data
from engine.diagnostics import Diagnostic
from engine.syntax import nodes as A

FORMAT = 1  # bump when the layout of a parsed-module cache file changes

_PARSER_FILES = (
    "syntax/cache.py",
    "syntax/parser.py",
    "syntax/nodes.py",
    "syntax/grammar.lark",
    "codec.py",
    "diagnostics.py",
)


def parser_digest() -> str:
    """The parser's own code: its files, the Python version and the installed lark (whose
    `__init__.py` names its version; read, not imported, so a cache hit never imports lark)."""
    h = hashlib.sha256(f"{FORMAT} {sys.version_info[0]}.{sys.version_info[1]}".encode())
    here = Path(__file__).resolve().parent.parent
    for name in _PARSER_FILES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    spec = importlib.util.find_spec("lark")
    if spec is not None and spec.origin:
        h.update(b"lark\0" + Path(spec.origin).read_bytes())
    return h.hexdigest()


class ParsedModules:
    """A parse function for `engine.program.load_program` that reads and writes the cache.

    `notice(message)` hears one line for each cache file ignored, and at most one for files
    that could not be written."""

    def __init__(self, cache_dir: Path, notice: Callable[[str], None]):
        self.cache_dir = Path(cache_dir)
        self.notice = notice
        self.engine = parser_digest()
        self.hits = 0
        self.misses = 0
        self._write_failed = False

    def file_for(self, raw: bytes, shown: str) -> tuple[Path, str]:
        """The cache file that holds the parse of `raw` shown as `shown`, and its key."""
        h = hashlib.sha256(self.engine.encode() + b"\0" + shown.encode() + b"\0")
        h.update(raw)
        key = h.hexdigest()[:32]
        return self.cache_dir / f"parsed-{key}.json", key

    def __call__(self, raw: bytes, shown: str) -> tuple[A.Module, list[Diagnostic]]:
        path, key = self.file_for(raw, shown)
        found = self._read(path, key, shown)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        from engine.syntax.parser import parse_bytes  # imports lark: only on a miss

        module, diags = parse_bytes(raw, shown)
        self._write(path, key, module, diags)
        return module, diags

    def _read(self, path: Path, key: str, shown: str) -> tuple[A.Module, list[Diagnostic]] | None:
        def check(data: dict[str, Any]) -> tuple[A.Module, list[Diagnostic]]:
            if data.get("key") != key:
                raise ValueError("written for another file or parser")
            module = codec.decode(data["module"])
            diags = codec.decode(data["diagnostics"])
            if not (
                isinstance(module, A.Module)
                and module.path == shown
                and isinstance(module.items, tuple)
                and isinstance(module.lines, tuple)
                and isinstance(diags, list)
                and all(isinstance(d, Diagnostic) for d in diags)
            ):
                raise ValueError("unexpected contents")
            return module, diags

        return read_data(path, FORMAT, "parsed-module cache", "parsing again", self.notice, check)

    def _write(self, path: Path, key: str, module: A.Module, diags: list[Diagnostic]) -> None:
        data = {"format": FORMAT, "key": key, "module": codec.encode(module), "diagnostics": codec.encode(diags)}
        try:
            write_data(path, data)
        except OSError as exc:
            if not self._write_failed:
                self._write_failed = True
                self.notice(
                    f"cannot write the parsed-module cache {path} ({exc.strerror or exc}); continuing without it"
                )
