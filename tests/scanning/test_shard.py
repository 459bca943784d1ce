"""The shard function's two statistics implementations on the real tiny LM: the torch path (``_fold_torch``,
what every CUDA scan runs) against the fused numba kernel (what CPU scans run), chosen by an explicit argument;
the top-k merge's tie rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mri_lens as ml
from mri_lens.scanning.shard import _Accumulator, _merge_topk, _use_kernel


@pytest.fixture(scope="module")
def by_impl(tiny, code_prose):
    """The same scan with each statistics implementation (every pooling, windows: split documents too), on five
    code documents (one to five windows of 48 tokens) and five prose ones (one window each)."""
    pytest.importorskip("numba")
    corpus = code_prose.subset([0, 1, 2, 12, 15, 16, 17, 18, 19, 20])
    kw = dict(batch_size=8, pooling=("mean", "max", "min", "last"), overflow="windows", max_length=48,
              progress=False)
    return {impl: ml.scan(tiny, corpus, engine=ml.LocalEngine(stats=impl), **kw) for impl in ("numba", "torch")}


def test_the_implementation_is_the_one_asked_for():
    assert _use_kernel("cpu", "torch") is False
    assert _use_kernel("cpu", "auto") is True and _use_kernel("cpu", "numba") is True
    assert _use_kernel("cuda:0", "auto") is False  # a CUDA scan runs the torch path
    with pytest.raises(ml.ScanError, match="needs a CPU model"):
        _use_kernel("cuda:0", "numba")
    with pytest.raises(ValueError, match="stats must be one of"):
        _use_kernel("cpu", "fast")
    edges = ml.scanning.default_histogram_edges()
    for impl, kernel in (("torch", False), ("numba", True)):
        acc = _Accumulator(3, 2, 8, ["mean"], 4, edges, torch.device("cpu"), dedup=False, stats=impl)
        assert acc.use_kernel is kernel


def test_torch_statistics_path_equals_fused_kernel(by_impl):
    """Pooled values, statistics, histograms and top-k of the torch path equal the kernel's: exactly where no
    addition is involved, to float32 rounding of a sum (mean pooling, moments) elsewhere. Scaling the torch
    path's sums by 1.001 fails this test."""
    k, t = by_impl["numba"], by_impl["torch"]
    for p in ("max", "min", "last"):
        np.testing.assert_array_equal(t.pooled(p), k.pooled(p), err_msg=p)
    np.testing.assert_allclose(t.pooled("mean"), k.pooled("mean"), rtol=1e-5, atol=2e-6)
    for name in ("mean", "std"):
        np.testing.assert_allclose(getattr(t.stats, name), getattr(k.stats, name), rtol=1e-6, atol=2e-7, err_msg=name)
    for name in ("min", "max", "frac_positive", "hist_counts"):
        np.testing.assert_array_equal(getattr(t.stats, name), getattr(k.stats, name), err_msg=name)
    assert t.stats.count == k.stats.count
    for which in ("top", "bottom"):
        a, b = getattr(t, which), getattr(k, which)
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.docs, b.docs)
        np.testing.assert_array_equal(a.positions, b.positions)


def test_merge_topk_breaks_ties_by_document():
    rng = np.random.default_rng(0)
    for largest in (True, False):
        vals = rng.integers(0, 4, size=(50, 30)).astype(np.float32)  # many exact ties
        docs = np.stack([rng.permutation(30) for _ in range(50)])
        v, d, p = _merge_topk(torch.tensor(vals), torch.tensor(docs), torch.tensor(docs * 10), 7, largest, False)
        for r in range(50):
            order = np.lexsort((docs[r], -vals[r] if largest else vals[r]))[:7]
            np.testing.assert_array_equal(d[r].numpy(), docs[r][order])
            np.testing.assert_array_equal(v[r].numpy(), vals[r][order])
            np.testing.assert_array_equal(p[r].numpy(), docs[r][order] * 10)


def test_merge_topk_keeps_one_entry_per_document_with_dedup():
    vals = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    docs = torch.tensor([[1, 1, 2, 1]])
    v, d, _ = _merge_topk(vals, docs, torch.arange(4).view(1, 4), 3, True, True)
    assert d[0].tolist() == [1, 2, -1] and v[0, :2].tolist() == [5.0, 3.0]
