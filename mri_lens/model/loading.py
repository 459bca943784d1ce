"""Loading models: the installed TransformerLens's own loader (TL 2.x ``HookedTransformer``, TL >= 3
``TransformerBridge``) or a plain Hugging Face model, plus the library versions recorded in saved results."""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from ..version import __version__
from ..errors import ModelAdapterError
from .hf import HFModel

__all__ = ["HUB_ALIASES", "load_model", "library_versions", "tl_major_version"]

# Short names users type in notebooks, mapped to Hugging Face ids for the bridge loader (TL >= 3).
HUB_ALIASES = {
    "gpt2-small": "gpt2",
    "gpt2-medium": "gpt2-medium",
    "pythia-70m": "EleutherAI/pythia-70m",
    "pythia-160m": "EleutherAI/pythia-160m",
    "gelu-1l": "NeelNanda/GELU_1L512W_C4_Code",
    "gelu-2l": "NeelNanda/GELU_2L512W_C4_Code",
    "solu-6l": "NeelNanda/SoLU_6L768W_C4_Code",
}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def tl_major_version() -> int:
    """Major version of the installed TransformerLens (0 when it is not installed)."""
    v = _version("transformer-lens") or _version("transformer_lens")
    return int(v.split(".")[0]) if v else 0


def library_versions() -> dict[str, str | None]:
    """Versions recorded in every saved result."""
    return {
        "mri_lens": __version__,
        "transformer_lens": _version("transformer-lens"),
        "transformers": _version("transformers"),
        "torch": _version("torch"),
    }


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(name_or_dir: str | os.PathLike, *, device: str | None = None, dtype: Any = None,
               backend: str = "transformer_lens", **kwargs: Any) -> Any:
    """Load a TransformerLens model with the installed TL's own loader, or a plain Hugging Face model.

    ``backend="hf"``: an :class:`HFModel` (``transformers.AutoModel`` base model + ``AutoTokenizer``, eval mode),
    scanned with forward pre-hooks on each layer's MLP down-projection; same activations as the TL model, without
    TL's wrapping overhead.

    TL >= 3: ``TransformerBridge.boot_transformers`` (hub names and local Hugging Face directories).
    TL 2.x: ``HookedTransformer.from_pretrained`` for hub names; a local GPT-2-style Hugging Face directory is
    converted with TL's own weight conversion (TL 2 cannot load local directories by name).

    Parameters
    ----------
    name_or_dir: a TL/hub model name (``"gpt2-small"``, ``"pythia-70m"``...) or a local HF-format directory.
    device: ``"cpu"``, ``"cuda"``...; default: CUDA when available (not with ``device_map``).
    dtype: torch dtype (default float32); ``torch.bfloat16`` / ``torch.float16`` load a half-precision model,
        whose activations are still read, and their statistics kept, in float32/float64.
    backend: ``"transformer_lens"`` (default; also ``"tl"``) or ``"hf"``.
    device_map: (keyword, in ``kwargs``) for a model larger than one GPU: ``"auto"``, ``"balanced"`` or a
        ``{module: device}`` dict, passed to ``from_pretrained`` (``backend="hf"``; needs ``accelerate``) or to
        TL >= 3's ``TransformerBridge.boot_transformers``; the model is then left where the map puts it (no
        ``.to(device)``), and ``device`` must not be given too. TL 2.x takes ``n_devices`` instead.

    A model that cannot be loaded (an unknown name, no network and no cached copy, a broken directory) raises
    :class:`ModelAdapterError` ``cannot load model '<name>': <the first line of the loader's error>`` (the loader's
    error is its ``__cause__``); other exceptions (bugs) propagate unchanged.
    """
    if backend not in ("transformer_lens", "tl", "hf"):
        raise ValueError(f"backend must be 'transformer_lens' or 'hf', got {backend!r}")
    if kwargs.get("device_map") is not None:
        if device is not None:
            raise ValueError("pass device or device_map, not both (device_map places the model itself)")
        if backend != "hf" and tl_major_version() < 3:
            raise ModelAdapterError("TransformerLens 2.x takes no device_map; pass n_devices=... (TL 2's "
                                    "HookedTransformer.from_pretrained) or load with backend='hf'")
    try:
        return _load_model(name_or_dir, device=device, dtype=dtype, backend=backend, **kwargs)
    except ModelAdapterError:
        raise
    except _load_errors() as e:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ModelAdapterError(f"cannot load model {os.fspath(name_or_dir)!r}: {first}") from e


def _load_errors() -> tuple[type[BaseException], ...]:
    """What the loaders raise for a model that cannot be loaded: OSError (transformers' "not a valid model
    identifier" / "couldn't connect", the hub's HTTP, offline-mode and missing-entry errors, missing files),
    ValueError (unrecognised configs, the hub's repo-id validation), and the hub's and httpx's errors that are
    neither (a missing entry, a failed HTTP request)."""
    errors: list[type[BaseException]] = [OSError, ValueError]
    try:
        from huggingface_hub import errors as hub

        errors += [c for c in (getattr(hub, "EntryNotFoundError", None), getattr(hub, "HTTPError", None))
                   if isinstance(c, type) and issubclass(c, Exception)]
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def _load_model(name_or_dir: str | os.PathLike, *, device: str | None, dtype: Any, backend: str, **kwargs: Any) -> Any:
    import torch

    if kwargs.get("device_map") is None:
        device = device or _default_device()
    dtype = dtype or torch.float32
    name = os.fspath(name_or_dir)
    local = os.path.isdir(name)
    if not local and (name.startswith((".", "/", "~")) or os.sep in name and os.path.exists(os.path.dirname(name))):
        if not os.path.exists(os.path.expanduser(name)):
            raise ModelAdapterError(f"no model directory at {name!r}")
    if backend == "hf":
        return _load_hf(name, local=local, device=device, dtype=dtype, **kwargs)
    major = tl_major_version()
    if major == 0:
        raise ModelAdapterError("TransformerLens is not installed: pip install transformer-lens")
    if major >= 3:
        from transformer_lens.model_bridge import TransformerBridge

        target = name if local else HUB_ALIASES.get(name, name)
        if local:
            if not os.path.exists(os.path.join(name, "config.json")):
                raise ModelAdapterError(f"{name!r} is not a Hugging Face model directory (no config.json)")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return TransformerBridge.boot_transformers(target, device=device, dtype=dtype, **kwargs)
    if local:
        return _load_local_tl2(name, device=device, dtype=dtype)
    from transformer_lens import HookedTransformer

    return HookedTransformer.from_pretrained(name, device=device, dtype=dtype, **kwargs)


def _load_hf(name: str, *, local: bool, device: str | None, dtype: Any, **kwargs: Any) -> HFModel:
    """A plain Hugging Face base model and its tokenizer (local directories offline). With a ``device_map`` in
    ``kwargs`` (``device`` is then None) the model stays where ``from_pretrained`` placed it."""
    from transformers import AutoModel, AutoTokenizer

    target = name if local else HUB_ALIASES.get(name, name)
    if local:
        if not os.path.exists(os.path.join(name, "config.json")):
            raise ModelAdapterError(f"{name!r} is not a Hugging Face model directory (no config.json)")
        kwargs.setdefault("local_files_only", True)
    dkw = {"dtype": dtype} if _accepts_dtype() else {"torch_dtype": dtype}
    model = AutoModel.from_pretrained(target, **dkw, **kwargs)
    tok = AutoTokenizer.from_pretrained(target, local_files_only=kwargs.get("local_files_only", False))
    if kwargs.get("device_map") is None:  # a device_map already placed it (possibly over several devices)
        model.to(device)
    model.eval()
    return HFModel(model, tok)


def _load_local_tl2(path: str, *, device: str, dtype: Any) -> Any:
    """TL 2.x: build a HookedTransformer from a local GPT-2-style HF directory (TL's own weight conversion)."""
    import json

    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    with open(os.path.join(path, "config.json")) as f:
        hf_cfg = json.load(f)
    arch = (hf_cfg.get("architectures") or ["?"])[0]
    if hf_cfg.get("model_type") == "bert":
        return _load_local_bert_tl2(path, hf_cfg, device=device, dtype=dtype)
    if arch != "GPT2LMHeadModel":
        raise ModelAdapterError(
            f"TransformerLens 2.x cannot load a local {arch} directory; upgrade to transformer-lens>=3 "
            "(TransformerBridge) or load a hub model by name")
    n_embd, n_head = hf_cfg["n_embd"], hf_cfg["n_head"]
    cfg = HookedTransformerConfig(
        n_layers=hf_cfg["n_layer"], d_model=n_embd, n_heads=n_head, d_head=n_embd // n_head,
        d_mlp=hf_cfg.get("n_inner") or 4 * n_embd, d_vocab=hf_cfg["vocab_size"], n_ctx=hf_cfg["n_positions"],
        act_fn=hf_cfg.get("activation_function", "gelu_new"), normalization_type="LN",
        original_architecture="GPT2LMHeadModel", default_prepend_bos=True, model_name=os.path.basename(path),
        eps=hf_cfg.get("layer_norm_epsilon", 1e-5), device=device, dtype=dtype,
    )
    # from_pretrained (not the bare constructor) records name_or_path, which TL 2 needs to re-load it with BOS.
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype) if _accepts_dtype() else \
        AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype)
    model = HookedTransformer(cfg, tokenizer=tok, default_padding_side="right")
    model.load_and_process_state_dict(convert_gpt2_weights(hf_model, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False, refactor_factored_attn_matrices=False)
    model.to(device)
    model.eval()
    return model


def _load_local_bert_tl2(path: str, hf_cfg: dict, *, device: str, dtype: Any) -> Any:
    """TL 2.x: a local BERT directory (e.g. MiniLM-L6) as a ``HookedEncoder``, with TL's own weight conversion.

    The checkpoint may lack the masked-LM head (sentence-transformers models do); TL's converter wants one, so
    the heads come from a freshly initialised ``BertForPreTraining``. They never affect MLP activations.
    """
    import torch
    from transformers import AutoTokenizer, BertForPreTraining
    from transformer_lens import HookedEncoder, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_bert_weights

    hidden, heads = hf_cfg["hidden_size"], hf_cfg["num_attention_heads"]
    cfg = HookedTransformerConfig(
        d_model=hidden, d_head=hidden // heads, n_heads=heads, d_mlp=hf_cfg["intermediate_size"],
        n_layers=hf_cfg["num_hidden_layers"], n_ctx=hf_cfg["max_position_embeddings"],
        eps=hf_cfg.get("layer_norm_eps", 1e-12), d_vocab=hf_cfg["vocab_size"], act_fn=hf_cfg.get("hidden_act", "gelu"),
        attention_dir="bidirectional", original_architecture="BertForMaskedLM", model_name=os.path.basename(path),
        device=device, dtype=dtype,
    )
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(0)  # the unused heads are initialised deterministically
        hf_model = BertForPreTraining.from_pretrained(path)
    model = HookedEncoder(cfg, tokenizer=AutoTokenizer.from_pretrained(path))
    model.load_state_dict(convert_bert_weights(hf_model, cfg), strict=False)
    model.to(device)
    model.eval()
    return model


def _accepts_dtype() -> bool:
    """transformers takes ``dtype=`` from 4.56 on (and warns about ``torch_dtype=`` from then on)."""
    parts = (_version("transformers") or "0").split(".")
    try:
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0) >= (4, 56)
    except ValueError:
        return True
