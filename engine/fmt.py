"""Canonical formatting of KB source (`policykb fmt`).

The style is the bundled KB's: one statement per line (a rule's body stays on its head's line),
single spaces after commas and around `:-` and comparisons, `!` for negation, strings with the
minimal escapes. Comments and doc comments are kept where they are, with trailing blanks
removed and runs of blank lines collapsed to one. A statement with a comment inside it is kept
as written (only its trailing blanks go), so no comment ever moves.

Statements are printed from the parser's AST, so `parse(format_text(x))` equals `parse(x)`
apart from source locations; a file with syntax errors is not formatted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from engine.diagnostics import Diagnostic, Location
from engine.syntax import nodes as A
from engine.syntax.parser import _mask_strings_and_comments, parse_text

# Declarations: one line up to DECL_WRAP_AT columns; longer ones wrap within DECL_WIDTH (the
# bundled KB's layout). Rules and facts always stay on one line, as in the KB.
DECL_WRAP_AT, DECL_WIDTH = 120, 110
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "%": 2}
_COMMENT_OR_STRING = re.compile(r'"(\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/', re.S)


class FormatError(Exception):
    """The file does not parse, so it cannot be formatted."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(f"{len(diagnostics)} syntax error(s)")
        self.diagnostics = diagnostics


# --- printing AST nodes -------------------------------------------------------------------


def render_string(s: str) -> str:
    escaped = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def render_term(t: A.Term, prec: int = 0) -> str:
    if isinstance(t, A.Var):
        return "_" if t.anonymous else t.name
    if isinstance(t, A.Const):
        return render_string(t.value) if isinstance(t.value, str) else str(t.value)
    p = _PREC[t.op]
    text = f"{render_term(t.left, p)} {t.op} {render_term(t.right, p + 1)}"
    return f"({text})" if p < prec else text


def render_atom(a: A.Atom) -> str:
    return f"{a.pred}({', '.join(render_term(x) for x in a.args)})"


def render_literal(lit: A.Literal) -> str:
    if isinstance(lit, A.Atom):
        return render_atom(lit)
    if isinstance(lit, A.Negation):
        return "!" + render_atom(lit.atom)
    if isinstance(lit, A.Comparison):
        return f"{render_term(lit.left)} {lit.op} {render_term(lit.right)}"
    if isinstance(lit, A.Match):
        return f"{'!' if lit.negated else ''}match({render_term(lit.pattern)}, {render_term(lit.value)})"
    target = f" {render_term(lit.target)}" if lit.target is not None else ""
    inner = ", ".join(render_literal(b) for b in lit.body)
    return f"{render_term(lit.result)} = {lit.func}{target} : {{ {inner} }}"


def _render_option(key: str, value: A.Value) -> str:
    return f"{key}={render_string(value) if isinstance(value, str) else value}"


def _render_decl(decl: A.RelDecl) -> str:
    """`.decl name(attr: Type, ...)`, wrapped like the bundled KB when it would be too long: each
    line within DECL_WIDTH, later lines aligned under the first attribute."""
    head = f".decl {decl.name}("
    attrs = [f"{a.name}: {a.type}" for a in decl.attrs]
    one_line = head + ", ".join(attrs) + ")"
    if len(one_line) <= DECL_WRAP_AT or len(attrs) < 2:
        return one_line
    lines, current = [], head
    for i, attr in enumerate(attrs):
        piece = attr + ("," if i < len(attrs) - 1 else ")")
        if current.strip() and current != head and len(current) + 1 + len(piece) > DECL_WIDTH:
            lines.append(current)
            current = " " * len(head) + piece
        else:
            current += ("" if current == head else " ") + piece
    lines.append(current)
    return "\n".join(lines)


def render_item(item: A.Item) -> str | None:
    """The canonical text of one statement (None: keep the source text, for `.output`)."""
    if isinstance(item, A.TypeDecl):
        return f".type {item.name} <: {item.base}"
    if isinstance(item, A.RelDecl):
        return _render_decl(item)
    if isinstance(item, A.InputDecl):
        opts = f"({', '.join(_render_option(k, v) for k, v in item.options)})" if item.options else ""
        return f".input {item.name}{opts}"
    if isinstance(item, A.ClaimDecl):
        return f".claim {item.name}"
    if isinstance(item, A.Fact):
        return render_atom(item.atom) + "."
    if isinstance(item, A.Rule):
        return f"{render_atom(item.head)} :- {', '.join(render_literal(b) for b in item.body)}."
    return None  # OutputDecl: the AST does not keep its options


# --- whole files ----------------------------------------------------------------------------


def format_text(text: str, path: str = "<string>") -> str:
    """The canonical form of one file's text. Raises FormatError when it does not parse."""
    module, diags = parse_text(text, path)
    if diags:
        raise FormatError(list(diags))
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    starts = [line_starts[i.loc.line - 1] + i.loc.col - 1 for i in module.items]
    masked = _mask_strings_and_comments(text)
    out: list[str] = []
    prev_end: int | None = None
    for n, (item, start) in enumerate(zip(module.items, starts, strict=True)):
        # Between two statements there are only blanks and comments: a statement ends at the
        # last character before the next one that is neither.
        limit = starts[n + 1] if n + 1 < len(starts) else len(text)
        end = len(masked[:limit].rstrip())
        _emit_gap(out, text[prev_end or 0 : start], first=prev_end is None)
        source = text[start:end]
        rendered = None if _has_comment(source) else render_item(item)
        out.append(rendered if rendered is not None else "\n".join(x.rstrip() for x in source.split("\n")))
        prev_end = end
    _emit_gap(out, text[prev_end:] if prev_end is not None else text, first=prev_end is None, last=True)
    result = "".join(out).rstrip("\n")
    return result + "\n" if result else ""


def _has_comment(source: str) -> bool:
    return any(m.group(0).startswith("/") for m in _COMMENT_OR_STRING.finditer(source))


def _emit_gap(out: list[str], gap: str, first: bool, last: bool = False) -> None:
    """The text between two statements: a comment on the previous statement's line stays there;
    every other comment line is kept, blank runs collapse to one, the next statement starts a line."""
    if not first:
        head, sep, gap = gap.partition("\n")
        if head.strip():
            out.append(" " + head.strip())
        if not sep:
            gap = ""
        out.append("\n")
    lines = [x.rstrip() for x in gap.split("\n")]
    prefix = lines.pop() if not last else ""
    if prefix.strip():
        lines.append(prefix.strip())
    kept: list[str] = []
    for line in lines:
        if not line and ((kept and not kept[-1]) or (first and not kept)):
            continue
        kept.append(line)
    for line in kept:
        out.append(line + "\n")


def check_text(text: str, path: str = "<string>") -> bool:
    """True when the text is already in canonical form."""
    return format_text(text, path) == text


# --- files on disk --------------------------------------------------------------------------


@dataclass(frozen=True)
class FileResult:
    path: Path
    changed: bool
    error: FormatError | None = None


def dl_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The `.dl` files named, or under the directories named, in a stable order."""
    for p in paths:
        if p.is_dir():
            yield from sorted(x for x in p.rglob("*.dl") if x.is_file())
        else:
            yield p


def format_paths(paths: Iterable[Path], write: bool) -> list[FileResult]:
    """Format every file; rewrite changed ones when `write`. Files that do not parse are reported."""
    results = []
    for path in dl_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            diag = Diagnostic("io", f"cannot read the file: {exc}", Location(str(path)))
            results.append(FileResult(path, False, FormatError([diag])))
            continue
        try:
            new = format_text(text, str(path))
        except FormatError as exc:
            results.append(FileResult(path, False, exc))
            continue
        if new != text and write:
            path.write_text(new, encoding="utf-8")
        results.append(FileResult(path, new != text))
    return results


# --- comparing ASTs -------------------------------------------------------------------------

_NOWHERE = Location("", 0, 0)


def without_locations(node: Any) -> Any:
    """The node with every location blanked (and a rule's source text dropped): what formatting
    must not change."""
    if isinstance(node, tuple):
        return tuple(without_locations(x) for x in node)
    if isinstance(node, A.Module):
        return without_locations(node.items)
    if is_dataclass(node) and not isinstance(node, type):
        changes: dict[str, Any] = {}
        for f in fields(node):
            value = getattr(node, f.name)
            if f.name == "loc":
                changes[f.name] = _NOWHERE
            elif f.name == "text" and isinstance(node, A.Rule):
                changes[f.name] = ""
            else:
                changes[f.name] = without_locations(value)
        return replace(node, **changes)
    return node
