"""The layered figure of a component graph (plotly): one column per mapped layer, components top to bottom, edges
coloured by the sign of Spearman's rho on a diverging scale (red positive, blue negative, darker when stronger)
and wider when |rho| is larger, binned so that big graphs stay a few traces; hover texts give every rho."""

from __future__ import annotations

from html import escape

import numpy as np

from ...data.corpus import check_categories
from ...errors import GraphError
from ._graph_base import COMPONENT_GRAPH_KIND

__all__ = ["component_graph_figure"]

_NODE = "#4d4d4d"


def _rho_text(d: dict, key: str) -> str:
    v = d.get(key)
    return "undefined" if v is None else f"{v:+.3f}"


def _bins(g, width_bins: int) -> np.ndarray:
    """Edges of the |rho| bins ``[width_bins + 1]``: from the graph's threshold to 1, equal width."""
    t = float(g.graph.get("params", {}).get("threshold", 0.0))
    return np.linspace(t, 1.0, width_bins + 1)


def component_graph_figure(g, category: str | None = None, *, width_bins: int = 4, max_width: float = 8.0,
                           title: str | None = None):
    """Layered drawing of a component graph: one column per mapped layer, its components top to bottom.

    Edges drawn are those that pass the threshold for the selection shown (all documents, or ``category``'s):
    their colour says the sign of rho (red positive, blue negative, on a diverging scale, darker when |rho| is
    larger) and their width |rho|, both binned into ``width_bins`` classes from the threshold to 1, one trace per
    (sign, bin) named in the legend. One invisible marker trace at edge midpoints carries the hover texts (rho
    over all documents and over each category).

    Parameters
    ----------
    g : networkx.DiGraph
        A graph from :func:`~mri_lens.lenses.mri.component_graph`.
    category : str or None
        Draw the edges of this category (``rho_<category>`` / ``weight_<category>``); None: all documents.
    width_bins : int
        Number of |rho| classes (colour shade and width).
    max_width : float
        Width in pixels of the strongest edges.
    title : str or None

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    if g.graph.get("kind") != COMPONENT_GRAPH_KIND:
        raise GraphError(f"not a component graph (kind {g.graph.get('kind')!r}); for a co-activation graph use "
                         "graph_figure(g)")
    if isinstance(width_bins, bool) or not isinstance(width_bins, (int, np.integer)) or width_bins < 1:
        raise GraphError(f"width_bins must be an integer >= 1, got {width_bins!r}")
    cats = list(g.graph.get("categories", []))
    if category is not None:
        check_categories([category], cats, "the graph")
    layers = list(g.graph["layers"])
    k = int(g.graph["n_components"])
    col = {layer: i for i, layer in enumerate(layers)}
    pos = {u: (col[d["layer"]], -d["component"]) for u, d in g.nodes(data=True)}
    fig = go.Figure()
    _add_edges(fig, g, pos, category, width_bins, max_width)
    _add_nodes(fig, g, pos)
    params = g.graph.get("params", {})
    rule = ("rho > " if params.get("positive_only") else "|rho| > ") + f"{params.get('threshold', 0):g}"
    # plotly reads its texts as a few HTML tags and entities: names are escaped
    shown = "all documents" if category is None else escape(category)
    fig.update_layout(
        title=title or f"component graph ({shown}; Spearman {rule})",
        plot_bgcolor="white", hovermode="closest", height=int(min(1400, max(360, 36 * k + 120))),
        xaxis={"tickvals": list(range(len(layers))), "ticktext": [f"layer {x}" for x in layers],
               "showgrid": False, "zeroline": False},
        yaxis={"tickvals": [-c for c in range(k)], "ticktext": [f"component {c}" for c in range(k)],
               "showgrid": False, "zeroline": False},
        legend={"title": f"Spearman rho ({shown})"})
    return fig


def _add_edges(fig, g, pos: dict, category: str | None, width_bins: int, max_width: float) -> None:
    """Edge traces, one per (sign, |rho| bin) from strongly negative to strongly positive, then the hover trace."""
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    suffix = "" if category is None else f"_{category}"
    edges = [(u, v, d) for u, v, d in g.edges(data=True) if d.get(f"weight{suffix}", 0) > 0]
    if not edges:
        return
    rho = np.array([d[f"rho{suffix}"] for *_, d in edges], dtype=np.float64)  # [n_edges]
    bins = _bins(g, width_bins)
    b = np.clip(np.searchsorted(bins, np.abs(rho), side="left") - 1, 0, width_bins - 1)
    xy = np.array([pos[u] + pos[v] for u, v, _ in edges], dtype=np.float64)  # [n_edges, 4]
    mid = (bins[:-1] + bins[1:]) / 2  # [width_bins]
    classes = [(-1, i) for i in reversed(range(width_bins))] + [(1, i) for i in range(width_bins)]
    for sign, i in classes:
        sel = np.flatnonzero((np.sign(rho) == sign) & (b == i))
        if not len(sel):
            continue
        # One polyline per trace, edges separated by NaN gaps.
        xs, ys = np.full(3 * len(sel), np.nan), np.full(3 * len(sel), np.nan)
        xs[0::3], xs[1::3] = xy[sel, 0], xy[sel, 2]
        ys[0::3], ys[1::3] = xy[sel, 1], xy[sel, 3]
        lo, hi = sorted((sign * bins[i], sign * bins[i + 1]))
        colour = sample_colorscale("RdBu_r", [0.5 + 0.5 * sign * mid[i]])[0]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", name=f"{lo:+.2f} to {hi:+.2f}",
                                 line={"color": colour, "width": max_width * (i + 1) / width_bins}, opacity=0.8))
    keys = [("all documents", "rho")] + [(escape(c), f"rho_{c}") for c in g.graph.get("categories", [])]
    hover = [f"L{u[0]} c{u[1]} -> L{v[0]} c{v[1]}<br>" + "<br>".join(f"rho ({name}): {_rho_text(d, key)}"
                                                                    for name, key in keys)
             for u, v, d in edges]
    fig.add_trace(go.Scatter(
        x=(xy[:, 0] + xy[:, 2]) / 2, y=(xy[:, 1] + xy[:, 3]) / 2, mode="markers", marker={"size": 6, "opacity": 0},
        hovertext=hover, hoverinfo="text", showlegend=False, name="edges"))


def _add_nodes(fig, g, pos: dict) -> None:
    """One marker trace for the components, with their explained variance in the hover text where known."""
    import plotly.graph_objects as go

    nodes = list(g.nodes(data=True))
    if not nodes:
        return
    hover = [f"layer {d['layer']}, component {d['component']}"
             + (f"<br>explained variance: {d['explained_variance_ratio']:.1%}"
                if "explained_variance_ratio" in d else "") for _, d in nodes]
    fig.add_trace(go.Scatter(
        x=[pos[u][0] for u, _ in nodes], y=[pos[u][1] for u, _ in nodes], mode="markers", name="components",
        showlegend=False, marker={"color": _NODE, "size": 9, "line": {"width": 0.5, "color": "#222"}},
        hovertext=hover, hoverinfo="text"))
