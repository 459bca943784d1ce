"""Measure one edit: each batch runs clean and edited, and every real predicted token (causal) or real token
(encoder) becomes a row. Pads never reach a loss or a row: a position counts only where the attention mask says the
token (and, for a prediction, the token it predicts) is real."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..model import ModelAdapter, edited_forward
from .inputs import Piece, batches
from .results import _N_NAMED, Effect

__all__ = ["prediction_mask", "token_losses", "measure_edit"]


def prediction_mask(mask):
    """``[batch, pos - 1]`` bool: position ``p`` predicts a real token (``p`` and ``p + 1`` are both real, so both
    are in the same sequence). With a BOS prefix every text token is predicted; the BOS itself never is."""
    m = mask.bool()
    return m[:, :-1] & m[:, 1:]


def token_losses(logits, tokens, pm):
    """Next-token cross-entropy (float32) of the predictions ``pm`` (:func:`prediction_mask`) selects: ``[n]``, in
    row-major order of ``pm.nonzero()``; ``logits`` ``[batch, pos, d_vocab]``, ``tokens`` ``[batch, pos]``."""
    import torch

    x = logits[:, :-1]  # no copy of the logits: logsumexp and gather read them in place
    target = x.gather(-1, tokens[:, 1:, None].long())[..., 0]
    return (torch.logsumexp(x, -1).float() - target.float())[pm]


def _rows(group: Sequence[Piece], starts, where, shift: int, strs: list[list[str]]) -> dict[str, list]:
    """Table keys of the selected positions ``where`` (``(batch index, position)`` pairs, ``[n, 2]``); the token
    row is position + ``shift`` (1 for a prediction's target)."""
    doc, pos, tok = [], [], []
    for b, p in where.tolist():
        at = p + shift - int(starts[b])
        doc.append(group[b].doc)
        pos.append(group[b].offset + at)
        tok.append(strs[b][at])
    return {"doc": doc, "position": pos, "token": tok}


def _causal_batch(adapter, group, tokens, mask, starts, edits, acc: dict[str, Any]) -> dict[str, Any]:
    import torch

    clean, _ = edited_forward(adapter, tokens, mask)
    edited, _ = edited_forward(adapter, tokens, mask, edits)
    pm = prediction_mask(mask)
    target = tokens[:, 1:][pm].long()[:, None]
    c, e = clean[:, :-1][pm].float(), edited[:, :-1][pm].float()  # [n_predictions, d_vocab]
    lpc, lpe = torch.log_softmax(c, -1), torch.log_softmax(e, -1)
    lc, le = -lpc.gather(1, target)[:, 0], -lpe.gather(1, target)[:, 0]
    acc["logit"] = acc.get("logit", 0) + (e - c).sum(0).double().cpu().numpy()
    acc["logprob"] = acc.get("logprob", 0) + (lpe - lpc).sum(0).double().cpu().numpy()
    strs = [adapter.str_tokens(p.ids.tolist()) for p in group]
    rows = _rows(group, starts, pm.nonzero(), 1, strs)
    rows.update({"token_id": tokens[:, 1:][pm].tolist(), "loss_before": lc.tolist(), "loss_after": le.tolist(),
                 "delta": (le - lc).tolist()})
    return rows


def _encoder_batch(adapter, group, tokens, mask, starts, edits, acc: dict[str, Any]) -> dict[str, Any]:
    import torch

    clean, _ = edited_forward(adapter, tokens, mask)
    edited, _ = edited_forward(adapter, tokens, mask, edits)
    real = mask.bool()
    c, e = clean[real].float(), edited[real].float()  # [n_tokens, d_model]
    l2 = (e - c).norm(dim=-1)
    strs = [adapter.str_tokens(p.ids.tolist()) for p in group]
    rows = _rows(group, starts, real.nonzero(), 0, strs)
    rows.update({"token_id": tokens[real].tolist(), "l2_change": l2.tolist(),
                 "relative_change": (l2 / c.norm(dim=-1).clamp(min=1e-12)).tolist(),
                 "cosine": torch.nn.functional.cosine_similarity(e, c, dim=-1).tolist()})
    return rows


def _token_names(adapter: ModelAdapter, *arrays: np.ndarray) -> dict[int, str]:
    """Display strings of the vocabulary entries :meth:`Effect.top_logits` can show (the top and bottom
    ``_N_NAMED`` of each array); a byte token reads as ``<0xNN>``."""
    ids: set[int] = set()
    for a in arrays:
        order = np.argsort(-a, kind="stable")
        ids.update(order[:_N_NAMED].tolist())
        ids.update(order[::-1][:_N_NAMED].tolist())
    return {i: adapter.str_tokens([i])[0] for i in sorted(ids)}


def measure_edit(adapter: ModelAdapter, pieces: Sequence[Piece], layer: int, edit: Any, *, how: str,
                 neurons: list[int], values: list[float], batch_size: int, progress: bool, source: str) -> Effect:
    """Run every piece clean and with ``edit`` applied at ``layer``; collect the per-token table (see
    :class:`Effect`)."""
    import pandas as pd
    from tqdm.auto import tqdm

    one = _causal_batch if adapter.is_causal else _encoder_batch
    edits: Mapping[int, Any] = {layer: edit}
    acc: dict[str, Any] = {}
    cols: dict[str, list] = {}
    n_batches = -(-len(pieces) // batch_size)
    # the bar appears only when the work takes more than 2 s
    for group, (tokens, mask, starts) in tqdm(batches(adapter, pieces, batch_size), total=n_batches,
                                              desc=f"effect L{layer}", unit="batch", disable=not progress,
                                              leave=False, delay=2):
        for k, v in one(adapter, group, tokens, mask, starts, edits, acc).items():
            cols.setdefault(k, []).extend(v)
    if not cols.get("doc"):
        raise ValueError("nothing to measure: every text is a single token (a next-token loss needs two)")
    table = pd.DataFrame(cols).sort_values(["doc", "position"], kind="stable").reset_index(drop=True)
    logit = logprob = None
    names: dict[int, str] = {}
    if adapter.is_causal:
        n = max(len(table), 1)
        logit, logprob = (np.asarray(acc.get(k, 0.0), dtype=np.float64) / n for k in ("logit", "logprob"))
        names = _token_names(adapter, logit, logprob)
    return Effect(layer=layer, neurons=list(neurons), how=how, values=[float(v) for v in values],
                  causal=adapter.is_causal, table=table, logit_change=logit, logprob_change=logprob,
                  token_names=names, model_id=adapter.model_id, source=source)
