"""The scan: stream a corpus through a model once, keeping pooled activations, neuron statistics and top-k examples.

Memory never holds more than one batch of per-token activations: per-document pooled values, running per-neuron
moments, histograms and top-k/bottom-k lists are updated batch by batch, then the batch is dropped.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Sequence

import numpy as np

from .adapter import as_adapter, library_versions
from .batching import plan_batches
from .capture import CaptureBackend, get_backend
from .corpus import Corpus, as_corpus
from .errors import ScanError
from .store import NeuronStats, Scan, TopK

__all__ = ["scan", "default_histogram_edges", "POOLINGS"]

POOLINGS = ("mean", "max", "min", "last")


_LOG2_LO, _LOG2_HI, _LOG2_SUB = -6, 8, 4


def default_histogram_edges() -> np.ndarray:
    """115 finite edges (116 bins with the two open-ended ones), symmetric around 0 and log-spaced in magnitude:
    ``0``, then ``+-2**e * (1 + j/4)`` for ``|x|`` from ``2**-6`` (0.016) to ``2**8`` (256), four bins per octave.

    Relative resolution is 19-25% of the value everywhere in that range, which suits MLP activations (GELU's
    minimum is -0.17; large activations run to tens). Values beyond the outer edges fall into the open-ended first
    and last bins, so counts always sum to the token count. On the negative side a value exactly equal to an edge
    is counted in the bin below it (bins are intervals of magnitude; -0.0 counts as a tiny negative value);
    everywhere else bins are ``[e_i, e_i+1)``.
    """
    mags = [2.0 ** (e) * (1 + j / _LOG2_SUB) for e in range(_LOG2_LO, _LOG2_HI) for j in range(_LOG2_SUB)]
    mags.append(2.0 ** _LOG2_HI)
    mags = np.asarray(mags, dtype=np.float32)
    return np.concatenate([-mags[::-1], [0.0], mags]).astype(np.float32)


def _log2_lut(edges: np.ndarray):
    """For the default edges: ``(shift, mask, lut, first, n)`` such that ``lut[(bits(x) >> shift) & mask]`` is x's
    bin (``first``: the code of the smallest magnitude edge, ``n``: magnitude bins per sign); else None.

    The top bits of a float32 (sign, exponent, two leading mantissa bits) form an 11-bit code that is monotonic in
    |x| and log-spaced: four codes per octave, the same as the default edges. The lookup table maps each code to
    its bin: 0 (x <= -256), 1..n (negative magnitudes, largest first), n+1 (-2**-6 < x < 0), n+2
    (0 <= x < 2**-6), n+3..2n+2 (positive magnitudes), 2n+3 (x >= 256). Infinities land in the outer bins.
    """
    import torch

    default = default_histogram_edges()
    if edges.shape != default.shape or not np.array_equal(edges, default):
        return None
    sub_bits = int(np.log2(_LOG2_SUB))
    shift = 23 - sub_bits
    n_codes = 1 << (32 - shift)
    first = (127 + _LOG2_LO) << sub_bits  # code of 2**LO
    n = _LOG2_SUB * (_LOG2_HI - _LOG2_LO)
    code = np.arange(n_codes)
    neg = code >= n_codes // 2  # sign bit set
    i = np.clip(np.where(neg, code - n_codes // 2, code) - first, -1, n)
    lut = np.where(neg, n - i, i + n + 3).astype(np.int32)
    return shift, n_codes - 1, torch.as_tensor(lut), first, n


STATS_IMPL = "auto"  # "auto": fused numba kernel on CPU when numba imports, else torch; or "torch" / "numba"


def _use_kernel(device) -> bool:
    from . import _kernels

    if STATS_IMPL == "torch":
        return False
    ok = str(device).startswith("cpu") and _kernels.available()
    if STATS_IMPL == "numba" and not ok:
        raise ScanError("the numba statistics kernel needs a CPU model and numba installed")
    return ok


def _merge_topk(vals, docs, pos, k: int, largest: bool, dedup: bool):
    """Keep the k best (value, doc, pos) per row of ``[d, m]`` candidates, ordered best first.

    Ties are broken by the smaller document index, so the result does not depend on batch order. With ``dedup``
    (documents split into windows) a document keeps only its best entry.
    """
    import torch

    def take(o, *arrays):
        return [a.gather(1, o) for a in arrays]

    if dedup:
        o = torch.sort(vals, dim=1, descending=largest, stable=True).indices
        vals, docs, pos = take(o, vals, docs, pos)
        o = torch.sort(docs, dim=1, stable=True).indices
        vals, docs, pos = take(o, vals, docs, pos)
        dup = torch.zeros_like(docs, dtype=torch.bool)
        dup[:, 1:] = (docs[:, 1:] == docs[:, :-1]) & (docs[:, 1:] >= 0)
        vals = vals.masked_fill(dup, -math.inf if largest else math.inf)
        docs = docs.masked_fill(dup, -1)
    # One topk on a float64 key instead of two stable sorts (measured ~5x faster on CPU). The key moves each
    # float32 value by doc * (its float64 spacing): float32 neighbours are 2**29 float64 spacings apart, so
    # distinct values keep their order and equal values are ordered by document index (exact for < 2**28 docs).
    key = vals.double()
    spacing = torch.nextafter(key, torch.full_like(key, math.inf)) - key
    spacing = torch.where(torch.isfinite(key), spacing, torch.zeros_like(spacing))
    key = key - docs * spacing if largest else key + docs * spacing
    o = torch.topk(key, k, dim=1, largest=largest, sorted=True).indices
    return take(o, vals, docs, pos)


class _Accumulator:
    """Streaming per-layer state (on the model's device) plus pooled per-document buffers (CPU)."""

    def __init__(self, n_docs: int, n_layers: int, d_mlp: int, pooling: Sequence[str], top_k: int,
                 edges: np.ndarray, device, dedup: bool):
        import torch

        L, d = n_layers, d_mlp
        f64 = dict(dtype=torch.float64, device=device)
        self.count = 0
        self.shift: list = [None] * L  # per-layer shift for the variance sums, set from the first batch
        self.shift64: list = [None] * L  # the same in float64
        self._batch = None  # (stat_mask, counted tokens, starts, ends) of the current batch: see _batch_info
        self.sum_shifted = torch.zeros(L, d, **f64)
        self.sq = torch.zeros(L, d, **f64)
        self.chunk_tokens = 2048
        self.use_kernel = _use_kernel(device)
        self._ones_cache = None
        self.vmin = torch.full((L, d), math.inf, device=device)
        self.vmax = torch.full((L, d), -math.inf, device=device)
        self.npos = torch.zeros(L, d, dtype=torch.long, device=device)
        self.edges = torch.as_tensor(edges, dtype=torch.float32, device=device)
        self.nb = len(edges) + 1
        # Default edges follow float32's own binary layout: the bin is read off the bits (~8x cheaper than the
        # binary search of torch.bucketize over every activation, measured on CPU).
        self.fast_bins = _log2_lut(edges)
        if self.fast_bins is not None:
            self.fast_bins = (*self.fast_bins[:2], self.fast_bins[2].to(device), *self.fast_bins[3:])
        self.hist = torch.zeros(L, d * self.nb, dtype=torch.long, device=device)
        self.hist_offsets = (torch.arange(d, device=device, dtype=torch.int32) * self.nb).view(1, 1, d)
        self.k = top_k
        self.dedup = dedup
        ik = dict(dtype=torch.long, device=device)
        self.top = [torch.full((L, d, top_k), -math.inf, device=device), torch.full((L, d, top_k), -1, **ik),
                    torch.zeros((L, d, top_k), **ik)]
        self.bot = [torch.full((L, d, top_k), math.inf, device=device), torch.full((L, d, top_k), -1, **ik),
                    torch.zeros((L, d, top_k), **ik)]
        self.pending = [[] for _ in range(L)]  # per layer: candidate batches not merged yet
        self.merge_columns = 4 * top_k + 64  # merge once this many candidates per neuron wait
        self.pooling = list(pooling)
        self.pooled = {}
        for p in self.pooling:
            fill = {"mean": 0.0, "last": 0.0, "max": -math.inf, "min": math.inf}[p]
            self.pooled[p] = torch.full((n_docs, L, d), fill, dtype=torch.float32)
        self.doc_tokens = torch.zeros(n_docs, dtype=torch.float32)

    def update(self, li: int, X, stat_mask, docs, pos_offset, last_pos, is_last_segment, layer: int) -> None:
        """Fold one batch of one layer in.

        X: [b, p, d] float32 activations, still in use by the model: read, never modified. stat_mask: [b, p] bool,
        real tokens counted in statistics. docs: [b] document index of each row. pos_offset: [b] added to in-row
        positions to get the position in the document's stored tokens. last_pos: [b] row position of the last
        counted token.
        """
        import torch

        b, p, d = X.shape
        last_vals = X[torch.arange(b, device=X.device), last_pos] if "last" in self.pooled else None
        mf = None
        if self.shift[li] is None or not self.use_kernel:
            mf = stat_mask.to(X.dtype).unsqueeze(1)  # [b, 1, p]
        if self.shift[li] is None:
            # Sums of (x - shift) and (x - shift)**2 with a shift near the mean avoid float32 cancellation.
            first = stat_mask[0].sum().clamp(min=1)
            self.shift[li] = (torch.bmm(mf[:1], X[:1]).view(d) / first).to(X.dtype)
            self.shift64[li] = self.shift[li].double()
        shift = self.shift[li]
        if self.use_kernel:
            sums, mx, amx, mn, amn = self._fold_kernel(li, X, stat_mask, shift)
        else:
            sums, mx, amx, mn, amn = self._fold_torch(li, X, stat_mask, mf, shift)
        if not bool(torch.isfinite(sums).all()):
            bad = docs[~torch.isfinite(sums).all(1).cpu()].tolist()
            raise ScanError(f"non-finite (NaN or inf) activations in layer {layer} for documents {bad[:10]}; "
                            "check the model's dtype (float16 overflow?) and weights")
        T = self._batch_info(stat_mask)[1]
        self.sum_shifted[li] += sums.sum(0, dtype=torch.float64) - T * self.shift64[li]
        self.vmax[li] = torch.maximum(self.vmax[li], mx.amax(0))
        self.vmin[li] = torch.minimum(self.vmin[li], mn.amin(0))

        off = pos_offset.view(b, 1)
        d = X.shape[2]
        docs_dev = docs.to(X.device).view(1, b).expand(d, b)
        # Candidates wait until a few batches' worth are pending, then merge in one top-k: the merge's cost is
        # mostly per call, and the result does not depend on when it runs (ties go to the smaller document).
        pending = self.pending[li]
        pending.append((mx.T, amx.T + off.T, mn.T, amn.T + off.T, docs_dev))
        if sum(c[0].shape[1] for c in pending) >= self.merge_columns:
            self._merge(li)

        idx = docs.cpu()
        for p, buf in self.pooled.items():
            if p == "mean":
                buf[:, li].index_add_(0, idx, sums.to(buf.dtype).cpu())
            elif p in ("max", "min"):
                vals = (mx if p == "max" else mn).cpu()
                if self.dedup:  # a document's windows may share a batch
                    buf[:, li].scatter_reduce_(0, idx.view(-1, 1).expand_as(vals), vals, "a" + p)
                else:
                    buf[:, li].index_copy_(0, idx, vals)
            elif p == "last":
                sel = is_last_segment.cpu()
                buf[:, li].index_copy_(0, idx[sel], last_vals[sel.to(X.device)].cpu())

    def _batch_info(self, stat_mask):
        """``(stat_mask, counted tokens, starts [b], ends [b])``: computed once per batch, shared by its layers.

        Counted positions of row r are ``starts[r]..ends[r]-1`` (CPU numpy, for the kernel).
        """
        import torch

        if self._batch is None or self._batch[0] is not stat_mask:
            p = stat_mask.shape[1]
            pos = torch.arange(p, device=stat_mask.device)
            starts = torch.where(stat_mask, pos, p).amin(1).cpu().numpy()
            ends = (torch.where(stat_mask, pos, -1).amax(1) + 1).cpu().numpy()
            self._batch = (stat_mask, int(stat_mask.sum()), starts, ends)
        return self._batch

    def _merge(self, li: int) -> None:
        """Merge layer ``li``'s pending candidates into its top/bottom-k lists."""
        import torch

        pending = self.pending[li]
        if not pending:
            return
        docs = torch.cat([c[4] for c in pending], 1)
        for state, vi, ai, largest in ((self.top, 0, 1, True), (self.bot, 2, 3, False)):
            merged = _merge_topk(torch.cat([state[0][li]] + [c[vi] for c in pending], 1),
                                 torch.cat([state[1][li], docs], 1),
                                 torch.cat([state[2][li]] + [c[ai] for c in pending], 1), self.k, largest, self.dedup)
            for s, m in zip(state, merged):
                s[li] = m
        pending.clear()

    def finish(self) -> None:
        """Merge every layer's pending top-k candidates (call once, after the last batch)."""
        for li in range(len(self.pending)):
            self._merge(li)

    def _fold_torch(self, li, X, stat_mask, mf, shift):
        """Torch implementation (any device): per-row sums, max/argmax, min/argmin; updates sq, npos, hist."""
        import torch

        b, p, d = X.shape
        X = X.clone()  # filled in place below; the model still needs the original
        sums = torch.empty(b, d, dtype=X.dtype, device=X.device)
        mx, mn = torch.empty_like(sums), torch.empty_like(sums)
        amx = torch.empty(b, d, dtype=torch.long, device=X.device)
        amn = torch.empty_like(amx)
        # Row chunks of ~chunk_tokens tokens: every pass below then works on cache-sized blocks and temporaries
        # stay small enough for the allocator to reuse (MiniLM-L6 scan/bare forward: 0.89 chunked, 0.83 whole).
        step = max(1, self.chunk_tokens // p)
        for r0 in range(0, b, step):
            r1 = min(b, r0 + step)
            Xc, mc = X[r0:r1], mf[r0:r1]
            torch.bmm(mc, Xc, out=sums[r0:r1].unsqueeze(1))  # masked sums per document, BLAS, no copy
            dev = torch.sub(Xc, shift).square_()
            self.sq[li] += torch.bmm(mc, dev).sum((0, 1), dtype=torch.float64)
            del dev
            pad = ~stat_mask[r0:r1].unsqueeze(-1)
            Xc.masked_fill_(pad, -math.inf)  # pads now never win a max, never count as > 0, land in bin 0
            torch.max(Xc, dim=1, out=(mx[r0:r1], amx[r0:r1]))
            positive = (Xc > 0).to(X.dtype).view(-1, d)
            self.npos[li] += torch.mm(self._ones(positive.shape[0], X), positive).view(-1).to(torch.long)
            del positive
            if self.fast_bins is not None:
                bit_shift, mask, lut = self.fast_bins[:3]
                bins = lut[(Xc.view(torch.int32) >> bit_shift).bitwise_and_(mask)]
            else:
                bins = torch.bucketize(Xc, self.edges, right=True).to(torch.int32)
            bins += self.hist_offsets
            self.hist[li] += torch.bincount(bins.view(-1), minlength=self.hist.shape[1])
            del bins
            Xc.masked_fill_(pad, math.inf)
            torch.min(Xc, dim=1, out=(mn[r0:r1], amn[r0:r1]))
        self.hist[li, :: self.nb] -= int((~stat_mask).sum())  # the pads' -inf went to bin 0 of every neuron
        return sums, mx, amx, mn, amn

    def _fold_kernel(self, li, X, stat_mask, shift):
        """Fused numba kernel (CPU): one pass over X for everything :meth:`_fold_torch` computes."""
        import torch

        from . import _kernels

        d = X.shape[2]
        _, _, starts, ends = self._batch_info(stat_mask)
        lut = self.fast_bins
        sums, mx, amx, mn, amn = _kernels.fold_batch(
            X.contiguous().numpy(), starts, ends, self.shift64[li].numpy(), lut, self.edges.numpy(),
            self.sq[li].numpy(), self.npos[li].numpy(), self.hist[li].view(d, self.nb).numpy())
        return (torch.from_numpy(sums), torch.from_numpy(mx), torch.from_numpy(amx), torch.from_numpy(mn),
                torch.from_numpy(amn))

    def _ones(self, n: int, like):
        """A cached ``[1, >=n]`` row of ones (counting with a matrix product is faster than a bool reduction)."""
        import torch

        if self._ones_cache is None or self._ones_cache.shape[1] < n:
            self._ones_cache = torch.ones(1, n, dtype=like.dtype, device=like.device)
        return self._ones_cache[:, :n]

    def moments(self):
        """Per-neuron mean and population std ``[L, d]`` (float64) from the shifted sums."""
        import torch

        n = max(self.count, 1)
        shift = torch.stack([s.double() if s is not None else torch.zeros_like(self.sq[0]) for s in self.shift])
        mean_dev = self.sum_shifted / n
        var = (self.sq / n - mean_dev.square()).clamp_(min=0)
        return mean_dev + shift, var.sqrt()

    def add_counts(self, docs, n_tokens) -> None:
        self.doc_tokens.index_add_(0, docs.cpu(), n_tokens.float().cpu())
        self.count += int(n_tokens.sum())


def scan(model: Any, corpus: Corpus | Sequence[str], *, layers: Sequence[int] | int | None = None,
         batch_size: int = 32, max_batch_tokens: int | None = 2048, max_length: int | None = None,
         overflow: str = "truncate",
         pooling: Sequence[str] = ("mean", "max"), top_k: int = 20, dtype: str = "float32",
         device: str | None = None, prepend_bos: bool | None = None, padding_side: str = "right",
         include_bos: bool = False, histogram_edges: Sequence[float] | None = None,
         backend: str | CaptureBackend | None = None, progress: bool = True) -> Scan:
    """Run ``corpus`` through ``model`` once and keep what the lenses need.

    Parameters
    ----------
    model: TransformerLens ``HookedTransformer`` / ``TransformerBridge`` (or a ``ModelAdapter``).
    corpus: a :class:`Corpus` or a list of strings.
    layers: model layers to capture (default: all). Capture stops after the last one.
    batch_size: sequences per forward; sequences are sorted by length so batches hold similar lengths.
    max_batch_tokens: at most this many padded tokens per forward (default 2048; None: no limit). Bounds the
        model's own transient memory (attention scores, logits-free activations) whatever the text lengths;
        on CPU, batches of this size run as fast as larger ones (bench/RESULTS.md). Raise it on a GPU.
    max_length: tokens per sequence, special tokens included (default and maximum: the model's context).
    overflow: ``"truncate"`` (default; one warning says how many texts), ``"windows"`` (split long texts into
        consecutive windows, each with its own BOS; pooled values and top-k span all windows of a document), or
        ``"error"``.
    pooling: per-document poolings to keep, among ``"mean"``, ``"max"``, ``"min"``, ``"last"``.
    top_k: examples kept per neuron for the top (by the document's max) and bottom (by its min) lists.
    dtype: storage dtype of pooled arrays, ``"float32"`` or ``"float16"`` (statistics are always float64/32).
    device: move the model there first (default: leave it where it is).
    prepend_bos, padding_side: see :class:`~mri_lens.adapter.ModelAdapter`; recorded in the result.
    include_bos: count the BOS position of causal models in statistics, pooling and top-k. Default False: its
        activation is the same for every document (it sees only itself) and would crowd top-k lists with ties.
        Encoder models' [CLS]/[SEP] are contextual and always counted.
    histogram_edges: finite bin edges of the per-neuron histograms (default :func:`default_histogram_edges`).
    backend: capture backend name or instance (default TransformerLens hooks).
    progress: show a tqdm progress bar (tokens).

    Returns
    -------
    Scan with ``pooled(name)`` of shape ``[n_docs, n_layers, d_mlp]``, ``stats``, ``top``/``bottom`` top-k lists.
    """
    import torch

    t_start = time.perf_counter()
    corpus = as_corpus(corpus)
    for p in pooling:
        if p not in POOLINGS:
            raise ValueError(f"unknown pooling {p!r}; choose from {POOLINGS}")
    if not pooling:
        raise ValueError("pooling must name at least one pooling")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if batch_size < 1 or top_k < 1 or (max_batch_tokens is not None and max_batch_tokens < 1):
        raise ValueError("batch_size, max_batch_tokens and top_k must be positive")
    if device is not None:
        model.to(device)
    adapter = as_adapter(model, prepend_bos=prepend_bos, padding_side=padding_side)
    layer_list = adapter.check_layers(layers)
    cap = get_backend(adapter, backend)
    edges = np.asarray(default_histogram_edges() if histogram_edges is None else histogram_edges, dtype=np.float32)
    if edges.ndim != 1 or len(edges) < 1 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
        raise ValueError("histogram_edges must be finite and strictly increasing")

    segments, n_over = adapter.encode(corpus.texts, max_length=max_length, overflow=overflow)
    if n_over and overflow == "truncate":
        warnings.warn(f"{n_over} of {len(corpus)} texts are longer than max_length={adapter.max_length(max_length)} "
                      "tokens and were truncated (overflow='windows' keeps every token)", stacklevel=2)
    skip_bos = adapter.is_causal and adapter.prepend_bos and not include_bos
    n_skip = adapter.n_special_prefix if skip_bos else 0
    seq_ids: list[np.ndarray] = []
    seq_doc: list[int] = []
    seq_offset: list[int] = []
    seq_is_last: list[bool] = []
    doc_tokens: list[np.ndarray] = []
    for doc, segs in enumerate(segments):
        off = 0
        for j, s in enumerate(segs):
            if len(s) <= n_skip:
                raise ScanError(f"text {doc} produced no tokens besides BOS")
            seq_ids.append(s)
            seq_doc.append(doc)
            seq_offset.append(off)
            seq_is_last.append(j == len(segs) - 1)
            off += len(s)
        doc_tokens.append(segs[0] if len(segs) == 1 else np.concatenate(segs))
    lengths = np.array([len(s) for s in seq_ids])
    layer_pos = {layer: i for i, layer in enumerate(layer_list)}
    d_mlp = int(adapter.d_mlp)
    dev = adapter.device
    with torch.inference_mode():
        acc = _Accumulator(len(corpus), len(layer_list), d_mlp, pooling, top_k, edges, dev,
                           dedup=len(seq_ids) > len(corpus))
    total_stat_tokens = int(lengths.sum()) - n_skip * len(seq_ids)

    from tqdm.auto import tqdm

    bar = tqdm(total=total_stat_tokens, unit="tok", desc="scan", disable=not progress, leave=False)
    try:
        with torch.inference_mode():
            for batch in plan_batches(lengths, batch_size, max_batch_tokens):
                seqs = [seq_ids[i] for i in batch]
                tokens, mask, starts = adapter.pad_batch(seqs)
                stat_mask = mask.bool()
                if n_skip:
                    rows = torch.arange(len(seqs), device=stat_mask.device)
                    for j in range(n_skip):
                        stat_mask[rows, starts.to(stat_mask.device) + j] = False
                lens = torch.as_tensor(lengths[batch])
                last_pos = (starts + lens - 1).to(dev)
                docs = torch.as_tensor(np.asarray(seq_doc)[batch], dtype=torch.long)
                offsets = torch.as_tensor(np.asarray(seq_offset)[batch], dtype=torch.long).to(dev) - starts.to(dev)
                is_last = torch.as_tensor(np.asarray(seq_is_last)[batch])

                def consume(layer, X):  # runs inside the forward: one layer's activations alive at a time
                    acc.update(layer_pos[layer], X, stat_mask, docs, offsets, last_pos, is_last, layer)

                cap.forward(tokens, mask, layer_list, consume=consume)
                n_stat = stat_mask.sum(1)
                acc.add_counts(docs, n_stat)
                bar.update(int(n_stat.sum()))
            acc.finish()
    finally:
        bar.close()

    counts = acc.doc_tokens  # [n_docs]
    pooled = {}
    np_dtype = np.float16 if dtype == "float16" else np.float32
    for p, buf in acc.pooled.items():
        if p == "mean":
            buf = buf / counts.view(-1, 1, 1)
        pooled[p] = buf.numpy().astype(np_dtype, copy=False)
    n = max(acc.count, 1)
    mean, std = acc.moments()
    stats = NeuronStats(
        count=acc.count,
        mean=mean.cpu().numpy(), std=std.cpu().numpy(),
        min=acc.vmin.cpu().numpy(), max=acc.vmax.cpu().numpy(),
        frac_positive=(acc.npos.double() / n).cpu().numpy(),
        hist_counts=acc.hist.view(len(layer_list), d_mlp, acc.nb).cpu().numpy(),
        hist_edges=edges,
    )
    top = TopK(*(t.cpu().numpy() for t in acc.top))
    bottom = TopK(*(t.cpu().numpy() for t in acc.bot))
    offsets_arr = np.zeros(len(doc_tokens) + 1, dtype=np.int64)
    offsets_arr[1:] = np.cumsum([len(t) for t in doc_tokens])
    meta = {
        **adapter.describe(), "layers": layer_list, "pooling": list(pooling), "top_k": top_k,
        "max_length": adapter.max_length(max_length), "overflow": overflow, "n_truncated": n_over,
        "include_bos": bool(include_bos), "bos_excluded_from_stats": bool(n_skip), "dtype": dtype,
        "backend": cap.name, "capture": cap.describe(), "batch_size": batch_size, "max_batch_tokens": max_batch_tokens,
        "n_docs": len(corpus), "n_sequences": len(seq_ids),
        "n_tokens": acc.count, "n_input_tokens": int(lengths.sum()), "corpus_fingerprint": corpus.fingerprint(),
        "versions": library_versions(), "seconds": round(time.perf_counter() - t_start, 3),
    }
    return Scan(
        layers=layer_list, pooled_=pooled, stats=stats, top=top, bottom=bottom,
        token_ids=np.concatenate(doc_tokens) if doc_tokens else np.zeros(0, np.int32), token_offsets=offsets_arr,
        doc_token_counts=counts.numpy().astype(np.int64), labels=corpus.labels, label_names=corpus.label_names,
        meta=meta, tokenizer_json=adapter.tokenizer_json(),
    )
