"""Enrichment of a co-activation graph's nodes and edges in each category: one-vs-rest one-sided Fisher exact tests
(the hypergeometric upper tail, vectorised), Benjamini-Hochberg q-values per category over the graph's nodes and,
separately, its edges, and the ``enriched_for`` category (the graph figure colours by it). Reads and writes only
the graph's attributes."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import GraphError
from ._graph_base import _check_params, _count_arrays, _graph_categories
from ._stats import _bh, _upper_tail

__all__ = ["enrich"]

ENRICHMENT_TEST = ("one-sided Fisher exact test (alternative='greater', i.e. the hypergeometric upper tail): "
                   "table [[k, n_c - k], [K - k, N - n_c - K + k]] with k = documents of the category activating "
                   "the node (both ends of the edge), n_c = documents of the category, K = all documents activating "
                   "it, N = all documents; Benjamini-Hochberg over the nodes, and separately over the edges, of "
                   "this graph, per category")


def _enrichment(total: np.ndarray, by_cat: np.ndarray, sizes: np.ndarray, n_docs: int) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """p and BH q of each row for each category, one-vs-rest: arrays of shape [n_rows, n_categories]."""
    p = np.ones(by_cat.shape, dtype=np.float64)
    q = np.ones(by_cat.shape, dtype=np.float64)
    for j in range(by_cat.shape[1]):
        p[:, j] = _upper_tail(by_cat[:, j], n_docs, int(sizes[j]), total)
        q[:, j] = _bh(p[:, j])
    return p, q


def _best_category(p: np.ndarray, q: np.ndarray, alpha: float) -> np.ndarray:
    """Index of the category with the smallest q (then p, then category order) below alpha, or -1."""
    if q.shape[0] == 0 or q.shape[1] == 0:
        return np.full(q.shape[0], -1, dtype=np.int64)
    qm = np.where(q < alpha, q, np.inf)
    pm = np.where(q < alpha, p, np.inf)
    # Ties in q (frequent after BH) are broken by p; argmin then takes the first category.
    best = np.argmin(qm + 0.0, axis=1)
    tie = qm == qm[np.arange(len(qm)), best][:, None]
    pm = np.where(tie, pm, np.inf)
    best = np.argmin(pm, axis=1)
    best[~np.isfinite(qm).any(1)] = -1
    return best


def enrich(g, *, alpha: float = 0.05, categories: Sequence[str] | str | None = None):
    """Test every node and edge of ``g`` for enrichment in each category, one category against all other documents.

    For a node and category ``c``: ``k`` = documents of ``c`` activating the region, ``n_c`` = documents of ``c``,
    ``K`` = documents activating the region, ``N`` = all documents; for an edge the same with "activating both
    ends" (``weight_c`` and ``weight``). The test is Fisher's exact test, one-sided ``alternative='greater'``, on the
    table ``[[k, n_c - k], [K - k, N - n_c - K + k]]`` (rows: in ``c`` / not; columns: activating / not), computed
    vectorised as the hypergeometric upper tail ``hypergeom.sf(k - 1, N, n_c, K)``. Benjamini-Hochberg q-values
    (``scipy.stats.false_discovery_control``) are taken per category over all nodes of ``g``, and separately over
    all edges of ``g``: trimming by total weight before testing does not look at the categories, so it only
    shrinks the family.

    Writes ``p_<cat>``, ``q_<cat>`` and ``enriched_for`` (the category with the smallest q below ``alpha``, or None)
    on every node and edge, and ``g.graph["enrichment"]``. Needs only the counts stored in ``g``.

    Parameters
    ----------
    g : networkx.DiGraph
        A graph from :func:`coactivation_graph`.
    alpha : float
        FDR level for ``enriched_for``.
    categories : list of str, str or None
        Categories to test; None: all of the graph's categories.

    Returns
    -------
    networkx.DiGraph
        ``g`` itself (modified in place).
    """
    _check_params(0, None, None, alpha)
    cats = _graph_categories(g, categories)
    if not cats:
        raise GraphError("enrichment needs categories; the graph was built without labels")
    sizes = np.array([g.graph["category_sizes"][c] for c in cats], dtype=np.int64)
    n_docs = int(g.graph["n_docs"])
    for dicts, prefix in (([d for _, d in g.nodes(data=True)], "docs"), ([d for *_, d in g.edges(data=True)],
                                                                          "weight")):
        total, by = _count_arrays(dicts, prefix, [f"{prefix}_{c}" for c in cats])
        p, q = _enrichment(total, by, sizes, n_docs)
        best = _best_category(p, q, alpha)
        names = [cats[b] if b >= 0 else None for b in best.tolist()]
        cols = []
        for j, c in enumerate(cats):
            cols += [(f"p_{c}", p[:, j].tolist()), (f"q_{c}", q[:, j].tolist())]
        for key, values in cols + [("enriched_for", names)]:
            for d, v in zip(dicts, values):
                d[key] = v
    g.graph["enrichment"] = {"test": ENRICHMENT_TEST, "alpha": float(alpha), "categories": list(cats)}
    return g


# --------------------------------------------------------------------------------------------------- stored values


def _stored_pq(items_attrs, cats):
    """Stored p/q of each row for these categories, or None if any is missing."""
    if not items_attrs or not all(f"q_{c}" in items_attrs[0] for c in cats):
        return None
    p = np.array([[d[f"p_{c}"] for c in cats] for d in items_attrs], dtype=np.float64)
    q = np.array([[d[f"q_{c}"] for c in cats] for d in items_attrs], dtype=np.float64)
    return p, q
