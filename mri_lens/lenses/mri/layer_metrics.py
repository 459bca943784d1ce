"""LLM-MRI's graph metrics (its ``Metrics`` class) computed on mri_lens graphs: degree and strength moments of the
nodes that have an edge, per layer and for the whole graph, the weighted degree assortativity, the centres of mass
and of strength over the layer positions, and the metrics of the even- and odd-layer collaboration-weighted
projections. Works on any networkx graph with a node attribute ``layer``, ``g.graph["layers"]`` and an edge
attribute ``weight`` (co-activation graphs and component graphs alike); :func:`~.metrics.graph_metrics` assembles
the values into its tables. Graphs in, numbers and DataFrames out; depends on no other module of the lens."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__: list[str] = []  # private helpers of mri_lens.lenses.mri

_NAN = float("nan")
PROJECTION_COLUMNS = ("nodes", "edges", "degree_mean", "degree_var", "strength_mean", "strength_var",
                      "average_clustering", "assortativity", "density", "average_shortest_path")


def positive_edges(g):
    """``g`` without its edges of weight 0 (a read-only view; ``g`` itself when it has none). A component graph
    keeps an edge that passes the threshold for one category only, with weight 0 over all documents: not an edge of
    the reference's all-documents graph. A co-activation graph has none."""
    import networkx as nx

    if all(d.get("weight", 1) > 0 for *_, d in g.edges(data=True)):
        return g
    return nx.subgraph_view(g, filter_edge=lambda u, v: g.edges[u, v].get("weight", 1) > 0)


def _layer_list(g) -> list:
    """The mapped layers in order: ``g.graph["layers"]``, else the sorted layers of the nodes."""
    layers = g.graph.get("layers")
    if layers:
        return list(layers)
    return sorted({d["layer"] for _, d in g.nodes(data=True) if d.get("layer") is not None})


def _positions(g) -> dict:
    """Node -> position of its layer in :func:`_layer_list` (0 .. n_layers - 1); nodes of an unlisted layer are
    left out."""
    idx = {x: i for i, x in enumerate(_layer_list(g))}
    return {u: idx[d.get("layer")] for u, d in g.nodes(data=True) if d.get("layer") in idx}


def _linked(g) -> tuple[list, np.ndarray, np.ndarray]:
    """The nodes with at least one edge, in graph order, with their degree ``[k]`` and strength ``[k]`` (in + out
    on a directed graph, strength summed over ``weight``)."""
    deg = dict(g.degree())
    strength = dict(g.degree(weight="weight"))
    nodes = [u for u in g.nodes if deg[u] > 0]
    return (nodes, np.array([deg[u] for u in nodes], dtype=np.float64),
            np.array([strength[u] for u in nodes], dtype=np.float64))


def _moments(x: np.ndarray, prefix: str, *, shape: bool) -> dict[str, float]:
    """Mean and sample variance (ddof 1) of ``x`` ``[n]``; with ``shape`` also the bias-corrected skewness and
    excess kurtosis. pandas' conventions, as the reference: NaN where undefined (too few values, no spread)."""
    import pandas as pd

    s = pd.Series(np.asarray(x, dtype=np.float64))
    out = {f"{prefix}_mean": float(s.mean()), f"{prefix}_var": float(s.var())}
    if shape:
        out[f"{prefix}_skew"] = float(s.skew())
        out[f"{prefix}_kurtosis"] = float(s.kurt())
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of ``x`` and ``y`` ``[n]``; NaN when either has no spread or ``n == 0``."""
    if len(x) == 0:
        return _NAN
    xc, yc = x - x.mean(), y - y.mean()
    den = float(np.sqrt((xc @ xc) * (yc @ yc)))
    return float(xc @ yc) / den if den > 0 else _NAN


def _assortativity(g) -> float:
    """``networkx.degree_assortativity_coefficient(g, weight="weight")`` with networkx's defaults (on a directed
    graph: out-strength of the source against in-strength of the target), computed as what it equals: the Pearson
    correlation of those strengths over the edges (both ways round on an undirected graph, a self-loop once).
    NaN where it is undefined (no edge, every strength equal)."""
    edges = [(u, v) for u, v in g.edges]
    if g.is_directed():
        xs, ys = dict(g.out_degree(weight="weight")), dict(g.in_degree(weight="weight"))
    else:
        xs = ys = dict(g.degree(weight="weight"))
        edges += [(v, u) for u, v in edges if u != v]
    x = np.array([xs[u] for u, _ in edges], dtype=np.float64)
    y = np.array([ys[v] for _, v in edges], dtype=np.float64)
    return _pearson(x, y)


def layer_degree_stats(g, layers: list) -> dict[Any, dict[str, float]]:
    """Per layer: mean and sample variance (ddof 1) of the degree and the strength of its nodes that have an edge
    (the reference's graphs hold only those), NaN for a layer without (variance: with fewer than two)."""
    nodes, deg, strength = _linked(g)
    layer_of = np.array([g.nodes[u].get("layer") for u in nodes], dtype=object)
    out = {}
    for layer in layers:
        keep = layer_of == layer
        out[layer] = {**_moments(deg[keep], "degree", shape=False),
                      **_moments(strength[keep], "strength", shape=False)}
    return out


def _centres(g, nodes: list, strength: np.ndarray) -> tuple[float, float]:
    """``(centre of mass, centre of strength)`` of the nodes with an edge over the layer positions, centred on the
    middle position ``(n_layers - 1) / 2``. Mass: mean centred position of the nodes. Strength: sum over positions
    of the std (ddof 1) of the strengths there times the centred position, over positions with two or more nodes.
    NaN when no node has an edge."""
    pos = _positions(g)
    n_layers = len(_layer_list(g))
    mid = (n_layers - 1) / 2
    p = np.array([pos.get(u, -1) for u in nodes], dtype=np.int64)
    known = p >= 0
    if not known.any():
        return _NAN, _NAN
    p, s = p[known], strength[known]
    mass = float(np.mean(p - mid))
    centre = 0.0
    for i in np.unique(p):
        si = s[p == i]
        if len(si) >= 2:
            centre += float(np.std(si, ddof=1)) * (i - mid)
    return mass, float(centre)


def llm_mri_summary(g) -> dict[str, Any]:
    """Graph-level values after the reference's ``get_basic_metrics``, over the nodes that have an edge: degree
    and strength mean / variance / skewness / excess kurtosis, weighted degree assortativity, the density of the
    graph of those nodes, centre of mass and centre of strength (:func:`_centres`)."""
    import networkx as nx

    nodes, deg, strength = _linked(g)
    out: dict[str, Any] = {**_moments(deg, "degree", shape=True), **_moments(strength, "strength", shape=True)}
    out["assortativity_weighted"] = _assortativity(g)
    out["density_non_isolated"] = float(nx.density(g.subgraph(nodes))) if nodes else _NAN
    out["center_of_mass"], out["center_of_strength"] = _centres(g, nodes, strength)
    return out


def _undirected_adjacency(g) -> tuple[list, Any]:
    """``(the nodes with an edge [n] in graph order, their 0/1 adjacency [n, n])``: the structure of
    ``g.to_undirected()`` restricted to those nodes, as a symmetric scipy sparse CSR array (a self-loop one entry)."""
    from scipy import sparse

    nodes = [u for u in g.nodes if g.degree(u) > 0]
    idx = {u: i for i, u in enumerate(nodes)}
    ij = np.array([(idx[u], idx[v]) for u, v in g.edges], dtype=np.int64).reshape(-1, 2)
    rows, cols = np.concatenate([ij[:, 0], ij[:, 1]]), np.concatenate([ij[:, 1], ij[:, 0]])
    a = sparse.coo_array((np.ones(len(rows)), (rows, cols)), shape=(len(nodes), len(nodes))).tocsr()
    a.data[:] = 1.0  # duplicates (both directions of a pair, a self-loop twice) summed: back to 0/1
    return nodes, a


def _collaboration_projection(a, side: np.ndarray):
    """networkx's ``bipartite.collaboration_weighted_projected_graph(B, nodes)`` as a weighted adjacency.

    ``a`` ``[n, n]``: 0/1 adjacency of ``B``; ``side`` ``[s]``: indices of ``nodes``. Node ``u`` of the side is
    joined to every ``v != u`` two steps away, with weight sum over their shared neighbours ``m`` of
    ``1 / (deg(m) - 1)`` (``deg(m) > 1``; a shared neighbour always has two). Those ``v`` off the side (only when
    ``B`` is not bipartite between the sides) become nodes too, as in networkx. Returns the symmetric weighted
    adjacency ``[t, t]`` (scipy sparse CSR, no diagonal) over the side then those extra nodes.
    """
    from scipy import sparse

    deg = np.diff(a.indptr).astype(np.float64)
    inv = np.divide(1.0, deg - 1.0, out=np.zeros_like(deg), where=deg > 1)
    m = (a[side] @ sparse.diags_array(inv) @ a).tocoo()  # [s, n]
    keep = (m.col != side[m.row]) & (m.data > 0)  # u is not joined to itself
    r, c, x = m.row[keep], m.col[keep], m.data[keep]
    reached = np.zeros(a.shape[0], dtype=bool)
    reached[c] = True
    reached[side] = False
    order = np.concatenate([side, np.flatnonzero(reached)]).astype(np.int64)
    new = np.empty(a.shape[0], dtype=np.int64)
    new[order] = np.arange(len(order))
    c = new[c]
    off = c >= len(side)  # edges to the extra nodes, mirrored (edges within the side are already both ways)
    rows, cols = np.concatenate([r, c[off]]), np.concatenate([c, r[off]])
    return sparse.coo_array((np.concatenate([x, x[off]]), (rows, cols)), shape=(len(order), len(order))).tocsr()


def _average_clustering(w) -> float:
    """``networkx.average_clustering(p, weight="weight")`` from the weighted adjacency ``w`` ``[n, n]`` (scipy sparse,
    symmetric, no self-loop): the geometric-mean (Onnela) clustering ``c_u = (W^3)_uu / (k_u (k_u - 1))`` with
    ``W = cbrt(w / max(w))`` and ``k_u`` the number of neighbours, averaged over every node; NaN without nodes."""
    n = w.shape[0]
    if n == 0:
        return _NAN
    if w.nnz == 0:
        return 0.0
    cw = w.copy()
    cw.data = np.cbrt(cw.data / cw.data.max())
    tri = np.asarray((cw @ cw).multiply(cw).sum(axis=1)).ravel()
    k = np.diff(w.indptr).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(tri > 0, tri / (k * (k - 1)), 0.0)
    return float(c.mean())


# Rows of the distance matrix computed at once by the shortest-path average (bounds its memory).
_PATH_CHUNK = 256


def _average_shortest_path(w) -> float:
    """``networkx.average_shortest_path_length(p, weight="weight")`` (weights as distances) from the weighted
    adjacency ``w`` ``[n, n]`` (scipy sparse, weights > 0): Dijkstra from every node, the sum of the distances over
    ``n (n - 1)``; 0 for one node, NaN when empty or not connected."""
    from scipy.sparse import csgraph

    n = w.shape[0]
    if n == 0 or csgraph.connected_components(w, directed=False)[0] > 1:
        return _NAN
    if n == 1:
        return 0.0
    total = 0.0
    for lo in range(0, n, _PATH_CHUNK):
        total += float(csgraph.dijkstra(w, directed=False, indices=np.arange(lo, min(n, lo + _PATH_CHUNK))).sum())
    return total / (n * (n - 1))


def _projection_row(w) -> dict[str, float]:
    """The reference's projection metrics from a projection's weighted adjacency ``w`` ``[t, t]`` (symmetric, no
    diagonal, weights > 0): networkx's degree, strength (``weight``), ``average_clustering(weight="weight")``,
    ``degree_assortativity_coefficient(weight="weight")``, ``density`` and ``average_shortest_path_length(
    weight="weight")`` (NaN when not connected), computed on the matrix (networkx loops in Python over every pair
    of neighbours, seconds to minutes on dense projections)."""
    n = w.shape[0]
    deg = np.diff(w.indptr).astype(np.float64)
    strength = np.asarray(w.sum(axis=1), dtype=np.float64).ravel()
    edges = int(w.nnz // 2)
    rows, cols = w.nonzero()  # every edge both ways round, as networkx's undirected assortativity counts them
    return {"nodes": n, "edges": edges, **_moments(deg, "degree", shape=False),
            **_moments(strength, "strength", shape=False), "average_clustering": _average_clustering(w),
            "assortativity": _pearson(strength[rows], strength[cols]),
            "density": 2.0 * edges / (n * (n - 1)) if n > 1 else (0.0 if n else _NAN),
            "average_shortest_path": _average_shortest_path(w)}


def projections(g):
    """The even- and odd-layer projections' metrics, one row each (index ``"even"``, ``"odd"``; columns
    :data:`PROJECTION_COLUMNS`).

    The projections are taken on the undirected graph of the nodes that have an edge (the reference calls them on
    its directed graph, where ``is_connected`` fails): ``networkx.algorithms.bipartite.
    collaboration_weighted_projected_graph`` onto the nodes of even (odd) layer positions, positions being indices
    in ``g.graph["layers"]``. Two nodes are joined when they share neighbours, with weight sum over the shared
    neighbours ``n`` of ``1 / (deg(n) - 1)``; the original edge weights play no part.
    """
    import pandas as pd

    pos = _positions(g)
    nodes, a = _undirected_adjacency(g)
    p = np.array([pos.get(u, -1) for u in nodes], dtype=np.int64)
    rows = {side: _projection_row(_collaboration_projection(a, np.flatnonzero((p >= 0) & (p % 2 == parity))))
            for side, parity in (("even", 0), ("odd", 1))}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(PROJECTION_COLUMNS))
