"""What a scan reads: MLP neurons (the default), another hook point, or SAE / transcoder latents.

>>> import mri_lens as ml
>>> ml.scan(model, corpus, units="resid_post")                          # doctest: +SKIP
>>> ml.scan(model, corpus, units=ml.units.hook("blocks.{layer}.attn.hook_z"))   # doctest: +SKIP
>>> ml.scan(model, corpus, units=ml.units.sae({2: "my_sae_dir"}))       # doctest: +SKIP
>>> ml.scan(model, corpus, units=ml.units.transcoder({1: "my_transcoder_dir"}))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

from .sae import ARCHITECTURES, LatentUnits, SAEEncoder, from_spec, read_sae_dir, save_sae_dir
from .unit_base import HOOK_KINDS, HookUnits, UnitSet

__all__ = ["HOOK_KINDS", "ARCHITECTURES", "UnitSet", "HookUnits", "LatentUnits", "SAEEncoder", "as_units", "hook",
           "neurons", "sae", "transcoder", "read_sae_dir", "save_sae_dir"]


def neurons() -> HookUnits:
    """The MLP neurons (``blocks.{layer}.mlp.hook_post``): the default."""
    return HookUnits("mlp_post")


def hook(which: str) -> HookUnits:
    """The model's activations at a hook point: a kind of :data:`HOOK_KINDS` (``"resid_post"``) or a
    TransformerLens hook name template with ``{layer}`` (``"blocks.{layer}.attn.hook_z"``)."""
    return HookUnits(which)


def sae(saes: Mapping[int, Any]) -> LatentUnits:
    """SAE latents: ``{layer: SAELens SAE object or saved SAELens directory}``; each reads its config's hook."""
    return LatentUnits(saes, kind="sae")


def transcoder(transcoders: Mapping[int, Any]) -> LatentUnits:
    """Transcoder latents: ``{layer: transcoder object or directory}``, read from the MLP input of that layer
    (its config's hook), their output directions from the decoder."""
    return LatentUnits(transcoders, kind="transcoder")


def as_units(units: Any) -> UnitSet:
    """A :class:`UnitSet` from ``None`` (MLP neurons), a hook kind or template, ``"sae:LAYER=DIR"`` /
    ``"transcoder:LAYER=DIR"`` (the command line's form), or a unit set itself."""
    if units is None:
        return neurons()
    if isinstance(units, UnitSet):
        return units
    if isinstance(units, str) and units.split(":", 1)[0] in ("sae", "transcoder") and ":" in units:
        return from_spec(units)
    if isinstance(units, str):
        return HookUnits(units)
    raise ValueError(f"units must be None, a hook kind ({', '.join(HOOK_KINDS)}), a hook name template or "
                     f"mri_lens.units.hook/sae/transcoder(...), got {type(units).__name__}")
