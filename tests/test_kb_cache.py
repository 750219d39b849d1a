"""The compiled-KB cache is data: whatever is found in the cache directory, the KB loads, and a
file that is not a cache this engine wrote for this KB is ignored with one line on stderr."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from engine import kb as kbmod
from engine.ir import RelKind
from engine.kb import check_kb

KB = """
.decl line(l: number, code: symbol)
.claim line
.decl edit(c1: symbol, c2: symbol)
.input edit(filename="edit.csv")
.decl paired(l: number, other: symbol)
paired(l, c2) :- line(l, c1), edit(c1, c2), c1 != c2.
"""


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "rules.dl").write_text(KB, encoding="utf-8")
    (root / "edit.csv").write_text("c1,c2\n96372,99213\n", encoding="utf-8")
    return root


def _cache_file(cache: Path) -> Path:
    (path,) = cache.glob("program-*.json")
    return path


def _load(kb_dir: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> tuple[kbmod.LoadedKB, list[str]]:
    kb = check_kb(kb_dir, cache)
    assert kb.errors == [] and kb.compiled is not None
    return kb, capsys.readouterr().err.splitlines()


def test_second_load_comes_from_the_cache_silently(kb_dir: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    first, notes = _load(kb_dir, cache, capsys)
    assert not first.from_cache and notes == []
    data = json.loads(_cache_file(cache).read_text(encoding="utf-8"))
    assert data["format"] == kbmod.CACHE_FORMAT and data["kb"] == first.program.digest
    second, notes = _load(kb_dir, cache, capsys)
    assert second.from_cache and notes == []
    assert second.compiled == first.compiled
    # rebuilt as the same types, not merely equal values (RelKind is also a str)
    assert {type(k) for k in second.compiled.kinds.values()} == {RelKind}
    assert second.compiled.rules == first.compiled.rules and second.compiled.patterns == first.compiled.patterns


def _bad_cache_is_a_miss(kb_dir: Path, cache: Path, capsys, expect: str) -> None:
    kb, notes = _load(kb_dir, cache, capsys)
    assert not kb.from_cache
    assert len(notes) == 1 and expect in notes[0], notes
    again, notes = _load(kb_dir, cache, capsys)  # rebuilt and rewritten
    assert again.from_cache and notes == [] and again.compiled == kb.compiled


def test_corrupt_bytes_are_a_miss(kb_dir: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    _load(kb_dir, cache, capsys)
    _cache_file(cache).write_bytes(b"\x80\x04\x95garbage\x00\xff")
    _bad_cache_is_a_miss(kb_dir, cache, capsys, "ignoring the compiled-KB cache")


def test_a_cache_of_another_format_version_is_a_miss(kb_dir: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    _load(kb_dir, cache, capsys)
    path = _cache_file(cache)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["format"] = kbmod.CACHE_FORMAT + 1
    path.write_text(json.dumps(data), encoding="utf-8")
    _bad_cache_is_a_miss(kb_dir, cache, capsys, f"format {kbmod.CACHE_FORMAT + 1}")


def test_a_cache_written_for_another_kb_is_a_miss(kb_dir: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    _load(kb_dir, cache, capsys)
    path = _cache_file(cache)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["kb"] = "0" * 16
    path.write_text(json.dumps(data), encoding="utf-8")
    _bad_cache_is_a_miss(kb_dir, cache, capsys, "another KB")


def test_a_cache_naming_a_class_outside_the_program_is_a_miss(kb_dir: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    _load(kb_dir, cache, capsys)
    path = _cache_file(cache)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["compiled"] = {"class": "Popen", "fields": {"args": {"tuple": ["touch", str(tmp_path / "pwned")]}}}
    path.write_text(json.dumps(data), encoding="utf-8")
    _bad_cache_is_a_miss(kb_dir, cache, capsys, "ignoring the compiled-KB cache")
    assert not (tmp_path / "pwned").exists()


class _Payload:
    """Unpickling this runs os.mkdir: what a hostile pickle in a shared cache could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickle_is_never_unpickled(kb_dir: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    _load(kb_dir, cache, capsys)
    path = _cache_file(cache)
    marker = tmp_path / "unpickled"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    # the old code's file name, holding the same payload: not read at all
    (cache / f"program-{path.name.split('-')[1]}-000000000000.pickle").write_bytes(pickle.dumps(_Payload(marker)))
    _bad_cache_is_a_miss(kb_dir, cache, capsys, "ignoring the compiled-KB cache")
    assert not marker.exists()


def test_an_unreadable_cache_file_is_a_miss(kb_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    cache = tmp_path / "cache"
    _load(kb_dir, cache, capsys)
    path = _cache_file(cache)
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    kb, notes = _load(kb_dir, cache, capsys)
    assert not kb.from_cache
    assert notes == [f"policykb: cannot read the compiled-KB cache {path} (Permission denied); rebuilding it"]


def test_a_directory_in_place_of_the_cache_file_is_read_and_written_around(kb_dir: Path, tmp_path: Path,
                                                                            capsys) -> None:
    cache = tmp_path / "cache"
    _load(kb_dir, cache, capsys)
    path = _cache_file(cache)
    path.unlink()
    path.mkdir()
    (path / "keep").write_text("x")
    kb, notes = _load(kb_dir, cache, capsys)
    assert not kb.from_cache
    assert len(notes) == 2 and "cannot read" in notes[0] and "cannot write" in notes[1], notes
