"""Text rendering of a `policykb test` report: each failing case with expected against actual
and the proof of the actual decision (the explain renderer's own tree), then the totals and,
with coverage, a summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.render.text import render_claim
from engine.testing import CaseOutcome, Coverage, TestReport


def render_report(report: TestReport, console: Console, *, verbose: bool = False) -> None:
    for o in report.outcomes:
        if o.passed:
            if verbose:
                console.print(Text.assemble(("PASS  ", "bold green"), o.case.shown_file, "  ", o.case.name))
            continue
        _failure(o, console)
    if report.coverage is not None:
        render_coverage(report.coverage, console)
    failed = len(report.failed)
    style = "bold red" if failed else "bold green"
    console.print(
        Text.assemble(
            (f"{len(report.outcomes) - failed} passed, {failed} failed", style), f" of {len(report.outcomes)} case(s)"
        )
    )


def _failure(o: CaseOutcome, console: Console) -> None:
    console.print(Text.assemble(("FAIL  ", "bold red"), (o.case.shown_file, "dim"), "  ", (o.case.name, "bold")))
    if o.error:
        console.print(Text("  " + o.error, style="red"))
        console.print()
        return
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("line", "", "decision", "rules in force", "overridden"):
        t.add_column(col, justify="right" if col == "line" else "left")
    for m in o.mismatches:
        t.add_row(m.line, Text("expected", style="green"), *_cells(m.expected))
        t.add_row("", Text("actual", style="red"), *_cells(m.actual))
    console.print(t)
    assert o.result is not None
    for m in o.mismatches:
        if m.actual is not None and m.line.isdigit():
            console.print(Text(f"  why line {m.line} was decided as it was:", style="bold"))
            render_claim(o.result, console, only_line=int(m.line), trace=True)
    console.print()


def _cells(entry: dict[str, Any] | None) -> list[Text | str]:
    if entry is None:
        return [Text("(no such line)", style="dim"), "", ""]
    return [
        Text(entry["decision"].upper(), style="bold red" if entry["decision"] == "deny" else "bold green"),
        ", ".join(entry["rules"]) or "-",
        ", ".join(entry.get("overridden", [])) or "-",
    ]


def render_coverage(cov: Coverage, console: Console) -> None:
    rules = Table(title="rule coverage", title_justify="left", header_style="bold")
    rules.add_column("rule")
    rules.add_column("fires in", justify="right")
    rules.add_column("near misses", justify="right")
    rules.add_column("status")
    for r in cov.rules:
        gaps = [g for g, missing in (("never fires", not r.fired), ("no near miss", not r.near_misses)) if missing]
        rules.add_row(
            r.rule,
            str(len(r.fired)),
            str(len(r.near_misses)),
            Text(", ".join(gaps), style="yellow") if gaps else Text("ok", style="green"),
        )
    console.print(rules)
    tables = Table(title="table rows touched", title_justify="left", header_style="bold")
    tables.add_column("table")
    tables.add_column("rows", justify="right")
    tables.add_column("touched", justify="right")
    tables.add_column("share", justify="right")
    for t in cov.tables:
        share = f"{100 * t.touched / t.rows:.2f}%" if t.rows else "-"
        tables.add_row(t.relation, f"{t.rows:,}", f"{t.touched:,}", share)
    console.print(tables)
    if cov.relations_untouched:
        console.print(Text.assemble(("relations no case touched: ", "bold"), ", ".join(cov.relations_untouched)))
    if cov.unobserved_rules:
        console.print(
            Text.assemble(
                ("rules whose effect no result shows (no coverage): ", "bold"), ", ".join(cov.unobserved_rules)
            )
        )
    console.print(
        Text.assemble(
            ("rules never firing in a case about them: ", "bold"),
            (", ".join(cov.never_fired) or "none", "yellow" if cov.never_fired else "green"),
        )
    )
    console.print(
        Text.assemble(
            ("rules with no near miss: ", "bold"),
            (", ".join(cov.no_near_miss) or "none", "yellow" if cov.no_near_miss else "green"),
        )
    )
