"""The layered figure of a co-activation graph (plotly): one column per layer, regions in grid order, nodes and
edges coloured by the category they are enriched for (grey when enrichment finds none), a legend naming each
colour, edge widths binned on weight so that big graphs stay a few traces. Also the category palette, shared with
the comparison's volcano plots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...errors import GraphError
from ._graph_base import _check_params, _edge_arrays, _graph_categories, _node_arrays
from .enrichment import _best_category, _enrichment, _stored_pq

__all__ = ["graph_figure"]

# Category colours avoid grey, which means "not enriched".
# The first two match the log-odds panels of the region maps (red: first category, blue: second).
_PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
            "#393b79", "#637939"]
_NONE = "#bdbdbd"
_INACTIVE = "#eeeeee"


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

    Colours say only what enrichment says: an edge (node) takes a highlighted category's colour when it is
    enriched for it (one-vs-rest Fisher test, BH q < ``alpha``; stored ``q_<cat>`` attributes are used when
    present, else computed here; several: the smallest q), and is grey otherwise, whatever documents it carries; a
    region no document activates is pale. The legend names every colour drawn. Without categories every edge is
    dark grey. Edge widths are binned (``width_bins``) on weight / max weight, so they stay bounded on big corpora,
    and edges are grouped into one trace per (colour, width bin); one invisible marker trace at edge midpoints
    carries the edge hover texts (counts per category).

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
    layers = list(g.graph.get("layers") or sorted({d["layer"] for _, d in g.nodes(data=True)}))
    style = _Style.of(g, cats, layers, alpha)
    fig = go.Figure()
    shown = _add_edges(fig, g, style, width_bins, max_width)
    _add_nodes(fig, g, style, show_inactive, shown)
    n_regions = int(g.graph.get("n_regions", 1))
    fig.update_layout(
        title=title or "co-activation graph" + (f" ({', '.join(cats)})" if cats else ""),
        plot_bgcolor="white", hovermode="closest", height=int(min(1400, max(420, 7 * n_regions))),
        xaxis={"tickvals": list(range(len(layers))), "ticktext": [f"layer {x}" for x in layers],
               "showgrid": False, "zeroline": False},
        yaxis={"visible": False},
        legend={"title": f"colour (one-vs-rest Fisher test, BH q < {alpha:g})" if cats else "edges"})
    return fig


@dataclass
class _Style:
    """What the edge and node traces share: the highlighted categories and their sizes ``[n_categories]``, the
    colour classes (one per category, then "not enriched"; or one class without categories), each node's position
    (layer column, -region) and hover label."""

    cats: list[str]
    sizes: np.ndarray
    n_docs: int
    alpha: float
    class_names: list[str]
    class_colours: list[str]
    pos: dict
    lab: dict

    @classmethod
    def of(cls, g, cats: list[str], layers: list[int], alpha: float) -> "_Style":
        all_sizes = g.graph.get("category_sizes", {})
        sizes = np.array([all_sizes.get(c, 0) for c in cats], dtype=np.int64)
        col_of = {layer: i for i, layer in enumerate(layers)}
        h = len(cats)
        return cls(cats=cats, sizes=sizes, n_docs=int(g.graph.get("n_docs", 0)), alpha=alpha,
                   class_names=[f"enriched for {c}" for c in cats] + ["not enriched"] if h else ["co-activation"],
                   class_colours=[_colour(i) for i in range(h)] + [_NONE] if h else ["#4d4d4d"],
                   pos={u: (col_of[d["layer"]], -d["region"]) for u, d in g.nodes(data=True)},
                   lab={u: f"L{d['layer']} r{d['region']} ({d['row']}, {d['col']})" for u, d in g.nodes(data=True)})

    def classes(self, total: np.ndarray, by: np.ndarray, attrs: list[dict]) -> np.ndarray:
        """Colour class of each row (edge or node) ``[n]``: the category it is enriched for (the smallest q below
        alpha), else ``len(cats)`` ("not enriched")."""
        if not self.cats:
            return np.zeros(len(total), dtype=np.int64)
        stored = _stored_pq(attrs, self.cats)
        p, q = stored if stored is not None else _enrichment(total, by, self.sizes, self.n_docs)
        best = _best_category(p, q, self.alpha)
        return np.where(best >= 0, best, len(self.cats))


def _add_edges(fig, g, style: _Style, width_bins: int, max_width: float) -> set[int]:
    """Edge traces, one per (colour class, width bin), and one invisible marker trace carrying the hover texts.
    Returns the colour classes drawn (each named once in the legend)."""
    import plotly.graph_objects as go

    edges, e_total, e_by = _edge_arrays(g, style.cats)
    if not edges:
        return set()
    h = len(style.cats)
    e_cls = style.classes(e_total, e_by, [g.edges[e] for e in edges])
    frac = e_total / max(int(e_total.max()), 1)
    e_bin = np.minimum((frac * width_bins).astype(np.int64), width_bins - 1)
    xy = np.array([style.pos[u] + style.pos[v] for u, v in edges], dtype=np.float64)
    shown = set()
    # edges not enriched first, so that category-coloured edges are drawn on top of them
    order = [h] + list(range(h)) if h else [0]
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
            name = style.class_names[c]
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines", hoverinfo="skip", name=name,
                legendgroup=name, showlegend=c not in shown, opacity=0.75 if c < h else 0.35,
                line={"color": style.class_colours[c], "width": max_width * (b + 1) / width_bins}))
            shown.add(c)
    counts = _hover_counts(e_total, e_by, style.cats, style.sizes, "documents")
    hover = np.array([f"{style.lab[u]} -> {style.lab[v]}<br>{c}" for (u, v), c in zip(edges, counts)], dtype=object)
    fig.add_trace(go.Scatter(
        x=(xy[:, 0] + xy[:, 2]) / 2, y=(xy[:, 1] + xy[:, 3]) / 2, mode="markers",
        marker={"size": 6, "opacity": 0}, hovertext=hover, hoverinfo="text", showlegend=False, name="edges"))
    return shown


def _add_nodes(fig, g, style: _Style, show_inactive: bool, shown: set[int]) -> None:
    """One marker trace for the nodes, a colour per marker, sized by documents; a legend entry for each colour
    that only nodes use (``shown``: the classes the edges already named)."""
    import plotly.graph_objects as go

    nodes, n_total, n_by = _node_arrays(g, style.cats)
    if not show_inactive:
        sel = n_total > 0
        nodes, n_total, n_by = [n for n, s in zip(nodes, sel) if s], n_total[sel], n_by[sel]
    if not nodes:
        return
    n_attrs = [g.nodes[n] for n in nodes]
    n_cls = style.classes(n_total, n_by, n_attrs)
    colours = [style.class_colours[c] if t > 0 else _INACTIVE for c, t in zip(n_cls, n_total)]
    size = 4 + 14 * np.sqrt(n_total / max(int(n_total.max()), 1))
    xy = np.array([style.pos[u] for u in nodes], dtype=np.float64)
    head = [f"layer {d['layer']}, region {d['region']} ({d['row']}, {d['col']}), "
            f"{len(d.get('neurons', []))} neurons<br>" for d in n_attrs]
    counts = _hover_counts(n_total, n_by, style.cats, style.sizes, "documents")
    fig.add_trace(go.Scatter(
        x=xy[:, 0].tolist(), y=xy[:, 1].tolist(), mode="markers", name="regions", showlegend=False,
        marker={"color": colours, "size": size.tolist(), "line": {"width": 0.5, "color": "#444"}},
        hovertext=[a + b for a, b in zip(head, counts)], hoverinfo="text"))
    for c in sorted(set(n_cls[n_total > 0].tolist()) - shown):  # legend-only entries: no point is drawn
        name = style.class_names[c]
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, legendgroup=name,
                                 marker={"color": style.class_colours[c], "size": 10}, hoverinfo="skip"))
    if show_inactive and (n_total == 0).any():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="region no document activates",
                                 marker={"color": _INACTIVE, "size": 10, "line": {"width": 0.5, "color": "#444"}},
                                 hoverinfo="skip"))
