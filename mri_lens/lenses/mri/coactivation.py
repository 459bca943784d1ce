"""Co-activation graph of MRI regions across consecutive layers: the vectorised counts per category
(:class:`CoactivationCounts`), the trimming rules and the networkx graph they build.

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

>>> g = ml.mri.coactivation_graph(maps, min_weight=5)                  # doctest: +SKIP
>>> ml.mri.graph_figure(g, highlight=["positive", "negative"])          # doctest: +SKIP
>>> ml.mri.graph_metrics(g).layers                                      # doctest: +SKIP
>>> ml.mri.compare_categories(maps, g, "positive", "negative").edges    # doctest: +SKIP

Enrichment is in :mod:`.enrichment`, the figure in :mod:`.graph_plot`, metrics in :mod:`.metrics`, the comparison
of two categories in :mod:`.compare` and the files in :mod:`.graph_io`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...data.corpus import check_categories
from ...errors import GraphError
from ._graph_base import GRAPH_KIND, SCHEMA_VERSION, _check_params
from .enrichment import enrich

__all__ = ["CoactivationCounts", "coactivation_counts", "coactivation_graph"]

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
    check_categories(chosen, names, "the maps")
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
    # is shared (bench/RESULTS.md), so BLAS gets one thread for them.
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

    layers, grid, n_regions, n_docs = _map_sizes(maps)
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


def _map_sizes(maps) -> tuple[list[int], int, int, int]:
    """``(layers, grid, n_regions, n_docs)`` of fitted maps, checked (:class:`GraphError` naming the problem)."""
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
    return layers, grid, n_regions, n_docs


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


def _trim_mask(counts: CoactivationCounts, min_weight, top_edges, percentile) -> np.ndarray:
    """Edges kept: each criterion is evaluated on the untrimmed edges and an edge must pass all of them."""
    w = counts.edge_weight
    keep = w >= max(min_weight, 1)
    if percentile is not None:
        for t in np.unique(counts.edge_transition):
            sel = counts.edge_transition == t
            keep[sel] &= w[sel] >= np.percentile(w[sel], percentile)
    if top_edges is not None:
        r = counts.n_regions
        src_node = counts.edge_transition * r + counts.edge_source
        dst_node = counts.edge_transition * r + counts.edge_target
        out_rank = _ranks_within(src_node, w, counts.edge_target)
        in_rank = _ranks_within(dst_node, w, counts.edge_source)
        keep &= (out_rank < top_edges) | (in_rank < top_edges)
    return keep



# --------------------------------------------------------------------------------------------------- graph


def coactivation_graph(maps, *, min_weight: float = 1, top_edges: int | None = None, percentile: float | None = None,
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
    top_edges : int or None
        Keep an edge only if it is among the ``top_edges`` heaviest out-edges of its source or among the ``top_edges``
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

    _check_params(min_weight, top_edges, percentile, alpha)
    # Plain Python numbers in g.graph, so every export format can write them.
    min_weight, top_edges, percentile, alpha = (v.item() if isinstance(v, np.generic) else v
                                                for v in (min_weight, top_edges, percentile, alpha))
    counts = coactivation_counts(maps, categories)
    keep = _trim_mask(counts, min_weight, top_edges, percentile)
    cats = counts.categories
    layers = counts.layers
    g = nx.DiGraph()
    from ...version import __version__

    g.graph.update({
        "kind": GRAPH_KIND, "schema_version": SCHEMA_VERSION, "mri_lens_version": __version__,
        "layers": list(layers), "grid": counts.grid, "n_regions": counts.n_regions, "n_docs": counts.n_docs,
        "mode": str(getattr(maps, "mode", "")), "categories": list(cats),
        "category_sizes": {c: int(n) for c, n in zip(cats, counts.category_sizes)},
        "params": {"min_weight": min_weight, "top_edges": top_edges, "percentile": percentile,
                   "categories": None if categories is None else list(cats)},
        "n_edges_untrimmed": int(len(counts.edge_weight)),
    })
    # One tuple object per node, reused by its edges (saves creating and hashing ~2 tuples per edge).
    ids = [(layer, r) for layer in layers for r in range(counts.n_regions)]
    _add_nodes(g, maps, counts, ids)
    _add_edges(g, counts, keep, ids)
    if enrichment:
        enrich(g, alpha=alpha)
    return g


def _add_nodes(g, maps, counts: CoactivationCounts, ids: list[tuple[int, int]]) -> None:
    """Every region of every layer, in (layer, region) order, with its position, neurons and document counts."""
    n_regions = counts.n_regions
    cats = counts.categories
    node_keys = ["docs"] + [f"docs_{c}" for c in cats]
    for li, layer in enumerate(counts.layers):
        vals = np.column_stack([counts.node_docs[li], counts.node_by_category[li]]).tolist()
        for r in range(n_regions):
            row, col = divmod(r, counts.grid)
            neurons = [int(x) for x in np.asarray(maps.region_neurons(layer, r)).ravel()]
            attrs = {"layer": layer, "region": r, "row": row, "col": col, "neurons": neurons}
            attrs.update(zip(node_keys, vals[r]))
            g.add_node(ids[li * n_regions + r], **attrs)


def _add_edges(g, counts: CoactivationCounts, keep: np.ndarray, ids: list[tuple[int, int]]) -> None:
    """The kept edges (``keep`` ``[n_edges]`` bool), in (source, target) order, with their weights."""
    n_regions = counts.n_regions
    cats = counts.categories
    edge_keys = ["weight"] + [f"weight_{c}" for c in cats]
    t = counts.edge_transition[keep]
    src = (t * n_regions + counts.edge_source[keep]).tolist()
    dst = ((t + 1) * n_regions + counts.edge_target[keep]).tolist()
    cols = [counts.edge_weight[keep].tolist()] + [c.tolist() for c in counts.edge_by_category[keep].T]
    # One add_edges_from over a generator, in (source, target) order: successors and predecessors keep that order.
    # It copies each attribute dict into one of its own (its cost: bench/RESULTS.md; networkx has no public bulk
    # path that avoids it: from_dict_of_dicts calls add_edges_from too).
    g.add_edges_from((ids[i], ids[j], dict(zip(edge_keys, v))) for i, j, v in zip(src, dst, zip(*cols)))

