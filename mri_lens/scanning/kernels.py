"""Fused CPU kernel for the scan's per-batch statistics (numba, which umap-learn already brings).

One pass over a batch's activations computes, for every (document row, neuron): the sum, max/argmax and
min/argmin over the row's counted positions, and for every neuron the shifted sum of squares, the count of
positive values and the histogram. The torch path (``shard._Accumulator._fold_torch``) makes a memory pass per
statistic for the same numbers; this kernel keeps a CPU scan close to a bare forward (bench/RESULTS.md).
Neurons are split into blocks, one per thread, so no two threads write the same accumulator: results are
deterministic.
"""

from __future__ import annotations

import numpy as np

_kernel = None


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def _build():
    from numba import njit, prange

    # Explicit loops instead of slice expressions inside the prange body: numba turns each slice expression into
    # a nested parallel loop of its own, which only adds compilation time to the first scan (bench/RESULTS.md).
    @njit(parallel=True, cache=True, nogil=True)
    def fold(X, Xbits, starts, ends, shift, bit_shift, code_mask, first, n_mag, edges, use_lut,
             sums, mx, amx, mn, amn, sq, npos, hist, block):
        b, p, d = X.shape
        n_blocks = (d + block - 1) // block
        for blk in prange(n_blocks):
            n0 = blk * block
            w = min(d, n0 + block) - n0
            # Block-local accumulators stay in L1; the first inner loop has no scatter, so it vectorises.
            lsq = np.zeros(w, np.float64)
            lpos = np.zeros(w, np.int64)
            lsum = np.empty(w, np.float64)
            lmx = np.empty(w, np.float32)
            lmn = np.empty(w, np.float32)
            lamx = np.empty(w, np.int64)
            lamn = np.empty(w, np.int64)
            bins = np.empty(w, np.int32)
            half = (code_mask + 1) // 2
            lhist = np.zeros((w, hist.shape[1]), np.int32)  # counts <= tokens in one batch
            sh = shift[n0:n0 + w]
            for r in range(b):
                s, e = starts[r], ends[r]
                for j in range(w):
                    lsum[j] = 0.0
                    lmx[j] = -np.inf
                    lmn[j] = np.inf
                    lamx[j] = s
                    lamn[j] = s
                for pos in range(s, e):
                    row = X[r, pos, n0:n0 + w]
                    for j in range(w):
                        x = row[j]
                        lsum[j] += x
                        dx = x - sh[j]
                        lsq[j] += dx * dx
                        lpos[j] += x > 0
                        if x > lmx[j]:
                            lmx[j] = x
                            lamx[j] = pos
                        if x < lmn[j]:
                            lmn[j] = x
                            lamn[j] = pos
                    # Bins first (a gather the compiler can pipeline), then the scatter into the block's own
                    # int32 histogram: half the bytes of the int64 total, so it stays in cache.
                    if use_lut:
                        bits = Xbits[r, pos, n0:n0 + w]
                        for j in range(w):  # the lookup table's formula (histogram._log2_lut), not a lookup
                            c = (bits[j] >> bit_shift) & code_mask
                            neg = c >= half
                            i = min(max((c - half if neg else c) - first, -1), n_mag)
                            bins[j] = n_mag - i if neg else i + n_mag + 3
                    else:
                        for j in range(w):
                            bins[j] = np.searchsorted(edges, row[j], side="right")
                    for j in range(w):
                        lhist[j, bins[j]] += 1
                for j in range(w):
                    sums[r, n0 + j] = lsum[j]
                    mx[r, n0 + j] = lmx[j]
                    mn[r, n0 + j] = lmn[j]
                    amx[r, n0 + j] = lamx[j]
                    amn[r, n0 + j] = lamn[j]
            for j in range(w):
                sq[n0 + j] += lsq[j]
                npos[n0 + j] += lpos[j]
            for j in range(w):
                for k in range(lhist.shape[1]):
                    hist[n0 + j, k] += lhist[j, k]
        return n_blocks

    return fold


def fold_batch(X: np.ndarray, starts: np.ndarray, ends: np.ndarray, shift: np.ndarray, lut, edges: np.ndarray,
               sq: np.ndarray, npos: np.ndarray, hist: np.ndarray):
    """Fold one batch of one layer.

    X: [b, p, d] float32 (C-contiguous). starts/ends: [b] counted positions of each row are ``starts..ends-1``.
    shift: [d] float64. lut: ``histogram._log2_lut(edges)`` for the default edges (its bins are computed from
    the same formula) or None. sq, npos, hist: the layer's running accumulators ``[d]`` float64, ``[d]`` int64,
    ``[d, n_bins]`` int64, updated in place.

    Returns per-row ``(sums [b, d] float64, mx, amx, mn, amn)`` (values float32, positions int64).
    """
    global _kernel
    if _kernel is None:
        _kernel = _build()
    b, p, d = X.shape
    sums = np.empty((b, d), np.float64)
    mx = np.empty((b, d), np.float32)
    mn = np.empty((b, d), np.float32)
    amx = np.empty((b, d), np.int64)
    amn = np.empty((b, d), np.int64)
    if lut is not None:
        bit_shift, code_mask, _, first, n_mag = lut
        use = True
    else:
        bit_shift, code_mask, first, n_mag, use = 0, 0, 0, 0, False
    # One block of neurons per thread: wide blocks vectorise best (bench/RESULTS.md), and blocks never share an
    # accumulator.
    import numba

    block = min(1024, max(64, -(-d // numba.get_num_threads())))
    _kernel(X, X.view(np.int32), starts.astype(np.int64, copy=False), ends.astype(np.int64, copy=False), shift,
            np.int32(bit_shift), np.int32(code_mask), np.int32(first), np.int32(n_mag), edges.astype(np.float32), use,
            sums, mx, amx, mn, amn, sq, npos, hist, block)
    return sums, mx, amx, mn, amn


def precompile() -> bool:
    """Compile the kernel now (numba caches it on disk): what a new environment's first scan would otherwise spend.

    Calls :func:`fold_batch` with the argument types a scan passes, so the cached code is the one scans load.
    Returns False when numba is not installed (scans then use the torch path).
    """
    if not available():
        return False
    from .histogram import _log2_lut, default_histogram_edges

    edges = np.asarray(default_histogram_edges(), dtype=np.float32)
    lut = _log2_lut(edges)
    d, nb = 8, len(edges) + 1
    X = np.linspace(-1, 1, 2 * 3 * d, dtype=np.float32).reshape(2, 3, d)
    fold_batch(X, np.array([0, 1]), np.array([3, 2]), np.zeros(d), lut, edges, np.zeros(d), np.zeros(d, np.int64),
               np.zeros((d, nb), np.int64))
    return True
