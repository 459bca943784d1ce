"""Plain Hugging Face models: where each architecture keeps its MLP neurons, and :class:`HFModel`.

A leaf module (imports nothing else of mri_lens but its errors): the adapter, the capture backends and the loaders
all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NamedTuple, Sequence

from ..errors import ModelAdapterError

__all__ = ["HFArchitecture", "HF_ARCHITECTURES", "HF_FALLBACK_BLOCK_LISTS", "HF_FALLBACK_DOWN_PROJECTIONS", "HFModel",
           "hf_architecture", "hf_down_projections", "hf_text_model", "down_projection_weight"]


class HFArchitecture(NamedTuple):
    """Where a Hugging Face architecture keeps its MLP down-projections, relative to ``model.base_model``."""

    layers: str  # dotted path of the block list (relative to the text model, see `text_model`)
    down_proj: str  # dotted path of the down-projection inside a block; its input is TL's mlp.hook_post
    causal: bool  # False for encoders (BERT): [CLS] ... [SEP], bidirectional attention
    text_model: str = ""  # dotted path from base_model to the module that is run ("": base_model itself)
    fallback: bool = False  # True when placed by the generic fallback rather than HF_ARCHITECTURES


# config.model_type -> module paths. The down-projection input equals TL's blocks.{l}.mlp.hook_post on each.
HF_ARCHITECTURES: dict[str, HFArchitecture] = {
    "gpt2": HFArchitecture("h", "mlp.c_proj", True),
    "gpt_neox": HFArchitecture("layers", "mlp.dense_4h_to_h", True),
    "gptj": HFArchitecture("h", "mlp.fc_out", True),
    "llama": HFArchitecture("layers", "mlp.down_proj", True),
    "mistral": HFArchitecture("layers", "mlp.down_proj", True),
    "qwen2": HFArchitecture("layers", "mlp.down_proj", True),
    "qwen3": HFArchitecture("layers", "mlp.down_proj", True),
    "gemma": HFArchitecture("layers", "mlp.down_proj", True),
    "gemma2": HFArchitecture("layers", "mlp.down_proj", True),
    "gemma3_text": HFArchitecture("layers", "mlp.down_proj", True),
    # the multimodal Gemma 3 (Gemma3Model): only its language model runs; the vision tower never does
    "gemma3": HFArchitecture("layers", "mlp.down_proj", True, text_model="language_model"),
    "phi3": HFArchitecture("layers", "mlp.down_proj", True),
    "olmo2": HFArchitecture("layers", "mlp.down_proj", True),
    "bert": HFArchitecture("encoder.layer", "output.dense", False),
}

# The generic fallback for a model_type not in HF_ARCHITECTURES (a decoder-only causal LM): the block lists it looks
# for under base_model, and the down-projections it looks for in each block. A model is placed when exactly one
# (block list, down-projection) pair fits: a block list of num_hidden_layers blocks, each having exactly one of
# these modules (a 2-D weight). Each is the second linear map of a dense MLP, whose input is the MLP neuron.
HF_FALLBACK_BLOCK_LISTS = ("layers", "h", "blocks", "decoder.layers", "transformer.h", "model.layers",
                           "language_model.layers")
HF_FALLBACK_DOWN_PROJECTIONS = ("mlp.down_proj", "mlp.c_proj", "mlp.fc_out", "mlp.dense_4h_to_h", "mlp.fc2")

# config attributes that count a mixture-of-experts model's experts (Mixtral, Qwen-MoE, DeepSeek, OLMoE, DBRX...)
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "n_experts")
_MOE_MODULES = ("mlp.experts", "block_sparse_moe", "feed_forward.experts")


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    try:
        return get() if callable(get) else config
    except Exception:  # noqa: BLE001 - an unusual config: its own attributes
        return config


def config_experts(config: Any) -> tuple[str, int] | None:
    """``(attribute, number of experts)`` when a (Hugging Face or TransformerLens) config describes a
    mixture-of-experts model, else ``None``."""
    for cfg in (config, _text_config(config), getattr(config, "ffn_config", None)):
        if cfg is None:
            continue
        for key in _EXPERT_KEYS:
            v = getattr(cfg, key, None)
            if isinstance(v, int) and not isinstance(v, bool) and v > 1:
                return key, v
    return None


def _moe_error(what: str, detail: str) -> ModelAdapterError:
    return ModelAdapterError(
        f"{what} is a mixture-of-experts model ({detail}): each block routes every token to a few of several "
        "expert MLPs, so there is no single MLP down-projection whose input is the block's neurons (the neuron is "
        "per expert). mri_lens scans dense MLPs only")


def _is_model(obj: Any) -> bool:
    return getattr(obj, "config", None) is not None and hasattr(obj, "base_model")


def _get_path(root: Any, path: str) -> Any:
    obj = root
    if not path:
        return obj
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _try_path(root: Any, path: str) -> Any:
    try:
        return _get_path(root, path)
    except (AttributeError, IndexError, TypeError, KeyError):
        return None


def _is_down_projection(obj: Any) -> bool:
    w = getattr(obj, "weight", None)
    return callable(getattr(obj, "register_forward_pre_hook", None)) and getattr(w, "dim", lambda: 0)() == 2


def _unknown(mt: Any, why: str) -> ModelAdapterError:
    return ModelAdapterError(
        f"the Hugging Face capture backend does not know the architecture {mt!r}; supported model types: "
        f"{', '.join(sorted(HF_ARCHITECTURES))}; {why}. Load the model through TransformerLens instead "
        "(mri_lens.load_model(name) without backend='hf')")


def _fallback(model: Any, mt: Any) -> HFArchitecture:
    """The generic fallback (see :data:`HF_FALLBACK_BLOCK_LISTS`): place an unknown decoder-only causal LM."""
    import torch

    config = model.config
    tcfg = _text_config(config)
    rule = (f"the generic fallback looks under base_model for a block list ({' / '.join(HF_FALLBACK_BLOCK_LISTS)}) "
            f"whose blocks each have exactly one of {' / '.join(HF_FALLBACK_DOWN_PROJECTIONS)}")
    if getattr(config, "is_encoder_decoder", False) or getattr(tcfg, "is_encoder_decoder", False):
        raise _unknown(mt, f"{rule}, for decoder-only models; this is an encoder-decoder model")
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - a transformers without the auto mappings
        CONFIG_MAPPING_NAMES, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES = {}, {}
    if mt in CONFIG_MAPPING_NAMES and mt not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        # a transformers architecture with no causal-LM head: an encoder or a vision model (CLIP, SigLIP...)
        raise _unknown(mt, f"{rule}, for causal language models; transformers has no causal LM of this type")
    base = model.base_model
    n_layers = getattr(tcfg, "num_hidden_layers", None)
    found: list[tuple[str, str]] = []
    notes: list[str] = []
    seen_lists: set[int] = set()
    for lp in HF_FALLBACK_BLOCK_LISTS:
        obj = _try_path(base, lp)
        if not isinstance(obj, torch.nn.ModuleList) or id(obj) in seen_lists:
            continue
        seen_lists.add(id(obj))
        blocks = list(obj)
        if not blocks or (isinstance(n_layers, int) and len(blocks) != n_layers):
            notes.append(f"`{lp}` has {len(blocks)} entries, not num_hidden_layers={n_layers}")
            continue
        for b in blocks:
            for mp in _MOE_MODULES:
                if _try_path(b, mp) is not None:
                    raise _moe_error(f"{type(model).__name__} ({mt})", f"its blocks have `{lp}.<layer>.{mp}`")
        per_block = [[dp for dp in HF_FALLBACK_DOWN_PROJECTIONS if _is_down_projection(_try_path(b, dp))]
                     for b in blocks]
        first = per_block[0]
        if len(first) == 1 and all(p == first for p in per_block):
            found.append((lp, first[0]))
        elif not first:
            notes.append(f"the blocks of `{lp}` have none of them")
        else:
            notes.append(f"the blocks of `{lp}` have {', '.join(sorted({p for ps in per_block for p in ps}))} "
                         "(not exactly one, the same in every block)")
    if len(found) == 1:
        return HFArchitecture(found[0][0], found[0][1], True, fallback=True)
    if found:
        notes.append("several fit: " + ", ".join(f"`{lp}.<layer>.{dp}`" for lp, dp in found))
    elif not notes:
        notes.append("none of these block lists exists")
    raise _unknown(mt, f"{rule}: {'; '.join(notes)}")


def hf_architecture(model_or_config: Any) -> HFArchitecture:
    """Where a ``transformers`` model keeps its MLP down-projections; a clear error where it cannot say.

    Given a config, its :data:`HF_ARCHITECTURES` entry. Given a model, also the generic fallback for a model type
    not in the table: a decoder-only causal LM whose blocks (:data:`HF_FALLBACK_BLOCK_LISTS` under
    ``base_model``) each have exactly one of :data:`HF_FALLBACK_DOWN_PROJECTIONS`. Mixture-of-experts models
    (several expert MLPs per block, no single down-projection: the neuron is per expert) are refused.
    """
    model = model_or_config if _is_model(model_or_config) else None
    config = model.config if model is not None else model_or_config
    mt = getattr(config, "model_type", None)
    moe = config_experts(config)
    if moe is not None:
        raise _moe_error(f"the Hugging Face model {mt!r}", f"{moe[0]}={moe[1]}")
    if mt in HF_ARCHITECTURES:
        return HF_ARCHITECTURES[mt]
    if model is None:
        raise _unknown(mt, "the generic fallback for other decoder-only models needs the model, not its config")
    return _fallback(model, mt)


def hf_text_model(model: Any, arch: HFArchitecture | None = None) -> Any:
    """The module a scan runs: ``model.base_model``, or its language model for a multimodal model (Gemma 3)."""
    arch = arch or hf_architecture(model)
    root = model.base_model
    if arch.text_model:
        root = _try_path(root, arch.text_model)
        if root is None:
            raise ModelAdapterError(
                f"{type(model).__name__} ({model.config.model_type}) has no language model at "
                f"`base_model.{arch.text_model}`; load its text model (e.g. AutoModelForCausalLM) instead")
        inner = getattr(root, "base_model", root)  # a text model with a head: its own base model
        root = inner if inner is not None else root
    return root


def hf_down_projections(model: Any, layers: Sequence[int], arch: HFArchitecture | None = None) -> dict[int, Any]:
    """``{layer: down-projection module}`` of a plain ``transformers`` model (paths: :func:`hf_architecture`)."""
    arch = arch or hf_architecture(model)
    base = hf_text_model(model, arch)
    try:
        blocks = _get_path(base, arch.layers)
        return {l: _get_path(blocks[l], arch.down_proj) for l in layers}
    except (AttributeError, IndexError, TypeError) as e:
        raise ModelAdapterError(f"{type(model).__name__} ({model.config.model_type}) has no "
                                f"`{arch.layers}.<layer>.{arch.down_proj}` module: {e}") from e


def down_projection_weight(module: Any):
    """The weight of a down-projection module as ``[d_mlp, d_model]`` (a torch tensor, no copy).

    GPT-2's ``Conv1D`` stores ``[in, out]`` = ``[d_mlp, d_model]``; ``nn.Linear`` stores ``[out, in]``.
    """
    w = module.weight
    return w if type(module).__name__ == "Conv1D" else w.T


def _input_width(module: Any) -> int | None:
    """A down-projection's input width: ``in_features`` (``nn.Linear``, also quantized), ``Conv1D``'s ``nx``."""
    for attr in ("in_features", "nx"):
        v = getattr(module, attr, None)
        if isinstance(v, int):
            return v
    w = getattr(module, "weight", None)
    return int(down_projection_weight(module).shape[0]) if getattr(w, "dim", lambda: 0)() == 2 else None


def _model_devices(model: Any) -> set[str]:
    """The devices a model's ``device_map`` spreads it over (empty without one)."""
    dm = getattr(model, "hf_device_map", None) or {}
    return {str(v) for v in dm.values()}


@dataclass
class HFModel:
    """A plain Hugging Face ``transformers`` model plus its tokenizer, scanned without TransformerLens.

    Captured with :class:`~mri_lens.model.capture.HuggingFaceBackend`: forward pre-hooks on each layer's MLP
    down-projection, whose input equals TL's ``blocks.{layer}.mlp.hook_post`` on the supported architectures
    (:data:`HF_ARCHITECTURES`, or the generic fallback of :func:`hf_architecture`). Tokenisation, BOS and padding
    are the adapter's, exactly as for a TL model, so both backends see the same tokens and masks. The model may
    be float16/bfloat16 (activations are read as float32) and spread over devices with a ``device_map``
    (tokens go to the input embedding's device).

    Parameters
    ----------
    model: a ``transformers.PreTrainedModel`` (a base model or one with a head: only ``model.base_model`` runs,
        or, for a multimodal model, its language model).
    tokenizer: its tokenizer (a fast tokenizer keeps token display exact).
    """

    model: Any
    tokenizer: Any
    cfg: Any = field(init=False, repr=False)
    arch: HFArchitecture = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not _is_model(self.model):
            raise ModelAdapterError(f"{type(self.model).__name__} is not a transformers PreTrainedModel")
        if self.tokenizer is None:
            raise ModelAdapterError("HFModel needs a tokenizer")
        config = self.model.config
        self.arch = arch = hf_architecture(self.model)  # raises for an architecture it cannot place
        tcfg = _text_config(config)  # a multimodal config's language-model config
        n_layers = int(tcfg.num_hidden_layers)
        down = hf_down_projections(self.model, [0], arch)[0]  # raises when the module is missing
        n_ctx = getattr(tcfg, "n_positions", None) or getattr(tcfg, "max_position_embeddings", None) or 0
        d_mlp = getattr(tcfg, "n_inner", None) or getattr(tcfg, "intermediate_size", None) \
            or getattr(tcfg, "ffn_dim", None)
        if d_mlp is None and getattr(tcfg, "n_embd", None):  # GPT-2, GPT-J: n_inner=None means 4 * n_embd
            d_mlp = 4 * tcfg.n_embd
        width = _input_width(down)  # the down-projection's input width is the neuron count
        if width is not None and (d_mlp is None or int(d_mlp) != width):
            d_mlp = width  # the module is the truth (a config that names its MLP width otherwise)
        if d_mlp is None:
            raise ModelAdapterError(f"cannot tell the MLP width of the {type(self.model).__name__}")
        arch_names = getattr(config, "architectures", None) or [type(self.model).__name__]
        # TL-like facts read by ModelAdapter; attention_dir distinguishes encoders (BERT) from causal models.
        self.cfg = SimpleNamespace(
            n_layers=n_layers, d_mlp=int(d_mlp), n_ctx=int(n_ctx),
            attention_dir="causal" if arch.causal else "bidirectional",
            model_name=str(getattr(config, "name_or_path", "") or getattr(config, "_name_or_path", "") or ""),
            original_architecture=str(arch_names[0]), model_type=str(config.model_type))

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any = None) -> "HFModel":
        """Wrap a bare ``PreTrainedModel``; without ``tokenizer`` it is loaded from ``model.name_or_path``."""
        if tokenizer is None:
            if _is_model(model):
                hf_architecture(model)  # an architecture it cannot scan is refused before any tokenizer is loaded
            name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
            try:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(name)
            except Exception as e:  # noqa: BLE001 - any loader failure means: ask the user for the tokenizer
                raise ModelAdapterError(
                    f"could not load a tokenizer for the {type(model).__name__} ({name!r}): {e}; "
                    "pass mri_lens.HFModel(model, tokenizer)") from e
        return cls(model, tokenizer)

    @property
    def model_class(self) -> str:
        return type(self.model).__name__

    @property
    def text_model(self) -> Any:
        """The module a scan runs (``model.base_model``, or a multimodal model's language model)."""
        return hf_text_model(self.model, self.arch)

    @property
    def input_device(self):
        """Where input tokens go: the input embedding's device (under a ``device_map`` not necessarily that of
        the model's first parameter)."""
        import torch

        try:
            emb = self.model.get_input_embeddings()
        except (AttributeError, NotImplementedError, TypeError):
            emb = None
        # an embedding offloaded by accelerate (CPU/disk device_map) runs on its hook's execution device
        dev = getattr(getattr(emb, "_hf_hook", None), "execution_device", None)
        if dev is not None:
            return torch.device(dev)
        w = getattr(emb, "weight", None)
        if w is not None:
            return w.device
        try:
            return next(self.model.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def parameters(self):
        return self.model.parameters()

    def to(self, device: Any) -> "HFModel":
        devices = _model_devices(self.model)
        if len(devices) > 1:
            raise ModelAdapterError(
                f"the {type(self.model).__name__} is spread over {sorted(devices)} by its device_map; it cannot be "
                "moved to one device (scan it where it is, without device=...)")
        self.model.to(device)
        return self

    def eval(self) -> "HFModel":
        self.model.eval()
        return self
