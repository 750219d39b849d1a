"""Parse KB source text into an AST with locations.

Never evaluates the text: the grammar (grammar.lark) is the only interpreter of KB source.
Syntax errors are collected per statement: the broken statement is reported with what was
expected, blanked out, and parsing resumes, so one run shows every syntax error in a file.
"""

from __future__ import annotations

import io
import itertools
import re
from functools import lru_cache
from pathlib import Path
from typing import cast

import lark
from lark import Token, Transformer, v_args

from engine.diagnostics import Diagnostic, Location
from engine.syntax import nodes as A

_DOC_RE = re.compile(r"/\*\*(?!/)(.*?)\*/", re.S)
_ANNOT_RE = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)\s*(.*)")
MAX_SYNTAX_ERRORS = 50

_TOKEN_NAMES = {
    "DOT": '"."',
    "COMMA": '","',
    "LPAR": '"("',
    "RPAR": '")"',
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "CMP": "a comparison",
    "IF": '":-"',
    "COLON": '":"',
    "LBRACE": '"{"',
    "RBRACE": '"}"',
    "NEG": '"!"',
    "ADD": '"+"/"-"',
    "MUL": '"*"/"/"',
    "MINUS": '"-"',
    "AGG": "an aggregate",
    "__ANON_0": '":-"',
    "EQUAL": '"="',
    "SUBTYPE": '"<:"',
    "$END": "end of file",
}


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    grammar = (Path(__file__).with_name("grammar.lark")).read_text(encoding="utf-8")
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _loc(path: str, meta: object) -> Location:
    return Location(path, getattr(meta, "line", 0) or 0, getattr(meta, "column", 0) or 0)


def _tok_loc(path: str, tok: Token) -> Location:
    return Location(path, tok.line or 0, tok.column or 0)


def unquote(s: str) -> str:
    body = s[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


class _Builder(Transformer):
    """Lark tree -> AST. Anonymous `_` variables become distinct fresh variables."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self._anon = itertools.count(1)

    # terms
    def var(self, children):
        (tok,) = children
        loc = _tok_loc(self.path, tok)
        if str(tok) == "_":
            return A.Var(f"_{next(self._anon)}", loc, anonymous=True)
        return A.Var(str(tok), loc)

    def string(self, children):
        (tok,) = children
        return A.Const(unquote(str(tok)), _tok_loc(self.path, tok))

    def number(self, children):
        (tok,) = children
        return A.Const(int(str(tok)), _tok_loc(self.path, tok))

    @v_args(meta=True)
    def neg(self, meta, children):
        (inner,) = children
        if isinstance(inner, A.Const) and isinstance(inner.value, int):
            return A.Const(-inner.value, _loc(self.path, meta))
        return A.BinOp("-", A.Const(0, inner.loc), inner, _loc(self.path, meta))

    @v_args(meta=True)
    def binop(self, meta, children):
        left, op, right = children
        folded = _fold(str(op), left, right)
        loc = _loc(self.path, meta)
        if folded is not None:
            return A.Const(folded, loc)
        return A.BinOp(str(op), left, right, loc)

    # literals
    @v_args(meta=True)
    def atom(self, meta, children):
        name, *args = children
        args = tuple(a for a in args if a is not None)
        loc = _loc(self.path, meta)
        if str(name) == "match" and len(args) == 2:
            return A.Match(args[0], args[1], loc)
        return A.Atom(str(name), args, loc)

    @v_args(meta=True)
    def negation(self, meta, children):
        _neg, atom = children
        if isinstance(atom, A.Match):
            return A.Match(atom.pattern, atom.value, atom.loc, negated=not atom.negated)
        return A.Negation(atom, _loc(self.path, meta))

    @v_args(meta=True)
    def comparison(self, meta, children):
        left, op, right = children
        return A.Comparison(str(op), left, right, _loc(self.path, meta))

    @v_args(meta=True)
    def aggregate(self, meta, children):
        result, op, func, target, body = children
        loc = _loc(self.path, meta)
        if str(op) != "=":
            raise _StatementError(loc, f'an aggregate is written `x = {func} ... : {{ ... }}`, not with "{op}"')
        if str(func) == "count" and target is not None:
            raise _StatementError(loc, "count takes no target expression: `n = count : { ... }`")
        if str(func) != "count" and target is None:
            raise _StatementError(loc, f"{func} needs a target expression: `x = {func} y : {{ ... }}`")
        return A.Aggregate(result, str(func), target, tuple(body), loc)

    def body(self, children):
        return list(children)

    # clauses
    @v_args(meta=True)
    def fact(self, meta, children):
        (atom,) = children
        return A.Fact(atom, _loc(self.path, meta))

    @v_args(meta=True)
    def rule(self, meta, children):
        head, body = children
        self._anon = itertools.count(1)
        return ("rule", head, tuple(body), _loc(self.path, meta), meta.start_pos, meta.end_pos)

    # declarations
    @v_args(meta=True)
    def type_decl(self, meta, children):
        name, base = children
        return ("type", str(name), str(base), _loc(self.path, meta), meta.start_pos)

    def attr(self, children):
        name, typ = children
        return A.Attr(str(name), str(typ), _tok_loc(self.path, name))

    @v_args(meta=True)
    def rel_decl(self, meta, children):
        name, *attrs = children
        return ("decl", str(name), tuple(a for a in attrs if a is not None), _loc(self.path, meta), meta.start_pos)

    def option(self, children):
        key, val = children
        if val.type == "STRING":
            return (str(key), unquote(str(val)))
        if val.type == "NUMBER":
            return (str(key), int(str(val)))
        return (str(key), str(val))

    @v_args(meta=True)
    def input_decl(self, meta, children):
        name, *opts = children
        return A.InputDecl(str(name), tuple(o for o in opts if o is not None), _loc(self.path, meta))

    @v_args(meta=True)
    def output_decl(self, meta, children):
        name = children[0]
        return A.OutputDecl(str(name), _loc(self.path, meta))

    @v_args(meta=True)
    def claim_decl(self, meta, children):
        (name,) = children
        return A.ClaimDecl(str(name), _loc(self.path, meta))

    def start(self, children):
        return list(children)


def _fold(op: str, left: A.Term, right: A.Term) -> int | None:
    """Constant-fold integer arithmetic so `1-2-3` is the fact value -4."""
    if not (isinstance(left, A.Const) and isinstance(right, A.Const)):
        return None
    a, b = left.value, right.value
    if not (isinstance(a, int) and isinstance(b, int)):
        return None
    if op in "/%" and b == 0:
        return None
    return {"+": a + b, "-": a - b, "*": a * b, "/": int(a / b) if b else 0, "%": a % b if b else 0}[op]


class _StatementError(Exception):
    def __init__(self, loc: Location, message: str):
        super().__init__(message)
        self.loc = loc
        self.message = message


# --- doc comments -----------------------------------------------------------------------


def _doc_comments(text: str, path: str) -> list[tuple[int, A.Doc]]:
    """(end offset, Doc) for every `/** ... */` comment in the file."""
    out = []
    for m in _DOC_RE.finditer(text):
        start_line = text.count("\n", 0, m.start()) + 1
        entries: list[A.Annotation] = []
        for i, raw in enumerate(m.group(1).split("\n")):
            line = re.sub(r"^\s*\*?\s?", "", raw).rstrip()
            am = _ANNOT_RE.match(line.strip())
            if am:
                col = raw.find("@") + 1
                entries.append(A.Annotation(am.group(1), am.group(2).strip(), Location(path, start_line + i, col)))
            elif entries and line.strip():
                last = entries[-1]
                entries[-1] = A.Annotation(last.key, (last.value + " " + line.strip()).strip(), last.loc)
        out.append((m.end(), A.Doc(tuple(entries))))
    return out


def _doc_before(docs: list[tuple[int, A.Doc]], text: str, start: int) -> A.Doc:
    """The doc comment that ends right before `start` (only blanks or plain comments between)."""
    best = A.Doc()
    for end, doc in docs:
        if end <= start:
            gap = text[end:start]
            gap = re.sub(r"//[^\n]*", "", gap)
            gap = re.sub(r"/\*(?!\*).*?\*/", "", gap, flags=re.S)
            if not gap.strip():
                best = doc
    return best


# --- error recovery ---------------------------------------------------------------------


def _statement_spans(text: str) -> list[tuple[int, int]]:
    """Split a file into statements: directives end with their argument list or line, clauses
    at a terminating "." or where a directive line begins."""
    masked = _mask_strings_and_comments(text)
    spans, pos, n = [], 0, len(masked)
    directive_re = re.compile(r"\.(decl|type|input|output|claim)\b")
    while pos < n:
        while pos < n and masked[pos].isspace():
            pos += 1
        if pos >= n:
            break
        if directive_re.match(masked, pos):
            end = _directive_end(masked, pos + 1)
        else:
            m = re.compile(r"\.(?=\s|$|/)|\n(?=\s*\.(decl|type|input|output|claim)\b)").search(masked, pos)
            end = m.end() if m else n
        spans.append((pos, max(end, pos + 1)))
        pos = max(end, pos + 1)
    return spans


def _statement_span(text: str, pos: int) -> tuple[int, int]:
    """The statement containing offset `pos` (or the next one after it)."""
    spans = _statement_spans(text)
    for i, (start, end) in enumerate(spans):
        if pos < end:
            if pos <= start and i > 0:
                return spans[i - 1]  # the parser only noticed the previous statement was unfinished
            return start, end
    return spans[-1] if spans else (0, len(text))


def _directive_end(masked: str, pos: int) -> int:
    """A directive ends at the parenthesis that closes its argument list, or at end of line."""
    depth = 0
    for i in range(pos, len(masked)):
        ch = masked[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth <= 0:
                return i + 1
        elif (ch == "\n" and depth == 0) or (
            ch == "\n"
            and depth > 0
            and re.match(r"\n\s*(\.(decl|type|input|output|claim)\b|[A-Za-z_]\w*\s*\(.*(:-|\)\s*\.))", masked[i:])
        ):
            return i
    return len(masked)


def _mask_strings_and_comments(text: str) -> str:
    """Same length as text, with strings and comments replaced by spaces (newlines kept)."""

    def blank(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))

    return re.sub(r'"(\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/', blank, text, flags=re.S)


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _token_name(name: str) -> str:
    if name in _TOKEN_NAMES:
        return _TOKEN_NAMES[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f'"{pattern.value}"' if pattern.type == "str" else name.lower()


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_token_name(e) for e in expected})
    if not names:
        return ""
    if len(names) > 6:
        names = names[:6] + ["..."]
    return "expected " + ", ".join(names)


def _syntax_diag(path: str, err: lark.exceptions.UnexpectedInput, text: str) -> Diagnostic:
    line, col = err.line, err.column
    if isinstance(err, lark.exceptions.UnexpectedToken):
        tok = err.token
        found = "end of file" if tok.type == "$END" else f'"{tok}"'
        msg = f"unexpected {found}"
        exp = _describe_expected(set(err.expected))
    elif isinstance(err, lark.exceptions.UnexpectedCharacters):
        pos = err.pos_in_stream
        ch = text[pos] if pos is not None and pos < len(text) else "?"
        msg = f"unexpected character {ch!r}"
        exp = _describe_expected(set(err.allowed or ()))
    else:  # UnexpectedEOF
        msg, exp = "unexpected end of file", _describe_expected(set(getattr(err, "expected", ())))
    if exp:
        msg += f"; {exp}"
    if line in (None, -1):
        line = text.count("\n") + 1
        col = 1
    return Diagnostic("syntax", msg, Location(path, line, col or 1))


def _error_offset(err: lark.exceptions.UnexpectedInput, text: str) -> int:
    pos = getattr(err, "pos_in_stream", None)
    if pos is None:
        tok = getattr(err, "token", None)
        pos = getattr(tok, "start_pos", None)
    return len(text) if pos is None or pos < 0 else pos


# --- entry points -----------------------------------------------------------------------


def parse_text(text: str, path: str = "<string>") -> tuple[A.Module, list[Diagnostic]]:
    """Parse one file. Returns the module (with every statement that parsed) and diagnostics."""
    diags: list[Diagnostic] = []
    work = text
    raw: list = []
    for _ in range(MAX_SYNTAX_ERRORS + 1):
        try:
            tree = _lark().parse(work)
            raw = _Builder(path).transform(tree)
            break
        except lark.exceptions.UnexpectedInput as err:
            diags.append(_syntax_diag(path, err, work))
            start, end = _statement_span(work, _error_offset(err, work))
            work = _blank(work, start, end)
        except lark.exceptions.VisitError as err:
            orig = err.orig_exc
            if not isinstance(orig, _StatementError):
                raise
            diags.append(Diagnostic("syntax", orig.message, orig.loc))
            offset = _offset_of(work, orig.loc.line, orig.loc.col)
            start, end = _statement_span(work, offset)
            work = _blank(work, start, end)
    docs = _doc_comments(text, path)
    items = [_finish(r, docs, text, path) for r in raw]
    return A.Module(path, tuple(items), tuple(text.split("\n"))), diags


def _offset_of(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[: line - 1]) + max(col - 1, 0)


def _finish(raw: object, docs: list[tuple[int, A.Doc]], text: str, path: str) -> A.Item:
    if not isinstance(raw, tuple):
        return cast(A.Item, raw)  # already an AST node
    kind = raw[0]
    if kind == "rule":
        _, head, body, loc, start, end = raw
        return A.Rule(head, body, _doc_before(docs, text, start), loc, text[start:end])
    if kind == "type":
        _, name, base, loc, start = raw
        return A.TypeDecl(name, base, _doc_before(docs, text, start), loc)
    if kind == "decl":
        _, name, attrs, loc, start = raw
        return A.RelDecl(name, attrs, _doc_before(docs, text, start), loc)
    raise AssertionError(kind)


def parse_file(path: Path, display_path: str | None = None) -> tuple[A.Module, list[Diagnostic]]:
    return parse_bytes(path.read_bytes(), display_path or str(path))


def parse_bytes(raw: bytes, shown: str) -> tuple[A.Module, list[Diagnostic]]:
    """Parse a file's bytes, decoded as `Path.read_text(encoding="utf-8")` decodes them (UTF-8,
    universal newlines), so a caller that hashed the bytes parses exactly what it hashed."""
    try:
        text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read()
    except UnicodeDecodeError as exc:
        return A.Module(shown, ()), [
            Diagnostic("encoding", f"file is not UTF-8 text ({exc.reason} at byte {exc.start})", Location(shown))
        ]
    return parse_text(text, shown)
