"""Neuroscope lens: neuron pages and an offline static site built from a scan.

``index.html`` -> one table per layer (sortable by max activation, density, coverage; filter by top tokens) -> one
page per neuron: top examples (snippet of 50 tokens before / 10 after the max token, full text folded), examples
from activation bands and random examples (against interpretability illusions), histogram, statistics, direct logit
effects, previous / next / random navigation. Every page links one shared ``assets/site.css`` and
``assets/site.js`` by relative paths, so the site works from ``file://`` with no network. Every token is escaped.

>>> ml.neuroscope.site(scan, model, "runs/x/site", layers=[0, 1])   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np

from ...storage.write import claim_dir
from ...errors import ModelAdapterError, ScanError
from ...render.html import N_LEVELS, check_link_url, escape, escape_token, json_for_html, write_page

__all__ = ["site"]

SITE_KIND = "mri_lens.site"  # the manifest format of a site directory


def _write(out_dir: str, rel: str, title: str, body: str) -> str:
    """One page of the site, linking the site's shared ``assets/site.css`` and ``assets/site.js`` relatively."""
    return write_page(os.path.join(out_dir, rel), title, body, site=True, assets=out_dir, owned=True)


def _level_class(a: float, vmax: float) -> str:
    if vmax <= 0 or a == 0 or not np.isfinite(a):
        return ""
    lvl = int(min(N_LEVELS, np.ceil(abs(a) / vmax * N_LEVELS)))
    return ("p" if a > 0 else "n") + str(lvl)


def _snippet_html(toks: list[str], acts: np.ndarray, pos: int, vmax: float, before: int = 50,
                  after: int = 10) -> str:
    start = max(0, pos - before)
    end = min(len(toks), pos + after + 1)
    out = []
    for t in range(start, end):
        a = float(acts[t])
        cls = _level_class(a, vmax) + (" mx" if t == pos else "")
        c = f" class='{cls.strip()}'" if cls.strip() else ""
        out.append(f"<span{c} title='{a:.2f}'>{escape_token(toks[t])}</span>")
    return ("&#8230;" if start > 0 else "") + "".join(out) + ("&#8230;" if end < len(toks) else "")


def _full_html(toks: list[str], pos: int) -> str:
    return "".join(f"<mark>{escape_token(t)}</mark>" if i == pos else escape_token(t) for i, t in enumerate(toks))


def _hist_svg(counts: np.ndarray, edges: np.ndarray, vmin: float, vmax: float) -> str:
    """Inline SVG histogram of one neuron (log scale counts). ``counts`` ``[len(edges) + 1]``, open end bins."""
    nz = np.flatnonzero(counts)
    if not len(nz):
        return "<p class='muted'>no counted tokens</p>"
    a, b = int(nz[0]), int(nz[-1])
    c = counts[a:b + 1].astype(np.float64)
    h = np.log10(1 + c)
    w, H = 600, 120
    bw = w / len(c)
    bars = "".join(f"<rect x='{i * bw:.1f}' y='{H - hh / h.max() * H:.1f}' width='{max(bw - 0.5, 0.5):.1f}' "
                   f"height='{hh / h.max() * H:.1f}' fill='#d7301f'><title>{int(cc)}</title></rect>"
                   for i, (hh, cc) in enumerate(zip(h, c)) if cc > 0)
    lo = vmin if a == 0 else float(edges[a - 1])
    hi = vmax if b == len(edges) else float(edges[b])
    return (f"<svg class='hist' width='{w}' height='{H + 18}' viewBox='0 0 {w} {H + 18}'>{bars}"
            f"<text x='0' y='{H + 14}' font-size='11'>{lo:.3g}</text>"
            f"<text x='{w}' y='{H + 14}' font-size='11' text-anchor='end'>{hi:.3g}</text></svg>"
            "<div class='muted'>token count per activation bin (log scale)</div>")


def _logit_effects(adapter: Any, layer: int) -> tuple[np.ndarray | None, str]:
    """Direct effect of each neuron of ``layer`` on the logits, ``W_out[layer] @ W_U`` ``[d_mlp, d_vocab]`` (final
    LayerNorm ignored), read through the adapter: ``(effects, "")``, or ``(None, why)`` when the model has no
    unembedding (an encoder, a model without its language-model head)."""
    import torch

    try:
        w_out = adapter.neuron_output_weights(layer)  # [d_mlp, d_model]
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
    from ...model.capture import scan_token_activations

    adapter = as_adapter(model)
    layers = list(scan.layers) if layers is None else [int(l) for l in layers]
    for l in layers:
        scan.layer_index(l)
    if adapter.d_mlp is not None and int(adapter.d_mlp) != scan.d_mlp:
        raise ScanError(f"the model has d_mlp={adapter.d_mlp} but the scan has {scan.d_mlp}: pass the scanned model")
    ids = np.arange(scan.d_mlp) if neurons is None else np.unique(np.asarray(list(neurons), dtype=np.int64))
    if len(ids) == 0 or ids.min() < 0 or ids.max() >= scan.d_mlp:
        raise ScanError(f"neurons must be in 0..{scan.d_mlp - 1}")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
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
        # per-token activations of every needed (doc, neuron), recomputed in batches of documents
        need: dict[int, set[int]] = {}
        for n, ex in ranked.items():
            for section in ex.values():
                for doc in section:
                    need.setdefault(doc, set()).add(n)
        docs = sorted(need)
        acts: dict[tuple[int, int], np.ndarray] = {}
        for b in range(0, len(docs), batch_size):
            chunk = docs[b:b + batch_size]
            for doc, a in zip(chunk, scan_token_activations(adapter, scan, chunk, l)):
                for n in need[doc]:
                    acts[(doc, n)] = np.asarray(a[:, n], dtype=np.float32)
        effects = _logit_effects(adapter, l)
        rows = []
        id_list = ids.tolist()
        for j, n in enumerate(id_list):
            ex = ranked[n]
            top_docs = ex["top"]
            top_tokens = Counter()
            cov = []
            nmax = float(scan.stats.max[li, n])
            for doc in top_docs:
                a = acts[(doc, n)]
                top_tokens[stoks(doc)[int(np.argmax(a))]] += 1
                cov.append(float(np.mean(a > 0.5 * nmax)) if nmax > 0 else 0.0)
            toks_txt = " ".join(repr(t)[1:-1] for t, _ in sorted(top_tokens.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
            coverage = float(np.mean(cov)) if cov else 0.0
            rng = np.random.default_rng([seed, l, n, 1])
            nav = {"prev": id_list[j - 1] if j > 0 else None,
                   "next": id_list[j + 1] if j + 1 < len(id_list) else None,
                   "random": int(rng.choice(id_list))}
            body = _neuron_page(scan, li, l, n, ex, acts, stoks, nav, effects, adapter, n_logits, coverage,
                                toks_txt, has_max, bands, links, _n2g_html(n2g, l, n))
            _write(out_dir, os.path.join(f"L{l}", f"N{n}.html"), f"L{l} N{n}", body)
            s = scan.stats
            rows.append((n, float(s.max[li, n]), float(s.frac_positive[li, n]), coverage, toks_txt))
            search.append([l, n, toks_txt])
        _write_layer_page(out_dir, l, rows, scan)
        layer_rows.append((l, len(rows), float(np.median([r[1] for r in rows])),
                           float(np.median([r[2] for r in rows]))))

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


def _neuron_page(scan, li, layer, n, ex, acts, stoks, nav, effects, adapter, n_logits, coverage, toks_txt, has_max,
                 bands, links, n2g_html: str = "") -> str:
    """The body of one neuron page (``effects``: what :func:`_logit_effects` returned for its layer)."""
    s = scan.stats
    top_vals = [float(acts[(d, n)].max()) for d in ex["top"]]
    vmax = max([abs(float(s.max[li, n])), abs(float(s.min[li, n])), 1e-6])

    def table(docs: list[int], ranked: bool) -> str:
        if not docs:
            return "<p class='muted'>none</p>"
        rows = []
        for i, doc in enumerate(docs):
            a = acts[(doc, n)]
            pos = int(np.argmax(a))
            toks = stoks(doc)
            lab = scan.label_of(doc)
            rows.append(f"<tr><td>{i + 1 if ranked else ''}</td><td>{doc}</td><td>{escape(lab or '')}</td>"
                        f"<td>{a.max():.3f}</td><td>{a.min():.3f}</td><td>{pos}</td><td><div class='snip'>"
                        f"{_snippet_html(toks, a, pos, vmax)}</div><details><summary>full text ({len(toks)} tokens)"
                        f"</summary><div class='full'>{_full_html(toks, pos)}</div></details></td></tr>")
        return ("<table><thead><tr><th>#</th><th>doc</th><th>label</th><th>max</th><th>min</th><th>max at</th>"
                "<th>snippet (50 tokens before, 10 after the max token)</th></tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>")

    navs = ["<a href='../index.html'>index</a>", f"<a href='index.html'>layer {layer}</a>"]
    if nav["prev"] is not None:
        navs.append(f"<a href='N{nav['prev']}.html'>&#8592; N{nav['prev']}</a>")
    if nav["next"] is not None:
        navs.append(f"<a href='N{nav['next']}.html'>N{nav['next']} &#8594;</a>")
    navs.append(f"<a href='N{nav['random']}.html'>random (N{nav['random']})</a>")
    for text, url in (links(layer, n) if links else []):
        navs.append(f"<a href='{escape(check_link_url(url))}'>{escape(text)}</a>")
    q = s.quantile(np.array([0.5, 0.9, 0.99]))[:, li, n]
    stats_rows = [("max", s.max[li, n]), ("min", s.min[li, n]), ("mean", s.mean[li, n]), ("std", s.std[li, n]),
                  ("density (fraction of tokens > 0)", s.frac_positive[li, n]), ("median (approx.)", q[0]),
                  ("90th percentile (approx.)", q[1]), ("99th percentile (approx.)", q[2]),
                  ("tokens counted", s.count),
                  ("coverage (top examples' tokens > half the max)", coverage)]
    stats_html = "<table>" + "".join(
        f"<tr><th>{escape(k)}</th><td>{v:.4g}</td></tr>" if isinstance(v, (float, np.floating))
        else f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in stats_rows) + "</table>"
    parts = [f"<nav>{' '.join(navs)}</nav>", f"<h1>Layer {layer}, neuron {n}</h1>",
             f"<p>Top tokens: <code>{escape(toks_txt)}</code></p>",
             "<h2>Statistics</h2>", stats_html,
             "<h2>Activation histogram</h2>",
             _hist_svg(s.hist_counts[li, n], s.hist_edges, float(s.min[li, n]), float(s.max[li, n]))]
    logits, no_logits = effects
    if logits is None:
        parts.append(f"<h2>Direct logit effects</h2><p class='muted'>not available for this model: "
                     f"{escape(no_logits)}</p>")
    else:
        row = logits[n]
        kt, kb = n_logits
        order = np.argsort(-row, kind="stable")
        topi, boti = order[:kt], order[::-1][:kb]
        fmt = lambda ii: "".join(f"<tr><td class='snip'>{escape_token(t)}</td><td>{row[i]:+.3f}</td></tr>"
                                 for i, t in zip(ii.tolist(), adapter.str_tokens(ii.tolist())))
        parts.append("<h2>Direct logit effects</h2><p class='muted'>W_out[layer, neuron] @ W_U (final LayerNorm "
                     "ignored)</p><table><thead><tr><th>top tokens</th><th></th></tr></thead><tbody>" + fmt(topi)
                     + "</tbody></table><table><thead><tr><th>bottom tokens</th><th></th></tr></thead><tbody>"
                     + fmt(boti) + "</tbody></table>")
    if n2g_html:
        parts.append(n2g_html)
    parts.append(f"<h2>Top {len(ex['top'])} examples</h2><p class='muted'>One per document, ranked by the "
                 f"neuron's max over the document. Top value {max(top_vals) if top_vals else 0:.3f}.</p>")
    parts.append(table(ex["top"], True))
    parts.append("<h2>Examples from activation bands</h2>")
    if has_max:
        bounds = list(bands) + [1.0]
        for i in range(len(bands)):
            parts.append(f"<h3>document max in ({bounds[i]:g}, {bounds[i + 1]:g}] &#215; top value</h3>")
            parts.append(table(ex.get(f"band{i}", []), False))
    else:
        parts.append("<p class='muted'>the scan kept no 'max' pooling, so band examples are not available</p>")
    parts.append("<h2>Random examples</h2>")
    parts.append(table(ex["random"], False))
    return "\n".join(parts)


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
