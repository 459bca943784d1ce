"""Every neuron of a layer at once: attribution patching (:func:`attribution`, activation x gradient, one backward
pass per batch for all neurons; :func:`attribution_by_doc`, the same per document) and exact ablation of each
neuron (:func:`ablate_each`, one edited forward per neuron, several neurons per forward by repeating the batch)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ModelAdapterError, ScanError
from ..model import ModelAdapter, as_adapter, edited_forward
from .api import _pieces, scan_means
from .inputs import batches, check_neurons, check_scan
from .measure import prediction_mask, token_losses
from .results import DocScores, NeuronScores

__all__ = ["attribution", "attribution_by_doc", "ablate_each"]


def _targets(adapter: ModelAdapter, layer: int, how: str, scan: Any) -> np.ndarray:
    """What ablation sets each neuron to, ``[d_mlp]``: zeros, or the scan's means."""
    if how == "zero":
        return np.zeros(adapter.d_mlp, dtype=np.float64)
    if how == "mean":
        if scan is None:
            raise ScanError("how='mean' sets each neuron to its mean over a scan: pass scan=")
        check_scan(adapter, scan)
        return scan_means(scan, layer)
    raise ValueError(f"how must be 'zero' or 'mean', got {how!r}")


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    # the bar appears only when the work takes more than 2 s
    return tqdm(total=total, desc=desc, unit="batch", disable=not progress, leave=False, delay=2)


def _gradient_batches(adapter: ModelAdapter, layers: list[int], pieces, batch_size: int, desc: str, progress: bool,
                      consume) -> tuple[float, int]:
    """One forward and one backward pass per batch of ``pieces`` for all ``layers`` at once, autograd on (also
    inside a caller's inference_mode or no_grad block): ``consume(group, acts, real, pm)`` gets the batch's
    ``acts`` ``{layer: (a, g)}``, activations ``a`` and ``g = dL/da`` ``[batch, pos, d_mlp]`` (float32, detached),
    the real-token mask ``real`` ``[batch, pos]`` and the prediction mask ``pm`` ``[batch, pos - 1]`` (``L``: the
    summed next-token loss of the batch's real predictions). Returns ``(summed loss, predictions)`` over every
    batch."""
    import torch

    loss_sum, n = 0.0, 0
    with _bar(-(-len(pieces) // batch_size), desc, progress) as bar, \
            torch.inference_mode(False), torch.enable_grad():
        for group, (tokens, mask, _starts) in batches(adapter, pieces, batch_size):
            logits, kept = edited_forward(adapter, tokens, mask, keep=layers, grad=True)
            pm = prediction_mask(mask)
            total = token_losses(logits, tokens, pm).sum()
            # one backward pass for every kept layer: each gradient is the same as a pass for that layer alone
            grads = torch.autograd.grad(total, [kept[l] for l in layers])
            consume(group, {l: (kept[l].detach().float(), g.float()) for l, g in zip(layers, grads)}, mask.bool(),
                    pm)
            loss_sum += float(total.detach())
            n += int(pm.sum())
            bar.update()
    if n == 0:
        raise ValueError("nothing to measure: every text is a single token (a next-token loss needs two)")
    return loss_sum, n


def _causal_only(adapter: ModelAdapter) -> None:
    if not adapter.is_causal:
        raise ModelAdapterError("attribution patching needs a next-token loss and an encoder has none; use "
                                "ablate_each (exact ablation, measured on the final hidden state)")


def attribution(model: Any, layer: int, texts: Any = None, *, how: str = "zero", scan: Any = None,
                docs: Sequence[int] | None = None, batch_size: int = 8, max_length: int | None = None,
                progress: bool = True) -> NeuronScores:
    """Attribution patching: the change in mean next-token loss that ablating each neuron of ``layer`` would make,
    estimated to first order for all ``d_mlp`` neurons from one forward and one backward pass per batch.

    With activations ``a`` ``[batch, pos, d_mlp]`` and ``g = dL/da`` (``L``: the summed next-token loss of every
    real predicted token), neuron ``n`` scores ``sum_pos (t_n - a_n) g_n / n_predictions``, ``t`` the ablation
    target (0, or the scan's mean with ``how="mean"``); ``act_grad`` is ``sum_pos a_n g_n / n_predictions``.
    Inputs as in :func:`~mri_lens.effects.ablate`. Causal models only (an encoder has no next-token loss; use
    :func:`ablate_each`). Returns :class:`NeuronScores` over ``[d_mlp]`` neurons.
    """
    adapter = as_adapter(model)
    _causal_only(adapter)
    layer = adapter.check_layers([int(layer)])[0]
    target = _targets(adapter, layer, how, scan)
    pieces, _ = _pieces(adapter, texts, scan, docs, max_length)
    ag = np.zeros(adapter.d_mlp)
    gs = np.zeros(adapter.d_mlp)

    def consume(group, acts, real, pm):
        a, g = acts[layer]
        a, g = a[real], g[real]  # [n_tokens, d_mlp]
        ag[:] += (a * g).sum(0).double().cpu().numpy()
        gs[:] += g.sum(0).double().cpu().numpy()

    loss_sum, n = _gradient_batches(adapter, [layer], pieces, batch_size, f"attribution L{layer}", progress,
                                    consume)
    return NeuronScores(layer=layer, neurons=np.arange(adapter.d_mlp), scores=(target * gs - ag) / n,
                        method="attribution", how=how, metric="next-token loss", clean_loss=loss_sum / n,
                        n_tokens=n, act_grad=ag / n, model_id=adapter.model_id)


def attribution_by_doc(model: Any, layer: int | Sequence[int], texts: Any = None, *, how: str = "zero",
                       scan: Any = None, docs: Sequence[int] | None = None, batch_size: int = 8,
                       max_length: int | None = None, progress: bool = True) -> DocScores | dict[int, DocScores]:
    """Attribution patching per document: for each document and each neuron of ``layer``, the first-order change
    in the document's *summed* next-token loss when the neuron is ablated, ``sum_pos (t_n - a_n) g_n`` over the
    document's real tokens (all its windows), from one forward and one backward pass per batch, as
    :func:`attribution` (which is the sum of these over documents, divided by all predictions).

    ``layer``: one layer, or several (a list): then every layer is measured in the same forward and backward pass
    per batch and the result is ``{layer: DocScores}``, each the same as a call for that layer alone.

    Inputs as in :func:`~mri_lens.effects.ablate` (``docs``: scan document ids, else the texts' indices). Returns
    :class:`DocScores`: ``scores`` ``[n_docs, d_mlp]`` (float64) and ``n_tokens`` ``[n_docs]`` (each document's
    predictions); ``scores[i, n] / n_tokens[i]`` is document ``i``'s mean. Causal models only.
    """
    adapter = as_adapter(model)
    _causal_only(adapter)
    several = not isinstance(layer, (int, np.integer))
    layers = adapter.check_layers([int(l) for l in layer] if several else [int(layer)])
    targets = {l: _targets(adapter, l, how, scan) for l in layers}
    pieces, _ = _pieces(adapter, texts, scan, docs, max_length)
    ids = list(dict.fromkeys(p.doc for p in pieces))
    row_of = {d: i for i, d in enumerate(ids)}
    sums = {l: np.zeros((len(ids), adapter.d_mlp)) for l in layers}
    counts = np.zeros(len(ids), dtype=np.int64)

    def consume(group, acts, real, pm):
        import torch

        rows = [row_of[p.doc] for p in group]
        np.add.at(counts, rows, pm.sum(1).cpu().numpy().astype(np.int64))  # a document may fill several rows
        for l, (a, g) in acts.items():
            t = torch.as_tensor(targets[l], dtype=a.dtype, device=a.device)
            per_row = ((t - a) * g * real[..., None]).sum(1).double().cpu().numpy()  # [batch, d_mlp]
            np.add.at(sums[l], rows, per_row)

    desc = f"attribution by doc L{','.join(map(str, layers))}"
    loss_sum, n = _gradient_batches(adapter, layers, pieces, batch_size, desc, progress, consume)
    out = {l: DocScores(layer=l, docs=np.asarray(ids, dtype=np.int64), scores=sums[l], n_tokens=counts.copy(),
                        how=how, clean_loss=loss_sum / n, model_id=adapter.model_id) for l in layers}
    return out if several else out[layers[0]]


def _each_edit(ns, values, rows_per_copy: int):
    """Edit of a batch repeated ``len(ns)`` times: copy ``i`` (rows ``i*B .. i*B+B-1``) has neuron ``ns[i]`` set
    to ``values[i]``."""
    import torch

    def edit(act):
        out = act.clone()
        rows = torch.arange(len(ns) * rows_per_copy, device=act.device)
        cols = ns.to(act.device).repeat_interleave(rows_per_copy)
        out[rows, :, cols] = values.to(act.device, act.dtype).repeat_interleave(rows_per_copy)[:, None]
        return out

    return edit


def _copy_sums(adapter: ModelAdapter, clean, edited, tokens, mask, copies: int):
    """Per copy ``[copies]``: summed loss change (causal) or summed L2 change of the final hidden state."""
    import torch

    if adapter.is_causal:
        pm = prediction_mask(mask)
        before = token_losses(clean, tokens, pm).sum()
        pms = pm.repeat(copies, 1)
        after = token_losses(edited, tokens.repeat(copies, 1), pms)
        copy = pms.nonzero()[:, 0] // len(tokens)  # which copy each prediction belongs to
        return torch.zeros(copies, dtype=after.dtype, device=after.device).index_add_(0, copy, after) - before
    real = mask.bool().repeat(copies, 1)
    diff = (edited.float() - clean.float().repeat(copies, 1, 1)).norm(dim=-1)
    diff = torch.where(real, diff, torch.zeros((), dtype=diff.dtype, device=diff.device))
    return diff.reshape(copies, -1).sum(1)


def ablate_each(model: Any, layer: int, texts: Any = None, *, neurons: Sequence[int] | None = None,
                how: str = "zero", scan: Any = None, docs: Sequence[int] | None = None, batch_size: int = 8,
                max_rows: int = 64, max_length: int | None = None, progress: bool = True) -> NeuronScores:
    """Exact ablation of each neuron of ``layer`` in turn (default every neuron): the change in mean next-token
    loss (causal) or the mean L2 change of the final hidden state per token (encoders).

    Each batch of ``batch_size`` sequences is repeated up to ``max_rows // batch_size`` times per forward, each
    copy with another neuron ablated. Inputs as in :func:`~mri_lens.effects.ablate`. Returns
    :class:`NeuronScores` ``[n_neurons]``, comparable with :func:`attribution`'s.
    """
    import torch

    adapter = as_adapter(model)
    layer = adapter.check_layers([int(layer)])[0]
    ns = np.arange(adapter.d_mlp) if neurons is None else np.asarray(check_neurons(adapter, layer, neurons)[1])
    target = _targets(adapter, layer, how, scan)
    pieces, _ = _pieces(adapter, texts, scan, docs, max_length)
    sums = np.zeros(len(ns))
    clean_sum, n = 0.0, 0
    n_batches = -(-len(pieces) // batch_size)
    with _bar(n_batches * len(ns), f"ablate each L{layer}", progress) as bar:
        for group, (tokens, mask, _starts) in batches(adapter, pieces, batch_size):
            clean, _ = edited_forward(adapter, tokens, mask)
            if adapter.is_causal:
                pm = prediction_mask(mask)
                clean_sum += float(token_losses(clean, tokens, pm).sum())
                n += int(pm.sum())
            else:
                n += int(mask.sum())
            step = max(1, max_rows // len(group))
            for s in range(0, len(ns), step):
                chunk = torch.as_tensor(ns[s:s + step], dtype=torch.long)
                vals = torch.as_tensor(target[ns[s:s + step]], dtype=torch.float32)
                edited, _ = edited_forward(adapter, tokens.repeat(len(chunk), 1), mask.repeat(len(chunk), 1),
                                           {layer: _each_edit(chunk, vals, len(group))})
                sums[s:s + step] += _copy_sums(adapter, clean, edited, tokens, mask, len(chunk)).double().cpu().numpy()
                bar.update(len(chunk))
    if n == 0:
        raise ValueError("nothing to measure: every text is a single token (a next-token loss needs two)")
    causal = adapter.is_causal
    return NeuronScores(layer=layer, neurons=ns, scores=sums / n, method="exact", how=how,
                        metric="next-token loss" if causal else "final hidden state L2",
                        clean_loss=clean_sum / n if causal else None, n_tokens=n, model_id=adapter.model_id)
