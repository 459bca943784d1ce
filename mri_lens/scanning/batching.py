"""Batch planning shared by every stage that runs the model: sequences of similar length go together."""

from __future__ import annotations

import numpy as np

__all__ = ["plan_batches"]


def plan_batches(lengths, max_rows: int, max_tokens: int | None = None, *,
                 max_padding: float | None = None, min_rows: int = 16) -> list[np.ndarray]:
    """Sequence indices grouped into batches of similar length, longest first (memory problems show up early).

    A batch holds at most ``max_rows`` sequences and, when ``max_tokens`` is set, at most that many padded tokens
    (rows x its longest sequence), so long sequences come in smaller batches. With ``max_padding`` a batch of more
    than ``min_rows`` rows also stops growing once its padded size would exceed ``(1 + max_padding)`` x its real
    tokens (many short sequences of mixed lengths, as N2G runs, would otherwise be mostly padding).

    ``lengths``: ``[n]`` tokens per sequence. Returns index arrays into it.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, i = [], 0
    while i < len(order):
        width = int(lengths[order[i]])
        n = max_rows if not max_tokens else max(1, min(max_rows, max_tokens // width))
        if max_padding is not None and n > min_rows:
            real = np.cumsum(lengths[order[i:i + n]])
            rows = np.arange(1, len(real) + 1)
            ok = (rows <= min_rows) | (rows * width <= (1 + max_padding) * real)
            n = int(np.argmin(ok)) if not ok.all() else len(real)
        batches.append(order[i:i + n])
        i += n
    return batches
