"""The data of the Neuroscope site (:mod:`.neuron_site`): which documents each neuron shows, their per-token
activations recomputed once per layer, and the compact encodings the viewer decodes.

Encodings (decoded by ``viewer/viewer.js``):

- a token is an index into one table of display strings (``data/tokens.js``): the same id can read differently in
  context (a split character, a word-initial piece), so the table holds what the page shows, each string once;
- a run of token indices is a string of ``width`` characters per token, base 93 over :data:`ALPHABET` (the printable
  ASCII characters that need no escape inside a JSON string);
- a run of activations is a string of one character per token: the value over the example's largest absolute value
  ``scale``, rounded to ``Q`` levels per sign (the shading has far fewer levels; hover shows the decoded value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["ALPHABET", "Q", "TokenTable", "ExamplePlan", "LayerExamples", "encode_levels", "encode_ints",
           "plan_examples", "doc_activations", "extract_examples", "sig"]

ALPHABET = "".join(chr(c) for c in range(32, 127) if c not in (34, 92))  # 93 characters, no '"' and no '\'
BASE = len(ALPHABET)
Q = (BASE - 1) // 2  # levels per sign of an encoded activation: codes 0..92 are -Q..Q
_ALPHA = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
BEFORE, AFTER = 50, 10  # snippet: tokens before and after the max token (Neuroscope's protocol)
SECTIONS_FIXED = ("top", "rnd")  # band sections are "b0", "b1", ... between them


def sig(v: Any, digits: int = 4) -> float | None:
    """A float rounded to ``digits`` significant digits for the data files (None for NaN / inf)."""
    v = float(v)
    return float(f"{v:.{digits}g}") if np.isfinite(v) else None


def encode_ints(idx: np.ndarray, width: int) -> str:
    """Non-negative integers ``[n]`` (each < ``BASE ** width``) as ``width`` characters each, most significant
    first."""
    idx = np.asarray(idx, dtype=np.int64)
    digits = np.empty((len(idx), width), dtype=np.int64)
    for j in range(width - 1, -1, -1):
        digits[:, j] = idx % BASE
        idx = idx // BASE
    return _ALPHA[digits].tobytes().decode("ascii")


def encode_levels(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Activations ``[m, w]`` over their row scales ``[m]`` as alphabet bytes ``[m, w]`` (uint8)."""
    s = np.where(scale > 0, scale, 1.0)[:, None]
    q = np.clip(np.rint(x / s * Q), -Q, Q).astype(np.int64) + Q
    return _ALPHA[q]


class TokenTable:
    """Display strings of tokens, each stored once, indexed in order of first use."""

    def __init__(self, show: Callable[[str], str]):
        self.show = show  # the visible form of a token (invisible characters as markers)
        self.strings: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, tokens: Sequence[str]) -> np.ndarray:
        """Indices ``[n]`` of ``tokens`` (raw display strings), adding the new ones."""
        out = np.empty(len(tokens), dtype=np.int64)
        for i, t in enumerate(tokens):
            j = self._index.get(t)
            if j is None:
                j = self._index[t] = len(self.strings)
                self.strings.append(self.show(t))
            out[i] = j
        return out

    def width(self) -> int:
        """Characters per token index: the fewest that hold every index."""
        w = 1
        while BASE ** w < max(len(self.strings), 1):
            w += 1
        return w


@dataclass
class ExamplePlan:
    """Which documents one layer's neuron pages show: one row per example, ``[n_examples]`` each.

    neuron: the neuron; section: ``0`` top, ``1 + i`` band ``i``, ``-1`` random; rank: its place in its section;
    doc: the document.
    """

    neuron: np.ndarray
    section: np.ndarray
    rank: np.ndarray
    doc: np.ndarray


def _band_docs(v: np.ndarray, topv: float, top: list[int], bands: list[float], per_band: int,
               rng: np.random.Generator) -> list[list[int]]:
    """Per band, ``per_band`` documents whose max ``v`` lies in ``(bands[i] * topv, bands[i+1] * topv]`` (the last
    band ends at ``topv``), top documents excluded, ordered by value then document."""
    excl = np.zeros(len(v), bool)
    excl[top] = True
    bounds = bands + [1.0]
    out = []
    for i in range(len(bands)):
        cand = np.flatnonzero((v > bounds[i] * topv) & (v <= bounds[i + 1] * topv) & ~excl)
        pick = rng.choice(cand, size=min(per_band, len(cand)), replace=False) if len(cand) else []
        out.append(sorted((int(d) for d in pick), key=lambda d: (-v[d], d)))
    return out


def plan_examples(scan, layer: int, ids: Sequence[int], k: int, bands: list[float], per_band: int, n_random: int,
                  seed: int) -> ExamplePlan:
    """The top ``k`` documents of each neuron (the scan's order), ``per_band`` documents per activation band
    (needs the scan's ``"max"`` pooling; none otherwise) and ``n_random`` random documents (seeded by ``seed``,
    the layer and the neuron)."""
    li = scan.layer_index(layer)
    pooled_max = scan.pooled("max", layer=layer) if "max" in scan.poolings else None  # [n_docs, d_mlp]
    rows: list[tuple[int, int, int, int]] = []
    for n in ids:
        docs = scan.top.docs[li, n]
        top = [int(d) for d in docs[docs >= 0][:k]]
        rows.extend((n, 0, r, d) for r, d in enumerate(top))
        rng = np.random.default_rng([seed, layer, n])
        if pooled_max is not None and top:
            v = np.asarray(pooled_max[:, n], dtype=np.float64)
            for i, picked in enumerate(_band_docs(v, float(scan.top.values[li, n, 0]), top, bands, per_band, rng)):
                rows.extend((n, 1 + i, r, d) for r, d in enumerate(picked))
        m = min(n_random, scan.n_docs)
        rnd = sorted(int(d) for d in rng.choice(scan.n_docs, size=m, replace=False)) if m else []
        rows.extend((n, -1, r, d) for r, d in enumerate(rnd))
    a = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    return ExamplePlan(neuron=a[:, 0], section=a[:, 1], rank=a[:, 2], doc=a[:, 3])


@dataclass
class LayerExamples:
    """The recomputed examples of one layer, aligned with its :class:`ExamplePlan` rows ``[n_examples]``.

    vmax, vmin: the document's max and min activation; pos: the max token's position in the document; start: the
    snippet's first position; scale: the snippet's largest absolute activation; acts: the snippet's encoded
    activations; coverage: fraction of the document's tokens above half the neuron's max (all tokens counted).
    """

    vmax: np.ndarray
    vmin: np.ndarray
    pos: np.ndarray
    start: np.ndarray
    scale: np.ndarray
    acts: list[str]
    coverage: np.ndarray


def _doc_examples(a: np.ndarray, ns: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every example of one document at once: ``a`` its activations ``[n_tokens, d_mlp]``, ``ns`` the neurons
    ``[m]``, ``half`` half of each one's max ``[m]``. Returns max, min, pos, start, scale ``[m]``, the encoded
    snippet rows ``[m, BEFORE + 1 + AFTER]`` (uint8, to be cut at ``start``) and coverage ``[m]``."""
    sub = a[:, ns]  # [n_tokens, m]
    t, m = sub.shape
    pos = np.argmax(sub, axis=0)
    cols = np.arange(m)
    width = BEFORE + 1 + AFTER
    padded = np.zeros((t + width, m), dtype=np.float32)
    padded[BEFORE:BEFORE + t] = sub
    win = padded[pos[:, None] + np.arange(width)[None, :], cols[:, None]]  # [m, width], zeros outside the doc
    scale = np.abs(win).max(axis=1)
    return (sub[pos, cols], sub.min(axis=0), pos, np.maximum(pos - BEFORE, 0), scale, encode_levels(win, scale),
            (sub > half[None, :]).mean(axis=0))


def doc_activations(model: Any, scan, docs: list[int], layers: list[int], batch_size: int
                    ) -> list[dict[int, np.ndarray]]:
    """Per-token activations ``{layer: [n_tokens, d_mlp]}`` of scanned documents for several layers in one forward
    pass per batch; a document the scan split into windows is run window by window, as
    :func:`mri_lens.model.capture.scan_token_activations` runs it (every window but the last ``max_length`` long)."""
    from ...model.capture import scan_windows, token_activations
    from ...model.units import units_for_scan

    pieces, owner = scan_windows(scan, docs)
    parts: list[dict[int, list[np.ndarray]]] = [{l: [] for l in layers} for _ in docs]
    for i, o in zip(owner, token_activations(model, pieces, layers, batch_size=batch_size,
                                                      units=units_for_scan(scan))):
        for l in layers:
            parts[i][l].append(o[l])
    return [{l: a[l][0] if len(a[l]) == 1 else np.concatenate(a[l]) for l in layers} for a in parts]


class _Layer:
    """The examples of one layer being filled in, document by document."""

    def __init__(self, plan: ExamplePlan, nmax: np.ndarray):
        n_ex = len(plan.doc)
        self.plan, self.half = plan, 0.5 * nmax
        self.cols = {name: np.zeros(n_ex, dt) for name, dt in (
            ("vmax", np.float32), ("vmin", np.float32), ("pos", np.int64), ("start", np.int64),
            ("scale", np.float32), ("coverage", np.float32))}
        self.acts: list[str] = [""] * n_ex
        self.order = np.argsort(plan.doc, kind="stable")
        docs, first = np.unique(plan.doc[self.order], return_index=True)
        self.rows_of = dict(zip(docs.tolist(), np.split(self.order, first[1:]) if len(docs) else []))

    def add(self, doc: int, a: np.ndarray) -> None:
        rows = self.rows_of.get(doc)
        if rows is None:
            return
        ns = self.plan.neuron[rows]
        vmax, vmin, pos, start, scale, codes, cov = _doc_examples(np.asarray(a, np.float32), ns, self.half[ns])
        for name, v in (("vmax", vmax), ("vmin", vmin), ("pos", pos), ("start", start), ("scale", scale),
                        ("coverage", cov)):
            self.cols[name][rows] = v
        end = np.minimum(pos + AFTER + 1, len(a))
        cut = start - (pos - BEFORE)  # where the snippet starts in its padded row
        for i, r in enumerate(rows.tolist()):
            self.acts[r] = codes[i, cut[i]:cut[i] + end[i] - start[i]].tobytes().decode("ascii")


def extract_examples(token_acts: Callable[[list[int]], list[dict[int, np.ndarray]]], plans: dict[int, ExamplePlan],
                     nmax: dict[int, np.ndarray], batch_size: int, bar: Any = None) -> dict[int, LayerExamples]:
    """Recompute every example of the ``plans`` of several layers: the UNIQUE documents of all of them once, in
    batches of ``batch_size`` (``token_acts(docs) -> {layer: [n_tokens, d_mlp]}`` each), every neuron of every
    layer read from them. ``nmax``: each layer's neuron maxima over the scan ``[d_mlp]`` (coverage threshold).
    ``bar``: a progress bar advanced by documents."""
    layers = {l: _Layer(p, nmax[l]) for l, p in plans.items()}
    docs = np.unique(np.concatenate([p.doc for p in plans.values()])).tolist()
    for b in range(0, len(docs), batch_size):
        chunk = docs[b:b + batch_size]
        for d, acts in zip(chunk, token_acts(chunk)):
            for l, lay in layers.items():
                lay.add(d, acts[l])
        if bar is not None:
            bar.update(len(chunk))
    return {l: LayerExamples(acts=lay.acts, **lay.cols) for l, lay in layers.items()}
