"""The plan: tokens, batches and shards fixed before the first forward and hashed with the corpus, the model and
the options; shards are consecutive batches within their bounds, and every sequence is in exactly one of them."""

from __future__ import annotations

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.model.adapter import as_adapter
from mri_lens.scanning.plan import plan_scan

from corpora import PROSE, code_snippets


@pytest.fixture(scope="module")
def corpus():
    return ml.Corpus(code_snippets(20) + PROSE[:10])


def _plan(tiny, corpus, **kw):
    return plan_scan(as_adapter(tiny), corpus, ml.ScanOptions(**kw), "transformer_lens")


def test_shards_are_consecutive_batches_within_their_bounds(tiny, corpus):
    plan = _plan(tiny, corpus, batch_size=4, shard_tokens=300, shard_bytes=6 * 4 * 512 * 2 * 4)
    assert plan.n_shards > 3 and plan.shard_bounds[0] == 0 and plan.shard_bounds[-1] == len(plan.batches)
    assert np.all(np.diff(plan.shard_bounds) >= 1)
    seen = []
    for i in range(plan.n_shards):
        shard = plan.shard(i)
        docs = np.unique(shard.doc)
        assert plan.shard_tokens(i) == shard.n_tokens
        assert shard.n_tokens <= 300 or len(shard.batches) == 1
        assert len(docs) <= 6 or len(shard.batches) == 1
        seen.extend(np.concatenate([plan.batches[b] for b in range(plan.shard_bounds[i], plan.shard_bounds[i + 1])]))
        for j in range(len(shard.doc)):  # each sequence's tokens are the plan's
            s = int(np.flatnonzero((plan.seq_doc == shard.doc[j]) & (plan.seq_offset == shard.offset[j]))[0])
            np.testing.assert_array_equal(shard.sequence(j), plan.seq_tokens[plan.seq_starts[s]:plan.seq_starts[s + 1]])
    assert sorted(seen) == list(range(len(plan.seq_doc)))
    with pytest.raises(ml.ScanError, match="shard must be in"):
        plan.shard(plan.n_shards)


def test_the_hash_covers_options_corpus_and_model_but_not_how_it_runs(tiny, corpus):
    base = _plan(tiny, corpus)
    assert _plan(tiny, corpus).hash == base.hash
    for kw in (dict(top_k=5), dict(pooling="mean"), dict(batch_size=8), dict(include_bos=True), dict(layers=[1]),
               dict(histogram_edges=[0.0, 1.0]), dict(shard_tokens=300)):
        assert _plan(tiny, corpus, **kw).hash != base.hash, kw
    assert _plan(tiny, corpus.subset(range(29))).hash != base.hash
    assert plan_scan(as_adapter(tiny), corpus, ml.ScanOptions(), "hf").hash != base.hash
    assert base.identity["model"]["weights_sha256"] and base.identity["corpus_fingerprint"] == corpus.fingerprint()


def test_top_k_is_capped_and_windows_set_dedup(tiny, corpus):
    plan = _plan(tiny, corpus.subset(range(3)), top_k=50)
    assert plan.options["top_k"] == 3 and plan.options["dedup"] is False
    windows = _plan(tiny, corpus, overflow="windows", max_length=16)
    assert windows.options["dedup"] is True and len(windows.seq_doc) > len(corpus)
    token_ids, offsets = windows.doc_token_arrays()
    assert offsets[-1] == len(token_ids) and len(offsets) == len(corpus) + 1


def test_bad_shard_bounds_are_refused(tiny, corpus):
    from mri_lens.scanning.plan import make_plan

    with pytest.raises(ValueError, match="shard_tokens must be positive"):
        make_plan(as_adapter(tiny), corpus, layers=[0], options={}, shard_tokens=0)
