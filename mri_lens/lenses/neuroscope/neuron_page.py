"""One neuron page of the Neuroscope site (:mod:`.neuron_site`): navigation, statistics, histogram, direct logit
effects, the N2G section and the example tables (top, activation bands, random), as HTML. Every token is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ...render.html import N_LEVELS, check_link_url, escape, escape_token

__all__ = ["LayerPages", "neuron_page"]


@dataclass
class LayerPages:
    """What every neuron page of one layer reads.

    scan, adapter: the scan and the scanned model's adapter; li, layer: the layer's position in the scan and its
    model number; acts: ``(doc, neuron) -> [n_tokens]`` per-token activations of every example shown; stoks:
    ``doc -> decoded tokens``; effects: ``(W_out @ W_U [d_mlp, d_vocab], "")`` or ``(None, why not)``; n_logits:
    how many top and bottom tokens; has_max: the scan kept a ``"max"`` pooling (band examples); bands: their
    lower bounds as fractions of the top value; links: ``f(layer, neuron) -> [(text, url)]`` or None.
    """

    scan: Any
    adapter: Any
    li: int
    layer: int
    acts: dict[tuple[int, int], np.ndarray]
    stoks: Callable[[int], list[str]]
    effects: tuple[np.ndarray | None, str]
    n_logits: tuple[int, int]
    has_max: bool
    bands: Sequence[float]
    links: Callable[[int, int], list[tuple[str, str]]] | None


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


def neuron_page(pages: LayerPages, n: int, ex: dict[str, list[int]], nav: dict[str, int | None], coverage: float,
                toks_txt: str, n2g_html: str = "") -> str:
    """The body of neuron ``n``'s page: ``ex`` its example documents per section (``"top"``, ``"band<i>"``,
    ``"random"``), ``nav`` its ``prev`` / ``next`` / ``random`` neighbours, ``coverage`` and ``toks_txt`` (its top
    tokens) as on the layer page, ``n2g_html`` its N2G section or ""."""
    s, li, layer = pages.scan.stats, pages.li, pages.layer
    parts = [f"<nav>{' '.join(_nav_links(pages, n, nav))}</nav>", f"<h1>Layer {layer}, neuron {n}</h1>",
             f"<p>Top tokens: <code>{escape(toks_txt)}</code></p>",
             "<h2>Statistics</h2>", _stats_html(pages, n, coverage),
             "<h2>Activation histogram</h2>",
             _hist_svg(s.hist_counts[li, n], s.hist_edges, float(s.min[li, n]), float(s.max[li, n])),
             _logits_html(pages, n)]
    if n2g_html:
        parts.append(n2g_html)
    parts.extend(_example_sections(pages, n, ex))
    return "\n".join(parts)


def _nav_links(pages: LayerPages, n: int, nav: dict[str, int | None]) -> list[str]:
    navs = ["<a href='../index.html'>index</a>", f"<a href='index.html'>layer {pages.layer}</a>"]
    if nav["prev"] is not None:
        navs.append(f"<a href='N{nav['prev']}.html'>&#8592; N{nav['prev']}</a>")
    if nav["next"] is not None:
        navs.append(f"<a href='N{nav['next']}.html'>N{nav['next']} &#8594;</a>")
    navs.append(f"<a href='N{nav['random']}.html'>random (N{nav['random']})</a>")
    for text, url in (pages.links(pages.layer, n) if pages.links else []):
        navs.append(f"<a href='{escape(check_link_url(url))}'>{escape(text)}</a>")
    return navs


def _stats_html(pages: LayerPages, n: int, coverage: float) -> str:
    s, li = pages.scan.stats, pages.li
    q = s.quantile(np.array([0.5, 0.9, 0.99]))[:, li, n]
    stats_rows = [("max", s.max[li, n]), ("min", s.min[li, n]), ("mean", s.mean[li, n]), ("std", s.std[li, n]),
                  ("density (fraction of tokens > 0)", s.frac_positive[li, n]), ("median (approx.)", q[0]),
                  ("90th percentile (approx.)", q[1]), ("99th percentile (approx.)", q[2]),
                  ("tokens counted", s.count),
                  ("coverage (top examples' tokens > half the max)", coverage)]
    return "<table>" + "".join(
        f"<tr><th>{escape(k)}</th><td>{v:.4g}</td></tr>" if isinstance(v, (float, np.floating))
        else f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in stats_rows) + "</table>"


def _logits_html(pages: LayerPages, n: int) -> str:
    logits, no_logits = pages.effects
    if logits is None:
        return (f"<h2>Direct logit effects</h2><p class='muted'>not available for this model: "
                f"{escape(no_logits)}</p>")
    row = logits[n]
    kt, kb = pages.n_logits
    order = np.argsort(-row, kind="stable")
    topi, boti = order[:kt], order[::-1][:kb]

    def fmt(ii: np.ndarray) -> str:
        return "".join(f"<tr><td class='snip'>{escape_token(t)}</td><td>{row[i]:+.3f}</td></tr>"
                       for i, t in zip(ii.tolist(), pages.adapter.str_tokens(ii.tolist(), sequence=False)))

    return ("<h2>Direct logit effects</h2><p class='muted'>W_out[layer, neuron] @ W_U (final LayerNorm "
            "ignored)</p><table><thead><tr><th>top tokens</th><th></th></tr></thead><tbody>" + fmt(topi)
            + "</tbody></table><table><thead><tr><th>bottom tokens</th><th></th></tr></thead><tbody>"
            + fmt(boti) + "</tbody></table>")


def _example_sections(pages: LayerPages, n: int, ex: dict[str, list[int]]) -> list[str]:
    s, li = pages.scan.stats, pages.li
    top_vals = [float(pages.acts[(d, n)].max()) for d in ex["top"]]
    vmax = max([abs(float(s.max[li, n])), abs(float(s.min[li, n])), 1e-6])
    parts = [f"<h2>Top {len(ex['top'])} examples</h2><p class='muted'>One per document, ranked by the "
             f"neuron's max over the document. Top value {max(top_vals) if top_vals else 0:.3f}.</p>",
             _examples_table(pages, n, ex["top"], True, vmax),
             "<h2>Examples from activation bands</h2>"]
    if pages.has_max:
        bounds = list(pages.bands) + [1.0]
        for i in range(len(pages.bands)):
            parts.append(f"<h3>document max in ({bounds[i]:g}, {bounds[i + 1]:g}] &#215; top value</h3>")
            parts.append(_examples_table(pages, n, ex.get(f"band{i}", []), False, vmax))
    else:
        parts.append("<p class='muted'>the scan kept no 'max' pooling, so band examples are not available</p>")
    parts.append("<h2>Random examples</h2>")
    parts.append(_examples_table(pages, n, ex["random"], False, vmax))
    return parts


def _examples_table(pages: LayerPages, n: int, docs: list[int], ranked: bool, vmax: float) -> str:
    if not docs:
        return "<p class='muted'>none</p>"
    rows = []
    for i, doc in enumerate(docs):
        a = pages.acts[(doc, n)]
        pos = int(np.argmax(a))
        toks = pages.stoks(doc)
        lab = pages.scan.label_of(doc)
        rows.append(f"<tr><td>{i + 1 if ranked else ''}</td><td>{doc}</td><td>{escape(lab or '')}</td>"
                    f"<td>{a.max():.3f}</td><td>{a.min():.3f}</td><td>{pos}</td><td><div class='snip'>"
                    f"{_snippet_html(toks, a, pos, vmax)}</div><details><summary>full text ({len(toks)} tokens)"
                    f"</summary><div class='full'>{_full_html(toks, pos)}</div></details></td></tr>")
    return ("<table><thead><tr><th>#</th><th>doc</th><th>label</th><th>max</th><th>min</th><th>max at</th>"
            "<th>snippet (50 tokens before, 10 after the max token)</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")
