"""Model access: the one door every other part of mri_lens uses to reach a model.

It owns the :class:`ModelAdapter` (TransformerLens 2.x ``HookedTransformer``, 4.x ``TransformerBridge`` and plain
Hugging Face models behind one interface: layers, hooks, tokenizer, special tokens, output weights), the capture
backends that read ``blocks.{l}.mlp.hook_post`` activations ``[batch, pos, d_mlp]`` from a forward pass (or any
other unit set: hook points, SAE and transcoder latents, :mod:`.units`), the Hugging Face architectures table
(:mod:`.hf`, :mod:`.hf_sites`), model loading by name or directory (:mod:`.loading`), byte-correct
token strings for display (:mod:`.tokens`) and the bundled models that need no download (:mod:`.bundled`).
It imports nothing from mri_lens but :mod:`mri_lens.errors`.
"""

from . import bundled
from .adapter import ModelAdapter, as_adapter
from .bundled import ModelSpec, load_named_model
from .capture import (CaptureBackend, HuggingFaceBackend, TransformerLensBackend, get_backend,
                      scan_token_activations, token_activations)
from .hf import HFModel
from .interventions import NeuronEdit, edited_forward, final_hook_name
from .loading import library_versions, load_model
from .tokens import display_tokens
from . import units

__all__ = ["bundled", "ModelAdapter", "as_adapter", "ModelSpec", "load_named_model", "CaptureBackend",
           "HuggingFaceBackend", "TransformerLensBackend", "get_backend", "scan_token_activations",
           "token_activations", "HFModel", "library_versions", "load_model", "display_tokens",
           "NeuronEdit", "edited_forward", "final_hook_name", "units"]
