"""Where each hook kind lives in a plain Hugging Face model: the module whose input or output is that tensor.

Every architecture the Hugging Face backend knows has ``resid_pre`` (a block's input), ``resid_post`` (its
output), ``embed`` (block 0's input: the embeddings) and ``mlp_post`` (the down-projection's input). The other
kinds are placed per model type in :data:`HF_SITES`; elsewhere asking for them raises a clear error naming what is
supported. Post-LayerNorm encoders (BERT) have no ``resid_mid``, ``mlp_out`` or ``attn_out`` equal to TL's.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ModelAdapterError
from .hf import HFArchitecture, hf_down_projections, hf_text_model

__all__ = ["HF_SITES", "hf_sites", "hf_site_modules"]

# mlp_in is TL's ln2.hook_normalized: the MLP's LayerNorm input normalised, before its weight and bias ("norm")
_GATED = {"mlp_pre": ("mlp.gate_proj", "out"), "mlp_in": ("post_attention_layernorm", "norm"),
          "mlp_out": ("mlp", "out"),
          "attn_out": ("self_attn", "out"), "attn_z": ("self_attn.o_proj", "in"),
          "resid_mid": ("post_attention_layernorm", "in")}

# model_type -> {hook kind: (module path inside a block, "in" | "out")}
HF_SITES: dict[str, dict[str, tuple[str, str]]] = {
    "gpt2": {"mlp_pre": ("mlp.c_fc", "out"), "mlp_in": ("ln_2", "norm"), "mlp_out": ("mlp", "out"),
             "attn_out": ("attn", "out"), "attn_z": ("attn.c_proj", "in"), "resid_mid": ("ln_2", "in")},
    **{mt: _GATED for mt in ("llama", "mistral", "qwen2", "qwen3")},
    "bert": {"mlp_pre": ("intermediate.dense", "out"), "attn_z": ("attention.output.dense", "in")},
}
_EVERYWHERE = ("mlp_post", "resid_pre", "resid_post", "embed")


def hf_sites(model_type: str) -> list[str]:
    """The hook kinds the Hugging Face backend reads on a model type."""
    return list(_EVERYWHERE) + sorted(HF_SITES.get(model_type, {}))


def _get(root: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def hf_site_modules(model: Any, arch: HFArchitecture, kind: str, layers: Sequence[int]) -> dict[int, tuple[Any, str]]:
    """``{layer: (module, "in" | "out" | "norm")}``: hook the module's first input, its (first) output, or its
    input normalised as the module (a LayerNorm / RMSNorm) normalises it, before its weight and bias."""
    if kind == "mlp_post":
        return {l: (m, "in") for l, m in hf_down_projections(model, layers, arch).items()}
    mt = str(model.config.model_type)
    if kind in ("resid_pre", "embed", "resid_post"):
        path, where = "", "out" if kind == "resid_post" else "in"
    elif kind in HF_SITES.get(mt, {}):
        path, where = HF_SITES[mt][kind]
    else:
        raise ModelAdapterError(f"the Hugging Face backend has no `{kind}` tensor on {mt!r} models; it reads "
                                f"{', '.join(hf_sites(mt))} there (load the model through TransformerLens for "
                                "other hooks)")
    blocks = _get(hf_text_model(model, arch), arch.layers)
    try:
        return {l: (_get(blocks[l], path), where) for l in layers}
    except (AttributeError, IndexError, TypeError) as e:
        raise ModelAdapterError(f"{type(model).__name__} ({mt}) has no `{arch.layers}.<layer>.{path}` module for "
                                f"`{kind}`: {e}") from e
