"""Hidden-state units: a scan of ``units="hidden_states"`` numbers the residual stream as Hugging Face's
``output_hidden_states`` (0: the embeddings, i: block i-1's output) and equals it, on TransformerLens models and
on the hf backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mri_lens as ml
from mri_lens.errors import ModelAdapterError
from mri_lens.model.capture import token_activations
from mri_lens.model.unit_base import HiddenStateUnits

from brute import TEXTS, check_scan, scan_of

POOL = ("mean", "max", "last")


def _hf_reference(model_dir, scan):
    """``[doc] -> [n_layers + 1 arrays [n_tokens, d_model]]``: ``transformers.AutoModel`` on each scanned document
    alone (its exact tokens), with ``output_hidden_states``; and the base model (for its final LayerNorm)."""
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for d in range(scan.n_docs):
            res = hf(torch.tensor([scan.tokens(d).tolist()]), output_hidden_states=True)
            out.append([h[0].float().numpy() for h in res.hidden_states])
    return out, hf


@pytest.fixture(scope="module")
def minilm_ref(minilm):
    scan = scan_of(minilm, "hidden_states", pooling=POOL + ("first",))
    ref, _ = _hf_reference(ml.models.minilm_dir(), scan)
    return scan, ref


@pytest.fixture(scope="module")
def tiny_ref(tiny):
    scan = scan_of(tiny, "hidden_states", pooling=POOL)
    ref, hf = _hf_reference(ml.models.tiny_lm_dir(), scan)
    return scan, ref, hf


def _check_last(scan, ref, atol=1e-4):
    for li, l in enumerate(scan.layers):
        last = np.stack([r[l][-1] for r in ref])  # no padding in the reference: the document's last token
        np.testing.assert_allclose(scan.pooled("last")[:, li], last, atol=atol, rtol=1e-4)


def test_minilm_every_hidden_state_equals_output_hidden_states(minilm, minilm_ref):
    scan, ref = minilm_ref
    n = minilm.cfg.n_layers
    assert scan.layers == list(range(n + 1)) and len(ref[0]) == n + 1
    assert scan.d_mlp == minilm.cfg.d_model
    check_scan(scan, [dict(enumerate(r)) for r in ref], skip=0, atol=1e-4)  # encoders: [CLS], [SEP] counted
    _check_last(scan, ref)
    for li, l in enumerate(scan.layers):  # LLM-MRI's features: the [CLS] token's hidden state
        np.testing.assert_allclose(scan.pooled("first")[:, li], np.stack([r[l][0] for r in ref]), atol=1e-4,
                                   rtol=1e-4)
    # layer 0 is the embeddings, layer 1 the first block's output: different tensors
    assert not np.allclose(scan.pooled("mean")[:, 0], scan.pooled("mean")[:, 1], atol=1e-2)


def test_tiny_hidden_states_and_the_final_layernorm(tiny, tiny_ref):
    """Layers 0..n-1 equal output_hidden_states; the last is block n-1's output, whose final LayerNorm is the
    last entry of output_hidden_states on GPT-2."""
    scan, ref, hf = tiny_ref
    n = tiny.cfg.n_layers
    assert scan.layers == list(range(n + 1)) and scan.d_mlp == tiny.cfg.d_model
    assert scan.meta["units"]["kind"] == "hidden_states"
    assert scan.meta["units"]["hooks"] == {"0": "blocks.0.hook_resid_pre",
                                           **{str(i): f"blocks.{i - 1}.hook_resid_post" for i in range(1, n + 1)}}
    inner = {l: li for li, l in enumerate(scan.layers) if l < n}
    for l, li in inner.items():
        mean = np.stack([r[l][1:].mean(0) for r in ref])  # BOS prepended, not counted
        np.testing.assert_allclose(scan.pooled("mean")[:, li], mean, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(scan.pooled("last")[:, li], np.stack([r[l][-1] for r in ref]), atol=1e-4,
                                   rtol=1e-4)
    toks = [scan.tokens(d).tolist() for d in range(scan.n_docs)]
    acts = token_activations(tiny, toks, [n], units="hidden_states")
    with torch.inference_mode():
        normed = [hf.ln_f(torch.from_numpy(a[n])).numpy() for a in acts]
    for d in range(scan.n_docs):
        np.testing.assert_allclose(normed[d], ref[d][n], atol=1e-4, rtol=1e-4)
        assert not np.allclose(acts[d][n], ref[d][n], atol=1e-2)  # the raw block output is not the normed one


def test_token_activations_equal_output_hidden_states(tiny, tiny_ref):
    scan, ref, _ = tiny_ref
    n = tiny.cfg.n_layers
    toks = [scan.tokens(d).tolist() for d in (0, 3)]
    acts = token_activations(tiny, toks, list(range(n)), units=ml.units.hidden_states())
    for a, d in zip(acts, (0, 3)):
        for l in range(n):
            np.testing.assert_allclose(a[l], ref[d][l], atol=1e-4, rtol=1e-4)  # BOS included


def test_layer_numbering_and_refusals(tiny, minilm):
    n = tiny.cfg.n_layers
    some = scan_of(tiny, "hidden_states", layers=[0, n])
    assert some.layers == [0, n]
    full = scan_of(tiny, "hidden_states")
    np.testing.assert_allclose(some.pooled("mean")[:, 1], full.pooled("mean")[:, n], atol=1e-6)
    for bad in ([n + 1], [0, n + 3]):
        with pytest.raises(ModelAdapterError, match=rf"hidden states are numbered 0\.\.{n} "):
            scan_of(tiny, "hidden_states", layers=bad)
    with pytest.raises(ModelAdapterError, match=r"numbered 0\.\.6 "):
        token_activations(minilm, [[101, 7592, 102]], [7], units="hidden_states")
    with pytest.raises(ModelAdapterError, match=r"numbered 0\.\.6 "):
        token_activations(minilm, [[101, 7592, 102]], [-1], units="hidden_states")
    # the plain residual kinds keep their own numbering: blocks 0..n-1
    with pytest.raises(ModelAdapterError, match=rf"layers must be in 0\.\.{n - 1}"):
        scan_of(tiny, "resid_post", layers=[n])


def test_hf_backend_agrees_with_tl_and_hugging_face(tiny, tiny_ref, minilm_ref):
    scan, ref, _ = tiny_ref
    n = tiny.cfg.n_layers
    hf_tiny = ml.models.tiny_lm(backend="hf", device="cpu")
    got = scan_of(hf_tiny, "hidden_states", pooling=POOL)
    assert got.meta["backend"] == "hf" and got.layers == scan.layers
    for name in POOL:  # the same tensors as the TL model reads, the last (un-normed) layer included
        np.testing.assert_allclose(got.pooled(name), scan.pooled(name), atol=1e-4, rtol=1e-4)
    for l in range(n):
        np.testing.assert_allclose(got.pooled("mean")[:, l], np.stack([r[l][1:].mean(0) for r in ref]), atol=1e-4,
                                   rtol=1e-4)
    bert_scan, bert_ref = minilm_ref
    hf_bert = ml.models.minilm(backend="hf", device="cpu")
    bert = scan_of(hf_bert, "hidden_states", pooling=POOL)
    check_scan(bert, [dict(enumerate(r)) for r in bert_ref], skip=0, atol=1e-4)
    _check_last(bert, bert_ref)
    np.testing.assert_allclose(bert.pooled("mean"), bert_scan.pooled("mean"), atol=1e-4, rtol=1e-4)


def test_saved_scan_reloads_hidden_state_units(tiny, tmp_path):
    n = tiny.cfg.n_layers
    scan_of(tiny, "hidden_states", layers=[0, n], out=tmp_path / "hs")
    loaded = ml.Scan.load(tmp_path / "hs")
    assert loaded.meta["units"]["kind"] == "hidden_states" and loaded.layers == [0, n]
    units = ml.units.units_for_scan(loaded)
    assert isinstance(units, HiddenStateUnits) and units.hook_name(None, n) == f"blocks.{n - 1}.hook_resid_post"
    a = loaded.token_activations(tiny, [2], layer=n)[0]  # recomputed from the rebuilt units
    np.testing.assert_allclose(a[1:].max(0), loaded.pooled("max", layer=n)[2], atol=1e-5, rtol=1e-5)
    assert a.shape[1] == tiny.cfg.d_model


def test_units_api_and_cli(tmp_path):
    import pandas as pd

    from mri_lens.cli import main

    assert isinstance(ml.units.as_units("hidden_states"), HiddenStateUnits)
    assert isinstance(ml.units.hidden_states(), HiddenStateUnits)
    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "c.csv", index=False)
    assert main(["scan", "--model", "tiny", "--corpus", str(tmp_path / "c.csv"), "--units", "hidden_states",
                 "--layers", "0,4", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    s = ml.Scan.load(tmp_path / "run")
    assert s.meta["units"]["kind"] == "hidden_states" and s.layers == [0, 4] and s.d_mlp == 128
