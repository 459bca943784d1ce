"""What a neuron page shows beside its examples, computed for every neuron of a layer at once: similar neurons (by
output weights, :func:`similar_by_weights`; by pooled activations, :func:`similar_by_activation`), the mean
activation per category of a labelled scan (:func:`category_means`), the direct logit effects over the tokens the
tokenizer can emit (:func:`logit_effects`, :func:`emitted_token_mask`) and the attribution-patching estimate of each
neuron's effect on the loss of its own top examples (:func:`example_attribution`, every layer in the same passes:
:func:`example_attribution_by_layer`).

Every function returns arrays over the layer's ``d_mlp`` neurons (``[d_mlp, k]`` neighbour lists padded with ``-1``
ids and NaN values) and works in chunks of neurons, so a 16k-wide layer fits in memory. Ties are broken by the
smaller id, so the same inputs give the same lists.

>>> idx, cos = similar_by_weights(model, layer=1)                       # doctest: +SKIP
>>> (top, top_v, bot, bot_v), why = logit_effects(model, 3, mask=emitted_token_mask(model, scan))   # doctest: +SKIP
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np

from ...effects import attribution_by_doc
from ...errors import ModelAdapterError, ScanError
from ...model.adapter import as_adapter

__all__ = ["similar_by_weights", "similar_by_activation", "category_means", "emitted_token_mask", "logit_effects",
           "example_attribution", "example_attribution_by_layer"]

_CHUNK = 1024  # neurons per block of a [chunk, d_mlp] similarity matrix
_LOGIT_CHUNK = 256  # neurons per block of a [chunk, d_vocab] logit matrix (a few copies of it are held)
_DOC_CHUNK = 256  # documents per attribution pass ([chunk, d_mlp] float64 per-document sums held at once)


def _top_k_rows(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row of ``values`` ``[rows, n]``, NaN and -inf left out, ties broken by the
    smaller column id: ``(ids [rows, k] int64, values [rows, k] float32)``, padded with ``-1`` / NaN where a row has
    fewer than ``k`` entries."""
    import torch

    rows, n = values.shape
    ids = np.full((rows, k), -1, dtype=np.int64)
    out = np.full((rows, k), np.nan, dtype=np.float32)
    kk = min(k, n)
    if kk == 0 or rows == 0:
        return ids, out
    s = values
    if np.isnan(values).any():
        s = values.copy()
        s[np.isnan(s)] = -np.inf
    top = torch.topk(torch.from_numpy(s), kk, dim=1)  # [rows, kk], largest first
    part, thr = top.indices.numpy(), top.values.numpy()[:, -1]
    # a row is done by sorting its kk largest unless a tie at the k-th value reaches past them, or -inf is in them
    simple = ((s >= thr[:, None]).sum(1) == kk) & np.isfinite(thr)
    if simple.any():
        order = np.lexsort((part, -np.take_along_axis(s, part, 1)), axis=1)
        best = np.take_along_axis(part, order, 1)  # [rows, kk]: largest first, ties by id
        ids[simple, :kk] = best[simple]
        out[simple, :kk] = np.take_along_axis(values, best, 1)[simple]
    for r in np.flatnonzero(~simple):
        cand = np.flatnonzero((s[r] >= thr[r]) & np.isfinite(s[r]))
        order = cand[np.lexsort((cand, -s[r, cand]))][:kk]
        ids[r, :len(order)] = order
        out[r, :len(order)] = values[r, order]
    return ids, out


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _output_directions(adapter: Any, layer: int, units: Any):
    """What each unit writes to the residual stream ``[width, d_model]``: ``W_out`` rows for MLP neurons (``units``
    None), else the unit set's own directions (an SAE latent's decoder row), or None where it has none."""
    return adapter.neuron_output_weights(layer) if units is None else units.output_directions(adapter, layer)


def similar_by_weights(adapter: Any, layer: int, k: int = 8, units: Any = None
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``k`` neurons of the same layer whose output directions (rows of ``W_out[layer]``, what each neuron
    writes to the residual stream) are closest by cosine, self excluded: ``(idx [d_mlp, k] int64, cos [d_mlp, k]
    float32)``, most similar first. A neuron with an all-zero output row has no neighbours and is nobody's
    (``-1`` / NaN). None when the model exposes no output weights.

    ``adapter``: a model or :class:`~mri_lens.model.ModelAdapter`. Blocks of ``[1024, d_mlp]`` cosines at a time."""
    import torch

    k = _check_k(k)
    adapter = as_adapter(adapter)
    try:
        w = _output_directions(adapter, layer, units)  # [width, d_model]
    except ModelAdapterError:
        return None
    if w is None:
        return None
    with torch.no_grad():
        w = w.detach().float()
        norm = w.norm(dim=1, keepdim=True)
        unit = torch.where(norm > 0, w / norm.clamp(min=1e-30), torch.full_like(w, float("nan")))
        d = unit.shape[0]
        idx = np.empty((d, k), dtype=np.int64)
        cos = np.empty((d, k), dtype=np.float32)
        for s in range(0, d, _CHUNK):
            sim = (unit[s:s + _CHUNK] @ unit.T).cpu().numpy()  # [chunk, d_mlp]
            sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = np.nan  # self
            idx[s:s + _CHUNK], cos[s:s + _CHUNK] = _top_k_rows(sim, k)
    return idx, cos


def _pooling(scan: Any, pooling: str | None) -> str | None:
    """The pooling to read: ``pooling``, else ``"max"`` when the scan kept it, else its first (None: none kept)."""
    if pooling is not None:
        if pooling not in scan.poolings:
            raise ScanError(f"pooling {pooling!r} was not kept; this scan has {scan.poolings}")
        return pooling
    if not scan.poolings:
        return None
    return "max" if "max" in scan.poolings else scan.poolings[0]


def similar_by_activation(scan: Any, layer: int, k: int = 8,
                          pooling: str | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``k`` neurons of the same layer whose pooled per-document activations correlate most with each neuron's
    (Pearson's r over the scan's documents), self excluded: ``(idx [d_mlp, k] int64, r [d_mlp, k] float32)``,
    highest first, ties by neuron id. A neuron constant over the documents has no correlation: no neighbours, and
    it is nobody's (``-1`` / NaN).

    ``pooling``: which pooled value (default ``"max"`` when the scan kept it, else its first pooling). None when
    the scan kept no pooled values. Blocks of ``[1024, d_mlp]`` correlations at a time; the layer's pooled values
    are held as ``[n_docs, d_mlp]`` float64."""
    k = _check_k(k)
    name = _pooling(scan, pooling)
    if name is None:
        return None
    x = np.asarray(scan.pooled(name, layer), dtype=np.float64)  # [n_docs, d_mlp]
    constant = (x.max(0) == x.min(0)) if len(x) else np.ones(x.shape[1], bool)
    z = x - x.mean(0)
    z /= np.where(constant, 1.0, np.linalg.norm(z, axis=0))
    z[:, constant] = np.nan  # NaN correlations: left out of every list
    d = z.shape[1]
    idx = np.empty((d, k), dtype=np.int64)
    r = np.empty((d, k), dtype=np.float32)
    for s in range(0, d, _CHUNK):
        with np.errstate(invalid="ignore"):
            c = z[:, s:s + _CHUNK].T @ z  # [chunk, d_mlp]
        c[np.arange(len(c)), np.arange(s, s + len(c))] = np.nan  # self
        idx[s:s + _CHUNK], r[s:s + _CHUNK] = _top_k_rows(np.clip(c, -1.0, 1.0), k)
    return idx, r


def category_means(scan: Any, layer: int,
                   pooling: str | None = None) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Mean pooled activation of every neuron of ``layer`` per category of a labelled scan: ``(names [n_cats],
    means [n_cats, d_mlp] float32, counts [n_cats] int64)`` (``counts``: the category's documents; a category
    with none has NaN means). Documents without a label are skipped. ``pooling`` as in
    :func:`similar_by_activation`. None for an unlabelled scan (or one that kept no pooled values)."""
    if scan.labels is None or not scan.label_names:
        return None
    name = _pooling(scan, pooling)
    if name is None:
        return None
    x = np.asarray(scan.pooled(name, layer), dtype=np.float64)  # [n_docs, d_mlp]
    labels = np.asarray(scan.labels, dtype=np.int64)
    names = [str(n) for n in scan.label_names]
    means = np.full((len(names), x.shape[1]), np.nan, dtype=np.float32)
    counts = np.zeros(len(names), dtype=np.int64)
    for c in range(len(names)):
        sel = labels == c
        counts[c] = int(sel.sum())
        if counts[c]:
            means[c] = x[sel].mean(0)
    return names, means, counts


def _vocab_size(adapter: Any) -> int:
    """``d_vocab``: the unembedding's width where the model has one (it may exceed the tokenizer's size), else
    the token embedding's height."""
    try:
        return int(adapter.unembedding().shape[1])
    except ModelAdapterError:
        return int(adapter.input_embedding().shape[0])


def _is_control(text: str) -> bool:
    """Only control characters (Unicode category Cc), whitespace aside."""
    return bool(text) and all(unicodedata.category(c) == "Cc" and not c.isspace() for c in text)


def _round_trips(tok: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``([n] bool, [n] bool)``: decoding id ``i`` alone and encoding the text again gives exactly ``[i]``; the
    decoded text is control characters only."""
    ids = [[i] for i in range(n)]
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:  # the fast tokenizer: batched, in Rust
        from tokenizers import Tokenizer

        # a copy: the model's own keeps whatever padding / truncation its last call set
        backend = Tokenizer.from_str(backend.to_str())
        backend.no_padding()
        backend.no_truncation()
        texts = backend.decode_batch(ids, skip_special_tokens=False)
        again = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    else:
        texts = [tok.decode(i) for i in ids]
        again = [tok.encode(t, add_special_tokens=False) for t in texts]
    return (np.array([a == i for a, i in zip(again, ids)], dtype=bool),
            np.array([_is_control(t) for t in texts], dtype=bool))


def emitted_token_mask(adapter: Any, scan: Any = None, *, controls: bool = False) -> np.ndarray:
    """``[d_vocab]`` bool: True for the tokens the model's tokenizer can emit for some text. A token counts when
    decoding it alone and encoding that text again gives exactly that token (a byte-level BPE's byte tokens that
    are no whole character decode to U+FFFD and fail this), or when it occurs in ``scan``'s stored tokens (it was
    emitted). Special tokens (BOS, EOS, pad, [CLS], [SEP], ...) are always False, as are ids beyond the tokenizer's
    vocabulary (an unembedding padded to a round width). A token that decodes to control characters only (``\\x13``,
    DEL; whitespace such as tab and newline aside) counts only when the scan saw it, unless ``controls=True``:
    real text almost never holds them, so their unembedding rows are barely trained and would crowd out the
    tokens a reader can learn from. A WordPiece continuation (``##ing``) decodes alone to another text and counts
    only when the scan saw it.

    ``adapter``: a model or :class:`~mri_lens.model.ModelAdapter`; ``scan``: a scan of the same model, or None."""
    adapter = as_adapter(adapter)
    tok = adapter.tokenizer
    d_vocab = _vocab_size(adapter)
    n = min(d_vocab, len(tok))
    mask = np.zeros(d_vocab, dtype=bool)
    mask[:n], control = _round_trips(tok, n)
    if not controls:
        mask[:n] &= ~control
    if scan is not None:
        seen = np.asarray(scan.token_ids, dtype=np.int64)
        seen = seen[(seen >= 0) & (seen < d_vocab)]
        mask[np.unique(seen)] = True
    special = set(getattr(tok, "all_special_ids", []) or []) | set(adapter.special_prefix) | \
        set(adapter.special_suffix) | {adapter.pad_token_id}
    mask[[i for i in special if i is not None and 0 <= int(i) < d_vocab]] = False
    return mask


def logit_effects(adapter: Any, layer: int, n_top: int = 10, n_bottom: int = 5, mask: np.ndarray | None = None,
                  units: Any = None) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None, str]:
    """Direct logit effects of every neuron of ``layer``: ``W_out[layer] @ W_U`` ``[d_mlp, d_vocab]`` (the final
    LayerNorm is ignored: a direction, not the logit change a forward pass would show), over the tokens ``mask``
    ``[d_vocab]`` allows (None: every token; :func:`emitted_token_mask` leaves out the ones no text produces).

    Returns ``((top_ids, top_vals, bottom_ids, bottom_vals), "")``, each ``[d_mlp, n_top]`` / ``[d_mlp,
    n_bottom]`` (ids int64, values float32; the largest effects first, the most negative first; ties by token
    id; ``-1`` / NaN where the mask leaves fewer tokens), or ``(None, why)`` when the model has no unembedding
    (an encoder) or no output weights. Blocks of ``[256, d_vocab]`` at a time."""
    import torch

    adapter = as_adapter(adapter)
    try:
        w_out = _output_directions(adapter, layer, units)  # [width, d_model]
        w_u = adapter.unembedding()  # [d_model, d_vocab]
    except ModelAdapterError as e:
        return None, str(e)
    if w_out is None:
        return None, f"{units.describe_short()} have no output direction in the residual stream"
    n_top, n_bottom = _check_k(n_top), _check_k(n_bottom)
    d_vocab = int(w_u.shape[1])
    keep = np.ones(d_vocab, bool) if mask is None else np.asarray(mask, dtype=bool)
    if keep.shape != (d_vocab,):
        raise ValueError(f"mask must be [d_vocab] = [{d_vocab}] booleans, got shape {keep.shape}")
    d = int(w_out.shape[0])
    out = (np.empty((d, n_top), np.int64), np.empty((d, n_top), np.float32),
           np.empty((d, n_bottom), np.int64), np.empty((d, n_bottom), np.float32))
    with torch.no_grad():
        w_u = w_u.detach().float()
        for s in range(0, d, _LOGIT_CHUNK):
            w = w_out[s:s + _LOGIT_CHUNK].detach().float().to(w_u.device)
            eff = (w @ w_u).cpu().numpy()  # [chunk, d_vocab]
            eff[:, ~keep] = -np.inf  # left out (in place: a [chunk, d_vocab] copy costs more than the ranking)
            out[0][s:s + _LOGIT_CHUNK], out[1][s:s + _LOGIT_CHUNK] = _top_k_rows(eff, n_top)
            np.negative(eff, out=eff)
            eff[:, ~keep] = -np.inf
            ids, vals = _top_k_rows(eff, n_bottom)
            out[2][s:s + _LOGIT_CHUNK], out[3][s:s + _LOGIT_CHUNK] = ids, -vals
    return out, ""


def example_attribution(model: Any, scan: Any, layer: int, docs: dict[int, list[int]], batch_size: int = 16,
                        progress: bool = False) -> np.ndarray:
    """For each neuron ``n`` in ``docs``, the attribution-patching estimate of the mean change in next-token loss
    when ``n`` is zero-ablated, over the predicted tokens of its own documents ``docs[n]`` (scan document ids,
    e.g. its top examples): ``[d_mlp]`` float32, NaN for neurons not in ``docs`` (or whose documents predict
    nothing), all NaN for an encoder (no next-token loss).

    One forward and one backward pass per batch of the union of all the documents
    (:func:`mri_lens.effects.attribution_by_doc`): neuron ``n`` gets ``sum_{d in docs[n]} sum_pos (0 - a_n) g_n``
    over the summed predictions of its documents, the value :func:`mri_lens.effects.attribution` gives on
    ``docs[n]`` alone. :func:`example_attribution_by_layer` does several layers in the same passes."""
    return example_attribution_by_layer(model, scan, {layer: docs}, batch_size=batch_size, progress=progress)[layer]


def _doc_pairs(docs: dict[int, list[int]], d_mlp: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(neuron, document)`` pairs of ``docs``, each once, sorted: ``([n_pairs], [n_pairs])`` int64."""
    pairs = sorted({(int(n), int(doc)) for n, ds in docs.items() for doc in ds})
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pn, pdoc = (np.asarray(a, dtype=np.int64) for a in zip(*pairs))
    if pn.min() < 0 or pn.max() >= d_mlp:
        raise ScanError(f"neurons must be in 0..{d_mlp - 1}")
    return pn, pdoc


def example_attribution_by_layer(model: Any, scan: Any, docs: dict[int, dict[int, list[int]]],
                                 batch_size: int = 16, layers_per_pass: int | None = None,
                                 progress: bool = False) -> dict[int, np.ndarray]:
    """:func:`example_attribution` for several layers at once: ``docs`` is ``{layer: {neuron: [doc ids]}}``, the
    result ``{layer: [d_mlp] float32}``, each the same as :func:`example_attribution` on that layer alone.

    One forward and one backward pass per batch of the union of every layer's documents measures up to
    ``layers_per_pass`` layers (default: all; fewer hold fewer ``[batch, pos, d_mlp]`` gradients at once)."""
    adapter = as_adapter(model)
    d_mlp = int(scan.d_mlp)
    layers = sorted(int(l) for l in docs)
    out = {l: np.full(d_mlp, np.nan, dtype=np.float32) for l in layers}
    if not adapter.is_causal:
        return out
    pairs = {l: _doc_pairs(docs[l], d_mlp) for l in layers}
    layers = [l for l in layers if len(pairs[l][0])]
    step = len(layers) if layers_per_pass is None else max(1, int(layers_per_pass))
    for g in range(0, len(layers), step):
        group = layers[g:g + step]
        num = {l: np.zeros(d_mlp) for l in group}
        den = {l: np.zeros(d_mlp) for l in group}
        union = np.unique(np.concatenate([pairs[l][1] for l in group]))
        for s in range(0, len(union), _DOC_CHUNK):
            parts = attribution_by_doc(adapter, group, scan=scan, docs=union[s:s + _DOC_CHUNK].tolist(),
                                       batch_size=batch_size, progress=progress)
            for l in group:
                _add_doc_scores(parts[l], *pairs[l], num[l], den[l])
        for l in group:
            has = den[l] > 0
            out[l][has] = (num[l][has] / den[l][has]).astype(np.float32)
    return out


def _add_doc_scores(part: Any, pn: np.ndarray, pdoc: np.ndarray, num: np.ndarray, den: np.ndarray) -> None:
    """Add to each neuron's ``num`` / ``den`` ``[d_mlp]`` the scores / predictions of its documents in ``part`` (a
    :class:`~mri_lens.effects.DocScores`); ``pn``, ``pdoc``: the ``(neuron, document)`` pairs."""
    row_of = {int(doc): i for i, doc in enumerate(part.docs.tolist())}
    sel = np.isin(pdoc, part.docs)
    rows = np.asarray([row_of[int(doc)] for doc in pdoc[sel]], dtype=np.int64)
    num += np.bincount(pn[sel], weights=part.scores[rows, pn[sel]], minlength=len(num))
    den += np.bincount(pn[sel], weights=part.n_tokens[rows], minlength=len(den))
