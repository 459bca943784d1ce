"""Hugging Face capture backend: hf backend == TL backend == per-document brute force.

The TL side reuses the run_with_cache oracle; the random-weight architectures (GPT-NeoX, Llama) have no TL model
here, so their brute force reads the down-projection inputs with its own hooks, one unpadded document at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mri_lens as ml
from mri_lens.capture import HF_ARCHITECTURES, HuggingFaceBackend, get_backend, hf_down_projections
from mri_lens.errors import ModelAdapterError

from oracle import pool_document, reference

ATOL = 1e-5
POOLING = ("mean", "max", "min", "last")


@pytest.fixture(scope="module")
def tiny_hf():
    return ml.models.tiny_lm(backend="hf", device="cpu")


@pytest.fixture(scope="module")
def minilm_hf():
    return ml.models.minilm(backend="hf", device="cpu")


def _scan(model, corpus, **kw):
    kw.setdefault("batch_size", 5)
    return ml.scan(model, corpus, pooling=POOLING, top_k=5, progress=False, **kw)


def _check(result, ref, n_layers):
    """Pooled values and token statistics against a reference dict (see oracle.reference)."""
    for p in POOLING:
        np.testing.assert_allclose(result.pooled(p), ref[p], atol=ATOL, rtol=0, err_msg=f"pooling {p}")
    tokens64 = ref["tokens"].astype(np.float64)  # [L, T, d]
    assert result.stats.count == tokens64.shape[1]
    np.testing.assert_allclose(result.stats.mean, tokens64.mean(1), atol=ATOL)
    np.testing.assert_allclose(result.stats.std, tokens64.std(1), atol=ATOL)
    np.testing.assert_allclose(result.stats.max, ref["tokens"].max(1), atol=ATOL)
    np.testing.assert_allclose(result.stats.min, ref["tokens"].min(1), atol=ATOL)
    assert result.pooled("mean").shape[1] == n_layers


def _check_same(a, b):
    """Two scans of the same corpus agree: pooled values, statistics, top-k values."""
    for p in POOLING:
        np.testing.assert_allclose(a.pooled(p), b.pooled(p), atol=ATOL, rtol=0, err_msg=f"pooling {p}")
    assert a.stats.count == b.stats.count
    for f in ("mean", "std", "max", "min"):
        np.testing.assert_allclose(getattr(a.stats, f), getattr(b.stats, f), atol=ATOL, err_msg=f)
    np.testing.assert_allclose(a.top.values, b.top.values, atol=ATOL)
    np.testing.assert_allclose(a.bottom.values, b.bottom.values, atol=ATOL)


def _three_way(hf, tl, tl_model, segs, layers, skip_first: int):
    """hf scan == brute force, TL scan == brute force, hf scan == TL scan."""
    ref = reference(tl_model, segs, layers, skip_first=skip_first)
    _check(hf, ref, len(layers))
    _check(tl, ref, len(layers))
    _check_same(hf, tl)


def _same_tokens(model_a, model_b, texts) -> bool:
    """Both adapters produce identical input sequences (same special tokens)."""
    a, _ = ml.ModelAdapter(model_a).encode(texts)
    b, _ = ml.ModelAdapter(model_b).encode(texts)
    return all((x == y).all() for sa, sb in zip(a, b) for x, y in zip(sa, sb))


def _hook_brute_force(hf: ml.HFModel, seqs_per_doc, layers, skip_first: int):
    """Per document, unpadded, no mask: down-projection inputs read with this test's own pre-hooks."""
    model = hf.model
    mods = hf_down_projections(model, layers)
    res = {p: [] for p in POOLING}
    tokens = {l: [] for l in layers}
    for segs in seqs_per_doc:
        assert len(segs) == 1
        got: dict[int, np.ndarray] = {}
        handles = [mods[l].register_forward_pre_hook(
            lambda m, args, l=l: got.__setitem__(l, args[0][0].float().numpy().copy())) for l in layers]
        try:
            with torch.inference_mode():
                model.base_model(input_ids=torch.tensor([list(segs[0])]))
        finally:
            for h in handles:
                h.remove()
        pool_document({l: got[l][skip_first:] for l in layers}, layers, res, tokens)
    out = {p: np.stack(v) for p, v in res.items()}
    out["tokens"] = np.stack([np.concatenate(tokens[l]) for l in layers])
    return out


# ---------------------------------------------------------------------- real models: hf == TL == brute force
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_tiny_lm_hf_equals_tl_equals_bruteforce(tiny, tiny_hf, code_prose, padding_side):
    layers = list(range(4))
    hf = _scan(tiny_hf, code_prose, padding_side=padding_side)
    tl = _scan(tiny, code_prose, padding_side=padding_side)
    assert hf.meta["model_id"] == tl.meta["model_id"] == "tiny_lm"
    assert hf.meta["backend"] == "hf" and tl.meta["backend"] == "transformer_lens"
    assert hf.meta["capture"]["fused_activations"]  # GPT-2's gelu_new ran fused: recorded, and still == TL
    assert _same_tokens(tiny, tiny_hf, code_prose.texts)  # same tokens, same BOS
    segs, _ = ml.ModelAdapter(tiny).encode(code_prose.texts)
    _three_way(hf, tl, tiny, segs, layers, skip_first=1)


def test_minilm_hf_equals_tl_equals_bruteforce(minilm, minilm_hf, reviews):
    corpus = reviews.subset(range(12))
    layers = list(range(6))
    hf = _scan(minilm_hf, corpus, batch_size=4)
    tl = _scan(minilm, corpus, batch_size=4)
    assert hf.meta["model_id"] == tl.meta["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert hf.meta["is_causal"] is False and hf.meta["special_suffix"] == tl.meta["special_suffix"]
    assert _same_tokens(minilm, minilm_hf, corpus.texts)  # same [CLS] ... [SEP]
    segs, _ = ml.ModelAdapter(minilm).encode(corpus.texts)
    _three_way(hf, tl, minilm, segs, layers, skip_first=0)


def test_hf_layer_subset_and_token_activations(tiny, tiny_hf, code_prose):
    corpus = code_prose.subset(range(6))
    hf = _scan(tiny_hf, corpus, layers=[1, 2])
    tl = _scan(tiny, corpus, layers=[1, 2])
    _check_same(hf, tl)
    seqs = [s[0] for s in ml.ModelAdapter(tiny).encode(corpus.texts)[0]]
    a = ml.token_activations(tiny_hf, seqs, layers=[0, 3])
    b = ml.token_activations(tiny, seqs, layers=[0, 3])
    for x, y in zip(a, b):
        for l in (0, 3):
            np.testing.assert_allclose(x[l], y[l], atol=ATOL)


def test_raw_transformers_model_is_wrapped(tiny_hf, code_prose):
    corpus = code_prose.subset(range(6))
    adapter = ml.ModelAdapter(tiny_hf.model)  # a bare PreTrainedModel: tokenizer loaded from its name_or_path
    assert isinstance(adapter.model, ml.HFModel) and adapter.family == "hf"
    assert isinstance(get_backend(adapter), ml.HuggingFaceBackend)
    _check_same(_scan(tiny_hf.model, corpus), _scan(tiny_hf, corpus))


# ---------------------------------------------------------------------- random-weight architectures from config
def _random_model(kind: str, vocab: int):
    from transformers import AutoModel, GPTNeoXConfig, LlamaConfig

    torch.manual_seed(0)
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=128)
    if kind == "gpt_neox":
        cfg = GPTNeoXConfig(**common, rotary_pct=0.5)
    else:
        cfg = LlamaConfig(**common, num_key_value_heads=2)
    model = AutoModel.from_config(cfg).eval()
    with torch.no_grad():  # larger weights than the init so the activations are far from zero
        for p in model.parameters():
            p.mul_(5.0) if p.dim() > 1 else None
    return model


@pytest.mark.filterwarnings("ignore:.*truncated")
@pytest.mark.parametrize("kind", ["gpt_neox", "llama"])
def test_random_architectures_match_hook_bruteforce(tiny_hf, code_prose, kind):
    tok = tiny_hf.tokenizer
    hf = ml.HFModel(_random_model(kind, len(tok)), tok)
    assert hf.cfg.n_layers == 2 and hf.cfg.d_mlp == 64 and hf.cfg.attention_dir == "causal"
    corpus = code_prose.subset(range(0, 32, 3))
    adapter = ml.ModelAdapter(hf)
    segs, _ = adapter.encode(corpus.texts, max_length=100)
    ref = _hook_brute_force(hf, segs, [0, 1], skip_first=1)
    right = _scan(hf, corpus, max_length=100, padding_side="right")
    left = _scan(hf, corpus, max_length=100, padding_side="left")
    _check(right, ref, 2)
    _check(left, ref, 2)
    _check_same(left, right)
    assert float(np.abs(ref["max"]).max()) > 0.1


# ---------------------------------------------------------------------- hooks, errors
def _pre_hooks(model) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def test_hooks_removed_after_exception_and_after_stop(tiny_hf):
    adapter = ml.ModelAdapter(tiny_hf)
    cap = get_backend(adapter)
    assert cap.name == "hf"
    before = _pre_hooks(tiny_hf.model)
    tokens, mask, _ = adapter.pad_batch([[0, 5, 6, 7], [0, 8]])

    def boom(layer, acts):
        raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        cap.forward(tokens, mask, [0, 2, 3], consume=boom)
    assert _pre_hooks(tiny_hf.model) == before
    seen = []
    cap.forward(tokens, mask, [1, 2], consume=lambda l, a: seen.append((l, tuple(a.shape), a.dtype)))
    assert seen == [(1, (2, 4, 512), torch.float32), (2, (2, 4, 512), torch.float32)]
    assert _pre_hooks(tiny_hf.model) == before
    out = cap.forward(tokens, mask, [3])
    assert set(out) == {3} and out[3].shape == (2, 4, 512)
    assert _pre_hooks(tiny_hf.model) == before


def test_fused_gelu_matches_the_models_own_and_is_restored(tiny_hf, code_prose):
    adapter = ml.ModelAdapter(tiny_hf)
    fused, own = HuggingFaceBackend(adapter), HuggingFaceBackend(adapter, fused_activations=False)
    gelus = [m for m in tiny_hf.model.modules() if type(m).__name__ == "NewGELUActivation"]
    assert len(gelus) == 4
    segs, _ = adapter.encode(code_prose.texts)
    tokens, mask, _ = adapter.pad_batch([s[0] for s in segs])
    real = mask.bool()
    a, b = fused.forward(tokens, mask, range(4)), own.forward(tokens, mask, range(4))
    for l in range(4):
        np.testing.assert_allclose(a[l][real].numpy(), b[l][real].numpy(), atol=ATOL, rtol=0)
    assert all("forward" not in m.__dict__ for m in gelus)  # the model's own modules are back

    def boom(layer, acts):
        raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        fused.forward(tokens, mask, [1], consume=boom)
    assert all("forward" not in m.__dict__ for m in gelus)
    assert fused.describe()["fused_activations"] and not own.describe()["fused_activations"]


def test_unknown_architecture_and_wrong_backend(tiny, tiny_hf):
    from transformers import AutoModel, OPTConfig

    model = AutoModel.from_config(OPTConfig(vocab_size=64, hidden_size=16, ffn_dim=32, num_hidden_layers=1,
                                            num_attention_heads=2, word_embed_proj_dim=16))
    with pytest.raises(ModelAdapterError, match="does not know the architecture 'opt'") as e:
        ml.HFModel(model, tiny_hf.tokenizer)
    for mt in HF_ARCHITECTURES:
        assert mt in str(e.value)
    with pytest.raises(ModelAdapterError, match="plain Hugging Face model"):
        get_backend(ml.ModelAdapter(tiny), "hf")
    with pytest.raises(ModelAdapterError, match="needs a TransformerLens model"):
        get_backend(ml.ModelAdapter(tiny_hf), "transformer_lens")
    assert get_backend(ml.ModelAdapter(tiny)).name == "transformer_lens"  # TL default unchanged
    with pytest.raises(ValueError, match="backend"):
        ml.load_model(ml.models.tiny_lm_dir(), backend="nope")
