"""Capture backends: run a batch through a model and hand back MLP neuron activations.

Nothing above this module knows how activations are obtained. The TransformerLens backend hooks
``blocks.{layer}.mlp.hook_post`` (or the adapter's template); the Hugging Face backend puts forward pre-hooks on a
plain ``transformers`` model's MLP down-projections, whose input is the same activation. Another backend only has to
implement :class:`CaptureBackend`.
"""

from __future__ import annotations

import contextlib

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from .adapter import ModelAdapter, as_adapter
from ..errors import ModelAdapterError, ScanError
from .hf import HF_ARCHITECTURES, hf_architecture, hf_down_projections  # noqa: F401 - their documented home
from .hf import config_experts
from .hf_sites import hf_site_modules
from .units import UnitSet, as_units, units_for_scan

__all__ = ["CaptureBackend", "HF_ARCHITECTURES", "HuggingFaceBackend", "TransformerLensBackend", "get_backend",
           "hf_architecture", "hf_down_projections", "scan_token_activations", "scan_windows", "token_activations"]


def _gelu_tanh(x):
    import torch

    return torch.nn.functional.gelu(x, approximate="tanh")


def _fusable(model: Any) -> list:
    """transformers' ``NewGELUActivation`` modules of ``model`` whose forward can be swapped (one already wrapped,
    e.g. by accelerate, keeps its own)."""
    return [m for m in model.modules() if type(m).__name__ == "NewGELUActivation" and "forward" not in m.__dict__]


@contextlib.contextmanager
def _fused_gelu(modules: list):
    """Run ``modules`` (see :func:`_fusable`) as torch's fused tanh GELU inside the block, restored in ``finally``:
    an instance attribute shadows the class's forward until it is deleted again."""
    try:
        for m in modules:
            m.forward = _gelu_tanh
        yield
    finally:
        for m in modules:
            m.__dict__.pop("forward", None)


class _StopForward(Exception):
    """Raised from the last requested layer's hook so the rest of the model never runs."""


class CaptureBackend(ABC):
    """Interface of a capture backend.

    ``forward(tokens, attention_mask, layers)`` returns ``{layer: activations}`` with activations of shape
    ``[batch, pos, d_mlp]`` (float32 whatever the model's dtype, on the device of ``tokens`` also when the model
    is spread over several devices, owned by the caller: it may modify them in place).
    With ``consume=f``, ``f(layer, activations)`` is called as soon as each layer's activations exist (inside the
    forward, so at most one layer is held at a time) and nothing is returned; ``f`` must not modify them.
    Values at pad positions are unspecified; callers mask them.
    """

    name: str = "abstract"

    def __init__(self, adapter: ModelAdapter, units: UnitSet | None = None):
        self.adapter = adapter
        self.units = as_units(units)  # what each layer's activations are: MLP neurons unless told otherwise

    def describe(self) -> dict[str, Any]:
        """What a saved result records about how its activations were captured."""
        return {"name": self.name}

    @abstractmethod
    def forward(self, tokens, attention_mask, layers: Sequence[int], consume=None) -> dict[int, Any]:
        """Activations of the given layers for one padded batch."""

    def _unit_hook(self, layers: Sequence[int], dev, consume, out: dict, seen: set):
        """``make(layer) -> f(raw activations)``: raw hook tensor -> float32 on ``dev`` -> the units'
        ``[batch, pos, width]`` -> ``out`` or ``consume``; raises :class:`_StopForward` after the last layer."""
        import torch

        units, last = self.units, max(layers)
        plain = units.is_default
        widths = {} if plain else {l: units.input_width(self.adapter, l) for l in layers}

        def make(layer: int):
            def take(act) -> None:
                seen.add(layer)
                act = act.detach().to(device=dev, dtype=torch.float32)
                if not plain:
                    got = int(act[0, 0].numel()) if act.dim() > 2 else int(act.shape[-1])
                    if widths[layer] is not None and got != widths[layer]:
                        raise ModelAdapterError(f"`{units.hook_name(self.adapter, layer)}` hands activations {got} "
                                                f"wide, not {widths[layer]}")
                    act = units.encode(layer, act)
                if consume is None:
                    out[layer] = act
                else:
                    consume(layer, act)
                if layer == last:
                    raise _StopForward
            return take
        return make


class TransformerLensBackend(CaptureBackend):
    """Hooks on TransformerLens hook points; works for HookedTransformer (TL 2/3) and TransformerBridge (TL 3/4).

    Runs in inference mode with ``return_type=None`` and stops right after the last requested layer's hook fires
    (an exception unwinds the forward), so later blocks, the final LayerNorm and the unembedding never run on any
    TL version.

    Each hook checks that its activations are ``d_mlp`` wide: on a mixture-of-experts model (a TL bridge's
    ``mlp.hook_post`` there is the block output, ``d_model`` wide) it raises :class:`ModelAdapterError`.

    ``fused_activations=True``: a TL bridge over a GPT-2-style model runs transformers' ``gelu_new`` modules as
    torch's fused tanh GELU during each forward, as the Hugging Face backend does by default (same formula, float32
    rounding apart; a ``HookedTransformer`` has no such modules and is unchanged). Off by default, so a scan reads
    exactly the model's own activations; N2G's many short forwards turn it on.
    """

    name = "transformer_lens"

    def __init__(self, adapter: ModelAdapter, units: UnitSet | None = None, fused_activations: bool = False):
        super().__init__(adapter, units)
        self._fused = _fusable(adapter.model) if fused_activations else []

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **({"fused_activations": ["gelu_new -> gelu(approximate='tanh')"]}
                                      if self._fused else {})}

    def forward(self, tokens, attention_mask, layers: Sequence[int], consume=None) -> dict[int, Any]:
        import torch

        layers = list(layers)
        out: dict[int, Any] = {}
        seen: set[int] = set()
        d_mlp = self.adapter.d_mlp if self.units.is_default else None
        # No copy: the model is done with each tensor once the forward returns (inference mode, no graph); the
        # last layer's hook stops the forward: not the rest of the model, not the unembedding
        take = self._unit_hook(layers, tokens.device, consume, out, seen)

        def make_hook(layer: int):
            f = take(layer)

            def hook(act, hook=None):  # TL passes the HookPoint as `hook`
                if d_mlp is not None and act.shape[-1] != d_mlp:
                    raise self._width_error(layer, int(act.shape[-1]))
                f(act)
            return hook

        fwd_hooks = [(self.units.hook_name(self.adapter, l), make_hook(l)) for l in layers]
        model = self.adapter.model
        with torch.inference_mode(), _fused_gelu(self._fused):
            try:
                model.run_with_hooks(tokens, return_type=None, fwd_hooks=fwd_hooks,
                                     **{self.adapter.mask_kwarg: attention_mask})
            except _StopForward:  # run_with_hooks removes its hooks in its own `finally`
                pass
        missing = [l for l in layers if l not in seen]
        if missing:
            raise ModelAdapterError(f"hooks for layers {missing} never fired "
                                    f"({self.units.hook_name(self.adapter, missing[0])})")
        return out

    def _width_error(self, layer: int, width: int) -> ModelAdapterError:
        cfg = self.adapter.model.cfg
        d_model = getattr(cfg, "d_model", None)
        name = self.adapter.hook_name(layer)
        if width == d_model or config_experts(cfg) is not None:
            return ModelAdapterError(
                f"{self.adapter.model_id or type(self.adapter.model).__name__} is a mixture-of-experts model: its "
                f"mlp.hook_post is the block output (d_model={width}), not MLP neurons (d_mlp={self.adapter.d_mlp} "
                "per expert); mri_lens scans dense MLPs only")
        return ModelAdapterError(f"the hook `{name}` hands activations {width} wide, not the model's "
                                 f"d_mlp={self.adapter.d_mlp}: it is not an MLP neuron hook")


class HuggingFaceBackend(CaptureBackend):
    """Forward pre-hooks on a plain ``transformers`` model's MLP down-projections (:class:`~mri_lens.HFModel`).

    Runs ``model.base_model`` (no head) in inference mode with the adapter's tokens and mask; causal models also
    get position ids counted over real tokens (``cumsum(mask) - 1``), so left padding gives the same activations
    as right padding. Right-padded causal batches run without the padding mask (real tokens never see the pads
    under the causal mask), which lets attention take its plain causal path. The down-projection input
    ``[batch, pos, d_mlp]`` is TL's ``blocks.{l}.mlp.hook_post``. A multimodal model (Gemma 3) runs its language
    model only. A float16/bfloat16 model's activations are cast to float32 in the hook; a model spread over
    devices by a ``device_map`` hands each layer's activations on to the device of the tokens (the input
    embedding's, :attr:`ModelAdapter.device`).
    The last requested layer's hook stops the forward; every hook handle is removed in ``finally``, so the model
    is never left modified, also after an exception.

    Parameters
    ----------
    fused_activations: run GPT-2's ``gelu_new`` (``NewGELUActivation``: five separate tensor operations) as torch's
        fused tanh GELU for the duration of each forward. It is the same formula (transformers ships it as
        ``gelu_pytorch_tanh``, its faster equivalent); activations differ by float32 rounding only (tested
        against the TL backend and the unfused forward to 1e-5; the measured difference and speed-up are in
        bench/RESULTS.md). Restored in ``finally``; ``False`` runs the model's own modules.
    """

    name = "hf"

    def __init__(self, adapter: ModelAdapter, fused_activations: bool = True, units: UnitSet | None = None):
        super().__init__(adapter, units)
        if not getattr(adapter, "is_hf", False):
            raise ModelAdapterError(
                "the 'hf' capture backend needs a plain Hugging Face model: load it with "
                "mri_lens.load_model(name, backend='hf') or pass mri_lens.HFModel(model, tokenizer)")
        import inspect

        self.arch = adapter.model.arch
        self._run = adapter.model.text_model  # base_model, or a multimodal model's language model
        self.fused_activations = bool(fused_activations)
        # the modules swapped during each forward (found once: the backend's model never changes)
        self._fused = _fusable(self._run) if self.fused_activations else []
        try:
            self._position_ids = "position_ids" in inspect.signature(self._run.forward).parameters
        except (TypeError, ValueError):
            self._position_ids = True

    def describe(self) -> dict[str, Any]:
        return {"name": self.name,
                "fused_activations": ["gelu_new -> gelu(approximate='tanh')"] if self._fused else [],
                "down_projection": f"{self.arch.layers}.{{layer}}.{self.arch.down_proj}",
                "placed_by": "generic fallback" if self.arch.fallback else "HF_ARCHITECTURES"}

    def forward(self, tokens, attention_mask, layers: Sequence[int], consume=None) -> dict[int, Any]:
        import torch

        layers = list(layers)
        out: dict[int, Any] = {}
        seen: set[int] = set()
        model = self.adapter.model.model
        sites = self._sites(model, layers)
        # with a device_map, later layers may live elsewhere: all go to the tokens' device; a copy only when the
        # model is not float32 or the layer is on another device; the last layer's hook stops the forward
        take = self._unit_hook(layers, tokens.device, consume, out, seen)

        kwargs: dict[str, Any] = {"input_ids": tokens, "attention_mask": attention_mask}
        if self.arch.causal:
            kwargs["use_cache"] = False
            real = attention_mask.bool()
            if bool(real[:, 0].all()) and bool((real[:, :-1] >= real[:, 1:]).all()):
                # Right padding: a real token attends only to earlier, real tokens under the causal mask alone,
                # so its activations do not depend on the padding mask. Without it, attention takes the plain
                # causal path (no [batch, 1, pos, pos] mask built and applied), which is faster (bench/RESULTS.md).
                del kwargs["attention_mask"]
            elif self._position_ids:
                kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            else:
                raise ModelAdapterError(f"the {type(self._run).__name__} takes no position_ids, so left padding "
                                        "would shift its positions; scan it with padding_side='right'")
        handles = []
        try:
            for l in layers:
                handles.append(_hf_hook(*sites[l], take(l)))
            with torch.inference_mode(), _fused_gelu(self._fused):
                try:
                    self._run(**kwargs)
                except _StopForward:
                    pass
        finally:
            for h in handles:
                h.remove()
        missing = [l for l in layers if l not in seen]
        if missing:
            raise ModelAdapterError(f"hooks for layers {missing} never fired "
                                    f"({self.arch.layers}.{self.units.block(missing[0])})")
        return out

    def _sites(self, model, layers: Sequence[int]) -> dict[int, tuple[Any, str]]:
        """``{layer: (module, "in" | "out")}`` of the units' tensor, one layer at a time (kinds may differ; hidden
        state ``l`` lives in block ``l - 1``: the unit set maps a scan layer to its block)."""
        sites: dict[int, tuple[Any, str]] = {}
        for l in layers:
            kind = self.units.site(l)
            if kind is None:
                raise ModelAdapterError(f"`{self.units.hook_name(self.adapter, l)}` is a TransformerLens hook "
                                        "name; the Hugging Face backend reads hook kinds (mri_lens.units.HOOK_KINDS)")
            b = self.units.block(l)
            sites[l] = hf_site_modules(model, self.arch, kind, [b])[b]
        return sites


def _hf_hook(module, where: str, take):
    """A forward (pre-)hook on ``module`` handing its first input or first output to ``take``."""
    if where in ("in", "norm"):
        def pre(mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            take(_normalised(mod, x) if where == "norm" else x)
        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def post(mod, args, output):
        take(output[0] if isinstance(output, (tuple, list)) else output)
    return module.register_forward_hook(post)


def _normalised(norm, x):
    """What a LayerNorm (centred, scaled) or RMSNorm (scaled) module makes of ``x`` before its weight and bias:
    TL's ``hook_normalized``."""
    import torch

    x = x.float()
    eps = getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", None) or 1e-5
    if isinstance(norm, torch.nn.LayerNorm):
        x = x - x.mean(-1, keepdim=True)
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)


_BACKENDS = {"transformer_lens": TransformerLensBackend, "tl": TransformerLensBackend, "hf": HuggingFaceBackend}


def get_backend(adapter: ModelAdapter, backend: str | CaptureBackend | None = None,
                units: UnitSet | None = None, fused_activations: bool | None = None) -> CaptureBackend:
    """Resolve a backend name or pass an instance through.

    Default: ``"hf"`` for a plain Hugging Face model (:class:`~mri_lens.HFModel`), ``"transformer_lens"`` for a
    TransformerLens model. ``units``: what each layer's activations are (default: MLP neurons; see
    :mod:`mri_lens.model.units`).
    """
    if isinstance(backend, CaptureBackend):
        if units is not None:
            backend.units = as_units(units)
        return backend
    name = backend or ("hf" if getattr(adapter, "is_hf", False) else "transformer_lens")
    if name not in _BACKENDS:
        raise ValueError(f"unknown capture backend {name!r}; available: {sorted(set(_BACKENDS))}")
    if name != "hf" and getattr(adapter, "is_hf", False):
        raise ModelAdapterError(f"the {name!r} capture backend needs a TransformerLens model; this is a plain "
                                "Hugging Face model (use backend='hf')")
    kw = {} if fused_activations is None else {"fused_activations": bool(fused_activations)}
    return _BACKENDS[name](adapter, units=units, **kw)


def token_activations(model: Any, token_ids: Sequence[Sequence[int]], layers: Sequence[int] | None = None, *,
                      backend: str | CaptureBackend | None = None, batch_size: int = 16,
                      units: UnitSet | str | None = None) -> list[dict[int, Any]]:
    """Per-token activations of a handful of already-tokenised sequences (special tokens included).

    Returns one ``{layer: ndarray [n_tokens, width]}`` per sequence, pad positions removed; ``units``: what is
    read (default: MLP neurons, ``width = d_mlp``; see :mod:`mri_lens.model.units`).
    """
    adapter = as_adapter(model)
    unit_set = as_units(units)
    layers = unit_set.check(adapter, layers)
    cap = get_backend(adapter, backend, units=unit_set)
    results: list[dict[int, Any]] = []
    for b in range(0, len(token_ids), batch_size):
        seqs = [list(s) for s in token_ids[b:b + batch_size]]
        tokens, mask, starts = adapter.pad_batch(seqs)
        acts = cap.forward(tokens, mask, layers)
        for i, s in enumerate(seqs):
            st = int(starts[i])
            results.append({l: acts[l][i, st:st + len(s)].cpu().numpy() for l in layers})
    return results


def scan_windows(scan: Any, docs: Sequence[int]) -> tuple[list[list[int]], list[int]]:
    """The token sequences the scan ran for ``docs``, window by window (``overflow="windows"``: every window but
    the last exactly ``max_length`` tokens long), and for each the position in ``docs`` it belongs to."""
    width = int(scan.meta.get("max_length") or 0)
    pieces, owner = [], []
    for i, d in enumerate(docs):
        toks = scan.tokens(int(d))
        step = width if width and len(toks) > width else max(len(toks), 1)
        for s in range(0, len(toks), step):
            pieces.append(toks[s:s + step])
            owner.append(i)
    return pieces, owner


def scan_token_activations(model: Any, scan: Any, docs: Sequence[int], layer: int | None = None,
                           units: Any = None) -> list[np.ndarray]:
    """Recompute per-token activations of a few documents of ``scan`` from ``model``: ``[n_tokens, width]`` each,
    of the scan's units (:func:`mri_lens.model.units.units_for_scan`; MLP neurons: ``width = d_mlp``).

    The same tokens as the scan saw (special tokens included); the model must be the one scanned. A document
    the scan split into windows (``overflow="windows"``) is run window by window, as in the scan: every window
    but the last is exactly ``max_length`` tokens long. ``layer``: a model layer number (default: the scan's
    first). ``scan``: a :class:`~mri_lens.results.scan.Scan` (only its public ``layers``, ``tokens`` and ``meta`` are read).
    """
    layer = scan.layers[0] if layer is None else int(layer)
    if layer not in scan.layers:
        raise ScanError(f"layer {layer} was not scanned; this scan has layers {scan.layers}")
    pieces, owner = scan_windows(scan, docs)
    out = token_activations(model, pieces, [layer], units=units_for_scan(scan, units))
    acts: list[list[np.ndarray]] = [[] for _ in docs]
    for i, o in zip(owner, out):
        acts[i].append(o[layer])
    return [a[0] if len(a) == 1 else np.concatenate(a) for a in acts]
