"""Units: what a scan reads per layer. The base class and the model's own hook points.

A unit set says, for each layer it covers, which tensor of the forward pass it reads (a hook point: a TL hook
name, or for the Hugging Face backend the input or output of a module), how to turn that tensor into
``[batch, pos, width]`` unit activations, its width, how a unit is named on a page, and where one exists each
unit's output direction in the residual stream ``[width, d_model]`` (for logit effects). MLP neurons
(``mlp_post``) are the default and read exactly what scans always read. The sparse autoencoder and transcoder
latents of :mod:`mri_lens.model.sae` are unit sets too.

Hook kinds (:data:`HOOK_KINDS`), with their TransformerLens hook names: ``mlp_post`` (the MLP neurons),
``mlp_pre`` (before the activation function), ``mlp_in`` (TL's ``ln2.hook_normalized``, what transcoders read:
the MLP's LayerNorm input normalised; on TL >= 3 bridges and the Hugging Face backend before the LayerNorm's
weight and bias, on a TL 2 ``HookedTransformer`` after them, which equals "before" once the LayerNorm is folded
into the next weights as ``from_pretrained`` does by default), ``mlp_out``,
``attn_out``, ``attn_z`` (each head's mixed values, ``n_heads x d_head`` flattened head-major), ``resid_pre``,
``resid_mid``, ``resid_post`` and ``embed`` (the embeddings, hidden state 0: one layer, numbered 0).
:class:`HiddenStateUnits` (``"hidden_states"``) reads the embeddings and every block's output, numbered as
Hugging Face's ``output_hidden_states``.
"""

from __future__ import annotations

import abc

import hashlib
from typing import Any, Sequence

from ..errors import ModelAdapterError

__all__ = ["HOOK_KINDS", "UnitSet", "HookUnits", "HiddenStateUnits", "hook_layer", "hook_width", "model_dims",
           "weights_sha256"]

# kind -> (TransformerLens hook name template, which model width it has)
HOOK_KINDS: dict[str, tuple[str, str]] = {
    "mlp_post": ("blocks.{layer}.mlp.hook_post", "d_mlp"),
    "mlp_pre": ("blocks.{layer}.mlp.hook_pre", "d_mlp"),
    "mlp_in": ("blocks.{layer}.ln2.hook_normalized", "d_model"),
    "mlp_out": ("blocks.{layer}.hook_mlp_out", "d_model"),
    "attn_out": ("blocks.{layer}.hook_attn_out", "d_model"),
    "attn_z": ("blocks.{layer}.attn.hook_z", "z"),
    "resid_pre": ("blocks.{layer}.hook_resid_pre", "d_model"),
    "resid_mid": ("blocks.{layer}.hook_resid_mid", "d_model"),
    "resid_post": ("blocks.{layer}.hook_resid_post", "d_model"),
    "embed": ("blocks.0.hook_resid_pre", "d_model"),
}
_BY_TEMPLATE = {t: k for k, (t, _) in HOOK_KINDS.items() if k != "embed"}


def model_dims(adapter: Any) -> dict[str, int | None]:
    """``{"d_model", "d_mlp", "z"}`` of the adapter's model (``z``: ``n_heads * d_head``); None where unknown."""
    if adapter.is_hf:
        cfg = adapter.model.model.config
        get = getattr(cfg, "get_text_config", None)
        cfg = get() if callable(get) else cfg
        d_model = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
        heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None)
        d_head = getattr(cfg, "head_dim", None) or (d_model // heads if d_model and heads else None)
    else:
        cfg = adapter.model.cfg
        d_model, heads, d_head = (getattr(cfg, k, None) for k in ("d_model", "n_heads", "d_head"))
    z = int(heads) * int(d_head) if heads and d_head else None
    return {"d_model": None if d_model is None else int(d_model), "d_mlp": adapter.d_mlp, "z": z}


def hook_width(adapter: Any, kind: str) -> int | None:
    """Width of a hook kind's tensor on ``adapter``'s model (attention ``z`` flattened)."""
    return model_dims(adapter)[HOOK_KINDS[kind][1]]


def hook_layer(name: str) -> tuple[str, int | None]:
    """``("blocks.{layer}.hook_resid_post", 6)`` from ``"blocks.6.hook_resid_post"``; no layer: ``(name, None)``."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit():
        return ".".join(["blocks", "{layer}"] + parts[2:]), int(parts[1])
    return name, None


class UnitSet(abc.ABC):
    """What a scan reads per layer (see the module docstring). Subclasses set ``kind`` and override what differs.

    ``site(layer)``: the hook kind of the tensor read at ``layer`` (a key of :data:`HOOK_KINDS`, or None for a
    TL hook outside the table). ``encode(layer, act)``: float32 hook activations (``attn_z``: ``[b, p, heads,
    d_head]``) -> ``[b, p, width]``; never modifies ``act``.
    """

    kind = "abstract"
    unit_noun = "unit"

    @abc.abstractmethod
    def site(self, layer: int) -> str | None:
        """The hook kind read at ``layer`` (each unit set says its own)."""

    def block(self, layer: int) -> int:
        """The model block whose tensor is read at scan layer ``layer`` (the same number but for hidden states)."""
        return layer

    def hook_name(self, adapter: Any, layer: int) -> str:
        return HOOK_KINDS[self.site(layer)][0].format(layer=self.block(layer))

    def layer_numbers(self, adapter: Any, layers: Sequence[int] | None) -> list[int]:
        """``layers`` (``None``: every block) sorted, de-duplicated and checked against the model's blocks."""
        return adapter.check_layers(layers)

    def default_layers(self, adapter: Any) -> list[int] | None:
        """The layers scanned when the options name none (``None``: every layer)."""
        return None

    def input_width(self, adapter: Any, layer: int) -> int | None:
        site = self.site(layer)
        return None if site is None else hook_width(adapter, site)

    def width(self, adapter: Any, layer: int) -> int:
        w = self.input_width(adapter, layer)
        if w is None:
            raise ModelAdapterError(f"cannot tell the width of `{self.hook_name(adapter, layer)}` on this model")
        return int(w)

    def encode(self, layer: int, act):
        return act.flatten(2) if act.dim() == 4 else act

    def fingerprint(self) -> str | None:
        """SHA-256 of any weights the units apply (None for a plain hook)."""
        return None

    def check(self, adapter: Any, layers: Sequence[int] | None) -> list[int]:
        """The layers to scan (``layers`` or :meth:`default_layers`), checked against the model: every hook
        exists and every layer has the same width. Raises :class:`ModelAdapterError` before the model runs."""
        default = self.default_layers(adapter)
        if layers is None:
            layers = default
        layers = self.layer_numbers(adapter, None if layers is None else list(layers))
        if default is not None and not set(layers) <= set(default):
            extra = sorted(set(layers) - set(default))
            raise ModelAdapterError(f"{self.describe_short()} cover layers {default}, not {extra}")
        names = _tl_hook_names(adapter)
        for l in layers:
            name = self.hook_name(adapter, l)
            if names is not None and name not in names:
                b = self.block(l)
                close = sorted(n for n in names if n.startswith(f"blocks.{b}.") and "hook" in n)
                raise ModelAdapterError(f"the model has no hook `{name}` (asked by {self.describe_short()}); "
                                        f"hooks of block {b}: {', '.join(close[:40]) or 'none'}")
        widths = {l: self.width(adapter, l) for l in layers}
        if len(set(widths.values())) > 1:
            raise ModelAdapterError(f"{self.describe_short()} have different widths per layer ({widths}); one scan "
                                    "holds units of one width: scan the layers separately")
        return layers

    def describe(self, adapter: Any, layers: Sequence[int]) -> dict[str, Any]:
        """What a saved scan records about its units (JSON)."""
        return {"kind": self.kind, "hooks": {str(l): self.hook_name(adapter, l) for l in layers},
                "widths": {str(l): self.width(adapter, l) for l in layers}, "fingerprint": self.fingerprint(),
                "unit_noun": self.unit_noun}

    def describe_short(self) -> str:
        return f"the units {self.kind!r}"

    def output_directions(self, adapter: Any, layer: int):
        """Each unit's output direction in the residual stream ``[width, d_model]`` (torch), or None."""
        return None

    def to(self, device: Any) -> "UnitSet":
        return self

    @property
    def is_default(self) -> bool:
        return False


def _tl_hook_names(adapter: Any) -> set[str] | None:
    if adapter.is_hf:
        return None
    hd = getattr(adapter.model, "hook_dict", None)
    return set(hd.keys()) if hd is not None else None


class HookUnits(UnitSet):
    """The model's own activations at one hook point (each dimension of the tensor is a unit).

    ``HookUnits("resid_post")`` or a TransformerLens hook template with ``{layer}``
    (``"blocks.{layer}.attn.hook_z"``); a template outside :data:`HOOK_KINDS` works on TransformerLens models
    only, its width read from one short forward. ``mlp_post`` reads the adapter's own neuron hook (``hook_mid``
    on SoLU models), exactly what scans read by default.
    """

    kind = "hook"

    def __init__(self, which: str = "mlp_post"):
        if not isinstance(which, str) or not which:
            raise ValueError(f"units must be a hook kind ({', '.join(HOOK_KINDS)}) or a hook name, got {which!r}")
        if which in HOOK_KINDS:
            self._kind, self.template = which, HOOK_KINDS[which][0]
        elif "{layer}" in which:
            self._kind, self.template = _BY_TEMPLATE.get(which), which
        else:
            raise ValueError(f"unknown units {which!r}: a hook kind ({', '.join(HOOK_KINDS)}), 'hidden_states', "
                             "'sae:LAYER=DIR', 'transcoder:LAYER=DIR' or a hook name template with {layer}, such as "
                             "'blocks.{layer}.attn.hook_z'")
        self.unit_noun = "neuron" if self._kind == "mlp_post" else "dimension"
        self._probed: dict[int, int] = {}

    def site(self, layer: int) -> str | None:
        return self._kind

    @property
    def is_default(self) -> bool:
        return self._kind == "mlp_post"

    def hook_name(self, adapter: Any, layer: int) -> str:
        if self._kind == "mlp_post":
            return adapter.hook_name(layer)
        return self.template.format(layer=layer)

    def default_layers(self, adapter: Any) -> list[int] | None:
        return [0] if self._kind == "embed" else None

    def input_width(self, adapter: Any, layer: int) -> int | None:
        if self._kind is not None:
            return super().input_width(adapter, layer)
        if layer not in self._probed:
            self._probed[layer] = _probe_width(adapter, self.hook_name(adapter, layer))
        return self._probed[layer]

    def describe(self, adapter: Any, layers: Sequence[int]) -> dict[str, Any]:
        return {**super().describe(adapter, layers), "kind": self._kind or "hook"}

    def describe_short(self) -> str:
        return f"the units {self._kind or self.template!r}"

    def output_directions(self, adapter: Any, layer: int):
        if self._kind == "mlp_post":
            return adapter.neuron_output_weights(layer)
        if self._kind in ("resid_pre", "resid_mid", "resid_post", "mlp_out", "attn_out", "embed"):
            import torch

            w = adapter.input_embedding()
            return torch.eye(int(w.shape[1]), dtype=w.dtype, device=w.device)  # a residual dimension writes itself
        return None


class HiddenStateUnits(UnitSet):
    """The residual stream numbered as Hugging Face's ``output_hidden_states``: layer 0 is the embeddings (block
    0's input, TL's ``blocks.0.hook_resid_pre``), layer ``i`` (1..n_layers) the output of block ``i - 1``
    (``blocks.{i-1}.hook_resid_post``). So a scan has ``n_layers + 1`` layers (default: all), each ``d_model`` wide.

    Layers 0..n_layers-1 equal ``output_hidden_states[i]`` (on a TransformerLens model whose weights were not
    processed: TL 2's default ``center_writing_weights`` removes each position's mean from the residual stream).
    The last layer is the last block's output as the residual stream carries it: a model with a final LayerNorm
    (GPT-2, Llama; not BERT) applies that norm to the last entry of ``output_hidden_states``.
    A TL 2 ``HookedEncoder`` (BERT) has its blocks' LayerNorm after ``hook_resid_post``: its block output is
    ``hook_normalized_resid_post``, which is read there.
    """

    kind = "hidden_states"
    unit_noun = "dimension"

    def site(self, layer: int) -> str | None:
        return "embed" if layer == 0 else "resid_post"

    def block(self, layer: int) -> int:
        return max(int(layer) - 1, 0)

    def hook_name(self, adapter: Any, layer: int) -> str:
        if layer > 0 and _post_norm_blocks(adapter):
            return f"blocks.{self.block(layer)}.hook_normalized_resid_post"
        return super().hook_name(adapter, layer)

    def default_layers(self, adapter: Any) -> list[int] | None:
        return list(range(adapter.n_layers + 1))

    def layer_numbers(self, adapter: Any, layers: Sequence[int] | None) -> list[int]:
        n = int(adapter.n_layers)
        if layers is None:
            return list(range(n + 1))
        out = sorted({int(l) for l in ([layers] if isinstance(layers, int) else layers)})
        bad = [l for l in out if not 0 <= l <= n]
        if bad or not out:
            raise ModelAdapterError(f"hidden states are numbered 0..{n} on this model (0: the embeddings, i: the "
                                    f"output of block i-1 of {n}), got {list(layers)}")
        return out

    def describe_short(self) -> str:
        return "the hidden states"

    def output_directions(self, adapter: Any, layer: int):
        import torch

        w = adapter.input_embedding()
        return torch.eye(int(w.shape[1]), dtype=w.dtype, device=w.device)  # a residual dimension writes itself


def _post_norm_blocks(adapter: Any) -> bool:
    """Whether ``adapter``'s TL model normalises each block's output after ``hook_resid_post`` (TL 2 BERT)."""
    names = None if adapter is None else _tl_hook_names(adapter)
    return names is not None and "blocks.0.hook_normalized_resid_post" in names


def _probe_width(adapter: Any, name: str) -> int:
    """Width of a TL hook's tensor (its last dimensions flattened), from one forward of one token."""
    import torch

    if adapter.is_hf:
        raise ModelAdapterError(f"the hook `{name}` is a TransformerLens hook name; the Hugging Face backend reads "
                                f"the hook kinds {', '.join(HOOK_KINDS)}")
    seen: list[int] = []

    class _Done(Exception):
        pass

    def grab(act, hook=None):
        seen.append(int(act[0, 0].numel()))
        raise _Done

    tokens, mask, _ = adapter.pad_batch([[adapter.pad_token_id]])
    with torch.inference_mode():
        try:
            adapter.model.run_with_hooks(tokens, return_type=None, fwd_hooks=[(name, grab)],
                                         **{adapter.mask_kwarg: mask})
        except _Done:
            pass
    if not seen:
        raise ModelAdapterError(f"the hook `{name}` never fired in a forward pass")
    return seen[0]


def weights_sha256(tensors: dict[str, Any]) -> str:
    """SHA-256 over named tensors' names, shapes, dtypes and bytes (in name order)."""
    import torch

    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
