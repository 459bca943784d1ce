"""The layered figure of a co-activation graph (plotly): one column per layer, regions in grid order, nodes and
edges coloured by the category they are enriched for (or carry alone), edge widths binned on weight so that big
graphs stay a few traces. Also the category palette, shared with the comparison's volcano plots."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import GraphError
from ._graph_base import _check_params, _edge_arrays, _graph_categories, _node_arrays
from .enrichment import _classes, _stored_pq

__all__ = ["graph_figure"]

# Category colours avoid purple and grey, which mean "shared" and "no highlighted category".
# The first two match the log-odds panels of the region maps (red: first category, blue: second).
_PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
            "#393b79", "#637939"]
_SHARED = "#b8a2cc"
_NONE = "#bdbdbd"


def _colour(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _hover_counts(total, by, cats, sizes, label: str) -> list[str]:
    lines = [f"{label}: {int(t)}" for t in total]
    for j, c in enumerate(cats):
        for i in range(len(lines)):
            frac = by[i, j] / sizes[j] if sizes[j] else 0.0
            lines[i] += f"<br>{c}: {int(by[i, j])} ({frac:.1%} of {c})"
    return lines


def graph_figure(g, highlight: Sequence[str] | str | None = None, *, alpha: float = 0.05, width_bins: int = 4,
                 max_width: float = 8.0, show_inactive: bool = True, title: str | None = None):
    """Layered drawing of a co-activation graph: one column per layer, regions in row-major grid order.

    Colours: an edge (node) takes a highlighted category's colour when it is enriched for it (one-vs-rest Fisher
    test, BH q < ``alpha``; stored ``q_<cat>`` attributes are used when present, else computed here) or when it
    carries documents of that highlighted category only; purple when it carries several highlighted categories
    without being enriched for one; grey otherwise. Edge widths are binned (``width_bins``) on weight / max weight,
    so they stay bounded on big corpora, and edges are grouped into one trace per (colour, width bin); one
    invisible marker trace at edge midpoints carries the edge hover texts (counts per category).

    Parameters
    ----------
    g : networkx.DiGraph
        A graph from :func:`coactivation_graph`.
    highlight : list of str, str or None
        Categories to colour; None: all of the graph's categories, or plain weights if it has none.
    alpha : float
    width_bins : int
        Number of edge width classes.
    max_width : float
        Width in pixels of the heaviest edges.
    show_inactive : bool
        Draw regions no document activates (small, light markers).
    title : str or None

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    _check_params(0, None, None, alpha)
    if not isinstance(width_bins, (int, np.integer)) or width_bins < 1:
        raise GraphError(f"width_bins must be an integer >= 1, got {width_bins!r}")
    cats = _graph_categories(g, highlight)
    all_sizes = g.graph.get("category_sizes", {})
    sizes = np.array([all_sizes.get(c, 0) for c in cats], dtype=np.int64)
    n_docs = int(g.graph.get("n_docs", 0))
    layers = list(g.graph.get("layers") or sorted({d["layer"] for _, d in g.nodes(data=True)}))
    col_of = {layer: i for i, layer in enumerate(layers)}
    h = len(cats)
    class_names = list(cats) + ["shared", "no highlighted category"] if h else ["co-activation"]
    class_colours = [_colour(i) for i in range(h)] + [_SHARED, _NONE] if h else ["#4d4d4d"]

    pos = {u: (col_of[d["layer"]], -d["region"]) for u, d in g.nodes(data=True)}
    lab = {u: f"L{d['layer']} r{d['region']} ({d['row']}, {d['col']})" for u, d in g.nodes(data=True)}

    fig = go.Figure()
    # Edges.
    edges, e_total, e_by = _edge_arrays(g, cats)
    if edges:
        e_attrs = [g.edges[e] for e in edges]
        e_cls = _classes(e_total, e_by, sizes, n_docs, _stored_pq(e_attrs, cats), alpha) if h else \
            np.zeros(len(edges), dtype=np.int64)
        frac = e_total / max(int(e_total.max()), 1)
        e_bin = np.minimum((frac * width_bins).astype(np.int64), width_bins - 1)
        xy = np.array([pos[u] + pos[v] for u, v in edges], dtype=np.float64)
        shown = set()
        # shared and unhighlighted edges first, so that category-coloured edges are drawn on top of them
        order = [h + 1, h] + list(range(h)) if h else [0]
        for c in order:
            for b in range(width_bins):
                sel = np.flatnonzero((e_cls == c) & (e_bin == b))
                if not len(sel):
                    continue
                # One polyline per trace, edges separated by NaN gaps (written as null; numpy arrays keep
                # plotly's validation fast).
                xs = np.full(3 * len(sel), np.nan)
                ys = np.full(3 * len(sel), np.nan)
                xs[0::3], xs[1::3] = xy[sel, 0], xy[sel, 2]
                ys[0::3], ys[1::3] = xy[sel, 1], xy[sel, 3]
                fig.add_trace(go.Scatter(
                    x=xs, y=ys, mode="lines", hoverinfo="skip", name=class_names[c],
                    legendgroup=class_names[c], showlegend=c not in shown, opacity=0.75 if c < h else 0.35,
                    line={"color": class_colours[c], "width": max_width * (b + 1) / width_bins}))
                shown.add(c)
        counts = _hover_counts(e_total, e_by, cats, sizes, "documents")
        hover = np.array([f"{lab[u]} -> {lab[v]}<br>{c}" for (u, v), c in zip(edges, counts)], dtype=object)
        fig.add_trace(go.Scatter(
            x=(xy[:, 0] + xy[:, 2]) / 2, y=(xy[:, 1] + xy[:, 3]) / 2, mode="markers",
            marker={"size": 6, "opacity": 0}, hovertext=hover, hoverinfo="text", showlegend=False, name="edges"))
    # Nodes: one trace, colour per marker.
    nodes, n_total, n_by = _node_arrays(g, cats)
    if not show_inactive:
        sel = n_total > 0
        nodes, n_total, n_by = [n for n, s in zip(nodes, sel) if s], n_total[sel], n_by[sel]
    if nodes:
        n_attrs = [g.nodes[n] for n in nodes]
        n_cls = _classes(n_total, n_by, sizes, n_docs, _stored_pq(n_attrs, cats), alpha) if h else \
            np.zeros(len(nodes), dtype=np.int64)
        colours = [class_colours[c] if t > 0 else "#eeeeee" for c, t in zip(n_cls, n_total)]
        size = 4 + 14 * np.sqrt(n_total / max(int(n_total.max()), 1))
        xy = np.array([pos[u] for u in nodes], dtype=np.float64)
        head = [f"layer {d['layer']}, region {d['region']} ({d['row']}, {d['col']}), "
                f"{len(d.get('neurons', []))} neurons<br>" for d in n_attrs]
        counts = _hover_counts(n_total, n_by, cats, sizes, "documents")
        fig.add_trace(go.Scatter(
            x=xy[:, 0].tolist(), y=xy[:, 1].tolist(), mode="markers", name="regions", showlegend=False,
            marker={"color": colours, "size": size.tolist(), "line": {"width": 0.5, "color": "#444"}},
            hovertext=[a + b for a, b in zip(head, counts)], hoverinfo="text"))
    n_regions = int(g.graph.get("n_regions", 1))
    fig.update_layout(
        title=title or "co-activation graph" + (f" ({', '.join(cats)})" if cats else ""),
        plot_bgcolor="white", hovermode="closest", height=int(min(1400, max(420, 7 * n_regions))),
        xaxis={"tickvals": list(range(len(layers))), "ticktext": [f"layer {x}" for x in layers],
               "showgrid": False, "zeroline": False},
        yaxis={"visible": False}, legend={"title": "edges"})
    return fig
