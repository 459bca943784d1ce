"""Capture backends: run a batch through a model and hand back MLP neuron activations.

Nothing above this module knows how activations are obtained. The TransformerLens backend hooks
``blocks.{layer}.mlp.hook_post`` (or the adapter's template); another backend (e.g. hooks on a plain Hugging Face
model's down-projection input) only has to implement :class:`CaptureBackend`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

from .adapter import ModelAdapter, as_adapter

__all__ = ["CaptureBackend", "TransformerLensBackend", "get_backend", "token_activations"]


class _StopForward(Exception):
    """Raised from the last requested layer's hook so the rest of the model never runs."""


class CaptureBackend(ABC):
    """Interface of a capture backend.

    ``forward(tokens, attention_mask, layers)`` returns ``{layer: activations}`` with activations of shape
    ``[batch, pos, d_mlp]`` (float32, on the model's device, owned by the caller: it may modify them in place).
    With ``consume=f``, ``f(layer, activations)`` is called as soon as each layer's activations exist (inside the
    forward, so at most one layer is held at a time) and nothing is returned; ``f`` must not modify them.
    Values at pad positions are unspecified; callers mask them.
    """

    name: str = "abstract"

    def __init__(self, adapter: ModelAdapter):
        self.adapter = adapter

    @abstractmethod
    def forward(self, tokens, attention_mask, layers: Sequence[int], consume=None) -> dict[int, Any]:
        """Activations of the given layers for one padded batch."""


class TransformerLensBackend(CaptureBackend):
    """Hooks on TransformerLens hook points; works for HookedTransformer (TL 2/3) and TransformerBridge (TL 3/4).

    Runs in inference mode with ``return_type=None`` and stops right after the last requested layer's hook fires
    (an exception unwinds the forward), so later blocks, the final LayerNorm and the unembedding never run on any
    TL version.
    """

    name = "transformer_lens"

    def forward(self, tokens, attention_mask, layers: Sequence[int], consume=None) -> dict[int, Any]:
        import torch

        layers = list(layers)
        last = max(layers)
        out: dict[int, Any] = {}
        seen: set[int] = set()

        def make_hook(layer: int):
            def hook(act, hook=None):  # TL passes the HookPoint as `hook`
                seen.add(layer)
                # No copy: the model is done with this tensor once the forward returns (inference mode, no graph).
                act = act.detach().to(torch.float32)
                if consume is None:
                    out[layer] = act
                else:
                    consume(layer, act)
                if layer == last:  # nothing after this hook is needed: not the rest of the model, not the unembedding
                    raise _StopForward
                return None
            return hook

        fwd_hooks = [(self.adapter.hook_name(l), make_hook(l)) for l in layers]
        model = self.adapter.model
        with torch.inference_mode():
            try:
                model.run_with_hooks(tokens, return_type=None, fwd_hooks=fwd_hooks,
                                     **{self.adapter.mask_kwarg: attention_mask})
            except _StopForward:  # run_with_hooks removes its hooks in its own `finally`
                pass
        missing = [l for l in layers if l not in seen]
        if missing:
            from .errors import ModelAdapterError

            raise ModelAdapterError(f"hooks for layers {missing} never fired ({self.adapter.hook_name(missing[0])})")
        return out


_BACKENDS = {"transformer_lens": TransformerLensBackend, "tl": TransformerLensBackend}


def get_backend(adapter: ModelAdapter, backend: str | CaptureBackend | None = None) -> CaptureBackend:
    """Resolve a backend name (``"transformer_lens"``; default) or pass an instance through."""
    if isinstance(backend, CaptureBackend):
        return backend
    name = backend or "transformer_lens"
    if name not in _BACKENDS:
        raise ValueError(f"unknown capture backend {name!r}; available: {sorted(set(_BACKENDS))}")
    return _BACKENDS[name](adapter)


def token_activations(model: Any, token_ids: Sequence[Sequence[int]], layers: Sequence[int] | None = None, *,
                      backend: str | CaptureBackend | None = None, batch_size: int = 16) -> list[dict[int, Any]]:
    """Per-token activations of a handful of already-tokenised sequences (special tokens included).

    Returns one ``{layer: ndarray [n_tokens, d_mlp]}`` per sequence, pad positions removed.
    """
    adapter = as_adapter(model)
    layers = adapter.check_layers(layers)
    cap = get_backend(adapter, backend)
    results: list[dict[int, Any]] = []
    for b in range(0, len(token_ids), batch_size):
        seqs = [list(s) for s in token_ids[b:b + batch_size]]
        tokens, mask, starts = adapter.pad_batch(seqs)
        acts = cap.forward(tokens, mask, layers)
        for i, s in enumerate(seqs):
            st = int(starts[i])
            results.append({l: acts[l][i, st:st + len(s)].cpu().numpy() for l in layers})
    return results
