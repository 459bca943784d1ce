"""Two categories of documents compared: region by region and edge by edge on a fitted map and its co-activation
graph (:func:`compare_categories`: two-sided Fisher exact test, log odds ratio, Benjamini-Hochberg), and neuron by
neuron on the scan itself (:func:`category_differences`: Welch's t-test, Cohen's d with the pooled SD,
Benjamini-Hochberg over all neurons of all layers), with their figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...data.corpus import check_categories
from ...errors import GraphError, ScanError
from ._graph_base import _check_params, _edge_arrays, _graph_categories, _node_arrays
from ._stats import _bh, _fisher_two_sided, _pair_stats, _welch_cohen
from .coactivation import _activated_csr, _category_blocks
from .graph_plot import _NONE, _colour

if TYPE_CHECKING:
    from ...results import Scan

__all__ = ["CategoryComparison", "compare_categories", "category_differences", "category_difference_figure"]


def _two_group_table(ka: np.ndarray, kb: np.ndarray, n_a: int, n_b: int, a: str, b: str, alpha: float) -> dict:
    ka, kb = ka.astype(np.int64), kb.astype(np.int64)
    fa, fb = ka / n_a, kb / n_b
    log_odds = np.log((ka + 0.5) * (n_b - kb + 0.5)) - np.log((n_a - ka + 0.5) * (kb + 0.5))
    p = _fisher_two_sided(ka, ka + kb, n_a, n_b)
    # Rows no document of either category activates cannot reach significance whatever the data (p = 1); leaving
    # them out of the Benjamini-Hochberg family (independent filtering on the total count) keeps the FDR and does
    # not dilute it with untestable empty regions. Their q is reported as 1.
    testable = (ka + kb) > 0
    q = np.ones(len(p))
    q[testable] = _bh(p[testable])
    enriched = np.full(len(p), None, dtype=object)
    enriched[(q < alpha) & (fa > fb)] = a
    enriched[(q < alpha) & (fb > fa)] = b
    return {f"docs_{a}": ka, f"docs_{b}": kb, f"frac_{a}": fa, f"frac_{b}": fb, "log_odds": log_odds,
            "p_value": p, "q_value": q, "enriched_for": enriched}


@dataclass
class CategoryComparison:
    """Regions and edges compared between two categories of documents.

    Attributes
    ----------
    a, b : str
        The categories; positive ``log_odds`` means more frequent in ``a``.
    regions : DataFrame
        One row per region of every layer: documents of ``a`` / ``b`` activating it, fractions, log odds ratio
        (0.5 added to every cell), two-sided Fisher p-value, BH q-value (over the regions that documents of
        ``a`` or ``b`` activate; 1 for the others), ``enriched_for``.
    edges : DataFrame
        One row per edge of the graph, the same columns from its per-category weights (BH over the edges carrying ``a`` or ``b``).
    summary : dict
        Category sizes, alpha, enriched counts, edge-set Jaccard and weight correlations.
    """

    a: str
    b: str
    regions: Any
    edges: Any
    summary: dict

    def __repr__(self) -> str:
        s = self.summary
        return (f"CategoryComparison({self.a!r} vs {self.b!r}: {s['regions_enriched_a']}+{s['regions_enriched_b']} "
                f"regions, {s['edges_enriched_a']}+{s['edges_enriched_b']} edges enriched at q < {s['alpha']})")

    def _repr_html_(self) -> str:
        import html

        import pandas as pd

        head = pd.DataFrame({"value": pd.Series(self.summary, dtype=object)}).to_html()
        top = self.regions.sort_values("q_value").head(20).to_html(float_format=lambda v: f"{v:.4g}")
        return (f"<h4>{html.escape(self.a)} vs {html.escape(self.b)}</h4>{head}"
                f"<h4>most different regions</h4>{top}")

    def figure(self):
        """Volcano plots (log odds ratio against -log10 q) of regions and edges, coloured by ``enriched_for``."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=1, cols=2, subplot_titles=("regions", "edges"))
        colours = {self.a: _colour(0), self.b: _colour(1), None: _NONE}
        for col, df in ((1, self.regions), (2, self.edges)):
            hover = (df["layer"].astype(str) + " r" + df["region"].astype(str) if col == 1 else
                     "L" + df["source_layer"].astype(str) + " r" + df["source_region"].astype(str) + " -> L"
                     + df["target_layer"].astype(str) + " r" + df["target_region"].astype(str))
            for key, colour in colours.items():
                sel = (df["enriched_for"] == key) if key is not None else df["enriched_for"].isna()
                if not sel.any():
                    continue
                fig.add_trace(go.Scattergl(
                    x=df.loc[sel, "log_odds"], y=-np.log10(np.maximum(df.loc[sel, "q_value"], 1e-300)),
                    mode="markers", marker={"color": colour, "size": 5}, hovertext=hover[sel],
                    name=f"enriched for {key}" if key is not None else "not enriched", legendgroup=str(key),
                    showlegend=col == 1 or not (self.regions["enriched_for"] == key).any()), 1, col)
            fig.update_xaxes(title_text=f"log odds ratio ({self.a} / {self.b})", row=1, col=col)
        fig.update_yaxes(title_text="-log10 q", row=1, col=1)
        fig.update_layout(height=420, plot_bgcolor="white")
        return fig


def compare_categories(maps, g, a: str, b: str, *, alpha: float = 0.05) -> CategoryComparison:
    """Compare two categories region by region (from ``maps``) and edge by edge (from ``g``'s per-category weights).

    Per region and per edge the table is ``[[k_a, n_a - k_a], [k_b, n_b - k_b]]`` (documents of each category
    activating it / not), tested with the two-sided Fisher exact test (same p-values as
    ``scipy.stats.fisher_exact``, computed vectorised); q-values are Benjamini-Hochberg over the regions of all
    layers that some document of ``a`` or ``b`` activates, and separately over the edges of ``g`` that carry them
    (rows with no such document have p = 1 whatever happens and are left out of the family; their q is 1). ``enriched_for`` is the category with the higher fraction when
    q < ``alpha``.

    Parameters
    ----------
    maps : fitted region maps or None
        Region counts come from ``maps.activated``; None: from ``g``'s node attributes.
    g : networkx.DiGraph
        A graph from :func:`coactivation_graph` that counted both categories.
    a, b : str
        Category names.
    alpha : float

    Returns
    -------
    CategoryComparison
    """
    import pandas as pd

    _check_params(0, None, None, alpha)
    cats = _graph_categories(g, [a, b])
    if a == b:
        raise GraphError(f"compare two different categories, got {a!r} twice")
    if maps is not None:
        names, block, sizes = _category_blocks(maps, cats)
        if int(maps.n_docs) != int(g.graph.get("n_docs", -1)) or \
                [int(x) for x in maps.layers] != list(g.graph.get("layers", [])):
            raise GraphError("the graph was not built from these maps (documents or layers differ)")
        n_a, n_b = int(sizes[0]), int(sizes[1])
        n_regions = int(maps.n_regions)
        ka_l, kb_l, lay, reg = [], [], [], []
        for layer in g.graph["layers"]:
            act = _activated_csr(maps, layer, int(maps.n_docs), n_regions)
            ka_l.append(np.asarray(act[block == 0].sum(0)).ravel())
            kb_l.append(np.asarray(act[block == 1].sum(0)).ravel())
            lay.append(np.full(n_regions, layer))
            reg.append(np.arange(n_regions))
        ka, kb = np.concatenate(ka_l), np.concatenate(kb_l)
        layer_col, region_col = np.concatenate(lay), np.concatenate(reg)
    else:
        n_a, n_b = (int(g.graph["category_sizes"][c]) for c in cats)
        nodes, _, by = _node_arrays(g, cats)
        ka, kb = by[:, 0], by[:, 1]
        layer_col = np.array([g.nodes[u]["layer"] for u in nodes], dtype=np.int64)
        region_col = np.array([g.nodes[u]["region"] for u in nodes], dtype=np.int64)
    if n_a == 0 or n_b == 0:
        raise GraphError(f"each category needs documents: {a!r} has {n_a}, {b!r} has {n_b}")
    grid = int(g.graph.get("grid", 1))
    regions = pd.DataFrame({"layer": layer_col, "region": region_col, "row": region_col // grid,
                            "col": region_col % grid, **_two_group_table(ka, kb, n_a, n_b, a, b, alpha)})
    edges, e_total, e_by = _edge_arrays(g, cats)
    e = np.array([(u[0], u[1], v[0], v[1]) for u, v in edges], dtype=np.int64).reshape(len(edges), 4)
    edge_df = pd.DataFrame({"source_layer": e[:, 0], "source_region": e[:, 1], "target_layer": e[:, 2],
                            "target_region": e[:, 3], "weight": e_total,
                            **_two_group_table(e_by[:, 0], e_by[:, 1], n_a, n_b, a, b, alpha)})
    pair = _pair_stats(e_by[:, 0], e_by[:, 1])
    summary = {"a": a, "b": b, "n_a": n_a, "n_b": n_b, "alpha": alpha,
               "regions_enriched_a": int((regions["enriched_for"] == a).sum()),
               "regions_enriched_b": int((regions["enriched_for"] == b).sum()),
               "edges_enriched_a": int((edge_df["enriched_for"] == a).sum()),
               "edges_enriched_b": int((edge_df["enriched_for"] == b).sum()),
               "edge_jaccard": pair["jaccard"], "weight_pearson": pair["pearson"],
               "weight_spearman": pair["spearman"], "edges_union": pair["edges_union"]}
    return CategoryComparison(a=a, b=b, regions=regions, edges=edge_df, summary=summary)


# --------------------------------------------------------------------------------------------------- neurons


def category_differences(scan: Scan, a: str, b: str | None = None, *, pooling: str = "mean"):
    """Per-neuron difference between two categories of documents (``b=None``: ``a`` against all others).

    Returns a pandas DataFrame with one row per (layer, neuron): the two means, Cohen's d (pooled SD), Welch's
    t-test p-value and the Benjamini-Hochberg q-value over all neurons of all layers.
    """
    import pandas as pd

    if scan.labels is None:
        raise ScanError("category differences need a labelled corpus")
    names = scan.label_names
    check_categories([a] + ([b] if b is not None else []), names, "the scan")
    if b == a:
        raise ScanError(f"category differences need two different categories, got {a!r} twice")
    in_a = scan.labels == names.index(a)
    in_b = (scan.labels == names.index(b)) if b is not None else ~in_a
    if in_a.sum() < 2 or in_b.sum() < 2:
        raise ScanError("each category needs at least two documents")
    shape = (scan.n_layers, scan.d_mlp)
    ma, mb, d, p = (np.zeros(shape) for _ in range(4))  # [L, d_mlp] each
    step = 64  # neurons at a time: memory holds a few float64 copies of [n_docs, 64], whatever the scan size
    for li, layer in enumerate(scan.layers):  # one layer's pooled values at a time: [n_docs, d_mlp]
        arr = scan.pooled(pooling, layer=layer)
        for c in range(0, scan.d_mlp, step):
            x = np.asarray(arr[:, c:c + step], dtype=np.float64)
            ma[li, c:c + step], mb[li, c:c + step], d[li, c:c + step], p[li, c:c + step] = \
                _welch_cohen(x[in_a], x[in_b])
    q = _bh(p.ravel()).reshape(p.shape)
    L, n = np.meshgrid(scan.layers, np.arange(scan.d_mlp), indexing="ij")
    return pd.DataFrame({"layer": L.ravel(), "neuron": n.ravel(), f"mean_{a}": ma.ravel(),
                         f"mean_{b or 'rest'}": mb.ravel(), "cohens_d": d.ravel(), "p_value": p.ravel(),
                         "q_value": q.ravel()})


def category_difference_figure(df, a: str, b: str | None = None, *, q: float = 0.05):
    """Two panels per layer: distribution of Cohen's d over neurons, and count of neurons with q < ``q``."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"Cohen's d per neuron ({a} vs {b or 'rest'})", f"neurons with FDR q < {q}"))
    layers = sorted(df["layer"].unique())
    up, down = [], []
    for layer in layers:
        sub = df[df["layer"] == layer]
        fig.add_trace(go.Violin(y=sub["cohens_d"], name=f"L{layer}", showlegend=False, line_color="#555",
                                points=False), 1, 1)
        sig = sub["q_value"] < q
        up.append(int((sig & (sub["cohens_d"] > 0)).sum()))
        down.append(int((sig & (sub["cohens_d"] < 0)).sum()))
    names = [f"L{l}" for l in layers]
    fig.add_trace(go.Bar(x=names, y=up, name=f"higher on {a}", marker_color="#b2182b"), 1, 2)
    fig.add_trace(go.Bar(x=names, y=down, name=f"higher on {b or 'rest'}", marker_color="#2166ac"), 1, 2)
    fig.update_layout(barmode="group", height=380)
    return fig
