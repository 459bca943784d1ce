"""What a token no N2G pattern covers predicts (an extension, ``N2GConfig(fallback=...)``).

The paper predicts 0 wherever no path of the trie matches. A fallback instead predicts, at such positions, a value
fitted on the training examples' *uncovered* positions: per token (``"token"``: the mean activation of that token
where no pattern covered it, 0 for tokens never seen uncovered: what token lookup would say there) or one number
(``"mean"``: the mean activation of all uncovered training tokens). A plain JSON dict, stored in the graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_fallback", "apply_fallback"]


def fit_fallback(kind: str, ids: np.ndarray, nodes: np.ndarray, acts: np.ndarray) -> dict[str, Any] | None:
    """The fallback of ``kind`` fitted on training tokens.

    Parameters
    ----------
    kind: ``"none"``, ``"token"`` or ``"mean"``.
    ids: ``[n]`` token ids of the training examples (concatenated).
    nodes: ``[n]`` the END node that predicts each position (-1: no pattern covers it), from ``Trie.match``.
    acts: ``[n]`` true normalised activations.

    Returns
    -------
    None for ``"none"``; else ``{"kind", "default", "table": [[token id, value], ...]}`` (an empty table for
    ``"mean"``).
    """
    if kind == "none":
        return None
    free = np.asarray(nodes) < 0
    a = np.asarray(acts, dtype=np.float64)[free]
    if kind == "mean":
        return {"kind": "mean", "default": float(a.mean()) if len(a) else 0.0, "table": []}
    if kind != "token":
        raise ValueError(f"fallback must be 'none', 'token' or 'mean', got {kind!r}")
    t = np.asarray(ids, dtype=np.int64)[free]
    table: list[list[Any]] = []
    if len(t):
        u, inv = np.unique(t, return_inverse=True)
        means = np.bincount(inv, weights=a) / np.bincount(inv)
        table = [[int(k), float(v)] for k, v in zip(u.tolist(), means.tolist())]
    return {"kind": "token", "default": 0.0, "table": table}


def apply_fallback(fallback: dict[str, Any] | None, ids: np.ndarray, pred: np.ndarray,
                   nodes: np.ndarray) -> np.ndarray:
    """``pred`` ``[n]`` with the fallback's value where ``nodes`` is -1 (no pattern matched)."""
    if not fallback:
        return pred
    free = np.asarray(nodes) < 0
    out = np.array(pred, dtype=np.float64)
    if not free.any():
        return out
    vals = np.full(int(free.sum()), float(fallback["default"]))
    if fallback["table"]:
        keys = np.array([k for k, _ in fallback["table"]], dtype=np.int64)
        values = np.array([v for _, v in fallback["table"]], dtype=np.float64)
        t = np.asarray(ids, dtype=np.int64)[free]
        i = np.minimum(np.searchsorted(keys, t), len(keys) - 1)
        hit = keys[i] == t
        vals[hit] = values[i[hit]]
    out[free] = vals
    return out
