"""Scan results: the :class:`Scan` dataclass with save/load (safetensors + JSON), figures and notebook views.

This is the public API every lens consumes; none of them touches capture internals. Its per-neuron parts
(:class:`NeuronStats`, :class:`TopK`, :class:`TopExamples`) are in :mod:`mri_lens.results.stats`, where the pooled
values live (memory, per-layer files, a sharded run's parts) in :mod:`mri_lens.results.pooled`.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import ScanError, ScanFileError
from ..model.tokens import display_tokens
from ..storage.files import part_index
from ..storage.read import load_result
from ..storage.write import TENSORS, ResultWriter
from .pooled import LAZY_NAMES, PooledArrays, SplitPooled, layer_file, load_pooled
from .stats import NeuronStats, TopExamples, TopK, category_selectivity, max_token_ids, token_mode

__all__ = ["Scan", "NeuronStats", "TopK", "TopExamples"]

SCAN_FORMAT = "mri_lens.scan"
SCAN_SCHEMA = 3  # 3: pooled values per layer (or in the parts of a sharded run); 2: versioned; 1: flat (all load)
_TOKENIZER_FILE = "tokenizer.json"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_tokenizer(text: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)


def _bad(path, why: str) -> ScanFileError:
    return ScanFileError(f"{path} is not a consistent saved scan: {why}")


def _unique_list(v: Any, ok) -> bool:
    return isinstance(v, list) and all(ok(x) for x in v) and len(set(v)) == len(v)


def _read_header(meta: dict, path) -> tuple[list[int], list[str], list[str] | None, int, dict]:
    """The saved scan's layers, poolings, label names, token count and scan metadata, each checked."""
    layers, poolings, label_names = meta.get("layers"), meta.get("poolings"), meta.get("label_names")
    count, scan_meta = meta.get("stats_count"), meta.get("scan", {})
    if not _unique_list(layers, lambda l: _is_int(l) and l >= 0):
        raise _bad(path, "its manifest names no valid list of layers")
    if not poolings or not _unique_list(poolings, lambda x: isinstance(x, str)):
        raise _bad(path, "its manifest names no valid list of poolings")
    if label_names is not None and not _unique_list(label_names, lambda x: isinstance(x, str)):
        raise _bad(path, "its manifest names no valid list of label names")
    if not _is_int(count) or count < 0:
        raise _bad(path, "its manifest names no valid token count")
    if not isinstance(scan_meta, dict):
        raise _bad(path, "its scan metadata is not an object")
    return [int(l) for l in layers], poolings, label_names, count, scan_meta


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
        bindings and the checksums of everything else). Raises :class:`~mri_lens.errors.ScanFileError` for a
        damaged file, a file of another result, or a scan replaced by a newer save since it was loaded."""
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
        """Decoded tokens of document ``doc``, one string per token, byte-correct: joining them gives the text back,
        except that a token in which no character ends (a split character's first bytes) shows those bytes as
        ``<0xNN>`` (see :mod:`mri_lens.model.tokens`); ids as strings if no tokenizer was stored."""
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

    def max_token_ids(self, layer: int | None = None, which: str = "top") -> np.ndarray:
        """The token id at each kept example's max (``which="bottom"``: min) position, from the stored tokens:
        ``[n_layers, d_mlp, k]``, or ``[d_mlp, k]`` for one model layer; ``-1`` for an empty slot."""
        if which not in ("top", "bottom"):
            raise ValueError("which must be 'top' or 'bottom'")
        tk = self.top if which == "top" else self.bottom
        if layer is not None:
            li = self.layer_index(layer)
            tk = TopK(tk.values[li], tk.docs[li], tk.positions[li])
        return max_token_ids(tk, self.token_ids, self.token_offsets)

    def token_id(self, token: str | int) -> int:
        """The vocabulary id of ``token``: an id, or a string the stored tokenizer encodes as exactly one token
        (``" except"``, with its leading space, as :meth:`str_tokens` shows it). :class:`~mri_lens.errors.ScanError`
        when it is several tokens or none, or a string and the scan stored no tokenizer."""
        if isinstance(token, (int, np.integer)) and not isinstance(token, (bool, np.bool_)):
            if token < 0:
                raise ScanError(f"a token id is >= 0, got {token}")
            return int(token)
        if not isinstance(token, str):
            raise ScanError(f"a token is a string or an id, got {token!r:.60}")
        if self._tokenizer is None:
            raise ScanError("the scan stored no tokenizer: give token ids, not strings")
        ids = self._tokenizer.encode(token, add_special_tokens=False).ids
        if len(ids) != 1:
            pieces = display_tokens(self._tokenizer, ids) if ids else []
            raise ScanError(f"{token!r} is {len(ids)} tokens {pieces}, not one: give a single token (leading space "
                            "included, as the decoded tokens show it)")
        return int(ids[0])

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Display strings of vocabulary ids, each shown alone (``display_tokens(..., sequence=False)``); ids as
        strings if no tokenizer was stored; ``""`` for ``-1`` (no token)."""
        tok = self._tokenizer
        ids = [int(i) for i in ids]
        shown = {i: (str(i) if tok is None else display_tokens(tok, [i], sequence=False)[0])
                 for i in set(ids) if i >= 0}
        return [shown.get(i, "") for i in ids]

    def selectivity(self, layer: int, pooling: str = "mean", min_docs: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Category selectivity of one layer's neurons (labelled scans): ``(selectivity [d_mlp] float64, category
        [d_mlp] int64)``, the largest standardised difference of one category's pooled mean from the rest's
        (Cohen's d with the pooled standard deviation, :func:`mri_lens.results.stats.category_selectivity`) and that
        category's code (``-1`` and NaN when no category has ``min_docs`` documents and ``min_docs`` others)."""
        if self.labels is None:
            raise ScanError("selectivity needs a labelled scan (scan a corpus with labels)")
        d = category_selectivity(self.pooled(pooling, layer), self.labels, len(self.label_names), min_docs)
        some = ~np.all(np.isnan(d), axis=0)
        best = np.where(some, np.argmax(np.where(np.isnan(d), -np.inf, d), axis=0), -1)
        return np.where(some, d.max(0, initial=-np.inf, where=~np.isnan(d)), np.nan), best

    def neuron_table(self, layer: int, *, pooling: str = "mean", min_docs: int = 5):
        """Per-neuron statistics of one layer as a pandas DataFrame (one row per neuron): ``mean``, ``std``, ``min``,
        ``max``; ``density`` (fraction of counted tokens where the neuron is > 0); the top example's value and
        document; ``top_token`` (the most frequent max token of its top examples) with ``top_token_share`` (the
        share of its kept top examples whose max token it is); on a labelled scan ``selectivity`` and
        ``selective_for`` (:meth:`selectivity` on ``pooling``; NaN / None otherwise)."""
        import pandas as pd

        li = self.layer_index(layer)
        s = self.stats
        ids = self.max_token_ids(layer)
        mode, count = token_mode(ids)
        kept = (ids >= 0).sum(-1)
        if self.labels is not None:
            sel, cat = self.selectivity(layer, pooling, min_docs)
            names = [self.label_names[c] if c >= 0 else None for c in cat.tolist()]
        else:
            sel, names = np.full(self.d_mlp, np.nan), [None] * self.d_mlp
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(kept > 0, count / kept, np.nan)
        return pd.DataFrame({
            "neuron": np.arange(self.d_mlp), "mean": s.mean[li], "std": s.std[li], "min": s.min[li],
            "max": s.max[li], "density": s.frac_positive[li], "top_value": self.top.values[li, :, 0],
            "top_doc": self.top.docs[li, :, 0], "top_token": self.token_strings(mode), "top_token_share": share,
            "selectivity": sel, "selective_for": names,
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
        values live in the parts of a sharded run in this same directory keeps them there (nothing is copied;
        the manifest names each part's version). Replaces only a saved scan: a directory holding anything else (or
        a file) is refused with :class:`~mri_lens.errors.ScanFileError` unless ``overwrite=True``, which writes
        beside foreign files and never removes them (see :mod:`mri_lens.storage.write`). A kill at any instant
        leaves the old or the new scan.
        """
        import json

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
                loaded = [p.loaded for p in self.pooled_.parts]
                meta["pooled"] = {"layout": "parts", "run": run, "d_mlp": self.d_mlp, "dtype": str(self.pooled_.dtype),
                                  "parts": [part_index(os.path.basename(os.path.normpath(r.path))) for r in loaded],
                                  "versions": [r.version for r in loaded]}
            else:
                dtype = None
                for name in self.poolings:
                    for layer in self.layers:
                        values = np.asarray(self.pooled(name, layer))
                        dtype = str(values.dtype)
                        w.write_arrays(layer_file("pooled", name, layer), {"values": values}, lazy=True)
                meta["pooled"] = {"layout": "layers", "dtype": dtype}
            return w.commit(meta)

    @classmethod
    def load(cls, path) -> Scan:
        """Read a directory written by :meth:`save` (pooled values stay on disk until a layer is used); raises
        :class:`~mri_lens.errors.ScanFileError` when it is missing, truncated, corrupted, foreign or inconsistent.
        File sizes, bindings and the checksums of everything but the pooled values are checked now; :meth:`verify`
        checks the pooled values' checksums too."""
        r = load_result(path, fmt=SCAN_FORMAT, schema=SCAN_SCHEMA, files=(_TOKENIZER_FILE,), lazy=LAZY_NAMES)
        layers, poolings, label_names, count, scan_meta = _read_header(r.meta, path)
        a = r.arrays
        try:
            stats = NeuronStats(count=count, **{k: a[f"stats.{k}"] for k in NeuronStats._ARRAYS},
                                n_positive=a.get("stats.n_positive"))
            top = TopK(a["top.values"], a["top.docs"], a["top.positions"])
            bottom = TopK(a["bottom.values"], a["bottom.docs"], a["bottom.positions"])
            tokens = (a["token_ids"], a["token_offsets"], a["doc_token_counts"])
        except KeyError as e:
            raise _bad(path, f"{TENSORS} holds no array {e}") from None
        if tokens[1].ndim != 1 or len(tokens[1]) < 1 or stats.mean.ndim != 2:
            raise _bad(path, "token offsets or statistics have the wrong shape")
        pooled = load_pooled(os.fspath(path), r, poolings, layers, len(tokens[1]) - 1, int(stats.mean.shape[-1]),
                             tokens[2])
        scan = cls(layers=layers, pooled_=pooled, stats=stats, top=top, bottom=bottom, token_ids=tokens[0],
                   token_offsets=tokens[1], doc_token_counts=tokens[2], labels=a.get("labels"),
                   label_names=label_names, meta=scan_meta, tokenizer_json=r.extras.get(_TOKENIZER_FILE))
        scan._validate(path)
        scan.source_path = os.path.abspath(os.fspath(path))  # where it was read from (workers can read it too)
        scan._check_tokenizer(path, r.meta.get("has_tokenizer", scan.tokenizer_json is not None))
        return scan

    def _check_tokenizer(self, path, expected: Any) -> None:
        if expected is not (self.tokenizer_json is not None):
            raise _bad(path, f"its {_TOKENIZER_FILE} is "
                       + ("missing from the manifest" if self.tokenizer_json is None else "unexpected"))
        if self.tokenizer_json is not None:
            try:  # parsed now, so a damaged tokenizer is a load error, not a surprise in a later view
                self.__dict__["_tokenizer"] = _parse_tokenizer(self.tokenizer_json)
            except Exception:  # noqa: BLE001 - the tokenizers library raises bare Exceptions
                raise _bad(path, f"{_TOKENIZER_FILE} is not a valid tokenizer") from None

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
    if not isinstance(pooled, SplitPooled) or not pooled.parts:
        return None
    dirs = set()
    for p in pooled.parts:
        loaded = getattr(p, "loaded", None)
        if loaded is None or part_index(os.path.basename(os.path.normpath(loaded.path))) is None:
            return None
        dirs.add(os.path.dirname(os.path.abspath(loaded.path)))
    if len(dirs) != 1:
        return None
    run_dir = dirs.pop()
    return os.path.basename(run_dir) if os.path.dirname(run_dir) == target else None
