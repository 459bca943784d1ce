"""Find neurons in a scan, with no model: by the token their top examples peak on, by their maximum, by how
sparsely they fire, or by how selective they are for a category of a labelled scan.

Everything comes from what the scan kept: statistics, the top-k examples of every neuron and the stored tokens
(the token at each top example's max position), so a search over every neuron of a model is a few array
operations.

>>> ml.neuroscope.find(scan, token=" except")                      # doctest: +SKIP
>>> ml.neuroscope.find(scan, tokens=[" except", " raise"], layers=[1])   # doctest: +SKIP
>>> ml.neuroscope.find(scan, by="selectivity")                      # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...errors import ScanError
from ...results.stats import token_mode

__all__ = ["find", "RANKINGS"]

RANKINGS = ("share", "max", "density", "selectivity")


def find(scan: Any, token: str | int | None = None, *, tokens: Sequence[str | int] | None = None,
         by: str | None = None, layers: Sequence[int] | None = None, limit: int | None = 50,
         pooling: str = "mean", min_docs: int = 5):
    """Neurons of ``scan`` ranked, from the scan alone (no model runs): a pandas DataFrame, best first.

    Parameters
    ----------
    scan: a :class:`~mri_lens.Scan`.
    token, tokens: a token, or a set of tokens, to search for: strings as the scan's decoded tokens show them
        (``" except"``, leading space included; each must be one token of the stored tokenizer) or token ids.
        A neuron matches when the max token of at least one of its top examples is one of them.
    by: the ranking.

        * ``"share"`` (the default with a token): the share of the neuron's kept top examples whose max token is
          one of the tokens, then the mean activation of those examples;
        * ``"max"`` (the default without one): the neuron's largest activation over the corpus;
        * ``"density"``: sparsest first, the fraction of counted tokens where the neuron is > 0, among neurons
          that fire at all (ties: larger max first);
        * ``"selectivity"`` (labelled scans): for each neuron and category, Cohen's d of the documents of that
          category against all others on the pooled activation ``pooling`` ((mean_c - mean_rest) / pooled standard
          deviation; categories with fewer than ``min_docs`` documents, or fewer than ``min_docs`` others, are left
          out); a neuron's selectivity is its largest d, ``selective_for`` that category. Largest first.

        With a token, only the neurons that match are ranked, by any of these.
    layers: model layer numbers to search (default: every scanned layer).
    limit: rows returned (None: every ranked neuron).

    Returns
    -------
    pandas.DataFrame with ``layer``, ``neuron``; with a token ``token`` (the tokens searched), ``count`` (matching
    top examples), ``share`` (of the kept ones) and ``mean_activation`` (of the matching ones); then ``top_token``
    and ``top_token_share`` (the neuron's most frequent max token and its share), ``density``, ``max``, and with
    ``by="selectivity"`` ``selectivity`` and ``selective_for``.
    """
    import pandas as pd

    wanted = _wanted_tokens(scan, token, tokens)
    by = by or ("share" if wanted is not None else "max")
    if by not in RANKINGS:
        raise ValueError(f"by must be one of {RANKINGS}, got {by!r}")
    if by == "share" and wanted is None:
        raise ValueError("by='share' ranks neurons by a token: give token= or tokens=")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    layers = list(scan.layers) if layers is None else list(dict.fromkeys(int(l) for l in layers))
    lis = [scan.layer_index(l) for l in layers]
    cols = _columns(scan, layers, lis, wanted)
    if by == "selectivity":
        cols.update(_selectivity(scan, layers, pooling, min_docs))
    keep = np.ones(len(cols["neuron"]), bool) if wanted is None else cols["count"] > 0
    if by == "density":
        keep &= cols["max"] > 0
    if by == "selectivity":
        keep &= ~np.isnan(cols["selectivity"])
    order = _rank(cols, by, np.flatnonzero(keep))
    if limit is not None:
        order = order[:limit]
    out = {k: (v[order] if isinstance(v, np.ndarray) else [v[i] for i in order]) for k, v in cols.items()}
    mode = out.pop("_mode")
    out["top_token"] = scan.token_strings(mode)
    if wanted is not None:
        out["token"] = [", ".join(repr(t) for t in scan.token_strings(wanted))] * len(order)
    first = ["layer", "neuron"] + (["token", "count", "share", "mean_activation"] if wanted is not None else [])
    rest = ["top_token", "top_token_share", "density", "max"] + (
        ["selectivity", "selective_for"] if by == "selectivity" else [])
    return pd.DataFrame({k: out[k] for k in first + rest})


def _wanted_tokens(scan: Any, token, tokens) -> list[int] | None:
    """The token ids searched for (``ScanError`` for a string that is not one token), or None."""
    if token is not None and tokens is not None:
        raise ValueError("give token= or tokens=, not both")
    if tokens is None:
        return None if token is None else [scan.token_id(token)]
    if isinstance(tokens, (str, bytes)):
        raise ValueError("tokens= takes a list of tokens; for one token use token=")
    ids = sorted({scan.token_id(t) for t in tokens})
    if not ids:
        raise ValueError("tokens= is empty")
    return ids


def _columns(scan: Any, layers: list[int], lis: list[int], wanted: list[int] | None) -> dict[str, Any]:
    """Per-neuron columns over the searched layers, ``[n_layers * d_mlp]`` each, layer-major."""
    d = scan.d_mlp
    ids = scan.max_token_ids()[lis]  # [L, d, k]
    values = scan.top.values[lis].astype(np.float64)
    kept = (ids >= 0).sum(-1)
    modes, counts = zip(*(token_mode(ids[i]) for i in range(len(lis)))) if lis else ((), ())
    with np.errstate(divide="ignore", invalid="ignore"):
        cols: dict[str, Any] = {
            "layer": np.repeat(np.asarray(layers, dtype=np.int64), d),
            "neuron": np.tile(np.arange(d, dtype=np.int64), len(lis)),
            "_mode": np.concatenate(modes).astype(np.int64) if lis else np.zeros(0, np.int64),
            "top_token_share": (np.concatenate(counts) / np.maximum(kept.ravel(), 1)) if lis else np.zeros(0),
            "density": scan.stats.frac_positive[lis].astype(np.float64).ravel(),
            "max": scan.stats.max[lis].astype(np.float64).ravel(),
        }
        cols["top_token_share"] = np.where(kept.ravel() > 0, cols["top_token_share"], np.nan)
        if wanted is not None:
            hit = np.isin(ids, wanted)  # [L, d, k]
            count = hit.sum(-1)
            cols["count"] = count.ravel().astype(np.int64)
            cols["share"] = np.where(kept > 0, count / np.maximum(kept, 1), np.nan).ravel()
            cols["mean_activation"] = np.where(count > 0, (values * hit).sum(-1) / np.maximum(count, 1),
                                               np.nan).ravel()
    return cols


def _selectivity(scan: Any, layers: list[int], pooling: str, min_docs: int) -> dict[str, Any]:
    """``selectivity`` and ``selective_for`` of every neuron of ``layers`` (one layer of pooled values read at a
    time)."""
    if scan.labels is None:
        raise ScanError("by='selectivity' needs a labelled scan (scan a corpus with labels)")
    sel, cat = zip(*(scan.selectivity(l, pooling, min_docs) for l in layers))
    cat = np.concatenate(cat)
    return {"selectivity": np.concatenate(sel),
            "selective_for": [scan.label_names[c] if c >= 0 else None for c in cat.tolist()]}


def _rank(cols: dict[str, Any], by: str, rows: np.ndarray) -> np.ndarray:
    """``rows`` ordered by ``by``, best first; ties by layer, then neuron (a stable sort of layer-major rows)."""
    def desc(a):
        return -np.nan_to_num(np.asarray(a, np.float64)[rows], nan=-np.inf)

    if by == "share":
        keys = (desc(cols["mean_activation"]), desc(cols["share"]))
    elif by == "density":
        keys = (desc(cols["max"]), np.asarray(cols["density"])[rows])
    else:
        keys = (desc(cols[by]),)
    return rows[np.lexsort(keys)] if len(rows) else rows
