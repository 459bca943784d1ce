"""Metrics of a co-activation graph as pandas DataFrames (:class:`GraphMetrics`): per layer (degrees, strengths,
density to the next layer), per node (centralities, betweenness on distance 1 / weight, PageRank, clustering), for
the whole graph, per category and per pair of categories (edge-set Jaccard, weight correlations)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._graph_base import _edge_arrays, _node_arrays
from ._stats import _pair_stats

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
    """

    layers: Any
    nodes: Any
    summary: Any
    categories: Any = None
    category_pairs: Any = None
    _extra: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        s = self.summary["value"]
        return f"GraphMetrics(nodes={s['nodes']}, edges={s['edges']}, layers={len(self.layers)})"

    def _repr_html_(self) -> str:
        parts = []
        for name in ("summary", "layers", "categories", "category_pairs"):
            df = getattr(self, name)
            if df is not None and len(df):
                parts.append(f"<h4>{name}</h4>" + df.to_html(float_format=lambda v: f"{v:.4g}"))
        return "".join(parts)


def graph_metrics(g, *, betweenness_sources: int | None = None, seed: int = 0) -> GraphMetrics:
    """Per-layer, per-node, graph-level and per-category metrics of a co-activation graph.

    Nothing here assumes an undirected or single-layer graph: clustering is taken on ``g.to_undirected()`` (zero by
    construction when every edge joins consecutive layers: such a graph has no triangles, so it is not recomputed),
    betweenness on the distance 1 / weight, PageRank and strengths weighted by ``weight``; no assortativity.

    Parameters
    ----------
    g : networkx.DiGraph
        A graph from :func:`coactivation_graph`.
    betweenness_sources : int or None
        Number of sampled source nodes for betweenness (``networkx.betweenness_centrality(k=...)``); None: exact
        when nodes x edges <= 2e6, else sampled with ``int(2e6 / edges)`` sources (recorded in ``summary``).
    seed : int
        Seed of the source sampling.

    Returns
    -------
    GraphMetrics
    """
    import pandas as pd

    cats = list(g.graph.get("categories", []))
    node_df, clus, k = _node_table(g, cats, betweenness_sources, seed)
    layer_df = _layer_table(g, node_df)
    summary_df = pd.DataFrame({"value": pd.Series(_summary(g, node_df, clus, k), dtype=object)})
    cat_df, pair_df = _category_tables(g, cats) if cats else (None, None)
    return GraphMetrics(layers=layer_df, nodes=node_df, summary=summary_df, categories=cat_df,
                        category_pairs=pair_df)


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


def _layer_table(g, node_df):
    """One row per layer ``[n_layers rows]``: nodes, active nodes, edges to the next layer, their density and
    degree / strength statistics."""
    import pandas as pd

    layers = list(g.graph.get("layers") or sorted(node_df["layer"].unique()) if g.number_of_nodes() else [])
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

    _, _, e_by = _edge_arrays(g, cats)
    _, _, n_by = _node_arrays(g, cats)
    alpha = g.graph.get("enrichment", {}).get("alpha")
    crow = []
    for j, c in enumerate(cats):
        row = {"category": c, "docs": g.graph.get("category_sizes", {}).get(c),
               "active_nodes": int((n_by[:, j] > 0).sum()), "edges": int((e_by[:, j] > 0).sum()),
               "total_weight": int(e_by[:, j].sum())}
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
