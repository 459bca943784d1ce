"""Per-neuron results of a scan: statistics over every counted token (:class:`NeuronStats`), the ranked examples
kept per neuron (:class:`TopK`), one neuron's examples as a notebook view (:class:`TopExamples`), and the vectorised
per-neuron summaries that rank neurons from a scan alone: the token at each top example's max
(:func:`max_token_ids`), each neuron's most frequent such token (:func:`token_mode`) and its category selectivity
(:func:`category_selectivity`)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["NeuronStats", "TopK", "TopExamples", "max_token_ids", "token_mode", "category_selectivity"]


@dataclass
class NeuronStats:
    """Per-neuron statistics over every counted token of the corpus (pads never, BOS only if asked).

    Attributes: ``count`` tokens; ``mean``, ``std``, ``min``, ``max``, ``frac_positive`` of shape
    ``[n_layers, d_mlp]``; ``hist_counts`` of shape ``[n_layers, d_mlp, len(hist_edges) + 1]`` whose first and last
    bins are open-ended (below the first edge, at or above the last), so each neuron's counts sum to ``count``.
    """

    count: int
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    frac_positive: np.ndarray
    hist_counts: np.ndarray
    hist_edges: np.ndarray
    n_positive: np.ndarray | None = None  # [n_layers, d_mlp] int64 counts behind frac_positive (exact merges)

    _ARRAYS = ("mean", "std", "min", "max", "frac_positive", "hist_counts", "hist_edges")

    def quantile(self, q: float | np.ndarray) -> np.ndarray:
        """Approximate per-neuron quantile(s) from the histograms (linear inside a bin; open bins clamp to min/max).

        Returns shape ``[n_layers, d_mlp]`` (or ``[len(q), n_layers, d_mlp]`` for an array of q). ``q`` must lie in
        [0, 1] (``ValueError`` otherwise, NaN included).
        """
        try:
            q_arr = np.atleast_1d(np.asarray(q, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"q must be a number or an array of numbers in [0, 1], got {q!r:.60}") from None
        bad = ~((q_arr >= 0.0) & (q_arr <= 1.0))  # NaN fails both comparisons
        if bad.any():
            raise ValueError(f"q must be in [0, 1], got {float(q_arr[bad][0])} (a quantile such as 0.99, "
                             "not a percentile)")
        cum = np.cumsum(self.hist_counts, axis=-1)  # [L, d, nb]
        lo = np.concatenate([self.min[..., None], np.broadcast_to(self.hist_edges, self.min.shape + self.hist_edges.shape)], -1)
        hi = np.concatenate([np.broadcast_to(self.hist_edges, self.max.shape + self.hist_edges.shape), self.max[..., None]], -1)
        lo = np.clip(lo, self.min[..., None], self.max[..., None])
        hi = np.clip(hi, self.min[..., None], self.max[..., None])
        out = []
        for qq in q_arr:
            target = qq * self.count
            b = np.minimum((cum < target).sum(-1), cum.shape[-1] - 1)  # first bin reaching the target
            prev = np.where(b > 0, np.take_along_axis(cum, np.maximum(b - 1, 0)[..., None], -1)[..., 0], 0)
            inbin = np.take_along_axis(self.hist_counts, b[..., None], -1)[..., 0]
            frac = np.where(inbin > 0, (target - prev) / np.maximum(inbin, 1), 0.0)
            l_ = np.take_along_axis(lo, b[..., None], -1)[..., 0]
            h_ = np.take_along_axis(hi, b[..., None], -1)[..., 0]
            out.append(l_ + np.clip(frac, 0, 1) * (h_ - l_))
        res = np.stack(out)
        return res[0] if np.ndim(q) == 0 else res

    def layer_quantile(self, q: float | np.ndarray, li: int) -> float | np.ndarray:
        """Approximate quantile(s) of all of one layer's activations pooled over its neurons: :meth:`quantile` of
        the layer's summed histogram. ``li`` is the layer's position in the scan (``Scan.layer_index``). Returns a
        float (``[len(q)]`` for an array of q)."""
        counts = self.hist_counts[li].sum(0)  # [n_bins]
        mean = self.mean[li].astype(np.float64)
        var = float(np.mean(self.std[li].astype(np.float64) ** 2 + mean ** 2) - mean.mean() ** 2)
        one = lambda v: np.full((1, 1), v, dtype=np.float64)  # [1 layer, 1 neuron]
        pooled = NeuronStats(count=int(counts.sum()), mean=one(mean.mean()), std=one(np.sqrt(max(var, 0.0))),
                             min=one(self.min[li].min()), max=one(self.max[li].max()),
                             frac_positive=one(self.frac_positive[li].mean()), hist_counts=counts[None, None],
                             hist_edges=self.hist_edges)
        res = pooled.quantile(q)[..., 0, 0]
        return float(res) if np.ndim(q) == 0 else res


@dataclass
class TopK:
    """Per-neuron ranked examples: ``values``, ``docs`` and ``positions`` of shape ``[n_layers, d_mlp, k]``.

    ``docs == -1`` marks an empty slot (fewer documents than k). Ties are ordered by document index.
    """

    values: np.ndarray
    docs: np.ndarray
    positions: np.ndarray


@dataclass
class TopExamples:
    """The top (or bottom) examples of one neuron, Neuroscope's protocol: one example per document, ranked by the
    neuron's max (or min) over the document's tokens.

    Attributes: ``docs``, ``values``, ``positions`` (index of the max token in the document's tokens) of shape
    ``[k]``; ``tokens`` token-id arrays; ``str_tokens`` decoded tokens (when the scan stored its tokenizer).
    """

    layer: int
    neuron: int
    which: str
    docs: np.ndarray
    values: np.ndarray
    positions: np.ndarray
    tokens: list[np.ndarray]
    str_tokens: list[list[str]] | None = None
    labels: list[str] | None = None

    def __len__(self) -> int:
        return len(self.docs)

    def __iter__(self) -> Iterator[tuple[int, float, int]]:
        return iter(zip(self.docs.tolist(), self.values.tolist(), self.positions.tolist()))

    def snippet(self, i: int, before: int = 50, after: int = 10) -> tuple[list[str], int]:
        """Tokens around example i's max token: ``(tokens, index of the max token within them)``."""
        toks = self.str_tokens[i] if self.str_tokens is not None else [str(t) for t in self.tokens[i]]
        p = int(self.positions[i])
        start = max(0, p - before)
        return toks[start:p + after + 1], p - start

    def max_tokens(self) -> list[str]:
        """The token at each example's max position."""
        return [self.snippet(i, 0, 0)[0][0] for i in range(len(self))]

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame({
            "doc": self.docs, "value": self.values, "position": self.positions,
            "token": self.max_tokens(),
            "label": self.labels if self.labels is not None else [None] * len(self),
            "snippet": ["".join(self.snippet(i, 20, 5)[0]) for i in range(len(self))],
        })

    def __repr__(self) -> str:
        return f"TopExamples(layer={self.layer}, neuron={self.neuron}, which={self.which!r}, k={len(self)})"

    def _repr_html_(self) -> str:
        vmax = float(np.max(np.abs(self.values))) if len(self) else 1.0
        rows = []
        for i in range(len(self)):
            toks, at = self.snippet(i)
            cells = []
            for j, t in enumerate(toks):
                style = "background:#f4a582;font-weight:bold" if j == at else ""
                cells.append(f'<span style="{style}">{html.escape(t)}</span>')
            lab = html.escape(self.labels[i]) if self.labels else ""
            rows.append(f"<tr><td>{i}</td><td>{int(self.docs[i])}</td><td>{self.values[i]:.3f}</td><td>{lab}</td>"
                        f"<td style='{_SNIPPET_STYLE}'>{''.join(cells)}</td></tr>")
        return (f"<div><b>L{self.layer} N{self.neuron}: {self.which} {len(self)} examples</b> (max |value| "
                f"{vmax:.3f})<table><tr><th>#</th><th>doc</th><th>value</th><th>label</th>"
                f"<th style='text-align:left'>snippet</th></tr>{''.join(rows)}</table></div>")


# Code and tokens read as code: a monospace font, left-aligned, spaces and line breaks kept.
_SNIPPET_STYLE = ("text-align:left;white-space:pre-wrap;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"
                  "monospace;font-size:12px")


def max_token_ids(top: TopK, token_ids: np.ndarray, token_offsets: np.ndarray) -> np.ndarray:
    """The token id at each kept example's max (or min) position: ``[n_layers, d_mlp, k]`` int64 (or the leading
    shape of ``top``'s arrays), ``-1`` for an empty slot. ``token_ids`` / ``token_offsets`` are the scan's ragged
    document tokens (positions index a document's tokens, special tokens included)."""
    keep = top.docs >= 0
    at = token_offsets[np.where(keep, top.docs, 0)] + np.where(keep, top.positions, 0)
    at = np.clip(at, 0, max(len(token_ids) - 1, 0))
    ids = token_ids[at].astype(np.int64) if len(token_ids) else np.zeros(at.shape, np.int64)
    return np.where(keep, ids, -1)


def token_mode(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's most frequent id and how often it occurs: ``ids`` ``[..., k]`` (``-1`` = empty slot) ->
    ``(mode [...], count [...])``. A tie goes to the id whose first occurrence ranks first; a row with no
    example gives ``(-1, 0)``. Vectorised (``[..., k, k]`` comparisons; callers pass one layer at a time)."""
    valid = ids >= 0
    same = (ids[..., :, None] == ids[..., None, :]) & valid[..., None, :]
    counts = np.where(valid, same.sum(-1), 0)  # [..., k]: occurrences of each slot's id
    j = counts.argmax(-1)[..., None]
    mode = np.take_along_axis(ids, j, -1)[..., 0]
    count = np.take_along_axis(counts, j, -1)[..., 0]
    return np.where(count > 0, mode, -1), count


def category_selectivity(x: np.ndarray, labels: np.ndarray, n_categories: int, min_docs: int = 5) -> np.ndarray:
    """Each category's standardised difference from the rest, per neuron: ``[n_categories, d_mlp]`` float64.

    ``x`` ``[n_docs, d_mlp]`` pooled activations (one layer), ``labels`` ``[n_docs]`` category codes. For category
    ``c``: ``(mean_c - mean_rest) / s``, ``s`` the pooled standard deviation of the two groups
    (``sqrt((ss_c + ss_rest) / (n_docs - 2))``, ``ss`` the sums of squared deviations from each group's mean):
    Cohen's d of ``c`` against every other document. NaN where ``c`` or the rest has fewer than ``min_docs``
    documents, or the neuron does not vary within the groups.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    scale = np.abs(x).max(0) if n else np.zeros(x.shape[1:])  # [d]: below 1e-9 of it, a spread is rounding
    x = x - x.mean(0) if n else x  # centred: the sums of squares below lose no precision to a large mean
    onehot = np.zeros((n_categories, n))
    onehot[np.asarray(labels, dtype=np.int64), np.arange(n)] = 1.0
    n_c = onehot.sum(1)[:, None]  # [C, 1]
    n_r = n - n_c
    s1, s2 = onehot @ x, onehot @ (x * x)  # [C, d]
    t1, t2 = x.sum(0), (x * x).sum(0)  # [d]
    with np.errstate(divide="ignore", invalid="ignore"):
        m_c, m_r = s1 / n_c, (t1 - s1) / n_r
        ss = (s2 - n_c * m_c ** 2) + ((t2 - s2) - n_r * m_r ** 2)
        sd = np.sqrt(np.maximum(ss, 0.0) / max(n - 2, 1))
        d = (m_c - m_r) / sd
    ok = (n_c >= max(min_docs, 1)) & (n_r >= max(min_docs, 1)) & (n >= 3) & (sd > 1e-9 * scale)
    return np.where(ok, d, np.nan)
