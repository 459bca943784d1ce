"""Co-activation graph of MRI regions across consecutive layers, its figure, metrics and category statistics.

Nodes are ``(layer, region)`` tuples of Python ints (model layer number, region id ``row * grid + col``); an edge
goes from a region of one mapped layer to a region of the next mapped layer, weighted by the number of documents
that activate both. Counts are kept per category as separate attributes, so any number of categories coexist and
nothing is overwritten:

============================  =======================================================================
node attribute                meaning
============================  =======================================================================
``layer, region, row, col``   where the region is (ints)
``neurons``                   neuron ids in the region (list of ints; empty in documents mode)
``docs``                      documents activating the region
``docs_<cat>``                documents of category ``<cat>`` activating the region
``p_<cat>``, ``q_<cat>``      enrichment p-value / BH q-value (only after :func:`enrich`)
``enriched_for``              category with the smallest q below ``alpha``, else None (after :func:`enrich`)
============================  =======================================================================

Edges carry ``weight`` (documents activating both ends), ``weight_<cat>`` and, after :func:`enrich`, the same
``p_<cat>`` / ``q_<cat>`` / ``enriched_for``. Graph metadata (layers, grid, categories, category sizes, number of
documents, mode, parameters) lives in ``g.graph``.

>>> g = ml.coactivation_graph(maps, min_weight=5)                  # doctest: +SKIP
>>> ml.graph_figure(g, highlight=["positive", "negative"])          # doctest: +SKIP
>>> ml.graph_metrics(g).layers                                      # doctest: +SKIP
>>> ml.compare_categories(maps, g, "positive", "negative").edges    # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ._io import marker, read_json, save_text
from .errors import MriLensError, ScanFileError

__all__ = [
    "GraphError", "CoactivationCounts", "coactivation_counts", "coactivation_graph", "enrich", "graph_figure",
    "GraphMetrics", "graph_metrics", "CategoryComparison", "compare_categories", "write_graph", "load_graph_json",
]

GRAPH_KIND = "mri_lens.coactivation_graph"
SCHEMA_VERSION = 1
ENRICHMENT_TEST = ("one-sided Fisher exact test (alternative='greater', i.e. the hypergeometric upper tail): "
                   "table [[k, n_c - k], [K - k, N - n_c - K + k]] with k = documents of the category activating "
                   "the node (both ends of the edge), n_c = documents of the category, K = all documents activating "
                   "it, N = all documents; Benjamini-Hochberg over the nodes, and separately over the edges, of "
                   "this graph, per category")

# Category colours avoid purple and grey, which mean "shared" and "no highlighted category".
# The first two match the log-odds panels of the region maps (red: first category, blue: second).
_PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
            "#393b79", "#637939"]
_SHARED = "#b8a2cc"
_NONE = "#bdbdbd"


class GraphError(MriLensError, ValueError):
    """The co-activation graph cannot be built or analysed with these inputs (bad parameter, unknown category...)."""


# --------------------------------------------------------------------------------------------------- counting


@dataclass
class CoactivationCounts:
    """Vectorised co-activation counts of a fitted region map (what the graph is built from).

    Attributes
    ----------
    layers : list of int
        Model layer numbers, ascending; transition ``t`` goes from ``layers[t]`` to ``layers[t + 1]``.
    grid : int
        Grid side ``n``; regions are ``0 .. n * n - 1``.
    n_docs : int
    categories : list of str
        Categories counted separately (may be empty).
    category_sizes : ndarray of shape [n_categories]
        Documents per category.
    node_docs : ndarray of shape [n_layers, n_regions]
        Documents activating each region.
    node_by_category : ndarray of shape [n_layers, n_regions, n_categories]
    edge_transition, edge_source, edge_target : ndarray of shape [n_edges]
        Every region pair co-activated by at least one document, sorted by (transition, source, target).
    edge_weight : ndarray of shape [n_edges]
        Documents activating both ends.
    edge_by_category : ndarray of shape [n_edges, n_categories]
    """

    layers: list
    grid: int
    n_docs: int
    categories: list
    category_sizes: np.ndarray
    node_docs: np.ndarray
    node_by_category: np.ndarray
    edge_transition: np.ndarray
    edge_source: np.ndarray
    edge_target: np.ndarray
    edge_weight: np.ndarray
    edge_by_category: np.ndarray

    @property
    def n_regions(self) -> int:
        return self.grid * self.grid


def _category_blocks(maps, categories) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Chosen category names, each document's block (category index, or ``len(names)`` for the rest) and sizes."""
    n_docs = int(maps.n_docs)
    labels = getattr(maps, "labels", None)
    if isinstance(categories, str):
        categories = [categories]
    if labels is None:
        if categories:
            raise GraphError(f"categories {list(categories)} were requested but the maps have no labels "
                             "(fit the region maps on a labelled corpus)")
        return [], np.zeros(n_docs, dtype=np.int64), np.zeros(0, dtype=np.int64)
    labels = np.asarray(labels)
    if labels.shape != (n_docs,):
        raise GraphError(f"maps.labels has shape {labels.shape}; expected [n_docs] = ({n_docs},)")
    names = getattr(maps, "label_names", None)
    if names is None:  # codes only: name them by their code
        names = [str(c) for c in range(int(labels.max()) + 1)] if labels.size else []
    names = [str(n) for n in names]
    chosen = list(names) if categories is None else [str(c) for c in categories]
    if len(set(chosen)) != len(chosen):
        raise GraphError(f"categories {chosen} contain duplicates")
    for c in chosen:
        if c not in names:
            raise GraphError(f"unknown category {c!r}; the maps have {names}")
    block = np.full(n_docs, len(chosen), dtype=np.int64)
    for k, c in enumerate(chosen):
        block[labels == names.index(c)] = k
    sizes = np.bincount(block, minlength=len(chosen) + 1)[:len(chosen)].astype(np.int64)
    return chosen, block, sizes


# Dense BLAS products beat sparse ones when documents activate many regions: a transition costs
# 2 * n_docs * R^2 flops dense against about n_docs * (density_l * R) * (density_l+1 * R) sparse multiply-adds,
# each some hundreds of times slower than a flop. Dense is used when density_l * density_l+1 >= this value.
_DENSE_MIN_DENSITY_PRODUCT = 0.004


class _LayerActs:
    """One layer's activation matrix [n_docs, n_regions], shape-checked, converted on demand."""

    def __init__(self, maps, layer: int, n_docs: int, n_regions: int, perm: np.ndarray):
        import scipy.sparse as sp

        a = maps.activated(layer)
        shape = tuple(a.shape)
        if shape != (n_docs, n_regions):
            raise GraphError(f"maps.activated({layer}) has shape {shape}; expected [n_docs, n_regions] = "
                             f"({n_docs}, {n_regions})")
        if sp.issparse(a):
            a = sp.csr_matrix(a, dtype=bool)
            a.eliminate_zeros()
            self.nnz = int(a.nnz)
        else:
            a = np.asarray(a, dtype=bool)
            self.nnz = int(np.count_nonzero(a))
        self.raw, self.perm, self.shape = a, perm, shape
        self.density = self.nnz / max(n_docs * n_regions, 1)
        self._sorted = self._csr = None

    def sorted_dense(self) -> np.ndarray:
        """bool [n_docs, n_regions], documents grouped by category block."""
        if self._sorted is None:
            a = self.raw if isinstance(self.raw, np.ndarray) else self.raw.toarray()
            self._sorted = a[self.perm]
        return self._sorted

    def csr(self):
        """int64 CSR [n_docs, n_regions], documents in their own order."""
        import scipy.sparse as sp

        if self._csr is None:
            a = self.raw if not isinstance(self.raw, np.ndarray) else sp.csr_matrix(self.raw)
            self._csr = sp.csr_matrix((np.ones(a.nnz, dtype=np.int64), a.indices, a.indptr), shape=self.shape)
        return self._csr


def _activated_csr(maps, layer: int, n_docs: int, n_regions: int):
    """``maps.activated(layer)`` as an int64 CSR matrix of shape [n_docs, n_regions], shape-checked."""
    return _LayerActs(maps, layer, n_docs, n_regions, np.arange(n_docs)).csr()


def _single_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own thread count
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _pair_dense(left: np.ndarray, right: np.ndarray, bounds: np.ndarray, n_regions: int):
    """Co-activation counts of one transition per block, by float32 BLAS products of document chunks.

    ``left``/``right`` are bool [n_docs, n_regions] in block order. Chunks of at most 2^24 documents keep every
    float32 sum an exact integer. Returns (pair keys ``source * R + target`` [n_pairs], counts [n_pairs, n_blocks]).
    """
    n_blocks = len(bounds) - 1
    out = np.zeros((n_blocks, n_regions, n_regions), dtype=np.int64)
    chunk = max(1, min(1 << 16, (1 << 24) // max(n_regions, 1)))  # also bounds the float32 copies' memory
    # The products are small ([R, docs] @ [docs, R]): BLAS threads gain little there and spin badly when the CPU
    # is shared (measured 30x slower on a busy 2-core machine), so BLAS gets one thread for them.
    with _single_blas_thread():
        for k in range(n_blocks):
            for s in range(int(bounds[k]), int(bounds[k + 1]), chunk):
                e = min(s + chunk, int(bounds[k + 1]))
                x = left[s:e].astype(np.float32)
                y = right[s:e].astype(np.float32)
                out[k] += (x.T @ y).astype(np.int64)
    flat = out.reshape(n_blocks, -1)
    keys = np.flatnonzero(flat.sum(0))
    return keys, flat[:, keys].T


def _pair_sparse(left, right, block: np.ndarray, n_blocks: int, n_regions: int):
    """The same with one sparse product: ``right``'s columns shifted into each document's block."""
    import scipy.sparse as sp

    n_docs = right.shape[0]
    rows = np.repeat(np.arange(n_docs), np.diff(right.indptr))
    shifted = sp.csr_matrix((right.data, block[rows] * n_regions + right.indices, right.indptr),
                            shape=(n_docs, n_blocks * n_regions))
    c = (left.T.tocsr() @ shifted).tocoo()
    k, tgt = np.divmod(c.col.astype(np.int64), n_regions)
    key = c.row.astype(np.int64) * n_regions + tgt
    uniq, inv = np.unique(key, return_inverse=True)  # sorted: pairs in (source, target) order
    counts = np.bincount(inv * n_blocks + k, weights=c.data, minlength=len(uniq) * n_blocks)
    counts = np.rint(counts).astype(np.int64).reshape(len(uniq), n_blocks)
    keep = counts.sum(1) > 0
    return uniq[keep], counts[keep]


def coactivation_counts(maps, categories: Sequence[str] | str | None = None) -> CoactivationCounts:
    """Count, per category, the documents activating each region and each region pair of consecutive layers.

    Vectorised per layer transition, never per document. When documents activate many regions: documents are
    grouped by category and each group's ``A_l.T @ A_{l+1}`` ([n_regions, n_regions], ``A`` the [n_docs,
    n_regions] activation matrices) is one dense BLAS product. When activations are sparse (documents mode, low
    density): one ``scipy.sparse`` product ``A_l.T @ B`` where ``B`` is ``A_{l+1}`` with each document's columns
    shifted into its category's block (``B[d, k * n_regions + s] = A_{l+1}[d, s]`` for a document ``d`` of category
    ``k``), so all categories cost one product. Documents of no chosen category form one more block, so the
    all-documents counts are the sum over blocks.

    Parameters
    ----------
    maps : fitted region maps
        Needs ``layers``, ``grid``, ``n_regions``, ``n_docs``, ``labels``, ``label_names`` and ``activated(layer)``
        returning a bool array (or scipy sparse matrix) of shape [n_docs, n_regions].
    categories : list of str, str or None
        Category names to count separately; None: every label name when the maps are labelled, else none.

    Returns
    -------
    CoactivationCounts
    """
    import scipy.sparse as sp

    layers = [int(x) for x in maps.layers]
    if not layers:
        raise GraphError("the maps have no layers")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise GraphError(f"maps.layers must be strictly ascending, got {layers}")
    grid = int(maps.grid)
    n_regions = int(maps.n_regions)
    if grid < 1 or n_regions != grid * grid:
        raise GraphError(f"maps.n_regions ({n_regions}) must equal grid * grid ({grid} * {grid})")
    n_docs = int(maps.n_docs)
    if n_docs < 1:
        raise GraphError("the maps have no documents")
    cats, block, sizes = _category_blocks(maps, categories)
    n_blocks = len(cats) + 1
    perm = np.argsort(block, kind="stable")
    bounds = np.searchsorted(block[perm], np.arange(n_blocks + 1))
    onehot = sp.csr_matrix((np.ones(n_docs, dtype=np.int64), (block, np.arange(n_docs))), shape=(n_blocks, n_docs))

    node_docs = np.zeros((len(layers), n_regions), dtype=np.int64)
    node_cat = np.zeros((len(layers), n_regions, len(cats)), dtype=np.int64)
    e_t, e_s, e_d, e_w, e_c = [], [], [], [], []
    prev = None
    for li, layer in enumerate(layers):
        cur = _LayerActs(maps, layer, n_docs, n_regions, perm)
        if isinstance(cur.raw, np.ndarray):
            srt = cur.sorted_dense()
            per_block = np.stack([np.count_nonzero(srt[bounds[k]:bounds[k + 1]], axis=0)
                                  for k in range(n_blocks)])
        else:
            per_block = np.asarray((onehot @ cur.csr()).todense())  # [n_blocks, n_regions]
        node_docs[li] = per_block.sum(0)
        node_cat[li] = per_block[:-1].T
        if prev is not None:
            if prev.density * cur.density >= _DENSE_MIN_DENSITY_PRODUCT:
                keys, counts = _pair_dense(prev.sorted_dense(), cur.sorted_dense(), bounds, n_regions)
            else:
                keys, counts = _pair_sparse(prev.csr(), cur.csr(), block, n_blocks, n_regions)
            src, dst = np.divmod(keys, n_regions)
            e_t.append(np.full(len(src), li - 1, dtype=np.int64))
            e_s.append(src)
            e_d.append(dst)
            e_w.append(counts.sum(1))
            e_c.append(counts[:, :-1])
        prev = cur
    cat0 = np.zeros((0, len(cats)), dtype=np.int64)
    i0 = np.zeros(0, dtype=np.int64)
    return CoactivationCounts(
        layers=layers, grid=grid, n_docs=n_docs, categories=cats, category_sizes=sizes,
        node_docs=node_docs, node_by_category=node_cat,
        edge_transition=np.concatenate(e_t) if e_t else i0, edge_source=np.concatenate(e_s) if e_s else i0,
        edge_target=np.concatenate(e_d) if e_d else i0, edge_weight=np.concatenate(e_w) if e_w else i0,
        edge_by_category=np.concatenate(e_c) if e_c else cat0)


# --------------------------------------------------------------------------------------------------- trimming


def _ranks_within(group: np.ndarray, weight: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Rank of each edge among the edges of its group, heaviest first, ties by the other end's id."""
    n = len(group)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((other, -weight, group))
    g = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    sizes = np.diff(np.r_[starts, n])
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - np.repeat(starts, sizes)
    return ranks


def _trim_mask(counts: CoactivationCounts, min_weight, top_k, percentile) -> np.ndarray:
    """Edges kept: each criterion is evaluated on the untrimmed edges and an edge must pass all of them."""
    w = counts.edge_weight
    keep = w >= max(min_weight, 1)
    if percentile is not None:
        for t in np.unique(counts.edge_transition):
            sel = counts.edge_transition == t
            keep[sel] &= w[sel] >= np.percentile(w[sel], percentile)
    if top_k is not None:
        r = counts.n_regions
        src_node = counts.edge_transition * r + counts.edge_source
        dst_node = counts.edge_transition * r + counts.edge_target
        out_rank = _ranks_within(src_node, w, counts.edge_target)
        in_rank = _ranks_within(dst_node, w, counts.edge_source)
        keep &= (out_rank < top_k) | (in_rank < top_k)
    return keep


def _check_params(min_weight, top_k, percentile, alpha) -> None:
    if isinstance(min_weight, bool) or not isinstance(min_weight, (int, float, np.integer, np.floating)) \
            or not math.isfinite(min_weight) or min_weight < 0:
        raise GraphError(f"min_weight must be a number >= 0, got {min_weight!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise GraphError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    if percentile is not None and (not isinstance(percentile, (int, float, np.integer, np.floating))
                                   or not 0 <= percentile <= 100):
        raise GraphError(f"percentile must be a number in [0, 100] or None, got {percentile!r}")
    if not isinstance(alpha, (int, float, np.floating)) or not 0 < alpha < 1:
        raise GraphError(f"alpha must be in (0, 1), got {alpha!r}")


# --------------------------------------------------------------------------------------------------- graph


def coactivation_graph(maps, *, min_weight: float = 1, top_k: int | None = None, percentile: float | None = None,
                       categories: Sequence[str] | str | None = None, enrichment: bool = False,
                       alpha: float = 0.05):
    """Build the co-activation graph of a fitted region map (see the module docstring for its attributes).

    Every region of every mapped layer is a node, activated or not, added in (layer, region) order; edges are
    added sorted by (source, target).

    Parameters
    ----------
    maps : fitted region maps
        See :func:`coactivation_counts`; ``region_neurons(layer, region)`` gives the ``neurons`` attribute.
    min_weight : number >= 0
        Keep edges with at least this many co-activating documents (edges of weight 0 never exist).
    top_k : int or None
        Keep an edge only if it is among the ``top_k`` heaviest out-edges of its source or among the ``top_k``
        heaviest in-edges of its target (ties broken by the other end's region id).
    percentile : float in [0, 100] or None
        Keep an edge only if its weight is at least this percentile (``numpy.percentile``, linear) of the
        untrimmed edge weights of its layer transition (per transition, so sparser layers are not emptied).
    categories : list of str, str or None
        Categories counted separately; None: all of the maps' label names (none if unlabelled).
    enrichment : bool
        Run :func:`enrich` on the trimmed graph.
    alpha : float
        FDR level for ``enriched_for`` when ``enrichment`` is set.

    The three trimming criteria are each evaluated on the untrimmed edges; an edge is kept when it passes all of
    those given.

    Returns
    -------
    networkx.DiGraph
    """
    import networkx as nx

    _check_params(min_weight, top_k, percentile, alpha)
    # Plain Python numbers in g.graph, so every export format can write them.
    min_weight, top_k, percentile, alpha = (v.item() if isinstance(v, np.generic) else v
                                            for v in (min_weight, top_k, percentile, alpha))
    counts = coactivation_counts(maps, categories)
    keep = _trim_mask(counts, min_weight, top_k, percentile)
    cats = counts.categories
    layers = counts.layers
    g = nx.DiGraph()
    from . import __version__

    g.graph.update({
        "kind": GRAPH_KIND, "schema_version": SCHEMA_VERSION, "mri_lens_version": __version__,
        "layers": list(layers), "grid": counts.grid, "n_regions": counts.n_regions, "n_docs": counts.n_docs,
        "mode": str(getattr(maps, "mode", "")), "categories": list(cats),
        "category_sizes": {c: int(n) for c, n in zip(cats, counts.category_sizes)},
        "params": {"min_weight": min_weight, "top_k": top_k, "percentile": percentile,
                   "categories": None if categories is None else list(cats)},
        "n_edges_untrimmed": int(len(counts.edge_weight)),
    })
    n_regions = counts.n_regions
    # One tuple object per node, reused by its edges (saves creating and hashing ~2 tuples per edge).
    ids = [(layer, r) for layer in layers for r in range(n_regions)]
    node_keys = ["docs"] + [f"docs_{c}" for c in cats]
    for li, layer in enumerate(layers):
        vals = np.column_stack([counts.node_docs[li], counts.node_by_category[li]]).tolist()
        for r in range(n_regions):
            row, col = divmod(r, counts.grid)
            neurons = [int(x) for x in np.asarray(maps.region_neurons(layer, r)).ravel()]
            attrs = {"layer": layer, "region": r, "row": row, "col": col, "neurons": neurons}
            attrs.update(zip(node_keys, vals[r]))
            g.add_node(ids[li * n_regions + r], **attrs)
    edge_keys = ["weight"] + [f"weight_{c}" for c in cats]
    t = counts.edge_transition[keep]
    src = (t * n_regions + counts.edge_source[keep]).tolist()
    dst = ((t + 1) * n_regions + counts.edge_target[keep]).tolist()
    cols = [counts.edge_weight[keep].tolist()] + [c.tolist() for c in counts.edge_by_category[keep].T]
    # Edges are unique and both ends exist, which is all add_edges_from would check: filling networkx's adjacency
    # dicts directly (one shared attribute dict per edge, as networkx itself stores it) measured 4x faster than
    # add_edges_from at 110k edges, where building the graph costs more than counting the co-activations.
    succ, pred = g._succ, g._pred
    for i, j, v in zip(src, dst, zip(*cols)):
        u, w = ids[i], ids[j]
        d = dict(zip(edge_keys, v))
        succ[u][w] = d
        pred[w][u] = d
    if enrichment:
        enrich(g, alpha=alpha)
    return g


# --------------------------------------------------------------------------------------------------- enrichment


def _bh(p: np.ndarray) -> np.ndarray:
    from scipy import stats

    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    return stats.false_discovery_control(p, method="bh")


def _log_choose(a, b):
    from scipy.special import gammaln

    return gammaln(a + 1.0) - gammaln(b + 1.0) - gammaln(a - b + 1.0)


def _hypergeom_pmf(m: int, n: int, t: int) -> tuple[int, np.ndarray]:
    """Support start and pmf [support] of the number of category documents among ``t`` drawn from ``m`` documents
    of which ``n`` are of the category. Log-gamma based: scipy's ``hypergeom.pmf``/``sf`` are exact but take
    milliseconds per value at corpus sizes (its ``sf`` loops in Python over the values)."""
    lo, hi = max(0, t - (m - n)), min(n, t)
    x = np.arange(lo, hi + 1, dtype=np.float64)
    logp = _log_choose(n, x) + _log_choose(m - n, t - x) - _log_choose(m, t)
    return lo, np.exp(logp)


def _upper_tail(k: np.ndarray, n_total: int, n_cat: int, k_total: np.ndarray) -> np.ndarray:
    """One-sided Fisher exact p-values (alternative='greater'): P(X >= k), X ~ Hypergeom(n_total, n_cat, k_total).

    The pmf is computed once per distinct ``k_total`` (the category size and corpus size are shared by all rows).
    """
    k = np.asarray(k, dtype=np.int64)
    k_total = np.asarray(k_total, dtype=np.int64)
    p = np.ones(len(k), dtype=np.float64)
    for t in np.unique(k_total):
        idx = np.flatnonzero(k_total == t)
        lo, pmf = _hypergeom_pmf(n_total, n_cat, int(t))
        tail = np.cumsum(pmf[::-1])[::-1]  # tail[i] = P(X >= lo + i), summed from the small end
        i = k[idx] - lo
        p[idx] = np.where(i <= 0, 1.0, tail[np.clip(i, 0, len(tail) - 1)])
    return np.clip(p, 0.0, 1.0)


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


def _graph_categories(g, names: Sequence[str] | str | None) -> list[str]:
    cats = list(g.graph.get("categories", []))
    if names is None:
        return cats
    if isinstance(names, str):
        names = [names]
    for c in names:
        if c not in cats:
            raise GraphError(f"unknown category {c!r}; the graph has {cats}")
    return list(names)


def _count_arrays(dicts: list, total_key: str, keys: list) -> tuple[np.ndarray, np.ndarray]:
    total = np.array([d.get(total_key, 0) for d in dicts], dtype=np.int64)
    by = np.array([[d.get(k, 0) for k in keys] for d in dicts], dtype=np.int64).reshape(len(dicts), len(keys))
    return total, by


def _node_arrays(g, cats: Sequence[str]) -> tuple[list, np.ndarray, np.ndarray]:
    nodes = list(g.nodes)
    total, by = _count_arrays([g.nodes[n] for n in nodes], "docs", [f"docs_{c}" for c in cats])
    return nodes, total, by


def _edge_arrays(g, cats: Sequence[str]) -> tuple[list, np.ndarray, np.ndarray]:
    edges = list(g.edges(data=True))
    total, by = _count_arrays([d for *_, d in edges], "weight", [f"weight_{c}" for c in cats])
    return [(u, v) for u, v, _ in edges], total, by


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


# --------------------------------------------------------------------------------------------------- export


def _node_link_kwargs(fn) -> dict:
    # networkx >= 3.4 names the edge list with ``edges=``; older releases with ``link=``.
    return {"edges": "edges"} if "edges" in inspect.signature(fn).parameters else {"link": "edges"}


def _scalar(v: Any) -> Any:
    """A value GraphML/GEXF can hold: lists/dicts as JSON strings, None as '', numpy scalars as Python ones."""
    if v is None:
        return ""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple, dict, np.ndarray)):
        return json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
    return v


def _flat_copy(g, gexf: bool):
    import networkx as nx

    def nid(n):
        return f"L{n[0]}_R{n[1]}" if isinstance(n, tuple) and len(n) == 2 else str(n)

    h = nx.DiGraph()
    # Graph metadata as JSON strings (GEXF has no place for it; GraphML keeps it as graph data).
    if not gexf:
        h.graph.update({k: _scalar(v) for k, v in g.graph.items()})
    for n, d in g.nodes(data=True):
        attrs = {k: _scalar(v) for k, v in d.items()}
        if gexf:
            attrs["label"] = (f"layer {d['layer']} region {d['region']} ({d['row']}, {d['col']})"
                              if "layer" in d else str(n))
        h.add_node(nid(n), **attrs)
    h.add_edges_from((nid(u), nid(v), {k: _scalar(x) for k, x in d.items()}) for u, v, d in g.edges(data=True))
    return h


def write_graph(g, path: str | os.PathLike, *, format: str | None = None, overwrite: bool = False) -> str:
    """Write ``g`` as GraphML, GEXF or node-link JSON (atomically). Returns the absolute path.

    ``format`` is ``"graphml"``, ``"gexf"`` or ``"json"``; None: taken from the file extension. GraphML and GEXF
    are for other tools (Gephi, Cytoscape...): node ids become strings ``"L<layer>_R<region>"`` (the ints stay in
    the ``layer`` / ``region`` attributes), lists and dicts become JSON strings and None becomes ``""``. JSON keeps
    everything: :func:`load_graph_json` gives back the same graph with ``(layer, region)`` tuple ids.
    Replaces only a graph file mri_lens wrote; any other file at ``path`` is refused unless ``overwrite=True``.
    """
    import networkx as nx

    fmt = format or os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    if fmt in ("graphml", "gexf"):
        lines = list(nx.generate_graphml(_flat_copy(g, gexf=False)) if fmt == "graphml"
                     else nx.generate_gexf(_flat_copy(g, gexf=True)))
        # after the XML declaration: tells a later save that this file is ours to replace
        at = 1 if lines and lines[0].startswith("<?xml") else 0
        lines.insert(at, f"<!-- {marker(GRAPH_KIND)} -->")
        text = "\n".join(lines)
    elif fmt == "json":
        data = nx.node_link_data(g, **_node_link_kwargs(nx.node_link_data))
        data.setdefault("graph", {}).setdefault("kind", GRAPH_KIND)
        text = json.dumps(data, allow_nan=False)
    else:
        raise GraphError(f"unknown graph format {fmt!r}; use 'graphml', 'gexf' or 'json' (or that file extension)")
    return save_text(path, text + "\n", kind=GRAPH_KIND, overwrite=overwrite)


def _graph_id(x: Any, source: str):
    if isinstance(x, list) and len(x) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        return tuple(x)
    if isinstance(x, (str, int)) and not isinstance(x, bool):
        return x
    raise ScanFileError(f"{source} is not a consistent saved co-activation graph: a node id is malformed")


def load_graph_json(path: str | os.PathLike):
    """Read a graph written by ``write_graph(g, "....json")``; node ids come back as ``(layer, region)`` tuples.

    Raises :class:`~mri_lens.errors.ScanFileError` for a missing, truncated, foreign or inconsistent file."""
    import networkx as nx

    source = os.fspath(path)
    data = read_json(path, "co-activation graph")
    kind = data.get("graph", {}).get("kind") if isinstance(data, dict) and isinstance(data.get("graph"), dict) \
        else None
    if kind != GRAPH_KIND:
        shown = kind if isinstance(kind, str) and len(kind) <= 64 else type(kind).__name__
        raise ScanFileError(f"{source} holds {shown!r}, not a saved {GRAPH_KIND} (node-link JSON written by "
                            "write_graph)")
    version = data["graph"].get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        shown = version if isinstance(version, int) else type(version).__name__
        raise ScanFileError(f"{source} has schema version {shown!r}; this mri_lens reads versions 1 to "
                            f"{SCHEMA_VERSION}" + (" (upgrade mri_lens)" if isinstance(version, int) and
                                                  version > SCHEMA_VERSION else ""))
    nodes, edges = data.get("nodes"), data.get("edges")
    if not isinstance(nodes, list) or not isinstance(edges, list) or not all(isinstance(n, dict) for n in nodes) \
            or not all(isinstance(e, dict) for e in edges):
        raise ScanFileError(f"{source} is not a consistent saved co-activation graph: nodes/edges are not lists "
                            "of objects")
    for n in nodes:
        if "id" not in n:
            raise ScanFileError(f"{source} is not a consistent saved co-activation graph: a node has no id")
        n["id"] = _graph_id(n["id"], source)
    for e in edges:
        if "source" not in e or "target" not in e:
            raise ScanFileError(f"{source} is not a consistent saved co-activation graph: an edge lacks its ends")
        e["source"], e["target"] = _graph_id(e["source"], source), _graph_id(e["target"], source)
    try:
        return nx.node_link_graph(data, **_node_link_kwargs(nx.node_link_graph))
    except Exception as e:  # noqa: BLE001 - whatever networkx makes of a malformed file, it is not a graph of ours
        raise ScanFileError(f"{source} is not a consistent saved co-activation graph: {type(e).__name__}") from None


# --------------------------------------------------------------------------------------------------- figure


def _colour(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _classes(total, by, sizes, n_docs, q_stored, alpha):
    """Colour class per row: category index when enriched for it (or carrying only its documents), H = shared
    by several highlighted categories, H + 1 = none of them."""
    h = by.shape[1]
    if q_stored is not None:
        p, q = q_stored
    else:
        p, q = _enrichment(total, by, sizes, n_docs)
    best = _best_category(p, q, alpha)
    present = by > 0
    n_present = present.sum(1)
    cls = np.where(n_present >= 2, h, h + 1)
    only = n_present == 1
    cls[only] = np.argmax(present[only], axis=1)
    cls[best >= 0] = best[best >= 0]
    return cls


def _stored_pq(items_attrs, cats):
    """Stored p/q of each row for these categories, or None if any is missing."""
    if not items_attrs or not all(f"q_{c}" in items_attrs[0] for c in cats):
        return None
    p = np.array([[d[f"p_{c}"] for c in cats] for d in items_attrs], dtype=np.float64)
    q = np.array([[d[f"q_{c}"] for c in cats] for d in items_attrs], dtype=np.float64)
    return p, q


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


# --------------------------------------------------------------------------------------------------- metrics


def _pair_stats(wa: np.ndarray, wb: np.ndarray) -> dict:
    """Edge-set Jaccard (edges a category's documents use) and weight correlations on the union of those edges."""
    from scipy import stats

    a, b = wa > 0, wb > 0
    union = a | b
    n_union = int(union.sum())
    out = {"edges_a": int(a.sum()), "edges_b": int(b.sum()), "edges_union": n_union,
           "jaccard": float((a & b).sum() / n_union) if n_union else float("nan"),
           "pearson": float("nan"), "spearman": float("nan")}
    x, y = wa[union].astype(np.float64), wb[union].astype(np.float64)
    if n_union >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
        out["pearson"] = float(stats.pearsonr(x, y)[0])
        out["spearman"] = float(stats.spearmanr(x, y)[0])
    return out


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
    import networkx as nx
    import pandas as pd

    cats = list(g.graph.get("categories", []))
    nodes = list(g.nodes)
    n, m = g.number_of_nodes(), g.number_of_edges()
    in_deg = dict(g.in_degree())
    out_deg = dict(g.out_degree())
    in_str = dict(g.in_degree(weight="weight"))
    out_str = dict(g.out_degree(weight="weight"))
    deg_c = nx.degree_centrality(g) if n > 1 else {u: 0.0 for u in nodes}
    in_c = nx.in_degree_centrality(g) if n > 1 else {u: 0.0 for u in nodes}
    out_c = nx.out_degree_centrality(g) if n > 1 else {u: 0.0 for u in nodes}
    k = betweenness_sources
    if k is None and n * m > _EXACT_BETWEENNESS_BUDGET:
        k = max(1, int(_EXACT_BETWEENNESS_BUDGET / max(m, 1)))
    if k is not None and k >= n:
        k = None
    btw = nx.betweenness_centrality(g, k=k, seed=seed if k is not None else None,
                                    weight=lambda u, v, d: 1.0 / d["weight"] if d.get("weight") else math.inf)
    pr = nx.pagerank(g, weight="weight") if n else {}
    if _layered(g):
        clus = {u: 0.0 for u in nodes}
    else:  # the undirected projection without attributes (g.to_undirected() deep-copies every attribute)
        und = nx.Graph()
        und.add_nodes_from(nodes)
        und.add_edges_from(g.edges)
        clus = nx.clustering(und)
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
    node_df = pd.DataFrame(rows)

    layers = list(g.graph.get("layers") or sorted(node_df["layer"].unique()) if n else [])
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
    layer_df = pd.DataFrame(lrows)

    weights = np.array([d.get("weight", 0) for _, _, d in g.edges(data=True)], dtype=np.float64)
    wcc = list(nx.weakly_connected_components(g)) if n else []
    summary = {
        "nodes": n, "edges": m, "active_nodes": int((node_df["docs"] > 0).sum()) if n else 0,
        "density": nx.density(g) if n > 1 else 0.0, "total_weight": float(weights.sum()),
        "mean_weight": float(weights.mean()) if m else float("nan"),
        "max_weight": float(weights.max()) if m else float("nan"),
        "weakly_connected_components": len(wcc), "largest_component_nodes": max(map(len, wcc)) if wcc else 0,
        "average_clustering_undirected": float(np.mean(list(clus.values()))) if n else 0.0,
        "betweenness_sources": "all" if k is None else k, "n_docs": g.graph.get("n_docs"),
    }
    summary_df = pd.DataFrame({"value": pd.Series(summary, dtype=object)})

    cat_df = pair_df = None
    if cats:
        _, e_total, e_by = _edge_arrays(g, cats)
        _, n_total, n_by = _node_arrays(g, cats)
        alpha = g.graph.get("enrichment", {}).get("alpha")
        crow = []
        for j, c in enumerate(cats):
            row = {"category": c, "docs": g.graph.get("category_sizes", {}).get(c),
                   "active_nodes": int((n_by[:, j] > 0).sum()), "edges": int((e_by[:, j] > 0).sum()),
                   "total_weight": int(e_by[:, j].sum())}
            if alpha is not None and c in g.graph["enrichment"].get("categories", []):
                row["enriched_nodes"] = sum(1 for u in nodes if g.nodes[u].get(f"q_{c}", 1.0) < alpha)
                row["enriched_edges"] = sum(1 for *_, d in g.edges(data=True) if d.get(f"q_{c}", 1.0) < alpha)
            crow.append(row)
        cat_df = pd.DataFrame(crow)
        prow = []
        for a in range(len(cats)):
            for b in range(a + 1, len(cats)):
                prow.append({"a": cats[a], "b": cats[b], **_pair_stats(e_by[:, a], e_by[:, b])})
        pair_df = pd.DataFrame(prow, columns=["a", "b", "edges_a", "edges_b", "edges_union", "jaccard", "pearson",
                                              "spearman"])
    return GraphMetrics(layers=layer_df, nodes=node_df, summary=summary_df, categories=cat_df,
                        category_pairs=pair_df)


# --------------------------------------------------------------------------------------------------- comparison


def _fisher_two_sided(k: np.ndarray, total: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    """Two-sided Fisher exact p-values of the tables [[k, n_a - k], [total - k, n_b - total + k]], vectorised.

    Same definition as ``scipy.stats.fisher_exact``: the sum of the probabilities of all tables with these margins
    that are no more likely than the observed one (relative tolerance 1e-14), 1 when the observed table is the
    mode (agrees with it to about 1e-10 relative). The row margins are shared by every table, so the
    hypergeometric pmf is computed once per distinct column margin ``total``.
    """
    k = np.asarray(k, dtype=np.int64)
    total = np.asarray(total, dtype=np.int64)
    p = np.ones(len(k), dtype=np.float64)
    for t in np.unique(total):
        idx = np.flatnonzero(total == t)
        lo, pmf = _hypergeom_pmf(n_a + n_b, n_a, int(t))
        pexact = pmf[k[idx] - lo]
        srt = np.sort(pmf)
        csum = np.cumsum(srt)
        j = np.searchsorted(srt, pexact * (1 + 1e-14), side="right")
        pv = np.where(j > 0, csum[np.maximum(j - 1, 0)], 0.0)
        pmode = pmf.max()
        with np.errstate(invalid="ignore", divide="ignore"):
            at_mode = np.abs(pexact - pmode) / np.maximum(pexact, pmode) <= 1e-14
        pv[at_mode] = 1.0
        p[idx] = np.minimum(pv, 1.0)
    return p


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
