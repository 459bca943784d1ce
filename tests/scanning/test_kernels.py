"""The fused numba kernel against plain numpy on the same batch: sums, max/argmax, min/argmin over each row's
counted positions, the shifted sum of squares, positive counts and histograms (default edges: the bit formula;
custom edges: a binary search)."""

from __future__ import annotations

import numpy as np
import pytest

from mri_lens.scanning.histogram import _log2_lut, default_histogram_edges

kernels = pytest.importorskip("numba") and pytest.importorskip("mri_lens.scanning.kernels")


@pytest.mark.parametrize("default_edges", [True, False])
def test_fold_batch_equals_numpy(default_edges):
    rng = np.random.default_rng(0)
    b, p, d = 5, 9, 70  # d not a multiple of the block width: the last block is narrower
    X = (rng.standard_normal((b, p, d)) * 2).astype(np.float32)
    starts = np.array([0, 1, 3, 0, 8])
    ends = np.array([9, 5, 4, 1, 9])
    edges = default_histogram_edges() if default_edges else np.array([-1, 0, 0.5, 2], np.float32)
    lut = _log2_lut(edges) if default_edges else None
    shift = rng.standard_normal(d)
    sq, npos = np.zeros(d), np.zeros(d, np.int64)
    hist = np.zeros((d, len(edges) + 1), np.int64)
    sums, mx, amx, mn, amn = kernels.fold_batch(X, starts, ends, shift, lut, edges, sq, npos, hist)
    rows = [X[r, starts[r]:ends[r]] for r in range(b)]
    np.testing.assert_allclose(sums, np.stack([r.astype(np.float64).sum(0) for r in rows]), rtol=1e-12)
    np.testing.assert_array_equal(mx, np.stack([r.max(0) for r in rows]))
    np.testing.assert_array_equal(mn, np.stack([r.min(0) for r in rows]))
    np.testing.assert_array_equal(amx, np.stack([r.argmax(0) + s for r, s in zip(rows, starts)]))
    np.testing.assert_array_equal(amn, np.stack([r.argmin(0) + s for r, s in zip(rows, starts)]))
    allx = np.concatenate(rows).astype(np.float64)
    np.testing.assert_allclose(sq, ((allx - shift) ** 2).sum(0), rtol=1e-12)
    np.testing.assert_array_equal(npos, (allx > 0).sum(0))
    want = np.stack([np.bincount(np.searchsorted(edges, allx[:, j].astype(np.float32), side="right"),
                                 minlength=len(edges) + 1) for j in range(d)])
    np.testing.assert_array_equal(hist, want)


def test_kernel_bins_every_float32_code_as_the_lookup_table():
    """The kernel computes the default bins from a formula; it must agree with the table for every 11-bit code."""
    edges = default_histogram_edges()
    lut = _log2_lut(edges)
    shift, mask, table = lut[0], lut[1], lut[2].numpy()
    codes = np.arange(mask + 1, dtype=np.int64)
    bits = (codes << shift).astype(np.uint32)
    x = bits.view(np.float32)
    codes, x = codes[~np.isnan(x)], x[~np.isnan(x)]  # the NaN codes never reach a histogram (the scan refuses NaN)
    X = np.ascontiguousarray(x.reshape(1, -1, 1))
    d = 1
    hist = np.zeros((d, len(edges) + 1), np.int64)
    kernels.fold_batch(X, np.array([0]), np.array([X.shape[1]]), np.zeros(d), lut, edges, np.zeros(d),
                       np.zeros(d, np.int64), hist)
    np.testing.assert_array_equal(hist[0], np.bincount(table[codes], minlength=len(edges) + 1))


def test_precompile_builds_the_kernel():
    assert kernels.precompile() is True and kernels._kernel is not None
