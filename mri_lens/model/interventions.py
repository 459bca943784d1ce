"""Interventions: a forward pass with some MLP neuron activations edited, and those activations kept for a gradient.

The one place that installs writing hooks on a model. A TransformerLens model (TL 2 ``HookedTransformer`` /
``HookedEncoder``, TL 4 ``TransformerBridge``) is edited on its neuron hook point (the adapter's
``blocks.{layer}.mlp.hook_post``) through ``run_with_hooks``, which removes its hooks in its own ``finally``; a plain
Hugging Face model (:class:`~mri_lens.HFModel`) through forward pre-hooks on each layer's MLP down-projection, whose
input is the same activation (:mod:`.capture`), removed in ``finally``. Either way the model is left as it was,
also when an edit or the forward raises.

What comes back is the model's output: next-token logits ``[batch, pos, d_vocab]`` for a causal model, or for an
encoder (BERT, MiniLM: no next-token prediction) its final hidden state ``[batch, pos, d_model]`` (the last block's
output, after its LayerNorm: Hugging Face's ``last_hidden_state``).
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..errors import ModelAdapterError
from .adapter import ModelAdapter, as_adapter
from .hf import hf_down_projections

__all__ = ["NeuronEdit", "edited_forward", "final_hook_name"]

Edit = Callable[[Any], Any]  # activations [batch, pos, d_mlp] -> edited activations, same shape


@dataclass(frozen=True)
class NeuronEdit:
    """Set, scale or shift some neurons' activations at every position: an edit for :func:`edited_forward`.

    ``mode``: ``"set"`` (``act[..., n] = value``: zero or mean ablation, steering to a value), ``"scale"``
    (``act[..., n] *= value``) or ``"add"`` (``act[..., n] += value``). ``values``: one per neuron.
    Calling it on activations ``[batch, pos, d_mlp]`` returns an edited copy (the input is not modified).
    """

    neurons: tuple[int, ...]
    mode: str
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.mode not in ("set", "scale", "add"):
            raise ValueError(f"mode must be 'set', 'scale' or 'add', got {self.mode!r}")
        if len(self.neurons) != len(self.values) or not self.neurons:
            raise ValueError(f"one value per neuron: {len(self.neurons)} neurons, {len(self.values)} values")

    def __call__(self, act):
        import torch

        idx = torch.as_tensor(self.neurons, dtype=torch.long, device=act.device)
        v = torch.as_tensor(self.values, dtype=act.dtype, device=act.device)
        out = act.clone()
        if self.mode == "set":
            out[..., idx] = v
        elif self.mode == "scale":
            out[..., idx] = act[..., idx] * v
        else:
            out[..., idx] = act[..., idx] + v
        return out


def final_hook_name(adapter: ModelAdapter) -> str:
    """The TransformerLens hook whose output is an encoder's final hidden state: TL 2's post-LayerNorm BERT block
    names it ``blocks.{last}.hook_normalized_resid_post``, a TL 4 bridge ``blocks.{last}.hook_resid_post``."""
    names = getattr(adapter.model, "hook_dict", {}) or {}
    last = adapter.n_layers - 1
    normalized = f"blocks.{last}.hook_normalized_resid_post"
    return normalized if normalized in names else f"blocks.{last}.hook_resid_post"


def _check_width(adapter: ModelAdapter, layer: int, act) -> None:
    if adapter.d_mlp is not None and act.shape[-1] != adapter.d_mlp:
        raise ModelAdapterError(f"the neuron hook of layer {layer} hands activations {act.shape[-1]} wide, not "
                                f"d_mlp={adapter.d_mlp}; this model cannot be edited neuron by neuron")


def _make_edit(adapter: ModelAdapter, layer: int, edit: Edit | None, kept: dict[int, Any], keep: bool,
               grad: bool):
    """``act -> act'``: the edit applied (shape checked), the result kept when asked."""

    def apply(act):
        _check_width(adapter, layer, act)
        out = act if edit is None else edit(act)
        if tuple(out.shape) != tuple(act.shape):
            raise ModelAdapterError(f"an edit of layer {layer} returned shape {tuple(out.shape)}, not "
                                    f"{tuple(act.shape)}")
        if keep:
            if grad and not out.requires_grad:  # a model whose weights need no gradient: start the graph here
                out = out.detach().requires_grad_(True)
            kept[layer] = out
        return out

    return apply


def edited_forward(model: Any, tokens, attention_mask, edits: Mapping[int, Edit] | None = None, *,
                   keep: Sequence[int] = (), grad: bool = False) -> tuple[Any, dict[int, Any]]:
    """One forward pass of a padded batch with neuron activations edited.

    Parameters
    ----------
    model: a model or :class:`ModelAdapter`.
    tokens, attention_mask: ``[batch, pos]`` from :meth:`ModelAdapter.pad_batch`.
    edits: ``{layer: f}``, ``f(act [batch, pos, d_mlp]) -> act'`` of the same shape (e.g. a :class:`NeuronEdit`),
        applied to the neuron activations of that layer (the adapter's hook point) before the rest of the model
        reads them. ``None``: the clean forward.
    keep: layers whose activations (after any edit) are returned, ``{layer: [batch, pos, d_mlp]}``.
    grad: run with autograd on (the kept activations are in the graph: ``torch.autograd.grad(f(out), kept[l])``);
        otherwise in inference mode.

    Returns ``(out, kept)``: ``out`` is ``[batch, pos, d_vocab]`` logits for a causal model, ``[batch, pos,
    d_model]`` final hidden states for an encoder; values at pad positions are unspecified. Every hook is removed
    before this returns or raises.
    """
    import torch

    adapter = as_adapter(model)
    edits = dict(edits or {})
    layers = adapter.check_layers(sorted(set(edits) | {int(l) for l in keep})) if (edits or keep) else []
    kept: dict[int, Any] = {}
    fns = {l: _make_edit(adapter, l, edits.get(l), kept, l in keep, grad) for l in layers}
    with contextlib.ExitStack() as stack:
        if grad:  # also inside a caller's inference_mode or no_grad block
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            tokens, attention_mask = tokens.clone(), attention_mask.clone()  # not inference tensors
        else:
            stack.enter_context(torch.inference_mode())
        if adapter.is_hf:
            out = _hf_forward(adapter, tokens, attention_mask, fns)
        else:
            out = _tl_forward(adapter, tokens, attention_mask, fns)
    missing = [l for l in keep if l not in kept]
    if missing:
        raise ModelAdapterError(f"the neuron hooks of layers {missing} never fired")
    return out, kept


def _tl_forward(adapter: ModelAdapter, tokens, attention_mask, fns: dict[int, Edit]):
    """TransformerLens: ``run_with_hooks`` (its hooks context removes every hook it added, also on an error)."""
    fired: set[int] = set()

    def make_hook(layer: int):
        def hook(act, hook=None):  # TL passes the HookPoint as `hook`
            fired.add(layer)
            return fns[layer](act)
        return hook

    fwd_hooks = [(adapter.hook_name(l), make_hook(l)) for l in fns]
    final: dict[str, Any] = {}
    if not adapter.is_causal:
        def grab(act, hook=None):
            final["out"] = act
        fwd_hooks.append((final_hook_name(adapter), grab))
    out = adapter.model.run_with_hooks(tokens, return_type="logits" if adapter.is_causal else None,
                                       fwd_hooks=fwd_hooks, **{adapter.mask_kwarg: attention_mask})
    if set(fns) - fired:
        raise ModelAdapterError(f"hooks for layers {sorted(set(fns) - fired)} never fired")
    if adapter.is_causal:
        return out
    if "out" not in final:
        raise ModelAdapterError(f"the encoder's final hook {final_hook_name(adapter)} never fired")
    return final["out"]


def _hf_forward(adapter: ModelAdapter, tokens, attention_mask, fns: dict[int, Edit]):
    """Hugging Face: forward pre-hooks on the down-projections (removed in ``finally``), then the head."""
    hf = adapter.model
    run = hf.text_model
    modules = hf_down_projections(hf.model, list(fns), hf.arch)

    def make_hook(layer: int):
        def hook(module, args):
            new = fns[layer](args[0])
            return None if new is args[0] else (new, *args[1:])
        return hook

    kwargs: dict[str, Any] = {"input_ids": tokens, "attention_mask": attention_mask}
    if adapter.is_causal:
        kwargs["use_cache"] = False
        with contextlib.suppress(TypeError, ValueError):
            if "position_ids" in inspect.signature(run.forward).parameters:
                kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    handles = []
    try:
        for l, m in modules.items():
            handles.append(m.register_forward_pre_hook(make_hook(l)))
        res = run(**kwargs)
    finally:
        for h in handles:
            h.remove()
    hidden = res.last_hidden_state if hasattr(res, "last_hidden_state") else res[0]
    return _hf_logits(adapter, hidden) if adapter.is_causal else hidden


def _hf_logits(adapter: ModelAdapter, hidden):
    """Logits ``[batch, pos, d_vocab]`` from a causal Hugging Face model's final hidden state: its head module
    (bias included) where it has one, else the tied unembedding; Gemma 2's final soft-capping applied."""
    import torch

    hf = adapter.model.model
    head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
    if head is not None:
        logits = head(hidden.to(head.weight.device))
    else:
        w = adapter.unembedding()
        logits = hidden.to(w.device) @ w
    cfg = getattr(hf, "config", None)
    get_text = getattr(cfg, "get_text_config", None)
    cap = getattr(get_text() if callable(get_text) else cfg, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
