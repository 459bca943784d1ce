"""The per-layer reduction behind the region maps: what a reducer sees (:func:`scale`: each neuron's pooled
activations over documents z-scored, min-max scaled or left raw), the linear reducers (:func:`fit_linear`:
scikit-learn's ``PCA`` and ``TruncatedSVD``, with the sign rule of :func:`sign_rule`), the size check of
``n_components`` (:func:`check_n_components`) and the loop that reduces every layer with the chosen reducer
(:func:`reduce_layers`; UMAP runs in the worker processes of :mod:`.embedding`), and the point correspondences
between consecutive layers that the maps' alignment uses (:func:`correspondence`). Knows nothing of grids.

Linear reducers:

- ``"pca"``: ``PCA(n_components, random_state=seed)`` on the points (centred per feature by PCA itself); its
  solver is scikit-learn's own choice for the data size (exact LAPACK for small data, randomized for large).
- ``"svd"``: ``TruncatedSVD(n_components, algorithm="arpack", random_state=seed)``: no centring, so the first
  component also carries the mean. ARPACK gives the leading singular vectors to machine precision (the randomized
  solver only approximates them) and needs ``n_components`` strictly below ``min(n_points, n_features)``.
  On z-scored features in documents mode the columns are centred already, so it gives PCA's components; in
  neurons mode the features are documents, which z-scoring per neuron does not centre, and the two differ.

Both fit in float64 and return float32 scores, components and explained variance ratios.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .embedding import embed_layers
from .geometry import _normalise, standardise

__all__ = ["REDUCERS", "SCALINGS", "check_n_components", "correspondence", "fit_linear", "reduce_layers", "scale",
           "sign_rule"]

REDUCERS = ("umap", "pca", "svd")
SCALINGS = ("zscore", "minmax", "none")


def scale(x: np.ndarray, scaling: str, block: int = 64) -> np.ndarray:
    """Each column (neuron) of ``x`` ``[n_docs, d]`` scaled over the documents, float32 ``[n_docs, d]``.

    ``"zscore"``: z-scores (:func:`~.geometry.standardise`); ``"minmax"``: ``(x - min) / (max - min)`` into
    [0, 1], as scikit-learn's ``MinMaxScaler`` (LLM-MRI's UMAP input); ``"none"``: the activations as they are
    (LLM-MRI's N-D PCA input). Constant columns become 0 when z-scored or min-max scaled."""
    if scaling == "zscore":
        return standardise(x, block)
    if scaling == "none":
        return np.array(x, dtype=np.float32)
    out = np.zeros(x.shape, dtype=np.float32)
    for c in range(0, x.shape[1], block):  # float64 a block at a time, as standardise
        xc = np.asarray(x[:, c:c + block], dtype=np.float64)
        lo, span = xc.min(0), np.ptp(xc, 0)
        live = span > 0
        out[:, c:c + block][:, live] = (xc[:, live] - lo[live]) / span[live]
    return out


def sign_rule(scores: np.ndarray, components: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fix each component's sign: the loading with the largest ``|value|`` (the first such, on a tie) is made
    positive, flipping the component ``[k, n_features]`` and its scores ``[n_points, k]`` together.

    scikit-learn's PCA and TruncatedSVD (1.5 and later, every solver) already return components that follow this
    rule (their ``svd_flip(..., u_based_decision=False)``), so it changes nothing there; it is applied anyway so
    that the signs do not depend on the scikit-learn version or solver."""
    k = components.shape[0]
    top = np.abs(components).argmax(1)
    s = np.where(components[np.arange(k), top] < 0, -1.0, 1.0)
    return scores * s[None, :], components * s[:, None]


def fit_linear(points: np.ndarray, reducer: str, n_components: int,
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One PCA or truncated-SVD fit (see the module docstring): ``[n_points, n_features] ->`` (scores float32
    ``[n_points, k]``, components float32 ``[k, n_features]``, explained variance ratio float32 ``[k]``), signs
    by :func:`sign_rule`."""
    from sklearn.decomposition import PCA, TruncatedSVD

    x = np.asarray(points, dtype=np.float64)
    k = n_components
    if not x.any() or (reducer == "pca" and not (x != x[:1]).any()):
        # every point the same (BERT's [CLS] embedding, z-scored to 0): no direction to find, nothing explained
        return (np.zeros((len(x), k), np.float32), np.zeros((k, x.shape[1]), np.float32), np.zeros(k, np.float32))
    if reducer == "pca":
        est = PCA(n_components, random_state=seed)
    else:
        est = TruncatedSVD(n_components, algorithm="arpack", random_state=seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores, comps = sign_rule(est.fit_transform(x), est.components_)
        evr = np.asarray(est.explained_variance_ratio_, dtype=np.float32)
    # a layer identical for every point (BERT's [CLS] embedding) has no variance to explain: 0, not 0 / 0
    return scores.astype(np.float32), comps.astype(np.float32), np.nan_to_num(evr, nan=0.0)


def check_n_components(n_components: int, reducer: str, n_points: int, n_features: int) -> None:
    """``ValueError`` unless ``n_components`` fits the data: at most ``min(n_points, n_features)`` (for ``"svd"``
    strictly below: ARPACK's limit)."""
    top = min(n_points, n_features)
    if reducer == "svd" and n_components >= top:
        raise ValueError(f"n_components must be below min(n_points, n_features) = {top} for reducer 'svd' "
                         f"(ARPACK), got {n_components}")
    if n_components > top:
        raise ValueError(f"n_components must be at most min(n_points, n_features) = {top} "
                         f"({n_points} points, {n_features} features per point), got {n_components}")


def reduce_layers(points: Iterable[np.ndarray], *, reducer: str, n_components: int, seed: int,
                  umap_args: tuple, n_jobs: int | None, progress: bool,
                  n_layers: int) -> tuple[list[np.ndarray], list[np.ndarray] | None, list[np.ndarray] | None]:
    """Reduce every layer's points ``L x [n_points, n_features]`` (a generator is fine: one layer in memory at a
    time for the linear reducers, the layers in flight for UMAP) to ``L x [n_points, n_components]`` float64:
    UMAP's coordinates centred and scaled to unit RMS radius (their position and scale mean nothing), PCA/SVD's
    component scores as they are.

    Returns (coordinates, components ``L x [k, n_features]``, explained variance ratios ``L x [k]``); the last two
    are None for UMAP. ``umap_args``: ``(n_neighbors, min_dist, n_epochs)``."""
    if reducer == "umap":
        coords = embed_layers(points, *umap_args, seed, n_jobs=n_jobs, progress=progress, n_layers=n_layers,
                              n_components=n_components)
        return [_normalise(c.astype(np.float64)) for c in coords], None, None
    from tqdm.auto import tqdm

    fits = [fit_linear(p, reducer, n_components, seed)
            for p in tqdm(points, total=n_layers, desc=f"region maps ({reducer})", unit="layer",
                          disable=not progress)]
    return [f[0].astype(np.float64) for f in fits], [f[1] for f in fits], [f[2] for f in fits]


def correspondence(z_cur: np.ndarray, z_prev: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """For each point of a layer: the matching point of the previous layer and a weight, both ``[n_points]``, from
    the two layers' z-scores ``[n_docs, d]``. Documents mode: each document itself, weight 1; neurons mode: each
    neuron's most correlated neuron of the previous layer, weighted by that correlation (negative: 0)."""
    if mode == "documents":
        n = z_cur.shape[0]
        return np.arange(n), np.ones(n)
    corr = (z_cur.T.astype(np.float64) @ z_prev.astype(np.float64)) / z_cur.shape[0]  # [d_cur, d_prev]
    src = corr.argmax(1)
    w = np.clip(corr[np.arange(len(src)), src], 0, None)
    if w.sum() == 0:
        w = np.ones_like(w)
    return src, w
