"""Hugging Face capture backend: hf backend == TL backend == per-document brute force.

The TL side reuses the run_with_cache oracle; the random-weight architectures (GPT-NeoX, Llama, GPT-J, Qwen3,
Gemma 3, Phi-3, OLMo 2 and the generic fallback's GPT-Neo, Falcon, Phi, StarCoder2) have no TL model here, so their
brute force reads the down-projection inputs with its own hooks, one unpadded document at a time.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import mri_lens as ml
from mri_lens.model import HuggingFaceBackend, ModelAdapter, token_activations
from mri_lens.model.capture import HF_ARCHITECTURES, get_backend, hf_down_projections
from mri_lens.model.hf import hf_architecture
from mri_lens.model.loading import tl_major_version
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
    a, _ = ModelAdapter(model_a).encode(texts)
    b, _ = ModelAdapter(model_b).encode(texts)
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
    segs, _ = ModelAdapter(tiny).encode(code_prose.texts)
    _three_way(hf, tl, tiny, segs, layers, skip_first=1)


def test_minilm_hf_equals_tl_equals_bruteforce(minilm, minilm_hf, reviews):
    corpus = reviews.subset(range(12))
    layers = list(range(6))
    hf = _scan(minilm_hf, corpus, batch_size=4)
    tl = _scan(minilm, corpus, batch_size=4)
    assert hf.meta["model_id"] == tl.meta["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert hf.meta["is_causal"] is False and hf.meta["special_suffix"] == tl.meta["special_suffix"]
    assert _same_tokens(minilm, minilm_hf, corpus.texts)  # same [CLS] ... [SEP]
    segs, _ = ModelAdapter(minilm).encode(corpus.texts)
    _three_way(hf, tl, minilm, segs, layers, skip_first=0)


def test_hf_layer_subset_and_token_activations(tiny, tiny_hf, code_prose):
    corpus = code_prose.subset(range(6))
    hf = _scan(tiny_hf, corpus, layers=[1, 2])
    tl = _scan(tiny, corpus, layers=[1, 2])
    _check_same(hf, tl)
    seqs = [s[0] for s in ModelAdapter(tiny).encode(corpus.texts)[0]]
    a = token_activations(tiny_hf, seqs, layers=[0, 3])
    b = token_activations(tiny, seqs, layers=[0, 3])
    for x, y in zip(a, b):
        for l in (0, 3):
            np.testing.assert_allclose(x[l], y[l], atol=ATOL)


def test_raw_transformers_model_is_wrapped(tiny_hf, code_prose):
    corpus = code_prose.subset(range(6))
    adapter = ModelAdapter(tiny_hf.model)  # a bare PreTrainedModel: tokenizer loaded from its name_or_path
    assert isinstance(adapter.model, ml.HFModel) and adapter.family == "hf"
    assert isinstance(get_backend(adapter), HuggingFaceBackend)
    _check_same(_scan(tiny_hf.model, corpus), _scan(tiny_hf, corpus))


# ---------------------------------------------------------------------- random-weight architectures from config
def _configs(vocab: int) -> dict[str, dict]:
    """Tiny configs (2 layers, d_mlp 64) of the architectures the hf backend places, for AutoConfig.for_model."""
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=128)
    gemma3_text = dict(common, num_key_value_heads=2, head_dim=8, sliding_window=16)  # sliding layers exercised
    return {
        "gpt_neox": dict(common, rotary_pct=0.5),
        "llama": dict(common, num_key_value_heads=2),
        # GPT-J: n_inner=None means 4 * n_embd (= 64)
        "gptj": dict(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, rotary_dim=4, n_positions=128),
        "qwen3": dict(common, num_key_value_heads=2, head_dim=8),
        "gemma3_text": gemma3_text,
        "gemma3": dict(text_config=gemma3_text, mm_tokens_per_image=4,  # multimodal: its language model runs
                       vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, image_size=28, patch_size=14)),
        "phi3": dict(common, num_key_value_heads=2, pad_token_id=0),
        "olmo2": dict(common, num_key_value_heads=2),
        # not in HF_ARCHITECTURES: placed by the generic fallback
        "gpt_neo": dict(vocab_size=vocab, hidden_size=16, num_layers=2, num_heads=2, window_size=16,
                        attention_types=[[["global", "local"], 1]], max_position_embeddings=128),
        "falcon": dict(vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       max_position_embeddings=128),
        "phi": dict(common),
        "starcoder2": dict(common, num_key_value_heads=2),
    }


# kind -> (the down-projection's name in model.named_modules() for layer 1, placed by the generic fallback)
_ARCH_MODULES = {
    "gpt_neox": ("layers.1.mlp.dense_4h_to_h", False), "llama": ("layers.1.mlp.down_proj", False),
    "gptj": ("h.1.mlp.fc_out", False), "qwen3": ("layers.1.mlp.down_proj", False),
    "gemma3_text": ("layers.1.mlp.down_proj", False), "gemma3": ("language_model.layers.1.mlp.down_proj", False),
    "phi3": ("layers.1.mlp.down_proj", False), "olmo2": ("layers.1.mlp.down_proj", False),
    "gpt_neo": ("h.1.mlp.c_proj", True), "falcon": ("h.1.mlp.dense_4h_to_h", True),
    "phi": ("layers.1.mlp.fc2", True), "starcoder2": ("layers.1.mlp.c_proj", True),
}


def _random_model(kind: str, vocab: int, **overrides):
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(kind, **{**_configs(vocab)[kind], **overrides})
    model = AutoModel.from_config(cfg).eval()
    with torch.no_grad():  # larger weights than the init so the activations are far from zero
        for p in model.parameters():
            p.mul_(5.0) if p.dim() > 1 else None
    return model


@pytest.mark.filterwarnings("ignore:.*truncated")
@pytest.mark.parametrize("kind", list(_ARCH_MODULES))
def test_random_architectures_match_hook_bruteforce(tiny_hf, code_prose, kind):
    tok = tiny_hf.tokenizer
    hf = ml.HFModel(_random_model(kind, len(tok)), tok)
    assert hf.cfg.n_layers == 2 and hf.cfg.d_mlp == 64 and hf.cfg.attention_dir == "causal"
    corpus = code_prose.subset(range(0, 32, 3))
    adapter = ModelAdapter(hf)
    segs, _ = adapter.encode(corpus.texts, max_length=100)
    ref = _hook_brute_force(hf, segs, [0, 1], skip_first=1)
    right = _scan(hf, corpus, max_length=100, padding_side="right")
    left = _scan(hf, corpus, max_length=100, padding_side="left")
    _check(right, ref, 2)
    _check(left, ref, 2)
    _check_same(left, right)
    assert float(np.abs(ref["max"]).max()) > 0.1
    # where the neurons were read: the model's own module, named independently of mri_lens' table
    name, fallback = _ARCH_MODULES[kind]
    assert hf_down_projections(hf.model, [1])[1] is dict(hf.model.named_modules())[name]
    assert hf.arch.fallback is fallback and right.meta["capture"]["placed_by"] == \
        ("generic fallback" if fallback else "HF_ARCHITECTURES")
    assert (kind in HF_ARCHITECTURES) is not fallback
    assert hf.cfg.n_ctx == 128 and adapter.n_ctx == 128
    d_model = hf.model.get_input_embeddings().weight.shape[1]
    for l in (0, 1):
        w = adapter.neuron_output_weights(l)
        assert tuple(w.shape) == (64, d_model)  # [d_mlp, d_model]: nn.Linear's [out, in] transposed
        mod = hf_down_projections(hf.model, [l])[l]
        assert w.data_ptr() == mod.weight.data_ptr()  # no copy
        x = torch.randn(3, 64)
        torch.testing.assert_close(x @ w, mod(x) - (mod.bias if mod.bias is not None else 0))


@pytest.mark.parametrize("kind", ["mixtral", "qwen3_moe"])
def test_moe_architectures_are_refused(tiny_hf, kind):
    from transformers import AutoConfig, AutoModel

    common = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, num_experts_per_tok=2)
    extra = dict(num_local_experts=4) if kind == "mixtral" else dict(num_experts=4, moe_intermediate_size=16)
    model = AutoModel.from_config(AutoConfig.for_model(kind, **common, **extra))
    with pytest.raises(ModelAdapterError, match=f"'{kind}' is a mixture-of-experts model .*experts=4.*per expert"):
        ml.HFModel(model, tiny_hf.tokenizer)
    with pytest.raises(ModelAdapterError, match="mixture-of-experts"):
        ModelAdapter(model)  # a bare model is refused the same way (before any tokenizer is looked for)
    # a config that does not say it has several experts: the fallback still sees the experts in the blocks
    for key in ("num_local_experts", "num_experts"):
        if hasattr(model.config, key):
            setattr(model.config, key, 1)
    with pytest.raises(ModelAdapterError, match=r"mixture-of-experts model \(its blocks have "
                                                r"`layers.<layer>.(mlp.experts|block_sparse_moe)`"):
        ml.HFModel(model, tiny_hf.tokenizer)


def test_fallback_refuses_what_it_cannot_place(tiny_hf):
    from transformers import AutoConfig, AutoModel

    tok = tiny_hf.tokenizer
    rule = r"the generic fallback looks under base_model for a block list \(layers / h / blocks"
    # an encoder-decoder model
    t5 = AutoModel.from_config(AutoConfig.for_model("t5", vocab_size=64, d_model=16, d_ff=32, num_layers=1,
                                                    num_heads=2, d_kv=8))
    with pytest.raises(ModelAdapterError, match=f"does not know the architecture 't5'.*{rule}.*encoder-decoder"):
        ml.HFModel(t5, tok)
    # an architecture transformers has no causal LM of (CLIP's text encoder has encoder.layers.<l>.mlp.fc2)
    clip = AutoModel.from_config(AutoConfig.for_model("clip_text_model", vocab_size=64, hidden_size=16,
                                                      intermediate_size=32, num_hidden_layers=1,
                                                      num_attention_heads=2))
    with pytest.raises(ModelAdapterError, match="'clip_text_model'.*no causal LM of this type.*TransformerLens"):
        ml.HFModel(clip, tok)
    # blocks with two of the known down-projections: ambiguous, not guessed
    neo = _random_model("gpt_neo", len(tok))
    for block in neo.h:
        block.mlp.fc2 = torch.nn.Linear(64, 16)
    with pytest.raises(ModelAdapterError, match=r"the blocks of `h` have mlp.c_proj, mlp.fc2 \(not exactly one"):
        ml.HFModel(neo, tok)
    # OPT keeps its fc2 outside an `mlp` module: named in the error, not guessed
    opt = AutoModel.from_config(AutoConfig.for_model("opt", vocab_size=64, hidden_size=16, ffn_dim=32,
                                                     num_hidden_layers=1, num_attention_heads=2,
                                                     word_embed_proj_dim=16))
    with pytest.raises(ModelAdapterError, match=f"'opt'.*{rule}.*the blocks of `decoder.layers` have none of them"):
        ml.HFModel(opt, tok)
    # the table alone (a config, no model) cannot run the fallback
    with pytest.raises(ModelAdapterError, match="needs the model, not its config"):
        hf_architecture(neo.config)
    assert hf_architecture(_random_model("gpt_neo", len(tok))).fallback


def test_gemma3_without_its_language_model_is_a_clear_error(tiny_hf):
    model = _random_model("gemma3", len(tiny_hf.tokenizer))
    model.language_model = None
    with pytest.raises(ModelAdapterError, match=r"Gemma3Model \(gemma3\) has no language model at "
                                                r"`base_model.language_model`"):
        ml.HFModel(model, tiny_hf.tokenizer)


# ---------------------------------------------------------------------- half precision, device_map
# Measured on the tiny LM over code_prose (the 32 documents; transformers 5.24 / TL 4.3 and 4.57 / TL 2.16 alike):
# 1 - correlation of the pooled means with the float32 scan's: 5.5e-6 (bf16), 8.8e-8 (fp16) on the hf backend,
# 6.3e-6 / 9.6e-8 on TL; the largest |difference| of any statistic (mean, std, max, min) or pooled value relative to
# the float32 scan's largest magnitude: 7.3e-3 (bf16), 1.3e-3 (fp16) on the hf backend, 1.2e-2 / 1.6e-3 on TL.
# The tolerances leave a 2.5-4x margin.
HALF_TOL = {torch.bfloat16: dict(corr=0.9999, rel=0.03), torch.float16: dict(corr=0.99999, rel=0.005)}


@pytest.fixture(scope="module")
def tiny_hf_scan(tiny_hf, code_prose):
    return _scan(tiny_hf, code_prose)


@pytest.fixture(scope="module")
def tiny_tl_scan(tiny, code_prose):
    return _scan(tiny, code_prose)


def _check_half(res, ref, dtype):
    """A half-precision scan: float32/float64 statistics, finite, within HALF_TOL of the float32 scan."""
    tol = HALF_TOL[dtype]
    assert res.stats.count == ref.stats.count
    for f in ("mean", "std", "max", "min"):
        a, b = getattr(res.stats, f), getattr(ref.stats, f)
        assert a.dtype in (np.float32, np.float64), (f, a.dtype)
        assert np.isfinite(a).all()
        assert np.abs(a - b).max() <= tol["rel"] * np.abs(b).max(), f
    for p in POOLING:
        a, b = res.pooled(p), ref.pooled(p)
        assert a.dtype in (np.float32, np.float64), (p, a.dtype)
        assert np.abs(a - b).max() <= tol["rel"] * np.abs(b).max(), p
    corr = np.corrcoef(res.pooled("mean").ravel(), ref.pooled("mean").ravel())[0, 1]
    assert corr > tol["corr"], corr
    assert res.top.values.dtype in (np.float32, np.float64, np.float16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_scans_with_float_statistics(tiny_hf_scan, code_prose, dtype):
    half = ml.models.tiny_lm(device="cpu", backend="hf", dtype=dtype)
    assert {p.dtype for p in half.parameters()} == {dtype}  # load_model passed the dtype through
    _check_half(_scan(half, code_prose), tiny_hf_scan, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_load_model_passes_dtype_to_transformer_lens(tiny_tl_scan, code_prose, dtype):
    half = ml.models.tiny_lm(device="cpu", dtype=dtype)
    assert {p.dtype for p in half.parameters()} == {dtype}
    _check_half(_scan(half, code_prose), tiny_tl_scan, dtype)


def test_float16_overflow_raises_the_non_finite_error(code_prose):
    half = ml.models.tiny_lm(device="cpu", backend="hf", dtype=torch.float16)
    with torch.no_grad():  # layer 1's MLP input far beyond float16's 65504: its pre-activations overflow to inf
        half.model.h[1].ln_2.weight.fill_(3e4)
        half.model.h[1].mlp.c_fc.weight.mul_(100)
    seen = []
    adapter = ModelAdapter(half)
    tokens, mask, _ = adapter.pad_batch([[0, 5, 6, 7]])
    get_backend(adapter).forward(tokens, mask, [1], consume=lambda l, a: seen.append(bool(torch.isinf(a).any())))
    assert seen == [True]  # a genuine float16 overflow, handed on as float32 inf
    with pytest.raises(ml.ScanError, match=r"non-finite \(NaN or inf\) activations in layer 1"):
        _scan(half, code_prose.subset(range(4)), layers=[0, 1])


def test_device_map_loads_in_place_and_scans_identically(tiny_hf, tiny_hf_scan, code_prose, monkeypatch):
    import transformers

    calls: dict[str, list] = {"from_pretrained": [], "to": []}
    real = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):  # records what load_model hands to from_pretrained, and any later .to()
        calls["from_pretrained"].append(kwargs)
        model = real(*args, **kwargs)
        real_to = model.to
        model.to = lambda *a, **k: (calls["to"].append(a), real_to(*a, **k))[1]
        return model

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    mapped = ml.load_model(ml.models.tiny_lm_dir(), backend="hf", device_map={"": "cpu"})
    monkeypatch.undo()
    assert isinstance(mapped, ml.HFModel)
    assert [k.get("device_map") for k in calls["from_pretrained"]] == [{"": "cpu"}] and calls["to"] == []
    assert getattr(mapped.model, "hf_device_map", {"": "cpu"}) == {"": "cpu"}  # transformers 5 omits one device
    _check_same(_scan(mapped, code_prose), tiny_hf_scan)
    with pytest.raises(ValueError, match="device or device_map, not both"):
        ml.load_model(ml.models.tiny_lm_dir(), backend="hf", device="cpu", device_map={"": "cpu"})
    if tl_major_version() < 3:
        with pytest.raises(ModelAdapterError, match="TransformerLens 2.x takes no device_map"):
            ml.load_model(ml.models.tiny_lm_dir(), device_map="auto")
    # a model spread over devices is never moved to one (scan(device=...) would break its placement)
    spread = ml.HFModel(_random_model("llama", len(tiny_hf.tokenizer)), tiny_hf.tokenizer)
    spread.model.hf_device_map = {"embed_tokens": 0, "layers.0": 0, "layers.1": 1, "norm": 1}
    with pytest.raises(ModelAdapterError, match="spread over .* by its device_map; it cannot be moved"):
        spread.to("cpu")


def test_adapter_puts_tokens_on_the_input_embedding_device(tiny_hf):
    from types import SimpleNamespace

    model = _random_model("llama", len(tiny_hf.tokenizer))
    hf = ml.HFModel(model, tiny_hf.tokenizer)
    assert ModelAdapter(hf).device == model.get_input_embeddings().weight.device
    # a stub embedding on another device than the model's first parameter (as a device_map may place it)
    model.get_input_embeddings = lambda: SimpleNamespace(weight=torch.empty(0, device="meta"))
    assert next(model.parameters()).device.type == "cpu"
    adapter = ModelAdapter(hf)
    assert adapter.device == torch.device("meta")
    tokens, mask, starts = adapter.pad_batch([[0, 5, 6], [0, 7]])
    assert tokens.device.type == "meta" and mask.device.type == "meta" and starts.device.type == "cpu"


# ---------------------------------------------------------------------- TransformerLens mixture-of-experts
class _FakeMoE:
    """A TransformerLens-like model whose blocks.{l}.mlp.hook_post hands on the block output (d_model wide), as a
    TL bridge's MoE block does; its cfg does not say it has experts."""

    def __init__(self, tokenizer, d_model=16, d_mlp=48, width=None, **cfg):
        self.cfg = SimpleNamespace(n_layers=2, d_model=d_model, d_mlp=d_mlp, n_ctx=64, device="cpu",
                                   model_name="fake-moe", act_fn="silu", **cfg)
        self.tokenizer = tokenizer
        self.hook_dict = {f"blocks.{l}.mlp.hook_post": None for l in range(2)}
        self.width = width or d_model
        self.calls = 0

    def forward(self, tokens, attention_mask=None, return_type=None):
        raise AssertionError("not run")

    def run_with_hooks(self, tokens, return_type=None, fwd_hooks=(), **kwargs):
        self.calls += 1
        for _, fn in fwd_hooks:
            fn(torch.zeros(*tokens.shape, self.width), hook=None)


def test_tl_moe_hook_width_is_refused(tiny):
    fake = _FakeMoE(tiny.tokenizer)
    adapter = ModelAdapter(fake)  # nothing in its cfg says "experts": caught on the first forward
    with pytest.raises(ModelAdapterError, match=r"fake-moe is a mixture-of-experts model: its mlp.hook_post is the "
                                                r"block output \(d_model=16\), not MLP neurons"):
        ml.scan(adapter, ["x = 1", "y = 2"], progress=False)
    assert fake.calls == 1
    # a width that is neither d_mlp nor d_model: not an MLP neuron hook
    other = ModelAdapter(_FakeMoE(tiny.tokenizer, d_model=32, d_mlp=48, width=16))
    tokens, mask, _ = other.pad_batch([[0, 5]])
    with pytest.raises(ModelAdapterError, match="hands activations 16 wide, not the model's d_mlp=48"):
        get_backend(other).forward(tokens, mask, [0])
    ok = ModelAdapter(_FakeMoE(tiny.tokenizer, width=48))  # d_mlp wide: handed on
    assert get_backend(ok).forward(tokens, mask, [0, 1])[1].shape == (1, 2, 48)


@pytest.mark.parametrize("key", ["num_experts", "n_experts", "num_local_experts"])
def test_tl_moe_config_is_refused(tiny, key):
    with pytest.raises(ModelAdapterError, match=rf"fake-moe is a mixture-of-experts model \({key}=8\): its "
                                                r"mlp.hook_post is the block output \(d_model=16\)"):
        ModelAdapter(_FakeMoE(tiny.tokenizer, **{key: 8}))
    ModelAdapter(_FakeMoE(tiny.tokenizer, **{key: None}))  # a dense model's cfg: num_experts=None


def test_real_tl_moe_model_is_refused(tiny, tmp_path):
    """A random-weight Mixtral: TL >= 3 boots it as a TransformerBridge from a local directory; TL 2 builds a
    HookedTransformer with experts from its config."""
    if tl_major_version() >= 3:
        from transformers import AutoConfig, AutoModelForCausalLM

        cfg = AutoConfig.for_model("mixtral", vocab_size=len(tiny.tokenizer), hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=128, num_local_experts=4, num_experts_per_tok=2)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
        tiny.tokenizer.save_pretrained(tmp_path)
        model = ml.load_model(str(tmp_path), device="cpu")
        with pytest.raises(ModelAdapterError, match=r"mixture-of-experts model \(num_experts=4\): its mlp.hook_post "
                                                    r"is the block output \(d_model=32\), not MLP neurons"):
            ModelAdapter(model)
        model.cfg.num_experts = None  # the width check on the first forward catches it too
        with pytest.raises(ModelAdapterError, match=r"mixture-of-experts model: its mlp.hook_post is the block "
                                                    r"output \(d_model=32\), not MLP neurons"):
            ml.scan(model, ["x = 1", "y = 2"], progress=False)
    else:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_mlp=64,
                                      d_vocab=len(tiny.tokenizer), act_fn="silu", gated_mlp=True, num_experts=4,
                                      experts_per_token=2, normalization_type="RMS")
        model = HookedTransformer(cfg)
        model.tokenizer = tiny.tokenizer
        with pytest.raises(ModelAdapterError, match=r"mixture-of-experts model \(num_experts=4\): its MLP neurons "
                                                    r"are per expert"):
            ModelAdapter(model)


# ---------------------------------------------------------------------- hooks, errors
def _pre_hooks(model) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def test_hooks_removed_after_exception_and_after_stop(tiny_hf):
    adapter = ModelAdapter(tiny_hf)
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


def _fused_and_own(adapter, fused, own, texts):
    """Both backends' activations of every layer on ``texts`` (equal to 1e-5), the real-token mask, the batch."""
    segs, _ = adapter.encode(texts)
    tokens, mask, _ = adapter.pad_batch([s[0] for s in segs])
    real = mask.bool()
    a, b = fused.forward(tokens, mask, range(4)), own.forward(tokens, mask, range(4))
    for l in range(4):
        np.testing.assert_allclose(a[l][real].numpy(), b[l][real].numpy(), atol=ATOL, rtol=0)
    return a, b, real, tokens, mask


def test_fused_gelu_matches_the_models_own_and_is_restored(tiny_hf, code_prose):
    adapter = ModelAdapter(tiny_hf)
    fused, own = HuggingFaceBackend(adapter), HuggingFaceBackend(adapter, fused_activations=False)
    gelus = [m for m in tiny_hf.model.modules() if type(m).__name__ == "NewGELUActivation"]
    assert len(gelus) == 4
    a, b, real, tokens, mask = _fused_and_own(adapter, fused, own, code_prose.texts)
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
        get_backend(ModelAdapter(tiny), "hf")
    with pytest.raises(ModelAdapterError, match="needs a TransformerLens model"):
        get_backend(ModelAdapter(tiny_hf), "transformer_lens")
    assert get_backend(ModelAdapter(tiny)).name == "transformer_lens"  # TL default unchanged
    with pytest.raises(ValueError, match="backend"):
        ml.load_model(ml.models.tiny_lm_dir(), backend="nope")


def test_tl_backend_fuses_gelu_only_when_asked(tiny, code_prose):
    """N2G's forwards on a TL bridge run gelu_new fused (``fused_activations=True``); scans keep the model's own."""
    from mri_lens.model.capture import TransformerLensBackend, get_backend

    adapter = ModelAdapter(tiny)
    fused, own = get_backend(adapter, fused_activations=True), get_backend(adapter)
    gelus = [m for m in tiny.modules() if type(m).__name__ == "NewGELUActivation"]
    if tl_major_version() < 3:  # a HookedTransformer computes gelu_new itself: nothing to swap
        assert not gelus and not fused._fused
        return
    assert isinstance(fused, TransformerLensBackend) and fused._fused and not own._fused
    assert len(gelus) == 4 and "fused_activations" in fused.describe() and "fused_activations" not in own.describe()
    a, b, real, tokens, mask = _fused_and_own(adapter, fused, own, code_prose.texts)
    assert any(not np.array_equal(a[l][real].numpy(), b[l][real].numpy()) for l in range(4))  # it did run fused
    assert all("forward" not in m.__dict__ for m in gelus)

    def boom(layer, acts):
        raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        fused.forward(tokens, mask, [1], consume=boom)
    assert all("forward" not in m.__dict__ for m in gelus)  # restored after an error too
