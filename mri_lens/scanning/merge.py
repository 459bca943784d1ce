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

from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ScanError
from ..results.parts import ScanPart
from ..results.pooled import SplitPooled
from .shard import _merge_topk
from ..results.scan import NeuronStats, Scan, TopK

__all__ = ["merge_scans", "merge_parts", "PartsMerge"]


def _check_same(parts: Sequence[Any], what: str = "parts") -> None:
    first = parts[0]
    for p in parts[1:]:
        if p.layers != first.layers:
            raise ScanError(f"cannot merge {what} of different layers ({first.layers} vs {p.layers})")
        if list(p.poolings) != list(first.poolings):
            raise ScanError(f"cannot merge {what} of different poolings ({first.poolings} vs {p.poolings})")
        if p.hist_edges.shape != first.hist_edges.shape or not np.array_equal(p.hist_edges, first.hist_edges):
            raise ScanError(f"cannot merge {what} with different histogram edges")
        if p.top.values.shape[2] != first.top.values.shape[2]:
            raise ScanError(f"cannot merge {what} of different top_k")
        if p.mean.shape != first.mean.shape:
            raise ScanError(f"cannot merge {what} of different shapes ({first.mean.shape} vs {p.mean.shape})")


class PartsMerge:
    """A running merge of partial scans' statistics and top-k lists (one part at a time: memory stays the size of
    one part's statistics, whatever the number of parts)."""

    def __init__(self, n_docs: int, *, dedup: bool):
        self.n_docs, self.dedup = n_docs, dedup
        self.first = None
        self.n_parts = 0
        self.doc_tokens = np.zeros(n_docs, dtype=np.int64)

    def add(self, part: Any) -> None:
        import torch

        if self.first is None:
            self.first = part
            self.count = int(part.count)
            self.mean = np.array(part.mean, dtype=np.float64)
            self.std = np.array(part.std, dtype=np.float64)
            self.m2 = None  # Chan's sum of squared deviations, once a second part arrives
            self.vmin, self.vmax = np.array(part.min), np.array(part.max)
            self.npos = np.array(part.n_positive, dtype=np.int64)
            self.hist = np.array(part.hist_counts, dtype=np.int64)
            self.top = [torch.as_tensor(np.asarray(a)) for a in (part.top.values, part.top.docs, part.top.positions)]
            self.bot = [torch.as_tensor(np.asarray(a)) for a in
                        (part.bottom.values, part.bottom.docs, part.bottom.positions)]
        else:
            _check_same([self.first, part])
            na, nb = self.count, int(part.count)
            if nb:
                if self.m2 is None:
                    self.m2 = self.std ** 2 * na
                mb = np.asarray(part.mean, dtype=np.float64)
                m2b = np.asarray(part.std, dtype=np.float64) ** 2 * nb
                n = na + nb
                delta = mb - self.mean
                self.mean = self.mean + delta * (nb / n)
                self.m2 = self.m2 + m2b + delta ** 2 * (na * nb / n)
                self.count = n
            self.vmin = np.minimum(self.vmin, part.min)
            self.vmax = np.maximum(self.vmax, part.max)
            self.npos += np.asarray(part.n_positive, dtype=np.int64)
            self.hist += np.asarray(part.hist_counts, dtype=np.int64)
            k = self.top[0].shape[2]
            for state, tk, largest in ((self.top, part.top, True), (self.bot, part.bottom, False)):
                cand = [torch.as_tensor(np.asarray(a)) for a in (tk.values, tk.docs, tk.positions)]
                for li in range(state[0].shape[0]):
                    merged = _merge_topk(*(torch.cat([s[li], c[li]], 1) for s, c in zip(state, cand)), k, largest,
                                         self.dedup)
                    for s, m in zip(state, merged):
                        s[li] = m
        self.doc_tokens[np.asarray(part.complete_docs, dtype=np.int64)] += np.asarray(part.complete_tokens)
        self.doc_tokens[np.asarray(part.partial_docs, dtype=np.int64)] += np.asarray(part.partial_tokens)
        self.n_parts += 1

    def stats(self) -> tuple[NeuronStats, TopK, TopK]:
        if self.first is None:
            raise ScanError("nothing to merge")
        std = self.std if self.m2 is None else np.sqrt(np.maximum(self.m2 / max(self.count, 1), 0))
        n = max(self.count, 1)
        stats = NeuronStats(count=self.count, mean=self.mean, std=std, min=self.vmin, max=self.vmax,
                            frac_positive=self.npos.astype(np.float64) / n, hist_counts=self.hist,
                            hist_edges=np.asarray(self.first.hist_edges), n_positive=self.npos)
        return stats, TopK(*(t.numpy() for t in self.top)), TopK(*(t.numpy() for t in self.bot))


def merge_parts(parts: Iterable[Any], *, n_docs: int, dedup: bool, dtype: str) -> tuple[
        NeuronStats, TopK, TopK, np.ndarray, SplitPooled]:
    """Merge partial scans (in plan order). Returns ``(stats, top, bottom, doc_token_counts [n_docs], pooled)``
    with the pooled values still where the parts keep them (:class:`SplitPooled`)."""
    parts = list(parts)
    if not parts:
        raise ScanError("nothing to merge")
    running = PartsMerge(n_docs, dedup=dedup)
    for p in parts:
        running.add(p)
    stats, top, bottom = running.stats()
    return stats, top, bottom, running.doc_tokens, SplitPooled(parts, n_docs, stats.mean.shape[1],
                                                               running.doc_tokens, dtype)


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


def merge_scans(scans: Sequence[Scan], doc_ids: Sequence[Sequence[int]] | None = None) -> Scan:
    """Merge scans of disjoint document sets into one scan, exactly (see the module docstring).

    ``doc_ids``: each scan's documents' ids in the merged scan (default: the scans' documents one after the other,
    in order). The ids must be disjoint and cover ``0..n-1``. The scans must come from the same model, options
    and histogram edges (refused otherwise). Labels are matched by name. Pooled values of the result are in memory.
    """
    scans = list(scans)
    if not scans:
        raise ScanError("merge_scans needs at least one scan")
    if doc_ids is None:
        starts = np.cumsum([0] + [s.n_docs for s in scans])
        doc_ids = [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:])]
    ids = [np.asarray(d, dtype=np.int64) for d in doc_ids]
    if len(ids) != len(scans) or any(len(i) != s.n_docs for i, s in zip(ids, scans)):
        raise ScanError("doc_ids must give one id per document of each scan")
    n = sum(len(i) for i in ids)
    allids = np.concatenate(ids)
    if not np.array_equal(np.sort(allids), np.arange(n)):
        raise ScanError(f"doc_ids must be disjoint and cover 0..{n - 1}")
    keys = ("model_id", "architecture", "hook_template", "prepend_bos", "include_bos", "max_length", "overflow",
            "dtype", "top_k", "pooling", "special_prefix", "special_suffix")
    for s in scans[1:]:
        diff = [k for k in keys if s.meta.get(k) != scans[0].meta.get(k)]
        if diff:
            raise ScanError(f"cannot merge scans of different models or options (they differ in {diff})")
        if s.tokenizer_json != scans[0].tokenizer_json:
            raise ScanError("cannot merge scans made with different tokenizers")
    parts = [_scan_as_part(s, i, d) for i, (s, d) in enumerate(zip(scans, ids))]
    _check_same(parts, "scans")
    dedup = any(s.meta.get("n_sequences", s.n_docs) > s.n_docs for s in scans)
    stats, top, bottom, doc_tokens, pooled = merge_parts(parts, n_docs=n, dedup=dedup,
                                                         dtype=str(scans[0].pooled(scans[0].poolings[0],
                                                                                   scans[0].layers[0]).dtype))
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
    meta.update(n_docs=n, corpus_fingerprint=None, merged_from=[s.meta.get("corpus_fingerprint") for s in scans],
                seconds=round(sum(float(s.meta.get("seconds") or 0) for s in scans), 3))
    return Scan(layers=list(scans[0].layers), pooled_=arrays, stats=stats, top=top, bottom=bottom,
                token_ids=np.concatenate(seqs) if seqs else np.zeros(0, np.int32), token_offsets=offsets,
                doc_token_counts=doc_tokens, labels=labels, label_names=names, meta=meta,
                tokenizer_json=scans[0].tokenizer_json)


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
