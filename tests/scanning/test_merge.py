"""Merge oracles: a sharded scan equals the single-process scan bit for bit (mean/std to float64 rounding), on the
tiny LM and the real MiniLM-L6, with labels, windows and BOS in and out; merge_scans of arbitrary document splits
agrees with one scan of everything within 1e-5; parts of different models or options are refused."""

from __future__ import annotations

import numpy as np
import pytest

import mri_lens as ml
from mri_lens import ScanError

from corpora import PROSE, code_snippets

POOL = ("mean", "max", "min", "last")


def _assert_equal_scans(a: ml.Scan, b: ml.Scan, *, rel_moments: float = 1e-9):
    assert a.layers == b.layers and a.n_docs == b.n_docs and a.label_names == b.label_names
    for p in a.poolings:
        np.testing.assert_array_equal(a.pooled(p), b.pooled(p), err_msg=p)
    for k in ("min", "max", "frac_positive", "hist_counts"):
        np.testing.assert_array_equal(getattr(a.stats, k), getattr(b.stats, k), err_msg=k)
    assert a.stats.count == b.stats.count
    np.testing.assert_allclose(b.stats.mean, a.stats.mean, rtol=rel_moments, atol=1e-12)
    np.testing.assert_allclose(b.stats.std, a.stats.std, rtol=rel_moments, atol=1e-12)
    for t in ("top", "bottom"):
        for f in ("values", "docs", "positions"):
            np.testing.assert_array_equal(getattr(getattr(a, t), f), getattr(getattr(b, t), f), err_msg=f"{t}.{f}")
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    np.testing.assert_array_equal(a.token_offsets, b.token_offsets)
    np.testing.assert_array_equal(a.doc_token_counts, b.doc_token_counts)
    if a.labels is not None:
        np.testing.assert_array_equal(a.labels, b.labels)


@pytest.fixture(scope="module")
def long_corpus():
    """Code long enough for several windows per document at max_length=48, plus prose, labelled."""
    code = code_snippets(10, chars=900)
    return ml.Corpus(code + PROSE[:10], ["code"] * 10 + ["prose"] * 10)


@pytest.mark.parametrize("include_bos", [False, True])
@pytest.mark.parametrize("overflow", ["truncate", "windows"])
def test_sharded_scan_equals_one_process_tiny(tiny, long_corpus, include_bos, overflow, tmp_path):
    kw = dict(batch_size=4, max_length=48, overflow=overflow, pooling=POOL, include_bos=include_bos, progress=False)
    with pytest.warns(UserWarning) if overflow == "truncate" else _nothing():
        one = ml.scan(tiny, long_corpus, **kw)
    with pytest.warns(UserWarning) if overflow == "truncate" else _nothing():
        sharded = ml.scan(tiny, long_corpus, shard_tokens=150, **kw)
    assert sharded.meta["n_shards"] >= 4
    _assert_equal_scans(one, sharded)
    # the same through disk: parts written as they finish, pooled values gathered from the parts' files
    with pytest.warns(UserWarning) if overflow == "truncate" else _nothing():
        on_disk = ml.scan(tiny, long_corpus, shard_tokens=150, out=tmp_path / "run", **kw)
    _assert_equal_scans(one, on_disk)
    _assert_equal_scans(one, ml.Scan.load(tmp_path / "run"))
    if overflow == "windows":
        # documents whose windows fall in different shards exist, and are finished exactly by the merge
        assert one.meta["n_sequences"] > one.n_docs


def test_sharded_scan_equals_one_process_minilm(minilm, reviews, tmp_path):
    kw = dict(batch_size=8, max_length=64, overflow="windows", pooling=POOL, progress=False)
    one = ml.scan(minilm, reviews, **kw)
    sharded = ml.scan(minilm, reviews, shard_tokens=400, out=tmp_path / "run", **kw)
    assert sharded.meta["n_shards"] >= 3
    _assert_equal_scans(one, sharded)


@pytest.mark.parametrize("seed", [0, 1])
def test_merge_scans_of_arbitrary_splits(tiny, long_corpus, seed):
    kw = dict(batch_size=4, max_length=48, overflow="windows", pooling=POOL, progress=False)
    one = ml.scan(tiny, long_corpus, **kw)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(long_corpus))
    cut = sorted(rng.choice(np.arange(1, len(order)), size=2, replace=False))
    splits = np.split(order, cut)
    parts = [ml.scan(tiny, long_corpus.subset(idx), **kw) for idx in splits]
    merged = ml.merge_scans(parts, doc_ids=splits)
    assert merged.n_docs == one.n_docs and merged.label_names == one.label_names
    np.testing.assert_array_equal(merged.labels, one.labels)
    np.testing.assert_array_equal(merged.token_ids, one.token_ids)
    np.testing.assert_array_equal(merged.doc_token_counts, one.doc_token_counts)
    for p in POOL:
        np.testing.assert_allclose(merged.pooled(p), one.pooled(p), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(merged.stats.mean, one.stats.mean, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(merged.stats.std, one.stats.std, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(merged.stats.max, one.stats.max, atol=1e-5)
    np.testing.assert_allclose(merged.stats.min, one.stats.min, atol=1e-5)
    assert merged.stats.count == one.stats.count
    # histograms may move a value across a bin edge by float rounding: almost every count is identical
    assert np.mean(merged.stats.hist_counts == one.stats.hist_counts) > 0.999
    np.testing.assert_allclose(merged.top.values[..., 0], one.top.values[..., 0], atol=1e-5)
    assert np.mean(merged.top.docs[..., 0] == one.top.docs[..., 0]) > 0.99


def test_merge_scans_in_order_and_refusals(tiny, code_prose):
    a = ml.scan(tiny, code_prose.subset(range(10)), progress=False, pooling=("mean",))
    b = ml.scan(tiny, code_prose.subset(range(10, 20)), progress=False, pooling=("mean",))
    m = ml.merge_scans([a, b])
    assert m.n_docs == 20 and m.stats.count == a.stats.count + b.stats.count
    np.testing.assert_array_equal(m.pooled("mean")[:10], a.pooled("mean"))
    np.testing.assert_array_equal(m.stats.max, np.maximum(a.stats.max, b.stats.max))
    np.testing.assert_array_equal(m.stats.hist_counts, a.stats.hist_counts + b.stats.hist_counts)
    c = ml.scan(tiny, code_prose.subset(range(10, 20)), progress=False, pooling=("mean",), top_k=5)
    with pytest.raises(ScanError, match="different models or options"):
        ml.merge_scans([a, c])
    d = ml.scan(tiny, code_prose.subset(range(10, 20)), progress=False, pooling=("mean",), layers=[0, 1])
    with pytest.raises(ScanError):
        ml.merge_scans([a, d])
    e = ml.scan(tiny, code_prose.subset(range(10, 20)), progress=False, pooling=("mean",),
                histogram_edges=np.linspace(-1, 1, 9))
    with pytest.raises(ScanError, match="histogram edges"):
        ml.merge_scans([a, e])
    with pytest.raises(ScanError, match="disjoint"):
        ml.merge_scans([a, b], doc_ids=[range(10), range(5, 15)])


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
