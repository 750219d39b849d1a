"""Every rendering of `explain` for the bundled examples, pinned byte for byte.

tests/test_examples.py pins the JSON with proofs and remedies. This pins the rest of what
`policykb explain` prints, so that a change to the engine's evaluation (a speed change must not
change a byte) is caught in every mode: the plain decision's JSON, the text of a plain decision,
the text with proofs, remedies and the full derivation (`--trace`), and `--why-not` (JSON and
text) for a few rules on every line. All examples run in one process, one after another, so
anything an evaluation leaves behind for the next one shows up too.

Regenerate after an intended change: POLICYKB_REGEN=1 python -m pytest tests/test_explain_goldens.py
(and read the diff like code).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from engine.api import PolicyKB
from engine.claims import load_claims
from engine.render.text import render_claim, render_why_not

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
GOLDEN = Path(__file__).resolve().parent / "golden" / "explain"
REGEN = os.environ.get("POLICYKB_REGEN") == "1"

# rules asked "why not" on every line: the PTP and MUE edits and two injection-policy rules
WHY_NOT = ("ncci.ptp", "ncci.mue.line", "inj.facility_em", "inj.no_drug_line")


@pytest.fixture(scope="module")
def outputs() -> Iterator[dict[str, str]]:
    before = Path.cwd()
    os.chdir(ROOT)  # proofs show source paths relative to the current directory
    try:
        kb = PolicyKB.open(ROOT / "kb")
        yield {path.stem: _render(kb, path) for path in EXAMPLES}
    finally:
        os.chdir(before)


def _text(render, *args, **kwargs) -> str:
    buf = io.StringIO()
    render(*args, Console(file=buf, width=110, color_system=None, force_terminal=False), **kwargs)
    return buf.getvalue()


def _render(kb: PolicyKB, path: Path) -> str:
    (claim,) = load_claims(path)
    plain = kb.adjudicate(claim, proofs=False, remedies=False)
    full = kb.adjudicate(claim, proofs=True, remedies=True)
    parts = [
        "== plain json\n" + json.dumps(plain.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        "== plain text\n" + _text(render_claim, plain),
        "== proofs and remedies, text with trace\n" + _text(render_claim, full, trace=True),
    ]
    for line in claim.lines:
        for rule in WHY_NOT:
            w = kb.why_not(claim, line.line, rule)
            parts.append(f"== why not {rule} on line {line.line}\n" + json.dumps(w.to_dict(), sort_keys=True) + "\n")
            parts.append(_text(render_why_not, w, line.line))
    return "".join(parts)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_explain_output_matches_golden(outputs: dict[str, str], path: Path) -> None:
    golden = GOLDEN / f"{path.stem}.txt"
    text = outputs[path.stem]
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
        return
    assert golden.is_file(), f"no golden for {path.name}: run with POLICYKB_REGEN=1"
    assert text == golden.read_text(encoding="utf-8"), f"explain output of {path.name} differs from {golden.name}"


def test_goldens_have_their_example() -> None:
    stale = sorted(g.name for g in GOLDEN.glob("*.txt") if not (ROOT / "examples" / (g.stem + ".json")).is_file())
    assert not stale, f"goldens without an example: {stale}"
