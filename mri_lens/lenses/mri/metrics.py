"""Metrics of a co-activation graph or a component graph as pandas DataFrames (:class:`GraphMetrics`): per layer
(degrees, strengths, density to the next layer), per node (centralities, betweenness on distance 1 / weight,
PageRank, clustering), for the whole graph, per category and per pair of categories (edge-set Jaccard, weight
correlations), LLM-MRI's metrics among them (from ``layer_metrics``), on all edges or on one category's."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._graph_base import _graph_categories, _node_arrays
from ._stats import _pair_stats
from .layer_metrics import layer_degree_stats, llm_mri_summary, positive_edges, projections

__all__ = ["GraphMetrics", "graph_metrics"]


def _layered(g) -> bool:
    """True when every edge goes from one mapped layer to the next (then the graph has no triangles)."""
    layers = list(g.graph.get("layers", []))
    idx = {x: i for i, x in enumerate(layers)}
    try:
        return all(idx[g.nodes[v]["layer"]] == idx[g.nodes[u]["layer"]] + 1 for u, v in g.edges)
    except KeyError:
        return False


# Exact betweenness runs one Dijkstra per node (about nodes x edges steps, in Python); above this, sample sources.
_EXACT_BETWEENNESS_BUDGET = 2e6


@dataclass
class GraphMetrics:
    """Metrics of a co-activation graph as pandas DataFrames.

    Attributes
    ----------
    layers : DataFrame
        One row per layer: nodes, active nodes, edges to the next layer and their density, mean/std/max of in/out
        degree and in/out strength (population std).
    nodes : DataFrame
        One row per node: counts, degrees, strengths, degree centralities, betweenness (shortest paths on distance
        1 / weight), weighted PageRank, clustering of the undirected projection.
    summary : DataFrame
        Graph-level values, indexed by metric name.
    categories : DataFrame
        One row per category: active regions, edges carrying its documents, their total weight, enriched counts.
    category_pairs : DataFrame
        One row per pair of categories: edge-set Jaccard and Pearson/Spearman weight correlation on the union.
    projections : DataFrame
        Rows ``"even"`` and ``"odd"``: LLM-MRI's metrics of the even- and odd-layer projections (nodes, edges,
        degree / strength mean and variance, average clustering, assortativity, density, average shortest path).
    """

    layers: Any
    nodes: Any
    summary: Any
    categories: Any = None
    category_pairs: Any = None
    projections: Any = None
    _extra: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        s = self.summary["value"]
        return f"GraphMetrics(nodes={s['nodes']}, edges={s['edges']}, layers={len(self.layers)})"

    def _repr_html_(self) -> str:
        parts = []
        for name in ("summary", "layers", "projections", "categories", "category_pairs"):
            df = getattr(self, name)
            if df is not None and len(df):
                parts.append(f"<h4>{name}</h4>" + df.to_html(float_format=lambda v: f"{v:.4g}"))
        return "".join(parts)


def graph_metrics(g, *, betweenness_sources: int | None = None, seed: int = 0,
                  category: str | None = None) -> GraphMetrics:
    """Per-layer, per-node, graph-level and per-category metrics of a co-activation graph or a component graph.

    Nothing here assumes an undirected or single-layer graph: clustering is taken on ``g.to_undirected()`` (zero by
    construction when every edge joins consecutive layers: such a graph has no triangles, so it is not recomputed),
    betweenness on the distance 1 / weight, PageRank and strengths weighted by ``weight``.

    LLM-MRI's metrics (its ``Metrics`` class) are included under these names. Degrees and strengths are in + out on
    the directed graph, taken over the nodes that have at least one edge (its graphs hold no other node); variances
    have ddof 1, skewness is bias-corrected and kurtosis is the bias-corrected excess kurtosis (pandas' conventions).
    They count only edges of weight > 0 (a component graph's edge that passes for one category only has weight 0).

    =========================================  =================================================================
    LLM-MRI                                    here
    =========================================  =================================================================
    ``get_degree_by_layer()`` mean, var        ``layers``: ``degree_mean``, ``degree_var`` (also
                                               ``strength_mean``, ``strength_var``)
    ``mean_degree`` ... ``kurt_degree``        ``summary``: ``degree_mean``, ``degree_var``, ``degree_skew``,
                                               ``degree_kurtosis``
    ``mean_strength`` ... ``kurt_strength``    ``summary``: ``strength_mean``, ``strength_var``,
                                               ``strength_skew``, ``strength_kurtosis``
    ``assortativity``                          ``summary``: ``assortativity_weighted`` (networkx's
                                               ``degree_assortativity_coefficient(g, weight="weight")``)
    ``density``                                ``summary``: ``density_non_isolated`` (``density`` counts every
                                               node, isolated regions included)
    ``center_of_mass``                         ``summary``: ``center_of_mass``
    ``center_of_strength``                     ``summary``: ``center_of_strength``
    ``get_projection_metrics_even()`` /        ``projections`` rows ``"even"`` / ``"odd"`` (``mean_degree`` ->
    ``_odd()``                                 ``degree_mean`` and so on; ``average_clustering``,
                                               ``assortativity``, ``density``, ``average_shortest_path``)
    ``Metrics`` of one category's graph        ``graph_metrics(g, category=c)``
    =========================================  =================================================================

    Centres: layer position ``i`` is the index of the node's layer in ``g.graph["layers"]`` (``n`` of them), centred
    on the middle position ``(n - 1) / 2``. Centre of mass = the mean of ``i - (n - 1) / 2`` over the nodes; centre
    of strength = sum over positions of the std of the strengths there times ``i - (n - 1) / 2`` (positions with
    fewer than two nodes add nothing). The reference centres on ``n / 2`` instead (its layer index is the hidden-state
    index ``0 .. n - 1``): on a graph of every hidden state its centre of mass is ours minus 1/2 and its centre of
    strength ours minus half the sum of the per-layer stds. (Its loop also visits an index past the last layer, whose
    empty std is NaN, so the centre of strength it returns is NaN.) Projections: see ``layer_metrics.projections``;
    they are taken on the undirected graph (the reference's fail on its directed graphs).

    Parameters
    ----------
    g : networkx.DiGraph
        A graph from :func:`coactivation_graph` or ``component_graph``: node attribute ``layer``,
        ``g.graph["layers"]``, edge attribute ``weight`` (>= 0) and ``weight_<category>`` per category.
    betweenness_sources : int or None
        Number of sampled source nodes for betweenness (``networkx.betweenness_centrality(k=...)``); None: exact
        when nodes x edges <= 2e6, else sampled with ``int(2e6 / edges)`` sources (recorded in ``summary``).
    seed : int
        Seed of the source sampling.
    category : str or None
        Compute everything on that category's graph: the same nodes (``docs`` = ``docs_<category>``), the edges
        with ``weight_<category>`` > 0, weighted by it (no per-category tables then). None: every edge.

    Returns
    -------
    GraphMetrics
    """
    import pandas as pd

    if category is not None:
        g = _category_graph(g, category)
    cats = list(g.graph.get("categories", []))
    node_df, clus, k = _node_table(g, cats, betweenness_sources, seed)
    positive = positive_edges(g)
    layer_df = _layer_table(g, node_df, positive)
    summary = {**_summary(g, node_df, clus, k), **llm_mri_summary(positive)}
    summary_df = pd.DataFrame({"value": pd.Series(summary, dtype=object)})
    cat_df, pair_df = _category_tables(g, cats) if cats else (None, None)
    return GraphMetrics(layers=layer_df, nodes=node_df, summary=summary_df, categories=cat_df,
                        category_pairs=pair_df, projections=projections(positive))


def _category_graph(g, category: str):
    """One category's graph: every node (``docs`` replaced by ``docs_<category>``), the edges its documents use
    (``weight_<category>`` > 0) with that weight as ``weight``; ``graph["categories"]`` empty."""
    import networkx as nx

    (c,) = _graph_categories(g, category)
    h = nx.DiGraph() if g.is_directed() else nx.Graph()
    h.graph.update(g.graph)
    h.graph.update({"categories": [], "category": c,
                    "n_docs": g.graph.get("category_sizes", {}).get(c)})
    h.add_nodes_from((u, {**d, "docs": d.get(f"docs_{c}", 0)}) for u, d in g.nodes(data=True))
    key = f"weight_{c}"
    h.add_edges_from((u, v, {"weight": d[key]}) for u, v, d in g.edges(data=True) if d.get(key, 0) > 0)
    return h


def _betweenness_sources(n: int, m: int, requested: int | None) -> int | None:
    """Sampled sources for betweenness on ``n`` nodes and ``m`` edges (None: exact)."""
    k = requested
    if k is None and n * m > _EXACT_BETWEENNESS_BUDGET:
        k = max(1, int(_EXACT_BETWEENNESS_BUDGET / max(m, 1)))
    if k is not None and k >= n:
        k = None
    return k


def _clustering(g, nodes: list) -> dict:
    """Clustering of each node on the undirected projection (zero without computing it for a layered graph)."""
    import networkx as nx

    if _layered(g):
        return {u: 0.0 for u in nodes}
    und = nx.Graph()  # the undirected projection without attributes (g.to_undirected() deep-copies every attribute)
    und.add_nodes_from(nodes)
    und.add_edges_from(g.edges)
    return nx.clustering(und)


def _node_table(g, cats: list[str], betweenness_sources: int | None, seed: int):
    """``(one row per node [n_nodes rows], clustering per node, betweenness sources used or None)``."""
    import networkx as nx
    import pandas as pd

    nodes = list(g.nodes)
    n, m = g.number_of_nodes(), g.number_of_edges()
    in_deg = dict(g.in_degree())
    out_deg = dict(g.out_degree())
    in_str = dict(g.in_degree(weight="weight"))
    out_str = dict(g.out_degree(weight="weight"))
    deg_c = nx.degree_centrality(g) if n > 1 else {u: 0.0 for u in nodes}
    in_c = nx.in_degree_centrality(g) if n > 1 else {u: 0.0 for u in nodes}
    out_c = nx.out_degree_centrality(g) if n > 1 else {u: 0.0 for u in nodes}
    k = _betweenness_sources(n, m, betweenness_sources)
    btw = nx.betweenness_centrality(g, k=k, seed=seed if k is not None else None,
                                    weight=lambda u, v, d: 1.0 / d["weight"] if d.get("weight") else math.inf)
    pr = nx.pagerank(g, weight="weight") if n else {}
    clus = _clustering(g, nodes)
    rows = []
    for u in nodes:
        d = g.nodes[u]
        row = {"node": u, "layer": d.get("layer"), "region": d.get("region"), "row": d.get("row"),
               "col": d.get("col"), "docs": d.get("docs", 0)}
        row.update({f"docs_{c}": d.get(f"docs_{c}", 0) for c in cats})
        row.update({"in_degree": in_deg[u], "out_degree": out_deg[u], "in_strength": in_str[u],
                    "out_strength": out_str[u], "degree_centrality": deg_c[u], "in_degree_centrality": in_c[u],
                    "out_degree_centrality": out_c[u], "betweenness": btw[u], "pagerank": pr[u],
                    "clustering": clus[u]})
        rows.append(row)
    return pd.DataFrame(rows), clus, k


def _layer_table(g, node_df, positive):
    """One row per layer ``[n_layers rows]``: nodes, active nodes, edges to the next layer, their density and
    degree / strength statistics (``degree_*`` / ``strength_*``: in + out, over the nodes with an edge, on
    ``positive``: ``g`` without its edges of weight 0)."""
    import pandas as pd

    layers = list(g.graph.get("layers") or sorted(node_df["layer"].unique()) if g.number_of_nodes() else [])
    linked = layer_degree_stats(positive, layers)
    lrows = []
    for i, layer in enumerate(layers):
        sub = node_df[node_df["layer"] == layer]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        n_next = int((node_df["layer"] == nxt).sum()) if nxt is not None else 0
        e_out = int(sub["out_degree"].sum())
        row = {"layer": layer, "nodes": len(sub), "active_nodes": int((sub["docs"] > 0).sum()),
               "edges_to_next": e_out if nxt is not None else 0,
               "density_to_next": e_out / (len(sub) * n_next) if nxt is not None and len(sub) and n_next
               else float("nan")}
        for col in ("in_degree", "out_degree", "in_strength", "out_strength"):
            v = sub[col].to_numpy(dtype=np.float64)
            row[f"{col}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{col}_std"] = float(v.std()) if len(v) else float("nan")
            row[f"{col}_max"] = float(v.max()) if len(v) else float("nan")
        row.update(linked[layer])
        lrows.append(row)
    return pd.DataFrame(lrows)


def _summary(g, node_df, clus: dict, k: int | None) -> dict[str, Any]:
    """Graph-level values by metric name."""
    import networkx as nx

    n, m = g.number_of_nodes(), g.number_of_edges()
    weights = np.array([d.get("weight", 0) for _, _, d in g.edges(data=True)], dtype=np.float64)
    wcc = list(nx.weakly_connected_components(g)) if n else []
    return {
        "nodes": n, "edges": m, "active_nodes": int((node_df["docs"] > 0).sum()) if n else 0,
        "density": nx.density(g) if n > 1 else 0.0, "total_weight": float(weights.sum()),
        "mean_weight": float(weights.mean()) if m else float("nan"),
        "max_weight": float(weights.max()) if m else float("nan"),
        "weakly_connected_components": len(wcc), "largest_component_nodes": max(map(len, wcc)) if wcc else 0,
        "average_clustering_undirected": float(np.mean(list(clus.values()))) if n else 0.0,
        "betweenness_sources": "all" if k is None else k, "n_docs": g.graph.get("n_docs"),
    }


def _category_tables(g, cats: list[str]):
    """``(one row per category, one row per pair of categories)`` as DataFrames."""
    import pandas as pd

    # Float: a component graph's per-category weights are correlations; a co-activation graph's are counts.
    e_by = np.array([[d.get(f"weight_{c}", 0) for c in cats] for *_, d in g.edges(data=True)],
                    dtype=np.float64).reshape(g.number_of_edges(), len(cats))
    _, _, n_by = _node_arrays(g, cats)
    alpha = g.graph.get("enrichment", {}).get("alpha")
    crow = []
    for j, c in enumerate(cats):
        row = {"category": c, "docs": g.graph.get("category_sizes", {}).get(c),
               "active_nodes": int((n_by[:, j] > 0).sum()), "edges": int((e_by[:, j] > 0).sum()),
               "total_weight": _number(e_by[:, j].sum())}
        if alpha is not None and c in g.graph["enrichment"].get("categories", []):
            row["enriched_nodes"] = sum(1 for u in g.nodes if g.nodes[u].get(f"q_{c}", 1.0) < alpha)
            row["enriched_edges"] = sum(1 for *_, d in g.edges(data=True) if d.get(f"q_{c}", 1.0) < alpha)
        crow.append(row)
    prow = []
    for a in range(len(cats)):
        for b in range(a + 1, len(cats)):
            prow.append({"a": cats[a], "b": cats[b], **_pair_stats(e_by[:, a], e_by[:, b])})
    pair_df = pd.DataFrame(prow, columns=["a", "b", "edges_a", "edges_b", "edges_union", "jaccard", "pearson",
                                          "spearman"])
    return pd.DataFrame(crow), pair_df


def _number(x: float) -> int | float:
    """``x`` as an int when it is whole (summed counts), else as a float (summed correlations)."""
    return int(x) if float(x).is_integer() else float(x)
