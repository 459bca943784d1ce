"""What an effect is measured on: texts (tokenised by the adapter) or a scan's documents (its stored tokens), cut
into model-sized pieces and run in padded batches; the documents to test a neuron on (its top examples, a random
sample)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from ..data import Corpus
from ..errors import ModelAdapterError, ScanError
from ..model import ModelAdapter

__all__ = ["Piece", "pieces_from_texts", "pieces_from_scan", "batches", "top_docs", "random_docs", "check_neurons",
           "check_scan"]


@dataclass(frozen=True)
class Piece:
    """One input sequence: ``ids`` ``[n_tokens]`` (special tokens included), the document it comes from and where it
    starts in that document's tokens (a long document is cut into windows, each with its own BOS / [CLS])."""

    doc: int
    offset: int
    ids: np.ndarray


def pieces_from_texts(adapter: ModelAdapter, texts: Any, max_length: int | None = None) -> list[Piece]:
    """Tokenise ``texts`` (strings or a :class:`~mri_lens.Corpus`) with the adapter; a text longer than
    ``max_length`` (default: the model's context) is cut into windows, so every token is measured."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts.texts) if isinstance(texts, Corpus) else list(texts)
    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise ValueError("texts must be a non-empty sequence of non-empty strings (or a Corpus)")
    segments, _ = adapter.encode(texts, max_length=max_length, overflow="windows")
    out = []
    for d, segs in enumerate(segments):
        offset = 0
        for s in segs:
            out.append(Piece(d, offset, s))
            offset += len(s)
    return out


def check_scan(adapter: ModelAdapter, scan: Any) -> None:
    """Refuse a scan of another model (other neuron count, layer count or special tokens)."""
    meta = scan.meta
    facts = {"d_mlp": adapter.d_mlp, "n_layers": adapter.n_layers, "special_prefix": adapter.special_prefix,
             "special_suffix": adapter.special_suffix}
    bad = [f"{k}: scan {meta.get(k)!r}, model {v!r}" for k, v in facts.items()
           if meta.get(k) is not None and list(np.atleast_1d(meta.get(k))) != list(np.atleast_1d(v))]
    mid = meta.get("model_id")
    if mid and adapter.model_id and mid != adapter.model_id:
        bad.append(f"model_id: scan {mid!r}, model {adapter.model_id!r}")
    if bad:
        raise ScanError("the scan is not of this model (" + "; ".join(bad) + ")")


def pieces_from_scan(adapter: ModelAdapter, scan: Any, docs: Sequence[int]) -> list[Piece]:
    """The stored tokens of scan documents ``docs``, cut into the scan's windows (every window but the last is
    exactly the scan's ``max_length``, each starting with its own special prefix, as the scan ran them)."""
    check_scan(adapter, scan)
    width = int(scan.meta.get("max_length") or 0)
    out = []
    for d in docs:
        toks = np.asarray(scan.tokens(int(d)), dtype=np.int32)
        step = width if width and len(toks) > width else max(len(toks), 1)
        for s in range(0, len(toks), step):
            out.append(Piece(int(d), s, toks[s:s + step]))
    if not out:
        raise ScanError("no documents to measure")
    return out


def batches(adapter: ModelAdapter, pieces: Sequence[Piece], batch_size: int) -> Iterator[tuple[list[Piece], Any]]:
    """Padded batches ``(pieces, (tokens [batch, pos], mask [batch, pos], starts [batch]))``, pieces sorted by
    length (less padding; the order is fixed by the input, so results are deterministic)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = sorted(range(len(pieces)), key=lambda i: (len(pieces[i].ids), i))
    for b in range(0, len(order), batch_size):
        group = [pieces[i] for i in order[b:b + batch_size]]
        yield group, adapter.pad_batch([p.ids for p in group])


def check_neurons(adapter: ModelAdapter, layer: int, neurons: Any) -> tuple[int, list[int]]:
    """Validate ``layer`` and ``neurons`` (an int or a sequence of ints) against the model."""
    layer = adapter.check_layers([int(layer)])[0]
    ns = [int(neurons)] if isinstance(neurons, (int, np.integer)) else [int(n) for n in neurons]
    bad = [n for n in ns if not 0 <= n < (adapter.d_mlp or 0)]
    if not ns or bad or len(set(ns)) != len(ns):
        raise ModelAdapterError(f"neurons must be distinct and in 0..{(adapter.d_mlp or 1) - 1}, got {ns}")
    return layer, ns


def top_docs(scan: Any, layer: int, neurons: int | Sequence[int], k: int | None = None) -> list[int]:
    """The scan documents in the top examples of ``neurons`` at model layer ``layer`` (the first ``k`` of each
    neuron's list; default every kept example), in rank order, each once."""
    ns = [int(neurons)] if isinstance(neurons, (int, np.integer)) else [int(n) for n in neurons]
    out: list[int] = []
    for n in ns:
        for d in scan.top_examples(layer, n, k=k).docs:
            if int(d) not in out:
                out.append(int(d))
    return out


def random_docs(scan: Any, n: int = 20, seed: int = 0, exclude: Sequence[int] = ()) -> list[int]:
    """``n`` scan documents drawn without replacement (sorted), none of ``exclude``; deterministic given ``seed``."""
    pool = np.setdiff1d(np.arange(scan.n_docs), np.asarray(list(exclude), dtype=np.int64))
    if n < 1 or not len(pool):
        raise ScanError(f"cannot draw {n} random documents from {len(pool)}")
    rng = np.random.default_rng(seed)
    return sorted(int(d) for d in rng.choice(pool, size=min(n, len(pool)), replace=False))
