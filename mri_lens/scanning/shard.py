"""The shard function: one shard of a scan plan through the model, folded batch by batch into a partial scan.

Every engine runs this one function, a single process for all of a plan's shards or a Ray actor for some of them;
the merge (:mod:`mri_lens.scanning.merge`) combines the partial scans. Memory holds one batch of per-token
activations at a time: per-document pooled values, running per-neuron moments, histograms and top-k/bottom-k lists
are updated batch by batch, then the batch is dropped. The per-batch statistics come from the fused numba kernel
(:mod:`mri_lens.scanning.kernels`, CPU) or from torch (any device), chosen by ``run_shard(..., stats=...)``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from ..errors import ScanError
from .histogram import _log2_lut
from .plan import ShardSpec
from ..results import ScanPart, TopK
from ..results.pooled import POOL_FILLS

__all__ = ["run_shard", "STATS_IMPLS"]


STATS_IMPLS = ("auto", "numba", "torch")


def _use_kernel(device, stats: str) -> bool:
    """Whether the fused numba kernel computes the statistics: ``stats="auto"`` on a CPU model when numba is
    installed, ``"numba"`` (refused elsewhere), never with ``"torch"``."""
    from . import kernels as _kernels

    if stats not in STATS_IMPLS:
        raise ValueError(f"stats must be one of {STATS_IMPLS}, got {stats!r}")
    if stats == "torch":
        return False
    ok = str(device).startswith("cpu") and _kernels.available()
    if stats == "numba" and not ok:
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
    # One topk on a float64 key instead of two stable sorts (faster on CPU, bench/RESULTS.md). The key moves each
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
                 edges: np.ndarray, device, dedup: bool, stats: str = "auto"):
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
        self.use_kernel = _use_kernel(device, stats)
        self._ones_cache = None
        self.vmin = torch.full((L, d), math.inf, device=device)
        self.vmax = torch.full((L, d), -math.inf, device=device)
        self.npos = torch.zeros(L, d, dtype=torch.long, device=device)
        self.edges = torch.as_tensor(edges, dtype=torch.float32, device=device)
        self.nb = len(edges) + 1
        # Default edges follow float32's own binary layout: the bin is read off the bits (cheaper than the binary
        # search of torch.bucketize over every activation, bench/RESULTS.md).
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
            self.pooled[p] = torch.full((n_docs, L, d), POOL_FILLS[p], dtype=torch.float32)
        self.doc_tokens = torch.zeros(n_docs, dtype=torch.float32)
        self.window_sums: list[list] = [[] for _ in range(L)]  # per layer: [rows, d] sums of split documents' windows

    def update(self, li: int, X, stat_mask, docs, pos_offset, last_pos, is_last_segment, layer: int,
               local=None, split_rows=None, first_pos=None, is_first_segment=None) -> None:
        """Fold one batch of one layer in.

        X: [b, p, d] float32 activations, still in use by the model: read, never modified. stat_mask: [b, p] bool,
        real tokens counted in statistics. docs: [b] global document index of each row (top-k lists, errors).
        local: [b] row of each document in this accumulator's pooled buffers (default: ``docs``). split_rows:
        [b] bool, rows of documents whose windows reach into other shards: their per-window sums are kept, in
        batch order, so the merge adds them in the order one process adds them. pos_offset: [b]
        added to in-row positions to get the position in the document's stored tokens. last_pos: [b] row position
        of the last counted token; is_last_segment: [b] bool, the row is its document's last window. first_pos /
        is_first_segment: the same for the first counted token and the first window (needed for "first").
        """
        import torch

        b, p, d = X.shape
        rows = torch.arange(b, device=X.device)
        # [b, d] the value at each row's last / first counted position, kept for the documents' last / first window
        picked = {name: (X[rows, at], seg) for name, at, seg in (("last", last_pos, is_last_segment),
                                                                 ("first", first_pos, is_first_segment))
                  if name in self.pooled}
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

        idx = (docs if local is None else local).cpu()
        if split_rows is not None and "mean" in self.pooled and bool(split_rows.any()):
            self.window_sums[li].append(sums[split_rows.to(sums.device)].to(torch.float32).cpu())
        for p, buf in self.pooled.items():
            if p == "mean":
                buf[:, li].index_add_(0, idx, sums.to(buf.dtype).cpu())
            elif p in ("max", "min"):
                vals = (mx if p == "max" else mn).cpu()
                if self.dedup:  # a document's windows may share a batch
                    buf[:, li].scatter_reduce_(0, idx.view(-1, 1).expand_as(vals), vals, "a" + p)
                else:
                    buf[:, li].index_copy_(0, idx, vals)
            else:  # "last", "first": one window of a document holds the position
                vals, seg = picked[p]
                sel = seg.cpu()
                buf[:, li].index_copy_(0, idx[sel], vals[sel.to(X.device)].cpu())

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
        # stay small enough for the allocator to reuse (bench/RESULTS.md).
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

        from . import kernels as _kernels

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

    def add_counts(self, local, n_tokens) -> None:
        """Count one batch's tokens: ``local`` [b] pooled-buffer rows of its documents, ``n_tokens`` [b]."""
        self.doc_tokens.index_add_(0, local.cpu(), n_tokens.float().cpu())
        self.count += int(n_tokens.sum())


def run_shard(adapter: Any, cap: Any, spec: ShardSpec, layers: Sequence[int], *, edges: np.ndarray,
              progress: Any = None, stats: str = "auto") -> ScanPart:
    """Run shard ``spec`` of a plan through ``adapter``'s model with capture backend ``cap``.

    Returns the partial scan (:class:`~mri_lens.results.parts.ScanPart`): statistics over the shard's counted tokens,
    top/bottom-k with global document ids, pooled values of the documents complete in this shard (final: mean
    divided, cast to the scan's dtype) and partial aggregates (float32 sums / maxima / minima / last / first values) of
    the documents whose windows reach into other shards. ``progress``: a tqdm bar updated with counted tokens.
    ``stats``: the statistics implementation, ``"auto"`` (the fused numba kernel on CPU when numba is installed,
    else torch), ``"numba"`` or ``"torch"`` (:meth:`_Accumulator._fold_torch`, what every CUDA scan runs).
    """
    import torch

    t0 = time.perf_counter()
    opts = spec.options
    layers = list(layers)
    pooling = list(opts["pooling"])
    touched = np.unique(spec.doc)  # the documents this shard holds sequences of, sorted
    local_of = {int(d): i for i, d in enumerate(touched.tolist())}
    local = np.asarray([local_of[int(d)] for d in spec.doc.tolist()], dtype=np.int64)
    split_seq = ~np.isin(spec.doc, spec.complete)  # [n_seq]: sequences of documents split across shards
    layer_pos = {layer: i for i, layer in enumerate(layers)}
    dev = adapter.device
    d_mlp = int(spec.d_mlp)  # the units' width per layer (MLP neurons: the model's d_mlp)
    with torch.inference_mode():
        acc = _Accumulator(len(touched), len(layers), d_mlp, pooling, int(opts["top_k"]), edges, dev,
                           dedup=opts["dedup"], stats=stats)
    n_skip = spec.n_skip
    lengths = np.diff(spec.starts)
    with torch.inference_mode():
        for batch in spec.batches:
            seqs = [spec.sequence(int(i)) for i in batch]
            tokens, mask, starts = adapter.pad_batch(seqs)
            stat_mask = mask.bool()
            if n_skip:
                rows = torch.arange(len(seqs), device=stat_mask.device)
                for j in range(n_skip):
                    stat_mask[rows, starts.to(stat_mask.device) + j] = False
            lens = torch.as_tensor(lengths[batch])
            last_pos = (starts + lens - 1).to(dev)
            first_pos = (starts + n_skip).to(dev)  # the first counted position (the BOS skipped, if it is)
            docs = torch.as_tensor(spec.doc[batch], dtype=torch.long)
            rows_local = torch.as_tensor(local[batch], dtype=torch.long)
            split_rows = torch.as_tensor(split_seq[batch])
            offsets = torch.as_tensor(spec.offset[batch], dtype=torch.long).to(dev) - starts.to(dev)
            is_last = torch.as_tensor(spec.is_last[batch])
            is_first = torch.as_tensor(spec.offset[batch] == 0)  # the document's first window

            def consume(layer, X):  # runs inside the forward: one layer's activations alive at a time
                if X.shape[-1] != d_mlp:
                    raise ScanError(f"layer {layer}'s units gave {X.shape[-1]} values per token, the scan's plan "
                                    f"has {d_mlp} per layer")
                acc.update(layer_pos[layer], X, stat_mask, docs, offsets, last_pos, is_last, layer, rows_local,
                           split_rows, first_pos, is_first)

            cap.forward(tokens, mask, layers, consume=consume)
            n_stat = stat_mask.sum(1)
            acc.add_counts(rows_local, n_stat)
            if progress is not None:
                progress.update(int(n_stat.sum()))
        acc.finish()
    return _part(acc, spec, touched, layers, edges, time.perf_counter() - t0)


def _holds(spec: ShardSpec, touched: np.ndarray, complete: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """``[n_partial]`` bool: which documents of the shard that are split across shards have one of ``windows``
    (``[n_seq]`` bool over the shard's sequences: their last, or their first, window) in this shard."""
    seen = np.zeros(len(touched), dtype=bool)
    seen[touched.searchsorted(spec.doc[windows])] = True
    return seen[~complete]


def _part(acc: _Accumulator, spec: ShardSpec, touched: np.ndarray, layers: list[int], edges: np.ndarray,
          seconds: float) -> ScanPart:
    """The accumulator's state as a partial scan."""
    import torch

    L, d = len(layers), int(acc.sum_shifted.shape[1])
    mean, std = acc.moments()
    complete = np.isin(touched, spec.complete)
    counts = acc.doc_tokens  # [n_touched] float32
    dtype = np.float16 if spec.options["dtype"] == "float16" else np.float32
    pooled, partial = {}, {}
    has_last = _holds(spec, touched, complete, np.asarray(spec.is_last, dtype=bool))
    has_first = _holds(spec, touched, complete, np.asarray(spec.offset) == 0)
    sel = np.flatnonzero(complete)
    rest = np.flatnonzero(~complete)
    every = len(sel) == len(touched)  # the usual shard: no document reaches into another one
    for p in list(acc.pooled):
        buf = acc.pooled.pop(p)  # the accumulator lets go of it: no second copy of a shard's pooled values
        full = buf if every else buf[sel]
        if p == "mean":
            if every:
                with torch.inference_mode():  # the buffers were made there: divide in place, no copy
                    full.div_(counts.view(-1, 1, 1))
            else:
                full = full / counts[sel].view(-1, 1, 1)
        pooled[p] = full.numpy().astype(dtype, copy=False)
        partial[p] = buf[rest].numpy().astype(np.float32, copy=False)
        del buf, full
    split_seq = ~np.isin(spec.doc, spec.complete)
    order = [int(i) for b in spec.batches for i in b if split_seq[i]]  # the split windows, in batch order
    window_docs = spec.doc[order].astype(np.int64) if order else np.zeros(0, np.int64)
    if "mean" in partial:
        # a split document's mean is finished by the merge from its windows' sums, added in batch order (as one
        # process adds them), not from this shard's running sum (float addition is not associative)
        partial["mean"] = (torch.stack([torch.cat(w) for w in acc.window_sums], 1).numpy()
                           if order else np.zeros((0, L, d), np.float32))
    return ScanPart(
        index=spec.index, layers=list(layers), count=int(acc.count),
        mean=mean.cpu().numpy(), std=std.cpu().numpy(), min=acc.vmin.cpu().numpy(), max=acc.vmax.cpu().numpy(),
        n_positive=acc.npos.cpu().numpy().astype(np.int64),
        hist_counts=acc.hist.view(L, d, acc.nb).cpu().numpy().astype(np.int64), hist_edges=np.asarray(edges),
        top=TopK(*(t.cpu().numpy() for t in acc.top)), bottom=TopK(*(t.cpu().numpy() for t in acc.bot)),
        complete_docs=touched[sel].astype(np.int64), complete_tokens=counts[sel].numpy().astype(np.int64),
        pooled_=pooled, partial_docs=touched[rest].astype(np.int64), window_docs=window_docs,
        partial_tokens=counts[rest].numpy().astype(np.int64), partial_has_last=has_last,
        partial_has_first=has_first, partial_=partial,
        meta={"seconds": round(seconds, 3), "n_sequences": int(len(spec.doc)), "n_tokens": int(acc.count),
              "n_input_tokens": int(len(spec.tokens)), "n_batches": len(spec.batches)})
