"""No two reasons in force on one line carry the same group, CARC and RARCs (a remittance would
report the same adjustment twice), over every policy case and every example claim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.api import PolicyKB
from engine.claims import Claim, load_claims, parse_claim

ROOT = Path(__file__).resolve().parent.parent


def _claims() -> list[tuple[str, Claim]]:
    out: list[tuple[str, Claim]] = []
    for path in sorted((ROOT / "kb").rglob("*.cases.json")):
        for raw in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            out.append((f"{path.name}: {raw['name']}", parse_claim(raw["claim"])))
    for path in sorted((ROOT / "examples").glob("*.json")):
        for claim in load_claims(path):
            out.append((path.name, claim))
    return out


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def test_no_two_reasons_share_group_carc_rarc(kb: PolicyKB) -> None:
    clashes = []
    checked = 0
    for name, claim in _claims():
        result = kb.adjudicate(claim, proofs=False, remedies=False)
        for line in result.lines:
            seen: dict[tuple[str, str, tuple[str, ...]], str] = {}
            for r in line.reasons:
                if r.overridden_by:
                    continue
                key = r.remittance_key
                if key in seen:
                    clashes.append(f"{name}, line {line.line}: {seen[key]} and {r.rule} both {key}")
                seen[key] = r.rule
                checked += 1
    assert checked > 100  # the cases and examples carry plenty of reasons
    assert clashes == []
