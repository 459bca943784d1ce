"""Neuroscope lens: neuron pages and an offline static site built from a scan.

``index.html`` -> one table per layer (sortable by max activation, density, coverage; filter by top tokens) -> one
page per neuron: top examples (snippet of 50 tokens before / 10 after the max token, full text folded), examples
from activation bands and random examples (against interpretability illusions), histogram, statistics, direct logit
effects, previous / next / random navigation (the page itself is drawn by :mod:`.neuron_page`). Every page links
one shared ``assets/site.css`` and ``assets/site.js`` by relative paths, so the site works from ``file://`` with no
network. Every token is escaped.

>>> ml.neuroscope.site(scan, model, "runs/x/site", layers=[0, 1])   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np

from ...storage.write import claim_dir
from ...errors import ModelAdapterError, ScanError
from ...render.html import escape, json_for_html, write_page
from .neuron_page import LayerPages, neuron_page

__all__ = ["site"]

SITE_KIND = "mri_lens.site"  # the manifest format of a site directory


def _write(out_dir: str, rel: str, title: str, body: str) -> str:
    """One page of the site, linking the site's shared ``assets/site.css`` and ``assets/site.js`` relatively."""
    return write_page(os.path.join(out_dir, rel), title, body, site=True, assets=out_dir, owned=True)


def _logit_effects(adapter: Any, layer: int, scan: Any = None) -> tuple[np.ndarray | None, str]:
    """Direct effect of each neuron of ``layer`` on the logits, ``W_out[layer] @ W_U`` ``[d_mlp, d_vocab]`` (final
    LayerNorm ignored), read through the adapter: ``(effects, "")``, or ``(None, why)`` when the model has no
    unembedding (an encoder, a model without its language-model head)."""
    import torch

    from ...model.units import units_for_scan

    try:
        units = units_for_scan(scan) if scan is not None else None
        # [d_mlp, d_model]; other units: their own output directions (an SAE latent's decoder row)
        w_out = adapter.neuron_output_weights(layer) if units is None else units.output_directions(adapter, layer)
        if w_out is None:
            return None, f"{units.describe_short()} have no output direction in the residual stream"
        w_u = adapter.unembedding()  # [d_model, d_vocab]
    except ModelAdapterError as e:
        return None, str(e)
    with torch.no_grad():
        return (w_out.float() @ w_u.to(w_out.device).float()).cpu().numpy(), ""


def site(scan, model: Any, out_dir: str | os.PathLike, *, layers: Sequence[int] | None = None,
                    neurons: Sequence[int] | None = None, k: int = 20, bands: Sequence[float] = (0.25, 0.5, 0.75),
                    per_band: int = 2, n_random: int = 5, n_logits: tuple[int, int] = (10, 5), seed: int = 0,
                    batch_size: int = 16, links: Callable[[int, int], list[tuple[str, str]]] | None = None,
                    title: str | None = None, n2g: Any = None, overwrite: bool = False) -> str:
    """Build the static Neuroscope site of ``scan`` in ``out_dir``. Returns the absolute path of ``index.html``.

    ``out_dir`` must be free, empty or an earlier site (its ``manifest.json`` says so); anything else is refused
    before any work unless ``overwrite=True`` (which writes beside foreign files, never removing them).

    Parameters
    ----------
    scan: a :class:`~mri_lens.results.scan.Scan` of ``model``.
    model: the model that was scanned (per-token activations of the examples are recomputed from it, batched).
    layers: model layer numbers (default: every scanned layer); each must be in the scan.
    neurons: neuron ids per layer (default: all ``d_mlp``).
    k: top examples per neuron (at most the scan's ``top_k``).
    bands: activation bands as fractions of the neuron's top value: examples whose document max falls in
        ``(bands[i] * top, bands[i+1] * top]`` (the last band ends at the top value), ``per_band`` per band, top
        examples excluded; needs the scan's ``"max"`` pooling (otherwise the section says so).
    n_random: random documents per neuron (seeded by ``seed``, layer and neuron: the same inputs give identical
        files).
    links: optional ``f(layer, neuron) -> [(text, relative_url)]`` for links to other lenses (MRI region, N2G
        graph) when those exist; relative or http(s)/file URLs only (``ValueError`` otherwise, see
        :func:`mri_lens.render.html.check_link_url`).
    n2g: N2G graphs to show on neuron pages (inline SVG and scores): ``{(layer, neuron): NeuronGraph}``, or the
        ``out_dir`` of :func:`mri_lens.lenses.n2g.explain_layer` (graphs are read from ``L{layer}/N{neuron}.json``).
    """
    from ...model.adapter import as_adapter

    adapter = as_adapter(model)
    layers = list(scan.layers) if layers is None else [int(l) for l in layers]
    ids = _checked_site_args(scan, adapter, layers, neurons, k)
    bands = sorted(float(b) for b in bands)
    out_dir = claim_dir(out_dir, SITE_KIND, overwrite=overwrite)

    str_cache: dict[int, list[str]] = {}

    def stoks(doc: int) -> list[str]:
        if doc not in str_cache:
            str_cache[doc] = scan.str_tokens(doc)
        return str_cache[doc]

    has_max = "max" in scan.poolings
    search: list[list[Any]] = []
    layer_rows = []
    for l in layers:
        li = scan.layer_index(l)
        ranked = _examples_for_layer(scan, li, ids, k, bands, per_band, n_random, seed, has_max)
        pages = LayerPages(scan=scan, adapter=adapter, li=li, layer=l,
                           acts=_example_activations(adapter, scan, l, ranked, batch_size), stoks=stoks,
                           effects=_logit_effects(adapter, l, scan), n_logits=n_logits, has_max=has_max, bands=bands,
                           links=links)
        rows = _write_neuron_pages(out_dir, pages, ids.tolist(), ranked, seed, n2g)
        search.extend([l, n, toks_txt] for n, _, _, _, toks_txt in rows)
        _write_layer_page(out_dir, l, rows, scan)
        layer_rows.append((l, len(rows), float(np.median([r[1] for r in rows])),
                           float(np.median([r[2] for r in rows]))))
    return _write_index(out_dir, scan, title, layer_rows, search)


def _checked_site_args(scan, adapter: Any, layers: list[int], neurons: Sequence[int] | None, k: int) -> np.ndarray:
    """The neuron ids of the site ``[n]``, after checking the layers, the model against the scan and ``k``."""
    for l in layers:
        scan.layer_index(l)
    if adapter.d_mlp is not None and int(adapter.d_mlp) != scan.d_mlp and scan.meta.get("units", {}).get(
            "kind", "mlp_post") == "mlp_post":
        raise ScanError(f"the model has d_mlp={adapter.d_mlp} but the scan has {scan.d_mlp}: pass the scanned model")
    ids = np.arange(scan.d_mlp) if neurons is None else np.unique(np.asarray(list(neurons), dtype=np.int64))
    if len(ids) == 0 or ids.min() < 0 or ids.max() >= scan.d_mlp:
        raise ScanError(f"neurons must be in 0..{scan.d_mlp - 1}")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    return ids


def _example_activations(adapter: Any, scan, layer: int, ranked: dict[int, dict[str, list[int]]],
                         batch_size: int) -> dict[tuple[int, int], np.ndarray]:
    """Per-token activations ``[n_tokens]`` of every needed ``(doc, neuron)``, recomputed in batches of
    documents."""
    from ...model.capture import scan_token_activations

    need: dict[int, set[int]] = {}
    for n, ex in ranked.items():
        for section in ex.values():
            for doc in section:
                need.setdefault(doc, set()).add(n)
    docs = sorted(need)
    acts: dict[tuple[int, int], np.ndarray] = {}
    for b in range(0, len(docs), batch_size):
        chunk = docs[b:b + batch_size]
        for doc, a in zip(chunk, scan_token_activations(adapter, scan, chunk, layer)):
            for n in need[doc]:
                acts[(doc, n)] = np.asarray(a[:, n], dtype=np.float32)
    return acts


def _write_neuron_pages(out_dir: str, pages: LayerPages, id_list: list[int], ranked: dict[int, dict[str, list[int]]],
                        seed: int, n2g: Any) -> list[tuple[int, float, float, float, str]]:
    """Every neuron page of one layer; returns the layer page's rows ``(neuron, max, density, coverage, top
    tokens)``."""
    scan, li, l = pages.scan, pages.li, pages.layer
    rows = []
    for j, n in enumerate(id_list):
        ex = ranked[n]
        toks_txt, coverage = _top_tokens(pages, n, ex["top"])
        rng = np.random.default_rng([seed, l, n, 1])
        nav = {"prev": id_list[j - 1] if j > 0 else None,
               "next": id_list[j + 1] if j + 1 < len(id_list) else None,
               "random": int(rng.choice(id_list))}
        body = neuron_page(pages, n, ex, nav, coverage, toks_txt, _n2g_html(n2g, l, n))
        _write(out_dir, os.path.join(f"L{l}", f"N{n}.html"), f"L{l} N{n}", body)
        s = scan.stats
        rows.append((n, float(s.max[li, n]), float(s.frac_positive[li, n]), coverage, toks_txt))
    return rows


def _top_tokens(pages: LayerPages, n: int, top_docs: list[int]) -> tuple[str, float]:
    """Neuron ``n``'s five most frequent max tokens over its top examples, and its coverage (mean fraction of
    their tokens above half the neuron's max)."""
    top_tokens = Counter()
    cov = []
    nmax = float(pages.scan.stats.max[pages.li, n])
    for doc in top_docs:
        a = pages.acts[(doc, n)]
        top_tokens[pages.stoks(doc)[int(np.argmax(a))]] += 1
        cov.append(float(np.mean(a > 0.5 * nmax)) if nmax > 0 else 0.0)
    toks_txt = " ".join(repr(t)[1:-1] for t, _ in sorted(top_tokens.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
    return toks_txt, float(np.mean(cov)) if cov else 0.0


def _write_index(out_dir: str, scan, title: str | None, layer_rows: list[tuple[int, int, float, float]],
                 search: list[list[Any]]) -> str:
    name = title or f"mri_lens Neuroscope: {scan.meta.get('model_id', 'model')}"
    body = [f"<h1>{escape(name)}</h1>",
            f"<p>{scan.n_docs} documents, {scan.stats.count} tokens counted. Colour scale per page: blue (negative) "
            "to red (positive), relative to the neuron's top activation.</p>",
            "<table><thead><tr><th>layer</th><th>neurons</th><th>median max</th><th>median density</th></tr></thead>"
            "<tbody>" + "".join(f"<tr><td><a href='L{l}/index.html'>layer {l}</a></td><td>{c}</td><td>{m:.3f}</td>"
                                f"<td>{d:.3f}</td></tr>" for l, c, m, d in layer_rows) + "</tbody></table>",
            "<h2>Search top tokens</h2><input id='search' class='search' placeholder='token, e.g. def'>"
            "<ul id='results'></ul>",
            f"<script type='application/json' id='search-data'>{json_for_html(search)}</script>"]
    return _write(out_dir, "index.html", name, "\n".join(body))


def _examples_for_layer(scan, li: int, ids: np.ndarray, k: int, bands: list[float], per_band: int, n_random: int,
                        seed: int, has_max: bool) -> dict[int, dict[str, list[int]]]:
    """Documents per neuron and section: ``{"top": [...], "band0": [...], ..., "random": [...]}``."""
    pooled_max = scan.pooled("max", layer=scan.layers[li]) if has_max else None  # [n_docs, d_mlp], one layer
    layer = scan.layers[li]
    out = {}
    for n in ids.tolist():
        docs = scan.top.docs[li, n]
        top = [int(d) for d in docs[docs >= 0][:k]]
        ex: dict[str, list[int]] = {"top": top}
        rng = np.random.default_rng([seed, layer, n])
        if pooled_max is not None and top:
            v = pooled_max[:, n].astype(np.float64)
            topv = float(scan.top.values[li, n, 0])
            excl = np.zeros(len(v), bool)
            excl[top] = True
            bounds = bands + [1.0]
            for i in range(len(bands)):
                lo, hi = bounds[i] * topv, bounds[i + 1] * topv
                cand = np.flatnonzero((v > lo) & (v <= hi) & ~excl)
                pick = rng.choice(cand, size=min(per_band, len(cand)), replace=False) if len(cand) else []
                ex[f"band{i}"] = sorted((int(d) for d in pick), key=lambda d: (-v[d], d))
        m = min(n_random, scan.n_docs)
        ex["random"] = sorted(int(d) for d in rng.choice(scan.n_docs, size=m, replace=False)) if m else []
        out[n] = ex
    return out


def _n2g_html(n2g: Any, layer: int, n: int) -> str:
    """The N2G section of a neuron page, or "" when no graph of that neuron is available."""
    if n2g is None:
        return ""
    from ..n2g import NeuronGraph, site_section

    if isinstance(n2g, dict):
        g = n2g.get((layer, n))
    else:
        path = os.path.join(os.fspath(n2g), f"L{layer}", f"N{n}.json")
        g = NeuronGraph.load(path, follow_symlinks=False) if os.path.lexists(path) else None
    return site_section(g) if g is not None else ""


def _write_layer_page(out_dir: str, layer: int, rows, scan) -> None:
    body = [f"<nav><a href='../index.html'>index</a></nav><h1>Layer {layer}</h1>",
            "<p>Click a column header to sort. Density: fraction of all counted tokens where the neuron is &gt; 0. "
            "Coverage: mean fraction of the top examples' tokens above half the neuron's max.</p>",
            "<input id='filter' class='search' placeholder='filter by top token'>",
            "<table><thead><tr><th class='sortable'>neuron</th><th class='sortable'>max</th>"
            "<th class='sortable'>density</th><th class='sortable'>coverage</th><th>top tokens</th></tr></thead>"
            "<tbody>"]
    for n, mx, dens, cov, toks in rows:
        body.append(f"<tr data-tokens='{escape(toks)}'><td data-v='{n}'><a href='N{n}.html'>N{n}"
                    f"</a></td><td data-v='{mx:.6g}'>{mx:.3f}</td><td data-v='{dens:.6g}'>{dens:.3f}</td>"
                    f"<td data-v='{cov:.6g}'>{cov:.3f}</td><td class='snip'>{escape(toks)}</td></tr>")
    body.append("</tbody></table>")
    _write(out_dir, os.path.join(f"L{layer}", "index.html"), f"Layer {layer}", "\n".join(body))
