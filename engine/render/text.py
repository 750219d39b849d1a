"""Text rendering with rich: decisions first, then each line's primary reason, its `because`
sentences, citations and remedies, then the supporting reasons. The full proof tree is shown
only with `trace` (`policykb explain --trace`).

Colour only where the console supports it (rich decides: no colour when piped or NO_COLOR).
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from engine.diagnostics import Diagnostic, format_diagnostic
from engine.explain.proof import KIND_LABELS, WhyNot
from engine.explain.result import ClaimResult, LineResult, Reason

_KIND_STYLE = {
    "rule": "bold",
    "claim": "cyan",
    "table": "magenta",
    "kb_fact": "magenta",
    "absent": "yellow",
    "comparison": "dim",
    "match": "dim",
    "aggregate": "blue",
}


def render_claim(result: ClaimResult, console: Console, *, only_line: int | None = None, trace: bool = False) -> None:
    console.print(Text.assemble(("Claim ", "bold"), (result.claim, "bold"), ("   KB ", "dim"), (result.kb, "dim")))
    summary = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("line", "code", "decision", "primary reason", "also"):
        summary.add_column(col, justify="right" if col == "line" else "left")
    for ln in result.lines:
        if only_line is not None and ln.line != only_line:
            continue
        also = [r.rule for r in ln.reasons if r.in_force and r.role != "primary"]
        summary.add_row(
            str(ln.line), ln.code, _decision(ln.decision), Text(ln.primary or "-", style="bold"), ", ".join(also) or "-"
        )
    console.print(summary)
    for ln in result.lines:
        if only_line is not None and ln.line != only_line:
            continue
        if ln.reasons:
            console.print()
            console.print(_line_tree(ln, trace))


def _decision(decision: str) -> Text:
    return Text(decision.upper(), style="bold red" if decision == "deny" else "bold green")


def _line_tree(ln: LineResult, trace: bool) -> Tree:
    tree = Tree(Text.assemble(("Line ", "bold"), (str(ln.line), "bold"), f"  {ln.code}  ", _decision(ln.decision)))
    for r in ln.reasons:
        tree.add(_reason(r, trace))
    return tree


_ROLE_STYLE = {"primary": "bold red", "supporting": "red", "warning": "yellow", "overridden": "yellow"}


def _reason(r: Reason, trace: bool) -> Group | Tree:
    head = Text.assemble(
        (r.role.upper(), _ROLE_STYLE.get(r.role, "")),
        "  ",
        (r.rule, "bold"),
        f"  [{r.kind}]  ",
        (f"{r.group}-{r.carc}" + (" " + " ".join(r.rarc) if r.rarc else ""), "cyan"),
    )
    node = Tree(head)
    node.add(Text(r.message))
    if r.overridden_by:
        node.add(Text(f"set aside by {r.overridden_by}: this finding does not deny the line", style="yellow"))
    if r.because:
        why = node.add(Text("because", style="bold"))
        for sentence in r.because:
            why.add(Text(sentence))
    cited = [c for c in r.citations if c.get("kind") == "guidance"]
    for s in r.sources:
        node.add(Text("source: " + s, style="dim"))
    for c in cited:
        node.add(Text(f"guidance: {c['text']}  (site: {c['link']})", style="dim"))
    if trace and r.proof is not None:
        proof_tree = Tree(Text("proof", style="bold"))
        _proof(r.proof.to_dict(), proof_tree)
        node.add(proof_tree)
    if r.remedies:
        rem = node.add(Text("what would make it pay", style="bold green"))
        for m in r.remedies:
            cond = m.get("condition")
            rem.add(Text.assemble((str(m["change"]), "green"), (f"  ({cond})" if cond else "", "dim")))
    if r.blocked_options:
        blk = node.add(Text("options that would not", style="bold"))
        for b in r.blocked_options:
            why_not = b.get("why") or "still denied by " + ", ".join(b["blocked_by"])  # type: ignore[arg-type]
            blk.add(Text.assemble(str(b["change"]), (f"  ({why_not})", "dim")))
    return node


def _proof(node: dict, parent: Tree) -> None:
    kind = str(node["kind"])
    label = Text.assemble((f"{KIND_LABELS.get(kind, kind):>8} ", "dim"), (str(node["fact"]), _KIND_STYLE.get(kind, "")))
    src = node.get("source")
    if isinstance(src, dict):
        if "claim_field" in src:
            label.append(f"   ← claim {src['claim_field']}", style="dim")
        elif "row" in src:
            label.append(f"   ← {src['file']} row {src['row']}", style="dim")
        elif "file" in src:
            label.append(f"   ← {src['file']}:{src['line']}", style="dim")
    if node.get("rule"):
        label.append(f"   [{node['rule']}]", style="bold")
    branch = parent.add(label)
    for child in node.get("children", []):
        _proof(child, branch)


def render_why_not(w: WhyNot, line: int, console: Console) -> None:
    if w.fired:
        console.print(Text.assemble(("FIRES  ", "bold red"), f"{w.rule} applies to line {line}."))
    else:
        console.print(Text.assemble(("DOES NOT FIRE  ", "bold green"), f"{w.rule} on line {line}: ", w.explanation))
        if w.failed_literal:
            console.print(Text.assemble(("first failing condition: ", "bold"), escape(w.failed_literal)))
    if w.bindings:
        t = Table(box=None, show_header=False)
        for k, v in w.bindings.items():
            t.add_row(Text(k, style="dim"), Text(repr(v) if isinstance(v, str) else str(v)))
        console.print(Panel(t, title="values matched so far", expand=False))


def render_diagnostics(diags: list[Diagnostic], source_line, console: Console) -> None:
    for d in diags:
        text = format_diagnostic(d, source_line(d.location.path, d.location.line))
        first, _, rest = text.partition("\n")
        style = "bold red" if d.is_error else "bold yellow"
        console.print(Text(first, style=style))
        if rest:
            console.print(Text(rest), highlight=False)
