"""`policykb fmt`: canonical, idempotent, and the parse of the formatted text equals the parse
of the original (locations aside). Programs are generated from the AST node types and written
out with random spacing, line breaks, comments and alternative spellings (`not` for `!`,
parenthesised comparisons); every real file in kb/ round-trips too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.fmt import FormatError, format_text, without_locations
from engine.syntax.parser import parse_text

ROOT = Path(__file__).resolve().parents[1]
KB_FILES = sorted((ROOT / "kb").rglob("*.dl"))
KEYWORDS = {"not", "sum", "count", "min", "max", "match", "_"}


def parsed(text: str):
    module, diags = parse_text(text)
    assert not diags, [d.header() for d in diags]
    return without_locations(module)


# --- generated programs ----------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
variables = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,4}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
strings = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=8)
ws = st.sampled_from(["", " ", "  ", "\n", "\n  ", "\t"])


@st.composite
def spaced(draw, parts: list[str]) -> str:
    """Tokens joined by random whitespace (never inside a token)."""
    return "".join(p + draw(ws) for p in parts)


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


@st.composite
def term(draw, depth: int = 0) -> str:
    choice = draw(st.integers(0, 4 if depth < 2 else 2))
    if choice == 0:
        return draw(variables)
    if choice == 1:
        return quote(draw(strings))
    if choice == 2:
        return str(draw(st.integers(0, 999)))
    if choice == 3:
        return f"{draw(term(depth + 1))} {draw(st.sampled_from('+-*/%'))} {draw(term(depth + 1))}"
    return f"({draw(term(depth + 1))})"


@st.composite
def atom(draw, anonymous: bool = True) -> str:
    args = draw(st.lists(term() | (st.just("_") if anonymous else term()), min_size=1, max_size=4))
    return draw(spaced([draw(names), "(", ", ".join(args), ")"]))


@st.composite
def literal(draw, depth: int = 0) -> str:
    kind = draw(st.integers(0, 6 if depth == 0 else 4))
    if kind <= 1:
        return draw(atom())
    if kind == 2:
        return draw(st.sampled_from(["!", "not ", "! "])) + draw(atom())
    if kind == 3:
        cmp = f"{draw(term())} {draw(st.sampled_from(['=', '!=', '<', '<=', '>', '>=']))} {draw(term())}"
        return f"({cmp})" if draw(st.booleans()) else cmp
    if kind == 4:
        return f"{draw(st.sampled_from(['', '!']))}match({quote(draw(strings))}, {draw(variables)})"
    body = ", ".join(draw(st.lists(literal(depth + 1), min_size=1, max_size=2)))
    func = draw(st.sampled_from(["count", "sum", "min", "max"]))
    target = "" if func == "count" else f" {draw(variables)}"
    return f"{draw(variables)} = {func}{target} : {{ {body} }}"


comments = st.sampled_from(["// a note", "/* block */", "/* two\n   lines */", "// @id not.a.doc"])


@st.composite
def doc_comment(draw) -> str:
    entries = draw(
        st.lists(st.tuples(names, st.from_regex(r"[A-Za-z0-9 ,.]{0,20}", fullmatch=True)), min_size=1, max_size=3)
    )
    if len(entries) == 1 and draw(st.booleans()):
        return f"/** @{entries[0][0]} {entries[0][1]} */"
    return "/**\n" + "".join(f" * @{k} {v}\n" for k, v in entries) + " */"


@st.composite
def statement(draw) -> str:
    kind = draw(st.integers(0, 6))
    if kind == 0:
        attrs = draw(st.lists(st.tuples(names, st.sampled_from(["number", "symbol", "Code"])), max_size=12))
        return draw(spaced([".decl", draw(names), "(", ", ".join(f"{a}: {t}" for a, t in attrs), ")"]))
    if kind == 1:
        return f".type {draw(names).capitalize()} <: symbol"
    if kind == 2:
        return f".input {draw(names)}(filename={quote('tables/' + draw(names) + '.csv')})"
    if kind == 3:
        return f".claim {draw(names)}"
    if kind == 4:
        return draw(atom(anonymous=False)) + "."
    body = draw(st.lists(literal(), min_size=1, max_size=4))
    return (
        draw(atom(anonymous=False))
        + draw(st.sampled_from([" :- ", ":-", " :-\n    "]))
        + ",".join(draw(ws) + b for b in body)
        + "."
    )


@st.composite
def program(draw) -> str:
    out = []
    for stmt in draw(st.lists(statement(), max_size=6)):
        for _ in range(draw(st.integers(0, 1))):
            out.append(draw(comments) + "\n")
        if draw(st.booleans()):
            out.append(draw(doc_comment()) + "\n")
        out.append(stmt)
        out.append(draw(st.sampled_from(["\n", "\n\n\n", "  \n", " ", " // trailing\n"])))
    return "".join(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program())
def test_formatting_keeps_the_program_and_is_idempotent(text: str) -> None:
    once = format_text(text)
    assert parsed(once) == parsed(text)
    assert format_text(once) == once


@settings(max_examples=100, deadline=None)
@given(program())
def test_every_comment_is_kept_in_order(text: str) -> None:
    import re

    pattern = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
    mask = re.compile(r'"(\\.|[^"\\\n])*"')
    norm = [re.sub(r"[ \t]+\n", "\n", c).rstrip() for c in pattern.findall(mask.sub('""', text))]
    once = format_text(text)
    assert [re.sub(r"[ \t]+\n", "\n", c).rstrip() for c in pattern.findall(mask.sub('""', once))] == norm


# --- real files ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", KB_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_kb_file_round_trips_and_is_already_canonical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    once = format_text(text, str(path))
    assert parsed(once) == parsed(text)
    assert format_text(once) == once
    assert once == text, f"{path} is not in the canonical style; run `policykb fmt`"


def test_a_messy_rule_becomes_the_kb_style_with_its_doc_comment_in_place() -> None:
    source = (ROOT / "kb/policy/injection_96372.dl").read_text(encoding="utf-8")
    start = source.index("/**\n * @id inj.facility_pos")
    end = source.index("\n", source.index('deny(l, "inj.facility_pos")'))
    canonical = source[start : end + 1]
    rule = canonical[canonical.index("deny(") :]
    messy_rule = (
        rule.replace(":- ", ":-\n      ").replace(", ", " ,\n  ").replace("(l, ", "( l,").rstrip("\n")
        + "   // why: bullet 1\n"
    )
    messy = canonical.replace(rule, messy_rule) + "\n\n\n"
    formatted = format_text(messy)
    assert formatted == canonical.rstrip("\n") + " // why: bullet 1\n"
    assert parsed(formatted) == parsed(messy)
    (rule_item,) = [i for i in parse_text(formatted)[0].items]
    assert rule_item.rule_id == "inj.facility_pos" and rule_item.doc.get("carc") == "58"


def test_a_long_declaration_wraps_like_the_kb() -> None:
    text = (ROOT / "kb/codes/hcpcs.dl").read_text(encoding="utf-8")
    decl_start = text.index(".decl hcpcs(")
    decl = text[decl_start : text.index(")", decl_start) + 1]
    one_line = " ".join(decl.split()).replace("( ", "(")
    assert "\n" in decl and format_text(one_line + "\n") == decl + "\n"


def test_a_file_that_does_not_parse_is_refused_with_its_line() -> None:
    with pytest.raises(FormatError) as exc:
        format_text("a(1).\nb(X) :- a(X\n", "broken.dl")
    assert exc.value.diagnostics[0].location.path == "broken.dl"
    assert exc.value.diagnostics[0].location.line >= 2


# --- the command -----------------------------------------------------------------------------


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_fmt_check_passes_on_the_bundled_kb() -> None:
    r = run("fmt", "--check", "kb")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"0 file(s) would be reformatted, {len(KB_FILES)} unchanged" in r.stdout


def test_fmt_check_lists_what_would_change_and_fmt_rewrites_it(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    edits = (ROOT / "kb/ncci/edits.dl").read_text(encoding="utf-8")
    (kb / "edits.dl").write_text(edits.replace(":- ", ":-\n    ", 1), encoding="utf-8")
    (kb / "types.dl").write_text((ROOT / "kb/types.dl").read_text(encoding="utf-8"), encoding="utf-8")
    r = run("fmt", "--check", str(kb))
    assert r.returncode == 1 and "would reformat" in r.stderr and "edits.dl" in r.stderr
    assert "types.dl" not in r.stderr
    r = run("fmt", str(kb))
    assert r.returncode == 0, r.stderr
    assert (kb / "edits.dl").read_text(encoding="utf-8") == edits
    assert run("fmt", "--check", str(kb)).returncode == 0


def test_fmt_on_a_broken_file_names_the_line_and_changes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dl"
    bad.write_text("a(1).\nb(X) :- a(X\n", encoding="utf-8")
    r = run("fmt", str(bad))
    assert r.returncode == 2 and "bad.dl:" in r.stderr and "Traceback" not in r.stderr
    assert bad.read_text(encoding="utf-8") == "a(1).\nb(X) :- a(X\n"
