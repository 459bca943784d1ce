"""Drawing a fitted graph: the trie condensed into a layered graph (step 6), as plotly, SVG or networkx.

Condensing drops IGNORE and END nodes and merges equal tokens at the same depth, where depth counts *important*
tokens back from the firing token (0 = the firing token). Firing tokens are red (darker = higher activation),
context tokens blue (darker = more important); a bold outline marks a node where some pattern ends. Context is drawn
to the left of what it precedes, so each pattern reads left to right as text. Unrelated patterns of a polysemantic
neuron show up as separate connected components.
"""

from __future__ import annotations

from typing import Any

from ...render.html import escape
from .trie import IGNORE

__all__ = ["condense", "figure", "text_width", "to_svg", "to_networkx"]

Node = tuple[int, int]  # (depth, token id)


def condense(g: Any) -> tuple[dict[Node, dict[str, Any]], set[tuple[Node, Node]]]:
    """``(nodes, edges)`` of the condensed graph: node ``(depth, token)`` -> attributes (``label``, ``kind``
    ``"activator"``/``"context"``, ``weight``: max activation or importance, ``end``: a pattern ends there);
    edges from a node to the next important token before it."""
    t = g.trie
    nodes: dict[Node, dict[str, Any]] = {}
    edges: set[tuple[Node, Node]] = set()
    stack = [(c, None, -1) for c in t.children[0].values()]
    while stack:
        u, last, d = stack.pop()
        tok = t.token[u]
        if tok != IGNORE:
            d += 1
            key = (d, tok)
            a = nodes.setdefault(key, {"label": g.token_str(tok), "kind": "activator" if d == 0 else "context",
                                       "weight": 0.0, "end": False, "depth": d, "token": tok})
            a["weight"] = max(a["weight"], t.weight[u])
            if last is not None:
                edges.add((last, key))
            last = key
        if t.end_count[u] and last is not None:
            nodes[last]["end"] = True
        for c in t.children[u].values():
            stack.append((c, last, d))
    return nodes, edges


def _layout(nodes: dict[Node, dict[str, Any]]) -> dict[Node, tuple[float, float]]:
    """Column per depth (context to the left), rows by weight then label: deterministic."""
    cols: dict[int, list[Node]] = {}
    for k in nodes:
        cols.setdefault(k[0], []).append(k)
    pos = {}
    for d, ks in cols.items():
        ks.sort(key=lambda k: (-nodes[k]["weight"], nodes[k]["label"], k[1]))
        for i, k in enumerate(ks):
            pos[k] = (-float(d), float(i))
    return pos


def _rgb(kind: str, w: float) -> tuple[int, int, int]:
    w = min(max(float(w), 0.0), 1.0)
    base = (215, 48, 31) if kind == "activator" else (33, 102, 172)
    a = 0.2 + 0.8 * w
    return tuple(int(round(255 - a * (255 - c))) for c in base)


FONT_SIZE = 12  # px, monospace: every character advances about 0.6 em
_ADVANCE = 0.6


def text_width(text: str, font_size: float = FONT_SIZE) -> int:
    """Estimated width in px of ``text`` in the SVG's monospace font (rounded up): what the SVG must hold."""
    return int(-(-len(text) * font_size * _ADVANCE // 1))


def _show(label: str) -> str:
    return label.replace("\n", "\u21b5").replace("\t", "\u21e5").replace(" ", "\u00b7") or "\u2205"


def to_svg(g: Any, *, max_per_column: int = 40, node_width: int = 110, row_height: int = 26) -> str:
    """Standalone SVG (no graphviz, no script, no network); every token is escaped."""
    nodes, edges = condense(g)
    pos = _layout(nodes)
    keep = {k for k, (x, y) in pos.items() if y < max_per_column}
    if not keep:
        note = f"L{g.layer} N{g.neuron}: empty graph (no firing token in the training examples)"
        return (f"<svg xmlns='http://www.w3.org/2000/svg' class='n2g' width='{text_width(note) + 10}' height='30' "
                f"font-family='monospace' font-size='{FONT_SIZE}'><text x='4' y='20'>{escape(note)}</text></svg>")
    depth = max(k[0] for k in keep)
    rows = max(pos[k][1] for k in keep) + 1
    gap = 50
    title = f"L{g.layer} N{g.neuron}: context \u2192 firing token"
    hidden = len(nodes) - len(keep)
    footer = f"{hidden} more nodes not drawn" if hidden else ""
    # at least as wide as its texts: a one-column graph is narrower than its title
    W = max(int((depth + 1) * (node_width + gap) + 10), text_width(title) + 10, text_width(footer) + 10)
    H = int(rows * row_height + 36)

    def xy(k: Node) -> tuple[float, float]:
        x, y = pos[k]
        return (depth + x) * (node_width + gap) + 5, y * row_height + 28

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' class='n2g' width='{W}' height='{H}' viewBox='0 0 {W} {H}' "
             f"font-family='monospace' font-size='{FONT_SIZE}'>", f"<text x='5' y='14' fill='#555'>{title}</text>"]
    for a, b in sorted(edges):
        if a in keep and b in keep:
            (x1, y1), (x2, y2) = xy(a), xy(b)
            parts.append(f"<line x1='{x2 + node_width:.0f}' y1='{y2 + 10:.0f}' x2='{x1:.0f}' y2='{y1 + 10:.0f}' "
                         "stroke='#999' stroke-width='1'/>")
    for k in sorted(keep):
        a = nodes[k]
        x, y = xy(k)
        r, gg, b = _rgb(a["kind"], a["weight"])
        dark = a["weight"] > 0.6
        label = _show(a["label"])
        short = label if len(label) <= 14 else label[:13] + "\u2026"
        tip = f"{a['kind']} {a['label']!r}: {'activation' if a['kind'] == 'activator' else 'importance'} " \
              f"{a['weight']:.2f}{'; a pattern ends here' if a['end'] else ''}"
        parts.append(f"<g><title>{escape(tip)}</title><rect x='{x:.0f}' y='{y:.0f}' width='{node_width}' "
                     f"height='20' rx='4' fill='rgb({r},{gg},{b})' stroke='#000' "
                     f"stroke-width='{2.5 if a['end'] else 0.5}'/><text x='{x + node_width / 2:.0f}' "
                     f"y='{y + 14:.0f}' text-anchor='middle' fill='{'#fff' if dark else '#000'}'>"
                     f"{escape(short)}</text></g>")
    if footer:
        parts.append(f"<text x='5' y='{H - 4}' fill='#555'>{footer}</text>")
    parts.append("</svg>")
    return "".join(parts)


def figure(g: Any, *, max_per_column: int = 60):
    """Plotly figure of the condensed graph (hover shows activation / importance)."""
    import plotly.graph_objects as go

    nodes, edges = condense(g)
    pos = _layout(nodes)
    keep = {k for k, (x, y) in pos.items() if y < max_per_column}
    ex, ey = [], []
    for a, b in sorted(edges):
        if a in keep and b in keep:
            ex += [pos[a][0], pos[b][0], None]
            ey += [pos[a][1], pos[b][1], None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#aaa", width=1), hoverinfo="skip",
                             showlegend=False))
    for kind, name in (("activator", "firing token"), ("context", "important context")):
        ks = sorted(k for k in keep if nodes[k]["kind"] == kind)
        if not ks:
            continue
        fig.add_trace(go.Scatter(
            x=[pos[k][0] for k in ks], y=[pos[k][1] for k in ks], mode="markers+text", name=name,
            text=[_show(nodes[k]["label"]) for k in ks], textposition="middle center",
            marker=dict(size=34, symbol="square", color=["rgb(%d,%d,%d)" % _rgb(kind, nodes[k]["weight"]) for k in ks],
                        line=dict(color="#000", width=[3 if nodes[k]["end"] else 0.5 for k in ks])),
            hovertext=[f"{nodes[k]['label']!r}<br>{'activation' if kind == 'activator' else 'importance'} "
                       f"{nodes[k]['weight']:.2f}{'<br>a pattern ends here' if nodes[k]['end'] else ''}"
                       for k in ks], hoverinfo="text"))
    fig.update_layout(title=f"N2G: layer {g.layer}, neuron {g.neuron}", plot_bgcolor="white",
                      xaxis=dict(title="important tokens before the firing token", showgrid=False, zeroline=False,
                                 tickvals=sorted({pos[k][0] for k in keep}),
                                 ticktext=[str(int(-x)) for x in sorted({pos[k][0] for k in keep})]),
                      yaxis=dict(visible=False, autorange="reversed"),
                      height=max(300, 40 * (1 + max([pos[k][1] for k in keep], default=0)) + 120))
    return fig


def to_networkx(g: Any, condensed: bool = True):
    """``networkx.DiGraph``: the condensed graph (nodes ``(depth, token)``), or the full trie (nodes are trie
    node ids; IGNORE nodes have ``kind="ignore"``; every END is its own ``("end", node)`` node with the value)."""
    import networkx as nx

    G = nx.DiGraph(layer=g.layer, neuron=g.neuron)
    if condensed:
        nodes, edges = condense(g)
        for k, a in nodes.items():
            G.add_node(k, **a)
        G.add_edges_from(edges)
        return G
    t = g.trie
    for u in range(1, len(t)):
        tok = t.token[u]
        kind = "ignore" if tok == IGNORE else ("activator" if t.depth[u] == 1 else "context")
        G.add_node(u, token=tok, label=g.token_str(tok), kind=kind, depth=t.depth[u], weight=t.weight[u])
        if t.parent[u] > 0:
            G.add_edge(t.parent[u], u)
        if t.end_count[u]:
            G.add_node(("end", u), kind="end", value=t.end_value(u), count=t.end_count[u])
            G.add_edge(u, ("end", u))
    return G

