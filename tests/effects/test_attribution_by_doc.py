"""Attribution patching per document on the real tiny LM: each document's sums are what attribution patching gives
on that document alone, their totals what it gives on all of them, and hooks are gone after an error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mri_lens as ml

from corpora import code_snippets

LAYER = 1


@pytest.fixture(scope="module")
def windowed_scan(tiny):
    """Five documents of different lengths, the longer ones cut into windows of 24 tokens."""
    texts = [t[:n] for t, n in zip(code_snippets(5, 400), (400, 90, 250, 40, 160))]
    return ml.scan(tiny, texts, max_length=24, overflow="windows", top_k=2, progress=False)


def test_each_document_equals_attribution_on_it_alone(tiny, windowed_scan):
    docs = [3, 0, 2]
    by_doc = ml.effects.attribution_by_doc(tiny, LAYER, scan=windowed_scan, docs=docs, batch_size=2,
                                           progress=False)
    assert by_doc.docs.tolist() == docs and by_doc.scores.shape == (3, 512)
    assert len(windowed_scan.tokens(0)) > 24  # document 0 is measured in two windows
    for i, d in enumerate(docs):
        alone = ml.effects.attribution(tiny, LAYER, scan=windowed_scan, docs=[d], progress=False)
        assert by_doc.n_tokens[i] == alone.n_tokens
        np.testing.assert_allclose(by_doc.scores[i] / by_doc.n_tokens[i], alone.scores, atol=1e-5)
    together = ml.effects.attribution(tiny, LAYER, scan=windowed_scan, docs=docs, progress=False)
    np.testing.assert_allclose(by_doc.mean_over(docs), together.scores, atol=1e-6)
    assert by_doc.clean_loss == pytest.approx(together.clean_loss, abs=1e-5)
    np.testing.assert_allclose(by_doc.mean_over([2, 3], neurons=[88, 7]),
                               ml.effects.attribution(tiny, LAYER, scan=windowed_scan, docs=[2, 3],
                                                      progress=False).scores[[88, 7]], atol=1e-5)


def test_several_layers_in_one_pass_equal_each_layer_alone(tiny, windowed_scan):
    docs = [4, 0, 2]
    both = ml.effects.attribution_by_doc(tiny, [3, 0, 1], scan=windowed_scan, docs=docs, how="mean", batch_size=2,
                                         progress=False)
    assert sorted(both) == [0, 1, 3]
    for layer, got in both.items():
        alone = ml.effects.attribution_by_doc(tiny, layer, scan=windowed_scan, docs=docs, how="mean", batch_size=2,
                                              progress=False)
        assert got.layer == layer and got.docs.tolist() == docs
        np.testing.assert_array_equal(got.n_tokens, alone.n_tokens)
        np.testing.assert_allclose(got.scores, alone.scores, rtol=0, atol=1e-6)
        assert got.clean_loss == pytest.approx(alone.clean_loss, abs=1e-6)
    assert not np.allclose(both[0].scores, both[3].scores)
    with pytest.raises(ml.ModelAdapterError, match="layers must be in"):
        ml.effects.attribution_by_doc(tiny, [1, 9], scan=windowed_scan, docs=docs, progress=False)


def test_texts_and_mean_ablation(tiny, windowed_scan):
    texts = code_snippets(2, 120)
    by_doc = ml.effects.attribution_by_doc(tiny, LAYER, texts=texts, how="mean", scan=windowed_scan,
                                           progress=False)
    assert by_doc.docs.tolist() == [0, 1]
    whole = ml.effects.attribution(tiny, LAYER, texts=texts, how="mean", scan=windowed_scan, progress=False)
    np.testing.assert_allclose(by_doc.mean_over([0, 1]), whole.scores, atol=1e-6)
    zero = ml.effects.attribution_by_doc(tiny, LAYER, texts=texts, progress=False)
    assert not np.allclose(zero.scores, by_doc.scores)
    assert "DocScores(layer=1, docs=2" in repr(by_doc)


def test_encoders_are_refused(minilm):
    with pytest.raises(ml.ModelAdapterError, match="no next-token loss|has none"):
        ml.effects.attribution_by_doc(minilm, LAYER, texts=["a short text"])


class Boom(RuntimeError):
    pass


def test_hooks_are_removed_after_an_error(tiny, windowed_scan):
    """An error raised by a later layer mid-forward leaves none of attribution's hooks behind."""
    def boom(act, hook):
        raise Boom("injected")

    point = tiny.hook_dict[f"blocks.{LAYER + 1}.mlp.hook_post"]
    point.add_hook(boom)
    try:
        with pytest.raises(Boom):
            ml.effects.attribution_by_doc(tiny, LAYER, scan=windowed_scan, docs=[1], progress=False)
    finally:
        point.remove_hooks(including_permanent=True)
    assert all(len(hp._forward_hooks) == 0 for hp in tiny.hook_dict.values())
    assert torch.is_grad_enabled()
    after = ml.effects.attribution_by_doc(tiny, LAYER, scan=windowed_scan, docs=[1], progress=False)
    assert np.isfinite(after.scores).all()
