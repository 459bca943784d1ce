"""Scan results: plain dataclasses with save/load (safetensors + JSON), figures and notebook views.

This is the public API every lens consumes; none of them touches capture internals.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator, Sequence

import numpy as np

from ..storage.write import TENSORS, ResultWriter
from ..storage.read import load_result
from ..errors import ScanError, ScanFileError
from .pooled import LAZY_NAMES, LayerFilePooled, PartDocs, PooledArrays, SplitPooled, layer_file
from ..model.tokens import display_tokens

__all__ = ["Scan", "NeuronStats", "TopK", "TopExamples"]

SCAN_FORMAT = "mri_lens.scan"
SCAN_SCHEMA = 3  # 3: pooled values per layer (or in the parts of a sharded run); 2: versioned; 1: flat (all load)
_TOKENIZER_FILE = "tokenizer.json"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_tokenizer(text: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)


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
                        f"<td style='text-align:left;white-space:pre-wrap'>{''.join(cells)}</td></tr>")
        return (f"<div><b>L{self.layer} N{self.neuron}: {self.which} {len(self)} examples</b> (max |value| "
                f"{vmax:.3f})<table><tr><th>#</th><th>doc</th><th>value</th><th>label</th><th>snippet</th></tr>"
                f"{''.join(rows)}</table></div>")


@dataclass
class Scan:
    """Everything a scan keeps. Arrays index layers by position in ``layers`` (the model's layer numbers).

    Attributes
    ----------
    layers: model layer numbers captured, ``[n_layers]``.
    pooled_: pooling name -> ``[n_docs, n_layers, d_mlp]``: in memory, or (a loaded scan) on disk, one file per
        layer, read by :meth:`pooled` one layer at a time (:mod:`mri_lens.results.pooled`).
    stats: :class:`NeuronStats`.
    top, bottom: :class:`TopK` by the document's max / min.
    token_ids, token_offsets: every document's input tokens (special tokens included), ragged:
        document i is ``token_ids[token_offsets[i]:token_offsets[i+1]]``.
    doc_token_counts: ``[n_docs]`` tokens of each document counted in statistics.
    labels, label_names: the corpus labels (int codes) and their names, or None.
    meta: model, tokenisation and run facts (model id, hook template, prepend_bos, padding side, versions...).
    """

    layers: list[int]
    pooled_: dict[str, np.ndarray] | PooledArrays
    stats: NeuronStats
    top: TopK
    bottom: TopK
    token_ids: np.ndarray
    token_offsets: np.ndarray
    doc_token_counts: np.ndarray
    labels: np.ndarray | None = None
    label_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    tokenizer_json: str | None = None

    # ------------------------------------------------------------------ shapes and lookup
    @property
    def n_docs(self) -> int:
        return len(self.token_offsets) - 1

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_mlp(self) -> int:
        return int(self.stats.mean.shape[1])

    @property
    def poolings(self) -> list[str]:
        return list(self.pooled_)

    def layer_index(self, layer: int) -> int:
        """Position of model layer ``layer`` in this scan's arrays."""
        try:
            return self.layers.index(int(layer))
        except ValueError:
            raise ScanError(f"layer {layer} was not scanned; this scan has layers {self.layers}") from None

    def _check_neuron(self, neuron: int) -> int:
        if not 0 <= int(neuron) < self.d_mlp:
            raise ScanError(f"neuron must be in 0..{self.d_mlp - 1}, got {neuron}")
        return int(neuron)

    def pooled(self, name: str = "mean", layer: int | None = None) -> np.ndarray:
        """Pooled activations ``[n_docs, n_layers, d_mlp]``, or ``[n_docs, d_mlp]`` for one model layer.

        On a loaded scan one layer is read from disk (memory-mapped); all layers (``layer=None``) are read into
        memory, so lenses ask for one layer at a time."""
        if name not in self.pooled_:
            raise ScanError(f"pooling {name!r} was not kept; this scan has {self.poolings}")
        if layer is None:
            return self.pooled_[name]
        li = self.layer_index(layer)
        if isinstance(self.pooled_, PooledArrays):
            return self.pooled_.layer(name, li)
        return self.pooled_[name][:, li]

    def verify(self) -> None:
        """Check the SHA-256 of every pooled file of a loaded scan (reads them all; loading checks their sizes and
        the checksums of everything else). Raises :class:`~mri_lens.errors.ScanFileError` for a damaged file."""
        check = getattr(self.pooled_, "verify", None)
        if check is not None:
            check()

    def tokens(self, doc: int) -> np.ndarray:
        """Input token ids of document ``doc`` (special tokens included) ``[n_tokens]``."""
        if not 0 <= doc < self.n_docs:
            raise ScanError(f"doc must be in 0..{self.n_docs - 1}, got {doc}")
        return self.token_ids[self.token_offsets[doc]:self.token_offsets[doc + 1]]

    @cached_property
    def _tokenizer(self):
        return None if self.tokenizer_json is None else _parse_tokenizer(self.tokenizer_json)

    def str_tokens(self, doc: int) -> list[str]:
        """Decoded tokens of document ``doc`` (one string per token, joining them gives the text back);
        ids as strings if no tokenizer was stored."""
        ids = self.tokens(doc).tolist()
        tok = self._tokenizer
        if tok is None:
            return [str(i) for i in ids]
        return display_tokens(tok, ids)

    def label_of(self, doc: int) -> str | None:
        return None if self.labels is None else self.label_names[int(self.labels[doc])]

    def top_examples(self, layer: int, neuron: int, k: int | None = None, which: str = "top") -> TopExamples:
        """Neuroscope's top-k: documents ranked by the neuron's max over their tokens (``which="bottom"``: by min).

        ``layer`` is the model's layer number. At most the scan's ``top_k`` examples exist; ``k`` (None or a
        positive integer, else :class:`~mri_lens.errors.ScanError`) keeps the first ``k`` of them.
        """
        if which not in ("top", "bottom"):
            raise ValueError("which must be 'top' or 'bottom'")
        if k is not None and (isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ScanError(f"k must be None (every kept example) or a positive integer, got {k!r}")
        li = self.layer_index(layer)
        n = self._check_neuron(neuron)
        src = self.top if which == "top" else self.bottom
        docs = src.docs[li, n]
        keep = docs >= 0
        if k is not None:
            keep &= np.arange(len(docs)) < k
        docs = docs[keep]
        has_tok = self._tokenizer is not None
        return TopExamples(
            layer=int(layer), neuron=n, which=which, docs=docs, values=src.values[li, n][keep],
            positions=src.positions[li, n][keep], tokens=[self.tokens(int(d)) for d in docs],
            str_tokens=[self.str_tokens(int(d)) for d in docs] if has_tok else None,
            labels=[self.label_of(int(d)) for d in docs] if self.labels is not None else None,
        )

    def token_activations(self, model: Any, docs: Sequence[int], layer: int | None = None) -> list[np.ndarray]:
        """Per-token activations of a few scanned documents, recomputed from ``model``: ``[n_tokens, d_mlp]``
        each. A thin delegate of :func:`mri_lens.model.capture.scan_token_activations` (the scan itself never runs a
        model; this runs the one you pass)."""
        from ..model.capture import scan_token_activations

        return scan_token_activations(model, self, docs, layer)

    def neuron_table(self, layer: int):
        """Per-neuron statistics of one layer as a pandas DataFrame (one row per neuron)."""
        import pandas as pd

        li = self.layer_index(layer)
        s = self.stats
        return pd.DataFrame({
            "neuron": np.arange(self.d_mlp), "mean": s.mean[li], "std": s.std[li], "min": s.min[li],
            "max": s.max[li], "frac_positive": s.frac_positive[li], "top_value": self.top.values[li, :, 0],
            "top_doc": self.top.docs[li, :, 0],
        })

    def category_means(self, pooling: str = "mean") -> tuple[list[str], np.ndarray]:
        """Mean pooled activation per category: ``(names, [n_categories, n_layers, d_mlp])`` (layer by layer)."""
        if self.labels is None:
            raise ScanError("the scan has no labels")
        out = np.zeros((len(self.label_names), self.n_layers, self.d_mlp), dtype=np.float32)
        for li, layer in enumerate(self.layers):
            arr = np.asarray(self.pooled(pooling, layer), dtype=np.float32)
            for c in range(len(self.label_names)):
                if np.any(self.labels == c):
                    out[c, li] = arr[self.labels == c].mean(0)
        return list(self.label_names), out

    # ------------------------------------------------------------------ figures and display
    def figure(self):
        """Per-layer overview: distribution of neuron maxima and of the fraction of tokens where a neuron is > 0."""
        from plotly.subplots import make_subplots
        import plotly.graph_objects as go

        fig = make_subplots(rows=1, cols=2, subplot_titles=("neuron max activation", "fraction of tokens > 0"))
        for li, layer in enumerate(self.layers):
            fig.add_trace(go.Box(y=self.stats.max[li], name=f"L{layer}", boxpoints=False, showlegend=False,
                                 marker_color="#b2182b"), 1, 1)
            fig.add_trace(go.Box(y=self.stats.frac_positive[li], name=f"L{layer}", boxpoints=False, showlegend=False,
                                 marker_color="#2166ac"), 1, 2)
        fig.update_layout(title=f"{self.meta.get('model_id', 'model')}: {self.n_docs} documents, "
                          f"{self.stats.count} tokens", height=380)
        return fig

    def __repr__(self) -> str:
        lab = f", labels={len(self.label_names)}" if self.label_names else ""
        return (f"Scan(model={self.meta.get('model_id')!r}, n_docs={self.n_docs}, layers={self.layers}, "
                f"d_mlp={self.d_mlp}, tokens={self.stats.count}, pooling={self.poolings}{lab})")

    def _repr_html_(self) -> str:
        m = self.meta
        rows = [("model", m.get("model_id")), ("architecture", m.get("architecture")),
                ("documents", self.n_docs), ("tokens counted", self.stats.count), ("layers", self.layers),
                ("d_mlp", self.d_mlp), ("hook", m.get("hook_template")), ("prepend_bos", m.get("prepend_bos")),
                ("BOS in statistics", not m.get("bos_excluded_from_stats", False)),
                ("padding side", m.get("padding_side")), ("pooling", self.poolings), ("top_k", m.get("top_k")),
                ("labels", self.label_names)]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
                       f"{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<div><b>mri_lens Scan</b><table>{body}</table></div>"

    # ------------------------------------------------------------------ persistence
    def _eager_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"stats.{k}": getattr(self.stats, k) for k in NeuronStats._ARRAYS}
        if self.stats.n_positive is not None:
            arrays["stats.n_positive"] = self.stats.n_positive
        for name, tk in (("top", self.top), ("bottom", self.bottom)):
            arrays[f"{name}.values"], arrays[f"{name}.docs"], arrays[f"{name}.positions"] = \
                tk.values, tk.docs, tk.positions
        arrays["token_ids"] = self.token_ids
        arrays["token_offsets"] = self.token_offsets
        arrays["doc_token_counts"] = self.doc_token_counts
        if self.labels is not None:
            arrays["labels"] = self.labels
        return arrays

    def save(self, path, *, overwrite: bool = False) -> str:
        """Write to directory ``path`` atomically (safetensors + JSON). Returns the absolute path.

        Statistics, top-k, tokens and labels go into one file read at every load; pooled values into one file per
        pooling and layer (``pooled.<name>.L<layer>.safetensors``), memory-mapped when used. A scan whose pooled
        values live in the parts of a sharded run in this same directory keeps them there (nothing is copied).
        Replaces only a saved scan: a directory holding anything else (or a file) is refused with
        :class:`~mri_lens.errors.ScanFileError` unless ``overwrite=True``, which writes beside foreign files and
        never removes them (see :mod:`mri_lens.storage.write`). A kill at any instant leaves the old or the new scan.
        """
        import json
        import os

        meta = {"scan": self.meta, "layers": self.layers, "label_names": self.label_names,
                "stats_count": int(self.stats.count), "poolings": self.poolings,
                "has_tokenizer": self.tokenizer_json is not None}
        json.dumps(meta, allow_nan=False)  # fail before writing anything
        target = os.path.abspath(os.fspath(path))
        run = _run_of(self.pooled_, target)
        with ResultWriter(target, fmt=SCAN_FORMAT, schema=SCAN_SCHEMA, overwrite=overwrite,
                          keep_runs=[run] if run else []) as w:
            w.write_arrays(TENSORS, self._eager_arrays())
            if self.tokenizer_json is not None:
                w.write_text(_TOKENIZER_FILE, self.tokenizer_json)
            if run:
                parts = [int(os.path.basename(p.loaded.path)[len("part-"):]) for p in self.pooled_.parts]
                meta["pooled"] = {"layout": "parts", "run": run, "parts": parts, "d_mlp": self.d_mlp,
                                  "dtype": str(self.pooled_.dtype)}
            else:
                dtype = None
                for name in self.poolings:
                    for li, layer in enumerate(self.layers):
                        values = np.asarray(self.pooled(name, layer))
                        dtype = str(values.dtype)
                        w.write_arrays(layer_file("pooled", name, layer), {"values": values}, lazy=True)
                meta["pooled"] = {"layout": "layers", "dtype": dtype}
            return w.commit(meta)

    @classmethod
    def load(cls, path) -> "Scan":
        """Read a directory written by :meth:`save` (pooled values stay on disk until a layer is used); raises
        :class:`~mri_lens.errors.ScanFileError` when it is missing, truncated, corrupted, foreign or inconsistent.
        File sizes and the checksums of everything but the pooled values are checked now; :meth:`verify` checks
        the pooled values' checksums too."""
        import os
        import re

        r = load_result(path, fmt=SCAN_FORMAT, schema=SCAN_SCHEMA, files=(_TOKENIZER_FILE,), lazy=LAZY_NAMES)
        arrays, meta, extras = r.arrays, r.meta, r.extras
        try:
            layers = meta["layers"]
            poolings = meta["poolings"]
            label_names = meta.get("label_names")
            if not isinstance(layers, list) or not all(_is_int(l) and l >= 0 for l in layers) \
                    or len(set(layers)) != len(layers):
                raise ValueError("layers")
            if not isinstance(poolings, list) or not poolings or not all(isinstance(x, str) for x in poolings) \
                    or len(set(poolings)) != len(poolings):
                raise ValueError("poolings")
            if label_names is not None and (not isinstance(label_names, list)
                                            or not all(isinstance(x, str) for x in label_names)
                                            or len(set(label_names)) != len(label_names)):
                raise ValueError("label_names")
            if not _is_int(meta["stats_count"]) or meta["stats_count"] < 0 or not isinstance(meta.get("scan", {}),
                                                                                            dict):
                raise ValueError("stats_count")
            layers = [int(l) for l in layers]
            n_docs = len(arrays["token_offsets"]) - 1
            d_mlp = int(arrays["stats.mean"].shape[-1])
            layout = meta.get("pooled") or {"layout": "arrays"}
            if not isinstance(layout, dict):
                raise ValueError("pooled")
            if layout["layout"] == "arrays":  # schema 1-2: pooled values inside arrays.safetensors
                pooled = {p: arrays[f"pooled.{p}"] for p in poolings}
            elif layout["layout"] == "layers":
                expected = {layer_file("pooled", p, l) for p in poolings for l in layers}
                if {k for k, v in r.lazy.items() if v.lazy} != expected:
                    raise ValueError("its pooled files do not match its layers and poolings")
                if any(r.lazy[f].shape != [n_docs, d_mlp] for f in expected):
                    raise ValueError("a pooled file does not match the documents")
                pooled = LayerFilePooled(r, poolings, layers, n_docs, d_mlp, layout["dtype"])
            elif layout["layout"] == "parts":
                run = layout["run"]
                if not isinstance(run, str) or not re.fullmatch(r"run-[0-9a-f]{16}", run):
                    raise ValueError("run")
                ids = layout["parts"]
                if not isinstance(ids, list) or not ids or not all(_is_int(i) and 0 <= i < 10 ** 5 for i in ids):
                    raise ValueError("parts")
                plan_hash = meta.get("scan", {}).get("plan_hash")
                parts = [PartDocs(os.path.join(os.fspath(path), run, f"part-{i:05d}"), plan_hash=plan_hash)
                         for i in ids]
                if any(p.layers != layers or p.poolings != poolings for p in parts):
                    raise ValueError("a part of other layers or poolings")
                covered = np.concatenate([p.complete_docs for p in parts] + [np.unique(np.concatenate(
                    [p.partial_docs for p in parts]))])
                if not np.array_equal(np.sort(covered), np.arange(n_docs)):
                    raise ValueError("the parts do not cover the documents exactly once")
                pooled = SplitPooled(parts, n_docs, d_mlp, arrays["doc_token_counts"], layout["dtype"])
            else:
                raise ValueError("pooled layout")
            stats = NeuronStats(count=int(meta["stats_count"]),
                                **{k: arrays[f"stats.{k}"] for k in NeuronStats._ARRAYS},
                                n_positive=arrays.get("stats.n_positive"))
            top = TopK(arrays["top.values"], arrays["top.docs"], arrays["top.positions"])
            bottom = TopK(arrays["bottom.values"], arrays["bottom.docs"], arrays["bottom.positions"])
            scan = cls(layers=layers, pooled_=pooled, stats=stats, top=top, bottom=bottom,
                       token_ids=arrays["token_ids"], token_offsets=arrays["token_offsets"],
                       doc_token_counts=arrays["doc_token_counts"], labels=arrays.get("labels"),
                       label_names=label_names, meta=meta.get("scan", {}),
                       tokenizer_json=extras.get(_TOKENIZER_FILE))
        except ScanFileError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise ScanFileError(f"{path} is not a consistent saved scan: missing or malformed {e}") from None
        scan._validate(path)
        scan.source_path = os.path.abspath(os.fspath(path))  # where it was read from (workers can read it too)
        if meta.get("has_tokenizer", scan.tokenizer_json is not None) is not (scan.tokenizer_json is not None):
            raise ScanFileError(f"{path} is not a consistent saved scan: its {_TOKENIZER_FILE} is "
                                + ("missing from the manifest" if scan.tokenizer_json is None else "unexpected"))
        if scan.tokenizer_json is not None:
            try:  # parsed now, so a damaged tokenizer is a load error, not a surprise in a later view
                scan.__dict__["_tokenizer"] = _parse_tokenizer(scan.tokenizer_json)
            except Exception:  # noqa: BLE001 - the tokenizers library raises bare Exceptions
                raise ScanFileError(f"{path} is not a consistent saved scan: {_TOKENIZER_FILE} is not a valid "
                                    "tokenizer") from None
        return scan

    def _validate(self, path) -> None:
        n, L = self.n_docs, self.n_layers
        problems = []
        s = self.stats
        if s.mean.ndim != 2 or s.mean.shape[0] != L:
            raise ScanFileError(f"{path} is not a consistent saved scan: stats.mean has the wrong shape")
        d = s.mean.shape[-1]
        if isinstance(self.pooled_, PooledArrays):
            if (self.pooled_.n_docs, len(self.pooled_.layers), self.pooled_.d_mlp) != (n, L, d) \
                    or np.dtype(self.pooled_.dtype).kind != "f":
                problems.append("the pooled values do not match the documents and layers")
        else:
            for p, a in self.pooled_.items():
                if a.shape != (n, L, d) or a.dtype.kind != "f":
                    problems.append(f"pooled.{p} has shape {a.shape}, expected {(n, L, d)}")
        for name in ("mean", "std", "min", "max", "frac_positive"):
            a = getattr(s, name)
            if a.shape != (L, d) or a.dtype.kind != "f":
                problems.append(f"stats.{name} has the wrong shape or dtype")
        if s.hist_edges.ndim != 1 or s.hist_edges.dtype.kind != "f" or s.hist_counts.dtype.kind not in "iu" \
                or s.hist_counts.shape != (L, d, len(s.hist_edges) + 1):
            problems.append("stats.hist_counts does not match hist_edges")
        for tk in (self.top, self.bottom):
            if not (tk.values.shape == tk.docs.shape == tk.positions.shape) or tk.values.ndim != 3 \
                    or tk.values.shape[:2] != (L, d) or tk.docs.dtype.kind not in "iu" \
                    or tk.positions.dtype.kind not in "iu" or tk.values.dtype.kind != "f":
                problems.append("top/bottom arrays have inconsistent shapes")
            elif tk.docs.size and (tk.docs.max() >= n or tk.docs.min() < -1):
                problems.append("top/bottom refer to documents that do not exist")
        off = self.token_offsets
        if off.ndim != 1 or off.dtype.kind not in "iu" or self.token_ids.ndim != 1 \
                or self.token_ids.dtype.kind not in "iu" or len(off) < 1:
            problems.append("token arrays are malformed")
        elif off[0] != 0 or off[-1] != len(self.token_ids) or np.any(np.diff(off) < 0):
            problems.append("token offsets are inconsistent")
        if self.doc_token_counts.shape != (max(n, 0),):
            problems.append("doc_token_counts does not match the documents")
        if self.labels is not None:
            lab = self.labels
            if self.label_names is None or lab.shape != (n,) or lab.dtype.kind not in "iu":
                problems.append("labels do not match the documents")
            elif lab.size and (lab.min() < 0 or lab.max() >= len(self.label_names)):
                problems.append("label codes outside label_names")
        elif self.label_names is not None:
            problems.append("label_names without labels")
        if problems:
            raise ScanFileError(f"{path} is not a consistent saved scan: " + "; ".join(problems))


def _run_of(pooled: Any, target: str) -> str | None:
    """The sharded run directory (``run-<hash>`` inside ``target``) that holds these pooled values, if any."""
    import os

    if not isinstance(pooled, SplitPooled) or not pooled.parts:
        return None
    dirs = set()
    for p in pooled.parts:
        loaded = getattr(p, "loaded", None)
        if loaded is None:
            return None
        part_dir = os.path.abspath(loaded.path)
        dirs.add(os.path.dirname(part_dir))
    if len(dirs) != 1:
        return None
    run_dir = dirs.pop()
    return os.path.basename(run_dir) if os.path.dirname(run_dir) == target else None
