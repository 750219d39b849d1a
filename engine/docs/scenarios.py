"""The claims the "Why does my line deny?" guide walks through: KB data, read from
`<kb>/guide.scenarios.json` when the KB has one, adjudicated when the site is built.

Only inputs live in the KB; the decisions shown come from the engine, so the guide cannot drift
from the rules. The file holds a heading, an introduction and the scenarios:

    {"heading": "...", "intro": "...", "example_rule": "rule id (the home page's example)",
     "scenarios": [{"title": "...", "claim": {...claim JSON...}}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

FILE = "guide.scenarios.json"


class ScenarioError(ValueError):
    """The scenarios file is not what the guide needs; the message names the file and field."""


@dataclass
class GuideScenarios:
    heading: str = ""
    intro: str = ""
    path: str = ""  # the file, as shown on the page
    example_rule: str = ""  # the rule the home page reads as its example
    scenarios: list[tuple[str, dict]] = field(default_factory=list)


def load(kb_dir: Path, shown: str = "") -> GuideScenarios:
    """The KB's guide scenarios; none when the KB has no scenarios file."""
    path = Path(kb_dir) / FILE
    if not path.is_file():
        return GuideScenarios()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ScenarioError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        raise ScenarioError(f'{path}: expected an object with a "scenarios" list')
    out = GuideScenarios(
        str(data.get("heading") or "Worked scenarios"),
        str(data.get("intro") or ""),
        shown or path.name,
        str(data.get("example_rule") or ""),
    )
    for i, item in enumerate(data["scenarios"]):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("title"), str)
            or not isinstance(item.get("claim"), dict)
        ):
            raise ScenarioError(f'{path}: scenarios[{i}] needs a "title" string and a "claim" object')
        out.scenarios.append((item["title"], item["claim"]))
    return out
