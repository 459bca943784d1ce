"""Hook-point units: a scan of each hook kind equals a brute force over the model's own cache (TL 4 bridge, TL 2
HookedTransformer), and over the Hugging Face model's own hidden states and modules (hf backend)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mri_lens as ml
from mri_lens.errors import ModelAdapterError

from brute import TEXTS, check_scan, scan_of, tl_per_token

KINDS = ["mlp_post", "mlp_pre", "mlp_in", "mlp_out", "attn_out", "attn_z", "resid_pre", "resid_mid", "resid_post",
         "embed"]


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_hook_kinds_equal_run_with_cache(tiny, kind):
    scan = scan_of(tiny, kind)
    layers = [0] if kind == "embed" else [0, 1, 2, 3]
    assert scan.layers == layers
    cfg = tiny.cfg
    width = {"mlp_post": cfg.d_mlp, "mlp_pre": cfg.d_mlp, "attn_z": cfg.n_heads * cfg.d_head}.get(kind, cfg.d_model)
    assert scan.d_mlp == width
    assert scan.meta["units"]["kind"] == kind
    check_scan(scan, tl_per_token(tiny, scan, layers, kind), skip=1)


def test_default_units_are_the_neurons_as_before(tiny):
    plain = ml.scan(tiny, TEXTS, batch_size=3, progress=False)
    named = scan_of(tiny, "mlp_post")
    np.testing.assert_array_equal(plain.pooled("mean"), named.pooled("mean"))
    assert plain.meta["plan_hash"] == named.meta["plan_hash"]  # the default leaves the plan as it was
    other = scan_of(tiny, "resid_post")
    assert other.meta["plan_hash"] != plain.meta["plan_hash"]


def test_hook_template_and_layers(tiny):
    scan = scan_of(tiny, ml.units.hook("blocks.{layer}.attn.hook_z"), layers=[1, 2])
    assert scan.meta["units"]["kind"] == "attn_z" and scan.layers == [1, 2]
    check_scan(scan, tl_per_token(tiny, scan, [1, 2], "attn_z"), skip=1)
    odd = scan_of(tiny, ml.units.hook("blocks.{layer}.ln1.hook_normalized"), layers=[1])  # outside the table
    assert odd.d_mlp == tiny.cfg.d_model
    check_scan(odd, tl_per_token(tiny, odd, [1], "blocks.{layer}.ln1.hook_normalized"), skip=1)


@pytest.mark.parametrize("kind", ["resid_post", "attn_z", "mlp_pre", "embed", "resid_mid"])
def test_minilm_hook_kinds_equal_run_with_cache(minilm, kind):
    scan = scan_of(minilm, kind, layers=[0] if kind == "embed" else [0, 3])
    check_scan(scan, tl_per_token(minilm, scan, scan.layers, kind), skip=0, atol=2e-5)


def test_bad_hook_names_fail_before_the_model_runs(tiny):
    with pytest.raises(ModelAdapterError, match="no hook `blocks.0.mlp.hook_nope`"):
        scan_of(tiny, ml.units.hook("blocks.{layer}.mlp.hook_nope"))
    with pytest.raises(ValueError, match="unknown units 'resid'"):
        scan_of(tiny, "resid")
    with pytest.raises(ModelAdapterError, match="cover layers"):
        scan_of(tiny, "embed", layers=[1])


@pytest.fixture(scope="module")
def tiny_hf():
    return ml.models.tiny_lm(backend="hf", device="cpu")


def _hf_hidden(model, scan):
    """``[doc] -> hidden states tuple`` of the HF model run on each document alone."""
    out = []
    with torch.inference_mode():
        for d in range(scan.n_docs):
            res = model.model.base_model(torch.tensor([scan.tokens(d).tolist()]), output_hidden_states=True)
            out.append([h[0].float().numpy() for h in res.hidden_states])
    return out


@pytest.mark.parametrize("kind", ["resid_pre", "resid_post", "embed"])
def test_hf_hidden_state_kinds_equal_output_hidden_states(tiny_hf, kind):
    layers = [0] if kind == "embed" else [0, 1, 2]  # the last hidden state has the final LayerNorm in it
    scan = scan_of(tiny_hf, kind, layers=layers)
    assert scan.meta["backend"] == "hf"
    hs = _hf_hidden(tiny_hf, scan)
    shift = 1 if kind == "resid_post" else 0
    check_scan(scan, [{l: h[l + shift] for l in layers} for h in hs], skip=1)


@pytest.mark.parametrize("kind", ["mlp_pre", "mlp_in", "mlp_out", "attn_out", "attn_z", "resid_mid", "mlp_post"])
def test_hf_module_kinds_equal_the_tl_cache(tiny_hf, tiny, kind):
    """The hf backend reads the same tensors as TL's hooks (the same weights, loaded by the bridge)."""
    scan = scan_of(tiny_hf, kind, layers=[1, 3])
    norm = None
    if kind == "mlp_in" and type(tiny).__name__ == "HookedTransformer":
        # TL 2's unfolded hook_normalized includes the LayerNorm's weight and bias; TL 4's (and the hf backend's)
        # does not: the reference normalises the block's resid_mid itself
        def norm(l, x):
            x = x - x.mean(-1, keepdim=True)
            return x / (x.square().mean(-1, keepdim=True) + 1e-5).sqrt()
    check_scan(scan, tl_per_token(tiny, scan, [1, 3], "resid_mid" if norm else kind, norm), skip=1, atol=3e-5)


def test_hf_minilm_kinds_and_a_clear_error(minilm):
    hf = ml.models.minilm(backend="hf", device="cpu")
    scan = scan_of(hf, "resid_post", layers=[0, 5])
    hs = _hf_hidden(hf, scan)
    check_scan(scan, [{l: h[l + 1] for l in [0, 5]} for h in hs], skip=0, atol=2e-5)
    z = scan_of(hf, "attn_z", layers=[2])
    check_scan(z, tl_per_token(minilm, z, [2], "attn_z"), skip=0, atol=2e-5)
    with pytest.raises(ModelAdapterError, match="no `resid_mid` tensor on 'bert'.*resid_post"):
        scan_of(hf, "resid_mid", layers=[0])
