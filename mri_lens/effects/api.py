"""Ablate or steer some neurons and measure what changes: :func:`ablate`, :func:`steer`, :func:`neuron_effects`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ScanError
from ..model import ModelAdapter, NeuronEdit, as_adapter
from .inputs import Piece, check_neurons, check_scan, pieces_from_scan, pieces_from_texts, random_docs, top_docs
from .measure import measure_edit
from .results import Effect, NeuronEffects

__all__ = ["ablate", "steer", "neuron_effects", "scan_means"]


def scan_means(scan: Any, layer: int, neurons: Sequence[int] | None = None) -> np.ndarray:
    """The scan's mean activation of ``neurons`` (default: every neuron) at model layer ``layer``: ``[n]``
    (over every token the scan counted in its statistics; see the scan's ``meta["bos_excluded_from_stats"]``)."""
    li = scan.layer_index(layer)
    mean = np.asarray(scan.stats.mean[li], dtype=np.float64)
    return mean if neurons is None else mean[list(neurons)]


def _pieces(adapter: ModelAdapter, texts: Any, scan: Any, docs: Sequence[int] | None,
            max_length: int | None) -> tuple[list[Piece], str]:
    if (texts is None) == (docs is None):
        raise ValueError("pass texts (strings or a Corpus), or scan= and docs= (document ids of that scan)")
    if docs is not None:
        if scan is None:
            raise ScanError("docs= names documents of a scan: pass scan= too")
        return pieces_from_scan(adapter, scan, docs), "scan documents"
    return pieces_from_texts(adapter, texts, max_length), "texts"


def _per_neuron(v: Any, n: int, name: str) -> list[float]:
    vals = [float(x) for x in np.atleast_1d(np.asarray(v, dtype=np.float64))]
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n or not np.all(np.isfinite(vals)):
        raise ValueError(f"{name} must be one finite number or one per neuron ({n}), got {v!r}")
    return vals


def ablate(model: Any, layer: int, neurons: int | Sequence[int], texts: Any = None, *, how: str = "zero",
           scan: Any = None, docs: Sequence[int] | None = None, batch_size: int = 8,
           max_length: int | None = None, progress: bool = True) -> Effect:
    """Ablate ``neurons`` of model layer ``layer`` at every position and measure the change, per token.

    Parameters
    ----------
    model: a TransformerLens model (TL 2 / TL 4), an :class:`~mri_lens.HFModel`, or a :class:`ModelAdapter`.
    neurons: one neuron id or several (all edited together).
    texts: strings or a :class:`~mri_lens.Corpus`, tokenised by the adapter (BOS as the adapter's
        ``prepend_bos``); a text longer than ``max_length`` is cut into windows. Or pass ``scan`` and ``docs``
        (document ids) to measure on the scan's own tokens (e.g. :func:`top_docs`, :func:`random_docs`).
    how: ``"zero"`` (set to 0) or ``"mean"`` (set to the neuron's mean over the scan's tokens: needs ``scan``).
    batch_size: sequences per forward (two forwards per batch: clean and ablated; logits ``[batch, pos,
        d_vocab]`` of both are held at once).

    Returns an :class:`Effect`: per-token next-token loss before / after (causal models), or the change of the
    final hidden state (encoders, which predict no next token).
    """
    adapter = as_adapter(model)
    layer, ns = check_neurons(adapter, layer, neurons)
    if how == "zero":
        values = [0.0] * len(ns)
    elif how == "mean":
        if scan is None:
            raise ScanError("how='mean' sets each neuron to its mean over a scan: pass scan=")
        check_scan(adapter, scan)
        values = scan_means(scan, layer, ns).tolist()
    else:
        raise ValueError(f"how must be 'zero' or 'mean', got {how!r}")
    pieces, source = _pieces(adapter, texts, scan, docs, max_length)
    edit = NeuronEdit(tuple(ns), "set", tuple(values))
    return measure_edit(adapter, pieces, layer, edit, how=how, neurons=ns, values=values, batch_size=batch_size,
                        progress=progress, source=source)


def steer(model: Any, layer: int, neurons: int | Sequence[int], texts: Any = None, *, value: Any = None,
          scale: Any = None, add: Any = None, scan: Any = None, docs: Sequence[int] | None = None,
          batch_size: int = 8, max_length: int | None = None, progress: bool = True) -> Effect:
    """Steer ``neurons`` of model layer ``layer`` at every position: set them to ``value``, multiply them by
    ``scale`` or add ``add`` (exactly one; a number, or one per neuron) and measure the change per token, as
    :func:`ablate` does (``scale=1`` and ``add=0`` change nothing)."""
    given = [(k, v) for k, v in (("value", value), ("scale", scale), ("add", add)) if v is not None]
    if len(given) != 1:
        raise ValueError("pass exactly one of value=, scale=, add=")
    adapter = as_adapter(model)
    layer, ns = check_neurons(adapter, layer, neurons)
    kind, v = given[0]
    values = _per_neuron(v, len(ns), kind)
    pieces, source = _pieces(adapter, texts, scan, docs, max_length)
    edit = NeuronEdit(tuple(ns), {"value": "set", "scale": "scale", "add": "add"}[kind], tuple(values))
    return measure_edit(adapter, pieces, layer, edit, how=kind, neurons=ns, values=values, batch_size=batch_size,
                        progress=progress, source=source)


def neuron_effects(model: Any, scan: Any, layer: int, neuron: int, *, how: str = "zero", k: int | None = None,
                   n_random: int = 20, seed: int = 0, batch_size: int = 8, progress: bool = True) -> NeuronEffects:
    """Ablate one neuron on its top examples in ``scan`` (the first ``k``; default all kept) and on ``n_random``
    other scan documents drawn with ``seed``: what the neuron does where it fires, and elsewhere."""
    top = top_docs(scan, layer, [neuron], k)
    rand = random_docs(scan, n_random, seed, exclude=top)
    kw = dict(how=how, scan=scan, batch_size=batch_size, progress=progress)
    return NeuronEffects(layer=int(layer), neuron=int(neuron), top=ablate(model, layer, [neuron], docs=top, **kw),
                         random=ablate(model, layer, [neuron], docs=rand, **kw))
