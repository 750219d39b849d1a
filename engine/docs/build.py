"""Render the site's generated pages: for `mkdocs build` (engine/docs/gen_site.py), into a
directory for inspection, or against the golden pages committed in `site/`.

The whole site is rendered in memory first (sorted, deterministic), so `--check` compares
without touching the disk and a write only replaces files whose bytes changed. In goldens mode
only the generated files already present in the directory are compared or rewritten; the other
files there are hand-written pages and stay as they are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import claim_schema
from engine.docs import lookup, scenarios
from engine.docs.model import Case, Src, collect
from engine.docs.pages import Site

ASSETS = Path(__file__).with_name("assets")


@dataclass
class DocsReport:
    """What a generate run did (or, with check, would do)."""

    out_dir: Path
    check: bool
    pages: int = 0  # Markdown pages
    files: int = 0  # every generated file, assets included
    written: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # differ, missing or not generated (check mode)
    removed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.stale


def render(kb_dir: Path) -> tuple[dict[str, bytes], dict[str, int]]:
    """{path under site/: bytes} for the whole site, and counts for the report."""
    from engine.api import PolicyKB
    from engine.claims import parse_claim

    # the KB's own inputs to the guide are read first: a broken file fails before the long work
    loaded = scenarios.load(Path(kb_dir), f"{Path(kb_dir).resolve().name}/{scenarios.FILE}")
    pk = PolicyKB.open(Path(kb_dir))

    def adjudicate(claim_json: dict) -> dict:
        return pk.adjudicate(parse_claim(claim_json), proofs=True).to_dict()

    model = collect(pk.kb, pk.evaluator, adjudicate)
    guide = []
    for name, claim in loaded.scenarios:
        case = Case(name, [], claim, {}, Src(""))
        try:
            case.result = adjudicate(claim)
        except Exception as exc:  # shown on the page; the rest of the site still builds
            case.error = f"{type(exc).__name__}: {exc}"
        guide.append(case)
    files: dict[str, bytes] = {path: text.encode() for path, text in Site(model, guide, loaded).pages().items()}
    for name, text in lookup.shards(model).items():
        files[f"assets/lookup/{name}"] = text.encode()
    files.update(claim_schema.site_files())  # the claim format page and its JSON Schema
    for asset in sorted(ASSETS.iterdir()):
        if asset.is_file():
            files[f"assets/{asset.name}"] = asset.read_bytes()
    counts = {
        "rules": len(model.id_rules),
        "relations": len(model.relations),
        "codes": len(model.codes),
        "categories": len(model.categories),
        "ranges": len(model.ranges),
        "cases": len(model.cases),
        "lookup_codes": len(model.lookup_extra),
    }
    return dict(sorted(files.items())), counts


def generate(kb_dir: Path, out_dir: Path, check: bool = False, goldens: bool = False) -> DocsReport:
    """Regenerate `out_dir` from the KB; with `check`, only report what is stale; with `goldens`,
    only the generated pages `out_dir` already holds."""
    t0 = time.perf_counter()
    files, counts = render(Path(kb_dir))
    report = sync(files, Path(out_dir), check, goldens)
    report.counts = counts
    report.seconds = time.perf_counter() - t0
    return report


def sync(files: dict[str, bytes], out_dir: Path, check: bool, goldens: bool = False) -> DocsReport:
    """Make `out_dir` hold exactly `files` (or, with check, list what differs). With `goldens`,
    only the files of `files` that `out_dir` already holds count: nothing is added or removed."""
    existing = (
        {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()} if out_dir.is_dir() else set()
    )
    if goldens:
        files = {p: data for p, data in files.items() if p in existing}
        existing &= set(files)
    report = DocsReport(out_dir, check, pages=sum(1 for p in files if p.endswith(".md")), files=len(files))
    for path, data in files.items():
        target = out_dir / path
        if path in existing and target.read_bytes() == data:
            continue
        if check:
            report.stale.append(path)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            report.written.append(path)
    for path in sorted(existing - set(files)):
        if check:
            report.stale.append(path)
        else:
            (out_dir / path).unlink()
            report.removed.append(path)
    if not check:
        for d in sorted((p for p in out_dir.rglob("*") if p.is_dir()), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
    return report
