"""The component graph of N-dimensional document maps (after LLM-MRI's ``GraphND``): how the reduced components
of one mapped layer follow those of the next.

Input: region maps fitted in documents mode (each document a point) with any number of components, for example
``RegionMaps(mode="documents", reducer="pca", n_components=8)``. For each pair of neighbouring mapped layers, the
Spearman correlation between every component of one layer and every component of the next, over the documents
(all of them, and each category's separately), is computed by ranks (average ranks for ties, then the Pearson
correlation of the ranks: one matrix product per layer pair and selection). The components are the maps' own,
fitted once on all documents, so a category's graph and another's speak of the same components (LLM-MRI refits
the reduction on each category's documents, which gives each category components of its own).

Nodes are ``(layer, component)`` tuples of Python ints, every component of every mapped layer, in (layer,
component) order; an edge goes from a component of one mapped layer to a component of the next, added in
(source, target) order. An edge exists when its correlation passes the threshold over all documents or over any
category's documents.

============================  =======================================================================
node attribute                meaning
============================  =======================================================================
``layer, component``          where the component is (ints)
``explained_variance_ratio``  share of the layer's variance the component explains (PCA/SVD maps only)
============================  =======================================================================

============================  =======================================================================
edge attribute                meaning
============================  =======================================================================
``rho``                       Spearman rho over all documents (signed; absent where undefined)
``weight``                    ``|rho|`` when it passes the threshold over all documents, else 0
``rho_<cat>``                 Spearman rho over the category's documents (absent where undefined)
``weight_<cat>``              ``|rho_<cat>|`` when it passes the threshold for the category, else 0
============================  =======================================================================

The threshold test is strict, ``|rho| > threshold`` (a strong negative correlation is as much a link as a
positive one); ``positive_only=True`` keeps LLM-MRI's own test ``rho > threshold``. A correlation is undefined
(NaN, never an edge) when a component is constant over the selected documents or fewer than two are selected.
PCA/SVD component signs are fixed by the maps (largest loading positive), so a sign here means something.
Graph metadata (layers, components, reducer, categories and their sizes, parameters) lives in ``g.graph``.

>>> maps = ml.mri.RegionMaps(mode="documents", reducer="pca", n_components=6).fit(scan)   # doctest: +SKIP
>>> g = ml.mri.component_graph(maps, threshold=0.3)                                       # doctest: +SKIP
>>> ml.mri.component_graph_figure(g, category="positive")                                 # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...data.corpus import check_categories
from ...errors import GraphError
from ._graph_base import COMPONENT_GRAPH_KIND, SCHEMA_VERSION

__all__ = ["component_graph", "spearman_matrix"]


def spearman_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho between every column of ``x`` ``[n, a]`` and every column of ``y`` ``[n, b]`` -> ``[a, b]``
    float64, equal to ``scipy.stats.spearmanr`` column pair by column pair: average ranks for ties, then the
    Pearson correlation of the ranks. NaN where a column is constant or ``n < 2``."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise GraphError(f"expected two [n, k] score arrays of the same n, got {x.shape} and {y.shape}")
    return _rank_correlation(_centred_ranks(x), _centred_ranks(y))


def _centred_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (ties share their mean rank) of each column of ``x`` ``[n, k]``, centred, float64
    ``[n, k]``, and their sums of squares ``[k]`` (0: a constant column, or ``n < 2``)."""
    from scipy.stats import rankdata

    if len(x) < 2:
        return np.zeros(x.shape), np.zeros(x.shape[1])
    r = rankdata(np.asarray(x, dtype=np.float64), axis=0)
    r -= r.mean(axis=0)
    return r, (r * r).sum(axis=0)


def _rank_correlation(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Pearson correlation ``[k_a, k_b]`` of two sets of centred ranks (:func:`_centred_ranks` of the same
    documents): one matrix product. NaN where a column is constant."""
    (rx, ssx), (ry, ssy) = a, b
    # sqrt of the product, not a product of sqrts: exact when it is a perfect square (a rho equal to a threshold
    # stays equal to it)
    norm = np.sqrt(np.outer(ssx, ssy))  # [k_a, k_b]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (rx.T @ ry) / norm
    rho[norm == 0] = np.nan
    return np.clip(rho, -1.0, 1.0)


def _check_args(maps, threshold, positive_only) -> None:
    mode = getattr(maps, "mode", None)
    if mode != "documents":
        raise GraphError(f"a component graph needs maps fitted in documents mode (points = documents); these maps "
                         f"are in mode {mode!r}: fit RegionMaps(mode='documents', ...)")
    if getattr(maps, "coords_", None) is None or getattr(maps, "layers_", None) is None:
        raise GraphError("the maps are not fitted: call maps.fit(scan) first")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not math.isfinite(threshold) or not 0 <= threshold < 1:
        raise GraphError(f"threshold must be a number in [0, 1), got {threshold!r}")
    if not isinstance(positive_only, (bool, np.bool_)):
        raise GraphError(f"positive_only must be True or False, got {positive_only!r}")


def _selections(maps, categories) -> tuple[list[str], list[np.ndarray]]:
    """The categories counted separately and their documents ``[n_docs]`` bool each (none for unlabelled maps)."""
    labels, names = getattr(maps, "labels_", None), getattr(maps, "label_names_", None)
    if labels is None or names is None:
        if categories:
            raise GraphError("these maps have no labels (the scan's corpus was unlabelled): categories=None")
        return [], []
    names = [str(c) for c in names]
    cats = names if categories is None else check_categories(categories, names, "the maps")
    labels = np.asarray(labels)
    return list(cats), [labels == names.index(c) for c in cats]


def _layer_scores(maps) -> tuple[list[int], list[np.ndarray]]:
    """Mapped layers (model numbers, in the maps' order) and each one's component scores ``[n_docs, k]``."""
    layers = [int(l) for l in maps.layers_]
    scores = [np.asarray(maps.coordinates(l)) for l in layers]
    n_docs = int(maps.n_docs_)
    k = scores[0].shape[1] if scores and scores[0].ndim == 2 else 0
    for l, s in zip(layers, scores):
        if s.ndim != 2 or s.shape != (n_docs, k) or k < 1:
            raise GraphError(f"maps.coordinates({l}) has shape {s.shape}, expected [{n_docs}, {k or 'k'}]")
        if not np.isfinite(s).all():
            raise GraphError(f"maps.coordinates({l}) contains NaN or inf")
    return layers, scores


def _passes(rho: np.ndarray, threshold: float, positive_only: bool) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN passes nothing
        return (rho if positive_only else np.abs(rho)) > threshold


def component_graph(maps, *, threshold: float = 0.3, categories: Sequence[str] | str | None = None,
                    positive_only: bool = False):
    """The component graph of fitted documents-mode maps (see the module docstring for its attributes).

    Parameters
    ----------
    maps : fitted :class:`~mri_lens.lenses.mri.RegionMaps` in documents mode
        Read through ``layers_``, ``coordinates(layer)`` ``[n_docs, n_components]``, ``labels_``,
        ``label_names_``, ``n_docs_`` (and ``explained_variance_ratio_``, ``reducer`` where present). Any number
        of components >= 1.
    threshold : float in [0, 1)
        An edge passes for a selection of documents when ``|rho| > threshold`` (``rho > threshold`` with
        ``positive_only``).
    categories : list of str, str or None
        Categories correlated separately; None: all of the maps' label names (none if unlabelled).
    positive_only : bool
        Keep only positive correlations (LLM-MRI's behaviour).

    Returns
    -------
    networkx.DiGraph
    """
    import networkx as nx

    from ...version import __version__

    _check_args(maps, threshold, positive_only)
    threshold, positive_only = float(threshold), bool(positive_only)
    cats, masks = _selections(maps, categories)
    layers, scores = _layer_scores(maps)
    k = scores[0].shape[1]
    g = nx.DiGraph()
    g.graph.update({
        "kind": COMPONENT_GRAPH_KIND, "schema_version": SCHEMA_VERSION, "mri_lens_version": __version__,
        "layers": layers, "n_components": int(k), "reducer": str(getattr(maps, "reducer", "")),
        "n_docs": int(maps.n_docs_), "mode": "documents", "correlation": "spearman", "categories": cats,
        "category_sizes": {c: int(m.sum()) for c, m in zip(cats, masks)},
        "params": {"threshold": threshold, "positive_only": positive_only,
                   "categories": None if categories is None else list(cats)},
    })
    _add_nodes(g, maps, layers, k)
    prev = None
    for t, s in enumerate(scores):
        # each layer's ranks once per selection (all documents, then each category), used with both neighbours
        cur = [_centred_ranks(s)] + [_centred_ranks(s[m]) for m in masks]
        if prev is not None:
            rhos = [_rank_correlation(p, c) for p, c in zip(prev, cur)]  # each [k, k]
            _add_edges(g, (layers[t - 1], layers[t]), rhos, cats, threshold, positive_only)
        prev = cur
    return g


def _add_nodes(g, maps, layers: list[int], k: int) -> None:
    """Every component of every mapped layer, in (layer, component) order."""
    evr = getattr(maps, "explained_variance_ratio_", None)
    for li, layer in enumerate(layers):
        for c in range(k):
            attrs = {"layer": layer, "component": c}
            if evr is not None and np.isfinite(evr[li][c]):
                attrs["explained_variance_ratio"] = float(evr[li][c])
            g.add_node((layer, c), **attrs)


def _add_edges(g, pair: tuple[int, int], rhos: list[np.ndarray], cats: list[str], threshold: float,
               positive_only: bool) -> None:
    """The edges from layer ``pair[0]`` to ``pair[1]``, in (source, target) order, from the correlations
    ``[k, k]`` over all documents and over each category's (``rhos``, in that order)."""
    passes = [_passes(r, threshold, positive_only) for r in rhos]
    src, dst = np.nonzero(np.logical_or.reduce(passes))  # row-major: sorted by (source, target)
    # Per edge and selection: rho (None where undefined: left out) and weight (|rho| where it passes, else 0).
    cols = []
    for key, r, p in zip([""] + [f"_{c}" for c in cats], rhos, passes):
        v = r[src, dst]
        cols.append((f"rho{key}", [None if math.isnan(z) else z for z in v.tolist()]))
        cols.append((f"weight{key}", np.where(p[src, dst], np.abs(v), 0.0).tolist()))
    a, b = pair
    for e, (i, j) in enumerate(zip(src.tolist(), dst.tolist())):
        g.add_edge((a, i), (b, j), **{key: col[e] for key, col in cols if col[e] is not None})
