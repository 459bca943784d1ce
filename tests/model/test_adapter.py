"""Model adapter on real TransformerLens models (TL 4 bridge or TL 2 HookedTransformer, whichever is installed)."""

from __future__ import annotations

import pytest
import torch

import mri_lens as ml
from mri_lens.errors import ModelAdapterError
from mri_lens.model import ModelAdapter
from mri_lens.model.loading import tl_major_version


def test_tiny_lm_facts(tiny):
    ad = ModelAdapter(tiny)
    assert (ad.n_layers, ad.d_mlp, ad.is_causal) == (4, 512, True)
    assert ad.prepend_bos is True and ad.hook_template == "blocks.{layer}.mlp.hook_post"
    d = ad.describe()
    assert d["model_id"] == "tiny_lm" and d["padding_side"] == "right" and d["special_prefix"] == [0]
    # the lenses' doors: the tokenizer, the special tokens and the weights, read from the model itself
    assert ad.tokenizer is tiny.tokenizer and ad.special_prefix == [tiny.tokenizer.bos_token_id]
    assert ad.special_suffix == [] and ad.input_embedding().data_ptr() == tiny.W_E.data_ptr()
    assert tuple(ad.neuron_output_weights(2).shape) == (512, tiny.cfg.d_model)


def test_encode_prepends_bos_once_and_truncates(tiny):
    ad = ModelAdapter(tiny)
    (seqs,), n_over = ad.encode(["def f(x): return x"])
    assert n_over == 0 and len(seqs) == 1
    assert seqs[0][0] == tiny.tokenizer.bos_token_id and list(seqs[0]).count(tiny.tokenizer.bos_token_id) == 1
    segs, n_over = ad.encode(["a b c d e f g h i j"], max_length=4, overflow="windows")
    assert n_over == 1 and all(len(s) <= 4 and s[0] == tiny.tokenizer.bos_token_id for s in segs[0])
    assert sum(len(s) - 1 for s in segs[0]) == len(tiny.tokenizer("a b c d e f g h i j",
                                                                  add_special_tokens=False)["input_ids"])
    no_bos = ModelAdapter(tiny, prepend_bos=False)
    assert no_bos.encode(["x"])[0][0][0] != tiny.tokenizer.bos_token_id


def test_minilm_is_encoder(minilm):
    ad = ModelAdapter(minilm)
    assert not ad.is_causal and ad.d_mlp == 1536 and ad.n_layers == 6
    (seqs,), _ = ad.encode(["hello world"])
    assert seqs[0][0] == minilm.tokenizer.cls_token_id and seqs[0][-1] == minilm.tokenizer.sep_token_id


def test_missing_hook_names_the_hooks_it_has(tiny):
    with pytest.raises(ModelAdapterError, match=r"no MLP neuron hook `blocks.0.mlp.hook_nope`.*blocks\.0\.mlp"):
        ModelAdapter(tiny, hook_template="blocks.{layer}.mlp.hook_nope")


def test_attention_only_model_gets_clear_error():
    if tl_major_version() >= 3:
        pytest.skip("TransformerLens >= 3 builds no attention-only model offline (HookedTransformer is TL 2/3)")
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=8, n_heads=2, d_vocab=50,
                                  attn_only=True, act_fn="gelu")
    model = HookedTransformer(cfg)  # random weights: shape/error test only
    model.tokenizer = ml.models.tiny_lm(device="cpu").tokenizer
    with pytest.raises(ModelAdapterError, match="attention-only"):
        ml.scan(model, ["x = 1"], progress=False)


def test_not_a_tl_model():
    with pytest.raises(ModelAdapterError, match="not a TransformerLens model"):
        ModelAdapter(torch.nn.Linear(2, 2))


def test_bad_padding_side(tiny):
    with pytest.raises(ModelAdapterError, match="padding_side"):
        ModelAdapter(tiny, padding_side="middle")


def test_hooks_removed_after_an_error(tiny, code_prose):
    import mri_lens.scanning.shard as scanner

    class Boom(RuntimeError):
        pass

    orig = scanner._Accumulator.update

    def explode(*a, **k):
        raise Boom

    scanner._Accumulator.update = explode
    try:
        with pytest.raises(Boom):
            ml.scan(tiny, code_prose.subset(range(2)), progress=False)
    finally:
        scanner._Accumulator.update = orig
    assert all(len(hp._forward_hooks) == 0 for hp in tiny.hook_dict.values())
