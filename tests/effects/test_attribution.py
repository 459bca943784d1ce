"""Attribution patching against exact ablation, and exact ablation of each neuron against one ablation at a time,
on the real tiny LM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import mri_lens as ml

from corpora import code_snippets

LAYER = 1
# Spearman correlation of attribution patching's scores with exact zero ablation over all 512 neurons of layer 1,
# measured on two 120-character snippets (see bench/RESULTS.md for the figure); the bar is set well below it.
MIN_SPEARMAN = 0.9


@pytest.fixture(scope="module")
def two_snippets() -> list[str]:
    return code_snippets(2, 120)


@pytest.fixture(scope="module")
def exact(tiny_hf, two_snippets):
    return ml.effects.ablate_each(tiny_hf, LAYER, texts=two_snippets, max_rows=128, progress=False)


def test_attribution_ranking_agrees_with_exact_ablation(tiny_hf, two_snippets, exact):
    att = ml.effects.attribution(tiny_hf, LAYER, texts=two_snippets, progress=False)
    assert att.scores.shape == exact.scores.shape == (512,)
    rho = spearmanr(att.scores, exact.scores).correlation
    assert rho > MIN_SPEARMAN
    # the neuron whose ablation hurts most is near the top of attribution's ranking
    assert int(np.where(att.ranking() == exact.ranking()[0])[0][0]) < 10
    assert att.clean_loss == pytest.approx(exact.clean_loss, abs=1e-4)


def test_exact_ablation_of_each_neuron_equals_ablating_it_alone(tiny_hf, two_snippets, exact):
    for n in (88, 0, 511, int(exact.ranking()[0])):
        alone = ml.effects.ablate(tiny_hf, LAYER, [n], texts=two_snippets, progress=False)
        assert exact.scores[n] == pytest.approx(alone.loss_change, abs=1e-5)


def test_attribution_equals_a_hand_computed_gradient(tiny, two_snippets):
    """activation x gradient from plain TransformerLens autograd on one unpadded document."""
    tok = tiny.tokenizer
    ids = [tok.bos_token_id] + tok(two_snippets[0], add_special_tokens=False)["input_ids"]
    kept = {}

    def hook(act, hook):
        kept["a"] = act
        return act

    logits = tiny.run_with_hooks(torch.tensor([ids]), return_type="logits",
                                 fwd_hooks=[(f"blocks.{LAYER}.mlp.hook_post", hook)])
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], torch.tensor(ids[1:]), reduction="sum")
    (g,) = torch.autograd.grad(loss, kept["a"])
    expected = (kept["a"].detach()[0] * g[0]).sum(0).numpy() / (len(ids) - 1)
    with torch.inference_mode():  # attribution turns autograd back on for itself
        att = ml.effects.attribution(tiny, LAYER, texts=two_snippets[:1], progress=False)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    np.testing.assert_allclose(att.act_grad, expected, atol=1e-6)
    np.testing.assert_allclose(att.scores, -expected, atol=1e-6)  # zero ablation: (0 - a) . g


def test_mean_attribution_uses_the_scans_means(tiny, two_snippets):
    scan = ml.scan(tiny, two_snippets, top_k=1, progress=False)
    zero = ml.effects.attribution(tiny, LAYER, texts=two_snippets, progress=False)
    mean = ml.effects.attribution(tiny, LAYER, texts=two_snippets, how="mean", scan=scan, progress=False)
    assert not np.allclose(zero.scores, mean.scores)
    exact = ml.effects.ablate_each(tiny, LAYER, texts=two_snippets, neurons=[88, 5], how="mean", scan=scan,
                                   progress=False)
    alone = ml.effects.ablate(tiny, LAYER, [88], texts=two_snippets, how="mean", scan=scan, progress=False)
    assert exact.scores[0] == pytest.approx(alone.loss_change, abs=1e-5)
    assert list(exact.neurons) == [88, 5]


def test_results_display(tiny_hf, two_snippets, exact):
    df = exact.to_pandas()
    assert df["rank"].tolist() == list(range(1, 513))
    assert df["score"].is_monotonic_decreasing and df["neuron"].iloc[0] == exact.ranking()[0]
    assert len(exact.top(5)) == 5
    assert "exact" in exact._repr_html_() and len(exact.figure().data) == 2


def test_encoders(minilm, docs):
    with pytest.raises(ml.ModelAdapterError, match="no next-token loss|has none"):
        ml.effects.attribution(minilm, LAYER, texts=docs)
    each = ml.effects.ablate_each(minilm, LAYER, texts=docs[1:], neurons=[88, 3], progress=False)
    alone = ml.effects.ablate(minilm, LAYER, [88], texts=docs[1:], progress=False)
    assert each.scores[0] == pytest.approx(alone.output_change, abs=1e-5)
    assert each.clean_loss is None and each.metric == "final hidden state L2"
