"""Where a scan's pooled activations live: in memory, in per-layer files, or in the parts of a sharded run.

Every lens reads them one layer at a time (``scan.pooled(name, layer=l)``, ``[n_docs, d_mlp]``), so a scan whose
pooled values are many times the machine's memory stays usable: a saved scan memory-maps each layer's file, and
a sharded scan gathers a layer from its parts' files (each part holds the rows of the documents it completed, the
merge wrote the rows of documents split across parts).
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ScanFileError
from ..storage.files import RUN_RE, part_dir_name, part_index
from ..storage.read import LoadedResult, load_result

__all__ = ["PooledArrays", "InMemoryPooled", "LayerFilePooled", "PartDocs", "SplitPooled", "layer_file",
           "load_pooled", "PART_FORMAT", "PART_SCHEMA", "POOL_FILLS"]


def layer_file(prefix: str, name: str, layer: int) -> str:
    """The file name of one pooling of one model layer (``pooled.mean.L3.safetensors``); the formats define no
    other pooled file names."""
    return f"{prefix}.{name}.L{int(layer)}.safetensors"


LAZY_NAMES = r"(pooled|partial)\.(mean|max|min|last|first)\.L\d{1,5}\.safetensors"
PART_FORMAT = "mri_lens.scan_part"
PART_SCHEMA = 2  # 2: partial_has_first (the "first" pooling); 1: parts written before it (they hold no first values)
PART_STATS = "stats.safetensors"  # a part's statistics and top-k, read when the part is merged
PART_DOCS = ("complete_docs", "complete_tokens", "partial_docs", "partial_tokens", "partial_has_last", "window_docs",
             "partial_has_first")
# what a pooled value starts from before a document's first window is folded in
POOL_FILLS = {"mean": 0.0, "last": 0.0, "first": 0.0, "max": -np.inf, "min": np.inf}


class PooledArrays(Mapping):
    """Pooling name -> ``[n_docs, n_layers, d_mlp]``, read one layer at a time with :meth:`layer`.

    ``pooled[name]`` materialises every layer (for small scans and old code); lenses call ``layer(name, li)``.
    """

    names: list[str]
    layers: list[int]
    n_docs: int
    d_mlp: int
    dtype: np.dtype

    @abstractmethod
    def layer(self, name: str, li: int) -> np.ndarray:
        """Pooling ``name`` of the layer at position ``li``: ``[n_docs, d_mlp]``."""

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(name)
        out = np.empty((self.n_docs, len(self.layers), self.d_mlp), dtype=self.dtype)
        for li in range(len(self.layers)):
            out[:, li] = self.layer(name, li)
        return out

    def __contains__(self, name: object) -> bool:  # Mapping's default would read every layer to answer
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def nbytes(self) -> int:
        return len(self.names) * len(self.layers) * self.n_docs * self.d_mlp * np.dtype(self.dtype).itemsize


class InMemoryPooled(PooledArrays):
    """Full arrays ``[n_docs, n_layers, d_mlp]`` held in memory (a scan that was never saved)."""

    def __init__(self, arrays: dict[str, np.ndarray], layers: Sequence[int]):
        self.arrays = dict(arrays)
        self.names = list(arrays)
        self.layers = list(layers)
        first = next(iter(arrays.values()))
        self.n_docs, self.d_mlp, self.dtype = int(first.shape[0]), int(first.shape[2]), first.dtype

    def layer(self, name: str, li: int) -> np.ndarray:
        return self.arrays[name][:, li]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


class LayerFilePooled(PooledArrays):
    """One memory-mapped file per pooling and layer, rows in document order (a saved scan)."""

    def __init__(self, loaded: Any, names: Sequence[str], layers: Sequence[int], n_docs: int, d_mlp: int,
                 dtype: str):
        self.loaded, self.names, self.layers = loaded, list(names), list(layers)
        self.n_docs, self.d_mlp, self.dtype = int(n_docs), int(d_mlp), np.dtype(dtype)
        self._maps: dict[tuple[str, int], np.ndarray] = {}

    def layer(self, name: str, li: int) -> np.ndarray:
        key = (name, li)
        if key not in self._maps:
            self._maps[key] = self.loaded.array(layer_file("pooled", name, self.layers[li]))
        return self._maps[key]

    def verify(self) -> None:
        self.loaded.verify()


class PartDocs:
    """The document index of a saved scan part (which documents it completed, which it saw in part), with its
    pooled rows on disk: all a sharded scan's pooled values need of a part (its statistics are not read).

    A part inside a run directory (``.../run-<hash>/part-<index>``) is read without following a symbolic link
    for either directory, and must hold the shard its name says (``index``). ``version``: the data version it
    was read from (a scan names the versions of its parts)."""

    def __init__(self, path: str | os.PathLike, *, plan_hash: str | None = None):
        self.path = path = os.fspath(path)
        part_dir = os.path.normpath(path)
        run_dir = os.path.dirname(part_dir)
        self.index = part_index(os.path.basename(part_dir))
        inside_run = self.index is not None and RUN_RE.match(os.path.basename(run_dir)) is not None
        self.loaded = r = load_result(path, fmt=PART_FORMAT, schema=PART_SCHEMA, files=(PART_STATS,),
                                      lazy=LAZY_NAMES,
                                      under=(os.path.dirname(run_dir) or os.curdir) if inside_run else None)
        self.version = r.version
        try:
            self._read_index(r, plan_hash)
        except Exception as e:  # noqa: BLE001 - a malformed part is a damaged file, whatever failed
            raise ScanFileError(f"{path} is not a consistent scan part: {type(e).__name__} {e}") from None

    def _read_index(self, r: LoadedResult, plan_hash: str | None) -> None:
        if plan_hash is not None and r.meta.get("plan_hash") != plan_hash:
            raise ValueError("it is a part of another scan plan")
        held = r.meta.get("index")
        if self.index is not None and (not isinstance(held, int) or isinstance(held, bool) or held != self.index):
            raise ValueError("it holds another shard than its name says (a part copied over "
                             f"{part_dir_name(self.index)})")
        self.layers = [int(x) for x in r.meta["layers"]]
        self.poolings = [str(x) for x in r.meta["poolings"]]
        arrays = dict(r.arrays)
        if r.manifest.get("schema_version") == 1:  # written before "first" existed: no first window to flag
            arrays.setdefault("partial_has_first", np.zeros(len(arrays["partial_docs"]), dtype=bool))
        for k in PART_DOCS:
            setattr(self, k, np.asarray(arrays[k]))
        if not len(self.partial_has_last) == len(self.partial_has_first) == len(self.partial_docs):
            raise ValueError("its window flags do not match its split documents")
        expected = {layer_file(w, n, l) for w in ("pooled", "partial") for n in self.poolings for l in self.layers}
        if {k for k, v in r.lazy.items() if v.lazy} != expected:
            raise ValueError("its pooled files do not match its layers and poolings")
        for w, docs in (("pooled", self.complete_docs), ("partial", self.partial_docs)):
            for n in self.poolings:
                rows = len(self.window_docs) if (w, n) == ("partial", "mean") else len(docs)
                for l in self.layers:
                    if r.lazy[layer_file(w, n, l)].shape[0] != rows:
                        raise ValueError("its pooled files do not match its documents")

    def pooled_layer(self, name: str, li: int, which: str = "pooled") -> np.ndarray:
        return self.loaded.array(layer_file(which, name, self.layers[li]))


class SplitPooled(PooledArrays):
    """Pooled values gathered from parts: each part's complete documents, and the documents split across parts
    finished from the parts' partial aggregates, in part order (sums add in the order one process added them, so
    they are bit-identical), divided by the document's tokens and cast to the scan's dtype."""

    def __init__(self, parts: Sequence[Any], n_docs: int, d_mlp: int, doc_tokens: np.ndarray, dtype: str):
        self.parts = list(parts)
        first = self.parts[0]
        self.names, self.layers = list(first.poolings), list(first.layers)
        self.n_docs, self.d_mlp, self.dtype = int(n_docs), int(d_mlp), np.dtype(dtype)
        partial = [np.asarray(p.partial_docs, dtype=np.int64) for p in self.parts]
        self.split_docs = np.unique(np.concatenate(partial)) if partial else np.zeros(0, np.int64)
        self.split_tokens = np.asarray(doc_tokens)[self.split_docs]

    def layer(self, name: str, li: int) -> np.ndarray:
        out = np.empty((self.n_docs, self.d_mlp), dtype=self.dtype)
        acc = np.full((len(self.split_docs), self.d_mlp), POOL_FILLS[name], dtype=np.float32)
        for p in self.parts:
            if len(p.complete_docs):
                out[np.asarray(p.complete_docs, dtype=np.int64)] = p.pooled_layer(name, li)
            if len(p.partial_docs):
                idx = np.searchsorted(self.split_docs, np.asarray(p.partial_docs, dtype=np.int64))
                rows = np.asarray(p.pooled_layer(name, li, "partial"), dtype=np.float32)
                if name == "mean":  # window by window, in batch order: the additions of one process, in its order
                    np.add.at(acc, np.searchsorted(self.split_docs, np.asarray(p.window_docs, dtype=np.int64)),
                              rows)
                elif name == "max":
                    acc[idx] = np.maximum(acc[idx], rows)
                elif name == "min":
                    acc[idx] = np.minimum(acc[idx], rows)
                else:  # "last" / "first": the value of the part that holds the document's last / first window
                    held = np.asarray(p.partial_has_last if name == "last" else p.partial_has_first, dtype=bool)
                    acc[idx[held]] = rows[held]
        if len(self.split_docs):
            if name == "mean":
                acc = acc / self.split_tokens.astype(np.float32)[:, None]
            out[self.split_docs] = acc.astype(self.dtype, copy=False)
        return out

    def verify(self) -> None:
        for p in self.parts:
            if p.loaded is not None:
                p.loaded.verify()


# ----------------------------------------------------------------------------- the layouts of a saved scan
def _bad(path: str, why: str) -> ScanFileError:
    return ScanFileError(f"{path} is not a consistent saved scan: {why}")


def _dtype(layout: dict, path: str) -> str:
    dtype = layout.get("dtype")
    if dtype not in ("float16", "float32", "float64"):
        raise _bad(path, "its manifest names no valid dtype of the pooled values")
    return dtype


def pooled_in_arrays(path: str, arrays: dict[str, np.ndarray], poolings: list[str]) -> dict[str, np.ndarray]:
    """Schemas 1 and 2: every pooling's ``[n_docs, n_layers, d_mlp]`` inside ``arrays.safetensors``."""
    missing = [p for p in poolings if f"pooled.{p}" not in arrays]
    if missing:
        raise _bad(path, f"it holds no pooled values of {missing[0]!r}")
    return {p: arrays[f"pooled.{p}"] for p in poolings}


def pooled_in_layer_files(path: str, loaded: LoadedResult, layout: dict, poolings: list[str], layers: list[int],
                          n_docs: int, d_mlp: int) -> LayerFilePooled:
    """Schema 3, a scan saved whole: one file per pooling and layer, ``[n_docs, d_mlp]`` each."""
    expected = {layer_file("pooled", p, l) for p in poolings for l in layers}
    if {k for k, v in loaded.lazy.items() if v.lazy} != expected:
        raise _bad(path, "its pooled files do not match its layers and poolings")
    if any(loaded.lazy[f].shape != [n_docs, d_mlp] for f in expected):
        raise _bad(path, "a pooled file does not match the documents")
    return LayerFilePooled(loaded, poolings, layers, n_docs, d_mlp, _dtype(layout, path))


def _part_ids(path: str, layout: dict) -> tuple[str, list[int], list[str] | None]:
    run, ids, versions = layout.get("run"), layout.get("parts"), layout.get("versions")
    if not isinstance(run, str) or not RUN_RE.match(run):
        raise _bad(path, "its manifest names no valid run directory")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                       for i in ids) or len(set(ids)) != len(ids):
        raise _bad(path, "its manifest names no valid list of parts")
    if versions is not None and (not isinstance(versions, list) or len(versions) != len(ids)
                                 or not all(isinstance(v, str) for v in versions)):
        raise _bad(path, "its manifest names the versions of its parts wrongly")
    return run, ids, versions


def pooled_in_parts(path: str, layout: dict, plan_hash: Any, poolings: list[str], layers: list[int], n_docs: int,
                    d_mlp: int, doc_tokens: np.ndarray) -> SplitPooled:
    """Schema 3, a sharded scan: the pooled rows stay in the parts of its run directory (inside ``path``), each
    part the version the scan names (scans saved before parts were bound name none)."""
    run, ids, versions = _part_ids(path, layout)
    if np.shape(doc_tokens) != (n_docs,):
        raise _bad(path, "doc_token_counts does not match the documents")
    plan_hash = plan_hash if isinstance(plan_hash, str) else None
    parts = [PartDocs(os.path.join(path, run, part_dir_name(i)), plan_hash=plan_hash) for i in ids]
    for part, version in zip(parts, versions or [None] * len(parts)):
        if version is not None and part.version != version:
            raise ScanFileError(f"{part.path} was written again after the scan {path} was saved (it is another "
                                f"version of that part): scan again into {path} to merge the parts as they are now")
    if any(p.layers != layers or p.poolings != poolings for p in parts):
        raise _bad(path, "a part holds other layers or poolings than the scan")
    covered = np.concatenate([p.complete_docs for p in parts]
                             + [np.unique(np.concatenate([p.partial_docs for p in parts]))])
    if not np.array_equal(np.sort(covered), np.arange(n_docs)):
        raise _bad(path, "its parts do not cover its documents exactly once")
    return SplitPooled(parts, n_docs, d_mlp, doc_tokens, _dtype(layout, path))


def load_pooled(path: str, loaded: LoadedResult, poolings: list[str], layers: list[int], n_docs: int, d_mlp: int,
                doc_tokens: np.ndarray) -> dict[str, np.ndarray] | PooledArrays:
    """The pooled values of the saved scan ``loaded`` (at ``path``) in whichever layout its manifest names."""
    meta = loaded.meta
    layout = meta.get("pooled") or {"layout": "arrays"}
    if not isinstance(layout, dict):
        raise _bad(path, "its manifest names no valid layout of the pooled values")
    kind = layout.get("layout")
    if kind == "arrays":
        return pooled_in_arrays(path, loaded.arrays, poolings)
    if kind == "layers":
        return pooled_in_layer_files(path, loaded, layout, poolings, layers, n_docs, d_mlp)
    if kind == "parts":
        scan_meta = meta.get("scan") if isinstance(meta.get("scan"), dict) else {}
        return pooled_in_parts(path, layout, scan_meta.get("plan_hash"), poolings, layers, n_docs, d_mlp, doc_tokens)
    raise _bad(path, "its manifest names an unknown layout of the pooled values")
