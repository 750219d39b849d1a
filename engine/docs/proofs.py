"""Proof trees (the JSON `PolicyKB.adjudicate(...).to_dict()` gives) as nested HTML <details>.

Rendering only: the proof is built by the engine. Each node shows what justifies its fact (a
rule, a claim field, a table row, an absent fact, a check) and where that comes from; rule
nodes are open down to the first level so the reason reads at a glance, deeper ones fold.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from engine.explain.proof import KIND_LABELS

OPEN_DEPTH = 2


def render_proof(
    node: dict,
    *,
    rule_href: Callable[[str], str | None],
    relation_href: Callable[[str], str | None],
    source_text: Callable[[dict], str],
) -> str:
    """One raw-HTML block (no blank lines) for a proof tree."""
    return (
        '<div class="pkb-proof" data-search-exclude="">\n<ul>\n'
        + _node(node, 0, rule_href, relation_href, source_text)
        + "\n</ul>\n</div>"
    )


def _node(node: dict, depth: int, rule_href, relation_href, source_text) -> str:
    kind = str(node.get("kind", ""))
    holds = node.get("holds", True)
    parts = [
        f'<span class="pkb-kind k-{escape(kind)}">{escape(KIND_LABELS.get(kind, kind))}</span>',
        f'<code class="pkb-fact{"" if holds else " fails"}">{escape(str(node.get("fact", "")))}</code>',
    ]
    rule = node.get("rule")
    rel = node.get("relation")
    if rule:
        href = rule_href(str(rule))
        parts.append(
            f'<a class="pkb-rule" href="{escape(href)}">{escape(str(rule))}</a>'
            if href
            else f'<span class="pkb-rule">{escape(str(rule))}</span>'
        )
    elif rel and kind == "rule":
        href = relation_href(str(rel))
        if href:
            parts.append(f'<a class="pkb-rel" href="{escape(href)}">{escape(str(rel))}</a>')
    where = source_text(node.get("source") or {})
    if where:
        parts.append(f'<span class="pkb-src">{escape(where)}</span>')
    if node.get("note"):
        parts.append(f'<span class="pkb-note">{escape(str(node["note"]))}</span>')
    bindings = node.get("bindings") or {}
    if bindings:
        shown = ", ".join(f"{k} = {_value(v)}" for k, v in sorted(bindings.items()))
        parts.append(f'<span class="pkb-bind">{escape(shown)}</span>')
    head = " ".join(parts)
    children = node.get("children") or []
    if not children:
        return f'<li class="pkb-leaf">{head}</li>'
    inner = "\n".join(_node(c, depth + 1, rule_href, relation_href, source_text) for c in children)
    opened = " open" if depth < OPEN_DEPTH else ""
    return f"<li><details{opened}><summary>{head}</summary>\n<ul>\n{inner}\n</ul>\n</details></li>"


def _value(v: object) -> str:
    return f'"{v}"' if isinstance(v, str) else str(v)
