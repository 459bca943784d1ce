"""edited_forward on the real tiny LM and MiniLM-L6: edits land where a hand-written hook puts them, and every hook
is gone afterwards, also when an edit raises in the middle of the forward."""

from __future__ import annotations

import pytest
import torch

import mri_lens as ml
from mri_lens.model import NeuronEdit, as_adapter, edited_forward, final_hook_name

TEXTS = ["def f(x):\n    return x + 1\n", "import os\nprint(os.getcwd())\n"]


@pytest.fixture(scope="module")
def tiny_hf():
    return ml.models.tiny_lm(backend="hf", device="cpu")


def _hooks(model) -> int:
    """Every forward / pre / backward hook on every torch module of the model (transformers and the TL 4 bridge
    install some of their own on the first forward: count after one), and on TL hook points none at all."""
    root = model.model if isinstance(model, ml.HFModel) else model
    on_hook_points = sum(len(h._forward_hooks) + len(h._backward_hooks)
                         for h in (getattr(model, "hook_dict", None) or {}).values())
    assert on_hook_points == 0
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in root.modules())


def _batch(model):
    adapter = as_adapter(model)
    segs, _ = adapter.encode(TEXTS)
    tokens, mask, _ = adapter.pad_batch([s[0] for s in segs])
    return adapter, tokens, mask


class Boom(RuntimeError):
    pass


def _raise(act):
    raise Boom("an edit failed inside the forward")


@pytest.mark.parametrize("which", ["tl", "hf"])
def test_hooks_are_removed_after_an_error_inside_the_forward(which, tiny, tiny_hf):
    model = tiny if which == "tl" else tiny_hf
    adapter, tokens, mask = _batch(model)
    clean, _ = edited_forward(adapter, tokens, mask)
    before = _hooks(model)
    # layer 0's edit has run (its hook is installed and fired) when layer 2's raises
    with pytest.raises(Boom):
        edited_forward(adapter, tokens, mask, {0: NeuronEdit((5,), "set", (0.0,)), 2: _raise})
    assert _hooks(model) == before
    again, _ = edited_forward(adapter, tokens, mask)
    real = mask.bool()
    assert torch.equal(again[real], clean[real])
    eff = ml.effects.ablate(model, 1, [88], texts=TEXTS, progress=False)
    assert _hooks(model) == before
    ref = torch.nn.functional.cross_entropy(clean[0, :-1][real[0, 1:]], tokens[0, 1:][real[0, 1:]], reduction="none")
    assert eff.table[eff.table["doc"] == 0]["loss_before"].to_numpy() == pytest.approx(ref.numpy(), abs=1e-5)


def test_hooks_are_removed_after_an_error_in_a_gradient_forward(tiny):
    adapter, tokens, mask = _batch(tiny)
    edited_forward(adapter, tokens, mask)
    before = _hooks(tiny)
    with torch.no_grad():
        with pytest.raises(Boom):
            edited_forward(adapter, tokens, mask, {3: _raise}, keep=[1], grad=True)
        assert not torch.is_grad_enabled()  # the caller's grad mode is back
    with pytest.raises(Boom):
        edited_forward(adapter, tokens, mask, {3: _raise})
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    assert _hooks(tiny) == before
    out, kept = edited_forward(adapter, tokens, mask, keep=[1], grad=True)
    assert kept[1].requires_grad and out.requires_grad


@pytest.mark.parametrize("mode,value", [("set", 2.5), ("scale", 3.0), ("add", -1.0)])
def test_neuron_edit_lands_on_the_hook_point(mode, value, tiny):
    adapter, tokens, mask = _batch(tiny)
    seen = {}

    def grab(act, hook):
        seen["act"] = act.detach().clone()

    with torch.no_grad():
        tiny.run_with_hooks(tokens, return_type=None, attention_mask=mask,
                            fwd_hooks=[("blocks.1.mlp.hook_post", grab)])
    clean = seen["act"]
    _, kept = edited_forward(adapter, tokens, mask, {1: NeuronEdit((7, 88), mode, (value, value))}, keep=[1])
    want = clean.clone()
    want[..., [7, 88]] = {"set": torch.full_like(clean[..., [7, 88]], value), "scale": clean[..., [7, 88]] * value,
                          "add": clean[..., [7, 88]] + value}[mode]
    torch.testing.assert_close(kept[1], want, atol=1e-5, rtol=0)
    untouched = [i for i in range(clean.shape[-1]) if i not in (7, 88)]
    assert torch.equal(kept[1][..., untouched], clean[..., untouched])


def test_tl_and_hf_edits_agree(tiny, tiny_hf):
    edit = {2: NeuronEdit((100,), "set", (4.0,))}
    outs = []
    for model in (tiny, tiny_hf):
        adapter, tokens, mask = _batch(model)
        out, _ = edited_forward(adapter, tokens, mask, edit)
        outs.append(out[mask.bool()])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)


def test_encoder_output_is_the_final_hidden_state(minilm):
    adapter, tokens, mask = _batch(minilm)
    out, _ = edited_forward(adapter, tokens, mask)
    assert out.shape == (*tokens.shape, minilm.cfg.d_model)
    hf = ml.models.minilm(backend="hf", device="cpu")
    with torch.no_grad():
        ref = hf.model(input_ids=tokens, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(out[real], ref[real], atol=5e-4, rtol=1e-3)
    assert final_hook_name(adapter).startswith(f"blocks.{adapter.n_layers - 1}.")


def test_bad_edits_are_refused(tiny):
    adapter, tokens, mask = _batch(tiny)
    with pytest.raises(ml.ModelAdapterError, match="returned shape"):
        edited_forward(adapter, tokens, mask, {1: lambda act: act[..., :3]})
    with pytest.raises(ml.ModelAdapterError, match="layers must be"):
        edited_forward(adapter, tokens, mask, {7: lambda act: act})
    with pytest.raises(ValueError, match="mode must be"):
        NeuronEdit((1,), "zero", (0.0,))
    with pytest.raises(ValueError, match="one value per neuron"):
        NeuronEdit((1, 2), "set", (0.0,))


@pytest.mark.parametrize("which", ["tl", "hf"])
def test_a_gradient_forward_takes_tokens_made_in_inference_mode(which, tiny, tiny_hf):
    model = tiny if which == "tl" else tiny_hf
    with torch.inference_mode():
        adapter, tokens, mask = _batch(model)
    assert tokens.is_inference()
    out, kept = edited_forward(adapter, tokens, mask, keep=[1], grad=True)
    (g,) = torch.autograd.grad(out[mask.bool()].logsumexp(-1).sum(), kept[1])
    assert g.shape == kept[1].shape and g.abs().sum() > 0
