"""What a batch run does before its workers decide anything: a factory's `before_fork` hook runs
in the parent before the pool forks (engine.batch._before_fork), and make_worker uses a KB the
parent already opened (engine.api.share_with_workers) instead of loading it again, but only in
the thread that opened it (pyDatalog's state is per thread)."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine import api
from engine.batch import run_batch
from engine.claims import Claim

ROOT = Path(__file__).resolve().parents[1]

# What the parent's before_fork hook left: a forked worker sees it, a worker started anew does not.
_PREPARED: dict[str, Any] = {}


def _factory(label: str) -> Callable[[Claim], dict[str, Any]]:
    seen = dict(_PREPARED)

    def adjudicate(claim: Claim) -> dict[str, Any]:
        return {"claim": claim.id, "lines": [], "label": label, "prepared": seen, "pid": os.getpid()}

    return adjudicate


def _prepare(label: str) -> Callable[[], None]:
    _PREPARED.update(label=label, pid=os.getpid())
    return functools.partial(_PREPARED.update, released=True)  # once the workers are forked


_factory.before_fork = _prepare  # type: ignore[attr-defined]


def _claims(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for k in range(n):
            line = {"line": 1, "service_date": "2026-03-02", "code": "96372", "pos": "11",
                    "rendering_npi": "1234567893", "diagnoses": ["D51.0"]}  # fmt: skip
            claim = {"id": f"CLM-{k:03d}", "patient": {"id": "PAT-1", "birth_date": "1971-02-03", "sex": "F"},
                     "lines": [line]}  # fmt: skip
            fh.write(json.dumps(claim) + "\n")
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_before_fork_runs_in_the_parent_and_the_forked_workers_inherit_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr("multiprocessing.get_start_method", lambda *a, **k: "fork")
    _PREPARED.clear()
    out = tmp_path / "out.jsonl"
    summary = run_batch(
        _claims(tmp_path / "in.jsonl", 40), out, workers=workers, make_worker=functools.partial(_factory, "x"),
        progress=False, chunk=7,
    )  # fmt: skip
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert summary.claims_ok == 40
    assert [r["claim"] for r in records] == [f"CLM-{k:03d}" for k in range(40)]
    if workers == 1:  # no fork: nothing to prepare for
        assert _PREPARED == {}
        assert all(r["prepared"] == {} for r in records)
    else:
        assert {"label": "x", "pid": os.getpid(), "released": True} == _PREPARED
        assert all(r["prepared"] == {"label": "x", "pid": os.getpid()} for r in records)
        assert {r["pid"] for r in records} - {os.getpid()}  # decided in the forked workers
    _PREPARED.clear()


class _Opened:
    """Stands for a PolicyKB in make_worker with engine="pydatalog" (which opens no DuckDB)."""

    def __init__(self, kb_dir: str | None, cache_dir: str | None) -> None:
        self.where = (kb_dir, cache_dir)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[_Opened]:
    """Every KB make_worker or before_fork opens, in order (none is really loaded)."""
    log: list[_Opened] = []

    def open_kb(kb_dir: str | None = None, cache_dir: str | None = None) -> _Opened:
        log.append(_Opened(kb_dir, cache_dir))
        return log[-1]

    monkeypatch.setattr(api, "_opened", {})
    monkeypatch.setattr(api.PolicyKB, "open", staticmethod(open_kb))
    return log


def test_make_worker_uses_the_kb_shared_with_it(opened: list[_Opened]) -> None:
    shared = _Opened("kb", None)
    api.share_with_workers(shared, "kb")  # type: ignore[arg-type]
    assert api.make_worker("kb", None, engine="pydatalog").kb is shared
    assert opened == []
    other = api.make_worker("other-kb", None, engine="pydatalog").kb  # another KB is opened
    assert [o.where for o in opened] == [("other-kb", None)] and other is opened[0]


def test_another_thread_opens_its_own_kb(opened: list[_Opened]) -> None:
    shared = _Opened("kb", None)
    api.share_with_workers(shared, "kb")  # type: ignore[arg-type]
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(api.make_worker("kb", None, engine="pydatalog").kb))
    thread.start()
    thread.join()
    assert got == opened and got[0] is not shared


def test_make_workers_before_fork_opens_the_kb_once_for_one_run(opened: list[_Opened]) -> None:
    before_fork = api.make_worker.before_fork  # type: ignore[attr-defined]
    let_go = before_fork("kb", None, False, False, "duckdb", 2)
    assert before_fork("kb", None, False, False, "duckdb", 2) is None  # open already
    assert [o.where for o in opened] == [("kb", None)]
    assert api.make_worker("kb", None, engine="pydatalog").kb is opened[0]
    let_go()  # the workers are forked: the next run opens the KB afresh (it may have changed)
    assert api.make_worker("kb", None, engine="pydatalog").kb is opened[1]
    assert len(opened) == 2


def test_a_kb_the_caller_shared_is_kept_after_the_fork(opened: list[_Opened]) -> None:
    shared = _Opened("kb", None)
    api.share_with_workers(shared, "kb")  # type: ignore[arg-type]
    assert api.make_worker.before_fork("kb", None) is None  # type: ignore[attr-defined]
    assert opened == []
    assert api.make_worker("kb", None, engine="pydatalog").kb is shared


def test_a_kb_that_does_not_load_is_left_to_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "_opened", {})
    assert api.make_worker.before_fork(str(ROOT / "no-such-kb"), None) is None  # type: ignore[attr-defined]
    assert api._opened == {}
