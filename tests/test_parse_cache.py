"""The parsed-module cache: a warm open runs no parser and builds the same program; an edited
file is parsed again; a cache file that is corrupt or not written for this file is ignored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.diagnostics import format_diagnostic
from engine.kb import check_kb
from engine.program import load_program
from engine.syntax import parser
from engine.syntax.cache import ParsedModules

ROOT = Path(__file__).resolve().parent.parent

TYPES = """
.type Code <: symbol
.decl line(l: number, code: Code)
.claim line
"""

RULES = """
.decl edit(c1: Code, c2: Code)
.input edit(filename="edit.csv")
.decl paired(l: number, other: Code)
/**
 * @id test.paired
 * @summary A line whose code has an edit partner.
 */
paired(l, c2) :- line(l, c1), edit(c1, c2), c1 != c2.
"""


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "types.dl").write_text(TYPES, encoding="utf-8")
    (root / "rules.dl").write_text(RULES, encoding="utf-8")
    (root / "edit.csv").write_text("c1,c2\n96372,99213\n", encoding="utf-8")
    return root


class _Calls:
    """Counts parser runs; with `fail`, a run is a test failure."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: bool = False):
        self.paths: list[str] = []
        real = parser.parse_text

        def parse_text(text: str, path: str = "<string>"):
            if fail:
                raise AssertionError(f"the parser ran on {path}")
            self.paths.append(path)
            return real(text, path)

        monkeypatch.setattr(parser, "parse_text", parse_text)


def _cache_files(cache: Path) -> dict[str, Path]:
    """The cache file of each module, by the module's shown path."""
    out = {}
    for p in cache.glob("parsed-*.json"):
        out[json.loads(p.read_text(encoding="utf-8"))["module"]["fields"]["path"]] = p
    return out


def test_the_real_kb_warm_is_the_same_program_without_parsing(tmp_path: Path, monkeypatch) -> None:
    cold = load_program(ROOT / "kb")  # no cache: the parser itself
    notices: list[str] = []
    first = load_program(ROOT / "kb", ParsedModules(tmp_path, notices.append))
    assert len(_cache_files(tmp_path)) == len(cold.modules) >= 18
    _Calls(monkeypatch, fail=True)
    cache = ParsedModules(tmp_path, notices.append)
    warm = load_program(ROOT / "kb", cache)
    assert (cache.hits, cache.misses, notices) == (len(cold.modules), 0, [])
    # every field: modules (items with locations, doc comments, rule text, source lines), the
    # declarations indexed from them, diagnostics and the digest
    assert warm == first == cold
    assert [m.lines for m in warm.modules] == [m.lines for m in cold.modules]
    rule = next(r for r in warm.rules if r.rule_id)
    assert warm.source_line(rule.loc.path, rule.loc.line) == cold.source_line(rule.loc.path, rule.loc.line)


def test_a_warm_check_kb_runs_no_parser_and_compiles_the_same(
    kb_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    cache = tmp_path / "cache"
    first = check_kb(kb_dir, cache)
    assert first.errors == [] and first.compiled is not None
    _Calls(monkeypatch, fail=True)
    second = check_kb(kb_dir, cache)
    assert second.from_cache and second.program == first.program and second.compiled == first.compiled
    assert capsys.readouterr().err == ""


def test_an_edited_file_is_parsed_again_and_only_it(kb_dir: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    check_kb(kb_dir, cache)
    calls = _Calls(monkeypatch)
    (kb_dir / "rules.dl").write_text(RULES + 'paired(l, "none") :- line(l, c), !edit(c, _).\n', encoding="utf-8")
    kb = check_kb(kb_dir, cache)
    assert calls.paths == ["kb/rules.dl"]
    assert not kb.from_cache and kb.errors == []
    assert [str(r.head) for r in kb.program.rules] == ["paired(l, c2)", 'paired(l, "none")']


def test_a_moved_kb_shows_its_new_name(kb_dir: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    check_kb(kb_dir, cache)
    moved = shutil.copytree(kb_dir, tmp_path / "policies")
    calls = _Calls(monkeypatch)
    kb = check_kb(moved, cache)
    assert sorted(calls.paths) == ["policies/rules.dl", "policies/types.dl"]
    assert {m.path for m in kb.program.modules} == {"policies/rules.dl", "policies/types.dl"}


def _ignored(kb_dir: Path, cache: Path, monkeypatch, capsys, expect: str) -> None:
    cold = load_program(kb_dir)
    calls = _Calls(monkeypatch)
    kb = check_kb(kb_dir, cache)
    notes = capsys.readouterr().err.splitlines()
    assert calls.paths == ["kb/rules.dl"]
    assert len(notes) == 1 and "ignoring the parsed-module cache" in notes[0] and expect in notes[0], notes
    assert kb.program == cold and kb.errors == []
    again = check_kb(kb_dir, cache)  # parsed again and rewritten
    assert calls.paths == ["kb/rules.dl"] and again.program == cold and capsys.readouterr().err == ""


def test_corrupt_bytes_are_ignored(kb_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    check_kb(kb_dir, cache)
    _cache_files(cache)["kb/rules.dl"].write_bytes(b"\x80\x04\x95garbage\x00\xff")
    _ignored(kb_dir, cache, monkeypatch, capsys, "")


def test_another_files_module_is_ignored(kb_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    check_kb(kb_dir, cache)
    files = _cache_files(cache)
    files["kb/rules.dl"].write_bytes(files["kb/types.dl"].read_bytes())
    _ignored(kb_dir, cache, monkeypatch, capsys, "written for another file or parser")


def test_a_module_under_another_path_is_ignored(kb_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    check_kb(kb_dir, cache)
    path = _cache_files(cache)["kb/rules.dl"]
    data = json.loads(path.read_text(encoding="utf-8"))
    data["module"]["fields"]["path"] = "kb/other.dl"
    path.write_text(json.dumps(data), encoding="utf-8")
    _ignored(kb_dir, cache, monkeypatch, capsys, "unexpected contents")


def test_a_class_outside_the_ast_is_never_built(kb_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    check_kb(kb_dir, cache)
    path = _cache_files(cache)["kb/rules.dl"]
    data = json.loads(path.read_text(encoding="utf-8"))
    data["module"] = {"class": "Popen", "fields": {"args": {"tuple": ["touch", str(tmp_path / "pwned")]}}}
    path.write_text(json.dumps(data), encoding="utf-8")
    _ignored(kb_dir, cache, monkeypatch, capsys, "malformed")
    assert not (tmp_path / "pwned").exists()


def test_another_format_is_ignored(kb_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    check_kb(kb_dir, cache)
    path = _cache_files(cache)["kb/rules.dl"]
    data = json.loads(path.read_text(encoding="utf-8"))
    data["format"] += 1
    path.write_text(json.dumps(data), encoding="utf-8")
    _ignored(kb_dir, cache, monkeypatch, capsys, f"format {data['format']}")


def _report(kb) -> list[str]:
    return [format_diagnostic(d, kb.program.source_line(d.location.path, d.location.line)) for d in kb.diagnostics]


def test_a_syntax_error_is_reported_the_same_from_the_cache(kb_dir: Path, tmp_path: Path, monkeypatch) -> None:
    # line 10: a rule whose head misses its ")", found at the ":-" (column 14); line 11 is fine
    (kb_dir / "rules.dl").write_text(RULES + 'paired(l, c2 :- line(l, c2).\npaired(1, "x").\n', encoding="utf-8")
    cache = tmp_path / "cache"
    cold = check_kb(kb_dir, cache)
    syntax = [d for d in cold.diagnostics if d.code == "syntax"]
    assert [str(d.location) for d in syntax] == ["kb/rules.dl:10:14"]
    assert cold.program.facts and cold.errors
    _Calls(monkeypatch, fail=True)
    warm = check_kb(kb_dir, cache)
    assert warm.program == cold.program and warm.diagnostics == cold.diagnostics
    assert _report(warm) == _report(cold)
    (shown,) = [r for r in _report(warm) if "error[syntax]" in r]
    assert "\n    paired(l, c2 :- line(l, c2).\n                 ^" in shown


def test_a_file_that_is_not_utf8_is_reported_the_same_from_the_cache(kb_dir: Path, tmp_path: Path, monkeypatch) -> None:
    (kb_dir / "rules.dl").write_bytes(RULES.encode() + b"// caf\xe9\n")
    cache = tmp_path / "cache"
    cold = check_kb(kb_dir, cache)
    assert [d.header() for d in cold.diagnostics if d.code == "encoding"] == [
        f"kb/rules.dl: error[encoding]: file is not UTF-8 text (invalid continuation byte at byte {len(RULES) + 6})"
    ]
    _Calls(monkeypatch, fail=True)
    monkeypatch.setattr(parser, "parse_bytes", None)  # not even the decoding runs
    warm = check_kb(kb_dir, cache)
    assert warm.program == cold.program and warm.diagnostics == cold.diagnostics


def test_fields_that_are_not_a_mapping_are_ignored(kb_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    check_kb(kb_dir, cache)
    path = _cache_files(cache)["kb/rules.dl"]
    data = json.loads(path.read_text(encoding="utf-8"))
    data["module"]["fields"]["items"] = {"tuple": [{"class": "Rule", "fields": ["head", "body"]}]}
    path.write_text(json.dumps(data), encoding="utf-8")
    _ignored(kb_dir, cache, monkeypatch, capsys, "malformed")
