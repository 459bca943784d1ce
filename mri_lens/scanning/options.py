"""What a scan computes (:class:`ScanOptions`), fixed and checked before any model loads.

Every field changes the result, so every field is recorded in the scan's plan and its hash (a rerun with other
options is another scan); what only changes how or where the work runs (the engine, the progress bar, the output
directory) is not an option. Each field is checked by type and range in ``__post_init__``: a bad value raises one
``ValueError`` naming the field, before any model is loaded or run.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import numpy as np

__all__ = ["ScanOptions", "POOLINGS", "DEFAULT_TOP_K", "DEFAULT_SHARD_TOKENS", "DEFAULT_SHARD_BYTES",
           "resolve_options"]

POOLINGS = ("mean", "max", "min", "last", "first")
OVERFLOWS = ("truncate", "windows", "error")
DTYPES = ("float32", "float16")
CAPTURE_BACKENDS = ("transformer_lens", "tl", "hf")  # the names mri_lens.model.capture.get_backend knows
DEFAULT_TOP_K = 20
DEFAULT_SHARD_TOKENS = 1 << 20  # counted tokens per shard when out= is given (a kill loses at most one shard)
DEFAULT_SHARD_BYTES = 256 << 20  # pooled values a worker holds while it computes a shard (then they go to disk)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _int(name: str, v: Any, minimum: int, *, optional: bool = False, what: str = "") -> int | None:
    if v is None and optional:
        return None
    if not _is_int(v) or v < minimum:
        need = what or ("a positive integer" if minimum == 1 else f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {need}{' or None' if optional else ''}, got {v!r}")
    return int(v)


def _choice(name: str, v: Any, allowed: Sequence[str]) -> str:
    if not isinstance(v, str) or v not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got {v!r}")
    return v


def _bool(name: str, v: Any, *, optional: bool = False) -> bool | None:
    if v is None and optional:
        return None
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False{' or None' if optional else ''}, got {v!r}")
    return bool(v)


def _layers(v: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    items = [v] if _is_int(v) else v
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise ValueError(f"layers must be None (every layer), a layer number or a list of layer numbers, got {v!r}")
    items = list(items)
    if not items or not all(_is_int(x) and x >= 0 for x in items):
        raise ValueError(f"layers must be non-negative layer numbers (at least one), got {v!r}")
    return tuple(sorted({int(x) for x in items}))


def _poolings(v: Any) -> tuple[str, ...]:
    items = (v,) if isinstance(v, str) else v
    if not hasattr(items, "__iter__"):
        raise ValueError(f"pooling must be a pooling name or a list of them, among {POOLINGS}, got {v!r}")
    items = tuple(items)
    for p in items:
        if not isinstance(p, str) or p not in POOLINGS:
            raise ValueError(f"unknown pooling {p!r}; choose from {POOLINGS}")
    if not items:
        raise ValueError("pooling must name at least one pooling")
    if len(set(items)) != len(items):
        raise ValueError(f"pooling names a pooling twice: {items}")
    return items


def _units(v: Any):
    """``None`` (MLP neurons) or a :class:`~mri_lens.model.units.UnitSet` (strings resolved; SAE directories read)."""
    from ..model.units import as_units

    if v is None:
        return None
    return None if v is None else as_units(v)


def _edges(v: Any) -> tuple[float, ...] | None:
    if v is None:
        return None
    try:
        edges = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"histogram_edges must be a list of numbers, got {v!r:.80}") from None
    if edges.ndim != 1 or len(edges) < 1 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
        raise ValueError("histogram_edges must be finite and strictly increasing (as float32), at least one edge")
    return tuple(float(x) for x in edges)


@dataclass(frozen=True)
class ScanOptions:
    """What a scan computes. Frozen; every field is validated on construction (one ``ValueError`` naming it).

    Parameters
    ----------
    layers: model layers to capture: ``None`` (default: all), one layer number or a list (stored sorted, each
        once). Capture stops after the last one.
    batch_size: sequences per forward (positive integer); sequences are sorted by length so batches hold similar
        lengths.
    max_batch_tokens: at most this many padded tokens per forward (default 2048; ``None``: no limit). Bounds the
        model's own transient memory whatever the text lengths; raise it on a GPU.
    max_length: tokens per sequence, special tokens included (default and maximum: the model's context).
    overflow: texts longer than ``max_length``: ``"truncate"`` (default; one warning says how many),
        ``"windows"`` (consecutive windows, each with its own BOS; pooled values and top-k span all windows of a
        document) or ``"error"``.
    pooling: per-document poolings to keep, among ``"mean"``, ``"max"``, ``"min"``, ``"last"``, ``"first"`` (one
        name or a list; default ``("mean", "max")``). ``"last"`` and ``"first"`` are the activations at the
        document's last and first counted token (``"first"``: an encoder's [CLS]; a causal model's first token
        after BOS, or BOS itself with ``include_bos=True``).
    top_k: examples kept per neuron in the top (by a document's max) and bottom (by its min) lists (default 20).
        At most the corpus's number of documents are kept: a larger value is capped (with a warning when it is
        above the default).
    dtype: storage dtype of pooled arrays, ``"float32"`` (default) or ``"float16"``; statistics are always
        float64/float32.
    include_bos: count the BOS position of causal models in statistics, pooling and top-k (default False: its
        activation is the same for every document and would crowd top-k lists with ties). Encoder models'
        [CLS]/[SEP] are contextual and always counted.
    prepend_bos: causal models: put BOS before every text (``None``: when the tokenizer has one); see
        :class:`~mri_lens.model.adapter.ModelAdapter`.
    padding_side: ``"right"`` (default) or ``"left"``; the same activations either way (an attention mask is
        always passed).
    histogram_edges: finite, strictly increasing bin edges of the per-neuron histograms (default ``None``:
        :func:`~mri_lens.scanning.histogram.default_histogram_edges`).
    backend: capture backend, ``"transformer_lens"`` (also ``"tl"``) or ``"hf"`` (default ``None``: ``"hf"`` for a
        plain Hugging Face model, else TransformerLens hooks).
    units: what each layer's activations are (default ``None``: the MLP neurons): a hook kind
        (``"resid_post"``, ``"attn_z"``...), a TransformerLens hook template, ``"sae:LAYER=DIR"``, or
        ``mri_lens.units.hook/sae/transcoder(...)`` (see :mod:`mri_lens.model.units`). Recorded in the scan and
        its plan (with a fingerprint of any SAE or transcoder weights).
    shard_tokens, shard_bytes: a shard holds at most this many counted tokens and this many bytes of pooled
        values in memory while it is computed (default ``None``: one shard without ``out``; with it
        :data:`DEFAULT_SHARD_TOKENS` and :data:`DEFAULT_SHARD_BYTES`, which bound a worker's memory whatever
        the corpus size). Shards are consecutive batches of the one-process plan, so the result does not depend
        on them (bit for bit but mean/std, see :mod:`mri_lens.scanning.merge`).
    """

    layers: tuple[int, ...] | None = None
    batch_size: int = 32
    max_batch_tokens: int | None = 2048
    max_length: int | None = None
    overflow: str = "truncate"
    pooling: tuple[str, ...] = ("mean", "max")
    top_k: int = DEFAULT_TOP_K
    dtype: str = "float32"
    include_bos: bool = False
    prepend_bos: bool | None = None
    padding_side: str = "right"
    histogram_edges: tuple[float, ...] | None = None
    backend: str | None = None
    shard_tokens: int | None = None
    shard_bytes: int | None = None
    units: Any = None

    def __post_init__(self) -> None:
        checked = {
            "layers": _layers(self.layers),
            "batch_size": _int("batch_size", self.batch_size, 1),
            "max_batch_tokens": _int("max_batch_tokens", self.max_batch_tokens, 1, optional=True),
            "max_length": _int("max_length", self.max_length, 1, optional=True),
            "overflow": _choice("overflow", self.overflow, OVERFLOWS),
            "pooling": _poolings(self.pooling),
            "top_k": _int("top_k", self.top_k, 1),
            "dtype": _choice("dtype", self.dtype, DTYPES),
            "include_bos": _bool("include_bos", self.include_bos),
            "prepend_bos": _bool("prepend_bos", self.prepend_bos, optional=True),
            "padding_side": _choice("padding_side", self.padding_side, ("right", "left")),
            "histogram_edges": _edges(self.histogram_edges),
            "backend": None if self.backend is None else _choice("backend", self.backend, CAPTURE_BACKENDS),
            "shard_tokens": _int("shard_tokens", self.shard_tokens, 1, optional=True),
            "shard_bytes": _int("shard_bytes", self.shard_bytes, 1, optional=True),
            "units": _units(self.units),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def with_shards_for_disk(self) -> "ScanOptions":
        """These options with the default shard bounds of a scan written to disk where neither bound is given."""
        if self.shard_tokens is None and self.shard_bytes is None:
            return replace(self, shard_tokens=DEFAULT_SHARD_TOKENS, shard_bytes=DEFAULT_SHARD_BYTES)
        return self

    def edges(self) -> np.ndarray:
        """The histogram edges as float32 ``[n_edges]`` (the default ones when not given)."""
        from .histogram import default_histogram_edges

        return np.asarray(default_histogram_edges() if self.histogram_edges is None else self.histogram_edges,
                          dtype=np.float32)


_ENGINE_FIELDS = {"device": "LocalEngine(device=...)", "stats": "LocalEngine(stats=...) or RayEngine(stats=...)",
                  **{k: f"RayEngine({k}=...)" for k in ("workers", "address", "gpus_per_worker",
                                                           "threads_per_worker", "max_attempts",
                                                           "connect_timeout_s")}}


def resolve_options(options: ScanOptions | None, overrides: dict[str, Any]) -> ScanOptions:
    """``options`` (default ``ScanOptions()``) with ``overrides`` (ScanOptions fields) applied and validated.
    An override that is not a field raises ``TypeError`` naming it."""
    if options is None:
        options = ScanOptions()
    elif not isinstance(options, ScanOptions):
        raise TypeError(f"options must be a ScanOptions (or None), got {type(options).__name__}")
    names = {f.name for f in fields(ScanOptions)}
    for key in overrides:
        if key not in names:
            where = _ENGINE_FIELDS.get(key)
            hint = f"; it is a setting of the engine: engine=mri_lens.{where}" if where else \
                f"; scan options are {', '.join(sorted(names))}"
            raise TypeError(f"scan() got an unexpected option {key!r}{hint}")
    return replace(options, **overrides) if overrides else options


def _finite(name: str, v: Any, minimum: float, *, optional: bool = False) -> float | None:
    """A finite number >= ``minimum`` (for the engines' settings)."""
    if v is None and optional:
        return None
    if not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_)) or not math.isfinite(v) or v < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}{' or None' if optional else ''}, got {v!r}")
    return float(v)
