"""Independent brute-force reference: each document alone, unpadded, full run_with_cache, numpy pooling."""

from __future__ import annotations

import numpy as np
import torch


def per_token_activations(model, seqs, layers, hook="blocks.{layer}.mlp.hook_post"):
    """For each token sequence: {layer: ndarray [n_tokens, d_mlp]} from a plain run_with_cache, one document at
    a time (no padding, no mask, nothing from mri_lens' capture code)."""
    out = []
    with torch.inference_mode():
        for s in seqs:
            _, cache = model.run_with_cache(torch.tensor([list(s)]))
            out.append({l: cache[hook.format(layer=l)][0].float().cpu().numpy() for l in layers})
    return out


def pool_document(doc, layers, res, tokens_all) -> None:
    """Append one document's numpy pooling (mean, max, min, last) to ``res`` and its tokens to ``tokens_all``.
    ``doc``: {layer: [n_counted_tokens, d_mlp]}."""
    for l in layers:
        tokens_all[l].append(doc[l])
    res["mean"].append(np.stack([doc[l].mean(0) for l in layers]))
    res["max"].append(np.stack([doc[l].max(0) for l in layers]))
    res["min"].append(np.stack([doc[l].min(0) for l in layers]))
    res["last"].append(np.stack([doc[l][-1] for l in layers]))


def reference(model, seqs_per_doc, layers, skip_first: int):
    """Pooled values, token statistics and per-document max/argmax computed in numpy.

    seqs_per_doc: for each document, its list of input sequences (windows), special tokens included.
    skip_first: special tokens at the start of every sequence left out of statistics (BOS).
    """
    flat = [s for segs in seqs_per_doc for s in segs]
    acts = per_token_activations(model, flat, layers)
    res = {"mean": [], "max": [], "min": [], "last": [], "argmax": [], "argmin": []}
    doc_acts = []  # per document [L, n_tokens, d], indexed by position in the document's stored tokens
    tokens_all = {l: [] for l in layers}
    k = 0
    for segs in seqs_per_doc:
        per_layer = {l: [] for l in layers}
        positions = []
        off = 0
        for s in segs:
            a = acts[k]
            k += 1
            for l in layers:
                per_layer[l].append(a[l][skip_first:])
            positions.append(np.arange(skip_first, len(s)) + off)
            off += len(s)
        pos = np.concatenate(positions)
        doc = {l: np.concatenate(per_layer[l]) for l in layers}
        full = np.full((len(layers), off, doc[layers[0]].shape[1]), np.nan, dtype=np.float32)
        for li, l in enumerate(layers):
            full[li, pos] = doc[l]
        doc_acts.append(full)
        pool_document(doc, layers, res, tokens_all)
        res["argmax"].append(np.stack([pos[doc[l].argmax(0)] for l in layers]))
        res["argmin"].append(np.stack([pos[doc[l].argmin(0)] for l in layers]))
    out = {key: np.stack(v) for key, v in res.items()}  # [n_docs, L, d]
    out["tokens"] = np.stack([np.concatenate(tokens_all[l]) for l in layers])  # [L, T, d]
    out["doc_acts"] = doc_acts
    return out


def topk_reference(values: np.ndarray, k: int, largest: bool = True):
    """Per neuron: documents ranked by value (ties by smaller document index). values: [n_docs, d]."""
    n_docs, d = values.shape
    docs = np.empty((d, min(k, n_docs)), dtype=np.int64)
    for j in range(d):
        v = values[:, j]
        order = np.lexsort((np.arange(n_docs), -v if largest else v))
        docs[j] = order[:k]
    return docs
