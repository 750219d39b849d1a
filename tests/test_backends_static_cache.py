"""The DuckDB backend's static relations (derived from stored rows only) are computed once and
saved in the cache (DuckDBBackend._create_static): a later connection copies them, a changed KB
computes them again, and a file that cannot be read is computed again rather than trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.api import PolicyKB
from engine.backends.duckdb import DuckDBBackend, declared_types, table_name
from engine.compiler import compile_program
from engine.ir import IAtom, RelKind
from engine.program import program_from_text
from engine.store import Store

# edit(c1, c2, mi): pairs of codes; pair holds those whose mi is 1 (static: stored rows only); a
# line billing the first code of a pair is denied.
PROGRAM = """
.decl line(l: number, code: symbol)
.decl edit(c1: symbol, c2: symbol, mi: number)
.decl pair(c1: symbol, c2: symbol)
.decl deny(l: number, rule: symbol)
edit("A", "B", 1).
edit("Z", "A", 0).
{extra}
pair(c1, c2) :- edit(c1, c2, 1).
deny(l, "pair") :- line(l, c), pair(c, _).
"""
# line 1 bills A (pair A-B), line 2 bills C (a pair only with the extra fact), line 3 bills Z
# (edit Z-A has mi 0: no pair)
CLAIM: dict[str, list[tuple[int | str, ...]]] = {"line": [(1, "A"), (2, "C"), (3, "Z")]}


def _backend(cache: Path, extra: str = "") -> DuckDBBackend:
    prog = program_from_text({"<static>": PROGRAM.replace("{extra}", extra)})
    cp = compile_program(prog, dynamic_facts={"line"})
    assert cp.kinds["pair"] is RelKind.STATIC
    return DuckDBBackend(cp, Store(prog, cache_dir=cache), declared_types(cp, prog))


def _denied(backend: DuckDBBackend) -> list[tuple]:
    try:
        return backend.evaluate_many([CLAIM], ["deny"])[0].rows("deny")
    finally:
        backend.close()


def _static_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the static steps run (_run_step without `nonempty`) from now on."""
    runs: list[int] = []
    run_step = DuckDBBackend._run_step

    def counted(self: DuckDBBackend, step, nonempty=None) -> None:
        if nonempty is None:
            runs.append(1)
        run_step(self, step, nonempty)

    monkeypatch.setattr(DuckDBBackend, "_run_step", counted)
    return runs


def test_a_second_connection_copies_the_saved_static_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _static_runs(monkeypatch)
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert len(runs) == 1
    saved = list(tmp_path.glob("static-*.duckdb"))
    assert len(saved) == 1
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert len(runs) == 1  # copied, not computed
    assert list(tmp_path.glob("static-*.duckdb")) == saved


def test_a_changed_stored_row_computes_them_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _static_runs(monkeypatch)
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert _denied(_backend(tmp_path, 'edit("C", "D", 1).')) == [(1, "pair"), (2, "pair")]
    assert len(runs) == 2
    assert len(list(tmp_path.glob("static-*.duckdb"))) == 2
    assert _denied(_backend(tmp_path, 'edit("C", "D", 0).')) == [(1, "pair")]  # mi 0: no pair for C
    assert len(runs) == 3


def test_an_unreadable_saved_file_is_computed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _backend(tmp_path).close()
    (saved,) = tmp_path.glob("static-*.duckdb")
    saved.write_bytes(b"not a database")
    runs = _static_runs(monkeypatch)
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert len(runs) == 1
    assert saved.read_bytes() != b"not a database"  # saved again, good this time
    assert _denied(_backend(tmp_path)) == [(1, "pair")]
    assert len(runs) == 1


def test_the_bundled_kbs_static_rows_are_the_same_copied_or_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    kb = PolicyKB.open()
    assert kb.kb.compiled is not None
    cp = kb.kb.compiled
    types = declared_types(cp, kb.kb.program)

    def static_rows(backend: DuckDBBackend) -> dict[str, list[tuple]]:
        try:
            rels = [rel for step in backend.sql.static_steps for rel in step.relations]
            return {rel: sorted(backend.con.execute(f"SELECT * FROM {table_name(cp, rel)}").fetchall()) for rel in rels}
        finally:
            backend.close()

    copied = static_rows(DuckDBBackend(cp, kb.kb.store, types))  # copied, once an earlier run saved them
    runs = _static_runs(monkeypatch)
    monkeypatch.setattr(DuckDBBackend, "_attach_static", lambda self, rels, path: False)
    computed = static_rows(DuckDBBackend(cp, kb.kb.store, types))
    assert runs  # computed this time
    assert copied == computed
    assert sum(map(len, computed.values())) > 1000  # the KB's static relations hold thousands of rows


def test_the_static_steps_follow_the_compiled_order_each_after_what_it_reads() -> None:
    """compile_sql takes the static relations' order from the compiled program (static_order)
    instead of building a graph: on the shipped KB it holds every static relation once, and each
    step reads static relations of earlier steps only (or its own, when recursive)."""
    cp = PolicyKB.open().kb.compiled
    assert cp is not None
    static = {rel for rel, kind in cp.kinds.items() if kind is RelKind.STATIC}
    order = [rel for members in cp.static_order for rel in members]
    assert sorted(order) == sorted(static) and len(static) > 10
    done: set[str] = set()
    for members in cp.static_order:
        reads = {
            lit.relation
            for rule in cp.rules
            if rule.head.relation in members
            for lit in rule.body
            if isinstance(lit, IAtom) and lit.relation in static
        }
        assert reads <= done | set(members), (members, reads - done)
        done |= set(members)


def test_a_batch_worker_started_from_the_cache_imports_no_graph_library() -> None:
    """A scrub worker (make_worker, then a chunk) needs no graph when the KB comes from the cache:
    networkx is not imported in each worker process (~80 ms of its start). The first run makes
    sure the cache holds the KB; the second, in a new interpreter, must not import it."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from engine import batch\n"
        "from engine.api import make_worker\n"
        "w = make_worker(workers=2)\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "n = data.count(b'\\n')\n"
        "out = batch._handle_chunk(w, batch._Lines(range(1, n + 1), data).records())\n"
        "print(len(out), sum(isinstance(o, batch.Written) for o in out), 'networkx' in sys.modules)\n"
    )
    claims = str(Path(__file__).resolve().parents[1] / "examples" / "batch.jsonl")
    runs = [subprocess.run([sys.executable, "-c", script, claims], capture_output=True, text=True) for _ in "12"]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    n, written, imported = runs[1].stdout.split()
    assert int(n) == Path(claims).read_bytes().count(b"\n") and int(written) > 0
    assert imported == "False"
