"""`policykb diff` as text: counts first, then structure, changed corpus lines by cause, witnesses."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.witness import Impact, Outcome


def _outcome(o: Outcome | None) -> str:
    if o is None:
        return "-"
    return o[0] + (f" ({', '.join(o[1])})" if o[1] else "")


def _short(source: str, width: int = 90) -> str:
    """A policy case's name can be a sentence: keep the table readable (JSON has it whole)."""
    return source if len(source) <= width else source[: width - 1] + "…"


def render_impact(imp: Impact, console: Console) -> None:
    s = imp.structure
    console.print(Text.assemble(("OLD ", "bold"), imp.old))
    console.print(Text.assemble(("NEW ", "bold"), imp.new))
    console.print()
    counts = Table(title="What changed", title_justify="left", show_edge=False)
    counts.add_column("")
    for col in ("added", "removed", "changed"):
        counts.add_column(col, justify="right")
    for name, c in s.counts().items():
        counts.add_row(name, *(str(c[k]) for k in ("added", "removed", "changed")))
    counts.add_row("corpus lines", "", "", str(len(imp.lines)), style="bold")
    console.print(counts)
    console.print(
        f"[dim]corpus: {imp.corpus_size} claims" + (f", {len(imp.unusable)} unusable" if imp.unusable else "") + "[/]"
    )
    for u in imp.unusable:
        console.print(f"  [yellow]skipped[/] {u}")

    if s.rules:
        console.print("\n[bold]Rules[/]")
        for r in s.rules:
            colour = {"added": "green", "removed": "red", "changed": "yellow"}[r.status]
            ref = r.new or r.old
            assert ref is not None
            what = f"  ({', '.join(r.what)})" if r.what else ""
            console.print(
                f"  [{colour}]{r.status:<8}[/] {r.key if ref.rule_id else ref.head}{what}  [dim]{ref.location}[/]"
            )
            if (r.old is not None and r.new is not None and "body" in r.what) or "head" in r.what:
                console.print(f"           [red]- {r.old.text if r.old else ''}[/]", highlight=False)
                console.print(f"           [green]+ {r.new.text if r.new else ''}[/]", highlight=False)
    if s.facts:
        console.print("\n[bold]Facts[/]")
        for f in s.facts:
            colour = "green" if f.status == "added" else "red"
            vals = ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in f.values)
            console.print(f"  [{colour}]{f.status:<8}[/] {f.relation}({vals})  [dim]{f.location}[/]", highlight=False)
    changed_tables = [t for t in s.tables if t.rows or t.bytes_changed]
    if changed_tables:
        console.print("\n[bold]Tables[/]")
        for td in changed_tables:
            console.print(
                f"  {td.relation} [dim]({td.file}; key {', '.join(td.key_columns)}; {td.method})[/]: {len(td.rows)} row(s)"
            )
            for rw in td.rows[:50]:
                colour = {"added": "green", "removed": "red", "changed": "yellow"}[rw.status]
                if rw.old and rw.new:
                    diffs = [
                        f"{c}: {a or '(empty)'} → {b or '(empty)'}"
                        for c, a, b in zip(td.columns, rw.old, rw.new, strict=True)
                        if a != b
                    ]
                    detail = "; ".join(diffs)
                else:
                    detail = ", ".join(rw.old or rw.new or ())
                console.print(f"    [{colour}]{rw.status:<8}[/] {' '.join(rw.key):<16} {detail}", highlight=False)
            if len(td.rows) > 50:
                console.print(f"    … and {len(td.rows) - 50} more (--format json lists them all)")
    if s.relations:
        console.print("\n[bold]Relations[/]")
        for rel in s.relations:
            console.print(f"  {rel['status']:<8} {rel['relation']}")

    if s.empty:
        console.print(
            "\n[bold green]The two KBs have the same rules, facts and table rows:[/] no claim is decided differently."
        )
        return
    console.print("\n[bold]Corpus lines whose decision or reasons change[/]")
    if not imp.lines:
        console.print("  [dim]none[/]")
    for cause, lines in imp.by_cause().items():
        console.print(f"  [bold yellow]{cause}[/]: {len(lines)} line(s)", highlight=False)
        t = Table(show_header=True, show_edge=False, box=None, padding=(0, 2, 0, 4))
        for col in ("claim", "line", "code", "old", "new"):
            t.add_column(col)
        for lc in lines:
            t.add_row(_short(lc.source), str(lc.line), lc.code, _outcome(lc.old), _outcome(lc.new))
        console.print(t)

    console.print("\n[bold]Witness claims[/] [dim](changes no corpus line shows)[/]")
    if not imp.witnesses:
        console.print(
            "  [dim]none needed: every change is shown by a corpus line, or no change can alter a decision[/]"
        )
    for w in imp.witnesses:
        if not w.found:
            console.print(f"  [red]✗[/] {w.change}: {w.message}", highlight=False)
            continue
        console.print(f"  [green]✓[/] {w.change} [dim](after {w.tried} candidate(s))[/]", highlight=False)
        assert w.claim is not None
        t = Table(show_header=True, show_edge=False, box=None, padding=(0, 2, 0, 4))
        for col in ("line", "code", "date", "pos", "units", "modifiers", "OLD", "NEW"):
            t.add_column(col)
        for ln in w.claim.get("lines", []):
            n = ln["line"]
            o, nw = w.old.get(n), w.new.get(n)
            style = "bold" if o and nw and o[0] != nw[0] else ""
            t.add_row(
                str(n),
                ln["code"],
                ln["service_date"],
                ln["pos"],
                str(ln.get("units", 1)),
                " ".join(ln.get("modifiers", [])),
                _outcome(o),
                _outcome(nw),
                style=style,
            )
        console.print(t)
