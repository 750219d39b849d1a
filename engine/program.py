"""A KB program: every parsed module of a KB directory, indexed by what it declares.

This is the validated-program hand-off between the checker and the compiler. It holds AST
nodes only; nothing here evaluates anything.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.diagnostics import Diagnostic, Location
from engine.syntax import nodes as A

OUTCOME_RELATIONS = ("deny", "warn")


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """A value type: a base type plus the shape checks a domain type adds."""

    name: str
    base: str  # "symbol" or "number"
    pattern: str | None = None
    is_date: bool = False
    optional: bool = False
    summary: str = ""
    loc: Location | None = None

    def problem(self, value: A.Value) -> str | None:
        """Why `value` is not of this type, or None when it is."""
        if self.base == "number":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"expected a number for type {self.name}, got {A.render_value(value)}"
            return None
        if not isinstance(value, str):
            return f"expected a string for type {self.name}, got {value}"
        if value == "" and self.optional:
            return None
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return f'"{value}" is not a valid {self.name} (must match {self.pattern})'
        if self.is_date and value:
            try:
                _dt.date.fromisoformat(value)
            except ValueError:
                return f'"{value}" is not a real calendar date ({self.name})'
        return None


BUILTIN_TYPES = {
    "symbol": TypeInfo("symbol", "symbol", summary="Any string."),
    "number": TypeInfo("number", "number", summary="An integer."),
}


@dataclass
class Program:
    """All declarations, facts and rules of a KB, with where each came from."""

    root: Path | None
    modules: list[A.Module] = field(default_factory=list)
    types: dict[str, TypeInfo] = field(default_factory=lambda: dict(BUILTIN_TYPES))
    type_decls: dict[str, A.TypeDecl] = field(default_factory=dict)
    decls: dict[str, A.RelDecl] = field(default_factory=dict)
    inputs: dict[str, A.InputDecl] = field(default_factory=dict)
    claim_relations: dict[str, A.ClaimDecl] = field(default_factory=dict)
    facts: list[A.Fact] = field(default_factory=list)
    rules: list[A.Rule] = field(default_factory=list)
    syntax_diagnostics: list[Diagnostic] = field(default_factory=list)
    declaration_diagnostics: list[Diagnostic] = field(default_factory=list)
    digest: str = ""

    def source_line(self, path: str, line: int) -> str | None:
        for m in self.modules:
            if m.path == path and 0 < line <= len(m.lines):
                return m.lines[line - 1]
        return None

    def attr_types(self, rel: str) -> list[TypeInfo] | None:
        decl = self.decls.get(rel)
        if decl is None:
            return None
        return [self.types.get(a.type, BUILTIN_TYPES["symbol"]) for a in decl.attrs]

    def outcome_rules(self) -> list[A.Rule]:
        return [r for r in self.rules if r.head.pred in OUTCOME_RELATIONS]

    def idb(self) -> set[str]:
        return {r.head.pred for r in self.rules}


def kb_files(root: Path) -> list[Path]:
    """The KB's source files, in a stable order."""
    return sorted(p for p in root.rglob("*.dl") if p.is_file())


Parse = Callable[[bytes, str], tuple[A.Module, list[Diagnostic]]]


def load_program(root: Path, parse: Parse | None = None) -> Program:
    """Parse every `.dl` file under `root` and index the declarations. `parse(raw, shown)`
    stands in for the parser (engine.syntax.cache.ParsedModules: the same result, from a cache)."""
    if parse is None:
        from engine.syntax.parser import parse_bytes  # imports lark: only when parsing

        parse = parse_bytes
    root = Path(root)
    prog = Program(root=root)
    h = hashlib.sha256()
    for path in kb_files(root):
        rel = path.relative_to(root).as_posix()
        raw = path.read_bytes()
        h.update(rel.encode() + b"\0" + raw + b"\0")
        module, diags = parse(raw, _display(root, path))
        prog.modules.append(module)
        prog.syntax_diagnostics.extend(diags)
    prog.digest = h.hexdigest()[:16]
    _index(prog)
    return prog


def program_from_text(texts: dict[str, str], root: Path | None = None) -> Program:
    """Build a program from in-memory sources (tests, conformance)."""
    from engine.syntax.parser import parse_text

    prog = Program(root=root)
    h = hashlib.sha256()
    for name, text in texts.items():
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
        module, diags = parse_text(text, name)
        prog.modules.append(module)
        prog.syntax_diagnostics.extend(diags)
    prog.digest = h.hexdigest()[:16]
    _index(prog)
    return prog


def _display(root: Path, path: Path) -> str:
    """Paths are shown from the KB directory's own name (kb/ncci/edits.dl), wherever the
    command runs, so explanations and golden files do not depend on the working directory."""
    return display_path(root, path)


def display_path(root: Path, path: Path) -> str:
    try:
        return (Path(root.resolve().name) / path.resolve().relative_to(root.resolve())).as_posix()
    except ValueError:
        return path.as_posix()


def _index(prog: Program) -> None:
    diags = prog.declaration_diagnostics
    for module in prog.modules:
        for item in module.items:
            if isinstance(item, A.TypeDecl):
                _add_type(prog, item, diags)
            elif isinstance(item, A.RelDecl):
                prev = prog.decls.get(item.name)
                if prev is not None:
                    diags.append(
                        Diagnostic(
                            "duplicate-declaration",
                            f"relation {item.name} is declared twice (first at {prev.loc})",
                            item.loc,
                        )
                    )
                else:
                    prog.decls[item.name] = item
            elif isinstance(item, A.InputDecl):
                if item.name in prog.inputs:
                    diags.append(
                        Diagnostic("duplicate-input", f"relation {item.name} has two .input directives", item.loc)
                    )
                prog.inputs[item.name] = item
            elif isinstance(item, A.ClaimDecl):
                prog.claim_relations[item.name] = item
            elif isinstance(item, A.Fact):
                prog.facts.append(item)
            elif isinstance(item, A.Rule):
                prog.rules.append(item)


def _add_type(prog: Program, item: A.TypeDecl, diags: list[Diagnostic]) -> None:
    if item.name in prog.types:
        diags.append(Diagnostic("duplicate-type", f"type {item.name} is declared twice", item.loc))
        return
    base_info = prog.types.get(item.base)
    if base_info is None:
        diags.append(
            Diagnostic(
                "unknown-type", f"unknown base type {item.base} (use symbol, number or a declared type)", item.loc
            )
        )
        base_info = BUILTIN_TYPES["symbol"]
    pattern = item.doc.get("pattern") or base_info.pattern
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            ann = item.doc.entry("pattern")
            diags.append(
                Diagnostic(
                    "bad-pattern",
                    f"@pattern of type {item.name} is not a valid regular expression: {exc}",
                    ann.loc if ann else item.loc,
                )
            )
            pattern = None
    fmt = item.doc.get("format")
    if fmt not in (None, "date"):
        ann = item.doc.entry("format")
        diags.append(
            Diagnostic("bad-annotation", f"unknown @format {fmt!r} (supported: date)", ann.loc if ann else item.loc)
        )
    prog.type_decls[item.name] = item
    prog.types[item.name] = TypeInfo(
        name=item.name,
        base=base_info.base,
        pattern=pattern,
        is_date=fmt == "date" or base_info.is_date,
        optional=(item.doc.get("optional") or "").lower() == "true",
        summary=item.doc.get("summary") or "",
        loc=item.loc,
    )
