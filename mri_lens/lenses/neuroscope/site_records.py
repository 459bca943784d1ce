"""One record per neuron of the Neuroscope site, as the viewer reads it (short keys keep the data files small):

``n`` neuron; ``s`` statistics ``[max, min, mean, std, density, median, p90, p99, coverage]``; ``h`` histogram
``[first bin, counts...]`` over the scan's bins; ``tt`` top tokens ``[token, count, ...]`` (their max tokens over
the top examples); ``ex`` examples per section (``top``, ``b0``.., ``rnd``), each ``[doc, start, max position in
the snippet, max, min, scale, tokens, activations]`` (see :mod:`.site_data`); ``lg`` logit effects ``[top tokens,
values, bottom tokens, values]``; ``sw`` / ``sa`` similar neurons by output weights / pooled activations ``[ids,
values]``; ``cm`` mean activation per category; ``ab`` estimated loss change when ablated on its top examples;
``g`` its N2G graph ``{"svg", "scores"}``; ``ln`` links ``[[text, url], ...]``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .site_data import ExamplePlan, LayerExamples, encode_ints, sig

__all__ = ["LayerFacts", "layer_facts", "neuron_records", "graph_record", "index_row"]


@dataclass
class LayerFacts:
    """What a layer's pages show beside the examples (:mod:`.neuron_facts`), each None when not available:
    similar neurons by weights and by activation ``(idx [d_mlp, k], value [d_mlp, k])``, category means
    ``(names, [n_cats, d_mlp], counts)``, logit effects ``(top ids, values, bottom ids, values)`` with the reason
    when missing, the ablation estimate ``[d_mlp]``."""

    weights: tuple[np.ndarray, np.ndarray] | None = None
    activation: tuple[np.ndarray, np.ndarray] | None = None
    categories: tuple[list[str], np.ndarray, np.ndarray] | None = None
    logits: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    no_logits: str = ""
    ablation: np.ndarray | None = None
    logit_tokens: dict[int, int] = field(default_factory=dict)  # vocabulary id -> token table index


def layer_facts(adapter: Any, scan, layer: int, n_logits: tuple[int, int], mask: np.ndarray | None) -> LayerFacts:
    """Everything but the ablation estimate (which needs the examples): cheap, from weights and the scan."""
    from . import neuron_facts as nf

    from ...model.units import units_for_scan

    units = units_for_scan(scan)  # MLP neurons, or the scan's other units (their own output directions)
    logits, why = nf.logit_effects(adapter, layer, n_logits[0], n_logits[1], mask=mask, units=units)
    return LayerFacts(weights=nf.similar_by_weights(adapter, layer, units=units), activation=nf.similar_by_activation(scan, layer),
                      categories=nf.category_means(scan, layer), logits=logits, no_logits=why)


def graph_record(g: Any) -> dict[str, Any]:
    """A neuron's N2G graph for the viewer: its SVG (drawn and escaped by the N2G lens) and its scores, any
    ``{explainer: {score: value}}`` plus plain facts, floats rounded."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (bool, np.bool_)) or v is None or isinstance(v, str):
            return bool(v) if isinstance(v, np.bool_) else v
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return sig(v)
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return str(v)

    return {"svg": g.to_svg(), "scores": clean(g.scores or {})}


def load_graph(n2g: Any, layer: int, n: int) -> Any:
    """Neuron ``n``'s graph from ``n2g`` (a ``{(layer, neuron): graph}`` mapping or an N2G output directory), or
    None."""
    if n2g is None:
        return None
    if isinstance(n2g, dict):
        return n2g.get((layer, n))
    from ..n2g import NeuronGraph

    path = os.path.join(os.fspath(n2g), f"L{layer}", f"N{n}.json")
    return NeuronGraph.load(path, follow_symlinks=False) if os.path.lexists(path) else None


def _pairs(arrs: tuple[np.ndarray, np.ndarray] | None, n: int) -> list | None:
    if arrs is None:
        return None
    idx, val = arrs[0][n], arrs[1][n]
    keep = idx >= 0
    return [idx[keep].tolist(), [sig(v, 3) for v in val[keep]]]


def _logits(f: LayerFacts, n: int) -> list | None:
    if f.logits is None:
        return None
    out = []
    for ids, vals in ((f.logits[0][n], f.logits[1][n]), (f.logits[2][n], f.logits[3][n])):
        keep = ids >= 0
        out += [[f.logit_tokens[int(i)] for i in ids[keep]], [sig(v, 3) for v in vals[keep]]]
    return out


def _example(plan_doc: int, ex: LayerExamples, r: int, doc_codes: dict[int, str], width: int) -> list:
    start = int(ex.start[r])
    n_tok = len(ex.acts[r])
    toks = doc_codes[plan_doc][start * width:(start + n_tok) * width]
    return [plan_doc, start, int(ex.pos[r]) - start, sig(ex.vmax[r]), sig(ex.vmin[r]), sig(ex.scale[r]), toks,
            ex.acts[r]]


def neuron_records(scan, layer: int, ids: list[int], plan: ExamplePlan, ex: LayerExamples, facts: LayerFacts,
                   doc_codes: dict[int, str], doc_tokens: dict[int, np.ndarray], width: int, stats: dict[str, Any],
                   links: dict[tuple[int, int], list[list[str]]], n2g: Any) -> dict[int, dict]:
    """Every record of one layer (see the module docstring). ``doc_codes``: each document's encoded tokens;
    ``doc_tokens``: their token table indices; ``stats``: ``{"q": quantiles [3, d_mlp]}`` of the layer;
    ``links``: ``{(layer, neuron): [[text, url], ...]}`` (checked URLs)."""
    li = scan.layer_index(layer)
    s = scan.stats
    by_neuron: dict[int, dict[str, list]] = {n: {} for n in ids}
    top_tokens: dict[int, Counter] = {n: Counter() for n in ids}
    coverage: dict[int, list[float]] = {n: [] for n in ids}
    for r in np.lexsort((plan.rank, plan.section, plan.neuron)).tolist():
        n, sec, d = int(plan.neuron[r]), int(plan.section[r]), int(plan.doc[r])
        name = "top" if sec == 0 else ("rnd" if sec < 0 else f"b{sec - 1}")
        by_neuron[n].setdefault(name, []).append(_example(d, ex, r, doc_codes, width))
        if sec == 0:
            top_tokens[n][int(doc_tokens[d][int(ex.pos[r])])] += 1
            coverage[n].append(float(ex.coverage[r]))
    out = {}
    for n in ids:
        cov = float(np.mean(coverage[n])) if coverage[n] else 0.0
        h = s.hist_counts[li, n]
        nz = np.flatnonzero(h)
        q = stats["q"][:, n]
        rec: dict[str, Any] = {
            "n": n, "s": [sig(v) for v in (s.max[li, n], s.min[li, n], s.mean[li, n], s.std[li, n],
                                           s.frac_positive[li, n], q[0], q[1], q[2], cov)],
            "h": [int(nz[0])] + h[nz[0]:nz[-1] + 1].astype(int).tolist() if len(nz) else [0],
            "tt": [x for t, c in sorted(top_tokens[n].items(), key=lambda kv: (-kv[1], kv[0]))[:5] for x in (t, c)],
            "ex": by_neuron[n]}
        for key, val in (("lg", _logits(facts, n)), ("sw", _pairs(facts.weights, n)),
                         ("sa", _pairs(facts.activation, n))):
            if val is not None:
                rec[key] = val
        if facts.categories is not None:
            rec["cm"] = [sig(v) for v in facts.categories[1][:, n]]
        if facts.ablation is not None:
            rec["ab"] = sig(facts.ablation[n])
        g = load_graph(n2g, layer, n)
        if g is not None:
            rec["g"] = graph_record(g)
        if links.get((layer, n)):
            rec["ln"] = links[(layer, n)]
        out[n] = rec
    return out


def index_row(rec: dict[str, Any]) -> list:
    """The index's row of a neuron: ``[neuron, max, mean, density, coverage, loss change, top tokens]``."""
    st = rec["s"]
    return [rec["n"], st[0], st[2], st[4], st[8], rec.get("ab"), rec["tt"]]


def encode_doc(idx: np.ndarray, width: int) -> str:
    """A document's token table indices ``[n_tokens]`` as one string."""
    return encode_ints(idx, width)
