"""The "first" pooling: each document's activation at its first counted token, checked against the model run by
hand on the tiny LM (BOS out, BOS in, no BOS; right and left padding; MLP neurons and the residual stream) and the
real MiniLM-L6 ([CLS]); documents split in windows and across shards give what one process gives; parts written
before the pooling existed still load and resume."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

import mri_lens as ml
import mri_lens.results.parts as parts_module
from mri_lens.cli_args import pooling_list
from mri_lens.model import ModelAdapter
from mri_lens.model.capture import token_activations
from mri_lens.results import PartDocs
from mri_lens.scanning import ScanOptions

from corpora import PROSE, code_snippets
from saved import manifest

ATOL = 1e-5


def _by_hand(model, corpus, position: int, *, units=None, **encode) -> np.ndarray:
    """``[n_docs, n_layers, width]``: every layer's activation at ``position`` of each document's first sequence
    (special tokens included), each document run alone."""
    adapter = ModelAdapter(model, prepend_bos=encode.pop("prepend_bos", None))
    segs, _ = adapter.encode(corpus.texts, **encode)
    layers = list(range(adapter.n_layers))
    acts = token_activations(model, [s[0] for s in segs], layers, units=units, batch_size=1)
    return np.stack([np.stack([a[l][position] for l in layers]) for a in acts])


@pytest.fixture(scope="module")
def prose() -> ml.Corpus:
    return ml.Corpus(PROSE[:8])


@pytest.fixture(scope="module")
def long_corpus() -> ml.Corpus:
    """Code long enough for several 48-token windows per document, plus prose (one or two windows each)."""
    return ml.Corpus(code_snippets(4, chars=600) + PROSE[:3])


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("include_bos", [False, True])
def test_tiny_lm_first_is_the_first_counted_token(tiny, prose, include_bos, padding_side):
    """BOS excluded: the token after it; BOS counted: BOS itself. Left padding puts pads before the tokens: a
    position read from the row's start instead of the sequence's would read a pad and fail here."""
    s = ml.scan(tiny, prose, pooling=("first", "last"), include_bos=include_bos, padding_side=padding_side,
                batch_size=3, progress=False)
    assert s.tokens(0)[0] == tiny.tokenizer.bos_token_id
    first = s.pooled("first")
    assert first.shape == (len(prose), 4, tiny.cfg.d_mlp)
    np.testing.assert_allclose(first, _by_hand(tiny, prose, 0 if include_bos else 1), atol=ATOL, rtol=0)
    if include_bos:  # a causal model's BOS sees nothing else: the same values for every document
        np.testing.assert_allclose(first, np.broadcast_to(first[:1], first.shape), atol=ATOL)
    else:
        assert np.abs(first - first[:1]).max() > 1e-2
    assert np.abs(first - s.pooled("last")).max() > 1e-2


def test_tiny_lm_without_bos_first_is_the_first_text_token(tiny, prose):
    s = ml.scan(tiny, prose, pooling=("first",), prepend_bos=False, progress=False)
    assert s.tokens(0)[0] != tiny.tokenizer.bos_token_id
    np.testing.assert_allclose(s.pooled("first"), _by_hand(tiny, prose, 0, prepend_bos=False), atol=ATOL, rtol=0)


def test_first_pools_whatever_units_the_scan_reads(tiny, prose):
    s = ml.scan(tiny, prose, pooling=("first", "mean"), units="resid_post", progress=False)
    want = _by_hand(tiny, prose, 1, units="resid_post")
    assert s.pooled("first").shape == want.shape and want.shape[-1] == tiny.cfg.d_model
    np.testing.assert_allclose(s.pooled("first"), want, atol=ATOL, rtol=0)


def test_minilm_first_is_cls(minilm, reviews):
    corpus = reviews.subset(range(10))
    s = ml.scan(minilm, corpus, pooling=("first", "mean"), batch_size=4, progress=False)
    assert s.str_tokens(0)[0] == "[CLS]"
    np.testing.assert_allclose(s.pooled("first"), _by_hand(minilm, corpus, 0), atol=ATOL, rtol=0)
    assert np.abs(s.pooled("first") - s.pooled("mean")).max() > 1e-2


def _part_dirs(out) -> list[str]:
    return sorted(glob.glob(os.path.join(str(out), "run-*", "part-*")))


@pytest.mark.parametrize("include_bos", [False, True])
def test_windows_and_shards_give_the_one_process_first(tiny, long_corpus, include_bos, tmp_path):
    """A document split in windows takes its first window's first counted token; split across shards, the part
    holding that window gives it (bit for bit the one-process value), in memory, through disk and loaded."""
    kw = dict(batch_size=4, max_length=48, overflow="windows", pooling=("first", "last", "mean"),
              include_bos=include_bos, progress=False)
    one = ml.scan(tiny, long_corpus, **kw)
    assert one.meta["n_sequences"] > one.n_docs
    sharded = ml.scan(tiny, long_corpus, shard_tokens=100, **kw)
    assert sharded.meta["n_shards"] >= 4
    others = [sharded]
    if not include_bos:  # through disk: parts written, pooled values gathered from the parts' files
        others += [ml.scan(tiny, long_corpus, shard_tokens=100, out=tmp_path / "run", **kw),
                   ml.Scan.load(tmp_path / "run")]
        dirs = _part_dirs(tmp_path / "run")
        assert all(manifest(d)["schema_version"] == 2 for d in dirs)
        # documents whose first window and other windows lie in different parts exist
        flags = [PartDocs(d).partial_has_first for d in dirs]
        assert any(f.any() for f in flags) and any((~f).any() for f in flags)
    for other in others:
        for p in ("first", "last"):
            np.testing.assert_array_equal(other.pooled(p), one.pooled(p), err_msg=p)
    # the first window is the truncated text: the same first value as a scan that cuts at the first window
    with pytest.warns(UserWarning, match="truncated"):
        cut = ml.scan(tiny, long_corpus, **{**kw, "overflow": "truncate"})
    np.testing.assert_allclose(one.pooled("first"), cut.pooled("first"), atol=ATOL, rtol=0)
    np.testing.assert_allclose(one.pooled("first"), _by_hand(tiny, long_corpus, 0 if include_bos else 1,
                                                             max_length=48, overflow="windows"), atol=ATOL, rtol=0)
    assert np.abs(one.pooled("first") - one.pooled("last")).max() > 1e-2


def test_minilm_windows_across_shards(minilm, reviews):
    kw = dict(batch_size=8, max_length=32, overflow="windows", pooling=("first", "max"), progress=False)
    corpus = reviews.subset(range(8))
    one = ml.scan(minilm, corpus, **kw)
    sharded = ml.scan(minilm, corpus, shard_tokens=150, **kw)
    assert one.meta["n_sequences"] > one.n_docs and sharded.meta["n_shards"] >= 3
    np.testing.assert_array_equal(sharded.pooled("first"), one.pooled("first"))
    np.testing.assert_allclose(one.pooled("first"), _by_hand(minilm, corpus, 0, max_length=32, overflow="windows"),
                               atol=ATOL, rtol=0)


def test_merge_scans_keeps_first(tiny, long_corpus):
    kw = dict(batch_size=4, max_length=48, overflow="windows", pooling=("first",), progress=False)
    one = ml.scan(tiny, long_corpus, **kw)
    ids = [np.arange(0, len(long_corpus), 2), np.arange(1, len(long_corpus), 2)]
    merged = ml.merge_scans([ml.scan(tiny, long_corpus.subset(i), **kw) for i in ids], doc_ids=ids)
    np.testing.assert_allclose(merged.pooled("first"), one.pooled("first"), atol=ATOL, rtol=0)


def test_parts_written_before_first_existed_load_and_resume(tiny, long_corpus, tmp_path, monkeypatch):
    """Parts of the earlier part format (schema 1, no ``partial_has_first``) of a scan without "first": the scan
    loads, and a rerun resumes every part, with the values of a fresh scan."""
    kw = dict(batch_size=4, max_length=48, overflow="windows", pooling=("mean", "last"), shard_tokens=100,
              progress=False)
    with monkeypatch.context() as m:  # the part writer as it was: schema 1, no first-window flags
        m.setattr(parts_module, "PART_SCHEMA", 1)
        m.setattr(parts_module, "PART_DOCS", tuple(k for k in parts_module.PART_DOCS if k != "partial_has_first"))
        old = ml.scan(tiny, long_corpus, out=tmp_path / "old", **kw)
    dirs = _part_dirs(tmp_path / "old")
    assert len(dirs) >= 4 and all(manifest(d)["schema_version"] == 1 for d in dirs)
    for d in dirs:
        docs = PartDocs(d)
        assert "partial_has_first" not in docs.loaded.arrays
        assert docs.partial_has_first.shape == docs.partial_docs.shape and not docs.partial_has_first.any()
    assert any(len(PartDocs(d).partial_docs) for d in dirs)  # split documents: the merge reads the flags
    fresh = ml.scan(tiny, long_corpus, **{**kw, "shard_tokens": None})
    loaded = ml.Scan.load(tmp_path / "old")
    os.remove(tmp_path / "old" / "manifest.json")  # the scan unsaved, its parts kept: a rerun merges them again
    resumed = ml.scan(tiny, long_corpus, out=tmp_path / "old", **kw)
    assert resumed.meta["run"]["resumed"] == len(dirs) and resumed.meta["run"]["computed"] == 0
    for s in (old, loaded, resumed):
        for p in ("mean", "last"):
            np.testing.assert_array_equal(s.pooled(p), fresh.pooled(p), err_msg=p)


def test_first_is_a_pooling_option():
    assert ScanOptions(pooling="first").pooling == ("first",)
    assert ScanOptions(pooling=("first", "mean")).pooling == ("first", "mean")
    assert pooling_list("mean,first") == ("mean", "first")
    with pytest.raises(ValueError, match="unknown pooling 'firsts'"):
        ScanOptions(pooling="firsts")
