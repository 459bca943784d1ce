"""Histogram edges: the default edges and their bit-level lookup table against numpy's binary search, and the
scan's histograms against numpy on the real tiny LM (default and custom edges)."""

from __future__ import annotations

import numpy as np

import mri_lens as ml
from mri_lens.model import ModelAdapter
from mri_lens.scanning.histogram import _log2_lut, default_histogram_edges

from oracle import reference


def _first_layer_tokens(tiny, corpus) -> np.ndarray:
    segs, _ = ModelAdapter(tiny).encode(corpus.texts)
    return reference(tiny, segs, [0], skip_first=1)["tokens"][0]  # [T, d]


def test_default_edges_are_symmetric_and_log_spaced():
    e = default_histogram_edges()
    assert e.dtype == np.float32 and len(e) == 115 and e[57] == 0
    np.testing.assert_array_equal(e[:57], -e[58:][::-1])
    assert e[58] == 2.0 ** -6 and e[-1] == 256 and np.all(np.diff(e) > 0)
    assert _log2_lut(np.array([0.0, 1.0], np.float32)) is None  # other edges: no table


def test_lookup_table_is_numpys_binary_search():
    """For every float32 bit code (non-negative values, and negative values off the edges) the table's bin is
    numpy's ``searchsorted(edges, x, side="right")``; a negative value on an edge counts one bin lower (bins are
    intervals of magnitude, as documented)."""
    edges = default_histogram_edges()
    shift, mask, table = _log2_lut(edges)[:3]
    codes = np.arange(mask + 1, dtype=np.int64)
    x = (codes << shift).astype(np.uint32).view(np.float32)
    ok = ~np.isnan(x)
    codes, x, table = codes[ok], x[ok], table.numpy()
    nonneg = (x >= 0) & ~np.signbit(x)
    np.testing.assert_array_equal(table[codes[nonneg]], np.searchsorted(edges, x[nonneg], side="right"))
    neg = ~nonneg & ~np.isin(x, edges)
    np.testing.assert_array_equal(table[codes[neg]], np.searchsorted(edges, x[neg], side="right"))
    on_edge = ~nonneg & np.isin(x, edges)
    np.testing.assert_array_equal(table[codes[on_edge]], np.searchsorted(edges, x[on_edge], side="right") - 1)


def test_histogram_bins_match_numpy(tiny_scan, tiny, code_prose):
    x = _first_layer_tokens(tiny, code_prose)
    edges = default_histogram_edges()
    want = np.stack([np.bincount(np.searchsorted(edges, x[:, j], side="right"), minlength=len(edges) + 1)
                     for j in range(x.shape[1])])
    got = tiny_scan.stats.hist_counts[0]
    # Identical except for values within float rounding of an edge.
    assert np.abs(got - want).sum() <= 0.002 * x.size
    assert (got.sum(-1) == len(x)).all()


def test_custom_histogram_edges_use_exact_bins(tiny, code_prose):
    edges = np.array([-0.1, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    result = ml.scan(tiny, code_prose, layers=[0], histogram_edges=edges, pooling=("mean",), progress=False)
    x = _first_layer_tokens(tiny, code_prose)
    want = np.stack([np.bincount(np.searchsorted(edges, x[:, j], side="right"), minlength=6)
                     for j in range(x.shape[1])])
    np.testing.assert_array_equal(result.stats.hist_counts[0], want)
    np.testing.assert_array_equal(result.stats.hist_edges, edges)
