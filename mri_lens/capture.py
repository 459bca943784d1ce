"""Capture backends: run a batch through a model and hand back MLP neuron activations.

Nothing above this module knows how activations are obtained. The TransformerLens backend hooks
``blocks.{layer}.mlp.hook_post`` (or the adapter's template); the Hugging Face backend puts forward pre-hooks on a
plain ``transformers`` model's MLP down-projections, whose input is the same activation. Another backend only has to
implement :class:`CaptureBackend`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple, Sequence

from .adapter import ModelAdapter, as_adapter
from .errors import ModelAdapterError

__all__ = ["CaptureBackend", "HF_ARCHITECTURES", "HuggingFaceBackend", "TransformerLensBackend", "get_backend",
           "hf_architecture", "hf_down_projections", "token_activations"]


class HFArchitecture(NamedTuple):
    """Where a Hugging Face architecture keeps its MLP down-projections, relative to ``model.base_model``."""

    layers: str  # dotted path of the block list
    down_proj: str  # dotted path of the down-projection inside a block; its input is TL's mlp.hook_post
    causal: bool  # False for encoders (BERT): [CLS] ... [SEP], bidirectional attention


# config.model_type -> module paths. The down-projection input equals TL's blocks.{l}.mlp.hook_post on each.
HF_ARCHITECTURES: dict[str, HFArchitecture] = {
    "gpt2": HFArchitecture("h", "mlp.c_proj", True),
    "gpt_neox": HFArchitecture("layers", "mlp.dense_4h_to_h", True),
    "llama": HFArchitecture("layers", "mlp.down_proj", True),
    "mistral": HFArchitecture("layers", "mlp.down_proj", True),
    "qwen2": HFArchitecture("layers", "mlp.down_proj", True),
    "gemma": HFArchitecture("layers", "mlp.down_proj", True),
    "gemma2": HFArchitecture("layers", "mlp.down_proj", True),
    "bert": HFArchitecture("encoder.layer", "output.dense", False),
}


def hf_architecture(config: Any) -> HFArchitecture:
    """The :data:`HF_ARCHITECTURES` entry of a ``transformers`` config; a clear error for an unknown one."""
    mt = getattr(config, "model_type", None)
    if mt not in HF_ARCHITECTURES:
        raise ModelAdapterError(
            f"the Hugging Face capture backend does not know the architecture {mt!r}; supported model types: "
            f"{', '.join(sorted(HF_ARCHITECTURES))}. Load the model through TransformerLens instead "
            "(mri_lens.load_model(name) without backend='hf')")
    return HF_ARCHITECTURES[mt]


def _get_path(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def hf_down_projections(model: Any, layers: Sequence[int]) -> dict[int, Any]:
    """``{layer: down-projection module}`` of a plain ``transformers`` model (paths: :data:`HF_ARCHITECTURES`)."""
    arch = hf_architecture(model.config)
    base = model.base_model
    try:
        blocks = _get_path(base, arch.layers)
        return {l: _get_path(blocks[l], arch.down_proj) for l in layers}
    except (AttributeError, IndexError, TypeError) as e:
        raise ModelAdapterError(f"{type(model).__name__} ({model.config.model_type}) has no "
                                f"`{arch.layers}.<layer>.{arch.down_proj}` module: {e}") from e


def _gelu_tanh(x):
    import torch

    return torch.nn.functional.gelu(x, approximate="tanh")


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

    def describe(self) -> dict[str, Any]:
        """What a saved result records about how its activations were captured."""
        return {"name": self.name}

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


class HuggingFaceBackend(CaptureBackend):
    """Forward pre-hooks on a plain ``transformers`` model's MLP down-projections (:class:`~mri_lens.HFModel`).

    Runs ``model.base_model`` (no head) in inference mode with the adapter's tokens and mask; causal models also
    get position ids counted over real tokens (``cumsum(mask) - 1``), so left padding gives the same activations
    as right padding. Right-padded causal batches run without the padding mask (real tokens never see the pads
    under the causal mask), which lets attention take its plain causal path. The down-projection input
    ``[batch, pos, d_mlp]`` is TL's ``blocks.{l}.mlp.hook_post``.
    The last requested layer's hook stops the forward; every hook handle is removed in ``finally``, so the model
    is never left modified, also after an exception.

    Parameters
    ----------
    fused_activations: run GPT-2's ``gelu_new`` (``NewGELUActivation``: five separate tensor operations) as torch's
        fused tanh GELU for the duration of each forward. It is the same formula (transformers ships it as
        ``gelu_pytorch_tanh``, its faster equivalent); activations differ by float32 rounding only (<= 4.8e-7
        absolute over [-30, 30], tested against the TL backend and the unfused forward to 1e-5) and the tiny LM's
        scan is ~10% faster. Restored in ``finally``; ``False`` runs the model's own modules.
    """

    name = "hf"

    def __init__(self, adapter: ModelAdapter, fused_activations: bool = True):
        super().__init__(adapter)
        if not getattr(adapter, "is_hf", False):
            raise ModelAdapterError(
                "the 'hf' capture backend needs a plain Hugging Face model: load it with "
                "mri_lens.load_model(name, backend='hf') or pass mri_lens.HFModel(model, tokenizer)")
        self.arch = hf_architecture(adapter.model.model.config)
        self.fused_activations = bool(fused_activations)
        # the modules swapped during each forward (found once: the backend's model never changes)
        self._fused = [m for m in adapter.model.model.modules()
                       if type(m).__name__ == "NewGELUActivation"] if self.fused_activations else []

    def describe(self) -> dict[str, Any]:
        return {"name": self.name,
                "fused_activations": ["gelu_new -> gelu(approximate='tanh')"] if self._fused else []}

    def forward(self, tokens, attention_mask, layers: Sequence[int], consume=None) -> dict[int, Any]:
        import torch

        layers = list(layers)
        last = max(layers)
        out: dict[int, Any] = {}
        seen: set[int] = set()
        model = self.adapter.model.model
        modules = hf_down_projections(model, layers)

        def make_hook(layer: int):
            def hook(module, args):
                seen.add(layer)
                act = args[0].detach().to(torch.float32)  # a copy only when the model is not float32
                if consume is None:
                    out[layer] = act
                else:
                    consume(layer, act)
                if layer == last:  # later blocks never run
                    raise _StopForward
                return None
            return hook

        kwargs: dict[str, Any] = {"input_ids": tokens, "attention_mask": attention_mask}
        if self.arch.causal:
            kwargs["use_cache"] = False
            real = attention_mask.bool()
            if bool(real[:, 0].all()) and bool((real[:, :-1] >= real[:, 1:]).all()):
                # Right padding: a real token attends only to earlier, real tokens under the causal mask alone,
                # so its activations do not depend on the padding mask. Without it, attention takes the plain
                # causal path (no [batch, 1, pos, pos] mask built and applied): ~8% faster on the tiny LM.
                del kwargs["attention_mask"]
            else:
                kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        handles = []
        fused = self._fused
        try:
            for m in fused:  # an instance attribute shadows the class's forward until it is deleted again
                m.forward = _gelu_tanh
            for l in layers:
                handles.append(modules[l].register_forward_pre_hook(make_hook(l)))
            with torch.inference_mode():
                try:
                    model.base_model(**kwargs)
                except _StopForward:
                    pass
        finally:
            for h in handles:
                h.remove()
            for m in fused:
                m.__dict__.pop("forward", None)
        missing = [l for l in layers if l not in seen]
        if missing:
            raise ModelAdapterError(f"down-projection hooks for layers {missing} never fired "
                                    f"({self.arch.layers}.{missing[0]}.{self.arch.down_proj})")
        return out


_BACKENDS = {"transformer_lens": TransformerLensBackend, "tl": TransformerLensBackend, "hf": HuggingFaceBackend}


def get_backend(adapter: ModelAdapter, backend: str | CaptureBackend | None = None) -> CaptureBackend:
    """Resolve a backend name or pass an instance through.

    Default: ``"hf"`` for a plain Hugging Face model (:class:`~mri_lens.HFModel`), ``"transformer_lens"`` for a
    TransformerLens model.
    """
    if isinstance(backend, CaptureBackend):
        return backend
    name = backend or ("hf" if getattr(adapter, "is_hf", False) else "transformer_lens")
    if name not in _BACKENDS:
        raise ValueError(f"unknown capture backend {name!r}; available: {sorted(set(_BACKENDS))}")
    if name != "hf" and getattr(adapter, "is_hf", False):
        raise ModelAdapterError(f"the {name!r} capture backend needs a TransformerLens model; this is a plain "
                                "Hugging Face model (use backend='hf')")
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
