"""The table store: lookups answer from this store's own tables, and their answers are immutable."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from engine.program import load_program
from engine.store import Store

DECL = '.decl edit(c1: symbol, c2: symbol, mi: number)\n.input edit(filename="edit.csv")\n'


def _kb(root: Path, rows: list[tuple[str, str, int]]) -> Path:
    root.mkdir()
    (root / "kb.dl").write_text(DECL, encoding="utf-8")
    (root / "edit.csv").write_text("c1,c2,mi\n" + "".join(f"{a},{b},{m}\n" for a, b, m in rows), encoding="utf-8")
    return root


def test_each_store_answers_from_its_own_tables(tmp_path: Path) -> None:
    """Open and free 200 stores over two KBs whose tables differ only in their rows. A freed
    store's id() is reused by the next one, so a lookup memo keyed by id(store) hands a new
    store the old one's rows; each store must see only its own."""
    kbs = {
        "a": (_kb(tmp_path / "a", [("96372", "99213", 1), ("96372", "99214", 0)]),
              (("96372", "99213", 1), ("96372", "99214", 0))),
        "b": (_kb(tmp_path / "b", [("96372", "36000", 1)]), (("96372", "36000", 1),)),
    }
    programs = {name: load_program(root) for name, (root, _rows) in kbs.items()}
    cache = tmp_path / "cache"
    wrong = []
    for i in range(200):
        name = "ab"[i % 2]
        store = Store(programs[name], cache)
        store.load_tables({"edit": {(0,)}})
        assert not store.diagnostics
        got = store.lookup("edit", (0,), ("96372",))
        if list(got) != list(kbs[name][1]):  # compared as lists: the old code returned lists
            wrong.append((i, name, got))
        del store
        gc.collect()
    assert not wrong, f"{len(wrong)} of 200 stores saw another store's rows, e.g. {wrong[:2]}"


def test_lookup_answers_are_immutable_and_shared_safely(tmp_path: Path) -> None:
    store = Store(load_program(_kb(tmp_path / "kb", [("96372", "99213", 1)])), tmp_path / "cache")
    store.load_tables({"edit": {(0,)}})
    rows = store.lookup("edit", (0,), ("96372",))
    assert rows == (("96372", "99213", 1),)
    assert isinstance(rows, tuple) and all(isinstance(r, tuple) for r in rows)
    with pytest.raises(AttributeError):
        rows.append(("x", "y", 0))  # type: ignore[attr-defined]
    sourced = store.lookup_with_sources("edit", (0,), ("96372",))
    assert isinstance(sourced, tuple)
    assert [(src.table_row, row) for src, row in sourced] == [(1, ("96372", "99213", 1))]
    # asked again, the same answer (from the memo) and nothing a caller could have changed
    assert store.lookup("edit", (0,), ("96372",)) == (("96372", "99213", 1),)
    assert store.lookup("edit", (0,), ("99999",)) == ()
