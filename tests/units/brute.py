"""Brute-force references for unit scans: each document alone, unpadded, the model's own cache, numpy pooling."""

from __future__ import annotations

import numpy as np
import torch

import mri_lens as ml
from mri_lens.model.unit_base import HOOK_KINDS

TEXTS = ["def add(a, b):\n    return a + b", "import os\nprint(os.getcwd())", "The cat sat on the mat.",
         "class Stack:\n    def __init__(self):\n        self.items = []", "for i in range(10):\n    total += i",
         "A river flows through the old town.", "x = [n * n for n in range(5)]", "Hello world, again and again."]


def tl_per_token(model, scan, layers, hook, encode=None):
    """``[doc][layer] -> [n_tokens, width]`` from ``run_with_cache`` on each scanned document alone (its exact
    tokens); ``hook``: a kind of HOOK_KINDS or a template; ``encode(layer, x)`` applied after (latents)."""
    template = HOOK_KINDS[hook][0] if hook in HOOK_KINDS else hook
    out = []
    with torch.inference_mode():
        for d in range(scan.n_docs):
            toks = torch.tensor([scan.tokens(d).tolist()])
            _, cache = model.run_with_cache(toks)
            per = {}
            for l in layers:
                x = cache[template.format(layer=l)][0].float()
                x = x.flatten(1) if x.dim() == 3 else x
                per[l] = (encode(l, x) if encode else x).cpu().numpy()
            out.append(per)
    return out


def check_scan(scan, acts, skip: int, atol: float = 1e-5) -> None:
    """The scan's pooled mean/max, token statistics and top-k documents equal numpy over ``acts``."""
    layers = scan.layers
    for li, l in enumerate(layers):
        docs = [a[l][skip:] for a in acts]
        mean = np.stack([x.mean(0) for x in docs])
        mx = np.stack([x.max(0) for x in docs])
        np.testing.assert_allclose(scan.pooled("mean")[:, li], mean, atol=atol, rtol=1e-5)
        np.testing.assert_allclose(scan.pooled("max")[:, li], mx, atol=atol, rtol=1e-5)
        allt = np.concatenate(docs)
        np.testing.assert_allclose(scan.stats.mean[li], allt.mean(0), atol=atol, rtol=1e-5)
        np.testing.assert_allclose(scan.stats.std[li], allt.std(0), atol=10 * atol, rtol=1e-4)
        np.testing.assert_allclose(scan.stats.max[li], allt.max(0), atol=atol, rtol=1e-5)
        # top document of each unit: the document of the largest max (ties: any document with that max)
        best = scan.top.docs[li, :, 0]
        np.testing.assert_allclose(mx[best, np.arange(mx.shape[1])], mx.max(0), atol=atol, rtol=1e-5)


def scan_of(model, units, **kw):
    return ml.scan(model, TEXTS, units=units, batch_size=3, progress=False, **kw)
