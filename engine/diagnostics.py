"""Diagnostics: every problem found in the KB or in input, as a value.

Errors are collected, never raised one at a time, so an author sees all problems in one run
(the OPA / Soufflé way). Each carries a code, a location and a message; rendering is separate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Location:
    """A position in a source file (1-based line and column)."""

    path: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{self.col or 1}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem: code (stable, documented), location, message and optional notes."""

    code: str
    message: str
    location: Location
    severity: Severity = Severity.ERROR
    notes: tuple[str, ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (loc.path, loc.line, loc.col, self.code, self.message)

    def header(self) -> str:
        return f"{self.location}: {self.severity.value}[{self.code}]: {self.message}"


class DiagnosticError(Exception):
    """Raised when a stage cannot continue; carries every diagnostic found so far."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        super().__init__("\n".join(d.header() for d in self.diagnostics))


def format_diagnostic(diag: Diagnostic, source_line: str | None) -> str:
    """`path:line:col: error[CODE]: message`, then the source line and a caret under the column."""
    out = [diag.header()]
    if source_line is not None and diag.location.line > 0:
        text = source_line.rstrip("\n")
        out.append(f"    {text}")
        col = max(diag.location.col, 1)
        prefix = "".join(ch if ch == "\t" else " " for ch in text[: col - 1])
        out.append(f"    {prefix}^")
    out.extend(f"    = note: {n}" for n in diag.notes)
    return "\n".join(out)
