"""Each shipped table's period (kb/codes/periods.dl): every table has a period and a label that
states it, and the NCCI tables speak for the quarter of their release."""

from __future__ import annotations

from pathlib import Path

from engine.api import PolicyKB

ROOT = Path(__file__).resolve().parent.parent


def test_labels_state_their_periods() -> None:
    kb = PolicyKB.open(ROOT / "kb")
    periods = {str(r[0]): r for _s, r in kb.evaluator.lookup("table_period", (None,) * 4)}
    labels = {str(r[0]): str(r[1]) for _s, r in kb.evaluator.lookup("table_label", (None, None))}
    assert sorted(periods) == sorted(labels)
    for table, (_t, _release, first, last) in periods.items():
        assert str(first) < str(last), table
        assert f"({first} to {last})" in labels[table], table
    for table in ("NCCI procedure-to-procedure edits", "NCCI medically unlikely edits", "NCCI add-on code edits"):
        assert periods[table][1:] == ("2024 Q3", "2024-07-01", "2024-09-30")
