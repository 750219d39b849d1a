"""Cache files that hold data only: one JSON object with a `format` number, read back as data
and checked, never trusted. The compiled-KB cache (engine.kb) and the parsed-module cache
(engine.syntax.cache) are such files. The cache directory may be writable by others, so a file
that cannot be read, is not JSON, is of another format or fails its owner's check is a miss,
with a one-line notice, and is made again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")


def read_data(
    path: Path, fmt: int, what: str, again: str, notice: Callable[[str], None], check: Callable[[dict[str, Any]], _T]
) -> _T | None:
    """`check(data)` of the cache file at `path`, or None: no file, or a miss told to `notice`
    as "... the {what} {path} (reason); {again}". `check` raises ValueError or KeyError for
    data it refuses."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        notice(f"cannot read the {what} {path} ({exc.strerror or exc}); {again}")
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != fmt:
            got = data.get("format") if isinstance(data, dict) else None
            raise ValueError(f"format {got!r}, expected {fmt}")
        return check(data)
    except (ValueError, KeyError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        notice(f"ignoring the {what} {path} ({reason[:120]}); {again}")
        return None


def write_data(path: Path, data: dict[str, Any]) -> None:
    """Write a cache file aside and rename it into place, so a reader never sees half of one.
    Raises OSError (nothing left behind) when it cannot be written."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
