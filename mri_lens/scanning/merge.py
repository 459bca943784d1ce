"""Exact merges: the partial scans of a sharded run into one scan, and :func:`merge_scans` of scans of disjoint
document sets.

Counts and histograms add; minima and maxima reduce; mean and std combine by Chan's parallel formula in float64;
``frac_positive`` comes from integer counts; top and bottom k merge with the single-process tie rule (document
index); pooled values, tokens and labels are placed by global document id. Shards cut along the single-process
batch plan (every sequence in the same batch as in one process) therefore give the single-process scan bit for
bit except mean/std (float64 rounding of the merge, relative <= 1e-9). Scans of arbitrary document splits agree
with one scan of everything to ~1e-5: a sequence's batch neighbours change float rounding (padding widths and
batch shapes of the model's own kernels), and near-ties at GELU's minimum can then pick other bottom-k documents.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Sequence

import numpy as np

from ..errors import ScanError
from ..results.parts import ScanPart
from ..results.pooled import PART_DOCS, SplitPooled
from .shard import _merge_topk
from ..results.scan import NeuronStats, Scan, TopK

__all__ = ["merge_scans", "merge_parts", "assemble", "PartsMerge", "PartRows"]


def _check_same(parts: Sequence[Any], what: str = "parts") -> None:
    """Refuse to merge partial scans of other layers, poolings, histogram edges or shapes (their top-k list
    lengths may differ: a list holds at most its scan's number of documents, and the merge pads the shorter)."""
    first = parts[0]
    for p in parts[1:]:
        if p.layers != first.layers:
            raise ScanError(f"cannot merge {what} of different layers ({first.layers} vs {p.layers})")
        if list(p.poolings) != list(first.poolings):
            raise ScanError(f"cannot merge {what} of different poolings ({first.poolings} vs {p.poolings})")
        if p.hist_edges.shape != first.hist_edges.shape or not np.array_equal(p.hist_edges, first.hist_edges):
            raise ScanError(f"cannot merge {what} with different histogram edges")
        if p.mean.shape != first.mean.shape:
            raise ScanError(f"cannot merge {what} of different shapes ({first.mean.shape} vs {p.mean.shape})")


def _topk_state(tk: TopK) -> list:
    """``[values, docs, positions]`` of ``tk`` as torch tensors ``[n_layers, d_mlp, k]`` (sharing their memory)."""
    import torch

    return [torch.as_tensor(np.asarray(a)) for a in (tk.values, tk.docs, tk.positions)]


def _fit(state: list, k: int, largest: bool) -> list:
    """A top (``largest``) or bottom list state with ``k`` slots: cut (lists are best first) or padded with empty
    slots (value -inf for a top list, +inf for a bottom one; document -1)."""
    import torch

    have = state[0].shape[2]
    if have >= k:
        return [s[:, :, :k] for s in state]
    fill = (-np.inf if largest else np.inf, -1, 0)
    return [torch.cat([s, torch.full((*s.shape[:2], k - have), f, dtype=s.dtype)], 2) for s, f in zip(state, fill)]


class PartsMerge:
    """A running merge of partial scans' statistics and top-k lists (one part at a time: memory stays the size of
    one part's statistics, whatever the number of parts). Top-k lists merge at length ``top_k`` (default: the
    longest list seen)."""

    def __init__(self, n_docs: int, *, dedup: bool, top_k: int | None = None):
        self.n_docs, self.dedup, self.top_k = n_docs, dedup, top_k
        self.first = None
        self.n_parts = 0
        self.doc_tokens = np.zeros(n_docs, dtype=np.int64)

    def add(self, part: Any) -> None:
        if self.first is None:
            self._start(part)
        else:
            _check_same([self.first, part])
            self._add_moments(part)
            self.vmin = np.minimum(self.vmin, part.min)
            self.vmax = np.maximum(self.vmax, part.max)
            self.npos += np.asarray(part.n_positive, dtype=np.int64)
            self.hist += np.asarray(part.hist_counts, dtype=np.int64)
            self._add_topk(part)
        self.doc_tokens[np.asarray(part.complete_docs, dtype=np.int64)] += np.asarray(part.complete_tokens)
        self.doc_tokens[np.asarray(part.partial_docs, dtype=np.int64)] += np.asarray(part.partial_tokens)
        self.n_parts += 1

    def _start(self, part: Any) -> None:
        self.first = part
        self.count = int(part.count)
        self.mean = np.array(part.mean, dtype=np.float64)
        self.std = np.array(part.std, dtype=np.float64)
        self.m2 = None  # Chan's sum of squared deviations, once a second part arrives
        self.vmin, self.vmax = np.array(part.min), np.array(part.max)
        self.npos = np.array(part.n_positive, dtype=np.int64)
        self.hist = np.array(part.hist_counts, dtype=np.int64)
        self.top, self.bot = _topk_state(part.top), _topk_state(part.bottom)
        if self.top_k is not None:
            self.top, self.bot = _fit(self.top, self.top_k, True), _fit(self.bot, self.top_k, False)

    def _add_moments(self, part: Any) -> None:
        na, nb = self.count, int(part.count)
        if not nb:
            return
        if self.m2 is None:
            self.m2 = self.std ** 2 * na
        mb = np.asarray(part.mean, dtype=np.float64)
        m2b = np.asarray(part.std, dtype=np.float64) ** 2 * nb
        n = na + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta ** 2 * (na * nb / n)
        self.count = n

    def _add_topk(self, part: Any) -> None:
        import torch

        k = self.top_k or max(self.top[0].shape[2], part.top.values.shape[2])
        if k > self.top[0].shape[2]:  # a longer list than the parts so far (scans of fewer documents came first)
            self.top, self.bot = _fit(self.top, k, True), _fit(self.bot, k, False)
        for state, tk, largest in ((self.top, part.top, True), (self.bot, part.bottom, False)):
            cand = _topk_state(tk)
            for li in range(state[0].shape[0]):
                merged = _merge_topk(*(torch.cat([s[li], c[li]], 1) for s, c in zip(state, cand)), k, largest,
                                     self.dedup)
                for s, m in zip(state, merged):
                    s[li] = m

    def stats(self, top_k: int | None = None) -> tuple[NeuronStats, TopK, TopK]:
        """The merged statistics and top/bottom lists (``top_k``: their length, default the longest seen)."""
        if self.first is None:
            raise ScanError("nothing to merge")
        std = self.std if self.m2 is None else np.sqrt(np.maximum(self.m2 / max(self.count, 1), 0))
        n = max(self.count, 1)
        stats = NeuronStats(count=self.count, mean=self.mean, std=std, min=self.vmin, max=self.vmax,
                            frac_positive=self.npos.astype(np.float64) / n, hist_counts=self.hist,
                            hist_edges=np.asarray(self.first.hist_edges), n_positive=self.npos)
        k = self.top[0].shape[2] if top_k is None else int(top_k)  # cut or pad, lists are best first
        top, bot = (TopK(*(t.numpy() for t in _fit(state, k, largest)))
                    for state, largest in ((self.top, True), (self.bot, False)))
        return stats, top, bot


class PartRows:
    """What the pooled values of a merged scan need of one part, its statistics let go: its document index
    (``complete_docs``, ``partial_docs``...: see :class:`~mri_lens.results.parts.ScanPart`) and its pooled rows,
    in memory or on disk (``loaded``, read one layer at a time)."""

    def __init__(self, part: Any):
        self.index, self.layers, self.poolings = part.index, list(part.layers), list(part.poolings)
        for k in PART_DOCS:
            setattr(self, k, getattr(part, k))
        self.pooled_, self.partial_, self.reader = part.pooled_, part.partial_, part.reader
        self.loaded = part.loaded
        self.path = None if part.loaded is None else part.loaded.path
        self.version = None if part.loaded is None else part.loaded.version

    pooled_layer = ScanPart.pooled_layer  # the same rows, read the same way


def merge_parts(parts: Iterable[Any], *, n_docs: int, dedup: bool, dtype: str, top_k: int | None = None) -> tuple[
        NeuronStats, TopK, TopK, np.ndarray, SplitPooled]:
    """Merge partial scans, in plan order, each taken from ``parts`` once (an iterator may load them one at a
    time: only one part's statistics are in memory at once). Returns ``(stats, top, bottom, doc_token_counts
    [n_docs], pooled)`` with the pooled values still where the parts keep them (:class:`SplitPooled`); ``top_k``:
    the length of the merged top/bottom lists (default: the parts' longest)."""
    running = PartsMerge(n_docs, dedup=dedup, top_k=top_k)
    rows = []
    for p in parts:
        running.add(p)
        rows.append(PartRows(p))
        del p
    if not rows:
        raise ScanError("nothing to merge")
    stats, top, bottom = running.stats(top_k)
    return stats, top, bottom, running.doc_tokens, SplitPooled(rows, n_docs, stats.mean.shape[1], running.doc_tokens,
                                                               dtype)


def assemble(plan: Any, parts: Iterable[Any], *, meta: dict[str, Any], tokenizer_json: str | None,
             in_memory: bool) -> Scan:
    """The :class:`Scan` of ``plan`` from its parts (in plan order; :func:`merge_parts`): pooled values gathered
    into memory (``in_memory``) or left in the parts' files. ``meta`` gets ``n_tokens``."""
    parts = iter(parts)
    kept: list[Any] = []

    def each():
        for p in parts:
            if in_memory and not kept:
                kept.append(p)  # the first part: its arrays are the scan's when it is the only one
            yield p

    stats, top, bottom, doc_tokens, split = merge_parts(each(), n_docs=plan.n_docs, dedup=bool(plan.options["dedup"]),
                                                        dtype=meta["dtype"], top_k=plan.options["top_k"])
    pooled: Any = split
    if in_memory:
        whole = len(split.parts) == 1 and not len(kept[0].partial_docs)
        pooled = dict(kept[0].pooled_) if whole else {name: split[name] for name in split.names}
    token_ids, offsets = plan.doc_token_arrays()
    return Scan(layers=list(plan.layers), pooled_=pooled, stats=stats, top=top, bottom=bottom, token_ids=token_ids,
                token_offsets=offsets, doc_token_counts=doc_tokens, labels=plan.labels, label_names=plan.label_names,
                meta={**meta, "n_tokens": int(stats.count)}, tokenizer_json=tokenizer_json)


def _scan_as_part(scan: Scan, index: int, ids: np.ndarray) -> ScanPart:
    """A whole scan as a partial scan of documents ``ids`` (its documents' global ids)."""
    s = scan.stats
    npos = s.n_positive if s.n_positive is not None else np.rint(s.frac_positive * s.count).astype(np.int64)

    def glob(tk: TopK) -> TopK:
        docs = np.where(tk.docs >= 0, ids[np.maximum(tk.docs, 0)], -1)
        return TopK(tk.values, docs, tk.positions)

    def reader(which, name, li):
        return scan.pooled(name, layer=scan.layers[li])[order]

    order = np.argsort(ids, kind="stable")
    return ScanPart(index=index, layers=list(scan.layers), count=int(s.count), mean=s.mean, std=s.std, min=s.min,
                    max=s.max, n_positive=npos, hist_counts=s.hist_counts, hist_edges=s.hist_edges, top=glob(scan.top),
                    bottom=glob(scan.bottom), complete_docs=ids[order], complete_tokens=scan.doc_token_counts[order],
                    pooled_={}, partial_docs=np.zeros(0, np.int64), partial_tokens=np.zeros(0, np.int64),
                    partial_has_last=np.zeros(0, bool), partial_={}, poolings=scan.poolings, reader=reader)


def merge_scans(scans: Sequence[Scan], doc_ids: Sequence[Sequence[int]] | None = None, *,
                allow_duplicates: bool = False) -> Scan:
    """Merge scans of disjoint document sets into one scan, exactly (see the module docstring).

    ``doc_ids``: each scan's documents' ids in the merged scan, integers (default: the scans' documents one after
    the other, in order). The ids must be disjoint and cover ``0..n-1``. The scans must come from the same model
    (name, tokenizer and weights fingerprint), options and histogram edges (refused otherwise). Labels are matched
    by name. Pooled values of the result are in memory.

    The same documents twice are refused: two scans of one corpus (the same corpus fingerprint, also inside
    earlier merges), and a document of one scan with the same tokens and label as a document of another (``allow_
    duplicates=True`` merges those: a corpus that holds repeated texts split across scans).
    """
    scans = _check_scans(scans)
    ids = _doc_id_arrays(scans, doc_ids)
    n = sum(len(i) for i in ids)
    allids = np.concatenate(ids)
    if not np.array_equal(np.sort(allids), np.arange(n)):
        raise ScanError(f"doc_ids must be disjoint and cover 0..{n - 1}")
    _check_same_model(scans)
    sources = _check_no_repeats(scans, allow_duplicates)
    parts = [_scan_as_part(s, i, d) for i, (s, d) in enumerate(zip(scans, ids))]
    _check_same(parts, "scans")
    dedup = any(s.meta.get("n_sequences", s.n_docs) > s.n_docs for s in scans)
    k = scans[0].meta.get("top_k")  # the lists a scan of all n documents would keep (each scan's hold its own)
    stats, top, bottom, doc_tokens, pooled = merge_parts(parts, n_docs=n, dedup=dedup,
                                                         dtype=str(scans[0].pooled(scans[0].poolings[0],
                                                                                   scans[0].layers[0]).dtype),
                                                         top_k=min(k, n) if isinstance(k, int) else None)
    arrays = {name: pooled[name] for name in pooled.names}
    # tokens placed by global id
    order = np.argsort(allids, kind="stable")
    owner = np.concatenate([np.full(len(d), k) for k, d in enumerate(ids)])[order]
    local = np.concatenate([np.arange(len(d)) for d in ids])[order]
    seqs = [scans[o].tokens(int(l)) for o, l in zip(owner, local)]
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in seqs])
    labels, names = _merge_labels(scans, owner, local)
    meta = dict(scans[0].meta)
    for k in ("n_truncated", "n_sequences", "n_tokens", "n_input_tokens"):
        if all(k in s.meta for s in scans):
            meta[k] = int(sum(int(s.meta[k]) for s in scans))
    meta.update(n_docs=n, corpus_fingerprint=None, merged_from=sources,
                seconds=round(sum(float(s.meta.get("seconds") or 0) for s in scans), 3))
    return Scan(layers=list(scans[0].layers), pooled_=arrays, stats=stats, top=top, bottom=bottom,
                token_ids=np.concatenate(seqs) if seqs else np.zeros(0, np.int32), token_offsets=offsets,
                doc_token_counts=doc_tokens, labels=labels, label_names=names, meta=meta,
                tokenizer_json=scans[0].tokenizer_json)


def _check_scans(scans: Any) -> list[Scan]:
    if isinstance(scans, Scan):
        raise ScanError("merge_scans takes a list of scans, got one Scan")
    if isinstance(scans, (str, bytes)) or not isinstance(scans, Iterable):
        raise ScanError(f"merge_scans takes a list of scans, got {type(scans).__name__}")
    scans = list(scans)
    if not scans:
        raise ScanError("merge_scans needs at least one scan")
    for i, s in enumerate(scans):
        if not isinstance(s, Scan):
            hint = " (a saved scan: load it first with Scan.load)" if isinstance(s, (str, os.PathLike)) else ""
            raise ScanError(f"merge_scans takes Scan objects; item {i} is a {type(s).__name__}{hint}")
    return scans


def _doc_id_arrays(scans: list[Scan], doc_ids: Any) -> list[np.ndarray]:
    """Each scan's documents' ids in the merged scan, as int64 arrays ``[n_docs of that scan]`` (checked: one
    integer per document; no float, string or boolean ids)."""
    if doc_ids is None:
        starts = np.cumsum([0] + [s.n_docs for s in scans])
        return [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:])]
    if isinstance(doc_ids, (str, bytes)) or not isinstance(doc_ids, Iterable):
        raise ScanError(f"doc_ids must be a list of one id sequence per scan, got {type(doc_ids).__name__}")
    doc_ids = list(doc_ids)
    if len(doc_ids) != len(scans):
        raise ScanError(f"doc_ids must give one id sequence per scan: {len(scans)} scans, {len(doc_ids)} sequences")
    ids = []
    for k, (d, s) in enumerate(zip(doc_ids, scans)):
        if isinstance(d, np.ndarray) and d.ndim == 1:
            items = d.tolist() if d.dtype.kind not in "iu" else []
        elif isinstance(d, Iterable) and not isinstance(d, (np.ndarray, str, bytes)):
            items = list(d)
        else:
            raise ScanError(f"doc_ids[{k}] must be a sequence of document ids, got {type(d).__name__} {d!r:.40}")
        bad = next((x for x in items if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer))),
                   None)
        if bad is not None:
            raise ScanError(f"doc_ids[{k}] must hold integers (document ids of the merged scan); it holds "
                            f"{type(bad).__name__} {bad!r:.40}")
        try:
            arr = d if isinstance(d, np.ndarray) else np.asarray(items, dtype=np.int64)
        except OverflowError:
            raise ScanError(f"doc_ids[{k}] holds an id too large for a document id") from None
        if len(arr) != s.n_docs:
            raise ScanError(f"doc_ids must give one id per document of each scan: scan {k} has {s.n_docs} "
                            f"documents, doc_ids[{k}] {len(arr)} ids")
        ids.append(arr.astype(np.int64))
    return ids


def units_of(meta: dict) -> dict:
    """The units a scan's meta records (MLP neurons for a scan made before units were recorded)."""
    return meta.get("units") or {"kind": "mlp_post", "unit_noun": "neuron"}


def _units_text(meta: dict) -> str:
    u = units_of(meta)
    fp = u.get("fingerprint")
    return f"{u.get('kind')!r} units" + (f" (weights {fp[:12]}...)" if fp else "")


_SAME_KEYS = ("model_id", "architecture", "n_layers", "d_mlp", "hook_template", "prepend_bos", "include_bos",
              "max_length", "overflow", "dtype", "top_k", "pooling", "special_prefix", "special_suffix")


def _check_same_model(scans: list[Scan]) -> None:
    """Refuse scans of different models (name, weights, tokenizer) or options."""
    first = scans[0].meta
    for i, s in enumerate(scans[1:], 1):
        if units_of(s.meta) != units_of(first):
            raise ScanError(f"cannot merge scans of different units: scan 0 has {_units_text(first)}, scan {i} "
                            f"{_units_text(s.meta)}")
        diff = [k for k in _SAME_KEYS if s.meta.get(k) != first.get(k)]
        if diff:
            raise ScanError(f"cannot merge scans of different models or options (they differ in {diff})")
        a, b = first.get("weights_sha256"), s.meta.get("weights_sha256")
        if a != b:
            why = "one of them records no weights fingerprint (it was made before mri_lens recorded one: scan " \
                "again)" if a is None or b is None else f"weights fingerprints {a[:12]}... and {b[:12]}..."
            raise ScanError(f"cannot merge scans of different models: scans 0 and {i} are both of "
                            f"{first.get('model_id')!r} but of other weights ({why})")
        if s.tokenizer_json != scans[0].tokenizer_json:
            raise ScanError("cannot merge scans made with different tokenizers")


def _check_no_repeats(scans: list[Scan], allow_duplicates: bool) -> list[str]:
    """Refuse the same documents twice (see :func:`merge_scans`). Returns the corpus fingerprints the merged scan
    comes from (those of earlier merges included)."""
    import hashlib

    seen: dict[str, int] = {}
    sources: list[str] = []
    for i, s in enumerate(scans):
        own = s.meta.get("merged_from") or [s.meta.get("corpus_fingerprint")]
        for f in (x for x in own if isinstance(x, str)):
            if f in seen:
                raise ScanError(f"scans {seen[f]} and {i} hold the same documents (both scan the corpus "
                                f"{f[:12]}...): a merge would count them twice")
            seen[f] = i
            sources.append(f)
    if allow_duplicates or len(scans) < 2:
        return sources
    owner: dict[bytes, tuple[int, int]] = {}
    for i, s in enumerate(scans):
        names = s.label_names
        mine: dict[bytes, int] = {}
        for d in range(s.n_docs):
            key = np.asarray(s.tokens(d), dtype="<i8").tobytes()
            if s.labels is not None:
                key += b"\x00" + names[int(s.labels[d])].encode("utf-8")
            mine.setdefault(hashlib.blake2b(key, digest_size=16).digest(), d)
        for h, d in mine.items():
            if h in owner:
                j, e = owner[h]
                raise ScanError(f"document {d} of scan {i} has the same tokens and label as document {e} of scan "
                                f"{j}: a merge would count one document twice (pass allow_duplicates=True if the "
                                "corpus holds repeated texts)")
        owner.update({h: (i, d) for h, d in mine.items()})
    return sources


def _merge_labels(scans: Sequence[Scan], owner: np.ndarray, local: np.ndarray):
    with_labels = [s.labels is not None for s in scans]
    if not any(with_labels):
        return None, None
    if not all(with_labels):
        raise ScanError("cannot merge labelled and unlabelled scans")
    names: list[str] = []
    for s in scans:
        names += [x for x in s.label_names if x not in names]
    code = {x: i for i, x in enumerate(names)}
    remap = [np.asarray([code[x] for x in s.label_names], dtype=np.int64) for s in scans]
    labels = np.asarray([remap[o][scans[o].labels[l]] for o, l in zip(owner, local)], dtype=np.int64)
    return labels, names
