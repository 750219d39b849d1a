"""Property tests of the KB front end: any text gives a program or diagnostics with locations
inside that text, never a traceback; a program without errors compiles."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine import checks
from engine.compiler import CompileError, compile_program
from engine.program import program_from_text
from engine.syntax.parser import parse_text
from fuzz import BUDGET

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [
    (ROOT / "kb" / "claim.dl").read_text(encoding="utf-8"),
    (ROOT / "kb" / "types.dl").read_text(encoding="utf-8"),
    (ROOT / "tests" / "fixtures" / "broken_kb" / "rules.dl").read_text(encoding="utf-8"),
    *(p.read_text(encoding="utf-8")[:3000] for p in sorted((ROOT / "kb" / "policy").glob("*.dl"))),
]
TOKENS = [
    ".decl",
    ".type",
    ".input",
    ".claim",
    ":-",
    "!",
    ",",
    ".",
    "(",
    ")",
    '"',
    "/**",
    "*/",
    "//",
    "@id",
    "_",
    "x",
    "1",
    "=",
    "<",
    "+",
    "match(",
    "\n",
    " ",
    "<:",
    "symbol",
    "number",
    "\\",
    "\u00e9",
    "\x00",
]


@st.composite
def mutated_kb_text(draw: st.DrawFn) -> str:
    """A real KB file with a few spans deleted, duplicated or replaced by tokens and junk."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        edit = draw(st.sampled_from(["delete", "duplicate", "insert"]))
        if edit == "delete":
            text = text[:i] + text[j:]
        elif edit == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            junk = draw(st.lists(st.sampled_from(TOKENS), max_size=4).map("".join) | st.text(max_size=6))
            text = text[:i] + junk + text[i:]
    return text


def _check_locations(text: str, diagnostics: list) -> None:
    last_line = text.count("\n") + 2
    for d in diagnostics:
        assert d.message.strip()
        assert d.location.path == "kb/fuzz.dl", d
        assert 0 <= d.location.line <= last_line, d


@BUDGET
@given(mutated_kb_text() | st.text(max_size=120))
def test_any_text_parses_or_gives_located_diagnostics(text: str) -> None:
    _module, diagnostics = parse_text(text, "kb/fuzz.dl")
    _check_locations(text, diagnostics)


@BUDGET
@given(mutated_kb_text())
def test_a_mutated_kb_file_is_checked_and_compiled_or_diagnosed(text: str) -> None:
    program = program_from_text({"kb/fuzz.dl": text})
    diagnostics = checks.run_passes(program)
    _check_locations(text, [d for d in diagnostics if d.location.path == "kb/fuzz.dl"])
    if not any(d.is_error for d in diagnostics):
        try:
            compile_program(program)
        except CompileError as e:
            assert str(e).strip()
