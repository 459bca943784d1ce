"""Summaries of fitted region maps (:class:`~mri_lens.lenses.mri.regions.RegionMaps`): per-category region images
(fraction of a category's documents activating each region, mean region activation, log odds between two
categories), the regions and document-regions tables (pandas), and the notebook display (for maps without a grid:
the explained variance, or the spread, of each layer's components). Each function takes the fitted maps as its
first argument and reads them through their accessors; the estimator's methods of the same names call these.
"""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np

__all__ = ["category_fractions", "category_mean_activation", "document_regions", "log_odds", "maps_html",
           "regions_table"]


def _category_images(maps, values: np.ndarray, layer: int, categories) -> dict[str, np.ndarray]:
    """Mean of ``values`` ``[n_docs, n_regions]`` over each category's documents, as ``[grid, grid]`` images
    with NaN for regions with no points."""
    empty = maps.region_sizes(layer) == 0
    out = {}
    for name, m in maps._category_masks(categories):
        v = values[m].mean(0) if m.any() else np.zeros(maps.n_regions)
        out[name] = np.where(empty, np.nan, v).reshape(maps.grid, maps.grid)
    return out


def category_fractions(maps, layer: int, categories: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Fraction of each category's documents activating each region ``{category: [grid, grid]}`` (NaN for
    regions with no points)."""
    return _category_images(maps, maps.activated(layer), layer, categories)


def category_mean_activation(maps, layer: int, categories: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Mean region activation over each category's documents ``{category: [grid, grid]}``."""
    return _category_images(maps, maps.region_activation(layer), layer, categories)


def log_odds(maps, layer: int, a: str, b: str) -> np.ndarray:
    """Log odds ratio (natural log, 0.5 added to every cell of the 2 x 2 table) that a document of ``a`` rather
    than ``b`` activates each region ``[grid, grid]`` (NaN for regions with no points)."""
    act = maps.activated(layer)
    (_, ma), (_, mb) = maps._category_masks([a, b])
    ka, kb = act[ma].sum(0) + 0.5, act[mb].sum(0) + 0.5
    na, nb = ma.sum() + 1.0, mb.sum() + 1.0
    lo = np.log(ka / (na - ka)) - np.log(kb / (nb - kb))
    return np.where(maps.region_sizes(layer) == 0, np.nan, lo).reshape(maps.grid, maps.grid)


def _label_strings(maps, docs: np.ndarray) -> list[str | None]:
    if maps.labels_ is None:
        return [None] * len(docs)
    return [maps.label_names_[c] for c in maps.labels_[docs]]


def document_regions(maps, layer: int | None = None):
    """Which regions each document activates, as a long pandas DataFrame (doc, label, layer, region, row, col,
    activation); all layers by default."""
    import pandas as pd

    frames = []
    for l in (maps.layers if layer is None else [layer]):
        act = maps.activated(l)
        docs, regs = np.nonzero(act)
        frames.append(pd.DataFrame({
            "doc": docs, "label": _label_strings(maps, docs), "layer": l, "region": regs,
            "row": regs // maps.grid, "col": regs % maps.grid,
            "activation": maps.region_activation(l)[docs, regs]}))
    return pd.concat(frames, ignore_index=True)


def regions_table(maps, layer: int | None = None):
    """One row per (layer, region): position, size, threshold, the fraction of each category's documents that
    activate it and, in neurons mode, its neuron ids (a list per row; the MRI page anchors each region and links
    these neurons to their pages) (pandas DataFrame)."""
    import pandas as pd

    rows = []
    for l in (maps.layers if layer is None else [layer]):
        li = maps.layer_index(l)
        sizes = maps.region_sizes(l)
        fr = {k: v.ravel() for k, v in category_fractions(maps, l).items()}
        for r in range(maps.n_regions):
            row = {"layer": l, "region": r, "row": r // maps.grid, "col": r % maps.grid,
                   "n_points": int(sizes[r]), "threshold": float(maps.thresholds_[li, r]),
                   "n_docs_active": int(maps.activated_[li, :, r].sum())}
            row.update({f"frac_{k}": float(v[r]) for k, v in fr.items()})
            if maps.mode == "neurons":
                row["neurons"] = maps.region_neurons(l, r).tolist()
            rows.append(row)
    return pd.DataFrame(rows)


def maps_html(maps) -> str:
    """The notebook display: the maps' repr and, once fitted, one row per layer (non-empty regions, largest
    region, fraction of (document, region) pairs active, regions per document)."""
    if not hasattr(maps, "coords_"):
        return html.escape(repr(maps))
    if not maps.has_grid:
        return _components_html(maps)
    rows = []
    for i, l in enumerate(maps.layers_):
        sizes = np.bincount(maps.cell_[i], minlength=maps.n_regions)
        act = maps.activated_[i]
        rows.append(f"<tr><td>{l}</td><td>{int((sizes > 0).sum())}/{maps.n_regions}</td>"
                    f"<td>{int(sizes.max())}</td><td>{act.mean():.3f}</td><td>{act.sum(1).mean():.1f}</td></tr>")
    return (f"<div><b>{html.escape(repr(maps))}</b><table><tr><th>layer</th><th>non-empty regions</th>"
            f"<th>largest region</th><th>fraction (doc, region) active</th><th>regions per doc</th></tr>"
            f"{''.join(rows)}</table><i>maps.figure(layer), maps.scatter(layer), maps.small_multiples()</i></div>")


def _components_html(maps) -> str:
    """The notebook display of maps without a grid: per layer, the explained variance ratio of the first
    components and their sum (PCA/SVD), or the spread of each coordinate (UMAP)."""
    k = min(maps.n_components, 5)
    linear = maps.explained_variance_ratio_ is not None
    rows = []
    for i, l in enumerate(maps.layers_):
        v = maps.explained_variance_ratio_[i] if linear else maps.coords_[i].std(0)
        cells = "".join(f"<td>{x:.3f}</td>" for x in v[:k])
        total = f"<td>{float(v.sum()):.3f}</td>" if linear else ""
        rows.append(f"<tr><td>{l}</td>{cells}{total}</tr>")
    what = "explained variance ratio" if linear else "standard deviation"
    head = "".join(f"<th>{what} {j + 1}</th>" for j in range(k)) + ("<th>total</th>" if linear else "")
    return (f"<div><b>{html.escape(repr(maps))}</b><table><tr><th>layer</th>{head}</tr>{''.join(rows)}</table>"
            "<i>maps.coordinates(layer), maps.component_figure(), ml.mri.component_graph(maps)</i></div>")
