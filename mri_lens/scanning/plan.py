"""The scan plan: every decision a scan makes before its first forward, fixed and hashed.

Tokens, BOS handling, windows, the length-sorted batch plan and the cut into shards all come from the corpus, the
model's tokenizer and the scan options, never from where or how the shards run. So a shard computes exactly what
the same batches compute in one process (each sequence in the same batch), and a rerun of the same plan can skip
the shards it already finished. The plan's hash identifies it: a directory holding a run of another corpus, model
or options is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .batching import plan_batches
from .options import POOLINGS
from ..model.fingerprint import weights_fingerprint
from ..errors import ScanError

__all__ = ["POOLINGS", "ScanPlan", "ShardSpec", "make_plan", "plan_scan", "model_identity", "model_facts"]

PLAN_FORMAT = "mri_lens.scan_plan"
PLAN_SCHEMA = 1


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def model_identity(adapter: Any) -> dict[str, Any]:
    """What identifies the scanned model in a plan: its facts, its tokenizer and a fingerprint of every weight
    (:func:`mri_lens.model.fingerprint.weights_fingerprint`: SHA-256 of every byte of every parameter)."""
    facts = adapter.describe()
    tok = adapter.tokenizer_json()
    dtype = None
    try:
        dtype = str(next(adapter.model.parameters()).dtype).replace("torch.", "")
    except (StopIteration, AttributeError, TypeError):
        pass
    return {**{k: facts[k] for k in ("model_id", "architecture", "n_layers", "d_mlp", "is_causal", "hook_template",
                                    "prepend_bos", "special_prefix", "special_suffix", "padding_side",
                                    "pad_token_id")},
            "dtype": dtype, "tokenizer_sha256": hashlib.sha256(tok.encode()).hexdigest() if tok else None,
            "weights_sha256": weights_fingerprint(adapter.model.model if adapter.is_hf else adapter.model)}


@dataclass
class ShardSpec:
    """One unit of work: consecutive batches of the plan. Everything a worker needs to compute the shard, in plain
    arrays (sent to remote workers as is; no model, no corpus).

    ``tokens``/``starts``: the shard's sequences, ragged (sequence i is ``tokens[starts[i]:starts[i+1]]``);
    ``doc`` / ``offset`` / ``is_last`` ``[n_seq]``: each sequence's global document, the position of its first
    token in the document's stored tokens, and whether it is the document's last window; ``batches``: index
    arrays into the shard's sequences, in plan order; ``complete``: global ids of the documents whose every
    sequence is in this shard (the others' pooled values are partial here and finished by the merge).
    """

    index: int
    tokens: np.ndarray
    starts: np.ndarray
    doc: np.ndarray
    offset: np.ndarray
    is_last: np.ndarray
    batches: list[np.ndarray]
    complete: np.ndarray
    options: dict[str, Any]
    n_layers: int
    d_mlp: int
    n_skip: int

    @property
    def n_tokens(self) -> int:
        """Tokens counted in statistics (special prefix excluded)."""
        return int(len(self.tokens) - self.n_skip * len(self.doc))

    def sequence(self, i: int) -> np.ndarray:
        return self.tokens[self.starts[i]:self.starts[i + 1]]


@dataclass
class ScanPlan:
    """The whole scan, decided: tokens, batches, shards (see the module docstring).

    Attributes: ``seq_tokens``/``seq_starts`` every input sequence (special tokens included), ragged;
    ``seq_doc``/``seq_offset``/``seq_is_last`` ``[n_seq]``; ``doc_tokens``/``doc_starts`` each document's stored
    tokens (its windows concatenated); ``batches`` the length-sorted batch plan; ``shard_bounds``
    ``[n_shards + 1]`` batch indices where shards start; ``identity`` what the hash covers.
    """

    options: dict[str, Any]
    model: dict[str, Any]
    corpus_fingerprint: str
    n_docs: int
    n_truncated: int
    n_skip: int
    seq_tokens: np.ndarray
    seq_starts: np.ndarray
    seq_doc: np.ndarray
    seq_offset: np.ndarray
    seq_is_last: np.ndarray
    batches: list[np.ndarray]
    shard_bounds: np.ndarray
    layers: list[int]
    d_mlp: int
    labels: np.ndarray | None = None
    label_names: list[str] | None = None
    _doc_sequences: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def n_shards(self) -> int:
        return len(self.shard_bounds) - 1

    @property
    def identity(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, "schema_version": PLAN_SCHEMA, "options": self.options, "model": self.model,
                "corpus_fingerprint": self.corpus_fingerprint, "n_docs": self.n_docs,
                "shard_bounds": [int(x) for x in self.shard_bounds],
                "n_sequences": int(len(self.seq_doc)), "n_input_tokens": int(len(self.seq_tokens))}

    @property
    def hash(self) -> str:
        return _sha(self.identity)

    def doc_token_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(token_ids, token_offsets)`` of every document: its windows concatenated, in document order."""
        lengths = np.diff(self.seq_starts)
        per_doc = np.zeros(self.n_docs, dtype=np.int64)
        np.add.at(per_doc, self.seq_doc, lengths)
        offsets = np.zeros(self.n_docs + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(per_doc)
        # sequences are stored in document order, windows in order: the concatenation is the documents' tokens
        return self.seq_tokens, offsets

    def shard_tokens(self, i: int) -> int:
        lengths = np.diff(self.seq_starts)
        seqs = np.concatenate(self.batches[self.shard_bounds[i]:self.shard_bounds[i + 1]])
        return int(lengths[seqs].sum()) - self.n_skip * len(seqs)

    def shard(self, i: int) -> ShardSpec:
        """The work of shard ``i`` (its sequences renumbered ``0..n-1`` in plan order)."""
        if not 0 <= i < self.n_shards:
            raise ScanError(f"shard must be in 0..{self.n_shards - 1}, got {i}")
        batches = self.batches[self.shard_bounds[i]:self.shard_bounds[i + 1]]
        seqs = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        local, start = [], 0
        for b in batches:
            local.append(np.arange(start, start + len(b)))
            start += len(b)
        lengths = np.diff(self.seq_starts)[seqs]
        starts = np.zeros(len(seqs) + 1, dtype=np.int64)
        starts[1:] = np.cumsum(lengths)
        tokens = np.concatenate([self.seq_tokens[self.seq_starts[s]:self.seq_starts[s + 1]] for s in seqs]) \
            if len(seqs) else np.zeros(0, dtype=np.int32)
        doc = self.seq_doc[seqs]
        in_shard = np.bincount(doc, minlength=self.n_docs)
        total = np.bincount(self.seq_doc, minlength=self.n_docs)
        touched = np.unique(doc)
        complete = touched[in_shard[touched] == total[touched]]
        return ShardSpec(index=i, tokens=tokens, starts=starts, doc=doc, offset=self.seq_offset[seqs],
                         is_last=self.seq_is_last[seqs], batches=local, complete=complete, options=self.options,
                         n_layers=len(self.layers), d_mlp=self.d_mlp, n_skip=self.n_skip)


def model_facts(adapter: Any, cap: Any) -> dict[str, Any]:
    """What a scan records about its model and capture besides the plan's identity (no weights): the adapter's
    facts, the capture backend's name and description, the tokenizer's JSON."""
    return {"describe": adapter.describe(), "backend": cap.name, "capture": cap.describe(),
            "tokenizer_json": adapter.tokenizer_json()}


def resolve_units(adapter: Any, options: Any) -> tuple[Any, list[int], int]:
    """``(units, layers, width)``: the scan's :class:`~mri_lens.model.units.UnitSet`, its layers checked against
    the model (hooks exist, SAE widths match) and the units' width; every error before the model runs."""
    from ..model.units import as_units

    units = as_units(options.units)
    layers = units.check(adapter, None if options.layers is None else list(options.layers))
    return units, layers, int(units.width(adapter, layers[0]))


def plan_scan(adapter: Any, corpus: Any, options: Any, backend: str) -> ScanPlan:
    """The plan of a scan of ``corpus`` with :class:`~mri_lens.scanning.options.ScanOptions` ``options`` through
    ``adapter``'s model captured by backend ``backend`` (its name): the options resolved against the model (its
    layers, its context) as the plan records them. The same call on any copy of the model gives the same plan."""
    units, layers, width = resolve_units(adapter, options)
    resolved = {"layers": layers, "batch_size": options.batch_size, "max_batch_tokens": options.max_batch_tokens,
                "max_length": adapter.max_length(options.max_length), "overflow": options.overflow,
                "pooling": list(options.pooling), "top_k": options.top_k, "dtype": options.dtype,
                "include_bos": options.include_bos, "backend": backend,
                "histogram_edges": [float(x) for x in options.edges()]}
    if not units.is_default:  # MLP neurons leave the plan (and its hash) as it always was
        resolved["units"] = units.describe(adapter, layers)
    return make_plan(adapter, corpus, layers=layers, options=resolved, shard_tokens=options.shard_tokens,
                     shard_bytes=options.shard_bytes, width=width)


def _sequences(adapter: Any, corpus: Any, options: dict[str, Any], n_skip: int):
    """Every input sequence of the corpus, in document order: ``(sequences, doc, offset, is_last, n_truncated)``."""
    segments, n_over = adapter.encode(corpus.texts, max_length=options["max_length"], overflow=options["overflow"])
    seqs, seq_doc, seq_offset, seq_is_last = [], [], [], []
    for d, segs in enumerate(segments):
        off = 0
        for j, s in enumerate(segs):
            if len(s) <= n_skip:
                raise ScanError(f"text {d} produced no tokens besides BOS")
            seqs.append(s)
            seq_doc.append(d)
            seq_offset.append(off)
            seq_is_last.append(j == len(segs) - 1)
            off += len(s)
    return seqs, np.asarray(seq_doc, dtype=np.int64), np.asarray(seq_offset, dtype=np.int64), \
        np.asarray(seq_is_last, bool), int(n_over)


def _shard_bounds(batches: list[np.ndarray], counted: list[int], seq_doc: np.ndarray, row_bytes: int,
                  shard_tokens: int | None, shard_bytes: int | None) -> list[int]:
    """Batch indices where shards start (and the end): consecutive batches, each shard at most ``shard_tokens``
    counted tokens and ``shard_bytes`` of pooled rows (``row_bytes`` per document), at least one batch."""
    bounds = [0]
    if shard_tokens is not None or shard_bytes is not None:
        max_docs = None if shard_bytes is None else max(1, shard_bytes // row_bytes)
        tokens, docs = 0, set()
        for i, (c, b) in enumerate(zip(counted, batches)):
            new_docs = set(seq_doc[b].tolist()) - docs
            if (tokens or docs) and ((shard_tokens is not None and tokens + c > shard_tokens)
                                     or (max_docs is not None and len(docs) + len(new_docs) > max_docs)):
                bounds.append(i)
                tokens, docs = 0, set()
                new_docs = set(seq_doc[b].tolist())
            tokens += c
            docs |= new_docs
    bounds.append(len(batches))
    return bounds


def make_plan(adapter: Any, corpus: Any, *, layers: list[int], options: dict[str, Any],
              shard_tokens: int | None = None, shard_bytes: int | None = None, width: int | None = None) -> ScanPlan:
    """Tokenise ``corpus``, plan its batches and cut them into shards of at most ``shard_tokens`` counted tokens
    and ``shard_bytes`` of pooled values in memory (float32 rows of its documents: what a worker holds while it
    computes a shard; None: no limit; both None: one shard). A shard holds at least one batch. ``options``: the
    scan's resolved options (JSON-able; ``batch_size``, ``max_batch_tokens``, ``max_length``, ``overflow``,
    ``top_k``, ``include_bos``...), recorded in the plan and its hash; ``top_k`` is capped at the number of
    documents (a list never holds more)."""
    for name, v in (("shard_tokens", shard_tokens), ("shard_bytes", shard_bytes)):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be positive, got {v}")
    skip_bos = adapter.is_causal and adapter.prepend_bos and not options["include_bos"]
    n_skip = adapter.n_special_prefix if skip_bos else 0
    seqs, seq_doc, seq_offset, seq_is_last, n_over = _sequences(adapter, corpus, options, n_skip)
    # top-k lists keep one entry per document; with windows a document may appear in several rows of a batch
    options = {**options, "dedup": len(seqs) > len(corpus), "top_k": min(int(options["top_k"]), len(corpus))}
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    starts = np.zeros(len(seqs) + 1, dtype=np.int64)
    starts[1:] = np.cumsum(lengths)
    batches = plan_batches(lengths, options["batch_size"], options["max_batch_tokens"])
    counted = [int(lengths[b].sum()) - n_skip * len(b) for b in batches]
    width = int(adapter.d_mlp if width is None else width)  # units per layer (MLP neurons: d_mlp)
    row_bytes = len(layers) * width * len(options["pooling"]) * 4  # one document's pooled rows
    bounds = _shard_bounds(batches, counted, seq_doc, row_bytes, shard_tokens, shard_bytes)
    return ScanPlan(options=options, model=model_identity(adapter), corpus_fingerprint=corpus.fingerprint(),
                    n_docs=len(corpus), n_truncated=n_over, n_skip=n_skip,
                    seq_tokens=np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32),
                    seq_starts=starts, seq_doc=seq_doc, seq_offset=seq_offset, seq_is_last=seq_is_last,
                    batches=batches, shard_bounds=np.asarray(bounds, dtype=np.int64), layers=list(layers),
                    d_mlp=width, labels=corpus.labels, label_names=corpus.label_names)
