"""Dependency diagrams as inline SVG, laid out in Python: deterministic and needing no JavaScript.

A small layered (Sugiyama-style) layout: strongly connected components are collapsed, every
node goes in the column of its longest path from a source (tables and claim relations on the
left, outcomes on the right), edges that skip columns get waypoints, and a few barycentre sweeps
order each column to cut crossings. Ties are broken by name, so a KB always gives the same SVG.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import networkx as nx

from engine import analysis

CHAR_W = 7.0  # px per character of the 12px monospace label font
NODE_H = 22
ROW_GAP = 10
COL_GAP = 70
PAD = 12
SWEEPS = 8


@dataclass(frozen=True)
class NodeStyle:
    label: str
    css: str  # class name: table, facts, claim, derived, outcome, rule
    href: str | None
    title: str


def svg(g: nx.DiGraph, style: dict, *, highlight: set | None = None, caption: str = "") -> str:
    """`g` edges carry `negative`; `style[node]` is a NodeStyle. One line of SVG markup per
    element, no blank lines (so Markdown keeps it as one raw HTML block)."""
    highlight = highlight or set()
    layer = _layers(g)
    cols, points = _order(g, layer)
    width = {n: len(style[n].label) * CHAR_W + 16 for n in g}
    col_w = [max((width[n] for n in col if n in width), default=8) for col in cols]
    col_x = [PAD + sum(col_w[:i]) + COL_GAP * i for i in range(len(cols))]
    heights = [sum(NODE_H if n in width else 2 for n in col) + ROW_GAP * max(len(col) - 1, 0) for col in cols]
    total_h = max(heights, default=NODE_H) + 2 * PAD
    total_w = (col_x[-1] + col_w[-1] + PAD) if cols else 2 * PAD
    pos: dict[object, tuple[float, float]] = {}
    for i, col in enumerate(cols):
        y = PAD + (total_h - 2 * PAD - heights[i]) / 2
        for n in col:
            h = NODE_H if n in width else 2
            pos[n] = (col_x[i], y + h / 2)
            y += h + ROW_GAP
    out = [
        (
            f'<svg class="pkb-graph" xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
            f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" role="img" aria-label="{escape(caption or "dependency diagram")}" '
            f'data-search-exclude="">'
        ),
        (
            '<defs><marker id="pkb-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="pkb-arrowhead"/></marker></defs>'
        ),
    ]
    if caption:
        out.append(f"<title>{escape(caption)}</title>")
    for u, v, data in sorted(g.edges(data=True), key=lambda e: (_key(e[0]), _key(e[1]))):
        if layer[u] == layer[v]:  # inside one component: an arc on the right
            (x1, y1), (x2, y2) = (pos[u][0] + width[u], pos[u][1]), (pos[v][0] + width[v], pos[v][1])
            d = f"M{x1:.1f},{y1:.1f} C{x1 + 40:.1f},{y1:.1f} {x2 + 40:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        else:
            d = _path(u, v, points[(u, v)], pos, width, col_w)
        cls = "pkb-edge neg" if data.get("negative") else "pkb-edge"
        out.append(f'<path class="{cls}" d="{d}" marker-end="url(#pkb-arrow)"/>')
    for n in sorted(width, key=_key):
        st = style[n]
        x, y = pos[n]
        cls = f"pkb-node {st.css}" + (" hl" if n in highlight else "")
        box = (
            f'<g class="{cls}"><title>{escape(st.title)}</title>'
            f'<rect x="{x:.1f}" y="{y - NODE_H / 2:.1f}" width="{width[n]:.1f}" height="{NODE_H}" rx="4"/>'
            f'<text x="{x + 8:.1f}" y="{y + 4:.1f}">{escape(st.label)}</text></g>'
        )
        out.append(f'<a href="{escape(st.href)}">{box}</a>' if st.href else box)
    out.append("</svg>")
    return "\n".join(out)


def _path(u, v, waypoints: list, pos: dict, width: dict, col_w: list) -> str:
    """S-curves between columns; across a waypoint's column, a straight run."""
    x, y = pos[u][0] + width[u], pos[u][1]
    segs = [f"M{x:.1f},{y:.1f}"]
    for n in waypoints + [v]:
        tx, ty = pos[n]
        mid = (x + tx) / 2
        segs.append(f"C{mid:.1f},{y:.1f} {mid:.1f},{ty:.1f} {tx:.1f},{ty:.1f}")
        x, y = tx, ty
        if n is not v:
            x += col_w[n[3]]  # a waypoint ("~", u, v, column)
            segs.append(f"L{x:.1f},{y:.1f}")
    return " ".join(segs)


def _key(n) -> str:
    return str(n)


def _layers(g: nx.DiGraph) -> dict:
    """Column of each node: the longest path to it from a source, components kept together."""
    return analysis.levels(g)


def _order(g: nx.DiGraph, layer: dict) -> tuple[list[list], dict]:
    """Columns in top-to-bottom order, with waypoints for edges that skip columns."""
    n_cols = max(layer.values(), default=-1) + 1
    cols: list[list] = [[] for _ in range(n_cols)]
    for n in sorted(g, key=_key):
        cols[layer[n]].append(n)
    up: dict = {n: [] for n in g}  # node -> neighbours in the previous column
    down: dict = {n: [] for n in g}
    points: dict = {}
    for u, v in sorted(g.edges(), key=lambda e: (_key(e[0]), _key(e[1]))):
        lu, lv = layer[u], layer[v]
        if lv <= lu:
            continue
        prev = u
        chain = []
        for k in range(lu + 1, lv):
            w = ("~", _key(u), _key(v), k)
            up[w], down[w] = [prev], []
            down[prev].append(w)
            cols[k].append(w)
            chain.append(w)
            prev = w
        up[v].append(prev)
        down[prev].append(v)
        points[(u, v)] = chain
    for sweep in range(SWEEPS):
        rng = range(1, n_cols) if sweep % 2 == 0 else range(n_cols - 2, -1, -1)
        for i in rng:
            ref = cols[i - 1] if sweep % 2 == 0 else cols[i + 1]
            idx = {n: k for k, n in enumerate(ref)}
            nbrs = up if sweep % 2 == 0 else down
            current = {n: k for k, n in enumerate(cols[i])}

            def bary(n, idx=idx, nbrs=nbrs, current=current):
                ks = [idx[m] for m in nbrs[n] if m in idx]
                return (sum(ks) / len(ks) if ks else current[n], _key(n))

            cols[i].sort(key=bary)
    return cols, points
