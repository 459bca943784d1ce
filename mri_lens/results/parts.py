"""The partial scan of one shard (:class:`ScanPart`): what :func:`mri_lens.scanning.shard.run_shard` returns, what a
sharded run saves as it goes (one directory per finished shard, written atomically) and what the merge combines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ScanFileError
from ..storage.read import LoadedResult
from ..storage.write import TENSORS, ResultWriter
from .pooled import PART_DOCS, PART_FORMAT, PART_SCHEMA, PART_STATS, PartDocs, layer_file
from .stats import TopK

__all__ = ["PART_FORMAT", "ScanPart"]

STATS_FILE = PART_STATS
_STATS = ("mean", "std", "min", "max", "n_positive", "hist_counts", "hist_edges")


@dataclass
class ScanPart:
    """Statistics, top-k and pooled values of the documents one shard saw.

    Shapes: statistics ``[n_layers, d_mlp]`` (``mean``/``std`` float64 over the shard's ``count`` tokens,
    ``min``/``max`` float32, ``n_positive`` int64), ``hist_counts`` ``[n_layers, d_mlp, n_bins]``; ``top`` /
    ``bottom`` ``[n_layers, d_mlp, k]`` with global document ids. ``complete_docs`` ``[n_c]`` (sorted global ids
    of the documents whose every window is in this shard) with ``complete_tokens`` and final pooled values
    ``pooled_[name]`` ``[n_c, n_layers, d_mlp]`` (the scan's dtype); ``partial_docs`` ``[n_p]`` (documents with
    windows in other shards too) with ``partial_tokens``, ``partial_has_last`` / ``partial_has_first`` (this
    shard holds their last / first window) and float32 aggregates ``partial_[name]`` ``[n_p, n_layers, d_mlp]``
    (the maximum, minimum, last or first value; for ``mean`` one row per window of those documents,
    ``window_docs`` ``[n_w]``, in batch order, whose sums the merge adds in the order one process adds them),
    finished by the merge. A loaded part keeps its pooled values on disk (``pooled_`` / ``partial_`` are then
    empty and :meth:`pooled_layer` reads one layer).
    """

    index: int
    layers: list[int]
    count: int
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    n_positive: np.ndarray
    hist_counts: np.ndarray
    hist_edges: np.ndarray
    top: TopK
    bottom: TopK
    complete_docs: np.ndarray
    complete_tokens: np.ndarray
    pooled_: dict[str, np.ndarray]
    partial_docs: np.ndarray
    partial_tokens: np.ndarray
    partial_has_last: np.ndarray
    partial_: dict[str, np.ndarray]
    window_docs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    partial_has_first: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    meta: dict[str, Any] = field(default_factory=dict)
    loaded: LoadedResult | None = field(default=None, repr=False)
    poolings: list[str] = field(default_factory=list)
    reader: Any = field(default=None, repr=False)  # (which, name, li) -> rows, for parts made from a Scan

    def __post_init__(self) -> None:
        if not self.poolings:
            self.poolings = list(self.pooled_)

    def pooled_layer(self, name: str, li: int, which: str = "pooled") -> np.ndarray:
        """One layer of the complete (``which="pooled"``) or partial (``"partial"``) rows: ``[n, d_mlp]``."""
        arrays = self.pooled_ if which == "pooled" else self.partial_
        if name in arrays:
            return arrays[name][:, li]
        if self.reader is not None:
            return self.reader(which, name, li)
        if self.loaded is None:
            raise KeyError(name)
        return self.loaded.array(layer_file(which, name, self.layers[li]))

    def save(self, path: str | os.PathLike, *, plan_hash: str, overwrite: bool = False) -> str:
        """Write the part to directory ``path`` atomically: its document index (read at every load), its
        statistics (read when merged) and its pooled rows, one file per pooling and layer (memory-mapped when
        used). Returns the absolute path."""
        stats = {f"stats.{k}": getattr(self, k) for k in _STATS}
        stats["stats.hist_counts"] = self.hist_counts.astype(np.int32 if self.count < 2 ** 31 else np.int64)
        for name, tk in (("top", self.top), ("bottom", self.bottom)):
            stats[f"{name}.values"] = tk.values
            stats[f"{name}.docs"], stats[f"{name}.positions"] = tk.docs.astype(np.int64), tk.positions
        with ResultWriter(path, fmt=PART_FORMAT, schema=PART_SCHEMA, overwrite=overwrite) as w:
            w.write_arrays(TENSORS, {k: getattr(self, k) for k in PART_DOCS})
            w.write_arrays(STATS_FILE, stats, deferred=True)
            for which, store in (("pooled", self.pooled_), ("partial", self.partial_)):
                for name in self.poolings:
                    for li, layer in enumerate(self.layers):
                        w.write_arrays(layer_file(which, name, layer), {"values": store[name][:, li]}, lazy=True)
            return w.commit({"index": int(self.index), "layers": self.layers, "count": int(self.count),
                             "poolings": self.poolings, "plan_hash": plan_hash, "part": self.meta})

    @classmethod
    def load(cls, path: str | os.PathLike, *, plan_hash: str | None = None) -> "ScanPart":
        """Read a part written by :meth:`save` (its pooled rows stay on disk). ``plan_hash``: refuse a part of
        another plan."""
        docs = PartDocs(os.fspath(path), plan_hash=plan_hash)
        r = docs.loaded
        m = r.meta
        a = r.read_arrays(STATS_FILE) if STATS_FILE in r.lazy else None
        try:
            if a is None:
                raise ValueError(f"no {STATS_FILE}")
            part = cls(index=int(m["index"]), layers=docs.layers, count=int(m["count"]),
                       **{k: a[f"stats.{k}"] for k in _STATS if k != "hist_counts"},
                       hist_counts=a["stats.hist_counts"].astype(np.int64),
                       top=TopK(a["top.values"], a["top.docs"], a["top.positions"]),
                       bottom=TopK(a["bottom.values"], a["bottom.docs"], a["bottom.positions"]),
                       **{k: getattr(docs, k) for k in PART_DOCS}, pooled_={}, partial_={},
                       meta=dict(m.get("part") or {}), loaded=r, poolings=docs.poolings)
        except Exception as e:  # noqa: BLE001 - a malformed part is a damaged file, whatever failed
            raise ScanFileError(f"{path} is not a consistent scan part: {type(e).__name__} {e}") from None
        return part
