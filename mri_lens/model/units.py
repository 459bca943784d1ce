"""What a scan reads: MLP neurons (the default), another hook point, or SAE / transcoder latents.

>>> import mri_lens as ml
>>> ml.scan(model, corpus, units="resid_post")                          # doctest: +SKIP
>>> ml.scan(model, corpus, units="hidden_states")  # Hugging Face's numbering: 0 = embeddings  # doctest: +SKIP
>>> ml.scan(model, corpus, units=ml.units.hook("blocks.{layer}.attn.hook_z"))   # doctest: +SKIP
>>> ml.scan(model, corpus, units=ml.units.sae({2: "my_sae_dir"}))       # doctest: +SKIP
>>> ml.scan(model, corpus, units=ml.units.transcoder({1: "my_transcoder_dir"}))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

from .sae import ARCHITECTURES, LatentUnits, SAEEncoder, from_spec, read_sae_dir, save_sae_dir
from ..errors import ModelAdapterError
from .unit_base import HOOK_KINDS, HiddenStateUnits, HookUnits, UnitSet, hook_layer

__all__ = ["HOOK_KINDS", "ARCHITECTURES", "UnitSet", "HookUnits", "HiddenStateUnits", "LatentUnits", "SAEEncoder",
           "as_units", "hook", "hidden_states", "neurons", "sae", "transcoder", "read_sae_dir", "save_sae_dir",
           "attach", "recorded", "units_for_scan"]


def neurons() -> HookUnits:
    """The MLP neurons (``blocks.{layer}.mlp.hook_post``): the default."""
    return HookUnits("mlp_post")


def hook(which: str) -> HookUnits:
    """The model's activations at a hook point: a kind of :data:`HOOK_KINDS` (``"resid_post"``) or a
    TransformerLens hook name template with ``{layer}`` (``"blocks.{layer}.attn.hook_z"``)."""
    return HookUnits(which)


def hidden_states() -> HiddenStateUnits:
    """The residual stream numbered as Hugging Face's ``output_hidden_states``: layer 0 the embeddings, layer ``i``
    the output of block ``i - 1`` (``n_layers + 1`` layers, ``d_model`` wide; see :class:`HiddenStateUnits`)."""
    return HiddenStateUnits()


def sae(saes: Mapping[int, Any]) -> LatentUnits:
    """SAE latents: ``{layer: SAELens SAE object or saved SAELens directory}``; each reads its config's hook."""
    return LatentUnits(saes, kind="sae")


def transcoder(transcoders: Mapping[int, Any]) -> LatentUnits:
    """Transcoder latents: ``{layer: transcoder object or directory}``, read from the MLP input of that layer
    (its config's hook), their output directions from the decoder."""
    return LatentUnits(transcoders, kind="transcoder")


def as_units(units: Any) -> UnitSet:
    """A :class:`UnitSet` from ``None`` (MLP neurons), a hook kind or template, ``"hidden_states"``,
    ``"sae:LAYER=DIR"`` / ``"transcoder:LAYER=DIR"`` (the command line's form), or a unit set itself."""
    if units is None:
        return neurons()
    if isinstance(units, UnitSet):
        return units
    if isinstance(units, str) and units.split(":", 1)[0] in ("sae", "transcoder") and ":" in units:
        return from_spec(units)
    if units == HiddenStateUnits.kind:
        return hidden_states()
    if isinstance(units, str):
        return HookUnits(units)
    raise ValueError(f"units must be None, a hook kind ({', '.join(HOOK_KINDS)}), 'hidden_states', a hook name "
                     f"template or mri_lens.units.hook/hidden_states/sae/transcoder(...), got {type(units).__name__}")


def recorded(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The units a scan's meta records (MLP neurons for a scan made before units were recorded)."""
    return dict(meta.get("units") or {"kind": "mlp_post", "unit_noun": "neuron"})


def attach(scan: Any, units: Any) -> Any:
    """Give a scan (loaded from disk) the unit set it was made of, so lenses can recompute its activations:
    SAE and transcoder weights are not saved with a scan, only their fingerprint, which must match. Returns
    ``scan``."""
    unit_set = as_units(units)
    rec = recorded(scan.meta)
    if unit_set.is_default != (rec.get("kind") == "mlp_post") or (
            not unit_set.is_default and unit_set.fingerprint() != rec.get("fingerprint")):
        raise ModelAdapterError(f"these units are not the ones the scan was made of: the scan records "
                                f"{rec.get('kind')!r} units (weights {str(rec.get('fingerprint'))[:12]}...), not "
                                f"{getattr(unit_set, 'kind', '?')!r} (weights {str(unit_set.fingerprint())[:12]}...)")
    scan.unit_set = unit_set
    return scan


def units_for_scan(scan: Any, units: Any = None) -> UnitSet:
    """The unit set of ``scan``: ``units`` (checked against the scan's record), the one the scan was made with or
    :func:`attach`-ed, or rebuilt from the record (hook points). SAE latents of a scan loaded from disk need their
    SAEs again: ``mri_lens.units.attach(scan, mri_lens.units.sae({...}))``."""
    if units is not None:
        return attach(scan, units).unit_set
    own = getattr(scan, "unit_set", None)
    if own is not None:
        return own
    rec = recorded(scan.meta)
    kind = rec.get("kind")
    if kind in HOOK_KINDS:
        return HookUnits(kind)
    if kind == HiddenStateUnits.kind:
        return hidden_states()
    if kind == "hook" and rec.get("hooks"):
        template, _ = hook_layer(next(iter(rec["hooks"].values())))
        return HookUnits(template)
    raise ModelAdapterError(f"this scan is of {kind} latents, whose weights are not saved with it: give them back "
                            f"with mri_lens.units.attach(scan, mri_lens.units.{kind}({{layer: SAE or directory}}))")
