"""The geometry of a region map, pure numpy: features standardised per column (:func:`standardise`), a map centred
and scaled to unit RMS radius, the weighted orthogonal Procrustes rotation that aligns one layer's map onto the
previous one, and the grid: bin edges per axis (robust range or quantiles) and each point's region id
``row * grid + col``."""

from __future__ import annotations

import numpy as np

__all__ = ["standardise"]


def standardise(x: np.ndarray, block: int = 64) -> np.ndarray:
    """Column z-scores over rows (documents), float32; constant columns become 0. ``[n_docs, d] -> [n_docs, d]``.

    Computed in float64, ``block`` columns at a time (the same numbers as all at once: every column is its own
    computation), so memory holds the float32 result and one float64 block, not float64 copies of the layer."""
    z = np.zeros(x.shape, dtype=np.float32)
    for c in range(0, x.shape[1], block):
        xc = np.asarray(x[:, c:c + block], dtype=np.float64)
        mu, sd = xc.mean(0), xc.std(0)
        live = sd > 0
        z[:, c:c + block][:, live] = (xc[:, live] - mu[live]) / sd[live]
    return z


def _normalise(c: np.ndarray) -> np.ndarray:
    c = c - c.mean(0)
    r = np.sqrt((c ** 2).sum(1).mean())
    return c / r if r > 0 else c


def _procrustes(moving: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Orthogonal matrix R (rotation or reflection) minimising sum_i w_i |moving_i R - target_i|^2 ``[2, 2]``.

    Both inputs are centred already; the scale is fixed by the normalisation, so only R is fitted."""
    m = (moving * weights[:, None]).T @ target
    u, _, vt = np.linalg.svd(m)
    return u @ vt


def _grid_edges(c: np.ndarray, grid: int, binning: str, clip: float) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges of the x and y axes ``[grid + 1]`` each."""
    out = []
    for ax in range(2):
        v = c[:, ax].astype(np.float64)
        if binning == "range":
            lo, hi = np.percentile(v, [clip, 100 - clip])
            if not hi > lo:
                lo, hi = v.min(), v.max() + 1e-6
            out.append(np.linspace(lo, hi, grid + 1))
        else:  # quantile
            e = np.quantile(v, np.linspace(0, 1, grid + 1))
            out.append(np.maximum.accumulate(e))
    return out[0], out[1]


def _cells(c: np.ndarray, xe: np.ndarray, ye: np.ndarray, grid: int) -> np.ndarray:
    """Region id ``row * grid + col`` of each point ``[n_points]``; points beyond the edges go to border cells."""
    col = np.clip(np.searchsorted(xe[1:-1], c[:, 0], side="right"), 0, grid - 1)
    row = np.clip(np.searchsorted(ye[1:-1], c[:, 1], side="right"), 0, grid - 1)
    return (row * grid + col).astype(np.int32)
