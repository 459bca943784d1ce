"""What an effect measurement returns: :class:`Effect` (one edit of some neurons, per token), :class:`NeuronScores`
(every neuron of a layer scored: attribution patching or exact ablation), :class:`NeuronEffects` (one neuron on its
top examples and on random documents); each has ``to_pandas()``, ``figure()`` (plotly) and a notebook view. And
:class:`DocScores` (attribution patching per document, the arrays behind per-neuron estimates on chosen
documents)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Effect", "NeuronScores", "DocScores", "NeuronEffects"]

_CELL = "style='text-align:left;padding:2px 8px'"
_MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre"


def _table_html(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th {_CELL}>{html.escape(str(k))}</th><td {_CELL}>{html.escape(str(v))}</td></tr>"
                   for k, v in rows)
    return f"<table style='text-align:left'>{body}</table>"


def _frame_html(df, mono: tuple[str, ...] = ("token",)) -> str:
    """A small DataFrame as a left-aligned table, token columns in monospace (whitespace visible)."""
    head = "".join(f"<th {_CELL}>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, rec):
            text = f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
            style = f"text-align:left;padding:2px 8px;{_MONO if c in mono else ''}"
            cells.append(f"<td style='{style}'>{html.escape(repr(v) if c in mono else text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table style='text-align:left'><tr>{head}</tr>{''.join(rows)}</table>"


def _describe_edit(how: str, neurons: list[int], values: list[float]) -> str:
    what = {"zero": "zero-ablated", "mean": "mean-ablated", "value": "set to", "scale": "scaled by",
            "add": "shifted by"}[how]
    if how in ("zero", "mean"):
        return f"neurons {neurons} {what}"
    return f"neurons {neurons} {what} {', '.join(f'{v:g}' for v in values)}"


@dataclass
class Effect:
    """The effect of editing some neurons of one layer at every position (BOS included), measured per token.

    Causal models: the change in next-token loss. ``table`` has one row per predicted token (a real text token,
    predicted from the tokens before it; the BOS and pads are never targets): ``doc``, ``position`` (of the
    predicted token in the document's tokens, special tokens included), ``token``, ``token_id``,
    ``loss_before``, ``loss_after``, ``delta``. ``logit_change`` / ``logprob_change``: ``[d_vocab]``, the mean
    change of each vocabulary entry's logit / log-probability over those predictions.

    Encoders (BERT, MiniLM) predict no next token: ``table`` has one row per real token (special tokens included)
    with the change of the final hidden state: ``l2_change`` (``|h' - h|``), ``relative_change``
    (``|h' - h| / |h|``) and ``cosine`` (between ``h`` and ``h'``); ``loss_change`` is None and
    ``output_change`` the mean ``l2_change``.
    """

    layer: int
    neurons: list[int]
    how: str
    values: list[float]
    causal: bool
    table: Any
    logit_change: np.ndarray | None = None
    logprob_change: np.ndarray | None = None
    token_names: dict[int, str] = field(default_factory=dict, repr=False)
    model_id: str = ""
    source: str = "texts"

    @property
    def n_tokens(self) -> int:
        return len(self.table)

    @property
    def loss_before(self) -> float | None:
        """Mean next-token loss without the edit (None for an encoder)."""
        return float(self.table["loss_before"].mean()) if self.causal else None

    @property
    def loss_after(self) -> float | None:
        return float(self.table["loss_after"].mean()) if self.causal else None

    @property
    def loss_change(self) -> float | None:
        """Mean change in next-token loss over every predicted token (positive: the edit hurt; None: encoder)."""
        return float(self.table["delta"].mean()) if self.causal else None

    @property
    def output_change(self) -> float | None:
        """Encoders: mean L2 change of the final hidden state per token (None for a causal model)."""
        return None if self.causal else float(self.table["l2_change"].mean())

    def top_logits(self, k: int = 10, by: str = "logit"):
        """The ``k`` vocabulary entries the edit raised most and the ``k`` it lowered most, averaged over every
        prediction: a DataFrame (``direction``, ``token``, ``token_id``, ``logit_change``, ``logprob_change``).
        ``by="logprob"`` ranks by the log-probability change (free of the shift shared by every logit)."""
        import pandas as pd

        if not self.causal:
            raise ValueError("an encoder has no next-token logits; see output_change and the table")
        if by not in ("logit", "logprob"):
            raise ValueError(f"by must be 'logit' or 'logprob', got {by!r}")
        key = self.logit_change if by == "logit" else self.logprob_change
        k = max(1, min(int(k), len(key) // 2, _N_NAMED))
        order = np.argsort(-key, kind="stable")
        rows = [(d, int(i)) for d, ids in (("up", order[:k]), ("down", order[::-1][:k])) for i in ids]
        return pd.DataFrame({
            "direction": [d for d, _ in rows], "token": [self.token_names.get(i, str(i)) for _, i in rows],
            "token_id": [i for _, i in rows], "logit_change": [float(self.logit_change[i]) for _, i in rows],
            "logprob_change": [float(self.logprob_change[i]) for _, i in rows]})

    def per_doc(self):
        """One row per document: its number of measured tokens and mean change (loss, or L2 for an encoder)."""
        col = "delta" if self.causal else "l2_change"
        g = self.table.groupby("doc")[col]
        return g.agg(["count", "mean"]).rename(columns={"count": "n_tokens", "mean": col}).reset_index()

    def to_pandas(self):
        """The per-token table (a copy)."""
        return self.table.copy()

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer, "neurons": list(self.neurons), "how": self.how,
                               "values": list(self.values), "measured on": self.source,
                               "documents": int(self.table["doc"].nunique()), "tokens": self.n_tokens}
        if self.causal:
            out.update({"loss before": self.loss_before, "loss after": self.loss_after,
                        "loss change": self.loss_change})
        else:
            out.update({"metric": "final hidden state change (encoder: no next-token loss)",
                        "mean L2 change": self.output_change,
                        "mean cosine": float(self.table["cosine"].mean())})
        return out

    def figure(self):
        """Causal: the per-token loss change (histogram) and the top logit changes (bars); encoder: the per-token
        L2 change of the final hidden state (histogram)."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        col = "delta" if self.causal else "l2_change"
        title = _describe_edit(self.how, self.neurons, self.values) + f", layer {self.layer}"
        if not self.causal:
            fig = go.Figure(go.Histogram(x=self.table[col], nbinsx=50, marker_color="#2166ac"))
            fig.update_layout(title=title + ": final hidden state change per token (encoder)",
                              xaxis_title="L2 change", yaxis_title="tokens", height=360)
            return fig
        fig = make_subplots(rows=1, cols=2, subplot_titles=("next-token loss change per token",
                                                            "mean logit change (top tokens)"))
        fig.add_trace(go.Histogram(x=self.table[col], nbinsx=50, marker_color="#b2182b", showlegend=False), 1, 1)
        top = self.top_logits(8)
        fig.add_trace(go.Bar(x=top["logit_change"], y=[repr(t) for t in top["token"]], orientation="h",
                             marker_color=np.where(top["logit_change"] > 0, "#2166ac", "#b2182b"),
                             showlegend=False), 1, 2)
        fig.update_layout(title=f"{title}: loss change {self.loss_change:+.4f}", height=380)
        fig.update_xaxes(title_text="loss after - before", row=1, col=1)
        return fig

    def __repr__(self) -> str:
        main = f"loss_change={self.loss_change:+.5f}" if self.causal else f"output_change={self.output_change:.5f}"
        return (f"Effect(layer={self.layer}, neurons={self.neurons}, how={self.how!r}, tokens={self.n_tokens}, "
                f"{main})")

    def _repr_html_(self) -> str:
        what = html.escape(_describe_edit(self.how, self.neurons, self.values))
        parts = [f"<div style='text-align:left'><b>{what}, layer {self.layer}</b>",
                 _table_html(list(self.summary().items()))]
        if self.causal:
            parts.append("<p>top logit changes</p>" + _frame_html(self.top_logits(5)))
        col = "delta" if self.causal else "l2_change"
        worst = self.table.reindex(self.table[col].abs().sort_values(ascending=False).index).head(8)
        parts.append("<p>tokens changed most</p>" + _frame_html(worst))
        return "".join(parts) + "</div>"


_N_NAMED = 100  # how many vocabulary entries per direction and measure get a display string


@dataclass
class NeuronScores:
    """Every neuron of one layer (or a subset) scored by the change its ablation makes.

    ``scores`` ``[n]``: the change in mean next-token loss when the neuron is ablated (``how``: set to zero or to
    its mean), estimated by attribution patching (``method="attribution"``: ``(target - a) . dL/da`` summed over
    positions, one backward pass for all neurons) or measured (``method="exact"``: one edited forward per neuron).
    For an encoder (exact only) the score is the mean L2 change of the final hidden state per token.
    ``act_grad`` ``[n]``: attribution's mean activation x gradient (None for exact). ``neurons`` ``[n]``: the
    neuron ids scored.
    """

    layer: int
    neurons: np.ndarray
    scores: np.ndarray
    method: str
    how: str
    metric: str
    clean_loss: float | None
    n_tokens: int
    act_grad: np.ndarray | None = None
    model_id: str = ""

    def ranking(self) -> np.ndarray:
        """Neuron ids ``[n]``, the largest score (the biggest loss increase when ablated) first."""
        return self.neurons[np.argsort(-self.scores, kind="stable")]

    def top(self, k: int = 10):
        """The ``k`` highest-scoring neurons as a DataFrame."""
        return self.to_pandas().head(int(k))

    def to_pandas(self):
        """One row per neuron, ranked: ``rank``, ``neuron``, ``score`` (and ``act_grad`` for attribution)."""
        import pandas as pd

        order = np.argsort(-self.scores, kind="stable")
        data = {"rank": np.arange(1, len(order) + 1), "neuron": self.neurons[order], "score": self.scores[order]}
        if self.act_grad is not None:
            data["act_grad"] = self.act_grad[order]
        return pd.DataFrame(data)

    def figure(self):
        """Scores of every neuron (scatter by neuron id), the top 10 labelled."""
        import plotly.graph_objects as go

        top = set(self.ranking()[:10].tolist())
        fig = go.Figure(go.Scattergl(x=self.neurons, y=self.scores, mode="markers", marker={"size": 4},
                                     text=[f"L{self.layer}N{n}" for n in self.neurons], showlegend=False))
        sel = np.isin(self.neurons, list(top))
        fig.add_trace(go.Scatter(x=self.neurons[sel], y=self.scores[sel], mode="markers+text",
                                 text=[str(n) for n in self.neurons[sel]], textposition="top center",
                                 marker={"size": 7, "color": "#b2182b"}, showlegend=False))
        fig.update_layout(title=f"layer {self.layer}: {self.metric} change when ablated ({self.how}, {self.method})",
                          xaxis_title="neuron", yaxis_title="score", height=380)
        return fig

    def __repr__(self) -> str:
        return (f"NeuronScores(layer={self.layer}, n={len(self.neurons)}, method={self.method!r}, how={self.how!r}, "
                f"top={self.ranking()[:5].tolist()})")

    def _repr_html_(self) -> str:
        rows = [("layer", self.layer), ("neurons scored", len(self.neurons)), ("method", self.method),
                ("ablation", self.how), ("metric", self.metric), ("clean loss", self.clean_loss),
                ("tokens", self.n_tokens)]
        return (f"<div style='text-align:left'>{_table_html(rows)}<p>top neurons</p>"
                f"{_frame_html(self.top(10), mono=())}</div>")


@dataclass
class DocScores:
    """Attribution patching per document: ``scores`` ``[n_docs, d_mlp]``, the first-order change in each document's
    summed next-token loss when a neuron of ``layer`` is ablated (``how``: set to zero or to the scan's mean);
    ``n_tokens`` ``[n_docs]``, each document's predictions; ``docs`` ``[n_docs]``, the documents' ids (scan
    document ids, or indices of the texts)."""

    layer: int
    docs: np.ndarray
    scores: np.ndarray
    n_tokens: np.ndarray
    how: str
    clean_loss: float
    model_id: str = ""

    def mean_over(self, docs, neurons=None) -> np.ndarray:
        """The mean change per prediction over the documents ``docs`` (ids of ``docs``, each once), for
        ``neurons`` (default every neuron): ``[n_neurons]``, what :func:`~mri_lens.effects.attribution` gives on
        those documents alone."""
        row_of = {int(d): i for i, d in enumerate(self.docs.tolist())}
        rows = [row_of[int(d)] for d in dict.fromkeys(int(d) for d in docs)]
        cols = slice(None) if neurons is None else np.asarray(list(neurons), dtype=np.int64)
        n = int(self.n_tokens[rows].sum())
        if n == 0:
            raise ValueError("those documents have no predicted tokens")
        return self.scores[rows][:, cols].sum(0) / n

    def __repr__(self) -> str:
        return (f"DocScores(layer={self.layer}, docs={len(self.docs)}, d_mlp={self.scores.shape[1]}, "
                f"how={self.how!r}, tokens={int(self.n_tokens.sum())})")


@dataclass
class NeuronEffects:
    """One neuron's ablation measured on its top examples (``top``) and on random documents (``random``)."""

    layer: int
    neuron: int
    top: Effect
    random: Effect

    def to_pandas(self):
        """One row per document set: its summary (tokens, loss before/after/change, or the encoder's change)."""
        import pandas as pd

        return pd.DataFrame([{"examples": name, **{k: v for k, v in e.summary().items()
                                                    if k not in ("layer", "neurons", "values")}}
                             for name, e in (("top examples", self.top), ("random", self.random))])

    def figure(self):
        """Per-token change on the top examples and on random documents, overlaid."""
        import plotly.graph_objects as go

        col = "delta" if self.top.causal else "l2_change"
        fig = go.Figure()
        for name, e, colour in (("top examples", self.top, "#b2182b"), ("random", self.random, "#2166ac")):
            fig.add_trace(go.Histogram(x=e.table[col], name=name, opacity=0.6, nbinsx=50, marker_color=colour,
                                       histnorm="probability"))
        fig.update_layout(barmode="overlay", height=360, xaxis_title=col, yaxis_title="share of tokens",
                          title=f"L{self.layer}N{self.neuron} {self.top.how}-ablated")
        return fig

    def _repr_html_(self) -> str:
        return (f"<div style='text-align:left'><b>L{self.layer}N{self.neuron}, {html.escape(self.top.how)}-ablated"
                f"</b>{_frame_html(self.to_pandas(), mono=())}</div>")
